import type { EngineContext } from './context.js';

/**
 * A replica says it is alive by a key that expires (`replica:<CONSUMER_NAME>`); a replica whose
 * key has expired is gone, and its claims and records left deciding are taken up by another
 * (intake.ts, scheduler.ts). The key is rewritten on its own timer (keepAlive), not by the
 * scheduler's tick alone: a tick held up (a slow Prometheus confirmation of a due record, a long
 * list of records) must not let a live replica look gone and its work be taken over twice.
 */
export function heartbeatTtl(ctx: EngineContext): number {
  return Math.max(15_000, 3 * ctx.config.SCHEDULER_INTERVAL);
}

/** How often keepAlive rewrites the key: three writes per TTL, so one lost write does not expire it. */
export function heartbeatEvery(ctx: EngineContext): number {
  return Math.floor(heartbeatTtl(ctx) / 3);
}

/** Says this replica is alive now. */
export async function heartbeat(ctx: EngineContext): Promise<void> {
  await ctx.store.setValue(`replica:${ctx.owner}`, String(ctx.now()), { ttlMs: heartbeatTtl(ctx) });
}

export async function alive(ctx: EngineContext, owner: string | undefined): Promise<boolean> {
  return owner !== undefined && (await ctx.store.getValue(`replica:${owner}`)) !== null;
}

/**
 * Rewrites the heartbeat every `everyMs` (default heartbeatEvery) until the returned stop is
 * called. A failed write is logged and counted, and tried again at the next turn.
 */
export function keepAlive(ctx: EngineContext, everyMs = heartbeatEvery(ctx)): () => void {
  let writing = false;
  const timer = setInterval(() => {
    if (writing) return;
    writing = true;
    heartbeat(ctx)
      .catch((err: unknown) => {
        ctx.metrics.heartbeatFailures.inc();
        ctx.log.warn({ err, owner: ctx.owner }, 'could not write the replica heartbeat; other replicas take this one for gone if it stays unwritten for the heartbeat TTL');
      })
      .finally(() => (writing = false));
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
