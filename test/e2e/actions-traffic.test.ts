// Blue-green switch, canary scale-down and Argo Rollout abort/undo against the real control plane
// (the real ReplicaSet and Deployment controllers, kwok pods), acting with rollguard's
// ServiceAccount rights.
import t from 'tap';
import pino from 'pino';
import { startCluster, type Cluster } from '../cluster/harness.js';
import { blueGreenAction } from '../../src/actions/blue-green.js';
import { canaryAction } from '../../src/actions/canary.js';
import { argoRolloutAction } from '../../src/actions/argo-rollout.js';
import type { ActionContext } from '../../src/actions/action.js';
import { ClientNodeKube } from '../../src/kube/client.js';
import type { KubeObject } from '../../src/kube/kube.js';
import { loadKubeConfig } from '../../src/kube/config.js';
import { trafficWorkloads } from '../cluster/traffic-workloads.js';

const NS = 'e2e-traffic';
const CAUSE = 'rollguard: rule high-error-rate, alert HighErrorRate (fp 77aa), rollback r-e2e';

const cluster: Cluster = await startCluster();
t.teardown(() => cluster.stop({ keep: !t.passing() }));
t.comment(`control plane at ${cluster.server}, logs in ${cluster.logDir}`);

const kube = new ClientNodeKube((await loadKubeConfig({ mode: 'kubeconfig', path: cluster.rollguardKubeconfig }))!);
const ctx: ActionContext = { kube, logger: pino({ level: 'silent' }), changeCause: CAUSE, checkFence: async () => {} };

const { api, available, create, blueGreen } = trafficWorkloads(cluster, NS);

await cluster.kubectl(['create', 'namespace', NS], { check: true });

t.test('blue-green: the Service goes back to blue, as the runbook’s kubectl patch', async (t) => {
  await blueGreen('hotswap-api', 2);
  const ref = { kind: 'BlueGreen' as const, namespace: NS, name: 'hotswap-api' };
  const plan = await blueGreenAction.plan(ref, ctx);
  t.notOk(plan.refusal, plan.refusal?.message ?? plan.summary);
  const exec = await blueGreenAction.execute(plan, ctx);
  t.equal(exec.applied, true);
  const v = await blueGreenAction.verify(plan, ctx, { timeoutMs: 30_000, pollMs: 250, execution: exec });
  t.equal(v.outcome, 'succeeded', v.message);
  const sel = await cluster.kubectl(['-n', NS, 'get', 'service', 'hotswap-api', '-o', 'jsonpath={.spec.selector}'], { check: true });
  t.same(JSON.parse(sel.stdout), { app: 'hotswap-api', version: 'blue' });
  const again = await blueGreenAction.plan(ref, ctx);
  t.equal(again.refusal?.code, 'unsupported', `no switch forward to the newer green: ${again.refusal?.message}`);
});

t.test('canary: canary to 0, stable up', async (t) => {
  await create('backend-api-stable', { app: 'backend-api', track: 'stable' }, 3);
  await create('backend-api-canary', { app: 'backend-api', track: 'canary' }, 1);
  await available('backend-api-stable');
  await available('backend-api-canary');
  const plan = await canaryAction.plan({ kind: 'Canary', namespace: NS, name: 'backend-api' }, ctx);
  t.match(plan.summary, /to 0 and stable backend-api-stable to 4/);
  const exec = await canaryAction.execute(plan, ctx);
  const v = await canaryAction.verify(plan, ctx, { timeoutMs: 60_000, pollMs: 250, execution: exec });
  t.equal(v.outcome, 'succeeded', v.message);
  const stable = await available('backend-api-stable');
  t.equal(stable.status?.availableReplicas, 4);
  const canary = await cluster.request<KubeObject>('GET', api('deployments/backend-api-canary'));
  t.equal(canary.spec.replicas, 0);
  t.equal(canary.metadata.annotations?.['kubernetes.io/change-cause'], CAUSE);
});

t.test('Argo Rollout: abort through the status subresource, undo through the spec', async (t) => {
  const template = (image: string) => ({ metadata: { labels: { app: 'guestbook' } }, spec: { containers: [{ name: 'app', image }] } });
  const ro = await cluster.request<KubeObject>('POST', `/apis/argoproj.io/v1alpha1/namespaces/${NS}/rollouts`, {
    apiVersion: 'argoproj.io/v1alpha1',
    kind: 'Rollout',
    metadata: { name: 'guestbook', annotations: { 'rollout.argoproj.io/revision': '2' } },
    spec: {
      replicas: 2,
      selector: { matchLabels: { app: 'guestbook' } },
      template: template('guestbook:v2'),
      strategy: { canary: { steps: [{ setWeight: 50 }, { pause: {} }] } },
    },
  });
  // no Argo controller here: stand in for it with the ReplicaSets it would have made (the real
  // ReplicaSet controller runs their pods) and the status it would have written
  const rs = (hash: string, rev: number, image: string, replicas: number) => ({
    apiVersion: 'apps/v1',
    kind: 'ReplicaSet',
    metadata: {
      name: `guestbook-${hash}`,
      labels: { app: 'guestbook', 'rollouts-pod-template-hash': hash },
      annotations: { 'rollout.argoproj.io/revision': String(rev) },
      ownerReferences: [{ apiVersion: 'argoproj.io/v1alpha1', kind: 'Rollout', name: 'guestbook', uid: ro.metadata.uid, controller: true, blockOwnerDeletion: true }],
    },
    spec: {
      replicas,
      selector: { matchLabels: { app: 'guestbook', 'rollouts-pod-template-hash': hash } },
      template: { ...template(image), metadata: { labels: { app: 'guestbook', 'rollouts-pod-template-hash': hash } } },
    },
  });
  await cluster.request('POST', api('replicasets'), rs('6b8f7d', 1, 'guestbook:v1', 2));
  await cluster.request('POST', api('replicasets'), rs('9c4d2e', 2, 'guestbook:v2', 1));
  await cluster.request('PATCH', `/apis/argoproj.io/v1alpha1/namespaces/${NS}/rollouts/guestbook/status`, {
    status: { stableRS: '6b8f7d', currentPodHash: '9c4d2e', phase: 'Paused' },
  });
  await cluster.poll('stable ReplicaSet pods available', () => cluster.request<KubeObject>('GET', api('replicasets/guestbook-6b8f7d')), (r) => r.status?.availableReplicas === 2);

  const ref = { kind: 'Rollout' as const, namespace: NS, name: 'guestbook' };
  const abort = await argoRolloutAction.plan(ref, ctx);
  t.notOk(abort.refusal, abort.summary);
  t.equal(abort.toRevision, 1, 'back to the stable revision');
  const exec = await argoRolloutAction.execute(abort, ctx);
  t.equal(exec.applied, true, exec.message);
  const after = await cluster.request<KubeObject>('GET', `/apis/argoproj.io/v1alpha1/namespaces/${NS}/rollouts/guestbook`);
  t.equal(after.status?.abort, true, 'status.abort set, as kubectl argo rollouts abort');
  t.equal(after.spec.template.spec.containers[0].image, 'guestbook:v2', 'spec untouched by abort');
  const v = await argoRolloutAction.verify(abort, ctx, { timeoutMs: 20_000, pollMs: 250, execution: exec });
  t.equal(v.outcome, 'succeeded', v.message);
  t.equal((await argoRolloutAction.plan(ref, ctx)).refusal?.code, 'already_matches');

  const undoRef = { ...ref, options: { mode: 'undo' as const } };
  const undo = await argoRolloutAction.plan(undoRef, ctx);
  t.notOk(undo.refusal, undo.summary);
  const ex2 = await argoRolloutAction.execute(undo, ctx);
  t.equal(ex2.applied, true, ex2.message);
  const r2 = await cluster.request<KubeObject>('GET', `/apis/argoproj.io/v1alpha1/namespaces/${NS}/rollouts/guestbook`);
  const v1rs = await cluster.request<KubeObject>('GET', api('replicasets/guestbook-6b8f7d'));
  const expected = structuredClone(v1rs.spec.template);
  delete expected.metadata.labels['rollouts-pod-template-hash'];
  t.same(r2.spec.template, expected, 'the v1 ReplicaSet’s template (as the API server defaulted it), without the rollouts-pod-template-hash label, as the plugin copies it');
  t.equal(r2.spec.template.spec.containers[0].image, 'guestbook:v1');
  t.equal(r2.metadata.annotations?.['kubernetes.io/change-cause'], CAUSE);
  const v2 = await argoRolloutAction.verify(undo, ctx, { timeoutMs: 1500, pollMs: 250, execution: ex2 });
  t.equal(v2.outcome, 'unverified', `no Argo controller runs here, so the undo cannot be confirmed: ${v2.message}`);
  const same = await argoRolloutAction.plan({ ...undoRef, toRevision: 1 }, ctx);
  t.same(same.refusal, { code: 'already_matches', message: 'skipped rollback (current template already matches revision 1)' }, 'undefaulted Rollout template vs defaulted ReplicaSet template: derivative-equal');
});
