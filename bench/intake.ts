/**
 * Intake and memory: POST /v1/alerts on rollguard (a separate
 * `node dist/main.js serve` process, auth on, the Redis store on a local redis-server with
 * appendfsync always, rules that match nothing: since ef3bca0 such alerts are counted at the door and
 * never reach Redis, so this measures the webhook's own path, not the store's) against a bare
 * Fastify route parsing the same JSON (bench/baseline-server.mjs), driven from this process by
 * autocannon with the same 10-alert batches, in one run:
 *   - max rate (10 connections) for throughput, in --pairs pairs (3) alternating which goes first;
 *     the ratio is the median of the pairs' ratios, since this 2-core machine's bare-Fastify rate
 *     moved by a third between two runs a minute apart;
 *   - a fixed 1,000 requests/s (overallRate) for the p50/p99 latency figure;
 *   - rollguard with every batch a duplicate (dedupe hits: an Alertmanager resend) at max rate.
 * Every batch but the dedupe-hit ones has its own fingerprints (10 new alerts a request; none is
 * queued, since no rule matches them; the matched, durable path is bench/storm.ts and decision.ts).
 * RSS of both servers is sampled from /proc idle and under each load. With --profile, a further
 * max-rate pass runs each server under --cpu-prof (not measured) and summarises its profile, with
 * the main thread's CPU per request by area, so the two can be set side by side.
 *   npx tsx bench/intake.ts [--duration 10] [--rate 1000] [--connections 10] [--pairs 3] [--profile] [--kubeconfig FILE]
 * --kubeconfig: rollguard runs with a cluster configured (this kubeconfig, e.g. the rollguard
 * ServiceAccount's of a control plane from bench/cluster-lib.ts), so the Kubernetes client is
 * loaded at start-up as in any install with a cluster: target (c)'s intake figure.
 * Experiments (to explain a figure; bench/run.sh runs none of them):
 *   --log-level warn          rollguard without its per-batch and per-alert info lines
 *   --fsync everysec          Redis with appendfsync everysec instead of always
 *   --node-flags "--max-old-space-size=64"   extra node flags for the rollguard process
 *   --name intake-x           the results file's name ($BENCH_OUT/intake-x.json)
 *   --pin                     servers (and Redis) on the last core, autocannon on the others (taskset)
 * Prints nothing on stdout; writes $BENCH_OUT/intake.json. No assertions on time.
 */
import autocannon, { type Result } from 'autocannon';
import { Redis } from 'ioredis';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { startRedis } from '../test/support/redis.js';
import {
  batchTemplate,
  cpuMs,
  fillBatch,
  log,
  machine,
  outDir,
  round,
  RssSampler,
  scrape,
  metricSum,
  sleep,
  summary,
  startBaseline,
  startRollguard,
  WEBHOOK_TOKEN,
  writeResult,
  type NodeProcess,
  runBench,
} from './lib.js';
import { summariseProfile } from './profile-summary.js';

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const DURATION = arg('duration', 10);
const RATE = arg('rate', 1000);
const CONNECTIONS = arg('connections', 10);
/** max-rate runs of the two servers, alternated: the ratio is their median (one pair moved by a third between two runs a minute apart) */
const PAIRS = arg('pairs', 3);
/** the servers on the last core and this process (autocannon) on the others (taskset), so that the driver and the server measured do not share a core */
const PIN = process.argv.includes('--pin');
const PROFILE = process.argv.includes('--profile');
const sarg = (name: string): string | undefined => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const LOG_LEVEL = sarg('log-level') ?? 'info';
const FSYNC = sarg('fsync') ?? 'always';
const NODE_FLAGS = (sarg('node-flags') ?? '').split(' ').filter(Boolean);
const NAME = sarg('name') ?? 'intake';
const KUBECONFIG = sarg('kubeconfig');
const BATCH = 10;

const TEMPLATE = batchTemplate(BATCH);
const SAME = fillBatch(TEMPLATE, 0xdeadbeef);
let counter = 1;
let redisPid = 0;

const NO_MATCH_RULES = `rules:
  - name: never-matches
    match: ['alertname="RollguardBenchNeverFires"']
    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
    trigger: { kind: error_rate, selector: { namespace: "{{ $labels.namespace }}" }, threshold: 0.05, for: 2m }
    priority: P0
`;

interface Run {
  target: 'baseline' | 'rollguard';
  mode: 'max' | 'fixed' | 'dedupe-hit';
  rate?: number;
  requestsPerSec: number;
  alertsPerSec: number;
  latencyMs: { p50: number; p90: number; p99: number; max: number; mean: number };
  /** autocannon's histogram (whole ms; at a fixed rate, corrected for coordinated omission) */
  autocannonLatencyMs: { p50: number; p99: number };
  requests: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  rss?: { peakMb: number; meanMb: number };
  /** CPU used during the run, in cores (1 = one core busy the whole run), per process */
  cpuCores: { server: number; redis?: number; driver: number };
  loadavg1: number;
}

/**
 * A further max-rate pass (2 s warm-up, then DURATION) on a server started under --cpu-prof, not
 * measured: its profile summarised (start-up included), and the main thread's busy CPU per request
 * answered, overall and by area, from the first request on (start-up left out: rollguard loads far
 * more modules than bare Fastify; the warm-up's requests are counted with its samples). A pass that
 * fails answers its error and leaves the measured results alone.
 */
async function profiledPass(target: Run['target'], start: (nodeFlags: string[]) => Promise<NodeProcess>) {
  const profDir = join(outDir(), `profile-intake-${target}`);
  try {
    rmSync(profDir, { recursive: true, force: true });
    const srv = await start(['--cpu-prof', `--cpu-prof-dir=${profDir}`]);
    let requests = 0;
    let reqPerSec = 0;
    let answeredOtherwise = 0;
    try {
      for (const r of [await cannon(srv, target, 'max', 2, false), await cannon(srv, target, 'max', DURATION, false)]) {
        requests += r.requests;
        answeredOtherwise += r.non2xx + r.errors + r.timeouts;
        reqPerSec = r.requestsPerSec;
      }
    } finally {
      await srv.stop();
    }
    const file = existsSync(profDir) ? readdirSync(profDir).find((f) => f.endsWith('.cpuprofile')) : undefined;
    if (!file) return { error: 'no .cpuprofile written' };
    if (requests === 0 || answeredOtherwise > 0) return { error: `${requests} requests answered 2xx and ${answeredOtherwise} otherwise under the profiler: no CPU per request` };
    const s = summariseProfile(join(profDir, file), 25);
    const served = summariseProfile(join(profDir, file), 0, { from: /secure-json-parse/ });
    const perRequest = (ms: number) => round((ms * 1000) / requests, 1);
    return {
      underProfilerReqPerSec: reqPerSec,
      requests,
      startUpMs: round(s.busyMs - served.busyMs, 1),
      busyUsPerRequest: perRequest(served.busyMs),
      areaUsPerRequest: Object.fromEntries(served.areas.map((a) => [a.area, perRequest(a.selfMs)])),
      ...s,
    };
  } catch (err) {
    return { error: `the profiled pass failed: ${(err as Error).message}` };
  }
}

async function cannon(srv: NodeProcess, target: Run['target'], mode: Run['mode'], duration: number, sampleRss: boolean, midway?: () => Promise<void>): Promise<Run> {
  const rss = sampleRss ? new RssSampler(srv.pid).start() : null;
  const cpu0 = { server: cpuMs(srv.pid), redis: redisPid ? cpuMs(redisPid) : 0, driver: cpuMs(process.pid), at: Date.now() };
  // autocannon's own histogram keeps whole milliseconds; each response's time (float ms, from
  // the request's write to the response's end) is kept here for sub-millisecond percentiles.
  const times: number[] = [];
  const inst = autocannon({
    url: srv.url,
    connections: CONNECTIONS,
    duration,
    ...(mode === 'fixed' ? { overallRate: RATE } : {}),
    requests: [
      {
        method: 'POST',
        path: '/v1/alerts',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${WEBHOOK_TOKEN}` },
        setupRequest: (req) => ({ ...req, body: mode === 'dedupe-hit' ? SAME : fillBatch(TEMPLATE, counter++) }),
      },
    ],
  });
  inst.on('response', (_c, status, _b, ms) => {
    if (status >= 200 && status < 300) times.push(ms);
  });
  const mid = midway ? sleep((duration * 1000) / 2).then(midway) : Promise.resolve();
  const res: Result = await inst;
  await mid;
  const r = rss?.stop();
  const wall = Date.now() - cpu0.at;
  const cores = (v: number) => round(v / wall, 2);
  const cpuCores: Run['cpuCores'] = { server: cores(cpuMs(srv.pid) - cpu0.server), driver: cores(cpuMs(process.pid) - cpu0.driver) };
  if (redisPid && target === 'rollguard') cpuCores.redis = cores(cpuMs(redisPid) - cpu0.redis);
  const s = summary(times, 2);
  const run: Run = {
    target,
    mode,
    requestsPerSec: round(times.length / res.duration, 0),
    alertsPerSec: round((times.length * BATCH) / res.duration, 0),
    latencyMs: { p50: s.p50, p90: s.p90, p99: s.p99, max: s.max, mean: s.mean },
    autocannonLatencyMs: { p50: res.latency.p50, p99: res.latency.p99 },
    requests: times.length,
    non2xx: res.non2xx,
    errors: res.errors,
    timeouts: res.timeouts,
    cpuCores,
    loadavg1: machine().loadavg[0],
  };
  if (mode === 'fixed') run.rate = RATE;
  if (r) run.rss = { peakMb: r.peakMb, meanMb: r.meanMb };
  log(`${target} ${mode}: ${run.requestsPerSec} req/s, p50 ${run.latencyMs.p50} ms, p99 ${run.latencyMs.p99} ms, non2xx ${run.non2xx}, errors ${run.errors}${r ? `, RSS peak ${r.peakMb} MB` : ''}, CPU ${JSON.stringify(cpuCores)}`);
  return run;
}

/** Waits until rollguard's worker has emptied the queue (bounded); returns how long it took. */
async function drained(redis: Redis, timeoutMs = 300_000): Promise<{ ms: number; left: number }> {
  const t0 = Date.now();
  for (;;) {
    const left = await redis.xlen('{rollguard}:queue');
    if (left === 0 || Date.now() - t0 > timeoutMs) return { ms: Date.now() - t0, left };
    await sleep(200);
  }
}

/** rollguard's own view of its memory (prom-client's default metrics), MB. */
async function memoryBreakdown(url: string): Promise<Record<string, number>> {
  const m = await scrape(url);
  const mb = (v: number) => round(v / 2 ** 20, 1);
  const out: Record<string, number> = {
    rss: mb(metricSum(m, 'process_resident_memory_bytes')),
    heapTotal: mb(metricSum(m, 'nodejs_heap_size_total_bytes')),
    heapUsed: mb(metricSum(m, 'nodejs_heap_size_used_bytes')),
    external: mb(metricSum(m, 'nodejs_external_memory_bytes')),
  };
  for (const [k, v] of m) {
    const sp = /^nodejs_heap_space_size_used_bytes\{space="([^"]+)"\}$/.exec(k);
    if (sp) out[`used:${sp[1]}`] = mb(v);
  }
  return out;
}

async function idleRss(pids: number[], ms = 2000): Promise<number[]> {
  const samplers = pids.map((p) => new RssSampler(p, 100).start());
  await sleep(ms);
  return samplers.map((s) => s.stop().meanMb);
}

async function main() {
  const m0 = machine();
  log(`intake: ${m0.nproc} cores, load ${m0.loadavg.join(' ')}`);
  const dir = mkdtempSync(join(tmpdir(), 'rollguard-bench-intake-'));
  const rulesFile = join(dir, 'rules.yaml');
  writeFileSync(rulesFile, NO_MATCH_RULES);
  const redisServer = await startRedis();
  const redis = new Redis(redisServer.url);
  if (FSYNC !== 'always') await redis.config('SET', 'appendfsync', FSYNC);
  redisPid = Number((await redis.info('server')).match(/process_id:(\d+)/)?.[1] ?? 0);
  const env = { REDIS_URL: redisServer.url, RULES_PATH: rulesFile, DRY_RUN: 'true', LOG_LEVEL, ...(KUBECONFIG ? { KUBECONFIG } : {}) };
  const procs: NodeProcess[] = [];
  try {
    const rg = await startRollguard(env, NODE_FLAGS);
    procs.push(rg);
    const base = await startBaseline();
    procs.push(base);
    if (PIN) {
      const last = cpus().length - 1;
      for (const pid of [rg.pid, base.pid, redisPid]) execFileSync('taskset', ['-a', '-p', '-c', String(last), String(pid)], { stdio: 'ignore' });
      execFileSync('taskset', ['-a', '-p', '-c', `0-${Math.max(0, last - 1)}`, String(process.pid)], { stdio: 'ignore' });
      log(`pinned: servers and Redis on core ${last}, autocannon on 0-${Math.max(0, last - 1)}`);
    }
    await sleep(3000);
    const [rgIdle, baseIdle] = await idleRss([rg.pid, base.pid]);
    log(`idle RSS: rollguard ${rgIdle} MB, baseline ${baseIdle} MB`);
    const memIdle = await memoryBreakdown(rg.url);

    // Warm-up (JIT, connections, Redis scripts); not recorded.
    await cannon(base, 'baseline', 'max', 2, false);
    await cannon(rg, 'rollguard', 'max', 2, false);
    await drained(redis);

    const runs: Run[] = [];
    let memMidMax: Record<string, number> = {};
    let memAfterMax: Record<string, number> = {};
    let afterMax = { ms: 0, left: 0 };
    const pairs: Array<{ first: Run['target']; baseline: number; rollguard: number; ratio: number }> = [];
    for (let i = 0; i < PAIRS; i++) {
      const baseFirst = i % 2 === 0;
      const b = baseFirst ? await cannon(base, 'baseline', 'max', DURATION, true) : undefined;
      const r = await cannon(rg, 'rollguard', 'max', DURATION, true, i === 0 ? async () => void (memMidMax = await memoryBreakdown(rg.url)) : undefined);
      if (i === 0) memAfterMax = await memoryBreakdown(rg.url);
      const drain = await drained(redis);
      if (i === 0) afterMax = drain;
      const b2 = b ?? (await cannon(base, 'baseline', 'max', DURATION, true));
      if (i === 0) runs.push(b2, r);
      pairs.push({ first: baseFirst ? 'baseline' : 'rollguard', baseline: b2.requestsPerSec, rollguard: r.requestsPerSec, ratio: round(r.requestsPerSec / b2.requestsPerSec, 3) });
      log(`pair ${i + 1}: ratio ${pairs.at(-1)!.ratio}`);
    }
    log(`queue drained ${afterMax.ms} ms after the first max-rate run (left ${afterMax.left})`);
    runs.push(await cannon(base, 'baseline', 'fixed', DURATION, true));
    runs.push(await cannon(rg, 'rollguard', 'fixed', DURATION, true));
    const afterFixed = await drained(redis);
    runs.push(await cannon(rg, 'rollguard', 'dedupe-hit', DURATION, true));
    await sleep(3000);
    const [rgAfter, baseAfter] = await idleRss([rg.pid, base.pid]);
    const memAfterLoad = await memoryBreakdown(rg.url);

    const metrics = await scrape(rg.url);
    const counters = {
      alertsReceived: metricSum(metrics, 'rollguard_alerts_received_total'),
      alertsDeduplicated: metricSum(metrics, 'rollguard_alerts_deduplicated_total'),
      eventsHandled: metricSum(metrics, 'rollguard_events_processed_total', { outcome: 'handled' }),
      eventsFailed: metricSum(metrics, 'rollguard_events_processed_total', { outcome: 'failed' }),
      storeErrors: metricSum(metrics, 'rollguard_store_errors_total'),
    };

    const sorted = pairs.map((p) => p.ratio).sort((a, b) => a - b);
    const ratio = sorted[Math.floor(sorted.length / 2)]!;
    let profile: unknown;
    let baselineProfile: unknown;
    if (PROFILE) {
      await Promise.all(procs.splice(0).map((p) => p.stop()));
      // SHUTDOWN_TIMEOUT=1s: the profile covers start-up, a 2 s warm-up and the measured load,
      // not the worker draining the backlog afterwards (that is left in Redis, then deleted).
      profile = await profiledPass('rollguard', (flags) => startRollguard({ ...env, SHUTDOWN_TIMEOUT: '1s' }, [...NODE_FLAGS, ...flags]));
      await redis.del('{rollguard}:queue');
      // the baseline as it ran above (Node's defaults): what any Fastify server pays per request
      baselineProfile = await profiledPass('baseline', (flags) => startBaseline(flags));
    }

    writeResult(NAME, {
      benchmark: 'intake',
      machine: m0,
      machineAtEnd: machine(),
      settings: {
        batch: BATCH,
        bodyBytes: Buffer.byteLength(fillBatch(TEMPLATE, 1)),
        durationSec: DURATION,
        connections: CONNECTIONS,
        fixedRate: RATE,
        pinned: PIN,
        redis: `redis-server on 127.0.0.1, appendonly yes, appendfsync ${FSYNC}`,
        rollguard: `node ${NODE_FLAGS.length ? `${NODE_FLAGS.join(' ')} ` : ''}dist/main.js serve, LOG_LEVEL=${LOG_LEVEL} (stdout to /dev/null), WEBHOOK_TOKEN set, REDIS_URL, rules that match nothing`,
        baseline: 'bench/baseline-server.mjs: Fastify 5, POST /v1/alerts parses the JSON and answers 200',
      },
      runs,
      /** the median of the pairs' ratios */
      ratioMaxRate: ratio,
      pairs,
      rss: {
        rollguardIdleMb: rgIdle,
        baselineIdleMb: baseIdle,
        rollguardAfterLoadIdleMb: rgAfter,
        baselineAfterLoadIdleMb: baseAfter,
        breakdown: { idle: memIdle, midMaxRate: memMidMax, rightAfterMaxRate: memAfterMax, idleAfterLoad: memAfterLoad },
        rollguardPeakUnderLoadMb: Math.max(...runs.filter((r) => r.target === 'rollguard').map((r) => r.rss?.peakMb ?? 0)),
      },
      queueDrainAfterMaxMs: afterMax.ms,
      queueDrainAfterFixedMs: afterFixed.ms,
      counters,
      profile,
      baselineProfile,
    });
  } finally {
    await Promise.all(procs.map((p) => p.stop()));
    redis.disconnect();
    await redisServer.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

runBench('intake', main);
