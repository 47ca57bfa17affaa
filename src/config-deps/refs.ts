// The ConfigMaps and Secrets a pod template uses, as the kubelet resolves them: in containers and
// initContainers, env[].valueFrom.configMapKeyRef / secretKeyRef and envFrom[].configMapRef /
// secretRef; in the pod's volumes, volumes[].configMap / secret and volumes[].projected.sources[]
// (configMap, secret). Each may be `optional: true`: the kubelet starts the pod without it.
// Hand-written because it is a walk over a dozen plain JSON fields; @kubernetes/client-node has
// the types but no such helper.

export type ConfigKind = 'ConfigMap' | 'Secret';

export interface ConfigRef {
  kind: ConfigKind;
  name: string;
  /** true only when every use of this object in the template is optional */
  optional: boolean;
  /** where the template uses it: `container app env DB_URL`, `volume config` */
  usedBy: string[];
}

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj | undefined => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Obj) : undefined);
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

/**
 * The ConfigMaps and Secrets a pod template (`spec.template` of a Deployment, ReplicaSet,
 * StatefulSet, DaemonSet or ControllerRevision's data) references, each once, in the order first
 * seen; an object is optional only if every reference to it is.
 */
export function configRefs(template: unknown): ConfigRef[] {
  const spec = obj(obj(template)?.spec);
  const out = new Map<string, ConfigRef>();
  const add = (kind: ConfigKind, src: Obj | undefined, usedBy: string) => {
    const name = str(src?.name);
    if (!src || !name) return;
    const optional = src.optional === true;
    const key = `${kind}/${name}`;
    const seen = out.get(key);
    if (seen) {
      seen.optional &&= optional;
      seen.usedBy.push(usedBy);
    } else out.set(key, { kind, name, optional, usedBy: [usedBy] });
  };
  if (!spec) return [];
  for (const [field, word] of [['initContainers', 'init container'], ['containers', 'container']] as const) {
    for (const c of arr(spec[field]).map(obj)) {
      const who = `${word} ${str(c?.name) ?? '?'}`;
      for (const e of arr(c?.env).map(obj)) {
        const from = obj(e?.valueFrom);
        add('ConfigMap', obj(from?.configMapKeyRef), `${who} env ${str(e?.name) ?? '?'}`);
        add('Secret', obj(from?.secretKeyRef), `${who} env ${str(e?.name) ?? '?'}`);
      }
      for (const e of arr(c?.envFrom).map(obj)) {
        add('ConfigMap', obj(e?.configMapRef), `${who} envFrom`);
        add('Secret', obj(e?.secretRef), `${who} envFrom`);
      }
    }
  }
  for (const v of arr(spec.volumes).map(obj)) {
    const who = `volume ${str(v?.name) ?? '?'}`;
    add('ConfigMap', obj(v?.configMap), who);
    // a secret volume names its Secret in `secretName`, not `name`
    const sv = obj(v?.secret);
    if (sv) add('Secret', { name: sv.secretName, optional: sv.optional }, who);
    for (const s of arr(obj(v?.projected)?.sources).map(obj)) {
      add('ConfigMap', obj(s?.configMap), `${who} (projected)`);
      add('Secret', obj(s?.secret), `${who} (projected)`);
    }
  }
  return [...out.values()];
}
