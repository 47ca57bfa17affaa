// Deployment undo against the real control plane (test/cluster/harness.ts), side by side with the
// built kubectl: two namespaces hold identical twin Deployments; rollguard's action rolls back one,
// `kubectl rollout undo` the other, and the Deployments and their ReplicaSets must then match
// field for field (spec, revision annotations, names), the change-cause aside.
import t, { type Test } from 'tap';
import pino from 'pino';
import { startCluster, type Cluster } from '../cluster/harness.js';
import { deploymentAction } from '../../src/actions/deployment.js';
import type { ActionContext, RollbackPlan } from '../../src/actions/action.js';
import { ClientNodeKube } from '../../src/kube/client.js';
import type { KubeObject } from '../../src/kube/kube.js';
import { loadKubeConfig } from '../../src/kube/config.js';
import { deploymentState } from '../../src/kube/rollout-status.js';

const OURS = 'e2e-rg';
const THEIRS = 'e2e-kubectl';
const CAUSE = 'rollguard: rule high-error-rate, alert HighErrorRate (fp b5aac1d6), rollback r-e2e';
const REVISION = 'deployment.kubernetes.io/revision';

const cluster: Cluster = await startCluster({ argoCrds: false });
t.teardown(() => cluster.stop({ keep: !t.passing() }));
t.comment(`control plane at ${cluster.server}, logs in ${cluster.logDir}`);

// rollguard acts with its ServiceAccount's production rights
const kube = new ClientNodeKube((await loadKubeConfig({ mode: 'kubeconfig', path: cluster.rollguardKubeconfig }))!);
let fenceChecks = 0;
const ctx: ActionContext = {
  kube,
  logger: pino({ level: process.env.E2E_LOG ?? 'silent' }),
  changeCause: CAUSE,
  checkFence: async () => {
    fenceChecks++;
  },
};

const poll = cluster.poll;

const dep = (ns: string, name = 'web') => cluster.request<KubeObject>('GET', `/apis/apps/v1/namespaces/${ns}/deployments/${name}`);
async function replicaSets(ns: string, uid: string): Promise<KubeObject[]> {
  const l = await cluster.request<{ items: KubeObject[] }>('GET', `/apis/apps/v1/namespaces/${ns}/replicasets`);
  return l.items.filter((rs) => rs.metadata.ownerReferences?.some((o) => o.uid === uid && o.controller));
}
const settled = (d: KubeObject, revision: string) =>
  d.metadata.annotations?.[REVISION] === revision && (d.status?.observedGeneration ?? 0) >= (d.metadata.generation ?? 1);
const complete = (d: KubeObject, revision: string) =>
  settled(d, revision) &&
  d.status?.updatedReplicas === d.spec.replicas &&
  d.status?.replicas === d.spec.replicas &&
  d.status?.availableReplicas === d.spec.replicas;
async function quiet(ns: string, name: string, revision: string) {
  const d = await poll(`${ns}/${name} complete at revision ${revision}`, () => dep(ns, name), (d) => complete(d, revision));
  await poll(`${ns}/${name} ReplicaSets scaled`, () => replicaSets(ns, d.metadata.uid!), (l) =>
    l.every((rs) => rs.status?.replicas === rs.spec.replicas && (rs.status?.observedGeneration ?? 0) >= (rs.metadata.generation ?? 1)),
  );
}

function template(app: string, image: string, extra: Record<string, unknown> = {}) {
  return {
    metadata: { labels: { app, tier: 'frontend' }, annotations: { 'prometheus.io/scrape': 'true' } },
    spec: {
      containers: [
        {
          name: 'app',
          image,
          ports: [{ containerPort: 8080, name: 'http' }],
          env: [{ name: 'MODE', value: 'prod' }],
          resources: { requests: { cpu: '100m', memory: '64Mi' } },
        },
      ],
      ...extra,
    },
  };
}

async function createTwins(name: string, image: string, extra: Record<string, unknown> = {}) {
  for (const ns of [OURS, THEIRS]) {
    await cluster.request('POST', `/apis/apps/v1/namespaces/${ns}/deployments`, {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name, labels: { app: name }, annotations: { 'kubernetes.io/change-cause': `deploy ${image}`, team: 'payments' } },
      spec: {
        replicas: 3,
        progressDeadlineSeconds: 6,
        selector: { matchLabels: { app: name } },
        strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } },
        template: template(name, image, extra),
      },
    });
  }
}

/** The same merge patch on both twins (a deploy). */
async function deployBoth(name: string, body: unknown) {
  for (const ns of [OURS, THEIRS]) await cluster.request('PATCH', `/apis/apps/v1/namespaces/${ns}/deployments/${name}`, body);
}

const withoutCause = (a: Record<string, string> | undefined) => {
  const c = { ...(a ?? {}) };
  delete c['kubernetes.io/change-cause'];
  return c;
};

/** Deployment spec, generation and annotations, and every ReplicaSet (by name), must be equal. */
async function compareTwins(t: Test, name: string) {
  const [a, b] = await Promise.all([dep(OURS, name), dep(THEIRS, name)]);
  t.same(a.spec, b.spec, 'Deployment spec identical to kubectl’s');
  t.equal(a.metadata.generation, b.metadata.generation, 'same generation');
  t.same(withoutCause(a.metadata.annotations), withoutCause(b.metadata.annotations), 'Deployment annotations identical (change-cause aside)');
  t.equal(a.metadata.annotations?.['kubernetes.io/change-cause'], CAUSE, 'ours says which rule and alert rolled back');
  const [ra, rb] = await Promise.all([replicaSets(OURS, a.metadata.uid!), replicaSets(THEIRS, b.metadata.uid!)]);
  const names = (l: KubeObject[]) => l.map((r) => r.metadata.name).sort();
  t.same(names(ra), names(rb), 'same ReplicaSets (names carry the pod-template-hash)');
  for (const x of ra) {
    const y = rb.find((r) => r.metadata.name === x.metadata.name);
    if (!y) continue;
    t.same(x.spec, y.spec, `ReplicaSet ${x.metadata.name} spec identical`);
    t.same(withoutCause(x.metadata.annotations), withoutCause(y.metadata.annotations), `ReplicaSet ${x.metadata.name} annotations identical (revision ${x.metadata.annotations?.[REVISION]}, history ${x.metadata.annotations?.['deployment.kubernetes.io/revision-history'] ?? '-'})`);
  }
  return { ours: a, theirs: b };
}


async function rollguardUndo(t: Test, name: string, toRevision?: number): Promise<RollbackPlan> {
  const plan = await deploymentAction.plan({ kind: 'Deployment', namespace: OURS, name, ...(toRevision !== undefined ? { toRevision } : {}) }, ctx);
  t.notOk(plan.refusal, `plan not refused: ${plan.refusal?.message ?? plan.summary}`);
  const before = fenceChecks;
  const exec = await deploymentAction.execute(plan, ctx);
  t.equal(exec.applied, true, exec.message);
  t.equal(exec.attempts, 1);
  t.equal(fenceChecks, before + 1, 'the fence was checked before the write');
  const v = await deploymentAction.verify(plan, ctx, { timeoutMs: 60_000, pollMs: 200, execution: exec });
  t.equal(v.outcome, 'succeeded', `verify: ${v.message}`);
  return plan;
}

async function kubectlUndo(args: string[]) {
  return cluster.kubectl(['-n', THEIRS, 'rollout', 'undo', ...args], { kubeconfig: cluster.rollguardKubeconfig });
}

await cluster.kubectl(['create', 'namespace', OURS], { check: true });
await cluster.kubectl(['create', 'namespace', THEIRS], { check: true });

t.test('a bad v2 is rolled back to v1, exactly as kubectl rollout undo does', async (t) => {
  await createTwins('web', 'shop/web:v1');
  await quiet(OURS, 'web', '1');
  await quiet(THEIRS, 'web', '1');
  // bad v2: its pods can never be scheduled, so the rollout stalls past its progress deadline
  await deployBoth('web', {
    metadata: { annotations: { 'kubernetes.io/change-cause': 'deploy shop/web:v2' } },
    spec: { template: { spec: { containers: [{ name: 'app', image: 'shop/web:v2' }], nodeSelector: { 'rollguard.test/none': 'true' } } } },
  });
  for (const ns of [OURS, THEIRS]) {
    await poll(`${ns} v2 past its progress deadline`, () => dep(ns), (d) =>
      settled(d, '2') &&
      (d.status?.conditions ?? []).some((c: { type: string; reason?: string }) => c.type === 'Progressing' && c.reason === 'ProgressDeadlineExceeded'),
    );
  }
  // our rollout-status reading of the stalled v2 agrees with kubectl rollout status
  const stalled = await dep(THEIRS);
  const ks = await cluster.kubectl(['-n', THEIRS, 'rollout', 'status', 'deployment/web', '--timeout=5s'], { kubeconfig: cluster.rollguardKubeconfig });
  const st = deploymentState(stalled);
  t.equal(st.failed, true);
  t.not(ks.code, 0, 'kubectl rollout status fails too');
  t.ok(ks.stderr.includes(st.message), `kubectl: ${ks.stderr.trim()} / ours: ${st.message}`);

  const plan = await rollguardUndo(t, 'web');
  t.equal(plan.fromRevision, 2);
  t.equal(plan.toRevision, 1);
  const k = await kubectlUndo(['deployment/web']);
  t.equal(k.code, 0, `kubectl rollout undo: ${k.stderr}`);
  t.match(k.stdout, /rolled back/);
  const kst = await cluster.kubectl(['-n', THEIRS, 'rollout', 'status', 'deployment/web', '--timeout=60s'], { kubeconfig: cluster.rollguardKubeconfig });
  t.equal(kst.code, 0, `kubectl rollout status after kubectl's undo: ${kst.stdout.trim().split('\n').pop()}`);
  t.match(kst.stdout, 'deployment "web" successfully rolled out', 'the same words as our verify');
  await quiet(OURS, 'web', '3');
  await quiet(THEIRS, 'web', '3');
  const { ours } = await compareTwins(t, 'web');
  t.equal(ours.spec.template.spec.containers[0].image, 'shop/web:v1', 'v1 template is back');
  t.notOk(ours.spec.template.spec.nodeSelector, 'the bad v2 nodeSelector is gone');
  t.notOk(ours.spec.template.metadata.labels['pod-template-hash'], 'no pod-template-hash label in the Deployment template');
});

t.test('--to-revision, exactly as kubectl rollout undo --to-revision', async (t) => {
  await deployBoth('web', {
    metadata: { annotations: { 'kubernetes.io/change-cause': 'deploy shop/web:v3' } },
    spec: { template: { spec: { containers: [{ name: 'app', image: 'shop/web:v3' }] } } },
  });
  await quiet(OURS, 'web', '4');
  await quiet(THEIRS, 'web', '4');
  // revision 1 became revision 3 when it was restored: kubectl no longer finds 1
  const gone = await deploymentAction.plan({ kind: 'Deployment', namespace: OURS, name: 'web', toRevision: 1 }, ctx);
  const kGone = await kubectlUndo(['deployment/web', '--to-revision=1']);
  t.equal(gone.refusal?.code, 'revision_not_found');
  t.not(kGone.code, 0);
  t.match(kGone.stderr, gone.refusal!.message, `kubectl says the same: ${kGone.stderr.trim()}`);

  const plan = await rollguardUndo(t, 'web', 3);
  t.equal(plan.toRevision, 3);
  const k = await kubectlUndo(['deployment/web', '--to-revision=3']);
  t.equal(k.code, 0, `kubectl: ${k.stderr}`);
  await quiet(OURS, 'web', '5');
  await quiet(THEIRS, 'web', '5');
  const { ours } = await compareTwins(t, 'web');
  t.equal(ours.spec.template.spec.containers[0].image, 'shop/web:v1');

  // now the current template is revision 5: both skip
  const same = await deploymentAction.plan({ kind: 'Deployment', namespace: OURS, name: 'web', toRevision: 5 }, ctx);
  const kSame = await kubectlUndo(['deployment/web', '--to-revision=5']);
  t.equal(same.refusal?.code, 'already_matches');
  t.equal(kSame.code, 0);
  t.match(kSame.stdout, same.refusal!.message, `kubectl: ${kSame.stdout.trim()}`);
});

t.test('refusals match kubectl’s words', async (t) => {
  // paused
  for (const ns of [OURS, THEIRS]) await cluster.kubectl(['-n', ns, 'rollout', 'pause', 'deployment/web'], { check: true });
  const paused = await deploymentAction.plan({ kind: 'Deployment', namespace: OURS, name: 'web' }, ctx);
  const kPaused = await kubectlUndo(['deployment/web']);
  t.equal(paused.refusal?.code, 'paused');
  t.not(kPaused.code, 0);
  t.comment(`kubectl: ${kPaused.stderr.trim()}`);
  t.ok(kPaused.stderr.includes(paused.refusal!.message), `kubectl: ${kPaused.stderr.trim()} / ours: ${paused.refusal!.message}`);
  const d = await dep(OURS);
  t.equal(d.spec.paused, true, 'still paused, untouched');
  for (const ns of [OURS, THEIRS]) await cluster.kubectl(['-n', ns, 'rollout', 'resume', 'deployment/web'], { check: true });

  // no history
  await createTwins('solo', 'shop/solo:v1');
  await quiet(OURS, 'solo', '1');
  await quiet(THEIRS, 'solo', '1');
  const none = await deploymentAction.plan({ kind: 'Deployment', namespace: OURS, name: 'solo' }, ctx);
  const kNone = await kubectlUndo(['deployment/solo']);
  t.equal(none.refusal?.code, 'no_history');
  t.ok(kNone.stderr.includes(none.refusal!.message), `kubectl: ${kNone.stderr.trim()}`);

  // not found
  const ghost = await deploymentAction.plan({ kind: 'Deployment', namespace: OURS, name: 'ghost' }, ctx);
  const kGhost = await kubectlUndo(['deployment/ghost']);
  t.equal(ghost.refusal?.code, 'not_found');
  t.ok(kGhost.stderr.includes(ghost.refusal!.message), `kubectl: ${kGhost.stderr.trim()}`);
});

t.test('a concurrent change between plan and execute: failed precondition, fresh read, one retry', async (t) => {
  const plan = await deploymentAction.plan({ kind: 'Deployment', namespace: OURS, name: 'web' }, ctx);
  t.notOk(plan.refusal);
  // someone scales the Deployment meanwhile (resourceVersion moves on)
  await cluster.request('PATCH', `/apis/apps/v1/namespaces/${OURS}/deployments/web`, { spec: { replicas: 4 } });
  const exec = await deploymentAction.execute(plan, ctx);
  t.equal(exec.applied, true, exec.message);
  t.equal(exec.attempts, 2, 'the first write failed its generation test, the re-planned one went through');
  const d = await dep(OURS);
  t.equal(d.spec.replicas, 4, 'the concurrent scale is kept');
  t.equal(d.spec.template.spec.containers[0].image, 'shop/web:v3', 'and the rollback applied');
  await quiet(OURS, 'web', '6');

  // a deploy between plan and execute: the new revision is not rolled back blindly
  const plan2 = await deploymentAction.plan({ kind: 'Deployment', namespace: OURS, name: 'web' }, ctx);
  await cluster.request('PATCH', `/apis/apps/v1/namespaces/${OURS}/deployments/web`, {
    spec: { template: { spec: { containers: [{ name: 'app', image: 'shop/web:v4' }] } } },
  });
  await poll('revision 7 observed', () => dep(OURS), (d) => settled(d, '7'));
  const exec2 = await deploymentAction.execute(plan2, ctx);
  t.equal(exec2.applied, false);
  t.equal(exec2.refusal?.code, 'changed_since_plan', exec2.message);
  t.equal((await dep(OURS)).spec.template.spec.containers[0].image, 'shop/web:v4');
});

t.test('API errors become clear KubeApiErrors', async (t) => {
  // the rollguard ServiceAccount may not patch ReplicaSets: 403, reported once, not retried
  const err = await kube
    .patch({ group: 'apps', version: 'v1', plural: 'replicasets', kind: 'ReplicaSet' }, OURS, 'x', { metadata: {} }, 'merge')
    .then(() => null, (e: unknown) => e as { status: unknown; reason: string; retriable: boolean; message: string });
  t.equal(err?.status, 403);
  t.equal(err?.reason, 'Forbidden');
  t.equal(err?.retriable, false);
  t.match(err?.message, /cannot patch resource "replicasets"/);
  // a request deadline: 1 ms is too short for any answer
  const slow = new ClientNodeKube((await loadKubeConfig({ mode: 'kubeconfig', path: cluster.rollguardKubeconfig }))!, { timeoutMs: 1 });
  const te = await slow.get({ group: 'apps', version: 'v1', plural: 'deployments', kind: 'Deployment' }, OURS, 'web').then(
    () => null,
    (e: unknown) => e as { status: unknown; retriable: boolean },
  );
  t.equal(te?.status, 'timeout');
  t.equal(te?.retriable, true);
});

t.test('a Deployment deleted and created again under its name, same generation, between plan and execute: not written', async (t) => {
  const name = 'again';
  const body = (image: string) => ({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name },
    spec: { replicas: 1, selector: { matchLabels: { app: name } }, template: template(name, image) },
  });
  const setImage = (image: string) =>
    cluster.request('PATCH', `/apis/apps/v1/namespaces/${OURS}/deployments/${name}`, { spec: { template: { spec: { containers: [{ name: 'app', image }] } } } });
  await cluster.request('POST', `/apis/apps/v1/namespaces/${OURS}/deployments`, body('shop/again:v1'));
  await setImage('shop/again:v2');
  const old = await poll('revision 2 observed', () => dep(OURS, name), (d) => settled(d, '2'));
  const plan = await deploymentAction.plan({ kind: 'Deployment', namespace: OURS, name }, ctx);
  t.notOk(plan.refusal, plan.summary);
  t.equal(plan.toRevision, 1);
  // someone deletes it and creates another under the same name, deployed once since: generation 2 too
  await cluster.request('DELETE', `/apis/apps/v1/namespaces/${OURS}/deployments/${name}`);
  await poll('the old Deployment gone', () => cluster.request<{ items: KubeObject[] }>('GET', `/apis/apps/v1/namespaces/${OURS}/deployments`), (l) => !l.items.some((d) => d.metadata.name === name));
  await cluster.request('POST', `/apis/apps/v1/namespaces/${OURS}/deployments`, body('other/app:v1'));
  await setImage('other/app:v2');
  const now = await dep(OURS, name);
  t.not(now.metadata.uid, old.metadata.uid, 'another object');
  t.equal(now.metadata.generation, old.metadata.generation, 'with the generation plan() read');
  const exec = await deploymentAction.execute(plan, ctx);
  t.equal(exec.applied, false, exec.message);
  t.ok(exec.refusal, `refused: ${exec.refusal?.code}`);
  const after = await dep(OURS, name);
  t.equal(after.spec.template.spec.containers[0].image, 'other/app:v2', 'the new Deployment keeps its template');
  t.equal(after.metadata.generation, now.metadata.generation, 'and was not written');
});
