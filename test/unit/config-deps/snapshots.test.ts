// Configuration snapshots as pure functions: names, labels, ownership, content, and which one a
// rollback restores (src/config-deps/snapshots.ts).
import t from 'tap';
import type { KubeObject } from '../../../src/kube/kube.js';
import { applyPatch } from '../../../src/kube/patch.js';
import { SNAPSHOT_KEY as KEY } from '../../support/snapshots.js';
import {
  contentHash,
  currentAt,
  isSignedSnapshotOf,
  previousOf,
  restorePatch,
  sinceOf,
  snapshotObject,
  snapshotSelector,
  snapshotSince,
  snapshotsOf,
  sourceLabel,
  toPrune,
} from '../../../src/config-deps/snapshots.js';

const cm = (data: Record<string, string>, at = '2026-11-20T14:02:00Z', extra: Partial<KubeObject> = {}): KubeObject => ({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  metadata: { name: 'app-settings', namespace: 'shop', uid: 'uid-1', resourceVersion: '42', creationTimestamp: '2026-11-01T00:00:00Z', managedFields: [{ time: at }] },
  data,
  ...extra,
});

t.test('a snapshot: immutable, same namespace and kind, labelled with its source and time, owned by the live object', async (t) => {
  const live = cm({ TIMEOUT: '5s' });
  const since = Date.parse('2026-11-20T14:02:00Z');
  const s = snapshotObject(live, 'ConfigMap', since, KEY);
  t.equal(s.immutable, true);
  t.equal(s.kind, 'ConfigMap');
  t.equal(s.metadata.namespace, 'shop');
  t.match(s.metadata.name, /^app-settings-snap-[0-9a-f]{10}$/);
  t.same(s.metadata.labels, { 'rollguard.io/snapshot-of': 'app-settings', 'rollguard.io/current-since': String(since / 1000), 'app.kubernetes.io/managed-by': 'rollguard' });
  t.match(s.metadata.annotations, { 'rollguard.io/snapshot-of': 'app-settings', 'rollguard.io/current-since': '2026-11-20T14:02:00.000Z', 'rollguard.io/signature': /^[0-9a-f]{64}$/ });
  t.same(Object.keys(s.metadata.annotations!).sort(), ['rollguard.io/current-since', 'rollguard.io/signature', 'rollguard.io/snapshot-of']);
  t.same(s.metadata.ownerReferences, [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'app-settings', uid: 'uid-1' }]);
  t.same(s.data, { TIMEOUT: '5s' });
  t.equal(snapshotSince(s), since);
  t.equal(snapshotObject(live, 'ConfigMap', since, KEY).metadata.name, s.metadata.name, 'the same content at the same time: the same name on every replica');
  t.not(snapshotObject(live, 'ConfigMap', since + 1000, KEY).metadata.name, s.metadata.name, 'content current again later: a new snapshot');
  t.not(snapshotObject(live, 'ConfigMap', since, `${KEY}-other`).metadata.name, s.metadata.name, 'the name depends on CONFIG_SNAPSHOTS_KEY: no one without it can tell it beforehand (fails before: a plain hash of content and time)');
  t.equal(snapshotSelector('app-settings'), 'rollguard.io/snapshot-of=app-settings');
});

t.test('a long source name: a label value within 63 characters, the full name in the annotation', async (t) => {
  const long = 'a'.repeat(80);
  t.equal(sourceLabel(long).length, 63);
  t.not(sourceLabel(long), sourceLabel(`${'a'.repeat(79)}b`));
  const s = snapshotObject({ ...cm({}), metadata: { ...cm({}).metadata, name: long } }, 'ConfigMap', 0, KEY);
  t.equal(s.metadata.annotations?.['rollguard.io/snapshot-of'], long);
  t.ok(s.metadata.name.length <= 253);
});

t.test('a Secret snapshot is a Secret keeping its type and data', async (t) => {
  const sec: KubeObject = { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'db', namespace: 'shop', uid: 'u' }, type: 'Opaque', data: { P: 'cA==' } };
  const s = snapshotObject(sec, 'Secret', 1000, KEY);
  t.equal(s.kind, 'Secret');
  t.equal(s.type, 'Opaque');
  t.same(s.data, { P: 'cA==' });
});

t.test('content hash: key order does not matter, values and binaryData do', async (t) => {
  t.equal(contentHash(cm({ A: '1', B: '2' }), 'ConfigMap'), contentHash(cm({ B: '2', A: '1' }), 'ConfigMap'));
  t.not(contentHash(cm({ A: '1' }), 'ConfigMap'), contentHash(cm({ A: '2' }), 'ConfigMap'));
  t.not(contentHash(cm({ A: '1' }), 'ConfigMap'), contentHash(cm({ A: '1' }, undefined, { binaryData: { B: 'AA==' } }), 'ConfigMap'));
  t.equal(contentHash(cm({ A: '1' }, '2026-11-20T14:02:00Z'), 'ConfigMap'), contentHash(cm({ A: '1' }, '2026-11-21T00:00:00Z'), 'ConfigMap'), 'metadata is not content');
});

t.test('selection: newest first, only this object (uid), bounded at N, the one current at a time, the previous one', async (t) => {
  const live = cm({ V: '3' }, '2026-11-20T14:03:00Z');
  const at = (m: number) => Date.parse(`2026-11-20T14:0${m}:00Z`);
  const s1 = snapshotObject(cm({ V: '1' }), 'ConfigMap', at(1), KEY);
  const s2 = snapshotObject(cm({ V: '2' }), 'ConfigMap', at(2), KEY);
  const s3 = snapshotObject(live, 'ConfigMap', at(3), KEY);
  const stranger = snapshotObject({ ...cm({ V: '9' }), metadata: { ...cm({}).metadata, uid: 'uid-old' } }, 'ConfigMap', at(4), KEY);
  const list = snapshotsOf([s2, stranger, s1, s3], live, 'ConfigMap', KEY);
  t.same(list.map((s) => s.data), [{ V: '3' }, { V: '2' }, { V: '1' }], 'newest first; a same-named object of another uid is not this one');
  t.same(toPrune(list, 2).map((s) => s.data), [{ V: '1' }], 'beyond 2: the oldest');
  t.same(toPrune(list, 10), []);
  t.same(currentAt(list, at(2) + 30_000)?.data, { V: '2' }, 'a revision created at 14:02:30: the content current since 14:02');
  t.same(currentAt(list, at(2))?.data, { V: '2' }, 'became current in the same second: current');
  t.equal(currentAt(list, at(1) - 1), undefined, 'before the first snapshot: none');
  t.same(previousOf(list, live, 'ConfigMap')?.data, { V: '2' }, 'the content before the live one');
  t.equal(sinceOf(live, undefined, 0), at(3), 'became current at its last change');
  t.equal(sinceOf(cm({ V: '4' }, '2026-11-20T14:03:00Z'), s3, 0), at(3) + 1, 'never before the newest snapshot');
});

t.test('the restore patch: resourceVersion precondition, every key of the snapshot, the others removed', async (t) => {
  const live = cm({ TIMEOUT: '50ms', NEW: 'x' }, undefined, { binaryData: { B: 'AA==' } });
  const snap = snapshotObject(cm({ TIMEOUT: '5s' }), 'ConfigMap', 0, KEY);
  const patch = restorePatch(live, snap, 'ConfigMap');
  t.same(patch, { metadata: { resourceVersion: '42' }, data: { TIMEOUT: '5s', NEW: null }, binaryData: { B: null } });
  const after = applyPatch(live, patch, 'merge') as KubeObject;
  t.same(after.data, { TIMEOUT: '5s' });
  t.equal(contentHash(after, 'ConfigMap'), contentHash(snap, 'ConfigMap'), 'byte for byte the snapshot');
});

t.test('only a snapshot rollguard signed counts: forged labels, annotations and ownerReference are not enough', async (t) => {
  const live = cm({ V: '3' }, '2026-11-20T14:03:00Z');
  const real = snapshotObject(cm({ V: '2' }), 'ConfigMap', Date.parse('2026-11-20T14:02:00Z'), KEY);
  t.ok(isSignedSnapshotOf(real, live, 'ConfigMap', KEY));
  // someone who may create ConfigMaps copies a real snapshot's metadata (uid included), with their content and a later time
  const forged = structuredClone(real);
  forged.data = { V: 'attacker' };
  t.notOk(isSignedSnapshotOf(forged, live, 'ConfigMap', KEY), 'other content: the signature does not hold');
  const later = structuredClone(real);
  later.metadata.annotations!['rollguard.io/current-since'] = '2030-01-01T00:00:00.000Z';
  later.metadata.labels!['rollguard.io/current-since'] = '1893456000';
  t.notOk(isSignedSnapshotOf(later, live, 'ConfigMap', KEY), 'a later time: the signature does not hold');
  const renamed = structuredClone(real);
  renamed.metadata.name = 'app-settings-snap-0000000000';
  t.notOk(isSignedSnapshotOf(renamed, live, 'ConfigMap', KEY), 'another name');
  const otherKey = snapshotObject(cm({ V: 'x' }), 'ConfigMap', Date.parse('2026-11-20T14:04:00Z'), 'another-key-0123456789abcdef-0123456789');
  t.notOk(isSignedSnapshotOf(otherKey, live, 'ConfigMap', KEY), 'signed under another key');
  const mutable = structuredClone(real);
  delete mutable.immutable;
  t.notOk(isSignedSnapshotOf(mutable, live, 'ConfigMap', KEY), 'not immutable: could be edited after signing');
  const unsigned = structuredClone(real);
  delete unsigned.metadata.annotations!['rollguard.io/signature'];
  t.notOk(isSignedSnapshotOf(unsigned, live, 'ConfigMap', KEY));
  t.notOk(isSignedSnapshotOf({ ...real, metadata: { ...real.metadata, annotations: { ...real.metadata.annotations, 'rollguard.io/signature': 'zz' } } }, live, 'ConfigMap', KEY), 'a malformed signature');
  t.same(snapshotsOf([forged, later, renamed, otherKey, mutable, unsigned, real], live, 'ConfigMap', KEY).map((s) => s.data), [{ V: '2' }], 'only the real one');
  t.same(snapshotsOf([real], { ...live, metadata: { ...live.metadata, uid: 'uid-new' } }, 'ConfigMap', KEY), [], 'a new object of the same name: not its snapshot');
});
