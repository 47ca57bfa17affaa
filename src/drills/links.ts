// The chain a drill proves, link by link, and how each link is seen and timestamped:
//   alert firing      Prometheus' ALERTS series (an instant query each poll; once firing, a
//                     query_range over ALERTS{alertstate="firing"} since the fault dates it)
//   in Alertmanager   its API v2 (ALERTMANAGER_URL): the alert, its state and the receivers its
//                     route sent it to
//   the rest          rollguard's own rollback record of the alert (its times, decision, guard
//                     verdicts, outcome) and the workload itself (back on the pre-drill template,
//                     rollout complete)
// An alert is the drill's when it names the target's namespace and the target by a workload label
// (deployment, statefulset, daemonset, workload, app), or when a rule in force resolves it to the
// target. diagnose() names the first link that broke and what was seen of it.
import type { AlertmanagerApi } from '../alertmanager/api.js';
import { OPEN_STATES, targetKey, type RecordBook, type RollbackRecord } from '../engine/record.js';
import type { Kube } from '../kube/kube.js';
import { PrometheusBusyError, type PrometheusApi } from '../prometheus/client.js';
import type { RuleSet } from '../rules/ruleset.js';
import { resolveTargets } from '../rules/targets.js';
import { escapePromqlString } from '../triggers/promql.js';
import type { DrillRecord } from './store.js';
import { readWorkload, type WorkloadRef } from './workload.js';

export const LINKS = [
  'fault_applied',
  'alert_firing',
  'alert_in_alertmanager',
  'webhook_received',
  'rule_matched',
  'decision',
  'guards',
  'rollback_written',
  'rollout_complete',
  'trigger_cleared',
] as const;
export type LinkName = (typeof LINKS)[number];

export const LINK_TITLES: Record<LinkName, string> = {
  fault_applied: 'fault applied (a new revision)',
  alert_firing: 'alert firing in Prometheus',
  alert_in_alertmanager: 'alert in Alertmanager',
  webhook_received: 'webhook received by rollguard',
  rule_matched: 'rule matched',
  decision: 'decision: roll back',
  guards: 'guards allowed it',
  rollback_written: 'rollback written',
  rollout_complete: 'rollout complete, back on the pre-drill template',
  trigger_cleared: 'trigger cleared',
};

/** Closed states of a record whose rollback was written (its target's lock held it alone). */
const WRITTEN_STATES = ['succeeded', 'failed', 'unverified', 'interrupted'] as const;

/** Labels naming a workload in alerts (the shipped alert rules use `deployment`). */
const WORKLOAD_LABELS = ['deployment', 'statefulset', 'daemonset', 'workload', 'app'];

export interface WatchDeps {
  prometheus: PrometheusApi;
  /** null: ALERTMANAGER_URL is not set and that link is not watched */
  alertmanager: AlertmanagerApi | null;
  records: RecordBook;
  rules: { readonly rules: RuleSet };
  kube: Kube;
  signal?: AbortSignal;
}

/** HH:MM:SS (UTC), as the report's times read. */
export const clock = (ms: number) => new Date(ms).toISOString().slice(11, 19);
const errText = (err: unknown) => (err instanceof Error ? err.message : String(err));
/** An ALERTS series' labels as the alert's own: without the series name and alertstate. */
const withoutState = (l: Record<string, string>) => Object.fromEntries(Object.entries(l).filter(([k]) => k !== 'alertstate' && k !== '__name__'));

/** Whether a rule in force matches these alert labels and resolves them to the drill's target. */
function ruleFor(rules: RuleSet, labels: Record<string, string>, target: string): string | undefined {
  for (const rule of rules.match({ labels })) {
    try {
      if (resolveTargets(rule.targets, labels).some((r) => targetKey(r) === target)) return rule.name;
    } catch {
      // a target the labels cannot name: not this one
    }
  }
  return undefined;
}

/**
 * The labels (alertstate included) of the ALERTS series about a workload now, pending or firing:
 * those of its namespace naming it by a workload label, or resolved to it by a rule in force.
 */
export async function alertsAbout(prometheus: PrometheusApi, rules: RuleSet, ref: WorkloadRef, now: number): Promise<Array<Record<string, string>>> {
  const target = targetKey(ref);
  const all = await prometheus.query(`ALERTS{namespace="${escapePromqlString(ref.namespace)}"}`, now);
  return all.map((s) => s.labels).filter((l) => WORKLOAD_LABELS.some((k) => l[k] === ref.name) || ruleFor(rules, withoutState(l), target) !== undefined);
}

/** The record that got furthest along the chain (the earliest of equals), of those made since the fault. */
function furthest(recs: RollbackRecord[]): RollbackRecord | undefined {
  const score = (r: RollbackRecord) => (r.state === 'succeeded' ? 5 : r.times.executedAt ? 4 : r.times.startedAt ? 3 : r.times.decidedAt ? 2 : 1);
  return [...recs].sort((a, b) => score(b) - score(a) || a.createdAt - b.createdAt)[0];
}

/** Notes link `link` as seen at `at` (the first time only), with what was seen, in the drill's timeline too. */
export function stamp(d: DrillRecord, link: LinkName, at: number, detail: string): void {
  if (d.links[link]) return;
  d.links[link] = { at, detail };
  delete d.seen[link];
  d.timeline.push({ at, step: link, message: `${LINK_TITLES[link]}: ${detail}` });
}

/**
 * One look at every link: stamps on `d` each link seen for the first time and notes what was seen
 * of those not reached. Returns rollguard's record of the drill's alert, if there is one.
 */
export async function observe(deps: WatchDeps, d: DrillRecord, now: number): Promise<RollbackRecord | undefined> {
  const since = d.faultAt ?? d.createdAt;
  const { namespace } = d.ref;
  const rules = deps.rules.rules;

  // 1. Prometheus: the ALERTS series about the target, pending or firing.
  let firing: Array<Record<string, string>> = [];
  try {
    const ours = await alertsAbout(deps.prometheus, rules, d.ref, now);
    firing = ours.filter((l) => l.alertstate === 'firing').map(withoutState);
    const pending = ours.filter((l) => l.alertstate === 'pending').map((l) => l.alertname ?? '?');
    if (firing.length > 0 && !d.links.alert_firing) {
      const at = await firedAt(deps.prometheus, firing[0]!, since, now).catch(() => undefined);
      stamp(d, 'alert_firing', at ?? now, `${firing.map((l) => l.alertname ?? '?').join(', ')} (${describeLabels(firing[0]!)})`);
    } else if (!d.links.alert_firing) {
      d.seen.alert_firing = pending.length ? `${pending.join(', ')} pending (its for: had not elapsed)` : `no alert about ${d.target} in Prometheus' ALERTS (namespace ${namespace})`;
    }
  } catch (err) {
    if (!d.links.alert_firing) d.seen.alert_firing = err instanceof PrometheusBusyError ? `rollguard got no turn to ask Prometheus (PROMETHEUS_MAX_CONCURRENT): ${errText(err)}` : `Prometheus did not answer: ${errText(err)}`;
  }

  // Does a rule in force take the firing alert to the target? (rollguard records nothing for an alert no rule matches.)
  if (firing.length > 0 && !d.links.rule_matched) {
    const matched = firing.map((l) => ruleFor(rules, l, d.target)).find((r) => r !== undefined);
    d.seen.rule_matched = matched ? `rule ${matched} matches ${firing[0]!.alertname ?? 'the alert'} and names ${d.target}` : `no rule in force matches ${firing.map((l) => l.alertname ?? '?').join(', ')} and names ${d.target}`;
  }

  // 2. Alertmanager, for the alerts firing in Prometheus.
  if (deps.alertmanager && firing.length > 0 && !d.links.alert_in_alertmanager) {
    try {
      for (const labels of firing) {
        const filter = { alertname: labels.alertname ?? '', namespace };
        const held = (await deps.alertmanager.alerts(filter, deps.signal)).filter((a) => Object.entries(labels).every(([k, v]) => a.labels[k] === v));
        if (held.length === 0) continue;
        const receivers = [...new Set(held.flatMap((a) => a.receivers.map((r) => r.name)))];
        stamp(d, 'alert_in_alertmanager', now, `${labels.alertname} ${held[0]!.status.state}, routed to receiver(s) ${receivers.join(', ') || '(none)'}`);
        d.seen.webhook_received = `Alertmanager routed ${labels.alertname} to receiver(s) ${receivers.join(', ') || '(none)'}`;
        break;
      }
      if (!d.links.alert_in_alertmanager) d.seen.alert_in_alertmanager = `Alertmanager holds no ${firing[0]!.alertname} alert for ${d.target}`;
    } catch (err) {
      d.seen.alert_in_alertmanager = `Alertmanager did not answer: ${errText(err)}`;
    }
  }

  // 3. rollguard's own record of the alert.
  // A flood of newer records of the target (alerts anyone who can post to Alertmanager can make
  // up, each closed blocked or not confirmed) pushes the drill's record out of the target's newest
  // 50: the record seen before is read by its id, and one not seen yet is looked for among the
  // target's open records and those whose rollback was written, each state's own index (a flood
  // does not crowd those: the target's lock lets one record at a time be in progress, and its
  // cooldown one rollback be written). Without them the drill, never seeing its rollback succeed,
  // failed at its deadline.
  const [recent, openOrWritten] = await Promise.all([
    deps.records.list({ target: d.target, limit: 50 }),
    deps.records.inStates(d.target, [...OPEN_STATES, ...WRITTEN_STATES], 5),
  ]);
  const byId = new Map([...recent, ...openOrWritten].map((r) => [r.id, r]));
  if (d.rollback !== undefined && !byId.has(d.rollback)) {
    const known = await deps.records.get(d.rollback);
    if (known?.target === d.target) byId.set(known.id, known);
  }
  const recs = [...byId.values()].filter((r) => r.target === d.target && r.createdAt >= since && r.source !== 'manual');
  const rec = furthest(recs);
  if (rec) fromRecord(d, rec);
  else if (!d.links.webhook_received) d.seen.webhook_received ??= `no rollback record of ${d.target} since the fault`;

  // 4. The workload itself: back on the pre-drill template, rollout complete.
  try {
    const w = await readWorkload(deps.kube, d.ref, deps.signal ? { signal: deps.signal } : {});
    if (!w) d.seen.rollout_complete = `${d.target} no longer exists`;
    else {
      // a restart (kubectl rollout restart: only the template's restartedAt changed) changes neither
      const onFault = d.fault.templateHash !== undefined ? w.isTemplate(d.fault.templateHash) : !w.isTemplate(d.before.templateHash);
      if (d.faultRevision === undefined && onFault) d.faultRevision = w.revision;
      const back = w.isTemplate(d.before.templateHash);
      if (back && w.rollout.done && d.links.rollback_written && !d.links.rollout_complete) {
        const at = rec?.times.completedAt !== undefined && rec.times.completedAt >= since ? Math.min(rec.times.completedAt, now) : now;
        stamp(d, 'rollout_complete', at, `revision ${w.revision} has the pre-drill template of revision ${d.before.revision}: ${w.rollout.message}`);
      } else if (!d.links.rollout_complete) {
        d.seen.rollout_complete = `revision ${w.revision}, ${back ? 'the pre-drill template' : 'not the pre-drill template'}: ${w.rollout.message}`;
      }
    }
  } catch (err) {
    d.seen.rollout_complete = `could not read ${d.target}: ${errText(err)}`;
  }
  if (rec?.state === 'succeeded' && rec.times.verifiedAt !== undefined && d.links.rollout_complete) {
    stamp(d, 'trigger_cleared', rec.times.verifiedAt, rec.outcome?.message ?? 'the trigger cleared');
  }
  return rec;
}

/** The links rollguard's record shows, with the times it recorded. */
function fromRecord(d: DrillRecord, r: RollbackRecord): void {
  d.rollback = r.id;
  const received = r.times.receivedAt ?? r.createdAt;
  const name = r.alert?.labels.alertname ?? '?';
  // Polling may miss a quick link; rollguard having the alert proves it, and its own times date it.
  if (!d.links.alert_firing && r.alert) stamp(d, 'alert_firing', r.alert.startsAt, `${name} (as the alert rollguard received says)`);
  if (!d.links.alert_in_alertmanager && r.alert) stamp(d, 'alert_in_alertmanager', received, `${name} (not seen in time by polling; rollguard received it from Alertmanager)`);
  stamp(d, 'webhook_received', received, `record ${r.id}`);
  stamp(d, 'rule_matched', received, `rule ${r.rule ?? '?'}${r.priority ? ` (${r.priority})` : ''}`);
  if (r.decision?.decision === 'rollback_now' && r.times.decidedAt !== undefined) stamp(d, 'decision', r.times.decidedAt, r.decision.reason);
  else if (!d.links.decision) d.seen.decision = r.decision ? `${r.decision.decision}: ${r.decision.reason}` : r.confirmation ? `${r.confirmation.outcome}: ${r.confirmation.reason}` : `not decided yet (${r.state})`;
  if (r.times.startedAt !== undefined) {
    const last = [...r.timeline].reverse().find((e) => e.step.startsWith('guard:'))?.at ?? r.times.startedAt;
    stamp(d, 'guards', last, r.guards.map((g) => g.guard).join(', '));
  } else if (d.links.decision && !d.links.guards) {
    const stop = r.guards.find((g) => g.result !== 'allow');
    d.seen.guards = stop ? `${stop.guard}: ${stop.result}: ${stop.reason}` : r.outcome ? `${r.state}: ${r.outcome.message}` : `guards running (${r.state})`;
  }
  if (r.times.executedAt !== undefined) stamp(d, 'rollback_written', r.times.executedAt, r.timeline.find((e) => e.step === 'executed')?.message ?? r.plan?.summary ?? 'written');
  else if (d.links.guards && !d.links.rollback_written) d.seen.rollback_written = r.outcome ? `${r.state}: ${r.outcome.message}` : r.state;
  if (!d.links.trigger_cleared && r.times.completedAt !== undefined) d.seen.trigger_cleared = r.outcome ? `${r.state}: ${r.outcome.message}` : `rollguard re-checks the trigger (${r.state})`;
}

/** When the alert with these labels first fired since `from`, from ALERTS{alertstate="firing"} over time. */
async function firedAt(prometheus: PrometheusApi, labels: Record<string, string>, from: number, to: number): Promise<number | undefined> {
  const matchers = Object.entries({ ...labels, alertstate: 'firing' }).map(([k, v]) => `${k}="${escapePromqlString(v)}"`);
  const step = Math.max(1000, Math.ceil((to - from) / 1000));
  const series = await prometheus.queryRange(`ALERTS{${matchers.join(',')}}`, from, to, step);
  const times = series.flatMap((s) => s.samples.filter((p) => p.v === 1).map((p) => p.t));
  return times.length ? Math.min(...times) : undefined;
}

function describeLabels(l: Record<string, string>): string {
  return Object.entries(l)
    .filter(([k]) => k !== 'alertname')
    .map(([k, v]) => `${k}=${v}`)
    .join(', ');
}

/** Whether rollguard's record ended without recovering: the drill cannot pass any more. */
export function recordGaveUp(r: RollbackRecord | undefined): boolean {
  return r !== undefined && !OPEN_STATES.includes(r.state) && r.state !== 'succeeded';
}

/** The links that must be seen for a pass (Alertmanager only when watched). */
export function requiredLinks(d: Pick<DrillRecord, 'watchesAlertmanager'>): LinkName[] {
  return LINKS.filter((l) => d.watchesAlertmanager || l !== 'alert_in_alertmanager');
}

/**
 * The first link that broke and what was seen, in one sentence that says what to check: "the alert
 * HighErrorRate fired in Prometheus at 10:02:11 but never reached rollguard: check the Alertmanager route".
 */
export function diagnose(d: DrillRecord): { link: LinkName; message: string } {
  const required = requiredLinks(d);
  let link = required.find((l) => !d.links[l]) ?? 'trigger_cleared';
  // rollguard keeps no record of an alert no rule matches: when none matches, that is the break.
  if (link === 'webhook_received' && d.seen.rule_matched?.startsWith('no rule')) link = 'rule_matched';
  const L = d.links;
  const seen = d.seen[link] ? ` (seen: ${d.seen[link]})` : '';
  const alert = L.alert_firing ? L.alert_firing.detail.split(' (')[0] : 'the alert';
  const fired = L.alert_firing ? `the alert ${alert} fired in Prometheus at ${clock(L.alert_firing.at)}` : '';
  const t = (l: LinkName) => clock(L[l]!.at);
  switch (link) {
    case 'fault_applied':
      return { link, message: `the fault was not applied${seen}` };
    case 'alert_firing':
      return { link, message: `the fault was applied at ${t('fault_applied')} but no alert about ${d.target} fired in Prometheus: check the alerting rules Prometheus evaluates for this fault and that it scrapes the workload${seen}` };
    case 'alert_in_alertmanager':
      return { link, message: `${fired} but never reached Alertmanager: check Prometheus' alerting configuration (alertmanagers)${seen}` };
    case 'webhook_received':
      return { link, message: `${fired} but never reached rollguard: check the Alertmanager route${seen}` };
    case 'rule_matched':
      return { link, message: `${fired} but no rule of rollguard matches it and names ${d.target}: check the rules' match and target (RULES_PATH)${seen}` };
    case 'decision':
      return { link, message: `rollguard received ${alert} at ${t('webhook_received')} (${L.rule_matched?.detail ?? 'rule ?'}) but did not decide to roll back${seen}` };
    case 'guards':
      return { link, message: `rollguard decided to roll back at ${t('decision')} but the guards did not let it${seen}` };
    case 'rollback_written':
      return { link, message: `the guards allowed the rollback at ${t('guards')} but it was not written${seen}` };
    case 'rollout_complete':
      return { link, message: `rollguard wrote the rollback at ${t('rollback_written')} but ${d.target} was not back on its pre-drill template and healthy${seen}` };
    case 'trigger_cleared':
      return { link, message: `${d.target} was back on its pre-drill template at ${t('rollout_complete')} but the trigger did not clear${seen}` };
  }
}
