// The API commands' HTTP client against a real HTTP server on 127.0.0.1: each answer and each
// transport failure becomes the documented exit code and a message naming what to change.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { ApiClient, CliError, EXIT } from '../../../src/cli/client.js';
import { freePort } from '../../support/ports.js';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

async function server(t: Test, handler: Handler): Promise<string> {
  const s = createServer(handler);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => s.close(() => r())));
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
}

const json = (status: number, body: unknown): Handler => (_req, res) => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
};

async function failure(p: Promise<unknown>): Promise<CliError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof CliError) return err;
    throw err;
  }
  throw new Error('expected a CliError');
}

t.test('a 200 JSON answer is returned; the token goes as a bearer header; a path prefix is kept', async (t) => {
  let seen: { url?: string; auth?: string } = {};
  const url = await server(t, (req, res) => {
    seen = { url: req.url ?? '', auth: req.headers.authorization ?? '' };
    json(200, { rollbacks: [] })(req, res);
  });
  const c = new ApiClient({ url: `${url}/rollguard`, urlSource: '--url', token: 'tok', tokenSource: 'ROLLGUARD_TOKEN', timeoutMs: 5000 });
  t.same(await c.get('/v1/rollbacks', { state: 'pending_approval', target: undefined }), { rollbacks: [] });
  t.equal(seen.url, '/rollguard/v1/rollbacks?state=pending_approval');
  t.equal(seen.auth, 'Bearer tok');
});

t.test('each refusal maps to its exit code and names the credential or the setting', async (t) => {
  const cases: Array<[number, unknown, number, RegExp, { token?: string }]> = [
    [401, { error: 'unauthorized', message: 'invalid bearer token' }, EXIT.auth, /refused the token from ROLLGUARD_TOKEN \(401: invalid bearer token\): check ROLLGUARD_TOKEN/, { token: 'x' }],
    [401, { error: 'unauthorized', message: 'missing Authorization header' }, EXIT.auth, /wants a token .*set ROLLGUARD_TOKEN or pass --token-file FILE/, {}],
    [403, { error: 'forbidden', message: 'the admin API is disabled: set ADMIN_TOKEN' }, EXIT.auth, /does not allow POST \/v1\/pause with the token from ROLLGUARD_TOKEN \(403: the admin API is disabled/, { token: 'x' }],
    [404, { error: 'not_found', message: 'no rollback rb-x' }, EXIT.notFound, /^no rollback rb-x$/, {}],
    [409, { error: 'conflict', message: 'rollback rb-x is rejected, not pending approval' }, EXIT.conflict, /not pending approval/, {}],
    [400, { error: 'bad_request', message: 'body.name: expected a Kubernetes name' }, EXIT.invalid, /refused the request \(400\): body\.name/, {}],
    [503, { error: 'store_unavailable', message: 'the store is unavailable' }, EXIT.server, /answered POST \/v1\/pause with 503: the store is unavailable/, {}],
  ];
  for (const [status, body, code, message, o] of cases) {
    const url = await server(t, json(status, body));
    const err = await failure(new ApiClient({ url, urlSource: '--url', timeoutMs: 5000, ...(o.token ? { token: o.token, tokenSource: 'ROLLGUARD_TOKEN' } : {}) }).post('/v1/pause'));
    t.equal(err.code, code, `${status} -> exit ${code}`);
    t.match(err.message, message);
  }
});

t.test('something that is not rollguard: an HTML page or a bare 404 names the URL setting', async (t) => {
  const html: Handler = (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<html><body>Grafana</body></html>');
  };
  const err = await failure(new ApiClient({ url: await server(t, html), urlSource: 'ROLLGUARD_URL', timeoutMs: 5000 }).get('/v1/status'));
  t.equal(err.code, EXIT.server);
  t.match(err.message, /not rollguard's API .*check ROLLGUARD_URL/);
  const bare: Handler = (_req, res) => {
    res.writeHead(404);
    res.end('404 page not found');
  };
  const err404 = await failure(new ApiClient({ url: await server(t, bare), urlSource: '--url', timeoutMs: 5000 }).get('/v1/rollbacks/rb-1'));
  t.equal(err404.code, EXIT.server);
  t.match(err404.message, /has no GET \/v1\/rollbacks\/rb-1 \(404\): check --url/);
});

t.test('unreachable and silent servers: exit 3, naming --url / ROLLGUARD_URL or --timeout', async (t) => {
  const port = await freePort();
  const refused = await failure(new ApiClient({ url: `http://127.0.0.1:${port}`, urlSource: 'ROLLGUARD_URL', timeoutMs: 5000 }).get('/v1/status'));
  t.equal(refused.code, EXIT.unreachable);
  t.match(refused.message, new RegExp(`cannot reach rollguard at http://127.0.0.1:${port} \\(ECONNREFUSED\\): check ROLLGUARD_URL`));
  const byDefault = await failure(new ApiClient({ url: `http://127.0.0.1:${port}`, urlSource: 'the default', timeoutMs: 5000 }).get('/v1/status'));
  t.match(byDefault.message, /set --url or ROLLGUARD_URL/);
  const silent = await server(t, () => undefined);
  const slow = await failure(new ApiClient({ url: silent, urlSource: '--url', timeoutMs: 300 }).get('/v1/status'));
  t.equal(slow.code, EXIT.unreachable);
  t.match(slow.message, /did not answer GET \/v1\/status within 0.3s \(raise --timeout, or check --url\)/);
});

t.test('a token that cannot be a header, or a transport error quoting it: the token is never in the message', async (t) => {
  let sent = 0;
  const url = await server(t, (req, res) => {
    sent++;
    json(200, {})(req, res);
  });
  const two = 'adm-old-8f3k2\nadm-new-x9q7';
  const bad = await failure(new ApiClient({ url, urlSource: 'ROLLGUARD_URL', token: two, tokenSource: 'ROLLGUARD_TOKEN', timeoutMs: 5000 }).get('/v1/status'));
  t.equal(bad.code, EXIT.usage);
  t.match(bad.message, /^the token from ROLLGUARD_TOKEN cannot be sent as an HTTP header .*give one token$/);
  t.notMatch(bad.message, /adm-old|x9q7/);
  t.equal(sent, 0, 'nothing sent');

  const quoting: typeof fetch = async (_u, init) => {
    throw new TypeError(`refused header "${new Headers(init?.headers).get('authorization')}"`);
  };
  const quoted = await failure(new ApiClient({ url, urlSource: '--url', token: 'adm-new-x9q7', tokenSource: '--token-file t', timeoutMs: 5000, fetch: quoting }).get('/v1/status'));
  t.equal(quoted.code, EXIT.unreachable);
  t.match(quoted.message, /cannot reach rollguard at .* \(refused header "Bearer \*\*\*"\): check --url/);
  t.notMatch(quoted.message, /x9q7/);
});

t.test('a URL that is not http(s): a usage error naming where it came from', async (t) => {
  t.throws(() => new ApiClient({ url: 'rollguard:9095', urlSource: 'ROLLGUARD_URL', timeoutMs: 1 }), { code: EXIT.usage, message: /ROLLGUARD_URL: expected an http:\/\/ or https:\/\/ URL/ });
  t.throws(() => new ApiClient({ url: 'not a url', urlSource: '--url', timeoutMs: 1 }), { code: EXIT.usage, message: /--url: expected rollguard's URL/ });
});
