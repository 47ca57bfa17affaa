// POST/GET /v1/drills… and `rollguard drill` against them: credentials, refusals with the setting's
// name and their exit codes, a drill followed link by link to its report.
import t from 'tap';
import { buildApp } from '../../../src/app.js';
import { drillCommand, parseFault } from '../../../src/cli/drill.js';
import { EXIT } from '../../../src/cli/client.js';
import { writePause } from '../../../src/guards/pause.js';
import { drillsRoutes } from '../../../src/http/drills.js';
import { ADMIN_TOKEN } from '../../support/app.js';
import { cliEnv } from '../../support/cli.js';
import { drillWorld } from '../../support/drills.js';
import { firingNow } from '../../support/engine.js';
import { waitFor } from '../../support/ports.js';
import { NS } from '../actions/fixtures/objects.js';

const READ_TOKEN = 'read-secret-token';
const ALERT = { alertname: 'HighErrorRate', namespace: NS, deployment: 'web' };

async function setup(env: Record<string, string> = {}) {
  const { config, store, metrics, kube, prometheus, engine, drills } = drillWorld({ env: { ADMIN_TOKEN, READ_TOKEN, ...env } });
  const app = buildApp({ config, store, metrics, logger: false, routes: [drillsRoutes(drills)] });
  await app.listen({ host: '127.0.0.1', port: 0 });
  t.teardown(() => app.close());
  const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  const cli = (args: string[], token = ADMIN_TOKEN) => {
    const c = cliEnv({ ROLLGUARD_URL: url, ROLLGUARD_TOKEN: token });
    return drillCommand(args, c.e).then((code) => ({ code, out: c.out.join('\n'), err: c.err.join('\n') }));
  };
  /** rollguard receives the drill's alert from Alertmanager */
  const deliver = async () => {
    prometheus.alerts = [{ ...ALERT, alertstate: 'firing' }];
    await engine.handle({ id: `ev-${Date.now()}`, alert: firingNow('HighErrorRate', 'web', { labels: ALERT }), deliveries: 1 });
    await engine.idle();
  };
  return { app, url, kube, store, drills, engine, prometheus, cli, deliver };
}

const body = { target: { kind: 'Deployment', namespace: NS, name: 'web' }, fault: { kind: 'env', name: 'DEMO_ERRORS', value: 'on' } };
const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };

t.test('POST /v1/drills: the admin token, the schema, DRILL_NAMESPACES by name; nothing changed on a refusal', async (t) => {
  const s = await setup();
  t.equal((await s.app.inject({ method: 'POST', url: '/v1/drills', payload: body })).statusCode, 401);
  t.equal((await s.app.inject({ method: 'POST', url: '/v1/drills', payload: body, headers: { authorization: `Bearer ${READ_TOKEN}` } })).statusCode, 401, 'the read token cannot start a drill');
  const rollout = await s.app.inject({ method: 'POST', url: '/v1/drills', payload: { ...body, target: { ...body.target, kind: 'Rollout' } }, headers: admin });
  t.equal(rollout.statusCode, 400);
  t.match(rollout.json().message, /body\.target\.kind/);
  const short = await s.app.inject({ method: 'POST', url: '/v1/drills', payload: { ...body, deadline: '5s' }, headers: admin });
  t.match(short.json().message, /body\.deadline: expected a duration from 10s to 1h/);
  const outside = await s.app.inject({ method: 'POST', url: '/v1/drills', payload: { ...body, target: { ...body.target, namespace: 'prod' } }, headers: admin });
  t.equal(outside.statusCode, 422);
  t.same(outside.json(), { error: 'outside_drill_namespaces', message: 'namespace prod is not in DRILL_NAMESPACES (shop): drills run only there' });
  const missing = await s.app.inject({ method: 'POST', url: '/v1/drills', payload: { ...body, target: { ...body.target, name: 'nope' } }, headers: admin });
  t.equal(missing.statusCode, 404);
  t.match(missing.json().message, /deployments.apps "nope" not found/);
  t.equal(s.kube.calls.filter((c) => c.verb === 'patch').length, 0, 'nothing written');
  t.same((await s.app.inject({ url: '/v1/drills', headers: admin })).json(), { drills: [] });
  const doc = (await s.app.inject('/openapi.json')).json() as { paths: Record<string, Record<string, unknown>> };
  t.ok(doc.paths['/v1/drills']?.post && doc.paths['/v1/drills']?.get && doc.paths['/v1/drills/{id}/report']?.get, 'documented in /openapi.json');
});

t.test('drills off: refused naming DRILL_NAMESPACES; the CLI exits 9', async (t) => {
  const s = await setup({ DRILL_NAMESPACES: '' });
  const r = await s.cli(['run', `Deployment/${NS}/web`, 'env', 'DEMO_ERRORS=on']);
  t.equal(r.code, EXIT.refused);
  t.match(r.err, /rollguard drill run: rollguard refused: drills are off: DRILL_NAMESPACES lists no namespace/);
});

t.test('rollguard drill run follows the drill link by link and prints its report; list, get, report read it back', async (t) => {
  const s = await setup();
  const running = s.cli(['run', `Deployment/${NS}/web`, 'env', 'DEMO_ERRORS=on', '--deadline', '30s', '--by', 'alice']);
  const d = await waitFor('the drill running', async () => (await s.drills.list())[0], 5000, 20);
  t.equal(d.requestedBy, 'alice');
  await s.deliver();
  const r = await running;
  t.equal(r.code, EXIT.ok, r.err);
  t.match(r.err, new RegExp(`drill ${d.id} started on Deployment/${NS}/web: env DEMO_ERRORS set on container web`));
  t.match(r.err, /\n {2}\d\d:\d\d:\d\d +\+[\d.]+s {2}rollback written: roll back deployment shop\/web from revision 2 to revision 1/);
  t.match(r.err, new RegExp(`drill ${d.id} passed: every link held`));
  t.match(r.out, new RegExp(`^# Drill report: Deployment/${NS}/web`));
  t.match(r.out, /## The chain, link by link/);

  const list = await s.cli(['list'], READ_TOKEN);
  t.match(list.out, new RegExp(`^ID +TARGET +STATE +FAULT +BROKE AT +AGE\\n${d.id} +Deployment/${NS}/web +passed +env +- +`));
  const get = await s.cli(['get', d.id], READ_TOKEN);
  t.match(get.out, /State: +passed/);
  t.match(get.out, /Links:\n {2}\d\d:\d\d:\d\d/);
  const report = await s.cli(['report', d.id], READ_TOKEN);
  t.equal(report.out, r.out, 'the same report');
  const json = await s.cli(['get', d.id, '-o', 'json'], READ_TOKEN);
  t.equal(JSON.parse(json.out).state, 'passed');
  t.equal((await s.cli(['get', 'dr-nosuchdrill'], READ_TOKEN)).code, EXIT.notFound);
  t.equal((await s.cli(['get', 'rb-123'], READ_TOKEN)).code, EXIT.usage);
});

t.test('the guards stop the rollback (paused after the fault): the drill fails at once naming them, restores, exits 10', async (t) => {
  const s = await setup();
  const running = s.cli(['run', `Deployment/${NS}/web`, 'crash', '--deadline', '60s']);
  const d = await waitFor('the drill running', async () => (await s.drills.list())[0], 5000, 20);
  await writePause(s.store, { by: 'oncall', at: Date.now(), reason: 'incident elsewhere' });
  await s.deliver();
  const r = await running;
  t.equal(r.code, EXIT.drillFailed, r.err);
  const done = (await s.drills.get(d.id))!;
  t.equal(done.result!.link, 'guards');
  t.match(done.result!.message, /^rollguard decided to roll back at \d\d:\d\d:\d\d but the guards did not let it \(seen: pause: block: rollguard is paused \(by oncall/);
  t.equal(done.restore!.outcome, 'restored', 'the drill restores its own fault even while paused');
  t.match(r.out, /Restore: the drill restored the workload itself/);
});

t.test('parseFault: the command line of each fault', async (t) => {
  t.same(parseFault(['env', 'A=b=c'], undefined), { kind: 'env', name: 'A', value: 'b=c' });
  t.same(parseFault(['image'], 'proxy'), { kind: 'image', container: 'proxy' });
  t.same(parseFault(['image', 'web:none'], undefined), { kind: 'image', image: 'web:none' });
  t.same(parseFault(['crash'], undefined), { kind: 'crash' });
  t.throws(() => parseFault(['env', 'NOVALUE'], undefined), { code: EXIT.usage, message: /env: expected NAME=VALUE/ });
  t.throws(() => parseFault(['reboot'], undefined), { code: EXIT.usage, message: /expected a fault: image \[IMAGE\], crash, env NAME=VALUE or patch FILE/ });
  t.throws(() => parseFault(['patch', '/nonexistent.yaml'], undefined), { message: /patch \/nonexistent.yaml: no such file/ });
});
