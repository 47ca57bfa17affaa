// The object a rollback planned against, replaced or redeployed before the write: deleted and
// created again under its name (another uid, maybe the same generation), or given a new pod
// template whose revision its controller has not numbered yet. Neither may be rolled back blindly.
import t from 'tap';
import { deploymentAction } from '../../../src/actions/deployment.js';
import { statefulSetAction } from '../../../src/actions/statefulset.js';
import { argoRolloutAction } from '../../../src/actions/argo-rollout.js';
import { virtualServiceAction } from '../../../src/actions/istio.js';
import { blueGreenAction } from '../../../src/actions/blue-green.js';
import { RESOURCES, type KubeObject } from '../../../src/kube/kube.js';
import { FakeKube } from '../../support/fake-kube.js';
import { NS, context, deployment, podTemplate, replicaSet, standardCluster } from './fixtures/objects.js';

/** Deletes an object and creates one under the same name with another uid (the rest as given). */
function recreate(kube: FakeKube, rt: (typeof RESOURCES)[keyof typeof RESOURCES], obj: KubeObject): void {
  kube.objects.delete(`${rt.plural}.${rt.group}/${NS}/${obj.metadata.name}`);
  const { uid: _uid, resourceVersion: _rv, ...metadata } = obj.metadata;
  kube.add(rt, { ...obj, metadata });
}

const image = (o: KubeObject | undefined) => o?.spec?.template?.spec?.containers?.[0]?.image as string | undefined;

t.test('Deployment: one deleted and created again with the same generation is not written', async (t) => {
  const kube = standardCluster();
  const ctx = context(kube);
  const ref = { kind: 'Deployment' as const, namespace: NS, name: 'web' };
  const plan = await deploymentAction.plan(ref, ctx);
  t.notOk(plan.refusal);
  // someone else's Deployment "web" now: generation 2 too, its own revision 2
  const other = deployment('web:other', 2);
  other.metadata.annotations!.team = 'search';
  recreate(kube, RESOURCES.deployments, other);
  const uid = kube.peek(RESOURCES.deployments, NS, 'web')!.metadata.uid!;
  kube.add(RESOURCES.replicasets, replicaSet('web-cc01', 'web:other-1', 1, { ownerUid: uid }));
  kube.add(RESOURCES.replicasets, replicaSet('web-dd02', 'web:other', 2, { ownerUid: uid }));
  const res = await deploymentAction.execute(plan, ctx);
  t.equal(res.applied, false, 'not applied');
  t.equal(res.refusal?.code, 'changed_since_plan');
  t.match(res.message, /deleted and created again/);
  t.equal(image(kube.peek(RESOURCES.deployments, NS, 'web')), 'web:other', 'the new Deployment is left alone');
});

t.test('Deployment: a deploy its controller has not numbered yet is not rolled back', async (t) => {
  const kube = standardCluster();
  const ctx = context(kube);
  const ref = { kind: 'Deployment' as const, namespace: NS, name: 'web' };
  const plan = await deploymentAction.plan(ref, ctx);
  // a person deploys v3 (the fix); the write lands before the controller writes revision 3
  await kube.patch(RESOURCES.deployments, NS, 'web', { spec: { template: podTemplate('web:v3') } }, 'merge');
  t.equal(kube.peek(RESOURCES.deployments, NS, 'web')!.metadata.annotations!['deployment.kubernetes.io/revision'], '2');
  const res = await deploymentAction.execute(plan, ctx);
  t.equal(res.applied, false, 'not applied');
  t.equal(res.refusal?.code, 'changed_since_plan');
  t.match(res.message, /pod template changed after the rollback was planned/);
  t.equal(image(kube.peek(RESOURCES.deployments, NS, 'web')), 'web:v3', 'the new deploy is kept');

  // a scale since still goes through (the template is the one planned against)
  const k2 = standardCluster();
  const c2 = context(k2);
  const p2 = await deploymentAction.plan(ref, c2);
  await k2.patch(RESOURCES.deployments, NS, 'web', { spec: { replicas: 5 } }, 'merge');
  const r2 = await deploymentAction.execute(p2, c2);
  t.equal(r2.applied, true, r2.message);
  t.equal(image(k2.peek(RESOURCES.deployments, NS, 'web')), 'web:v1');
});

const SS_UID = '22222222-2222-2222-2222-222222222222';
const dbTpl = (img: string) => ({ metadata: { labels: { app: 'db' } }, spec: { containers: [{ name: 'db', image: img }] } });
const cr = (name: string, revision: number, img: string, owner: string): KubeObject =>
  ({
    apiVersion: 'apps/v1',
    kind: 'ControllerRevision',
    metadata: { name, namespace: NS, labels: { app: 'db' }, ownerReferences: [{ apiVersion: 'apps/v1', kind: 'StatefulSet', name: 'db', uid: owner, controller: true }] },
    revision,
    data: { spec: { template: { ...dbTpl(img), $patch: 'replace' } } },
  }) as KubeObject;
const statefulSet = (uid: string, img: string): KubeObject => ({
  apiVersion: 'apps/v1',
  kind: 'StatefulSet',
  metadata: { name: 'db', namespace: NS, uid, generation: 2 },
  spec: { replicas: 3, selector: { matchLabels: { app: 'db' } }, template: dbTpl(img) },
});

t.test('StatefulSet: the re-plan after a conflict does not go on with another object or an unnumbered deploy', async (t) => {
  const ref = { kind: 'StatefulSet' as const, namespace: NS, name: 'db' };
  const build = () => {
    const kube = new FakeKube();
    kube.add(RESOURCES.statefulsets, statefulSet(SS_UID, 'db:v2'));
    kube.add(RESOURCES.controllerrevisions, cr('db-a', 1, 'db:v1', SS_UID));
    kube.add(RESOURCES.controllerrevisions, cr('db-b', 2, 'db:v2', SS_UID));
    return kube;
  };

  // deleted and created again, with a history of its own numbered alike
  const kube = build();
  const ctx = context(kube);
  const plan = await statefulSetAction.plan(ref, ctx);
  t.notOk(plan.refusal);
  const NEW = '33333333-3333-3333-3333-333333333333';
  recreate(kube, RESOURCES.statefulsets, { ...statefulSet(NEW, 'other:v2'), metadata: { name: 'db', namespace: NS, uid: NEW, generation: 2 } });
  kube.objects.delete(`controllerrevisions.apps/${NS}/db-a`);
  kube.objects.delete(`controllerrevisions.apps/${NS}/db-b`);
  kube.add(RESOURCES.controllerrevisions, cr('db-c', 1, 'other:v1', kube.peek(RESOURCES.statefulsets, NS, 'db')!.metadata.uid!));
  kube.add(RESOURCES.controllerrevisions, cr('db-d', 2, 'other:v2', kube.peek(RESOURCES.statefulsets, NS, 'db')!.metadata.uid!));
  const res = await statefulSetAction.execute(plan, ctx);
  t.equal(res.applied, false, 'not applied');
  t.equal(res.refusal?.code, 'changed_since_plan');
  t.match(res.message, /deleted and created again/);
  t.equal(image(kube.peek(RESOURCES.statefulsets, NS, 'db')), 'other:v2', 'the new StatefulSet is left alone');

  // a deploy whose ControllerRevision the controller has not made yet
  const k2 = build();
  const c2 = context(k2);
  const p2 = await statefulSetAction.plan(ref, c2);
  await k2.patch(RESOURCES.statefulsets, NS, 'db', { spec: { template: dbTpl('db:v3') } }, 'merge');
  const r2 = await statefulSetAction.execute(p2, c2);
  t.equal(r2.applied, false, 'not applied');
  t.equal(r2.refusal?.code, 'changed_since_plan');
  t.equal(image(k2.peek(RESOURCES.statefulsets, NS, 'db')), 'db:v3', 'the new deploy is kept');

  // a status update since: the same object and template, written on the second attempt
  const k3 = build();
  const c3 = context(k3);
  const p3 = await statefulSetAction.plan(ref, c3);
  await k3.patch(RESOURCES.statefulsets, NS, 'db', { status: { readyReplicas: 2 } }, 'merge', { subresource: 'status' });
  const r3 = await statefulSetAction.execute(p3, c3);
  t.equal(r3.applied, true, r3.message);
  t.equal(r3.attempts, 2);
  t.equal(image(k3.peek(RESOURCES.statefulsets, NS, 'db')), 'db:v1');
});

function rollout(kube: FakeKube, img: string, uid?: string): void {
  kube.add(RESOURCES.rollouts, {
    apiVersion: 'argoproj.io/v1alpha1',
    kind: 'Rollout',
    metadata: { name: 'guestbook', namespace: NS, generation: 2, annotations: { 'rollout.argoproj.io/revision': '2' }, ...(uid ? { uid } : {}) },
    spec: { replicas: 2, selector: { matchLabels: { app: 'guestbook' } }, template: { metadata: { labels: { app: 'guestbook' } }, spec: { containers: [{ name: 'app', image: img }] } } },
    status: { stableRS: 'aaa', currentPodHash: 'bbb', phase: 'Paused' },
  });
}

t.test('Argo Rollout abort: not sent to a Rollout redeployed or created again since the plan', async (t) => {
  const ref = { kind: 'Rollout' as const, namespace: NS, name: 'guestbook' };
  // a deploy of v3 since (the generation moves; the controller has not numbered it yet)
  const kube = new FakeKube();
  rollout(kube, 'gb:v2');
  const ctx = context(kube);
  const plan = await argoRolloutAction.plan(ref, ctx);
  t.notOk(plan.refusal);
  await kube.patch(RESOURCES.rollouts, NS, 'guestbook', { spec: { template: { spec: { containers: [{ name: 'app', image: 'gb:v3' }] } } } }, 'merge');
  const res = await argoRolloutAction.execute(plan, ctx);
  t.equal(res.applied, false, 'not applied');
  t.equal(res.refusal?.code, 'changed_since_plan');
  t.notOk(kube.peek(RESOURCES.rollouts, NS, 'guestbook')!.status.abort, 'the new deploy is not aborted');

  // deleted and created again, generation 2 as well
  const k2 = new FakeKube();
  rollout(k2, 'gb:v2');
  const c2 = context(k2);
  const p2 = await argoRolloutAction.plan(ref, c2);
  k2.objects.delete(`rollouts.argoproj.io/${NS}/guestbook`);
  rollout(k2, 'gb:other');
  const r2 = await argoRolloutAction.execute(p2, c2);
  t.equal(r2.applied, false, 'not applied');
  t.equal(r2.refusal?.code, 'changed_since_plan');
  t.notOk(k2.peek(RESOURCES.rollouts, NS, 'guestbook')!.status.abort, 'the new Rollout is not aborted');

  // a status update since does not stop it
  const k3 = new FakeKube();
  rollout(k3, 'gb:v2');
  const c3 = context(k3);
  const p3 = await argoRolloutAction.plan(ref, c3);
  await k3.patch(RESOURCES.rollouts, NS, 'guestbook', { status: { phase: 'Progressing' } }, 'merge', { subresource: 'status' });
  const r3 = await argoRolloutAction.execute(p3, c3);
  t.equal(r3.applied, true, r3.message);
  t.equal(k3.peek(RESOURCES.rollouts, NS, 'guestbook')!.status.abort, true);
});

t.test('Istio: a VirtualService created again under its name (same generation) is not shifted', async (t) => {
  const VS = RESOURCES.virtualservices;
  const vs = (): KubeObject => ({
    apiVersion: 'networking.istio.io/v1',
    kind: 'VirtualService',
    metadata: { name: 'backend-api', namespace: NS, generation: 3 },
    spec: { hosts: ['backend-api'], http: [{ name: 'primary', route: [{ destination: { host: 'backend-api', subset: 'blue' }, weight: 20 }, { destination: { host: 'backend-api', subset: 'green' }, weight: 80 }] }] },
  });
  const kube = new FakeKube();
  kube.add(VS, vs());
  const ctx = context(kube);
  const ref = { kind: 'VirtualService' as const, namespace: NS, name: 'backend-api', options: { stableSubset: 'blue', canarySubset: 'green' } };
  const plan = await virtualServiceAction.plan(ref, ctx);
  t.notOk(plan.refusal);
  recreate(kube, VS, vs());
  const res = await virtualServiceAction.execute(plan, ctx);
  t.equal(res.applied, false, 'not applied');
  t.equal(res.refusal?.code, 'changed_since_plan');
  t.same(
    (kube.peek(VS, NS, 'backend-api')!.spec.http[0].route as { weight: number }[]).map((d) => d.weight),
    [20, 80],
    'the new VirtualService keeps its weights',
  );
});

t.test('BlueGreen: a Service created again under its name is not switched by the re-plan', async (t) => {
  const dep = (colour: string): KubeObject => ({
    metadata: { name: `hotswap-api-${colour}`, namespace: NS, generation: 1, uid: `uid-${colour}` },
    spec: { replicas: 3, selector: { matchLabels: { app: 'hotswap-api', version: colour } }, template: { metadata: { labels: { app: 'hotswap-api', version: colour } }, spec: { containers: [{ name: 'c', image: colour }] } } },
    status: { observedGeneration: 1, replicas: 3, updatedReplicas: 3, availableReplicas: 3 },
  });
  const svc = (): KubeObject => ({ metadata: { name: 'hotswap-api', namespace: NS }, spec: { selector: { app: 'hotswap-api', version: 'green' } } });
  const kube = new FakeKube();
  kube.add(RESOURCES.deployments, dep('blue'));
  kube.add(RESOURCES.deployments, dep('green'));
  kube.add(RESOURCES.services, svc());
  const ctx = context(kube);
  const ref = { kind: 'BlueGreen' as const, namespace: NS, name: 'hotswap-api', options: { to: 'blue' } };
  const plan = await blueGreenAction.plan(ref, ctx);
  t.notOk(plan.refusal, plan.summary);
  recreate(kube, RESOURCES.services, svc());
  const res = await blueGreenAction.execute(plan, ctx);
  t.equal(res.applied, false, 'not applied');
  t.equal(res.refusal?.code, 'changed_since_plan');
  t.equal(kube.peek(RESOURCES.services, NS, 'hotswap-api')!.spec.selector.version, 'green', 'the new Service is left alone');
});
