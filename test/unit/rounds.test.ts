import t from 'tap';
import { Rounds } from '../../src/rounds.js';

/** A round that ends when the test says, recording the argument it ran with. */
function controlled() {
  const ran: string[] = [];
  const ends: Array<(fail?: boolean) => void> = [];
  const rounds = new Rounds<string, string>(
    (arg) =>
      new Promise<string>((resolve, reject) => {
        ran.push(arg);
        ends.push((fail) => (fail ? reject(new Error(`${arg} failed`)) : resolve(`${arg} done`)));
      }),
  );
  return { rounds, ran, end: (i: number, fail?: boolean) => ends[i]!(fail) };
}
const tick = () => new Promise((r) => setImmediate(r));

t.test('calls while a round runs share one next round, run with the first of their arguments once the current one ends', async (t) => {
  const { rounds, ran, end } = controlled();
  const first = rounds.run('a');
  t.equal(rounds.running, first, 'the round in flight');
  const later = [rounds.run('b'), rounds.run('c'), rounds.run('d')];
  await tick();
  t.same(ran, ['a'], 'the next round waits for the current one');
  t.equal(later[0], later[2], 'the callers meanwhile share one promise');
  end(0, true);
  t.rejects(first, /a failed/);
  await tick();
  await tick();
  t.same(ran, ['a', 'b'], 'one next round, started after the first ended, even failed');
  end(1);
  t.same(await Promise.all(later), ['b done', 'b done', 'b done']);
  t.equal(rounds.running, undefined, 'none in flight once it ended');
  const again = rounds.run('e');
  t.same(ran, ['a', 'b', 'e'], 'a call with none in flight starts a round at once');
  end(2);
  t.equal(await again, 'e done');
});
