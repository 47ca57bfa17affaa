// Three replicas on one real Redis, many alerts at once on distinct targets: the cluster's hourly
// budget is never passed. The budget guard reserves in one atomic Redis step (a Lua script), and a
// reservation is given back when the rollback does not execute.
import t from 'tap';
import { firing, PerTargetDeploymentAction } from '../support/engine.js';
import { startRedis } from '../support/redis.js';
import { redisReplicas } from './support.js';

const redis = await startRedis();
t.teardown(() => redis.destroy());
// one cluster for all: executions overlap (each write takes a while), as they do on a real API server
const replicas = (n: number, env: Record<string, string>) => redisReplicas(t, redis.url, n, env, new PerTargetDeploymentAction(), 100);

t.test('three replicas, thirty alerts on thirty targets at once: exactly BUDGET_CLUSTER_PER_HOUR rollbacks', async (t) => {
  const { engines, action } = await replicas(3, { BUDGET_CLUSTER_PER_HOUR: '3', MAX_CONCURRENT_ROLLBACKS: '100' });
  const alerts = Array.from({ length: 30 }, (_, i) => firing('HighErrorRate', `svc-${i}`));
  await Promise.all(alerts.map((a, i) => engines[i % 3]!.engine.handle({ id: `ev-${i}`, alert: a, deliveries: 1 })));
  await Promise.all(engines.map((e) => e.engine.idle()));
  t.equal(action.executed.length, 3, `executed ${action.executed.map((x) => x.ref.name).join(', ')}`);
  const recs = await engines[0]!.engine.records.list({ limit: 100 });
  t.equal(recs.length, 30);
  const blocked = recs.filter((r) => r.state === 'blocked');
  t.equal(blocked.length, 27);
  t.ok(blocked.every((r) => /across the cluster in the last hour; BUDGET_CLUSTER_PER_HOUR is 3/.test(r.outcome?.message ?? '')), 'each blocked by the cluster budget, saying so');
  t.equal(await engines[0]!.store.countEvents('budget:cluster', Date.now() - 3_600_000), 3, 'three units spent, no more');
});

t.test('a reservation is given back when the rollback does not execute (waiting for approval, a refused write), and a dry run reserves none', async (t) => {
  const { engines } = await replicas(1, { BUDGET_CLUSTER_PER_HOUR: '1' });
  const e = engines[0]!;
  const spent = () => e.store.countEvents('budget:cluster', Date.now() - 3_600_000);
  await e.deliver(firing('HighLatency', 'needs-approval')); // its rule requires approval
  const pending = (await e.engine.records.list({}))[0]!;
  t.equal(pending.state, 'pending_approval');
  t.equal(await spent(), 0, 'waiting for approval spends nothing');

  const dry = await e.engine.manual({ ref: { kind: 'Deployment', namespace: 'prod', name: 'dry' }, reason: 'try', requestedBy: 'sre', dryRun: true });
  await e.engine.idle();
  t.equal((await e.engine.records.get(dry.id))!.state, 'dry_run');
  t.equal(await spent(), 0, 'a dry run spends nothing');
  t.match((await e.engine.records.get(dry.id))!.guards.find((g) => g.guard === 'budget')?.reason, /a dry run spends none of it/, 'and reserved nothing');

  const execute = e.action.execute.bind(e.action);
  e.action.execute = async (p) => ({ applied: false, message: 'not applied: someone else rolled it back', at: Date.now(), attempts: 1, refusal: { code: 'already_matches', message: 'skipped rollback (current template already matches revision 1)' }, replanned: p });
  await e.deliver(firing('HighErrorRate', 'refused'));
  t.equal((await e.engine.records.list({ target: 'Deployment/prod/refused' }))[0]!.state, 'refused');
  t.equal(await spent(), 0, 'a write that was not applied spends nothing');
  e.action.execute = execute;

  const ok = await e.engine.approve(pending.id, 'alice');
  t.equal(ok.kind, 'ok');
  await e.engine.idle();
  t.equal(await spent(), 1, 'the approved rollback executed and spent the one unit');
  await e.deliver(firing('HighErrorRate', 'next'));
  t.match((await e.engine.records.list({ target: 'Deployment/prod/next' }))[0]!.outcome?.message, /BUDGET_CLUSTER_PER_HOUR is 1/, 'and the budget is now used up');
});

t.test('three replicas in dry-run, thirty alerts at once: every one a dry run, nothing reserved or leased', async (t) => {
  // before 2026-12-07 the dry runs reserved budget and slots while they decided, and refused one another
  const { engines, action } = await replicas(3, { DRY_RUN: 'true', BUDGET_CLUSTER_PER_HOUR: '3', MAX_CONCURRENT_ROLLBACKS: '2' });
  const alerts = Array.from({ length: 30 }, (_, i) => firing('HighErrorRate', `dry-${i}`));
  await Promise.all(alerts.map((a, i) => engines[i % 3]!.engine.handle({ id: `ev-dry-${i}`, alert: a, deliveries: 1 })));
  await Promise.all(engines.map((e) => e.engine.idle()));
  const recs = (await engines[0]!.engine.records.list({ limit: 200 })).filter((r) => r.target.startsWith('Deployment/prod/dry-'));
  t.equal(recs.length, 30);
  const notDry = recs.filter((r) => r.state !== 'dry_run');
  t.same(notDry.map((r) => `${r.target} ${r.state}: ${r.outcome?.message}`), [], 'every one a dry run');
  t.equal(action.executed.filter((x) => x.ref.name.startsWith('dry-')).length, 0, 'nothing written');
  t.same(await engines[0]!.store.slotHolders('rollbacks'), [], 'no slot leased');
  t.equal(await engines[0]!.store.countEvents('budget:cluster', 0), 0, 'no budget reserved');
});

t.test('two replicas: a P1 evaluation that asks for approval and a P0 alert at once, the cluster budget at its last unit: the P0 one rolls back', async (t) => {
  // the P1 evaluation reserves the last unit, asks for approval and gives it back; before
  // 2026-12-07 the P0 rollback deciding meanwhile on the other replica was closed blocked for good
  // LOCK_TTL 30 s (the default)
  const { engines, action } = await replicas(2, { BUDGET_CLUSTER_PER_HOUR: '1', MAX_CONCURRENT_ROLLBACKS: '100', LOCK_TTL: '30s' });
  for (const e of engines) {
    const execute = e.action.execute.bind(e.action);
    e.action.execute = async (p, c) => {
      const r = await execute(p, c);
      for (const x of engines) x.prometheus!.value = 0.001;
      return r;
    };
  }
  // the P0 alert arrives on replica b once replica a's P1 evaluation holds the unit, and that
  // evaluation gives it back only once the P0 rollback was refused for it: the give-back lands
  // between the refusal and the P0 one's next store call every time (before, it landed there only
  // under load; until 2026-12-07 the P0 one then read no holder left and was closed blocked:
  // docs/reliability.md item 46)
  const a = engines[0]!.store;
  let reserved!: () => void;
  const p1Reserved = new Promise<void>((r) => (reserved = r));
  let refused!: () => void;
  const p0Refused = new Promise<void>((r) => (refused = r));
  let givenBack!: () => void;
  const p1GivenBack = new Promise<void>((r) => (givenBack = r));
  const reserve = a.reserveEvents.bind(a);
  a.reserveEvents = async (...args) => {
    const r = await reserve(...args);
    if (args[1].startsWith('rb-')) reserved();
    return r;
  };
  const release = a.releaseEvents.bind(a);
  a.releaseEvents = async (...args) => {
    await p0Refused;
    await release(...args);
    givenBack();
  };
  // replica b's answers to the P0 rollback's reservations: refused at least once (it met the unit held), then reserved
  const b = engines[1]!.store;
  const answers: boolean[] = [];
  const reserveB = b.reserveEvents.bind(b);
  b.reserveEvents = async (...args) => {
    const r = await reserveB(...args);
    answers.push(r.reserved);
    if (!r.reserved && answers.length === 1) {
      refused();
      await p1GivenBack;
    }
    return r;
  };
  await Promise.all([
    engines[0]!.engine.handle({ id: 'ev-p1', alert: firing('HighLatency', 'p1-needs-approval'), deliveries: 1 }),
    p1Reserved.then(() => engines[1]!.engine.handle({ id: 'ev-p0', alert: firing('HighErrorRate', 'p0-checkout'), deliveries: 1 })),
  ]);
  t.equal(answers[0], false, `the P0 rollback met the unit held by the P1 evaluation (answers ${answers.join(', ')})`);
  t.equal(answers.at(-1), true, 'and reserved it once given back');
  await Promise.all(engines.map((e) => e.engine.idle()));
  const recs = await engines[0]!.engine.records.list({ limit: 100 });
  const p0 = recs.find((r) => r.target === 'Deployment/prod/p0-checkout')!;
  t.equal(recs.find((r) => r.target === 'Deployment/prod/p1-needs-approval')?.state, 'pending_approval');
  t.equal(p0.state, 'succeeded', p0.guards.filter((g) => g.result !== 'allow').map((g) => `${g.guard}: ${g.reason}`).join('; '));
  t.same(action.executed.map((x) => x.ref.name).filter((n) => n.startsWith('p')), ['p0-checkout']);
  t.equal(await engines[0]!.store.countEvents('budget:cluster', 0), 1, 'the one unit spent, by the P0 rollback');
});
