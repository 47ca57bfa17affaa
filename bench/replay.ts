/**
 * `rollguard replay` of 30 days of a 50-service fleet (test/support/backfill-fleet.ts) against
 * Debian's prometheus, backfilled with promtool: the history is generated and backfilled first
 * (timed apart), then the CLI is run as a user runs it (`node dist/main.js replay ... --format
 * json --out FILE`) three times, each timed from start to exit. Target: within a minute.
 * No assertions on time.
 *   npx tsx bench/replay.ts [--services 50] [--runs 3]
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { startBackfilled } from '../test/support/backfill.js';
import { FLEET_FROM, FLEET_TO, fleetScenario } from '../test/support/backfill-fleet.js';
import { RULES_YAML } from '../test/support/backfill-scenario.js';
import { log, machine, ROOT, round, writeResult } from './lib.js';

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const SERVICES = arg('services', 50);
const RUNS = arg('runs', 3);

function run(cmd: string, args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, stderr }));
  });
}

const m = machine();
if (!existsSync(join(ROOT, 'dist/main.js'))) {
  log('dist/main.js missing: npm run build');
  const b = await run('npm', ['run', 'build', '--silent']);
  if (b.code !== 0) throw new Error(`npm run build failed: ${b.stderr}`);
}

log(`generating and backfilling 30 days of ${SERVICES} services`);
const g0 = performance.now();
const scenario = fleetScenario(SERVICES);
const backfilled = await startBackfilled(scenario);
const prepareMs = performance.now() - g0;
log(`${backfilled.samples} samples, ${backfilled.alerts.length} firing intervals written; generated, backfilled and started in ${Math.round(prepareMs / 1000)} s`);

const dir = await mkdtemp(join(tmpdir(), 'rollguard-bench-replay-'));
try {
  const rules = join(dir, 'rules.yaml');
  await writeFile(rules, RULES_YAML);
  const args = ['dist/main.js', 'replay', '--prometheus', backfilled.prometheus.url, '--from', new Date(FLEET_FROM).toISOString(), '--to', new Date(FLEET_TO).toISOString(), '--rules', rules, '--format', 'json', '--out', join(dir, 'report.json')];
  const runs: Array<{ wallMs: number; exit: number | null }> = [];
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  let report: any;
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    const r = await run(process.execPath, args);
    const wallMs = performance.now() - t0;
    if (r.code !== 0) throw new Error(`replay exited ${r.code}: ${r.stderr}`);
    runs.push({ wallMs: round(wallMs, 0), exit: r.code });
    report = JSON.parse(await readFile(join(dir, 'report.json'), 'utf8'));
    log(`run ${i + 1}: ${Math.round(wallMs)} ms, ${report.queries} queries, ${report.summary.alerts} alerts, ${report.summary.rollbacks} rollbacks`);
  }
  const walls = runs.map((r) => r.wallMs).sort((a, b) => a - b);
  const rows = report.alerts.reduce((n: number, a: { rows: unknown[] }) => n + a.rows.length, 0);
  writeResult('replay', {
    machine: m,
    command: `node ${args.join(' ').replace(backfilled.prometheus.url, 'http://127.0.0.1:PORT').replaceAll(dir, 'DIR')}`,
    settings: { services: SERVICES, days: 30, runs: RUNS, rules: 'test/support/backfill-scenario.ts RULES_YAML (5 rules)' },
    history: { samples: backfilled.samples, firingIntervalsWritten: backfilled.alerts.length, prepareMs: round(prepareMs, 0) },
    replay: {
      wallMs: { min: walls[0], median: walls[Math.floor(walls.length / 2)], max: walls[walls.length - 1] },
      reportedElapsedMs: report.elapsedMs,
      queries: report.queries,
      alerts: report.summary.alerts,
      rows,
      rollbacks: report.summary.rollbacks,
      outcomes: report.summary.outcomes,
      blockedByGuard: report.summary.blockedByGuard,
    },
    targetMet: walls[walls.length - 1]! < 60_000,
  });
} finally {
  await rm(dir, { recursive: true, force: true });
  await backfilled.stop();
}
