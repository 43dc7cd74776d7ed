#!/usr/bin/env bash
# The README's two commands on a fresh machine of another distribution release: a minimal root file
# system made with debootstrap (the distribution's own python3 and make, no pip, no python3-venv, no
# uv), a fresh clone of this repository inside it, a fresh HOME and PATH=/usr/bin:/bin. Prints the
# time of the first and the second `make plan STACK=staging`, then runs `make test`.
#
#   scripts/fresh_machine.sh RELEASE [WORKDIR]     RELEASE: bookworm, trixie, jammy or noble
#
# Needs root, debootstrap and the distribution's package mirror. Exit status: that of the first
# command that failed.
set -euo pipefail

release=${1:?usage: scripts/fresh_machine.sh bookworm|trixie|jammy|noble [WORKDIR]}
work=${2:-${TMPDIR:-/tmp}/shipyard-fresh}
repo=$(cd "$(dirname "$0")/.." && pwd)
root="$work/$release"

packages=python3,make,git,ca-certificates
# What the README says the tests run for real besides Python (cloud-init's schema check, gpg for the
# runner host's signature checks), installed with apt once the root exists: debootstrap resolves no
# virtual packages.
extra=(cloud-init gnupg)
case "$release" in
  bookworm | trixie)
    mirror=http://deb.debian.org/debian
    options=()
    ;;
  jammy | noble)
    mirror=http://archive.ubuntu.com/ubuntu
    # Ubuntu 22.04's python3 is 3.10: setup must find the python3.11 package by name.
    if [ "$release" = jammy ]; then extra+=(python3.11); fi
    # The Ubuntu archive key is not in Debian's keyrings; the packages come over the same mirror
    # the distribution's own installer uses.
    options=("--components=main,universe" --no-check-gpg)
    [ -e "/usr/share/debootstrap/scripts/$release" ] || ln -s gutsy "/usr/share/debootstrap/scripts/$release"
    ;;
  *)
    echo "fresh_machine: unknown release $release (bookworm, trixie, jammy, noble)" >&2
    exit 2
    ;;
esac

mounted=()
cleanup() {
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}" 2>/dev/null || true; done
}
trap cleanup EXIT

if [ ! -e "$root/.debootstrap-done" ]; then
  rm -rf --one-file-system "$root"
  mkdir -p "$work"
  echo "fresh_machine: debootstrap $release (minbase, $packages)"
  debootstrap --variant=minbase "${options[@]}" --include="$packages" "$release" "$root" "$mirror" >"$work/$release.debootstrap.log" 2>&1 ||
    { tail -20 "$work/$release.debootstrap.log" >&2; exit 1; }
  touch "$root/.debootstrap-done"
fi
# This machine's extra certificate authorities (a TLS-inspecting proxy), as a company machine has them.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
  chroot "$root" update-ca-certificates >/dev/null 2>&1
fi
cp /etc/resolv.conf "$root/etc/resolv.conf"
for fs in proc sys dev dev/pts; do
  mount --bind "/$fs" "$root/$fs"
  mounted+=("$root/$fs")
done
if ! chroot "$root" dpkg -s "${extra[@]}" >/dev/null 2>&1; then
  echo "fresh_machine: apt-get install ${extra[*]}"
  if [ "$mirror" = http://archive.ubuntu.com/ubuntu ]; then
    # As an installed Ubuntu has them: the -updates and -security pockets (Ubuntu 22.04's python3.11
    # is a release candidate in the release pocket alone).
    printf 'deb %s %s main universe\n' "$mirror" "$release" "$mirror" "$release-updates" "$mirror" "$release-security" \
      >"$root/etc/apt/sources.list"
  fi
  chroot "$root" apt-get update -q >"$work/$release.apt.log" 2>&1 || { tail -20 "$work/$release.apt.log" >&2; exit 1; }
  chroot "$root" /usr/bin/env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${extra[@]}" \
    >>"$work/$release.apt.log" 2>&1 || { tail -20 "$work/$release.apt.log" >&2; exit 1; }
fi

rm -rf "$root/home/user"
mkdir -p "$root/home/user"
git clone --quiet "$repo" "$root/home/user/shipyard"
python=$(chroot "$root" /usr/bin/python3 --version)
echo "fresh_machine: $release, $python; pip: $(chroot "$root" /usr/bin/python3 -m pip --version >/dev/null 2>&1 && echo yes || echo no), venv module's ensurepip: $(chroot "$root" /usr/bin/python3 -c 'import ensurepip' >/dev/null 2>&1 && echo yes || echo no)"

as_user() {
  chroot "$root" /usr/bin/env -i HOME=/home/user PATH=/usr/bin:/bin LANG=C.UTF-8 ${CI:+CI=$CI} \
    /bin/sh -c "cd /home/user/shipyard && $1"
}
TIMED_PREFIX=fresh_machine
# shellcheck source=scripts/timed.sh
. "$repo/scripts/timed.sh"
timed "first make plan STACK=staging" as_user "make plan STACK=staging >/home/user/plan.txt"
timed "second make plan STACK=staging" as_user "make plan STACK=staging >/dev/null"
tail -1 "$root/home/user/plan.txt"
timed "make test" as_user "make test >/home/user/test.txt 2>&1" || { tail -30 "$root/home/user/test.txt" >&2; exit 1; }
tail -1 "$root/home/user/test.txt"
