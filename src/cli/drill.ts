import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import type { Fault } from '../drills/fault.js';
import { LINK_TITLES, type LinkName } from '../drills/links.js';
import type { DrillRecord } from '../drills/store.js';
import { DRILL_KINDS } from '../drills/workload.js';
import { CliError, EXIT, shape } from './client.js';
import { runGroup, who, type CommandEnv, type CommandSpec } from './command.js';
import { cell, clip, fields, relative, render, table } from './format.js';
import { limitValue, parseTarget, recordCommands } from './record-commands.js';

/**
 * `rollguard drill run|list|get|report`: rollback drills through the API. `run` starts one (admin
 * token), follows it link by link on stderr and prints its report; it exits 0 when the drill
 * passed and 10 when it failed, so a scheduled job fails with the drill.
 */

/** The fault from the command line: `image [IMAGE]`, `crash`, `env NAME=VALUE`, `patch FILE` (YAML or JSON of {spec: {template: …}}). */
export function parseFault(args: string[], container: string | undefined): Fault {
  const [kind, arg] = args;
  const c = container !== undefined ? { container } : {};
  switch (kind) {
    case 'image':
      return { kind, ...c, ...(arg !== undefined ? { image: arg } : {}) };
    case 'crash':
      if (arg !== undefined) throw new CliError(`crash takes no argument, got ${JSON.stringify(arg)}`, EXIT.usage);
      return { kind, ...c };
    case 'env': {
      const m = arg === undefined ? null : /^([^=]+)=(.*)$/s.exec(arg);
      if (!m) throw new CliError(`env: expected NAME=VALUE (a switch the application understands, e.g. FAULT_ERRORS=on), got ${JSON.stringify(arg ?? '')}`, EXIT.usage);
      return { kind, name: m[1]!, value: m[2]!, ...c };
    }
    case 'patch': {
      if (arg === undefined) throw new CliError('patch: expected FILE, a strategic-merge patch of the workload ({spec: {template: …}}, YAML or JSON)', EXIT.usage);
      if (container !== undefined) throw new CliError('--container: not for patch (the patch names its containers itself)', EXIT.usage);
      let patch: unknown;
      try {
        patch = parseYaml(readFileSync(arg, 'utf8'));
      } catch (err) {
        throw new CliError(`patch ${arg}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`, EXIT.usage);
      }
      return { kind, patch } as Fault;
    }
    default:
      throw new CliError(`expected a fault: image [IMAGE], crash, env NAME=VALUE or patch FILE; got ${JSON.stringify(kind ?? '')}`, EXIT.usage);
  }
}

/** What the drill commands print of a drill record, and of a page of them: checked in each answer. */
const DRILL = shape('a drill record', {
  id: 'string',
  target: 'string',
  state: 'string',
  fault: shape('a fault', { kind: 'string', summary: 'string' }),
  before: shape('a pre-drill revision', { revision: 'number', images: 'array' }),
  links: 'object',
});
const DRILLS = shape('a list of drills', { drills: [DRILL] });

const linkLine = (d: DrillRecord, l: LinkName) => {
  const s = d.links[l]!;
  const after = d.faultAt !== undefined ? `+${((s.at - d.faultAt) / 1000).toFixed(1)}s` : '';
  return `${new Date(s.at).toISOString().slice(11, 19)}  ${after.padStart(7)}  ${LINK_TITLES[l]}: ${clip(s.detail, 140)}`;
};

const run: CommandSpec = {
  name: 'drill run',
  usage: 'KIND/NAMESPACE/NAME FAULT [ARG] [--deadline 5m] [--container NAME] [--detach]',
  summary: 'Breaks a workload on purpose and follows rollguard rolling it back, link by link; prints the drill report.',
  details: [
    'FAULT: image [IMAGE] (a tag that cannot be pulled), crash (exits at start), env NAME=VALUE (a switch the app understands),',
    '  patch FILE (a strategic-merge patch of {spec: {template: …}}, YAML or JSON).',
    'Only in the namespaces of DRILL_NAMESPACES; needs the admin token. A drill that does not pass restores the workload itself.',
    'Exits 0 when the drill passed, 10 when it failed, 9 when rollguard refused it under its settings (DRILL_NAMESPACES…).',
  ],
  options: {
    deadline: { type: 'string', value: 'DURATION', help: "fault to recovered, e.g. 5m (default: the runbook's 5 minutes)" },
    container: { type: 'string', value: 'NAME', help: 'the container the fault changes (default: the first)' },
    detach: { type: 'boolean', help: 'start the drill and return (follow it with rollguard drill get ID)' },
    by: { type: 'string', value: 'NAME', help: 'who runs the drill, kept in its record (default: the local user name)' },
  },
  args: [2, 3],
  async run({ args, values, client, io, output, signal }) {
    const target = parseTarget(args[0]!, DRILL_KINDS, 'Deployment/staging/web', (kind) => `a drill breaks a ${DRILL_KINDS.join(', ')}, not ${JSON.stringify(kind)}`);
    const fault = parseFault(args.slice(1), values.container as string | undefined);
    const body = { target, fault, requestedBy: who(values), ...(typeof values.deadline === 'string' ? { deadline: values.deadline } : {}) };
    let d = await client.post<DrillRecord>('/v1/drills', body, DRILL);
    io.err(`drill ${d.id} started on ${d.target}: ${d.fault.summary} (pre-drill revision ${d.before.revision}, deadline ${d.deadlineMs / 1000}s)`);
    if (values.detach) {
      io.out(render(output, d, () => `${d.id} running (rollguard drill get ${d.id} follows it; rollguard drill report ${d.id} when it ends)`));
      return EXIT.ok;
    }
    const shown = new Set<string>();
    const show = () => {
      for (const l of Object.keys(LINK_TITLES) as LinkName[]) {
        if (d.links[l] && !shown.has(l)) {
          shown.add(l);
          io.err(`  ${linkLine(d, l)}`);
        }
      }
    };
    show();
    while (d.state === 'running') {
      if (signal?.aborted) {
        io.err(`stopped following; drill ${d.id} goes on in rollguard (rollguard drill get ${d.id})`);
        return EXIT.ok;
      }
      await new Promise((r) => setTimeout(r, 1000));
      d = await client.get<DrillRecord>(`/v1/drills/${d.id}`, {}, DRILL);
      show();
    }
    io.err(`${cell(`drill ${d.id} ${d.state}: ${d.result?.message ?? ''}`)}${d.restore ? `\n${cell(`restore: ${d.restore.outcome}: ${d.restore.message}`)}` : ''}`);
    const report = output === 'table' ? await client.text(`/v1/drills/${d.id}/report`) : '';
    io.out(render(output, d, () => report.trimEnd()));
    return d.state === 'passed' ? EXIT.ok : EXIT.drillFailed;
  },
};

const list: CommandSpec = {
  name: 'drill list',
  usage: '[--target KIND/NAMESPACE/NAME] [--limit N]',
  summary: 'Lists drills, newest first.',
  options: {
    target: { type: 'string', value: 'TARGET', help: 'only drills of this target, e.g. Deployment/staging/web' },
    limit: { type: 'string', value: 'N', help: 'at most N drills (default 100)' },
  },
  args: [0, 0],
  async run({ values, client, io, output, now }) {
    const limit = limitValue(values);
    const res = await client.get<{ drills: DrillRecord[] }>('/v1/drills', { target: values.target as string | undefined, limit }, DRILLS);
    const human = () =>
      res.drills.length === 0
        ? 'no drills'
        : table(
            ['ID', 'TARGET', 'STATE', 'FAULT', 'BROKE AT', 'AGE'],
            res.drills.map((d) => [d.id, d.target, d.state, d.fault.kind, d.result?.link ?? '-', relative(d.createdAt, now()).replace(/ ago$/, '')]),
          );
    io.out(render(output, res, human));
    return EXIT.ok;
  },
};

const { get, report } = recordCommands<DrillRecord>({
  group: 'drill',
  noun: 'drill',
  base: '/v1/drills',
  id: /^dr-[a-z0-9]{1,40}$/,
  example: 'dr-1a2b3c…',
  shape: DRILL,
  get: {
    summary: 'Shows one drill: each link of the chain with its time, the result and the restore.',
    describe: (d, now) => {
      const pairs: Array<[string, string]> = [
        ['ID', d.id],
        ['Target', d.target],
        ['State', d.state],
        ['Fault', d.fault.summary],
        ['Requested', `by ${d.requestedBy} ${relative(d.createdAt, now)}`],
        ['Deadline', `${d.deadlineMs / 1000}s from the fault`],
        ['Pre-drill', `revision ${d.before.revision} (${d.before.images.join(', ')})`],
      ];
      if (d.rollback) pairs.push(['Rollback', d.rollback]);
      if (d.result) pairs.push(['Result', d.result.message]);
      if (d.restore) pairs.push(['Restore', `${d.restore.outcome}: ${d.restore.message}`]);
      const seen = (Object.keys(LINK_TITLES) as LinkName[]).filter((l) => d.links[l]).map((l) => `  ${linkLine(d, l)}`);
      return [fields(pairs), '', 'Links:', ...(seen.length ? seen : ['  none yet'])].join('\n');
    },
  },
  report: { summary: "Prints a drill's report (markdown, the incident report's layout)." },
});

export const DRILL_COMMANDS: CommandSpec[] = [run, list, get, report];

export function drillCommand(argv: string[], env: CommandEnv): Promise<number> {
  return runGroup('drill', DRILL_COMMANDS, argv, env);
}
