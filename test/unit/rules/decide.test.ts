import t from 'tap';
import type { Confirmation } from '../../../src/engine/confirm.js';
import { decide, recordDecision, type DecideInput } from '../../../src/engine/decide.js';
import { createMetrics } from '../../../src/metrics.js';
import { inMaintenanceWindow, nextMaintenanceWindow, parseMaintenanceWindow } from '../../../src/rules/maintenance.js';
import { parseRuleFile } from '../../../src/rules/loader.js';
import type { Rule } from '../../../src/rules/schema.js';

// 2026-11-23 is a Monday
const MON_10 = Date.UTC(2026, 10, 23, 10, 0);

function rule(extra = '', priority = 'P0'): Rule {
  const r = parseRuleFile(
    'r.yaml',
    `rules:\n  - name: r\n    match: { alertname: A }\n    target: { kind: Deployment, namespace: a, name: b }\n    trigger: { kind: deployment_failed, for: 5m }\n    priority: ${priority}\n${extra}`,
  );
  if (r.errors.length) throw new Error(JSON.stringify(r.errors));
  return r.rules[0]!;
}

const confirmed: Pick<Confirmation, 'outcome' | 'reason'> = { outcome: 'confirmed', reason: 'held at all 9 of 9 samples' };
const run = (r: Rule, c: DecideInput['confirmation'] = confirmed, more: Partial<DecideInput> = {}) =>
  decide({ rule: r, alert: { status: 'firing' }, confirmation: c, now: MON_10, ...more });

t.test('P0 rolls back now', async (t) => {
  const d = run(rule());
  t.equal(d.decision, 'rollback_now');
  t.match(d.reason, /P0: roll back now/);
  t.equal(d.requiresApproval, undefined);
});

t.test('P1 rolls back now unless its guards ask for approval', async (t) => {
  t.same(run(rule('', 'P1')).decision, 'rollback_now');
  const a = run(rule('    guards: { approval: { required: true } }', 'P1'));
  t.equal(a.decision, 'rollback_now');
  t.equal(a.requiresApproval, true);
  t.match(a.reason, /once approved/);
});

t.test('P2 only notifies (hotfix forward)', async (t) => {
  const d = run(rule('', 'P2'));
  t.equal(d.decision, 'notify_only');
  t.match(d.reason, /hotfix forward/);
});

t.test('action notify notifies whatever the priority', async (t) => {
  t.equal(run(rule('    action: notify', 'P0')).decision, 'notify_only');
});

t.test('SLO at risk: re-check after the delay (default 10m), then roll back if still true', async (t) => {
  const r = rule('    sloAtRisk: true', 'P1');
  const first = run(r);
  t.equal(first.decision, 'recheck_later');
  t.equal(first.at, MON_10 + 10 * 60_000);
  const again = run(r, confirmed, { recheck: true });
  t.equal(again.decision, 'rollback_now');
  t.match(again.reason, /still true on re-check/);
  const gone = run(r, { outcome: 'not_confirmed', reason: 'dipped' }, { recheck: true });
  t.equal(gone.decision, 'no_action', 'recovered by the re-check: nothing rolled back');
  t.equal(run(rule('    sloAtRisk: true\n    recheckAfter: 3m', 'P1')).at, MON_10 + 3 * 60_000);
});

t.test('a non-critical rule with a maintenance window is scheduled into it', async (t) => {
  const r = rule('    maintenanceWindow: "Sat,Sun 02:00-06:00"', 'P1');
  const d = run(r);
  t.equal(d.decision, 'scheduled');
  t.equal(d.at, Date.UTC(2026, 10, 28, 2, 0), 'next Saturday 02:00 UTC');
  t.same(d.window, { startMs: Date.UTC(2026, 10, 28, 2, 0), endMs: Date.UTC(2026, 10, 28, 6, 0) });
  const inside = run(r, confirmed, { now: Date.UTC(2026, 10, 29, 3, 0) });
  t.equal(inside.decision, 'rollback_now', 'inside the window: now');
  t.equal(run(rule('    maintenanceWindow: "daily 22:00-02:00"', 'P2')).decision, 'scheduled', 'P2 with a window schedules a rollback');
});

t.test('not confirmed, no data, errors: no action', async (t) => {
  for (const outcome of ['not_confirmed', 'insufficient_data'] as const) {
    const d = run(rule(), { outcome, reason: 'x' });
    t.equal(d.decision, 'no_action', outcome);
    t.notOk(d.escalate);
  }
  t.equal(decide({ rule: rule(), alert: { status: 'resolved' }, confirmation: confirmed, now: MON_10 }).decision, 'no_action');
});

t.test('an error (a 4xx from Prometheus or its proxy, a bad query): hold and escalate, whatever the priority and onPrometheusDown', async (t) => {
  for (const [priority, policy] of [['P0', 'act'], ['P0', undefined], ['P1', 'notify'], ['P2', 'hold']] as const) {
    const d = run(rule('', priority), { outcome: 'error', reason: 'Prometheus at http://***@prom answered HTTP 401', ...(policy ? { onPrometheusDown: policy } : {}) });
    t.equal(d.decision, 'hold', `${priority} ${policy ?? ''}`);
    t.equal(d.escalate, true);
    t.equal(d.at, MON_10 + 60_000);
    t.match(d.reason, /never acting unconfirmed.*HTTP 401/);
  }
});

t.test('no turn at Prometheus (rollguard asked faster than it answers): hold whatever onPrometheusDown says; a P0 rule escalates, P1 and P2 wait quietly', async (t) => {
  for (const [priority, policy, escalates] of [['P0', 'act', true], ['P0', 'notify', true], ['P1', 'act', false], ['P2', 'notify', false]] as const) {
    const d = run(rule('', priority), { outcome: 'prometheus_down', busy: true, reason: 'no turn to query it within PROMETHEUS_TIMEOUT', onPrometheusDown: policy });
    t.equal(d.decision, 'hold', `${priority} ${policy}: held`);
    t.equal(d.at, MON_10 + 60_000);
    t.equal(d.escalate === true, escalates, `${priority}: escalated ${escalates}`);
    t.match(d.reason, /^no turn at Prometheus \(PROMETHEUS_MAX_CONCURRENT\), holding whatever onPrometheusDown says/);
    t.notMatch(d.reason, /unreachable/);
  }
});

t.test('Prometheus down: the rule\'s onPrometheusDown decides', async (t) => {
  const down = (policy: 'act' | 'hold' | 'notify') => ({ outcome: 'prometheus_down' as const, reason: 'ECONNREFUSED', onPrometheusDown: policy });
  t.equal(run(rule(), down('act')).decision, 'rollback_now');
  const h = run(rule('', 'P1'), down('hold'));
  t.equal(h.decision, 'hold');
  t.equal(h.at, MON_10 + 60_000);
  t.equal(run(rule(), down('notify')).decision, 'notify_only');
  t.equal(run(rule('', 'P2'), down('act')).decision, 'notify_only', 'act then follows the tree: P2 notifies');
  t.equal(run(rule(), { outcome: 'prometheus_down', reason: 'x' }).decision, 'rollback_now', 'default for P0: act');
  t.equal(run(rule('', 'P1'), { outcome: 'prometheus_down', reason: 'x' }).decision, 'hold', 'default below P0: hold');
});

t.test('recordDecision counts by rule and decision', async (t) => {
  const m = createMetrics({ defaults: false });
  recordDecision(m, { name: 'r' }, { decision: 'rollback_now', reason: '' });
  const text = await m.registry.metrics();
  t.match(text, /rollguard_decisions_total\{rule="r",decision="rollback_now"\} 1/);
});

t.test('maintenance windows', async (t) => {
  const w = parseMaintenanceWindow('Mon-Fri 22:00-02:00');
  t.same([...w.days].sort(), [1, 2, 3, 4, 5]);
  t.equal(w.durationMinutes, 240);
  t.ok(inMaintenanceWindow(w, Date.UTC(2026, 10, 24, 1, 0)), 'Tue 01:00 is inside Monday\'s 22:00-02:00');
  t.notOk(inMaintenanceWindow(w, Date.UTC(2026, 10, 28, 23, 0)), 'Saturday 23:00 is not');
  t.ok(inMaintenanceWindow(w, Date.UTC(2026, 10, 29, 1, 0)) === false, 'Sunday 01:00: the Saturday window does not exist');
  t.same(nextMaintenanceWindow(w, Date.UTC(2026, 10, 28, 12, 0)).startMs, Date.UTC(2026, 10, 30, 22, 0), 'from Saturday: Monday 22:00');
  t.equal(parseMaintenanceWindow('daily 00:00-00:00').durationMinutes, 1440);
  t.equal(parseMaintenanceWindow('fri-mon 01:00-02:00').days.size, 4, 'ranges wrap over the week end');
  t.throws(() => parseMaintenanceWindow('weekends 02:00-04:00'), /unknown day "weekends"/);
  t.throws(() => parseMaintenanceWindow('Sat 2am-4am'), /expected a window like/);
});
