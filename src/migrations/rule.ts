// A rule's `migration:` setting: the rollback Job template to run before rolling back a revision
// annotated rollguard.io/schema-migration: "true" (the runbooks' "migration rollback, 10-30
// minutes"). The template itself lives in a ConfigMap in the target's namespace (the team's
// `flyway undo` or `liquibase rollback` container), read and checked at plan time (template.ts).
import { z } from 'zod';
import { nameSchema } from '../kube/names.js';
import { durationSchema, formatDuration } from '../rules/duration.js';

const MINUTE = 60_000;
/** the longest a rollback waits for its migration Job: the runbooks' 10-30 minutes, with room */
export const MAX_DEADLINE = 60 * MINUTE;

/** A ConfigMap data key: letters, digits, "-", "_" and ".", at most 253 (k8s IsConfigMapKey). */
const CONFIGMAP_KEY = /^[-._a-zA-Z0-9]+$/;

export const migrationRuleSchema = z.strictObject({
  /** where the Job template is: a ConfigMap in the target's namespace, and its key */
  job: z.strictObject({
    configMap: nameSchema('subdomain'),
    key: z
      .string()
      .max(253, 'expected a ConfigMap key of at most 253 characters')
      .regex(CONFIGMAP_KEY, 'expected a ConfigMap key (letters, digits, "-", "_" and ".")')
      .refine((k) => k !== '.' && k !== '..', 'expected a ConfigMap key other than "." or ".."'),
  }),
  /** how long the Job may take before the rollback stops and escalates (also its activeDeadlineSeconds) */
  deadline: durationSchema
    .default(10 * MINUTE)
    .refine((ms) => ms >= 1000 && ms <= MAX_DEADLINE, `expected a deadline from 1s to ${formatDuration(MAX_DEADLINE)}`),
  /** how many of the failed container's last log lines (or termination message lines) the record and the escalation carry */
  logLines: z.number().int().min(1).max(200).default(20),
  /** the finished Job is deleted by Kubernetes' TTL-after-finished controller this long after it ends (0 = at once) */
  ttlAfterFinished: durationSchema
    .default(24 * 60 * MINUTE)
    .refine((ms) => ms % 1000 === 0 && ms <= 30 * 24 * 60 * MINUTE, 'expected whole seconds, at most 30d'),
});

export type MigrationRule = z.infer<typeof migrationRuleSchema>;
