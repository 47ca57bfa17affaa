#!/usr/bin/env bash
# Measure the container image build (figures go to docs/benchmarks.md).
#
#   scripts/image/measure.sh cold   base.sh then build.sh on an empty buildah storage and npm cache
#                                   (both in a temp dir, removed after): a fresh machine;
#                                   then the same two again, warm; then the images' sizes, also
#                                   gzip-compressed as a registry would carry them (oci-archive)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"

[ "${1:-}" = cold ] || { echo "usage: $0 cold" >&2; exit 2; }
tmp="$(mktemp -d /tmp/rollguard-image-cold.XXXXXX)"
cat >"$tmp/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$tmp/storage"
runroot = "$tmp/run"
EOF
export CONTAINERS_STORAGE_CONF="$tmp/storage.conf" npm_config_cache="$tmp/npm"
cleanup() {
  buildah rm -a >/dev/null 2>&1 || true
  buildah rmi -a -f >/dev/null 2>&1 || true
  grep -o "$tmp/[^ ]*" /proc/mounts | sort -r | xargs -r umount -l 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

secs() { awk -v ns="$1" 'BEGIN { printf "%.1f s", ns / 1e9 }'; }
# timed LABEL COMMAND...: prints "LABEL: N s", or fails the measurement with the command's status
timed() {
  local label="$1" s e; shift
  s=$(date +%s%N)
  "$@" >/dev/null || { echo "$label: failed (exit $?)"; exit 1; }
  e=$(date +%s%N)
  echo "$label: $(secs $((e - s)))"
}

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u '+%Y-%m-%d %H:%M UTC')"
timed "cold base.sh (debootstrap + node/npm from the registry + commit)" bash "$HERE/base.sh"
timed "cold build.sh (both images, every layer, npm ci twice from the registry)" bash "$ROOT/scripts/image/build.sh"
timed "warm base.sh" bash "$HERE/base.sh"
timed "warm build.sh (nothing changed, every layer cached)" bash "$ROOT/scripts/image/build.sh"
version="$(node -p "require('$ROOT/package.json').version")"
for name in "localhost/rollguard:$version" "localhost/rollguard:$version-helm" "$(bash "$HERE/base.sh" --name)"; do
  buildah push --quiet "$name" "oci-archive:$tmp/out.tar" >/dev/null
  echo "$name: $(buildah images --noheading --format '{{.Size}}' "$name") uncompressed, $(du -m "$tmp/out.tar" | cut -f1) MiB as a gzip-compressed OCI archive"
  rm -f "$tmp/out.tar"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
