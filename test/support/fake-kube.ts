// An in-memory Kube for unit tests (actions, engine): objects by resource/namespace/name, JSON
// Patch (RFC 6902), JSON Merge Patch (RFC 7386) and a simplified strategic merge (maps merge,
// `$patch: replace` replaces a map, lists are replaced), resourceVersion and generation bookkeeping
// (a patch that sets an older resourceVersion gets 409 Conflict, as from the API server), label
// selectors, and error injection. It is not a controller: tests move status along themselves,
// or through the onPatch hook.
import { randomUUID } from 'node:crypto';
import type { CreateOptions, Kube, KubeObject, LogOptions, PatchOptions, PatchType, RequestOptions, ResourceType } from '../../src/kube/kube.js';
import { KubeApiError } from '../../src/kube/errors.js';
import { applyPatch, PatchError } from '../../src/kube/patch.js';
import type { Precedence } from '../../src/turns.js';

export type Verb = 'get' | 'getMetadata' | 'list' | 'patch' | 'create' | 'podLog' | 'delete';

export interface FakeCall {
  verb: Verb;
  resource: string;
  namespace: string;
  name?: string;
  patchType?: PatchType;
  body?: unknown;
  subresource?: string;
  dryRun?: boolean;
  labelSelector?: string;
  /** a read's turn at the API server (RequestOptions.precedence), as the caller asked it */
  precedence?: Precedence;
}

const clone = <T>(v: T): T => structuredClone(v);
const turnOf = (opts?: { precedence?: Precedence | undefined }) => (opts?.precedence !== undefined ? { precedence: opts.precedence } : {});

function key(rt: ResourceType, ns: string, name: string): string {
  return `${rt.plural}.${rt.group}/${ns}/${name}`;
}

// --- label selector strings ("a=b,c in (d,e),f,!g,h!=i")
function splitSelector(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      out.push(cur.trim());
      cur = '';
    } else cur += ch;
  }
  if (cur.trim()) out.push(cur.trim());
  return out;
}

export function matchesSelectorString(selector: string | undefined, labels: Record<string, string> = {}): boolean {
  if (!selector) return true;
  for (const term of splitSelector(selector)) {
    let m: RegExpExecArray | null;
    if ((m = /^(\S+)\s+(in|notin)\s+\((.*)\)$/.exec(term))) {
      const [, k, op, vals] = m as unknown as [string, string, string, string];
      const set = vals.split(',').map((v) => v.trim());
      const has = k in labels;
      if (op === 'in' && (!has || !set.includes(labels[k] as string))) return false;
      if (op === 'notin' && has && set.includes(labels[k] as string)) return false;
    } else if ((m = /^(\S+?)\s*!=\s*(\S*)$/.exec(term))) {
      if (labels[m[1] as string] === m[2]) return false;
    } else if ((m = /^(\S+?)\s*==?\s*(\S*)$/.exec(term))) {
      if (labels[m[1] as string] !== m[2]) return false;
    } else if (term.startsWith('!')) {
      if (term.slice(1) in labels) return false;
    } else if (!(term in labels)) return false;
  }
  return true;
}

export class FakeKube implements Kube {
  readonly objects = new Map<string, { rt: ResourceType; obj: KubeObject }>();
  readonly calls: FakeCall[] = [];
  private rv = 1000;
  private failures: { verb: Verb; err: KubeApiError | ((c: FakeCall) => KubeApiError | null) }[] = [];
  /** called after every persisted patch (not for dry runs): simulate a controller here */
  onPatch?: (rt: ResourceType, obj: KubeObject, fake: FakeKube) => void;
  /** called after every persisted create (not for dry runs): simulate a controller here */
  onCreate?: (rt: ResourceType, obj: KubeObject, fake: FakeKube) => void;
  /** pods/log answers by namespace/pod (absent: 404, as the API server for a pod without logs) */
  readonly logs = new Map<string, string>();

  /**
   * Stores an object (uid, resourceVersion, generation and creationTimestamp filled in if absent).
   * The default creation time is 10 minutes ago, like FakeDeploymentAction's revision: deployed
   * before the alerts `firing()` makes started (3 minutes ago), as a deploy that causes an alert is.
   */
  add(rt: ResourceType, obj: KubeObject): KubeObject {
    const o = clone(obj);
    o.metadata.uid ??= randomUUID();
    o.metadata.resourceVersion = String(++this.rv);
    o.metadata.generation ??= 1;
    o.metadata.creationTimestamp ??= new Date(Date.now() - 10 * 60_000).toISOString();
    this.objects.set(key(rt, o.metadata.namespace ?? '', o.metadata.name), { rt, obj: o });
    return clone(o);
  }

  /** Replaces an object as a controller would (no generation bump). */
  put(rt: ResourceType, obj: KubeObject): void {
    const o = clone(obj);
    o.metadata.resourceVersion = String(++this.rv);
    this.objects.set(key(rt, o.metadata.namespace ?? '', o.metadata.name), { rt, obj: o });
  }

  peek(rt: ResourceType, ns: string, name: string): KubeObject | undefined {
    const e = this.objects.get(key(rt, ns, name));
    return e ? clone(e.obj) : undefined;
  }

  /** The next call of this verb fails with err (or, given a function, each call it returns an error for). */
  failNext(verb: Verb, err: KubeApiError | ((c: FakeCall) => KubeApiError | null)): void {
    this.failures.push({ verb, err });
  }

  private maybeFail(call: FakeCall): void {
    const i = this.failures.findIndex((f) => f.verb === call.verb);
    if (i < 0) return;
    const f = this.failures[i]!;
    if (typeof f.err === 'function') {
      const e = f.err(call);
      if (e) {
        this.failures.splice(i, 1);
        throw e;
      }
      return;
    }
    this.failures.splice(i, 1);
    throw f.err;
  }

  private notFound(rt: ResourceType, name: string, op: string): KubeApiError {
    return new KubeApiError({
      status: 404,
      reason: 'NotFound',
      message: `${rt.plural}${rt.group ? `.${rt.group}` : ''} "${name}" not found`,
      operation: op,
    });
  }

  async get(rt: ResourceType, namespace: string, name: string, opts?: RequestOptions): Promise<KubeObject> {
    const call: FakeCall = { verb: 'get', resource: rt.plural, namespace, name, ...turnOf(opts) };
    this.calls.push(call);
    this.maybeFail(call);
    const e = this.objects.get(key(rt, namespace, name));
    if (!e) throw this.notFound(rt, name, `GET ${rt.plural} ${namespace}/${name}`);
    return clone(e.obj);
  }

  /** Metadata only, as the API server's PartialObjectMetadata: no data, spec or status. */
  async getMetadata(rt: ResourceType, namespace: string, name: string, opts?: RequestOptions): Promise<KubeObject> {
    const call: FakeCall = { verb: 'getMetadata', resource: rt.plural, namespace, name, ...turnOf(opts) };
    this.calls.push(call);
    this.maybeFail(call);
    const e = this.objects.get(key(rt, namespace, name));
    if (!e) throw this.notFound(rt, name, `GET ${rt.plural} ${namespace}/${name}`);
    return { apiVersion: 'meta.k8s.io/v1', kind: 'PartialObjectMetadata', metadata: clone(e.obj.metadata) };
  }

  async list(rt: ResourceType, namespace: string, opts?: RequestOptions & { labelSelector?: string }): Promise<KubeObject[]> {
    const call: FakeCall = { verb: 'list', resource: rt.plural, namespace, ...(opts?.labelSelector ? { labelSelector: opts.labelSelector } : {}), ...turnOf(opts) };
    this.calls.push(call);
    this.maybeFail(call);
    const out: KubeObject[] = [];
    for (const { rt: r, obj } of this.objects.values()) {
      if (r.plural !== rt.plural || r.group !== rt.group || (obj.metadata.namespace ?? '') !== namespace) continue;
      if (!matchesSelectorString(opts?.labelSelector, obj.metadata.labels)) continue;
      out.push(clone(obj));
    }
    return out;
  }

  async patch(rt: ResourceType, namespace: string, name: string, body: unknown, type: PatchType, opts?: PatchOptions): Promise<KubeObject> {
    const call: FakeCall = {
      verb: 'patch',
      resource: rt.plural,
      namespace,
      name,
      patchType: type,
      body: clone(body),
      ...(opts?.subresource ? { subresource: opts.subresource } : {}),
      ...(opts?.dryRun ? { dryRun: true } : {}),
    };
    this.calls.push(call);
    this.maybeFail(call);
    const k = key(rt, namespace, name);
    const e = this.objects.get(k);
    if (!e) throw this.notFound(rt, name, `PATCH ${rt.plural} ${namespace}/${name}`);
    const before = e.obj;
    let patched: KubeObject;
    try {
      patched = applyPatch(before, body, type) as KubeObject;
    } catch (err) {
      if (!(err instanceof PatchError)) throw err;
      // the API server's answer to a patch it cannot apply (it does not say why)
      throw err.status === 400
        ? new KubeApiError({ status: 400, reason: 'BadRequest', message: err.message, operation: 'PATCH' })
        : new KubeApiError({ status: 422, reason: 'Invalid', message: 'the server rejected our request due to an error in our request', operation: 'PATCH' });
    }
    if (patched.metadata.resourceVersion !== before.metadata.resourceVersion) {
      throw new KubeApiError({
        status: 409,
        reason: 'Conflict',
        message: `Operation cannot be fulfilled on ${rt.plural}${rt.group ? `.${rt.group}` : ''} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
        operation: `PATCH ${rt.plural} ${namespace}/${name}`,
      });
    }
    const result = opts?.subresource === 'status' ? { ...clone(before), status: patched.status } : patched;
    if (opts?.subresource !== 'status') result.status = clone(before.status);
    if (JSON.stringify(result.spec) !== JSON.stringify(before.spec)) result.metadata.generation = (before.metadata.generation ?? 1) + 1;
    if (opts?.dryRun) return clone(result);
    result.metadata.resourceVersion = String(++this.rv);
    this.objects.set(k, { rt, obj: result });
    this.onPatch?.(rt, clone(result), this);
    return clone(this.objects.get(k)!.obj);
  }

  async create(rt: ResourceType, namespace: string, body: KubeObject, opts?: CreateOptions): Promise<KubeObject> {
    const name = body.metadata?.name ?? '';
    const call: FakeCall = { verb: 'create', resource: rt.plural, namespace, name, body: clone(body), ...(opts?.dryRun ? { dryRun: true } : {}) };
    this.calls.push(call);
    this.maybeFail(call);
    if (this.objects.has(key(rt, namespace, name))) {
      throw new KubeApiError({ status: 409, reason: 'AlreadyExists', message: `${rt.plural}${rt.group ? `.${rt.group}` : ''} "${name}" already exists`, operation: `POST ${rt.plural} ${namespace}` });
    }
    const o = clone(body);
    o.metadata = { ...o.metadata, namespace, uid: randomUUID(), resourceVersion: String(++this.rv), generation: 1, creationTimestamp: new Date().toISOString() };
    if (opts?.dryRun) return o;
    this.objects.set(key(rt, namespace, name), { rt, obj: o });
    this.onCreate?.(rt, clone(o), this);
    return clone(this.objects.get(key(rt, namespace, name))!.obj);
  }

  async podLog(namespace: string, name: string, opts?: LogOptions): Promise<string> {
    const call: FakeCall = { verb: 'podLog', resource: 'pods', namespace, name, ...turnOf(opts) };
    this.calls.push(call);
    this.maybeFail(call);
    const text = this.logs.get(`${namespace}/${name}`);
    if (text === undefined) throw this.notFound({ group: '', version: 'v1', plural: 'pods', kind: 'Pod' }, name, `GET pods/log ${namespace}/${name}`);
    const lines = text.split('\n');
    if (text.endsWith('\n')) lines.pop();
    return opts?.tailLines !== undefined ? lines.slice(-opts.tailLines).join('\n') + '\n' : text;
  }

  async delete(rt: ResourceType, namespace: string, name: string, _opts?: RequestOptions): Promise<void> {
    const call: FakeCall = { verb: 'delete', resource: rt.plural, namespace, name };
    this.calls.push(call);
    this.maybeFail(call);
    if (!this.objects.delete(key(rt, namespace, name))) throw this.notFound(rt, name, `DELETE ${rt.plural} ${namespace}/${name}`);
  }

  patches(): FakeCall[] {
    return this.calls.filter((c) => c.verb === 'patch');
  }
}
