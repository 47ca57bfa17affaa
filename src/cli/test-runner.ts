import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { isMap, isSeq, LineCounter, parseDocument } from 'yaml';
import { z } from 'zod';
import { confirmTrigger, type Confirmation } from '../engine/confirm.js';
import { decide, type DecisionResult } from '../engine/decide.js';
import { PrometheusUnavailableError, PrometheusClient, type PrometheusApi } from '../prometheus/client.js';
import { LocalPrometheus } from '../prometheus/local.js';
import { durationSchema, formatDuration } from '../rules/duration.js';
import { formatRuleError, loadRules } from '../rules/loader.js';
import { RuleSet } from '../rules/ruleset.js';
import type { Rule } from '../rules/schema.js';
import { expandValues, parseSeriesSelector, toOpenMetrics, type SeriesDef } from './series.js';
import { formatTarget, resolveTargets, TargetResolutionError } from '../rules/targets.js';

/**
 * `rollguard rules test FILE...`: unit tests for rule files, as `promtool test rules` is for
 * alerting rules. A test gives Prometheus series (promtool's series notation) and one alert, and
 * asserts which rules match and, per rule, the confirmation, the decision and the targets.
 *
 * The series are backfilled into a throwaway local Prometheus (src/prometheus/local.ts), so the
 * rules' PromQL runs on the real engine. Each test's time 0 is its own week, starting at
 * 2024-01-01T00:00:00Z (a Monday) plus 7 days per test, so tests never see each other's series and
 * a maintenance window lands on the same weekday in every test. `at` expectations are relative
 * to the test's time 0.
 */

const TEST_EPOCH = Date.UTC(2024, 0, 1);
const TEST_SPACING = 7 * 24 * 3600_000;

const labelsSchema = z.record(z.string(), z.string());

const expectationSchema = z.strictObject({
  rule: z.string(),
  confirmation: z.enum(['confirmed', 'not_confirmed', 'insufficient_data', 'prometheus_down', 'error']).optional(),
  decision: z.enum(['rollback_now', 'recheck_later', 'scheduled', 'notify_only', 'hold', 'no_action']).optional(),
  /** relative to the test's time 0 */
  at: durationSchema.optional(),
  requiresApproval: z.boolean().optional(),
  /** "Kind namespace/name" per target, in order */
  targets: z.array(z.string()).optional(),
  /** a substring of the error resolving targets */
  targetsError: z.string().optional(),
  /** a substring of the decision's reason */
  reason: z.string().optional(),
});

const testCaseSchema = z.strictObject({
  name: z.string().optional(),
  interval: durationSchema.optional(),
  input_series: z.array(z.strictObject({ series: z.string(), values: z.string() })).default([]),
  alert: z.strictObject({
    labels: labelsSchema,
    annotations: labelsSchema.default({}),
    status: z.enum(['firing', 'resolved']).default('firing'),
  }),
  eval_time: durationSchema,
  rollout_started_at: durationSchema.optional(),
  /** evaluate as the delayed re-check of an sloAtRisk rule */
  recheck: z.boolean().default(false),
  /** simulate Prometheus being unreachable (tests onPrometheusDown) */
  prometheus_down: z.boolean().default(false),
  /** the rules expected to match, with what is expected of each; [] = no rule matches */
  expect: z.array(expectationSchema),
});

const testFileSchema = z.strictObject({
  rule_files: z.array(z.string()).min(1, 'expected at least one rule file'),
  interval: durationSchema.default(60_000),
  tests: z.array(testCaseSchema).min(1, 'expected at least one test'),
});

type TestCase = z.infer<typeof testCaseSchema>;

export interface TestFailure {
  file: string;
  line: number;
  test: string;
  messages: string[];
}

export interface TestFileResult {
  file: string;
  tests: number;
  failures: TestFailure[];
  /** a problem with the test file itself (bad YAML, bad rule files) */
  error?: string;
}

export interface RunOptions {
  prometheusBin?: string;
  promtoolBin?: string;
}

interface Prepared {
  file: string;
  rules: RuleSet;
  cases: Array<{ tc: TestCase; line: number; zero: number; intervalMs: number; label: string }>;
}

export async function runRuleTests(files: readonly string[], opts: RunOptions = {}): Promise<TestFileResult[]> {
  const results: TestFileResult[] = [];
  const prepared: Prepared[] = [];
  let slot = 0;
  for (const file of files) {
    const p = await prepareFile(file, () => slot++);
    if ('error' in p) results.push({ file, tests: 0, failures: [], error: p.error });
    else prepared.push(p);
  }
  if (prepared.length === 0) return results;

  const series: Array<{ metric: string; labels: Record<string, string>; samples: Array<{ t: number; v: number }> }> = [];
  for (const p of prepared) {
    for (const c of p.cases) {
      for (const s of c.tc.input_series) {
        const def: SeriesDef = { ...parseSeriesSelector(s.series), values: expandValues(s.values) };
        const samples: Array<{ t: number; v: number }> = [];
        def.values.forEach((v, k) => {
          if (v !== undefined) samples.push({ t: c.zero + k * c.intervalMs, v });
        });
        series.push({ metric: def.metric, labels: def.labels, samples });
      }
    }
  }
  const hasSeries = series.some((s) => s.samples.length > 0);
  const prom = await LocalPrometheus.start({ ...(hasSeries ? { openMetrics: toOpenMetrics(series) } : {}), ...opts });
  try {
    const client = new PrometheusClient({ url: prom.url, timeoutMs: 10_000 });
    for (const p of prepared) {
      const failures: TestFailure[] = [];
      for (const c of p.cases) {
        const messages = await runCase(p.rules, c.tc, c.zero, client);
        if (messages.length) failures.push({ file: p.file, line: c.line, test: c.label, messages });
      }
      results.push({ file: p.file, tests: p.cases.length, failures });
    }
  } finally {
    await prom.stop();
  }
  return results.sort((a, b) => files.indexOf(a.file) - files.indexOf(b.file));
}

async function prepareFile(file: string, nextSlot: () => number): Promise<Prepared | { error: string }> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    return { error: `cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` };
  }
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false });
  if (doc.errors.length) {
    const e = doc.errors[0]!;
    return { error: `${file}:${lc.linePos(e.pos[0]).line}: invalid YAML: ${e.message.split('\n')[0]}` };
  }
  const parsed = testFileSchema.safeParse(doc.toJS());
  if (!parsed.success) {
    return {
      error: parsed.error.issues
        .slice(0, 10)
        .map((i) => `${file}: ${i.path.map(String).join('.')}: ${i.message}`)
        .join('\n'),
    };
  }
  const tf = parsed.data;
  const loaded = await loadRules(tf.rule_files.map((r) => resolve(dirname(file), r)));
  if (loaded.errors.length) return { error: `rule files do not load:\n${loaded.errors.map(formatRuleError).join('\n')}` };
  const testsNode = isMap(doc.contents) ? doc.contents.get('tests', true) : undefined;
  const cases = tf.tests.map((tc, idx) => {
    const node = isSeq(testsNode) ? testsNode.items[idx] : undefined;
    const offset = (node as { range?: [number] } | undefined)?.range?.[0] ?? 0;
    const zero = TEST_EPOCH + nextSlot() * TEST_SPACING;
    return { tc, line: lc.linePos(offset).line, zero, intervalMs: tc.interval ?? tf.interval, label: tc.name ?? `tests[${idx}]` };
  });
  for (const c of cases) {
    const span = Math.max(c.tc.eval_time, ...c.tc.input_series.map((s) => expandValues(s.values).length * c.intervalMs));
    if (span > TEST_SPACING - 3600_000) return { error: `${file}:${c.line}: test "${c.label}" spans more than 6 days (eval_time or series too long)` };
  }
  return { file, rules: new RuleSet(loaded.rules), cases };
}

const downApi: PrometheusApi = {
  query: () => Promise.reject(new PrometheusUnavailableError('Prometheus unreachable (prometheus_down: true in the test)')),
  queryRange: () => Promise.reject(new PrometheusUnavailableError('Prometheus unreachable (prometheus_down: true in the test)')),
};

export interface CaseOutcome {
  rule: Rule;
  confirmation: Confirmation;
  decision: DecisionResult;
  targets?: string[];
  targetsError?: string;
}

/** Evaluates one alert against the rules the way the engine does: match, targets, confirm, decide. */
export async function evaluateAlert(
  rules: RuleSet,
  alert: { labels: Record<string, string>; status: 'firing' | 'resolved' },
  o: { now: number; /** omit to assume every trigger holds (simulate without Prometheus) */ prometheus?: PrometheusApi; rolloutStartedAt?: number; recheck?: boolean },
): Promise<CaseOutcome[]> {
  const out: CaseOutcome[] = [];
  for (const rule of rules.match(alert)) {
    let targets: string[] | undefined;
    let targetsError: string | undefined;
    try {
      targets = resolveTargets(rule.targets, alert.labels).map(formatTarget);
    } catch (e) {
      if (!(e instanceof TargetResolutionError)) throw e;
      targetsError = e.message;
    }
    let confirmation: Confirmation;
    if (o.prometheus) {
      confirmation = await confirmTrigger(
        { rule, alert, now: o.now, ...(o.rolloutStartedAt !== undefined ? { rolloutStartedAt: o.rolloutStartedAt } : {}) },
        { prometheus: o.prometheus },
      );
    } else {
      let query: string | undefined;
      try {
        query = rule.trigger.query(alert.labels);
      } catch {
        query = undefined;
      }
      confirmation = {
        rule: rule.name,
        outcome: 'confirmed',
        reason: 'assumed to hold (not checked against Prometheus)',
        evaluatedAt: o.now,
        window: { startMs: o.now - rule.trigger.forMs, endMs: o.now, stepMs: rule.trigger.stepMs },
        ...(query !== undefined ? { query } : {}),
      };
    }
    const decision = decide({ rule, alert, confirmation, now: o.now, recheck: o.recheck ?? false });
    out.push({ rule, confirmation, decision, ...(targets ? { targets } : {}), ...(targetsError ? { targetsError } : {}) });
  }
  return out;
}

async function runCase(rules: RuleSet, tc: TestCase, zero: number, client: PrometheusApi): Promise<string[]> {
  const now = zero + tc.eval_time;
  const outcomes = await evaluateAlert(rules, tc.alert, {
    now,
    prometheus: tc.prometheus_down ? downApi : client,
    ...(tc.rollout_started_at !== undefined ? { rolloutStartedAt: zero + tc.rollout_started_at } : {}),
    recheck: tc.recheck,
  });
  const msgs: string[] = [];
  const got = outcomes.map((o) => o.rule.name);
  const want = tc.expect.map((e) => e.rule);
  const missing = want.filter((n) => !got.includes(n));
  const extra = got.filter((n) => !want.includes(n));
  if (missing.length || extra.length) {
    msgs.push(
      `matched rules: expected [${want.join(', ')}], got [${got.join(', ')}]` +
        (missing.length ? ` (${missing.map((n) => `"${n}"`).join(', ')} did not match${rules.get(missing[0]!) ? '' : '; no rule has this name'})` : ''),
    );
  }
  for (const e of tc.expect) {
    const o = outcomes.find((x) => x.rule.name === e.rule);
    if (!o) continue;
    const p = `rule ${e.rule}:`;
    const ctx = `(${o.confirmation.outcome}: ${o.confirmation.reason})`;
    if (e.confirmation && e.confirmation !== o.confirmation.outcome) {
      msgs.push(`${p} expected confirmation ${e.confirmation}, got ${o.confirmation.outcome}: ${o.confirmation.reason}${o.confirmation.query ? `\n    query: ${o.confirmation.query}` : ''}`);
    }
    if (e.decision && e.decision !== o.decision.decision) {
      msgs.push(`${p} expected decision ${e.decision}, got ${o.decision.decision}: ${o.decision.reason}`);
    }
    if (e.at !== undefined) {
      const gotAt = o.decision.at === undefined ? 'none' : formatDuration(o.decision.at - zero);
      if (o.decision.at !== zero + e.at) msgs.push(`${p} expected at ${formatDuration(e.at)}, got ${gotAt} ${ctx}`);
    }
    if (e.requiresApproval !== undefined && e.requiresApproval !== (o.decision.requiresApproval ?? false)) {
      msgs.push(`${p} expected requiresApproval ${e.requiresApproval}, got ${o.decision.requiresApproval ?? false}`);
    }
    if (e.targets) {
      const gotT = o.targets ?? [];
      if (JSON.stringify(gotT) !== JSON.stringify(e.targets)) {
        msgs.push(`${p} expected targets [${e.targets.join('; ')}], got ${o.targetsError ? `an error: ${o.targetsError}` : `[${gotT.join('; ')}]`}`);
      }
    }
    if (e.targetsError !== undefined && !(o.targetsError ?? '').includes(e.targetsError)) {
      msgs.push(`${p} expected a target error containing "${e.targetsError}", got ${o.targetsError ? `"${o.targetsError}"` : `targets [${(o.targets ?? []).join('; ')}]`}`);
    }
    if (e.reason !== undefined && !o.decision.reason.includes(e.reason)) {
      msgs.push(`${p} expected the reason to contain "${e.reason}", got "${o.decision.reason}"`);
    }
  }
  return msgs;
}

/** promtool-like report; returns the exit code (0 all passed, 1 any failure or file error). */
export function reportRuleTests(results: readonly TestFileResult[], out: (s: string) => void): number {
  let failed = 0;
  let total = 0;
  for (const r of results) {
    out(`Unit Testing: ${r.file}`);
    if (r.error) {
      failed++;
      out(`  FAILED:\n${r.error.split('\n').map((l) => `    ${l}`).join('\n')}`);
      continue;
    }
    total += r.tests;
    if (r.failures.length === 0) {
      out(`  SUCCESS (${r.tests} test${r.tests === 1 ? '' : 's'})`);
      continue;
    }
    failed += r.failures.length;
    out(`  FAILED (${r.failures.length} of ${r.tests}):`);
    for (const f of r.failures) {
      out(`    ${f.file}:${f.line}: ${f.test}`);
      for (const m of f.messages) out(m.split('\n').map((l) => `      ${l}`).join('\n'));
    }
  }
  out(failed ? `\n${failed} failed, ${total} tests` : `\nall ${total} tests passed`);
  return failed ? 1 : 0;
}
