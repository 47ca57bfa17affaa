#!/usr/bin/env bash
# Start a built image without a container engine, the way a container runtime would start it:
# its entrypoint and command, in its own filesystem, as its user, with its environment and working
# directory (all read from the image's config), on a read-only view of its root, with a fresh /tmp
# (tmpfs, as the chart's emptyDir), /proc and a minimal /dev. The network is the host's: what it
# listens on is on this machine's loopback.
#
#   scripts/image/run.sh [-e NAME=VALUE]... [--entrypoint PROGRAM] IMAGE [ARG...]
#
# ARGs replace the image's CMD and --entrypoint replaces its ENTRYPOINT, as with `docker run`.
# SIGTERM and SIGINT are passed on to the started process; the exit status is its own.
# Needs root (mount namespaces, chroot) and buildah; no OCI runtime.
set -euo pipefail

die() { printf 'image/run: %s\n' "$*" >&2; exit 125; }
usage() { echo "usage: $0 [-e NAME=VALUE]... [--entrypoint PROGRAM] IMAGE [ARG...]" >&2; exit 125; }

extra_env=()
entrypoint=""
while [ $# -gt 0 ]; do
  case "$1" in
    -e) [ $# -ge 2 ] || usage; [[ "$2" == *=* ]] || die "-e wants NAME=VALUE, got '$2'"; extra_env+=("$2"); shift 2 ;;
    --entrypoint) [ $# -ge 2 ] || usage; entrypoint="$2"; shift 2 ;;
    --) shift; break ;;
    -*) usage ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || usage
image="$1"; shift
[ "$(id -u)" -eq 0 ] || die "run as root (mount namespace and chroot)"
command -v buildah >/dev/null || die "buildah not found (scripts/provision.sh installs it)"

# The image's config, one value a line (Go templates: no JSON tool needed).
field() { buildah inspect --type image --format "$1" "$image"; }
field '{{.OCIv1.Config.User}}' >/dev/null 2>&1 || die "no image '$image' in buildah's storage (scripts/image/build.sh builds it)"
mapfile -t image_env < <(field '{{range .OCIv1.Config.Env}}{{println .}}{{end}}' | sed '/^$/d')
mapfile -t image_entrypoint < <(field '{{range .OCIv1.Config.Entrypoint}}{{println .}}{{end}}' | sed '/^$/d')
mapfile -t image_cmd < <(field '{{range .OCIv1.Config.Cmd}}{{println .}}{{end}}' | sed '/^$/d')
user="$(field '{{.OCIv1.Config.User}}')"
workdir="$(field '{{.OCIv1.Config.WorkingDir}}')"

[ -n "$entrypoint" ] && image_entrypoint=("$entrypoint") && image_cmd=()
[ $# -gt 0 ] && image_cmd=("$@")
argv=("${image_entrypoint[@]}" "${image_cmd[@]}")
[ "${#argv[@]}" -gt 0 ] || die "the image has no ENTRYPOINT or CMD and no command was given"
# USER may be uid, uid:gid, name or name:group; chroot --userspec takes the same forms.
userspec="${user:-0:0}"
[[ "$userspec" == *:* ]] || userspec="$userspec:$userspec"

ctr=$(buildah from --pull-never --name "rollguard-run-$$" "$image") || die "buildah from $image failed"
cleanup() {
  buildah umount "$ctr" >/dev/null 2>&1 || true
  buildah rm "$ctr" >/dev/null 2>&1 || true
}
trap cleanup EXIT
rootfs=$(buildah mount "$ctr")

# Everything below happens in a private mount namespace: the mounts go away with the process.
# unshare, bash and chroot each exec the next, so $child is the image's own process.
# shellcheck disable=SC2016
unshare --mount --propagation private -- bash -c '
  set -euo pipefail
  rootfs=$1 userspec=$2 workdir=$3 n_env=$4; shift 4
  root=$rootfs
  mount --bind "$root" "$root"
  mount -o remount,bind,ro "$root"
  mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
  mount -t tmpfs -o nosuid,nodev,mode=1777,size=256m tmpfs "$root/tmp"
  mount -t tmpfs -o nosuid,mode=0755,size=64k tmpfs "$root/dev"
  for d in null zero full random urandom tty; do
    touch "$root/dev/$d" && mount --bind "/dev/$d" "$root/dev/$d"
  done
  mkdir "$root/dev/shm" && mount -t tmpfs -o nosuid,nodev,noexec,mode=1777,size=64m tmpfs "$root/dev/shm"
  ln -s /proc/self/fd "$root/dev/fd"
  for f in /etc/hosts /etc/resolv.conf; do
    [ -f "$root$f" ] && mount --bind "$f" "$root$f" && mount -o remount,bind,ro "$root$f"
  done
  env=("${@:1:$n_env}"); shift "$n_env"
  exec chroot --userspec="$userspec" "$root" /usr/bin/env -i -C "${workdir:-/}" "${env[@]}" "$@"
' rollguard-run "$rootfs" "$userspec" "$workdir" "$(( ${#image_env[@]} + ${#extra_env[@]} ))" \
  "${image_env[@]}" "${extra_env[@]}" "${argv[@]}" &
child=$!

set +e
trap 'kill -TERM "$child" 2>/dev/null' TERM
trap 'kill -INT "$child" 2>/dev/null' INT
status=""
while [ -z "$status" ]; do
  wait "$child"
  kill -0 "$child" 2>/dev/null && continue   # interrupted by a signal passed on: wait again
  wait "$child"; status=$?                   # bash keeps the exit status of its children
done
exit "$status"
