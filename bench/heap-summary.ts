/**
 * What a V8 heap snapshot holds (one taken with node's --heapsnapshot-signal, or --heapsnapshot-near-heap-limit):
 * its live bytes (self sizes; the snapshot is taken after a GC), the largest by node type and
 * name, and its strings by their first characters (module sources kept by V8 show as their first
 * line). Used for target (c) in docs/benchmarks.md.
 *   npx tsx bench/heap-summary.ts FILE.heapsnapshot [--top 25]
 * Prints JSON on stdout. No assertions.
 */
import { readFileSync } from 'node:fs';

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

const file = process.argv[2];
if (!file) {
  console.error('usage: npx tsx bench/heap-summary.ts FILE.heapsnapshot [--top 25]');
  process.exit(2);
}
const t = process.argv.indexOf('--top');
const TOP = t > 0 ? Number(process.argv[t + 1]) : 25;
const s = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
const fields = s.snapshot.meta.node_fields;
const types = s.snapshot.meta.node_types[0];
const [typeAt, nameAt, sizeAt] = ['type', 'name', 'self_size'].map((f) => fields.indexOf(f)) as [number, number, number];
// names that say what a node is; other types (strings, arrays, numbers) are summed by type alone
const NAMED = new Set(['object', 'closure', 'native', 'code', 'hidden', 'synthetic', 'object shape']);
const STRINGS = new Set(['string', 'concatenated string', 'sliced string']);
const byKind = new Map<string, { bytes: number; count: number }>();
const byPrefix = new Map<string, { bytes: number; count: number }>();
const add = (m: Map<string, { bytes: number; count: number }>, k: string, bytes: number) => {
  const e = m.get(k) ?? { bytes: 0, count: 0 };
  e.bytes += bytes;
  e.count++;
  m.set(k, e);
};
let total = 0;
for (let i = 0; i < s.nodes.length; i += fields.length) {
  const type = types[s.nodes[i + typeAt]!]!;
  const name = s.strings[s.nodes[i + nameAt]!]!;
  const bytes = s.nodes[i + sizeAt]!;
  total += bytes;
  add(byKind, NAMED.has(type) ? `${type} ${name.slice(0, 80)}` : type, bytes);
  if (type === 'string') add(byPrefix, name.slice(0, 40), bytes);
}
const mb = (b: number) => Math.round((b / 2 ** 20) * 100) / 100;
const top = (m: Map<string, { bytes: number; count: number }>) =>
  [...m].sort((a, b) => b[1].bytes - a[1].bytes).slice(0, TOP).map(([k, v]) => ({ what: k, mb: mb(v.bytes), count: v.count }));
const strings = [...byKind].filter(([k]) => STRINGS.has(k)).reduce((a, [, v]) => a + v.bytes, 0);
console.log(JSON.stringify({ file, liveMb: mb(total), stringsMb: mb(strings), byKind: top(byKind), stringsByPrefix: top(byPrefix) }, null, 2));
