import { z } from 'zod';
import { durationSchema } from '../rules/duration.js';
import type { SelectorValue } from './promql.js';

/**
 * The Trigger seam: one file per kind under src/triggers/, each turning a few parameters (and the
 * alert's labels) into one PromQL expression whose value is compared with `threshold`. Judging the
 * range-query result over the window is common to all kinds (judge.ts).
 */

export type CompareOp = '>' | '>=' | '<' | '<=';

export interface BaselineSpec {
  /** rollout_start: the same query averaged over `windowMs` just before the current rollout began;
   *  offset: averaged over the window ending `offsetMs` before the evaluation time */
  relativeTo: 'rollout_start' | 'offset';
  offsetMs?: number;
  windowMs: number;
  /** with a baseline the value must also be above this absolute floor (for > and >=) */
  minValue?: number;
}

export interface TriggerSpec {
  kind: TriggerKindName;
  /** absolute threshold, or with a baseline the factor (2 = "twice the baseline") */
  threshold: number;
  op: CompareOp;
  forMs: number;
  stepMs: number;
  /** fraction of the expected samples in the window that must be present (0..1) */
  minCoverage: number;
  baseline?: BaselineSpec;
  /** the parsed parameters as written (for display) */
  params: Record<string, unknown>;
  /** builds the PromQL for an alert's labels; throws MissingLabelError when a label is missing */
  query(labels: Record<string, string>): string;
}

/** A problem with one field of a trigger, found when compiling it (reported at that field). */
export class TriggerFieldError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
    this.name = 'TriggerFieldError';
  }
}

export type TriggerKindName =
  | 'error_rate'
  | 'latency'
  | 'health_check'
  | 'memory'
  | 'crash_loop'
  | 'deployment_failed'
  | 'custom';

export interface TriggerKind {
  kind: TriggerKindName;
  /** one line for docs and `simulate` */
  summary: string;
  /** the kind's own fields (the common ones are added by the rule schema) */
  fields: z.ZodRawShape;
  /** a default threshold when the kind has a natural one (deployment_failed: > 0) */
  defaultThreshold?: number;
  /** compiles the kind's parsed fields into a query builder; throws on invalid names (load error) */
  compile(fields: Record<string, unknown>): (labels: Record<string, string>) => string;
}

const selectorValue: z.ZodType<SelectorValue> = z.union([
  z.string(),
  z.strictObject({ regex: z.string() }),
  z.strictObject({ notEqual: z.string() }),
  z.strictObject({ notRegex: z.string() }),
]);

/** `selector`: label matchers added to every series selector of the query, templated from alert labels. */
export const selectorField = z.record(z.string(), selectorValue).default({});

export const metricName = z.string().regex(/^[a-zA-Z_:][a-zA-Z0-9_:]*$/, 'expected a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)');
export const labelName = z.string().regex(/^[a-zA-Z_][a-zA-Z0-9_]*$/, 'expected a label name ([a-zA-Z_][a-zA-Z0-9_]*)');

export const baselineSchema = z
  .strictObject({
    relativeTo: z.enum(['rollout_start', 'offset']),
    offset: durationSchema.optional(),
    window: durationSchema.optional(),
    minValue: z.number().optional(),
  })
  .superRefine((b, ctx) => {
    if (b.relativeTo === 'offset' && (b.offset === undefined || b.offset <= 0)) {
      ctx.addIssue({ code: 'custom', path: ['offset'], message: 'expected a duration (e.g. 1d) with relativeTo: offset' });
    }
    if (b.relativeTo === 'rollout_start' && b.offset !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['offset'], message: 'offset only applies with relativeTo: offset' });
    }
  });

/** The fields every trigger kind has. */
export const commonTriggerFields = {
  threshold: z.number(),
  op: z.enum(['>', '>=', '<', '<=']).default('>'),
  for: durationSchema,
  step: durationSchema.optional(),
  minCoverage: z.number().min(0).max(1).default(0.8),
  baseline: baselineSchema.optional(),
};

/** Default step: a tenth of the window, at least 10s and at most 1m. */
export function defaultStep(forMs: number): number {
  return Math.min(60_000, Math.max(10_000, Math.round(forMs / 10 / 1000) * 1000));
}
