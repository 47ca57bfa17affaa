import { RE2JS, RE2JSException } from 're2js';
import { parseTemplate, prototypeName, renderTemplate, type Template } from '../rules/template.js';
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
 * Why a regex of a trigger would make Prometheus refuse every query of it, or undefined when it
 * compiles: RE2 syntax, as Prometheus' Go regexp (re2js is a port of it). Placeholders stand for
 * an escaped value, which is a literal, so they are checked as the letter x.
 */
export function invalidRegex(template: Template | string): string | undefined {
  const source = typeof template === 'string' ? template : template.parts.map((p) => ('text' in p ? p.text : 'x')).join('');
  try {
    RE2JS.compile(source); // alone, as Prometheus anchors it as ^(?:...)$: `a)|(b` must not pass
    return undefined;
  } catch (e) {
    if (!(e instanceof RE2JSException)) throw e;
    const why = e.message.replace(/^error parsing regexp: /, '').replace(/: `.*`$/s, '');
    const shown = typeof template === 'string' ? template : template.source;
    return `invalid regex "${shown}": ${why} (RE2 syntax, as Prometheus: no lookaround, no backreferences); Prometheus would refuse every query of this trigger`;
  }
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
    const proto = prototypeName(label);
    if (proto) throw new TriggerFieldError('selector', proto);
    try {
      if (typeof v === 'string') out.push({ label, op: '=', template: parseTemplate(v) });
      else if ('regex' in v) out.push({ label, op: '=~', template: parseTemplate(v.regex) });
      else if ('notRegex' in v) out.push({ label, op: '!~', template: parseTemplate(v.notRegex) });
      else out.push({ label, op: '!=', template: parseTemplate(v.notEqual) });
      const e = out[out.length - 1]!;
      const bad = e.op === '=~' || e.op === '!~' ? invalidRegex(e.template) : undefined;
      if (bad) throw new Error(bad);
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
 * What Prometheus makes of the string a custom query's placeholder sits in: plain string content,
 * or a regex (the string of a `=~` / `!~` matcher), whose substitutions are regex-escaped as well.
 */
export type PlaceholderContext = 'string' | 'regex';

/** label_replace(v, dst_label, replacement, src_label, regex): the argument that is a regex. */
const REGEX_ARGUMENTS = new Map([['label_replace', 4]]);

const PLACEHOLDER_OUTSIDE_STRING =
  'a {{ $labels.x }} placeholder in a custom query must be inside a double-quoted string, e.g. {namespace="{{ $labels.namespace }}"}';

/**
 * Reads a custom query as Prometheus' lexer does, far enough to place each `{{ }}` placeholder: a
 * `#` outside a string starts a comment to the end of its line (quotes in it mean nothing); `"` and
 * `'` strings take backslash escapes and end at their line; backtick strings take none. Returns one
 * context per placeholder, in order; throws (the load error) for a placeholder outside a
 * double-quoted string, in a comment, or in a regex argument of a function, and for a string left
 * open at the end of its line.
 */
export function scanCustomQuery(query: string): PlaceholderContext[] {
  const out: PlaceholderContext[] = [];
  /** open brackets; a `(` remembers the function it calls and which argument the scan is in */
  const stack: { open: string; fn: string; arg: number }[] = [];
  let prev = ''; // the last token outside strings and comments: an identifier, an operator or a bracket
  const lineOf = (i: number) => query.slice(0, i).split('\n').length;
  for (let i = 0; i < query.length; i++) {
    const c = query[i]!;
    if (c === '#') {
      const end = query.indexOf('\n', i);
      const comment = query.slice(i, end === -1 ? query.length : end);
      if (comment.includes('{{')) {
        throw new Error(
          `line ${lineOf(i)}: a {{ $labels.x }} placeholder in a # comment (the comment runs to the end of its line, quotes in it included); move it out of the comment, into a double-quoted string`,
        );
      }
      i = end === -1 ? query.length : end;
      continue;
    }
    if (c === '"' || c === "'" || c === '`') {
      const top = stack[stack.length - 1];
      const regexArg = top?.open === '(' && REGEX_ARGUMENTS.get(top.fn) === top.arg ? top.fn : undefined;
      const context: PlaceholderContext = prev === '=~' || prev === '!~' ? 'regex' : 'string';
      let j = i + 1;
      for (; j < query.length; j++) {
        const d = query[j]!;
        if (d === '\\' && c !== '`') j++;
        else if (d === c) break;
        else if (d === '\n' && c !== '`') {
          throw new Error(`line ${lineOf(i)}: a ${c}-quoted string is not closed on its line (PromQL strings other than \`...\` end at their line)`);
        } else if (d === '{' && query[j + 1] === '{') {
          if (c !== '"') throw new Error('placeholders must be inside double quotes ("..."), not single quotes or backticks');
          if (regexArg) {
            throw new Error(
              `a {{ $labels.x }} placeholder in the regex argument of ${regexArg}() is not allowed (an alert's value would be read as a regex); write that regex literally, and select by the alert's label in a matcher instead, e.g. {namespace="{{ $labels.namespace }}"}`,
            );
          }
          out.push(context);
          const close = query.indexOf('}}', j + 2);
          if (close === -1) throw new Error('unclosed "{{" in the query');
          j = close + 1;
        }
      }
      if (j >= query.length) throw new Error(`line ${lineOf(i)}: a ${c}-quoted string is not closed`);
      if (context === 'regex') {
        const value = c === '`' ? query.slice(i + 1, j) : unquotePromql(query.slice(i + 1, j));
        const bad = value === undefined ? undefined : invalidRegex(parseTemplate(value));
        if (bad) throw new Error(`line ${lineOf(i)}: ${bad}`);
      }
      i = j;
      prev = 'string';
      continue;
    }
    if (c === '{' && query[i + 1] === '{') throw new Error(PLACEHOLDER_OUTSIDE_STRING);
    if (/\s/.test(c)) continue;
    const ident = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(query.slice(i, i + 256));
    if (ident) {
      prev = ident[0];
      i += ident[0].length - 1;
      continue;
    }
    if (c === '(' || c === '{' || c === '[') stack.push({ open: c, fn: c === '(' ? prev : '', arg: 0 });
    else if (c === ')' || c === '}' || c === ']') stack.pop();
    else if (c === ',' && stack[stack.length - 1]?.open === '(') stack[stack.length - 1]!.arg++;
    const two = query.slice(i, i + 2);
    if (two === '=~' || two === '!~' || two === '!=' || two === '==' || two === '>=' || two === '<=') {
      prev = two;
      i++;
    } else prev = c;
  }
  return out;
}

const SIMPLE_ESCAPES: Record<string, string> = { a: '\x07', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v', '\\': '\\', '"': '"', "'": "'" };

/**
 * The value of a "..." or '...' PromQL string's content (Go's escapes); undefined for an escape
 * this does not read, left to Prometheus (and `rules check --promql`) to judge.
 */
function unquotePromql(s: string): string | undefined {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c !== '\\') {
      out += c;
      continue;
    }
    const n = s[i + 1] ?? '';
    if (Object.hasOwn(SIMPLE_ESCAPES, n)) {
      out += SIMPLE_ESCAPES[n];
      i++;
      continue;
    }
    const hex = n === 'x' ? 2 : n === 'u' ? 4 : n === 'U' ? 8 : 0;
    const digits = hex ? s.slice(i + 2, i + 2 + hex) : '';
    if (hex && /^[0-9a-fA-F]+$/.test(digits) && digits.length === hex) {
      const cp = parseInt(digits, 16);
      if (cp > 0x10ffff) return undefined;
      out += String.fromCodePoint(cp);
      i += 1 + hex;
      continue;
    }
    return undefined;
  }
  return out;
}

/**
 * Renders a custom PromQL template. Substitutions must sit inside a double-quoted string in the
 * query (e.g. `{namespace="{{ $labels.namespace }}"}`); they are escaped as PromQL string content,
 * and regex-escaped as well inside a `=~` / `!~` matcher's string. `contexts` are scanCustomQuery's
 * answer for the template's source (computed here when not given).
 */
export function renderCustomQuery(t: Template, labels: Record<string, string>, contexts = scanCustomQuery(t.source)): string {
  let out = '';
  let n = 0;
  for (const p of t.parts) {
    if ('text' in p) {
      out += p.text;
      continue;
    }
    const context = contexts[n++];
    if (context === undefined) throw new Error(`custom query "${t.source}": a placeholder the scan did not place`);
    const single: Template = { source: t.source, parts: [p], labels: [p.label], literal: false };
    out += renderTemplate(single, labels, (v) => escapePromqlString(context === 'regex' ? escapeRegex(v) : v));
  }
  return out;
}
