/**
 * Matching 1,000 rules against a 1,000-alert webhook batch: the indexed RuleSet against linear
 * matching, plus parsing a 1,000-rule file. Prints JSON; no assertions on time.
 *   npx tsx bench/rules-match.ts [--rules 1000] [--alerts 1000] [--rounds 30]
 */
import { performance } from 'node:perf_hooks';
import { parseRuleFile } from '../src/rules/loader.js';
import { matchLinear, RuleSet } from '../src/rules/ruleset.js';

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const RULES = arg('rules', 1000);
const ALERTS = arg('alerts', 1000);
const ROUNDS = arg('rounds', 30);

// deterministic pseudo-random numbers
let state = 42;
const rnd = () => ((state = (state * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;

const ALERTNAMES = Array.from({ length: 300 }, (_, i) => `Alert${i}`);
const NAMESPACES = Array.from({ length: 40 }, (_, i) => `ns-${i}`);
const SEVERITIES = ['critical', 'warning', 'info', 'page'];

// 90% of rules: alertname="X" plus 0-2 more matchers; 10%: regex-only (not indexable)
let yaml = 'rules:\n';
for (let i = 0; i < RULES; i++) {
  const m: string[] = [];
  if (rnd() < 0.9) m.push(`alertname="${pick(ALERTNAMES)}"`);
  else m.push(`alertname=~"Alert${Math.floor(rnd() * 30)}.*"`);
  if (rnd() < 0.6) m.push(`namespace=~"${pick(NAMESPACES)}|${pick(NAMESPACES)}"`);
  if (rnd() < 0.5) m.push(`severity="${pick(SEVERITIES)}"`);
  if (rnd() < 0.2) m.push('env!="staging"');
  yaml += `  - name: rule-${i}
    match: ${JSON.stringify(m)}
    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
    trigger: { kind: error_rate, selector: { namespace: "{{ $labels.namespace }}" }, threshold: 0.05, for: 2m }
    priority: ${pick(['P0', 'P1', 'P2'])}
`;
}

const alerts = Array.from({ length: ALERTS }, () => ({
  labels: {
    alertname: rnd() < 0.8 ? pick(ALERTNAMES) : `Unmatched${Math.floor(rnd() * 100)}`,
    namespace: pick(NAMESPACES),
    severity: pick(SEVERITIES),
    deployment: `svc-${Math.floor(rnd() * 100)}`,
    env: rnd() < 0.5 ? 'prod' : 'staging',
    pod: `svc-${Math.floor(rnd() * 100)}-7c9d8-x2x4z`,
    instance: `10.0.${Math.floor(rnd() * 255)}.${Math.floor(rnd() * 255)}:8080`,
  },
}));

const t0 = performance.now();
const parsed = parseRuleFile('bench.yaml', yaml);
const parseMs = performance.now() - t0;
if (parsed.errors.length) throw new Error(JSON.stringify(parsed.errors.slice(0, 3)));
const rules = parsed.rules;

const t1 = performance.now();
const set = new RuleSet(rules);
const indexMs = performance.now() - t1;

function time(fn: () => number): { medianMs: number; p90Ms: number; minMs: number; matches: number } {
  const runs: number[] = [];
  let matches = 0;
  for (let i = 0; i < 3; i++) fn(); // warm-up
  for (let r = 0; r < ROUNDS; r++) {
    const s = performance.now();
    matches = fn();
    runs.push(performance.now() - s);
  }
  runs.sort((a, b) => a - b);
  return { medianMs: round(runs[Math.floor(runs.length / 2)]!), p90Ms: round(runs[Math.floor(runs.length * 0.9)]!), minMs: round(runs[0]!), matches };
}
const round = (x: number) => Math.round(x * 1000) / 1000;

const indexed = time(() => alerts.reduce((n, a) => n + set.match(a).length, 0));
const linear = time(() => alerts.reduce((n, a) => n + matchLinear(rules, a).length, 0));
if (indexed.matches !== linear.matches) throw new Error(`index and linear disagree: ${indexed.matches} vs ${linear.matches}`);

console.log(
  JSON.stringify(
    {
      benchmark: 'rules-match',
      node: process.version,
      rules: RULES,
      alerts: ALERTS,
      rounds: ROUNDS,
      parseRuleFileMs: round(parseMs),
      buildIndexMs: round(indexMs),
      matchedPairsPerBatch: indexed.matches,
      indexed: { ...indexed, perAlertMicros: round((indexed.medianMs * 1000) / ALERTS) },
      linear: { ...linear, perAlertMicros: round((linear.medianMs * 1000) / ALERTS) },
      speedup: round(linear.medianMs / indexed.medianMs),
    },
    null,
    2,
  ),
);
