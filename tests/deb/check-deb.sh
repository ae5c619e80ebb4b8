#!/bin/sh
# make check-deb: the Debian package, end to end, on a booted Debian 12.
#
#   1. builds the package (scripts/build-deb.sh: lintian must be clean) and a
#      second one with a bumped version, in a copy of the tree;
#   2. debootstraps a minimal bookworm root once (cached in build/check-deb/base,
#      from the Debian mirror this machine's apt is configured with), copies it
#      and installs the package's dependencies into the copy;
#   3. boots the copy with systemd-nspawn (private network) and, inside it
#      through nsenter: installs the package, checks its files, that the
#      service is neither enabled nor started, and partnerd --version;
#      configures it for the fake platform (build/fakeplatform with
#      tests/scenarios/demo.json) and an SMTP server, both run from this tree
#      inside the container's network namespace, with the secrets in
#      /etc/credstore as README.Debian says; enables and starts the service
#      and waits for an order to be processed;
#   4. upgrades to the bumped package: the service is restarted, keeps its
#      state and its configuration, and processes nothing twice;
#   5. purges the package and checks that nothing of partnerd is left.
#
# Needs root, debootstrap and systemd-container (installed when missing).
# Skips inside a container unless CHECK_DEB_IN_CONTAINER=1 (a privileged
# container whose systemd-nspawn can boot a system).  Not part of make check.
set -eu

top=$(cd "$(dirname "$0")/../.." && pwd)
work="$top/build/check-deb"
PY=/usr/bin/python3
SUITE=bookworm

pass=0; fail=0
ok()   { pass=$((pass + 1)); echo "ok   - $*"; }
bad()  { fail=$((fail + 1)); echo "FAIL - $*"; }
check() {  # check DESCRIPTION COMMAND...: a check that must succeed
        d=$1; shift
        if "$@" >/dev/null 2>&1; then ok "$d"; else bad "$d"; fi
}
wait_for() {  # wait_for SECONDS COMMAND...: until the command succeeds
        t=$1; shift; i=0
        until "$@" >/dev/null 2>&1; do
                i=$((i + 1)); [ $i -ge "$t" ] && return 1
                sleep 1
        done
}
die()  { echo "check-deb: $*" >&2; exit 1; }
skip() { echo "check-deb: SKIP: $*"; exit 0; }
say()  { printf '\n== %s\n' "$*"; }

# ---------------------------------------------------------------- preconditions
[ "$(id -u)" = 0 ] || skip "needs root (debootstrap, systemd-nspawn)"
command -v apt-get >/dev/null 2>&1 || skip "needs a Debian host with apt"
if command -v systemd-detect-virt >/dev/null 2>&1 && virt=$(systemd-detect-virt --container 2>/dev/null); then
        [ "${CHECK_DEB_IN_CONTAINER:-0}" = 1 ] ||
                skip "running inside a container ($virt); set CHECK_DEB_IN_CONTAINER=1 if it may boot a nested systemd-nspawn container"
        echo "check-deb: inside a $virt container, CHECK_DEB_IN_CONTAINER=1: trying anyway"
fi

missing=""
command -v debootstrap >/dev/null 2>&1 || missing="$missing debootstrap"
command -v systemd-nspawn >/dev/null 2>&1 || missing="$missing systemd-container"
command -v nsenter >/dev/null 2>&1 || missing="$missing util-linux"
if [ -n "$missing" ]; then
        echo "check-deb: installing$missing" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null ||
                { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null; }
fi

# ---------------------------------------------------------------- build
say "Building the package (make deb) and the test tools"
"$top/scripts/build-deb.sh"
version=$(cat "$top/VERSION")
arch=$(dpkg --print-architecture)
deb1="$top/build/deb/partnerd_${version}_${arch}.deb"
"$top/scripts/deps.sh"
make -C "$top" --no-print-directory build/fakeplatform >/dev/null
fake_bin="$top/build/fakeplatform"
scenario="$top/tests/scenarios/demo.json"
[ -x "$fake_bin" ] && [ -f "$scenario" ] && [ -f "$top/tests/tools/smtpd.py" ] ||
        die "missing build/fakeplatform, tests/scenarios/demo.json or tests/tools/smtpd.py"

say "Building the upgrade: the same tree as version $version+checkdeb1"
version2="$version+checkdeb1"
up="$work/upgrade-src"
rm -rf "$up"
mkdir -p "$up"
(cd "$top" && tar -cf - --exclude=./build --exclude=./.git .) | tar -xf - -C "$up"
echo "$version2" >"$up/VERSION"
{
        printf 'partnerd (%s) unstable; urgency=medium\n\n' "$version2"
        printf '  * Rebuild with a bumped version to test upgrades (make check-deb).\n\n'
        printf ' -- %s  %s\n\n' "$(sed -n 's/^Maintainer: //p' "$top/debian/control")" "$(date -R)"
        cat "$top/debian/changelog"
} >"$up/debian/changelog"
"$up/scripts/build-deb.sh" >/dev/null
deb2="$up/build/deb/partnerd_${version2}_${arch}.deb"
[ -f "$deb2" ] || die "the upgrade package $deb2 was not built"

# ---------------------------------------------------------------- the Debian 12 root
mkdir -p "$work"
base="$work/base"
if [ ! -f "$base/.check-deb-base" ]; then
        # The mirror this machine's apt uses for the suite; never a name in code.
        mirror=$(apt-get indextargets --format '$(RELEASE) $(TARGET_OF) $(REPO_URI)' |
                 awk -v s="$SUITE" '$1 == s && $2 == "deb" { print $3; exit }')
        [ -n "$mirror" ] || die "no '$SUITE' deb source in this machine's apt configuration"
        say "debootstrap --variant=minbase $SUITE from the configured mirror (cached in build/check-deb/base)"
        rm -rf "$base" "$base.tmp"
        debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus "$SUITE" "$base.tmp" "$mirror" \
                >"$work/debootstrap.log" 2>&1 || { tail -n 20 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
        touch "$base.tmp/.check-deb-base"
        mv "$base.tmp" "$base"
fi

say "A fresh copy of the root, with the package's dependencies"
root="$work/root"
rm -rf "$root"
cp -a --reflink=auto "$base" "$root"
rm -f "$root/.check-deb-base"
mkdir -p "$work/apt-archives/partial" "$root/root/debs"
cp "$deb1" "$deb2" "$root/root/debs/"
depends=$(dpkg-deb -f "$deb1" Depends)
echo "Depends: $depends"
# Not booted, on the host's network: apt fetches what the package needs, as
# "apt install ./partnerd.deb" would.  The booted container has no network.
systemd-nspawn -q -D "$root" --register=no --keep-unit --pipe \
        --bind="$work/apt-archives:/var/cache/apt/archives" \
        -E DEBIAN_FRONTEND=noninteractive -E DEPENDS="$depends" \
        /bin/sh -c 'apt-get update -qq && apt-get satisfy -y -qq --no-install-recommends "$DEPENDS"' \
        >"$work/apt.log" 2>&1 || { tail -n 20 "$work/apt.log" >&2; die "installing the dependencies failed"; }

# ---------------------------------------------------------------- boot
nspawn_pid=""; fake_pid=""; smtp_pid=""; pid1=""
cleanup() {
        for p in $fake_pid $smtp_pid; do
                kill "$p" 2>/dev/null || true
        done
        if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
                kill -TERM "$nspawn_pid" 2>/dev/null || true   # clean poweroff of the container
                i=0
                while kill -0 "$nspawn_pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.2; i=$((i + 1)); done
                kill -KILL "$nspawn_pid" 2>/dev/null || true
        fi
        wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "Booting the root: systemd-nspawn --boot --private-network"
systemd-nspawn -D "$root" --boot --private-network --register=no --keep-unit --console=read-only \
        >"$work/console.log" 2>&1 &
nspawn_pid=$!
i=0
while [ -z "$pid1" ]; do
        for c in $(ps -o pid= --ppid "$nspawn_pid" 2>/dev/null); do
                # The container's pid 1, once it has become systemd.
                if grep -qE '^NSpid:.*[[:space:]]1$' "/proc/$c/status" 2>/dev/null &&
                   [ "$(cat "/proc/$c/comm" 2>/dev/null)" = systemd ]; then pid1=$c; fi
        done
        i=$((i + 1))
        [ $i -gt 150 ] && { tail -n 20 "$work/console.log" >&2; die "the container did not start"; }
        [ -n "$pid1" ] || sleep 0.2
done
C() { nsenter -t "$pid1" -a "$@"; }            # run a command inside the container
N() { nsenter -t "$pid1" -n "$@"; }            # run a command of this host in its network
state=""; i=0
while [ -z "$state" ] && [ $i -lt 60 ]; do   # systemctl fails until the manager answers
        state=$(C timeout 120 systemctl is-system-running --wait 2>/dev/null || true)
        [ -n "$state" ] || { sleep 0.5; i=$((i + 1)); }
done
case "$state" in
running|degraded) echo "container booted: $state (init is pid $pid1 here)";;
*) tail -n 20 "$work/console.log" >&2; die "the container did not boot: '$state'";;
esac

# ---------------------------------------------------------------- install
say "Install: dpkg -i partnerd_${version}_${arch}.deb"
C dpkg -i "/root/debs/partnerd_${version}_${arch}.deb" </dev/null >"$work/install.log" 2>&1 ||
        { cat "$work/install.log" >&2; die "dpkg -i failed"; }
cat "$work/install.log"
check "installation prints where the setup steps are" grep -q 'README.Debian' "$work/install.log"
for f in /usr/sbin/partnerd /lib/systemd/system/partnerd.service /etc/partnerd/partnerd.conf \
         /usr/share/man/man8/partnerd.8.gz /usr/share/man/man5/partnerd.conf.5.gz \
         /usr/lib/systemd/catalog/partnerd.catalog /usr/share/doc/partnerd/README.Debian \
         /usr/share/doc/partnerd/README.md.gz /usr/share/doc/partnerd/changelog.gz \
         /usr/share/doc/partnerd/copyright /usr/share/doc/partnerd/systemd.md.gz; do
        check "installed $f" C test -s "$f"
done
check "no template directory installed: the templates are built in" \
        C sh -c '[ ! -e /usr/share/partnerd ] && partnerd templates | grep -q "^new-request.txt *built in$"'
check "/etc/partnerd/partnerd.conf is a conffile" \
        C sh -c "dpkg-query -W -f='\${Conffiles}' partnerd | grep -q ' /etc/partnerd/partnerd.conf '"
check "the configuration holds no secret value" \
        C sh -c '! grep -Eiq "^[[:space:]]*(token|client_secret|password)[[:space:]]*=" /etc/partnerd/partnerd.conf'
v=$(C partnerd --version 2>&1 || true)
if [ "$v" = "partnerd $version" ]; then ok "partnerd --version: $v"; else bad "partnerd --version: '$v', expected 'partnerd $version'"; fi
check "the service is not started on installation" \
        C sh -c '[ "$(systemctl is-active partnerd.service)" = inactive ]'
check "the service is not enabled on installation" \
        C sh -c '[ "$(systemctl is-enabled partnerd.service)" = disabled ]'
catalog_id=$(sed -n 's/^-- \([0-9a-f]\{32\}\).*/\1/p' "$root/usr/lib/systemd/catalog/partnerd.catalog" | head -n 1)
if [ -n "$catalog_id" ]; then
        check "the journal catalog is updated (journalctl --list-catalog $catalog_id)" \
                C sh -c "journalctl --list-catalog $catalog_id | grep -q $catalog_id"
else
        bad "no message id in /usr/lib/systemd/catalog/partnerd.catalog"
fi

# ---------------------------------------------------------------- configure and start
say "Configure for the fake platform, secrets in /etc/credstore, start"
mkdir -p "$work/mail"
rm -f "$work/fake.port" "$work/smtp.port" "$work/mail"/*
# Not through N: $! must be the server itself (nsenter execs it) for cleanup.
nsenter -t "$pid1" -n "$fake_bin" --scenario "$scenario" --port 0 --port-file "$work/fake.port" >"$work/fake.log" 2>&1 &
fake_pid=$!
nsenter -t "$pid1" -n "$PY" "$top/tests/tools/smtpd.py" --port 0 --port-file "$work/smtp.port" --dir "$work/mail" \
        >"$work/smtp.log" 2>&1 &
smtp_pid=$!
i=0
while [ ! -s "$work/fake.port" ] || [ ! -s "$work/smtp.port" ]; do
        i=$((i + 1)); [ $i -gt 100 ] && die "the fake platform or the SMTP server did not start"
        sleep 0.1
done
fport=$(cat "$work/fake.port"); sport=$(cat "$work/smtp.port")
echo "fake platform on 127.0.0.1:$fport, SMTP on 127.0.0.1:$sport (in the container's network)"

"$PY" - "$scenario" "$root" "$fport" "$sport" <<'EOF'
import json, os, sys
s = json.load(open(sys.argv[1]))
root, fport, sport = sys.argv[2], sys.argv[3], sys.argv[4]
store = os.path.join(root, "etc/credstore")
os.makedirs(store, mode=0o700, exist_ok=True)
os.chmod(store, 0o700)
for name, value in (("marketplace-token", s["marketplace"]["token"]),
                    ("partner-center-secret", s["microsoft"]["client_secret"])):
    path = os.path.join(store, name)
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(value + "\n")
with open(os.path.join(root, "etc/partnerd/partnerd.conf"), "w") as f:
    f.write(f"""# Written by make check-deb: the fake platform in the container's network.
[marketplace]
url = http://127.0.0.1:{fport}/public/v1
token_file = marketplace-token
poll_interval = 10s

[microsoft]
login_url = http://127.0.0.1:{fport}
api_url = http://127.0.0.1:{fport}/v1
tenant = {s["microsoft"]["tenant"]}
client_id = {s["microsoft"]["client_id"]}
client_secret_file = partner-center-secret
check_schedule = 10s

[mail]
smtp_url = smtp://127.0.0.1:{sport}
from = CSP orders <partnerd@softwareone.example>
to = it-admin@contoso.example
reminder_interval = 24h
max_reminders = 5
""")
EOF
# A local template override, as README.Debian describes: every subject gets a mark.
C sh -c 'partnerd templates --dump /root/templates >/dev/null && mkdir -p /etc/partnerd/templates &&
         for f in /root/templates/*.subject; do
                 sed "1s/^/[local] /" "$f" >"/etc/partnerd/templates/${f##*/}"
         done'
check "the secrets are root-only files in /etc/credstore" \
        C sh -c '[ "$(stat -c %a /etc/credstore/marketplace-token)" = 600 ] && [ "$(stat -c %a /etc/credstore)" = 700 ]'
out=$(C env CREDENTIALS_DIRECTORY=/etc/credstore partnerd --check-config 2>&1 || true)
if [ "$out" = "configuration OK" ]; then
        ok "CREDENTIALS_DIRECTORY=/etc/credstore partnerd --check-config (README.Debian): $out"
else
        bad "partnerd --check-config: $out"
fi
C systemctl enable --now partnerd.service >"$work/start.log" 2>&1 || true
check "systemctl enable --now partnerd: the service is active" \
        C sh -c '[ "$(systemctl is-active partnerd.service)" = active ]'
check "the service is enabled" C sh -c '[ "$(systemctl is-enabled partnerd.service)" = enabled ]'
if C systemctl reload partnerd.service >/dev/null 2>&1; then
        ok "systemctl reload partnerd succeeds"
        check "the daemon reloaded its configuration (journal)" \
                wait_for 10 C sh -c 'journalctl -u partnerd.service -o cat --no-pager | grep -q "^Configuration reloaded"'
else
        bad "systemctl reload partnerd fails; the journal says:"
        C journalctl -u partnerd.service --no-pager -o cat -n 6 | sed 's/^/    /'
fi

# fake_orders: the orders the fake platform holds now, one "ID STATUS PROCESS_CALLS"
# line each; the calls are counted in the fake's request log.
fake_orders() {
        N "$PY" - "$fport" <<'EOF'
import json, sys, urllib.request
base = f"http://127.0.0.1:{sys.argv[1]}/_fake"
def get(path):
    with urllib.request.urlopen(base + path, timeout=5) as r:
        return json.load(r)
calls = {}
for rec in get("/log"):
    parts = str(rec.get("path", "")).rstrip("/").split("/")
    if rec.get("method") == "POST" and len(parts) >= 2 and parts[-1] == "process":
        calls[parts[-2]] = calls.get(parts[-2], 0) + 1
for o in get("/orders"):
    print(o.get("id"), o.get("status"), calls.get(o.get("id"), 0))
EOF
}
querying=$("$PY" -c 'import json,sys; print(" ".join(o["id"] for o in json.load(open(sys.argv[1])).get("orders", []) if o.get("status") == "Querying"))' "$scenario")
processed=""
i=0
while [ -z "$processed" ] && [ $i -lt 90 ]; do
        for o in $(fake_orders 2>/dev/null | awk '$2 == "Processing" && $3 >= 1 { print $1 }'); do
                case " $querying " in *" $o "*) processed="$processed $o";; esac
        done
        [ -n "$processed" ] || { sleep 1; i=$((i + 1)); }
done
if [ -n "$processed" ]; then
        ok "the service processed an order on the fake platform:$processed"
else
        bad "no Querying order was processed within 90 s"
        C journalctl -u partnerd.service --no-pager -n 40 >&2 || true
fi
check "mail reached the SMTP server" wait_for 30 sh -c "ls '$work/mail'/*.eml"
check "the mails use the override in /etc/partnerd/templates" "$PY" - "$work/mail" <<'EOF'
import email, email.policy, glob, sys
subjects = [email.message_from_binary_file(open(f, "rb"), policy=email.policy.default)["Subject"]
            for f in glob.glob(sys.argv[1] + "/*.eml")]
print(subjects)
sys.exit(0 if subjects and all(s.startswith("[local] ") for s in subjects) else 1)
EOF
check "the service logs to the journal" C sh -c 'journalctl -u partnerd.service -q --no-pager | grep -q .'
check "the state lives in /var/lib/private/partnerd (DynamicUser)" C test -d /var/lib/private/partnerd
for o in $processed; do
        check "the state file records $o as processed (partnerd status)" \
                wait_for 30 C sh -c "partnerd status | grep '$o' | grep -q processed"
done
status_before=$(C partnerd status 2>&1 || true)
echo "partnerd status before the upgrade:"; echo "$status_before" | sed 's/^/    /'
inv_before=$(C systemctl show -p InvocationID --value partnerd.service)

# ---------------------------------------------------------------- upgrade
say "Upgrade: dpkg -i partnerd_${version2}_${arch}.deb"
C dpkg -i "/root/debs/partnerd_${version2}_${arch}.deb" </dev/null >"$work/upgrade.log" 2>&1 ||
        { cat "$work/upgrade.log" >&2; die "the upgrade failed"; }
cat "$work/upgrade.log"
check "the upgrade prints no first-install note" sh -c "! grep -q 'README.Debian' '$work/upgrade.log'"
v=$(C partnerd --version 2>&1 || true)
if [ "$v" = "partnerd $version2" ]; then ok "after the upgrade, partnerd --version: $v"; else bad "after the upgrade: '$v'"; fi
inv_after=$(C systemctl show -p InvocationID --value partnerd.service)
check "the running service was restarted by the upgrade" \
        sh -c "[ -n '$inv_after' ] && [ '$inv_after' != '$inv_before' ]"
check "the service is active after the upgrade" C sh -c '[ "$(systemctl is-active partnerd.service)" = active ]'
check "the service is still enabled after the upgrade" \
        C sh -c '[ "$(systemctl is-enabled partnerd.service)" = enabled ]'
check "the modified conffile is kept" C grep -q "127.0.0.1:$fport" /etc/partnerd/partnerd.conf
check "the state file survived the upgrade" C test -s /var/lib/private/partnerd/state.json
for o in $processed; do
        check "after the upgrade the state still records $o as processed" \
                C sh -c "partnerd status | grep '$o' | grep -q processed"
done
sleep 22  # two poll cycles of the new version
orders_now=$(fake_orders 2>/dev/null || true)
echo "$orders_now" | sed 's/^/    fake: /'
calls=$(echo "$orders_now" | awk '$3 > 1 { print $1 "=" $3 }')
if [ -n "$orders_now" ] && [ -z "$calls" ]; then
        ok "no order was processed twice (the fake's request log)"
else
        bad "orders processed more than once, or no answer from the fake: '$calls'"
fi
check "the service is still active" C sh -c '[ "$(systemctl is-active partnerd.service)" = active ]'

# ---------------------------------------------------------------- purge
say "Purge: apt-get purge partnerd"
C env DEBIAN_FRONTEND=noninteractive apt-get purge -y partnerd </dev/null >"$work/purge.log" 2>&1 ||
        { cat "$work/purge.log" >&2; die "apt-get purge failed"; }
check "the package is gone from dpkg's database" C sh -c '! dpkg -s partnerd'
check "the service is no longer running" C sh -c '[ "$(systemctl is-active partnerd.service)" != active ]'
check "no partnerd process is left" C sh -c '! grep -qx partnerd /proc/[0-9]*/comm'
left=$(C find / -xdev \( -path /root/debs -o -path /proc -o -path /sys \) -prune -o -name '*partnerd*' -print 2>/dev/null || true)
left_run=$(C find /run -name '*partnerd*' 2>/dev/null || true)
if [ -z "$left$left_run" ]; then
        ok "nothing named partnerd is left on the system"
else
        bad "left after purge: $(echo $left $left_run)"
fi
for d in /etc/partnerd /var/lib/partnerd /var/lib/private/partnerd /usr/share/partnerd; do
        check "$d is gone" C sh -c "[ ! -e $d ] && [ ! -L $d ]"
done
if [ -n "$catalog_id" ]; then
        check "the journal catalog no longer has partnerd's entries" \
                C sh -c "! journalctl --list-catalog $catalog_id 2>/dev/null | grep -q $catalog_id"
fi

say "Done"
echo "check-deb: $pass passed, $fail failed"
[ "$fail" = 0 ]
