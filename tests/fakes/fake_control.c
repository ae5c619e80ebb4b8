/* SPDX-License-Identifier: MIT */
/* fakeplatform: control routes under /_fake (no auth) and scripted faults. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fake.h"
#include "util.h"

#define FAKE_MAX_FAULTS 64

static const char *const order_statuses[] = {
        "New", "Draft", "Quoted", "Processing", "Querying", "Completed", "Failed", "Deleted", NULL
};

/* The canonical spelling of an order status, NULL if unknown. */
static const char *status_name(const char *st, size_t len) {
        for (const char *const *p = order_statuses; *p; p++)
                if (strlen(*p) == len && strncasecmp(*p, st, len) == 0)
                        return *p;
        return NULL;
}

static bool valid_statuses(const char *list) {
        for (const char *p = list;; p++) {
                size_t len = strcspn(p, ",");
                if (!status_name(p, len))
                        return false;
                p += len;
                if (!*p)
                        return true;
        }
}

void fake_fault_clear(struct fake_fault *f) {
        free(f->route);
        free(f->match);
        free(f->body);
        free(f->retry_after);
        free(f->set_status);
        *f = (struct fake_fault) { 0 };
}

static int parse_action(const char *a, enum fake_fault_action *ret) {
        static const char *const names[] = {
                [FAKE_FAULT_STATUS] = "status", [FAKE_FAULT_RESET] = "reset",
                [FAKE_FAULT_STALL] = "stall", [FAKE_FAULT_TRUNCATE] = "truncate",
                [FAKE_FAULT_OVERSIZE] = "oversize", [FAKE_FAULT_DELAY] = "delay",
        };
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
                if (strcmp(a, names[i]) == 0) {
                        *ret = (enum fake_fault_action) i;
                        return 0;
                }
        return -EINVAL;
}

/* "body_hex": any bytes but NUL (invalid UTF-8, control characters). */
static int hex_body(const char *hex, char **ret) {
        size_t n = strlen(hex);
        char *b;
        if (n % 2 || !(b = malloc(n / 2 + 1)))
                return -EINVAL;
        for (size_t i = 0; i < n / 2; i++) {
                unsigned v;
                if (sscanf(hex + 2 * i, "%2x", &v) != 1 || v == 0) {
                        free(b);
                        return -EINVAL;
                }
                b[i] = (char) v;
        }
        b[n / 2] = '\0';
        *ret = b;
        return 0;
}

static void add_fault(struct fake_state *s, struct fake_req *rq, struct fake_resp *resp) {
        json_t *j = json_loadb(rq->body, rq->body_len, 0, NULL), *ra;
        struct fake_fault f = { 0 }, *arr;
        const char *action, *route;

        const char *hex = json_string_value(json_object_get(j, "body_hex"));
        const char *set_status = json_string_value(json_object_get(j, "set_status"));
        route = json_string_value(json_object_get(j, "route"));
        action = json_string_value(json_object_get(j, "action"));
        f.status = (int) json_integer_value(json_object_get(j, "status"));
        f.delay_ms = (int) json_integer_value(json_object_get(j, "delay_ms"));
        f.times = json_is_integer(json_object_get(j, "times")) ?
                  (int) json_integer_value(json_object_get(j, "times")) : 1;
        f.action = f.status ? FAKE_FAULT_STATUS : FAKE_FAULT_DELAY;
        if (!route || (action && parse_action(action, &f.action) < 0) ||
            (f.action == FAKE_FAULT_STATUS && (f.status < 100 || f.status > 599)) ||
            s->n_faults >= FAKE_MAX_FAULTS) {
                fake_resp_json(resp, 400, json_pack("{s:s}", "error",
                        "need route, a known action, a status 100..599 for action status"));
                goto out;
        }
        if (hex && hex_body(hex, &f.body) < 0) {
                fake_resp_json(resp, 400, json_pack("{s:s}", "error", "body_hex: pairs of hex digits, no 00"));
                goto out;
        }
        if (set_status && !valid_statuses(set_status)) {
                fake_resp_json(resp, 400, json_pack("{s:s}", "error", "set_status: order statuses, comma-separated"));
                goto out;
        }
        f.set_status = util_strdup0(set_status);
        f.route = strdup(route);
        f.match = util_strdup0(json_string_value(json_object_get(j, "match")));
        if (!hex)
                f.body = util_strdup0(json_string_value(json_object_get(j, "body")));
        ra = json_object_get(j, "retry_after");
        if (json_is_string(ra))
                f.retry_after = strdup(json_string_value(ra));
        else if (json_is_integer(ra) && asprintf(&f.retry_after, "%lld", (long long) json_integer_value(ra)) < 0)
                f.retry_after = NULL;
        arr = realloc(s->faults, (s->n_faults + 1) * sizeof(*arr));
        if (!arr) {
                fake_fault_clear(&f);
                fake_resp_json(resp, 500, json_pack("{s:s}", "error", "out of memory"));
                goto out;
        }
        s->faults = arr;
        s->faults[s->n_faults++] = f;
        fake_resp_json(resp, 200, json_pack("{s:b}", "ok", 1));
out:
        json_decref(j);
}

bool fake_fault_take(struct fake_state *s, const struct fake_req *rq, struct fake_fault *ret) {
        for (size_t i = 0; rq->route && i < s->n_faults; i++) {
                struct fake_fault *f = &s->faults[i];
                if (strcmp(f->route, rq->route) != 0 ||
                    (f->match && !strstr(rq->path, f->match) && !strstr(rq->query, f->match)))
                        continue;
                *ret = (struct fake_fault) {
                        .route = util_strdup0(f->route), .match = util_strdup0(f->match),
                        .body = util_strdup0(f->body), .retry_after = util_strdup0(f->retry_after),
                        .set_status = util_strdup0(f->set_status),
                        .status = f->status, .times = 1, .delay_ms = f->delay_ms, .action = f->action,
                };
                if (f->times > 0 && --f->times == 0) {  /* times <= 0: forever */
                        fake_fault_clear(f);
                        memmove(f, f + 1, (s->n_faults - i - 1) * sizeof(*f));
                        s->n_faults--;
                }
                return true;
        }
        return false;
}

/* Someone else moves the order between two of partnerd's requests (the
 * operator in the portal, the vendor's fulfilment): the order named in the
 * path of a Marketplace request goes through each status of set_status in
 * turn, as the control route would move it. */
void fake_fault_move_order(struct fake_state *s, const struct fake_fault *f, const struct fake_req *rq) {
        static const char prefix[] = "/public/v1/commerce/orders/";
        char id[64];
        struct fake_order *o;

        if (!f->set_status || strncmp(rq->path, prefix, sizeof(prefix) - 1) != 0)
                return;
        size_t len = strcspn(rq->path + sizeof(prefix) - 1, "/");
        if (len >= sizeof(id))
                return;
        memcpy(id, rq->path + sizeof(prefix) - 1, len);
        id[len] = '\0';
        if (!(o = fake_order_find(s, id)))
                return;
        for (const char *p = f->set_status;; p++) {
                size_t n = strcspn(p, ",");
                const char *st = status_name(p, n);
                if (st)
                        fake_order_set_status(s, o, st);
                p += n;
                if (!*p)
                        return;
        }
}

static void set_order_status(struct fake_state *s, const char *rest, struct fake_resp *resp) {
        char id[64];
        const char *st;
        size_t len = strcspn(rest, "/");
        struct fake_order *o;

        if (len >= sizeof(id) || strncmp(rest + len, "/status/", 8) != 0)
                goto bad;
        memcpy(id, rest, len);
        id[len] = '\0';
        st = rest + len + 8;
        o = fake_order_find(s, id);
        for (const char *const *p = order_statuses; o && *p; p++)
                if (util_streq_ci(*p, st)) {
                        fake_order_set_status(s, o, *p);
                        fake_resp_json(resp, 200, json_pack("{s:s s:s s:i}", "id", id,
                                                            "status", *p, "revision", o->revision));
                        return;
                }
bad:
        fake_resp_json(resp, 404, json_pack("{s:s}", "error", "unknown order or status"));
}

static json_t *orders_summary(struct fake_state *s) {
        json_t *a = json_array();

        for (size_t i = 0; i < s->n_orders; i++)
                json_array_append_new(a, json_pack("{s:O s:O s:i}",
                        "id", json_object_get(s->orders[i].obj, "id"),
                        "status", json_object_get(s->orders[i].obj, "status"),
                        "revision", s->orders[i].revision));
        return a;
}

static json_t *tenants_summary(struct fake_state *s) {
        json_t *a = json_array();

        for (size_t i = 0; i < s->n_tenants; i++) {
                struct fake_tenant *t = &s->tenants[i];
                json_array_append_new(a, json_pack("{s:s s:s s:s s:b s:s s:i s:s}", "id", t->id,
                        "domain", t->domain, "name", t->name, "accepted", t->accepted,
                        "relationship", t->relationship, "checks", t->checks,
                        "account", s->accounts[t->account].name));
        }
        return a;
}

void fake_control_handle(struct fake_state *s, struct fake_req *rq, struct fake_resp *resp) {
        const char *p = rq->path + strlen("/_fake/");
        bool post = strcmp(rq->method, "POST") == 0;
        struct fake_tenant *t;

        if (post && strncmp(p, "accept/", 7) == 0) {
                /* ?account=NAME: the relationship with that partner account
                 * (default: the "microsoft" one, else the tenant's first) */
                const char *acct = fake_query_get(rq, "account");
                int ai = acct ? fake_account_find(s, acct) : 0;
                t = ai >= 0 ? fake_tenant_find_for(s, p + 7, ai) : NULL;
                if (!t && !acct)
                        t = fake_tenant_find(s, p + 7);
                if (t)
                        t->accepted = true;
                fake_resp_json(resp, t ? 200 : 404, t ? json_pack("{s:s s:b}", "id", t->id, "accepted", 1)
                                                      : json_pack("{s:s}", "error", "unknown tenant"));
        } else if (post && strncmp(p, "orders/", 7) == 0)
                set_order_status(s, p + 7, resp);
        else if (!post && strcmp(p, "orders") == 0)
                fake_resp_json(resp, 200, orders_summary(s));
        else if (!post && strcmp(p, "tenants") == 0)
                fake_resp_json(resp, 200, tenants_summary(s));
        else if (!post && strcmp(p, "log") == 0)
                fake_resp_json(resp, 200, json_deep_copy(s->log));
        else if (post && strcmp(p, "log/reset") == 0) {
                json_array_clear(s->log);
                fake_resp_json(resp, 200, json_pack("{s:b}", "ok", 1));
        } else if (post && strcmp(p, "fault") == 0)
                add_fault(s, rq, resp);
        else if (post && strcmp(p, "faults/reset") == 0) {
                for (size_t i = 0; i < s->n_faults; i++)
                        fake_fault_clear(&s->faults[i]);
                s->n_faults = 0;
                fake_resp_json(resp, 200, json_pack("{s:b}", "ok", 1));
        } else
                fake_resp_json(resp, 404, json_pack("{s:s}", "error", "unknown control route"));
}
