// Deployments on the real test control plane for the reliability tests: v1 then v2 (a bad
// deploy), optionally slow to become available afterwards (minReadySeconds), so that a rollback's
// rollout lasts long enough for a test to crash rollguard in the middle of it.
import type { Cluster } from '../cluster/harness.js';

export const REVISION = 'deployment.kubernetes.io/revision';

export interface Dep {
  metadata: { name: string; generation: number; annotations?: Record<string, string> };
  spec: { replicas: number; minReadySeconds?: number; template: { spec: { containers: { image: string }[] } } };
  status: { observedGeneration?: number; updatedReplicas?: number; availableReplicas?: number; replicas?: number };
}

export const getDep = (cluster: Cluster, ns: string, name: string) => cluster.request<Dep>('GET', `/apis/apps/v1/namespaces/${ns}/deployments/${name}`);

export function rolledOut(d: Dep, rev: string): boolean {
  return (
    d.metadata.annotations?.[REVISION] === rev &&
    (d.status.observedGeneration ?? 0) >= d.metadata.generation &&
    d.status.updatedReplicas === d.spec.replicas &&
    d.status.availableReplicas === d.spec.replicas &&
    (d.status.replicas ?? 0) === d.spec.replicas
  );
}

export const image = (d: Dep) => d.spec.template.spec.containers[0]!.image;

/** Creates `name` at v1, rolls out v2 (revision 2), then sets minReadySeconds (no new revision). */
export async function deployV1ThenV2(cluster: Cluster, ns: string, name: string, opts: { minReadySeconds?: number; replicas?: number } = {}): Promise<void> {
  await cluster.request('POST', `/apis/apps/v1/namespaces/${ns}/deployments`, {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, labels: { app: name } },
    spec: {
      replicas: opts.replicas ?? 1,
      selector: { matchLabels: { app: name } },
      template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'app', image: `${name}:v1` }] } },
    },
  });
  await cluster.poll(`${name} at revision 1`, () => getDep(cluster, ns, name), (d) => rolledOut(d, '1'), 60_000);
  await cluster.request('PATCH', `/apis/apps/v1/namespaces/${ns}/deployments/${name}`, { spec: { template: { spec: { containers: [{ name: 'app', image: `${name}:v2-bad` }] } } } });
  await cluster.poll(`${name} at revision 2`, () => getDep(cluster, ns, name), (d) => rolledOut(d, '2'), 60_000);
  if (opts.minReadySeconds) {
    await cluster.request('PATCH', `/apis/apps/v1/namespaces/${ns}/deployments/${name}`, { spec: { minReadySeconds: opts.minReadySeconds } });
    await cluster.poll(`${name} minReadySeconds observed`, () => getDep(cluster, ns, name), (d) => (d.status.observedGeneration ?? 0) >= d.metadata.generation, 60_000);
  }
}

/** Creates `name` and rolls out each image in turn (revision i+1 = images[i]). */
export async function deployVersions(cluster: Cluster, ns: string, name: string, images: string[]): Promise<void> {
  await cluster.request('POST', `/apis/apps/v1/namespaces/${ns}/deployments`, {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, labels: { app: name } },
    spec: { replicas: 1, selector: { matchLabels: { app: name } }, template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'app', image: images[0] }] } } },
  });
  await cluster.poll(`${name} at revision 1`, () => getDep(cluster, ns, name), (d) => rolledOut(d, '1'), 60_000);
  for (const [i, img] of images.slice(1).entries()) {
    await cluster.request('PATCH', `/apis/apps/v1/namespaces/${ns}/deployments/${name}`, { spec: { template: { spec: { containers: [{ name: 'app', image: img }] } } } });
    await cluster.poll(`${name} at revision ${i + 2}`, () => getDep(cluster, ns, name), (d) => rolledOut(d, String(i + 2)), 60_000);
  }
}
