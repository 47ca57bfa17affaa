/**
 * Text from alerts (labels, annotations) is data that people read: in Slack, in the markdown report,
 * in a terminal. Its control characters are never passed on: a line break would forge a line of its
 * own (a second bullet, a heading), an escape sequence would drive the reader's terminal (move the
 * cursor, rewrite a line, set the clipboard).
 */

/**
 * C0 controls (line breaks included), DEL, C1 controls, Unicode's line and paragraph separators, and
 * its bidirectional formatting characters (U+061C, U+200E, U+200F, the embeddings and overrides
 * U+202A-U+202E, the isolates U+2066-U+2069): an override shows the text after it reversed, so a
 * target or a link could read as another in Slack or a terminal ("Trojan Source"). Until
 * 2026-12-07 the bidirectional ones were passed on.
 */
const BIDI_AND_SEPARATORS = '\\u2028\\u2029\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069';
const ANY_CONTROL = new RegExp(`[\\u0000-\\u001f\\u007f-\\u009f${BIDI_AND_SEPARATORS}]`, 'g');
/** The same, but for the line feed. */
const CONTROL_BUT_NEWLINE = new RegExp(`[\\u0000-\\u0009\\u000b-\\u001f\\u007f-\\u009f${BIDI_AND_SEPARATORS}]`, 'g');

/** One line of text: every control character, line breaks included, becomes a space. */
export function oneLine(text: string): string {
  return text.replace(ANY_CONTROL, ' ');
}

/** Lines of text: every control character but the line feed becomes a space (a carriage return too). */
export function withoutControls(text: string): string {
  return text.replace(CONTROL_BUT_NEWLINE, ' ');
}

/**
 * Every control character but the line feed replaced by `escape(it)`, for formats that can write
 * them as escapes (\u0085 in JSON and in YAML's double-quoted scalars), so that data printed for
 * scripts is terminal-safe and still reads back exactly.
 */
export function escapeControls(text: string, escape: (char: string) => string): string {
  return text.replace(CONTROL_BUT_NEWLINE, escape);
}

/** Whether `text` holds a control character other than the line feed. */
export function hasControls(text: string): boolean {
  CONTROL_BUT_NEWLINE.lastIndex = 0;
  const found = CONTROL_BUT_NEWLINE.test(text);
  CONTROL_BUT_NEWLINE.lastIndex = 0;
  return found;
}
