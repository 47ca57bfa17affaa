// A real control plane for the benchmarks that measure rollguard as it runs with a cluster
// configured: the Kubernetes client loaded at start-up (src/kube/config.ts loads it only then) and
// the dry run's plan reading each target from the API server. The Deployments are the storm's
// (bench/storm-lib.ts: svc-k in namespace team-(k % 20)) and the P0 alerts' (shop/checkout-k),
// each at revision 2 with revision 1 kept, so each dry run has a previous revision to plan.
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startCluster, type Cluster } from '../test/cluster/harness.js';
import { log, pool, sleep } from './lib.js';

const REVISION = 'deployment.kubernetes.io/revision';

export interface BenchWorkload {
  namespace: string;
  name: string;
}

/** The storm's 500 Deployments and the P0 alerts' `count` ones. */
export function stormWorkloads(p0: number): BenchWorkload[] {
  const storm = Array.from({ length: 500 }, (_, k) => ({ namespace: `team-${k % 20}`, name: `svc-${k}` }));
  const p0s = Array.from({ length: p0 }, (_, k) => ({ namespace: 'shop', name: `checkout-${k}` }));
  return [...storm, ...p0s];
}

// replicas 0: the template changes still make ReplicaSets (the revisions), without 520 pods for
// kwok to run on the benchmark's 2 cores
function deployment(name: string, image: string) {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, labels: { app: name } },
    spec: { replicas: 0, selector: { matchLabels: { app: name } }, template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'app', image }] } } },
  };
}

interface Listed {
  items: { metadata: { namespace?: string; annotations?: Record<string, string> } }[];
}

/** Starts a control plane and brings `workloads` to revision 2; the caller stops it. */
export async function startBenchCluster(workloads: BenchWorkload[]): Promise<Cluster> {
  const t0 = Date.now();
  const cluster = await startCluster({ argoCrds: false, istioCrds: false });
  try {
    for (const ns of new Set(workloads.map((w) => w.namespace))) await cluster.kubectl(['create', 'namespace', ns], { check: true });
    await pool(workloads, 8, async (w) => void (await cluster.request('POST', `/apis/apps/v1/namespaces/${w.namespace}/deployments`, deployment(w.name, 'demo:v1'))));
    await atRevision(cluster, workloads.length, '1');
    await pool(workloads, 8, async (w) => void (await cluster.request('PATCH', `/apis/apps/v1/namespaces/${w.namespace}/deployments/${w.name}`, { spec: { template: { spec: { containers: [{ name: 'app', image: 'demo:v2-bad' }] } } } })));
    await atRevision(cluster, workloads.length, '2');
    log(`control plane: ${workloads.length} Deployments at revision 2 in ${Date.now() - t0} ms`);
    return cluster;
  } catch (err) {
    await cluster.stop();
    throw err;
  }
}

async function atRevision(cluster: Cluster, n: number, rev: string, timeoutMs = 300_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const l = await cluster.request<Listed>('GET', '/apis/apps/v1/deployments');
    const ok = l.items.filter((d) => d.metadata.annotations?.[REVISION] === rev).length;
    if (ok >= n) return;
    if (Date.now() > until) throw new Error(`only ${ok}/${n} Deployments at revision ${rev} after ${timeoutMs} ms`);
    await sleep(500);
  }
}

// npx tsx bench/cluster-lib.ts: starts the storm's control plane and keeps it until stopped
// (SIGINT, SIGTERM), for several `bench/storm-p0.ts --kubeconfig` and `bench/intake.ts
// --kubeconfig` runs on one; prints the rollguard ServiceAccount's kubeconfig.
if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
  const cluster = await startBenchCluster(stormWorkloads(20));
  process.stdout.write(`K=${cluster.rollguardKubeconfig}\n`);
  const stop = async () => {
    await cluster.stop();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
  setInterval(() => {}, 1 << 30);
}
