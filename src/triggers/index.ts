import { crashLoop } from './crash-loop.js';
import { custom } from './custom.js';
import { deploymentFailed } from './deployment-failed.js';
import { errorRate } from './error-rate.js';
import { healthCheck } from './health-check.js';
import { latency } from './latency.js';
import { memory } from './memory.js';
import type { TriggerKind, TriggerKindName } from './types.js';

/** The trigger kinds. Adding one: one file and one line here. */
export const triggerKinds: Record<TriggerKindName, TriggerKind> = {
  error_rate: errorRate,
  latency,
  health_check: healthCheck,
  memory,
  crash_loop: crashLoop,
  deployment_failed: deploymentFailed,
  custom,
};

export const triggerKindNames = Object.keys(triggerKinds) as TriggerKindName[];

export type { TriggerKind, TriggerKindName, TriggerSpec, CompareOp, BaselineSpec } from './types.js';
export { judge, type Judgement, type JudgeOutcome } from './judge.js';
