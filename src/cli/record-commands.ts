import { CliError, EXIT, type Shape } from './client.js';
import type { CommandInput, CommandSpec } from './command.js';
import { render } from './format.js';

/**
 * What the rollback and the drill command groups share: a record's id checked before anything is
 * sent, `get ID` (the record, for people through `describe`) and `report ID` (its markdown report),
 * `--limit N`, and a KIND/NAMESPACE/NAME target.
 */

export interface RecordCommandsSpec<R> {
  /** the command group, e.g. "drill" (rollguard drill get) */
  group: string;
  /** the record's name in messages, e.g. "drill" */
  noun: string;
  /** the API's collection: /v1/drills */
  base: string;
  /** a record id, and one as an example (dr-1a2b3c…) */
  id: RegExp;
  example: string;
  /** what a record's answer holds (its id, target and state) */
  shape: Shape;
  get: { summary: string; describe: (record: R, now: number) => string };
  report: { summary: string };
}

export function recordCommands<R>(spec: RecordCommandsSpec<R>): { id: (arg: string | undefined) => string; get: CommandSpec; report: CommandSpec } {
  const id = (arg: string | undefined): string => {
    if (!arg || !spec.id.test(arg)) throw new CliError(`expected a ${spec.noun} id like ${spec.example} (see rollguard ${spec.group} list), got ${JSON.stringify(arg ?? '')}`, EXIT.usage);
    return arg;
  };
  const get: CommandSpec = {
    name: `${spec.group} get`,
    usage: 'ID',
    summary: spec.get.summary,
    args: [1, 1],
    async run({ args, client, io, output, now }) {
      const record = await client.get<R>(`${spec.base}/${id(args[0])}`, {}, spec.shape);
      io.out(render(output, record, () => spec.get.describe(record, now())));
      return EXIT.ok;
    },
  };
  const report: CommandSpec = {
    name: `${spec.group} report`,
    usage: 'ID',
    summary: spec.report.summary,
    args: [1, 1],
    async run({ args, client, io, output }) {
      const recordId = id(args[0]);
      const md = await client.text(`${spec.base}/${recordId}/report`);
      io.out(render(output, { id: recordId, report: md }, () => md.trimEnd()));
      return EXIT.ok;
    },
  };
  return { id, get, report };
}

/** --limit N: a whole number, or unset (the server's default). */
export function limitValue(values: CommandInput['values']): string | undefined {
  const limit = values.limit as string | undefined;
  if (limit !== undefined && !/^\d+$/.test(limit)) throw new CliError(`--limit: expected a number, got ${JSON.stringify(limit)}`, EXIT.usage);
  return limit;
}

/** KIND/NAMESPACE/NAME with KIND one of `kinds` (any case); `unknownKind` words the refusal of another. */
export function parseTarget<K extends string>(arg: string, kinds: readonly K[], example: string, unknownKind: (kind: string) => string): { kind: K; namespace: string; name: string } {
  const m = /^([^/]+)\/([^/]+)\/([^/]+)$/.exec(arg);
  if (!m) throw new CliError(`expected KIND/NAMESPACE/NAME, e.g. ${example}, got ${JSON.stringify(arg)}`, EXIT.usage);
  const kind = kinds.find((k) => k.toLowerCase() === m[1]!.toLowerCase());
  if (!kind) throw new CliError(unknownKind(m[1]!), EXIT.usage);
  return { kind, namespace: m[2]!, name: m[3]! };
}
