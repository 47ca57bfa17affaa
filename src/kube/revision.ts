// Revision history helpers shared by the undo actions, following kubectl's rollback.go:
// the history of a Deployment (or Argo Rollout) is the ReplicaSets its selector matches AND it
// controls, numbered by an annotation; the history of a StatefulSet or DaemonSet is its
// ControllerRevisions, numbered by their .revision field.
import { RESOURCES, type Kube, type KubeObject, type RequestOptions } from './client.js';
import { KubeApiError } from './errors.js';

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
 * null (kubectl skips such objects).
 */
export function annotationRevision(obj: KubeObject, key = DEPLOYMENT_REVISION): number | null {
  const v = obj.metadata.annotations?.[key];
  if (v === undefined) return 0;
  if (!/^[+-]?\d+$/.test(v.trim())) return null;
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

export interface OwnedReplicaSets {
  all: KubeObject[];
  newRS: KubeObject | null;
}

/** kubectl's order: the owned ones as listed, then the "new" one (the oldest whose template equals the owner's, ignoring the hash). */
function owned(listed: KubeObject[], owner: KubeObject, hashLabel: string): OwnedReplicaSets {
  const mine = listed.filter((rs) => isControlledBy(rs, owner));
  const byAge = [...mine].sort((a, b) => createdAt(a) - createdAt(b) || a.metadata.name.localeCompare(b.metadata.name));
  const newRS = byAge.find((rs) => equalIgnoringLabel(rs.spec?.template, owner.spec?.template, hashLabel)) ?? null;
  const all = mine.filter((rs) => rs !== newRS);
  if (newRS) all.push(newRS);
  return { all, newRS };
}

/**
 * The ReplicaSets an owner (Deployment or Rollout) controls, in kubectl's order: the old ones as
 * listed, then the "new" one (the oldest whose template equals the owner's, ignoring the hash).
 * A consistent LIST (as fresh as etcd).
 */
export async function ownedReplicaSets(kube: Kube, owner: KubeObject, hashLabel: string, opts?: RequestOptions): Promise<OwnedReplicaSets> {
  const ns = owner.metadata.namespace ?? '';
  const labelSelector = selectorToString(owner.spec?.selector, owner);
  return owned(await kube.list(RESOURCES.replicasets, ns, { ...opts, labelSelector }), owner, hashLabel);
}

export type PickResult<T> = { ok: true; value: T } | { ok: false; code: 'no_history' | 'revision_not_found' };

/**
 * kubectl's deploymentRevision: toRevision 0 picks the second-highest revision seen (ties: the
 * later one in order replaces only a strictly lower "previous"); N picks the first with revision N.
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

// --- The history read from the API server's watch cache (issue #19, target e).
//
// A LIST with resourceVersion=0 is served from the API server's watch cache, with no etcd round
// trip; the consistent LIST (no resourceVersion) waits until that cache has caught up with etcd,
// the mean 22-24 ms and the long tail of a rollback's plan(). The cache is a consistent snapshot of
// the ReplicaSets at some point, possibly behind the owner's consistent GET. Why a stale snapshot
// cannot make "the previous revision" the wrong one:
//  - Only the owner's controller numbers ReplicaSets, always max+1 of the others, and only the one
//    that becomes new for the owner's current template (created, or an old one reused, as after an
//    undo); numbers never go down. It writes that ReplicaSet first; the owner's revision annotation
//    follows in the same sync, or only in the next one (its getNewReplicaSet returns right after
//    updating an existing ReplicaSet's annotations), so the owner's annotation can lag its newRS.
//  - ownedReplicaSetsCached accepts the snapshot only if the owner is observed
//    (status.observedGeneration >= generation: the controller's sync of the current template, and
//    so its numbering for it, is done), newRS (by template, as kubectl) is in it at exactly the
//    owner's revision, every other owned ReplicaSet is strictly below, and no listed ReplicaSet is
//    an orphan the controller could adopt into the history. A rollout mid-way, a ReplicaSet created
//    or reused since the snapshot, a cache behind the owner: one of these fails.
//  - pickFromHistory then confirms, with consistent GETs (in parallel), the picked ReplicaSet and
//    newRS: same object (uid), still controlled by the owner and selected by it, same revision, same
//    template. A ReplicaSet numbered after the snapshot would be one other than newRS (newRS was
//    strictly the highest, so nothing made the controller renumber it), for another template, so
//    numbered above newRS; the controller's sync of the owner's current template, which the
//    observed generation says came after it and before the owner's GET, then renumbered newRS above
//    that: the GET of newRS sees it. (A numbering after the owner's GET needs a spec change: the
//    write's generation test.) So since the snapshot the history can only have lost ReplicaSets
//    (history cleanup, a delete), none above the picked one; the picked one is still there,
//    unchanged: kubectl would pick it from a consistent list too.
//  - A change to the owner after its GET fails the write's `test /metadata/generation`.
// Not covered, as for a consistent LIST read a moment before the patch: others' edits of the other
// ReplicaSets (their revision annotation, owner, labels), and a controller acting on its own stale
// view. Every failed condition falls back to the consistent LIST, which is today's behaviour.

export interface CachedOwnedReplicaSets extends OwnedReplicaSets {
  /** true: the watch cache's list, accepted; false: the consistent list, because of `fallback` */
  fromCache: boolean;
  fallback?: string;
}

/** Why a watch-cache list of an owner's ReplicaSets cannot stand for a consistent one, or null when it can. */
function cacheUnfit(listed: KubeObject[], found: OwnedReplicaSets, owner: KubeObject, revisionKey: string): string | null {
  // a number for a Deployment, a numeric string for an Argo Rollout
  const observed = Number(owner.status?.observedGeneration ?? Number.NaN);
  const generation = owner.metadata.generation;
  if (typeof generation !== 'number' || !(observed >= generation)) return `the controller has not observed generation ${String(generation)} yet`;
  const orphan = listed.find((rs) => !(rs.metadata.ownerReferences ?? []).some((r) => r.controller === true));
  if (orphan) return `ReplicaSet ${orphan.metadata.name} matches the selector and has no controller (it may be adopted)`;
  if (!found.newRS) return 'no ReplicaSet with the current template in the cached list';
  const want = annotationRevision(owner, revisionKey);
  const got = annotationRevision(found.newRS, revisionKey);
  if (want === null || got === null || got !== want) return `the cached new ReplicaSet ${found.newRS.metadata.name} is at revision ${String(got)}, the owner at ${String(want)}`;
  const rival = found.all.find((rs) => rs !== found.newRS && (annotationRevision(rs, revisionKey) ?? -1) >= got);
  if (rival) return `ReplicaSet ${rival.metadata.name} has revision ${String(annotationRevision(rival, revisionKey))}, not below the new one's ${got}`;
  return null;
}

/**
 * ownedReplicaSets from the watch cache when the snapshot shows the owner's current numbering (see
 * above), else from the consistent LIST. The owner must come from a consistent GET.
 * For callers that only need newRS (canary, blue-green: its creation time, and its annotations for
 * the record), no confirming GET: the acceptance proves the cached newRS is the owner's current
 * ReplicaSet, its creationTimestamp never changes, and its other annotations are the controller's
 * copy of the owner's, which a consistent read could equally show as old had the controller not
 * synced yet. A failed cached LIST throws, as a failed consistent one would (the same server).
 */
export async function ownedReplicaSetsCached(
  kube: Kube,
  owner: KubeObject,
  hashLabel: string,
  revisionKey: string,
  opts?: RequestOptions,
): Promise<CachedOwnedReplicaSets> {
  const ns = owner.metadata.namespace ?? '';
  const labelSelector = selectorToString(owner.spec?.selector, owner);
  const listed = await kube.list(RESOURCES.replicasets, ns, { ...opts, labelSelector, resourceVersion: '0' });
  const found = owned(listed, owner, hashLabel);
  const why = cacheUnfit(listed, found, owner, revisionKey);
  if (!why) return { ...found, fromCache: true };
  return { ...(await ownedReplicaSets(kube, owner, hashLabel, opts)), fromCache: false, fallback: why };
}

/**
 * One consistent GET of a ReplicaSet taken from a watch-cache list: the fresh object when it is the
 * same object (uid), still controlled by the owner and selected by it, at the same revision and with
 * a semantically equal template; else why not: gone (404), changed, or not ours to read (403: RBAC
 * without `get replicasets`, as before this read existed; the caller then reads the consistent list).
 */
export async function confirmReplicaSet(
  kube: Kube,
  owner: KubeObject,
  rs: KubeObject,
  revisionKey: string,
  opts?: RequestOptions,
): Promise<{ fresh: KubeObject } | { why: string }> {
  let fresh: KubeObject;
  try {
    fresh = await kube.get(RESOURCES.replicasets, rs.metadata.namespace ?? owner.metadata.namespace ?? '', rs.metadata.name, opts);
  } catch (err) {
    if (err instanceof KubeApiError && err.isNotFound) return { why: `ReplicaSet ${rs.metadata.name} is gone since the cached list` };
    if (err instanceof KubeApiError && err.status === 403) return { why: `no permission to get ReplicaSet ${rs.metadata.name} (RBAC: apps replicasets get)` };
    throw err;
  }
  const same =
    fresh.metadata.uid === rs.metadata.uid &&
    isControlledBy(fresh, owner) &&
    selectorMatches(owner.spec?.selector, fresh.metadata.labels) &&
    annotationRevision(fresh, revisionKey) === annotationRevision(rs, revisionKey) &&
    semanticEqual(fresh.spec?.template, rs.spec?.template);
  return same ? { fresh } : { why: `ReplicaSet ${rs.metadata.name} changed since the cached list` };
}

export interface PickedHistory extends CachedOwnedReplicaSets {
  picked: PickResult<KubeObject>;
}

/**
 * An undo's history read and pick (kubectl's deploymentRevision), from the watch cache when it
 * stands (see above), else from the consistent LIST. A pick from the cache is used only if
 *  - it picked something: a refusal (no history, no such revision) is answered from the consistent list;
 *  - its revision is held by no other owned ReplicaSet, so kubectl's order among equals does not matter;
 *  - confirmReplicaSet finds it and newRS unchanged (two GETs, in parallel). The picked value is
 *    then the fresh object: the annotations a rollback copies from it are a consistent read's.
 */
export async function pickFromHistory(
  kube: Kube,
  owner: KubeObject,
  hashLabel: string,
  revisionKey: string,
  toRevision: number,
  opts?: RequestOptions,
): Promise<PickedHistory> {
  const found = await ownedReplicaSetsCached(kube, owner, hashLabel, revisionKey, opts);
  const picked = pickReplicaSet(found.all, toRevision, revisionKey);
  if (!found.fromCache) return { ...found, picked };
  const why = await (async (): Promise<string | null> => {
    if (!picked.ok) return `the cached list answers ${picked.code}`;
    const rs = picked.value;
    const rev = annotationRevision(rs, revisionKey);
    if (found.all.some((o) => o !== rs && annotationRevision(o, revisionKey) === rev)) return `revision ${String(rev)} is held by more than one ReplicaSet in the cached list`;
    const newRS = found.newRS!;
    const [confirmed, confirmedNew] = await Promise.all([
      confirmReplicaSet(kube, owner, rs, revisionKey, opts),
      rs === newRS ? null : confirmReplicaSet(kube, owner, newRS, revisionKey, opts),
    ]);
    if ('why' in confirmed) return confirmed.why;
    if (confirmedNew && 'why' in confirmedNew) return `the current one: ${confirmedNew.why}`;
    picked.value = confirmed.fresh;
    return null;
  })();
  if (!why) return { ...found, picked };
  const consistent = await ownedReplicaSets(kube, owner, hashLabel, opts);
  return { ...consistent, picked: pickReplicaSet(consistent.all, toRevision, revisionKey), fromCache: false, fallback: why };
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
