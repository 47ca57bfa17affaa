// Revision history helpers shared by the undo actions, following kubectl's rollback.go:
// the history of a Deployment (or Argo Rollout) is the ReplicaSets its selector matches AND it
// controls, numbered by an annotation; the history of a StatefulSet or DaemonSet is its
// ControllerRevisions, numbered by their .revision field.
import { RESOURCES, type Kube, type KubeObject, type RequestOptions } from './kube.js';

export const DEPLOYMENT_REVISION = 'deployment.kubernetes.io/revision';
export const ROLLOUT_REVISION = 'rollout.argoproj.io/revision';
export const POD_TEMPLATE_HASH = 'pod-template-hash';
export const ROLLOUTS_POD_TEMPLATE_HASH = 'rollouts-pod-template-hash';
export const CHANGE_CAUSE = 'kubernetes.io/change-cause';

export interface LabelSelectorRequirement {
  key: string;
  operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist' | string;
  values?: string[];
}
export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: LabelSelectorRequirement[];
}

/**
 * The label-selector query string of a LabelSelector, as metav1.LabelSelectorAsSelector(...).String().
 * `owner` is the object the selector is read from, named in the error when it has none.
 */
export function selectorToString(sel: LabelSelector | undefined | null, owner?: KubeObject): string {
  if (!sel) {
    const what = owner ? `${owner.kind ?? 'object'} ${owner.metadata.namespace ?? ''}/${owner.metadata.name ?? '?'}` : 'the object';
    throw new Error(`${what} has no spec.selector, so the revisions it owns cannot be listed; give it a spec.selector`);
  }
  const parts: string[] = [];
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) parts.push(`${k}=${v}`);
  for (const r of sel.matchExpressions ?? []) {
    const vals = [...(r.values ?? [])].sort().join(',');
    switch (r.operator) {
      case 'In':
        parts.push(`${r.key} in (${vals})`);
        break;
      case 'NotIn':
        parts.push(`${r.key} notin (${vals})`);
        break;
      case 'Exists':
        parts.push(r.key);
        break;
      case 'DoesNotExist':
        parts.push(`!${r.key}`);
        break;
      default:
        throw new Error(`unsupported label selector operator ${r.operator}`);
    }
  }
  return parts.sort().join(',');
}

/** Whether labels satisfy the selector (an empty selector matches everything, as in apps/v1). */
export function selectorMatches(sel: LabelSelector | undefined | null, labels: Record<string, string> | undefined): boolean {
  if (!sel) return false;
  const l = labels ?? {};
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) if (l[k] !== v) return false;
  for (const r of sel.matchExpressions ?? []) {
    const has = Object.prototype.hasOwnProperty.call(l, r.key);
    const val = l[r.key];
    switch (r.operator) {
      case 'In':
        if (!has || !(r.values ?? []).includes(val as string)) return false;
        break;
      case 'NotIn':
        if (has && (r.values ?? []).includes(val as string)) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
      default:
        return false;
    }
  }
  return true;
}

/** metav1.IsControlledBy: a controller owner reference with the owner's UID. */
export function isControlledBy(obj: KubeObject, owner: KubeObject): boolean {
  const uid = owner.metadata.uid;
  if (!uid) return false;
  return (obj.metadata.ownerReferences ?? []).some((r) => r.controller === true && r.uid === uid);
}

/**
 * The revision number in an annotation: missing = 0 (as deploymentutil.Revision), unparsable =
 * null (kubectl skips such objects). Parsed as Go's strconv.ParseInt(v, 10, 64): an optional sign
 * and ASCII digits, nothing around them (" 5" is unparsable there, so here). Beyond 2^53 (no
 * revision comes near it) it is unparsable here too.
 */
export function annotationRevision(obj: KubeObject, key = DEPLOYMENT_REVISION): number | null {
  const v = obj.metadata.annotations?.[key];
  if (v === undefined) return 0;
  if (!/^[+-]?[0-9]+$/.test(v)) return null;
  const n = Number.parseInt(v, 10);
  return Number.isSafeInteger(n) ? n : null;
}

function isEmpty(v: unknown): boolean {
  if (v === undefined || v === null) return true;
  if (Array.isArray(v)) return v.length === 0;
  if (typeof v === 'object') return Object.keys(v as object).length === 0;
  return false;
}

/**
 * Semantic equality of two JSON values, close to apimachinery's equality.Semantic.DeepEqual on
 * decoded objects: an absent field, null, an empty map and an empty list are all the same.
 */
export function semanticEqual(a: unknown, b: unknown): boolean {
  if (isEmpty(a) && isEmpty(b)) return true;
  if (a === b) return true;
  if (typeof a !== typeof b || a === null || b === null) return false;
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    return a.every((x, i) => semanticEqual(x, b[i]));
  }
  if (typeof a === 'object') {
    const ao = a as Record<string, unknown>;
    const bo = b as Record<string, unknown>;
    const keys = new Set([...Object.keys(ao), ...Object.keys(bo)]);
    for (const k of keys) if (!semanticEqual(ao[k], bo[k])) return false;
    return true;
  }
  return false;
}

export function clone<T>(v: T): T {
  return structuredClone(v);
}

/** A deep copy of a pod template without one label (the pod-template-hash). */
export function templateWithoutLabel<T extends { metadata?: { labels?: Record<string, string> } }>(
  template: T,
  label: string,
): T {
  const t = clone(template ?? ({} as T));
  if (t.metadata?.labels && label in t.metadata.labels) delete t.metadata.labels[label];
  return t;
}

/** kubectl's equalIgnoreHash: templates equal once the hash label is removed from both. */
export function equalIgnoringLabel(a: unknown, b: unknown, label: string): boolean {
  return semanticEqual(
    templateWithoutLabel(a as { metadata?: { labels?: Record<string, string> } }, label),
    templateWithoutLabel(b as { metadata?: { labels?: Record<string, string> } }, label),
  );
}

function createdAt(o: KubeObject): number {
  const t = o.metadata.creationTimestamp ? Date.parse(o.metadata.creationTimestamp) : NaN;
  return Number.isNaN(t) ? 0 : t;
}

/**
 * kubectl's ReplicaSetsByCreationTimestamp (k8s.io/kubectl pkg/util/deployment): oldest first,
 * equal creation timestamps ordered by name (Go's byte-wise string <, not a locale's order).
 */
function byCreation(a: KubeObject, b: KubeObject): number {
  const d = createdAt(a) - createdAt(b);
  if (d !== 0) return d;
  return a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0;
}

/**
 * The ReplicaSets an owner (Deployment or Rollout) controls, in kubectl's order: the old ones by
 * creation time (oldest first, names breaking ties; not the API server's list order), then the
 * "new" one (the oldest whose template equals the owner's, ignoring the hash). kubectl's
 * findNewReplicaSet sorts the list in place before findOldReplicaSets walks it, so which of two
 * ReplicaSets with the same revision number pickReplicaSet takes follows creation order.
 */
export async function ownedReplicaSets(
  kube: Kube,
  owner: KubeObject,
  hashLabel: string,
  opts?: RequestOptions,
): Promise<{ all: KubeObject[]; newRS: KubeObject | null }> {
  const ns = owner.metadata.namespace ?? '';
  const labelSelector = selectorToString(owner.spec?.selector, owner);
  const listed = await kube.list(RESOURCES.replicasets, ns, { ...opts, labelSelector });
  const owned = listed.filter((rs) => isControlledBy(rs, owner));
  const byAge = [...owned].sort(byCreation);
  const newRS = byAge.find((rs) => equalIgnoringLabel(rs.spec?.template, owner.spec?.template, hashLabel)) ?? null;
  const all = byAge.filter((rs) => rs !== newRS);
  if (newRS) all.push(newRS);
  return { all, newRS };
}

export type PickResult<T> = { ok: true; value: T } | { ok: false; code: 'no_history' | 'revision_not_found' };

/**
 * kubectl's deploymentRevision over `all` in the order given (ownedReplicaSets': kubectl's):
 * toRevision 0 picks the second-highest revision seen (ties: the later one in order replaces only
 * a strictly lower "previous"); N picks the first with revision N.
 */
export function pickReplicaSet(all: KubeObject[], toRevision: number, key = DEPLOYMENT_REVISION): PickResult<KubeObject> {
  let latest: KubeObject | null = null;
  let latestRev = -1;
  let previous: KubeObject | null = null;
  let previousRev = -1;
  for (const rs of all) {
    const v = annotationRevision(rs, key);
    if (v === null) continue;
    if (toRevision === 0) {
      if (latestRev < v) {
        previousRev = latestRev;
        previous = latest;
        latestRev = v;
        latest = rs;
      } else if (previousRev < v) {
        previousRev = v;
        previous = rs;
      }
    } else if (toRevision === v) {
      return { ok: true, value: rs };
    }
  }
  if (toRevision > 0) return { ok: false, code: 'revision_not_found' };
  if (!previous) return { ok: false, code: 'no_history' };
  return { ok: true, value: previous };
}

/** The ControllerRevisions an owner (StatefulSet, DaemonSet) controls, selected by its selector. */
export async function ownedControllerRevisions(kube: Kube, owner: KubeObject, opts?: RequestOptions): Promise<KubeObject[]> {
  const ns = owner.metadata.namespace ?? '';
  const labelSelector = selectorToString(owner.spec?.selector, owner);
  const listed = await kube.list(RESOURCES.controllerrevisions, ns, { ...opts, labelSelector });
  return listed.filter((cr) => isControlledBy(cr, owner));
}

export function controllerRevisionNumber(cr: KubeObject): number {
  const r = (cr as { revision?: unknown }).revision;
  return typeof r === 'number' ? r : Number(r ?? 0);
}

/**
 * kubectl's findHistory: toRevision 0 = the second-highest revision (null when history has one
 * entry or none); N = the revision numbered N, or null.
 */
export function findHistory(history: KubeObject[], toRevision: number): KubeObject | null {
  if (toRevision === 0 && history.length <= 1) return null;
  if (toRevision === 0) {
    const sorted = [...history].sort((a, b) => controllerRevisionNumber(a) - controllerRevisionNumber(b));
    return sorted[sorted.length - 2] ?? null;
  }
  return history.find((h) => controllerRevisionNumber(h) === toRevision) ?? null;
}

export function timestampMs(s: string | undefined): number | undefined {
  if (!s) return undefined;
  const t = Date.parse(s);
  return Number.isNaN(t) ? undefined : t;
}

/**
 * apimachinery's Semantic.DeepDerivative(a, b): like semanticEqual, but fields unset (or empty) in
 * `a` are ignored, so an undefaulted template (a CRD's, e.g. an Argo Rollout's) equals its
 * server-defaulted copy in a ReplicaSet.
 */
export function semanticDerivative(a: unknown, b: unknown): boolean {
  if (isEmpty(a)) return true;
  if (a === b) return true;
  if (typeof a !== typeof b || b === null || b === undefined) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    return a.every((x, i) => semanticDerivative(x, b[i]));
  }
  if (typeof a === 'object') {
    const ao = a as Record<string, unknown>;
    const bo = b as Record<string, unknown>;
    return Object.keys(ao).every((k) => semanticDerivative(ao[k], bo[k]));
  }
  return false;
}
