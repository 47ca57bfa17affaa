// A rollback taken up by a recovery (its replica died after the write) is counted in
// rollguard_rollbacks_in_progress ("executing or verifying now") while the recovery verifies it,
// as execute() counts the rollbacks it runs; back to 0 once it is closed. The record keeps the
// owner and fencing token of its execution (the dead replica's): the recovery executes nothing.
import t from 'tap';
import { MemoryStore } from '../../../src/store/memory.js';
import { metricValue } from '../../support/app.js';
import { FakeDeploymentAction, FakePrometheus, orphanRecord, testEngine } from '../../support/engine.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const GAUGE = 'rollguard_rollbacks_in_progress';

t.test('a recovery verifying is counted in progress, and no longer once closed', async (t) => {
  const store = new MemoryStore();
  const action = new FakeDeploymentAction();
  action.verifyDelayMs = { checkout: 600 };
  const prometheus = new FakePrometheus();
  prometheus.value = 0.001; // recovered
  const e = testEngine({ store, action, prometheus, env: { LOCK_TTL: '1s' } });
  const orphan = orphanRecord('rb-orphan');
  await store.putRecord(orphan);
  t.equal(await metricValue(e.metrics, GAUGE), 0, 'nothing in progress here before');
  await e.engine.tick();
  await sleep(200);
  t.equal(await metricValue(e.metrics, GAUGE), 1, 'the recovery verifying it is counted');
  await e.engine.idle();
  t.equal(await metricValue(e.metrics, GAUGE), 0, 'no longer once closed');
  const rec = (await e.engine.records.get('rb-orphan'))!;
  t.equal(rec.state, 'succeeded', `${rec.state}: ${rec.outcome?.message}`);
  t.equal(rec.owner, 'dead-replica', 'the record keeps the replica of its execution');
  t.ok(rec.timeline.some((s) => s.step === 'recovery' && s.message.includes('replica-a')), 'its timeline names the replica that took it up');
});
