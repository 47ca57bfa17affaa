// mayGiveBack's table (src/guards/give-back.ts): which holders of a budget unit or a slot a refused
// rollback waits for.
import t from 'tap';
import { GIVE_BACK_WAIT_MS, mayGiveBack } from '../../../src/guards/give-back.js';

const now = 1_000_000;

t.test('the table', async (t) => {
  const rows: [string, Parameters<typeof mayGiveBack>[0], boolean][] = [
    ['none (unreadable, missing)', null, false],
    ['in_progress', { state: 'in_progress', times: {} }, false],
    ['its write-ahead landed (startedAt), closed failed', { state: 'failed', times: { startedAt: now - 10 }, updatedAt: now - 5 }, false],
    ['executed (executedAt)', { state: 'succeeded', times: { startedAt: now - 20, executedAt: now - 10 }, updatedAt: now - 5 }, false],
    ['deciding', { state: 'deciding', times: {} }, true],
    ['deciding, written long ago (taken up again)', { state: 'deciding', times: {}, updatedAt: now - 3_600_000 }, true],
    ['pending_approval, written just now', { state: 'pending_approval', times: {}, updatedAt: now - 50 }, true],
    ['blocked, written GIVE_BACK_WAIT_MS ago', { state: 'blocked', times: {}, updatedAt: now - GIVE_BACK_WAIT_MS }, true],
    ['blocked, written longer ago: its give-back failed', { state: 'blocked', times: {}, updatedAt: now - GIVE_BACK_WAIT_MS - 1 }, false],
    ['scheduled, no updatedAt', { state: 'scheduled', times: {} }, false],
  ];
  for (const [what, rec, want] of rows) t.equal(mayGiveBack(rec, now), want, what);
});
