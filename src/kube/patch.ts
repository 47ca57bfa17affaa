// The three patch kinds a rollback sends, applied to a plain object as the API server would:
// JSON Patch (RFC 6902), JSON Merge Patch (RFC 7386) and a simplified strategic merge (maps
// merge, `$patch: replace` replaces a map, `$patch: delete` removes it, lists are replaced).
// Used to describe a planned write (what it changes, src/engine/change.ts) and by the in-memory
// Kube double of the tests. Small on purpose: no maintained library does the strategic kind
// without the API server's schemas, and the other two are a few lines each.
import type { PatchType } from './kube.js';

/** A patch that cannot be applied; status is the API server's answer to it (400 or 422). */
export class PatchError extends Error {
  override readonly name = 'PatchError';
  constructor(
    readonly status: 400 | 422,
    message: string,
  ) {
    super(message);
  }
}

const clone = <T>(v: T): T => structuredClone(v);
const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A JSON Pointer's segments ("/metadata/annotations/a~1b" → ["metadata", "annotations", "a/b"]). */
export function pointerSegments(path: string): string[] {
  return path === '' ? [] : path.split('/').slice(1).map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

export function applyJsonPatch(doc: unknown, ops: unknown): unknown {
  if (!Array.isArray(ops)) throw new PatchError(400, 'json patch must be an array');
  let root = clone(doc);
  for (const op of ops as { op: string; path: string; value?: unknown }[]) {
    const parts = pointerSegments(op.path);
    if (parts.length === 0) {
      if (op.op === 'replace' || op.op === 'add') root = clone(op.value);
      continue;
    }
    let parent = root as Record<string, unknown> | unknown[];
    for (const p of parts.slice(0, -1)) {
      const next = Array.isArray(parent) ? parent[Number(p)] : (parent as Record<string, unknown>)?.[p];
      if (next === undefined || next === null || typeof next !== 'object') throw new PatchError(422, `doc is missing path ${op.path}`);
      parent = next as Record<string, unknown>;
    }
    const last = parts[parts.length - 1] as string;
    const exists = Array.isArray(parent) ? Number(last) < parent.length : Object.prototype.hasOwnProperty.call(parent, last);
    switch (op.op) {
      case 'test': {
        const cur = Array.isArray(parent) ? parent[Number(last)] : (parent as Record<string, unknown>)[last];
        if (JSON.stringify(cur) !== JSON.stringify(op.value)) throw new PatchError(422, `test failed at ${op.path}`);
        break;
      }
      case 'remove':
        if (!exists) throw new PatchError(422, `doc is missing path ${op.path}`);
        if (Array.isArray(parent)) parent.splice(Number(last), 1);
        else delete (parent as Record<string, unknown>)[last];
        break;
      case 'replace':
        if (!exists) throw new PatchError(422, `doc is missing path ${op.path}`);
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
        throw new PatchError(422, `unsupported op ${op.op}`);
    }
  }
  return root;
}

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

/** `body` applied to `doc` by its patch type; throws PatchError when it cannot be. */
export function applyPatch(doc: unknown, body: unknown, type: PatchType): unknown {
  return type === 'json' ? applyJsonPatch(doc, body) : type === 'merge' ? applyMergePatch(doc, body) : applyStrategicPatch(doc, body);
}
