// rollguard's Argo Rollout action against the real Argo Rollouts controller (rollouts-controller
// built from github.com/argoproj/argo-rollouts) on the test control plane: the controller makes the
// ReplicaSets and moves the canary; rollguard aborts it with its ServiceAccount's rights, and the
// controller takes it back to the stable ReplicaSet. Undo is then confirmed by the controller too.
import t from 'tap';
import pino from 'pino';
import { startCluster, type Cluster } from '../cluster/harness.js';
import { startArgoRollouts } from '../cluster/reconcilers.js';
import { argoRolloutAction } from '../../src/actions/argo-rollout.js';
import type { ActionContext } from '../../src/actions/action.js';
import { ClientNodeKube } from '../../src/kube/client.js';
import type { KubeObject } from '../../src/kube/kube.js';
import { loadKubeConfig } from '../../src/kube/config.js';

const NS = 'e2e-argo-controller';
const CAUSE = 'rollguard: rule high-error-rate, alert HighErrorRate (fp 99bb), rollback r-argo';

const cluster: Cluster = await startCluster();
const rollouts = await startArgoRollouts(cluster).catch(async (e) => {
  await cluster.stop({ keep: true });
  throw e;
});
t.teardown(async () => {
  await rollouts.stop();
  await cluster.stop({ keep: !t.passing() });
});
t.comment(`control plane at ${cluster.server}, logs in ${cluster.logDir}`);

const kube = new ClientNodeKube((await loadKubeConfig({ mode: 'kubeconfig', path: cluster.rollguardKubeconfig }))!);
const ctx: ActionContext = { kube, logger: pino({ level: 'silent' }), changeCause: CAUSE, checkFence: async () => {} };
const roPath = `/apis/argoproj.io/v1alpha1/namespaces/${NS}/rollouts/guestbook`;
const getRo = () => cluster.request<KubeObject>('GET', roPath);
const replicaSets = async () =>
  (await cluster.request<{ items: KubeObject[] }>('GET', `/apis/apps/v1/namespaces/${NS}/replicasets?labelSelector=app%3Dguestbook`)).items;
const hash = (rs: KubeObject) => rs.metadata.labels?.['rollouts-pod-template-hash'];
const imageOf = (o: KubeObject) => o.spec.template.spec.containers[0].image as string;

await cluster.kubectl(['create', 'namespace', NS], { check: true });
await cluster.request('POST', `/apis/argoproj.io/v1alpha1/namespaces/${NS}/rollouts`, {
  apiVersion: 'argoproj.io/v1alpha1',
  kind: 'Rollout',
  metadata: { name: 'guestbook' },
  spec: {
    replicas: 2,
    revisionHistoryLimit: 5,
    selector: { matchLabels: { app: 'guestbook' } },
    template: { metadata: { labels: { app: 'guestbook' } }, spec: { containers: [{ name: 'app', image: 'guestbook:v1' }] } },
    strategy: { canary: { steps: [{ setWeight: 50 }, { pause: {} }] } },
  },
});

t.test('the controller makes revision 1 stable, then pauses the canary of revision 2', async (t) => {
  const healthy = await cluster.poll('revision 1 Healthy', getRo, (r) => r.status?.phase === 'Healthy' && !!r.status?.stableRS && (r.status?.availableReplicas ?? 0) === 2);
  const stable = healthy.status.stableRS as string;
  await cluster.request('PATCH', roPath, { spec: { template: { spec: { containers: [{ name: 'app', image: 'guestbook:v2' }] } } } });
  const paused = await cluster.poll('canary paused at its pause step', getRo, (r) =>
    r.status?.phase === 'Paused' && r.status?.currentPodHash !== stable && r.status?.stableRS === stable && (r.status?.currentStepIndex ?? 0) >= 1,
  );
  const rss = await replicaSets();
  const canary = rss.find((rs) => hash(rs) === paused.status.currentPodHash);
  t.ok(canary, 'the controller made the canary ReplicaSet');
  t.equal(imageOf(canary!), 'guestbook:v2');
  t.equal(canary!.metadata.annotations?.['rollout.argoproj.io/revision'], '2');
  t.ok((canary!.spec.replicas ?? 0) >= 1, 'the canary has pods (setWeight 50)');
});

t.test('abort: rollguard sets status.abort, the controller moves the Rollout back to stable', async (t) => {
  const ref = { kind: 'Rollout' as const, namespace: NS, name: 'guestbook' };
  const plan = await argoRolloutAction.plan(ref, ctx);
  t.notOk(plan.refusal, plan.summary);
  t.equal(plan.fromRevision, 2);
  t.equal(plan.toRevision, 1, 'back to the stable revision');
  const exec = await argoRolloutAction.execute(plan, ctx);
  t.equal(exec.applied, true, exec.message);
  const v = await argoRolloutAction.verify(plan, ctx, { timeoutMs: 60_000, pollMs: 250, execution: exec });
  t.equal(v.outcome, 'succeeded', v.message);

  const ro = await cluster.poll('controller recorded the abort', getRo, (r) => r.status?.phase === 'Degraded' && /RolloutAborted/.test(r.status?.message ?? ''));
  t.equal(ro.status.abort, true);
  t.equal(imageOf(ro), 'guestbook:v2', 'spec.template keeps the new version, as kubectl argo rollouts abort');
  const rss = await cluster.poll('canary scaled to 0 by the controller', replicaSets, (rss) =>
    rss.filter((rs) => hash(rs) !== ro.status.stableRS).every((rs) => (rs.spec.replicas ?? 0) === 0 && (rs.status?.replicas ?? 0) === 0),
  );
  const stable = rss.find((rs) => hash(rs) === ro.status.stableRS)!;
  t.equal(imageOf(stable), 'guestbook:v1');
  t.equal(stable.status?.availableReplicas, 2, 'all traffic on the stable ReplicaSet');
  t.equal((await argoRolloutAction.plan(ref, ctx)).refusal?.code, 'already_matches');
});

t.test('undo: the template of revision 1, and the controller confirms it', async (t) => {
  const ref = { kind: 'Rollout' as const, namespace: NS, name: 'guestbook', options: { mode: 'undo' as const } };
  const plan = await argoRolloutAction.plan(ref, ctx);
  t.notOk(plan.refusal, plan.summary);
  t.equal(plan.toRevision, 1);
  const exec = await argoRolloutAction.execute(plan, ctx);
  t.equal(exec.applied, true, exec.message);
  const v = await argoRolloutAction.verify(plan, ctx, { timeoutMs: 60_000, pollMs: 250, execution: exec });
  t.equal(v.outcome, 'succeeded', `the real controller confirms the undo: ${v.message}`);
  const ro = await getRo();
  t.equal(imageOf(ro), 'guestbook:v1');
  t.equal(ro.metadata.annotations?.['kubernetes.io/change-cause'], CAUSE);
  t.equal(ro.status.phase, 'Healthy', `phase ${ro.status.phase}: ${ro.status.message ?? ''}`);
});
