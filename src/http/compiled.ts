import { Ajv } from 'ajv';
import { z } from 'zod';

/** What a route's input check answers: zod's own result shape, so the caller cannot tell them apart. */
export type Parsed<T> = { success: true; data: T } | { success: false; error: z.ZodError };

/*
 * What the compiled check may take: schemas whose zod output is their input (defaults aside), and
 * whose every check has an exact JSON Schema form. Anything else is refused at start-up
 * (compiledParser throws), since zod's JSON Schema output passes some of it over silently: a
 * refinement is dropped, a transform's input side is emitted, a coercion is emitted as its type, a
 * z.object that strips unknown keys is emitted as one that keeps them, a regex's flags are
 * dropped, and `.meta()` keywords (a default, a maxLength) are merged in beside the def's own.
 */
const TYPES = new Set(['object', 'string', 'number', 'boolean', 'literal', 'enum', 'array', 'record', 'optional', 'default', 'unknown']);
const CHECKS = new Set(['min_length', 'max_length', 'length_equals', 'greater_than', 'less_than', 'number_format', 'multiple_of', 'string_format']);
/** string formats zod checks by their regex alone (others, such as url or base64, check more than the regex zod emits) */
const FORMATS = new Set(['datetime', 'date', 'time', 'regex']);
/** metadata that only documents: any other `.meta()` key may be a JSON Schema keyword */
const META = new Set(['description', 'title', 'examples', 'deprecated', 'id']);
/** zod never copies an own `__proto__` key into its output: the compiled check refuses it, so zod answers */
const NOT_PROTO = { not: { const: '__proto__' } };

interface Def {
  type: string;
  format?: string;
  catchall?: z.ZodType;
  coerce?: boolean;
  pattern?: RegExp;
  checks?: Array<{ _zod: { def: { check: string; format?: string; pattern?: RegExp } } }>;
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
  const meta = z.globalRegistry.get(zodSchema as z.ZodType);
  for (const k of Object.keys(meta ?? {})) if (!META.has(k)) throw no(`the metadata "${k}"`);
  for (const c of def.checks ?? []) if (!CHECKS.has(c._zod.def.check)) throw no(`the check "${c._zod.def.check}"`);
  if (def.type === 'string') {
    // formats are not checked (validateFormats off): only the patterns zod emits, its own regexes,
    // each without flags (Ajv compiles them without its `u` flag too: unicodeRegExp off)
    const formats = [...(def.format !== undefined ? [def.format] : []), ...(def.checks ?? []).filter((c) => c._zod.def.check === 'string_format').map((c) => c._zod.def.format ?? '?')];
    for (const f of formats) if (!FORMATS.has(f)) throw no(`the string format "${f}"`);
    const emitted = new Set([jsonSchema.pattern, ...(Array.isArray(jsonSchema.allOf) ? jsonSchema.allOf.map((x: { pattern?: string }) => x.pattern) : [])].filter((x) => typeof x === 'string'));
    const patterns = [def.pattern, ...(def.checks ?? []).map((c) => c._zod.def.pattern)].filter((re): re is RegExp => re instanceof RegExp);
    if (formats.length > 0 && patterns.length === 0) throw no('a string format without a pattern');
    for (const re of patterns) {
      if (re.flags !== '') throw no(`the regex /${re.source}/${re.flags} (flags)`);
      if (!emitted.has(re.source)) throw no(`the regex /${re.source}/ (not emitted)`);
    }
  }
  if (def.type === 'object' || def.type === 'record') jsonSchema.propertyNames = jsonSchema.propertyNames ? { allOf: [jsonSchema.propertyNames, NOT_PROTO] } : NOT_PROTO;
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
 *   in place: the value is the request's own parsed body). An object with an own `__proto__` key
 *   (Fastify removes them from a body: onProtoPoisoning, app.ts) is left to zod, which drops it.
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
  const ajv = new Ajv({ useDefaults: true, allErrors: false, strict: false, validateFormats: false, coerceTypes: false, unicodeRegExp: false });
  const check = ajv.compile(jsonSchema);
  return (value) => {
    if (check(value)) return { success: true, data: value as z.output<S> };
    return schema.safeParse(value) as Parsed<z.output<S>>;
  };
}
