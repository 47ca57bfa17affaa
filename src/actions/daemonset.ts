// DaemonSet undo, as `kubectl rollout undo daemonset/NAME [--to-revision=N]`: see controller-revision.ts.
import { RESOURCES } from '../kube/client.js';
import { daemonSetState } from '../kube/rollout-status.js';
import { controllerRevisionAction } from './controller-revision.js';

export const daemonSetAction = controllerRevisionAction('DaemonSet', RESOURCES.daemonsets, daemonSetState);
