#!/usr/bin/env bash
# The whole test suite, provisioning first (see scripts/provision.sh). Used by `npm test` and .ci/run.
# tap runs 3 files at once (package.json "tap".jobs), each loaded with tsx ("tap".node-arg; tap's ts-node
# plugin is off: it cost about 4 s of CPU per file): most files wait on control planes and
# Prometheus evaluations, and 3 use about 1.7 of 2 cores (docs/benchmarks.md, "The test suite").
#   scripts/test.sh                 everything: type-check, unit, integration, e2e
#   scripts/test.sh test/unit       only what is under the given paths
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/provision.sh

# tap builds its Test class for the plugins package.json names ("!@tapjs/typescript" among them)
# into .tap/plugins, but on a fresh checkout it does so during its first run, which itself still
# loads the default plugins: every test file of a clean clone's run was loaded through ts-node as
# well as tsx (about 12 s more CPU per file, measured: 14 s against 1.8 s for one unit file).
# Building first makes the run use the configured plugins (about 5 s).
echo "[test] tap build (the plugins package.json names)" >&2
npx tap build >/dev/null

# The type-check runs beside the tests (it is one core for half a minute, while most test files
# wait); its failure fails the run, its errors printed after the tests'. It is incremental, its
# state kept in the cache per checkout path (tsc's build info names files relative to itself): a
# second run in the same place re-checks only what changed (about 6 s of CPU instead of 26).
echo "[test] type-check (beside the tests)" >&2
tsc_log=$(mktemp)
tsc_state="${ROLLGUARD_CACHE:-$HOME/.cache/rollguard}/tsc/$(pwd | sha256sum | cut -c1-16).tsbuildinfo"
mkdir -p "$(dirname "$tsc_state")"
npx tsc --noEmit -p . --incremental --tsBuildInfoFile "$tsc_state" >"$tsc_log" 2>&1 &
tsc_pid=$!

paths=("$@")
[ "${#paths[@]}" -gt 0 ] || paths=(test/unit test/integration test/e2e test/reliability)
# Test files only (*.test.ts): support modules beside them are not tests.
existing=()
for p in "${paths[@]}"; do
  [ -e "$p" ] || continue
  while IFS= read -r f; do existing+=("$f"); done < <(find "$p" -type f -name '*.test.ts' | sort)
done
[ "${#existing[@]}" -gt 0 ] || { kill "$tsc_pid" 2>/dev/null; echo "[test] no test files under: ${paths[*]}" >&2; exit 1; }

log=$(mktemp)
trap 'rm -f "$log" "$tsc_log"' EXIT
set +e
npx tap --reporter=tap "${existing[@]}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

# tap closes with "# { total: N, pass: P, fail: F, ... }"; print the plain closing line CI reads.
summary=$(grep -E '^# \{ total: ' "$log" | tail -n 1 || true)
pass=$(sed -nE 's/.*pass: ([0-9]+).*/\1/p' <<<"$summary")
fail=$(sed -nE 's/.*fail: ([0-9]+).*/\1/p' <<<"$summary")
skip=$(sed -nE 's/.*skip: ([0-9]+).*/\1/p' <<<"$summary")
todo=$(sed -nE 's/.*todo: ([0-9]+).*/\1/p' <<<"$summary")
pass=${pass:-0} fail=${fail:-0} skip=${skip:-0} todo=${todo:-0}
if [ "$status" -ne 0 ] && [ "$fail" -eq 0 ]; then fail=1; fi
if [ "$skip" -ne 0 ] || [ "$todo" -ne 0 ]; then
  echo "[test] $skip skipped and $todo todo: a skipped test is not a passing one" >&2
  status=1
fi
if ! wait "$tsc_pid"; then
  echo "[test] type-check failed:" >&2
  cat "$tsc_log" >&2
  fail=$((fail + 1))
  status=1
fi
# CI shows the end of the output: name every failing test there, under its file, with the lines that say why.
if [ "$fail" -ne 0 ]; then
  echo "[test] failing tests:" >&2
  # awk stops at 200 lines itself: `| head` would end awk with SIGPIPE, and pipefail and set -e
  # would then end this script (exit 141) before its closing line.
  awk '
    function out(line) { if (++n <= 200) print line }
    /^# Subtest: / { file = substr($0, 12) }
    /^ +not ok / { out("  " file ": " $0); shown = 30; next }
    shown > 0 && /^ +(#|---|\.\.\.|[a-z_]+:|  )/ { out("  " file ": " $0); shown--; next }
    { shown = 0 }
    /^not ok / { out("  " $0) }
  ' "$log" >&2
fi
echo "${pass} passed, ${fail} failed"
exit "$status"
