// What `rollguard serve` loads: without a cluster (the embedded default, dry-run) it never loads
// @kubernetes/client-node, which alone adds about 66 MB of RSS (docs/benchmarks.md, "Footprint");
// with one configured it does. A real serve process, every resolved module recorded by a module
// hook (test/support/hooks/modules-loaded.mjs).
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { fixture, WEBHOOK_TOKEN } from '../support/app.js';
import { ROOT, startServe } from '../support/serve.js';

const HOOK = join(ROOT, 'test/support/hooks/modules-loaded.mjs');
const CLIENT_NODE = '/node_modules/@kubernetes/client-node/';

async function loadedBy(t: Test, env: Record<string, string>): Promise<string[]> {
  const out = join(mkdtempSync(join(tmpdir(), 'rg-footprint-')), 'modules');
  writeFileSync(out, '');
  const s = await startServe({ WEBHOOK_TOKEN, NODE_OPTIONS: `--import=${HOOK}`, MODULES_LOADED_OUT: out, ...env });
  t.teardown(() => s.proc.kill('SIGKILL'));
  // an alert through the engine: what deciding a rollback loads is loaded too
  const res = await fetch(`${s.url}/v1/alerts`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${WEBHOOK_TOKEN}` },
    body: fixture('alertmanager/firing-two-alerts.json'),
  });
  t.equal(res.status, 200, 'the alert is taken');
  s.proc.kill('SIGTERM');
  t.equal(await s.exited, 0, s.stderr());
  const urls = readFileSync(out, 'utf8').split('\n').filter(Boolean);
  t.ok(urls.some((u) => u.endsWith('/src/main.ts')), `the hook saw the process load (${urls.length} modules)`);
  return urls;
}

t.test('no cluster configured: the Kubernetes client library is never loaded', async (t) => {
  const urls = await loadedBy(t, {});
  t.same(urls.filter((u) => u.includes(CLIENT_NODE)), [], 'nothing of @kubernetes/client-node');
  t.ok(urls.some((u) => u.endsWith('/src/kube/kube.ts')), 'the contract is loaded');
});

t.test('a cluster configured: it is loaded, with the client', async (t) => {
  const kubeconfig = join(mkdtempSync(join(tmpdir(), 'rg-footprint-kc-')), 'kubeconfig');
  // a kubeconfig that loads (nothing needs to answer on it for this)
  writeFileSync(
    kubeconfig,
    'apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n',
  );
  const urls = await loadedBy(t, { KUBECONFIG: kubeconfig, DRY_RUN: 'true' });
  t.ok(urls.some((u) => u.includes(CLIENT_NODE)), '@kubernetes/client-node is loaded');
  t.ok(urls.some((u) => u.endsWith('/src/kube/client.ts')), 'and the client over it');
});
