import t from 'tap';
import { confirmTrigger } from '../../../src/engine/confirm.js';
import { decide } from '../../../src/engine/decide.js';
import { LocalPrometheus } from '../../../src/prometheus/local.js';
import { PrometheusClient, PrometheusQueryError } from '../../../src/prometheus/client.js';
import { parseRuleFile } from '../../../src/rules/loader.js';

/**
 * A trigger query running past Prometheus' --query.timeout, on a real Prometheus (Debian's 2.42)
 * started with --query.timeout=50ms: it answers HTTP 503 {"status":"error","errorType":"timeout"}.
 * That is an answer about the query, not "Prometheus down": a P0 rule (onPrometheusDown: act by
 * default) holds and escalates instead of rolling back on the alert alone (before 2026-12-07 it
 * rolled back).
 */

const prom = await LocalPrometheus.start({ args: ['--query.timeout=50ms'] });
t.teardown(() => prom.stop());

// twenty subqueries of 172,800 steps each, far longer than 50 ms in all however fast the machine;
// the evaluation checks its deadline between them
const SLOW = Array.from({ length: 20 }, () => 'sum(count_over_time(vector(1)[2d:1s]))').join(' + ');
const HEAVY = `${SLOW} + 0 * count(up{namespace="{{ $labels.namespace }}"} or vector(0))`;

t.test("a query past --query.timeout: the query's error (timeout), not Prometheus down", async (t) => {
  const c = new PrometheusClient({ url: prom.url, timeoutMs: 30_000 });
  const e = await c.query(SLOW, Date.now()).catch((x: unknown) => x);
  t.type(e, PrometheusQueryError);
  t.equal((e as PrometheusQueryError).errorType, 'timeout');
  t.match((e as Error).message, /could not answer the query \(timeout, HTTP 503\): query timed out in expression evaluation: the query runs longer than Prometheus allows \(its --query\.timeout, or the timeout rollguard sends: PROMETHEUS_TIMEOUT less a margin\)/);
});

t.test('a P0 rule (onPrometheusDown: act) whose query times out: error, held and escalated, not acted on', async (t) => {
  const r = parseRuleFile(
    'it.yaml',
    `rules:
  - name: heavy
    match: { alertname: HighErrorRate }
    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
    trigger: { kind: custom, query: ${JSON.stringify(HEAVY)}, threshold: 0, op: ">=", for: 1m, step: 30s }
    priority: P0
`,
  );
  t.same(r.errors, []);
  const rule = r.rules[0]!;
  t.equal(rule.onPrometheusDown, 'act', "the P0 default: act when Prometheus is down");
  const now = Date.now();
  const c = await confirmTrigger({ rule, alert: { labels: { alertname: 'HighErrorRate', namespace: 'shop', deployment: 'api' } }, now }, { prometheus: new PrometheusClient({ url: prom.url, timeoutMs: 30_000 }) });
  t.equal(c.outcome, 'error', c.reason);
  const d = decide({ rule, alert: { status: 'firing' }, confirmation: c, now });
  t.equal(d.decision, 'hold', 'held (and escalated), not rolled back');
  t.match(d.reason, /timeout/);
});

t.test("Prometheus on its default --query.timeout (2m) and a query longer than PROMETHEUS_TIMEOUT: Prometheus gives up first (the timeout sent with the query), an error, not Prometheus down", async (t) => {
  const plain = await LocalPrometheus.start();
  t.teardown(() => plain.stop());
  // 1,000 subqueries of 86,400 steps each, well over PROMETHEUS_TIMEOUT (2.5 s) in all; Prometheus checks
  // its deadline between them (each takes a fraction of the 0.5 s margin), so it answers before 2.5 s
  const slow = Array.from({ length: 1000 }, () => 'sum(count_over_time(vector(1)[1d:1s]))').join(' + ');
  const e = await new PrometheusClient({ url: plain.url, timeoutMs: 2500 }).query(slow, Date.now()).catch((x: unknown) => x);
  t.type(e, PrometheusQueryError, String(e));
  t.equal((e as PrometheusQueryError).errorType, 'timeout');
});
