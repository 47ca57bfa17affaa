// A ConfigMap squatting the name of a snapshot about to be taken (src/config-deps/watch.ts). The
// name is an HMAC under CONFIG_SNAPSHOTS_KEY of the content hash and the edit's time, so only
// someone holding the key can predict it (these tests compute it with the key); until 2026-12-07 it
// was a plain sha256 anyone could work out, and squatting those names blocked snapshots for good.
// The squatter is never counted as a snapshot, never makes a real one pruned, and the new content
// is snapshotted under the next name, the same one on every replica.
import { pino } from 'pino';
import t from 'tap';
import { ConfigSnapshots, SQUAT_TRIES } from '../../../src/config-deps/watch.js';
import { createHash, createHmac } from 'node:crypto';
import { contentHash, currentAt, sinceOf, snapshotName, snapshotObject, snapshotsOf } from '../../../src/config-deps/snapshots.js';
import { RESOURCES, type KubeObject, type ResourceType } from '../../../src/kube/kube.js';
import type { WatchHandle, WatchHandlers } from '../../../src/kube/watch.js';
import { FakeKube } from '../../support/fake-kube.js';
import { SNAPSHOT_KEY } from '../../support/snapshots.js';

/** FakeKube whose watch hands over the current list and then nothing (events are given by hand). */
class WatchingKube extends FakeKube {
  watch(rt: ResourceType, namespace: string | undefined, h: WatchHandlers): WatchHandle {
    for (const { rt: r, obj } of this.objects.values()) {
      if (r.plural === rt.plural && r.group === rt.group && (!namespace || obj.metadata.namespace === namespace)) h.onEvent('ADDED', { kind: rt.kind, ...structuredClone(obj) });
    }
    h.onSynced?.();
    return { stop: () => {}, synced: Promise.resolve() };
  }
}

function world() {
  const kube = new WatchingKube();
  const live0 = kube.add(RESOURCES.configmaps, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'cfg', namespace: 'shop', managedFields: [{ time: '2026-01-01T10:00:00Z' }] as never }, data: { A: '1' } });
  kube.add(RESOURCES.deployments, { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'app', namespace: 'shop' }, spec: { template: { spec: { containers: [{ name: 'app', image: 'a', envFrom: [{ configMapRef: { name: 'cfg' } }] }] } } } });
  const warnings: string[] = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(JSON.parse(line).msg) });
  const replica = () => new ConfigSnapshots({ kube, logger, namespaces: ['shop'], denyNamespaces: [], max: 1, secrets: false, key: SNAPSHOT_KEY });
  const all = () => [...kube.objects.values()].map((e) => e.obj);
  const real = () => snapshotsOf(all(), kube.peek(RESOURCES.configmaps, 'shop', 'cfg')!, 'ConfigMap', SNAPSHOT_KEY);
  // the edit (A=bad at 11:00:00) and the names its snapshot would get: since, since + 1 ms, …
  const edited: KubeObject = { ...live0, data: { A: 'bad' }, metadata: { ...live0.metadata, managedFields: [{ time: '2026-01-01T11:00:00Z' }] as never } };
  const names = (n: number) => {
    const since = sinceOf(edited, real()[0], Date.now());
    return Array.from({ length: n }, (_, i) => snapshotName('cfg', contentHash(edited, 'ConfigMap'), since + i, SNAPSHOT_KEY));
  };
  /** The names the snapshot would have had until 2026-12-07 (sha256 of hash@since: no key needed to predict them). */
  const keylessNames = (n: number) => {
    const since = sinceOf(edited, real()[0], Date.now());
    return Array.from({ length: n }, (_, i) => `cfg-snap-${createHash('sha256').update(`${contentHash(edited, 'ConfigMap')}@${since + i}`).digest('hex').slice(0, 10)}`);
  };
  const squat = (name: string) => kube.add(RESOURCES.configmaps, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: 'shop', labels: { 'rollguard.io/snapshot-of': 'cfg' } }, data: {} });
  const edit = (...ws: ConfigSnapshots[]) => {
    kube.put(RESOURCES.configmaps, edited);
    for (const w of ws) (w as unknown as { onConfig(k: string, t: string, o: KubeObject): void }).onConfig('ConfigMap', 'MODIFIED', kube.peek(RESOURCES.configmaps, 'shop', 'cfg')!);
  };
  /** `n` replicas, started and done with their first pass over the ConfigMaps */
  const started = async (n: number) => {
    const rs = Array.from({ length: n }, replica);
    for (const r of rs) await r.start();
    for (const r of rs) await r.idle();
    return rs as ConfigSnapshots[] & [ConfigSnapshots, ConfigSnapshots];
  };
  return { kube, warnings, replica, started, real, names, keylessNames, squat, edit };
}

t.test('a ConfigMap squatting the predicted snapshot name: not counted, no real snapshot pruned for it, the new content snapshotted under the next name', async (t) => {
  const s = world();
  // two replicas, both meeting the edit at once
  const [a, b] = await s.started(2);
  t.equal(s.real().length, 1, 'one real snapshot, of A=1');
  const [first, second] = s.names(2);
  s.squat(first!);
  s.edit(a, b);
  await a.idle();
  await b.idle();
  const real = s.real();
  t.equal(real.length, 1, 'one real snapshot (CONFIG_SNAPSHOTS_MAX 1)');
  t.same(real[0]!.data, { A: 'bad' }, 'of the live content');
  t.equal(real[0]!.metadata.name, second, 'under the next name (1 ms later), the same on both replicas');
  t.ok(s.kube.peek(RESOURCES.configmaps, 'shop', first!), 'the squatter is left alone');
  const labelled = [...s.kube.objects.values()].filter((e) => e.obj.metadata.labels?.['rollguard.io/snapshot-of']).map((e) => e.obj.metadata.name);
  t.same(labelled.sort(), [first, second].sort(), 'nothing else created');
  const said = s.warnings.filter((w) => w.includes(`ConfigMap shop/${first} is not a snapshot rollguard signed (CONFIG_SNAPSHOTS_KEY): not counted as a snapshot`));
  t.ok(said.length >= 1, 'the squatter is warned of');
  t.notOk(s.warnings.some((w) => w.includes(second!)), "the other replica's snapshot under the next name is taken as it is");
  await a.stop();
  await b.stop();
});

t.test('every name it would take squatted: no snapshot taken, the real one kept, said; taken once the squatters are gone', async (t) => {
  const s = world();
  const [a] = await s.started(1);
  const names = s.names(SQUAT_TRIES);
  for (const n of names) s.squat(n);
  s.edit(a);
  await a.idle();
  t.equal(s.real().length, 1, 'the real snapshot of A=1 is not pruned');
  t.same(s.real()[0]!.data, { A: '1' });
  t.match(s.warnings.at(-1), new RegExp(`^configuration snapshot not taken: the ${SQUAT_TRIES} names tried for it were held by objects that are not snapshots rollguard signed; delete them \\(${names.join(', ')}\\)`));
  // not remembered as snapshotted: the next event takes it
  for (const n of names) await s.kube.delete(RESOURCES.configmaps, 'shop', n);
  s.edit(a);
  await a.idle();
  t.same(s.real()[0]!.data, { A: 'bad' }, 'taken at the next event');
  await a.stop();
});

t.test('the names anyone could work out without the key (the scheme before 2026-12-07) squatted, all SQUAT_TRIES of them: the snapshot is taken anyway, the same one by two replicas', async (t) => {
  const s = world();
  const [a, b] = await s.started(2);
  const predicted = s.keylessNames(SQUAT_TRIES);
  const [expected] = s.names(1);
  for (const n of predicted) s.squat(n);
  s.edit(a, b);
  await a.idle();
  await b.idle();
  const real = s.real();
  t.equal(real.length, 1, 'one real snapshot (CONFIG_SNAPSHOTS_MAX 1)');
  t.same(real[0]!.data, { A: 'bad' }, 'of the live content (fails before: not taken, every name tried was squatted)');
  t.equal(real[0]!.metadata.name, expected, 'under the name the key gives, on both replicas');
  t.notOk(predicted.includes(real[0]!.metadata.name), 'not one a squatter without the key could work out');
  const labelled = [...s.kube.objects.values()].filter((e) => e.obj.metadata.labels?.['rollguard.io/snapshot-of']).map((e) => e.obj.metadata.name);
  t.equal(labelled.length, SQUAT_TRIES + 1, 'one snapshot for both replicas, beside the squatters');
  t.notOk(s.warnings.some((w) => w.includes('not counted as a snapshot')), 'no name tried was held');
  await a.stop();
  await b.stop();
});

t.test('a snapshot named under the keyless scheme (taken before 2026-12-07) is still counted and restorable: found by its label, kept by its signature', async (t) => {
  const s = world();
  const live = s.kube.peek(RESOURCES.configmaps, 'shop', 'cfg')!;
  const since = Date.parse('2026-01-01T10:00:00Z');
  const snap = snapshotObject(live, 'ConfigMap', since, SNAPSHOT_KEY);
  const oldName = `cfg-snap-${createHash('sha256').update(`${contentHash(live, 'ConfigMap')}@${since}`).digest('hex').slice(0, 10)}`;
  // signed as the watcher signed it then: the signature covers the name it has
  const old = snapshotObject(live, 'ConfigMap', since, SNAPSHOT_KEY);
  old.metadata.name = oldName;
  delete old.metadata.annotations!['rollguard.io/signature'];
  old.metadata.annotations!['rollguard.io/signature'] = createHmac('sha256', SNAPSHOT_KEY)
    .update(['ConfigMap', 'shop', 'cfg', live.metadata.uid, oldName, old.metadata.annotations!['rollguard.io/current-since'], contentHash(live, 'ConfigMap')].join('\n'))
    .digest('hex');
  t.not(snap.metadata.name, oldName, 'the new scheme names it otherwise');
  s.kube.add(RESOURCES.configmaps, old);
  const [a] = await s.started(1);
  const real = s.real();
  t.equal(real.length, 1, 'the old snapshot counts: no new one is taken for the same content');
  t.equal(real[0]!.metadata.name, oldName);
  t.equal(currentAt(real, since + 60_000)?.metadata.name, oldName, 'the one a rollback to a revision created after it restores');
  await a.stop();
});
