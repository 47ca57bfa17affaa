// What a drill's watch reads of rollguard's record of its alert (src/drills/links.ts observe()).
import t, { type Test } from 'tap';
import { observe } from '../../../src/drills/links.js';
import type { RecordBook, RollbackRecord } from '../../../src/engine/record.js';
import { drillWorld } from '../../support/drills.js';
import { firingNow } from '../../support/engine.js';
import { waitFor } from '../../support/ports.js';
import { NS } from '../actions/fixtures/objects.js';

const ALERT = { alertname: 'HighErrorRate', namespace: NS, deployment: 'web', severity: 'critical' };

/** A drill that passed on its rollback: the world, the drill's record, the rollback's record. */
async function passedDrill(t: Test) {
  const s = drillWorld();
  t.teardown(() => s.drills.stop(1000));
  const d = await s.drills.start({ ref: { kind: 'Deployment', namespace: NS, name: 'web' }, fault: { kind: 'env', name: 'DEMO_ERRORS', value: 'on' }, requestedBy: 'test', deadlineMs: 20_000 });
  s.prometheus.alerts = [{ ...ALERT, alertstate: 'firing' }];
  await waitFor('alert firing seen', async () => (await s.drills.get(d.id))?.links.alert_firing, 5000, 20);
  await s.engine.handle({ id: 'ev-1', alert: firingNow('HighErrorRate', 'web', { labels: ALERT }), deliveries: 1 });
  await s.engine.idle();
  await s.drills.idle();
  const done = (await s.drills.get(d.id))!;
  const ours = (await s.engine.records.get(done.rollback!))!;
  const deps = { prometheus: s.prometheus, alertmanager: null, records: s.engine.records, rules: s.rules, kube: s.kube };
  return { s, done, ours, deps };
}

/** 60 records of the target newer than `ours` (alerts a sender made up, each closed blocked without a rollback). */
async function flood(records: RecordBook, ours: RollbackRecord): Promise<void> {
  for (let i = 0; i < 60; i++) {
    const at = ours.createdAt + 1 + i;
    const made = { ...ours, id: `rb-flood${String(i).padStart(12, '0')}`, createdAt: at, updatedAt: at, state: 'blocked', source: 'alert', times: { receivedAt: at }, timeline: [], guards: [] } as RollbackRecord;
    delete (made as Partial<RollbackRecord>).drill;
    await records.save(made, { first: true });
  }
}

t.test("the drill's record, once seen, stays in view however many newer records of the target a flood of alerts adds", async (t) => {
  const { s, done, ours, deps } = await passedDrill(t);
  t.equal(done.state, 'passed', done.result?.message ?? '');
  t.equal(ours.state, 'succeeded');

  await flood(s.engine.records, ours);
  t.notOk((await s.engine.records.list({ target: done.target, limit: 50 })).some((r) => r.id === ours.id), "the drill's record is not among the target's newest 50");

  // the watch as it was before the rollout completed and the trigger cleared
  const watching = structuredClone(done);
  delete watching.links.rollout_complete;
  delete watching.links.trigger_cleared;
  const rec = await observe(deps, watching, Date.now());
  t.equal(rec?.id, ours.id, "the watch reads the drill's own record");
  t.ok(watching.links.rollout_complete, 'rollout complete seen');
  t.ok(watching.links.trigger_cleared, 'trigger cleared seen: the drill can pass');
  t.equal(watching.rollback, ours.id, 'the drill still names its own record');
});

t.test("the drill's record not seen yet is found behind a flood of newer records of the target", async (t) => {
  const { s, done, ours, deps } = await passedDrill(t);
  t.equal(ours.state, 'succeeded');

  // the flood lands between the rollback's record and the watch's next look: the watch has never
  // seen the record (no rollback named, none of the record's links stamped)
  await flood(s.engine.records, ours);
  const watching = structuredClone(done);
  delete watching.rollback;
  for (const link of ['webhook_received', 'rule_matched', 'decision', 'guards', 'rollback_written', 'rollout_complete', 'trigger_cleared'] as const) delete watching.links[link];
  watching.timeline = [];
  const rec = await observe(deps, watching, Date.now());
  t.equal(rec?.id, ours.id, "the watch reads the drill's own record, not one of the flood's");
  t.equal(watching.rollback, ours.id, 'the drill names its own record');
  t.ok(watching.links.rollback_written, 'rollback written seen');
  t.ok(watching.links.trigger_cleared, 'trigger cleared seen: the drill can pass');
});
