import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { createMetrics } from '../../../src/metrics.js';
import { RuleHolder, type ReloadResult } from '../../../src/rules/holder.js';

const ruleText = (name: string, alertname: string, threshold: string | number = 0.05) => `rules:
  - name: ${name}
    match: ['alertname="${alertname}"']
    target: { kind: Deployment, namespace: shop, name: api }
    trigger: { kind: error_rate, threshold: ${threshold}, for: 2m }
    priority: P0
`;

async function setup(t: { teardown(fn: () => unknown): void }) {
  const dir = await mkdtemp(join(tmpdir(), 'rg-holder-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'a.yaml'), ruleText('a', 'HighErrorRate'));
  const metrics = createMetrics({ defaults: false });
  const logs: Array<{ level: string; obj: object; msg?: string }> = [];
  const logger = {
    info: (obj: object, msg?: string) => logs.push({ level: 'info', obj, ...(msg ? { msg } : {}) }),
    error: (obj: object, msg?: string) => logs.push({ level: 'error', obj, ...(msg ? { msg } : {}) }),
  };
  const holder = await RuleHolder.create({ paths: [dir], metrics, logger, debounceMs: 50 });
  t.teardown(() => holder.close());
  const gauge = async (name: string) => {
    const m = (await metrics.registry.metrics()).match(new RegExp(`^${name} (\\S+)$`, 'm'));
    return m ? Number(m[1]) : undefined;
  };
  return { dir, holder, metrics, logs, gauge };
}

const alert = (alertname: string) => ({ labels: { alertname } });

t.test('startup load sets the metrics', async (t) => {
  const { holder, gauge } = await setup(t);
  t.equal(holder.rules.size, 1);
  t.equal(await gauge('rollguard_config_last_reload_successful'), 1);
  t.equal(await gauge('rollguard_rules_loaded'), 1);
  t.ok((await gauge('rollguard_config_last_reload_success_timestamp_seconds'))! > 1.7e9);
});

t.test('a broken edit leaves the old rules working, logs why, and sets the gauge to 0', async (t) => {
  const { dir, holder, logs, gauge } = await setup(t);
  const before = holder.rules;
  await writeFile(join(dir, 'a.yaml'), ruleText('a', 'Changed', '"high"'));
  const r = await holder.reload('SIGHUP');
  t.equal(r.ok, false);
  t.match(r.error!, /a\.yaml:5: rules\[0\]\.trigger\.threshold: expected number, got string \("high"\)/);
  t.equal(r.rules, 1, 'the old rule count stays in force');
  t.equal(holder.rules, before, 'the very same rule set');
  t.equal(holder.rules.match(alert('HighErrorRate')).length, 1, 'old rules still match');
  t.equal(holder.rules.match(alert('Changed')).length, 0);
  t.equal(await gauge('rollguard_config_last_reload_successful'), 0);
  const err = logs.find((l) => l.level === 'error');
  t.match(err?.msg, /previous rules stay in force/);
  t.match(JSON.stringify(err?.obj), /threshold: expected number/);
  t.equal((err?.obj as { trigger?: string }).trigger, 'SIGHUP');
});

t.test('a good edit takes effect without restart', async (t) => {
  const { dir, holder, gauge } = await setup(t);
  await writeFile(join(dir, 'a.yaml'), ruleText('a', 'Changed'));
  await writeFile(join(dir, 'b.yaml'), ruleText('b', 'Other'));
  const r = await holder.reload('POST /-/reload');
  t.equal(r.ok, true);
  t.equal(r.rules, 2);
  t.equal(holder.rules.match(alert('HighErrorRate')).length, 0);
  t.equal(holder.rules.match(alert('Changed'))[0]?.name, 'a');
  t.equal(await gauge('rollguard_config_last_reload_successful'), 1);
  t.equal(await gauge('rollguard_rules_loaded'), 2);
});

t.test('a bad reload then a good one recovers', async (t) => {
  const { dir, holder, gauge } = await setup(t);
  await writeFile(join(dir, 'b.yaml'), ruleText('a', 'Dup'));
  const bad = await holder.reload();
  t.equal(bad.ok, false);
  t.match(bad.error!, /rule name "a" is already used/);
  await writeFile(join(dir, 'b.yaml'), ruleText('b', 'Dup'));
  t.equal((await holder.reload()).ok, true);
  t.equal(await gauge('rollguard_config_last_reload_successful'), 1);
  t.equal(holder.rules.size, 2);
});

t.test('file changes reload (debounced): editor-style rename, a broken save, a fixed save', async (t) => {
  const { dir, holder } = await setup(t);
  const results: ReloadResult[] = [];
  const waitFor = (pred: (r: ReloadResult) => boolean) =>
    new Promise<ReloadResult>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching reload; saw ${JSON.stringify(results.map((r) => r.ok))}`)), 5000);
      const off = holder.onReload((r) => {
        results.push(r);
        if (pred(r)) {
          clearTimeout(timer);
          off();
          resolve(r);
        }
      });
    });
  await holder.watch();

  let next = waitFor((r) => r.ok && r.rules === 2);
  await writeFile(join(dir, '.b.yaml.tmp'), ruleText('b', 'Watched'));
  await rename(join(dir, '.b.yaml.tmp'), join(dir, 'b.yaml'));
  const added = await next;
  t.equal(added.trigger, 'file change');
  t.equal(holder.rules.match(alert('Watched')).length, 1, 'new rule in force without restart');

  next = waitFor((r) => !r.ok);
  await writeFile(join(dir, 'b.yaml'), 'rules:\n  - name: b\n    match: [\n');
  const broken = await next;
  t.match(broken.error!, /b\.yaml:\d+: invalid YAML/);
  t.equal(holder.rules.match(alert('Watched')).length, 1, 'broken save: the last good rules stay');

  next = waitFor((r) => r.ok);
  await writeFile(join(dir, 'b.yaml'), ruleText('b', 'Fixed'));
  await next;
  t.equal(holder.rules.match(alert('Fixed')).length, 1);
  t.equal(holder.rules.match(alert('Watched')).length, 0);
});

t.test('the first load failing refuses to start', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'rg-holder-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'a.yaml'), 'rules: 3\n');
  await t.rejects(RuleHolder.create({ paths: [dir] }), /rules do not load:\n.*a\.yaml:1: rules: expected list, got number/);
});

t.test('concurrent reloads are serialised and a late edit is not lost', async (t) => {
  const { dir, holder } = await setup(t);
  const p1 = holder.reload('one');
  await writeFile(join(dir, 'c.yaml'), ruleText('c', 'Late'));
  const p2 = holder.reload('two');
  const p3 = holder.reload('three');
  t.equal(p2, p3, 'requests while one runs share the next reload');
  const [r1, r2] = await Promise.all([p1, p2]);
  t.equal(r1.trigger, 'one');
  t.equal(r2.rules, 2, 'the second caller sees its edit');
  t.equal(holder.rules.size, 2);
});

t.test('a Kubernetes ConfigMap volume: symlinked files, updated by swapping the ..data symlink', async (t) => {
  const { mkdir, symlink } = await import('node:fs/promises');
  const dir = await mkdtemp(join(tmpdir(), 'rg-cm-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  // the layout kubelet's atomic writer makes: ..2026_v1/a.yaml, ..data -> ..2026_v1, a.yaml -> ..data/a.yaml
  await mkdir(join(dir, '..2026_v1'));
  await writeFile(join(dir, '..2026_v1', 'a.yaml'), ruleText('a', 'Before'));
  await symlink('..2026_v1', join(dir, '..data'));
  await symlink('..data/a.yaml', join(dir, 'a.yaml'));
  const holder = await RuleHolder.create({ paths: [dir], debounceMs: 50 });
  t.teardown(() => holder.close());
  t.equal(holder.rules.size, 1, 'symlinked rule files load');
  t.equal(holder.rules.match(alert('Before')).length, 1);

  await holder.watch();
  const reloaded = new Promise<ReloadResult>((resolve) => holder.onReload(resolve));
  await mkdir(join(dir, '..2026_v2'));
  await writeFile(join(dir, '..2026_v2', 'a.yaml'), ruleText('a', 'After'));
  await symlink('..2026_v2', join(dir, '..data_tmp'));
  await rename(join(dir, '..data_tmp'), join(dir, '..data'));
  let timer: NodeJS.Timeout | undefined;
  const r = await Promise.race([reloaded, new Promise<never>((_, rej) => (timer = setTimeout(() => rej(new Error('no reload after the ..data swap')), 5000)))]);
  clearTimeout(timer);
  t.equal(r.ok, true);
  t.equal(holder.rules.match(alert('After')).length, 1, 'the swapped content is in force');
});

// Every rule file gone (a ConfigMap's keys deleted, a commit removing the file, keys without
// .yaml): before, the reload succeeded with no rule, so every alert was unmatched, answered 200
// and dropped, and a replica started on such a directory served with none. Now it is an error.
t.test('a reload that finds no rule file keeps the rules in force, names the directory and what it skipped', async (t) => {
  const { dir, holder, gauge } = await setup(t);
  const before = holder.rules;
  await rm(join(dir, 'a.yaml'));
  await writeFile(join(dir, 'a.json'), '{}');
  const r = await holder.reload('file change');
  t.equal(r.ok, false);
  t.match(r.error!, /no rule files \(\*\.yaml or \*\.yml\) found; found .*a\.json, not read/);
  t.ok(r.error!.startsWith(`${dir}:0: `), 'names the directory');
  t.equal(holder.rules, before, 'the very same rule set');
  t.equal(holder.rules.match(alert('HighErrorRate')).length, 1);
  t.equal(await gauge('rollguard_config_last_reload_successful'), 0);
});

t.test('a directory with no rule file refuses to start; a file saying "rules: []" loads no rule on purpose', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'rg-holder-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await t.rejects(RuleHolder.create({ paths: [dir] }), /rules do not load:\n.*no rule files \(\*\.yaml or \*\.yml\) found/);
  await writeFile(join(dir, 'none.yaml'), 'rules: []\n');
  const h = await RuleHolder.create({ paths: [dir] });
  t.equal(h.rules.size, 0);
  await h.close();
});
