// The shipped Prometheus alert rules (deploy/prometheus/) under the real promtool, and rollguard's
// own /metrics under `promtool check metrics` (Prometheus' naming conventions) after real traffic.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { parse } from 'yaml';
import { findBinary } from '../../src/prometheus/local.js';
import { createMetrics } from '../../src/metrics.js';
import { fixture, postAlerts, testApp, WEBHOOK_TOKEN } from '../support/app.js';
import { firing, testEngine } from '../support/engine.js';
import { ROOT } from '../support/serve.js';

const RULES = join(ROOT, 'deploy/prometheus/alert-rules.yaml');
const RULE_TESTS = join(ROOT, 'deploy/prometheus/alert-rules.test.yaml');
// A missing promtool fails here with the install hint: never a skip.
const PROMTOOL = await findBinary('promtool');

function promtool(args: string[], input?: string) {
  const r = spawnSync(PROMTOOL, args, { encoding: 'utf8', input, cwd: ROOT, timeout: 60_000 });
  if (r.error) throw r.error;
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

t.test('promtool check rules accepts the shipped alert rules', async (t) => {
  const r = promtool(['check', 'rules', RULES]);
  t.equal(r.code, 0, r.out);
  t.match(r.out, /SUCCESS: 6 rules found/);
});

t.test('promtool test rules: every runbook trigger fires when it should and only then', async (t) => {
  const r = promtool(['test', 'rules', RULE_TESTS]);
  t.equal(r.code, 0, r.out);
  t.match(r.out, /SUCCESS/);
});

t.test("promtool test rules: rollguard's alerts on itself (the chart's rollguard-self.yaml) fire when they should and only then", async (t) => {
  const r = promtool(['test', 'rules', join(ROOT, 'deploy/prometheus/rollguard-self.test.yaml')]);
  t.equal(r.code, 0, r.out);
  t.match(r.out, /SUCCESS/);
});

t.test('the alerts are the ones rollguard rules match, with the labels their targets need', async (t) => {
  const doc = parse(readFileSync(RULES, 'utf8')) as { groups: { rules: { alert: string; labels: Record<string, string>; expr: string; annotations: Record<string, string> }[] }[] };
  const alerts = doc.groups.flatMap((g) => g.rules);
  const shipped = new Set<string>();
  for (const f of ['error-rate', 'latency', 'latency-baseline', 'health-check', 'memory', 'deployment-failed']) {
    const text = readFileSync(join(ROOT, 'rules', `${f}.yaml`), 'utf8');
    for (const m of text.matchAll(/alertname="([A-Za-z0-9_]+)"/g)) shipped.add(m[1]!);
  }
  t.same(alerts.map((a) => a.alert).sort(), [...shipped].sort(), 'one alert per shipped rollguard rule');
  for (const a of alerts) {
    t.equal(a.labels.rollguard, 'enabled', `${a.alert}: routed to rollguard (README route)`);
    t.match(a.labels.priority, /^P[012]$/, `${a.alert}: priority`);
    t.match(a.expr, /deployment/, `${a.alert}: has the deployment label rollguard's targets template`);
    t.ok(a.annotations.summary, `${a.alert}: summary (the notification's Impact line)`);
  }
});

t.test('a wrong expectation makes promtool test rules fail (the check is not vacuous)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rollguard-alert-rules-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const broken = readFileSync(RULE_TESTS, 'utf8')
    .replace('  - alert-rules.yaml', `  - ${RULES}`)
    .replace("summary: '10% of requests", "summary: '11% of requests");
  writeFileSync(join(dir, 'broken.test.yaml'), broken);
  const r = promtool(['test', 'rules', join(dir, 'broken.test.yaml')]);
  t.not(r.code, 0, 'promtool reports the mismatch');
  t.match(r.out, /FAILED/);
  t.match(r.out, /11% of requests to shop\/api/);
});

/** Problems promtool check metrics reports, one per line ("NAME problem"). */
function lint(text: string): string[] {
  t.ok(text.length > 0);
  const r = promtool(['check', 'metrics'], text);
  return r.out
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
}

t.test("promtool check metrics: rollguard's /metrics after webhook traffic and a whole rollback", async (t) => {
  // An engine that rolls back once (fake action, fake Prometheus falling after the undo) so that every
  // histogram and labelled counter has a sample, and the app serving the same registry.
  const e = testEngine();
  e.prometheus!.value = 0.2;
  const origExecute = e.action.execute.bind(e.action);
  e.action.execute = async (p, c) => {
    const r = await origExecute(p, c);
    e.prometheus!.value = 0.0005;
    return r;
  };
  await e.deliver(firing('HighErrorRate'));
  e.metrics.guardBlocked.inc({ guard: 'cooldown' });
  const { app } = testApp({ deps: { metrics: e.metrics } });
  t.teardown(() => app.close());
  t.equal((await postAlerts(app, fixture('alertmanager/firing-two-alerts.json'))).statusCode, 200);
  t.equal((await postAlerts(app, fixture('alertmanager/firing-two-alerts.json'))).statusCode, 200, 'resend deduplicated');
  t.equal((await postAlerts(app, '{"version":"4"', {})).statusCode, 400);
  t.equal((await postAlerts(app, fixture('alertmanager/firing-two-alerts.json'), { authorization: 'Bearer wrong' })).statusCode, 401);
  t.not(WEBHOOK_TOKEN, 'wrong');

  const res = await app.inject({ method: 'GET', url: '/metrics' });
  t.equal(res.statusCode, 200);
  const text = res.body;
  const problems = lint(text);
  t.same(problems, [], `promtool check metrics is clean:\n${problems.join('\n')}`);

  // The metrics of issue 6, with their types and label names.
  const want: Array<[string, string, string[]]> = [
    ['rollguard_time_to_detect_seconds', 'histogram', []],
    ['rollguard_time_to_decide_seconds', 'histogram', []],
    ['rollguard_time_to_rollback_seconds', 'histogram', []],
    ['rollguard_time_to_recover_seconds', 'histogram', []],
    ['rollguard_rollbacks_total', 'counter', ['rule', 'namespace', 'kind', 'outcome']],
    ['rollguard_rollbacks_in_progress', 'gauge', []],
    ['rollguard_guard_blocked_total', 'counter', ['guard']],
    ['rollguard_last_rollback_timestamp_seconds', 'gauge', []],
    ['rollguard_pending_approvals', 'gauge', []],
    ['rollguard_webhook_requests_total', 'counter', ['code']],
    ['rollguard_webhook_request_duration_seconds', 'histogram', []],
  ];
  for (const [name, type, labels] of want) {
    t.match(text, new RegExp(`^# TYPE ${name} ${type}$`, 'm'), `${name} is a ${type}`);
    const sample = new RegExp(`^${name}(?:_count|_sum|_bucket)?(\\{[^}]*\\})? `, 'm').exec(text);
    t.ok(sample, `${name} has a sample`);
    for (const l of labels) t.match(sample?.[1] ?? '', new RegExp(`\\b${l}="`), `${name} has label ${l}`);
  }
  for (const h of ['detect', 'decide', 'rollback', 'recover']) {
    t.match(text, new RegExp(`^rollguard_time_to_${h}_seconds_count 1$`, 'm'), `one observation in time_to_${h}`);
  }
  t.match(text, /^rollguard_webhook_requests_total\{code="401"\} 1$/m);
  t.match(text, /^rollguard_webhook_requests_total\{code="200"\} 2$/m);
  // The targets sit inside bucket boundaries: TTD 5m, decide 10m, TTR 15m, MTTR 30m.
  for (const [h, le] of [['detect', '300'], ['decide', '600'], ['rollback', '900'], ['recover', '1800']] as const) {
    t.match(text, new RegExp(`^rollguard_time_to_${h}_seconds_bucket\\{le="${le}"\\} `, 'm'), `time_to_${h} has a bucket at the runbook's target (${le}s)`);
  }
});

t.test("promtool check metrics: the serve registry (prom-client's process metrics included) — rollguard's own names clean", async (t) => {
  const m = createMetrics();
  const text = await m.registry.metrics();
  const problems = lint(text);
  const ours = problems.filter((p) => p.startsWith('rollguard_'));
  t.same(ours, [], `no rollguard_* metric breaks a convention:\n${ours.join('\n')}`);
  const others = problems.filter((p) => !p.startsWith('rollguard_'));
  if (others.length) t.comment(`prom-client default metrics that promtool flags (reported to the lead):\n${others.join('\n')}`);
});
