/**
 * Alert storm: 10,000 distinct firing alerts within 10 s, in 100 webhook
 * batches of 100 (one every 100 ms), each batch delivered twice at the same moment, as the two
 * members of an Alertmanager HA pair do, to one rollguard (`node dist/main.js serve`, Redis store,
 * auth on). Every alert matches a rule (onPrometheusDown: act, no Prometheus, no cluster: the
 * engine confirms, decides, runs the guards, plans, and records a dry-run rollback per alert),
 * so draining the queue is the engine's real per-alert path short of the cluster.
 * Measures: every POST answered 200; queued exactly 10,000 and deduplicated exactly 10,000 (the
 * replies' sums and /metrics); the time until the engine has handled all 10,000 and the queue
 * (XLEN) is empty; 10,000 records; peak RSS from /proc.
 *   npx tsx bench/storm.ts [--alerts 10000] [--batch 100] [--seconds 10]
 * Writes $BENCH_OUT/storm.json. No assertions on time.
 */
import { Redis } from 'ioredis';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRedis } from '../test/support/redis.js';
import { batchBody, sender, waitDrained } from './storm-lib.js';
import { log, machine, metricSum, round, RssSampler, scrape, sleep, startRollguard, writeResult, cpuMs, type NodeProcess, runBench } from './lib.js';

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const ALERTS = arg('alerts', 10_000);
const BATCH = arg('batch', 100);
const SECONDS = arg('seconds', 10);
const DRAIN_TIMEOUT_MS = 600_000;

const RULES = `rules:
  - name: storm-error-rate
    match: ['alertname="HighErrorRate"']
    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
    trigger: { kind: error_rate, selector: { namespace: "{{ $labels.namespace }}", deployment: "{{ $labels.deployment }}" }, threshold: 0.05, for: 2m }
    priority: P0
    onPrometheusDown: act
`;

async function main() {
  const m0 = machine();
  log(`storm: ${ALERTS} alerts in ${ALERTS / BATCH} batches over ${SECONDS} s, each twice; ${m0.nproc} cores, load ${m0.loadavg.join(' ')}`);
  const dir = mkdtempSync(join(tmpdir(), 'rollguard-bench-storm-'));
  const rulesFile = join(dir, 'rules.yaml');
  writeFileSync(rulesFile, RULES);
  const redisServer = await startRedis();
  const redis = new Redis(redisServer.url);
  let rg: NodeProcess | undefined;
  try {
    rg = await startRollguard({ REDIS_URL: redisServer.url, RULES_PATH: rulesFile, DRY_RUN: 'true' });
    await sleep(2000);
    const batches = Math.ceil(ALERTS / BATCH);
    const startsAt = new Date(Date.now() - 3 * 60_000).toISOString();
    const bodies = Array.from({ length: batches }, (_, b) => batchBody(b, BATCH, startsAt));
    const am1 = sender(rg.port);
    const am2 = sender(rg.port);
    const rss = new RssSampler(rg.pid, 100).start();
    const cpu0 = cpuMs(rg.pid);
    const t0 = performance.now();
    const replies: Promise<Awaited<ReturnType<typeof am1>>>[] = [];
    for (let b = 0; b < batches; b++) {
      const due = t0 + (b * SECONDS * 1000) / batches;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
      replies.push(am1(bodies[b]!), am2(bodies[b]!));
    }
    const lastSentAt = performance.now() - t0;
    const answers = await Promise.all(replies);
    const allAnsweredAt = performance.now() - t0;
    log(`sent in ${Math.round(lastSentAt)} ms, all answered at ${Math.round(allAnsweredAt)} ms`);

    // The engine drains the queue: poll /metrics (bounded).
    const { drainedAt, handled, left, maxDepthSeen } = await waitDrained(rg.url, redis, ALERTS, t0, DRAIN_TIMEOUT_MS);
    const mem = rss.stop();
    const cpu = cpuMs(rg.pid) - cpu0;
    const m = await scrape(rg.url);
    const records = await redis.hlen('{rollguard}:records');
    const byOutcome: Record<string, number> = {};
    for (const [k, v] of m) {
      const o = /^rollguard_rollbacks_total\{.*outcome="([^"]+)"/.exec(k);
      if (o) byOutcome[o[1]!] = (byOutcome[o[1]!] ?? 0) + v;
    }
    const statusCounts: Record<string, number> = {};
    for (const a of answers) statusCounts[a.status] = (statusCounts[a.status] ?? 0) + 1;
    const replyMs = answers.map((a) => a.ms).sort((a, b) => a - b);
    const result = {
      benchmark: 'storm',
      machine: m0,
      machineAtEnd: machine(),
      settings: {
        alerts: ALERTS,
        batch: BATCH,
        batches,
        seconds: SECONDS,
        deliveries: 2,
        redis: 'redis-server on 127.0.0.1, appendonly yes, appendfsync always',
        rollguard: 'node dist/main.js serve, LOG_LEVEL=info (stdout to /dev/null), WEBHOOK_TOKEN, REDIS_URL, no cluster (dry-run), no Prometheus; one rule matching every alert, onPrometheusDown: act',
      },
      posts: answers.length,
      statusCounts,
      replyMs: { p50: round(replyMs[Math.floor(replyMs.length / 2)]!), p99: round(replyMs[Math.ceil(replyMs.length * 0.99) - 1]!), max: round(replyMs[replyMs.length - 1]!) },
      queuedByReplies: answers.reduce((n, a) => n + a.queued, 0),
      duplicatesByReplies: answers.reduce((n, a) => n + a.duplicates, 0),
      metrics: {
        alertsReceived: metricSum(m, 'rollguard_alerts_received_total'),
        alertsDeduplicated: metricSum(m, 'rollguard_alerts_deduplicated_total'),
        eventsHandled: handled,
        eventsFailed: metricSum(m, 'rollguard_events_processed_total', { outcome: 'failed' }),
        eventsDead: metricSum(m, 'rollguard_events_processed_total', { outcome: 'dead_lettered' }),
        storeErrors: metricSum(m, 'rollguard_store_errors_total'),
        rollbacksByOutcome: byOutcome,
      },
      recordsInRedis: records,
      queueLeft: left,
      maxQueueDepthSeen: maxDepthSeen,
      sendMs: round(lastSentAt, 0),
      allAnsweredMs: round(allAnsweredAt, 0),
      drainedMsFromFirstPost: round(drainedAt, 0),
      drainedMsAfterLastPost: round(drainedAt - lastSentAt, 0),
      engineAlertsPerSec: round(ALERTS / (drainedAt / 1000), 0),
      rss: { peakMb: mem.peakMb, meanMb: mem.meanMb },
      cpuCoresMean: round(cpu / drainedAt, 2),
      coalesced: metricSum(m, 'rollguard_alerts_coalesced_total'),
      // every alert handled: its own record, or coalesced into another's evaluation (and linked to its record)
      zeroLoss: handled === ALERTS && left === 0 && records + metricSum(m, 'rollguard_alerts_coalesced_total') === ALERTS && answers.every((a) => a.status === 200),
    };
    log(`drained at ${Math.round(drainedAt)} ms; handled ${handled}, queued ${result.queuedByReplies}, duplicates ${result.duplicatesByReplies}, records ${records}, RSS peak ${mem.peakMb} MB`);
    writeResult('storm', result);
  } finally {
    await rg?.stop();
    redis.disconnect();
    await redisServer.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

runBench('storm', main);
