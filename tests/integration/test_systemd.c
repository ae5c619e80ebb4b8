/* SPDX-License-Identifier: MIT */
/*
 * partnerd as a systemd service, without systemd: the real binary against
 * the fake platform and aiosmtpd, with NOTIFY_SOCKET pointing at a datagram
 * socket of ours (as systemd does for Type=notify) and the secrets in a
 * temporary CREDENTIALS_DIRECTORY.
 *
 *  ready_status_watchdog  READY=1, then a STATUS= line naming the customers
 *                         awaiting acceptance and the last poll; with
 *                         WATCHDOG_USEC=1 s a WATCHDOG=1 about every 0.5 s
 *  reload                 SIGHUP: RELOADING=1 + MONOTONIC_USEC, READY=1,
 *                         "Configuration reloaded"; an invalid file is
 *                         refused with its reason and the daemon goes on
 *                         polling with the old configuration
 *  stop / stop_mid_cycle  SIGTERM: STOPPING=1, exit 0, state file written
 *                         (in a state directory partnerd created, 0700)
 *  no_ready_*             a bad configuration (78, its reason as a "<3>"
 *                         line) or an unreadable state (1) never reports
 *                         READY=1
 *  stderr_priority_prefix without the journal every stderr line is "<N>..."
 *  waits_for_lock         another process holds the state directory: READY=1
 *                         with a STATUS= naming its PID, no poll, then the
 *                         first poll as soon as the lock is free
 *
 * Every datagram and every output is searched for the scenario's secrets.
 * The poll interval cannot go below 10 s, so the waits follow the daemon's
 * own messages and only the reload test waits for a second cycle.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <jansson.h>

#include "harness.h"
#include "pdrun.h"
#include "smtp.h"
#include "util.h"

/* Generous: under valgrind startup and a cycle take seconds. */
#define START_TIMEOUT_MS 60000
#define CYCLE_TIMEOUT_MS 60000
#define STOP_TIMEOUT_MS  30000
#define EVENT_TIMEOUT_MS 20000

/* ---- the notification socket --------------------------------------------- */

struct datagram {
        uint64_t at_us;          /* CLOCK_MONOTONIC on receipt */
        char *text;
};

struct notify {
        int fd;
        char *dir;
        char env[sizeof(((struct sockaddr_un *) 0)->sun_path) + 16];   /* "NOTIFY_SOCKET=..." */
        struct datagram *dg;
        size_t n, cap;
};

static uint64_t mono_us(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

static int notify_open(struct notify *n) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };

        *n = (struct notify) { .fd = -1 };
        n->dir = harness_tmpdir();
        if (!n->dir)
                return -ENOMEM;
        if ((size_t) snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/notify", n->dir) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        snprintf(n->env, sizeof(n->env), "NOTIFY_SOCKET=%s", sa.sun_path);
        /* CLOEXEC: the daemon must find the socket by its path, as under systemd */
        n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (n->fd < 0)
                return -errno;
        if (bind(n->fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return -errno;
        return 0;
}

static void notify_close(struct notify *n) {
        if (n->fd >= 0)
                close(n->fd);
        for (size_t i = 0; i < n->n; i++)
                free(n->dg[i].text);
        free(n->dg);
        harness_rmrf(n->dir);
        free(n->dir);
        *n = (struct notify) { .fd = -1 };
}

/* Reads what arrives within timeout_ms (0: only what is queued). */
static void notify_read(struct notify *n, int timeout_ms) {
        struct pollfd p = { .fd = n->fd, .events = POLLIN };
        char buf[4096];

        if (poll(&p, 1, timeout_ms) <= 0)
                return;
        for (;;) {
                ssize_t k = recv(n->fd, buf, sizeof(buf) - 1, 0);
                if (k < 0)
                        return;
                buf[k] = '\0';
                if (n->n == n->cap) {
                        size_t cap = n->cap ? n->cap * 2 : 64;
                        struct datagram *d = realloc(n->dg, cap * sizeof(*d));
                        assert_non_null(d);
                        n->dg = d;
                        n->cap = cap;
                }
                n->dg[n->n].at_us = mono_us();
                n->dg[n->n].text = strdup(buf);
                assert_non_null(n->dg[n->n].text);
                n->n++;
        }
}

/* The value of the first line of text starting with key ("READY=", ...),
 * up to the end of that line, in buf; NULL when there is none. */
static const char *dg_value(const char *text, const char *key, char *buf, size_t size) {
        size_t kl = strlen(key);
        for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
                if (strncmp(l, key, kl) != 0)
                        continue;
                size_t vl = strcspn(l + kl, "\n");
                snprintf(buf, size, "%.*s", (int) vl, l + kl);
                return buf;
        }
        return NULL;
}

static bool dg_has(const char *text, const char *line) {
        const char *eq = strchr(line, '=');
        char key[64], buf[512];
        assert_non_null(eq);
        snprintf(key, sizeof(key), "%.*s", (int) (eq - line + 1), line);
        return dg_value(text, key, buf, sizeof(buf)) && strcmp(buf, eq + 1) == 0;
}

typedef bool (*dg_match_fn)(const char *text, const void *arg);

static bool match_line(const char *text, const void *arg) {
        return dg_has(text, arg);
}

/* A STATUS= written after a finished poll (not "last poll never"). */
static bool match_polled_status(const char *text, const void *arg) {
        char buf[512];
        return dg_value(text, "STATUS=", buf, sizeof(buf)) && strstr(buf, "last poll ") &&
               !strstr(buf, "last poll never");
}

/* Index of the first datagram at or after from that matches, waiting up to
 * timeout_ms for it; -1 on timeout, or as soon as *pid (when not NULL and
 * > 0) has exited: then *pid is set to 0 and *ret_status to its status. */
static ssize_t notify_wait(struct notify *n, size_t from, dg_match_fn match, const void *arg, int timeout_ms,
                           pid_t *pid, int *ret_status) {
        uint64_t end = mono_us() + (uint64_t) timeout_ms * 1000u;
        for (bool last = false;; ) {
                for (size_t i = from; i < n->n; i++)
                        if (match(n->dg[i].text, arg))
                                return (ssize_t) i;
                from = n->n;
                uint64_t now = mono_us();
                if (now >= end || last)
                        return -1;
                if (pid && *pid > 0 && harness_wait(*pid, 0, ret_status) == 0) {
                        *pid = 0;
                        last = true;   /* read what it sent before exiting */
                        notify_read(n, 0);
                        continue;
                }
                uint64_t slice = end - now < 200000u ? end - now : 200000u;
                notify_read(n, (int) (slice / 1000u) + 1);
        }
}

/* Keeps reading until the monotonic clock reaches until_us. */
static void notify_read_until(struct notify *n, uint64_t until_us) {
        for (uint64_t now = mono_us(); now < until_us; now = mono_us())
                notify_read(n, (int) ((until_us - now) / 1000u) + 1);
}

static size_t notify_count(const struct notify *n, size_t from, const char *line) {
        size_t c = 0;
        for (size_t i = from; i < n->n; i++)
                c += dg_has(n->dg[i].text, line);
        return c;
}

/* ---- fixture ------------------------------------------------------------- */

struct env {
        struct harness_fake fake;
        struct harness_smtp *smtp;
        struct harness_pd *pd;
        struct notify notify;
        char *scenario;
        char *secrets[2];          /* the scenario's token and client secret */
        pid_t pid;                 /* the daemon; 0 once reaped */
        int status;                /* its exit status once reaped */
};

static int setup_env(void **state, const char *const *fake_args) {
        struct env *e = calloc(1, sizeof(*e));
        json_t *sc = NULL;

        if (!e)
                return -1;
        e->notify.fd = -1;
        *state = e;
        e->scenario = harness_src_path("tests/scenarios/basic.json");
        sc = e->scenario ? json_load_file(e->scenario, 0, NULL) : NULL;
        if (!sc)
                return -1;
        e->secrets[0] = util_strdup0(json_string_value(json_object_get(json_object_get(sc, "marketplace"), "token")));
        e->secrets[1] = util_strdup0(
                json_string_value(json_object_get(json_object_get(sc, "microsoft"), "client_secret")));
        json_decref(sc);
        if (!e->secrets[0] || !e->secrets[1])
                return -1;
        if (harness_fake_start_args(e->scenario, fake_args, &e->fake) < 0 ||
            harness_smtp_start(&(struct harness_smtp_options) { 0 }, &e->smtp) < 0)
                return -1;
        struct harness_pd_options o = {
                .fake_base = e->fake.base_url,
                .smtp_url = harness_smtp_url(e->smtp),
                .scenario = e->scenario,
                .poll_interval = "10s",
        };
        if (harness_pd_setup(&o, &e->pd) < 0 || notify_open(&e->notify) < 0)
                return -1;
        return 0;
}

static int teardown(void **state);

/* cmocka runs no teardown after a failed setup: clean up here. */
static int setup_with(void **state, const char *const *fake_args) {
        if (setup_env(state, fake_args) == 0)
                return 0;
        (void) teardown(state);
        *state = NULL;
        return -1;
}

static int setup(void **state) {
        return setup_with(state, NULL);
}

/* Every fake response takes 2 s: SIGTERM finds a cycle in flight. */
static int setup_slow(void **state) {
        static const char *const args[] = { "--latency-ms", "2000", NULL };
        return setup_with(state, args);
}

static int teardown(void **state) {
        struct env *e = *state;
        if (!e)
                return 0;
        if (e->pid > 0)
                (void) harness_kill(e->pid, SIGKILL, 5000);
        notify_close(&e->notify);
        harness_pd_free(e->pd);
        harness_smtp_stop(e->smtp);
        if (e->fake.pid > 0)
                (void) harness_fake_stop(&e->fake);
        free(e->scenario);
        free(e->secrets[0]);
        free(e->secrets[1]);
        free(e);
        return 0;
}

/* Starts partnerd with args (NULL-terminated, may be NULL) and
 * NOTIFY_SOCKET, plus WATCHDOG_USEC when watchdog_usec is not NULL. */
static void start_daemon(struct env *e, const char *const *args, const char *watchdog_usec) {
        char wd[64];
        const char *env[3] = { e->notify.env, NULL, NULL };
        if (watchdog_usec) {
                /* no WATCHDOG_PID: sd_watchdog_enabled() then trusts
                 * WATCHDOG_USEC, and the pid is unknown before the fork */
                snprintf(wd, sizeof(wd), "WATCHDOG_USEC=%s", watchdog_usec);
                env[1] = wd;
        }
        e->pid = harness_pd_spawn_env(e->pd, args, env);
        assert_true(e->pid > 0);
}

static char *stderr_of(struct env *e) {
        char *s = harness_pd_output(e->pd, e->pd->runs, true);
        return s ? s : strdup("");
}

static void dump(struct env *e, const char *why) {
        char *err = stderr_of(e);
        fprintf(stderr, "--- %s; partnerd %s %d; stderr:\n%s--- datagrams:\n", why,
                e->pid > 0 ? "running, pid" : "exited, status", e->pid > 0 ? (int) e->pid : e->status, err);
        for (size_t i = 0; i < e->notify.n; i++)
                fprintf(stderr, "[%zu] %s\n", i, e->notify.dg[i].text);
        free(err);
}

/* Waits up to timeout_ms until stderr of the current run holds needle
 * count times. */
static bool stderr_wait(struct env *e, const char *needle, size_t count, int timeout_ms) {
        uint64_t end = util_now_mono_ms() + (uint64_t) timeout_ms;
        for (;;) {
                char *err = stderr_of(e);
                size_t c = 0;
                for (const char *p = err; (p = strstr(p, needle)); p += strlen(needle))
                        c++;
                free(err);
                if (c >= count)
                        return true;
                if (util_now_mono_ms() >= end)
                        return false;
                notify_read(&e->notify, 50);   /* also keeps the socket drained */
        }
}

static ssize_t wait_line(struct env *e, size_t from, const char *line, int timeout_ms) {
        ssize_t i = notify_wait(&e->notify, from, match_line, line, timeout_ms, &e->pid, &e->status);
        if (i < 0)
                dump(e, line);
        return i;
}

static ssize_t wait_polled(struct env *e, size_t from, int timeout_ms) {
        ssize_t i = notify_wait(&e->notify, from, match_polled_status, NULL, timeout_ms, &e->pid, &e->status);
        if (i < 0)
                dump(e, "no STATUS= after a poll");
        return i;
}

static void assert_no_secret_in(struct env *e, const char *what, const char *text) {
        for (size_t k = 0; k < 2; k++)
                if (text && strstr(text, e->secrets[k])) {
                        fprintf(stderr, "a secret appears in %s\n", what);
                        fail();
                }
}

/* No datagram and no output of any run carries a secret. */
static void assert_no_secret(struct env *e) {
        for (size_t i = 0; i < e->notify.n; i++)
                assert_no_secret_in(e, "a notification", e->notify.dg[i].text);
        for (int run = 1; run <= e->pd->runs; run++)
                for (int err = 0; err < 2; err++) {
                        char *s = harness_pd_output(e->pd, run, err);
                        assert_no_secret_in(e, err ? "stderr" : "stdout", s);
                        free(s);
                }
}

static bool still_running(struct env *e) {
        if (e->pid > 0 && harness_wait(e->pid, 0, &e->status) == 0)
                e->pid = 0;
        return e->pid > 0;
}

/* SIGTERM (or SIGINT) must end the daemon with status 0. */
static void stop_daemon_with(struct env *e, int sig) {
        int status = -1;
        if (!still_running(e))
                dump(e, "exited before the stop signal");
        assert_true(e->pid > 0);
        assert_int_equal(kill(e->pid, sig), 0);
        assert_int_equal(harness_wait(e->pid, STOP_TIMEOUT_MS, &status), 0);
        e->pid = 0;
        if (status != 0)
                dump(e, "exit status not 0");
        assert_int_equal(status, 0);
}

static void stop_daemon(struct env *e) {
        stop_daemon_with(e, SIGTERM);
}

static char *state_file(struct env *e) {
        char *p = NULL;
        assert_true(asprintf(&p, "%s/state.json", e->pd->state_dir) > 0);
        return p;
}

/* ---- tests --------------------------------------------------------------- */

/* Every non-empty stderr line is "<N>..." with N in 0..7. */
static void assert_prefixed_lines(const char *err, size_t *ret_lines) {
        size_t lines = 0;
        for (const char *l = err; *l; ) {
                size_t len = strcspn(l, "\n");
                if (len > 0) {
                        if (!(len >= 3 && l[0] == '<' && l[1] >= '0' && l[1] <= '7' && l[2] == '>')) {
                                fprintf(stderr, "not a <N> line: %.*s\n", (int) len, l);
                                fail();
                        }
                        lines++;
                }
                l += len;
                if (*l == '\n')
                        l++;
        }
        *ret_lines = lines;
}

static void test_ready_status_watchdog(void **state) {
        struct env *e = *state;
        char buf[512];

        start_daemon(e, NULL, "1000000");
        ssize_t ready = wait_line(e, 0, "READY=1", START_TIMEOUT_MS);
        assert_true(ready >= 0);
        /* a STATUS= comes with READY=1 ... */
        assert_non_null(dg_value(e->notify.dg[ready].text, "STATUS=", buf, sizeof(buf)));
        /* ... and after the first poll it says what partnerd waits for:
         * basic.json has two customers whose relationship is pending */
        ssize_t polled = wait_polled(e, (size_t) ready, CYCLE_TIMEOUT_MS);
        assert_true(polled >= 0);
        assert_non_null(dg_value(e->notify.dg[polled].text, "STATUS=", buf, sizeof(buf)));
        assert_non_null(strstr(buf, "2 customers awaiting acceptance"));
        assert_non_null(strstr(buf, "0 orders processed today"));
        assert_non_null(strstr(buf, "last poll "));
        assert_true(strlen(buf) > 3 && strcmp(buf + strlen(buf) - 3, " ok") == 0);

        /* WATCHDOG=1 every WATCHDOG_USEC / 2 = 0.5 s: over 3 s after READY
         * expect 5 or 6 (at least 4); gaps below the 1 s limit that
         * would make systemd kill the service (slack under valgrind). */
        uint64_t t0 = e->notify.dg[ready].at_us, window = 3000000;
        notify_read_until(&e->notify, t0 + window);
        size_t pings = 0;
        uint64_t last = t0, max_gap = 0;
        for (size_t i = (size_t) ready; i < e->notify.n && e->notify.dg[i].at_us <= t0 + window; i++) {
                if (!dg_has(e->notify.dg[i].text, "WATCHDOG=1"))
                        continue;
                pings++;
                if (e->notify.dg[i].at_us - last > max_gap)
                        max_gap = e->notify.dg[i].at_us - last;
                last = e->notify.dg[i].at_us;
        }
        if (t0 + window - last > max_gap)
                max_gap = t0 + window - last;
        if (pings < 4 || pings > 15 || max_gap > (getenv("VALGRIND") ? 3000000u : 1000000u))
                dump(e, "watchdog pings");
        assert_true(pings >= 4);
        assert_true(pings <= 15);   /* not a ping per loop iteration */
        assert_true(max_gap <= (getenv("VALGRIND") ? 3000000u : 1000000u));
        /* READY=1 came once: nothing was reloaded */
        assert_int_equal(notify_count(&e->notify, 0, "READY=1"), 1);

        stop_daemon(e);
        assert_no_secret(e);
}

/* The current configuration with poll_interval = 1s, below the minimum,
 * and a Marketplace URL that would fail: if it were applied the next poll
 * would fail.  *ret_good is the file as it was. */
static void write_bad_config(struct env *e, char **ret_good) {
        char *good = NULL, *bad = NULL;
        size_t len = 0;
        assert_int_equal(util_read_file(e->pd->config, 1u << 20, &good, &len), 0);
        const char *p = strstr(good, "poll_interval = 10s");
        const char *u = strstr(good, "url = ");
        assert_non_null(p);
        assert_non_null(u);
        assert_true(u < p);
        assert_true(asprintf(&bad, "%.*surl = http://127.0.0.1:1/public/v1\n%.*spoll_interval = 1s%s",
                             (int) (u - good), good, (int) (p - strchr(u, '\n') - 1), strchr(u, '\n') + 1,
                             p + strlen("poll_interval = 10s")) > 0);
        assert_int_equal(util_write_file_atomic(e->pd->config, bad, strlen(bad), 0644), 0);
        free(bad);
        *ret_good = good;
}

/* SIGHUP; asserts RELOADING=1 with a MONOTONIC_USEC= taken after the
 * signal, then READY=1.  Returns the index of that READY=1. */
static size_t reload(struct env *e) {
        char buf[64], *end = NULL;
        size_t from = e->notify.n;
        uint64_t before = mono_us();

        assert_int_equal(kill(e->pid, SIGHUP), 0);
        ssize_t i = wait_line(e, from, "RELOADING=1", EVENT_TIMEOUT_MS);
        assert_true(i >= 0);
        assert_non_null(dg_value(e->notify.dg[i].text, "MONOTONIC_USEC=", buf, sizeof(buf)));
        errno = 0;
        unsigned long long usec = strtoull(buf, &end, 10);
        assert_true(errno == 0 && end != buf && *end == '\0');
        assert_true(usec >= before);
        assert_true(usec <= e->notify.dg[i].at_us);
        ssize_t ready = wait_line(e, (size_t) i + 1, "READY=1", EVENT_TIMEOUT_MS);
        assert_true(ready > i);
        return (size_t) ready;
}

static void test_reload(void **state) {
        struct env *e = *state;
        char *good = NULL;

        start_daemon(e, NULL, NULL);
        ssize_t ready = wait_line(e, 0, "READY=1", START_TIMEOUT_MS);
        assert_true(ready >= 0);
        assert_true(wait_polled(e, (size_t) ready, CYCLE_TIMEOUT_MS) >= 0);

        /* the same, valid file: reloaded (between cycles: at once) */
        reload(e);
        assert_true(stderr_wait(e, "Configuration reloaded", 1, EVENT_TIMEOUT_MS));

        /* an invalid file: refused with its reason, the old one kept */
        int polls = harness_fake_count(&e->fake, "GET", "/orders");
        assert_true(polls >= 1);
        write_bad_config(e, &good);
        size_t r2 = reload(e);
        assert_true(stderr_wait(e, "Reload failed, keeping the running configuration", 1, EVENT_TIMEOUT_MS));
        char *err = stderr_of(e);
        size_t lines = 0;
        /* FILE:LINE: message naming the key, one "<N>" line per event */
        assert_non_null(strstr(err, e->pd->config));
        assert_non_null(strstr(err, "poll_interval"));
        assert_prefixed_lines(err, &lines);
        free(err);
        assert_true(stderr_wait(e, "Configuration reloaded", 1, 0));
        assert_false(stderr_wait(e, "Configuration reloaded", 2, 0));
        assert_true(still_running(e));
        /* the next poll, 10 s after the first, still uses the old URL and
         * succeeds (the STATUS= sent with a READY=1 repeats the last poll:
         * the cycle's end is seen on stderr) */
        assert_true(stderr_wait(e, "Cycle done", 2, CYCLE_TIMEOUT_MS));
        assert_false(stderr_wait(e, "Cycle failed", 1, 0));
        assert_true(harness_fake_count(&e->fake, "GET", "/orders") > polls);
        ssize_t next = wait_polled(e, r2 + 1, EVENT_TIMEOUT_MS);
        assert_true(next >= 0);
        char buf[512];
        assert_non_null(dg_value(e->notify.dg[next].text, "STATUS=", buf, sizeof(buf)));
        assert_true(strlen(buf) > 3 && strcmp(buf + strlen(buf) - 3, " ok") == 0);

        /* the valid file again */
        assert_int_equal(util_write_file_atomic(e->pd->config, good, strlen(good), 0644), 0);
        free(good);
        reload(e);
        assert_true(stderr_wait(e, "Configuration reloaded", 2, EVENT_TIMEOUT_MS));
        assert_true(still_running(e));

        /* no WATCHDOG_USEC, no pings */
        assert_int_equal(notify_count(&e->notify, 0, "WATCHDOG=1"), 0);
        stop_daemon(e);
        assert_no_secret(e);
}

static void test_stop(void **state) {
        struct env *e = *state;
        struct stat st;

        /* no state directory yet: partnerd makes it, private */
        harness_rmrf(e->pd->state_dir);
        assert_int_not_equal(access(e->pd->state_dir, F_OK), 0);
        start_daemon(e, NULL, "2000000");
        ssize_t ready = wait_line(e, 0, "READY=1", START_TIMEOUT_MS);
        assert_true(ready >= 0);
        assert_true(wait_polled(e, (size_t) ready, CYCLE_TIMEOUT_MS) >= 0);
        size_t from = e->notify.n;
        stop_daemon(e);
        notify_read(&e->notify, 0);
        assert_true(notify_count(&e->notify, from, "STOPPING=1") >= 1);
        assert_int_equal(notify_count(&e->notify, from, "READY=1"), 0);
        assert_int_equal(stat(e->pd->state_dir, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_int_equal(st.st_mode & 07777, 0700);
        char *path = state_file(e);
        assert_int_equal(stat(path, &st), 0);
        assert_true(S_ISREG(st.st_mode) && st.st_size > 0);
        free(path);
        assert_true(stderr_wait(e, "partnerd stopped", 1, 0));
        assert_no_secret(e);
}

/* SIGINT (as SIGTERM) while requests are in flight: they get their grace
 * period, the daemon still exits 0 well within TimeoutStopSec=30s. */
static void test_stop_mid_cycle(void **state) {
        struct env *e = *state;

        start_daemon(e, NULL, NULL);
        ssize_t ready = wait_line(e, 0, "READY=1", START_TIMEOUT_MS);
        assert_true(ready >= 0);
        notify_read(&e->notify, 300);
        /* the first poll (0 s after READY) waits 2 s for the fake */
        assert_int_equal(notify_wait(&e->notify, (size_t) ready, match_polled_status, NULL, 0, NULL, NULL), -1);
        size_t from = e->notify.n;
        stop_daemon_with(e, SIGINT);
        notify_read(&e->notify, 0);
        assert_true(notify_count(&e->notify, from, "STOPPING=1") >= 1);
        assert_true(stderr_wait(e, "Received SIGINT, stopping", 1, 0));
        assert_no_secret(e);
}

/* Runs the daemon to its exit, which must come with status and without
 * READY=1; returns its stderr (malloc'd). */
static char *run_to_failure(struct env *e, int status) {
        start_daemon(e, NULL, NULL);
        assert_int_equal(harness_wait(e->pid, START_TIMEOUT_MS, &e->status), 0);
        e->pid = 0;
        if (e->status != status)
                dump(e, "unexpected exit status");
        assert_int_equal(e->status, status);
        notify_read(&e->notify, 0);
        assert_int_equal(notify_count(&e->notify, 0, "READY=1"), 0);
        assert_int_equal(harness_fake_count(&e->fake, "GET", "/orders"), 0);
        assert_no_secret(e);
        return stderr_of(e);
}

static void test_no_ready_on_config_error(void **state) {
        struct env *e = *state;
        char *good = NULL;

        write_bad_config(e, &good);
        free(good);
        char *err = run_to_failure(e, 78);
        char *line = NULL;
        size_t lines = 0;
        /* the reason, FILE:LINE: message, logged as an error like the rest */
        assert_true(asprintf(&line, "<3>%s:", e->pd->config) > 0);
        assert_non_null(strstr(err, line));
        assert_non_null(strstr(strstr(err, line), "poll_interval"));
        assert_prefixed_lines(err, &lines);
        assert_true(lines >= 2);
        free(line);
        free(err);
}

/* state.json that cannot be read (a directory): no READY=1, exit 1, and
 * the evidence is left alone. */
static void test_no_ready_on_state_error(void **state) {
        struct env *e = *state;
        struct stat st;
        char *path = state_file(e);

        assert_true(mkdir(e->pd->state_dir, 0700) == 0 || errno == EEXIST);
        assert_int_equal(mkdir(path, 0700), 0);
        char *err = run_to_failure(e, 1);
        assert_non_null(strstr(err, "state"));
        free(err);
        assert_int_equal(stat(path, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        free(path);
}

static void test_waits_for_lock(void **state) {
        struct env *e = *state;
        char *path = NULL, line[600], pid[32];

        assert_true(mkdir(e->pd->state_dir, 0700) == 0 || errno == EEXIST);
        assert_true(asprintf(&path, "%s/lock", e->pd->state_dir) > 0);
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(flock(fd, LOCK_EX | LOCK_NB), 0);
        int len = snprintf(pid, sizeof(pid), "%ld\n", (long) getpid());
        assert_int_equal(pwrite(fd, pid, (size_t) len, 0), len);
        snprintf(line, sizeof(line), "STATUS=Waiting for PID %ld, which holds the lock of %s", (long) getpid(),
                 e->pd->state_dir);

        start_daemon(e, NULL, NULL);
        ssize_t waiting = wait_line(e, 0, line, START_TIMEOUT_MS);
        assert_true(waiting >= 0);
        assert_true(wait_line(e, 0, "READY=1", START_TIMEOUT_MS) >= 0);
        notify_read(&e->notify, 2500);
        assert_int_equal(harness_fake_count(&e->fake, "GET", "/orders"), 0);
        close(fd);
        assert_true(wait_polled(e, (size_t) waiting, CYCLE_TIMEOUT_MS) >= 0);
        assert_true(harness_fake_count(&e->fake, "GET", "/orders") >= 1);
        stop_daemon(e);
        free(path);
}

static void test_stderr_priority_prefix(void **state) {
        struct env *e = *state;
        /* no JOURNAL_STREAM; then one naming another stream than our stderr */
        const char *const envs[][2] = { { NULL, NULL }, { "JOURNAL_STREAM=0:0", NULL } };

        for (size_t k = 0; k < 2; k++) {
                const char *args[] = { "--once", "--verbose", NULL };
                int status = -1;
                e->pid = harness_pd_spawn_env(e->pd, args, envs[k]);   /* teardown kills it on failure */
                assert_true(e->pid > 0);
                assert_int_equal(harness_wait(e->pid, CYCLE_TIMEOUT_MS, &status), 0);
                e->pid = 0;
                assert_int_equal(status, 0);
                char *err = stderr_of(e);
                size_t lines = 0;
                assert_prefixed_lines(err, &lines);
                assert_true(lines >= 3);
                /* started, cycle done, stopped: info, one line each */
                assert_non_null(strstr(err, "<6>partnerd "));
                assert_non_null(strstr(err, "\n<6>Cycle done"));
                assert_non_null(strstr(err, "\n<6>partnerd stopped\n"));
                free(err);
        }
        assert_no_secret(e);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_ready_status_watchdog, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reload, setup, teardown),
                cmocka_unit_test_setup_teardown(test_stop, setup, teardown),
                cmocka_unit_test_setup_teardown(test_stop_mid_cycle, setup_slow, teardown),
                cmocka_unit_test_setup_teardown(test_no_ready_on_config_error, setup, teardown),
                cmocka_unit_test_setup_teardown(test_no_ready_on_state_error, setup, teardown),
                cmocka_unit_test_setup_teardown(test_stderr_priority_prefix, setup, teardown),
                cmocka_unit_test_setup_teardown(test_waits_for_lock, setup, teardown),
        };
        signal(SIGPIPE, SIG_IGN);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
