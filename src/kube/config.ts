// Where the cluster credentials come from: a kubeconfig file, the in-cluster service account,
// or nothing (rollguard then runs without a cluster: dry-run, rules test, simulate).
import * as fs from 'node:fs';
import { KubeConfig } from '@kubernetes/client-node';
import { ClientNodeKube, type Kube } from './client.js';

export type KubeSource =
  | { mode: 'kubeconfig'; path: string; context?: string }
  | { mode: 'in-cluster' }
  /** $KUBECONFIG or ~/.kube/config, else in-cluster if the service-account token exists */
  | { mode: 'default'; context?: string }
  | { mode: 'none' };

const SA_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';

/** Loads the KubeConfig, or returns null for mode 'none'. Throws with a message that says what to fix. */
export function loadKubeConfig(source: KubeSource): KubeConfig | null {
  const kc = new KubeConfig();
  switch (source.mode) {
    case 'none':
      return null;
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
}

/** The clients wrapper the actions use, or null when no cluster is configured. */
export function createKube(source: KubeSource, opts: KubeClientOptions = {}): Kube | null {
  const kc = loadKubeConfig(source);
  return kc ? new ClientNodeKube(kc, opts) : null;
}
