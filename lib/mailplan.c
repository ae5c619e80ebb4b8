/* SPDX-License-Identifier: MIT */
/*
 * One mail from one NOTIFY action of the engine: the orders it names, its
 * recipients (the configured ones, and with notify_order_contacts the
 * orders' contacts and their buyers' addresses, read in PH_CONTACTS), the
 * rendering (lib/mail.c) and the outbox, whose file is the mail's durable
 * intent; in --dry-run the mail is printed instead.  Also what a flush of
 * the outbox reports, as log lines (SMTP 535 once per cycle).
 */
#include "cycle_priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store.h"
#include "util.h"

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
void mailplan_sync(struct cycle *c) {
        if (c->env.dry_run || !c->env.outbox || c->unsynced.n == 0)
                return;
        int r = mail_outbox_sync(c->env.outbox);
        if (r < 0) {
                log_event(LOG_ERR, LOG_EV_MAIL_FAILED, NULL,
                          "Cannot sync the mail outbox: %s; %zu mail(s) not recorded as sent, decided again next cycle",
                          strerror(-r), c->unsynced.n);
                cycle_set_error(c, r, "cannot sync the mail outbox", strerror(-r));
                for (size_t i = 0; i < c->unsynced.n; i++)
                        (void) eng_notify_failed(c->work, &c->unsynced.items[i]);
        }
        action_list_clear(&c->unsynced);
}

/* The orders a mail names and its extra recipients (the orders' contacts
 * and buyers, borrowed from the cycle's orders and buyers). */
struct mail_parts {
        struct mail_order *mo;
        char **links;
        size_t n;                /* entries of mo and links */
        char **extra;
        size_t n_extra;
        int64_t deadline;        /* the earliest of the orders' deadlines */
};

static void mail_parts_clear(struct mail_parts *p) {
        for (size_t i = 0; p->links && i < p->n; i++)
                free(p->links[i]);
        free(p->links);
        free(p->mo);
        free(p->extra);
}

/* Adds the order's contacts and its buyer's address as recipients. */
static int add_order_recipients(const struct cycle *c, struct mail_parts *p, const struct order *o) {
        const char *buyer = buyer_email(c, o->buyer_id);
        for (size_t k = 0; k <= o->n_contacts; k++) {
                const char *e = k < o->n_contacts ? o->contacts[k].email : buyer;
                if (!e)
                        continue;
                char **q = realloc(p->extra, (p->n_extra + 1) * sizeof(*p->extra));
                if (!q)
                        return -ENOMEM;
                p->extra = q;
                p->extra[p->n_extra++] = (char *) e;
        }
        return 0;
}

static int mail_parts_build(const struct cycle *c, const struct action *a, const struct tracked_customer *cust,
                            struct mail_parts *p) {
        const struct cfg *cfg = c->env.cfg;
        p->mo = calloc(a->n_order_ids ? a->n_order_ids : 1, sizeof(*p->mo));
        p->links = calloc(a->n_order_ids ? a->n_order_ids : 1, sizeof(*p->links));
        if (!p->mo || !p->links)
                return -ENOMEM;
        p->n = a->n_order_ids;
        for (size_t i = 0; i < a->n_order_ids; i++) {
                const struct tracked_order *t = customer_find_order(cust, a->order_ids[i]);
                const struct order *o = order_list_find(&c->orders, a->order_ids[i]);
                p->links[i] = mp_portal_link(cfg->marketplace.portal_url, a->order_ids[i]);
                p->mo[i] = (struct mail_order) {
                        .id = a->order_ids[i],
                        .product = o ? (o->product_name ? o->product_name : o->product_id) : NULL,
                        .portal_link = p->links[i],
                        .querying_since = t ? t->querying_since : 0,
                        .deadline = t ? tracked_order_deadline(t, cfg->mail.deadline) : 0,
                        /* a refused Process: the ops notice gives the refusal */
                        .error = a->message ? a->message : o ? o->error_message : NULL,
                };
                if (p->mo[i].deadline && (!p->deadline || p->mo[i].deadline < p->deadline))
                        p->deadline = p->mo[i].deadline;
                if (cfg->mail.notify_order_contacts && o && add_order_recipients(c, p, o) < 0)
                        return -ENOMEM;
        }
        return 0;
}

/* The dry-run rendition: readable, not the quoted-printable wire form. */
static void print_dry_run(const struct cycle *c, const struct action *a, const struct tracked_customer *cust,
                          const struct mail_message *msg) {
        printf("---- dry run: %s mail for %s, not sent ----\nFrom: %s\nTo:",
               mail_kind_to_string(a->mail_kind), cust->name ? cust->name : a->customer_key,
               c->env.cfg->mail.from);
        for (size_t i = 0; i < msg->n_rcpt; i++)
                printf("%s %s", i ? "," : "", msg->rcpt[i]);
        printf("\nSubject: %s\n\n%s\n", msg->subject, msg->text ? msg->text : "");
        fflush(stdout);
}

/* Puts the rendered mail in the outbox: 1 queued, 0 not (logged), -ENOMEM
 * when it was queued but cannot be remembered for the sync. */
static int put_outbox(struct cycle *c, const struct action *a, const struct tracked_customer *cust,
                      const struct mail_message *msg) {
        const char *first_order = a->n_order_ids ? a->order_ids[0] : NULL;
        int r = mail_outbox_put(c->env.outbox, a->dedup_key, msg, c->now);
        if (r >= 0 && remember_unsynced(c, a) < 0)
                return -ENOMEM;
        if (r < 0) {
                /* -EFBIG: cluster mode, a mail etcd could not mirror (mail_outbox_set_max_file) */
                char why[160];
                snprintf(why, sizeof(why), "%s", r == -EFBIG ? "the message is larger than one etcd "
                         "transaction can hold (a shorter template?)" : strerror(-r));
                log_event(LOG_ERR, LOG_EV_MAIL_FAILED,
                          LOG_FIELDS({ "ORDER_ID", first_order }, { "CUSTOMER_KEY", a->customer_key },
                                     { "PARTNER_ACCOUNT", cust->account }),
                          "Cannot queue %s mail for %s: %s; it will be decided again next cycle",
                          mail_kind_to_string(a->mail_kind), a->customer_key, why);
                cycle_set_error(c, r, "cannot queue mail", why);
                return 0;
        }
        if (r == 0) {
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
        return 1;
}

/* Renders one mail, under the context the templates see. */
static int render(const struct cycle *c, const struct action *a, const struct tracked_customer *cust,
                  const struct mail_parts *p, struct mail_message **msg) {
        char *err = NULL;
        struct mail_context ctx = {
                .kind = a->mail_kind,
                .customer_name = cust->name,
                .domain = cust->domain,
                .tenant_id = cust->tenant_id,
                .url = cust->relationship_url,
                .partner_id = a->partner_id,
                .orders = p->mo,
                .n_orders = a->n_order_ids,
                .reminder_number = cust->reminders,
                .deadline = p->deadline,
                .now = c->now,
                .extra_rcpt = p->extra,
                .n_extra_rcpt = p->n_extra,
        };
        int r = mail_render(c->env.templates, &c->env.cfg->mail, &ctx, msg, &err);
        if (r < 0)
                log_event(LOG_ERR, LOG_EV_MAIL_FAILED,
                          LOG_FIELDS({ "ORDER_ID", a->n_order_ids ? a->order_ids[0] : NULL },
                                     { "CUSTOMER_KEY", a->customer_key }, { "PARTNER_ACCOUNT", cust->account },
                                     { "MAIL_KIND", mail_kind_to_string(a->mail_kind) }),
                          "Cannot compose %s mail for %s: %s", mail_kind_to_string(a->mail_kind),
                          cust->name ? cust->name : a->customer_key, err ? err : strerror(-r));
        free(err);
        return r;
}

void mailplan_queue(struct cycle *c, const struct action *a) {
        struct tracked_customer *cust = state_find_customer(c->work, a->customer_key);
        struct mail_parts parts = { 0 };
        struct mail_message *msg = NULL;
        int queued = 0;

        if (!cust) {
                log_error("Internal error: mail for unknown customer %s skipped", a->customer_key);
                return;
        }
        if (mail_parts_build(c, a, cust, &parts) < 0)
                queued = -ENOMEM;
        else if (render(c, a, cust, &parts, &msg) < 0)
                queued = 0;
        else if (c->env.dry_run) {
                print_dry_run(c, a, cust, msg);
                c->res.mails_queued++;
                queued = 1;
        } else
                queued = put_outbox(c, a, cust, msg);
        if (queued < 0) {
                log_error("Out of memory composing mail for %s", a->customer_key);
                cycle_set_error(c, -ENOMEM, "out of memory", NULL);
        }
        /* not queued: not recorded either, decided again next cycle */
        if (queued <= 0)
                (void) eng_notify_failed(c->work, a);
        mail_parts_clear(&parts);
        mail_message_free(msg);
}

/* ---- buyers' contacts ---- */

static bool buyer_known(const struct cycle *c, const char *id) {
        for (size_t i = 0; i < c->n_buyers; i++)
                if (strcmp(c->buyers[i].id, id) == 0)
                        return true;
        return false;
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
int mailplan_collect_buyers(struct cycle *c) {
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

static void on_buyer(void *ud, int r, long status, const char *err, const struct order_contact *contact) {
        struct op *o = ud;
        struct cycle *c = o->c;
        struct buyer *b = &c->buyers[o->index];
        if (r < 0 || status != 200)
                log_warning("Cannot read the contact of buyer %s: %s; mailing the configured recipients only",
                            b->id, err ? err : strerror(r < 0 ? -r : EIO));
        else if (contact && contact->email && !(b->email = strdup(contact->email)))
                cycle_set_error(c, -ENOMEM, "out of memory", NULL);
        cycle_op_done(o);
}

void mailplan_start_buyer(struct cycle *c, size_t i) {
        struct op *o = cycle_op_new(c);
        if (!o) {
                cycle_set_error(c, -ENOMEM, "out of memory", NULL);
                return;
        }
        o->index = i;
        int r = mp_get_buyer_contact(c->env.mp, c->buyers[i].id, on_buyer, o);
        if (r < 0)
                on_buyer(o, r, 0, strerror(-r), NULL);
}

/* ---- flush reports ---- */

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

void mailplan_log_flush(const struct cfg *cfg, const struct mail_flush_stats *st, bool *auth_logged) {
        for (size_t i = 0; i < st->n_items; i++)
                if (!log_auth_failure(cfg, &st->items[i], auth_logged))
                        log_flush_item(&st->items[i]);
}
