// The reliability tests print their figures as one greppable line each:
//   # RELIABILITY test=<name> faults_injected=… alerts_sent=… alerts_lost=0 …
// test/reliability/figures.sh runs them and collects these lines for docs/reliability.md.

export interface Commenter {
  comment(...args: unknown[]): void;
}

export function figures(t: Commenter, test: string, values: Record<string, number | string>): void {
  const parts = Object.entries(values).map(([k, v]) => `${k}=${typeof v === 'string' ? v.replace(/\s+/g, '_') : v}`);
  t.comment(`RELIABILITY test=${test} ${parts.join(' ')}`);
}
