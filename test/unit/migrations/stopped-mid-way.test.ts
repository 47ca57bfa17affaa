// A rollback whose replica died while its migration rollback Job ran, taken up by a replica that
// may not go on (here: rollguard paused meanwhile). The Job was created and may still be running:
// the record is closed interrupted, the target keeps its cooldown (a new alert does not create a
// second migration rollback Job meanwhile), and the page names the Job and says to check the database.
import t from 'tap';
import { readCooldown } from '../../../src/guards/cooldown.js';
import { clearPause, writePause } from '../../../src/guards/pause.js';
import { RESOURCES } from '../../../src/kube/kube.js';
import { firing, testEngine } from '../../support/engine.js';
import { FakeKube } from '../../support/fake-kube.js';
import { leftMidMigration, migrationRules } from '../../support/migrations.js';

const RULE = migrationRules({ key: 'rollback.yaml', deadline: '5s', logLines: 3 }) + '    guards: { budget: { perTargetPerHour: 3 } }\n';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('paused while a dead replica\'s migration rollback Job ran: interrupted, the cooldown kept, the page names the Job; no second Job when the alert fires again', async (t) => {
  const kube = new FakeKube();
  const { a, left } = await leftMidMigration(kube, RULE);
  const pending = left;
  t.equal(left.state, 'in_progress');
  const b = testEngine({ kube, store: a.store, ruleText: RULE, owner: 'replica-b', action: a.action });
  await writePause(a.store, { by: 'oncall', at: Date.now(), reason: 'incident' });
  await b.engine.tick();
  await b.engine.idle();
  const done = (await b.engine.records.get(pending.id))!;
  t.equal(done.state, 'interrupted');
  t.match(done.outcome?.message, /not gone on: rollguard is paused \(by oncall: incident; POST \/v1\/resume\).*its migration rollback Job prod\/\S+ was created and may still be running: the database may be part-way through the rollback/);
  t.equal((await readCooldown(a.store, done.target))?.id, pending.id, 'the cooldown stands: something was begun');
  const page = b.notifier.sent.find((n) => n.kind === 'rollback_interrupted');
  t.ok(page, 'escalated');
  t.match(page?.title, /stopped mid-way, not gone on \(rollguard is paused/);
  t.match(page?.lines.join('\n'), new RegExp(`migration rollback Job prod/${left.migration!.job} was created and may still be running .*check the database`));

  // the pause lifted, the first Job done (the database downgraded), the alert fires again: no second migration rollback Job
  const job = kube.peek(RESOURCES.jobs, 'prod', left.migration!.job)!;
  kube.put(RESOURCES.jobs, { ...job, status: { conditions: [{ type: 'Complete', status: 'True' }] } });
  await clearPause(a.store);
  b.prometheus!.value = 5;
  await b.deliver(firing('HighErrorRate', 'checkout', { startsAt: Date.now() }));
  const again = (await b.engine.records.list({})).find((r) => r.id !== pending.id);
  if (again?.state === 'pending_approval') await b.engine.approve(again.id, 'bob');
  await sleep(300);
  await b.engine.stop?.();
  await b.engine.idle();
  t.equal(kube.calls.filter((c) => c.verb === 'create' && c.resource === 'jobs' && !c.dryRun).length, 1, 'one migration rollback Job in all');
  if (again) t.match(again.guards.map((g) => `${g.guard}:${g.result}`), ['pause:allow', 'scope:allow', /./], 'the second alert was judged');
});
