// A socket.io-client socket driven over stdin/stdout, for the rooms tests: one
// JSON line in per command, one JSON line out per thing that happened.
//
// usage: node member.mjs URL NAMESPACE OPTIONS_JSON
//   OPTIONS_JSON: {"auth": {...}, "transports": [...], "name": "..."}
//
// out: {"type": "connect", "id": sid} | {"type": "connect_error", "message", "data"}
//      {"type": "event", "event", "args"} for every event but "question"
//      {"type": "ack", "n", "args"}      the ack of command n
//      {"type": "disconnect", "reason"}
// in:  {"n", "op": "emit", "event", "args", "ack": bool} | {"op": "disconnect"}
//
// A "question" is answered with {"from": name, "answer": "yes to " + its q}.
import { createInterface } from "node:readline";
import { io } from "socket.io-client";

const [url, nsp = "/", optionsJson = "{}"] = process.argv.slice(2);
const options = JSON.parse(optionsJson);
const out = (message) => process.stdout.write(JSON.stringify(message) + "\n");

const socket = io(url + nsp, {
  transports: options.transports ?? ["polling", "websocket"],
  auth: options.auth ?? {},
  reconnection: false,
  forceNew: true,
});
socket.on("connect", () => out({ type: "connect", id: socket.id }));
socket.on("connect_error", (err) =>
  out({ type: "connect_error", message: err.message, data: err.data ?? null }),
);
socket.on("disconnect", (reason) => out({ type: "disconnect", reason }));
socket.on("question", (question, ack) =>
  ack({ from: options.name, answer: `yes to ${question.q}` }),
);
socket.onAny((event, ...args) => {
  if (event !== "question") out({ type: "event", event, args });
});

const input = createInterface({ input: process.stdin });
input.on("line", (line) => {
  const command = JSON.parse(line);
  if (command.op === "emit") {
    if (command.ack) {
      socket.emit(command.event, ...command.args, (...args) =>
        out({ type: "ack", n: command.n, args }),
      );
    } else {
      socket.emit(command.event, ...command.args);
    }
  } else if (command.op === "disconnect") {
    socket.disconnect();
  }
});
input.on("close", () => {
  socket.disconnect();
  setTimeout(() => process.exit(0), 50);
});
