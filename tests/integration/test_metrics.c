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
 *    Debian package prometheus, scripts/deps.sh);
 *  - the counters kept in the state: after a run they hold exactly what
 *    the other side saw (mails by kind as the SMTP server got them,
 *    HTTP requests by API and status class as the fake logged them); a
 *    restarted partnerd goes on from there (a second run adds to them);
 *    --dry-run counts nothing; an SMTP 535 counts a mail failure per
 *    attempt; a Process answered 409 counts outcome "moved"; mail sent by
 *    the retry timer between cycles is saved too.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
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

struct env {
        struct harness_fake fake;
        struct harness_smtp *smtp;
        struct harness_pd *pd;
        char *scenario;
        char *extra;
        char *metrics;
};

static int setup_with(void **state, const char *scenario, const struct harness_smtp_options *so,
                      const char *mail_extra, const char *poll_interval) {
        struct env *e = calloc(1, sizeof(*e));
        if (!e)
                return -1;
        e->scenario = harness_src_path(scenario);
        if (harness_fake_start(e->scenario, &e->fake) < 0 || harness_smtp_start(so, &e->smtp) < 0)
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
                .mail_extra = mail_extra,
                .poll_interval = poll_interval,
        };
        if (harness_pd_setup(&o, &e->pd) < 0)
                return -1;
        *state = e;
        return 0;
}

static int setup_scenario(void **state, const char *scenario) {
        return setup_with(state, scenario, &(struct harness_smtp_options) { 0 }, NULL, NULL);
}

#define SMTP_USER "partnerd-relay"

/* The SMTP server wants a login partnerd gets wrong: 535. */
static int setup_535(void **state) {
        if (setup_with(state, "tests/scenarios/basic.json",
                       &(struct harness_smtp_options) { .auth = SMTP_USER ":right-password" },
                       "username = " SMTP_USER "\npassword_file = smtp-password\n", NULL) < 0)
                return -1;
        struct env *e = *state;
        char *p = NULL;
        if (asprintf(&p, "%s/smtp-password", e->pd->creds) < 0)
                return -1;
        int r = util_write_file_atomic(p, "wrong-password", 14, 0600);
        free(p);
        return r;
}

/* The first DATA gets 451; one cycle per hour: the retry timer sends it. */
static int setup_retry(void **state) {
        return setup_with(state, "tests/scenarios/basic.json", &(struct harness_smtp_options) { .fail_data = 1 },
                          NULL, "1h");
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

/* ---- counters ---- */

/* The value of the sample "series" (name and labels as written), -1 when
 * the file has no such sample. */
static long long sample(const char *text, const char *series) {
        size_t n = strlen(series);
        for (const char *p = text; (p = strstr(p, series)); p += n)
                if ((p == text || p[-1] == '\n') && p[n] == ' ')
                        return atoll(p + n + 1);
        return -1;
}

static char *read_metrics(struct env *e) {
        char *text = NULL;
        assert_int_equal(util_read_file(e->metrics, 1u << 20, &text, NULL), 0);
        return text;
}

static long long mails_sent(const char *text, const char *kind) {
        char series[128];
        snprintf(series, sizeof(series), "partnerd_mails_sent_total{kind=\"%s\"}", kind);
        return sample(text, series);
}

static long long process_total(const char *text, const char *outcome) {
        char series[128];
        snprintf(series, sizeof(series), "partnerd_process_total{outcome=\"%s\"}", outcome);
        return sample(text, series);
}

static const char *const KINDS[] = { "new-request", "reminder", "final-warning", "confirmation",
                                     "draft-warning", "ops-notice" };
#define N_KINDS (sizeof(KINDS) / sizeof(KINDS[0]))

/* partnerd_mails_sent_total{kind} is what the SMTP server stored, by the
 * kind its subject shows; the sum of all kinds is every stored mail. */
static void assert_mails_match_server(struct env *e, const char *text) {
        long long want[N_KINDS] = { 0 }, sum = 0;
        size_t n = harness_smtp_count(e->smtp);
        for (size_t i = 0; i < n; i++) {
                json_t *m = harness_smtp_parse(e->smtp, i);
                assert_non_null(m);
                const char *kind = inv_mail_kind(json_string_value(json_object_get(m, "subject")));
                for (size_t k = 0; k < N_KINDS; k++)
                        want[k] += strcmp(kind, KINDS[k]) == 0;
                json_decref(m);
        }
        for (size_t k = 0; k < N_KINDS; k++)
                if (mails_sent(text, KINDS[k]) != want[k]) {
                        fprintf(stderr, "mails_sent{kind=\"%s\"} is %lld, the SMTP server got %lld:\n%s\n",
                                KINDS[k], mails_sent(text, KINDS[k]), want[k], text);
                        fail();
                }
        for (const char *p = text; (p = strstr(p, "\npartnerd_mails_sent_total{")); p++)
                sum += atoll(strchr(p, ' ') + 1);
        assert_int_equal(sum, (long long) n);
}

enum { API_MARKETPLACE, API_PARTNERCENTER, API_GRAPH, API_TOKEN, N_APIS };
static const char *const APIS[N_APIS] = { "marketplace", "partnercenter", "graph", "token" };
static const char *const CLASSES[] = { "2xx", "3xx", "4xx", "5xx", "error" };
#define N_CLASSES (sizeof(CLASSES) / sizeof(CLASSES[0]))

/* partnerd_http_requests_total{api,status_class} is what the fake logged,
 * request by request (its log spans every run against it). */
static void assert_http_matches_fake(struct env *e, const char *text) {
        long long want[N_APIS][N_CLASSES] = { { 0 } };
        json_t *log = harness_fake_log(&e->fake), *rec;
        size_t i;
        assert_non_null(log);
        json_array_foreach(log, i, rec) {
                const char *path = json_string_value(json_object_get(rec, "path"));
                long st = (long) json_integer_value(json_object_get(rec, "status"));
                int api = !path ? -1 : strncmp(path, "/public/v1/", 11) == 0 ? API_MARKETPLACE
                        : strstr(path, "/oauth2/") ? API_TOKEN : strncmp(path, "/v1.0/", 6) == 0 ? API_GRAPH
                        : strncmp(path, "/v1/", 4) == 0 ? API_PARTNERCENTER : -1;
                assert_true(api >= 0);
                size_t c = st >= 200 && st <= 599 ? (size_t) (st / 100 - 2) : N_CLASSES - 1;
                want[api][c]++;
        }
        json_decref(log);
        for (size_t a = 0; a < N_APIS; a++)
                for (size_t c = 0; c < N_CLASSES; c++) {
                        char series[160];
                        snprintf(series, sizeof(series),
                                 "partnerd_http_requests_total{api=\"%s\",status_class=\"%s\"}", APIS[a], CLASSES[c]);
                        long long got = sample(text, series);
                        if (got != want[a][c] && !(got == -1 && want[a][c] == 0)) {
                                fprintf(stderr, "%s is %lld, the fake logged %lld:\n%s\n", series, got,
                                        want[a][c], text);
                                fail();
                        }
                }
}

static char *state_text(struct env *e) {
        char path[1024], *text = NULL;
        snprintf(path, sizeof(path), "%s/state.json", e->pd->state_dir);
        assert_int_equal(util_read_file(path, 64u << 20, &text, NULL), 0);
        return text;
}

static void run_once(struct env *e, const char *extra_arg) {
        const char *args[] = { "--once", extra_arg, NULL };
        int status = -1;
        assert_int_equal(harness_pd_run(e->pd, args, RUN_TIMEOUT_MS, &status), 0);
        if (status != 0) {
                char *err = harness_pd_output(e->pd, e->pd->runs, true);
                fprintf(stderr, "run %d exited %d:\n%s\n", e->pd->runs, status, err ? err : "");
                fail();
        }
}

/* After a run the counters are exactly what the SMTP server and the fake
 * saw; a restarted partnerd continues them (the fake's log and the SMTP
 * server span both runs); --dry-run changes none of them. */
static void test_counters_exact_across_restarts(void **state) {
        struct env *e = *state;
        run_once(e, NULL);
        char *text = read_metrics(e);
        assert_int_equal(mails_sent(text, "new-request"), 2);      /* Contoso, Fabrikam */
        assert_int_equal(mails_sent(text, "draft-warning"), 1);
        assert_int_equal(mails_sent(text, "confirmation"), 0);
        assert_mails_match_server(e, text);
        assert_int_equal(sample(text, "partnerd_mail_failures_total"), 0);
        for (size_t i = 0; i < 5; i++)
                assert_int_equal(process_total(text, (const char *[]) { "done", "moved", "gone", "refused",
                                                                        "unknown" }[i]), 0);
        assert_http_matches_fake(e, text);
        assert_true(sample(text, "partnerd_http_requests_total{api=\"marketplace\",status_class=\"2xx\"}") > 0);
        free(text);

        /* Contoso accepts: the second partnerd processes its order */
        assert_int_equal(harness_fake_accept(&e->fake, "contoso.onmicrosoft.com"), 0);
        sleep(1);   /* the engine decides again from a later second */
        run_once(e, NULL);
        text = read_metrics(e);
        assert_int_equal(process_total(text, "done"), 1);
        assert_int_equal(mails_sent(text, "new-request"), 2);      /* still the first run's */
        assert_int_equal(mails_sent(text, "confirmation"), 1);
        assert_mails_match_server(e, text);
        assert_http_matches_fake(e, text);
        free(text);

        /* --dry-run counts nothing: the state and the metrics file stay */
        char *before = state_text(e), *metrics_before = read_metrics(e);
        assert_non_null(strstr(before, "\"counters\": {"));
        run_once(e, "--dry-run");
        char *after = state_text(e), *metrics_after = read_metrics(e);
        assert_string_equal(before, after);
        assert_string_equal(metrics_before, metrics_after);
        free(before);
        free(after);
        free(metrics_before);
        free(metrics_after);
}

/* SMTP 535: every message tried is a failed delivery attempt. */
static void test_counters_535(void **state) {
        struct env *e = *state;
        char path[1024];
        run_once(e, NULL);
        char *text = read_metrics(e);
        snprintf(path, sizeof(path), "%s/outbox", e->pd->state_dir);
        size_t queued = harness_count_files(path);
        assert_true(queued >= 3);
        assert_int_equal(harness_smtp_count(e->smtp), 0);
        /* each queued message was tried once (the next try is a minute away) */
        if (sample(text, "partnerd_mail_failures_total") != (long long) queued) {
                fprintf(stderr, "%zu messages queued, mail_failures:\n%s\n", queued, text);
                fail();
        }
        assert_mails_match_server(e, text);
        free(text);
}

/* The platform resumes the order between our re-read and our Process:
 * 409, outcome "moved" (tests/fakes/README.md, fault set_status). */
static void test_counters_process_moved(void **state) {
        struct env *e = *state;
        assert_int_equal(harness_fake_accept(&e->fake, "fabrikam.onmicrosoft.com"), 0);
        assert_int_equal(harness_fake_fault(&e->fake, "{\"route\":\"process\",\"match\":\"ORD-1001-0001-0005\","
                                                      "\"set_status\":\"Processing\",\"times\":1}"), 0);
        run_once(e, NULL);
        char *text = read_metrics(e);
        assert_int_equal(harness_fake_count(&e->fake, "POST", "/orders/ORD-1001-0001-0005/process"), 1);
        assert_int_equal(process_total(text, "moved"), 1);
        assert_int_equal(process_total(text, "done"), 0);
        assert_int_equal(process_total(text, "unknown"), 0);
        assert_http_matches_fake(e, text);
        free(text);
}

/* A mail the server refused once (451) goes out on the retry timer, with
 * no second cycle; what that flush counted is saved: the next partnerd
 * starts from it. */
static void test_counters_retry_timer_saved(void **state) {
        struct env *e = *state;
        pid_t pid = harness_pd_spawn(e->pd, NULL);
        assert_true(pid > 0);
        /* 4 mails (2 requests, the Draft warning, the ops notice): one
         * refused, sent at its first back-off step (1 min); at most 150 s */
        size_t n = 0;
        for (int i = 0; i < 1500 && (n = harness_smtp_count(e->smtp)) < 4; i++) {
                struct timespec ts = { 0, 100 * 1000 * 1000 };
                nanosleep(&ts, NULL);
        }
        /* the flush's save follows the server's answer: give it a moment */
        sleep(1);
        assert_int_equal(harness_kill(pid, SIGTERM, 20000), 0);
        assert_int_equal(n, 4);
        char *err = harness_pd_output(e->pd, e->pd->runs, true);
        assert_non_null(err);
        assert_non_null(strstr(err, "not sent (attempt 1)"));
        free(err);
        /* a new partnerd: one cycle, nothing new to mail */
        run_once(e, NULL);
        assert_int_equal(harness_smtp_count(e->smtp), 4);
        char *text = read_metrics(e);
        assert_mails_match_server(e, text);
        assert_int_equal(sample(text, "partnerd_mail_failures_total"), 1);
        assert_http_matches_fake(e, text);
        free(text);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_metrics_file, setup, teardown),
                cmocka_unit_test_setup_teardown(test_gdap_kind, setup_gdap, teardown),
                cmocka_unit_test(test_rules),
                cmocka_unit_test_setup_teardown(test_counters_exact_across_restarts, setup, teardown),
                cmocka_unit_test_setup_teardown(test_counters_535, setup_535, teardown),
                cmocka_unit_test_setup_teardown(test_counters_process_moved, setup, teardown),
                cmocka_unit_test_setup_teardown(test_counters_retry_timer_saved, setup_retry, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
