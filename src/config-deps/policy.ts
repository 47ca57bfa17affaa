// The rule's configDrift policy (guards.configDrift), applied by the approval guard to a plan
// whose target revision's ConfigMaps or Secrets changed after it was created (check.ts):
//  - warn (the default): roll back, and the record, the notifications and the report say what drifted;
//  - approve: wait for a human through the approval path, the drift named in the request;
//  - restore: with CONFIG_SNAPSHOTS on, each drifted object whose snapshot was current when the
//    target revision was created is written back first, in the same fenced writes as the workload
//    (restore.ts), and the rollback goes on without waiting. An object that cannot be restored (no
//    such snapshot, CONFIG_SNAPSHOTS off, a Secret without CONFIG_SNAPSHOTS_SECRETS, an object that
//    could not be read) makes it wait for a human as with approve, saying why.
//
//      guards:
//        configDrift: restore   # and CONFIG_SNAPSHOTS=true (chart: configSnapshots.enabled)
import type { RollbackPlan } from '../actions/action.js';

export const CONFIG_DRIFT_POLICIES = ['warn', 'approve', 'restore'] as const;
export type ConfigDriftPolicy = (typeof CONFIG_DRIFT_POLICIES)[number];

/** Why the approval guard must wait because of configuration drift, or undefined when it need not. */
export function driftApprovalReason(policy: ConfigDriftPolicy, plan: RollbackPlan | undefined): string | undefined {
  const drift = plan?.configDrift ?? [];
  if (drift.length === 0 || policy === 'warn') return undefined;
  const what = drift.map((d) => d.message).join('; ');
  if (policy === 'approve') return `configDrift: approve, and ${what}`;
  const left = drift.filter((d) => !d.restore);
  if (left.length === 0) return undefined;
  // no reason given: the plan was made without snapshots (CONFIG_SNAPSHOTS off)
  const why = left.some((d) => d.notRestored)
    ? left.map((d) => `${d.kind} ${d.namespace}/${d.name} cannot be restored (${d.notRestored ?? 'not looked at'})`).join('; ')
    : 'rollguard keeps no snapshot of the configuration to restore (CONFIG_SNAPSHOTS is off)';
  return `configDrift: restore, but ${why}, so a human decides as with approve: ${left.map((d) => d.message).join('; ')}`;
}
