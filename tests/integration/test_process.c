/* SPDX-License-Identifier: MIT */
/*
 * The Process call and what its answer means, end to end: the real
 * partnerd (--once) against the fake platform (tests/scenarios/basic.json,
 * realism on) and a real SMTP server.  Contoso has accepted; its Querying
 * order is processed under a scripted fault on the process route:
 *
 *  reset        the connection dies before any answer: the transport never
 *               re-sends the POST; the next run re-reads and processes it.
 *  reset-after  the platform acted, then the connection died: the next run
 *               re-reads, sees Processing, and sends nothing.
 *  race         the platform resumed the order itself just before the call
 *               (409): "moved on" is a success, --once exits 0.
 *  404          the order is gone: a success, --once exits 0.
 *  422 forever  refused: one POST, one mail to ops, never again in the
 *               episode however many runs follow.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <jansson.h>

#include "harness.h"
#include "invariants.h"
#include "pdrun.h"
#include "smtp.h"

#define CONTOSO_TENANT "6f1c2a7e-0b8d-4c55-9e41-2d7f0a3b9c10"
#define ORD_CONTOSO    "ORD-1001-0001-0001"
#define PROCESS_PATH   ORD_CONTOSO "/process"
#define OPS            "ops@example.test"
#define RUN_TIMEOUT_MS 120000

static int setup(void **state) {
        struct inv_world *w = calloc(1, sizeof(*w));
        char *path = harness_src_path("tests/scenarios/basic.json");
        json_t *sc = path ? json_load_file(path, 0, NULL) : NULL;
        free(path);
        *state = w;
        struct harness_pd_options o = { .ops = OPS };
        int r = w && sc ? inv_world_start(w, sc, NULL, &(struct harness_smtp_options) { 0 }, &o) : -ENOMEM;
        json_decref(sc);
        if (r >= 0)
                r = harness_fake_accept(&w->fake, CONTOSO_TENANT);
        return r < 0 ? -1 : 0;
}

static int teardown(void **state) {
        struct inv_world *w = *state;
        if (w)
                inv_world_stop(w);
        free(w);
        return 0;
}

static int run_once(struct inv_world *e) {
        int status = -1;
        const char *args[] = { "--once", NULL };
        assert_int_equal(harness_pd_run(e->pd, args, RUN_TIMEOUT_MS, &status), 0);
        return status;
}

static void fault(struct inv_world *e, const char *json) {
        assert_int_equal(harness_fake_fault(&e->fake, json), 0);
}

static int posts(struct inv_world *e) {
        return harness_fake_count(&e->fake, "POST", PROCESS_PATH);
}

static void assert_status(struct inv_world *e, const char *want) {
        char *st = harness_fake_order_status(&e->fake, ORD_CONTOSO);
        assert_non_null(st);
        assert_string_equal(st, want);
        free(st);
}

/* partnerd's stderr of the last run contains needle */
static bool last_err_has(struct inv_world *e, const char *needle) {
        char *err = harness_pd_output(e->pd, e->pd->runs, true);
        bool has = err && strstr(err, needle);
        if (!has)
                fprintf(stderr, "run %d stderr lacks \"%s\":\n%s\n", e->pd->runs, needle, err ? err : "");
        free(err);
        return has;
}

/* Mails to ops whose subject contains needle. */
static size_t ops_mails(struct inv_world *e, const char *needle) {
        size_t n = 0;
        for (size_t i = 0; i < harness_smtp_count(e->smtp); i++) {
                json_t *m = harness_smtp_parse(e->smtp, i);
                json_t *rcpt = json_object_get(json_object_get(m, "envelope"), "rcpt_tos");
                const char *subj = json_string_value(json_object_get(json_object_get(m, "headers"), "Subject"));
                const char *r0 = json_string_value(json_array_get(rcpt, 0));
                if (json_array_size(rcpt) == 1 && r0 && strcasecmp(r0, OPS) == 0 && subj && strstr(subj, needle))
                        n++;
                json_decref(m);
        }
        return n;
}

/* The engine re-sends a Process whose outcome stayed unknown only from a
 * later second than the one it was decided in (lib/engine.c
 * resend_unknown): back-to-back --once runs wait for the clock. */
static void next_second(void) {
        time_t t0 = time(NULL);
        while (time(NULL) == t0)
                usleep(20 * 1000);
}

static void test_reset_never_resent(void **state) {
        struct inv_world *e = *state;
        fault(e, "{\"route\":\"process\",\"action\":\"reset\",\"times\":1}");
        (void) run_once(e);            /* an unknown outcome: the run fails */
        /* libcurl would re-send the POST on a new connection by itself */
        assert_int_equal(posts(e), 1);
        assert_status(e, "Querying");
        next_second();
        assert_int_equal(run_once(e), 0);
        assert_int_equal(posts(e), 2);  /* the re-read showed it untouched */
        assert_status(e, "Processing");
        assert_int_equal(run_once(e), 0);
        assert_int_equal(posts(e), 2);
}

static void test_reset_after_the_platform_acted(void **state) {
        struct inv_world *e = *state;
        fault(e, "{\"route\":\"process\",\"action\":\"reset-after\",\"times\":1}");
        (void) run_once(e);
        assert_int_equal(posts(e), 1);
        assert_status(e, "Processing");
        assert_int_equal(run_once(e), 0);
        assert_int_equal(run_once(e), 0);
        assert_int_equal(posts(e), 1);  /* settled by reading, never a second POST */
}

static void test_race_409_is_moved_on(void **state) {
        struct inv_world *e = *state;
        fault(e, "{\"route\":\"process\",\"action\":\"race\",\"times\":1}");
        assert_int_equal(run_once(e), 0);
        assert_int_equal(posts(e), 1);
        assert_status(e, "Processing");
        assert_true(last_err_has(e, "already moved on"));
        assert_false(last_err_has(e, "<3>"));   /* no error line */
        assert_int_equal(run_once(e), 0);
        assert_int_equal(posts(e), 1);
}

static void test_404_is_gone(void **state) {
        struct inv_world *e = *state;
        fault(e, "{\"route\":\"process\",\"status\":404,\"body\":\"{\\\"status\\\":404,\\\"title\\\":"
                 "\\\"Not Found\\\"}\",\"times\":1}");
        assert_int_equal(run_once(e), 0);
        assert_int_equal(posts(e), 1);
        assert_true(last_err_has(e, "no longer exists"));
}

static void test_refused_once_per_episode(void **state) {
        struct inv_world *e = *state;
        fault(e, "{\"route\":\"process\",\"status\":422,\"body\":\"{\\\"status\\\":422,\\\"title\\\":"
                 "\\\"Unprocessable\\\",\\\"detail\\\":\\\"Parameter X is invalid\\\"}\",\"times\":0}");
        (void) run_once(e);
        assert_true(last_err_has(e, "refused Process"));
        for (int i = 0; i < 3; i++)
                (void) run_once(e);
        assert_int_equal(posts(e), 1);
        assert_status(e, "Querying");
        assert_int_equal(ops_mails(e, "refused Process"), 1);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_reset_never_resent, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reset_after_the_platform_acted, setup, teardown),
                cmocka_unit_test_setup_teardown(test_race_409_is_moved_on, setup, teardown),
                cmocka_unit_test_setup_teardown(test_404_is_gone, setup, teardown),
                cmocka_unit_test_setup_teardown(test_refused_once_per_episode, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
