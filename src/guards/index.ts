import { approvalGuard } from './approval.js';
import { budgetGuard } from './budget.js';
import { concurrencyGuard } from './concurrency.js';
import { cooldownGuard } from './cooldown.js';
import { dryRunGuard } from './dry-run.js';
import type { Guard } from './guard.js';
import { lockGuard } from './lock.js';
import { pauseGuard } from './pause.js';
import { recentDeployGuard } from './recent-deploy.js';
import { scopeGuard } from './scope.js';

/**
 * The guards, in the fixed order they run (docs/guards.md). The first three need no cluster read;
 * the plan (a read of the target's revisions) is made after the lock is taken (a dry run takes
 * none: it reads who holds it), then the rest run on it. Dry-run runs last so a dry run shows every other guard's verdict.
 */
export const GUARDS: readonly Guard[] = [
  pauseGuard,
  scopeGuard,
  lockGuard,
  recentDeployGuard,
  cooldownGuard,
  budgetGuard,
  concurrencyGuard,
  approvalGuard,
  dryRunGuard,
];

export type { Guard, GuardContext, GuardResult, Produced } from './guard.js';
