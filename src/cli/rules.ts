import { findBinary, PrometheusBinaryMissingError } from '../prometheus/local.js';
import { formatRuleError, loadRules } from '../rules/loader.js';
import { DEFAULT_RULE_PATHS, type CliIo } from './io.js';
import { checkPromql } from './promql-check.js';
import { reportRuleTests, runRuleTests } from './test-runner.js';

/**
 * The `rollguard rules check` and `rollguard rules test` commands. Each takes its arguments (after
 * the command words) and an output pair, and returns the exit code: 0 success, 1 failed (bad rules,
 * failed tests), 2 usage error.
 */

/**
 * `rollguard rules check [--promql | --no-promql] [PATH...]` (default: rules/). For pre-commit hooks
 * and CI, as `promtool check rules`. The PromQL of the rules is also checked with promtool when it
 * is installed (--promql: required; --no-promql: skipped).
 */
export async function rulesCheckCommand(args: string[], io: CliIo): Promise<number> {
  let promql: 'auto' | 'require' | 'skip' = 'auto';
  const paths: string[] = [];
  for (const a of args) {
    if (a === '-h' || a === '--help') {
      io.out(
        'usage: rollguard rules check [--promql | --no-promql] [PATH...]\n' +
          '  checks rule files (a directory: its *.yaml and *.yml files); default: rules/\n' +
          '  --promql     also check the rules\' PromQL with promtool (fail if promtool is missing)\n' +
          '  --no-promql  do not check PromQL (default: check it when promtool is installed)',
      );
      return 0;
    }
    if (a === '--promql') promql = 'require';
    else if (a === '--no-promql') promql = 'skip';
    else if (a.startsWith('-')) {
      io.err(`rules check: unknown option ${a}`);
      return 2;
    } else paths.push(a);
  }
  const r = await loadRules(paths.length ? paths : DEFAULT_RULE_PATHS);
  let errors = r.errors;
  let promqlNote = '';
  if (errors.length === 0 && promql !== 'skip') {
    let promtool: string | undefined;
    try {
      promtool = await findBinary('promtool');
    } catch (e) {
      if (promql === 'require') {
        io.err(`rules check: ${(e as Error).message}`);
        return 1;
      }
      promqlNote = ' (PromQL not checked: promtool not found)';
    }
    if (promtool) {
      errors = await checkPromql(r.rules, promtool);
      promqlNote = ', PromQL checked with promtool';
    }
  }
  if (errors.length) {
    for (const e of errors) io.err(formatRuleError(e));
    const files = new Set(errors.map((e) => e.file));
    io.err(`FAILED: ${errors.length} error${errors.length === 1 ? '' : 's'} in ${files.size} file${files.size === 1 ? '' : 's'}`);
    return 1;
  }
  const perFile = new Map<string, number>();
  for (const rule of r.rules) perFile.set(rule.file, (perFile.get(rule.file) ?? 0) + 1);
  for (const f of r.files) io.out(`${f}: ${perFile.get(f) ?? 0} rule${perFile.get(f) === 1 ? '' : 's'}`);
  io.out(`SUCCESS: ${r.rules.length} rule${r.rules.length === 1 ? '' : 's'} in ${r.files.length} file${r.files.length === 1 ? '' : 's'}${promqlNote}`);
  return 0;
}

/** `rollguard rules test FILE...` (see test-runner.ts for the format). */
export async function rulesTestCommand(args: string[], io: CliIo): Promise<number> {
  const files: string[] = [];
  const opts: { prometheusBin?: string; promtoolBin?: string } = {};
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '-h' || a === '--help') {
      io.out(
        'usage: rollguard rules test [--prometheus-bin PATH] [--promtool-bin PATH] FILE...\n' +
          '  runs rule unit tests against a throwaway local Prometheus (needs prometheus and promtool)',
      );
      return 0;
    }
    if (a === '--prometheus-bin' || a === '--promtool-bin') {
      const v = args[++i];
      if (!v) {
        io.err(`rules test: ${a} needs a value`);
        return 2;
      }
      if (a === '--prometheus-bin') opts.prometheusBin = v;
      else opts.promtoolBin = v;
    } else if (a.startsWith('-')) {
      io.err(`rules test: unknown option ${a}`);
      return 2;
    } else files.push(a);
  }
  if (files.length === 0) {
    io.err('usage: rollguard rules test FILE...');
    return 2;
  }
  try {
    const results = await runRuleTests(files, opts);
    return reportRuleTests(results, io.out);
  } catch (e) {
    if (e instanceof PrometheusBinaryMissingError) {
      io.err(`rules test: ${e.message}`);
      return 1;
    }
    io.err(`rules test: ${(e as Error).message}`);
    return 1;
  }
}
