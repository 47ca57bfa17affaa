import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { parseArgs } from 'node:util';
import { ApiClient, CliError, EXIT } from './client.js';
import { clip, OUTPUTS, type Output } from './format.js';
import { terminalSafe, type CliIo } from './io.js';

/**
 * One API command (`rollguard rollbacks list`, `status`, …): its usage, options and body. run()
 * parses the command line with node's parseArgs, answers --help, builds the API client from
 * --url / ROLLGUARD_URL and ROLLGUARD_TOKEN / --token-file, and turns every CliError into its
 * message on stderr and its exit code.
 */
export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  /** shown in --help after the option */
  value?: string;
  help: string;
}

export interface CommandEnv {
  io: CliIo;
  env: Record<string, string | undefined>;
  now: () => number;
  /** ends long-running commands (rollbacks watch): SIGINT in main.ts, the test in tests */
  signal?: AbortSignal;
  fetch?: typeof fetch;
}

export interface CommandInput {
  values: Record<string, string | boolean | undefined>;
  args: string[];
  output: Output;
  client: ApiClient;
  io: CliIo;
  now: () => number;
  signal?: AbortSignal;
}

export interface CommandSpec {
  /** e.g. "rollbacks approve" */
  name: string;
  /** the arguments after the name, e.g. "ID [--comment TEXT]" */
  usage: string;
  summary: string;
  /** more lines of --help */
  details?: string[];
  options?: Record<string, OptionSpec>;
  /** positional arguments: [min, max] */
  args: [number, number];
  run(input: CommandInput): Promise<number>;
}

export const DEFAULT_URL = 'http://127.0.0.1:9095';

const COMMON: Record<string, OptionSpec> = {
  url: { type: 'string', value: 'URL', help: `rollguard's URL (default: ROLLGUARD_URL, else ${DEFAULT_URL})` },
  'token-file': { type: 'string', value: 'FILE', help: 'a file holding the bearer token (default: ROLLGUARD_TOKEN)' },
  output: { type: 'string', short: 'o', value: 'FORMAT', help: 'table (default), json or yaml' },
  timeout: { type: 'string', value: 'SECONDS', help: 'per request (default 10)' },
  help: { type: 'boolean', short: 'h', help: 'this help' },
};

export const EXIT_CODES_HELP = [
  'exit codes: 0 done; 1 server error; 2 bad command line; 3 server unreachable or a redirect (--url, ROLLGUARD_URL);',
  '  4 token missing or refused (ROLLGUARD_TOKEN, --token-file); 5 no such rollback; 6 not in a state',
  '  that allows it (409); 7 request refused as invalid (400); 8 status: store or Prometheus down;',
  '  9 refused under the server\'s settings (422, e.g. DRILL_NAMESPACES); 10 drill run: the drill failed',
];

export function helpText(spec: CommandSpec): string {
  const opts = { ...(spec.options ?? {}), ...COMMON };
  const flag = (name: string, o: OptionSpec) => `${o.short ? `-${o.short}, ` : '    '}--${name}${o.value ? ` ${o.value}` : ''}`;
  const rows = Object.entries(opts).map(([n, o]) => [flag(n, o), o.help] as const);
  const w = Math.max(...rows.map(([f]) => f.length)) + 2;
  return [
    `usage: rollguard ${spec.name} ${spec.usage}`.trimEnd(),
    '',
    spec.summary,
    ...(spec.details ?? []),
    '',
    'options:',
    ...rows.map(([f, h]) => `  ${f.padEnd(w)}${h}`),
    '',
    ...EXIT_CODES_HELP,
  ].join('\n');
}

export async function runCommand(spec: CommandSpec, argv: string[], env: CommandEnv): Promise<number> {
  const io = terminalSafe(env.io);
  const opts = { ...(spec.options ?? {}), ...COMMON };
  let values: Record<string, string | boolean | undefined>;
  let args: string[];
  try {
    const parsed = parseArgs({
      args: argv,
      options: Object.fromEntries(Object.entries(opts).map(([n, o]) => [n, { type: o.type, ...(o.short ? { short: o.short } : {}) }])),
      allowPositionals: true,
      strict: true,
    });
    values = parsed.values as Record<string, string | boolean | undefined>;
    args = parsed.positionals;
  } catch (err) {
    io.err(`rollguard ${spec.name}: ${err instanceof Error ? err.message.replace(/\. To specify a positional.*$/s, '').replace(/\s*\n\s*/g, ' ') : String(err)} (see rollguard ${spec.name} --help)`);
    return EXIT.usage;
  }
  if (values.help) {
    io.out(helpText(spec));
    return EXIT.ok;
  }
  try {
    if (args.length < spec.args[0]) throw new CliError(`missing argument: usage: rollguard ${spec.name} ${spec.usage}`, EXIT.usage);
    if (args.length > spec.args[1]) throw new CliError(`unexpected argument ${JSON.stringify(args[spec.args[1]])}: usage: rollguard ${spec.name} ${spec.usage}`, EXIT.usage);
    const output = (values.output ?? 'table') as Output;
    if (!OUTPUTS.includes(output)) throw new CliError(`--output: expected ${OUTPUTS.join(', ')}, got ${JSON.stringify(values.output)}`, EXIT.usage);
    const client = new ApiClient({ ...where(values, env.env), ...token(values, env.env), timeoutMs: seconds(values.timeout, '--timeout', 10) * 1000, ...(env.fetch ? { fetch: env.fetch } : {}) });
    return await spec.run({ values, args, output, client, io, now: env.now, ...(env.signal ? { signal: env.signal } : {}) });
  } catch (err) {
    if (err instanceof CliError) {
      io.err(`rollguard ${spec.name}: ${err.message}`);
      return err.code;
    }
    // a field of the answer not of the type the view prints (a rule that is a number, a guard that
    // is null: the shape checks cover the fields every view needs, not each optional one): said,
    // naming the URL setting, not a stack trace
    if (err instanceof TypeError) {
      io.err(`rollguard ${spec.name}: the answer holds a field that is not what this command prints (${clip(err.message, 200)}): check that --url or ROLLGUARD_URL is rollguard's API (-o json shows the answer as it came)`);
      return EXIT.server;
    }
    throw err;
  }
}

/** A command group (`rollguard rollbacks …`): dispatches to its commands, or lists them. */
export async function runGroup(group: string, commands: CommandSpec[], argv: string[], env: CommandEnv): Promise<number> {
  const [sub, ...rest] = argv;
  const cmd = commands.find((c) => c.name === `${group} ${sub}`);
  if (cmd) return runCommand(cmd, rest, env);
  const w = Math.max(8, ...commands.map((c) => c.name.length - group.length - 1)) + 2;
  const list = [`usage: rollguard ${group} COMMAND [options]`, '', 'commands:', ...commands.map((c) => `  ${c.name.slice(group.length + 1).padEnd(w)}${c.summary}`), '', `rollguard ${group} COMMAND --help shows each command's options.`].join('\n');
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
    env.io.out(list);
    return sub === undefined ? EXIT.usage : EXIT.ok;
  }
  env.io.err(`rollguard ${group}: unknown command ${JSON.stringify(sub)}\n\n${list}`);
  return EXIT.usage;
}

function where(values: CommandInput['values'], env: CommandEnv['env']): { url: string; urlSource: string } {
  if (typeof values.url === 'string') return { url: values.url, urlSource: '--url' };
  if (env.ROLLGUARD_URL) return { url: env.ROLLGUARD_URL, urlSource: 'ROLLGUARD_URL' };
  return { url: DEFAULT_URL, urlSource: 'the default' };
}

/**
 * Whitespace or a control character inside a token: most often a token file's two tokens (a
 * rotation) pasted into one value. Refused before anything is sent, and never echoed: fetch would
 * refuse such a header with the whole value, both tokens, in its message.
 */
const NOT_ONE_TOKEN = /[\s\x00-\x1f\x7f]/;

function token(values: CommandInput['values'], env: CommandEnv['env']): { token?: string; tokenSource?: string } {
  const file = values['token-file'];
  if (typeof file === 'string') {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new CliError(`--token-file ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`, EXIT.usage);
    }
    const t = text.trim();
    if (t === '') throw new CliError(`--token-file ${file} is empty`, EXIT.usage);
    if (NOT_ONE_TOKEN.test(t)) throw new CliError(`--token-file ${file} holds more than one token, or whitespace or control characters inside one (the server's token files may hold one per line; give the CLI one)`, EXIT.usage);
    return { token: t, tokenSource: `--token-file ${file}` };
  }
  const t = env.ROLLGUARD_TOKEN?.trim();
  if (!t) return {};
  if (NOT_ONE_TOKEN.test(t)) throw new CliError('ROLLGUARD_TOKEN holds more than one token, or whitespace or control characters inside one (the server\'s token files may hold one per line; give the CLI one)', EXIT.usage);
  return { token: t, tokenSource: 'ROLLGUARD_TOKEN' };
}

/** A positive number of seconds from a flag (`10`, `2.5`); `fallback` when unset. */
export function seconds(v: string | boolean | undefined, flag: string, fallback: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (typeof v !== 'string' || v.trim() === '' || !Number.isFinite(n) || n <= 0) throw new CliError(`${flag}: expected a number of seconds above 0, got ${JSON.stringify(v)}`, EXIT.usage);
  return n;
}

/** Who acts, as the record will name them: --by, else the local user name. */
export function who(values: CommandInput['values']): string {
  if (typeof values.by === 'string' && values.by.trim()) return values.by.trim();
  try {
    return userInfo().username || 'cli';
  } catch {
    return 'cli';
  }
}
