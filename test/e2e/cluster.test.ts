// The real control plane (test/cluster/harness.ts) does what rollguard relies on:
// the deployment controller creates revisions, kubectl rollout undo brings v1's template
// back as revision 3, the rollguard ServiceAccount has exactly the chart's rights, and the
// Argo Rollouts CRDs validate like a real cluster's.
import t from 'tap';
import * as path from 'node:path';
import * as fs from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { once } from 'node:events';
import { startCluster, defaultBinDir, freePorts, type Cluster } from '../cluster/harness.js';

interface ReplicaSet {
  metadata: {
    name: string;
    annotations?: Record<string, string>;
    ownerReferences?: { kind: string; name: string; uid: string }[];
  };
  spec: { replicas?: number; template: { spec: { containers: { name: string; image: string }[] } } };
  status: { replicas?: number };
}
interface Deployment {
  metadata: { uid: string; generation: number; annotations?: Record<string, string> };
  spec: { replicas: number; template: { spec: { containers: { name: string; image: string }[] } } };
  status: {
    observedGeneration?: number;
    replicas?: number;
    updatedReplicas?: number;
    readyReplicas?: number;
    availableReplicas?: number;
  };
}

const NS = 'e2e-rollback';
const REVISION = 'deployment.kubernetes.io/revision';

// The first attempt is given a port another process holds (as a concurrent suite may take one
// between freePorts() and etcd's bind): the start is retried on fresh ports.
const holder = createServer().listen(0, '127.0.0.1');
await once(holder, 'listening');
const taken = (holder.address() as AddressInfo).port;
const picks: number[][] = [];
// Extra component flags (benchmarks measure control-plane settings with them): defaults here, so
// the rest of this file runs on the usual control plane.
const extraArgs = { etcd: ['--max-request-bytes=1572864'], apiserver: ['--min-request-timeout=1800'] };
const cluster: Cluster = await startCluster({
  extraArgs,
  ports: async (n) => {
    const p = await freePorts(n);
    if (picks.length === 0) p[0] = taken;
    picks.push(p);
    return p;
  },
});
holder.close();
t.teardown(() => cluster.stop({ keep: !t.passing() }));
t.test('a port taken between its pick and its bind: the control plane is started again on fresh ports', async (t) => {
  t.equal(picks.length, 2, 'two attempts');
  t.equal(picks[0]![0], taken, "the first gave etcd a port another process held");
  t.not(picks[1]![0], taken);
  t.ok(cluster.server.startsWith('https://127.0.0.1:'), 'and the second started');
});
t.comment(`control plane at ${cluster.server}, logs in ${cluster.logDir}`);
t.test("extraArgs reach etcd and kube-apiserver after the harness' own flags; pid() names the running process", async (t) => {
  for (const [name, extra] of [['etcd', extraArgs.etcd], ['kube-apiserver', extraArgs.apiserver]] as const) {
    const pid = cluster.pid(name);
    t.ok(pid, `${name} has a pid`);
    const argv = (await fs.readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').filter(Boolean);
    t.equal(path.basename(argv[0]!), name, `pid ${pid} is ${name}`);
    t.same(argv.slice(-extra.length), extra, `${name}'s last flags are the extra ones`);
  }
});

const poll = cluster.poll;

const getDeployment = () => cluster.request<Deployment>('GET', `/apis/apps/v1/namespaces/${NS}/deployments/demo`);
const rolledOut = (d: Deployment, revision: string) =>
  d.metadata.annotations?.[REVISION] === revision &&
  (d.status.observedGeneration ?? 0) >= d.metadata.generation &&
  d.status.updatedReplicas === d.spec.replicas &&
  d.status.replicas === d.spec.replicas &&
  d.status.availableReplicas === d.spec.replicas;

async function ownedReplicaSets(uid: string): Promise<ReplicaSet[]> {
  const list = await cluster.request<{ items: ReplicaSet[] }>(
    'GET',
    `/apis/apps/v1/namespaces/${NS}/replicasets?labelSelector=app%3Ddemo`,
  );
  return list.items.filter((rs) => rs.metadata.ownerReferences?.some((o) => o.kind === 'Deployment' && o.uid === uid));
}
const image = (o: { spec: { template: { spec: { containers: { image: string }[] } } } }) =>
  o.spec.template.spec.containers[0]?.image;

t.test('deployment revisions and kubectl rollout undo on the real controllers', async (t) => {
  const kubectlPath = cluster.bin('kubectl');
  t.equal(path.dirname(kubectlPath), defaultBinDir(), 'kubectl is the built one from the cache');
  const version = await cluster.kubectl(['version', '-o', 'json'], { check: true });
  const v = JSON.parse(version.stdout) as { serverVersion: { gitVersion: string } };
  t.match(v.serverVersion.gitVersion, /^v1\.\d+\.\d+$/, `server is ${v.serverVersion.gitVersion}`);

  await cluster.kubectl(['create', 'namespace', NS], { check: true });
  await cluster.request('POST', `/apis/apps/v1/namespaces/${NS}/deployments`, {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'demo', labels: { app: 'demo' } },
    spec: {
      replicas: 2,
      selector: { matchLabels: { app: 'demo' } },
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } },
      template: {
        metadata: { labels: { app: 'demo' } },
        spec: { containers: [{ name: 'app', image: 'demo:v1' }] },
      },
    },
  });
  const d1 = await poll('revision 1 rolled out', getDeployment, (d) => rolledOut(d, '1'));
  t.equal(d1.status.availableReplicas, 2, 'v1: 2 pods scheduled on kwok nodes, Running and Ready');

  const set = await cluster.kubectl(['-n', NS, 'set', 'image', 'deployment/demo', 'app=demo:v2'], { check: true });
  t.match(set.stdout, /image updated/);
  const d2 = await poll('revision 2 rolled out', getDeployment, (d) => rolledOut(d, '2'));
  t.equal(image(d2), 'demo:v2');

  const before = await poll('two ReplicaSets, v1 scaled down', () => ownedReplicaSets(d2.metadata.uid), (l) =>
    l.length === 2 && l.every((rs) => rs.status.replicas === rs.spec.replicas),
  );
  const byRev = new Map(before.map((rs) => [rs.metadata.annotations?.[REVISION], rs]));
  t.same([...byRev.keys()].sort(), ['1', '2'], 'ReplicaSets carry revisions 1 and 2');
  const rs1 = byRev.get('1')!;
  const rs2 = byRev.get('2')!;
  t.equal(image(rs1), 'demo:v1', 'revision 1 ReplicaSet has v1 template');
  t.equal(image(rs2), 'demo:v2', 'revision 2 ReplicaSet has v2 template');
  t.equal(rs1.spec.replicas, 0, 'revision 1 scaled to 0');
  t.equal(rs2.spec.replicas, 2, 'revision 2 has the replicas');

  // The built kubectl, with the rollguard ServiceAccount's production rights.
  const undo = await cluster.kubectl(['-n', NS, 'rollout', 'undo', 'deployment/demo'], {
    kubeconfig: cluster.rollguardKubeconfig,
  });
  t.equal(undo.code, 0, `kubectl rollout undo as rollguard succeeds ${undo.stderr}`);
  t.match(undo.stdout, /rolled back/);

  const d3 = await poll('revision 3 rolled out', getDeployment, (d) => rolledOut(d, '3'));
  t.equal(d3.metadata.annotations?.[REVISION], '3', 'deployment is at revision 3');
  t.equal(image(d3), 'demo:v1', "revision 3 has v1's template");
  t.equal(d3.status.availableReplicas, 2);

  const after = await poll('v2 ReplicaSet scaled down', () => ownedReplicaSets(d3.metadata.uid), (l) =>
    l.every((rs) => rs.status.replicas === rs.spec.replicas),
  );
  t.equal(after.length, 2, 'undo reuses the v1 ReplicaSet instead of creating a third');
  const old = after.find((rs) => rs.metadata.name === rs1.metadata.name)!;
  t.equal(old.metadata.annotations?.[REVISION], '3', 'v1 ReplicaSet now carries revision 3');
  t.equal(old.metadata.annotations?.['deployment.kubernetes.io/revision-history'], '1');
  t.equal(old.spec.replicas, 2);
  const v2rs = after.find((rs) => rs.metadata.name === rs2.metadata.name)!;
  t.equal(v2rs.metadata.annotations?.[REVISION], '2');
  t.equal(v2rs.spec.replicas, 0, 'v2 ReplicaSet scaled to 0');

  const history = await cluster.kubectl(['-n', NS, 'rollout', 'history', 'deployment/demo'], { check: true });
  t.match(history.stdout, /^2\s/m);
  t.match(history.stdout, /^3\s/m);
});

t.test('rollguard ServiceAccount has the chart rights and no more', async (t) => {
  const can = async (verb: string, resource: string, ns = NS) => {
    const r = await cluster.kubectl(['auth', 'can-i', verb, resource, '-n', ns], {
      kubeconfig: cluster.rollguardKubeconfig,
    });
    return r.stdout.trim();
  };
  const whoami = await cluster.kubectl(['auth', 'whoami', '-o', 'jsonpath={.status.userInfo.username}'], {
    kubeconfig: cluster.rollguardKubeconfig,
    check: true,
  });
  t.equal(whoami.stdout, 'system:serviceaccount:rollguard-system:rollguard');
  t.equal(await can('patch', 'deployments.apps'), 'yes');
  t.equal(await can('patch', 'rollouts.argoproj.io'), 'yes');
  t.equal(await can('list', 'controllerrevisions.apps'), 'yes');
  t.equal(await can('create', 'leases.coordination.k8s.io', 'rollguard-system'), 'no', 'locks live in Redis, not in leases');
  t.equal(await can('delete', 'deployments.apps'), 'no');
  t.equal(await can('patch', 'replicasets.apps'), 'no');
  // the harness grants the chart's default RBAC: cluster-wide, so actions.checkSecrets (auto) is off
  // and no right on Secrets at all (get secrets in a ClusterRole would read every Secret of the
  // cluster; docs/security.md), kube-system's included
  t.equal(await can('get', 'secrets'), 'no');
  t.equal(await can('get', 'secrets', 'kube-system'), 'no');
  t.equal(await can('list', 'secrets'), 'no');
  t.equal(await can('watch', 'secrets'), 'no');
  t.equal(await can('watch', 'pods'), 'no');
  const denied = await cluster.kubectl(['-n', NS, 'delete', 'deployment', 'demo', '--dry-run=server'], {
    kubeconfig: cluster.rollguardKubeconfig,
  });
  t.not(denied.code, 0);
  t.match(denied.stderr, /forbidden/i);
});

t.test('Argo Rollouts CRDs are served with their structural validation', async (t) => {
  const rollout = (replicas: unknown) =>
    JSON.stringify({
      apiVersion: 'argoproj.io/v1alpha1',
      kind: 'Rollout',
      metadata: { name: 'demo-rollout', namespace: NS },
      spec: {
        replicas,
        selector: { matchLabels: { app: 'demo-rollout' } },
        template: {
          metadata: { labels: { app: 'demo-rollout' } },
          spec: { containers: [{ name: 'app', image: 'demo:v1' }] },
        },
        strategy: { canary: { steps: [{ setWeight: 20 }, { pause: {} }] } },
      },
    });
  const bad = await cluster.kubectl(['create', '-f', '-'], { input: rollout('two') });
  t.not(bad.code, 0, 'a Rollout with a string replicas count is rejected');
  t.match(bad.stderr, /spec\.replicas/);
  const good = await cluster.kubectl(['create', '-f', '-'], { input: rollout(2) });
  t.equal(good.code, 0, `a valid Rollout is accepted ${good.stderr}`);
  const got = await cluster.kubectl(['-n', NS, 'get', 'rollout', 'demo-rollout', '-o', 'jsonpath={.spec.strategy.canary.steps[0].setWeight}'], {
    kubeconfig: cluster.rollguardKubeconfig,
    check: true,
  });
  t.equal(got.stdout, '20', 'rollguard can read Rollouts');
});
