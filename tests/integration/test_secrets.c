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
        [C_PENDING] = { .name = "Pending Secret Ltd", .domain = "pending-secret.onmicrosoft.com",
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
        /* the processed order: once */
        json_t *log = harness_fake_log(&e->w.fake);
        char id[24];
        assert_int_equal(inv_process_posts(log, inv_order_id(id, SERIES, C_ACCEPTED, 0), 200), 1);
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

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_no_secret_anywhere, setup, teardown),
                cmocka_unit_test_setup_teardown(test_outbox_holds_no_secret, setup, teardown),
                cmocka_unit_test_setup_teardown(test_check_config_errors_hide_secrets, setup, teardown),
                cmocka_unit_test_setup_teardown(test_secret_file_readable_by_others, setup, teardown),
                cmocka_unit_test_setup_teardown(test_phishing_urls_not_mailed, setup, teardown),
                cmocka_unit_test_setup_teardown(test_plain_http_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_deep_json_rejected, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
