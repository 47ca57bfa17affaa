import t from 'tap';
import { statefulSetAction } from '../../../src/actions/statefulset.js';
import { daemonSetAction } from '../../../src/actions/daemonset.js';
import { RESOURCES, type KubeObject } from '../../../src/kube/kube.js';
import { KubeApiError } from '../../../src/kube/errors.js';
import { FakeKube } from '../../support/fake-kube.js';
import { statefulSetState, daemonSetState } from '../../../src/kube/rollout-status.js';
import { CAUSE, NS, context } from './fixtures/objects.js';

const UID = '22222222-2222-2222-2222-222222222222';
const tpl = (image: string) => ({
  metadata: { labels: { app: 'db' } },
  spec: { containers: [{ name: 'db', image, imagePullPolicy: 'IfNotPresent' }], restartPolicy: 'Always' },
});

function cr(name: string, revision: number, image: string, owner: string | null = UID): KubeObject {
  return {
    apiVersion: 'apps/v1',
    kind: 'ControllerRevision',
    metadata: {
      name,
      namespace: NS,
      labels: { app: 'db', 'controller-revision-hash': name.slice(3) },
      creationTimestamp: `2026-11-2${revision}T08:00:00Z`,
      ...(owner ? { ownerReferences: [{ apiVersion: 'apps/v1', kind: 'StatefulSet', name: 'db', uid: owner, controller: true }] } : {}),
    },
    revision,
    data: { spec: { template: { ...tpl(image), $patch: 'replace' } } },
  } as KubeObject;
}

function cluster(kind: 'statefulsets' | 'daemonsets' = 'statefulsets'): FakeKube {
  const kube = new FakeKube();
  kube.add(RESOURCES[kind], {
    apiVersion: 'apps/v1',
    kind: kind === 'statefulsets' ? 'StatefulSet' : 'DaemonSet',
    metadata: { name: 'db', namespace: NS, uid: UID, generation: 2, annotations: { team: 'data' } },
    spec: { replicas: 3, selector: { matchLabels: { app: 'db' } }, template: tpl('db:v2'), updateStrategy: { type: 'RollingUpdate' } },
  });
  kube.add(RESOURCES.controllerrevisions, cr('db-aaa', 1, 'db:v1'));
  kube.add(RESOURCES.controllerrevisions, cr('db-bbb', 2, 'db:v2'));
  kube.add(RESOURCES.controllerrevisions, cr('db-zzz', 7, 'db:orphan', null));
  return kube;
}

const ref = { kind: 'StatefulSet' as const, namespace: NS, name: 'db' };

t.test('StatefulSet: previous ControllerRevision applied as a strategic merge patch', async (t) => {
  const kube = cluster();
  const ctx = context(kube);
  const plan = await statefulSetAction.plan(ref, ctx);
  t.notOk(plan.refusal);
  t.equal(plan.fromRevision, 2);
  t.equal(plan.toRevision, 1, 'the orphan revision 7 is not ours');
  t.equal(plan.current?.createdAt, Date.parse('2026-11-22T08:00:00Z'));
  const w = plan.writes![0]!;
  t.equal(w.patchType, 'strategic');
  t.same(w.patch, {
    spec: { template: { ...tpl('db:v1'), $patch: 'replace' } },
    metadata: { resourceVersion: kube.peek(RESOURCES.statefulsets, NS, 'db')!.metadata.resourceVersion, annotations: { 'kubernetes.io/change-cause': CAUSE } },
  });
  const res = await statefulSetAction.execute(plan, ctx);
  t.equal(res.applied, true);
  const sts = kube.peek(RESOURCES.statefulsets, NS, 'db')!;
  t.same(sts.spec.template, tpl('db:v1'));
  t.equal(sts.metadata.annotations!['kubernetes.io/change-cause'], CAUSE);
  t.equal(sts.metadata.annotations!.team, 'data', 'other annotations kept');
});

t.test('StatefulSet refusals in kubectl words', async (t) => {
  const kube = cluster();
  t.same((await statefulSetAction.plan({ ...ref, toRevision: 5 }, context(kube))).refusal, {
    code: 'revision_not_found',
    message: 'unable to find specified revision 5 in history',
  });
  t.same((await statefulSetAction.plan({ ...ref, toRevision: 2 }, context(kube))).refusal, {
    code: 'already_matches',
    message: 'skipped rollback (current template already matches revision 2)',
  });
  t.same((await statefulSetAction.plan({ ...ref, name: 'x' }, context(kube))).refusal, {
    code: 'not_found',
    message: 'statefulsets.apps "x" not found',
  });
  kube.objects.delete('controllerrevisions.apps/shop/db-aaa');
  t.same((await statefulSetAction.plan(ref, context(kube))).refusal, { code: 'no_history', message: 'no last revision to roll back to' });
  const exact = await statefulSetAction.plan({ ...ref, toRevision: 2 }, context(kube));
  t.equal(exact.refusal?.code, 'already_matches', 'an explicit revision with one entry is looked up, as kubectl');
});

t.test('StatefulSet --to-revision and a 409 re-plan', async (t) => {
  const kube = cluster();
  kube.add(RESOURCES.controllerrevisions, cr('db-ccc', 3, 'db:v3'));
  const s = kube.peek(RESOURCES.statefulsets, NS, 'db')!;
  s.spec.template = tpl('db:v3');
  kube.put(RESOURCES.statefulsets, s);
  const prev = await statefulSetAction.plan(ref, context(kube));
  t.equal(prev.toRevision, 2);
  const ctx = context(kube);
  const plan = await statefulSetAction.plan({ ...ref, toRevision: 1 }, ctx);
  t.equal(plan.toRevision, 1);
  // a status update by the controller moves the resourceVersion: 409, fresh read, retry
  const cur = kube.peek(RESOURCES.statefulsets, NS, 'db')!;
  cur.status = { observedGeneration: 2, readyReplicas: 2 };
  kube.put(RESOURCES.statefulsets, cur);
  const res = await statefulSetAction.execute(plan, ctx);
  t.equal(res.applied, true);
  t.equal(res.attempts, 2);
  t.same(kube.peek(RESOURCES.statefulsets, NS, 'db')!.spec.template, tpl('db:v1'));
  // 403 is not retried
  const k2 = cluster();
  const p2 = await statefulSetAction.plan(ref, context(k2));
  k2.failNext('patch', new KubeApiError({ status: 403, reason: 'Forbidden', message: 'no', operation: 'PATCH' }));
  await t.rejects(statefulSetAction.execute(p2, context(k2)), /Forbidden/);
  t.equal(k2.patches().length, 1);
});

t.test('DaemonSet: the same through its ControllerRevisions', async (t) => {
  const kube = cluster('daemonsets');
  const ctx = context(kube);
  const plan = await daemonSetAction.plan({ kind: 'DaemonSet', namespace: NS, name: 'db' }, ctx);
  t.equal(plan.toRevision, 1);
  t.match(plan.summary, /roll back daemonset shop\/db from revision 2 to revision 1/);
  await daemonSetAction.execute(plan, ctx);
  t.same(kube.peek(RESOURCES.daemonsets, NS, 'db')!.spec.template, tpl('db:v1'));
  t.same((await daemonSetAction.plan({ kind: 'DaemonSet', namespace: NS, name: 'nope' }, ctx)).refusal?.message, 'daemonsets.apps "nope" not found');
});

t.test('rollout status of StatefulSets and DaemonSets (kubectl’s viewers)', async (t) => {
  const sts = (status: Record<string, unknown>, spec: Record<string, unknown> = {}): KubeObject => ({
    metadata: { name: 'db', generation: 3 },
    spec: { replicas: 3, updateStrategy: { type: 'RollingUpdate' }, ...spec },
    status,
  });
  t.match(statefulSetState(sts({ observedGeneration: 2 })).message, /spec update to be observed/);
  t.equal(statefulSetState(sts({ observedGeneration: 3, readyReplicas: 1 })).message, 'Waiting for 2 pods to be ready...');
  t.match(statefulSetState(sts({ observedGeneration: 3, readyReplicas: 3, updateRevision: 'db-b', currentRevision: 'db-a', updatedReplicas: 1 })).message, /waiting for statefulset rolling update to complete 1 pods at revision db-b/);
  t.equal(statefulSetState(sts({ observedGeneration: 3, readyReplicas: 3, updateRevision: 'db-b', currentRevision: 'db-b', currentReplicas: 3 })).done, true);
  t.equal(statefulSetState(sts({ observedGeneration: 3, readyReplicas: 3, updatedReplicas: 1 }, { updateStrategy: { type: 'RollingUpdate', rollingUpdate: { partition: 2 } } })).done, true, 'partitioned');
  t.match(statefulSetState(sts({}, { updateStrategy: { type: 'OnDelete' } })).message, /only available for RollingUpdate/);
  t.equal(statefulSetState(sts({ observedGeneration: 3, readyReplicas: 3, updateRevision: 'a', currentRevision: 'a' }), { minGeneration: 4 }).done, false, 'stale status');

  const ds = (status: Record<string, unknown>): KubeObject => ({ metadata: { name: 'agent', generation: 2 }, spec: {}, status });
  t.match(daemonSetState(ds({ observedGeneration: 1 })).message, /spec update to be observed/);
  t.match(daemonSetState(ds({ observedGeneration: 2, desiredNumberScheduled: 3, updatedNumberScheduled: 1 })).message, /1 out of 3 new pods have been updated/);
  t.match(daemonSetState(ds({ observedGeneration: 2, desiredNumberScheduled: 3, updatedNumberScheduled: 3, numberAvailable: 2 })).message, /2 of 3 updated pods are available/);
  t.equal(daemonSetState(ds({ observedGeneration: 2, desiredNumberScheduled: 3, updatedNumberScheduled: 3, numberAvailable: 3 })).message, 'daemon set "agent" successfully rolled out');
});

t.test('a StatefulSet or DaemonSet another controller controls is refused, naming it (an operator would put its template back)', async (t) => {
  for (const [action, plural, kind] of [[statefulSetAction, 'statefulsets', 'StatefulSet'], [daemonSetAction, 'daemonsets', 'DaemonSet']] as const) {
    const kube = cluster(plural);
    const rt = RESOURCES[plural];
    const obj = kube.peek(rt, NS, 'db')!;
    obj.metadata.ownerReferences = [{ apiVersion: 'postgres-operator.example/v1', kind: 'PostgresCluster', name: 'db', uid: '55555555-5555-5555-5555-555555555555', controller: true }];
    kube.put(rt, obj);
    const p = await action.plan({ kind, namespace: NS, name: 'db' }, context(kube));
    t.equal(p.refusal?.code, 'controller_owned', kind);
    t.match(p.refusal?.message, new RegExp(`^${kind.toLowerCase()} "db" is controlled by PostgresCluster db \\(postgres-operator.example/v1\\).*roll back the PostgresCluster instead`));
  }
});
