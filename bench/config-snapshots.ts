/**
 * What the configuration snapshots' watcher (CONFIG_SNAPSHOTS, src/config-deps/watch.ts) adds to a
 * process' RSS over a cluster of 500 Deployments. Target (#15 (f)): no more than 30 MB.
 *
 * The cluster is the tests' real control plane (test/cluster/harness.ts: etcd, kube-apiserver,
 * controller-manager, scheduler, kwok) with rollguard's ServiceAccount holding the chart's RBAC
 * with configSnapshots.enabled, as test/e2e/config-snapshots.test.ts sets it up. In NAMESPACES
 * namespaces, 500 Deployments (replicas 0: no pods, the watcher reads templates only), each using
 * its own ConfigMap (by envFrom, env valueFrom or a volume, in turn), every second one also a
 * ConfigMap shared by ten Deployments (a volume): 550 ConfigMaps used, each with about 1 kB of data.
 *
 * The measured process is bench/config-snapshots-child.mjs: `node` with the image's V8 flags
 * (Dockerfile's NODE_OPTIONS; --node-flags to change them), the build's Kubernetes client and
 * ConfigSnapshots as src/main.ts builds it (every namespace, CONFIG_SNAPSHOTS_MAX 10, ConfigMaps
 * only), logging at info to /dev/null. Its memory is read after a full GC (bench/gc-on-signal.mjs):
 *   before    client loaded, one API call made, watcher not started
 *   start     start(): time to first sync (every watch's first list handed over), then the
 *             snapshot of every used ConfigMap that start-up takes (550 snapshots)
 *   edits     ROUNDS rounds of EDITS ConfigMaps edited (a key changed), each making one snapshot;
 *             the round is over when the cluster holds every snapshot and the watcher is idle
 *   after     after the last round, the watcher idle: the "settled" figure
 * RSS is also sampled from /proc every 100 ms from the start on (peak, no GC).
 *   npm run build && npx tsx bench/config-snapshots.ts [--deployments 500] [--edits 100] [--rounds 2]
 *     [--node-flags "--max-semi-space-size=4 --max-old-space-size=192"] [--name config-snapshots]
 * (also `BENCH_ONLY=config-snapshots npm run bench`). Writes $BENCH_OUT/NAME.json. No assertions.
 */
import { fork } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import type { KubeObject } from '../src/kube/kube.js';
import { chartRbac, startCluster, type Cluster } from '../test/cluster/harness.js';
import { log, machine, pool, round, ROOT, RssSampler, rssMb, runBench, sleep, writeResult } from './lib.js';

const argStr = (name: string, def: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : def;
};
const NAME = argStr('name', 'config-snapshots');
const DEPLOYMENTS = Number(argStr('deployments', '500'));
const EDITS = Number(argStr('edits', '100'));
const ROUNDS = Number(argStr('rounds', '2'));
/** the Dockerfile's NODE_OPTIONS */
const IMAGE_FLAGS = '--max-semi-space-size=4 --max-old-space-size=192';
const NODE_FLAGS = argStr('node-flags', IMAGE_FLAGS).split(' ').filter(Boolean);
const NAMESPACES = 5;
const SHARED_EVERY = 10;
const MAX = 10;
const TARGET_MB = 30;
const TIMEOUT_MS = 300_000;
const MANAGED = 'app.kubernetes.io/managed-by=rollguard';

interface GcReading {
  rssMb: number;
  heapUsedMb: number;
  externalMb: number;
  /** what V8 holds (used or not), after the GC */
  heapTotalMb?: number;
  /** open file descriptors (sockets to the API server among them) */
  fds?: number;
}

interface Dep {
  ns: string;
  name: string;
  own: string;
  shared?: string;
}

/** The workloads: deployment i in namespace i % NAMESPACES; every second one also uses a shared ConfigMap. */
function layout(): Dep[] {
  return Array.from({ length: DEPLOYMENTS }, (_, i) => {
    const ns = `snap-${i % NAMESPACES}`;
    const k = Math.floor(i / NAMESPACES);
    const name = `svc-${String(k).padStart(3, '0')}`;
    return { ns, name, own: `${name}-config`, ...(k % 2 === 0 ? { shared: `shared-${Math.floor(k / SHARED_EVERY)}` } : {}) };
  });
}

function configMap(ns: string, name: string): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name, namespace: ns, labels: { app: name } },
    data: {
      LOG_LEVEL: 'info',
      FEATURE_FLAGS: 'checkout-v2,search-ranking,new-cart',
      'app.properties': Array.from({ length: 24 }, (_, j) => `setting.${j}=value-${j}-${name}`).join('\n'),
      version: '1',
    },
  };
}

function deployment(d: Dep, i: number): KubeObject {
  const container: Record<string, unknown> = { name: 'app', image: 'registry.example/app:v1' };
  const volumes: Record<string, unknown>[] = [];
  const mounts: Record<string, unknown>[] = [];
  switch (i % 3) {
    case 0:
      container.envFrom = [{ configMapRef: { name: d.own } }];
      break;
    case 1:
      container.env = [
        { name: 'LOG_LEVEL', valueFrom: { configMapKeyRef: { name: d.own, key: 'LOG_LEVEL' } } },
        { name: 'FEATURE_FLAGS', valueFrom: { configMapKeyRef: { name: d.own, key: 'FEATURE_FLAGS' } } },
      ];
      break;
    default:
      volumes.push({ name: 'config', configMap: { name: d.own } });
      mounts.push({ name: 'config', mountPath: '/etc/app' });
  }
  if (d.shared) {
    volumes.push({ name: 'shared', configMap: { name: d.shared } });
    mounts.push({ name: 'shared', mountPath: '/etc/shared' });
  }
  if (mounts.length) container.volumeMounts = mounts;
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: d.name, namespace: d.ns, labels: { app: d.name } },
    spec: {
      replicas: 0,
      selector: { matchLabels: { app: d.name } },
      template: { metadata: { labels: { app: d.name } }, spec: { containers: [container], ...(volumes.length ? { volumes } : {}) } },
    },
  };
}

async function snapshotCount(cluster: Cluster): Promise<number> {
  const l = await cluster.request<{ items: unknown[] }>('GET', `/api/v1/configmaps?labelSelector=${encodeURIComponent(MANAGED)}`);
  return l.items.length;
}

/** The measured process, with a promise for each of its next messages. */
function startChild(kubeconfig: string) {
  const child = fork(join(ROOT, 'bench', 'config-snapshots-child.mjs'), [], {
    cwd: ROOT,
    execArgv: [...NODE_FLAGS, '--expose-gc', '--import', './bench/gc-on-signal.mjs'],
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', NODE_ENV: 'production', KUBECONFIG: kubeconfig, CONFIG_SNAPSHOTS_MAX: String(MAX) },
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  });
  let err = '';
  child.stderr!.on('data', (d) => (err = (err + d).slice(-50_000)));
  const inbox: Record<string, unknown>[] = [];
  const waiters: ((m: Record<string, unknown>) => void)[] = [];
  child.on('message', (m: Record<string, unknown>) => {
    if (m.error) process.stderr.write(`[child] ${String(m.error)}\n`);
    const w = waiters.shift();
    if (w) w(m);
    else inbox.push(m);
  });
  const exited = new Promise<never>((_, reject) => child.once('exit', (code) => reject(new Error(`the measured process exited (${code}): ${err.slice(-4000)}`))));
  exited.catch(() => {});
  const next = (timeoutMs = TIMEOUT_MS) =>
    Promise.race([
      inbox.length ? Promise.resolve(inbox.shift()!) : new Promise<Record<string, unknown>>((r) => waiters.push(r)),
      exited,
      sleep(timeoutMs).then(() => {
        throw new Error(`no answer from the measured process in ${timeoutMs} ms: ${err.slice(-4000)}`);
      }),
    ]);
  /** A full GC in the process (gc-on-signal.mjs), then its own account, and VmRSS read from /proc. */
  const afterGc = async (): Promise<GcReading> => {
    const seen = err.length;
    child.kill('SIGUSR2');
    for (let tries = 0; tries < 100; tries++) {
      await sleep(100);
      const line = err.slice(Math.max(0, seen - 1)).split('\n').find((l) => l.startsWith('{"afterGc"'));
      if (line) {
        const m = (JSON.parse(line) as { afterGc: { rssMb: number; heapUsedMb: number; externalMb: number } }).afterGc;
        child.send({ cmd: 'mem' });
        const mem = (await next(10_000)).mem as { heapTotalMb: number };
        let fds = NaN;
        try {
          fds = readdirSync(`/proc/${child.pid}/fd`).length;
        } catch {
          /* gone */
        }
        return { rssMb: round(m.rssMb, 1), heapUsedMb: round(m.heapUsedMb, 1), externalMb: round(m.externalMb, 1), heapTotalMb: mem.heapTotalMb, fds };
      }
    }
    throw new Error('no afterGc line from the measured process');
  };
  return { child, next, afterGc, stderr: () => err };
}

async function main() {
  const m0 = machine();
  const loadavgText = (await import('node:fs')).readFileSync('/proc/loadavg', 'utf8').trim();
  if (!existsSync(join(ROOT, 'dist', 'config-deps', 'watch.js'))) throw new Error('no dist/: run `npm run build` first (bench/run.sh does)');
  const t0 = Date.now();
  const cluster = await startCluster({ argoCrds: false, nodes: 1 });
  log(`control plane up in ${Date.now() - t0} ms`);
  let measured: ReturnType<typeof startChild> | undefined;
  try {
    // rollguard's ServiceAccount: the chart's RBAC with configSnapshots.enabled
    const rbac = parseAllDocuments(await chartRbac(cluster.bin('helm'), ['configSnapshots.enabled=true', `configSnapshots.max=${MAX}`]))
      .map((d) => d.toJS() as KubeObject | null)
      .filter((o): o is KubeObject => !!o)
      .map((o) => (o.kind!.startsWith('Cluster') || o.metadata.namespace ? o : { ...o, metadata: { ...o.metadata, namespace: 'rollguard-system' } }));
    await cluster.kubectl(['apply', '-f', '-'], { check: true, input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: rbac }) });

    const deps = layout();
    const namespaces = [...new Set(deps.map((d) => d.ns))];
    for (const ns of namespaces) await cluster.request('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
    const cms = [...new Set(deps.flatMap((d) => [`${d.ns}/${d.own}`, ...(d.shared ? [`${d.ns}/${d.shared}`] : [])]))];
    const tc = Date.now();
    await pool(cms, 8, async (key) => {
      const [ns, name] = key.split('/') as [string, string];
      await cluster.request('POST', `/api/v1/namespaces/${ns}/configmaps`, configMap(ns, name));
    });
    await pool(
      deps.map((d, i) => ({ d, i })),
      8,
      async ({ d, i }) => void (await cluster.request('POST', `/apis/apps/v1/namespaces/${d.ns}/deployments`, deployment(d, i))),
    );
    log(`${cms.length} ConfigMaps and ${deps.length} Deployments in ${namespaces.length} namespaces created in ${Date.now() - tc} ms`);
    // let the controller-manager make its ReplicaSets first, so that its work does not run beside the measurement
    await cluster.poll(
      'a ReplicaSet per Deployment',
      async () => (await cluster.request<{ items: unknown[] }>('GET', '/apis/apps/v1/replicasets')).items.length,
      (n) => n >= deps.length,
      TIMEOUT_MS,
    );
    const sizes = await cluster.request<{ items: KubeObject[] }>('GET', '/api/v1/configmaps');
    const cmBytes = JSON.stringify(sizes.items.find((c) => c.metadata.name === deps[0]!.own)).length;

    measured = startChild(cluster.rollguardKubeconfig);
    const ready = await measured.next(60_000);
    if (!ready.ready) throw new Error(`unexpected first message ${JSON.stringify(ready)}`);
    await sleep(2000);
    const before = await measured.afterGc();
    const loadAtStart = (await import('node:fs')).readFileSync('/proc/loadavg', 'utf8').trim();
    log(`before: RSS ${before.rssMb} MB, heap used ${before.heapUsedMb} of ${before.heapTotalMb} MB, ${before.fds} fds (after a full GC)`);

    const rss = new RssSampler(measured.child.pid!, 100).start();
    measured.child.send({ cmd: 'start' });
    const synced = await measured.next();
    if (synced.error) throw new Error(String(synced.error));
    const rssAtSync = rssMb(measured.child.pid!);
    const initialIdle = await measured.next();
    const initialSnapshots = await snapshotCount(cluster);
    log(`first sync in ${round(Number(synced.synced), 0)} ms (${String(synced.watched)} ConfigMaps watched for); start-up snapshots (${initialSnapshots}) taken ${round(Number(initialIdle.idle), 0)} ms after start`);
    const afterStart = await measured.afterGc();
    log(`after start: RSS ${afterStart.rssMb} MB, heap used ${afterStart.heapUsedMb} of ${afterStart.heapTotalMb} MB, ${afterStart.fds} fds (after a full GC)`);

    // each round edits EDITS own ConfigMaps (spread over the namespaces), one snapshot each
    const owns = deps.map((d) => ({ ns: d.ns, name: d.own }));
    const rounds: { round: number; edited: number; snapshotsAfter: number; ms: number; rssBeforeGcMb: number; afterGc: GcReading }[] = [];
    let expected = initialSnapshots;
    for (let r = 1; r <= ROUNDS; r++) {
      const edit = owns.slice(0, EDITS);
      const tr = Date.now();
      await pool(edit, 8, async (c) => void (await cluster.request('PATCH', `/api/v1/namespaces/${c.ns}/configmaps/${c.name}`, { data: { version: String(r + 1) } })));
      expected += edit.length;
      const count = await cluster.poll('the edits\' snapshots', () => snapshotCount(cluster), (n) => n >= expected, TIMEOUT_MS);
      measured.child.send({ cmd: 'idle' });
      await measured.next();
      const ms = Date.now() - tr;
      await sleep(2000);
      const rssBeforeGcMb = rssMb(measured.child.pid!);
      const afterGc = await measured.afterGc();
      rounds.push({ round: r, edited: edit.length, snapshotsAfter: count, ms, rssBeforeGcMb, afterGc });
      log(`round ${r}: ${edit.length} ConfigMaps edited, ${count} snapshots in the cluster after ${ms} ms; RSS ${rssBeforeGcMb} MB, after a full GC ${afterGc.rssMb} MB (heap used ${afterGc.heapUsedMb} of ${afterGc.heapTotalMb} MB, ${afterGc.fds} fds)`);
    }
    const sampled = rss.stop();
    const after = rounds.length ? rounds[rounds.length - 1]!.afterGc : afterStart;
    const delta = round(after.rssMb - before.rssMb, 1);
    const peakDelta = round(sampled.peakMb - before.rssMb, 1);
    const snapshotsTotal = await snapshotCount(cluster);
    measured.child.send({ cmd: 'stop' });
    await sleep(500);

    const result = {
      machine: { ...m0, loadavgProc: loadavgText, loadavgAtMeasureStart: loadAtStart },
      config: {
        deployments: deps.length,
        namespaces: namespaces.length,
        configMapsUsed: cms.length,
        configMapJsonBytes: cmBytes,
        refs: 'own ConfigMap by envFrom / env valueFrom (2 keys) / volume in turn; every second Deployment also a shared ConfigMap (one per 10) by volume; replicas 0',
        edits: EDITS,
        rounds: ROUNDS,
        snapshotsMax: MAX,
        nodeFlags: NODE_FLAGS,
        measured: 'bench/config-snapshots-child.mjs: dist/ Kubernetes client + ConfigSnapshots (every namespace, ConfigMaps only), rollguard ServiceAccount kubeconfig (chart RBAC, configSnapshots.enabled), pino info to /dev/null; memory after a full GC (bench/gc-on-signal.mjs)',
      },
      firstSyncMs: round(Number(synced.synced), 0),
      watched: synced.watched,
      startupSnapshots: initialSnapshots,
      startupSnapshotsDoneMs: round(Number(initialIdle.idle), 0),
      snapshotsCreated: snapshotsTotal,
      memory: {
        before,
        rssAtFirstSyncMb: rssAtSync,
        afterStart,
        rounds,
        after,
        rssPeakMb: sampled.peakMb,
      },
      rssDeltaMb: delta,
      rssPeakDeltaMb: peakDelta,
      heapDeltaMb: round(after.heapUsedMb - before.heapUsedMb, 1),
      targetMb: TARGET_MB,
      met: delta <= TARGET_MB,
    };
    writeResult(NAME, result);
    log(`RSS delta (settled, after GC) ${delta} MB (target <= ${TARGET_MB}: ${result.met ? 'met' : 'MISSED'}); peak delta ${peakDelta} MB; heap delta ${result.heapDeltaMb} MB; ${snapshotsTotal} snapshots; first sync ${result.firstSyncMs} ms`);
  } finally {
    if (measured && measured.child.exitCode === null) measured.child.kill('SIGKILL');
    await cluster.stop();
  }
}

runBench('config-snapshots', main);
