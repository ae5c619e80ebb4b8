/* SPDX-License-Identifier: MIT */
/*
 * model: plain data shared by the clients, the engine, the store and the
 * cycle.  No I/O.  Every string is heap-owned by its struct (NULL = absent)
 * and released by the matching *_clear / *_free, which accept NULL.
 *
 * Times are seconds since the epoch (int64_t); 0 means "never / unknown".
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "counters.h"

/* ---- Marketplace orders (input) ------------------------------------- */

enum order_status {
        ORDER_STATUS_UNKNOWN = 0,
        ORDER_STATUS_NEW,
        ORDER_STATUS_DRAFT,
        ORDER_STATUS_QUOTED,
        ORDER_STATUS_PROCESSING,
        ORDER_STATUS_QUERYING,
        ORDER_STATUS_COMPLETED,
        ORDER_STATUS_FAILED,
        ORDER_STATUS_DELETED,
        _ORDER_STATUS_MAX,
};

/* Case-insensitive; unknown strings give ORDER_STATUS_UNKNOWN. */
enum order_status order_status_from_string(const char *s);
const char *order_status_to_string(enum order_status s);  /* "Querying" */

/* A Contact-type ordering parameter (issue 5: notify_order_contacts). */
struct order_contact {
        char *name;
        char *email;
};

struct order {
        char *id;                 /* ORD-XXXX-XXXX-XXXX (3 or 4 groups) */
        enum order_status status;
        char *type;               /* Purchase, Change, ... (informational) */
        char *product_id;         /* PRD-... */
        char *product_name;
        char *agreement_id;
        char *agreement_name;
        char *client_name;        /* client account name */
        char *buyer_id;           /* BUY-... */
        char *buyer_name;

        /* Customer identity, from parameters. */
        char *tenant_id;          /* fulfillment MicrosoftTenantId, NULL when empty */
        char *domain;             /* ordering ExistingDomainName, else PrimaryDomainName */
        char *company_name;       /* ordering CustomerCompanyName, else buyer/client name */

        /* What blocks it. */
        char *relationship_url;   /* extracted acceptance URL, NULL if none */
        char *error_message;      /* order error.message / parameter errors, joined */

        /* Which Partner Center account checks it (set by the cycle from the
         * link's partnerId and the configuration): partner_id is the link's
         * (lower-case, NULL when none), account the name of the account
         * that answers for it, ACCOUNT_NONE when no account does, NULL for
         * the default account. */
        char *partner_id;
        char *account;
        /* The relationship id of a GDAP-only link (set by the cycle from
         * url_link_gdap_id()), NULL otherwise: such an order waits for
         * that GDAP relationship, never for the reseller one. */
        char *gdap_id;

        char *querying_at_raw;    /* audit.querying.at as sent (episode identity) */
        int64_t querying_at;      /* parsed, 0 if absent */
        char *updated_at_raw;     /* audit.updated.at as sent: the episode start when
                                   * querying.at is missing (lib/cycle.c) */
        int64_t updated_at;       /* parsed, 0 if absent */
        int64_t created_at;
        char *template_id;        /* template.id, to notice template changes */

        struct order_contact *contacts;  /* Contact-type ordering parameters */
        size_t n_contacts;

        /* The poll could not tell what blocks it (its template could not be
         * read and the order shows no URL): the engine decides nothing new
         * about it this cycle, and a tracked one stays as it was. */
        bool incomplete;
};

void order_clear(struct order *o);
/* Deep copy; -ENOMEM on failure (dst then cleared). */
int order_copy(struct order *dst, const struct order *src);
/* The bytes it holds (struct, strings, contacts): what [marketplace]
 * max_orders_bytes counts. */
size_t order_size(const struct order *o);

/* A growable array of `type`: items[0..n), room for cap.  name_add()
 * appends a zeroed element and returns it (NULL without memory);
 * name_clear() clears every element and frees the array (accepts NULL).
 * lib/model.c defines both with MODEL_LIST_DEFINE. */
#define MODEL_LIST(name, type)                  \
        struct name {                           \
                type *items;                    \
                size_t n;                       \
                size_t cap;                     \
        };                                      \
        type *name##_add(struct name *l);       \
        void name##_clear(struct name *l)

MODEL_LIST(order_list, struct order);
const struct order *order_list_find(const struct order_list *l, const char *id);

/* Partner Center accounts.  Customers are tracked per (account, tenant):
 * a relationship accepted with one SoftwareOne partner account says
 * nothing about another.  ACCOUNT_DEFAULT is the [microsoft] account,
 * ACCOUNT_NONE stands for "no account lists the link's partnerId" (such
 * a customer is mailed but never checked, its orders never processed). */
#define ACCOUNT_DEFAULT "default"
#define ACCOUNT_NONE "-"

/* The key under which a customer is tracked: the tenant id when known,
 * else "domain:<lower-case domain>", prefixed "<account>/" unless the
 * order's account is the default one (so the keys, and the mail dedup
 * keys built on them, of customers tracked before accounts existed stay
 * what they were).  Returns NULL when the order names neither tenant nor
 * domain (malloc'd string otherwise). */
char *order_customer_key(const struct order *o);
/* GDAP blocks are customers of their own, keyed "gdap:<relationship id>"
 * (default account): a reseller relationship of the same tenant, tracked
 * under the tenant key, never touches them. */
#define CUSTOMER_KEY_GDAP "gdap:"
bool customer_key_is_gdap(const char *key);
/* The account name of a customer key's prefix rule: o->account, or
 * ACCOUNT_DEFAULT when NULL. */
const char *order_account(const struct order *o);

/* ---- Relationship facts (from Partner Center) ------------------------- */

enum rel_state {
        REL_UNKNOWN = 0,   /* the check failed (network, 5xx, token...) */
        REL_PENDING,       /* 404/403, or 200 without relationshipToPartner=reseller */
        REL_ACCEPTED,      /* reseller accepted / GDAP relationship active */
        REL_ENDED,         /* GDAP: expired, terminated, or a status we do not know */
        REL_NOT_FOUND,     /* GDAP: no relationship with that id (a wrong link) */
};

struct rel_fact {
        char *customer_key;       /* as order_customer_key() */
        char *account;            /* the account that was asked */
        enum rel_state state;
        char *tenant_id;          /* learned tenant id, when the check found one */
        int64_t checked_at;
        bool gdap;                /* a Microsoft Graph GDAP answer, not Partner Center's */
        char *detail;             /* GDAP: the relationship status as Graph sent it */
};

void rel_fact_clear(struct rel_fact *f);

MODEL_LIST(rel_fact_list, struct rel_fact);

/* ---- Stored state ----------------------------------------------------- */

enum track_status {
        TRACK_BLOCKED = 0,        /* Querying, waiting for the relationship */
        TRACK_PROCESS_SENT,       /* intent to Process recorded (outcome may be unknown) */
        TRACK_CLOSED,             /* left Querying, or processed; kept until pruned */
        TRACK_OTHER_QUERY,        /* Querying for another reason (no relationship URL) */
        TRACK_DRAFT,              /* Draft showing the URL: warned, never processed */
        _TRACK_MAX,
};

const char *track_status_to_string(enum track_status s);  /* "blocked", ... */
int track_status_from_string(const char *s);              /* -EINVAL if unknown */

struct tracked_order {
        char *id;
        enum track_status status;
        char *querying_at_raw;    /* episode identity */
        int64_t querying_since;   /* parsed audit.querying.at (deadline base) */
        int64_t first_seen;
        int64_t process_sent_at;  /* 0 = never */
        char *outcome;            /* closed: "processed", "already-moved:<Status>",
                                   * "left-querying:<Status>", "left-querying:requeried",
                                   * "left-draft:<Status>", "disappeared" */
        int64_t closed_at;
        char *template_id;
        char *relationship_url;
        bool notified;            /* this order was named in a mail already */
        int process_attempts;     /* PROCESS actions emitted in this episode */
        char *unlisted_partner;   /* the partnerId ops was told no account lists
                                   * ("none" for a link without one), this episode */
};

struct tracked_customer {
        char *key;                /* order_customer_key() */
        char *account;            /* Partner Center account (ACCOUNT_NONE: none
                                   * answers; NULL: tracked before accounts
                                   * existed, adopted by its next order) */
        char *tenant_id;
        char *domain;
        char *name;
        char *relationship_url;
        int64_t first_seen;
        int64_t notified_at;      /* first mail queued, 0 = not yet */
        int64_t last_mail_at;     /* last reminder / warning queued */
        int reminders;            /* reminders queued so far */
        bool final_warning_sent;
        bool deadline_passed_logged;
        int64_t warned_deadline;  /* the deadline the final warning / deadline log was about */
        bool confirmation_sent;   /* CONFIRMATION queued for this acceptance */
        int64_t next_check;       /* next Partner Center check (0 = due now) */
        int check_count;          /* checks made, drives the backoff schedule */
        int64_t accepted_at;      /* 0 = not (yet) accepted */
        char *gdap_ended;         /* GDAP customers: the final Graph status ops was told
                                   * ("expired", "not-found"...) this episode; no more
                                   * mails nor checks then */
        struct tracked_order *orders;
        size_t n_orders;
        size_t cap_orders;
};

#define STATE_VERSION 1

struct state {
        int version;
        struct tracked_customer *customers;
        size_t n_customers;
        size_t cap_customers;
        struct counters counters;   /* the partnerd_*_total metrics (lib/counters.h) */
};

void tracked_order_clear(struct tracked_order *o);
void tracked_customer_clear(struct tracked_customer *c);
void state_clear(struct state *s);
struct state *state_new(void);
void state_free(struct state *s);   /* accepts NULL */
int state_copy(struct state *dst, const struct state *src);

struct tracked_customer *state_find_customer(const struct state *s, const char *key);
struct tracked_customer *state_add_customer(struct state *s, const char *key);
struct tracked_order *customer_find_order(const struct tracked_customer *c, const char *id);
struct tracked_order *customer_add_order(struct tracked_customer *c, const char *id);
/* Finds an order in any customer; *ret_customer set when found. */
struct tracked_order *state_find_order(const struct state *s, const char *id,
                                       struct tracked_customer **ret_customer);
/* ---- one order's deadline and episode: the engine's rules, for the
 * engine, the cycle's rooms and status ---- */

/* The deadline of a tracked order: `deadline` seconds after its Querying
 * episode started (querying_since, else when partnerd first saw it); 0
 * when neither is known. */
int64_t tracked_order_deadline(const struct tracked_order *t, int64_t deadline);
/* The earliest deadline of the customer's blocked orders; 0 if none. */
int64_t tracked_customer_deadline(const struct tracked_customer *c, int64_t deadline);

/* The prefixes of an episode named by order_episode_start(). */
#define ORDER_EPISODE_UPDATED    "updated:"
#define ORDER_EPISODE_FIRST_SEEN "first-seen:"

enum order_episode_source {
        ORDER_EPISODE_AS_SENT,     /* not Querying, or audit.querying.at was sent */
        ORDER_EPISODE_KEPT,        /* the start named earlier for this episode */
        ORDER_EPISODE_FROM_UPDATED,    /* new: audit.updated.at */
        ORDER_EPISODE_FROM_FIRST_SEEN, /* new: now, partnerd first saw it */
};

/* The episode of a Querying order is its audit.querying.at.  Without one
 * (the platform does not always send it) the best start available stands
 * in: audit.updated.at, else `now`, marked as such ("updated:<time>",
 * "first-seen:<time>").  Once chosen it sticks while the order stays open
 * (t, its tracked record, may be NULL): an edit bumps updated.at, it does
 * not start a new episode, so the re-read before Process finds the same
 * episode.  Sets o->querying_at_raw and o->querying_at; returns where the
 * start came from (the caller logs a new one), or -ENOMEM. */
int order_episode_start(struct order *o, const struct tracked_order *t, int64_t now);
/* Whether the order, as listed or read, is in the episode t tracks. */
bool order_same_episode(const struct tracked_order *t, const struct order *o);

/* ---- the order index: one string (order id, customer key) -> one or
 * two positions, by hash (open addressing).  Keys are borrowed: an index
 * is valid while what it indexes does not change.  Used by the engine
 * (customers, tracked and listed orders) and the cycle's rooms. ---- */

struct idx_ent {
        const char *key;
        size_t a, b;
};

struct idx {
        struct idx_ent *e;
        size_t cap, n;
};

void idx_free(struct idx *x);
/* Adds key, or moves it to (a, b); a NULL key is not indexed.  -ENOMEM. */
int idx_put(struct idx *x, const char *key, size_t a, size_t b);
const struct idx_ent *idx_get(const struct idx *x, const char *key);
/* Indexes the tracked orders of s by id (a: customer, b: order), the first
 * of equal ids as state_find_order() finds it.  -ENOMEM leaves x empty. */
int state_index_orders(const struct state *s, struct idx *x);
/* The tracked order of id, through x = state_index_orders(s). */
struct tracked_order *state_index_find(const struct state *s, const struct idx *x, const char *id);

/* Removes (and clears) customer i / order i; later elements shift down. */
void state_remove_customer(struct state *s, size_t i);
void customer_remove_order(struct tracked_customer *c, size_t i);
/* Moves order i of src to the end of dst (no copy of the strings).
 * Returns the moved order in dst, NULL on OOM (src unchanged). */
struct tracked_order *customer_take_order(struct tracked_customer *dst,
                                          struct tracked_customer *src, size_t i);

/* ---- Actions (engine output) ---------------------------------------- */

enum mail_kind {
        MAIL_KIND_NEW_REQUEST = 0,   /* first acceptance request for a customer */
        MAIL_KIND_REMINDER,
        MAIL_KIND_FINAL_WARNING,     /* deadline within deadline_warning */
        MAIL_KIND_DRAFT_WARNING,     /* accept before the order is placed */
        MAIL_KIND_OPS_NOTICE,        /* Querying for another reason -> ops */
        MAIL_KIND_CONFIRMATION,      /* accepted and processed */
        MAIL_KIND_PARTNER_UNLISTED,  /* ops: the link's partnerId is in no account */
        MAIL_KIND_GDAP_REQUEST,      /* first request to grant delegated admin access (GDAP) */
        MAIL_KIND_GDAP_REMINDER,
        MAIL_KIND_GDAP_FINAL_WARNING,
        MAIL_KIND_GDAP_CONFIRMATION, /* GDAP relationship active, orders processed */
        MAIL_KIND_GDAP_ENDED,        /* ops: the GDAP relationship ended / is unknown */
        MAIL_KIND_GDAP_DRAFT_WARNING, /* grant GDAP before the order is placed */
        _MAIL_KIND_MAX,
};

const char *mail_kind_to_string(enum mail_kind k);   /* "new-request", ... */
/* Mails for the operations team (ops recipients), not for the customer. */
bool mail_kind_is_ops(enum mail_kind k);

enum action_type {
        ACTION_NOTIFY = 0,   /* queue one mail for a customer */
        ACTION_CHECK,        /* ask Partner Center about a customer */
        ACTION_PROCESS,      /* re-read the order, then POST process if still Querying */
        ACTION_LOG,          /* an event the shell should log (closed, deadline passed...) */
        _ACTION_MAX,
};

struct action {
        enum action_type type;
        enum mail_kind mail_kind;    /* ACTION_NOTIFY */
        char *customer_key;          /* NOTIFY, CHECK, PROCESS */
        char *account;               /* the customer's account (journal PARTNER_ACCOUNT=; CHECK: who asks) */
        char *tenant_id;             /* CHECK: by id when known */
        char *domain;                /* CHECK: domain filter fallback */
        char *order_id;              /* PROCESS, LOG */
        char **order_ids;            /* NOTIFY: every order the mail names */
        size_t n_order_ids;
        char *dedup_key;             /* NOTIFY: stable key, "new-request:<key>:<episode>" */
        char *partner_id;            /* NOTIFY partner-unlisted: the link's partnerId */
        /* NOTIFY for a customer: its mail record before this decision, which
         * eng_notify_failed() restores */
        int64_t prev_last_mail_at;
        int64_t prev_warned_deadline;
        bool prev_final_warning_sent;
        int event;                   /* ACTION_LOG: enum eng_event value (engine.h) */
        char *event_subject;         /* ACTION_LOG: the customer's name (or key) */
        char *event_detail;          /* ACTION_LOG: per event, see engine.h */
        bool event_flag;             /* ACTION_LOG: per event, see engine.h */
        char *message;               /* NOTIFY ops notice: the error the mail quotes */
};

void action_clear(struct action *a);

MODEL_LIST(action_list, struct action);
