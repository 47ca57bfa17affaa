// A Canary rule and a cluster of plain Deployments for the tests of objects a rollback writes
// besides its target (a Canary's stable Deployment): test/unit/guards/written-objects.test.ts,
// test/unit/engine/write-lock-wait.test.ts.
import { RESOURCES, type KubeObject } from '../../src/kube/kube.js';
import { FakeKube } from './fake-kube.js';

export const NS = 'prod';

/** Alert CanaryErrors: the Canary named by label `deployment`, its stable Deployment by label `stable`. */
export const CANARY_RULE = `
rules:
  - name: canary-errors
    match: ['alertname="CanaryErrors"']
    target: { kind: Canary, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}", params: { stable: "{{ $labels.stable }}" } }
    trigger: { kind: error_rate, selector: { namespace: "{{ $labels.namespace }}" }, threshold: 0.05, for: 2m, step: 15s }
    priority: P0
`;

function dep(name: string, replicas: number): KubeObject {
  return {
    metadata: { name, namespace: NS, generation: 1 },
    spec: { replicas, selector: { matchLabels: { app: name } }, template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'app', image: `${name}:1` }] } } },
    status: { observedGeneration: 1, replicas, updatedReplicas: replicas, availableReplicas: replicas },
  };
}

/** Deployments by name and replicas in NS; a controller that settles at once; each patch takes `patchMs`. */
export function cluster(deps: Record<string, number>, patchMs = 0): FakeKube {
  const kube = new FakeKube();
  for (const [name, n] of Object.entries(deps)) kube.add(RESOURCES.deployments, dep(name, n));
  kube.onPatch = (rt, obj, fake) => {
    const n = obj.spec?.replicas ?? 1;
    fake.put(rt, { ...obj, status: { observedGeneration: obj.metadata.generation, replicas: n, updatedReplicas: n, availableReplicas: n } });
  };
  if (patchMs) {
    const patch = kube.patch.bind(kube);
    kube.patch = async (...a) => {
      await new Promise((r) => setTimeout(r, patchMs));
      return patch(...a);
    };
  }
  return kube;
}

/** How many patches went to the Deployment `name`. */
export const patched = (kube: FakeKube, name: string) => kube.patches().filter((c) => c.name === name).length;
