// The configuration snapshots' watcher (CONFIG_SNAPSHOTS): in rollguard's scope (SCOPE_NAMESPACES,
// or every namespace; never SCOPE_DENY_NAMESPACES) it watches Deployments, StatefulSets and
// DaemonSets for the ConfigMaps (and, with CONFIG_SNAPSHOTS_SECRETS, the Secrets) their pod
// templates use (refs.ts), and those objects: each content of a used object is kept as a snapshot
// beside it (snapshots.ts), at most CONFIG_SNAPSHOTS_MAX, the oldest deleted first.
//
// What it keeps in memory is small and bounded by the cluster: the names each workload uses and a
// hash of each used object's last content, no object and no data. Work on one object is done in
// order (one chain per object), at most SNAPSHOT_CONCURRENCY objects at once; an object marked
// immutable is never snapshotted (it cannot be edited in place, so it never needs restoring).
// Several replicas may all run it: a snapshot's name follows from its content and time under the
// key they share (snapshotName), so they create the same one (409 AlreadyExists is fine once the
// object there is read and found to be a snapshot rollguard signed; anything else at that name is a
// squatter, who would need the key to predict it: warned of, never counted, and the snapshot is
// taken under the next name, its time 1 ms later, at most SQUAT_TRIES times).
import pLimit, { type LimitFunction } from 'p-limit';
import type { Logger } from 'pino';
import { RESOURCES, type Kube, type KubeObject, type ResourceType } from '../kube/kube.js';
import { KubeApiError } from '../kube/errors.js';
import { deniedNamespace } from '../guards/scope.js';
import type { WatchEventType, WatchHandle } from '../kube/watch.js';
import { CONFIG_RESOURCES } from './check.js';
import { configRefs, type ConfigKind } from './refs.js';
import { contentHash, CURRENT_SINCE, isSignedSnapshotOf, isSnapshot, sinceOf, snapshotObject, snapshotSelector, snapshotsOf, toPrune } from './snapshots.js';

export interface ConfigSnapshotsOptions {
  kube: Kube;
  logger: Logger;
  /** SCOPE_NAMESPACES: [] = every namespace */
  namespaces: readonly string[];
  /** SCOPE_DENY_NAMESPACES (names or globs): never watched for */
  denyNamespaces: readonly string[];
  /** CONFIG_SNAPSHOTS_MAX */
  max: number;
  /** CONFIG_SNAPSHOTS_SECRETS */
  secrets: boolean;
  /** CONFIG_SNAPSHOTS_KEY: what snapshots are signed with */
  key: string;
  /** snapshots taken at once (default SNAPSHOT_CONCURRENCY) */
  concurrency?: number;
}

/**
 * Snapshots taken at once. At start every used object is snapshotted: unbounded, 500 Deployments'
 * ConfigMaps were 550 GET + LIST + CREATE in flight together, and the sockets and buffers they
 * took stayed in RSS (bench/config-snapshots.ts).
 */
export const SNAPSHOT_CONCURRENCY = 4;

/** Names tried for one snapshot when something that is not rollguard's signed snapshot holds the first. */
export const SQUAT_TRIES = 4;

const WORKLOADS = [RESOURCES.deployments, RESOURCES.statefulsets, RESOURCES.daemonsets];

/** What to change when the watch is refused. */
const RBAC_HINT = "give rollguard's ServiceAccount the chart's configSnapshots rights (configSnapshots.enabled) or set CONFIG_SNAPSHOTS=false";

export class ConfigSnapshots {
  private handles: WatchHandle[] = [];
  /** workload (Kind/ns/name) -> the configuration keys (Kind/ns/name) its template uses */
  private readonly uses = new Map<string, string[]>();
  /** configuration key -> how many workloads use it */
  private readonly users = new Map<string, number>();
  /** configuration key -> hash of the content last seen snapshotted */
  private readonly lastHash = new Map<string, string>();
  private readonly chains = new Map<string, Promise<void>>();
  private stopped = false;
  private readonly limit: LimitFunction;

  constructor(private readonly o: ConfigSnapshotsOptions) {
    this.limit = pLimit(o.concurrency ?? SNAPSHOT_CONCURRENCY);
  }

  /** Starts the watches; resolves once each has handed over its first list. */
  async start(): Promise<void> {
    const watch = this.o.kube.watch?.bind(this.o.kube);
    if (!watch) throw new Error('CONFIG_SNAPSHOTS needs a cluster (KUBECONFIG or an in-cluster ServiceAccount)');
    const namespaces: (string | undefined)[] = this.o.namespaces.length ? [...this.o.namespaces] : [undefined];
    const configKinds: ConfigKind[] = this.o.secrets ? ['ConfigMap', 'Secret'] : ['ConfigMap'];
    for (const ns of namespaces) {
      for (const rt of WORKLOADS) this.handles.push(watch(rt, ns, this.handlers(rt, (t, obj) => this.onWorkload(t, obj))));
      for (const kind of configKinds) this.handles.push(watch(CONFIG_RESOURCES[kind], ns, this.handlers(CONFIG_RESOURCES[kind], (t, obj) => this.onConfig(kind, t, obj))));
    }
    await Promise.all(this.handles.map((h) => h.synced));
    this.o.logger.info({ namespaces: this.o.namespaces.length ? this.o.namespaces : 'all', secrets: this.o.secrets, max: this.o.max }, 'configuration snapshots: watching');
  }

  /** Stops the watches and waits for the snapshots being taken. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const h of this.handles) h.stop();
    await this.idle();
  }

  /** Resolves when no snapshot is being taken. */
  async idle(): Promise<void> {
    while (this.chains.size) await Promise.all([...this.chains.values()]);
  }

  /** How many configuration objects are watched for (used by at least one workload). */
  get watched(): number {
    return this.users.size;
  }

  private handlers(rt: ResourceType, onEvent: (t: WatchEventType, obj: KubeObject) => void) {
    return {
      onEvent: (t: WatchEventType, obj: KubeObject) => {
        if (deniedNamespace(this.o.denyNamespaces, obj.metadata?.namespace ?? '') === undefined) onEvent(t, obj);
      },
      onError: (err: unknown) => {
        const forbidden = err instanceof KubeApiError ? err.status === 403 : (err as { statusCode?: number })?.statusCode === 403;
        this.o.logger.warn({ resource: rt.plural, err: (err as Error)?.message ?? String(err) }, `configuration snapshots: cannot list or watch ${rt.plural}${forbidden ? `: ${RBAC_HINT}` : ''}; retrying`);
      },
    };
  }

  private onWorkload(type: WatchEventType, w: KubeObject): void {
    const ns = w.metadata.namespace ?? '';
    const key = `${w.kind ?? '?'}/${ns}/${w.metadata.name}`;
    const before = this.uses.get(key) ?? [];
    const now =
      type === 'DELETED'
        ? []
        : configRefs(w.spec?.template)
            .filter((r) => r.kind === 'ConfigMap' || this.o.secrets)
            .map((r) => `${r.kind}/${ns}/${r.name}`);
    if (now.length) this.uses.set(key, now);
    else this.uses.delete(key);
    for (const k of now) {
      if (before.includes(k)) continue;
      const n = (this.users.get(k) ?? 0) + 1;
      this.users.set(k, n);
      if (n === 1) this.schedule(k, undefined);
    }
    for (const k of before) {
      if (now.includes(k)) continue;
      const n = (this.users.get(k) ?? 1) - 1;
      if (n > 0) this.users.set(k, n);
      else {
        this.users.delete(k);
        this.lastHash.delete(k);
      }
    }
  }

  private onConfig(kind: ConfigKind, type: WatchEventType, o: KubeObject): void {
    if (isSnapshot(o)) return;
    const key = `${kind}/${o.metadata.namespace}/${o.metadata.name}`;
    if (type === 'DELETED') {
      this.lastHash.delete(key);
      return;
    }
    if (this.users.has(key) && o.immutable !== true) this.schedule(key, o);
  }

  /** Takes a snapshot of the object (as given, or read) after whatever is under way for it. */
  private schedule(key: string, obj: KubeObject | undefined): void {
    if (this.stopped) return;
    const prev = this.chains.get(key) ?? Promise.resolve();
    const next = prev
      .then(() => this.limit(() => this.snapshot(key, obj)))
      .catch((err) => this.o.logger.warn({ object: key, err: (err as Error).message }, `configuration snapshot not taken${err instanceof KubeApiError && err.status === 403 ? `: ${RBAC_HINT}` : ''}`))
      .finally(() => {
        if (this.chains.get(key) === next) this.chains.delete(key);
      });
    this.chains.set(key, next);
  }

  private async snapshot(key: string, given: KubeObject | undefined): Promise<void> {
    const [kind, ns, name] = key.split('/') as [ConfigKind, string, string];
    const rt = CONFIG_RESOURCES[kind];
    let live = given;
    if (!live) {
      try {
        live = await this.o.kube.get(rt, ns, name);
      } catch (err) {
        if (err instanceof KubeApiError && err.isNotFound) return; // not created yet: its ADDED event comes
        throw err;
      }
    }
    if (live.immutable === true || !this.users.has(key)) return;
    const hash = contentHash(live, kind);
    if (this.lastHash.get(key) === hash) return;
    const snaps = snapshotsOf(await this.o.kube.list(rt, ns, { labelSelector: snapshotSelector(name) }), live, kind, this.o.key);
    let kept = snaps;
    if (!snaps[0] || contentHash(snaps[0], kind) !== hash) {
      const snap = await this.take(kind, live, sinceOf(live, snaps[0], Date.now()));
      if (!snap) return; // not taken: not counted, and tried again at the next event or start
      kept = [snap, ...snaps];
    }
    this.lastHash.set(key, hash);
    for (const old of toPrune(kept, this.o.max)) {
      try {
        await this.o.kube.delete(rt, ns, old.metadata.name);
      } catch (err) {
        if (!(err instanceof KubeApiError && err.isNotFound)) throw err;
      }
    }
  }

  /**
   * Creates the snapshot of `live` current since `since`: the snapshot, or null when every name
   * tried was held by an object that is not rollguard's signed snapshot of it. A name already
   * taken holds another replica's snapshot (the same one) or a squatter, who created a ConfigMap
   * there to be counted and make a real snapshot pruned: it takes CONFIG_SNAPSHOTS_KEY (or a leaked
   * name) to know the name beforehand (snapshotName).
   */
  private async take(kind: ConfigKind, live: KubeObject, since: number): Promise<KubeObject | null> {
    const rt = CONFIG_RESOURCES[kind];
    const ns = live.metadata.namespace!;
    const object = `${kind} ${ns}/${live.metadata.name}`;
    const squatted: string[] = [];
    for (let i = 0; i < SQUAT_TRIES; i++) {
      const snap = snapshotObject(live, kind, since + i, this.o.key);
      try {
        await this.o.kube.create(rt, ns, snap);
        this.o.logger.info({ object, snapshot: snap.metadata.name, since: snap.metadata.annotations?.[CURRENT_SINCE] }, 'configuration snapshot taken');
        return snap;
      } catch (err) {
        if (!(err instanceof KubeApiError && err.isConflict)) throw err;
      }
      let there: KubeObject | null = null;
      try {
        there = await this.o.kube.get(rt, ns, snap.metadata.name);
      } catch (err) {
        if (!(err instanceof KubeApiError && err.isNotFound)) throw err;
      }
      if (there && isSignedSnapshotOf(there, live, kind, this.o.key)) return there; // another replica took it
      squatted.push(snap.metadata.name);
      this.o.logger.warn(
        { object, snapshot: snap.metadata.name },
        `configuration snapshot: ${kind} ${ns}/${snap.metadata.name} ${there ? 'is not a snapshot rollguard signed (CONFIG_SNAPSHOTS_KEY)' : 'was there and is gone'}: not counted as a snapshot; check who creates ${kind}s in ${ns} under that name (snapshot names are known only with CONFIG_SNAPSHOTS_KEY: check who holds it); taking it under another name`,
      );
    }
    this.o.logger.warn({ object, names: squatted }, `configuration snapshot not taken: the ${SQUAT_TRIES} names tried for it were held by objects that are not snapshots rollguard signed; delete them (${squatted.join(', ')}) and find who creates them`);
    return null;
  }
}
