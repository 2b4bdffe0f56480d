// The Node counterpart of bench/fanout_load.py (same options, same JSON on stdout), built on
// the `ws` client. bench/fanout.py runs it with `--loadgen node`; it exists to measure which
// load generator can push more deliveries through the same server (see docs/benchmarks.md).
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import WebSocket from "ws";

const { values: opts } = parseArgs({
  options: {
    url: { type: "string" },
    channel: { type: "string", default: "bench" },
    subscribers: { type: "string", default: "1000" },
    messages: { type: "string", default: "1000" },
    warmup: { type: "string", default: "100" },
    window: { type: "string", default: "32" },
    rate: { type: "string", default: "20" },
    "latency-seconds": { type: "string", default: "4" },
    "server-pid": { type: "string" },
    "watch-cpus": { type: "string", default: "" },
    timeout: { type: "string", default: "60" },
  },
});
const channel = opts.channel;
const timeoutMs = Number(opts.timeout) * 1000;
const watchCpus = opts["watch-cpus"].split(",").filter(Boolean).map(Number);
const log = (text) => process.stderr.write(`[load] ${text}\n`);
const CHAR_M = 0x6d; // byte 9 of '{"type":"message"' ("welcome", "ack", "error" differ there)

function withTimeout(promise, what) {
  let timer;
  const expiry = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), timeoutMs);
  });
  return Promise.race([promise, expiry]).finally(() => clearTimeout(timer));
}

// Deliveries across all subscribers; `latencies` is set during the latency phase.
const tally = { target: 0, received: 0, lastAt: 0, done: null, resolve: null, latencies: null };
function resetTally(target) {
  tally.target = target;
  tally.received = 0;
  tally.lastAt = 0;
  tally.done = new Promise((resolve) => {
    tally.resolve = resolve;
  });
}

class Client {
  constructor() {
    this.messages = 0;
    this.onOther = null; // (Buffer) => void for non-message frames
    this.others = [];
    this.waiters = [];
    this.ws = new WebSocket(opts.url, { perMessageDeflate: false });
    this.ws.on("message", (data) => this.#receive(data));
    this.ws.on("error", (err) => log(`socket error: ${err.message}`));
  }

  #receive(data) {
    if (data[9] === CHAR_M) {
      this.messages += 1;
      const now = performance.now();
      if (tally.latencies !== null) {
        const at = data.indexOf('"t":') + 4;
        tally.latencies.push(now - Number.parseFloat(data.toString("latin1", at, data.length - 2)));
      }
      tally.received += 1;
      tally.lastAt = now;
      if (tally.received === tally.target) tally.resolve();
    } else if (this.onOther !== null) {
      this.onOther(data);
    } else if (this.waiters.length > 0) {
      this.waiters.shift()(data);
    } else {
      this.others.push(data);
    }
  }

  next() {
    if (this.others.length > 0) return Promise.resolve(this.others.shift());
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  async open() {
    await new Promise((resolve, reject) => {
      this.ws.once("open", resolve);
      this.ws.once("error", reject);
    });
    const welcome = JSON.parse(await this.next());
    if (welcome.type !== "welcome") throw new Error(`expected welcome, got ${welcome.type}`);
  }

  async request(frame) {
    this.ws.send(JSON.stringify(frame));
    for (;;) {
      const reply = JSON.parse(await this.next());
      if (reply.type === "ack" && reply.requestId === frame.requestId) return;
      if (reply.type === "error") throw new Error(`${frame.type} refused: ${reply.message}`);
    }
  }
}

async function openSubscribers(count) {
  const clients = [];
  let next = 0;
  async function worker() {
    while (next < count) {
      const index = next++;
      const client = new Client();
      await client.open();
      await client.request({ type: "subscribe", channel, requestId: `s${index}` });
      clients.push(client);
    }
  }
  await withTimeout(Promise.all(Array.from({ length: 64 }, worker)), "subscribers");
  return clients;
}

function publishText(seq, sentAt) {
  return `{"type":"publish","channel":"${channel}","requestId":"p${seq}","data":{"seq":${seq},"pad":"${"x".repeat(24)}","t":${sentAt}}}`;
}

function cpuSeconds(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, "latin1").split(")").pop().trim().split(/\s+/);
  return (Number(fields[11]) + Number(fields[12])) / 100; // USER_HZ is 100 on Linux
}

function cpuBusyTicks() {
  const lines = readFileSync("/proc/stat", "latin1").split("\n");
  return watchCpus.map((cpu) => {
    const line = lines.find((l) => l.startsWith(`cpu${cpu} `));
    const ticks = line.trim().split(/\s+/).slice(1, 9).map(Number);
    const total = ticks.reduce((a, b) => a + b, 0);
    return [total - ticks[3] - ticks[4], total];
  });
}

function busyShare(before, after) {
  return before.map(([b0, t0], i) => {
    const [b1, t1] = after[i];
    return t1 > t0 ? (b1 - b0) / (t1 - t0) : 0;
  });
}

async function runThroughput(publisher, subscribers, messages, window, serverPid) {
  for (const sub of subscribers) sub.messages = 0;
  resetTally(messages * subscribers.length);
  const texts = Array.from({ length: messages }, (_, seq) => publishText(seq, 0));
  let sent = 0;
  let acked = 0;
  let resolveAcked;
  let rejectAcked;
  const allAcked = new Promise((resolve, reject) => {
    resolveAcked = resolve;
    rejectAcked = reject;
  });
  publisher.onOther = (data) => {
    if (!data.toString("latin1", 0, 13).startsWith('{"type":"ack"')) {
      rejectAcked(new Error(`publish refused: ${data}`));
      return;
    }
    acked += 1;
    if (sent < messages) publisher.ws.send(texts[sent++]);
    else if (acked === messages) resolveAcked();
  };
  const serverBefore = serverPid ? cpuSeconds(serverPid) : 0;
  const loadBefore = process.cpuUsage();
  const busyBefore = cpuBusyTicks();
  const started = performance.now();
  while (sent < Math.min(window, messages)) publisher.ws.send(texts[sent++]);
  try {
    await withTimeout(Promise.all([allAcked, tally.done]), "throughput");
  } catch (err) {
    log(err.message);
  }
  publisher.onOther = null;
  const elapsed = ((tally.lastAt || performance.now()) - started) / 1000;
  const load = process.cpuUsage(loadBefore);
  const counts = subscribers.map((sub) => sub.messages);
  const deliveries = counts.reduce((a, b) => a + b, 0);
  return {
    messages,
    deliveries,
    loss: counts.reduce((a, c) => a + Math.max(0, messages - c), 0),
    duplicates: counts.reduce((a, c) => a + Math.max(0, c - messages), 0),
    short_subscribers: counts.filter((c) => c < messages).length,
    elapsed_s: elapsed,
    server_cpu: serverPid ? (cpuSeconds(serverPid) - serverBefore) / elapsed : 0,
    load_cpu: (load.user + load.system) / 1e6 / elapsed,
    cpu_busy: busyShare(busyBefore, cpuBusyTicks()),
    deliveries_per_s: deliveries / elapsed,
  };
}

async function runLatency(publisher, subscribers, rate, seconds) {
  const count = Math.max(1, Math.floor(rate * seconds));
  resetTally(count * subscribers.length);
  const latencies = [];
  tally.latencies = latencies;
  publisher.onOther = () => {};
  const busyBefore = cpuBusyTicks();
  const started = performance.now();
  for (let seq = 0; seq < count; seq++) {
    const delay = started + (seq * 1000) / rate - performance.now();
    if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
    publisher.ws.send(publishText(seq, performance.now()));
  }
  try {
    await withTimeout(tally.done, "latency deliveries");
  } catch (err) {
    log(err.message);
  }
  tally.latencies = null;
  publisher.onOther = null;
  const busy = busyShare(busyBefore, cpuBusyTicks());
  latencies.sort((a, b) => a - b);
  const pct = (p) =>
    latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] : NaN;
  return {
    messages: count,
    deliveries: latencies.length,
    loss: count * subscribers.length - latencies.length,
    p50_ms: pct(0.5),
    p99_ms: pct(0.99),
    max_ms: latencies.length ? latencies[latencies.length - 1] : NaN,
    cpu_busy: busy,
  };
}

const began = performance.now();
const subscribers = await openSubscribers(Number(opts.subscribers));
const publisher = new Client();
await withTimeout(publisher.open(), "publisher");
log(`${subscribers.length} subscribers ready in ${((performance.now() - began) / 1000).toFixed(1)} s`);
const serverPid = opts["server-pid"] ? Number(opts["server-pid"]) : null;
let result;
for (const [messages, pid] of [
  [Number(opts.warmup), null],
  [Number(opts.messages), serverPid],
]) {
  result = await runThroughput(publisher, subscribers, messages, Number(opts.window), pid);
  log(
    `${pid ? "throughput" : "warm-up"}: ${Math.round(result.deliveries_per_s)} deliveries/s, ` +
      `loss ${result.loss}, load process ${(result.load_cpu * 100).toFixed(0)}%, ` +
      `CPUs busy ${result.cpu_busy.map((s) => (s * 100).toFixed(0) + "%").join(", ")}`,
  );
}
const latency = await runLatency(publisher, subscribers, Number(opts.rate), Number(opts["latency-seconds"]));
log(`latency: p50 ${latency.p50_ms.toFixed(2)} ms, p99 ${latency.p99_ms.toFixed(2)} ms`);
for (const client of [...subscribers, publisher]) client.ws.terminate();
process.stdout.write(
  `${JSON.stringify({ subscribers: subscribers.length, throughput: result, latency })}\n`,
);
process.exit(0);
