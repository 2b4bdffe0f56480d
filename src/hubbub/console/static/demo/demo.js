// What the demo pages share: a token from the demo helper route (the page never holds a secret
// key), a connection made with the browser client, and a status line that says what happened.
import { CLOSE_REASONS, connect } from "/client/hubbub.js";

export const params = new URLSearchParams(location.search);

export async function demoToken({ name, peerId } = {}) {
  const body = {};
  if (name) body.name = name;
  if (peerId) body.peerId = peerId;
  const response = await fetch("/demo/api/token", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.message || `token refused (${response.status})`);
  return answer;
}

/** Connect as `name` (shown to others through peerMetadata); reconnects keep the peer id. */
export async function demoConnect({ name, peerId } = {}) {
  const first = await demoToken({ name, peerId });
  return connect({
    token: first.token,
    tokenProvider: async () => (await demoToken({ name, peerId: first.peerId })).token,
  });
}

/** Keep `element` telling the connection's state; a server's close is spelled out. */
export function showState(client, element) {
  const paint = (text, kind) => {
    element.textContent = text;
    element.className = `pill ${kind}`;
  };
  paint(`connected as ${client.peerId}`, "ok");
  client.on("state", (state) => {
    if (state === "open") paint(`connected as ${client.peerId}`, "ok");
    if (state === "reconnecting") paint("reconnecting…", "warn");
  });
  client.on("close", ({ code, reason, willReconnect }) => {
    if (!willReconnect) paint(`disconnected: ${reason || CLOSE_REASONS[code] || "closed"} (${code})`, "bad");
  });
}

export function colorFor(text) {
  let hash = 0;
  for (const char of text) hash = (hash * 31 + char.codePointAt(0)) >>> 0;
  return `hsl(${hash % 360} 65% 45%)`;
}

export function displayName(peerId, metadata) {
  return (metadata && typeof metadata.name === "string" && metadata.name) || peerId;
}

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}
