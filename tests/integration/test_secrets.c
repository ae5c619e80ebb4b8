/* SPDX-License-Identifier: MIT */
/*
 * Secrets and hostile input: the end-to-end flow with recognisable secrets
 * (Marketplace token, Partner Center client secret, SMTP password), and
 * every output searched for them: partnerd's stdout/stderr (normal,
 * --verbose, --dry-run, --check-config with errors, daemon mode), every
 * file of the state directory, the received mails, /proc/<pid>/cmdline and
 * environ of the running daemon.  Also: a secret file readable by others is
 * warned about; state.json is 0600 in a 0700 directory; a relationship URL
 * on a host not in the allow-list is never emailed and is logged; http://
 * to a non-loopback host is a configuration error (78); a 100000-deep JSON
 * array from the platform is rejected without exhausting memory or stack.
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <cmocka.h>

#include <jansson.h>

#include "harness.h"
#include "invariants.h"
#include "pdrun.h"
#include "smtp.h"
#include "util.h"

#define SERIES          5001
#define RUN_TIMEOUT_MS  90000
#define SECRET_MKT      "SECRET-MKT-7f3a9"
#define SECRET_PC       "SECRET-PC-2b8c1"
#define SECRET_SMTP     "SECRET-SMTP-9d0e4"
#define SMTP_USER       "partnerd-mailer"
#define EVIL_LOOKALIKE  "https://admin.microsoft.com.evil.example/Adminportal/Home?invType=ResellerRelationship" \
                        "&partnerId=3b33e682-00c3-41ee-9dd2-a548adf56438#/BillingAccounts/partner-invitation"
#define EVIL_PLAIN      "https://evil.example/?invType=ResellerRelationship"

static const char *const SECRETS[] = { SECRET_MKT, SECRET_PC, SECRET_SMTP };
#define N_SECRETS (sizeof(SECRETS) / sizeof(SECRETS[0]))

enum { C_PENDING, C_ACCEPTED, C_LOOKALIKE, C_EVIL, N_CUST };

static const struct inv_customer CUST[N_CUST] = {
        /* U+202E (right-to-left override) .. U+202C, U+200B: never mailed */
        [C_PENDING] = { .name = "Pending \xe2\x80\xae" "Secret\xe2\x80\xac Lt\xe2\x80\x8b" "d", .domain = "pending-secret.onmicrosoft.com",
                        .tenant_id = "5a5a5a5a-0000-4000-8000-000000000001", .n_querying = 1, .n_draft = 1 },
        [C_ACCEPTED] = { .name = "Accepted Secret Inc", .domain = "accepted-secret.onmicrosoft.com",
                         .tenant_id = "5b5b5b5b-0000-4000-8000-000000000002", .n_querying = 1, .accepted = true },
        [C_LOOKALIKE] = { .name = "Lookalike Phish AG", .domain = "lookalike-phish.onmicrosoft.com",
                          .tenant_id = "5c5c5c5c-0000-4000-8000-000000000003", .n_querying = 1,
                          .url = EVIL_LOOKALIKE },
        [C_EVIL] = { .name = "Plain Phish SA", .domain = "plain-phish.onmicrosoft.com",
                     .tenant_id = "5d5d5d5d-0000-4000-8000-000000000004", .n_querying = 1, .url = EVIL_PLAIN },
};

struct env {
        struct inv_world w;
        size_t leaks;
};

static int setup(void **state) {
        struct env *e = calloc(1, sizeof(*e));
        json_t *sc = inv_scenario_new(CUST, N_CUST, SERIES);
        int r = -1;
        *state = e;
        if (!e || !sc)
                goto out;
        json_object_set_new(json_object_get(sc, "marketplace"), "token", json_string(SECRET_MKT));
        json_object_set_new(json_object_get(sc, "microsoft"), "client_secret", json_string(SECRET_PC));
        struct harness_smtp_options so = { .auth = SMTP_USER ":" SECRET_SMTP };
        struct harness_pd_options po = {
                .ops = "ops@example.test",
                .mail_extra = "username = " SMTP_USER "\npassword_file = smtp-password\n",
        };
        r = inv_world_start(&e->w, sc, NULL, &so, &po);
        if (r >= 0) {
                char *p = NULL;
                r = asprintf(&p, "%s/smtp-password", e->w.pd->creds) < 0 ? -ENOMEM
                    : util_write_file_atomic(p, SECRET_SMTP, strlen(SECRET_SMTP), 0600);
                free(p);
        }
out:
        json_decref(sc);
        return r < 0 ? -1 : 0;
}

static int teardown(void **state) {
        struct env *e = *state;
        if (e)
                inv_world_stop(&e->w);
        free(e);
        return 0;
}

/* Counts secrets (and bearer credentials) in data; names where. */
static void scan(struct env *e, const char *where, const char *data, size_t len) {
        static const char *const extra[] = { "Bearer ", "Authorization:" };
        if (!data)
                return;
        for (size_t i = 0; i < N_SECRETS + 2; i++) {
                const char *needle = i < N_SECRETS ? SECRETS[i] : extra[i - N_SECRETS];
                if (memmem(data, len, needle, strlen(needle))) {
                        fprintf(stderr, "secrets: found \"%s\" in %s\n", needle, where);
                        e->leaks++;
                }
        }
}

static void scan_file(struct env *e, const char *path) {
        char *data = NULL;
        size_t len = 0;
        if (util_read_file(path, 64u << 20, &data, &len) >= 0)
                scan(e, path, data, len);
        free(data);
}

/* Every regular file under dir. */
static size_t scan_tree(struct env *e, const char *dir) {
        DIR *d = opendir(dir);
        struct dirent *de;
        size_t n = 0;
        while (d && (de = readdir(d))) {
                char *p = NULL;
                struct stat st;
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
                    asprintf(&p, "%s/%s", dir, de->d_name) < 0)
                        continue;
                if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
                        n += scan_tree(e, p);
                else if (S_ISREG(st.st_mode)) {
                        scan_file(e, p);
                        n++;
                }
                free(p);
        }
        if (d)
                closedir(d);
        return n;
}

static void scan_run(struct env *e, int run) {
        char where[64];
        for (int err = 0; err < 2; err++) {
                char *s = harness_pd_output(e->w.pd, run, err);
                snprintf(where, sizeof(where), "run %d %s", run, err ? "stderr" : "stdout");
                scan(e, where, s, s ? strlen(s) : 0);
                free(s);
        }
}

static int run_args(struct env *e, const char *const *args) {
        int status = -1;
        assert_int_equal(harness_pd_run(e->w.pd, args, RUN_TIMEOUT_MS, &status), 0);
        scan_run(e, e->w.pd->runs);
        return status;
}

static char *run_err(struct env *e) {
        return harness_pd_output(e->w.pd, e->w.pd->runs, true);
}

static void write_conf(const char *path, const char *text) {
        assert_int_equal(util_write_file_atomic(path, text, strlen(text), 0644), 0);
}

/* Reads /proc/pid/<what> (NUL-separated) into a scan. */
static void scan_proc(struct env *e, pid_t pid, const char *what) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/%s", (int) pid, what);
        FILE *f = fopen(path, "r");
        if (!f && errno == EACCES && geteuid() != 0) {
                /* partnerd is not dumpable: its environ is root's */
                fprintf(stderr, "secrets: %s not readable by uid %d (not dumpable)\n", path, (int) geteuid());
                return;
        }
        assert_non_null(f);
        char buf[65536];
        size_t n = fread(buf, 1, sizeof(buf), f);
        fclose(f);
        assert_true(n > 0);
        scan(e, path, buf, n);
}

static void test_no_secret_anywhere(void **state) {
        struct env *e = *state;
        struct stat st;
        char path[1024];

        /* the scanner finds what is there: the credentials hold all three */
        assert_int_equal(scan_tree(e, e->w.pd->creds), 3);
        assert_int_equal(e->leaks, N_SECRETS);
        e->leaks = 0;

        /* --check-config, --dry-run, a normal run, a verbose run */
        assert_int_equal(run_args(e, (const char *const[]) { "--check-config", NULL }), 0);
        assert_int_equal(run_args(e, (const char *const[]) { "--once", "--dry-run", "--verbose", NULL }), 0);
        assert_int_equal(run_args(e, (const char *const[]) { "--once", NULL }), 0);
        assert_int_equal(harness_fake_accept(&e->w.fake, CUST[C_PENDING].tenant_id), 0);
        assert_int_equal(run_args(e, (const char *const[]) { "--once", "--verbose", NULL }), 0);
        assert_int_equal(run_args(e, (const char *const[]) { "status", "--json", NULL }), 0);
        assert_int_equal(run_args(e, (const char *const[]) { "status", NULL }), 0);

        /* the flow happened, with SMTP AUTH */
        size_t mails = harness_smtp_count(e->w.smtp);
        assert_true(mails >= 3);
        for (size_t i = 0; i < mails; i++) {
                size_t len = 0;
                char *raw = harness_smtp_raw(e->w.smtp, i, &len), where[64];
                json_t *m = harness_smtp_parse(e->w.smtp, i);
                snprintf(where, sizeof(where), "mail %zu", i);
                scan(e, where, raw, len);
                assert_non_null(m);
                const char *user = json_string_value(json_object_get(json_object_get(m, "envelope"), "auth_user"));
                assert_non_null(user);
                assert_string_equal(user, SMTP_USER);
                /* phishing URLs are never mailed, whatever the kind */
                assert_null(memmem(raw, len, "evil.example", 12));
                json_decref(m);
                free(raw);
        }
        /* the processed order: one Process call (any answer: the realism
         * switch may resume it just before, a 409, issue 11 part 4) */
        json_t *log = harness_fake_log(&e->w.fake);
        char id[24];
        assert_int_equal(inv_process_posts(log, inv_order_id(id, SERIES, C_ACCEPTED, 0), 0), 1);
        assert_int_equal(inv_process_posts(log, inv_order_id(id, SERIES, C_PENDING, 1), 0), 0);
        json_decref(log);

        /* state: 0600 in 0700, and no secret in any file of it */
        assert_int_equal(stat(e->w.pd->state_dir, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0700);
        snprintf(path, sizeof(path), "%s/state.json", e->w.pd->state_dir);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);
        size_t files = scan_tree(e, e->w.pd->state_dir);
        assert_true(files >= 2);

        /* the running daemon: its command line and environment */
        pid_t pid = harness_pd_spawn(e->w.pd, (const char *const[]) { NULL });
        assert_true(pid > 0);
        uint64_t until = util_now_mono_ms() + 20000;
        int before = harness_fake_count(&e->w.fake, "GET", "/commerce/orders");
        while (harness_fake_count(&e->w.fake, "GET", "/commerce/orders") <= before && util_now_mono_ms() < until) {
                struct timespec ts = { .tv_nsec = 50 * 1000 * 1000 };
                nanosleep(&ts, NULL);
        }
        scan_proc(e, pid, "cmdline");
        scan_proc(e, pid, "environ");
        int status = harness_kill(pid, SIGTERM, 15000);
        assert_int_equal(status, 0);
        scan_run(e, e->w.pd->runs);

        fprintf(stderr, "secrets: %d runs, %zu mails, %zu state files scanned; %zu leaks\n", e->w.pd->runs, mails,
                files, e->leaks);
        assert_int_equal(e->leaks, 0);
}

/* Mails waiting in the outbox (the server is down) hold no secret either. */
static void test_outbox_holds_no_secret(void **state) {
        struct env *e = *state;
        harness_smtp_stop(e->w.smtp);
        e->w.smtp = NULL;
        int st = run_args(e, (const char *const[]) { "--once", NULL });
        assert_true(st == 0 || st == 1);
        int pending = inv_outbox_pending(e->w.pd->state_dir);
        assert_true(pending >= 3);
        size_t files = scan_tree(e, e->w.pd->state_dir);
        fprintf(stderr, "secrets: %d mails waiting in the outbox, %zu state files scanned; %zu leaks\n", pending,
                files, e->leaks);
        assert_int_equal(e->leaks, 0);
}

static void test_check_config_errors_hide_secrets(void **state) {
        struct env *e = *state;
        char path[1024], *conf = NULL, *base = NULL;

        assert_int_equal(util_read_file(e->w.pd->config, 1 << 20, &base, NULL), 0);
        snprintf(path, sizeof(path), "%s/bad.conf", e->w.pd->dir);
        /* secrets pasted where they do not belong: an unknown key, a bare
         * line, a value of a known key, and a broken key next to them */
        assert_true(asprintf(&conf, "%s\n[marketplace]\ntoken = %s\n%s\npoll_interval = %s\n"
                                    "[mail]\npassword = %s\n",
                             base, SECRET_MKT, SECRET_PC, SECRET_SMTP, SECRET_SMTP) >= 0);
        write_conf(path, conf);
        int st = run_args(e, (const char *const[]) { "--config", path, "--check-config", NULL });
        assert_int_equal(st, 78);
        char *err = run_err(e);
        assert_non_null(err);
        assert_non_null(strstr(err, path));   /* the errors point at the file */
        free(err);
        st = run_args(e, (const char *const[]) { "--config", path, "--once", NULL });
        assert_int_equal(st, 78);
        assert_int_equal(e->leaks, 0);
        free(conf);
        free(base);
}

static void test_secret_file_readable_by_others(void **state) {
        struct env *e = *state;
        char path[1024];
        snprintf(path, sizeof(path), "%s/marketplace-token", e->w.pd->creds);
        assert_int_equal(chmod(path, 0644), 0);
        int st = run_args(e, (const char *const[]) { "--check-config", NULL });
        assert_true(st == 0 || st == 78);
        char *err = run_err(e), *out = harness_pd_output(e->w.pd, e->w.pd->runs, false);
        size_t n = inv_count_lines(err, (const char *const[]) { "readable by others", "marketplace-token", NULL }) +
                   inv_count_lines(out, (const char *const[]) { "readable by others", "marketplace-token", NULL });
        if (n < 1)
                fprintf(stderr, "secrets: no warning in:\n%s\n%s\n", out ? out : "", err ? err : "");
        assert_true(n >= 1);
        free(err);
        free(out);
        assert_int_equal(e->leaks, 0);
}

static void test_phishing_urls_not_mailed(void **state) {
        struct env *e = *state;
        assert_int_equal(run_args(e, (const char *const[]) { "--once", NULL }), 0);
        char *err = run_err(e);
        char id[24];
        /* one warning per phishing order, naming it */
        for (size_t ci = C_LOOKALIKE; ci <= C_EVIL; ci++) {
                inv_order_id(id, SERIES, ci, 0);
                size_t n = inv_count_lines(err, (const char *const[]) { id, "not allowed", NULL });
                if (n < 1)
                        fprintf(stderr, "secrets: no URL warning for %s in:\n%s\n", id, err ? err : "");
                assert_true(n >= 1);
                assert_true(inv_find_log_line(err, 4, (const char *const[]) { id, "not allowed", NULL }, NULL, 0));
        }
        free(err);
        for (size_t i = 0; i < harness_smtp_count(e->w.smtp); i++) {
                size_t len = 0;
                char *raw = harness_smtp_raw(e->w.smtp, i, &len);
                assert_null(memmem(raw, len, "evil.example", 12));
                free(raw);
        }
        /* never processed either */
        json_t *log = harness_fake_log(&e->w.fake);
        assert_int_equal(inv_process_posts(log, inv_order_id(id, SERIES, C_LOOKALIKE, 0), 0), 0);
        assert_int_equal(inv_process_posts(log, inv_order_id(id, SERIES, C_EVIL, 0), 0), 0);
        json_decref(log);
}

static void test_plain_http_refused(void **state) {
        struct env *e = *state;
        char path[1024], *conf = NULL, *base = NULL, *p;
        static const struct {
                const char *key, *value;
        } cases[] = {
                { "url = ", "http://api.example.com/public/v1" },
                { "login_url = ", "http://login.example.com" },
                { "api_url = ", "http://api.example.com/v1" },
        };
        assert_int_equal(util_read_file(e->w.pd->config, 1 << 20, &base, NULL), 0);
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                /* replace the key's line */
                free(conf);
                conf = strdup(base);
                assert_non_null(conf);
                p = strstr(conf, cases[i].key);
                assert_non_null(p);
                while (p > conf && p[-1] != '\n')   /* "url = " also ends "login_url = " */
                        p = strstr(p + 1, cases[i].key);
                char *eol = strchr(p, '\n');
                char *next = NULL;
                assert_true(asprintf(&next, "%.*s%s%s%s", (int) (p - conf), conf, cases[i].key, cases[i].value,
                                     eol) >= 0);
                snprintf(path, sizeof(path), "%s/http-%zu.conf", e->w.pd->dir, i);
                write_conf(path, next);
                free(next);
                int st = run_args(e, (const char *const[]) { "--config", path, "--check-config", NULL });
                char *err = run_err(e);
                if (st != 78)
                        fprintf(stderr, "secrets: %s%s accepted:\n%s\n", cases[i].key, cases[i].value, err);
                assert_int_equal(st, 78);
                assert_non_null(strstr(err, path));
                free(err);
        }
        free(conf);
        free(base);
        assert_int_equal(harness_fake_count(&e->w.fake, NULL, NULL), 0);
}

/* "[[[[...]]]]" depth levels deep */
static char *deep_array(size_t depth) {
        char *s = malloc(2 * depth + 1);
        assert_non_null(s);
        memset(s, '[', depth);
        memset(s + depth, ']', depth);
        s[2 * depth] = '\0';
        return s;
}

/* The deep array as a 200 answer on routes[from..n). */
static void add_deep_faults(struct env *e, const char *const *routes, size_t from, size_t n) {
        char *deep = deep_array(100000);
        for (size_t i = from; i < n; i++) {
                json_t *f = json_pack("{s:s, s:i, s:s, s:i}", "route", routes[i], "status", 200, "body", deep,
                                      "times", 0);
                char *fj = json_dumps(f, JSON_COMPACT);
                assert_int_equal(harness_fake_fault(&e->w.fake, fj), 0);
                free(fj);
                json_decref(f);
        }
        free(deep);
}

/* One --once run; exit status and peak RSS, bounded. */
static int run_measured(struct env *e, const char *what) {
        pid_t pid = harness_pd_spawn(e->w.pd, (const char *const[]) { "--once", NULL });
        int status = -1;
        long rss = 0;
        assert_true(pid > 0);
        assert_int_equal(inv_wait_rusage(pid, RUN_TIMEOUT_MS, &status, &rss), 0);
        scan_run(e, e->w.pd->runs);
        fprintf(stderr, "secrets: 100000-deep arrays on %s: exit %d, peak RSS %ld KiB\n", what, status, rss);
        if (!inv_slow_mode())
                assert_true(rss < 64 * 1024);
        return status;
}

static void test_deep_json_rejected(void **state) {
        struct env *e = *state;
        static const char *const routes[] = { "orders", "template", "token", "customer", "process" };
        const size_t n = sizeof(routes) / sizeof(routes[0]);

        add_deep_faults(e, routes, 0, n);
        /* the list is hostile: nothing can happen, but no crash, no hang */
        assert_int_equal(run_measured(e, "the list"), 1);
        char *err = run_err(e);
        assert_true(inv_find_log_line(err, 3, (const char *const[]) { "list orders", NULL }, NULL, 0));
        free(err);

        /* the list heals; every other route still answers the deep array */
        long code = 0;
        char url[256];
        assert_int_equal(harness_http_post(harness_fake_url(&e->w.fake, "/_fake/faults/reset", url, sizeof(url)),
                                           NULL, &code, NULL), 0);
        add_deep_faults(e, routes, 1, n);
        int status = run_measured(e, "template/token/customer/process");
        assert_true(status == 0 || status == 1);
        /* nothing was processed on the strength of a hostile answer */
        char id[24];
        assert_int_equal(inv_fake_revision(&e->w.fake, inv_order_id(id, SERIES, C_PENDING, 0)), 1);
        assert_int_equal(e->leaks, 0);
}

/* ---- issue 12 items 7..14 ---- */

/* A datagram socket standing in for systemd's NOTIFY_SOCKET. */
struct notify {
        int fd;
        char path[108];
        char env[128];
};

static void notify_open(struct env *e, struct notify *n) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(n->path, sizeof(n->path), "%s/notify", e->w.pd->dir);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", n->path);
        snprintf(n->env, sizeof(n->env), "NOTIFY_SOCKET=%s", n->path);
        n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        assert_true(n->fd >= 0);
        assert_int_equal(bind(n->fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
}

/* Every datagram so far, scanned; true when one held "STATUS=" and want. */
static bool notify_scan(struct env *e, struct notify *n, const char *want) {
        char buf[4096];
        bool found = false;
        ssize_t k;
        while ((k = recv(n->fd, buf, sizeof(buf) - 1, 0)) > 0) {
                buf[k] = '\0';
                scan(e, "sd_notify", buf, (size_t) k);
                if (strstr(buf, "STATUS=") && strstr(buf, want))
                        found = true;
        }
        return found;
}

static void add_fault(struct env *e, const char *route, int status, const char *body) {
        json_t *f = json_pack("{s:s, s:i, s:s, s:i}", "route", route, "status", status, "body", body, "times", 0);
        char *fj = json_dumps(f, JSON_COMPACT);
        assert_int_equal(harness_fake_fault(&e->w.fake, fj), 0);
        free(fj);
        json_decref(f);
}

/* 12.7: servers that echo a secret in an error body.  Nothing reaches
 * stderr, STATUS= (any local user reads it with systemctl status), the
 * state directory; the quote shows [redacted] instead. */
static void test_echoed_secrets(void **state) {
        struct env *e = *state;
        struct notify n;
        notify_open(e, &n);
        add_fault(e, "orders", 400, "{\"title\":\"Bad Request\",\"detail\":\"The token " SECRET_MKT
                  " is not valid for this account\",\"status\":400}");
        const char *env[] = { n.env, NULL };
        pid_t pid = harness_pd_spawn_env(e->w.pd, (const char *const[]) { "--once", NULL }, env);
        int status = -1;
        assert_true(pid > 0);
        assert_int_equal(harness_wait(pid, RUN_TIMEOUT_MS, &status), 0);
        assert_int_equal(status, 1);
        scan_run(e, e->w.pd->runs);
        assert_true(notify_scan(e, &n, "[redacted]"));
        char *err = run_err(e);
        assert_true(inv_find_log_line(err, 3, (const char *const[]) { "list orders", "[redacted]", NULL }, NULL, 0));
        free(err);

        /* the token endpoint echoes the client secret, a 500 echoes the
         * SMTP password: the same */
        long code = 0;
        char url[256];
        assert_int_equal(harness_http_post(harness_fake_url(&e->w.fake, "/_fake/faults/reset", url, sizeof(url)),
                                           NULL, &code, NULL), 0);
        add_fault(e, "token", 401, "{\"error\":\"invalid_client\",\"error_description\":\"AADSTS7000215: Invalid "
                  "client secret provided: " SECRET_PC "\"}");
        add_fault(e, "template", 500, "internal error, password " SECRET_SMTP " rejected");
        status = run_args(e, (const char *const[]) { "--once", NULL });
        assert_true(status == 0 || status == 1);
        assert_true(notify_scan(e, &n, "") || true);
        scan_tree(e, e->w.pd->state_dir);
        fprintf(stderr, "secrets: echoed secrets: %zu leaks\n", e->leaks);
        assert_int_equal(e->leaks, 0);
        close(n.fd);
}

/* 12.10: a token file with a byte order mark and CRLF works (stripped);
 * one with a CR inside the secret is refused by --check-config, naming the
 * file. */
static void test_secret_file_bom_crlf(void **state) {
        struct env *e = *state;
        char path[1024];
        snprintf(path, sizeof(path), "%s/marketplace-token", e->w.pd->creds);
        const char bom[] = "\xef\xbb\xbf" SECRET_MKT "\r\n";
        assert_int_equal(util_write_file_atomic(path, bom, strlen(bom), 0600), 0);
        assert_int_equal(run_args(e, (const char *const[]) { "--check-config", NULL }), 0);
        assert_int_equal(run_args(e, (const char *const[]) { "--once", NULL }), 0);
        json_t *log = harness_fake_log(&e->w.fake);
        assert_true(inv_log_count(log, "GET", "/commerce/orders", 200) >= 1);
        assert_int_equal(inv_log_count(log, "GET", "/commerce/orders", 401), 0);
        json_decref(log);

        const char cr[] = "SECRET-MKT\r-7f3a9\n";
        assert_int_equal(util_write_file_atomic(path, cr, strlen(cr), 0600), 0);
        assert_int_equal(run_args(e, (const char *const[]) { "--check-config", NULL }), 78);
        char *err = run_err(e);
        assert_non_null(strstr(err, path));
        assert_non_null(strstr(err, "token_file"));
        free(err);
        assert_int_equal(e->leaks, 0);
}

/* A CONNECT proxy of ours: records what it is asked, refuses to tunnel. */
struct proxy {
        int fd;
        pthread_t th;
        volatile bool stop;
        size_t conns;
        char first[256];
        char heads[8192];
        size_t heads_len;
};

static void *proxy_main(void *arg) {
        struct proxy *p = arg;
        while (!p->stop) {
                struct pollfd pf = { .fd = p->fd, .events = POLLIN };
                if (poll(&pf, 1, 100) <= 0)
                        continue;
                int c = accept4(p->fd, NULL, NULL, SOCK_CLOEXEC);
                if (c < 0)
                        continue;
                char buf[4096];
                size_t len = 0;
                while (len < sizeof(buf) - 1) {
                        struct pollfd cf = { .fd = c, .events = POLLIN };
                        if (poll(&cf, 1, 2000) <= 0)
                                break;
                        ssize_t k = read(c, buf + len, sizeof(buf) - 1 - len);
                        if (k <= 0)
                                break;
                        len += (size_t) k;
                        buf[len] = '\0';
                        if (strstr(buf, "\r\n\r\n"))
                                break;
                }
                buf[len] = '\0';
                if (p->conns++ == 0)
                        snprintf(p->first, sizeof(p->first), "%.*s", (int) strcspn(buf, "\r\n"), buf);
                if (p->heads_len + len < sizeof(p->heads)) {
                        memcpy(p->heads + p->heads_len, buf, len);
                        p->heads_len += len;
                }
                static const char no[] = "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                (void) !write(c, no, sizeof(no) - 1);
                close(c);
        }
        return NULL;
}

static int proxy_start(struct proxy *p) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t sl = sizeof(sa);
        memset(p, 0, sizeof(*p));
        p->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(p->fd >= 0);
        assert_int_equal(bind(p->fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        assert_int_equal(listen(p->fd, 16), 0);
        assert_int_equal(getsockname(p->fd, (struct sockaddr *) &sa, &sl), 0);
        assert_int_equal(pthread_create(&p->th, NULL, proxy_main, p), 0);
        return ntohs(sa.sin_port);
}

static void proxy_stop(struct proxy *p) {
        p->stop = true;
        pthread_join(p->th, NULL);
        close(p->fd);
}

/* The config with the line starting "key = " replaced and extra appended. */
static char *conf_with(const char *base, const char *key, const char *value, const char *extra) {
        char *p = strstr(base, key), *out = NULL;
        while (p && p > base && p[-1] != '\n')
                p = strstr(p + 1, key);
        assert_non_null(p);
        const char *eol = strchr(p, '\n');
        assert_true(asprintf(&out, "%.*s%s%s%s%s", (int) (p - base), base, key, value, eol, extra) >= 0);
        return out;
}

/* 12.8: the configured proxy is the only one, for non-loopback hosts only,
 * as a CONNECT tunnel (it sees the host name, never a header or token).
 * What this cannot show on loopback: a whole exchange through the proxy
 * (the fake speaks no TLS); it shows that partnerd asks the proxy, does not
 * resolve or connect to the name itself, and sends nothing in clear. */
static void test_proxy_configured(void **state) {
        struct env *e = *state;
        struct proxy px;
        int port = proxy_start(&px);
        char *base = NULL, *conf = NULL, path[1024], extra[128];
        assert_int_equal(util_read_file(e->w.pd->config, 1 << 20, &base, NULL), 0);
        snprintf(extra, sizeof(extra), "[daemon]\nproxy = http://127.0.0.1:%d\n", port);

        /* a name that does not resolve: only the proxy can reach it */
        conf = conf_with(base, "url = ", "https://marketplace.partnerd-test.invalid/public/v1", extra);
        snprintf(path, sizeof(path), "%s/proxy.conf", e->w.pd->dir);
        write_conf(path, conf);
        free(conf);
        assert_int_equal(run_args(e, (const char *const[]) { "--config", path, "--check-config", NULL }), 0);
        assert_int_equal(run_args(e, (const char *const[]) { "--config", path, "--once", NULL }), 1);
        fprintf(stderr, "secrets: the proxy saw %zu connections, first: %s\n", px.conns, px.first);
        assert_true(px.conns >= 1);
        assert_string_equal(px.first, "CONNECT marketplace.partnerd-test.invalid:443 HTTP/1.1");
        scan(e, "what the proxy received", px.heads, px.heads_len);
        char *err = run_err(e);
        assert_true(inv_find_log_line(err, 3, (const char *const[]) { "list orders", NULL }, NULL, 0));
        assert_null(strstr(err, "resolve"));
        free(err);

        /* loopback URLs never go through it: the whole flow, no new visit */
        size_t before = px.conns;
        conf = NULL;
        assert_true(asprintf(&conf, "%s%s", base, extra) >= 0);
        write_conf(path, conf);
        free(conf);
        assert_int_equal(run_args(e, (const char *const[]) { "--config", path, "--once", NULL }), 0);
        assert_true(harness_smtp_count(e->w.smtp) >= 1);
        assert_int_equal(px.conns, before);

        /* an http:// proxy elsewhere than loopback is a configuration error */
        conf = NULL;
        assert_true(asprintf(&conf, "%s[daemon]\nproxy = http://proxy.example.com:3128\n", base) >= 0);
        write_conf(path, conf);
        free(conf);
        assert_int_equal(run_args(e, (const char *const[]) { "--config", path, "--check-config", NULL }), 78);
        err = run_err(e);
        assert_non_null(strstr(err, "[daemon] proxy"));
        free(err);
        proxy_stop(&px);
        free(base);
        assert_int_equal(e->leaks, 0);
}

/* process_vm_readv() on pid without CAP_SYS_PTRACE: EPERM when the target
 * is not dumpable, EFAULT (the address) when it is. */
static int peek_errno(pid_t pid) {
        struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
        struct __user_cap_data_struct d[2], saved[2];
        bool dropped = false;
        if (syscall(SYS_capget, &h, saved) == 0 && (saved[0].effective & (1u << CAP_SYS_PTRACE))) {
                memcpy(d, saved, sizeof(d));
                d[0].effective &= ~(1u << CAP_SYS_PTRACE);
                assert_int_equal(syscall(SYS_capset, &h, d), 0);
                dropped = true;
        }
        char byte;
        struct iovec l = { &byte, 1 }, r = { (void *) 0x1000, 1 };
        ssize_t n = process_vm_readv(pid, &l, 1, &r, 1, 0);
        int err = n < 0 ? errno : 0;
        if (dropped)
                assert_int_equal(syscall(SYS_capset, &h, saved), 0);
        return err;
}

/* 12.9: the daemon is not dumpable: no core, no ptrace or /proc/PID/mem
 * by another process of its user. */
static void test_not_dumpable(void **state) {
        struct env *e = *state;
        /* the check itself: a dumpable process of ours is readable */
        pid_t sleeper = fork();
        assert_true(sleeper >= 0);
        if (sleeper == 0) {
                pause();
                _exit(0);
        }
        assert_int_equal(peek_errno(sleeper), EFAULT);
        (void) harness_kill(sleeper, SIGKILL, 2000);

        pid_t pid = harness_pd_spawn(e->w.pd, (const char *const[]) { NULL });
        assert_true(pid > 0);
        uint64_t until = util_now_mono_ms() + 20000;
        while (harness_fake_count(&e->w.fake, "GET", "/commerce/orders") < 1 && util_now_mono_ms() < until) {
                struct timespec ts = { .tv_nsec = 50 * 1000 * 1000 };
                nanosleep(&ts, NULL);
        }
        int err = peek_errno(pid);
        fprintf(stderr, "secrets: reading the daemon's memory: %s\n", strerror(err));
        assert_int_equal(err, EPERM);
        assert_int_equal(harness_kill(pid, SIGTERM, 15000), 0);
}

/* 12.14: the company name carries U+202E, U+202C and U+200B: the mail and
 * the log carry the name without them. */
static void test_bidi_controls_dropped(void **state) {
        struct env *e = *state;
        assert_int_equal(run_args(e, (const char *const[]) { "--once", "--verbose", NULL }), 0);
        size_t named = 0;
        for (size_t i = 0; i < harness_smtp_count(e->w.smtp); i++) {
                size_t len = 0;
                char *raw = harness_smtp_raw(e->w.smtp, i, &len);
                json_t *m = harness_smtp_parse(e->w.smtp, i);
                assert_non_null(m);
                const char *parts[] = { "subject", "text", "html" };
                for (size_t k = 0; k < 3; k++) {
                        const char *t = json_string_value(json_object_get(m, parts[k]));
                        assert_false(t && strstr(t, "\xe2\x80\xae"));
                        assert_false(t && strstr(t, "\xe2\x80\x8b"));
                        if (k == 1 && t && strstr(t, "Pending Secret Ltd"))
                                named++;
                }
                assert_null(memmem(raw, len, "\xe2\x80\xae", 3));
                assert_null(memmem(raw, len, "=E2=80=AE", 9));
                json_decref(m);
                free(raw);
        }
        fprintf(stderr, "secrets: %zu mails name \"Pending Secret Ltd\" without its format characters\n", named);
        assert_true(named >= 1);
        char *err = run_err(e);
        assert_null(strstr(err, "\xe2\x80\xae"));
        free(err);
}

/* 12.13: the orders of one poll beyond [marketplace] max_orders_bytes: the
 * poll fails naming the key; the daemon carries on. */
static void test_orders_bytes_cap(void **state) {
        struct env *e = *state;
        char *base = NULL, *conf = NULL, path[1024];
        /* every listed order answers with a 4000-byte agreement name */
        assert_int_equal(util_read_file(e->w.pd->config, 1 << 20, &base, NULL), 0);
        assert_true(asprintf(&conf, "%s[marketplace]\nmax_orders_bytes = 1M\n", base) >= 0);
        snprintf(path, sizeof(path), "%s/cap.conf", e->w.pd->dir);
        write_conf(path, conf);
        free(conf);
        /* a page with 100 large orders added in front of the real ones:
         * about 12 KB each once parsed (agreement, client and company name) */
        struct util_buf b;
        util_buf_init(&b, 8u << 20);
        char big[4001];
        memset(big, 'a', 4000);
        big[4000] = '\0';
        for (int i = 0; i < 100; i++)
                assert_int_equal(util_buf_printf(&b, "%s{\"id\":\"ORD-9000-%04d-0001\",\"status\":\"Draft\","
                                 "\"agreement\":{\"id\":\"AGR-1\",\"name\":\"%s\"},\"client\":{\"name\":\"%s\"}}",
                                 i ? "," : "", i, big, big), 0);
        json_t *f = json_pack("{s:s, s:s, s:s, s:i}", "route", "orders", "action", "inject", "body", b.data, "times", 0);
        char *fj = json_dumps(f, JSON_COMPACT);
        assert_int_equal(harness_fake_fault(&e->w.fake, fj), 0);
        free(fj);
        json_decref(f);
        util_buf_free(&b);

        assert_int_equal(run_args(e, (const char *const[]) { "--config", path, "--once", NULL }), 1);
        char *err = run_err(e);
        assert_true(inv_find_log_line(err, 3, (const char *const[]) { "list orders", "max_orders_bytes", NULL }, NULL, 0));
        free(err);
        assert_int_equal(harness_smtp_count(e->w.smtp), 0);

        /* the daemon: the poll fails, the process goes on */
        pid_t pid = harness_pd_spawn(e->w.pd, (const char *const[]) { "--config", path, NULL });
        assert_true(pid > 0);
        uint64_t until = util_now_mono_ms() + 20000;
        char *out = NULL;
        while (util_now_mono_ms() < until) {
                free(out);
                out = harness_pd_output(e->w.pd, e->w.pd->runs, true);
                if (out && strstr(out, "max_orders_bytes"))
                        break;
                struct timespec ts = { .tv_nsec = 100 * 1000 * 1000 };
                nanosleep(&ts, NULL);
        }
        assert_non_null(out);
        assert_non_null(strstr(out, "max_orders_bytes"));
        free(out);
        assert_int_equal(kill(pid, 0), 0);     /* still running */
        assert_int_equal(harness_kill(pid, SIGTERM, 15000), 0);
        free(base);
}

/* GET requests of the order list (not of one order). */
static size_t list_requests(struct env *e) {
        json_t *log = harness_fake_log(&e->w.fake), *r;
        size_t i, n = 0;
        json_array_foreach(log, i, r) {
                const char *path = json_string_value(json_object_get(r, "path"));
                size_t len = path ? strlen(path) : 0;
                if (len >= 16 && strcmp(path + len - 16, "/commerce/orders") == 0)
                        n++;
        }
        json_decref(log);
        return n;
}

/* 12.11: the daemon warns about a bad order once, not every cycle. */
static void test_bad_order_warned_once(void **state) {
        struct env *e = *state;
        json_t *f = json_pack("{s:s, s:s, s:s, s:i}", "route", "orders", "action", "inject", "body",
                              "{\"id\":\"ORD-5001-9999-0001\",\"status\":\"Querying\",\"status\":\"Draft\"}",
                              "times", 0);
        char *fj = json_dumps(f, JSON_COMPACT);
        assert_int_equal(harness_fake_fault(&e->w.fake, fj), 0);
        free(fj);
        json_decref(f);
        pid_t pid = harness_pd_spawn(e->w.pd, (const char *const[]) { NULL });
        assert_true(pid > 0);
        /* poll_interval 10s: three lists take over 20 s */
        uint64_t until = util_now_mono_ms() + 40000;
        while (list_requests(e) < 3 && util_now_mono_ms() < until) {
                struct timespec ts = { .tv_nsec = 100 * 1000 * 1000 };
                nanosleep(&ts, NULL);
        }
        assert_true(list_requests(e) >= 3);
        assert_int_equal(harness_kill(pid, SIGTERM, 15000), 0);
        char *err = harness_pd_output(e->w.pd, e->w.pd->runs, true);
        size_t n = inv_count_lines(err, (const char *const[]) { "ORD-5001-9999-0001", "skipped", NULL });
        fprintf(stderr, "secrets: bad order warned %zu times in 3 cycles\n", n);
        assert_int_equal(n, 1);
        /* the others went on */
        assert_true(harness_smtp_count(e->w.smtp) >= 1);
        free(err);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_no_secret_anywhere, setup, teardown),
                cmocka_unit_test_setup_teardown(test_outbox_holds_no_secret, setup, teardown),
                cmocka_unit_test_setup_teardown(test_check_config_errors_hide_secrets, setup, teardown),
                cmocka_unit_test_setup_teardown(test_secret_file_readable_by_others, setup, teardown),
                cmocka_unit_test_setup_teardown(test_phishing_urls_not_mailed, setup, teardown),
                cmocka_unit_test_setup_teardown(test_plain_http_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_deep_json_rejected, setup, teardown),
                cmocka_unit_test_setup_teardown(test_echoed_secrets, setup, teardown),
                cmocka_unit_test_setup_teardown(test_secret_file_bom_crlf, setup, teardown),
                cmocka_unit_test_setup_teardown(test_proxy_configured, setup, teardown),
                cmocka_unit_test_setup_teardown(test_not_dumpable, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bidi_controls_dropped, setup, teardown),
                cmocka_unit_test_setup_teardown(test_orders_bytes_cap, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_order_warned_once, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
