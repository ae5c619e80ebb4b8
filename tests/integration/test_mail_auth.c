/* SPDX-License-Identifier: MIT */
/*
 * SMTP 535 (issue 14): the real SMTP server (tests/tools/smtpd.py with
 * AUTH; aiosmtpd answers a wrong password with 535 5.7.8) refuses
 * partnerd's login.  That is a configuration error: exactly one
 * error-level line naming the server and the user, no per-message
 * warnings, the mails stay queued (nothing moved to outbox/failed), and once
 * the password is right the same server takes it.
 *
 * Queued mail is retried on its own timer: with poll_interval = 1h, a mail
 * the server refused once with 451 is delivered at its first back-off step
 * (1 min, lib/mailoutbox.c) by the running daemon, with no second cycle.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "harness.h"
#include "invariants.h"
#include "pdrun.h"
#include "smtp.h"
#include "util.h"

#define RUN_TIMEOUT_MS 120000
#define SMTP_USER "partnerd-relay"


static void set_password(struct inv_world *e, const char *pw) {
        char *p = NULL;
        assert_true(asprintf(&p, "%s/smtp-password", e->pd->creds) > 0);
        assert_int_equal(util_write_file_atomic(p, pw, strlen(pw), 0600), 0);
        free(p);
}

static int setup(void **state) {
        *state = inv_world_new(NULL, "tests/scenarios/basic.json",
                               &(struct harness_smtp_options) { .auth = SMTP_USER ":right-password" },
                               &(struct harness_pd_options) {
                                       .mail_extra = "username = " SMTP_USER "\npassword_file = smtp-password\n" });
        return *state ? 0 : -1;
}

static int teardown(void **state) {
        inv_world_free(*state);
        return 0;
}

static size_t count_lines(const char *text, const char *needle) {
        size_t n = 0;
        for (const char *p = text; p && (p = strstr(p, needle)); p += strlen(needle))
                n++;
        return n;
}

static void test_login_refused(void **state) {
        struct inv_world *e = *state;
        const char *once[] = { "--once", NULL };
        char path[1024], want[512];
        int status = -1;

        set_password(e, "wrong-password");
        assert_int_equal(harness_pd_run(e->pd, once, RUN_TIMEOUT_MS, &status), 0);
        char *err = harness_pd_output(e->pd, e->pd->runs, true);
        assert_non_null(err);
        snprintf(want, sizeof(want), "<3>SMTP server %s refused the login of user " SMTP_USER " (535",
                 harness_smtp_url(e->smtp));
        if (count_lines(err, want) != 1)
                fail_msg("expected one line \"%s...\", got:\n%s", want, err);
        /* no line per message on top of it */
        assert_int_equal(count_lines(err, "not sent (attempt"), 0);
        assert_null(strstr(err, "failed permanently"));
        free(err);
        assert_int_equal(harness_smtp_count(e->smtp), 0);
        snprintf(path, sizeof(path), "%s/outbox", e->pd->state_dir);
        size_t queued = harness_count_files(path);
        assert_true(queued >= 3);           /* Contoso, Fabrikam, the Draft warning */
        snprintf(path, sizeof(path), "%s/outbox/failed", e->pd->state_dir);
        assert_int_equal(harness_count_files(path), 0);

        /* the same server takes the right password: it was the login */
        set_password(e, "right-password");
        const char *test_mail[] = { "--send-test-mail", NULL };
        assert_int_equal(harness_pd_run(e->pd, test_mail, RUN_TIMEOUT_MS, &status), 0);
        assert_int_equal(status, 0);
}

static void test_retry_between_cycles(void **state) {
        struct inv_world *e = *state;
        harness_smtp_stop(e->smtp);
        harness_pd_free(e->pd);
        /* the first DATA gets 451: that mail is queued for a retry */
        assert_int_equal(harness_smtp_start(&(struct harness_smtp_options) { .fail_data = 1 }, &e->smtp), 0);
        struct harness_pd_options o = {
                .fake_base = e->fake.base_url,
                .smtp_url = harness_smtp_url(e->smtp),
                .scenario = e->scenario,
                .poll_interval = "1h",
        };
        assert_int_equal(harness_pd_setup(&o, &e->pd), 0);
        pid_t pid = harness_pd_spawn(e->pd, NULL);
        assert_true(pid > 0);
        /* 3 mails in the scenario (2 requests, 1 Draft warning): 2 at once,
         * the refused one after its back-off; wait at most 150 s */
        size_t n = 0;
        for (int i = 0; i < 1500 && (n = harness_smtp_count(e->smtp)) < 3; i++) {
                struct timespec ts = { 0, 100 * 1000 * 1000 };
                nanosleep(&ts, NULL);
        }
        assert_int_equal(harness_kill(pid, SIGTERM, 20000), 0);
        assert_int_equal(n, 3);
        char *err = harness_pd_output(e->pd, e->pd->runs, true);
        assert_non_null(err);
        /* one cycle only: the retry did not wait for (or cause) a poll */
        assert_int_equal(count_lines(err, "Cycle done in"), 1);
        assert_non_null(strstr(err, "not sent (attempt 1)"));
        free(err);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_login_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_retry_between_cycles, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
