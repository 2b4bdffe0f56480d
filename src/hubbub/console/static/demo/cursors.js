// Collaborative cursors: positions (as fractions of the board) published at most every
// 1000/60 ms, the latest one always sent (a trailing send after a burst of moves).
import { CLOSE_REASONS } from "/client/hubbub.js";
import { colorFor, demoConnect, displayName, el, params, showState } from "./demo.js";

const $ = (id) => document.getElementById(id);
const room = params.get("room") || "board";
const ANIMALS = ["Otter", "Lynx", "Heron", "Panda", "Gecko", "Koala", "Bison", "Robin"];
const name = params.get("name") || `${ANIMALS[Math.floor(Math.random() * ANIMALS.length)]} ${Math.floor(10 + Math.random() * 90)}`;
const channel = `cursors/${room}`;
const INTERVAL_MS = 1000 / 60;
$("room-name").textContent = room;
$("channel-name").textContent = channel;

const board = $("board");
const cursors = new Map(); // peerId -> element
let client = null;
let lastSent = 0;
let pending = null;
let trailing = null;
let sentThisSecond = 0;

function arrow(color) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("width", "18");
  svg.setAttribute("height", "22");
  svg.setAttribute("viewBox", "0 0 18 22");
  const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
  path.setAttribute("d", "M1 1 L1 18 L6 13.5 L9.5 21 L12.5 19.5 L9 12.5 L16 12.5 Z");
  path.setAttribute("fill", color);
  path.setAttribute("stroke", "#fff");
  path.setAttribute("stroke-width", "1.5");
  svg.append(path);
  return svg;
}

function cursorFor(peerId, metadata) {
  let cursor = cursors.get(peerId);
  if (!cursor) {
    const color = colorFor(peerId);
    cursor = el("div", { className: "cursor" }, arrow(color),
      el("span", { className: "tag", textContent: displayName(peerId, metadata) }));
    cursor.querySelector(".tag").style.background = color;
    cursor.dataset.peer = peerId;
    board.append(cursor);
    cursors.set(peerId, cursor);
    $("hint").hidden = true;
  }
  return cursor;
}

function send(position) {
  lastSent = performance.now();
  sentThisSecond += 1;
  client.publish(channel, position).catch(() => {}); // a dropped position is replaced by the next
}

function onMove(event) {
  const box = board.getBoundingClientRect();
  const position = {
    x: Math.min(1, Math.max(0, (event.clientX - box.left) / box.width)),
    y: Math.min(1, Math.max(0, (event.clientY - box.top) / box.height)),
  };
  const wait = INTERVAL_MS - (performance.now() - lastSent);
  if (wait <= 0) {
    send(position);
    return;
  }
  pending = position;
  if (!trailing) {
    trailing = setTimeout(() => {
      trailing = null;
      if (pending) send(pending);
      pending = null;
    }, wait);
  }
}

async function main() {
  client = await demoConnect({ name });
  showState(client, $("connection"));
  client.on("message", ({ channel: where, from, data, fromMetadata }) => {
    if (where !== channel || !data || typeof data.x !== "number" || typeof data.y !== "number") return;
    const cursor = cursorFor(from, fromMetadata);
    cursor.style.left = `${(data.x * 100).toFixed(2)}%`;
    cursor.style.top = `${(data.y * 100).toFixed(2)}%`;
  });
  client.on("presence", ({ channel: where, left }) => {
    if (where !== channel) return;
    for (const { peerId } of left) {
      cursors.get(peerId)?.remove();
      cursors.delete(peerId);
    }
    $("others").textContent = client.members(channel).size;
  });
  client.on("close", ({ code, reason, willReconnect }) => {
    if (willReconnect) return;
    $("banner").textContent = `Disconnected: ${reason || CLOSE_REASONS[code]} (close ${code}).`;
    $("banner").hidden = false;
  });
  await client.subscribe(channel, { includeSenderMetadata: true });
  $("others").textContent = client.members(channel).size;
  board.addEventListener("pointermove", onMove);
  setInterval(() => {
    $("send-rate").textContent = sentThisSecond;
    sentThisSecond = 0;
  }, 1000);
}

main().catch((error) => {
  $("banner").textContent = `Could not connect: ${error.message}`;
  $("banner").hidden = false;
});
