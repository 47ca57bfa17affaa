// DaemonSet undo, as `kubectl rollout undo daemonset/NAME [--to-revision=N]`: see controller-revision.ts.
import { RESOURCES } from '../kube/kube.js';
import { daemonSetState } from '../kube/rollout-status.js';
import { undoKind } from './common.js';
import { controllerRevisionAction } from './controller-revision.js';

export const daemonSetAction = controllerRevisionAction('DaemonSet', RESOURCES.daemonsets, daemonSetState);

/** DaemonSet: `name` is the DaemonSet; rule param toRevision; no options. */
export const daemonSetKind = undoKind('DaemonSet', daemonSetAction);
