// A Helm release's workloads, for the GitOps owner that installs the release (RollbackPlan.changes,
// src/gitops/stage.ts): a Flux HelmRelease labels every object it renders as its own
// (helm-controller's post-renderer, so the labels are in the release's manifest too), and
// `helm rollback` rewrites those objects, so the HelmRelease would put the bad revision back unless
// suspended first.
//
//  1. releaseWorkloads(): the Deployments, StatefulSets and DaemonSets the release's manifest
//     (`helm get manifest`) names. Only documents that mention one of those kinds are parsed (a
//     ConfigMap or Secret whose data mentions one is parsed too, and dropped); the rest of the
//     manifest (the chart's Secrets among it) is never parsed, and nothing of it is kept or logged.
//  2. liveWorkloads(): each read from the cluster, and kept only if it is this release's own (Helm's
//     `meta.helm.sh/release-name` and `/release-namespace` annotations): a manifest may name an
//     object that is another release's (a failed install keeps its manifest), and that object's
//     owner is not this release's.
//  3. labelledByFlux(): whether the manifest labels anything as a HelmRelease's. When it does and
//     no workload is live and the release's, the owner cannot be checked (src/actions/helm.ts), and
//     the stage refuses unless the rule says gitops: ignore. A release whose manifest has no such
//     label (a plain `helm install`) is not a HelmRelease's, whatever is live.
import pLimit from 'p-limit';
import { parseDocument } from 'yaml';
import { objectKey, resourceKey } from '../guards/guard.js';
import { KubeApiError } from '../kube/errors.js';
import { getOrNull, RESOURCES, type Kube, type KubeObject, type ResourceType } from '../kube/kube.js';
import { invalidName } from '../kube/names.js';
import { reqOpts, type ActionContext, type ChangedObject } from './action.js';

/** The kinds of a release's objects read as its workloads. */
export const WORKLOADS: readonly ResourceType[] = [RESOURCES.deployments, RESOURCES.statefulsets, RESOURCES.daemonsets];
/**
 * At most this many of a release's workloads are read for their owner; they are what the rollback
 * locks, keeps in cooldown with the release and watches for drift. An umbrella chart has dozens
 * (before 2026-12-07 only the first 10 were: a Deployment rule's `rollout undo` of the 11th right
 * after the Helm rollback, which would bring the bad revision back, met no cooldown).
 */
export const RELEASE_OBJECTS_READ = 100;
/** At most this many of them are read from the API server at once. */
export const RELEASE_READS_AT_ONCE = 8;
/** At most this many of the manifest's documents are looked at. */
export const MANIFEST_DOCUMENTS_READ = 5000;

/**
 * A YAML merge key (`<<: {namespace: kube-system}`). Helm's YAML library (go-yaml v2) merges it, and
 * lets it win over a key written before it; the `yaml` package here reads YAML 1.2, where it is a
 * key like another. A document holding one is not read here (`unread`), since what helm makes of it
 * is not what this would.
 */
const MERGE_KEY = /(?:^|[\s{,])<<\s*:/;

/**
 * The documents parsed: those naming one of the kinds anywhere (so `kind: !!str Deployment`, an
 * alias of it, and a HorizontalPodAutoscaler's `scaleTargetRef` are parsed, the last one dropped),
 * or holding what could spell one otherwise: an escape (`"Deploym\\u0065nt"`), an escaped line
 * break (`"Deploy\\⏎ ment"`, any of YAML 1.1's line breaks), a binary scalar (`!!binary
 * RGVwbG95bWVudA==`), a tag spelled with %-escapes (`!!%62inary`), a merge key. The rest (the
 * chart's Secrets among them) is never parsed.
 */
const MENTIONS = new RegExp(
  `\\b(?:${WORKLOADS.map((r) => r.kind).join('|')})\\b|\\\\[xuU][0-9a-fA-F]|\\\\[\\r\\n\\u0085\\u2028\\u2029]|!!binary\\b|tag:yaml\\.org,2002:binary|![^\\s]*%[0-9A-Fa-f]{2}|${MERGE_KEY.source}`,
  'm',
);
/**
 * A document separator as the API machinery's YAML reader that helm applies a manifest with takes
 * it: `---` at the start of a line, alone or before a space, a tab or a comment (`---#x`). What
 * follows it on its line is the next document's.
 */
const SEPARATOR = /^---(?=[ \t#]|$)/gm;

/**
 * The manifest's documents, one at a time (as `manifest.split(SEPARATOR)` would give them): a
 * consumer that stops after MANIFEST_DOCUMENTS_READ has not cut the rest of a 16 Mi manifest of
 * tiny documents into millions of strings.
 */
function* documents(manifest: string): Generator<string> {
  const sep = new RegExp(SEPARATOR.source, SEPARATOR.flags);
  let from = 0;
  for (let m = sep.exec(manifest); m !== null; m = sep.exec(manifest)) {
    yield manifest.slice(from, m.index);
    from = m.index + m[0].length;
  }
  yield manifest.slice(from);
}

/** A scalar as helm's YAML library gives it: text, a binary scalar as the text it encodes; anything else as it is. */
function scalar(v: unknown): unknown {
  return v instanceof Uint8Array ? Buffer.from(v).toString('utf8') : v;
}

/** A manifest's document, or a List's item, as far as it is read here. */
interface Manifested {
  apiVersion?: unknown;
  kind?: unknown;
  metadata?: { name?: unknown; namespace?: unknown };
  items?: unknown;
}

export interface ReleaseObject {
  resource: ResourceType;
  /** as the manifest says it, else the release's */
  namespace: string;
  name: string;
}

/** Whether the manifest labels anything as a Flux HelmRelease's (helm-controller writes the label into every object it renders). */
export function labelledByFlux(manifest: string): boolean {
  return /helm\.toolkit\.fluxcd\.io\/name\b/.test(manifest);
}

/**
 * The workloads a release's manifest names, each once, the first RELEASE_OBJECTS_READ of them
 * (`more` when it names another past them); a document without a namespace is the release's
 * (`namespace`). `outside`: each workload it names, past the first RELEASE_OBJECTS_READ too, that
 * `outOfScope` says is outside the scope settings (`Kind/namespace/name: why`). `unread`: each
 * document that may name a workload but could not be read here (it does not parse, holds more
 * aliases than a manifest needs, or names a workload whose name or namespace is not text): helm may
 * read it, so what it writes is not known (the plan refuses: helm.ts).
 */
export function releaseWorkloads(
  manifest: string,
  namespace: string,
  outOfScope?: NonNullable<ActionContext['outOfScope']>,
): { objects: ReleaseObject[]; more: boolean; outside: string[]; unread: string[] } {
  const out: ReleaseObject[] = [];
  const outside: string[] = [];
  const unread: string[] = [];
  const seen = new Set<string>();
  let more = false;
  let docs = 0;
  for (const text of documents(manifest)) {
    if (++docs > MANIFEST_DOCUMENTS_READ) break;
    if (!MENTIONS.test(text)) continue;
    let o: Manifested | null;
    try {
      // a key given twice is taken as helm's YAML library takes it (the last), not refused
      const doc = parseDocument(text, { uniqueKeys: false });
      if (doc.errors.length > 0) throw doc.errors[0];
      o = doc.toJS({ maxAliasCount: 100 }) as typeof o;
    } catch (err) {
      // helm may read what this cannot (or expand more aliases): what it names is not known
      unread.push(`document ${docs} (${err instanceof Error ? err.message.split('\n')[0]!.slice(0, 120) : 'unreadable'})`);
      continue;
    }
    if (MERGE_KEY.test(text)) {
      unread.push(`document ${docs} (a YAML merge key, <<, which helm reads otherwise)`);
      continue;
    }
    // a List's items (v1 List, DeploymentList, …) are installed one by one: helm's resource
    // builder flattens lists (pkg/kube/client.go, Flatten()), as kubectl does
    const listKind = scalar(o?.kind);
    const items = typeof listKind === 'string' && listKind.endsWith('List') && Array.isArray(o?.items) ? (o.items as (Manifested | null)[]) : [o];
    for (const item of items) {
      // a binary scalar is the text it encodes to helm's YAML library
      const kind = scalar(item?.kind);
      const resource = WORKLOADS.find((r) => kind === r.kind && scalar(item?.apiVersion) === `${r.group}/${r.version}`);
      if (!resource) continue;
      const name = scalar(item?.metadata?.name);
      // no namespace, or an empty one: helm installs it into the release's
      const ns = scalar(item?.metadata?.namespace) || namespace;
      if (typeof name !== 'string' || typeof ns !== 'string') {
        unread.push(`document ${docs} (a ${resource.kind} whose name or namespace is not text)`);
        continue;
      }
      if (invalidName('subdomain', name) !== undefined || invalidName('label', ns) !== undefined) continue;
      const key = objectKey({ kind: resource.kind, namespace: ns, name });
      if (seen.has(key)) continue;
      seen.add(key);
      // every one is checked for scope (a name costs no read); only the first ones are kept to read
      const why = outOfScope?.({ kind: resource.kind, namespace: ns, name });
      if (why !== undefined) outside.push(`${key}: ${why}`);
      if (out.length < RELEASE_OBJECTS_READ) out.push({ resource, namespace: ns, name });
      else more = true;
    }
  }
  return { objects: out, more, outside, unread };
}

/** Whether Helm's annotations say the object is this release's. */
function releaseOf(obj: KubeObject, release: { namespace: string; name: string }): boolean {
  const a = obj.metadata.annotations ?? {};
  return a['meta.helm.sh/release-name'] === release.name && a['meta.helm.sh/release-namespace'] === release.namespace;
}

/**
 * The workloads the manifest names that are live and this release's own (read now, so the stage
 * does not read them again), and, for the others, why not (missing, another release's, unreadable:
 * `unreadable` lists those apart). A read that may answer if tried again (429, 5xx, a timeout, the
 * network: KubeApiError.retriable), or that failed otherwise than the API server answering, fails
 * the whole read: a workload left out for it would be left unlocked, out of cooldown and unwatched
 * while the release is rolled back. The engine decides a rollback stopped by a retriable one again
 * shortly (rollback.ts, KUBE_TRIES); any other error ends it `error`, escalated. One the API server
 * refuses for good (403, 401, 400, …: rollguard may not read it, so no rule of rollguard's can roll
 * it back either) is left out, and said.
 */
export async function liveWorkloads(
  kube: Kube,
  objects: ReleaseObject[],
  release: { namespace: string; name: string },
  ctx: ActionContext,
): Promise<{ changes: ChangedObject[]; not: string[]; unreadable: string[] }> {
  const limit = pLimit(RELEASE_READS_AT_ONCE);
  const reads = await Promise.all(objects.map((o) => limit(() => getOrNull(kube, o.resource, o.namespace, o.name, reqOpts(ctx)).then((obj) => ({ obj }), (err: Error) => ({ err })))));
  const again = reads.find((r): r is { err: Error } => 'err' in r && !(r.err instanceof KubeApiError && !r.err.retriable));
  if (again) throw again.err;
  const changes: ChangedObject[] = [];
  const not: string[] = [];
  const unreadable: string[] = [];
  // in the manifest's order, whichever read answered first
  objects.forEach((o, i) => {
    const what = resourceKey(o);
    const r = reads[i]!;
    if ('err' in r) {
      const line = `${what} unreadable (${r.err.message})`;
      not.push(line);
      unreadable.push(line);
    } else if (!r.obj) not.push(`${what} missing`);
    else if (releaseOf(r.obj, release)) changes.push({ resource: o.resource, namespace: o.namespace, name: o.name, read: r.obj, release });
    else not.push(`${what} another release's`);
  });
  return { changes, not, unreadable };
}
