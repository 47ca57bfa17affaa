// A rollback planned more than once (asked for approval and then approved, sent back by the lock
// guard and re-checked, retried after an API server error) finds its GitOps owners again at each
// plan. What an earlier plan found is not kept when the later one finds none: it would suspend an
// owner that no longer reconciles anything the rollback writes, and resume-gitops would then hold
// other rollbacks back on it.
import t from 'tap';
import type { ActionContext, RollbackPlan, TargetRef } from '../../../src/actions/action.js';
import { OWNER_RESOURCES } from '../../../src/gitops/types.js';
import { RESOURCES } from '../../../src/kube/kube.js';
import { FakeDeploymentAction, firing, recoversOnWrite, testEngine } from '../../support/engine.js';
import { FakeKube } from '../../support/fake-kube.js';

/** The Deployment double, its plan writing the Deployment (so that its GitOps owners are looked for). */
class WritingDeploymentAction extends FakeDeploymentAction {
  override async plan(ref: TargetRef, ctx?: ActionContext): Promise<RollbackPlan> {
    const plan = await super.plan(ref);
    const before = ctx?.kube ? await ctx.kube.get(RESOURCES.deployments, ref.namespace, ref.name) : undefined;
    return { ...plan, writes: [{ resource: RESOURCES.deployments, namespace: ref.namespace, name: ref.name, patchType: 'merge', patch: {}, description: 'undo to revision 1', ...(before ? { before } : {}) }] };
  }
}

const FLUX_LABELS = { 'kustomize.toolkit.fluxcd.io/name': 'apps', 'kustomize.toolkit.fluxcd.io/namespace': 'flux-system' };

function cluster() {
  const kube = new FakeKube();
  kube.add(RESOURCES.deployments, { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'checkout', namespace: 'prod', labels: { ...FLUX_LABELS } }, spec: {} });
  kube.add(OWNER_RESOURCES.Kustomization, {
    apiVersion: 'kustomize.toolkit.fluxcd.io/v1', kind: 'Kustomization', metadata: { name: 'apps', namespace: 'flux-system' },
    spec: { interval: '5m' }, status: { inventory: { entries: [{ id: 'prod_checkout_apps_Deployment', v: 'v1' }] } },
  });
  return kube;
}

/** The Deployment taken out of the Kustomization (its labels removed, no longer in its inventory), as a team moving it to another tool does. */
function takenOutOfFlux(kube: FakeKube) {
  const d = kube.peek(RESOURCES.deployments, 'prod', 'checkout')!;
  kube.put(RESOURCES.deployments, { ...d, metadata: { ...d.metadata, labels: {} } });
  const ks = kube.peek(OWNER_RESOURCES.Kustomization, 'flux-system', 'apps')!;
  kube.put(OWNER_RESOURCES.Kustomization, { ...ks, status: { inventory: { entries: [] } } });
}

/** A HighLatency alert (its rule asks for approval) for a Deployment a Flux Kustomization reconciles: its record, asked for approval. */
async function askedForApproval() {
  const kube = cluster();
  const action = new WritingDeploymentAction();
  const e = testEngine({ kube, action, env: { GITOPS_OWNER_ALLOW: 'Kustomization/flux-system/*', VERIFY_TIMEOUT: '200ms' } });
  recoversOnWrite(e);
  await e.deliver(firing('HighLatency'));
  const [rec] = await e.engine.records.list({});
  return { kube, action, e, rec };
}

t.test('an approved rollback whose target no GitOps owner reconciles any more does not suspend the owner its first plan found', async (t) => {
  const { kube, action, e, rec } = await askedForApproval();
  t.equal(rec!.state, 'pending_approval', rec!.outcome?.message ?? '');
  t.same(rec!.gitops?.owners.map((o) => o.name), ['apps'], 'the first plan found the Kustomization');
  takenOutOfFlux(kube);
  const res = await e.engine.approve(rec!.id, 'oncall');
  t.equal(res.kind, 'ok');
  await e.engine.idle();
  const after = (await e.engine.records.get(rec!.id))!;
  t.equal(after.state, 'succeeded', after.outcome?.message ?? '');
  t.equal(action.executed.length, 1, 'rolled back');
  t.same(kube.patches().filter((c) => c.resource === 'kustomizations'), [], 'the Kustomization that no longer reconciles it is not suspended');
  t.equal(kube.peek(OWNER_RESOURCES.Kustomization, 'flux-system', 'apps')!.spec.suspend, undefined);
  t.same(after.gitops?.suspended ?? [], [], 'the record holds no suspension');
  t.notOk(after.gitops?.owners.some((o) => o.name === 'apps'), 'nor names it as the owner');
  t.equal(await e.store.heldCount(), 0, 'no owner counted as suspended');
  t.ok(after.timeline.some((s) => s.step === 'gitops' && s.message === 'no GitOps owner found now; the plan before found Flux Kustomization flux-system/apps'), 'the timeline says the owner is gone');
});

t.test('an approved rollback still reconciled by its owner suspends it, as before', async (t) => {
  const { kube, action, e, rec } = await askedForApproval();
  t.equal(rec!.state, 'pending_approval');
  await e.engine.approve(rec!.id, 'oncall');
  await e.engine.idle();
  const after = (await e.engine.records.get(rec!.id))!;
  t.equal(after.state, 'succeeded', after.outcome?.message ?? '');
  t.equal(kube.peek(OWNER_RESOURCES.Kustomization, 'flux-system', 'apps')!.spec.suspend, true, 'suspended');
  t.same(after.gitops?.suspended?.map((s) => s.name), ['apps']);
});
