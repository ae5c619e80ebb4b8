/* SPDX-License-Identifier: MIT */
#include "events.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

static const struct {
        enum log_event ev;
        int priority;
} table[_ENG_EV_MAX] = {
        [ENG_EV_ORDER_CLOSED] = { LOG_EV_ORDER_CLOSED, LOG_INFO },
        [ENG_EV_ORDER_BLOCKED] = { LOG_EV_ORDER_BLOCKED, LOG_NOTICE },
        [ENG_EV_REFUSAL_CLEARED] = { LOG_EV_ORDER_BLOCKED, LOG_NOTICE },
        [ENG_EV_ORDER_OTHER_QUERY] = { LOG_EV_ORDER_OTHER_QUERY, LOG_NOTICE },
        [ENG_EV_DRAFT_WARNING] = { LOG_EV_DRAFT_WARNING, LOG_NOTICE },
        [ENG_EV_PARTNER_UNLISTED] = { LOG_EV_PARTNER_UNLISTED, LOG_WARNING },
        [ENG_EV_DEADLINE_PASSED] = { LOG_EV_DEADLINE_PASSED, LOG_WARNING },
        [ENG_EV_GDAP_UNKNOWN] = { LOG_EV_GDAP_ENDED, LOG_WARNING },
        [ENG_EV_GDAP_ENDED] = { LOG_EV_GDAP_ENDED, LOG_WARNING },
        [ENG_EV_ACCEPTED] = { LOG_EV_RELATIONSHIP_ACCEPTED, LOG_NOTICE },
        [ENG_EV_PROCESS_REFUSED] = { LOG_EV_PROCESS_FAILED, LOG_ERR },
};

static bool known(const struct action *a) {
        return a->event >= 0 && a->event < _ENG_EV_MAX && table[a->event].priority;
}

enum log_event events_log_event(const struct action *a) {
        return known(a) ? table[a->event].ev : LOG_EV_NONE;
}

int events_priority(const struct action *a) {
        return known(a) ? table[a->event].priority : LOG_INFO;
}

char *events_message(const struct action *a) {
        const char *id = a->order_id ? a->order_id : "-";
        const char *who = a->event_subject ? a->event_subject : a->customer_key ? a->customer_key : "-";
        const char *d = a->event_detail;
        const char *ops = a->event_flag ? "; operations notified" : "";
        char *m = NULL;
        int r;

        switch ((enum eng_event) a->event) {
        case ENG_EV_ORDER_CLOSED:
                r = asprintf(&m, "Order %s closed: %s", id, d ? d : "-");
                break;
        case ENG_EV_ORDER_BLOCKED:
                r = asprintf(&m, "Order %s is Querying, waiting for %s to %s", id, who,
                             a->event_flag ? "grant delegated admin access (GDAP)"
                                           : "accept the reseller relationship");
                break;
        case ENG_EV_REFUSAL_CLEARED:
                r = asprintf(&m, "Order %s has a new template since its Process was refused; it will be "
                             "processed again once accepted", id);
                break;
        case ENG_EV_ORDER_OTHER_QUERY:
                r = asprintf(&m, "Order %s is Querying without a relationship request%s", id, ops);
                break;
        case ENG_EV_DRAFT_WARNING:
                r = asprintf(&m, "Order %s is %s and already shows the relationship request; warning sent",
                             id, d ? d : "-");
                break;
        case ENG_EV_PARTNER_UNLISTED:
                r = asprintf(&m, "Order %s names partnerId %s, which no [microsoft] account lists; it is "
                             "never checked nor processed%s", id, d ? d : "-", ops);
                break;
        case ENG_EV_DEADLINE_PASSED:
                r = asprintf(&m, "Deadline passed for %s: the relationship was not accepted in time", who);
                break;
        case ENG_EV_GDAP_UNKNOWN:
        case ENG_EV_GDAP_ENDED: {
                const char *key = a->customer_key ? a->customer_key : "";
                const char *rel = strncmp(key, CUSTOMER_KEY_GDAP, strlen(CUSTOMER_KEY_GDAP)) == 0
                                ? key + strlen(CUSTOMER_KEY_GDAP) : key;
                if (a->event == ENG_EV_GDAP_UNKNOWN)
                        r = asprintf(&m, "Microsoft Graph knows no GDAP relationship %s for %s (a wrong link?); "
                                     "its orders are never processed%s", rel, who, ops);
                else
                        r = asprintf(&m, "GDAP relationship %s for %s is %s; its orders are never processed%s",
                                     rel, who, d ? d : "unknown", ops);
                break;
        }
        case ENG_EV_ACCEPTED:
                r = asprintf(&m, "%s %s", who,
                             a->event_flag ? "granted delegated admin access (GDAP relationship active)"
                                           : "accepted the reseller relationship");
                break;
        case ENG_EV_PROCESS_REFUSED:
                r = asprintf(&m, "Process of order %s refused by the Marketplace%s%s; not retried until the "
                             "order changes", id, d ? ": " : "", d ? d : "");
                break;
        default:
                r = asprintf(&m, "(no message)");
                break;
        }
        return r < 0 ? NULL : m;
}

void events_log_action(const struct action *a) {
        char *m = events_message(a);
        log_event(events_priority(a), events_log_event(a),
                  LOG_FIELDS({ "ORDER_ID", a->order_id }, { "CUSTOMER_KEY", a->customer_key },
                             { "PARTNER_ACCOUNT", a->account }),
                  "%s", m ? m : "(no message)");
        free(m);
}
