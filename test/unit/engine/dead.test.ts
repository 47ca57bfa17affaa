import t from 'tap';
import pino from 'pino';
import { CHAIN_RULES, firing, testEngine } from '../../support/engine.js';
import { DrillStore } from '../../../src/drills/store.js';
import { MemoryStore } from '../../../src/store/memory.js';
import { QueueWorker } from '../../../src/engine/worker.js';
import { StoreUnavailableError, type QueuedEvent } from '../../../src/store/store.js';
import { aroundStore } from '../../support/store-proxy.js';
import { alertRecordId } from '../../../src/engine/record.js';

const ev = (alert: ReturnType<typeof firing>, id = '1700000000000-0', deliveries = 6): QueuedEvent => ({ id, alert, deliveries });

async function escalations(e: ReturnType<typeof testEngine>): Promise<number> {
  const m = await e.metrics.escalations.get();
  return m.values.filter((v) => v.labels.reason === 'event_dead').reduce((a, v) => a + v.value, 0);
}

t.test('a dead-lettered firing alert is recorded (error, an id of its own, linked to its alert) and escalated once', async (t) => {
  const e = testEngine({ env: { QUEUE_MAX_DELIVERIES: '5' } });
  const alert = firing('HighErrorRate', 'checkout');
  const written = await e.engine.deadLettered(ev(alert), new Error('socket hang up'));
  t.equal(written.length, 1);
  const rec = (await e.engine.records.get(written[0]!.id))!;
  t.ok(rec, 'the record is in the store');
  t.match(rec.id, /^rb-d-[0-9a-f]{20}$/, 'an id of its own');
  t.not(rec.id, alertRecordId('error-rate', 'Deployment/prod/checkout', alert.fingerprint, alert.startsAt), "never the evaluation's id");
  t.equal(rec.state, 'error');
  t.equal(rec.target, 'Deployment/prod/checkout');
  t.equal(rec.rule, 'error-rate');
  t.equal(rec.priority, 'P0');
  t.equal(rec.alert?.fingerprint, alert.fingerprint, 'the alert it stands for');
  t.match(rec.outcome?.message, /delivered 6 times \(QUEUE_MAX_DELIVERIES=5\) and never handled: socket hang up/, 'the outcome names the setting and the error');
  t.match(rec.outcome?.message, /act by hand/);
  t.equal(e.action.executed.length, 0, 'nothing rolled back');
  t.equal(await escalations(e), 1, 'counted in rollguard_escalations_total{reason="event_dead"}');
  t.same((await e.metrics.rollbacks.get()).values.filter((v) => v.value > 0), [], 'not counted as a rollback decided (rollguard_rollbacks_total is left to evaluations)');
  t.ok(rec.timeline.some((s) => s.step === 'notified'), 'its escalation is in its timeline');
  t.same(await e.engine.records.recordsOfAlert(alert.fingerprint, alert.startsAt), [rec.id], 'linked to its alert');
  await e.notifications.flush();
  const sent = e.notifier.sent.filter((n) => n.kind === 'event_dead');
  t.equal(sent.length, 1);
  t.equal(sent[0]?.severity, 'critical');
  t.equal(sent[0]?.recordId, rec.id, "the escalation links the record");
  t.match(sent[0]?.title, /HighErrorRate for Deployment\/prod\/checkout/);
  t.match(sent[0]?.lines.join('\n'), /socket hang up/);
});

t.test('dead-lettered again (its ack was lost): no second record, no second escalation, on this replica or another', async (t) => {
  const store = new MemoryStore();
  const e = testEngine({ store });
  const alert = firing('HighErrorRate', 'checkout');
  const [first] = await e.engine.deadLettered(ev(alert), new Error('boom'));
  const [second] = await e.engine.deadLettered(ev(alert, '1700000000000-0', 7), new Error('boom'));
  const other = testEngine({ store, owner: 'replica-b' });
  const [third] = await other.engine.deadLettered(ev(alert, '1700000000000-0', 8), new Error('boom'));
  t.equal(second?.id, first?.id);
  t.equal(third?.id, first?.id);
  t.equal((await e.engine.records.list({})).length, 1, 'one record');
  t.equal((await e.engine.records.get(first!.id))?.timeline.filter((s) => s.step === 'ended').length, 1, 'closed once');
  await e.notifications.flush();
  await other.notifications.flush();
  t.equal(e.notifier.sent.filter((n) => n.kind === 'event_dead').length + other.notifier.sent.filter((n) => n.kind === 'event_dead').length, 1, 'one escalation');
  t.equal((await escalations(e)) + (await escalations(other)), 1, 'counted once');
});

t.test('a rule and target already recorded: that record stands, the escalation names it', async (t) => {
  const e = testEngine();
  const alert = firing('HighErrorRate', 'checkout');
  await e.deliver(alert); // rolled back
  const [rec] = await e.engine.records.list({});
  const written = await e.engine.deadLettered(ev(alert), new Error('the ack never landed'));
  t.same(written, [], 'no record written');
  t.equal((await e.engine.records.list({})).length, 1);
  t.equal((await e.engine.records.get(rec!.id))?.state, rec!.state, 'the standing record is unchanged');
  await e.notifications.flush();
  const sent = e.notifier.sent.filter((n) => n.kind === 'event_dead');
  t.equal(sent.length, 1);
  t.match(sent[0]?.lines.join('\n'), new RegExp(`its record ${rec!.id} on Deployment/prod/checkout stands`));
});

t.test('a resolved alert, or one no rule matches: escalated without a record', async (t) => {
  const e = testEngine();
  await e.engine.deadLettered(ev({ ...firing('HighErrorRate'), status: 'resolved', endsAt: Date.now() }), new Error('x'));
  await e.engine.deadLettered(ev(firing('NobodyCares'), '2-0'), new Error('y'));
  t.equal((await e.engine.records.list({})).length, 0);
  t.equal(await escalations(e), 2);
  await e.notifications.flush();
  const sent = e.notifier.sent.filter((n) => n.kind === 'event_dead');
  t.equal(sent.length, 2);
  t.ok(sent.every((n) => n.recordId === undefined && /no record/.test(n.lines.join('\n'))));
});

t.test('the store failing: escalated at once without its record, which the next try writes (the event stays queued meanwhile)', async (t) => {
  let failing = true;
  const store = aroundStore(new MemoryStore(), async (op, _args, call) => {
    if (failing && op === 'putRecord') throw new StoreUnavailableError('redis putRecord: connection lost');
    return call();
  });
  const e = testEngine({ store });
  const alert = firing('HighErrorRate', 'checkout');
  await t.rejects(e.engine.deadLettered(ev(alert), new Error('boom')), StoreUnavailableError, 'rejects: the worker leaves the event queued');
  await e.notifications.flush();
  const sent = e.notifier.sent.filter((n) => n.kind === 'event_dead');
  t.equal(sent.length, 1, 'the page does not wait for the store');
  t.match(sent[0]?.lines.join('\n'), /the store is failing: its record is written once it answers/);
  t.equal(await escalations(e), 1);
  await t.rejects(e.engine.deadLettered(ev(alert, '1700000000000-0', 7), new Error('boom')), StoreUnavailableError);
  failing = false;
  const [rec] = await e.engine.deadLettered(ev(alert, '1700000000000-0', 8), new Error('boom'));
  t.equal(rec?.state, 'error', 'recorded once the store answers');
  t.equal((await e.engine.records.list({})).length, 1);
  await e.notifications.flush();
  t.equal(e.notifier.sent.filter((n) => n.kind === 'event_dead').length, 1, 'still one escalation');
  t.equal(await escalations(e), 1);
});

t.test('an ordered list of targets is one unit: its first target stands for it', async (t) => {
  const e = testEngine({ ruleText: CHAIN_RULES });
  const alert = firing('ReleaseErrors', 'api');
  const written = await e.engine.deadLettered(ev(alert), new Error('boom'));
  t.equal(written.length, 1, 'one record, not one per target');
  t.equal(written[0]?.target, 'Deployment/prod/api');
  t.match(written[0]?.outcome?.message, /The first of 3 targets in order \(Deployment\/prod\/api, Deployment\/prod\/auth, Deployment\/prod\/web\); none was started/);

  const started = testEngine({ ruleText: CHAIN_RULES });
  const alert2 = firing('ReleaseErrors', 'api');
  await started.deliver(alert2); // the chain runs
  const before = (await started.engine.records.list({})).length;
  t.same(await started.engine.deadLettered(ev(alert2, '2-0'), new Error('the ack never landed')), [], 'a chain under way: nothing written');
  t.equal((await started.engine.records.list({})).length, before);
});

t.test('a live replica evaluating the alert (its claim): nothing written, the escalation names it', async (t) => {
  const store = new MemoryStore();
  const e = testEngine({ store });
  const b = testEngine({ store, owner: 'replica-b' });
  await b.engine.heartbeat();
  const alert = firing('HighErrorRate', 'checkout');
  const id = alertRecordId('error-rate', 'Deployment/prod/checkout', alert.fingerprint, alert.startsAt);
  await store.setValue(`claim:${id}`, 'replica-b', { onlyIfAbsent: true });
  t.same(await e.engine.deadLettered(ev(alert), new Error(`rollback ${id} is being evaluated by another replica; the event stays queued`)), []);
  t.equal((await e.engine.records.list({})).length, 0);
  await e.notifications.flush();
  t.match(e.notifier.sent.find((n) => n.kind === 'event_dead')?.lines.join('\n'), new RegExp(`being evaluated by replica replica-b \\(record ${id} on Deployment/prod/checkout\\)`));

  // a claim of a replica that is gone (no heartbeat) stands for nothing
  const gone = firing('HighErrorRate', 'cart');
  const goneId = alertRecordId('error-rate', 'Deployment/prod/cart', gone.fingerprint, gone.startsAt);
  await store.setValue(`claim:${goneId}`, 'replica-z', { onlyIfAbsent: true });
  t.equal((await e.engine.deadLettered(ev(gone, '3-0'), new Error('x'))).length, 1, "a gone replica's claim: recorded");
});

t.test("an alert coalesced into another's evaluation: that open record stands for it", async (t) => {
  const e = testEngine();
  e.prometheus!.down = true;
  const leader = firing('SlowBurn', 'checkout');
  await e.deliver(leader); // held: Prometheus down
  const [held] = await e.engine.records.list({});
  t.equal(held?.state, 'held');
  const follower = firing('SlowBurn', 'checkout');
  t.same(await e.engine.deadLettered(ev(follower, '4-0'), new Error('could not link a coalesced alert')), []);
  await e.notifications.flush();
  t.match(e.notifier.sent.find((n) => n.kind === 'event_dead')?.lines.join('\n'), new RegExp(`its record ${held!.id} on Deployment/prod/checkout stands \\(held\\)`));
});

// Found on 2026-12-08 (a review of the store's callers): the open record was looked for among the
// target's 50 newest records, whatever their state, so a flood of newer closed ones hid it.
t.test('an open record of the rule stands for a dead-lettered alert behind any number of newer closed records of its target', async (t) => {
  const e = testEngine();
  e.prometheus!.down = true;
  await e.deliver(firing('SlowBurn', 'checkout')); // held: Prometheus down
  const [held] = await e.engine.records.list({});
  t.equal(held?.state, 'held');
  for (let i = 0; i < 60; i++) await e.store.putRecord({ ...held!, id: `rb-flood${i}`, state: 'not_confirmed', createdAt: held!.createdAt + 1 + i });
  t.same(await e.engine.deadLettered(ev(firing('SlowBurn', 'checkout'), '5-0'), new Error('could not link a coalesced alert')), [], 'no record written');
  await e.notifications.flush();
  t.match(e.notifier.sent.find((n) => n.kind === 'event_dead')?.lines.join('\n'), new RegExp(`its record ${held!.id} on Deployment/prod/checkout stands \\(held\\)`));
});

t.test('the record of a dead-lettered alert takes its resolution, and says source: drill during a drill', async (t) => {
  const e = testEngine();
  await new DrillStore(e.store, 60_000).setActive('Deployment/prod/checkout', 'dr-abc', 60_000);
  const alert = firing('HighErrorRate', 'checkout');
  const [rec] = await e.engine.deadLettered(ev(alert), new Error('boom'));
  t.equal(rec?.source, 'drill');
  t.equal(rec?.drill, 'dr-abc');
  const endsAt = Date.now();
  await e.deliver({ ...alert, status: 'resolved', endsAt, receivedAt: endsAt });
  t.equal((await e.engine.records.get(rec!.id))?.times.resolvedAt, endsAt, 'resolved');
});

t.test("a resend of the alert after it was dead-lettered is evaluated afresh, not taken for handled", async (t) => {
  const e = testEngine();
  const alert = firing('HighErrorRate', 'checkout');
  await e.engine.deadLettered(ev(alert), new Error('the API server timed out'));
  await e.deliver(alert);
  t.equal(e.action.executed.length, 1, 'rolled back');
  const evaluation = await e.engine.records.get(alertRecordId('error-rate', 'Deployment/prod/checkout', alert.fingerprint, alert.startsAt));
  t.ok(evaluation?.times.executedAt, "the evaluation's own record, executed");
  t.equal((await e.engine.records.list({})).length, 2, 'beside the record of the dead event');
});

t.test('what the record and escalation say of the error: one line, URLs without credentials, cut at 300 characters', async (t) => {
  const e = testEngine();
  const err = new Error(`fetch failed:\n  https://admin:hunter2@prom.example:9090/api/v1/query?query=up&token=abc123 ${'x'.repeat(400)}`);
  const [rec] = await e.engine.deadLettered(ev(firing('HighErrorRate')), err);
  const msg = rec!.outcome!.message;
  t.notMatch(msg, /hunter2|abc123/, 'no credential');
  t.match(msg, /https:\/\/\*\*\*@prom\.example:9090\/api\/v1\/query\?query=up&token=\*\*\*/);
  t.notMatch(msg, /\n/);
  t.ok(msg.includes(`${'x'.repeat(10)}…`), 'cut');
  t.ok(msg.length < 500);
});

t.test('through the queue worker: an alert whose handling always fails is recorded after QUEUE_MAX_DELIVERIES and leaves the queue', async (t) => {
  const e = testEngine({ env: { QUEUE_MAX_DELIVERIES: '2' } });
  const alert = firing('HighErrorRate', 'checkout');
  await e.store.intake([{ key: alert.fingerprint, alert, lane: 0 }], 60_000);
  let calls = 0;
  const worker = new QueueWorker({
    store: e.store,
    metrics: e.metrics,
    logger: pino({ level: 'silent' }),
    consumer: 'replica-a',
    claimIdleMs: 30,
    maxDeliveries: 2,
    blockMs: 10,
    handler: async () => {
      calls++;
      throw new Error('a bug in the handler');
    },
    onDead: (ev, err) => e.engine.deadLettered(ev, err).then(() => undefined),
  });
  worker.start();
  const deadline = Date.now() + 10_000;
  while ((await e.engine.records.list({})).length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  await worker.stop();
  const recs = await e.engine.records.list({});
  t.equal(recs.length, 1, 'recorded');
  t.equal(recs[0]?.state, 'error');
  t.match(recs[0]?.outcome?.message, /QUEUE_MAX_DELIVERIES=2\) and never handled: a bug in the handler/);
  t.equal(calls, 2, 'handled at most QUEUE_MAX_DELIVERIES times');
  t.equal(await e.store.queueDepth(), 0, 'acked');
});
