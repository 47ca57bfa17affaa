import t from 'tap';
import { budgetKeys } from '../../../src/guards/budget.js';
import { CONCURRENCY_POOL } from '../../../src/guards/concurrency.js';
import { createActions } from '../../../src/actions/index.js';
import { lockName, rollbackHolder } from '../../../src/guards/lock.js';
import { MemoryStore } from '../../../src/store/memory.js';
import type { Store } from '../../../src/store/store.js';
import { CANARY_RULE, cluster, NS } from '../../support/canary.js';
import { PerTargetDeploymentAction, firing, recoversOnWrite, testEngine } from '../../support/engine.js';

// A dry run holds no unit of a budget and no concurrency slot: it is checked against what
// rollbacks that execute spent and hold. Before, it reserved both while it decided, so dry runs
// deciding together refused each other ("5 rollback(s) across the cluster in the last hour" when
// none had run), and a rule in dry-run refused a live rule's rollback for the moment it decided.

const TWO_RULES = `
rules:
  - name: live
    match: ['alertname="HighErrorRate"']
    target: { kind: Deployment, namespace: prod, name: "{{ $labels.deployment }}" }
    trigger: { kind: error_rate, selector: { namespace: prod }, threshold: 0.05, for: 2m, step: 15s }
    priority: P0
  - name: trial
    match: ['alertname="TrialAlert"']
    target: { kind: Deployment, namespace: prod, name: "{{ $labels.deployment }}" }
    trigger: { kind: error_rate, selector: { namespace: prod }, threshold: 0.05, for: 2m, step: 15s }
    priority: P0
    guards: { dryRun: true }
`;

const verdict = (rec: { guards: { guard: string; result: string; reason: string }[] }, guard: string) => rec.guards.find((g) => g.guard === guard);

t.test('dry runs deciding together (DRY_RUN) do not refuse each other: every one shows what it would do', async (t) => {
  const e = testEngine({ env: { DRY_RUN: 'true' }, action: new PerTargetDeploymentAction() });
  const alerts = Array.from({ length: 10 }, (_, i) => firing('HighErrorRate', `svc-${i}`));
  await Promise.all(alerts.map((alert, i) => e.engine.handle({ id: `ev-${i}`, alert, deliveries: 1 })));
  await e.engine.idle();
  const recs = await e.engine.records.list({});
  t.equal(recs.length, 10);
  for (const rec of recs) {
    t.equal(rec.state, 'dry_run', `${rec.target}: ${rec.guards.filter((g) => g.result !== 'allow').map((g) => `${g.guard}: ${g.reason}`).join('; ')}`);
    t.match(verdict(rec, 'budget')?.reason, /within every budget this hour; a dry run spends none of it/);
    t.match(verdict(rec, 'concurrency')?.reason, /0 of 2 slot\(s\) for rollbacks in flight taken \(MAX_CONCURRENT_ROLLBACKS\); a dry run takes none/);
  }
  t.equal(await e.store.countEvents(budgetKeys('x').cluster, 0), 0, 'the cluster budget is untouched');
  t.same(await e.store.slotHolders(CONCURRENCY_POOL), [], 'no slot held');
  t.equal(e.action.executed.length, 0, 'nothing executed');
});

t.test("a rule in dry-run does not refuse a live rule's rollback deciding at the same time", async (t) => {
  const e = testEngine({ ruleText: TWO_RULES, env: { MAX_CONCURRENT_ROLLBACKS: '1', BUDGET_CLUSTER_PER_HOUR: '2' }, action: new PerTargetDeploymentAction() });
  // four dry runs ahead of the live alert in the same turn: before, they held the one slot and
  // the cluster budget while they decided, and the live rollback was closed blocked for good
  const trial = Array.from({ length: 4 }, (_, i) => firing('TrialAlert', `trial-${i}`));
  const live = firing('HighErrorRate', 'checkout');
  recoversOnWrite(e);
  await Promise.all([...trial, live].map((alert, i) => e.engine.handle({ id: `ev-${i}`, alert, deliveries: 1 })));
  await e.engine.idle();
  const recs = await e.engine.records.list({});
  const liveRec = recs.find((r) => r.target === 'Deployment/prod/checkout')!;
  t.equal(liveRec.state, 'succeeded', `the live rollback ran: ${liveRec.guards.filter((g) => g.result !== 'allow').map((g) => `${g.guard}: ${g.reason}`).join('; ')}`);
  t.same(e.action.executed.map((x) => x.ref.name), ['checkout'], 'only the live rule wrote');
  const trials = recs.filter((r) => r.rule === 'trial');
  t.equal(trials.length, 4, 'the four dry runs recorded');
  for (const rec of trials) {
    // a dry run deciding while the live rollback held the one slot shows it would have been refused for it
    if (rec.state === 'blocked') t.match(verdict(rec, 'concurrency')?.reason, /1 rollback\(s\) already in flight \(Deployment\/prod\/checkout\)/, `${rec.target}: refused by the live rollback's slot`);
    else t.equal(rec.state, 'dry_run', `${rec.target} is a dry run`);
  }
  t.equal(await e.store.countEvents(budgetKeys('x').cluster, 0), 1, 'the cluster budget spent once, by the live rollback');
});

t.test('a dry run is still refused by what real rollbacks spent (counted) and hold (their targets named)', async (t) => {
  await t.test('the cluster budget spent by rollbacks that executed', async (t) => {
    const e = testEngine({ env: { DRY_RUN: 'true', BUDGET_CLUSTER_PER_HOUR: '2' } });
    const now = Date.now();
    await e.store.reserveEvents([{ key: budgetKeys('x').cluster, limit: 2 }], 'rb-a', now - 60_000, 3_600_000);
    await e.store.reserveEvents([{ key: budgetKeys('x').cluster, limit: 2 }], 'rb-b', now - 30_000, 3_600_000);
    await e.deliver(firing('HighErrorRate'));
    const [rec] = await e.engine.records.list({});
    t.equal(rec!.state, 'blocked');
    t.equal(verdict(rec!, 'budget')?.result, 'block');
    t.match(verdict(rec!, 'budget')?.reason, /2 rollback\(s\) across the cluster in the last hour; BUDGET_CLUSTER_PER_HOUR is 2/);
    t.equal(await e.store.countEvents(budgetKeys('x').cluster, 0), 2, 'nothing added');
  });
  await t.test('every slot held by rollbacks in flight', async (t) => {
    const e = testEngine({ env: { DRY_RUN: 'true', MAX_CONCURRENT_ROLLBACKS: '1' } });
    await e.store.putRecord({ id: 'rb-other', target: 'Deployment/prod/other', state: 'in_progress', createdAt: 1 });
    await e.store.acquireSlot(CONCURRENCY_POOL, 'rb-other', 1, 60_000);
    await e.deliver(firing('HighErrorRate'));
    const [rec] = (await e.engine.records.list({})).filter((r) => r.id !== 'rb-other');
    t.equal(rec!.state, 'blocked');
    t.equal(verdict(rec!, 'concurrency')?.result, 'block');
    t.match(verdict(rec!, 'concurrency')?.reason, /1 rollback\(s\) already in flight \(Deployment\/prod\/other\); MAX_CONCURRENT_ROLLBACKS is 1/);
    t.same(await e.store.slotHolders(CONCURRENCY_POOL), ['rb-other'], 'no slot taken');
  });
  await t.test('a slot held, one free: allowed, taking none', async (t) => {
    const e = testEngine({ env: { DRY_RUN: 'true', MAX_CONCURRENT_ROLLBACKS: '2' } });
    await e.store.acquireSlot(CONCURRENCY_POOL, 'rb-other', 2, 60_000);
    await e.deliver(firing('HighErrorRate'));
    const [rec] = await e.engine.records.list({});
    t.equal(rec!.state, 'dry_run');
    t.match(verdict(rec!, 'concurrency')?.reason, /1 of 2 slot\(s\) for rollbacks in flight taken/);
    t.same(await e.store.slotHolders(CONCURRENCY_POOL), ['rb-other']);
  });
});

t.test('a live rollback still reserves its budget and leases its slot (a dry run is what spends nothing)', async (t) => {
  const e = testEngine({ env: { MAX_CONCURRENT_ROLLBACKS: '1' } });
  const slotsDuring: string[][] = [];
  recoversOnWrite(e);
  const execute = e.action.execute.bind(e.action);
  e.action.execute = async (p, c) => {
    slotsDuring.push(await e.store.slotHolders(CONCURRENCY_POOL));
    return execute(p, c);
  };
  await e.deliver(firing('HighErrorRate'));
  const [rec] = await e.engine.records.list({});
  t.equal(rec!.state, 'succeeded');
  t.same(slotsDuring, [[rec!.id]], 'its slot was held while it wrote');
  t.equal(await e.store.countEvents(budgetKeys('x').cluster, 0), 1, 'its budget spent');
});

// A dry run takes no lock either, the target's nor those of the objects its plan writes: it reads
// who holds them and is judged as a live rollback would be. Before, a rule tried out in dry-run
// held its target's lock while it planned: a manual rollback of that target was blocked at once,
// and a live alert's rollback on another replica was sent back for LOCK_TTL/6.

/** Holds the first plan of `e`'s action until the returned `open` is called; `planning` resolves once it is held. */
function holdFirstPlan(e: ReturnType<typeof testEngine>) {
  let open!: () => void;
  let held!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  const planning = new Promise<void>((r) => (held = r));
  const plan = e.action.plan.bind(e.action);
  let first = true;
  e.action.plan = async (ref) => {
    if (first) {
      first = false;
      held();
      await gate;
    }
    return plan(ref);
  };
  return { open, planning };
}

/** Every lock name `store` was asked to take, in order. */
function locksAsked(store: Store): string[] {
  const names: string[] = [];
  const acquire = store.acquireLock.bind(store);
  store.acquireLock = (name, owner, ttl) => (names.push(name), acquire(name, owner, ttl));
  return names;
}

t.test('a manual rollback of a target a dry run is deciding on goes on at once', async (t) => {
  const e = testEngine({ ruleText: TWO_RULES });
  const { open, planning } = holdFirstPlan(e);
  recoversOnWrite(e);
  const trial = e.engine.handle({ id: 'ev-trial', alert: firing('TrialAlert', 'checkout'), deliveries: 1 });
  await planning; // the dry run is past its lock guard, planning
  const manual = await e.engine.manual({ ref: { kind: 'Deployment', namespace: 'prod', name: 'checkout' }, reason: 'bad deploy', requestedBy: 'ops' });
  open();
  await trial;
  await e.engine.idle();
  const after = (await e.engine.records.get(manual.id))!;
  t.equal(after.state, 'succeeded', `the manual rollback ran: ${after.outcome?.message ?? ''}`);
  t.match(after.guards.find((g) => g.guard === 'lock')?.reason, /^lock taken \(fencing token \d+\)/);
  t.same(e.action.executed.map((x) => x.ref.name), ['checkout'], 'written once, by the manual rollback');
  const dry = (await e.engine.records.list({})).find((r) => r.rule === 'trial')!;
  t.not(dry.state, 'in_progress', `the dry run wrote nothing (${dry.state})`);
  t.notOk(dry.times.executedAt);
});

t.test("a live alert's rollback on another replica is not sent back by a dry run deciding on its target", async (t) => {
  const store = new MemoryStore();
  const a = testEngine({ ruleText: TWO_RULES, store, owner: 'replica-a' });
  const b = testEngine({ ruleText: TWO_RULES, store, owner: 'replica-b' });
  t.teardown(() => (a.engine.stop(), b.engine.stop()));
  const { open, planning } = holdFirstPlan(a);
  recoversOnWrite(b);
  const trial = a.engine.handle({ id: 'ev-trial', alert: firing('TrialAlert', 'checkout'), deliveries: 1 });
  await planning;
  await b.deliver(firing('HighErrorRate', 'checkout'));
  const live = (await b.engine.records.list({})).find((r) => r.rule === 'live')!;
  t.equal(live.state, 'succeeded', `rolled back at once, not decided again later: ${live.guards.filter((g) => g.result !== 'allow').map((g) => `${g.guard}: ${g.reason}`).join('; ')}`);
  t.same(b.action.executed.map((x) => x.ref.name), ['checkout']);
  open();
  await trial;
  await a.engine.idle();
});

t.test('a dry run asks for no lock, and its record says whether a rollback holds them', async (t) => {
  await t.test('nothing held: it goes on, taking none', async (t) => {
    const e = testEngine({ env: { DRY_RUN: 'true' } });
    const asked = locksAsked(e.store);
    await e.deliver(firing('HighErrorRate'));
    const [rec] = await e.engine.records.list({});
    t.equal(rec!.state, 'dry_run');
    t.match(verdict(rec!, 'lock')?.reason, /^Deployment\/prod\/checkout's lock is free; a dry run takes none; it writes no other object$/);
    t.same(asked.filter((n) => n.startsWith('target:')), [], 'no lock asked for');
  });
  await t.test('held by a rollback executing: blocked, naming it, as a live one would be', async (t) => {
    const e = testEngine({ env: { DRY_RUN: 'true' } });
    await e.store.putRecord({ id: 'rb-running', target: 'Deployment/prod/checkout', state: 'in_progress', createdAt: 1 });
    await e.store.acquireLock(lockName('Deployment/prod/checkout'), rollbackHolder('replica-b', 'rb-running'), 60_000);
    await e.deliver(firing('HighErrorRate'));
    const rec = (await e.engine.records.list({})).find((r) => r.id !== 'rb-running')!;
    t.equal(rec.state, 'blocked');
    t.match(rec.outcome?.message, /another rollback of Deployment\/prod\/checkout is executing \(rb-running; its lock is held\)/);
  });
  await t.test('held by a rollback still deciding: decided again later, as a live one would be; its wait over once it finds the lock free', async (t) => {
    let clock = Date.now();
    const e = testEngine({ env: { DRY_RUN: 'true' }, now: () => clock });
    await e.store.setValue('replica:replica-b', 'x', { ttlMs: 3_600_000 });
    await e.store.putRecord({ id: 'rb-deciding', target: 'Deployment/prod/checkout', state: 'deciding', createdAt: 1, owner: 'replica-b', updatedAt: Date.now() });
    const lock = (await e.store.acquireLock(lockName('Deployment/prod/checkout'), rollbackHolder('replica-b', 'rb-deciding'), 60_000))!;
    await e.deliver(firing('HighErrorRate'));
    t.teardown(() => e.engine.stop());
    const rec = (await e.engine.records.list({})).find((r) => r.id !== 'rb-deciding')!;
    t.equal(rec.state, 'scheduled');
    t.match(verdict(rec, 'lock')?.reason, /^Deployment\/prod\/checkout's lock is held by a rollback that has not executed \(rb-deciding, deciding;/);
    t.equal(rec.lockWaitSince, clock, 'its wait on the target begins');
    await e.store.putRecord({ id: 'rb-deciding', target: 'Deployment/prod/checkout', state: 'pending_approval', createdAt: 1, owner: 'replica-b', updatedAt: Date.now() });
    await e.store.releaseLock(lock);
    clock += 2_000;
    await e.engine.tick();
    await e.engine.idle();
    const after = (await e.engine.records.get(rec.id))!;
    t.equal(after.state, 'dry_run', after.outcome?.message ?? '');
    t.match(verdict(after, 'lock')?.reason, /^Deployment\/prod\/checkout's lock is free; a dry run takes none/);
    t.equal(after.lockWaitSince, undefined, 'the wait is over, as when a live rollback takes the lock: a later one counts afresh');
  });
});

t.test("a Canary's dry run takes neither its lock nor its stable Deployment's, and is judged by who holds them", async (t) => {
  let clock = Date.now();
  const rig = () => testEngine({ kube: cluster({ 'api-canary': 1, 'api-stable': 3 }), actions: createActions(), ruleText: CANARY_RULE, env: { DRY_RUN: 'true', LOCK_TTL: '30s' }, now: () => clock });
  const alert = () => firing('CanaryErrors', 'api-canary', { labels: { alertname: 'CanaryErrors', namespace: NS, deployment: 'api-canary', stable: 'api-stable' } });
  await t.test('free', async (t) => {
    const e = rig();
    const asked = locksAsked(e.store);
    await e.deliver(alert());
    const [rec] = await e.engine.records.list({});
    t.equal(rec!.state, 'dry_run', rec!.outcome?.message ?? '');
    t.match(verdict(rec!, 'lock')?.reason, /the locks of Deployment\/prod\/api-canary, Deployment\/prod\/api-stable are free; a dry run takes none$/);
    t.same(asked.filter((n) => n.startsWith('target:')), [], 'no lock asked for');
  });
  await t.test('the stable Deployment held by a rollback executing: blocked, naming it', async (t) => {
    const e = rig();
    await e.store.putRecord({ id: 'rb-stable', target: 'Deployment/prod/api-stable', state: 'in_progress', createdAt: 1 });
    await e.store.acquireLock(lockName('Deployment/prod/api-stable'), rollbackHolder('replica-b', 'rb-stable'), 60_000);
    await e.deliver(alert());
    const rec = (await e.engine.records.list({})).find((r) => r.id !== 'rb-stable')!;
    t.equal(rec.state, 'blocked');
    t.match(rec.outcome?.message, /another rollback writing Deployment\/prod\/api-stable is executing \(rb-stable; its lock is held\)/);
  });
  await t.test('the stable Deployment held by a rollback still deciding: decided again later; the wait over once it finds the lock free', async (t) => {
    const e = rig();
    t.teardown(() => e.engine.stop());
    await e.store.setValue('replica:replica-b', 'x', { ttlMs: 3_600_000 });
    const holder = { id: 'rb-stable', target: 'Deployment/prod/api-stable', state: 'deciding', createdAt: 1, owner: 'replica-b', updatedAt: Date.now() + 3_600_000 };
    await e.store.putRecord(holder);
    const lock = (await e.store.acquireLock(lockName('Deployment/prod/api-stable'), rollbackHolder('replica-b', 'rb-stable'), 3_600_000))!;
    await e.deliver(alert());
    const rec = (await e.engine.records.list({})).find((r) => r.id !== 'rb-stable')!;
    t.equal(rec.state, 'scheduled', rec.outcome?.message ?? '');
    t.equal(rec.writeLockWaitSince, clock, 'its wait on the written objects begins');
    await e.store.putRecord({ ...holder, state: 'pending_approval' });
    await e.store.releaseLock(lock);
    clock += 5_000;
    await e.engine.tick();
    await e.engine.idle();
    const after = (await e.engine.records.get(rec.id))!;
    t.equal(after.state, 'dry_run', after.outcome?.message ?? '');
    t.match(verdict(after, 'lock')?.reason, /the locks of Deployment\/prod\/api-canary, Deployment\/prod\/api-stable are free; a dry run takes none$/);
    t.equal(after.writeLockWaitSince, undefined, 'the wait is over, as when a live rollback takes the locks: a later one counts afresh');
  });
});
