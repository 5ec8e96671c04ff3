// MessageStorm on Node's socket.io beyond one process, as its users deploy it:
// the cluster module forks N workers that share one port (the primary accepts and
// hands connections round-robin), and @socket.io/cluster-adapter links their
// socket.io servers through the primary (setupPrimary).
//
// No sticky sessions (@socket.io/sticky): the clients here, msstorm's swarm and
// monitor, use the WebSocket transport only, one connection that stays on the worker
// that accepted it. HTTP long-polling, whose requests may reach any worker, would need them.
//
// How an operation crosses workers. The worker whose monitor sent the initiatePoke
// is the operation's origin: it keeps the operation (answers, timeout, final status
// to that monitor). Every worker pokes its own clients only, with socket.emit, and
// times each poke on its own clock from write to answer, as one process does; it
// sends the answers to the origin. Workers talk with the adapter's serverSideEmit:
// - QUESTION, with an ack, to all the others: a census of clients (before an
//   operation, for a uniform random pick over the cluster), "poke all your
//   clients" (a broadcast: one message per worker), an overview, an operation's status;
// - MAIL, no ack, for one worker (the adapter has no unicast between servers: every
//   other worker receives it and drops what is not addressed to it): pokes it is to
//   send (unicasts, tree children drawn on it) and answers for the origin, batched
//   per event-loop turn; and the end of an operation, to all.
// A tree's pokes are numbered as a heap (the root 0, the children of s are 2s+1 and
// 2s+2), so that the worker answering a poke names its children without asking anyone.

import cluster from "node:cluster";
import { randomBytes } from "node:crypto";
import { createAdapter, setupPrimary } from "@socket.io/cluster-adapter";
import {
  ANSWERED,
  INDEX_WIDTH,
  Operation,
  PENDING,
  Refusal,
  Storm,
  VERSION,
  isObject,
  logger,
  monotonic,
  msSince,
  repr,
  round3,
  serve,
  wallMs,
} from "./messagestorm.mjs";

const QUESTION = "messagestorm:question";
const MAIL = "messagestorm:mail";
const EVERYONE = -1; // MAIL for every worker
const SLOTS = 2 ** 24; // a worker's broadcast pokes are slots index * SLOTS + i: unique ids
const KEEP_ENDED = 1024; // ended operations remembered, so that late pokes are not sent

const depthOf = (slot) => 31 - Math.clz32(slot + 1);
const pokeId = (op, slot) => `${op}.${slot.toString(16).padStart(INDEX_WIDTH, "0")}`;

export function runCluster(opts) {
  if (cluster.isPrimary) primary(opts);
  else worker(opts);
}

// -- the primary: forks the workers, relays the adapter's messages ---------------

function primary(opts) {
  const log = logger(opts);
  // one token for every worker (each would draw its own)
  const token = opts.token || randomBytes(18).toString("base64url");
  if (!opts.token) log(`monitor token: ${token}`);
  setupPrimary();
  let listening = 0;
  let alive = opts.workers;
  let stopping = false;
  cluster.on("listening", (_worker, address) => {
    if (++listening === opts.workers) {
      log(
        `listening on http://${opts.host}:${address.port} (socket.io ${VERSION}, ` +
          `${opts.workers} workers, primary pid ${process.pid})`,
      );
    }
  });
  cluster.on("exit", (w, code, signal) => {
    if (!stopping) console.error(`messagestorm.mjs: worker pid ${w.process.pid} ended (${signal ?? code})`);
    // A worker that dies is not replaced: its clients were lost, a benchmark must see it.
    if (--alive === 0) process.exit(stopping ? 0 : 1);
  });
  for (let index = 0; index < opts.workers; index++) {
    cluster.fork({ MESSAGESTORM_WORKER: String(index), MSSTORM_MONITOR_TOKEN: token });
  }
  const stop = () => {
    stopping = true;
    for (const w of Object.values(cluster.workers)) w.process.kill("SIGTERM");
    setTimeout(() => process.exit(0), 5000).unref();
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}

function worker(opts) {
  const index = Number(process.env.MESSAGESTORM_WORKER);
  const mine = { ...opts, token: process.env.MSSTORM_MONITOR_TOKEN };
  serve(mine, {
    adapter: createAdapter(),
    makeStorm: (io) => new ClusterStorm(io, mine, index),
    label: `worker ${index}`,
  });
}

// -- an operation, at its origin ----------------------------------------------------

class Outcome extends Operation {
  constructor(id, kind, expected, monitor) {
    super(id, kind, expected, monitor); // expected: null until every worker said (a broadcast)
    this.reportedLost = 0; // pokes never sent (a tree: with their subtrees), as workers said
  }

  get lost() {
    return this.done ? this.expected - this.received : this.reportedLost;
  }

  complete() {
    return this.expected !== null && super.complete();
  }

  detail() {
    if (this.kind === "broadcast") return super.detail();
    if (this.kind === "unicast") {
      if (this.received === 0) return null;
      const [a] = this.answers;
      return { clientId: a.sid, pingDelay: round3(a.delay), rtt: round3(a.rtt) };
    }
    return this.answers.map((a) => ({
      parent: a.parent,
      rtt: round3(a.rtt),
      pingDelay: round3(a.delay),
      clientId: a.sid,
      depth: a.depth,
      worker: a.worker,
    }));
  }
}

// A worker's share of an operation: the pokes it sent its own clients.
class Part {
  constructor(op, origin, kind, leaves = 0, census = null) {
    this.op = op;
    this.origin = origin;
    this.kind = kind;
    this.leaves = leaves;
    this.census = census; // a tree's: the clients of each worker when it started
    this.targets = new Map(); // slot -> sid
    this.sentAt = new Map();
    this.state = new Map();
    this.parents = new Map(); // slot -> the parent's sid (-1 for the root)
  }

  leavesBelow(slot) {
    return this.leaves / 2 ** depthOf(slot);
  }
}

// -- the application, one per worker ---------------------------------------------

class ClusterStorm extends Storm {
  constructor(io, opts, index) {
    super(io, opts);
    this.index = index;
    this.prefix = `${randomBytes(2).toString("hex")}-${index}-`; // op ids unique in the cluster
    this.parts = new Map();
    this.ended = new Set();
    this.outbox = new Map(); // worker -> {pokes, answers, lost} to send this turn
    this.clients.on(QUESTION, (question, reply) => reply(this.answer(question)));
    this.clients.on(MAIL, (mail) => this.receive(mail));
  }

  // -- talking to the other workers --

  // The answers of every other worker to `question` (those in within the adapter's 5 s).
  ask(question) {
    return new Promise((resolve) => {
      this.clients.serverSideEmit(QUESTION, question, (error, answers) => {
        if (error) this.count("workers not answering in time");
        resolve((answers ?? []).filter((a) => a !== null));
      });
    });
  }

  answer(q) {
    if (!isObject(q)) return null;
    if (q.q === "census") {
      const has = typeof q.sid === "string" && this.clients.sockets.has(q.sid);
      return { worker: this.index, clients: this.members.length, has, pid: process.pid };
    }
    if (q.q === "broadcast") return { expected: this.broadcastHere(q.op, q.origin) };
    if (q.q === "overview") return this.mine(q.detail);
    if (q.q === "status") {
      const op = this.running.get(q.op) ?? this.finished.get(q.op);
      return op === undefined ? null : op.status(q.detail);
    }
    return null;
  }

  box(worker) {
    let box = this.outbox.get(worker);
    if (box === undefined) {
      if (this.outbox.size === 0) setImmediate(() => this.flush());
      box = { pokes: [], answers: [], lost: [] };
      this.outbox.set(worker, box);
    }
    return box;
  }

  flush() {
    for (const [to, box] of this.outbox) this.clients.serverSideEmit(MAIL, { to, ...box });
    this.outbox.clear();
  }

  receive(mail) {
    if (!isObject(mail) || (mail.to !== this.index && mail.to !== EVERYONE)) return;
    for (const op of mail.ended ?? []) this.forget(op);
    for (const poke of mail.pokes ?? []) this.pokeHere(poke);
    for (const answer of mail.answers ?? []) this.absorb(answer);
    for (const [op, n] of mail.lost ?? []) this.absorbLost(op, n);
  }

  // A poke for worker `worker` to send.
  post(worker, poke) {
    if (worker === this.index) this.pokeHere(poke);
    else this.box(worker).pokes.push(poke);
  }

  // An answer for the origin: [op, rtt, delay, sid, parent, depth, worker].
  report(origin, answer) {
    if (origin === this.index) this.absorb(answer);
    else this.box(origin).answers.push(answer);
  }

  lose(origin, op, n) {
    if (origin === this.index) this.absorbLost(op, n);
    else this.box(origin).lost.push([op, n]);
  }

  // -- the cluster's clients --

  async census(sid) {
    const question = { q: "census", sid };
    return [this.answer(question), ...(await this.ask(question))];
  }

  // k clients drawn uniformly at random among the census's (distinct when there are
  // enough), each as [worker, position among that worker's clients].
  draw(census, k) {
    const total = census.reduce((n, c) => n + c.clients, 0);
    const positions = new Set();
    const drawn = [];
    while (drawn.length < k) {
      const p = Math.floor(Math.random() * total);
      if (total >= k && positions.has(p)) continue;
      positions.add(p);
      drawn.push(p);
    }
    return drawn.map((p) => {
      for (const c of census) {
        if (p < c.clients) return [c.worker, p];
        p -= c.clients;
      }
      throw new Error("unreachable");
    });
  }

  // -- monitors --

  initiatePoke(monitor, args) {
    const ack = typeof args.at(-1) === "function" ? args.pop() : null;
    this.start(monitor.id, args).then(
      (op) => {
        ack?.({ op: op.id, expected: op.expected });
        this.check(op); // a broadcast may have been answered in full already
      },
      (error) => {
        if (!(error instanceof Refusal)) {
          console.error(error);
          error = new Refusal("internal", String(error));
        }
        this.count(`initiatePoke refused: ${error.code}`);
        ack?.(error.answer());
      },
    );
  }

  statusRequest(monitor, args) {
    const ack = typeof args.at(-1) === "function" ? args.pop() : null;
    this.status(args).then((status) => {
      if (ack) ack(status);
      else monitor.emit("status", status);
    });
  }

  async status(args) {
    const request = args.length ? args[0] : {};
    try {
      if (!isObject(request)) {
        throw new Refusal("bad-request", "statusRequest takes no argument or one object");
      }
      const detail = (request.detail ?? "full") !== "summary";
      const opId = request.op ?? null;
      if (opId === null) return await this.clusterOverview(detail);
      const op = this.running.get(opId) ?? this.finished.get(opId);
      if (op !== undefined) return op.status(detail);
      const [found] = await this.ask({ q: "status", op: opId, detail });
      if (found === undefined) throw new Refusal("unknown-operation", `no operation ${repr(opId)}`);
      return found;
    } catch (error) {
      if (!(error instanceof Refusal)) throw error;
      return error.answer();
    }
  }

  mine(detail) {
    return {
      worker: this.index,
      pid: process.pid,
      clients: this.members.length,
      operations: [...this.running.values()].map((op) => op.status(detail)),
      finished: [...this.finished.keys()],
      counts: this.counts,
    };
  }

  async clusterOverview(detail) {
    const all = [this.mine(detail), ...(await this.ask({ q: "overview", detail }))];
    all.sort((a, b) => a.worker - b.worker);
    const clients = all.reduce((n, w) => n + w.clients, 0);
    const counts = {};
    for (const w of all) {
      for (const [key, n] of Object.entries(w.counts)) counts[key] = (counts[key] ?? 0) + n;
    }
    const perWorker = Object.fromEntries(all.map((w) => [w.worker, { clients: w.clients, pid: w.pid }]));
    return {
      clients,
      cluster: { worker: this.index, workers: all.length, clients, perWorker },
      operations: all.flatMap((w) => w.operations),
      finished: all.flatMap((w) => w.finished),
      counts,
    };
  }

  // -- starting operations, at the origin --

  async start(monitor, args) {
    const request = this.checkRequest(args);
    const kind = request.type;
    const dest = kind === "unicast" ? (request.destId ?? null) : null;
    const census = await this.census(typeof dest === "string" ? dest : undefined);
    if (census.every((c) => c.clients === 0)) {
      throw new Refusal("no-clients", "no client is connected");
    }
    const id = `${this.prefix}${(++this.sequence).toString(16)}`;
    const poke = { op: id, origin: this.index, kind, slot: 0 };
    if (kind === "unicast") {
      let worker;
      if (dest === null) {
        [[worker, poke.pick]] = this.draw(census, 1);
      } else if (typeof dest !== "string") {
        throw new Refusal("bad-dest", "destId must be a client's sid");
      } else {
        const holder = census.find((c) => c.has);
        if (holder === undefined) throw new Refusal("unknown-client", `no client ${repr(dest)} is connected`);
        [worker, poke.sid] = [holder.worker, dest];
      }
      const op = new Outcome(id, kind, 1, monitor);
      this.begin(op);
      this.post(worker, poke);
      return op;
    }
    if (kind === "broadcast") {
      const op = new Outcome(id, kind, null, monitor);
      this.begin(op);
      // asked first: the other workers poke theirs while this one pokes its own
      const asking = this.ask({ q: "broadcast", op: id, origin: this.index });
      const here = this.broadcastHere(id, this.index);
      const there = await asking;
      if (op.expected === null) op.expected = there.reduce((n, a) => n + a.expected, here);
      return op;
    }
    const op = new Outcome(id, kind, 2 * request.treeLeaves - 1, monitor);
    this.begin(op);
    let worker;
    [[worker, poke.pick]] = this.draw(census, 1);
    poke.leaves = request.treeLeaves;
    poke.census = census.map((c) => ({ worker: c.worker, clients: c.clients }));
    poke.parent = -1;
    this.post(worker, poke);
    return op;
  }

  // -- this worker's pokes --

  part(poke) {
    let part = this.parts.get(poke.op);
    if (part === undefined) {
      part = new Part(poke.op, poke.origin, poke.kind, poke.leaves, poke.census);
      this.parts.set(poke.op, part);
    }
    return part;
  }

  sendHere(part, slot, sid, extra) {
    const socket = this.clients.sockets.get(sid);
    if (socket === undefined || !socket.connected) return false;
    const poke = { id: pokeId(part.op, slot), ts: wallMs(), ...extra };
    part.targets.set(slot, sid);
    part.state.set(slot, PENDING);
    part.sentAt.set(slot, monotonic());
    socket.emit("poke", poke);
    return true;
  }

  // A broadcast's poke to each client of this worker; how many there were.
  broadcastHere(op, origin) {
    if (this.ended.has(op)) return 0;
    const part = this.part({ op, origin, kind: "broadcast" });
    const sids = [...this.clients.sockets.keys()];
    let slot = this.index * SLOTS;
    let unsent = 0;
    for (const sid of sids) if (!this.sendHere(part, slot++, sid, {})) unsent++;
    if (unsent) this.lose(origin, op, unsent);
    return sids.length;
  }

  // A unicast's or a tree's poke, to a client of this worker (by sid, or its
  // position among them when drawn).
  pokeHere(poke) {
    if (this.ended.has(poke.op)) return; // over: nothing more is sent for it
    const part = this.part(poke);
    const sid = poke.sid ?? (this.members.length ? this.members[poke.pick % this.members.length] : undefined);
    const tree = part.kind === "tree";
    const extra = tree ? { treeLeaves: part.leavesBelow(poke.slot), treeId: part.op, parentId: poke.parent } : {};
    if (sid !== undefined && this.sendHere(part, poke.slot, sid, extra)) {
      if (tree) part.parents.set(poke.slot, poke.parent);
    } else {
      // never sent, nor anything below it
      this.lose(part.origin, part.op, tree ? 2 * part.leavesBelow(poke.slot) - 1 : 1);
    }
  }

  pokeBack(socket, args) {
    const now = monotonic();
    const read = this.readAnswer(socket, args);
    if (read === null) return;
    const { answer, opId, index: slot } = read;
    const part = opId === null ? undefined : this.parts.get(opId);
    if (part === undefined) {
      this.count("answers unknown or late");
      return;
    }
    if (part.targets.get(slot) !== socket.id) {
      this.count("answers for another client's poke");
      return;
    }
    if (part.state.get(slot) !== PENDING) {
      this.count("answers unknown or late");
      return;
    }
    part.state.set(slot, ANSWERED);
    const rtt = msSince(part.sentAt.get(slot), now);
    this.count("answers");
    if (part.kind === "broadcast") {
      this.report(part.origin, [part.op, rtt, answer.delay]);
      return;
    }
    const tree = part.kind === "tree";
    const parent = tree ? part.parents.get(slot) : null;
    const depth = tree ? depthOf(slot) : null;
    this.report(part.origin, [part.op, rtt, answer.delay, socket.id, parent, depth, this.index]);
    if (tree) this.growHere(part, slot, socket.id, answer);
  }

  // The tree rule, on the worker that got the answer: two children drawn over the cluster.
  growHere(part, slot, sid, answer) {
    const leaves = part.leavesBelow(slot);
    const expected = leaves >= 2 ? leaves / 2 : null;
    if ((answer.treeLeaves ?? null) !== expected) {
      this.count("answers with a wrong treeLeaves"); // the server's count rules
    }
    if (leaves < 2) return;
    this.draw(part.census, 2).forEach(([worker, pick], i) => {
      const { op, origin, kind, census } = part;
      this.post(worker, { op, origin, kind, leaves: part.leaves, census, slot: 2 * slot + 1 + i, pick, parent: sid });
    });
  }

  // -- answers, at the origin --

  absorb([opId, rtt, delay, sid = null, parent = null, depth = null, worker = null]) {
    const op = this.running.get(opId);
    if (op === undefined) {
      this.count("answers in after their operation ended");
      return;
    }
    op.answers.push({ rtt, delay, sid, parent, depth, worker });
    this.check(op);
  }

  absorbLost(opId, n) {
    const op = this.running.get(opId);
    if (op === undefined) return;
    op.reportedLost += n;
    this.check(op);
  }

  end(op, timedOut) {
    if (op.done) return;
    if (op.expected === null) op.expected = op.received + op.reportedLost; // a worker never said
    super.end(op, timedOut);
    this.forget(op.id);
    this.clients.serverSideEmit(MAIL, { to: EVERYONE, ended: [op.id] });
  }

  forget(op) {
    this.parts.delete(op);
    this.ended.add(op);
    if (this.ended.size > KEEP_ENDED) this.ended.delete(this.ended.values().next().value);
  }
}
