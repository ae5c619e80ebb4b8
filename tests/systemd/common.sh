# shellcheck shell=sh
# SPDX-License-Identifier: MIT
# Sourced by the tests/systemd/check-*.sh scripts (POSIX sh).
#
#   ts_init NAME FILE...   checks that each FILE is readable (else exit 1),
#                          makes $tmp (removed on exit) and sets fail=0
#   ts_fail MESSAGE        reports a failure and goes on
#   ts_finish              exits 1 after any failure, else prints OK, exit 0

ts_init() {
        ts_name=$1
        shift
        for f in "$@"; do
                if [ ! -r "$f" ]; then
                        echo "$ts_name: FAIL: cannot read $f" >&2
                        exit 1
                fi
        done
        tmp=$(mktemp -d "${TMPDIR:-/tmp}/partnerd-$ts_name.XXXXXX") || exit 1
        trap 'rm -rf "$tmp"' EXIT
        trap 'exit 1' HUP INT TERM
        fail=0
}

ts_fail() {
        echo "$ts_name: FAIL: $*" >&2
        fail=1
}

ts_finish() {
        if [ "$fail" -ne 0 ]; then
                echo "$ts_name: FAILED" >&2
                exit 1
        fi
        echo "$ts_name: OK"
        exit 0
}
