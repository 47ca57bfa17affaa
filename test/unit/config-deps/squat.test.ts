// A ConfigMap squatting the name of a snapshot about to be taken (src/config-deps/watch.ts): the
// name follows from the content hash and the edit's time, so whoever may create ConfigMaps can
// predict it. The squatter is never counted as a snapshot, never makes a real one pruned, and the
// new content is snapshotted under the next name, the same one on every replica.
import { pino } from 'pino';
import t from 'tap';
import { ConfigSnapshots, SQUAT_TRIES } from '../../../src/config-deps/watch.js';
import { contentHash, sinceOf, snapshotName, snapshotsOf } from '../../../src/config-deps/snapshots.js';
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
    return Array.from({ length: n }, (_, i) => snapshotName('cfg', contentHash(edited, 'ConfigMap'), since + i));
  };
  const squat = (name: string) => kube.add(RESOURCES.configmaps, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: 'shop', labels: { 'rollguard.io/snapshot-of': 'cfg' } }, data: {} });
  const edit = (...ws: ConfigSnapshots[]) => {
    kube.put(RESOURCES.configmaps, edited);
    for (const w of ws) (w as unknown as { onConfig(k: string, t: string, o: KubeObject): void }).onConfig('ConfigMap', 'MODIFIED', kube.peek(RESOURCES.configmaps, 'shop', 'cfg')!);
  };
  return { kube, warnings, replica, real, names, squat, edit };
}

t.test('a ConfigMap squatting the predicted snapshot name: not counted, no real snapshot pruned for it, the new content snapshotted under the next name', async (t) => {
  const s = world();
  // two replicas, both meeting the edit at once
  const a = s.replica();
  const b = s.replica();
  await a.start();
  await b.start();
  await a.idle();
  await b.idle();
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
  const a = s.replica();
  await a.start();
  await a.idle();
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
