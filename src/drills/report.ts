// A drill's report, in the layout of the incident report (src/engine/report.ts): what happened,
// the times against the runbook's targets, the chain link by link, the timeline, what to do next.
import { recordText } from '../engine/report.js';
import { clock, LINK_TITLES, requiredLinks, type LinkName } from './links.js';
import type { DrillRecord } from './store.js';

const MIN = 60_000;
/** The rollback runbook's targets (time to detect, decide, roll back, recover). */
export const TARGETS = { ttd: 5 * MIN, decide: 10 * MIN, ttr: 15 * MIN, mttr: 30 * MIN } as const;

const RESTORE_WORDS: Record<NonNullable<DrillRecord['restore']>['outcome'], string> = {
  restored: 'the drill restored the workload itself',
  already_back: 'nothing to restore',
  moved_on: 'the workload moved on from the fault during the drill, so the drill left it as it is',
  failed: '**the drill could not restore the workload: restore it by hand**',
};

const iso = (ms: number | undefined) => (ms === undefined ? '–' : new Date(ms).toISOString());
const span = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined ? undefined : b - a);
const fmt = (ms: number | undefined) => (ms === undefined ? '–' : ms < MIN ? `${(ms / 1000).toFixed(1)} s` : `${(ms / MIN).toFixed(1)} min`);
/**
 * Text that may quote an alert (a link's detail holds its labels and name, the timeline its
 * messages), as the incident report writes it: one line, no control or bidirectional character,
 * markdown's link, HTML, code and table characters escaped. Until 2026-12-07 only `|` and line
 * feeds were, so an alert label could add a link, an escape sequence or reversed text to the report.
 */
const cell = recordText;

/** The drill's measures, in ms: detect, decide, roll back, recover (MTTR). */
export function drillMeasures(d: DrillRecord) {
  const L = d.links;
  return {
    /** fault applied -> rollguard received the alert */
    ttd: span(d.faultAt, L.webhook_received?.at),
    /** received -> decided to roll back */
    decide: span(L.webhook_received?.at, L.decision?.at),
    /** decided -> rollout complete, back on the pre-drill template */
    ttr: span(L.decision?.at, L.rollout_complete?.at),
    /** fault applied -> back, healthy and the trigger cleared: the drill's time to recover */
    mttr: span(d.faultAt, L.trigger_cleared?.at),
  };
}

const verdict = (ms: number | undefined, target: number) => (ms === undefined ? 'not reached' : ms < target ? 'met' : 'missed');

export function drillReport(d: DrillRecord): string {
  const m = drillMeasures(d);
  const watched = requiredLinks(d);
  // A failed drill's result is written before its restore, the drill still running until that ends.
  const result =
    d.state === 'passed' ? '**passed**' : d.state === 'failed' ? '**failed**' : d.result && !d.result.passed ? '**failed** (restoring the workload)' : '**running**';
  const broken = d.result?.link;
  const linkRow = (l: LinkName) => {
    const seen = d.links[l];
    if (seen) return `| ${LINK_TITLES[l]} | ${clock(seen.at)} | +${fmt(span(d.faultAt, seen.at))} | ${cell(seen.detail)} |`;
    if (!watched.includes(l)) return `| ${LINK_TITLES[l]} | – | – | not watched: ALERTMANAGER_URL is not set |`;
    const mark = l === broken ? '**broke here**' : 'not reached';
    return `| ${LINK_TITLES[l]} | – | – | ${mark}${d.seen[l] ? `: ${cell(d.seen[l]!)}` : ''} |`;
  };
  const lines = [
    `# Drill report: ${d.target}`,
    '',
    `Drill \`${d.id}\` · ${result} · requested by ${cell(d.requestedBy)} · deadline ${fmt(d.deadlineMs)}${d.rollback ? ` · rollback \`${d.rollback}\`` : ''}`,
    '',
    '## What happened',
    '',
    `Fault: ${d.fault.summary}, applied at ${iso(d.faultAt)} on pre-drill revision ${d.before.revision}${d.faultRevision !== undefined ? ` (the fault is revision ${d.faultRevision})` : ''}.`,
    d.result ? `Result: ${result}: ${cell(d.result.message)}.` : 'The drill is running.',
    d.restore ? `Restore: ${RESTORE_WORDS[d.restore.outcome]}: ${cell(d.restore.message)}.` : '',
    '',
    '## When it was detected and how long it took',
    '',
    '| measure | value | runbook target | |',
    '| --- | --- | --- | --- |',
    `| time to detect (fault → rollguard received the alert) | ${fmt(m.ttd)} | < 5 min | ${verdict(m.ttd, TARGETS.ttd)} |`,
    `| time to decide (received → decision) | ${fmt(m.decide)} | < 10 min | ${verdict(m.decide, TARGETS.decide)} |`,
    `| time to roll back, TTR (decision → rollout complete) | ${fmt(m.ttr)} | < 15 min | ${verdict(m.ttr, TARGETS.ttr)} |`,
    `| time to recover, MTTR (fault → healthy, trigger cleared) | ${fmt(m.mttr)} | < 30 min; this drill's deadline ${fmt(d.deadlineMs)} | ${verdict(m.mttr, Math.min(TARGETS.mttr, d.deadlineMs + 1))} |`,
    '',
    '## The chain, link by link',
    '',
    '| link | at (UTC) | after the fault | what was seen |',
    '| --- | --- | --- | --- |',
    ...(Object.keys(LINK_TITLES) as LinkName[]).map(linkRow),
    '',
    '## Timeline',
    '',
    '| time (UTC) | step | what |',
    '| --- | --- | --- |',
    ...d.timeline.map((e) => `| ${iso(e.at)} | ${e.step} | ${cell(e.message)} |`),
    '',
    '## Action items',
    '',
    ...(d.state === 'failed' && broken ? [`- [ ] Mend the link that broke: ${LINK_TITLES[broken]}`] : []),
    ...(d.restore?.outcome === 'failed' ? [`- [ ] Restore ${d.target} to its pre-drill template by hand`] : []),
    ...(d.restore?.outcome === 'moved_on' ? [`- [ ] Check that revision ${d.restore.revision ?? '?'} of ${d.target} (not the drill's) does not carry the fault: ${d.fault.summary}`] : []),
    '- [ ] Document what the drill showed',
    '- [ ] Run the drill again next quarter',
    '',
  ];
  return lines.filter((l, i, a) => !(l === '' && a[i - 1] === '')).join('\n');
}
