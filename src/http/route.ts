import type { FastifyInstance, FastifyReply, FastifyRequest, onResponseHookHandler } from 'fastify';
import { z } from 'zod';
import { compiledParser } from './compiled.js';
import type { AppContext } from './context.js';
import { HttpError, InvalidRequestError, type RouteConfig } from './errors.js';
import { errorSchema, type Method, type Responses, type Security } from './openapi.js';

type Out<S> = S extends z.ZodType ? z.output<S> : undefined;

/** A route as one declaration: what Fastify serves and what /openapi.json documents. */
export interface RouteSpec<P extends z.ZodObject | undefined, Q extends z.ZodObject | undefined, B extends z.ZodType | undefined> {
  method: Method;
  /** Fastify's path syntax: /v1/rollbacks/:id */
  url: string;
  summary: string;
  tags: string[];
  /** the credential required (checked before the body is read); none: open */
  auth?: Security;
  params?: P;
  query?: Q;
  body?: B;
  /** the body is checked by a validator compiled from its schema first (compiled.ts): for a hot path; zod still words every refusal */
  compiled?: boolean;
  /** the answers of the handler itself; 400 (bad input), 401/403 (auth) and 503 (store) are added */
  responses: Responses;
  /** set when the route uses the store: its failures answer 503 and count under this op */
  storeOp?: string;
  bodyLimit?: number;
  onResponse?: onResponseHookHandler;
  /** called with the validated input; returns the body (200) or answers through reply */
  handler: (input: { params: Out<P>; query: Out<Q>; body: Out<B> }, req: FastifyRequest, reply: FastifyReply) => Promise<unknown>;
}

/**
 * Registers a route and documents it from the same zod schemas. The input is validated before the
 * handler runs; a mismatch throws InvalidRequestError (400 naming each field, see errors.ts).
 */
export function route<P extends z.ZodObject | undefined = undefined, Q extends z.ZodObject | undefined = undefined, B extends z.ZodType | undefined = undefined>(
  app: FastifyInstance,
  ctx: AppContext,
  spec: RouteSpec<P, Q, B>,
): void {
  const responses: Responses = { ...spec.responses };
  const add = (code: number, description: string) => (responses[code] ??= { description, schema: errorSchema });
  if (spec.params || spec.query || spec.body) add(400, 'the request does not match the schema; the message names each field');
  if (spec.auth) add(401, 'credentials missing or wrong');
  if (spec.auth === 'admin') add(403, 'the admin API is disabled (no ADMIN_TOKEN)');
  if (spec.storeOp) add(503, 'the store is unavailable; nothing was stored or changed; retry after Retry-After');
  ctx.openapi.add({
    method: spec.method,
    path: spec.url,
    summary: spec.summary,
    tags: spec.tags,
    ...(spec.auth ? { security: spec.auth } : {}),
    ...(spec.params ? { params: spec.params } : {}),
    ...(spec.query ? { query: spec.query } : {}),
    ...(spec.body ? { body: spec.body } : {}),
    responses,
  });

  const bodyParse = spec.body && spec.compiled ? compiledParser(spec.body) : undefined;
  const parse = <S extends z.ZodType | undefined>(part: 'params' | 'query' | 'body', schema: S, value: unknown): Out<S> => {
    if (!schema) return undefined as Out<S>;
    const r = part === 'body' && bodyParse ? bodyParse(value) : schema.safeParse(value);
    if (!r.success) throw new InvalidRequestError(part, r.error);
    return r.data as Out<S>;
  };
  const config: RouteConfig = spec.storeOp ? { storeOp: spec.storeOp } : {};
  app.route({
    method: spec.method.toUpperCase() as Uppercase<Method>,
    url: spec.url,
    config,
    ...(spec.auth ? { onRequest: ctx.auth[spec.auth] } : {}),
    ...(spec.bodyLimit !== undefined ? { bodyLimit: spec.bodyLimit } : {}),
    ...(spec.onResponse ? { onResponse: spec.onResponse } : {}),
    handler: async (req, reply) => {
      const input = {
        params: parse('params', spec.params as P, req.params),
        query: parse('query', spec.query as Q, req.query),
        body: parse('body', spec.body as B, req.body ?? {}),
      };
      return spec.handler(input, req, reply);
    },
  });
}

/** What recordRoutes serves: one kind of stored record, read by id. */
export interface RecordRoutesSpec<R> {
  /** the collection's path: /v1/rollbacks */
  base: string;
  /** the record's name in messages: "no such rollback", "no rollback rb-…" */
  noun: string;
  tags: string[];
  params: z.ZodObject<{ id: z.ZodString }, z.core.$strict>;
  storeOp: string;
  schema: z.ZodType;
  one: { summary: string; description: string };
  report: { summary: string; render: (record: R) => string };
  get: (id: string) => Promise<R | null | undefined>;
}

/** GET <base>/:id (the record as JSON) and GET <base>/:id/report (its markdown report); 404 naming the id when there is none. */
export function recordRoutes<R>(app: FastifyInstance, ctx: AppContext, spec: RecordRoutesSpec<R>): void {
  const load = async (id: string): Promise<R> => {
    const record = await spec.get(id);
    if (!record) throw new HttpError(404, 'not_found', `no ${spec.noun} ${id}`);
    return record;
  };
  const notFound = { description: `no such ${spec.noun}`, schema: errorSchema };
  const common = { method: 'get', tags: spec.tags, auth: 'read', params: spec.params, storeOp: spec.storeOp } as const;
  route(app, ctx, {
    ...common,
    url: `${spec.base}/:id`,
    summary: spec.one.summary,
    responses: { 200: { description: spec.one.description, schema: spec.schema }, 404: notFound },
    handler: async ({ params }) => load(params.id),
  });
  route(app, ctx, {
    ...common,
    url: `${spec.base}/:id/report`,
    summary: spec.report.summary,
    responses: { 200: { description: 'text/markdown', schema: z.string(), contentType: 'text/markdown' }, 404: notFound },
    handler: async ({ params }, _req, reply) => reply.type('text/markdown; charset=utf-8').send(spec.report.render(await load(params.id))),
  });
}
