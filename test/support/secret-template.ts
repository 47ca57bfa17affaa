// A workload whose pod template holds what teams put there and no record, report, log line or
// store key may repeat: plain env values (a connection string with its password), an arg carrying
// a token, and an env var from a Secret (whose value rollguard never sees; its reference may show).
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import type { Test } from 'tap';

/** Every value of the template at revisions 1 and 2 that must never be repeated. */
export const TEMPLATE_SECRETS = [
  'postgres://app:hunter2-rev1@db.prod.svc:5432/orders',
  'postgres://app:hunter2-rev2@db.prod.svc:5432/orders',
  'hunter2-rev1',
  'hunter2-rev2',
  'plain-mode-rev1-zebra',
  'plain-mode-rev2-okapi',
  'arg-token-rev1-quokka',
  'arg-token-rev2-wombat',
];

/** The pod template of revision 1 (good) or 2 (bad) of `app`; images `${image}:v1` and `${image}:v2-bad`. */
export function secretTemplate(app: string, rev: 1 | 2, image = app) {
  const animal = rev === 1 ? 'zebra' : 'okapi';
  return {
    metadata: { labels: { app } },
    spec: {
      containers: [
        {
          name: 'api',
          image: `${image}:${rev === 1 ? 'v1' : 'v2-bad'}`,
          args: ['--listen=:8080', `--token=arg-token-rev${rev}-${rev === 1 ? 'quokka' : 'wombat'}`],
          env: [
            { name: 'DATABASE_URL', value: `postgres://app:hunter2-rev${rev}@db.prod.svc:5432/orders` },
            { name: 'MODE', value: `plain-mode-rev${rev}-${animal}` },
            { name: 'API_KEY', valueFrom: { secretKeyRef: { name: 'api-secrets', key: 'api-key', optional: true } } },
          ],
        },
      ],
    },
  };
}

/** The template values found in `text`, as `where: value` (none: an empty list). */
export function leaked(where: string, text: string): string[] {
  return TEMPLATE_SECRETS.filter((s) => text.includes(s)).map((s) => `${where}: ${s}`);
}

/** A pino logger at debug level whose every line the test can read. */
export function capturingLogger(): { logger: Logger; text: () => string } {
  let out = '';
  const sink = new Writable({
    write(chunk, _enc, done) {
      out += String(chunk);
      done();
    },
  });
  return { logger: pino({ level: 'debug' }, sink), text: () => out };
}

/** Asserts that none of `parts` (name → text) repeats a template value. */
export function assertNothingLeaked(t: Test, parts: Record<string, string>): void {
  const found = Object.entries(parts).flatMap(([where, text]) => leaked(where, text));
  t.same(found, [], `no env value, arg or password of the pod template in ${Object.keys(parts).join(', ')}`);
}
