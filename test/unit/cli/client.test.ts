// The API commands' HTTP client against a real HTTP server on 127.0.0.1: each answer and each
// transport failure becomes the documented exit code and a message naming what to change.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { ApiClient, CliError, EXIT } from '../../../src/cli/client.js';
import type { CommandEnv } from '../../../src/cli/command.js';
import { drillCommand } from '../../../src/cli/drill.js';
import { rollbacksCommand } from '../../../src/cli/rollbacks.js';
import { statusCommand } from '../../../src/cli/status.js';
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

/** A command run against `url` (as ROLLGUARD_URL) with what it printed. */
async function command(run: (e: CommandEnv) => Promise<number>, vars: Record<string, string>): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await run({ io: { out: (s) => out.push(s), err: (s) => err.push(s) }, env: vars, now: () => Date.UTC(2026, 11, 7, 12) });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

t.test('a redirect (an HTTPS-redirecting front end) is not followed: exit 3 naming where it points and the URL to set; nothing is done', async (t) => {
  const seen: string[] = [];
  // where the redirect points: a rollguard that would answer a GET /v1/rollbacks (a POST turned into a GET) with a page
  const target = await server(t, (req, res) => {
    seen.push(`${req.method} ${req.url}`);
    json(200, req.url?.startsWith('/v1/pause') ? { paused: false } : { rollbacks: [], nextCursor: null })(req, res);
  });
  const front = await server(t, (req, res) => {
    res.writeHead(301, { location: `${target}${req.url}` });
    res.end();
  });
  const create = await command((e) => rollbacksCommand(['create', 'Deployment/prod/checkout', '--reason', 'bad deploy'], e), { ROLLGUARD_URL: front, ROLLGUARD_TOKEN: 'adm-SECRET' });
  t.equal(create.code, EXIT.unreachable);
  t.equal(create.out, '', 'nothing printed as done');
  t.equal(create.err, `rollguard rollbacks create: rollguard at ${front} answered POST /v1/rollbacks with a redirect (301) to ${target}/v1/rollbacks: the CLI follows no redirect (a POST would be sent again as a GET); set ROLLGUARD_URL to ${target}`);
  const pause = await command((e) => statusCommand('pause', ['--reason', 'incident'], e), { ROLLGUARD_URL: front, ROLLGUARD_TOKEN: 'adm-SECRET' });
  t.equal(pause.code, EXIT.unreachable);
  t.match(pause.err, `answered POST /v1/pause with a redirect (301) to ${target}/v1/pause`);
  t.notMatch(pause.out, /paused: no/);
  const list = await command((e) => rollbacksCommand(['list', '--state', 'pending_approval', '--url', `${front}/`], e), {});
  t.equal(list.code, EXIT.unreachable, 'a GET too');
  t.match(list.err, `set --url to ${target}`);
  t.same(seen, [], 'nothing reached where the redirects point (nor the token)');

  const elsewhere = await server(t, (_req, res) => {
    res.writeHead(302, { location: '/login?next=%2Fv1%2Fstatus' });
    res.end();
  });
  const login = await failure(new ApiClient({ url: elsewhere, urlSource: 'the default', timeoutMs: 5000 }).get('/v1/status'));
  t.equal(login.code, EXIT.unreachable);
  t.equal(login.message, `rollguard at ${elsewhere} answered GET /v1/status with a redirect (302) to ${elsewhere}/login: the CLI follows no redirect; set --url or ROLLGUARD_URL to rollguard's own URL`);
});

t.test("a 2xx JSON answer that is not what the command prints (another server's, a proxy's): exit 1 naming the URL setting, never `undefined`", async (t) => {
  const other = await server(t, json(200, { ok: true, rollbacks: [] }));
  for (const [name, run] of [
    ['create', (e: CommandEnv) => rollbacksCommand(['create', 'Deployment/prod/checkout', '--reason', 'x'], e)],
    ['approve', (e: CommandEnv) => rollbacksCommand(['approve', 'rb-1'], e)],
    ['get', (e: CommandEnv) => rollbacksCommand(['get', 'rb-1'], e)],
    ['pause', (e: CommandEnv) => statusCommand('pause', [], e)],
    ['resume', (e: CommandEnv) => statusCommand('resume', [], e)],
    ['status', (e: CommandEnv) => statusCommand('status', [], e)],
  ] as const) {
    const r = await command(run, { ROLLGUARD_URL: other });
    t.equal(r.code, EXIT.server, name);
    t.equal(r.out, '', `${name}: nothing printed`);
    t.match(r.err, new RegExp(`^rollguard [a-z ]+: ${other} answered (GET|POST) /v1/[a-z/0-9-]+ with JSON that is not (a rollback record|a pause state|rollguard's status) \\(\\{"ok":true,"rollbacks":\\[\\]\\}\\): check ROLLGUARD_URL$`), name);
  }
  const page = await server(t, json(200, { paused: true }));
  t.equal((await command((e) => rollbacksCommand(['list'], e), { ROLLGUARD_URL: page })).code, EXIT.server, 'list: not a list of records');
});

t.test('a user name and password in ROLLGUARD_URL: never printed; sent as basic auth, or refused beside a token', async (t) => {
  const password = 'Pa55w0rd-proxy';
  let auth: string[] = [];
  const proxy = await server(t, (req, res) => {
    auth.push(req.headers.authorization ?? '-');
    json(401, { message: 'unauthorized' })(req, res);
  });
  const withCreds = proxy.replace('http://', `http://ops:${password}@`);

  const both = await command((e) => statusCommand('status', [], e), { ROLLGUARD_URL: withCreds, ROLLGUARD_TOKEN: 'tok' });
  t.equal(both.code, EXIT.usage);
  t.match(both.err, /ROLLGUARD_URL holds a user name and password \("http:\/\/\*\*\*@127\.0\.0\.1:\d+"\), sent as basic auth, and ROLLGUARD_TOKEN a token/);
  t.notMatch(both.err, /Pa55w0rd|ops:/, 'no password, no user');
  t.notMatch(both.err, /cannot reach/);
  t.same(auth, [], 'nothing sent');

  const basic = await command((e) => statusCommand('status', [], e), { ROLLGUARD_URL: withCreds });
  t.same(auth, [`Basic ${Buffer.from(`ops:${password}`).toString('base64')}`], 'sent as basic auth, to the URL without them');
  t.equal(basic.code, EXIT.auth);
  t.match(basic.err, `refused the user name and password in ROLLGUARD_URL (401: unauthorized)`);
  t.notMatch(basic.err, /Pa55w0rd/);
  t.match(basic.err, `${proxy}`);

  auth = [];
  const quoting: typeof fetch = async (u, init) => {
    throw new TypeError(`cannot connect to ${String(u)} with ${new Headers(init?.headers).get('authorization')} (ops:${password})`);
  };
  const quoted = await failure(new ApiClient({ url: withCreds, urlSource: '--url', timeoutMs: 5000, fetch: quoting }).get('/v1/status'));
  t.equal(quoted.code, EXIT.unreachable);
  t.notMatch(quoted.message, new RegExp(`Pa55w0rd|${Buffer.from(`ops:${password}`).toString('base64')}`), 'a transport error quoting the credential: redacted');

  for (const bad of [`http://ops:${password}@[::1`, `ftp://ops:${password}@host/`, `http://ops:${password}%zz@host/`]) {
    const r = await command((e) => statusCommand('status', [], e), { ROLLGUARD_URL: bad });
    t.equal(r.code, EXIT.usage, bad.replace(password, '…'));
    t.notMatch(r.err, /Pa55w0rd/, `${bad.replace(password, '…')}: no password`);
  }
});

t.test("the server's message in an error is one line, clipped: a line break in it cannot print a forged line of its own", async (t) => {
  const forged = 'rb-abc approved by alice: rolling back Deployment/prod/api now';
  for (const [name, status, argv, code, message] of [
    ['409, line feed', 409, ['approve', 'rb-abc'], EXIT.conflict, `x\n${forged}`],
    ['409, U+2028', 409, ['approve', 'rb-abc'], EXIT.conflict, `x\u2028${forged}`],
    ['404, line feed', 404, ['get', 'rb-abc'], EXIT.notFound, `no rollback rb-abc\r\n${forged}`],
    ['404, U+2028 and U+2029', 404, ['get', 'rb-abc'], EXIT.notFound, `no rollback rb-abc\u2029\u2028${forged}`],
  ] as const) {
    const url = await server(t, json(status, { error: 'x', message }));
    const r = await command((e) => rollbacksCommand([...argv], e), { ROLLGUARD_URL: url, ROLLGUARD_TOKEN: 'tok' });
    t.equal(r.code, code, name);
    t.equal(r.out, '', `${name}: nothing on stdout`);
    t.notMatch(r.err, /[\n\r\u2028\u2029\u0085]/, `${name}: one line`);
    t.match(r.err, new RegExp(` ${forged}$`), `${name}: the text is kept, after a space`);
  }
  // a 100 kB message, and the other refusals: at most 500 characters of it, with an ellipsis
  for (const status of [404, 409, 400, 401, 403, 422, 503]) {
    const url = await server(t, json(status, { error: 'x', message: `${'A'.repeat(50_000)}\n${'B'.repeat(50_000)}` }));
    const err = await failure(new ApiClient({ url, urlSource: '--url', timeoutMs: 5000 }).get('/v1/rollbacks/rb-abc'));
    t.notMatch(err.message, /[\n\r\u2028\u2029]/, `${status}: one line`);
    t.match(err.message, /A{499}…/, `${status}: clipped with an ellipsis`);
    t.notMatch(err.message, /A{500}|B/, `${status}: no more than 500 characters of it`);
    t.ok(err.message.length < 1000, `${status}: ${err.message.length} characters`);
  }
});

t.test("a list whose items are not what the command prints (a null, an {}): exit 1 naming the URL setting, not a TypeError", async (t) => {
  const drill = { id: 'dr-1', target: 'Deployment/staging/web', state: 'passed', fault: { kind: 'image', summary: 'image x' }, before: { revision: 3, images: ['x'] }, links: {}, createdAt: 0 };
  for (const [name, body, run, what] of [
    ['rollbacks list, [null]', { rollbacks: [null] }, (e: CommandEnv) => rollbacksCommand(['list'], e), 'a list of rollback records'],
    ['rollbacks list, [{}]', { rollbacks: [{}], nextCursor: null }, (e: CommandEnv) => rollbacksCommand(['list'], e), 'a list of rollback records'],
    ['rollbacks list, an item without a target', { rollbacks: [{ id: 'rb-1', state: 'executed' }] }, (e: CommandEnv) => rollbacksCommand(['list'], e), 'a list of rollback records'],
    ['drill list, [null]', { drills: [null] }, (e: CommandEnv) => drillCommand(['list'], e), 'a list of drills'],
    ['drill list, [{}]', { drills: [{}] }, (e: CommandEnv) => drillCommand(['list'], e), 'a list of drills'],
    ['drill list, a fault without its kind', { drills: [{ ...drill, fault: {} }] }, (e: CommandEnv) => drillCommand(['list'], e), 'a list of drills'],
    ['drill get, a fault without its summary', { ...drill, fault: { kind: 'image' } }, (e: CommandEnv) => drillCommand(['get', 'dr-1'], e), 'a drill record'],
    ['drill get, no pre-drill revision', { ...drill, before: null }, (e: CommandEnv) => drillCommand(['get', 'dr-1'], e), 'a drill record'],
  ] as const) {
    const url = await server(t, json(200, body));
    let r: { code: number; out: string; err: string };
    try {
      r = await command(run, { ROLLGUARD_URL: url });
    } catch (err) {
      t.fail(`${name}: threw ${(err as Error).name}: ${(err as Error).message}`);
      continue;
    }
    t.equal(r.code, EXIT.server, name);
    t.equal(r.out, '', `${name}: nothing printed`);
    t.match(r.err, new RegExp(`answered GET /v1/[a-z/0-9-]+ with JSON that is not ${what} \\(.*\\): check ROLLGUARD_URL$`), name);
  }
  // a field the shape checks leave (optional, or of another type): said, not a stack trace
  const rec = { id: 'rb-1', target: 'Deployment/prod/api', state: 'succeeded', createdAt: 0, updatedAt: 0, guards: [], timeline: [], times: {} };
  for (const [name, body, args] of [
    ['rollbacks list, a rule that is a number', { rollbacks: [{ ...rec, rule: 5 }] }, ['list']],
    ['rollbacks list, a rule that is an object', { rollbacks: [{ ...rec, rule: {} }] }, ['list']],
    ['rollbacks get, a guard that is null', { ...rec, guards: [null] }, ['get', 'rb-1']],
    ['rollbacks get, a timeline step that is {}', { ...rec, timeline: [{}] }, ['get', 'rb-1']],
  ] as const) {
    const url = await server(t, json(200, body));
    let r: { code: number; out: string; err: string };
    try {
      r = await command((e) => rollbacksCommand([...args], e), { ROLLGUARD_URL: url });
    } catch (err) {
      t.fail(`${name}: threw ${(err as Error).name}: ${(err as Error).message}`);
      continue;
    }
    t.equal(r.code, EXIT.server, name);
    t.match(r.err, /holds a field that is not what this command prints \(.*\): check that --url or ROLLGUARD_URL is rollguard's API/, name);
  }
  // the real thing still prints
  const ok = await server(t, json(200, { drills: [drill] }));
  const r = await command((e) => drillCommand(['list'], e), { ROLLGUARD_URL: ok });
  t.equal(r.code, EXIT.ok, 'a drill list as rollguard answers it');
  t.match(r.out, /dr-1\s+Deployment\/staging\/web\s+passed\s+image/);
});
