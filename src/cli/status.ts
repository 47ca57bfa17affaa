import type { Status } from '../http/status.js';
import { EXIT, shape } from './client.js';
import { runCommand, who, type CommandEnv, type CommandSpec } from './command.js';
import { cell, fields, relative, render, table } from './format.js';

/**
 * `rollguard status`, `pause`, `resume`: the first things the person on call asks and does. status
 * reads GET /v1/status (one answer: paused, open rollbacks, pending approvals, the last rollback,
 * the store's and Prometheus' health) and exits 8 when the store or a configured Prometheus does
 * not answer, so a script can tell.
 */

interface PauseState {
  paused: boolean;
  by?: string;
  at?: number;
  reason?: string;
}

/** What status and pause/resume print: checked in each answer. */
const STATUS = shape("rollguard's status", { version: 'string', store: 'object', prometheus: 'object', rules: 'object' });
const PAUSE = shape('a pause state', { paused: 'boolean' });

function pausedText(p: PauseState | null, now: number): string {
  if (!p) return 'unknown (the store does not answer)';
  if (!p.paused) return 'no';
  return `YES, by ${p.by ?? '?'} ${relative(p.at, now)}${p.reason ? `: ${p.reason}` : ''} (no rollback runs; rollguard resume)`;
}

export function statusText(s: Status, url: string, now: number): string {
  const open = s.open ?? {};
  const n = (state: string) => `${open[state] ?? 0}${s.capped ? '+' : ''}`;
  const pairs: Array<[string, string]> = [
    ['rollguard', `${s.version} at ${url} (replica ${s.replica}${s.dryRun ? ', DRY RUN: changes nothing' : ''})`],
    ['Paused', pausedText(s.paused, now)],
    ['Pending approvals', s.open ? n('pending_approval') : '-'],
    ['In flight', s.open ? `${n('in_progress')} rolling back, ${n('deciding')} deciding, ${n('held')} held, ${n('scheduled')} scheduled` : '-'],
    ['Last rollback', s.lastRollback ? `${s.lastRollback.id} ${s.lastRollback.target} ${s.lastRollback.state} ${relative(s.lastRollback.createdAt, now)}` : s.open ? 'none' : '-'],
    ['Store', `${s.store.kind}: ${s.store.ok ? 'ok' : `FAILING: ${s.store.detail}`}`],
    ['Prometheus', !s.prometheus.configured ? `not configured: ${s.prometheus.detail}` : s.prometheus.ok ? 'ok' : `FAILING: ${s.prometheus.detail}`],
    ['Rules', `${s.rules.loaded} loaded`],
  ];
  const out = [fields(pairs)];
  if (s.pendingApprovals?.length) {
    out.push('', 'Pending approval (rollguard rollbacks approve|reject ID):');
    out.push(table(['ID', 'TARGET', 'RULE', 'AGE', 'EXPIRES'], s.pendingApprovals.map((r) => [r.id, r.target, r.rule ?? 'manual', relative(r.createdAt, now).replace(/ ago$/, ''), relative(r.dueAt, now)])));
  }
  return out.join('\n');
}

const status: CommandSpec = {
  name: 'status',
  usage: '',
  summary: "Shows whether rollguard is paused, the rollbacks pending approval and in flight, the last rollback, and the store's and Prometheus' health.",
  details: ['Exits 8 when the store or the configured Prometheus does not answer.'],
  args: [0, 0],
  async run({ client, io, output, now }) {
    const s = await client.get<Status>('/v1/status', {}, STATUS);
    io.out(render(output, s, () => statusText(s, client.url, now())));
    return s.store.ok && (!s.prometheus.configured || s.prometheus.ok) ? EXIT.ok : EXIT.degraded;
  },
};

const by = { type: 'string' as const, value: 'NAME', help: 'who, kept in the pause state and the log (default: the local user name)' };

const pause: CommandSpec = {
  name: 'pause',
  usage: '[--reason TEXT] [--by NAME]',
  summary: 'Pauses every rollback, on every replica, until resumed (the kill switch). Needs the admin token.',
  options: { reason: { type: 'string', value: 'TEXT', help: 'why, shown by status and in blocked records' }, by },
  args: [0, 0],
  async run({ values, client, io, output, now }) {
    const p = await client.post<PauseState>('/v1/pause', { by: who(values), ...(typeof values.reason === 'string' ? { reason: values.reason } : {}) }, PAUSE);
    io.out(render(output, p, () => cell(`paused: ${pausedText(p, now())}`)));
    return EXIT.ok;
  },
};

const resume: CommandSpec = {
  name: 'resume',
  usage: '',
  summary: 'Resumes rollbacks after a pause. Needs the admin token.',
  args: [0, 0],
  async run({ client, io, output }) {
    const p = await client.post<PauseState>('/v1/resume', {}, PAUSE);
    io.out(render(output, p, () => 'resumed: rollbacks run again'));
    return EXIT.ok;
  },
};

export const STATUS_COMMANDS = { status, pause, resume };

export function statusCommand(name: keyof typeof STATUS_COMMANDS, argv: string[], env: CommandEnv): Promise<number> {
  return runCommand(STATUS_COMMANDS[name], argv, env);
}
