/* SPDX-License-Identifier: MIT */
/*
 * test_config: partnerd.conf(5) loading — the shipped example, defaults,
 * every kind of bad input with its FILE:LINE message, secrets and their
 * resolution, and random input that must never crash the loader.
 */
#define _XOPEN_SOURCE 700
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "config.h"
#include "util.h"

struct fx {
        char dir[64];          /* holds partnerd.conf and the default secrets */
        char creds[64];        /* a CREDENTIALS_DIRECTORY, created on demand */
        char conf[512];
        struct cfg *cfg;
        struct cfg_errors err;
};

static void write_file(const char *path, const void *data, size_t len, mode_t mode) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, data, len), (ssize_t) len);
        assert_int_equal(fchmod(fd, mode), 0);
        assert_int_equal(close(fd), 0);
}

static void write_in(const char *dir, const char *name, const char *text, mode_t mode) {
        char path[256];
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        write_file(path, text, strlen(text), mode);
}

static int setup(void **state) {
        struct fx *f = calloc(1, sizeof(*f));
        assert_non_null(f);
        const char *tmp = getenv("TMPDIR");
        snprintf(f->dir, sizeof(f->dir), "%s/cfgtest-XXXXXX", tmp && strlen(tmp) < 32 ? tmp : "/tmp");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->conf, sizeof(f->conf), "%s/partnerd.conf", f->dir);
        write_in(f->dir, "marketplace-token", "mp-token-next-to-config\n", 0600);
        write_in(f->dir, "pc-secret", "pc-secret-next-to-config\n", 0600);
        write_in(f->dir, "partner-center-secret", "pc-secret-example\n", 0600);
        unsetenv("CREDENTIALS_DIRECTORY");
        unsetenv("STATE_DIRECTORY");
        *state = f;
        return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

static int teardown(void **state) {
        struct fx *f = *state;
        cfg_free(f->cfg);
        cfg_errors_clear(&f->err);
        nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        if (f->creds[0])
                nftw(f->creds, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        unsetenv("CREDENTIALS_DIRECTORY");
        unsetenv("STATE_DIRECTORY");
        free(f);
        return 0;
}

static void make_creds(struct fx *f) {
        snprintf(f->creds, sizeof(f->creds), "%s/cfgcreds-XXXXXX", "/tmp");
        assert_non_null(mkdtemp(f->creds));
        setenv("CREDENTIALS_DIRECTORY", f->creds, 1);
}

/* Writes text as the config (bytes, may hold NULs) and loads it. */
static int load_bytes(struct fx *f, const void *text, size_t len, unsigned flags) {
        f->cfg = cfg_free(f->cfg);
        cfg_errors_clear(&f->err);
        write_file(f->conf, text, len, 0644);
        int r = cfg_load(f->conf, flags, &f->cfg, &f->err);
        if (r == 0)
                assert_non_null(f->cfg);
        else
                assert_null(f->cfg);
        return r;
}

static int load(struct fx *f, const char *text) {
        return load_bytes(f, text, strlen(text), 0);
}

static void dump_errors(const struct fx *f) {
        for (size_t i = 0; i < f->err.n; i++)
                fprintf(stderr, "  error: %s\n", f->err.items[i]);
}

/* Asserts that one error is exactly "CONF:LINE: msg". */
__attribute__((format(printf, 3, 4)))
static void expect_error(const struct fx *f, unsigned line, const char *fmt, ...) {
        char msg[1024], want[2048];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        snprintf(want, sizeof(want), "%s:%u: %s", f->conf, line, msg);
        for (size_t i = 0; i < f->err.n; i++)
                if (strcmp(f->err.items[i], want) == 0)
                        return;
        fprintf(stderr, "expected error: %s\n", want);
        dump_errors(f);
        fail();
}

/* The one and only error is exactly "CONF:LINE: msg". */
#define expect_only_error(f, line, ...) do {                    \
                if ((f)->err.n != 1)                            \
                        dump_errors(f);                         \
                assert_int_equal((f)->err.n, 1);                \
                expect_error(f, line, __VA_ARGS__);             \
        } while (0)

static bool errors_mention(const struct fx *f, const char *needle) {
        for (size_t i = 0; i < f->err.n; i++)
                if (strstr(f->err.items[i], needle))
                        return true;
        return false;
}

/* Lines 1..11; tests append from line 12 (still in [mail]). */
#define BASE \
        "[marketplace]\n" \
        "url = https://mp.example.com/public/v1\n" \
        "token_file = marketplace-token\n" \
        "[microsoft]\n" \
        "tenant = contoso.onmicrosoft.com\n" \
        "client_id = 11111111-2222-3333-4444-555555555555\n" \
        "client_secret_file = pc-secret\n" \
        "[mail]\n" \
        "smtp_url = smtps://smtp.example.com:465\n" \
        "from = CSP orders <partnerd@example.com>\n" \
        "to = admin@example.com\n"

/* BASE with partner_ids for its one account (no warning). */
#define BASE_PIDS BASE "[microsoft]\npartner_ids = 3b33e682-00c3-41ee-9dd2-a548adf56438\n"

static const char *srcdir(void) {
        const char *s = getenv("TEST_SRCDIR");
        return s && *s ? s : ".";
}

static void assert_defaults(const struct cfg *c) {
        assert_int_equal(c->marketplace.poll_interval, 300);
        assert_int_equal(c->marketplace.n_products, 0);
        assert_null(c->marketplace.products);
        assert_null(c->marketplace.ca_file);
        assert_string_equal(c->marketplace.portal_url, "https://portal.platform.softwareone.com");
        assert_string_equal(c->microsoft.login_url, "https://login.microsoftonline.com");
        assert_string_equal(c->microsoft.api_url, "https://api.partnercenter.microsoft.com/v1");
        assert_string_equal(c->microsoft.graph_url, "https://graph.microsoft.com/v1.0");
        assert_null(c->microsoft.ca_file);
        assert_int_equal(c->microsoft.token_endpoint, 1);
        assert_int_equal(c->microsoft.n_check_schedule, 5);
        assert_int_equal(c->microsoft.check_schedule[0], 60);
        assert_int_equal(c->microsoft.check_schedule[1], 120);
        assert_int_equal(c->microsoft.check_schedule[2], 300);
        assert_int_equal(c->microsoft.check_schedule[3], 600);
        assert_int_equal(c->microsoft.check_schedule[4], 900);
        assert_int_equal(c->mail.transport, CFG_TRANSPORT_SMTP);
        assert_null(c->mail.username);
        assert_null(c->mail.password);
        assert_null(c->mail.password_file);
        assert_null(c->mail.ca_file);
        assert_string_equal(c->mail.sendmail_path, "/usr/sbin/sendmail");
        assert_int_equal(c->mail.n_cc, 0);
        assert_int_equal(c->mail.n_bcc, 0);
        assert_int_equal(c->mail.n_ops, 0);
        assert_false(c->mail.notify_order_contacts);
        assert_int_equal(c->mail.reminder_interval, 24 * 3600);
        assert_int_equal(c->mail.max_reminders, 5);
        assert_int_equal(c->mail.deadline, 15 * 86400);
        assert_int_equal(c->mail.deadline_warning, 3 * 86400);
        assert_null(c->mail.template_dir);
        /* the templates then come from templates/ next to the file */
        char *tdir = cfg_template_dir(c), want_tdir[4096];
        snprintf(want_tdir, sizeof(want_tdir), "%s/templates", c->dir);
        assert_non_null(tdir);
        assert_string_equal(tdir, want_tdir);
        free(tdir);
        assert_int_equal(c->mail.n_url_hosts, 2);
        assert_string_equal(c->mail.url_hosts[0], "admin.microsoft.com");
        assert_string_equal(c->mail.url_hosts[1], "admin.cloud.microsoft");
        assert_string_equal(c->daemon.state_dir, "/var/lib/partnerd");
        assert_int_equal(c->daemon.retention, 30 * 86400);
        assert_int_equal(c->daemon.max_parallel, 16);
        assert_int_equal(c->daemon.http_timeout, 60);
        assert_int_equal(c->daemon.connect_timeout, 10);
        assert_int_equal(c->daemon.max_response, 16 * 1024 * 1024);
}

/* ---- the shipped example ---- */

static void test_example_no_secrets(void **state) {
        struct fx *f = *state;
        char path[512];
        snprintf(path, sizeof(path), "%s/config/partnerd.conf.example", srcdir());
        int r = cfg_load(path, CFG_NO_SECRETS, &f->cfg, &f->err);
        if (r != 0)
                dump_errors(f);
        assert_int_equal(r, 0);
        assert_int_equal(f->err.n, 0);
        assert_null(f->cfg->marketplace.token);
        assert_null(f->cfg->microsoft.client_secret);
        /* Paths are resolved even without reading the secrets. */
        assert_non_null(strstr(f->cfg->marketplace.token_file, "/config/marketplace-token"));
        assert_true(f->cfg->marketplace.token_file[0] == '/');
}

static void test_example_with_credentials(void **state) {
        struct fx *f = *state;
        char src[512], *text = NULL;
        size_t len;
        snprintf(src, sizeof(src), "%s/config/partnerd.conf.example", srcdir());
        assert_int_equal(util_read_file(src, 1 << 20, &text, &len), 0);

        make_creds(f);
        write_in(f->creds, "marketplace-token", "tok-from-creds\n", 0600);
        write_in(f->creds, "partner-center-secret", "secret-from-creds\n", 0600);

        int r = load_bytes(f, text, len, 0);
        free(text);
        if (r != 0)
                dump_errors(f);
        assert_int_equal(r, 0);
        struct cfg *c = f->cfg;
        /* one account without partner_ids: it answers for every partnerId */
        assert_int_equal(c->n_warnings, 1);
        assert_non_null(strstr(c->warnings[0], "[microsoft] partner_ids is not set"));
        assert_string_equal(c->path, f->conf);
        assert_non_null(strstr(c->dir, "cfgtest-"));
        assert_string_equal(c->marketplace.url, "https://api.platform.softwareone.com/public/v1");
        assert_string_equal(c->marketplace.token, "tok-from-creds");
        char want[256];
        snprintf(want, sizeof(want), "%s/marketplace-token", f->creds);
        assert_string_equal(c->marketplace.token_file, want);
        assert_string_equal(c->microsoft.tenant, "contoso-partner.onmicrosoft.com");
        assert_string_equal(c->microsoft.client_id, "00000000-0000-0000-0000-000000000000");
        assert_string_equal(c->microsoft.client_secret, "secret-from-creds");
        assert_string_equal(c->mail.smtp_url, "smtps://smtp.example.com:465");
        assert_string_equal(c->mail.from, "CSP orders <partnerd@example.com>");
        assert_int_equal(c->mail.n_to, 1);
        assert_string_equal(c->mail.to[0], "it-admin@example.com");
        assert_defaults(c);
}

static void test_minimal_defaults(void **state) {
        struct fx *f = *state;
        int r = load(f, BASE);
        if (r != 0)
                dump_errors(f);
        assert_int_equal(r, 0);
        assert_defaults(f->cfg);
        assert_string_equal(f->cfg->marketplace.token, "mp-token-next-to-config");
        assert_string_equal(f->cfg->microsoft.client_secret, "pc-secret-next-to-config");
}

static void test_every_key(void **state) {
        struct fx *f = *state;
        char path[512];
        snprintf(path, sizeof(path), "%s/tests/data/config/good/full.conf", srcdir());
        int r = cfg_load(path, CFG_NO_SECRETS, &f->cfg, &f->err);
        if (r != 0)
                dump_errors(f);
        assert_int_equal(r, 0);
        struct cfg *c = f->cfg;
        char want[256];
        assert_string_equal(c->marketplace.url, "https://mp.example.com/public/v1");
        assert_int_equal(c->marketplace.poll_interval, 600);
        assert_int_equal(c->marketplace.n_products, 2);
        assert_string_equal(c->marketplace.products[0], "PRD-1528-2110");
        assert_string_equal(c->marketplace.products[1], "PRD-5832-8010");
        snprintf(want, sizeof(want), "%s/ca.pem", c->dir);
        assert_string_equal(c->marketplace.ca_file, want);
        assert_string_equal(c->marketplace.portal_url, "https://portal.example.com");
        assert_string_equal(c->microsoft.login_url, "http://127.0.0.1:8080");
        assert_string_equal(c->microsoft.api_url, "http://[::1]:9090/v1");
        assert_string_equal(c->microsoft.graph_url, "http://[::1]:9090/v1.0");
        assert_string_equal(c->microsoft.ca_file, "/etc/ssl/certs/ca-certificates.crt");
        assert_int_equal(c->microsoft.token_endpoint, 2);
        assert_int_equal(c->microsoft.n_check_schedule, 3);
        assert_int_equal(c->microsoft.check_schedule[0], 30);
        assert_int_equal(c->microsoft.check_schedule[1], 60);
        assert_int_equal(c->microsoft.check_schedule[2], 7200);
        assert_int_equal(c->mail.transport, CFG_TRANSPORT_SMTP);
        assert_string_equal(c->mail.smtp_url, "smtp://localhost:2525");
        assert_string_equal(c->mail.username, "partnerd@example.com");
        assert_null(c->mail.password);
        snprintf(want, sizeof(want), "%s/smtp-password", c->dir);
        assert_string_equal(c->mail.password_file, want);
        assert_string_equal(c->microsoft.client_secret_file, "/run/credentials/partnerd.service/pc-secret");
        assert_string_equal(c->mail.sendmail_path, "/usr/lib/sendmail");
        assert_string_equal(c->mail.from, "partnerd@example.com");
        assert_int_equal(c->mail.n_to, 2);
        assert_string_equal(c->mail.to[1], "B <b@example.org>");
        assert_int_equal(c->mail.n_cc, 1);
        assert_int_equal(c->mail.n_bcc, 2);
        assert_string_equal(c->mail.bcc[1], "e@example.com");
        assert_int_equal(c->mail.n_ops, 1);
        assert_string_equal(c->mail.ops[0], "x#y@example.com");
        assert_true(c->mail.notify_order_contacts);
        assert_int_equal(c->mail.reminder_interval, 12 * 3600);
        assert_int_equal(c->mail.max_reminders, 0);
        assert_int_equal(c->mail.deadline, 14 * 86400);
        assert_int_equal(c->mail.deadline_warning, 2 * 86400);
        snprintf(want, sizeof(want), "%s/my-templates", c->dir);
        assert_string_equal(c->mail.template_dir, want);
        char *tdir = cfg_template_dir(c);
        assert_non_null(tdir);
        assert_string_equal(tdir, want);
        free(tdir);
        assert_int_equal(c->mail.n_url_hosts, 2);
        assert_string_equal(c->mail.url_hosts[0], "admin.microsoft.com");
        assert_string_equal(c->daemon.state_dir, "/srv/partnerd");
        assert_int_equal(c->daemon.retention, 7 * 86400);
        assert_int_equal(c->daemon.max_parallel, 4);
        assert_int_equal(c->daemon.http_timeout, 120);
        assert_int_equal(c->daemon.connect_timeout, 5);
        assert_int_equal(c->daemon.max_response, 512 * 1024);
}

static void test_sizes(void **state) {
        struct fx *f = *state;
        static const struct { const char *v; size_t want; } ok[] = {
                { "16M", 16 << 20 }, { "1G", 1 << 30 }, { "65536", 65536 }, { "8KiB", 8192 },
                { "2MB", 2 << 20 },
        };
        for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
                char text[1024];
                snprintf(text, sizeof(text), BASE "[daemon]\nmax_response = %s\n", ok[i].v);
                assert_int_equal(load(f, text), 0);
                assert_int_equal(f->cfg->daemon.max_response, ok[i].want);
        }
        assert_int_equal(load(f, BASE "[daemon]\nmax_response = lots\n"), -EINVAL);
        expect_only_error(f, 13, "[daemon] max_response: invalid size 'lots' (use e.g. 512K, 16M)");
        assert_int_equal(load(f, BASE "[daemon]\nmax_response = 2G\n"), -EINVAL);
        expect_only_error(f, 13, "[daemon] max_response: size '2G' out of range (4K..1024M)");

        assert_int_equal(load(f, BASE "sendmail = sendmail\n"), -EINVAL);
        expect_only_error(f, 12, "[mail] sendmail: 'sendmail' is not an absolute path");
}

static void test_crlf_and_comments(void **state) {
        struct fx *f = *state;
        char path[512];
        snprintf(path, sizeof(path), "%s/tests/data/config/good/crlf-bom.conf", srcdir());
        int r = cfg_load(path, CFG_NO_SECRETS, &f->cfg, &f->err);
        if (r != 0)
                dump_errors(f);
        assert_int_equal(r, 0);
        assert_string_equal(f->cfg->marketplace.url, "https://mp.example.com");
        assert_string_equal(f->cfg->microsoft.client_id, "abc");
        assert_string_equal(f->cfg->mail.from, "Zo\xc3\xab Ops <partnerd@example.com>");
        assert_int_equal(f->cfg->mail.n_cc, 1);
        assert_string_equal(f->cfg->mail.cc[0], "x#tag@example.com");
}

/* ---- one kind of error at a time ---- */

static void test_unknown_section(void **state) {
        struct fx *f = *state;
        assert_int_equal(load(f, BASE "[marketpalce]\nurl = https://x.example.com\n"), -EINVAL);
        /* Keys inside the unknown section are not reported again. */
        expect_only_error(f, 12, "unknown section [marketpalce]");
}

static void test_unknown_key(void **state) {
        struct fx *f = *state;
        assert_int_equal(load(f, BASE "[marketplace]\ntokenfile = x\n"), -EINVAL);
        expect_only_error(f, 13, "unknown key 'tokenfile' in [marketplace]");
        /* Keys are case-sensitive. */
        assert_int_equal(load(f, BASE "From = a@example.com\n"), -EINVAL);
        expect_only_error(f, 12, "unknown key 'From' in [mail]");
        /* Something that is not a key name is not echoed (a pasted token?). */
        assert_int_equal(load(f, BASE "eyJhbGciOiJIUzI1NiJ9/c2VjcmV0+dG9rZW4= \n"), -EINVAL);
        expect_only_error(f, 12, "invalid key name in [mail]");
        assert_int_equal(load(f, BASE "[daemon]\nsk_live_0123456789abcdef0123456789abcdef01234 = x\n"), -EINVAL);
        expect_only_error(f, 13, "invalid key name in [daemon]");
}

static void test_key_outside_section(void **state) {
        struct fx *f = *state;
        assert_int_equal(load(f, "# top\nurl = https://mp.example.com\n" BASE), -EINVAL);
        expect_only_error(f, 2, "key 'url' outside any section");
}

static void test_duplicate_key(void **state) {
        struct fx *f = *state;
        assert_int_equal(load(f, BASE "to = other@example.com\n"), -EINVAL);
        expect_only_error(f, 12, "[mail] to: duplicate key (first set on line 11)");
}

static void test_missing_required(void **state) {
        struct fx *f = *state;
        assert_int_equal(load(f,
                "[marketplace]\nurl = https://mp.example.com\ntoken_file = marketplace-token\n"
                "[microsoft]\ntenant = contoso.onmicrosoft.com\nclient_secret_file = pc-secret\n"
                "[mail]\nsmtp_url = smtps://smtp.example.com\nfrom = a@example.com\nto = b@example.com\n"),
                -EINVAL);
        expect_only_error(f, 0, "[microsoft] client_id: missing required key");

        /* An empty file misses every required key. */
        assert_int_equal(load(f, ""), -EINVAL);
        assert_int_equal(f->err.n, 8);
        expect_error(f, 0, "[marketplace] url: missing required key");
        expect_error(f, 0, "[marketplace] token_file: missing required key");
        expect_error(f, 0, "[microsoft] tenant: missing required key");
        expect_error(f, 0, "[mail] from: missing required key");
        expect_error(f, 0, "[mail] to: missing required key");
}

static void test_bad_duration(void **state) {
        struct fx *f = *state;
        assert_int_equal(load(f, BASE "reminder_interval = soon\n"), -EINVAL);
        expect_only_error(f, 12, "[mail] reminder_interval: invalid duration 'soon' (use e.g. 30s, 5min, 24h, 2d)");
        assert_int_equal(load(f, BASE "[microsoft]\ncheck_schedule = 1min, , 5min\n"), -EINVAL);
        expect_only_error(f, 13, "[microsoft] check_schedule: empty entry in list");
}

static void test_duration_range(void **state) {
        struct fx *f = *state;
        assert_int_equal(load(f, BASE "[marketplace]\npoll_interval = 5s\n"), -EINVAL);
        expect_only_error(f, 13, "[marketplace] poll_interval: duration '5s' out of range (10s..1d)");
        assert_int_equal(load(f, BASE "[microsoft]\ncheck_schedule = 1min, 2s\n"), -EINVAL);
        expect_only_error(f, 13, "[microsoft] check_schedule: duration '2s' out of range (10s..1d)");
        assert_int_equal(load(f, BASE "[marketplace]\npoll_interval = 99999999999999999999d\n"), -EINVAL);
        expect_only_error(f, 13, "[marketplace] poll_interval: duration '99999999999999999999d' out of range (10s..1d)");
        /* The boundary itself is fine. */
        assert_int_equal(load(f, BASE "[marketplace]\npoll_interval = 10s\n"), 0);
        assert_int_equal(f->cfg->marketplace.poll_interval, 10);
        /* No warning at all. */
        assert_int_equal(load(f, BASE "deadline_warning = 0\n"), 0);
        assert_int_equal(f->cfg->mail.deadline_warning, 0);
        /* Cross-key: the warning must come before the deadline. */
        assert_int_equal(load(f, BASE "deadline = 2d\ndeadline_warning = 3d\n"), -EINVAL);
        expect_only_error(f, 13, "[mail] deadline_warning: 3d must be shorter than deadline 2d");
        assert_int_equal(load(f, BASE "max_reminders = 101\n"), -EINVAL);
        expect_only_error(f, 12, "[mail] max_reminders: 101 out of range (0..100)");
        assert_int_equal(load(f, BASE "max_reminders = -1\n"), -EINVAL);
        expect_only_error(f, 12, "[mail] max_reminders: invalid number '-1'");
}

static void test_bad_address(void **state) {
        struct fx *f = *state;
        static const char *const bad[] = {
                "not-an-address", "a@@example.com", "@example.com", "a@", "a..b@example.com",
                ".a@example.com", "a@-example.com", "a@example..com", "a b@example.com",
                "Name <a@example.com", "Name a@example.com>", "Na<me <a@example.com>",
                "\"Quoted\" <a@example.com>",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                char text[1024];
                snprintf(text, sizeof(text), BASE "cc = %s\n", bad[i]);
                assert_int_equal(load(f, text), -EINVAL);
                assert_int_equal(f->err.n, 1);
                char want[768];
                snprintf(want, sizeof(want), "%s:12: [mail] cc: invalid address '", f->conf);
                assert_non_null(strstr(f->err.items[0], want));
        }
        /* Header injection: a CR inside the value is a control character,
         * and a CRLF ends the line, leaving "Bcc: x@y" as a line of junk. */
        assert_int_equal(load(f,
                "[marketplace]\nurl = https://mp.example.com\ntoken_file = marketplace-token\n"
                "[microsoft]\ntenant = contoso.onmicrosoft.com\nclient_id = x\nclient_secret_file = pc-secret\n"
                "[mail]\nsmtp_url = smtps://smtp.example.com\nto = b@example.com\n"
                "from = a@b.com\rBcc: x@y\n"), -EINVAL);
        expect_error(f, 11, "control character in line");
        assert_int_equal(load(f, BASE "bcc = a@b.com\r\nBcc: x@y\n"), -EINVAL);
        expect_only_error(f, 13, "expected 'key = value'");
        /* A comma list with one bad entry names that entry. */
        assert_int_equal(load(f, BASE "ops = ok@example.com, bad@\n"), -EINVAL);
        expect_only_error(f, 12, "[mail] ops: invalid address 'bad@'");
        /* A local part over 64 bytes. */
        char text[2048], local[80];
        memset(local, 'a', 65);
        local[65] = '\0';
        snprintf(text, sizeof(text), BASE "cc = %s@example.com\n", local);
        assert_int_equal(load(f, text), -EINVAL);
        assert_true(errors_mention(f, "[mail] cc: invalid address"));
}

static void test_urls(void **state) {
        struct fx *f = *state;
        char text[1024];

        static const char *const loopback[] = {
                "http://127.0.0.1", "http://127.0.0.1:8080/public/v1", "http://localhost:1/",
                "http://[::1]:80/x",
        };
        for (size_t i = 0; i < sizeof(loopback) / sizeof(loopback[0]); i++) {
                snprintf(text, sizeof(text), BASE "[marketplace]\nportal_url = %s\n", loopback[i]);
                int r = load(f, text);
                if (r != 0)
                        dump_errors(f);
                assert_int_equal(r, 0);
        }
        assert_string_equal(f->cfg->marketplace.portal_url, "http://[::1]:80/x");

        /* Userinfo: rejected, and the value (a password) is not echoed. */
        assert_int_equal(load(f, BASE "[marketplace]\nportal_url = https://bob:s3cr3t@portal.example.com\n"), -EINVAL);
        expect_only_error(f, 13, "[marketplace] portal_url: credentials in the URL are not allowed (use a *_file key)");
        assert_false(errors_mention(f, "s3cr3t"));
        assert_int_equal(load(f,
                "[marketplace]\nurl = https://mp.example.com\ntoken_file = marketplace-token\n"
                "[microsoft]\ntenant = contoso.onmicrosoft.com\nclient_id = x\nclient_secret_file = pc-secret\n"
                "[mail]\nsmtp_url = smtps://user:pw@smtp.example.com\nfrom = a@b.example\nto = b@example.com\n"),
                -EINVAL);
        expect_only_error(f, 9, "[mail] smtp_url: credentials in the URL are not allowed (use a *_file key)");
        /* Even when curl could not parse the URL. */
        assert_int_equal(load(f, BASE "[marketplace]\nportal_url = https://bob:s3 cr3t@portal.example.com\n"), -EINVAL);
        expect_only_error(f, 13, "[marketplace] portal_url: credentials in the URL are not allowed (use a *_file key)");

        /* smtp:// to a remote host is fine here (STARTTLS is enforced when sending). */
        snprintf(text, sizeof(text), "%s", BASE);
        char *p = strstr(text, "smtps://smtp.example.com:465");
        memcpy(p, "smtp:// smtp.example.com:587", strlen("smtps://smtp.example.com:465"));
        assert_int_equal(load(f, text), -EINVAL);  /* a space after "//" */
        memcpy(p, "smtp://mail.example.com:587 ", strlen("smtps://smtp.example.com:465"));
        assert_int_equal(load(f, text), 0);
        assert_string_equal(f->cfg->mail.smtp_url, "smtp://mail.example.com:587");
        /* Without a scheme curl would guess one; we do not. */
        memcpy(p, "smtp.example.com:465        ", strlen("smtps://smtp.example.com:465"));
        assert_int_equal(load(f, text), -EINVAL);
}

static void test_ca_file(void **state) {
        struct fx *f = *state;
        assert_int_equal(load(f, BASE "[marketplace]\nca_file = missing.pem\n"), -EINVAL);
        expect_only_error(f, 13, "[marketplace] ca_file: cannot read %s/missing.pem: No such file or directory",
                          f->dir);
        write_in(f->dir, "ca.pem", "-----BEGIN CERTIFICATE-----\n", 0644);
        assert_int_equal(load(f, BASE "[marketplace]\nca_file = ca.pem\n"), 0);
        char want[256];
        snprintf(want, sizeof(want), "%s/ca.pem", f->cfg->dir);
        assert_string_equal(f->cfg->marketplace.ca_file, want);
}

/* ---- tests/data/config: good/ files load, bad/ files give exactly their
 * "# expect: LINE: message" errors ---- */

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* The *.conf names in dir, sorted. */
static size_t list_conf(const char *dir, char ***ret) {
        DIR *d = opendir(dir);
        char **v = NULL;
        size_t n = 0;
        struct dirent *de;
        assert_non_null(d);
        while ((de = readdir(d))) {
                size_t l = strlen(de->d_name);
                if (l < 6 || strcmp(de->d_name + l - 5, ".conf") != 0)
                        continue;
                v = realloc(v, (n + 1) * sizeof(char *));
                assert_non_null(v);
                v[n] = strdup(de->d_name);
                assert_non_null(v[n++]);
        }
        closedir(d);
        qsort(v, n, sizeof(char *), cmp_str);
        *ret = v;
        return n;
}

static void test_data_files(void **state) {
        struct fx *f = *state;
        char dir[512], path[1024];
        char **names;
        size_t n;

        snprintf(dir, sizeof(dir), "%s/tests/data/config/good", srcdir());
        n = list_conf(dir, &names);
        assert_true(n >= 3);
        for (size_t i = 0; i < n; i++) {
                snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
                f->cfg = cfg_free(f->cfg);
                cfg_errors_clear(&f->err);
                int r = cfg_load(path, CFG_NO_SECRETS, &f->cfg, &f->err);
                if (r != 0) {
                        fprintf(stderr, "%s:\n", names[i]);
                        dump_errors(f);
                }
                assert_int_equal(r, 0);
                free(names[i]);
        }
        free(names);

        snprintf(dir, sizeof(dir), "%s/tests/data/config/bad", srcdir());
        n = list_conf(dir, &names);
        assert_true(n >= 20);
        for (size_t i = 0; i < n; i++) {
                char *text = NULL, *save = NULL;
                size_t n_expect = 0;
                snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
                assert_true(strlen(path) < sizeof(f->conf));
                memcpy(f->conf, path, strlen(path) + 1);
                f->cfg = cfg_free(f->cfg);
                cfg_errors_clear(&f->err);
                int r = cfg_load(path, CFG_NO_SECRETS, &f->cfg, &f->err);
                if (r != -EINVAL)
                        fprintf(stderr, "%s: loaded\n", names[i]);
                assert_int_equal(r, -EINVAL);
                assert_int_equal(util_read_file(path, 1 << 20, &text, NULL), 0);
                for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
                        unsigned line;
                        int off = 0;
                        if (sscanf(l, "# expect: %u: %n", &line, &off) != 1 || off == 0)
                                continue;
                        expect_error(f, line, "%s", l + off);
                        n_expect++;
                }
                if (f->err.n != n_expect) {
                        fprintf(stderr, "%s:\n", names[i]);
                        dump_errors(f);
                }
                assert_true(n_expect > 0);
                assert_int_equal(f->err.n, n_expect);
                free(text);
                free(names[i]);
        }
        free(names);
}

/* ---- secrets ---- */

static void test_missing_secret(void **state) {
        struct fx *f = *state;
        char path[256];
        snprintf(path, sizeof(path), "%s/marketplace-token", f->dir);
        assert_int_equal(unlink(path), 0);
        assert_int_equal(load(f, BASE), -EINVAL);
        expect_only_error(f, 3, "[marketplace] token_file: cannot read %s: No such file or directory", path);

        /* Present but empty, or holding control characters. */
        write_in(f->dir, "marketplace-token", "\n", 0600);
        assert_int_equal(load(f, BASE), -EINVAL);
        expect_only_error(f, 3, "[marketplace] token_file: %s is empty or contains control characters", path);
        write_in(f->dir, "marketplace-token", "abc\x01" "def-very-secret\n", 0600);
        assert_int_equal(load(f, BASE), -EINVAL);
        assert_false(errors_mention(f, "very-secret"));

        /* CFG_NO_SECRETS does not read them at all. */
        assert_int_equal(unlink(path), 0);
        assert_int_equal(load_bytes(f, BASE, strlen(BASE), CFG_NO_SECRETS), 0);
        assert_string_equal(f->cfg->marketplace.token_file, path);
        assert_null(f->cfg->marketplace.token);
}

/* Issue 12.10: what an editor adds around a pasted secret (a byte order
 * mark before it, CR LF or blanks after it) is stripped; anything
 * unprintable inside it is refused, naming the file. */
static void test_secret_bom_crlf(void **state) {
        struct fx *f = *state;
        char path[256];
        static const char *const stripped[] = {
                "\xef\xbb\xbftok-en.123\r\n", "tok-en.123\r\n\r\n", "tok-en.123 \t\n", "\xef\xbb\xbftok-en.123",
                "tok-en.123\r",
        };
        snprintf(path, sizeof(path), "%s/marketplace-token", f->dir);
        for (size_t i = 0; i < sizeof(stripped) / sizeof(stripped[0]); i++) {
                write_in(f->dir, "marketplace-token", stripped[i], 0600);
                if (load(f, BASE) != 0)
                        dump_errors(f);
                assert_non_null(f->cfg);
                assert_string_equal(f->cfg->marketplace.token, "tok-en.123");
        }
        static const char *const refused[] = {
                "tok\ren.123\n", "tok-en\xef\xbb\xbf.123\n", "\xef\xbb\xbf\r\n", "tok\x1b[2Jen\n",
        };
        for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
                write_in(f->dir, "marketplace-token", refused[i], 0600);
                assert_int_equal(load(f, BASE), -EINVAL);
                expect_only_error(f, 3, "[marketplace] token_file: %s is empty or contains control characters", path);
        }
}

/* Issue 12.8 and 12.13: the proxy and the orders cap are validated, naming
 * the key. */
static void test_proxy_and_orders_cap(void **state) {
        struct fx *f = *state;
        assert_int_equal(load(f, BASE "[daemon]\nproxy = https://proxy.example.com:3128\n"), 0);
        assert_string_equal(f->cfg->daemon.proxy, "https://proxy.example.com:3128");
        assert_int_equal(f->cfg->marketplace.max_orders_bytes, 64u << 20);
        assert_int_equal(load(f, BASE "[daemon]\nproxy = http://127.0.0.1:3128/\n"), 0);
        assert_string_equal(f->cfg->daemon.proxy, "http://127.0.0.1:3128");
        assert_int_equal(load(f, BASE "[daemon]\nproxy = http://proxy.example.com:3128\n"), -EINVAL);
        expect_only_error(f, 13, "[daemon] proxy: http:// is only allowed to a loopback host; use https://: "
                          "'http://proxy.example.com:3128'");
        assert_int_equal(load(f, BASE "[daemon]\nproxy = socks5://127.0.0.1:1080\n"), -EINVAL);
        assert_true(errors_mention(f, "[daemon] proxy: must be an https:// URL"));
        assert_int_equal(load(f, BASE "[daemon]\nproxy = https://user:pw@proxy.example.com\n"), -EINVAL);
        assert_true(errors_mention(f, "[daemon] proxy: credentials in the URL are not allowed"));
        assert_false(errors_mention(f, "pw@"));
        assert_null(f->cfg);

        assert_int_equal(load(f, BASE "[marketplace]\nmax_orders_bytes = 8M\n"), 0);
        assert_int_equal(f->cfg->marketplace.max_orders_bytes, 8u << 20);
        assert_int_equal(load(f, BASE "[marketplace]\nmax_orders_bytes = 512K\n"), -EINVAL);
        assert_true(errors_mention(f, "[marketplace] max_orders_bytes: size '512K' out of range"));
}

/* [cluster]: absent means single-host (nothing set); present, each key
 * validated with its name, defaults, the timeouts under lease_ttl/2. */
static void test_cluster(void **state) {
        struct fx *f = *state;
        char text[4096], want[512], host[256] = "";

        assert_int_equal(load(f, BASE), 0);
        assert_false(f->cfg->cluster.enabled);
        assert_null(f->cfg->cluster.endpoints);
        assert_int_equal(f->cfg->daemon.http_timeout, 60);

        assert_int_equal(load(f, BASE "[cluster]\netcd = https://a.example:2379, https://b.example:2379/,"
                                      "http://127.0.0.1:2379\n"), 0);
        const struct cfg_cluster *k = &f->cfg->cluster;
        assert_true(k->enabled);
        assert_int_equal(k->n_endpoints, 3);
        assert_string_equal(k->endpoints[0], "https://a.example:2379");
        assert_string_equal(k->endpoints[1], "https://b.example:2379");
        assert_string_equal(k->endpoints[2], "http://127.0.0.1:2379");
        assert_null(k->endpoints[3]);
        assert_string_equal(k->prefix, "/partnerd/");
        assert_int_equal(k->lease_ttl, 10);
        assert_int_equal(gethostname(host, sizeof(host) - 1), 0);
        assert_string_equal(k->name, host);
        /* not set: below lease_ttl/2 */
        assert_int_equal(f->cfg->daemon.http_timeout, 4);
        assert_int_equal(f->cfg->daemon.connect_timeout, 4);

        assert_int_equal(load(f, BASE "[cluster]\netcd = https://a.example:2379\nprefix = /pd/eu/\nlease_ttl = 30s\n"
                                      "name = host-a\n[daemon]\nhttp_timeout = 14s\nconnect_timeout = 5s\n"), 0);
        assert_string_equal(f->cfg->cluster.prefix, "/pd/eu/");
        assert_int_equal(f->cfg->cluster.lease_ttl, 30);
        assert_string_equal(f->cfg->cluster.name, "host-a");
        assert_int_equal(f->cfg->daemon.http_timeout, 14);
        assert_int_equal(f->cfg->daemon.connect_timeout, 5);

        /* the section without etcd */
        assert_int_equal(load(f, BASE "[cluster]\nlease_ttl = 10s\n"), -EINVAL);
        expect_only_error(f, 0, "[cluster] etcd: missing required key (the [cluster] section is present)");
        /* plaintext to a remote member; a path; twice; empty item */
        assert_int_equal(load(f, BASE "[cluster]\netcd = http://etcd.example:2379\n"), -EINVAL);
        expect_only_error(f, 13, "[cluster] etcd: http:// is only allowed to a loopback host; use https://: "
                          "'http://etcd.example:2379'");
        assert_int_equal(load(f, BASE "[cluster]\netcd = https://a.example:2379/v3\n"), -EINVAL);
        expect_only_error(f, 13, "[cluster] etcd: an etcd endpoint is scheme://host:port, without a path: "
                          "'https://a.example:2379/v3'");
        assert_int_equal(load(f, BASE "[cluster]\netcd = https://a.example:2379, https://a.example:2379\n"), -EINVAL);
        expect_only_error(f, 13, "[cluster] etcd: listed twice: 'https://a.example:2379'");
        assert_int_equal(load(f, BASE "[cluster]\netcd = https://a.example:2379,,https://b.example:2379\n"), -EINVAL);
        expect_only_error(f, 13, "[cluster] etcd: empty item in the list");
        assert_int_equal(load(f, BASE "[cluster]\netcd = https://u:pw@a.example:2379\n"), -EINVAL);
        assert_true(errors_mention(f, "[cluster] etcd: credentials in the URL are not allowed"));
        assert_false(errors_mention(f, "pw@"));
        /* prefix, lease_ttl bounds, name */
        assert_int_equal(load(f, BASE "[cluster]\netcd = https://a.example:2379\nprefix = partnerd\n"), -EINVAL);
        expect_only_error(f, 14, "[cluster] prefix: 'partnerd' must start and end with '/' (at most 128 bytes)");
        assert_int_equal(load(f, BASE "[cluster]\netcd = https://a.example:2379\nlease_ttl = 2s\n"), -EINVAL);
        assert_true(errors_mention(f, ":14: [cluster] lease_ttl:"));
        assert_int_equal(load(f, BASE "[cluster]\netcd = https://a.example:2379\nname = host a\n"), -EINVAL);
        assert_true(errors_mention(f, ":14: [cluster] name:"));
        /* the deposition rule: http_timeout set at or above lease_ttl/2 */
        assert_int_equal(load(f, BASE "[cluster]\netcd = https://a.example:2379\nlease_ttl = 10s\n"
                                      "[daemon]\nhttp_timeout = 5s\n"), -EINVAL);
        expect_only_error(f, 16, "[daemon] http_timeout: 5s must be shorter than half of [cluster] lease_ttl 10s "
                          "(a deposed leader's request must land before another instance can take over); "
                          "lower http_timeout or raise lease_ttl");
        /* a connect_timeout set above the lowered http_timeout */
        assert_int_equal(load(f, BASE "[cluster]\netcd = https://a.example:2379\n[daemon]\nconnect_timeout = 10s\n"),
                         -EINVAL);
        expect_only_error(f, 15, "[daemon] connect_timeout: longer than http_timeout");

        /* client certificate: both or neither, resolved like secrets */
        assert_int_equal(load(f, BASE "[cluster]\netcd = https://a.example:2379\ncert_file = client.pem\n"), -EINVAL);
        assert_true(errors_mention(f, ":14: [cluster] cert_file: set without key_file"));
        make_creds(f);
        write_in(f->creds, "client.pem", "cert\n", 0400);
        write_in(f->creds, "client.key", "key\n", 0400);
        write_in(f->dir, "ca.pem", "ca\n", 0644);
        write_in(f->creds, "marketplace-token", "mp-token-from-creds", 0400);
        write_in(f->creds, "pc-secret", "pc-from-creds", 0400);
        assert_int_equal(load(f, BASE "[cluster]\netcd = https://a.example:2379\nca_file = ca.pem\n"
                                      "cert_file = client.pem\nkey_file = client.key\n"), 0);
        snprintf(want, sizeof(want), "%s/client.key", f->creds);
        assert_string_equal(f->cfg->cluster.key_file, want);
        snprintf(want, sizeof(want), "%s/client.pem", f->creds);
        assert_string_equal(f->cfg->cluster.cert_file, want);
        snprintf(want, sizeof(want), "%s/ca.pem", f->cfg->dir);
        assert_string_equal(f->cfg->cluster.ca_file, want);
        snprintf(text, sizeof(text), BASE "[cluster]\netcd = https://a.example:2379\nkey_file = missing.key\n"
                                          "cert_file = client.pem\n");
        assert_int_equal(load(f, text), -EINVAL);
        snprintf(want, sizeof(want), ":14: [cluster] key_file: cannot read %s/missing.key", f->creds);
        assert_true(errors_mention(f, want));
}

static void test_secret_readable_by_others(void **state) {
        struct fx *f = *state;
        char path[256];
        snprintf(path, sizeof(path), "%s/pc-secret", f->dir);
        assert_int_equal(chmod(path, 0644), 0);
        assert_int_equal(load(f, BASE_PIDS), 0);
        assert_int_equal(f->cfg->n_warnings, 1);
        char want[1024];
        snprintf(want, sizeof(want), "%s:7: secret file %s readable by others (mode 0644); chmod 0600",
                 f->conf, path);
        assert_string_equal(f->cfg->warnings[0], want);
        assert_false(strstr(f->cfg->warnings[0], "pc-secret-next-to-config"));
        assert_int_equal(chmod(path, 0640), 0);
        assert_int_equal(load(f, BASE_PIDS), 0);
        assert_int_equal(f->cfg->n_warnings, 1);
        assert_int_equal(chmod(path, 0600), 0);
        assert_int_equal(load(f, BASE_PIDS), 0);
        assert_int_equal(f->cfg->n_warnings, 0);
}

static void test_secret_resolution(void **state) {
        struct fx *f = *state;
        char want[256];

        /* Next to the config file. */
        assert_int_equal(load(f, BASE), 0);
        snprintf(want, sizeof(want), "%s/marketplace-token", f->cfg->dir);
        assert_string_equal(f->cfg->marketplace.token_file, want);
        assert_string_equal(f->cfg->marketplace.token, "mp-token-next-to-config");

        /* In $CREDENTIALS_DIRECTORY when set: the copy next to the config is ignored. */
        make_creds(f);
        write_in(f->creds, "marketplace-token", "mp-token-from-creds", 0400);
        write_in(f->creds, "pc-secret", "pc-from-creds\r\n", 0400);
        assert_int_equal(load(f, BASE), 0);
        snprintf(want, sizeof(want), "%s/marketplace-token", f->creds);
        assert_string_equal(f->cfg->marketplace.token_file, want);
        assert_string_equal(f->cfg->marketplace.token, "mp-token-from-creds");
        assert_string_equal(f->cfg->microsoft.client_secret, "pc-from-creds");

        /* An absolute path is taken as given. */
        char text[2048];
        snprintf(text, sizeof(text), BASE "username = u\npassword_file = %s/pc-secret\n", f->dir);
        assert_int_equal(load(f, text), 0);
        snprintf(want, sizeof(want), "%s/pc-secret", f->dir);
        assert_string_equal(f->cfg->mail.password_file, want);
        assert_string_equal(f->cfg->mail.password, "pc-secret-next-to-config");
}

static void test_state_directory(void **state) {
        struct fx *f = *state;
        setenv("STATE_DIRECTORY", "/var/lib/partnerd-test", 1);
        assert_int_equal(load(f, BASE), 0);
        assert_string_equal(f->cfg->daemon.state_dir, "/var/lib/partnerd-test");
        setenv("STATE_DIRECTORY", "/run/a:/run/b", 1);
        assert_int_equal(load(f, BASE), 0);
        assert_string_equal(f->cfg->daemon.state_dir, "/run/a");
        /* The file wins over the environment. */
        assert_int_equal(load(f, BASE "[daemon]\nstate_dir = /srv/p\n"), 0);
        assert_string_equal(f->cfg->daemon.state_dir, "/srv/p");
        setenv("STATE_DIRECTORY", "relative", 1);
        assert_int_equal(load(f, BASE), -EINVAL);
        expect_only_error(f, 0, "[daemon] state_dir: $STATE_DIRECTORY 'relative' is not an absolute path");
        unsetenv("STATE_DIRECTORY");
        assert_int_equal(load(f, BASE), 0);
        assert_string_equal(f->cfg->daemon.state_dir, "/var/lib/partnerd");
}

/* ---- the bytes of the file ---- */

static void test_long_line(void **state) {
        struct fx *f = *state;
        size_t n = strlen(BASE) + 5000 + 64;
        char *text = malloc(n);
        assert_non_null(text);
        int o = snprintf(text, n, BASE "# ");
        memset(text + o, 'x', 5000);
        strcpy(text + o + 5000, "\ncc = c@example.com\n");
        assert_int_equal(load(f, text), -EINVAL);
        expect_only_error(f, 12, "line too long (more than 4096 bytes)");
        free(text);
}

static void test_nul_and_utf8(void **state) {
        struct fx *f = *state;
        static const char nul[] = BASE "cc = a@example.com\0, b@example.com\n";
        assert_int_equal(load_bytes(f, nul, sizeof(nul) - 1, 0), -EINVAL);
        expect_only_error(f, 12, "NUL byte in line");
        assert_int_equal(load(f, BASE "# caf\xc3\n"), -EINVAL);
        expect_only_error(f, 12, "invalid UTF-8");
        assert_int_equal(load(f, BASE "# over-long \xc0\xaf\n"), -EINVAL);
        expect_only_error(f, 12, "invalid UTF-8");
        assert_int_equal(load(f, BASE "# surrogate \xed\xa0\x80\n"), -EINVAL);
        expect_only_error(f, 12, "invalid UTF-8");
        assert_int_equal(load(f, BASE "# bell \a\n"), -EINVAL);
        expect_only_error(f, 12, "control character in line");
}

static void test_file_limits(void **state) {
        struct fx *f = *state;
        size_t n = 1024 * 1024 + 1;
        char *big = malloc(n);
        assert_non_null(big);
        memset(big, '\n', n);
        assert_int_equal(load_bytes(f, big, n, 0), -EFBIG);
        expect_only_error(f, 0, "file too large (more than 1048576 bytes)");
        free(big);

        char path[256];
        snprintf(path, sizeof(path), "%s/nonexistent.conf", f->dir);
        cfg_errors_clear(&f->err);
        assert_int_equal(cfg_load(path, 0, &f->cfg, &f->err), -ENOENT);
        assert_null(f->cfg);
        assert_int_equal(f->err.n, 1);
        char want[512];
        snprintf(want, sizeof(want), "%s:0: cannot read: No such file or directory", path);
        assert_string_equal(f->err.items[0], want);
}

static void test_many_errors(void **state) {
        struct fx *f = *state;
        assert_int_equal(load(f,
                "[marketplace]\n"
                "url = http://mp.example.com\n"          /* 2: plaintext to remote */
                "token_file = marketplace-token\n"
                "poll_interval = often\n"                /* 4: bad duration */
                "[microsoft]\n"
                "tenant = contoso.onmicrosoft.com\n"
                "client_secret_file = pc-secret\n"
                "[mail]\n"
                "smtp_url = smtps://smtp.example.com\n"
                "from = nobody\n"                        /* 10: bad address */
                "to = a@example.com\n"
                "to = b@example.com\n"                   /* 12: duplicate */
                "[mial]\n"                               /* 13: unknown section */
                "x = y\n"),
                -EINVAL);
        assert_int_equal(f->err.n, 6);
        expect_error(f, 2, "[marketplace] url: http:// is only allowed to a loopback host; use https://: 'http://mp.example.com'");
        expect_error(f, 4, "[marketplace] poll_interval: invalid duration 'often' (use e.g. 30s, 5min, 24h, 2d)");
        expect_error(f, 10, "[mail] from: invalid address 'nobody'");
        expect_error(f, 12, "[mail] to: duplicate key (first set on line 11)");
        expect_error(f, 13, "unknown section [mial]");
        expect_error(f, 0, "[microsoft] client_id: missing required key");
        /* The errors arrive in file order, then the file-wide ones. */
        assert_non_null(strstr(f->err.items[0], ":2: "));
        assert_non_null(strstr(f->err.items[5], ":0: "));
}

static void test_quoting_in_errors(void **state) {
        struct fx *f = *state;
        assert_int_equal(load(f, BASE "reminder_interval = 5\\x'9\n"), -EINVAL);
        expect_only_error(f, 12, "[mail] reminder_interval: invalid duration '5\\x5cx\\x279' (use e.g. 30s, 5min, 24h, 2d)");
}

/* ---- documentation: the example and partnerd.conf(5) name every key ---- */

static void test_docs_name_every_key(void **state) {
        static const char *const keys[] = {
                "[marketplace]", "url", "token_file", "poll_interval", "products", "ca_file",
                "portal_url", "max_orders_bytes",
                "[microsoft]", "login_url", "api_url", "graph_url", "tenant", "client_id", "client_secret_file",
                "ca_file", "token_endpoint", "check_schedule", "partner_ids",
                "[mail]", "transport", "smtp_url", "username", "password_file", "ca_file",
                "sendmail", "from", "to", "cc", "bcc", "ops", "notify_order_contacts",
                "reminder_interval", "max_reminders", "deadline", "deadline_warning", "templates",
                "url_hosts",
                "[daemon]", "state_dir", "retention", "max_parallel", "http_timeout",
                "connect_timeout", "max_response", "proxy",
        };
        char path[512], *example = NULL, *man = NULL;
        snprintf(path, sizeof(path), "%s/config/partnerd.conf.example", srcdir());
        assert_int_equal(util_read_file(path, 1 << 20, &example, NULL), 0);
        snprintf(path, sizeof(path), "%s/man/partnerd.conf.5", srcdir());
        assert_int_equal(util_read_file(path, 1 << 20, &man, NULL), 0);

        const char *section = NULL;  /* the example's text of the current section */
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
                char pat[128];
                if (keys[i][0] == '[') {
                        snprintf(pat, sizeof(pat), "\n%s\n", keys[i]);
                        section = strstr(example, pat);
                        assert_non_null(section);
                        snprintf(pat, sizeof(pat), ".SH %s SECTION", keys[i]);
                        assert_non_null(strstr(man, pat));
                        continue;
                }
                /* In the example, set or commented out, in its own section. */
                const char *next = strstr(section + 1, "\n[");
                size_t span = next ? (size_t) (next - section) : strlen(section);
                char *sect = strndup(section, span);
                assert_non_null(sect);
                char set[128], commented[128];
                snprintf(set, sizeof(set), "\n%s = ", keys[i]);
                snprintf(commented, sizeof(commented), "\n#%s = ", keys[i]);
                if (!strstr(sect, set) && !strstr(sect, commented))
                        fprintf(stderr, "example lacks %s\n", keys[i]);
                assert_true(strstr(sect, set) || strstr(sect, commented));
                free(sect);
                /* In the man page, as a tagged paragraph. */
                char br[128], list[128];
                snprintf(br, sizeof(br), "\n.BR %s ", keys[i]);
                snprintf(list, sizeof(list), "\" %s \"", keys[i]);
                if (!strstr(man, br) && !strstr(man, list))
                        fprintf(stderr, "man page lacks %s\n", keys[i]);
                assert_true(strstr(man, br) || strstr(man, list));
        }
        free(example);
        free(man);
}

/* ---- arbitrary bytes never crash the loader ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15u;
static uint64_t rng(void) {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        return rng_state;
}

static void fuzz_one(struct fx *f, const char *data, size_t len) {
        int r = load_bytes(f, data, len, CFG_NO_SECRETS);
        assert_true(r == 0 || r == -EINVAL);
        if (r == -EINVAL)
                assert_true(f->err.n > 0);
        for (size_t i = 0; i < f->err.n; i++)
                assert_false(util_has_ctl(f->err.items[i], false));
}

/* ---- Partner Center accounts ---- */

#define PA "3b33e682-00c3-41ee-9dd2-a548adf56438"
#define PB "5c1e9a2b-7d4f-4e6a-9b3c-2f8d1a6e4b70"
#define PC "e0d1c2b3-a4f5-4e6d-8c7b-9a0f1e2d3c4b"
/* lines 12.. after BASE */
#define BRAZIL(pids) \
        "[microsoft.brazil]\n" \
        "tenant = softwareone-br.onmicrosoft.com\n" \
        "client_id = 8e2f4a6c-1b3d-4f5e-9a7c-0d2e4f6a8b1c\n" \
        "client_secret_file = br-secret\n" \
        "partner_ids = " pids "\n"

static void test_accounts(void **state) {
        struct fx *f = *state;
        write_in(f->dir, "br-secret", "brazil-secret\n", 0600);

        /* a single account without partner_ids answers for everything, with a warning */
        assert_int_equal(load(f, BASE), 0);
        assert_int_equal(cfg_n_accounts(f->cfg), 1);
        assert_string_equal(cfg_account(f->cfg, 0)->name, "default");
        assert_int_equal(f->cfg->n_warnings, 1);
        char want[1024];
        snprintf(want, sizeof(want), "%s:0: [microsoft] partner_ids is not set: the one Partner Center "
                 "account checks every order, whatever partnerId its link names", f->conf);
        assert_string_equal(f->cfg->warnings[0], want);
        assert_ptr_equal(cfg_account_for_partner(f->cfg, PA), &f->cfg->microsoft);
        assert_ptr_equal(cfg_account_for_partner(f->cfg, NULL), &f->cfg->microsoft);

        /* with partner_ids: only those (upper case is normalised) */
        assert_int_equal(load(f, BASE "[microsoft]\npartner_ids = 3B33E682-00C3-41EE-9DD2-A548ADF56438\n"), 0);
        assert_int_equal(f->cfg->n_warnings, 0);
        assert_string_equal(f->cfg->microsoft.partner_ids[0], PA);
        assert_ptr_equal(cfg_account_for_partner(f->cfg, PA), &f->cfg->microsoft);
        assert_null(cfg_account_for_partner(f->cfg, PB));
        assert_null(cfg_account_for_partner(f->cfg, NULL));

        /* a second account: its own keys, the rest from [microsoft] */
        int r = load(f, BASE "[microsoft]\npartner_ids = " PA "\napi_url = https://pc.example.com/v1\n"
                     "graph_url = https://graph.example.com/beta\ntoken_endpoint = v2\n" BRAZIL(PB ", " PC));
        if (r)
                dump_errors(f);
        assert_int_equal(r, 0);
        assert_int_equal(cfg_n_accounts(f->cfg), 2);
        const struct cfg_microsoft *b = cfg_account(f->cfg, 1);
        assert_string_equal(b->name, "brazil");
        assert_string_equal(b->tenant, "softwareone-br.onmicrosoft.com");
        assert_string_equal(b->client_secret, "brazil-secret");
        assert_string_equal(b->api_url, "https://pc.example.com/v1");
        assert_string_equal(b->login_url, "https://login.microsoftonline.com");
        assert_string_equal(b->graph_url, "https://graph.example.com/beta");   /* inherited */
        assert_int_equal(b->token_endpoint, 2);
        assert_int_equal(b->n_partner_ids, 2);
        assert_ptr_equal(cfg_account_for_partner(f->cfg, PC), b);
        assert_ptr_equal(cfg_account_for_partner(f->cfg, PA), &f->cfg->microsoft);
        assert_null(cfg_account_for_partner(f->cfg, NULL));
        assert_null(cfg_account(f->cfg, 2));
        /* its own values win */
        assert_int_equal(load(f, BASE "[microsoft]\npartner_ids = " PA "\n" BRAZIL(PB)
                              "login_url = https://login.example.com\n"), 0);
        assert_string_equal(cfg_account(f->cfg, 1)->login_url, "https://login.example.com");
        assert_string_equal(f->cfg->microsoft.login_url, "https://login.microsoftonline.com");
        assert_int_equal(load(f, BASE "[microsoft]\npartner_ids = " PA "\n" BRAZIL(PB)
                              "graph_url = https://graph.example.com/v1.0\n"), 0);
        assert_string_equal(cfg_account(f->cfg, 1)->graph_url, "https://graph.example.com/v1.0");
        assert_string_equal(f->cfg->microsoft.graph_url, "https://graph.microsoft.com/v1.0");
        /* validated like the other endpoints: https, or http to loopback only */
        assert_int_equal(load(f, BASE "[microsoft]\ngraph_url = http://graph.example.com/v1.0\n"), -EINVAL);
        assert_true(errors_mention(f, "[microsoft] graph_url"));
}

static void test_account_errors(void **state) {
        struct fx *f = *state;
        write_in(f->dir, "br-secret", "brazil-secret\n", 0600);

        /* a partnerId listed twice: both places named */
        assert_int_equal(load(f, BASE "[microsoft]\npartner_ids = " PA "\n" BRAZIL(PB ", " PA)), -EINVAL);
        expect_only_error(f, 18, "[microsoft.brazil] partner_ids: partnerId " PA
                          " is also listed in [microsoft] (line 13)");
        assert_int_equal(load(f, BASE "[microsoft]\npartner_ids = " PA ", " PA "\n"), -EINVAL);
        expect_only_error(f, 13, "[microsoft] partner_ids: invalid partnerId (listed twice) '" PA "'");
        assert_int_equal(load(f, BASE "[microsoft]\npartner_ids = " PA "\n" BRAZIL(PB)
                              "[microsoft.chile]\ntenant = cl.onmicrosoft.com\nclient_id = x\n"
                              "client_secret_file = br-secret\npartner_ids = " PB "\n"), -EINVAL);
        expect_only_error(f, 23, "[microsoft.chile] partner_ids: partnerId " PB
                          " is also listed in [microsoft.brazil] (line 18)");
        /* not a GUID */
        assert_int_equal(load(f, BASE "[microsoft]\npartner_ids = softwareone\n"), -EINVAL);
        expect_only_error(f, 13, "[microsoft] partner_ids: invalid partnerId (not a GUID) 'softwareone'");
        /* several accounts: every one lists its partnerIds */
        assert_int_equal(load(f, BASE BRAZIL(PB)), -EINVAL);
        expect_only_error(f, 0, "[microsoft] partner_ids: missing required key (with [microsoft.NAME] "
                          "accounts every account lists the partnerIds it answers for)");
        assert_int_equal(load(f, BASE "[microsoft]\npartner_ids = " PA "\n[microsoft.brazil]\n"
                              "tenant = br.onmicrosoft.com\n"), -EINVAL);
        expect_error(f, 14, "[microsoft.brazil] client_id: missing required key");
        expect_error(f, 14, "[microsoft.brazil] client_secret_file: missing required key");
        expect_error(f, 14, "[microsoft.brazil] partner_ids: missing required key");
        assert_int_equal(f->err.n, 3);
        /* names: validated, never twice, "default" is [microsoft] */
        assert_int_equal(load(f, BASE "[microsoft]\npartner_ids = " PA "\n" BRAZIL(PB) BRAZIL(PC)), -EINVAL);
        expect_only_error(f, 19, "duplicate section [microsoft.brazil] (first on line 14)");
        assert_int_equal(load(f, BASE "[microsoft.default]\ntenant = x.onmicrosoft.com\n"), -EINVAL);
        expect_only_error(f, 12, "duplicate section [microsoft.default]: 'default' is the name of the "
                          "[microsoft] account");
        assert_int_equal(load(f, BASE "[microsoft.Brazil]\ntenant = x.onmicrosoft.com\n"), -EINVAL);
        expect_only_error(f, 12, "invalid account name in section [microsoft.Brazil] (use a-z, 0-9, '_' "
                          "and '-', at most 32 characters, starting with a letter or digit)");
        assert_int_equal(load(f, BASE "[microsoft.]\n"), -EINVAL);
        assert_int_equal(f->err.n, 1);
        assert_int_equal(load(f, BASE "[microsoft.-x]\n"), -EINVAL);
        assert_int_equal(f->err.n, 1);
        assert_int_equal(load(f, BASE "[microsoft.a23456789012345678901234567890123]\n"), -EINVAL);
        assert_int_equal(f->err.n, 1);
        /* one schedule for all; a key twice in one account section */
        assert_int_equal(load(f, BASE "[microsoft]\npartner_ids = " PA "\n" BRAZIL(PB) "check_schedule = 1min\n"),
                         -EINVAL);
        expect_only_error(f, 19, "[microsoft.brazil] check_schedule: applies to every account; set it in [microsoft]");
        assert_int_equal(load(f, BASE "[microsoft]\npartner_ids = " PA "\n" BRAZIL(PB) "tenant = y.onmicrosoft.com\n"),
                         -EINVAL);
        expect_only_error(f, 19, "[microsoft.brazil] tenant: duplicate key (first set on line 15)");
        /* its secret: named with its section */
        assert_int_equal(load(f, BASE "[microsoft]\npartner_ids = " PA "\n[microsoft.brazil]\n"
                              "tenant = br.onmicrosoft.com\nclient_id = x\nclient_secret_file = nope\n"
                              "partner_ids = " PB "\n"), -EINVAL);
        assert_int_equal(f->err.n, 1);
        assert_true(errors_mention(f, ":17: [microsoft.brazil] client_secret_file: cannot read "));
}

static void test_fuzz(void **state) {
        struct fx *f = *state;
        static const char alphabet[] = "[]=#; \t\r\n,<>@.:/abcdefghikmnoprstuwxyz0123456789_-\x80\xc3\xff";
        char buf[1024];

        /* Random bytes, and random text from the INI alphabet. */
        /* TEST_FUZZ_ITERATIONS=100000 for a longer run (e.g. under ASan). */
        const char *env = getenv("TEST_FUZZ_ITERATIONS");
        int iterations = env ? atoi(env) : 150;
        for (int i = 0; i < iterations; i++) {
                size_t len = rng() % sizeof(buf);
                for (size_t k = 0; k < len; k++)
                        buf[k] = (i % 2) ? (char) rng() : alphabet[rng() % (sizeof(alphabet) - 1)];
                fuzz_one(f, buf, len);
        }

        /* Mutations of a valid file: flipped bytes, inserted separators, cuts. */
        static const char base[] = BASE "cc = c@example.com\n[daemon]\nmax_response = 16M\n";
        char m[sizeof(base) + 16];
        for (int i = 0; i < 2 * iterations; i++) {
                size_t len = sizeof(base) - 1;
                memcpy(m, base, len);
                for (int k = 0; k < 1 + (int) (rng() % 4); k++) {
                        size_t at = rng() % len;
                        switch (rng() % 3) {
                        case 0: m[at] = (char) rng(); break;
                        case 1: m[at] = alphabet[rng() % (sizeof(alphabet) - 1)]; break;
                        default: len = at; break;
                        }
                        if (len == 0)
                                break;
                }
                fuzz_one(f, m, len);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_example_no_secrets, setup, teardown),
                cmocka_unit_test_setup_teardown(test_example_with_credentials, setup, teardown),
                cmocka_unit_test_setup_teardown(test_minimal_defaults, setup, teardown),
                cmocka_unit_test_setup_teardown(test_every_key, setup, teardown),
                cmocka_unit_test_setup_teardown(test_sizes, setup, teardown),
                cmocka_unit_test_setup_teardown(test_crlf_and_comments, setup, teardown),
                cmocka_unit_test_setup_teardown(test_unknown_section, setup, teardown),
                cmocka_unit_test_setup_teardown(test_unknown_key, setup, teardown),
                cmocka_unit_test_setup_teardown(test_key_outside_section, setup, teardown),
                cmocka_unit_test_setup_teardown(test_duplicate_key, setup, teardown),
                cmocka_unit_test_setup_teardown(test_missing_required, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_duration, setup, teardown),
                cmocka_unit_test_setup_teardown(test_duration_range, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_address, setup, teardown),
                cmocka_unit_test_setup_teardown(test_urls, setup, teardown),
                cmocka_unit_test_setup_teardown(test_ca_file, setup, teardown),
                cmocka_unit_test_setup_teardown(test_data_files, setup, teardown),
                cmocka_unit_test_setup_teardown(test_missing_secret, setup, teardown),
                cmocka_unit_test_setup_teardown(test_secret_readable_by_others, setup, teardown),
                cmocka_unit_test_setup_teardown(test_secret_resolution, setup, teardown),
                cmocka_unit_test_setup_teardown(test_state_directory, setup, teardown),
                cmocka_unit_test_setup_teardown(test_long_line, setup, teardown),
                cmocka_unit_test_setup_teardown(test_nul_and_utf8, setup, teardown),
                cmocka_unit_test_setup_teardown(test_file_limits, setup, teardown),
                cmocka_unit_test_setup_teardown(test_many_errors, setup, teardown),
                cmocka_unit_test_setup_teardown(test_quoting_in_errors, setup, teardown),
                cmocka_unit_test_setup_teardown(test_docs_name_every_key, setup, teardown),
                cmocka_unit_test_setup_teardown(test_secret_bom_crlf, setup, teardown),
                cmocka_unit_test_setup_teardown(test_proxy_and_orders_cap, setup, teardown),
                cmocka_unit_test_setup_teardown(test_cluster, setup, teardown),
                cmocka_unit_test_setup_teardown(test_accounts, setup, teardown),
                cmocka_unit_test_setup_teardown(test_account_errors, setup, teardown),
                cmocka_unit_test_setup_teardown(test_fuzz, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
