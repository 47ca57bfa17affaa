import { readFile } from 'node:fs/promises';
import { normaliseAlert } from '../alertmanager/alert.js';
import { describeZodError, webhookPayloadSchema } from '../alertmanager/schema.js';
import { PrometheusClient, type PrometheusApi } from '../prometheus/client.js';
import { formatRuleError, loadRules } from '../rules/loader.js';
import { RuleSet } from '../rules/ruleset.js';
import { jsonText } from './format.js';
import { DEFAULT_RULE_PATHS, type CliIo } from './io.js';
import { evaluateAlert } from './test-runner.js';

/**
 * `rollguard simulate PAYLOAD.json [--rules PATH]... [--prometheus URL] [--now TIME] [--rollout-started-at TIME] [--json]`
 * Prints what rollguard would do with an Alertmanager webhook payload: matched rules, targets,
 * confirmation (only with --prometheus; read-only queries) and decision. Changes nothing.
 */
export async function simulateCommand(args: string[], io: CliIo): Promise<number> {
  let payloadPath: string | undefined;
  const rulePaths: string[] = [];
  let promUrl: string | undefined;
  let now = Date.now();
  let rolloutStartedAt: number | undefined;
  let json = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const value = () => {
      const v = args[++i];
      if (v === undefined) throw new UsageError(`${a} needs a value`);
      return v;
    };
    try {
      if (a === '-h' || a === '--help') {
        io.out(
          'usage: rollguard simulate PAYLOAD.json [--rules PATH]... [--prometheus URL] [--now TIME] [--rollout-started-at TIME] [--json]\n' +
            '  prints what would happen for an Alertmanager webhook payload; touches nothing\n' +
            '  without --prometheus the triggers are not confirmed and are assumed to hold',
        );
        return 0;
      } else if (a === '--rules') rulePaths.push(value());
      else if (a === '--prometheus') promUrl = value();
      else if (a === '--now') now = parseTime(value());
      else if (a === '--rollout-started-at') rolloutStartedAt = parseTime(value());
      else if (a === '--json') json = true;
      else if (a.startsWith('-') && a !== '-') throw new UsageError(`unknown option ${a}`);
      else if (payloadPath === undefined) payloadPath = a;
      else throw new UsageError(`unexpected argument ${a}`);
    } catch (e) {
      if (e instanceof UsageError) {
        io.err(`simulate: ${e.message}`);
        return 2;
      }
      throw e;
    }
  }
  if (!payloadPath) {
    io.err('usage: rollguard simulate PAYLOAD.json [--rules PATH]... [--prometheus URL] [--now TIME]');
    return 2;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(payloadPath === '-' ? await readStdin() : await readFile(payloadPath, 'utf8'));
  } catch (e) {
    io.err(`simulate: cannot read ${payloadPath}: ${(e as Error).message}`);
    return 1;
  }
  const payload = webhookPayloadSchema.safeParse(raw);
  if (!payload.success) {
    io.err(`simulate: ${payloadPath} is not an Alertmanager webhook payload: ${describeZodError(payload.error, 'payload')}`);
    return 1;
  }
  const loaded = await loadRules(rulePaths.length ? rulePaths : DEFAULT_RULE_PATHS);
  if (loaded.errors.length) {
    for (const e of loaded.errors) io.err(formatRuleError(e));
    return 1;
  }
  const rules = new RuleSet(loaded.rules);
  const assume: PrometheusApi | undefined = promUrl ? new PrometheusClient({ url: promUrl }) : undefined;
  const report: unknown[] = [];
  for (const wa of payload.data.alerts) {
    const alert = normaliseAlert(payload.data, wa, now);
    const name = alert.labels.alertname ?? '(no alertname)';
    const outcomes = await evaluateAlert(rules, alert, {
      now,
      ...(assume ? { prometheus: assume } : {}),
      ...(rolloutStartedAt !== undefined ? { rolloutStartedAt } : {}),
    });
    report.push({
      alert: { fingerprint: alert.fingerprint, status: alert.status, labels: alert.labels },
      rules: outcomes.map((o) => ({
        rule: o.rule.name,
        file: `${o.rule.file}:${o.rule.line}`,
        priority: o.rule.priority,
        targets: o.targets ?? null,
        targetsError: o.targetsError ?? null,
        confirmation: assume ? { outcome: o.confirmation.outcome, reason: o.confirmation.reason, query: o.confirmation.query ?? null } : { outcome: 'assumed', query: o.confirmation.query ?? null },
        decision: o.decision,
        dryRun: o.rule.guards.dryRun,
      })),
    });
    if (json) continue;
    io.out(`alert ${name} ${alert.status} ${formatLabels(alert.labels)}`);
    if (outcomes.length === 0) io.out('  no rule matches: nothing would happen');
    for (const o of outcomes) {
      io.out(`  rule ${o.rule.name} (${o.rule.priority}, ${o.rule.file}:${o.rule.line})`);
      io.out(`    targets: ${o.targetsError ? `ERROR ${o.targetsError}` : (o.targets ?? []).join(' -> ')}`);
      io.out(`    query: ${o.confirmation.query ?? '(not built)'}`);
      io.out(assume ? `    confirmation: ${o.confirmation.outcome}: ${o.confirmation.reason}` : '    confirmation: not checked (no --prometheus), assumed to hold');
      const at = o.decision.at !== undefined ? ` at ${new Date(o.decision.at).toISOString()}` : '';
      const d = o.targetsError && (o.decision.decision === 'rollback_now' || o.decision.decision === 'scheduled') ? 'no_action (targets do not resolve)' : o.decision.decision;
      io.out(`    decision: ${d}${at}${o.decision.requiresApproval ? ' (after approval)' : ''}${o.rule.guards.dryRun ? ' [dry run]' : ''}: ${o.decision.reason}`);
    }
  }
  if (json) io.out(jsonText(report, 2));
  return 0;
}

class UsageError extends Error {}

function parseTime(s: string): number {
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s) < 1e11 ? Number(s) * 1000 : Number(s);
  const t = Date.parse(s);
  if (Number.isNaN(t)) throw new UsageError(`expected an RFC 3339 time or Unix seconds, got "${s}"`);
  return t;
}

function formatLabels(l: Record<string, string>): string {
  return `{${Object.entries(l)
    .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
    .join(', ')}}`;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
