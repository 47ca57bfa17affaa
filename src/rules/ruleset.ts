import type { Rule } from './schema.js';
import { ownLabel } from './template.js';

/**
 * A set of rules, pre-compiled and indexed for matching many alerts against many rules.
 *
 * Each rule is filed under one of its equality matchers (`alertname="X"` preferred, since nearly
 * every rule has one), or else under a regex matcher that is a plain alternation of literals
 * (`alertname=~"A|B"`, filed under A and B): index[label][value] -> rules. Matching an alert looks up, for each indexed
 * label, the rules filed under the alert's value of it (a missing label reads as "", as in
 * Alertmanager), then runs those rules' full matcher lists. Rules with no usable equality matcher
 * are checked against every alert. Results keep the rules' load order (file order, then position).
 */
export class RuleSet {
  readonly rules: readonly Rule[];
  readonly loadedAt: number;
  private readonly index = new Map<string, Map<string, number[]>>();
  private readonly unindexed: number[] = [];
  private readonly byName = new Map<string, Rule>();

  constructor(rules: readonly Rule[], loadedAt = Date.now()) {
    this.rules = rules;
    this.loadedAt = loadedAt;
    rules.forEach((r, i) => {
      this.byName.set(r.name, r);
      const key = indexKey(r);
      if (!key) {
        this.unindexed.push(i);
        return;
      }
      let byValue = this.index.get(key.label);
      if (!byValue) this.index.set(key.label, (byValue = new Map()));
      for (const v of key.values) {
        const list = byValue.get(v);
        if (list) list.push(i);
        else byValue.set(v, [i]);
      }
    });
  }

  static empty(): RuleSet {
    return new RuleSet([]);
  }

  get size(): number {
    return this.rules.length;
  }

  get(name: string): Rule | undefined {
    return this.byName.get(name);
  }

  /** The highest priority (P0 before P1 before P2) of the rules matching the alert; undefined when none does. */
  priorityOf(alert: { labels: Record<string, string> }): Rule['priority'] | undefined {
    let best: Rule['priority'] | undefined;
    for (const r of this.match(alert)) if (best === undefined || r.priority < best) best = r.priority;
    return best;
  }

  /** The rules whose every matcher matches the alert's labels, in load order. */
  match(alert: { labels: Record<string, string> }): Rule[] {
    const labels = alert.labels;
    const candidates: number[] = [];
    for (const [label, byValue] of this.index) {
      const hit = byValue.get(ownLabel(labels, label) ?? '');
      if (hit) candidates.push(...hit);
    }
    candidates.push(...this.unindexed);
    if (this.index.size > 1 || this.unindexed.length) candidates.sort((a, b) => a - b);
    const out: Rule[] = [];
    for (const i of candidates) {
      const r = this.rules[i]!;
      let ok = true;
      for (const m of r.matchers) {
        if (!m.matches(labels)) {
          ok = false;
          break;
        }
      }
      if (ok) out.push(r);
    }
    return out;
  }
}

const LITERAL_ALTERNATION = /^[A-Za-z0-9_:-]+(\|[A-Za-z0-9_:-]+)*$/;

/** The label and values a rule is filed under, or undefined when no matcher pins the label's value. */
function indexKey(r: Rule): { label: string; values: string[] } | undefined {
  const eq = r.matchers.filter((m) => m.op === '=');
  const e = eq.find((m) => m.name === 'alertname') ?? eq[0];
  if (e) return { label: e.name, values: [e.value] };
  const alt = r.matchers.filter((m) => m.op === '=~' && LITERAL_ALTERNATION.test(m.value));
  const a = alt.find((m) => m.name === 'alertname') ?? alt[0];
  if (a) return { label: a.name, values: [...new Set(a.value.split('|'))] };
  return undefined;
}

/** Linear matching, no index: the reference the index is checked and benchmarked against. */
export function matchLinear(rules: readonly Rule[], alert: { labels: Record<string, string> }): Rule[] {
  return rules.filter((r) => r.matchers.every((m) => m.matches(alert.labels)));
}
