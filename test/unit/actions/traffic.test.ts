// Blue-green switch, canary scale-down, Argo Rollout abort/undo, on plain objects.
import t from 'tap';
import { blueGreenAction } from '../../../src/actions/blue-green.js';
import { canaryAction } from '../../../src/actions/canary.js';
import { argoRolloutAction } from '../../../src/actions/argo-rollout.js';
import { createActions } from '../../../src/actions/index.js';
import { RESOURCES, type KubeObject } from '../../../src/kube/kube.js';
import { KubeApiError } from '../../../src/kube/errors.js';
import { FakeKube } from '../../support/fake-kube.js';
import { summarisePlan } from '../../../src/engine/change.js';
import { CAUSE, NS, context } from './fixtures/objects.js';

function dep(name: string, labels: Record<string, string>, replicas: number, available = replicas): KubeObject {
  return {
    metadata: { name, namespace: NS, generation: 1, uid: `uid-${name}` },
    spec: { replicas, selector: { matchLabels: labels }, template: { metadata: { labels }, spec: { containers: [{ name: 'c', image: `${name}:1` }] } } },
    status: { observedGeneration: 1, replicas, updatedReplicas: replicas, availableReplicas: available },
  };
}

function rsFor(d: KubeObject, createdAt: string): KubeObject {
  return {
    metadata: {
      name: `${d.metadata.name}-h1`,
      namespace: NS,
      labels: d.spec.template.metadata.labels,
      creationTimestamp: createdAt,
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: d.metadata.name, uid: d.metadata.uid!, controller: true }],
    },
    spec: { replicas: d.spec.replicas, template: d.spec.template },
  };
}

function blueGreen(blueAvailable = 3): FakeKube {
  const kube = new FakeKube();
  kube.add(RESOURCES.replicasets, rsFor(dep('hotswap-api-blue', { app: 'hotswap-api', version: 'blue' }, 3), '2026-11-20T10:00:00Z'));
  kube.add(RESOURCES.replicasets, rsFor(dep('hotswap-api-green', { app: 'hotswap-api', version: 'green' }, 3), '2026-11-23T10:00:00Z'));
  kube.add(RESOURCES.services, { metadata: { name: 'hotswap-api', namespace: NS }, spec: { selector: { app: 'hotswap-api', version: 'green' } } });
  kube.add(RESOURCES.deployments, dep('hotswap-api-blue', { app: 'hotswap-api', version: 'blue' }, 3, blueAvailable));
  kube.add(RESOURCES.deployments, dep('hotswap-api-green', { app: 'hotswap-api', version: 'green' }, 3));
  return kube;
}

t.test('blue-green: switch the selector back to the other colour', async (t) => {
  const kube = blueGreen();
  const ctx = context(kube);
  const ref = { kind: 'BlueGreen' as const, namespace: NS, name: 'hotswap-api' };
  const plan = await blueGreenAction.plan(ref, ctx);
  t.notOk(plan.refusal);
  t.match(plan.summary, /from version=green back to version=blue \(hotswap-api-blue\)/);
  t.same((plan.writes![0]!.patch as { spec: unknown }).spec, { selector: { version: 'blue' } }, 'the runbook’s patch');
  const res = await blueGreenAction.execute(plan, ctx);
  t.equal(res.applied, true);
  const svc = kube.peek(RESOURCES.services, NS, 'hotswap-api')!;
  t.same(svc.spec.selector, { app: 'hotswap-api', version: 'blue' });
  t.equal(svc.metadata.annotations!['kubernetes.io/change-cause'], CAUSE);
  const v = await blueGreenAction.verify(plan, ctx, { timeoutMs: 100, pollMs: 5 });
  t.equal(v.outcome, 'succeeded', v.message);
  const again = await blueGreenAction.plan(ref, ctx);
  t.equal(again.refusal?.code, 'unsupported', 'blue → green would roll forward to the newer (bad) colour');
  t.match(again.refusal?.message, /the green environment \(deployed 2026-11-23T10:00:00.000Z\) is newer than blue/);
  t.equal(plan.current?.createdAt, Date.parse('2026-11-23T10:00:00Z'), 'current = when green was deployed');
  const explicit = await blueGreenAction.plan({ ...ref, options: { to: 'blue' } }, ctx);
  t.equal(explicit.refusal?.code, 'already_matches');
});

t.test('blue-green refusals', async (t) => {
  const ref = { kind: 'BlueGreen' as const, namespace: NS, name: 'hotswap-api' };
  const down = await blueGreenAction.plan(ref, context(blueGreen(0)));
  t.equal(down.refusal?.code, 'target_not_ready');
  t.match(down.refusal?.message, /blue environment has no available pods/);
  const k = blueGreen();
  k.objects.delete('deployments.apps/shop/hotswap-api-blue');
  t.match((await blueGreenAction.plan(ref, context(k))).refusal?.message, /the blue environment is not running/);
  t.same((await blueGreenAction.plan({ ...ref, options: { service: 'nope' } }, context(k))).refusal, { code: 'not_found', message: 'services "nope" not found' });
  t.match((await blueGreenAction.plan({ ...ref, options: { selectorKey: 'track' } }, context(k))).refusal?.message, /no "track" key/);
  t.match((await blueGreenAction.plan({ ...ref, options: { colours: ['red', 'black'] } }, context(k))).refusal?.message, /none of red\/black/);
});

t.test('canary: canary to 0 first, then stable up', async (t) => {
  const kube = new FakeKube();
  kube.add(RESOURCES.deployments, dep('backend-api-canary', { app: 'backend-api', track: 'canary' }, 2));
  kube.add(RESOURCES.deployments, dep('backend-api-stable', { app: 'backend-api', track: 'stable' }, 8));
  const ctx = context(kube);
  const ref = { kind: 'Canary' as const, namespace: NS, name: 'backend-api' };
  const plan = await canaryAction.plan(ref, ctx);
  const rv = (n: string) => kube.peek(RESOURCES.deployments, NS, n)!.metadata.resourceVersion;
  t.same(plan.writes!.map((w) => [w.name, w.patch, w.precondition]), [
    ['backend-api-canary', { metadata: { resourceVersion: rv('backend-api-canary'), annotations: { 'kubernetes.io/change-cause': CAUSE } }, spec: { replicas: 0 } }, 'resource-version'],
    ['backend-api-stable', { metadata: { resourceVersion: rv('backend-api-stable') }, spec: { replicas: 10 } }, 'resource-version'],
  ]);
  await canaryAction.execute(plan, ctx);
  t.equal(ctx.fenceCalls, 2, 'fence before each write');
  t.equal(kube.peek(RESOURCES.deployments, NS, 'backend-api-canary')!.spec.replicas, 0);
  t.equal(kube.peek(RESOURCES.deployments, NS, 'backend-api-stable')!.spec.replicas, 10);
  t.equal((await canaryAction.plan(ref, ctx)).refusal?.code, 'already_matches');
  // verify: the fake has no controller; move status along by hand
  for (const [n, r] of [['backend-api-canary', 0], ['backend-api-stable', 10]] as const) {
    const d = kube.peek(RESOURCES.deployments, NS, n)!;
    d.status = { observedGeneration: d.metadata.generation, replicas: r, updatedReplicas: r, availableReplicas: r };
    kube.put(RESOURCES.deployments, d);
  }
  t.equal((await canaryAction.verify(plan, ctx, { timeoutMs: 50, pollMs: 5 })).outcome, 'succeeded');
  const explicit = await canaryAction.plan({ ...ref, options: { stableReplicas: 12 } }, ctx);
  t.same(explicit.writes!.map((w) => w.name), ['backend-api-stable'], 'canary already 0: only the stable write');
  t.same((await canaryAction.plan({ ...ref, options: { canary: 'x' } }, ctx)).refusal, { code: 'not_found', message: 'deployments.apps "x" not found' });
});

function canaryCluster(canary = 2, stable = 8): FakeKube {
  const kube = new FakeKube();
  kube.add(RESOURCES.deployments, dep('backend-api-canary', { app: 'backend-api', track: 'canary' }, canary));
  kube.add(RESOURCES.deployments, dep('backend-api-stable', { app: 'backend-api', track: 'stable' }, stable));
  return kube;
}
const CANARY_REF = { kind: 'Canary' as const, namespace: NS, name: 'backend-api' };
const scale = (kube: FakeKube, name: string, replicas: number) => {
  const d = kube.peek(RESOURCES.deployments, NS, name)!;
  d.spec.replicas = replicas;
  kube.put(RESOURCES.deployments, d);
};
const replicasOf = (kube: FakeKube, name: string) => kube.peek(RESOURCES.deployments, NS, name)!.spec.replicas;

t.test('canary: a scale of the stable Deployment between plan and execute is not scaled over', async (t) => {
  const kube = canaryCluster();
  const ctx = context(kube);
  const plan = await canaryAction.plan(CANARY_REF, ctx);
  scale(kube, 'backend-api-stable', 20); // an HPA, or a person
  const res = await canaryAction.execute(plan, ctx);
  t.equal(res.applied, false);
  t.equal(res.refusal?.code, 'changed_since_plan');
  t.equal(
    res.refusal?.message,
    'stable deployment "backend-api-stable" was scaled from 8 to 20 after the rollback was planned (an HPA or a person): not scaled over to 10; canary "backend-api-canary" is at 0; scale "backend-api-stable" by hand if it needs the canary\'s capacity',
  );
  t.equal(replicasOf(kube, 'backend-api-stable'), 20, 'the new count kept, not overwritten with 10');
  t.equal(replicasOf(kube, 'backend-api-canary'), 0, 'the canary write, first, landed');
  t.same(res.partlyWritten, ['scale canary backend-api-canary from 2 to 0']);
  t.same(kube.patches().map((c) => c.name), ['backend-api-canary', 'backend-api-stable'], 'the stable write was sent once, and refused (409)');

  // the canary scaled (not to 0) between plan and execute: nothing written
  const k2 = canaryCluster();
  const c2 = context(k2);
  const p2 = await canaryAction.plan(CANARY_REF, c2);
  scale(k2, 'backend-api-canary', 3);
  const r2 = await canaryAction.execute(p2, c2);
  t.equal(r2.refusal?.code, 'changed_since_plan');
  t.match(r2.refusal?.message, /canary deployment "backend-api-canary" was scaled from 2 to 3 after the rollback was planned/);
  t.notOk(r2.partlyWritten);
  t.equal(replicasOf(k2, 'backend-api-canary'), 3);
  t.equal(replicasOf(k2, 'backend-api-stable'), 8);
});

t.test('canary: a conflict that changed no replicas re-plans with the planned stable count', async (t) => {
  const kube = canaryCluster();
  const ctx = context(kube);
  const plan = await canaryAction.plan(CANARY_REF, ctx);
  // the stable Deployment's status moved on (a new resourceVersion, the same replicas)
  const d = kube.peek(RESOURCES.deployments, NS, 'backend-api-stable')!;
  d.status = { ...d.status, availableReplicas: 7 };
  kube.put(RESOURCES.deployments, d);
  const res = await canaryAction.execute(plan, ctx);
  t.equal(res.applied, true, res.message);
  t.equal(res.attempts, 2);
  t.equal(replicasOf(kube, 'backend-api-canary'), 0);
  t.equal(replicasOf(kube, 'backend-api-stable'), 10, 'stable + canary as planned, though the canary is at 0 by then');
  t.same(kube.patches().map((c) => c.name), ['backend-api-canary', 'backend-api-stable', 'backend-api-stable']);
});

t.test('canary: recovering its own rollback cut off after the canary write, the plan goes on with the stable count the record keeps', async (t) => {
  const kube = canaryCluster();
  const ctx = context(kube);
  const first = await canaryAction.plan(CANARY_REF, ctx);
  const firstWrites = summarisePlan(first).writes!;
  t.same(firstWrites[1]!.replicas, { before: 8, after: 10 }, 'the record keeps the stable count chosen, and the one read');
  t.same(firstWrites[0]!.replicas, undefined, 'the canary write is known by its change cause');
  await canaryAction.execute({ ...first, writes: first.writes!.slice(0, 1) }, ctx); // the replica dies here
  const recovering = context(kube, { recovering: true, firstWrites });
  const plan = await canaryAction.plan(CANARY_REF, recovering);
  t.notOk(plan.refusal, plan.refusal?.message ?? '');
  t.equal(plan.resumes, true);
  t.equal(plan.summary, 'canary shop/backend-api-canary already at 0, scaled by this rollback before it was cut off; go on: scale stable backend-api-stable from 8 to 10');
  t.same(plan.writes!.map((w) => [w.name, (w.patch as { spec: unknown }).spec, w.precondition]), [['backend-api-stable', { replicas: 10 }, 'resource-version']]);
  // not this rollback's: planned from scratch, as before
  t.equal((await canaryAction.plan(CANARY_REF, context(kube, { firstWrites }))).refusal?.code, 'already_matches', 'not recovering');
  t.equal((await canaryAction.plan(CANARY_REF, context(kube, { recovering: true, firstWrites, changeCause: 'rollguard: rollback rb-other' }))).refusal?.code, 'already_matches', "another rollback's change cause");
  t.equal((await canaryAction.plan(CANARY_REF, context(kube, { recovering: true }))).refusal?.code, 'already_matches', 'a record that keeps no count');
  // the stable Deployment scaled since: refused, without `current` (not taken as applied)
  scale(kube, 'backend-api-stable', 12);
  const moved = await canaryAction.plan(CANARY_REF, recovering);
  t.equal(moved.refusal?.code, 'changed_since_plan');
  t.match(moved.refusal?.message, /stable deployment "backend-api-stable" was scaled from 8 to 12 since \(an HPA or a person\): not scaled over to 10/);
  t.notOk(moved.current);
  // the stable write landed too: nothing to go on with
  scale(kube, 'backend-api-stable', 10);
  t.equal((await canaryAction.plan(CANARY_REF, recovering)).refusal?.code, 'already_matches');
});

t.test('canary: the stable Deployment is not scaled up by a canary of 5,000 replicas', async (t) => {
  const kube = canaryCluster(5000, 8);
  const ctx = context(kube);
  const plan = await canaryAction.plan(CANARY_REF, ctx);
  t.equal(plan.refusal?.code, 'unsupported');
  t.equal(
    plan.refusal?.message,
    'stable deployment "backend-api-stable" would be scaled from 8 to 5008 (its replicas plus canary "backend-api-canary"\'s 5000), more than 26 (twice its replicas plus 10): check who set the canary\'s replicas, and roll back by hand or with options.stableReplicas set to the count the stable Deployment should run (POST /v1/rollbacks)',
  );
  t.notOk(plan.writes, 'nothing to write');
  t.equal(kube.patches().length, 0);
  // at the bound: planned
  t.notOk((await canaryAction.plan(CANARY_REF, context(canaryCluster(18, 8)))).refusal, '8 + 18 = 26');
  t.equal((await canaryAction.plan(CANARY_REF, context(canaryCluster(19, 8)))).refusal?.code, 'unsupported', '8 + 19 = 27');
  // a stable count set explicitly is the operator's
  const explicit = await canaryAction.plan({ ...CANARY_REF, options: { stableReplicas: 12 } }, ctx);
  t.notOk(explicit.refusal);
  t.same(explicit.writes!.map((w) => (w.patch as { spec: unknown }).spec), [{ replicas: 0 }, { replicas: 12 }]);
});

const RO_UID = 'ro-uid';
function rolloutCluster(): FakeKube {
  const kube = new FakeKube();
  const tpl = (image: string) => ({ metadata: { labels: { app: 'guestbook' } }, spec: { containers: [{ name: 'app', image }] } });
  kube.add(RESOURCES.rollouts, {
    apiVersion: 'argoproj.io/v1alpha1',
    kind: 'Rollout',
    metadata: { name: 'guestbook', namespace: NS, uid: RO_UID, generation: 2, annotations: { 'rollout.argoproj.io/revision': '2' } },
    spec: { replicas: 2, selector: { matchLabels: { app: 'guestbook' } }, template: tpl('gb:v2'), strategy: { canary: { steps: [{ setWeight: 20 }] } } },
    status: { stableRS: 'aaa', currentPodHash: 'bbb' },
  });
  const rs = (hash: string, rev: number, image: string, replicas: number): KubeObject => ({
    metadata: {
      name: `guestbook-${hash}`,
      namespace: NS,
      labels: { app: 'guestbook', 'rollouts-pod-template-hash': hash },
      annotations: { 'rollout.argoproj.io/revision': String(rev) },
      ownerReferences: [{ apiVersion: 'argoproj.io/v1alpha1', kind: 'Rollout', name: 'guestbook', uid: RO_UID, controller: true }],
    },
    spec: {
      replicas,
      template: {
        metadata: { labels: { app: 'guestbook', 'rollouts-pod-template-hash': hash } },
        spec: { containers: [{ name: 'app', image, imagePullPolicy: 'IfNotPresent', terminationMessagePath: '/dev/termination-log' }], restartPolicy: 'Always' },
      },
    },
    status: { replicas, availableReplicas: replicas },
  });
  kube.add(RESOURCES.replicasets, rs('aaa', 1, 'gb:v1', 2));
  kube.add(RESOURCES.replicasets, rs('bbb', 2, 'gb:v2', 1));
  return kube;
}

t.test('Argo Rollout abort: status.abort through the status subresource, falling back like the plugin', async (t) => {
  const kube = rolloutCluster();
  const ctx = context(kube);
  const ref = { kind: 'Rollout' as const, namespace: NS, name: 'guestbook' };
  const plan = await argoRolloutAction.plan(ref, ctx);
  const ro0 = kube.peek(RESOURCES.rollouts, NS, 'guestbook')!;
  t.same(plan.writes![0], {
    ...plan.writes![0],
    patchType: 'json',
    patch: [
      { op: 'test', path: '/metadata/uid', value: ro0.metadata.uid },
      { op: 'test', path: '/metadata/generation', value: ro0.metadata.generation },
      { op: 'add', path: '/status/abort', value: true },
    ],
    precondition: 'json-test',
    subresource: 'status',
  });
  t.equal(plan.fromRevision, 2);
  t.equal(plan.toRevision, 1, 'the stable revision');
  await argoRolloutAction.execute(plan, ctx);
  t.equal(kube.peek(RESOURCES.rollouts, NS, 'guestbook')!.status.abort, true);
  t.equal((await argoRolloutAction.verify(plan, ctx, { timeoutMs: 50, pollMs: 5 })).outcome, 'succeeded', 'stable RS has 2/2 available');
  t.equal((await argoRolloutAction.plan(ref, ctx)).refusal?.code, 'already_matches');

  const k2 = rolloutCluster();
  const c2 = context(k2);
  const p2 = await argoRolloutAction.plan(ref, c2);
  k2.failNext('patch', (c) => (c.subresource === 'status' ? new KubeApiError({ status: 404, reason: 'NotFound', message: 'the server could not find the requested resource', operation: 'PATCH' }) : null));
  const r2 = await argoRolloutAction.execute(p2, c2);
  t.equal(r2.applied, true);
  t.same(k2.patches().map((p) => p.subresource ?? 'main'), ['status', 'main']);
});

t.test('Argo Rollout undo: like the plugin', async (t) => {
  const kube = rolloutCluster();
  const ctx = context(kube);
  const ref = { kind: 'Rollout' as const, namespace: NS, name: 'guestbook', options: { mode: 'undo' as const } };
  const plan = await argoRolloutAction.plan(ref, ctx);
  t.equal(plan.toRevision, 1);
  const ops = plan.writes![0]!.patch as { op: string; path: string; value: unknown }[];
  t.same(ops.map((o) => [o.op, o.path]), [
    ['test', '/metadata/uid'],
    ['test', '/metadata/generation'],
    ['replace', '/spec/template'],
    ['add', '/metadata/annotations/kubernetes.io~1change-cause'],
  ]);
  t.notOk((ops[2]!.value as { metadata: { labels: Record<string, string> } }).metadata.labels['rollouts-pod-template-hash']);
  await argoRolloutAction.execute(plan, ctx);
  const ro = kube.peek(RESOURCES.rollouts, NS, 'guestbook')!;
  t.equal(ro.spec.template.spec.containers[0].image, 'gb:v1');
  t.equal(ro.metadata.annotations!['kubernetes.io/change-cause'], CAUSE);
  // the Rollout's undefaulted template is "derivative" of the defaulted ReplicaSet template
  const same = await argoRolloutAction.plan({ ...ref, toRevision: 1 }, ctx);
  t.same(same.refusal, { code: 'already_matches', message: 'skipped rollback (current template already matches revision 1)' });
  t.same((await argoRolloutAction.plan({ ...ref, toRevision: 9 }, ctx)).refusal, { code: 'revision_not_found', message: 'unable to find specified revision 9 in history' });
  const lone = rolloutCluster();
  lone.objects.delete('replicasets.apps/shop/guestbook-aaa');
  t.same((await argoRolloutAction.plan(ref, context(lone))).refusal, { code: 'no_history', message: 'no revision found for rollout "guestbook"' });
  t.same((await argoRolloutAction.plan({ ...ref, name: 'x' }, ctx)).refusal?.message, 'rollouts.argoproj.io "x" not found');
});

t.test('Argo Rollout undo refuses a Rollout whose pod template is not its own (spec.workloadRef), or is missing', async (t) => {
  const ref = { kind: 'Rollout' as const, namespace: NS, name: 'guestbook', options: { mode: 'undo' as const } };
  // the pod template lives in Deployment guestbook-tpl: the Rollout has no spec.template
  const kube = rolloutCluster();
  const ro = kube.peek(RESOURCES.rollouts, NS, 'guestbook')!;
  delete ro.spec.template;
  ro.spec.workloadRef = { apiVersion: 'apps/v1', kind: 'Deployment', name: 'guestbook-tpl' };
  kube.put(RESOURCES.rollouts, ro);
  const ctx = context(kube);
  const plan = await argoRolloutAction.plan(ref, ctx);
  t.equal(plan.refusal?.code, 'unsupported', 'not "already matches": nothing was compared');
  t.match(plan.refusal?.message, /takes its pod template from Deployment "guestbook-tpl" \(spec\.workloadRef\)/);
  t.match(plan.refusal?.message, /roll back Deployment "guestbook-tpl"'s template .*or use mode abort/);
  t.notMatch(plan.refusal?.message, /already matches/);
  t.notOk(plan.writes, 'nothing to write');
  t.equal(kube.patches().length, 0);
  // abort still works: it writes only the Rollout's status
  const abort = await argoRolloutAction.plan({ ...ref, options: { mode: 'abort' as const } }, ctx);
  t.notOk(abort.refusal);

  // no workloadRef, but no template either (or an empty one)
  for (const template of [undefined, {}, { metadata: { labels: { app: 'guestbook' } } }]) {
    const k = rolloutCluster();
    const r = k.peek(RESOURCES.rollouts, NS, 'guestbook')!;
    if (template === undefined) delete r.spec.template;
    else r.spec.template = template;
    k.put(RESOURCES.rollouts, r);
    const p = await argoRolloutAction.plan(ref, context(k));
    t.same(p.refusal, { code: 'unsupported', message: 'rollout "guestbook" has no spec.template to roll back (none, or one without containers): fix the Rollout\'s spec, or use mode abort' }, JSON.stringify(template));
  }

  // the revision's ReplicaSet has no pod template: not written over the Rollout's
  const k = rolloutCluster();
  const rs = k.peek(RESOURCES.replicasets, NS, 'guestbook-aaa')!;
  rs.spec.template = {};
  k.put(RESOURCES.replicasets, rs);
  const p = await argoRolloutAction.plan(ref, context(k));
  t.same(p.refusal, { code: 'unsupported', message: 'ReplicaSet guestbook-aaa of revision 1 has no pod template to restore: pick another revision (toRevision)' });
});

t.test('registry: one action per kind', async (t) => {
  const a = createActions();
  t.same(Object.keys(a).sort(), ['BlueGreen', 'Canary', 'ConfigMap', 'DaemonSet', 'Deployment', 'HelmRelease', 'Rollout', 'StatefulSet', 'VirtualService']);
  for (const [k, v] of Object.entries(a)) t.equal(v.kind, k);
});
