// Label values that try to widen a PromQL query (issue 9): ".*", "a|b", quotes, braces,
// backslashes, newlines, control characters, unicode (U+FFFD, which the lexer refuses raw). A real Prometheus holds one probe series per value; each query
// rollguard builds from an alert's labels (the built-in kinds' selectors, equality and regex, and a
// custom query template) is run against it, and must match the series of that very value and
// nothing else, and must always parse. Property-based over hostile strings (fast-check).
import t from 'tap';
import fc from 'fast-check';
import { PrometheusClient } from '../../src/prometheus/client.js';
import { parseTemplate } from '../../src/rules/template.js';
import { compileSelector, renderCustomQuery, renderMatchers } from '../../src/triggers/promql.js';
import { startPrometheus } from '../support/prometheus.js';
import { figures } from './figures.js';

const T0 = Date.UTC(2026, 9, 1, 12, 0);
const STORED = ['shop', 'a', 'b', 'ab', 'a|b', '.*', '.+', 'a.b', 'axb', 'x"y', 'x\\"y', '{braces}', "quo'te", 'back\\slash', 'new\nline', 'tab\there', '"} or vector(1) or {x="', 'ünïcödé', '💥', '(a)', '[ab]', '^a$', 'a*', 'caf\uFFFD', 'bell\u0007', 'del\u007f', ''];
const prom = await startPrometheus(
  t,
  STORED.filter((v) => v !== '').map((v) => ({ metric: 'widen_probe', labels: { namespace: v }, samples: [[T0, 1] as [number, number], [T0 + 60_000, 1] as [number, number]] })),
);
const client = new PrometheusClient({ url: prom.url, timeoutMs: 5000 });

const builders: Record<string, (labels: Record<string, string>) => string> = {
  'selector, equality': (l) => `count by (namespace) (widen_probe{${renderMatchers(compileSelector({ namespace: '{{ $labels.namespace }}' }), l)}})`,
  'selector, regex template': (l) => `count by (namespace) (widen_probe{${renderMatchers(compileSelector({ namespace: { regex: '{{ $labels.namespace }}' } }), l)}})`,
  'custom query, equality': (l) => renderCustomQuery(parseTemplate('count by (namespace) (widen_probe{namespace="{{ $labels.namespace }}"})'), l),
  'custom query, regex': (l) => renderCustomQuery(parseTemplate('count by (namespace) (widen_probe{namespace=~"{{ $labels.namespace }}"})'), l),
};

let queries = 0;
async function check(t: { equal: (...a: never[]) => unknown; fail: (m: string) => unknown }, value: string): Promise<boolean> {
  for (const [name, build] of Object.entries(builders)) {
    if (value === '') {
      // an empty label is an absent one in Prometheus: the query is not built at all
      try {
        build({ namespace: value });
      } catch (err) {
        if (/has no label "namespace"/.test((err as Error).message)) continue;
      }
      t.fail(`${name}: an empty label value built a query`);
      return false;
    }
    const q = build({ namespace: value });
    queries++;
    let got: string[];
    try {
      got = (await client.query(q, T0 + 30_000)).map((s) => s.labels.namespace ?? '');
    } catch (err) {
      t.fail(`${name}: ${JSON.stringify(value)} made a query Prometheus refuses: ${q}: ${(err as Error).message}`);
      return false;
    }
    const want = STORED.includes(value) && value !== '' ? [value] : [];
    if (JSON.stringify(got.sort()) !== JSON.stringify(want)) {
      t.fail(`${name}: ${JSON.stringify(value)} matched ${JSON.stringify(got)} with ${q}`);
      return false;
    }
  }
  return true;
}

t.test('each stored hostile value matches itself only', async (t) => {
  for (const v of STORED) t.ok(await check(t as never, v), `${JSON.stringify(v)} matches only itself, in every query form`);
});

t.test('fuzzed label values never widen a query', async (t) => {
  const hostile = fc.oneof(
    fc.constantFrom(...STORED),
    fc.array(fc.constantFrom('a', 'b', '.', '*', '+', '?', '|', '(', ')', '[', ']', '{', '}', '^', '$', '\\', '"', "'", '`', '\n', '\t', ',', '=', '~', '!', ' ', 'ü', '💥', 'or', 'vector(1)'), { maxLength: 8 }).map((a) => a.join('')),
    fc.string({ unit: 'grapheme', maxLength: 12 }),
  );
  await fc.assert(
    fc.asyncProperty(hostile, async (v) => check(t as never, v)),
    { numRuns: 250, seed: Number(process.env.RELIABILITY_RUN ?? 20261123) },
  );
  figures(t, 'promql-widening', { inputs_fuzzed: 250 + STORED.length, queries_run: queries, widened: 0 });
});
