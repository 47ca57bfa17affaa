// An in-memory Kube for unit tests (actions, engine): objects by resource/namespace/name, JSON
// Patch (RFC 6902), JSON Merge Patch (RFC 7386) and a simplified strategic merge (maps merge,
// `$patch: replace` replaces a map, lists are replaced), resourceVersion and generation bookkeeping
// (a patch that sets an older resourceVersion gets 409 Conflict, as from the API server), label
// selectors, and error injection. It is not a controller: tests move status along themselves,
// or through the onPatch hook.
import { randomUUID } from 'node:crypto';
import type { Kube, KubeObject, PatchOptions, PatchType, RequestOptions, ResourceType } from './client.js';
import { KubeApiError } from './errors.js';

export type Verb = 'get' | 'list' | 'patch';

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
}

const clone = <T>(v: T): T => structuredClone(v);

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

// --- JSON Patch
function unescapePtr(s: string): string {
  return s.replace(/~1/g, '/').replace(/~0/g, '~');
}

export function applyJsonPatch(doc: unknown, ops: unknown): unknown {
  if (!Array.isArray(ops)) throw new KubeApiError({ status: 400, reason: 'BadRequest', message: 'json patch must be an array', operation: 'PATCH' });
  let root = clone(doc);
  for (const op of ops as { op: string; path: string; value?: unknown }[]) {
    const parts = op.path === '' ? [] : op.path.split('/').slice(1).map(unescapePtr);
    // the API server's answer to a JSON Patch it cannot apply (it does not say why)
    const fail = (_why: string) =>
      new KubeApiError({ status: 422, reason: 'Invalid', message: 'the server rejected our request due to an error in our request', operation: 'PATCH' });
    if (parts.length === 0) {
      if (op.op === 'replace' || op.op === 'add') root = clone(op.value);
      continue;
    }
    let parent = root as Record<string, unknown> | unknown[];
    for (const p of parts.slice(0, -1)) {
      const next = Array.isArray(parent) ? parent[Number(p)] : (parent as Record<string, unknown>)?.[p];
      if (next === undefined || next === null || typeof next !== 'object') throw fail('doc is missing path');
      parent = next as Record<string, unknown>;
    }
    const last = parts[parts.length - 1] as string;
    const exists = Array.isArray(parent) ? Number(last) < parent.length : Object.prototype.hasOwnProperty.call(parent, last);
    switch (op.op) {
      case 'test': {
        const cur = Array.isArray(parent) ? parent[Number(last)] : (parent as Record<string, unknown>)[last];
        if (JSON.stringify(cur) !== JSON.stringify(op.value)) throw fail('test failed');
        break;
      }
      case 'remove':
        if (!exists) throw fail('doc is missing path');
        if (Array.isArray(parent)) parent.splice(Number(last), 1);
        else delete (parent as Record<string, unknown>)[last];
        break;
      case 'replace':
        if (!exists) throw fail('doc is missing path');
        if (Array.isArray(parent)) parent[Number(last)] = clone(op.value);
        else (parent as Record<string, unknown>)[last] = clone(op.value);
        break;
      case 'add':
        if (Array.isArray(parent)) {
          if (last === '-') parent.push(clone(op.value));
          else parent.splice(Number(last), 0, clone(op.value));
        } else (parent as Record<string, unknown>)[last] = clone(op.value);
        break;
      default:
        throw fail('unsupported op');
    }
  }
  return root;
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

export function applyMergePatch(target: unknown, patch: unknown): unknown {
  if (!isObj(patch)) return clone(patch);
  const out: Record<string, unknown> = isObj(target) ? clone(target) : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = applyMergePatch(out[k], v);
  }
  return out;
}

/** Simplified strategic merge: like merge patch, plus `$patch: replace` / `$patch: delete` on maps. */
export function applyStrategicPatch(target: unknown, patch: unknown): unknown {
  if (!isObj(patch)) return clone(patch);
  const directive = patch.$patch;
  const rest = Object.fromEntries(Object.entries(patch).filter(([k]) => k !== '$patch'));
  if (directive === 'replace') return stripDirectives(rest);
  if (directive === 'delete') return undefined;
  const out: Record<string, unknown> = isObj(target) ? clone(target) : {};
  for (const [k, v] of Object.entries(rest)) {
    if (v === null) delete out[k];
    else {
      const r = applyStrategicPatch(out[k], v);
      if (r === undefined) delete out[k];
      else out[k] = r;
    }
  }
  return out;
}

function stripDirectives(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(stripDirectives);
  if (!isObj(v)) return v;
  return Object.fromEntries(Object.entries(v).filter(([k]) => k !== '$patch').map(([k, x]) => [k, stripDirectives(x)]));
}

export class FakeKube implements Kube {
  readonly objects = new Map<string, { rt: ResourceType; obj: KubeObject }>();
  readonly calls: FakeCall[] = [];
  private rv = 1000;
  private failures: { verb: Verb; err: KubeApiError | ((c: FakeCall) => KubeApiError | null) }[] = [];
  /** called after every persisted patch (not for dry runs): simulate a controller here */
  onPatch?: (rt: ResourceType, obj: KubeObject, fake: FakeKube) => void;

  /** Stores an object (uid, resourceVersion, generation and creationTimestamp filled in if absent). */
  add(rt: ResourceType, obj: KubeObject): KubeObject {
    const o = clone(obj);
    o.metadata.uid ??= randomUUID();
    o.metadata.resourceVersion = String(++this.rv);
    o.metadata.generation ??= 1;
    o.metadata.creationTimestamp ??= new Date(Date.now() - 60_000).toISOString();
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

  async get(rt: ResourceType, namespace: string, name: string, _opts?: RequestOptions): Promise<KubeObject> {
    const call: FakeCall = { verb: 'get', resource: rt.plural, namespace, name };
    this.calls.push(call);
    this.maybeFail(call);
    const e = this.objects.get(key(rt, namespace, name));
    if (!e) throw this.notFound(rt, name, `GET ${rt.plural} ${namespace}/${name}`);
    return clone(e.obj);
  }

  async list(rt: ResourceType, namespace: string, opts?: RequestOptions & { labelSelector?: string }): Promise<KubeObject[]> {
    const call: FakeCall = { verb: 'list', resource: rt.plural, namespace, ...(opts?.labelSelector ? { labelSelector: opts.labelSelector } : {}) };
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
    const patched = (
      type === 'json' ? applyJsonPatch(before, body) : type === 'merge' ? applyMergePatch(before, body) : applyStrategicPatch(before, body)
    ) as KubeObject;
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

  patches(): FakeCall[] {
    return this.calls.filter((c) => c.verb === 'patch');
  }
}
