// What holds around the cluster write, whatever fails (found on 2026-12-06 in a review):
// - the target's cooldown is written before the write, so neither a store failure nor a crash after
//   the write can leave the target with its lock given back (or expired) and no cooldown, open to a
//   second rollback that would undo the first (a rule with perTargetPerHour above 1 let it through);
// - a store failure after the write does not close the applied rollback as failed;
// - a rollback that wrote nothing after all, for certain, gives its cooldown back, and says which
//   GitOps owners it left suspended.
import t from 'tap';
import type { Action, ActionContext, ExecuteResult, RollbackPlan, TargetRef } from '../../../src/actions/action.js';
import { executeWrites } from '../../../src/actions/common.js';
import { KubeApiError } from '../../../src/kube/errors.js';
import { RESOURCES } from '../../../src/kube/kube.js';
import { OWNER_RESOURCES } from '../../../src/gitops/types.js';
import { MemoryStore } from '../../../src/store/memory.js';
import { StoreUnavailableError } from '../../../src/store/store.js';
import { firing, HELM_RULES, orphanRecord, PerTargetDeploymentAction, testEngine } from '../../support/engine.js';
import { FakeKube } from '../../support/fake-kube.js';
import { aroundStore } from '../../support/store-proxy.js';

const rule = (name: string, alertname: string, extra = '') => `
  - name: ${name}
    match: ['alertname="${alertname}"']
    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
    trigger: { kind: error_rate, selector: { namespace: "{{ $labels.namespace }}" }, threshold: 0.05, for: 2m, step: 15s }
    priority: P0
    guards: { budget: { perTargetPerHour: 3 } }${extra}`;
// two rules on one target, each allowing three rollbacks of it an hour: only the cooldown stands between them
const RULES = `rules:${rule('error-rate', 'HighErrorRate')}${rule('latency', 'HighLatency')}\n`;
const TARGET = 'Deployment/prod/checkout';

t.test('the store fails once right after the write: the rollback is not closed failed, and the cooldown already holds the target', async (t) => {
  const mem = new MemoryStore();
  const action = new PerTargetDeploymentAction();
  let failed = 0;
  const store = aroundStore(mem, async (op, _args, call) => {
    // the first record write after the cluster write (it records executedAt)
    if (op === 'putRecord' && action.executed.length === 1 && failed === 0) {
      failed++;
      e.prometheus!.value = 0.01; // the rollback worked: the error rate is back under the threshold
      throw new StoreUnavailableError('redis putRecord: Command timed out (injected)');
    }
    return call();
  });
  const e = testEngine({ store, ruleText: RULES, action });
  e.prometheus!.value = 0.2;
  await e.deliver(firing('HighErrorRate'));
  t.equal(failed, 1, 'the store failed after the write');
  const [first] = await e.engine.records.list({});
  t.equal(first?.state, 'succeeded', `verified and closed as it went, not failed (${first?.state}: ${first?.outcome?.message ?? ''})`);
  t.ok(first?.times.executedAt, 'its end recorded that it was executed');
  t.notOk(e.notifier.sent.some((n) => n.kind === 'rollback_failed' && /putRecord/.test(n.lines.join(' '))), 'no "rollback failed" for a store error');
  t.match(JSON.parse((await mem.getValue(`cooldown:${TARGET}`)) ?? 'null'), { id: first?.id }, "the target's cooldown names it");
  // the cluster as a real `rollout undo` leaves it: the template has a previous revision again (the bad one)
  action.applied = false;
  e.prometheus!.value = 0.2; // and the other rule's trigger holds
  await e.deliver(firing('HighLatency'));
  const second = (await e.engine.records.list({})).find((r) => r.rule === 'latency');
  t.equal(second?.state, 'blocked', `the other rule's alert is blocked (${second?.outcome?.message ?? ''})`);
  t.match(second?.outcome?.message, /cooldown/);
  t.equal(action.executed.length, 1, 'one write to the cluster');
});

t.test('a replica dies right after its write: once its lock expires, an alert of another rule for the target meets the cooldown', async (t) => {
  let skew = 0;
  const mem = new MemoryStore(() => Date.now() + skew);
  const cluster: string[] = [];
  class Counting extends PerTargetDeploymentAction {
    override async execute(p: RollbackPlan, c: ActionContext) {
      cluster.push(c.changeCause);
      return super.execute(p, c);
    }
  }
  const actA = new Counting();
  let dead = false;
  const never = new Promise<never>(() => {});
  const storeA = aroundStore(mem, async (_op, _args, call) => {
    if (dead) return never;
    if (actA.executed.length === 1) {
      dead = true; // SIGKILL: nothing after the write reaches the store
      return never;
    }
    return call();
  });
  const a = testEngine({ store: storeA, owner: 'replica-a', ruleText: RULES, action: actA });
  const actB = new Counting();
  const b = testEngine({ store: mem, owner: 'replica-b', ruleText: RULES, action: actB });
  void a.engine.handle({ id: 'ev-a', alert: firing('HighErrorRate'), deliveries: 1 });
  const end = Date.now() + 10_000;
  while (!dead && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
  t.ok(dead, 'replica A wrote to the cluster and died');
  skew = 3_000; // past LOCK_TTL (2 s in the test engine): A's lock has expired
  t.equal(await mem.lockOwner(`target:${TARGET}`), null, "A's lock is gone");
  await b.deliver(firing('HighLatency'));
  const rec = (await b.engine.records.list({})).find((r) => r.rule === 'latency');
  t.equal(rec?.state, 'blocked', `blocked (${rec?.outcome?.message ?? ''})`);
  t.match(rec?.outcome?.message, /cooldown/);
  t.equal(cluster.length, 1, 'one write to the cluster');
});

/** The Deployment double with the write it plans, refusing at the write as a re-plan after a conflict does. */
class RefusedAtWrite extends PerTargetDeploymentAction {
  override async plan(ref: TargetRef): Promise<RollbackPlan> {
    const p = await super.plan(ref);
    return { ...p, writes: [{ resource: RESOURCES.deployments, namespace: ref.namespace, name: ref.name, patchType: 'json', patch: [], description: 'undo the template' }] };
  }
  override async execute(): Promise<ExecuteResult> {
    return { applied: false, message: 'changed since plan', at: Date.now(), attempts: 2, refusal: { code: 'changed_since_plan', message: 'the Deployment changed since the plan: someone else rolled it back' } };
  }
}

function fluxOwned() {
  const kube = new FakeKube();
  kube.add(RESOURCES.deployments, {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'checkout', namespace: 'prod', labels: { 'kustomize.toolkit.fluxcd.io/name': 'shop', 'kustomize.toolkit.fluxcd.io/namespace': 'flux-system' } },
    spec: {},
  });
  kube.add(OWNER_RESOURCES.Kustomization, {
    apiVersion: 'kustomize.toolkit.fluxcd.io/v1',
    kind: 'Kustomization',
    metadata: { name: 'shop', namespace: 'flux-system' },
    spec: { interval: '5m', path: './shop' },
    status: { inventory: { entries: [{ id: 'prod_checkout_apps_Deployment', v: 'v1' }] } },
  });
  return kube;
}

// Not resumed by itself (found in review of the first version of this change, which did): another
// rollback of a target the same owner reconciles may rely on the suspension (it found the owner
// suspended and suspended nothing), and resuming would have the owner put that target back.
t.test('a rollback that writes nothing after all: its cooldown given back; the Flux Kustomization it suspended stays suspended, and the notification says so', async (t) => {
  const kube = fluxOwned();
  const store = new MemoryStore();
  const e = testEngine({ store, kube, ruleText: `rules:${rule('error-rate', 'HighErrorRate', '\n    gitops: suspend')}\n`, action: new RefusedAtWrite() });
  await e.deliver(firing('HighErrorRate'));
  const [rec] = await e.engine.records.list({});
  t.equal(rec?.state, 'refused', `${rec?.state}: ${rec?.outcome?.message ?? ''}`);
  t.ok(rec?.timeline.some((s) => s.step === 'gitops_suspended'), 'the Kustomization was suspended for the write');
  t.notOk(rec?.timeline.some((s) => s.step === 'gitops_resumed'), 'not resumed by itself');
  t.equal(kube.peek(OWNER_RESOURCES.Kustomization, 'flux-system', 'shop')?.spec?.suspend, true, 'still suspended');
  const said = e.notifier.sent.find((n) => n.kind === 'rollback_refused');
  t.match(said?.lines.join('\n'), /GitOps: suspended Flux Kustomization flux-system\/shop.*Next: .*resume/, 'the refusal says what is left suspended and what to do');
  t.equal(await store.getValue(`cooldown:${TARGET}`), null, 'no cooldown: nothing was rolled back');
});

/** The Deployment double writing through executeWrites to a FakeKube: its errors are the API server's. */
class WritesThroughKube extends PerTargetDeploymentAction {
  replans = 0;
  constructor(private readonly writes = 1) {
    super();
  }
  override async plan(ref: TargetRef): Promise<RollbackPlan> {
    const p = await super.plan(ref);
    const fromRevision = this.replans++ === 0 ? p.fromRevision : (p.fromRevision ?? 0) + 1; // a re-plan finds a new deploy
    const ws = Array.from({ length: this.writes }, (_, i) => ({ resource: RESOURCES.deployments, namespace: ref.namespace, name: ref.name, patchType: 'json' as const, patch: [], description: `write ${i + 1}` }));
    return { ...p, fromRevision, writes: ws };
  }
  override execute(plan: RollbackPlan, ctx: ActionContext): Promise<ExecuteResult> {
    return executeWrites(this, plan, ctx);
  }
}

const apiError = (status: number | 'timeout', reason: string) => new KubeApiError({ status, reason, message: 'injected', operation: 'PATCH deployments prod/checkout' });

for (const [status, reason, given] of [
  [403, 'Forbidden', true],
  [422, 'Invalid', true],
  ['timeout', 'Timeout', false],
  [500, 'InternalError', false],
] as const) {
  t.test(`the write fails with ${status} ${reason}: the cooldown is ${given ? 'given back (the API server refused it: nothing was written)' : 'kept (the write may have landed)'}`, async (t) => {
    const kube = fluxOwned();
    kube.failNext('patch', (c) => (c.resource === 'deployments' ? apiError(status, reason) : null));
    const store = new MemoryStore();
    const e = testEngine({ store, kube, ruleText: RULES, action: new WritesThroughKube() });
    await e.deliver(firing('HighErrorRate'));
    const [rec] = await e.engine.records.list({});
    t.equal(rec?.state, 'failed', `escalated (${rec?.outcome?.message ?? ''})`);
    const cooldown = await store.getValue(`cooldown:${TARGET}`);
    if (given) t.equal(cooldown, null, 'no cooldown');
    else t.match(JSON.parse(cooldown ?? 'null'), { id: rec?.id }, 'the cooldown names it');
  });
}

t.test('a write landed, the next one conflicted and the re-plan refused: not applied, yet the cooldown stays and the record says what landed', async (t) => {
  const kube = fluxOwned();
  let patches = 0;
  kube.failNext('patch', (c) => (c.resource === 'deployments' && ++patches === 2 ? apiError(409, 'Conflict') : null));
  const store = new MemoryStore();
  const e = testEngine({ store, kube, ruleText: RULES, action: new WritesThroughKube(2) });
  await e.deliver(firing('HighErrorRate'));
  const [rec] = await e.engine.records.list({});
  t.equal(rec?.state, 'refused', `${rec?.state}: ${rec?.outcome?.message ?? ''}`);
  t.match(rec?.timeline.find((s) => s.step === 'partly_written')?.message, /write 1.*the cooldown stays/);
  t.match(JSON.parse((await store.getValue(`cooldown:${TARGET}`)) ?? 'null'), { id: rec?.id }, 'the cooldown names it');
});

t.test('a replica dies after starting the cooldown, before its write: the recovery finds nothing applied, escalates, and ends that cooldown', async (t) => {
  let skew = 0;
  const mem = new MemoryStore(() => Date.now() + skew);
  const actA = new PerTargetDeploymentAction();
  let dead = false;
  const never = new Promise<never>(() => {});
  const storeA = aroundStore(mem, async (op, args, call) => {
    if (dead) return never;
    if (op === 'setValue' && String(args[0]).startsWith('cooldown:')) {
      await call(); // the cooldown is written, then SIGKILL: the write to the cluster never happens
      dead = true;
      return never;
    }
    return call();
  });
  const a = testEngine({ store: storeA, owner: 'replica-a', ruleText: RULES, action: actA });
  const actB = new PerTargetDeploymentAction();
  const b = testEngine({ store: mem, owner: 'replica-b', ruleText: RULES, action: actB, now: () => Date.now() + skew });
  void a.engine.handle({ id: 'ev-a', alert: firing('HighErrorRate'), deliveries: 1 });
  const end = Date.now() + 10_000;
  while (!dead && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
  t.ok(dead, 'replica A started the cooldown and died');
  t.equal(actA.executed.length, 0, 'nothing written to the cluster');
  const first = (await b.engine.records.list({}))[0]!;
  t.match(JSON.parse((await mem.getValue(`cooldown:${TARGET}`)) ?? 'null'), { id: first.id });
  skew = 3_000; // past LOCK_TTL: A's lock has expired
  await b.engine.tick();
  await b.engine.idle();
  const after = await b.engine.records.get(first.id);
  t.equal(after?.state, 'interrupted', `${after?.state}: ${after?.outcome?.message ?? ''}`);
  t.equal(await mem.getValue(`cooldown:${TARGET}`), null, 'its cooldown ended: it changed nothing');
  await b.deliver(firing('HighLatency'));
  const next = (await b.engine.records.list({})).find((r) => r.rule === 'latency');
  t.equal(actB.executed.length, 1, `the next alert rolls back (${next?.state}: ${next?.outcome?.message ?? ''})`);
});

// REDIS_MIN_REPLICAS_ACK (added 2026-12-06): with a Sentinel-managed primary, a failover loses what
// its replicas had not copied. The store's replicas must hold the claim, the cooldown and the
// write-ahead before the first cluster write; when they do not confirm, nothing is written.
t.test('the store\'s replicas do not confirm the rollback\'s store writes: nothing is written to the cluster, the record says why, the cooldown is given back', async (t) => {
  const kube = fluxOwned();
  const mem = new MemoryStore();
  let asked = 0;
  const store = aroundStore(mem, async (op, _args, call) => {
    if (op === 'replicated') {
      asked++;
      throw new StoreUnavailableError('redis replicated: 0 of the 1 replicas REDIS_MIN_REPLICAS_ACK asks for confirmed the writes within REDIS_REPLICA_ACK_TIMEOUT (500 ms) (injected)');
    }
    return call();
  });
  const e = testEngine({ store, kube, ruleText: RULES, action: new WritesThroughKube() });
  await e.deliver(firing('HighErrorRate'));
  const [rec] = await e.engine.records.list({});
  t.equal(asked, 1, 'asked once, before the first write');
  t.equal(kube.calls.filter((c) => c.verb === 'patch' && c.resource === 'deployments').length, 0, 'nothing written to the cluster');
  t.equal(rec?.state, 'failed', `escalated: ${rec?.state}: ${rec?.outcome?.message ?? ''}`);
  t.match(rec?.outcome?.message, /REDIS_MIN_REPLICAS_ACK.*not writing/);
  t.equal(await mem.getValue(`cooldown:${TARGET}`), null, 'no cooldown: nothing was rolled back');
});

t.test('the store\'s replicas are waited for before the first of several cluster writes, not between them', async (t) => {
  const kube = new FakeKube(); // no GitOps owner: nothing holds verification for a reconcile window
  kube.add(RESOURCES.deployments, { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'checkout', namespace: 'prod' }, spec: {} });
  const mem = new MemoryStore();
  const order: string[] = [];
  const store = aroundStore(mem, async (op, _args, call) => {
    if (op === 'replicated') order.push('replicated');
    return call();
  });
  // marks the target rolled back once its writes landed, as the double's own execute does
  class Marking extends WritesThroughKube {
    override async execute(plan: RollbackPlan, ctx: ActionContext): Promise<ExecuteResult> {
      const r = await super.execute(plan, ctx);
      this.rolledBack(plan.target.name);
      return r;
    }
  }
  const e = testEngine({ store, kube, ruleText: RULES, action: new Marking(3) });
  kube.onPatch = (rt) => {
    if (rt.plural !== 'deployments') return;
    order.push('patch');
    e.prometheus!.value = 0.01; // the rollback worked: verification ends at once
  };
  e.prometheus!.value = 0.2;
  await e.deliver(firing('HighErrorRate'));
  t.same(order, ['replicated', 'replicated', 'patch', 'patch', 'patch'], 'after the cooldown, then at the first write (the action context\'s one wait), not between writes');
});

// Found in review (2026-12-06): an owner's suspension (or a migration Job) took the action
// context's one wait before the cooldown was written, so the cooldown went to the cluster write
// unconfirmed by the replicas.
t.test('a GitOps owner suspended first: the cooldown written after it is still waited for; not confirmed: no rollback write, the cooldown given back', async (t) => {
  const kube = fluxOwned();
  const mem = new MemoryStore();
  const seen: string[] = [];
  const store = aroundStore(mem, async (op, args, call) => {
    if (op === 'setValue' && String(args[0]).startsWith('cooldown:')) seen.push('cooldown');
    if (op === 'replicated') {
      seen.push('replicated');
      if (seen.includes('cooldown')) throw new StoreUnavailableError('redis replicated: 0 of the 1 replicas REDIS_MIN_REPLICAS_ACK asks for confirmed the writes (injected)');
    }
    return call();
  });
  const e = testEngine({ store, kube, ruleText: `rules:${rule('error-rate', 'HighErrorRate', '\n    gitops: suspend')}\n`, action: new WritesThroughKube() });
  await e.deliver(firing('HighErrorRate'));
  const [rec] = await e.engine.records.list({});
  t.same(seen.slice(0, 3), ['replicated', 'cooldown', 'replicated'], 'before the suspension, then after the cooldown');
  t.ok(rec?.timeline.some((s) => s.step === 'gitops_suspended'), 'the Kustomization was suspended first');
  t.equal(kube.calls.filter((c) => c.verb === 'patch' && c.resource === 'deployments').length, 0, 'no rollback write');
  t.match(rec?.outcome?.message, /REDIS_MIN_REPLICAS_ACK.*not writing/);
  t.equal(await mem.getValue(`cooldown:${TARGET}`), null, 'the cooldown given back');
});

/** A HelmRelease-kind action as src/actions/helm.ts plans: the release written, its workload changed (not planned by a recovery). */
function helmLikeAction() {
  const ran: string[] = [];
  const helmLike: Action = {
    kind: 'HelmRelease',
    async plan(ref: TargetRef, ctx: ActionContext): Promise<RollbackPlan> {
      return {
        target: ref, kind: 'HelmRelease', fromRevision: 2, toRevision: 1, current: { revision: 2, createdAt: Date.now() - 3_600_000, annotations: {} },
        summary: `helm rollback ${ref.name} 1`, command: ['helm', 'rollback', '--', ref.name, '1'], release: { namespace: ref.namespace, name: ref.name },
        ...(ctx.recovering ? {} : { changes: [{ resource: RESOURCES.deployments, namespace: ref.namespace, name: 'shop-web', release: { namespace: ref.namespace, name: ref.name } }] }),
        plannedAt: Date.now(),
      };
    },
    async execute(plan: RollbackPlan): Promise<ExecuteResult> {
      ran.push(plan.summary);
      return { applied: true, message: 'done', at: Date.now(), attempts: 1 };
    },
    async verify() {
      return { outcome: 'succeeded' as const, message: 'deployed' };
    },
  };
  return { helmLike, ran };
}


t.test('a Helm rollback whose replica dies after starting its cooldowns, before helm ran: the recovery ends the release\'s and its workloads\' cooldowns', async (t) => {
  const { helmLike, ran } = helmLikeAction();
  let skew = 0;
  const mem = new MemoryStore(() => Date.now() + skew);
  let dead = false;
  const never = new Promise<never>(() => {});
  const storeA = aroundStore(mem, async (op, args, call) => {
    if (dead) return never;
    if (op === 'setValue' && String(args[0]) === 'cooldown:Deployment/prod/shop-web') {
      await call(); // the workload's cooldown is the last written before helm runs: then SIGKILL
      dead = true;
      return never;
    }
    return call();
  });
  const a = testEngine({ store: storeA, owner: 'replica-a', ruleText: HELM_RULES, actions: { HelmRelease: helmLike } });
  const b = testEngine({ store: mem, owner: 'replica-b', ruleText: HELM_RULES, actions: { HelmRelease: helmLike }, now: () => Date.now() + skew });
  const alert = firing('ReleaseErrors');
  alert.labels = { alertname: 'ReleaseErrors', namespace: 'prod', release: 'shop' };
  void a.engine.handle({ id: 'ev-a', alert, deliveries: 1 });
  const end = Date.now() + 10_000;
  while (!dead && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
  t.ok(dead, 'replica A started the cooldowns and died');
  t.same(ran, [], 'helm never ran');
  const first = (await b.engine.records.list({}))[0]!;
  t.same(first.plan?.changes, [{ kind: 'Deployment', namespace: 'prod', name: 'shop-web' }], 'the record names the workload its plan changes (names only)');
  for (const key of ['HelmRelease/prod/shop', 'Deployment/prod/shop-web']) t.match(JSON.parse((await mem.getValue(`cooldown:${key}`)) ?? 'null'), { id: first.id }, `${key} in cooldown`);
  skew = 3_000; // past LOCK_TTL
  await b.engine.tick();
  await b.engine.idle();
  t.equal((await b.engine.records.get(first.id))?.state, 'interrupted');
  for (const key of ['HelmRelease/prod/shop', 'Deployment/prod/shop-web']) t.equal(await mem.getValue(`cooldown:${key}`), null, `${key}: its cooldown ended (the rollback changed nothing)`);
});

t.test('a Helm rollback whose replica died after helm ran: the recovery keeps its workloads in cooldown too, from the names its record keeps', async (t) => {
  const { helmLike } = helmLikeAction();
  const mem = new MemoryStore();
  const b = testEngine({ store: mem, owner: 'replica-b', ruleText: HELM_RULES, actions: { HelmRelease: helmLike } });
  b.prometheus!.value = 0.001; // the service recovered
  const rec = orphanRecord('rb-helm');
  rec.target = 'HelmRelease/prod/shop';
  rec.ref = { kind: 'HelmRelease', namespace: 'prod', name: 'shop' };
  rec.rule = 'release-errors';
  rec.plan = { summary: 'helm rollback shop 1', changes: [{ kind: 'Deployment', namespace: 'prod', name: 'shop-web' }] };
  await mem.putRecord(rec);
  await b.engine.tick();
  await b.engine.idle();
  t.equal((await b.engine.records.get('rb-helm'))?.state, 'succeeded', 'verified and closed by the recovery');
  for (const key of ['HelmRelease/prod/shop', 'Deployment/prod/shop-web']) t.match(JSON.parse((await mem.getValue(`cooldown:${key}`)) ?? 'null'), { id: 'rb-helm' }, `${key} in cooldown as the recovered rollback's`);
});
