// The Dockerfile's structure, read statically (cheap, no build). The image itself is built from it
// with buildah and started in test/integration/image.test.ts: that is where its behaviour is proven.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { REPO_ROOT } from '../../cluster/harness.js';

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
  t.notMatch(dockerfile, /not verified/, 'no unverified download path');
  t.ok(lines.some((l) => /^FROM scratch AS helm-bin$/.test(l)), 'a supplied helm replaces the empty helm-bin stage (--build-context helm-bin=DIR)');
  for (const s of stages.filter((s) => !/^FROM scratch\b/.test(s))) t.match(s, /^FROM \$\{NODE_IMAGE\}/, `every stage on NODE_IMAGE (one base to pin or replace): ${s}`);
  t.ok(runtime.some((l) => /^COPY --from=helm .* \/usr\/local\/bin\/$/.test(l)), 'helm at /usr/local/bin/helm (the chart\'s actions.helm.bin)');
  t.ok(runtime.some((l) => /^EXPOSE 9095$/.test(l)));
  for (const s of stages) t.notMatch(s, /:latest\b/, `pinned base: ${s}`);
  const ignore = fs.readFileSync(path.join(REPO_ROOT, '.dockerignore'), 'utf8');
  t.match(ignore, /^\*$/m, '.dockerignore starts from nothing');
});
