// A rule directory reached through a symlink that is swapped, as git-sync publishes a checkout
// (`current -> .worktrees/<commit>`, the old worktree removed): a watch follows the directory it
// resolved to, so the first swap was seen (the old directory's files deleted) and every later
// commit was not, while rollguard_config_last_reload_successful still said 1.
import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { RuleHolder, type ReloadResult } from '../../../src/rules/holder.js';

const ruleText = (alertname: string) => `rules:
  - name: a
    match: ['alertname="${alertname}"']
    target: { kind: Deployment, namespace: shop, name: api }
    trigger: { kind: error_rate, threshold: 0.05, for: 2m }
    priority: P0
`;

t.test('a symlinked rule directory swapped commit after commit: each commit is loaded', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'rg-gitsync-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  /** git-sync's publish of commit `n`: a new worktree, the link swapped atomically, the old worktree removed */
  const publish = async (n: number, keepOld = false) => {
    await mkdir(join(root, '.worktrees', `c${n}`, 'rules'), { recursive: true });
    await writeFile(join(root, '.worktrees', `c${n}`, 'rules', 'a.yaml'), ruleText(`Commit${n}`));
    await symlink(join('.worktrees', `c${n}`), join(root, 'current-tmp'));
    await rename(join(root, 'current-tmp'), join(root, 'current'));
    if (n > 1 && !keepOld) await rm(join(root, '.worktrees', `c${n - 1}`), { recursive: true });
  };
  await publish(1);
  const holder = await RuleHolder.create({ paths: [join(root, 'current', 'rules')], debounceMs: 30 });
  t.teardown(() => holder.close());
  await holder.watch();
  const matches = (n: number) => holder.rules.match({ labels: { alertname: `Commit${n}` } }).length;
  t.equal(matches(1), 1);
  for (const [n, keepOld] of [[2, false], [3, false], [4, true], [5, false]] as const) {
    const loaded = new Promise<ReloadResult>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`commit ${n} was not loaded`)), 5000);
      const off = holder.onReload((r) => {
        if (r.ok && matches(n) === 1) {
          clearTimeout(timer);
          off();
          resolve(r);
        }
      });
    });
    await publish(n, keepOld);
    await t.resolves(loaded, `commit ${n}${keepOld ? ' (the old worktree kept)' : ''} loaded`);
  }
});
