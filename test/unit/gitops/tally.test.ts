// rollguard_gitops_suspended is the same on every replica: owners suspended by one replica and
// resumed by another are what the shared store's records hold, read on each replica's tick; it
// survives a replica's restart, and an owner still suspended stays counted, and its record kept,
// past RECORD_RETENTION.
import t from 'tap';
import { loadConfig } from '../../../src/config.js';
import { heldByRecord, NO_ACTION_STATES, OPEN_STATES } from '../../../src/engine/record.js';
import type { Suspension } from '../../../src/gitops/types.js';
import { refreshSuspendedGauge } from '../../../src/gitops/tally.js';
import { createMetrics } from '../../../src/metrics.js';
import { MemoryStore } from '../../../src/store/memory.js';
import { pruneByRetention } from '../../../src/store/retention.js';
import type { StoredRecord } from '../../../src/store/store.js';
import { metricValue } from '../../support/app.js';

const suspension = (name: string): Suspension => ({ kind: 'Application', namespace: 'argocd', name, field: '/spec/syncPolicy/automated', before: {}, set: null, at: 0 });

t.test('suspended on one replica, resumed on another: every replica reports the owners left suspended, past RECORD_RETENTION too', async (t) => {
  let now = Date.UTC(2026, 10, 1);
  const clock = () => now;
  const store = new MemoryStore(clock, { openStates: OPEN_STATES, noActionStates: NO_ACTION_STATES, holding: heldByRecord });
  const config = loadConfig({ RECORD_RETENTION: '30d', RECORD_RETENTION_NO_ACTION: '3d' });
  const replica = () => ({ store, metrics: createMetrics({ defaults: false }) });
  const a = replica();
  const b = replica();
  const gauge = async (r: ReturnType<typeof replica>) => {
    await refreshSuspendedGauge(r);
    return metricValue(r.metrics, 'rollguard_gitops_suspended');
  };
  const rec = (id: string, state: string, owners: string[]): StoredRecord => ({
    id,
    target: `Deployment/prod/${id}`,
    state,
    createdAt: now,
    gitops: { policy: 'suspend', owners: [], suspended: owners.map(suspension) },
  });
  const one = rec('one', 'succeeded', ['shop', 'shop-config']); // two owners
  const two = rec('two', 'refused', ['api']); // suspended, then a deploy landed: nothing written
  t.equal(await gauge(a), 0);
  await store.putRecord(one);
  await store.putRecord(two);
  t.equal(await gauge(a), 3, 'the suspending replica');
  t.equal(await gauge(b), 3, 'another replica, which suspended nothing');
  now += 3_600_000;
  await store.putRecord({ ...one, gitops: { ...(one['gitops'] as object), resumed: { at: now, by: 'ops', restored: [] } } });
  t.equal(await gauge(b), 1, 'the resuming replica');
  t.equal(await gauge(a), 1, 'the suspending replica sees the resume');
  t.equal(await gauge(replica()), 1, 'a restarted replica starts from the store, not from 0');
  now = two.createdAt + 31 * 86_400_000;
  t.equal(await pruneByRetention(store, config, now), 1, 'past both retentions only the resumed record is pruned');
  t.ok(await store.getRecord('two'), 'the refused record that still holds an owner is kept: it alone says what to put back');
  t.equal(await store.getRecord('one'), null);
  t.equal(await gauge(a), 1, 'and its owner is still counted');
});
