import { pino } from 'pino';
import t from 'tap';
import { QueueWorker } from '../../../src/engine/worker.js';
import type { QueuedEvent } from '../../../src/store/store.js';
import { metricValue, postAlerts, testApp } from '../../support/app.js';
import { rules, testEngine } from '../../support/engine.js';

const startsAt = new Date(Date.now() - 3 * 60_000).toISOString();

function webhook(alerts: { alertname: string; deployment: string; fp: string; status?: 'firing' | 'resolved' }[]) {
  return {
    version: '4',
    groupKey: '{}:{}',
    truncatedAlerts: 0,
    status: 'firing',
    receiver: 'rollguard',
    groupLabels: {},
    commonLabels: {},
    commonAnnotations: {},
    externalURL: 'http://alertmanager:9093',
    alerts: alerts.map((a) => ({
      status: a.status ?? 'firing',
      labels: { alertname: a.alertname, namespace: 'prod', deployment: a.deployment },
      annotations: {},
      startsAt,
      endsAt: a.status === 'resolved' ? new Date().toISOString() : '0001-01-01T00:00:00Z',
      generatorURL: '',
      fingerprint: a.fp,
    })),
  };
}

/** The engine of test/support/engine.ts behind intake (with the rules: the pre-match) and a queue worker. */
function setup(env: Record<string, string> = {}) {
  const e = testEngine({ env });
  const { app } = testApp({ store: e.store, deps: { rules: { rules: rules() }, metrics: e.metrics } });
  const order: QueuedEvent[] = [];
  const worker = new QueueWorker({
    store: e.store,
    metrics: e.metrics,
    logger: pino({ level: 'silent' }),
    consumer: 'priority-test',
    claimIdleMs: 60_000,
    maxDeliveries: 3,
    blockMs: 20,
    handler: async (ev) => {
      order.push(ev);
      return e.engine.handle(ev);
    },
    coalesceKey: (ev) => e.engine.coalesceKey(ev),
    onCoalesced: (ev, into) => e.engine.coalesced(ev, into),
  });
  return { ...e, app, worker, order };
}

t.test('a P0 alert queued behind 1,000 P2 alerts is handled first, and its rollback is the first one executed', async (t) => {
  const s = setup();
  for (let b = 0; b < 10; b++) {
    const res = await postAlerts(s.app, webhook(Array.from({ length: 100 }, (_, i) => ({ alertname: 'MinorBug', deployment: `svc-${b * 100 + i}`, fp: `p2-${b}-${i}` }))));
    t.equal(res.statusCode, 200);
  }
  const res = await postAlerts(s.app, webhook([{ alertname: 'HighErrorRate', deployment: 'checkout', fp: 'the-p0' }]));
  t.same(res.json(), { queued: 1, duplicates: 0 });
  t.equal(await s.store.queueDepth(), 1001, 'all queued, the P0 last');
  s.worker.start();
  while (s.order.length < 20) await new Promise((r) => setTimeout(r, 10));
  await s.worker.stop();
  await s.engine.idle();
  t.equal(s.order[0]!.alert.fingerprint, 'the-p0', 'the P0 alert is the first event the engine handles');
  t.equal(s.order[0]!.lane, 0);
  t.ok(s.order.slice(1).every((ev) => ev.lane === 2 && ev.alert.labels.alertname === 'MinorBug'), 'then the P2 ones');
  t.same(s.action.executed.map((x) => x.ref.name), ['checkout'], 'the P0 rollback executed; the P2 rule (hotfix forward) changes nothing');
  const rec = (await s.store.listRecords({ limit: 2000 })).find((r) => r.target === 'Deployment/prod/checkout');
  t.match(rec, { priority: 'P0', rule: 'error-rate' }, 'its record is of the P0 rule');
});

t.test('intake: an alert no rule matches is counted, not queued nor remembered; a resolved one is still queued (it may close records)', async (t) => {
  const s = setup();
  const res = await postAlerts(s.app, webhook([{ alertname: 'NobodyCares', deployment: 'x', fp: 'u1' }, { alertname: 'HighLatency', deployment: 'y', fp: 'p1' }]));
  t.same(res.json(), { queued: 1, duplicates: 0, unmatched: 1 });
  t.equal(await metricValue(s.metrics, 'rollguard_alerts_unmatched_total'), 1);
  t.same((await postAlerts(s.app, webhook([{ alertname: 'NobodyCares', deployment: 'x', fp: 'u1' }]))).json(), { queued: 0, duplicates: 0, unmatched: 1 }, 'its resend is counted again: nothing of it is kept');
  t.equal(await metricValue(s.metrics, 'rollguard_alerts_unmatched_total'), 2);
  t.same((await postAlerts(s.app, webhook([{ alertname: 'NobodyCares', deployment: 'x', fp: 'u1', status: 'resolved' }]))).json(), { queued: 1, duplicates: 0 });
  const got = await s.store.consume('c', 10, 0, 60_000);
  t.same(got.map((e) => [e.alert.fingerprint, e.alert.status, e.lane]), [['p1', 'firing', 1], ['u1', 'resolved', 2]], 'the P1 alert in lane 1, the resolved one in the last lane');
});

t.test('a burst for one rule and target is one evaluation; every alert is linked to its record, which is resolved when the last alert of the burst resolves', async (t) => {
  const s = setup();
  await postAlerts(s.app, webhook([1, 2, 3, 4, 5].map((i) => ({ alertname: 'HighErrorRate', deployment: 'checkout', fp: `burst-${i}` }))));
  await postAlerts(s.app, webhook([{ alertname: 'HighErrorRate', deployment: 'cart', fp: 'other-target' }]));
  s.worker.start();
  while ((await s.store.queueDepth()) > 0) await new Promise((r) => setTimeout(r, 10));
  await s.worker.stop();
  await s.engine.idle();
  t.same(s.order.map((e) => e.alert.fingerprint), ['burst-1', 'other-target'], 'two evaluations: one per target');
  t.equal(await metricValue(s.metrics, 'rollguard_alerts_coalesced_total'), 4);
  t.equal(await metricValue(s.metrics, 'rollguard_events_processed_total', { outcome: 'handled' }), 6, 'every alert counted as handled');
  const recs = (await s.store.listRecords({ limit: 100 })).filter((r) => r.target === 'Deployment/prod/checkout');
  t.equal(recs.length, 1, 'one record for the burst');
  for (const i of [1, 2, 3, 4, 5]) {
    t.same(await s.engine.records.recordsOfAlert(`burst-${i}`, Date.parse(startsAt)), [recs[0]!.id], `burst-${i} linked to it`);
  }
  // (cart is evaluated at the same time, on its own; the test double's one "applied" flag for every
  // target decides whether it runs too, so only checkout's rollbacks are counted here)
  t.same(s.action.executed.filter((x) => x.ref.name === 'checkout').length, 1, 'one rollback for the burst');
  t.ok((await s.store.listRecords({ limit: 100 })).some((r) => r.target === 'Deployment/prod/cart'), 'the other target evaluated on its own');
  // the record follows the whole burst: one alert of it resolving says nothing of the others
  const drain = async () => {
    s.worker.start();
    while ((await s.store.queueDepth()) > 0) await new Promise((r) => setTimeout(r, 10));
    await s.worker.stop();
  };
  await postAlerts(s.app, webhook([{ alertname: 'HighErrorRate', deployment: 'checkout', fp: 'burst-5', status: 'resolved' }]));
  await drain();
  const resolvedAt = async () => ((await s.store.getRecord(recs[0]!.id)) as { times?: { resolvedAt?: number } }).times?.resolvedAt;
  t.equal(await resolvedAt(), undefined, 'not resolved by another alert of the burst');
  await postAlerts(s.app, webhook([{ alertname: 'HighErrorRate', deployment: 'checkout', fp: 'burst-1', status: 'resolved' }]));
  await drain();
  t.equal(await resolvedAt(), undefined, 'nor by its own alert while burst-2, 3 and 4 still fire (burst.ts)');
  await postAlerts(s.app, webhook([2, 3, 4].map((i) => ({ alertname: 'HighErrorRate', deployment: 'checkout', fp: `burst-${i}`, status: 'resolved' as const }))));
  await drain();
  t.ok(await resolvedAt(), 'resolved once the last alert of the burst resolved');
});

// Found by review (2026-12-06): alerts in hand for one rule and target are one evaluation, the
// first one's. When that first one was a redelivery of an alert whose record was closed long ago
// (a still-firing alert resent past DEDUPE_TTL, or a stopped replica's event taken over in the
// same read as a new one), its handling evaluated nothing, and the new alert was linked to that
// old closed record and acked: never evaluated. It is now evaluated on its own, and the alerts
// after it are coalesced into its evaluation.
t.test('a new alert coalesced into a redelivery of an alert whose record is closed is evaluated on its own', async (t) => {
  const s = setup();
  s.prometheus!.value = 0; // the old alert's first look: not confirmed
  await postAlerts(s.app, webhook([{ alertname: 'HighErrorRate', deployment: 'checkout', fp: 'old' }]));
  const drain = async () => {
    s.worker.start();
    while ((await s.store.queueDepth()) > 0) await new Promise((r) => setTimeout(r, 10));
    await s.worker.stop();
    await s.engine.idle();
  };
  await drain();
  const [old] = await s.engine.records.list({ limit: 10 });
  t.equal(old?.state, 'not_confirmed');
  // later: the old alert resent (its dedupe key expired), then two new alerts of the same rule and target, in one read
  s.prometheus!.value = 0.2;
  const [resent] = s.order;
  await s.store.intake([{ key: 'old-resent', alert: { ...resent!.alert, receivedAt: Date.now() }, lane: 0 }], 60_000);
  await postAlerts(s.app, webhook([1, 2].map((i) => ({ alertname: 'HighErrorRate', deployment: 'checkout', fp: `new-${i}` }))));
  s.order.length = 0;
  await drain();
  t.same(s.order.map((e) => e.alert.fingerprint), ['old', 'new-1'], 'the redelivery, then the first new alert as its own evaluation');
  const recs = await s.engine.records.list({ limit: 10 });
  const fresh = recs.find((r) => r.alert?.fingerprint === 'new-1');
  t.ok(fresh?.times.executedAt, `the new alert was evaluated and rolled back (${fresh?.state})`);
  t.equal(s.action.executed.length, 1, 'once');
  t.equal((await s.engine.records.get(old!.id))?.state, 'not_confirmed', 'the old record is left as it was');
  t.same(await s.engine.records.recordsOfAlert('new-2', Date.parse(startsAt)), [fresh!.id], 'the second new alert coalesced into the new evaluation');
  t.same(await s.engine.records.recordsOfAlert('new-1', Date.parse(startsAt)), [fresh!.id]);
  t.equal(await metricValue(s.metrics, 'rollguard_alerts_coalesced_total'), 1);
});
