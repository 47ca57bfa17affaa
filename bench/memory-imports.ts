/**
 * Where rollguard's idle RSS comes from: a fresh `node` per step importing one more of its
 * dependencies (then the built app and the CLI module, which import everything), RSS after a GC.
 *   npx tsx bench/memory-imports.ts        (needs npm run build for dist/)
 * Writes $BENCH_OUT/memory-imports.json. No assertions.
 */
import { execFileSync } from 'node:child_process';
import { log, machine, ROOT, writeResult } from './lib.js';

const STEPS: [string, string][] = [
  ['node, nothing imported', ''],
  ['fastify', 'fastify'],
  ['zod', 'zod'],
  ['pino', 'pino'],
  ['prom-client', 'prom-client'],
  ['ioredis', 'ioredis'],
  ['yaml', 'yaml'],
  ['@kubernetes/client-node', '@kubernetes/client-node'],
  ['dist/kube/client-node.js (the client as the build bundles it: what rollguard loads with a cluster)', './dist/kube/client-node.js'],
  ['all of the above', 'fastify,zod,pino,prom-client,ioredis,yaml,@kubernetes/client-node'],
  ['dist/app.js (buildApp and its imports)', './dist/app.js'],
  ['dist/main.js (the CLI: everything serve loads)', './dist/main.js'],
];

function rssAfter(mods: string): { rssMb: number; heapUsedMb: number } {
  const imports = mods ? mods.split(',').map((m) => `await import(${JSON.stringify(m)});`).join('') : '';
  const code = `${imports} globalThis.gc(); await new Promise(r => setTimeout(r, 300)); globalThis.gc(); const m = process.memoryUsage(); console.log(JSON.stringify({ rss: m.rss, heapUsed: m.heapUsed }));`;
  const out = execFileSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', code], { cwd: ROOT, encoding: 'utf8' });
  const last = out.trim().split('\n').pop()!;
  const m = JSON.parse(last) as { rss: number; heapUsed: number };
  return { rssMb: Math.round(m.rss / 2 ** 20 * 10) / 10, heapUsedMb: Math.round(m.heapUsed / 2 ** 20 * 10) / 10 };
}

const rows = STEPS.map(([what, mods]) => {
  // median of 3 fresh processes
  const rs = [rssAfter(mods), rssAfter(mods), rssAfter(mods)].sort((a, b) => a.rssMb - b.rssMb);
  const r = rs[1]!;
  log(`${what}: RSS ${r.rssMb} MB, heap used ${r.heapUsedMb} MB`);
  return { what, ...r };
});
writeResult('memory-imports', { benchmark: 'memory-imports', machine: machine(), rows });
