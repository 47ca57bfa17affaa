// The registry of rollback kinds: one line per kind.
import type { Action, TargetKind } from './action.js';
import { argoRolloutAction } from './argo-rollout.js';
import { blueGreenAction } from './blue-green.js';
import { canaryAction } from './canary.js';
import { daemonSetAction } from './daemonset.js';
import { deploymentAction } from './deployment.js';
import { createHelmAction, type HelmActionOptions } from './helm.js';
import { statefulSetAction } from './statefulset.js';

export type { Action, ActionContext, ExecuteResult, RollbackPlan, TargetKind, TargetRef, VerifyResult } from './action.js';

/** Every action kind; pass helm options (binary, kubeconfig) when rollguard's cluster is not helm's default. */
export function createActions(opts: { helm?: HelmActionOptions } = {}): Record<TargetKind, Action> {
  return {
    Deployment: deploymentAction,
    StatefulSet: statefulSetAction,
    DaemonSet: daemonSetAction,
    Rollout: argoRolloutAction,
    BlueGreen: blueGreenAction,
    Canary: canaryAction,
    HelmRelease: createHelmAction(opts.helm),
  };
}
