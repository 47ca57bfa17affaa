#!/usr/bin/env bash
# Build the project's Dockerfile without a Docker engine: buildah (`bud --isolation chroot`, RUN steps
# included, no daemon, no OCI runtime) on the local base of scripts/image/base.sh, passed as the
# Dockerfile's NODE_IMAGE. The Dockerfile is used as it is; only build arguments differ.
#
#   scripts/image/build.sh           both images; prints their names, one a line
#     localhost/rollguard:VERSION        the default image
#     localhost/rollguard:VERSION-helm   the HelmRelease variant: HELM_VERSION from
#                                        scripts/cluster/versions.env, the helm binary of the test
#                                        control plane's cache supplied as the build context helm-bin
#                                        (no download); needs `bash scripts/cluster/build.sh` first
#   scripts/image/build.sh --no-helm the default image only
#
# VERSION is package.json's. Layers are cached in buildah's storage (--layers): a rebuild redoes
# the steps after the first changed input only. The size of each image is printed (uncompressed,
# as `docker images` shows it) with the time the build took. Needs root, buildah and debootstrap
# (scripts/provision.sh installs them) and the npm registry (the Dockerfile's npm ci).
set -euo pipefail
cd "$(dirname "$0")/../.."

log() { printf '[image/build] %s\n' "$*" >&2; }
die() { printf 'image/build: %s\n' "$*" >&2; exit 1; }

helm=1
case "${1:-}" in
  --no-helm) helm=0 ;;
  "") ;;
  *) echo "usage: $0 [--no-helm]" >&2; exit 2 ;;
esac

CACHE="${ROLLGUARD_CACHE:-$HOME/.cache/rollguard}/image"
VERSION="$(node -p 'require("./package.json").version')"
NAME="localhost/rollguard:$VERSION"

helm_bin=""
if [ "$helm" -eq 1 ]; then
  helm_bin="$(bash scripts/cluster/build.sh --print-bin)/helm"
  [ -x "$helm_bin" ] || die "no helm at $helm_bin for the HelmRelease variant: build it with 'bash scripts/cluster/build.sh' (or pass --no-helm)"
  HELM_VERSION="$(sed -n 's/^HELM_VERSION=//p' scripts/cluster/versions.env)"
  [ -n "$HELM_VERSION" ] || die "no HELM_VERSION in scripts/cluster/versions.env"
fi

base="$(bash scripts/image/base.sh)"

mkdir -p "$CACHE"
exec 9>"$CACHE/.build.lock"
flock 9
work="$(mktemp -d "$CACHE/build.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# The npm registry is reached through the same TLS trust as this machine's npm: when that trust is
# more than Node's own roots (NODE_EXTRA_CA_CERTS, or npm's cafile, as behind a TLS-inspecting
# proxy), the RUN steps get it as a global npmrc mounted at /usr/local/etc for the build only: it is
# in no layer of any image.
trust_args=()
extra_ca=()
[ -n "${NODE_EXTRA_CA_CERTS:-}" ] && [ -f "$NODE_EXTRA_CA_CERTS" ] && extra_ca+=("$NODE_EXTRA_CA_CERTS")
npm_cafile="$(npm config get cafile 2>/dev/null || true)"
[ -n "$npm_cafile" ] && [ "$npm_cafile" != "null" ] && [ -f "$npm_cafile" ] && [ "$npm_cafile" != "${NODE_EXTRA_CA_CERTS:-}" ] && extra_ca+=("$npm_cafile")
if [ "${#extra_ca[@]}" -gt 0 ]; then
  mkdir "$work/npm-etc"
  { node -p 'require("tls").rootCertificates.join("\n")'; cat "${extra_ca[@]}"; } >"$work/npm-etc/build-ca.pem"
  echo "cafile=/usr/local/etc/build-ca.pem" >"$work/npm-etc/npmrc"
  trust_args=(--volume "$work/npm-etc:/usr/local/etc:ro")
  log "npm in the build trusts this machine's CAs too (${extra_ca[*]})"
fi

bytes_of() {
  buildah inspect --type image "$1" | node -e '
    let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
      const m = JSON.parse(JSON.parse(s).Manifest);
      console.log(m.layers.reduce((a, l) => a + l.size, 0));
    });'
}
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }

base_bytes="$(bytes_of "$base")"
build() {
  local name="$1"; shift
  local started log="$work/build.log"
  started=$(date +%s)
  log "buildah bud -t $name $* (NODE_IMAGE=$base)"
  if ! buildah bud --isolation chroot --layers --pull=never --format docker \
      "${trust_args[@]}" --build-arg "NODE_IMAGE=$base" "$@" -t "$name" -f Dockerfile . >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    die "buildah bud failed for $name (the last lines above)"
  fi
  local bytes; bytes="$(bytes_of "$name")"
  log "$name: $(buildah images --noheading --format '{{.ID}}' "$name") $(mb "$bytes") ($bytes bytes; base $(mb "$base_bytes") + rollguard $(mb $((bytes - base_bytes)))), built in $(( $(date +%s) - started )) s"
  echo "$name"
}

# The build context helm-bin is always given, empty for the default image: it stands in for the
# Dockerfile's empty `FROM scratch AS helm-bin` stage, which buildah 1.28 leaves behind as a working
# container after each build.
mkdir "$work/no-helm" "$work/helm-bin"
build "$NAME" --build-context "helm-bin=$work/no-helm"
if [ "$helm" -eq 1 ]; then
  # holding the one file the Dockerfile copies
  ln "$helm_bin" "$work/helm-bin/helm" 2>/dev/null || cp "$helm_bin" "$work/helm-bin/helm"
  build "$NAME-helm" --build-arg "HELM_VERSION=$HELM_VERSION" --build-context "helm-bin=$work/helm-bin"
fi
