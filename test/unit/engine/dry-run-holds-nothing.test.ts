import t from 'tap';
import { budgetKeys } from '../../../src/guards/budget.js';
import { CONCURRENCY_POOL } from '../../../src/guards/concurrency.js';
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
