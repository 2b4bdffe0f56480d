// The baseline Hubbub is measured against: the broadcast server most people would write with
// Node's `ws`. It speaks just enough of the realtime protocol for bench/fanout.py: `welcome` on
// connect, `subscribe` -> `ack`, and `publish` -> the `message` frame, JSON.stringify'd once and
// handed to ws.send() for every other subscriber, then an `ack` to the publisher.
// No presence, limits or validation: it is a yardstick, not a server. With BENCH_JWT_SECRET
// set (bench/peers.py), a connect must carry ?token=<HS256 JWT> signed with it, checked with
// node:crypto as a minimal server would (signature, exp); a bad one is closed with 4001.
//
// Usage: node bench/baseline/ws_broadcast.mjs [port]   (port 0 picks a free one; the chosen
// port is printed as "listening on PORT").
import { createHmac, randomUUID, timingSafeEqual } from "node:crypto";
import { WebSocketServer } from "ws";

const port = Number(process.argv[2] ?? 0);
const jwtSecret = process.env.BENCH_JWT_SECRET;
const channels = new Map(); // channel -> Set<WebSocket>

const wss = new WebSocketServer({ host: "127.0.0.1", port, perMessageDeflate: false });

// The token's subject, or null when it is missing, badly signed or expired.
function verifiedSubject(url) {
  const token = new URL(url, "http://x").searchParams.get("token");
  const parts = token?.split(".") ?? [];
  if (parts.length !== 3) return null;
  const expected = createHmac("sha256", jwtSecret).update(`${parts[0]}.${parts[1]}`).digest();
  const given = Buffer.from(parts[2], "base64url");
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null;
  const header = JSON.parse(Buffer.from(parts[0], "base64url"));
  const claims = JSON.parse(Buffer.from(parts[1], "base64url"));
  if (header.alg !== "HS256" || !(claims.exp > Date.now() / 1000)) return null;
  return String(claims.sub);
}

wss.on("connection", (ws, request) => {
  let peerId = randomUUID();
  if (jwtSecret !== undefined) {
    let subject = null;
    try {
      subject = verifiedSubject(request.url);
    } catch {}
    if (subject === null) {
      ws.close(4001, "invalid token");
      return;
    }
    peerId = subject;
  }
  const joined = new Set();
  ws.send(
    JSON.stringify({
      type: "welcome",
      peerId,
      expiresAt: null,
      serverTime: Math.floor(Date.now() / 1000),
      maxMessageSize: 65536,
    }),
  );
  ws.on("message", (raw) => {
    let frame;
    try {
      frame = JSON.parse(raw);
    } catch {
      ws.send(JSON.stringify({ type: "error", code: "malformed_message", message: "bad JSON" }));
      return;
    }
    if (frame.type === "subscribe") {
      let members = channels.get(frame.channel);
      if (members === undefined) {
        members = new Set();
        channels.set(frame.channel, members);
      }
      members.add(ws);
      joined.add(frame.channel);
    } else if (frame.type === "publish") {
      const text = JSON.stringify({
        type: "message",
        channel: frame.channel,
        from: peerId,
        data: frame.data,
      });
      for (const member of channels.get(frame.channel) ?? []) {
        if (member !== ws) member.send(text);
      }
    } else if (frame.type === "ping") {
      ws.send('{"type":"pong"}');
      return;
    }
    if (frame.requestId !== undefined) {
      ws.send(JSON.stringify({ type: "ack", requestId: frame.requestId }));
    }
  });
  ws.on("close", () => {
    for (const channel of joined) channels.get(channel)?.delete(ws);
  });
});

wss.on("listening", () => {
  console.log(`listening on ${wss.address().port}`);
});

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    for (const client of wss.clients) client.terminate();
    wss.close(() => process.exit(0));
  });
}
