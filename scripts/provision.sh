#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine of this project's kind, and
# nothing when it is already there (a warm run takes seconds):
#   - Debian packages: redis-server, prometheus (+ promtool), prometheus-alertmanager, openssl, git
#     (git http-backend serves the GitOps tests' manifests)
#   - node_modules from package-lock.json (npm ci)
#   - the Go-built Kubernetes control plane (scripts/cluster/build.sh, cached outside the repo)
#   - the Go-built GitOps reconcilers: Flux, Argo Rollouts (scripts/cluster/build-reconcilers.sh, same cache)
#   - buildah and debootstrap, and the local base image of the container image build
#     (scripts/image/base.sh, in buildah's storage outside the repo; about 1.5 min once)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[provision] %s\n' "$*" >&2; }

need_apt=()
for pair in redis-server:/usr/bin/redis-server prometheus:/usr/bin/prometheus prometheus:/usr/bin/promtool \
  prometheus-alertmanager:/usr/bin/prometheus-alertmanager openssl:/usr/bin/openssl \
  buildah:/usr/bin/buildah debootstrap:/usr/sbin/debootstrap \
  git:/usr/bin/git git:/usr/lib/git-core/git-http-backend; do
  pkg="${pair%%:*}" bin="${pair#*:}"
  [ -x "$bin" ] || need_apt+=("$pkg")
done
if [ "${#need_apt[@]}" -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  log "installing Debian packages: ${need_apt[*]}"
  $SUDO apt-get update -qq
  # Packages' own services are not wanted: the tests start their own on free ports.
  DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi

if [ -x scripts/cluster/build.sh ] || [ -f scripts/cluster/build.sh ]; then
  bash scripts/cluster/build.sh >&2
fi
if [ -f scripts/cluster/build-reconcilers.sh ]; then
  bash scripts/cluster/build-reconcilers.sh >&2
fi
# The container image's local base (no image can be pulled): debootstrap + Node.js from the npm registry.
if [ "$(id -u)" -eq 0 ]; then bash scripts/image/base.sh >/dev/null; else sudo bash scripts/image/base.sh >/dev/null; fi
log "ready"
