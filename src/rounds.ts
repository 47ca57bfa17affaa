/**
 * Work callers share by rounds: a call while no round runs starts one; the calls made while one
 * runs share a single next round, started once the current one ends (however it ends). So what a
 * caller gets began after it asked (a reload reads the files as they were then, a wait for the
 * replicas covers the writes made before it), and a burst of callers costs at most two rounds.
 * The next round runs with the argument of the call that asked for it first.
 */
export class Rounds<A, T> {
  private current: Promise<T> | undefined;
  private next: Promise<T> | undefined;

  constructor(private readonly round: (arg: A) => Promise<T>) {}

  /** The round in flight, if one is. */
  get running(): Promise<T> | undefined {
    return this.current;
  }

  run(arg: A): Promise<T> {
    if (!this.current) {
      this.current = this.round(arg).finally(() => {
        this.current = undefined;
      });
      return this.current;
    }
    this.next ??= this.current
      .catch(() => undefined)
      .then(() => {
        this.next = undefined;
        return this.run(arg);
      });
    return this.next;
  }
}
