import t from 'tap';
import { z } from 'zod';
import { buildApp } from '../../../src/app.js';
import { controlRoutes } from '../../../src/http/control.js';
import { route } from '../../../src/http/route.js';
import { rollbacksRoutes } from '../../../src/http/rollbacks.js';
import { MemoryStore } from '../../../src/store/memory.js';
import { StoreUnavailableError, type Store } from '../../../src/store/store.js';
import { ADMIN_TOKEN, metricValue, WEBHOOK_TOKEN } from '../../support/app.js';
import { testEngine } from '../../support/engine.js';

function fullApp(store?: Store) {
  const e = testEngine({ env: { WEBHOOK_TOKEN, ADMIN_TOKEN }, ...(store ? { store } : {}) });
  const app = buildApp({ config: e.config, store: e.store, metrics: e.metrics, logger: false, routes: [rollbacksRoutes(e.engine), controlRoutes({ reload: async () => ({ ok: true, rules: 0, files: [], trigger: 'api' }) })] });
  return { ...e, app };
}

/** Every route Fastify serves, as "METHOD /path" (HEAD twins of GET routes left out). */
function served(app: ReturnType<typeof buildApp>): string[] {
  const out: string[] = [];
  const stack: string[] = [];
  // printRoutes draws a tree: each line's depth is its indent / 4; its text is the path segment after the parent.
  for (const line of app.printRoutes({ commonPrefix: false }).split('\n')) {
    const m = /^([│ ]*)[├└]── (\S+)(?: \(([A-Z, ]+)\))?$/.exec(line);
    if (!m) continue;
    const depth = m[1]!.length / 4;
    stack.length = depth;
    stack.push(m[2]!);
    for (const method of (m[3] ?? '').split(', ').filter((x) => x && x !== 'HEAD')) out.push(`${method} ${stack.join('')}`);
  }
  return out.sort();
}

t.test('every route the app serves is in /openapi.json, with its method', async (t) => {
  const { app } = fullApp();
  await app.ready();
  const doc = (await app.inject('/openapi.json')).json();
  const documented = Object.entries(doc.paths as Record<string, Record<string, unknown>>)
    .flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p.replace(/\{(\w+)\}/g, ':$1')}`))
    .sort();
  const routes = served(app);
  t.ok(routes.length >= 14, `the tree was read: ${routes.join(', ')}`);
  t.same(routes, documented);

  const post = doc.paths['/v1/rollbacks'].post;
  t.same(Object.keys(post.responses).sort(), ['202', '400', '401', '403', '503'], 'auth, input and store answers are documented by route()');
  t.same(post.security, [{ adminBearer: [] }]);
  t.ok(post.requestBody.content['application/json'].schema.properties.reason, 'the body schema is the one the route validates with');
  const get = doc.paths['/v1/rollbacks/{id}'].get;
  t.match(get.parameters, [{ name: 'id', in: 'path', required: true }]);
  t.same(doc.paths['/v1/rollbacks'].get.parameters.map((p: { name: string }) => p.name).sort(), ['cursor', 'limit', 'state', 'target']);
});

t.test('a route registered around route() stops the app at ready(), naming it', async (t) => {
  const { config, store, metrics } = fullApp();
  const app = buildApp({ config, store, metrics, logger: false, routes: [(a) => a.get('/v1/secret', async () => 'x')] });
  await t.rejects(async () => app.ready(), /routes missing from \/openapi\.json .*GET \/v1\/secret/);
});

t.test('route() validates params, query and body before the handler, naming the field', async (t) => {
  const { config, store, metrics } = fullApp();
  const calls: unknown[] = [];
  const app = buildApp({
    config,
    store,
    metrics,
    logger: false,
    routes: [
      (a, ctx) =>
        route(a, ctx, {
          method: 'post',
          url: '/t/:n',
          summary: 'test',
          tags: ['test'],
          params: z.object({ n: z.coerce.number().int() }),
          query: z.object({ q: z.enum(['a', 'b']).default('a') }),
          body: z.strictObject({ x: z.string() }),
          responses: { 200: { description: 'ok' } },
          handler: async (input) => {
            calls.push(input);
            return input;
          },
        }),
    ],
  });
  const bad = await app.inject({ method: 'POST', url: '/t/x?q=c', payload: { x: 1, y: 2 } });
  t.equal(bad.statusCode, 400);
  t.same(bad.json().error, 'bad_request');
  t.match(bad.json().message, /params\.n/);
  const badQuery = await app.inject({ method: 'POST', url: '/t/1?q=c', payload: { x: 's' } });
  t.match(badQuery.json().message, /query\.q/);
  const badBody = await app.inject({ method: 'POST', url: '/t/1', payload: { x: 1 } });
  t.match(badBody.json().message, /body\.x/);
  t.equal(calls.length, 0, 'the handler never ran on bad input');
  const ok = await app.inject({ method: 'POST', url: '/t/7?q=b', payload: { x: 's' } });
  t.same(ok.json(), { params: { n: 7 }, query: { q: 'b' }, body: { x: 's' } });
});

/** A store whose every call fails as if Redis were down. */
function downStore(): Store {
  const s = new MemoryStore();
  const fail = async () => {
    throw new StoreUnavailableError('redis: Connection is closed.');
  };
  return Object.assign(s, { intake: fail, ping: fail, queueDepth: fail, getValue: fail, setValue: fail, deleteValue: fail, getRecord: fail, listRecords: fail, listRecordsPage: fail }) as Store;
}

t.test('the store down: every API route answers 503 with Retry-After from the one error handler', async (t) => {
  const { app, metrics } = fullApp(downStore());
  const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };
  for (const [method, url, headers] of [
    ['GET', '/v1/rollbacks', {}],
    ['GET', '/v1/rollbacks/rb-abc', {}],
    ['GET', '/v1/pause', {}],
    ['POST', '/v1/resume', admin],
  ] as const) {
    const r = await app.inject({ method, url, headers });
    t.equal(r.statusCode, 503, `${method} ${url}`);
    t.equal(r.headers['retry-after'], '5', `${method} ${url}: Retry-After`);
    t.equal(r.json().error, 'store_unavailable');
  }
  t.equal(await metricValue(metrics, 'rollguard_store_errors_total', { op: 'records' }), 2);
  t.equal(await metricValue(metrics, 'rollguard_store_errors_total', { op: 'pause' }), 2);
});
