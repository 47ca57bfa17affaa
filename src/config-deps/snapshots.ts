// Configuration snapshots (CONFIG_SNAPSHOTS), as pure functions: what a snapshot object is called,
// how it is labelled and owned, what content it keeps, and which one a rollback restores.
//
// A snapshot is an immutable copy of a ConfigMap (or, with CONFIG_SNAPSHOTS_SECRETS, a Secret),
// in the same namespace and of the same kind, taken by the watcher (watch.ts) each time the
// object's content changes, named `<source>-snap-<10 hex>` (snapshotName: an HMAC under
// CONFIG_SNAPSHOTS_KEY, so only rollguard's replicas can tell a snapshot's name before it exists):
//   labels       rollguard.io/snapshot-of: the source's name (shortened with a hash past 63 characters)
//                rollguard.io/current-since: when this content became current, in Unix seconds
//                app.kubernetes.io/managed-by: rollguard
//   annotations  rollguard.io/snapshot-of: the source's full name
//                rollguard.io/current-since: the same time, RFC 3339 with milliseconds
//                rollguard.io/signature: HMAC-SHA256, under CONFIG_SNAPSHOTS_KEY, of the kind,
//                namespace, source name and uid, snapshot name, time and content hash
//   ownerReferences: the live object (by uid), so Kubernetes' garbage collector deletes the
//                snapshots with it; at most CONFIG_SNAPSHOTS_MAX per object, the oldest go first.
// Only an immutable snapshot whose signature holds counts (snapshotsOf): anyone who may create a
// ConfigMap could write the labels, annotations and ownerReference, but not the signature, so a
// forged "snapshot" is never restored, never ranks above a real one and never makes one pruned.
// "Became current" is the source's last change as its metadata shows it (the newest managedFields
// time, check.ts lastChange), the same clock the drift check compares with a revision's creation.
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { canonicalJson } from '../canonical-json.js';
import type { KubeObject } from '../kube/kube.js';
import { lastChange } from './check.js';
import type { ConfigKind } from './refs.js';

export const SNAPSHOT_OF = 'rollguard.io/snapshot-of';
export const CURRENT_SINCE = 'rollguard.io/current-since';
export const MANAGED_BY = 'app.kubernetes.io/managed-by';
export const SIGNATURE = 'rollguard.io/signature';

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

/** The label value naming a source: its name, or past 63 characters its first 52 and a hash. */
export function sourceLabel(name: string): string {
  return name.length <= 63 ? name : `${name.slice(0, 52).replace(/[-.]+$/, '')}-${sha256(name).slice(0, 10)}`;
}

/** The label selector of one source's snapshots. */
export function snapshotSelector(name: string): string {
  return `${SNAPSHOT_OF}=${sourceLabel(name)}`;
}

export function isSnapshot(o: KubeObject): boolean {
  return o.metadata.labels?.[SNAPSHOT_OF] !== undefined;
}

/** What a snapshot keeps and a restore writes back: a ConfigMap's data and binaryData, a Secret's type and data. */
export function contentOf(o: KubeObject, kind: ConfigKind): { data: Record<string, string>; binaryData?: Record<string, string>; type?: string } {
  const data = (o.data as Record<string, string> | undefined) ?? {};
  if (kind === 'Secret') return { data, ...(typeof o.type === 'string' ? { type: o.type } : {}) };
  const bin = o.binaryData as Record<string, string> | undefined;
  return { data, ...(bin && Object.keys(bin).length ? { binaryData: bin } : {}) };
}

/** sha256 of the content (keys in order): equal hashes, equal bytes. Kept in memory only, never written anywhere. */
export function contentHash(o: KubeObject, kind: ConfigKind): string {
  return sha256(canonicalJson(contentOf(o, kind)));
}

/**
 * `<source>-snap-<10 hex>`, the hex an HMAC under CONFIG_SNAPSHOTS_KEY of the content hash and the
 * time it became current: the same content becoming current at the same time gets the same name on
 * every replica (they share the key), and no one without the key can predict it to create an object
 * there first. Until 2026-12-07 it was sha256(hash@since), which anyone who could read the object
 * could work out; snapshots under such names stay counted (found by label, kept by signature, which
 * covers whatever name a snapshot has).
 */
export function snapshotName(source: string, hash: string, since: number, key: string): string {
  const mac = createHmac('sha256', key).update(['rollguard.io/snapshot-name', hash, String(since)].join('\n')).digest('hex');
  return `${source.slice(0, 253 - 16).replace(/[-.]+$/, '')}-snap-${mac.slice(0, 10)}`;
}

/** When a snapshot's content became current (ms), from its annotation, else its label. */
export function snapshotSince(s: KubeObject): number | undefined {
  const exact = Date.parse(s.metadata.annotations?.[CURRENT_SINCE] ?? '');
  if (Number.isFinite(exact)) return exact;
  const secs = Number(s.metadata.labels?.[CURRENT_SINCE]);
  return Number.isFinite(secs) && secs > 0 ? secs * 1000 : undefined;
}

/** A source's snapshots (of this very object: owned by its uid, signed under `key`), newest first. */
export function snapshotsOf(all: KubeObject[], source: KubeObject, kind: ConfigKind, key: string): KubeObject[] {
  const mine = all.filter(
    (s) =>
      s.metadata.annotations?.[SNAPSHOT_OF] === source.metadata.name &&
      (s.metadata.ownerReferences ?? []).some((r) => r.uid === source.metadata.uid) &&
      isSignedSnapshotOf(s, source, kind, key),
  );
  return mine.sort((a, b) => (snapshotSince(b) ?? 0) - (snapshotSince(a) ?? 0) || b.metadata.name.localeCompare(a.metadata.name));
}

/** Beyond the newest `max` (newest first, as snapshotsOf gives them): the ones to delete. */
export function toPrune(newestFirst: KubeObject[], max: number): KubeObject[] {
  return newestFirst.slice(max);
}

/** The snapshot that was current at `at` (ms): the newest that became current then or before. */
export function currentAt(newestFirst: KubeObject[], at: number): KubeObject | undefined {
  return newestFirst.find((s) => (snapshotSince(s) ?? Infinity) <= at);
}

/** The content before the live one: the newest snapshot whose content differs from `live`'s. */
export function previousOf(newestFirst: KubeObject[], live: KubeObject, kind: ConfigKind): KubeObject | undefined {
  const now = contentHash(live, kind);
  return newestFirst.find((s) => contentHash(s, kind) !== now);
}

/** When the live content became current: its last change, but after the newest snapshot (times are kept to the second). */
export function sinceOf(live: KubeObject, newest: KubeObject | undefined, now: number): number {
  const changed = lastChange(live.metadata) ?? now;
  const after = newest ? (snapshotSince(newest) ?? 0) + 1 : 0;
  return Math.max(changed, after);
}

/** What a snapshot's signature covers: where it comes from, what it is called, when and what it holds. */
function signed(kind: ConfigKind, ns: string, source: string, uid: string, name: string, since: string, hash: string): string {
  return [kind, ns, source, uid, name, since, hash].join('\n');
}

function signature(key: string, s: KubeObject, kind: ConfigKind, source: KubeObject): string {
  const since = s.metadata.annotations?.[CURRENT_SINCE] ?? '';
  return createHmac('sha256', key).update(signed(kind, source.metadata.namespace ?? '', source.metadata.name, source.metadata.uid ?? '', s.metadata.name, since, contentHash(s, kind))).digest('hex');
}

/** A snapshot rollguard took of `source` (signed under `key`, immutable), not one someone else wrote. */
export function isSignedSnapshotOf(s: KubeObject, source: KubeObject, kind: ConfigKind, key: string): boolean {
  const got = s.metadata.annotations?.[SIGNATURE];
  if (s.immutable !== true || typeof got !== 'string' || !/^[0-9a-f]{64}$/.test(got)) return false;
  return timingSafeEqual(Buffer.from(got, 'hex'), Buffer.from(signature(key, s, kind, source), 'hex'));
}

/** The snapshot object of `live`'s content, current since `since` (ms), signed under `key`. */
export function snapshotObject(live: KubeObject, kind: ConfigKind, since: number, key: string): KubeObject {
  const name = live.metadata.name;
  if (!live.metadata.uid) throw new Error(`${kind} ${live.metadata.namespace}/${name} has no uid to own its snapshot`);
  const snap: KubeObject = {
    apiVersion: 'v1',
    kind,
    metadata: {
      name: snapshotName(name, contentHash(live, kind), since, key),
      namespace: live.metadata.namespace!,
      labels: { [SNAPSHOT_OF]: sourceLabel(name), [CURRENT_SINCE]: String(Math.floor(since / 1000)), [MANAGED_BY]: 'rollguard' },
      annotations: { [SNAPSHOT_OF]: name, [CURRENT_SINCE]: new Date(since).toISOString() },
      ownerReferences: [{ apiVersion: 'v1', kind, name, uid: live.metadata.uid }],
    },
    immutable: true,
    ...contentOf(live, kind),
  };
  snap.metadata.annotations![SIGNATURE] = signature(key, snap, kind, live);
  return snap;
}

/**
 * The merge patch that makes `live`'s content the snapshot's, guarded by `live`'s resourceVersion
 * (the API server answers 409 Conflict if it changed since it was read): every key of the snapshot
 * set, every other key of `live` removed (null).
 */
export function restorePatch(live: KubeObject, snapshot: KubeObject, kind: ConfigKind): Record<string, unknown> {
  const want = contentOf(snapshot, kind);
  const have = contentOf(live, kind);
  const field = (w: Record<string, string> | undefined, h: Record<string, string> | undefined) => {
    const out: Record<string, string | null> = { ...(w ?? {}) };
    for (const k of Object.keys(h ?? {})) if (!(k in out)) out[k] = null;
    return out;
  };
  const patch: Record<string, unknown> = { metadata: { resourceVersion: live.metadata.resourceVersion }, data: field(want.data, have.data) };
  if (kind === 'ConfigMap' && (want.binaryData || have.binaryData)) patch.binaryData = field(want.binaryData, have.binaryData);
  return patch;
}
