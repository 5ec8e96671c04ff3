// Interop driver: runs one scenario with the real `socket.io-client` against an
// echo server (examples/echo.py or reference_echo.mjs) and prints one JSON object
// with what it observed.
//
// usage: node client.mjs SCENARIO URL [PARAMS_JSON]
//
// Exit 0 + JSON on stdout when the scenario ran to completion (the pytest side
// judges the result); exit 2 + message on stderr when it could not (timeout,
// unexpected connect_error, ...).
//
// Binary values cross the JSON boundary (both PARAMS_JSON and the output) as
// tagged objects: {"$buffer": "<base64>"} is a Node Buffer.  On input,
// {"$uint8array": "<base64>"} makes a Uint8Array.  Any other binary type received
// would be printed as {"$arraybuffer": ...} / {"$view": name, ...} so that it
// never compares equal to a Buffer.
import { io } from "socket.io-client";

const [scenario, url, paramsJson = "{}"] = process.argv.slice(2);
if (!scenario || !url) {
  process.stderr.write("usage: node client.mjs SCENARIO URL [PARAMS_JSON]\n");
  process.exit(2);
}
const params = decode(JSON.parse(paramsJson));
const TIMEOUT_MS = params.timeout_ms ?? 4000; // the whole scenario, so we never hang
const SETTLE_MS = params.settle_ms ?? 300; // extra wait to catch duplicate events

const state = {}; // results so far; dumped on stderr if the scenario fails

function encode(v) {
  if (Buffer.isBuffer(v)) return { $buffer: v.toString("base64") };
  if (v instanceof ArrayBuffer) return { $arraybuffer: Buffer.from(v).toString("base64") };
  if (ArrayBuffer.isView(v)) {
    const data = Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64");
    return { $view: v.constructor.name, data };
  }
  if (Array.isArray(v)) return v.map(encode);
  if (v && typeof v === "object") {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, encode(x)]));
  }
  return v;
}

function decode(v) {
  if (Array.isArray(v)) return v.map(decode);
  if (v && typeof v === "object") {
    if (typeof v.$buffer === "string") return Buffer.from(v.$buffer, "base64");
    if (typeof v.$uint8array === "string") return new Uint8Array(Buffer.from(v.$uint8array, "base64"));
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, decode(x)]));
  }
  return v;
}

function fail(message) {
  process.stderr.write(`client.mjs ${scenario}: ${message}\nstate so far: ${JSON.stringify(encode(state))}\n`);
  process.exit(2);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// The transports the scenario's sockets use: params.transports, else the
// client's default (HTTP long-polling, then the upgrade to WebSocket).
const TRANSPORTS = params.transports ?? ["polling", "websocket"];

// A socket on its own Engine.IO connection (forceNew) and no auto-reconnect
// unless asked: a reconnect would hide what the server did.
function connect(nsp, opts = {}) {
  return io(url + nsp, { transports: TRANSPORTS, reconnection: false, forceNew: true, ...opts });
}

// Resolves once the socket's Engine.IO connection has settled on its last
// transport: at once for a single transport, after the upgrade otherwise.
function settled(socket) {
  const engine = socket.io.engine;
  if (TRANSPORTS.length === 1 || engine.transport.name === TRANSPORTS[TRANSPORTS.length - 1]) {
    return Promise.resolve();
  }
  return new Promise((resolve) => engine.once("upgrade", resolve));
}

// Resolves on "connect", rejects on "connect_error".  Must be called in the same
// tick as the socket was created, before any event can arrive.
function connected(socket) {
  return new Promise((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("connect_error", (err) =>
      reject(new Error(`connect_error on ${socket.nsp}: ${err.message}`)),
    );
  });
}

// Records every emission of `event` (as map(...args), default: the args array)
// into the returned array; `await seen.until(n)` waits for n records.
function record(emitter, event, map = (...args) => args) {
  const seen = [];
  const waiters = [];
  emitter.on(event, (...args) => {
    seen.push(map(...args));
    for (const wake of waiters.splice(0)) wake();
  });
  seen.until = async (n) => {
    while (seen.length < n) await new Promise((resolve) => waiters.push(resolve));
    return seen;
  };
  return seen;
}

// Only the reason: the second "disconnect" argument holds non-JSON objects.
const reasonOnly = (reason) => reason;

// Emits `message` and waits for the matching `message-back` (one at a time).
async function echo(socket, ...args) {
  const back = new Promise((resolve) => socket.once("message-back", (...got) => resolve(got)));
  socket.emit("message", ...args);
  return back;
}

// Two clients A and B on separate connections; A is removed by `act(a)`, and we
// report what A saw and what B received as `gone`.
async function removeA(act) {
  const a = connect("/");
  const b = connect("/");
  await Promise.all([connected(a), connected(b)]);
  await Promise.all([settled(a), settled(b)]);
  // examples/echo.py only sends `gone` to sockets that emitted `watch`; the
  // reference sends it to all.  The echo round trip proves `watch` was handled
  // before A goes (one socket's events are handled in order).
  b.emit("watch");
  await echo(b, "watching");
  state.a_id = a.id; // socket.id is deleted on disconnect
  state.a_disconnect = record(a, "disconnect", reasonOnly);
  state.gone = record(b, "gone");
  act(a);
  await Promise.all([state.a_disconnect.until(1), state.gone.until(1)]);
  await sleep(SETTLE_MS);
  state.b_echo = await echo(b, "still here"); // B is unaffected
  return state;
}

const scenarios = {
  // params: auth_main, auth_custom.  "/custom" is multiplexed on main's
  // connection; "bare" is a separate connection whose CONNECT has no payload.
  async "connect-auth"() {
    const main = connect("/", { auth: params.auth_main });
    const custom = main.io.socket("/custom", { auth: params.auth_custom });
    const bare = connect("/");
    const handshake = record(main.io.engine, "handshake", (data) => data);
    const auths = [main, custom, bare].map((s) => record(s, "auth"));
    await Promise.all([main, custom, bare].map(connected));
    await Promise.all(auths.map((a) => a.until(1)));
    await Promise.all([main, bare].map(settled));
    await sleep(SETTLE_MS);
    const report = (s, a) => ({
      id: s.id,
      auth: a,
      engine_id: s.io.engine.id,
      transport: s.io.engine.transport.name,
    });
    Object.assign(state, {
      handshake: handshake[0],
      main: report(main, auths[0]),
      custom: report(custom, auths[1]),
      bare: report(bare, auths[2]),
    });
    return state;
  },

  // params: messages = [[args...], ...]; each is sent as `message` in order.
  async events() {
    const s = connect("/");
    await connected(s);
    state.received = record(s, "message-back");
    for (const args of params.messages) s.emit("message", ...args);
    await state.received.until(params.messages.length);
    await sleep(SETTLE_MS);
    return state;
  },

  // params: messages; all sent at once as `message-with-ack`, so ack ids must be
  // matched correctly.  acks[i] is what the ack of messages[i] was called with.
  async ack() {
    const s = connect("/");
    await connected(s);
    state.acks = await Promise.all(
      params.messages.map(
        (args) => new Promise((resolve) => s.emit("message-with-ack", ...args, (...got) => resolve(got))),
      ),
    );
    return state;
  },

  // params: args (sent with `ask`), reply (what we ack the `question` with).
  async "server-ack"() {
    const s = connect("/");
    await connected(s);
    state.question = [];
    s.on("question", (...args) => {
      const ack = args.pop();
      state.question.push({ args, ack_is_function: typeof ack === "function" });
      if (typeof ack === "function") ack(...params.reply);
    });
    state.answer = record(s, "answer");
    s.emit("ask", ...params.args);
    await state.answer.until(1);
    await sleep(SETTLE_MS);
    return state;
  },

  // params: namespace.  The refused namespace shares the connection with "/",
  // which must keep working afterwards.
  async "bad-namespace"() {
    const main = connect("/");
    const bad = main.io.socket(params.namespace);
    const refused = new Promise((resolve) => bad.once("connect_error", resolve));
    bad.on("connect", () => (state.bad_connected_event = true));
    await connected(main);
    const err = await refused;
    await sleep(SETTLE_MS);
    Object.assign(state, {
      error: { message: err.message, data: err.data ?? null },
      bad_connected: bad.connected,
      bad_active: bad.active, // false: the client gives up, no retry
      main_connected: main.connected,
      main_echo: await echo(main, "after refusal"),
    });
    return state;
  },

  async "server-disconnect"() {
    return removeA((a) => a.emit("disconnect-me"));
  },

  async "client-disconnect"() {
    return removeA((a) => a.disconnect());
  },

  // params: pings.  Stay idle until the server has pinged `pings` times (or we
  // got disconnected), then check the connection still echoes.
  async heartbeat() {
    const s = connect("/");
    await connected(s);
    state.disconnects = record(s, "disconnect", reasonOnly);
    state.pings = 0;
    await new Promise((resolve) => {
      s.io.on("ping", () => ++state.pings >= params.pings && resolve());
      s.on("disconnect", resolve);
    });
    state.echo = s.connected ? await echo(s, "awake") : null;
    return state;
  },

  // A stops answering pings; the server must close it (ping timeout) and tell B.
  async "ping-timeout"() {
    return removeA((a) => {
      // Swallow every packet A would send (its pongs included) by replacing its
      // transport's send(): a WebSocket's close frame, or a poll, still go out.
      a.io.engine.transport.send = () => {};
    });
  },

  // params: restart_marker.  Connects with reconnection on, tells the test it is
  // ready (one line on stdout), and after the server has restarted (the test
  // does it) reconnects by itself and echoes again.
  async reconnect() {
    const s = connect("/", { reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 500 });
    await connected(s);
    await settled(s);
    state.first = { id: s.id, transport: s.io.engine.transport.name };
    state.first_echo = await echo(s, "before");
    state.disconnects = record(s, "disconnect", reasonOnly);
    const again = new Promise((resolve) => s.io.once("reconnect", resolve));
    process.stdout.write(params.restart_marker + "\n");
    await again;
    await settled(s);
    state.second = { id: s.id, transport: s.io.engine.transport.name };
    state.second_echo = await echo(s, "after");
    s.disconnect();
    return state;
  },
};

const run = scenarios[scenario];
if (!run) fail(`unknown scenario; known: ${Object.keys(scenarios).join(", ")}`);
setTimeout(() => fail(`timed out after ${TIMEOUT_MS} ms`), TIMEOUT_MS);
run().then(
  (result) => process.stdout.write(JSON.stringify(encode(result)) + "\n", () => process.exit(0)),
  (err) => fail(err.stack ?? String(err)),
);
