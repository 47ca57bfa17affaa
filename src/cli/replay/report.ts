import { wouldAsk } from '../../guards/approval.js';
import { alertText, recordText } from '../../engine/report.js';
import { formatDuration } from '../../rules/duration.js';
import { cell as line, jsonText } from '../format.js';
import type { ReplaySummary } from './summary.js';
import type { ReplayAlert, ReplayAlertResult, ReplayRow } from './types.js';

/**
 * The replay's report in three forms: text for a terminal, markdown for a pull request comment,
 * JSON for tools (every time in ms and ISO 8601). Each row says what rollguard would have done for
 * one alert, rule and target, and when; the summary counts them.
 *
 * The text and markdown quote alert labels (ALERTS keeps whatever a scraped series carried), each
 * value a JSON string (labelsOf: two alerts' labels never print alike), and the report also goes
 * to a file (--out) that no terminal filter reads first: each text line is
 * folded to one line with no control or bidirectional character (a line break in a label would
 * forge a line of its own: "ROLLED BACK"), and each markdown cell is written as the incident report
 * writes alert text (recordText: markdown's link, HTML, code and table characters escaped too).
 */

export interface ReplayReport {
  range: { from: number; to: number };
  prometheus: string;
  ruleFiles: string[];
  settings: { groupWaitMs: number; inFlightMs: number; stepMs: number; scope: string; budgetClusterPerHour: number; maxConcurrentRollbacks: number };
  notReplayed: string[];
  summary: ReplaySummary;
  alerts: ReplayAlertResult[];
  queries: number;
  elapsedMs: number;
}

export type ReportFormat = 'text' | 'markdown' | 'json';

export function render(r: ReplayReport, format: ReportFormat): string {
  if (format === 'json') return jsonText(toJson(r), 2);
  return format === 'markdown' ? markdown(r) : text(r);
}

const when = (ms: number) => new Date(ms).toISOString().replace('T', ' ').replace(/\.000Z$/, 'Z');
const after = (ms: number) => formatDuration(Math.max(0, Math.round(ms / 1000) * 1000));
/** A label name as Prometheus writes it: bare when it is a classic one, else quoted (Prometheus 3's UTF-8 names). */
const CLASSIC_LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
/**
 * An alert's labels but its alertname, `{name="value", ...}`, each value (and a name that is not a
 * classic one) a JSON string: a quote, a backslash or a control character in it is an escape, so
 * that two alerts with other labels never print alike. Until 2026-12-08 values were printed as they
 * came and then folded to one line: `pod="a\nb"` and `pod="a b"` printed alike, and a value
 * `x", namespace="prod` printed as a label `namespace="prod"` the alert did not have.
 */
const labelsOf = (a: ReplayAlert) =>
  `{${Object.entries(a.labels)
    .filter(([k]) => k !== 'alertname')
    .map(([k, v]) => `${CLASSIC_LABEL_NAME.test(k) ? k : jsonText(k)}=${jsonText(v)}`)
    .join(', ')}}`;

/** What rollguard would have done, in one line. */
export function describeRow(r: ReplayRow, a: ReplayAlert): string {
  switch (r.outcome) {
    case 'rolled_back':
      return `ROLLED BACK at ${when(r.at)}, ${after(r.at - a.startsAt)} after the alert started`;
    case 'blocked':
      return `blocked by ${r.guard} at ${when(r.at)}: ${r.reason}`;
    case 'approval':
      return `waited for approval from ${when(r.at)} (${after(r.at - a.startsAt)} after the alert started; the request expires ${when(r.until ?? r.at)}): ${r.reason}`;
    case 'dry_run': {
      // the approval guard's verdict on a dry run that a rollback would have asked approval for
      const ask = wouldAsk(r.guards);
      return `dry run at ${when(r.at)} (would have ${ask ? 'asked for approval to roll back' : 'rolled back'}; recorded only): ${r.reason}${ask ? `; ${ask.reason}` : ''}`;
    }
    case 'not_confirmed':
      return `not confirmed at ${when(r.at)}${r.confirmation?.measured ? ` (${r.confirmation.measured})` : ''}: ${r.reason}`;
    case 'resolved':
      return `not rolled back: ${r.reason}`;
    case 'notified':
      return `notify only at ${when(r.at)}: ${r.reason}`;
    case 'held':
      return `held at ${when(r.at)}: ${r.reason}`;
    case 'not_judged':
      return `could not be judged: ${r.reason}`;
    case 'error':
      return `error: ${r.reason}`;
  }
}

function counts(m: Record<string, number>): string {
  const e = Object.entries(m).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
  return e.length ? e.map(([k, n]) => `${k} ${n}`).join(', ') : 'none';
}

function header(r: ReplayReport): string[] {
  const s = r.summary;
  return [
    `rollguard replay of ${when(r.range.from)} to ${when(r.range.to)}, Prometheus ${r.prometheus}, rules ${r.ruleFiles.join(', ')}`,
    `${s.alerts} alert(s) replayed${s.alreadyFiring ? ` (${s.alreadyFiring} already firing at --from, not replayed)` : ''}; ${r.queries} queries in ${(r.elapsedMs / 1000).toFixed(1)} s`,
  ];
}

function text(r: ReplayReport): string {
  const s = r.summary;
  const o = s.outcomes;
  const lines = [...header(r), '', 'Summary', `  rollbacks: ${s.rollbacks}${s.timeToRollback ? ` (alert start to rollback: median ${after(s.timeToRollback.median)}, max ${after(s.timeToRollback.max)})` : ''}`];
  for (const [target, n] of Object.entries(s.rollbacksByTarget).sort()) lines.push(`    ${target}: ${n}`);
  lines.push(
    `  rollbacks per rule: ${counts(s.rollbacksByRule)}`,
    `  blocked, per guard: ${counts(s.blockedByGuard)}`,
    `  waited for approval: ${o.approval}; dry run: ${o.dry_run}; not confirmed: ${o.not_confirmed}; resolved before a re-check or window: ${o.resolved}; notify only: ${o.notified}; held: ${o.held}; could not be judged: ${o.not_judged}; errors: ${o.error}`,
    `  alerts no rule matched: ${counts(s.unmatched)}`,
    `  rules that never fired: ${s.rulesNeverFired.length ? s.rulesNeverFired.join(', ') : 'none'}`,
    `  not replayed: ${r.notReplayed.join('; ')}`,
    '',
    'Alerts',
  );
  for (const { alert: a, rows } of r.alerts) {
    const end = a.endsAt === undefined ? 'still firing at --to' : `until ${when(a.endsAt)} (${after(a.endsAt - a.startsAt)})`;
    lines.push(`${when(a.startsAt)}  ${a.labels.alertname ?? '(no alertname)'} ${labelsOf(a)} ${end}`);
    if (a.startedBeforeRange) lines.push('  already firing at --from: not replayed');
    else if (rows.length === 0) lines.push('  no rule matches');
    for (const row of rows) {
      lines.push(`  ${row.rule} (${row.priority}) ${row.target}: ${describeRow(row, a)}`);
      if (row.outcome === 'rolled_back' && row.confirmation?.measured) lines.push(`      ${row.confirmation.measured}; ${row.reason}`);
      for (const n of row.notJudged) lines.push(`      ${n}`);
    }
  }
  return lines.map(line).join('\n');
}

/** Table cells: one line, no control character, markdown's syntax escaped (pipes included). */
const cell = recordText;

function markdown(r: ReplayReport): string {
  const s = r.summary;
  const o = s.outcomes;
  const lines = [
    `### rollguard replay: ${when(r.range.from)} to ${when(r.range.to)}`,
    '',
    `**${s.rollbacks} rollback(s)**, ${o.blocked} blocked by a guard, ${o.approval} waiting for approval, ${o.not_confirmed} not confirmed, over ${s.alerts} alert(s). Rules: ${r.ruleFiles.map((f) => `\`${f}\``).join(', ')}.`,
    '',
  ];
  if (s.rollbacks > 0) {
    lines.push('| target | rollbacks |', '| --- | ---: |');
    for (const [t, n] of Object.entries(s.rollbacksByTarget).sort()) lines.push(`| \`${t}\` | ${n} |`);
    lines.push('');
  }
  lines.push(
    '| | |',
    '| --- | --- |',
    `| rollbacks per rule | ${cell(counts(s.rollbacksByRule))} |`,
    `| blocked, per guard | ${cell(counts(s.blockedByGuard))} |`,
    `| alert start to rollback | ${s.timeToRollback ? `median ${after(s.timeToRollback.median)}, max ${after(s.timeToRollback.max)}` : '–'} |`,
    `| alerts no rule matched | ${cell(counts(s.unmatched))} |`,
    `| rules that never fired | ${s.rulesNeverFired.length ? s.rulesNeverFired.map((n) => `\`${n}\``).join(', ') : 'none'} |`,
    `| could not be judged | ${s.notJudged} row(s) |`,
    '',
    `<details><summary>Every alert (${s.alerts})</summary>`,
    '',
    '| alert started | alert | rule | target | what rollguard would have done |',
    '| --- | --- | --- | --- | --- |',
  );
  for (const { alert: a, rows } of r.alerts) {
    if (a.startedBeforeRange) continue;
    const name = alertText(`${a.labels.alertname ?? ''} ${labelsOf(a)}`);
    if (rows.length === 0) lines.push(`| ${when(a.startsAt)} | ${name} | – | – | no rule matches |`);
    for (const row of rows) {
      const extra = [row.outcome === 'rolled_back' ? row.confirmation?.measured : undefined, ...row.notJudged].filter(Boolean).join('; ');
      lines.push(`| ${when(a.startsAt)} | ${name} | \`${row.rule}\` | \`${row.target}\` | ${cell(describeRow(row, a))}${extra ? ` (${cell(extra)})` : ''} |`);
    }
  }
  lines.push('', '</details>', '', `Not replayed: ${r.notReplayed.join('; ')}. ${r.queries} read-only queries to Prometheus.`);
  return lines.join('\n');
}

function toJson(r: ReplayReport): unknown {
  const t = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString());
  return {
    range: { from: t(r.range.from), to: t(r.range.to) },
    prometheus: r.prometheus,
    ruleFiles: r.ruleFiles,
    settings: r.settings,
    notReplayed: r.notReplayed,
    summary: r.summary,
    queries: r.queries,
    elapsedMs: r.elapsedMs,
    alerts: r.alerts.map(({ alert: a, rows }) => ({
      alertname: a.labels.alertname ?? null,
      labels: a.labels,
      fingerprint: a.fingerprint,
      startsAt: t(a.startsAt),
      endsAt: t(a.endsAt),
      startedBeforeRange: a.startedBeforeRange,
      matched: rows.length > 0,
      rows: rows.map((row) => ({
        ...row,
        atIso: t(row.at),
        afterStartMs: row.at - a.startsAt,
        ...(row.until !== undefined ? { untilIso: t(row.until) } : {}),
        decisions: row.decisions.map((d) => ({ ...d, atIso: t(d.at) })),
        text: describeRow(row, a),
      })),
    })),
  };
}
