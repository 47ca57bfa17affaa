import t from 'tap';
import { budgetKeys } from '../../../src/guards/budget.js';
import { CONCURRENCY_POOL } from '../../../src/guards/concurrency.js';
import { GIVE_BACK_WAIT_MS } from '../../../src/guards/give-back.js';
import { PerTargetDeploymentAction, firing, recoversOnWrite, testEngine } from '../../support/engine.js';

// A budget unit or a concurrency slot held by a rollback that has not executed (still deciding:
// it may yet ask for approval or be blocked, and give it back) does not close another rollback
// `blocked` for good: the guard tries again for a short while (src/guards/give-back.ts). A holder
// that executed, or one that keeps it past GIVE_BACK_WAIT_MS, still blocks, and the reason says which.
// LOCK_TTL is 30 s here (the default) unless a case says otherwise; the wait renews the rollback's locks.

const HOUR = 3_600_000;
const CLUSTER = budgetKeys('x').cluster;
const TTL = { LOCK_TTL: '30s' };

/** A rollback of another target in `state`, holding a unit of the cluster budget (reserved under `limit`). */
async function budgetHeldBy(e: ReturnType<typeof testEngine>, state: string, limit = 1) {
  await e.store.putRecord({ id: 'rb-holder', target: 'Deployment/prod/other', state, createdAt: Date.now(), times: {} });
  if (!(await e.store.reserveEvents([{ key: CLUSTER, limit }], 'rb-holder', Date.now(), HOUR)).reserved) throw new Error('the unit could not be reserved');
}

/** A rollback of another target in `state`, holding the one concurrency slot. */
async function slotHeldBy(e: ReturnType<typeof testEngine>, state: string) {
  await e.store.putRecord({ id: 'rb-holder', target: 'Deployment/prod/other', state, createdAt: Date.now(), times: {} });
  if (!(await e.store.acquireSlot(CONCURRENCY_POOL, 'rb-holder', 1, 60_000)).acquired) throw new Error('the slot could not be leased');
}

/** The record of the alert delivered for Deployment/prod/checkout (the one each case decides). */
const checkoutRecord = async (e: ReturnType<typeof testEngine>) => (await e.engine.records.list({})).find((r) => r.target === 'Deployment/prod/checkout')!;
const after = (ms: number, fn: () => Promise<unknown>) => new Promise<void>((res, rej) => setTimeout(() => fn().then(() => res(), rej), ms));
const verdict = (rec: { guards: { guard: string; result: string; reason: string }[] }, guard: string) => rec.guards.find((g) => g.guard === guard);
const blockedBy = (rec: { guards: { guard: string; result: string; reason: string }[] }) => rec.guards.filter((g) => g.result !== 'allow').map((g) => `${g.guard}: ${g.reason}`).join('; ');

t.test('budget: a unit held by a rollback still deciding, given back moments later (it asked for approval): this rollback runs', async (t) => {
  const e = testEngine({ env: { ...TTL, BUDGET_CLUSTER_PER_HOUR: '1' } });
  recoversOnWrite(e);
  await budgetHeldBy(e, 'deciding');
  await Promise.all([e.deliver(firing('HighErrorRate')), after(300, () => e.store.releaseEvents([CLUSTER], 'rb-holder'))]);
  const rec = await checkoutRecord(e);
  t.equal(rec.state, 'succeeded', blockedBy(rec));
  t.match(verdict(rec, 'budget')?.reason, /reserved one rollback of each budget this hour/);
  t.same(e.action.executed.map((x) => x.ref.name), ['checkout']);
});

t.test('budget: the holder executes meanwhile: blocked as soon as it does, the unit spent', async (t) => {
  const e = testEngine({ env: { ...TTL, BUDGET_CLUSTER_PER_HOUR: '1' } });
  await budgetHeldBy(e, 'deciding');
  await Promise.all([
    e.deliver(firing('HighErrorRate')),
    after(300, async () => e.store.putRecord({ ...(await e.store.getRecord('rb-holder'))!, state: 'in_progress' })),
  ]);
  const rec = await checkoutRecord(e);
  t.equal(rec.state, 'blocked');
  t.equal(verdict(rec, 'budget')?.reason, '1 rollback(s) across the cluster in the last hour; BUDGET_CLUSTER_PER_HOUR is 1', 'the refusal alone: no holder left that had not executed');
  t.equal(e.action.executed.length, 0);
});

t.test('budget: a holder that executed, or may have written, or whose give-back failed, blocks at once', async (t) => {
  const cases = [
    ['in_progress', { startedAt: Date.now() - 1000 }, Date.now()],
    ['succeeded', { startedAt: Date.now() - 2000, executedAt: Date.now() - 1000 }, Date.now()],
    ['failed', { startedAt: Date.now() - 1000 }, Date.now()], // an error once its write-ahead landed: the write may have landed
    ['blocked', {}, Date.now() - 60_000], // ended a minute ago and its unit is still there: its give-back failed
  ] as const;
  for (const [state, times, lastStep] of cases) {
    const e = testEngine({ env: { ...TTL, BUDGET_CLUSTER_PER_HOUR: '1' } });
    await e.store.putRecord({ id: 'rb-holder', target: 'Deployment/prod/other', state, createdAt: Date.now(), times, updatedAt: lastStep });
    await e.store.reserveEvents([{ key: CLUSTER, limit: 1 }], 'rb-holder', Date.now(), HOUR);
    const looks = countingReads(e, 'rb-holder');
    await e.deliver(firing('HighErrorRate'));
    const rec = await checkoutRecord(e);
    t.equal(rec.state, 'blocked', state);
    t.equal(verdict(rec, 'budget')?.reason, '1 rollback(s) across the cluster in the last hour; BUDGET_CLUSTER_PER_HOUR is 1', state);
    t.equal(looks(), 1, `${state}: its record read once, no second try`);
  }
});

t.test('budget: a holder still deciding past GIVE_BACK_WAIT_MS: blocked, naming it', async (t) => {
  const e = testEngine({ env: { ...TTL, BUDGET_CLUSTER_PER_HOUR: '1' } });
  await budgetHeldBy(e, 'deciding');
  const looks = countingReads(e, 'rb-holder');
  await e.deliver(firing('HighErrorRate'));
  const rec = await checkoutRecord(e);
  t.equal(rec.state, 'blocked');
  t.equal(verdict(rec, 'budget')?.reason, `1 rollback(s) across the cluster in the last hour; BUDGET_CLUSTER_PER_HOUR is 1; rb-holder had not executed and did not give theirs back within ${GIVE_BACK_WAIT_MS / 1000}s`);
  t.ok(looks() > 1, `tried again meanwhile (${looks()} looks)`);
});

t.test('concurrency: a slot held by a rollback still deciding, given back moments later: this rollback runs', async (t) => {
  const e = testEngine({ env: { ...TTL, MAX_CONCURRENT_ROLLBACKS: '1' } });
  recoversOnWrite(e);
  await slotHeldBy(e, 'deciding');
  await Promise.all([e.deliver(firing('HighErrorRate')), after(300, () => e.store.releaseSlot(CONCURRENCY_POOL, 'rb-holder'))]);
  const rec = await checkoutRecord(e);
  t.equal(rec.state, 'succeeded', blockedBy(rec));
  t.match(verdict(rec, 'concurrency')?.reason, /took one of 1 slot\(s\)/);
});

t.test('budget: a holder that has just ended without writing (its give-back beside its closing write): waited for', async (t) => {
  const e = testEngine({ env: { ...TTL, BUDGET_CLUSTER_PER_HOUR: '1' } });
  recoversOnWrite(e);
  await e.store.putRecord({ id: 'rb-holder', target: 'Deployment/prod/other', state: 'pending_approval', createdAt: Date.now(), times: {}, updatedAt: Date.now() });
  await e.store.reserveEvents([{ key: CLUSTER, limit: 1 }], 'rb-holder', Date.now(), HOUR);
  await Promise.all([e.deliver(firing('HighErrorRate')), after(300, () => e.store.releaseEvents([CLUSTER], 'rb-holder'))]);
  const rec = await checkoutRecord(e);
  t.equal(rec.state, 'succeeded', blockedBy(rec));
});

/**
 * The store's first answer showing the cluster budget's unit held (a refused reservation, a dry
 * run's check, or its count as the guard read it until 2026-12-07) is held back until `rb-holder`
 * has given its unit back: the give-back lands between the refusal and whatever the guard reads
 * next (under load, a moment apart).
 */
function givenBackRightAfterTheRefusal(e: ReturnType<typeof testEngine>) {
  const store = e.store as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
  let done = false;
  const held = (m: string, r: unknown) => (m === 'countEvents' ? (r as number) >= 1 : (r as { reserved?: boolean }).reserved === false);
  for (const m of ['reserveEvents', 'checkEvents', 'countEvents']) {
    const call = store[m]?.bind(e.store);
    if (!call) continue;
    store[m] = async (...a: unknown[]) => {
      const r = await call(...a);
      if (!done && (m !== 'countEvents' || a[0] === CLUSTER) && held(m, r)) {
        done = true;
        await e.store.releaseEvents([CLUSTER], 'rb-holder');
      }
      return r;
    };
  }
}

t.test('budget: a holder still deciding gives its unit back right after the refusal: this rollback runs', async (t) => {
  // until 2026-12-07 the holders were read in a second call after the refusal: the unit given back
  // in between, none was left, and the rollback was closed blocked for a unit that was free
  const e = testEngine({ env: { ...TTL, BUDGET_CLUSTER_PER_HOUR: '1' } });
  recoversOnWrite(e);
  await budgetHeldBy(e, 'deciding');
  givenBackRightAfterTheRefusal(e);
  await e.deliver(firing('HighErrorRate'));
  const rec = await checkoutRecord(e);
  t.equal(rec.state, 'succeeded', blockedBy(rec));
  t.match(verdict(rec, 'budget')?.reason, /reserved one rollback of each budget this hour/);
  t.same(e.action.executed.map((x) => x.ref.name), ['checkout']);
  t.equal(await e.store.countEvents(CLUSTER, 0), 1, 'the unit spent, by this rollback');
});

t.test('a dry run: a holder still deciding gives its unit back right after the check: a dry run, not blocked', async (t) => {
  const e = testEngine({ env: { ...TTL, BUDGET_CLUSTER_PER_HOUR: '1', DRY_RUN: 'true' } });
  await budgetHeldBy(e, 'deciding');
  givenBackRightAfterTheRefusal(e);
  await e.deliver(firing('HighErrorRate'));
  const rec = await checkoutRecord(e);
  t.equal(rec.state, 'dry_run', blockedBy(rec));
  t.equal(await e.store.countEvents(CLUSTER, 0), 0, 'nothing reserved');
});

t.test('budget: no wait when the holders that may give back could not bring it under the limit (a limit lowered by a reload)', async (t) => {
  const e = testEngine({ env: { ...TTL, BUDGET_CLUSTER_PER_HOUR: '1' } });
  await e.store.putRecord({ id: 'rb-done', target: 'Deployment/prod/done', state: 'in_progress', createdAt: Date.now(), times: { startedAt: Date.now() } });
  await e.store.reserveEvents([{ key: CLUSTER, limit: 5 }], 'rb-done', Date.now(), HOUR);
  await budgetHeldBy(e, 'deciding', 5);
  const looks = countingReads(e, 'rb-holder');
  await e.deliver(firing('HighErrorRate'));
  const rec = await checkoutRecord(e);
  t.equal(verdict(rec, 'budget')?.reason, '2 rollback(s) across the cluster in the last hour; BUDGET_CLUSTER_PER_HOUR is 1', 'refused at once: one given back leaves one, the limit');
  t.equal(looks(), 1);
});

t.test('a wait longer than LOCK_TTL renews the target\'s lock: the rollback runs when the unit comes back, not failed on a lapsed lock', async (t) => {
  // LOCK_TTL 1 s, the unit given back 1.5 s on: before the renewals, the lock had lapsed by then
  // and the rollback, its guards passed, ended failed at its fence check
  const e = testEngine({ env: { LOCK_TTL: '1s', BUDGET_CLUSTER_PER_HOUR: '1' } });
  recoversOnWrite(e);
  await budgetHeldBy(e, 'deciding');
  await Promise.all([e.deliver(firing('HighErrorRate')), after(1500, () => e.store.releaseEvents([CLUSTER], 'rb-holder'))]);
  const rec = await checkoutRecord(e);
  t.equal(rec.state, 'succeeded', `${blockedBy(rec)} ${rec.outcome?.message ?? ''}`);
  t.same(e.action.executed.map((x) => x.ref.name), ['checkout']);
});

t.test('its own lock found lost while it waits: blocked at once, saying so', async (t) => {
  const e = testEngine({ env: { ...TTL, BUDGET_CLUSTER_PER_HOUR: '1' } });
  await budgetHeldBy(e, 'deciding');
  let renewals = 0;
  e.store.renewLock = async () => (++renewals, false);
  await e.deliver(firing('HighErrorRate'));
  const rec = await checkoutRecord(e);
  t.equal(rec.state, 'blocked');
  t.equal(verdict(rec, 'budget')?.reason, '1 rollback(s) across the cluster in the last hour; BUDGET_CLUSTER_PER_HOUR is 1; waiting for rb-holder to give theirs back, this rollback lost its lock');
  t.equal(renewals, 1, 'one renewal, before the first pause');
  t.equal(e.action.executed.length, 0);
});

t.test('concurrency: a slot held by a rollback executing: blocked at once, naming its target, its record read once', async (t) => {
  const e = testEngine({ env: { ...TTL, MAX_CONCURRENT_ROLLBACKS: '1' } });
  await slotHeldBy(e, 'in_progress');
  const looks = countingReads(e, 'rb-holder');
  await e.deliver(firing('HighErrorRate'));
  const rec = await checkoutRecord(e);
  t.equal(rec.state, 'blocked');
  t.equal(verdict(rec, 'concurrency')?.reason, '1 rollback(s) already in flight (Deployment/prod/other); MAX_CONCURRENT_ROLLBACKS is 1');
  t.equal(looks(), 1, 'read to tell whether it may give back, and not again to name it');
});

t.test('concurrency: a slot held by a rollback still deciding past GIVE_BACK_WAIT_MS: blocked, naming its target and it', async (t) => {
  const e = testEngine({ env: { ...TTL, MAX_CONCURRENT_ROLLBACKS: '1' } });
  await slotHeldBy(e, 'deciding');
  await e.deliver(firing('HighErrorRate'));
  const rec = await checkoutRecord(e);
  t.equal(rec.state, 'blocked');
  t.equal(verdict(rec, 'concurrency')?.reason, `1 rollback(s) already in flight (Deployment/prod/other); MAX_CONCURRENT_ROLLBACKS is 1; rb-holder had not executed and did not give theirs back within ${GIVE_BACK_WAIT_MS / 1000}s`);
});

t.test('a dry run refused by a unit a live rollback still deciding holds: it waits for it too', async (t) => {
  const e = testEngine({ env: { ...TTL, BUDGET_CLUSTER_PER_HOUR: '1', DRY_RUN: 'true' } });
  await budgetHeldBy(e, 'deciding');
  await Promise.all([e.deliver(firing('HighErrorRate')), after(300, () => e.store.releaseEvents([CLUSTER], 'rb-holder'))]);
  const rec = await checkoutRecord(e);
  t.equal(rec.state, 'dry_run', blockedBy(rec));
});

t.test('unstaged: a P1 alert whose rule asks for approval and a P0 alert at once, the cluster budget at its last unit: the P0 one rolls back', async (t) => {
  // the P1 evaluation reserves the last unit, then asks for approval and gives it back; before,
  // the P0 rollback deciding meanwhile was closed blocked by that unit for good
  const e = testEngine({ env: { ...TTL, BUDGET_CLUSTER_PER_HOUR: '1' }, action: new PerTargetDeploymentAction() });
  recoversOnWrite(e);
  await Promise.all([firing('HighLatency', 'needs-approval'), firing('HighErrorRate', 'checkout')].map((alert, i) => e.engine.handle({ id: `ev-${i}`, alert, deliveries: 1 })));
  await e.engine.idle();
  const recs = await e.engine.records.list({});
  const p0 = recs.find((r) => r.target === 'Deployment/prod/checkout')!;
  const p1 = recs.find((r) => r.target === 'Deployment/prod/needs-approval')!;
  t.equal(p1.state, 'pending_approval');
  t.equal(p0.state, 'succeeded', blockedBy(p0));
  t.same(e.action.executed.map((x) => x.ref.name), ['checkout']);
  t.equal(await e.store.countEvents(CLUSTER, 0), 1, 'the one unit spent, by the P0 rollback');
});

/** How many times the record `id` is read from the store from now on. */
function countingReads(e: ReturnType<typeof testEngine>, id: string): () => number {
  let n = 0;
  const get = e.store.getRecord.bind(e.store);
  e.store.getRecord = async (rid: string) => {
    if (rid === id) n++;
    return get(rid);
  };
  return () => n;
}
