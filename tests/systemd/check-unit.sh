#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Static checks of systemd/partnerd.service:
#   1. the settings partnerd's contract depends on are present;
#   2. systemd-analyze verify prints nothing on stderr (any warning fails);
#   3. systemd-analyze security --offline=yes rates it <= 1.5;
#   4. every ```ini drop-in shown in docs/systemd.md loads without warning.
#
# verify needs the ExecStart= binary to exist, so it runs on a temporary
# copy of the unit whose /usr/sbin/partnerd is replaced by $PARTNERD_BIN (the
# build's daemon) or, when that is absent, by a stub executable.  The man
# pages named in Documentation= are checked when both are in the tree
# (through a temporary MANPATH), otherwise verify runs with --man=no.
#
# Exit: 0 pass, 1 fail, 77 skipped (no systemd-analyze).

set -u

MAX_EXPOSURE=1.5
# systemd-analyze --threshold= is on a 0..100 scale: 15 means exposure 1.5.
THRESHOLD=15

if ! command -v systemd-analyze >/dev/null 2>&1; then
        echo "check-unit: skipped: systemd-analyze not found (install systemd)"
        exit 77
fi
srcdir=${TEST_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
unit="$srcdir/systemd/partnerd.service"

# shellcheck source=tests/systemd/common.sh disable=SC1091
. "$(dirname "$0")/common.sh"
ts_init check-unit "$unit"

echo "check-unit: $(systemd-analyze --version | head -n 1)"

# ---- 1. contract settings ------------------------------------------------
# Each line must appear verbatim (the daemon, the docs and the man page rely
# on them).
while IFS= read -r want; do
        [ -n "$want" ] || continue
        grep -qxF -- "$want" "$unit" || ts_fail "missing line: $want"
done <<'EOF'
Type=notify
NotifyAccess=main
ExecStart=/usr/sbin/partnerd --config /etc/partnerd/partnerd.conf
ExecReload=/bin/kill -HUP $MAINPID
WatchdogSec=60s
Restart=on-failure
RestartSec=10s
RestartPreventExitStatus=78
DynamicUser=yes
StateDirectory=partnerd
StateDirectoryMode=0700
ConfigurationDirectory=partnerd
UMask=0077
LoadCredential=marketplace-token
LoadCredential=partner-center-secret
LoadCredential=smtp-password
LimitCORE=0
Documentation=man:partnerd(8) man:partnerd.conf(5)
CapabilityBoundingSet=
EOF
# No secret may ever be passed through the environment.
if grep -Eiq '^(Environment|EnvironmentFile|PassEnvironment)=' "$unit"; then
        ts_fail "the unit passes environment variables; secrets belong in credentials"
fi

# ---- 2. systemd-analyze verify -------------------------------------------
bin=${PARTNERD_BIN:-}
if [ -z "$bin" ] && [ -n "${TEST_BUILDDIR:-}" ]; then
        bin="$TEST_BUILDDIR/partnerd"
fi
if [ -n "$bin" ] && [ -x "$bin" ]; then
        case $bin in
        /*) ;;
        *) bin="$(pwd)/$bin" ;;
        esac
        echo "check-unit: verifying with ExecStart=$bin"
else
        bin="$tmp/partnerd"
        printf '#!/bin/sh\nexit 0\n' >"$bin"
        chmod 0755 "$bin"
        echo "check-unit: no built partnerd (PARTNERD_BIN), verifying with a stub"
fi

sed "s|/usr/sbin/partnerd|$bin|g" "$unit" >"$tmp/partnerd.service"

man_opt=--man=no
if [ -r "$srcdir/man/partnerd.8" ] && [ -r "$srcdir/man/partnerd.conf.5" ] && \
   command -v man >/dev/null 2>&1; then
        mkdir -p "$tmp/man/man8" "$tmp/man/man5"
        cp "$srcdir/man/partnerd.8" "$tmp/man/man8/"
        cp "$srcdir/man/partnerd.conf.5" "$tmp/man/man5/"
        man_opt=--man=yes
fi

# verify_in DIR MAN_OPT WHAT: verifies DIR/partnerd.service (and the drop-ins
# in DIR/partnerd.service.d/); any output on stderr is a failure.  It runs
# in DIR, so that nothing of the caller's tree is picked up.
verify_in() {
        (cd "$1" && MANPATH="$tmp/man" systemd-analyze verify "$2" "$1/partnerd.service") \
                >"$1/verify.out" 2>"$1/verify.err"
        rc=$?
        if [ "$rc" -ne 0 ] || [ -s "$1/verify.err" ]; then
                ts_fail "systemd-analyze verify $2, $3 (exit $rc):"
                sed 's/^/    /' "$1/verify.err" "$1/verify.out" >&2
                return 1
        fi
        return 0
}

verify_in "$tmp" "$man_opt" "the unit" &&
        echo "check-unit: systemd-analyze verify $man_opt: clean"

# ---- 3. systemd-analyze security -----------------------------------------
# --offline=yes reads the unit file instead of asking the running manager.
systemd-analyze security --offline=yes --threshold="$THRESHOLD" --no-pager \
        "$tmp/partnerd.service" >"$tmp/security.out" 2>"$tmp/security.err"
rc=$?
score=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' "$tmp/security.out")
if [ -z "$score" ]; then
        ts_fail "systemd-analyze security printed no score (exit $rc)"
        sed 's/^/    /' "$tmp/security.err" >&2
elif [ "$rc" -ne 0 ]; then
        ts_fail "exposure $score is above $MAX_EXPOSURE"
        grep '✗' "$tmp/security.out" | sed 's/^/    /' >&2
else
        echo "check-unit: systemd-analyze security: exposure $score (limit $MAX_EXPOSURE)"
fi

# ---- 4. the drop-ins shown in docs/systemd.md ------------------------------
# Each ```ini block must load cleanly on top of the unit (commented-out
# blocks, like the notify-reload one for systemd >= 253, load as empty).
# Their partnerd paths are replaced by the binary verified above.
doc="$srcdir/docs/systemd.md"
if [ -r "$doc" ]; then
        mkdir -p "$tmp/doc"
        awk -v dir="$tmp/doc" '
                /^```ini$/ { n++; f = sprintf("%s/%d.conf", dir, n); inblk = 1; next }
                /^```$/ && inblk { inblk = 0; close(f); next }
                inblk { print > f }
        ' "$doc"
        n_doc=0
        for conf in "$tmp"/doc/*.conf; do
                [ -e "$conf" ] || continue
                n_doc=$((n_doc + 1))
                d="$tmp/dropin-$n_doc"
                mkdir -p "$d/partnerd.service.d"
                cp "$tmp/partnerd.service" "$d/partnerd.service"
                sed "s|/usr/local/sbin/partnerd|$bin|g; s|/usr/sbin/partnerd|$bin|g" "$conf" \
                        >"$d/partnerd.service.d/doc.conf"
                verify_in "$d" --man=no "drop-in number $n_doc of docs/systemd.md"
        done
        echo "check-unit: $n_doc drop-in(s) from docs/systemd.md checked"
fi

ts_finish
