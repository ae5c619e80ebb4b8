/* SPDX-License-Identifier: MIT */
/*
 * One poll cycle.  The phases run strictly one after another; inside a
 * phase every request runs in parallel on the shared curl multi handle:
 *
 *   LIST       list Querying and Draft orders (pages in parallel)
 *   SETTLE     read orders whose Process outcome is unknown and that left
 *              the list (parallel)
 *   TEMPLATES  fetch the templates of orders not seen before (parallel)
 *   PLAN       engine phase 1
 *   CONTACTS   buyers' contacts of the orders to mail (notify_order_contacts)
 *              -> queue mails (outbox) -> persist, start checks
 *   CHECKS     Partner Center checks (parallel)
 *   DECIDE     engine phase 2 with the facts -> persist intent
 *   PROCESS    re-read each order, POST process if still Querying (parallel)
 *   FLUSH      send the outbox
 *   SAVE       persist the outcome
 *
 * The mails queued by PLAN start going out at once, while CHECKS and
 * PROCESS run (the early flush, on the SMTP server's own slots); FLUSH
 * waits for it and then sends what came later (confirmations).
 *
 * A phase keeps at most CYCLE_WINDOW_PER_SLOT x max_parallel requests in
 * flight and starts the next as one completes: 10,000 templates neither
 * overflow the http queue (HTTP_MAX_REQUESTS) nor sit there as 10,000
 * curl handles.
 *
 * Every side effect is preceded by a durable record of the intent (the
 * state save before Process; the outbox file for a mail) and followed by a
 * save that records the outcome.  In --dry-run the engine works
 * on a copy of the state that is never saved, and nothing is sent.
 */
#include "cycle.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "log.h"
#include "store.h"
#include "url.h"
#include "util.h"

/* Requests in flight per phase, per parallel slot of lib/http: enough that
 * the per-host queue never runs dry between a completion and its refill. */
#define CYCLE_WINDOW_PER_SLOT 2

enum phase {
        PH_LIST,
        PH_SETTLE,
        PH_TEMPLATES,
        PH_CONTACTS,
        PH_CHECKS,
        PH_PROCESS,
        PH_FLUSH,
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
        struct tracked_ref *tracked;   /* TEMPLATES: tracked orders by id */
        size_t n_tracked;
        struct action_list todo; /* CHECK or PROCESS actions of the phase */
        char **settle;           /* SETTLE: ids of orders to read */
        size_t n_settle;
        size_t next;             /* next todo item (or order, for templates) to start */
        bool aborted;
        bool save_failed;

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

/* A tracked order by id, for lookups while the state does not change. */
struct tracked_ref {
        const char *id;
        const struct tracked_order *t;
        size_t seq;              /* scan order, for equal ids */
};

/* One in-flight request of the cycle. */
struct op {
        struct cycle *c;
        char *order_id;          /* template, process */
        char *customer_key;      /* check */
        char *account;           /* check, process: the customer's account */
        size_t index;            /* template: index into orders; contact: into buyers */
        bool reread_after_post;  /* process: second read after a 4xx */
        long post_status;
        char *post_error;
};

static void advance(struct cycle *c);
static void fill(struct cycle *c);
static void start_early_flush(struct cycle *c);
static void begin_phase(struct cycle *c, enum phase ph, struct action_list *todo);

static struct op *op_new(struct cycle *c) {
        struct op *o = calloc(1, sizeof(*o));
        if (o) {
                o->c = c;
                c->pending++;
        }
        return o;
}

/* Releases the op and moves the cycle on when it was the last of its phase. */
static void op_done(struct op *o) {
        struct cycle *c = o->c;
        free(o->order_id);
        free(o->customer_key);
        free(o->account);
        free(o->post_error);
        free(o);
        c->pending--;
        /* A request may complete synchronously (e.g. a flush with nothing
         * due): the fill() or advance() loop already running picks that up. */
        fill(c);
        if (c->pending == 0 && !c->filling && !c->advancing)
                advance(c);
}

/* Records the first fatal error of the cycle as "what: detail". */
static void set_error(struct cycle *c, int r, const char *what, const char *detail) {
        if (c->res.r < 0)
                return;
        c->res.r = r < 0 ? r : -EIO;
        if (asprintf(&c->res.error, "%s: %s", what, detail ? detail : "unknown error") < 0)
                c->res.error = NULL;
}

static void persist(struct cycle *c, const char *what) {
        if (c->env.dry_run)
                return;
        int r = store_save(c->env.cfg->daemon.state_dir, c->work);
        if (r < 0) {
                char buf[16];
                snprintf(buf, sizeof(buf), "%d", -r);
                log_event(LOG_ERR, LOG_EV_STATE_SAVE_FAILED,
                          LOG_FIELDS({ "STATE_DIR", c->env.cfg->daemon.state_dir }, { "ERRNO", buf }),
                          "Cannot save state in %s (%s): %s; will retry", c->env.cfg->daemon.state_dir,
                          what, strerror(-r));
                c->save_failed = true;
                set_error(c, r, "cannot save state", strerror(-r));
        }
}

static void log_action(const struct action *a) {
        log_event(a->log_priority ? a->log_priority : LOG_INFO, (enum log_event) a->log_event,
                  LOG_FIELDS({ "ORDER_ID", a->order_id }, { "CUSTOMER_KEY", a->customer_key },
                             { "PARTNER_ACCOUNT", a->account }),
                  "%s", a->message ? a->message : "(no message)");
}

/* ---- accounts ---- */

/* The client of a configured account; NULL for ACCOUNT_NONE or a name the
 * configuration no longer has. */
static struct pc_client *account_client(const struct cycle *c, const char *name) {
        if (!c->env.accounts)
                return !name || strcmp(name, ACCOUNT_DEFAULT) == 0 ? c->env.pc : NULL;
        for (size_t i = 0; name && i < c->env.n_accounts; i++)
                if (strcmp(c->env.accounts[i].name, name) == 0)
                        return c->env.accounts[i].pc;
        return NULL;
}

/* The Graph client of a configured account (GDAP relationships). */
static struct graph_client *account_graph(const struct cycle *c, const char *name) {
        if (!c->env.accounts)
                return !name || strcmp(name, ACCOUNT_DEFAULT) == 0 ? c->env.graph : NULL;
        for (size_t i = 0; name && i < c->env.n_accounts; i++)
                if (strcmp(c->env.accounts[i].name, name) == 0)
                        return c->env.accounts[i].graph;
        return NULL;
}

/* The section of an account, for messages: "microsoft" or "microsoft.NAME". */
static void account_section(const char *name, char *buf, size_t n) {
        if (!name || strcmp(name, ACCOUNT_DEFAULT) == 0)
                snprintf(buf, n, "microsoft");
        else
                snprintf(buf, n, "microsoft.%s", name);
}

/* Which account checks each order: the one whose partner_ids lists its
 * link's partnerId (lib/url.c reads it).  NULL stays for the default
 * account (its customer keys are what they were before accounts): so do
 * orders without a link (nothing to check) and GDAP links, which name no
 * partnerId: the [microsoft] account's Graph is asked about them (it knows
 * that partner tenant's GDAP relationships only; README "GDAP").  A GDAP
 * link gets its relationship id in gdap_id: the order is a GDAP block. */
static int assign_accounts(struct cycle *c) {
        for (size_t i = 0; i < c->orders.n; i++) {
                struct order *o = &c->orders.items[i];
                util_freep(&o->partner_id);
                util_freep(&o->account);
                util_freep(&o->gdap_id);
                if (!o->relationship_url)
                        continue;
                if (url_link_kind(o->relationship_url) == URL_LINK_GDAP) {
                        o->gdap_id = url_link_gdap_id(o->relationship_url);
                        if (!o->gdap_id && errno == ENOMEM)
                                return -ENOMEM;
                        continue;
                }
                o->partner_id = url_link_partner_id(o->relationship_url);
                if (!o->partner_id && errno == ENOMEM)
                        return -ENOMEM;
                const struct cfg_microsoft *a = cfg_account_for_partner(c->env.cfg, o->partner_id);
                const char *name = a ? a->name : ACCOUNT_NONE;
                if (strcmp(name, ACCOUNT_DEFAULT) != 0 && !(o->account = strdup(name)))
                        return -ENOMEM;
        }
        return 0;
}

/* ---- mail ---- */

static int64_t order_deadline(const struct cycle *c, const struct tracked_order *t) {
        return t && t->querying_since ? t->querying_since + c->env.cfg->mail.deadline : 0;
}

static const char *buyer_email(const struct cycle *c, const char *buyer_id) {
        for (size_t i = 0; buyer_id && i < c->n_buyers; i++)
                if (strcmp(c->buyers[i].id, buyer_id) == 0)
                        return c->buyers[i].email;
        return NULL;
}

/* Keeps what eng_notify_failed() needs of a mail just queued, until the
 * outbox is synced. */
static int remember_unsynced(struct cycle *c, const struct action *a) {
        struct action *u = action_list_add(&c->unsynced);
        if (!u)
                return -ENOMEM;
        *u = (struct action) {
                .type = a->type,
                .mail_kind = a->mail_kind,
                .prev_last_mail_at = a->prev_last_mail_at,
                .prev_warned_deadline = a->prev_warned_deadline,
                .prev_final_warning_sent = a->prev_final_warning_sent,
                .customer_key = strdup(a->customer_key),
                .order_ids = calloc(a->n_order_ids ? a->n_order_ids : 1, sizeof(char *)),
        };
        if (!u->customer_key || !u->order_ids)
                return -ENOMEM;
        for (; u->n_order_ids < a->n_order_ids; u->n_order_ids++)
                if (!(u->order_ids[u->n_order_ids] = strdup(a->order_ids[u->n_order_ids])))
                        return -ENOMEM;
        return 0;
}

/* Makes the mails queued so far durable.  When that fails their intents
 * are forgotten: the state never says a mail went out that may be lost
 * (the next cycle decides them again, under the same dedup keys). */
static void sync_queued(struct cycle *c) {
        if (c->env.dry_run || !c->env.outbox || c->unsynced.n == 0)
                return;
        int r = mail_outbox_sync(c->env.outbox);
        if (r < 0) {
                log_event(LOG_ERR, LOG_EV_MAIL_FAILED, NULL,
                          "Cannot sync the mail outbox: %s; %zu mail(s) not recorded as sent, decided again next cycle",
                          strerror(-r), c->unsynced.n);
                set_error(c, r, "cannot sync the mail outbox", strerror(-r));
                for (size_t i = 0; i < c->unsynced.n; i++)
                        (void) eng_notify_failed(c->work, &c->unsynced.items[i]);
        }
        action_list_clear(&c->unsynced);
}

static void queue_mail(struct cycle *c, const struct action *a) {
        const struct cfg *cfg = c->env.cfg;
        struct tracked_customer *cust = state_find_customer(c->work, a->customer_key);
        struct mail_order *mo = NULL;
        char **links = NULL, **extra = NULL, *err = NULL;
        size_t n_extra = 0;
        struct mail_message *msg = NULL;
        int64_t deadline = 0;
        bool queued = false;
        int r;

        if (!cust) {
                log_error("Internal error: mail for unknown customer %s skipped", a->customer_key);
                return;
        }
        mo = calloc(a->n_order_ids ? a->n_order_ids : 1, sizeof(*mo));
        links = calloc(a->n_order_ids ? a->n_order_ids : 1, sizeof(*links));
        if (!mo || !links)
                goto oom;
        for (size_t i = 0; i < a->n_order_ids; i++) {
                const struct tracked_order *t = customer_find_order(cust, a->order_ids[i]);
                const struct order *o = order_list_find(&c->orders, a->order_ids[i]);
                links[i] = mp_portal_link(cfg->marketplace.portal_url, a->order_ids[i]);
                mo[i] = (struct mail_order) {
                        .id = a->order_ids[i],
                        .product = o ? (o->product_name ? o->product_name : o->product_id) : NULL,
                        .portal_link = links[i],
                        .querying_since = t ? t->querying_since : 0,
                        .deadline = order_deadline(c, t),
                        /* a refused Process: the ops notice gives the refusal */
                        .error = a->message ? a->message : o ? o->error_message : NULL,
                };
                if (mo[i].deadline && (!deadline || mo[i].deadline < deadline))
                        deadline = mo[i].deadline;
                if (cfg->mail.notify_order_contacts && o) {
                        const char *buyer = buyer_email(c, o->buyer_id);
                        for (size_t k = 0; k <= o->n_contacts; k++) {
                                const char *e = k < o->n_contacts ? o->contacts[k].email : buyer;
                                if (!e)
                                        continue;
                                char **p = realloc(extra, (n_extra + 1) * sizeof(*extra));
                                if (!p)
                                        goto oom;
                                extra = p;
                                extra[n_extra++] = (char *) e;
                        }
                }
        }

        struct mail_context ctx = {
                .kind = a->mail_kind,
                .customer_name = cust->name,
                .domain = cust->domain,
                .tenant_id = cust->tenant_id,
                .url = cust->relationship_url,
                .partner_id = a->partner_id,
                .orders = mo,
                .n_orders = a->n_order_ids,
                .reminder_number = cust->reminders,
                .deadline = deadline,
                .now = c->now,
                .extra_rcpt = extra,
                .n_extra_rcpt = n_extra,
        };
        const char *first_order = a->n_order_ids ? a->order_ids[0] : NULL;
        r = mail_render(c->env.templates, &cfg->mail, &ctx, &msg, &err);
        if (r < 0) {
                log_event(LOG_ERR, LOG_EV_MAIL_FAILED,
                          LOG_FIELDS({ "ORDER_ID", first_order }, { "CUSTOMER_KEY", a->customer_key },
                                     { "PARTNER_ACCOUNT", cust->account },
                                     { "MAIL_KIND", mail_kind_to_string(a->mail_kind) }),
                          "Cannot compose %s mail for %s: %s", mail_kind_to_string(a->mail_kind),
                          cust->name ? cust->name : a->customer_key, err ? err : strerror(-r));
                goto out;
        }
        if (c->env.dry_run) {
                /* readable, not the quoted-printable wire form */
                printf("---- dry run: %s mail for %s, not sent ----\nFrom: %s\nTo:",
                       mail_kind_to_string(a->mail_kind), cust->name ? cust->name : a->customer_key,
                       cfg->mail.from);
                for (size_t i = 0; i < msg->n_rcpt; i++)
                        printf("%s %s", i ? "," : "", msg->rcpt[i]);
                printf("\nSubject: %s\n\n%s\n", msg->subject, msg->text ? msg->text : "");
                fflush(stdout);
                c->res.mails_queued++;
                queued = true;
                goto out;
        }
        r = mail_outbox_put(c->env.outbox, a->dedup_key, msg, c->now);
        if (r >= 0 && remember_unsynced(c, a) < 0)
                goto oom;
        queued = r >= 0;
        if (r < 0) {
                log_event(LOG_ERR, LOG_EV_MAIL_FAILED,
                          LOG_FIELDS({ "ORDER_ID", first_order }, { "CUSTOMER_KEY", a->customer_key },
                                     { "PARTNER_ACCOUNT", cust->account }),
                          "Cannot queue %s mail for %s: %s; it will be decided again next cycle",
                          mail_kind_to_string(a->mail_kind), a->customer_key, strerror(-r));
                set_error(c, r, "cannot queue mail", strerror(-r));
        } else if (r == 0) {
                c->res.mails_queued++;
                log_event(LOG_INFO, LOG_EV_MAIL_QUEUED,
                          LOG_FIELDS({ "ORDER_ID", first_order }, { "CUSTOMER_KEY", a->customer_key },
                                     { "CUSTOMER_DOMAIN", cust->domain }, { "CUSTOMER_TENANT", cust->tenant_id },
                                     { "PARTNER_ACCOUNT", cust->account },
                                     { "MAIL_KIND", mail_kind_to_string(a->mail_kind) },
                                     { "MESSAGE_ID_MAIL", msg->message_id }),
                          "Queued %s mail for %s (%zu order%s) to %zu recipient(s)",
                          mail_kind_to_string(a->mail_kind), cust->name ? cust->name : a->customer_key,
                          a->n_order_ids, a->n_order_ids == 1 ? "" : "s", msg->n_rcpt);
        } else
                log_debug("Mail %s already queued or sent, not queued again", a->dedup_key);
        goto out;
oom:
        log_error("Out of memory composing mail for %s", a->customer_key);
        set_error(c, -ENOMEM, "out of memory", NULL);
out:
        /* not queued: not recorded either, decided again next cycle */
        if (!queued)
                (void) eng_notify_failed(c->work, a);
        if (links)
                for (size_t i = 0; i < a->n_order_ids; i++)
                        free(links[i]);
        free(links);
        free(mo);
        free(extra);
        free(err);
        mail_message_free(msg);
}

/* Performs the NOTIFY and LOG actions of a list; others are left alone. */
static void perform_simple_actions(struct cycle *c, const struct action_list *l) {
        for (size_t i = 0; i < l->n; i++) {
                const struct action *a = &l->items[i];
                if (a->type == ACTION_LOG)
                        log_action(a);
                else if (a->type == ACTION_NOTIFY)
                        queue_mail(c, a);
        }
}


/* ---- checks ---- */

static void on_check(void *ud, int r, const struct pc_check_result *res) {
        struct op *o = ud;
        struct cycle *c = o->c;
        struct rel_fact *f = rel_fact_list_add(&c->facts);
        struct tracked_customer *cust = state_find_customer(c->work, o->customer_key);
        const char *name = cust && cust->name ? cust->name : o->customer_key;
        char st[16];

        snprintf(st, sizeof(st), "%ld", res ? res->status : 0L);
        if (f) {
                f->customer_key = strdup(o->customer_key);
                f->account = o->account ? strdup(o->account) : NULL;
                f->state = res ? res->state : REL_UNKNOWN;
                f->tenant_id = res && res->tenant_id ? strdup(res->tenant_id) : NULL;
                f->checked_at = c->now;
        }
        const struct log_field *fields =
                LOG_FIELDS({ "CUSTOMER_KEY", o->customer_key },
                           { "CUSTOMER_TENANT", res && res->tenant_id ? res->tenant_id : (cust ? cust->tenant_id : NULL) },
                           { "CUSTOMER_DOMAIN", cust ? cust->domain : NULL }, { "HTTP_STATUS", st },
                           { "PARTNER_ACCOUNT", o->account });
        char section[64];
        account_section(o->account, section, sizeof(section));
        if (!res || res->state == REL_UNKNOWN) {
                if (res && res->config_error) {
                        if (!c->token_error_logged)
                                log_event(LOG_ERR, LOG_EV_TOKEN_FAILED, fields,
                                          "Partner Center sign-in failed, check [%s] tenant, client_id and the client secret: %s",
                                          section, res->error ? res->error : "unknown error");
                        c->token_error_logged = true;
                        set_error(c, -EACCES, "Partner Center sign-in failed", res->error);
                } else {
                        const char *why = res && res->error ? res->error : strerror(r < 0 ? -r : EIO);
                        log_event(LOG_WARNING, LOG_EV_CHECK_FAILED, fields,
                                  "Cannot check the relationship of %s: %s", name, why);
                        set_error(c, r < 0 ? r : -EIO, "relationship check failed", why);
                }
        } else if (res->state == REL_ACCEPTED)
                /* the engine logs the acceptance itself, once */
                log_debug("Partner Center reports %s as a reseller customer", name);
        else
                log_event(LOG_INFO, LOG_EV_RELATIONSHIP_PENDING, fields,
                          "Relationship with %s still pending (HTTP %ld)", name, res->status);
        op_done(o);
}

/* A GDAP relationship's state from Graph, as a fact (gdap set: it applies
 * to GDAP customers only). */
static void on_graph(void *ud, int r, const struct graph_result *res) {
        struct op *o = ud;
        struct cycle *c = o->c;
        struct rel_fact *f = rel_fact_list_add(&c->facts);
        struct tracked_customer *cust = state_find_customer(c->work, o->customer_key);
        const char *name = cust && cust->name ? cust->name : o->customer_key;
        char st[16];

        snprintf(st, sizeof(st), "%ld", res ? res->http_status : 0L);
        if (f) {
                *f = (struct rel_fact) { .gdap = true, .checked_at = c->now,
                                         .state = res ? res->state : REL_UNKNOWN };
                f->customer_key = strdup(o->customer_key);
                f->detail = res && res->status ? strdup(res->status) : NULL;
        }
        const struct log_field *fields =
                LOG_FIELDS({ "CUSTOMER_KEY", o->customer_key }, { "HTTP_STATUS", st },
                           { "CUSTOMER_TENANT", res && res->tenant_id ? res->tenant_id : NULL },
                           { "PARTNER_ACCOUNT", o->account });
        if (!res || res->state == REL_UNKNOWN) {
                const char *why = res && res->error ? res->error : strerror(r < 0 ? -r : EIO);
                if (res && res->config_error) {
                        if (!c->token_error_logged)
                                log_event(LOG_ERR, LOG_EV_TOKEN_FAILED, fields,
                                          "Microsoft Graph sign-in failed, check [microsoft] tenant, client_id, "
                                          "the client secret and the app's DelegatedAdminRelationship.Read.All "
                                          "permission: %s", why);
                        c->token_error_logged = true;
                        set_error(c, -EACCES, "Microsoft Graph sign-in failed", why);
                } else {
                        log_event(LOG_WARNING, LOG_EV_CHECK_FAILED, fields,
                                  "Cannot read the GDAP relationship of %s: %s", name, why);
                        set_error(c, r < 0 ? r : -EIO, "GDAP relationship check failed", why);
                }
        } else if (res->state == REL_PENDING)
                log_event(LOG_INFO, LOG_EV_RELATIONSHIP_PENDING, fields,
                          "GDAP relationship of %s still pending (status %s)", name,
                          res->status ? res->status : "?");
        else
                /* the engine logs acceptance and the end itself, once */
                log_debug("Microsoft Graph reports the GDAP relationship of %s as %s", name,
                          res->status ? res->status : res->state == REL_NOT_FOUND ? "not found" : "?");
        op_done(o);
}

/* The relationship id of a GDAP customer, from its link (lib/url.c). */
static char *customer_gdap_id(const struct cycle *c, const char *key) {
        const struct tracked_customer *cust = state_find_customer(c->work, key);
        return cust && cust->relationship_url ? url_link_gdap_id(cust->relationship_url) : NULL;
}

static void start_graph_check(struct cycle *c, struct op *o, const struct action *a) {
        struct graph_client *g = account_graph(c, a->account);
        char *id = customer_gdap_id(c, a->customer_key);
        int r = !g ? -ENOENT : !id ? -EINVAL : graph_get_relationship(g, id, on_graph, o);
        free(id);
        if (r < 0) {
                struct graph_result res = {
                        .state = REL_UNKNOWN,
                        .error = !g ? "no Microsoft Graph client for the account"
                                : r == -EINVAL ? "no GDAP relationship id in the link" : strerror(-r),
                };
                on_graph(o, r, &res);
        }
}

static void start_check(struct cycle *c, const struct action *a) {
        struct op *o = op_new(c);
        if (!o || !(o->customer_key = strdup(a->customer_key)) ||
            (a->account && !(o->account = strdup(a->account)))) {
                set_error(c, -ENOMEM, "out of memory", NULL);
                if (o)
                        op_done(o);
                return;
        }
        c->res.checks++;
        if (customer_key_is_gdap(a->customer_key)) {
                start_graph_check(c, o, a);
                return;
        }
        struct pc_client *pc = account_client(c, a->account);
        int r = pc ? pc_check_customer(pc, a->tenant_id, a->domain, on_check, o) : -ENOENT;
        if (r < 0) {
                struct pc_check_result res = {
                        .state = REL_UNKNOWN,
                        .error = pc ? strerror(-r) : "no such Partner Center account in the configuration",
                };
                on_check(o, r, &res);
        }
}

/* ---- process ---- */

/* Journal fields of a Process outcome: PROCESS_OUTCOME is one of
 * done/moved/gone/refused/unknown (mp_outcome_to_string). */
#define PROCESS_FIELDS(o, st, outcome)                                                      \
        LOG_FIELDS({ "ORDER_ID", (o)->order_id }, { "HTTP_STATUS", (st) }, { "PROCESS_OUTCOME", (outcome) }, \
                   { "PARTNER_ACCOUNT", (o)->account })

static void process_outcome(struct cycle *c, const char *order_id, enum eng_process_result pr,
                            enum order_status st, const char *detail) {
        struct action_list out = { 0 };
        int r = eng_process_outcome(&c->params, c->work, order_id, pr, st, detail, c->now, &out);
        if (r < 0)
                log_error("Internal error recording the Process outcome of %s: %s", order_id, strerror(-r));
        if (pr == ENG_PROCESS_DONE)
                c->res.processed++;
        perform_simple_actions(c, &out);
        action_list_clear(&out);
}

static int episode_start(struct cycle *c, struct order *o);

/* The order left Querying, or its episode ended, before our call: someone
 * else moved it on.  A success, not an error. */
static void process_moved(struct cycle *c, struct op *o, const struct mp_order_result *res) {
        char st[16];
        snprintf(st, sizeof(st), "%ld", res->status);
        enum order_status now = res->order ? res->order->status : ORDER_STATUS_UNKNOWN;
        log_event(LOG_NOTICE, LOG_EV_ORDER_CLOSED, PROCESS_FIELDS(o, st, mp_outcome_to_string(MP_MOVED)),
                  "Order %s moved on before our Process (now %s): nothing to do", o->order_id,
                  now == ORDER_STATUS_QUERYING ? "in a new Querying episode" : order_status_to_string(now));
        process_outcome(c, o->order_id, ENG_PROCESS_MOVED, now, NULL);
}

static void process_gone(struct cycle *c, struct op *o, const struct mp_order_result *res) {
        char st[16];
        snprintf(st, sizeof(st), "%ld", res->status);
        log_event(LOG_NOTICE, LOG_EV_ORDER_CLOSED, PROCESS_FIELDS(o, st, mp_outcome_to_string(MP_GONE)),
                  "Order %s no longer exists (HTTP %ld): nothing to process", o->order_id, res->status);
        process_outcome(c, o->order_id, ENG_PROCESS_GONE, ORDER_STATUS_DELETED, "order no longer exists");
}

/* 5xx, timeout, reset...: the call may or may not have reached the
 * platform (or the re-read before it failed).  Never re-sent blindly: a
 * later cycle reads the order again (it is then either Processing, or
 * still Querying in this episode and asked again). */
static void process_unknown(struct cycle *c, struct op *o, const struct mp_order_result *res, bool reread) {
        char st[16];
        snprintf(st, sizeof(st), "%ld", res->status);
        const char *why = res->err ? res->err : strerror(res->r < 0 ? -res->r : EIO);
        const struct log_field *fields = PROCESS_FIELDS(o, st, mp_outcome_to_string(MP_UNKNOWN));
        if (reread)
                log_event(LOG_WARNING, LOG_EV_PROCESS_FAILED, fields,
                          "Cannot read order %s before Process: %s; will retry next cycle", o->order_id, why);
        else
                log_event(LOG_ERR, LOG_EV_PROCESS_FAILED, fields,
                          "Process of order %s failed: %s; the order will be read again next cycle",
                          o->order_id, why);
        set_error(c, res->r < 0 ? res->r : -EIO,
                  reread ? "cannot read an order before Process" : "Process failed", why);
        process_outcome(c, o->order_id, ENG_PROCESS_UNKNOWN, ORDER_STATUS_UNKNOWN, res->err);
}

static void on_reread(void *ud, const struct mp_order_result *res);

static void reread(struct op *o) {
        int r = mp_get_order(o->c->env.mp, o->order_id, on_reread, o);
        if (r < 0) {
                struct mp_order_result fail = { .outcome = MP_UNKNOWN, .r = r, .err = "cannot submit the request" };
                on_reread(o, &fail);
        }
}

static void on_post(void *ud, const struct mp_order_result *res) {
        struct op *o = ud;
        struct cycle *c = o->c;
        char st[16];
        snprintf(st, sizeof(st), "%ld", res->status);

        switch (res->outcome) {
        case MP_DONE:
                log_event(LOG_NOTICE, LOG_EV_ORDER_PROCESSED, PROCESS_FIELDS(o, st, mp_outcome_to_string(MP_DONE)),
                          "Order %s processed: %s", o->order_id, order_status_to_string(res->order->status));
                process_outcome(c, o->order_id, ENG_PROCESS_DONE, res->order->status, NULL);
                break;
        case MP_GONE:
                process_gone(c, o, res);
                break;
        case MP_MOVED:
                if (res->order) {
                        process_moved(c, o, res);
                        break;
                }
                /* read it to learn where it went */
                __attribute__((fallthrough));
        case MP_REFUSED:
                log_event(LOG_INFO, LOG_EV_NONE,
                          LOG_FIELDS({ "ORDER_ID", o->order_id }, { "HTTP_STATUS", st }, { "PARTNER_ACCOUNT", o->account }),
                          "Process of order %s answered HTTP %ld, reading the order again", o->order_id,
                          res->status);
                o->reread_after_post = true;
                o->post_status = res->status;
                o->post_error = res->err ? strdup(res->err) : NULL;
                reread(o);
                return;
        case MP_UNKNOWN:
        default:
                process_unknown(c, o, res, false);
                break;
        }
        op_done(o);
}

/* The re-read before Process (and after a refusal): only an order still
 * Querying in the episode we decided on is ever POSTed. */
static void on_reread(void *ud, const struct mp_order_result *res) {
        struct op *o = ud;
        struct cycle *c = o->c;
        struct tracked_order *t = state_find_order(c->work, o->order_id, NULL);

        if (res->outcome == MP_GONE) {
                process_gone(c, o, res);
                op_done(o);
                return;
        }
        if (res->outcome != MP_DONE) {
                process_unknown(c, o, res, true);
                op_done(o);
                return;
        }
        const struct order *order = res->order;
        /* the episode as the poll named it (see episode_start()) */
        struct order copy = { 0 };
        if (order->status == ORDER_STATUS_QUERYING && !order->querying_at_raw &&
            (order_copy(&copy, order) < 0 || episode_start(c, &copy) < 0))
                set_error(c, -ENOMEM, "out of memory", NULL);
        const char *episode = copy.querying_at_raw ? copy.querying_at_raw : order->querying_at_raw;
        bool same_episode = t && t->querying_at_raw && episode && strcmp(t->querying_at_raw, episode) == 0;
        order_clear(&copy);
        if (order->status != ORDER_STATUS_QUERYING || !same_episode) {
                struct mp_order_result moved = *res;
                moved.status = o->reread_after_post ? o->post_status : res->status;
                process_moved(c, o, &moved);
                op_done(o);
                return;
        }
        if (o->reread_after_post) {
                /* still Querying in this episode: the platform said no */
                set_error(c, -EIO, "Process refused", o->post_error);
                process_outcome(c, o->order_id, ENG_PROCESS_REFUSED, order->status, o->post_error);
                op_done(o);
                return;
        }
        if (c->env.dry_run) {
                log_event(LOG_NOTICE, LOG_EV_NONE,
                          LOG_FIELDS({ "ORDER_ID", o->order_id }, { "PARTNER_ACCOUNT", o->account }),
                          "Dry run: would call Process on order %s", o->order_id);
                op_done(o);
                return;
        }
        int r = mp_process_order(c->env.mp, o->order_id, on_post, o);
        if (r < 0) {
                struct mp_order_result fail = { .outcome = MP_UNKNOWN, .r = r, .err = "cannot submit the request" };
                process_unknown(c, o, &fail, false);
                op_done(o);
        }
}

static void start_process(struct cycle *c, const struct action *a) {
        if (!a->account || strcmp(a->account, ACCOUNT_NONE) == 0) {
                /* the engine never asks this: an order no account answers for is never processed */
                log_error("Internal error: Process of order %s without a Partner Center account refused",
                          a->order_id);
                return;
        }
        struct op *o = op_new(c);
        if (!o || !(o->order_id = strdup(a->order_id)) || !(o->account = strdup(a->account))) {
                set_error(c, -ENOMEM, "out of memory", NULL);
                if (o)
                        op_done(o);
                return;
        }
        /* Only ever POST after reading the order again: it must still
         * be Querying, in the same episode. */
        reread(o);
}

/* ---- list and templates ---- */

static void on_template(void *ud, int r, long status, const char *err, const char *text) {
        struct op *o = ud;
        struct cycle *c = o->c;
        struct order *ord = &c->orders.items[o->index];

        if (r < 0 || status != 200) {
                /* Without the template we cannot tell whether it is blocked on
                 * a relationship: what the order itself shows is enough when
                 * it carries the URL; otherwise decide nothing about it now
                 * (it must not pass for "Querying for another reason"). */
                log_event(LOG_WARNING, LOG_EV_POLL_FAILED, LOG_FIELDS({ "ORDER_ID", ord->id }),
                          "Cannot fetch the template of order %s: %s; %s", ord->id,
                          err ? err : strerror(r < 0 ? -r : EIO),
                          ord->relationship_url ? "using the URL the order shows" : "will retry next cycle");
                if (!ord->relationship_url)
                        ord->incomplete = true;
                set_error(c, r < 0 ? r : -EIO, "cannot fetch a template", err);
        } else if (text) {
                char *url = url_link_extract(text);
                if (url) {
                        free(ord->relationship_url);
                        ord->relationship_url = url;
                } else if (url_text_mentions_link(text))
                        /* An acceptance link the client does not recognise (a
                         * look-alike host, http://): never mailed, but ops
                         * should know the order carries one. */
                        log_event(LOG_WARNING, LOG_EV_URL_REJECTED, LOG_FIELDS({ "ORDER_ID", ord->id }),
                                  "Order %s shows a relationship request link on a host that is not allowed "
                                  "(or not https://); it will not be emailed", ord->id);
        }
        op_done(o);
}

static int tracked_ref_cmp(const void *a, const void *b) {
        const struct tracked_ref *x = a, *y = b;
        int r = strcmp(x->id, y->id);
        return r ? r : x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Sorts the tracked orders by id for the TEMPLATES phase, which looks up
 * every listed order (state_find_order() is a linear scan: 10,000 orders
 * made that 50 million string compares).  Without memory it stays NULL
 * and the lookups fall back to the scan. */
static void index_tracked(struct cycle *c) {
        size_t n = 0;
        for (size_t i = 0; i < c->work->n_customers; i++)
                n += c->work->customers[i].n_orders;
        c->tracked = n ? calloc(n, sizeof(*c->tracked)) : NULL;
        if (!c->tracked)
                return;
        for (size_t i = 0; i < c->work->n_customers; i++)
                for (size_t k = 0; k < c->work->customers[i].n_orders; k++) {
                        const struct tracked_order *t = &c->work->customers[i].orders[k];
                        if (t->id) {
                                c->tracked[c->n_tracked] = (struct tracked_ref) { t->id, t, c->n_tracked };
                                c->n_tracked++;
                        }
                }
        qsort(c->tracked, c->n_tracked, sizeof(*c->tracked), tracked_ref_cmp);
}

static void unindex_tracked(struct cycle *c) {
        util_freep(&c->tracked);
        c->n_tracked = 0;
}

static const struct tracked_order *find_tracked(const struct cycle *c, const char *id) {
        if (!c->tracked)
                return state_find_order(c->work, id, NULL);
        /* the first of equal ids, as the scan would find it */
        size_t lo = 0, hi = c->n_tracked;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (strcmp(c->tracked[mid].id, id) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo < c->n_tracked && strcmp(c->tracked[lo].id, id) == 0 ? c->tracked[lo].t : NULL;
}

#define EPISODE_UPDATED    "updated:"
#define EPISODE_FIRST_SEEN "first-seen:"

/* The episode of a Querying order is its audit.querying.at.  Without one
 * (the platform does not always send it) the best start available stands
 * in: audit.updated.at, else the time partnerd first saw it, marked as
 * such ("updated:<time>", "first-seen:<time>").  Once chosen it sticks
 * while the order stays open (an edit bumps updated.at, it does not start
 * a new episode), so the re-read before Process finds the same episode.
 * Logged once, when chosen. */
static int episode_start(struct cycle *c, struct order *o) {
        char when[UTIL_TIME_MAX], *raw = NULL;
        const char *source;
        int64_t at;

        if (o->status != ORDER_STATUS_QUERYING || o->querying_at_raw)
                return 0;
        const struct tracked_order *t = find_tracked(c, o->id);
        if (t && t->status != TRACK_CLOSED && t->querying_at_raw &&
            (strncmp(t->querying_at_raw, EPISODE_UPDATED, strlen(EPISODE_UPDATED)) == 0 ||
             strncmp(t->querying_at_raw, EPISODE_FIRST_SEEN, strlen(EPISODE_FIRST_SEEN)) == 0)) {
                o->querying_at_raw = strdup(t->querying_at_raw);
                o->querying_at = t->querying_since;
                return o->querying_at_raw ? 0 : -ENOMEM;
        }
        if (o->updated_at_raw) {
                source = "audit.updated.at";
                at = o->updated_at;
                if (asprintf(&raw, EPISODE_UPDATED "%s", o->updated_at_raw) < 0)
                        return -ENOMEM;
        } else {
                source = "the time partnerd first saw it";
                at = c->now;
                if (asprintf(&raw, EPISODE_FIRST_SEEN "%s", util_format_time(at, when)) < 0)
                        return -ENOMEM;
        }
        o->querying_at_raw = raw;
        o->querying_at = at;
        log_event(LOG_NOTICE, LOG_EV_NONE, LOG_FIELDS({ "ORDER_ID", o->id }),
                  "Order %s is Querying without audit.querying.at; its episode starts at %s (%s)", o->id,
                  util_format_time(at, when), source);
        return 0;
}

static void episode_starts(struct cycle *c) {
        for (size_t i = 0; i < c->orders.n; i++)
                if (episode_start(c, &c->orders.items[i]) < 0)
                        set_error(c, -ENOMEM, "out of memory", NULL);
}

static bool template_known(const struct cycle *c, struct order *o) {
        const struct tracked_order *t = find_tracked(c, o->id);
        if (!t || t->status == TRACK_CLOSED || !t->querying_at_raw || !o->querying_at_raw)
                return false;
        if (strcmp(t->querying_at_raw, o->querying_at_raw) != 0)
                return false;
        if ((t->template_id || o->template_id) &&
            (!t->template_id || !o->template_id || strcmp(t->template_id, o->template_id) != 0))
                return false;
        /* Same order, same episode, same template: the URL is what it was. */
        if (t->relationship_url) {
                char *u = strdup(t->relationship_url);
                if (!u)
                        return false;
                free(o->relationship_url);
                o->relationship_url = u;
        }
        return true;
}

static void start_template(struct cycle *c, size_t i) {
        struct op *op = op_new(c);
        if (!op) {
                set_error(c, -ENOMEM, "out of memory", NULL);
                return;
        }
        op->index = i;
        int r = mp_get_template(c->env.mp, c->orders.items[i].id, on_template, op);
        if (r < 0)
                on_template(op, r, 0, NULL, NULL);
}

/* An order we asked to process whose outcome is unknown (the daemon was
 * killed with the POST in flight, or the answer was lost) and that is no
 * longer in the list: read it, so the engine sees where it went
 * (Processing: our call took effect, the customer gets the confirmation)
 * rather than an order that disappeared. */
static void on_settle(void *ud, const struct mp_order_result *res) {
        struct op *o = ud;
        struct cycle *c = o->c;
        const struct order *order = res->order;

        if (res->outcome == MP_DONE && order->id && strcmp(order->id, o->order_id) == 0 &&
            !order_list_find(&c->orders, order->id)) {
                struct order *dst = order_list_add(&c->orders);
                if (!dst || order_copy(dst, order) < 0)
                        set_error(c, -ENOMEM, "out of memory", NULL);
        } else if (res->outcome == MP_GONE)
                process_gone(c, o, res);
        else if (res->outcome != MP_DONE)
                log_event(LOG_WARNING, LOG_EV_POLL_FAILED, LOG_FIELDS({ "ORDER_ID", o->order_id }),
                          "Cannot read order %s after its Process call: %s", o->order_id,
                          res->err ? res->err : strerror(res->r < 0 ? -res->r : EIO));
        op_done(o);
}

static void start_settle(struct cycle *c, const char *id) {
        struct op *o = op_new(c);
        if (!o || !(o->order_id = strdup(id))) {
                set_error(c, -ENOMEM, "out of memory", NULL);
                if (o)
                        op_done(o);
                return;
        }
        int r = mp_get_order(c->env.mp, o->order_id, on_settle, o);
        if (r < 0) {
                struct mp_order_result fail = { .outcome = MP_UNKNOWN, .r = r, .err = strerror(-r) };
                on_settle(o, &fail);
        }
}

static void settle_clear(struct cycle *c) {
        for (size_t i = 0; i < c->n_settle; i++)
                free(c->settle[i]);
        util_freep(&c->settle);
        c->n_settle = 0;
}

/* Collects the tracked orders to settle and enters the phase. */
static void begin_settle(struct cycle *c) {
        for (size_t ci = 0; ci < c->work->n_customers; ci++) {
                const struct tracked_customer *cu = &c->work->customers[ci];
                for (size_t k = 0; k < cu->n_orders; k++) {
                        const struct tracked_order *t = &cu->orders[k];
                        if (t->status != TRACK_PROCESS_SENT || order_list_find(&c->orders, t->id))
                                continue;
                        char **p = realloc(c->settle, (c->n_settle + 1) * sizeof(*p));
                        if (!p || !(p[c->n_settle] = strdup(t->id))) {
                                if (p)
                                        c->settle = p;
                                set_error(c, -ENOMEM, "out of memory", NULL);
                                break;
                        }
                        c->settle = p;
                        c->n_settle++;
                }
        }
        begin_phase(c, PH_SETTLE, NULL);
}

static void on_buyer(void *ud, int r, long status, const char *err, const struct order_contact *contact) {
        struct op *o = ud;
        struct cycle *c = o->c;
        struct buyer *b = &c->buyers[o->index];
        if (r < 0 || status != 200)
                log_warning("Cannot read the contact of buyer %s: %s; mailing the configured recipients only",
                            b->id, err ? err : strerror(r < 0 ? -r : EIO));
        else if (contact && contact->email && !(b->email = strdup(contact->email)))
                set_error(c, -ENOMEM, "out of memory", NULL);
        op_done(o);
}

static void start_buyer(struct cycle *c, size_t i) {
        struct op *o = op_new(c);
        if (!o) {
                set_error(c, -ENOMEM, "out of memory", NULL);
                return;
        }
        o->index = i;
        int r = mp_get_buyer_contact(c->env.mp, c->buyers[i].id, on_buyer, o);
        if (r < 0)
                on_buyer(o, r, 0, strerror(-r), NULL);
}

/* Starts the phase's next request; false when it has none left. */
static bool start_next(struct cycle *c) {
        if (c->aborted)
                return false;
        if (c->phase == PH_CONTACTS) {
                if (c->next >= c->n_buyers)
                        return false;
                start_buyer(c, c->next++);
                return true;
        }
        if (c->phase == PH_SETTLE) {
                if (c->next >= c->n_settle)
                        return false;
                start_settle(c, c->settle[c->next++]);
                return true;
        }
        if (c->phase == PH_TEMPLATES) {
                while (c->next < c->orders.n) {
                        size_t i = c->next++;
                        struct order *o = &c->orders.items[i];
                        if (o->status == ORDER_STATUS_QUERYING && !template_known(c, o)) {
                                start_template(c, i);
                                return true;
                        }
                }
                return false;
        }
        enum action_type want = c->phase == PH_CHECKS ? ACTION_CHECK :
                                c->phase == PH_PROCESS ? ACTION_PROCESS : ACTION_LOG;
        while (want != ACTION_LOG && c->next < c->todo.n) {
                const struct action *a = &c->todo.items[c->next++];
                if (a->type != want)
                        continue;
                if (want == ACTION_CHECK)
                        start_check(c, a);
                else
                        start_process(c, a);
                return true;
        }
        return false;
}

/* Keeps the window full.  Completions inside (a request that fails at
 * submission) only count down; this loop goes on. */
static void fill(struct cycle *c) {
        if (c->filling)
                return;
        c->filling = true;
        while (c->pending < c->window && start_next(c))
                ;
        c->filling = false;
}

/* Enters a phase whose requests fill() starts; todo (may be NULL) is moved. */
static void begin_phase(struct cycle *c, enum phase ph, struct action_list *todo) {
        action_list_clear(&c->todo);
        if (todo) {
                c->todo = *todo;
                *todo = (struct action_list) { 0 };
        }
        c->phase = ph;
        c->next = 0;
        fill(c);
}

static void on_list(void *ud, int r, long status, const char *err, struct order_list *orders) {
        struct op *o = ud;
        struct cycle *c = o->c;
        char st[16];

        if (r < 0 || status != 200 || !orders) {
                snprintf(st, sizeof(st), "%ld", status);
                log_event(LOG_ERR, LOG_EV_POLL_FAILED,
                          LOG_FIELDS({ "HTTP_STATUS", st }, { "URL", c->env.cfg->marketplace.url }),
                          "Cannot list orders: %s", err ? err : strerror(r < 0 ? -r : EIO));
                set_error(c, r < 0 ? r : -EIO, "cannot list orders", err);
                c->aborted = true;
        } else {
                c->orders = *orders;
                *orders = (struct order_list) { 0 };
                c->res.orders_seen = c->orders.n;
        }
        op_done(o);
}

/* Drops relationship URLs that are not on the allow-list, so such orders are
 * never emailed (phishing through order data). */
static void filter_urls(struct cycle *c) {
        const struct cfg_mail *m = &c->env.cfg->mail;
        for (size_t i = 0; i < c->orders.n; i++) {
                struct order *o = &c->orders.items[i];
                if (!o->relationship_url || url_link_allowed(o->relationship_url, m->url_hosts, m->n_url_hosts))
                        continue;
                const struct tracked_order *t = state_find_order(c->work, o->id, NULL);
                bool known = t && t->status == TRACK_OTHER_QUERY;
                log_event(known ? LOG_DEBUG : LOG_WARNING, LOG_EV_URL_REJECTED,
                          LOG_FIELDS({ "ORDER_ID", o->id }),
                          "Order %s shows a relationship URL on a host that is not allowed; it will not be emailed",
                          o->id);
                util_freep(&o->relationship_url);
        }
}

/* ---- phases ---- */

/* Intent first, but only where there is one: mails and Process calls
 * need their intent on disk before they happen; checks are reads, and the
 * save at the end of the cycle records them (a warm cycle of 10,000
 * orders saved a 6.6 MB state twice for nothing). */
static void persist_intent(struct cycle *c, const struct action_list *l, const char *what) {
        for (size_t i = 0; i < l->n; i++)
                if (l->items[i].type == ACTION_NOTIFY || l->items[i].type == ACTION_PROCESS) {
                        persist(c, what);
                        return;
                }
}

static int collect_buyers(struct cycle *c);

static bool buyer_known(const struct cycle *c, const char *id) {
        for (size_t i = 0; i < c->n_buyers; i++)
                if (strcmp(c->buyers[i].id, id) == 0)
                        return true;
        return false;
}

static void plan(struct cycle *c) {
        struct action_list acts = { 0 };
        int r;

        unindex_tracked(c);      /* the engine changes the state from here on */
        filter_urls(c);
        r = assign_accounts(c);
        if (r >= 0)
                r = eng_decide(&c->params, &c->orders, NULL, c->work, c->now, &acts);
        if (r < 0) {
                set_error(c, r, "engine", strerror(-r));
                action_list_clear(&acts);
                return;
        }
        for (size_t i = 0; i < c->orders.n; i++)
                if (c->orders.items[i].status == ORDER_STATUS_QUERYING && c->orders.items[i].relationship_url)
                        c->res.blocked++;
        c->planned = acts;
        if (c->env.cfg->mail.notify_order_contacts && collect_buyers(c) < 0)
                set_error(c, -ENOMEM, "out of memory", NULL);
        /* the buyers' contacts first, when there is someone to mail */
        begin_phase(c, PH_CONTACTS, NULL);
}

static int add_buyer(struct cycle *c, const char *order_id) {
        const struct order *o = order_list_find(&c->orders, order_id);
        if (!o || !o->buyer_id || buyer_known(c, o->buyer_id))
                return 0;
        struct buyer *p = realloc(c->buyers, (c->n_buyers + 1) * sizeof(*p));
        if (!p)
                return -ENOMEM;
        c->buyers = p;
        p[c->n_buyers] = (struct buyer) { .id = strdup(o->buyer_id) };
        if (!p[c->n_buyers].id)
                return -ENOMEM;
        c->n_buyers++;
        return 0;
}

/* The buyers of every order a mail of this cycle may name, once each: the
 * mails planned now, and the first request of a customer not mailed yet,
 * which waits for its check (engine phase 2). */
static int collect_buyers(struct cycle *c) {
        int r = 0;
        for (size_t i = 0; r >= 0 && i < c->planned.n; i++) {
                const struct action *a = &c->planned.items[i];
                if (a->type == ACTION_NOTIFY) {
                        for (size_t k = 0; r >= 0 && k < a->n_order_ids; k++)
                                r = add_buyer(c, a->order_ids[k]);
                        continue;
                }
                const struct tracked_customer *cu =
                        a->type == ACTION_CHECK ? state_find_customer(c->work, a->customer_key) : NULL;
                for (size_t k = 0; r >= 0 && cu && !cu->notified_at && k < cu->n_orders; k++)
                        if (cu->orders[k].status == TRACK_BLOCKED)
                                r = add_buyer(c, cu->orders[k].id);
        }
        return r;
}

/* Mails first: the outbox is their durable intent.  Saving the state
 * first would lose every mail decided in the window between the two
 * writes (a crash there leaves notified_at set and no mail queued).  This
 * way a crash before the save makes the same decisions again next cycle
 * and the outbox drops keys it already holds (at worst one duplicate, when
 * a key embeds this cycle's clock). */
static void queue_then_persist(struct cycle *c, const struct action_list *acts, const char *what) {
        perform_simple_actions(c, acts);
        /* one sync for the batch just queued, then the state that says so */
        sync_queued(c);
        persist_intent(c, acts, what);
}

static void plan_mail(struct cycle *c) {
        struct action_list acts = c->planned;
        c->planned = (struct action_list) { 0 };
        queue_then_persist(c, &acts, "after queueing mail");
        begin_phase(c, PH_CHECKS, &acts);
        start_early_flush(c);
}

static void decide(struct cycle *c) {
        struct action_list acts = { 0 };
        int r = eng_decide(&c->params, &c->orders, &c->facts, c->work, c->now, &acts);
        if (r < 0) {
                set_error(c, r, "engine", strerror(-r));
                action_list_clear(&acts);
                return;
        }
        /* the first requests that waited for their check, then the intent
         * of every Process */
        queue_then_persist(c, &acts, "before Process");
        /* no Process whose intent is not on disk */
        if (c->save_failed)
                action_list_clear(&acts);
        begin_phase(c, PH_PROCESS, &acts);
}

/* SMTP 535: the server refused partnerd's login.  A configuration error,
 * not the message's: one error line per cycle (or retry) naming the server
 * and the user; the messages stay queued on their back-off schedule. */
static bool log_auth_failure(const struct cfg *cfg, const struct mail_flush_item *it, bool *logged) {
        char when[UTIL_TIME_MAX];
        if (it->outcome == MAIL_FLUSH_SENT || it->smtp_code != 535)
                return false;
        if (!*logged)
                log_event(LOG_ERR, LOG_EV_MAIL_FAILED, LOG_FIELDS({ "SMTP_CODE", "535" }),
                          "SMTP server %s refused the login of user %s (535 authentication failed): check "
                          "[mail] username and password_file; mail stays queued, next attempt at %s",
                          cfg->mail.smtp_url, cfg->mail.username ? cfg->mail.username : "(none)",
                          util_format_time(it->next_attempt, when));
        *logged = true;
        return true;
}

static void log_flush_item(const struct mail_flush_item *it) {
        char code[16], when[UTIL_TIME_MAX];
        snprintf(code, sizeof(code), "%ld", it->smtp_code);
        const struct log_field *fields =
                LOG_FIELDS({ "MESSAGE_ID_MAIL", it->message_id }, { "MAIL_DEDUP_KEY", it->dedup_key },
                           { "SMTP_CODE", it->smtp_code ? code : NULL }, { "MAIL_RCPT", it->rcpt });
        switch (it->outcome) {
        case MAIL_FLUSH_SENT:
                if (it->n_refused)
                        log_event(LOG_WARNING, LOG_EV_MAIL_SENT, fields,
                                  "Mail \"%s\" sent, but %zu recipient(s) refused: %s", it->subject,
                                  it->n_refused, it->error ? it->error : "no reason given");
                else
                        log_event(LOG_INFO, LOG_EV_MAIL_SENT, fields, "Mail \"%s\" sent to %s",
                                  it->subject, it->rcpt);
                break;
        case MAIL_FLUSH_RETRY:
                log_event(LOG_WARNING, LOG_EV_MAIL_FAILED, fields,
                          "Mail \"%s\" not sent (attempt %d): %s; next attempt at %s", it->subject,
                          it->attempts, it->error ? it->error : "unknown error",
                          util_format_time(it->next_attempt, when));
                break;
        case MAIL_FLUSH_FAILED:
                log_event(LOG_ERR, LOG_EV_MAIL_FAILED, fields,
                          "Mail \"%s\" to %s failed permanently after %d attempt(s): %s; kept in outbox/failed",
                          it->subject, it->rcpt, it->attempts, it->error ? it->error : "unknown error");
                break;
        }
}

static void on_flush(void *ud, const struct mail_flush_stats *st) {
        struct op *o = ud;
        for (size_t i = 0; i < st->n_items; i++)
                if (!log_auth_failure(o->c->env.cfg, &st->items[i], &o->c->auth_logged))
                        log_flush_item(&st->items[i]);
        o->c->res.mails_sent += st->sent;
        op_done(o);
}

/* ---- queued mail between cycles ---- */

struct mail_retry {
        const struct cfg *cfg;
        cycle_retry_done_fn done;
        void *ud;
};

static void on_retry_flush(void *ud, const struct mail_flush_stats *st) {
        struct mail_retry *m = ud;
        bool auth_logged = false;
        for (size_t i = 0; i < st->n_items; i++)
                if (!log_auth_failure(m->cfg, &st->items[i], &auth_logged))
                        log_flush_item(&st->items[i]);
        m->done(m->ud);
        free(m);
}

int cycle_retry_mail(const struct cycle_env *env, int64_t now, cycle_retry_done_fn done, void *ud) {
        struct mail_retry *m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        *m = (struct mail_retry) { .cfg = env->cfg, .done = done, .ud = ud };
        int r = mail_outbox_flush(env->outbox, env->transport, now, on_retry_flush, m);
        if (r < 0)
                free(m);
        return r;
}

static bool can_mail(const struct cycle *c) {
        return !c->env.dry_run && c->env.outbox && c->env.transport;
}

/* false when it could not even start; otherwise its op_done() moves the
 * cycle on (maybe before this returns: the cycle may be gone then) */
static bool final_flush(struct cycle *c) {
        struct op *o = op_new(c);
        if (!o)
                return false;
        int r = mail_outbox_flush(c->env.outbox, c->env.transport, c->now, on_flush, o);
        if (r < 0) {
                log_event(LOG_ERR, LOG_EV_MAIL_FAILED, NULL, "Cannot send queued mail: %s", strerror(-r));
                op_done(o);
        }
        return true;
}

static void on_early_flush(void *ud, const struct mail_flush_stats *st) {
        struct cycle *c = ud;
        for (size_t i = 0; i < st->n_items; i++)
                if (!log_auth_failure(c->env.cfg, &st->items[i], &c->auth_logged))
                        log_flush_item(&st->items[i]);
        c->res.mails_sent += st->sent;
        c->early_flush = false;
        if (c->phase != PH_FLUSH)
                return;
        /* FLUSH was waiting for us: now the mails queued since */
        if (!c->aborted && final_flush(c))
                return;
        if (c->pending == 0 && !c->filling && !c->advancing)
                advance(c);
}

/* Sends the mails plan() just queued while the checks run. */
static void start_early_flush(struct cycle *c) {
        if (!can_mail(c) || c->aborted)
                return;
        c->early_flush = true;      /* before: the callback may run inside */
        int r = mail_outbox_flush(c->env.outbox, c->env.transport, c->now, on_early_flush, c);
        if (r < 0) {
                c->early_flush = false;
                log_event(LOG_ERR, LOG_EV_MAIL_FAILED, NULL, "Cannot send queued mail: %s", strerror(-r));
        }
}

static void flush(struct cycle *c) {
        begin_phase(c, PH_FLUSH, NULL);
        /* with an early flush still running, on_early_flush() goes on */
        if (can_mail(c) && !c->early_flush)
                final_flush(c);
}

static void finish(struct cycle *c) {
        c->phase = PH_DONE;
        size_t pending = 0;
        for (size_t i = 0; i < c->work->n_customers; i++) {
                const struct tracked_customer *cu = &c->work->customers[i];
                for (size_t k = 0; k < cu->n_orders; k++)
                        if (cu->orders[k].status == TRACK_BLOCKED && !cu->accepted_at) {
                                pending++;
                                break;
                        }
        }
        c->res.customers_pending = pending;
        if (!c->env.dry_run && c->env.cfg->daemon.retention > 0)
                store_prune(c->work, c->now - c->env.cfg->daemon.retention);
        sync_queued(c);     /* confirmations queued since plan_mail() */
        persist(c, "after the cycle");
        c->cb(c->ud, &c->res);
        free(c->res.error);
        action_list_clear(&c->todo);
        unindex_tracked(c);
        order_list_clear(&c->orders);
        rel_fact_list_clear(&c->facts);
        action_list_clear(&c->planned);
        action_list_clear(&c->unsynced);
        settle_clear(c);
        for (size_t i = 0; i < c->n_buyers; i++) {
                free(c->buyers[i].id);
                free(c->buyers[i].email);
        }
        free(c->buyers);
        state_free(c->dry_copy);
        free(c);
}

/* Called whenever a phase has nothing left in flight.  A phase that starts
 * no request moves straight on to the next. */
static void advance(struct cycle *c) {
        c->advancing = true;
        while (c->pending == 0 && c->phase != PH_DONE) {
                if (c->aborted && c->phase == PH_CONTACTS) {
                        /* decided mails are queued before the state says
                         * they were: never save one without the other */
                        plan_mail(c);
                        continue;
                }
                if (c->aborted && c->phase < PH_FLUSH) {
                        /* no final flush; an early one still has to end */
                        begin_phase(c, PH_FLUSH, NULL);
                        continue;
                }
                switch (c->phase) {
                case PH_LIST:
                        begin_settle(c);
                        break;
                case PH_SETTLE:
                        index_tracked(c);
                        episode_starts(c);
                        begin_phase(c, PH_TEMPLATES, NULL);
                        break;
                case PH_TEMPLATES:
                        plan(c);          /* -> PH_CONTACTS */
                        if (c->res.r < 0 && c->phase != PH_CONTACTS)
                                c->aborted = true;
                        break;
                case PH_CONTACTS:
                        plan_mail(c);     /* -> PH_CHECKS */
                        break;
                case PH_CHECKS:
                        decide(c);        /* -> PH_PROCESS */
                        break;
                case PH_PROCESS:
                        flush(c);         /* -> PH_FLUSH */
                        break;
                case PH_FLUSH:
                        if (c->early_flush) {
                                c->advancing = false;   /* on_early_flush() goes on */
                                return;
                        }
                        finish(c);
                        return;
                case PH_DONE:
                        return;
                }
        }
        c->advancing = false;
}

int cycle_start(const struct cycle_env *env, cycle_done_fn cb, void *ud, struct cycle **ret) {
        const struct cfg *cfg = env->cfg;
        struct cycle *c = calloc(1, sizeof(*c));
        int r;

        if (!c)
                return -ENOMEM;
        c->env = *env;
        c->cb = cb;
        c->ud = ud;
        c->now = util_now_wall();
        c->window = (size_t) (cfg->daemon.max_parallel > 0 ? cfg->daemon.max_parallel : 1) *
                    CYCLE_WINDOW_PER_SLOT;
        c->work = env->state;
        if (env->dry_run) {
                c->dry_copy = state_new();
                if (!c->dry_copy || state_copy(c->dry_copy, env->state) < 0) {
                        state_free(c->dry_copy);
                        free(c);
                        return -ENOMEM;
                }
                c->work = c->dry_copy;
        }
        c->params = (struct eng_params) {
                .reminder_interval = cfg->mail.reminder_interval,
                .max_reminders = cfg->mail.max_reminders,
                .deadline = cfg->mail.deadline,
                .deadline_warning = cfg->mail.deadline_warning,
                .check_schedule = cfg->microsoft.check_schedule,
                .n_check_schedule = cfg->microsoft.n_check_schedule,
                .check_all = env->check_all,
                .have_ops = cfg->mail.n_ops > 0,
                .check_first = true,
        };

        static const enum order_status statuses[] = { ORDER_STATUS_QUERYING, ORDER_STATUS_DRAFT };
        struct op *o = op_new(c);
        if (!o) {
                state_free(c->dry_copy);
                free(c);
                return -ENOMEM;
        }
        c->phase = PH_LIST;
        r = mp_list_orders(env->mp, statuses, 2, on_list, o);
        if (r < 0) {
                free(o);
                state_free(c->dry_copy);
                free(c);
                return r;
        }
        if (ret)
                *ret = c;
        return 0;
}

void cycle_abort(struct cycle *c) {
        if (c)
                c->aborted = true;
}
