import type { Alert } from '../alertmanager/alert.js';
import { resolveTargets, TargetResolutionError } from '../rules/targets.js';
import { MissingLabelError } from '../rules/template.js';
import type { RuleSet } from '../rules/ruleset.js';
import type { Rule } from '../rules/schema.js';
import type { QueuedEvent } from '../store/store.js';
import type { EngineContext } from './context.js';
import { alertRecordId, targetKey } from './record.js';
import { joinBurst } from './burst.js';

/**
 * Per-target coalescing (the queue worker applies it within a batch): firing alerts whose
 * evaluation would be the same, while one of them is being evaluated, are one evaluation. The
 * others are linked to the records of that evaluation, so a resolved notification of any of them
 * still finds its records, and counted (rollguard_alerts_coalesced_total); none is dropped unseen.
 *
 * "The same evaluation" is everything the evaluation reads from the alert (coalesceKey): the rules
 * it matches; per rule, the trigger's query built from its labels (confirmation and verification
 * both run it) and its targets with their params (a chain's order included); and its startsAt,
 * which the recent-deploy guard compares with the revision's creation time. Alerts of one rule and
 * target whose queries differ (a `route` label in the trigger's selector) are each confirmed on
 * their own: merged, only the first one's query was sent. Alerts that started at different times
 * are not merged either: a revision deployed between the two starts is after the first (blocked as
 * what was done about it) and before the second (its possible cause), and one deployed more than
 * onlyIfDeployedWithin before the second may be within it before the first, so neither start
 * stands for the other. A burst from one Prometheus rule evaluation shares its startsAt and is
 * still one evaluation.
 */

const matches = new WeakMap<Alert, { set: RuleSet; rules: Rule[] }>();

/**
 * The rules an alert matches in the rule set in force: matched once per queued alert (the worker
 * asks for its coalescing key and its targets, then the handler for its rules); a reload, which
 * swaps the rule set, matches it again.
 */
export function matchedRules(ctx: EngineContext, alert: Alert): Rule[] {
  const set = ctx.rules;
  const known = matches.get(alert);
  if (known?.set === set) return known.rules;
  const rules = set.match(alert);
  matches.set(alert, { set, rules });
  return rules;
}

/**
 * What a firing alert's evaluation reads from it, as one key (see above): its startsAt and, per rule
 * it matches, the rule's name, the trigger's query for its labels and its targets with their params.
 * Built from the rules in memory, no Prometheus or cluster read. undefined when it is not coalesced:
 * not firing, no rule, or a label the query or a target needs is missing or names no target safely
 * (handled alone, and recorded as such by its own evaluation).
 */
export function coalesceKey(ctx: EngineContext, alert: Alert): string | undefined {
  if (alert.status !== 'firing') return undefined;
  const rules = matchedRules(ctx, alert);
  if (rules.length === 0) return undefined;
  try {
    const each = rules.map((r) => [r.name, r.trigger.query(alert.labels), resolveTargets(r.targets, alert.labels)]);
    // the targets as resolved (kind, namespace, name, toRevision, the kind's options from its params);
    // JSON, as label values may hold any character and no separator could be trusted
    return JSON.stringify([alert.startsAt, each]);
  } catch (e) {
    if (e instanceof MissingLabelError || e instanceof TargetResolutionError) return undefined;
    throw e;
  }
}

/**
 * Every target an alert may act on (each target of each rule its labels match; a resolved alert's
 * records are of those targets too), for the queue worker: events sharing a target are never
 * handled at once. [] for a firing alert no rule matches (nothing is done with it); undefined when
 * they cannot be known (a resolved alert no rule matches now, labels that name no target safely).
 */
export function targetsOf(ctx: EngineContext, alert: Alert): string[] | undefined {
  const rules = matchedRules(ctx, alert);
  if (rules.length === 0) return alert.status === 'firing' ? [] : undefined;
  try {
    return [...new Set(rules.flatMap((r) => targets(r, alert)))];
  } catch {
    return undefined;
  }
}

function targets(rule: Rule, alert: Alert): string[] {
  return resolveTargets(rule.targets, alert.labels).map(targetKey);
}

/** Links `alert` to every record the evaluation of `into` (same key) made or found. */
export async function linkCoalesced(ctx: EngineContext, ev: QueuedEvent, into: QueuedEvent): Promise<void> {
  const ids: string[] = [];
  for (const rule of ctx.rules.match(ev.alert)) {
    for (const target of targets(rule, ev.alert)) ids.push(alertRecordId(rule.name, target, into.alert.fingerprint, into.alert.startsAt));
  }
  // the same alert as the one it joins (a resend within one batch): nothing to track
  const same = ev.alert.fingerprint === into.alert.fingerprint && ev.alert.startsAt === into.alert.startsAt;
  for (const id of ids) {
    // the link first: a crash between the two leaves the alert linked and not counted as firing
    // (its resolution then finds the record, and takes nothing out of the burst), never counted
    // as firing with no link its resolution could find
    await ctx.records.linkAlert(ev.alert.fingerprint, ev.alert.startsAt, id);
    if (!same) await joinBurst(ctx, id, ev.alert);
  }
  ctx.log.info(
    { fingerprint: ev.alert.fingerprint, alertname: ev.alert.labels.alertname, into: into.alert.fingerprint, records: ids },
    'alert coalesced into the evaluation of an earlier alert whose evaluation is the same (rules, trigger query, targets, startsAt)',
  );
}
