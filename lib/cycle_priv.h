/* SPDX-License-Identifier: MIT */
/*
 * What the rooms of one poll cycle share: the cycle itself, one request in
 * flight (struct op) and the few helpers every room calls.  Private to
 * lib/cycle.c (the phase machine), lib/listing.c (the listed orders made
 * ready for the engine), lib/process.c (settle, re-read, Process),
 * lib/mailplan.c (mails from actions) and lib/checks.c (relationship
 * checks); not installed, not used anywhere else.
 */
#ifndef PARTNERD_CYCLE_PRIV_H
#define PARTNERD_CYCLE_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cycle.h"
#include "engine.h"
#include "mail.h"

enum phase {
        PH_LIST,
        PH_SETTLE,
        PH_TEMPLATES,
        PH_CONTACTS,
        PH_CHECKS,
        PH_INTENT,               /* the intent of the Process calls is being saved */
        PH_PROCESS,
        PH_FLUSH,
        PH_SAVE,                 /* the outcome is being saved */
        PH_DONE,
};

struct cycle {
        struct cycle_env env;
        cycle_done_fn cb;
        void *ud;
        enum phase phase;
        bool auth_logged;        /* the 535 line was written in this cycle */
        size_t pending;          /* requests in flight in this phase */
        size_t window;           /* at most this many in flight */
        bool advancing;          /* inside advance(): completions only count down */
        bool filling;            /* inside fill(): completions only count down */
        bool early_flush;        /* the flush started by plan() is running */
        struct idx tracked;      /* SETTLE..TEMPLATES: tracked orders by id */
        struct action_list todo; /* CHECK or PROCESS actions of the phase */
        char **settle;           /* SETTLE: ids of orders to read */
        size_t n_settle;
        size_t next;             /* next todo item (or order, for templates) to start */
        bool aborted;
        bool save_failed;
        bool saving;             /* an env.save runs (an op of the phase) */
        bool flush_after_save;   /* the early flush waits for the intent */
        struct action_list held; /* PH_INTENT: the Process actions, once saved */

        struct state *work;      /* env.state, or a private copy in dry-run */
        struct state *dry_copy;
        struct eng_params params;
        int64_t now;

        struct order_list orders;
        struct rel_fact_list facts;
        struct action_list planned;   /* phase 1 actions, waiting for the contacts */
        struct buyer {
                char *id;
                char *email;          /* NULL: none, or it could not be read */
        } *buyers;
        size_t n_buyers;
        bool token_error_logged;
        struct action_list unsynced;  /* mails queued since the last outbox sync */
        struct cycle_result res;
};

/* One in-flight request of the cycle. */
struct op {
        struct cycle *c;
        char *order_id;          /* template, process */
        char *customer_key;      /* check */
        char *account;           /* check, process: the customer's account */
        const char *graph_account;   /* GDAP check: the other account asked now (graph_retry) */
        size_t graph_next;           /* GDAP check: the next of env.accounts to ask */
        size_t index;            /* template: index into orders; contact: into buyers */
        bool reread_after_post;  /* process: second read after a 4xx */
        long post_status;
        char *post_error;
        const char *what;        /* save: "before Process"... */
};

/* ---- lib/cycle.c: the phase machine's helpers for the other rooms ---- */

/* A new request of the current phase (counted in flight); NULL without
 * memory. */
struct op *cycle_op_new(struct cycle *c);
/* Releases the op and moves the cycle on when it was the last of its
 * phase (the cycle may be gone when this returns). */
void cycle_op_done(struct op *o);
/* Records the first fatal error of the cycle as "what: detail". */
void cycle_set_error(struct cycle *c, int r, const char *what, const char *detail);
/* Performs the NOTIFY and LOG actions of a list; others are left alone. */
void cycle_perform_actions(struct cycle *c, const struct action_list *l);
/* False once this instance may not act any more: the cycle was aborted,
 * or env.may_act says no (cluster mode: deposed).  Asked right before a
 * side effect that has no gate of its own (the Process POST). */
bool cycle_may_act(struct cycle *c);

/* ---- lib/listing.c: the listed orders, made ready for the engine ---- */

/* Indexes the tracked orders by id (SETTLE..TEMPLATES); unindex before
 * the engine changes the state. */
void listing_index(struct cycle *c);
void listing_unindex(struct cycle *c);
/* Names the episode of a Querying order that carries no
 * audit.querying.at (logged once, when chosen); -ENOMEM. */
int listing_episode_start(struct cycle *c, struct order *o);
/* ... of every listed order. */
void listing_episode_starts(struct cycle *c);
/* Whether the order's link is known without its template (same order,
 * episode and template as tracked): then it takes the tracked link. */
bool listing_template_known(const struct cycle *c, struct order *o);
/* Fetches the template of listed order i and takes its link. */
void listing_start_template(struct cycle *c, size_t i);
/* Drops the links on hosts not allowed: such orders are never mailed. */
void listing_filter_urls(struct cycle *c);
/* Which account checks each order (o->account, o->partner_id, o->gdap_id). */
int listing_assign_accounts(struct cycle *c);

/* ---- lib/mailplan.c: one mail from one action ---- */

/* Renders the mail of a NOTIFY action and puts it in the outbox (prints
 * it in dry-run); a mail not queued is forgotten by the engine. */
void mailplan_queue(struct cycle *c, const struct action *a);
/* Makes the mails queued so far durable (one outbox sync). */
void mailplan_sync(struct cycle *c);
/* The buyers whose contacts the planned mails may name, once each. */
int mailplan_collect_buyers(struct cycle *c);
/* Reads the contact of buyer i (PH_CONTACTS). */
void mailplan_start_buyer(struct cycle *c, size_t i);
/* Logs every item of a flush; the SMTP 535 line once while *auth_logged. */
void mailplan_log_flush(const struct cfg *cfg, const struct mail_flush_stats *st, bool *auth_logged);

/* ---- lib/checks.c: relationship checks ---- */

/* Asks Partner Center (or Graph, for a GDAP customer) about the customer
 * of a CHECK action; the answer becomes a fact of the cycle. */
void checks_start(struct cycle *c, const struct action *a);

/* ---- lib/process.c: settle, re-read, Process ---- */

/* Reads the order again and POSTs Process if it is still Querying in the
 * episode decided on. */
void process_start(struct cycle *c, const struct action *a);
/* Reads an order whose Process outcome is unknown and that left the list. */
void process_start_settle(struct cycle *c, const char *id);

#endif
