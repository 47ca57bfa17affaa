// The small Kubernetes surface the actions use: get, list and patch of plain JSON objects.
//
// Built on @kubernetes/client-node. Namespaced objects of API groups (apps/v1, argoproj.io/v1alpha1)
// go through CustomObjectsApi, which returns the server's JSON untouched: the typed clients
// deserialize into model classes that drop fields the model does not know (a 1.36 API server has
// pod-spec fields the 1.4.0 models lack), and a rollback must copy a pod template field for field,
// exactly as kubectl does. Core objects (Services) go through the typed CoreV1Api.
//
// Every request has a deadline (default 10 s) and honours the caller's AbortSignal; every failure
// becomes a KubeApiError (src/kube/errors.ts). Reads are sent at most maxConcurrentReads at once
// (KUBE_MAX_CONCURRENT_READS), the others waiting their turn, P0 alerts' first (src/turns.ts), so
// the events in hand do not set the load on the API server; writes are never held back behind
// reads (a rollback's patch does not wait for a storm's reads).
import {
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  Observable,
  PatchStrategy,
  Watch,
  type ConfigurationOptions,
  type ObservableMiddleware,
  type RequestContext,
  type ResponseContext,
} from './client-node.js';
import { P0_EXTRA_CALLS, TurnTimeoutError, Turns } from '../turns.js';
import { SharedAgent } from './agent.js';
import type { KubeClientOptions } from './config.js';
import { causeOf, KubeApiError, toKubeApiError } from './errors.js';
import { reflect, type ListPage, type WatchHandle, type WatchHandlers } from './watch.js';
import {
  DEFAULT_FIELD_MANAGER,
  DEFAULT_REQUEST_TIMEOUT_MS,
  LIST_PAGE,
  METADATA_ONLY,
  RESOURCES,
  type CreateOptions,
  type Kube,
  type KubeObject,
  type LogOptions,
  type PatchOptions,
  type PatchType,
  type RequestOptions,
  type ResourceType,
} from './kube.js';


const CONTENT_TYPES: Record<PatchType, string> = {
  json: PatchStrategy.JsonPatch,
  merge: PatchStrategy.MergePatch,
  strategic: PatchStrategy.StrategicMergePatch,
};

function describe(verb: string, rt: ResourceType, namespace: string, name?: string, sub?: string): string {
  const gv = rt.group ? `${rt.group}/${rt.version}` : rt.version;
  return `${verb} ${gv} ${rt.plural}${sub ? `/${sub}` : ''} ${namespace}${name ? `/${name}` : ''}`;
}

/** Transport errors of a connection closed under a request (node-fetch passes the system error's code) */
const CONNECTION_RESET: ReadonlySet<string> = new Set(['ECONNRESET', 'EPIPE']);

/**
 * Middleware that sets the request's AbortSignal (and, for patches, the Content-Type; for metadata
 * reads, the Accept). With `pool`, the call goes over the client's kept-alive connections
 * (src/kube/agent.ts) instead of the new one client-node built for it.
 */
function requestMiddleware(pool: SharedAgent | undefined, signal: AbortSignal, contentType?: string, accept?: string): ObservableMiddleware {
  return {
    pre: (ctx: RequestContext) => {
      const built = ctx.getAgent();
      if (pool && built) ctx.setAgent(pool.for(built));
      ctx.setSignal(signal);
      if (contentType) ctx.setHeaderParam('Content-Type', contentType);
      if (accept) ctx.setHeaderParam('Accept', accept);
      return new Observable(Promise.resolve(ctx));
    },
    post: (rsp: ResponseContext) => new Observable(Promise.resolve(rsp)),
  };
}

/** Plain JSON of a typed model (Dates become RFC 3339 strings, undefined fields vanish). */
function plain<T>(obj: unknown): T {
  return JSON.parse(JSON.stringify(obj)) as T;
}

/** A typed list's items carry no apiVersion and kind: set them from the resource read. */
function withKind(rt: ResourceType, o: KubeObject): KubeObject {
  return { ...o, apiVersion: o.apiVersion ?? rt.version, kind: o.kind ?? rt.kind };
}

export class ClientNodeKube implements Kube {
  readonly custom: CustomObjectsApi;
  readonly core: CoreV1Api;
  private readonly timeoutMs: number;
  private readonly fieldManager: string;
  /** the kept-alive connections this client's reads share (src/kube/agent.ts) */
  private readonly pool = new SharedAgent();
  /** reads sent at once (KUBE_MAX_CONCURRENT_READS); unset: no bound */
  private readonly reads: Turns | undefined;

  constructor(
    readonly kubeConfig: KubeConfig,
    opts: KubeClientOptions = {},
  ) {
    this.custom = kubeConfig.makeApiClient(CustomObjectsApi);
    this.core = kubeConfig.makeApiClient(CoreV1Api);
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.fieldManager = opts.fieldManager ?? DEFAULT_FIELD_MANAGER;
    if (opts.maxConcurrentReads !== undefined) {
      const waiting = opts.metrics?.dependencyCallsWaiting.labels({ dependency: 'kubernetes' });
      this.reads = new Turns(opts.maxConcurrentReads, waiting ? (n) => waiting.set(n) : undefined, P0_EXTRA_CALLS);
    }
  }

  /**
   * Runs one request under a deadline and the caller's signal; maps every failure to KubeApiError.
   * `pooled` (reads): over the client's kept-alive connections. Writes are not: each goes over a
   * connection of its own, as client-node opens it, so a write never meets a pooled connection that
   * the server or a load balancer is closing, where whether it was applied could not be told. After
   * a timeout or a network error the pool's idle connections are dropped, so the next read
   * connects anew (they may all lead to an API server that went away).
   */
  private async call<T>(
    operation: string,
    opts: RequestOptions | undefined,
    contentType: string | undefined,
    fn: (options: ConfigurationOptions<ObservableMiddleware>) => Promise<T>,
    accept?: string,
    pooled = false,
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
      return await fn({ middleware: [requestMiddleware(pooled ? this.pool : undefined, signal, contentType, accept)], middlewareMergeStrategy: 'append' });
    } catch (err) {
      if (!timedOut && opts?.signal?.aborted) {
        throw new KubeApiError({ status: 'timeout', reason: 'Aborted', message: 'cancelled by caller', operation, cause: causeOf(err) });
      }
      const e = toKubeApiError(err, operation, { timedOut, timeoutMs });
      if (e.status === 'timeout' || e.status === 'network') this.pool.dropIdle();
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * A read, over the pooled connections, tried a second time at once when its connection was reset
   * under it: a kept-alive connection that the server or a load balancer closed just as it was
   * reused, the case Node's http documentation gives for `request.reusedSocket` (the pool's idle
   * connections are dropped first, so the second try connects anew). Both tries share one
   * deadline. Reads only: a write is never sent twice.
   */
  private async read<T>(operation: string, opts: RequestOptions | undefined, fn: (options: ConfigurationOptions<ObservableMiddleware>) => Promise<T>, accept?: string): Promise<T> {
    const turns = this.reads;
    if (!turns) return this.readNow(operation, opts, fn, accept);
    // The wait is bounded apart, by the read's deadline too: one whose caller gave up, or that
    // waited all of it, leaves the line and is never sent; one that gets its turn has its whole
    // deadline to be answered (a slow line never cuts the API server's answer short, nor drops
    // the kept-alive connections for a timeout that was the line's).
    const timeoutMs = opts?.timeoutMs ?? this.timeoutMs;
    try {
      return await turns.run(() => this.readNow(operation, opts, fn, accept), { precedence: opts?.precedence, signal: opts?.signal, waitMs: timeoutMs });
    } catch (err) {
      if (err instanceof TurnTimeoutError) {
        throw new KubeApiError({ status: 'timeout', reason: 'Timeout', message: `no turn to send it within ${timeoutMs} ms: KUBE_MAX_CONCURRENT_READS=${turns.max} reads${opts?.precedence === 0 ? `, and the ${turns.p0Extra} more kept for P0 alerts' reads,` : ''} were in flight all that time; never sent`, operation, cause: err });
      }
      if (!(err instanceof KubeApiError) && opts?.signal?.aborted) {
        throw new KubeApiError({ status: 'timeout', reason: 'Aborted', message: 'cancelled by caller while waiting its turn (never sent)', operation, cause: causeOf(err) });
      }
      throw err;
    }
  }

  /** The read itself, both tries, under opts.timeoutMs (see read). */
  private async readNow<T>(operation: string, opts: RequestOptions | undefined, fn: (options: ConfigurationOptions<ObservableMiddleware>) => Promise<T>, accept?: string): Promise<T> {
    const timeoutMs = opts?.timeoutMs ?? this.timeoutMs;
    const started = performance.now();
    try {
      return await this.call(operation, opts, undefined, fn, accept, true);
    } catch (err) {
      if (!(err instanceof KubeApiError && err.status === 'network' && CONNECTION_RESET.has(err.reason)) || opts?.signal?.aborted) throw err;
      const left = Math.floor(timeoutMs - (performance.now() - started));
      if (left < 1) throw err;
      return this.call(operation, { ...opts, timeoutMs: left }, undefined, fn, accept, true);
    }
  }

  async get(rt: ResourceType, namespace: string, name: string, opts?: RequestOptions): Promise<KubeObject> {
    const op = describe('GET', rt, namespace, name);
    if (rt.group === '') {
      const read = this.coreRead(rt.plural);
      return this.read(op, opts, async (o) => withKind(rt, plain<KubeObject>(await read({ name, namespace }, o))));
    }
    return this.read(op, opts, (o) =>
      this.custom.getNamespacedCustomObject({ group: rt.group, version: rt.version, namespace, plural: rt.plural, name }, o),
    ) as Promise<KubeObject>;
  }

  async getMetadata(rt: ResourceType, namespace: string, name: string, opts?: RequestOptions): Promise<KubeObject> {
    const op = describe('GET (metadata)', rt, namespace, name);
    // the typed model keeps apiVersion, kind and metadata of the PartialObjectMetadata answer;
    // there is no data in it to drop
    const read =
      rt === RESOURCES.secrets
        ? (o: ConfigurationOptions<ObservableMiddleware>) => this.core.readNamespacedSecret({ name, namespace }, o)
        : rt === RESOURCES.configmaps
          ? (o: ConfigurationOptions<ObservableMiddleware>) => this.core.readNamespacedConfigMap({ name, namespace }, o)
          : undefined;
    if (!read) throw new Error(`metadata reads of ${rt.plural} not supported`);
    const res = await this.read(op, opts, async (o) => plain<KubeObject>(await read(o)), METADATA_ONLY);
    return { apiVersion: res.apiVersion, kind: res.kind, metadata: res.metadata } as KubeObject;
  }

  /**
   * Every object of the list, read in pages of LIST_PAGE (one consistent snapshot: the continue
   * token holds its resourceVersion), so that no single request or response grows with the
   * namespace. A token that expired between two pages (410 Gone) starts the list again, once.
   */
  async list(rt: ResourceType, namespace: string, opts?: RequestOptions & { labelSelector?: string }): Promise<KubeObject[]> {
    let restarted = false;
    for (;;) {
      const items: KubeObject[] = [];
      let cont: string | undefined;
      try {
        do {
          const page = await this.listPage(rt, namespace, cont, opts);
          for (const i of page.items) items.push(rt.group === '' ? withKind(rt, i) : i);
          cont = page.continue;
        } while (cont);
        return items;
      } catch (err) {
        if (cont === undefined || restarted || !(err instanceof KubeApiError && err.status === 410)) throw err;
        restarted = true;
      }
    }
  }

  /** The typed CoreV1Api read of a core resource this client supports (the typed models know every field read). */
  private coreRead(plural: string): (p: { name: string; namespace: string }, o: ConfigurationOptions<ObservableMiddleware>) => Promise<unknown> {
    if (plural === 'services') return (p, o) => this.core.readNamespacedService(p, o);
    if (plural === 'configmaps') return (p, o) => this.core.readNamespacedConfigMap(p, o);
    if (plural === 'pods') return (p, o) => this.core.readNamespacedPod(p, o);
    if (plural === 'secrets') return (p, o) => this.core.readNamespacedSecret(p, o);
    throw new Error(`core resource ${plural} not supported`);
  }

  private coreList(plural: string): (p: { namespace: string; labelSelector?: string; limit?: number; _continue?: string }, o: ConfigurationOptions<ObservableMiddleware>) => Promise<unknown> {
    if (plural === 'services') return (p, o) => this.core.listNamespacedService(p, o);
    if (plural === 'pods') return (p, o) => this.core.listNamespacedPod(p, o);
    if (plural === 'configmaps') return (p, o) => this.core.listNamespacedConfigMap(p, o);
    if (plural === 'secrets') return (p, o) => this.core.listNamespacedSecret(p, o);
    throw new Error(`core resource ${plural} not supported`);
  }

  /** One page of a list, in one namespace or all, its items as the server sent them (list(), and the watcher's list before its watch). */
  private async listPage(rt: ResourceType, namespace: string | undefined, cont?: string, opts?: RequestOptions & { labelSelector?: string }): ReturnType<ListPage> {
    const op = describe('LIST', rt, namespace ?? '(all namespaces)');
    const labelSelector = opts?.labelSelector;
    const page = { limit: LIST_PAGE, ...(labelSelector ? { labelSelector } : {}), ...(cont ? { _continue: cont } : {}) };
    type Page = { items?: KubeObject[]; metadata?: { resourceVersion?: string; _continue?: string; continue?: string } };
    const res = await this.read<Page>(op, opts, async (o) => {
      if (rt.group !== '') {
        const req = { group: rt.group, version: rt.version, plural: rt.plural, ...page };
        return (namespace ? this.custom.listNamespacedCustomObject({ ...req, namespace }, o) : this.custom.listClusterCustomObject(req, o)) as Promise<Page>;
      }
      if (namespace) return plain<Page>(await this.coreList(rt.plural)({ namespace, ...page }, o));
      if (rt.plural === 'configmaps') return plain<Page>(await this.core.listConfigMapForAllNamespaces(page, o));
      if (rt.plural === 'secrets') return plain<Page>(await this.core.listSecretForAllNamespaces(page, o));
      throw new Error(`list of core resource ${rt.plural} in all namespaces not supported`);
    });
    const next = res.metadata?._continue || res.metadata?.continue || undefined;
    return { items: res.items ?? [], resourceVersion: res.metadata?.resourceVersion ?? '', ...(next ? { continue: next } : {}) };
  }

  watch(rt: ResourceType, namespace: string | undefined, handlers: WatchHandlers): WatchHandle {
    const w = new Watch(this.kubeConfig);
    const base = rt.group ? `/apis/${rt.group}/${rt.version}` : `/api/${rt.version}`;
    const path = `${base}${namespace ? `/namespaces/${namespace}` : ''}/${rt.plural}`;
    const list = async (cont?: string) => {
      const page = await this.listPage(rt, namespace, cont);
      return { ...page, items: page.items.map((i) => withKind(rt, i)) };
    };
    return reflect({ list, watch: (params, cb, done) => w.watch(path, params, cb, done), handlers });
  }

  async delete(rt: ResourceType, namespace: string, name: string, opts?: RequestOptions): Promise<void> {
    const op = describe('DELETE', rt, namespace, name);
    await this.call(op, opts, undefined, async (o) => {
      if (rt.group !== '') return this.custom.deleteNamespacedCustomObject({ group: rt.group, version: rt.version, namespace, plural: rt.plural, name }, o);
      if (rt.plural === 'configmaps') return this.core.deleteNamespacedConfigMap({ name, namespace }, o);
      if (rt.plural === 'secrets') return this.core.deleteNamespacedSecret({ name, namespace }, o);
      throw new Error(`delete of core resource ${rt.plural} not supported`);
    });
  }

  async create(rt: ResourceType, namespace: string, body: KubeObject, opts?: CreateOptions): Promise<KubeObject> {
    const op = describe('POST', rt, namespace, body.metadata?.name);
    // raw JSON through CustomObjectsApi (API groups only): the typed models would drop fields they do
    // not know; and strict field validation, so the API server refuses (naming it) a field it does not know
    if (rt.group === '') return this.createCore(op, rt, namespace, body, opts);
    return this.call(op, opts, undefined, (o) =>
      this.custom.createNamespacedCustomObject(
        { group: rt.group, version: rt.version, namespace, plural: rt.plural, body, fieldManager: opts?.fieldManager ?? this.fieldManager, fieldValidation: 'Strict', ...(opts?.dryRun ? { dryRun: 'All' } : {}) },
        o,
      ),
    ) as Promise<KubeObject>;
  }

  /** ConfigMaps and Secrets (configuration snapshots): the typed models know every field of theirs. */
  private async createCore(op: string, rt: ResourceType, namespace: string, body: KubeObject, opts?: CreateOptions): Promise<KubeObject> {
    const params = { namespace, fieldManager: opts?.fieldManager ?? this.fieldManager, ...(opts?.dryRun ? { dryRun: 'All' } : {}) };
    return this.call(op, opts, undefined, async (o) => {
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      if (rt.plural === 'configmaps') return withKind(rt, plain<KubeObject>(await this.core.createNamespacedConfigMap({ ...params, body: body as any }, o)));
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      if (rt.plural === 'secrets') return withKind(rt, plain<KubeObject>(await this.core.createNamespacedSecret({ ...params, body: body as any }, o)));
      throw new Error(`create of core resource ${rt.plural} not supported`);
    });
  }

  async podLog(namespace: string, name: string, opts?: LogOptions): Promise<string> {
    const op = describe('GET', RESOURCES.pods, namespace, name, 'log');
    return this.read(op, opts, (o) =>
      this.core.readNamespacedPodLog(
        {
          name,
          namespace,
          ...(opts?.container ? { container: opts.container } : {}),
          ...(opts?.tailLines !== undefined ? { tailLines: opts.tailLines } : {}),
          ...(opts?.limitBytes !== undefined ? { limitBytes: opts.limitBytes } : {}),
        },
        o,
      ),
    );
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
      const patch =
        rt.plural === 'services' ? this.core.patchNamespacedService.bind(this.core)
        : rt.plural === 'configmaps' ? this.core.patchNamespacedConfigMap.bind(this.core)
        : rt.plural === 'secrets' ? this.core.patchNamespacedSecret.bind(this.core)
        : undefined;
      if (!patch) throw new Error(`core resource ${rt.plural} not supported`);
      return this.call(op, opts, ct, async (o) => withKind(rt, plain<KubeObject>(await patch(common, o))));
    }
    const req = { group: rt.group, version: rt.version, plural: rt.plural, ...common };
    return this.call(op, opts, ct, (o) =>
      opts?.subresource === 'status'
        ? this.custom.patchNamespacedCustomObjectStatus(req, o)
        : this.custom.patchNamespacedCustomObject(req, o),
    ) as Promise<KubeObject>;
  }
}
