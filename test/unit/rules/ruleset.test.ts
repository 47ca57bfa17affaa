import fc from 'fast-check';
import t from 'tap';
import { parseRuleFile } from '../../../src/rules/loader.js';
import { matchLinear, RuleSet } from '../../../src/rules/ruleset.js';
import type { Rule } from '../../../src/rules/schema.js';

function rules(matchLists: string[][]): Rule[] {
  if (matchLists.length === 0) return [];
  const text =
    'rules:\n' +
    matchLists
      .map(
        (m, i) =>
          `  - name: r${i}\n    match: ${JSON.stringify(m)}\n    target: { kind: Deployment, namespace: a, name: b }\n    trigger: { kind: deployment_failed, for: 5m }\n    priority: P1\n`,
      )
      .join('');
  const r = parseRuleFile('gen.yaml', text);
  if (r.errors.length) throw new Error(JSON.stringify(r.errors));
  return r.rules;
}
/** Whether a rule of these matchers loads (a list matching any alert does not). */
rules.loads = (m: string[]): boolean => parseRuleFile('gen.yaml', `rules:\n  - name: r\n    match: ${JSON.stringify(m)}\n    target: { kind: Deployment, namespace: a, name: b }\n    trigger: { kind: deployment_failed, for: 5m }\n    priority: P1\n`).errors.length === 0;

t.test('index by alertname, other equality labels, and unindexed rules', async (t) => {
  const set = new RuleSet(
    rules([
      ['alertname="HighErrorRate"'],
      ['alertname="HighErrorRate"', 'severity="critical"'],
      ['team="payments"', 'severity=~"crit.*"'],
      ['alertname=~"High.*"'],
      ['alertname="Other"'],
      ['team=""', 'alertname="HighErrorRate"'],
    ]),
  );
  const names = (labels: Record<string, string>) => set.match({ labels }).map((r) => r.name);
  t.same(names({ alertname: 'HighErrorRate' }), ['r0', 'r3', 'r5'], 'missing team reads as ""');
  t.same(names({ alertname: 'HighErrorRate', severity: 'critical', team: 'payments' }), ['r0', 'r1', 'r2', 'r3']);
  t.same(names({ alertname: 'Other', team: 'payments', severity: 'critical' }), ['r2', 'r4']);
  t.same(names({ alertname: 'Nope' }), []);
  t.equal(set.get('r2')?.name, 'r2');
  t.equal(set.size, 6);
});

t.test('property: the index matches exactly what linear matching matches, in the same order', async (t) => {
  const names = ['alertname', 'severity', 'team', 'env'];
  const values = ['A', 'B', 'C', 'critical', 'warning', ''];
  const matcherArb = fc
    .tuple(fc.constantFrom(...names), fc.constantFrom('=', '!=', '=~', '!~'), fc.constantFrom(...values, 'A|B', 'A|A', 'critical|warning|A', '.*', 'crit.*', '.+'))
    .map(([n, op, v]) => `${n}${op}${JSON.stringify(v)}`);
  const labelsArb = fc.dictionary(fc.constantFrom(...names), fc.constantFrom(...values.filter((v) => v !== '')));
  fc.assert(
    fc.property(fc.array(fc.array(matcherArb, { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 12 }), fc.array(labelsArb, { maxLength: 10 }), (generated, alerts) => {
      // lists matching any alert (`team!="A"`, `env=~".*"`) are refused at load: not in a rule set
      const ml = generated.filter((m) => rules.loads(m));
      const rs = rules(ml);
      const set = new RuleSet(rs);
      return alerts.every((labels) => JSON.stringify(set.match({ labels }).map((r) => r.name)) === JSON.stringify(matchLinear(rs, { labels }).map((r) => r.name)));
    }),
    { numRuns: 300 },
  );
  t.pass('300 random rule sets');
});

t.test('a regex that is a plain alternation of literals is indexed under each literal', async (t) => {
  const set = new RuleSet(rules([['alertname=~"HighErrorRate|HighLatency"'], ['severity=~"critical|page"', 'team="db"'], ['alertname=~"High.*"']]));
  const names = (labels: Record<string, string>) => set.match({ labels }).map((r) => r.name);
  t.same(names({ alertname: 'HighLatency' }), ['r0', 'r2']);
  t.same(names({ alertname: 'HighErrorRateX' }), ['r2'], 'still anchored');
  t.same(names({ alertname: 'X', severity: 'page', team: 'db' }), ['r1'], 'equality wins the index, the regex is still checked');
  t.same(names({ alertname: 'X', severity: 'info', team: 'db' }), []);
});
