/* SPDX-License-Identifier: MIT */
/*
 * Scale: one cycle over more Querying orders than lib/http queues at once
 * (HTTP_MAX_REQUESTS, 4096).  The benchmark's scenario generator
 * (bench/gen_scenario.py) writes 4,500 orders over 900 customers, half of
 * them blocked, every fourth customer accepted.  A --dry-run --once cycle
 * must still fetch every template, check every customer and re-read every
 * order it would process: the cycle keeps a bounded window of requests in
 * flight instead of submitting a whole phase at once.  (Dry run: the same
 * requests, without 1,000 mails to a test SMTP server.)
 *
 * Skipped under valgrind (VALGRIND=1): too slow there, and the ASan run
 * covers the same code.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <jansson.h>

#include "harness.h"
#include "pdrun.h"

#define N_ORDERS      4500
#define N_CUSTOMERS   (N_ORDERS / 5)
#define N_BLOCKED     (N_ORDERS / 2)
/* every fourth customer accepted; customers hold orders 5c..5c+4, of which
 * the even ones are blocked: 3 for even c, 2 for odd c */
#define N_PROCESS     (N_CUSTOMERS / 4 * 3)
#define RUN_TIMEOUT_MS 300000

struct env {
        char *tmp;
        char *scenario;
        struct harness_fake fake;
        bool fake_started;
        struct harness_pd *pd;
};

static int setup(void **state) {
        struct env *e = calloc(1, sizeof(*e));
        char *gen = harness_src_path("bench/gen_scenario.py");
        char n[16];
        int status = -1;

        if (!e || !gen)
                return -1;
        *state = e;
        e->tmp = harness_tmpdir();
        if (!e->tmp || asprintf(&e->scenario, "%s/scenario.json", e->tmp) < 0)
                return -1;
        snprintf(n, sizeof(n), "%d", N_ORDERS);
        char *argv[] = { "/usr/bin/python3", gen, n, e->scenario, NULL };
        pid_t pid = harness_spawn(argv, NULL, NULL, NULL);
        free(gen);
        if (pid < 0 || harness_wait(pid, 60000, &status) < 0 || status != 0)
                return -1;
        if (harness_fake_start(e->scenario, &e->fake) < 0)
                return -1;
        e->fake_started = true;
        struct harness_pd_options o = {
                .fake_base = e->fake.base_url,
                .smtp_url = "smtp://127.0.0.1:9",       /* never contacted in a dry run */
                .scenario = e->scenario,
                .daemon_extra = "max_parallel = 8",
        };
        return harness_pd_setup(&o, &e->pd) < 0 ? -1 : 0;
}

static int teardown(void **state) {
        struct env *e = *state;
        if (!e)
                return 0;
        harness_pd_free(e->pd);
        if (e->fake_started)
                (void) harness_fake_stop(&e->fake);
        harness_rmrf(e->tmp);
        free(e->tmp);
        free(e->scenario);
        free(e);
        return 0;
}

static void test_cycle_over_4096_orders(void **state) {
        struct env *e = *state;
        const char *args[] = { "--once", "--dry-run", NULL };
        int status = -1;

        if (getenv("VALGRIND")) {
                skip();
                return;
        }
        assert_int_equal(harness_pd_run(e->pd, args, RUN_TIMEOUT_MS, &status), 0);
        if (status != 0) {
                char *err = harness_pd_output(e->pd, 1, true);
                fprintf(stderr, "partnerd exited %d:\n%.4000s\n", status, err ? err : "");
                free(err);
        }
        assert_int_equal(status, 0);
        assert_int_equal(harness_fake_count(&e->fake, "GET", "/template"), N_ORDERS);
        assert_int_equal(harness_fake_count(&e->fake, "GET", "/v1/customers/"), N_CUSTOMERS);
        /* the re-read before a Process that the dry run does not send */
        int list = harness_fake_count(&e->fake, "GET", "/commerce/orders");
        int templates = harness_fake_count(&e->fake, "GET", "/template");
        int pages = (N_ORDERS + 99) / 100;
        assert_int_equal(list - templates - pages, N_PROCESS);
        assert_int_equal(harness_fake_count(&e->fake, "POST", "/process"), 0);

        char *err = harness_pd_output(e->pd, 1, true);
        assert_non_null(err);
        assert_null(strstr(err, "No buffer space"));
        char want[128];
        snprintf(want, sizeof(want), "%d orders, %d blocked", N_ORDERS, N_BLOCKED);
        assert_non_null(strstr(err, want));
        free(err);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_cycle_over_4096_orders, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
