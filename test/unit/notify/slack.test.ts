// Alert text in Slack messages is data: `&`, `<` and `>` are escaped as Slack requires, so a label
// or annotation cannot mention @channel, a user, or slip a link into the message.
import { createServer } from 'node:http';
import t, { type Test } from 'tap';
import { loadConfig } from '../../../src/config.js';
import { createNotifiers, NOTIFIER_KINDS } from '../../../src/notify/index.js';
import type { Notification } from '../../../src/notify/notifier.js';
import { escapeSlack, SlackNotifier } from '../../../src/notify/slack.js';
import { WebhookNotifier } from '../../../src/notify/webhook.js';
import { freePort } from '../../support/ports.js';

/** A receiver on 127.0.0.1 keeping each JSON body it gets. */
async function receiver(t: Test) {
  const got: { text: string; blocks: { text: { text: string } }[] }[] = [];
  const srv = createServer((req, res) => {
    let b = '';
    req.setEncoding('utf8').on('data', (d: string) => (b += d));
    req.on('end', () => {
      got.push(JSON.parse(b));
      res.end('ok');
    });
  });
  const port = await freePort();
  await new Promise<void>((r) => srv.listen(port, '127.0.0.1', r));
  t.teardown(() => srv.close());
  return { url: `http://127.0.0.1:${port}/services/T/B/X`, got };
}

const hostile: Notification = {
  kind: 'rollback_started',
  severity: 'warning',
  title: 'Rollback in progress: Deployment/prod/<!channel>',
  lines: [
    'Reason: HighErrorRate <!here> & <@U024BE7LH>',
    'Impact: <https://evil.example/login|Click to keep your job> > 5% of checkouts fail',
    'Service: a&amp;b stays a&amp;b',
  ],
  link: 'https://rollguard.example/v1/rollbacks/rb-1',
  at: Date.parse('2026-11-23T12:00:00Z'),
};

t.test('labels and annotations cannot mention anyone or add a link', async (t) => {
  const r = await receiver(t);
  await new SlackNotifier(r.url).send(hostile, AbortSignal.timeout(5000));
  const text = r.got[0]!.text;
  t.equal(
    text,
    [
      ':warning: *Rollback in progress: Deployment/prod/&lt;!channel&gt;*',
      '• Reason: HighErrorRate &lt;!here&gt; &amp; &lt;@U024BE7LH&gt;',
      '• Impact: &lt;https://evil.example/login|Click to keep your job&gt; &gt; 5% of checkouts fail',
      '• Service: a&amp;amp;b stays a&amp;amp;b',
      '<https://rollguard.example/v1/rollbacks/rb-1|Rollback record>',
    ].join('\n'),
  );
  t.equal(r.got[0]!.blocks[0]!.text.text, text, 'the blocks carry the same escaped text');
  // the only control sequence left is our own record link
  t.same([...text.matchAll(/<([^>]*)>/g)].map((m) => m[1]), ['https://rollguard.example/v1/rollbacks/rb-1|Rollback record']);
});

t.test('a line break or an escape sequence in alert text forges no line of its own', async (t) => {
  const r = await receiver(t);
  const summary = 'errors up\n:white_check_mark: *Rollback completed: Deployment/prod/checkout*\r\u001b[2K\u2028[Approve](https://evil.example)\u0085x';
  await new SlackNotifier(r.url).send({ ...hostile, title: 'Rollback in progress:\nDeployment/prod/checkout', lines: ['Service: Deployment/prod/checkout', `Impact: ${summary}`] }, AbortSignal.timeout(5000));
  const text = r.got[0]!.text;
  t.same(text.split('\n'), [
    ':warning: *Rollback in progress: Deployment/prod/checkout*',
    '• Service: Deployment/prod/checkout',
    '• Impact: errors up :white_check_mark: *Rollback completed: Deployment/prod/checkout*  [2K [Approve](https://evil.example) x',
    '<https://rollguard.example/v1/rollbacks/rb-1|Rollback record>',
  ], 'one line per bullet: the summary stays inside its own');
  t.notMatch(text, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u2028\u2029]/, 'no control character passes');
});

t.test('escapeSlack: exactly the three characters, & first', async (t) => {
  t.equal(escapeSlack('<&>'), '&lt;&amp;&gt;');
  t.equal(escapeSlack('&lt;'), '&amp;lt;', 'an entity in the alert stays visible as typed');
  t.equal(escapeSlack('*bold* _it_ `code` 50%'), '*bold* _it_ `code` 50%', 'nothing else changes');
});

t.test('the notifier registry: the config enables each kind by its own setting', async (t) => {
  t.same(NOTIFIER_KINDS.map((k) => k.name), ['slack', 'webhook']);
  t.same(createNotifiers(loadConfig({})), [], 'no URL set: no notifier');
  const both = createNotifiers(loadConfig({ NOTIFY_SLACK_URL: 'https://hooks.slack.example/x', NOTIFY_WEBHOOK_URL: 'https://hook.example/y' }));
  t.same(both.map((n) => n.name), ['slack', 'webhook']);
  t.ok(both[0] instanceof SlackNotifier);
  t.ok(both[1] instanceof WebhookNotifier);
  t.same(createNotifiers(loadConfig({ NOTIFY_WEBHOOK_URL: 'https://hook.example/y' })).map((n) => n.name), ['webhook']);
});
