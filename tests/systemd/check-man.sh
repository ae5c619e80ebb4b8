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

for f in "$page" "$logc"; do
        if [ ! -r "$f" ]; then
                echo "check-man: FAIL: cannot read $f" >&2
                exit 1
        fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/partnerd-man.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT TERM

fail=0

# ---- 2. events (first: it needs no tool) ---------------------------------
# lib/log.c: [LOG_EV_X] = { "name", "id" },
sed -n 's/.*{ "\([a-z-]*\)", "\([0-9a-f]\{32\}\)" }.*/\1 \2/p' "$logc" >"$tmp/events"
if [ ! -s "$tmp/events" ]; then
        echo "check-man: FAIL: no event found in lib/log.c" >&2
        fail=1
fi
while read -r name id; do
        # roff source: .BR name " (id)" with '-' written as '\-'
        roff_name=$(printf '%s' "$name" | sed 's/-/\\\\-/g')
        if ! grep -q "^\.BR $roff_name \" ($id)\"$" "$page"; then
                echo "check-man: FAIL: JOURNAL FIELDS lacks event $name ($id)" >&2
                fail=1
        fi
done <"$tmp/events"
echo "check-man: $(wc -l <"$tmp/events") events checked against JOURNAL FIELDS"

# ---- 1. rendering --------------------------------------------------------
if command -v groff >/dev/null 2>&1; then
        groff -man -Tutf8 -ww -z "$page" 2>"$tmp/groff.err"
        rc=$?
        if [ "$rc" -ne 0 ] || [ -s "$tmp/groff.err" ]; then
                echo "check-man: FAIL: groff -man -ww (exit $rc):" >&2
                sed 's/^/    /' "$tmp/groff.err" >&2
                fail=1
        else
                echo "check-man: groff -man -Tutf8 -ww: no warnings"
        fi
elif [ "$fail" -eq 0 ]; then
        echo "check-man: skipped: groff not found (install groff-base)"
        exit 77
fi

if [ "$fail" -ne 0 ]; then
        echo "check-man: FAILED" >&2
        exit 1
fi
echo "check-man: OK"
exit 0
