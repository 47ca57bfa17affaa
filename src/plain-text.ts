/**
 * Text from alerts (labels, annotations) is data that people read: in Slack, in the markdown report,
 * in a terminal. Its control characters are never passed on: a line break would forge a line of its
 * own (a second bullet, a heading), an escape sequence would drive the reader's terminal (move the
 * cursor, rewrite a line, set the clipboard).
 */

/** C0 controls (line breaks included), DEL, C1 controls, and Unicode's line and paragraph separators. */
const ANY_CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;
/** The same, but for the line feed. */
const CONTROL_BUT_NEWLINE = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u2028\u2029]/g;

/** One line of text: every control character, line breaks included, becomes a space. */
export function oneLine(text: string): string {
  return text.replace(ANY_CONTROL, ' ');
}

/** Lines of text: every control character but the line feed becomes a space (a carriage return too). */
export function withoutControls(text: string): string {
  return text.replace(CONTROL_BUT_NEWLINE, ' ');
}
