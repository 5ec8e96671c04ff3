// Reference implementation of examples/echo.py on Node's own `socket.io` server.
// Running the interop suite against it (MSSTORM_INTEROP_SERVER=node) proves that
// the tests encode real Socket.IO behaviour rather than msstorm's.
//
// usage: node reference_echo.mjs --host H --port P --ping-interval MS
//        --ping-timeout MS --connect-timeout MS --max-payload BYTES
import { createServer } from "node:http";
import { parseArgs } from "node:util";
import { Server } from "socket.io";

const { values: opt } = parseArgs({
  options: {
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string", default: "3000" },
    "ping-interval": { type: "string", default: "25000" },
    "ping-timeout": { type: "string", default: "20000" },
    "connect-timeout": { type: "string", default: "45000" },
    "max-payload": { type: "string", default: "1000000" },
  },
});

const httpServer = createServer();
const io = new Server(httpServer, {
  pingInterval: Number(opt["ping-interval"]),
  pingTimeout: Number(opt["ping-timeout"]),
  connectTimeout: Number(opt["connect-timeout"]),
  maxHttpBufferSize: Number(opt["max-payload"]),
  perMessageDeflate: false,
});

// Drop a trailing ack callback from an argument list and return it (or null).
function popAck(args) {
  return typeof args.at(-1) === "function" ? args.pop() : null;
}

// Only "/" and "/custom" exist; socket.io itself refuses any other namespace
// with CONNECT_ERROR {"message": "Invalid namespace"}.
for (const name of ["/", "/custom"]) {
  const watchers = new Set(); // sockets that asked to hear who leaves
  io.of(name).on("connection", (socket) => {
    socket.emit("auth", socket.handshake.auth); // {} when CONNECT had no payload

    socket.on("message", (...args) => {
      popAck(args);
      socket.emit("message-back", ...args);
    });

    socket.on("message-with-ack", (...args) => {
      const ack = popAck(args);
      if (ack) ack(...args);
    });

    // server -> client ack: ask the client, then report its ack values.
    socket.on("ask", (...args) => {
      popAck(args);
      socket.emit("question", ...args, (...answer) => socket.emit("answer", ...answer));
    });

    socket.on("disconnect-me", () => socket.disconnect());

    // A socket that sent `watch` hears of every socket that leaves afterwards.
    socket.on("watch", () => watchers.add(socket.id));
    socket.on("disconnect", (reason) => {
      watchers.delete(socket.id);
      for (const id of watchers) io.of(name).to(id).emit("gone", socket.id, reason);
    });
  });
}

httpServer.listen(Number(opt.port), opt.host, () => {
  console.error(`reference echo listening on http://${opt.host}:${opt.port}`);
});
