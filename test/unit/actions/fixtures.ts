// Plain-object fixtures shared by the action unit tests.
import pino from 'pino';
import type { ActionContext } from '../../../src/actions/action.js';
import { RESOURCES, type KubeObject } from '../../../src/kube/client.js';
import { FakeKube } from '../../../src/kube/fake.js';

export const NS = 'shop';
export const DEP_UID = '11111111-1111-1111-1111-111111111111';
export const CAUSE = 'rollguard: rule high-error-rate, alert HighErrorRate (fp b5aac1d6), rollback r-123';

export function podTemplate(image: string, extra: Record<string, unknown> = {}, hash?: string) {
  return {
    metadata: {
      labels: { app: 'web', ...(hash ? { 'pod-template-hash': hash } : {}) },
      annotations: { 'prometheus.io/scrape': 'true' },
    },
    spec: {
      containers: [{ name: 'web', image, resources: {}, terminationMessagePath: '/dev/termination-log', imagePullPolicy: 'IfNotPresent' }],
      restartPolicy: 'Always',
      terminationGracePeriodSeconds: 30,
      dnsPolicy: 'ClusterFirst',
      ...extra,
    },
  };
}

export function deployment(image: string, revision: number, over: Partial<KubeObject['spec']> = {}): KubeObject {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: {
      name: 'web',
      namespace: NS,
      uid: DEP_UID,
      generation: revision,
      annotations: {
        'deployment.kubernetes.io/revision': String(revision),
        'kubectl.kubernetes.io/last-applied-configuration': '{"kind":"Deployment"}',
        'kubernetes.io/change-cause': `deploy ${image}`,
        team: 'payments',
      },
      labels: { app: 'web' },
    },
    spec: {
      replicas: 3,
      selector: { matchLabels: { app: 'web' } },
      template: podTemplate(image),
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: '25%', maxUnavailable: '25%' } },
      revisionHistoryLimit: 10,
      progressDeadlineSeconds: 600,
      ...over,
    },
    status: { observedGeneration: revision, replicas: 3, updatedReplicas: 3, availableReplicas: 3, readyReplicas: 3 },
  };
}

export function replicaSet(name: string, image: string, revision: number | null, opts: { ownerUid?: string | null; createdAt?: string; extraAnnotations?: Record<string, string>; hash?: string } = {}): KubeObject {
  const hash = opts.hash ?? `h${name.slice(-2)}`;
  return {
    apiVersion: 'apps/v1',
    kind: 'ReplicaSet',
    metadata: {
      name,
      namespace: NS,
      labels: { app: 'web', 'pod-template-hash': hash },
      annotations: {
        ...(revision !== null ? { 'deployment.kubernetes.io/revision': String(revision) } : {}),
        'deployment.kubernetes.io/desired-replicas': '3',
        'deployment.kubernetes.io/max-replicas': '4',
        'kubernetes.io/change-cause': `deploy ${image}`,
        team: 'payments',
        ...(opts.extraAnnotations ?? {}),
      },
      ...(opts.createdAt ? { creationTimestamp: opts.createdAt } : {}),
      ...(opts.ownerUid === null
        ? {}
        : { ownerReferences: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: 'web', uid: opts.ownerUid ?? DEP_UID, controller: true }] }),
    },
    spec: { replicas: 0, selector: { matchLabels: { app: 'web', 'pod-template-hash': hash } }, template: podTemplate(image, {}, hash) },
  };
}

/** web: revision 1 = v1, revision 2 = v2 (current), an orphan RS and a foreign RS that must be ignored. */
export function standardCluster(): FakeKube {
  const kube = new FakeKube();
  kube.add(RESOURCES.deployments, deployment('web:v2', 2));
  kube.add(RESOURCES.replicasets, replicaSet('web-aa01', 'web:v1', 1, { createdAt: '2026-11-20T10:00:00Z', extraAnnotations: { 'rollguard.io/note': 'from-rs' } }));
  kube.add(RESOURCES.replicasets, replicaSet('web-bb02', 'web:v2', 2, { createdAt: '2026-11-23T09:00:00Z' }));
  kube.add(RESOURCES.replicasets, replicaSet('web-orphan', 'web:v0', 5, { ownerUid: null }));
  kube.add(RESOURCES.replicasets, replicaSet('web-foreign', 'web:vx', 9, { ownerUid: '99999999-0000-0000-0000-000000000000' }));
  return kube;
}

export function context(kube: FakeKube | null, over: Partial<ActionContext> = {}): ActionContext & { fenceCalls: number } {
  const ctx = {
    kube,
    logger: pino({ level: 'silent' }),
    changeCause: CAUSE,
    fenceCalls: 0,
    checkFence: async () => {
      ctx.fenceCalls++;
    },
    ...over,
  };
  return ctx;
}
