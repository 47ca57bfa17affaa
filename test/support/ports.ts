/** A TCP port free on 127.0.0.1 right now: the same helper `rules test` uses for its Prometheus. */
export { freePort } from '../../src/prometheus/local.js';

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 20_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v as T;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? `: ${String(lastErr)}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * waitFor for a process being started: polls `fn` until it holds, and fails at once when the
 * process exits first (`exited` resolves with its code; `failure` says why). The poll stops then,
 * so a process that died does not keep the test alive polling until the timeout.
 */
export async function waitForProcess<T>(
  what: string,
  fn: () => Promise<T | undefined | false>,
  exited: Promise<number | null>,
  failure: (code: number | null) => string,
  timeoutMs = 20_000,
  everyMs = 50,
): Promise<T | true> {
  let gone = false;
  const died = exited.then((code) => {
    gone = true;
    throw new Error(failure(code));
  });
  return Promise.race([waitFor<T | true>(what, async () => (gone ? true : fn()), timeoutMs, everyMs), died]);
}

/**
 * Starts something on ports picked free a moment before it binds them: another process (another
 * suite, an outgoing connection's source port) may take one in between. While `start` fails that
 * way (`portTaken`), it is run again, picking fresh ports, at most `attempts` times; any other
 * failure is thrown at once.
 */
export async function onFreshPorts<T>(what: string, start: () => Promise<T>, portTaken: (err: unknown) => boolean, attempts = 3): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start();
    } catch (err) {
      if (attempt >= attempts || !portTaken(err)) throw err;
      const first = (err instanceof Error ? err.message : String(err)).split('\n')[0];
      process.stderr.write(`[${what}] ${first}; starting again on fresh ports (attempt ${attempt + 1} of ${attempts})\n`);
    }
  }
}
