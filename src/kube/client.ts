// The small Kubernetes surface the actions use: get, list and patch of plain JSON objects.
//
// Built on @kubernetes/client-node. Namespaced objects of API groups (apps/v1, argoproj.io/v1alpha1)
// go through CustomObjectsApi, which returns the server's JSON untouched: the typed clients
// deserialize into model classes that drop fields the model does not know (a 1.36 API server has
// pod-spec fields the 1.4.0 models lack), and a rollback must copy a pod template field for field,
// exactly as kubectl does. Core objects (Services) go through the typed CoreV1Api.
//
// Every request has a deadline (default 10 s) and honours the caller's AbortSignal; every failure
// becomes a KubeApiError (src/kube/errors.ts).
import {
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  Observable,
  PatchStrategy,
  type ConfigurationOptions,
  type ObservableMiddleware,
  type RequestContext,
  type ResponseContext,
} from '@kubernetes/client-node';
import { KubeApiError, toKubeApiError } from './errors.js';

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
  rollouts: { group: 'argoproj.io', version: 'v1alpha1', plural: 'rollouts', kind: 'Rollout' },
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
}

export interface PatchOptions extends RequestOptions {
  subresource?: 'status';
  /** server-side dry run (dryRun=All): validated and admitted, not persisted */
  dryRun?: boolean;
  fieldManager?: string;
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
}

export const DEFAULT_FIELD_MANAGER = 'rollguard';
export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;

const CONTENT_TYPES: Record<PatchType, string> = {
  json: PatchStrategy.JsonPatch,
  merge: PatchStrategy.MergePatch,
  strategic: PatchStrategy.StrategicMergePatch,
};

function describe(verb: string, rt: ResourceType, namespace: string, name?: string, sub?: string): string {
  const gv = rt.group ? `${rt.group}/${rt.version}` : rt.version;
  return `${verb} ${gv} ${rt.plural}${sub ? `/${sub}` : ''} ${namespace}${name ? `/${name}` : ''}`;
}

/** Middleware that sets the request's AbortSignal (and, for patches, the Content-Type). */
function requestMiddleware(signal: AbortSignal, contentType?: string): ObservableMiddleware {
  return {
    pre: (ctx: RequestContext) => {
      ctx.setSignal(signal);
      if (contentType) ctx.setHeaderParam('Content-Type', contentType);
      return new Observable(Promise.resolve(ctx));
    },
    post: (rsp: ResponseContext) => new Observable(Promise.resolve(rsp)),
  };
}

/** Plain JSON of a typed model (Dates become RFC 3339 strings, undefined fields vanish). */
function plain<T>(obj: unknown): T {
  return JSON.parse(JSON.stringify(obj)) as T;
}

export class ClientNodeKube implements Kube {
  readonly custom: CustomObjectsApi;
  readonly core: CoreV1Api;
  private readonly timeoutMs: number;
  private readonly fieldManager: string;

  constructor(
    readonly kubeConfig: KubeConfig,
    opts: { timeoutMs?: number; fieldManager?: string } = {},
  ) {
    this.custom = kubeConfig.makeApiClient(CustomObjectsApi);
    this.core = kubeConfig.makeApiClient(CoreV1Api);
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.fieldManager = opts.fieldManager ?? DEFAULT_FIELD_MANAGER;
  }

  /** Runs one request under a deadline and the caller's signal; maps every failure to KubeApiError. */
  private async call<T>(
    operation: string,
    opts: RequestOptions | undefined,
    contentType: string | undefined,
    fn: (options: ConfigurationOptions<ObservableMiddleware>) => Promise<T>,
  ): Promise<T> {
    const timeoutMs = opts?.timeoutMs ?? this.timeoutMs;
    const deadline = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      deadline.abort();
    }, timeoutMs);
    const signal = opts?.signal ? AbortSignal.any([opts.signal, deadline.signal]) : deadline.signal;
    try {
      if (opts?.signal?.aborted) throw new KubeApiError({ status: 'timeout', reason: 'Aborted', message: 'cancelled by caller', operation });
      return await fn({ middleware: [requestMiddleware(signal, contentType)], middlewareMergeStrategy: 'append' });
    } catch (err) {
      if (!timedOut && opts?.signal?.aborted) {
        throw new KubeApiError({ status: 'timeout', reason: 'Aborted', message: 'cancelled by caller', operation, cause: err });
      }
      throw toKubeApiError(err, operation, { timedOut, timeoutMs });
    } finally {
      clearTimeout(timer);
    }
  }

  async get(rt: ResourceType, namespace: string, name: string, opts?: RequestOptions): Promise<KubeObject> {
    const op = describe('GET', rt, namespace, name);
    if (rt.group === '') {
      if (rt.plural !== 'services') throw new Error(`core resource ${rt.plural} not supported`);
      return this.call(op, opts, undefined, async (o) => plain<KubeObject>(await this.core.readNamespacedService({ name, namespace }, o)));
    }
    return this.call(op, opts, undefined, (o) =>
      this.custom.getNamespacedCustomObject({ group: rt.group, version: rt.version, namespace, plural: rt.plural, name }, o),
    ) as Promise<KubeObject>;
  }

  async list(rt: ResourceType, namespace: string, opts?: RequestOptions & { labelSelector?: string }): Promise<KubeObject[]> {
    const op = describe('LIST', rt, namespace);
    const labelSelector = opts?.labelSelector;
    if (rt.group === '') {
      if (rt.plural !== 'services') throw new Error(`core resource ${rt.plural} not supported`);
      const res = await this.call(op, opts, undefined, async (o) =>
        plain<{ items: KubeObject[] }>(
          await this.core.listNamespacedService({ namespace, ...(labelSelector ? { labelSelector } : {}) }, o),
        ),
      );
      return res.items ?? [];
    }
    const res = (await this.call(op, opts, undefined, (o) =>
      this.custom.listNamespacedCustomObject(
        { group: rt.group, version: rt.version, namespace, plural: rt.plural, ...(labelSelector ? { labelSelector } : {}) },
        o,
      ),
    )) as { items?: KubeObject[] };
    return res.items ?? [];
  }

  async patch(
    rt: ResourceType,
    namespace: string,
    name: string,
    body: unknown,
    type: PatchType,
    opts?: PatchOptions,
  ): Promise<KubeObject> {
    const op = describe('PATCH', rt, namespace, name, opts?.subresource);
    const common = {
      name,
      namespace,
      body,
      fieldManager: opts?.fieldManager ?? this.fieldManager,
      ...(opts?.dryRun ? { dryRun: 'All' } : {}),
    };
    const ct = CONTENT_TYPES[type];
    if (rt.group === '') {
      if (rt.plural !== 'services') throw new Error(`core resource ${rt.plural} not supported`);
      return this.call(op, opts, ct, async (o) => plain<KubeObject>(await this.core.patchNamespacedService(common, o)));
    }
    const req = { group: rt.group, version: rt.version, plural: rt.plural, ...common };
    return this.call(op, opts, ct, (o) =>
      opts?.subresource === 'status'
        ? this.custom.patchNamespacedCustomObjectStatus(req, o)
        : this.custom.patchNamespacedCustomObject(req, o),
    ) as Promise<KubeObject>;
  }
}
