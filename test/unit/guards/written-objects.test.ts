// The scope and lock guards see every object a rollback writes, not only the named target: a
// Canary's stable Deployment, objects named by a manual request's options, anything a plan writes.
import t from 'tap';
import type { Action } from '../../../src/actions/action.js';
import { createActions } from '../../../src/actions/index.js';
import { readCooldown } from '../../../src/guards/cooldown.js';
import { lockName } from '../../../src/guards/lock.js';
import { RESOURCES } from '../../../src/kube/kube.js';
import { metricValue } from '../../support/app.js';
import { FakeDeploymentAction, firing, testEngine } from '../../support/engine.js';
import { CANARY_RULE, cluster, NS, patched } from '../../support/canary.js';

t.test('a Canary rule cannot scale a stable Deployment SCOPE_DENY_TARGETS denies: blocked, naming the object and the setting', async (t) => {
  const kube = cluster({ 'api-canary': 1, 'api-stable': 3 });
  const e = testEngine({ kube, actions: createActions(), ruleText: CANARY_RULE, env: { SCOPE_DENY_TARGETS: 'Deployment/prod/*-stable' } });
  await e.deliver(firing('CanaryErrors', 'api-canary', { labels: { alertname: 'CanaryErrors', namespace: NS, deployment: 'api-canary', stable: 'api-stable' } }));
  const [rec] = await e.engine.records.list({});
  t.equal(rec!.state, 'blocked', rec!.outcome?.message ?? '');
  const scope = rec!.guards.find((g) => g.guard === 'scope')!;
  t.equal(scope.result, 'block');
  t.match(scope.reason, /the rollback writes Deployment\/prod\/api-stable: target Deployment\/prod\/api-stable is denied by Deployment\/prod\/\*-stable \(SCOPE_DENY_TARGETS\)/);
  t.match(rec!.outcome!.message, /blocked by scope: .*Deployment\/prod\/api-stable.*SCOPE_DENY_TARGETS/);
  t.same(kube.patches(), [], 'nothing written: neither the canary nor the stable Deployment');
  t.equal(await metricValue(e.metrics, 'rollguard_guard_blocked_total', { guard: 'scope' }), 1);
  t.equal(await e.store.acquireLock(lockName('Canary/prod/api-canary'), 'someone', 1000).then((l) => l !== null), true, 'the target lock was released');
});

t.test("a manual request's options naming a denied object are blocked the same way", async (t) => {
  const kube = cluster({ 'api-canary': 1, payments: 3 });
  const e = testEngine({ kube, actions: createActions(), env: { SCOPE_DENY_TARGETS: 'Deployment/prod/payments' } });
  const rec = await e.engine.manual({ ref: { kind: 'Canary', namespace: NS, name: 'api', options: { stable: 'payments' } }, reason: 'bad canary', requestedBy: 'sre' });
  await e.engine.idle();
  const done = (await e.engine.records.get(rec.id))!;
  t.equal(done.state, 'blocked');
  t.match(done.outcome!.message, /writes Deployment\/prod\/payments: target Deployment\/prod\/payments is denied by Deployment\/prod\/payments \(SCOPE_DENY_TARGETS\)/);
  t.same(kube.patches(), []);
});

t.test('a plan writing into a denied namespace is blocked, naming it and SCOPE_DENY_NAMESPACES', async (t) => {
  // an action whose plan writes an object beside its target (in kube-system, denied by default)
  const action = new FakeDeploymentAction();
  const plan = action.plan.bind(action);
  action.plan = async (ref) => ({
    ...(await plan(ref)),
    writes: [{ resource: RESOURCES.services, namespace: 'kube-system', name: 'kube-dns', patchType: 'merge', patch: { spec: { selector: { v: '1' } } }, description: 'switch kube-dns' }],
  });
  const e = testEngine({ action });
  await e.deliver(firing('HighErrorRate'));
  const [rec] = await e.engine.records.list({});
  t.equal(rec!.state, 'blocked');
  t.match(rec!.guards.find((g) => g.guard === 'scope')!.reason, /writes Service\/kube-system\/kube-dns: namespace kube-system is denied \(SCOPE_DENY_NAMESPACES\)/);
  t.equal(action.executed.length, 0);
});

t.test('in scope: the scope verdict says every object written is, and the rollback runs', async (t) => {
  const kube = cluster({ 'api-canary': 1, 'api-stable': 3 });
  const e = testEngine({ kube, actions: createActions(), env: { SCOPE_DENY_TARGETS: 'Deployment/prod/payments' } });
  const rec = await e.engine.manual({ ref: { kind: 'Canary', namespace: NS, name: 'api', options: { stable: 'api-stable' } }, reason: 'bad canary', requestedBy: 'sre' });
  await e.engine.idle();
  const done = (await e.engine.records.get(rec.id))!;
  t.equal(done.state, 'succeeded', done.outcome?.message ?? '');
  t.match(done.guards.find((g) => g.guard === 'scope')!.reason, /Canary\/prod\/api is in scope; every object it writes is in scope \(Deployment\/prod\/api-canary, Deployment\/prod\/api-stable\)/);
  t.match(done.guards.find((g) => g.guard === 'lock')!.reason, /locks of Deployment\/prod\/api-canary, Deployment\/prod\/api-stable taken too/);
  for (const k of ['Canary/prod/api', 'Deployment/prod/api-canary', 'Deployment/prod/api-stable']) {
    t.ok(await e.store.acquireLock(lockName(k), 'after', 1000), `${k}: released after the rollback`);
  }
});

t.test('a written object whose lock is held blocks the rollback, naming the object; once free it runs', async (t) => {
  const kube = cluster({ 'api-canary': 1, 'api-stable': 3 });
  const e = testEngine({ kube, actions: createActions() });
  const other = await e.store.acquireLock(lockName('Deployment/prod/api-stable'), 'another-replica', 60_000);
  const first = await e.engine.manual({ ref: { kind: 'Canary', namespace: NS, name: 'api', options: { stable: 'api-stable' } }, reason: 'r', requestedBy: 'sre' });
  await e.engine.idle();
  const blocked = (await e.engine.records.get(first.id))!;
  t.equal(blocked.state, 'blocked');
  t.match(blocked.guards.find((g) => g.guard === 'lock')!.reason, /another rollback writing Deployment\/prod\/api-stable is in progress \(its lock is held\)/);
  t.same(kube.patches(), []);
  const probe = await e.store.acquireLock(lockName('Deployment/prod/api-canary'), 'probe', 1000);
  t.ok(probe, 'the locks it took before meeting the held one were given back');
  await e.store.releaseLock(probe!);
  await e.store.releaseLock(other!);
  const second = await e.engine.manual({ ref: { kind: 'Canary', namespace: NS, name: 'api', options: { stable: 'api-stable' } }, reason: 'r', requestedBy: 'sre' });
  await e.engine.idle();
  t.equal((await e.engine.records.get(second.id))!.state, 'succeeded');
});

t.test('two rollbacks writing the same object serialize on its lock: one writes it, the other is blocked', async (t) => {
  // two canaries sharing one stable Deployment; each write takes a while
  const kube = cluster({ 'web-canary': 1, 'shop-canary': 1, 'shared-stable': 4 }, 100);
  const e = testEngine({ kube, actions: createActions() });
  const ask = (name: string) => e.engine.manual({ ref: { kind: 'Canary', namespace: NS, name, options: { stable: 'shared-stable' } }, reason: 'bad canary', requestedBy: 'sre' });
  const recs = await Promise.all([ask('web'), ask('shop')]);
  await e.engine.idle();
  const done = await Promise.all(recs.map(async (r) => (await e.engine.records.get(r.id))!));
  t.same(done.map((r) => r.state).sort(), ['blocked', 'succeeded'], done.map((r) => `${r.target}: ${r.outcome?.message}`).join(' | '));
  const loser = done.find((r) => r.state === 'blocked')!;
  t.match(loser.outcome!.message, /blocked by lock: another rollback writing Deployment\/prod\/shared-stable is in progress/);
  t.equal(patched(kube, 'shared-stable'), 1, 'the shared stable Deployment was written once');
});

t.test("the cooldown holds for every object a rollback writes: a Canary rollback's stable Deployment cools down, and another rollback writing it waits", async (t) => {
  const kube = cluster({ 'api-canary': 1, 'api-canary-2': 1, 'api-stable': 3 });
  const e = testEngine({ kube, actions: createActions(), ruleText: CANARY_RULE });
  const canary = (name: string) => firing('CanaryErrors', name, { labels: { alertname: 'CanaryErrors', namespace: NS, deployment: name, stable: 'api-stable' } });
  await e.deliver(canary('api-canary'));
  const [first] = await e.engine.records.list({ target: 'Canary/prod/api-canary' });
  t.ok(first!.times.executedAt, `the first Canary rollback executed (${first!.state})`);
  t.ok(patched(kube, 'api-stable') > 0, 'it scaled the stable Deployment');
  t.equal((await readCooldown(e.store, 'Deployment/prod/api-stable'))?.id, first!.id, "the stable Deployment's cooldown started with it");
  t.equal((await readCooldown(e.store, 'Deployment/prod/api-canary'))?.id, first!.id, "and the canary Deployment's");

  const stableWrites = patched(kube, 'api-stable');
  await e.deliver(canary('api-canary-2')); // another canary of the same stable Deployment
  const [second] = await e.engine.records.list({ target: 'Canary/prod/api-canary-2' });
  t.equal(second!.state, 'blocked', second!.outcome?.message ?? '');
  const verdict = second!.guards.find((g) => g.guard === 'cooldown')!;
  t.equal(verdict.result, 'block');
  t.match(verdict.reason, new RegExp(`the rollback writes Deployment/prod/api-stable, rolled back by ${first!.id} at .*; its cooldown lasts until `));
  t.equal(patched(kube, 'api-canary-2'), 0, 'the second canary untouched');
  t.equal(patched(kube, 'api-stable'), stableWrites, 'the stable Deployment not written again');
  t.equal(await metricValue(e.metrics, 'rollguard_guard_blocked_total', { guard: 'cooldown' }), 1);
});
