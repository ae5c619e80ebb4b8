#!/bin/sh
# make deb: builds the Debian package build/deb/partnerd_<version>_<arch>.deb
# (and its -dbgsym package) and runs lintian, which must report no error and
# no warning.  As root on Debian, installs the build tools and the package's
# Build-Depends first; otherwise prints the command to run.
#
# The version comes from the VERSION file; debian/changelog must agree (see
# debian/README.source).  dpkg-buildpackage writes its results to the parent
# of the source tree, so the build runs in a copy under build/deb/src/.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
out="$top/build/deb"
cd "$top"

die() { echo "deb: $*" >&2; exit 1; }

# 1. One version.  Parsed with sed: dpkg-dev may not be installed yet.
version=$(cat VERSION)
changelog_version=$(sed -n '1s/^partnerd (\([^)]*\)).*/\1/p' debian/changelog)
[ -n "$changelog_version" ] || die "cannot read the version from the first line of debian/changelog"
if [ "$version" != "$changelog_version" ]; then
        die "VERSION says $version but debian/changelog says $changelog_version.
deb: add a debian/changelog entry for $version (e.g. dch -v $version), in the same commit as VERSION."
fi

# 2. Build tools and Build-Depends.
TOOLS="build-essential dpkg-dev debhelper lintian"
have_tools() {
        for c in dpkg-buildpackage dpkg-checkbuilddeps dh lintian cc make; do
                command -v "$c" >/dev/null 2>&1 || return 1
        done
        dpkg-checkbuilddeps >/dev/null 2>&1
}
if ! have_tools; then
        if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
                die "build dependencies missing; as root run:
    apt-get update && apt-get install -y $TOOLS && apt-get build-dep -y '$top'"
        fi
        echo "deb: installing the build dependencies (Debian packages)" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends $TOOLS >/dev/null
        apt-get build-dep -y -qq "$top" >/dev/null
        have_tools || die "build dependencies still missing after installing them: dpkg-checkbuilddeps says: $(dpkg-checkbuilddeps 2>&1)"
fi

# 3. Build in a copy of the tree.
arch=$(dpkg --print-architecture)
src="$out/src/partnerd-$version"
rm -rf "$out"
mkdir -p "$src"
tar -cf - --exclude=./build --exclude=./.git --exclude=./debian/partnerd \
        --exclude=./debian/.debhelper --exclude=./debian/files --exclude='./debian/*.substvars' \
        --exclude='./debian/*debhelper*' . | tar -xf - -C "$src"
echo "deb: dpkg-buildpackage -us -uc -b (log: build/deb/build.log)" >&2
if ! (cd "$src" && dpkg-buildpackage -us -uc -b) >"$out/build.log" 2>&1; then
        tail -n 40 "$out/build.log" >&2
        die "dpkg-buildpackage failed (full log: $out/build.log)"
fi
for f in "$out"/src/partnerd*_"$version"_*; do
        mv "$f" "$out/"
done
rm -rf "$out/src"
deb="$out/partnerd_${version}_${arch}.deb"
[ -f "$deb" ] || die "dpkg-buildpackage did not produce $deb"

# 4. lintian: no error, no warning (overrides only with a written reason, in
#    debian/partnerd.lintian-overrides).
#    lintian advises against running as root: drop to nobody when possible.
echo "deb: lintian" >&2
changes="$out/partnerd_${version}_${arch}.changes"
as_user=""
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null 2>&1 &&
   setpriv --reuid=nobody --regid=nogroup --clear-groups test -r "$changes" 2>/dev/null; then
        as_user="setpriv --reuid=nobody --regid=nogroup --clear-groups"
fi
if ! HOME=/tmp $as_user lintian --fail-on error,warning "$changes" >"$out/lintian.log" 2>&1; then
        cat "$out/lintian.log" >&2
        die "lintian reported errors or warnings"
fi
grep -v "^N: " "$out/lintian.log" || echo "deb: lintian: no error, no warning"
echo "deb: built $(ls "$out"/*.deb | sed "s|^$top/||" | tr '\n' ' ')"
