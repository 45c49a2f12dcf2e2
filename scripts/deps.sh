#!/bin/sh
# Install what portico needs to build and test on Debian 12 or 13, as root.
# On Debian 12, llhttp 9.2 and mbedTLS 3.6 come from Debian 13's packages,
# fetched with `apt-get download` into .deps/ (a project-local prefix) and
# linked statically; the host's apt sources are never changed.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
prefix="$top/.deps"

pkgs="build-essential cmake pkg-config libinih-dev perl libtest-simple-perl
      curl wrk nginx-light haproxy clang libclang-rt-14-dev valgrind procps
      openssl ca-certificates util-linux slowhttptest strace"

export DEBIAN_FRONTEND=noninteractive
need=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need="$need $p"
done
if [ -n "$need" ]; then
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $need >/dev/null
fi

. /etc/os-release
if [ "${VERSION_CODENAME:-}" != "bookworm" ]; then
  # Debian 13 and later ship llhttp 9.2, mbedTLS 3.6 and inih as packages.
  apt-get install -y -qq libllhttp-dev libmbedtls-dev >/dev/null
  exit 0
fi

if [ -f "$prefix/.done" ]; then exit 0; fi

# The mirror the host already uses, with suite trixie, in a private list.
mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -n1)
[ -n "$mirror" ] || mirror=$(awk '$1=="deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
[ -n "$mirror" ] || mirror=http://deb.debian.org/debian

work="$prefix/apt"
rm -rf "$work" && mkdir -p "$work/lists/partial" "$work/debs"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main" > "$work/sources.list"
opts="-o Dir::Etc::SourceList=$work/sources.list -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists=$work/lists"
# shellcheck disable=SC2086
apt-get $opts update -qq
cd "$work/debs"
# shellcheck disable=SC2086
apt-get $opts download libllhttp-dev libllhttp9.2 libmbedtls-dev libmbedtls21 libmbedcrypto16 libmbedx509-7 >/dev/null
for d in ./*.deb; do dpkg -x "$d" "$prefix"; done
rm -rf "$work"
touch "$prefix/.done"
