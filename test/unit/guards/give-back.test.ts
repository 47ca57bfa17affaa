// mayGiveBack's table (src/guards/give-back.ts): which holders of a budget unit or a slot a refused
// rollback waits for.
import t from 'tap';
import { GIVE_BACK_WAIT_MS, mayGiveBack } from '../../../src/guards/give-back.js';

const now = 1_000_000;
const step = (at: number) => [{ at }];

t.test('the table', async (t) => {
  const rows: [string, Parameters<typeof mayGiveBack>[0], boolean][] = [
    ['none (unreadable, missing)', null, false],
    ['in_progress', { state: 'in_progress', times: {} }, false],
    ['its write-ahead landed (startedAt), closed failed', { state: 'failed', times: { startedAt: now - 10 }, timeline: step(now - 5) }, false],
    ['executed (executedAt)', { state: 'succeeded', times: { startedAt: now - 20, executedAt: now - 10 }, timeline: step(now - 5) }, false],
    ['deciding', { state: 'deciding', times: {} }, true],
    ['deciding, an old record taken up again', { state: 'deciding', times: {}, timeline: step(now - 3_600_000) }, true],
    ['pending_approval, its last step just now', { state: 'pending_approval', times: {}, timeline: step(now - 50) }, true],
    ['blocked, its last step GIVE_BACK_WAIT_MS ago', { state: 'blocked', times: {}, timeline: step(now - GIVE_BACK_WAIT_MS) }, true],
    ['blocked, its last step longer ago: its give-back failed', { state: 'blocked', times: {}, timeline: step(now - GIVE_BACK_WAIT_MS - 1) }, false],
    ['scheduled, no timeline', { state: 'scheduled', times: {} }, false],
  ];
  for (const [what, rec, want] of rows) t.equal(mayGiveBack(rec, now), want, what);
});
