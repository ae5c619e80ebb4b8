/* SPDX-License-Identifier: MIT */
/*
 * fuzz_config: cfg_load() on arbitrary partnerd.conf text (written to a
 * temporary file, loaded with CFG_NO_SECRETS).
 *
 * Properties: no crash, leak or UB; the result agrees with the error list
 * (0 and no errors, or -EINVAL and at least one); every error is one
 * bounded line without control characters; a loaded config holds the
 * invariants the daemon relies on (no control characters in strings,
 * positive intervals, warning shorter than the deadline, smtp_url present
 * for the smtp transport).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "fuzz.h"

static char tmpdir[] = "/tmp/partnerd-fuzz-config-XXXXXX";
static char path[sizeof(tmpdir) + 32];

static void cleanup(void) {
        unlink(path);
        rmdir(tmpdir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        (void) argc;
        (void) argv;
        if (!mkdtemp(tmpdir))
                abort();
        snprintf(path, sizeof(path), "%s/partnerd.conf", tmpdir);
        atexit(cleanup);
        /* The default state_dir, not the environment's. */
        unsetenv("STATE_DIRECTORY");
        unsetenv("CREDENTIALS_DIRECTORY");
        return 0;
}

static void check_str(const char *what, const char *s) {
        if (!s)
                return;
        FUZZ_CHECK(fuzz_find_ctl(s, false) < 0, "%s has a control character", what);
        FUZZ_CHECK(fuzz_utf8_valid(s, strlen(s)), "%s is not UTF-8", what);
}

static void check_strv(const char *what, char **v, size_t n) {
        FUZZ_CHECK(n == 0 || v, "%s: %zu items but no array", what, n);
        for (size_t i = 0; i < n; i++) {
                FUZZ_CHECK(v[i] && v[i][0], "%s[%zu] empty", what, i);
                check_str(what, v[i]);
        }
}

static void check_url(const char *what, const char *s) {
        if (!s)
                return;
        check_str(what, s);
        FUZZ_CHECK(!strpbrk(s, " \t"), "%s has whitespace: '%s'", what, s);
}

static void check_cfg(const struct cfg *c) {
        check_url("marketplace.url", c->marketplace.url);
        FUZZ_CHECK(c->marketplace.url, "marketplace.url missing in a loaded config");
        check_url("marketplace.portal_url", c->marketplace.portal_url);
        check_str("marketplace.token_file", c->marketplace.token_file);
        check_str("marketplace.ca_file", c->marketplace.ca_file);
        check_strv("marketplace.products", c->marketplace.products, c->marketplace.n_products);
        FUZZ_CHECK(c->marketplace.poll_interval > 0, "poll_interval %lld",
                   (long long) c->marketplace.poll_interval);

        check_url("microsoft.login_url", c->microsoft.login_url);
        check_url("microsoft.api_url", c->microsoft.api_url);
        check_str("microsoft.tenant", c->microsoft.tenant);
        check_str("microsoft.client_id", c->microsoft.client_id);
        FUZZ_CHECK(c->microsoft.token_endpoint == 1 || c->microsoft.token_endpoint == 2,
                   "token_endpoint %d", c->microsoft.token_endpoint);
        FUZZ_CHECK(c->microsoft.n_check_schedule >= 1 && c->microsoft.check_schedule,
                   "empty check_schedule");
        for (size_t i = 0; i < c->microsoft.n_check_schedule; i++)
                FUZZ_CHECK(c->microsoft.check_schedule[i] > 0, "check_schedule[%zu] = %lld", i,
                           (long long) c->microsoft.check_schedule[i]);

        const struct cfg_mail *m = &c->mail;
        FUZZ_CHECK(m->transport == CFG_TRANSPORT_SMTP || m->transport == CFG_TRANSPORT_SENDMAIL,
                   "transport %d", (int) m->transport);
        if (m->transport == CFG_TRANSPORT_SMTP)
                FUZZ_CHECK(m->smtp_url, "smtp transport without smtp_url");
        check_url("mail.smtp_url", m->smtp_url);
        check_str("mail.username", m->username);
        check_str("mail.sendmail_path", m->sendmail_path);
        check_str("mail.from", m->from);
        check_str("mail.template_dir", m->template_dir);
        check_strv("mail.to", m->to, m->n_to);
        check_strv("mail.cc", m->cc, m->n_cc);
        check_strv("mail.bcc", m->bcc, m->n_bcc);
        check_strv("mail.ops", m->ops, m->n_ops);
        check_strv("mail.url_hosts", m->url_hosts, m->n_url_hosts);
        FUZZ_CHECK(m->reminder_interval > 0, "reminder_interval %lld",
                   (long long) m->reminder_interval);
        FUZZ_CHECK(m->max_reminders >= 0, "max_reminders %d", m->max_reminders);
        FUZZ_CHECK(m->deadline > 0 && m->deadline_warning >= 0 &&
                   m->deadline_warning < m->deadline, "deadline %lld, warning %lld",
                   (long long) m->deadline, (long long) m->deadline_warning);

        const struct cfg_daemon *d = &c->daemon;
        FUZZ_CHECK(d->state_dir && d->state_dir[0] == '/', "state_dir not absolute");
        check_str("daemon.state_dir", d->state_dir);
        FUZZ_CHECK(d->retention >= 0, "retention %lld", (long long) d->retention);
        FUZZ_CHECK(d->max_parallel >= 1, "max_parallel %d", d->max_parallel);
        FUZZ_CHECK(d->http_timeout > 0 && d->connect_timeout > 0 &&
                   d->connect_timeout <= d->http_timeout, "timeouts %lld/%lld",
                   (long long) d->connect_timeout, (long long) d->http_timeout);
        FUZZ_CHECK(d->max_response > 0, "max_response 0");
        check_strv("warnings", c->warnings, c->n_warnings);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        FILE *f = fopen(path, "we");
        if (!f)
                abort();
        if (size && fwrite(data, 1, size, f) != size)
                abort();
        if (fclose(f) != 0)
                abort();

        struct cfg *c = NULL;
        struct cfg_errors errors = { 0 };
        int r = cfg_load(path, CFG_NO_SECRETS, &c, &errors);

        FUZZ_CHECK(r == 0 || r == -EINVAL, "cfg_load returned %d", r);
        if (r == 0) {
                FUZZ_CHECK(c, "success without a config");
                FUZZ_CHECK(errors.n == 0, "success with %zu errors", errors.n);
                check_cfg(c);
        } else {
                FUZZ_CHECK(!c, "failure with a config");
                FUZZ_CHECK(errors.n > 0, "-EINVAL without an error message");
        }
        for (size_t i = 0; i < errors.n; i++) {
                const char *e = errors.items[i];
                FUZZ_CHECK(e && strncmp(e, path, strlen(path)) == 0, "error without FILE: '%s'",
                           e ? e : "(null)");
                FUZZ_CHECK(fuzz_find_ctl(e, false) < 0, "control character in error '%s'", e);
                FUZZ_CHECK(strlen(e) <= 1024, "error of %zu bytes", strlen(e));
        }
        cfg_errors_clear(&errors);
        cfg_free(c);
        return 0;
}
