// A failed drill's restore undoes only its own fault: a release made during the drill (or while
// every replica was down) is left as it is. The drill job on the in-memory doubles of
// test/support/drills.ts (the real engine and Deployment action, a simulated controller).
import { createHash } from 'node:crypto';
import t from 'tap';
import { observe, stamp } from '../../../src/drills/links.js';
import { drillReport } from '../../../src/drills/report.js';
import { readWorkload, templateHash } from '../../../src/drills/workload.js';
import { RESOURCES } from '../../../src/kube/kube.js';
import { metricValue } from '../../support/app.js';
import { drillWorld, orphanDrill } from '../../support/drills.js';
import { NS } from '../actions/fixtures/objects.js';

const TARGET = `Deployment/${NS}/web`;
const ref = { kind: 'Deployment' as const, namespace: NS, name: 'web' };

function setup() {
  const w = drillWorld();
  t.teardown(() => w.drills.stop(1000));
  return w;
}

/** CI deploys web:v3 (a real release: a new image, the drill's env gone) over whatever is live. */
async function release(s: ReturnType<typeof drillWorld>): Promise<void> {
  const tpl = structuredClone(s.kube.peek(RESOURCES.deployments, NS, 'web')!.spec.template);
  tpl.spec.containers[0].image = 'web:v3';
  tpl.spec.containers[0].env = [];
  await s.kube.patch(RESOURCES.deployments, NS, 'web', { metadata: { annotations: { 'kubernetes.io/change-cause': 'ci: release v3' } }, spec: { template: tpl } }, 'merge');
}
const image = (s: ReturnType<typeof drillWorld>) => s.kube.peek(RESOURCES.deployments, NS, 'web')!.spec.template.spec.containers[0].image as string;

t.test('a release deployed during a failing drill is left as it is, not rolled back by the restore', async (t) => {
  const s = setup();
  const d = await s.drills.start({ ref, fault: { kind: 'env', name: 'DEMO_ERRORS', value: 'on' }, requestedBy: 'test', deadlineMs: 400 });
  t.ok(d.fault.templateHash, "the record holds the fingerprint of the fault's template");
  t.equal(d.fault.templateHash, templateHash('Deployment', s.kube.peek(RESOURCES.deployments, NS, 'web')!.spec.template));
  await release(s);
  await s.drills.idle();
  const done = (await s.drills.get(d.id))!;
  t.equal(done.state, 'failed');
  t.equal(done.restore!.outcome, 'moved_on', done.restore!.message);
  t.match(done.restore!.message, /^Deployment\/shop\/web moved on to revision 3, not the drill's fault: not restored/);
  t.equal(image(s), 'web:v3', 'the release stays');
  t.equal(s.kube.calls.filter((c) => c.verb === 'patch' && !c.dryRun && c.resource === 'deployments').length, 2, 'the fault and the release: no restore written');
  t.equal(await metricValue(s.metrics, 'rollguard_escalations_total', { reason: 'drill_restore_failed' }), undefined, 'not a failed restore');
  t.match(drillReport(done), /Restore: the workload moved on from the fault during the drill, so the drill left it as it is/);
  t.match(drillReport(done), /- \[ \] Check that revision 3 of Deployment\/shop\/web \(not the drill's\) does not carry the fault/);
  t.notMatch(drillReport(done), /by hand/);
});

const orphan = (s: ReturnType<typeof drillWorld>, record: Parameters<typeof orphanDrill>[2]) => orphanDrill(s, 'dr-orphan0000000000002', record);

t.test('a drill left running while every replica was down, and a release meanwhile: the replica that takes it over leaves the release', async (t) => {
  const s = setup();
  const d = await orphan(s, (hash) => ({ fault: { kind: 'crash', summary: 'container web made to exit at start', templateHash: hash } }));
  await release(s);
  await s.drills.recoverOrphans();
  await s.drills.idle();
  const ended = (await s.drills.get(d.id))!;
  t.equal(ended.state, 'failed');
  t.equal(ended.restore!.outcome, 'moved_on', ended.restore!.message);
  t.match(ended.restore!.message, /moved on to revision 3, not the drill's fault: not restored/);
  t.equal(image(s), 'web:v3', 'the release stays');

  // no release: the fault is live, and it is restored
  const s2 = setup();
  const d2 = await orphan(s2, (hash) => ({ fault: { kind: 'crash', summary: 'container web made to exit at start', templateHash: hash } }));
  await s2.drills.recoverOrphans();
  await s2.drills.idle();
  t.equal((await s2.drills.get(d2.id))!.restore!.outcome, 'restored');
  t.same(s2.kube.peek(RESOURCES.deployments, NS, 'web')!.spec.template, s2.preDrill, 'back on the pre-drill template');
});

t.test("a drill record from before the fault's fingerprint: its fault revision stands for it; without one nothing is restored", async (t) => {
  // the fault revision is live: restored
  const a = setup();
  const da = await orphan(a, (_hash, rev) => ({ faultRevision: rev }));
  await a.drills.recoverOrphans();
  await a.drills.idle();
  t.equal((await a.drills.get(da.id))!.restore!.outcome, 'restored');
  t.same(a.kube.peek(RESOURCES.deployments, NS, 'web')!.spec.template, a.preDrill);

  // a release replaced the fault revision: left
  const b = setup();
  const db = await orphan(b, (_hash, rev) => ({ faultRevision: rev }));
  await release(b);
  await b.drills.recoverOrphans();
  await b.drills.idle();
  t.equal((await b.drills.get(db.id))!.restore!.outcome, 'moved_on');
  t.equal(image(b), 'web:v3');

  // neither: the drill cannot tell, restores nothing, and a human is asked
  const c = setup();
  const dc = await orphan(c, () => ({}));
  await release(c);
  await c.drills.recoverOrphans();
  await c.drills.idle();
  const ended = (await c.drills.get(dc.id))!;
  t.equal(ended.restore!.outcome, 'failed');
  t.match(ended.restore!.message, /^could not tell whether revision 3 of Deployment\/shop\/web is the drill's fault .*: not restored; if its change-cause is "rollguard drill dr-orphan0000000000002: …", restore revision 1 by hand/);
  t.equal(image(c), 'web:v3');
  t.equal(await metricValue(c.metrics, 'rollguard_escalations_total', { reason: 'drill_restore_failed' }), 1);
});

t.test('a release landing while the restore runs (after its read, or after its plan) is not rolled back either', async (t) => {
  for (const when of ['plan', 'execute'] as const) {
    const s = setup();
    const real = s.actions.Deployment;
    let once = true;
    // the release lands just before the restore's plan (or its write)
    s.actions.Deployment = {
      ...real,
      [when]: async (...args: unknown[]) => {
        if (once) {
          once = false;
          await release(s);
        }
        return (real[when] as (...a: unknown[]) => Promise<unknown>)(...args);
      },
    } as typeof real;
    const d = await s.drills.start({ ref, fault: { kind: 'crash' }, requestedBy: 'test', deadlineMs: 300 });
    await s.drills.idle();
    const done = (await s.drills.get(d.id))!;
    t.equal(done.restore!.outcome, 'moved_on', `${when}: ${done.restore!.message}`);
    t.match(done.restore!.message, /moved on to revision 3, not the drill's fault: not restored/);
    t.equal(image(s), 'web:v3', `${when}: the release stays`);
  }
});

/** `kubectl rollout restart deploy/web`: only the restartedAt annotation of the pod template changes. */
async function restart(s: ReturnType<typeof drillWorld>, at = new Date().toISOString()): Promise<void> {
  await s.kube.patch(RESOURCES.deployments, NS, 'web', { spec: { template: { metadata: { annotations: { 'kubectl.kubernetes.io/restartedAt': at } } } } }, 'strategic');
}
const demoErrors = (s: ReturnType<typeof drillWorld>) => ((s.kube.peek(RESOURCES.deployments, NS, 'web')!.spec.template.spec.containers[0].env ?? []) as Array<{ name: string }>).some((e) => e.name === 'DEMO_ERRORS');

t.test('kubectl rollout restart during a failing drill leaves the fault live: the restore still undoes it; a release after the restart is still left', async (t) => {
  const s = setup();
  const d = await s.drills.start({ ref, fault: { kind: 'env', name: 'DEMO_ERRORS', value: 'on' }, requestedBy: 'test', deadlineMs: 400 });
  await restart(s);
  await s.drills.idle();
  const done = (await s.drills.get(d.id))!;
  t.equal(done.restore!.outcome, 'restored', done.restore!.message);
  t.notOk(demoErrors(s), 'the drill fault is gone');
  t.same(s.kube.peek(RESOURCES.deployments, NS, 'web')!.spec.template, s.preDrill, 'back on the pre-drill template');

  // a restart, then a real release: the release is left as it is
  const r = setup();
  const dr = await r.drills.start({ ref, fault: { kind: 'env', name: 'DEMO_ERRORS', value: 'on' }, requestedBy: 'test', deadlineMs: 400 });
  await restart(r);
  await release(r);
  await r.drills.idle();
  const moved = (await r.drills.get(dr.id))!;
  t.equal(moved.restore!.outcome, 'moved_on', moved.restore!.message);
  t.equal(image(r), 'web:v3', 'the release stays');
});

t.test('a drill record from before 2026-12-07 (fingerprints taken with the restartedAt annotation) is still restored, a restart during it included', async (t) => {
  // the pre-drill template has no restartedAt, and the drill's replica died: the on-call restarts web
  const a = setup();
  const da = await orphan(a, (hash) => ({ fault: { kind: 'crash', summary: 'container web made to exit at start', templateHash: hash } }));
  await restart(a);
  await a.drills.recoverOrphans();
  await a.drills.idle();
  t.equal((await a.drills.get(da.id))!.restore!.outcome, 'restored', (await a.drills.get(da.id))!.restore!.message);
  t.same(a.kube.peek(RESOURCES.deployments, NS, 'web')!.spec.template, a.preDrill);

  // the pre-drill template carries an earlier restart's restartedAt, and the record's fingerprints
  // were taken with it (as before 2026-12-07): the fault is still recognised, and the pre-drill revision found
  const b = setup();
  await restart(b, '2026-11-30T08:00:00Z');
  const pre = (await readWorkload(b.kube, ref))!;
  const legacy = (tpl: unknown) => `sha256:${createHash('sha256').update(JSON.stringify(canonicalJson(withoutHashLabel(tpl)))).digest('hex').slice(0, 32)}`;
  const withoutHashLabel = (tpl: unknown) => {
    const c = structuredClone(tpl) as { metadata?: { labels?: Record<string, string> } };
    delete c.metadata?.labels?.['pod-template-hash'];
    return c;
  };
  const db = await orphan(b, (_hash) => ({}));
  const faulted = b.kube.peek(RESOURCES.deployments, NS, 'web')!.spec.template;
  db.before = { ...db.before, templateHash: legacy(pre.obj.spec.template) };
  db.fault = { ...db.fault, templateHash: legacy(faulted) };
  await b.drills.store.put(db, Date.now());
  await b.drills.recoverOrphans();
  await b.drills.idle();
  const ended = (await b.drills.get(db.id))!;
  t.equal(ended.restore!.outcome, 'restored', ended.restore!.message);
  t.same(b.kube.peek(RESOURCES.deployments, NS, 'web')!.spec.template, pre.obj.spec.template, 'back on the pre-drill template, its restartedAt included');
});

t.test("the drill's watch: a restart after rollguard's rollback is still back on the pre-drill template, and a restart on the fault still the fault", async (t) => {
  const s = setup();
  const d = await orphan(s, (hash) => ({ fault: { kind: 'crash', summary: 'container web made to exit at start', templateHash: hash } }));
  const deps = { prometheus: s.prometheus, alertmanager: null, records: s.engine.records, rules: s.rules, kube: s.kube };
  // on the fault, restarted: the fault revision is the restarted one
  await restart(s);
  const restarted = (await readWorkload(s.kube, ref))!.revision;
  await observe(deps, d, Date.now());
  t.equal(d.faultRevision, restarted, 'the restarted revision is still the fault');
  // rolled back (as rollguard does), then restarted again: back on the pre-drill template
  await s.kube.patch(RESOURCES.deployments, NS, 'web', [{ op: 'replace', path: '/spec/template', value: s.preDrill }], 'json');
  await restart(s);
  stamp(d, 'rollback_written', Date.now(), 'written');
  await observe(deps, d, Date.now());
  t.ok(d.links.rollout_complete, `rollout complete, back on the pre-drill template (seen: ${d.seen.rollout_complete})`);
});

/** The fingerprint's JSON as before 2026-12-07: empty values dropped, keys sorted (src/drills/workload.ts). */
function canonicalJson(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonicalJson);
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) {
      const c = canonicalJson((v as Record<string, unknown>)[k]);
      const empty = c === undefined || c === null || (Array.isArray(c) && c.length === 0) || (typeof c === 'object' && c !== null && !Array.isArray(c) && Object.keys(c).length === 0);
      if (!empty) out[k] = c;
    }
    return out;
  }
  return v;
}
