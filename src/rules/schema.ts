import { z } from 'zod';
import { CONFIG_DRIFT_POLICIES } from '../config-deps/policy.js';
import { triggerKinds, triggerKindNames } from '../triggers/index.js';
import { commonTriggerFields, defaultStep, TriggerFieldError, type TriggerSpec } from '../triggers/types.js';
import { GITOPS_POLICIES, type GitOpsPolicy } from '../gitops/types.js';
import { migrationRuleSchema, type MigrationRule } from '../migrations/rule.js';
import { durationSchema } from './duration.js';
import { parseMaintenanceWindow, type MaintenanceWindow } from './maintenance.js';
import { compileMatcher, MatcherError, parseMatcher, type Matcher } from './matchers.js';
import { targetSchema, type TargetSpec } from './targets.js';

/**
 * The rule file format, one zod schema. A file is `{ rules: [ RULE, ... ] }`; unknown fields are
 * errors (a typo like `treshold` must not silently fall back to a default). See docs/rules.md.
 */

export const priorities = ['P0', 'P1', 'P2'] as const;
export type Priority = (typeof priorities)[number];
export type RuleAction = 'rollback' | 'notify';
export type OnPrometheusDown = 'act' | 'hold' | 'notify';

const HOUR = 3600_000;
const MINUTE = 60_000;

/** Settings read by the guards (src/guards/), per rule. Fleet-wide settings (scope, global budget) live in the config. */
export const guardsSchema = z.strictObject({
  /** plan and record the rollback, change nothing */
  dryRun: z.boolean().default(false),
  /** act only if the target's current revision was deployed within this long (a rollback undoes a recent deploy) */
  onlyIfDeployedWithin: durationSchema.default(24 * HOUR),
  /** after a rollback of a target, no other rollback of it for this long */
  cooldown: durationSchema.default(30 * MINUTE),
  budget: z
    .strictObject({
      /** rollbacks of one target per rolling hour */
      perTargetPerHour: z.number().int().min(0).default(1),
      /** rollbacks by this rule per rolling hour, over all its targets (unset: no limit) */
      perRulePerHour: z.number().int().min(0).optional(),
    })
    .prefault({}),
  approval: z
    .strictObject({
      /** a human must approve before the rollback runs (not allowed on P0) */
      required: z.boolean().default(false),
      /** an approval request not answered within this long expires, and nothing is done */
      expiresAfter: durationSchema.default(30 * MINUTE),
    })
    .prefault({}),
  /** allow rolling back again a target that rollguard already rolled back (step back one more revision) */
  allowStepBack: z.boolean().default(false),
  /** with allowStepBack: how many consecutive rollbacks of one target at most */
  maxStepBack: z.number().int().min(1).default(1),
  /**
   * the target revision's ConfigMaps or Secrets changed after it was created: warn (roll back and
   * say so), approve (wait for a human), restore (no snapshots yet: waits for a human too, saying so)
   */
  configDrift: z.enum(CONFIG_DRIFT_POLICIES).default('warn'),
});
export type Guards = z.infer<typeof guardsSchema>;

const matcherString = z.string().transform((s, ctx): Matcher => {
  try {
    return parseMatcher(s);
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
    return z.NEVER;
  }
});

/** Label values no rule is written for: a matcher matching each of them, and a missing label, pins nothing. */
const ANY_VALUES = ['0', 'HighErrorRate', 'zz rollguard: any value/9'];

/**
 * Whether the matchers match every alert: each matches any value of its label and (alertname
 * aside, which every alert has) its absence, such as `alertname=~".*"`, `alertname=~".+"`,
 * `team!="x"` or `severity!~"none"`. Such a rule would confirm its trigger, and under
 * `onPrometheusDown: act` roll back, for whatever alert Alertmanager sends.
 */
function matchesEveryAlert(matchers: readonly Matcher[]): boolean {
  return matchers.every((m) => ANY_VALUES.every((v) => m.matches({ [m.name]: v })) && (m.name === 'alertname' || m.matches({})));
}

const EVERY_ALERT = 'these matchers match any alert (no matcher pins a label to the alerts the rule is for, as alertname="HighErrorRate" does); a rule must not match every alert';

/** `match`: a list of Alertmanager matchers (`alertname="X"`, `severity=~"crit.*"`), or a map label: value (equality). */
const matchSchema = z
  .union([
    z
      .array(matcherString)
      .min(1, 'expected at least one matcher (a rule must not match every alert)')
      .superRefine((ms, ctx) => {
        if (matchesEveryAlert(ms)) ctx.addIssue({ code: 'custom', message: EVERY_ALERT });
      }),
    z.record(z.string(), z.string()).transform((m, ctx): Matcher[] => {
      const out: Matcher[] = [];
      for (const [k, v] of Object.entries(m)) {
        try {
          out.push(compileMatcher(k, '=', v));
        } catch (e) {
          if (e instanceof MatcherError) ctx.addIssue({ code: 'custom', path: [k], message: e.message });
          else throw e;
        }
      }
      if (out.length === 0) ctx.addIssue({ code: 'custom', message: 'expected at least one matcher (a rule must not match every alert)' });
      return out;
    }),
  ]);

type AnyTriggerSchema = z.ZodType<Record<string, unknown> & { kind: string }>;

const triggerVariants = triggerKindNames.map((k) => {
  const kind = triggerKinds[k];
  const threshold = kind.defaultThreshold === undefined ? commonTriggerFields.threshold : z.number().default(kind.defaultThreshold);
  return z.strictObject({ kind: z.literal(k), ...commonTriggerFields, threshold, ...kind.fields });
}) as unknown as [AnyTriggerSchema, AnyTriggerSchema, ...AnyTriggerSchema[]];

const triggerSchema = z.discriminatedUnion('kind', triggerVariants as never).transform((raw, ctx): TriggerSpec => {
  const t = raw as Record<string, unknown> & {
    kind: TriggerSpec['kind'];
    threshold: number;
    op: TriggerSpec['op'];
    for: number;
    step?: number;
    minCoverage: number;
    baseline?: { relativeTo: 'rollout_start' | 'offset'; offset?: number; window?: number; minValue?: number };
  };
  const { kind, threshold, op, for: forMs, step, minCoverage, baseline, ...fields } = t;
  let query: TriggerSpec['query'];
  try {
    query = triggerKinds[kind].compile(fields);
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message, ...(e instanceof TriggerFieldError ? { path: [e.field] } : {}) });
    return z.NEVER;
  }
  if (forMs <= 0) {
    ctx.addIssue({ code: 'custom', path: ['for'], message: 'expected a window longer than 0 (e.g. 2m)' });
    return z.NEVER;
  }
  const stepMs = step ?? defaultStep(forMs);
  if (stepMs <= 0 || stepMs > forMs) {
    ctx.addIssue({ code: 'custom', path: ['step'], message: `expected a step between 1s and the window (${forMs / 1000}s)` });
    return z.NEVER;
  }
  if (forMs / stepMs > 11_000) {
    ctx.addIssue({ code: 'custom', path: ['step'], message: 'too many steps in the window (Prometheus allows 11,000 points); use a larger step' });
    return z.NEVER;
  }
  const spec: TriggerSpec = { kind, threshold, op, forMs, stepMs, minCoverage, params: fields, query };
  if (baseline) {
    spec.baseline = {
      relativeTo: baseline.relativeTo,
      windowMs: baseline.window ?? forMs,
      ...(baseline.offset !== undefined ? { offsetMs: baseline.offset } : {}),
      ...(baseline.minValue !== undefined ? { minValue: baseline.minValue } : {}),
    };
  }
  return spec;
});

const maintenanceWindowSchema = z.string().transform((s, ctx): MaintenanceWindow => {
  try {
    return parseMaintenanceWindow(s);
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
    return z.NEVER;
  }
});

export const ruleSchema = z
  .strictObject({
    name: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/, 'expected a name of letters, digits, "_", ".", ":" and "-" (at most 128)'),
    description: z.string().optional(),
    match: matchSchema,
    target: z.union([targetSchema, z.array(targetSchema).min(1, 'expected at least one target')]),
    trigger: triggerSchema,
    priority: z.enum(priorities),
    action: z.enum(['rollback', 'notify']).default('rollback'),
    /** when Prometheus cannot be reached to confirm: act on the alert alone, hold, or notify only */
    onPrometheusDown: z.enum(['act', 'hold', 'notify']).optional(),
    /** the runbook decision tree's "SLO at risk": re-check after recheckAfter and roll back if still true (P1 only) */
    sloAtRisk: z.boolean().default(false),
    recheckAfter: durationSchema.default(10 * MINUTE),
    /** non-critical rules (P1, P2): schedule the rollback into this window */
    maintenanceWindow: maintenanceWindowSchema.optional(),
    guards: guardsSchema.prefault({}),
    /** a target reconciled by Argo CD or Flux: suspend its owner first (default), refuse, or ignore (src/gitops/) */
    gitops: z.enum(GITOPS_POLICIES).default('suspend'),
    /** a revision annotated rollguard.io/schema-migration: run this rollback Job first, after approval (src/migrations/) */
    migration: migrationRuleSchema.optional(),
  })
  .superRefine((r, ctx) => {
    const bad = (path: (string | number)[], message: string) => ctx.addIssue({ code: 'custom', path, message });
    if (r.priority === 'P0' && r.guards.approval.required) {
      bad(['guards', 'approval', 'required'], 'P0 rules roll back without waiting for approval; use priority P1 to require approval');
    }
    if (r.priority === 'P0' && r.maintenanceWindow) {
      bad(['maintenanceWindow'], 'P0 rules roll back now; a maintenance window applies to P1 and P2 rules only');
    }
    if (r.sloAtRisk && r.priority !== 'P1') bad(['sloAtRisk'], `sloAtRisk applies to P1 rules only (this rule is ${r.priority})`);
    if (r.action === 'notify' && r.sloAtRisk) bad(['sloAtRisk'], 'sloAtRisk applies to action: rollback only');
    if (r.action === 'notify' && r.maintenanceWindow) bad(['maintenanceWindow'], 'maintenanceWindow applies to action: rollback only');
    if (r.recheckAfter <= 0) bad(['recheckAfter'], 'expected a duration longer than 0');
    if (r.guards.maxStepBack > 1 && !r.guards.allowStepBack) bad(['guards', 'maxStepBack'], 'maxStepBack > 1 needs allowStepBack: true');
  });

export const ruleFileSchema = z.strictObject({
  rules: z.array(ruleSchema),
});

/** A rule as loaded and compiled: what the engine reads. */
export interface Rule {
  name: string;
  description?: string;
  /** where it was defined: file, line, and position in the file's rules list */
  file: string;
  line: number;
  index: number;
  matchers: Matcher[];
  /** rolled back in this order */
  targets: TargetSpec[];
  trigger: TriggerSpec;
  priority: Priority;
  action: RuleAction;
  onPrometheusDown: OnPrometheusDown;
  sloAtRisk: boolean;
  recheckAfterMs: number;
  maintenanceWindow?: MaintenanceWindow;
  guards: Guards;
  gitops: GitOpsPolicy;
  migration?: MigrationRule;
}

export type ParsedRule = z.infer<typeof ruleSchema>;

export function toRule(p: ParsedRule, file: string, line: number, index = 0): Rule {
  const rule: Rule = {
    name: p.name,
    file,
    line,
    index,
    matchers: p.match,
    targets: Array.isArray(p.target) ? p.target : [p.target],
    trigger: p.trigger,
    priority: p.priority,
    action: p.action,
    // the runbook's P0 is "automatic rollback": trust the alert when Prometheus is down; others hold
    onPrometheusDown: p.onPrometheusDown ?? (p.priority === 'P0' ? 'act' : 'hold'),
    sloAtRisk: p.sloAtRisk,
    recheckAfterMs: p.recheckAfter,
    guards: p.guards,
    gitops: p.gitops,
  };
  if (p.description !== undefined) rule.description = p.description;
  if (p.maintenanceWindow) rule.maintenanceWindow = p.maintenanceWindow;
  if (p.migration) rule.migration = p.migration;
  return rule;
}
