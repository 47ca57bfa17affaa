// The Dockerfile, without a Docker engine (there is none on these machines): its structure, and
// its runtime stage replayed by hand — `npm ci --omit=dev` from the lockfile, the TypeScript build,
// the rules — in a fresh directory, then the image's entrypoint started from there with the
// HEALTHCHECK command run against it. That proves the runtime image's file layout works with
// production dependencies only and writes nothing into its own tree; it does not prove that the
// base image, the apt steps or the helm download work (those need an engine and the network).
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO_ROOT, freePorts } from '../../cluster/harness.js';

const dockerfile = fs.readFileSync(path.join(REPO_ROOT, 'Dockerfile'), 'utf8');
// logical lines (continuations joined)
const lines = dockerfile.replace(/\\\n/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
const stages = lines.filter((l) => /^FROM\s/i.test(l));

t.test('structure: multi-stage, npm ci --omit=dev from the lockfile, non-root, optional helm, HEALTHCHECK', async (t) => {
  t.ok(stages.length >= 3, `${stages.length} stages: ${stages.join(' | ')}`);
  t.ok(lines.some((l) => /^RUN npm ci --omit=dev\b/.test(l)), 'production dependencies with npm ci --omit=dev');
  t.notOk(lines.some((l) => /npm install\b/.test(l)), 'never npm install (it may move the lockfile)');
  t.ok(lines.some((l) => /^COPY package\.json package-lock\.json/.test(l)), 'the lockfile is copied before npm ci');
  const runtime = lines.slice(lines.lastIndexOf(stages[stages.length - 1]!));
  const user = runtime.filter((l) => /^USER\s/.test(l)).pop();
  t.match(user, /^USER 10001(:10001)?$/, 'the runtime stage ends as a numeric non-root user (runAsNonRoot can check it)');
  t.ok(runtime.some((l) => /^HEALTHCHECK .*\/healthz/.test(l)), 'HEALTHCHECK on /healthz');
  t.ok(lines.some((l) => /^ARG HELM_VERSION=""$/.test(l)), 'helm only when HELM_VERSION is given');
  t.ok(dockerfile.includes('sha256sum -c'), 'the helm download is checked against HELM_SHA256');
  t.ok(runtime.some((l) => /^COPY --from=helm .* \/usr\/local\/bin\/$/.test(l)), 'helm at /usr/local/bin/helm (the chart\'s actions.helm.bin)');
  t.ok(runtime.some((l) => /^EXPOSE 9095$/.test(l)));
  for (const s of stages) t.notMatch(s, /:latest\b/, `pinned base: ${s}`);
  const ignore = fs.readFileSync(path.join(REPO_ROOT, '.dockerignore'), 'utf8');
  t.match(ignore, /^\*$/m, '.dockerignore starts from nothing');
});

t.test('runtime stage replayed: prod-only node_modules + dist + rules start, answer the HEALTHCHECK, write nothing', async (t) => {
  const app = fs.mkdtempSync(path.join(os.tmpdir(), 'rollguard-image-'));
  t.teardown(() => fs.rmSync(app, { recursive: true, force: true }));
  for (const f of ['package.json', 'package-lock.json']) fs.copyFileSync(path.join(REPO_ROOT, f), path.join(app, f));
  const ci = spawnSync('npm', ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'], {
    cwd: app,
    encoding: 'utf8',
    timeout: 240_000,
  });
  t.equal(ci.status, 0, `npm ci --omit=dev: ${ci.stderr}`);
  t.notOk(fs.existsSync(path.join(app, 'node_modules', 'typescript')), 'no dev dependency in the image');
  const tsc = spawnSync(path.join(REPO_ROOT, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.build.json', '--outDir', path.join(app, 'dist')], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
    timeout: 240_000,
  });
  t.equal(tsc.status, 0, `npm run build: ${tsc.stdout}${tsc.stderr}`);
  const entry = /^ENTRYPOINT (\[.*\])$/m.exec(dockerfile);
  const cmd = /^CMD (\[.*\])$/m.exec(dockerfile);
  const argv = [...(JSON.parse(entry![1]!) as string[]), ...(JSON.parse(cmd![1]!) as string[])];
  t.same(argv, ['node', 'dist/main.js', 'serve']);
  t.ok(fs.existsSync(path.join(app, argv[1]!)), `${argv[1]} is what the build writes`);
  fs.cpSync(path.join(REPO_ROOT, 'rules'), path.join(app, 'rules'), { recursive: true, filter: (s) => !s.includes(`${path.sep}tests`) });

  const snapshot = () =>
    (fs.readdirSync(app, { recursive: true }) as string[])
      .sort()
      .map((p) => `${p} ${fs.lstatSync(path.join(app, p)).mtimeMs}`)
      .join('\n');
  const before = snapshot();
  const [port] = await freePorts(1);
  // the image's ENV (RULES_PATH is /app/rules there), no cluster, no Redis: the embedded defaults
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, NODE_ENV: 'production', PORT: String(port), RULES_PATH: path.join(app, 'rules'), HOME: '/nonexistent', LOG_LEVEL: 'warn' };
  const child = spawn(argv[0]!, argv.slice(1), { cwd: app, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });

  // the HEALTHCHECK's own command, as Docker would run it inside the container
  const hc = /^HEALTHCHECK .*CMD (\[.*\])$/m.exec(dockerfile.replace(/\\\n\s*/g, ''));
  const probe = JSON.parse(hc![1]!) as string[];
  let healthy = false;
  for (let i = 0; i < 100 && !healthy && child.exitCode === null; i++) {
    await new Promise((r) => setTimeout(r, 200));
    healthy = spawnSync(probe[0]!, probe.slice(1), { env, encoding: 'utf8', timeout: 10_000 }).status === 0;
  }
  t.ok(healthy, `HEALTHCHECK passes against the started image layout\n${output}`);
  const ready = await fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.status, () => 0);
  t.equal(ready, 200, 'ready: rules loaded from the image\'s rules/');

  child.kill('SIGTERM');
  t.equal(await exited, 0, 'SIGTERM: clean shutdown');
  t.equal(snapshot(), before, 'nothing written into the app tree (read-only root filesystem is fine)');
});
