// The migration rollback Job template (a rule's migration.job: a ConfigMap key holding YAML),
// checked with zod and turned into the Job rollguard creates. Pure: no cluster here.
//
// The YAML is a Job manifest (apiVersion batch/v1, kind Job, metadata with labels and annotations
// at most, spec) or a bare JobSpec (a map with `template`). What rollguard sets itself (name,
// namespace, the labels that find the Job again, the deadline) may not be set by the template; what
// would make a migration rollback run more than once at a time is refused; the rest of the pod
// spec is left to the API server, which validates it (strictly: unknown fields are refused) in a
// server dry run at plan time.
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { z } from 'zod';
import type { KubeObject } from '../kube/kube.js';
import { invalidName, nameSchema } from '../kube/names.js';

/** Labels on the Job and its pods, for people (kubectl get jobs -l …): never how rollguard tells its Job (stage.ts: by its name and recorded uid). */
export const RECORD_LABEL = 'rollguard.io/record';
export const PURPOSE_LABEL = 'rollguard.io/purpose';
export const PURPOSE = 'migration-rollback';
export const MANAGED_BY = 'app.kubernetes.io/managed-by';
/** annotations on the Job: the rollback's target and the template it came from */
export const TARGET_ANNOTATION = 'rollguard.io/target';
export const TEMPLATE_ANNOTATION = 'rollguard.io/template';

const stringMap = z.record(z.string(), z.string());

const container = z.looseObject({
  name: nameSchema('label'),
  image: z.string().min(1, 'expected the image of the rollback tool (e.g. flyway/flyway:11 or liquibase/liquibase:4)'),
  command: z.array(z.string()).optional(),
  args: z.array(z.string()).optional(),
  env: z.array(z.looseObject({ name: z.string().min(1, 'expected an environment variable name') })).optional(),
});

const podSpec = z.looseObject({
  containers: z.array(container).min(1, 'expected at least one container (the rollback tool)'),
  initContainers: z.array(container).optional(),
  restartPolicy: z.enum(['Never', 'OnFailure'], { message: 'a Job\'s pods restart "Never" or "OnFailure"' }).default('Never'),
});

const setByRollguard = (what: string) => z.undefined({ message: `set by rollguard (${what}); remove it from the template` }).optional();

const podTemplate = z.looseObject({
  metadata: z
    .strictObject({
      labels: stringMap.optional(),
      annotations: stringMap.optional(),
    })
    .optional(),
  spec: podSpec,
});

const jobSpec = z.looseObject({
  template: podTemplate,
  /** retries of a failed rollback: 0 unless the template says (re-running a half-applied undo is the team's call) */
  backoffLimit: z.number().int().min(0).max(10, 'expected at most 10 retries').default(0),
  activeDeadlineSeconds: z.number().int().positive().optional(),
  ttlSecondsAfterFinished: z.number().int().min(0).optional(),
  parallelism: z.literal(1, { message: 'a migration rollback runs once: parallelism must be 1 (or unset)' }).optional(),
  completions: z.literal(1, { message: 'a migration rollback runs once: completions must be 1 (or unset)' }).optional(),
  suspend: z.literal(false, { message: 'a suspended Job would never run: remove suspend' }).optional(),
  selector: setByRollguard('Kubernetes selects the Job\'s pods'),
  manualSelector: setByRollguard('Kubernetes selects the Job\'s pods'),
});

const manifest = z.strictObject({
  apiVersion: z.literal('batch/v1', { message: 'expected batch/v1' }),
  kind: z.literal('Job', { message: 'expected Job' }),
  metadata: z
    .strictObject({
      name: setByRollguard('the name is tied to the rollback record'),
      generateName: setByRollguard('the name is tied to the rollback record'),
      namespace: setByRollguard("the Job runs in the target's namespace"),
      labels: stringMap.optional(),
      annotations: stringMap.optional(),
    })
    .optional(),
  spec: jobSpec,
});

export type JobSpecTemplate = z.infer<typeof jobSpec>;

export interface JobTemplate {
  metadata: { labels?: Record<string, string>; annotations?: Record<string, string> };
  spec: JobSpecTemplate;
}

/** What is wrong with a template, with the field it is about (`spec.template.spec.containers[0].image`). */
export class TemplateError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(field ? `${field}: ${message}` : message);
    this.name = 'TemplateError';
  }
}

function fieldPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : `${out ? '.' : ''}${String(p)}`;
  return out;
}

/**
 * The template as YAML text, checked. Throws a TemplateError naming the field (in manifest terms:
 * `spec.template.spec.restartPolicy`, also for a bare JobSpec) and what was expected.
 */
export function parseTemplate(text: string): JobTemplate {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    const where = err instanceof YAMLParseError && err.linePos ? ` (line ${err.linePos[0].line})` : '';
    throw new TemplateError('', `not valid YAML${where}: ${(err as Error).message.split('\n')[0]}`);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    throw new TemplateError('', 'expected a Job (apiVersion: batch/v1, kind: Job, spec: ...) or a Job spec (a map with template:)');
  }
  const bare = 'template' in doc && !('spec' in doc) && !('kind' in doc);
  const r = bare ? jobSpec.safeParse(doc) : manifest.safeParse(doc);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    const path = bare ? ['spec', ...issue.path] : issue.path;
    throw new TemplateError(fieldPath(path), issue.message);
  }
  if (bare) return { metadata: {}, spec: r.data as JobSpecTemplate };
  const m = r.data as z.infer<typeof manifest>;
  return { metadata: { ...(m.metadata?.labels ? { labels: m.metadata.labels } : {}), ...(m.metadata?.annotations ? { annotations: m.metadata.annotations } : {}) }, spec: m.spec };
}

export interface JobContext {
  /** the rollback record's id: the Job's name and the label that finds it */
  recordId: string;
  /** Kind/namespace/name of the rollback's target */
  target: string;
  namespace: string;
  fromRevision?: number;
  toRevision?: number;
  deadlineMs: number;
  ttlAfterFinishedMs: number;
  /** ConfigMap/key the template came from */
  source: string;
}

/** The Job's name: tied to the record, so one record never has two Jobs (a second create is a 409). */
export function jobName(recordId: string): string {
  const name = `rollguard-migration-${recordId.toLowerCase()}`;
  if (invalidName('label', name)) throw new Error(`record id ${recordId} gives no valid Job name`);
  return name;
}

/** The env every container of the Job gets (unless the template sets the same name). */
export function jobEnv(c: JobContext): { name: string; value: string }[] {
  return [
    { name: 'ROLLGUARD_RECORD', value: c.recordId },
    { name: 'ROLLGUARD_TARGET', value: c.target },
    ...(c.fromRevision !== undefined ? [{ name: 'ROLLGUARD_FROM_REVISION', value: String(c.fromRevision) }] : []),
    ...(c.toRevision !== undefined ? [{ name: 'ROLLGUARD_TO_REVISION', value: String(c.toRevision) }] : []),
  ];
}

/**
 * The Job rollguard creates from a checked template: its name and labels tied to the record, no
 * owner (it outlives nothing it belongs to) and a TTL after it finishes; activeDeadlineSeconds is
 * the rule's deadline or the template's, whichever is shorter, so Kubernetes stops a Job that
 * rollguard stopped waiting for.
 */
export function buildJob(t: JobTemplate, c: JobContext): KubeObject {
  const ours = { [MANAGED_BY]: 'rollguard', [RECORD_LABEL]: c.recordId, [PURPOSE_LABEL]: PURPOSE };
  const deadlineS = Math.max(1, Math.ceil(c.deadlineMs / 1000));
  const env = jobEnv(c);
  const withEnv = (ct: Record<string, unknown> & { env?: { name: string }[] }) => {
    const own = ct.env ?? [];
    return { ...ct, env: [...own, ...env.filter((e) => !own.some((o) => o.name === e.name))] };
  };
  const pod = t.spec.template;
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: {
      name: jobName(c.recordId),
      namespace: c.namespace,
      labels: { ...(t.metadata.labels ?? {}), ...ours },
      annotations: { ...(t.metadata.annotations ?? {}), [TARGET_ANNOTATION]: c.target, [TEMPLATE_ANNOTATION]: c.source },
    },
    spec: {
      ...t.spec,
      activeDeadlineSeconds: Math.min(t.spec.activeDeadlineSeconds ?? deadlineS, deadlineS),
      ttlSecondsAfterFinished: t.spec.ttlSecondsAfterFinished ?? Math.round(c.ttlAfterFinishedMs / 1000),
      template: {
        ...pod,
        metadata: { ...(pod.metadata ?? {}), labels: { ...(pod.metadata?.labels ?? {}), ...ours } },
        spec: {
          ...pod.spec,
          containers: pod.spec.containers.map(withEnv),
          ...(pod.spec.initContainers ? { initContainers: pod.spec.initContainers.map(withEnv) } : {}),
        },
      },
    },
  };
}
