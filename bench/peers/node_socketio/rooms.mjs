#!/usr/bin/env node
// A rooms app on Node's socket.io Server, for bench/run_rooms.py: the same
// handlers as bench/peers/python_socketio/rooms.py, written as a Node developer
// would. Each socket enters "all", one of ten and one of a hundred rooms;
// "count" acks the sockets connected; "fanout"(room, times) emits "news" to the
// room, the sender skipped, then acks.
//
//   node rooms.mjs --port 3000
import { createServer } from "node:http";
import { parseArgs } from "node:util";
import { Server } from "socket.io";

const { values } = parseArgs({ options: { port: { type: "string", default: "3000" } } });
const http = createServer();
const io = new Server(http, { pingInterval: 25000, pingTimeout: 60000, perMessageDeflate: false });
let connected = 0;
const NEWS = { text: "x".repeat(40) };

io.on("connection", (socket) => {
  connected += 1;
  socket.join(["all", `ten-${connected % 10}`, `hundred-${connected % 100}`]);
  socket.on("disconnect", () => {
    connected -= 1;
  });
  socket.on("count", (ack) => ack(connected));
  socket.on("fanout", (room, times, ack) => {
    for (let n = 0; n < times; n++) socket.to(room).emit("news", { n, ...NEWS });
    ack(true);
  });
});

http.listen(Number(values.port), "127.0.0.1", 4096);
