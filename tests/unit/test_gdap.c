/* SPDX-License-Identifier: MIT */
/*
 * test_gdap: GDAP blocks in the engine (issue 11 part 2), for every status
 * Microsoft Graph can report, and the pure Graph helpers.  A GDAP-only order
 * is a customer of its own, mailed with the gdap-* kinds, unblocked only by
 * a Graph fact "active", never by a reseller relationship of its tenant.
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "engine.h"
#include "events.h"
#include "graph.h"
#include "log.h"
#include "util.h"

#define DAY UTIL_SEC_PER_DAY
#define TEN "6f1c2a7e-0b8d-4c55-9e41-2d7f0a3b9c10"
#define GID "5e0f3b1a-7c2d-4e8f-9a6b-1c3d5e7f9a0b-2d4f6a8c-0e1b-4c3d-8f5a-7b9c1d3e5f70"
#define GKEY "gdap:" GID
#define GLINK "https://admin.microsoft.com/AdminPortal/Home#/partners/invitation/granularAdminRelationships/" GID
#define RLINK "https://admin.microsoft.com/Adminportal/Home?invType=ResellerRelationship&partnerId=x"
#define QRAW "2026-08-01T09:20:02.517Z"
#define ORD_G "ORD-1111-1111-1111"
#define ORD_R "ORD-2222-2222-2222"

static const int64_t schedule[] = { 60 };
static int64_t T0;

static struct eng_params params(void) {
        return (struct eng_params) {
                .reminder_interval = 2 * DAY, .max_reminders = 3, .deadline = 15 * DAY,
                .deadline_warning = 3 * DAY, .check_schedule = schedule, .n_check_schedule = 1,
                .have_ops = true,
        };
}

/* A Querying order of tenant TEN: GDAP-only (gdap true, as the cycle
 * marks it) or with a reseller link. */
static void add(struct order_list *l, const char *id, bool gdap) {
        struct order *o = order_list_add(l);
        assert_non_null(o);
        o->id = strdup(id);
        o->status = ORDER_STATUS_QUERYING;
        o->tenant_id = strdup(TEN);
        o->domain = strdup("contoso.onmicrosoft.com");
        o->company_name = strdup("Contoso Ltd");
        o->relationship_url = strdup(gdap ? GLINK : RLINK);
        o->gdap_id = gdap ? strdup(GID) : NULL;
        o->querying_at_raw = strdup(QRAW);
        assert_int_equal(util_parse_time(QRAW, &o->querying_at), 0);
}

static size_t count(const struct action_list *l, enum action_type type, int kind) {
        size_t n = 0;
        for (size_t i = 0; i < l->n; i++)
                if (l->items[i].type == type &&
                    (kind < 0 || (type == ACTION_NOTIFY && (int) l->items[i].mail_kind == kind) ||
                     (type == ACTION_LOG && (int) events_log_event(&l->items[i]) == kind)))
                        n++;
        return n;
}

static bool has_process(const struct action_list *l, const char *id) {
        for (size_t i = 0; i < l->n; i++)
                if (l->items[i].type == ACTION_PROCESS && strcmp(l->items[i].order_id, id) == 0)
                        return true;
        return false;
}

static void run1(const struct order_list *ol, struct state *s, int64_t now, struct action_list *a) {
        struct eng_params p = params();
        action_list_clear(a);
        assert_int_equal(eng_decide(&p, ol, NULL, s, now, a), 0);
}

/* Phase 2 with one fact: from Graph (gdap) or from Partner Center. */
static void run2(const struct order_list *ol, struct state *s, const char *key, bool gdap,
                 enum rel_state st, const char *detail, const char *tenant, int64_t now,
                 struct action_list *a) {
        struct eng_params p = params();
        struct rel_fact_list facts = { 0 };
        struct rel_fact *f = rel_fact_list_add(&facts);
        assert_non_null(f);
        f->customer_key = strdup(key);
        f->gdap = gdap;
        f->state = st;
        f->detail = util_strdup0(detail);
        f->tenant_id = util_strdup0(tenant);
        f->checked_at = now;
        action_list_clear(a);
        assert_int_equal(eng_decide(&p, ol, &facts, s, now, a), 0);
        rel_fact_list_clear(&facts);
}

static void test_gdap_order_is_its_own_customer(void **unused) {
        struct order_list ol = { 0 };
        struct action_list a = { 0 };
        struct state *s = state_new();

        add(&ol, ORD_G, true);
        add(&ol, ORD_R, false);
        run1(&ol, s, T0, &a);
        assert_int_equal(s->n_customers, 2);
        assert_non_null(state_find_customer(s, GKEY));
        assert_non_null(state_find_customer(s, TEN));
        /* one gdap-request for the GDAP block, one new-request for the reseller one */
        assert_int_equal(count(&a, ACTION_NOTIFY, MAIL_KIND_GDAP_REQUEST), 1);
        assert_int_equal(count(&a, ACTION_NOTIFY, MAIL_KIND_NEW_REQUEST), 1);
        for (size_t i = 0; i < a.n; i++)
                if (a.items[i].type == ACTION_NOTIFY && a.items[i].mail_kind == MAIL_KIND_GDAP_REQUEST) {
                        assert_int_equal(a.items[i].n_order_ids, 1);
                        assert_string_equal(a.items[i].order_ids[0], ORD_G);
                        assert_string_equal(a.items[i].account, ACCOUNT_DEFAULT);
                } else if (a.items[i].type == ACTION_LOG) {
                        char *logged = events_message(&a.items[i]);
                        assert_non_null(logged);
                        if (strstr(logged, ORD_G))
                                assert_null(strstr(logged, "reseller"));
                        free(logged);
                }
        assert_int_equal(count(&a, ACTION_CHECK, -1), 2);

        /* the tenant accepted the reseller relationship, in a fact found by
         * tenant id only: it reaches the reseller customer (not the GDAP one,
         * which comes first in the state) */
        run2(&ol, s, "stale-key", false, REL_ACCEPTED, NULL, TEN, T0 + 1, &a);
        assert_true(has_process(&a, ORD_R));
        assert_false(has_process(&a, ORD_G));
        /* ... and by its key: still nothing for the GDAP order */
        run2(&ol, s, TEN, false, REL_ACCEPTED, NULL, TEN, T0 + 2, &a);
        assert_false(has_process(&a, ORD_G));
        /* a Partner Center fact under the GDAP key itself does not count */
        run2(&ol, s, GKEY, false, REL_ACCEPTED, NULL, TEN, T0 + 3, &a);
        assert_false(has_process(&a, ORD_G));
        /* nor does a Graph fact for the reseller customer */
        struct order_list only_r = { 0 };
        add(&only_r, ORD_R, false);
        struct state *s2 = state_new();
        run1(&only_r, s2, T0, &a);
        run2(&only_r, s2, TEN, true, REL_ACCEPTED, "active", TEN, T0 + 1, &a);
        assert_false(has_process(&a, ORD_R));
        state_free(s2);
        order_list_clear(&only_r);

        action_list_clear(&a);
        order_list_clear(&ol);
        state_free(s);
}

static void test_pending_statuses(void **unused) {
        static const char *const pending[] = { "approvalPending", "created", "activating", "approved" };
        for (size_t i = 0; i < sizeof(pending) / sizeof(pending[0]); i++) {
                struct order_list ol = { 0 };
                struct action_list a = { 0 };
                struct state *s = state_new();
                add(&ol, ORD_G, true);
                assert_int_equal(graph_classify_status(pending[i]), REL_PENDING);
                run1(&ol, s, T0, &a);
                run2(&ol, s, GKEY, true, graph_classify_status(pending[i]), pending[i], TEN, T0 + 1, &a);
                assert_false(has_process(&a, ORD_G));
                assert_int_equal(count(&a, ACTION_NOTIFY, -1), 0);
                /* still checked, and reminded with the GDAP wording */
                run1(&ol, s, T0 + 2 * DAY + 1, &a);
                assert_int_equal(count(&a, ACTION_CHECK, -1), 1);
                assert_int_equal(count(&a, ACTION_NOTIFY, MAIL_KIND_GDAP_REMINDER), 1);
                assert_int_equal(count(&a, ACTION_NOTIFY, MAIL_KIND_REMINDER), 0);
                /* and warned before the deadline with it */
                run1(&ol, s, T0 + 13 * DAY, &a);
                assert_int_equal(count(&a, ACTION_NOTIFY, MAIL_KIND_GDAP_FINAL_WARNING), 1);
                assert_int_equal(count(&a, ACTION_NOTIFY, MAIL_KIND_FINAL_WARNING), 0);
                action_list_clear(&a);
                order_list_clear(&ol);
                state_free(s);
        }
}

static void test_active_processes_once(void **unused) {
        struct order_list ol = { 0 };
        struct action_list a = { 0 }, out = { 0 };
        struct state *s = state_new();
        struct eng_params p = params();

        add(&ol, ORD_G, true);
        run1(&ol, s, T0, &a);
        assert_int_equal(graph_classify_status("active"), REL_ACCEPTED);
        run2(&ol, s, GKEY, true, REL_ACCEPTED, "active", TEN, T0 + 1, &a);
        assert_true(has_process(&a, ORD_G));
        assert_int_equal(count(&a, ACTION_PROCESS, -1), 1);
        /* the same answer again in the same cycle or the next: no second Process */
        run2(&ol, s, GKEY, true, REL_ACCEPTED, "active", TEN, T0 + 1, &a);
        assert_int_equal(count(&a, ACTION_PROCESS, -1), 0);
        assert_int_equal(eng_process_outcome(&p, s, ORD_G, ENG_PROCESS_DONE, ORDER_STATUS_PROCESSING, NULL,
                                             T0 + 1, &out), 0);
        assert_int_equal(count(&out, ACTION_NOTIFY, MAIL_KIND_GDAP_CONFIRMATION), 1);
        assert_int_equal(count(&out, ACTION_NOTIFY, MAIL_KIND_CONFIRMATION), 0);
        run2(&ol, s, GKEY, true, REL_ACCEPTED, "active", TEN, T0 + 2, &a);
        assert_int_equal(count(&a, ACTION_PROCESS, -1), 0);
        action_list_clear(&out);
        action_list_clear(&a);
        order_list_clear(&ol);
        state_free(s);
}

static void ended_case(const char *status, enum rel_state st) {
        struct order_list ol = { 0 };
        struct action_list a = { 0 };
        struct state *s = state_new();

        add(&ol, ORD_G, true);
        run1(&ol, s, T0, &a);
        run2(&ol, s, GKEY, true, st, status, TEN, T0 + 1, &a);
        assert_false(has_process(&a, ORD_G));
        assert_int_equal(count(&a, ACTION_NOTIFY, MAIL_KIND_GDAP_ENDED), 1);
        assert_int_equal(count(&a, ACTION_LOG, LOG_EV_GDAP_ENDED), 1);
        assert_string_equal(state_find_customer(s, GKEY)->gdap_ended, st == REL_NOT_FOUND ? "not-found" : status);
        /* told once: the same answer again says nothing */
        run2(&ol, s, GKEY, true, st, status, TEN, T0 + 2, &a);
        assert_int_equal(count(&a, ACTION_NOTIFY, -1), 0);
        /* no more reminders nor checks for it */
        run1(&ol, s, T0 + 5 * DAY, &a);
        assert_int_equal(count(&a, ACTION_CHECK, -1), 0);
        assert_int_equal(count(&a, ACTION_NOTIFY, -1), 0);
        /* and a later "active" (it cannot come back) processes nothing */
        run2(&ol, s, GKEY, true, REL_ACCEPTED, "active", TEN, T0 + 5 * DAY, &a);
        assert_false(has_process(&a, ORD_G));
        action_list_clear(&a);
        order_list_clear(&ol);
        state_free(s);
}

static void test_ended_statuses(void **unused) {
        static const char *const ended[] = { "expired", "terminated", "terminationRequested", "terminating",
                                             "unknownFutureValue", "someStatusGraphAddsLater" };
        for (size_t i = 0; i < sizeof(ended) / sizeof(ended[0]); i++) {
                assert_int_equal(graph_classify_status(ended[i]), REL_ENDED);
                ended_case(ended[i], REL_ENDED);
        }
        assert_int_equal(graph_classify_status(NULL), REL_ENDED);
        ended_case(NULL, REL_NOT_FOUND);
}

/* A mail that could not be queued is decided again next cycle, with its
 * GDAP kind. */
static void test_notify_failed(void **unused) {
        struct order_list ol = { 0 };
        struct action_list a = { 0 }, again = { 0 };
        struct state *s = state_new();

        add(&ol, ORD_G, true);
        run1(&ol, s, T0, &a);
        const struct action *req = NULL;
        for (size_t i = 0; i < a.n; i++)
                if (a.items[i].type == ACTION_NOTIFY && a.items[i].mail_kind == MAIL_KIND_GDAP_REQUEST)
                        req = &a.items[i];
        assert_non_null(req);
        assert_int_equal(eng_notify_failed(s, req), 0);
        run1(&ol, s, T0 + 60, &again);
        assert_int_equal(count(&again, ACTION_NOTIFY, MAIL_KIND_GDAP_REQUEST), 1);

        /* the ops notice about an ended relationship: told again after the next check */
        run2(&ol, s, GKEY, true, REL_ENDED, "expired", TEN, T0 + 61, &a);
        const struct action *ended = NULL;
        for (size_t i = 0; i < a.n; i++)
                if (a.items[i].type == ACTION_NOTIFY && a.items[i].mail_kind == MAIL_KIND_GDAP_ENDED)
                        ended = &a.items[i];
        assert_non_null(ended);
        assert_int_equal(eng_notify_failed(s, ended), 0);
        assert_null(state_find_customer(s, GKEY)->gdap_ended);
        run1(&ol, s, T0 + 200, &again);
        assert_int_equal(count(&again, ACTION_CHECK, -1), 1);
        run2(&ol, s, GKEY, true, REL_ENDED, "expired", TEN, T0 + 201, &again);
        assert_int_equal(count(&again, ACTION_NOTIFY, MAIL_KIND_GDAP_ENDED), 1);
        action_list_clear(&again);
        action_list_clear(&a);
        order_list_clear(&ol);
        state_free(s);
}

/* A Draft showing a GDAP link is warned in GDAP words, never processed. */
static void test_draft_gdap(void **unused) {
        struct order_list ol = { 0 };
        struct action_list a = { 0 };
        struct state *s = state_new();
        add(&ol, ORD_G, true);
        ol.items[0].status = ORDER_STATUS_DRAFT;
        run1(&ol, s, T0, &a);
        assert_int_equal(count(&a, ACTION_NOTIFY, MAIL_KIND_GDAP_DRAFT_WARNING), 1);
        assert_int_equal(count(&a, ACTION_NOTIFY, MAIL_KIND_DRAFT_WARNING), 0);
        run2(&ol, s, GKEY, true, REL_ACCEPTED, "active", TEN, T0 + 1, &a);
        assert_false(has_process(&a, ORD_G));
        action_list_clear(&a);
        order_list_clear(&ol);
        state_free(s);
}

static void test_classify_relationship(void **unused) {
        const char *ok = "{\"@odata.context\":\"https://graph.microsoft.com/v1.0/$metadata#x\",\"id\":\"" GID "\","
                         "\"displayName\":\"x\",\"customer\":{\"tenantId\":\"" TEN "\",\"displayName\":\"C\"},"
                         "\"status\":\"active\"}";
        char *st = NULL, *ten = NULL;
        assert_int_equal(graph_classify_relationship(200, ok, strlen(ok), GID, &st, &ten), REL_ACCEPTED);
        assert_string_equal(st, "active");
        assert_string_equal(ten, TEN);
        free(st);
        free(ten);
        st = ten = NULL;
        /* another relationship's answer, or no object: not an answer */
        assert_int_equal(graph_classify_relationship(200, ok, strlen(ok), "other-id", &st, &ten), REL_UNKNOWN);
        assert_int_equal(graph_classify_relationship(200, "[]", 2, GID, &st, &ten), REL_UNKNOWN);
        assert_int_equal(graph_classify_relationship(200, "nope", 4, GID, &st, &ten), REL_UNKNOWN);
        assert_null(st);
        /* 404: no such relationship; 401/403/5xx: the check failed */
        const char *nf = "{\"error\":{\"code\":\"ResourceNotFound\",\"message\":\"x\"}}";
        assert_int_equal(graph_classify_relationship(404, nf, strlen(nf), GID, NULL, NULL), REL_NOT_FOUND);
        assert_int_equal(graph_classify_relationship(401, nf, strlen(nf), GID, NULL, NULL), REL_UNKNOWN);
        assert_int_equal(graph_classify_relationship(403, nf, strlen(nf), GID, NULL, NULL), REL_UNKNOWN);
        assert_int_equal(graph_classify_relationship(503, "", 0, GID, NULL, NULL), REL_UNKNOWN);
        /* a status with control characters is not echoed */
        const char *bad = "{\"id\":\"" GID "\",\"status\":\"exp\\nired\"}";
        assert_int_equal(graph_classify_relationship(200, bad, strlen(bad), GID, &st, NULL), REL_ENDED);
        assert_null(st);
}

int main(void) {
        assert_int_equal(util_parse_time(QRAW, &T0), 0);
        T0 += 60;
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_gdap_order_is_its_own_customer),
                cmocka_unit_test(test_pending_statuses),
                cmocka_unit_test(test_active_processes_once),
                cmocka_unit_test(test_ended_statuses),
                cmocka_unit_test(test_classify_relationship),
                cmocka_unit_test(test_notify_failed),
                cmocka_unit_test(test_draft_gdap),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
