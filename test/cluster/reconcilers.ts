// The real GitOps reconcilers on the test control plane: Flux's source-controller and
// kustomize-controller, and the Argo Rollouts controller, built by
// scripts/cluster/build-reconcilers.sh (this file never builds anything), with the upstream CRDs
// of the same releases. Each runs out of cluster on 127.0.0.1 with the admin kubeconfig, leader
// election off, its own log file in the cluster's log dir.
//
//   const cluster = await startCluster();
//   const flux = await startFlux(cluster);
//   t.teardown(async () => { await flux.stop(); await cluster.stop({ keep: !t.passing() }); });
//
// Children are process-group leaders; they are killed on stop(), on this process' exit, and by
// the cluster's reaper if node itself is SIGKILLed (their group ids go to the run dir's pgids file
// that the reaper reads).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startGitServer, type GitServer } from '../support/git-server.js';
import { onFreshPorts } from '../support/ports.js';
import { freePorts, procTails, REPO_ROOT, spawnGroup, startCluster, stopGroups, type Cluster, type Proc } from './harness.js';

export type ReconcilerProject = 'flux' | 'argo-rollouts';

const BUILD_SCRIPT = path.join(REPO_ROOT, 'scripts', 'cluster', 'build-reconcilers.sh');
const BINARIES: Record<ReconcilerProject, string[]> = {
  flux: ['source-controller', 'kustomize-controller'],
  'argo-rollouts': ['rollouts-controller'],
};

/** The cache dir build-reconcilers.sh fills for a project: {bin,crds}. */
export function reconcilerDir(project: ReconcilerProject): string {
  const r = spawnSync('bash', [BUILD_SCRIPT, '--print-dir', project], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`build-reconcilers.sh --print-dir ${project} failed: ${r.stderr}`);
  return r.stdout.trim();
}

/** Throws a clear error naming what is missing and how to build it. */
export function checkReconciler(project: ReconcilerProject): string {
  const dir = reconcilerDir(project);
  const missing = BINARIES[project].filter((b) => {
    try {
      fs.accessSync(path.join(dir, 'bin', b), fs.constants.X_OK);
      return false;
    } catch {
      return true;
    }
  });
  if (!fs.existsSync(path.join(dir, 'crds'))) missing.push('crds/');
  if (missing.length > 0) {
    throw new Error(
      `${project} reconciler missing in ${dir}: ${missing.join(', ')}.\n` +
        `Build it once with: bash scripts/cluster/build-reconcilers.sh ${project}  (cached afterwards; docs/benchmarks.md has the cold time)`,
    );
  }
  return dir;
}

export interface RunningReconciler {
  /** Log files by component name. */
  logs: Record<string, string>;
  logTails(lines?: number): string;
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A reconciler started as the control plane's processes are (spawnGroup): same log dir, same reaper. */
function startChild(cluster: Cluster, name: string, file: string, args: string[], env: NodeJS.ProcessEnv): Proc {
  return spawnGroup(name, file, args, { logDir: cluster.logDir, pidFile: path.join(cluster.dir, 'pgids'), env });
}

const stopChildren = (children: Proc[]) => stopGroups(children, 5_000);

/** Server-side applies the project's upstream CRDs and waits until each is Established. */
export async function installCrds(cluster: Cluster, crdDir: string): Promise<string[]> {
  const files = fs.readdirSync(crdDir).filter((n) => n.endsWith('.yaml')).sort().map((n) => path.join(crdDir, n));
  await cluster.kubectl(
    ['apply', '--server-side', '--force-conflicts', '--field-manager=rollguard-test', ...files.flatMap((f) => ['-f', f])],
    { check: true, timeoutMs: 60_000 },
  );
  const names: string[] = [];
  for (const f of files) {
    for (const m of fs.readFileSync(f, 'utf8').matchAll(/^kind: CustomResourceDefinition\s*\n(?:.*\n)*?\s{2}name: (\S+)/gm)) {
      if (m[1]) names.push(m[1]);
    }
  }
  await cluster.poll(
    `CRDs Established: ${names.join(', ')}`,
    () => cluster.request<{ items: { metadata: { name: string }; status?: { conditions?: { type: string; status: string }[] } }[] }>(
      'GET',
      '/apis/apiextensions.k8s.io/v1/customresourcedefinitions',
    ),
    (l) =>
      names.every((n) =>
        l.items.some((c) => c.metadata.name === n && c.status?.conditions?.some((x) => x.type === 'Established' && x.status === 'True')),
      ),
    60_000,
  );
  return names;
}

async function waitHealthy(cluster: Cluster, children: Proc[], what: string, url: string, timeoutMs = 90_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const dead = children.find((c) => c.exited);
    if (dead) throw new Error(`${dead.name} exited during start-up (${dead.exitInfo})\n${procTails(children, 40)}`);
    try {
      const r = await fetch(url, { signal: AbortSignal.timeout(2_000) });
      if (r.ok) return;
    } catch {
      /* not yet */
    }
    if (Date.now() > until) throw new Error(`timed out waiting for ${what} (${url})\n${procTails(children, 40)}`);
    await sleep(200);
  }
}

function running(children: Proc[]): RunningReconciler {
  return {
    logs: Object.fromEntries(children.map((c) => [c.name, c.logFile])),
    logTails: (lines = 25) => procTails(children, lines),
    stop: () => stopChildren(children),
  };
}

/** Namespace the Flux controllers run "in" (RUNTIME_NAMESPACE: their events and leases). */
export const FLUX_NAMESPACE = 'flux-system';

/**
 * Flux's source-controller (artifact server on 127.0.0.1) and kustomize-controller, with the
 * upstream source.toolkit.fluxcd.io and kustomize.toolkit.fluxcd.io CRDs installed.
 */
export async function startFlux(cluster: Cluster): Promise<RunningReconciler> {
  const dir = checkReconciler('flux');
  await Promise.all([
    installCrds(cluster, path.join(dir, 'crds')),
    cluster.kubectl(['create', 'namespace', FLUX_NAMESPACE], { check: true }),
  ]);
  const storage = path.join(cluster.dir, 'flux-storage');
  fs.mkdirSync(storage, { recursive: true });
  const env = { ...process.env, KUBECONFIG: cluster.adminKubeconfig, RUNTIME_NAMESPACE: FLUX_NAMESPACE };
  // leader election is off unless --enable-leader-election
  const common = ['--log-level=info', '--log-encoding=json', '--watch-all-namespaces=true'];
  return onFreshPorts('flux', async () => {
    const [storagePort, scMetrics, scHealth, kcMetrics, kcHealth] = (await freePorts(5)) as [number, number, number, number, number];
    const children: Proc[] = [];
    try {
      children.push(
        startChild(cluster, 'source-controller', path.join(dir, 'bin', 'source-controller'), [
          ...common,
          `--storage-path=${storage}`,
          `--storage-addr=127.0.0.1:${storagePort}`,
          `--storage-adv-addr=127.0.0.1:${storagePort}`,
          `--metrics-addr=127.0.0.1:${scMetrics}`,
          `--health-addr=127.0.0.1:${scHealth}`,
        ], env),
        startChild(cluster, 'kustomize-controller', path.join(dir, 'bin', 'kustomize-controller'), [
          ...common,
          `--metrics-addr=127.0.0.1:${kcMetrics}`,
          `--health-addr=127.0.0.1:${kcHealth}`,
          '--no-remote-bases=true',
        ], env),
      );
      await Promise.all([
        waitHealthy(cluster, children, 'source-controller /readyz', `http://127.0.0.1:${scHealth}/readyz`),
        waitHealthy(cluster, children, 'kustomize-controller /readyz', `http://127.0.0.1:${kcHealth}/readyz`),
      ]);
    } catch (e) {
      await stopChildren(children);
      throw e;
    }
    return running(children);
  }, portTakenIn);
}

/**
 * The Argo Rollouts controller (rollouts-controller), after re-applying the argoproj.io CRDs of
 * its own release. Its healthz and metrics servers bind every address on the given free ports
 * (the controller has no bind-address flag); the tests only reach them on 127.0.0.1.
 */
export async function startArgoRollouts(cluster: Cluster): Promise<RunningReconciler> {
  const dir = checkReconciler('argo-rollouts');
  await installCrds(cluster, path.join(dir, 'crds'));
  return onFreshPorts('argo-rollouts', async () => {
    const [healthz, metrics] = (await freePorts(2)) as [number, number];
    const children: Proc[] = [];
    try {
      children.push(
        startChild(cluster, 'rollouts-controller', path.join(dir, 'bin', 'rollouts-controller'), [
          `--kubeconfig=${cluster.adminKubeconfig}`,
          '--leader-elect=false',
          `--healthzPort=${healthz}`,
          `--metricsPort=${metrics}`,
          '--loglevel=info',
          '--logformat=json',
        ], { ...process.env }),
      );
      await waitHealthy(cluster, children, 'rollouts-controller /healthz', `http://127.0.0.1:${healthz}/healthz`);
    } catch (e) {
      await stopChildren(children);
      throw e;
    }
    return running(children);
  }, portTakenIn);
}

/** A reconciler's start failed because a port picked for it was taken before its bind (its log tail says so). */
const portTakenIn = (err: unknown): boolean => /address already in use/i.test(String(err));

/**
 * A control plane (no Argo Rollouts CRDs) with Flux running and a local git server: what the
 * GitOps tests start. stop(keep) stops all three, Flux first.
 */
export async function startFluxEnvironment(): Promise<{ cluster: Cluster; flux: RunningReconciler; git: GitServer; stop(keep: boolean): Promise<void> }> {
  const cluster = await startCluster({ argoCrds: false });
  const flux = await startFlux(cluster).catch(async (e: unknown) => {
    await cluster.stop({ keep: true });
    throw e;
  });
  const git = await startGitServer();
  return {
    cluster,
    flux,
    git,
    stop: async (keep) => {
      await flux.stop();
      await git.stop();
      await cluster.stop({ keep });
    },
  };
}
