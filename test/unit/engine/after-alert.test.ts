// A revision deployed after the alert started is not its cause: the recent-deploy guard leaves it
// (src/guards/recent-deploy.ts). Found by an attacker review of the P0 "no turn at Prometheus"
// page, which tells the on-call to roll back by hand: the held rollback, re-checked a minute later
// while the trigger's window still holds the bad samples, must not undo that rollback and bring
// the bad revision back. The same holds for an sloAtRisk re-check and a scheduled rollback.
import t from 'tap';
import { PrometheusBusyError, type RangeSeries } from '../../../src/prometheus/client.js';
import { AFTER_ALERT_SLACK_MS } from '../../../src/guards/recent-deploy.js';
import { FakePrometheus, firing, testEngine } from '../../support/engine.js';

class SometimesBusy extends FakePrometheus {
  busy = true;
  override async queryRange(expr: string, startMs: number, endMs: number, stepMs: number): Promise<RangeSeries[]> {
    if (this.busy) throw new PrometheusBusyError('Prometheus at http://prometheus:9090: no turn to query it within PROMETHEUS_TIMEOUT (10000ms); never sent');
    return super.queryRange(expr, startMs, endMs, stepMs);
  }
}

t.test('a P0 rollback held for want of a turn, rolled back by hand meanwhile: its re-check confirms, and leaves the new revision', async (t) => {
  let clock = Date.now();
  const prometheus = new SometimesBusy();
  const e = testEngine({ prometheus, now: () => clock });
  const alert = firing('HighErrorRate', 'checkout'); // started 3 minutes ago
  await e.deliver(alert);
  const [held] = await e.engine.records.list({ limit: 1 });
  t.equal(held?.state, 'held');
  t.ok(held?.timeline.some((s) => s.step === 'escalated'), 'paged: roll back by hand if this cannot wait');

  // the on-call rolls back by hand: a new revision, created now; Prometheus answers again and the
  // trigger's window still holds the bad samples
  clock += 61_000;
  e.action.createdAt = clock;
  prometheus.busy = false;
  await e.engine.tick();
  const rec = (await e.engine.records.get(held!.id))!;
  t.equal(e.action.executed.length, 0, "the hand's rollback is not undone");
  t.equal(rec.state, 'blocked');
  const verdict = rec.guards.find((g) => g.result === 'block');
  t.equal(verdict?.guard, 'recent-deploy');
  t.match(verdict?.reason, /deployed 4m after the alert started .*not the alert's cause/);
  t.equal(verdict?.because, 'after_start', 'which way it blocked, kept in the record (coalescing reads it)');
});

t.test('within the clocks\' slack a revision is still the alert\'s cause; a revision from before the alert is rolled back as ever', async (t) => {
  for (const [what, afterStart, executed] of [
    ['created 30 s after the alert started (within the slack)', 30_000, 1],
    ['created just past the slack', AFTER_ALERT_SLACK_MS + 5_000, 0],
    ['created 10 minutes before the alert started', -10 * 60_000, 1],
  ] as const) {
    const e = testEngine();
    e.action.createdAt = Date.now() - 3 * 60_000 + afterStart; // firing() starts the alert 3 minutes before now
    await e.deliver(firing('HighErrorRate', 'checkout'));
    t.equal(e.action.executed.length, executed, what);
  }
});
