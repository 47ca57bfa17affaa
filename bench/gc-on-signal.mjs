// Preloaded into a benchmarked process (node --expose-gc --import ./bench/gc-on-signal.mjs): on
// SIGUSR2 it runs a full garbage collection and prints the memory left in use, as one JSON line on
// stderr, so a benchmark can read what the process retains rather than what garbage it holds.
process.on('SIGUSR2', () => {
  globalThis.gc?.();
  globalThis.gc?.();
  const m = process.memoryUsage();
  process.stderr.write(`${JSON.stringify({ afterGc: { rssMb: m.rss / 2 ** 20, heapUsedMb: m.heapUsed / 2 ** 20, externalMb: m.external / 2 ** 20 } })}\n`);
});
