import { writeFile } from 'node:fs/promises';
import { ConfigError, flagsToSettings, loadConfig, type Config } from '../../config.js';
import { PrometheusClient, PrometheusQueryError, PrometheusUnavailableError } from '../../prometheus/client.js';
import { withoutControls } from '../../plain-text.js';
import { redactUrl } from '../../redact.js';
import { formatDuration, parseDuration } from '../../rules/duration.js';
import { formatRuleError, loadRules } from '../../rules/loader.js';
import { RuleSet } from '../../rules/ruleset.js';
import type { CliIo } from '../io.js';
import { failing, FailOnError, parseFailOn, type FailOn } from './failon.js';
import { chunks, HISTORY_MAX_RESPONSE_BYTES, readAlerts } from './history.js';
import { LimitedPrometheus, ReplayAbort } from './limits.js';
import { render, type ReplayReport, type ReportFormat } from './report.js';
import { RolloutHistory } from './rollouts.js';
import { simulate } from './simulate.js';
import { summarise } from './summary.js';

export const REPLAY_USAGE = `usage: rollguard replay --prometheus URL --from TIME [--to TIME] [--rules PATH]... [--format text|markdown|json] [--out FILE] [--fail-on COND]...
           [--max-queries N] [--timeout DURATION] [--step DURATION] [--eval-interval DURATION] [--group-wait DURATION] [--in-flight DURATION]
           [--label NAME=VALUE]... [--quiet] [--SETTING VALUE]...
  What the rules would have done to the alerts Prometheus recorded (ALERTS) between --from and --to:
  each alert through rule matching, the trigger confirmed at that time, the decision tree and the guards.
  Read-only: only query and query_range are sent.
  TIME: RFC 3339 (2024-03-01T00:00:00Z), Unix seconds, now, or now-DURATION (now-30d); --to defaults to now.
  --fail-on: rollbacks>N, rollbacks>=N (also blocked, approvals, not-confirmed, not-judged, unmatched),
             target:Kind/namespace/name (globs with *), rule:NAME; exit 1 when one holds.
  Settings (--scope-deny-targets, --budget-cluster-per-hour, ...) as for serve; DRY_RUN is not replayed.
  Triggers are confirmed as serve confirms them, within --prometheus-timeout and --prometheus-max-response-bytes.
  Exit: 0 done, 1 a --fail-on condition holds, 2 bad flags, settings or rule files, 3 Prometheus failed or a limit was hit.`;

class UsageError extends Error {}

interface Options {
  prometheus?: string;
  from?: number;
  to: number;
  rules: string[];
  format: ReportFormat;
  out?: string;
  failOn: FailOn[];
  maxQueries: number;
  timeoutMs: number;
  stepMs: number;
  evalIntervalMs?: number;
  groupWaitMs: number;
  inFlightMs: number;
  labels: Record<string, string>;
  quiet: boolean;
}

export async function replayCommand(args: string[], io: CliIo, now: () => number = Date.now): Promise<number> {
  const started = now();
  let o: Options;
  let config: Config;
  try {
    const parsed = parseArgs(args, started);
    if (parsed === 'help') {
      io.out(REPLAY_USAGE);
      return 0;
    }
    o = parsed.options;
    const { settings, rest } = flagsToSettings(parsed.rest);
    if (rest.length > 0) throw new UsageError(`unknown argument ${rest[0]}`);
    config = loadConfig(process.env, settings);
    o.prometheus ??= config.PROMETHEUS_URL;
    if (o.prometheus === undefined) throw new UsageError('--prometheus: needed (the Prometheus that evaluates your alerting rules), or PROMETHEUS_URL');
    if (o.from === undefined) throw new UsageError('--from: needed (e.g. --from now-30d)');
    if (o.from >= o.to) throw new UsageError(`--from (${iso(o.from)}) is not before --to (${iso(o.to)})`);
    if (o.rules.length === 0) o.rules = config.RULES_PATH.split(',').map((p) => p.trim()).filter(Boolean);
  } catch (e) {
    if (e instanceof UsageError || e instanceof FailOnError || e instanceof ConfigError) {
      io.err(`replay: ${e.message}\n\n${REPLAY_USAGE}`);
      return 2;
    }
    throw e;
  }
  const loaded = await loadRules(o.rules);
  if (loaded.errors.length) {
    for (const e of loaded.errors) io.err(formatRuleError(e));
    return 2;
  }
  const rules = new RuleSet(loaded.rules);

  const client = new PrometheusClient({ url: o.prometheus, timeoutMs: Math.min(o.timeoutMs, 120_000), maxResponseBytes: HISTORY_MAX_RESPONSE_BYTES });
  const prometheus = new LimitedPrometheus(client, { maxQueries: o.maxQueries, timeoutMs: o.timeoutMs, now });
  // The triggers are confirmed as the engine confirms them (main.ts): within PROMETHEUS_TIMEOUT
  // (Prometheus' own evaluation timeout below it) and PROMETHEUS_MAX_RESPONSE_BYTES. A query
  // heavier than those is an error answer live, held and escalated, never a rollback; with the
  // replay's own 2 minutes and no bound on the answer, it read as confirmed.
  const triggers = prometheus.over(new PrometheusClient({ url: o.prometheus, timeoutMs: config.PROMETHEUS_TIMEOUT, maxResponseBytes: config.PROMETHEUS_MAX_RESPONSE_BYTES }));
  const progress = throttled(io, o.quiet, now);
  try {
    const nChunks = chunks(o.from!, o.to, o.stepMs).length;
    const samples = await readAlerts(prometheus, {
      fromMs: o.from!,
      toMs: o.to,
      stepMs: o.stepMs,
      onChunk: (i, n) => progress(`replay: read ALERTS ${i} of ${n} chunk(s) (${formatDuration(o.stepMs)} steps)`, i === n),
    });
    const alerts = samples.intervals({
      fromMs: o.from!,
      toMs: o.to,
      stepMs: o.stepMs,
      ...(o.evalIntervalMs !== undefined ? { evalIntervalMs: o.evalIntervalMs } : {}),
      extraLabels: o.labels,
    });
    if (samples.series === 0) io.err(`replay: warning: no ALERTS{alertstate="firing"} series between --from and --to (${nChunks} chunk(s) read): is ${client.displayUrl} the Prometheus that evaluates your alerting rules, and does its retention reach back that far?`);
    const lookback = Math.max(0, ...loaded.rules.map((r) => r.guards.onlyIfDeployedWithin)) + 3_600_000;
    const results = await simulate(alerts, {
      rules,
      prometheus: triggers,
      rollouts: new RolloutHistory(prometheus, lookback),
      config,
      toMs: o.to,
      groupWaitMs: o.groupWaitMs,
      inFlightMs: o.inFlightMs,
      onProgress: (done, total, at) => progress(`replay: ${done} of ${total} alert(s) replayed (up to ${iso(at)}), ${prometheus.queries} queries`, done === total),
    });
    const summary = summarise(results, rules);
    const report: ReplayReport = {
      range: { from: o.from!, to: o.to },
      prometheus: client.displayUrl,
      ruleFiles: loaded.files,
      settings: {
        groupWaitMs: o.groupWaitMs,
        inFlightMs: o.inFlightMs,
        stepMs: o.stepMs,
        scope: `allowed ${config.SCOPE_NAMESPACES.join(',') || 'all'}; denied namespaces ${config.SCOPE_DENY_NAMESPACES.join(',') || 'none'}; denied targets ${config.SCOPE_DENY_TARGETS.join(',') || 'none'}`,
        budgetClusterPerHour: config.BUDGET_CLUSTER_PER_HOUR,
        maxConcurrentRollbacks: config.MAX_CONCURRENT_ROLLBACKS,
      },
      notReplayed: [
        'the pause switch (live state)',
        "kubectl's refusals at plan time (no rollout history, a paused Deployment, the template already matching) and the other objects a plan writes (a Canary's stable Deployment, a blue-green Service): they need the live objects, so scope and lock see the target only",
        `DRY_RUN (the replay shows what rollguard does when it acts; a rule's dryRun is replayed)`,
        'the recovery check after a rollback (history has no rollback to recover from): step-backs are not replayed',
      ],
      summary,
      alerts: results,
      queries: prometheus.queries,
      elapsedMs: now() - started,
    };
    const out = render(report, o.format);
    if (o.out) {
      // no terminal filter reads a file first (terminalSafe): what it holds is as plain as stdout's
      await writeFile(o.out, withoutControls(out) + '\n');
      io.err(`replay: report written to ${o.out}: ${summary.rollbacks} rollback(s), ${summary.outcomes.blocked} blocked, over ${summary.alerts} alert(s)`);
    } else io.out(out);
    const failed = failing(o.failOn, summary, results);
    for (const f of failed) io.err(`replay: --fail-on ${f}`);
    return failed.length > 0 ? 1 : 0;
  } catch (e) {
    if (e instanceof ReplayAbort) {
      io.err(`replay: ${e.flag}: ${e.message}`);
      return 3;
    }
    if (e instanceof PrometheusUnavailableError || e instanceof PrometheusQueryError) {
      io.err(`replay: --prometheus: ${e.message}`);
      return 3;
    }
    throw e;
  }
}

function parseArgs(args: string[], nowMs: number): 'help' | { options: Options; rest: string[] } {
  const o: Options = { to: nowMs, rules: [], format: 'text', failOn: [], maxQueries: 10_000, timeoutMs: 600_000, stepMs: 60_000, groupWaitMs: 30_000, inFlightMs: 300_000, labels: {}, quiet: false };
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const eq = a.indexOf('=');
    const flag = a.startsWith('--') && eq > 0 ? a.slice(0, eq) : a;
    const inline = a.startsWith('--') && eq > 0 ? a.slice(eq + 1) : undefined;
    const value = () => {
      const v = inline ?? args[++i];
      if (v === undefined) throw new UsageError(`${flag}: needs a value`);
      return v;
    };
    const duration = (min: number) => {
      const v = value();
      let ms: number;
      try {
        ms = parseDuration(v);
      } catch {
        throw new UsageError(`${flag}: expected a duration like 30s, 5m or 1h, got "${v}"`);
      }
      if (ms < min) throw new UsageError(`${flag}: expected at least ${formatDuration(min)}, got "${v}"`);
      return ms;
    };
    switch (flag) {
      case '-h':
      case '--help':
        return 'help';
      case '--prometheus': {
        const v = value();
        if (!/^https?:\/\//.test(v) || !URL.canParse(v)) throw new UsageError(`--prometheus: expected an http(s) URL, got "${redactUrl(v)}"`);
        o.prometheus = v;
        break;
      }
      case '--from':
        o.from = parseTime(flag, value(), nowMs);
        break;
      case '--to':
        o.to = Math.min(parseTime(flag, value(), nowMs), nowMs);
        break;
      case '--rules':
        o.rules.push(value());
        break;
      case '--format': {
        const v = value();
        if (v !== 'text' && v !== 'markdown' && v !== 'json') throw new UsageError(`--format: expected text, markdown or json, got "${v}"`);
        o.format = v;
        break;
      }
      case '--out':
        o.out = value();
        break;
      case '--fail-on':
        o.failOn.push(parseFailOn(value()));
        break;
      case '--max-queries': {
        const v = value();
        if (!/^[1-9]\d*$/.test(v)) throw new UsageError(`--max-queries: expected a whole number of queries (1 or more), got "${v}"`);
        o.maxQueries = Number(v);
        break;
      }
      case '--timeout':
        o.timeoutMs = duration(1000);
        break;
      case '--step':
        o.stepMs = duration(1000);
        break;
      case '--eval-interval':
        o.evalIntervalMs = duration(1000);
        break;
      case '--group-wait':
        o.groupWaitMs = duration(0);
        break;
      case '--in-flight':
        o.inFlightMs = duration(1000);
        break;
      case '--label': {
        const v = value();
        const m = /^([a-zA-Z_][a-zA-Z0-9_]*)=(.*)$/.exec(v);
        if (!m) throw new UsageError(`--label: expected NAME=VALUE (a label Prometheus adds to its alerts, as its external_labels), got "${v}"`);
        o.labels[m[1]!] = m[2]!;
        break;
      }
      case '--quiet':
        o.quiet = true;
        break;
      default:
        if (inline !== undefined) rest.push(a);
        else if (a.startsWith('--') && args[i + 1] !== undefined && !args[i + 1]!.startsWith('--')) rest.push(a, args[++i]!);
        else rest.push(a);
    }
  }
  return { options: o, rest };
}

/** RFC 3339, Unix seconds, `now` or `now-DURATION`. */
export function parseTime(flag: string, s: string, nowMs: number): number {
  const rel = /^now(?:-(.+))?$/.exec(s.trim());
  if (rel) {
    if (rel[1] === undefined) return nowMs;
    try {
      return nowMs - parseDuration(rel[1]);
    } catch {
      // reported below
    }
  } else if (/^\d+(\.\d+)?$/.test(s)) return Math.round(Number(s) * 1000);
  else if (/^\d{4}-\d{2}-\d{2}T/.test(s) && !Number.isNaN(Date.parse(s))) return Date.parse(s);
  throw new UsageError(`${flag}: expected an RFC 3339 time (2024-03-01T00:00:00Z), Unix seconds, now or now-DURATION (now-30d), got "${s}"`);
}

const iso = (ms: number) => new Date(ms).toISOString();

/** Progress on stderr: at most one line every 5 s (and the last), none with --quiet. */
function throttled(io: CliIo, quiet: boolean, now: () => number): (line: string, last: boolean) => void {
  let lastAt = now();
  return (line, last) => {
    if (quiet) return;
    const t = now();
    if (!last && t - lastAt < 5000) return;
    lastAt = t;
    io.err(line);
  };
}
