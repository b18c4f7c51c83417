#!/usr/bin/env bash
# Builds a current erofs-utils (mkfs.erofs, fsck.erofs, dump.erofs) into .tools/erofs-utils.
#
# Why: Debian 12's erofs-utils 1.5 cannot make LZMA, DEFLATE or Zstandard images, fragments,
# dedupe or block sizes other than 4 KiB, so the EROFS reader's tests for those modes would
# skip. The source comes from Debian's own archive (the erofs-utils package of Debian 13,
# fetched by apt-get, hash-checked against the signed Sources index) and is built with
# Debian 12's compilers and libraries. Nothing from this build is committed, and fwscan itself
# never runs it: only the tests (tests/conftest.py looks in .tools/erofs-utils/bin first) and
# benchmarks/formats_bench.py use it.
#
# Usage: .ci/erofs-utils.sh [PREFIX]   (default PREFIX: .tools/erofs-utils; as root)
# A failure prints a warning and exits 0: the tests then use Debian's erofs-utils 1.5 and skip
# the modes it lacks, each with a visible reason.
set -uo pipefail
cd "$(dirname "$0")/.."
PREFIX="${1:-$PWD/.tools/erofs-utils}"
SUITE="trixie"

if [ -x "$PREFIX/bin/mkfs.erofs" ] && "$PREFIX/bin/mkfs.erofs" --help 2>&1 | grep -q lzma; then
  exit 0
fi
warn() { echo "warning: could not build erofs-utils ($1); EROFS tests will use Debian's 1.5" >&2; exit 0; }
[ "$(id -u)" = 0 ] || warn "not root"

BUILD_DEPS="autoconf automake libtool pkg-config make gcc liblz4-dev liblzma-dev zlib1g-dev \
libzstd-dev uuid-dev libdeflate-dev dpkg-dev"
missing=""
for p in $BUILD_DEPS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "installing build dependencies of erofs-utils:$missing"
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null || warn "apt-get install"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/sources" "$work/lists/partial"
cat >"$work/sources/src.sources" <<EOF
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $SUITE
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
apt_opts=(-o "Dir::Etc::sourcelist=$work/none" -o "Dir::Etc::sourceparts=$work/sources"
  -o "Dir::State::Lists=$work/lists" -o "APT::Sandbox::User=root")
echo "fetching the erofs-utils source package of Debian $SUITE"
apt-get "${apt_opts[@]}" update -qq >/dev/null 2>&1 || warn "apt-get update ($SUITE sources)"
(cd "$work" && apt-get "${apt_opts[@]}" source --download-only -qq erofs-utils >/dev/null 2>&1) \
  || warn "apt-get source"
(cd "$work" && dpkg-source -x ./*.dsc src >/dev/null 2>&1) || warn "dpkg-source"
echo "building erofs-utils into $PREFIX"
(
  cd "$work/src" &&
    ./autogen.sh >/dev/null 2>&1 &&
    ./configure --prefix="$PREFIX" --enable-lzma --with-libzstd --with-libdeflate \
      --disable-fuse --without-selinux >/dev/null 2>&1 &&
    make -j"$(nproc)" >/dev/null 2>&1 &&
    make install >/dev/null 2>&1
) || warn "build failed"
"$PREFIX/bin/mkfs.erofs" --version | head -1
