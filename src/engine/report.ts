import { gitopsLines } from '../gitops/stage.js';
import { oneLine } from '../plain-text.js';
import type { RollbackRecord } from './record.js';

const iso = (ms: number | undefined) => (ms === undefined ? '–' : new Date(ms).toISOString());
const mins = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined ? '–' : `${((b - a) / 60_000).toFixed(1)} min`);

/**
 * Alert text (a label, an annotation) as one line of plain markdown text: control characters and
 * line breaks become spaces, and the characters markdown reads as syntax are escaped, so it can
 * neither open a heading, a table row or a section of its own, nor make a link, an image, HTML or
 * emphasis: `[Approve](https://…)` shows as typed.
 */
export function alertText(text: string): string {
  return oneLine(text)
    .trim()
    .replace(/[\\`*_[\]()<>#!|~&{}]/g, '\\$&')
    .replace(/^[-+=]/, '\\$&')
    .replace(/^(\d+)\./, '$1\\.');
}

/**
 * Text of the record's own (a guard's reason, a timeline step, the plan's summary, an outcome) as
 * one line of markdown that starts after a fixed prefix or inside a table cell: it may quote alert
 * text (`alert <name> received`, a target templated from labels), so its line breaks become spaces
 * and what could make a link, an image, HTML, code or a new table cell is escaped. Its other
 * characters stay as rollguard wrote them (`(from revision 2)`, `not_confirmed`).
 */
export function recordText(text: string): string {
  return oneLine(text).replace(/[\\`[\]<>|]/g, '\\$&');
}

/** A query in a code span, on one line; as escaped text when it holds a backtick (which would end the span). */
const code = (q: string) => (q.includes('`') ? recordText(q) : `\`${oneLine(q)}\``);

/** A markdown incident report of one rollback, in the shape of the runbooks' post-mortem template. */
export function incidentReport(r: RollbackRecord): string {
  const t = r.times;
  const lines = [
    `# Incident report: ${r.target}`,
    '',
    `Rollback \`${r.id}\` · state **${r.state}** · ${r.source === 'manual' ? `manual, requested by ${recordText(r.requestedBy ?? '')}` : `rule \`${r.rule}\` (${r.priority})`}`,
    '',
    '## What happened',
    '',
    r.alert
      ? `Alert **${alertText(r.alert.labels.alertname ?? '?')}** started firing at ${iso(r.alert.startsAt)}${r.alert.annotations.summary ? `: ${alertText(r.alert.annotations.summary)}` : ''}.`
      : `Manual rollback: ${recordText(r.reason ?? '')}`,
    r.confirmation ? `Prometheus: ${r.confirmation.outcome}: ${recordText(r.confirmation.reason)}${r.confirmation.query ? ` (${code(r.confirmation.query)})` : ''}.` : '',
    r.decision ? `Decision: ${r.decision.decision}: ${recordText(r.decision.reason)}.` : '',
    r.plan ? `Action: ${recordText(r.plan.summary)}.` : '',
    ...(r.plan?.configDrift ?? []).map((m) => `Configuration: ${recordText(m)}.`),
    r.outcome ? `Outcome: **${r.outcome.result}**: ${recordText(r.outcome.message)}.` : '',
    ...gitopsLines(r),
    '',
    '## When it was detected and how long it took',
    '',
    '| measure | value | runbook target |',
    '| --- | --- | --- |',
    `| time to detect (alert start → received) | ${mins(t.alertStartedAt, t.receivedAt)} | < 5 min |`,
    `| time to decide (received → decision) | ${mins(t.receivedAt, t.decidedAt)} | < 10 min |`,
    `| time to roll back (decision → rollout complete) | ${mins(t.decidedAt, t.completedAt)} | < 15 min |`,
    `| time to recover (alert start → healthy or resolved) | ${mins(t.alertStartedAt, t.verifiedAt ?? t.resolvedAt)} | < 30 min |`,
    '',
    '## Why a rollback was (or was not) done: the guards',
    '',
    ...(r.guards.length ? ['| guard | verdict | reason |', '| --- | --- | --- |', ...r.guards.map((g) => `| ${g.guard} | ${g.result} | ${recordText(g.reason)} |`)] : ['No guard ran.']),
    '',
    '## Timeline',
    '',
    '| time (UTC) | step | what |',
    '| --- | --- | --- |',
    ...r.timeline.map((e) => `| ${iso(e.at)} | ${recordText(e.step)} | ${recordText(e.message)} |`),
    '',
    '## Impact',
    '',
    ...[r.alert?.annotations.description ?? r.alert?.annotations.summary].map((a) => (a === undefined ? '_to be written: users affected, duration_' : alertText(a))),
    '',
    '## Root cause',
    '',
    '_to be written_',
    '',
    '## Action items',
    '',
    '- [ ] Add automated tests for the bug',
    '- [ ] Improve monitoring/alerting',
    '- [ ] Update the deployment checklist',
    '- [ ] Consider a canary deployment strategy',
    '- [ ] Document lessons learned',
    '',
  ];
  return lines.filter((l, i, a) => !(l === '' && a[i - 1] === '')).join('\n');
}
