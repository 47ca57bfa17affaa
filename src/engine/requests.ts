import { DEFAULT_GUARDS, type EngineContext, type ManualRequest } from './context.js';
import { newRecord } from './intake.js';
import { manualRecordId, type RollbackRecord, type RollbackState } from './record.js';
import { rollback } from './rollback.js';
import { approvalExpired, expireApproval } from './scheduler.js';
import { approvedRevisions } from '../guards/approval.js';
import { readPause } from '../guards/pause.js';

/**
 * What approving or rejecting came to; the HTTP route picks the status from `kind`. `expiredAt`:
 * the request came after the approval's expiry and closed the record expired itself. `paused`: an
 * approval refused while rollguard is paused (the record stays pending until `dueAt`).
 */
export type ApprovalResult = { kind: 'ok'; record: RollbackRecord } | { kind: 'not_found' } | { kind: 'conflict'; state: RollbackState; expiredAt?: number; reason?: string; paused?: string; dueAt?: number };

/** A manual rollback (POST /v1/rollbacks): the same guards, no trigger. Runs in the background. */
export async function manual(ctx: EngineContext, req: ManualRequest): Promise<RollbackRecord> {
  const rec = newRecord(ctx, manualRecordId(), req.ref, { manual: req });
  rec.owner = ctx.owner;
  ctx.records.step(rec, 'received', `manual rollback requested by ${req.requestedBy}: ${req.reason}`);
  ctx.markDecided(rec);
  rec.decision = { decision: 'rollback_now', reason: `manual: ${req.reason}` };
  ctx.decidingHere.add(rec.id);
  await ctx.records.save(rec).catch((err) => {
    // not in hand any more: a write that landed though its answer was lost is the scheduler's to decide
    ctx.decidingHere.delete(rec.id);
    throw err;
  });
  ctx.background(rollback(ctx, rec, DEFAULT_GUARDS).finally(() => ctx.decidingHere.delete(rec.id)));
  return rec;
}

/**
 * Approves a rollback pending approval: it runs the guards again (the approval guard now allows) in
 * the background. Approve, reject and the scheduler's expiry may race (on one replica or several):
 * each writes the record only while the stored one is still pending_approval (RecordBook.save's
 * expectState), so exactly one of them is written; the others change nothing and answer conflict
 * with the state the record is in now. One whose rule a reload removed or renamed meanwhile is
 * closed expired and refused, naming the rule (`reason`): nothing runs.
 */
export async function approve(ctx: EngineContext, id: string, by: string, comment?: string): Promise<ApprovalResult> {
  const rec = await ctx.records.get(id);
  if (!rec) return { kind: 'not_found' };
  if (rec.state !== 'pending_approval') return { kind: 'conflict', state: rec.state };
  if (approvalExpired(rec, ctx.now())) return expired(ctx, rec);
  // its rule removed or renamed by a reload since it asked: the approval was asked on settings no longer in force
  const gone = ctx.ruleGone(rec);
  if (gone) {
    if (!(await ctx.finishFrom(rec, 'pending_approval', 'expired', gone))) return lost(ctx, id);
    return { kind: 'conflict', state: 'expired', reason: gone };
  }
  // Paused: the approved run would be closed blocked by the pause guard at once, the request gone
  // with the human's answer (until 2026-12-08). It is refused instead and stays pending (its expiry
  // still runs): approved again after the resume. A pause landing just after this read still stops it.
  const pause = await readPause(ctx.store);
  if (pause) return { kind: 'conflict', state: rec.state, paused: `rollguard is paused (by ${pause.by}${pause.reason ? `: ${pause.reason}` : ''})`, ...(rec.dueAt !== undefined ? { dueAt: rec.dueAt } : {}) };
  // for the plan the request was asked on, as the record shows it: what the human saw (guards/approval.ts)
  const revisions = approvedRevisions(rec);
  rec.approval = { by, at: ctx.now(), decision: 'approved', ...(comment ? { comment } : {}), ...(revisions ? { revisions } : {}) };
  ctx.records.step(rec, 'approved', `approved by ${by}${comment ? `: ${comment}` : ''}`);
  rec.state = 'deciding';
  rec.owner = ctx.owner;
  delete rec.dueAt;
  ctx.decidingHere.add(rec.id);
  const written = await ctx.records.save(rec, { expectState: 'pending_approval' }).catch((err) => {
    ctx.decidingHere.delete(rec.id);
    throw err;
  });
  if (!written) {
    ctx.decidingHere.delete(rec.id);
    return lost(ctx, id);
  }
  ctx.background(rollback(ctx, rec, ctx.settingsFor(rec)).finally(() => ctx.decidingHere.delete(rec.id)));
  return { kind: 'ok', record: rec };
}

/** Rejects a rollback pending approval: closed rejected, unless another answer or its expiry was written first (see approve). */
export async function reject(ctx: EngineContext, id: string, by: string, comment?: string): Promise<ApprovalResult> {
  const rec = await ctx.records.get(id);
  if (!rec) return { kind: 'not_found' };
  if (rec.state !== 'pending_approval') return { kind: 'conflict', state: rec.state };
  if (approvalExpired(rec, ctx.now())) return expired(ctx, rec);
  rec.approval = { by, at: ctx.now(), decision: 'rejected', ...(comment ? { comment } : {}) };
  if (!(await ctx.finishFrom(rec, 'pending_approval', 'rejected', `rejected by ${by}${comment ? `: ${comment}` : ''}`))) return lost(ctx, id);
  return { kind: 'ok', record: rec };
}

/**
 * An answer that came after the approval's expiry, before the scheduler's tick closed the record:
 * it closes it expired now, as the tick would (expireApproval), and is refused. Nothing runs.
 */
async function expired(ctx: EngineContext, rec: RollbackRecord): Promise<ApprovalResult> {
  const dueAt = rec.dueAt!;
  if (!(await expireApproval(ctx, rec))) return lost(ctx, rec.id);
  return { kind: 'conflict', state: 'expired', expiredAt: dueAt };
}

/** An answer whose write was refused because the record left pending_approval meanwhile: the state it is in now. */
async function lost(ctx: EngineContext, id: string): Promise<ApprovalResult> {
  const now = await ctx.records.get(id);
  return now ? { kind: 'conflict', state: now.state } : { kind: 'not_found' };
}
