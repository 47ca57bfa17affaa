#!/usr/bin/env bash
# Measure the test control plane's provisioning times (figures go to docs/benchmarks.md).
#
#   scripts/cluster/measure.sh cold     build.sh with empty Go build cache, module cache and
#                                       binary cache (all in a temp dir): a fresh machine
#   scripts/cluster/measure.sh warm [N] N (default 5) starts of the cluster from the built cache
#                                       until ready (npm run cluster -- --exit-when-ready)
#   scripts/cluster/measure.sh cold-reconcilers PROJECT
#                                       build-reconcilers.sh PROJECT with empty Go build and module
#                                       caches; the binaries land in the real cache (so the run is
#                                       also the provisioning of that project)
#   scripts/cluster/measure.sh warm-reconcilers [N]
#                                       N (default 3) starts of the cluster plus Flux and the Argo
#                                       Rollouts controller (CRDs installed, health endpoints up)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
mode="${1:-}"

case "$mode" in
  cold)
    tmp="$(mktemp -d /tmp/rollguard-cold.XXXXXX)"
    trap 'GOMODCACHE="$tmp/gomod" go clean -modcache >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
    echo "cold build: GOCACHE, GOMODCACHE and ROLLGUARD_CACHE empty under $tmp" >&2
    start=$(date +%s%N)
    GOCACHE="$tmp/gocache" GOMODCACHE="$tmp/gomod" ROLLGUARD_CACHE="$tmp/rollguard" \
      bash "$HERE/build.sh" >&2
    end=$(date +%s%N)
    echo "cold build: $(( (end - start) / 1000000000 )) s"
    du -sh "$tmp/gocache" "$tmp/gomod" "$tmp/rollguard" >&2
    ;;
  cold-reconcilers)
    project="${2:?project (flux, argo-rollouts, argocd)}"
    tmp="$(mktemp -d /tmp/rollguard-cold.XXXXXX)"
    trap 'GOMODCACHE="$tmp/gomod" go clean -modcache >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
    out="$(bash "$HERE/build-reconcilers.sh" --print-dir "$project")"
    rm -f "$out/.stamp"
    echo "cold build of $project: GOCACHE and GOMODCACHE empty under $tmp, binaries to $out" >&2
    start=$(date +%s%N)
    GOCACHE="$tmp/gocache" GOMODCACHE="$tmp/gomod" bash "$HERE/build-reconcilers.sh" "$project" >&2
    end=$(date +%s%N)
    echo "cold build of $project: $(( (end - start) / 1000000000 )) s (load average at the end: $(cut -d' ' -f1-3 /proc/loadavg))"
    du -sh "$tmp/gocache" "$tmp/gomod" "$out" >&2
    ;;
  warm-reconcilers)
    n="${2:-3}"
    bash "$HERE/build-reconcilers.sh" >/dev/null
    cd "$ROOT"
    for i in $(seq 1 "$n"); do
      npx tsx test/cluster/cli.ts --reconcilers flux,argo-rollouts --exit-when-ready >/dev/null 2>/tmp/rollguard-warm.$$.log ||
        { cat /tmp/rollguard-warm.$$.log >&2; exit 1; }
      echo "warm start $i: $(grep -oE '(control plane|flux|argo-rollouts) ready in [0-9]+ ms' /tmp/rollguard-warm.$$.log | paste -sd, -) (load average $(cut -d' ' -f1 /proc/loadavg))"
    done
    rm -f /tmp/rollguard-warm.$$.log
    ;;
  warm)
    n="${2:-5}"
    bash "$HERE/build.sh" >/dev/null   # no-op when the cache is current; timed below
    s=$(date +%s%N); bash "$HERE/build.sh" >/dev/null 2>&1; e=$(date +%s%N)
    echo "build.sh with a warm cache: $(( (e - s) / 1000000 )) ms"
    cd "$ROOT"
    for i in $(seq 1 "$n"); do
      s=$(date +%s%N)
      npx tsx test/cluster/cli.ts --exit-when-ready >/dev/null 2>/tmp/rollguard-warm.$$.log ||
        { cat /tmp/rollguard-warm.$$.log >&2; exit 1; }
      e=$(date +%s%N)
      ready=$(sed -n 's/.*control plane ready in \([0-9]*\) ms.*/\1/p' /tmp/rollguard-warm.$$.log | tail -1)
      echo "warm start $i: $(( (e - s) / 1000000 )) ms wall for npm run cluster (ready after $ready ms in startCluster, then stopped)"
    done
    rm -f /tmp/rollguard-warm.$$.log
    ;;
  *) echo "usage: $0 cold | warm [N] | cold-reconcilers PROJECT | warm-reconcilers [N]" >&2; exit 2 ;;
esac
