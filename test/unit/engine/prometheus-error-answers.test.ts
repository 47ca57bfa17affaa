// Prometheus' own error answers that come with a 5xx. A query running past Prometheus'
// --query.timeout is answered HTTP 503 {"status":"error","errorType":"timeout"}; a storage error
// HTTP 500 "internal". Before 2026-12-07 any 5xx was "Prometheus down", and a P0 rule's default
// onPrometheusDown (act) rolled back on the alert alone: a trigger query too heavy for Prometheus
// rolled back on every alert, forged ones included. They are the trigger's error now: held and
// escalated, nothing rolled back.
import t from 'tap';
import { PrometheusClient } from '../../../src/prometheus/client.js';
import { metricValue } from '../../support/app.js';
import { firing, testEngine } from '../../support/engine.js';

const RULE = `
rules:
  - name: heavy-query
    match: ['alertname="SlowCheckout"']
    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
    trigger: { kind: custom, query: 'sum(rate(http_requests_total{namespace="{{ $labels.namespace }}"}[1m]))', threshold: 1, for: 2m }
    priority: P0
`;

for (const [errorType, status, error, says] of [
  ['timeout', 503, 'query timed out in expression evaluation', /^error: Prometheus at http:\/\/prometheus\.test:9090 could not answer the query \(timeout, HTTP 503\): query timed out in expression evaluation: the query runs longer than Prometheus allows \(its --query\.timeout, or the timeout rollguard sends: PROMETHEUS_TIMEOUT less a margin\): make it cheaper/],
  ['internal', 500, 'expanding series: unexpected EOF', /^error: Prometheus at http:\/\/prometheus\.test:9090 could not answer the query \(internal, HTTP 500\)/],
] as const) {
  t.test(`HTTP ${status} ${errorType} to a P0 rule (onPrometheusDown: act): held and escalated, not rolled back on the alert alone`, async (t) => {
    const body = JSON.stringify({ status: 'error', errorType, error });
    const prometheus = new PrometheusClient({ url: 'http://prometheus.test:9090', fetch: (async () => new Response(body, { status, headers: { 'content-type': 'application/json' } })) as typeof fetch });
    const e = testEngine({ ruleText: RULE, prometheus: prometheus as never });
    await e.deliver(firing('SlowCheckout', 'checkout'));
    const [rec] = await e.engine.records.list({});
    t.equal(e.action.executed.length, 0, 'nothing rolled back');
    t.equal(rec?.state, 'held', `held: ${rec?.timeline.map((s) => s.step).join(', ')}`);
    t.match(rec?.timeline.find((s) => s.step === 'confirmed')?.message, says, 'the record says why, and what to do');
    t.equal(await metricValue(e.metrics, 'rollguard_escalations_total', { reason: 'trigger_error' }), 1, 'escalated once');
    t.same(e.notifier.sent.map((n) => n.kind), ['trigger_error'], 'a human is told');
  });
}
