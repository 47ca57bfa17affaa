// Alert text in Slack messages is data: `&`, `<` and `>` are escaped as Slack requires, and what
// would mention, link, embed or format in Slack's mrkdwn or in Mattermost's Markdown is made inert,
// so a label or annotation cannot mention @channel, a user, or slip a link into the message; a long
// one is cut, so that Slack never refuses the page for its size.
import { createServer } from 'node:http';
import t, { type Test } from 'tap';
import { loadConfig } from '../../../src/config.js';
import { createNotifiers, NOTIFIER_KINDS } from '../../../src/notify/index.js';
import type { Notification } from '../../../src/notify/notifier.js';
import { escapeSlack, inert, SLACK_LIMITS, SlackNotifier, slackText } from '../../../src/notify/slack.js';
import { WebhookNotifier } from '../../../src/notify/webhook.js';
import { postJson } from '../../../src/notify/notifier.js';
import { NotifyError, retryDelay } from '../../../src/notify/retry.js';
import { firing, recoversOnWrite, testEngine } from '../../support/engine.js';
import { freePort } from '../../support/ports.js';

/** A receiver on 127.0.0.1 keeping each JSON body it gets. */
async function receiver(t: Test) {
  const got: { text: string; blocks: { type: string; text: { type: string; text: string; verbatim?: boolean } }[] }[] = [];
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
      '• Reason: HighErrorRate &lt;!here&gt; &amp; &lt;\uff20U024BE7LH&gt;',
      '• Impact: &lt;https[:]//evil.example/login|Click to keep your job&gt; &gt; 5% of checkouts fail',
      '• Service: a&amp;amp;b stays a&amp;amp;b',
      '<https://rollguard.example/v1/rollbacks/rb-1|Rollback record>',
    ].join('\n'),
  );
  t.same(r.got[0]!.blocks, [{ type: 'section', text: { type: 'mrkdwn', text, verbatim: true } }], 'the blocks carry the same escaped text; verbatim: Slack links no bare URL');
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
    '• Impact: errors up \ua789white_check_mark: \u2217Rollback completed: Deployment/prod/checkout\u2217  [2K [Approve] (https[:]//evil.example) x',
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

/**
 * A receiver holding to Slack's documented limits (docs.slack.dev, Block Kit): a section block's
 * text over 3,000 characters, more than 50 blocks, a `text` over 40,000 characters are answered
 * 400 invalid_blocks, as Slack does. `blocksRefused`: every message with blocks is (a receiver that
 * refuses them for a reason of its own).
 */
async function slackLike(t: Test, blocksRefused = false) {
  const got: { text: string; blocks?: { type: string; text: { type: string; text: string } }[] }[] = [];
  const answers: number[] = [];
  const srv = createServer((req, res) => {
    let b = '';
    req.setEncoding('utf8').on('data', (d: string) => (b += d));
    req.on('end', () => {
      const body = JSON.parse(b) as (typeof got)[number];
      got.push(body);
      const blocks = body.blocks ?? [];
      const refused = (blocksRefused && blocks.length > 0) || blocks.length > 50 || blocks.some((x) => x.text.text.length > 3000) || body.text.length > 40_000;
      answers.push(refused ? 400 : 200);
      res.statusCode = refused ? 400 : 200;
      res.end(refused ? 'invalid_blocks' : 'ok');
    });
  });
  const port = await freePort();
  await new Promise<void>((r) => srv.listen(port, '127.0.0.1', r));
  t.teardown(() => srv.close());
  return { url: `http://127.0.0.1:${port}/services/T/B/secretpart`, got, answers };
}

t.test("a rollback in progress with a 4,096-byte summary of & < > goes out within Slack's limits", async (t) => {
  const e = testEngine();
  recoversOnWrite(e);
  e.prometheus!.value = 0.2;
  // ALERT_MAX_ANNOTATION_BYTES (4,096) of the characters escaping lengthens most: 17,746 once escaped
  const summary = '&<>'.repeat(1366).slice(0, 4096);
  t.equal(Buffer.byteLength(summary), 4096);
  await e.deliver(firing('HighErrorRate', 'checkout', { annotations: { summary } }));
  await e.notifications.settled();
  const started = e.notifier.sent.find((n) => n.kind === 'rollback_started');
  t.ok(started, 'the rollback started');
  t.ok(started!.lines.includes(`Impact: ${summary}`), 'the notification itself keeps the whole summary (the webhook and the record get it)');

  const r = await slackLike(t);
  await new SlackNotifier(r.url).send({ ...started!, link: 'https://rollguard.example/v1/rollbacks/rb-1/report' }, AbortSignal.timeout(5000));
  t.same(r.answers, [200], 'accepted at the first attempt');
  const body = r.got[0]!;
  const blocks = body.blocks ?? [];
  t.ok(blocks.length >= 1 && blocks.length <= SLACK_LIMITS.blocks, `${blocks.length} blocks`);
  for (const b of blocks) t.ok(b.text.text.length <= SLACK_LIMITS.sectionText, `a block of ${b.text.text.length} characters`);
  t.ok(body.text.length <= SLACK_LIMITS.text, `text of ${body.text.length} characters`);
  t.ok(blocks.reduce((a, b) => a + b.text.text.length, 0) <= 12_000, 'the blocks add up to no more than 12,000 characters');
  t.equal(blocks.map((b) => b.text.text).join('\n'), body.text, 'the blocks carry the text, in order');
  const impact = body.text.split('\n').find((l) => l.startsWith('• Impact: '))!;
  t.match(impact, /^• Impact: (&amp;&lt;&gt;)+(&amp;|&amp;&lt;)?…$/, 'the summary is cut with …, never inside an entity');
  for (const l of ['• Action: ', '• ETA: ', '• Status: ']) t.ok(body.text.split('\n').some((x) => x.startsWith(l)), `${l.trim()} still there after the summary`);
  t.ok(body.text.endsWith('<https://rollguard.example/v1/rollbacks/rb-1/report|Rollback record>'), 'and the record link');
});

t.test('a message of many long lines stays within the limits: the lines past them are counted', async (t) => {
  const lines = Array.from({ length: 80 }, (_, i) => `line ${i}: ${'<&>'.repeat(700)}`);
  const text = slackText({ ...hostile, lines });
  t.ok(text.length <= 10_000, `${text.length} characters`);
  t.match(text, /• … \d+ more lines, left out: the rollback record has them all\n<https:\/\/rollguard\.example\/v1\/rollbacks\/rb-1\|Rollback record>$/);
  const r = await slackLike(t);
  await new SlackNotifier(r.url).send({ ...hostile, lines }, AbortSignal.timeout(5000));
  t.same(r.answers, [200]);
});

t.test('a message the receiver refuses (400) is sent once more as its text alone; the error names the refusal', async (t) => {
  const r = await slackLike(t, true);
  await new SlackNotifier(r.url).send(hostile, AbortSignal.timeout(5000));
  t.same(r.answers, [400, 200], 'refused with its blocks, accepted as text');
  t.equal(r.got[1]!.blocks, undefined);
  t.equal(r.got[1]!.text, r.got[0]!.text);

  // a receiver refusing every message: the error says so, with the receiver's code, not its URL's path
  const srv = createServer((req, res) => {
    req.resume().on('end', () => {
      res.statusCode = 400;
      res.end('invalid_payload');
    });
  });
  const port = await freePort();
  await new Promise<void>((ok) => srv.listen(port, '127.0.0.1', ok));
  t.teardown(() => srv.close());
  const err = await new SlackNotifier(`http://127.0.0.1:${port}/services/T/B/secretpart`).send(hostile, AbortSignal.timeout(5000)).catch((e: unknown) => e);
  t.ok(err instanceof NotifyError);
  t.equal((err as NotifyError).message, `POST http://127.0.0.1:${port}/… answered 400: the receiver refused the message (invalid_payload)`);
  t.equal((err as NotifyError).status, 400);
  t.match(retryDelay(err, 1, 0, { windowMs: 60_000, firstMs: 1000, maxMs: 30_000 }), { final: /^not retried: the receiver refused the message \(400\)/ });
});

t.test("the receiver's body is named only when it is an error code", async (t) => {
  const bodies = ['{"id":"web.incoming_webhook.text.app_error","message":"Unable to parse","status_code":400}', 'Your token xoxb-123-abc is not valid for https://hooks.example/T/B/X', `invalid_blocks${' '.repeat(2000)}x`];
  const srv = createServer((req, res) => {
    req.resume().on('end', () => {
      res.statusCode = 400;
      res.end(bodies.shift());
    });
  });
  const port = await freePort();
  await new Promise<void>((ok) => srv.listen(port, '127.0.0.1', ok));
  t.teardown(() => srv.close());
  const url = `http://127.0.0.1:${port}/hook`;
  const messages: string[] = [];
  for (let i = 0; i < 3; i++) messages.push(await postJson(url, {}, AbortSignal.timeout(5000)).then(() => 'sent', (e: Error) => e.message));
  t.same(messages, [
    `POST http://127.0.0.1:${port}/… answered 400: the receiver refused the message (web.incoming_webhook.text.app_error)`,
    `POST http://127.0.0.1:${port}/… answered 400: the receiver refused the message`,
    `POST http://127.0.0.1:${port}/… answered 400: the receiver refused the message`,
  ]);
});

t.test('alert text cannot mention, link, embed or format, in Slack or in Mattermost', async (t) => {
  const summary = '@channel @here @all [Approve the rollback](https://evil.example/a) ![](https://evil.example/px.png) :white_check_mark: *Rollback completed* _done_ ~struck~ `code` https://evil.example/approve www.evil.example ~town-square oncall@example.com http_requests_total';
  const text = slackText({ kind: 'rollback_started', severity: 'warning', title: 'Rollback in progress: Deployment/prod/checkout', lines: ['Service: Deployment/prod/checkout', `Impact: ${summary}`], link: 'https://rollguard.example/v1/rollbacks/rb-1/report', at: 0 });
  const impact = text.split('\n').find((l) => l.startsWith('• Impact: '))!.slice('• Impact: '.length);
  for (const mention of ['@channel', '@here', '@all']) t.notOk(impact.includes(mention), `no ${mention}`);
  t.notOk(impact.includes(']('), 'no Markdown link');
  t.notOk(impact.includes('!['), 'no Markdown image');
  t.notMatch(impact, /[*~`]/, 'no * ~ or backtick');
  t.notMatch(impact, /(^|[^\p{L}\p{N}])_|_($|[^\p{L}\p{N}])/u, 'no _ that could open or close italics');
  t.notOk(impact.includes('https://'), 'no bare URL');
  t.notOk(/\bwww\./.test(impact), 'no www. to auto-link');
  t.notOk(impact.includes(':white_check_mark:'), 'no emoji');
  t.ok(impact.includes('oncall@example.com') && impact.includes('http_requests_total'), "an e-mail address and a metric's name read as they are");
  t.equal(
    impact,
    '\uff20channel \uff20here \uff20all [Approve the rollback] (https[:]//evil.example/a) ! [] (https[:]//evil.example/px.png) \ua789white_check_mark: \u2217Rollback completed\u2217 \u02cddone\u02cd \u223cstruck\u223c \u02cbcode\u02cb https[:]//evil.example/approve www[.]evil.example \u223ctown-square oncall@example.com http_requests_total',
  );
  t.ok(text.startsWith(':warning: *Rollback in progress: Deployment/prod/checkout*'), "rollguard's own bold title and icon stay");
  t.ok(text.endsWith('<https://rollguard.example/v1/rollbacks/rb-1/report|Rollback record>'), 'and its record link');
  t.equal(inert('a*b'), 'a\u2217b');
});

t.test("a link to rollguard's own records (EXTERNAL_URL) in a line stays a link; another URL does not", async (t) => {
  const n: Notification = { ...hostile, lines: ['Their records: https://rollguard.example/v1/rollbacks?state=blocked https://rollguard.example.evil.test/v1/x https://evil.example/v1/rollbacks'] };
  t.equal(
    slackText(n, 'https://rollguard.example/').split('\n')[1],
    '• Their records: <https://rollguard.example/v1/rollbacks?state=blocked> https[:]//rollguard.example.evil.test/v1/x https[:]//evil.example/v1/rollbacks',
  );
});

t.test('an @ after punctuation mentions no one in Mattermost either: every @ not after a letter or digit is swapped', async (t) => {
  // Mattermost trims a word's leading `:.-_` and splits a word on `.`, `-` and `:`: each of these was a mention there
  for (const s of ['.@channel', '-@here', 'x.@all', 'db-@channel please', '-@alice', '_@channel', '`@here', '*@all', '~@channel', '%@here', '+@all', ':@channel', '(@channel)', '"@here"', '@channel']) {
    t.notMatch(inert(s), /@\p{L}/u, `${JSON.stringify(s)} -> ${JSON.stringify(inert(s))}`);
  }
  t.equal(inert('mail ops@example.com or first.last@example.com'), 'mail ops@example.com or first.last@example.com', "an e-mail address keeps its @");
});

t.test('a link under EXTERNAL_URL that leads elsewhere (.., an escaped dot, a nested URL) is defanged, not kept live', async (t) => {
  const base = 'https://ops.example.com/rollguard';
  const lines = [
    'Impact: approve here https://ops.example.com/rollguard/../oauth2/sign_in?rd=https://evil.example/approve',
    'Impact: https://ops.example.com/rollguard/%2e%2e/grafana/d/x',
    'Impact: https://ops.example.com/rollguard/%2E./x https://ops.example.com/rollguard/./v1/x https://ops.example.com/rollguard/v1/a\\..\\..\\b',
    'Impact: https://ops.example.com/rollguard/v1/rollbacks?rd=https://evil.example/approve',
    'Their records: https://ops.example.com/rollguard/v1/rollbacks?state=blocked https://ops.example.com/rollguard/v1/rollbacks/rb-1/report',
  ];
  const out = slackText({ ...hostile, lines }, base).split('\n');
  const body = out.slice(1, -2).join('\n');
  t.notOk(body.includes('<https://ops.example.com/rollguard/..'), 'no live link through ..');
  t.notOk(body.includes('<https://ops.example.com/rollguard/%'), 'nor through an escaped dot');
  t.notOk(body.includes('<https://ops.example.com/rollguard/.'), 'nor through a dot segment');
  t.notOk(body.includes('<https://ops.example.com/rollguard/v1/a'), 'nor through backslashes');
  t.notOk(body.includes('https://evil.example'), 'the nested URL is defanged');
  t.notOk(body.includes('<https://ops.example.com/rollguard/v1/rollbacks?rd='), 'a link carrying a nested URL is not kept live');
  t.equal(out.at(-2), '• Their records: <https://ops.example.com/rollguard/v1/rollbacks?state=blocked> <https://ops.example.com/rollguard/v1/rollbacks/rb-1/report>', "rollguard's own links stay links");
  // under a base at the host's root, an empty segment reads as another host
  const root = slackText({ ...hostile, lines: ['Impact: https://ops.example.com//evil.example/x', 'Their records: https://ops.example.com/v1/rollbacks/rb-1/report'] }, 'https://ops.example.com').split('\n');
  t.notOk(root.join('\n').includes('<https://ops.example.com//'), 'no live link with an empty segment');
  t.ok(root.join('\n').includes('<https://ops.example.com/v1/rollbacks/rb-1/report>'), 'its own link at the root still one');
});
