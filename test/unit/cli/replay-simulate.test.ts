import t from 'tap';
import { ReplayAbort } from '../../../src/cli/replay/limits.js';
import { render } from '../../../src/cli/replay/report.js';
import { WOULD_ASK } from '../../../src/guards/approval.js';
import { RolloutHistory } from '../../../src/cli/replay/rollouts.js';
import { simulate } from '../../../src/cli/replay/simulate.js';
import { summarise } from '../../../src/cli/replay/summary.js';
import { alertFingerprint } from '../../../src/cli/replay/timeline.js';
import type { ReplayAlert, ReplayAlertResult } from '../../../src/cli/replay/types.js';
import { loadConfig } from '../../../src/config.js';
import { PrometheusUnavailableError, type InstantSample, type PrometheusApi, type RangeSeries } from '../../../src/prometheus/client.js';
import { parseRuleFile } from '../../../src/rules/loader.js';
import { RuleSet } from '../../../src/rules/ruleset.js';

const MIN = 60_000;
const T0 = Date.UTC(2024, 2, 4, 10); // a Monday, 10:00 UTC

/**
 * An in-memory Prometheus answering the two kinds of query a replay sends about a deployment D:
 * its trigger, `errors{deployment="D"}` (values from `values[D](t)`), and kube-state-metrics'
 * ReplicaSet creation (`created[D]`, absent: no series).
 */
class HistoryDouble implements PrometheusApi {
  readonly exprs: string[] = [];
  down = false;
  constructor(
    private readonly values: Record<string, (t: number) => number | undefined>,
    private readonly created: Record<string, number> = {},
  ) {}

  async query(expr: string, timeMs: number): Promise<InstantSample[]> {
    this.exprs.push(expr);
    if (expr.includes('kube_replicaset_created')) {
      const d = /owner_name="([^"]+)"/.exec(expr)![1]!;
      const c = this.created[d];
      return c === undefined || c > timeMs ? [] : [{ labels: { replicaset: `${d}-5f7d9c` }, t: timeMs, v: c / 1000 }];
    }
    if (expr.includes('kube_') || expr.startsWith('count(')) return [];
    const v = this.values[/deployment="([^"]+)"/.exec(expr)![1]!]?.(timeMs);
    return v === undefined ? [] : [{ labels: {}, t: timeMs, v }];
  }

  async queryRange(expr: string, startMs: number, endMs: number, stepMs: number): Promise<RangeSeries[]> {
    this.exprs.push(expr);
    if (this.down) throw new PrometheusUnavailableError('Prometheus at http://127.0.0.1:1 unreachable: ECONNREFUSED');
    const f = this.values[/deployment="([^"]+)"/.exec(expr)![1]!];
    const samples: RangeSeries['samples'] = [];
    for (let s = startMs; s <= endMs; s += stepMs) {
      const v = f?.(s);
      if (v !== undefined) samples.push({ t: s, v });
    }
    return samples.length ? [{ labels: {}, samples }] : [];
  }
}

const rule = (name: string, extra = '', alertname = 'Errors', target = 'target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }') => `
  - name: ${name}
    match: ['alertname="${alertname}"']
    ${target}
    trigger: { kind: custom, query: 'errors{deployment="{{ $labels.deployment }}"}', threshold: 0.05, for: 2m, step: 1m }
    priority: P0${extra}`;

function rules(...defs: string[]): RuleSet {
  const p = parseRuleFile('replay-test.yaml', `rules:${defs.join('')}\n`);
  if (p.errors.length) throw new Error(JSON.stringify(p.errors));
  return new RuleSet(p.rules);
}

function alert(deployment: string, startsAt: number, endsAt?: number, alertname = 'Errors', namespace = 'prod'): ReplayAlert {
  const labels = { alertname, namespace, deployment };
  return { fingerprint: alertFingerprint(labels), labels, startsAt, ...(endsAt !== undefined ? { endsAt } : {}), startedBeforeRange: false };
}

const high = () => 0.2;

async function replay(rs: RuleSet, alerts: ReplayAlert[], prom: PrometheusApi, settings: Record<string, string> = {}, toMs = T0 + 7 * 86_400_000): Promise<ReplayAlertResult[]> {
  return simulate(alerts, {
    rules: rs,
    prometheus: prom,
    rollouts: new RolloutHistory(prom, 25 * 3_600_000),
    config: loadConfig({}, settings),
    toMs,
    groupWaitMs: 30_000,
    inFlightMs: 5 * MIN,
  });
}

const outcomes = (rs: ReplayAlertResult[]) => rs.flatMap((r) => r.rows.map((x) => `${x.target} ${x.outcome}${x.guard ? ` ${x.guard}` : ''}`));

t.test('concurrency: a rollback counts as in flight until its flight ends (MAX_CONCURRENT_ROLLBACKS)', async (t) => {
  const prom = new HistoryDouble({ web: high, api: high, db: high }, { web: T0 - 10 * MIN, api: T0 - 10 * MIN, db: T0 - 10 * MIN });
  const out = await replay(rules(rule('errors')), [alert('web', T0), alert('api', T0 + MIN), alert('db', T0 + 5 * MIN)], prom, { MAX_CONCURRENT_ROLLBACKS: '1' });
  t.same(outcomes(out), ['Deployment/prod/web rolled_back', 'Deployment/prod/api blocked concurrency', 'Deployment/prod/db rolled_back']);
  t.match(out[1]!.rows[0]!.reason, /1 rollback\(s\) already in flight \(Deployment\/prod\/web\); MAX_CONCURRENT_ROLLBACKS is 1/);
  t.equal(out[0]!.rows[0]!.at, T0 + 30_000, 'rolled back at the first notification: start + group_wait');
});

t.test('lock: a second rule on the same target while the first rollback is in flight', async (t) => {
  const prom = new HistoryDouble({ web: high }, { web: T0 - 10 * MIN });
  const out = await replay(rules(rule('errors'), rule('errors-too')), [alert('web', T0)], prom);
  t.same(outcomes(out), ['Deployment/prod/web rolled_back', 'Deployment/prod/web blocked lock']);
});

t.test('the cluster budget, and a dry-run rule that spends nothing', async (t) => {
  const prom = new HistoryDouble({ a: high, b: high, c: high, d: high }, { a: T0, b: T0, c: T0, d: T0 });
  const rs = rules(rule('errors'), rule('dry', '\n    guards: { dryRun: true }', 'DryErrors'));
  const out = await replay(rs, [alert('d', T0, undefined, 'DryErrors'), alert('a', T0 + MIN), alert('b', T0 + 10 * MIN), alert('c', T0 + 20 * MIN), alert('d', T0 + 30 * MIN)], prom, { BUDGET_CLUSTER_PER_HOUR: '2' });
  t.same(outcomes(out), [
    'Deployment/prod/d dry_run dry-run',
    'Deployment/prod/a rolled_back',
    'Deployment/prod/b rolled_back',
    'Deployment/prod/c blocked budget',
    'Deployment/prod/d blocked budget',
  ]);
  t.match(out[3]!.rows[0]!.reason, /2 rollback\(s\) across the cluster in the last hour; BUDGET_CLUSTER_PER_HOUR is 2/);
});

t.test('scope, recent-deploy, and a rollout start that is not in Prometheus', async (t) => {
  const prom = new HistoryDouble({ old: high, nodata: high, sys: high }, { old: T0 - 3 * 86_400_000, sys: T0 });
  const out = await replay(rules(rule('errors')), [alert('old', T0), alert('nodata', T0), alert('sys', T0, undefined, 'Errors', 'kube-system')], prom, { SCOPE_DENY_TARGETS: 'Deployment/prod/nope' });
  t.same(outcomes(out), ['Deployment/prod/old blocked recent-deploy', 'Deployment/prod/nodata rolled_back', 'Deployment/kube-system/sys blocked scope']);
  t.match(out[0]!.rows[0]!.reason, /deployed 3d before the alert started, more than onlyIfDeployedWithin 1d.*current revision: ReplicaSet old-5f7d9c created/);
  t.match(out[1]!.rows[0]!.notJudged, [/recent-deploy could not be judged: no kube-state-metrics series .* for Deployment prod\/nodata/]);
  t.match(out[1]!.rows[0]!.guards.find((g) => g.guard === 'recent-deploy'), { result: 'not_judged' });
  // a baseline relative to the rollout start cannot be judged without one
  const base = rules(rule('latency', '', 'Slow').replace("threshold: 0.05, for: 2m, step: 1m }", 'threshold: 2, for: 2m, step: 1m, baseline: { relativeTo: rollout_start, window: 10m } }'));
  const nb = await replay(base, [alert('nodata', T0, undefined, 'Slow')], prom);
  t.same(outcomes(nb), ['Deployment/prod/nodata not_judged']);
  t.match(nb[0]!.rows[0]!.reason, /relative to the rollout start, which could not be read: no kube-state-metrics series/);
  // out of scope, as the engine: blocked by scope before anything (its rollout start included) is read
  const sys = await replay(base, [alert('sys', T0, undefined, 'Slow', 'kube-system')], prom);
  t.same(outcomes(sys), ['Deployment/kube-system/sys blocked scope']);
  t.match(sys[0]!.rows[0]!.reason, /^blocked by scope: namespace kube-system is denied \(SCOPE_DENY_NAMESPACES\)$/);
});

t.test('cooldown, then an ordered list of targets that stops at the one that does not roll back', async (t) => {
  const prom = new HistoryDouble({ api: high, web: high }, { api: T0, web: T0 });
  const chain = 'target:\n      - { kind: Deployment, namespace: prod, name: api }\n      - { kind: Deployment, namespace: prod, name: web }';
  const rs = rules(rule('errors'), rule('both', '', 'Both', chain).replace('{{ $labels.deployment }}"}', 'api"}'));
  const out = await replay(rs, [alert('api', T0, undefined, 'Both'), alert('api', T0 + 20 * MIN), alert('api', T0 + 25 * MIN, undefined, 'Both')], prom);
  t.same(outcomes(out), [
    'Deployment/prod/api rolled_back',
    'Deployment/prod/web rolled_back',
    'Deployment/prod/api blocked cooldown',
    'Deployment/prod/api blocked cooldown',
    'Deployment/prod/web blocked ordered-targets',
  ]);
  t.equal(out[0]!.rows[1]!.at, out[0]!.rows[0]!.at + 5 * MIN, 'the next target once the first one is verified');
});

t.test('not confirmed with the value that broke it; notify only; resolved before group_wait, a re-check or --to', async (t) => {
  const dips = (s: number) => (s >= T0 + 30_000 ? 0.012 : 0.2);
  const prom = new HistoryDouble({ flap: dips, p2: high, quick: high, slo: high, late: high }, { p2: T0, quick: T0, slo: T0, late: T0 });
  const rs = rules(
    rule('errors'),
    rule('minor', '', 'Minor').replace('priority: P0', 'priority: P2'),
    rule('slo', '\n    sloAtRisk: true\n    recheckAfter: 10m', 'Slo').replace('priority: P0', 'priority: P1'),
    rule('window', '\n    maintenanceWindow: "daily 02:00-04:00"', 'Window').replace('priority: P0', 'priority: P2'),
  );
  const out = await replay(
    rs,
    [alert('flap', T0), alert('p2', T0, undefined, 'Minor'), alert('quick', T0, T0 + 20_000), alert('slo', T0, T0 + 5 * MIN, 'Slo'), alert('late', T0, undefined, 'Window')],
    prom,
    {},
    T0 + 3 * 3_600_000,
  );
  t.same(outcomes(out), ['Deployment/prod/flap not_confirmed', 'Deployment/prod/p2 notified', 'Deployment/prod/quick resolved', 'Deployment/prod/slo resolved', 'Deployment/prod/late not_judged']);
  t.match(out[0]!.rows[0]!.confirmation, { outcome: 'not_confirmed', value: 0.012, measured: 'Value: 0.012 (limit 0.05)' });
  t.match(out[2]!.rows[0]!.reason, /before Alertmanager's first notification \(group_wait 30s\)/);
  t.match(out[3]!.rows[0]!.reason, /resolved at 2024-03-04T10:05:00.000Z, before the scheduled re-check at 2024-03-04T10:10:30.000Z/);
  t.match(out[4]!.rows[0]!.reason, /due at 2024-03-05T02:00:00.000Z, after the end of the replayed range/);
  t.same(
    out[4]!.rows[0]!.decisions.map((d) => d.decision),
    ['scheduled'],
  );

  const s = summarise(out, rs);
  t.same(s.rulesNeverFired, []);
  t.equal(s.outcomes.not_confirmed, 1);
  const md = render({ range: { from: T0, to: T0 + 3 * 3_600_000 }, prometheus: 'http://prom', ruleFiles: ['r.yaml'], settings: { groupWaitMs: 30_000, inFlightMs: 300_000, stepMs: 60_000, scope: '', budgetClusterPerHour: 5, maxConcurrentRollbacks: 2 }, notReplayed: ['pause'], summary: s, alerts: out, queries: 1, elapsedMs: 1 }, 'markdown');
  t.match(md, /\*\*0 rollback\(s\)\*\*/);
  t.match(md, /\| `slo` \| `Deployment\/prod\/slo` \| not rolled back: the alert resolved/);
});

t.test('targets that do not resolve are an error row; Prometheus failing mid-replay stops it, naming --prometheus', async (t) => {
  const prom = new HistoryDouble({ web: high }, { web: T0 });
  const bad = await replay(rules(rule('errors')), [alert('Bad_Name', T0)], prom);
  t.same(outcomes(bad), ['unresolved/errors error']);
  t.match(bad[0]!.rows[0]!.reason, /target.name: resolved to "Bad_Name"/);
  prom.down = true;
  const err = await replay(rules(rule('errors')), [alert('web', T0)], prom).catch((e: unknown) => e);
  t.ok(err instanceof ReplayAbort);
  t.equal((err as ReplayAbort).flag, '--prometheus');
  t.match((err as Error).message, /stopped answering during the replay: .*ECONNREFUSED/);
});

t.test('only read queries, and rollout starts read at the time they are needed', async (t) => {
  const prom = new HistoryDouble({ web: high }, { web: T0 - 10 * MIN });
  await replay(rules(rule('errors')), [alert('web', T0)], prom);
  t.ok(prom.exprs.some((e) => e.includes('kube_replicaset_owner{namespace="prod",owner_kind="Deployment",owner_name="web"}')));
  t.ok(prom.exprs.includes('errors{deployment="web"}'));
});

t.test('a dry-run rule that requires approval replays as a dry run that would have asked for it, as the engine records it', async (t) => {
  const prom = new HistoryDouble({ web: high }, { web: T0 });
  const rs = rules(rule('ask', '', 'Ask').replace('priority: P0', 'priority: P1\n    guards: { dryRun: true, approval: { required: true } }'));
  const out = await replay(rs, [alert('web', T0, undefined, 'Ask')], prom);
  t.same(outcomes(out), ['Deployment/prod/web dry_run dry-run']);
  t.match(out[0]!.rows[0]!.guards.find((g) => g.guard === 'approval'), { result: 'allow', reason: `${WOULD_ASK} (the rule requires approval)` });
  const text = render({ range: { from: T0, to: T0 + 3 * 3_600_000 }, prometheus: 'http://prom', ruleFiles: ['r.yaml'], settings: { groupWaitMs: 30_000, inFlightMs: 300_000, stepMs: 60_000, scope: '', budgetClusterPerHour: 5, maxConcurrentRollbacks: 2 }, notReplayed: ['pause'], summary: summarise(out, rs), alerts: out, queries: 1, elapsedMs: 1 }, 'text');
  t.match(text, /dry run at .* \(would have asked for approval to roll back; recorded only\): dry-run is on for rule ask; a dry run asks no one for approval; a rollback would wait for it \(the rule requires approval\)/);
});

t.test("an ordered list's later targets go on the first target's decision, as the engine's chain: the trigger is not confirmed again", async (t) => {
  // the service recovers once the first target is rolled back: the engine rolls the second back all the same (chain.ts)
  const recovering = (s: number) => (s <= T0 + 30_000 ? 0.2 : 0.01);
  const prom = new HistoryDouble({ api: recovering, web: recovering }, { api: T0, web: T0 });
  const chain = 'target:\n      - { kind: Deployment, namespace: prod, name: api }\n      - { kind: Deployment, namespace: prod, name: web }';
  const rs = rules(rule('both', '', 'Both', chain).replace('{{ $labels.deployment }}"}', 'api"}'));
  const out = await replay(rs, [alert('api', T0, undefined, 'Both')], prom);
  t.same(outcomes(out), ['Deployment/prod/api rolled_back', 'Deployment/prod/web rolled_back']);
  const web = out[0]!.rows[1]!;
  t.equal(web.at, out[0]!.rows[0]!.at + 5 * MIN);
  t.same(web.decisions.map((d) => d.decision), ['rollback_now']);
  t.match(web.decisions[0]!.reason, /^the ordered chain goes on \(Deployment\/prod\/api ended rolled_back\): trigger confirmed/);
  t.equal(prom.exprs.filter((e) => e === 'errors{deployment="api"}').length, 1, 'the trigger confirmed once, for the first target');

  // an SLO-at-risk rule's later target is not re-checked once more
  const slo = rules(rule('slo-both', '\n    sloAtRisk: true\n    recheckAfter: 10m', 'Both', chain).replace('{{ $labels.deployment }}"}', 'api"}').replace('priority: P0', 'priority: P1'));
  const late = (s: number) => (s <= T0 + 11 * MIN ? 0.2 : 0.01);
  const out2 = await replay(slo, [alert('api', T0, undefined, 'Both')], new HistoryDouble({ api: late }, { api: T0, web: T0 }));
  t.same(outcomes(out2), ['Deployment/prod/api rolled_back', 'Deployment/prod/web rolled_back']);
  t.equal(out2[0]!.rows[1]!.at, T0 + 30_000 + 10 * MIN + 5 * MIN);
});

t.test("an SLO-at-risk rule's maintenance window rolls back when it opens, as the scheduler decides it (past its first look)", async (t) => {
  const prom = new HistoryDouble({ web: high }, { web: T0 });
  const rs = rules(rule('slo-window', '\n    sloAtRisk: true\n    recheckAfter: 10m\n    maintenanceWindow: "daily 02:00-02:05"', 'Slo').replace('priority: P0', 'priority: P1'));
  const out = await replay(rs, [alert('web', T0, undefined, 'Slo')], prom, {}, T0 + 3 * 86_400_000);
  t.same(outcomes(out), ['Deployment/prod/web rolled_back']);
  const open = Date.UTC(2024, 2, 5, 2);
  t.equal(out[0]!.rows[0]!.at, open, 'rolled back as the window opened');
  t.same(out[0]!.rows[0]!.decisions.map((d) => d.decision), ['recheck_later', 'scheduled', 'rollback_now']);
});

t.test('alerts sent at one time are decided P0 first, as the queue serves its lanes: the budget goes to the P0 alert', async (t) => {
  const prom = new HistoryDouble({ a: high, b: high }, { a: T0, b: T0 });
  const rs = rules(rule('p0'), rule('p1', '', 'Minor').replace('priority: P0', 'priority: P1'));
  // the P1 alert's fingerprint sorts first
  const alerts = [alert('a', T0), alert('b', T0, undefined, 'Minor')].sort((x, y) => (x.fingerprint < y.fingerprint ? -1 : 1));
  t.equal(alerts[0]!.labels.alertname, 'Minor', 'the P1 alert comes first in the timeline');
  const out = await replay(rs, alerts, prom, { BUDGET_CLUSTER_PER_HOUR: '1' });
  const byRule = Object.fromEntries(out.flatMap((r) => r.rows.map((x) => [x.rule, `${x.outcome}${x.guard ? ` ${x.guard}` : ''}`])));
  t.same(byRule, { p0: 'rolled_back', p1: 'blocked budget' });
});

t.test('the text and markdown reports fold a label value to one line, with no control or bidirectional character, markdown escaped', async (t) => {
  const prom = new HistoryDouble({ web: high }, { web: T0 });
  const rs = rules(rule('errors'));
  const forged = 'x\n2024-03-04 10:00:00Z  Errors {} still firing at --to\n  errors (P0) Deployment/prod/api: ROLLED BACK\r| forged | row |\u001b[2K\u202e[Approve](https://evil.example)\u2028end';
  const a = alert('web', T0);
  a.labels = { ...a.labels, pod: forged };
  a.fingerprint = alertFingerprint(a.labels);
  const out = await replay(rs, [a], prom);
  const report = (format: 'text' | 'markdown') =>
    render({ range: { from: T0, to: T0 + 3_600_000 }, prometheus: 'http://prom', ruleFiles: ['r.yaml'], settings: { groupWaitMs: 30_000, inFlightMs: 300_000, stepMs: 60_000, scope: '', budgetClusterPerHour: 5, maxConcurrentRollbacks: 2 }, notReplayed: ['pause'], summary: summarise(out, rs), alerts: out, queries: 1, elapsedMs: 1 }, format);
  const controls = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]/;
  const text = report('text');
  t.notOk(controls.test(text), 'the text report holds no control or bidirectional character');
  t.notOk(text.split('\n').some((l) => l.startsWith('  errors (P0) Deployment/prod/api') || l.startsWith('2024-03-04 10:00:00Z  Errors {}')), 'no line forged by the label');
  t.equal(text.split('\n').filter((l) => l.includes('ROLLED BACK')).length, 2, "the alert's line (quoting the label) and its one row");
  const md = report('markdown');
  t.notOk(controls.test(md), 'the markdown report holds no control or bidirectional character');
  t.notOk(md.split('\n').some((l) => l.startsWith('| forged') || l.startsWith('2024-03-04')), 'no line forged by the label');
  t.notOk(md.includes('[Approve](https'), 'no link made by the label');
  t.equal(md.split('\n').filter((l) => l.includes('Deployment/prod/web')).length, 2, 'the rollbacks table and the one row of the alert');
});

t.test('the reports print two alerts with other label values apart: a value quoted with its quotes and line breaks escaped', async (t) => {
  const prom = new HistoryDouble({ web: high }, { web: T0 });
  const rs = rules(rule('errors'));
  const withPod = (pod: string, at: number) => {
    const a = alert('web', at);
    a.labels = { ...a.labels, pod };
    a.fingerprint = alertFingerprint(a.labels);
    return a;
  };
  // one alert's value holds a line break, the other's a space there; a third's value holds a quote
  // and what reads as another label (its namespace is staging)
  const forgedNs = withPod('x", namespace="prod', T0 + 2 * MIN);
  forgedNs.labels = { ...forgedNs.labels, namespace: 'staging' };
  forgedNs.fingerprint = alertFingerprint(forgedNs.labels);
  const alerts = [withPod('a\nb', T0), withPod('a b', T0), forgedNs];
  const out = await replay(rs, alerts, prom);
  const report = (format: 'text' | 'markdown') =>
    render({ range: { from: T0, to: T0 + 3_600_000 }, prometheus: 'http://prom', ruleFiles: ['r.yaml'], settings: { groupWaitMs: 30_000, inFlightMs: 300_000, stepMs: 60_000, scope: '', budgetClusterPerHour: 5, maxConcurrentRollbacks: 2 }, notReplayed: ['pause'], summary: summarise(out, rs), alerts: out, queries: 1, elapsedMs: 1 }, format);
  for (const format of ['text', 'markdown'] as const) {
    const lines = report(format).split('\n');
    const heads = format === 'text' ? lines.filter((l) => l.startsWith('2024-03-04 10:00:00Z  Errors')) : lines.filter((l) => l.startsWith('| 2024-03-04 10:00:00Z | Errors'));
    t.equal(heads.length, 2, `${format}: the two alerts started at 10:00`);
    t.not(heads[0], heads[1], `${format}: printed apart, though their values differ only by a line break and a space`);
    const forged = lines.find((l) => l.includes('2024-03-04 10:02:00Z'))!;
    t.notOk(/namespace="prod"/.test(forged), `${format}: a quote in a value prints no label the alert does not have`);
    t.match(forged, /namespace=\\*"staging\\*"/, `${format}: its own namespace is printed`);
  }
});
