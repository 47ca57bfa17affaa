// Shutting the listeners down (src/main.ts on SIGTERM): a request still arriving (a body sent a byte
// at a time) does not hold the shutdown past its grace. Node's server.close() stops the timer that
// would answer it 408, so without the grace app.close() never resolved and the process met its hard exit.
import net from 'node:net';
import t from 'tap';
import { buildApp, closeListeners, shutdownGrace } from '../../../src/app.js';
import { loadConfig } from '../../../src/config.js';
import { createMetrics } from '../../../src/metrics.js';
import { MemoryStore } from '../../../src/store/memory.js';
import { WEBHOOK_TOKEN } from '../../support/app.js';

const DEADLINE_MS = 8_000;

t.test('a body still dripping at shutdown: the listeners close within the grace, its connection cut', async (t) => {
  // HTTP_REQUEST_TIMEOUT far beyond the deadline: only the shutdown's grace can end it
  const config = loadConfig({ WEBHOOK_TOKEN, HTTP_REQUEST_TIMEOUT: '120s' });
  const app = buildApp({ config, store: new MemoryStore(), metrics: createMetrics({ defaults: false }), logger: false });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const port = (app.server.address() as net.AddressInfo).port;
  const s = net.connect(port, '127.0.0.1').on('error', () => {});
  const drip = setInterval(() => s.writable && s.write(' '), 100);
  t.teardown(() => (clearInterval(drip), s.destroy()));
  const cut = new Promise((r) => s.once('close', r));
  s.write(`POST /v1/alerts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 3000000\r\nAuthorization: Bearer ${WEBHOOK_TOKEN}\r\n\r\n{`);
  await new Promise((r) => setTimeout(r, 300));
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    closeListeners([app, null], 300).then(() => 'closed'),
    new Promise((r) => (timer = setTimeout(() => r('still closing at the deadline'), DEADLINE_MS))),
  ]);
  clearTimeout(timer);
  t.equal(outcome, 'closed', 'closeListeners resolved before the deadline');
  await cut;
  t.pass('the dripping connection was closed');
});

t.test('the grace: min(5 s, a third of SHUTDOWN_TIMEOUT)', async (t) => {
  t.equal(shutdownGrace(25_000), 5_000);
  t.equal(shutdownGrace(6_000), 2_000);
});
