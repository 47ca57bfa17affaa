// The snapshot watcher (src/config-deps/watch.ts) over the in-memory Kube with a list-only watch:
// every used ConfigMap is snapshotted once at start, and never more than SNAPSHOT_CONCURRENCY at
// once (unbounded, 550 at once kept 70 MB of RSS: bench/config-snapshots.ts). The watch itself,
// edits and the garbage collector on the real control plane: test/e2e/config-snapshots.test.ts.
import pino from 'pino';
import t from 'tap';
import { ConfigSnapshots, SNAPSHOT_CONCURRENCY } from '../../../src/config-deps/watch.js';
import { RESOURCES, type KubeObject, type RequestOptions, type ResourceType } from '../../../src/kube/kube.js';
import type { WatchHandle, WatchHandlers } from '../../../src/kube/watch.js';
import { FakeKube } from '../../support/fake-kube.js';
import { SNAPSHOT_KEY } from '../../support/snapshots.js';

/** FakeKube whose watch hands over the current list and then nothing; its snapshot LISTs take a while, counted. */
class WatchingKube extends FakeKube {
  inFlight = 0;
  maxInFlight = 0;
  watch(rt: ResourceType, namespace: string | undefined, h: WatchHandlers): WatchHandle {
    for (const { rt: r, obj } of this.objects.values()) {
      if (r.plural === rt.plural && r.group === rt.group && (!namespace || obj.metadata.namespace === namespace)) h.onEvent('ADDED', { kind: rt.kind, ...structuredClone(obj) });
    }
    h.onSynced?.();
    return { stop: () => {}, synced: Promise.resolve() };
  }
  override async list(rt: ResourceType, namespace: string, opts?: RequestOptions & { labelSelector?: string }): Promise<KubeObject[]> {
    if (!opts?.labelSelector) return super.list(rt, namespace, opts);
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      await new Promise((r) => setTimeout(r, 5));
      return await super.list(rt, namespace, opts);
    } finally {
      this.inFlight--;
    }
  }
}

function cluster(n: number): WatchingKube {
  const kube = new WatchingKube();
  for (let i = 0; i < n; i++) {
    kube.add(RESOURCES.configmaps, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `cfg-${i}`, namespace: 'shop' }, data: { N: String(i) } });
    kube.add(RESOURCES.deployments, {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: `app-${i}`, namespace: 'shop' },
      spec: { template: { spec: { containers: [{ name: 'app', image: 'app:1', envFrom: [{ configMapRef: { name: `cfg-${i}` } }] }] } } },
    });
  }
  // used by no workload: never snapshotted
  kube.add(RESOURCES.configmaps, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'unused', namespace: 'shop' }, data: {} });
  return kube;
}
const snapshotsIn = (kube: FakeKube) => [...kube.objects.values()].filter(({ obj }) => obj.metadata.labels?.['rollguard.io/snapshot-of']).map(({ obj }) => obj);

t.test('at start each used ConfigMap is snapshotted once, at most SNAPSHOT_CONCURRENCY at a time', async (t) => {
  const kube = cluster(30);
  const w = new ConfigSnapshots({ kube, logger: pino({ level: 'silent' }), namespaces: [], denyNamespaces: [], max: 10, secrets: false, key: SNAPSHOT_KEY });
  await w.start();
  await w.idle();
  t.equal(w.watched, 30);
  const snaps = snapshotsIn(kube);
  t.equal(snaps.length, 30, 'one snapshot per used ConfigMap');
  t.same(new Set(snaps.map((s) => s.metadata.annotations!['rollguard.io/snapshot-of'])).size, 30);
  t.notOk(snaps.some((s) => s.metadata.annotations!['rollguard.io/snapshot-of'] === 'unused'), 'an unused ConfigMap is left alone');
  t.equal(SNAPSHOT_CONCURRENCY, 4);
  t.equal(kube.maxInFlight, SNAPSHOT_CONCURRENCY, `never more than ${SNAPSHOT_CONCURRENCY} at once, and that many in parallel`);
  await w.stop();
});

t.test('the bound is an option', async (t) => {
  const kube = cluster(6);
  const w = new ConfigSnapshots({ kube, logger: pino({ level: 'silent' }), namespaces: ['shop'], denyNamespaces: [], max: 10, secrets: false, key: SNAPSHOT_KEY, concurrency: 1 });
  await w.start();
  await w.idle();
  t.equal(snapshotsIn(kube).length, 6);
  t.equal(kube.maxInFlight, 1, 'one at a time');
  await w.stop();
});
