import { createServer } from 'node:http';
import t from 'tap';
import { postJson } from '../../../src/notify/notifier.js';
import { freePort } from '../../support/ports.js';

t.test('credentials in a notifier URL go in an Authorization header and never into an error', async (t) => {
  const seen: (string | undefined)[] = [];
  const srv = createServer((req, res) => {
    seen.push(req.headers.authorization);
    req.resume();
    res.statusCode = req.url === '/fail' ? 502 : 200;
    res.end('ok');
  });
  const port = await freePort();
  await new Promise<void>((r) => srv.listen(port, '127.0.0.1', r));
  t.teardown(() => srv.close());
  await postJson(`http://hook:s3cr%40t@127.0.0.1:${port}/ok`, { a: 1 }, AbortSignal.timeout(5000));
  t.equal(seen[0], `Basic ${Buffer.from('hook:s3cr@t').toString('base64')}`);
  const failed = await postJson(`http://hook:s3cr%40t@127.0.0.1:${port}/fail`, {}, AbortSignal.timeout(5000)).catch((e: Error) => e);
  t.match(String(failed), /POST http:\/\/127\.0\.0\.1:\d+\/… answered 502/);
  t.notMatch(String(failed), /s3cr/);
  const refused = await postJson(`http://hook:s3cr%40t@127.0.0.1:1/x`, {}, AbortSignal.timeout(5000)).catch((e: Error) => e);
  t.match(String(refused), /POST http:\/\/127\.0\.0\.1:1\/… failed/);
  t.notMatch(String(refused), /s3cr/);
});

t.test("a Slack incoming webhook's secret path is in no error", async (t) => {
  const port = await freePort();
  const path = '/services/T0000000/B0000000/XXXXsecretXXXX';
  const refused = await postJson(`http://127.0.0.1:${port}${path}`, {}, AbortSignal.timeout(5000)).catch((e: Error) => e);
  t.match(String(refused), new RegExp(`POST http://127\\.0\\.0\\.1:${port}/… failed`));
  t.notMatch(String(refused), /services|XXXXsecretXXXX/);
  const srv = createServer((req, res) => {
    req.resume();
    res.statusCode = 404;
    res.end('no_service');
  });
  const p2 = await freePort();
  await new Promise<void>((r) => srv.listen(p2, '127.0.0.1', r));
  t.teardown(() => srv.close());
  const answered = await postJson(`http://127.0.0.1:${p2}${path}`, {}, AbortSignal.timeout(5000)).catch((e: Error) => e);
  t.match(String(answered), /answered 404/);
  t.notMatch(String(answered), /XXXXsecretXXXX/);
});
