// A trigger whose baseline is relative to the rollout start (rules/latency-baseline.yaml): after the
// rollback, the recovery check compares with the baseline the decision read, before the revision
// rolled back from. Until 2026-12-08 it passed no rollout start, its every check answered
// insufficient_data ("the rollout start time is unknown"), and every such rollback that worked
// ended unverified after RECOVERY_TIMEOUT.
import t from 'tap';
import { FakePrometheus, firing, ROLLOUT_START_RULE, testEngine } from '../../support/engine.js';

/** The baseline (instant, averaged before the rollout start) is 0.1; the trigger's range reads `value`. */
class Baseline extends FakePrometheus {
  override async query(expr: string, timeMs: number) {
    await super.query(expr, timeMs);
    return [{ labels: {}, t: timeMs, v: 0.1 }];
  }
}

const RULE = ROLLOUT_START_RULE();

t.test('a rollout_start baseline rollback that worked: the trigger is re-checked against the same baseline and the rollback succeeds', async (t) => {
  const prometheus = new Baseline();
  const e = testEngine({ ruleText: RULE, prometheus });
  prometheus.value = 0.5; // 5x the baseline
  const execute = e.action.execute.bind(e.action);
  e.action.execute = async (p, c) => {
    const r = await execute(p, c);
    prometheus.value = 0.1; // back to the baseline once rolled back
    return r;
  };
  await e.deliver(firing('LatencyAboveBaseline', 'checkout', { labels: { alertname: 'LatencyAboveBaseline', namespace: 'prod', deployment: 'checkout' } }));
  const [rec] = await e.engine.records.list({});
  t.equal(e.action.executed.length, 1, 'rolled back');
  t.equal(rec?.confirmation?.rolloutStartedAt, e.action.createdAt, "the record keeps the rollout start the decision's baseline was read before");
  t.equal(rec?.state, 'succeeded');
  t.match(rec?.outcome?.message, /the trigger cleared/);
  const baselines = prometheus.instantTimes;
  t.ok(baselines.length >= 2 && baselines.every((at) => at === e.action.createdAt - 1000), 'every baseline, the recovery check\'s included, read before the revision rolled back from');
});

t.test('one that did not work: still above twice the same baseline, failed', async (t) => {
  const prometheus = new Baseline();
  const e = testEngine({ ruleText: RULE, prometheus });
  prometheus.value = 0.5;
  await e.deliver(firing('LatencyAboveBaseline', 'checkout', { labels: { alertname: 'LatencyAboveBaseline', namespace: 'prod', deployment: 'checkout' } }));
  const [rec] = await e.engine.records.list({});
  t.equal(rec?.state, 'failed');
  t.match(rec?.outcome?.message, /the trigger still holds/);
});
