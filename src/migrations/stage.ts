// Where the engine meets a rule's migration rollback Job (src/engine/rollback.ts, scheduler.ts):
//  1. withMigration(), right after the action planned: a revision annotated as carrying a schema
//     migration, under a rule with `migration:`, gets the rule's Job template read from its
//     ConfigMap, checked (template.ts) and admitted by the API server in a server dry run; the Job
//     joins the plan (its summary, and writtenObjects(), so scope and locks see it), or the plan
//     refuses naming what is wrong;
//  2. migrateFirst(), after the write-ahead and approval, before anything else is written: creates
//     the Job and records the uid the API server gave it, waits for it within the rule's deadline,
//     and stops the rollback (failed, escalated with the Job's name and its last log lines or
//     termination message) unless it succeeded;
//  3. resumable(), for the recovery of a record whose replica died mid-Job: the Job is read by its
//     name, never created a second time, and the rollback goes on from there.
// Only the Job rollguard created counts: the one with the uid its record holds. Its name, labels
// and annotations are known before approval (the record id is in the approval request), so anyone
// who may create Jobs in the namespace can make one that looks like it; a Job under its name that
// rollguard cannot show it created (notOurs) stops the rollback, escalated, naming that Job.
import { reqOpts, type ActionContext, type RollbackPlan } from '../actions/action.js';
import type { EngineContext } from '../engine/context.js';
import type { Message } from '../engine/messages.js';
import type { RollbackRecord, RollbackState } from '../engine/record.js';
import { MIGRATION_ANNOTATION } from '../guards/approval.js';
import { writeCooldown } from '../guards/cooldown.js';
import { RESOURCES, type Kube, type KubeObject } from '../kube/kube.js';
import { KubeApiError } from '../kube/errors.js';
import { pollUntil } from '../kube/rollout-status.js';
import { formatDuration } from '../rules/duration.js';
import type { Guards } from '../rules/schema.js';
import { failedContainer, jobVerdict, lastLines, type JobVerdict } from './outcome.js';
import { buildJob, MANAGED_BY, parseTemplate, TemplateError } from './template.js';
import type { MigrationRecord, PlannedMigration } from './types.js';

/** How often the Job is read while waiting. */
export const POLL_MS = 500;
/** pods/log is a kubelet round trip: a short deadline, then the termination message is used */
const LOG_TIMEOUT_MS = 5000;

const opts = reqOpts;

/** Step 1: the plan with the rule's migration rollback Job, or refused saying what is wrong with it. */
export async function withMigration(ctx: EngineContext, rec: RollbackRecord, plan: RollbackPlan, actx: ActionContext): Promise<RollbackPlan> {
  const rule = ctx.ruleFor(rec);
  const m = rule?.migration;
  if (!m || plan.refusal || !actx.kube) return plan;
  if (plan.current?.annotations[MIGRATION_ANNOTATION] !== 'true') return plan;
  const kube = actx.kube;
  const ns = rec.ref.namespace;
  const source = `ConfigMap ${ns}/${m.job.configMap} key ${m.job.key}`;
  const refuse = (message: string): RollbackPlan => ({ ...plan, summary: `refused: ${message}`, refusal: { code: 'migration_job', message } });
  const carries = `revision ${plan.current.revision} carries a schema migration (${MIGRATION_ANNOTATION})`;

  let cm: KubeObject;
  try {
    cm = await kube.get(RESOURCES.configmaps, ns, m.job.configMap, opts(actx));
  } catch (err) {
    if (!(err instanceof KubeApiError)) throw err;
    if (err.isNotFound) return refuse(`${carries}, but rule ${rule.name}'s migration.job.configMap names ${source}, which does not exist: create it with the rollback Job template, or fix the rule`);
    if (err.status === 403) return refuse(`${carries}, but rollguard may not read ${source} (${err.message}): set the chart's migrations.enabled`);
    throw err;
  }
  const data = (cm as { data?: Record<string, string> }).data ?? {};
  const text = data[m.job.key];
  if (text === undefined) {
    const keys = Object.keys(data);
    return refuse(`${carries}, but rule ${rule.name}'s migration.job.key: ConfigMap ${ns}/${m.job.configMap} has no key "${m.job.key}" (${keys.length ? `it has ${keys.map((k) => `"${k}"`).join(', ')}` : 'it has no data'})`);
  }
  let job: KubeObject;
  try {
    job = buildJob(parseTemplate(text), {
      recordId: rec.id,
      target: rec.target,
      namespace: ns,
      ...(plan.fromRevision !== undefined ? { fromRevision: plan.fromRevision } : {}),
      ...(plan.toRevision !== undefined ? { toRevision: plan.toRevision } : {}),
      deadlineMs: m.deadline,
      ttlAfterFinishedMs: m.ttlAfterFinished,
      source: `${m.job.configMap}/${m.job.key}`,
    });
  } catch (err) {
    if (err instanceof TemplateError) return refuse(`${carries}, but the migration rollback Job template in ${source} is not valid: ${err.message}`);
    throw err;
  }
  // The API server checks the rest of the Job (strictly: an unknown field is refused, by name).
  try {
    await kube.create(RESOURCES.jobs, ns, job, { ...opts(actx), dryRun: true });
  } catch (err) {
    if (!(err instanceof KubeApiError)) throw err;
    if (err.status === 403) return refuse(`${carries}, but rollguard may not create Jobs in ${ns} (${err.message}): set the chart's migrations.enabled`);
    if (err.status === 400 || err.status === 422) return refuse(`${carries}, but the API server refuses the Job built from ${source}: ${err.message}`);
    if (!err.isConflict) throw err;
    // 409: a Job holds this rollback's Job name before it created one (a record is planned only
    // before its Job is created): someone else's, never taken for the migration rollback
    const there = await kube.get(RESOURCES.jobs, ns, job.metadata.name, opts(actx)).catch(() => undefined);
    return refuse(
      `${carries}, but a Job ${ns}/${job.metadata.name}${foreignText(there)} exists already, which this rollback did not create: rollguard runs only the Job it creates from ${source}, and never waits on another in its place. Find out who created that Job and what it ran (kubectl -n ${ns} describe job ${job.metadata.name}), then roll back by hand or ask for a new rollback (rollguard rollbacks create ${rec.target} --reason "…"), which creates its own Job`,
    );
  }
  const name = job.metadata.name;
  rec.migration = { namespace: ns, job: name, source, deadlineMs: m.deadline, state: 'planned' };
  const planned: PlannedMigration = { namespace: ns, name, job, source, deadlineMs: m.deadline, logLines: m.logLines };
  return { ...plan, migration: planned, summary: `first runs the migration rollback Job ${ns}/${name} (from ${source}, deadline ${formatDuration(m.deadline)}); then ${plan.summary}` };
}

/** " (uid …, created …, managed by …)": what tells a Job found under rollguard's Job name apart. */
function foreignText(job: KubeObject | undefined): string {
  if (!job) return '';
  const f = foreignOf(job);
  return ` (${[f.uid ? `uid ${f.uid}` : '', f.createdAt ? `created ${f.createdAt}` : '', f.managedBy ? `labelled managed-by ${f.managedBy}` : ''].filter(Boolean).join(', ')})`;
}

function foreignOf(job: KubeObject): NonNullable<MigrationRecord['foreign']> {
  const managedBy = job.metadata.labels?.[MANAGED_BY];
  return { ...(job.metadata.uid ? { uid: job.metadata.uid } : {}), ...(job.metadata.creationTimestamp ? { createdAt: String(job.metadata.creationTimestamp) } : {}), ...(managedBy ? { managedBy } : {}) };
}

/**
 * Step 2: runs the plan's migration rollback Job before the workload write. Returns undefined to
 * go on (the Job completed), or the state the rollback stopped in: failed (the Job failed or timed
 * out, or a Job under its name is not the one rollguard created: escalated, the workload untouched)
 * or in_progress (shutting down mid-Job: the record is left for the next replica, which reads the
 * Job by its name and takes it only with the recorded uid).
 */
export async function migrateFirst(ctx: EngineContext, rec: RollbackRecord, plan: RollbackPlan, actx: ActionContext, settings: Guards, spent: { value: boolean }): Promise<RollbackState | undefined> {
  const m = plan.migration;
  if (!m || !actx.kube) return undefined;
  const kube = actx.kube;
  const g: MigrationRecord = (rec.migration ??= { namespace: m.namespace, job: m.name, source: m.source, deadlineMs: m.deadlineMs, state: 'planned' });
  if (actx.dryRun) {
    if (m.job) await kube.create(RESOURCES.jobs, m.namespace, m.job, { ...opts(actx), dryRun: true });
    ctx.records.step(rec, 'migration_job', `(server dry run) the migration rollback Job ${m.namespace}/${m.name} was admitted; not run`);
    return undefined;
  }
  spent.value = true; // the Job changes the database: whatever happens next, the budget is spent
  let job: KubeObject;
  if (m.uid) {
    // taken up from a replica that died (resumable): the Job it created, by its recorded uid
    job = await kube.get(RESOURCES.jobs, m.namespace, m.name, opts(actx));
    if (job.metadata.uid !== m.uid) return notOurs(ctx, rec, g, job, replaced(m.namespace, m.name, m.uid), settings, 'failed');
    ctx.records.step(rec, 'migration_job', `found this rollback's migration rollback Job ${m.namespace}/${m.name} (uid ${m.uid}, as recorded when it was created): waiting for it, not creating another`);
  } else {
    if (!m.job) throw new Error(`the migration rollback Job of ${rec.id} is not in ${m.namespace} and there is no template to create it from`);
    await actx.checkFence();
    try {
      job = await kube.create(RESOURCES.jobs, m.namespace, m.job, opts(actx));
    } catch (err) {
      if (!(err instanceof KubeApiError && err.isConflict)) throw err;
      // this rollback creates its Job once, here (a replica taking it up never creates): the name is someone else's
      const there = await kube.get(RESOURCES.jobs, m.namespace, m.name, opts(actx)).catch(() => undefined);
      return notOurs(ctx, rec, g, there, `a Job ${m.namespace}/${m.name} was created by someone else before rollguard could create its migration rollback Job under that name`, settings, 'failed');
    }
    if (!job.metadata.uid) throw new Error(`the API server answered the create of Job ${m.namespace}/${m.name} without a uid; the Job is not waited for`);
    g.uid = job.metadata.uid;
    ctx.records.step(rec, 'migration_job', `created the migration rollback Job ${m.namespace}/${job.metadata.name} (uid ${g.uid}) from ${m.source}; waiting up to ${formatDuration(m.deadlineMs)}`);
  }
  g.job = job.metadata.name;
  g.state = 'running';
  g.createdAt = Date.parse(job.metadata.creationTimestamp ?? '') || ctx.now();
  await ctx.records.save(rec);
  ctx.log.info({ record: rec.id, job: `${m.namespace}/${g.job}` }, 'migration rollback Job running');

  const { verdict, last } = await waitForJob(ctx, kube, job, g, actx);
  if (verdict?.state === 'not_ours') return notOurs(ctx, rec, g, last, verdict.message, settings, 'failed');
  if (!verdict) {
    // shutting down: the record stays in_progress; the replica that takes it up reads the Job by its name and takes it only with the recorded uid
    ctx.records.step(rec, 'handover', `${ctx.owner} is shutting down while the migration rollback Job ${m.namespace}/${g.job} runs; the next replica takes it up`);
    await ctx.records.save(rec).catch((err) => ctx.log.error({ err, record: rec.id }, 'could not write the handover'));
    return 'in_progress';
  }
  g.state = verdict.state;
  g.message = verdict.message;
  g.finishedAt = ctx.now();
  if (verdict.state === 'succeeded') {
    ctx.records.step(rec, 'migration_job', `succeeded: ${verdict.message}; rolling back the workload`, { job: g.job });
    await ctx.records.save(rec);
    return undefined;
  }
  await explainFailure(kube, last, g, m.logLines, actx);
  ctx.records.step(rec, 'migration_job', `${verdict.state}: ${verdict.message}`, { job: g.job, ...(g.failed ? { failed: g.failed } : {}), ...(g.linesFrom ? { linesFrom: g.linesFrom } : {}) });
  ctx.log.error({ record: rec.id, job: `${m.namespace}/${g.job}`, state: verdict.state, failed: g.failed }, 'migration rollback Job did not succeed: the rollback stops');
  const at = ctx.now();
  await writeCooldown(ctx.store, rec.target, { id: rec.id, at, until: at + settings.cooldown, outcome: 'failed' }, at);
  ctx.metrics.escalations.inc({ reason: 'migration_failed' });
  const message = `${verdict.message}: the workload was not rolled back`;
  ctx.notify(rec, migrationFailed(rec, message, g));
  return ctx.finish(rec, 'failed', message);
}

/** Why a Job read under the migration rollback Job's name, with another uid than the one recorded at its create, is not rollguard's. */
const replaced = (namespace: string, name: string, uid: string) => `Job ${namespace}/${name} is not the one rollguard created (uid ${uid}): it was deleted and another put in its place`;

/**
 * Stops a rollback at a Job under its migration rollback Job's name that rollguard cannot show it
 * created (not the uid it recorded, or none recorded): never waited for, the workload not rolled
 * back; ended `state` (failed; interrupted when a replica died before recording the uid, and the
 * Job may be rollguard's own) and escalated naming that Job.
 */
async function notOurs(ctx: EngineContext, rec: RollbackRecord, g: MigrationRecord, job: KubeObject | undefined, why: string, settings: Guards, state: 'failed' | 'interrupted'): Promise<RollbackState> {
  g.state = 'not_ours';
  if (job) g.foreign = foreignOf(job);
  g.finishedAt = ctx.now();
  const message = `${why}${foreignText(job)}; it is not waited for, and the workload was not rolled back`;
  ctx.records.step(rec, 'migration_job', `not_ours: ${message}`, { job: g.job });
  ctx.log.error({ record: rec.id, job: `${g.namespace}/${g.job}`, foreign: g.foreign }, 'a Job under the migration rollback Job name is not the one rollguard created: the rollback stops');
  const at = ctx.now();
  await writeCooldown(ctx.store, rec.target, { id: rec.id, at, until: at + settings.cooldown, outcome: 'failed' }, at);
  ctx.metrics.escalations.inc({ reason: state === 'interrupted' ? 'interrupted' : 'migration_job_not_ours' });
  ctx.notify(rec, {
    kind: state === 'interrupted' ? 'rollback_interrupted' : 'rollback_failed',
    severity: 'critical',
    title: `Rollback of ${rec.target} stopped: Job ${g.namespace}/${g.job} is not a migration rollback Job rollguard can show it created: escalate`,
    lines: [
      message,
      `Find out who created Job ${g.namespace}/${g.job} and what it ran (kubectl -n ${g.namespace} describe job ${g.job}; kubectl -n ${g.namespace} logs job/${g.job}) and check the database`,
      `then roll the workload back by hand, or ask for a new rollback (rollguard rollbacks create ${rec.target} --reason "…"), which creates and runs its own migration rollback Job`,
    ],
  });
  return ctx.finish(rec, state, message);
}

/** The escalation of a rollback its migration rollback Job stopped. */
export function migrationFailed(rec: RollbackRecord, message: string, g: MigrationRecord): Message {
  return {
    kind: 'rollback_failed',
    severity: 'critical',
    title: `Rollback of ${rec.target} stopped: its migration rollback Job ${g.namespace}/${g.job} ${g.state === 'timed_out' ? 'timed out' : 'failed'}: escalate`,
    lines: [message, ...failureLines(g), 'The database may be part-way through the rollback: check it before rolling the workload back by hand'],
  };
}

/** Lines the escalation and the report carry about a failed Job. */
export function failureLines(g: MigrationRecord): string[] {
  const out: string[] = [];
  if (g.failed) out.push(`pod ${g.failed.pod}, container ${g.failed.container}${g.failed.exitCode !== undefined ? `: exit code ${g.failed.exitCode}` : ''}${g.failed.reason ? ` (${g.failed.reason})` : ''}`);
  if (g.lines?.length) out.push(`its last ${g.lines.length === 1 ? 'line' : `${g.lines.length} lines`} (${g.linesFrom}):`, ...g.lines.map((l) => `  ${l}`));
  out.push(`kubectl -n ${g.namespace} describe job ${g.job}; kubectl -n ${g.namespace} logs job/${g.job}`);
  return out;
}

/** Polls the Job until it succeeds, fails or its deadline passes; no verdict when shutting down. */
type Seen = JobVerdict | { state: 'not_ours'; message: string };

async function waitForJob(ctx: EngineContext, kube: Kube, job: KubeObject, g: MigrationRecord, actx: ActionContext): Promise<{ verdict?: Seen; last: KubeObject }> {
  let last = job;
  const started = g.createdAt ?? ctx.now();
  const check = async (): Promise<Seen | undefined> => {
    try {
      const read = await kube.get(RESOURCES.jobs, g.namespace, g.job, opts(actx));
      // deleted and another put in its place under the same name: that one's outcome is not the migration rollback's
      if (read.metadata.uid !== g.uid) {
        last = read;
        return { state: 'not_ours', message: `Job ${g.namespace}/${g.job} is no longer the one rollguard created (uid ${g.uid}): it was deleted while it ran and another put in its place` };
      }
      last = read;
    } catch (err) {
      if (err instanceof KubeApiError && err.retriable && !actx.signal?.aborted) {
        ctx.log.warn({ err: err.message, job: `${g.namespace}/${g.job}` }, 'could not read the migration rollback Job; trying again');
        return undefined;
      }
      if (actx.signal?.aborted) return undefined;
      return { state: 'failed', message: `Job ${g.namespace}/${g.job} could not be read (${(err as Error).message})` };
    }
    const v = jobVerdict(last, ctx.now(), started, g.deadlineMs);
    return v.state === 'running' ? undefined : v;
  };
  const remaining = Math.max(0, started + g.deadlineMs - ctx.now());
  const r = await pollUntil(check, { timeoutMs: remaining, pollMs: POLL_MS, ...(actx.signal ? { signal: actx.signal } : {}) });
  if (r.ok) return { verdict: r.value, last };
  if (r.reason === 'aborted') return { last };
  // the deadline passed: one last look (it may have just finished)
  const v: Seen = (await check()) ?? jobVerdict(last, Math.max(ctx.now(), started + g.deadlineMs), started, g.deadlineMs);
  return { verdict: v.state === 'running' ? { state: 'timed_out', message: v.message } : v, last };
}

/**
 * Why the Job failed, into the record: its failed container, and that container's last log lines
 * (pods/log), or, when the log cannot be read (no kubelet serves it: a node gone, kwok's fake
 * nodes), the lines of its termination message, or the pod's reason.
 */
async function explainFailure(kube: Kube, job: KubeObject, g: MigrationRecord, n: number, actx: ActionContext): Promise<void> {
  let pods: KubeObject[] = [];
  const uid = job.metadata.uid;
  try {
    pods = await kube.list(RESOURCES.pods, g.namespace, { ...opts(actx), labelSelector: uid ? `batch.kubernetes.io/controller-uid=${uid}` : `batch.kubernetes.io/job-name=${g.job}` });
  } catch (err) {
    g.lines = [`the Job's pods could not be listed: ${(err as Error).message}`];
    g.linesFrom = 'pod status';
    return;
  }
  // a failed container; at the deadline, the newest pod still running
  const fc =
    failedContainer(pods) ??
    pods
      .filter((p) => p.status?.phase === 'Running' || p.status?.phase === 'Pending')
      .sort((a, b) => String(b.metadata.creationTimestamp ?? '').localeCompare(String(a.metadata.creationTimestamp ?? '')))
      .map((p) => ({ pod: p.metadata.name, container: ((p.spec?.containers ?? []) as { name: string }[])[0]?.name ?? '', reason: String(p.status?.phase) }))[0];
  if (!fc) return;
  g.failed = { pod: fc.pod, container: fc.container, ...('exitCode' in fc && fc.exitCode !== undefined ? { exitCode: fc.exitCode } : {}), ...(fc.reason ? { reason: fc.reason } : {}) };
  try {
    const log = await kube.podLog(g.namespace, fc.pod, { ...opts(actx), ...(fc.container ? { container: fc.container } : {}), tailLines: n, limitBytes: 64 * 1024, timeoutMs: LOG_TIMEOUT_MS });
    const lines = lastLines(log, n);
    if (lines.length) {
      g.lines = lines;
      g.linesFrom = 'log';
      return;
    }
  } catch {
    // no log served: the termination message below says what the container said last
  }
  const msg = 'message' in fc ? fc.message : undefined;
  if (msg) {
    g.lines = lastLines(msg, n);
    g.linesFrom = 'termination message';
  } else if (fc.reason) {
    g.lines = [fc.reason];
    g.linesFrom = 'pod status';
  }
}

/**
 * Step 3, recovery: a record left in_progress mid-Job by a dead replica. Returns the plan to go on
 * with (the workload write after the Job, which is read by its name and counts only with the uid
 * recorded when it was created, never created again); 'ended' when a Job under its name is not one
 * rollguard can show it created (another uid: failed; no uid recorded, the replica having died
 * between the create and recording it, or a record from before 2026-12-07: interrupted), the
 * record then closed and escalated naming it; or undefined when its Job does not exist (the
 * replica died before creating it: nothing ran, and the record is ended interrupted as any
 * rollback that was not applied).
 */
export async function resumable(ctx: EngineContext, rec: RollbackRecord, plan: RollbackPlan | undefined, actx: ActionContext): Promise<RollbackPlan | 'ended' | undefined> {
  const g = rec.migration;
  if (!g || !plan || plan.refusal || !actx.kube || rec.times.executedAt !== undefined) return undefined;
  if (g.state === 'failed' || g.state === 'timed_out' || g.state === 'not_ours') return undefined;
  let job: KubeObject;
  try {
    job = await actx.kube.get(RESOURCES.jobs, g.namespace, g.job, opts(actx));
  } catch (err) {
    if (err instanceof KubeApiError && err.isNotFound) return undefined;
    throw err;
  }
  const settings = ctx.settingsFor(rec);
  if (!g.uid) {
    await notOurs(ctx, rec, g, job, `Job ${g.namespace}/${g.job} exists, but this record holds no uid for it: rollguard cannot tell whether it is the Job it created (its replica stopped before recording it) or someone else's under its name`, settings, 'interrupted');
    return 'ended';
  }
  if (job.metadata.uid !== g.uid) {
    await notOurs(ctx, rec, g, job, replaced(g.namespace, g.job, g.uid), settings, 'failed');
    return 'ended';
  }
  const m: PlannedMigration = { namespace: g.namespace, name: g.job, uid: g.uid, source: g.source, deadlineMs: g.deadlineMs, logLines: ctx.ruleFor(rec)?.migration?.logLines ?? 20 };
  return { ...plan, migration: m, summary: `the migration rollback Job ${g.namespace}/${g.job} (from ${g.source}); then ${plan.summary}` };
}

