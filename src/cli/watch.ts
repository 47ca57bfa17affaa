import type { RollbackRecord } from '../engine/record.js';
import { parseDuration } from '../rules/duration.js';
import { CliError, EXIT } from './client.js';
import { seconds, type CommandSpec } from './command.js';
import { cell, clip, jsonText, yamlText } from './format.js';
import { FILTER_OPTIONS, RECORDS, recordFilter, stateText, trigger } from './records.js';

/** Polls this many of the newest records each time: more changes than this between two polls are not all shown. */
const PAGE = 100;
/** Consecutive failed polls (server unreachable or failing) after which watch gives up. */
const MAX_FAILURES = 5;

const COLUMNS: Array<[string, number]> = [
  ['TIME', 8],
  ['ID', 25],
  ['TARGET', 36],
  ['STATE', 18],
  ['TRIGGER', 24],
];

/** One line: each cell is folded to one (a target or a trigger from a record could hold a line break). */
function line(cells: string[]): string {
  return cells.map(cell).map((c, i) => (i < COLUMNS.length ? c.padEnd(COLUMNS[i]![1]) : c)).join('   ').trimEnd();
}

function clock(t: number): string {
  return new Date(t).toTimeString().slice(0, 8);
}

/**
 * `rollguard rollbacks watch`: follows records as they are created and change (as `kubectl get -w`
 * does), one line per change. The API has no push channel, so the newest records are polled every
 * --interval seconds; a change is an updatedAt that moved. JSON output is one record per line
 * (NDJSON), YAML one document per record. Ends on Ctrl-C (exit 0); a server lost for
 * MAX_FAILURES polls in a row ends it with that error's exit code.
 */
export const watchCommand: CommandSpec = {
  name: 'rollbacks watch',
  usage: '[--state STATE] [--target TARGET] [--since DURATION] [--interval SECONDS]',
  summary: 'Follows rollback records as they are created and change, one line per change, until Ctrl-C.',
  details: ['With -o json: one record per line (NDJSON); with -o yaml: one document per record.'],
  options: {
    ...FILTER_OPTIONS,
    since: { type: 'string', value: 'DURATION', help: 'first show records changed this long ago or less (e.g. 30m; default: only new changes)' },
    interval: { type: 'string', value: 'SECONDS', help: 'how often to ask (default 2)' },
  },
  args: [0, 0],
  async run({ values, client, io, output, now, signal }) {
    const { state, target } = recordFilter(values);
    const everyMs = seconds(values.interval, '--interval', 2) * 1000;
    let sinceMs = 0;
    if (values.since !== undefined) {
      try {
        sinceMs = parseDuration(String(values.since));
      } catch {
        throw new CliError(`--since: expected a duration like 30s, 15m or 2h, got ${JSON.stringify(values.since)}`, EXIT.usage);
      }
    }
    const from = now() - sinceMs;
    const seen = new Map<string, number>();
    let first = true;
    let failures = 0;
    if (output === 'table') io.out(line([...COLUMNS.map(([h]) => h), 'LAST STEP']));
    while (!signal?.aborted) {
      let recs: RollbackRecord[];
      try {
        recs = (await client.get<{ rollbacks: RollbackRecord[] }>('/v1/rollbacks', { state, target, limit: PAGE }, RECORDS)).rollbacks;
        failures = 0;
      } catch (err) {
        if (signal?.aborted) break;
        if (!(err instanceof CliError) || ![EXIT.unreachable, EXIT.server].includes(err.code as 1 | 3) || ++failures >= MAX_FAILURES) throw err;
        if (failures === 1) io.err(`rollguard rollbacks watch: ${err.message}; retrying every ${everyMs / 1000}s`);
        await sleep(everyMs, signal);
        continue;
      }
      const changed = recs.filter((r) => seen.get(r.id) !== r.updatedAt && (!first || r.updatedAt >= from)).sort((a, b) => a.updatedAt - b.updatedAt);
      for (const r of recs) seen.set(r.id, r.updatedAt);
      first = false;
      for (const r of changed) {
        if (output === 'json') io.out(jsonText(r));
        else if (output === 'yaml') io.out(`---\n${yamlText(r)}`);
        else {
          const last = r.timeline?.[r.timeline.length - 1];
          io.out(line([clock(r.updatedAt), r.id, r.target, stateText(r, now()), trigger(r), last ? clip(`${last.step}: ${last.message}`, 120) : '']));
        }
      }
      await sleep(everyMs, signal);
    }
    return EXIT.ok;
  },
};

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
