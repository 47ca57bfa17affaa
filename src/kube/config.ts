// Where the cluster credentials come from: a kubeconfig file, the in-cluster service account,
// or nothing (rollguard then runs without a cluster: dry-run, rules test, simulate).
//
// @kubernetes/client-node (through src/kube/client-node.ts, bundled in dist/) is imported here,
// when a cluster is configured, and nowhere else at start-up (the rest of rollguard imports the
// contract, src/kube/kube.ts): without a cluster the process never loads it (docs/benchmarks.md,
// "Footprint").
import * as fs from 'node:fs';
import type { KubeConfig } from './client-node.js';
import type { Metrics } from '../metrics.js';
import type { Kube } from './kube.js';

export type KubeSource =
  | { mode: 'kubeconfig'; path: string; context?: string }
  | { mode: 'in-cluster' }
  /** $KUBECONFIG or ~/.kube/config, else in-cluster if the service-account token exists */
  | { mode: 'default'; context?: string }
  | { mode: 'none' };

const SA_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';

/** Loads the KubeConfig, or returns null for mode 'none' (without loading client-node). Throws with a message that says what to fix. */
export async function loadKubeConfig(source: KubeSource): Promise<KubeConfig | null> {
  if (source.mode === 'none') return null;
  const { KubeConfig } = await import('./client-node.js');
  const kc = new KubeConfig();
  switch (source.mode) {
    case 'kubeconfig':
      if (!fs.existsSync(source.path)) throw new Error(`kubeconfig ${source.path} does not exist`);
      kc.loadFromFile(source.path);
      if (source.context) kc.setCurrentContext(source.context);
      break;
    case 'in-cluster':
      if (!fs.existsSync(SA_TOKEN) || !process.env.KUBERNETES_SERVICE_HOST) {
        throw new Error(
          `in-cluster config needs KUBERNETES_SERVICE_HOST and ${SA_TOKEN} (is rollguard running in a pod with a service account?)`,
        );
      }
      kc.loadFromCluster();
      break;
    case 'default':
      kc.loadFromDefault();
      if (source.context) kc.setCurrentContext(source.context);
      break;
  }
  if (!kc.getCurrentCluster()) {
    throw new Error(`no cluster in the ${source.mode} configuration (current context: ${kc.getCurrentContext() || 'none'})`);
  }
  return kc;
}

export interface KubeClientOptions {
  /** per-request deadline, default 10 s */
  timeoutMs?: number;
  fieldManager?: string;
  /**
   * Reads sent at once (KUBE_MAX_CONCURRENT_READS); more wait their turn, P0 alerts' first
   * (src/turns.ts), the wait counted in the read's deadline. Writes are never held back. Unset: no
   * bound (the CLI's one-off commands).
   */
  maxConcurrentReads?: number;
  /** rollguard_dependency_calls_waiting{dependency="kubernetes"}: the reads waiting their turn */
  metrics?: Pick<Metrics, 'dependencyCallsWaiting'>;
}

/** The clients wrapper the actions use, or null when no cluster is configured (client-node is then never loaded). */
export async function createKube(source: KubeSource, opts: KubeClientOptions = {}): Promise<Kube | null> {
  const kc = await loadKubeConfig(source);
  if (!kc) return null;
  const { ClientNodeKube } = await import('./client.js');
  return new ClientNodeKube(kc, opts);
}
