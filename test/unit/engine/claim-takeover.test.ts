import t from 'tap';
import { MemoryStore } from '../../../src/store/memory.js';
import type { Store } from '../../../src/store/store.js';
import type { Alert } from '../../../src/alertmanager/alert.js';
import { alertRecordId, OPEN_STATES, targetKey } from '../../../src/engine/record.js';
import { firing, rules, testEngine } from '../../support/engine.js';
import { aroundStore } from '../../support/store-proxy.js';

/** The record id (and so the claim) of the test rules' rollback for `alert`. */
function alertId(alert: Alert): string {
  const rule = rules().match(alert)[0]!;
  const ref = { kind: 'Deployment' as const, namespace: alert.labels.namespace!, name: alert.labels.deployment! };
  return alertRecordId(rule.name, targetKey(ref), alert.fingerprint, alert.startsAt);
}

/**
 * A replica stopped right after its claim, before its write-ahead record: `putRecord` never
 * settles (the process died there, or is still at it), and nothing after it runs.
 */
function stoppedAfterClaim(shared: Store): Store {
  return withPutRecord(shared, () => new Promise<never>(() => undefined));
}

/** A replica whose write-ahead record fails (the store went away under it); it lives on. */
function failingWriteAhead(shared: Store, down: { value: boolean }, failPut = { value: true }): Store {
  return new Proxy(shared, {
    get(target, prop, receiver) {
      if (prop === 'putRecord' && failPut.value) return async () => Promise.reject(new Error('the store went away before the write-ahead record'));
      // while down, every other write fails too (the release is tried again once it is back)
      if (down.value && prop === 'compareAndSetValue') return async () => Promise.reject(new Error('store unavailable'));
      const v = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

function withPutRecord(shared: Store, putRecord: () => Promise<never>): Store {
  return new Proxy(shared, {
    get(target, prop, receiver) {
      if (prop === 'putRecord') return putRecord;
      const v = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

async function claimedByA(aliveA: boolean) {
  const shared = new MemoryStore();
  const a = testEngine({ store: stoppedAfterClaim(shared), owner: 'replica-a' });
  const b = testEngine({ store: shared, owner: 'replica-b' });
  if (aliveA) await a.engine.heartbeat();
  await b.engine.heartbeat();
  a.prometheus!.value = 0.2;
  b.prometheus!.value = 0.2;
  const alert = firing('HighErrorRate', 'checkout');
  // A never gets past its claim: its delivery is left hanging
  void a.deliver(alert).catch(() => undefined);
  await new Promise((r) => setImmediate(r));
  return { shared, a, b, alert };
}

t.test("a claim whose owner's heartbeat is gone is taken over by another replica", async (t) => {
  const { shared, b, alert } = await claimedByA(false);
  t.equal(await shared.getValue(`claim:${alertId(alert)}`), 'replica-a', 'replica-a holds the claim');
  t.same(await shared.listRecords({}), [], 'and wrote no record');
  await b.deliver(alert);
  const recs = await b.engine.records.list({});
  t.equal(recs.length, 1, 'replica-b evaluated the alert');
  t.equal(recs[0]!.owner, 'replica-b');
  t.ok(recs[0]!.times.executedAt, `rolled back (${recs[0]!.state}: ${recs[0]!.outcome?.message ?? ''})`);
  t.equal(b.action.executed.length, 1, 'once');
  t.equal(await shared.getValue(`claim:${recs[0]!.id}`), 'released:replica-b', "the claim was replica-b's, given up once its record was written");
});

t.test('a claim whose owner is alive and still evaluating is left to it: the event stays queued', async (t) => {
  const { shared, b, alert } = await claimedByA(true);
  await t.rejects(b.deliver(alert), /being evaluated by another replica/);
  t.same(await shared.listRecords({}), [], 'nothing evaluated by replica-b');
  t.equal(b.action.executed.length, 0);
  t.equal(await shared.getValue(`claim:${alertId(alert)}`), 'replica-a', 'the claim is still replica-a\'s');
});

// The redis-storm failure: replica A claimed, the store went down, A's write-ahead failed and A
// lived on. Every redelivery went to B, which refused it until the event was dead-lettered. A
// replica whose evaluation failed before its record is not evaluating any more: it gives the claim up.
t.test('an alive replica whose write-ahead failed gives its claim up: another replica evaluates the alert once', async (t) => {
  const { shared, a, b, alert } = await writeAheadFailsOnA({ value: false });
  await t.rejects(a.deliver(alert), /went away before the write-ahead record/, 'replica-a failed before its record');
  t.equal(await shared.getValue(`claim:${alertId(alert)}`), 'released:replica-a', 'and gave its claim up');
  await b.deliver(alert);
  const recs = await b.engine.records.list({});
  t.equal(recs.length, 1, 'replica-b evaluated the alert');
  t.equal(recs[0]!.owner, 'replica-b');
  t.equal(b.action.executed.length, 1, 'rolled back once');
  t.equal(await shared.getValue(`claim:${recs[0]!.id}`), 'released:replica-b', "the claim was replica-b's, given up once its record was written");
  // replica-a's own redelivery finds the record: nothing more
  await a.deliver(alert).catch(() => undefined);
  t.equal(a.action.executed.length, 0, 'replica-a never acted');
  t.equal((await shared.listRecords({})).length, 1);
});

t.test('the store down when the write-ahead failed: the claim is given up once it is back', async (t) => {
  const down = { value: true };
  const { shared, a, b, alert } = await writeAheadFailsOnA(down);
  await t.rejects(a.deliver(alert));
  const id = alertId(alert);
  t.equal(await shared.getValue(`claim:${id}`), 'replica-a', 'the release failed while the store was down');
  await t.rejects(b.deliver(alert), /being evaluated by another replica/, 'so replica-b waits');
  down.value = false;
  await waitUntil(async () => (await shared.getValue(`claim:${id}`)) === 'released:replica-a');
  await b.deliver(alert);
  t.equal(b.action.executed.length, 1, 'replica-b evaluated it once the claim was given up');
});

// A release still being retried from a failed attempt must not free the claim of the same
// replica's next attempt: another replica would then take it while this one evaluates. (The next
// attempt gives the claim up itself, but only once its write-ahead landed.)
t.test("a release retried in the background does not free the same replica's later claim", async (t) => {
  const shared = new MemoryStore();
  const mode = { failPut: true, down: true, holdPut: false };
  let land: (() => void) | undefined;
  const landed = new Promise<void>((r) => (land = r));
  const store = aroundStore(shared, async (op, _args, call) => {
    if (op === 'putRecord' && mode.failPut) throw new Error('the store went away before the write-ahead record');
    if (op === 'compareAndSetValue' && mode.down) throw new Error('store unavailable');
    if (op === 'putRecord' && mode.holdPut) {
      mode.holdPut = false;
      await landed; // a slow write-ahead
    }
    return call();
  });
  const a = testEngine({ store, owner: 'replica-a' });
  const b = testEngine({ store: shared, owner: 'replica-b' });
  for (const r of [a, b]) {
    await r.engine.heartbeat();
    r.prometheus!.value = 0.2;
  }
  const alert = firing('HighErrorRate', 'checkout');
  await t.rejects(a.deliver(alert), /went away before the write-ahead record/);
  const id = alertId(alert);
  t.equal(await shared.getValue(`claim:${id}`), 'replica-a', 'the release failed while the store was down: retried in the background');
  Object.assign(mode, { failPut: false, down: false, holdPut: true });
  const redelivery = a.deliver(alert); // before the retry's timer fires; its write-ahead held
  await new Promise((r) => setTimeout(r, 1_200)); // past the retry's first two delays
  t.equal(await shared.getValue(`claim:${id}`), 'replica-a', "still replica-a's: the retried release was cancelled by the new claim");
  await t.rejects(b.deliver(alert), /being evaluated by another replica/, 'so replica-b leaves the alert to replica-a');
  land!();
  await redelivery;
  t.equal(await shared.getValue(`claim:${id}`), 'released:replica-a', 'given up once its write-ahead landed');
  await b.deliver(alert);
  t.equal(a.action.executed.length + b.action.executed.length, 1, 'rolled back once in all');
  t.equal((await shared.getRecord(id))?.owner, 'replica-a');
});

// The replica that gave the claim up may have written its record after the taker's first read
// (a write the store took though its answer was lost): the taker reads it again once the claim is its.
t.test('a replica taking over a released claim reads the record again and leaves one it finds alone', async (t) => {
  const { shared, alert, id, a } = await rolledBackByA();
  const written = await shared.getRecord(id);
  t.equal(written?.owner, 'replica-a', "replica-a's record is in the store");
  await shared.setValue(`claim:${id}`, 'released:replica-a', { ttlMs: 60_000 });
  // replica-b's first read of the record came before replica-a's write landed
  let reads = 0;
  const stale = new Proxy(shared, {
    get(target, prop, receiver) {
      if (prop === 'getRecord') return async (rid: string) => (reads++ === 0 ? null : target.getRecord(rid));
      const v = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  const b = testEngine({ store: stale, owner: 'replica-b' });
  await b.engine.heartbeat();
  b.prometheus!.value = 0.2;
  await b.deliver(alert);
  t.equal(b.action.executed.length, 0, 'replica-b did not roll back');
  t.same(await shared.getRecord(id), written, "replica-a's record is untouched");
  t.equal(await shared.getValue(`claim:${id}`), 'released:replica-b', 'the claim replica-b took is given up again: the record stands for the alert');
});

// The record's read and the claim go to the store together: a read that fails while the claim
// went through must not leave the claim held by a replica that is no longer evaluating.
t.test('a record read that fails while the claim went through gives the claim up', async (t) => {
  const shared = new MemoryStore();
  let failRead = true;
  const flaky = new Proxy(shared, {
    get(target, prop, receiver) {
      if (prop === 'getRecord' && failRead) return async () => Promise.reject(new Error('the record read failed'));
      const v = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  const a = testEngine({ store: flaky, owner: 'replica-a' });
  const b = testEngine({ store: shared, owner: 'replica-b' });
  for (const r of [a, b]) {
    await r.engine.heartbeat();
    r.prometheus!.value = 0.2;
  }
  const alert = firing('HighErrorRate', 'checkout');
  await t.rejects(a.deliver(alert), /the record read failed/);
  const id = alertId(alert);
  t.equal(await shared.getValue(`claim:${id}`), 'released:replica-a', 'the claim taken with the read was given up');
  t.same(await shared.listRecords({}), [], 'and nothing was written');
  await b.deliver(alert);
  t.equal(b.action.executed.length, 1, 'replica-b evaluated the alert at once');
  failRead = false;
  await a.deliver(alert);
  t.equal(a.action.executed.length, 0, "replica-a's redelivery found replica-b's record");
});

/** A store whose named calls fail while their flag is set (the store flapping). */
function flaky(shared: Store, failing: Record<string, boolean>): Store {
  return new Proxy(shared, {
    get(target, prop, receiver) {
      if (typeof prop === 'string' && failing[prop]) return async () => Promise.reject(new Error(`store unavailable (${prop})`));
      const v = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

// The claim's first call cancels the background release of an earlier failed attempt: a later
// attempt that fails too must give the claim up again, or it is held by a replica doing nothing.
for (const mode of ['its record read fails', 'its record read and its claim fail']) {
  t.test(`a release cancelled by a later attempt is started again when that attempt fails (${mode})`, async (t) => {
    const shared = new MemoryStore();
    const failing: Record<string, boolean> = { putRecord: true, compareAndSetValue: true };
    const a = testEngine({ store: flaky(shared, failing), owner: 'replica-a' });
    const b = testEngine({ store: shared, owner: 'replica-b' });
    for (const r of [a, b]) {
      await r.engine.heartbeat();
      r.prometheus!.value = 0.2;
    }
    const alert = firing('HighErrorRate', 'checkout');
    const id = alertId(alert);
    await t.rejects(a.deliver(alert), /putRecord/, 'the write-ahead failed, and so did the release: it is retried in the background');
    t.equal(await shared.getValue(`claim:${id}`), 'replica-a');
    failing.getRecord = true;
    if (mode.includes('claim')) failing.setValue = true;
    await t.rejects(a.deliver(alert), /getRecord|setValue/, "the redelivery's attempt failed too");
    for (const k of Object.keys(failing)) failing[k] = false;
    await waitUntil(async () => (await shared.getValue(`claim:${id}`)) === 'released:replica-a');
    await b.deliver(alert);
    t.equal(b.action.executed.length, 1, 'replica-b evaluated it once the store was back');
    t.equal(a.action.executed.length, 0);
  });
}

// A record whose claim is gone (given up once the record was written): the claim made with the
// read is given up, so that once the record is pruned a resend is not held back by it.
t.test('a claim made with the read of an existing record is given up', async (t) => {
  const { shared, alert, id, a } = await rolledBackByA();
  await shared.deleteValue(`claim:${id}`);
  await a.deliver(alert);
  t.equal(await shared.getValue(`claim:${id}`), 'released:replica-a', 'released at once');
  t.equal(a.action.executed.length, 1, 'and nothing more was done');
});

// The write-ahead landed, the alert's link did not: the redelivery finds the record and writes
// the link, so the alert's resolution still reaches the record.
t.test('a link lost with a landed write-ahead is written by the redelivery', async (t) => {
  const shared = new MemoryStore();
  let failLink = true;
  const store = new Proxy(shared, {
    get(target, prop, receiver) {
      if (prop === 'setValue') {
        return async (k: string, ...rest: [string, { ttlMs?: number; onlyIfAbsent?: boolean }?]) => {
          if (failLink && k.startsWith('alert-records:')) {
            failLink = false;
            throw new Error('store unavailable (link)');
          }
          return target.setValue(k, ...rest);
        };
      }
      const v = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  const a = testEngine({ store, owner: 'replica-a' });
  await a.engine.heartbeat();
  a.prometheus!.value = 0.2;
  const alert = firing('HighErrorRate', 'checkout');
  await t.rejects(a.deliver(alert), /link/);
  t.equal((await shared.listRecords({})).length, 1, 'the write-ahead record is there');
  await a.deliver(alert);
  await a.deliver({ ...alert, status: 'resolved', endsAt: Date.now() });
  const [rec] = await a.engine.records.list({});
  t.type(rec!.times.resolvedAt, 'number', 'the resolution reached the record');
});

/** One replica on a store, its alert rolled back and recorded. */
async function rolledBackByA() {
  const shared = new MemoryStore();
  const a = testEngine({ store: shared, owner: 'replica-a' });
  await a.engine.heartbeat();
  a.prometheus!.value = 0.2;
  const alert = firing('HighErrorRate', 'checkout');
  await a.deliver(alert);
  return { shared, a, alert, id: alertId(alert) };
}

/** Two live replicas on one store; replica-a's write-ahead fails while `failPut` (and its store's other writes while `down`). */
async function writeAheadFailsOnA(down: { value: boolean }, failPut = { value: true }) {
  const shared = new MemoryStore();
  const a = testEngine({ store: failingWriteAhead(shared, down, failPut), owner: 'replica-a' });
  const b = testEngine({ store: shared, owner: 'replica-b' });
  for (const r of [a, b]) {
    await r.engine.heartbeat();
    r.prometheus!.value = 0.2;
  }
  return { shared, a, b, alert: firing('HighErrorRate', 'checkout') };
}

async function waitUntil(cond: () => Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

t.test('compare-and-set: only the first of two replicas taking over the same dead claim wins', async (t) => {
  const s = new MemoryStore();
  await s.setValue('claim:x', 'dead', { ttlMs: 60_000 });
  const [one, two] = await Promise.all([s.compareAndSetValue('claim:x', 'dead', 'b'), s.compareAndSetValue('claim:x', 'dead', 'c')]);
  t.same([one, two], [true, false]);
  t.equal(await s.getValue('claim:x'), 'b');
});

// The worker gives up waiting for an event at EVENT_DEADLINE and hands it out again while the first
// delivery still runs in this process. The redelivery finds this replica's claim: it must not take
// it as "ours, left by a failure" while that first delivery, not yet at its write-ahead, goes on.
t.test('a redelivery while an earlier delivery of the alert is still in hand here leaves it to that one', async (t) => {
  const shared = new MemoryStore();
  let hold: (() => void) | undefined;
  const held = new Promise<void>((r) => (hold = r));
  let firstRead = true;
  // the first delivery's record read is answered (nothing written yet) but reaches it only later: a slow store
  const store = aroundStore(shared, async (op, _args, call) => {
    if (op === 'getRecord' && firstRead) {
      firstRead = false;
      const answer = await call();
      await held;
      return answer;
    }
    return call();
  });
  const a = testEngine({ store, owner: 'replica-a' });
  await a.engine.heartbeat();
  a.prometheus!.value = 0.2;
  const alert = firing('HighErrorRate', 'checkout');
  const id = alertId(alert);
  const first = a.engine.handle({ id: 'ev-1', alert, deliveries: 1 });
  await waitUntil(async () => (await shared.getValue(`claim:${id}`)) === 'replica-a');
  await t.rejects(a.engine.handle({ id: 'ev-1', alert, deliveries: 2 }), /earlier delivery of this alert is still being handled here/, 'the redelivery stays queued');
  t.same(await shared.listRecords({}), [], 'and wrote nothing');
  t.equal(await shared.getValue(`claim:${id}`), 'replica-a', 'nor gave the claim up');
  hold!();
  await first;
  await a.engine.idle();
  t.equal(a.action.executed.length, 1, 'the first delivery rolled back, once');
  const rec = await a.engine.records.get(id);
  t.ok(rec?.times.executedAt, `its record is the rollback's (${rec?.state})`);
  await a.engine.handle({ id: 'ev-1', alert, deliveries: 3 });
  t.equal(a.action.executed.length, 1, 'a later redelivery finds the record: nothing more');
});

// Found by review (2026-12-06): the claim lasted 7 days and was never given up once the record
// was written, while a record that changed nothing is pruned after RECORD_RETENTION_NO_ACTION (3
// days), or sooner under REDIS_MAX_RECORDS. A resend of the still-firing alert past the dedupe TTL
// then found no record and the first replica's claim: every other replica refused it as "being
// evaluated by another replica" until it was dead-lettered, escalated naming that replica, and
// never evaluated. The claim is now given up once the write-ahead landed.
t.test('a resend of a still-firing alert whose record was pruned is evaluated afresh on another replica', async (t) => {
  const shared = new MemoryStore();
  const a = testEngine({ store: shared, owner: 'replica-a' });
  const b = testEngine({ store: shared, owner: 'replica-b' });
  for (const r of [a, b]) await r.engine.heartbeat(); // both alive
  a.prometheus!.value = 0; // not confirmed at the first look: a record that changed nothing
  const alert = firing('HighErrorRate', 'checkout');
  await a.deliver(alert);
  const id = alertId(alert);
  t.equal((await shared.getRecord(id))?.state, 'not_confirmed');
  t.equal(await shared.getValue(`claim:${id}`), 'released:replica-a', 'the claim was given up once the record was written');
  t.equal(await shared.pruneRecords(Date.now() + 1, OPEN_STATES), 1, 'the record pruned (RECORD_RETENTION_NO_ACTION)');
  b.prometheus!.value = 0.2; // the alert still fires, and now the trigger holds
  await b.deliver(alert); // the resend, handled by the other replica
  const rec = await b.engine.records.get(id);
  t.equal(rec?.owner, 'replica-b', 'evaluated afresh by replica-b');
  t.ok(rec?.times.executedAt, `and rolled back (${rec?.state})`);
  t.equal(b.action.executed.length + a.action.executed.length, 1, 'once');
  await b.engine.deadLettered({ id: 'ev-resend', alert, deliveries: 6 }, new Error('gave up'));
  await b.notifications.flush();
  const dead = b.notifier.sent.find((n) => n.kind === 'event_dead');
  t.notMatch(dead?.lines.join('\n') ?? '', /being evaluated by replica replica-a/, 'nothing says replica-a is evaluating it');
});

// Found by review (2026-12-06): the release after the write-ahead failed (a blip) and was retried
// in the background; a redelivery here before the retry cancelled it (tryClaim), found the record,
// and gave up nothing, since this read had not taken the claim: the claim stayed held for 7 days,
// and a resend after the record was pruned was refused on every other replica.
t.test('a redelivery that cancels a release retried in the background gives the claim up itself', async (t) => {
  const shared = new MemoryStore();
  const down = { value: false };
  // replica A's view: its release (compare-and-set) fails while `down`
  const viewA = aroundStore(shared, async (op, _args, call) => {
    if (down.value && op === 'compareAndSetValue') throw new Error('store unavailable (injected)');
    return call();
  });
  const a = testEngine({ store: viewA, owner: 'replica-a' });
  const b = testEngine({ store: shared, owner: 'replica-b' });
  for (const r of [a, b]) await r.engine.heartbeat();
  a.prometheus!.value = 0; // not confirmed: a record that changed nothing, pruned later
  const alert = firing('HighErrorRate', 'checkout');
  const id = alertId(alert);
  const save = a.engine.records.save.bind(a.engine.records);
  a.engine.records.save = async (rec, o) => {
    const r = await save(rec, o);
    if (o?.first) down.value = true; // the blip, right after the write-ahead landed
    return r;
  };
  await a.deliver(alert).catch(() => undefined);
  down.value = false;
  t.equal(await shared.getValue(`claim:${id}`), 'replica-a', 'the release failed: retried in the background');
  await a.deliver(alert); // the redelivery, before the retry
  t.equal(await shared.getValue(`claim:${id}`), 'released:replica-a', 'given up by the redelivery');
  t.equal(await shared.pruneRecords(Date.now() + 1, OPEN_STATES), 1);
  b.prometheus!.value = 0.2;
  await b.deliver(alert);
  t.equal((await b.engine.records.get(id))?.owner, 'replica-b', 'the resend after pruning is evaluated on another replica');
});
