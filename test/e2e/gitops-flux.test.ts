// The real Flux reconcilers on the test control plane: a GitRepository on the local git server
// and a Kustomization apply a Deployment; a manual change (drift, as `kubectl set image` or a
// `kubectl rollout undo` would make) is put back within the Kustomization's interval;
// `spec.suspend: true` (what `flux suspend kustomization` sets) stops that until it is resumed.
import t from 'tap';
import { FLUX_NAMESPACE, startFluxEnvironment } from '../cluster/reconcilers.js';
import type { KubeObject } from '../../src/kube/kube.js';

const NS = 'shop';
const INTERVAL = '3s';

const { cluster, git, stop } = await startFluxEnvironment();
t.teardown(() => stop(!t.passing()));
t.comment(`control plane at ${cluster.server}, logs in ${cluster.logDir}`);

const deploymentYaml = (image: string, note = 'first') => `apiVersion: apps/v1
kind: Deployment
metadata:
  name: checkout
  namespace: ${NS}
  annotations:
    example.com/note: ${note}
spec:
  replicas: 2
  selector:
    matchLabels: { app: checkout }
  template:
    metadata:
      labels: { app: checkout }
    spec:
      containers:
        - name: app
          image: ${image}
`;

const repo = await git.createRepo('shop-config', { 'checkout/deployment.yaml': deploymentYaml('checkout:v1') });
await cluster.kubectl(['create', 'namespace', NS], { check: true });

const kustomizationPath = `/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/${FLUX_NAMESPACE}/kustomizations/checkout`;
const gitRepoPath = `/apis/source.toolkit.fluxcd.io/v1/namespaces/${FLUX_NAMESPACE}/gitrepositories/shop-config`;
const deployPath = `/apis/apps/v1/namespaces/${NS}/deployments/checkout`;
const image = (d: KubeObject) => d.spec.template.spec.containers[0].image as string;
const getDeploy = () => cluster.request<KubeObject>('GET', deployPath);
type ManagedField = { manager?: string; operation?: string };
const managers = (o: KubeObject) => ((o.metadata as { managedFields?: ManagedField[] }).managedFields ?? []);
const ready = (o: KubeObject) => (o.status?.conditions ?? []).find((c: { type: string }) => c.type === 'Ready');

await cluster.request('POST', `/apis/source.toolkit.fluxcd.io/v1/namespaces/${FLUX_NAMESPACE}/gitrepositories`, {
  apiVersion: 'source.toolkit.fluxcd.io/v1',
  kind: 'GitRepository',
  metadata: { name: 'shop-config' },
  spec: { url: repo.url, interval: INTERVAL, ref: { branch: 'main' } },
});
await cluster.request('POST', `/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/${FLUX_NAMESPACE}/kustomizations`, {
  apiVersion: 'kustomize.toolkit.fluxcd.io/v1',
  kind: 'Kustomization',
  metadata: { name: 'checkout' },
  spec: { interval: INTERVAL, path: './checkout', prune: true, sourceRef: { kind: 'GitRepository', name: 'shop-config' } },
});

t.test('a GitRepository + Kustomization apply the Deployment from git, with the Flux ownership labels', async (t) => {
  const head = await repo.head();
  const k = await cluster.poll('Kustomization Ready at the head commit', () => cluster.request<KubeObject>('GET', kustomizationPath), (k) =>
    ready(k)?.status === 'True' && k.status?.lastAppliedRevision === `main@sha1:${head}`,
  );
  t.equal(k.status.lastAppliedRevision, `main@sha1:${head}`);
  const d = await getDeploy();
  t.equal(image(d), 'checkout:v1');
  t.equal(d.metadata.labels?.['kustomize.toolkit.fluxcd.io/name'], 'checkout');
  t.equal(d.metadata.labels?.['kustomize.toolkit.fluxcd.io/namespace'], FLUX_NAMESPACE);
  t.ok(
    managers(d).some((f) => f.manager === 'kustomize-controller' && f.operation === 'Apply'),
    'server-side applied by kustomize-controller',
  );
  await cluster.poll('pods of revision 1 available', getDeploy, (d) => d.status?.availableReplicas === 2);
});

t.test('drift: a manual image change is put back by the Kustomization within its interval', async (t) => {
  await cluster.kubectl(['-n', NS, 'set', 'image', 'deployment/checkout', 'app=checkout:v2'], { check: true });
  const changed = await getDeploy();
  // the change happened (the controller may already be reverting it; the generation moved)
  t.ok((changed.metadata.generation ?? 0) >= 2, 'the manual change was written');
  const back = await cluster.poll('image back to checkout:v1', getDeploy, (d) => image(d) === 'checkout:v1' && (d.metadata.generation ?? 0) >= 3, 60_000);
  t.equal(image(back), 'checkout:v1', 're-applied from git');
  t.ok(
    managers(back).every((f) => f.manager !== 'kubectl-set'),
    'kubectl-set no longer owns a field: the controller took the image back',
  );
});

t.test('spec.suspend: true stops the reconciliation; resuming puts git back', async (t) => {
  await cluster.request('PATCH', kustomizationPath, { spec: { suspend: true } });
  await cluster.kubectl(['-n', NS, 'set', 'image', 'deployment/checkout', 'app=checkout:v2'], { check: true });
  // a new commit: the GitRepository (not suspended) fetches it; the suspended Kustomization must not apply it
  const next = await repo.commit({ 'checkout/deployment.yaml': deploymentYaml('checkout:v1', 'second') }, 'annotate the deployment');
  await cluster.poll('GitRepository artifact at the new commit', () => cluster.request<KubeObject>('GET', gitRepoPath), (g) =>
    g.status?.artifact?.revision === `main@sha1:${next}`,
  );
  // several Kustomization intervals after the source moved on (a wait, not a timing assertion)
  await new Promise((r) => setTimeout(r, 4 * 3_000));
  const held = await getDeploy();
  t.equal(image(held), 'checkout:v2', 'the manual change stays while suspended');
  t.equal(held.metadata.annotations?.['example.com/note'], 'first', 'the new commit is not applied while suspended');
  const k = await cluster.request<KubeObject>('GET', kustomizationPath);
  t.not(k.status?.lastAppliedRevision, `main@sha1:${next}`);

  await cluster.request('PATCH', kustomizationPath, { spec: { suspend: false } });
  const resumed = await cluster.poll('resumed: git applied again', getDeploy, (d) =>
    image(d) === 'checkout:v1' && d.metadata.annotations?.['example.com/note'] === 'second',
  60_000);
  t.equal(image(resumed), 'checkout:v1');
});
