/* SPDX-License-Identifier: MIT */
/*
 * The listed orders, made ready for the engine: each Querying order's
 * episode (lib/model.c names it when the platform sent none), its
 * relationship link (from the template, fetched only when the order, its
 * episode or its template is new), links on hosts not allowed dropped
 * (never mailed), and the account that checks it.  The tracked orders are
 * indexed by id while the state does not change (SETTLE..TEMPLATES).
 */
#include "cycle_priv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "url.h"
#include "util.h"

/* Indexes the tracked orders by id for the TEMPLATES phase, which looks
 * up every listed order (state_find_order() is a linear scan: 10,000
 * orders made that 50 million string compares).  Without memory the index
 * stays empty and the lookups fall back to the scan. */
void listing_index(struct cycle *c) {
        (void) state_index_orders(c->work, &c->tracked);
}

void listing_unindex(struct cycle *c) {
        idx_free(&c->tracked);
}

static const struct tracked_order *find_tracked(const struct cycle *c, const char *id) {
        if (!c->tracked.cap)
                return state_find_order(c->work, id, NULL);
        return state_index_find(c->work, &c->tracked, id);
}

/* Names the episode of a Querying order the platform sent without
 * audit.querying.at (order_episode_start(), lib/model.c); logged once,
 * when chosen. */
int listing_episode_start(struct cycle *c, struct order *o) {
        char when[UTIL_TIME_MAX];

        if (o->status != ORDER_STATUS_QUERYING || o->querying_at_raw)
                return 0;
        int r = order_episode_start(o, find_tracked(c, o->id), c->now);
        if (r == ORDER_EPISODE_FROM_UPDATED || r == ORDER_EPISODE_FROM_FIRST_SEEN)
                log_event(LOG_NOTICE, LOG_EV_NONE, LOG_FIELDS({ "ORDER_ID", o->id }),
                          "Order %s is Querying without audit.querying.at; its episode starts at %s (%s)", o->id,
                          util_format_time(o->querying_at, when),
                          r == ORDER_EPISODE_FROM_UPDATED ? "audit.updated.at" : "the time partnerd first saw it");
        return r < 0 ? r : 0;
}

void listing_episode_starts(struct cycle *c) {
        for (size_t i = 0; i < c->orders.n; i++)
                if (listing_episode_start(c, &c->orders.items[i]) < 0)
                        cycle_set_error(c, -ENOMEM, "out of memory", NULL);
}

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
                cycle_set_error(c, r < 0 ? r : -EIO, "cannot fetch a template", err);
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
        cycle_op_done(o);
}

bool listing_template_known(const struct cycle *c, struct order *o) {
        const struct tracked_order *t = find_tracked(c, o->id);
        if (!t || t->status == TRACK_CLOSED || !t->querying_at_raw || !order_same_episode(t, o))
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

void listing_start_template(struct cycle *c, size_t i) {
        struct op *op = cycle_op_new(c);
        if (!op) {
                cycle_set_error(c, -ENOMEM, "out of memory", NULL);
                return;
        }
        op->index = i;
        int r = mp_get_template(c->env.mp, c->orders.items[i].id, on_template, op);
        if (r < 0)
                on_template(op, r, 0, NULL, NULL);
}

/* Drops relationship URLs that are not on the allow-list, so such orders are
 * never emailed (phishing through order data). */
void listing_filter_urls(struct cycle *c) {
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

/* Which account checks each order: the one whose partner_ids lists its
 * link's partnerId (lib/url.c reads it).  NULL stays for the default
 * account (its customer keys are what they were before accounts): so do
 * orders without a link (nothing to check) and GDAP links, which name no
 * partnerId: the [microsoft] account's Graph is asked about them (it knows
 * that partner tenant's GDAP relationships only; README "GDAP").  A GDAP
 * link gets its relationship id in gdap_id: the order is a GDAP block. */
int listing_assign_accounts(struct cycle *c) {
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
