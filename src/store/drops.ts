/** What a store drops to stay within its bounds. */
export type DropKind = 'records' | 'dedupe_keys' | 'keys';

export interface DropCallbacks {
  /** told what was dropped (for a log line): at most once a minute per kind, with the count since the last call */
  onDrop?: (what: DropKind, dropped: number, detail: string) => void;
  /** told every drop as it happens (for a metric) */
  onDropCount?: (what: DropKind, dropped: number) => void;
}

/** Counts drops at once and tells the log at most once a minute per kind (a flood drops on every write). */
export class DropNotes {
  private readonly pending: Record<DropKind, number> = { records: 0, dedupe_keys: 0, keys: 0 };
  private readonly lastLog: Record<DropKind, number> = { records: 0, dedupe_keys: 0, keys: 0 };

  constructor(
    private readonly cb: DropCallbacks,
    private readonly now: () => number,
  ) {}

  note(what: DropKind, n: number, detail: string): void {
    if (n > 0) this.cb.onDropCount?.(what, n);
    this.pending[what] += n;
    const now = this.now();
    if (now - this.lastLog[what] < 60_000) return;
    this.lastLog[what] = now;
    this.cb.onDrop?.(what, this.pending[what], detail);
    this.pending[what] = 0;
  }
}
