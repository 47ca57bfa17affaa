// Shared pieces of the benchmarks: the machine, child processes, RSS sampling, /metrics reads,
// the webhook payload, percentiles and where results go. No assertions on time anywhere.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, waitFor } from '../test/support/ports.js';
import type { Store } from '../src/store/store.js';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const WEBHOOK_TOKEN = 'bench-webhook-token';
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Where a run's JSON results go (bench/run.sh sets BENCH_OUT; one file per benchmark). */
export function outDir(): string {
  const d = process.env.BENCH_OUT ?? join(os.tmpdir(), 'rollguard-bench');
  mkdirSync(d, { recursive: true });
  return d;
}

export function writeResult(name: string, result: unknown): string {
  const file = join(outDir(), `${name}.json`);
  writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
  process.stderr.write(`[bench] ${name}: results in ${file}\n`);
  return file;
}

export const log = (msg: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

export interface MachineInfo {
  date: string;
  nproc: number;
  cpu: string;
  memGiB: number;
  node: string;
  platform: string;
  loadavg: [number, number, number];
}

export function machine(): MachineInfo {
  const l = os.loadavg();
  return {
    date: new Date().toISOString(),
    nproc: os.availableParallelism(),
    cpu: os.cpus()[0]?.model.trim() ?? '?',
    memGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    platform: `${os.type()} ${os.release()}`,
    loadavg: [round(l[0]!, 2), round(l[1]!, 2), round(l[2]!, 2)],
  };
}

/** Runs `fn` over `items`, `width` at a time (the benchmarks' set-up of many objects). */
export async function pool<T>(items: T[], width: number, fn: (x: T) => Promise<void>): Promise<void> {
  let i = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (i < items.length) await fn(items[i++]!);
    }),
  );
}

export const round = (x: number, digits = 2) => {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
};

/** Nearest-rank percentile of an ascending list. */
function rank(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** Nearest-rank percentile of an unsorted list. */
export function percentile(xs: number[], p: number): number {
  return rank(Float64Array.from(xs).sort() as unknown as number[], p);
}

/** p50/p90/p99/max/mean of a list (any length: no spreading into call arguments). */
export function summary(xs: number[], digits = 2) {
  const s = Array.from(Float64Array.from(xs).sort());
  let sum = 0;
  for (const x of s) sum += x;
  return {
    n: s.length,
    p50: round(rank(s, 50), digits),
    p90: round(rank(s, 90), digits),
    p99: round(rank(s, 99), digits),
    max: round(s.length ? s[s.length - 1]! : NaN, digits),
    mean: round(sum / (s.length || 1), digits),
  };
}

/** Resident set size of a process in MB (VmRSS of /proc/PID/status), or NaN if gone. */
export function rssMb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? round(Number(m[1]) / 1024, 1) : NaN;
  } catch {
    return NaN;
  }
}

/** Samples a process' RSS every `everyMs` until stop(). */
export class RssSampler {
  private samples: number[] = [];
  private timer: NodeJS.Timeout | null = null;
  constructor(
    private readonly pid: number,
    private readonly everyMs = 100,
  ) {}
  start(): this {
    this.samples = [];
    this.take();
    this.timer = setInterval(() => this.take(), this.everyMs);
    return this;
  }
  private take() {
    const v = rssMb(this.pid);
    if (!Number.isNaN(v)) this.samples.push(v);
  }
  stop(): { peakMb: number; meanMb: number; lastMb: number; samples: number } {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.take();
    const s = this.samples;
    return {
      peakMb: s.reduce((a, b) => Math.max(a, b), 0),
      meanMb: round(s.reduce((a, b) => a + b, 0) / (s.length || 1), 1),
      lastMb: s[s.length - 1] ?? NaN,
      samples: s.length,
    };
  }
}

/** CPU time (user+system) a process has used so far, ms (from /proc/PID/stat; 0 if gone). */
export function cpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields 14 and 15 of stat (utime, stime) are at 11 and 12 after the command name
    return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
  } catch {
    return 0;
  }
}

export interface NodeProcess {
  proc: ChildProcess;
  pid: number;
  port: number;
  url: string;
  stderr: () => string;
  /** SIGTERM, then SIGKILL after graceMs; resolves with the exit code */
  stop: (graceMs?: number) => Promise<number | null>;
}

/**
 * Starts a Node process listening on a free loopback port (passed as --port and PORT) and waits
 * for GET /healthz. stdout goes to /dev/null (rollguard logs one JSON line per batch and per
 * alert at LOG_LEVEL=info; the serialisation is paid, the disk is not).
 */
export async function startNode(name: string, args: string[], env: Record<string, string>, nodeFlags: string[] = []): Promise<NodeProcess> {
  const port = await freePort();
  const proc = spawn(process.execPath, [...nodeFlags, ...args, '--host', '127.0.0.1', '--port', String(port)], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', PORT: String(port), ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  proc.stderr!.on('data', (d) => (err = (err + d).slice(-20_000)));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  const url = `http://127.0.0.1:${port}`;
  await Promise.race([
    waitFor(`${name} on ${port}`, async () => (await fetch(`${url}/healthz`)).ok, 60_000, 100),
    exited.then((code) => {
      throw new Error(`${name} exited with ${code} before listening: ${err}`);
    }),
  ]);
  return {
    proc,
    pid: proc.pid!,
    port,
    url,
    stderr: () => err,
    stop: async (graceMs = 30_000) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
      proc.kill('SIGTERM');
      const hard = setTimeout(() => proc.kill('SIGKILL'), graceMs);
      const code = await exited;
      clearTimeout(hard);
      return code;
    },
  };
}

/** rollguard serve from the build (npm run build), as in production. */
export function startRollguard(env: Record<string, string>, nodeFlags: string[] = []): Promise<NodeProcess> {
  return startNode('rollguard serve', ['dist/main.js', 'serve'], { LOG_LEVEL: 'info', WEBHOOK_TOKEN, ...env }, nodeFlags);
}

/** The bare Fastify baseline (bench/baseline-server.mjs). */
export function startBaseline(nodeFlags: string[] = []): Promise<NodeProcess> {
  return startNode('bare Fastify baseline', ['bench/baseline-server.mjs'], {}, nodeFlags);
}

/** Every sample of /metrics as { 'name{labels}': value }. */
export async function scrape(url: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

/** Sum of every sample of a metric whose labels include all of `labels`. */
export function metricSum(samples: Map<string, number>, name: string, labels: Record<string, string> = {}): number {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  let sum = 0;
  for (const [key, v] of samples) {
    const base = key.split('{')[0];
    if (base !== name) continue;
    if (want.every((w) => key.includes(w))) sum += v;
  }
  return sum;
}

/**
 * A realistic Alertmanager v4 webhook batch: the shape of
 * test/fixtures/alertmanager/firing-two-alerts.json, `size` alerts of one group (HighErrorRate
 * in one namespace, one per Deployment). `__N__` in the returned text is the batch's unique
 * part: replace it per request to get distinct fingerprints (intake dedupes on
 * fingerprint+startsAt+status).
 */
export function batchTemplate(size: number, opts: { alertname?: string; namespace?: string; startsAt?: string } = {}): string {
  const alertname = opts.alertname ?? 'HighErrorRate';
  const namespace = opts.namespace ?? 'production';
  const startsAt = opts.startsAt ?? '2026-11-23T11:06:41Z';
  const alerts = Array.from({ length: size }, (_, i) => ({
    status: 'firing',
    labels: { alertname, deployment: `svc-${i}`, namespace, service: `svc-${i}`, severity: 'critical', pod: `svc-${i}-7c9d8f6b5-x2x4z`, instance: `10.0.3.${i + 10}:8080`, job: 'kubernetes-pods' },
    annotations: { description: `svc-${i} 5xx ratio is 23%`, summary: 'Error rate above 5% for 2 minutes', runbook_url: 'https://runbooks.example/HighErrorRate' },
    startsAt,
    endsAt: '0001-01-01T00:00:00Z',
    generatorURL: 'http://prometheus.example:9090/graph?g0.expr=job%3Aerror_ratio%3Arate2m+%3E+0.05',
    fingerprint: `__N__${i.toString(16).padStart(4, '0')}`,
  }));
  return JSON.stringify({
    receiver: 'rollguard',
    status: 'firing',
    alerts,
    groupLabels: { alertname, namespace },
    commonLabels: { alertname, namespace, severity: 'critical', job: 'kubernetes-pods' },
    commonAnnotations: { summary: 'Error rate above 5% for 2 minutes' },
    externalURL: 'http://alertmanager.example:9093',
    version: '4',
    groupKey: `{}:{alertname="${alertname}", namespace="${namespace}"}`,
    truncatedAlerts: 0,
  });
}

/** The template with its unique part set (12 hex digits, so fingerprints stay 16 hex chars). */
export function fillBatch(tpl: string, n: number): string {
  return tpl.replaceAll('__N__', n.toString(16).padStart(12, '0'));
}

/** Runs a benchmark's main and exits 0, or prints the error as `bench/NAME: …` and exits 1. */
export function runBench(name: string, main: () => Promise<void>): void {
  main().then(
    () => process.exit(0),
    (err) => {
      process.stderr.write(`bench/${name}: ${err instanceof Error ? err.stack : String(err)}\n`);
      process.exit(1);
    },
  );
}

/** A rule file matching every HighErrorRate alert, one record per alert, with no Prometheus (onPrometheusDown: act). */
export function everyAlertRule(name: string): string {
  return `rules:\n${ruleEntry(name, 'HighErrorRate', 'P0')}`;
}

/** One rule of a rule file: alerts named `alertname`, their Deployment, no Prometheus needed (onPrometheusDown: act). */
export function ruleEntry(name: string, alertname: string, priority: 'P0' | 'P1' | 'P2'): string {
  return `  - name: ${name}
    match: ['alertname="${alertname}"']
    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
    trigger: { kind: error_rate, selector: { namespace: "{{ $labels.namespace }}", deployment: "{{ $labels.deployment }}" }, threshold: 0.05, for: 2m }
    priority: ${priority}
    onPrometheusDown: act
`;
}

/**
 * Counts each Store method's calls, and the round trips they cost one after another: a call made
 * while no other is in flight begins one; calls issued together (Promise.all, or in one turn)
 * share it: they are written to Redis' socket one after another and answered together.
 */
export function countingStore(inner: Store): { store: Store; counts: Map<string, number>; trips: { value: number }; reset(): void } {
  const counts = new Map<string, number>();
  const trips = { value: 0 };
  let inFlight = 0;
  const store = new Proxy(inner, {
    get(target, prop, recv) {
      const v = Reflect.get(target, prop, recv);
      if (typeof v !== 'function' || typeof prop !== 'string') return v;
      return (...args: unknown[]) => {
        counts.set(prop, (counts.get(prop) ?? 0) + 1);
        // the worker's reads of the queue are its idle wait (blocking), not a step of the evaluation
        if (prop === 'consume') return (v as (...a: unknown[]) => unknown).apply(target, args);
        if (inFlight++ === 0) trips.value++;
        const done = () => void inFlight--;
        const r = (v as (...a: unknown[]) => unknown).apply(target, args);
        if (r instanceof Promise) r.then(done, done);
        else done();
        return r;
      };
    },
  });
  return { store, counts, trips, reset: () => ((trips.value = 0), counts.clear()) };
}
