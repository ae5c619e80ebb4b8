/* SPDX-License-Identifier: MIT */
/*
 * The metrics file (issue 14): the real partnerd binary against the fake
 * platform (tests/scenarios/basic.json) with [daemon] metrics_file.
 *
 *  - after a cycle the file holds the gauges with the numbers of the
 *    scenario (2 customers blocked on the reseller relationship, 1 Draft,
 *    1 order Querying for another reason), and no temp file is left;
 *  - `promtool check metrics` accepts it and `promtool check rules` accepts
 *    config/partnerd.rules.yml, and `promtool test rules` runs the alert
 *    unit tests of tests/prom/ (skipped when promtool is not installed:
 *    Debian package prometheus, scripts/deps.sh).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <unistd.h>
#include <cmocka.h>

#include "harness.h"
#include "pdrun.h"
#include "smtp.h"
#include "util.h"

#define RUN_TIMEOUT_MS 120000

struct env {
        struct harness_fake fake;
        struct harness_smtp *smtp;
        struct harness_pd *pd;
        char *scenario;
        char *extra;
        char *metrics;
};

static int setup_scenario(void **state, const char *scenario) {
        struct env *e = calloc(1, sizeof(*e));
        if (!e)
                return -1;
        e->scenario = harness_src_path(scenario);
        if (harness_fake_start(e->scenario, &e->fake) < 0 ||
            harness_smtp_start(&(struct harness_smtp_options) { 0 }, &e->smtp) < 0)
                return -1;
        char *dir = harness_tmpdir();
        if (!dir || asprintf(&e->metrics, "%s/partnerd.prom", dir) < 0 ||
            asprintf(&e->extra, "metrics_file = %s", e->metrics) < 0)
                return -1;
        free(dir);
        struct harness_pd_options o = {
                .fake_base = e->fake.base_url,
                .smtp_url = harness_smtp_url(e->smtp),
                .scenario = e->scenario,
                .ops = "ops@example.test",
                .daemon_extra = e->extra,
        };
        if (harness_pd_setup(&o, &e->pd) < 0)
                return -1;
        *state = e;
        return 0;
}

static int setup(void **state) {
        return setup_scenario(state, "tests/scenarios/basic.json");
}

static int setup_gdap(void **state) {
        return setup_scenario(state, "tests/scenarios/gdap.json");
}

static int teardown(void **state) {
        struct env *e = *state;
        if (!e)
                return 0;
        harness_pd_free(e->pd);
        harness_smtp_stop(e->smtp);
        (void) harness_fake_stop(&e->fake);
        char *slash = e->metrics ? strrchr(e->metrics, '/') : NULL;
        if (slash) {
                *slash = '\0';
                harness_rmrf(e->metrics);
        }
        free(e->metrics);
        free(e->extra);
        free(e->scenario);
        free(e);
        return 0;
}

static bool have_promtool(void) {
        return system("command -v promtool >/dev/null 2>&1") == 0;
}

static void test_metrics_file(void **state) {
        struct env *e = *state;
        int status = -1;
        const char *args[] = { "--once", NULL };
        char *text = NULL;

        assert_int_equal(harness_pd_run(e->pd, args, RUN_TIMEOUT_MS, &status), 0);
        assert_int_equal(status, 0);
        assert_int_equal(util_read_file(e->metrics, 1u << 20, &text, NULL), 0);
        const char *want[] = {
                "# TYPE partnerd_up gauge\n",
                "\npartnerd_up 0\n",      /* --once: written again as it stops */
                "\npartnerd_last_cycle_success_timestamp_seconds ",
                "\npartnerd_cycle_duration_seconds ",
                "\npartnerd_blocked_orders{kind=\"reseller\"} 2\n",
                "\npartnerd_blocked_orders{kind=\"gdap\"} 0\n",
                "\npartnerd_blocked_orders{kind=\"draft\"} 1\n",
                "\npartnerd_blocked_orders{kind=\"other\"} 1\n",
                "\npartnerd_pending_customers{account=\"default\"} 2\n",
                "\npartnerd_deadline_soonest_timestamp_seconds ",
        };
        for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
                if (!strstr(text, want[i]))
                        fail_msg("metrics file lacks \"%s\":\n%s", want[i], text);
        /* the success timestamp is a Unix time of today, not 0 */
        long long ts = atoll(strstr(text, "\npartnerd_last_cycle_success_timestamp_seconds ") + 47);
        assert_true(ts > util_now_wall() - 3600 && ts <= util_now_wall());

        /* written atomically: nothing else is left next to it */
        char *dir = strdup(e->metrics);
        *strrchr(dir, '/') = '\0';
        DIR *d = opendir(dir);
        size_t n = 0;
        for (struct dirent *de; d && (de = readdir(d)); )
                n += de->d_name[0] != '.';
        if (d)
                closedir(d);
        assert_int_equal(n, 1);
        free(dir);
        free(text);

        if (!have_promtool()) {
                fprintf(stderr, "skipped: promtool not installed (Debian package prometheus)\n");
                skip();
        }
        char cmd[2048];
        snprintf(cmd, sizeof(cmd), "promtool check metrics < '%s'", e->metrics);
        assert_int_equal(system(cmd), 0);
}

/* GDAP blocks are counted as their own kind (gdap.json: GDAP-only orders,
 * one of them on a relationship that expired, which is not blocked). */
static void test_gdap_kind(void **state) {
        struct env *e = *state;
        int status = -1;
        const char *args[] = { "--once", NULL };
        char *text = NULL;

        assert_int_equal(harness_pd_run(e->pd, args, RUN_TIMEOUT_MS, &status), 0);
        assert_int_equal(status, 0);
        assert_int_equal(util_read_file(e->metrics, 1u << 20, &text, NULL), 0);
        const char *g = strstr(text, "\npartnerd_blocked_orders{kind=\"gdap\"} ");
        assert_non_null(g);
        long n = atol(g + strlen("\npartnerd_blocked_orders{kind=\"gdap\"} "));
        if (n < 1)
                fail_msg("no GDAP block counted:\n%s", text);
        free(text);
}

static void test_rules(void **state) {
        (void) state;
        if (!have_promtool()) {
                fprintf(stderr, "skipped: promtool not installed (Debian package prometheus)\n");
                skip();
        }
        char *rules = harness_src_path("config/partnerd.rules.yml"), cmd[2048];
        snprintf(cmd, sizeof(cmd), "promtool check rules '%s' >/dev/null", rules);
        assert_int_equal(system(cmd), 0);
        free(rules);
        /* the alerts fire (and stay quiet) as meant, on synthetic series */
        char *unit = harness_src_path("tests/prom/partnerd.rules.test.yml");
        snprintf(cmd, sizeof(cmd), "promtool test rules '%s' >/dev/null", unit);
        assert_int_equal(system(cmd), 0);
        free(unit);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_metrics_file, setup, teardown),
                cmocka_unit_test_setup_teardown(test_gdap_kind, setup_gdap, teardown),
                cmocka_unit_test(test_rules),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
