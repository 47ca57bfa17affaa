import { Document, visit } from 'yaml';
import { escapeControls, hasControls, oneLine } from '../plain-text.js';

/** How a command prints: aligned tables for people (the default), or the API's JSON / YAML for scripts. */
export const OUTPUTS = ['table', 'json', 'yaml'] as const;
export type Output = (typeof OUTPUTS)[number];

/**
 * A duration as people read it, the way kubectl prints ages (k8s.io/apimachinery
 * pkg/util/duration HumanDuration): 45s, 5m30s, 95m, 3h20m, 20h, 2d4h, 17d, 1y30d.
 */
export function humanDuration(ms: number): string {
  const s = Math.trunc(ms / 1000);
  if (s < -1) return '<invalid>';
  if (s < 0) return '0s';
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 10) return s % 60 === 0 ? `${m}m` : `${m}m${s % 60}s`;
  if (m < 180) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 8) return m % 60 === 0 ? `${h}h` : `${h}h${m % 60}m`;
  if (h < 48) return `${h}h`;
  if (h < 192) return h % 24 === 0 ? `${Math.floor(h / 24)}d` : `${Math.floor(h / 24)}d${h % 24}h`;
  const d = Math.floor(h / 24);
  if (d < 365 * 2) return `${d}d`;
  const y = Math.floor(d / 365);
  if (y < 8) return d % 365 === 0 ? `${y}y` : `${y}y${d % 365}d`;
  return `${y}y`;
}

/** "5m ago" for a past time, "in 25m" for a future one (approval deadlines), "-" for none. */
export function relative(at: number | undefined, now: number): string {
  if (at === undefined || !Number.isFinite(at)) return '-';
  return at <= now ? `${humanDuration(now - at)} ago` : `in ${humanDuration(at - now)}`;
}

/**
 * Columns padded to their widest cell and three spaces apart, as kubectl prints; the last column is
 * never padded. Each cell is folded to one line (a cell holds text from alerts and records: a line
 * break in it would start a row of its own).
 */
export function table(headers: string[], rows: string[][]): string {
  const all = [headers, ...rows].map((r) => r.map(cell));
  const widths = headers.map((_, i) => Math.max(...all.map((r) => width(r[i] ?? ''))));
  return all
    .map((r) => r.map((c, i) => (i === r.length - 1 ? c : c + ' '.repeat(widths[i]! - width(c)))).join('   ').trimEnd())
    .join('\n');
}

/**
 * `key: value` lines with the values aligned, for one object (rollbacks get, status). Each value is
 * folded to one line: it holds text from alerts and records (an alertname, a reason), and a line
 * break in it would start a line that reads as a field of its own (a forged `Outcome:`). Until
 * 2026-12-07 values were printed with their line breaks.
 */
export function fields(pairs: Array<[string, string]>): string {
  const w = Math.max(...pairs.map(([k]) => width(k))) + 1;
  return pairs.map(([k, v]) => `${`${cell(k)}:`.padEnd(w + 1)}${cell(v)}`.trimEnd()).join('\n');
}

/** Line breaks of any kind: CR LF, LF, CR, NEL, LS, PS, and the vertical tab and form feed. */
const LINE_BREAK = /\s*(?:\r\n|[\n\r\v\f\u0085\u2028\u2029])\s*/g;

/** One line: each line break (with the blanks around it) one space, every other control character a space. */
export function cell(s: string): string {
  return oneLine(s.replace(LINE_BREAK, ' '));
}

/** One line of at most `max` characters (line breaks folded, controls made spaces), with … when cut. */
export function clip(s: string, max: number): string {
  const one = cell(s);
  return one.length <= max ? one : `${one.slice(0, max - 1)}…`;
}

/** `\u0085`: a character as a JSON (and YAML double-quoted) escape. */
const unicodeEscape = (c: string) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;

/**
 * JSON text of `data` in which every control character (C1, DEL, U+2028/U+2029 and the bidirectional
 * formatting characters, which JSON.stringify leaves as they are) is a \uXXXX escape: the text is
 * terminal-safe and parses back to exactly `data`. Outside strings, JSON text holds none of them, so
 * each one replaced is inside a string. Until 2026-12-07 the CLI's terminal filter turned them into
 * spaces, changing the data (a label `api\u0085x` read back as `api x`).
 */
export function jsonText(data: unknown, indent?: number): string {
  return escapeControls(JSON.stringify(data, null, indent) ?? 'null', unicodeEscape);
}

/**
 * YAML text of `data` that reads back to exactly `data`, with every string holding a control
 * character other than the line feed (a tab too) written as a double-quoted scalar, in which each
 * such character is a \uXXXX escape: the yaml library would print a tab in a plain scalar and a
 * U+0085 or U+202E as it is, both of which the terminal filter turns into spaces. Double-quoted too:
 * a string holding a byte order mark (U+FEFF opening the text is read as the stream's mark and
 * dropped: a first key `\ufeffk` read back as `k`), one with other whitespace than the space, the
 * tab and the line feed at either end (a no-break space, U+3000: whatever trims the text drops
 * them), and one whose line breaks at its end the library would keep with a `|+` block, which the
 * end of the text cuts short. Only the one line feed the library ends the text with is taken off
 * (io.out writes it back). Until 2026-12-07 the text was trimmed, which changed the data: `x\n\n`
 * read back as `x\n`, `api\u00a0` as `api`, a lone U+FEFF as null.
 */
export function yamlText(data: unknown): string {
  const doc = new Document(data);
  visit(doc, {
    Scalar(_key, node) {
      if (typeof node.value === 'string' && mustQuote(node.value)) node.type = 'QUOTE_DOUBLE';
    },
  });
  // each control character left is inside one of those double-quoted scalars, where \uXXXX is an escape
  const text = escapeControls(doc.toString({ lineWidth: 0 }), unicodeEscape);
  return text.endsWith('\n') ? text.slice(0, -1) : text;
}

/** Whitespace as JavaScript's trim() sees it, but for the space, the tab and the line feed (YAML's own). */
const OTHER_SPACE_AT_ENDS = /^[^\S \t\n]|[^\S \t\n]$/;

function mustQuote(s: string): boolean {
  if (hasControls(s) || s.includes('\ufeff') || OTHER_SPACE_AT_ENDS.test(s)) return true;
  // the library keeps line breaks at the end with `|+` when there is more than the one last line feed
  const tail = /[ \n]*$/.exec(s)![0];
  return tail.includes('\n') && (tail !== '\n' || tail === s);
}

/** The API's answer as JSON or YAML, for scripts; `human` renders it for people. */
export function render(output: Output, data: unknown, human: () => string): string {
  if (output === 'json') return jsonText(data, 2);
  if (output === 'yaml') return yamlText(data);
  return human();
}

/** Visible width: code points, so that an é or a → takes one column. */
function width(s: string): number {
  return [...s].length;
}
