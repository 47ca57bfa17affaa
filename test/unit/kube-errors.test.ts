import t from 'tap';
import { toKubeApiError, withoutEchoedValues } from '../../src/kube/errors.js';

// A 422 as the API server sends it (metav1.Status of apimachinery's field errors, joined).
const status422 = {
  kind: 'Status',
  status: 'Failure',
  reason: 'Invalid',
  code: 422,
  message:
    'Deployment.apps "checkout" is invalid: [spec.template.spec.containers[0].env[0].name: Invalid value: "DB PASS=hunter2": a valid environment variable name must consist of alphabetic characters, spec.template.spec.containers[0].imagePullPolicy: Unsupported value: "s3cret-policy": supported values: "Always", "IfNotPresent", "Never", spec.replicas: Invalid value: -3: must be greater than or equal to 0, spec.template.spec.containers[0].image: Required value]',
};

t.test('a 422 keeps the field paths, error types and reasons, never the values it echoes', async (t) => {
  const err = toKubeApiError({ code: 422, body: JSON.stringify(status422) }, 'PATCH apps/v1 deployments shop/checkout');
  t.equal(err.status, 422);
  t.equal(err.reason, 'Invalid');
  t.notMatch(err.message, /hunter2|DB PASS|s3cret-policy|-3/, err.message);
  for (const kept of [
    'spec.template.spec.containers[0].env[0].name: Invalid value: (value not recorded): a valid environment variable name must consist of alphabetic characters',
    'spec.template.spec.containers[0].imagePullPolicy: Unsupported value: (value not recorded): supported values: "Always", "IfNotPresent", "Never"',
    'spec.replicas: Invalid value: (value not recorded): must be greater than or equal to 0',
    'spec.template.spec.containers[0].image: Required value',
  ]) {
    t.ok(err.message.includes(kept), kept);
  }
});

t.test('an escaped quote inside the value is part of the value; a value that cannot be delimited cuts the rest', async (t) => {
  t.equal(withoutEchoedValues('a.b: Invalid value: "x\\": y \\"z": bad'), 'a.b: Invalid value: (value not recorded): bad');
  t.equal(withoutEchoedValues('spec: Invalid value: core.PodSpec{Secret:"pw"}: bad, other: Invalid value: "v": worse'), 'spec: Invalid value: (value not recorded)');
  t.equal(withoutEchoedValues('deployments.apps "web" not found'), 'deployments.apps "web" not found', 'messages without an echoed value are unchanged');
});

t.test('a refused call logged with pino prints no value the API server echoed: the client error is not kept as the cause', async (t) => {
  const { ApiException } = await import('@kubernetes/client-node');
  const { pino } = await import('pino');
  const { Writable } = await import('node:stream');
  // client-node's own exception: its message (and so its stack) holds the whole reply ("Body: ...")
  const raw = new ApiException(422, 'Unprocessable Entity', JSON.stringify(status422), { 'content-type': 'application/json' });
  t.match(raw.stack ?? '', /hunter2/, 'the client error itself carries the value');
  const err = toKubeApiError(raw, 'PATCH apps/v1 deployments shop/checkout');
  t.equal(err.cause, undefined);
  const lines: string[] = [];
  const log = pino({ level: 'info' }, new Writable({ write: (c: Buffer, _e, cb) => (lines.push(c.toString()), cb()) }));
  log.error({ err }, 'rollback stopped by an error');
  t.equal(lines.length, 1);
  t.notMatch(lines[0]!, /hunter2|DB PASS|s3cret-policy|Body:/, lines.join(''));
  t.match(lines[0]!, /Invalid value: \(value not recorded\)/, 'the field path and reason are still logged');
  // a reply that is no Status: its status is said, never the client's message with the body
  const plain = toKubeApiError(new ApiException(500, 'Internal Server Error', { data: 'postgres://u:pw@db' }, {}), 'GET apps/v1 deployments shop/web');
  t.notMatch(plain.message, /pw@db|Body:/, plain.message);
  t.match(plain.message, /HTTP 500 InternalError/);
});

t.test('a refusal that comes back at the deadline (or as the caller cancels) is not kept as the cause either', async (t) => {
  const { ApiException } = await import('@kubernetes/client-node');
  const raw = new ApiException(422, 'Unprocessable Entity', JSON.stringify(status422), {});
  const timedOut = toKubeApiError(raw, 'PATCH apps/v1 deployments shop/checkout', { timedOut: true, timeoutMs: 1500 });
  t.equal(timedOut.status, 'timeout');
  t.equal(timedOut.cause, undefined, 'the 422 that came back at the deadline is not kept');
  const aborted = new Error('The operation was aborted');
  aborted.name = 'AbortError';
  t.equal(toKubeApiError(aborted, 'GET apps/v1 deployments shop/web').cause, aborted, 'an abort (no body) is kept');
});
