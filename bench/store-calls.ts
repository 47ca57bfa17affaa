/**
 * Store calls per alert on the engine's common path, counted by a wrapper around the Store (each
 * method call is one round trip on Redis, except the Lua scripts and MULTIs, which are one each).
 * Three paths through the queue worker and the engine of test/support/engine.ts (in-memory doubles
 * for the cluster and Prometheus): a P0 alert that is rolled back, a burst of 10 alerts for one
 * target (coalesced), and 100 alerts no rule matches (counted at intake, never queued).
 *   npx tsx bench/store-calls.ts
 * Writes $BENCH_OUT/store-calls.json. No assertions.
 */
import { pino } from 'pino';
import { QueueWorker } from '../src/engine/worker.js';
import { MemoryStore } from '../src/store/memory.js';
import { postAlerts, testApp } from '../test/support/app.js';
import { rules, testEngine } from '../test/support/engine.js';
import { createActions } from '../src/actions/index.js';
import { countingStore as counting, log, ruleEntry, runBench, sleep, writeResult } from './lib.js';

const startsAt = new Date(Date.now() - 3 * 60_000).toISOString();
const webhook = (alerts: { alertname: string; deployment: string; fp: string }[]) => ({
  version: '4', groupKey: '{}:{}', truncatedAlerts: 0, status: 'firing', receiver: 'rollguard', groupLabels: {}, commonLabels: {}, commonAnnotations: {}, externalURL: '',
  alerts: alerts.map((a) => ({ status: 'firing', labels: { alertname: a.alertname, namespace: 'prod', deployment: a.deployment }, annotations: {}, startsAt, endsAt: '0001-01-01T00:00:00Z', generatorURL: '', fingerprint: a.fp })),
});

/**
 * The storm benchmarks' path: no cluster configured (DRY_RUN, the real actions, which refuse with
 * no_cluster), no Prometheus, the storm's rule (onPrometheusDown: act).
 */
const dryRun = () => ({ env: { DRY_RUN: 'true' }, actions: createActions(), prometheus: null, ruleText: `rules:\n${ruleEntry('storm-p1', 'HighErrorRate', 'P1')}` });

async function path(name: string, alerts: { alertname: string; deployment: string; fp: string }[], opts: Partial<ReturnType<typeof dryRun>> = {}) {
  const inner = new MemoryStore();
  const c = counting(inner);
  const e = testEngine({ store: c.store, ...opts });
  const { app } = testApp({ store: c.store, deps: { rules: { rules: rules(opts.ruleText) }, metrics: e.metrics } });
  const worker = new QueueWorker({
    store: c.store, metrics: e.metrics, logger: pino({ level: 'silent' }), consumer: 'bench', claimIdleMs: 60_000, maxDeliveries: 3, blockMs: 20,
    handler: (ev) => e.engine.handle(ev), coalesceKey: (ev) => e.engine.coalesceKey(ev), onCoalesced: (ev, into) => e.engine.coalesced(ev, into),
  });
  await postAlerts(app, webhook(alerts));
  const intake = Object.fromEntries(c.counts);
  c.reset();
  worker.start();
  while ((await inner.queueDepth()) > 0) await sleep(5);
  await worker.stop();
  await e.engine.idle();
  // the polling above is the benchmark's, not the engine's
  c.counts.delete('queueDepth');
  c.counts.set('consume', Math.max(0, (c.counts.get('consume') ?? 0)));
  const engine = Object.fromEntries([...c.counts].sort((a, b) => b[1] - a[1]));
  const total = [...c.counts.values()].reduce((a, b) => a + b, 0);
  const roundTrips = c.trips.value;
  log(`${name}: intake ${JSON.stringify(intake)}; engine ${total} calls in ${roundTrips} round trips: ${JSON.stringify(engine)}`);
  return { alerts: alerts.length, intake, engine, engineCalls: total, roundTrips, perAlert: Math.round((total / alerts.length) * 100) / 100 };
}

async function main() {
  const result = {
    benchmark: 'store-calls',
    note: 'consume counts include empty blocking reads while the worker idles (not in roundTrips); the bench polls queueDepth on the store itself (not counted)',
    dryRunNoCluster: await path('one alert, dry-run with no cluster (the storm benchmarks\' path)', [{ alertname: 'HighErrorRate', deployment: 'checkout', fp: 'dry' }], dryRun()),
    p0RolledBack: await path('one P0 alert rolled back', [{ alertname: 'HighErrorRate', deployment: 'checkout', fp: 'one' }]),
    burstOneTarget: await path('a burst of 10 for one target', Array.from({ length: 10 }, (_, i) => ({ alertname: 'HighErrorRate', deployment: 'checkout', fp: `burst-${i}` }))),
    unmatched: await path('100 alerts no rule matches', Array.from({ length: 100 }, (_, i) => ({ alertname: 'NoRule', deployment: `d${i}`, fp: `u-${i}` }))),
  };
  writeResult('store-calls', result);
}

runBench('store-calls', main);
