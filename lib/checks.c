/* SPDX-License-Identifier: MIT */
/*
 * Relationship checks of the CHECKS phase: Partner Center for a reseller
 * relationship, Microsoft Graph for a GDAP one.  Each answer, whatever it
 * is, becomes one fact for the engine (eng_decide) and at most one log
 * line; a sign-in failure is logged once per cycle.
 */
#include "cycle_priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store.h"
#include "url.h"

/* The clients of a configured account: none for ACCOUNT_NONE or a name
 * the configuration no longer has. */
static struct cycle_account account_of(const struct cycle *c, const char *name) {
        if (!c->env.accounts)
                return !name || strcmp(name, ACCOUNT_DEFAULT) == 0
                               ? (struct cycle_account) { .name = name, .pc = c->env.pc, .graph = c->env.graph }
                               : (struct cycle_account) { 0 };
        for (size_t i = 0; name && i < c->env.n_accounts; i++)
                if (strcmp(c->env.accounts[i].name, name) == 0)
                        return c->env.accounts[i];
        return (struct cycle_account) { 0 };
}

/* The section of an account, for messages: "microsoft" or "microsoft.NAME". */
static void account_section(const char *name, char *buf, size_t n) {
        if (!name || strcmp(name, ACCOUNT_DEFAULT) == 0)
                snprintf(buf, n, "microsoft");
        else
                snprintf(buf, n, "microsoft.%s", name);
}

/* What on_check() and on_graph() start with: the op, the customer and its
 * name for messages, the HTTP status as text and a new fact about the
 * customer (NULL without memory), checked now, in the state answered. */
struct fact_begin {
        struct op *o;
        struct cycle *c;
        struct rel_fact *f;
        struct tracked_customer *cust;
        const char *name;
        char st[16];
};

static void fact_begin(struct fact_begin *b, void *ud, long status, enum rel_state state) {
        b->o = ud;
        b->c = b->o->c;
        b->f = rel_fact_list_add(&b->c->facts);
        b->cust = state_find_customer(b->c->work, b->o->customer_key);
        b->name = b->cust && b->cust->name ? b->cust->name : b->o->customer_key;
        snprintf(b->st, sizeof(b->st), "%ld", status);
        if (b->f) {
                *b->f = (struct rel_fact) { .checked_at = b->c->now, .state = state };
                b->f->customer_key = strdup(b->o->customer_key);
        }
}

static void on_check(void *ud, int r, const struct pc_check_result *res) {
        struct fact_begin b;
        fact_begin(&b, ud, res ? res->status : 0L, res ? res->state : REL_UNKNOWN);
        struct op *o = b.o;
        struct cycle *c = b.c;
        struct tracked_customer *cust = b.cust;
        const char *name = b.name, *st = b.st;
        if (b.f) {
                b.f->account = o->account ? strdup(o->account) : NULL;
                b.f->tenant_id = res && res->tenant_id ? strdup(res->tenant_id) : NULL;
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
                        cycle_set_error(c, -EACCES, "Partner Center sign-in failed", res->error);
                } else {
                        const char *why = res && res->error ? res->error : strerror(r < 0 ? -r : EIO);
                        log_event(LOG_WARNING, LOG_EV_CHECK_FAILED, fields,
                                  "Cannot check the relationship of %s: %s", name, why);
                        cycle_set_error(c, r < 0 ? r : -EIO, "relationship check failed", why);
                }
        } else if (res->state == REL_ACCEPTED)
                /* the engine logs the acceptance itself, once */
                log_debug("Partner Center reports %s as a reseller customer", name);
        else
                log_event(LOG_INFO, LOG_EV_RELATIONSHIP_PENDING, fields,
                          "Relationship with %s still pending (HTTP %ld)", name, res->status);
        cycle_op_done(o);
}

static char *customer_gdap_id(const struct cycle *c, const char *key);
static void on_graph_answer(void *ud, int r, const struct graph_result *res);

/* A GDAP relationship lives in the partner tenant that asked for it, and
 * its link names no partnerId (unlike a reseller link): a "not found" from
 * the customer's account is asked again of each other configured account.
 * The first that knows the id answers; only when none does is it not
 * found.  False when there is no other account left to ask. */
static bool graph_retry(struct op *o) {
        struct cycle *c = o->c;
        char *id = customer_gdap_id(c, o->customer_key);
        while (id && !c->aborted && c->env.accounts && o->graph_next < c->env.n_accounts) {
                const struct cycle_account *acc = &c->env.accounts[o->graph_next++];
                if (!acc->graph || (o->account && strcmp(acc->name, o->account) == 0))
                        continue;
                if (graph_get_relationship(acc->graph, id, on_graph_answer, o) == 0) {
                        o->graph_account = acc->name;
                        free(id);
                        return true;
                }
        }
        free(id);
        return false;
}

/* The account whose Graph answered: another one after graph_retry(). */
static const char *graph_asked(const struct op *o) {
        return o->graph_account ? o->graph_account : o->account;
}

/* A GDAP relationship's state from Graph, as a fact (gdap set: it applies
 * to GDAP customers only). */
static void on_graph(void *ud, int r, const struct graph_result *res) {
        struct fact_begin b;
        fact_begin(&b, ud, res ? res->http_status : 0L, res ? res->state : REL_UNKNOWN);
        struct op *o = b.o;
        struct cycle *c = b.c;
        const char *name = b.name, *st = b.st;
        if (b.f) {
                b.f->gdap = true;
                b.f->detail = res && res->status ? strdup(res->status) : NULL;
        }
        const struct log_field *fields =
                LOG_FIELDS({ "CUSTOMER_KEY", o->customer_key }, { "HTTP_STATUS", st },
                           { "CUSTOMER_TENANT", res && res->tenant_id ? res->tenant_id : NULL },
                           { "PARTNER_ACCOUNT", graph_asked(o) });
        if (!res || res->state == REL_UNKNOWN) {
                const char *why = res && res->error ? res->error : strerror(r < 0 ? -r : EIO);
                if (res && res->config_error) {
                        char section[64];
                        account_section(graph_asked(o), section, sizeof(section));
                        if (!c->token_error_logged)
                                log_event(LOG_ERR, LOG_EV_TOKEN_FAILED, fields,
                                          "Microsoft Graph refused the sign-in or the read, check [%s] tenant, "
                                          "client_id, the client secret and the app's application permission "
                                          "DelegatedAdminRelationship.Read.All (admin consent): %s", section, why);
                        c->token_error_logged = true;
                        cycle_set_error(c, -EACCES, "Microsoft Graph refused partnerd", why);
                } else {
                        log_event(LOG_WARNING, LOG_EV_CHECK_FAILED, fields,
                                  "Cannot read the GDAP relationship of %s: %s", name, why);
                        cycle_set_error(c, r < 0 ? r : -EIO, "GDAP relationship check failed", why);
                }
        } else if (res->state == REL_PENDING)
                log_event(LOG_INFO, LOG_EV_RELATIONSHIP_PENDING, fields,
                          "GDAP relationship of %s still pending (status %s)", name,
                          res->status ? res->status : "?");
        else
                /* the engine logs acceptance and the end itself, once */
                log_debug("Microsoft Graph reports the GDAP relationship of %s as %s", name,
                          res->status ? res->status : res->state == REL_NOT_FOUND ? "not found" : "?");
        cycle_op_done(o);
}

/* Every Graph answer: a "not found" first goes to the other accounts. */
static void on_graph_answer(void *ud, int r, const struct graph_result *res) {
        if (res && res->state == REL_NOT_FOUND && graph_retry(ud))
                return;
        on_graph(ud, r, res);
}

/* The relationship id of a GDAP customer, from its link (lib/url.c). */
static char *customer_gdap_id(const struct cycle *c, const char *key) {
        const struct tracked_customer *cust = state_find_customer(c->work, key);
        return cust && cust->relationship_url ? url_link_gdap_id(cust->relationship_url) : NULL;
}

static void start_graph_check(struct cycle *c, struct op *o, const struct action *a) {
        struct graph_client *g = account_of(c, a->account).graph;
        char *id = customer_gdap_id(c, a->customer_key);
        int r = !g ? -ENOENT : !id ? -EINVAL : graph_get_relationship(g, id, on_graph_answer, o);
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

void checks_start(struct cycle *c, const struct action *a) {
        struct op *o = cycle_op_new(c);
        if (!o || !(o->customer_key = strdup(a->customer_key)) ||
            (a->account && !(o->account = strdup(a->account)))) {
                cycle_set_error(c, -ENOMEM, "out of memory", NULL);
                if (o)
                        cycle_op_done(o);
                return;
        }
        c->res.checks++;
        if (customer_key_is_gdap(a->customer_key)) {
                start_graph_check(c, o, a);
                return;
        }
        struct pc_client *pc = account_of(c, a->account).pc;
        int r = pc ? pc_check_customer(pc, a->tenant_id, a->domain, on_check, o) : -ENOENT;
        if (r < 0) {
                struct pc_check_result res = {
                        .state = REL_UNKNOWN,
                        .error = pc ? strerror(-r) : "no such Partner Center account in the configuration",
                };
                on_check(o, r, &res);
        }
}
