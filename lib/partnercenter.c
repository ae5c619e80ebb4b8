/* SPDX-License-Identifier: MIT */
/*
 * partnercenter: app-only Entra token and the Partner Center customer check.
 *
 * Token: one cached token per client.  Checks that need a token while none
 * is valid queue behind ONE token request.  An Entra answer that means "the
 * configuration is wrong" (invalid_client, invalid_grant, ...) is
 * remembered: further checks fail at once with config_error set, without a
 * request, until PC_CONFIG_FAIL_COOLDOWN_MS has passed — a wrong secret must
 * not hammer the tenant's sign-in logs (and trip Entra's lockouts).
 *
 * Check: by tenant id (GET /customers/{id}) or, without one, by the Domain
 * filter (GET /customers?filter=...) with an exact case-insensitive match of
 * companyProfile.domain on our side, following links.next.
 */
#include "partnercenter.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "apiutil.h"
#include "log.h"
#include "secret.h"
#include "url.h"
#include "util.h"

/* ---- ASSUMPTIONS ------------------------------------------------------
 * What shared/reference/partner-center-api.md marks [ASSUMED], and our own
 * policy numbers.  One named constant each: a change is one line.
 */
/* Token audience (v1 resource / v2 scope) [DOC current auth page]. */
#define PC_RESOURCE             "https://api.partnercenter.microsoft.com"
#define PC_SCOPE_V2             "https://api.partnercenter.microsoft.com/.default"
/* Microsoft Graph: app-only tokens only through the v2 endpoint, for the
 * .default scope of Graph [DOC Graph auth; partner-center-api.md 5.1]. */
#define PC_GRAPH_SCOPE          "https://graph.microsoft.com/.default"
#define PC_GRAPH_REQUEST_ID     "client-request-id"
#define PC_TOKEN_PATH_V1        "/oauth2/token"
#define PC_TOKEN_PATH_V2        "/oauth2/v2.0/token"
/* When a token response omits expires_in, assume a short life [ASSUMED]. */
#define PC_TOKEN_DEFAULT_TTL_S  600
/* Refresh when less than this is left [DOC polling advice] ... */
#define PC_REFRESH_MARGIN_MS    (5 * 60 * 1000)
/* ... or at half-life for tokens shorter than twice the margin. */
#define PC_SHORT_TOKEN_MS       (2 * PC_REFRESH_MARGIN_MS)
/* Entra errors (400/401 from the token endpoint) that retrying cannot
 * fix: wrong secret, app or tenant, consent missing [DOC error response;
 * ASSUMED beyond invalid_client]. */
static const char *const pc_config_errors[] = {
        "invalid_client", "invalid_grant", "unauthorized_client", "invalid_request",
        "invalid_scope", "invalid_resource", "unsupported_grant_type", NULL,
};
/* How long a configuration failure blocks new token requests [policy]. */
#define PC_CONFIG_FAIL_COOLDOWN_MS (10 * 60 * 1000)
/* Headers [DOC headers]: MS-Contract-Version is harmless to send. */
#define PC_CONTRACT_VERSION     "v1"
#define PC_REQUEST_ID_HEADER    "MS-RequestId"
#define PC_CORRELATION_HEADER   "MS-CorrelationId"
/* relationshipToPartner value that means "accepted" [DOC]. */
#define PC_REL_RESELLER         "reseller"
/* By-id answers meaning "not (yet) a customer": 404 or 403 [ASSUMED:
 * undocumented for never-related tenants]. */
#define PC_PENDING_STATUS_A     404
#define PC_PENDING_STATUS_B     403
/* Domain search [DOC get-a-customer-by-name; ASSUMED links.next shape]. */
#define PC_SEARCH_PAGE_SIZE     100
#define PC_SEARCH_FIELD         "Domain"
#define PC_SEARCH_OPERATOR      "starts_with"
#define PC_MAX_PAGES            50
#define PC_MAX_NEXT_HEADERS     8
#define PC_API_VERSION_SEGMENT  "/v1"
/* Caps on remote data. */
#define PC_TOKEN_MAX            (16 * 1024)
#define PC_HEADER_VALUE_MAX     8192
#define PC_URI_MAX              4096
#define PC_TEXT_MAX             512
/* ---------------------------------------------------------------------- */

struct pc_check;
struct pc_client;

/* Outlives the client when it is freed with a token request in flight. */
struct pc_token_req {
        struct pc_client *c;
};

struct pc_client {
        struct http *h;
        uv_loop_t *loop;
        char *login_url;          /* no trailing slash */
        char *api_url;            /* ".../v1", no trailing slash */
        char *api_root;           /* api_url without the version segment */
        char *tenant;             /* percent-encoded for the path */
        char *client_id;
        char *client_secret;      /* secret */
        char *ca_file;
        int token_endpoint;
        bool graph;               /* audience Microsoft Graph (pc_options.graph) */

        char *auth_header;        /* "Authorization: Bearer ..." (secret) or NULL */
        uint64_t token_refresh_at;
        unsigned token_gen;
        bool token_inflight;
        struct pc_token_req *token_req;  /* the one token request in flight */
        struct pc_check *waiters, *waiters_tail;

        uint64_t fail_until;      /* configuration failure cool-down */
        char *fail_error;
        long fail_status;

        struct pc_check *checks;  /* every check in flight */
};

struct pc_check {
        struct pc_client *c;      /* NULL once the client is gone */
        struct pc_check *prev, *next, *wait_next;
        char *tenant_id;          /* asked by id when set */
        char *domain;             /* else by domain */
        pc_check_fn cb;
        pc_get_fn raw_cb;         /* pc_get(): the answer goes to the caller as is */
        void *ud;
        char correlation[37];
        unsigned gen_used;
        bool retried_401;
        int pages;
        char *url;
        char *path;               /* for error messages */
        char **next_headers;      /* "Name: value" continuation headers */
        size_t n_next_headers;
        uv_timer_t *defer;        /* immediate completion without I/O */

        struct pc_check_result res;
        int r;
        char *res_tenant, *res_rel, *res_err;
};

/* ======================================================================
 * Pure helpers
 * ====================================================================== */

static bool domain_valid(const char *d) {
        size_t n = d ? strlen(d) : 0;
        if (n == 0 || n > 253 || d[0] == '.' || d[0] == '-')
                return false;
        for (const char *p = d; *p; p++)
                if (!isalnum((unsigned char) *p) && *p != '-' && *p != '.')
                        return false;
        return true;
}

/* One clean line of at most max bytes: the first line of s, control
 * characters dropped. */
static char *first_line(const char *s, size_t max) {
        if (!s)
                return NULL;
        size_t n = strcspn(s, "\r\n");
        if (n > max)
                n = max;
        char *p = strndup(s, n);
        if (!p)
                return NULL;
        for (char *q = p; *q; q++)
                if ((unsigned char) *q < 0x20 || *q == 0x7f)
                        *q = ' ';
        return p;
}

int pc_parse_token(const char *body, size_t len, char **ret_token, long *ret_expires_in) {
        json_t *j = json_loadb(body, len, 0, NULL);
        const char *tok = api_json_str(j, "access_token");
        const char *type = api_json_str(j, "token_type");
        int r = -EBADMSG;
        if (!tok || !*tok || strlen(tok) > PC_TOKEN_MAX || util_has_ctl(tok, false) ||
            strchr(tok, ' ') || (type && strcasecmp(type, "Bearer") != 0))
                goto out;
        long exp = PC_TOKEN_DEFAULT_TTL_S;
        const json_t *e = json_is_object(j) ? json_object_get(j, "expires_in") : NULL;
        if (json_is_integer(e) && json_integer_value(e) > 0 && json_integer_value(e) < INT32_MAX)
                exp = (long) json_integer_value(e);
        else if (json_is_string(e)) {
                const char *s = json_string_value(e);
                char *end = NULL;
                errno = 0;
                long v = *s ? strtol(s, &end, 10) : 0;
                if (errno == 0 && end && *end == '\0' && v > 0 && v < INT32_MAX)
                        exp = v;
        }
        char *t = strdup(tok);
        r = -ENOMEM;
        if (!t)
                goto out;
        *ret_token = t;
        *ret_expires_in = exp;
        r = 0;
out:
        /* jansson's copy of the token is freed without a wipe: wipe it */
        if (tok)
                secret_wipe((char *) tok, strlen(tok));
        json_decref(j);
        return r;
}

/* by-id classification, also returning relationshipToPartner. */
static enum rel_state classify(long status, const char *body, size_t len, char **ret_tenant_id,
                               char **ret_rel) {
        if (ret_tenant_id)
                *ret_tenant_id = NULL;
        if (ret_rel)
                *ret_rel = NULL;
        if (status == PC_PENDING_STATUS_A || status == PC_PENDING_STATUS_B)
                return REL_PENDING;
        if (status != 200 || !body)
                return REL_UNKNOWN;
        json_t *j = json_loadb(body, len, 0, NULL);
        if (!json_is_object(j)) {
                json_decref(j);
                return REL_UNKNOWN;
        }
        const char *rel = api_json_str(j, "relationshipToPartner");
        const char *tid = api_json_str(j, "id");
        if (!api_guid_valid(tid))
                tid = api_json_str(api_json_obj(j, "companyProfile"), "tenantId");
        if (ret_tenant_id && api_guid_valid(tid)) {
                *ret_tenant_id = strdup(tid);
                if (*ret_tenant_id)
                        util_ascii_lower(*ret_tenant_id);
        }
        if (ret_rel && rel)
                *ret_rel = first_line(rel, 64);
        enum rel_state s = rel && strcasecmp(rel, PC_REL_RESELLER) == 0 ? REL_ACCEPTED : REL_PENDING;
        json_decref(j);
        return s;
}

enum rel_state pc_classify_customer(long status, const char *body, size_t len,
                                    char **ret_tenant_id) {
        return classify(status, body, len, ret_tenant_id, NULL);
}

char *pc_build_domain_filter(const char *domain) {
        if (!domain_valid(domain))
                return NULL;
        json_t *f = json_object();
        if (!f)
                return NULL;
        char *s = NULL, *esc = NULL;
        if (json_object_set_new(f, "Field", json_string(PC_SEARCH_FIELD)) < 0 ||
            json_object_set_new(f, "Value", json_string(domain)) < 0 ||
            json_object_set_new(f, "Operator", json_string(PC_SEARCH_OPERATOR)) < 0)
                goto out;
        s = json_dumps(f, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (s)
                esc = http_escape(s);
out:
        free(s);
        json_decref(f);
        return esc;
}

/* links.next.uri is relative and may lack the version segment. */
char *pc_next_url(const char *api_url, const char *uri) {
        if (!api_url || !uri || uri[0] != '/' || uri[1] == '/' || strlen(uri) > PC_URI_MAX ||
            util_has_ctl(uri, false) || strchr(uri, ' ') || strchr(uri, '\\') ||
            strstr(uri, "/../") || strstr(uri, "/./"))
                return NULL;
        size_t al = strlen(api_url);
        while (al > 0 && api_url[al - 1] == '/')
                al--;
        size_t vl = strlen(PC_API_VERSION_SEGMENT);
        size_t root = al >= vl && strncmp(api_url + al - vl, PC_API_VERSION_SEGMENT, vl) == 0
                      ? al - vl : al;
        bool has_version = strncmp(uri, PC_API_VERSION_SEGMENT, vl) == 0 &&
                           (uri[vl] == '/' || uri[vl] == '?' || uri[vl] == '\0');
        char *s = NULL;
        if (asprintf(&s, "%.*s%s", (int) (has_version ? root : al), api_url, uri) < 0)
                return NULL;
        return s;
}

static bool header_name_valid(const char *n) {
        static const char *const reserved[] = {
                "Authorization", "Host", "Content-Length", "Transfer-Encoding", "Cookie",
                "Connection", PC_REQUEST_ID_HEADER, PC_CORRELATION_HEADER, NULL,
        };
        size_t len = n ? strlen(n) : 0;
        if (len == 0 || len > 64)
                return false;
        for (const char *p = n; *p; p++)
                if (!isalnum((unsigned char) *p) && !strchr("!#$%&'*+-.^_`|~", *p))
                        return false;
        for (size_t i = 0; reserved[i]; i++)
                if (strcasecmp(n, reserved[i]) == 0)
                        return false;
        return true;
}

static bool header_value_valid(const char *v) {
        if (!v || strlen(v) > PC_HEADER_VALUE_MAX)
                return false;
        for (const unsigned char *p = (const unsigned char *) v; *p; p++)
                if (*p < 0x20 || *p > 0x7e)
                        return false;
        return true;
}

/* ======================================================================
 * Client
 * ====================================================================== */

static char *dup_trim_slash(const char *s) {
        if (!s || !*s)
                return NULL;
        size_t n = strlen(s);
        while (n > 0 && s[n - 1] == '/')
                n--;
        return n ? strndup(s, n) : NULL;
}

int pc_client_new(struct http *h, const struct pc_options *opts, struct pc_client **ret) {
        bool plain;
        if (!h || !opts || !ret || !opts->tenant || !*opts->tenant || !opts->client_id ||
            !*opts->client_id || !opts->client_secret || !*opts->client_secret ||
            !opts->login_url || !opts->api_url ||
            url_check_endpoint(opts->login_url, URL_ALLOW_HTTP, &plain, NULL) < 0 ||
            url_check_endpoint(opts->api_url, URL_ALLOW_HTTP, &plain, NULL) < 0 ||
            util_has_ctl(opts->login_url, false) || util_has_ctl(opts->api_url, false) ||
            (opts->token_endpoint != 0 && opts->token_endpoint != 1 && opts->token_endpoint != 2))
                return -EINVAL;
        struct pc_client *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->h = h;
        c->loop = http_get_loop(h);
        c->graph = opts->graph;
        /* a Graph token exists only on the v2 endpoint (scope, no resource) */
        c->token_endpoint = opts->token_endpoint == 2 || opts->graph ? 2 : 1;
        c->login_url = dup_trim_slash(opts->login_url);
        c->api_url = dup_trim_slash(opts->api_url);
        c->tenant = http_escape(opts->tenant);
        c->client_id = strdup(opts->client_id);
        c->client_secret = strdup(opts->client_secret);
        if (opts->ca_file)
                c->ca_file = strdup(opts->ca_file);
        if (c->api_url) {
                size_t al = strlen(c->api_url), vl = strlen(PC_API_VERSION_SEGMENT);
                if (al > vl && strcmp(c->api_url + al - vl, PC_API_VERSION_SEGMENT) == 0)
                        al -= vl;
                c->api_root = strndup(c->api_url, al);
        }
        if (!c->loop || !c->login_url || !c->api_url || !c->api_root || !c->tenant ||
            !c->client_id || !c->client_secret || (opts->ca_file && !c->ca_file)) {
                pc_client_free(c);
                return -ENOMEM;
        }
        *ret = c;
        return 0;
}

static void check_free(struct pc_check *k);

struct pc_client *pc_client_free(struct pc_client *c) {
        if (!c)
                return NULL;
        /* Checks in flight finish silently when http reports them; queued
         * ones (no request of their own) go now. */
        for (struct pc_check *k = c->checks; k; k = k->next)
                k->c = NULL;
        for (struct pc_check *k = c->waiters, *n; k; k = n) {
                n = k->wait_next;
                check_free(k);
        }
        if (c->token_req)
                c->token_req->c = NULL;
        free(c->login_url);
        free(c->api_url);
        free(c->api_root);
        free(c->tenant);
        free(c->client_id);
        secret_free(c->client_secret);
        free(c->ca_file);
        secret_free(c->auth_header);
        free(c->fail_error);
        free(c);
        return NULL;
}

/* ---- check bookkeeping ---- */

static void timer_close_cb(uv_handle_t *handle) {
        free(handle);
}

static void check_free(struct pc_check *k) {
        if (!k)
                return;
        if (k->c)
                API_LIST_UNLINK(k->c->checks, k);
        if (k->defer)
                uv_close((uv_handle_t *) k->defer, timer_close_cb);
        free(k->tenant_id);
        free(k->domain);
        free(k->url);
        free(k->path);
        for (size_t i = 0; i < k->n_next_headers; i++)
                free(k->next_headers[i]);
        free(k->next_headers);
        free(k->res_tenant);
        free(k->res_rel);
        free(k->res_err);
        free(k);
}

/* Calls the user's callback with the result gathered in k, then frees k. */
static void check_finish(struct pc_check *k) {
        if (k->c && k->raw_cb) {
                /* only failures get here: no answer to hand over */
                k->raw_cb(k->ud, k->r < 0 ? k->r : -EIO, NULL,
                          k->res_err ? k->res_err : "request failed", k->res.config_error);
        } else if (k->c) {
                k->res.tenant_id = k->res_tenant;
                k->res.relationship = k->res_rel;
                k->res.error = k->res.state == REL_UNKNOWN ? (k->res_err ? k->res_err
                                                                          : "check failed")
                                                           : NULL;
                if (k->res.state == REL_UNKNOWN && k->r >= 0)
                        k->r = -EIO;
                k->cb(k->ud, k->r, &k->res);
        }
        check_free(k);
}

/* Records a failure (REL_UNKNOWN); takes err. */
static void check_set_error(struct pc_check *k, int r, long status, char *err, bool config) {
        k->res.state = REL_UNKNOWN;
        k->res.status = status;
        k->res.config_error = config;
        k->r = r < 0 ? r : -EIO;
        free(k->res_err);
        k->res_err = err;
}

static void check_fail(struct pc_check *k, int r, long status, char *err, bool config) {
        check_set_error(k, r, status, err, config);
        check_finish(k);
}

static void defer_cb(uv_timer_t *t) {
        check_finish(t->data);
}

/* Completes k from the loop (never from inside pc_check_customer). */
static int check_finish_deferred(struct pc_check *k) {
        k->defer = malloc(sizeof(*k->defer));
        if (!k->defer)
                return -ENOMEM;
        uv_timer_init(k->c->loop, k->defer);
        k->defer->data = k;
        return uv_timer_start(k->defer, defer_cb, 0, 0) < 0 ? -EIO : 0;
}

/* ---- token ---- */

static int check_start(struct pc_client *c, struct pc_check *k);
static void api_done(void *userdata, int r, const struct http_response *resp);
static int api_send(struct pc_check *k);

static char *token_request_body(const struct pc_client *c) {
        _cleanup_free_ char *id = http_escape(c->client_id);
        char *secret = http_escape(c->client_secret);
        _cleanup_free_ char *aud = http_escape(c->graph ? PC_GRAPH_SCOPE
                                               : c->token_endpoint == 2 ? PC_SCOPE_V2 : PC_RESOURCE);
        char *body = NULL;
        if (id && secret && aud &&
            asprintf(&body, "grant_type=client_credentials&client_id=%s&client_secret=%s&%s=%s",
                     id, secret, c->token_endpoint == 2 ? "scope" : "resource", aud) < 0)
                body = NULL;
        secret_free(secret);
        return body;
}

static bool is_config_error(const char *error) {
        for (size_t i = 0; error && pc_config_errors[i]; i++)
                if (strcmp(error, pc_config_errors[i]) == 0)
                        return true;
        return false;
}

static const char *token_path(const struct pc_client *c) {
        return c->token_endpoint == 2 ? PC_TOKEN_PATH_V2 : PC_TOKEN_PATH_V1;
}

static void token_done(void *userdata, int r, const struct http_response *resp) {
        struct pc_token_req *t = userdata;
        struct pc_client *c = t->c;
        long status = resp ? resp->status : 0;
        _cleanup_free_ char *token = NULL, *err = NULL;
        bool config = false;
        long ttl = 0;

        free(t);
        if (!c)
                return;
        c->token_req = NULL;
        c->token_inflight = false;
        if (r == 0 && status == 200) {
                if (pc_parse_token(resp->body, resp->body_len, &token, &ttl) < 0 &&
                    asprintf(&err, "POST /%s%s: HTTP 200: no usable access_token", c->tenant,
                             token_path(c)) < 0)
                        err = NULL;
        } else {
                json_t *j = r == 0 ? json_loadb(resp->body, resp->body_len, 0, NULL) : NULL;
                const char *e = api_json_str(j, "error");
                _cleanup_free_ char *desc = first_line(api_json_str(j, "error_description"), PC_TEXT_MAX);
                _cleanup_free_ char *d = NULL;
                config = (status == 400 || status == 401) && is_config_error(e);
                if (e) {
                        _cleanup_free_ char *el = first_line(e, 64);
                        if (asprintf(&d, "HTTP %ld: %s%s%s", status, el, desc ? ": " : "",
                                     desc ? desc : "") < 0)
                                d = NULL;
                } else
                        d = api_describe_error(r, resp);
                json_decref(j);
                if (asprintf(&err, "POST /%s%s: %s", c->tenant, token_path(c),
                             d ? d : "token request failed") < 0)
                        err = NULL;
        }
        if (err) {    /* an echoing server: the registered secrets go */
                char *clean = secret_scrub_str(err);
                free(err);
                err = clean;
        }

        if (token) {
                secret_free(c->auth_header);
                c->auth_header = NULL;
                if (asprintf(&c->auth_header, "Authorization: Bearer %s", token) < 0 ||
                    secret_register(token, SECRET_TRANSIENT) < 0) {
                        secret_free(c->auth_header);
                        c->auth_header = NULL;
                }
                explicit_bzero(token, strlen(token));
                uint64_t life = (uint64_t) ttl * 1000;
                uint64_t now = util_now_mono_ms();
                c->token_refresh_at = now + (life > PC_SHORT_TOKEN_MS ? life - PC_REFRESH_MARGIN_MS
                                                                        : life / 2);
                c->token_gen++;
                if (!c->auth_header && !err)
                        err = strdup("out of memory");
        } else if (config) {
                c->fail_until = util_now_mono_ms() + PC_CONFIG_FAIL_COOLDOWN_MS;
                free(c->fail_error);
                c->fail_error = util_strdup0(err);
                c->fail_status = status;
        }

        /* Serve every queued check: send, or fail with the token error. */
        struct pc_check *w = c->waiters;
        c->waiters = c->waiters_tail = NULL;
        while (w) {
                struct pc_check *next = w->wait_next;
                w->wait_next = NULL;
                if (c->auth_header) {
                        int k = api_send(w);
                        if (k < 0)
                                check_fail(w, k, 0, strdup("cannot submit request"), false);
                } else
                        check_fail(w, r < 0 ? r : (config ? -EACCES : -EIO), status,
                                   util_strdup0(err), config);
                w = next;
        }
}

static int token_request(struct pc_client *c) {
        _cleanup_free_ char *url = NULL;
        if (asprintf(&url, "%s/%s%s", c->login_url, c->tenant, token_path(c)) < 0)
                return -ENOMEM;
        char *body = token_request_body(c);
        if (!body)
                return -ENOMEM;
        static const char *const headers[] = {
                "Content-Type: application/x-www-form-urlencoded",
                "Accept: application/json",
                NULL,
        };
        struct http_request req = {
                .method = "POST",
                .url = url,
                .headers = headers,
                .body = body,
                .body_len = strlen(body),
                /* issuing a token has no side effect: safe to retry */
                .idempotent = true,
                .ca_file = c->ca_file,
                .sensitive = true,      /* the answer is an access token */
                .label = "token",       /* partnerd_http_requests_total{api} */
        };
        struct pc_token_req *t = calloc(1, sizeof(*t));
        if (!t) {
                secret_free(body);
                return -ENOMEM;
        }
        t->c = c;
        int r = http_submit(c->h, &req, token_done, t);
        secret_free(body);
        if (r < 0) {
                free(t);
                return r;
        }
        c->token_req = t;
        c->token_inflight = true;
        return 0;
}

/* Sends k when a token is at hand, else queues it behind the one token
 * request.  < 0 only when nothing could be started (k untouched). */
static int with_token(struct pc_check *k) {
        struct pc_client *c = k->c;
        uint64_t now = util_now_mono_ms();

        if (c->auth_header && now < c->token_refresh_at)
                return api_send(k);
        if (c->fail_until > now && !c->token_inflight) {
                check_set_error(k, -EACCES, c->fail_status,
                                util_strdup0(c->fail_error ? c->fail_error : "token configuration error"),
                                true);
                return check_finish_deferred(k);
        }
        if (!c->token_inflight) {
                int r = token_request(c);
                if (r < 0)
                        return r;
        }
        if (c->waiters_tail)
                c->waiters_tail->wait_next = k;
        else
                c->waiters = k;
        c->waiters_tail = k;
        return 0;
}

/* ---- API calls ---- */

static int api_send(struct pc_check *k) {
        struct pc_client *c = k->c;
        char corr[64];
        const char *headers[8 + PC_MAX_NEXT_HEADERS];
        size_t n = 0;

        snprintf(corr, sizeof(corr), PC_CORRELATION_HEADER ": %s", k->correlation);
        headers[n++] = c->auth_header;
        headers[n++] = "Accept: application/json";
        if (!c->graph) {
                headers[n++] = corr;
                headers[n++] = "MS-Contract-Version: " PC_CONTRACT_VERSION;
        }
        for (size_t i = 0; i < k->n_next_headers && i < PC_MAX_NEXT_HEADERS; i++)
                headers[n++] = k->next_headers[i];
        headers[n] = NULL;

        struct http_request req = {
                .method = "GET",
                .url = k->url,
                .headers = headers,
                .idempotent = true,
                .ca_file = c->ca_file,
                .request_id_header = c->graph ? PC_GRAPH_REQUEST_ID : PC_REQUEST_ID_HEADER,
                .label = c->graph ? "graph" : "partnercenter",
        };
        k->gen_used = c->token_gen;
        return http_submit(c->h, &req, api_done, k);
}

static int set_url(struct pc_check *k, char *url) {
        free(k->url);
        free(k->path);
        k->url = url;
        k->path = url ? api_url_path(url) : NULL;
        return k->url && k->path ? 0 : -ENOMEM;
}

static char *api_error(const struct pc_check *k, const char *msg) {
        char *s = NULL;
        if (asprintf(&s, "GET %s: %s", k->path, msg) < 0)
                return NULL;
        return s;
}

/* Takes links.next from a page: its URL and header list.  1 when there is
 * a next page, 0 when not, < 0 on a malformed link. */
static int take_next(struct pc_check *k, const json_t *page) {
        const json_t *next = api_json_obj(api_json_obj(page, "links"), "next");
        if (!next)
                return 0;
        const char *uri = api_json_str(next, "uri");
        const char *method = api_json_str(next, "method");
        if (!uri || (method && strcasecmp(method, "GET") != 0))
                return -EBADMSG;
        for (size_t i = 0; i < k->n_next_headers; i++)
                free(k->next_headers[i]);
        k->n_next_headers = 0;
        const json_t *hs = json_object_get(next, "headers");
        if (hs && !json_is_array(hs) && !json_is_null(hs))
                return -EBADMSG;
        if (json_array_size(hs) > PC_MAX_NEXT_HEADERS)
                return -E2BIG;
        if (!k->next_headers && json_array_size(hs) > 0 &&
            !(k->next_headers = calloc(PC_MAX_NEXT_HEADERS, sizeof(char *))))
                return -ENOMEM;
        size_t i;
        const json_t *h;
        json_array_foreach(hs, i, h) {
                const char *name = api_json_str(h, "key");
                const char *value = api_json_str(h, "value");
                if (!header_name_valid(name) || !header_value_valid(value))
                        return -EBADMSG;
                if (asprintf(&k->next_headers[k->n_next_headers], "%s: %s", name, value) < 0)
                        return -ENOMEM;
                k->n_next_headers++;
        }
        char *url = pc_next_url(k->c->api_url, uri);
        if (!url)
                return -EBADMSG;
        int r = set_url(k, url);
        return r < 0 ? r : 1;
}

/* One page of the domain search: found, next page, or not found. */
static void search_page(struct pc_check *k, const struct http_response *resp) {
        json_t *j = json_loadb(resp->body, resp->body_len, 0, NULL);
        const json_t *items = json_is_object(j) ? json_object_get(j, "items") : NULL;
        if (!json_is_array(items)) {
                json_decref(j);
                check_fail(k, -EBADMSG, resp->status, api_error(k, "no \"items\" in the answer"),
                           false);
                return;
        }
        size_t i;
        const json_t *it;
        json_array_foreach(items, i, it) {
                const char *d = api_json_str(api_json_obj(it, "companyProfile"), "domain");
                if (!d || strcasecmp(d, k->domain) != 0)
                        continue;
                const char *rel = api_json_str(it, "relationshipToPartner");
                const char *tid = api_json_str(it, "id");
                if (!api_guid_valid(tid))
                        tid = api_json_str(api_json_obj(it, "companyProfile"), "tenantId");
                k->res.state = rel && strcasecmp(rel, PC_REL_RESELLER) == 0 ? REL_ACCEPTED
                                                                             : REL_PENDING;
                k->res.status = resp->status;
                k->res_rel = rel ? first_line(rel, 64) : NULL;
                k->res_tenant = api_guid_valid(tid) ? strdup(tid) : NULL;
                if (k->res_tenant)
                        util_ascii_lower(k->res_tenant);
                json_decref(j);
                check_finish(k);
                return;
        }
        int r = take_next(k, j);
        json_decref(j);
        if (r == 0) {
                k->res.state = REL_PENDING;    /* no such customer (yet) */
                k->res.status = resp->status;
                check_finish(k);
                return;
        }
        if (r < 0) {
                check_fail(k, r, resp->status, api_error(k, "malformed links.next"), false);
                return;
        }
        if (++k->pages >= PC_MAX_PAGES) {
                check_fail(k, -E2BIG, resp->status, api_error(k, "too many pages"), false);
                return;
        }
        k->retried_401 = false;
        r = with_token(k);
        if (r < 0)
                check_fail(k, r, 0, api_error(k, "cannot submit request"), false);
}

static void api_done(void *userdata, int r, const struct http_response *resp) {
        struct pc_check *k = userdata;
        if (!k->c) {
                check_free(k);
                return;
        }
        struct pc_client *c = k->c;
        long status = resp ? resp->status : 0;

        if (r == 0 && status == 401 && !k->retried_401) {
                /* refresh once (unless another check already did) and retry once */
                k->retried_401 = true;
                if (k->gen_used == c->token_gen) {
                        secret_free(c->auth_header);
                        c->auth_header = NULL;
                }
                int q = with_token(k);
                if (q < 0)
                        check_fail(k, q, status, api_error(k, "cannot submit request"), false);
                return;
        }
        if (k->raw_cb) {
                k->raw_cb(k->ud, r, resp, NULL, false);
                check_free(k);
                return;
        }
        bool by_id = k->tenant_id != NULL;
        bool ok = r == 0 && (status == 200 ||
                             (by_id && (status == PC_PENDING_STATUS_A || status == PC_PENDING_STATUS_B)));
        if (!ok) {
                _cleanup_free_ char *d = api_describe_error(r, resp);
                check_fail(k, r, status, api_error(k, d ? d : "request failed"), false);
                return;
        }
        if (!by_id) {
                search_page(k, resp);
                return;
        }
        k->res.state = classify(status, resp->body, resp->body_len, &k->res_tenant, &k->res_rel);
        k->res.status = status;
        if (k->res.state == REL_UNKNOWN) {
                check_fail(k, -EBADMSG, status, api_error(k, "invalid customer JSON"), false);
                return;
        }
        if (!k->res_tenant && status == 200)
                k->res_tenant = strdup(k->tenant_id);
        check_finish(k);
}

int pc_check_customer(struct pc_client *c, const char *tenant_id, const char *domain,
                      pc_check_fn cb, void *ud) {
        if (!c || !cb)
                return -EINVAL;
        bool by_id = tenant_id && *tenant_id;
        if (by_id ? !api_guid_valid(tenant_id) : !domain_valid(domain))
                return -EINVAL;
        struct pc_check *k = calloc(1, sizeof(*k));
        if (!k)
                return -ENOMEM;
        k->cb = cb;
        k->ud = ud;
        int r = util_uuid4(k->correlation);
        char *url = NULL;
        if (r < 0)
                goto fail;
        r = -ENOMEM;
        if (by_id) {
                k->tenant_id = strdup(tenant_id);
                _cleanup_free_ char *esc = k->tenant_id ? http_escape(util_ascii_lower(k->tenant_id))
                                                        : NULL;
                if (!esc || asprintf(&url, "%s/customers/%s", c->api_url, esc) < 0) {
                        url = NULL;
                        goto fail;
                }
        } else {
                k->domain = util_ascii_lower(strdup(domain));
                _cleanup_free_ char *filter = k->domain ? pc_build_domain_filter(k->domain) : NULL;
                if (!k->domain || !filter ||
                    asprintf(&url, "%s/customers?size=%d&filter=%s", c->api_url,
                             PC_SEARCH_PAGE_SIZE, filter) < 0) {
                        url = NULL;
                        goto fail;
                }
        }
        r = set_url(k, url);
        url = NULL;
        if (r < 0)
                goto fail;
        r = check_start(c, k);
        if (r < 0) {
                check_free(k);
                return r;
        }
        return 0;
fail:
        free(url);
        check_free(k);
        return r;
}

/* Links k into c's checks and sends it (or queues it behind the token). */
static int check_start(struct pc_client *c, struct pc_check *k) {
        k->c = c;
        k->next = c->checks;
        if (c->checks)
                c->checks->prev = k;
        c->checks = k;
        return with_token(k);
}

int pc_get(struct pc_client *c, const char *url, pc_get_fn cb, void *ud) {
        if (!c || !url || !cb)
                return -EINVAL;
        struct pc_check *k = calloc(1, sizeof(*k));
        if (!k)
                return -ENOMEM;
        k->raw_cb = cb;
        k->ud = ud;
        int r = util_uuid4(k->correlation);
        if (r >= 0)
                r = set_url(k, strdup(url));
        if (r >= 0)
                r = check_start(c, k);
        if (r < 0)
                check_free(k);
        return r < 0 ? r : 0;
}
