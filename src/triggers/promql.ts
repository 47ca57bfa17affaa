import { parseTemplate, renderTemplate, type Template } from '../rules/template.js';
import { TriggerFieldError } from './types.js';

/**
 * Helpers to put values into PromQL safely. A label value coming from an alert only ever lands
 * inside a double-quoted PromQL string, escaped, so it cannot close the string and widen the query
 * (`"} or vector(1) or {x="` stays one label value). In a regex matcher it is also regex-escaped, so
 * `.*` in an alert label matches the two characters ".*", not everything.
 */

export const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
export const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/**
 * Escapes text for the inside of a double-quoted PromQL string. Besides the quote, the backslash and
 * line breaks, two kinds of character are written as escapes: other control characters (`\\x07`),
 * and U+FFFD, the replacement character, which Prometheus' lexer refuses raw in a string ("invalid
 * UTF-8 rune": a label value from lossy decoding, `/caf\uFFFD`, made every query of the trigger a 400)
 * but reads as `\\uFFFD`; a lone surrogate, which has no UTF-8, is sent as U+FFFD, as encoding it
 * would have made it.
 */
export function escapePromqlString(s: string): string {
  let out = '';
  for (const c of s) {
    if (c === '\\') out += '\\\\';
    else if (c === '"') out += '\\"';
    else if (c === '\n') out += '\\n';
    else if (c === '\r') out += '\\r';
    else if (c === '\t') out += '\\t';
    else if (c < ' ' || c === '\x7f') out += `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`;
    else if (c === '\uFFFD' || (c.length === 1 && c >= '\uD800' && c <= '\uDFFF')) out += '\\uFFFD';
    else out += c;
  }
  return out;
}

/** Escapes RE2 metacharacters so the text matches itself. */
export function escapeRegex(s: string): string {
  return s.replace(/[\\.+*?()|[\]{}^$]/g, '\\$&');
}

/**
 * One selector entry of a trigger: `label: "template"` (equality) or `label: { regex: "template" }`
 * (the template's own text is a regex; values substituted from alert labels are regex-escaped).
 */
export type SelectorValue = string | { regex: string } | { notEqual: string } | { notRegex: string };

export interface CompiledSelectorEntry {
  label: string;
  op: '=' | '!=' | '=~' | '!~';
  template: Template;
}

export function compileSelector(sel: Record<string, SelectorValue> | undefined): CompiledSelectorEntry[] {
  const out: CompiledSelectorEntry[] = [];
  for (const [label, v] of Object.entries(sel ?? {})) {
    if (!LABEL_NAME.test(label)) throw new TriggerFieldError('selector', `"${label}" is not a valid label name`);
    try {
      if (typeof v === 'string') out.push({ label, op: '=', template: parseTemplate(v) });
      else if ('regex' in v) out.push({ label, op: '=~', template: parseTemplate(v.regex) });
      else if ('notRegex' in v) out.push({ label, op: '!~', template: parseTemplate(v.notRegex) });
      else out.push({ label, op: '!=', template: parseTemplate(v.notEqual) });
    } catch (e) {
      throw new TriggerFieldError('selector', `${label}: ${(e as Error).message}`);
    }
  }
  return out;
}

/**
 * Renders matchers `a="x",b=~"y"` (no braces) from compiled selector entries and alert labels, plus
 * fixed extra matchers written by the trigger itself (already valid PromQL).
 */
export function renderMatchers(
  entries: CompiledSelectorEntry[],
  labels: Record<string, string>,
  extra: string[] = [],
): string {
  const parts: string[] = [];
  for (const e of entries) {
    const isRegex = e.op === '=~' || e.op === '!~';
    // the template's literal text is the rule author's: regex syntax allowed; substitutions are escaped
    const rendered = renderTemplate(e.template, labels, isRegex ? escapeRegex : (v) => v);
    parts.push(`${e.label}${e.op}"${escapePromqlString(rendered)}"`);
  }
  return [...parts, ...extra].join(',');
}

/** `metric{matchers}`, validating the metric name. */
export function vectorSelector(metric: string, matchers: string): string {
  if (!METRIC_NAME.test(metric)) throw new Error(`"${metric}" is not a valid metric name`);
  return `${metric}{${matchers}}`;
}

/** Renders `metric{SELECTOR,extra...}` for an alert's labels. */
export type SeriesRenderer = (metric: string, labels: Record<string, string>, extra?: string[]) => string;

/**
 * The compile step the built-in kinds share: each metric name is checked once (a load error names
 * it), the rule's selector is compiled once, and the returned renderer draws a series selector for
 * an alert's labels.
 */
export function seriesRenderer(metrics: string[], selector: unknown): SeriesRenderer {
  const sel = compileSelector(selector as Record<string, SelectorValue>);
  for (const m of metrics) vectorSelector(m, '');
  return (metric, labels, extra = []) => vectorSelector(metric, renderMatchers(sel, labels, extra));
}

/**
 * Renders a custom PromQL template. Substitutions must sit inside a double-quoted string in the
 * query (e.g. `{namespace="{{ $labels.namespace }}"}`); they are escaped as PromQL string content.
 * `checkCustomQueryTemplate` enforces the placement when the rule file loads.
 */
export function renderCustomQuery(t: Template, labels: Record<string, string>): string {
  let out = '';
  for (const p of t.parts) {
    if ('text' in p) {
      out += p.text;
      continue;
    }
    const single: Template = { source: t.source, parts: [p], labels: [p.label], literal: false };
    // inside a regex matcher's string (=~"..." or !~"..."), substitutions are regex-escaped as well
    const open = lastUnescapedQuote(out);
    const before = out.slice(0, open).trimEnd();
    const regex = before.endsWith('=~') || before.endsWith('!~');
    out += renderTemplate(single, labels, (v) => escapePromqlString(regex ? escapeRegex(v) : v));
  }
  return out;
}

function lastUnescapedQuote(s: string): number {
  for (let i = s.length - 1; i >= 0; i--) {
    if (s[i] !== '"') continue;
    let bs = 0;
    for (let j = i - 1; j >= 0 && s[j] === '\\'; j--) bs++;
    if (bs % 2 === 0) return i;
  }
  return -1;
}

/** Throws unless every `{{ }}` placeholder of a custom query is inside a double-quoted PromQL string. */
export function checkCustomQueryTemplate(query: string): void {
  let inString: '"' | "'" | '`' | null = null;
  for (let i = 0; i < query.length; i++) {
    const c = query[i]!;
    if (inString) {
      if (c === '\\' && inString !== '`') i++;
      else if (c === inString) inString = null;
      continue;
    }
    if (c === '"' || c === "'" || c === '`') {
      inString = c;
      continue;
    }
    if (c === '{' && query[i + 1] === '{') {
      throw new Error(
        'a {{ $labels.x }} placeholder in a custom query must be inside a double-quoted string, e.g. {namespace="{{ $labels.namespace }}"}',
      );
    }
  }
  // placeholders inside ' or ` strings would not be escaped for those quotes
  const re = /(['`])[^'`]*\{\{[^'`]*\1/;
  if (re.test(query)) throw new Error('placeholders must be inside double quotes ("..."), not single quotes or backticks');
}
