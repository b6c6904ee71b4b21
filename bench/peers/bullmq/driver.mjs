// BullMQ driver for the benchmark panel: the same workload as Psychiq's load
// example and bench/sidekiq_drain.rb, in BullMQ's own terms.
//
//   node driver.mjs push N       enqueue N no-op jobs ("noop") on queue "default"
//                                with Queue.addBulk, 1000 jobs a call
//   node driver.mjs drain N C    run one Worker on "default" at concurrency C until
//                                N jobs have completed
//
// REDIS_URL (default redis://127.0.0.1:6399) names the Redis; LOG=warn|default
// (see drain). Keys are BullMQ's own (prefix "bull"): bull:default:*.
import { createRequire } from "node:module";
import { Queue, Worker } from "bullmq";

const require = createRequire(import.meta.url);
const VERSION = require("bullmq/package.json").version;
const QUEUE = "default";
const CHUNK = 1000;
const TIMEOUT_S = Number(process.env.TIMEOUT_S || 600);
const LOG = process.env.LOG || "default";

// BullMQ's recommended production settings: keep no completed jobs, keep the
// last 1000 failed ones for inspection.
const JOB_OPTS = { removeOnComplete: true, removeOnFail: 1000 };

function die(msg) {
  process.stderr.write(`bullmq ${VERSION} driver: ${msg}\n`);
  process.exit(1);
}

// ioredis connection options from REDIS_URL (redis://[user:pass@]host:port[/db]).
function connection() {
  const raw = process.env.REDIS_URL || "redis://127.0.0.1:6399";
  let u;
  try {
    u = new URL(raw);
  } catch {
    die(`REDIS_URL is not a URL: ${raw}`);
  }
  if (u.protocol !== "redis:") die(`REDIS_URL must be redis://…, got ${raw}`);
  const opts = { host: u.hostname || "127.0.0.1", port: Number(u.port || 6379) };
  if (u.username) opts.username = decodeURIComponent(u.username);
  if (u.password) opts.password = decodeURIComponent(u.password);
  const db = u.pathname.replace(/^\//, "");
  if (db) opts.db = Number(db);
  return opts;
}

function count(arg, what) {
  const n = Number(arg);
  if (!Number.isInteger(n) || n <= 0) die(`${what} must be a positive integer, got ${arg}`);
  return n;
}

function safety(done) {
  const t = setTimeout(() => die(`timed out after ${TIMEOUT_S} s with ${done()} jobs done`), TIMEOUT_S * 1000);
  t.unref();
}

const fmt = (s) => s.toFixed(2);
const rate = (n, s) => Math.round(n / s);

async function push(n) {
  let pushed = 0;
  safety(() => pushed);
  const queue = new Queue(QUEUE, { connection: connection() });
  queue.on("error", (err) => die(`queue error: ${err.message}`));
  await queue.waitUntilReady();
  const started = process.hrtime.bigint();
  while (pushed < n) {
    const size = Math.min(CHUNK, n - pushed);
    const jobs = Array.from({ length: size }, () => ({ name: "noop", data: {}, opts: JOB_OPTS }));
    await queue.addBulk(jobs);
    pushed += size;
  }
  const secs = Number(process.hrtime.bigint() - started) / 1e9;
  await queue.close();
  console.log(`bullmq ${VERSION}: pushed ${n} jobs in ${fmt(secs)} s = ${rate(n, secs)} jobs/s`);
}

async function drain(n, c) {
  if (LOG !== "warn" && LOG !== "default") die(`LOG must be warn or default, got ${LOG}`);
  // LOG=warn: print nothing per job. LOG=default: a BullMQ user's default, and
  // BullMQ itself logs nothing per job (it has no logger), so print nothing
  // either: both levels run the same code.
  let done = 0;
  let finished = false;
  safety(() => done);
  let resolveAll;
  const all = new Promise((resolve) => (resolveAll = resolve));

  const started = process.hrtime.bigint();
  const worker = new Worker(QUEUE, async () => {}, { connection: connection(), concurrency: c });
  worker.on("completed", () => {
    done += 1;
    if (done === n) {
      finished = true;
      resolveAll(process.hrtime.bigint());
    }
  });
  worker.on("failed", (job, err) => die(`job ${job?.id} failed: ${err?.message}`));
  worker.on("error", (err) => {
    if (!finished) die(`worker error after ${done} jobs: ${err.message}`);
  });

  const ended = await all;
  const secs = Number(ended - started) / 1e9;
  console.log(`bullmq ${VERSION}: drained ${n} jobs at -c ${c} in ${fmt(secs)} s = ${rate(n, secs)} jobs/s`);
  const closing = Date.now();
  await worker.close();
  // Not part of the figure; said on stderr only when it is slow enough to notice.
  const closeSecs = (Date.now() - closing) / 1000;
  if (closeSecs > 1) process.stderr.write(`bullmq ${VERSION} driver: worker.close() took ${fmt(closeSecs)} s\n`);
}

process.on("unhandledRejection", (err) => die(`unhandled: ${err?.stack || err}`));

const [mode, nArg, cArg] = process.argv.slice(2);
try {
  if (mode === "push") {
    await push(count(nArg, "N"));
  } else if (mode === "drain") {
    await drain(count(nArg, "N"), count(cArg, "C"));
  } else {
    die("usage: node driver.mjs push N | node driver.mjs drain N C");
  }
} catch (err) {
  die(err?.stack || String(err));
}
process.exit(0);
