// Socket.IO 4 peer for bench/peers.py: the fan-out server one would write with rooms.
// A connect carries an HS256 JWT in the CONNECT packet's auth payload ({token}), checked by
// jsonwebtoken in a middleware; "subscribe" joins a room, "publish" emits "message" to the
// room's other members; both are acknowledged. WebSocket transport only, no compression.
//
// Usage: BENCH_JWT_SECRET=... node bench/peers/socketio_server.mjs [port]
import { createServer } from "node:http";
import jwt from "jsonwebtoken";
import { Server } from "socket.io";

const port = Number(process.argv[2] ?? 0);
const secret = process.env.BENCH_JWT_SECRET;
const http = createServer();
const io = new Server(http, { transports: ["websocket"], perMessageDeflate: false });

io.use((socket, next) => {
  try {
    const claims = jwt.verify(socket.handshake.auth?.token ?? "", secret, {
      algorithms: ["HS256"],
    });
    socket.data.peerId = String(claims.sub);
    next();
  } catch {
    next(new Error("invalid token"));
  }
});

io.on("connection", (socket) => {
  socket.on("subscribe", (channel, ack) => {
    socket.join(channel);
    if (typeof ack === "function") ack();
  });
  socket.on("publish", (channel, data, ack) => {
    socket.to(channel).emit("message", { channel, from: socket.data.peerId, data });
    if (typeof ack === "function") ack();
  });
});

http.listen(port, "127.0.0.1", () => {
  console.log(`listening on ${http.address().port}`);
});

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    io.close();
    process.exit(0);
  });
}
