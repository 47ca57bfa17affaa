import type { Alert } from '../alertmanager/alert.js';
import { forLog } from '../alertmanager/limits.js';
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
 * "The same evaluation" is what the evaluation reads from the alert (coalesceKey): the rules it
 * matches; per rule, the trigger's query built from its labels (confirmation and verification
 * both run it) and its targets with their params (a chain's order included). Alerts of one rule
 * and target whose queries differ (a `route` label in the trigger's selector) are each confirmed
 * on their own: merged, only the first one's query was sent.
 *
 * startsAt is not in the key, though the recent-deploy guard reads it: a burst's alerts often
 * start seconds apart (pods crossing the threshold at different rule evaluations), and keyed on
 * it every one of them was an evaluation of its own (a storm of "blocked by the lock guard").
 * Instead, once the first alert's evaluation is done, an alert with another start joins it only
 * when its start could not change that outcome (startDecided). It could only when the
 * recent-deploy guard blocked it, and then only one way: blocked as deployed after the first
 * start, a revision may be before a later start (its possible cause), so a later alert is
 * evaluated on its own, against its own start (linkCoalesced resolves false), and an earlier one
 * joins (deployed after its start too); blocked as too old (more than onlyIfDeployedWithin before
 * the first start), it may be within the window of an earlier start, so an earlier alert is
 * evaluated on its own, and a later one joins (the usual incident not caused by a deploy: a
 * storm over a days-old revision is one evaluation).
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
 * What a firing alert's evaluation reads from it, as one key (see above; its startsAt is judged
 * after the first alert's evaluation, linkCoalesced): per rule it matches, the rule's name, the trigger's query for its labels and its targets with their params.
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
    return JSON.stringify(each);
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

/**
 * Links `ev` to every record the evaluation of `into` (same key) made or found, and resolves true;
 * false, linking nothing, when `ev` started at another time that could change that evaluation's
 * outcome (startDecided): the queue worker then evaluates `ev` on its own, against its start.
 */
export async function linkCoalesced(ctx: EngineContext, ev: QueuedEvent, into: QueuedEvent): Promise<boolean> {
  const ids: string[] = [];
  for (const rule of ctx.rules.match(ev.alert)) {
    for (const target of targets(rule, ev.alert)) ids.push(alertRecordId(rule.name, target, into.alert.fingerprint, into.alert.startsAt));
  }
  if (ev.alert.startsAt !== into.alert.startsAt) {
    const decided = await startDecided(ctx, into, ids);
    const earlier = ev.alert.startsAt < into.alert.startsAt;
    if (earlier ? decided.earlier : decided.later) {
      ctx.log.info(
        { fingerprint: forLog(ev.alert.fingerprint), alertname: forLog(ev.alert.labels.alertname ?? ''), startsAt: new Date(ev.alert.startsAt).toISOString(), into: forLog(into.alert.fingerprint), intoStartsAt: new Date(into.alert.startsAt).toISOString() },
        `not coalesced: the recent-deploy guard blocked the evaluation of the first alert for the same rule and target, judged against that alert's start; this alert started ${earlier ? 'before' : 'after'} it, which may change that verdict, and is evaluated against its own start`,
      );
      return false;
    }
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
    { fingerprint: forLog(ev.alert.fingerprint), alertname: forLog(ev.alert.labels.alertname ?? ''), into: forLog(into.alert.fingerprint), records: ids },
    'alert coalesced into the evaluation of an earlier alert whose evaluation is the same (rules, trigger query, targets)',
  );
  return true;
}

/** Which starts could change a joined evaluation's outcome (startDecided). */
interface StartDecided {
  /** an alert that started before the evaluated one's */
  earlier: boolean;
  /** one that started after it */
  later: boolean;
}

/** startDecided's answer per evaluation joined: read once, not once per alert of a burst. */
const decidedByStart = new WeakMap<QueuedEvent, Promise<StartDecided>>();

/**
 * Whether the outcome of `into`'s evaluation (its records `ids`) could be another for an alert that
 * started earlier or later: only when the recent-deploy guard, the one guard that reads the start,
 * blocked one of them, and then only one way. Blocked as too old (the revision created more than
 * onlyIfDeployedWithin before the start), a later start finds it older still, blocked the same;
 * an earlier one may find it within. Blocked as deployed after the start, an earlier start finds
 * it after too; a later one may find it before. A verdict without its cause (a record written
 * before it was kept) is taken as either way. Read once the evaluation was handled (the worker
 * links after it), when that verdict is final.
 */
function startDecided(ctx: EngineContext, into: QueuedEvent, ids: string[]): Promise<StartDecided> {
  let known = decidedByStart.get(into);
  if (!known) {
    known = Promise.all(ids.map((id) => ctx.records.get(id))).then((recs) => {
      const out: StartDecided = { earlier: false, later: false };
      for (const g of recs.flatMap((r) => r?.guards ?? [])) {
        if (g.guard !== 'recent-deploy' || g.result !== 'block') continue;
        if (g.because !== 'after_start') out.earlier = true;
        if (g.because !== 'too_old') out.later = true;
      }
      return out;
    });
    // a failed read is not remembered: the alert stays queued and is tried again
    known.catch(() => decidedByStart.delete(into));
    decidedByStart.set(into, known);
  }
  return known;
}
