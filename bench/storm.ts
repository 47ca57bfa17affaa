/**
 * Alert storm (issue 8, item 2): 10,000 distinct firing alerts within 10 s, in 100 webhook
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
import { Agent, request } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRedis } from '../test/support/redis.js';
import { log, machine, metricSum, round, RssSampler, scrape, sleep, startRollguard, WEBHOOK_TOKEN, writeResult, cpuMs, type NodeProcess, runBench } from './lib.js';

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

function batchBody(b: number, startsAt: string): string {
  const alerts = Array.from({ length: BATCH }, (_, j) => {
    const i = b * BATCH + j;
    const svc = `svc-${i % 500}`;
    return {
      status: 'firing',
      labels: { alertname: 'HighErrorRate', namespace: `team-${i % 20}`, deployment: svc, service: svc, severity: 'critical', pod: `${svc}-${i}`, instance: `10.1.${(i >> 8) & 255}.${i & 255}:8080` },
      annotations: { summary: 'Error rate above 5% for 2 minutes', description: `${svc} 5xx ratio is 23%` },
      startsAt,
      endsAt: '0001-01-01T00:00:00Z',
      generatorURL: 'http://prometheus.example:9090/graph',
      fingerprint: `f${i.toString(16).padStart(15, '0')}`,
    };
  });
  return JSON.stringify({
    receiver: 'rollguard',
    status: 'firing',
    alerts,
    groupLabels: { alertname: 'HighErrorRate', batch: String(b) },
    commonLabels: { alertname: 'HighErrorRate', severity: 'critical' },
    commonAnnotations: {},
    externalURL: 'http://alertmanager.example:9093',
    version: '4',
    groupKey: `{}:{alertname="HighErrorRate", batch="${b}"}`,
    truncatedAlerts: 0,
  });
}

/** One "Alertmanager": its own keep-alive connections, as each HA member has. */
function sender(port: number) {
  const agent = new Agent({ keepAlive: true, maxSockets: 8 });
  return (body: string) =>
    new Promise<{ status: number; queued: number; duplicates: number; ms: number }>((resolve, reject) => {
      const t0 = performance.now();
      const req = request(
        { host: '127.0.0.1', port, path: '/v1/alerts', method: 'POST', agent, headers: { 'content-type': 'application/json', authorization: `Bearer ${WEBHOOK_TOKEN}`, 'content-length': Buffer.byteLength(body) } },
        (res) => {
          let data = '';
          res.setEncoding('utf8');
          res.on('data', (d) => (data += d));
          res.on('end', () => {
            const j = (() => {
              try {
                return JSON.parse(data) as { queued?: number; duplicates?: number };
              } catch {
                return {};
              }
            })();
            resolve({ status: res.statusCode ?? 0, queued: j.queued ?? 0, duplicates: j.duplicates ?? 0, ms: performance.now() - t0 });
          });
        },
      );
      req.setTimeout(30_000, () => req.destroy(new Error('timeout')));
      req.on('error', reject);
      req.end(body);
    });
}

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
    const bodies = Array.from({ length: batches }, (_, b) => batchBody(b, startsAt));
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
    let handled = 0;
    let left = -1;
    let drainedAt = NaN;
    let maxDepthSeen = 0;
    for (;;) {
      const m = await scrape(rg.url);
      handled = metricSum(m, 'rollguard_events_processed_total', { outcome: 'handled' });
      left = await redis.xlen('{rollguard}:queue');
      maxDepthSeen = Math.max(maxDepthSeen, left);
      if (handled >= ALERTS && left === 0) {
        drainedAt = performance.now() - t0;
        break;
      }
      if (performance.now() - t0 > DRAIN_TIMEOUT_MS) break;
      await sleep(100);
    }
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
      zeroLoss: handled === ALERTS && left === 0 && records === ALERTS && answers.every((a) => a.status === 200),
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
