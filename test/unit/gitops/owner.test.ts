// Ownership detection, sync settings, suspend and resume on the in-memory Kube (the real Flux
// controllers and Argo CD's CRDs are in test/e2e/gitops-rollback.test.ts).
import t from 'tap';
import { RESOURCES, type KubeObject } from '../../../src/kube/kube.js';
import { KubeApiError } from '../../../src/kube/errors.js';
import { applicationSetIgnoresEnabled, argoOwnerRef } from '../../../src/gitops/argocd.js';
import { fluxOwnerRef, parseGoDuration } from '../../../src/gitops/flux.js';
import { findOwners } from '../../../src/gitops/owner.js';
import { resumeOwners, suspendOwners } from '../../../src/gitops/suspend.js';
import { OWNER_RESOURCES } from '../../../src/gitops/types.js';
import { FakeKube } from '../../support/fake-kube.js';

const ARGO = { namespace: 'argocd', instanceLabel: 'app.kubernetes.io/instance' };
const deploy = (meta: Partial<KubeObject['metadata']>): KubeObject => ({
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name: 'checkout', namespace: 'shop', ...meta },
  spec: {},
});
const TRACK = 'argocd.argoproj.io/tracking-id';

t.test('Argo CD tracking annotation: the Application, in the controller namespace or its own', async (t) => {
  t.same(argoOwnerRef(deploy({ annotations: { [TRACK]: 'checkout:apps/Deployment:shop/checkout' } }), ARGO), {
    tool: 'Argo CD', kind: 'Application', namespace: 'argocd', name: 'checkout', via: `annotation ${TRACK}`, byLabel: false,
  });
  t.match(argoOwnerRef(deploy({ annotations: { [TRACK]: 'team-a_checkout:apps/Deployment:shop/checkout' } }), ARGO), { namespace: 'team-a', name: 'checkout' });
  t.equal(argoOwnerRef(deploy({ annotations: { [TRACK]: 'checkout:apps/Deployment:shop/other' } }), ARGO), null, 'a tracking id naming another object (copied) does not count');
  t.equal(argoOwnerRef(deploy({ annotations: { [TRACK]: 'checkout:/ConfigMap:shop/checkout' } }), ARGO), null, 'another kind');
  t.equal(argoOwnerRef(deploy({ annotations: { [TRACK]: 'garbage' } }), ARGO), null);
  t.match(argoOwnerRef(deploy({ labels: { 'app.kubernetes.io/instance': 'checkout' } }), ARGO), { name: 'checkout', byLabel: true, via: 'label app.kubernetes.io/instance' });
  t.equal(argoOwnerRef(deploy({}), ARGO), null);
});

t.test('Flux labels: Kustomization or HelmRelease, both labels needed', async (t) => {
  t.match(fluxOwnerRef(deploy({ labels: { 'kustomize.toolkit.fluxcd.io/name': 'apps', 'kustomize.toolkit.fluxcd.io/namespace': 'flux-system' } })), { tool: 'Flux', kind: 'Kustomization', namespace: 'flux-system', name: 'apps' });
  t.match(fluxOwnerRef(deploy({ labels: { 'helm.toolkit.fluxcd.io/name': 'web', 'helm.toolkit.fluxcd.io/namespace': 'shop' } })), { kind: 'HelmRelease', namespace: 'shop', name: 'web' });
  t.equal(fluxOwnerRef(deploy({ labels: { 'kustomize.toolkit.fluxcd.io/name': 'apps' } })), null);
  t.same([parseGoDuration('5m'), parseGoDuration('1h30m'), parseGoDuration('500ms'), parseGoDuration('3s'), parseGoDuration('5 minutes')], [300_000, 5_400_000, 500, 3000, undefined]);
});

t.test('ApplicationSet ignoreApplicationDifferences covering automated.enabled', async (t) => {
  const set = (entries: unknown[]): KubeObject => ({ metadata: { name: 's' }, spec: { ignoreApplicationDifferences: entries } });
  t.equal(applicationSetIgnoresEnabled(set([]), 'a'), false);
  t.equal(applicationSetIgnoresEnabled(set([{ jsonPointers: ['/spec/syncPolicy'] }]), 'a'), true);
  t.equal(applicationSetIgnoresEnabled(set([{ jqPathExpressions: ['.spec.syncPolicy.automated.enabled'] }]), 'a'), true);
  t.equal(applicationSetIgnoresEnabled(set([{ name: 'b', jsonPointers: ['/spec'] }]), 'a'), false, 'an entry for another Application');
  t.equal(applicationSetIgnoresEnabled(set([{ jsonPointers: ['/spec/source'] }]), 'a'), false);
});

function cluster() {
  const kube = new FakeKube();
  kube.add(RESOURCES.deployments, deploy({ labels: { 'kustomize.toolkit.fluxcd.io/name': 'apps', 'kustomize.toolkit.fluxcd.io/namespace': 'flux-system' } }));
  kube.add(RESOURCES.deployments, deploy({ name: 'cart', annotations: { [TRACK]: 'cart:apps/Deployment:shop/cart' } }));
  kube.add(RESOURCES.deployments, deploy({ name: 'helm-web', labels: { 'app.kubernetes.io/instance': 'helm-web' } }));
  kube.add(OWNER_RESOURCES.Kustomization, { apiVersion: 'kustomize.toolkit.fluxcd.io/v1', kind: 'Kustomization', metadata: { name: 'apps', namespace: 'flux-system' }, spec: { interval: '5m', prune: true },
    status: { inventory: { entries: [{ id: 'shop_checkout_apps_Deployment', v: 'v1' }] } } });
  kube.add(OWNER_RESOURCES.Application, {
    apiVersion: 'argoproj.io/v1alpha1', kind: 'Application', metadata: { name: 'cart', namespace: 'argocd' },
    spec: { syncPolicy: { automated: { prune: true, selfHeal: true } } },
    status: { resources: [{ group: 'apps', version: 'v1', kind: 'Deployment', namespace: 'shop', name: 'cart' }] },
  });
  return kube;
}
const obj = (name: string) => ({ resource: RESOURCES.deployments, namespace: 'shop', name });

t.test('findOwners reads each owner once, with its sync settings in words', async (t) => {
  const kube = cluster();
  const owners = await findOwners(kube, [obj('checkout'), obj('checkout'), obj('cart'), obj('helm-web'), obj('missing')], ARGO);
  t.same(owners.map((o) => [o.tool, o.kind, `${o.namespace}/${o.name}`, o.sync, o.correctsDrift, o.paused, o.settleMs]), [
    ['Flux', 'Kustomization', 'flux-system/apps', 'reconciled every 5m, drift corrected on each run', true, false, 605_000],
    ['Argo CD', 'Application', 'argocd/cart', 'automated sync with self-heal and prune', true, false, 20_000],
  ], 'the instance label alone, without such an Application, is a Helm chart label: no owner');
  t.same(owners[0]!.objects, ['Deployment/shop/checkout']);
  t.same(owners.map((o) => o.unverified), [undefined, undefined], 'each lists the object that names it in its status');
});

t.test('an owner that cannot be read is kept with the API server’s words', async (t) => {
  const kube = cluster();
  kube.failNext('get', (c) => (c.resource === 'kustomizations' ? new KubeApiError({ status: 403, reason: 'Forbidden', message: 'kustomizations is forbidden', operation: 'GET kustomizations' }) : null));
  const [o] = await findOwners(kube, [obj('checkout')], ARGO);
  t.equal(o?.found, false);
  t.match(o?.error, /403 Forbidden/);
});

t.test('suspend sets one field as the owners’ CLIs do; resume puts back exactly what was there', async (t) => {
  const kube = cluster();
  const app = kube.peek(OWNER_RESOURCES.Application, 'argocd', 'cart')!;
  app.spec.syncPolicy.automated.enabled = true; // explicitly on: resume must write true back, not remove it
  kube.put(OWNER_RESOURCES.Application, app);
  const owners = await findOwners(kube, [obj('checkout'), obj('cart')], ARGO);
  const before = owners.map((o) => structuredClone(kube.peek(OWNER_RESOURCES[o.kind], o.namespace, o.name)!.spec));
  const done = await suspendOwners(kube, owners, () => 42);
  t.same(done.map((s) => [s.kind, s.field, s.set, s.before]), [['Kustomization', '/spec/suspend', true, undefined], ['Application', '/spec/syncPolicy/automated/enabled', false, true]]);
  t.equal(kube.peek(OWNER_RESOURCES.Kustomization, 'flux-system', 'apps')!.spec.suspend, true);
  t.same(kube.peek(OWNER_RESOURCES.Application, 'argocd', 'cart')!.spec.syncPolicy.automated, { prune: true, selfHeal: true, enabled: false }, 'prune and selfHeal kept');
  const restored = await resumeOwners(kube, done);
  t.same(owners.map((o) => kube.peek(OWNER_RESOURCES[o.kind], o.namespace, o.name)!.spec), before, 'exactly as before');
  t.match(restored, [/spec\.suspend removed \(as before\)/, /spec\.syncPolicy\.automated\.enabled = true/]);
});

t.test('already paused owners are not touched; a failed suspend reports what it had suspended', async (t) => {
  const kube = cluster();
  const k = kube.peek(OWNER_RESOURCES.Kustomization, 'flux-system', 'apps')!;
  kube.put(OWNER_RESOURCES.Kustomization, { ...k, spec: { ...k.spec, suspend: true } });
  const owners = await findOwners(kube, [obj('checkout'), obj('cart')], ARGO);
  t.equal(owners[0]!.paused, true);
  t.match(owners[0]!.sync, /^suspended \(spec\.suspend: true\)/);
  kube.failNext('patch', new KubeApiError({ status: 403, reason: 'Forbidden', message: 'cannot patch applications', operation: 'PATCH applications' }));
  const err = await suspendOwners(kube, owners, () => 1).catch((e: unknown) => e as Error & { suspended: unknown[] });
  t.match(err, { message: /could not suspend Argo CD Application argocd\/cart: .*403/ });
  t.same((err as { suspended: unknown[] }).suspended, [], 'the Kustomization, already suspended, was left alone');
});

t.test('a 409 (the owner changed since it was read: its controller writes its status on every run) is read again and written again, at most three times', async (t) => {
  const conflict = () => new KubeApiError({ status: 409, reason: 'Conflict', message: 'the object has been modified', operation: 'PATCH kustomizations' });
  const kube = cluster();
  const owners = await findOwners(kube, [obj('checkout')], ARGO);
  kube.failNext('patch', conflict());
  kube.failNext('patch', conflict());
  const done = await suspendOwners(kube, owners, () => 1);
  t.same(done.map((s) => [s.kind, s.name, s.set]), [['Kustomization', 'apps', true]], 'suspended on the third attempt');
  t.equal(kube.peek(OWNER_RESOURCES.Kustomization, 'flux-system', 'apps')!.spec.suspend, true);

  const again = cluster();
  const owners2 = await findOwners(again, [obj('checkout')], ARGO);
  for (let i = 0; i < 3; i++) again.failNext('patch', conflict());
  const err = await suspendOwners(again, owners2, () => 1).catch((e: unknown) => e as Error);
  t.match(err, { message: /could not suspend Flux Kustomization flux-system\/apps: .*409/ });
  t.equal(again.peek(OWNER_RESOURCES.Kustomization, 'flux-system', 'apps')!.spec.suspend, undefined, 'nothing written');
});
