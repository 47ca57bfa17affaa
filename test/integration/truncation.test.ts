// Alertmanager's max_alerts truncation never loses an alert silently. A real Alertmanager (Debian's)
// with `max_alerts: 1` on rollguard's receiver gets one group of three alerts; it notifies
// rollguard (a real `rollguard serve`) with one alert and truncatedAlerts: 2.
// - ALERTMANAGER_URL set: rollguard fetches the group from Alertmanager's API v2 and queues the two
//   missing alerts: three records.
// - unset: one record, rollguard_alerts_truncated_total 2 and a warning naming the group and max_alerts.
// - set but unreachable: the fetch failure is logged and counted; the delivered alert is still handled.
import t, { type Test } from 'tap';
import { freePort, waitFor } from '../support/ports.js';
import { startAlertmanager, type LocalAlertmanager } from '../support/alertmanager.js';
import { startServe, type ServeProcess } from '../support/serve.js';

const WEBHOOK_TOKEN = 'truncation-webhook-token';
const ADMIN_TOKEN = 'truncation-admin-token';
const DEPLOYMENTS = ['cart', 'checkout', 'payments'];

interface Rig {
  am: LocalAlertmanager;
  rg: ServeProcess;
}

async function rig(t: Test, env: (am: LocalAlertmanager) => Record<string, string>): Promise<Rig> {
  const port = await freePort();
  const am = await startAlertmanager({ webhookUrl: `http://127.0.0.1:${port}/v1/alerts`, token: WEBHOOK_TOKEN, groupBy: ['alertname', 'namespace'], maxAlerts: 1 });
  t.teardown(() => am.stop());
  const rg = await startServe({ WEBHOOK_TOKEN, ADMIN_TOKEN, ...env(am) }, [], { port });
  t.teardown(() => rg.proc.kill('SIGKILL'));
  const startsAt = new Date(Date.now() - 60_000).toISOString();
  const res = await fetch(`${am.url}/api/v2/alerts`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(
      DEPLOYMENTS.map((d) => ({
        labels: { alertname: 'HighErrorRate', namespace: 'production', deployment: d, severity: 'critical', rollguard: 'enabled' },
        annotations: { summary: `${d}: error rate above 5%` },
        startsAt,
        generatorURL: 'http://prometheus.example/graph',
      })),
    ),
  });
  t.equal(res.status, 200, 'Alertmanager took the three alerts');
  return { am, rg };
}

async function records(rg: ServeProcess): Promise<Array<{ target: string; state: string }>> {
  const res = await fetch(`${rg.url}/v1/rollbacks`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  return ((await res.json()) as { rollbacks: Array<{ target: string; state: string }> }).rollbacks;
}

async function metric(rg: ServeProcess, name: string, labels = ''): Promise<number | undefined> {
  const text = await (await fetch(`${rg.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
  return line === undefined ? undefined : Number(line.split(' ')[1]);
}

/** The alerts the notifications received so far left out, as rollguard's warnings say (`left N alert(s)`). */
const leftOut = (rg: ServeProcess) =>
  rg.logs().reduce((n, l) => n + Number((typeof l.msg === 'string' && /^Alertmanager left (\d+) alert\(s\)/.exec(l.msg)?.[1]) || 0), 0);

const accepted = (rg: ServeProcess) => waitFor('the truncated notification', async () => rg.logs().find((l) => l.msg === 'alerts accepted'), 60_000, 100);

t.test('with ALERTMANAGER_URL: the two alerts max_alerts left out are fetched and queued, three records', async (t) => {
  const { rg } = await rig(t, (am) => ({ ALERTMANAGER_URL: am.url }));
  const first = await accepted(rg);
  t.equal(first.alerts, 1, 'Alertmanager sent one alert');
  t.equal(first.queued, 1);
  const recs = await waitFor('three records', async () => {
    const r = await records(rg);
    return r.length >= 3 && r;
  }, 30_000, 200);
  t.same(recs.map((r) => r.target).sort(), DEPLOYMENTS.map((d) => `Deployment/production/${d}`), 'one record per alert of the group');
  // Log lines arrive on rollguard's stdout, not in step with its HTTP answers: wait for them.
  const fetched = await waitFor('the fetch logged', async () => rg.logs().find((l) => l.msg === 'alerts left out of the notification fetched from Alertmanager and queued'), 30_000, 100);
  t.equal(fetched?.queued, 2);
  t.equal(await metric(rg, 'rollguard_alerts_truncated_total'), 2);
  t.equal(await metric(rg, 'rollguard_alerts_recovered_total'), 2);
  t.equal(await metric(rg, 'rollguard_alertmanager_fetches_total', '{outcome="ok"}'), 1);
  const warn = await waitFor('the warning', async () => rg.logs().find((l) => l.level === 40 && typeof l.msg === 'string' && l.msg.includes('max_alerts')), 30_000, 100);
  t.match(warn.msg, /fetching them from ALERTMANAGER_URL/, 'the truncation is still a warning');
});

t.test('without ALERTMANAGER_URL: one record, the counter and a warning naming the group and max_alerts', async (t) => {
  const { rg } = await rig(t, () => ({}));
  const first = await accepted(rg);
  t.equal(first.alerts, 1);
  const warn = await waitFor('the warning', async () => rg.logs().find((l) => l.level === 40 && typeof l.msg === 'string' && l.msg.includes('left 2 alert(s)')), 30_000, 100);
  t.equal(warn?.groupKey, first.groupKey, 'names the group key');
  t.equal(warn?.receiver, 'rollguard');
  t.match(String(warn?.msg), /max_alerts in the webhook_configs of Alertmanager receiver "rollguard"/, 'names the setting to change');
  t.match(String(warn?.msg), /ALERTMANAGER_URL/, 'and the setting that recovers them');
  t.match(String(warn?.msg), String(first.groupKey));
  // Alertmanager may notify twice (the three alerts reaching the group across its group_wait: one
  // left out, then two): the counter is what every notification left out, as rollguard warned of it
  // (log lines arrive on stdout apart from the metrics' answer: waited until both say the same)
  const counted = await waitFor('the counter to say what the warnings say', async () => {
    const m = await metric(rg, 'rollguard_alerts_truncated_total');
    return m !== undefined && m === leftOut(rg) && m;
  }, 10_000, 100);
  t.ok(counted >= 2, `counted: what the notifications left out (${counted})`);
  t.equal(await metric(rg, 'rollguard_alertmanager_fetches_total', '{outcome="ok"}'), undefined, 'nothing fetched');
  const recs = await waitFor('the delivered alert handled', async () => {
    const r = await records(rg);
    return r.length > 0 && r.every((x) => !['deciding', 'in_progress'].includes(x.state)) && r;
  }, 30_000, 200);
  t.equal(recs.length, 1, 'only the delivered alert has a record');
});

t.test('ALERTMANAGER_URL unreachable: the failed fetch is logged and counted; the delivered alert is handled', async (t) => {
  const dead = await freePort();
  const { rg } = await rig(t, () => ({ ALERTMANAGER_URL: `http://127.0.0.1:${dead}` }));
  await accepted(rg);
  const err = await waitFor('the fetch failure', async () => rg.logs().find((l) => l.level === 50 && typeof l.msg === 'string' && l.msg.startsWith('could not fetch')), 30_000, 100);
  t.match(String(err.err), /ALERTMANAGER_URL/, 'the error names the setting');
  t.match(String(err.msg), /max_alerts/);
  t.equal(await metric(rg, 'rollguard_alertmanager_fetches_total', '{outcome="failed"}'), 1);
  t.equal(await metric(rg, 'rollguard_alerts_truncated_total'), 2);
  const recs = await waitFor('the delivered alert handled', async () => {
    const r = await records(rg);
    return r.length > 0 && r;
  }, 30_000, 200);
  t.equal(recs.length, 1);
});

t.test("the API client finds exactly one group on a real Alertmanager, label values quoted as its matcher parser reads them", async (t) => {
  const { AlertmanagerApi } = await import('../../src/alertmanager/api.js');
  const am = await startAlertmanager({ webhookUrl: `http://127.0.0.1:${await freePort()}/v1/alerts`, token: WEBHOOK_TOKEN, groupBy: ['alertname', 'team'], groupWait: '1h' });
  t.teardown(() => am.stop());
  const hostile = 'a"b\\c.*\nd';
  const alert = (team: string, n: string) => ({ labels: { alertname: 'X', team, n, rollguard: 'enabled' }, startsAt: new Date().toISOString() });
  const res = await fetch(`${am.url}/api/v2/alerts`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify([alert(hostile, '1'), alert(hostile, '2'), alert('a', '3'), alert('ab', '4')]) });
  t.equal(res.status, 200);
  const api = new AlertmanagerApi({ url: am.url });
  const got = await waitFor('the groups', async () => {
    const a = await api.groupAlerts('rollguard', { alertname: 'X', team: hostile });
    return a.length === 2 && a;
  }, 30_000, 100);
  t.same(got.map((a) => a.labels.n).sort(), ['1', '2'], 'the hostile group only');
  t.same((await api.groupAlerts('rollguard', { alertname: 'X', team: 'a' })).map((a) => a.labels.n), ['3'], 'a plain value matches its group only');
  t.same(await api.groupAlerts('rollguard', { alertname: 'X' }), [], 'group labels must be equal, not a subset');
  t.same(await api.groupAlerts('rollgu.rd', { alertname: 'X', team: 'a' }), [], 'the receiver name is not a pattern');
  const failed = await new AlertmanagerApi({ url: `http://user:s3cret@127.0.0.1:${await freePort()}` }).groupAlerts('rollguard', {}).then(
    () => null,
    (err: Error) => err.message,
  );
  t.match(failed, /ALERTMANAGER_URL\) failed/, 'a failure names ALERTMANAGER_URL');
  t.notMatch(failed, /s3cret/, 'never the password');
});
