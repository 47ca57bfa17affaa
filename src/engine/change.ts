import { createHash } from 'node:crypto';
import type { PlannedWrite, RollbackPlan } from '../actions/action.js';
import { applyPatch, PatchError, pointerSegments } from '../kube/patch.js';
import { canonicalJson } from '../canonical-json.js';

/**
 * What a record keeps of one write of a rollback: which object, the fields the write changes (by
 * path), each container's image before and after, and a hash of the pod template before and after.
 * Never a value (but a scale's replica counts): a pod template holds env values (where teams put connection strings), args and
 * annotations such as kubectl's last-applied-configuration. The plan's writes themselves stay in
 * the memory of the replica that executes them.
 */
export interface WriteSummary {
  kind: string;
  namespace: string;
  name: string;
  /** what the write does, in words (the action's description) */
  description: string;
  /** the fields whose value the write changes: `spec.template.spec.containers[app].image` */
  changed: string[];
  /** each container of the pod template (kinds with one): its image before and after */
  images?: ImageChange[];
  /** sha256 of the pod template before and after (equal: the same template) */
  templateHash?: { before?: string; after?: string };
  /**
   * A scale write's replicas before and after (PlannedWrite.replicas, the Canary kind's): a count
   * is not secret, and a recovery on another replica goes on with the count the plan chose.
   */
  replicas?: { before: number; after: number };
}

export interface ImageChange {
  container: string;
  /** an init container */
  init?: boolean;
  before?: string;
  after?: string;
}

/** What a record keeps of a plan (RollbackRecord.plan). */
export interface PlanSummary {
  summary: string;
  fromRevision?: number;
  toRevision?: number;
  writes?: WriteSummary[];
  /** the argv execute() runs (Helm): names and flags only */
  command?: string[];
  /** the target revision's ConfigMaps and Secrets changed since it was created, in words (names and times, never data) */
  configDrift?: string[];
  /** objects the plan changes without writing them itself (a Helm release's workloads): names only */
  changes?: { kind: string; namespace: string; name: string }[];
}

/** The objects a record's plan summary names as written or changed (kind, namespace, name). */
export function summarisedObjects(s: PlanSummary | undefined): { kind: string; namespace: string; name: string }[] {
  return [...(s?.writes ?? []), ...(s?.changes ?? [])];
}

export function summarisePlan(p: RollbackPlan): PlanSummary {
  const s: PlanSummary = { summary: p.summary };
  if (p.fromRevision !== undefined) s.fromRevision = p.fromRevision;
  if (p.toRevision !== undefined) s.toRevision = p.toRevision;
  if (p.writes) s.writes = p.writes.map(summariseWrite);
  if (p.command) s.command = p.command;
  if (p.configDrift?.length) s.configDrift = p.configDrift.map((d) => d.message);
  if (p.changes?.length) s.changes = p.changes.map((c) => ({ kind: c.resource.kind, namespace: c.namespace, name: c.name }));
  return s;
}

export function summariseWrite(w: PlannedWrite): WriteSummary {
  const out: WriteSummary = { kind: w.resource.kind, namespace: w.namespace, name: w.name, description: w.description, changed: [] };
  if (w.replicas) out.replicas = { before: w.replicas.before, after: w.replicas.after };
  let after: unknown;
  if (w.before !== undefined) {
    try {
      const applied = applyPatch(w.before, w.patch, w.patchType) as Record<string, unknown>;
      // a write to the status subresource changes nothing else
      after = w.subresource === 'status' ? { ...w.before, status: applied.status } : applied;
    } catch (err) {
      if (!(err instanceof PatchError)) throw err;
    }
  }
  out.changed = after === undefined ? patchedPaths(w) : diffPaths(w.before, after, '');
  const before = templateOf(w.before);
  const next = after === undefined ? undefined : templateOf(after);
  if (before !== undefined || next !== undefined) {
    out.images = imageChanges(before, next);
    out.templateHash = {};
    if (before !== undefined) out.templateHash.before = hash(before);
    if (next !== undefined) out.templateHash.after = hash(next);
  }
  return out;
}

/** Records of earlier versions kept the writes whole: their values are dropped when read. */
export function withoutWrittenValues(plan: PlanSummary | undefined): void {
  for (const w of (plan?.writes ?? []) as unknown as Record<string, unknown>[]) {
    for (const k of ['patch', 'before']) delete w[k];
  }
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function key(k: string): string {
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(k) ? `.${k}` : `[${JSON.stringify(k)}]`;
}

/** Lists of objects with unique names (containers, env, volumes, ports) are compared by name, others by index. */
function byName(a: unknown[], b: unknown[]): boolean {
  const names = (l: unknown[]) => l.map((x) => (isObj(x) && typeof x.name === 'string' ? x.name : undefined));
  const na = names(a);
  const nb = names(b);
  return [na, nb].every((n) => n.every((x) => x !== undefined) && new Set(n).size === n.length);
}

/** The paths at which a and b differ, as deep as both sides are objects (or lists); never the values. */
export function diffPaths(a: unknown, b: unknown, at: string): string[] {
  if (JSON.stringify(a) === JSON.stringify(b)) return [];
  if (isObj(a) && isObj(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    return keys.flatMap((k) => diffPaths(a[k], b[k], `${at}${key(k)}`));
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    if (byName(a, b)) {
      const find = (l: unknown[], n: string) => l.find((x) => (x as { name: string }).name === n);
      const order = [...new Set([...a, ...b].map((x) => (x as { name: string }).name))];
      return order.flatMap((n) => diffPaths(find(a, n), find(b, n), `${at}[${n}]`));
    }
    return Array.from({ length: Math.max(a.length, b.length) }, (_, i) => diffPaths(a[i], b[i], `${at}[${i}]`)).flat();
  }
  return [at.replace(/^\./, '') || '.'];
}

/** Without the object as read, the paths the patch writes (down to the values it sets). */
function patchedPaths(w: PlannedWrite): string[] {
  if (w.patchType === 'json') {
    return (w.patch as { op: string; path: string }[])
      .filter((op) => op.op !== 'test')
      .map((op) => pointerSegments(op.path).map(key).join('').replace(/^\./, ''));
  }
  const walk = (p: unknown, at: string): string[] =>
    isObj(p) && p.$patch === undefined ? Object.keys(p).flatMap((k) => walk(p[k], `${at}${key(k)}`)) : [at.replace(/^\./, '')];
  return walk(w.patch, '');
}

function templateOf(o: unknown): Record<string, unknown> | undefined {
  const t = isObj(o) && isObj(o.spec) ? o.spec.template : undefined;
  return isObj(t) ? t : undefined;
}

function imageChanges(before: Record<string, unknown> | undefined, after: Record<string, unknown> | undefined): ImageChange[] {
  const out: ImageChange[] = [];
  for (const field of ['initContainers', 'containers'] as const) {
    const list = (t: Record<string, unknown> | undefined) => ((isObj(t?.spec) ? t.spec[field] : undefined) ?? []) as { name?: string; image?: string }[];
    const b = list(before);
    const a = list(after);
    for (const name of [...new Set([...b, ...a].map((c) => c.name ?? '?'))]) {
      const c: ImageChange = { container: name };
      if (field === 'initContainers') c.init = true;
      const was = b.find((x) => (x.name ?? '?') === name)?.image;
      const now = a.find((x) => (x.name ?? '?') === name)?.image;
      if (was !== undefined) c.before = was;
      if (now !== undefined) c.after = now;
      out.push(c);
    }
  }
  return out;
}

/** sha256 of the canonical JSON (keys sorted) of a value. */
function hash(v: unknown): string {
  return `sha256:${createHash('sha256').update(canonicalJson(v)).digest('hex')}`;
}
