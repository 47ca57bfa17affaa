import { allow, block, type Guard, type GuardContext } from './guard.js';

/**
 * Why this rollback is a dry run (the dry-run guard's block reason), or undefined when it is not:
 * globally (DRY_RUN), for its rule, or asked for by its request. The budget and concurrency guards
 * ask it too: a dry run holds no unit of a budget and no slot (it would refuse real rollbacks for
 * the moment it decides, and other dry runs, for what nothing spent).
 */
export function dryRunReason({ record, settings, config }: Pick<GuardContext, 'record' | 'settings' | 'config'>): string | undefined {
  if (config.DRY_RUN) return 'dry-run is on for rollguard (DRY_RUN)';
  if (settings.dryRun) return `dry-run is on for rule ${record.rule}`;
  if (record.dryRun) return (record.chain?.index ?? 0) > 0 ? 'the ordered chain it is part of went on from a dry run' : 'dry-run was asked for this rollback';
  return undefined;
}

/**
 * Dry-run, global (DRY_RUN, on by default when no cluster is configured) and per rule: the
 * rollback is planned and recorded with every other guard's verdict, and nothing is changed. It
 * runs last so that a dry run shows what every other guard would have said.
 */
export const dryRunGuard: Guard = {
  name: 'dry-run',
  needsPlan: true,
  async check(ctx) {
    const why = dryRunReason(ctx);
    return why ? block(why) : allow('not a dry run');
  },
};
