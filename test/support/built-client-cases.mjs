// Runs, under plain node, cases against the Kubernetes client of a build (DIST/kube/config.js,
// client.js, and the bundled client-node.js scripts/bundle-client-node.mjs made), for
// test/e2e/built-client.test.ts: each way a user gives rollguard a cluster, read through it.
//
//   node built-client-cases.mjs < {"dist": DIST, "cases": [Case, ...]}
//
// A Case: { name, source?: KubeSource, inClusterPrefix?: string, env?: {NAME: value | null},
// op: 'load' | 'list' | 'get' | 'watch', resource?, namespace?, object?, timeoutMs?, repeat? }.
// `inClusterPrefix`: KubeConfig.loadFromCluster(prefix), what createKube({mode: 'in-cluster'})
// runs with no prefix, its service-account files under the prefix. `env`: set (null: unset) for
// the case only. 'watch': a watch of the namespace's ConfigMaps, one created once it is synced.
// Prints one JSON line per case: {name, ok: true, items?, events?} or {name, ok: false, status,
// reason, message}.
import { join } from 'node:path';

const input = JSON.parse(await new Promise((resolve) => {
  let s = '';
  process.stdin.setEncoding('utf8').on('data', (d) => (s += d)).on('end', () => resolve(s));
}));
const { createKube } = await import(join(input.dist, 'kube/config.js'));
const { ClientNodeKube } = await import(join(input.dist, 'kube/client.js'));
const { RESOURCES } = await import(join(input.dist, 'kube/kube.js'));

async function kubeOf(c) {
  if (c.inClusterPrefix === undefined) return createKube(c.source, c.timeoutMs ? { timeoutMs: c.timeoutMs } : {});
  const { KubeConfig } = await import(join(input.dist, 'kube/client-node.js'));
  const kc = new KubeConfig();
  kc.loadFromCluster(c.inClusterPrefix);
  return new ClientNodeKube(kc);
}

async function watchOnce(kube, namespace) {
  const events = [];
  let seen;
  const created = `built-watch-${Date.now()}`;
  const arrived = new Promise((resolve) => (seen = resolve));
  const handle = kube.watch(RESOURCES.configmaps, namespace, {
    onEvent: (type, obj) => {
      events.push(`${type} ${obj.kind}/${obj.metadata?.name}`);
      if (obj.metadata?.name === created) seen();
    },
    onError: (err) => events.push(`error ${err?.message}`),
  });
  try {
    await handle.synced;
    await kube.create(RESOURCES.configmaps, namespace, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: created }, data: { a: '1' } });
    let timer;
    await Promise.race([arrived, new Promise((resolve) => (timer = setTimeout(resolve, 30_000)))]);
    clearTimeout(timer);
    return { events, created };
  } finally {
    handle.stop();
  }
}

for (const c of input.cases) {
  const saved = {};
  for (const [k, v] of Object.entries(c.env ?? {})) {
    saved[k] = process.env[k];
    if (v === null) delete process.env[k];
    else process.env[k] = v;
  }
  try {
    const kube = await kubeOf(c);
    let out = {};
    if (c.op === 'list') for (let i = 0; i < (c.repeat ?? 1); i++) out = { items: (await kube.list(RESOURCES[c.resource], c.namespace)).map((o) => o.metadata?.name) };
    else if (c.op === 'get') out = { items: [(await kube.get(RESOURCES[c.resource], c.namespace, c.object)).metadata?.name] };
    else if (c.op === 'watch') out = await watchOnce(kube, c.namespace);
    console.log(JSON.stringify({ name: c.name, ok: true, ...out }));
  } catch (err) {
    console.log(JSON.stringify({ name: c.name, ok: false, status: err?.status, reason: err?.reason, message: String(err?.message) }));
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}
// the watch's and the pooled reads' kept-alive connections would hold the process open
process.exit(0);
