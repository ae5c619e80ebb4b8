/* SPDX-License-Identifier: MIT */
#include "model.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* Grows an array of elements of size sz so that one more fits. */
static void *grow(void *items, size_t *cap, size_t n, size_t sz) {
        if (n < *cap)
                return items;
        size_t nc = *cap ? *cap * 2 : 8;
        if (nc > SIZE_MAX / sz)
                return NULL;
        void *p = realloc(items, nc * sz);
        if (!p)
                return NULL;
        memset((char *) p + *cap * sz, 0, (nc - *cap) * sz);
        *cap = nc;
        return p;
}

/* The add and clear functions of a MODEL_LIST (lib/model.h); clear_item
 * clears one element. */
#define MODEL_LIST_DEFINE(name, type, clear_item)                               \
        type *name##_add(struct name *l) {                                      \
                type *p = grow(l->items, &l->cap, l->n, sizeof(*p));            \
                if (!p)                                                         \
                        return NULL;                                            \
                l->items = p;                                                   \
                return &l->items[l->n++];                                       \
        }                                                                       \
        void name##_clear(struct name *l) {                                     \
                if (!l)                                                         \
                        return;                                                 \
                for (size_t i = 0; i < l->n; i++)                               \
                        clear_item(&l->items[i]);                               \
                free(l->items);                                                 \
                *l = (struct name) { 0 };                                       \
        }

MODEL_LIST_DEFINE(order_list, struct order, order_clear)
MODEL_LIST_DEFINE(rel_fact_list, struct rel_fact, rel_fact_clear)
MODEL_LIST_DEFINE(action_list, struct action, action_clear)

static const char *const status_names[_ORDER_STATUS_MAX] = {
        [ORDER_STATUS_UNKNOWN] = "Unknown",
        [ORDER_STATUS_NEW] = "New",
        [ORDER_STATUS_DRAFT] = "Draft",
        [ORDER_STATUS_QUOTED] = "Quoted",
        [ORDER_STATUS_PROCESSING] = "Processing",
        [ORDER_STATUS_QUERYING] = "Querying",
        [ORDER_STATUS_COMPLETED] = "Completed",
        [ORDER_STATUS_FAILED] = "Failed",
        [ORDER_STATUS_DELETED] = "Deleted",
};

enum order_status order_status_from_string(const char *s) {
        if (!s)
                return ORDER_STATUS_UNKNOWN;
        for (int i = 1; i < _ORDER_STATUS_MAX; i++)
                if (util_streq_ci(s, status_names[i]))
                        return (enum order_status) i;
        return ORDER_STATUS_UNKNOWN;
}

const char *order_status_to_string(enum order_status s) {
        return s >= 0 && s < _ORDER_STATUS_MAX ? status_names[s] : "Unknown";
}

void order_clear(struct order *o) {
        if (!o)
                return;
        free(o->id);
        free(o->type);
        free(o->product_id);
        free(o->product_name);
        free(o->agreement_id);
        free(o->agreement_name);
        free(o->client_name);
        free(o->buyer_id);
        free(o->buyer_name);
        free(o->tenant_id);
        free(o->domain);
        free(o->company_name);
        free(o->relationship_url);
        free(o->partner_id);
        free(o->account);
        free(o->gdap_id);
        free(o->error_message);
        free(o->querying_at_raw);
        free(o->updated_at_raw);
        free(o->template_id);
        for (size_t i = 0; i < o->n_contacts; i++) {
                free(o->contacts[i].name);
                free(o->contacts[i].email);
        }
        free(o->contacts);
        *o = (struct order) { 0 };
}

#define DUP(field)                                                  \
        do {                                                        \
                if (src->field && !(dst->field = strdup(src->field))) \
                        goto oom;                                   \
        } while (0)

int order_copy(struct order *dst, const struct order *src) {
        *dst = (struct order) {
                .status = src->status,
                .incomplete = src->incomplete,
                .querying_at = src->querying_at,
                .updated_at = src->updated_at,
                .created_at = src->created_at,
        };
        DUP(id);
        DUP(type);
        DUP(product_id);
        DUP(product_name);
        DUP(agreement_id);
        DUP(agreement_name);
        DUP(client_name);
        DUP(buyer_id);
        DUP(buyer_name);
        DUP(tenant_id);
        DUP(domain);
        DUP(company_name);
        DUP(relationship_url);
        DUP(partner_id);
        DUP(account);
        DUP(gdap_id);
        DUP(error_message);
        DUP(querying_at_raw);
        DUP(updated_at_raw);
        DUP(template_id);
        if (src->n_contacts) {
                dst->contacts = calloc(src->n_contacts, sizeof(*dst->contacts));
                if (!dst->contacts)
                        goto oom;
                dst->n_contacts = src->n_contacts;
                for (size_t i = 0; i < src->n_contacts; i++) {
                        dst->contacts[i].name = util_strdup0(src->contacts[i].name);
                        dst->contacts[i].email = util_strdup0(src->contacts[i].email);
                        if ((src->contacts[i].name && !dst->contacts[i].name) ||
                            (src->contacts[i].email && !dst->contacts[i].email))
                                goto oom;
                }
        }
        return 0;
oom:
        order_clear(dst);
        return -ENOMEM;
}

static size_t str_size(const char *s) {
        return s ? strlen(s) + 1 : 0;
}

size_t order_size(const struct order *o) {
        const char *const strs[] = {
                o->id, o->type, o->product_id, o->product_name, o->agreement_id, o->agreement_name,
                o->client_name, o->buyer_id, o->buyer_name, o->tenant_id, o->domain, o->company_name,
                o->relationship_url, o->error_message, o->querying_at_raw, o->template_id,
        };
        size_t n = sizeof(*o) + o->n_contacts * sizeof(*o->contacts);
        for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
                n += str_size(strs[i]);
        for (size_t i = 0; i < o->n_contacts; i++)
                n += str_size(o->contacts[i].name) + str_size(o->contacts[i].email);
        return n;
}

const struct order *order_list_find(const struct order_list *l, const char *id) {
        for (size_t i = 0; id && i < l->n; i++)
                if (l->items[i].id && strcmp(l->items[i].id, id) == 0)
                        return &l->items[i];
        return NULL;
}

const char *order_account(const struct order *o) {
        return o->account ? o->account : ACCOUNT_DEFAULT;
}

char *order_customer_key(const struct order *o) {
        const char *acct = order_account(o);
        bool plain = strcmp(acct, ACCOUNT_DEFAULT) == 0;
        char *k = NULL;
        int r;
        if (o->gdap_id && *o->gdap_id)
                r = asprintf(&k, CUSTOMER_KEY_GDAP "%s", o->gdap_id);
        else if (o->tenant_id && *o->tenant_id)
                r = asprintf(&k, "%s%s%s", plain ? "" : acct, plain ? "" : "/", o->tenant_id);
        else if (o->domain && *o->domain)
                r = asprintf(&k, "%s%sdomain:%s", plain ? "" : acct, plain ? "" : "/", o->domain);
        else
                return NULL;
        return r < 0 ? NULL : util_ascii_lower(k);
}

bool customer_key_is_gdap(const char *key) {
        return key && strncmp(key, CUSTOMER_KEY_GDAP, strlen(CUSTOMER_KEY_GDAP)) == 0;
}

void rel_fact_clear(struct rel_fact *f) {
        if (!f)
                return;
        free(f->detail);
        free(f->customer_key);
        free(f->account);
        free(f->tenant_id);
        *f = (struct rel_fact) { 0 };
}

static const char *const track_names[_TRACK_MAX] = {
        [TRACK_BLOCKED] = "blocked",
        [TRACK_PROCESS_SENT] = "processing_sent",
        [TRACK_CLOSED] = "closed",
        [TRACK_OTHER_QUERY] = "other_query",
        [TRACK_DRAFT] = "draft",
};

const char *track_status_to_string(enum track_status s) {
        return s >= 0 && s < _TRACK_MAX ? track_names[s] : "unknown";
}

int track_status_from_string(const char *s) {
        for (int i = 0; s && i < _TRACK_MAX; i++)
                if (strcmp(s, track_names[i]) == 0)
                        return i;
        return -EINVAL;
}

void tracked_order_clear(struct tracked_order *o) {
        if (!o)
                return;
        free(o->id);
        free(o->querying_at_raw);
        free(o->outcome);
        free(o->template_id);
        free(o->relationship_url);
        free(o->unlisted_partner);
        *o = (struct tracked_order) { 0 };
}

void tracked_customer_clear(struct tracked_customer *c) {
        if (!c)
                return;
        free(c->key);
        free(c->account);
        free(c->tenant_id);
        free(c->domain);
        free(c->name);
        free(c->relationship_url);
        free(c->gdap_ended);
        for (size_t i = 0; i < c->n_orders; i++)
                tracked_order_clear(&c->orders[i]);
        free(c->orders);
        *c = (struct tracked_customer) { 0 };
}

void state_clear(struct state *s) {
        if (!s)
                return;
        for (size_t i = 0; i < s->n_customers; i++)
                tracked_customer_clear(&s->customers[i]);
        free(s->customers);
        *s = (struct state) { .version = STATE_VERSION };
}

struct state *state_new(void) {
        struct state *s = calloc(1, sizeof(*s));
        if (s)
                s->version = STATE_VERSION;
        return s;
}

void state_free(struct state *s) {
        if (!s)
                return;
        state_clear(s);
        free(s);
}

#undef DUP
#define DUP(field)                                                  \
        do {                                                        \
                if (src->field && !(dst->field = strdup(src->field))) \
                        return -ENOMEM;                             \
        } while (0)

static int tracked_order_copy(struct tracked_order *dst, const struct tracked_order *src) {
        *dst = *src;
        dst->id = dst->querying_at_raw = dst->outcome = dst->template_id = NULL;
        dst->relationship_url = dst->unlisted_partner = NULL;
        DUP(id);
        DUP(querying_at_raw);
        DUP(outcome);
        DUP(template_id);
        DUP(relationship_url);
        DUP(unlisted_partner);
        return 0;
}

static int tracked_customer_copy(struct tracked_customer *dst, const struct tracked_customer *src) {
        *dst = *src;
        dst->key = dst->account = dst->tenant_id = dst->domain = dst->name = dst->relationship_url = NULL;
        dst->gdap_ended = NULL;
        dst->orders = NULL;
        dst->n_orders = dst->cap_orders = 0;
        DUP(key);
        DUP(account);
        DUP(tenant_id);
        DUP(domain);
        DUP(name);
        DUP(relationship_url);
        DUP(gdap_ended);
        if (src->n_orders) {
                dst->orders = calloc(src->n_orders, sizeof(*dst->orders));
                if (!dst->orders)
                        return -ENOMEM;
                dst->cap_orders = src->n_orders;
                for (size_t i = 0; i < src->n_orders; i++) {
                        dst->n_orders = i + 1;
                        if (tracked_order_copy(&dst->orders[i], &src->orders[i]) < 0)
                                return -ENOMEM;
                }
        }
        return 0;
}
#undef DUP

int state_copy(struct state *dst, const struct state *src) {
        *dst = (struct state) { .version = src->version, .counters = src->counters };
        if (src->n_customers) {
                dst->customers = calloc(src->n_customers, sizeof(*dst->customers));
                if (!dst->customers)
                        return -ENOMEM;
                dst->cap_customers = src->n_customers;
                for (size_t i = 0; i < src->n_customers; i++) {
                        dst->n_customers = i + 1;
                        if (tracked_customer_copy(&dst->customers[i], &src->customers[i]) < 0) {
                                state_clear(dst);
                                return -ENOMEM;
                        }
                }
        }
        return 0;
}

struct tracked_customer *state_find_customer(const struct state *s, const char *key) {
        for (size_t i = 0; key && i < s->n_customers; i++)
                if (s->customers[i].key && strcmp(s->customers[i].key, key) == 0)
                        return &s->customers[i];
        return NULL;
}

struct tracked_customer *state_add_customer(struct state *s, const char *key) {
        struct tracked_customer *p = grow(s->customers, &s->cap_customers, s->n_customers, sizeof(*p));
        if (!p)
                return NULL;
        s->customers = p;
        struct tracked_customer *c = &s->customers[s->n_customers];
        *c = (struct tracked_customer) { 0 };
        if (!(c->key = strdup(key)))
                return NULL;
        s->n_customers++;
        return c;
}

struct tracked_order *customer_find_order(const struct tracked_customer *c, const char *id) {
        for (size_t i = 0; id && i < c->n_orders; i++)
                if (c->orders[i].id && strcmp(c->orders[i].id, id) == 0)
                        return &c->orders[i];
        return NULL;
}

struct tracked_order *customer_add_order(struct tracked_customer *c, const char *id) {
        struct tracked_order *p = grow(c->orders, &c->cap_orders, c->n_orders, sizeof(*p));
        if (!p)
                return NULL;
        c->orders = p;
        struct tracked_order *o = &c->orders[c->n_orders];
        *o = (struct tracked_order) { 0 };
        if (!(o->id = strdup(id)))
                return NULL;
        c->n_orders++;
        return o;
}

struct tracked_order *state_find_order(const struct state *s, const char *id,
                                       struct tracked_customer **ret_customer) {
        for (size_t i = 0; i < s->n_customers; i++) {
                struct tracked_order *o = customer_find_order(&s->customers[i], id);
                if (o) {
                        if (ret_customer)
                                *ret_customer = &s->customers[i];
                        return o;
                }
        }
        return NULL;
}

void state_remove_customer(struct state *s, size_t i) {
        if (i >= s->n_customers)
                return;
        tracked_customer_clear(&s->customers[i]);
        memmove(&s->customers[i], &s->customers[i + 1],
                (s->n_customers - i - 1) * sizeof(*s->customers));
        s->n_customers--;
        s->customers[s->n_customers] = (struct tracked_customer) { 0 };
}

void customer_remove_order(struct tracked_customer *c, size_t i) {
        if (i >= c->n_orders)
                return;
        tracked_order_clear(&c->orders[i]);
        memmove(&c->orders[i], &c->orders[i + 1], (c->n_orders - i - 1) * sizeof(*c->orders));
        c->n_orders--;
        c->orders[c->n_orders] = (struct tracked_order) { 0 };
}

struct tracked_order *customer_take_order(struct tracked_customer *dst,
                                          struct tracked_customer *src, size_t i) {
        if (i >= src->n_orders || dst == src)
                return NULL;
        struct tracked_order *p = grow(dst->orders, &dst->cap_orders, dst->n_orders, sizeof(*p));
        if (!p)
                return NULL;
        dst->orders = p;
        struct tracked_order *o = &dst->orders[dst->n_orders++];
        *o = src->orders[i];
        memmove(&src->orders[i], &src->orders[i + 1], (src->n_orders - i - 1) * sizeof(*src->orders));
        src->n_orders--;
        src->orders[src->n_orders] = (struct tracked_order) { 0 };
        return o;
}

static const char *const mail_kind_names[_MAIL_KIND_MAX] = {
        [MAIL_KIND_NEW_REQUEST] = "new-request",
        [MAIL_KIND_REMINDER] = "reminder",
        [MAIL_KIND_FINAL_WARNING] = "final-warning",
        [MAIL_KIND_DRAFT_WARNING] = "draft-warning",
        [MAIL_KIND_OPS_NOTICE] = "ops-notice",
        [MAIL_KIND_CONFIRMATION] = "confirmation",
        [MAIL_KIND_PARTNER_UNLISTED] = "partner-unlisted",
        [MAIL_KIND_GDAP_REQUEST] = "gdap-request",
        [MAIL_KIND_GDAP_REMINDER] = "gdap-reminder",
        [MAIL_KIND_GDAP_FINAL_WARNING] = "gdap-final-warning",
        [MAIL_KIND_GDAP_CONFIRMATION] = "gdap-confirmation",
        [MAIL_KIND_GDAP_ENDED] = "gdap-ended",
        [MAIL_KIND_GDAP_DRAFT_WARNING] = "gdap-draft-warning",
};

bool mail_kind_is_ops(enum mail_kind k) {
        return k == MAIL_KIND_OPS_NOTICE || k == MAIL_KIND_PARTNER_UNLISTED || k == MAIL_KIND_GDAP_ENDED;
}

const char *mail_kind_to_string(enum mail_kind k) {
        return k >= 0 && k < _MAIL_KIND_MAX ? mail_kind_names[k] : "unknown";
}

void action_clear(struct action *a) {
        if (!a)
                return;
        free(a->customer_key);
        free(a->account);
        free(a->partner_id);
        free(a->tenant_id);
        free(a->domain);
        free(a->order_id);
        for (size_t i = 0; i < a->n_order_ids; i++)
                free(a->order_ids[i]);
        free(a->order_ids);
        free(a->dedup_key);
        free(a->message);
        free(a->event_subject);
        free(a->event_detail);
        *a = (struct action) { 0 };
}

/* ---- deadline and episode ---- */

int64_t tracked_order_deadline(const struct tracked_order *t, int64_t deadline) {
        int64_t base = t->querying_since ? t->querying_since : t->first_seen;
        return base ? base + deadline : 0;
}

int64_t tracked_customer_deadline(const struct tracked_customer *c, int64_t deadline) {
        int64_t d = 0;
        for (size_t i = 0; i < c->n_orders; i++) {
                int64_t od = c->orders[i].status == TRACK_BLOCKED ? tracked_order_deadline(&c->orders[i], deadline) : 0;
                if (od && (!d || od < d))
                        d = od;
        }
        return d;
}

static bool named_episode(const char *raw) {
        return raw && (strncmp(raw, ORDER_EPISODE_UPDATED, strlen(ORDER_EPISODE_UPDATED)) == 0 ||
                       strncmp(raw, ORDER_EPISODE_FIRST_SEEN, strlen(ORDER_EPISODE_FIRST_SEEN)) == 0);
}

int order_episode_start(struct order *o, const struct tracked_order *t, int64_t now) {
        char when[UTIL_TIME_MAX], *raw = NULL;

        if (o->status != ORDER_STATUS_QUERYING || o->querying_at_raw)
                return ORDER_EPISODE_AS_SENT;
        if (t && t->status != TRACK_CLOSED && named_episode(t->querying_at_raw)) {
                o->querying_at_raw = strdup(t->querying_at_raw);
                o->querying_at = t->querying_since;
                return o->querying_at_raw ? ORDER_EPISODE_KEPT : -ENOMEM;
        }
        if (o->updated_at_raw) {
                if (asprintf(&raw, ORDER_EPISODE_UPDATED "%s", o->updated_at_raw) < 0)
                        return -ENOMEM;
                o->querying_at_raw = raw;
                o->querying_at = o->updated_at;
                return ORDER_EPISODE_FROM_UPDATED;
        }
        if (asprintf(&raw, ORDER_EPISODE_FIRST_SEEN "%s", util_format_time(now, when)) < 0)
                return -ENOMEM;
        o->querying_at_raw = raw;
        o->querying_at = now;
        return ORDER_EPISODE_FROM_FIRST_SEEN;
}

bool order_same_episode(const struct tracked_order *t, const struct order *o) {
        const char *a = t ? t->querying_at_raw : NULL, *b = o->querying_at_raw;
        return t && (a && b ? strcmp(a, b) == 0 : a == b);
}

/* ---- the order index ---- */

static uint64_t hash_str(const char *s) {
        uint64_t h = UINT64_C(14695981039346656037);
        for (; *s; s++) {
                h ^= (unsigned char) *s;
                h *= UINT64_C(1099511628211);
        }
        return h;
}

void idx_free(struct idx *x) {
        free(x->e);
        *x = (struct idx) { 0 };
}

static struct idx_ent *idx_slot(const struct idx *x, const char *key) {
        size_t m = x->cap - 1;
        for (size_t i = (size_t) hash_str(key) & m;; i = (i + 1) & m)
                if (!x->e[i].key || strcmp(x->e[i].key, key) == 0)
                        return &x->e[i];
}

int idx_put(struct idx *x, const char *key, size_t a, size_t b) {
        if (!key)
                return 0;
        if ((x->n + 1) * 2 > x->cap) {
                size_t nc = x->cap ? x->cap * 2 : 64;
                struct idx old = *x;
                x->e = calloc(nc, sizeof(*x->e));
                if (!x->e) {
                        *x = old;
                        return -ENOMEM;
                }
                x->cap = nc;
                x->n = 0;
                for (size_t i = 0; i < old.cap; i++)
                        if (old.e[i].key) {
                                *idx_slot(x, old.e[i].key) = old.e[i];
                                x->n++;
                        }
                free(old.e);
        }
        struct idx_ent *e = idx_slot(x, key);
        if (!e->key)
                x->n++;
        *e = (struct idx_ent) { key, a, b };
        return 0;
}

const struct idx_ent *idx_get(const struct idx *x, const char *key) {
        if (!key || x->cap == 0)
                return NULL;
        const struct idx_ent *e = idx_slot(x, key);
        return e->key ? e : NULL;
}

int state_index_orders(const struct state *s, struct idx *x) {
        idx_free(x);
        for (size_t ci = 0; ci < s->n_customers; ci++)
                for (size_t oi = 0; oi < s->customers[ci].n_orders; oi++) {
                        const char *id = s->customers[ci].orders[oi].id;
                        if (id && !idx_get(x, id) && idx_put(x, id, ci, oi) < 0) {
                                idx_free(x);
                                return -ENOMEM;
                        }
                }
        return 0;
}

struct tracked_order *state_index_find(const struct state *s, const struct idx *x, const char *id) {
        const struct idx_ent *e = idx_get(x, id);
        return e ? &s->customers[e->a].orders[e->b] : NULL;
}
