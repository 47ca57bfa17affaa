// StatefulSet and DaemonSet undo against the real control plane, side by side with the built
// kubectl: identical twins in two namespaces; rollguard rolls back one, `kubectl rollout undo`
// the other; the objects and their ControllerRevisions must then match field for field.
import t, { type Test } from 'tap';
import pino from 'pino';
import { startCluster, type Cluster } from '../cluster/harness.js';
import { statefulSetAction } from '../../src/actions/statefulset.js';
import { daemonSetAction } from '../../src/actions/daemonset.js';
import type { Action, ActionContext, TargetKind } from '../../src/actions/action.js';
import { ClientNodeKube } from '../../src/kube/client.js';
import type { KubeObject } from '../../src/kube/kube.js';
import { loadKubeConfig } from '../../src/kube/config.js';
import { daemonSetState, statefulSetState } from '../../src/kube/rollout-status.js';

const OURS = 'e2e-rg';
const THEIRS = 'e2e-kubectl';
const CAUSE = 'rollguard: rule crash-loop, alert KubePodCrashLooping (fp 0c1d), rollback r-e2e';

const cluster: Cluster = await startCluster({ argoCrds: false });
t.teardown(() => cluster.stop({ keep: !t.passing() }));
t.comment(`control plane at ${cluster.server}, logs in ${cluster.logDir}`);

const kube = new ClientNodeKube((await loadKubeConfig({ mode: 'kubeconfig', path: cluster.rollguardKubeconfig }))!);
const ctx: ActionContext = { kube, logger: pino({ level: 'silent' }), changeCause: CAUSE, checkFence: async () => {} };

const poll = cluster.poll;

interface Kind {
  kind: Extract<TargetKind, 'StatefulSet' | 'DaemonSet'>;
  plural: 'statefulsets' | 'daemonsets';
  word: string;
  action: Action;
  done: (o: KubeObject) => boolean;
  body: (name: string, image: string) => Record<string, unknown>;
}

const podTemplate = (app: string, image: string) => ({
  metadata: { labels: { app }, annotations: { 'prometheus.io/scrape': 'true' } },
  spec: { containers: [{ name: 'main', image, env: [{ name: 'MODE', value: 'prod' }], resources: { requests: { cpu: '10m' } } }] },
});

const KINDS: Kind[] = [
  {
    kind: 'StatefulSet',
    plural: 'statefulsets',
    word: 'statefulset',
    action: statefulSetAction,
    done: (o) => statefulSetState(o).done,
    body: (name, image) => ({
      apiVersion: 'apps/v1',
      kind: 'StatefulSet',
      metadata: { name, annotations: { team: 'data' } },
      spec: {
        replicas: 2,
        serviceName: name,
        podManagementPolicy: 'Parallel',
        selector: { matchLabels: { app: name } },
        template: podTemplate(name, image),
      },
    }),
  },
  {
    kind: 'DaemonSet',
    plural: 'daemonsets',
    word: 'daemonset',
    action: daemonSetAction,
    done: (o) => daemonSetState(o).done && (o.status?.desiredNumberScheduled ?? 0) > 0,
    body: (name, image) => ({
      apiVersion: 'apps/v1',
      kind: 'DaemonSet',
      metadata: { name, annotations: { team: 'infra' } },
      spec: { selector: { matchLabels: { app: name } }, template: podTemplate(name, image) },
    }),
  },
];

const get = (k: Kind, ns: string, name: string) => cluster.request<KubeObject>('GET', `/apis/apps/v1/namespaces/${ns}/${k.plural}/${name}`);
async function revisions(ns: string, uid: string): Promise<KubeObject[]> {
  const l = await cluster.request<{ items: KubeObject[] }>('GET', `/apis/apps/v1/namespaces/${ns}/controllerrevisions`);
  return l.items.filter((r) => r.metadata.ownerReferences?.some((o) => o.uid === uid && o.controller));
}
const maxRev = (l: KubeObject[]) => Math.max(0, ...l.map((r) => Number((r as { revision?: number }).revision ?? 0)));

async function settle(k: Kind, ns: string, name: string, revision: number) {
  const o = await poll(`${ns}/${name} rolled out`, () => get(k, ns, name), (o) =>
    (o.status?.observedGeneration ?? 0) >= (o.metadata.generation ?? 1) && k.done(o),
  );
  await poll(`${ns}/${name} at revision ${revision}`, () => revisions(ns, o.metadata.uid!), (l) => maxRev(l) === revision);
}

const withoutCause = (a: Record<string, string> | undefined) => {
  const c = { ...(a ?? {}) };
  delete c['kubernetes.io/change-cause'];
  return c;
};

async function compareTwins(t: Test, k: Kind, name: string) {
  const [a, b] = await Promise.all([get(k, OURS, name), get(k, THEIRS, name)]);
  t.same(a.spec, b.spec, `${k.kind} spec identical to kubectl’s`);
  t.equal(a.metadata.generation, b.metadata.generation, 'same generation');
  t.same(withoutCause(a.metadata.annotations), withoutCause(b.metadata.annotations), 'annotations identical (change-cause aside)');
  t.equal(a.metadata.annotations?.['kubernetes.io/change-cause'], CAUSE);
  const [ra, rb] = await Promise.all([revisions(OURS, a.metadata.uid!), revisions(THEIRS, b.metadata.uid!)]);
  const view = (l: KubeObject[]) =>
    l
      .map((r) => ({ name: r.metadata.name, revision: (r as { revision?: number }).revision, data: (r as { data?: unknown }).data }))
      .sort((x, y) => x.name.localeCompare(y.name));
  t.same(view(ra), view(rb), 'ControllerRevisions identical: names (hashes), revision numbers, data');
  return a;
}

const undo = (k: Kind, name: string, args: string[] = []) =>
  cluster.kubectl(['-n', THEIRS, 'rollout', 'undo', `${k.word}/${name}`, ...args], { kubeconfig: cluster.rollguardKubeconfig });

async function ours(t: Test, k: Kind, name: string, toRevision?: number) {
  const plan = await k.action.plan({ kind: k.kind, namespace: OURS, name, ...(toRevision !== undefined ? { toRevision } : {}) }, ctx);
  t.notOk(plan.refusal, plan.refusal?.message ?? plan.summary);
  const exec = await k.action.execute(plan, ctx);
  t.equal(exec.applied, true, exec.message);
  const v = await k.action.verify(plan, ctx, { timeoutMs: 90_000, pollMs: 250, execution: exec });
  t.equal(v.outcome, 'succeeded', `verify: ${v.message}`);
  return plan;
}

await cluster.kubectl(['create', 'namespace', OURS], { check: true });
await cluster.kubectl(['create', 'namespace', THEIRS], { check: true });

for (const k of KINDS) {
  t.test(`${k.kind} undo matches kubectl rollout undo`, async (t) => {
    const name = k.kind === 'StatefulSet' ? 'db' : 'agent';
    for (const ns of [OURS, THEIRS]) await cluster.request('POST', `/apis/apps/v1/namespaces/${ns}/${k.plural}`, k.body(name, `${name}:v1`));
    for (const ns of [OURS, THEIRS]) await settle(k, ns, name, 1);
    for (const v of [2, 3]) {
      for (const ns of [OURS, THEIRS]) {
        await cluster.request('PATCH', `/apis/apps/v1/namespaces/${ns}/${k.plural}/${name}`, {
          spec: { template: { spec: { containers: [{ name: 'main', image: `${name}:v${v}` }] } } },
        });
      }
      for (const ns of [OURS, THEIRS]) await settle(k, ns, name, v);
    }

    // previous
    const plan = await ours(t, k, name);
    t.equal(plan.fromRevision, 3);
    t.equal(plan.toRevision, 2);
    const kp = await undo(k, name);
    t.equal(kp.code, 0, `kubectl: ${kp.stderr}`);
    for (const ns of [OURS, THEIRS]) await settle(k, ns, name, 4);
    const a = await compareTwins(t, k, name);
    t.equal(a.spec.template.spec.containers[0].image, `${name}:v2`);

    // --to-revision=1
    await ours(t, k, name, 1);
    const k1 = await undo(k, name, ['--to-revision=1']);
    t.equal(k1.code, 0, `kubectl: ${k1.stderr}`);
    for (const ns of [OURS, THEIRS]) await settle(k, ns, name, 5);
    const b = await compareTwins(t, k, name);
    t.equal(b.spec.template.spec.containers[0].image, `${name}:v1`);

    // refusals, in kubectl's words
    const missing = await k.action.plan({ kind: k.kind, namespace: OURS, name, toRevision: 99 }, ctx);
    const kMissing = await undo(k, name, ['--to-revision=99']);
    t.equal(missing.refusal?.code, 'revision_not_found');
    t.ok(kMissing.stderr.includes(missing.refusal!.message), `kubectl: ${kMissing.stderr.trim()}`);
    const same = await k.action.plan({ kind: k.kind, namespace: OURS, name, toRevision: 5 }, ctx);
    const kSame = await undo(k, name, ['--to-revision=5']);
    t.equal(same.refusal?.code, 'already_matches');
    t.ok(kSame.stdout.includes(same.refusal!.message), `kubectl: ${kSame.stdout.trim()}`);

    const solo = `${name}-solo`;
    for (const ns of [OURS, THEIRS]) await cluster.request('POST', `/apis/apps/v1/namespaces/${ns}/${k.plural}`, k.body(solo, 'solo:v1'));
    for (const ns of [OURS, THEIRS]) await settle(k, ns, solo, 1);
    const none = await k.action.plan({ kind: k.kind, namespace: OURS, name: solo }, ctx);
    const kNone = await undo(k, solo);
    t.equal(none.refusal?.code, 'no_history');
    t.ok(kNone.stderr.includes(none.refusal!.message), `kubectl: ${kNone.stderr.trim()}`);
  });
}
