#!/bin/sh
# make check-bare: the README's two commands, the way a newcomer meets them.
#
#   1. debootstraps a Debian 12 root with nothing but minbase, build-essential
#      and git (cached, pristine, in build/check-bare/base; from the Debian
#      mirror this machine's apt is configured with), and copies it;
#   2. gives the copy this machine's apt sources (as the newcomer's machine
#      has its own), /proc, /sys, /dev and a clean `git clone` of this
#      checkout's committed HEAD (uncommitted changes are not tested; the
#      clone is checked to be at that very commit);
#   3. inside it, through chroot, as root: `make demo`, then `make check`:
#      scripts/deps.sh must install everything they need from there.
#
# Package scripts must not start daemons in the root (prometheus, etcd:
# they would listen on this machine's network): a policy-rc.d says no, as
# in any chroot.  Whatever still runs inside the root when the script ends
# (a test's leftover) is killed, then the mounts go.  A root left mounted
# by a killed earlier run is unmounted before it is removed (never an rm
# through a bind mount of /dev).
#
# The root shares this machine's network (the mirror, and loopback for the
# tests).  Logs: build/check-bare/{debootstrap,demo,check}.log.  Slow (the
# dependencies and the whole `make check`): run it with nice.
# Needs root and debootstrap (installed when missing).  Not part of make
# check.  Exit 0 pass, 1 fail, 77 skipped.
set -eu

top=$(cd "$(dirname "$0")/../.." && pwd -P)
work="$top/build/check-bare"
SUITE=bookworm

die()  { echo "check-bare: $*" >&2; exit 1; }
skip() { echo "check-bare: SKIP: $*"; exit 77; }
say()  { printf '\n== %s\n' "$*"; }

[ "$(id -u)" = 0 ] || skip "needs root (debootstrap, chroot, mounts)"
command -v apt-get >/dev/null 2>&1 || skip "needs a Debian host with apt"
command -v git >/dev/null 2>&1 || skip "needs git"
if ! command -v debootstrap >/dev/null 2>&1; then
        echo "check-bare: installing debootstrap" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null ||
                { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
                  --no-install-recommends debootstrap >/dev/null; }
fi
git -C "$top" rev-parse --verify -q HEAD >/dev/null || die "$top is not a git checkout"

# ---------------------------------------------------------------- the root
mkdir -p "$work"
base="$work/base"
if [ ! -f "$base/.check-bare-base" ]; then
        # The mirror this machine's apt uses for the suite; never a name in code.
        mirror=$(apt-get indextargets --format '$(RELEASE) $(TARGET_OF) $(REPO_URI)' |
                 awk -v s="$SUITE" '$1 == s && $2 == "deb" { print $3; exit }')
        [ -n "$mirror" ] || die "no '$SUITE' deb source in this machine's apt configuration"
        say "debootstrap --variant=minbase --include=build-essential,git $SUITE (cached in build/check-bare/base)"
        rm -rf "$base" "$base.tmp"
        debootstrap --variant=minbase --include=build-essential,git "$SUITE" "$base.tmp" "$mirror" \
                >"$work/debootstrap.log" 2>&1 || { tail -n 20 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
        touch "$base.tmp/.check-bare-base"
        mv "$base.tmp" "$base"
fi

root="$work/root"
mounted=""

# PIDs of the processes whose root directory is the copy.
in_root() {
        for p in /proc/[0-9]*; do
                [ "$(readlink "$p/root" 2>/dev/null)" = "$root" ] && echo "${p#/proc/}"
        done
        return 0
}

# Mount points under the copy, deepest first.
mounts_in_root() {
        awk -v r="$root/" 'substr($5, 1, length(r)) == r { print $5 }' /proc/self/mountinfo | sort -r
}

cleanup() {
        pids=$(in_root)
        if [ -n "$pids" ]; then
                echo "check-bare: stopping what still runs in the root:" $pids >&2
                kill $pids 2>/dev/null || true
                sleep 2
                pids=$(in_root)
                [ -z "$pids" ] || kill -9 $pids 2>/dev/null || true
        fi
        # Innermost first; only what this script mounted.
        for m in $mounted; do umount -l "$m" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "A fresh copy of the root"
# A killed earlier run may have left its mounts: never rm through them.
for m in $(mounts_in_root); do umount -l "$m" || die "cannot unmount $m (left by an earlier run)"; done
[ -z "$(mounts_in_root)" ] || die "mounts remain under $root"
rm -rf --one-file-system "$root"
cp -a --reflink=auto "$base" "$root"
rm -f "$root/.check-bare-base"
# This machine's apt sources and settings, as the newcomer's own machine has.
rm -f "$root/etc/apt/sources.list"
cp -a /etc/apt/sources.list.d/. "$root/etc/apt/sources.list.d/"
[ -f /etc/apt/sources.list ] && cp /etc/apt/sources.list "$root/etc/apt/sources.list"
cp -a /etc/apt/apt.conf.d/. "$root/etc/apt/apt.conf.d/"
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
# No daemon started by a package's postinst in here (invoke-rc.d asks this).
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"

for m in proc sys dev dev/pts dev/shm; do
        mkdir -p "$root/$m"
        case $m in
        proc) mount -t proc proc "$root/proc" ;;
        sys) mount --bind /sys "$root/sys" ;;
        dev) mount --bind /dev "$root/dev" ;;
        dev/pts) mount --bind /dev/pts "$root/dev/pts" ;;
        dev/shm) mount -t tmpfs -o mode=1777 tmpfs "$root/dev/shm" ;;
        esac
        mounted="$root/$m $mounted"
done

# Exactly the committed HEAD of this checkout (a worktree's own HEAD, a
# detached one too), verified.
head=$(git -C "$top" rev-parse --verify HEAD)
clone="$root/root/partnerd"
say "git clone of $(git -C "$top" rev-parse --short HEAD) ($(git -C "$top" rev-parse --abbrev-ref HEAD))"
git -C "$top" diff --quiet HEAD -- 2>/dev/null ||
        echo "check-bare: note: uncommitted changes in $top are not part of the test" >&2
git clone -q --no-hardlinks --no-checkout "$top" "$clone"
git -C "$clone" fetch -q "$top" HEAD
git -C "$clone" checkout -q --detach FETCH_HEAD
[ "$(git -C "$clone" rev-parse HEAD)" = "$head" ] || die "the clone is not at $head"
[ -z "$(git -C "$clone" status --porcelain)" ] || die "the clone is not clean"

run() {  # run NAME: `make NAME` in the clone inside the root, logged
        say "chroot: make $1 (log: build/check-bare/$1.log)"
        if chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
                PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
                sh -c "cd /root/partnerd && make $1" >"$work/$1.log" 2>&1; then
                tail -n 3 "$work/$1.log"
                # skipped tests pass nothing: name them
                grep -E '^[a-z-]+: skipped:' "$work/$1.log" || true
                echo "check-bare: make $1 passed"
        else
                tail -n 40 "$work/$1.log" >&2
                echo "check-bare: what failed in make $1:" >&2
                grep -E '^\[  FAILED  \] [a-z_]|^[a-z-]+: failed:|^== .*FAIL|FAIL:|^make(\[[0-9]+\])?: \*\*\*' \
                        "$work/$1.log" | sort -u >&2 || true
                die "make $1 failed in a bare Debian 12 at $(git -C "$clone" rev-parse --short HEAD) (log: $work/$1.log)"
        fi
}
run demo
run check
echo "check-bare: a bare Debian 12 with build-essential and git passes make demo and make check"
