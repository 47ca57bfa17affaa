// StatefulSet undo, as `kubectl rollout undo statefulset/NAME [--to-revision=N]`: see controller-revision.ts.
import { RESOURCES } from '../kube/kube.js';
import { statefulSetState } from '../kube/rollout-status.js';
import { undoKind } from './common.js';
import { controllerRevisionAction } from './controller-revision.js';

export const statefulSetAction = controllerRevisionAction('StatefulSet', RESOURCES.statefulsets, statefulSetState);

/** StatefulSet: `name` is the StatefulSet; rule param toRevision; no options. */
export const statefulSetKind = undoKind('StatefulSet', statefulSetAction);
