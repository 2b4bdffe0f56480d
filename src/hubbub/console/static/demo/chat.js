// Presence and chat: one channel per room, names from peerMetadata (the demo token sets it).
import { CLOSE_REASONS } from "/client/hubbub.js";
import { colorFor, demoConnect, displayName, el, params, showState } from "./demo.js";

const $ = (id) => document.getElementById(id);
const room = params.get("room") || "lobby";
const name = params.get("name") || `Guest ${Math.floor(100 + Math.random() * 900)}`;
const channel = `chat/${room}`;

$("room-name").textContent = room;
$("channel-name").textContent = channel;
$("me").textContent = name;

function addLine(kind, who, text) {
  const line = el("div", { className: `line ${kind}` });
  if (who) line.append(el("span", { className: "who", textContent: who }));
  line.append(text);
  $("messages").append(line);
  $("messages").scrollTop = $("messages").scrollHeight;
  return line;
}

function renderMembers(client) {
  const members = [[client.peerId, { name }], ...client.members(channel)];
  $("members").replaceChildren(...members.map(([peerId, metadata]) => {
    const item = el("li", {}, el("span", { className: "dot" }),
      el("span", { textContent: displayName(peerId, metadata) }),
      peerId === client.peerId ? el("span", { className: "muted small", textContent: "(you)" }) : null);
    item.dataset.peer = peerId;
    item.style.color = colorFor(peerId);
    return item;
  }));
}

function textOf(data) {
  if (data && typeof data === "object" && typeof data.text === "string") return data.text;
  return JSON.stringify(data);
}

async function main() {
  const client = await demoConnect({ name });
  showState(client, $("connection"));
  client.on("presence", (event) => {
    if (event.channel !== channel) return;
    renderMembers(client);
    if (event.snapshot) return;
    for (const entry of event.joined) addLine("system", null, `${displayName(entry.peerId, entry.metadata)} joined`);
    for (const entry of event.left) addLine("system", null, `${displayName(entry.peerId, entry.metadata)} left`);
  });
  client.on("message", (message) => {
    if (message.channel !== channel) return;
    // A replayed message may be this page's own, from before a reload.
    const mine = message.from === client.peerId;
    const fromServer = !mine && !message.fromMetadata && !client.members(channel).has(message.from);
    const kind = mine ? "mine" : fromServer ? "server" : "";
    const line = addLine(kind, displayName(message.from, message.fromMetadata), textOf(message.data));
    line.dataset.from = message.from;
  });
  client.on("close", ({ code, reason, willReconnect }) => {
    if (willReconnect) return;
    $("banner").textContent = `You were disconnected: ${reason || CLOSE_REASONS[code]} (close ${code}).`;
    $("banner").hidden = false;
    $("text").disabled = $("send").disabled = true;
    // Presence is no longer known once the connection is gone for good.
    $("members").replaceChildren(el("li", { className: "muted", textContent: "not connected" }));
  });
  // The room's recent messages first (demo mode keeps 100 per chat room), then live ones.
  await client.subscribe(channel, { includeSenderMetadata: true, rewind: 20 });
  renderMembers(client);
  $("text").disabled = $("send").disabled = false;
  $("text").focus();
  $("compose").onsubmit = async (event) => {
    event.preventDefault();
    const text = $("text").value.trim();
    if (!text) return;
    $("text").value = "";
    try {
      await client.publish(channel, { text });
      addLine("mine", name, text).dataset.from = client.peerId;
    } catch (error) {
      addLine("system", null, `not sent: ${error.code || error.message}`);
    }
  };
}

main().catch((error) => {
  $("banner").textContent = `Could not connect: ${error.message}`;
  $("banner").hidden = false;
});
