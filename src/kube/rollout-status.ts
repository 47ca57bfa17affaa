// "Is the rollout finished?" for Deployments, StatefulSets and DaemonSets, following kubectl's
// rollout status viewers, plus a poller that turns the answer into a verification outcome.
import type { Kube, KubeObject, RequestOptions, ResourceType } from './kube.js';
import { KubeApiError } from './errors.js';

export interface RolloutState {
  done: boolean;
  /** a definite failure (progress deadline exceeded) */
  failed: boolean;
  message: string;
}

export interface StatusOptions {
  /** the generation our write produced: status older than it is stale */
  minGeneration?: number;
  /** ms since epoch of our write: a ProgressDeadlineExceeded condition last updated before it is stale */
  since?: number;
}

interface Condition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
  lastUpdateTime?: string;
}

const n = (v: unknown): number => (typeof v === 'number' ? v : 0);

export function deploymentState(d: KubeObject, opts: StatusOptions = {}): RolloutState {
  const name = d.metadata.name;
  const gen = Math.max(n(d.metadata.generation), opts.minGeneration ?? 0);
  const st = d.status ?? {};
  if (gen > n(st.observedGeneration)) {
    return { done: false, failed: false, message: 'Waiting for deployment spec update to be observed...' };
  }
  const cond = ((st.conditions ?? []) as Condition[]).find((c) => c.type === 'Progressing');
  if (cond?.reason === 'ProgressDeadlineExceeded') {
    const updated = cond.lastUpdateTime ? Date.parse(cond.lastUpdateTime) : NaN;
    // condition times have 1 s resolution
    const fresh = opts.since === undefined || Number.isNaN(updated) || updated >= Math.floor(opts.since / 1000) * 1000;
    if (fresh) return { done: false, failed: true, message: `deployment "${name}" exceeded its progress deadline` };
  }
  const replicas = typeof d.spec?.replicas === 'number' ? d.spec.replicas : undefined;
  if (replicas !== undefined && n(st.updatedReplicas) < replicas) {
    return {
      done: false,
      failed: false,
      message: `Waiting for deployment "${name}" rollout to finish: ${n(st.updatedReplicas)} out of ${replicas} new replicas have been updated...`,
    };
  }
  if (n(st.replicas) > n(st.updatedReplicas)) {
    return {
      done: false,
      failed: false,
      message: `Waiting for deployment "${name}" rollout to finish: ${n(st.replicas) - n(st.updatedReplicas)} old replicas are pending termination...`,
    };
  }
  if (n(st.availableReplicas) < n(st.updatedReplicas)) {
    return {
      done: false,
      failed: false,
      message: `Waiting for deployment "${name}" rollout to finish: ${n(st.availableReplicas)} of ${n(st.updatedReplicas)} updated replicas are available...`,
    };
  }
  return { done: true, failed: false, message: `deployment "${name}" successfully rolled out` };
}

export function statefulSetState(s: KubeObject, opts: StatusOptions = {}): RolloutState {
  const st = s.status ?? {};
  const strategy = s.spec?.updateStrategy ?? {};
  if (strategy.type && strategy.type !== 'RollingUpdate') {
    return { done: false, failed: false, message: 'rollout status is only available for RollingUpdate strategy type' };
  }
  const gen = Math.max(n(s.metadata.generation), opts.minGeneration ?? 0);
  if (n(st.observedGeneration) === 0 || gen > n(st.observedGeneration)) {
    return { done: false, failed: false, message: 'Waiting for statefulset spec update to be observed...' };
  }
  const replicas = typeof s.spec?.replicas === 'number' ? s.spec.replicas : undefined;
  if (replicas !== undefined && n(st.readyReplicas) < replicas) {
    return { done: false, failed: false, message: `Waiting for ${replicas - n(st.readyReplicas)} pods to be ready...` };
  }
  const partition = strategy.rollingUpdate?.partition;
  if (typeof partition === 'number' && partition > 0 && replicas !== undefined) {
    if (n(st.updatedReplicas) < replicas - partition) {
      return {
        done: false,
        failed: false,
        message: `Waiting for partitioned roll out to finish: ${n(st.updatedReplicas)} out of ${replicas - partition} new pods have been updated...`,
      };
    }
    return { done: true, failed: false, message: `partitioned roll out complete: ${n(st.updatedReplicas)} new pods have been updated...` };
  }
  if (st.updateRevision !== st.currentRevision) {
    return {
      done: false,
      failed: false,
      message: `waiting for statefulset rolling update to complete ${n(st.updatedReplicas)} pods at revision ${st.updateRevision}...`,
    };
  }
  return { done: true, failed: false, message: `statefulset rolling update complete ${n(st.currentReplicas)} pods at revision ${st.currentRevision}...` };
}

export function daemonSetState(d: KubeObject, opts: StatusOptions = {}): RolloutState {
  const name = d.metadata.name;
  const st = d.status ?? {};
  const strategy = d.spec?.updateStrategy ?? {};
  if (strategy.type && strategy.type !== 'RollingUpdate') {
    return { done: false, failed: false, message: 'rollout status is only available for RollingUpdate strategy type' };
  }
  const gen = Math.max(n(d.metadata.generation), opts.minGeneration ?? 0);
  if (gen > n(st.observedGeneration)) {
    return { done: false, failed: false, message: 'Waiting for daemon set spec update to be observed...' };
  }
  if (n(st.updatedNumberScheduled) < n(st.desiredNumberScheduled)) {
    return {
      done: false,
      failed: false,
      message: `Waiting for daemon set "${name}" rollout to finish: ${n(st.updatedNumberScheduled)} out of ${n(st.desiredNumberScheduled)} new pods have been updated...`,
    };
  }
  if (n(st.numberAvailable) < n(st.desiredNumberScheduled)) {
    return {
      done: false,
      failed: false,
      message: `Waiting for daemon set "${name}" rollout to finish: ${n(st.numberAvailable)} of ${n(st.desiredNumberScheduled)} updated pods are available...`,
    };
  }
  return { done: true, failed: false, message: `daemon set "${name}" successfully rolled out` };
}

export interface WaitResult {
  outcome: 'succeeded' | 'failed' | 'unverified';
  message: string;
  details: Record<string, unknown>;
}

export interface WaitOptions extends RequestOptions {
  timeoutMs: number;
  pollMs?: number;
  /**
   * Our own progress deadline (ms since `since`), e.g. the Deployment's progressDeadlineSeconds:
   * not done by then is 'failed' even when the controller kept an older condition.
   */
  deadlineMs?: number;
  since?: number;
}

export interface PollOptions {
  timeoutMs: number;
  /** between checks (default 1 s) */
  pollMs?: number;
  /** stops the wait at once (shutdown): the result is then 'aborted' */
  signal?: AbortSignal;
}

export type PollResult<R> = { ok: true; value: R } | { ok: false; reason: 'timeout' | 'aborted'; elapsedMs: number };

/** Resolves after ms, or at once when the signal aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * Calls `check` until it returns a value (not undefined), the time runs out, or the signal aborts;
 * the first check runs at once, then one every pollMs (never past the deadline). `check` may
 * throw: the error ends the wait and propagates.
 */
export async function pollUntil<R>(check: (elapsedMs: number) => Promise<R | undefined>, opts: PollOptions): Promise<PollResult<R>> {
  const start = Date.now();
  const pollMs = opts.pollMs ?? 1000;
  for (;;) {
    if (opts.signal?.aborted) return { ok: false, reason: 'aborted', elapsedMs: Date.now() - start };
    const value = await check(Date.now() - start);
    if (value !== undefined) return { ok: true, value };
    const elapsed = Date.now() - start;
    if (opts.signal?.aborted) return { ok: false, reason: 'aborted', elapsedMs: elapsed };
    if (elapsed >= opts.timeoutMs) return { ok: false, reason: 'timeout', elapsedMs: elapsed };
    await sleep(Math.min(pollMs, Math.max(0, opts.timeoutMs - elapsed)), opts.signal);
  }
}

/**
 * Polls one object until `state` says done (succeeded) or failed, or the time runs out
 * (unverified; or failed when our own deadlineMs passed first). A failing read ends the wait at
 * once as 'unverified' with the API error: reads are not retried in a loop.
 */
export async function waitForRollout(
  kube: Kube,
  rt: ResourceType,
  namespace: string,
  name: string,
  state: (o: KubeObject) => RolloutState,
  opts: WaitOptions,
): Promise<WaitResult> {
  const start = Date.now();
  const since = opts.since ?? start;
  let last: RolloutState | undefined;
  let details: Record<string, unknown> = {};
  let polls = 0;
  const r = await pollUntil<WaitResult>(async () => {
    polls++;
    let obj: KubeObject;
    try {
      obj = await kube.get(rt, namespace, name, { ...(opts.signal ? { signal: opts.signal } : {}), ...(opts.precedence !== undefined ? { precedence: opts.precedence } : {}) });
    } catch (err) {
      const msg = err instanceof KubeApiError ? err.message : String(err);
      return { outcome: 'unverified', message: `cannot read ${rt.kind} ${namespace}/${name}: ${msg}`, details: { polls, last: last?.message } };
    }
    last = state(obj);
    details = { polls, elapsedMs: Date.now() - start, status: obj.status ?? null };
    if (last.done) return { outcome: 'succeeded', message: last.message, details };
    if (last.failed) return { outcome: 'failed', message: last.message, details };
    if (opts.deadlineMs !== undefined && Date.now() - since >= opts.deadlineMs) {
      return {
        outcome: 'failed',
        message: `${rt.kind} ${namespace}/${name} did not finish rolling back within its progress deadline (${Math.round(opts.deadlineMs / 1000)}s): ${last.message}`,
        details,
      };
    }
    return undefined;
  }, opts);
  if (r.ok) return r.value;
  const why = r.reason === 'aborted' ? `cancelled after ${r.elapsedMs} ms` : `not finished after ${opts.timeoutMs} ms`;
  return { outcome: 'unverified', message: `${why}: ${last?.message ?? 'no status read'}`, details };
}
