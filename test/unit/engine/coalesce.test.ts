import { pino } from 'pino';
import t, { type Test } from 'tap';
import { dedupeKey, type Alert } from '../../../src/alertmanager/alert.js';
import { QueueWorker } from '../../../src/engine/worker.js';
import type { RangeSeries } from '../../../src/prometheus/client.js';
import type { QueuedEvent } from '../../../src/store/store.js';
import { metricValue } from '../../support/app.js';
import { FakePrometheus, firing, recoversOnWrite, testEngine } from '../../support/engine.js';

// Found by review (2026-12-07): alerts were coalesced by rule and target only, so an alert whose
// trigger query differed from the first one's (another route) was linked to the first one's
// evaluation, never confirmed, and its resends dropped as duplicates for DEDUPE_TTL.

/** Per-route errors: /checkout at `value` (20%, 0.1% once a rollback wrote: recoversOnWrite), every other route at 0%. */
class PerRoute extends FakePrometheus {
  override async queryRange(expr: string, s: number, e: number, st: number): Promise<RangeSeries[]> {
    this.queries.push(expr);
    const v = expr.includes('route="/checkout"') ? this.value : 0;
    const samples = [];
    for (let x = s; x <= e; x += st) samples.push({ t: x, v });
    return [{ labels: {}, samples }];
  }
}

const RULES = `
rules:
  - name: route-errors
    match: ['alertname="RouteErrors"']
    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
    trigger: { kind: custom, query: 'sum(rate(http_errors_total{namespace="{{ $labels.namespace }}",route="{{ $labels.route }}"}[1m]))', threshold: 0.05, for: 2m, step: 15s }
    priority: P0
  - name: pinned
    match: ['alertname="Pinned"']
    target: { kind: Deployment, namespace: prod, name: api, params: { toRevision: "{{ $labels.good }}" } }
    trigger: { kind: error_rate, selector: { namespace: prod }, threshold: 0.05, for: 2m, step: 15s }
    priority: P0
  - name: error-rate
    match: ['alertname="HighErrorRate"']
    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
    trigger: { kind: error_rate, selector: { namespace: "{{ $labels.namespace }}" }, threshold: 0.05, for: 2m, step: 15s }
    priority: P0
`;

const startsAt = Date.now() - 3 * 60_000;
const route = (r: string, pod: string, over: Partial<Alert> = {}) =>
  firing('RouteErrors', 'api', { startsAt, labels: { alertname: 'RouteErrors', namespace: 'prod', deployment: 'api', route: r, pod }, ...over });
const ev = (alert: Alert, i: number): QueuedEvent => ({ id: `ev-${i}`, alert, deliveries: 1 });

/** Queues `alerts` as one webhook batch would (lane 0) and runs the queue worker over them until they are handled. */
async function runBatch(e: ReturnType<typeof testEngine>, alerts: Alert[]) {
  const handled: string[] = [];
  await e.store.intake(alerts.map((a) => ({ key: dedupeKey(a), alert: a, lane: 0 as const })), e.config.DEDUPE_TTL);
  const w = new QueueWorker({
    store: e.store,
    metrics: e.metrics,
    logger: pino({ level: 'silent' }),
    consumer: 'coalesce-test',
    claimIdleMs: 60_000,
    maxDeliveries: 5,
    blockMs: 20,
    handler: (x) => (handled.push(x.alert.fingerprint), e.engine.handle(x)),
    coalesceKey: (x) => e.engine.coalesceKey(x),
    onCoalesced: (x, into) => e.engine.coalesced(x, into),
    targetsOf: (x) => e.engine.targetsOf(x),
  });
  w.start();
  for (let i = 0; i < 200 && (await e.store.queueDepth()) > 0; i++) await new Promise((r) => setTimeout(r, 10));
  await w.stop();
  await e.engine.idle();
  return handled;
}


/** One alert's record blocked, the other's rolled back (once), each said why. */
async function blockedThenRolledBack(t: Test, e: ReturnType<typeof testEngine>, blocked: [Alert, string], rolledBack: [Alert, string]): Promise<void> {
  const recs = await e.engine.records.list({});
  const state = (a: Alert) => recs.find((r) => r.alert?.fingerprint === a.fingerprint)?.state;
  t.equal(state(blocked[0]), 'blocked', blocked[1]);
  t.equal(state(rolledBack[0]), 'succeeded', rolledBack[1]);
  t.equal(e.action.executed.length, 1);
}


/** 40 alerts for api, one per pod, starting 1 s apart from `base`, run as one batch: one evaluation, the first one's, the other 39 joined to it. */
async function stormOfOne(t: Test, e: ReturnType<typeof testEngine>, base: number): Promise<Alert[]> {
  const alerts = Array.from({ length: 40 }, (_, i) =>
    firing('HighErrorRate', 'api', { startsAt: base + i * 1000, labels: { alertname: 'HighErrorRate', namespace: 'prod', deployment: 'api', pod: `api-${i}` } }),
  );
  const handled = await runBatch(e, alerts);
  t.same(handled, [alerts[0]!.fingerprint], 'one evaluation, the first alert');
  t.equal(await metricValue(e.metrics, 'rollguard_alerts_coalesced_total'), 39, 'the other 39 joined it');
  return alerts;
}

t.test('one batch, one rule and target, two routes: each route is confirmed on its own, and the one that holds rolls back', async (t) => {
  const prom = new PerRoute();
  const e = testEngine({ ruleText: RULES, prometheus: prom });
  recoversOnWrite(e);
  const health = route('/health', 'api-1');
  const checkout = route('/checkout', 'api-2');
  // the same route from another pod: the same query, target and start, so the same evaluation
  const checkout2 = route('/checkout', 'api-3');
  const handled = await runBatch(e, [health, checkout, checkout2]);
  t.same(handled, [health.fingerprint, checkout.fingerprint], 'two evaluations: /health, then /checkout');
  t.ok(prom.queries.some((q) => q.includes('route="/checkout"')), "the /checkout alert's query was sent");
  t.equal(e.action.executed.length, 1, 'api rolled back once, for /checkout');
  const recs = await e.engine.records.list({});
  const byRoute = Object.fromEntries(recs.map((r) => [r.alert?.labels.route, r.state]));
  t.equal(byRoute['/health'], 'not_confirmed');
  t.equal(byRoute['/checkout'], 'succeeded');
  t.equal(await metricValue(e.metrics, 'rollguard_alerts_coalesced_total'), 1, 'the second /checkout alert joined the first');
  const checkoutRec = recs.find((r) => r.alert?.labels.route === '/checkout')!;
  t.same(await e.engine.records.recordsOfAlert(checkout2.fingerprint, startsAt), [checkoutRec.id], 'linked to the /checkout record');
});

t.test('the key is what the evaluation reads from the alert: query, targets with params', async (t) => {
  const e = testEngine({ ruleText: RULES });
  const key = (a: Alert) => e.engine.coalesceKey(ev(a, 1));
  t.ok(key(route('/checkout', 'api-1')));
  t.equal(key(route('/checkout', 'api-1')), key(route('/checkout', 'api-2')), 'a label neither the query nor the target reads: the same key');
  t.not(key(route('/checkout', 'api-1')), key(route('/health', 'api-1')), 'another route: another query');
  // startsAt is judged after the first evaluation instead (the recent-deploy guard: the tests below)
  t.equal(key(route('/checkout', 'api-1')), key(route('/checkout', 'api-2', { startsAt: startsAt - 60_000 })), 'another start: the same key');
  const pinned = (good: string) => firing('Pinned', 'api', { startsAt, labels: { alertname: 'Pinned', good } });
  t.not(key(pinned('3')), key(pinned('4')), 'the same target rolled back to another revision (a param)');
  const noRoute = firing('RouteErrors', 'api', { startsAt, labels: { alertname: 'RouteErrors', namespace: 'prod', deployment: 'api' } });
  t.equal(key(noRoute), undefined, 'a label the query needs is missing: handled alone');
});

t.test('two alerts for one target that started at different times: each is judged against its own start by the recent-deploy guard', async (t) => {
  const e = testEngine({ ruleText: RULES });
  recoversOnWrite(e);
  // the fake's current revision was created 10 minutes ago
  const before = firing('HighErrorRate', 'api', { startsAt: Date.now() - 20 * 60_000 });
  const after = firing('HighErrorRate', 'api', { startsAt: Date.now() - 3 * 60_000 });
  const handled = await runBatch(e, [before, after]);
  t.same(handled, [before.fingerprint, after.fingerprint], 'two evaluations');
  await blockedThenRolledBack(t, e, [before, 'the revision was deployed after the first alert started: not its cause'], [after, 'the second alert started after it: rolled back']);
});

t.test('a storm: 40 alerts for one target that started 1 s apart are one evaluation when the recent-deploy guard allowed it', async (t) => {
  // Found by review (2026-12-07): keyed on startsAt, each was an evaluation of its own: 40
  // evaluations, 39 of them "blocked by the lock guard" notifications for one rollback.
  // Prometheus still shows errors after the write (no recoversOnWrite): the rollback fails verification.
  const e = testEngine({ ruleText: RULES });
  // the fake's current revision was created 10 minutes ago: before every start
  const base = Date.now() - 5 * 60_000;
  const alerts = await stormOfOne(t, e, base);
  t.equal(e.action.executed.length, 1, 'api rolled back once');
  t.ok(e.notifier.sent.length <= 2, `at most 2 notifications (${e.notifier.sent.length})`);
  const recs = await e.engine.records.list({});
  t.equal(recs.length, 1, 'one record');
  t.equal(recs[0]!.state, 'failed', 'rolled back, not recovered: escalated once');
  t.same(await e.engine.records.recordsOfAlert(alerts[39]!.fingerprint, alerts[39]!.startsAt), [recs[0]!.id], 'the last one linked to it');
});


t.test('a storm over a revision older than onlyIfDeployedWithin: one evaluation, blocked as too old, the later starts join it', async (t) => {
  // Found by review (2026-12-07): once the recent-deploy guard blocked the first alert, every alert
  // with another start was evaluated on its own: 40 evaluations, 40 notifications, 40 records. A
  // later start only finds the revision older: the same block.
  const e = testEngine({ ruleText: RULES });
  e.action.createdAt = Date.now() - 48 * 3600_000; // the usual incident: no recent deploy
  const base = Date.now() - 5 * 60_000;
  const alerts = await stormOfOne(t, e, base);
  t.ok(e.notifier.sent.length <= 2, `at most 2 notifications (${e.notifier.sent.length})`);
  const recs = await e.engine.records.list({});
  t.equal(recs.length, 1, 'one record');
  t.equal(recs[0]!.state, 'blocked');
  t.match(recs[0]!.guards.find((g) => g.guard === 'recent-deploy'), { result: 'block', because: 'too_old' }, 'the cause kept in the record');
  t.equal(e.action.executed.length, 0, 'nothing rolled back');
  t.same(await e.engine.records.recordsOfAlert(alerts[39]!.fingerprint, alerts[39]!.startsAt), [recs[0]!.id], 'the last one linked to it');
});

t.test('blocked as too old: an alert that started earlier, when the revision was recent, is judged on its own; a later one joins', async (t) => {
  const e = testEngine({ ruleText: RULES });
  recoversOnWrite(e);
  e.action.createdAt = Date.now() - 30 * 3600_000;
  // the first alert started 30 h after the deploy: too old (onlyIfDeployedWithin 24h)
  const first = firing('HighErrorRate', 'api', { startsAt: Date.now() - 10 * 60_000, labels: { alertname: 'HighErrorRate', namespace: 'prod', deployment: 'api', pod: 'api-1' } });
  const later = firing('HighErrorRate', 'api', { startsAt: Date.now() - 3 * 60_000, labels: { alertname: 'HighErrorRate', namespace: 'prod', deployment: 'api', pod: 'api-2' } });
  // this one started 23 h after the deploy: within it
  const earlier = firing('HighErrorRate', 'api', { startsAt: Date.now() - 7 * 3600_000, labels: { alertname: 'HighErrorRate', namespace: 'prod', deployment: 'api', pod: 'api-3' } });
  const handled = await runBatch(e, [first, later, earlier]);
  t.same(handled, [first.fingerprint, earlier.fingerprint], 'two evaluations: the later start joined the first');
  await blockedThenRolledBack(t, e, [first, 'not a recent deploy for the first alert'], [earlier, 'a recent deploy for the earlier one: rolled back']);
});

t.test('a recent-deploy block written before its cause was kept: an alert with any other start is judged on its own', async (t) => {
  const e = testEngine({ ruleText: RULES });
  e.action.createdAt = Date.now() - 48 * 3600_000;
  const labels = { alertname: 'HighErrorRate', namespace: 'prod', deployment: 'api' };
  const first = ev(firing('HighErrorRate', 'api', { startsAt: Date.now() - 10 * 60_000, labels: { ...labels, pod: 'api-1' } }), 1);
  await e.engine.handle(first);
  const [rec] = await e.engine.records.list({});
  const verdict = rec!.guards.find((g) => g.guard === 'recent-deploy')!;
  t.equal(verdict.because, 'too_old');
  delete verdict.because; // as an older rollguard wrote it
  await e.engine.records.save(rec!);
  const later = ev(firing('HighErrorRate', 'api', { startsAt: Date.now() - 3 * 60_000, labels: { ...labels, pod: 'api-2' } }), 2);
  const same = ev(firing('HighErrorRate', 'api', { startsAt: first.alert.startsAt, labels: { ...labels, pod: 'api-3' } }), 3);
  t.equal(await e.engine.coalesced(later, first), false, 'another start: not linked');
  t.equal(await e.engine.coalesced(same, first), true, 'the same start: linked');
});
