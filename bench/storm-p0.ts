/**
 * The alert that matters, during a storm: 10,000 distinct firing alerts within 10 s (bench/storm.ts's
 * storm: 100 batches of 100, each sent twice as an Alertmanager HA pair does) of a P1 rule, and,
 * in the middle of it (from 3 s to 7 s), 20 P0 alerts, each for its own Deployment, one every
 * 200 ms: the 20 repetitions. For each P0 alert: receipt (the record's receivedAt, stamped by the
 * webhook handler) to "patch issued", on the dry-run path: no cluster is configured, so the point
 * where the patch would be issued is where the dry-run guard closes the record (its last timeline
 * step), after matching, claiming, the record's write-ahead, the trigger's decision and every
 * guard before it. Also: the storm's drain rate through the engine, RSS peak, evaluations made.
 *   npx tsx bench/storm-p0.ts [--node-flags "--max-semi-space-size=4"] [--name storm-p0-x] [--concurrency N] [--seconds S] [--prometheus [--prometheus-max N]] [--cluster | --kubeconfig FILE]
 * (--concurrency: QUEUE_CONCURRENCY, the events rollguard handles at once; default its own, 32.
 * --seconds: the storm's length, default 10; the P0 alerts are spread over its middle 40 %. At 10 s
 * the storm arrives at 1,000 alerts/s, so a drain at that rate only says the engine kept up: a
 * shorter storm (--seconds 2: 5,000 alerts/s) is what measures the engine's own drain rate.
 * --prometheus: a real Prometheus on loopback (an empty TSDB: every trigger query is answered, with
 * no data) is PROMETHEUS_URL, so each alert's trigger query goes to it and takes its turn there
 * (PROMETHEUS_MAX_CONCURRENT, --prometheus-max; default its own, 16); "patch issued" is then the
 * record's decision on that answer.)
 * Writes $BENCH_OUT/storm-p0.json (or NAME.json). No assertions on time.
 */
import { Redis } from 'ioredis';
import { LocalPrometheus } from '../src/prometheus/local.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { alertRecordId } from '../src/engine/record.js';
import { startRedis } from '../test/support/redis.js';
import { cpuMs, log, machine, metricSum, round, ruleEntry, RssSampler, runBench, scrape, sleep, startRollguard, summary, writeResult, type NodeProcess } from './lib.js';
import { batchBody, sender, waitDrained } from './storm-lib.js';
import { startBenchCluster, stormWorkloads } from './cluster-lib.js';
import type { Cluster } from '../test/cluster/harness.js';

const argStr = (name: string, def: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : def;
};
const NAME = argStr('name', 'storm-p0');
const NODE_FLAGS = argStr('node-flags', '').split(' ').filter(Boolean);
const CONCURRENCY = argStr('concurrency', '');
const WITH_PROMETHEUS = process.argv.includes('--prometheus');
const PROMETHEUS_MAX = argStr('prometheus-max', '');
const WITH_CLUSTER = process.argv.includes('--cluster');
const KUBECONFIG = argStr('kubeconfig', '');
const ALERTS = 10_000;
const BATCH = 100;
const SECONDS = Number(argStr('seconds', '10'));
const P0S = 20;
const DRAIN_TIMEOUT_MS = 600_000;

const RULES = `rules:\n${ruleEntry('storm-p1', 'HighErrorRate', 'P1')}${ruleEntry('storm-p0', 'BadDeploy', 'P0')}`;

function p0Body(k: number, startsAt: string): string {
  return JSON.stringify({
    receiver: 'rollguard',
    status: 'firing',
    alerts: [{ status: 'firing', labels: { alertname: 'BadDeploy', namespace: 'shop', deployment: `checkout-${k}`, severity: 'critical' }, annotations: {}, startsAt, endsAt: '0001-01-01T00:00:00Z', generatorURL: '', fingerprint: `p0${k.toString(16).padStart(14, '0')}` }],
    groupLabels: { alertname: 'BadDeploy' },
    commonLabels: {},
    commonAnnotations: {},
    externalURL: 'http://alertmanager.example:9093',
    version: '4',
    groupKey: `{}:{alertname="BadDeploy", k="${k}"}`,
    truncatedAlerts: 0,
  });
}

interface Rec {
  state: string;
  times: { receivedAt?: number };
  timeline: { at: number; step: string }[];
}

async function main() {
  const m0 = machine();
  log(`storm-p0: ${ALERTS} alerts over ${SECONDS} s, each twice, with ${P0S} P0 alerts in its middle; load ${m0.loadavg.join(' ')}`);
  const dir = mkdtempSync(join(tmpdir(), 'rollguard-bench-storm-p0-'));
  const rulesFile = join(dir, 'rules.yaml');
  writeFileSync(rulesFile, RULES);
  const redisServer = await startRedis();
  const redis = new Redis(redisServer.url);
  const prometheus = WITH_PROMETHEUS ? await LocalPrometheus.start() : undefined;
  let rg: NodeProcess | undefined;
  let cluster: Cluster | undefined;
  try {
    if (WITH_CLUSTER) cluster = await startBenchCluster(stormWorkloads(P0S));
    const env: Record<string, string> = { REDIS_URL: redisServer.url, RULES_PATH: rulesFile, DRY_RUN: 'true', ...(CONCURRENCY ? { QUEUE_CONCURRENCY: CONCURRENCY } : {}) };
    if (prometheus) Object.assign(env, { PROMETHEUS_URL: prometheus.url, ...(PROMETHEUS_MAX ? { PROMETHEUS_MAX_CONCURRENT: PROMETHEUS_MAX } : {}) });
    const kubeconfig = cluster?.rollguardKubeconfig ?? KUBECONFIG;
    if (kubeconfig) env['KUBECONFIG'] = kubeconfig;
    rg = await startRollguard(env, NODE_FLAGS);
    await sleep(2000);
    const batches = ALERTS / BATCH;
    // with a cluster the alerts start after the bad revisions were made, as an alert on a bad deploy
    // does (the recent-deploy guard blocks a revision made more than a minute after its alert started)
    const startsAtMs = Date.now() - (kubeconfig ? 1_000 : 3 * 60_000);
    const startsAt = new Date(startsAtMs).toISOString();
    const bodies = Array.from({ length: batches }, (_, b) => batchBody(b, BATCH, startsAt));
    const am1 = sender(rg.port);
    const am2 = sender(rg.port);
    const p0 = sender(rg.port);
    const rss = new RssSampler(rg.pid, 100).start();
    // the most queries seen waiting their turn (rollguard_dependency_calls_waiting), sampled; with
    // no Prometheus the gauge has no series (the client is never made) and this stays 0
    let mostWaiting = 0;
    // rollguard's own view of its memory at the same scrapes (prom-client's default metrics), the
    // most seen: what of the RSS peak is V8's heap and what is outside it
    const heapMb = { total: 0, used: 0, external: 0 };
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const sm = await scrape(rg!.url);
        const w = metricSum(sm, 'rollguard_dependency_calls_waiting', { dependency: 'prometheus' });
        mostWaiting = Math.max(mostWaiting, w);
        heapMb.total = Math.max(heapMb.total, round(metricSum(sm, 'nodejs_heap_size_total_bytes') / 2 ** 20, 1));
        heapMb.used = Math.max(heapMb.used, round(metricSum(sm, 'nodejs_heap_size_used_bytes') / 2 ** 20, 1));
        heapMb.external = Math.max(heapMb.external, round(metricSum(sm, 'nodejs_external_memory_bytes') / 2 ** 20, 1));
        await sleep(200); // a scrape costs the process measured a little: 5 a second
      }
    })();
    const cpu0 = cpuMs(rg.pid);
    const t0 = performance.now();
    const replies: Promise<{ status: number }>[] = [];
    const p0Replies: Promise<{ status: number }>[] = [];
    // the storm's batches and the P0 alerts on one timeline
    const events: { at: number; send: () => void }[] = [];
    for (let b = 0; b < batches; b++) events.push({ at: (b * SECONDS * 1000) / batches, send: () => replies.push(am1(bodies[b]!), am2(bodies[b]!)) });
    for (let k = 0; k < P0S; k++) events.push({ at: SECONDS * 1000 * (0.3 + (0.4 * k) / P0S) + 5 * SECONDS, send: () => p0Replies.push(p0(p0Body(k, startsAt))) });
    events.sort((a, b) => a.at - b.at);
    for (const e of events) {
      const wait = t0 + e.at - performance.now();
      if (wait > 0) await sleep(wait);
      e.send();
    }
    const lastSentAt = performance.now() - t0;
    const answers = await Promise.all([...replies, ...p0Replies]);
    const { drainedAt, handled } = await waitDrained(rg.url, redis, ALERTS + P0S, t0, DRAIN_TIMEOUT_MS);
    const mem = rss.stop();
    sampling = false;
    await sampler;
    const cpu = cpuMs(rg.pid) - cpu0;
    const m = await scrape(rg.url);
    const latencies: number[] = [];
    // where it went: receipt to the worker beginning it (the record's "received" step), then its evaluation
    const waits: number[] = [];
    const evaluations: number[] = [];
    const states: Record<string, number> = {};
    for (let k = 0; k < P0S; k++) {
      const id = alertRecordId('storm-p0', `Deployment/shop/checkout-${k}`, `p0${k.toString(16).padStart(14, '0')}`, startsAtMs);
      const raw = await redis.hget('{rollguard}:records', id);
      if (!raw) continue;
      const rec = JSON.parse(raw) as Rec;
      states[rec.state] = (states[rec.state] ?? 0) + 1;
      const last = rec.timeline[rec.timeline.length - 1];
      if (last && rec.times.receivedAt !== undefined) latencies.push(last.at - rec.times.receivedAt);
      const begun = rec.timeline.find((s) => s.step === 'received');
      if (last && begun && rec.times.receivedAt !== undefined) {
        waits.push(begun.at - rec.times.receivedAt);
        evaluations.push(last.at - begun.at);
      }
    }
    const records = await redis.hlen('{rollguard}:records');
    const result = {
      benchmark: NAME,
      machine: m0,
      machineAtEnd: machine(),
      settings: {
        alerts: ALERTS, batch: BATCH, seconds: SECONDS, deliveries: 2, p0Alerts: P0S, nodeFlags: NODE_FLAGS, queueConcurrency: CONCURRENCY || 'default',
        prometheus: prometheus ? `a real Prometheus on loopback (empty TSDB); PROMETHEUS_MAX_CONCURRENT ${PROMETHEUS_MAX || 'default'}` : 'none (each rule\'s onPrometheusDown: act)',
        path: kubeconfig
          ? 'dry-run with a real control plane (the Kubernetes client loaded; each dry run reads its target to plan); "patch issued" = the record closed dry_run, where the patch would be issued'
          : 'dry-run: no cluster configured; "patch issued" = the dry-run guard closing the record, where the patch would be issued',
        redis: 'redis-server on 127.0.0.1, appendonly yes, appendfsync always',
      },
      statusCounts: answers.reduce<Record<string, number>>((acc, a) => ((acc[a.status] = (acc[a.status] ?? 0) + 1), acc), {}),
      p0ReceiptToPatchMs: summary(latencies),
      p0Within1s: latencies.filter((x) => x <= 1000).length,
      p0QueuedMs: summary(waits),
      p0EvaluationMs: summary(evaluations),
      p0States: states,
      recordStates: kubeconfig ? await stateCounts(redis) : undefined,
      eventsHandled: handled,
      coalesced: metricSum(m, 'rollguard_alerts_coalesced_total'),
      recordsInRedis: records,
      sendMs: round(lastSentAt, 0),
      drainedMsFromFirstPost: round(drainedAt, 0),
      engineAlertsPerSec: round((ALERTS + P0S) / (drainedAt / 1000), 0),
      rss: { peakMb: mem.peakMb, meanMb: mem.meanMb },
      heapMostMb: heapMb,
      cpuCoresMean: round(cpu / drainedAt, 2),
      prometheusQueries: metricSum(m, 'rollguard_prometheus_queries_total'),
      mostQueriesWaiting: mostWaiting,
    };
    log(`P0 receipt->patch ${JSON.stringify(result.p0ReceiptToPatchMs)} (${result.p0Within1s}/${latencies.length} within 1 s; queued ${JSON.stringify(result.p0QueuedMs)}, evaluation ${JSON.stringify(result.p0EvaluationMs)}); drained at ${Math.round(drainedAt)} ms (${result.engineAlertsPerSec} alerts/s), ${records} records, ${result.coalesced} coalesced, RSS peak ${mem.peakMb} MB (heap total at most ${heapMb.total}, used ${heapMb.used}, external ${heapMb.external})${prometheus ? `; ${result.prometheusQueries} queries, at most ${mostWaiting} waiting their turn` : ''}`);
    writeResult(NAME, result);
  } finally {
    await rg?.stop();
    await prometheus?.stop();
    await cluster?.stop();
    redis.disconnect();
    await redisServer.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Records by state (with a cluster: how many dry runs planned against a real target). */
async function stateCounts(redis: Redis): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const raw of await redis.hvals('{rollguard}:records')) {
    const st = (JSON.parse(raw) as Rec).state;
    out[st] = (out[st] ?? 0) + 1;
  }
  return out;
}

runBench(NAME, main);
