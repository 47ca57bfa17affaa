import { allow, block, type Guard } from './guard.js';

/**
 * Dry-run, global (DRY_RUN, on by default when no cluster is configured) and per rule: the
 * rollback is planned and recorded with every other guard's verdict, and nothing is changed. It
 * runs last so that a dry run shows what every other guard would have said.
 */
export const dryRunGuard: Guard = {
  name: 'dry-run',
  needsPlan: true,
  async check({ record, settings, config }) {
    if (config.DRY_RUN) return block('dry-run is on for rollguard (DRY_RUN)');
    if (settings.dryRun) return block(`dry-run is on for rule ${record.rule}`);
    if (record.dryRun) return block('dry-run was asked for this rollback');
    return allow('not a dry run');
  },
};
