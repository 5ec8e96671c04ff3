#!/usr/bin/env node
// MessageStorm on Node's socket.io Server: the peer msstorm is measured against.
//
// Clients join namespace "/" and answer every "poke" with a "pokeBack";
// monitors join "/monitor" with auth {token} and drive operations with
// "initiatePoke" and "statusRequest" (the contract: shared/PROTOCOL.md).
// It behaves as msstorm-server does (msstorm/storm/app.py and operations.py):
// same flags, same acks, error codes, status shapes and counters. It is written
// the way a Node developer would write it: one socket.emit per client, plain
// objects and arrays for the bookkeeping, socket.io's defaults except compression.
// With --workers N above 1 it runs as Node users deploy socket.io beyond one
// process: the cluster module and @socket.io/cluster-adapter (cluster.mjs).
//
//   node messagestorm.mjs --port 3000 --monitor-token s3cret
//   node messagestorm.mjs --port 3000 --monitor-token s3cret --workers 3

import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { Server } from "socket.io";

export const VERSION = createRequire(import.meta.url)("socket.io/package.json").version;
const MONITOR = "/monitor";
export const KEEP_FINISHED = 64; // finished operations kept for statusRequest
export const INDEX_WIDTH = 8; // a poke id is "<op>.<slot as 8 hex digits>"
const HEX = /^-?[0-9a-fA-F]+$/;
const PERCENTILES = [
  ["p50", 0.5],
  ["p90", 0.9],
  ["p99", 0.99],
  ["p999", 0.999],
];

// -- command line (the same flags as msstorm-server) -------------------------

const USAGE = `usage: messagestorm.mjs [--host H] [--port P] [--ping-interval MS] [--ping-timeout MS]
  [--max-payload BYTES] [--connect-timeout MS] [--monitor-token T] [--op-timeout SECONDS]
  [--max-tree-leaves L] [--max-operations N] [--log-level LEVEL] [--workers N]`;

function options(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      host: { type: "string", default: "127.0.0.1" },
      port: { type: "string", default: "3000" },
      "ping-interval": { type: "string", default: "25000" },
      "ping-timeout": { type: "string", default: "20000" },
      "max-payload": { type: "string", default: "1000000" },
      "connect-timeout": { type: "string", default: "45000" },
      "monitor-token": { type: "string" },
      "op-timeout": { type: "string", default: "60" },
      "max-tree-leaves": { type: "string", default: String(1 << 20) },
      "max-operations": { type: "string", default: "64" },
      "log-level": { type: "string", default: "info" },
      workers: { type: "string", default: "1" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const integer = (name) => {
    const n = Number(values[name]);
    if (!Number.isInteger(n)) throw new Error(`--${name}: not an integer: ${values[name]}`);
    return n;
  };
  const workers = integer("workers");
  if (workers < 1 || workers > 255) throw new Error("--workers: 1 to 255");
  const opTimeout = Number(values["op-timeout"]);
  if (!Number.isFinite(opTimeout)) throw new Error(`--op-timeout: not a number`);
  return {
    host: values.host,
    port: integer("port"),
    pingInterval: integer("ping-interval"),
    pingTimeout: integer("ping-timeout"),
    maxPayload: integer("max-payload"),
    connectTimeout: integer("connect-timeout"),
    token: values["monitor-token"] ?? process.env.MSSTORM_MONITOR_TOKEN,
    opTimeout,
    maxTreeLeaves: integer("max-tree-leaves"),
    maxOperations: integer("max-operations"),
    logLevel: values["log-level"],
    workers,
  };
}

// -- clocks and numbers ------------------------------------------------------

// The wall clock in ms with a fraction, as msstorm's ts (Date.now() has whole ms only).
export const wallMs = () => round3(performance.timeOrigin + performance.now());
// RTT: a monotonic clock, in ns.
export const monotonic = () => process.hrtime.bigint();
export const msSince = (start, now) => Number(now - start) / 1e6;
export const round3 = (x) => Math.round(x * 1000) / 1000;

// Percentiles are exact: the values are sorted (nearest rank), where msstorm
// reads them from a log-linear histogram (within 0.4% of these).
function distribution(values) {
  if (values.length === 0) {
    return { min: null, p50: null, p90: null, p99: null, p999: null, max: null, mean: null };
  }
  const sorted = Float64Array.from(values).sort();
  const n = sorted.length;
  const result = { min: round3(sorted[0]) };
  for (const [name, fraction] of PERCENTILES) {
    const rank = Math.max(1, Math.min(n, Math.ceil(fraction * n)));
    result[name] = round3(sorted[rank - 1]);
  }
  result.max = round3(sorted[n - 1]);
  let total = 0;
  for (const v of values) total += v;
  result.mean = round3(total / n);
  return result;
}

export class Refusal extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
  answer() {
    return { error: { code: this.code, message: this.message } };
  }
}

// -- operations --------------------------------------------------------------

export const PENDING = 1;
export const ANSWERED = 2;
const LOST = 3; // never sent: its client had gone

export class Operation {
  constructor(id, kind, expected, monitor) {
    this.id = id;
    this.kind = kind;
    this.expected = expected; // answers that complete it
    this.monitor = monitor; // the socket id of the monitor that started it
    this.started = monotonic();
    this.ended = null;
    this.timedOut = false;
    this.timer = null;
    this.targets = []; // the client each poke went to, by slot
    this.sentAt = []; // when each poke was handed to its socket
    this.state = [];
    this.answers = []; // in arrival order: {index, rtt, delay}
    this.unsent = 0;
  }

  get done() {
    return this.ended !== null;
  }

  get received() {
    return this.answers.length;
  }

  get lost() {
    return this.done ? this.expected - this.received : this.unsent;
  }

  complete() {
    return this.received + this.lost >= this.expected;
  }

  pokeId(index) {
    return `${this.id}.${index.toString(16).padStart(INDEX_WIDTH, "0")}`;
  }

  summary() {
    const end = this.ended ?? monotonic();
    return {
      expected: this.expected,
      received: this.received,
      lost: this.lost,
      elapsedMs: round3(msSince(this.started, end)),
      rtt: distribution(this.answers.map((a) => a.rtt)),
      pingDelay: distribution(this.answers.map((a) => a.delay)),
    };
  }

  status(detail = true) {
    const status = { op: this.id, type: this.kind, done: this.done };
    if (this.timedOut) status.timedOut = true;
    status.summary = this.summary();
    if (detail) status[this.kind] = this.detail();
    return status;
  }

  detail() {
    return this.answers.map((a) => [round3(a.delay), round3(a.rtt)]);
  }
}

class Unicast extends Operation {
  constructor(id, target, monitor) {
    super(id, "unicast", 1, monitor);
    this.targets.push(target);
  }

  detail() {
    if (this.received === 0) return null;
    const [a] = this.answers;
    return { clientId: this.targets[0], pingDelay: round3(a.delay), rtt: round3(a.rtt) };
  }
}

class Broadcast extends Operation {
  constructor(id, targets, monitor) {
    super(id, "broadcast", targets.length, monitor);
    this.targets = targets;
  }
}

class Tree extends Operation {
  constructor(id, leaves, root, monitor) {
    super(id, "tree", 2 * leaves - 1, monitor);
    this.leaves = leaves;
    this.targets.push(root);
    this.parents = [-1]; // the slot of the poke whose answer caused each poke
    this.depths = [0];
    this.unreachable = 0; // pokes never to be sent: the subtrees of unsent pokes
  }

  get lost() {
    return this.done ? this.expected - this.received : this.unreachable;
  }

  leavesBelow(index) {
    return this.leaves / 2 ** this.depths[index];
  }

  grow(parent, children) {
    const first = this.targets.length;
    for (const sid of children) {
      this.targets.push(sid);
      this.parents.push(parent);
      this.depths.push(this.depths[parent] + 1);
    }
    return first;
  }

  detail() {
    return this.answers.map(({ index, rtt, delay }) => {
      const parent = this.parents[index];
      return {
        parent: parent >= 0 ? this.targets[parent] : -1,
        rtt: round3(rtt),
        pingDelay: round3(delay),
        clientId: this.targets[index],
        depth: this.depths[index],
      };
    });
  }
}

// -- the application ---------------------------------------------------------

export class Storm {
  constructor(io, { token, opTimeout, maxTreeLeaves, maxOperations, logLevel }) {
    this.io = io;
    this.logLevel = logLevel;
    this.token = token || randomBytes(18).toString("base64url");
    this.opTimeout = opTimeout;
    this.maxTreeLeaves = maxTreeLeaves;
    this.maxOperations = maxOperations;
    this.clients = io.of("/");
    this.monitors = io.of(MONITOR);
    // Connected clients in an array, for a uniform random pick in O(1)
    // (nsp.sockets is a Map: no random access).
    this.members = [];
    this.where = new Map(); // sid -> position in members
    this.running = new Map();
    this.finished = new Map();
    this.counts = {}; // answers, refusals, operations by outcome
    this.prefix = randomBytes(2).toString("hex") + "-";
    this.sequence = 0;

    this.clients.on("connection", (socket) => this.clientConnected(socket));
    this.monitors.use((socket, next) => this.authorize(socket, next));
    this.monitors.on("connection", (socket) => {
      socket.on("initiatePoke", (...args) => this.initiatePoke(socket, args));
      socket.on("statusRequest", (...args) => this.statusRequest(socket, args));
    });
  }

  count(key) {
    this.counts[key] = (this.counts[key] ?? 0) + 1;
  }

  // -- clients --

  clientConnected(socket) {
    this.where.set(socket.id, this.members.length);
    this.members.push(socket.id);
    socket.on("pokeBack", (...args) => this.pokeBack(socket, args));
    socket.on("disconnect", () => {
      const position = this.where.get(socket.id);
      if (position === undefined) return;
      this.where.delete(socket.id);
      const last = this.members.pop();
      if (position < this.members.length) {
        this.members[position] = last;
        this.where.set(last, position);
      }
    });
  }

  // k sids drawn uniformly at random, distinct when there are enough.
  pick(k) {
    const members = this.members;
    const n = members.length;
    if (n === 0) return [];
    if (n < k) return Array.from({ length: k }, () => members[Math.floor(Math.random() * n)]);
    const chosen = new Set();
    while (chosen.size < k) chosen.add(members[Math.floor(Math.random() * n)]);
    return [...chosen];
  }

  // -- monitors --

  authorize(socket, next) {
    const token = socket.handshake.auth?.token;
    if (typeof token === "string" && sameSecret(token, this.token)) return next();
    this.count("monitor refused");
    next(new Error("invalid monitor token"));
  }

  initiatePoke(monitor, args) {
    const ack = typeof args.at(-1) === "function" ? args.pop() : null;
    let answer;
    try {
      const op = this.start(monitor.id, args);
      answer = { op: op.id, expected: op.expected };
    } catch (error) {
      if (!(error instanceof Refusal)) throw error;
      this.count(`initiatePoke refused: ${error.code}`);
      answer = error.answer();
    }
    ack?.(answer);
  }

  // Answered by ack when the monitor asked for one, else with a "status" event.
  statusRequest(monitor, args) {
    const ack = typeof args.at(-1) === "function" ? args.pop() : null;
    const request = args.length ? args[0] : {};
    let status;
    try {
      if (!isObject(request)) {
        throw new Refusal("bad-request", "statusRequest takes no argument or one object");
      }
      const detail = (request.detail ?? "full") !== "summary";
      const opId = request.op ?? null;
      if (opId !== null) {
        const op = this.running.get(opId) ?? this.finished.get(opId);
        if (op === undefined) throw new Refusal("unknown-operation", `no operation ${repr(opId)}`);
        status = op.status(detail);
      } else {
        status = this.overview(detail);
      }
    } catch (error) {
      if (!(error instanceof Refusal)) throw error;
      status = error.answer();
    }
    if (ack) ack(status);
    else monitor.emit("status", status);
  }

  overview(detail) {
    return {
      clients: this.members.length,
      operations: [...this.running.values()].map((op) => op.status(detail)),
      finished: [...this.finished.keys()],
      counts: { ...this.counts },
    };
  }

  // -- starting operations --

  // The request of an initiatePoke, checked as far as this process alone can.
  checkRequest(args) {
    if (args.length !== 1 || !isObject(args[0])) {
      throw new Refusal("bad-request", "initiatePoke takes one object");
    }
    const request = args[0];
    const kind = request.type;
    if (!["unicast", "broadcast", "tree"].includes(kind)) {
      throw new Refusal("bad-type", "type must be 'unicast', 'broadcast' or 'tree'");
    }
    if (this.running.size >= this.maxOperations) {
      throw new Refusal("busy", `${this.maxOperations} operations are running already`);
    }
    if (kind === "tree") {
      const leaves = request.treeLeaves;
      if (!Number.isInteger(leaves) || leaves < 1 || 2 ** Math.round(Math.log2(leaves)) !== leaves) {
        throw new Refusal("bad-tree-leaves", "treeLeaves must be a power of two (1, 2, 4...)");
      }
      if (leaves > this.maxTreeLeaves) {
        throw new Refusal("tree-too-large", `treeLeaves is limited to ${this.maxTreeLeaves}`);
      }
    }
    return request;
  }

  start(monitor, args) {
    const request = this.checkRequest(args);
    const kind = request.type;
    if (this.members.length === 0) throw new Refusal("no-clients", "no client is connected");
    const id = `${this.prefix}${(++this.sequence).toString(16)}`;
    let op;
    if (kind === "unicast") {
      let dest = request.destId ?? null;
      if (dest === null) {
        dest = this.pick(1)[0];
      } else if (typeof dest !== "string") {
        throw new Refusal("bad-dest", "destId must be a client's sid");
      } else if (!this.clients.sockets.has(dest)) {
        throw new Refusal("unknown-client", `no client ${repr(dest)} is connected`);
      }
      op = new Unicast(id, dest, monitor);
      this.begin(op);
      this.send(op, 0, {});
    } else if (kind === "broadcast") {
      op = new Broadcast(id, [...this.clients.sockets.keys()], monitor);
      this.begin(op);
      for (let index = 0; index < op.targets.length; index++) this.send(op, index, {});
    } else {
      op = new Tree(id, request.treeLeaves, this.pick(1)[0], monitor);
      this.begin(op);
      this.sendTree(op, 0, -1);
    }
    this.check(op);
    return op;
  }

  begin(op) {
    this.running.set(op.id, op);
    this.count(`${op.kind} started`);
    op.timer = setTimeout(() => this.end(op, true), this.opTimeout * 1000);
  }

  // Poke slot `index` of `op`; false when its client has gone (the poke is lost).
  send(op, index, extra) {
    const socket = this.clients.sockets.get(op.targets[index]);
    if (socket === undefined || !socket.connected) {
      op.state[index] = LOST;
      op.unsent++;
      return false;
    }
    const poke = { id: op.pokeId(index), ts: wallMs(), ...extra };
    op.state[index] = PENDING;
    op.sentAt[index] = monotonic();
    socket.emit("poke", poke);
    return true;
  }

  sendTree(tree, index, parentId) {
    const extra = { treeLeaves: tree.leavesBelow(index), treeId: tree.id, parentId };
    if (!this.send(tree, index, extra)) {
      // neither it nor anything below it will be sent
      tree.unreachable += 2 * tree.leavesBelow(index) - 1;
    }
  }

  // -- answers --

  // A pokeBack's argument and its poke's operation id and slot ("<op>.<slot in hex>"),
  // the id null when it is not of that form; null when the client broke the rules.
  readAnswer(socket, args) {
    const answer = args.length === 1 ? args[0] : null;
    if (!isObject(answer)) return this.broken(socket, "pokeBack takes one object");
    if (typeof answer.id !== "string" || typeof answer.delay !== "number") {
      return this.broken(socket, "pokeBack needs a string id and a numeric delay");
    }
    if (typeof answer.serverTs !== "number") {
      return this.broken(socket, "pokeBack needs a numeric serverTs");
    }
    const dot = answer.id.lastIndexOf(".");
    const slot = answer.id.slice(dot + 1);
    if (dot < 0 || !HEX.test(slot)) return { answer, opId: null, index: -1 };
    return { answer, opId: answer.id.slice(0, dot), index: Number.parseInt(slot, 16) };
  }

  pokeBack(socket, args) {
    const now = monotonic();
    const read = this.readAnswer(socket, args);
    if (read === null) return;
    const { answer, opId, index } = read;
    const op = opId === null ? undefined : this.running.get(opId);
    if (op === undefined) {
      this.count("answers unknown or late");
      return;
    }
    if (op.targets[index] !== socket.id) {
      this.count("answers for another client's poke");
      return;
    }
    if (op.state[index] !== PENDING) {
      this.count("answers unknown or late");
      return;
    }
    op.state[index] = ANSWERED;
    op.answers.push({ index, rtt: msSince(op.sentAt[index], now), delay: answer.delay });
    this.count("answers");
    if (op instanceof Tree) this.grow(op, index, answer);
    this.check(op);
  }

  grow(tree, index, answer) {
    const leaves = tree.leavesBelow(index);
    const expected = leaves >= 2 ? leaves / 2 : null;
    if ((answer.treeLeaves ?? null) !== expected) {
      this.count("answers with a wrong treeLeaves"); // the server's count rules
    }
    if (leaves < 2) return;
    const first = tree.grow(index, this.pick(2));
    for (let child = first; child < tree.targets.length; child++) {
      this.sendTree(tree, child, tree.targets[index]);
    }
  }

  broken(socket, why) {
    this.count("malformed pokeBacks");
    if (this.logLevel === "debug") console.error(`closing client ${socket.id}: ${why}`);
    socket.disconnect(true);
    return null;
  }

  // -- ending operations --

  check(op) {
    if (!op.done && op.complete()) this.end(op, false);
  }

  end(op, timedOut) {
    if (op.done) return;
    op.ended = monotonic();
    op.timedOut = timedOut;
    clearTimeout(op.timer);
    this.running.delete(op.id);
    this.finished.set(op.id, op);
    while (this.finished.size > KEEP_FINISHED) {
      this.finished.delete(this.finished.keys().next().value);
    }
    this.count(`${op.kind} ${timedOut ? "timed out" : "completed"}`);
    // the final status goes to the monitor that started the operation
    this.monitors.sockets.get(op.monitor)?.emit("status", op.status());
  }
}

export function isObject(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

// A string as Python's repr() writes it, so that messages read as msstorm's.
export function repr(value) {
  if (typeof value !== "string") return JSON.stringify(value);
  return value.includes("'") && !value.includes('"') ? `"${value}"` : `'${value}'`;
}

// Constant-time comparison of two strings of any lengths.
function sameSecret(a, b) {
  const digest = (s) => createHash("sha256").update(s).digest();
  return timingSafeEqual(digest(a), digest(b)) && a === b;
}

// -- main --------------------------------------------------------------------

export function logger(opts) {
  return (message) => {
    if (opts.logLevel !== "error" && opts.logLevel !== "warning") {
      console.error(`${new Date().toISOString()} messagestorm ${message}`);
    }
  };
}

// One socket.io server on the port, its MessageStorm made by `makeStorm`; in a
// cluster worker, with the cluster adapter (cluster.mjs).
export function serve(opts, { makeStorm = (io) => new Storm(io, opts), adapter, label } = {}) {
  const log = logger(opts);
  const httpServer = createServer();
  const io = new Server(httpServer, {
    pingInterval: opts.pingInterval,
    pingTimeout: opts.pingTimeout,
    maxHttpBufferSize: opts.maxPayload,
    connectTimeout: opts.connectTimeout,
    // compression off, as msstorm: WebSocket frames and polling responses
    perMessageDeflate: false,
    httpCompression: false,
    ...(adapter ? { adapter } : {}),
  });
  const storm = makeStorm(io);
  httpServer.on("error", (error) => {
    console.error(`messagestorm.mjs: ${error.message}`);
    process.exit(1);
  });
  httpServer.listen(opts.port, opts.host, () => {
    if (!opts.token) log(`monitor token: ${storm.token}`);
    const { port } = httpServer.address();
    const who = label ? `${label}, pid ${process.pid}` : `pid ${process.pid}`;
    log(`listening on http://${opts.host}:${port} (socket.io ${VERSION}, ${who})`);
  });
  const stop = () => {
    log(`shutting down: closing ${io.engine.clientsCount} connections`);
    io.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  return storm;
}

function main() {
  let opts;
  try {
    opts = options(process.argv.slice(2));
  } catch (error) {
    console.error(`messagestorm.mjs: ${error.message}\n${USAGE}`);
    process.exit(2);
  }
  if (opts.workers > 1) {
    // loaded here, once this module has been evaluated: cluster.mjs imports from it
    import("./cluster.mjs").then(({ runCluster }) => runCluster(opts));
  } else {
    serve(opts);
  }
}

main();
