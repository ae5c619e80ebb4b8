#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""`make bench`: partnerd against the fake platform with per-request latency.

For each size N (BENCH_SIZES, default "100 1000 10000"):
  * generate N Querying orders (bench/gen_scenario.py), start the fake with
    --latency-ms L and a counting SMTP sink (aiosmtpd);
  * cold cycle: `partnerd --once` on an empty state directory;
  * warm cycle: `partnerd --once` again on the same state, nothing new;
  * per cycle: wall time, requests and response bytes (the fake's --log),
    peak RSS and CPU time (wait4 rusage of the partnerd child), and the
    lower bound of the request dependency chain at parallelism C;
  * the sequential reference client (bench/seqclient.py) on a fresh fake.
After the largest size, the idle daemon: partnerd in daemon mode (10min
poll), after its first cycle CPU time and context switches over
BENCH_IDLE_SECONDS.

Environment: PARTNERD_BIN, FAKEPLATFORM_BIN (required); BENCH_SIZES,
BENCH_LATENCY_MS (20), BENCH_PARALLEL (16), BENCH_IDLE_SECONDS (60, 0 = skip),
BENCH_SEQ (1; 0 = skip the sequential client), BENCH_SEQ_WARM (0; 1 = also
time the client's second pass, the warm job), BENCH_OUT (directory for
results.md/results.json, default build/bench), BENCH_KEEP (1 = keep the
temporary directory), BENCH_UPDATE_README (1 = replace the table in
bench/README.md).
"""
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import gen_scenario  # noqa: E402

PY = "/usr/bin/python3"


def env_int(name, default):
    v = os.environ.get(name, "")
    try:
        return int(v) if v.strip() else default
    except ValueError:
        sys.exit("bench: %s must be an integer, not %r" % (name, v))


def die(msg):
    sys.stderr.write("bench: %s\n" % msg)
    sys.exit(1)


def log(msg):
    sys.stderr.write("bench: %s\n" % msg)
    sys.stderr.flush()


def wait_file(path, proc, what, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with open(path) as f:
                s = f.read().strip()
            if s:
                return s
        if proc.poll() is not None:
            die("%s exited with %d before it was ready" % (what, proc.returncode))
        time.sleep(0.02)
    die("%s not ready after %d s" % (what, timeout))


def stop(proc, timeout=10):
    if proc and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Fake:
    """One fakeplatform process with latency and a request log file."""

    def __init__(self, binary, scenario, tmp, latency):
        self.dir = tempfile.mkdtemp(prefix="fake-", dir=tmp)
        self.log = os.path.join(self.dir, "requests.log")
        port_file = os.path.join(self.dir, "port")
        self.out = open(os.path.join(self.dir, "fake.out"), "w")
        self.proc = subprocess.Popen([binary, "--scenario", scenario, "--port-file", port_file,
                                      "--log", self.log, "--latency-ms", str(latency)],
                                     stdout=self.out, stderr=subprocess.STDOUT)
        self.port = int(wait_file(port_file, self.proc, "fakeplatform", 120))
        self.base = "http://127.0.0.1:%d" % self.port

    def mark(self):
        """Offset in the request log, to count what happens after it."""
        return os.path.getsize(self.log) if os.path.exists(self.log) else 0

    def records(self, since):
        out = []
        if not os.path.exists(self.log):
            return out
        with open(self.log, "rb") as f:
            f.seek(since)
            for line in f:
                if line.strip():
                    out.append(json.loads(line))
        return out

    def get(self, path):
        with urllib.request.urlopen(self.base + path, timeout=30) as r:
            return json.loads(r.read())

    def close(self):
        stop(self.proc)
        self.out.close()


class Sink:
    """The SMTP sink (bench/smtpsink.py, aiosmtpd) as a child process."""

    def __init__(self, tmp):
        d = tempfile.mkdtemp(prefix="smtp-", dir=tmp)
        self.count_file = os.path.join(d, "count")
        port_file = os.path.join(d, "port")
        open(self.count_file, "w").close()
        self.proc = subprocess.Popen([PY, os.path.join(HERE, "smtpsink.py"), port_file,
                                      self.count_file])
        self.port = int(wait_file(port_file, self.proc, "smtp sink"))

    def count(self):
        with open(self.count_file) as f:
            return sum(1 for _ in f)

    def subjects(self, since):
        """Subjects of the mails received after the first `since` ones."""
        with open(self.count_file) as f:
            lines = f.read().splitlines()[since:]
        return [line.split(" ", 2)[2] if line.count(" ") >= 2 else "" for line in lines]

    def close(self):
        stop(self.proc)


# The kind of a mail from the shipped subjects (config/templates/*.subject).
MAIL_KINDS = (("Action needed:", "request"), ("Reminder ", "reminder"),
              ("Final notice:", "final-warning"), ("Relationship accepted:", "confirmation"),
              ("Please accept ", "draft-warning"), ("[partnerd]", "ops-notice"))
DOMAIN_RE = re.compile(r"customer(\d{5})\.onmicrosoft\.com")


def mail_tally(subjects):
    """Mails by kind, and the request mails split by whom they went to:
    customers still pending (distinct) and customers that had accepted
    before the cycle (must be 0)."""
    kinds, pending, accepted = {}, set(), 0
    for subj in subjects:
        kind = next((k for prefix, k in MAIL_KINDS if subj.startswith(prefix)), "other")
        kinds[kind] = kinds.get(kind, 0) + 1
        m = DOMAIN_RE.search(subj)
        if kind == "request" and m:
            c = int(m.group(1))
            if gen_scenario.is_accepted(c):
                accepted += 1
            else:
                pending.add(c)
    return {"by_kind": kinds, "request_pending_customers": len(pending),
            "request_to_accepted": accepted}


def classify(rec):
    m, p = rec.get("method"), rec.get("path") or ""
    if p.startswith("/public/v1/commerce/orders"):
        rest = p[len("/public/v1/commerce/orders"):].strip("/")
        if not rest:
            return "page"
        if rest.endswith("/template"):
            return "template"
        if rest.endswith("/process") and m == "POST":
            return "process"
        if "/" not in rest and m == "GET":
            return "reread"
        return "other"
    if "/oauth2/" in p:
        return "token"
    if p.startswith("/v1/customers"):
        return "check"
    if p.startswith("/public/v1/accounts/buyers"):
        return "buyer"
    return "other"


def count_kinds(records):
    k = {}
    for r in records:
        c = classify(r)
        k[c] = k.get(c, 0) + 1
    return k


def lower_bound(kinds, latency_ms, c):
    """Seconds the request dependency chain needs at parallelism c: the first
    page, the other pages, the templates, the token, the customer checks, the
    re-reads before Process and the Process calls, phase after phase.  The
    re-read GET of each order before its POST is its own term: it is a
    second round trip on every Process chain."""
    def rounds(n):
        return math.ceil(n / c) if n > 0 else 0
    p = kinds.get("page", 0)
    r = (1 if p else 0) + rounds(p - 1) + rounds(kinds.get("template", 0)) + \
        kinds.get("token", 0) + rounds(kinds.get("check", 0)) + \
        rounds(kinds.get("reread", 0)) + rounds(kinds.get("process", 0)) + \
        rounds(kinds.get("buyer", 0))
    return r * latency_ms / 1000.0


def write_secret(path, value):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value)


def templates_dir(pd_bin):
    """The shipped mail templates of the tree partnerd was built in (the
    binary is {src}/build/partnerd), else of this tree."""
    for d in (os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(pd_bin))), "config",
                           "templates"), os.path.join(SRC, "config", "templates")):
        if os.path.isdir(d):
            return d
    return None


def write_config(dirpath, sc, fake, sink, state_dir, parallel, templates, poll="10min"):
    write_secret(os.path.join(dirpath, "marketplace-token"), sc["marketplace"]["token"])
    write_secret(os.path.join(dirpath, "partner-center-secret"), sc["microsoft"]["client_secret"])
    conf = os.path.join(dirpath, "partnerd.conf")
    with open(conf, "w") as f:
        f.write("[marketplace]\nurl = %s/public/v1\ntoken_file = marketplace-token\n"
                "poll_interval = %s\n\n" % (fake.base, poll))
        f.write("[microsoft]\nlogin_url = %s\napi_url = %s/v1\ntenant = %s\nclient_id = %s\n"
                "client_secret_file = partner-center-secret\n\n"
                % (fake.base, fake.base, sc["microsoft"]["tenant"], sc["microsoft"]["client_id"]))
        f.write("[mail]\nsmtp_url = smtp://127.0.0.1:%d\n"
                "from = CSP orders <partnerd@softwareone.example>\n"
                "to = admin1@example.test, admin2@example.test\n" % sink.port)
        if templates:
            f.write("templates = %s\n" % templates)
        f.write("\n[daemon]\nstate_dir = %s\nmax_parallel = %d\n" % (state_dir, parallel))
    return conf


def child_env(notify_socket=None):
    env = {k: v for k, v in os.environ.items()
           if k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM", "WATCHDOG_USEC", "WATCHDOG_PID",
                        "LISTEN_FDS", "LISTEN_PID", "CREDENTIALS_DIRECTORY", "STATE_DIRECTORY")}
    if notify_socket:
        env["NOTIFY_SOCKET"] = notify_socket
    return env


def spawn_helper(tmp):
    """bench/spawn.c: runs partnerd and reports its wait4() rusage.  Built by
    `make bench` (BENCH_SPAWN_BIN); otherwise compiled here with $CC."""
    b = os.environ.get("BENCH_SPAWN_BIN")
    if b:
        if not os.access(b, os.X_OK):
            die("BENCH_SPAWN_BIN %s is not an executable" % b)
        return b
    b = os.path.join(tmp, "bench-spawn")
    cc = os.environ.get("CC") or "cc"
    r = subprocess.run([cc, "-O2", "-o", b, os.path.join(HERE, "spawn.c")])
    if r.returncode != 0:
        die("cannot build bench/spawn.c with %s" % cc)
    return b


def run_once(spawn, pd_bin, conf, stderr_path):
    """partnerd --once under bench-spawn: wall time and the child's rusage.
    Not forked from this process: see bench/spawn.c for why."""
    out = stderr_path + ".rusage"
    with open(stderr_path, "w") as err:
        subprocess.run([spawn, out, pd_bin, "--config", conf, "--once"],
                       stdout=subprocess.DEVNULL, stderr=err, env=child_env(), check=True)
    with open(out) as f:
        r = json.load(f)
    r["cpu"] = r["utime"] + r["stime"]
    return r


def measure_cycle(name, spawn, pd_bin, conf, fake, sink, tmp, latency, parallel):
    mark, mails0 = fake.mark(), sink.count()
    res = run_once(spawn, pd_bin, conf, os.path.join(tmp, "partnerd-%s.err" % name))
    time.sleep(0.05)        # the fake writes its log line after answering
    recs = fake.records(mark)
    kinds = count_kinds(recs)
    res.update(requests=len(recs), kinds=kinds,
               bytes=sum(int(r.get("bytes") or 0) for r in recs),
               have_bytes=all("bytes" in r for r in recs),
               mails=sink.count() - mails0,
               mail_tally=mail_tally(sink.subjects(mails0)),
               lower_bound=lower_bound(kinds, latency, parallel))
    if res["exit"] != 0:
        with open(os.path.join(tmp, "partnerd-%s.err" % name)) as f:
            tail = f.read()[-3000:]
        die("partnerd %s cycle exited %d:\n%s" % (name, res["exit"], tail))
    return res


def run_seq(fake, scenario, sink):
    t0 = time.monotonic()
    out = subprocess.run([PY, os.path.join(HERE, "seqclient.py"), "--base", fake.base,
                          "--scenario", scenario, "--smtp", "127.0.0.1:%d" % sink.port,
                          "--mail-from", "script@softwareone.example",
                          "--mail-to", "admin1@example.test"],
                         stdout=subprocess.PIPE, check=True, env=child_env())
    wall = time.monotonic() - t0
    r = json.loads(out.stdout)
    r["wall"] = wall
    return r


# ---- idle daemon ----

def proc_cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        s = f.read()
    fields = s[s.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])       # utime, stime (fields 14, 15)


def proc_ctxt(pid):
    """Voluntary and involuntary context switches summed over all threads."""
    vol = nonvol = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        vol += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        nonvol += int(line.split()[1])
        except FileNotFoundError:
            pass
    return vol, nonvol


def proc_status(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return line.split(":", 1)[1].strip()
    return "?"


def measure_idle(pd_bin, sc, fake, sink, tmp, state_src, parallel, templates, seconds):
    d = tempfile.mkdtemp(prefix="idle-", dir=tmp)
    state = os.path.join(d, "state")
    shutil.copytree(state_src, state)
    conf = write_config(d, sc, fake, sink, state, parallel, templates, poll="10min")
    sock_path = os.path.join(d, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    err = open(os.path.join(d, "partnerd.err"), "w")
    proc = subprocess.Popen([pd_bin, "--config", conf], stdout=subprocess.DEVNULL, stderr=err,
                            env=child_env(sock_path))
    try:
        # READY=1, then a STATUS= line after every finished cycle
        deadline = time.monotonic() + 600
        done = False
        sock.settimeout(1.0)
        while not done and time.monotonic() < deadline:
            if proc.poll() is not None:
                die("idle daemon exited with %d" % proc.returncode)
            try:
                msg = sock.recv(4096).decode(errors="replace")
            except socket.timeout:
                continue
            done = any(line.startswith("STATUS=") and "last poll" in line
                       for line in msg.splitlines())
        if not done:
            die("idle daemon: no cycle finished within 600 s")
        time.sleep(1.0)           # let the cycle's last writes settle
        mark = fake.mark()
        t0, c0, (v0, n0) = time.monotonic(), proc_cpu_ticks(proc.pid), proc_ctxt(proc.pid)
        time.sleep(seconds)
        t1, c1, (v1, n1) = time.monotonic(), proc_cpu_ticks(proc.pid), proc_ctxt(proc.pid)
        hz = os.sysconf("SC_CLK_TCK")
        res = {"seconds": t1 - t0, "cpu": (c1 - c0) / hz, "voluntary": v1 - v0,
               "nonvoluntary": n1 - n0, "wakeups": (v1 - v0) + (n1 - n0),
               "requests": len(fake.records(mark)), "threads": proc_status(proc.pid, "Threads"),
               "vmrss": proc_status(proc.pid, "VmRSS"), "vmhwm": proc_status(proc.pid, "VmHWM")}
    finally:
        stop(proc, 15)
        err.close()
        sock.close()
    res["exit"] = proc.returncode
    return res


# ---- report ----

def fmt_bytes(n):
    return "%.1f MiB" % (n / 1048576.0) if n >= 1048576 else "%.0f KiB" % (n / 1024.0)


def kinds_str(k):
    order = ["page", "template", "token", "check", "reread", "process", "buyer", "other"]
    short = {"page": "P", "template": "T", "token": "tok", "check": "K", "reread": "RR",
             "process": "R", "buyer": "B", "other": "?"}
    return " ".join("%s=%d" % (short[x], k[x]) for x in order if k.get(x))


def report(results, idle, cfg):
    L, C = cfg["latency"], cfg["parallel"]
    out = []
    out.append("Fake latency L = %d ms per request, parallelism C = %d (max_parallel); "
               "fake parallel check: %s. Machine: %s CPUs, load average %s at the start, "
               "%s at the end." % (L, C, cfg["parallel_check"], os.cpu_count(), cfg["load_start"],
                                   cfg["load_end"]))
    out.append("")
    out.append("| N | run | wall | requests | bytes recv | peak RSS | CPU (u+s) | lower bound | "
               "wall / bound | seq / wall |")
    out.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        n = r["n"]
        seq = r.get("seq")
        for name in ("cold", "warm"):
            c = r[name]
            ratio = c["wall"] / c["lower_bound"] if c["lower_bound"] else float("nan")
            seqr = "%.0fx" % (seq["wall"] / c["wall"]) if seq else "-"
            if name == "warm" and r.get("seq_warm"):
                seqr = "%.0fx (warm job %.0fx)" % (seq["wall"] / c["wall"],
                                                     r["seq_warm"]["wall"] / c["wall"])
            out.append("| %d | partnerd %s%s | %.2f s | %d | %s | %.1f MiB | %.2f s | %.2f s | %.2fx | %s |"
                       % (n, name, "" if c["exit"] == 0 else " (exit %d!)" % c["exit"], c["wall"],
                          c["requests"], fmt_bytes(c["bytes"]) if c["have_bytes"] else "n/a",
                          c["maxrss_kib"] / 1024.0, c["cpu"], c["lower_bound"], ratio, seqr))
        if seq:
            out.append("| %d | sequential script | %.2f s | %d | | | | | | 1x |"
                       % (n, seq["wall"], seq["requests"]))
        if r.get("seq_warm"):
            sw = r["seq_warm"]
            out.append("| %d | sequential, 2nd pass | %.2f s | %d | | | | | | |"
                       % (n, sw["wall"], sw["requests"]))
    out.append("")
    out.append("Requests by kind (P pages, T templates, tok token, K customer checks, RR re-reads "
               "before Process, R Process calls), and what the cycle did:")
    out.append("")
    out.append("| N | run | requests by kind | mails sent | mails by kind | requests to pending / "
               "accepted customers | orders Processing | expected |")
    out.append("|---:|---|---|---:|---|---:|---:|---|")
    for r in results:
        e = r["expected"]
        for name in ("cold", "warm"):
            c = r[name]
            exp = ("%d Process; one request to each of %d pending customers, none to the %d "
                   "accepted ones" % (e["process"], e["pending"], e["accepted"])
                   if name == "cold"
                   else "0 templates, 0 Process, 0 mails")
            t = c["mail_tally"]
            out.append("| %d | %s | %s | %d | %s | %d / %d | %s | %s |"
                       % (r["n"], name, kinds_str(c["kinds"]), c["mails"],
                          " ".join("%s=%d" % kv for kv in sorted(t["by_kind"].items())) or "-",
                          t["request_pending_customers"], t["request_to_accepted"],
                          r["processed"] if name == "cold" else "", exp))
        if r.get("seq"):
            out.append("| %d | sequential | %s | %d | | | %d | |" % (r["n"], " ".join(
                "%s=%d" % kv for kv in sorted(r["seq"]["by_kind"].items())), r["seq"]["mails"],
                r["seq"]["processed"]))
    out.append("")
    out.append("Lower bound = L x (1 + ceil((P-1)/C) + ceil(T/C) + tok + ceil(K/C) + ceil(RR/C) "
               "+ ceil(R/C)): the phases run one after another; Process is preceded by a re-read "
               "GET of the order, counted as its own term (RR).")
    if idle:
        out.append("")
        out.append("Idle daemon (N = %d, daemon mode, poll_interval 10min, after its first cycle) "
                   "over %.0f s: CPU %.2f s, wake-ups (context switches, all threads) %d "
                   "(%d voluntary, %d involuntary), requests %d, threads %s, VmRSS %s, VmHWM %s."
                   % (idle["n"], idle["seconds"], idle["cpu"], idle["wakeups"], idle["voluntary"],
                      idle["nonvoluntary"], idle["requests"], idle["threads"], idle["vmrss"],
                      idle["vmhwm"]))
    return "\n".join(out) + "\n"


def parallel_check(fake_bin, tmp, latency):
    """32 concurrent requests against the fake: with latency L they must take
    about L, not 32 x L (the fake must not serialise requests)."""
    sc = os.path.join(tmp, "tiny.json")
    with open(sc, "w") as f:
        json.dump(gen_scenario.generate(5), f)
    fake = Fake(fake_bin, sc, tmp, latency)
    try:
        tok = gen_scenario.generate(1)["marketplace"]["token"]
        url = fake.base + "/public/v1/commerce/orders/%s/template" % gen_scenario.order_id(0)
        import threading
        errors = []

        def one():
            try:
                req = urllib.request.Request(url, headers={"Authorization": "Bearer " + tok})
                urllib.request.urlopen(req, timeout=30).read()
            except Exception as e:      # noqa: BLE001 - reported below
                errors.append(e)
        ts = [threading.Thread(target=one) for _ in range(32)]
        t0 = time.monotonic()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        ms = (time.monotonic() - t0) * 1000
    finally:
        fake.close()
    if errors:
        die("fake parallel check failed: %s" % errors[0])
    serial = 32 * latency
    if latency and ms > serial / 2:
        die("the fake serialises requests: 32 requests took %.0f ms (serial: %d ms)" % (ms, serial))
    return "32 concurrent requests in %.0f ms (serial would be %d ms)" % (ms, serial)


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def update_readme(table):
    path = os.path.join(HERE, "README.md")
    begin, end = "<!-- bench-results-begin -->", "<!-- bench-results-end -->"
    with open(path) as f:
        s = f.read()
    if begin not in s or end not in s:
        log("README.md has no result markers; not updated")
        return
    head, rest = s.split(begin, 1)
    _, tail = rest.split(end, 1)
    with open(path + ".tmp", "w") as f:
        f.write(head + begin + "\n" + table + end + tail)
    os.rename(path + ".tmp", path)


def main():
    pd_bin = os.environ.get("PARTNERD_BIN") or os.path.join(SRC, "build", "partnerd")
    fake_bin = os.environ.get("FAKEPLATFORM_BIN") or os.path.join(SRC, "build", "fakeplatform")
    for b in (pd_bin, fake_bin):
        if not os.access(b, os.X_OK):
            die("%s is not an executable (set PARTNERD_BIN / FAKEPLATFORM_BIN)" % b)
    try:
        sizes = [int(x) for x in os.environ.get("BENCH_SIZES", "100 1000 10000").replace(",", " ").split()]
    except ValueError:
        die("BENCH_SIZES must be a list of integers")
    if not sizes or min(sizes) < 1:
        die("BENCH_SIZES must name sizes >= 1")
    latency = env_int("BENCH_LATENCY_MS", 20)
    parallel = env_int("BENCH_PARALLEL", 16)
    idle_s = env_int("BENCH_IDLE_SECONDS", 60)
    do_seq = env_int("BENCH_SEQ", 1) != 0
    seq_warm = env_int("BENCH_SEQ_WARM", 0) != 0
    outdir = os.environ.get("BENCH_OUT") or os.path.join(SRC, "build", "bench")
    os.makedirs(outdir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="partnerd-bench-")
    t_start = time.monotonic()
    cfg = {"latency": latency, "parallel": parallel, "load_start": loadavg()}
    templates = templates_dir(pd_bin)
    results, idle = [], None
    try:
        spawn = spawn_helper(tmp)
        cfg["parallel_check"] = parallel_check(fake_bin, tmp, latency)
        log(cfg["parallel_check"])
        for i, n in enumerate(sizes):
            last = i == len(sizes) - 1
            d = os.path.join(tmp, "n%d" % n)
            os.makedirs(d)
            sc = gen_scenario.generate(n)
            scenario = os.path.join(d, "scenario.json")
            with open(scenario, "w") as f:
                json.dump(sc, f, separators=(",", ":"))
            r = {"n": n, "expected": gen_scenario.expected(n)}
            fake, sink = Fake(fake_bin, scenario, d, latency), Sink(d)
            try:
                state = os.path.join(d, "state")
                conf = write_config(d, sc, fake, sink, state, parallel, templates)
                log("N=%d: cold cycle" % n)
                r["cold"] = measure_cycle("cold", spawn, pd_bin, conf, fake, sink, d, latency, parallel)
                log("N=%d: cold %.2f s, %d requests" % (n, r["cold"]["wall"], r["cold"]["requests"]))
                r["processed"] = sum(1 for o in fake.get("/_fake/orders")
                                     if o.get("status") == "Processing")
                r["warm"] = measure_cycle("warm", spawn, pd_bin, conf, fake, sink, d, latency, parallel)
                log("N=%d: warm %.2f s, %d requests" % (n, r["warm"]["wall"], r["warm"]["requests"]))
                if last and idle_s > 0:
                    log("N=%d: idle daemon for %d s" % (n, idle_s))
                    idle = measure_idle(pd_bin, sc, fake, sink, d, state, parallel, templates,
                                        idle_s)
                    idle["n"] = n
            finally:
                fake.close()
                sink.close()
            if do_seq:
                fake, sink = Fake(fake_bin, scenario, d, latency), Sink(d)
                try:
                    log("N=%d: sequential client (about %.0f s)"
                        % (n, (n * 1.35 + n / 100) * (latency + 1.5) / 1000))
                    r["seq"] = run_seq(fake, scenario, sink)
                    log("N=%d: sequential %.2f s" % (n, r["seq"]["wall"]))
                    if seq_warm:
                        r["seq_warm"] = run_seq(fake, scenario, sink)
                        log("N=%d: sequential 2nd pass %.2f s" % (n, r["seq_warm"]["wall"]))
                finally:
                    fake.close()
                    sink.close()
            results.append(r)
    finally:
        if os.environ.get("BENCH_KEEP") == "1":
            log("kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    cfg["load_end"] = loadavg()
    table = report(results, idle, cfg)
    with open(os.path.join(outdir, "results.md"), "w") as f:
        f.write(table)
    with open(os.path.join(outdir, "results.json"), "w") as f:
        json.dump({"config": cfg, "results": results, "idle": idle}, f, indent=1)
    if os.environ.get("BENCH_UPDATE_README") == "1":
        update_readme(table)
    sys.stdout.write(table)
    log("done in %.0f s; results in %s" % (time.monotonic() - t_start, outdir))
    bad = [r["n"] for r in results if r["cold"]["exit"] or r["warm"]["exit"]]
    for r in results:
        t, e = r["cold"]["mail_tally"], r["expected"]
        if (t["request_to_accepted"] or t["request_pending_customers"] != e["pending"] or
                t["by_kind"].get("request", 0) != e["pending"]):
            log("N=%d: cold cycle sent %d request mails to %d pending customers and %d to accepted "
                "ones; expected one to each of %d pending customers and none to accepted ones"
                % (r["n"], t["by_kind"].get("request", 0), t["request_pending_customers"],
                   t["request_to_accepted"], e["pending"]))
            bad.append(r["n"])
    return 1 if bad or (idle and idle.get("exit")) else 0


if __name__ == "__main__":
    sys.exit(main())
