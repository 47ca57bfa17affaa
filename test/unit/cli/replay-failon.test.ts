import t from 'tap';
import { failing, FailOnError, parseFailOn } from '../../../src/cli/replay/failon.js';
import { LimitedPrometheus, ReplayAbort } from '../../../src/cli/replay/limits.js';
import { summarise } from '../../../src/cli/replay/summary.js';
import type { ReplayAlertResult, ReplayRow } from '../../../src/cli/replay/types.js';
import { RuleSet } from '../../../src/rules/ruleset.js';
import type { PrometheusApi } from '../../../src/prometheus/client.js';

const row = (target: string, outcome: ReplayRow['outcome'], rule = 'error-rate', guard?: string): ReplayRow => ({
  rule,
  priority: 'P0',
  target,
  outcome,
  at: Date.UTC(2024, 2, 4, 10, 7, 30),
  reason: '',
  decisions: [],
  guards: [],
  notJudged: [],
  ...(guard ? { guard } : {}),
});
const alert = (name: string, rows: ReplayRow[]): ReplayAlertResult => ({
  alert: { fingerprint: '0', labels: { alertname: name }, startsAt: Date.UTC(2024, 2, 4, 10, 7), startedBeforeRange: false },
  rows,
});

const results = [
  alert('HighErrorRate', [row('Deployment/prod/checkout', 'rolled_back')]),
  alert('HighErrorRate', [row('Deployment/staging/web', 'rolled_back', 'staging-errors')]),
  alert('HighErrorRate', [row('Deployment/prod/checkout', 'blocked', 'error-rate', 'cooldown')]),
  alert('DiskAlmostFull', []),
];
const summary = summarise(results, new RuleSet([]));

t.test('counts: > and >=', async (t) => {
  t.same(failing([parseFailOn('rollbacks>2')], summary, results), []);
  t.match(failing([parseFailOn('rollbacks>1')], summary, results), ['rollbacks>1: 2 rollbacks']);
  t.match(failing([parseFailOn('rollbacks>=2')], summary, results), ['rollbacks>=2: 2 rollbacks']);
  t.match(failing([parseFailOn('blocked>0'), parseFailOn('unmatched >= 1'), parseFailOn('approvals>0')], summary, results), ['blocked>0: 1 blocked', 'unmatched >= 1: 1 unmatched']);
});

t.test('target globs and rules: any rollback of a match', async (t) => {
  const hit = failing([parseFailOn('target:Deployment/prod/*')], summary, results);
  t.equal(hit.length, 1);
  t.match(hit[0], /Deployment\/prod\/checkout rolled back at 2024-03-04T10:07:30.000Z by rule error-rate/);
  t.notMatch(hit[0], /staging/);
  t.same(failing([parseFailOn('target:StatefulSet/*/*'), parseFailOn('target:Deployment/prod/check')], summary, results), [], 'no match, and * stays within a segment');
  t.equal(failing([parseFailOn('rule:staging-errors')], summary, results).length, 1);
  t.same(failing([parseFailOn('rule:nope')], summary, results), []);
});

t.test('a bad condition names the flag and what is expected', async (t) => {
  t.throws(() => parseFailOn('rollbacks'), FailOnError);
  t.throws(() => parseFailOn('rolbacks>1'), /--fail-on "rolbacks>1": unknown count "rolbacks" \(expected one of rollbacks/);
  t.throws(() => parseFailOn('target:prod/checkout'), /target:Kind\/namespace\/name/);
  t.throws(() => parseFailOn('rollbacks<1'), /expected rollbacks>N/);
});

t.test('the query budget and the time limit stop the replay, naming the flag', async (t) => {
  const inner: PrometheusApi = { query: async () => [], queryRange: async () => [] };
  const p = new LimitedPrometheus(inner, { maxQueries: 2, timeoutMs: 60_000 });
  await p.query('up', 0);
  await p.queryRange('up', 0, 1, 1);
  await t.rejects(p.query('up', 0), { name: 'ReplayAbort', flag: '--max-queries' });
  t.equal(p.queries, 2);

  const hang: PrometheusApi = { query: () => new Promise(() => {}), queryRange: () => new Promise(() => {}) };
  const slow = new LimitedPrometheus(hang, { maxQueries: 10, timeoutMs: 1000 });
  const err = await slow.query('up', 0).catch((e: unknown) => e);
  t.ok(err instanceof ReplayAbort);
  t.equal((err as ReplayAbort).flag, '--timeout');

  let clock = 0;
  const late = new LimitedPrometheus(inner, { maxQueries: 10, timeoutMs: 1000, now: () => clock });
  clock = 2000;
  await t.rejects(late.queryRange('up', 0, 1, 1), /did not finish within 1s \(--timeout\)/);
});
