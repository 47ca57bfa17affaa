import type { RollbackRecord } from '../engine/record.js';
import { STATES } from '../engine/record.js';
import { targetKinds } from '../rules/targets.js';
import { CliError, EXIT } from './client.js';
import { runGroup, who, type CommandEnv, type CommandSpec } from './command.js';
import { cell, render } from './format.js';
import { limitValue, parseTarget, recordCommands } from './record-commands.js';
import { describe, FILTER_OPTIONS, RECORD, RECORDS, recordFilter, recordsTable } from './records.js';
import { watchCommand } from './watch.js';

/**
 * `rollguard rollbacks list|get|report|approve|reject|create|resume-gitops|watch`: the records and
 * the admin actions of the HTTP API, for the person on call (in the spirit of amtool and the Argo
 * Rollouts kubectl plugin). Reads take the read or the admin token; approve, reject, create and
 * resume-gitops the admin one.
 */

const { id: rollbackId, get, report } = recordCommands<RollbackRecord>({
  group: 'rollbacks',
  noun: 'rollback',
  base: '/v1/rollbacks',
  id: /^rb-[a-z0-9-]{1,40}$/,
  example: 'rb-1a2b3c…',
  shape: RECORD,
  get: { summary: 'Shows one rollback record: its decision, plan, guard verdicts, approval, outcome and timeline.', describe },
  report: { summary: "Prints a rollback's incident report (markdown), ready for the post-mortem." },
});

const list: CommandSpec = {
  name: 'rollbacks list',
  usage: '[--state STATE] [--target KIND/NAMESPACE/NAME] [--limit N] [--cursor CURSOR]',
  summary: 'Lists rollback records, newest first.',
  details: [`states: ${STATES.join(', ')}`],
  options: {
    ...FILTER_OPTIONS,
    limit: { type: 'string', value: 'N', help: 'at most N records (default 100, at most 1000)' },
    cursor: { type: 'string', value: 'CURSOR', help: 'the next page: the cursor an earlier list printed (nextCursor)' },
  },
  args: [0, 0],
  async run({ values, client, io, output, now }) {
    const { state, target } = recordFilter(values);
    const limit = limitValue(values);
    const res = await client.get<{ rollbacks: RollbackRecord[]; nextCursor?: string | null }>('/v1/rollbacks', { state, target, limit, cursor: values.cursor as string | undefined }, RECORDS);
    const more = res.nextCursor ? `\n(more: rollguard rollbacks list --cursor ${res.nextCursor}${state ? ` --state ${state}` : ''}${target ? ` --target ${target}` : ''}${limit ? ` --limit ${limit}` : ''})` : '';
    io.out(render(output, res, () => recordsTable(res.rollbacks, now()) + more));
    return EXIT.ok;
  },
};

function decision(verb: 'approve' | 'reject'): CommandSpec {
  return {
    name: `rollbacks ${verb}`,
    usage: 'ID [--comment TEXT] [--by NAME]',
    summary: verb === 'approve' ? 'Approves a rollback pending approval: it runs at once, through the guards again.' : 'Rejects a rollback pending approval: nothing is done, the record says who and why.',
    details: [`Needs the admin token. Exits 6 when the rollback is not pending approval (answered already, expired)${verb === 'approve' ? ', or while rollguard is paused (it stays pending: approve it after the resume)' : ''}.`],
    options: {
      comment: { type: 'string', value: 'TEXT', help: 'why, kept in the record' },
      by: { type: 'string', value: 'NAME', help: 'who answers, kept in the record (default: the local user name)' },
    },
    args: [1, 1],
    async run({ args, values, client, io, output }) {
      const id = rollbackId(args[0]);
      const by = who(values);
      const rec = await client.post<RollbackRecord>(`/v1/rollbacks/${id}/${verb}`, { by, ...(typeof values.comment === 'string' ? { comment: values.comment } : {}) }, RECORD);
      const human = verb === 'approve' ? `${rec.id} approved by ${by}: rolling back ${rec.target} now (rollguard rollbacks get ${rec.id} follows it)` : `${rec.id} rejected by ${by}: ${rec.target} is left as it is`;
      io.out(render(output, rec, () => cell(human)));
      return EXIT.ok;
    },
  };
}

const create: CommandSpec = {
  name: 'rollbacks create',
  usage: 'KIND/NAMESPACE/NAME --reason TEXT [--to-revision N] [--dry-run]',
  summary: 'Asks for a manual rollback, through the same guards as an alert (pause, scope, lock, cooldown, budget…).',
  details: [`kinds: ${targetKinds.join(', ')}. Needs the admin token. Without --to-revision: the previous revision.`],
  options: {
    reason: { type: 'string', value: 'TEXT', help: 'why (required): kept in the record and in kubernetes.io/change-cause' },
    'to-revision': { type: 'string', value: 'N', help: 'the revision to go back to (default: the previous one)' },
    'dry-run': { type: 'boolean', help: 'plan and run the guards, change nothing' },
    by: { type: 'string', value: 'NAME', help: 'who asks, kept in the record (default: the local user name)' },
  },
  args: [1, 1],
  async run({ args, values, client, io, output }) {
    const target = parseTarget(args[0]!, targetKinds, 'Deployment/shop/checkout', (kind) => `unknown kind ${JSON.stringify(kind)}: expected one of ${targetKinds.join(', ')}`);
    const reason = typeof values.reason === 'string' ? values.reason.trim() : '';
    if (!reason) throw new CliError('--reason is required: say why (it goes into the record and kubernetes.io/change-cause)', EXIT.usage);
    const rev = values['to-revision'];
    if (rev !== undefined && (typeof rev !== 'string' || !/^[1-9]\d*$/.test(rev))) throw new CliError(`--to-revision: expected a revision number (1, 2, …), got ${JSON.stringify(rev)}`, EXIT.usage);
    const body = { ...target, reason, requestedBy: who(values), dryRun: values['dry-run'] === true, ...(rev !== undefined ? { toRevision: Number(rev) } : {}) };
    const rec = await client.post<RollbackRecord>('/v1/rollbacks', body, RECORD);
    io.out(render(output, rec, () => cell(`${rec.id} created: rollback of ${rec.target}${body.dryRun ? ' (dry run)' : ''} requested by ${body.requestedBy}, ${rec.state} (rollguard rollbacks get ${rec.id} follows it)`)));
    return EXIT.ok;
  },
};

const resumeGitops: CommandSpec = {
  name: 'rollbacks resume-gitops',
  usage: 'ID [--reverted ID,ID… | --all-reverted] [--by NAME]',
  summary: 'Puts back exactly what a rollback suspended on its Argo CD / Flux owners, once the bad commit is reverted in git.',
  details: [
    'Needs the admin token. Exits 6 when the rollback suspended nothing, was resumed already or is still in progress,',
    'and when other rollbacks wrote while the owner was paused (its controller would put their bad revisions back):',
    'the answer names them; revert their bad commits in git too, then name them with --reverted. Once the suspension is',
    'about as old as RECORD_RETENTION, their records may be gone: check every workload under the owner, then --all-reverted.',
  ],
  options: {
    reverted: { type: 'string', value: 'ID,ID…', help: 'the other rollbacks relying on the same owners, whose bad commits are reverted in git too' },
    'all-reverted': { type: 'boolean', help: 'every workload under the owners runs a reverted or good commit in git (named or not)' },
    by: { type: 'string', value: 'NAME', help: 'who resumes, kept in the record (default: the local user name)' },
  },
  args: [1, 1],
  async run({ args, values, client, io, output }) {
    const id = rollbackId(args[0]);
    const by = who(values);
    const list = typeof values.reverted === 'string' ? values.reverted.split(',').map((s) => s.trim()).filter((s) => s !== '') : [];
    const reverted = list.map((r) => {
      try {
        return rollbackId(r);
      } catch (err) {
        throw new CliError(`--reverted: ${(err as Error).message}`, EXIT.usage);
      }
    });
    const all = values['all-reverted'] === true;
    const rec = await client.post<RollbackRecord>(`/v1/rollbacks/${id}/resume-gitops`, { by, ...(reverted.length ? { reverted } : {}), ...(all ? { allReverted: true } : {}) }, RECORD);
    const restored = rec.gitops?.resumed?.restored ?? [];
    io.out(render(output, rec, () => cell(`${rec.id}: GitOps owners resumed by ${by}${restored.length ? `: ${restored.join('; ')}` : ''}`)));
    return EXIT.ok;
  },
};

export const ROLLBACK_COMMANDS: CommandSpec[] = [list, get, report, decision('approve'), decision('reject'), create, resumeGitops, watchCommand];

export function rollbacksCommand(argv: string[], env: CommandEnv): Promise<number> {
  return runGroup('rollbacks', ROLLBACK_COMMANDS, argv, env);
}
