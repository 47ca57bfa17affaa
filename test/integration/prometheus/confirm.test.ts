import t from 'tap';
import { confirmTrigger } from '../../../src/engine/confirm.js';
import { decide } from '../../../src/engine/decide.js';
import { createMetrics } from '../../../src/metrics.js';
import { PrometheusClient } from '../../../src/prometheus/client.js';
import { parseRuleFile } from '../../../src/rules/loader.js';
import type { Rule } from '../../../src/rules/schema.js';
import { samples, startPrometheus } from '../../support/prometheus.js';

/**
 * Trigger confirmation against a real Prometheus (Debian's prometheus 2.42) holding known series,
 * backfilled with promtool. Everything is evaluated at the backfilled times (T0 + ...), not "now".
 */

const T0 = Date.UTC(2026, 9, 1, 12, 0); // 2026-10-01 12:00 UTC
const S = 15_000;
const MIN = 60_000;

function rule(trigger: string, priority = 'P0', extra = ''): Rule {
  const r = parseRuleFile(
    'it.yaml',
    `rules:
  - name: it-${priority.toLowerCase()}
    match: { alertname: HighErrorRate }
    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
    trigger:
${trigger.replace(/^/gm, '      ')}
    priority: ${priority}
${extra}`,
  );
  if (r.errors.length) throw new Error(JSON.stringify(r.errors));
  return r.rules[0]!;
}

const errorRate = (extra = '') =>
  rule(`kind: error_rate
selector:
  namespace: "{{ $labels.namespace }}"
  pod: { regex: "{{ $labels.deployment }}-[4-9bcdf]{1,10}-[bcdfghjklmnpqrstvwxz2456789]{5}" }
threshold: 0.05
for: 2m
step: 15s${extra}`);

// 40 minutes of counters, one sample per 15s.
// ns "held": 10% errors all along.  ns "dip": 10% errors except 20m-21m30s (none).
// ns "late": traffic only for the first 10 minutes.  ns "base": latency histogram, slow after 20m.
const N = 160;
const counter = (perStep: (i: number) => number) => {
  let acc = 0;
  return samples(T0, N, S, (i) => (acc += i === 0 ? 0 : perStep(i)));
};
const pod = (ns: string) => ({ namespace: ns, pod: 'api-7c9d8-x2x4z' });

const series = [
  { metric: 'http_requests_total', labels: { ...pod('held'), code: '200' }, samples: counter(() => 90) },
  { metric: 'http_requests_total', labels: { ...pod('held'), code: '500' }, samples: counter(() => 10) },
  { metric: 'http_requests_total', labels: { ...pod('dip'), code: '200' }, samples: counter(() => 90) },
  { metric: 'http_requests_total', labels: { ...pod('dip'), code: '500' }, samples: counter((i) => (i >= 80 && i <= 86 ? 0 : 10)) },
  { metric: 'http_requests_total', labels: { ...pod('late'), code: '500' }, samples: samples(T0, 40, S, (i) => i * 10) },
  // latency: before 20m (i < 80) 100% under 0.25s; after, 60% between 0.5s and 1s
  ...(
    [
      ['0.25', (i: number) => (i < 80 ? 100 : 40)],
      ['0.5', (i: number) => (i < 80 ? 100 : 40)],
      ['1', () => 100],
      ['+Inf', () => 100],
    ] as const
  ).map(([le, f]) => ({ metric: 'http_request_duration_seconds_bucket', labels: { ...pod('base'), le }, samples: counter(f) })),
];

t.test('confirmation against a real Prometheus', async (t) => {
  const prom = await startPrometheus(t, series);
  const metrics = createMetrics({ defaults: false });
  const client = new PrometheusClient({ url: prom.url, metrics });
  const deps = { prometheus: client, metrics };
  const alert = (ns: string) => ({ labels: { alertname: 'HighErrorRate', namespace: ns, deployment: 'api' } });

  t.test('held through the window -> confirmed, and P0 acts', async (t) => {
    const r = errorRate();
    const c = await confirmTrigger({ rule: r, alert: alert('held'), now: T0 + 25 * MIN }, deps);
    t.equal(c.outcome, 'confirmed', c.reason);
    t.equal(c.judgement?.expectedSamples, 9);
    t.equal(c.judgement?.series?.samples, 9);
    t.ok(Math.abs((c.value ?? 0) - 0.1) < 1e-9, `value ${c.value} is the 10% error ratio`);
    t.equal(c.window.startMs, T0 + 23 * MIN);
    t.equal(decide({ rule: r, alert: { status: 'firing' }, confirmation: c, now: T0 + 25 * MIN }).decision, 'rollback_now');
  });

  t.test('dipped inside the window -> not confirmed, nothing rolled back', async (t) => {
    const r = errorRate();
    const c = await confirmTrigger({ rule: r, alert: alert('dip'), now: T0 + 22 * MIN }, deps);
    t.equal(c.outcome, 'not_confirmed', c.reason);
    t.ok((c.judgement?.series?.held ?? 0) > 0, 'it held at some samples');
    t.ok((c.judgement?.series?.held ?? 0) < (c.judgement?.series?.samples ?? 0), 'and not at others');
    t.equal(decide({ rule: r, alert: { status: 'firing' }, confirmation: c, now: T0 + 22 * MIN }).decision, 'no_action');
    const later = await confirmTrigger({ rule: r, alert: alert('dip'), now: T0 + 30 * MIN }, deps);
    t.equal(later.outcome, 'confirmed', 'once the window is past the dip, it holds again');
  });

  t.test('a stale alert whose series stopped -> insufficient data', async (t) => {
    const c = await confirmTrigger({ rule: errorRate(), alert: alert('late'), now: T0 + 30 * MIN }, deps);
    t.equal(c.outcome, 'insufficient_data', c.reason);
  });

  t.test('a window before any data -> insufficient data', async (t) => {
    const c = await confirmTrigger({ rule: errorRate(), alert: alert('held'), now: T0 - 60 * MIN }, deps);
    t.equal(c.outcome, 'insufficient_data');
  });

  t.test('baseline relative to the rollout start: p95 > 2x the pre-rollout p95', async (t) => {
    const r = rule(`kind: latency
quantile: 0.95
selector: { namespace: "{{ $labels.namespace }}" }
threshold: 2
baseline: { relativeTo: rollout_start, window: 10m }
for: 5m
step: 30s`, 'P1');
    const a = alert('base');
    const c = await confirmTrigger({ rule: r, alert: a, now: T0 + 30 * MIN, rolloutStartedAt: T0 + 20 * MIN }, deps);
    t.equal(c.outcome, 'confirmed', c.reason);
    t.ok(c.baseline?.value !== undefined && c.baseline.value > 0.2 && c.baseline.value < 0.25, `baseline p95 ${c.baseline?.value} ~0.24s`);
    t.ok((c.value ?? 0) > 0.9, `current p95 ${c.value} ~0.96s`);
    t.equal(c.baseline?.atMs, T0 + 20 * MIN - 1000, 'evaluated just before the rollout began');
    t.match(c.baseline?.query ?? '', /^avg_over_time\(\(histogram_quantile\(0\.95, .*\)\[10m:30s\]\)$/);

    const sameAsBefore = await confirmTrigger({ rule: r, alert: a, now: T0 + 15 * MIN, rolloutStartedAt: T0 + 12 * MIN }, deps);
    t.equal(sameAsBefore.outcome, 'not_confirmed', 'before the slowdown, p95 equals its baseline');

    const fiveX = rule(`kind: latency
quantile: 0.95
selector: { namespace: "{{ $labels.namespace }}" }
threshold: 5
baseline: { relativeTo: rollout_start, window: 10m }
for: 5m`, 'P0');
    t.equal((await confirmTrigger({ rule: fiveX, alert: a, now: T0 + 30 * MIN, rolloutStartedAt: T0 + 20 * MIN }, deps)).outcome, 'not_confirmed', '4x is not 5x baseline');

    const unknownStart = await confirmTrigger({ rule: r, alert: a, now: T0 + 30 * MIN }, deps);
    t.equal(unknownStart.outcome, 'insufficient_data');
    t.match(unknownStart.reason, /rollout start time is unknown/);
  });

  t.test('baseline relative to an offset', async (t) => {
    const r = rule(`kind: latency
quantile: 0.95
selector: { namespace: "{{ $labels.namespace }}" }
threshold: 2
baseline: { relativeTo: offset, offset: 15m, window: 5m }
for: 5m`, 'P1');
    const c = await confirmTrigger({ rule: r, alert: alert('base'), now: T0 + 32 * MIN }, deps);
    t.equal(c.outcome, 'confirmed', c.reason);
    t.equal(c.baseline?.atMs, T0 + 17 * MIN);
  });

  t.test('a query Prometheus rejects -> error: held and escalated, never acted on', async (t) => {
    const r = rule(`kind: custom
query: 'sum(rate(http_requests_total{namespace="{{ $labels.namespace }}"}[1m])) by ('
threshold: 0
for: 1m`);
    const c = await confirmTrigger({ rule: r, alert: alert('held'), now: T0 + 25 * MIN }, deps);
    t.equal(c.outcome, 'error');
    t.match(c.reason, /bad_data/);
    const d = decide({ rule: r, alert: { status: 'firing' }, confirmation: c, now: T0 });
    t.equal(d.decision, 'hold', 'a P0 rule (onPrometheusDown: act) holds on an error answer');
    t.equal(d.escalate, true);
  });

  t.test('outcomes are counted by rule and outcome', async (t) => {
    const text = await metrics.registry.metrics();
    t.match(text, /rollguard_trigger_confirmations_total\{rule="it-p0",outcome="confirmed"\} \d+/);
    t.match(text, /rollguard_trigger_confirmations_total\{rule="it-p0",outcome="not_confirmed"\} \d+/);
    t.match(text, /rollguard_prometheus_queries_total\{outcome="ok"\} \d+/);
  });

  t.test('Prometheus down: P0 acts on the alert, P1 holds, notify notifies; the outcome is recorded', async (t) => {
    await prom.stop();
    const downMetrics = createMetrics({ defaults: false });
    const d = { prometheus: new PrometheusClient({ url: prom.url, timeoutMs: 1000, metrics: downMetrics }), metrics: downMetrics };
    const now = T0 + 25 * MIN;
    const p0 = errorRate();
    const c0 = await confirmTrigger({ rule: p0, alert: alert('held'), now }, d);
    t.equal(c0.outcome, 'prometheus_down');
    t.equal(c0.onPrometheusDown, 'act');
    t.match(c0.reason, /unreachable: ECONNREFUSED.*onPrometheusDown: act/);
    t.equal(decide({ rule: p0, alert: { status: 'firing' }, confirmation: c0, now }).decision, 'rollback_now');

    const p1 = rule('kind: error_rate\nthreshold: 0.05\nfor: 2m', 'P1');
    const c1 = await confirmTrigger({ rule: p1, alert: alert('held'), now }, d);
    t.equal(c1.onPrometheusDown, 'hold');
    t.equal(decide({ rule: p1, alert: { status: 'firing' }, confirmation: c1, now }).decision, 'hold');

    const n = rule('kind: error_rate\nthreshold: 0.05\nfor: 2m', 'P1', '    onPrometheusDown: notify');
    const cn = await confirmTrigger({ rule: n, alert: alert('held'), now }, d);
    t.equal(decide({ rule: n, alert: { status: 'firing' }, confirmation: cn, now }).decision, 'notify_only');

    const text = await downMetrics.registry.metrics();
    t.match(text, /rollguard_trigger_confirmations_total\{rule="it-p0",outcome="prometheus_down"\} 1/);
    t.match(text, /rollguard_prometheus_queries_total\{outcome="unreachable"\} 3/);
  });
});
