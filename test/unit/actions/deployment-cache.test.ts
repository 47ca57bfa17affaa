// Deployment undo's history read from the API server's watch cache (LIST resourceVersion=0), used
// only when it provably gives kubectl's pick (src/kube/revision.ts), else the consistent LIST.
// FakeKube.snapshotCache() freezes the "watch cache"; changes made after it make the cache stale.
// Each stale case is one the cache path alone would get wrong: its test fails without its check.
import t, { type Test } from 'tap';
import { canaryAction } from '../../../src/actions/canary.js';
import { deploymentAction } from '../../../src/actions/deployment.js';
import { RESOURCES, type KubeObject } from '../../../src/kube/client.js';
import { KubeApiError } from '../../../src/kube/errors.js';
import { FakeKube, type FakeCall } from '../../support/fake-kube.js';
import { DEP_UID, NS, context, deployment, podTemplate, replicaSet } from './fixtures/objects.js';

const ref = { kind: 'Deployment' as const, namespace: NS, name: 'web' };
const REV = 'deployment.kubernetes.io/revision';

/** web at `image`/`revision` (observed), with these ReplicaSets [name, image, revision], created a day apart in order. */
function cluster(image: string, revision: number, rss: [string, string, number][]): FakeKube {
  const kube = new FakeKube();
  kube.add(RESOURCES.deployments, deployment(image, revision));
  rss.forEach(([name, img, rev], i) => kube.add(RESOURCES.replicasets, replicaSet(name, img, rev, { createdAt: `2026-11-2${i}T10:00:00Z` })));
  // a ReplicaSet another Deployment controls, under the same labels: never part of the history
  kube.add(RESOURCES.replicasets, replicaSet('web-foreign', 'web:vx', 9, { ownerUid: '99999999-0000-0000-0000-000000000000' }));
  return kube;
}

/** v1 (1), v2 (2), v3 (3, current). */
const three = () => cluster('web:v3', 3, [['web-aa01', 'web:v1', 1], ['web-bb02', 'web:v2', 2], ['web-cc03', 'web:v3', 3]]);

const rsLists = (kube: FakeKube) => kube.calls.filter((c) => c.verb === 'list' && c.resource === 'replicasets');
const rsGets = (kube: FakeKube) => kube.calls.filter((c) => c.verb === 'get' && c.resource === 'replicasets').map((c) => c.name);
const cached = (c: FakeCall | undefined) => c?.resourceVersion === '0';

/** The cache was used: its one LIST, no consistent LIST. */
function usedCache(t: Test, kube: FakeKube) {
  t.same(rsLists(kube).map(cached), [true], 'one LIST, resourceVersion=0 (the watch cache), and no consistent LIST');
}
/** The cache was read, then the consistent LIST. */
function fellBack(t: Test, kube: FakeKube) {
  t.same(rsLists(kube).map(cached), [true, false], 'the watch cache’s LIST, then the consistent LIST');
}

function setRS(kube: FakeKube, name: string, f: (rs: KubeObject) => void) {
  const rs = kube.peek(RESOURCES.replicasets, NS, name)!;
  f(rs);
  kube.put(RESOURCES.replicasets, rs);
}
function setDep(kube: FakeKube, f: (d: KubeObject) => void) {
  const d = kube.peek(RESOURCES.deployments, NS, 'web')!;
  f(d);
  kube.put(RESOURCES.deployments, d);
}
const image = (plan: { writes?: { patch: unknown }[] }) => ((plan.writes?.[0]?.patch as { value: { spec: { containers: { image: string }[] } } }[])[1]!.value.spec.containers[0]!.image);

t.test('steady state: the cached list is used; the picked and the current ReplicaSet are confirmed by one GET each', async (t) => {
  const kube = three();
  kube.snapshotCache();
  // an annotation edited since the snapshot: the rollback copies the confirmed (fresh) one, as kubectl
  setRS(kube, 'web-bb02', (rs) => (rs.metadata.annotations!.team = 'checkout'));
  const plan = await deploymentAction.plan(ref, context(kube));
  t.notOk(plan.refusal);
  t.equal(plan.fromRevision, 3);
  t.equal(plan.toRevision, 2);
  t.equal(image(plan), 'web:v2');
  usedCache(t, kube);
  t.same(rsGets(kube).sort(), ['web-bb02', 'web-cc03'], 'one consistent GET of the picked ReplicaSet, one of the current one, nothing else');
  t.equal(rsLists(kube)[0]!.labelSelector, 'app=web');
  const ann = (plan.writes![0]!.patch as { value: Record<string, string> }[])[2]!.value;
  t.equal(ann.team, 'checkout', 'annotations from the confirming GET');

  const to1 = three();
  const explicit = await deploymentAction.plan({ ...ref, toRevision: 1 }, context(to1));
  t.equal(explicit.toRevision, 1);
  t.equal(image(explicit), 'web:v1');
  usedCache(t, to1);
  t.same(rsGets(to1).sort(), ['web-aa01', 'web-cc03']);

  const same = three();
  const current = await deploymentAction.plan({ ...ref, toRevision: 3 }, context(same));
  t.equal(current.refusal?.code, 'already_matches');
  usedCache(t, same);
  t.same(rsGets(same), ['web-cc03'], 'the picked one is the current one: one GET');
});

t.test('stale: the new ReplicaSet is missing from the cache (a rollout it has not seen)', async (t) => {
  const kube = cluster('web:v2', 2, [['web-aa01', 'web:v1', 1], ['web-bb02', 'web:v2', 2]]);
  kube.snapshotCache();
  // v3 is rolled out: its ReplicaSet and the Deployment's revision 3, observed
  kube.add(RESOURCES.replicasets, replicaSet('web-cc03', 'web:v3', 3, { createdAt: '2026-11-25T10:00:00Z' }));
  setDep(kube, (d) => {
    d.spec.template = podTemplate('web:v3');
    d.metadata.annotations![REV] = '3';
    d.metadata.generation = 3;
    d.status.observedGeneration = 3;
  });
  const plan = await deploymentAction.plan(ref, context(kube));
  fellBack(t, kube);
  t.equal(plan.toRevision, 2, 'kubectl’s pick: revision 2 (the cache alone would say 1)');
  t.equal(image(plan), 'web:v2');
});

t.test('stale: the cached new ReplicaSet is below the Deployment’s revision', async (t) => {
  const kube = cluster('web:v2', 2, [['web-aa01', 'web:v1', 1], ['web-bb02', 'web:v2', 2]]);
  kube.snapshotCache();
  // since the snapshot: v3 rolled out as revision 3 and the Deployment says 3, but its template is
  // back at v2, whose ReplicaSet the controller has not renumbered (yet)
  kube.add(RESOURCES.replicasets, replicaSet('web-cc03', 'web:v3', 3, { createdAt: '2026-11-25T10:00:00Z' }));
  setDep(kube, (d) => (d.metadata.annotations![REV] = '3'));
  const plan = await deploymentAction.plan(ref, context(kube));
  fellBack(t, kube);
  t.equal(plan.refusal?.code, 'already_matches', 'kubectl: revision 2 is second-highest and already current (the cache alone would roll back to 1)');
});

t.test('stale: an owned ReplicaSet in the cache is numbered above the new one', async (t) => {
  const kube = cluster('web:v2', 2, [['web-aa01', 'web:v1', 1], ['web-bb02', 'web:v2', 2], ['web-cc05', 'web:v5', 5]]);
  kube.snapshotCache();
  await kube.delete(RESOURCES.replicasets, NS, 'web-cc05');
  kube.calls.length = 0;
  const plan = await deploymentAction.plan(ref, context(kube));
  fellBack(t, kube);
  t.equal(plan.toRevision, 1, 'kubectl, without the deleted revision 5: back to 1 (the cache alone would say already matches)');
  t.equal(image(plan), 'web:v1');
});

t.test('stale: the picked ReplicaSet deleted (history cleanup) or changed at the confirming GET', async (t) => {
  const gone = three();
  gone.snapshotCache();
  await gone.delete(RESOURCES.replicasets, NS, 'web-bb02');
  gone.calls.length = 0;
  const p1 = await deploymentAction.plan(ref, context(gone));
  fellBack(t, gone);
  t.equal(p1.toRevision, 1, 'revision 2 gone: kubectl picks 1');
  t.equal(image(p1), 'web:v1');

  const edited = three();
  edited.snapshotCache();
  setRS(edited, 'web-bb02', (rs) => (rs.spec.template.spec.containers[0].image = 'web:v2-patched'));
  const p2 = await deploymentAction.plan(ref, context(edited));
  fellBack(t, edited);
  t.equal(image(p2), 'web:v2-patched', 'the template as it is now, as kubectl');

  const renumbered = three();
  renumbered.snapshotCache();
  setRS(renumbered, 'web-bb02', (rs) => (rs.metadata.annotations![REV] = '0'));
  const p3 = await deploymentAction.plan(ref, context(renumbered));
  fellBack(t, renumbered);
  t.equal(p3.toRevision, 1, 'revision 2 is now 0: kubectl picks 1');

  const released = three();
  released.snapshotCache();
  setRS(released, 'web-bb02', (rs) => (rs.metadata.ownerReferences = [{ ...rs.metadata.ownerReferences![0]!, uid: 'someone-else' }]));
  const p4 = await deploymentAction.plan(ref, context(released));
  fellBack(t, released);
  t.equal(p4.toRevision, 1, 'revision 2 controlled by another owner now: kubectl picks 1');

  const relabelled = three();
  relabelled.snapshotCache();
  setRS(relabelled, 'web-bb02', (rs) => (rs.metadata.labels!.app = 'other'));
  const p5 = await deploymentAction.plan(ref, context(relabelled));
  fellBack(t, relabelled);
  t.equal(p5.toRevision, 1, 'revision 2 no longer selected: kubectl picks 1');

  const recreated = three();
  recreated.snapshotCache();
  const old = recreated.peek(RESOURCES.replicasets, NS, 'web-bb02')!;
  await recreated.delete(RESOURCES.replicasets, NS, 'web-bb02');
  recreated.add(RESOURCES.replicasets, { ...old, metadata: { ...old.metadata, uid: 'another-object' } });
  recreated.calls.length = 0;
  await deploymentAction.plan(ref, context(recreated));
  fellBack(t, recreated);
});

t.test('stale: the current ReplicaSet renumbered since the snapshot (a deploy and its revert the cache has not seen)', async (t) => {
  const kube = three();
  kube.snapshotCache();
  // v4 deployed (revision 4; the controller's write of the Deployment's annotation lost to the
  // revert), then v3 again: the controller renumbers v3's ReplicaSet 5 and writes the ReplicaSet
  // only (it sets the Deployment's annotation in a later sync), then status.observedGeneration
  kube.add(RESOURCES.replicasets, replicaSet('web-dd04', 'web:v4', 4, { createdAt: '2026-11-25T10:00:00Z' }));
  setRS(kube, 'web-cc03', (rs) => (rs.metadata.annotations![REV] = '5'));
  setDep(kube, (d) => {
    d.metadata.generation = 5;
    d.status.observedGeneration = 5;
  });
  const plan = await deploymentAction.plan(ref, context(kube));
  fellBack(t, kube);
  t.equal(plan.toRevision, 4, 'kubectl: revision 4 (v4) is second-highest (the cache alone would say 2)');
  t.equal(image(plan), 'web:v4');
});

t.test('stale: the controller has not observed the Deployment’s generation', async (t) => {
  const kube = three();
  kube.snapshotCache();
  // v4 (revision 4, its annotation write lost), then v3 again, not yet synced by the controller
  kube.add(RESOURCES.replicasets, replicaSet('web-dd04', 'web:v4', 4, { createdAt: '2026-11-25T10:00:00Z' }));
  setDep(kube, (d) => {
    d.metadata.generation = 5;
    d.status.observedGeneration = 4;
  });
  const plan = await deploymentAction.plan(ref, context(kube));
  fellBack(t, kube);
  t.equal(plan.refusal?.code, 'already_matches', 'kubectl: revision 3 is second-highest and current (the cache alone would roll back to 2)');
});

t.test('stale: an orphan the controller may adopt is in the cached list', async (t) => {
  const kube = cluster('web:v4', 4, [['web-aa01', 'web:v1', 1], ['web-bb02', 'web:v2', 2], ['web-dd04', 'web:v4', 4]]);
  kube.add(RESOURCES.replicasets, replicaSet('web-orphan', 'web:v3', 3, { ownerUid: null }));
  kube.snapshotCache();
  setRS(kube, 'web-orphan', (rs) => (rs.metadata.ownerReferences = [{ apiVersion: 'apps/v1', kind: 'Deployment', name: 'web', uid: DEP_UID, controller: true }]));
  const plan = await deploymentAction.plan(ref, context(kube));
  fellBack(t, kube);
  t.equal(plan.toRevision, 3, 'adopted since: kubectl picks its revision 3 (the cache alone would say 2)');
  t.equal(image(plan), 'web:v3');
});

t.test('stale: a refusal is only ever answered from the consistent list', async (t) => {
  const kube = cluster('web:v6', 6, [['web-aa01', 'web:v1', 1], ['web-ff06', 'web:v6', 6]]);
  kube.snapshotCache();
  // revision 5 restored since the snapshot (e.g. from a backup)
  kube.add(RESOURCES.replicasets, replicaSet('web-ee05', 'web:v5', 5, { createdAt: '2026-11-22T10:00:00Z' }));
  const plan = await deploymentAction.plan({ ...ref, toRevision: 5 }, context(kube));
  fellBack(t, kube);
  t.notOk(plan.refusal, 'kubectl finds revision 5');
  t.equal(image(plan), 'web:v5');
});

t.test('a revision held by two ReplicaSets: the consistent list decides (kubectl’s pick among equals depends on list order)', async (t) => {
  const kube = cluster('web:v3', 3, [['web-aa01', 'web:v1', 1], ['web-bb02', 'web:v2', 2], ['web-bc02', 'web:v2b', 2], ['web-cc03', 'web:v3', 3]]);
  // a watch cache that lists in another order than etcd's
  kube.snapshotCache();
  kube.cache = new Map([...kube.cache!].reverse());
  const plan = await deploymentAction.plan(ref, context(kube));
  fellBack(t, kube);
  t.equal(image(plan), 'web:v2', 'kubectl, in etcd’s order: web-bb02 (the cache’s order alone would pick web-bc02)');
});

t.test('the current ReplicaSet’s template edited since the snapshot: the consistent list decides', async (t) => {
  const kube = three();
  kube.snapshotCache();
  setRS(kube, 'web-cc03', (rs) => (rs.spec.template.spec.containers[0].image = 'web:v3-edited'));
  const plan = await deploymentAction.plan(ref, context(kube));
  fellBack(t, kube);
  t.equal(plan.toRevision, 2);
  const dep = kube.peek(RESOURCES.deployments, NS, 'web')!;
  t.equal(plan.current?.createdAt, Date.parse(dep.metadata.creationTimestamp!), 'no ReplicaSet has the current template now: the Deployment’s creation time, as from a consistent list');
});

t.test('RBAC without `get replicasets` (an install from before this read): the consistent list, no error', async (t) => {
  const kube = three();
  kube.failNext('get', (c) => (c.resource === 'replicasets' ? new KubeApiError({ status: 403, reason: 'Forbidden', message: 'replicasets.apps "web-bb02" is forbidden', operation: 'GET' }) : null));
  const plan = await deploymentAction.plan(ref, context(kube));
  fellBack(t, kube);
  t.equal(plan.toRevision, 2);
  t.equal(image(plan), 'web:v2');
  const other = three();
  other.failNext('get', (c) => (c.resource === 'replicasets' ? new KubeApiError({ status: 500, reason: 'InternalError', message: 'etcd down', operation: 'GET' }) : null));
  await t.rejects(deploymentAction.plan(ref, context(other)), /etcd down/, 'any other error is thrown, as from the consistent list');
});

t.test('canary: the current ReplicaSet from the cache, without a confirming GET; a stale cache falls back', async (t) => {
  const build = () => {
    const kube = cluster('web:v2', 2, [['web-aa01', 'web:v1', 1], ['web-bb02', 'web:v2', 2]]);
    const canary = kube.peek(RESOURCES.deployments, NS, 'web')!;
    kube.objects.clear();
    kube.add(RESOURCES.deployments, { ...canary, metadata: { ...canary.metadata, name: 'web-canary' } });
    kube.add(RESOURCES.deployments, { ...canary, metadata: { ...canary.metadata, name: 'web-stable', uid: 'stable-uid' } });
    const rs = replicaSet('web-bb02', 'web:v2', 2, { createdAt: '2026-11-23T09:00:00Z' });
    rs.metadata.ownerReferences![0]!.name = 'web-canary';
    kube.add(RESOURCES.replicasets, rs);
    return kube;
  };
  const cref = { kind: 'Canary' as const, namespace: NS, name: 'web' };
  const kube = build();
  const plan = await canaryAction.plan(cref, context(kube));
  t.equal(plan.current?.createdAt, Date.parse('2026-11-23T09:00:00Z'));
  usedCache(t, kube);
  t.same(rsGets(kube), [], 'no confirming GET');

  const stale = build();
  stale.cache = new Map(); // the cache has not seen any ReplicaSet yet
  const p2 = await canaryAction.plan(cref, context(stale));
  fellBack(t, stale);
  t.equal(p2.current?.createdAt, Date.parse('2026-11-23T09:00:00Z'), 'the current ReplicaSet’s creation time, not the Deployment’s');
});
