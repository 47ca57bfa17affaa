import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { findBinary } from '../../src/prometheus/local.js';
import type { Cluster } from '../cluster/harness.js';
import { freePort, waitFor, waitForProcess } from './ports.js';
import { ROOT } from './serve.js';
import { killOnExit, stopChild } from './children.js';

/**
 * The whole loop's moving parts besides rollguard and Alertmanager (see docs/loop.md):
 * - the demo app (examples/demo-app/server.ts) as its own process, loading itself;
 * - a follower that makes the demo app behave as the Deployment's current pod template says
 *   (the cluster's pods are fake: kwok), by polling the Deployment and posting its image;
 * - a Prometheus that scrapes the demo app (and rollguard), evaluates alert rules every second
 *   and sends alerts to the given Alertmanagers.
 */

export interface DemoProcess {
  url: string;
  port: number;
  proc: ChildProcess;
  revision(): Promise<{ image: string; mode: string }>;
  /** the revision the demo app behaves as: its image and its container's environment (the error switch) */
  setImage(image: string, env?: Record<string, string>): Promise<void>;
  stop(): Promise<void>;
}

export async function startDemoProcess(opts: { image: string; loadPerSecond: number }): Promise<DemoProcess> {
  const port = await freePort();
  const proc = spawn(process.execPath, ['--import', 'tsx', 'examples/demo-app/server.ts', '--port', String(port), '--image', opts.image, '--load', String(opts.loadPerSecond)], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  proc.stderr!.on('data', (d) => (err += d));
  proc.stdout!.resume();
  const url = `http://127.0.0.1:${port}`;
  killOnExit(proc);
  const exited = new Promise<number | null>((r) => proc.once('exit', (c) => r(c)));
  await waitForProcess(`demo app on ${port}`, async () => (await fetch(`${url}/healthz`)).ok, exited, (c) => `demo app exited with ${c}: ${err}`, 30_000, 100);
  return {
    url,
    port,
    proc,
    revision: async () => (await (await fetch(`${url}/-/revision`)).json()) as { image: string; mode: string },
    setImage: async (image, env) => {
      const r = await fetch(`${url}/-/revision`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ image, ...(env ? { env } : {}) }) });
      if (!r.ok) throw new Error(`demo app refused image ${image}: ${r.status}`);
    },
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        const hard = setTimeout(() => proc.kill('SIGKILL'), 3000);
        await exited;
        clearTimeout(hard);
      }
    },
  };
}

export interface FollowerEvent {
  at: number;
  image: string;
  /** the first container's plain env values (the demo app's error switch among them) */
  env: Record<string, string>;
  revision: string | undefined;
}

/**
 * Polls the Deployment every `everyMs` and, whenever its pod template's first container (image or
 * env) changes, tells the demo app to behave as that container. `events` lists each switch.
 */
export function followDeployment(
  get: () => Promise<{ metadata: { annotations?: Record<string, string> }; spec: { template: { spec: { containers: Array<{ image?: string; env?: Array<{ name: string; value?: string }> }> } } } }>,
  demo: Pick<DemoProcess, 'setImage'>,
  everyMs = 200,
): { events: FollowerEvent[]; stop(): void } {
  const events: FollowerEvent[] = [];
  let current: string | undefined;
  let busy = false;
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    get()
      .then(async (d) => {
        const c = d.spec.template.spec.containers[0];
        const image = c?.image;
        const env = Object.fromEntries((c?.env ?? []).filter((e) => e.value !== undefined).map((e) => [e.name, e.value!]));
        const key = JSON.stringify([image, env]);
        if (image && key !== current) {
          await demo.setImage(image, env);
          current = key;
          events.push({ at: Date.now(), image, env, revision: d.metadata.annotations?.['deployment.kubernetes.io/revision'] });
        }
      })
      .catch(() => undefined)
      .finally(() => (busy = false));
  }, everyMs);
  return { events, stop: () => clearInterval(timer) };
}

export interface ScrapeTarget {
  job: string;
  target: string; // host:port
  labels?: Record<string, string>;
}

export interface ScrapingPrometheus {
  url: string;
  dir: string;
  log(): string;
  query(expr: string): Promise<Array<{ metric: Record<string, string>; value: [number, string] }>>;
  alerts(): Promise<Array<{ labels: Record<string, string>; state: string; activeAt?: string; value: string }>>;
  stop(): Promise<void>;
}

/**
 * Debian's prometheus with a real scrape config (1s scrape and evaluation), the given alert rules
 * and Alertmanagers, on a free port with a temp TSDB. A missing binary fails loudly.
 */
export async function startScrapingPrometheus(o: { targets: ScrapeTarget[]; rules: string; alertmanagers: string[]; port?: number }): Promise<ScrapingPrometheus> {
  const bin = await findBinary('prometheus');
  const dir = mkdtempSync(join(tmpdir(), 'rollguard-loop-prom-'));
  const q = (s: string) => JSON.stringify(s);
  writeFileSync(join(dir, 'rules.yml'), o.rules);
  const config = [
    'global:',
    '  scrape_interval: 1s',
    '  scrape_timeout: 900ms',
    '  evaluation_interval: 1s',
    'rule_files: ["rules.yml"]',
    'alerting:',
    '  alertmanagers:',
    '    - static_configs:',
    `        - targets: [${o.alertmanagers.map(q).join(', ')}]`,
    'scrape_configs:',
    ...o.targets.map((t) =>
      [
        `  - job_name: ${q(t.job)}`,
        '    static_configs:',
        `      - targets: [${q(t.target)}]`,
        ...(t.labels ? [`        labels: { ${Object.entries(t.labels).map(([k, v]) => `${k}: ${q(v)}`).join(', ')} }`] : []),
      ].join('\n'),
    ),
  ].join('\n');
  writeFileSync(join(dir, 'prometheus.yml'), `${config}\n`);
  const logFile = join(dir, 'prometheus.log');
  const log = () => {
    try {
      return readFileSync(logFile, 'utf8');
    } catch {
      return '';
    }
  };
  const port = o.port ?? (await freePort());
  const fd = openSync(logFile, 'a');
  const child = spawn(
    bin,
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--rules.alert.resend-delay=1s',
      '--log.level=info',
    ],
    { stdio: ['ignore', fd, fd], cwd: dir },
  );
  closeSync(fd);
  // If the test process dies without its teardown, the child dies with it.
  killOnExit(child);
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const url = `http://127.0.0.1:${port}`;
  try {
    // An exit ends the wait at once (a bad config must not cost the whole readiness timeout).
    await waitForProcess(`prometheus ready on ${port}`, async () => (await fetch(`${url}/-/ready`)).ok, exited, () => `prometheus exited:\n${log().split('\n').slice(-10).join('\n')}`, 30_000, 100);
  } catch (err) {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    url,
    dir,
    log,
    query: async (expr) => {
      const r = await fetch(`${url}/api/v1/query`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ query: expr }) });
      const b = (await r.json()) as { status: string; error?: string; data: { result: Array<{ metric: Record<string, string>; value: [number, string] }> } };
      if (b.status !== 'success') throw new Error(`query ${expr}: ${b.error}`);
      return b.data.result;
    },
    alerts: async () => ((await (await fetch(`${url}/api/v1/alerts`)).json()) as { data: { alerts: Awaited<ReturnType<ScrapingPrometheus['alerts']>> } }).data.alerts,
    stop: async () => {
      await stopChild(child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The Deployment the demo app stands for, as the API server answers it. */
export interface DemoDeployment {
  metadata: { uid?: string; generation?: number; annotations?: Record<string, string> };
  spec: { replicas?: number; template: { spec: { containers: Array<{ image?: string; env?: Array<{ name: string; value?: string }> }> } } };
  status?: { observedGeneration?: number; updatedReplicas?: number; availableReplicas?: number; replicas?: number };
}

/** Whether a Deployment's rollout is complete (at `revision`, when given), as kubectl rollout status says. */
export function rolloutComplete(d: DemoDeployment, revision?: string): boolean {
  return (
    (revision === undefined || d.metadata.annotations?.['deployment.kubernetes.io/revision'] === revision) &&
    (d.status?.observedGeneration ?? 0) >= (d.metadata.generation ?? 1) &&
    d.status?.updatedReplicas === d.spec.replicas &&
    d.status?.availableReplicas === d.spec.replicas &&
    d.status?.replicas === d.spec.replicas
  );
}

/**
 * Creates namespace `ns` and Deployment `name` in it (two replicas of demo:v1, container `app`) on
 * the test control plane, waits for revision 1 to be complete, and returns a reader of it.
 */
export async function createDemoDeployment(cluster: Pick<Cluster, 'kubectl' | 'request'>, ns: string, name: string): Promise<() => Promise<DemoDeployment>> {
  await cluster.kubectl(['create', 'namespace', ns], { check: true });
  await cluster.request('POST', `/apis/apps/v1/namespaces/${ns}/deployments`, {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, labels: { app: name } },
    spec: {
      replicas: 2,
      selector: { matchLabels: { app: name } },
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } },
      template: {
        metadata: { labels: { app: name } },
        spec: { containers: [{ name: 'app', image: 'demo:v1', ports: [{ containerPort: 8080, name: 'http' }] }] },
      },
    },
  });
  const get = () => cluster.request<DemoDeployment>('GET', `/apis/apps/v1/namespaces/${ns}/deployments/${name}`);
  await waitFor('Deployment at revision 1, complete', async () => rolloutComplete(await get(), '1'), 90_000, 200);
  return get;
}

/** The shipped HighErrorRate alert rule (deploy/prometheus/alert-rules.yaml), and the same at test speed: [10s] rate windows, for: 10s. */
export function highErrorRateRule(): { shipped: Record<string, unknown>; fast: Record<string, unknown> & { expr: string } } {
  const file = parse(readFileSync(join(ROOT, 'deploy/prometheus/alert-rules.yaml'), 'utf8')) as { groups: Array<{ rules: Array<Record<string, unknown>> }> };
  const shipped = file.groups.flatMap((g) => g.rules).find((r) => r.alert === 'HighErrorRate')!;
  return { shipped, fast: { ...shipped, expr: String(shipped.expr).replaceAll('[1m]', '[10s]'), for: '10s' } };
}
