import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { replayCommand } from '../../src/cli/replay/command.js';
import { RolloutHistory } from '../../src/cli/replay/rollouts.js';
import { PrometheusClient } from '../../src/prometheus/client.js';
import { startBackfilled } from '../support/backfill.js';
import { at, FROM, RULES_YAML, SCENARIO, TO } from '../support/backfill-scenario.js';

/**
 * `rollguard replay` against Debian's prometheus serving 30 days of synthetic history
 * (test/support/backfill-scenario.ts, backfilled with promtool): the report must name exactly the
 * rollbacks the rules imply, and the guard that blocks each other one.
 *
 * The expectation below is written by hand from the scenario's incidents and the rules
 * (RULES_YAML), not taken from the tool's output. How each row follows:
 * - The alerting rules see the last two minutes of counters: a bad phase starting at minute a makes
 *   the 5 % rule true from a (half the window bad is still ~6 % errors), so HighErrorRate (for 2m)
 *   fires at a+2m, ElevatedErrorRate (> 2 %, for 10m) at a+10m; for inventory's 3 % the first
 *   half-bad window is under 2 %, so it fires at a+11m. rollguard looks 30s later (Alertmanager's
 *   group_wait).
 * - error-rate (P0): rolled back at once unless a guard blocks. search's second burst lasts two
 *   minutes, so the rule's 2m window at 14:26:30 already has a good minute (0.5 %): not confirmed.
 *   Its third burst (14:38:30) is inside the 30m cooldown of the 14:12:30 rollback; its fourth
 *   (14:52:30) is past the cooldown but inside the hour of the per-target budget (1 per hour).
 *   coredns is in kube-system, which the default SCOPE_DENY_NAMESPACES denies. reports has no
 *   kube-state-metrics series, so the recent deploy cannot be judged: rolled back, saying so.
 * - elevated-errors (P2, window daily 02:00-04:00): scheduled into the next window; checkout's and
 *   reports' alerts resolve before it, inventory's (until 06:00 the next morning) is still firing
 *   at 02:00 and is rolled back then; coredns' fires at 03:10, inside the window: scope blocks it.
 * - latency-p99 (P1): catalog's p99 creeps for days; its last deploy (03-08 09:00) is days older
 *   than the alert: recent-deploy blocks it. The histogram's p99, interpolated in the 1-2.5 s
 *   bucket, passes 2 s when the distribution's own p99 is about 1.45 s, about 29 h into the creep
 *   (03-12 around 05:00; the noise on the tail moves it by minutes).
 * - latency-baseline (P1, SLO at risk, approval required): payments' p95 triples from 15:03, a
 *   5m alert fires around 15:08; confirmed against the p95 before the 15:00 rollout (read from
 *   kube_replicaset_created), re-checked 10 min later, still true: it waits for approval.
 * - DiskAlmostFull matches no rule; deployment-failed never fires.
 */

interface Expected {
  alertname: string;
  deployment?: string;
  /** alert start, or a [from, to] range where the start is only known approximately */
  startsAt: number | [number, number];
  rule?: string;
  outcome?: string;
  guard?: string;
  /** when: exact, or relative to the alert's start */
  at?: number;
  afterStartMs?: number;
}

const EXPECTED: Expected[] = [
  { alertname: 'HighErrorRate', deployment: 'checkout', startsAt: at(4, '10:07'), rule: 'error-rate', outcome: 'rolled_back', at: at(4, '10:07', 30) },
  { alertname: 'ElevatedErrorRate', deployment: 'checkout', startsAt: at(4, '10:15'), rule: 'elevated-errors', outcome: 'resolved', at: at(5, '02:00') },
  { alertname: 'HighErrorRate', deployment: 'search', startsAt: at(6, '14:12'), rule: 'error-rate', outcome: 'rolled_back', at: at(6, '14:12', 30) },
  { alertname: 'HighErrorRate', deployment: 'search', startsAt: at(6, '14:26'), rule: 'error-rate', outcome: 'not_confirmed', at: at(6, '14:26', 30) },
  { alertname: 'HighErrorRate', deployment: 'search', startsAt: at(6, '14:38'), rule: 'error-rate', outcome: 'blocked', guard: 'cooldown', at: at(6, '14:38', 30) },
  { alertname: 'HighErrorRate', deployment: 'search', startsAt: at(6, '14:52'), rule: 'error-rate', outcome: 'blocked', guard: 'budget', at: at(6, '14:52', 30) },
  { alertname: 'HighLatencyP99', deployment: 'catalog', startsAt: [at(12, '04:00'), at(12, '07:00')], rule: 'latency-p99', outcome: 'blocked', guard: 'recent-deploy', afterStartMs: 30_000 },
  { alertname: 'LatencyAboveBaseline', deployment: 'payments', startsAt: [at(18, '15:05'), at(18, '15:12')], rule: 'latency-baseline', outcome: 'approval', guard: 'approval', afterStartMs: 10 * 60_000 + 30_000 },
  { alertname: 'ElevatedErrorRate', deployment: 'inventory', startsAt: at(20, '15:16'), rule: 'elevated-errors', outcome: 'rolled_back', at: at(21, '02:00') },
  { alertname: 'HighErrorRate', deployment: 'coredns', startsAt: at(23, '03:02'), rule: 'error-rate', outcome: 'blocked', guard: 'scope', at: at(23, '03:02', 30) },
  { alertname: 'ElevatedErrorRate', deployment: 'coredns', startsAt: at(23, '03:10'), rule: 'elevated-errors', outcome: 'blocked', guard: 'scope', at: at(23, '03:10', 30) },
  { alertname: 'DiskAlmostFull', startsAt: at(26, '08:00') },
  { alertname: 'HighErrorRate', deployment: 'reports', startsAt: at(28, '13:02'), rule: 'error-rate', outcome: 'rolled_back', at: at(28, '13:02', 30) },
  { alertname: 'ElevatedErrorRate', deployment: 'reports', startsAt: at(28, '13:10'), rule: 'elevated-errors', outcome: 'resolved', at: at(29, '02:00') },
];

const backfilled = await startBackfilled(SCENARIO);
t.teardown(() => backfilled.stop());
const dir = await mkdtemp(join(tmpdir(), 'rollguard-replay-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));
const rulesFile = join(dir, 'rules.yaml');
await writeFile(rulesFile, RULES_YAML);

async function replay(...extra: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await replayCommand(
    ['--prometheus', backfilled.prometheus.url, '--from', new Date(FROM).toISOString(), '--to', new Date(TO).toISOString(), '--rules', rulesFile, ...extra],
    { out: (s) => out.push(s), err: (s) => err.push(s) },
  );
  return { code, out: out.join('\n'), err: err.join('\n') };
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type J = any;

function checkAgainstTable(t: Test, report: J): void {
  const alerts: J[] = report.alerts;
  t.equal(alerts.length, EXPECTED.length, `one entry per alert: ${alerts.map((a) => `${a.alertname}/${a.labels.deployment ?? ''}@${a.startsAt}`).join(', ')}`);
  for (const [i, e] of EXPECTED.entries()) {
    const a = alerts[i];
    const name = `${e.alertname} ${e.deployment ?? ''} ${Array.isArray(e.startsAt) ? '' : new Date(e.startsAt).toISOString()}`;
    t.equal(a?.alertname, e.alertname, name);
    if (!a) continue;
    t.equal(a.labels.deployment, e.deployment, name);
    const start = Date.parse(a.startsAt);
    if (Array.isArray(e.startsAt)) t.ok(start >= e.startsAt[0] && start <= e.startsAt[1], `${name} started at ${a.startsAt}, within the expected range`);
    else t.equal(start, e.startsAt, `${name} start`);
    if (e.rule === undefined) {
      t.same(a.rows, [], `${name}: no rule matches`);
      continue;
    }
    t.equal(a.rows.length, 1, `${name}: one rule, one target`);
    const r = a.rows[0];
    t.match(r, { rule: e.rule, target: `Deployment/${e.deployment === 'coredns' ? 'kube-system' : 'prod'}/${e.deployment}`, outcome: e.outcome }, name);
    t.equal(r.guard, e.guard, `${name}: the guard`);
    if (e.at !== undefined) t.equal(r.at, e.at, `${name}: when`);
    if (e.afterStartMs !== undefined) t.equal(r.afterStartMs, e.afterStartMs, `${name}: after the alert's start`);
  }
}

t.test('the report names the rollbacks the rules imply and the guard that blocks each other one', async (t) => {
  const r = await replay('--format', 'json');
  t.equal(r.code, 0, r.err);
  const report = JSON.parse(r.out);
  checkAgainstTable(t, report);

  const s = report.summary;
  t.equal(s.rollbacks, 4);
  t.same(s.rollbacksByTarget, { 'Deployment/prod/checkout': 1, 'Deployment/prod/search': 1, 'Deployment/prod/inventory': 1, 'Deployment/prod/reports': 1 });
  t.same(s.rollbacksByRule, { 'error-rate': 3, 'elevated-errors': 1 });
  t.same(s.blockedByGuard, { cooldown: 1, budget: 1, 'recent-deploy': 1, scope: 2 });
  t.same(s.unmatched, { DiskAlmostFull: 1 });
  t.same(s.rulesNeverFired, ['deployment-failed']);
  t.equal(s.outcomes.approval, 1);
  t.equal(s.notJudged, 1);

  const byStart = (d: string, iso: string) => report.alerts.find((a: J) => a.labels.deployment === d && a.startsAt === iso).rows[0];
  // why, in the row: the measured value that did not hold, the guards' own reasons, what could not be judged
  t.match(byStart('search', '2024-03-06T14:26:00.000Z').confirmation.measured, /^Error rate: 0\.[3-7]\d% \(limit 5\.00%\)$/);
  t.match(byStart('search', '2024-03-06T14:38:00.000Z').reason, /rolled back by rule error-rate at 2024-03-06T14:12:30.000Z; cooldown 30m until 2024-03-06T14:42:30.000Z/);
  t.match(byStart('reports', '2024-03-28T13:02:00.000Z').notJudged, [/recent-deploy could not be judged: no kube-state-metrics series/]);
  t.match(byStart('checkout', '2024-03-04T10:07:00.000Z').reason, /current revision: ReplicaSet checkout-[a-z0-9]{9} created 2024-03-04T10:00:00.000Z/);
  const catalog = report.alerts.find((a: J) => a.labels.deployment === 'catalog').rows[0];
  t.match(catalog.reason, /deployed 3d\d+h\d+m before the alert started, more than onlyIfDeployedWithin 1d.*ReplicaSet catalog-[a-z0-9]{9} created 2024-03-08T09:00:00.000Z/);
  const payments = report.alerts.find((a: J) => a.labels.deployment === 'payments').rows[0];
  t.same(payments.decisions.map((d: J) => d.decision), ['recheck_later', 'rollback_now']);
  t.ok(payments.confirmation.reason.includes('baseline'), 'confirmed against the pre-rollout baseline');
  t.match(r.err, /read ALERTS 4 of 4 chunk\(s\)/, 'progress on stderr');
});

t.test("a finer step reads more chunks within Prometheus' point limit and finds the same", async (t) => {
  const r = await replay('--format', 'json', '--step', '15s', '--quiet');
  t.equal(r.code, 0, r.err);
  checkAgainstTable(t, JSON.parse(r.out));
  t.equal(r.err, '', '--quiet: no progress');
});

t.test('markdown for a pull request, --out, and --fail-on', async (t) => {
  const file = join(dir, 'report.md');
  const r = await replay('--format', 'markdown', '--out', file, '--fail-on', 'rollbacks>4', '--fail-on', 'target:Deployment/kube-system/*');
  t.equal(r.code, 0, `nothing to fail on: ${r.err}`);
  t.equal(r.out, '');
  const md = await readFile(file, 'utf8');
  t.match(md, /^### rollguard replay: 2024-03-01 00:00:00Z to 2024-03-31 00:00:00Z/);
  t.match(md, /\*\*4 rollback\(s\)\*\*, 5 blocked by a guard, 1 waiting for approval, 1 not confirmed, over 14 alert\(s\)/);
  t.match(md, /\| `Deployment\/prod\/inventory` \| 1 \|/);
  t.match(md, /\| rules that never fired \| `deployment-failed` \|/);
  t.match(md, /\| `error-rate` \| `Deployment\/prod\/search` \| blocked by budget at 2024-03-06 14:52:30Z/);

  const f = await replay('--format', 'markdown', '--quiet', '--fail-on', 'rollbacks>3', '--fail-on', 'target:Deployment/prod/check*', '--fail-on', 'rule:latency-p99');
  t.equal(f.code, 1);
  t.match(f.err, /--fail-on rollbacks>3: 4 rollbacks/);
  t.match(f.err, /--fail-on target:Deployment\/prod\/check\*: Deployment\/prod\/checkout rolled back at 2024-03-04T10:07:30.000Z by rule error-rate/);
  t.notMatch(f.err, /rule:latency-p99/, 'latency-p99 rolled nothing back');
});

t.test('the configured settings are the guards\' settings', async (t) => {
  // checkout denied by SCOPE_DENY_TARGETS: its rollback becomes a scope block; everything else as before
  const r = await replay('--format', 'json', '--quiet', '--scope-deny-targets', 'Deployment/prod/checkout');
  t.equal(r.code, 0, r.err);
  const s = JSON.parse(r.out).summary;
  t.equal(s.rollbacks, 3);
  t.same(s.blockedByGuard, { cooldown: 1, budget: 1, 'recent-deploy': 1, scope: 3 });
});

t.test('the rollout start from kube-state-metrics: the newest ReplicaSet, else the last generation change, else unknown', async (t) => {
  const history = new RolloutHistory(new PrometheusClient({ url: backfilled.prometheus.url }), 25 * 3_600_000);
  const start = (name: string, when: number) => history.startOf({ kind: 'Deployment', namespace: name === 'coredns' ? 'kube-system' : 'prod', name }, when);
  t.match(await start('checkout', at(4, '10:30')), { at: at(4, '10:00'), source: /^ReplicaSet checkout-[a-z0-9]{9} created$/ });
  t.match(await start('checkout', at(4, '11:30')), { at: at(4, '10:50') }, 'the fix deploy is the current revision after it');
  // frontend has only its generation: deployed 03-12 11:00, found to within two minutes
  const f = await start('frontend', at(12, '15:00'));
  t.match(f, { source: 'kube_deployment_status_observed_generation changed' });
  t.ok(f.at! >= at(12, '11:00') && f.at! <= at(12, '11:02'), `generation changed at ${new Date(f.at!).toISOString()}`);
  // no change within the lookback: at least that old
  t.match(await start('frontend', at(11, '15:00')), { atLeast: true, at: at(11, '15:00') - 25 * 3_600_000 });
  t.match(await start('reports', at(28, '13:00')), { unknown: /no kube-state-metrics series/ });
});

t.test('bounded: a query budget too small for the range stops with exit 3, naming --max-queries', async (t) => {
  const r = await replay('--max-queries', '5', '--quiet');
  t.equal(r.code, 3);
  t.match(r.err, /replay: --max-queries: the query budget is spent: 5 queries/);
  t.equal(r.out, '');
});
