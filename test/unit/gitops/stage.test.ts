// Where the engine meets GitOps (src/gitops/stage.ts), on the in-memory Kube: driftedBack watches
// the rolled-back workload, not the ConfigMap or Secret restored before it (configDrift: restore).
// The real Flux controllers putting a Deployment back are in test/e2e/gitops-rollback.test.ts.
import t from 'tap';
import type { ExecuteResult, PlannedWrite, RollbackPlan } from '../../../src/actions/action.js';
import type { RollbackRecord } from '../../../src/engine/record.js';
import { driftedBack, suspendBeforeWrite, withGitOps } from '../../../src/gitops/stage.js';
import { resumeOwners } from '../../../src/gitops/suspend.js';
import { refreshSuspendedGauge } from '../../../src/gitops/tally.js';
import { OWNER_RESOURCES, type Owner } from '../../../src/gitops/types.js';
import { RESOURCES, type ResourceType } from '../../../src/kube/kube.js';
import { bareEngineContext } from '../../support/engine.js';
import { FakeKube } from '../../support/fake-kube.js';
import { context } from '../actions/fixtures/objects.js';

const SECRETS: ResourceType = { group: '', version: 'v1', plural: 'secrets', kind: 'Secret' };
const KS: Owner = {
  tool: 'Flux', kind: 'Kustomization', namespace: 'flux-system', name: 'apps', via: 'labels kustomize.toolkit.fluxcd.io/name and /namespace',
  found: true, sync: 'reconciled every 5m, drift corrected on each run', correctsDrift: true, paused: false, settleMs: 605_000, objects: ['Deployment/shop/cart'],
};

const engineContext = bareEngineContext;

/** shop/cart as our write left it (generation 8), its ConfigMap and Secret restored before it. */
function cluster() {
  const kube = new FakeKube();
  kube.add(RESOURCES.configmaps, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'cart-settings', namespace: 'shop' }, data: { mode: 'old' } });
  kube.add(SECRETS, { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'cart-token', namespace: 'shop' }, data: {} });
  kube.add(RESOURCES.deployments, { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'cart', namespace: 'shop', generation: 8 }, spec: {} });
  return kube;
}

/** kustomize-controller applies the bad template again: generation 8 -> 9. */
function fluxPutsBack(kube: FakeKube) {
  const d = kube.peek(RESOURCES.deployments, 'shop', 'cart')!;
  const managedFields = [{ manager: 'kustomize-controller', operation: 'Apply', time: new Date().toISOString(), fieldsV1: { 'f:spec': {} } }];
  kube.put(RESOURCES.deployments, { ...d, metadata: { ...d.metadata, generation: 9, managedFields } as typeof d.metadata });
}

const write = (resource: ResourceType, name: string, description: string): PlannedWrite => ({ resource, namespace: 'shop', name, patchType: 'merge', patch: {}, description });
const DEP = write(RESOURCES.deployments, 'cart', 'undo to revision 3');
const CM = write(RESOURCES.configmaps, 'cart-settings', 'restore ConfigMap shop/cart-settings');
const SECRET = write(SECRETS, 'cart-token', 'restore Secret shop/cart-token');
const plan = (writes: PlannedWrite[]): RollbackPlan => ({ target: { kind: 'Deployment', namespace: 'shop', name: 'cart' }, kind: 'Deployment', summary: 'undo', writes, plannedAt: 0 });
// what executeWrites answers: the workload's generation, not the restored ConfigMap's (it has none)
const res: ExecuteResult = { applied: true, message: 'undo', newGeneration: 8, at: Date.now(), attempts: 1 };

async function drift(kube: FakeKube, writes: PlannedWrite[]) {
  const ctx = engineContext();
  const rec = { id: 'r-1', timeline: [], times: { executedAt: Date.now() }, gitops: { policy: 'suspend', owners: [KS] } } as unknown as RollbackRecord;
  const back = await driftedBack(ctx, rec, plan(writes), res, context(kube), false);
  return { back, rec };
}

t.test('drift-back: the Deployment is watched, also when configDrift: restore wrote a ConfigMap or Secret first', async (t) => {
  for (const writes of [[DEP], [CM, DEP], [SECRET, CM, DEP]]) {
    const what = writes.map((w) => w.resource.kind).join(', ');
    const kube = cluster();
    t.equal((await drift(kube, writes)).back, undefined, `${what}: untouched since our write, no drift`);
    fluxPutsBack(kube);
    const { back, rec } = await drift(kube, writes);
    t.equal(back, 're-applied by Flux Kustomization flux-system/apps: deployments shop/cart changed after the rollback (generation 8 -> 9, last written by kustomize-controller)', what);
    t.match(rec.timeline, [{ step: 'gitops_drift', message: /^re-applied by Flux Kustomization flux-system\/apps/ }]);
    t.notOk(kube.calls.some((c) => c.verb === 'get' && c.resource !== 'deployments'), `${what}: the restored configuration is not what is watched`);
  }
});

const HR: Owner = { ...KS, kind: 'HelmRelease', name: 'cart', via: 'labels helm.toolkit.fluxcd.io/name and /namespace', sync: 'reconciled every 5m, drift detection disabled', correctsDrift: false };
const helmPlan = (o: Partial<RollbackPlan> = {}): RollbackPlan => ({
  target: { kind: 'HelmRelease', namespace: 'shop', name: 'cart' }, kind: 'HelmRelease', summary: 'helm rollback cart 1 in shop', command: ['helm', 'rollback'], release: { namespace: 'shop', name: 'cart' }, plannedAt: 0, ...o,
});

t.test('drift-back of a Helm release: each of its workloads is watched (helm-controller upgrading it again under gitops: ignore)', async (t) => {
  const kube = cluster();
  kube.add(RESOURCES.deployments, { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'cart-worker', namespace: 'shop', generation: 3 }, spec: {} });
  const ctx = engineContext();
  const rec = { id: 'r-1', timeline: [], times: { executedAt: Date.now() }, gitops: { policy: 'ignore', owners: [HR] } } as unknown as RollbackRecord;
  const release = { namespace: 'shop', name: 'cart' };
  const p = helmPlan({ changes: ['cart', 'cart-worker'].map((name) => ({ resource: RESOURCES.deployments, namespace: 'shop', name, release })) });
  // what helm rollback left them at
  const helmRes: ExecuteResult = { applied: true, message: 'rolled back', at: Date.now(), attempts: 1, generations: { 'Deployment/shop/cart': 8, 'Deployment/shop/cart-worker': 3 } };
  t.equal(await driftedBack(ctx, rec, p, helmRes, context(kube), false), undefined, 'untouched since helm rollback left them');
  // the bad revision changed only the worker: helm-controller's upgrade back moves only its generation
  const w = kube.peek(RESOURCES.deployments, 'shop', 'cart-worker')!;
  kube.put(RESOURCES.deployments, { ...w, metadata: { ...w.metadata, generation: 4, managedFields: [{ manager: 'helm-controller', operation: 'Update', time: new Date().toISOString(), fieldsV1: { 'f:spec': {} } }] } as typeof w.metadata });
  t.equal(await driftedBack(ctx, rec, p, helmRes, context(kube), false), 're-applied by Flux HelmRelease flux-system/cart: deployments shop/cart-worker changed after the rollback (generation 3 -> 4, last written by helm-controller)');
  t.equal(await driftedBack(ctx, rec, p, { ...helmRes, generations: { 'Deployment/shop/cart': 8, 'Deployment/shop/cart-worker': 4 } }, context(kube), false), undefined, 'from the generations helm left: a change before them is not one after the rollback');
  t.equal(await driftedBack(ctx, rec, helmPlan(), res, context(kube), false), undefined, 'a release without workloads read: nothing to watch');
  // a workload the bad revision added: helm rollback deleted it
  const gone = helmPlan({ changes: [...p.changes!, { resource: RESOURCES.deployments, namespace: 'shop', name: 'cart-canary', release }] });
  t.equal(await driftedBack(ctx, rec, gone, { ...helmRes, generations: { 'Deployment/shop/cart': 8, 'Deployment/shop/cart-worker': 4 } }, context(kube), false), undefined, 'a workload helm deleted is not watched, and no error');
  t.equal(await driftedBack(ctx, rec, gone, helmRes, context(kube), false), 're-applied by Flux HelmRelease flux-system/cart: deployments shop/cart-worker changed after the rollback (generation 3 -> 4, last written by helm-controller)', 'the others still are');
});

t.test('drift-back: an autoscaler\'s write of spec.replicas (the scale subresource) is not a re-apply; the owner\'s after it is', async (t) => {
  const kube = cluster();
  const ctx = engineContext();
  const executedAt = Date.now();
  const rec = { id: 'r-1', timeline: [], times: { executedAt }, gitops: { policy: 'suspend', owners: [KS] } } as unknown as RollbackRecord;
  const at = (ms: number) => new Date(ms).toISOString();
  const d = kube.peek(RESOURCES.deployments, 'shop', 'cart')!;
  const ours = { manager: 'rollguard', operation: 'Update', time: at(executedAt), fieldsV1: { 'f:spec': {} } };
  const hpa = { manager: 'kube-controller-manager', operation: 'Update', subresource: 'scale', time: at(executedAt + 2000), fieldsV1: { 'f:spec': { 'f:replicas': {} } } };
  const old = { manager: 'kustomize-controller', operation: 'Apply', time: at(executedAt - 60_000), fieldsV1: { 'f:spec': {} } };
  kube.put(RESOURCES.deployments, { ...d, metadata: { ...d.metadata, generation: 9, managedFields: [old, ours, hpa] } as typeof d.metadata });
  t.equal(await driftedBack(ctx, rec, plan([DEP]), res, context(kube), false), undefined, 'scaled by the HPA after our write: not drift');
  const back = { ...old, time: at(executedAt + 3000) };
  kube.put(RESOURCES.deployments, { ...d, metadata: { ...d.metadata, generation: 10, managedFields: [back, ours, hpa] } as typeof d.metadata });
  t.equal(await driftedBack(ctx, rec, plan([DEP]), res, context(kube), false), 're-applied by Flux Kustomization flux-system/apps: deployments shop/cart changed after the rollback (generation 8 -> 10, last written by kustomize-controller)', 'kustomize-controller applying the template again after it: drift');
});

t.test('a Helm release whose owner could not be checked: refused unless the rule says gitops: ignore', async (t) => {
  const why = 'the workloads of Helm release shop/cart are not where its manifest puts them (Deployment/shop/cart): it may keep them in another namespace than its records, as a Flux HelmRelease with targetNamespace does, so its GitOps owner cannot be checked';
  for (const policy of ['suspend', 'refuse', 'ignore'] as const) {
    const ctx = engineContext();
    ctx.ruleFor = () => ({ gitops: policy }) as unknown as ReturnType<typeof ctx.ruleFor>;
    const rec = { id: 'r-1', target: 'HelmRelease/shop/cart', timeline: [], times: {} } as unknown as RollbackRecord;
    const out = await withGitOps(ctx, rec, helmPlan({ ownersUnchecked: why }), context(new FakeKube()));
    t.match(rec.timeline, [{ step: 'gitops', message: `GitOps owner not checked: ${why} (gitops: ${policy})` }], `${policy}: the timeline says so`);
    if (policy === 'ignore') {
      t.notOk(out.refusal, 'ignore: goes on');
      t.equal(out.summary, `helm rollback cart 1 in shop; GitOps owner not checked (gitops: ignore): ${why}`);
    } else {
      t.same(out.refusal, { code: 'gitops_owned', message: `${why}; not rolled back: set gitops: ignore on the rule if no GitOps tool reconciles HelmRelease/shop/cart` }, `${policy}: refused, naming the setting`);
    }
  }
});

const APP: Owner = { ...KS, tool: 'Argo CD', kind: 'Application', namespace: 'argocd', name: 'shop', via: 'annotation argocd.argoproj.io/tracking-id', sync: 'automated sync with self-heal', settleMs: 20_000 };

t.test('a recovery going on with a rollback (suspendBeforeWrite again on its record) keeps the first suspension: resume puts the owners back as they were', async (t) => {
  const kube = new FakeKube();
  kube.add(OWNER_RESOURCES.Kustomization, { apiVersion: 'kustomize.toolkit.fluxcd.io/v1', kind: 'Kustomization', metadata: { name: 'apps', namespace: 'flux-system' }, spec: { interval: '5m' } });
  kube.add(OWNER_RESOURCES.Application, { apiVersion: 'argoproj.io/v1alpha1', kind: 'Application', metadata: { name: 'shop', namespace: 'argocd' }, spec: { syncPolicy: { automated: { selfHeal: true } } } });
  const ctx = engineContext();
  const rec = { id: 'r-1', createdAt: Date.now(), timeline: [], times: {}, gitops: { policy: 'suspend', owners: [KS, APP] } } as unknown as RollbackRecord;
  await suspendBeforeWrite(ctx, rec, context(kube)); // replica A, which then dies mid-way through its writes
  const first = structuredClone(rec.gitops!.suspended);
  t.same(first!.map((s) => [s.kind, s.before]), [['Kustomization', undefined], ['Application', undefined]], 'both fields were unset before');
  const patches = kube.patches().length;
  await suspendBeforeWrite(ctx, rec, context(kube)); // replica B's recovery: execute(..., resumed = true)
  t.same(rec.gitops!.suspended, first, 'the record still holds what was there before rollguard, not its own paused values');
  t.equal(kube.patches().length, patches, 'the owners are not written again');
  await refreshSuspendedGauge(ctx);
  t.equal((await ctx.metrics.gitopsSuspended.get()).values[0]?.value, 2, 'each owner counted once in rollguard_gitops_suspended');
  await resumeOwners(kube, rec.gitops!.suspended!);
  t.equal(kube.peek(OWNER_RESOURCES.Kustomization, 'flux-system', 'apps')!.spec.suspend, undefined, 'the Kustomization no longer suspended');
  t.same(kube.peek(OWNER_RESOURCES.Application, 'argocd', 'shop')!.spec.syncPolicy.automated, { selfHeal: true }, 'automated sync on again, as it was');
});

t.test('an owner paused by hand between the plan and the suspension: the record says it was found paused, and holds no suspension of it', async (t) => {
  const kube = new FakeKube();
  kube.add(OWNER_RESOURCES.Application, { apiVersion: 'argoproj.io/v1alpha1', kind: 'Application', metadata: { name: 'shop', namespace: 'argocd' }, spec: { syncPolicy: { syncOptions: ['CreateNamespace=true'] } } });
  const ctx = engineContext();
  // planned with automated sync on; a human removed automated since (during the migration Job, say)
  const rec = { id: 'r-1', createdAt: Date.now(), timeline: [], times: {}, gitops: { policy: 'suspend', owners: [APP] } } as unknown as RollbackRecord;
  await suspendBeforeWrite(ctx, rec, context(kube));
  t.same(kube.peek(OWNER_RESOURCES.Application, 'argocd', 'shop')!.spec.syncPolicy, { syncOptions: ['CreateNamespace=true'] }, 'no automated: {} (automated sync ON) created');
  t.notOk(rec.gitops!.suspended?.length, 'no suspension recorded: resume-gitops has nothing to put back');
  t.match(rec.gitops!.owners[0], { paused: true, sync: 'manual sync (no automated sync)' });
  t.match(rec.timeline, [{ step: 'gitops', message: 'found Argo CD Application argocd/shop already paused when suspending it (manual sync (no automated sync)): left alone, and not resumed by rollguard' }]);
});

t.test('an owner paused at plan time and resumed before the write (another rollback\'s resume-gitops): suspended now, and the record holds it', async (t) => {
  const kube = new FakeKube();
  kube.add(OWNER_RESOURCES.Kustomization, { apiVersion: 'kustomize.toolkit.fluxcd.io/v1', kind: 'Kustomization', metadata: { name: 'apps', namespace: 'flux-system' }, spec: { interval: '5m' } });
  const ctx = engineContext();
  const rec = { id: 'r-2', createdAt: Date.now(), timeline: [], times: {}, gitops: { policy: 'suspend', owners: [{ ...KS, paused: true, sync: 'suspended' }] } } as unknown as RollbackRecord;
  await suspendBeforeWrite(ctx, rec, context(kube));
  t.equal(kube.peek(OWNER_RESOURCES.Kustomization, 'flux-system', 'apps')!.spec.suspend, true, 'suspended before the write');
  t.match(rec.gitops!.suspended, [{ kind: 'Kustomization', name: 'apps', field: '/spec/suspend', set: true }], 'the record holds the suspension: resume-gitops puts it back');
  t.ok(rec.timeline.some((e) => e.step === 'gitops_suspended'));

  // still paused at the write, as at plan time: nothing written, nothing new said
  const still = new FakeKube();
  still.add(OWNER_RESOURCES.Kustomization, { apiVersion: 'kustomize.toolkit.fluxcd.io/v1', kind: 'Kustomization', metadata: { name: 'apps', namespace: 'flux-system' }, spec: { interval: '5m', suspend: true } });
  const rec2 = { id: 'r-3', createdAt: Date.now(), timeline: [], times: {}, gitops: { policy: 'suspend', owners: [{ ...KS, paused: true, sync: 'suspended' }] } } as unknown as RollbackRecord;
  await suspendBeforeWrite(ctx, rec2, context(still));
  t.same(still.patches(), [], 'not written');
  t.notOk(rec2.gitops!.suspended?.length, 'no suspension of its own');
  t.same(rec2.timeline, [], 'nothing new in the timeline');
});

t.test('an owner paused at plan time that rollguard may not suspend (GITOPS_OWNER_ALLOW): resumed since, the write is refused; still paused, nothing written', async (t) => {
  const ks = (suspend?: boolean) => {
    const kube = new FakeKube();
    kube.add(OWNER_RESOURCES.Kustomization, { apiVersion: 'kustomize.toolkit.fluxcd.io/v1', kind: 'Kustomization', metadata: { name: 'apps', namespace: 'flux-system' }, spec: { interval: '5m', ...(suspend ? { suspend } : {}) } });
    return kube;
  };
  const ctx = bareEngineContext({ GITOPS_OWNER_ALLOW: 'Kustomization/flux-system/other' });
  const rec = (id: string) => ({ id, createdAt: Date.now(), timeline: [], times: {}, gitops: { policy: 'suspend', owners: [{ ...KS, paused: true, sync: 'suspended' }] } }) as unknown as RollbackRecord;
  const resumed = ks();
  await t.rejects(suspendBeforeWrite(ctx, rec('r-4'), context(resumed)), /Flux Kustomization flux-system\/apps was paused when the rollback was planned and has been resumed since, and rollguard may not suspend it \(owner Kustomization\/flux-system\/apps is not in GITOPS_OWNER_ALLOW/);
  t.same(resumed.patches(), [], 'not suspended: outside what rollguard may suspend');
  const paused = ks(true);
  const still = rec('r-5');
  await suspendBeforeWrite(ctx, still, context(paused));
  t.same(paused.patches(), [], 'still paused: nothing written');
  t.notOk(still.gitops!.suspended?.length);
});

t.test('withGitOps: a tracking annotation naming an Application that does not exist does not hide the Flux Kustomization that applies the Deployment', async (t) => {
  const kube = new FakeKube();
  kube.add(RESOURCES.deployments, { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'cart', namespace: 'shop',
    labels: { 'kustomize.toolkit.fluxcd.io/name': 'apps', 'kustomize.toolkit.fluxcd.io/namespace': 'flux-system' },
    annotations: { 'argocd.argoproj.io/tracking-id': 'cart:apps/Deployment:shop/cart' } }, spec: {} });
  kube.add(OWNER_RESOURCES.Kustomization, { apiVersion: 'kustomize.toolkit.fluxcd.io/v1', kind: 'Kustomization', metadata: { name: 'apps', namespace: 'flux-system' },
    spec: { interval: '5m' }, status: { inventory: { entries: [{ id: 'shop_cart_apps_Deployment', v: 'v1' }] } } });
  const rec = { id: 'r-1', target: 'Deployment/shop/cart', timeline: [], times: {} } as unknown as RollbackRecord;
  const out = await withGitOps(engineContext(), rec, plan([DEP]), context(kube));
  t.notOk(out.refusal);
  t.equal(out.summary, 'undo; reconciled by Argo CD Application argocd/cart (named by its annotation argocd.argoproj.io/tracking-id, but not found); ' +
    'Flux Kustomization flux-system/apps, reconciled every 5m, drift corrected on each run: first suspends Flux Kustomization flux-system/apps (gitops: suspend)');
});
