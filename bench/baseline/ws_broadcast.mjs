// The baseline Hubbub is measured against: the broadcast server most people would write with
// Node's `ws`. It speaks just enough of the realtime protocol for bench/fanout.py: `welcome` on
// connect, `subscribe` -> `ack`, and `publish` -> the `message` frame, JSON.stringify'd once and
// handed to ws.send() for every other subscriber, then an `ack` to the publisher.
// No auth, presence, limits or validation: it is a yardstick, not a server.
//
// Usage: node bench/baseline/ws_broadcast.mjs [port]   (port 0 picks a free one; the chosen
// port is printed as "listening on PORT").
import { randomUUID } from "node:crypto";
import { WebSocketServer } from "ws";

const port = Number(process.argv[2] ?? 0);
const channels = new Map(); // channel -> Set<WebSocket>

const wss = new WebSocketServer({ host: "127.0.0.1", port, perMessageDeflate: false });

wss.on("connection", (ws) => {
  const peerId = randomUUID();
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
