/**
 * A replica says it is alive by a key that expires (`replica:<CONSUMER_NAME>`); a replica whose
 * key has expired is gone, and its claims and records left deciding are taken up by another
 * (intake.ts, scheduler.ts). The key is rewritten on its own timer (keepAlive), not by the
 * scheduler's tick alone: a tick held up (a slow Prometheus confirmation of a due record, a long
 * list of records) must not let a live replica look gone and its work be taken over twice.
 */
import { randomUUID } from 'node:crypto';
import type { EngineContext } from './context.js';

/** This process's mark in its heartbeat, so that another live process under the same name is seen. */
const instances = new WeakMap<EngineContext, string>();
function instance(ctx: EngineContext): string {
  let id = instances.get(ctx);
  if (id === undefined) instances.set(ctx, (id = randomUUID()));
  return id;
}

/**
 * The last heartbeat each process wrote: a value of another process seen after the first is a
 * live one (beat), and leave removes only this one.
 */
const wrote = new WeakMap<EngineContext, string>();

const key = (owner: string) => `replica:${owner}`;

/** A heartbeat read or write that failed: counted (reason store) and logged; the caller goes on. */
export function heartbeatFailed(ctx: EngineContext, err: unknown, message: string): void {
  ctx.metrics.heartbeatFailures.inc({ reason: 'store' });
  ctx.log.warn({ err, owner: ctx.owner }, message);
}

/** How long a heartbeat lives unless rewritten. */
export function heartbeatTtl(ctx: EngineContext): number {
  return Math.max(15_000, 3 * ctx.config.SCHEDULER_INTERVAL);
}

/** How often keepAlive rewrites the key: three writes per TTL, so one lost write does not expire it. */
export function heartbeatEvery(ctx: EngineContext): number {
  return Math.floor(heartbeatTtl(ctx) / 3);
}

/** Says this replica is alive now: `<this process's instance id> <time>`. */
export async function heartbeat(ctx: EngineContext): Promise<void> {
  const value = `${instance(ctx)} ${ctx.now()}`;
  await ctx.store.setValue(key(ctx.owner), value, { ttlMs: heartbeatTtl(ctx) });
  wrote.set(ctx, value);
}

/**
 * Reads the heartbeat as it rewrites it (the read sent first, in the same round trip; the write
 * does not wait for it, so a failed read never stops a write): written last by another process
 * under this name means two live processes share CONSUMER_NAME (each takes the other's records
 * for its own), which is logged as an error and counted each time it is seen. The name goes on
 * being used: a process that restarted under its old name overwrites the dead one's heartbeat
 * once and is not told.
 */
async function beat(ctx: EngineContext): Promise<void> {
  const seenBefore = wrote.has(ctx);
  const [read, written] = await Promise.allSettled([ctx.store.getValue(key(ctx.owner)), heartbeat(ctx)]);
  if (read.status === 'rejected') heartbeatFailed(ctx, read.reason, 'could not read the replica heartbeat (its write goes on; a second process under this CONSUMER_NAME is not looked for this turn)');
  const current = read.status === 'fulfilled' ? read.value : null;
  const other = current !== null && !current.startsWith(`${instance(ctx)} `);
  if (other && seenBefore) {
    ctx.metrics.heartbeatFailures.inc({ reason: 'name_in_use' });
    ctx.log.error(
      { owner: ctx.owner },
      `another live process writes the heartbeat of CONSUMER_NAME "${ctx.owner}": give each replica its own CONSUMER_NAME (the default is host and pid; the chart sets the pod name)`,
    );
  }
  if (written.status === 'rejected') throw written.reason;
}

/**
 * Says this replica has stopped (a clean shutdown; Engine.leave checks nothing of it runs): the
 * others need not wait for the TTL. Only this process's own last heartbeat is removed (made to
 * expire at once, atomically): another live process under the same name keeps its own. False
 * when the heartbeat was not this process's last (it is then left to expire).
 */
export async function leave(ctx: EngineContext): Promise<boolean> {
  const last = wrote.get(ctx);
  if (last === undefined) return false;
  return ctx.store.compareAndSetValue(key(ctx.owner), last, 'left', { ttlMs: 1 });
}

export async function alive(ctx: EngineContext, owner: string | undefined): Promise<boolean> {
  return owner !== undefined && (await ctx.store.getValue(key(owner))) !== null;
}

/**
 * Rewrites the heartbeat every `everyMs` (default heartbeatEvery) until the returned stop is
 * called. A failed write is logged and counted, and tried again at the next turn; so is a
 * heartbeat found written by another process under this name (beat).
 */
export function keepAlive(ctx: EngineContext, everyMs = heartbeatEvery(ctx)): () => void {
  let writing = false;
  const timer = setInterval(() => {
    if (writing) return;
    writing = true;
    beat(ctx)
      .catch((err: unknown) => heartbeatFailed(ctx, err, 'could not write the replica heartbeat; other replicas take this one for gone if it stays unwritten for the heartbeat TTL'))
      .finally(() => (writing = false));
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
