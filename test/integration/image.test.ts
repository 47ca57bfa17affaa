// The container image, built from the Dockerfile and started for real, without a Docker engine:
// scripts/image/build.sh builds it with buildah on the local base (Debian from debootstrap, Node.js
// from the npm registry), and scripts/image/run.sh starts it as a container runtime would (its
// entrypoint, its user, its environment, a read-only root, a tmpfs /tmp). Both the default image and
// the HelmRelease variant (helm from the test control plane's cache, no download) are built.
import t, { type Test } from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO_ROOT, defaultBinDir, readVersions } from '../cluster/harness.js';
import { killOnExit, stopChild } from '../support/children.js';
import { fixture, WEBHOOK_TOKEN } from '../support/app.js';
import { freePort, waitForProcess } from '../support/ports.js';

// A cold build (npm ci twice through the registry) takes minutes: well above the suite's per-file default.
t.setTimeout(30 * 60_000);

const BUILD = path.join(REPO_ROOT, 'scripts', 'image', 'build.sh');
const RUN = path.join(REPO_ROOT, 'scripts', 'image', 'run.sh');
const HELM_VERSION = readVersions().HELM_VERSION!;
if (!fs.existsSync(path.join(defaultBinDir(), 'helm'))) {
  throw new Error(`helm binary missing in ${defaultBinDir()}: build the test toolchain with 'bash scripts/cluster/build.sh'`);
}

interface Result { code: number | null; stdout: string; stderr: string }
function run(cmd: string, args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = killOnExit(spawn(cmd, args, { cwd: REPO_ROOT, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] }));
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d) => (stdout += d));
    child.stderr!.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
const buildah = (...args: string[]) => run('buildah', args);

interface ImageConfig {
  User: string;
  Env: string[];
  WorkingDir: string;
  Entrypoint: string[];
  Cmd: string[];
  Labels: Record<string, string>;
  Healthcheck?: { Test: string[] };
}
async function imageConfig(image: string): Promise<ImageConfig> {
  const r = await buildah('inspect', '--type', 'image', image);
  if (r.code !== 0) throw new Error(`buildah inspect ${image}: ${r.stderr}`);
  const info = JSON.parse(r.stdout) as { Docker: { config: ImageConfig } };
  return info.Docker.config;
}

/** The image's root filesystem, mounted read-only for the test's eyes; unmounted at teardown. */
async function mountImage(t: Test, image: string): Promise<string> {
  const from = await buildah('from', '--pull-never', image);
  if (from.code !== 0) throw new Error(`buildah from ${image}: ${from.stderr}`);
  const ctr = from.stdout.trim();
  t.teardown(async () => {
    await buildah('umount', ctr);
    await buildah('rm', ctr);
  });
  const mnt = await buildah('mount', ctr);
  if (mnt.code !== 0) throw new Error(`buildah mount: ${mnt.stderr}`);
  return mnt.stdout.trim();
}

// ---- build both images once, for every test below
let images: string[] = [];
let buildLog = '';
t.before(async () => {
  const r = await run('bash', [BUILD], { timeoutMs: 28 * 60_000 });
  buildLog = r.stderr;
  if (r.code !== 0) throw new Error(`scripts/image/build.sh exited ${r.code}\n${r.stderr}`);
  images = r.stdout.trim().split('\n');
});
const version = (JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const IMAGE = `localhost/rollguard:${version}`;
const HELM_IMAGE = `${IMAGE}-helm`;

t.test('npm run image builds the default image and the HelmRelease variant; their sizes are printed', async (t) => {
  t.same(images, [IMAGE, HELM_IMAGE]);
  for (const name of images) {
    const line = buildLog.split('\n').find((l) => l.startsWith(`[image/build] ${name}: `));
    t.ok(line, `size line for ${name}`);
    t.match(line, /: [0-9a-f]{12} [0-9.]+ MB \(\d+ bytes; base [0-9.]+ MB \+ rollguard [0-9.]+ MB\), built in \d+ s$/);
    t.comment(line!.replace('[image/build] ', ''));
  }
  const pkg = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  t.equal(pkg.scripts.image, 'bash scripts/image/build.sh', 'npm run image is this script');
});

t.test('image config: uid 10001, the entrypoint and command, the environment, the HEALTHCHECK', async (t) => {
  const c = await imageConfig(IMAGE);
  t.equal(c.User, '10001:10001');
  t.same([...c.Entrypoint, ...c.Cmd], ['node', 'dist/main.js', 'serve']);
  t.equal(c.WorkingDir, '/app');
  for (const kv of ['NODE_ENV=production', 'NODE_OPTIONS=--max-semi-space-size=4 --max-old-space-size=192', 'PORT=9095', 'RULES_PATH=/app/rules', 'HELM_BIN=/usr/local/bin/helm']) t.ok(c.Env.includes(kv), kv);
  t.match(c.Healthcheck?.Test.join(' '), /\/healthz/, 'HEALTHCHECK kept (docker format)');
  t.equal(c.Labels['io.rollguard.helm-version'], '', 'no helm in the default image');
  t.equal((await imageConfig(HELM_IMAGE)).Labels['io.rollguard.helm-version'], HELM_VERSION);
});

t.test('the final image holds no dev dependency, no source, no test', async (t) => {
  const root = await mountImage(t, IMAGE);
  const app = path.join(root, 'app');
  t.same(fs.readdirSync(app).sort(), ['dist', 'node_modules', 'package.json', 'rules']);
  t.ok(fs.existsSync(path.join(app, 'dist', 'main.js')), 'dist/main.js');
  // the build bundles the Kubernetes client (scripts/bundle-client-node.mjs; test/e2e/built-client.test.ts runs such a build on a cluster)
  const client = fs.readFileSync(path.join(app, 'dist', 'kube', 'client-node.js'), 'utf8');
  t.ok(client.startsWith('// rollguard: @kubernetes/client-node bundled by scripts/bundle-client-node.mjs'), 'dist/kube/client-node.js is the bundled client');
  t.notMatch(client, /from ['"]@kubernetes\/client-node/, 'which imports nothing of the library');
  const lock = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean; optional?: boolean }> };
  const devOnly = Object.entries(lock.packages).filter(([p, v]) => p && v.dev).map(([p]) => p);
  t.ok(devOnly.length > 50, `${devOnly.length} dev-only packages in the lockfile`);
  t.same(devOnly.filter((p) => fs.existsSync(path.join(app, p))), [], 'none of them in /app');
  for (const p of ['typescript', 'tap', 'tsx', '@tapjs', 'fast-check', 'autocannon']) t.notOk(fs.existsSync(path.join(app, 'node_modules', p)), `no node_modules/${p}`);
  const pkg = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
  for (const d of Object.keys(pkg.dependencies)) t.ok(fs.existsSync(path.join(app, 'node_modules', d, 'package.json')), `production dependency ${d}`);
  const tsFiles = (fs.readdirSync(app, { recursive: true }) as string[]).filter((p) => !p.startsWith('node_modules') && /\.(ts|tsx|mts|cts)$/.test(p));
  t.same(tsFiles, [], 'no TypeScript source under /app');
  t.notOk(fs.existsSync(path.join(root, 'src')), 'no /src (the build stage)');
  t.notOk(fs.existsSync(path.join(app, 'rules', 'tests')), 'no rule tests');
  const shippedRules = fs.readdirSync(path.join(REPO_ROOT, 'rules')).filter((f) => f.endsWith('.yaml')).sort();
  t.same(fs.readdirSync(path.join(app, 'rules')).sort(), shippedRules, "the repository's rule files");
  t.notOk(fs.existsSync(path.join(root, 'usr', 'local', 'bin', 'helm')), 'no helm in the default image');
  t.notOk(fs.existsSync(path.join(root, 'root', '.npm')), 'no npm cache');
});

interface Started { proc: ChildProcess; out: () => string; exited: Promise<number | null> }
function start(image: string, args: string[]): Started {
  const proc = killOnExit(spawn('bash', [RUN, ...args, image], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] }));
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  return { proc, out: () => out, exited: new Promise((r) => proc.once('exit', (code) => r(code))) };
}

t.test('started as the image starts it: /healthz, /readyz, the HEALTHCHECK, an alert, then SIGTERM stops it cleanly', async (t) => {
  const port = await freePort();
  const env = ['-e', `PORT=${port}`, '-e', 'HOST=127.0.0.1', '-e', `WEBHOOK_TOKEN=${WEBHOOK_TOKEN}`, '-e', 'SHUTDOWN_TIMEOUT=15s', '-e', 'LOG_LEVEL=info'];
  const s = start(IMAGE, env);
  t.teardown(() => stopChild(s.proc, 20_000));
  const url = `http://127.0.0.1:${port}`;
  await waitForProcess(`the image serving on ${port}`, async () => (await fetch(`${url}/healthz`)).ok, s.exited, (code) => `the image exited with ${code}: ${s.out()}`, 60_000, 200);
  const ready = await fetch(`${url}/readyz`);
  t.equal(ready.status, 200, 'ready');
  t.match(await ready.json(), { ready: true, checks: { rules: 'ok' } });
  const logs = () => s.out().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
  t.match(logs().find((l) => l.msg === 'rollguard serving'), { rules: fs.readdirSync(path.join(REPO_ROOT, 'rules')).filter((f) => f.endsWith('.yaml')).length, store: 'memory' });

  // the image's own HEALTHCHECK command, run in the image as Docker would run it
  const hc = (await imageConfig(IMAGE)).Healthcheck!.Test;
  t.equal(hc[0], 'CMD');
  const probe = await run('bash', [RUN, '-e', `PORT=${port}`, '--entrypoint', hc[1]!, IMAGE, ...hc.slice(2)]);
  t.equal(probe.code, 0, `HEALTHCHECK passes: ${probe.stderr}`);

  const res = await fetch(`${url}/v1/alerts`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${WEBHOOK_TOKEN}` },
    body: fixture('alertmanager/firing-two-alerts.json'),
  });
  t.equal(res.status, 200, 'an Alertmanager batch accepted');

  s.proc.kill('SIGTERM');
  const code = await s.exited;
  t.equal(code, 0, `exit 0 on SIGTERM\n${s.out()}`);
  const msgs = logs().map((l) => l.msg);
  t.ok(msgs.includes('shutting down: no new requests, draining the queue'));
  t.ok(msgs.includes('stopped'), 'stopped within SHUTDOWN_TIMEOUT (past it the process logs "shutdown took too long" and exits 1)');
  t.notOk(msgs.includes('shutdown took too long; exiting'));
  t.equal(logs().filter((l) => l.msg === 'rollback record closed').length, 2, 'both queued alerts handled before exit');
});

t.test('inside the image: uid 10001, the root read-only, /tmp writable, the image environment only', async (t) => {
  const script = [
    "const fs = require('fs');",
    'const tryWrite = (f) => { try { fs.writeFileSync(f, "x"); return "ok"; } catch (e) { return e.code; } };',
    'console.log(JSON.stringify({ uid: process.getuid(), gid: process.getgid(), cwd: process.cwd(), app: tryWrite("/app/x"), etc: tryWrite("/etc/x"), tmp: tryWrite("/tmp/x"), env: Object.keys(process.env).sort() }));',
  ].join(' ');
  const r = await run('bash', [RUN, '--entrypoint', 'node', IMAGE, '-e', script]);
  t.equal(r.code, 0, r.stderr);
  const seen = JSON.parse(r.stdout) as { uid: number; gid: number; cwd: string; app: string; etc: string; tmp: string; env: string[] };
  t.match(seen, { uid: 10001, gid: 10001, cwd: '/app', app: 'EROFS', etc: 'EROFS', tmp: 'ok' });
  const c = await imageConfig(IMAGE);
  t.same(seen.env, c.Env.map((kv) => kv.split('=')[0]).sort(), "the image's environment, nothing of the host's");
});

t.test('rollguard rules check works inside the image', async (t) => {
  const ok = await run('bash', [RUN, IMAGE, 'rules', 'check']);
  t.equal(ok.code, 0, ok.stderr);
  const n = fs.readdirSync(path.join(REPO_ROOT, 'rules')).filter((f) => f.endsWith('.yaml')).length;
  t.match(ok.stdout, new RegExp(`SUCCESS: ${n} rules in ${n} files`));
  const missing = await run('bash', [RUN, IMAGE, 'rules', 'check', '/app/rules/none.yaml']);
  t.equal(missing.code, 1, 'a missing rule file fails the check');
  t.match(missing.stderr, /\/app\/rules\/none\.yaml:0: cannot read: ENOENT/);
});

t.test('the HelmRelease variant: the cached helm, as uid 10001, on the read-only root', async (t) => {
  const r = await run('bash', [RUN, '--entrypoint', '/usr/local/bin/helm', HELM_IMAGE, 'version', '--template', '{{.Version}}']);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout.trim(), HELM_VERSION);
  // helm's cache, config and data homes are under /tmp (the image's HELM_*_HOME): it can write them
  const env = await run('bash', [RUN, '--entrypoint', '/usr/local/bin/helm', HELM_IMAGE, 'env']);
  t.match(env.stdout, /HELM_CACHE_HOME="\/tmp\/helm\/cache"/);
  const root = await mountImage(t, HELM_IMAGE);
  const st = fs.statSync(path.join(root, 'usr', 'local', 'bin', 'helm'));
  t.equal(st.uid, 0, 'owned by root');
  t.equal(st.mode & 0o777, 0o755);
});

t.test('the Dockerfile refuses to download helm without its checksum, and a supplied helm of another version', async (t) => {
  const base = (await run('bash', [path.join(REPO_ROOT, 'scripts', 'image', 'base.sh'), '--name'])).stdout.trim();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rollguard-helm-bin-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const empty = path.join(dir, 'empty');
  const fake = path.join(dir, 'fake');
  fs.mkdirSync(empty);
  fs.mkdirSync(fake);
  fs.writeFileSync(path.join(fake, 'helm'), '#!/bin/sh\necho v0.0.1\n', { mode: 0o755 });
  const bud = (context: string, ...args: string[]) =>
    buildah('bud', '--isolation', 'chroot', '--pull=never', '--layers', '--force-rm', '--format', 'docker', '--target', 'helm', '--build-arg', `NODE_IMAGE=${base}`, '--build-context', `helm-bin=${context}`, ...args, '-f', 'Dockerfile', '.');

  const noSum = await bud(empty, '--build-arg', `HELM_VERSION=${HELM_VERSION}`);
  t.not(noSum.code, 0, 'no HELM_SHA256: the build fails');
  t.match(noSum.stdout + noSum.stderr, /only done with its checksum: --build-arg HELM_SHA256=/);
  t.notMatch(noSum.stdout + noSum.stderr, /Reading package lists|^(Get|Hit|Ign):\d/m, 'before anything is fetched (apt-get did not run)');
  const badSum = await bud(empty, '--build-arg', `HELM_VERSION=${HELM_VERSION}`, '--build-arg', 'HELM_SHA256=abc123');
  t.not(badSum.code, 0, 'a HELM_SHA256 that is no sha256: the build fails');
  t.match(badSum.stdout + badSum.stderr, /HELM_SHA256='abc123'/);
  const wrong = await bud(fake, '--build-arg', `HELM_VERSION=${HELM_VERSION}`);
  t.not(wrong.code, 0, 'a supplied helm that reports another version: the build fails');
  t.match(wrong.stdout + wrong.stderr, new RegExp(`reports 'v0\\.0\\.1', not HELM_VERSION=${HELM_VERSION.replace(/\./g, '\\.')}`));
  const unnamed = await bud(fake);
  t.not(unnamed.code, 0, 'a supplied helm without HELM_VERSION: the build fails');
  t.match(unnamed.stdout + unnamed.stderr, /HELM_VERSION is empty/);
  const none = await bud(empty);
  t.equal(none.code, 0, `no HELM_VERSION, nothing supplied: no helm, no download\n${none.stderr}`);
});
