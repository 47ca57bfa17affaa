// What rollguard asks of a Kubernetes cluster: the Kube interface the actions, guards and watchers
// use, the resources they name, the constants of their requests, and getOrNull. The contract only: it loads
// nothing of @kubernetes/client-node, so a process without a cluster (the embedded default's
// dry run, the CLI's offline commands) never loads that library (about 66 MB of RSS at import,
// docs/benchmarks.md). The implementation over client-node is src/kube/client.ts, imported by
// src/kube/config.ts only when a cluster is configured.
import { KubeApiError } from './errors.js';
import type { ListPage, WatchHandle, WatchHandlers } from './watch.js';
import type { Precedence } from '../turns.js';

export interface ResourceType {
  /** '' for the core group */
  group: string;
  version: string;
  plural: string;
  kind: string;
}

export const RESOURCES = {
  deployments: { group: 'apps', version: 'v1', plural: 'deployments', kind: 'Deployment' },
  replicasets: { group: 'apps', version: 'v1', plural: 'replicasets', kind: 'ReplicaSet' },
  statefulsets: { group: 'apps', version: 'v1', plural: 'statefulsets', kind: 'StatefulSet' },
  daemonsets: { group: 'apps', version: 'v1', plural: 'daemonsets', kind: 'DaemonSet' },
  controllerrevisions: { group: 'apps', version: 'v1', plural: 'controllerrevisions', kind: 'ControllerRevision' },
  services: { group: '', version: 'v1', plural: 'services', kind: 'Service' },
  /** read as metadata only (getMetadata): a pod template's configuration, never its data */
  configmaps: { group: '', version: 'v1', plural: 'configmaps', kind: 'ConfigMap' },
  secrets: { group: '', version: 'v1', plural: 'secrets', kind: 'Secret' },
  /** a migration rollback Job's pods: their container statuses (termination message) and logs */
  pods: { group: '', version: 'v1', plural: 'pods', kind: 'Pod' },
  /** a rule's migration rollback Job (src/migrations/), created as raw JSON */
  jobs: { group: 'batch', version: 'v1', plural: 'jobs', kind: 'Job' },
  rollouts: { group: 'argoproj.io', version: 'v1alpha1', plural: 'rollouts', kind: 'Rollout' },
  virtualservices: { group: 'networking.istio.io', version: 'v1', plural: 'virtualservices', kind: 'VirtualService' },
  /** Istio before 1.22 serves VirtualServices as v1beta1 (and v1alpha3) only */
  virtualservicesV1beta1: { group: 'networking.istio.io', version: 'v1beta1', plural: 'virtualservices', kind: 'VirtualService' },
} as const satisfies Record<string, ResourceType>;

export type PatchType = 'json' | 'merge' | 'strategic';

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
}

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  creationTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: OwnerReference[];
  [k: string]: unknown;
}

/** A Kubernetes object as the API server sent it (JSON). Fields we read are typed loosely on purpose. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  spec?: any;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  status?: any;
  [k: string]: unknown;
}

export interface RequestOptions {
  signal?: AbortSignal;
  /** overrides the client's default deadline */
  timeoutMs?: number;
  /** reads: whose read waits first when KUBE_MAX_CONCURRENT_READS are in flight (src/turns.ts); unset: first */
  precedence?: Precedence;
}

export interface PatchOptions extends RequestOptions {
  subresource?: 'status';
  /** server-side dry run (dryRun=All): validated and admitted, not persisted */
  dryRun?: boolean;
  fieldManager?: string;
}

export interface CreateOptions extends RequestOptions {
  /** server-side dry run (dryRun=All): validated and admitted, not persisted */
  dryRun?: boolean;
  fieldManager?: string;
}

export interface LogOptions extends RequestOptions {
  container?: string;
  /** the last this many lines */
  tailLines?: number;
  /** at most this many bytes */
  limitBytes?: number;
}

export interface Kube {
  get(rt: ResourceType, namespace: string, name: string, opts?: RequestOptions): Promise<KubeObject>;
  list(rt: ResourceType, namespace: string, opts?: RequestOptions & { labelSelector?: string }): Promise<KubeObject[]>;
  patch(
    rt: ResourceType,
    namespace: string,
    name: string,
    body: unknown,
    type: PatchType,
    opts?: PatchOptions,
  ): Promise<KubeObject>;
  /**
   * The object's metadata alone (a PartialObjectMetadata: name, uid, timestamps, managedFields,
   * labels, annotations), for ConfigMaps and Secrets: the API server never sends their data.
   */
  getMetadata(rt: ResourceType, namespace: string, name: string, opts?: RequestOptions): Promise<KubeObject>;
  /** Creates the object (POST), sent as it is given; answers the object the API server stored. */
  create(rt: ResourceType, namespace: string, body: KubeObject, opts?: CreateOptions): Promise<KubeObject>;
  /** A pod's container log (pods/log): the text, as the kubelet serves it through the API server. */
  podLog(namespace: string, name: string, opts?: LogOptions): Promise<string>;
  /** Deletes the object (a ConfigMap snapshot beyond CONFIG_SNAPSHOTS_MAX); a 404 is an error as any other. */
  delete(rt: ResourceType, namespace: string, name: string, opts?: RequestOptions): Promise<void>;
  /**
   * Lists, then watches, the objects of one resource in a namespace (undefined: every namespace),
   * relisting after a 410 Gone or a broken watch (src/kube/watch.ts). Keeps no objects itself.
   * Only the client-node implementation has it (the configuration snapshots' watcher needs a cluster).
   */
  watch?(rt: ResourceType, namespace: string | undefined, handlers: WatchHandlers): WatchHandle;
}

/** The object, or null when it does not exist (a 404); any other error is thrown. */
export async function getOrNull(kube: Kube, rt: ResourceType, namespace: string, name: string, opts: RequestOptions = {}): Promise<KubeObject | null> {
  try {
    return await kube.get(rt, namespace, name, opts);
  } catch (err) {
    if (err instanceof KubeApiError && err.isNotFound) return null;
    throw err;
  }
}

/**
 * The API server's metadata-only representation (kubectl get --raw with this Accept header):
 * the GET needs the same RBAC (get secrets) but the response carries no data, so a Secret's
 * values never reach rollguard's memory.
 */
export const METADATA_ONLY = 'application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1';

export const DEFAULT_FIELD_MANAGER = 'rollguard';
export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;
/** Objects per LIST request (a page; the next one follows its continue token). */
export const LIST_PAGE = 500;
