// The workloads the traffic actions act on, made on the real control plane (test/cluster/harness.ts):
// plain Deployments, their availability, and a blue-green pair behind one Service.
import type { KubeObject } from '../../src/kube/kube.js';
import type { Cluster } from './harness.js';

/** A Deployment with `replicas` pods labelled `labels` (its selector), image `<name>:1`. */
export function deployment(name: string, labels: Record<string, string>, replicas: number) {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, labels },
    spec: { replicas, selector: { matchLabels: labels }, template: { metadata: { labels }, spec: { containers: [{ name: 'app', image: `${name}:1` }] } } },
  };
}

/** Workloads of one namespace: Deployments made and waited for, and a blue-green pair. */
export function trafficWorkloads(cluster: Cluster, ns: string) {
  const api = (p: string) => `/apis/apps/v1/namespaces/${ns}/${p}`;
  /** the Deployment once its controller has caught up and every replica is available */
  const available = (name: string) =>
    cluster.poll(`${name} available`, () => cluster.request<KubeObject>('GET', api(`deployments/${name}`)), (d) =>
      (d.status?.observedGeneration ?? 0) >= (d.metadata.generation ?? 1) && (d.status?.availableReplicas ?? 0) === d.spec.replicas && (d.status?.replicas ?? 0) === d.spec.replicas,
    );
  const create = async (name: string, labels: Record<string, string>, replicas: number) => {
    await cluster.request('POST', api('deployments'), deployment(name, labels, replicas));
  };
  /**
   * `<app>-blue`, then `<app>-green` deployed a second later (creation times have 1 s resolution),
   * and Service `<app>` selecting green: a blue-green switch that can go back to blue.
   */
  const blueGreen = async (app: string, replicas: number) => {
    await create(`${app}-blue`, { app, version: 'blue' }, replicas);
    await available(`${app}-blue`);
    await new Promise((r) => setTimeout(r, 1100));
    await create(`${app}-green`, { app, version: 'green' }, replicas);
    await available(`${app}-green`);
    await cluster.request('POST', `/api/v1/namespaces/${ns}/services`, {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: app },
      spec: { selector: { app, version: 'green' }, ports: [{ port: 80, targetPort: 8080 }] },
    });
  };
  return { api, available, create, blueGreen };
}
