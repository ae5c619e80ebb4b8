/* SPDX-License-Identifier: MIT */
/*
 * engine: every decision of partnerd as a pure function of its inputs.
 *
 * Vocabulary
 *   episode   One stay of an order in Querying, identified by the raw
 *             audit.querying.at string.  An order that leaves Querying is
 *             closed; coming back with another timestamp starts a new
 *             episode with fresh order-level flags.
 *   customer  Orders are grouped by order_customer_key(): the tenant id, or
 *             "domain:<domain>" until a tenant id is known.  Mails, checks,
 *             reminders and the deadline are per customer: one acceptance
 *             unblocks every order of that customer.
 *
 * Decisions worth writing down
 *   - Only TRACK_BLOCKED orders (Querying + acceptance URL) are ever
 *     processed.  Draft/Quoted orders showing the URL get one warning mail
 *     and are never processed, whatever Partner Center says.
 *   - Intent before act: every mail/process decision is recorded in the
 *     state before the action is returned, and the caller persists the
 *     state before performing the actions.  Each NOTIFY carries a stable
 *     dedup key, so a crash between "saved" and "sent" re-emits the same
 *     key and the outbox drops the duplicate.
 *   - Phases: phase 1 (facts == NULL) reconciles the poll and returns
 *     mails, checks and logs; phase 2 (facts != NULL, possibly empty when
 *     no check was due) records the facts and returns every PROCESS.
 *   - Re-sending PROCESS: an order in TRACK_PROCESS_SENT whose outcome was
 *     unknown (5xx, timeout, or a crash after the intent was saved) and
 *     which is, in a later poll, still Querying in the SAME episode (same
 *     querying_at_raw) did not leave Querying, so the earlier call did not
 *     take effect (a successful process moves the order to Processing at
 *     once, and a new query would carry a new timestamp).  Phase 2 then
 *     returns ACTION_PROCESS again.  This is safe only because the cycle
 *     always re-reads the order right before POSTing and posts only if it
 *     is still Querying in that episode; a second POST therefore cannot
 *     resume an order twice.  If the order left Querying meanwhile, phase 1
 *     closes it with its outcome instead.
 *   - ENG_PROCESS_REFUSED (a 4xx while the order is still Querying in
 *     the same episode) puts the order back to TRACK_BLOCKED marked
 *     "process-refused": one error, one ops notice, and no further Process
 *     in this episode until the order changes (a new template, a status
 *     change, a new episode).  process_sent_at is kept as history.
 *   - Checks: a customer is checked while it has TRACK_BLOCKED orders, even
 *     when an earlier check said accepted (new orders of an accepted
 *     customer); acceptance mails (request, reminders, final warning) go
 *     only while not accepted.
 *   - First check, then the first request: a customer episode's first
 *     request mail waits for its first check when that check is due in the
 *     same cycle (phase 1 holds it back, phase 2 sends it unless the check
 *     says accepted).  An admin who accepted already gets no request, only
 *     the confirmation that follows the Process.  A first check whose
 *     answer was lost (the cycle stopped between the phases) is asked
 *     again at once, and the request keeps waiting (first_check_lost).
 *   - A blocked order for a customer with no other open (blocked or
 *     process-sent) order starts a customer episode: reminders, warnings,
 *     check backoff and acceptance are reset.  The platform shows the URL
 *     only while the relationship is missing, so a new request mail is
 *     right even for a customer accepted long ago.  A blocked order that
 *     joins a customer with open orders joins the next reminder.
 *   - A request mail sent for the first time inside the warning window
 *     already states the deadline, so it counts as the final warning (no
 *     second mail minutes later).  Reminders stop after the final warning.
 *   - When the earliest blocked order leaves and the customer deadline
 *     moves later, the final warning / deadline log re-arm for the new
 *     deadline (warned_deadline records which deadline they were about).
 *   - Querying with an acceptance URL but without tenant or domain cannot
 *     be checked: it is treated as "querying for another reason" (ops).
 *   - Partner Center accounts: a customer is (account, tenant), the account
 *     being the one the cycle found for the order's link (order->account).
 *     Only checkable customers (a configured account) are checked, and only
 *     their facts and unknown outcomes lead to PROCESS; a fact found by
 *     tenant id only matches customers of the account that was asked.
 *     ACCOUNT_NONE customers are mailed like any other, never checked nor
 *     processed, and ops hears once per order.  Customers from a state
 *     written before accounts (account NULL) are adopted by their next
 *     order without a new mail; an order whose account changes moves with
 *     the mail state (customer_inherit_episode).
 *   - GDAP (issue 11 part 2): a Querying order whose only link is a GDAP
 *     invitation (order->gdap_id, set by the cycle) is a customer of its
 *     own, "gdap:<relationship id>" (model.h), of the default account.  Its
 *     mails are the gdap-* kinds (never the reseller wording), its CHECK is
 *     answered by Microsoft Graph (facts with gdap set), and only such facts
 *     apply to it: a reseller acceptance of the same tenant never reaches
 *     it, nor does a GDAP fact reach a reseller customer.  REL_ACCEPTED
 *     (status active) processes it like any accepted customer; REL_ENDED
 *     (expired, terminated, unknown status) and REL_NOT_FOUND (wrong id)
 *     tell ops once per episode (gdap-ended) and stop its mails and checks:
 *     it is never processed.
 */
#include "engine.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>


#define DEFAULT_CHECK_STEP INT64_C(60)

/* ---- context ----------------------------------------------------------- */

struct ctx {
        const struct eng_params *p;
        const struct order_list *orders;
        struct state *s;
        int64_t now;
        struct action_list *out;
        struct idx cust;   /* customer key -> a = customer index */
        struct idx ord;    /* order id -> a = customer index, b = order index */
        struct idx poll;   /* order id -> a = index in orders (first occurrence) */
        char **old_keys;   /* replaced customer keys, still referenced by cust */
        const struct tracked_customer *only;   /* eng_process_outcome: its customer (no index) */
        size_t n_old_keys;
};

static void ctx_done(struct ctx *x) {
        for (size_t i = 0; i < x->n_old_keys; i++)
                free(x->old_keys[i]);
        free(x->old_keys);
        idx_free(&x->cust);
        idx_free(&x->ord);
        idx_free(&x->poll);
}

static int ctx_index_state(struct ctx *x) {
        idx_free(&x->cust);
        idx_free(&x->ord);
        for (size_t ci = 0; ci < x->s->n_customers; ci++) {
                const struct tracked_customer *c = &x->s->customers[ci];
                if (idx_put(&x->cust, c->key, ci, 0) < 0)
                        return -ENOMEM;
                for (size_t oi = 0; oi < c->n_orders; oi++)
                        if (idx_put(&x->ord, c->orders[oi].id, ci, oi) < 0)
                                return -ENOMEM;
        }
        return 0;
}

static int ctx_index_poll(struct ctx *x) {
        for (size_t i = 0; x->orders && i < x->orders->n; i++) {
                const char *id = x->orders->items[i].id;
                if (id && !idx_get(&x->poll, id) && idx_put(&x->poll, id, i, 0) < 0)
                        return -ENOMEM;
        }
        return 0;
}

/* The index of customer key, verified (a re-keyed customer leaves a stale
 * entry under its old key). */
static const struct idx_ent *cust_find(const struct ctx *x, const char *key) {
        const struct idx_ent *e = idx_get(&x->cust, key);
        return e && strcmp(x->s->customers[e->a].key, key) == 0 ? e : NULL;
}

/* Gives customer ci a new key, keeping the index valid without a rebuild. */
static int customer_rekey(struct ctx *x, size_t ci, const char *key) {
        char *n = strdup(key);
        char **g = realloc(x->old_keys, (x->n_old_keys + 1) * sizeof(*g));
        if (!n || !g) {
                free(n);
                if (g)
                        x->old_keys = g;
                return -ENOMEM;
        }
        x->old_keys = g;
        g[x->n_old_keys++] = x->s->customers[ci].key;
        x->s->customers[ci].key = n;
        return idx_put(&x->cust, n, ci, 0);
}

static const struct order *poll_find(const struct ctx *x, const char *id) {
        const struct idx_ent *e = idx_get(&x->poll, id);
        return e ? &x->orders->items[e->a] : NULL;
}

static int64_t check_step(const struct eng_params *p, int count) {
        if (p->n_check_schedule == 0 || !p->check_schedule)
                return DEFAULT_CHECK_STEP;
        size_t i = count < 0 ? 0 : (size_t) count;
        if (i >= p->n_check_schedule)
                i = p->n_check_schedule - 1;
        return p->check_schedule[i] > 0 ? p->check_schedule[i] : DEFAULT_CHECK_STEP;
}

static bool streq0(const char *a, const char *b) {
        if (!a || !b)
                return a == b;
        return strcmp(a, b) == 0;
}

/* Replaces *dst by a copy of src (NULL src leaves *dst alone). */
static int set_str(char **dst, const char *src) {
        if (!src || streq0(*dst, src))
                return 0;
        char *n = strdup(src);
        if (!n)
                return -ENOMEM;
        free(*dst);
        *dst = n;
        return 0;
}

/* Like set_str, but a NULL src clears *dst. */
static int assign_str(char **dst, const char *src) {
        if (!src) {
                free(*dst);
                *dst = NULL;
                return 0;
        }
        return set_str(dst, src);
}

/* ---- actions ------------------------------------------------------------ */

/* The mail kind for a customer: GDAP blocks have their own wording. */
static enum mail_kind customer_mail_kind(const struct tracked_customer *c, enum mail_kind k) {
        if (!customer_key_is_gdap(c->key))
                return k;
        switch (k) {
        case MAIL_KIND_NEW_REQUEST:
                return MAIL_KIND_GDAP_REQUEST;
        case MAIL_KIND_REMINDER:
                return MAIL_KIND_GDAP_REMINDER;
        case MAIL_KIND_FINAL_WARNING:
                return MAIL_KIND_GDAP_FINAL_WARNING;
        case MAIL_KIND_CONFIRMATION:
                return MAIL_KIND_GDAP_CONFIRMATION;
        case MAIL_KIND_DRAFT_WARNING:
                return MAIL_KIND_GDAP_DRAFT_WARNING;
        default:
                return k;
        }
}

/* The account of the customer tracked under key (NULL if none). */
static const char *key_account(const struct ctx *x, const char *key) {
        const struct idx_ent *e = cust_find(x, key);
        if (e)
                return x->s->customers[e->a].account;
        if (x->cust.cap)
                return NULL;   /* indexed: it is not there */
        if (x->only && strcmp(x->only->key, key) == 0)
                return x->only->account;
        const struct tracked_customer *c = state_find_customer(x->s, key);
        return c ? c->account : NULL;
}

static struct action *add_action(struct ctx *x, enum action_type type, const char *customer_key) {
        struct action *a = action_list_add(x->out);
        if (!a)
                return NULL;
        *a = (struct action) { .type = type };
        const char *acct = customer_key ? key_account(x, customer_key) : NULL;
        if ((customer_key && !(a->customer_key = strdup(customer_key))) ||
            (acct && !(a->account = strdup(acct)))) {
                action_clear(a);
                x->out->n--;
                return NULL;
        }
        return a;
}

/* A customer that may be asked about its relationship: it has an account
 * (not ACCOUNT_NONE, not one tracked before accounts and not adopted). */
static bool customer_checkable(const struct tracked_customer *c) {
        return c->account && strcmp(c->account, ACCOUNT_NONE) != 0;
}

/* An event of the engine's own (ACTION_LOG): what happened to customer c
 * (and order_id), with its detail and flag (engine.h says which); the
 * cycle turns it into a journal line (lib/events.c). */
static int add_event(struct ctx *x, enum eng_event ev, const struct tracked_customer *c,
                     const char *order_id, const char *detail, bool flag) {
        struct action *a = add_action(x, ACTION_LOG, c->key);
        if (!a)
                return -ENOMEM;
        a->event = (int) ev;
        a->event_flag = flag;
        if (!(a->event_subject = strdup(c->name ? c->name : c->key)) ||
            (detail && !(a->event_detail = strdup(detail))) ||
            (order_id && !(a->order_id = strdup(order_id))))
                return -ENOMEM;   /* the action stays in the list and is freed with it */
        return 0;
}

static int action_add_order_id(struct action *a, const char *id) {
        char **n = realloc(a->order_ids, (a->n_order_ids + 1) * sizeof(*n));
        if (!n)
                return -ENOMEM;
        a->order_ids = n;
        if (!(n[a->n_order_ids] = strdup(id)))
                return -ENOMEM;
        a->n_order_ids++;
        return 0;
}

static struct action *add_notify(struct ctx *x, enum mail_kind kind, const char *customer_key,
                                 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static struct action *add_notify(struct ctx *x, enum mail_kind kind, const char *customer_key,
                                 const char *fmt, ...) {
        struct action *a = add_action(x, ACTION_NOTIFY, customer_key);
        if (!a)
                return NULL;
        a->mail_kind = kind;
        va_list ap;
        va_start(ap, fmt);
        int r = vasprintf(&a->dedup_key, fmt, ap);
        va_end(ap);
        if (r < 0) {
                a->dedup_key = NULL;
                return NULL;
        }
        /* Parts come from remote data (timestamps, ids): keep the key one
         * printable token of bounded size, deterministically. */
        for (char *c = a->dedup_key; *c; c++)
                if ((unsigned char) *c <= ' ' || (unsigned char) *c >= 0x7f)
                        *c = '_';
        if (strlen(a->dedup_key) > ENG_DEDUP_KEY_MAX)
                a->dedup_key[ENG_DEDUP_KEY_MAX] = '\0';
        return a;
}

/* A NOTIFY naming every order of c in status st; marks them notified. */
static int notify_customer(struct ctx *x, struct tracked_customer *c, enum mail_kind kind,
                           enum track_status st, const char *discriminator) {
        kind = customer_mail_kind(c, kind);
        struct action *a = add_notify(x, kind, c->key, "%s:%s:%s", mail_kind_to_string(kind),
                                      c->key, discriminator);
        if (!a)
                return -ENOMEM;
        a->prev_last_mail_at = c->last_mail_at;
        a->prev_warned_deadline = c->warned_deadline;
        a->prev_final_warning_sent = c->final_warning_sent;
        for (size_t i = 0; i < c->n_orders; i++) {
                if (c->orders[i].status != st)
                        continue;
                if (action_add_order_id(a, c->orders[i].id) < 0)
                        return -ENOMEM;
                c->orders[i].notified = true;
        }
        return 0;
}

static int add_process(struct ctx *x, const struct tracked_customer *c, struct tracked_order *t) {
        struct action *a = add_action(x, ACTION_PROCESS, c->key);
        if (!a)
                return -ENOMEM;
        if (!(a->order_id = strdup(t->id)) ||
            (c->tenant_id && !(a->tenant_id = strdup(c->tenant_id))))
                return -ENOMEM;
        t->status = TRACK_PROCESS_SENT;
        t->process_sent_at = x->now;
        t->process_attempts++;
        return 0;
}

/* ---- customers ---------------------------------------------------------- */

static void customer_reset_episode(struct tracked_customer *c, int64_t now) {
        c->first_seen = now;
        c->notified_at = 0;
        c->last_mail_at = 0;
        c->reminders = 0;
        c->final_warning_sent = false;
        c->deadline_passed_logged = false;
        c->warned_deadline = 0;
        c->next_check = 0;
        c->check_count = 0;
        c->accepted_at = 0;
        c->confirmation_sent = false;
        free(c->gdap_ended);
        c->gdap_ended = NULL;
}

static int64_t min_nz(int64_t a, int64_t b) {
        if (!a)
                return b;
        if (!b)
                return a;
        return a < b ? a : b;
}

static int64_t max64(int64_t a, int64_t b) {
        return a > b ? a : b;
}

/* Moves every order of customer `from` into `into` and drops `from`.
 * Indices change: the caller re-indexes. */
static int customer_merge(struct state *s, size_t from, size_t into) {
        struct tracked_customer *f = &s->customers[from], *t = &s->customers[into];
        while (f->n_orders > 0)
                if (!customer_take_order(t, f, 0))
                        return -ENOMEM;
        t->first_seen = min_nz(t->first_seen, f->first_seen);
        t->notified_at = min_nz(t->notified_at, f->notified_at);
        t->last_mail_at = max64(t->last_mail_at, f->last_mail_at);
        t->reminders = t->reminders > f->reminders ? t->reminders : f->reminders;
        t->final_warning_sent = t->final_warning_sent || f->final_warning_sent;
        t->deadline_passed_logged = t->deadline_passed_logged || f->deadline_passed_logged;
        t->warned_deadline = max64(t->warned_deadline, f->warned_deadline);
        t->next_check = t->next_check < f->next_check ? t->next_check : f->next_check;
        t->check_count = t->check_count < f->check_count ? t->check_count : f->check_count;
        t->accepted_at = max64(t->accepted_at, f->accepted_at);
        t->confirmation_sent = t->confirmation_sent && f->confirmation_sent;
        if (set_str(&t->domain, t->domain ? NULL : f->domain) < 0 ||
            set_str(&t->name, t->name ? NULL : f->name) < 0 ||
            set_str(&t->relationship_url, t->relationship_url ? NULL : f->relationship_url) < 0)
                return -ENOMEM;
        state_remove_customer(s, from);
        return 0;
}

/* A customer tracked by domain whose orders now carry a tenant id moves to
 * the tenant key (merged into it when that customer exists already).
 * Keeps the state index valid. */
static int migrate_domain_customers(struct ctx *x) {
        for (size_t i = 0; x->orders && i < x->orders->n; i++) {
                const struct order *o = &x->orders->items[i];
                if (!o->tenant_id || !*o->tenant_id || !o->domain || !*o->domain)
                        continue;
                char *dkey = NULL, *tkey = NULL;
                struct order only_domain = { .domain = o->domain, .account = o->account };
                struct order only_tenant = { .tenant_id = o->tenant_id, .account = o->account };
                dkey = order_customer_key(&only_domain);
                tkey = order_customer_key(&only_tenant);
                if (!dkey || !tkey) {
                        free(dkey);
                        free(tkey);
                        return -ENOMEM;
                }
                int r = 0;
                const struct idx_ent *de = cust_find(x, dkey);
                if (de) {
                        size_t di = de->a;
                        const struct idx_ent *te = cust_find(x, tkey);
                        if (te) {
                                r = customer_merge(x->s, di, te->a);
                                if (r >= 0)
                                        r = ctx_index_state(x);   /* positions changed */
                        } else {
                                r = customer_rekey(x, di, tkey);
                                if (r >= 0)
                                        r = set_str(&x->s->customers[di].tenant_id, o->tenant_id);
                        }
                }
                free(dkey);
                free(tkey);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* The customer tracked under key, created (for account) when new: then
 * 1 is returned. */
static int get_customer(struct ctx *x, const char *key, const char *account, size_t *ret_ci) {
        const struct idx_ent *e = cust_find(x, key);
        if (e) {
                *ret_ci = e->a;
                return 0;
        }
        struct tracked_customer *c = state_add_customer(x->s, key);
        if (!c || !(c->account = strdup(account)))
                return -ENOMEM;
        c->first_seen = x->now;
        *ret_ci = x->s->n_customers - 1;
        int r = idx_put(&x->cust, c->key, *ret_ci, 0);
        return r < 0 ? r : 1;
}

static int classify(const struct order *o);

/* The tenant or domain part of a customer key (without "<account>/"). */
static const char *bare_key(const char *key) {
        const char *slash = strchr(key, '/');
        return slash ? slash + 1 : key;
}

/* An order moved to the customer of the same tenant under another account
 * (the configuration moved its partnerId, or the customer was tracked
 * before accounts existed): the new customer takes over where the mails
 * stood, so nobody is asked twice.  The acceptance does not carry over:
 * it was a relationship with the other account. */
/* An order whose Process intent was decided on another account's answer
 * waits for its new account's: back to blocked (its earlier call did not
 * take, or the poll would have closed it). */
static void order_new_account(struct tracked_order *t) {
        if (t->status == TRACK_PROCESS_SENT)
                t->status = TRACK_BLOCKED;
}

static void customer_inherit_episode(struct tracked_customer *to, const struct tracked_customer *from) {
        to->first_seen = from->first_seen;
        to->notified_at = from->notified_at;
        to->last_mail_at = from->last_mail_at;
        to->reminders = from->reminders;
        to->final_warning_sent = from->final_warning_sent;
        to->deadline_passed_logged = from->deadline_passed_logged;
        to->warned_deadline = from->warned_deadline;
}

/* Customers tracked before accounts existed (account NULL) take the
 * account of the first of their orders in this poll: the key stays when
 * that is the default account, else the customer moves to its new key
 * (merged into an existing one).  Acceptance is kept only for the default
 * account, the one partnerd asked before.  Orders naming other accounts
 * move on in reconcile_order() and keep the mail state. */
static int adopt_legacy_customers(struct ctx *x) {
        for (size_t ci = 0; ci < x->s->n_customers; ci++) {
                struct tracked_customer *c = &x->s->customers[ci];
                const struct order *o = NULL;
                for (size_t oi = 0; !o && c->account == NULL && oi < c->n_orders; oi++) {
                        o = poll_find(x, c->orders[oi].id);
                        if (o && (o->incomplete || classify(o) < 0))
                                o = NULL;
                }
                if (!o)
                        continue;
                char *key = order_customer_key(o);
                if (!key)
                        continue;   /* unknown:<order> customers keep their key */
                int r = 0;
                const char *acct = order_account(o);
                if (strcmp(acct, ACCOUNT_DEFAULT) != 0) {
                        c->accepted_at = 0;
                        c->next_check = 0;
                        c->confirmation_sent = false;
                        for (size_t oi = 0; oi < c->n_orders; oi++)
                                order_new_account(&c->orders[oi]);
                }
                if (!(c->account = strdup(acct)))
                        r = -ENOMEM;
                else if (strcmp(key, c->key) != 0) {
                        const struct idx_ent *te = cust_find(x, key);
                        r = te ? customer_merge(x->s, ci, te->a) : customer_rekey(x, ci, key);
                        if (r >= 0 && te) {
                                r = ctx_index_state(x);   /* positions changed */
                                ci--;
                        }
                }
                free(key);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* What identifies the customer's episode in a dedup key, from platform
 * data only (never a local time: a lost state must make the same keys):
 * "<order id>@<episode start>" of its blocked order that entered Querying
 * first (ties: the smaller id), or of its confirmable orders when st is
 * TRACK_CLOSED (see maybe_confirm). */
static bool order_confirmable(const struct tracked_customer *c, const struct tracked_order *t);

static void episode_anchor(const struct tracked_customer *c, enum track_status st, char *buf, size_t n) {
        const struct tracked_order *best = NULL;
        for (size_t i = 0; i < c->n_orders; i++) {
                const struct tracked_order *t = &c->orders[i];
                if (st == TRACK_CLOSED ? !order_confirmable(c, t) : t->status != st)
                        continue;
                if (!best || t->querying_since < best->querying_since ||
                    (t->querying_since == best->querying_since && strcmp(t->id, best->id) < 0))
                        best = t;
        }
        snprintf(buf, n, "%s@%s", best ? best->id : "-",
                 best && best->querying_at_raw ? best->querying_at_raw : "-");
}

static bool order_confirmable(const struct tracked_customer *c, const struct tracked_order *t) {
        if (t->status != TRACK_CLOSED || !t->outcome || t->closed_at < c->accepted_at)
                return false;
        if (strcmp(t->outcome, "processed") == 0)
                return true;
        /* We asked to process it in this acceptance and it moved on. */
        if (t->process_sent_at && t->process_sent_at >= c->accepted_at) {
                const char *colon = strrchr(t->outcome, ':');
                return colon && (strcmp(colon + 1, "Processing") == 0 ||
                                 strcmp(colon + 1, "Completed") == 0);
        }
        return false;
}

/* One CONFIRMATION per acceptance, once no process outcome is pending. */
static int maybe_confirm(struct ctx *x, struct tracked_customer *c) {
        if (!c->accepted_at || c->confirmation_sent)
                return 0;
        size_t n = 0;
        for (size_t i = 0; i < c->n_orders; i++) {
                if (c->orders[i].status == TRACK_PROCESS_SENT)
                        return 0;
                if (order_confirmable(c, &c->orders[i]))
                        n++;
        }
        if (n == 0)
                return 0;
        char anchor[200];
        episode_anchor(c, TRACK_CLOSED, anchor, sizeof(anchor));
        enum mail_kind kind = customer_mail_kind(c, MAIL_KIND_CONFIRMATION);
        struct action *a = add_notify(x, kind, c->key, "%s:%s:%s", mail_kind_to_string(kind), c->key, anchor);
        if (!a)
                return -ENOMEM;
        c->confirmation_sent = true;
        for (size_t i = 0; i < c->n_orders; i++)
                if (order_confirmable(c, &c->orders[i]) &&
                    action_add_order_id(a, c->orders[i].id) < 0)
                        return -ENOMEM;
        return 0;
}

/* ---- phase 1: orders ---------------------------------------------------- */

static int classify(const struct order *o) {
        switch (o->status) {
        case ORDER_STATUS_QUERYING:
                return o->relationship_url ? TRACK_BLOCKED : TRACK_OTHER_QUERY;
        case ORDER_STATUS_DRAFT:
        case ORDER_STATUS_QUOTED:
                return o->relationship_url ? TRACK_DRAFT : -1;
        default:
                return -1;
        }
}

/* A blocked order whose Process the Marketplace refused in this episode:
 * never processed again until the order changes (new episode, template or
 * status).  The mark lives in outcome, which a blocked order does not use
 * otherwise, so the state file keeps its format. */
#define REFUSED_OUTCOME "process-refused"

static bool process_refused(const struct tracked_order *t) {
        return t->status == TRACK_BLOCKED && t->outcome && strcmp(t->outcome, REFUSED_OUTCOME) == 0;
}

static int close_order(struct ctx *x, const struct tracked_customer *c, struct tracked_order *t,
                       const char *outcome) {
        if (assign_str(&t->outcome, outcome) < 0)
                return -ENOMEM;
        t->status = TRACK_CLOSED;
        t->closed_at = x->now;
        return add_event(x, ENG_EV_ORDER_CLOSED, c, t->id, outcome, false);
}

static int start_blocked(struct ctx *x, struct tracked_customer *c, struct tracked_order *t) {
        size_t open = 0;
        for (size_t i = 0; i < c->n_orders; i++)
                if (&c->orders[i] != t && (c->orders[i].status == TRACK_BLOCKED ||
                                           c->orders[i].status == TRACK_PROCESS_SENT))
                        open++;
        if (open == 0)
                customer_reset_episode(c, x->now);
        else if (c->accepted_at)
                c->next_check = 0;   /* accepted already: confirm now, process this cycle */
        t->notified = false;
        return add_event(x, ENG_EV_ORDER_BLOCKED, c, t->id, NULL, customer_key_is_gdap(c->key));
}

static int start_other(struct ctx *x, struct tracked_customer *c, struct tracked_order *t) {
        t->notified = false;
        if (x->p->have_ops) {
                struct action *a = add_notify(x, MAIL_KIND_OPS_NOTICE, c->key, "%s:%s:%s",
                                              mail_kind_to_string(MAIL_KIND_OPS_NOTICE), t->id,
                                              t->querying_at_raw ? t->querying_at_raw : "-");
                if (!a || action_add_order_id(a, t->id) < 0)
                        return -ENOMEM;
                t->notified = true;
        }
        return add_event(x, ENG_EV_ORDER_OTHER_QUERY, c, t->id, NULL, x->p->have_ops);
}

static int start_draft(struct ctx *x, struct tracked_customer *c, struct tracked_order *t,
                       const struct order *o) {
        /* Discriminator: the querying timestamp if any, else the creation time. */
        char *disc = NULL;
        int r = o->querying_at_raw ? asprintf(&disc, "%s", o->querying_at_raw)
                                   : asprintf(&disc, "%" PRId64, o->created_at);
        if (r < 0)
                return -ENOMEM;
        enum mail_kind kind = customer_mail_kind(c, MAIL_KIND_DRAFT_WARNING);
        struct action *a = add_notify(x, kind, c->key, "%s:%s:%s", mail_kind_to_string(kind), t->id, disc);
        free(disc);
        if (!a)
                return -ENOMEM;
        if (action_add_order_id(a, t->id) < 0)
                return -ENOMEM;
        t->notified = true;
        return add_event(x, ENG_EV_DRAFT_WARNING, c, t->id, order_status_to_string(o->status), false);
}

static int update_customer_identity(struct tracked_customer *c, const struct order *o) {
        const char *name = o->company_name ? o->company_name
                         : o->client_name ? o->client_name : o->buyer_name;
        if (set_str(&c->tenant_id, o->tenant_id && *o->tenant_id ? o->tenant_id : NULL) < 0 ||
            set_str(&c->domain, o->domain && *o->domain ? o->domain : NULL) < 0 ||
            set_str(&c->name, name) < 0 || set_str(&c->relationship_url, o->relationship_url) < 0)
                return -ENOMEM;
        return 0;
}

/* Which customer an order belongs to: its key, or "unknown:<id>" when the
 * order names none, in which case a blocked order becomes an ops matter
 * (nobody to check).  Returns the key (caller frees), NULL on -ENOMEM. */
static char *order_owner(const struct order *o, int *cls) {
        char *key = order_customer_key(o);
        if (key)
                return key;
        if (asprintf(&key, "unknown:%s", o->id) < 0)
                return NULL;
        if (*cls == TRACK_BLOCKED)
                *cls = TRACK_OTHER_QUERY;   /* nobody to check: ops must look */
        return key;
}

/* The order now names another customer than the one tracking it (domain
 * edited, tenant learned, another partner account): move it there, keeping
 * the episode when only the account changed.  *e is re-read. */
static int move_to_customer(struct ctx *x, const struct order *o, const char *key,
                            const struct idx_ent **e) {
        size_t from = (*e)->a, oi = (*e)->b, ci;
        int r = get_customer(x, key, order_account(o), &ci);
        if (r >= 0 && strcmp(bare_key(key), bare_key(x->s->customers[from].key)) == 0) {
                order_new_account(&x->s->customers[from].orders[oi]);
                if (r == 1)
                        customer_inherit_episode(&x->s->customers[ci], &x->s->customers[from]);
        }
        if (r >= 0 && !customer_take_order(&x->s->customers[ci], &x->s->customers[from], oi))
                r = -ENOMEM;
        if (r >= 0 && x->s->customers[from].n_orders == 0)
                state_remove_customer(x->s, from);
        if (r >= 0)
                r = ctx_index_state(x);
        if (r < 0)
                return r;
        *e = idx_get(&x->ord, o->id);
        return 0;
}

/* Is this poll's order in the tracked order's episode (same querying
 * timestamp, and still a draft or still not one)?  If not, the old episode
 * is closed and the tracked order starts afresh.  Returns 1 for a new
 * episode, 0 for the same one, or -ENOMEM. */
static int episode_of(struct ctx *x, struct tracked_customer *c, struct tracked_order *t,
                      const struct order *o, int cls, bool is_new) {
        bool was_draft = t->status == TRACK_DRAFT ||
                         (t->status == TRACK_CLOSED && t->outcome && strncmp(t->outcome, "left-draft:", 11) == 0);
        bool same_episode = !is_new && order_same_episode(t, o) &&
                            was_draft == (cls == TRACK_DRAFT);

        if (!is_new && !same_episode) {
                if (t->status != TRACK_CLOSED) {
                        int r = close_order(x, c, t, t->status == TRACK_DRAFT ? "left-draft:Querying"
                                                                              : "left-querying:requeried");
                        if (r < 0)
                                return r;
                }
                char *id = t->id;
                t->id = NULL;
                tracked_order_clear(t);
                t->id = id;
                is_new = true;
        }
        if (is_new) {
                t->first_seen = x->now;
                t->status = (enum track_status) cls;
        }
        return is_new;
}

/* A blocked order seen again in the same episode: a refused Process is
 * retried once the order changed; an order that lost its link goes to ops. */
static int still_blocked(struct ctx *x, struct tracked_customer *c, struct tracked_order *t, int cls,
                         bool template_changed) {
        int r = 0;
        if (process_refused(t) && template_changed) {
                /* The order changed since the refusal: Process may work now. */
                free(t->outcome);
                t->outcome = NULL;
                r = add_event(x, ENG_EV_REFUSAL_CLEARED, c, t->id, NULL, false);
                if (r >= 0 && c->accepted_at)
                        c->next_check = 0;
        }
        if (r >= 0 && cls == TRACK_OTHER_QUERY) {
                t->status = TRACK_OTHER_QUERY;
                r = start_other(x, c, t);
        }
        return r;
}

/* The same episode seen again: what its tracked status calls for now. */
static int same_episode(struct ctx *x, struct tracked_customer *c, struct tracked_order *t,
                        const struct order *o, int cls, bool template_changed) {
        switch (t->status) {
        case TRACK_CLOSED:
                /* Seen again in the same episode (a poll glitch, or a process
                 * that did not take): reopen. */
                free(t->outcome);
                t->outcome = NULL;
                t->closed_at = 0;
                t->status = (enum track_status) cls;
                /* Already named in a mail: the customer was asked, no new
                 * episode and no new mail. */
                if (cls == TRACK_BLOCKED && !t->notified)
                        return start_blocked(x, c, t);
                return 0;
        case TRACK_PROCESS_SENT:
                /* Still Querying in the same episode: the earlier call did not
                 * take effect; phase 2 asks again (see the top of this file). */
                return 0;
        case TRACK_BLOCKED:
                return still_blocked(x, c, t, cls, template_changed);
        case TRACK_OTHER_QUERY:
                if (cls == TRACK_BLOCKED) {
                        t->status = TRACK_BLOCKED;
                        return start_blocked(x, c, t);
                }
                if (!t->notified && x->p->have_ops)
                        return start_other(x, c, t);   /* its notice was never queued */
                return 0;
        case TRACK_DRAFT:
                if (!t->notified)
                        return start_draft(x, c, t, o);   /* its warning was never queued */
                return 0;
        default:
                return 0;
        }
}

/* The tracked order of o under customer ci (added when new). */
static struct tracked_order *track_order(struct ctx *x, size_t ci, const struct idx_ent *e,
                                         const struct order *o) {
        struct tracked_customer *c = &x->s->customers[ci];
        if (e)
                return &c->orders[e->b];
        struct tracked_order *t = customer_add_order(c, o->id);
        if (!t || idx_put(&x->ord, t->id, ci, c->n_orders - 1) < 0)
                return NULL;
        return t;
}

static int reconcile_order(struct ctx *x, const struct order *o) {
        int cls = classify(o), r;
        size_t ci;

        if (cls < 0)
                return 0;   /* not ours; the close pass looks at tracked ones */
        char *key = order_owner(o, &cls);
        if (!key)
                return -ENOMEM;

        const struct idx_ent *e = idx_get(&x->ord, o->id);
        if (e && strcmp(x->s->customers[e->a].key, key) != 0) {
                r = move_to_customer(x, o, key, &e);
                if (r < 0)
                        goto out;
        }
        r = get_customer(x, key, order_account(o), &ci);
        if (r < 0)
                goto out;
        struct tracked_customer *c = &x->s->customers[ci];
        r = update_customer_identity(c, o);
        if (r < 0)
                goto out;

        struct tracked_order *t = track_order(x, ci, e, o);
        if (!t) {
                r = -ENOMEM;
                goto out;
        }
        r = episode_of(x, c, t, o, cls, !e);
        if (r < 0)
                goto out;
        bool is_new = r == 1;
        bool template_changed = !is_new && !streq0(t->template_id, o->template_id);
        if (assign_str(&t->querying_at_raw, o->querying_at_raw) < 0 ||
            set_str(&t->template_id, o->template_id) < 0 ||
            set_str(&t->relationship_url, o->relationship_url) < 0) {
                r = -ENOMEM;
                goto out;
        }
        t->querying_since = o->querying_at ? o->querying_at
                          : t->querying_since ? t->querying_since : x->now;

        if (is_new)
                r = cls == TRACK_BLOCKED ? start_blocked(x, c, t)
                  : cls == TRACK_OTHER_QUERY ? start_other(x, c, t)
                  : start_draft(x, c, t, o);
        else
                r = same_episode(x, c, t, o, cls, template_changed);
out:
        free(key);
        return r;
}

static int close_missing(struct ctx *x) {
        for (size_t ci = 0; ci < x->s->n_customers; ci++) {
                struct tracked_customer *c = &x->s->customers[ci];
                for (size_t oi = 0; oi < c->n_orders; oi++) {
                        struct tracked_order *t = &c->orders[oi];
                        if (t->status == TRACK_CLOSED)
                                continue;
                        const struct order *o = poll_find(x, t->id);
                        char outcome[64];
                        if (!o)
                                snprintf(outcome, sizeof(outcome), "disappeared");
                        else if (t->status == TRACK_DRAFT) {
                                if (o->status == ORDER_STATUS_DRAFT || o->status == ORDER_STATUS_QUOTED)
                                        continue;
                                snprintf(outcome, sizeof(outcome), "left-draft:%s",
                                         order_status_to_string(o->status));
                        } else {
                                if (o->status == ORDER_STATUS_QUERYING)
                                        continue;
                                snprintf(outcome, sizeof(outcome), "left-querying:%s",
                                         order_status_to_string(o->status));
                        }
                        int r = close_order(x, c, t, outcome);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

/* The first request mail of a customer episode (counts as the final
 * warning when it already falls in the warning window). */
static int first_request(struct ctx *x, struct tracked_customer *c, int64_t deadline) {
        char disc[64];
        episode_anchor(c, TRACK_BLOCKED, disc, sizeof(disc));
        int r = notify_customer(x, c, MAIL_KIND_NEW_REQUEST, TRACK_BLOCKED, disc);
        c->notified_at = c->last_mail_at = x->now;
        if (x->now >= deadline - x->p->deadline_warning) {
                c->final_warning_sent = true;
                c->warned_deadline = deadline;
        }
        return r;
}

/* How many first checks may go unanswered before the first request stops
 * waiting for one. */
#define FIRST_CHECK_TRIES 3

/* A first check was emitted (its intent saved with the schedule advanced)
 * but its answer never reached phase 2: the cycle stopped in between (a
 * crash, a lost leadership, a failed save).  Every answer phase 2 records,
 * even "unknown", sets accepted_at or notified_at.  Such a customer is
 * checked again at once, and its first request keeps waiting for the
 * answer, up to FIRST_CHECK_TRIES checks. */
static bool first_check_lost(const struct eng_params *p, const struct tracked_customer *c) {
        return p->check_first && customer_checkable(c) && !c->notified_at && !c->accepted_at &&
               c->check_count > 0 && c->check_count < FIRST_CHECK_TRIES;
}

/* A customer never checked in this episode is checked before its first
 * request mail: one round trip, and an admin who accepted already is not
 * asked again (phase 2 mails the others). */
static bool request_waits_for_check(const struct eng_params *p, const struct tracked_customer *c,
                                    bool check_now) {
        return p->check_first && !c->notified_at && check_now &&
               (c->check_count == 0 || first_check_lost(p, c));
}

/* Blocked orders whose partnerId no account lists are never checked nor
 * processed; ops hears of each once per episode (and again if the link
 * names another partnerId). */
static int notify_unlisted(struct ctx *x, struct tracked_customer *c) {
        for (size_t i = 0; i < c->n_orders; i++) {
                struct tracked_order *t = &c->orders[i];
                const struct order *o = poll_find(x, t->id);
                const char *pid = o && o->partner_id ? o->partner_id : "none";
                if (t->status != TRACK_BLOCKED || !o || streq0(t->unlisted_partner, pid))
                        continue;
                if (x->p->have_ops) {
                        struct action *a = add_notify(x, MAIL_KIND_PARTNER_UNLISTED, c->key, "%s:%s:%s:%s",
                                                      mail_kind_to_string(MAIL_KIND_PARTNER_UNLISTED), t->id,
                                                      t->querying_at_raw ? t->querying_at_raw : "-", pid);
                        if (!a || action_add_order_id(a, t->id) < 0 || !(a->partner_id = strdup(pid)))
                                return -ENOMEM;
                }
                if (assign_str(&t->unlisted_partner, pid) < 0)
                        return -ENOMEM;
                int r = add_event(x, ENG_EV_PARTNER_UNLISTED, c, t->id, pid, x->p->have_ops);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int customer_pass(struct ctx *x, struct tracked_customer *c) {
        const struct eng_params *p = x->p;
        char disc[200], anchor[180];
        int r = maybe_confirm(x, c);
        if (r < 0)
                return r;
        int64_t deadline = tracked_customer_deadline(c, p->deadline);
        if (!deadline || c->gdap_ended)
                return 0;   /* no blocked order, or a GDAP relationship that will never come */
        /* a customer no account answers for is never checked: its request
         * does not wait for a check */
        bool check_now = customer_checkable(c) &&
                         (p->check_all || c->next_check <= x->now || first_check_lost(p, c));

        if (c->warned_deadline && deadline > c->warned_deadline) {
                c->final_warning_sent = false;
                c->deadline_passed_logged = false;
                c->warned_deadline = 0;
        }

        if (!c->accepted_at) {
                bool in_window = x->now >= deadline - p->deadline_warning;
                if (x->now >= deadline) {
                        if (!c->deadline_passed_logged) {
                                c->deadline_passed_logged = true;
                                c->warned_deadline = deadline;
                                r = add_event(x, ENG_EV_DEADLINE_PASSED, c, NULL, NULL, false);
                        }
                } else if (!c->notified_at) {
                        if (!request_waits_for_check(p, c, check_now))
                                r = first_request(x, c, deadline);
                } else if (in_window && !c->final_warning_sent) {
                        snprintf(disc, sizeof(disc), "%" PRId64, deadline);
                        r = notify_customer(x, c, MAIL_KIND_FINAL_WARNING, TRACK_BLOCKED, disc);
                        c->final_warning_sent = true;
                        c->warned_deadline = deadline;
                        c->last_mail_at = x->now;
                } else if (!c->final_warning_sent && c->reminders < p->max_reminders &&
                           x->now >= c->last_mail_at + p->reminder_interval) {
                        episode_anchor(c, TRACK_BLOCKED, anchor, sizeof(anchor));
                        snprintf(disc, sizeof(disc), "%s:%d", anchor, c->reminders + 1);
                        r = notify_customer(x, c, MAIL_KIND_REMINDER, TRACK_BLOCKED, disc);
                        c->reminders++;
                        c->last_mail_at = x->now;
                }
                if (r < 0)
                        return r;
        }

        if (c->account && strcmp(c->account, ACCOUNT_NONE) == 0 && (r = notify_unlisted(x, c)) < 0)
                return r;
        if (check_now) {
                struct action *a = add_action(x, ACTION_CHECK, c->key);
                if (!a || (c->tenant_id && !(a->tenant_id = strdup(c->tenant_id))) ||
                    (c->domain && !(a->domain = strdup(c->domain))))
                        return -ENOMEM;
                c->next_check = x->now + check_step(p, c->check_count);
                c->check_count++;
        }
        return 0;
}

static int phase1(struct ctx *x) {
        int r = ctx_index_state(x);
        if (r >= 0)
                r = adopt_legacy_customers(x);
        if (r >= 0)
                r = migrate_domain_customers(x);
        for (size_t i = 0; r >= 0 && x->orders && i < x->orders->n; i++) {
                const struct order *o = &x->orders->items[i];
                if (!o->id || poll_find(x, o->id) != o)
                        continue;   /* duplicate in the poll: first one wins */
                if (o->incomplete)
                        continue;   /* unknown this cycle: still there, nothing decided */
                r = reconcile_order(x, o);
        }
        if (r >= 0)
                r = close_missing(x);
        for (size_t ci = 0; r >= 0 && ci < x->s->n_customers; ci++)
                r = customer_pass(x, &x->s->customers[ci]);
        return r;
}

/* ---- phase 2: relationship facts ----------------------------------------- */

/* The customer a fact is about: by key, else (a domain customer whose
 * tenant id the check learned) by tenant id among the customers of the
 * account that was asked, never another account's. */
static struct tracked_customer *fact_customer(struct ctx *x, const struct rel_fact *f) {
        const struct idx_ent *e = cust_find(x, f->customer_key);
        struct tracked_customer *c = e ? &x->s->customers[e->a] : NULL;
        for (size_t i = 0; !c && f->tenant_id && !f->gdap && i < x->s->n_customers; i++)
                if (x->s->customers[i].tenant_id && !customer_key_is_gdap(x->s->customers[i].key) &&
                    strcasecmp(x->s->customers[i].tenant_id, f->tenant_id) == 0 &&
                    streq0(x->s->customers[i].account, f->account ? f->account : ACCOUNT_DEFAULT))
                        c = &x->s->customers[i];
        /* a Graph answer is about a GDAP relationship, a Partner Center one
         * about the reseller relationship: never the other kind */
        if (c && f->gdap != customer_key_is_gdap(c->key))
                return NULL;
        return c && customer_checkable(c) ? c : NULL;
}

/* The request mail phase 1 held back for the customer's first check
 * (request_waits_for_check), now that the check did not say accepted. */
static int deferred_request(struct ctx *x, struct tracked_customer *c) {
        int64_t deadline = tracked_customer_deadline(c, x->p->deadline);
        if (c->notified_at || c->accepted_at || !deadline || x->now >= deadline)
                return 0;
        return first_request(x, c, deadline);
}

/* A GDAP relationship that will never become active (ended, unknown
 * status, no such id): never processed; ops hears once per episode. */
static int gdap_ended(struct ctx *x, struct tracked_customer *c, const struct rel_fact *f) {
        const char *what = f->state == REL_NOT_FOUND ? "not-found" : f->detail ? f->detail : "unknown";
        if (c->gdap_ended)
                return 0;
        if (set_str(&c->gdap_ended, what) < 0)
                return -ENOMEM;
        c->accepted_at = 0;
        if (x->p->have_ops) {
                char anchor[200];
                episode_anchor(c, TRACK_BLOCKED, anchor, sizeof(anchor));
                struct action *a = add_notify(x, MAIL_KIND_GDAP_ENDED, c->key, "%s:%s:%s:%s",
                                              mail_kind_to_string(MAIL_KIND_GDAP_ENDED), c->key, anchor, what);
                if (!a)
                        return -ENOMEM;
                for (size_t i = 0; i < c->n_orders; i++)
                        if (c->orders[i].status == TRACK_BLOCKED &&
                            action_add_order_id(a, c->orders[i].id) < 0)
                                return -ENOMEM;
        }
        if (f->state == REL_NOT_FOUND)
                return add_event(x, ENG_EV_GDAP_UNKNOWN, c, NULL, NULL, x->p->have_ops);
        return add_event(x, ENG_EV_GDAP_ENDED, c, NULL, what, x->p->have_ops);
}

/* Orders whose Process outcome stayed unknown (5xx, timeout, crash after
 * the intent was saved) and that are still Querying in the same episode:
 * the call did not take effect, ask again.  Orders sent at this very `now`
 * are the ones just decided, never twice. */
static int resend_unknown(struct ctx *x) {
        for (size_t ci = 0; ci < x->s->n_customers; ci++) {
                struct tracked_customer *c = &x->s->customers[ci];
                for (size_t oi = 0; oi < c->n_orders; oi++) {
                        struct tracked_order *t = &c->orders[oi];
                        const struct order *o = poll_find(x, t->id);
                        if (!customer_checkable(c) ||
                            t->status != TRACK_PROCESS_SENT || t->process_sent_at >= x->now || !o ||
                            o->status != ORDER_STATUS_QUERYING ||
                            !order_same_episode(t, o))
                                continue;
                        int r = add_process(x, c, t);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

static int phase2(struct ctx *x, const struct rel_fact_list *facts) {
        int r = ctx_index_state(x);
        if (r >= 0)
                r = resend_unknown(x);
        for (size_t fi = 0; r >= 0 && fi < facts->n; fi++) {
                const struct rel_fact *f = &facts->items[fi];
                struct tracked_customer *c = fact_customer(x, f);
                if (!c)
                        continue;
                switch (f->state) {
                case REL_ACCEPTED:
                        if (f->tenant_id && *f->tenant_id && !c->tenant_id &&
                            !(c->tenant_id = strdup(f->tenant_id)))
                                return -ENOMEM;
                        if (c->gdap_ended)
                                break;   /* ops was told it ended: a later answer changes nothing */
                        if (!c->accepted_at) {
                                c->accepted_at = x->now;
                                r = add_event(x, ENG_EV_ACCEPTED, c, NULL, NULL, f->gdap);
                        }
                        for (size_t oi = 0; r >= 0 && oi < c->n_orders; oi++) {
                                struct tracked_order *t = &c->orders[oi];
                                const struct order *o = poll_find(x, t->id);
                                if (t->status != TRACK_BLOCKED || process_refused(t) || !o ||
                                    o->status != ORDER_STATUS_QUERYING ||
                                    !order_same_episode(t, o))
                                        continue;
                                r = add_process(x, c, t);
                        }
                        break;
                case REL_ENDED:
                case REL_NOT_FOUND:
                        r = gdap_ended(x, c, f);
                        break;
                case REL_PENDING:
                        /* The schedule advanced when the check was emitted.  A
                         * customer believed accepted is not: mails resume. */
                        c->accepted_at = 0;
                        r = deferred_request(x, c);
                        break;
                case REL_UNKNOWN:
                default:
                        /* Retry soon.  The caller logs the failure: it has
                         * the reason (HTTP status, error body).  A request
                         * that waited for this check goes out anyway. */
                        c->next_check = x->now + check_step(x->p, 0);
                        r = deferred_request(x, c);
                        break;
                }
        }
        return r;
}

int eng_decide(const struct eng_params *p, const struct order_list *orders,
               const struct rel_fact_list *facts, struct state *state, int64_t now,
               struct action_list *ret_actions) {
        if (!p || !state || !ret_actions)
                return -EINVAL;
        struct ctx x = { .p = p, .orders = orders, .s = state, .now = now, .out = ret_actions };
        int r = ctx_index_poll(&x);
        if (r >= 0)
                r = facts ? phase2(&x, facts) : phase1(&x);
        ctx_done(&x);
        return r < 0 ? r : 0;
}

/* One ops notice per refused episode, the refusal as its reason. */
static int refused_notice(struct ctx *x, const struct tracked_customer *c, const struct tracked_order *t,
                          const char *detail) {
        if (!x->p->have_ops)
                return 0;
        struct action *a = add_notify(x, MAIL_KIND_OPS_NOTICE, c->key, "%s:%s:%s:%s",
                                      mail_kind_to_string(MAIL_KIND_OPS_NOTICE), t->id,
                                      t->querying_at_raw ? t->querying_at_raw : "-", REFUSED_OUTCOME);
        if (!a || action_add_order_id(a, t->id) < 0)
                return -ENOMEM;
        if (asprintf(&a->message, "Process refused by the Marketplace%s%s", detail ? ": " : "",
                     detail ? detail : "") < 0) {
                a->message = NULL;
                return -ENOMEM;
        }
        return 0;
}

int eng_process_outcome(const struct eng_params *p, struct state *state, const char *order_id,
                        enum eng_process_result res, enum order_status order_status,
                        const char *detail, int64_t now, struct action_list *ret_actions) {
        if (!p || !state || !order_id || !ret_actions)
                return -EINVAL;
        struct tracked_customer *c = NULL;
        struct tracked_order *t = state_find_order(state, order_id, &c);
        if (!t)
                return -ENOENT;
        if (t->status != TRACK_PROCESS_SENT)
                return 0;   /* stale: a later poll already settled this order */
        struct ctx x = { .p = p, .s = state, .now = now, .out = ret_actions, .only = c };
        char outcome[64];
        int r = 0;
        switch (res) {
        case ENG_PROCESS_DONE:
                if (assign_str(&t->outcome, "processed") < 0)
                        return -ENOMEM;
                t->status = TRACK_CLOSED;
                t->closed_at = now;
                /* The caller logs the HTTP result (it has the status code). */
                r = maybe_confirm(&x, c);
                break;
        case ENG_PROCESS_MOVED:
                snprintf(outcome, sizeof(outcome), "already-moved:%s", order_status_to_string(order_status));
                r = close_order(&x, c, t, outcome);
                if (r >= 0)
                        r = maybe_confirm(&x, c);
                break;
        case ENG_PROCESS_GONE:
                r = close_order(&x, c, t, "gone");
                break;
        case ENG_PROCESS_REFUSED:
                t->status = TRACK_BLOCKED;
                r = assign_str(&t->outcome, REFUSED_OUTCOME);
                if (r >= 0)
                        r = add_event(&x, ENG_EV_PROCESS_REFUSED, c, t->id, detail, false);
                if (r >= 0)
                        r = refused_notice(&x, c, t, detail);
                break;
        case ENG_PROCESS_UNKNOWN:
        default:
                /* Stays TRACK_PROCESS_SENT: phase 2 of a later cycle asks
                 * again if the order is still Querying in this episode.  The
                 * caller logs the failure (it has the error). */
                break;
        }
        return r < 0 ? r : 0;
}

int eng_notify_failed(struct state *state, const struct action *a) {
        if (!state || !a || a->type != ACTION_NOTIFY || !a->customer_key)
                return -EINVAL;
        struct tracked_customer *c = state_find_customer(state, a->customer_key);
        if (!c)
                return -ENOENT;
        bool orders_too = false;
        switch (a->mail_kind) {
        case MAIL_KIND_NEW_REQUEST:
        case MAIL_KIND_GDAP_REQUEST:
                c->notified_at = 0;
                c->last_mail_at = a->prev_last_mail_at;
                c->final_warning_sent = a->prev_final_warning_sent;
                c->warned_deadline = a->prev_warned_deadline;
                orders_too = true;
                break;
        case MAIL_KIND_REMINDER:
        case MAIL_KIND_GDAP_REMINDER:
                if (c->reminders > 0)
                        c->reminders--;
                c->last_mail_at = a->prev_last_mail_at;
                break;
        case MAIL_KIND_FINAL_WARNING:
        case MAIL_KIND_GDAP_FINAL_WARNING:
                c->final_warning_sent = a->prev_final_warning_sent;
                c->warned_deadline = a->prev_warned_deadline;
                c->last_mail_at = a->prev_last_mail_at;
                break;
        case MAIL_KIND_CONFIRMATION:
        case MAIL_KIND_GDAP_CONFIRMATION:
                c->confirmation_sent = false;
                break;
        case MAIL_KIND_GDAP_ENDED:
                /* gdap_ended() tells ops again after the next check */
                free(c->gdap_ended);
                c->gdap_ended = NULL;
                break;
        case MAIL_KIND_PARTNER_UNLISTED:
                /* notify_unlisted() tells ops again */
                for (size_t i = 0; i < a->n_order_ids; i++) {
                        struct tracked_order *t = customer_find_order(c, a->order_ids[i]);
                        if (t)
                                (void) assign_str(&t->unlisted_partner, NULL);
                }
                break;
        case MAIL_KIND_DRAFT_WARNING:
        case MAIL_KIND_GDAP_DRAFT_WARNING:
        case MAIL_KIND_OPS_NOTICE:
        default:
                orders_too = true;
                break;
        }
        for (size_t i = 0; orders_too && i < a->n_order_ids; i++) {
                struct tracked_order *t = customer_find_order(c, a->order_ids[i]);
                if (t)
                        t->notified = false;
        }
        return 0;
}
