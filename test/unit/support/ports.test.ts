import t from 'tap';
import { waitForProcess } from '../../support/ports.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('waitForProcess: the process exiting first fails the wait with its reason, and the poll stops', async (t) => {
  let calls = 0;
  let exit!: (code: number | null) => void;
  const exited = new Promise<number | null>((r) => (exit = r));
  const waiting = waitForProcess('a server', async () => (calls++, false), exited, (code) => `the server exited with ${code}`, 60_000, 10);
  await sleep(50);
  t.ok(calls > 0, 'polled while the process ran');
  exit(3);
  await t.rejects(waiting, /the server exited with 3/);
  const after = calls;
  await sleep(100);
  t.ok(calls <= after + 1, `no more polling once it exited (${after} then ${calls})`);
});

t.test('waitForProcess: ready before any exit resolves with the probe\'s value', async (t) => {
  let calls = 0;
  const exited = new Promise<number | null>(() => {});
  t.equal(await waitForProcess('a server', async () => (++calls >= 3 ? 'ready' : false), exited, () => 'gone', 5_000, 5), 'ready');
});
