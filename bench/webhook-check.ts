/**
 * The webhook body's check alone, in this process: JSON.parse of the intake benchmark's 10-alert
 * batch (bench/lib.ts batchTemplate), then zod's parse of webhookPayloadSchema, or the compiled
 * check the route uses (src/http/compiled.ts), each over 2,000 distinct bodies, ten passes after
 * a warm-up, in three rounds alternating the three. Microseconds per body.
 *   npx tsx bench/webhook-check.ts
 * Writes $BENCH_OUT/webhook-check.json. No assertions on time.
 */
import { webhookPayloadSchema } from '../src/alertmanager/schema.js';
import { compiledParser } from '../src/http/compiled.js';
import { batchTemplate, fillBatch, log, machine, round, runBench, writeResult } from './lib.js';

const BODIES = 2000;
const PASSES = 10;

function measure(check: (o: unknown) => boolean, bodies: string[]): number {
  for (const b of bodies) if (!check(JSON.parse(b))) throw new Error('a bench body was refused');
  const t0 = process.hrtime.bigint();
  for (let p = 0; p < PASSES; p++) for (const b of bodies) check(JSON.parse(b));
  return Number(process.hrtime.bigint() - t0) / 1e3 / (PASSES * bodies.length);
}

async function main() {
  const tpl = batchTemplate(10);
  const bodies = Array.from({ length: BODIES }, (_, i) => fillBatch(tpl, i + 1));
  const compiled = compiledParser(webhookPayloadSchema);
  const checks: Record<string, (o: unknown) => boolean> = {
    parseOnly: () => true,
    zod: (o) => webhookPayloadSchema.safeParse(o).success,
    compiled: (o) => compiled(o).success,
  };
  const rounds: Record<string, number>[] = [];
  for (let r = 0; r < 3; r++) {
    const row: Record<string, number> = {};
    for (const [name, check] of Object.entries(checks)) row[name] = round(measure(check, bodies), 2);
    log(`round ${r + 1}: µs per body ${JSON.stringify(row)}`);
    rounds.push(row);
  }
  writeResult('webhook-check', { benchmark: 'webhook-check', machine: machine(), settings: { alertsPerBody: 10, bodies: BODIES, passes: PASSES }, usPerBody: rounds });
}

runBench('webhook-check', main);
