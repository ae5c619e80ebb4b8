/* SPDX-License-Identifier: MIT */
/*
 * Crash consistency: the real partnerd (repeated --once runs) against the
 * fake platform (with latency, so a cycle lasts long enough to be cut in
 * every phase) and a real SMTP server, killed with SIGKILL at a random
 * instant of its cycle, again and again, then restarted.  Customers accept
 * during the run (the fake's control route, or on their own after some
 * checks).  At the end partnerd runs to completion and the invariants are
 * checked from the fake's request log and the mailbox:
 *
 *   - no order processed twice (POST .../process answered 200 at most once
 *     per order) and never a Process on a Draft;
 *   - every customer that was blocked got its acceptance request;
 *   - duplicate mails (per customer and kind) <= number of kills;
 *   - the state is loadable after every kill (`partnerd status --json`
 *     exits 0 and store_from_json accepts the file);
 *   - every accepted customer's Querying orders end Processing, the others
 *     stay Querying, Drafts stay Draft;
 *   - a run that is not killed exits 0 or 1, never on a signal.
 *
 * CRASH_SEED, CRASH_KILLS, CRASH_LATENCY_MS override the defaults; the seed
 * is printed so a failure can be replayed.  Under valgrind (VALGRIND=1 or
 * PARTNERD_WRAPPER) the number of kills drops to 10.
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <jansson.h>

#include "harness.h"
#include "invariants.h"
#include "pdrun.h"
#include "smtp.h"
#include "util.h"

#define SERIES            2001
#define DEFAULT_SEED      20261125u
#define DEFAULT_KILLS     120
#define SLOW_KILLS        10
#define DEFAULT_LATENCY   10
#define RUN_TIMEOUT_MS    120000
#define FINAL_RUNS_MAX    12

enum accept_how { ACC_NEVER, ACC_START, ACC_CONTROL_1, ACC_CONTROL_2, ACC_CHECKS };

static const struct {
        struct inv_customer c;
        enum accept_how how;
} CUSTOMERS[] = {
        { { .name = "Alpha Crash Ltd", .domain = "alpha-crash.onmicrosoft.com",
            .tenant_id = "a1a1a1a1-0000-4000-8000-000000000001", .n_querying = 2 }, ACC_CONTROL_1 },
        { { .name = "Beta Crash Inc", .domain = "beta-crash.onmicrosoft.com",
            .tenant_id = "b2b2b2b2-0000-4000-8000-000000000002", .n_querying = 1,
            .accept_after_checks = 4 }, ACC_CHECKS },
        { { .name = "Gamma Crash AG", .domain = "gamma-crash.onmicrosoft.com",
            .tenant_id = "c3c3c3c3-0000-4000-8000-000000000003", .n_querying = 1, .n_draft = 1 }, ACC_NEVER },
        { { .name = "Delta Crash SA", .domain = "delta-crash.onmicrosoft.com",
            .tenant_id = "d4d4d4d4-0000-4000-8000-000000000004", .n_querying = 2,
            .accepted = true }, ACC_START },
        { { .name = "Epsilon Crash BV", .domain = "epsilon-crash.onmicrosoft.com",
            .tenant_id = "e5e5e5e5-0000-4000-8000-000000000005", .n_querying = 1,
            .order_without_tenant = true }, ACC_CONTROL_2 },
        { { .name = "Zeta Crash Oy", .domain = "zeta-crash.onmicrosoft.com",
            .tenant_id = "f6f6f6f6-0000-4000-8000-000000000006", .n_querying = 1 }, ACC_NEVER },
};
#define N_CUSTOMERS (sizeof(CUSTOMERS) / sizeof(CUSTOMERS[0]))

struct env {
        struct harness_fake fake;
        struct harness_smtp *smtp;
        struct harness_pd *pd;
        char *dir;
        char *scenario;
        const char *domains[N_CUSTOMERS];
};

static int setup(void **state) {
        struct env *e = calloc(1, sizeof(*e));
        struct inv_customer cust[N_CUSTOMERS];
        char latency[16];
        json_t *sc;

        if (!e)
                return -1;
        *state = e;
        for (size_t i = 0; i < N_CUSTOMERS; i++) {
                cust[i] = CUSTOMERS[i].c;
                e->domains[i] = CUSTOMERS[i].c.domain;
        }
        e->dir = harness_tmpdir();
        sc = inv_scenario_new(cust, N_CUSTOMERS, SERIES);
        if (!e->dir || !sc)
                return -1;
        e->scenario = inv_scenario_write(sc, e->dir, "crash.json");
        json_decref(sc);
        if (!e->scenario)
                return -1;
        snprintf(latency, sizeof(latency), "%lu", inv_env_ulong("CRASH_LATENCY_MS", DEFAULT_LATENCY));
        const char *fake_args[] = { "--latency-ms", latency, NULL };
        if (harness_fake_start_args(e->scenario, fake_args, &e->fake) < 0 ||
            harness_smtp_start(&(struct harness_smtp_options) { 0 }, &e->smtp) < 0)
                return -1;
        struct harness_pd_options o = {
                .fake_base = e->fake.base_url,
                .smtp_url = harness_smtp_url(e->smtp),
                .scenario = e->scenario,
        };
        return harness_pd_setup(&o, &e->pd) < 0 ? -1 : 0;
}

static int teardown(void **state) {
        struct env *e = *state;
        if (!e)
                return 0;
        harness_pd_free(e->pd);
        harness_smtp_stop(e->smtp);
        if (e->fake.pid > 0)
                (void) harness_fake_stop(&e->fake);
        if (e->dir && !getenv("HARNESS_KEEP"))
                harness_rmrf(e->dir);
        free(e->dir);
        free(e->scenario);
        free(e);
        return 0;
}

/* Prints the stderr of run n when something went wrong. */
static void dump_run(struct env *e, int run, const char *why) {
        char *err = harness_pd_output(e->pd, run, true);
        fprintf(stderr, "crash: run %d %s; its stderr:\n%s\n", run, why, err ? err : "(none)");
        free(err);
}

/* The state must load, both in-process and through `partnerd status --json`. */
static void assert_state_loadable(struct env *e, size_t kill_no) {
        char *err = NULL;
        int status = -1;
        int r = inv_state_loadable(e->pd->state_dir, &err);
        if (r < 0)
                fprintf(stderr, "crash: after kill %zu the state does not load: %s\n", kill_no, err ? err : "?");
        free(err);
        assert_int_equal(r, 0);
        const char *args[] = { "status", "--json", NULL };
        assert_int_equal(harness_pd_run(e->pd, args, RUN_TIMEOUT_MS, &status), 0);
        if (status != 0)
                dump_run(e, e->pd->runs, "(status --json) failed");
        assert_int_equal(status, 0);
        char *out = harness_pd_output(e->pd, e->pd->runs, false);
        json_t *j = out ? json_loads(out, 0, NULL) : NULL;
        assert_non_null(j);
        json_decref(j);
        free(out);
}

/* One uninterrupted --once run; returns its exit status. */
static int run_once(struct env *e, const char *extra, uint64_t *ret_ms) {
        const char *args[] = { "--once", extra, NULL };
        int status = -1;
        uint64_t t0 = util_now_mono_ms();
        assert_int_equal(harness_pd_run(e->pd, args, RUN_TIMEOUT_MS, &status), 0);
        if (ret_ms)
                *ret_ms = util_now_mono_ms() - t0;
        if (status != 0 && status != 1)
                dump_run(e, e->pd->runs, "ended abnormally");
        assert_true(status == 0 || status == 1);
        return status;
}

static char *order_status(struct env *e, size_t ci, int k) {
        char id[24];
        return harness_fake_order_status(&e->fake, inv_order_id(id, SERIES, ci, k));
}

static bool customer_accepted(size_t ci, bool control1_done, bool control2_done) {
        switch (CUSTOMERS[ci].how) {
        case ACC_START:
        case ACC_CHECKS:
                return true;
        case ACC_CONTROL_1:
                return control1_done;
        case ACC_CONTROL_2:
                return control2_done;
        case ACC_NEVER:
        default:
                return false;
        }
}

/* Done when every accepted customer's orders are Processing and every
 * customer has had its acceptance request. */
static bool complete(struct env *e, bool explain) {
        struct inv_mail_tally t;
        bool done = true;

        for (size_t ci = 0; ci < N_CUSTOMERS && done; ci++) {
                if (!customer_accepted(ci, true, true))
                        continue;
                for (int k = 0; k < CUSTOMERS[ci].c.n_querying && done; k++) {
                        char *st = order_status(e, ci, k);
                        done = st && strcmp(st, "Processing") == 0;
                        if (!done && explain)
                                fprintf(stderr, "crash: order %d of %s is %s, not Processing\n", k,
                                        CUSTOMERS[ci].c.domain, st ? st : "?");
                        free(st);
                }
        }
        if (!done || inv_mail_tally(e->smtp, 0, e->domains, N_CUSTOMERS, &t) < 0)
                return false;
        for (size_t ci = 0; ci < N_CUSTOMERS && done; ci++)
                if (CUSTOMERS[ci].how != ACC_START)
                        done = inv_mail_count(&t, e->domains[ci], "new-request") +
                               inv_mail_count(&t, e->domains[ci], "final-warning") >= 1;
        if (!done && explain) {
                char *counts = json_dumps(t.counts, JSON_COMPACT | JSON_SORT_KEYS);
                fprintf(stderr, "crash: a customer has no acceptance request; mails: %s\n", counts ? counts : "?");
                free(counts);
        }
        inv_mail_tally_done(&t);
        return done;
}

/* How far a killed run got, from the last milestone in its stderr. */
static const char *const MILESTONES[] = {
        "started",                 /* config and state loaded, listing */
        "still pending",           /* checks answered */
        "Queued ",                 /* mail queued in the outbox */
        " processed: ",            /* Process answered */
        "\" sent to ",             /* mail delivered */
        "Cycle done",              /* saving the outcome */
};
#define N_MILESTONES (sizeof(MILESTONES) / sizeof(MILESTONES[0]))

static size_t milestone(struct env *e, int run) {
        char *err = harness_pd_output(e->pd, run, true);
        size_t best = 0;   /* 0 = nothing logged yet */
        for (size_t i = 0; err && i < N_MILESTONES; i++)
                if (strstr(err, MILESTONES[i]))
                        best = i + 1;
        free(err);
        return best;
}

static void test_crash_consistency(void **state) {
        struct env *e = *state;
        uint64_t seed = inv_env_ulong("CRASH_SEED", DEFAULT_SEED), rng = seed;
        bool slow = inv_slow_mode();
        size_t want_kills = inv_env_ulong("CRASH_KILLS", slow ? SLOW_KILLS : DEFAULT_KILLS);
        size_t kills = 0, completed = 0, attempts = 0, final_runs = 0;
        uint64_t t_start = util_now_mono_ms(), cycle_ms = 0;
        bool control1 = false, control2 = false;
        size_t hist[N_MILESTONES + 1] = { 0 };

        fprintf(stderr, "crash: seed=%" PRIu64 " kills=%zu (CRASH_SEED, CRASH_KILLS to override)%s\n", seed,
                want_kills, slow ? "; reduced from 100+ because partnerd runs under a wrapper/valgrind" : "");

        /* How long is a full cycle here?  A dry run does every request a real
         * run does except Process and SMTP, and writes nothing.  The estimate
         * then follows the runs that finish before their kill. */
        assert_int_equal(run_once(e, "--dry-run", &cycle_ms), 0);
        fprintf(stderr, "crash: a dry cycle takes %" PRIu64 " ms\n", cycle_ms);

        while (kills < want_kills) {
                assert_true(++attempts <= want_kills * 4 + 20);
                if (!control1 && kills >= want_kills / 3) {
                        assert_int_equal(harness_fake_accept(&e->fake, CUSTOMERS[0].c.tenant_id), 0);
                        control1 = true;
                }
                if (!control2 && kills >= (2 * want_kills) / 3) {
                        assert_int_equal(harness_fake_accept(&e->fake, CUSTOMERS[4].c.tenant_id), 0);
                        control2 = true;
                }
                /* uniform over the expected cycle, and a bit beyond */
                uint64_t window = cycle_ms + cycle_ms / 4 + 2;
                uint64_t delay = (uint64_t) ((double) (inv_rand(&rng) >> 11) / 9007199254740992.0 * (double) window);
                const char *args[] = { "--once", NULL };
                uint64_t t0 = util_now_mono_ms();
                pid_t pid = harness_pd_spawn(e->pd, args);
                int status = -1, r;
                assert_true(pid > 0);
                r = harness_wait(pid, (int) delay, &status);
                if (r == 0) {
                        /* the run finished before the kill: it must have ended well */
                        if (status != 0 && status != 1)
                                dump_run(e, e->pd->runs, "ended abnormally");
                        assert_true(status == 0 || status == 1);
                        completed++;
                        cycle_ms = (3 * cycle_ms + (util_now_mono_ms() - t0)) / 4;
                        continue;
                }
                assert_int_equal(r, -ETIMEDOUT);
                assert_int_equal(kill(pid, SIGKILL), 0);
                assert_int_equal(harness_wait(pid, 10000, &status), 0);
                /* it may have exited on its own between the check and the kill */
                assert_true(status == 128 + SIGKILL || status == 0 || status == 1);
                if (status != 128 + SIGKILL) {
                        completed++;
                        continue;
                }
                kills++;
                hist[milestone(e, e->pd->runs)]++;
                assert_state_loadable(e, kills);
        }
        /* Both control-route acceptances happened even with few kills. */
        if (!control1)
                assert_int_equal(harness_fake_accept(&e->fake, CUSTOMERS[0].c.tenant_id), 0);
        if (!control2)
                assert_int_equal(harness_fake_accept(&e->fake, CUSTOMERS[4].c.tenant_id), 0);

        /* Run to completion, undisturbed. */
        while (!complete(e, final_runs >= FINAL_RUNS_MAX)) {
                if (final_runs >= FINAL_RUNS_MAX) {
                        dump_run(e, e->pd->runs, "was the last run, still not complete");
                        fail_msg("crash: not complete after %zu undisturbed runs", final_runs);
                }
                run_once(e, NULL, NULL);
                final_runs++;
        }
        /* one more: nothing left to do, nothing sent twice */
        size_t mails_before = harness_smtp_count(e->smtp);
        run_once(e, NULL, NULL);
        final_runs++;

        /* ---- invariants ---- */
        json_t *log = harness_fake_log(&e->fake);
        struct inv_mail_tally t;
        size_t violations = 0, posts = inv_process_posts(log, NULL, 0), posts_ok = inv_process_posts(log, NULL, 200);
        char id[24];

        assert_non_null(log);
        assert_int_equal(inv_mail_tally(e->smtp, 0, e->domains, N_CUSTOMERS, &t), 0);
        for (size_t ci = 0; ci < N_CUSTOMERS; ci++) {
                const struct inv_customer *c = &CUSTOMERS[ci].c;
                bool accepted = customer_accepted(ci, true, true);
                for (int k = 0; k < c->n_querying + c->n_draft; k++) {
                        inv_order_id(id, SERIES, ci, k);
                        size_t ok = inv_process_posts(log, id, 200), any = inv_process_posts(log, id, 0);
                        char *st = harness_fake_order_status(&e->fake, id);
                        const char *want = k >= c->n_querying ? "Draft" : accepted ? "Processing" : "Querying";
                        if (ok > 1 || (k >= c->n_querying && any > 0) || !st || strcmp(st, want) != 0) {
                                fprintf(stderr, "crash: VIOLATION order %s: %zu Process answered 200, %zu in all, "
                                        "status %s (want %s)\n", id, ok, any, st ? st : "?", want);
                                violations++;
                        }
                        free(st);
                }
                size_t asked = inv_mail_count(&t, c->domain, "new-request") +
                               inv_mail_count(&t, c->domain, "final-warning");
                if (CUSTOMERS[ci].how != ACC_START && asked < 1) {
                        fprintf(stderr, "crash: VIOLATION %s was never asked to accept\n", c->domain);
                        violations++;
                }
        }
        size_t dup = inv_mail_duplicates(&t);
        if (dup > kills) {
                fprintf(stderr, "crash: VIOLATION %zu duplicate mails for %zu kills\n", dup, kills);
                violations++;
        }
        if (t.unparsed > 0) {
                fprintf(stderr, "crash: VIOLATION %zu mails could not be parsed\n", t.unparsed);
                violations++;
        }
        if (harness_smtp_count(e->smtp) != mails_before) {
                fprintf(stderr, "crash: VIOLATION the run after completion sent %zu more mails\n",
                        harness_smtp_count(e->smtp) - mails_before);
                violations++;
        }
        char *counts = json_dumps(t.counts, JSON_COMPACT | JSON_SORT_KEYS);
        fprintf(stderr, "crash: mails per customer|kind: %s\n", counts ? counts : "?");
        free(counts);
        fprintf(stderr,
                "crash: kills by the last milestone the run logged: none %zu, started %zu, checked %zu, "
                "mail queued %zu, processed %zu, mail sent %zu, cycle done %zu\n",
                hist[0], hist[1], hist[2], hist[3], hist[4], hist[5], hist[6]);
        fprintf(stderr,
                "crash: summary seed=%" PRIu64 " kills=%zu cycles=%zu (finished before the kill %zu, final %zu) "
                "mails=%zu duplicates=%zu process_calls=%zu (200: %zu) violations=%zu runtime=%.1fs\n",
                seed, kills, kills + completed + final_runs, completed, final_runs, t.total, dup, posts, posts_ok,
                violations,
                (double) (util_now_mono_ms() - t_start) / 1000.0);
        inv_mail_tally_done(&t);
        json_decref(log);
        assert_true(kills >= want_kills);
        assert_int_equal(violations, 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_crash_consistency, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
