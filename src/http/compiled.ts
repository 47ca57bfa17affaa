import { Ajv } from 'ajv';
import { z } from 'zod';

/** What a route's input check answers: zod's own result shape, so the caller cannot tell them apart. */
export type Parsed<T> = { success: true; data: T } | { success: false; error: z.ZodError };

/*
 * What the compiled check may take: schemas whose zod output is their input (defaults aside), and
 * whose every check has an exact JSON Schema form. Anything else is refused at start-up
 * (compiledParser throws), since zod's JSON Schema output passes some of it over silently: a
 * refinement is dropped, a transform's input side is emitted, a coercion is emitted as its type, a z.object that strips unknown keys
 * is emitted as one that keeps them.
 */
const TYPES = new Set(['object', 'string', 'number', 'boolean', 'literal', 'enum', 'array', 'record', 'optional', 'default', 'unknown']);
const CHECKS = new Set(['min_length', 'max_length', 'length_equals', 'greater_than', 'less_than', 'number_format', 'multiple_of', 'string_format']);

interface Def {
  type: string;
  format?: string;
  catchall?: z.ZodType;
  coerce?: boolean;
  checks?: Array<{ _zod: { def: { check: string; format?: string } } }>;
}

function exact(zodSchema: unknown, jsonSchema: Record<string, unknown>, path: (string | number)[]): void {
  const def = (zodSchema as { _zod: { def: Def } })._zod.def;
  const at = path.length ? path.join('.') : 'the root';
  const no = (why: string) => new Error(`compiledParser: ${why} at ${at} has no exact JSON Schema form; check this schema with zod alone`);
  if (!TYPES.has(def.type)) throw no(`a ${def.type}`);
  if (def.coerce) throw no('a coercion');
  if (def.type === 'object' && !def.catchall) throw no('a z.object that strips unknown keys (use z.looseObject or z.strictObject)');
  // Ajv fills a default in only for an object's property
  if (def.type === 'default' && path.at(-2) !== 'properties') throw no('a default outside an object property');
  for (const c of def.checks ?? []) if (!CHECKS.has(c._zod.def.check)) throw no(`the check "${c._zod.def.check}"`);
  // formats are not checked (validateFormats off): only the pattern zod emits beside one, its own regex
  const formatted = def.format !== undefined || (def.checks ?? []).some((c) => c._zod.def.check === 'string_format');
  if (formatted && typeof jsonSchema.pattern !== 'string' && !Array.isArray(jsonSchema.allOf)) throw no(`the string format "${def.format ?? 'of a check'}" without a pattern`);
}

/**
 * A zod schema checked by a compiled JSON Schema validator first (Ajv, the validator Fastify itself
 * compiles route schemas with), for an input on the hot path: the webhook payload, ten alerts a
 * request at thousands of requests a second, where zod's walk of every alert and label was the
 * largest share of intake's CPU (docs/benchmarks.md, "(d) re-measured").
 *
 * zod stays the one declaration and the authority on what is refused:
 * - Ajv's schema is zod's own JSON Schema output for the input (`z.toJSONSchema`, io "input"), so
 *   the two cannot drift apart by hand; a schema whose output is not its input, or with a check
 *   JSON Schema cannot state exactly, is refused here at start-up (above), never checked loosely.
 * - An input Ajv accepts is answered as is, with the schema's defaults filled in (`useDefaults`,
 *   in place: the value is the request's own parsed body).
 * - An input Ajv refuses goes to zod, whose error names each field as every other route's does;
 *   were zod to accept it, zod's output is used.
 * test/unit/http/compiled.test.ts holds the two to the same answers over generated payloads.
 */
export function compiledParser<S extends z.ZodType>(schema: S): (value: unknown) => Parsed<z.output<S>> {
  const jsonSchema = z.toJSONSchema(schema, {
    io: 'input',
    target: 'draft-7',
    unrepresentable: 'throw',
    override: ({ zodSchema, jsonSchema: js, path }) => exact(zodSchema, js as Record<string, unknown>, path),
  });
  const ajv = new Ajv({ useDefaults: true, allErrors: false, strict: false, validateFormats: false, coerceTypes: false });
  const check = ajv.compile(jsonSchema);
  return (value) => {
    if (check(value)) return { success: true, data: value as z.output<S> };
    return schema.safeParse(value) as Parsed<z.output<S>>;
  };
}
