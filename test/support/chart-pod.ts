// A rendered chart's pod, materialised on this machine the way the kubelet would set it up: the
// container's environment (values, $(VAR) expansion of earlier variables, secretKeyRef from the
// rendered Secrets or from Secrets the operator is said to have created, fieldRef) and its
// Secret and ConfigMap volumes written to a directory, with every path under a mount moved there.
// Used to run `rollguard serve` configured exactly as the chart configures it.
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface Obj {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  [k: string]: any;
}

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string }; configMapKeyRef?: { name: string; key: string }; fieldRef?: { fieldPath: string } };
}
interface Volume {
  name: string;
  secret?: { secretName: string; items?: { key: string; path: string }[] };
  configMap?: { name: string; items?: { key: string; path: string }[] };
  emptyDir?: object;
}

/** Kubernetes' $(VAR) expansion of env values and args, from the variables defined before. */
export const expand = (s: string, env: Record<string, string>) => s.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, v: string) => env[v] ?? m);

/**
 * The environment of `container` of the Deployment or StatefulSet `workload`, with its volumes
 * written under `dir`. `external` holds Secrets the chart names but does not render
 * (existingSecret values): name -> key -> value.
 */
export function materialise(objs: Obj[], workload: Obj, dir: string, external: Record<string, Record<string, string>> = {}, container = 0): Record<string, string> {
  const pod = workload.spec.template.spec;
  const c = pod.containers[container];
  const secretData = (name: string): Record<string, string> => {
    const s = objs.find((o) => o.kind === 'Secret' && o.metadata.name === name);
    if (s) return Object.fromEntries(Object.entries((s.data ?? {}) as Record<string, string>).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
    const e = external[name];
    if (!e) throw new Error(`the pod needs Secret ${name}, neither rendered nor given`);
    return e;
  };
  const configMapData = (name: string): Record<string, string> => {
    const cm = objs.find((o) => o.kind === 'ConfigMap' && o.metadata.name === name);
    if (!cm) throw new Error(`the pod needs ConfigMap ${name}, not rendered`);
    return cm.data as Record<string, string>;
  };
  const mounts = new Map<string, string>(); // mountPath -> local directory
  for (const m of (c.volumeMounts ?? []) as { name: string; mountPath: string }[]) {
    const v = ((pod.volumes ?? []) as Volume[]).find((x) => x.name === m.name);
    if (!v) continue; // a claim template (StatefulSet data): the caller provides it
    const local = path.join(dir, m.name);
    fs.mkdirSync(local, { recursive: true });
    const data = v.secret ? secretData(v.secret.secretName) : v.configMap ? configMapData(v.configMap.name) : {};
    const items = v.secret?.items ?? v.configMap?.items ?? Object.keys(data).map((k) => ({ key: k, path: k }));
    for (const it of items) {
      if (!(it.key in data)) throw new Error(`volume ${v.name}: key ${it.key} missing`);
      fs.writeFileSync(path.join(local, it.path), data[it.key]!);
    }
    mounts.set(m.mountPath, local);
  }
  const env: Record<string, string> = {};
  for (const e of (c.env ?? []) as EnvVar[]) {
    let v: string;
    if (e.value !== undefined) v = expand(e.value, env);
    else if (e.valueFrom?.secretKeyRef) {
      const d = secretData(e.valueFrom.secretKeyRef.name);
      if (!(e.valueFrom.secretKeyRef.key in d)) throw new Error(`env ${e.name}: key ${e.valueFrom.secretKeyRef.key} missing in Secret ${e.valueFrom.secretKeyRef.name}`);
      v = d[e.valueFrom.secretKeyRef.key]!;
    } else if (e.valueFrom?.configMapKeyRef) v = configMapData(e.valueFrom.configMapKeyRef.name)[e.valueFrom.configMapKeyRef.key]!;
    else if (e.valueFrom?.fieldRef?.fieldPath === 'metadata.name') v = `${workload.metadata.name}-test-pod`;
    else throw new Error(`env ${e.name}: no value this helper knows how to give`);
    for (const [mp, local] of mounts) if (v === mp || v.startsWith(`${mp}/`)) v = local + v.slice(mp.length);
    env[e.name] = v;
  }
  return env;
}

/** Does a Kubernetes LabelSelector (matchLabels, matchExpressions) select these labels? */
export function selects(sel: { matchLabels?: Record<string, string>; matchExpressions?: { key: string; operator: string; values?: string[] }[] }, labels: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of sel.matchExpressions ?? []) {
    const has = e.key in labels;
    const ok =
      e.operator === 'In' ? has && (e.values ?? []).includes(labels[e.key]!)
      : e.operator === 'NotIn' ? !has || !(e.values ?? []).includes(labels[e.key]!)
      : e.operator === 'Exists' ? has
      : e.operator === 'DoesNotExist' ? !has
      : false;
    if (!ok) return false;
  }
  return true;
}

/** A peer of a NetworkPolicy ingress rule: a pod with these labels in a namespace with those. */
export interface Peer {
  namespace: string;
  labels: Record<string, string>;
}

/**
 * May `peer` open a TCP connection to `port` (a container port name) of a pod with `podLabels` in
 * `namespace`, under these NetworkPolicies? As the API defines it: pods no policy selects accept
 * everything; selected ones accept what some ingress rule of some selecting policy allows.
 */
export function allowed(policies: Obj[], namespace: string, podLabels: Record<string, string>, peer: Peer, port: string): boolean {
  const selecting = policies.filter((p) => (p.metadata.namespace ?? namespace) === namespace && selects(p.spec.podSelector, podLabels) && (p.spec.policyTypes ?? ['Ingress']).includes('Ingress'));
  if (selecting.length === 0) return true;
  const nsLabels = { 'kubernetes.io/metadata.name': peer.namespace };
  return selecting.some((p) =>
    ((p.spec.ingress ?? []) as { from?: { namespaceSelector?: object; podSelector?: object; ipBlock?: object }[]; ports?: { port?: string | number; protocol?: string }[] }[]).some((rule) => {
      const portOk = !rule.ports || rule.ports.some((x) => x.port === undefined || (String(x.port) === port && (x.protocol ?? 'TCP') === 'TCP'));
      const fromOk =
        !rule.from ||
        rule.from.some((f) => {
          if (f.ipBlock) return false; // pod IPs are not modelled here
          const nsOk = f.namespaceSelector ? selects(f.namespaceSelector, nsLabels) : peer.namespace === namespace;
          const podOk = f.podSelector ? selects(f.podSelector, peer.labels) : true;
          return nsOk && podOk;
        });
      return portOk && fromOk;
    }),
  );
}
