/* SPDX-License-Identifier: MIT */
#include "etcd.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "url.h"
#include "util.h"

#define ETCD_MAX_ENDPOINTS 16
#define ETCD_DEFAULT_TIMEOUT_MS 3000
#define ETCD_MAX_BODY (64u * 1024 * 1024)

struct etcd {
        struct http *http;
        char *endpoints[ETCD_MAX_ENDPOINTS];
        size_t n_endpoints;
        size_t current;
        char *ca_file, *cert_file, *key_file;
        long timeout_ms;
        size_t pending;
        bool dead;
};

enum call_kind { CALL_GRANT, CALL_KEEPALIVE, CALL_REVOKE, CALL_RANGE, CALL_TXN };

struct call {
        struct etcd *e;
        enum call_kind kind;
        const char *path;
        char *body;
        size_t endpoint;                /* index of the endpoint of this attempt */
        size_t attempts;
        etcd_done_fn cb;
        void *userdata;
};

static const char *const call_path[] = {
        [CALL_GRANT] = "/v3/lease/grant",
        [CALL_KEEPALIVE] = "/v3/lease/keepalive",
        [CALL_REVOKE] = "/v3/lease/revoke",
        [CALL_RANGE] = "/v3/kv/range",
        [CALL_TXN] = "/v3/kv/txn",
};

static void etcd_destroy(struct etcd *e) {
        for (size_t i = 0; i < e->n_endpoints; i++)
                free(e->endpoints[i]);
        free(e->ca_file);
        free(e->cert_file);
        free(e->key_file);
        free(e);
}

int etcd_new(struct http *h, const struct etcd_options *o, struct etcd **ret) {
        if (!h || !o || !o->endpoints || !o->endpoints[0] || !ret)
                return -EINVAL;
        struct etcd *e = calloc(1, sizeof(*e));
        if (!e)
                return -ENOMEM;
        e->http = h;
        e->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : ETCD_DEFAULT_TIMEOUT_MS;
        int r = -ENOMEM;
        for (const char *const *p = o->endpoints; *p; p++) {
                bool plaintext;
                if (e->n_endpoints == ETCD_MAX_ENDPOINTS || url_check_endpoint(*p, URL_ALLOW_HTTP | URL_STRICT, &plaintext, NULL) < 0) {
                        r = -EINVAL;
                        goto fail;
                }
                size_t n = strlen(*p);
                while (n > 0 && (*p)[n - 1] == '/')
                        n--;
                if (!(e->endpoints[e->n_endpoints] = strndup(*p, n)))
                        goto fail;
                e->n_endpoints++;
        }
        e->ca_file = util_strdup0(o->ca_file);
        e->cert_file = util_strdup0(o->cert_file);
        e->key_file = util_strdup0(o->key_file);
        if ((o->ca_file && !e->ca_file) || (o->cert_file && !e->cert_file) || (o->key_file && !e->key_file))
                goto fail;
        *ret = e;
        return 0;
fail:
        etcd_destroy(e);
        return r;
}

struct etcd *etcd_free(struct etcd *e) {
        if (!e)
                return NULL;
        e->dead = true;
        if (e->pending == 0)
                etcd_destroy(e);
        return NULL;
}

const char *etcd_current_endpoint(const struct etcd *e) {
        return e->endpoints[e->current];
}

/* ---- JSON helpers ------------------------------------------------------- */

static json_t *b64_json(const void *p, size_t n) {
        struct util_buf b;
        util_buf_init(&b, ETCD_MAX_BODY);
        if (util_buf_append_base64(&b, p, n) < 0 || util_buf_puts(&b, "") < 0) {
                util_buf_free(&b);
                return NULL;
        }
        json_t *s = json_string(b.data);
        util_buf_free(&b);
        return s;
}

/* The smallest key greater than every key starting with prefix ("\0":
 * the whole keyspace when prefix is all 0xff or empty). */
static json_t *prefix_end_json(const char *prefix) {
        size_t n = strlen(prefix);
        char *end = strndup(prefix, n);
        if (!end)
                return NULL;
        while (n > 0 && (unsigned char) end[n - 1] == 0xff)
                n--;
        json_t *j;
        if (n == 0)
                j = b64_json("", 1);
        else {
                end[n - 1] = (char) ((unsigned char) end[n - 1] + 1);
                j = b64_json(end, n);
        }
        free(end);
        return j;
}

static json_t *i64_json(int64_t v) {
        char buf[24];
        snprintf(buf, sizeof(buf), "%" PRId64, v);
        return json_string(buf);
}

/* An int64 the gateway sends as a string (or, leniently, a number); absent
 * is 0.  false on junk. */
static bool get_i64(const json_t *o, const char *name, int64_t *ret) {
        const json_t *v = json_object_get(o, name);
        *ret = 0;
        if (!v)
                return true;
        if (json_is_integer(v)) {
                *ret = json_integer_value(v);
                return true;
        }
        if (!json_is_string(v))
                return false;
        const char *s = json_string_value(v);
        char *end;
        errno = 0;
        long long x = strtoll(s, &end, 10);
        if (errno || end == s || *end)
                return false;
        *ret = x;
        return true;
}

static bool get_b64(const json_t *o, const char *name, char **ret, size_t *ret_len) {
        const json_t *v = json_object_get(o, name);
        if (!v) {
                *ret = strdup("");
                *ret_len = 0;
                return *ret != NULL;
        }
        return json_is_string(v) &&
               util_base64_decode(json_string_value(v), json_string_length(v), ret, ret_len) == 0;
}

/* ---- requests ----------------------------------------------------------- */

static void call_free(struct call *c) {
        if (!c)
                return;
        free(c->body);
        free(c);
}

static void on_http_done(void *userdata, int r, const struct http_response *resp);

static int call_send(struct call *c) {
        struct etcd *e = c->e;
        char url[1024];
        if ((size_t) snprintf(url, sizeof(url), "%s%s", e->endpoints[c->endpoint], c->path) >= sizeof(url))
                return -EINVAL;
        static const char *const headers[] = { "Content-Type: application/json", NULL };
        const struct http_request req = {
                .method = "POST",
                .url = url,
                .headers = headers,
                .body = c->body,
                .body_len = strlen(c->body),
                .idempotent = false,    /* endpoint failover is ours; no backoff on a lease clock */
                .ca_file = e->ca_file,
                .cert_file = e->cert_file,
                .key_file = e->key_file,
                .timeout_ms = e->timeout_ms,
                .label = "etcd",        /* partnerd_http_requests_total{api} */
        };
        c->attempts++;
        return http_submit(e->http, &req, on_http_done, c);
}

/* Takes ownership of body (a JSON object). */
static int call_start(struct etcd *e, enum call_kind kind, json_t *body, etcd_done_fn cb, void *userdata) {
        if (!body)
                return -ENOMEM;
        if (e->dead) {
                json_decref(body);
                return -ESHUTDOWN;
        }
        struct call *c = calloc(1, sizeof(*c));
        if (!c) {
                json_decref(body);
                return -ENOMEM;
        }
        *c = (struct call) { .e = e, .kind = kind, .path = call_path[kind],
                             .body = json_dumps(body, JSON_COMPACT), .endpoint = e->current,
                             .cb = cb, .userdata = userdata };
        json_decref(body);
        if (!c->body) {
                call_free(c);
                return -ENOMEM;
        }
        int r = call_send(c);
        if (r < 0) {
                call_free(c);
                return r;
        }
        e->pending++;
        return 0;
}

static bool resendable(const struct call *c, int r) {
        if (c->attempts >= c->e->n_endpoints || c->e->dead || r == -ECANCELED || r == -EFBIG)
                return false;
        if (r == -ECONNREFUSED || r == -EHOSTUNREACH)
                return true;        /* never reached a server */
        return c->kind == CALL_RANGE || c->kind == CALL_KEEPALIVE || c->kind == CALL_REVOKE;
}

static void kvs_free(struct etcd_kv *kvs, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(kvs[i].key);
                free(kvs[i].value);
        }
        free(kvs);
}

/* Appends the kvs array of a RangeResponse object to res. */
static int parse_kvs(const json_t *rr, struct etcd_result *res) {
        const json_t *kvs = json_object_get(rr, "kvs");
        if (!kvs)
                return 0;
        if (!json_is_array(kvs))
                return -EBADMSG;
        size_t n = json_array_size(kvs);
        struct etcd_kv *a = realloc(res->kvs, (res->n_kvs + n + 1) * sizeof(*a));
        if (!a)
                return -ENOMEM;
        res->kvs = a;
        for (size_t i = 0; i < n; i++) {
                const json_t *kv = json_array_get(kvs, i);
                struct etcd_kv *k = &res->kvs[res->n_kvs];
                *k = (struct etcd_kv) { 0 };
                if (!json_is_object(kv))
                        return -EBADMSG;
                if (!get_b64(kv, "key", &k->key, &k->key_len))
                        return -EBADMSG;
                res->n_kvs++;   /* owned from here, even if the rest fails */
                if (!get_b64(kv, "value", &k->value, &k->value_len) ||
                    !get_i64(kv, "create_revision", &k->create_revision) ||
                    !get_i64(kv, "mod_revision", &k->mod_revision) ||
                    !get_i64(kv, "version", &k->version) || !get_i64(kv, "lease", &k->lease))
                        return -EBADMSG;
        }
        return 0;
}

static int parse_txn(const json_t *o, struct etcd_result *res) {
        const json_t *s = json_object_get(o, "succeeded");
        if (s && !json_is_boolean(s))
                return -EBADMSG;
        res->succeeded = json_is_true(s);     /* absent means false */
        const json_t *responses = json_object_get(o, "responses");
        if (responses && !json_is_array(responses))
                return -EBADMSG;
        size_t i;
        const json_t *one;
        json_array_foreach(responses, i, one) {
                const json_t *rr = json_object_get(one, "response_range");
                int r = rr ? parse_kvs(rr, res) : 0;
                if (r < 0)
                        return r;
        }
        return 0;
}

static int parse_answer(enum call_kind kind, const char *text, size_t len, struct etcd_result *res) {
        json_t *root = json_loadb(text, len, 0, NULL);
        int r = -EBADMSG;
        if (!json_is_object(root))
                goto out;
        json_t *o = root;
        if (kind == CALL_KEEPALIVE && !json_is_object(o = json_object_get(root, "result")))
                goto out;
        if (!get_i64(json_object_get(o, "header"), "revision", &res->revision) ||
            !get_i64(o, "ID", &res->lease_id) || !get_i64(o, "TTL", &res->ttl) ||
            !get_i64(o, "count", &res->count))
                goto out;
        switch (kind) {
        case CALL_GRANT:
                r = res->lease_id != 0 && res->ttl > 0 ? 0 : -EBADMSG;
                break;
        case CALL_KEEPALIVE:
                r = res->ttl > 0 ? 0 : -ENOENT;
                break;
        case CALL_RANGE:
                r = parse_kvs(o, res);
                break;
        case CALL_TXN:
                r = parse_txn(o, res);
                break;
        case CALL_REVOKE:
                r = 0;
                break;
        }
out:
        json_decref(root);
        return r;
}

static void on_http_done(void *userdata, int r, const struct http_response *resp) {
        struct call *c = userdata;
        struct etcd *e = c->e;
        struct etcd_result res = { 0 };

        /* A member without quorum answers 503/504 (gRPC Unavailable,
         * DeadlineExceeded): as for a dead one, move on to the next. */
        int failure = r < 0 ? r : resp->status >= 500 ? -EIO : 0;
        if (failure < 0 && !e->dead && failure != -ECANCELED) {
                if (c->endpoint == e->current)
                        e->current = (e->current + 1) % e->n_endpoints;
                if (resendable(c, failure)) {
                        c->endpoint = e->current;
                        if (call_send(c) == 0)
                                return;
                }
        }
        if (e->dead)
                r = -ECANCELED;
        else if (r == 0)
                r = resp->status == 200 ? parse_answer(c->kind, resp->body, resp->body_len, &res) : -EIO;
        c->cb(c->userdata, r, r == 0 ? &res : NULL);
        kvs_free(res.kvs, res.n_kvs);
        call_free(c);
        if (--e->pending == 0 && e->dead)
                etcd_destroy(e);
}

/* ---- the calls ---------------------------------------------------------- */

int etcd_lease_grant(struct etcd *e, int64_t ttl_sec, etcd_done_fn cb, void *userdata) {
        if (!e || !cb || ttl_sec <= 0)
                return -EINVAL;
        return call_start(e, CALL_GRANT, json_pack("{s:I}", "TTL", (json_int_t) ttl_sec), cb, userdata);
}

static int lease_call(struct etcd *e, enum call_kind kind, int64_t id, etcd_done_fn cb, void *userdata) {
        if (!e || !cb || id == 0)
                return -EINVAL;
        return call_start(e, kind, json_pack("{s:o}", "ID", i64_json(id)), cb, userdata);
}

int etcd_lease_keepalive(struct etcd *e, int64_t lease_id, etcd_done_fn cb, void *userdata) {
        return lease_call(e, CALL_KEEPALIVE, lease_id, cb, userdata);
}

int etcd_lease_revoke(struct etcd *e, int64_t lease_id, etcd_done_fn cb, void *userdata) {
        return lease_call(e, CALL_REVOKE, lease_id, cb, userdata);
}

/* A RangeRequest / DeleteRangeRequest body for key (prefix: and range_end). */
static json_t *range_json(const char *key, bool prefix) {
        json_t *o = json_object();
        json_t *k = b64_json(key, strlen(key));
        json_t *end = prefix ? prefix_end_json(key) : NULL;
        if (!o || !k || (prefix && !end) || json_object_set_new(o, "key", k) < 0 ||
            (end && json_object_set_new(o, "range_end", end) < 0)) {
                json_decref(o);
                return NULL;
        }
        return o;
}

int etcd_range(struct etcd *e, const char *key, bool prefix, etcd_done_fn cb, void *userdata) {
        if (!e || !key || !*key || !cb)
                return -EINVAL;
        return call_start(e, CALL_RANGE, range_json(key, prefix), cb, userdata);
}

int etcd_count(struct etcd *e, const char *key, bool prefix, etcd_done_fn cb, void *userdata) {
        if (!e || !key || !*key || !cb)
                return -EINVAL;
        json_t *body = range_json(key, prefix);
        if (body && json_object_set_new(body, "count_only", json_true()) < 0) {
                json_decref(body);
                body = NULL;
        }
        return call_start(e, CALL_RANGE, body, cb, userdata);
}

static json_t *compare_json(const struct etcd_compare *c) {
        static const char *const target[] = { "CREATE", "MOD", "VERSION" };
        static const char *const field[] = { "create_revision", "mod_revision", "version" };
        if (!c->key || !*c->key || (unsigned) c->target > ETCD_TARGET_VERSION)
                return NULL;
        return json_pack("{s:s, s:s, s:o, s:o}", "result", "EQUAL", "target", target[c->target],
                         "key", b64_json(c->key, strlen(c->key)), field[c->target], i64_json(c->value));
}

static json_t *op_json(const struct etcd_op *op) {
        if (!op->key || !*op->key)
                return NULL;
        switch (op->type) {
        case ETCD_OP_PUT: {
                json_t *put = json_pack("{s:o, s:o}", "key", b64_json(op->key, strlen(op->key)),
                                        "value", b64_json(op->value ? op->value : "", op->value_len));
                if (put && op->lease && json_object_set_new(put, "lease", i64_json(op->lease)) < 0) {
                        json_decref(put);
                        return NULL;
                }
                return put ? json_pack("{s:o}", "request_put", put) : NULL;
        }
        case ETCD_OP_DELETE:
        case ETCD_OP_RANGE: {
                json_t *rr = range_json(op->key, op->prefix);
                const char *name = op->type == ETCD_OP_RANGE ? "request_range" : "request_delete_range";
                return rr ? json_pack("{s:o}", name, rr) : NULL;
        }
        }
        return NULL;
}

static json_t *ops_json(const struct etcd_op *ops, size_t n) {
        json_t *a = json_array();
        for (size_t i = 0; a && i < n; i++) {
                json_t *op = op_json(&ops[i]);
                if (!op || json_array_append_new(a, op) < 0) {
                        json_decref(a);
                        return NULL;
                }
        }
        return a;
}

int etcd_txn(struct etcd *e, const struct etcd_txn *t, etcd_done_fn cb, void *userdata) {
        if (!e || !t || !cb)
                return -EINVAL;
        json_t *cmp = json_array();
        for (size_t i = 0; cmp && i < t->n_compare; i++) {
                json_t *one = compare_json(&t->compare[i]);
                if (!one || json_array_append_new(cmp, one) < 0) {
                        json_decref(cmp);
                        return -EINVAL;
                }
        }
        json_t *body = json_pack("{s:o, s:o, s:o}", "compare", cmp, "success",
                                 ops_json(t->success, t->n_success), "failure",
                                 ops_json(t->failure, t->n_failure));
        return body ? call_start(e, CALL_TXN, body, cb, userdata) : -EINVAL;
}
