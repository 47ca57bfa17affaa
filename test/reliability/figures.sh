#!/usr/bin/env bash
# Runs the reliability tests (test/reliability/, issue 9) one file at a time and collects the
# figures they print as "# RELIABILITY test=... key=value ..." lines, then sums the headline
# figures for docs/reliability.md.
#   bash test/reliability/figures.sh                 every file
#   bash test/reliability/figures.sh FILE...         only these
# Prints the figure lines, a totals line, and tap's pass/fail count; exits non-zero if a test failed.
set -uo pipefail
cd "$(dirname "$0")/../.."

files=("$@")
[ "${#files[@]}" -gt 0 ] || files=(test/reliability/*.test.ts)

log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "[figures] $(date -u +%Y-%m-%dT%H:%M:%SZ) $(git rev-parse --short HEAD 2>/dev/null) node $(node --version)" >&2
npx tap --reporter=tap --jobs=1 "${files[@]}" >"$log" 2>&1
status=$?

grep -o 'RELIABILITY .*' "$log" | sort -u
# Totals over the figure lines (each file prints a whole-file line where it has several parts, so
# only the keys below are summed, from the lines that carry them).
grep -o 'RELIABILITY .*' "$log" | sort -u | awk '
  function val(k,   i, kv) { for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) return kv[2] } return "" }
  {
    t = val("test")
    if (t == "hostile-input") inputs += val("inputs_fuzzed") + 0
    if (t == "promql-widening") inputs += val("inputs_fuzzed") + 0
    if (t == "hostile-input") { crashes += val("crashes") + 0; server_errors += val("server_errors") + 0 }
    if (val("faults_injected") != "") faults += val("faults_injected") + 0
    if (val("crashes_injected") != "") faults += val("crashes_injected") + 0
    if (t == "redis-storm" || t == "replicas-alertmanagers" ) sent += (t == "redis-storm" ? val("alerts_sent") : val("alerts_received")) + 0
    if (t == "flapping" || t == "prometheus-down") sent += val("alerts_sent") + 0
    if (val("alerts_lost") != "") lost += val("alerts_lost") + 0
    if (val("duplicate_rollbacks") != "") dup += val("duplicate_rollbacks") + 0
    if (val("duplicate_records") != "") dup += val("duplicate_records") + 0
  }
  END { printf "RELIABILITY totals faults_injected=%d alerts_sent=%d alerts_lost=%d duplicate_rollbacks=%d inputs_fuzzed=%d server_errors=%d crashes=%d\n", faults, sent, lost, dup, inputs, server_errors, crashes }'
grep -E '^# \{ total: ' "$log" | tail -n 1
if [ "$status" -ne 0 ]; then
  echo "[figures] a test failed; its output:" >&2
  grep -E '^\s*not ok ' "$log" >&2
fi
exit "$status"
