// The API server failing under the engine (issue 9): the engine runs the real Deployment action
// against the real control plane through the fault proxy (test/support/fault-proxy.ts). For
// 403, 404, 409 (once, and every time), 500 and a hanging API server, the rollback record ends in
// a clear state with an outcome message naming the fault; a 409 is retried with a fresh read;
// nothing is retried in a loop (redeliveries and the scheduler write nothing more).
// Then a rollback that does not recover (a real Prometheus, backfilled, keeps saying the error
// rate is high): escalated once, no second rollback; with allowStepBack, one step further back
// (to the revision before the one restored), then no more.
import t from 'tap';
import { pino } from 'pino';
import { createActions } from '../../src/actions/index.js';
import type { Alert } from '../../src/alertmanager/alert.js';
import { loadConfig } from '../../src/config.js';
import { Engine } from '../../src/engine/pipeline.js';
import type { RollbackRecord } from '../../src/engine/record.js';
import { createKube } from '../../src/kube/config.js';
import type { Kube, KubeObject } from '../../src/kube/kube.js';
import { createMetrics } from '../../src/metrics.js';
import { Notifications } from '../../src/notify/notifier.js';
import { PrometheusClient } from '../../src/prometheus/client.js';
import { MemoryStore } from '../../src/store/memory.js';
import { startCluster } from '../cluster/harness.js';
import { CapturingNotifier, rules } from '../support/engine.js';
import { startFaultProxy } from '../support/fault-proxy.js';
import { samples, startPrometheus } from '../support/prometheus.js';
import { deployV1ThenV2, deployVersions, getDep, image, REVISION } from './cluster-support.js';
import { figures } from './figures.js';

const NS = 'faults';
const cluster = await startCluster({ argoCrds: false });
t.teardown(() => cluster.stop({ keep: !t.passing() }));
const proxy = await startFaultProxy({ server: cluster.server, caFile: cluster.caFile });
t.teardown(() => proxy.close());
const kube = await createKube({ mode: 'kubeconfig', path: proxy.kubeconfig(cluster.rollguardToken) }, { timeoutMs: 1500 });

const RULES = `
rules:
  - name: faults
    match: ['alertname="HighErrorRate"']
    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
    trigger: { kind: error_rate, selector: { namespace: "{{ $labels.namespace }}" }, threshold: 0.05, for: 2m, step: 15s }
    priority: P0
    onPrometheusDown: act
  - name: no-recovery
    match: ['alertname="StillFailing"']
    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
    trigger: { kind: error_rate, selector: { namespace: "{{ $labels.namespace }}" }, threshold: 0.05, for: 2m, step: 15s }
    priority: P0
    guards: { budget: { perTargetPerHour: 10 } }
  - name: step-back
    match: ['alertname="StillFailingStepBack"']
    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
    trigger: { kind: error_rate, selector: { namespace: "{{ $labels.namespace }}" }, threshold: 0.05, for: 2m, step: 15s }
    priority: P0
    guards: { allowStepBack: true, maxStepBack: 1, budget: { perTargetPerHour: 10 } }
`;

function makeEngine(opts: { prometheus?: PrometheusClient | null; now?: () => number; kube?: Kube } = {}) {
  const config = loadConfig({ DRY_RUN: 'false', LOCK_TTL: '10s', VERIFY_TIMEOUT: '60s', RECOVERY_TIMEOUT: '3s', RECOVERY_POLL: '500ms', BUDGET_CLUSTER_PER_HOUR: '100' });
  const now = opts.now ?? Date.now;
  const metrics = createMetrics({ defaults: false });
  const logger = pino({ level: 'silent' });
  const notifier = new CapturingNotifier();
  const notifications = new Notifications([notifier], logger, metrics);
  const engine = new Engine({ config, store: new MemoryStore(now), metrics, logger, rules: { rules: rules(RULES) }, prometheus: opts.prometheus ?? null, kube: opts.kube ?? kube, actions: createActions(), notifications, owner: 'faults-replica', ...(opts.now ? { now } : {}) });
  let n = 0;
  // verification runs in the background once the cluster is changed: wait for it
  const deliver = (alert: Alert) => engine.handle({ id: `ev-${++n}`, alert, deliveries: 1 }).finally(() => engine.idle());
  return { engine, notifier, notifications, deliver };
}

/** An alert that fires at `startsAt` (by default now): after the deploys above, as an alert a deploy causes does. */
function alertFor(deployment: string, alertname = 'HighErrorRate', startsAt = Date.now()): Alert {
  return { fingerprint: `fp-${alertname}-${deployment}`, status: 'firing', labels: { alertname, namespace: NS, deployment }, annotations: {}, startsAt, generatorURL: '', receiver: 'rollguard', groupKey: 'g', externalURL: '', receivedAt: startsAt };
}

/**
 * The API server as an engine whose clock is moved back by `offset` sees it: the objects' creation
 * times moved back with it, so the revisions deployed above read as deployed inside the engine's
 * (backfilled) time, before its alerts started, as the recent-deploy guard requires.
 */
function shiftedKube(k: Kube | null, offset: number): Kube {
  if (!k) throw new Error('no Kubernetes client');
  const shift = (o: KubeObject): KubeObject => {
    const c = o.metadata.creationTimestamp;
    return c ? { ...o, metadata: { ...o.metadata, creationTimestamp: new Date(Date.parse(c) - offset).toISOString() } } : o;
  };
  return new Proxy(k, {
    get(target, prop) {
      const v: unknown = Reflect.get(target, prop, target);
      if (typeof v !== 'function') return v;
      if (prop === 'get' || prop === 'getMetadata') return async (...a: unknown[]) => shift(await (v as (...x: unknown[]) => Promise<KubeObject>).apply(target, a));
      if (prop === 'list') return async (...a: unknown[]) => (await (v as (...x: unknown[]) => Promise<KubeObject[]>).apply(target, a)).map(shift);
      return (v as (...x: unknown[]) => unknown).bind(target);
    },
  });
}

const depPath = (name: string) => new RegExp(`/apis/apps/v1/namespaces/${NS}/deployments/${name}(\\?|$)`);
const CASES = ['f403', 'f404', 'f409once', 'f409always', 'f500', 'fhang'];
await cluster.kubectl(['create', 'namespace', NS], { check: true });
await Promise.all([...CASES.map((n) => deployV1ThenV2(cluster, NS, n)), deployVersions(cluster, NS, 'stuck', ['stuck:v1', 'stuck:v2-bad']), deployVersions(cluster, NS, 'stepper', ['stepper:v0', 'stepper:v1', 'stepper:v2-bad'])]);

const outcomes: Record<string, string> = {};
let faultsInjected = 0;

t.test('API server faults under the engine: a clear recorded outcome each, no retry loop', async (t) => {
  const e = makeEngine();
  const run = async (name: string, fault: Parameters<typeof proxy.faults.push>[0] | null): Promise<RollbackRecord> => {
    if (fault) proxy.faults.push(fault);
    const before = proxy.injected();
    const alert = alertFor(name);
    await e.deliver(alert);
    faultsInjected += proxy.injected() - before;
    proxy.faults.length = 0;
    const [rec] = await e.engine.records.list({ target: `Deployment/${NS}/${name}` });
    if (!rec) throw new Error(`no record for ${name}`);
    outcomes[name] = `${rec.state}: ${rec.outcome?.message}`;
    // nothing more happens on a redelivery or on the scheduler's rounds
    const writes = proxy.count('PATCH', depPath(name));
    await e.deliver(alert);
    await e.engine.tick();
    await e.engine.tick();
    t.equal(proxy.count('PATCH', depPath(name)), writes, `${name}: no write after the record closed (redelivery, scheduler)`);
    return rec;
  };

  let rec = await run('f403', { method: 'GET', path: /\/namespaces\/faults\/replicasets/, answer: 403, reason: 'Forbidden', times: 1 });
  t.equal(rec.state, 'error', `${outcomes.f403}`);
  t.match(rec.outcome?.message, /HTTP 403 Forbidden/, 'the message names the 403');
  t.equal(proxy.count('PATCH', depPath('f403')), 0, 'nothing written');

  rec = await run('f404', { method: 'GET', path: depPath('f404'), answer: 404, reason: 'NotFound', times: 1 });
  t.equal(rec.state, 'refused', `${outcomes.f404}`);
  t.match(rec.outcome?.message, /not found/, 'kubectl words: not found');
  t.equal(proxy.count('PATCH', depPath('f404')), 0, 'nothing written');

  rec = await run('f409once', { method: 'PATCH', path: depPath('f409once'), answer: 409, reason: 'Conflict', times: 1 });
  t.equal(rec.state, 'unverified', `${outcomes.f409once} (applied; no Prometheus here to re-check)`);
  t.equal(proxy.count('PATCH', depPath('f409once')), 2, 'one conflict, one more write after a fresh read');
  t.same(rec.timeline.find((s) => s.step === 'executed')?.data?.attempts, 2, 'the record says two attempts');
  t.equal((await getDep(cluster, NS, 'f409once')).metadata.annotations?.[REVISION], '3');

  rec = await run('f409always', { method: 'PATCH', path: depPath('f409always'), answer: 409, reason: 'Conflict', times: 100 });
  t.equal(rec.state, 'failed', `${outcomes.f409always}`);
  t.match(rec.outcome?.message, /error during the rollback: .*HTTP 409 Conflict/);
  t.equal(proxy.count('PATCH', depPath('f409always')), 3, 'bounded: three attempts, then the conflict is recorded');
  t.equal((await getDep(cluster, NS, 'f409always')).metadata.annotations?.[REVISION], '2', 'not changed');

  rec = await run('f500', { method: 'PATCH', path: depPath('f500'), answer: 500, reason: 'InternalError', times: 1 });
  t.equal(rec.state, 'failed', `${outcomes.f500}`);
  t.match(rec.outcome?.message, /HTTP 500 InternalError/);
  t.equal(proxy.count('PATCH', depPath('f500')), 1, 'a 500 is not retried');

  rec = await run('fhang', { method: 'PATCH', path: depPath('fhang'), answer: 'hang', times: 1 });
  t.equal(rec.state, 'failed', `${outcomes.fhang}`);
  t.match(rec.outcome?.message, /no answer within 1500 ms/, 'the message says the API server did not answer');
  t.equal(proxy.count('PATCH', depPath('fhang')), 1, 'a timeout is not retried');

  await e.notifications.flush();
  const escalated = e.notifier.sent.filter((n) => n.kind === 'rollback_failed').map((n) => n.target);
  t.same(
    escalated.sort(),
    ['Deployment/faults/f403', 'Deployment/faults/f409always', 'Deployment/faults/f500', 'Deployment/faults/fhang'],
    'each failed write escalated once, and the 403 that stopped a rollback before any write (an error is never only recorded)',
  );
  for (const [k, v] of Object.entries(outcomes)) t.comment(`${k}: ${v}`);
});

t.test('a rollback that does not recover: escalated once, no second rollback; a step back goes further back, once', async (t) => {
  // Prometheus keeps saying 50% errors in namespace "faults" for three hours from T0
  const T0 = Date.UTC(2026, 9, 1, 12, 0);
  const S = 15_000;
  let a500 = 0;
  let a200 = 0;
  const prom = await startPrometheus(t, [
    { metric: 'http_requests_total', labels: { namespace: NS, code: '500' }, samples: samples(T0, 720, S, (i) => (a500 += i === 0 ? 0 : 50)) },
    { metric: 'http_requests_total', labels: { namespace: NS, code: '200' }, samples: samples(T0, 720, S, (i) => (a200 += i === 0 ? 0 : 50)) },
  ]);
  // the engine lives inside the backfilled window: 90 minutes after T0, running at real speed
  const offset = Date.now() - (T0 + 90 * 60_000);
  const now = () => Date.now() - offset;
  const e = makeEngine({ prometheus: new PrometheusClient({ url: prom.url, timeoutMs: 5000 }), now, kube: shiftedKube(kube, offset) });
  const writes = (name: string) => proxy.count('PATCH', depPath(name));

  // no step back: the first alert rolls back, the service does not recover
  await e.deliver(alertFor('stuck', 'StillFailing', now()));
  let [first] = await e.engine.records.list({ target: `Deployment/${NS}/stuck` });
  t.equal(first?.state, 'failed', `${first?.state}: ${first?.outcome?.message}`);
  t.match(first?.outcome?.message, /rollout complete but the trigger still holds/);
  // the alert goes on: a new start, a redelivery, the scheduler
  const again = alertFor('stuck', 'StillFailing', now());
  await e.deliver(again);
  await e.deliver(again);
  await e.engine.tick();
  const stuck = await e.engine.records.list({ target: `Deployment/${NS}/stuck` });
  t.equal(stuck.length, 2, 'two alerts, two records');
  const second = stuck.find((r) => r.id !== first?.id);
  t.equal(second?.state, 'blocked', `${second?.state}: ${second?.outcome?.message}`);
  t.match(second?.outcome?.message, /blocked by cooldown/);
  t.equal(writes('stuck'), 1, 'one rollback, no second');
  t.equal(image(await getDep(cluster, NS, 'stuck')), 'stuck:v1');

  // allowStepBack, maxStepBack 1: v0, v1, v2-bad; rolled back to v1, which does not recover either
  await e.deliver(alertFor('stepper', 'StillFailingStepBack', now()));
  [first] = await e.engine.records.list({ target: `Deployment/${NS}/stepper` });
  t.equal(first?.state, 'failed', `${first?.state}: ${first?.outcome?.message}`);
  t.equal(image(await getDep(cluster, NS, 'stepper')), 'stepper:v1');
  await e.deliver(alertFor('stepper', 'StillFailingStepBack', now()));
  const afterStep = await getDep(cluster, NS, 'stepper');

  t.equal(writes('stepper'), 2, 'the step back is a second rollback');
  t.equal(image(afterStep), 'stepper:v0', 'one revision further back (v0), never forward to the bad v2');
  await e.deliver(alertFor('stepper', 'StillFailingStepBack', now()));
  await e.engine.tick();
  const stepper = await e.engine.records.list({ target: `Deployment/${NS}/stepper` });
  t.equal(stepper.length, 3);
  const last = stepper.find((r) => r.timeline.every((s) => s.step !== 'executed') && r.state === 'blocked');
  t.match(last?.outcome?.message, /step-back limit \(1\) is reached/, `then no more: ${last?.outcome?.message}`);
  t.equal(writes('stepper'), 2, 'bounded: two writes in all');

  await e.notifications.flush();
  const failedNotes = e.notifier.sent.filter((n) => n.kind === 'rollback_failed');
  t.equal(failedNotes.filter((n) => n.target === `Deployment/${NS}/stuck`).length, 1, 'stuck: escalated exactly once');
  figures(t, 'api-faults-engine', {
    faults_injected: faultsInjected,
    fault_kinds: '403/404/409x1/409xN/500/timeout',
    outcomes: CASES.map((c) => (outcomes[c] ?? '?').split(':')[0]).join('/'),
    no_recovery_rollbacks: writes('stuck'),
    step_back_rollbacks: writes('stepper'),
    escalations_not_recovered: failedNotes.length,
  });
});
