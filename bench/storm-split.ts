/**
 * The storm benchmark's work taken apart, in one process, to say where its CPU goes: first the
 * intake alone (the webhook route through Fastify's inject, so no sockets: JSON parse, schema,
 * dedupe, lanes, the Lua write), then the engine alone (the queue worker draining what intake
 * queued, on the storm's dry-run path). Same alerts as bench/storm.ts: 100 batches of 100 distinct
 * HighErrorRate alerts over 500 Deployments, each batch posted twice at once (an HA pair); a P1
 * rule, no cluster, no Prometheus (onPrometheusDown: act).
 * With --together, a second storm of new alerts then runs both stages at once, as serve does.
 *   node [V8 flags] --import tsx bench/storm-split.ts [--store redis|memory] [--concurrency 64]
 *        [--log-level info] [--together] [--name storm-split-x] [--profile-engine]
 * (--profile-engine: the engine stage runs under V8's CPU profiler, node:inspector, and its summary
 * (bench/profile-summary.ts) goes into the result; the .cpuprofile stays in $BENCH_OUT.)
 * (V8 flags: the image's are --max-semi-space-size=4 --max-old-space-size=192.) redis: a
 * redis-server on loopback, appendonly, appendfsync always (as bench/storm.ts). CPU is this
 * process's (process.cpuUsage: the main thread and V8's helper threads). Writes
 * $BENCH_OUT/<name>.json (default storm-split-<store>). No assertions.
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { join } from 'node:path';
import { pino } from 'pino';
import { QueueWorker } from '../src/engine/worker.js';
import { MemoryStore } from '../src/store/memory.js';
import { RedisStore } from '../src/store/redis.js';
import type { Store } from '../src/store/store.js';
import { createActions } from '../src/actions/index.js';
import { postAlerts, testApp } from '../test/support/app.js';
import { rules, testEngine } from '../test/support/engine.js';
import { startRedis, type RedisServer } from '../test/support/redis.js';
import { countingStore, log, machine, outDir, round, ruleEntry, runBench, sleep, writeResult } from './lib.js';
import { summariseProfile, type ProfileSummary } from './profile-summary.js';
import { batchBody } from './storm-lib.js';

const arg = (name: string, def: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : def;
};
const STORE = arg('store', 'redis');
const CONCURRENCY = Number(arg('concurrency', '64'));
/** info: the engine logs as serve does (a line per record closed), asynchronously to /dev/null */
const LOG_LEVEL = arg('log-level', 'info');
const TOGETHER = process.argv.includes('--together');
const NAME = arg('name', `storm-split-${STORE}`);
const PROFILE_ENGINE = process.argv.includes('--profile-engine');
const BATCHES = 100;
const BATCH = 100;
const RULES = `rules:\n${ruleEntry('storm-p1', 'HighErrorRate', 'P1')}`;

/** CPU µs and wall ms of `fn`. */
async function measured(fn: () => Promise<void>): Promise<{ cpuUs: number; wallMs: number }> {
  const u0 = process.cpuUsage();
  const t0 = performance.now();
  await fn();
  const u = process.cpuUsage(u0);
  return { cpuUs: u.user + u.system, wallMs: performance.now() - t0 };
}

async function main() {
  const at = machine();
  let redis: RedisServer | null = null;
  let store: Store;
  if (STORE === 'redis') {
    redis = await startRedis({ args: ['--appendonly', 'yes', '--appendfsync', 'always'] });
    const rs = new RedisStore({ url: redis.url });
    await rs.waitReady(5000);
    store = rs;
  } else store = new MemoryStore();
  const logger = pino({ level: LOG_LEVEL, base: { service: 'rollguard' } }, pino.destination({ dest: '/dev/null', sync: false }));
  // the worker's own store calls (consume, ack) are counted: how many per alert, in each mode
  const { store: counted, counts: calls } = countingStore(store);
  const e = testEngine({ store, env: { DRY_RUN: 'true' }, actions: createActions(), prometheus: null, ruleText: RULES, logger });
  const { app } = testApp({ store, deps: { rules: { rules: rules(RULES) }, metrics: e.metrics } });
  await app.ready();
  const startsAt = new Date(Date.now() - 3 * 60_000).toISOString();
  const bodies = Array.from({ length: BATCHES }, (_, b) => batchBody(b, BATCH, startsAt));

  // a warm-up of 10 batches of other alerts through both stages (their records are not counted)
  for (let b = 0; b < 10; b++) await postAlerts(app, batchBody(BATCHES + b, BATCH, startsAt));
  const startWorker = () => {
    const worker = new QueueWorker({
      store: counted, metrics: e.metrics, logger: pino({ level: 'silent' }), consumer: 'bench', claimIdleMs: 60_000, maxDeliveries: 3, blockMs: 20, concurrency: CONCURRENCY,
      handler: (ev) => e.engine.handle(ev), coalesceKey: (ev) => e.engine.coalesceKey(ev), onCoalesced: (ev, into) => e.engine.coalesced(ev, into),
    });
    worker.start();
    return worker;
  };
  const untilDrained = async (worker: QueueWorker) => {
    while ((await store.queueDepth()) > 0) await sleep(5);
    await worker.stop();
    await e.engine.idle();
  };
  const drain = () => untilDrained(startWorker());
  await drain();
  calls.clear();

  log(`storm-split: store ${STORE}, concurrency ${CONCURRENCY}, load ${at.loadavg.join(' ')}`);
  let queued = 0;
  const intake = await measured(async () => {
    for (const body of bodies) {
      const [a, b] = await Promise.all([postAlerts(app, body), postAlerts(app, body)]);
      if (a.statusCode !== 200 || b.statusCode !== 200) throw new Error(`intake answered ${a.statusCode} ${b.statusCode}: ${a.body}`);
      queued += (a.json() as { queued: number }).queued + (b.json() as { queued: number }).queued;
    }
  });
  const alerts = BATCHES * BATCH;
  if (queued !== alerts) throw new Error(`queued ${queued}, expected ${alerts}`);
  let profile: ProfileSummary | undefined;
  const session = PROFILE_ENGINE ? new Session() : undefined;
  if (session) {
    session.connect();
    await session.post('Profiler.enable');
    await session.post('Profiler.start');
  }
  const engine = await measured(drain);
  if (session) {
    const { profile: raw } = await session.post('Profiler.stop');
    session.disconnect();
    const file = join(outDir(), `${NAME}-engine.cpuprofile`);
    writeFileSync(file, JSON.stringify(raw));
    profile = summariseProfile(file, 30);
  }
  const workerCalls = Object.fromEntries(calls);
  calls.clear();
  // the same two stages at once, as serve runs them: the worker drains while the batches come in
  let together: { cpuUsPerAlert: number; alertsPerSec: number; coresMean: number; workerCalls: Record<string, number> } | undefined;
  if (TOGETHER) {
    const more = Array.from({ length: BATCHES }, (_, b) => batchBody(2 * BATCHES + b, BATCH, startsAt));
    const both = await measured(async () => {
      const worker = startWorker();
      for (const body of more) await Promise.all([postAlerts(app, body), postAlerts(app, body)]);
      await untilDrained(worker);
    });
    together = { cpuUsPerAlert: round(both.cpuUs / alerts, 1), alertsPerSec: Math.round(alerts / (both.wallMs / 1000)), coresMean: round(both.cpuUs / 1000 / both.wallMs, 2), workerCalls: Object.fromEntries(calls) };
    log(`together: ${together.cpuUsPerAlert} µs CPU per alert, ${together.alertsPerSec} alerts/s from the first batch at ${together.coresMean} cores; worker calls ${JSON.stringify(together.workerCalls)}`);
  }
  const result = {
    benchmark: 'storm-split',
    machine: at,
    machineAtEnd: machine(),
    settings: { v8Flags: process.execArgv.filter((a) => a.startsWith('--max-')), store: STORE, concurrency: CONCURRENCY, logLevel: LOG_LEVEL, alerts, deliveries: 2, batch: BATCH, path: 'dry-run: no cluster configured, no Prometheus (onPrometheusDown: act)', redis: redis ? 'redis-server on 127.0.0.1, appendonly yes, appendfsync always' : null },
    intake: { cpuUsPerAlert: round(intake.cpuUs / alerts, 1), cpuUsPerDelivery: round(intake.cpuUs / (2 * alerts), 1), wallMs: round(intake.wallMs, 0) },
    engine: { workerCalls, cpuUsPerAlert: round(engine.cpuUs / alerts, 1), alertsPerSec: Math.round(alerts / (engine.wallMs / 1000)), coresMean: round(engine.cpuUs / 1000 / engine.wallMs, 2), wallMs: round(engine.wallMs, 0), ...(profile ? { profiled: true, profile } : {}) },
    sumCpuUsPerAlert: round((intake.cpuUs + engine.cpuUs) / alerts, 1),
    together,
  };
  log(`intake ${result.intake.cpuUsPerAlert} µs CPU per alert (${result.intake.cpuUsPerDelivery} per delivery); engine ${result.engine.cpuUsPerAlert} µs per alert, ${result.engine.alertsPerSec} alerts/s at ${result.engine.coresMean} cores; worker calls ${JSON.stringify(workerCalls)}`);
  writeResult(NAME, result);
  await app.close();
  if (store instanceof RedisStore) await store.close();
  await redis?.stop();
}

runBench('storm-split', main);
