#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Checks systemd/partnerd.catalog against lib/log.c:
#   1. every MESSAGE_ID in lib/log.c has exactly one catalog entry, and
#      every catalog entry belongs to an id in lib/log.c;
#   2. every entry has Subject:, Defined-By: partnerd, Support:,
#      Documentation: and a body, and only known @FIELD@ substitutions;
#   3. when journalctl is present, "journalctl --root=TMP --update-catalog"
#      compiles it into a throw-away root (the host's catalog is never
#      touched) without a warning, and lists every id back.
#
# Exit: 0 pass, 1 fail.  Step 3 is skipped (with a note) without journalctl.

set -u

srcdir=${TEST_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
catalog="$srcdir/systemd/partnerd.catalog"
logc="$srcdir/lib/log.c"

# Fields partnerd puts in its journal entries (lib/log.c adds MESSAGE,
# PRIORITY, SYSLOG_IDENTIFIER and MESSAGE_ID; the callers the rest).
KNOWN_FIELDS="MESSAGE PRIORITY MESSAGE_ID ORDER_ID CUSTOMER_TENANT CUSTOMER_DOMAIN CUSTOMER_KEY
HTTP_STATUS URL MAIL_KIND MESSAGE_ID_MAIL SMTP_CODE ERRNO CONFIG_FILE STATE_DIR ELAPSED_MS
PARTNER_ACCOUNT"

# shellcheck source=tests/systemd/common.sh disable=SC1091
. "$(dirname "$0")/common.sh"
ts_init check-catalog "$catalog" "$logc"

# ---- 1. ids ---------------------------------------------------------------
grep -o '"[0-9a-f]\{32\}"' "$logc" | tr -d '"' | sort >"$tmp/code.ids"
sed -n 's/^-- \([0-9a-f]\{32\}\)$/\1/p' "$catalog" | sort >"$tmp/catalog.ids"

n_code=$(wc -l <"$tmp/code.ids")
n_cat=$(wc -l <"$tmp/catalog.ids")
if [ "$n_code" -eq 0 ]; then
        ts_fail "no MESSAGE_ID found in lib/log.c"
fi

# A header line that is not exactly "-- <32 lower-case hex digits>".
grep -n '^--' "$catalog" | grep -v '^[0-9]*:-- [0-9a-f]\{32\}$' >"$tmp/badhdr"
while IFS= read -r l; do
        ts_fail "malformed entry header at line ${l%%:*}: ${l#*:}"
done <"$tmp/badhdr"

for id in $(uniq -d "$tmp/code.ids"); do
        ts_fail "lib/log.c uses id $id more than once"
done
for id in $(uniq -d "$tmp/catalog.ids"); do
        ts_fail "catalog has more than one entry for $id"
done
for id in $(sort -u "$tmp/code.ids" | comm -23 - "$tmp/catalog.ids"); do
        ts_fail "id $id from lib/log.c has no catalog entry"
done
for id in $(sort -u "$tmp/catalog.ids" | comm -13 "$tmp/code.ids" -); do
        ts_fail "catalog entry $id is not an id of lib/log.c"
done

# ---- 2. entry format -------------------------------------------------------
# Splits the catalog into entries and checks each one's header block.
awk -v out="$tmp/fmt" '
function finish() {
        if (id == "")
                return
        if (!subject)  printf "%s: no Subject:\n", id >> out
        if (!defined)  printf "%s: no Defined-By: partnerd\n", id >> out
        if (!support)  printf "%s: no Support:\n", id >> out
        if (!doc)      printf "%s: no Documentation:\n", id >> out
        if (!body)     printf "%s: empty body\n", id >> out
}
/^-- / { finish(); id = $2; inhdr = 1; subject = defined = support = doc = body = 0; next }
id == "" { next }
inhdr && /^$/ { inhdr = 0; next }
inhdr {
        if ($0 ~ /^Subject: ./) subject = 1
        else if ($0 == "Defined-By: partnerd") defined = 1
        else if ($0 ~ /^Support: ./) support = 1
        else if ($0 ~ /^Documentation: ./) doc = 1
        else printf "%s: unexpected header line: %s\n", id, $0 >> out
        next
}
/[^ ]/ { body = 1 }
END { finish() }
' "$catalog"
if [ -s "$tmp/fmt" ]; then
        while IFS= read -r l; do ts_fail "$l"; done <"$tmp/fmt"
fi

# journalctl substitutes @NAME@ with NAME made of A-Z and '_' only.
grep -v '^#' "$catalog" | grep -o '@[A-Z_]*@' | tr -d '@' | sort -u >"$tmp/used"
echo "$KNOWN_FIELDS" | tr ' ' '\n' | sed '/^$/d' | sort -u >"$tmp/known"
for f in $(comm -23 "$tmp/used" "$tmp/known"); do
        ts_fail "catalog uses @$f@, which partnerd never logs"
done

echo "check-catalog: $n_code ids in lib/log.c, $n_cat catalog entries"

# ---- 3. journalctl compiles it ------------------------------------------
if command -v journalctl >/dev/null 2>&1; then
        root="$tmp/root"
        mkdir -p "$root/usr/lib/systemd/catalog"
        cp "$catalog" "$root/usr/lib/systemd/catalog/partnerd.catalog"
        journalctl --root="$root" --update-catalog >"$tmp/upd.out" 2>"$tmp/upd.err"
        rc=$?
        if [ "$rc" -ne 0 ] || [ -s "$tmp/upd.err" ]; then
                ts_fail "journalctl --update-catalog (exit $rc):"
                sed 's/^/    /' "$tmp/upd.err" >&2
        elif [ ! -s "$root/var/lib/systemd/catalog/database" ]; then
                ts_fail "journalctl --update-catalog wrote no database"
        else
                journalctl --root="$root" --list-catalog 2>"$tmp/list.err" |
                        awk '{ print $1 }' | sort >"$tmp/listed.ids"
                if ! cmp -s "$tmp/listed.ids" "$tmp/catalog.ids"; then
                        ts_fail "journalctl --list-catalog does not list exactly the catalog's ids"
                        diff "$tmp/catalog.ids" "$tmp/listed.ids" | sed 's/^/    /' >&2
                else
                        echo "check-catalog: journalctl --update-catalog (temporary root): $(wc -l <"$tmp/listed.ids") entries compiled"
                fi
        fi
else
        echo "check-catalog: note: journalctl not found, compile step skipped"
fi

ts_finish
