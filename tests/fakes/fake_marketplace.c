/* SPDX-License-Identifier: MIT */
/*
 * fakeplatform: Marketplace routes under /public/v1.  Orders follow the
 * state machine of the real platform, including its dangerous part:
 * POST .../process on a Draft or Quoted order places it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake.h"
#include "util.h"

#define ORDERS_PREFIX "/public/v1/commerce/orders"
#define BUYERS_PREFIX "/public/v1/accounts/buyers/"
#define LIST_DEFAULT_LIMIT 10
#define LIST_MAX_LIMIT 100

/* Heavy fields left out unless selected (lists, single GET). */
static const char *const list_omitted[] = {
        "lines", "parameters", "subscriptions", "termsAndConditions", "certificates", "audit", NULL
};
static const char *const single_omitted[] = {
        "lines", "subscriptions", "termsAndConditions", "certificates", NULL
};

struct action {
        const char *name;
        const char *to;
        const char *from[4];
        const char *requires;   /* for the 409 detail */
        const char *body_keys[4];
};

static const struct action actions[] = {
        { "process", "Processing", { "Querying", "Draft", "Quoted" }, "Querying, Draft or Quoted",
          { "parameters" } },
        { "query", "Querying", { "Processing" }, "Processing", { "parameters", "template", "error" } },
        { "complete", "Completed", { "Processing" }, "Processing", { "parameters", "template" } },
        { "fail", "Failed", { "Processing", "Querying" }, "Processing or Querying",
          { "parameters", "statusNotes" } },
};

static const char *audit_event(const char *status) {
        static const char *const map[][2] = {
                { "Processing", "processing" }, { "Querying", "querying" },
                { "Completed", "completed" }, { "Failed", "failed" },
                { "Quoted", "quoted" }, { "Deleted", "deleted" },
        };
        for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
                if (strcmp(map[i][0], status) == 0)
                        return map[i][1];
        return NULL;
}

int fake_order_set_status(struct fake_state *s, struct fake_order *o, const char *status) {
        char now[UTIL_TIME_MAX];
        const char *ev = audit_event(status);
        json_t *audit, *event;

        util_format_time(util_now_wall(), now);
        json_object_set_new(o->obj, "status", json_string(status));
        audit = json_object_get(o->obj, "audit");
        if (!json_is_object(audit)) {
                audit = json_object();
                json_object_set_new(o->obj, "audit", audit);
        }
        event = json_pack("{s:s s:{s:s s:s}}", "at", now, "by", "id", s->mp_token_id,
                          "name", "API token");
        if (ev)
                json_object_set(audit, ev, event);
        json_object_set_new(audit, "updated", event);
        o->revision++;
        s->orders_gen++;
        return 0;
}

/* The platform fails CSP orders that wait in Querying too long. */
static void autofail(struct fake_state *s) {
        int64_t now = util_now_wall(), at;

        if (s->querying_fail_after <= 0)
                return;
        for (size_t i = 0; i < s->n_orders; i++) {
                struct fake_order *o = &s->orders[i];
                const char *st = json_string_value(json_object_get(o->obj, "status"));
                const char *q = json_string_value(rql_lookup(o->obj, "audit.querying.at"));
                if (!st || strcmp(st, "Querying") != 0 || !q || util_parse_time(q, &at) < 0 ||
                    now - at < s->querying_fail_after)
                        continue;
                fake_order_set_status(s, o, "Failed");
                json_object_set_new(o->obj, "statusNotes", json_pack("{s:s s:s}", "id", "ERR-FAKE-0015",
                        "message", "Order failed: the customer did not accept the reseller relationship in time."));
        }
}

static bool in_list(const char *const *list, const char *name) {
        for (; *list; list++)
                if (strcmp(*list, name) == 0)
                        return true;
        return false;
}

/* Applies select=: "+a"/"a" adds a top-level field, "-a" or "-a.b" removes. */
static json_t *order_view(const struct fake_order *o, const char *select, bool list,
                          json_t *omitted) {
        const char *const *defaults = list ? list_omitted : single_omitted;
        json_t *view = json_deep_copy(o->obj), *plus = json_array(), *minus = json_array();
        char *copy = util_strdup0(select ? select : ""), *save = NULL, *tok;
        size_t i;
        json_t *v;

        for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                bool rm = tok[0] == '-';
                if (tok[0] == '-' || tok[0] == '+')
                        tok++;
                json_array_append_new(rm ? minus : plus, json_stringn(tok, strcspn(tok, ".")));
                if (rm && strchr(tok, '.')) {           /* nested removal */
                        char *dot = strrchr(tok, '.');
                        *dot = '\0';
                        json_object_del(rql_lookup(view, tok), dot + 1);
                        json_array_remove(minus, json_array_size(minus) - 1);
                }
        }
        for (const char *const *d = defaults; *d; d++) {
                bool sel = false;
                json_array_foreach(plus, i, v)
                        sel |= strcmp(json_string_value(v), *d) == 0;
                if (!sel) {
                        json_object_del(view, *d);
                        json_array_append_new(omitted, json_string(*d));
                }
        }
        json_array_foreach(minus, i, v) {
                json_object_del(view, json_string_value(v));
                if (!in_list(defaults, json_string_value(v)))
                        json_array_append(omitted, v);
        }
        json_decref(plus);
        json_decref(minus);
        free(copy);
        return view;
}

static int parse_count(const char *s, long def, long *ret) {
        char *end;
        if (!s) {
                *ret = def;
                return 0;
        }
        errno = 0;
        *ret = strtol(s, &end, 10);
        return (*s && !*end && errno == 0 && *ret >= 0) ? 0 : -EINVAL;
}

static void bad_rql(struct fake_resp *resp, const char *msg) {
        char tid[] = "00-00000000000000000000000000000000-0000000000000000-00";
        json_t *j = json_pack("{s:s s:s s:i s:s s:{s:[s]}}",
                              "type", "https://tools.ietf.org/html/rfc9110#section-15.5.1",
                              "title", "One or more validation errors occurred.", "status", 400,
                              "traceId", tid, "errors", "mistake", msg);
        fake_resp_json(resp, 400, j);
        resp->ctype = FAKE_PROBLEM_CTYPE;
}

/* What selects and sorts the matches: every query segment but the page. */
static char *list_key(const struct fake_req *rq) {
        char *key = strdup(""), *next;

        for (size_t i = 0; key && i < rq->n_segs; i++) {
                if (!rq->segs[i] || strncmp(rq->segs[i], "limit=", 6) == 0 ||
                    strncmp(rq->segs[i], "offset=", 7) == 0)
                        continue;
                if (asprintf(&next, "%s\n%s", key, rq->segs[i]) < 0)
                        next = NULL;
                free(key);
                key = next;
        }
        return key;
}

/* Filters and sorts every order, or reuses the previous list's result when
 * the query and the orders are the same: a paging client asks for the same
 * list once per page, and sorting 10,000 orders per page under the lock
 * would serialise parallel page requests (the benchmark measures latency,
 * not the fake). */
static int list_hits(struct fake_state *s, struct fake_req *rq, json_t ***ret_hits, size_t *ret_n,
                     char **ret_err) {
        struct rql_node *filter = NULL;
        json_t **hits = NULL;
        char *key = list_key(rq);
        size_t n = 0;
        int r;

        if (key && s->list_cache.key && s->list_cache.gen == s->orders_gen &&
            strcmp(key, s->list_cache.key) == 0) {
                free(key);
                *ret_hits = s->list_cache.hits;
                *ret_n = s->list_cache.n;
                return 0;
        }
        r = rql_from_query(rq, &filter, ret_err);
        if (r < 0) {
                r = r == -ENOMEM ? r : -EINVAL;
                goto out;
        }
        r = -ENOMEM;
        hits = calloc(s->n_orders + 1, sizeof(*hits));
        if (!hits)
                goto out;
        for (size_t i = 0; i < s->n_orders; i++)
                if (rql_match(filter, s->orders[i].obj))
                        hits[n++] = s->orders[i].obj;
        r = rql_sort(hits, n, fake_query_get(rq, "order"), ret_err);
        if (r < 0)
                goto out;
        if (!key) {
                r = -ENOMEM;
                goto out;
        }
        free(s->list_cache.key);
        free(s->list_cache.hits);
        s->list_cache.key = key;
        s->list_cache.gen = s->orders_gen;
        s->list_cache.hits = hits;
        s->list_cache.n = n;
        key = NULL;
        *ret_hits = hits;
        *ret_n = n;
        hits = NULL;
out:
        rql_free(filter);
        free(hits);
        free(key);
        return r;
}

static void list_orders(struct fake_state *s, struct fake_req *rq, struct fake_resp *resp) {
        json_t **hits = NULL, *data, *omitted = json_array();
        char *err = NULL;
        long limit, offset;
        size_t n = 0;
        int r;

        if (fake_query_get(rq, "rql")) {
                bad_rql(resp, "Invalid equals shortcut expression.");
                goto out;
        }
        if (parse_count(fake_query_get(rq, "limit"), LIST_DEFAULT_LIMIT, &limit) < 0 ||
            parse_count(fake_query_get(rq, "offset"), 0, &offset) < 0) {
                bad_rql(resp, "limit and offset must be non-negative integers.");
                goto out;
        }
        if (limit > LIST_MAX_LIMIT)
                limit = LIST_MAX_LIMIT;
        r = list_hits(s, rq, &hits, &n, &err);
        if (r == -EINVAL) {
                bad_rql(resp, err ? err : "Invalid RQL.");
                goto out;
        }
        if (r < 0) {
                fake_resp_problem(resp, 500, "Internal error", "out of memory", NULL);
                goto out;
        }
        data = json_array();
        for (size_t i = (size_t) offset; i < n && i < (size_t) offset + (size_t) limit; i++) {
                json_t *om = json_array();
                json_array_append_new(data, order_view(fake_order_find(s, json_string_value(
                        json_object_get(hits[i], "id"))), fake_query_get(rq, "select"), true, om));
                json_decref(om);
        }
        {       /* the envelope names what was left out even when data is empty */
                struct fake_order dummy = { .obj = json_object() };
                json_decref(order_view(&dummy, fake_query_get(rq, "select"), true, omitted));
                json_decref(dummy.obj);
        }
        fake_resp_json(resp, 200, json_pack("{s:{s:{s:i s:i s:i} s:O} s:o}", "$meta", "pagination",
                "offset", (int) offset, "limit", (int) limit, "total", (int) n, "omitted", omitted,
                "data", data));
out:
        json_decref(omitted);       /* hits belong to s->list_cache */
        free(err);
}

static void not_found(struct fake_resp *resp, const char *what, const char *id, const char *path) {
        char detail[256];
        snprintf(detail, sizeof(detail), "%s %s not found.", what, id);
        fake_resp_problem(resp, 404, "Not Found", detail, path);
}

static void get_order(struct fake_state *s, struct fake_req *rq, struct fake_order *o,
                      struct fake_resp *resp) {
        json_t *omitted = json_array();
        json_t *view = order_view(o, fake_query_get(rq, "select"), false, omitted);

        json_object_set_new(view, "$meta", json_pack("{s:o}", "omitted", omitted));
        fake_resp_json(resp, 200, view);
}

static const char *param_value(json_t *order, const char *par_id, char **ret_free) {
        static const char *const phases[] = { "parameters.ordering", "parameters.fulfillment" };
        json_t *p;
        size_t i;

        *ret_free = NULL;
        for (size_t k = 0; k < 2; k++)
                json_array_foreach(rql_lookup(order, phases[k]), i, p) {
                        const char *id = json_string_value(json_object_get(p, "id"));
                        json_t *v = json_object_get(p, "value");
                        if (!id || strcmp(id, par_id) != 0)
                                continue;
                        if (json_is_string(v))
                                return json_string_value(v);
                        if (!v || json_is_null(v))
                                return "";
                        return *ret_free = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
                }
        return "";
}

/* Substitutes {{ PAR-... }} placeholders with the order's parameter values. */
static char *render_template(const char *text, json_t *order) {
        struct util_buf b;
        const char *p = text, *open, *close;

        util_buf_init(&b, FAKE_MAX_BODY);
        while ((open = strstr(p, "{{")) && (close = strstr(open, "}}"))) {
                char id[64] = "";
                char *fr;
                const char *q = open + 2;

                util_buf_append(&b, p, (size_t) (open - p));
                while (*q == ' ')
                        q++;
                size_t len = strcspn(q, " }");
                if (len < sizeof(id))
                        memcpy(id, q, len), id[len] = '\0';
                util_buf_puts(&b, param_value(order, id, &fr));
                free(fr);
                p = close + 2;
        }
        util_buf_puts(&b, p);
        return util_buf_steal(&b);
}

static void get_template(struct fake_state *s, struct fake_req *rq, struct fake_order *o,
                         struct fake_resp *resp) {
        const char *tid = json_string_value(rql_lookup(o->obj, "template.id"));
        const char *text = tid ? json_string_value(json_object_get(s->templates, tid)) : NULL;
        char *out;

        if (!text) {
                not_found(resp, "Template of order", json_string_value(json_object_get(o->obj, "id")), rq->path);
                return;
        }
        out = render_template(text, o->obj);
        if (o->template_raw)
                fake_resp_text(resp, 200, "text/markdown; charset=utf-8", out);
        else
                fake_resp_json(resp, 200, json_string(out ? out : ""));
        free(out);
}

static void apply_body(struct fake_order *o, const struct action *a, json_t *body) {
        for (size_t i = 0; i < 4 && a->body_keys[i]; i++) {
                json_t *v = json_object_get(body, a->body_keys[i]);
                if (json_is_object(v)) {
                        json_t *copy = json_deep_copy(v);
                        fake_strip_private(copy);
                        json_object_set_new(o->obj, a->body_keys[i], copy);
                }
        }
}

static void do_action(struct fake_state *s, struct fake_req *rq, struct fake_order *o,
                      const struct action *a, struct fake_resp *resp) {
        const char *st = json_string_value(json_object_get(o->obj, "status"));
        json_t *body = NULL;
        char detail[512];
        bool ok = false;

        if (rq->body_len > 0) {
                body = json_loadb(rq->body, rq->body_len, 0, NULL);
                if (!body) {
                        fake_resp_problem(resp, 400, "Bad Request", "The request body is not valid JSON.", rq->path);
                        return;
                }
        }
        if (o->resume_race && strcmp(a->name, "process") == 0) {
                /* realism: resumed by the platform just before (fake_state.c realism_apply) */
                o->resume_race = false;
                if (st && strcmp(st, "Querying") == 0) {
                        fake_order_set_status(s, o, "Processing");
                        st = json_string_value(json_object_get(o->obj, "status"));
                }
        }
        for (size_t i = 0; i < 4 && a->from[i]; i++)
                ok |= st && strcmp(st, a->from[i]) == 0;
        if (!ok) {
                snprintf(detail, sizeof(detail), "Order %s is in status %s; '%s' requires %s.",
                         json_string_value(json_object_get(o->obj, "id")), st ? st : "unknown",
                         a->name, a->requires);
                fake_resp_problem(resp, FAKE_TRANSITION_STATUS, FAKE_TRANSITION_TITLE, detail, rq->path);
        } else {
                apply_body(o, a, body);
                fake_order_set_status(s, o, a->to);
                get_order(s, rq, o, resp);
        }
        json_decref(body);
}

static void get_buyer(struct fake_state *s, struct fake_req *rq, const char *id, struct fake_resp *resp) {
        size_t i;
        json_t *b;

        json_array_foreach(s->buyers, i, b) {
                const char *bid = json_string_value(json_object_get(b, "id"));
                if (bid && strcmp(bid, id) == 0) {
                        json_t *copy = json_deep_copy(b);
                        fake_strip_private(copy);
                        fake_resp_json(resp, 200, copy);
                        return;
                }
        }
        not_found(resp, "Buyer", id, rq->path);
}

/* Splits ".../orders/{id}[/{sub}]" (sub may be NULL). */
static bool split_order_path(const char *path, char id[static 64], const char **ret_sub) {
        const char *p = path + strlen(ORDERS_PREFIX "/");
        size_t len = strcspn(p, "/");

        if (len == 0 || len >= 64)
                return false;
        memcpy(id, p, len);
        id[len] = '\0';
        *ret_sub = p[len] == '/' ? p + len + 1 : NULL;
        return !*ret_sub || !strchr(*ret_sub, '/');
}

const char *fake_mp_route(const struct fake_req *rq) {
        char id[64];
        const char *sub;

        if (strcmp(rq->path, ORDERS_PREFIX) == 0)
                return "orders";
        if (strncmp(rq->path, BUYERS_PREFIX, strlen(BUYERS_PREFIX)) == 0)
                return "buyer";
        if (strncmp(rq->path, ORDERS_PREFIX "/", strlen(ORDERS_PREFIX) + 1) != 0 ||
            !split_order_path(rq->path, id, &sub))
                return NULL;
        return sub ? sub : "order";
}

static bool authorized(struct fake_state *s, struct fake_req *rq, struct fake_resp *resp) {
        const char *b = fake_bearer(rq->authorization);

        if (!rq->authorization) {
                /* the gateway in front of the API answers in its own shape */
                fake_resp_gateway(resp, 401, "Access denied due to missing or invalid access token.");
                return false;
        }
        if (!b || strcmp(b, s->mp_token) != 0) {
                fake_resp_problem(resp, 401, "Unauthorized", "The API token is invalid.", rq->path);
                return false;
        }
        return true;
}

void fake_mp_handle(struct fake_state *s, struct fake_req *rq, struct fake_resp *resp) {
        const char *route = fake_mp_route(rq), *sub;
        bool get = strcmp(rq->method, "GET") == 0;
        struct fake_order *o;
        char id[64];

        if (!route) {
                fake_resp_problem(resp, 404, "Not Found", "No such route.", rq->path);
                return;
        }
        if (!authorized(s, rq, resp))
                return;
        autofail(s);
        if (strcmp(route, "buyer") == 0 && get) {
                get_buyer(s, rq, rq->path + strlen(BUYERS_PREFIX), resp);
                return;
        }
        if (strcmp(route, "orders") == 0 && get) {
                list_orders(s, rq, resp);
                return;
        }
        if (strcmp(route, "orders") == 0 || strcmp(route, "buyer") == 0) {
                fake_resp_problem(resp, 405, "Method Not Allowed", NULL, rq->path);
                return;
        }
        split_order_path(rq->path, id, &sub);
        o = fake_order_find(s, id);
        if (!o) {
                not_found(resp, "Order", id, rq->path);
                return;
        }
        if (get && strcmp(route, "order") == 0) {
                get_order(s, rq, o, resp);
                return;
        }
        if (get && strcmp(route, "template") == 0) {
                get_template(s, rq, o, resp);
                return;
        }
        for (size_t i = 0; i < sizeof(actions) / sizeof(actions[0]); i++)
                if (strcmp(route, actions[i].name) == 0 && strcmp(rq->method, "POST") == 0) {
                        do_action(s, rq, o, &actions[i], resp);
                        return;
                }
        fake_resp_problem(resp, 404, "Not Found", "No such route.", rq->path);
}
