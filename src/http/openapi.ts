import { z } from 'zod';

/**
 * The OpenAPI document, generated from the same zod schemas the routes validate with: route()
 * (src/http/route.ts) registers each route and its operation here in one call, so /openapi.json
 * cannot drift from what the code accepts.
 */
export type Method = 'get' | 'post' | 'put' | 'delete';
export type Security = 'webhook' | 'admin' | 'read';
export type Responses = Record<number, { description: string; schema?: z.ZodType; contentType?: string }>;

export interface Operation {
  method: Method;
  path: string;
  summary: string;
  tags?: string[];
  security?: Security;
  body?: z.ZodType;
  query?: z.ZodObject;
  params?: z.ZodObject;
  responses: Responses;
}

/** Who may call an operation, as OpenAPI security requirements (any one of them suffices). */
const SECURITY: Record<Security, Record<string, string[]>[]> = {
  webhook: [{ webhookBearer: [] }, { webhookBasic: [] }],
  admin: [{ adminBearer: [] }],
  read: [{ readBearer: [] }, { adminBearer: [] }],
};

export class OpenApiRegistry {
  private readonly ops: Operation[] = [];

  add(op: Operation): void {
    this.ops.push(op);
  }

  /** Whether an operation is documented for this method and Fastify path (`/v1/rollbacks/:id`). */
  has(method: string, path: string): boolean {
    return this.ops.some((o) => o.method === method.toLowerCase() && o.path === path);
  }

  document(version: string): Record<string, unknown> {
    const paths: Record<string, Record<string, unknown>> = {};
    const toSchema = (s: z.ZodType, io: 'input' | 'output') => z.toJSONSchema(s, { io, unrepresentable: 'any', target: 'openapi-3.0' });
    for (const op of this.ops) {
      const path = op.path.replace(/:([A-Za-z_]+)/g, '{$1}');
      const parameters: unknown[] = [];
      for (const [where, obj] of [['query', op.query], ['path', op.params]] as const) {
        if (!obj) continue;
        for (const [name, schema] of Object.entries(obj.shape)) {
          parameters.push({ name, in: where, required: where === 'path' || !(schema as z.ZodType).safeParse(undefined).success, schema: toSchema(schema as z.ZodType, 'input') });
        }
      }
      const responses: Record<string, unknown> = {};
      for (const [code, r] of Object.entries(op.responses)) {
        responses[code] = {
          description: r.description,
          ...(r.schema ? { content: { [r.contentType ?? 'application/json']: { schema: toSchema(r.schema, 'output') } } } : {}),
        };
      }
      (paths[path] ??= {})[op.method] = {
        summary: op.summary,
        ...(op.tags ? { tags: op.tags } : {}),
        ...(op.security ? { security: SECURITY[op.security] } : {}),
        ...(parameters.length ? { parameters } : {}),
        ...(op.body ? { requestBody: { required: true, content: { 'application/json': { schema: toSchema(op.body, 'input') } } } } : {}),
        responses,
      };
    }
    return {
      openapi: '3.0.3',
      info: { title: 'rollguard', version, description: 'Prometheus alerts to guarded, audited Kubernetes rollbacks.' },
      paths,
      components: {
        securitySchemes: {
          webhookBearer: { type: 'http', scheme: 'bearer', description: 'WEBHOOK_TOKEN, as Alertmanager http_config.authorization sends it' },
          webhookBasic: { type: 'http', scheme: 'basic', description: 'WEBHOOK_BASIC_USER / WEBHOOK_BASIC_PASSWORD' },
          adminBearer: { type: 'http', scheme: 'bearer', description: 'ADMIN_TOKEN (also reads)' },
          readBearer: { type: 'http', scheme: 'bearer', description: 'READ_TOKEN; with no read token configured the read endpoints are open' },
        },
      },
    };
  }
}

export const errorSchema = z.object({ error: z.string(), message: z.string() });
