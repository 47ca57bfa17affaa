// A real, local Kubernetes control plane for tests: etcd, kube-apiserver (RBAC, service
// accounts), kube-controller-manager, kube-scheduler and kwok with fake nodes, all on
// 127.0.0.1 with free ports. Binaries come from the cache that scripts/cluster/build.sh
// fills; this file never builds anything.
//
//   const cluster = await startCluster();
//   t.teardown(() => cluster.stop({ keep: !t.passing() }));
//
// Every child runs in its own process group. stop() terminates them all; if the node
// process exits without calling stop() (uncaught error, signal, tap timeout), an 'exit'
// hook kills them, and a small reaper process kills them if node itself is SIGKILLed.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as https from 'node:https';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFile as execFileCb } from 'node:child_process';
import { promisify } from 'node:util';

const execFileP = promisify(execFileCb);
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { onFreshPorts } from '../support/ports.js';

export const BINARIES = [
  'etcd',
  'kube-apiserver',
  'kube-controller-manager',
  'kube-scheduler',
  'kubectl',
  'kwok',
  'helm',
] as const;
export type BinaryName = (typeof BINARIES)[number];

export interface ClusterOptions {
  /** Number of kwok fake nodes (default 3). */
  nodes?: number;
  /** Install the Argo Rollouts CRDs from test/fixtures/crds (default true). */
  argoCrds?: boolean;
  /** Install Istio's VirtualService CRD from test/fixtures/crds/istio (default false). */
  istioCrds?: boolean;
  /** Bin dir override (default: the build.sh cache, or $ROLLGUARD_K8S_BIN). */
  binDir?: string;
  /** Parent of the per-run temp dir (default os.tmpdir()). */
  tmpParent?: string;
  /** Overall start timeout in ms (default 120 s). */
  timeoutMs?: number;
  /** Progress messages (default: silent unless ROLLGUARD_CLUSTER_VERBOSE=1). */
  log?: (msg: string) => void;
  /** How the components' ports are picked (default freePorts; a test gives a taken one to see the start retried). */
  ports?: (n: number) => Promise<number[]>;
  /**
   * Flags added after the harness' own for etcd and kube-apiserver (default none). For benchmarks
   * that measure a control-plane setting, e.g. `--watch-cache-sizes=replicasets.apps#0`.
   */
  extraArgs?: { etcd?: string[]; apiserver?: string[] };
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  code: number;
}

export interface ExecOptions {
  /** Kubeconfig to use (default: the admin one). */
  kubeconfig?: string;
  /** Data for stdin. */
  input?: string;
  /** Throw if the exit code is not 0 (default false). */
  check?: boolean;
  timeoutMs?: number;
}

export interface Cluster {
  /** Per-run directory holding pki/, etcd/, logs/ and the kubeconfigs. */
  dir: string;
  logDir: string;
  /** https://127.0.0.1:<port> */
  server: string;
  /** cluster-admin (system:masters) client-certificate kubeconfig. */
  adminKubeconfig: string;
  /** Kubeconfig of ServiceAccount rollguard-system/rollguard, with exactly the Helm chart's RBAC (see chartRbac). */
  rollguardKubeconfig: string;
  rollguardToken: string;
  caFile: string;
  nodeNames: string[];
  /** Absolute path of a built binary (from the cache, never from $PATH). */
  bin(name: BinaryName): string;
  /** Run the built kubectl against this cluster (admin unless opts.kubeconfig). */
  kubectl(args: string[], opts?: ExecOptions): Promise<ExecResult>;
  /** Run any built binary with KUBECONFIG set (admin unless opts.kubeconfig). */
  run(name: BinaryName, args: string[], opts?: ExecOptions): Promise<ExecResult>;
  /** Admin REST call; resolves with the parsed JSON body, rejects on non-2xx. PATCH bodies are JSON merge patches. */
  request<T = unknown>(method: string, apiPath: string, body?: unknown): Promise<T>;
  /** Last lines of every component log, for failure messages. */
  logTails(lines?: number): string;
  /** Polls `get` until `ok` holds (default 120 s); the timeout error carries the last value and the log tails. */
  poll<T>(what: string, get: () => Promise<T>, ok: (v: T) => boolean, timeoutMs?: number): Promise<T>;
  /** Process id of a running component (etcd, kube-apiserver, ...), for benchmarks that read its CPU time. */
  pid(name: 'etcd' | 'kube-apiserver' | 'kube-controller-manager' | 'kube-scheduler' | 'kwok'): number | undefined;
  /** Stop every process started; removes the run dir unless keep (or ROLLGUARD_CLUSTER_KEEP=1). */
  stop(opts?: { keep?: boolean }): Promise<void>;
}

// ---------------------------------------------------------------------------------------
// Locations

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(HERE, '..', '..');
const VERSIONS_ENV = path.join(REPO_ROOT, 'scripts', 'cluster', 'versions.env');
const CHART_DIR = path.join(REPO_ROOT, 'helm', 'rollguard');
/** Every action kind the chart can grant without the opt-in Helm action. */
export const CHART_ACTION_KINDS = ['Deployment', 'StatefulSet', 'DaemonSet', 'Rollout', 'BlueGreen', 'Canary', 'VirtualService'];
const CRD_DIR = path.join(REPO_ROOT, 'test', 'fixtures', 'crds');

export function readVersions(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of fs.readFileSync(VERSIONS_ENV, 'utf8').split('\n')) {
    const m = /^\s*([A-Z0-9_]+)=(.*)$/.exec(line);
    if (m && m[1] && m[2] !== undefined) out[m[1]] = m[2].trim().replace(/^["']|["']$/g, '');
  }
  return out;
}

/** The cache dir build.sh writes: ${ROLLGUARD_CACHE:-~/.cache/rollguard}/k8s-<version>. */
export function cacheDir(): string {
  const v = readVersions().K8S_VERSION;
  if (!v) throw new Error(`K8S_VERSION missing in ${VERSIONS_ENV}`);
  const root = process.env.ROLLGUARD_CACHE || path.join(os.homedir(), '.cache', 'rollguard');
  return path.join(root, `k8s-${v}`);
}

export function defaultBinDir(): string {
  return process.env.ROLLGUARD_K8S_BIN || path.join(cacheDir(), 'bin');
}

/** Throws a clear error naming what is missing and how to build it. */
export function checkBinaries(binDir = defaultBinDir()): void {
  const missing = BINARIES.filter((b) => {
    try {
      fs.accessSync(path.join(binDir, b), fs.constants.X_OK);
      return false;
    } catch {
      return true;
    }
  });
  const stages = path.join(binDir, '..', 'etc', 'kwok-stages.yaml');
  if (!fs.existsSync(stages)) missing.push('../etc/kwok-stages.yaml' as BinaryName);
  if (missing.length > 0) {
    throw new Error(
      `test control plane binaries missing in ${binDir}: ${missing.join(', ')}.\n` +
        `Build them once with: bash scripts/cluster/build.sh  (cold: ~8-16 min on 2 cores; cached afterwards)`,
    );
  }
}

// ---------------------------------------------------------------------------------------
// Small helpers

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Free TCP ports on 127.0.0.1 (all held open together so they are distinct). */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<import('node:net').Server>((resolve, reject) => {
          const s = createServer();
          s.unref();
          s.once('error', reject);
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as import('node:net').AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

/** Runs openssl in `cwd`; throws with its stderr when it fails. */
export function openssl(args: string[], cwd: string): void {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  if (r.error) throw new Error(`openssl not runnable: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed:\n${r.stderr}`);
}

/** CA, apiserver serving cert, client certs and the service-account key pair (EC P-256: fast). */
function makePki(dir: string): void {
  fs.mkdirSync(dir, { recursive: true });
  const key = (name: string) =>
    openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', `${name}.key`], dir);
  key('ca');
  openssl(
    ['req', '-x509', '-new', '-key', 'ca.key', '-subj', '/CN=rollguard-test-ca', '-days', '3650', '-out', 'ca.crt',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
    dir,
  );
  const sign = (name: string, subj: string, ext: string) => {
    key(name);
    openssl(['req', '-new', '-key', `${name}.key`, '-subj', subj, '-out', `${name}.csr`], dir);
    fs.writeFileSync(path.join(dir, `${name}.ext`), ext);
    openssl(
      ['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '365',
        '-extfile', `${name}.ext`, '-out', `${name}.crt`],
      dir,
    );
  };
  const client = 'keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n';
  sign(
    'apiserver',
    '/CN=kube-apiserver',
    'keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' +
      'subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,' +
      'DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n',
  );
  sign('admin', '/O=system:masters/CN=rollguard-test-admin', client);
  sign('controller-manager', '/CN=system:kube-controller-manager', client);
  sign('scheduler', '/CN=system:kube-scheduler', client);
  // kwok acts for the fake nodes; it patches node and pod status cluster-wide.
  sign('kwok', '/O=system:masters/CN=kwok-controller', client);
  openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', 'sa.key'], dir);
  openssl(['pkey', '-in', 'sa.key', '-pubout', '-out', 'sa.pub'], dir);
}

/** Kubeconfig as JSON (valid YAML; kubectl and client libraries read it). */
function writeKubeconfig(
  file: string,
  server: string,
  caFile: string,
  user: { certFile: string; keyFile: string } | { token: string },
  name: string,
): void {
  const u =
    'token' in user
      ? { token: user.token }
      : { 'client-certificate': user.certFile, 'client-key': user.keyFile };
  const cfg = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'rollguard-test', cluster: { server, 'certificate-authority': caFile } }],
    users: [{ name, user: u }],
    contexts: [{ name, context: { cluster: 'rollguard-test', user: name, namespace: 'default' } }],
    'current-context': name,
  };
  fs.writeFileSync(file, JSON.stringify(cfg, null, 2) + '\n', { mode: 0o600 });
}

function execFile(
  file: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  opts: { input?: string; timeoutMs?: number } = {},
): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ stdout, stderr, code: code ?? (signal ? 128 : 1) });
    });
    child.stdin.end(opts.input ?? '');
  });
}

/** Status code of GET https://127.0.0.1:port/path on a component's self-signed serving cert. */
function localStatus(port: number, p: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = https.get({ host: '127.0.0.1', port, path: p, rejectUnauthorized: false, timeout: 2_000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

// ---------------------------------------------------------------------------------------
// Process bookkeeping: every child is a process-group leader; kill groups on exit.

export interface Proc {
  name: string;
  child: ChildProcess;
  logFile: string;
  exited: boolean;
  exitInfo?: string;
}

const liveGroups = new Set<number>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const pgid of liveGroups) {
      try {
        process.kill(-pgid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  });
}

function killGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    /* gone */
  }
}

/**
 * Starts `file` as a process-group leader logging to logDir/NAME.log, killed with its group when
 * this process exits, and listed in pidFile for the cluster's reaper (which kills the groups if
 * node itself is SIGKILLed). The control plane's processes and the reconcilers start this way.
 */
export function spawnGroup(name: string, file: string, args: string[], o: { logDir: string; pidFile: string; env?: NodeJS.ProcessEnv }): Proc {
  installExitHook();
  const logFile = path.join(o.logDir, `${name}.log`);
  const fd = fs.openSync(logFile, 'a');
  fs.writeSync(fd, `# ${file} ${args.join(' ')}\n`);
  const child = spawn(file, args, { detached: true, stdio: ['ignore', fd, fd], env: o.env ?? process.env });
  fs.closeSync(fd);
  child.unref();
  const p: Proc = { name, child, logFile, exited: false };
  if (child.pid) {
    liveGroups.add(child.pid);
    fs.appendFileSync(o.pidFile, `${child.pid}\n`);
  }
  child.on('exit', (code, signal) => {
    p.exited = true;
    p.exitInfo = signal ? `signal ${signal}` : `code ${code}`;
    if (child.pid) liveGroups.delete(child.pid);
  });
  child.on('error', (e) => {
    p.exited = true;
    p.exitInfo = `spawn error: ${e.message}`;
  });
  return p;
}

/** The last `lines` of each process' log, with whether it still runs. */
export function procTails(procs: Proc[], lines: number): string {
  return procs
    .map((p) => {
      let text = '';
      try {
        text = fs.readFileSync(p.logFile, 'utf8').split('\n').slice(-lines).join('\n');
      } catch {
        /* none */
      }
      return `----- ${p.name} (${p.exited ? `exited: ${p.exitInfo}` : 'running'}) ${p.logFile}\n${text}`;
    })
    .join('\n');
}

/** SIGTERM to each group, SIGKILL to what is left after graceMs; resolves once all exited (or 5 s more). */
export async function stopGroups(ps: Proc[], graceMs: number): Promise<void> {
  for (const p of ps) if (!p.exited && p.child.pid) killGroup(p.child.pid, 'SIGTERM');
  const until = Date.now() + graceMs;
  while (ps.some((p) => !p.exited) && Date.now() < until) await sleep(25);
  for (const p of ps) if (!p.exited && p.child.pid) killGroup(p.child.pid, 'SIGKILL');
  const hard = Date.now() + 5_000;
  while (ps.some((p) => !p.exited) && Date.now() < hard) await sleep(25);
}

// ---------------------------------------------------------------------------------------

/** The chart's ServiceAccount and RBAC for release "rollguard" in rollguard-system, every non-Helm action kind on. */
export async function chartRbac(helmBin: string, extraSets: string[] = []): Promise<string> {
  const { stdout } = await execFileP(helmBin, [
    'template', 'rollguard', CHART_DIR, '-n', 'rollguard-system',
    '--show-only', 'templates/serviceaccount.yaml', '--show-only', 'templates/rbac.yaml',
    '--set', `actions.enabled={${CHART_ACTION_KINDS.join(',')}}`,
    // only the RBAC is used here; the chart renders nothing without a webhook credential
    '--set', 'auth.webhook.allowUnauthenticated=true',
    ...extraSets.flatMap((v) => ['--set', v]),
  ], { maxBuffer: 16 * 1024 * 1024 });
  return stdout;
}

/**
 * Gives rollguard's ServiceAccount (rollguard-system/rollguard) the chart's RBAC rendered with
 * these values (chartRbac), on top of the harness's default: its ClusterRole replaces the default's,
 * and a namespaced object the chart leaves without a namespace lands in rollguard-system.
 */
export async function applyChartRbac(cluster: Cluster, extraSets: string[]): Promise<void> {
  const items = parseAllDocuments(await chartRbac(cluster.bin('helm'), extraSets))
    .map((d) => d.toJS() as { kind?: string; metadata: { namespace?: string } } | null)
    .filter((o): o is { kind?: string; metadata: { namespace?: string } } => !!o)
    .map((o) => (o.kind!.startsWith('Cluster') || o.metadata.namespace ? o : { ...o, metadata: { ...o.metadata, namespace: 'rollguard-system' } }));
  await cluster.kubectl(['apply', '-f', '-'], { check: true, input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items }) });
}

/** A Deployment as the e2e tests read it from the API server. */
export interface DeploymentView {
  metadata: { generation: number; annotations?: Record<string, string> };
  spec: { replicas: number; template: { metadata?: { annotations?: Record<string, string> }; spec: { containers: { image: string }[] } } };
  status: { observedGeneration?: number; updatedReplicas?: number; availableReplicas?: number; replicas?: number };
}

/** The Deployment runs `image` and its rollout is done: its spec observed, every replica updated and available. */
export function deploymentSettled(d: DeploymentView, image: string): boolean {
  return (
    d.spec.template.spec.containers[0]!.image === image &&
    (d.status.observedGeneration ?? 0) >= d.metadata.generation &&
    d.status.updatedReplicas === d.spec.replicas &&
    d.status.availableReplicas === d.spec.replicas
  );
}

/** A component could not bind a port freePorts() picked: something else took it in between. */
class PortTakenError extends Error {
  override name = 'PortTakenError';
}

/** Start attempts when a picked port was taken meanwhile (each with fresh ports and a fresh run dir). */
const START_ATTEMPTS = 3;

/**
 * Starts a control plane. Its ports are picked free, then bound by the components a moment later;
 * another suite's process (or an outgoing connection's source port) can take one in between, and
 * the component exits "address already in use": then it is started again on fresh ports, at most
 * START_ATTEMPTS times. Any other failure is thrown at once, with the components' log tails.
 */
export function startCluster(opts: ClusterOptions = {}): Promise<Cluster> {
  return onFreshPorts('cluster', () => startClusterOnce(opts), (err) => err instanceof PortTakenError, START_ATTEMPTS);
}

async function startClusterOnce(opts: ClusterOptions): Promise<Cluster> {
  const t0 = Date.now();
  const verbose = process.env.ROLLGUARD_CLUSTER_VERBOSE === '1';
  const log = opts.log ?? (verbose ? (m: string) => process.stderr.write(`[cluster] ${m}\n`) : () => {});
  const timeoutMs = opts.timeoutMs ?? 120_000;
  const deadline = t0 + timeoutMs;
  const binDir = opts.binDir ?? defaultBinDir();
  checkBinaries(binDir);
  const bin = (name: BinaryName) => path.join(binDir, name);
  const stagesFile = path.join(binDir, '..', 'etc', 'kwok-stages.yaml');

  const dir = await fsp.mkdtemp(path.join(opts.tmpParent ?? os.tmpdir(), 'rollguard-cluster-'));
  const pki = path.join(dir, 'pki');
  const logDir = path.join(dir, 'logs');
  await fsp.mkdir(logDir, { recursive: true });
  const pidFile = path.join(dir, 'pgids');
  fs.writeFileSync(pidFile, '');

  installExitHook();
  const procs: Proc[] = [];
  let stopped = false;

  // Reaper: if this node process dies without running its exit hook (SIGKILL), kill the
  // groups and drop etcd's data (the logs stay for a post-mortem).
  const reaper = spawn(
    'bash',
    [
      '-c',
      'while kill -0 "$1" 2>/dev/null; do sleep 1; done; ' +
        'while read -r g; do [ -n "$g" ] && kill -KILL -- "-$g" 2>/dev/null; done < "$2"; ' +
        'sleep 1; rm -rf "$3"; exit 0',
      'rollguard-cluster-reaper',
      String(process.pid),
      pidFile,
      path.join(dir, 'etcd'),
    ],
    { detached: true, stdio: 'ignore' },
  );
  reaper.unref();

  const startProc = (name: string, file: string, args: string[]): Proc => {
    const p = spawnGroup(name, file, args, { logDir, pidFile });
    procs.push(p);
    log(`started ${name} (pid ${p.child.pid}), log ${p.logFile}`);
    return p;
  };

  const logTails = (lines = 25): string => procTails(procs, lines);

  const stop = async (o: { keep?: boolean } = {}): Promise<void> => {
    if (stopped) return;
    stopped = true;
    // In stages, clients before the apiserver before etcd (an apiserver whose etcd is gone
    // hangs in graceful shutdown). The run's state is throwaway, so grace periods are short.
    const servers = ['etcd', 'kube-apiserver'];
    await stopGroups(procs.filter((p) => !servers.includes(p.name)), 3_000);
    await stopGroups(procs.filter((p) => p.name === 'kube-apiserver'), 3_000);
    await stopGroups(procs.filter((p) => p.name === 'etcd'), 3_000);
    if (reaper.pid) killGroup(reaper.pid, 'SIGKILL');
    const keep = o.keep || process.env.ROLLGUARD_CLUSTER_KEEP === '1';
    if (keep) {
      // Keep logs, PKI and kubeconfigs; etcd's data (128 MB of preallocated WAL) goes.
      await fsp.rm(path.join(dir, 'etcd'), { recursive: true, force: true });
      process.stderr.write(`[cluster] kept run dir ${dir} (logs in ${logDir})\n`);
    } else {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  };

  const fail = async (msg: string): Promise<never> => {
    const tails = logTails();
    if (/bind: address already in use/.test(tails)) {
      await stop();
      throw new PortTakenError(`${msg}: a port picked for it was taken meanwhile\n${tails}`);
    }
    await stop({ keep: true });
    throw new Error(`${msg}\nrun dir kept: ${dir}\n${tails}`);
  };

  const checkAlive = async () => {
    for (const p of procs) if (p.exited) await fail(`${p.name} exited during start-up (${p.exitInfo})`);
    if (Date.now() > deadline) await fail(`control plane not ready after ${timeoutMs} ms`);
  };

  const waitFor = async (what: string, probe: () => Promise<boolean>, intervalMs = 100): Promise<void> => {
    for (;;) {
      await checkAlive();
      try {
        if (await probe()) {
          log(`${what} after ${Date.now() - t0} ms`);
          return;
        }
      } catch {
        /* not yet */
      }
      if (Date.now() + intervalMs > deadline) await fail(`timed out waiting for ${what}`);
      await sleep(intervalMs);
    }
  };

  try {
    const [etcdPort, etcdPeerPort, apiPort, cmPort, schedPort, kwokPort] = (await (opts.ports ?? freePorts)(6)) as [
      number, number, number, number, number, number,
    ];
    const etcdUrl = `http://127.0.0.1:${etcdPort}`;
    // --- etcd
    startProc('etcd', bin('etcd'), [
      '--name=rollguard-test',
      `--data-dir=${path.join(dir, 'etcd')}`,
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
      `--initial-cluster=rollguard-test=http://127.0.0.1:${etcdPeerPort}`,
      '--unsafe-no-fsync=true',
      '--log-level=warn',
      ...(opts.extraArgs?.etcd ?? []),
    ]);
    // The PKI is made while etcd starts (etcd itself runs plain http on loopback).
    makePki(pki);
    const f = (n: string) => path.join(pki, n);
    const server = `https://127.0.0.1:${apiPort}`;
    const caFile = f('ca.crt');
    const adminKubeconfig = path.join(dir, 'admin.kubeconfig');
    writeKubeconfig(adminKubeconfig, server, caFile, { certFile: f('admin.crt'), keyFile: f('admin.key') }, 'admin');
    const kc = (name: string) => {
      const file = path.join(dir, `${name}.kubeconfig`);
      writeKubeconfig(file, server, caFile, { certFile: f(`${name}.crt`), keyFile: f(`${name}.key`) }, name);
      return file;
    };
    const cmKubeconfig = kc('controller-manager');
    const schedKubeconfig = kc('scheduler');
    const kwokKubeconfig = kc('kwok');

    const adminCert = fs.readFileSync(f('admin.crt'));
    const adminKey = fs.readFileSync(f('admin.key'));
    const ca = fs.readFileSync(caFile);
    const agent = new https.Agent({ ca, cert: adminCert, key: adminKey, keepAlive: true });

    const rawRequest = (method: string, apiPath: string, body?: unknown): Promise<{ status: number; text: string }> =>
      new Promise((resolve, reject) => {
        const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
        const req = https.request(
          {
            host: '127.0.0.1',
            port: apiPort,
            path: apiPath,
            method,
            agent,
            timeout: 10_000,
            headers: {
              accept: 'application/json',
              ...(data
                ? {
                    'content-type': method === 'PATCH' ? 'application/merge-patch+json' : 'application/json',
                    'content-length': data.length,
                  }
                : {}),
            },
          },
          (res) => {
            let text = '';
            res.setEncoding('utf8');
            res.on('data', (d: string) => (text += d));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
          },
        );
        req.on('timeout', () => req.destroy(new Error(`${method} ${apiPath}: timeout`)));
        req.on('error', reject);
        req.end(data);
      });

    const request = async <T = unknown>(method: string, apiPath: string, body?: unknown): Promise<T> => {
      const r = await rawRequest(method, apiPath, body);
      if (r.status < 200 || r.status >= 300) throw new Error(`${method} ${apiPath}: HTTP ${r.status} ${r.text}`);
      return (r.text ? JSON.parse(r.text) : undefined) as T;
    };

    await waitFor(
      'etcd healthy',
      async () => {
        const r = await fetch(`${etcdUrl}/health`, { signal: AbortSignal.timeout(2_000) });
        return r.ok && ((await r.json()) as { health?: string }).health === 'true';
      },
      50,
    );

    // --- kube-apiserver
    startProc('kube-apiserver', bin('kube-apiserver'), [
      '--bind-address=127.0.0.1',
      '--advertise-address=127.0.0.1',
      `--secure-port=${apiPort}`,
      `--etcd-servers=${etcdUrl}`,
      `--tls-cert-file=${f('apiserver.crt')}`,
      `--tls-private-key-file=${f('apiserver.key')}`,
      `--client-ca-file=${caFile}`,
      // Only so that components stop logging a missing requestheader CA; no proxy uses it.
      `--requestheader-client-ca-file=${caFile}`,
      '--requestheader-allowed-names=front-proxy-client',
      '--requestheader-username-headers=X-Remote-User',
      '--requestheader-group-headers=X-Remote-Group',
      '--requestheader-extra-headers-prefix=X-Remote-Extra-',
      '--authorization-mode=Node,RBAC',
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
      `--service-account-key-file=${f('sa.pub')}`,
      `--service-account-signing-key-file=${f('sa.key')}`,
      '--service-cluster-ip-range=10.96.0.0/16',
      // The kubernetes Service endpoint would be 127.0.0.1, which Endpoints validation rejects;
      // nothing in-cluster needs to reach the apiserver through it (kwok pods are fake).
      '--endpoint-reconciler-type=none',
      '--allow-privileged=true',
      '--profiling=false',
      '--v=1',
      ...(opts.extraArgs?.apiserver ?? []),
    ]);
    await waitFor('kube-apiserver /readyz', async () => (await rawRequest('GET', '/readyz')).status === 200);

    // --- controller-manager, scheduler, kwok: start together.
    startProc('kube-controller-manager', bin('kube-controller-manager'), [
      `--kubeconfig=${cmKubeconfig}`,
      `--authentication-kubeconfig=${cmKubeconfig}`,
      `--authorization-kubeconfig=${cmKubeconfig}`,
      '--bind-address=127.0.0.1',
      `--secure-port=${cmPort}`,
      `--service-account-private-key-file=${f('sa.key')}`,
      `--root-ca-file=${caFile}`,
      `--cluster-signing-cert-file=${caFile}`,
      `--cluster-signing-key-file=${f('ca.key')}`,
      '--use-service-account-credentials=true',
      '--controllers=*',
      // The node lifecycle controller lifts the not-ready taint on its monitor tick (default 5 s).
      '--node-monitor-period=1s',
      '--leader-elect=false',
      '--service-cluster-ip-range=10.96.0.0/16',
      '--v=1',
    ]);
    startProc('kube-scheduler', bin('kube-scheduler'), [
      `--kubeconfig=${schedKubeconfig}`,
      `--authentication-kubeconfig=${schedKubeconfig}`,
      `--authorization-kubeconfig=${schedKubeconfig}`,
      '--bind-address=127.0.0.1',
      `--secure-port=${schedPort}`,
      '--leader-elect=false',
      '--v=1',
    ]);
    startProc('kwok', bin('kwok'), [
      `--kubeconfig=${kwokKubeconfig}`,
      `--config=${stagesFile}`,
      '--manage-all-nodes=false',
      '--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake',
      '--node-ip=127.0.0.1',
      '--cidr=10.244.0.0/16',
      `--server-address=127.0.0.1:${kwokPort}`,
      '--node-lease-duration-seconds=40',
    ]);

    const env = (kubeconfig: string): NodeJS.ProcessEnv => ({ ...process.env, KUBECONFIG: kubeconfig });
    const run = async (name: BinaryName, args: string[], o: ExecOptions = {}): Promise<ExecResult> => {
      const r = await execFile(bin(name), args, env(o.kubeconfig ?? adminKubeconfig), {
        ...(o.input !== undefined ? { input: o.input } : {}),
        ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}),
      });
      if (o.check && r.code !== 0) {
        throw new Error(`${name} ${args.join(' ')} exited ${r.code}\n${r.stderr}${r.stdout}`);
      }
      return r;
    };
    const kubectl = (args: string[], o: ExecOptions = {}) =>
      run('kubectl', [`--kubeconfig=${o.kubeconfig ?? adminKubeconfig}`, ...args], o);

    // Fake nodes (no taints, so plain pods schedule), RBAC, CRDs: in parallel with the
    // controllers coming up.
    const nodeCount = opts.nodes ?? 3;
    const nodeNames = Array.from({ length: nodeCount }, (_, i) => `kwok-node-${i}`);
    const createNodes = Promise.all(
      nodeNames.map((name, i) =>
        request('POST', '/api/v1/nodes', {
          apiVersion: 'v1',
          kind: 'Node',
          metadata: {
            name,
            annotations: { 'kwok.x-k8s.io/node': 'fake', 'node.alpha.kubernetes.io/ttl': '0' },
            labels: {
              'kubernetes.io/arch': 'amd64',
              'kubernetes.io/hostname': name,
              'kubernetes.io/os': 'linux',
              'kubernetes.io/role': 'agent',
              'node-role.kubernetes.io/agent': '',
              type: 'kwok',
              'topology.kubernetes.io/zone': `zone-${i % 3}`,
            },
          },
          spec: {},
          status: {
            allocatable: { cpu: '32', memory: '256Gi', pods: '110' },
            capacity: { cpu: '32', memory: '256Gi', pods: '110' },
            nodeInfo: {
              architecture: 'amd64',
              kubeletVersion: 'fake',
              kubeProxyVersion: 'fake',
              operatingSystem: 'linux',
            },
            phase: 'Running',
          },
        }),
      ),
    );
    // The rollguard service account gets exactly what the chart grants (one source of truth).
    const applyRbac = (async () => {
      const rendered = await chartRbac(bin('helm'));
      await kubectl(['create', 'namespace', 'rollguard-system'], { check: true });
      await kubectl(['apply', '-n', 'rollguard-system', '-f', '-'], { check: true, input: rendered });
    })();
    const crdsIn = (dir: string) => fs.readdirSync(dir).filter((n) => n.endsWith('-crd.yaml')).map((n) => path.join(dir, n));
    const crdFiles = [
      ...(opts.argoCrds === false ? [] : crdsIn(CRD_DIR)),
      ...(opts.istioCrds ? crdsIn(path.join(CRD_DIR, 'istio')) : []),
    ];
    // Server-side apply: the CRDs are too large for client-side apply's last-applied annotation.
    const applyCrds = crdFiles.length
      ? kubectl(['apply', '--server-side', '--field-manager=rollguard-test', ...crdFiles.flatMap((c) => ['-f', c])], {
          check: true,
        })
      : Promise.resolve(undefined);
    await Promise.all([createNodes, applyRbac]);
    log(`nodes and RBAC submitted after ${Date.now() - t0} ms`);

    // The rollguard ServiceAccount's token (TokenRequest API) and its kubeconfig.
    const tok = await request<{ status: { token: string } }>(
      'POST',
      '/api/v1/namespaces/rollguard-system/serviceaccounts/rollguard/token',
      { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { expirationSeconds: 48 * 3600 } },
    );
    const rollguardToken = tok.status.token;
    const rollguardKubeconfig = path.join(dir, 'rollguard.kubeconfig');
    writeKubeconfig(rollguardKubeconfig, server, caFile, { token: rollguardToken }, 'rollguard');

    await Promise.all([
      applyCrds,
      waitFor('kube-controller-manager /healthz', async () => (await localStatus(cmPort, '/healthz')) === 200),
      // The serviceaccount controller creating default/default proves the controllers run.
      waitFor('default ServiceAccount', async () => {
        await request('GET', '/api/v1/namespaces/default/serviceaccounts/default');
        return true;
      }),
      waitFor('kube-scheduler /healthz', async () => (await localStatus(schedPort, '/healthz')) === 200),
      waitFor('fake nodes Ready', async () => {
        const list = await request<{
          items: { status?: { conditions?: { type: string; status: string }[] }; spec?: { taints?: unknown[] } }[];
        }>('GET', '/api/v1/nodes?labelSelector=type%3Dkwok');
        return (
          list.items.length === nodeCount &&
          list.items.every(
            (n) =>
              n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') &&
              !(n.spec?.taints ?? []).length,
          )
        );
      }),
      ...(crdFiles.length
        ? [
            waitFor('CRDs Established', async () => {
              const list = await request<{
                items: { metadata: { name: string }; status?: { conditions?: { type: string; status: string }[] } }[];
              }>('GET', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions');
              // Every file holds one CRD; all that exist must be Established.
              return (
                list.items.length >= crdFiles.length &&
                list.items.every((c) => c.status?.conditions?.some((x) => x.type === 'Established' && x.status === 'True'))
              );
            }),
          ]
        : []),
    ]);
    log(`control plane ready in ${Date.now() - t0} ms (${dir})`);

    return {
      dir,
      logDir,
      server,
      adminKubeconfig,
      rollguardKubeconfig,
      rollguardToken,
      caFile,
      nodeNames,
      bin,
      kubectl,
      run,
      request,
      logTails,
      poll: async <T,>(what: string, get: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 120_000): Promise<T> => {
        const until = Date.now() + timeoutMs;
        let last: T | undefined;
        let lastErr: unknown;
        while (Date.now() < until) {
          try {
            last = await get();
            if (ok(last)) return last;
          } catch (e) {
            lastErr = e;
          }
          await new Promise((r) => setTimeout(r, 200));
        }
        throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(last)?.slice(0, 2000)} ${lastErr ? String(lastErr) : ''}\n${logTails(15)}`);
      },
      pid: (name) => procs.find((p) => p.name === name && !p.exited)?.child.pid,
      stop: async (o) => {
        agent.destroy();
        await stop(o);
      },
    };
  } catch (e) {
    if (!stopped) {
      const tails = logTails();
      await stop({ keep: true });
      const msg = e instanceof Error ? e.message : String(e);
      if (msg.includes('run dir kept')) throw e;
      throw new Error(`${msg}\nrun dir kept: ${dir}\n${tails}`);
    }
    throw e;
  }
}
