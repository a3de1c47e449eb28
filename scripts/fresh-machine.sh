#!/usr/bin/env bash
# Proves the README's set-up on a machine that is really fresh: builds a clean Debian 12
# root with mmdebstrap, gives it the host's trust store and (read-only) the host's Rust
# toolchain, clones this repository's committed HEAD into it and runs the README's two
# commands there (`scripts/demo.sh`, then `scripts/test.sh`), printing pass/fail and the
# time of each. Not part of CI: it downloads Debian packages and crates for minutes.
#
#   scripts/fresh-machine.sh [--keep] [--only demo|test]
#     --keep         leave the root (mounts removed) for a look afterwards; its path is printed
#     --only NAME    run one of the two commands
#
# Needs root (chroot, mounts). Every mount is removed on exit, also on failure or Ctrl-C,
# and the root is deleted only when no mount is left under it (and never across a
# file-system boundary).
set -euo pipefail

keep=0
only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --keep) keep=1 ;;
    --only) shift; only="${1:-}"; [ "$only" = demo ] || [ "$only" = test ] || { echo "--only takes demo or test" >&2; exit 2; } ;;
    *) echo "usage: $0 [--keep] [--only demo|test]" >&2; exit 2 ;;
  esac
  shift
done

[ "$(id -u)" -eq 0 ] || { echo "$0: needs root (mmdebstrap, chroot and bind mounts)" >&2; exit 2; }
repo="$(cd "$(dirname "$0")/.." && pwd)"
if [ -n "$(git -C "$repo" status --porcelain --untracked-files=no)" ]; then
  echo "note: uncommitted changes are not tested: the clean root gets the committed HEAD" >&2
fi

toolchain="$(dirname "$(dirname "$(rustup which cargo 2>/dev/null || command -v cargo)")")"
[ -x "$toolchain/bin/cargo" ] && [ -x "$toolchain/bin/rustc" ] || {
  echo "$0: no Rust toolchain found (looked at $toolchain)" >&2; exit 2; }

if ! command -v mmdebstrap >/dev/null; then
  echo "installing mmdebstrap"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null
fi

work="$(mktemp -d /var/tmp/disco-fresh.XXXXXX)"
root="$work/root"
mounts=()   # in mount order; removed in reverse

kill_inside() {
  # Processes whose root is the clean root (a demo or test that did not stop its own).
  local p r found=0
  for p in /proc/[0-9]*; do
    r="$(readlink "$p/root" 2>/dev/null || true)"
    if [ "$r" = "$root" ]; then kill -9 "${p#/proc/}" 2>/dev/null || true; found=1; fi
  done
  [ "$found" -eq 0 ] || sleep 1
}

cleanup() {
  local rc=$? i m left
  set +e
  kill_inside
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
    m="${mounts[$i]}"
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || echo "could not unmount $m" >&2
  done
  left="$(findmnt -rn -o TARGET | awk -v r="$root" 'index($0, r) == 1')"
  if [ -n "$left" ]; then
    echo "mounts are still there, so nothing was deleted under $work:" >&2
    echo "$left" >&2
  elif [ "$keep" -eq 1 ]; then
    echo "kept: $root"
  else
    rm -rf --one-file-system "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bind() {  # bind SRC DST [ro]
  mkdir -p "$2"
  mount --bind "$1" "$2"
  mounts+=("$2")
  if [ "${3:-}" = ro ]; then mount -o remount,bind,ro "$2"; fi
}

step() { printf '\n== %s\n' "$*"; }

step "building a clean Debian 12 root in $root"
t0=$SECONDS
# Check-Valid-Until/Date: the host's apt does the same; snapshots of the archive carry
# Release files whose validity date may lie in the past.
mmdebstrap --quiet --variant=apt \
  --include=ca-certificates,build-essential,git,curl,python3 \
  --aptopt='Acquire::Check-Valid-Until "false"' --aptopt='Acquire::Check-Date "false"' \
  bookworm "$root" >"$work/mmdebstrap.log" 2>&1 || { tail -20 "$work/mmdebstrap.log" >&2; exit 1; }
echo "root ready in $((SECONDS - t0)) s"

# The host's trust store: the package registries are reached through it.
cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/" 2>/dev/null || true
# Services that packages would start (nginx on :80, etcd on :2379) are not wanted: the
# root shares the host's network, and disco starts its own on free ports.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"

# Every installed Debian has an /etc/hosts naming localhost (the installer, cloud-init
# or the container runtime writes it; no package does, so mmdebstrap's root has none).
# chromedriver reaches Chromium at localhost: without it, the browser test fails here
# as it would on no real machine.
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"

mkdir -p "$root/proc" "$root/sys" "$root/dev"
mount -t proc proc "$root/proc"; mounts+=("$root/proc")
mount -t sysfs sysfs "$root/sys"; mounts+=("$root/sys")
bind /dev "$root/dev"
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$root/dev/pts"; mounts+=("$root/dev/pts")
mount -t tmpfs tmpfs "$root/dev/shm"; mounts+=("$root/dev/shm")
bind "$toolchain" "$root/opt/rust" ro

in_root() {
  chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
    PATH=/opt/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    /bin/bash -c "$1"
}

in_root "update-ca-certificates >/dev/null"
git clone --quiet "$repo" "$root/root/disco"
echo "cloned $(git -C "$root/root/disco" rev-parse --short HEAD) into the root; toolchain $(in_root 'rustc --version')"

results=()
fail=0
run() {  # run NAME COMMAND
  local name=$1 cmd=$2 t rc
  step "$cmd (log: $work/$name.log)"
  t=$SECONDS
  set +e
  in_root "cd /root/disco && $cmd" >"$work/$name.log" 2>&1
  rc=$?
  set -e
  t=$((SECONDS - t))
  if [ "$rc" -eq 0 ]; then
    results+=("pass  $cmd  ${t} s")
  else
    results+=("FAIL  $cmd  ${t} s (exit $rc)")
    fail=1
    tail -30 "$work/$name.log"
    keep=1   # the logs are the evidence
  fi
  echo "${results[-1]}"
}

[ "$only" = test ] || run demo "scripts/demo.sh"
[ "$only" = demo ] || run test "scripts/test.sh"

step "summary (clean Debian 12 root, $(nproc) cores)"
printf '%s\n' "${results[@]}"
exit "$fail"
