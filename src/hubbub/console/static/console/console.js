// The admin console: signs in with a secret key, then polls the REST listings and draws what
// it finds. The key lives in this tab (sessionStorage) and is only ever sent in the
// Authorization header: never in a URL (a /console#key=... fragment is read, then removed).
import { RateChart } from "./chart.js";

const $ = (id) => document.getElementById(id);
const KEY_STORAGE = "hubbub.console.key";
const POLL_MS = 2000;
const state = {
  key: null,
  channel: null,
  conversation: null,
  events: [],
  eventsAfter: null,
  older: [],
  olderBefore: null,
  historySupported: false,
  lastMetrics: null,
  busy: false,
  timer: null,
};
const chart = new RateChart($("rates"), { capacity: 30, series: 5 }); // a minute of samples

// --- small helpers ----------------------------------------------------------------------------

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function ago(unixSeconds) {
  const seconds = Math.max(0, Date.now() / 1000 - unixSeconds);
  if (seconds < 60) return `${Math.round(seconds)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return new Date(unixSeconds * 1000).toLocaleString();
}

function clock(unixSeconds) {
  return unixSeconds ? new Date(unixSeconds * 1000).toLocaleTimeString() : "";
}

function compact(value) {
  const text = JSON.stringify(value);
  return text && text.length > 160 ? `${text.slice(0, 159)}…` : text;
}

function fill(tbody, rows, columns, emptyText) {
  tbody.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { className: "empty", colSpan: columns, textContent: emptyText }))]));
}

class Refused extends Error {}

async function api(path, { method = "GET", body } = {}) {
  const headers = { Authorization: `Bearer ${state.key}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, cache: "no-store", body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => null);
  if (response.status === 401) {
    signOut("The server refused this key (401 unauthorized).");
    throw new Refused("unauthorized");
  }
  if (!response.ok) throw new Error((data && data.message) || `HTTP ${response.status}`);
  return data;
}

const enc = encodeURIComponent;

// --- signing in and out -----------------------------------------------------------------------

function keyFromFragment() {
  const match = /^#key=(.+)$/.exec(location.hash);
  if (!match) return null;
  // Out of the address bar and the history at once; the fragment never reached the server.
  history.replaceState(null, "", location.pathname + location.search);
  return decodeURIComponent(match[1]);
}

async function signIn(key) {
  state.key = key.trim();
  $("signin-error").hidden = true;
  try {
    const nodes = await api("/v1/nodes");
    sessionStorage.setItem(KEY_STORAGE, state.key);
    $("signin-view").hidden = true;
    $("dashboard").hidden = false;
    $("sign-out").hidden = false;
    $("status").textContent = `signed in as ${state.key.split(":")[0]} · via node ${nodes.node}`;
    await discover();
    await tick();
    state.timer = setInterval(tick, POLL_MS);
  } catch (error) {
    if (!(error instanceof Refused)) showSignInError(`Could not reach the server: ${error.message}`);
  }
}

function signOut(reason) {
  clearInterval(state.timer);
  state.timer = null;
  state.key = null;
  sessionStorage.removeItem(KEY_STORAGE);
  $("dashboard").hidden = true;
  $("signin-view").hidden = false;
  $("sign-out").hidden = true;
  $("status").textContent = "signed out";
  if (reason) showSignInError(reason);
}

function showSignInError(text) {
  $("signin-error").textContent = text;
  $("signin-error").hidden = false;
}

async function discover() {
  // Which optional routes this server has (channel history arrives with its own issue).
  const doc = await (await fetch("/v1/openapi.json")).json();
  state.historySupported = Boolean(doc.paths["/v1/channels/{channel}/history"]);
  const info = await (await fetch("/info")).json();
  const select = $("filter-project");
  for (const project of info.projects) select.append(el("option", { value: project, textContent: project }));
}

// --- the refresh loop -------------------------------------------------------------------------

async function tick() {
  if (state.busy || !state.key) return;
  state.busy = true;
  try {
    const results = await Promise.allSettled([
      refreshNodes(), refreshMetrics(), refreshChannels(), refreshConnections(),
      refreshConversations(), refreshChannel(), refreshConversation(),
    ]);
    const failed = results.find((r) => r.status === "rejected" && !(r.reason instanceof Refused));
    $("problem").hidden = !failed;
    if (failed) $("problem").textContent = `Some of the console could not be refreshed: ${failed.reason.message}`;
  } finally {
    state.busy = false;
  }
}

async function refreshNodes() {
  const { node, nodes } = await api("/v1/nodes");
  fill($("nodes"), nodes.map((n) => el("tr", {},
    el("td", {}, el("code", { textContent: n.node }), n.node === node ? el("span", { className: "pill", textContent: "this node" }) : null),
    el("td", { className: "num", textContent: n.connections }),
    el("td", { className: "num", textContent: n.channels }),
  )), 3, "no node answered");
}

function parseMetrics(text) {
  const totals = new Map();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (match) totals.set(match[1], (totals.get(match[1]) || 0) + Number(match[3]));
  }
  return totals;
}

const FIGURES = [
  ["hubbub_connections", "open connections", false],
  ["hubbub_connections_opened_total", "connections opened", false],
  ["hubbub_frames_received_total", "frames received", true],
  ["hubbub_publications_total", "publications", true],
  ["hubbub_deliveries_total", "deliveries", true],
  ["hubbub_directs_total", "direct messages", true],
  ["hubbub_error_frames_total", "error frames", false],
  ["hubbub_server_closes_total", "server closes", false],
  ["hubbub_conversation_turn_duration_seconds_count", "AI turns", false],
];

async function refreshMetrics() {
  const response = await fetch("/metrics", { cache: "no-store" });
  const totals = parseMetrics(await response.text());
  const now = Date.now() / 1000;
  const last = state.lastMetrics;
  state.lastMetrics = { at: now, totals };
  $("metrics").replaceChildren(...FIGURES.map(([name, label, rated]) => {
    const value = totals.get(name) || 0;
    let rate = null;
    if (rated && last) {
      const per = (value - (last.totals.get(name) || 0)) / Math.max(0.001, now - last.at);
      rate = el("span", { className: "small muted", textContent: ` ${per.toFixed(1)}/s` });
    }
    return el("div", { className: "tile" },
      el("div", { className: "value", textContent: Math.round(value).toLocaleString() }, rate),
      el("div", { className: "label", textContent: label }));
  }));
}

async function refreshChannels() {
  const prefix = $("channel-prefix").value.trim();
  const { channels } = await api(`/v1/channels?limit=200${prefix ? `&prefix=${enc(prefix)}` : ""}`);
  chart.push(Date.now(), channels.map((c) => [c.channel, c.messagesPerSecond]));
  fill($("channels"), channels.map((c) => {
    const row = el("tr", { className: `clickable${c.channel === state.channel ? " selected" : ""}` },
      el("td", {}, el("code", { textContent: c.channel })),
      el("td", { className: "num", textContent: c.subscribers }),
      el("td", { className: "num", textContent: c.peers }),
      el("td", { className: "num", textContent: c.messagesPerSecond.toFixed(2) }));
    row.dataset.channel = c.channel;
    row.onclick = () => selectChannel(c.channel);
    return row;
  }), 4, "no channel has subscribers or recent publications");
}

function selectChannel(channel) {
  state.channel = channel;
  $("channel-card").hidden = false;
  $("channel-name").textContent = channel;
  $("publish-result").textContent = "";
  refreshChannel().catch(() => {});
  for (const row of $("channels").children) row.classList.toggle("selected", row.dataset.channel === channel);
}

function peerLabel(peer) {
  const metadata = peer.metadata;
  if (metadata && typeof metadata.name === "string") return [metadata.name, ` (${peer.peerId})`];
  return [peer.peerId, metadata ? ` ${compact(metadata)}` : ""];
}

async function refreshChannel() {
  const channel = state.channel;
  if (!channel) return;
  const { peers } = await api(`/v1/channels/${enc(channel)}/peers`);
  if (channel !== state.channel) return;
  $("channel-peers").replaceChildren(...(peers.length
    ? peers.map((p) => { const [name, rest] = peerLabel(p); return el("li", {}, el("b", { textContent: name }), el("span", { className: "muted small", textContent: rest })); })
    : [el("li", { className: "empty", textContent: "nobody is present" })]));
  if (!state.historySupported) {
    $("history").replaceChildren(el("p", { className: "muted small",
      textContent: "This server's API has no channel history (GET /v1/channels/{channel}/history)." }));
    return;
  }
  const history = await api(`/v1/channels/${enc(channel)}/history?limit=20`);
  if (channel !== state.channel) return;
  const items = history.publications.slice().reverse().map((p) => el("div", { className: "history-item" },
    el("span", { className: "pill", textContent: `#${p.offset}` }), " ",
    el("b", { textContent: (p.fromMetadata && p.fromMetadata.name) || p.from }), " ",
    el("span", { className: "mono", textContent: compact(p.data) }), " ",
    el("span", { className: "muted small", textContent: clock(p.timestamp / 1000) })));
  const header = el("p", { className: "small muted", textContent: history.epoch
    ? `offset ${history.offset}, epoch ${history.epoch}` : "this channel keeps no history (see [[apps.channels]])" });
  $("history").replaceChildren(header, ...items);
}

async function publish(event) {
  event.preventDefault();
  let data;
  try {
    data = JSON.parse($("publish-data").value);
  } catch {
    $("publish-result").textContent = "the data must be JSON";
    return;
  }
  const from = $("publish-from").value.trim();
  try {
    const answer = await api(`/v1/channels/${enc(state.channel)}/publish`, {
      method: "POST", body: from ? { data, from } : { data },
    });
    $("publish-result").textContent = `delivered to ${answer.delivered} connection(s)`;
  } catch (error) {
    $("publish-result").textContent = `not published: ${error.message}`;
  }
}

async function refreshConnections() {
  const channel = $("filter-channel").value.trim();
  const peer = $("filter-peer").value.trim();
  const query = [`limit=200`, channel && `channel=${enc(channel)}`, peer && `peerId=${enc(peer)}`].filter(Boolean).join("&");
  const { connections } = await api(`/v1/connections?${query}`);
  fill($("connections"), connections.map((c) => {
    const kick = el("button", { className: "small danger", textContent: "Kick", title: `close every connection of ${c.peerId} (4020)` });
    kick.dataset.peer = c.peerId;
    kick.onclick = () => confirmKick(kick, c.peerId);
    const row = el("tr", {},
      el("td", {}, el("code", { textContent: c.peerId })),
      el("td", { className: "channels-cell" }, ...c.channels.map((name) => el("code", { textContent: name }))),
      el("td", { className: "mono small", textContent: c.remoteAddr || "" }),
      el("td", { className: "small", textContent: ago(c.connectedAt), title: new Date(c.connectedAt * 1000).toLocaleString() }),
      el("td", { className: "mono small", textContent: c.node }),
      el("td", { className: "num", textContent: c.framesIn }),
      el("td", { className: "num", textContent: c.framesOut }),
      el("td", {}, kick));
    row.dataset.peer = c.peerId;
    return row;
  }), 8, "no connection matches");
}

function confirmKick(button, peerId) {
  if (button.dataset.armed !== "1") {
    button.dataset.armed = "1";
    button.textContent = "Sure?";
    setTimeout(() => { button.dataset.armed = ""; button.textContent = "Kick"; }, 4000);
    return;
  }
  kick(peerId);
}

async function kick(peerId) {
  const notice = $("kick-result");
  try {
    const { closed } = await api(`/v1/peers/${enc(peerId)}`, { method: "DELETE" });
    notice.className = "notice ok";
    notice.textContent = `Kicked ${peerId}: ${closed} connection(s) closed with 4020.`;
  } catch (error) {
    notice.className = "notice bad";
    notice.textContent = `Could not kick ${peerId}: ${error.message}`;
  }
  notice.hidden = false;
  await refreshConnections().catch(() => {});
}

function conversationQuery(extra = "") {
  const state_ = $("filter-state").value;
  const project = $("filter-project").value;
  return [state_ && `state=${enc(state_)}`, project && `projectId=${enc(project)}`, extra].filter(Boolean).join("&");
}

function conversationRow(c) {
  const row = el("tr", { className: `clickable${c.conversationId === state.conversation ? " selected" : ""}` },
    el("td", {}, el("code", { textContent: c.conversationId })),
    el("td", { textContent: c.projectId }),
    el("td", { textContent: c.userId }),
    el("td", { textContent: c.stageId }),
    el("td", {}, el("span", { className: `pill ${c.endedAt ? "" : "ok"}`, textContent: c.state })),
    el("td", { className: "small", textContent: ago(c.startedAt) }),
    el("td", { className: "small", textContent: c.endedAt ? ago(c.endedAt) : "" }));
  row.dataset.conversation = c.conversationId;
  row.onclick = () => selectConversation(c.conversationId);
  return row;
}

const PAGE = 20;

async function refreshConversations() {
  const { conversations } = await api(`/v1/conversations?${conversationQuery(`limit=${PAGE}`)}`);
  const seen = new Set(conversations.map((c) => c.conversationId));
  const rows = [...conversations, ...state.older.filter((c) => !seen.has(c.conversationId))].map(conversationRow);
  fill($("conversations"), rows, 7, "no conversations yet");
  if (state.olderBefore === null && conversations.length) state.olderBefore = conversations[conversations.length - 1].conversationId;
  $("more-conversations").hidden = conversations.length < PAGE || state.olderBefore === "";
}

async function loadOlder() {
  if (!state.olderBefore) return;
  const { conversations } = await api(`/v1/conversations?${conversationQuery(`limit=${PAGE}&before=${enc(state.olderBefore)}`)}`);
  state.older.push(...conversations);
  state.olderBefore = conversations.length === PAGE ? conversations[conversations.length - 1].conversationId : "";
  await refreshConversations();
}

function resetConversationPages() {
  state.older = [];
  state.olderBefore = null;
  refreshConversations().catch(() => {});
}

function selectConversation(id) {
  state.conversation = id;
  state.events = [];
  state.eventsAfter = null;
  $("conversation-card").hidden = false;
  $("conversation-id").textContent = id;
  $("transcript").replaceChildren();
  $("events").replaceChildren();
  for (const row of $("conversations").children) row.classList.toggle("selected", row.dataset.conversation === id);
  refreshConversation().catch(() => {});
}

async function refreshConversation() {
  const id = state.conversation;
  if (!id) return;
  const detail = await api(`/v1/conversations/${enc(id)}`);
  // New events only, a page at a time, until the log is read to its end.
  for (;;) {
    const after = state.eventsAfter === null ? "" : `&after=${state.eventsAfter}`;
    const page = await api(`/v1/conversations/${enc(id)}/events?limit=200${after}`);
    if (id !== state.conversation) return;
    state.events.push(...page.events);
    if (page.events.length) state.eventsAfter = page.events[page.events.length - 1].seq;
    if (page.nextAfter === null) break;
  }
  $("conversation-summary").replaceChildren(
    el("span", { className: `pill ${detail.endedAt ? "" : "ok"}`, textContent: detail.state }), " ",
    `project ${detail.projectId} · user ${detail.userId} · stage `, el("code", { textContent: detail.stageId }),
    ` · started ${ago(detail.startedAt)}`, detail.endedAt ? ` · ended ${ago(detail.endedAt)}` : "",
    detail.runningHere ? " · running on this node" : "");
  $("variables").textContent = JSON.stringify(detail.variables, null, 2);
  const messages = state.events.filter((e) => e.eventType === "message" && (e.eventData.role === "user" || e.eventData.role === "assistant"));
  $("transcript").replaceChildren(...(messages.length ? messages.map((e) => el("div", { className: `bubble ${e.eventData.role}` },
    el("span", { className: "who", textContent: e.eventData.role === "user" ? "user" : "agent" }),
    e.eventData.text || "")) : [el("p", { className: "empty", textContent: "no messages" })]));
  fill($("events"), state.events.slice(-200).map((e) => el("tr", {},
    el("td", { className: "num", textContent: e.seq }),
    el("td", {}, el("code", { textContent: e.eventType })),
    el("td", { className: "data", textContent: compact(e.eventData) }),
    el("td", { className: "small", textContent: clock(e.createdAt) }))), 4, "no events");
}

// The conversation bus's REST commands: only a key of [conversations] events_app may use them
// (the answer says so otherwise), and the transcript shows the effect at the next poll.
async function steer(command, body) {
  const id = state.conversation;
  try {
    await api(`/v1/conversations/${enc(id)}/${command}`, { method: "POST", body });
    $("steer-result").textContent = `${command}: taken`;
    if (body) $("steer-text").value = "";
  } catch (error) {
    $("steer-result").textContent = `${command} refused: ${error.message}`;
  }
}

// --- wiring -----------------------------------------------------------------------------------

$("signin").onsubmit = (event) => {
  event.preventDefault();
  signIn($("key").value);
};
$("sign-out").onclick = () => signOut();
$("channel-close").onclick = () => { state.channel = null; $("channel-card").hidden = true; };
$("conversation-close").onclick = () => { state.conversation = null; $("conversation-card").hidden = true; };
$("publish").onsubmit = publish;
$("steer").onsubmit = (event) => {
  event.preventDefault();
  const command = event.submitter && event.submitter.id === "steer-input" ? "input" : "say";
  steer(command, { text: $("steer-text").value });
};
$("steer-end").onclick = () => steer("end", {});
$("more-conversations").onclick = () => loadOlder().catch(() => {});
$("filter-state").onchange = resetConversationPages;
$("filter-project").onchange = resetConversationPages;
for (const id of ["channel-prefix", "filter-channel", "filter-peer"]) $(id).oninput = () => tick();
window.addEventListener("resize", () => chart.draw());

const given = keyFromFragment();
const remembered = sessionStorage.getItem(KEY_STORAGE);
if (given) {
  $("key").value = given;
  signIn(given);
} else if (remembered) {
  $("key").value = remembered;
  signIn(remembered);
}
