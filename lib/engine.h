/* SPDX-License-Identifier: MIT */
/*
 * engine: every decision, as a pure function.  (orders, relationship facts,
 * stored state, now) -> (actions, new state).  No I/O, no clock, no log, no
 * globals: the cycle feeds it and performs what it returns.
 */
#pragma once

#include <stdint.h>

#include "model.h"

#define ENG_DEDUP_KEY_MAX 256

struct eng_params {
        int64_t reminder_interval;   /* seconds */
        int max_reminders;
        int64_t deadline;            /* after audit.querying.at, default 15d */
        int64_t deadline_warning;    /* default 3d */
        const int64_t *check_schedule;   /* seconds between checks; last repeats */
        size_t n_check_schedule;
        bool check_all;              /* --once: every pending customer is due */
        bool have_ops;               /* ops recipients configured */
        /* A customer episode's first request waits for its first check
         * when that check is due in the same cycle (the cycle sets it; off,
         * phase 1 mails at once, which the unit tests of the mail rules use). */
        bool check_first;
};

/*
 * What the engine reports in its ACTION_LOG actions: action.event is one
 * of these, action.event_subject the customer's name (or key), order_id the
 * order, event_detail and event_flag as noted.  The engine knows no log
 * wording: lib/events.c maps each to its journal event and line.
 */
enum eng_event {
        ENG_EV_ORDER_CLOSED,         /* detail: the outcome */
        ENG_EV_ORDER_BLOCKED,        /* flag: a GDAP block */
        ENG_EV_REFUSAL_CLEARED,      /* a refused order changed template: processed again once accepted */
        ENG_EV_ORDER_OTHER_QUERY,    /* flag: operations notified */
        ENG_EV_DRAFT_WARNING,        /* detail: the order's status */
        ENG_EV_PARTNER_UNLISTED,     /* detail: the partnerId; flag: operations notified */
        ENG_EV_DEADLINE_PASSED,
        ENG_EV_GDAP_UNKNOWN,         /* Graph knows no such GDAP relationship; flag: ops notified */
        ENG_EV_GDAP_ENDED,           /* detail: its state; flag: operations notified */
        ENG_EV_ACCEPTED,             /* flag: a GDAP relationship */
        ENG_EV_PROCESS_REFUSED,      /* detail: the Marketplace's reason, may be NULL */
        _ENG_EV_MAX,
};

/*
 * Phase 1 (facts == NULL): reconcile the orders seen in this poll with the
 * state (new episodes, closed orders), and return NOTIFY actions (new
 * request, reminder, final warning, draft warning, ops notice,
 * confirmation), CHECK actions for the customers that are due, and LOG
 * actions.  Never PROCESS.  The state records the intent (notified_at,
 * reminders...) so the caller must persist it before acting.
 *
 * Every NOTIFY carries dedup_key "<mail kind>:<customer key or order
 * id>:<discriminator>", identical when the same decision is re-made, even
 * from a lost or fresh state: it is built from platform data only (order
 * ids, episode starts, the deadline, the reminder number), never from a
 * local clock (printable ASCII, at most ENG_DEDUP_KEY_MAX bytes).
 *
 * Phase 2 (facts != NULL: the results of the checks, possibly none): record
 * them, return the NEW_REQUEST notify that phase 1 held back until the
 * customer's first check (when that check did not say accepted), and
 * PROCESS actions for every blocked order of an accepted
 * customer (marking them TRACK_PROCESS_SENT with process_sent_at = now),
 * PROCESS again for an order whose earlier Process outcome was unknown and
 * which is still Querying in the same episode (the caller re-reads the
 * order before POSTing; see engine.c), plus LOG actions.
 *
 * orders is the complete list of Querying and Draft orders of this poll:
 * a tracked order missing from it has left Querying.  An order marked
 * incomplete is present (never closed) but not classified this time.
 */
int eng_decide(const struct eng_params *p, const struct order_list *orders,
               const struct rel_fact_list *facts, struct state *state, int64_t now,
               struct action_list *ret_actions);

/* The outcome of a Process call (or of the re-read before it).
 * order_status: the order's status re-read or returned.  Updates the
 * tracked order and returns the CONFIRMATION notify once every order of the
 * acceptance is settled, plus LOG actions for the engine's own decisions
 * (MOVED: closed with outcome "already-moved:<Status>"; GONE: closed
 * "gone"; REFUSED: back to blocked, never processed again in this episode
 * until the order changes, with an ops notice whose message is detail).
 * DONE and UNKNOWN get no LOG: the caller logs the HTTP result, which only
 * it knows.  -ENOENT for an untracked order; an order no longer in
 * TRACK_PROCESS_SENT is left alone (returns 0, no action). */
enum eng_process_result {
        ENG_PROCESS_DONE = 0,        /* 200: Querying -> Processing */
        ENG_PROCESS_MOVED,           /* already left Querying (409 race, re-read): closed, a success */
        ENG_PROCESS_GONE,            /* 404: the order no longer exists */
        ENG_PROCESS_REFUSED,         /* 4xx and still Querying in this episode */
        ENG_PROCESS_UNKNOWN,         /* 5xx / timeout / reset: re-read next cycle */
};
int eng_process_outcome(const struct eng_params *p, struct state *state, const char *order_id,
                        enum eng_process_result res, enum order_status order_status,
                        const char *detail, int64_t now, struct action_list *ret_actions);

/* The mail of NOTIFY action a (returned by the calls above, applied to this
 * state) could not be queued: forgets its intent (notified_at, reminders,
 * the warning and confirmation flags, the orders' notified flags), so that
 * the next cycle decides the same mail again, with the same dedup key.
 * -ENOENT when its customer is no longer tracked. */
int eng_notify_failed(struct state *state, const struct action *a);
