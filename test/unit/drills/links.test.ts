// What a drill's watch reads of rollguard's record of its alert (src/drills/links.ts observe()).
import t from 'tap';
import { observe } from '../../../src/drills/links.js';
import type { RollbackRecord } from '../../../src/engine/record.js';
import { drillWorld } from '../../support/drills.js';
import { firingNow } from '../../support/engine.js';
import { waitFor } from '../../support/ports.js';
import { NS } from '../actions/fixtures/objects.js';

const ALERT = { alertname: 'HighErrorRate', namespace: NS, deployment: 'web', severity: 'critical' };

t.test("the drill's record, once seen, stays in view however many newer records of the target a flood of alerts adds", async (t) => {
  const s = drillWorld();
  t.teardown(() => s.drills.stop(1000));
  const d = await s.drills.start({ ref: { kind: 'Deployment', namespace: NS, name: 'web' }, fault: { kind: 'env', name: 'DEMO_ERRORS', value: 'on' }, requestedBy: 'test', deadlineMs: 20_000 });
  s.prometheus.alerts = [{ ...ALERT, alertstate: 'firing' }];
  await waitFor('alert firing seen', async () => (await s.drills.get(d.id))?.links.alert_firing, 5000, 20);
  await s.engine.handle({ id: 'ev-1', alert: firingNow('HighErrorRate', 'web', { labels: ALERT }), deliveries: 1 });
  await s.engine.idle();
  await s.drills.idle();
  const done = (await s.drills.get(d.id))!;
  t.equal(done.state, 'passed', done.result?.message ?? '');
  const ours = (await s.engine.records.get(done.rollback!))!;
  t.equal(ours.state, 'succeeded');

  // 60 newer records of the same target (alerts a sender made up, each closed without a rollback)
  for (let i = 0; i < 60; i++) {
    const flood: RollbackRecord = {
      ...ours,
      id: `rb-flood${String(i).padStart(12, '0')}`,
      createdAt: ours.createdAt + 1 + i,
      updatedAt: ours.createdAt + 1 + i,
      state: 'blocked',
      source: 'alert',
      times: { receivedAt: ours.createdAt + 1 + i },
      timeline: [],
      guards: [],
    } as RollbackRecord;
    delete (flood as Partial<RollbackRecord>).drill;
    await s.engine.records.save(flood, { first: true });
  }
  t.notOk((await s.engine.records.list({ target: done.target, limit: 50 })).some((r) => r.id === ours.id), "the drill's record is not among the target's newest 50");

  // the watch as it was before the rollout completed and the trigger cleared
  const watching = structuredClone(done);
  delete watching.links.rollout_complete;
  delete watching.links.trigger_cleared;
  const deps = { prometheus: s.prometheus, alertmanager: null, records: s.engine.records, rules: s.rules, kube: s.kube };
  const rec = await observe(deps, watching, Date.now());
  t.equal(rec?.id, ours.id, "the watch reads the drill's own record");
  t.ok(watching.links.rollout_complete, 'rollout complete seen');
  t.ok(watching.links.trigger_cleared, 'trigger cleared seen: the drill can pass');
  t.equal(watching.rollback, ours.id, 'the drill still names its own record');
});

t.test("the drill's record not seen yet is found behind a flood of newer records of the target", async (t) => {
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
  t.equal(ours.state, 'succeeded');

  // the flood lands between the rollback's record and the watch's next look: the watch has never
  // seen the record (no rollback named, none of the record's links stamped)
  for (let i = 0; i < 60; i++) {
    const flood = {
      ...ours,
      id: `rb-flood${String(i).padStart(12, '0')}`,
      createdAt: ours.createdAt + 1 + i,
      updatedAt: ours.createdAt + 1 + i,
      state: 'blocked',
      source: 'alert',
      times: { receivedAt: ours.createdAt + 1 + i },
      timeline: [],
      guards: [],
    } as RollbackRecord;
    delete (flood as Partial<RollbackRecord>).drill;
    await s.engine.records.save(flood, { first: true });
  }
  const watching = structuredClone(done);
  delete watching.rollback;
  for (const link of ['webhook_received', 'rule_matched', 'decision', 'guards', 'rollback_written', 'rollout_complete', 'trigger_cleared'] as const) delete watching.links[link];
  watching.timeline = [];
  const deps = { prometheus: s.prometheus, alertmanager: null, records: s.engine.records, rules: s.rules, kube: s.kube };
  const rec = await observe(deps, watching, Date.now());
  t.equal(rec?.id, ours.id, "the watch reads the drill's own record, not one of the flood's");
  t.equal(watching.rollback, ours.id, 'the drill names its own record');
  t.ok(watching.links.rollback_written, 'rollback written seen');
  t.ok(watching.links.trigger_cleared, 'trigger cleared seen: the drill can pass');
});
