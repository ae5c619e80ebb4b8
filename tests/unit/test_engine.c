/* SPDX-License-Identifier: MIT */
/*
 * test_engine: walks every engine transition with a fake clock.  Days of
 * reminders and the 15-day deadline take milliseconds: the engine never
 * reads a clock, `now` is an argument.
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
#include "log.h"
#include "util.h"

#define MIN  UTIL_SEC_PER_MIN
#define HOUR UTIL_SEC_PER_HOUR
#define DAY  UTIL_SEC_PER_DAY

static const int64_t schedule[] = { 1 * MIN, 2 * MIN, 5 * MIN, 10 * MIN, 15 * MIN };

static const char *T0_RAW = "2026-08-01T09:20:02.517Z";
static int64_t T0;

static struct eng_params params(void) {
        return (struct eng_params) {
                .reminder_interval = 2 * DAY,
                .max_reminders = 3,
                .deadline = 15 * DAY,
                .deadline_warning = 3 * DAY,
                .check_schedule = schedule,
                .n_check_schedule = 5,
        };
}

#define URL "https://admin.microsoft.com/Adminportal/Home?invType=ResellerRelationship&partnerId=x"

static struct order *add_order(struct order_list *l, const char *id, enum order_status st,
                               const char *tenant, const char *domain, const char *url,
                               const char *qraw) {
        struct order *o = order_list_add(l);
        assert_non_null(o);
        o->id = strdup(id);
        o->status = st;
        o->tenant_id = util_strdup0(tenant);
        o->domain = util_strdup0(domain);
        o->company_name = strdup("Contoso Ltd");
        o->relationship_url = util_strdup0(url);
        o->querying_at_raw = util_strdup0(qraw);
        if (qraw)
                assert_int_equal(util_parse_time(qraw, &o->querying_at), 0);
        o->created_at = T0 - DAY;
        return o;
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

static const struct action *find(const struct action_list *l, enum action_type type, int kind) {
        for (size_t i = 0; i < l->n; i++)
                if (l->items[i].type == type &&
                    (kind < 0 || (type == ACTION_NOTIFY && (int) l->items[i].mail_kind == kind) ||
                     (type == ACTION_LOG && (int) events_log_event(&l->items[i]) == kind)))
                        return &l->items[i];
        return NULL;
}

static bool names_order(const struct action *a, const char *id) {
        for (size_t i = 0; i < a->n_order_ids; i++)
                if (strcmp(a->order_ids[i], id) == 0)
                        return true;
        return false;
}

static bool has_process(const struct action_list *l, const char *id) {
        for (size_t i = 0; i < l->n; i++)
                if (l->items[i].type == ACTION_PROCESS && strcmp(l->items[i].order_id, id) == 0)
                        return true;
        return false;
}

/* Runs phase 1, replacing *acts; phase 1 never returns PROCESS. */
static void run1(const struct eng_params *p, const struct order_list *ol, struct state *s,
                 int64_t now, struct action_list *acts) {
        action_list_clear(acts);
        assert_int_equal(eng_decide(p, ol, NULL, s, now, acts), 0);
        for (size_t i = 0; i < acts->n; i++)
                assert_int_not_equal(acts->items[i].type, ACTION_PROCESS);   /* phase 2 only */
}

static void run2(const struct eng_params *p, const struct order_list *ol, struct state *s,
                 const char *key, enum rel_state rs, const char *tenant, int64_t now,
                 struct action_list *acts) {
        struct rel_fact_list facts = { 0 };
        struct rel_fact *f = rel_fact_list_add(&facts);
        assert_non_null(f);
        f->customer_key = strdup(key);
        f->state = rs;
        f->tenant_id = util_strdup0(tenant);
        f->checked_at = now;
        action_list_clear(acts);
        assert_int_equal(eng_decide(p, ol, &facts, s, now, acts), 0);
        rel_fact_list_clear(&facts);
}

/* Phase 2 when no check was due: an empty (non-NULL) fact list. */
static void run2_empty(const struct eng_params *p, const struct order_list *ol, struct state *s,
                       int64_t now, struct action_list *acts) {
        struct rel_fact_list none = { 0 };
        action_list_clear(acts);
        assert_int_equal(eng_decide(p, ol, &none, s, now, acts), 0);
}

static const char *KEY = "domain:contoso.onmicrosoft.com";

static void test_new_blocked_then_quiet(void **unused) {
        struct eng_params p = params();
        struct order_list ol = { 0 };
        struct action_list a = { 0 };
        struct state *s = state_new();
        char want[128];

        add_order(&ol, "ORD-1111-1111-1111", ORDER_STATUS_QUERYING, NULL, "Contoso.onmicrosoft.com",
                  URL, T0_RAW);
        run1(&p, &ol, s, T0, &a);
        assert_int_equal(count(&a, ACTION_NOTIFY, -1), 1);
        const struct action *n = find(&a, ACTION_NOTIFY, MAIL_KIND_NEW_REQUEST);
        assert_non_null(n);
        assert_string_equal(n->customer_key, KEY);
        assert_int_equal(n->n_order_ids, 1);
        assert_string_equal(n->order_ids[0], "ORD-1111-1111-1111");
        /* platform data only: the order and its episode start, never a local time */
        snprintf(want, sizeof(want), "new-request:%s:ORD-1111-1111-1111@%s", KEY, T0_RAW);
        assert_string_equal(n->dedup_key, want);
        assert_int_equal(count(&a, ACTION_CHECK, -1), 1);
        const struct action *c = find(&a, ACTION_CHECK, -1);
        assert_string_equal(c->domain, "Contoso.onmicrosoft.com");
        assert_null(c->tenant_id);
        assert_int_equal(count(&a, ACTION_LOG, LOG_EV_ORDER_BLOCKED), 1);
        assert_int_equal(count(&a, ACTION_PROCESS, -1), 0);

        struct tracked_customer *tc = state_find_customer(s, KEY);
        assert_non_null(tc);
        assert_int_equal(tc->notified_at, T0);
        assert_int_equal(tc->next_check, T0 + MIN);
        assert_int_equal(tc->check_count, 1);
        assert_int_equal(tc->orders[0].status, TRACK_BLOCKED);
        assert_true(tc->orders[0].notified);

        /* Same poll 10 s later: nothing to do. */
        run1(&p, &ol, s, T0 + 10, &a);
        assert_int_equal(a.n, 0);
        /* Check due after 1 min. */
        run1(&p, &ol, s, T0 + MIN, &a);
        assert_int_equal(a.n, 1);
        assert_int_equal(a.items[0].type, ACTION_CHECK);

        action_list_clear(&a);
        order_list_clear(&ol);
        state_free(s);
}

static void test_check_backoff_and_check_all(void **unused) {
        struct eng_params p = params();
        struct order_list ol = { 0 };
        struct action_list a = { 0 };
        struct state *s = state_new();

        add_order(&ol, "ORD-1111-1111-1111", ORDER_STATUS_QUERYING, NULL, "contoso.onmicrosoft.com",
                  URL, T0_RAW);
        /* Poll every 10 s for an hour, record when checks happen. */
        int64_t checks[16];
        size_t n = 0;
        for (int64_t t = T0; t < T0 + HOUR; t += 10) {
                run1(&p, &ol, s, t, &a);
                if (count(&a, ACTION_CHECK, -1) && n < 16)
                        checks[n++] = t;
        }
        assert_true(n >= 7);
        assert_int_equal(checks[1] - checks[0], 1 * MIN);
        assert_int_equal(checks[2] - checks[1], 2 * MIN);
        assert_int_equal(checks[3] - checks[2], 5 * MIN);
        assert_int_equal(checks[4] - checks[3], 10 * MIN);
        assert_int_equal(checks[5] - checks[4], 15 * MIN);
        assert_int_equal(checks[6] - checks[5], 15 * MIN);   /* last step repeats */

        /* A failed check retries after the first step (the cycle logs the
         * failure with its reason; the engine adds no second line). */
        int64_t now = T0 + HOUR;
        run2(&p, &ol, s, KEY, REL_UNKNOWN, NULL, now, &a);
        assert_int_equal(count(&a, ACTION_LOG, LOG_EV_CHECK_FAILED), 0);
        assert_int_equal(state_find_customer(s, KEY)->next_check, now + MIN);
        /* Pending: nothing. */
        run2(&p, &ol, s, KEY, REL_PENDING, NULL, now, &a);
        assert_int_equal(a.n, 0);

        /* check_all: due on every phase 1; phase 2 never checks. */
        p.check_all = true;
        run1(&p, &ol, s, now + 1, &a);
        assert_int_equal(count(&a, ACTION_CHECK, -1), 1);
        int cc = state_find_customer(s, KEY)->check_count;
        run2_empty(&p, &ol, s, now + 1, &a);
        assert_int_equal(a.n, 0);
        assert_int_equal(state_find_customer(s, KEY)->check_count, cc);
        run1(&p, &ol, s, now + 2, &a);
        assert_int_equal(count(&a, ACTION_CHECK, -1), 1);

        /* No schedule: 60 s. */
        p.check_all = false;
        p.n_check_schedule = 0;
        int64_t due = state_find_customer(s, KEY)->next_check;
        run1(&p, &ol, s, due, &a);
        assert_int_equal(count(&a, ACTION_CHECK, -1), 1);
        assert_int_equal(state_find_customer(s, KEY)->next_check, due + 60);

        action_list_clear(&a);
        order_list_clear(&ol);
        state_free(s);
}

static void test_reminders_final_warning_deadline(void **unused) {
        struct eng_params p = params();
        struct order_list ol = { 0 };
        struct action_list a = { 0 };
        struct state *s = state_new();
        size_t new_req = 0, reminders = 0, finals = 0, passed = 0, after_deadline_mail = 0;
        int64_t reminder_at[8], final_at = 0;
        const struct action *last_reminder_ids = NULL;
        bool second_in_reminder = false;
        char want[128];

        add_order(&ol, "ORD-1111-1111-1111", ORDER_STATUS_QUERYING, NULL, "contoso.onmicrosoft.com",
                  URL, T0_RAW);
        for (int64_t t = T0; t <= T0 + 17 * DAY; t += 15 * MIN) {
                if (t == T0 + DAY)   /* a second order of the same customer */
                        add_order(&ol, "ORD-2222-2222-2222", ORDER_STATUS_QUERYING, NULL,
                                  "contoso.onmicrosoft.com", URL, "2026-08-02T09:20:02Z");
                run1(&p, &ol, s, t, &a);
                new_req += count(&a, ACTION_NOTIFY, MAIL_KIND_NEW_REQUEST);
                size_t r = count(&a, ACTION_NOTIFY, MAIL_KIND_REMINDER);
                if (r) {
                        last_reminder_ids = find(&a, ACTION_NOTIFY, MAIL_KIND_REMINDER);
                        if (reminders == 0) {
                                second_in_reminder = names_order(last_reminder_ids, "ORD-2222-2222-2222");
                                snprintf(want, sizeof(want), "reminder:%s:ORD-1111-1111-1111@%s:1", KEY, T0_RAW);
                                assert_string_equal(last_reminder_ids->dedup_key, want);
                        }
                        reminder_at[reminders < 8 ? reminders : 7] = t;
                        reminders += r;
                }
                if (count(&a, ACTION_NOTIFY, MAIL_KIND_FINAL_WARNING)) {
                        const struct action *f = find(&a, ACTION_NOTIFY, MAIL_KIND_FINAL_WARNING);
                        snprintf(want, sizeof(want), "final-warning:%s:%" PRId64, KEY, T0 + 15 * DAY);
                        assert_string_equal(f->dedup_key, want);
                        assert_int_equal(f->n_order_ids, 2);
                        final_at = t;
                        finals++;
                }
                passed += count(&a, ACTION_LOG, LOG_EV_DEADLINE_PASSED);
                if (t >= T0 + 15 * DAY)
                        after_deadline_mail += count(&a, ACTION_NOTIFY, -1);
                /* The second order joins: no new burst for it. */
                assert_int_equal(count(&a, ACTION_LOG, LOG_EV_ORDER_BLOCKED) > 0 && t == T0 + DAY,
                                 t == T0 + DAY);
        }
        assert_int_equal(new_req, 1);
        assert_int_equal(reminders, 3);
        assert_true(second_in_reminder);
        /* T0 is 09:20:02 and polls start at T0, so intervals are exact. */
        assert_int_equal(reminder_at[0], T0 + 2 * DAY);
        assert_int_equal(reminder_at[1], T0 + 4 * DAY);
        assert_int_equal(reminder_at[2], T0 + 6 * DAY);
        assert_int_equal(finals, 1);
        assert_int_equal(final_at, T0 + 12 * DAY);
        assert_int_equal(passed, 1);
        assert_int_equal(after_deadline_mail, 0);
        struct tracked_customer *c = state_find_customer(s, KEY);
        assert_int_equal(c->reminders, 3);
        assert_true(c->final_warning_sent);
        assert_true(c->deadline_passed_logged);

        /* The platform fails the first order; the second's deadline is a day
         * later: final warning / deadline re-arm for it. */
        order_list_clear(&ol);
        add_order(&ol, "ORD-1111-1111-1111", ORDER_STATUS_FAILED, NULL, "contoso.onmicrosoft.com",
                  NULL, T0_RAW);
        add_order(&ol, "ORD-2222-2222-2222", ORDER_STATUS_QUERYING, NULL,
                  "contoso.onmicrosoft.com", URL, "2026-08-02T09:20:02Z");
        run1(&p, &ol, s, T0 + 15 * DAY + HOUR, &a);
        assert_int_equal(count(&a, ACTION_LOG, LOG_EV_ORDER_CLOSED), 1);
        assert_int_equal(count(&a, ACTION_NOTIFY, MAIL_KIND_FINAL_WARNING), 1);
        assert_string_equal(state_find_order(s, "ORD-1111-1111-1111", NULL)->outcome,
                            "left-querying:Failed");
        run1(&p, &ol, s, T0 + 16 * DAY + HOUR, &a);
        assert_int_equal(count(&a, ACTION_LOG, LOG_EV_DEADLINE_PASSED), 1);
        assert_int_equal(count(&a, ACTION_NOTIFY, -1), 0);

        action_list_clear(&a);
        order_list_clear(&ol);
        state_free(s);
}

static void test_new_request_inside_warning_window(void **unused) {
        struct eng_params p = params();
        struct order_list ol = { 0 };
        struct action_list a = { 0 };
        struct state *s = state_new();

        /* Discovered 13 days into Querying: one request mail, no final warning burst. */
        add_order(&ol, "ORD-1111-1111-1111", ORDER_STATUS_QUERYING, NULL, "contoso.onmicrosoft.com",
                  URL, T0_RAW);
        run1(&p, &ol, s, T0 + 13 * DAY, &a);
        assert_int_equal(count(&a, ACTION_NOTIFY, -1), 1);
        assert_int_equal(count(&a, ACTION_NOTIFY, MAIL_KIND_NEW_REQUEST), 1);
        for (int64_t t = T0 + 13 * DAY + HOUR; t < T0 + 15 * DAY; t += HOUR) {
                run1(&p, &ol, s, t, &a);
                assert_int_equal(count(&a, ACTION_NOTIFY, -1), 0);
        }
        action_list_clear(&a);
        order_list_clear(&ol);
        state_free(s);
}

static void test_accepted_processes_blocked_never_draft(void **unused) {
        struct eng_params p = params();
        struct order_list ol = { 0 };
        struct action_list a = { 0 };
        struct state *s = state_new();
        char want[128];

        add_order(&ol, "ORD-1111-1111-1111", ORDER_STATUS_QUERYING, NULL, "contoso.onmicrosoft.com",
                  URL, T0_RAW);
        add_order(&ol, "ORD-2222-2222-2222", ORDER_STATUS_QUERYING, NULL, "contoso.onmicrosoft.com",
                  URL, "2026-08-01T10:00:00Z");
        add_order(&ol, "ORD-3333-3333-3333", ORDER_STATUS_DRAFT, NULL, "contoso.onmicrosoft.com",
                  URL, NULL);
        run1(&p, &ol, s, T0, &a);
        const struct action *n = find(&a, ACTION_NOTIFY, MAIL_KIND_NEW_REQUEST);
        assert_non_null(n);
        assert_int_equal(n->n_order_ids, 2);   /* one mail for both blocked orders */
        assert_false(names_order(n, "ORD-3333-3333-3333"));
        assert_int_equal(count(&a, ACTION_NOTIFY, MAIL_KIND_DRAFT_WARNING), 1);
        assert_int_equal(count(&a, ACTION_LOG, LOG_EV_DRAFT_WARNING), 1);

        int64_t now = T0 + MIN;
        run2(&p, &ol, s, KEY, REL_ACCEPTED, "11111111-2222-3333-4444-555555555555", now, &a);
        assert_int_equal(count(&a, ACTION_PROCESS, -1), 2);
        assert_true(has_process(&a, "ORD-1111-1111-1111"));
        assert_true(has_process(&a, "ORD-2222-2222-2222"));
        assert_false(has_process(&a, "ORD-3333-3333-3333"));
        assert_int_equal(count(&a, ACTION_LOG, LOG_EV_RELATIONSHIP_ACCEPTED), 1);
        struct tracked_customer *c = state_find_customer(s, KEY);
        assert_int_equal(c->accepted_at, now);
        assert_string_equal(c->tenant_id, "11111111-2222-3333-4444-555555555555");
        struct tracked_order *o1 = customer_find_order(c, "ORD-1111-1111-1111");
        assert_int_equal(o1->status, TRACK_PROCESS_SENT);
        assert_int_equal(o1->process_sent_at, now);
        assert_int_equal(customer_find_order(c, "ORD-3333-3333-3333")->status, TRACK_DRAFT);

        /* A repeated fact does not process twice. */
        run2(&p, &ol, s, KEY, REL_ACCEPTED, NULL, now, &a);
        assert_int_equal(count(&a, ACTION_PROCESS, -1), 0);

        /* Outcomes: first done (no confirmation yet: one outstanding). */
        action_list_clear(&a);
        assert_int_equal(eng_process_outcome(&p, s, "ORD-1111-1111-1111", ENG_PROCESS_DONE,
                                             ORDER_STATUS_PROCESSING, NULL, now + 1, &a), 0);
        assert_int_equal(a.n, 0);   /* the caller logs the HTTP result; confirmation waits */
        o1 = state_find_order(s, "ORD-1111-1111-1111", NULL);
        assert_int_equal(o1->status, TRACK_CLOSED);
        assert_string_equal(o1->outcome, "processed");
        assert_int_equal(o1->closed_at, now + 1);
        /* Second: already moved (the customer pressed Process): success. */
        action_list_clear(&a);
        assert_int_equal(eng_process_outcome(&p, s, "ORD-2222-2222-2222", ENG_PROCESS_MOVED,
                                             ORDER_STATUS_PROCESSING, "409", now + 2, &a), 0);
        assert_string_equal(state_find_order(s, "ORD-2222-2222-2222", NULL)->outcome,
                            "already-moved:Processing");
        assert_int_equal(count(&a, ACTION_LOG, LOG_EV_ORDER_CLOSED), 1);
        assert_int_equal(count(&a, ACTION_NOTIFY, MAIL_KIND_CONFIRMATION), 1);
        n = find(&a, ACTION_NOTIFY, MAIL_KIND_CONFIRMATION);
        assert_int_equal(n->n_order_ids, 2);
        snprintf(want, sizeof(want), "confirmation:%s:ORD-1111-1111-1111@%s", KEY, T0_RAW);
        assert_string_equal(n->dedup_key, want);

        /* Later polls: orders processed; the draft is never processed and
         * not warned twice, even with the customer accepted. */
        order_list_clear(&ol);
        add_order(&ol, "ORD-3333-3333-3333", ORDER_STATUS_DRAFT, NULL, "contoso.onmicrosoft.com",
                  URL, NULL);
        run1(&p, &ol, s, now + HOUR, &a);
        assert_int_equal(count(&a, ACTION_NOTIFY, -1), 0);
        assert_int_equal(count(&a, ACTION_PROCESS, -1), 0);
        run2(&p, &ol, s, KEY, REL_ACCEPTED, NULL, now + HOUR, &a);
        assert_int_equal(count(&a, ACTION_PROCESS, -1), 0);
        assert_int_equal(eng_process_outcome(&p, s, "ORD-9999-9999-9999", ENG_PROCESS_DONE,
                                             ORDER_STATUS_PROCESSING, NULL, now, &a), -ENOENT);

        action_list_clear(&a);
        order_list_clear(&ol);
        state_free(s);
}

static void test_draft_then_querying(void **unused) {
        struct eng_params p = params();
        struct order_list ol = { 0 };
        struct action_list a = { 0 };
        struct state *s = state_new();

        add_order(&ol, "ORD-3333-3333-3333", ORDER_STATUS_QUOTED, NULL, "contoso.onmicrosoft.com",
                  URL, NULL);
        run1(&p, &ol, s, T0, &a);
        assert_int_equal(count(&a, ACTION_NOTIFY, -1), 1);
        const struct action *d = find(&a, ACTION_NOTIFY, MAIL_KIND_DRAFT_WARNING);
        assert_non_null(d);
        char want[128];
        snprintf(want, sizeof(want), "draft-warning:ORD-3333-3333-3333:%" PRId64, T0 - DAY);
        assert_string_equal(d->dedup_key, want);
        assert_int_equal(count(&a, ACTION_CHECK, -1), 0);   /* nothing to process: no check */
        for (int i = 1; i < 10; i++) {
                run1(&p, &ol, s, T0 + i * DAY, &a);
                assert_int_equal(a.n, 0);
        }
        /* Placed, then queried by the vendor: a new episode, blocked now. */
        order_list_clear(&ol);
        add_order(&ol, "ORD-3333-3333-3333", ORDER_STATUS_QUERYING, NULL, "contoso.onmicrosoft.com",
                  URL, "2026-08-11T09:00:00Z");
        run1(&p, &ol, s, T0 + 10 * DAY, &a);
        assert_int_equal(count(&a, ACTION_NOTIFY, MAIL_KIND_NEW_REQUEST), 1);
        assert_int_equal(state_find_order(s, "ORD-3333-3333-3333", NULL)->status, TRACK_BLOCKED);
        run2(&p, &ol, s, KEY, REL_ACCEPTED, NULL, T0 + 10 * DAY + 1, &a);
        assert_true(has_process(&a, "ORD-3333-3333-3333"));

        action_list_clear(&a);
        order_list_clear(&ol);
        state_free(s);
}

/* An order whose template could not be read is neither tracked as
 * "another reason" nor closed: nothing is decided about it until it is
 * known. */
static void test_incomplete_order(void **unused) {
        struct eng_params p = params();
        struct order_list ol = { 0 };
        struct action_list a = { 0 };
        struct state *s = state_new();
        p.have_ops = true;

        struct order *o = add_order(&ol, "ORD-5555-5555-5555", ORDER_STATUS_QUERYING, NULL, "contoso.com",
                                    NULL, T0_RAW);
        o->incomplete = true;
        run1(&p, &ol, s, T0, &a);
        assert_int_equal(a.n, 0);
        assert_null(state_find_order(s, "ORD-5555-5555-5555", NULL));

        /* known next cycle: blocked, a request mail, no ops notice */
        o->incomplete = false;
        o->relationship_url = strdup(URL);
        run1(&p, &ol, s, T0 + HOUR, &a);
        assert_int_equal(count(&a, ACTION_NOTIFY, MAIL_KIND_NEW_REQUEST), 1);
        assert_int_equal(count(&a, ACTION_NOTIFY, MAIL_KIND_OPS_NOTICE), 0);

        /* a new episode that cannot be read: the tracked order is not
         * closed and not reclassified */
        free(o->querying_at_raw);
        o->querying_at_raw = strdup("2026-08-03T10:00:00Z");
        util_freep(&o->relationship_url);
        o->incomplete = true;
        run1(&p, &ol, s, T0 + 2 * HOUR, &a);
        assert_int_equal(count(&a, ACTION_NOTIFY, -1), 0);
        struct tracked_order *t = state_find_order(s, "ORD-5555-5555-5555", NULL);
        assert_non_null(t);
        assert_int_equal(t->status, TRACK_BLOCKED);
        assert_string_equal(t->querying_at_raw, T0_RAW);
        /* and never processed in an episode nobody has read */
        run2(&p, &ol, s, "domain:contoso.com", REL_ACCEPTED, NULL, T0 + 2 * HOUR, &a);
        assert_int_equal(count(&a, ACTION_PROCESS, -1), 0);

        action_list_clear(&a);
        order_list_clear(&ol);
        state_free(s);
}

static void test_other_query(void **unused) {
        struct eng_params p = params();
        struct order_list ol = { 0 };
        struct action_list a = { 0 };
        struct state *s = state_new();

        add_order(&ol, "ORD-4444-4444-4444", ORDER_STATUS_QUERYING, NULL, "fabrikam.com", NULL, T0_RAW);
        run1(&p, &ol, s, T0, &a);
        assert_int_equal(count(&a, ACTION_NOTIFY, -1), 0);
        assert_int_equal(count(&a, ACTION_CHECK, -1), 0);
        assert_int_equal(count(&a, ACTION_LOG, LOG_EV_ORDER_OTHER_QUERY), 1);
        run1(&p, &ol, s, T0 + HOUR, &a);
        assert_int_equal(a.n, 0);
        state_free(s);

        s = state_new();
        p.have_ops = true;
        run1(&p, &ol, s, T0, &a);
        assert_int_equal(count(&a, ACTION_NOTIFY, MAIL_KIND_OPS_NOTICE), 1);
        assert_string_equal(find(&a, ACTION_NOTIFY, MAIL_KIND_OPS_NOTICE)->dedup_key,
                            "ops-notice:ORD-4444-4444-4444:2026-08-01T09:20:02.517Z");
        assert_int_equal(count(&a, ACTION_LOG, LOG_EV_ORDER_OTHER_QUERY), 1);
        run1(&p, &ol, s, T0 + HOUR, &a);
        assert_int_equal(a.n, 0);
        /* Even if a check were answered, it is never processed. */
        run2(&p, &ol, s, "domain:fabrikam.com", REL_ACCEPTED, NULL, T0 + HOUR, &a);
        assert_int_equal(count(&a, ACTION_PROCESS, -1), 0);

        /* The URL appears later in the same episode: it becomes blocked. */
        free(ol.items[0].relationship_url);
        ol.items[0].relationship_url = strdup(URL);
        run1(&p, &ol, s, T0 + 2 * HOUR, &a);
        assert_int_equal(count(&a, ACTION_NOTIFY, MAIL_KIND_NEW_REQUEST), 1);
        assert_int_equal(count(&a, ACTION_CHECK, -1), 1);

        /* Remote text in a dedup key stays one printable token. */
        add_order(&ol, "ORD-7777-7777-7777", ORDER_STATUS_QUERYING, NULL, "z.example", NULL,
                  "2026-08-01T09:20:02Z");
        free(ol.items[ol.n - 1].querying_at_raw);
        ol.items[ol.n - 1].querying_at_raw = strdup("2026-08-01\r\nBcc: x@evil");
        run1(&p, &ol, s, T0 + 2 * HOUR + 1, &a);
        assert_string_equal(find(&a, ACTION_NOTIFY, MAIL_KIND_OPS_NOTICE)->dedup_key,
                            "ops-notice:ORD-7777-7777-7777:2026-08-01__Bcc:_x@evil");

        /* A blocked order naming no customer at all goes to ops. */
        add_order(&ol, "ORD-5555-5555-5555", ORDER_STATUS_QUERYING, NULL, NULL, URL, T0_RAW);
        run1(&p, &ol, s, T0 + 3 * HOUR, &a);
        assert_int_equal(count(&a, ACTION_NOTIFY, MAIL_KIND_OPS_NOTICE), 1);
        assert_int_equal(state_find_order(s, "ORD-5555-5555-5555", NULL)->status, TRACK_OTHER_QUERY);

        action_list_clear(&a);
        order_list_clear(&ol);
        state_free(s);
}

static void test_episodes(void **unused) {
        struct eng_params p = params();
        struct order_list ol = { 0 };
        struct action_list a = { 0 };
        struct state *s = state_new();
        struct order_list empty = { 0 };

        add_order(&ol, "ORD-1111-1111-1111", ORDER_STATUS_QUERYING, NULL, "contoso.onmicrosoft.com",
                  URL, T0_RAW);
        run1(&p, &ol, s, T0, &a);
        run1(&p, &ol, s, T0 + 2 * DAY, &a);
        assert_int_equal(count(&a, ACTION_NOTIFY, MAIL_KIND_REMINDER), 1);

        /* Missing from the poll: closed. */
        run1(&p, &empty, s, T0 + 3 * DAY, &a);
        assert_int_equal(count(&a, ACTION_LOG, LOG_EV_ORDER_CLOSED), 1);
        assert_int_equal(a.n, 1);
        struct tracked_order *t = state_find_order(s, "ORD-1111-1111-1111", NULL);
        assert_int_equal(t->status, TRACK_CLOSED);
        assert_string_equal(t->outcome, "disappeared");
        assert_int_equal(t->closed_at, T0 + 3 * DAY);
        assert_int_equal(count(&a, ACTION_CHECK, -1), 0);
        run1(&p, &empty, s, T0 + 3 * DAY + 1, &a);
        assert_int_equal(a.n, 0);

        /* Back with the SAME timestamp (one poll missed it): reopened, same
         * episode, no new mail. */
        run1(&p, &ol, s, T0 + 3 * DAY + HOUR, &a);
        assert_int_equal(count(&a, ACTION_NOTIFY, -1), 0);
        t = state_find_order(s, "ORD-1111-1111-1111", NULL);
        assert_int_equal(t->status, TRACK_BLOCKED);
        assert_null(t->outcome);
        assert_int_equal(state_find_customer(s, KEY)->reminders, 1);
        /* ... and its reminders go on where they were. */
        run1(&p, &ol, s, T0 + 4 * DAY, &a);
        assert_int_equal(count(&a, ACTION_NOTIFY, MAIL_KIND_REMINDER), 1);
        assert_int_equal(count(&a, ACTION_NOTIFY, -1), 1);
        run1(&p, &empty, s, T0 + 4 * DAY + 2, &a);
        t = state_find_order(s, "ORD-1111-1111-1111", NULL);
        assert_int_equal(t->status, TRACK_CLOSED);

        /* Back in Querying with a new timestamp: new episode, new request. */
        order_list_clear(&ol);
        add_order(&ol, "ORD-1111-1111-1111", ORDER_STATUS_QUERYING, NULL, "contoso.onmicrosoft.com",
                  URL, "2026-08-06T00:00:00Z");
        run1(&p, &ol, s, T0 + 5 * DAY, &a);
        const struct action *n = find(&a, ACTION_NOTIFY, MAIL_KIND_NEW_REQUEST);
        assert_non_null(n);
        char want[128];
        snprintf(want, sizeof(want), "new-request:%s:ORD-1111-1111-1111@2026-08-06T00:00:00Z", KEY);
        assert_string_equal(n->dedup_key, want);
        struct tracked_customer *c = state_find_customer(s, KEY);
        assert_int_equal(c->reminders, 0);
        assert_int_equal(c->n_orders, 1);
        t = &c->orders[0];
        assert_int_equal(t->status, TRACK_BLOCKED);
        assert_null(t->outcome);
        assert_string_equal(t->querying_at_raw, "2026-08-06T00:00:00Z");

        /* Leaves Querying to Processing (customer pressed Process). */
        ol.items[0].status = ORDER_STATUS_PROCESSING;
        run1(&p, &ol, s, T0 + 6 * DAY, &a);
        assert_string_equal(state_find_order(s, "ORD-1111-1111-1111", NULL)->outcome,
                            "left-querying:Processing");

        action_list_clear(&a);
        order_list_clear(&ol);
        state_free(s);
}

/* The first request waits for the customer's first check: accepted
 * already -> no request, Process; pending -> the request in phase 2; a
 * failed check -> the request anyway. */
static void test_check_before_first_request(void **unused) {
        struct eng_params p = params();
        p.check_first = true;
        struct order_list ol = { 0 };
        struct action_list a = { 0 };
        struct state *s = state_new();
        const char *id = "ORD-1111-1111-1111";

        add_order(&ol, id, ORDER_STATUS_QUERYING, NULL, "contoso.onmicrosoft.com", URL, T0_RAW);
        run1(&p, &ol, s, T0, &a);
        assert_int_equal(count(&a, ACTION_NOTIFY, -1), 0);
        assert_int_equal(count(&a, ACTION_CHECK, -1), 1);
        run2(&p, &ol, s, KEY, REL_ACCEPTED, NULL, T0, &a);
        assert_true(has_process(&a, id));
        assert_int_equal(count(&a, ACTION_NOTIFY, -1), 0);
        assert_int_equal(state_find_customer(s, KEY)->notified_at, 0);
        state_free(s);

        for (int st = REL_UNKNOWN; st <= REL_PENDING; st++) {
                s = state_new();
                run1(&p, &ol, s, T0, &a);
                assert_int_equal(count(&a, ACTION_NOTIFY, -1), 0);
                run2(&p, &ol, s, KEY, (enum rel_state) st, NULL, T0, &a);
                assert_false(has_process(&a, id));
                assert_int_equal(count(&a, ACTION_NOTIFY, MAIL_KIND_NEW_REQUEST), 1);
                assert_int_equal(state_find_customer(s, KEY)->notified_at, T0);
                /* once mailed, never again for this episode */
                run1(&p, &ol, s, T0 + 1, &a);
                assert_int_equal(count(&a, ACTION_NOTIFY, -1), 0);
                state_free(s);
        }

        /* The cycle stopped between phase 1 (its intent saved: the check
         * emitted, the schedule advanced) and phase 2 (a crash, a lost
         * leadership, a failed save): the next cycle checks again at once
         * and still holds the request back, so that an admin who accepted
         * is not asked.  Bounded: after FIRST_CHECK_TRIES lost checks the
         * request goes without waiting. */
        s = state_new();
        run1(&p, &ol, s, T0, &a);
        assert_int_equal(count(&a, ACTION_CHECK, -1), 1);
        assert_int_equal(count(&a, ACTION_NOTIFY, -1), 0);
        /* no phase 2: the next cycle, long before the check schedule says */
        run1(&p, &ol, s, T0 + 5, &a);
        assert_int_equal(count(&a, ACTION_CHECK, -1), 1);
        assert_int_equal(count(&a, ACTION_NOTIFY, -1), 0);
        run2(&p, &ol, s, KEY, REL_ACCEPTED, NULL, T0 + 5, &a);
        assert_true(has_process(&a, id));
        assert_int_equal(count(&a, ACTION_NOTIFY, -1), 0);
        assert_int_equal(state_find_customer(s, KEY)->notified_at, 0);
        /* answered: the schedule is the usual one again */
        run1(&p, &ol, s, T0 + 6, &a);
        assert_int_equal(count(&a, ACTION_CHECK, -1), 0);
        state_free(s);

        /* every first check lost: three checks, then the request goes */
        s = state_new();
        for (int i = 0; i < 3; i++) {
                run1(&p, &ol, s, T0 + 5 * i, &a);
                assert_int_equal(count(&a, ACTION_CHECK, -1), 1);
                assert_int_equal(count(&a, ACTION_NOTIFY, -1), 0);
        }
        run1(&p, &ol, s, T0 + 15, &a);
        assert_int_equal(count(&a, ACTION_NOTIFY, MAIL_KIND_NEW_REQUEST), 1);
        assert_int_equal(state_find_customer(s, KEY)->notified_at, T0 + 15);
        state_free(s);
        action_list_clear(&a);
        order_list_clear(&ol);
}

static void test_process_outcomes(void **unused) {
        struct eng_params p = params();
        p.have_ops = true;
        struct order_list ol = { 0 };
        struct action_list a = { 0 };
        struct state *s = state_new();
        const char *id = "ORD-1111-1111-1111";

        add_order(&ol, id, ORDER_STATUS_QUERYING, NULL, "contoso.onmicrosoft.com", URL, T0_RAW);
        run1(&p, &ol, s, T0, &a);
        run2(&p, &ol, s, KEY, REL_ACCEPTED, NULL, T0 + 1, &a);
        assert_true(has_process(&a, id));

        /* 4xx, re-read still Querying: refused.  Back to blocked, one error
         * log, one ops notice naming the refusal, and never processed again
         * in this episode, however often the customer is found accepted. */
        action_list_clear(&a);
        assert_int_equal(eng_process_outcome(&p, s, id, ENG_PROCESS_REFUSED,
                                             ORDER_STATUS_QUERYING, "HTTP 422 validation", T0 + 2, &a), 0);
        assert_int_equal(count(&a, ACTION_LOG, LOG_EV_PROCESS_FAILED), 1);
        assert_int_equal(events_priority(find(&a, ACTION_LOG, -1)), LOG_ERR);
        char *logged = events_message(find(&a, ACTION_LOG, -1));
        assert_non_null(logged);
        assert_non_null(strstr(logged, "422 validation"));
        free(logged);
        assert_int_equal(count(&a, ACTION_NOTIFY, MAIL_KIND_OPS_NOTICE), 1);
        assert_non_null(strstr(find(&a, ACTION_NOTIFY, MAIL_KIND_OPS_NOTICE)->message, "422 validation"));
        struct tracked_order *t = state_find_order(s, id, NULL);
        assert_int_equal(t->status, TRACK_BLOCKED);
        assert_int_equal(t->process_sent_at, T0 + 1);   /* kept as history */
        run1(&p, &ol, s, T0 + 3, &a);
        assert_int_equal(count(&a, ACTION_PROCESS, -1), 0);
        assert_int_equal(count(&a, ACTION_NOTIFY, -1), 0);   /* accepted: no reminder */
        int64_t due = state_find_customer(s, KEY)->next_check;
        run1(&p, &ol, s, due, &a);
        assert_int_equal(count(&a, ACTION_CHECK, -1), 1);
        run2(&p, &ol, s, KEY, REL_ACCEPTED, NULL, due, &a);
        assert_false(has_process(&a, id));
        assert_int_equal(count(&a, ACTION_NOTIFY, -1), 0);
        /* The order changes (a new template): processed again. */
        free(ol.items[0].template_id);
        ol.items[0].template_id = strdup("TPL-0000-0000-0002");
        run1(&p, &ol, s, due + 1, &a);
        assert_null(state_find_order(s, id, NULL)->outcome);
        run2(&p, &ol, s, KEY, REL_ACCEPTED, NULL, due + 1, &a);
        assert_true(has_process(&a, id));
        assert_int_equal(state_find_order(s, id, NULL)->process_attempts, 2);
        due += 1;

        /* 5xx: unknown, stays sent; same episode next cycle -> phase 2 asks
         * again (the cycle re-reads before posting); phase 1 never does. */
        action_list_clear(&a);
        assert_int_equal(eng_process_outcome(&p, s, id, ENG_PROCESS_UNKNOWN, ORDER_STATUS_UNKNOWN,
                                             "503", due + 1, &a), 0);
        assert_int_equal(a.n, 0);
        assert_int_equal(state_find_order(s, id, NULL)->status, TRACK_PROCESS_SENT);
        run1(&p, &ol, s, due + 60, &a);
        assert_int_equal(count(&a, ACTION_PROCESS, -1), 0);
        assert_int_equal(count(&a, ACTION_CHECK, -1), 0);
        run2_empty(&p, &ol, s, due + 60, &a);
        assert_int_equal(count(&a, ACTION_PROCESS, -1), 1);
        assert_true(has_process(&a, id));
        assert_int_equal(state_find_order(s, id, NULL)->process_sent_at, due + 60);
        /* Never twice for the same decision. */
        run2_empty(&p, &ol, s, due + 60, &a);
        assert_int_equal(count(&a, ACTION_PROCESS, -1), 0);
        /* A new query (other timestamp) is a new episode, not a re-send. */
        action_list_clear(&a);
        assert_int_equal(eng_process_outcome(&p, s, id, ENG_PROCESS_UNKNOWN, ORDER_STATUS_UNKNOWN,
                                             NULL, due + 61, &a), 0);
        free(ol.items[0].querying_at_raw);
        ol.items[0].querying_at_raw = strdup("2026-08-01T12:00:00Z");
        run2_empty(&p, &ol, s, due + 62, &a);
        assert_int_equal(count(&a, ACTION_PROCESS, -1), 0);
        free(ol.items[0].querying_at_raw);
        ol.items[0].querying_at_raw = strdup(T0_RAW);

        /* Unknown again, then the poll shows it Processing: closed, confirmed. */
        action_list_clear(&a);
        assert_int_equal(eng_process_outcome(&p, s, id, ENG_PROCESS_UNKNOWN, ORDER_STATUS_UNKNOWN,
                                             NULL, due + 61, &a), 0);
        ol.items[0].status = ORDER_STATUS_PROCESSING;
        run1(&p, &ol, s, due + 120, &a);
        assert_int_equal(count(&a, ACTION_PROCESS, -1), 0);
        t = state_find_order(s, id, NULL);
        assert_int_equal(t->status, TRACK_CLOSED);
        assert_string_equal(t->outcome, "left-querying:Processing");
        assert_int_equal(count(&a, ACTION_NOTIFY, MAIL_KIND_CONFIRMATION), 1);
        run1(&p, &ol, s, due + 180, &a);
        assert_int_equal(a.n, 0);

        /* A stale outcome for a closed order changes nothing. */
        action_list_clear(&a);
        assert_int_equal(eng_process_outcome(&p, s, id, ENG_PROCESS_UNKNOWN, ORDER_STATUS_UNKNOWN,
                                             NULL, due + 200, &a), 0);
        assert_int_equal(a.n, 0);
        assert_int_equal(state_find_order(s, id, NULL)->status, TRACK_CLOSED);
        assert_int_equal(eng_process_outcome(NULL, s, id, ENG_PROCESS_DONE, 0, NULL, 1, &a), -EINVAL);

        action_list_clear(&a);
        order_list_clear(&ol);
        state_free(s);
}

static void test_new_order_for_accepted_customer(void **unused) {
        struct eng_params p = params();
        struct order_list ol = { 0 };
        struct action_list a = { 0 };
        struct state *s = state_new();

        add_order(&ol, "ORD-1111-1111-1111", ORDER_STATUS_QUERYING, NULL, "contoso.onmicrosoft.com",
                  URL, T0_RAW);
        run1(&p, &ol, s, T0, &a);
        run2(&p, &ol, s, KEY, REL_ACCEPTED, NULL, T0 + 1, &a);
        assert_int_equal(count(&a, ACTION_PROCESS, -1), 1);
        /* The cycle crashed before the outcome; next cycle a second order
         * appears: no request mail (accepted), checked now and processed. */
        add_order(&ol, "ORD-2222-2222-2222", ORDER_STATUS_QUERYING, NULL, "contoso.onmicrosoft.com",
                  URL, "2026-08-01T09:30:00Z");
        run1(&p, &ol, s, T0 + 30, &a);
        assert_int_equal(count(&a, ACTION_NOTIFY, -1), 0);
        assert_int_equal(count(&a, ACTION_CHECK, -1), 1);
        assert_int_equal(count(&a, ACTION_PROCESS, -1), 0);
        run2(&p, &ol, s, KEY, REL_ACCEPTED, NULL, T0 + 30, &a);
        assert_int_equal(count(&a, ACTION_PROCESS, -1), 2);
        /* the first is still Querying in the same episode: asked again */
        assert_true(has_process(&a, "ORD-1111-1111-1111"));
        assert_true(has_process(&a, "ORD-2222-2222-2222"));

        action_list_clear(&a);
        order_list_clear(&ol);
        state_free(s);
}

static void test_domain_to_tenant_migration(void **unused) {
        struct eng_params p = params();
        struct order_list ol = { 0 };
        struct action_list a = { 0 };
        struct state *s = state_new();
        const char *tenant = "AAAAAAAA-2222-3333-4444-555555555555";
        const char *tkey = "aaaaaaaa-2222-3333-4444-555555555555";

        add_order(&ol, "ORD-1111-1111-1111", ORDER_STATUS_QUERYING, NULL, "contoso.onmicrosoft.com",
                  URL, T0_RAW);
        run1(&p, &ol, s, T0, &a);
        /* Another order of the same tenant is already known by tenant id. */
        add_order(&ol, "ORD-2222-2222-2222", ORDER_STATUS_QUERYING, tenant, "contoso.onmicrosoft.com",
                  URL, T0_RAW);
        /* ... and the first order now carries the tenant id too. */
        free(ol.items[0].tenant_id);
        ol.items[0].tenant_id = strdup(tenant);
        run1(&p, &ol, s, T0 + 10, &a);
        assert_int_equal(s->n_customers, 1);
        assert_null(state_find_customer(s, KEY));
        struct tracked_customer *c = state_find_customer(s, tkey);
        assert_non_null(c);
        assert_int_equal(c->n_orders, 2);
        assert_int_equal(c->notified_at, T0);   /* kept: no second request */
        assert_string_equal(c->tenant_id, tenant);
        assert_int_equal(count(&a, ACTION_NOTIFY, -1), 0);

        /* Merge into an existing tenant customer. */
        state_free(s);
        s = state_new();
        order_list_clear(&ol);
        add_order(&ol, "ORD-2222-2222-2222", ORDER_STATUS_QUERYING, tenant, "other.example",
                  URL, T0_RAW);
        add_order(&ol, "ORD-1111-1111-1111", ORDER_STATUS_QUERYING, NULL, "contoso.onmicrosoft.com",
                  URL, T0_RAW);
        run1(&p, &ol, s, T0, &a);
        assert_int_equal(s->n_customers, 2);
        free(ol.items[1].tenant_id);
        ol.items[1].tenant_id = strdup(tenant);
        run1(&p, &ol, s, T0 + 10, &a);
        assert_int_equal(s->n_customers, 1);
        c = state_find_customer(s, tkey);
        assert_int_equal(c->n_orders, 2);
        assert_non_null(customer_find_order(c, "ORD-1111-1111-1111"));

        /* The fact names the tenant: the check of a domain customer learns it. */
        state_free(s);
        s = state_new();
        order_list_clear(&ol);
        add_order(&ol, "ORD-1111-1111-1111", ORDER_STATUS_QUERYING, NULL, "contoso.onmicrosoft.com",
                  URL, T0_RAW);
        run1(&p, &ol, s, T0, &a);
        run2(&p, &ol, s, KEY, REL_PENDING, tenant, T0 + 1, &a);
        run2(&p, &ol, s, KEY, REL_ACCEPTED, tenant, T0 + 2, &a);
        assert_string_equal(state_find_customer(s, KEY)->tenant_id, tenant);

        action_list_clear(&a);
        order_list_clear(&ol);
        state_free(s);
}

/* Same input state, same input: same actions with the same dedup keys. */
static void test_rerun_is_deterministic(void **unused) {
        struct eng_params p = params();
        struct order_list ol = { 0 };
        struct action_list a = { 0 }, b = { 0 };
        struct state *s = state_new(), s2, s3;

        add_order(&ol, "ORD-1111-1111-1111", ORDER_STATUS_QUERYING, NULL, "contoso.onmicrosoft.com",
                  URL, T0_RAW);
        add_order(&ol, "ORD-3333-3333-3333", ORDER_STATUS_DRAFT, NULL, "x.example", URL, NULL);
        run1(&p, &ol, s, T0, &a);
        for (int day = 1; day < 14; day++) {
                int64_t now = T0 + day * DAY;
                assert_int_equal(state_copy(&s2, s), 0);
                assert_int_equal(state_copy(&s3, s), 0);
                run1(&p, &ol, &s2, now, &a);   /* "crashed before saving" */
                run1(&p, &ol, &s3, now, &b);   /* re-run from the saved state */
                assert_int_equal(a.n, b.n);
                for (size_t i = 0; i < a.n; i++) {
                        assert_int_equal(a.items[i].type, b.items[i].type);
                        if (a.items[i].dedup_key)
                                assert_string_equal(a.items[i].dedup_key, b.items[i].dedup_key);
                }
                run1(&p, &ol, s, now, &a);
                state_clear(&s2);
                state_clear(&s3);
        }
        action_list_clear(&a);
        action_list_clear(&b);
        order_list_clear(&ol);
        state_free(s);
}

static void test_duplicates_and_bad_input(void **unused) {
        struct eng_params p = params();
        struct order_list ol = { 0 };
        struct action_list a = { 0 };
        struct state *s = state_new();

        assert_int_equal(eng_decide(NULL, &ol, NULL, s, T0, &a), -EINVAL);
        assert_int_equal(eng_decide(&p, NULL, NULL, s, T0, &a), 0);   /* no orders: fine */
        add_order(&ol, "ORD-1111-1111-1111", ORDER_STATUS_QUERYING, NULL, "contoso.onmicrosoft.com",
                  URL, T0_RAW);
        add_order(&ol, "ORD-1111-1111-1111", ORDER_STATUS_QUERYING, NULL, "contoso.onmicrosoft.com",
                  URL, T0_RAW);
        struct order *noid = order_list_add(&ol);
        noid->status = ORDER_STATUS_QUERYING;
        add_order(&ol, "ORD-6666-6666-6666", ORDER_STATUS_COMPLETED, NULL, "y.example", URL, T0_RAW);
        run1(&p, &ol, s, T0, &a);
        assert_int_equal(s->n_customers, 1);
        assert_int_equal(s->customers[0].n_orders, 1);
        assert_int_equal(count(&a, ACTION_NOTIFY, -1), 1);
        /* A fact for an unknown customer is ignored. */
        run2(&p, &ol, s, "domain:nobody.example", REL_ACCEPTED, NULL, T0, &a);
        assert_int_equal(a.n, 0);

        /* Many customers and orders: the indexes hold up. */
        order_list_clear(&ol);
        for (int i = 0; i < 3000; i++) {
                char id[32], dom[32];
                snprintf(id, sizeof(id), "ORD-%04d-0000-0000", i);
                snprintf(dom, sizeof(dom), "c%d.example", i / 2);
                add_order(&ol, id, ORDER_STATUS_QUERYING, NULL, dom, URL, T0_RAW);
        }
        run1(&p, &ol, s, T0 + 1, &a);
        assert_int_equal(count(&a, ACTION_NOTIFY, MAIL_KIND_NEW_REQUEST), 1500);
        assert_int_equal(count(&a, ACTION_CHECK, -1), 1500);
        run1(&p, &ol, s, T0 + 2, &a);
        assert_int_equal(a.n, 0);
        /* Every customer learns its tenant id at once: 1500 migrations. */
        for (size_t i = 0; i < ol.n; i++) {
                char tenant[64];
                snprintf(tenant, sizeof(tenant), "tenant-%zu", i / 2);
                ol.items[i].tenant_id = strdup(tenant);
        }
        run1(&p, &ol, s, T0 + 3, &a);
        assert_int_equal(count(&a, ACTION_NOTIFY, -1), 0);
        assert_int_equal(s->n_customers, 1501);   /* + the customer of the closed order */
        assert_non_null(state_find_customer(s, "tenant-1499"));
        assert_int_equal(state_find_customer(s, "tenant-1499")->n_orders, 2);

        action_list_clear(&a);
        order_list_clear(&ol);
        state_free(s);
}

/* The NOTIFY dedup keys of l, sorted, joined by spaces (malloc'd). */
static char *notify_keys(const struct action_list *l) {
        const char *keys[16];
        size_t n = 0, len = 1;
        for (size_t i = 0; i < l->n && n < 16; i++)
                if (l->items[i].type == ACTION_NOTIFY) {
                        keys[n++] = l->items[i].dedup_key;
                        len += strlen(l->items[i].dedup_key) + 1;
                }
        for (size_t i = 1; i < n; i++)
                for (size_t j = i; j > 0 && strcmp(keys[j - 1], keys[j]) > 0; j--) {
                        const char *t = keys[j];
                        keys[j] = keys[j - 1];
                        keys[j - 1] = t;
                }
        char *out = calloc(1, len);
        assert_non_null(out);
        for (size_t i = 0; i < n; i++) {
                strcat(out, keys[i]);
                strcat(out, " ");
        }
        return out;
}

/* Fails every NOTIFY of l as if the outbox had refused it. */
static void fail_notifies(struct state *s, const struct action_list *l) {
        for (size_t i = 0; i < l->n; i++)
                if (l->items[i].type == ACTION_NOTIFY)
                        assert_int_equal(eng_notify_failed(s, &l->items[i]), 0);
}

/* Issue 12.6 and 12.4: dedup keys come from platform data only, so a lost
 * state decided again later makes the keys the outbox already holds; and a
 * mail that could not be queued is not recorded: the next cycle decides it
 * again, under the same key (the new request, not a reminder a day later). */
static void test_keys_platform_only_and_failed_mails(void **unused) {
        struct eng_params p = params();
        struct order_list ol = { 0 };
        struct action_list a = { 0 };
        struct state *s = state_new(), *fresh = state_new();
        char *k1, *k2;

        p.have_ops = true;
        add_order(&ol, "ORD-1111-1111-1111", ORDER_STATUS_QUERYING, NULL, "contoso.onmicrosoft.com", URL, T0_RAW);
        add_order(&ol, "ORD-3333-3333-3333", ORDER_STATUS_DRAFT, NULL, "contoso.onmicrosoft.com", URL, NULL);
        add_order(&ol, "ORD-4444-4444-4444", ORDER_STATUS_QUERYING, NULL, "fabrikam.com", NULL, T0_RAW);
        run1(&p, &ol, s, T0, &a);
        assert_int_equal(count(&a, ACTION_NOTIFY, -1), 3);
        k1 = notify_keys(&a);
        /* the state is lost; hours later a fresh one decides the same mails */
        run1(&p, &ol, fresh, T0 + 3 * HOUR, &a);
        k2 = notify_keys(&a);
        assert_string_equal(k1, k2);
        free(k2);

        /* none of them could be queued: all decided again, same keys */
        fail_notifies(fresh, &a);
        struct tracked_customer *c = state_find_customer(fresh, KEY);
        assert_int_equal(c->notified_at, 0);
        run1(&p, &ol, fresh, T0 + 4 * HOUR, &a);
        assert_int_equal(count(&a, ACTION_NOTIFY, MAIL_KIND_NEW_REQUEST), 1);
        k2 = notify_keys(&a);
        assert_string_equal(k1, k2);
        free(k2);
        /* queued this time: recorded, nothing more */
        run1(&p, &ol, fresh, T0 + 5 * HOUR, &a);
        assert_int_equal(count(&a, ACTION_NOTIFY, -1), 0);

        /* a reminder that could not be queued comes again, same number */
        run1(&p, &ol, fresh, T0 + 4 * HOUR + 2 * DAY, &a);
        const struct action *r = find(&a, ACTION_NOTIFY, MAIL_KIND_REMINDER);
        assert_non_null(r);
        k2 = strdup(r->dedup_key);
        fail_notifies(fresh, &a);
        assert_int_equal(c->reminders, 0);
        run1(&p, &ol, fresh, T0 + 5 * HOUR + 2 * DAY, &a);
        r = find(&a, ACTION_NOTIFY, MAIL_KIND_REMINDER);
        assert_non_null(r);
        assert_string_equal(r->dedup_key, k2);
        assert_int_equal(c->reminders, 1);
        free(k2);

        /* a confirmation too */
        int64_t now = T0 + 6 * HOUR + 2 * DAY;
        run2(&p, &ol, fresh, KEY, REL_ACCEPTED, NULL, now, &a);
        assert_true(has_process(&a, "ORD-1111-1111-1111"));
        action_list_clear(&a);
        assert_int_equal(eng_process_outcome(&p, fresh, "ORD-1111-1111-1111", ENG_PROCESS_DONE,
                                             ORDER_STATUS_PROCESSING, NULL, now, &a), 0);
        r = find(&a, ACTION_NOTIFY, MAIL_KIND_CONFIRMATION);
        assert_non_null(r);
        k2 = strdup(r->dedup_key);
        fail_notifies(fresh, &a);
        order_list_clear(&ol);
        add_order(&ol, "ORD-3333-3333-3333", ORDER_STATUS_DRAFT, NULL, "contoso.onmicrosoft.com", URL, NULL);
        add_order(&ol, "ORD-4444-4444-4444", ORDER_STATUS_QUERYING, NULL, "fabrikam.com", NULL, T0_RAW);
        run1(&p, &ol, fresh, now + HOUR, &a);
        assert_int_equal(count(&a, ACTION_NOTIFY, -1), 1);
        r = find(&a, ACTION_NOTIFY, MAIL_KIND_CONFIRMATION);
        assert_non_null(r);
        assert_string_equal(r->dedup_key, k2);
        run1(&p, &ol, fresh, now + 2 * HOUR, &a);
        assert_int_equal(count(&a, ACTION_NOTIFY, -1), 0);
        free(k2);

        free(k1);
        action_list_clear(&a);
        order_list_clear(&ol);
        state_free(s);
        state_free(fresh);
}

/* ---- Partner Center accounts (issue 11 part 3) ---- */

#define TEN "6f1c2a7e-0b8d-4c55-9e41-2d7f0a3b9c10"
#define PID_X "5c1e9a2b-7d4f-4e6a-9b3c-2f8d1a6e4b70"

static struct order *add_acct_order(struct order_list *l, const char *id, const char *account,
                                    const char *pid) {
        struct order *o = add_order(l, id, ORDER_STATUS_QUERYING, TEN, "contoso.onmicrosoft.com", URL, T0_RAW);
        o->account = util_strdup0(account);
        o->partner_id = util_strdup0(pid);
        return o;
}

static const struct action *find_for(const struct action_list *l, enum action_type type, const char *key) {
        for (size_t i = 0; i < l->n; i++)
                if (l->items[i].type == type && l->items[i].customer_key &&
                    strcmp(l->items[i].customer_key, key) == 0)
                        return &l->items[i];
        return NULL;
}

/* Phase 2 with one fact as the cycle gives it (the account that was asked). */
static void run2_as(const struct eng_params *p, const struct order_list *ol, struct state *s,
                    const char *key, const char *account, const char *tenant, int64_t now,
                    struct action_list *acts) {
        struct rel_fact_list facts = { 0 };
        struct rel_fact *f = rel_fact_list_add(&facts);
        assert_non_null(f);
        f->customer_key = strdup(key);
        f->account = util_strdup0(account);
        f->state = REL_ACCEPTED;
        f->tenant_id = util_strdup0(tenant);
        f->checked_at = now;
        action_list_clear(acts);
        assert_int_equal(eng_decide(p, ol, &facts, s, now, acts), 0);
        rel_fact_list_clear(&facts);
}

static void test_accounts_are_separate_customers(void **unused) {
        struct eng_params p = params();
        struct order_list ol = { 0 };
        struct action_list a = { 0 };
        struct state *s = state_new();
        char want[128];

        add_acct_order(&ol, "ORD-1111-1111-1111", NULL, NULL);        /* default account */
        add_acct_order(&ol, "ORD-2222-2222-2222", "brazil", PID_X);
        run1(&p, &ol, s, T0, &a);
        /* one customer, one request, one check per (account, tenant) */
        assert_int_equal(s->n_customers, 2);
        assert_int_equal(count(&a, ACTION_NOTIFY, MAIL_KIND_NEW_REQUEST), 2);
        const struct action *n = find_for(&a, ACTION_NOTIFY, TEN);
        assert_non_null(n);
        /* the default account's keys are what they were before accounts
         * (platform data only: the order and its episode start) */
        snprintf(want, sizeof(want), "new-request:%s:ORD-1111-1111-1111@%s", TEN, T0_RAW);
        assert_string_equal(n->dedup_key, want);
        assert_string_equal(n->account, ACCOUNT_DEFAULT);
        n = find_for(&a, ACTION_NOTIFY, "brazil/" TEN);
        assert_non_null(n);
        snprintf(want, sizeof(want), "new-request:brazil/%s:ORD-2222-2222-2222@%s", TEN, T0_RAW);
        assert_string_equal(n->dedup_key, want);
        const struct action *c = find_for(&a, ACTION_CHECK, "brazil/" TEN);
        assert_non_null(c);
        assert_string_equal(c->account, "brazil");
        assert_string_equal(c->tenant_id, TEN);
        assert_string_equal(find_for(&a, ACTION_CHECK, TEN)->account, ACCOUNT_DEFAULT);
        assert_string_equal(find_for(&a, ACTION_LOG, "brazil/" TEN)->account, "brazil");
        assert_string_equal(state_find_customer(s, "brazil/" TEN)->account, "brazil");

        /* accepted with the default account: only its order is processed */
        run2_as(&p, &ol, s, TEN, NULL, TEN, T0 + 1, &a);
        assert_true(has_process(&a, "ORD-1111-1111-1111"));
        assert_false(has_process(&a, "ORD-2222-2222-2222"));
        assert_string_equal(find(&a, ACTION_PROCESS, -1)->account, ACCOUNT_DEFAULT);
        /* the outcome's mail and logs say which account */
        struct action_list out = { 0 };
        assert_int_equal(eng_process_outcome(&p, s, "ORD-1111-1111-1111", ENG_PROCESS_DONE,
                                             ORDER_STATUS_PROCESSING, NULL, T0 + 1, &out), 0);
        assert_string_equal(find(&out, ACTION_NOTIFY, MAIL_KIND_CONFIRMATION)->account, ACCOUNT_DEFAULT);
        action_list_clear(&out);
        /* a fact found by tenant id only (key unknown) stays with the account asked */
        run2_as(&p, &ol, s, "stale-key", ACCOUNT_DEFAULT, TEN, T0 + 2, &a);
        assert_false(has_process(&a, "ORD-2222-2222-2222"));
        run2_as(&p, &ol, s, "stale-key", "brazil", TEN, T0 + 3, &a);
        assert_true(has_process(&a, "ORD-2222-2222-2222"));
        for (size_t i = 0; i < a.n; i++)
                if (a.items[i].type == ACTION_PROCESS && strcmp(a.items[i].order_id, "ORD-2222-2222-2222") == 0)
                        assert_string_equal(a.items[i].account, "brazil");

        action_list_clear(&a);
        order_list_clear(&ol);
        state_free(s);
}

static void test_unlisted_partner_never_processed(void **unused) {
        struct eng_params p = params();
        struct order_list ol = { 0 };
        struct action_list a = { 0 };
        struct state *s = state_new();
        const char *key = ACCOUNT_NONE "/" TEN;

        p.have_ops = true;
        add_acct_order(&ol, "ORD-3333-3333-3333", ACCOUNT_NONE, PID_X);
        run1(&p, &ol, s, T0, &a);
        /* the admins are asked (the link is genuine) */
        assert_int_equal(count(&a, ACTION_NOTIFY, MAIL_KIND_NEW_REQUEST), 1);
        /* ops: one notice naming the order and the partnerId */
        assert_int_equal(count(&a, ACTION_NOTIFY, MAIL_KIND_PARTNER_UNLISTED), 1);
        const struct action *n = find(&a, ACTION_NOTIFY, MAIL_KIND_PARTNER_UNLISTED);
        assert_string_equal(n->partner_id, PID_X);
        assert_true(names_order(n, "ORD-3333-3333-3333"));
        assert_int_equal(count(&a, ACTION_LOG, LOG_EV_PARTNER_UNLISTED), 1);
        /* never asked about */
        assert_int_equal(count(&a, ACTION_CHECK, -1), 0);
        assert_string_equal(state_find_customer(s, key)->account, ACCOUNT_NONE);

        /* not every cycle: later polls say nothing new, even --once */
        p.check_all = true;
        run1(&p, &ol, s, T0 + HOUR, &a);
        assert_int_equal(count(&a, ACTION_NOTIFY, MAIL_KIND_PARTNER_UNLISTED), 0);
        assert_int_equal(count(&a, ACTION_LOG, LOG_EV_PARTNER_UNLISTED), 0);
        assert_int_equal(count(&a, ACTION_CHECK, -1), 0);
        /* reminders still go to the customer */
        run1(&p, &ol, s, T0 + 2 * DAY + 1, &a);
        assert_int_equal(count(&a, ACTION_NOTIFY, MAIL_KIND_REMINDER), 1);

        /* whatever fact arrives, it is never processed */
        run2_as(&p, &ol, s, key, ACCOUNT_NONE, TEN, T0 + 3 * DAY, &a);
        assert_int_equal(count(&a, ACTION_PROCESS, -1), 0);
        run2_as(&p, &ol, s, "stale-key", ACCOUNT_DEFAULT, TEN, T0 + 3 * DAY, &a);
        assert_int_equal(count(&a, ACTION_PROCESS, -1), 0);
        /* nor re-sent as an unknown outcome */
        state_find_customer(s, key)->orders[0].status = TRACK_PROCESS_SENT;
        state_find_customer(s, key)->orders[0].process_sent_at = T0;
        run2_empty(&p, &ol, s, T0 + 4 * DAY, &a);
        assert_int_equal(count(&a, ACTION_PROCESS, -1), 0);

        action_list_clear(&a);
        order_list_clear(&ol);
        state_free(s);
}

/* A state written before accounts: customers without an account. */
static struct tracked_customer *legacy_customer(struct state *s, const char *order_id) {
        struct tracked_customer *c = state_add_customer(s, TEN);
        assert_non_null(c);
        c->tenant_id = strdup(TEN);
        c->first_seen = c->notified_at = c->last_mail_at = T0;
        c->accepted_at = T0 + MIN;
        c->next_check = T0 + MIN;
        struct tracked_order *t = customer_add_order(c, order_id);
        assert_non_null(t);
        t->status = TRACK_BLOCKED;
        t->notified = true;
        t->querying_at_raw = strdup(T0_RAW);
        t->querying_since = T0;
        t->first_seen = T0;
        t->relationship_url = strdup(URL);
        return c;
}

static void test_legacy_state_adopted(void **unused) {
        struct eng_params p = params();
        struct order_list ol = { 0 };
        struct action_list a = { 0 };
        struct state *s = state_new();

        /* its order now belongs to brazil: same mail state, new key, no acceptance */
        legacy_customer(s, "ORD-4444-4444-4444");
        add_acct_order(&ol, "ORD-4444-4444-4444", "brazil", PID_X);
        run1(&p, &ol, s, T0 + HOUR, &a);
        assert_int_equal(count(&a, ACTION_NOTIFY, -1), 0);
        assert_int_equal(s->n_customers, 1);
        struct tracked_customer *c = state_find_customer(s, "brazil/" TEN);
        assert_non_null(c);
        assert_string_equal(c->account, "brazil");
        assert_int_equal(c->notified_at, T0);
        assert_int_equal(c->accepted_at, 0);   /* that was the other account's answer */
        assert_string_equal(find(&a, ACTION_CHECK, -1)->account, "brazil");
        run1(&p, &ol, s, T0 + HOUR + 10, &a);
        assert_int_equal(count(&a, ACTION_NOTIFY, -1), 0);
        state_free(s);

        /* its order is the default account's: nothing changes but the account */
        s = state_new();
        legacy_customer(s, "ORD-4444-4444-4444");
        order_list_clear(&ol);
        add_acct_order(&ol, "ORD-4444-4444-4444", NULL, NULL);
        run1(&p, &ol, s, T0 + HOUR, &a);
        assert_int_equal(count(&a, ACTION_NOTIFY, -1), 0);
        c = state_find_customer(s, TEN);
        assert_non_null(c);
        assert_string_equal(c->account, ACCOUNT_DEFAULT);
        assert_int_equal(c->accepted_at, T0 + MIN);
        state_free(s);

        /* Process decided on the old account's answer (outcome unknown): not
         * sent again before brazil says the customer accepted */
        s = state_new();
        c = legacy_customer(s, "ORD-4444-4444-4444");
        c->orders[0].status = TRACK_PROCESS_SENT;
        c->orders[0].process_sent_at = T0 + MIN;
        order_list_clear(&ol);
        add_acct_order(&ol, "ORD-4444-4444-4444", "brazil", PID_X);
        run1(&p, &ol, s, T0 + HOUR, &a);
        run2_empty(&p, &ol, s, T0 + HOUR, &a);
        assert_int_equal(count(&a, ACTION_PROCESS, -1), 0);
        run2_as(&p, &ol, s, "brazil/" TEN, "brazil", TEN, T0 + HOUR + 1, &a);
        assert_true(has_process(&a, "ORD-4444-4444-4444"));
        state_free(s);

        /* no account lists its partnerId: kept, ops told, never processed */
        s = state_new();
        legacy_customer(s, "ORD-4444-4444-4444");
        order_list_clear(&ol);
        add_acct_order(&ol, "ORD-4444-4444-4444", ACCOUNT_NONE, PID_X);
        p.have_ops = true;
        run1(&p, &ol, s, T0 + HOUR, &a);
        assert_int_equal(count(&a, ACTION_NOTIFY, MAIL_KIND_NEW_REQUEST), 0);
        assert_int_equal(count(&a, ACTION_NOTIFY, MAIL_KIND_PARTNER_UNLISTED), 1);
        assert_int_equal(count(&a, ACTION_CHECK, -1), 0);
        run2_as(&p, &ol, s, ACCOUNT_NONE "/" TEN, ACCOUNT_NONE, TEN, T0 + HOUR, &a);
        assert_int_equal(count(&a, ACTION_PROCESS, -1), 0);

        action_list_clear(&a);
        order_list_clear(&ol);
        state_free(s);
}

/* The configuration moves a partnerId to another account: the order moves
 * with the customer's mail state, nobody is asked twice. */
static void test_account_move_keeps_mails(void **unused) {
        struct eng_params p = params();
        struct order_list ol = { 0 };
        struct action_list a = { 0 };
        struct state *s = state_new();

        add_acct_order(&ol, "ORD-5555-5555-5555", NULL, NULL);
        add_acct_order(&ol, "ORD-6666-6666-6666", NULL, NULL);
        run1(&p, &ol, s, T0, &a);
        assert_int_equal(count(&a, ACTION_NOTIFY, MAIL_KIND_NEW_REQUEST), 1);
        ol.items[1].account = strdup("brazil");
        run1(&p, &ol, s, T0 + HOUR, &a);
        assert_int_equal(count(&a, ACTION_NOTIFY, -1), 0);
        struct tracked_customer *c = state_find_customer(s, "brazil/" TEN);
        assert_non_null(c);
        assert_int_equal(c->notified_at, T0);
        assert_non_null(customer_find_order(c, "ORD-6666-6666-6666"));
        assert_non_null(state_find_customer(s, TEN));
        /* a Process decided on the default account's answer waits for brazil's */
        run2_as(&p, &ol, s, TEN, NULL, TEN, T0 + HOUR + 1, &a);
        assert_true(has_process(&a, "ORD-5555-5555-5555"));
        ol.items[0].account = strdup("brazil");
        run1(&p, &ol, s, T0 + HOUR + 2, &a);
        run2_empty(&p, &ol, s, T0 + HOUR + 3, &a);
        assert_int_equal(count(&a, ACTION_PROCESS, -1), 0);
        assert_int_equal(customer_find_order(state_find_customer(s, "brazil/" TEN), "ORD-5555-5555-5555")->status,
                         TRACK_BLOCKED);

        action_list_clear(&a);
        order_list_clear(&ol);
        state_free(s);
}

int main(void) {
        assert_int_equal(util_parse_time(T0_RAW, &T0), 0);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_new_blocked_then_quiet),
                cmocka_unit_test(test_check_backoff_and_check_all),
                cmocka_unit_test(test_reminders_final_warning_deadline),
                cmocka_unit_test(test_new_request_inside_warning_window),
                cmocka_unit_test(test_accepted_processes_blocked_never_draft),
                cmocka_unit_test(test_draft_then_querying),
                cmocka_unit_test(test_other_query),
                cmocka_unit_test(test_incomplete_order),
                cmocka_unit_test(test_episodes),
                cmocka_unit_test(test_process_outcomes),
                cmocka_unit_test(test_check_before_first_request),
                cmocka_unit_test(test_new_order_for_accepted_customer),
                cmocka_unit_test(test_domain_to_tenant_migration),
                cmocka_unit_test(test_rerun_is_deterministic),
                cmocka_unit_test(test_duplicates_and_bad_input),
                cmocka_unit_test(test_keys_platform_only_and_failed_mails),
                cmocka_unit_test(test_accounts_are_separate_customers),
                cmocka_unit_test(test_unlisted_partner_never_processed),
                cmocka_unit_test(test_legacy_state_adopted),
                cmocka_unit_test(test_account_move_keeps_mails),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
