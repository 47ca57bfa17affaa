// `npm run cluster [-- --nodes N] [--no-argo-crds] [--istio-crds] [--reconcilers flux,argo-rollouts] [--env-file FILE] [--keep] [--exit-when-ready]`
//
// Starts the local test control plane (see harness.ts), prints the kubeconfig paths and
// stays up until Ctrl-C / SIGTERM, then stops every process it started.
// --env-file FILE  also writes KUBECONFIG=..., ROLLGUARD_KUBECONFIG=..., ... to FILE (sourceable).
// --reconcilers LIST  also start those real reconcilers (reconcilers.ts; built by build-reconcilers.sh).
// --exit-when-ready start, print, stop at once (used to measure warm start time).
import * as fs from 'node:fs';
import { startCluster } from './harness.js';
import { startArgoRollouts, startFlux, type ReconcilerProject, type RunningReconciler } from './reconcilers.js';

function parseArgs(argv: string[]) {
  const o = { nodes: 3, argoCrds: true, istioCrds: false, envFile: '', keep: false, exitWhenReady: false, reconcilers: [] as ReconcilerProject[] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--nodes') o.nodes = Number(argv[++i]);
    else if (a === '--no-argo-crds') o.argoCrds = false;
    else if (a === '--istio-crds') o.istioCrds = true;
    else if (a === '--reconcilers') {
      for (const r of (argv[++i] ?? '').split(',').filter(Boolean)) {
        if (r !== 'flux' && r !== 'argo-rollouts') throw new Error(`--reconcilers: unknown '${r}' (flux, argo-rollouts)`);
        o.reconcilers.push(r);
      }
    } else if (a === '--env-file') o.envFile = argv[++i] ?? '';
    else if (a === '--keep') o.keep = true;
    else if (a === '--exit-when-ready') o.exitWhenReady = true;
    else if (a === '-h' || a === '--help') {
      process.stdout.write(
        'usage: npm run cluster -- [--nodes N] [--no-argo-crds] [--istio-crds] [--reconcilers flux,argo-rollouts] [--env-file FILE] [--keep] [--exit-when-ready]\n',
      );
      process.exit(0);
    } else {
      process.stderr.write(`unknown argument: ${a}\n`);
      process.exit(2);
    }
  }
  if (!Number.isInteger(o.nodes) || o.nodes < 1) throw new Error('--nodes needs a positive integer');
  return o;
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const t0 = Date.now();
  const cluster = await startCluster({
    nodes: o.nodes,
    argoCrds: o.argoCrds,
    istioCrds: o.istioCrds,
    log: (m) => process.stderr.write(`[cluster] ${m}\n`),
  });
  const running: RunningReconciler[] = [];
  for (const r of o.reconcilers) {
    const t1 = Date.now();
    try {
      running.push(await (r === 'flux' ? startFlux(cluster) : startArgoRollouts(cluster)));
    } catch (e) {
      for (const x of running) await x.stop();
      await cluster.stop({ keep: true });
      throw e;
    }
    process.stderr.write(`[cluster] ${r} ready in ${Date.now() - t1} ms\n`);
  }
  const secs = ((Date.now() - t0) / 1000).toFixed(1);
  const vars: Record<string, string> = {
    KUBECONFIG: cluster.adminKubeconfig,
    ROLLGUARD_KUBECONFIG: cluster.rollguardKubeconfig,
    ROLLGUARD_CLUSTER_SERVER: cluster.server,
    ROLLGUARD_CLUSTER_DIR: cluster.dir,
    ROLLGUARD_KUBECTL: cluster.bin('kubectl'),
    ROLLGUARD_HELM: cluster.bin('helm'),
  };
  if (o.envFile) {
    fs.writeFileSync(o.envFile, Object.entries(vars).map(([k, v]) => `export ${k}=${v}`).join('\n') + '\n');
  }
  process.stdout.write(
    `control plane ready in ${secs}s\n` +
      `admin kubeconfig:    ${cluster.adminKubeconfig}\n` +
      `rollguard kubeconfig: ${cluster.rollguardKubeconfig}\n` +
      `server:              ${cluster.server}\n` +
      `logs:                ${cluster.logDir}\n` +
      `try: ${cluster.bin('kubectl')} --kubeconfig ${cluster.adminKubeconfig} get nodes\n` +
      Object.entries(vars).map(([k, v]) => `export ${k}=${v}`).join('\n') +
      '\n',
  );

  let stopping = false;
  const shutdown = async (sig: string) => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`[cluster] ${sig}: stopping\n`);
    for (const x of running) await x.stop();
    await cluster.stop({ keep: o.keep });
    if (o.envFile) fs.rmSync(o.envFile, { force: true });
    process.exit(0);
  };
  if (o.exitWhenReady) {
    await shutdown('ready');
    return;
  }
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGHUP', () => void shutdown('SIGHUP'));
  process.stdout.write('press Ctrl-C to stop\n');
  // Stay up; a component dying is reported but the cluster is left for inspection until stopped.
  setInterval(() => {}, 1 << 30);
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
