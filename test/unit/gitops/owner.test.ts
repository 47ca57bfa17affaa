// Ownership detection, sync settings, suspend and resume on the in-memory Kube (the real Flux
// controllers and Argo CD's CRDs are in test/e2e/gitops-rollback.test.ts).
import t from 'tap';
import { RESOURCES, type KubeObject } from '../../../src/kube/kube.js';
import { KubeApiError } from '../../../src/kube/errors.js';
import { applicationSetIgnoresEnabled, argoOwnerRef } from '../../../src/gitops/argocd.js';
import { fluxOwnerRef, parseGoDuration } from '../../../src/gitops/flux.js';
import { findOwners } from '../../../src/gitops/owner.js';
import { resumeOwners, SUSPENDED_BEFORE, SUSPENDED_BY, suspendOwners } from '../../../src/gitops/suspend.js';
import { OWNER_RESOURCES, type Owner } from '../../../src/gitops/types.js';
import { FakeKube } from '../../support/fake-kube.js';

const ARGO = { namespace: 'argocd', instanceLabel: 'app.kubernetes.io/instance', inCluster: ['https://kubernetes.default.svc', 'in-cluster'] };
const deploy = (meta: Partial<KubeObject['metadata']>): KubeObject => ({
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name: 'checkout', namespace: 'shop', ...meta },
  spec: {},
});
const TRACK = 'argocd.argoproj.io/tracking-id';
/** Argo CD's destination for the cluster it runs in (an Application's spec.destination is required) */
const IN_CLUSTER = { server: 'https://kubernetes.default.svc', namespace: 'shop' };

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
    spec: { destination: IN_CLUSTER, syncPolicy: { automated: { prune: true, selfHeal: true } } },
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

// Argo CD label tracking's app.kubernetes.io/instance is set by nearly every Helm chart, so objects
// applied by Flux carry it too: Flux's own labels are explicit and always keep their owner.
const FLUX_KS = { 'kustomize.toolkit.fluxcd.io/name': 'apps', 'kustomize.toolkit.fluxcd.io/namespace': 'flux-system' };
const INSTANCE = { 'app.kubernetes.io/instance': 'checkout' };
function mixed(labels: Record<string, string>, annotations?: Record<string, string>, app?: { resources?: unknown[] }) {
  const kube = cluster();
  const d = kube.peek(RESOURCES.deployments, 'shop', 'checkout')!;
  kube.put(RESOURCES.deployments, { ...d, metadata: { ...d.metadata, labels, ...(annotations ? { annotations } : {}) } });
  if (app) {
    kube.add(OWNER_RESOURCES.Application, {
      apiVersion: 'argoproj.io/v1alpha1', kind: 'Application', metadata: { name: 'checkout', namespace: 'argocd' },
      spec: { destination: IN_CLUSTER, syncPolicy: { automated: { selfHeal: true } } }, ...(app.resources ? { status: { resources: app.resources } } : {}),
    });
  }
  return kube;
}
const names = (owners: { tool: string; kind: string; namespace: string; name: string; unverified?: string }[]) =>
  owners.map((o) => `${o.tool} ${o.kind} ${o.namespace}/${o.name}${o.unverified ? ' (unverified)' : ''}`);

t.test('Flux labels and a Helm chart’s instance label, no Application of that name: the Kustomization (not no owner at all)', async (t) => {
  const owners = await findOwners(mixed({ ...FLUX_KS, ...INSTANCE }), [obj('checkout')], ARGO);
  t.same(names(owners), ['Flux Kustomization flux-system/apps']);
  t.match(owners[0], { found: true, correctsDrift: true, via: 'labels kustomize.toolkit.fluxcd.io/name and /namespace', objects: ['Deployment/shop/checkout'] });
});

t.test('HelmRelease labels and the instance label of an unrelated Application (its status lists other objects): the HelmRelease alone', async (t) => {
  const kube = mixed({ 'helm.toolkit.fluxcd.io/name': 'checkout', 'helm.toolkit.fluxcd.io/namespace': 'shop', ...INSTANCE }, undefined, {
    resources: [{ group: 'apps', version: 'v1', kind: 'Deployment', namespace: 'other', name: 'checkout' }],
  });
  kube.add(OWNER_RESOURCES.HelmRelease, { apiVersion: 'helm.toolkit.fluxcd.io/v2', kind: 'HelmRelease', metadata: { name: 'checkout', namespace: 'shop' },
    spec: { interval: '10m', driftDetection: { mode: 'enabled' } }, status: { inventory: { entries: [{ id: 'shop_checkout_apps_Deployment', v: 'v1' }] } } });
  const owners = await findOwners(kube, [obj('checkout')], ARGO);
  t.same(names(owners), ['Flux HelmRelease shop/checkout'], 'the chart’s label does not make the Application an owner, nor take the HelmRelease’s place');
});

t.test('Flux labels and the instance label of an Application that lists the object (or cannot tell): both kept, Flux first', async (t) => {
  const listed = await findOwners(mixed({ ...FLUX_KS, ...INSTANCE }, undefined, { resources: [{ group: 'apps', version: 'v1', kind: 'Deployment', namespace: 'shop', name: 'checkout' }] }), [obj('checkout')], ARGO);
  t.same(names(listed), ['Flux Kustomization flux-system/apps', 'Argo CD Application argocd/checkout']);
  t.equal(listed[1]!.via, 'label app.kubernetes.io/instance');
  const neverSynced = await findOwners(mixed({ ...FLUX_KS, ...INSTANCE }, undefined, {}), [obj('checkout')], ARGO);
  t.same(names(neverSynced), ['Flux Kustomization flux-system/apps', 'Argo CD Application argocd/checkout (unverified)'], 'cannot tell: kept, so the rollback is refused rather than guessed');
});

t.test('Argo CD tracking annotation beside Flux labels: both counted when the Kustomization lists the object too; a copied one falls through to Flux', async (t) => {
  const app = { resources: [{ group: 'apps', version: 'v1', kind: 'Deployment', namespace: 'shop', name: 'checkout' }] };
  const own = await findOwners(mixed({ ...FLUX_KS, ...INSTANCE }, { [TRACK]: 'checkout:apps/Deployment:shop/checkout' }, app), [obj('checkout')], ARGO);
  t.same(names(own), ['Argo CD Application argocd/checkout', 'Flux Kustomization flux-system/apps'], 'both list it, both reconcile it: both are suspended');
  t.equal(own[0]!.via, `annotation ${TRACK}`);
  const inv = own.length; // the Kustomization of cluster() lists shop/checkout; one that does not is a left-over label
  const kube = mixed({ ...FLUX_KS }, { [TRACK]: 'checkout:apps/Deployment:shop/checkout' }, app);
  const k = kube.peek(OWNER_RESOURCES.Kustomization, 'flux-system', 'apps')!;
  kube.put(OWNER_RESOURCES.Kustomization, { ...k, status: { inventory: { entries: [{ id: 'shop_other_apps_Deployment', v: 'v1' }] } } });
  t.same(names(await findOwners(kube, [obj('checkout')], ARGO)), ['Argo CD Application argocd/checkout'], `the Application alone where the Kustomization lists other objects (${inv} before)`);
  await kube.delete(OWNER_RESOURCES.Kustomization, 'flux-system', 'apps');
  t.same(names(await findOwners(kube, [obj('checkout')], ARGO)), ['Argo CD Application argocd/checkout'], 'or no longer exists (moved from Flux to Argo CD)');
  const gone = await findOwners(mixed({ ...FLUX_KS }, { [TRACK]: 'gone:apps/Deployment:shop/checkout' }), [obj('checkout')], ARGO);
  t.match(gone, [{ tool: 'Argo CD', name: 'gone', found: false, sync: 'not found' }, { tool: 'Flux', kind: 'Kustomization', name: 'apps', found: true, unverified: undefined }],
    'an annotation naming no Application is kept as not found, and does not hide the Kustomization that lists the object');
  const copied = await findOwners(mixed({ ...FLUX_KS, ...INSTANCE }, { [TRACK]: 'cart:apps/Deployment:shop/cart' }), [obj('checkout')], ARGO);
  t.same(names(copied), ['Flux Kustomization flux-system/apps'], 'a tracking id copied from shop/cart counts for nothing: the Flux labels decide');
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

/** Suspends the Kustomization and the Application of cluster(); returns what suspendOwners recorded. */
async function suspended(kube: FakeKube) {
  const owners = await findOwners(kube, [obj('checkout'), obj('cart')], ARGO);
  return suspendOwners(kube, owners, () => 42);
}
const conflict = (resource: string) => new KubeApiError({ status: 409, reason: 'Conflict', message: 'the object has been modified', operation: `PATCH ${resource}` });

t.test('resume leaves alone a field someone else changed since: Argo CD automated sync turned off by removing automated (a blind merge patch would create automated: {}, which is ON)', async (t) => {
  const kube = cluster();
  const done = await suspended(kube);
  // the person on call turns automated sync off the usual way: spec.syncPolicy.automated removed
  const app = kube.peek(OWNER_RESOURCES.Application, 'argocd', 'cart')!;
  delete app.spec.syncPolicy.automated;
  kube.put(OWNER_RESOURCES.Application, app);
  const appBefore = kube.peek(OWNER_RESOURCES.Application, 'argocd', 'cart')!;
  const restored = await resumeOwners(kube, done);
  t.same(kube.peek(OWNER_RESOURCES.Application, 'argocd', 'cart')!.spec, appBefore.spec, 'no automated: {} (automated sync stays off)');
  t.equal(kube.peek(OWNER_RESOURCES.Application, 'argocd', 'cart')!.metadata.resourceVersion, appBefore.metadata.resourceVersion, 'not written at all');
  t.equal(kube.peek(OWNER_RESOURCES.Kustomization, 'flux-system', 'apps')!.spec.suspend, undefined, 'the Kustomization, untouched since, is put back');
  t.match(restored, [
    /^Flux Kustomization flux-system\/apps: spec\.suspend removed \(as before\)$/,
    /^Argo CD Application argocd\/cart: spec\.syncPolicy\.automated\.enabled left alone: changed by someone else since rollguard set it to false \(now unset: spec\.syncPolicy\.automated is gone\)$/,
  ]);
  t.same(kube.patches().filter((c) => c.resource === 'applications').length, 1, 'only the suspension patched the Application');
});

t.test('resume leaves alone an owner resumed or changed by hand since: Argo CD enabled: true, Flux suspend: false', async (t) => {
  const kube = cluster();
  const done = await suspended(kube);
  const app = kube.peek(OWNER_RESOURCES.Application, 'argocd', 'cart')!;
  app.spec.syncPolicy.automated.enabled = true;
  kube.put(OWNER_RESOURCES.Application, app);
  const k = kube.peek(OWNER_RESOURCES.Kustomization, 'flux-system', 'apps')!;
  kube.put(OWNER_RESOURCES.Kustomization, { ...k, spec: { ...k.spec, suspend: false } }); // flux resume
  const restored = await resumeOwners(kube, done);
  t.equal(kube.peek(OWNER_RESOURCES.Kustomization, 'flux-system', 'apps')!.spec.suspend, false, 'not removed');
  t.same(kube.peek(OWNER_RESOURCES.Application, 'argocd', 'cart')!.spec.syncPolicy.automated, { prune: true, selfHeal: true, enabled: true }, 'not removed');
  t.same(restored, [
    'Flux Kustomization flux-system/apps: spec.suspend left alone: changed by someone else since rollguard set it to true (now false)',
    'Argo CD Application argocd/cart: spec.syncPolicy.automated.enabled left alone: changed by someone else since rollguard set it to false (now true)',
  ]);
  t.equal(kube.patches().length, 2, 'only the two suspensions were written');
});

t.test('resume writes with the resourceVersion it read; a 409 is read again and checked again', async (t) => {
  const kube = cluster();
  const done = await suspended(kube);
  const suspendPatches = kube.patches().length;
  // the Kustomization's controller writes its status in between: read again, still ours, written
  kube.failNext('patch', (c) => (c.resource === 'kustomizations' ? conflict('kustomizations') : null));
  // the Application: a human turns automated sync off in between (the 409 is their write): read again, left alone
  kube.failNext('patch', (c) => {
    if (c.resource !== 'applications') return null;
    const app = kube.peek(OWNER_RESOURCES.Application, 'argocd', 'cart')!;
    delete app.spec.syncPolicy.automated;
    kube.put(OWNER_RESOURCES.Application, app);
    return conflict('applications');
  });
  const restored = await resumeOwners(kube, done);
  const writes = kube.patches().slice(suspendPatches);
  t.ok(writes.every((c) => typeof (c.body as { metadata?: { resourceVersion?: string } }).metadata?.resourceVersion === 'string'), 'each write carries the resourceVersion read');
  t.same(writes.map((c) => c.resource), ['kustomizations', 'kustomizations', 'applications'], 'the Kustomization written again after its 409; the Application not after its re-read');
  t.equal(kube.peek(OWNER_RESOURCES.Kustomization, 'flux-system', 'apps')!.spec.suspend, undefined);
  t.same(kube.peek(OWNER_RESOURCES.Application, 'argocd', 'cart')!.spec.syncPolicy, {}, 'automated not created again');
  t.match(restored, [/spec\.suspend removed \(as before\)/, /automated\.enabled left alone: changed by someone else since/]);
});

t.test('resume of an owner deleted since: nothing to put back, said', async (t) => {
  const kube = cluster();
  const done = await suspended(kube);
  await kube.delete(OWNER_RESOURCES.Application, 'argocd', 'cart');
  const restored = await resumeOwners(kube, done);
  t.match(restored, [/spec\.suspend removed \(as before\)/, /^Argo CD Application argocd\/cart: not found \(deleted since\): nothing put back$/]);
});

t.test('an Application CRD without automated.enabled (before Argo CD 3.x) prunes the field: a failed suspension, not a recorded one', async (t) => {
  const kube = cluster();
  // the API server drops fields its structural schema does not know, and answers with what it stored
  kube.onPatch = (rt, o, fake) => {
    if (rt.plural !== 'applications' || !o.spec?.syncPolicy?.automated) return;
    delete o.spec.syncPolicy.automated.enabled;
    fake.put(rt, o);
  };
  const owners = await findOwners(kube, [obj('checkout'), obj('cart')], ARGO);
  const err = (await suspendOwners(kube, owners, () => 1).then(() => new Error('suspended'), (e: unknown) => e)) as Error & { suspended: { kind: string }[] };
  t.match(err, { message: /^could not suspend Argo CD Application argocd\/cart: spec\.syncPolicy\.automated\.enabled reads back unset after it was set to false: .*Application CRD .*Argo CD 3/ });
  t.same(err.suspended.map((s) => s.kind), ['Kustomization'], 'the Kustomization suspended before it is reported, to be recorded');
  t.same(kube.peek(OWNER_RESOURCES.Application, 'argocd', 'cart')!.spec.syncPolicy.automated, { prune: true, selfHeal: true }, 'automated sync still on');
});

t.test('a Helm release\'s workload: its HelmRelease counts only if its status says it installs that release', async (t) => {
  const hr = (status: Record<string, unknown>) => {
    const kube = new FakeKube();
    kube.add(RESOURCES.deployments, deploy({ labels: { 'helm.toolkit.fluxcd.io/name': 'platform', 'helm.toolkit.fluxcd.io/namespace': 'flux-system' } }));
    kube.add(OWNER_RESOURCES.HelmRelease, { apiVersion: 'helm.toolkit.fluxcd.io/v2', kind: 'HelmRelease', metadata: { name: 'platform', namespace: 'flux-system' },
      spec: { interval: '10m' }, status: { inventory: { entries: [{ id: 'shop_checkout_apps_Deployment', v: 'v1' }] }, ...status } });
    return kube;
  };
  const workload = { resource: RESOURCES.deployments, namespace: 'shop', name: 'checkout', release: { namespace: 'shop', name: 'checkout' } };
  const installs = await findOwners(hr({ storageNamespace: 'shop', history: [{ name: 'checkout', version: 1 }, { name: 'checkout', version: 2 }] }), [workload], ARGO);
  t.same(names(installs), ['Flux HelmRelease flux-system/platform'], 'its newest history entry names the release, its storage namespace the release\'s: the owner');
  // a tenant's release shop/checkout whose failed install named the platform team's Deployment: that HelmRelease lists it, but installs another release
  const other = await findOwners(hr({ storageNamespace: 'shop', history: [{ name: 'checkout', version: 1 }, { name: 'platform', version: 2 }] }), [workload], ARGO);
  t.same(names(other), ['Flux HelmRelease flux-system/platform (unverified)']);
  t.match(other[0]!.unverified, /^Deployment\/shop\/checkout of Helm release shop\/checkout names Flux HelmRelease flux-system\/platform by its labels helm\.toolkit\.fluxcd\.io\/name and \/namespace, but that HelmRelease's status says it installs release shop\/platform \(status\.history, status\.storageNamespace\): it is not taken for the release's owner$/);
  const elsewhere = await findOwners(hr({ storageNamespace: 'flux-system', history: [{ name: 'checkout', version: 2 }] }), [workload], ARGO);
  t.same(names(elsewhere), ['Flux HelmRelease flux-system/platform (unverified)'], 'the same name kept in another namespace is another release');
  const never = await findOwners(hr({}), [workload], ARGO);
  t.match(never[0]!.unverified, /installs no release yet/);
  const plain = await findOwners(hr({}), [{ resource: RESOURCES.deployments, namespace: 'shop', name: 'checkout' }], ARGO);
  t.same(names(plain), ['Flux HelmRelease flux-system/platform'], 'an object a plan writes (not found as a release\'s workload) is checked by the inventory alone, as before');
});

t.test('an owner paused by someone else between the plan and the suspension is left alone, not suspended on top (a merge patch under a removed automated creates automated: {}, which is ON)', async (t) => {
  const kube = cluster();
  const owners = await findOwners(kube, [obj('checkout'), obj('cart')], ARGO);
  t.same(owners.map((o) => o.paused), [false, false], 'both reconciling when planned');
  // then the person on call pauses both the usual way: automated removed, flux suspend
  const app = kube.peek(OWNER_RESOURCES.Application, 'argocd', 'cart')!;
  delete app.spec.syncPolicy.automated;
  kube.put(OWNER_RESOURCES.Application, app);
  const k = kube.peek(OWNER_RESOURCES.Kustomization, 'flux-system', 'apps')!;
  kube.put(OWNER_RESOURCES.Kustomization, { ...k, spec: { ...k.spec, suspend: true } });
  const paused: string[] = [];
  const done = await suspendOwners(kube, owners, () => 1, {}, { foundPaused: (o, sync) => paused.push(`${o.kind} ${o.name}: ${sync}`) });
  t.same(done, [], 'nothing recorded as suspended by rollguard, so resume writes nothing');
  t.equal(kube.patches().length, 0, 'neither owner written');
  t.same(kube.peek(OWNER_RESOURCES.Application, 'argocd', 'cart')!.spec.syncPolicy, {}, 'no automated: {} created');
  t.same(paused, ['Kustomization apps: suspended (spec.suspend: true); otherwise reconciled every 5m, drift corrected on each run', 'Application cart: manual sync (no automated sync)'], 'each said found paused');
});

t.test('Flux labels beside the instance label of an Application that deploys to another cluster: the Kustomization alone (that Application manages another cluster’s objects)', async (t) => {
  const kube = mixed({ ...FLUX_KS, ...INSTANCE }, undefined, {});
  const app = kube.peek(OWNER_RESOURCES.Application, 'argocd', 'checkout')!;
  kube.put(OWNER_RESOURCES.Application, { ...app, spec: { ...app.spec, destination: { server: 'https://prod-eu.example.com:6443', namespace: 'shop' } } });
  t.same(names(await findOwners(kube, [obj('checkout')], ARGO)), ['Flux Kustomization flux-system/apps'], 'not kept as an owner that cannot tell, which would refuse the rollback');
});

t.test('a tracking annotation naming no Application beside Flux labels: the Flux claim is checked as if alone', async (t) => {
  const kube = mixed({ ...FLUX_KS }, { [TRACK]: 'gone:apps/Deployment:shop/checkout' });
  const k = kube.peek(OWNER_RESOURCES.Kustomization, 'flux-system', 'apps')!;
  kube.put(OWNER_RESOURCES.Kustomization, { ...k, status: { inventory: { entries: [{ id: 'shop_other_apps_Deployment', v: 'v1' }] } } });
  const owners = await findOwners(kube, [obj('checkout')], ARGO);
  t.same(names(owners), ['Argo CD Application argocd/gone', 'Flux Kustomization flux-system/apps (unverified)'], 'not listed: unverified (the rollback refused), not dropped');
  await kube.delete(OWNER_RESOURCES.Kustomization, 'flux-system', 'apps');
  t.match(await findOwners(kube, [obj('checkout')], ARGO), [{ name: 'gone', found: false }, { name: 'apps', found: false, sync: 'not found' }], 'neither found: both said');
});

t.test('the suspending write names the rollback and the value before in annotations on the owner; the resuming write removes them', async (t) => {
  const kube = cluster();
  const app = kube.peek(OWNER_RESOURCES.Application, 'argocd', 'cart')!;
  app.spec.syncPolicy.automated.enabled = true;
  kube.put(OWNER_RESOURCES.Application, app);
  const owners = await findOwners(kube, [obj('checkout'), obj('cart')], ARGO);
  const done = await suspendOwners(kube, owners, () => 42, {}, { record: 'rb-1' });
  const notes = (o: Owner) => kube.peek(OWNER_RESOURCES[o.kind], o.namespace, o.name)!.metadata.annotations ?? {};
  t.same(owners.map((o) => [notes(o)[SUSPENDED_BY], notes(o)[SUSPENDED_BEFORE]]), [['rb-1', 'unset'], ['rb-1', 'true']], 'in the suspending write');
  t.equal(kube.patches().length, 2, 'one write per owner');
  // read again by the same rollback (its replica stopped before saving the record): its own, nothing written
  const own: string[] = [];
  const again = await suspendOwners(kube, owners, () => 43, {}, { record: 'rb-1', foundOwn: (s) => own.push(s.name), foundPaused: () => t.fail('not a pause by someone else') });
  t.same(again.map((s) => [s.kind, s.set, s.before]), done.map((s) => [s.kind, s.set, s.before]), 'the same suspensions, the values before from the annotations');
  t.same(own, ['apps', 'cart']);
  t.equal(kube.patches().length, 2, 'nothing written');
  const other: string[] = [];
  t.same(await suspendOwners(kube, owners, () => 44, {}, { record: 'rb-2', foundPaused: (o) => other.push(o.name) }), [], "another rollback's suspension is not this one's");
  t.same(other, ['apps', 'cart']);
  await resumeOwners(kube, done);
  t.same(owners.map((o) => notes(o)), [{}, {}], 'removed on resume');
  t.equal(kube.peek(OWNER_RESOURCES.Application, 'argocd', 'cart')!.spec.syncPolicy.automated.enabled, true, 'the value before written back');
});

t.test('a suspending write that landed with its answer lost is read again: this rollback’s suspension, recorded; one that did not land still fails', async (t) => {
  const lost = () => new KubeApiError({ status: 504, reason: 'Timeout', message: 'the server was unable to return a response in the time allotted', operation: 'PATCH kustomizations' });
  for (const landedFirst of [true, false]) {
    const kube = cluster();
    const owners = await findOwners(kube, [obj('checkout')], ARGO);
    const patch = kube.patch.bind(kube);
    let once = true;
    kube.patch = async (...a: Parameters<FakeKube['patch']>) => {
      if (!once) return patch(...a);
      once = false;
      if (landedFirst) await patch(...a);
      throw lost();
    };
    const r = await suspendOwners(kube, owners, () => 7, {}, { record: 'rb-1' }).then((d) => d, (e: unknown) => e as Error & { suspended: unknown[] });
    if (landedFirst) t.same(Array.isArray(r) ? r.map((s) => [s.name, s.set, s.before]) : r, [['apps', true, undefined]], 'landed: recorded as suspended, the value before as read');
    else t.match(r, { message: /could not suspend Flux Kustomization flux-system\/apps: .*unable to return a response/, suspended: [] }, 'not landed: the error stands');
  }
});

t.test('an Application CRD that drops automated.enabled: the suspension fails, and the annotations written with it are taken off', async (t) => {
  const kube = cluster();
  const owners = (await findOwners(kube, [obj('cart')], ARGO)).filter((o) => o.kind === 'Application');
  const patch = kube.patch.bind(kube);
  kube.patch = async (...a: Parameters<FakeKube['patch']>) => {
    const body = structuredClone(a[3]) as { spec?: { syncPolicy?: { automated?: { enabled?: unknown } } } };
    delete body.spec?.syncPolicy?.automated?.enabled; // as an API server with a CRD from before Argo CD 3.x does
    return patch(a[0], a[1], a[2], body as Parameters<FakeKube['patch']>[3], a[4], a[5]);
  };
  const err = await suspendOwners(kube, owners, () => 1, {}, { record: 'rb-1' }).catch((e: unknown) => e as Error);
  t.match(err, { message: /reads back unset/ });
  const app = kube.peek(OWNER_RESOURCES.Application, 'argocd', 'cart')!;
  t.same(app.metadata.annotations ?? {}, {}, 'no annotation says it is suspended');
});
