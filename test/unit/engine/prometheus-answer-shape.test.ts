// A trigger query whose answer is not float samples (a custom query over a native histogram).
// Before 2026-12-07 the client threw a TypeError reading it, which the confirmation passed on as
// not Prometheus' own error: the record stayed `deciding`, decided again on every scheduler tick,
// never escalated, and its alert's redeliveries were acked since an open record existed.
import t from 'tap';
import { PrometheusClient } from '../../../src/prometheus/client.js';
import { metricValue } from '../../support/app.js';
import { firing, testEngine } from '../../support/engine.js';

const RULE = `
rules:
  - name: latency-histogram
    match: ['alertname="SlowCheckout"']
    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
    trigger: { kind: custom, query: 'sum(rate(http_request_duration_seconds{namespace="{{ $labels.namespace }}"}[1m]))', threshold: 1, for: 2m }
    priority: P0
`;
// Prometheus' answer for native-histogram series: `histograms` where float series have `values`
const ANSWER = JSON.stringify({ status: 'success', data: { resultType: 'matrix', result: [{ metric: {}, histograms: [[1700000000, { count: '10', sum: '1', buckets: [] }]] }] } });

t.test('a native-histogram answer: the trigger could not be judged (error), held and escalated, never left deciding', async (t) => {
  const prometheus = new PrometheusClient({ url: 'http://prometheus.test:9090', fetch: (async () => new Response(ANSWER, { headers: { 'content-type': 'application/json' } })) as typeof fetch });
  const e = testEngine({ ruleText: RULE, prometheus: prometheus as never });
  await e.deliver(firing('SlowCheckout', 'checkout'));
  const [rec] = await e.engine.records.list({});
  t.equal(rec?.state, 'held', `held, not left deciding: ${rec?.timeline.map((s) => s.step).join(', ')}`);
  t.match(rec?.timeline.find((s) => s.step === 'confirmed')?.message, /^error: the matrix answer holds native-histogram samples, not float samples: query a float of them/, 'the record says why, and what to query');
  t.equal(await metricValue(e.metrics, 'rollguard_escalations_total', { reason: 'trigger_error' }), 1, 'escalated once');
  t.same(e.notifier.sent.map((n) => n.kind), ['trigger_error'], 'a human is told');
  t.equal(e.action.executed.length, 0, 'nothing rolled back');
});
