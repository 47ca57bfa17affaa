/** What a command writes to: lines for stdout and stderr (tests pass collectors). */
export interface CliIo {
  out: (s: string) => void;
  err: (s: string) => void;
}

/** The process's own stdout and stderr. */
export const processIo: CliIo = { out: (s) => process.stdout.write(`${s}\n`), err: (s) => process.stderr.write(`${s}\n`) };

/** Rule paths when a command is given none (the service's RULES_PATH default). */
export const DEFAULT_RULE_PATHS = ['rules'];
