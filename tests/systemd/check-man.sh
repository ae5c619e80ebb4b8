#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Checks man/partnerd.8:
#   1. groff -man -ww renders it without a single warning;
#   2. JOURNAL FIELDS names every event of lib/log.c with its MESSAGE_ID.
#
# Exit: 0 pass, 1 fail, 77 skipped (no groff; step 2 still needs nothing).

set -u

srcdir=${TEST_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
page="$srcdir/man/partnerd.8"
logc="$srcdir/lib/log.c"

# shellcheck source=tests/systemd/common.sh disable=SC1091
. "$(dirname "$0")/common.sh"
ts_init check-man "$page" "$logc"

# ---- 2. events (first: it needs no tool) ---------------------------------
# lib/log.c: [LOG_EV_X] = { "name", "id" },
sed -n 's/.*{ "\([a-z-]*\)", "\([0-9a-f]\{32\}\)" }.*/\1 \2/p' "$logc" >"$tmp/events"
if [ ! -s "$tmp/events" ]; then
        ts_fail "no event found in lib/log.c"
fi
while read -r name id; do
        # roff source: .BR name " (id)" with '-' written as '\-'
        roff_name=$(printf '%s' "$name" | sed 's/-/\\\\-/g')
        if ! grep -q "^\.BR $roff_name \" ($id)\"$" "$page"; then
                ts_fail "JOURNAL FIELDS lacks event $name ($id)"
        fi
done <"$tmp/events"
echo "check-man: $(wc -l <"$tmp/events") events checked against JOURNAL FIELDS"

# ---- 1. rendering --------------------------------------------------------
if command -v groff >/dev/null 2>&1; then
        groff -man -Tutf8 -ww -z "$page" 2>"$tmp/groff.err"
        rc=$?
        if [ "$rc" -ne 0 ] || [ -s "$tmp/groff.err" ]; then
                ts_fail "groff -man -ww (exit $rc):"
                sed 's/^/    /' "$tmp/groff.err" >&2
        else
                echo "check-man: groff -man -Tutf8 -ww: no warnings"
        fi
elif [ "$fail" -eq 0 ]; then
        echo "check-man: skipped: groff not found (install groff-base)"
        exit 77
fi

ts_finish
