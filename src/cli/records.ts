import { STATES, type RollbackRecord } from '../engine/record.js';
import { CliError, EXIT, shape } from './client.js';
import type { CommandInput, OptionSpec } from './command.js';
import { clip, fields, relative, table } from './format.js';

/** How the CLI filters rollback records and shows them to people (rollbacks list, get, watch; status). */

/** What the commands print of a rollback record, and of a page of them: checked in each answer. */
export const RECORD = shape('a rollback record', { id: 'string', target: 'string', state: 'string' });
export const RECORDS = shape('a list of rollback records', { rollbacks: [RECORD] });

/** --state and --target, as `rollbacks list` and `rollbacks watch` take them. */
export const FILTER_OPTIONS: Record<'state' | 'target', OptionSpec> = {
  state: { type: 'string', value: 'STATE', help: 'only records in this state (e.g. pending_approval)' },
  target: { type: 'string', value: 'TARGET', help: 'only records of this target, e.g. Deployment/shop/checkout' },
};

/** The filter of GET /v1/rollbacks from --state and --target; an unknown state is a usage error. */
export function recordFilter(values: CommandInput['values']): { state: string | undefined; target: string | undefined } {
  const state = values.state as string | undefined;
  if (state !== undefined && !(STATES as readonly string[]).includes(state)) throw new CliError(`--state: expected one of ${STATES.join(', ')}, got ${JSON.stringify(state)}`, EXIT.usage);
  return { state, target: values.target as string | undefined };
}

/** What caused a record: its rule, or who asked for it by hand. */
export function trigger(r: RollbackRecord): string {
  if (r.source === 'manual') return `manual (${r.requestedBy ?? '?'})`;
  if (r.source === 'drill') return `${r.rule ?? '-'} (drill ${r.drill ?? '?'})`;
  return r.rule ?? '-';
}

/** The state, with the deadline of a pending approval or the due time of a held or scheduled one. */
export function stateText(r: Pick<RollbackRecord, 'state' | 'dueAt' | 'dryRun'>, now: number): string {
  const due = r.dueAt !== undefined && ['pending_approval', 'held', 'scheduled'].includes(r.state) ? ` (${r.state === 'pending_approval' ? 'expires' : 'due'} ${relative(r.dueAt, now)})` : '';
  return `${r.state}${due}`;
}

export function recordsTable(recs: RollbackRecord[], now: number): string {
  if (recs.length === 0) return 'no rollbacks';
  return table(
    ['ID', 'TARGET', 'STATE', 'TRIGGER', 'AGE'],
    recs.map((r) => [r.id, r.target, stateText(r, now), trigger(r), relative(r.createdAt, now).replace(/ ago$/, '')]),
  );
}

export function describe(r: RollbackRecord, now: number): string {
  const when = (t: number | undefined) => (t === undefined ? '-' : `${relative(t, now)} (${new Date(t).toISOString()})`);
  const pairs: Array<[string, string]> = [
    ['ID', r.id],
    ['Target', r.target],
    ['State', stateText(r, now)],
    ['Source', r.source === 'manual' ? `manual, by ${r.requestedBy ?? '?'}: ${r.reason ?? ''}` : `${r.source === 'drill' ? `drill ${r.drill ?? '?'}: ` : ''}alert ${r.alert?.labels.alertname ?? '?'}${r.rule ? `, rule ${r.rule}` : ''}${r.priority ? ` (${r.priority})` : ''}`],
    ['Created', when(r.createdAt)],
    ['Updated', when(r.updatedAt)],
    ['Dry run', r.dryRun ? 'yes' : 'no'],
  ];
  if (r.confirmation) pairs.push(['Confirmation', `${r.confirmation.outcome}: ${r.confirmation.reason}`]);
  if (r.decision) pairs.push(['Decision', `${r.decision.decision}: ${r.decision.reason}`]);
  if (r.plan) pairs.push(['Plan', r.plan.summary]);
  if (r.approval) pairs.push(['Approval', `${r.approval.decision} by ${r.approval.by} ${relative(r.approval.at, now)}${r.approval.comment ? `: ${r.approval.comment}` : ''}`]);
  if (r.outcome) pairs.push(['Outcome', `${r.outcome.result}: ${r.outcome.message}`]);
  const out = [fields(pairs)];
  if (r.guards?.length) out.push('', 'Guards:', table(['GUARD', 'RESULT', 'REASON'], r.guards.map((g) => [g.guard, g.result, clip(g.reason, 160)])));
  if (r.timeline?.length) out.push('', 'Timeline:', table(['AGE', 'STEP', 'MESSAGE'], r.timeline.map((e) => [relative(e.at, now).replace(/ ago$/, ''), e.step, clip(e.message, 160)])));
  return out.join('\n');
}

