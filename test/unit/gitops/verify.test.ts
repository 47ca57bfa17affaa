// A target's own labels do not make an owner: the owner's status must list it (Flux inventory,
// Argo CD status.resources), and the owner must be one rollguard may suspend (SCOPE_*,
// GITOPS_OWNER_ALLOW). The real Flux inventory is in test/e2e/gitops-rollback.test.ts.
import t from 'tap';
import { createActions } from '../../../src/actions/index.js';
import { loadConfig } from '../../../src/config.js';
import { RESOURCES, type KubeObject } from '../../../src/kube/kube.js';
import { findOwners } from '../../../src/gitops/owner.js';
import { OWNER_RESOURCES, type OwnerRef } from '../../../src/gitops/types.js';
import { fluxInventoryId, notListedBy, ownerOutOfScope } from '../../../src/gitops/verify.js';
import { firing, RULES, testEngine } from '../../support/engine.js';
import { standardCluster } from '../actions/fixtures/objects.js';

const web = { group: 'apps', kind: 'Deployment', namespace: 'shop', name: 'web' };
const svc = { group: '', kind: 'Service', namespace: 'shop', name: 'web' };
const KS: OwnerRef = { tool: 'Flux', kind: 'Kustomization', namespace: 'flux-system', name: 'apps', via: 'labels kustomize.toolkit.fluxcd.io/name and /namespace' };
const HR: OwnerRef = { ...KS, kind: 'HelmRelease', namespace: 'shop', name: 'web', via: 'labels helm.toolkit.fluxcd.io/name and /namespace' };
const APP: OwnerRef = { tool: 'Argo CD', kind: 'Application', namespace: 'argocd', name: 'shop', via: 'annotation argocd.argoproj.io/tracking-id' };
const IN_CLUSTER = { destination: { server: 'https://kubernetes.default.svc', namespace: 'shop' } };
const withStatus = (status: unknown, spec: Record<string, unknown> = IN_CLUSTER): KubeObject => ({ metadata: { name: 'x' }, spec, status });

t.test('Flux inventory ids: <namespace>_<name>_<group>_<kind>, the core group empty, a colon written __', async (t) => {
  t.equal(fluxInventoryId(web), 'shop_web_apps_Deployment');
  t.equal(fluxInventoryId(svc), 'shop_web__Service');
  t.equal(fluxInventoryId({ group: 'rbac.authorization.k8s.io', kind: 'ClusterRole', namespace: '', name: 'system:aggregate' }), '_system__aggregate_rbac.authorization.k8s.io_ClusterRole');
});

t.test('a Kustomization (or HelmRelease) lists the object in status.inventory, or it is not the owner', async (t) => {
  const inv = withStatus({ inventory: { entries: [{ id: 'shop_web_apps_Deployment', v: 'v1' }, { id: 'shop_web__Service', v: 'v1' }] } });
  t.equal(notListedBy(KS, inv, [web, svc]), undefined, 'both listed');
  t.equal(notListedBy(HR, inv, [web]), undefined, 'a HelmRelease with an inventory is read the same way');
  t.match(notListedBy(KS, inv, [{ ...web, name: 'other' }]), /^Deployment\/shop\/other names Flux Kustomization flux-system\/apps by its labels kustomize\.toolkit\.fluxcd\.io\/name and \/namespace, but that Kustomization's status\.inventory does not list it/);
  t.match(notListedBy(KS, inv, [{ ...web, group: 'argoproj.io', kind: 'Rollout' }]), /Rollout\/shop\/web .* does not list it/, 'the same name of another kind');
  t.match(notListedBy(KS, inv, [{ ...web, namespace: 'other' }]), /Deployment\/other\/web .* does not list it/, 'another namespace');
  t.match(notListedBy(KS, withStatus({}), [web]), /status\.inventory lists nothing .*cannot be verified/);
  t.match(notListedBy(HR, withStatus({ history: [{ name: 'web', namespace: 'shop', version: 3 }] }), [web]), /HelmRelease has no status\.inventory .*status\.history names Helm releases, not objects.*cannot be verified/);
});

t.test('an Application lists the object in status.resources (group and namespace absent when empty)', async (t) => {
  const app = withStatus({ resources: [{ group: 'apps', version: 'v1', kind: 'Deployment', namespace: 'shop', name: 'web', status: 'Synced' }, { version: 'v1', kind: 'Service', namespace: 'shop', name: 'web' }] });
  t.equal(notListedBy(APP, app, [web, svc]), undefined);
  t.match(notListedBy(APP, app, [{ ...web, name: 'payments' }]), /^Deployment\/shop\/payments names Argo CD Application argocd\/shop by its annotation argocd\.argoproj\.io\/tracking-id, but that Application's status\.resources does not list it/);
  t.match(notListedBy(APP, app, [{ ...svc, group: 'apps' }]), /does not list it/, 'the group counts');
  t.match(notListedBy(APP, withStatus({ sync: { status: 'Unknown' } }), [web]), /status\.resources lists nothing .*cannot be verified/);
});

t.test('an owner that deploys to another cluster is not shown to manage this cluster\'s object, whatever its status lists (it names no cluster)', async (t) => {
  const resources = { resources: [{ group: 'apps', version: 'v1', kind: 'Deployment', namespace: 'shop', name: 'web' }] };
  const dest = (destination: Record<string, string>) => withStatus(resources, { destination });
  t.equal(notListedBy(APP, dest({ server: 'https://kubernetes.default.svc', namespace: 'shop' }), [web]), undefined, 'the in-cluster server');
  t.equal(notListedBy(APP, dest({ name: 'in-cluster', namespace: 'shop' }), [web]), undefined, 'the in-cluster name');
  t.equal(
    notListedBy(APP, dest({ server: 'https://prod-eu.example.com:6443', namespace: 'shop' }), [web]),
    'Deployment/shop/web names Argo CD Application argocd/shop by its annotation argocd.argoproj.io/tracking-id, but that Application deploys to https://prod-eu.example.com:6443 ' +
      '(spec.destination.server), not to a destination GITOPS_ARGOCD_IN_CLUSTER names as the cluster rollguard runs in (https://kubernetes.default.svc, in-cluster), and its status.resources names no cluster: ' +
      'it is not taken for the owner of this cluster\'s object',
  );
  t.match(notListedBy(APP, dest({ name: 'prod-eu', namespace: 'shop' }), [web]), /but that Application deploys to the cluster named prod-eu \(spec\.destination\.name\), not to /);
  t.match(notListedBy(APP, withStatus(resources, {}), [web]), /but that Application names no destination cluster \(spec\.destination\)/);
  const inv = { inventory: { entries: [{ id: 'shop_web_apps_Deployment', v: 'v1' }] } };
  t.equal(notListedBy(KS, withStatus(inv, { interval: '5m' }), [web]), undefined);
  t.equal(
    notListedBy(KS, withStatus(inv, { interval: '5m', kubeConfig: { secretRef: { name: 'prod-eu-kubeconfig' } } }), [web]),
    'Deployment/shop/web names Flux Kustomization flux-system/apps by its labels kustomize.toolkit.fluxcd.io/name and /namespace, but that Kustomization applies to another cluster ' +
      '(spec.kubeConfig), and its status.inventory names no cluster: it is not taken for the owner of this cluster\'s object',
  );
  t.match(notListedBy(HR, withStatus(inv, { kubeConfig: { configMapRef: { name: 'prod-eu' } } }), [web]), /but that HelmRelease applies to another cluster \(spec\.kubeConfig\)/);
});

t.test('Argo CD\'s own cluster registered under another name or by its external address: this cluster when GITOPS_ARGOCD_IN_CLUSTER names it', async (t) => {
  const resources = { resources: [{ group: 'apps', version: 'v1', kind: 'Deployment', namespace: 'shop', name: 'web' }] };
  const dest = (destination: Record<string, string>) => withStatus(resources, { destination });
  const inCluster = loadConfig({ GITOPS_ARGOCD_IN_CLUSTER: 'https://kubernetes.default.svc, in-cluster, local, https://api.prod.example.com:6443' }).GITOPS_ARGOCD_IN_CLUSTER;
  t.equal(notListedBy(APP, dest({ name: 'local', namespace: 'shop' }), [web], inCluster), undefined, 'destination.name local');
  t.equal(notListedBy(APP, dest({ server: 'https://api.prod.example.com:6443', namespace: 'shop' }), [web], inCluster), undefined, 'the external API address');
  t.equal(notListedBy(APP, dest({ server: 'https://api.prod.example.com:6443/', namespace: 'shop' }), [web], inCluster), undefined, 'with a trailing slash');
  t.match(notListedBy(APP, dest({ server: 'local', namespace: 'shop' }), [web], inCluster), /deploys to local \(spec\.destination\.server\)/, 'a name is no server');
  t.match(notListedBy(APP, dest({ name: 'https://api.prod.example.com:6443', namespace: 'shop' }), [web], inCluster), /deploys to the cluster named https:\/\/api\.prod\.example\.com:6443 \(spec\.destination\.name\)/, 'a server is no name');
  t.match(notListedBy(APP, dest({ name: 'prod-eu', namespace: 'shop' }), [web], inCluster), /deploys to the cluster named prod-eu \(spec\.destination\.name\)/, 'another cluster still is');
  // the default: the in-cluster server and name only
  const byDefault = loadConfig({}).GITOPS_ARGOCD_IN_CLUSTER;
  t.same(byDefault, ['https://kubernetes.default.svc', 'in-cluster']);
  t.equal(
    notListedBy(APP, dest({ name: 'local', namespace: 'shop' }), [web], byDefault),
    'Deployment/shop/web names Argo CD Application argocd/shop by its annotation argocd.argoproj.io/tracking-id, but that Application deploys to the cluster named local ' +
      '(spec.destination.name), not to a destination GITOPS_ARGOCD_IN_CLUSTER names as the cluster rollguard runs in (https://kubernetes.default.svc, in-cluster), and its status.resources names no cluster: ' +
      'it is not taken for the owner of this cluster\'s object',
  );
  t.throws(() => loadConfig({ GITOPS_ARGOCD_IN_CLUSTER: ' , ' }), /GITOPS_ARGOCD_IN_CLUSTER/, 'an empty list is refused, naming the setting');
});

t.test('owner scope: the deny lists always; GITOPS_OWNER_ALLOW when set, SCOPE_NAMESPACES otherwise', async (t) => {
  const cfg = (env: Record<string, string>) => loadConfig(env);
  t.equal(ownerOutOfScope(cfg({}), KS), undefined, 'the defaults: any owner outside kube-system and the like');
  t.match(ownerOutOfScope(cfg({}), { ...KS, namespace: 'kube-system' }), /namespace kube-system is denied \(SCOPE_DENY_NAMESPACES\)/);
  t.match(ownerOutOfScope(cfg({ SCOPE_DENY_TARGETS: 'Kustomization/flux-system/flux-system' }), { ...KS, name: 'flux-system' }), /denied by Kustomization\/flux-system\/flux-system \(SCOPE_DENY_TARGETS\)/);
  t.match(ownerOutOfScope(cfg({ SCOPE_NAMESPACES: 'shop' }), KS), /namespace flux-system is outside the allowed namespaces \(SCOPE_NAMESPACES: shop\)/);
  const allow = cfg({ SCOPE_NAMESPACES: 'shop', GITOPS_OWNER_ALLOW: 'Kustomization/flux-system/apps-*,Application/argocd/shop' });
  t.equal(ownerOutOfScope(allow, { ...KS, name: 'apps-web' }), undefined, 'named by GITOPS_OWNER_ALLOW, outside SCOPE_NAMESPACES');
  t.match(ownerOutOfScope(allow, { ...KS, name: 'flux-system' }), /owner Kustomization\/flux-system\/flux-system is not in GITOPS_OWNER_ALLOW/);
  t.match(ownerOutOfScope(allow, { ...APP, name: 'platform' }), /not in GITOPS_OWNER_ALLOW/);
  t.match(ownerOutOfScope(cfg({ GITOPS_OWNER_ALLOW: '*/kube-system/*' }), { ...KS, namespace: 'kube-system' }), /SCOPE_DENY_NAMESPACES/, 'the allow list does not open a denied namespace');
  t.throws(() => cfg({ GITOPS_OWNER_ALLOW: 'flux-system/apps' }), /GITOPS_OWNER_ALLOW.*Kind\/namespace\/name/);
});

// The engine on the in-memory Kube: Deployment shop/web, revision 2 bad, revision 1 to go back to.
const FLUX = { 'kustomize.toolkit.fluxcd.io/name': 'flux-system', 'kustomize.toolkit.fluxcd.io/namespace': 'flux-system' };
function cluster(inventory: string[], labels: Record<string, string> = FLUX) {
  const kube = standardCluster();
  const d = kube.peek(RESOURCES.deployments, 'shop', 'web')!;
  kube.put(RESOURCES.deployments, { ...d, metadata: { ...d.metadata, labels: { ...d.metadata.labels, ...labels } } });
  // revision 2 deployed just before the alert (the recent-deploy guard)
  const rs = kube.peek(RESOURCES.replicasets, 'shop', 'web-bb02')!;
  kube.put(RESOURCES.replicasets, { ...rs, metadata: { ...rs.metadata, creationTimestamp: new Date(Date.now() - 10 * 60_000).toISOString() } });
  kube.add(OWNER_RESOURCES.Kustomization, {
    apiVersion: 'kustomize.toolkit.fluxcd.io/v1', kind: 'Kustomization', metadata: { name: 'flux-system', namespace: 'flux-system', resourceVersion: '7' },
    spec: { interval: '10m', path: './clusters/prod', prune: true },
    status: { inventory: { entries: inventory.map((id) => ({ id, v: 'v1' })) } },
  });
  return kube;
}
const alert = () => firing('HighErrorRate', 'web', { labels: { alertname: 'HighErrorRate', namespace: 'shop', deployment: 'web' } });
/** One alert on shop/web through the engine (the default rule error-rate: gitops suspend); the record and the cluster. */
async function alertOn(inventory: string[], env: Record<string, string> = {}, ruleText?: string) {
  const kube = cluster(inventory);
  const e = testEngine({ kube, actions: createActions(), env, ...(ruleText ? { ruleText } : {}) });
  await e.deliver(alert());
  const [rec] = await e.engine.records.list({});
  return { rec: rec!, kube, notifier: e.notifier };
}

t.test('a Deployment labelled as the root Kustomization’s, which does not list it: refused, nothing suspended, notified', async (t) => {
  const { rec, kube, notifier } = await alertOn(['flux-system_podinfo_apps_Deployment']);
  t.equal(rec.state, 'refused', rec.outcome?.message ?? '');
  t.match(rec.outcome?.message, /Deployment\/shop\/web names Flux Kustomization flux-system\/flux-system by its labels kustomize\.toolkit\.fluxcd\.io\/name and \/namespace, but that Kustomization's status\.inventory does not list it.*not rolled back and Flux Kustomization flux-system\/flux-system not suspended/);
  t.same(kube.patches(), [], 'neither the Kustomization nor the Deployment written');
  t.notOk(rec.gitops?.suspended?.length);
  t.ok(notifier.sent.some((n) => n.recordId === rec.id && n.kind === 'rollback_refused'), 'notified');
});

t.test('the same under gitops: ignore: the claim is not counted and the owner never touched (dry run shows the plan)', async (t) => {
  const ignoring = RULES.replace('priority: P0\n', 'priority: P0\n    gitops: ignore\n');
  const { rec, kube } = await alertOn([], { DRY_RUN: 'true' }, ignoring);
  t.equal(rec.state, 'dry_run', rec.outcome?.message ?? '');
  t.match(rec.plan?.summary, /not suspended \(gitops: ignore\).*status\.inventory does not list it.*: not counted as its owner/);
  t.same(kube.patches(), []);
  const owners = await findOwners(kube, [{ resource: RESOURCES.deployments, namespace: 'shop', name: 'web' }], { namespace: 'argocd', instanceLabel: 'app.kubernetes.io/instance', inCluster: ['https://kubernetes.default.svc', 'in-cluster'] });
  t.match(owners[0]?.unverified, /does not list it/);
});

t.test('listed, but outside GITOPS_OWNER_ALLOW: refused naming the setting; inside it: suspended first (dry run shows the plan)', async (t) => {
  const { rec, kube } = await alertOn(['shop_web_apps_Deployment'], { GITOPS_OWNER_ALLOW: 'Kustomization/flux-system/apps-*' });
  t.equal(rec.state, 'refused', rec.outcome?.message ?? '');
  t.match(rec.outcome?.message, /which rollguard may not suspend: owner Kustomization\/flux-system\/flux-system is not in GITOPS_OWNER_ALLOW \(Kustomization\/flux-system\/apps-\*\)/);
  t.same(kube.patches(), []);
  const ok = await alertOn(['shop_web_apps_Deployment'], { GITOPS_OWNER_ALLOW: 'Kustomization/flux-system/*', DRY_RUN: 'true' });
  t.equal(ok.rec.state, 'dry_run', ok.rec.outcome?.message ?? '');
  t.match(ok.rec.plan?.summary, /first suspends Flux Kustomization flux-system\/flux-system \(gitops: suspend\)/);
});

t.test('an owner in a denied namespace is never suspended', async (t) => {
  const { rec, kube } = await alertOn(['shop_web_apps_Deployment'], { SCOPE_DENY_NAMESPACES: 'kube-system,flux-system' });
  t.equal(rec.state, 'refused', rec.outcome?.message ?? '');
  t.match(rec.outcome?.message, /may not suspend: namespace flux-system is denied \(SCOPE_DENY_NAMESPACES\)/);
  t.same(kube.patches(), []);
});

t.test('Flux labels beside a Helm chart’s app.kubernetes.io/instance (Argo CD label tracking’s label), no such Application: the Kustomization is still suspended first', async (t) => {
  const kube = cluster(['shop_web_apps_Deployment'], { ...FLUX, 'app.kubernetes.io/instance': 'web' });
  const e = testEngine({ kube, actions: createActions(), env: { DRY_RUN: 'true' } });
  await e.deliver(alert());
  const [rec] = await e.engine.records.list({});
  t.equal(rec!.state, 'dry_run', rec!.outcome?.message ?? '');
  t.same(rec!.gitops?.owners.map((o) => `${o.tool} ${o.kind} ${o.namespace}/${o.name}`), ['Flux Kustomization flux-system/flux-system'], 'not dropped for the Application the label seems to name');
  t.match(rec!.plan?.summary, /first suspends Flux Kustomization flux-system\/flux-system \(gitops: suspend\)/);
});

t.test('a tracking annotation naming an Application of a hub’s Argo CD that deploys to another cluster: refused, that Application not suspended', async (t) => {
  const kube = standardCluster();
  const d = kube.peek(RESOURCES.deployments, 'shop', 'web')!;
  kube.put(RESOURCES.deployments, { ...d, metadata: { ...d.metadata, annotations: { ...d.metadata.annotations, 'argocd.argoproj.io/tracking-id': 'shop-prod-eu:apps/Deployment:shop/web' } } });
  const rs = kube.peek(RESOURCES.replicasets, 'shop', 'web-bb02')!;
  kube.put(RESOURCES.replicasets, { ...rs, metadata: { ...rs.metadata, creationTimestamp: new Date(Date.now() - 10 * 60_000).toISOString() } });
  kube.add(OWNER_RESOURCES.Application, {
    apiVersion: 'argoproj.io/v1alpha1', kind: 'Application', metadata: { name: 'shop-prod-eu', namespace: 'argocd' },
    spec: { destination: { server: 'https://prod-eu.example.com:6443', namespace: 'shop' }, syncPolicy: { automated: { selfHeal: true } } },
    status: { resources: [{ group: 'apps', version: 'v1', kind: 'Deployment', namespace: 'shop', name: 'web' }] },
  });
  const e = testEngine({ kube, actions: createActions(), env: { DRY_RUN: 'true' } }); // a dry run: refused all the same, and never waits on a rollout
  await e.deliver(alert());
  const [rec] = await e.engine.records.list({});
  t.equal(rec!.state, 'refused', rec!.outcome?.message ?? '');
  t.match(rec!.outcome?.message, /Application argocd\/shop-prod-eu by its annotation .*deploys to https:\/\/prod-eu\.example\.com:6443 \(spec\.destination\.server\).*not rolled back and Argo CD Application argocd\/shop-prod-eu not suspended/);
  t.same(kube.patches(), [], 'the other cluster’s Application not paused, the Deployment not written');
});

t.test('an Application whose destination is not in GITOPS_ARGOCD_IN_CLUSTER: the refusal names the destination and the setting, never gitops: ignore; named there, it is suspended first', async (t) => {
  const cluster = () => {
    const kube = standardCluster();
    const d = kube.peek(RESOURCES.deployments, 'shop', 'web')!;
    kube.put(RESOURCES.deployments, { ...d, metadata: { ...d.metadata, annotations: { ...d.metadata.annotations, 'argocd.argoproj.io/tracking-id': 'shop:apps/Deployment:shop/web' } } });
    const rs = kube.peek(RESOURCES.replicasets, 'shop', 'web-bb02')!;
    kube.put(RESOURCES.replicasets, { ...rs, metadata: { ...rs.metadata, creationTimestamp: new Date(Date.now() - 10 * 60_000).toISOString() } });
    kube.add(OWNER_RESOURCES.Application, {
      apiVersion: 'argoproj.io/v1alpha1', kind: 'Application', metadata: { name: 'shop', namespace: 'argocd' },
      spec: { destination: { name: 'local', namespace: 'shop' }, syncPolicy: { automated: { selfHeal: true } } },
      status: { resources: [{ group: 'apps', version: 'v1', kind: 'Deployment', namespace: 'shop', name: 'web' }] },
    });
    return kube;
  };
  const kube = cluster();
  const e = testEngine({ kube, actions: createActions(), env: { DRY_RUN: 'true' } });
  await e.deliver(alert());
  const [rec] = await e.engine.records.list({});
  t.equal(rec!.state, 'refused', rec!.outcome?.message ?? '');
  t.match(rec!.outcome?.message, /deploys to the cluster named local \(spec\.destination\.name\).*not rolled back and Argo CD Application argocd\/shop not suspended; if the cluster named local \(spec\.destination\.name\) is the one rollguard runs in .*add it to GITOPS_ARGOCD_IN_CLUSTER/);
  t.notMatch(rec!.outcome?.message, /gitops: ignore|remove the/, 'no advice that lets self-heal put the bad revision back');
  t.same(kube.patches(), []);

  const named = cluster();
  const ok = testEngine({ kube: named, actions: createActions(), env: { DRY_RUN: 'true', GITOPS_ARGOCD_IN_CLUSTER: 'https://kubernetes.default.svc,in-cluster,local' } });
  await ok.deliver(alert());
  const [rec2] = await ok.engine.records.list({});
  t.equal(rec2!.state, 'dry_run', rec2!.outcome?.message ?? '');
  t.match(rec2!.plan?.summary, /first suspends Argo CD Application argocd\/shop \(gitops: suspend\)/);
});

t.test('a tracking annotation naming an in-cluster Application that does not list the target: the refusal names the annotation, not a label', async (t) => {
  const kube = standardCluster();
  const d = kube.peek(RESOURCES.deployments, 'shop', 'web')!;
  kube.put(RESOURCES.deployments, { ...d, metadata: { ...d.metadata, annotations: { ...d.metadata.annotations, 'argocd.argoproj.io/tracking-id': 'platform:apps/Deployment:shop/web' } } });
  const rs = kube.peek(RESOURCES.replicasets, 'shop', 'web-bb02')!;
  kube.put(RESOURCES.replicasets, { ...rs, metadata: { ...rs.metadata, creationTimestamp: new Date(Date.now() - 10 * 60_000).toISOString() } });
  kube.add(OWNER_RESOURCES.Application, {
    apiVersion: 'argoproj.io/v1alpha1', kind: 'Application', metadata: { name: 'platform', namespace: 'argocd' },
    spec: { destination: { server: 'https://kubernetes.default.svc', namespace: 'platform' }, syncPolicy: { automated: { selfHeal: true } } },
    status: { resources: [{ group: 'apps', version: 'v1', kind: 'Deployment', namespace: 'platform', name: 'ingress' }] },
  });
  const e = testEngine({ kube, actions: createActions(), env: { DRY_RUN: 'true' } });
  await e.deliver(alert());
  const [rec] = await e.engine.records.list({});
  t.equal(rec!.state, 'refused', rec!.outcome?.message ?? '');
  t.match(rec!.outcome?.message, /by its annotation argocd\.argoproj\.io\/tracking-id, but that Application's status\.resources does not list it: being named by the object does not make it the owner; not rolled back and Argo CD Application argocd\/platform not suspended; remove the annotation argocd\.argoproj\.io\/tracking-id from Deployment\/shop\/web, or set gitops: ignore/);
  t.notMatch(rec!.outcome?.message, /label/, 'no label named: there is none');
  t.same(kube.patches(), []);
});
