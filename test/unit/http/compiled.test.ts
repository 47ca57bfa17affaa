import fc from 'fast-check';
import t from 'tap';
import { z } from 'zod';
import { webhookPayloadSchema } from '../../../src/alertmanager/schema.js';
import { compiledParser } from '../../../src/http/compiled.js';

/*
 * The webhook body is checked by Ajv compiled from zod's JSON Schema (src/http/compiled.ts) and
 * only refusals go to zod. An input the compiled check accepts and zod would refuse is the one
 * mistake that matters (a malformed alert queued), so the two are held to the same answer, and
 * to the same output, over payloads built to sit on each edge of the schema.
 */
const parseCompiled = compiledParser(webhookPayloadSchema);
const clone = (v: unknown): unknown => (v === undefined ? undefined : JSON.parse(JSON.stringify(v)));

function sameAnswer(value: unknown): void {
  const byZod = webhookPayloadSchema.safeParse(clone(value));
  const compiled = parseCompiled(clone(value));
  if (byZod.success !== compiled.success) {
    throw new Error(`zod ${byZod.success ? 'accepts' : 'refuses'} and the compiled check ${compiled.success ? 'accepts' : 'refuses'}: ${JSON.stringify(value)}`);
  }
  if (byZod.success && compiled.success) {
    // key order aside (the compiled check fills defaults in after the sender's keys)
    const sorted = (v: unknown): unknown =>
      Array.isArray(v) ? v.map(sorted) : v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, x]) => [k, sorted(x)])) : v;
    const a = JSON.stringify(sorted(byZod.data));
    const b = JSON.stringify(sorted(compiled.data));
    if (a !== b) throw new Error(`same answer, different output:\n zod      ${a}\n compiled ${b}`);
  }
  if (!byZod.success && !compiled.success && JSON.stringify(byZod.error.issues) !== JSON.stringify(compiled.error.issues)) {
    throw new Error('a refusal is not worded by zod');
  }
}

const hex = (minLength: number) => fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength, maxLength: 16 });
const two = (lo: number, hi: number) => fc.integer({ min: lo, max: hi }).map((n) => String(n).padStart(2, '0'));
/** RFC 3339 and its near misses: days past the month's end, 29 February, hour 24, offsets, case, fractions, no seconds */
const time = fc.oneof(
  fc
    .record({
      y: fc.constantFrom('2024', '2026', '1900', '2000', '0001', '9999'),
      mo: two(0, 13),
      d: two(0, 32),
      h: two(0, 25),
      mi: two(0, 60),
      s: fc.option(two(0, 61), { nil: undefined }),
      frac: fc.constantFrom('', '.1', '.123456789', '.', '.1234567890123'),
      t: fc.constantFrom('T', 't', ' '),
      zone: fc.constantFrom('Z', 'z', '+00:00', '-05:30', '+24:00', '+01:60', '+0100', '', '+01'),
    })
    .map(({ y, mo, d, h, mi, s, frac, t, zone }) => `${y}-${mo}-${d}${t}${h}:${mi}${s === undefined ? '' : `:${s}${frac}`}${zone}`),
  fc.constantFrom('0001-01-01T00:00:00Z', '2024-02-29T00:00:00Z', '2026-02-29T00:00:00Z', '1900-02-29T00:00:00Z', '2000-02-29T00:00:00Z', '2026-04-31T00:00:00Z', '2026-12-06T03:00:00Z\n', ' 2026-12-06T03:00:00Z', '1', 'Tuesday 3', '２０２６-12-06T03:00:00Z'),
  fc.string(),
);
const labelValue = fc.oneof(fc.string(), fc.constant(''), fc.integer(), fc.constant(null), fc.boolean());
const labels = fc.oneof(
  { weight: 8, arbitrary: fc.dictionary(fc.oneof(fc.string(), fc.constantFrom('alertname', 'namespace', '__proto__', 'constructor')), fc.string(), { maxKeys: 4 }) },
  { weight: 2, arbitrary: fc.dictionary(fc.string(), labelValue, { minKeys: 1, maxKeys: 3 }) },
  { weight: 1, arbitrary: fc.constantFrom(null, [], ['a'], 'labels', 0) },
);
/** a field present with a value of the schema's kind, absent, or of another kind */
const maybe = <T>(arb: fc.Arbitrary<T>) =>
  fc.oneof({ weight: 6, arbitrary: arb }, { weight: 1, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.oneof(fc.constant(null), fc.integer(), fc.string(), fc.constant([]), fc.constant({})) });
const status = fc.constantFrom('firing', 'resolved', 'Firing', 'pending', '');
const alert = fc.record(
  {
    status: maybe(status),
    labels: maybe(labels),
    annotations: maybe(labels),
    startsAt: maybe(time),
    endsAt: maybe(time),
    generatorURL: maybe(fc.webUrl()),
    fingerprint: maybe(fc.oneof(hex(0), fc.constant(''))),
    extra: fc.option(fc.anything(), { nil: undefined }),
  },
  { requiredKeys: [] },
);
const payload = fc.record(
  {
    version: maybe(fc.constantFrom('4', '3', 4, '')),
    groupKey: maybe(fc.string()),
    truncatedAlerts: maybe(fc.oneof(fc.integer({ min: -2, max: 5 }), fc.double(), fc.constant(2 ** 53), fc.constant(2 ** 53 - 1), fc.constant(1e300))),
    status: maybe(status),
    receiver: maybe(fc.string()),
    groupLabels: maybe(labels),
    commonLabels: maybe(labels),
    commonAnnotations: maybe(labels),
    externalURL: maybe(fc.string()),
    alerts: maybe(fc.array(alert, { maxLength: 4 })),
    notification_reason: fc.option(fc.anything(), { nil: undefined }),
  },
  { requiredKeys: [] },
);
/** a payload Alertmanager would send, so that the accepting side is exercised as much as the refusing one */
const wellFormed = fc.record({
  version: fc.constant('4'),
  groupKey: fc.string(),
  status,
  receiver: fc.string(),
  groupLabels: fc.dictionary(fc.string(), fc.string(), { maxKeys: 3 }),
  alerts: fc.array(
    fc.record(
      {
        status: fc.constantFrom('firing', 'resolved'),
        labels: fc.dictionary(fc.string(), fc.string(), { maxKeys: 5 }),
        annotations: fc.dictionary(fc.string(), fc.string(), { maxKeys: 2 }),
        startsAt: time,
        endsAt: fc.constantFrom('0001-01-01T00:00:00Z', '2026-12-06T03:04:05.123456789+01:00'),
        generatorURL: fc.webUrl(),
        fingerprint: hex(1),
      },
      { requiredKeys: ['status', 'labels', 'startsAt', 'fingerprint'] },
    ),
    { maxLength: 3 },
  ),
});

t.test('the compiled check and zod give the same answer and the same output, on any payload', async (t) => {
  fc.assert(fc.property(payload, (p) => sameAnswer(p)), { numRuns: 3000 });
  fc.assert(fc.property(wellFormed, (p) => sameAnswer(p)), { numRuns: 3000 });
  fc.assert(fc.property(fc.anything(), (p) => sameAnswer(p)), { numRuns: 500 });
  t.pass('3,000 hostile, 3,000 well-formed and 500 arbitrary values');
});

t.test('the cases the schema exists for', async (t) => {
  const ok = {
    version: '4',
    groupKey: '{}:{alertname="X"}',
    status: 'firing',
    receiver: 'rollguard',
    alerts: [{ status: 'firing', labels: { alertname: 'X' }, startsAt: '2026-12-06T03:00:00Z', fingerprint: 'abc' }],
  };
  const r = parseCompiled(clone(ok));
  t.ok(r.success, 'a minimal Alertmanager payload is accepted');
  if (r.success) {
    t.same(r.data.alerts[0]!.annotations, {}, 'defaults are filled in: annotations');
    t.equal(r.data.alerts[0]!.generatorURL, '', 'generatorURL');
    t.equal(r.data.truncatedAlerts, 0, 'truncatedAlerts');
    t.same(r.data.commonLabels, {}, 'commonLabels');
  }
  // an own __proto__ key (Fastify removes them from a body first: onProtoPoisoning) is left to zod, which drops it
  const proto = parseCompiled(JSON.parse('{"version":"4","groupKey":"g","status":"firing","receiver":"r","commonAnnotations":{"__proto__":"x","a":"b"},"alerts":[{"status":"firing","labels":{"__proto__":"x","alertname":"X"},"startsAt":"2026-12-06T03:00:00Z","fingerprint":"abc"}]}'));
  t.ok(proto.success, 'a body with own __proto__ keys is answered');
  if (proto.success) {
    t.same(Object.keys(proto.data.commonAnnotations), ['a'], 'zod\'s output: no __proto__ key');
    t.same(Object.keys(proto.data.alerts[0]!.labels), ['alertname'], 'nor in a label set');
    t.equal(Object.getPrototypeOf(proto.data.alerts[0]!.labels), Object.prototype, 'and the prototype untouched');
  }
  const refusals: Array<[string, (p: typeof ok) => unknown, string]> = [
    ['30 February', (p) => ({ ...p, alerts: [{ ...p.alerts[0], startsAt: '2026-02-30T03:00:00Z' }] }), 'body.alerts.0.startsAt: expected an RFC 3339 timestamp'],
    ['no seconds', (p) => ({ ...p, alerts: [{ ...p.alerts[0], startsAt: '2026-12-06T03:00Z' }] }), 'body.alerts.0.startsAt'],
    ['a local time', (p) => ({ ...p, alerts: [{ ...p.alerts[0], startsAt: '2026-12-06T03:00:00' }] }), 'body.alerts.0.startsAt'],
    ['an empty fingerprint', (p) => ({ ...p, alerts: [{ ...p.alerts[0], fingerprint: '' }] }), 'body.alerts.0.fingerprint: expected a non-empty fingerprint'],
    ['a number as a label value', (p) => ({ ...p, alerts: [{ ...p.alerts[0], labels: { alertname: 1 } }] }), 'body.alerts.0.labels.alertname'],
    ['version 3', (p) => ({ ...p, version: '3' }), 'body.version: expected "4"'],
    ['a fractional truncatedAlerts', (p) => ({ ...p, truncatedAlerts: 1.5 }), 'body.truncatedAlerts'],
  ];
  for (const [name, mutate, says] of refusals) {
    const bad = parseCompiled(clone(mutate(ok)));
    t.notOk(bad.success, `${name} is refused`);
    if (!bad.success) {
      const message = bad.error.issues.map((i) => `${['body', ...i.path.map(String)].join('.')}: ${i.message}`).join('; ');
      t.match(message, says, `${name}: zod's wording, naming the field`);
    }
  }
});

t.test('a schema whose output is not its input, or whose checks JSON Schema cannot state, is refused at start-up', async (t) => {
  t.doesNotThrow(() => compiledParser(webhookPayloadSchema), 'the webhook schema compiles');
  const refused: Array<[string, z.ZodType, RegExp]> = [
    ['a transform', z.looseObject({ n: z.string().transform((s) => s.length) }), /a pipe at properties\.n/],
    ['a refinement', z.looseObject({ n: z.string().refine((s) => s !== 'x') }), /the check "custom" at properties\.n/],
    ['a z.object that strips unknown keys', z.object({ n: z.string() }), /strips unknown keys/],
    ['a default outside an object property', z.looseObject({ n: z.array(z.string().default('x')) }), /a default outside an object property/],
    ['a union (Ajv fills no default inside one)', z.looseObject({ n: z.union([z.string(), z.number()]) }), /a union/],
    ['a coercion', z.looseObject({ n: z.coerce.number() }), /a coercion at properties\.n/],
    ['a catch', z.looseObject({ n: z.string().catch('x') }), /a catch/],
    ['a regex with flags (JSON Schema drops them)', z.looseObject({ n: z.string().regex(/abc/y) }), /the regex \/abc\/y \(flags\)/],
    ['a format zod checks beyond its regex', z.looseObject({ n: z.url() }), /the string format "url"/],
    ['a default given as metadata', z.looseObject({ n: z.string().meta({ default: 'x' }) }), /the metadata "default"/],
    ['a length given as metadata', z.looseObject({ n: z.string().max(3).meta({ maxLength: 100 }) }), /the metadata "maxLength"/],
  ];
  t.doesNotThrow(() => compiledParser(z.looseObject({ n: z.int(), d: z.string().describe('documented'), r: z.string().regex(/^[a-z]+$/) })), 'an integer, a description and a flagless regex compile');
  for (const [name, schema, says] of refused) t.throws(() => compiledParser(schema), says, name);
});
