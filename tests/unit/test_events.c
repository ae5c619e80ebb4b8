/* SPDX-License-Identifier: MIT */
/*
 * test_events: the journal form of every engine event (lib/events.c):
 * MESSAGE_ID event, priority and the exact wording the engine wrote before
 * it returned events instead of text (issue #13; operators grep for it).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "engine.h"
#include "events.h"

struct want {
        enum eng_event ev;
        const char *key, *order, *subject, *detail;
        bool flag;
        enum log_event log_ev;
        int priority;
        const char *message;
};

static const struct want wants[] = {
        { ENG_EV_ORDER_CLOSED, "domain:c.example", "ORD-1", "Contoso", "gone", false,
          LOG_EV_ORDER_CLOSED, LOG_INFO, "Order ORD-1 closed: gone" },
        { ENG_EV_ORDER_BLOCKED, "domain:c.example", "ORD-1", "Contoso", NULL, false,
          LOG_EV_ORDER_BLOCKED, LOG_NOTICE, "Order ORD-1 is Querying, waiting for Contoso to accept the reseller relationship" },
        { ENG_EV_ORDER_BLOCKED, "gdap:rel-1", "ORD-1", "Contoso", NULL, true,
          LOG_EV_ORDER_BLOCKED, LOG_NOTICE, "Order ORD-1 is Querying, waiting for Contoso to grant delegated admin access (GDAP)" },
        { ENG_EV_REFUSAL_CLEARED, "domain:c.example", "ORD-1", "Contoso", NULL, false,
          LOG_EV_ORDER_BLOCKED, LOG_NOTICE,
          "Order ORD-1 has a new template since its Process was refused; it will be processed again once accepted" },
        { ENG_EV_ORDER_OTHER_QUERY, "unknown:ORD-1", "ORD-1", "unknown:ORD-1", NULL, true,
          LOG_EV_ORDER_OTHER_QUERY, LOG_NOTICE, "Order ORD-1 is Querying without a relationship request; operations notified" },
        { ENG_EV_ORDER_OTHER_QUERY, "unknown:ORD-1", "ORD-1", "unknown:ORD-1", NULL, false,
          LOG_EV_ORDER_OTHER_QUERY, LOG_NOTICE, "Order ORD-1 is Querying without a relationship request" },
        { ENG_EV_DRAFT_WARNING, "domain:c.example", "ORD-1", "Contoso", "Draft", false,
          LOG_EV_DRAFT_WARNING, LOG_NOTICE, "Order ORD-1 is Draft and already shows the relationship request; warning sent" },
        { ENG_EV_PARTNER_UNLISTED, "domain:c.example", "ORD-1", "Contoso", "123", true,
          LOG_EV_PARTNER_UNLISTED, LOG_WARNING,
          "Order ORD-1 names partnerId 123, which no [microsoft] account lists; it is never checked nor processed; operations notified" },
        { ENG_EV_DEADLINE_PASSED, "domain:c.example", NULL, "Contoso", NULL, false,
          LOG_EV_DEADLINE_PASSED, LOG_WARNING, "Deadline passed for Contoso: the relationship was not accepted in time" },
        { ENG_EV_GDAP_UNKNOWN, "gdap:rel-1", NULL, "Contoso", NULL, true,
          LOG_EV_GDAP_ENDED, LOG_WARNING,
          "Microsoft Graph knows no GDAP relationship rel-1 for Contoso (a wrong link?); its orders are never processed; operations notified" },
        { ENG_EV_GDAP_ENDED, "gdap:rel-1", NULL, "Contoso", "terminated", false,
          LOG_EV_GDAP_ENDED, LOG_WARNING, "GDAP relationship rel-1 for Contoso is terminated; its orders are never processed" },
        { ENG_EV_ACCEPTED, "domain:c.example", NULL, "Contoso", NULL, false,
          LOG_EV_RELATIONSHIP_ACCEPTED, LOG_NOTICE, "Contoso accepted the reseller relationship" },
        { ENG_EV_ACCEPTED, "gdap:rel-1", NULL, "Contoso", NULL, true,
          LOG_EV_RELATIONSHIP_ACCEPTED, LOG_NOTICE, "Contoso granted delegated admin access (GDAP relationship active)" },
        { ENG_EV_PROCESS_REFUSED, "domain:c.example", "ORD-1", "Contoso", "HTTP 422", false,
          LOG_EV_PROCESS_FAILED, LOG_ERR,
          "Process of order ORD-1 refused by the Marketplace: HTTP 422; not retried until the order changes" },
        { ENG_EV_PROCESS_REFUSED, "domain:c.example", "ORD-1", "Contoso", NULL, false,
          LOG_EV_PROCESS_FAILED, LOG_ERR, "Process of order ORD-1 refused by the Marketplace; not retried until the order changes" },
};

static void test_every_event(void **state) {
        (void) state;
        bool seen[_ENG_EV_MAX] = { false };
        for (size_t i = 0; i < sizeof(wants) / sizeof(wants[0]); i++) {
                const struct want *w = &wants[i];
                struct action a = {
                        .type = ACTION_LOG, .event = (int) w->ev, .customer_key = (char *) w->key,
                        .order_id = (char *) w->order, .event_subject = (char *) w->subject,
                        .event_detail = (char *) w->detail, .event_flag = w->flag,
                };
                seen[w->ev] = true;
                assert_int_equal(events_log_event(&a), w->log_ev);
                assert_int_equal(events_priority(&a), w->priority);
                char *m = events_message(&a);
                assert_non_null(m);
                assert_string_equal(m, w->message);
                free(m);
        }
        for (int ev = 0; ev < _ENG_EV_MAX; ev++)
                assert_true(seen[ev]);   /* a new event gets its wording pinned here */
}

static void test_unknown_event(void **state) {
        (void) state;
        struct action a = { .type = ACTION_LOG, .event = _ENG_EV_MAX };
        assert_int_equal(events_log_event(&a), LOG_EV_NONE);
        assert_int_equal(events_priority(&a), LOG_INFO);
        char *m = events_message(&a);
        assert_string_equal(m, "(no message)");
        free(m);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_every_event),
                cmocka_unit_test(test_unknown_event),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
