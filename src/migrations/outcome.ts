// Where a migration rollback Job stands, and why it failed: pure functions over the Job and its
// pods as the API server shows them.
import type { KubeObject } from '../kube/kube.js';
import { redactUrl } from '../redact.js';

export type JobState = 'running' | 'succeeded' | 'failed' | 'timed_out';

export interface JobVerdict {
  state: JobState;
  message: string;
}

interface Condition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
}

const conditions = (job: KubeObject): Condition[] => (Array.isArray(job.status?.conditions) ? (job.status.conditions as Condition[]) : []);
const holds = (job: KubeObject, type: string) => conditions(job).find((c) => c.type === type && c.status === 'True');

/**
 * The Job's state: succeeded on its Complete condition (or SuccessCriteriaMet, which the Job
 * controller sets before the pods are gone), failed on Failed (or FailureTarget, set as soon as
 * the controller decided: backoff limit, activeDeadlineSeconds, a pod failure policy), timed out
 * when neither came within `deadlineMs` of `startedAt`, else running.
 */
export function jobVerdict(job: KubeObject, now: number, startedAt: number, deadlineMs: number): JobVerdict {
  const name = `Job ${job.metadata.namespace}/${job.metadata.name}`;
  const ok = holds(job, 'Complete') ?? holds(job, 'SuccessCriteriaMet');
  if (ok) return { state: 'succeeded', message: `${name} completed` };
  const failed = holds(job, 'Failed') ?? holds(job, 'FailureTarget');
  if (failed) {
    const why = [failed.reason, failed.message].filter(Boolean).join(': ');
    return { state: 'failed', message: `${name} failed${why ? ` (${why})` : ''}` };
  }
  if (now - startedAt >= deadlineMs) {
    return { state: 'timed_out', message: `${name} did not finish within its deadline of ${Math.round(deadlineMs / 1000)}s (${activity(job)})` };
  }
  return { state: 'running', message: `${name}: ${activity(job)}` };
}

function activity(job: KubeObject): string {
  const s = job.status ?? {};
  return `${s.active ?? 0} active, ${s.succeeded ?? 0} succeeded, ${s.failed ?? 0} failed pods`;
}

/** The container that failed a Job's pod: what the kubelet (or kwok) reported when it ended. */
export interface FailedContainer {
  pod: string;
  container: string;
  exitCode?: number;
  reason?: string;
  /** the container's termination message (terminationMessagePath, or its log tail with FallbackToLogsOnError) */
  message?: string;
  /** when it ended (ms), to pick the newest attempt */
  finishedAt?: number;
}

interface ContainerStatus {
  name: string;
  state?: { terminated?: { exitCode?: number; reason?: string; message?: string; finishedAt?: string } };
  lastState?: { terminated?: { exitCode?: number; reason?: string; message?: string; finishedAt?: string } };
}

/**
 * The newest terminated container with a non-zero exit code among the Job's pods (init containers
 * too; a restarted container's last state counts), or, when none is, the newest failed pod with its
 * reason. Undefined when no pod shows a failure (deleted already, or the Job never started one).
 */
export function failedContainer(pods: KubeObject[]): FailedContainer | undefined {
  let best: FailedContainer | undefined;
  const consider = (c: FailedContainer) => {
    if (!best || (c.finishedAt ?? 0) >= (best.finishedAt ?? 0)) best = c;
  };
  for (const pod of pods) {
    const st = pod.status ?? {};
    const statuses = [...((st.initContainerStatuses ?? []) as ContainerStatus[]), ...((st.containerStatuses ?? []) as ContainerStatus[])];
    for (const cs of statuses) {
      for (const t of [cs.state?.terminated, cs.lastState?.terminated]) {
        if (!t || !t.exitCode) continue;
        const finished = t.finishedAt ? Date.parse(t.finishedAt) : NaN;
        consider({
          pod: pod.metadata.name,
          container: cs.name,
          exitCode: t.exitCode,
          ...(t.reason ? { reason: t.reason } : {}),
          ...(t.message ? { message: t.message } : {}),
          ...(Number.isNaN(finished) ? {} : { finishedAt: finished }),
        });
      }
    }
  }
  if (best) return best;
  for (const pod of pods) {
    if (pod.status?.phase !== 'Failed') continue;
    const c = ((pod.spec?.containers ?? []) as { name: string }[])[0];
    consider({ pod: pod.metadata.name, container: c?.name ?? '', ...(pod.status.reason ? { reason: pod.status.reason } : {}), ...(pod.status.message ? { message: pod.status.message } : {}) });
  }
  return best;
}

/** At most this many characters of one line in a record or a notification. */
const LINE_MAX = 400;

/** A URL anywhere in a line (`jdbc:postgresql://...` too): a scheme, `://`, then up to the next space. */
const URL_IN_LINE = /(?<![a-z0-9+.-])[a-z][a-z0-9+.-]*:\/\/\S+/gi;
/** Names whose value is a credential, also as the end of a longer name (DB_PASSWORD, spring.datasource.password, x-api-key). */
const SECRET_KEY = String.raw`(?:password|passwd|passphrase|pwd|pass|secret|token|(?:api|access|secret|private|auth)[_-]?key|credentials?)`;
/** A value: double-quoted (escapes kept inside), single-quoted, else up to the next space; an unclosed quote runs to the end of the line. */
const VALUE = String.raw`("(?:[^"\\]|\\.)*(?:"|$)|'[^']*(?:'|$)|\S+)`;
/** `password=x`, `DB_PASSWORD: x`, `"password": "x"`, `token = 'x'`: the name, an optional closing quote (escaped too, JSON inside a string), `=` or `:` with optional spaces, the value. */
const KEY_VALUE = new RegExp(String.raw`(${SECRET_KEY}(?:\\?["'])?\s*[=:]\s*)${VALUE}`, 'gi');
/** `-password x`, `--db-password x`: a flag ending in such a name, spaces, the value. */
const FLAG_VALUE = new RegExp(String.raw`((?:^|\s)--?[\w.-]*${SECRET_KEY}\s+)${VALUE}`, 'gi');
/** `Authorization: Bearer x`, `Basic x`: the scheme's credentials. */
const AUTH_SCHEME = /\b(bearer|basic)(\s+)\S+/gi;
/** `mysql -phunter2`: the client's password glued to its `-p` flag (not `-password`, `-pwd`, `-pass`: flags of their own, above). */
const GLUED_P = /((?:^|\s)-p)(?!(?:assword|asswd|assphrase|wd|ass)\b)(?=\S)(\S+)/g;
const masked = (value: string) => (value.startsWith('"') ? '"***"' : value.startsWith("'") ? "'***'" : '***');

/**
 * One line as a record or a notification may hold it: each URL printed as `redactUrl` prints it
 * (`postgres://user:pa/ss@db` → `postgres://***@db`, cut at the authority's last `@`; credential
 * query values → ***), and the value after a credential's name replaced by *** (`password=x`,
 * `DB_PASSWORD: x`, `"password": "x"`, `--password x`, `-token x`, `SECRET_KEY=x`; the name may
 * end a longer one), as are `Bearer x`, `Basic x` and mysql's `-px`. The rest of the line, the
 * error an SRE reads, is kept.
 */
function redactLine(line: string): string {
  return line
    .replace(URL_IN_LINE, (url) => redactUrl(url))
    .replace(KEY_VALUE, (_all, key: string, value: string) => `${key}${masked(value)}`)
    .replace(FLAG_VALUE, (_all, flag: string, value: string) => `${flag}${masked(value)}`)
    .replace(AUTH_SCHEME, (_all, scheme: string, space: string) => `${scheme}${space}***`)
    .replace(GLUED_P, (_all, flag: string) => `${flag}***`);
}

/**
 * The last `n` non-empty lines of a text (a log, a termination message), each redacted
 * (`redactLine`: a migration tool's output often prints its JDBC URL or its password) and cut to
 * LINE_MAX characters.
 */
export function lastLines(text: string, n: number): string[] {
  const lines = text
    .split(/\r?\n/)
    .map((l) => l.trimEnd())
    .filter((l) => l.trim() !== '');
  return lines.slice(-n).map((l) => {
    const clean = redactLine(l);
    return clean.length > LINE_MAX ? `${clean.slice(0, LINE_MAX)}…` : clean;
  });
}
