// The bare Fastify baseline for the intake benchmark: the same Fastify 5, the same JSON body
// parser and body limit as rollguard, one POST /v1/alerts route that parses the batch and answers
// 200 with the same shape of reply, and nothing else (no auth, no validation, no store, no logs).
// Plain JavaScript run by plain node, like rollguard's dist/ build (no tsx loader thread in its RSS).
//   node bench/baseline-server.mjs --port 9096
import Fastify from 'fastify';

const i = process.argv.indexOf('--port');
const port = Number(i > 0 ? process.argv[i + 1] : (process.env.PORT ?? 9096));

const app = Fastify({ logger: false, bodyLimit: 4 * 1024 * 1024 });
app.get('/healthz', async () => ({ status: 'ok' }));
app.post('/v1/alerts', async (req) => {
  const body = req.body;
  return { queued: Array.isArray(body?.alerts) ? body.alerts.length : 0, duplicates: 0 };
});
await app.listen({ host: '127.0.0.1', port });
const stop = () => void app.close().then(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
