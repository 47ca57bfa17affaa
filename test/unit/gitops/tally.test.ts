// rollguard_gitops_suspended is the same on every replica: owners suspended by one replica and
// resumed by another, counted in the shared store and read on each replica's tick; it survives a
// replica's restart and forgets owners whose records have left RECORD_RETENTION.
import t from 'tap';
import { pino } from 'pino';
import { loadConfig } from '../../../src/config.js';
import type { RollbackRecord } from '../../../src/engine/record.js';
import { noteResumed, noteSuspended, refreshSuspendedGauge } from '../../../src/gitops/tally.js';
import { createMetrics } from '../../../src/metrics.js';
import { MemoryStore } from '../../../src/store/memory.js';
import { metricValue } from '../../support/app.js';

t.test('suspended on one replica, resumed on another: every replica reports the owners left suspended', async (t) => {
  let now = Date.UTC(2026, 10, 1);
  const clock = () => now;
  const store = new MemoryStore(clock);
  const config = loadConfig({ RECORD_RETENTION: '30d' });
  const replica = () => ({ store, config, now: clock, log: pino({ level: 'silent' }), metrics: createMetrics({ defaults: false }) });
  const a = replica();
  const b = replica();
  const gauge = async (r: ReturnType<typeof replica>) => {
    await refreshSuspendedGauge(r);
    return metricValue(r.metrics, 'rollguard_gitops_suspended');
  };
  const rec = (id: string) => ({ id, createdAt: now }) as RollbackRecord;
  const one = rec('rb-one');
  const two = rec('rb-two');

  t.equal(await gauge(a), 0);
  await noteSuspended(a, one, 2); // an Application and a Kustomization
  await noteSuspended(a, two, 1);
  t.equal(await gauge(a), 3, 'the suspending replica');
  t.equal(await gauge(b), 3, 'another replica, which suspended nothing');
  now += 3_600_000;
  await noteResumed(b, one, 2);
  t.equal(await gauge(b), 1, 'the resuming replica');
  t.equal(await gauge(a), 1, 'the suspending replica sees the resume');
  t.equal(await gauge(replica()), 1, 'a restarted replica starts from the store, not from 0');
  now = two.createdAt + 30 * 86_400_000 + 1;
  t.equal(await gauge(a), 0, "past RECORD_RETENTION the record is pruned and rollguard forgets its owners");
});

t.test('a resume counted without its suspension (a record from before the count) never makes the gauge negative', async (t) => {
  const store = new MemoryStore();
  const r = { store, config: loadConfig({}), now: Date.now, log: pino({ level: 'silent' }), metrics: createMetrics({ defaults: false }) };
  await noteResumed(r, { id: 'rb-old', createdAt: Date.now() } as RollbackRecord, 1);
  await refreshSuspendedGauge(r);
  t.equal(await metricValue(r.metrics, 'rollguard_gitops_suspended'), 0);
});
