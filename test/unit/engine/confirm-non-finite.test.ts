// Samples of +Inf or -Inf (x/0: container_memory_working_set_bytes / a limits.memory of 0) count
// as missing, as NaN does, in the trigger's window and in its baseline. Before 2026-12-07 only NaN
// did: +Inf confirmed the memory rule (above 95% of "no limit"), and a baseline of +Inf confirmed
// every value of a '<' trigger.
import t from 'tap';
import { confirmTrigger } from '../../../src/engine/confirm.js';
import type { InstantSample, PrometheusApi, RangeSeries } from '../../../src/prometheus/client.js';
import { loadRules, parseRuleFile } from '../../../src/rules/loader.js';

const NOW = 1_800_000_000_000;
const range = (v: number, n = 13, stepMs = 15_000): RangeSeries[] => [{ labels: {}, samples: Array.from({ length: n }, (_, k) => ({ t: NOW - (n - 1 - k) * stepMs, v })) }];
const prometheus = (r: RangeSeries[], baseline: InstantSample[] = []): PrometheusApi => ({
  query: async () => baseline,
  queryRange: async () => r,
});

t.test('the shipped memory rule over +Inf (a limit of 0): insufficient data, not confirmed', async (t) => {
  const { rules, errors } = await loadRules(['rules/memory.yaml']);
  t.same(errors, []);
  const c = await confirmTrigger({ rule: rules[0]!, alert: { labels: { namespace: 'shop', deployment: 'api' } }, now: NOW }, { prometheus: prometheus(range(Infinity)) });
  t.equal(c.outcome, 'insufficient_data', c.reason);
  const healthy = await confirmTrigger({ rule: rules[0]!, alert: { labels: { namespace: 'shop', deployment: 'api' } }, now: NOW }, { prometheus: prometheus(range(0.99)) });
  t.equal(healthy.outcome, 'confirmed', 'a real 99% still confirms');
});

t.test("a baseline of +Inf (or -Inf) is no baseline: a '<' trigger is not confirmed by every value", async (t) => {
  const r = parseRuleFile(
    'b.yaml',
    `rules:
  - name: throughput-drop
    match: ['alertname="ThroughputDrop"']
    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
    trigger:
      kind: custom
      query: 'sum(rate(http_requests_total{namespace="{{ $labels.namespace }}"}[1m]))'
      op: "<"
      threshold: 0.5
      for: 3m
      step: 15s
      baseline: { relativeTo: offset, offset: 1d, window: 10m }
    priority: P1
`,
  );
  t.same(r.errors, []);
  const rule = r.rules[0]!;
  for (const b of [Infinity, -Infinity]) {
    const c = await confirmTrigger({ rule, alert: { labels: { namespace: 'shop', deployment: 'api' } }, now: NOW }, { prometheus: prometheus(range(100), [{ labels: {}, t: NOW, v: b }]) });
    t.equal(c.outcome, 'insufficient_data', `baseline ${b}: ${c.reason}`);
    t.match(c.reason, /no baseline: the query had no data \(or only NaN or ±Inf\)/);
  }
  const real = await confirmTrigger({ rule, alert: { labels: { namespace: 'shop', deployment: 'api' } }, now: NOW }, { prometheus: prometheus(range(100), [{ labels: {}, t: NOW, v: 1000 }]) });
  t.equal(real.outcome, 'confirmed', 'a tenth of a real baseline still confirms');
});
