/* SPDX-License-Identifier: MIT */
/*
 * The cluster mode end to end (issue 15): two or three real partnerd
 * daemons ([cluster], docs/cluster.md) on a real three-member etcd on
 * loopback, one fake platform, one real SMTP server.  The role of each
 * daemon is what it says itself (STATUS= on its NOTIFY_SOCKET, as systemd
 * reads it) and what `partnerd status` says from etcd.
 *
 *  - test_one_active: exactly one of three is active, the others standby
 *    (leader: its name), and `partnerd status` agrees on every host;
 *  - test_sigkill_takeover: SIGKILL the active one; another takes over
 *    (the time is printed; speed is `make bench`'s) and the run's
 *    invariants hold;
 *  - test_sigstop_deposed: SIGSTOP the active one right after its check
 *    found a customer accepted (intent saved, re-read before Process in
 *    flight) until past its TTL; another takes over and is frozen at once,
 *    before it processes anything; the old one is resumed: the fake's
 *    request log shows no Process and the SMTP server no mail (the only
 *    process that could send them is the resumed one); then the new leader
 *    does the work once;
 *  - test_etcd_quorum: one etcd member killed: still one active and the
 *    work gets done; two killed: nobody active, no Process while quorum is
 *    lost; quorum back: one active again, the work done;
 *  - test_crash_spread: SIGKILLs at random instants spread over both
 *    daemons (each restarted), then the crash test's invariants.
 *
 * The invariants (check_invariants): at most one Process per order (every
 * order has one Querying episode), never one on a Draft; every accepted
 * customer's Querying orders end Processing, the others stay Querying;
 * every customer that stayed blocked was asked, every accepted one told;
 * no mail twice, except after a kill that landed between the SMTP
 * server's acceptance of a mail and its removal from etcd's outbox (the
 * outbox in etcd is read after each kill; a mail it still holds that the
 * server already accepted will be sent again by the next leader).
 *
 * Skips (reported as skipped) without etcd.  TEST_FILTER (a cmocka pattern)
 * runs some tests only.  CLUSTER_LEASE_TTL (seconds; default 5, 15 under
 * valgrind), CLUSTER_KILLS (default 8, 3 under valgrind) and CLUSTER_SEED
 * override the defaults.
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
#include "pdcluster.h"
#include "smtp.h"
#include "util.h"

#define SERIES           3001
#define DEFAULT_TTL      5
#define SLOW_TTL         15
#define DEFAULT_KILLS    8
#define DEFAULT_SEED     20261204u
#define COMPLETE_MS      180000      /* a run to completion: check_schedule 10s, poll 10s */

enum how { NEVER, AT_START, AFTER_CHECKS, CONTROL };

static const struct {
        struct inv_customer c;
        enum how how;
} CUSTOMERS[] = {
        { { .name = "Alpha Cluster Ltd", .domain = "alpha-cluster.onmicrosoft.com",
            .tenant_id = "a1a1a1a1-1111-4000-8000-000000000001", .n_querying = 1, .n_draft = 1 }, NEVER },
        { { .name = "Beta Cluster Inc", .domain = "beta-cluster.onmicrosoft.com",
            .tenant_id = "b2b2b2b2-1111-4000-8000-000000000002", .n_querying = 2, .accepted = true }, AT_START },
        { { .name = "Gamma Cluster AG", .domain = "gamma-cluster.onmicrosoft.com",
            .tenant_id = "c3c3c3c3-1111-4000-8000-000000000003", .n_querying = 1,
            .accept_after_checks = 2 }, AFTER_CHECKS },
        { { .name = "Delta Cluster SA", .domain = "delta-cluster.onmicrosoft.com",
            .tenant_id = "d4d4d4d4-1111-4000-8000-000000000004", .n_querying = 2 }, CONTROL },
        { { .name = "Epsilon Cluster BV", .domain = "epsilon-cluster.onmicrosoft.com",
            .tenant_id = "e5e5e5e5-1111-4000-8000-000000000005", .n_querying = 1 }, NEVER },
};
#define N_CUSTOMERS (sizeof(CUSTOMERS) / sizeof(CUSTOMERS[0]))
#define DELTA 3   /* the customer accepted through the control route */
#define EPSILON 4 /* accepted by test_etcd_quorum while quorum is lost */

struct env {
        struct harness_pdc c;
        const char *domains[N_CUSTOMERS];
        bool skip;
        json_t *windows;             /* message ids the server accepted that etcd's outbox held at a kill */
        size_t kills;
        bool epsilon_accepted;
};

/* Under valgrind every request is slow: a longer lease (and so longer
 * request timeouts, lease_ttl/2) keeps the leadership from flapping. */
static int ttl(void) {
        return (int) inv_env_ulong("CLUSTER_LEASE_TTL", inv_slow_mode() ? SLOW_TTL : DEFAULT_TTL);
}

/* Generous waits: the contract's bound (lease_ttl + one campaign interval)
 * is measured and printed, and asserted by `make bench`, not here. */
static int takeover_limit_ms(void) {
        return (ttl() + ttl() / 3) * 3000 + 15000;
}

static int setup_n(void **state, size_t n, const char *latency) {
        struct env *e = calloc(1, sizeof(*e));
        struct inv_customer cust[N_CUSTOMERS];
        if (!e)
                return -1;
        *state = e;
        e->windows = json_array();
        for (size_t i = 0; i < N_CUSTOMERS; i++) {
                cust[i] = CUSTOMERS[i].c;
                e->domains[i] = CUSTOMERS[i].c.domain;
        }
        json_t *sc = inv_scenario_new(cust, N_CUSTOMERS, SERIES);
        if (!sc)
                return -1;
        const char *fake_args[] = { "--latency-ms", latency, NULL };
        int r = harness_pdc_setup(&e->c, n, 3, sc, fake_args, NULL, ttl());
        json_decref(sc);
        if (r == -ENOENT) {
                fprintf(stderr, "test_cluster_e2e: etcd is not installed (scripts/deps.sh installs etcd-server); "
                        "skipping\n");
                e->skip = true;
                return 0;
        }
        return r < 0 ? -1 : 0;
}

static int setup2(void **state) {
        return setup_n(state, 2, "20");
}

static int setup3(void **state) {
        return setup_n(state, 3, "20");
}

/* Cycles long enough to be cut in the middle. */
static int setup2_slow(void **state) {
        return setup_n(state, 2, "400");
}

static int teardown(void **state) {
        struct env *e = *state;
        if (e) {
                harness_pdc_teardown(&e->c);
                json_decref(e->windows);
        }
        free(e);
        return 0;
}

#define NEED_ETCD(e) do { if ((e)->skip) skip(); } while (0)

static void dump(struct env *e, const char *why) {
        fprintf(stderr, "cluster: %s\n", why);
        for (size_t i = 0; i < e->c.n; i++) {
                char *err = harness_pdc_stderr(&e->c, i);
                fprintf(stderr, "---- %s (pid %d, STATUS=%s, last exit %d) stderr:\n%s\n", e->c.d[i].name,
                        (int) e->c.d[i].pid, e->c.d[i].status, e->c.d[i].exit_status, err ? err : "(none)");
                free(err);
        }
}

static void start_all(struct env *e) {
        for (size_t i = 0; i < e->c.n; i++)
                assert_int_equal(harness_pdc_spawn(&e->c, i), 0);
}

static int wait_one_active(struct env *e, unsigned mask) {
        int a = harness_pdc_wait_one_active(&e->c, mask, takeover_limit_ms());
        if (a < 0)
                dump(e, a == -EEXIST ? "two daemons say active at once" : "no single active daemon");
        assert_true(a >= 0);
        assert_int_equal(e->c.ended, 0);
        return a;
}

/* Polls until daemon i completed more than `cycles` cycles. */
static void wait_cycles(struct env *e, size_t i, size_t cycles) {
        uint64_t end = util_now_mono_ms() + COMPLETE_MS;
        while (harness_pdc_cycles(&e->c, i) <= cycles) {
                if (util_now_mono_ms() > end) {
                        dump(e, "no cycle completed");
                        fail();
                }
                harness_pdc_poll(&e->c, 200);
        }
}

static bool accepts(const struct env *e, size_t ci) {
        return CUSTOMERS[ci].how != NEVER || (ci == EPSILON && e->epsilon_accepted);
}

static size_t asked(const struct inv_mail_tally *t, size_t ci) {
        return inv_mail_count(t, CUSTOMERS[ci].c.domain, "new-request") +
               inv_mail_count(t, CUSTOMERS[ci].c.domain, "final-warning");
}

/* Every accepting customer's orders Processing, every blocked one asked,
 * every accepted one told, etcd's outbox empty. */
static bool complete(struct env *e, bool explain) {
        struct inv_mail_tally t;
        bool done = true;
        for (size_t ci = 0; ci < N_CUSTOMERS && done; ci++)
                for (int k = 0; accepts(e, ci) && k < CUSTOMERS[ci].c.n_querying && done; k++) {
                        char id[24];
                        char *st = harness_fake_order_status(&e->c.w.fake, inv_order_id(id, SERIES, ci, k));
                        done = st && strcmp(st, "Processing") == 0;
                        if (!done && explain)
                                fprintf(stderr, "cluster: order %s is %s, not Processing\n", id, st ? st : "?");
                        free(st);
                }
        if (!done || inv_mail_tally(e->c.w.smtp, 0, e->domains, N_CUSTOMERS, &t) < 0)
                return false;
        for (size_t ci = 0; ci < N_CUSTOMERS && done; ci++) {
                if (CUSTOMERS[ci].how == NEVER || CUSTOMERS[ci].how == AFTER_CHECKS || CUSTOMERS[ci].how == CONTROL)
                        done = asked(&t, ci) >= 1;
                if (done && accepts(e, ci))
                        done = inv_mail_count(&t, CUSTOMERS[ci].c.domain, "confirmation") >= 1;
                if (!done && explain)
                        fprintf(stderr, "cluster: %s lacks its request or confirmation\n", CUSTOMERS[ci].c.domain);
        }
        inv_mail_tally_done(&t);
        if (done) {
                json_t *ids = harness_pdc_etcd_outbox_ids(&e->c);
                done = ids && json_array_size(ids) == 0;
                if (!done && explain)
                        fprintf(stderr, "cluster: etcd's outbox still holds %zu mail(s)\n",
                                ids ? json_array_size(ids) : 0);
                json_decref(ids);
        }
        return done;
}

static void wait_complete(struct env *e) {
        uint64_t end = util_now_mono_ms() + COMPLETE_MS;
        while (!complete(e, false)) {
                if (util_now_mono_ms() > end) {
                        (void) complete(e, true);
                        dump(e, "the run did not complete");
                        fail();
                }
                harness_pdc_poll(&e->c, 1000);
        }
}

/* Delta is accepted through the control route once it has been asked (so
 * that its request is due whatever the timing). */
static void accept_delta_when_asked(struct env *e) {
        uint64_t end = util_now_mono_ms() + COMPLETE_MS;
        for (;;) {
                struct inv_mail_tally t;
                assert_int_equal(inv_mail_tally(e->c.w.smtp, 0, e->domains, N_CUSTOMERS, &t), 0);
                size_t n = asked(&t, DELTA);
                inv_mail_tally_done(&t);
                if (n > 0)
                        break;
                if (util_now_mono_ms() > end) {
                        dump(e, "Delta was never asked");
                        fail();
                }
                harness_pdc_poll(&e->c, 500);
        }
        assert_int_equal(harness_fake_accept(&e->c.w.fake, CUSTOMERS[DELTA].c.tenant_id), 0);
}

/* After a kill: the mails of etcd's outbox the server already accepted
 * (the next leader sends them again: a permitted duplicate). */
static void note_window(struct env *e) {
        json_t *ids = harness_pdc_etcd_outbox_ids(&e->c), *id;
        size_t i, n = harness_smtp_count(e->c.w.smtp);
        e->kills++;
        json_array_foreach(ids, i, id)
                for (size_t k = 0; k < n; k++) {
                        json_t *side = harness_smtp_sidecar(e->c.w.smtp, k);
                        const char *mid = json_string_value(json_object_get(side, "message_id"));
                        if (mid && strcmp(mid, json_string_value(id)) == 0)
                                json_array_append(e->windows, id);
                        json_decref(side);
                }
        json_decref(ids);
}

static void check_invariants(struct env *e) {
        json_t *log = harness_fake_log(&e->c.w.fake);
        struct inv_mail_tally t;
        size_t violations = 0;
        assert_non_null(log);
        assert_int_equal(inv_mail_tally(e->c.w.smtp, 0, e->domains, N_CUSTOMERS, &t), 0);
        for (size_t ci = 0; ci < N_CUSTOMERS; ci++) {
                const struct inv_customer *c = &CUSTOMERS[ci].c;
                for (int k = 0; k < c->n_querying + c->n_draft; k++) {
                        char id[24];
                        inv_order_id(id, SERIES, ci, k);
                        size_t any = inv_process_posts(log, id, 0);
                        char *st = harness_fake_order_status(&e->c.w.fake, id);
                        const char *want = k >= c->n_querying ? "Draft" : accepts(e, ci) ? "Processing" : "Querying";
                        if (any > 1 || (k >= c->n_querying && any > 0) || !st || strcmp(st, want) != 0) {
                                fprintf(stderr, "cluster: VIOLATION order %s: %zu Process calls, status %s (want %s)\n",
                                        id, any, st ? st : "?", want);
                                violations++;
                        }
                        free(st);
                }
                if (CUSTOMERS[ci].how != AT_START && asked(&t, ci) < 1) {
                        fprintf(stderr, "cluster: VIOLATION %s was never asked to accept\n", c->domain);
                        violations++;
                }
                /* its first check comes before any request, even when a
                 * takeover or a lost quorum cut a cycle between the two */
                if (CUSTOMERS[ci].how == AT_START && asked(&t, ci) > 0) {
                        fprintf(stderr, "cluster: VIOLATION %s had accepted from the start and was asked\n",
                                c->domain);
                        violations++;
                }
                if (accepts(e, ci) && inv_mail_count(&t, c->domain, "confirmation") < 1) {
                        fprintf(stderr, "cluster: VIOLATION %s accepted and never told\n", c->domain);
                        violations++;
                }
        }
        size_t dup = inv_mail_duplicates(&t), windows = json_array_size(e->windows);
        char *counts = json_dumps(t.counts, JSON_COMPACT | JSON_SORT_KEYS);
        fprintf(stderr, "cluster: mails per customer|kind: %s; duplicates %zu, kills %zu, mails sent but still in "
                "etcd's outbox at a kill %zu\n", counts ? counts : "?", dup, e->kills, windows);
        free(counts);
        if (dup > windows) {
                fprintf(stderr, "cluster: VIOLATION %zu duplicate mails, %zu permitted by kills\n", dup, windows);
                violations++;
        }
        if (t.unparsed) {
                fprintf(stderr, "cluster: VIOLATION %zu mails could not be parsed\n", t.unparsed);
                violations++;
        }
        for (size_t i = 0; i < e->c.n; i++) {
                int first = 0;
                size_t reports = inv_pd_sanitizer_reports(e->c.d[i].pd, &first);
                if (reports) {
                        fprintf(stderr, "cluster: VIOLATION %s: %zu runs reported memory errors (first: run %d)\n",
                                e->c.d[i].name, reports, first);
                        violations++;
                }
        }
        inv_mail_tally_done(&t);
        json_decref(log);
        if (violations)
                dump(e, "invariants violated");
        assert_int_equal(violations, 0);
}

/* ---- exactly one active ---- */

static void test_one_active(void **state) {
        struct env *e = *state;
        NEED_ETCD(e);
        start_all(e);
        int a = wait_one_active(e, 7);
        /* it stays so: every other one names it as the leader */
        harness_pdc_poll(&e->c, ttl() * 1000);
        assert_int_equal(harness_pdc_wait_one_active(&e->c, 7, takeover_limit_ms()), a);
        for (size_t i = 0; i < e->c.n; i++) {
                char want[64], *line = NULL;
                if ((int) i == a)
                        snprintf(want, sizeof(want), "active");
                else
                        snprintf(want, sizeof(want), "standby (leader: %s)", e->c.d[a].name);
                if (strncmp(e->c.d[i].status, want, strlen(want)) != 0)
                        fprintf(stderr, "cluster: %s says STATUS=%s, want %s\n", e->c.d[i].name, e->c.d[i].status,
                                want);
                assert_int_equal(strncmp(e->c.d[i].status, want, strlen(want)), 0);
                assert_int_equal(harness_pdc_status_line(&e->c, i, &line), 0);
                char want_line[96];
                snprintf(want_line, sizeof(want_line), "cluster: %s", want);
                if (!line || strcmp(line, want_line) != 0)
                        fprintf(stderr, "cluster: `partnerd status` of %s says '%s', want '%s'\n", e->c.d[i].name,
                                line ? line : "(nothing)", want_line);
                assert_non_null(line);
                assert_string_equal(line, want_line);
                free(line);
        }
        const char *const active_line[] = { "Cluster: active (this instance: ", e->c.d[a].name, NULL };
        assert_int_equal(harness_pdc_count_lines(&e->c, (size_t) a, active_line), 1);
        /* the standbys did nothing but campaign: the active one ran the cycles */
        wait_cycles(e, (size_t) a, 0);
        for (size_t i = 0; i < e->c.n; i++)
                if ((int) i != a)
                        assert_int_equal(harness_pdc_cycles(&e->c, i), 0);
}

/* ---- SIGKILL of the active one ---- */

static void test_sigkill_takeover(void **state) {
        struct env *e = *state;
        NEED_ETCD(e);
        start_all(e);
        int a = wait_one_active(e, 3);
        wait_cycles(e, (size_t) a, 0);
        accept_delta_when_asked(e);

        uint64_t t0 = util_now_mono_ms();
        assert_int_equal(harness_pdc_signal(&e->c, (size_t) a, SIGKILL), 0);
        note_window(e);
        int b = wait_one_active(e, 3);
        uint64_t took = util_now_mono_ms() - t0;
        assert_int_not_equal(a, b);
        fprintf(stderr, "cluster: takeover after SIGKILL in %" PRIu64 " ms (lease_ttl %d s; contract bound %d ms)\n",
                took, ttl(), (ttl() + ttl() / 3) * 1000);
        /* the dead one comes back as a standby */
        assert_int_equal(harness_pdc_spawn(&e->c, (size_t) a), 0);
        assert_int_equal(wait_one_active(e, 3), b);
        wait_complete(e);
        check_invariants(e);
}

/* ---- SIGSTOP past the TTL, then SIGCONT ---- */

static void test_sigstop_deposed(void **state) {
        struct env *e = *state;
        NEED_ETCD(e);
        start_all(e);
        int a = wait_one_active(e, 3), b = 1 - a;
        wait_cycles(e, (size_t) a, 0);
        accept_delta_when_asked(e);

        /* a is frozen right after its check found Delta accepted: the
         * intent is saved, the re-read before Process is in flight (the
         * fake answers slowly), Delta's orders are still Querying */
        const char *const delta_ok[] = { CUSTOMERS[DELTA].c.name, "accepted the reseller relationship", NULL };
        uint64_t end = util_now_mono_ms() + COMPLETE_MS;
        while (harness_pdc_count_lines(&e->c, (size_t) a, delta_ok) == 0) {
                if (util_now_mono_ms() > end) {
                        dump(e, "Delta's acceptance was never seen");
                        fail();
                }
                harness_pdc_poll(&e->c, 20);
        }
        assert_int_equal(harness_pdc_signal(&e->c, (size_t) a, SIGSTOP), 0);
        uint64_t t0 = util_now_mono_ms();
        /* b takes over and is frozen at once, before it can process Delta:
         * its lease outlives the observation below, so whatever reaches the
         * fake or the server then is a's */
        assert_int_equal(wait_one_active(e, 1u << b), b);
        assert_int_equal(harness_pdc_signal(&e->c, (size_t) b, SIGSTOP), 0);
        fprintf(stderr, "cluster: takeover after SIGSTOP in %" PRIu64 " ms\n", util_now_mono_ms() - t0);
        char id[24];
        char *st = harness_fake_order_status(&e->c.w.fake, inv_order_id(id, SERIES, DELTA, 0));
        fprintf(stderr, "cluster: Delta's order %s is %s when a resumes\n", id, st ? st : "?");
        free(st);
        json_t *log = harness_fake_log(&e->c.w.fake);
        size_t posts = inv_process_posts(log, NULL, 0), mails = harness_smtp_count(e->c.w.smtp);
        size_t seq = json_array_size(log);
        json_decref(log);
        assert_int_equal(harness_pdc_signal(&e->c, (size_t) a, SIGCONT), 0);
        harness_pdc_poll(&e->c, ttl() * 1000 / 2);
        log = harness_fake_log(&e->c.w.fake);
        size_t posts_after = inv_process_posts(log, NULL, 0), mails_after = harness_smtp_count(e->c.w.smtp);
        fprintf(stderr, "cluster: after SIGCONT: %zu requests to the fake, %zu Process, %zu mails; %s says %s\n",
                json_array_size(log) - seq, posts_after - posts, mails_after - mails, e->c.d[a].name,
                e->c.d[a].status);
        size_t rereads = 0;
        for (size_t i = seq; i < json_array_size(log); i++) {
                json_t *rq = json_array_get(log, i);
                const char *method = json_string_value(json_object_get(rq, "method"));
                const char *path = json_string_value(json_object_get(rq, "path"));
                fprintf(stderr, "cluster: after SIGCONT: %s %s -> %d\n", method, path,
                        (int) json_integer_value(json_object_get(rq, "status")));
                /* GET .../orders/{id}: the re-read before a Process */
                if (method && path && strcmp(method, "GET") == 0 && strstr(path, "/commerce/orders/"))
                        rereads++;
        }
        json_decref(log);
        if (posts_after != posts || mails_after != mails)
                dump(e, "the deposed leader acted after SIGCONT");
        /* Order reads after SIGCONT are printed, not asserted: a re-read
         * handed to curl just before the freeze goes out only after
         * SIGCONT (seen under ASan), and the fake cannot tell it from a new
         * one.  What must not happen is a Process or a mail. */
        fprintf(stderr, "cluster: after SIGCONT: %zu order reads\n", rereads);
        assert_int_equal(posts_after, posts);
        assert_int_equal(mails_after, mails);
        assert_int_equal(harness_pdc_role(&e->c, (size_t) a), 0);
        /* "Cluster: lost the leadership, stopping the running cycle; standby
         * (leader: X)" or, when no cycle ran any more, "Cluster: standby ..." */
        const char *const lost[] = { "Cluster: ", "standby (leader: ", NULL };
        if (harness_pdc_count_lines(&e->c, (size_t) a, lost) < 1)
                dump(e, "the resumed leader did not log its loss of the role");
        assert_true(harness_pdc_count_lines(&e->c, (size_t) a, lost) >= 1);

        assert_int_equal(harness_pdc_signal(&e->c, (size_t) b, SIGCONT), 0);
        (void) wait_one_active(e, 3);
        harness_pdc_poll(&e->c, ttl() * 1000);
        wait_complete(e);
        check_invariants(e);
}

/* ---- etcd members lost ---- */

static void test_etcd_quorum(void **state) {
        struct env *e = *state;
        NEED_ETCD(e);
        start_all(e);
        (void) wait_one_active(e, 3);

        /* one member down: the cluster keeps working */
        assert_int_equal(harness_etcd_signal(e->c.etcd, 0, SIGKILL), 0);
        harness_pdc_poll(&e->c, 2 * ttl() * 1000);
        int a = wait_one_active(e, 3);
        accept_delta_when_asked(e);
        wait_complete(e);
        wait_cycles(e, (size_t) a, harness_pdc_cycles(&e->c, (size_t) a));

        /* two down: no quorum, nobody acts */
        assert_int_equal(harness_etcd_signal(e->c.etcd, 1, SIGKILL), 0);
        uint64_t t0 = util_now_mono_ms();
        if (harness_pdc_wait_none_active(&e->c, 3, takeover_limit_ms()) < 0)
                dump(e, "a daemon still says active without quorum");
        assert_int_equal(harness_pdc_wait_none_active(&e->c, 3, 0), 0);
        fprintf(stderr, "cluster: the active daemon stood down %" PRIu64 " ms after quorum was lost\n",
                util_now_mono_ms() - t0);
        /* work appears meanwhile: an order of Epsilon's customer accepts */
        assert_int_equal(harness_fake_accept(&e->c.w.fake, CUSTOMERS[EPSILON].c.tenant_id), 0);
        e->epsilon_accepted = true;
        json_t *log = harness_fake_log(&e->c.w.fake);
        size_t posts = inv_process_posts(log, NULL, 0), mails = harness_smtp_count(e->c.w.smtp);
        json_decref(log);
        harness_pdc_poll(&e->c, 3 * ttl() * 1000);
        assert_int_equal(harness_pdc_wait_none_active(&e->c, 3, 0), 0);
        log = harness_fake_log(&e->c.w.fake);
        assert_int_equal(inv_process_posts(log, NULL, 0), posts);
        json_decref(log);
        assert_int_equal(harness_smtp_count(e->c.w.smtp), mails);

        /* quorum back: one active, Epsilon's order processed */
        assert_int_equal(harness_etcd_restart(e->c.etcd, 0), 0);
        assert_int_equal(harness_etcd_restart(e->c.etcd, 1), 0);
        (void) wait_one_active(e, 3);
        uint64_t end = util_now_mono_ms() + COMPLETE_MS;
        for (;;) {
                char id[24];
                char *st = harness_fake_order_status(&e->c.w.fake, inv_order_id(id, SERIES, EPSILON, 0));
                bool done = st && strcmp(st, "Processing") == 0;
                free(st);
                if (done)
                        break;
                if (util_now_mono_ms() > end) {
                        dump(e, "Epsilon's order was not processed after quorum came back");
                        fail();
                }
                harness_pdc_poll(&e->c, 1000);
        }
        log = harness_fake_log(&e->c.w.fake);
        char id[24];
        assert_int_equal(inv_process_posts(log, inv_order_id(id, SERIES, EPSILON, 0), 0), 1);
        json_decref(log);
        wait_complete(e);
        check_invariants(e);
}

/* ---- kills spread over both daemons ---- */

static void test_crash_spread(void **state) {
        struct env *e = *state;
        NEED_ETCD(e);
        uint64_t seed = inv_env_ulong("CLUSTER_SEED", DEFAULT_SEED), rng = seed;
        size_t want = inv_env_ulong("CLUSTER_KILLS", inv_slow_mode() ? 3 : DEFAULT_KILLS);
        size_t by[HARNESS_PDC_MAX] = { 0 };
        bool accepted = false;
        fprintf(stderr, "cluster: seed=%" PRIu64 " kills=%zu (CLUSTER_SEED, CLUSTER_KILLS)\n", seed, want);
        start_all(e);
        for (size_t k = 0; k < want; k++) {
                int a = wait_one_active(e, 3);
                /* somewhere in the next two poll intervals: in a cycle or between */
                unsigned delay = (unsigned) (inv_rand(&rng) % 20000);
                harness_pdc_poll(&e->c, (int) delay);
                a = wait_one_active(e, 3);
                if (!accepted && k >= want / 3) {
                        struct inv_mail_tally t;
                        assert_int_equal(inv_mail_tally(e->c.w.smtp, 0, e->domains, N_CUSTOMERS, &t), 0);
                        if (asked(&t, DELTA) > 0) {
                                assert_int_equal(harness_fake_accept(&e->c.w.fake, CUSTOMERS[DELTA].c.tenant_id),
                                                 0);
                                accepted = true;
                        }
                        inv_mail_tally_done(&t);
                }
                assert_int_equal(harness_pdc_signal(&e->c, (size_t) a, SIGKILL), 0);
                note_window(e);
                by[a]++;
                assert_int_equal(harness_pdc_spawn(&e->c, (size_t) a), 0);
        }
        fprintf(stderr, "cluster: kills: %s %zu, %s %zu\n", e->c.d[0].name, by[0], e->c.d[1].name, by[1]);
        if (!accepted)
                accept_delta_when_asked(e);
        (void) wait_one_active(e, 3);
        wait_complete(e);
        check_invariants(e);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_one_active, setup3, teardown),
                cmocka_unit_test_setup_teardown(test_sigkill_takeover, setup2, teardown),
                cmocka_unit_test_setup_teardown(test_sigstop_deposed, setup2_slow, teardown),
                cmocka_unit_test_setup_teardown(test_etcd_quorum, setup2, teardown),
                cmocka_unit_test_setup_teardown(test_crash_spread, setup2, teardown),
        };
        if (getenv("TEST_FILTER"))
                cmocka_set_test_filter(getenv("TEST_FILTER"));
        return cmocka_run_group_tests(tests, NULL, NULL);
}
