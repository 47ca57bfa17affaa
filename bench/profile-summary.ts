/**
 * Summarises a V8 .cpuprofile (node --cpu-prof): self time per function and per area (rollguard's
 * own code, each dependency, Node internals, GC, idle), so the doc can say where the time went
 * without committing the profile itself.
 *   npx tsx bench/profile-summary.ts FILE.cpuprofile [--top 25] [--from REGEX]
 * --from: from the first sample whose stack holds a script whose URL matches REGEX on (summariseProfile's `from`).
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  hitCount?: number;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  totalMs: number;
  busyMs: number;
  /** calledFrom: for natives and GC-free builtins, the JS functions that called them, by time */
  top: { function: string; where: string; selfMs: number; pctOfBusy: number; calledFrom?: string[] }[];
  areas: { area: string; selfMs: number; pctOfBusy: number }[];
  /**
   * rollguard's own functions by total time (their own and everything they called, each sample
   * counted once per function however deep the recursion): which stage of the path costs what
   */
  rollguardTotal: { function: string; where: string; totalMs: number; pctOfBusy: number }[];
}

/** Which dependency or part a script URL belongs to. */
export function area(url: string, fn: string): string {
  if (fn === '(idle)') return 'idle';
  if (fn === '(garbage collector)') return 'GC';
  if (fn === '(program)') return 'V8/native (program)';
  if (!url) return 'native/builtins';
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return nm[1]!;
  if (url.startsWith('node:')) return `node:${url.slice(5).split('/')[0]}`;
  if (/\/dist\/|\/src\//.test(url)) return 'rollguard';
  if (/\/bench\/[^/]+$/.test(url)) return `bench/${url.split('/').pop()}`;
  return url;
}

function where(url: string, line: number): string {
  if (!url) return '';
  const nm = /node_modules\/(.*)$/.exec(url);
  const short = nm ? nm[1]! : url.replace(/^file:\/\/.*?\/(dist|src)\//, '$1/');
  return `${short}:${line + 1}`;
}

/**
 * `from`: leave out every sample before the first one whose stack holds a frame of a script whose
 * URL it matches (start-up and module loading, before the first request: /secure-json-parse/ for
 * a server whose every request parses JSON). Without a match nothing is left out.
 */
export function summariseProfile(file: string, topN = 25, opts: { from?: RegExp } = {}): ProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const stackHas = (id: number, re: RegExp): boolean => {
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) if (re.test(byId.get(cur)?.callFrame.url ?? '')) return true;
    return false;
  };
  const first = opts.from ? p.samples.findIndex((id) => stackHas(id, opts.from!)) : 0;
  const selfUs = new Map<number, number>();
  // Each sample's time delta is the time until the next sample: attribute it to the sampled node.
  for (let i = Math.max(0, first); i < p.samples.length; i++) {
    const id = p.samples[i]!;
    const dt = p.timeDeltas[i + 1] ?? 0;
    selfUs.set(id, (selfUs.get(id) ?? 0) + Math.max(0, dt));
  }
  /** the nearest ancestor outside Node's own modules (the dependency or rollguard code behind a native or node: call) */
  const jsCaller = (id: number): string => {
    let nearest = '';
    for (let cur = parent.get(id); cur !== undefined; cur = parent.get(cur)) {
      const f = byId.get(cur)!.callFrame;
      if (!f.url) continue;
      const name = `${f.functionName || '(anonymous)'} ${where(f.url, f.lineNumber)}`;
      if (!f.url.startsWith('node:')) return nearest ? `${name} via ${nearest}` : name;
      nearest ||= name;
    }
    return nearest || '?';
  };
  const fns = new Map<string, { function: string; where: string; us: number; callers: Map<string, number> }>();
  const areas = new Map<string, number>();
  let totalUs = 0;
  let idleUs = 0;
  for (const [id, us] of selfUs) {
    const n = byId.get(id);
    if (!n) continue;
    const { functionName, url, lineNumber } = n.callFrame;
    const name = functionName || '(anonymous)';
    totalUs += us;
    const a = area(url, name);
    if (a === 'idle') idleUs += us;
    areas.set(a, (areas.get(a) ?? 0) + us);
    if (a === 'idle') continue;
    const key = `${name}@${url}:${lineNumber}`;
    const f = fns.get(key) ?? { function: name, where: where(url, lineNumber), us: 0, callers: new Map<string, number>() };
    f.us += us;
    if ((!url && !name.startsWith('(')) || url.startsWith('node:')) {
      const c = jsCaller(id);
      f.callers.set(c, (f.callers.get(c) ?? 0) + us);
    }
    fns.set(key, f);
  }
  // total time of rollguard's functions: each sample's time goes to every distinct function above it
  const totals = new Map<string, { function: string; where: string; us: number }>();
  for (const [id, us] of selfUs) {
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const { functionName, url, lineNumber } = byId.get(cur)!.callFrame;
      if (area(url, functionName) !== 'rollguard') continue;
      const key = `${functionName}@${url}:${lineNumber}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const t = totals.get(key) ?? { function: functionName || '(anonymous)', where: where(url, lineNumber), us: 0 };
      t.us += us;
      totals.set(key, t);
    }
  }
  const busyUs = totalUs - idleUs || 1;
  const ms = (us: number) => Math.round(us / 100) / 10;
  const pct = (us: number) => Math.round((us / busyUs) * 1000) / 10;
  return {
    totalMs: ms(totalUs),
    busyMs: ms(busyUs),
    top: [...fns.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, topN)
      .map((f) => ({
        function: f.function,
        where: f.where,
        selfMs: ms(f.us),
        pctOfBusy: pct(f.us),
        ...(f.callers.size
          ? { calledFrom: [...f.callers.entries()].sort((a, b) => b[1] - a[1]).slice(0, 3).map(([c, us]) => `${c} (${Math.round((us / f.us) * 100)}%)`) }
          : {}),
      })),
    areas: [...areas.entries()]
      .filter(([a]) => a !== 'idle')
      .sort((a, b) => b[1] - a[1])
      .map(([a, us]) => ({ area: a, selfMs: ms(us), pctOfBusy: pct(us) })),
    rollguardTotal: [...totals.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, topN)
      .map((t) => ({ function: t.function, where: t.where, totalMs: ms(t.us), pctOfBusy: pct(t.us) })),
  };
}

const isEntry = process.argv[1] !== undefined && /profile-summary\.(ts|js)$/.test(process.argv[1]);
if (isEntry) {
  const file = process.argv[2];
  if (!file) {
    process.stderr.write('usage: npx tsx bench/profile-summary.ts FILE.cpuprofile [--top 25] [--from REGEX]\n');
    process.exit(2);
  }
  const i = process.argv.indexOf('--top');
  const f = process.argv.indexOf('--from');
  const from = f > 0 ? new RegExp(process.argv[f + 1] ?? '') : undefined;
  console.log(JSON.stringify(summariseProfile(file, i > 0 ? Number(process.argv[i + 1]) : 25, from ? { from } : {}), null, 2));
}
