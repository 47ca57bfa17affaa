// The measured process of bench/config-snapshots.ts: what `rollguard serve` runs for CONFIG_SNAPSHOTS,
// from the build (dist/, as in production), started by the benchmark with the image's V8 flags and
// `--expose-gc --import ./bench/gc-on-signal.mjs` (SIGUSR2: a full GC, then its memory on stderr).
// It loads the Kubernetes client and the watcher, makes one API call (so the HTTP/TLS paths are
// loaded before the baseline is taken, as they are in a rollguard that has talked to its cluster),
// then waits for the benchmark's commands over the IPC channel:
//   start  ConfigSnapshots.start() as src/main.ts's startSnapshots() builds it; answers
//          { synced: ms until every watch handed over its first list, watched } and then
//          { idle: ms until the snapshots that start-up scheduled were all taken }
//   idle   answers { idle } once no snapshot is being taken
//   mem    a GC, then answers { mem } with process.memoryUsage() in MB (heapTotal: what V8 holds)
//   stop   stops the watches and exits
// Logs (one JSON line per snapshot taken, pino at info as rollguard logs) go to stdout, which the
// benchmark sends to /dev/null.
import { pino } from 'pino';
import { ConfigSnapshots } from '../dist/config-deps/watch.js';
import { RESOURCES } from '../dist/kube/kube.js';
import { createKube } from '../dist/kube/config.js';

const env = process.env;
const kube = await createKube({ mode: 'kubeconfig', path: env.KUBECONFIG });
if (!kube) throw new Error('no KUBECONFIG');
const logger = pino({ level: 'info' });
const snapshots = new ConfigSnapshots({
  kube,
  logger: logger.child({ component: 'config-snapshots' }),
  namespaces: (env.SCOPE_NAMESPACES ?? '').split(',').filter(Boolean),
  denyNamespaces: [],
  max: Number(env.CONFIG_SNAPSHOTS_MAX ?? 10),
  secrets: false,
  // what the chart generates: 48 random characters (the signature's cost is part of the measure)
  key: env.CONFIG_SNAPSHOTS_KEY ?? 'bench-snapshot-key-0123456789abcdef-0123456789ab',
});
await kube.list(RESOURCES.configmaps, 'default');

const send = (m) => process.send?.(m);
process.on('message', async (m) => {
  try {
    if (m.cmd === 'start') {
      const t0 = performance.now();
      await snapshots.start();
      send({ synced: performance.now() - t0, watched: snapshots.watched });
      await snapshots.idle();
      send({ idle: performance.now() - t0 });
    } else if (m.cmd === 'idle') {
      const t0 = performance.now();
      await snapshots.idle();
      send({ idle: performance.now() - t0 });
    } else if (m.cmd === 'mem') {
      globalThis.gc?.();
      const u = process.memoryUsage();
      const mb = (x) => Math.round((x / 2 ** 20) * 10) / 10;
      send({ mem: { rssMb: mb(u.rss), heapTotalMb: mb(u.heapTotal), heapUsedMb: mb(u.heapUsed), externalMb: mb(u.external), arrayBuffersMb: mb(u.arrayBuffers) } });
    } else if (m.cmd === 'stop') {
      await snapshots.stop();
      process.exit(0);
    }
  } catch (err) {
    send({ error: err instanceof Error ? err.stack : String(err) });
  }
});
send({ ready: true });
