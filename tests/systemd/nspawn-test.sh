#!/bin/sh
# SPDX-License-Identifier: MIT
#
# partnerd under a real systemd: boots the host's own /usr in a throw-away
# container (systemd-nspawn --volatile=yes: an empty tmpfs root, /usr
# read-only from the host, a private network with only loopback), runs the
# fake platform and an SMTP server inside it, installs systemd/partnerd.service
# with the credentials in /etc/credstore/ and asserts:
#
#   1. "systemctl start" returns active (Type=notify: READY=1 came), under a
#      dynamic user, with a STATUS= line;
#   2. an order is notified by mail, then, once the customer accepts (the
#      fake's control route), processed;
#   3. journalctl -o json carries MESSAGE_ID, ORDER_ID and CUSTOMER_KEY
#      fields, and no secret appears in the journal or systemctl status;
#   4. "systemctl reload" works, and fails on an invalid file while the
#      daemon keeps running;
#   5. a SIGSTOPped daemon is killed by the watchdog and restarted
#      (WatchdogSec=3s in a drop-in);
#   6. a broken configuration ends in exit status 78 without a restart loop;
#   7. "systemctl stop" is clean (exit status 0).
#
# Needs root, a host that is not itself a container, systemd-nspawn
# (package systemd-container, installed when missing), nsenter and
# python3-aiosmtpd; otherwise it is skipped, as it is when nspawn cannot
# start the container.  NSPAWN_TEST_IN_CONTAINER=1 tries even inside a
# container (nspawn works in some privileged ones).  Every wait and
# every command in the container is bounded; a run takes well under a
# minute.  On failure the end of the container's journal is printed.
#
# Environment: PARTNERD_BIN, FAKEPLATFORM_BIN (default $TEST_BUILDDIR/...,
# else build/...), TEST_SRCDIR (default: this checkout).
#
# Exit: 0 pass, 1 fail, 77 skipped.

set -u

skip() {
        echo "nspawn-test: skipped: $*"
        exit 77
}

# ---- may we run at all? --------------------------------------------------
[ "$(id -u)" = 0 ] || skip "needs root (boots a container with systemd-nspawn)"
if command -v systemd-detect-virt >/dev/null 2>&1; then
        virt=$(systemd-detect-virt --container 2>/dev/null)
        [ -z "$virt" ] && virt=none
else
        virt=none
        { [ -e /.dockerenv ] || [ -e /run/.containerenv ]; } && virt=unknown-container
fi
if [ "$virt" != none ] && [ "${NSPAWN_TEST_IN_CONTAINER:-0}" != 1 ]; then
        skip "already inside a container ($virt): systemd-nspawn cannot boot here"
fi
for tool in nsenter python3; do
        command -v "$tool" >/dev/null 2>&1 || skip "$tool not found"
done
if ! command -v systemd-nspawn >/dev/null 2>&1; then
        command -v apt-get >/dev/null 2>&1 || skip "systemd-nspawn not found and no apt-get to install it"
        echo "nspawn-test: installing systemd-container"
        DEBIAN_FRONTEND=noninteractive apt-get install -y systemd-container >/dev/null 2>&1 ||
                skip "cannot install systemd-container"
        command -v systemd-nspawn >/dev/null 2>&1 || skip "systemd-nspawn still not found"
fi
/usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null || skip "python3-aiosmtpd is not installed"

srcdir=${TEST_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
builddir=${TEST_BUILDDIR:-$srcdir/build}
bin=${PARTNERD_BIN:-$builddir/partnerd}
fake=${FAKEPLATFORM_BIN:-$builddir/fakeplatform}
for f in "$bin" "$fake"; do
        [ -x "$f" ] || { echo "nspawn-test: FAIL: $f is not built (make tests)" >&2; exit 1; }
done
for f in systemd/partnerd.service tests/scenarios/basic.json tests/tools/smtpd.py config/templates; do
        [ -e "$srcdir/$f" ] || { echo "nspawn-test: FAIL: missing $srcdir/$f" >&2; exit 1; }
done
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
fake=$(cd "$(dirname "$fake")" && pwd)/$(basename "$fake")
srcdir=$(cd "$srcdir" && pwd)

# shellcheck source=tests/systemd/common.sh disable=SC1091
. "$(dirname "$0")/common.sh"
ts_init nspawn-test "$bin" "$fake"

# Inside the container: the build and the sources, read-only.
CT_BIN=/opt/partnerd/bin/$(basename "$bin")
CT_FAKE=/opt/partnerd/fake/$(basename "$fake")
CT_SRC=/opt/partnerd/src
CONTOSO=6f1c2a7e-0b8d-4c55-9e41-2d7f0a3b9c10
ORDER=ORD-1001-0001-0001
ID_RELOADED=8bfe374430ef46a0af149a3ac4322e7f
ID_CONFIG_INVALID=c376bfb1c645432c9dbbfa29ee7a5889

# Secrets of the scenario: they must never show.
secrets=$(/usr/bin/python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
print(s["marketplace"]["token"]); print(s["microsoft"]["client_secret"])' "$srcdir/tests/scenarios/basic.json") ||
        { echo "nspawn-test: FAIL: cannot read the scenario" >&2; exit 1; }
ms_ids=$(/usr/bin/python3 -c '
import json, sys
m = json.load(open(sys.argv[1]))["microsoft"]
print(m["tenant"], m["client_id"])' "$srcdir/tests/scenarios/basic.json") ||
        { echo "nspawn-test: FAIL: cannot read the scenario" >&2; exit 1; }
ms_tenant=${ms_ids% *}
ms_client_id=${ms_ids#* }

# set by ts_init in common.sh
tmp=${tmp:?}
fail=${fail:?}

# ---- the container -------------------------------------------------------
ct_pid=
nspawn_pid=
fatal() {
        ts_fail "$*"
        if [ -n "$ct_pid" ]; then
                echo "---- journal of the container (last 80 lines)" >&2
                in_ct journalctl --no-pager -n 80 >&2 2>/dev/null
        fi
        [ -s "$tmp/nspawn.log" ] && { echo "---- systemd-nspawn" >&2; tail -n 20 "$tmp/nspawn.log" >&2; }
        ts_finish
}

cleanup() {
        if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
                # SIGTERM makes nspawn shut the container down in order
                kill -TERM "$nspawn_pid" 2>/dev/null
                i=0
                while kill -0 "$nspawn_pid" 2>/dev/null && [ $i -lt 20 ]; do
                        sleep 0.5
                        i=$((i + 1))
                done
                kill -KILL "$nspawn_pid" 2>/dev/null
        fi
        rm -rf "$tmp"
}
trap cleanup EXIT

# Runs a command inside the container, with a clean environment, for at
# most $CT_TIMEOUT seconds (default 30).
in_ct() {
        timeout "${CT_TIMEOUT:-30}" nsenter -t "$ct_pid" -a -r -w \
                env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"
}

# wait_for SECONDS WHAT COMMAND...: polls every 0.5 s.
wait_for() {
        limit=$(($1 * 2))
        what=$2
        shift 2
        i=0
        until "$@" >/dev/null 2>&1; do
                i=$((i + 1))
                [ $i -ge $limit ] && return 1
                sleep 0.5
        done
        echo "nspawn-test: $what"
        return 0
}

# The host pid of the container's init: pid 1 of a child pid namespace
# (NSpid: <host pid> 1) that descends from our nspawn or carries the
# machine name as its host name.
find_ct_pid() {
        for st in /proc/[0-9]*/status; do
                p=$(awk '/^NSpid:/ && NF == 3 && $3 == 1 { print $2 }' "$st" 2>/dev/null)
                [ -n "$p" ] || continue
                a=$p
                while [ -n "$a" ] && [ "$a" -gt 1 ]; do
                        [ "$a" = "$nspawn_pid" ] && break
                        a=$(awk '/^PPid:/ { print $2 }' "/proc/$a/status" 2>/dev/null)
                done
                if [ "$a" = "$nspawn_pid" ] ||
                   [ "$(nsenter -t "$p" -u cat /proc/sys/kernel/hostname 2>/dev/null)" = "$machine" ]; then
                        ct_pid=$p
                        return 0
                fi
        done
        return 1
}

system_up() {
        s=$(in_ct systemctl is-system-running 2>/dev/null)
        [ "$s" = running ] || [ "$s" = degraded ]
}

machine=partnerd-test-$$
echo "nspawn-test: $(systemd-nspawn --version | head -n 1), booting $machine"
systemd-nspawn -D / --volatile=yes --private-network --boot --register=no --keep-unit \
        --console=passive --machine="$machine" \
        --bind-ro="$(dirname "$bin"):/opt/partnerd/bin" \
        --bind-ro="$(dirname "$fake"):/opt/partnerd/fake" \
        --bind-ro="$srcdir:$CT_SRC" \
        systemd.firstboot=off >"$tmp/nspawn.log" 2>&1 &
nspawn_pid=$!
if ! wait_for 20 "container started" find_ct_pid; then
        echo "nspawn-test: systemd-nspawn says:" >&2
        tail -n 20 "$tmp/nspawn.log" >&2
        skip "systemd-nspawn could not start a container here"
fi
wait_for 40 "container booted" system_up ||
        fatal "the container did not finish booting in 40 s ($(in_ct systemctl is-system-running 2>&1))"

# ---- peers: the fake platform and the SMTP server ------------------------
in_ct mkdir -p /run/pd-mail || fatal "mkdir in the container"
in_ct systemd-run --quiet --unit=pd-fake "$CT_FAKE" --scenario "$CT_SRC/tests/scenarios/basic.json" \
        --port 0 --port-file /run/pd-fake.port || fatal "cannot start the fake platform"
in_ct systemd-run --quiet --unit=pd-smtpd /usr/bin/python3 "$CT_SRC/tests/tools/smtpd.py" \
        --dir /run/pd-mail --port 0 --port-file /run/pd-smtpd.port || fatal "cannot start the SMTP server"
wait_for 15 "fake platform listening" in_ct test -s /run/pd-fake.port || fatal "the fake platform did not start"
wait_for 15 "SMTP server listening" in_ct test -s /run/pd-smtpd.port || fatal "the SMTP server did not start"
fake_port=$(in_ct cat /run/pd-fake.port)
smtp_port=$(in_ct cat /run/pd-smtpd.port)
fake_url=http://127.0.0.1:$fake_port

# HTTP against the fake from inside (curl may be absent): http METHOD PATH
http() {
        in_ct /usr/bin/python3 -c '
import sys, urllib.request
r = urllib.request.Request(sys.argv[2], method=sys.argv[1], data=b"" if sys.argv[1] == "POST" else None)
sys.stdout.write(urllib.request.urlopen(r, timeout=10).read().decode())' "$1" "$fake_url$2"
}

# ---- partnerd: unit, drop-in, configuration, credentials -----------------
write_config() {   # write_config POLL_INTERVAL
        in_ct sh -c 'umask 022; mkdir -p /etc/partnerd && cat >/etc/partnerd/partnerd.conf' <<EOF
[marketplace]
url = $fake_url/public/v1
token_file = marketplace-token
poll_interval = $1

[microsoft]
login_url = $fake_url
api_url = $fake_url/v1
tenant = $ms_tenant
client_id = $ms_client_id
client_secret_file = partner-center-secret
check_schedule = 10s

[mail]
smtp_url = smtp://127.0.0.1:$smtp_port
from = CSP orders <partnerd@softwareone.example>
to = admin1@example.test
templates = $CT_SRC/config/templates
EOF
}
write_config 10s || fatal "cannot write the configuration"
printf '%s\n' "$secrets" | {
        read -r token
        read -r client_secret
        in_ct sh -c 'umask 077; mkdir -p /etc/credstore && cat >/etc/credstore/marketplace-token' <<EOF
$token
EOF
        in_ct sh -c 'umask 077; cat >/etc/credstore/partner-center-secret' <<EOF
$client_secret
EOF
} || fatal "cannot write the credentials"
in_ct sh -c 'cat >/etc/systemd/system/partnerd.service' <"$srcdir/systemd/partnerd.service" ||
        fatal "cannot install the unit"
# The drop-in: the unit's own Exec lines with the binary under test in
# place of /usr/sbin/partnerd, a 3 s watchdog, a quick restart.
{
        printf '[Service]\nExecStart=\nExecReload=\n'
        grep -E '^Exec(Start|Reload)=' "$srcdir/systemd/partnerd.service" | sed "s|/usr/sbin/partnerd|$CT_BIN|"
        printf 'WatchdogSec=3s\nRestartSec=1s\nTimeoutAbortSec=5s\nLimitCORE=0\n'
} >"$tmp/test.conf"
grep -q "^ExecStart=$CT_BIN " "$tmp/test.conf" || fatal "no ExecStart=/usr/sbin/partnerd in the unit"
in_ct sh -c 'mkdir -p /etc/systemd/system/partnerd.service.d &&
        cat >/etc/systemd/system/partnerd.service.d/test.conf' <"$tmp/test.conf" || fatal "cannot install the drop-in"
# Only loopback here: network-online.target would wait for
# systemd-networkd-wait-online until its 2 minute timeout.
in_ct systemctl mask --quiet systemd-networkd-wait-online.service
in_ct systemctl daemon-reload || fatal "daemon-reload failed"

show() {   # show PROPERTY
        in_ct systemctl show -P "$1" partnerd.service
}
journal() {   # journal [journalctl args...]: partnerd's entries
        in_ct journalctl --no-pager -u partnerd.service "$@"
}

# ---- 1. start ------------------------------------------------------------
in_ct systemctl start partnerd.service || fatal "systemctl start partnerd failed"
[ "$(show ActiveState)" = active ] || fatal "partnerd is $(show ActiveState) after start"
echo "nspawn-test: started, $(show StatusText)"
main_pid=$(show MainPID)
# (no awk inside: its /etc/alternatives link is missing in the empty /etc)
uid=$(in_ct cat "/proc/$main_pid/status" | awk '/^Uid:/ { print $2 }')
# systemd's dynamic users: 61184..65519
if [ -z "$uid" ] || [ "$uid" -lt 61184 ] || [ "$uid" -gt 65519 ]; then
        ts_fail "partnerd runs as uid '$uid', not a dynamic user"
fi

# ---- 2. notified, then processed -----------------------------------------
mails() {
        in_ct sh -c 'ls /run/pd-mail/*.eml 2>/dev/null | wc -l'
}
has_mail() {
        [ "$(mails)" -ge 1 ]
}
wait_for 20 "mails sent" has_mail || fatal "no mail after 20 s"
show StatusText | grep -q 'awaiting acceptance' || ts_fail "STATUS= lacks 'awaiting acceptance': $(show StatusText)"
http POST "/_fake/accept/$CONTOSO" >/dev/null || fatal "cannot accept the relationship at the fake"
processed() {
        http GET /_fake/orders | /usr/bin/python3 -c '
import json, sys
sys.exit(0 if any(o.get("id") == sys.argv[1] and o.get("status") == "Processing"
                  for o in json.load(sys.stdin)) else 1)' "$ORDER"
}
# the next poll is 10 s after the first
wait_for 30 "order $ORDER processed" processed || fatal "order $ORDER not processed after 30 s"

# ---- 3. the journal --------------------------------------------------------
in_ct journalctl --sync >/dev/null 2>&1
journal -o json >"$tmp/journal.json" || fatal "journalctl failed"
/usr/bin/python3 - "$tmp/journal.json" "$ORDER" <<'EOF' || ts_fail "the journal lacks structured fields (above)"
import json, sys
entries = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def has(*keys, **values):
    return any(all(k in e for k in keys) and all(e.get(k) == v for k, v in values.items()) for e in entries)
ok = True
for keys, values, what in (
        (("MESSAGE_ID",), {}, "MESSAGE_ID"),
        (("MESSAGE_ID", "ORDER_ID"), {"ORDER_ID": sys.argv[2]}, "ORDER_ID=" + sys.argv[2]),
        (("MESSAGE_ID", "CUSTOMER_KEY"), {}, "CUSTOMER_KEY"),
        ((), {"PRIORITY": "6", "SYSLOG_IDENTIFIER": "partnerd"}, "PRIORITY and SYSLOG_IDENTIFIER")):
    if not has(*keys, **values):
        print("nspawn-test: no journal entry with %s" % what, file=sys.stderr)
        ok = False
sys.exit(0 if ok else 1)
EOF
in_ct systemctl status --no-pager -n 50 partnerd.service >"$tmp/status.txt" 2>&1
printf '%s\n' "$secrets" | while IFS= read -r s; do
        [ -n "$s" ] || continue
        for f in "$tmp/journal.json" "$tmp/status.txt"; do
                if grep -qF -- "$s" "$f"; then
                        echo "nspawn-test: FAIL: a secret appears in $(basename "$f")" >&2
                        echo x >"$tmp/secret-leak"
                fi
        done
done
[ -e "$tmp/secret-leak" ] && ts_fail "a secret leaked"

# ---- 4. reload -----------------------------------------------------------
count_id() {   # count_id MESSAGE_ID: partnerd's journal entries with it
        journal -o cat "MESSAGE_ID=$1" | wc -l
}
r0=$(count_id "$ID_RELOADED")
in_ct systemctl reload partnerd.service || ts_fail "systemctl reload failed"
reloaded() {
        [ "$(count_id "$ID_RELOADED")" -gt "$r0" ]
}
wait_for 10 "reloaded" reloaded || ts_fail "no 'reloaded' journal entry after systemctl reload"
# An invalid file: with a validating ExecReload= (--check-config) the
# reload fails; without one partnerd refuses it itself (config-invalid).
# Either way the running daemon and its configuration stay.
c0=$(count_id "$ID_CONFIG_INVALID")
write_config 1s || fatal "cannot write the configuration"
if grep -q '^ExecReload=.*--check-config' "$srcdir/systemd/partnerd.service"; then
        if in_ct systemctl reload partnerd.service 2>/dev/null; then
                ts_fail "systemctl reload succeeded with an invalid configuration"
        fi
else
        in_ct systemctl reload partnerd.service || ts_fail "systemctl reload failed"
        refused() {
                [ "$(count_id "$ID_CONFIG_INVALID")" -gt "$c0" ]
        }
        wait_for 10 "invalid file refused" refused || ts_fail "no 'config-invalid' entry for an invalid file"
fi
[ "$(show ActiveState)" = active ] || ts_fail "partnerd is $(show ActiveState) after a failed reload"
[ "$(show MainPID)" = "$main_pid" ] || ts_fail "partnerd was restarted by a failed reload"
write_config 10s || fatal "cannot write the configuration"

# ---- 5. the watchdog -----------------------------------------------------
restarts=$(show NRestarts)
in_ct kill -STOP "$main_pid" || fatal "cannot stop $main_pid"
restarted() {
        p=$(show MainPID)
        [ "$(show ActiveState)" = active ] && [ -n "$p" ] && [ "$p" != 0 ] && [ "$p" != "$main_pid" ]
}
# 3 s watchdog, abort (or 5 s later SIGKILL), 1 s RestartSec, start
wait_for 25 "restarted by the watchdog" restarted || fatal "a stopped partnerd was not restarted in 25 s"
[ "$(show NRestarts)" -gt "$restarts" ] || ts_fail "NRestarts did not grow"
journal -o cat | grep -q 'Watchdog timeout' || ts_fail "no 'Watchdog timeout' from systemd in the journal"

# ---- 6. a broken configuration: 78, no restart loop ----------------------
write_config 1s || fatal "cannot write the configuration"
if in_ct systemctl restart partnerd.service 2>/dev/null; then
        ts_fail "partnerd started with an invalid configuration"
fi
restarts=$(show NRestarts)
sleep 3   # > RestartSec=1s: a restart loop would show
[ "$(show ExecMainStatus)" = 78 ] || ts_fail "exit status $(show ExecMainStatus), expected 78"
[ "$(show ActiveState)" = failed ] || ts_fail "partnerd is $(show ActiveState) after exit 78, expected failed"
[ "$(show NRestarts)" = "$restarts" ] || ts_fail "partnerd was restarted after exit 78"

# ---- 7. a clean stop -------------------------------------------------------
write_config 10s || fatal "cannot write the configuration"
in_ct systemctl reset-failed partnerd.service
in_ct systemctl start partnerd.service || fatal "systemctl start partnerd failed after the fix"
CT_TIMEOUT=40 in_ct systemctl stop partnerd.service || ts_fail "systemctl stop failed"
[ "$(show ActiveState)" = inactive ] || ts_fail "partnerd is $(show ActiveState) after stop"
[ "$(show Result)" = success ] || ts_fail "stop result $(show Result)"
[ "$(show ExecMainStatus)" = 0 ] || ts_fail "exit status $(show ExecMainStatus) after stop, expected 0"

[ "$fail" -ne 0 ] && fatal "see above"
ts_finish
