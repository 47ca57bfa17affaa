import { withoutControls } from '../plain-text.js';

/** What a command writes to: lines for stdout and stderr (tests pass collectors). */
export interface CliIo {
  out: (s: string) => void;
  err: (s: string) => void;
}

/** The io terminalSafe made: not wrapped again. */
const safe = new WeakSet<CliIo>();

/**
 * `io` writing no control character but the line feed: what the CLI prints holds text from alerts
 * (a record's annotations, a report, a drill's links), and an escape sequence in it would drive the
 * terminal (rewrite a line, set the clipboard). Each becomes a space.
 */
export function terminalSafe(io: CliIo): CliIo {
  // one pass: runCommand wraps the io it is given, which is the process's, already wrapped
  if (safe.has(io)) return io;
  const wrapped: CliIo = { out: (s) => io.out(withoutControls(s)), err: (s) => io.err(withoutControls(s)) };
  safe.add(wrapped);
  return wrapped;
}

/** The process's own stdout and stderr. */
export const processIo: CliIo = terminalSafe({ out: (s) => process.stdout.write(`${s}\n`), err: (s) => process.stderr.write(`${s}\n`) });

/** Rule paths when a command is given none (the service's RULES_PATH default). */
export const DEFAULT_RULE_PATHS = ['rules'];
