import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { isAlias, isCollection, isMap, isNode, isPair, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node as YamlNode } from 'yaml';
import type { z } from 'zod';
import { ruleFileSchema, toRule, type Rule } from './schema.js';
import { prototypeName } from './template.js';

/**
 * Loads rule files. Paths may be files or directories (a directory contributes its *.yaml and
 * *.yml files, not its subdirectories, so rules/tests/ holds test files beside the rules).
 *
 * Every problem is reported as `FILE:LINE: FIELD: what was expected`, e.g.
 *   rules/bad.yaml:12: rules[0].trigger.threshold: expected number, got string ("high")
 * and a load either yields every rule of every file, or errors: never a partial set.
 */

export interface RuleFileError {
  file: string;
  line: number;
  column: number;
  /** the field, like rules[0].trigger.threshold; empty for file-level problems */
  field: string;
  message: string;
}

export interface LoadResult {
  rules: Rule[];
  files: string[];
  errors: RuleFileError[];
}

export function formatRuleError(e: RuleFileError): string {
  return `${e.file}:${e.line}: ${e.field ? `${e.field}: ` : ''}${e.message}`;
}

/** Expands paths into the rule files they name, sorted within each directory. */
export async function expandRulePaths(paths: readonly string[]): Promise<{ files: string[]; errors: RuleFileError[]; skipped: string[] }> {
  const files: string[] = [];
  const errors: RuleFileError[] = [];
  /** names in the directories that are not read (not *.yaml or *.yml): said when no rule file is found */
  const skipped: string[] = [];
  for (const p of paths) {
    let st;
    try {
      st = await stat(p);
    } catch (e) {
      errors.push({ file: p, line: 0, column: 0, field: '', message: `cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` });
      continue;
    }
    if (st.isDirectory()) {
      // symlinks count when they point at files: a Kubernetes ConfigMap volume is symlinks into ..data/
      const names: string[] = [];
      for (const d of await readdir(p, { withFileTypes: true })) {
        if (d.name.startsWith('.')) continue;
        if (!/\.ya?ml$/.test(d.name)) {
          skipped.push(join(p, d.name));
          continue;
        }
        if (d.isFile() || (d.isSymbolicLink() && (await stat(join(p, d.name)).then((x) => x.isFile(), () => false)))) names.push(d.name);
      }
      for (const n of names.sort()) files.push(join(p, n));
    } else files.push(p);
  }
  return { files, errors, skipped };
}

/**
 * Paths that name no rule file at all: an error, not an empty set in force. A ConfigMap whose keys
 * were all deleted, or named without .yaml, or a RULES_PATH pointing at the wrong directory, would
 * otherwise leave no rule loaded and every alert unmatched, answered 200 and dropped. No rules on
 * purpose is a file saying so (`rules: []`).
 */
function noRuleFiles(paths: readonly string[], skipped: readonly string[]): RuleFileError {
  const shown = skipped.slice(0, 5).join(', ');
  const others = skipped.length ? `; found ${shown}${skipped.length > 5 ? ` and ${skipped.length - 5} more` : ''}, not read (only *.yaml and *.yml files are, not subdirectories)` : '';
  return {
    file: paths.join(', '),
    line: 0,
    column: 0,
    field: '',
    message: `no rule files (*.yaml or *.yml) found${others}; for no rules on purpose, a file with "rules: []"`,
  };
}

export async function loadRules(paths: readonly string[]): Promise<LoadResult> {
  const { files, errors, skipped } = await expandRulePaths(paths);
  if (files.length === 0 && errors.length === 0) errors.push(noRuleFiles(paths, skipped));
  const rules: Rule[] = [];
  for (const f of files) {
    let text: string;
    try {
      text = await readFile(f, 'utf8');
    } catch (e) {
      errors.push({ file: f, line: 0, column: 0, field: '', message: `cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` });
      continue;
    }
    const r = parseRuleFile(f, text);
    rules.push(...r.rules);
    errors.push(...r.errors);
  }
  errors.push(...checkUniqueNames(rules));
  return errors.length ? { rules: [], files, errors } : { rules, files, errors };
}

export function checkUniqueNames(rules: readonly Rule[]): RuleFileError[] {
  const seen = new Map<string, Rule>();
  const errors: RuleFileError[] = [];
  for (const r of rules) {
    const first = seen.get(r.name);
    if (first) {
      errors.push({
        file: r.file,
        line: r.line,
        column: 1,
        field: `rules[${r.index}].name`,
        message: `rule name "${r.name}" is already used at ${first.file}:${first.line}; names must be unique across all rule files`,
      });
    } else seen.set(r.name, r);
  }
  return errors;
}

/** Parses one rule file's text. */
export function parseRuleFile(file: string, text: string): { rules: Rule[]; errors: RuleFileError[] } {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true, merge: true });
  const at = (offset: number) => lc.linePos(offset);
  if (doc.errors.length) {
    return {
      rules: [],
      errors: doc.errors.map((e) => {
        const pos = at(e.pos[0]);
        return { file, line: pos.line, column: pos.col, field: '', message: `invalid YAML: ${e.message.split('\n')[0]}` };
      }),
    };
  }
  const expansion = checkNodes(doc);
  if (expansion) {
    const pos = at(expansion.offset);
    return { rules: [], errors: [{ file, line: pos.line, column: pos.col, field: fieldPath(expansion.path), message: expansion.message }] };
  }
  let data: unknown;
  try {
    // checkNodes bounded what aliases add; the yaml library's own count (100 uses of an anchor) is off
    data = doc.toJS({ maxAliasCount: -1 });
  } catch (e) {
    return { rules: [], errors: [{ file, line: 1, column: 1, field: '', message: `cannot read the YAML: ${(e as Error).message}` }] };
  }
  if (data === null || data === undefined) {
    return { rules: [], errors: [{ file, line: 1, column: 1, field: '', message: 'empty file (expected a map with a "rules" list)' }] };
  }
  const parsed = ruleFileSchema.safeParse(data);
  if (!parsed.success) {
    const errors = flattenIssues(parsed.error.issues).map((i) => {
      const pos = at(offsetOf(doc.contents, i.path));
      return { file, line: pos.line, column: pos.col, field: fieldPath(i.path), message: describeIssue(i, data) };
    });
    errors.sort((a, b) => a.line - b.line || a.column - b.column);
    return { rules: [], errors: dedupe(errors) };
  }
  const rulesNode = isMap(doc.contents) ? doc.contents.get('rules', true) : undefined;
  const rules = parsed.data.rules.map((r, idx) => {
    const node = isSeq(rulesNode) ? (rulesNode.items[idx] as YamlNode | undefined) : undefined;
    return toRule(r, file, at(node?.range?.[0] ?? 0).line, idx);
  });
  return { rules, errors: [] };
}

/**
 * The most YAML nodes a file's aliases (`*g`, and `<<: *g` merges) may add once resolved, over the
 * whole file: a guard against a file of nested aliases (a few lines that expand to billions of
 * nodes). A use of an anchor adds the anchor's node count, so 120 rules sharing a 10-node `*g`
 * add 1,200. The yaml library's own guard (maxAliasCount: 100 uses of one anchor, whatever its
 * size) refused a file with a hundred rules sharing one small anchor.
 */
export const MAX_ALIAS_EXPANSION = 100_000;

/**
 * Walks the document in order, as the yaml library resolves aliases (to the last anchor of that
 * name before the alias), counting what each alias adds. Returns the first alias past
 * MAX_ALIAS_EXPANSION, or one inside its own anchor (a cycle), or the first key that is a property
 * name of every JavaScript object (`__proto__`: a map of labels silently lost it), with its offset
 * and field.
 */
function checkNodes(doc: Document): { offset: number; path: Path; message: string } | undefined {
  const anchors = new Map<string, unknown>();
  const sizes = new Map<unknown, number>();
  let added = 0;
  class Refused {
    constructor(readonly offset: number, readonly path: Path, readonly message: string) {}
  }
  const walk = (n: unknown, path: Path): number => {
    if (isAlias(n)) {
      const target = anchors.get(n.source);
      if (target === undefined) return 1; // parseDocument reported it
      const size = sizes.get(target);
      if (size === undefined) {
        throw new Refused(rangeStart(n) ?? 0, path, `the alias *${n.source} is inside its own anchor &${n.source}; a rule file cannot refer to itself`);
      }
      added += size;
      if (added > MAX_ALIAS_EXPANSION) {
        throw new Refused(
          rangeStart(n) ?? 0,
          path,
          `with the alias *${n.source} (${size.toLocaleString('en')} nodes), the file's aliases add more than ${MAX_ALIAS_EXPANSION.toLocaleString('en')} YAML nodes when resolved, which is refused as a resource exhaustion guard; write the shared part out where it is used, use it fewer times, or split the file`,
        );
      }
      return size;
    }
    if (isPair(n)) {
      // a key written as an alias (`? *n : …`) is the scalar its anchor names
      const k = isAlias(n.key) ? anchors.get(n.key.source) : n.key;
      const key = isScalar(k) ? String(k.value) : undefined;
      const proto = key === undefined ? undefined : prototypeName(key);
      if (proto) throw new Refused(rangeStart(n.key) ?? 0, [...path, key!], proto);
      return walk(n.key, path) + walk(n.value, key === undefined ? path : [...path, key]);
    }
    if (!isNode(n)) return 1;
    if (n.anchor) anchors.set(n.anchor, n);
    let size = 1;
    if (isCollection(n)) n.items.forEach((item, i) => (size += walk(item, isSeq(n) ? [...path, i] : path)));
    sizes.set(n, size);
    return size;
  };
  try {
    walk(doc.contents, []);
  } catch (e) {
    if (e instanceof Refused) return e;
    throw e;
  }
  return undefined;
}

type Issue = z.core.$ZodIssue;
type Path = PropertyKey[];
interface FlatIssue {
  path: Path;
  issue: Issue;
}

/** Unions report one issue per branch; keep the branch whose shape the value has, recursively. */
function flattenIssues(issues: readonly Issue[], prefix: Path = []): FlatIssue[] {
  const out: FlatIssue[] = [];
  for (const i of issues) {
    const path = [...prefix, ...i.path];
    if (i.code === 'invalid_union' && !(i as { discriminator?: string }).discriminator && i.errors.length) {
      const fitting = i.errors.filter((branch) => !branch.some((b) => b.code === 'invalid_type' && b.path.length === 0));
      if (fitting.length > 0) {
        out.push(...flattenIssues(fitting[0]!, path));
        continue;
      }
    }
    if (i.code === 'unrecognized_keys') {
      for (const k of i.keys) out.push({ path: [...path, k], issue: i });
      continue;
    }
    out.push({ path, issue: i });
  }
  return out;
}

function fieldPath(path: Path): string {
  let s = '';
  for (const p of path) s += typeof p === 'number' ? `[${p}]` : s ? `.${String(p)}` : String(p);
  return s;
}

function valueAt(data: unknown, path: Path): unknown {
  let v = data;
  for (const p of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[p];
  }
  return v;
}

function typeWord(t: string): string {
  return t === 'object' || t === 'record' ? 'map' : t === 'array' ? 'list' : t;
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'list';
  if (typeof v === 'object') return 'map';
  return typeof v;
}

function show(v: unknown): string {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

function describeIssue({ path, issue: i }: FlatIssue, data: unknown): string {
  const v = valueAt(data, path);
  switch (i.code) {
    case 'invalid_type': {
      const expected = typeWord(i.expected);
      if (v === undefined) return `missing (expected ${expected})`;
      const t = typeName(v);
      return `expected ${expected}, got ${t}${t === 'string' || t === 'number' || t === 'boolean' ? ` (${show(v)})` : ''}`;
    }
    case 'unrecognized_keys':
      return `unknown field "${String(path[path.length - 1])}"${suggest(String(path[path.length - 1]))}`;
    case 'invalid_value':
      if (v === undefined) return `missing (expected ${i.values.length === 1 ? show(i.values[0]) : `one of ${i.values.map(show).join(', ')}`})`;
      return `expected ${i.values.length === 1 ? show(i.values[0]) : `one of ${i.values.map(show).join(', ')}`}, got ${show(v)}`;
    case 'invalid_union': {
      const d = i as { discriminator?: string; options?: unknown[] };
      if (d.discriminator) {
        const opts = (d.options ?? []).map(String).join(', ');
        return v === undefined ? `missing (expected one of ${opts})` : `expected one of ${opts}, got ${show(v)}`;
      }
      const kinds = i.errors.map((b) => b.find((x) => x.path.length === 0 && x.code === 'invalid_type')).map((x) =>
        x && x.code === 'invalid_type' ? typeWord(x.expected) : '?',
      );
      return v === undefined ? `missing (expected ${kinds.join(' or ')})` : `expected ${kinds.join(' or ')}, got ${typeName(v)}`;
    }
    case 'too_small':
      if (i.origin === 'number' || i.origin === 'int') return `expected a number ${i.inclusive ? '>=' : '>'} ${String(i.minimum)}, got ${show(v)}`;
      return i.message.startsWith('Too small') ? `expected at least ${String(i.minimum)} item(s)` : i.message;
    case 'too_big':
      if (i.origin === 'number' || i.origin === 'int') return `expected a number ${i.inclusive ? '<=' : '<'} ${String(i.maximum)}, got ${show(v)}`;
      return i.message;
    case 'invalid_format':
      return `${i.message.startsWith('Invalid') ? 'invalid format' : i.message}, got ${show(v)}`;
    default:
      return i.message;
  }
}

const KNOWN_FIELDS = [
  'rules', 'name', 'description', 'match', 'target', 'trigger', 'priority', 'action', 'onPrometheusDown', 'sloAtRisk',
  'recheckAfter', 'maintenanceWindow', 'guards', 'kind', 'namespace', 'params', 'threshold', 'op', 'for', 'step',
  'minCoverage', 'baseline', 'relativeTo', 'offset', 'window', 'minValue', 'metric', 'statusLabel', 'errorStatus',
  'rateWindow', 'selector', 'quantile', 'usageMetric', 'limitMetric', 'query', 'dryRun', 'onlyIfDeployedWithin',
  'cooldown', 'budget', 'perTargetPerHour', 'perRulePerHour', 'approval', 'required', 'expiresAfter', 'allowStepBack',
  'maxStepBack', 'regex', 'notEqual', 'notRegex', 'selectorLabel', 'previous', 'stable',
];

function suggest(key: string): string {
  let best: string | undefined;
  let bestD = 3;
  for (const k of KNOWN_FIELDS) {
    const d = distance(key.toLowerCase(), k.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = k;
    }
  }
  return best && best !== key ? ` (did you mean "${best}"?)` : '';
}

function distance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j]!;
      prev[j] = Math.min(prev[j]! + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = tmp;
    }
  }
  return prev[b.length]!;
}

/** The source offset of the deepest node along path (the key for a field, so errors point at its line). */
function offsetOf(root: unknown, path: Path): number {
  let node: unknown = root;
  let offset = rangeStart(root) ?? 0;
  for (const seg of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(seg));
      if (!pair) break;
      offset = rangeStart(pair.key) ?? offset;
      node = pair.value;
      // a scalar value on the key's line: point at the value (same line); a nested block: keep descending
      if (isScalar(node)) offset = rangeStart(node) ?? offset;
    } else if (isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg];
      if (item === undefined) break;
      node = item;
      offset = rangeStart(item) ?? offset;
    } else break;
  }
  return offset;
}

function rangeStart(n: unknown): number | undefined {
  const r = (n as { range?: [number, number, number] } | null)?.range;
  return r ? r[0] : undefined;
}

function dedupe(errors: RuleFileError[]): RuleFileError[] {
  const seen = new Set<string>();
  return errors.filter((e) => {
    const k = formatRuleError(e);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}
