import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { promqlDuration } from '../rules/duration.js';
import type { RuleFileError } from '../rules/loader.js';
import type { Rule } from '../rules/schema.js';

/**
 * Checks the PromQL of rules with `promtool check rules`, before any alert arrives: each rule's
 * query (and baseline query) is rendered with placeholder label values and written as a recording
 * rule into a temporary Prometheus rule file. Mostly useful for `custom` triggers; the built-in
 * kinds produce valid PromQL by construction.
 */

const run = promisify(execFile);

/** Every label reads as "x", an own property as templates read labels: enough to render any template for a syntax check. */
const anyLabels = new Proxy({} as Record<string, string>, {
  get: (_t, k) => (typeof k === 'string' ? 'x' : undefined),
  getOwnPropertyDescriptor: (_t, k) => (typeof k === 'string' ? { value: 'x', writable: true, enumerable: true, configurable: true } : undefined),
});

export async function checkPromql(rules: readonly Rule[], promtool: string): Promise<RuleFileError[]> {
  if (rules.length === 0) return [];
  const exprs: Array<{ rule: Rule; expr: string; what: string }> = [];
  for (const rule of rules) {
    const q = rule.trigger.query(anyLabels);
    exprs.push({ rule, expr: q, what: 'query' });
    if (rule.trigger.baseline) {
      exprs.push({ rule, expr: `avg_over_time((${q})[${promqlDuration(rule.trigger.baseline.windowMs)}:${promqlDuration(rule.trigger.stepMs)}])`, what: 'baseline query' });
    }
  }
  const doc = { groups: [{ name: 'rollguard-check', rules: exprs.map((e, i) => ({ record: `rollguard:check:${i}`, expr: e.expr })) }] };
  const dir = await mkdtemp(join(tmpdir(), 'rollguard-promql-'));
  const file = join(dir, 'rules.yml');
  try {
    await writeFile(file, stringify(doc));
    let output = '';
    try {
      await run(promtool, ['check', 'rules', file], { maxBuffer: 16 << 20 });
      return [];
    } catch (e) {
      const err = e as { stdout?: string; stderr?: string; message: string };
      output = `${err.stdout ?? ''}\n${err.stderr ?? ''}`;
      if (!output.trim()) output = err.message;
    }
    const errors: RuleFileError[] = [];
    for (const m of output.matchAll(/"rollguard:check:(\d+)": (.*)/g)) {
      const e = exprs[Number(m[1])];
      if (!e) continue;
      errors.push({
        file: e.rule.file,
        line: e.rule.line,
        column: 1,
        field: `rules[${e.rule.index}].trigger`,
        message: `${e.what} is not valid PromQL (${m[2]!.trim()}): ${e.expr}`,
      });
    }
    if (errors.length === 0) {
      errors.push({ file: rules[0]!.file, line: 0, column: 0, field: '', message: `promtool check rules failed: ${output.trim().slice(0, 500)}` });
    }
    return errors;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
