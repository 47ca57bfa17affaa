#!/usr/bin/env bash
# The benchmarks, never run as tests: `npm run bench`.
#   npm run bench                       everything, then docs/benchmarks.md (its generated part) and
#                                       bench/results/latest.json are rewritten from this run
#   BENCH_ONLY="intake storm" npm run bench   only those (names: memory intake intake-everysec webhook-check storm storm-p0 storm-p0-cluster storm-split store-calls
#                                       rules decision decision-alone decision-everysec redis-bytes memory-store config-snapshots replay;
#                                       the report renders what it finds in BENCH_OUT; storm-split, redis-bytes,
#                                       memory-store and config-snapshots are written up by hand in docs/benchmarks.md, "Bounded under
#                                       volume", replay in its "Replay", and webhook-check in "(d) after the compiled webhook check")
#   BENCH_OUT=/some/dir npm run bench   where the JSON results and the profile go (default: a temp dir)
# Needs what `npm test` provisions: redis-server, prometheus + promtool, the Kubernetes control plane
# binaries (scripts/cluster/build.sh; cached). Every load goes to 127.0.0.1 only, every loop is
# bounded, and each benchmark stops by itself. Takes about 15-20 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."

export BENCH_OUT="${BENCH_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/rollguard-bench.XXXXXX")}"
mkdir -p "$BENCH_OUT"
only=" ${BENCH_ONLY:-memory intake intake-everysec webhook-check storm storm-p0 storm-p0-cluster storm-split store-calls rules decision decision-alone decision-everysec redis-bytes memory-store config-snapshots replay} "
want() { [[ "$only" == *" $1 "* ]]; }
say() { echo "[bench] $*" >&2; }

# The image's V8 flags (the Dockerfile's NODE_OPTIONS): intake and the storms are measured as the image runs.
IMAGE_NODE_FLAGS="$(sed -n 's/^ *NODE_OPTIONS="\([^"]*\)".*/\1/p' Dockerfile | head -n1)"
[ -n "$IMAGE_NODE_FLAGS" ] || { say "no NODE_OPTIONS=\"...\" line found in the Dockerfile"; exit 1; }

say "results in $BENCH_OUT; $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u '+%Y-%m-%d %H:%M UTC')"
for bin in redis-server prometheus promtool; do
  command -v "$bin" >/dev/null || { say "$bin not found: run scripts/provision.sh (npm test does) first"; exit 1; }
done
[ -d node_modules/autocannon ] || npm ci

say "build (rollguard runs from dist/ as in production)"
npm run build --silent

if want memory; then say "memory: RSS per import"; npx tsx bench/memory-imports.ts; fi
if want intake; then
  say "intake + memory under load, with a profiled pass (the image's V8 flags: $IMAGE_NODE_FLAGS)"
  npx tsx bench/intake.ts --profile --node-flags "$IMAGE_NODE_FLAGS"
fi
if want intake-everysec; then
  say "intake again with Redis appendfsync everysec (what the fsync per batch costs)"
  npx tsx bench/intake.ts --fsync everysec --node-flags "$IMAGE_NODE_FLAGS" --name intake-everysec
fi
if want webhook-check; then say "the webhook body's check alone: zod against the compiled check"; npx tsx bench/webhook-check.ts; fi
if want storm; then say "alert storm"; npx tsx bench/storm.ts; fi
if want storm-p0; then
  say "P0 alerts in the middle of the storm (dry-run path), with the image's V8 flags and without; then a 2 s storm (the engine's own drain rate)"
  npx tsx bench/storm-p0.ts --node-flags "$IMAGE_NODE_FLAGS" --name storm-p0-flags
  npx tsx bench/storm-p0.ts
  npx tsx bench/storm-p0.ts --seconds 2 --node-flags "$IMAGE_NODE_FLAGS" --name storm-p0-2s-flags
  say "the 2 s storm with a real Prometheus: every trigger query takes its turn (PROMETHEUS_MAX_CONCURRENT, P0 first)"
  npx tsx bench/storm-p0.ts --seconds 2 --prometheus --node-flags "$IMAGE_NODE_FLAGS" --name storm-p0-2s-prometheus
fi
if want storm-p0-cluster; then
  say "targets (a) and (c) as they read: the storms with a real control plane configured (the Kubernetes client loaded, real Deployments), and the intake with it"
  # one control plane with the storm's Deployments for the three runs (bench/cluster-lib.ts)
  hold_log=$(mktemp)
  npx tsx bench/cluster-lib.ts >"$hold_log" 2>&1 &
  hold_pid=$!
  until grep -q '^K=' "$hold_log"; do kill -0 "$hold_pid" 2>/dev/null || { cat "$hold_log" >&2; exit 1; }; sleep 2; done
  K=$(sed -n 's/^K=//p' "$hold_log")
  npx tsx bench/storm-p0.ts --seconds 2 --kubeconfig "$K" --node-flags "$IMAGE_NODE_FLAGS" --name storm-p0-2s-cluster
  npx tsx bench/storm-p0.ts --kubeconfig "$K" --node-flags "$IMAGE_NODE_FLAGS" --name storm-p0-cluster
  npx tsx bench/intake.ts --kubeconfig "$K" --node-flags "$IMAGE_NODE_FLAGS" --name intake-cluster
  kill -TERM "$hold_pid"; wait "$hold_pid" || true
fi
if want storm-split; then
  say "the storm's intake and engine measured apart (CPU per alert), with the image's V8 flags and without"
  # shellcheck disable=SC2086 # the flags are words
  node $IMAGE_NODE_FLAGS --import tsx bench/storm-split.ts --together --name storm-split-flags
  node --import tsx bench/storm-split.ts --together
  say "the engine alone again at the default QUEUE_CONCURRENCY (32), under V8's CPU profiler: where its CPU per alert goes (not a rate)"
  # shellcheck disable=SC2086 # the flags are words
  node $IMAGE_NODE_FLAGS --import tsx bench/storm-split.ts --concurrency 32 --profile-engine --name storm-split-profile
fi
if want store-calls; then say "Store calls per alert"; npx tsx bench/store-calls.ts; fi
if want rules; then
  say "rule matching (bench/rules-match.ts)"
  npx tsx bench/rules-match.ts > "$BENCH_OUT/rules-match.json"
fi
if want decision; then
  say "decision latency on the real control plane"
  bash scripts/cluster/build.sh >&2   # a no-op in milliseconds when the cache is current
  npx tsx bench/decision.ts
fi
if want decision-alone; then
  say "decision latency, each alert 250 ms after the previous rollback (past the API server's 100 ms progress-request period)"
  npx tsx bench/decision.ts --gap-ms 250 --name decision-alone
fi
if want decision-everysec; then
  say "decision latency again with Redis appendfsync everysec (what the store's fsyncs cost)"
  npx tsx bench/decision.ts --fsync everysec --name decision-everysec
fi

if want redis-bytes; then say "Redis bytes per alert and per record"; npx tsx bench/redis-bytes.ts; fi
if want memory-store; then say "the in-memory store under 20,000 two-alert batches"; npx tsx bench/memory-store.ts; fi
if want config-snapshots; then
  say "configuration snapshots: the watcher's RSS over 500 Deployments on the real control plane, with the image's V8 flags"
  bash scripts/cluster/build.sh >&2   # a no-op in milliseconds when the cache is current
  npx tsx bench/config-snapshots.ts
fi

if want replay; then
  say "replay: 30 days of 50 services (history generated and backfilled first, a few minutes; docs/benchmarks.md#replay)"
  npx tsx bench/replay.ts
fi

npx tsx bench/report.ts --command "npm run bench"
say "done: docs/benchmarks.md, bench/results/latest.json (raw results and the .cpuprofile stay in $BENCH_OUT)"
