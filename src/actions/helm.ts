// Helm: `helm rollback RELEASE [REVISION] --wait`, through the helm binary, spawned with an
// argument array (never a shell). plan() reads `helm history -o json` and, with a cluster, `helm
// get metadata -o json` and `helm get manifest --revision R` (helm 3.13 or later; the release's
// workloads, helm-workloads.ts); verify() reads `helm status -o json`. The binary is the HELM_BIN setting (src/config.ts; default 'helm' on PATH); the cluster is the
// kubeconfig given to createHelmAction, else helm's own default ($KUBECONFIG, ~/.kube/config or
// in-cluster).
//
// TargetRef.name is the release (options.release overrides), toRevision the revision (absent or 0
// = the previous one, as helm: the current revision - 1); options.timeout is helm's --timeout
// (default '5m0s'). Release names are DNS-1123 names of at most 53 characters (as helm requires)
// and always follow `--` on helm's command line, so no value is ever read as a flag.
import { spawn } from 'node:child_process';
import pLimit from 'p-limit';
import { z } from 'zod';
import { nameSchema } from '../kube/names.js';
import { CHANGE_CAUSE } from '../kube/revision.js';
import { labelledByFlux, liveWorkloads, RELEASE_OBJECTS_READ, RELEASE_READS_AT_ONCE, releaseWorkloads, type ReleaseObject } from './helm-workloads.js';
import type { Kube } from '../kube/kube.js';
import { reqOpts, type Action, type ActionContext, type ChangedObject, type ExecuteResult, type KindDefinition, type RollbackPlan, type TargetRef, type VerifyOptions, type VerifyResult } from './action.js';
import { defineKind, nothingWritten, optionsOf, refused, verifyUntil } from './common.js';
import { resourceKey } from '../guards/guard.js';

const HELM_DURATION = /^(\d+(\.\d+)?(h|ms|m|s))+$/;

export const helmReleaseOptions = z.strictObject({
  /** the release (default: the target's name) */
  release: nameSchema('helm').optional(),
  /** helm's --timeout for `helm rollback --wait` (default 5m0s) */
  timeout: z.string().regex(HELM_DURATION, 'expected a helm duration such as 5m0s, 90s or 1h').optional(),
});

export interface HelmRunResult {
  code: number;
  stdout: string;
  stderr: string;
}
export type HelmRunner = (argv: string[], opts: { signal?: AbortSignal; timeoutMs: number }) => Promise<HelmRunResult>;

export interface HelmActionOptions {
  /** the helm binary (the HELM_BIN setting); default 'helm' on PATH */
  helmBin?: string;
  kubeconfig?: string;
  kubeContext?: string;
  /** how long one helm read (history, get metadata, get manifest, status) may take; default 30 s */
  readTimeoutMs?: number;
  /** replaces spawning the binary (tests) */
  run?: HelmRunner;
}

export class HelmError extends Error {
  override readonly name = 'HelmError';
  constructor(
    readonly argv: string[],
    readonly result: HelmRunResult,
  ) {
    // The command's words (`history`, `get metadata`, `rollback`), not the flags after them
    const words = argv.slice(1, 3);
    const flag = words.findIndex((w) => w.startsWith('-'));
    super(`helm ${(flag < 0 ? words : words.slice(0, flag)).join(' ')} exited ${result.code}: ${(result.stderr || result.stdout).trim().slice(0, 1000)}`);
  }
}

/** What one helm command may print on each stream (characters) before it is stopped (a release's manifest is at most a few MB). */
export const HELM_OUTPUT_MAX = 16 * 1024 * 1024;
/** What spawnRunner answers on stderr (code 1) for a command stopped there; workloadsOf reads it as a manifest too large to read. */
export const HELM_OUTPUT_OVER = `stopped: printed more than ${HELM_OUTPUT_MAX} characters on one stream`;

/**
 * Spawns argv[0] with argv[1..] (no shell), collecting output, killed at the deadline, on abort, or
 * when it prints more than HELM_OUTPUT_MAX on a stream (then it fails, its output dropped).
 */
export const spawnRunner: HelmRunner = (argv, opts) =>
  new Promise((resolve, reject) => {
    const [file, ...args] = argv as [string, ...string[]];
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'], shell: false, ...(opts.signal ? { signal: opts.signal } : {}) });
    let stdout = '';
    let stderr = '';
    let over = false;
    const collect = (d: string, into: 'out' | 'err') => {
      if (over) return;
      if ((into === 'out' ? stdout.length : stderr.length) + d.length > HELM_OUTPUT_MAX) {
        over = true;
        stdout = '';
        stderr = '';
        child.kill('SIGKILL');
        return;
      }
      if (into === 'out') stdout += d;
      else stderr += d;
    };
    child.stdout.setEncoding('utf8').on('data', (d: string) => collect(d, 'out'));
    child.stderr.setEncoding('utf8').on('data', (d: string) => collect(d, 'err'));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${file}: ${e.message}${(e as NodeJS.ErrnoException).code === 'ENOENT' ? ' (set HELM_BIN to the helm binary)' : ''}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (over) return resolve({ code: 1, stdout: '', stderr: HELM_OUTPUT_OVER });
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr: signal && code === null ? `${stderr}\nkilled by ${signal} (timeout ${opts.timeoutMs} ms)` : stderr });
    });
  });

/** The first three of `lines`, joined by `sep`, and how many more: what a plan's summary or refusal names of a long list. */
function firstThree(lines: string[], sep: string): string {
  return lines.slice(0, 3).join(sep) + (lines.length > 3 ? `${sep}and ${lines.length - 3} more` : '');
}

const DESCRIPTION_MAX = 256;
/** What a cut description keeps of the cause's end: an alert's names the rule, alert, fingerprint and rollback id there. */
const DESCRIPTION_TAIL = 136;

/**
 * The change cause as `helm rollback --description`, at most DESCRIPTION_MAX characters: a longer
 * one keeps its start and its end, where an alert's names the rollback (a recovery finds the
 * rollback's record id in the description: scheduler.ts).
 */
export function description(cause: string): string {
  if (cause.length <= DESCRIPTION_MAX) return cause;
  return `${cause.slice(0, DESCRIPTION_MAX - DESCRIPTION_TAIL - 1)}…${cause.slice(-DESCRIPTION_TAIL)}`;
}

interface HistoryEntry {
  revision: number;
  updated?: string;
  status?: string;
  chart?: string;
  app_version?: string;
  description?: string;
}

/** helm's duration ("5m0s", "90s", "1h") in ms; unknown = 5 min. */
export function helmDurationMs(d: string): number {
  let ms = 0;
  let matched = false;
  for (const m of d.matchAll(/(\d+(?:\.\d+)?)(h|ms|m|s)/g)) {
    matched = true;
    const v = Number(m[1]);
    ms += m[2] === 'h' ? v * 3_600_000 : m[2] === 'm' ? v * 60_000 : m[2] === 's' ? v * 1000 : v;
  }
  return matched ? ms : 300_000;
}

export function createHelmAction(o: HelmActionOptions = {}): Action {
  const run = o.run ?? spawnRunner;
  const bin = () => o.helmBin ?? 'helm';
  const readTimeoutMs = o.readTimeoutMs ?? 30_000;
  const globals = (ns: string) => [
    '--namespace',
    ns,
    ...(o.kubeconfig ? ['--kubeconfig', o.kubeconfig] : []),
    ...(o.kubeContext ? ['--kube-context', o.kubeContext] : []),
  ];
  const release = (ref: TargetRef) => optionsOf(helmReleaseKind, ref).release ?? ref.name;
  const timeout = (ref: TargetRef) => optionsOf(helmReleaseKind, ref).timeout ?? '5m0s';

  async function read(argv: string[], ctx: ActionContext): Promise<HelmRunResult> {
    return run(argv, { ...(ctx.signal ? { signal: ctx.signal } : {}), timeoutMs: readTimeoutMs });
  }

  /** Where the release's objects go (`helm get metadata`'s namespace; helm 3.13 and later): the release's records' own unless a HelmRelease's targetNamespace put them elsewhere. */
  async function objectsNamespace(ref: TargetRef, rel: string, ctx: ActionContext): Promise<string> {
    const argv = [bin(), 'get', 'metadata', ...globals(ref.namespace), '-o', 'json', '--', rel];
    const r = await read(argv, ctx);
    if (r.code !== 0) throw new HelmError(argv, r);
    let ns: unknown;
    try {
      ns = (JSON.parse(r.stdout) as { namespace?: unknown } | null)?.namespace;
    } catch {
      throw new HelmError(argv, { ...r, stderr: `unparsable metadata JSON: ${r.stdout.slice(0, 200)}` });
    }
    return typeof ns === 'string' && ns !== '' ? ns : ref.namespace;
  }

  /**
   * The release's live workloads, from the first of `revisions` whose manifest names one that is live
   * and the release's (helm-workloads.ts); `unchecked` when none is while a manifest labels anything
   * as a HelmRelease's, or one is too large to read; `apart` when its objects are in another
   * namespace than its records; `scopeRefusal` (the refusal's words after `helm rollback R N in NS`)
   * when a manifest names a workload outside the scope settings (ActionContext.outOfScope), or holds
   * a document that may name one but cannot be read here. Every manifest's workloads are checked for scope before
   * any is read: helm rollback writes those of the revision it goes back to and deletes those of
   * the current one that it does not name, so either would be a write outside scope, and one that
   * is not live would be created, unseen by the scope guard.
   */
  async function workloadsOf(ref: TargetRef, rel: string, revisions: number[], ctx: ActionContext, kube: Kube): Promise<{ changes: ChangedObject[]; unchecked?: string; apart?: string; scopeRefusal?: string; more?: boolean; unreadable?: string[] }> {
    const release = { namespace: ref.namespace, name: rel };
    const into = await objectsNamespace(ref, rel, ctx);
    if (into !== ref.namespace) return { changes: [], apart: into };
    let flux = false;
    let tooLarge: string | undefined;
    // each revision's workloads, read from its manifest (the manifest itself is not kept)
    const named: { objects: ReleaseObject[]; more: boolean }[] = [];
    for (const revision of revisions) {
      const m = [bin(), 'get', 'manifest', ...globals(ref.namespace), '--revision', String(revision), '--', rel];
      const got = await read(m, ctx);
      // too large to read: nothing can be said of its owner (refused unless gitops: ignore), unless
      // a revision before it names live workloads of the release (nor of its scope: said in docs)
      if (got.code !== 0 && got.stderr.startsWith(HELM_OUTPUT_OVER)) {
        tooLarge = `Helm release ${ref.namespace}/${rel}'s manifest of revision ${revision} is larger than helm output may be (${HELM_OUTPUT_MAX} characters), so whether a Flux HelmRelease installs it cannot be checked`;
        break;
      }
      // its error names stderr only: what it printed is the chart's rendered objects, Secrets too
      if (got.code !== 0) throw new HelmError(m, { ...got, stdout: '' });
      flux ||= labelledByFlux(got.stdout);
      const { objects, more, outside, unread } = releaseWorkloads(got.stdout, ref.namespace, ctx.outOfScope);
      if (outside.length > 0) return { changes: [], scopeRefusal: `would write what revision ${revision}'s manifest names outside rollguard's scope: ${firstThree(outside, '; ')}` };
      // what helm may read there is not known: neither its scope nor its lock can be checked
      if (unread.length > 0) {
        return {
          changes: [],
          scopeRefusal: `cannot check what revision ${revision}'s manifest writes against the scope settings: it holds documents that may name a Deployment, StatefulSet or DaemonSet but cannot be read here (${firstThree(unread, '; ')}); fix the chart's YAML, or roll back by hand`,
        };
      }
      named.push({ objects, more });
    }
    const not = new Set<string>();
    for (const { objects, more } of named) {
      if (objects.length === 0) continue;
      const live = await liveWorkloads(kube, objects, release, ctx);
      if (live.changes.length > 0) return { changes: live.changes, ...(more ? { more } : {}), ...(live.unreadable.length ? { unreadable: live.unreadable } : {}) };
      for (const n of live.not) not.add(n);
    }
    if (tooLarge !== undefined) return { changes: [], unchecked: tooLarge };
    if (!flux) return { changes: [] };
    const why = not.size ? [...not].join(', ') : 'it names no Deployment, StatefulSet or DaemonSet';
    return { changes: [], unchecked: `Helm release ${ref.namespace}/${rel}'s manifest labels objects as a Flux HelmRelease's, but none of its workloads is live and the release's (${why}), so that HelmRelease cannot be checked` };
  }

  /**
   * `helm history` of the release, its last `max` revisions, and the newest of them; a string (what
   * a 'not_found' refusal says) for a release that is not there, has no history, or is uninstalled
   * with its history kept (`helm uninstall --keep-history` leaves its newest revision `uninstalled`,
   * numbered as before, and `helm rollback` installs such a release again: its objects created anew).
   */
  async function historyOf(ref: TargetRef, rel: string, max: number, ctx: ActionContext): Promise<{ history: HistoryEntry[]; newest: HistoryEntry } | string> {
    const argv = [bin(), 'history', ...globals(ref.namespace), '--max', String(max), '-o', 'json', '--', rel];
    const r = await read(argv, ctx);
    if (r.code !== 0) {
      if (/not found/i.test(r.stderr)) return `helm release "${rel}" in ${ref.namespace}: ${r.stderr.trim().replace(/^Error:\s*/, '')}`;
      throw new HelmError(argv, r);
    }
    let history: HistoryEntry[];
    try {
      history = (JSON.parse(r.stdout) as HistoryEntry[]).filter((h) => typeof h.revision === 'number');
    } catch {
      throw new HelmError(argv, { ...r, stderr: `unparsable history JSON: ${r.stdout.slice(0, 200)}` });
    }
    const newest = history.reduce<HistoryEntry | null>((m, h) => (!m || h.revision > m.revision ? h : m), null);
    if (!newest) return `helm release "${rel}" in ${ref.namespace} has no history`;
    if (newest.status === 'uninstalled' || newest.status === 'uninstalling') {
      return `helm release "${rel}" in ${ref.namespace} is ${newest.status} (its history kept, as helm uninstall --keep-history leaves it): helm rollback would install it again`;
    }
    return { history, newest };
  }

  /** What a plan's summary says of a manifest naming more workloads than are read. */
  const beyondRead = (locked: number) =>
    `; its manifest names more than ${RELEASE_OBJECTS_READ} Deployments, StatefulSets and DaemonSets: the ${locked} of the first ${RELEASE_OBJECTS_READ} that are live and the release's are locked, kept in cooldown and watched, the others not`;
  /** What a plan's summary says of workloads the API server refused to let rollguard read (liveWorkloads). */
  const notRead = (lines: string[]) =>
    `; ${lines.length} of the workloads its manifest names could not be read, so they are not locked, kept in cooldown or watched: ${firstThree(lines, ', ')}`;

  const action: Action = {
    kind: 'HelmRelease',

    /** The argv of `helm rollback` for a plan (exported for tests and dry-run display). */
    async plan(ref: TargetRef, ctx: ActionContext): Promise<RollbackPlan> {
      const rel = release(ref);
      const h = await historyOf(ref, rel, 256, ctx);
      if (typeof h === 'string') return refused(ref, 'not_found', h);
      const { history, newest } = h;
      const updated = newest.updated ? Date.parse(newest.updated) : NaN;
      const current = {
        revision: newest.revision,
        createdAt: Number.isNaN(updated) ? 0 : updated,
        annotations: {
          ...(newest.chart ? { 'helm.sh/chart': newest.chart } : {}),
          ...(newest.app_version ? { 'app.kubernetes.io/version': newest.app_version } : {}),
          ...(newest.description ? { 'helm.sh/description': newest.description } : {}),
          // helm's --description is the change cause a rollback writes (the recovery reads it there,
          // as a workload's annotation), but only once helm is done with the revision: helm writes
          // it `pending-rollback` before it changes anything, and a helm that died with its replica
          // leaves it so (the recovery then closes it interrupted, for a human)
          ...(newest.description && !(newest.status ?? '').startsWith('pending') ? { [CHANGE_CAUSE]: newest.description } : {}),
        },
      };
      const base = { fromRevision: newest.revision, current };
      const wanted = ref.toRevision && ref.toRevision > 0 ? ref.toRevision : newest.revision - 1;
      if (ref.toRevision !== undefined && ref.toRevision < 0) return refused(ref, 'revision_not_found', `release "${rel}" has no revision ${ref.toRevision}`, base);
      if (wanted < 1) return refused(ref, 'no_history', `release "${rel}" has no previous revision to roll back to`, base);
      if (!history.some((h) => h.revision === wanted)) return refused(ref, 'revision_not_found', `release "${rel}" has no revision ${wanted} in its history`, base);
      if (wanted === newest.revision) return refused(ref, 'already_matches', `release "${rel}" is already at revision ${wanted}`, { ...base, toRevision: wanted });
      // With a cluster to read them from: the release's workloads, for the GitOps owner that
      // installs it (helm-workloads.ts), from the current revision, else the one gone back to. Not
      // for a recovery (it never looks for owners again), nor for a plan read only for its current
      // revision (a trigger's baseline).
      let found: Awaited<ReturnType<typeof workloadsOf>> | undefined;
      if (ctx.kube && !ctx.recovering && !ctx.currentOnly) {
        found = await workloadsOf(ref, rel, [newest.revision, wanted], ctx, ctx.kube);
        // the helm CLI keeps a release's records and its objects in one namespace (--namespace): a
        // rollback from the records' namespace would write the old revision's objects there
        if (found.apart !== undefined) {
          return refused(
            ref,
            'unsupported',
            `Helm release "${rel}" keeps its objects in namespace ${found.apart}, apart from its records in ${ref.namespace} (as a Flux HelmRelease with targetNamespace installs it): ` +
              `helm rollback --namespace ${ref.namespace} would write the old revision's objects into ${ref.namespace}; revert the bad commit in git instead`,
            { ...base, toRevision: wanted },
          );
        }
        if (found.scopeRefusal !== undefined) return refused(ref, 'out_of_scope', `helm rollback ${rel} ${wanted} in ${ref.namespace} ${found.scopeRefusal}`, { ...base, toRevision: wanted });
      }
      const command = [
        bin(),
        'rollback',
        ...globals(ref.namespace),
        '--wait',
        '--timeout',
        timeout(ref),
        ...(ctx.changeCause ? ['--description', description(ctx.changeCause)] : []),
        ...(ctx.dryRun ? ['--dry-run=server'] : []),
        '--',
        rel,
        String(wanted),
      ];
      return {
        target: ref,
        kind: 'HelmRelease',
        ...base,
        toRevision: wanted,
        summary: `helm rollback ${rel} ${wanted} in ${ref.namespace} (from revision ${newest.revision}${newest.chart ? `, ${newest.chart}` : ''})${found?.more ? beyondRead(found.changes.length) : ''}${found?.unreadable ? notRead(found.unreadable) : ''}`,
        command,
        release: { namespace: ref.namespace, name: rel },
        ...(found?.changes.length ? { changes: found.changes } : {}),
        ...(found?.unchecked ? { ownersUnchecked: found.unchecked } : {}),
        plannedAt: Date.now(),
      };
    },

    async execute(plan: RollbackPlan, ctx: ActionContext): Promise<ExecuteResult> {
      if (plan.refusal) throw new Error(`cannot execute a refused plan (${plan.refusal.code}: ${plan.refusal.message})`);
      if (!plan.command) throw new Error('helm plan without a command');
      // helm rollback takes no precondition: the release is read again right before it. An upgrade
      // since the plan (a fix deployed while a migration Job or a GitOps suspension ran) would
      // otherwise be rolled back to the revision before the bad one, unasked; a release
      // uninstalled since (its history kept or not) is not installed again from its old revision.
      const rel = release(plan.target);
      // a read that fails wrote nothing: said so (wroteNothing), so the cooldown started for the
      // write is given back, as for a write the API server refused
      const now = await historyOf(plan.target, rel, 1, ctx).catch((err: unknown) => {
        throw nothingWritten(err);
      });
      const moved = typeof now === 'string' ? now : now.newest.revision !== plan.fromRevision ? `release "${rel}" moved from revision ${plan.fromRevision} to ${now.newest.revision} after the rollback was planned` : undefined;
      if (moved !== undefined) {
        const refusal = { code: 'changed_since_plan' as const, message: `${moved}; not rolling it back automatically` };
        return { applied: false, message: `not applied: ${refusal.message}`, at: Date.now(), attempts: 1, refusal };
      }
      await ctx.checkFence();
      // helm waits itself (--wait, up to --timeout); give it that plus a minute
      const r = await run(plan.command, {
        ...(ctx.signal ? { signal: ctx.signal } : {}),
        timeoutMs: helmDurationMs(timeout(plan.target)) + 60_000,
      });
      if (r.code !== 0) throw new HelmError(plan.command, r);
      ctx.logger.info({ release: release(plan.target), namespace: plan.target.namespace }, 'helm rollback done');
      // the generation the rollback left each workload at: a later one is someone else's (the
      // GitOps stage's drift check watches them, as it watches a written object)
      const generations: Record<string, number> = {};
      const kube = ctx.kube;
      if (kube && !ctx.dryRun) {
        const limit = pLimit(RELEASE_READS_AT_ONCE);
        const changes = plan.changes ?? [];
        const read = await Promise.all(changes.map((c) => limit(() => kube.get(c.resource, c.namespace, c.name, reqOpts(ctx)).then((o) => o.metadata.generation, () => undefined))));
        changes.forEach((c, i) => {
          const gen = read[i];
          if (gen !== undefined) generations[resourceKey(c)] = gen;
        });
      }
      return { applied: !ctx.dryRun, message: r.stdout.trim() || plan.summary, at: Date.now(), attempts: 1, ...(Object.keys(generations).length ? { generations } : {}) };
    },

    async verify(plan: RollbackPlan, ctx: ActionContext, opts: VerifyOptions): Promise<VerifyResult> {
      const rel = release(plan.target);
      const argv = [bin(), 'status', ...globals(plan.target.namespace), '-o', 'json', '--', rel];
      let last = '';
      return verifyUntil(
        ctx,
        opts,
        async (): Promise<VerifyResult | undefined> => {
          const r = await read(argv, ctx).catch((e: Error) => ({ code: -1, stdout: '', stderr: e.message }));
          if (r.code !== 0) return { outcome: 'unverified', message: `helm status failed: ${r.stderr.trim()}` };
          let st: { version?: number; info?: { status?: string; description?: string } };
          try {
            st = JSON.parse(r.stdout);
          } catch {
            return { outcome: 'unverified', message: 'helm status printed no JSON' };
          }
          const status = st.info?.status;
          const details = { version: st.version, status, description: st.info?.description };
          if ((st.version ?? 0) > (plan.fromRevision ?? 0)) {
            if (status === 'deployed') return { outcome: 'succeeded', message: `release "${rel}" revision ${st.version} deployed: ${st.info?.description ?? ''}`.trim(), details };
            if (status === 'failed') return { outcome: 'failed', message: `release "${rel}" revision ${st.version} failed: ${st.info?.description ?? ''}`.trim(), details };
          }
          last = `release "${rel}" is ${status} at revision ${st.version}`;
          return undefined;
        },
        () => last,
        'cannot read the release status',
      );
    },
  };
  return action;
}

export const helmAction = createHelmAction();

/** HelmRelease: `name` is the release (at most 53 characters); rule param toRevision. */
export const helmReleaseKind: KindDefinition<'HelmRelease', z.infer<typeof helmReleaseOptions>> = defineKind({
  kind: 'HelmRelease',
  name: 'helm',
  revisions: true,
  options: helmReleaseOptions,
  params: {},
  fromParams: () => ({}),
  create: (deps) => createHelmAction(deps.helm),
});
