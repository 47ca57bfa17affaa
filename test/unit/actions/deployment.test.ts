import t from 'tap';
import { deploymentAction, ANNOTATIONS_TO_SKIP } from '../../../src/actions/deployment.js';
import { RESOURCES } from '../../../src/kube/kube.js';
import { KubeApiError } from '../../../src/kube/errors.js';
import { FakeKube } from '../../support/fake-kube.js';
import { snapshotObject } from '../../../src/config-deps/snapshots.js';
import { SNAPSHOT_KEY } from '../../support/snapshots.js';
import { CAUSE, NS, context, deployment, podTemplate, replicaSet, standardCluster } from './fixtures/objects.js';

async function caught(p: Promise<unknown>): Promise<KubeApiError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof KubeApiError) return e;
    throw e;
  }
  throw new Error('expected a KubeApiError');
}

const ref = { kind: 'Deployment' as const, namespace: NS, name: 'web' };

/** A deploy of web:v3 (revision 3) as the Deployment controller leaves it: its ReplicaSet, the template, generation and revision. */
function deployV3(kube: FakeKube): void {
  kube.add(RESOURCES.replicasets, replicaSet('web-cc03', 'web:v3', 3, { createdAt: '2026-11-23T10:00:00Z' }));
  const d = kube.peek(RESOURCES.deployments, NS, 'web')!;
  d.spec.template = podTemplate('web:v3');
  d.metadata.generation = 3;
  d.metadata.annotations!['deployment.kubernetes.io/revision'] = '3';
  kube.put(RESOURCES.deployments, d);
}

t.test('plan: previous revision = the second-highest among the controlled ReplicaSets', async (t) => {
  const kube = standardCluster();
  const plan = await deploymentAction.plan(ref, context(kube));
  t.notOk(plan.refusal, 'not refused');
  t.equal(plan.fromRevision, 2);
  t.equal(plan.toRevision, 1, 'orphan (rev 5) and foreign (rev 9) ReplicaSets are ignored');
  t.equal(plan.current?.revision, 2);
  t.equal(plan.current?.createdAt, Date.parse('2026-11-23T09:00:00Z'), 'createdAt of the current ReplicaSet');
  t.equal(plan.current?.annotations.team, 'payments');
  const w = plan.writes?.[0];
  t.ok(w);
  t.equal(w!.patchType, 'json');
  const ops = w!.patch as { op: string; path: string; value: unknown }[];
  t.same(ops.map((o) => [o.op, o.path]), [
    ['test', '/metadata/uid'],
    ['test', '/metadata/generation'],
    ['replace', '/spec/template'],
    ['replace', '/metadata/annotations'],
  ]);
  t.same(ops[2]!.value, podTemplate('web:v1'), 'the v1 template without the pod-template-hash label');
  t.strictSame(ops[3]!.value, {
    // kept from the Deployment
    'deployment.kubernetes.io/revision': '2',
    'kubectl.kubernetes.io/last-applied-configuration': '{"kind":"Deployment"}',
    // copied from the ReplicaSet (its desired/max-replicas are skipped)
    'kubernetes.io/change-cause': CAUSE,
    team: 'payments',
    'rollguard.io/note': 'from-rs',
  });
  t.match(plan.summary, /from revision 2 to revision 1 \(ReplicaSet web-aa01\)/);
  // the list was narrowed by the Deployment's selector
  const list = kube.calls.find((c) => c.verb === 'list');
  t.equal(list?.labelSelector, 'app=web');
});

t.test('annotations: the skipped keys keep the Deployment value, or stay absent', async (t) => {
  const kube = standardCluster();
  const rs = kube.peek(RESOURCES.replicasets, NS, 'web-aa01')!;
  for (const k of ANNOTATIONS_TO_SKIP) if (k !== 'deployment.kubernetes.io/revision') rs.metadata.annotations![k] = 'from-rs';
  kube.put(RESOURCES.replicasets, rs);
  const plan = await deploymentAction.plan(ref, context(kube, { changeCause: '' }));
  const ann = (plan.writes![0]!.patch as { value: Record<string, string> }[])[3]!.value;
  for (const k of ANNOTATIONS_TO_SKIP) {
    const dep = kube.peek(RESOURCES.deployments, NS, 'web')!.metadata.annotations!;
    if (k in dep) t.equal(ann[k], dep[k], `${k} from the Deployment`);
    else t.notOk(k in ann, `${k} absent (Deployment has none)`);
  }
  t.equal(ann['kubernetes.io/change-cause'], 'deploy web:v1', 'no change cause given: the ReplicaSet one, as kubectl');
});

t.test('execute: one patch, fenced, returns to v1', async (t) => {
  const kube = standardCluster();
  const ctx = context(kube);
  const plan = await deploymentAction.plan(ref, ctx);
  const res = await deploymentAction.execute(plan, ctx);
  t.equal(res.applied, true);
  t.equal(res.attempts, 1);
  t.equal(ctx.fenceCalls, 1, 'fence checked before the write');
  t.equal(kube.patches().length, 1);
  const dep = kube.peek(RESOURCES.deployments, NS, 'web')!;
  t.same(dep.spec.template, podTemplate('web:v1'));
  t.equal(dep.metadata.annotations!['kubernetes.io/change-cause'], CAUSE);
  t.equal(res.newGeneration, 3, 'the generation after the write');
});

t.test('--to-revision', async (t) => {
  const kube = standardCluster();
  kube.add(RESOURCES.replicasets, replicaSet('web-cc03', 'web:v3', 3, { createdAt: '2026-11-23T10:00:00Z' }));
  const d = kube.peek(RESOURCES.deployments, NS, 'web')!;
  d.spec.template = podTemplate('web:v3');
  d.metadata.annotations!['deployment.kubernetes.io/revision'] = '3';
  kube.put(RESOURCES.deployments, d);

  const prev = await deploymentAction.plan(ref, context(kube));
  t.equal(prev.toRevision, 2, 'default: previous = 2');
  const to1 = await deploymentAction.plan({ ...ref, toRevision: 1 }, context(kube));
  t.equal(to1.toRevision, 1);
  t.same((to1.writes![0]!.patch as { value: unknown }[])[2]!.value, podTemplate('web:v1'));
  const to7 = await deploymentAction.plan({ ...ref, toRevision: 7 }, context(kube));
  t.same(to7.refusal, { code: 'revision_not_found', message: 'unable to find specified revision 7 in history' });
  const neg = await deploymentAction.plan({ ...ref, toRevision: -1 }, context(kube));
  t.same(neg.refusal, { code: 'revision_not_found', message: 'unable to find specified revision -1 in history' });
  const to3 = await deploymentAction.plan({ ...ref, toRevision: 3 }, context(kube));
  t.same(to3.refusal, { code: 'already_matches', message: 'skipped rollback (current template already matches revision 3)' });
});

// Two ReplicaSets with the same revision number (a revision annotation edited or restored by hand):
// kubectl's findNewReplicaSet sorts the list in place by creation time (names break ties), so
// deploymentRevision walks the old ones oldest first, whatever order the API server listed them in.
t.test('same revision number twice: the ReplicaSet kubectl takes (creation order, names breaking ties), not the list order', async (t) => {
  const cluster = (rss: [string, string, string][]) => {
    const kube = new FakeKube();
    kube.add(RESOURCES.deployments, deployment('web:v3', 3));
    for (const [name, image, createdAt] of rss) kube.add(RESOURCES.replicasets, replicaSet(name, image, name.endsWith('03') ? 3 : 2, { createdAt }));
    return kube;
  };
  const image = (p: { writes?: { patch: unknown }[] }) => ((p.writes![0]!.patch as { value: { spec: { containers: { image: string }[] } } }[])[2]!.value.spec.containers[0]!.image);
  // listed by name, as the API server does: the newer rev-2 ReplicaSet first
  const kube = cluster([['web-aa02', 'web:v2-newer', '2026-11-22T00:00:00Z'], ['web-bb02', 'web:v2-older', '2026-11-21T00:00:00Z'], ['web-cc03', 'web:v3', '2026-11-23T00:00:00Z']]);
  t.same((await kube.list(RESOURCES.replicasets, NS)).map((r) => r.metadata.name), ['web-aa02', 'web-bb02', 'web-cc03'], 'the list order');
  for (const toRevision of [undefined, 2]) {
    const plan = await deploymentAction.plan({ ...ref, ...(toRevision ? { toRevision } : {}) }, context(kube));
    t.equal(plan.toRevision, 2);
    t.equal(image(plan), 'web:v2-older', `toRevision ${toRevision ?? 0}: the older one, as kubectl rollout undo`);
    t.match(plan.summary, /\(ReplicaSet web-bb02\)/);
  }
  // the same creation time (a second's resolution): by name, whatever the list order
  const tie = cluster([['web-zz02', 'web:v2-z', '2026-11-22T00:00:00Z'], ['web-yy02', 'web:v2-y', '2026-11-22T00:00:00Z'], ['web-cc03', 'web:v3', '2026-11-23T00:00:00Z']]);
  t.same((await tie.list(RESOURCES.replicasets, NS)).map((r) => r.metadata.name), ['web-zz02', 'web-yy02', 'web-cc03'], 'the list order');
  for (const toRevision of [undefined, 2]) {
    const plan = await deploymentAction.plan({ ...ref, ...(toRevision ? { toRevision } : {}) }, context(tie));
    t.equal(image(plan), 'web:v2-y', `toRevision ${toRevision ?? 0}: web-yy02 before web-zz02`);
  }
});

t.test('refusals in kubectl words', async (t) => {
  const kube = standardCluster();
  const missing = await deploymentAction.plan({ ...ref, name: 'nope' }, context(kube));
  t.same(missing.refusal, { code: 'not_found', message: 'deployments.apps "nope" not found' });

  const single = standardCluster();
  single.objects.delete('replicasets.apps/shop/web-aa01');
  const none = await deploymentAction.plan(ref, context(single));
  t.same(none.refusal, { code: 'no_history', message: 'no rollout history found for deployment "web"' });

  const paused = standardCluster();
  const d = paused.peek(RESOURCES.deployments, NS, 'web')!;
  d.spec.paused = true;
  paused.put(RESOURCES.deployments, d);
  const p = await deploymentAction.plan(ref, context(paused));
  t.equal(p.refusal?.code, 'paused');
  t.equal(p.refusal?.message, "you cannot rollback a paused deployment; resume it first with 'kubectl rollout resume' and try again");
  t.equal(p.toRevision, 1, 'the paused refusal still says what would be restored');
  t.same(paused.patches(), [], 'a paused Deployment is not changed');

  const same = standardCluster();
  const d2 = same.peek(RESOURCES.deployments, NS, 'web')!;
  d2.spec.template = podTemplate('web:v1');
  same.put(RESOURCES.deployments, d2);
  // current template = v1 (revision 1 is now the "new" RS; revision 2 stays the highest)
  const m = await deploymentAction.plan({ ...ref, toRevision: 1 }, context(same));
  t.same(m.refusal, { code: 'already_matches', message: 'skipped rollback (current template already matches revision 1)' });

  const noKube = await deploymentAction.plan(ref, context(null));
  t.equal(noKube.refusal?.code, 'no_cluster');
  await t.rejects(deploymentAction.execute(p, context(paused)), /refused plan/);
});

t.test('equality ignores the hash label and empty-vs-absent fields, not real differences', async (t) => {
  const kube = standardCluster();
  const d = kube.peek(RESOURCES.deployments, NS, 'web')!;
  const tpl = podTemplate('web:v1');
  (tpl.spec as Record<string, unknown>).volumes = [];
  d.spec.template = tpl;
  kube.put(RESOURCES.deployments, d);
  const m = await deploymentAction.plan({ ...ref, toRevision: 1 }, context(kube));
  t.equal(m.refusal?.code, 'already_matches');
  const tpl2 = podTemplate('web:v1', { terminationGracePeriodSeconds: 31 });
  d.spec.template = tpl2;
  kube.put(RESOURCES.deployments, d);
  const m2 = await deploymentAction.plan({ ...ref, toRevision: 1 }, context(kube));
  t.notOk(m2.refusal);
});

t.test('fields the client models do not know are copied untouched', async (t) => {
  const kube = standardCluster();
  const rs = kube.peek(RESOURCES.replicasets, NS, 'web-aa01')!;
  rs.spec.template.spec.futurePodField = { enabled: true };
  kube.put(RESOURCES.replicasets, rs);
  const plan = await deploymentAction.plan(ref, context(kube));
  t.same((plan.writes![0]!.patch as { value: { spec: Record<string, unknown> } }[])[2]!.value.spec.futurePodField, { enabled: true });
});

t.test('unparsable revision annotations are skipped; missing = 0', async (t) => {
  const kube = standardCluster();
  kube.add(RESOURCES.replicasets, replicaSet('web-bad9', 'web:bad', null, { extraAnnotations: { 'deployment.kubernetes.io/revision': 'x' } }));
  kube.add(RESOURCES.replicasets, replicaSet('web-zero', 'web:zero', null));
  const plan = await deploymentAction.plan(ref, context(kube));
  t.equal(plan.toRevision, 1);
  const zero = await deploymentAction.plan({ ...ref, toRevision: 0 }, context(kube));
  t.equal(zero.toRevision, 1, 'toRevision 0 means previous, not the revision-0 ReplicaSet');
});

t.test('409 Conflict: re-plan from a fresh read, bounded', async (t) => {
  const conflict = () =>
    new KubeApiError({ status: 409, reason: 'Conflict', message: 'the object has been modified', operation: 'PATCH' });

  const kube = standardCluster();
  const ctx = context(kube);
  const plan = await deploymentAction.plan(ref, ctx);
  kube.failNext('patch', conflict());
  const res = await deploymentAction.execute(plan, ctx);
  t.equal(res.applied, true);
  t.equal(res.attempts, 2);
  t.ok(res.replanned, 'the applied plan is the fresh one');
  t.equal(kube.patches().length, 2);
  t.equal(ctx.fenceCalls, 2, 'fence checked before each write');

  // a real concurrent change: someone else rolled back between plan and execute
  const kube2 = standardCluster();
  const ctx2 = context(kube2);
  const plan2 = await deploymentAction.plan(ref, ctx2);
  const other = await deploymentAction.plan(ref, ctx2);
  await deploymentAction.execute(other, ctx2);
  const res2 = await deploymentAction.execute(plan2, ctx2);
  t.equal(res2.applied, false, 'generation moved → failed test op (422) → fresh plan refuses');
  t.equal(res2.refusal?.code, 'already_matches');
  t.equal(res2.attempts, 1);

  // a new deploy between plan and execute: the fresh plan would roll back the new revision instead
  const kube4 = standardCluster();
  const ctx4 = context(kube4);
  const plan4 = await deploymentAction.plan(ref, ctx4);
  deployV3(kube4);
  const res4 = await deploymentAction.execute(plan4, ctx4);
  t.equal(res4.applied, false);
  t.equal(res4.refusal?.code, 'changed_since_plan');
  t.match(res4.message, /moved from revision 2 to 3/);
  t.equal(kube4.peek(RESOURCES.deployments, NS, 'web')!.spec.template.spec.containers[0].image, 'web:v3', 'the new deploy is left alone');

  // a scale between plan and execute: same revision, the fresh plan goes through
  const kube5 = standardCluster();
  const ctx5 = context(kube5);
  const plan5 = await deploymentAction.plan(ref, ctx5);
  await kube5.patch(RESOURCES.deployments, NS, 'web', { spec: { replicas: 5 } }, 'merge');
  const res5 = await deploymentAction.execute(plan5, ctx5);
  t.equal(res5.applied, true);
  t.equal(res5.attempts, 2);
  const d5 = kube5.peek(RESOURCES.deployments, NS, 'web')!;
  t.equal(d5.spec.replicas, 5);
  t.same(d5.spec.template, podTemplate('web:v1'));

  // a 422 that is not our precondition is not retried
  const kube6 = standardCluster();
  const ctx6 = context(kube6);
  const plan6 = await deploymentAction.plan(ref, ctx6);
  kube6.failNext('patch', new KubeApiError({ status: 422, reason: 'Invalid', message: 'Deployment.apps "web" is invalid: spec.template.spec.containers[0].image: Required value', operation: 'PATCH' }));
  t.equal((await caught(deploymentAction.execute(plan6, ctx6))).status, 422);
  t.equal(kube6.patches().length, 1);

  const kube3 = standardCluster();
  const ctx3 = context(kube3);
  const plan3 = await deploymentAction.plan(ref, ctx3);
  for (let i = 0; i < 5; i++) kube3.failNext('patch', conflict());
  t.equal((await caught(deploymentAction.execute(plan3, ctx3))).status, 409);
  t.equal(kube3.patches().length, 3, 'three attempts, then the conflict is reported');
});

t.test('other API errors are reported at once, never retried', async (t) => {
  for (const status of [403, 404, 500] as const) {
    const kube = standardCluster();
    const ctx = context(kube);
    const plan = await deploymentAction.plan(ref, ctx);
    kube.failNext('patch', new KubeApiError({ status, reason: 'X', message: `boom ${status}`, operation: 'PATCH' }));
    t.equal((await caught(deploymentAction.execute(plan, ctx))).status, status, `${status} thrown`);
    t.equal(kube.patches().length, 1, `${status}: one attempt`);
  }
  const kube = standardCluster();
  kube.failNext('list', new KubeApiError({ status: 'timeout', reason: 'Timeout', message: 'no answer within 10000 ms', operation: 'LIST' }));
  const e = await caught(deploymentAction.plan(ref, context(kube)));
  t.equal(e.status, 'timeout');
  t.equal(e.retriable, true);
});

t.test('a lost fence stops the write', async (t) => {
  const kube = standardCluster();
  const ctx = context(kube, {
    checkFence: async () => {
      throw new Error('fencing token lost');
    },
  });
  const plan = await deploymentAction.plan(ref, ctx);
  await t.rejects(deploymentAction.execute(plan, ctx), /fencing token lost/);
  t.same(kube.patches(), []);
});

t.test('server-side dry run', async (t) => {
  const kube = standardCluster();
  const ctx = context(kube, { dryRun: true });
  const plan = await deploymentAction.plan(ref, ctx);
  const res = await deploymentAction.execute(plan, ctx);
  t.equal(res.applied, false);
  t.equal(kube.patches()[0]?.dryRun, true);
  t.same(kube.peek(RESOURCES.deployments, NS, 'web')!.spec.template, podTemplate('web:v2'), 'nothing persisted');
});

t.test('verify: waits for the new generation, then replicas', async (t) => {
  const kube = standardCluster();
  const ctx = context(kube);
  const plan = await deploymentAction.plan(ref, ctx);
  let step = 0;
  // a controller that makes progress on each read
  const origGet = kube.get.bind(kube);
  kube.get = async (rt, ns, name, o) => {
    const obj = await origGet(rt, ns, name, o);
    if (rt.plural === 'deployments') {
      step++;
      const gen = obj.metadata.generation!;
      if (step === 2) obj.status = { observedGeneration: gen - 1, replicas: 3, updatedReplicas: 3, availableReplicas: 3 };
      if (step === 3) obj.status = { observedGeneration: gen, replicas: 4, updatedReplicas: 1, availableReplicas: 3 };
      if (step === 4) obj.status = { observedGeneration: gen, replicas: 4, updatedReplicas: 3, availableReplicas: 3 };
      if (step >= 5) obj.status = { observedGeneration: gen, replicas: 3, updatedReplicas: 3, availableReplicas: 3 };
    }
    return obj;
  };
  const exec = await deploymentAction.execute(plan, ctx);
  const v = await deploymentAction.verify(plan, ctx, { timeoutMs: 5000, pollMs: 1, execution: exec });
  t.equal(v.outcome, 'succeeded', v.message);
  t.equal(v.message, 'deployment "web" successfully rolled out');
});

t.test('verify: a fresh ProgressDeadlineExceeded fails; a stale one is ignored; timeout is unverified', async (t) => {
  const kube = standardCluster();
  const ctx = context(kube);
  const plan = await deploymentAction.plan(ref, ctx);
  const exec = await deploymentAction.execute(plan, ctx);
  const d = kube.peek(RESOURCES.deployments, NS, 'web')!;
  const old = new Date(exec.at - 120_000).toISOString();
  d.status = {
    observedGeneration: d.metadata.generation,
    replicas: 4,
    updatedReplicas: 1,
    availableReplicas: 3,
    conditions: [{ type: 'Progressing', status: 'False', reason: 'ProgressDeadlineExceeded', lastUpdateTime: old }],
  };
  kube.put(RESOURCES.deployments, d);
  const stale = await deploymentAction.verify(plan, ctx, { timeoutMs: 30, pollMs: 5, execution: exec });
  t.equal(stale.outcome, 'unverified', 'the bad version’s old condition is not our failure');
  t.match(stale.message, /not finished after 30 ms: Waiting for deployment "web" rollout to finish: 1 out of 3 new replicas have been updated/);

  d.status.conditions[0].lastUpdateTime = new Date(exec.at + 1000).toISOString();
  kube.put(RESOURCES.deployments, d);
  const failed = await deploymentAction.verify(plan, ctx, { timeoutMs: 1000, pollMs: 5, execution: exec });
  t.equal(failed.outcome, 'failed');
  t.equal(failed.message, 'deployment "web" exceeded its progress deadline');

  // our own copy of progressDeadlineSeconds
  d.spec.progressDeadlineSeconds = 0;
  d.status.conditions = [];
  kube.put(RESOURCES.deployments, d);
  const own = await deploymentAction.verify(plan, ctx, { timeoutMs: 1000, pollMs: 5, execution: exec });
  t.equal(own.outcome, 'failed');
  t.match(own.message, /did not finish rolling back within its progress deadline/);

  const k2 = standardCluster();
  k2.failNext('get', new KubeApiError({ status: 500, reason: 'InternalError', message: 'etcd down', operation: 'GET' }));
  const v = await deploymentAction.verify(plan, context(k2), { timeoutMs: 100, pollMs: 5 });
  t.equal(v.outcome, 'unverified');
  t.match(v.message, /etcd down/);
});

t.test('the newest-by-creation matching ReplicaSet is the "new" one only for createdAt', async (t) => {
  const kube = standardCluster();
  const plan = await deploymentAction.plan(ref, context(kube));
  t.equal(plan.current?.createdAt, Date.parse('2026-11-23T09:00:00Z'));
  // a Deployment whose template matches no ReplicaSet (not yet synced): createdAt falls back to the Deployment
  const d = deployment('web:v9', 9);
  kube.put(RESOURCES.deployments, { ...d, metadata: { ...d.metadata, creationTimestamp: '2026-01-01T00:00:00Z' } });
  const p2 = await deploymentAction.plan(ref, context(kube));
  t.equal(p2.current?.createdAt, Date.parse('2026-01-01T00:00:00Z'));
});

// The controller copies the Deployment's annotations to its current ReplicaSet a moment after they
// change: a copy not synced yet (or edited back) must not hide a schema-migration mark from the
// approval guard, whichever source holds it.
t.test('the schema-migration mark stands when any source of the current revision has it', async (t) => {
  for (const where of ['deployment', 'replicaset', 'template'] as const) {
    const kube = standardCluster();
    const dep = kube.peek(RESOURCES.deployments, NS, 'web')!;
    const rs = kube.peek(RESOURCES.replicasets, NS, 'web-bb02')!;
    dep.metadata.annotations!['rollguard.io/schema-migration'] = where === 'deployment' ? 'true' : 'false';
    rs.metadata.annotations!['rollguard.io/schema-migration'] = where === 'replicaset' ? 'true' : 'false';
    if (where === 'template') (dep.spec.template.metadata as { annotations?: Record<string, string> }).annotations = { 'rollguard.io/schema-migration': 'true' };
    kube.put(RESOURCES.deployments, dep);
    kube.put(RESOURCES.replicasets, rs);
    const plan = await deploymentAction.plan(ref, context(kube));
    t.equal(plan.current?.annotations['rollguard.io/schema-migration'], 'true', `marked on the ${where} only`);
  }
  const kube = standardCluster();
  const plan = await deploymentAction.plan(ref, context(kube));
  t.equal(plan.current?.annotations['rollguard.io/schema-migration'], undefined, 'marked nowhere: absent');
  t.equal(plan.current?.annotations.team, 'payments', 'other annotations: the later source wins, as before');
});

// Not kubectl's (its undo does not look): a workload another controller controls is not rolled back
// unattended, since that controller owns the template and puts it back (added 2026-12-06).
t.test('a Deployment another controller controls (an ownerReference with controller: true) is refused, naming it; a non-controller owner is not', async (t) => {
  const owned = standardCluster();
  const d = owned.peek(RESOURCES.deployments, NS, 'web')!;
  d.metadata.ownerReferences = [{ apiVersion: 'flagger.app/v1beta1', kind: 'Canary', name: 'web', uid: '33333333-3333-3333-3333-333333333333', controller: true }];
  owned.put(RESOURCES.deployments, d);
  const p = await deploymentAction.plan(ref, context(owned));
  t.same(p.refusal, {
    code: 'controller_owned',
    message: 'deployment "web" is controlled by Canary web (flagger.app/v1beta1), which owns its template and would put it back: roll back the Canary instead; rollguard does not roll back a workload another controller owns',
  });
  t.same(owned.patches(), [], 'nothing written');

  const referenced = standardCluster();
  const d2 = referenced.peek(RESOURCES.deployments, NS, 'web')!;
  d2.metadata.ownerReferences = [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'keeper', uid: '44444444-4444-4444-4444-444444444444' }];
  referenced.put(RESOURCES.deployments, d2);
  const q = await deploymentAction.plan(ref, context(referenced));
  t.equal(q.refusal, undefined, 'an owner that is not its controller (garbage collection only) does not stop it');
  t.equal(q.toRevision, 1);
});

// configDrift: restore writes the drifted ConfigMap back first, then the workload. When the
// workload's write then does not land (a new revision deployed meanwhile: changed_since_plan), the
// revision still running must not keep the older revision's configuration.
t.test('configDrift: restore, then the workload write refused: the ConfigMap gets its content from before the restore back', async (t) => {
  const CM = RESOURCES.configmaps;
  const T0 = Date.parse('2026-11-20T09:00:00Z'); // before revision 1 was created (10:00)
  const T1 = Date.parse('2026-11-23T09:30:00Z'); // edited in place with revision 2
  const setup = () => {
    const kube = standardCluster();
    const v1 = replicaSet('web-aa01', 'web:v1', 1, { createdAt: '2026-11-20T10:00:00Z' });
    v1.spec.template.spec.containers[0].envFrom = [{ configMapRef: { name: 'app-config' } }];
    kube.add(RESOURCES.replicasets, v1);
    const cm = (data: Record<string, string>, at: number) => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'app-config', namespace: NS, uid: 'cm-uid', creationTimestamp: '2026-11-01T00:00:00Z', managedFields: [{ time: new Date(at).toISOString() }] }, data });
    const old = kube.add(CM, cm({ TIMEOUT: '5s', MODE: 'safe' }, T0));
    kube.add(CM, snapshotObject(old, 'ConfigMap', T0, SNAPSHOT_KEY));
    kube.put(CM, { ...kube.peek(CM, NS, 'app-config')!, ...cm({ TIMEOUT: '50ms', FEATURE: 'on' }, T1) });
    kube.add(CM, snapshotObject(kube.peek(CM, NS, 'app-config')!, 'ConfigMap', T1, SNAPSHOT_KEY));
    const ctx = context(kube, { snapshotKey: SNAPSHOT_KEY, configRestore: { secrets: false } });
    return { kube, ctx };
  };
  /** revision 3 deployed right after the ConfigMap's restore landed */
  const deployV3AfterRestore = (kube: FakeKube) => {
    let done = false;
    kube.onPatch = (rt) => {
      if (rt.plural !== 'configmaps' || done) return;
      done = true;
      deployV3(kube);
    };
  };

  const { kube, ctx } = setup();
  const plan = await deploymentAction.plan(ref, ctx);
  t.match(plan.summary, /^restore ConfigMap shop\/app-config from snapshot app-config-snap-\w+, then roll back deployment shop\/web from revision 2 to revision 1/, 'the restore is planned first');
  deployV3AfterRestore(kube);
  const res = await deploymentAction.execute(plan, ctx);
  t.equal(res.applied, false);
  t.equal(res.refusal?.code, 'changed_since_plan');
  t.same(kube.peek(CM, NS, 'app-config')!.data, { TIMEOUT: '50ms', FEATURE: 'on' }, 'the content revision 3 runs with, as before the restore (fails before: the restored one stays)');
  t.match(res.putBack, [/^ConfigMap shop\/app-config: its content before the restore written back$/]);
  t.match(res.partlyWritten, [/^restore ConfigMap shop\/app-config from snapshot/], 'the restore landed, and is still said');
  t.equal(kube.peek(RESOURCES.deployments, NS, 'web')!.spec.template.spec.containers[0].image, 'web:v3', 'the new deploy is left alone');
  const cmPatches = kube.calls.filter((c) => c.verb === 'patch' && c.resource === 'configmaps');
  t.equal(cmPatches.length, 2, 'the restore, then the write back');
  t.match(cmPatches[1]!.body, { metadata: { resourceVersion: String }, data: { TIMEOUT: '50ms', FEATURE: 'on', MODE: null } }, 'guarded by the resourceVersion the restore left');
  t.equal(ctx.fenceCalls, 3, 'fenced: the restore, the workload, the write back');

  // given newer content by someone after the restore: their change is left, and named (not a failure to put back)
  const b = setup();
  const planB = await deploymentAction.plan(ref, b.ctx);
  deployV3AfterRestore(b.kube);
  let edited = false;
  b.kube.failNext('patch', (c) => {
    if (c.resource === 'deployments' && !edited) {
      edited = true; // someone edits the ConfigMap after the restore landed, before the write back
      b.kube.put(CM, { ...b.kube.peek(CM, NS, 'app-config')!, data: { TIMEOUT: '1s' } });
    }
    return null;
  });
  const resB = await deploymentAction.execute(planB, b.ctx);
  t.equal(resB.applied, false);
  t.same(b.kube.peek(CM, NS, 'app-config')!.data, { TIMEOUT: '1s' }, 'the later change is not overwritten');
  t.notOk(resB.putBack?.length);
  t.notOk(resB.notPutBack?.length, 'nothing for a human to write back');
  t.match(resB.leftAsIs, [/^ConfigMap shop\/app-config was given newer content after the restore \(neither the restored one nor the one before\): left as it is, not put back$/]);
});
