// A Helm release's workloads from its manifest (src/actions/helm-workloads.ts): which documents are
// read, and which are never parsed.
import t from 'tap';
import { labelledByFlux, MANIFEST_DOCUMENTS_READ, RELEASE_OBJECTS_READ, releaseWorkloads } from '../../../src/actions/helm-workloads.js';

const names = (manifest: string, ns = 'shop') => releaseWorkloads(manifest, ns).objects.map((w) => `${w.resource.group}/${w.resource.kind}/${w.namespace}/${w.name}`);

t.test('the Deployments, StatefulSets and DaemonSets named, once each; a document without a namespace is the release\'s', async (t) => {
  const manifest = `---
# Source: shop/templates/deployment.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: shop
---
# Source: shop/templates/service.yaml
apiVersion: v1
kind: Service
metadata:
  name: shop
---
apiVersion: apps/v1
kind: StatefulSet # the worker
metadata: {name: shop-worker, namespace: shop}
--- # a separator with a comment
{"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "namespace": "shop-agents"}}
--- {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "inline"}}
---
apiVersion: example.com/v1
kind: Deployment
metadata:
  name: lookalike
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: shop
`;
  t.same(names(manifest), ['apps/Deployment/shop/shop', 'apps/StatefulSet/shop/shop-worker', 'apps/DaemonSet/shop-agents/agent', 'apps/Deployment/shop/inline'], 'a trailing comment, flow and JSON style, a document on its separator\'s line and a namespace of its own are read; another group\'s Deployment is not a workload');
  t.same(names(''), [], 'an empty manifest: none');
  t.same(names('----\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n'), [], 'four dashes are no separator: the document does not parse');
  t.same(names('---\t{apiVersion: apps/v1, kind: Deployment, metadata: {name: x}}\n'), ['apps/Deployment/shop/x'], 'a tab after the dashes is a separator too');
  t.same(names('apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x, namespace: ""}\n'), ['apps/Deployment/shop/x'], "an empty namespace is the release's, as helm installs it (before: left out, unlocked)");
  const list = `apiVersion: v1
kind: List
items:
  - {apiVersion: apps/v1, kind: Deployment, metadata: {name: listed}}
  - {apiVersion: v1, kind: Service, metadata: {name: listed}}
  - {apiVersion: apps/v1, kind: StatefulSet, metadata: {name: listed-db, namespace: data}}
---
apiVersion: apps/v1
kind: DeploymentList
items: [{apiVersion: apps/v1, kind: Deployment, metadata: {name: typed-list}}]
`;
  t.same(names(list), ['apps/Deployment/shop/listed', 'apps/StatefulSet/data/listed-db', 'apps/Deployment/shop/typed-list'], "a List's workloads, which helm installs one by one (before: none of them read, so none locked)");
  t.same(names('---\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\n---\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: b}\n---'), ['apps/Deployment/shop/a', 'apps/Deployment/shop/b'], 'empty documents between separators, and a separator at the very end');
});

t.test('at most RELEASE_OBJECTS_READ workloads (more: one more is named), and MANIFEST_DOCUMENTS_READ documents looked at', async (t) => {
  const deployment = (i: number) => `apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d${i}\n`;
  t.ok(RELEASE_OBJECTS_READ >= 100, `an umbrella chart's dozens of workloads are all read (${RELEASE_OBJECTS_READ})`);
  const many = Array.from({ length: RELEASE_OBJECTS_READ + 5 }, (_, i) => deployment(i)).join('---\n');
  t.same(names(`kind: [unclosed\n---\n${many}`), Array.from({ length: RELEASE_OBJECTS_READ }, (_, i) => `apps/Deployment/shop/d${i}`), 'a document that does not parse is skipped; the rest in order, up to the bound');
  t.equal(releaseWorkloads(many, 'shop').more, true, 'past the bound: said');
  const exactly = Array.from({ length: RELEASE_OBJECTS_READ }, (_, i) => deployment(i));
  t.equal(releaseWorkloads([...exactly, deployment(0), deployment(1)].join('---\n'), 'shop').more, false, 'exactly the bound, then names already read: nothing more');
  const filler = Array.from({ length: MANIFEST_DOCUMENTS_READ }, () => 'apiVersion: v1\nkind: ConfigMap\n').join('---\n');
  t.same(names(`${filler}---\n${deployment(0)}`), [], 'past the documents bound nothing more is read');
  // 16 Mi characters of tiny documents (what helm output may be): cut lazily, only the first MANIFEST_DOCUMENTS_READ
  const tiny = '---\na\n'.repeat(Math.floor((16 * 1024 * 1024) / 6)) + deployment(0);
  let cut = 0;
  const split = String.prototype.split;
  String.prototype.split = function (this: string, ...args: Parameters<typeof split>) {
    if (this.length === tiny.length) cut++;
    return split.apply(this, args);
  } as typeof split;
  let read: string[];
  try {
    read = names(tiny);
  } finally {
    String.prototype.split = split;
  }
  t.same(read, [], 'the workload past the documents bound is not read');
  t.equal(cut, 0, 'the manifest is not split whole');
});

t.test('a document with more aliases than a manifest needs is not expanded: the others are read, and it is said unread (the plan refuses it)', async (t) => {
  const bomb = ['apiVersion: apps/v1', 'kind: Deployment', 'metadata: {name: bomb}', 'a: &a [x, x]', ...Array.from({ length: 150 }, (_, i) => `b${i}: *a`)].join('\n');
  const r = releaseWorkloads(`${bomb}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n`, 'shop');
  t.same(r.objects.map((w) => w.name), ['web']);
  t.match(r.unread, [/^document 1 \(/]);
});

t.test("a workload helm would read but this could not is never passed over: unread, so the plan refuses (a review found each of these got past the scope check)", async (t) => {
  const deny = (o: { name: string }) => (o.name === 'payments' ? 'target Deployment/shop/payments is denied by Deployment/shop/payments (SCOPE_DENY_TARGETS)' : undefined);
  for (const [how, manifest] of [
    ['an escaped line break in the kind', 'apiVersion: apps/v1\nkind: "Deploy\\\n  ment"\nmetadata: {name: payments, namespace: shop}\n'],
    ['a binary name', 'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: !!binary cGF5bWVudHM=, namespace: shop}\n'],
    ['a binary kind', 'apiVersion: apps/v1\nkind: !!binary RGVwbG95bWVudA==\nmetadata: {name: payments, namespace: shop}\n'],
    ['a key given twice (helm takes the last)', 'apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: payments\n  labels: {a: b}\n  labels: {a: b}\n'],
    ['a separator followed by a comment', 'apiVersion: v1\nkind: ConfigMap\n---#x\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: payments}\n'],
  ] as const) {
    const r = releaseWorkloads(manifest, 'shop', deny);
    t.same(r.outside, ['Deployment/shop/payments: target Deployment/shop/payments is denied by Deployment/shop/payments (SCOPE_DENY_TARGETS)'], how);
  }
  const r = releaseWorkloads('apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: [payments], namespace: shop}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web\n', 'shop', deny);
  t.same(r.unread, ['document 1 (a Deployment whose name or namespace is not text)', r.unread[1]], 'a name that is not text');
  t.match(r.unread[1], /^document 2 \(/, 'a document naming a Deployment that does not parse');
});

t.test('names that are not Kubernetes names are left out', async (t) => {
  t.same(names('apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: "../../secrets/x", namespace: shop}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: ok, namespace: "Bad NS"}\n'), []);
});

t.test('whether the manifest labels anything as a HelmRelease\'s; a ConfigMap whose data mentions a workload kind is parsed and dropped', async (t) => {
  const manifest = `apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: templates}
data:
  deployment.yaml: |
    kind: Deployment
    metadata: {name: inner}
`;
  t.same(releaseWorkloads(manifest, 'shop').objects.map((w) => w.name), ['db']);
  t.notOk(labelledByFlux(manifest));
  t.ok(labelledByFlux(`${manifest}---\napiVersion: batch/v1\nkind: CronJob\nmetadata:\n  labels:\n    helm.toolkit.fluxcd.io/name: shop\n`), 'on any kind');
});

t.test("a workload however the manifest spells its kind (a YAML tag, an alias, an escape), and every one past the first that are read, is checked for scope", async (t) => {
  const denied = (o: { namespace: string }) => (o.namespace === 'kube-system' ? 'namespace kube-system is denied (SCOPE_DENY_NAMESPACES)' : undefined);
  for (const [how, doc] of [
    ['a YAML tag', 'apiVersion: apps/v1\nkind: !!str Deployment\nmetadata:\n  name: node-agent\n  namespace: kube-system\n'],
    ['a JSON escape', '{"apiVersion":"apps/v1","kind":"Deploym\\u0065nt","metadata":{"name":"node-agent","namespace":"kube-system"}}'],
    ['a YAML escape', 'apiVersion: apps/v1\nkind: "Deploym\\x65nt"\nmetadata:\n  name: node-agent\n  namespace: kube-system\n'],
    ['an alias', 'apiVersion: apps/v1\nmetadata:\n  labels: {k: &k Deployment}\n  name: node-agent\n  namespace: kube-system\nkind: *k\n'],
  ] as const) {
    const r = releaseWorkloads(doc, 'shop', denied);
    t.same(r.objects.map((w) => `${w.resource.kind}/${w.namespace}/${w.name}`), ['Deployment/kube-system/node-agent'], how);
    t.same(r.outside, ['Deployment/kube-system/node-agent: namespace kube-system is denied (SCOPE_DENY_NAMESPACES)'], how);
  }
  // past the first RELEASE_OBJECTS_READ: not read, but checked
  const many = [...Array.from({ length: RELEASE_OBJECTS_READ }, (_, i) => `apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: svc-${i}\n`), 'apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: node-agent\n  namespace: kube-system\n'].join('---\n');
  const r = releaseWorkloads(many, 'shop', denied);
  t.equal(r.objects.length, RELEASE_OBJECTS_READ);
  t.equal(r.more, true);
  t.same(r.outside, ['DaemonSet/kube-system/node-agent: namespace kube-system is denied (SCOPE_DENY_NAMESPACES)'], 'the 101st, checked though not read');
});

t.test("what helm's YAML reads otherwise than this (a merge key, a binary List kind, a lone CR or YAML 1.1 line break escaped, a %-escaped tag): outside or unread, never passed over", async (t) => {
  const deny = (o: { namespace: string }) => (o.namespace === 'kube-system' ? 'namespace kube-system is denied (SCOPE_DENY_NAMESPACES)' : undefined);
  for (const [how, manifest] of [
    ['a merge key under metadata', 'apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  <<: {namespace: kube-system}\n  name: web\n'],
    ['a merge key at the top', 'apiVersion: apps/v1\n<<: {kind: Deployment, metadata: {name: web, namespace: kube-system}}\n'],
    ['a binary List kind', 'apiVersion: v1\nkind: !!binary TGlzdA==\nitems:\n- {apiVersion: apps/v1, kind: Deployment, metadata: {name: web, namespace: kube-system}}\n'],
    ['an escaped lone CR', 'apiVersion: apps/v1\nkind: "Deploy\\\rment"\nmetadata: {name: web, namespace: kube-system}\n'],
    ['an escaped U+2028', 'apiVersion: apps/v1\nkind: "Deploy\\\u2028ment"\nmetadata: {name: web, namespace: kube-system}\n'],
    ['a %-escaped binary tag', 'apiVersion: apps/v1\nkind: !!%62inary RGVwbG95bWVudA==\nmetadata: {name: web, namespace: kube-system}\n'],
  ] as const) {
    const r = releaseWorkloads(manifest, 'shop', deny);
    // (what was found is left out of the messages: a U+2028 in one would cut a TAP line)
    t.ok(r.outside.length + r.unread.length > 0, how);
  }
});
