/* SPDX-License-Identifier: MIT */
/*
 * Guards that only an end-to-end run can show: the real partnerd (--once)
 * against the fake platform and a real SMTP server, one run, then what the
 * fake's request log and the mailbox say.  Each customer below is a guard
 * that a mutation audit found uncovered:
 *
 *  - MOVED: accepted; between the list and the re-read before Process,
 *    someone else moves its order to Processing (fault set_status on the
 *    single-order GET).  No Process may be sent: the re-read says it moved.
 *  - REQUERIED: accepted; between the list and the re-read its order is
 *    processed and queried again by someone else: Querying, but a new
 *    episode.  No Process in this run: the order is not the one decided on.
 *  - ADVISOR_DOMAIN: its orders carry only the domain, so the customer is
 *    found through Partner Center's Domain search, where it is accepted
 *    with relationshipToPartner "advisor": not a reseller relationship, so
 *    it is still pending: mailed, never processed.
 *  - ADVISOR_ID: the same found by tenant id.
 *  - CONTROL: accepted reseller, nothing in the way: processed once.  It
 *    shows the run did reach Process, so the zeros above are not vacuous.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>

#include "harness.h"
#include "invariants.h"
#include "pdrun.h"
#include "smtp.h"

#define SERIES         4001
#define RUN_TIMEOUT_MS 120000

enum { C_MOVED, C_REQUERIED, C_ADVISOR_DOMAIN, C_ADVISOR_ID, C_CONTROL, N_CUST };

static const struct inv_customer CUST[N_CUST] = {
        [C_MOVED] = { .name = "Moved Guard Ltd", .domain = "moved-guard.onmicrosoft.com",
                      .tenant_id = "4a4a4a4a-0000-4000-8000-000000000001", .n_querying = 1, .accepted = true },
        [C_REQUERIED] = { .name = "Requeried Guard Inc", .domain = "requeried-guard.onmicrosoft.com",
                          .tenant_id = "4b4b4b4b-0000-4000-8000-000000000002", .n_querying = 1,
                          .accepted = true },
        [C_ADVISOR_DOMAIN] = { .name = "Advisor Domain AG", .domain = "advisor-domain.onmicrosoft.com",
                               .tenant_id = "4c4c4c4c-0000-4000-8000-000000000003", .n_querying = 1,
                               .accepted = true, .order_without_tenant = true },
        [C_ADVISOR_ID] = { .name = "Advisor Id SA", .domain = "advisor-id.onmicrosoft.com",
                           .tenant_id = "4d4d4d4d-0000-4000-8000-000000000004", .n_querying = 1,
                           .accepted = true },
        [C_CONTROL] = { .name = "Control Guard BV", .domain = "control-guard.onmicrosoft.com",
                        .tenant_id = "4e4e4e4e-0000-4000-8000-000000000005", .n_querying = 1, .accepted = true },
};

struct env {
        struct inv_world w;
        json_t *log;                 /* the fake's request log after the run */
        struct inv_mail_tally mails;
        int status;                  /* partnerd's exit status */
        int rev_before[N_CUST];
};

static const char *order_of(char *buf, size_t ci) {
        return inv_order_id(buf, SERIES, ci, 0);
}

/* relationshipToPartner of a tenant the scenario has accepted */
static void set_relationship(json_t *sc, const char *tenant_id, const char *rel) {
        size_t i;
        json_t *t;
        json_array_foreach(json_object_get(sc, "tenants"), i, t)
                if (strcmp(json_string_value(json_object_get(t, "id")), tenant_id) == 0)
                        json_object_set_new(t, "relationship", json_string(rel));
}

/* The fault that moves an order under partnerd's feet: on the re-read
 * (the single-order GET) of that order, the fake first moves it. */
static int move_on_reread(struct env *e, size_t ci, const char *statuses) {
        char id[24], json[256];
        snprintf(json, sizeof(json), "{\"route\":\"order\",\"match\":\"%s\",\"set_status\":\"%s\",\"times\":1}",
                 order_of(id, ci), statuses);
        return harness_fake_fault(&e->w.fake, json);
}

static int setup(void **state) {
        struct env *e = calloc(1, sizeof(*e));
        const char *domains[N_CUST];
        const char *args[] = { "--once", NULL };
        char id[24];
        int r;

        if (!e)
                return -1;
        *state = e;
        json_t *sc = inv_scenario_new(CUST, N_CUST, SERIES);
        if (!sc)
                return -1;
        set_relationship(sc, CUST[C_ADVISOR_DOMAIN].tenant_id, "advisor");
        set_relationship(sc, CUST[C_ADVISOR_ID].tenant_id, "advisor");
        r = inv_world_start(&e->w, sc, NULL, &(struct harness_smtp_options) { 0 },
                            &(struct harness_pd_options) { 0 });
        json_decref(sc);
        if (r < 0 || move_on_reread(e, C_MOVED, "Processing") < 0 ||
            move_on_reread(e, C_REQUERIED, "Processing,Querying") < 0)
                return -1;
        for (size_t ci = 0; ci < N_CUST; ci++)
                e->rev_before[ci] = inv_fake_revision(&e->w.fake, order_of(id, ci));
        if (harness_pd_run(e->w.pd, args, RUN_TIMEOUT_MS, &e->status) < 0)
                return -1;
        if (e->status != 0) {
                char *err = harness_pd_output(e->w.pd, 1, true);
                fprintf(stderr, "guards: partnerd exited %d:\n%s\n", e->status, err ? err : "");
                free(err);
        }
        for (size_t ci = 0; ci < N_CUST; ci++)
                domains[ci] = CUST[ci].domain;
        e->log = harness_fake_log(&e->w.fake);
        if (!e->log || inv_mail_tally(e->w.smtp, 0, domains, N_CUST, &e->mails) < 0)
                return -1;
        return 0;
}

static int teardown(void **state) {
        struct env *e = *state;
        if (!e)
                return 0;
        json_decref(e->log);
        inv_mail_tally_done(&e->mails);
        inv_world_stop(&e->w);
        free(e);
        return 0;
}

static void print_requests(struct env *e, const char *order_id) {
        size_t i;
        json_t *r;
        json_array_foreach(e->log, i, r) {
                const char *path = json_string_value(json_object_get(r, "path"));
                if (path && strstr(path, order_id))
                        fprintf(stderr, "guards:   %s %s -> %lld\n", json_string_value(json_object_get(r, "method")),
                                path, (long long) json_integer_value(json_object_get(r, "status")));
        }
}

/* Process calls on the customer's order; prints them when not want. */
static size_t process_calls(struct env *e, size_t ci, size_t want) {
        char id[24];
        size_t n = inv_process_posts(e->log, order_of(id, ci), 0);
        if (n != want) {
                fprintf(stderr, "guards: %s: %zu Process calls on %s, want %zu; its requests:\n", CUST[ci].domain,
                        n, id, want);
                print_requests(e, id);
        }
        return n;
}

/* Did the run re-read the order (the single GET the fault hit)? */
static size_t rereads(struct env *e, size_t ci) {
        char id[24], path[80];
        snprintf(path, sizeof(path), "/commerce/orders/%s", order_of(id, ci));
        size_t n = 0, i;
        json_t *r;
        json_array_foreach(e->log, i, r) {
                const char *p = json_string_value(json_object_get(r, "path"));
                const char *m = json_string_value(json_object_get(r, "method"));
                if (p && m && strcmp(m, "GET") == 0 && strlen(p) >= strlen(path) &&
                    strcmp(p + strlen(p) - strlen(path), path) == 0)
                        n++;
        }
        return n;
}

static void test_run_exits_cleanly(void **state) {
        struct env *e = *state;
        assert_int_equal(e->status, 0);
}

/* The control customer is processed: the run reached Process, once.  Any
 * answer counts: with the fake's realism switch the platform may resume the
 * last Querying order itself just before its Process (409, issue 11 part 4). */
static void test_control_processed_once(void **state) {
        struct env *e = *state;
        char id[24];
        assert_int_equal(process_calls(e, C_CONTROL, 1), 1);
        assert_int_equal(inv_process_posts(e->log, order_of(id, C_CONTROL), 0), 1);
}

/* Someone else moved the customer's order `moves` times on its re-read:
 * the re-read was made, no Process followed, the order is where they left
 * it and only their moves changed it. */
static void assert_moved_not_processed(struct env *e, size_t ci, const char *status, int moves) {
        char id[24];
        assert_true(rereads(e, ci) >= 1);
        assert_int_equal(process_calls(e, ci, 0), 0);
        char *st = harness_fake_order_status(&e->w.fake, order_of(id, ci));
        assert_non_null(st);
        assert_string_equal(st, status);
        free(st);
        assert_int_equal(inv_fake_revision(&e->w.fake, id), e->rev_before[ci] + moves);
}

/* Moved to Processing by someone else between the list and the re-read. */
static void test_reread_moved_no_process(void **state) {
        assert_moved_not_processed(*state, C_MOVED, "Processing", 1);
}

/* Querying again, but in a new episode, when re-read. */
static void test_reread_new_episode_no_process(void **state) {
        assert_moved_not_processed(*state, C_REQUERIED, "Querying", 2);
}

/* Partner Center requests for the customer: the Domain search (path
 * /v1/customers with a filter naming the domain) or by tenant id. */
static size_t pc_lookups(struct env *e, size_t ci, bool by_domain) {
        char want[96];
        size_t n = 0, i;
        json_t *r;
        snprintf(want, sizeof(want), "/v1/customers/%s", CUST[ci].tenant_id);
        json_array_foreach(e->log, i, r) {
                const char *p = json_string_value(json_object_get(r, "path"));
                const char *q = json_string_value(json_object_get(r, "query"));
                if (!p || json_integer_value(json_object_get(r, "status")) != 200)
                        continue;
                if (by_domain ? strcmp(p, "/v1/customers") == 0 && q && strstr(q, "filter") &&
                                strcasestr(q, CUST[ci].domain) != NULL
                              : strcmp(p, want) == 0)
                        n++;
        }
        return n;
}

static void assert_advisor_pending(struct env *e, size_t ci, bool by_domain) {
        char id[24];
        /* the path under test was taken, and answered 200 (an accepted
         * customer, relationship "advisor") */
        assert_true(pc_lookups(e, ci, by_domain) >= 1);
        assert_int_equal(process_calls(e, ci, 0), 0);
        char *st = harness_fake_order_status(&e->w.fake, order_of(id, ci));
        assert_non_null(st);
        assert_string_equal(st, "Querying");
        free(st);
        /* still pending: the admins are asked to accept, nobody is told
         * it was accepted */
        assert_int_equal(inv_mail_count(&e->mails, CUST[ci].domain, "new-request"), 1);
        assert_int_equal(inv_mail_count(&e->mails, CUST[ci].domain, "confirmation"), 0);
}

static void test_advisor_by_domain_never_processed(void **state) {
        assert_advisor_pending(*state, C_ADVISOR_DOMAIN, true);
}

static void test_advisor_by_id_never_processed(void **state) {
        assert_advisor_pending(*state, C_ADVISOR_ID, false);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_run_exits_cleanly),
                cmocka_unit_test(test_control_processed_once),
                cmocka_unit_test(test_reread_moved_no_process),
                cmocka_unit_test(test_reread_new_episode_no_process),
                cmocka_unit_test(test_advisor_by_domain_never_processed),
                cmocka_unit_test(test_advisor_by_id_never_processed),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
