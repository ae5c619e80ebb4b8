/* SPDX-License-Identifier: MIT */
/*
 * graph: one GDAP relationship's state from Microsoft Graph (graph.h).
 * The token and the one-401-refresh come from lib/partnercenter's client
 * with the Graph audience (pc_options.graph); this module builds the URL
 * and reads the answer.
 */
#include "graph.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "apiutil.h"
#include "partnercenter.h"
#include "url.h"
#include "util.h"

/* ---- FACTS ------------------------------------------------------------
 * [DOC Graph delegatedAdminRelationship; partner-center-api.md 5.1]
 */
#define GRAPH_REL_PATH        "/tenantRelationships/delegatedAdminRelationships/"
#define GRAPH_STATUS_MAX      64
#define GRAPH_ID_MAX          128
/* Customers cannot reject a GDAP request; it waits, then expires [DOC dap-faq]. */
static const char *const graph_pending[] = { "approvalPending", "created", "activating", "approved", NULL };
#define GRAPH_ACTIVE          "active"
/* ---------------------------------------------------------------------- */

struct graph_client {
        struct pc_client *pc;      /* audience Graph: its own token cache */
        char *graph_url;           /* no trailing slash */
};

struct graph_req {
        graph_fn cb;
        void *ud;
        char *id;
};

int graph_client_new(struct http *h, const struct graph_options *opts, struct graph_client **ret) {
        bool plain;
        if (!h || !opts || !ret || !opts->graph_url ||
            url_check_endpoint(opts->graph_url, URL_ALLOW_HTTP, &plain, NULL) < 0)
                return -EINVAL;
        struct graph_client *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        struct pc_options po = {
                .login_url = opts->login_url,
                .api_url = opts->graph_url,
                .tenant = opts->tenant,
                .client_id = opts->client_id,
                .client_secret = opts->client_secret,
                .ca_file = opts->ca_file,
                .token_endpoint = 2,
                .graph = true,
        };
        size_t n = strlen(opts->graph_url);
        while (n > 0 && opts->graph_url[n - 1] == '/')
                n--;
        c->graph_url = strndup(opts->graph_url, n);
        int r = c->graph_url ? pc_client_new(h, &po, &c->pc) : -ENOMEM;
        if (r < 0) {
                graph_client_free(c);
                return r;
        }
        *ret = c;
        return 0;
}

struct graph_client *graph_client_free(struct graph_client *c) {
        if (!c)
                return NULL;
        pc_client_free(c->pc);
        free(c->graph_url);
        free(c);
        return NULL;
}

enum rel_state graph_classify_status(const char *status) {
        if (!status)
                return REL_ENDED;
        if (strcmp(status, GRAPH_ACTIVE) == 0)
                return REL_ACCEPTED;
        for (size_t i = 0; graph_pending[i]; i++)
                if (strcmp(status, graph_pending[i]) == 0)
                        return REL_PENDING;
        return REL_ENDED;
}

/* A printable token of at most max bytes, else NULL. */
static char *clean_token(const char *s, size_t max) {
        if (!s || !*s || strlen(s) > max)
                return NULL;
        for (const char *p = s; *p; p++)
                if ((unsigned char) *p <= ' ' || (unsigned char) *p >= 0x7f)
                        return NULL;
        return strdup(s);
}

enum rel_state graph_classify_relationship(long http_status, const char *body, size_t len,
                                           const char *id, char **ret_status, char **ret_tenant) {
        if (http_status == 404)
                return REL_NOT_FOUND;
        if (http_status != 200 || !body)
                return REL_UNKNOWN;
        json_t *j = json_loadb(body, len, 0, NULL);
        const char *got = api_json_str(j, "id");
        const char *status = api_json_str(j, "status");
        const char *tenant = api_json_str(api_json_obj(j, "customer"), "tenantId");
        enum rel_state st = REL_UNKNOWN;
        /* the answer must be about the relationship asked for */
        if (json_is_object(j) && got && id && strcasecmp(got, id) == 0) {
                st = graph_classify_status(status);
                if (ret_status)
                        *ret_status = clean_token(status, GRAPH_STATUS_MAX);
                if (ret_tenant && api_guid_valid(tenant))
                        *ret_tenant = util_ascii_lower(strdup(tenant));
        }
        json_decref(j);
        return st;
}

static void on_get(void *ud, int r, const struct http_response *resp, const char *err, bool config) {
        struct graph_req *q = ud;
        _cleanup_free_ char *status = NULL, *tenant = NULL, *desc = NULL, *msg = NULL;
        struct graph_result res = { .state = REL_UNKNOWN, .http_status = resp ? resp->status : 0 };

        if (r == 0 && resp)
                res.state = graph_classify_relationship(resp->status, resp->body, resp->body_len, q->id,
                                                        &status, &tenant);
        res.status = status;
        res.tenant_id = tenant;
        if (res.state == REL_UNKNOWN) {
                /* 403 (Authorization_RequestDenied): the app lacks the
                 * application permission DelegatedAdminRelationship.Read.All
                 * or its admin consent; a configuration error, the same for
                 * every relationship, not one customer's failure. */
                res.config_error = config || (r == 0 && resp && resp->status == 403);
                if (!err) {
                        desc = r == 0 && resp && resp->status == 200
                                       ? strdup("not a delegatedAdminRelationship of that id")
                                       : api_describe_error(r, resp);
                        err = desc;
                }
                if (asprintf(&msg, "GET " GRAPH_REL_PATH "%s: %s", q->id, err ? err : "request failed") < 0)
                        msg = NULL;
                res.error = msg ? msg : "Graph request failed";
                if (r == 0)
                        r = -EIO;
        }
        q->cb(q->ud, res.state == REL_UNKNOWN ? r : 0, &res);
        free(q->id);
        free(q);
}

int graph_get_relationship(struct graph_client *c, const char *id, graph_fn cb, void *ud) {
        if (!c || !cb || !id || !*id || strlen(id) > GRAPH_ID_MAX)
                return -EINVAL;
        for (const char *p = id; *p; p++)
                if (!(*p == '-' || (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
                      (*p >= 'A' && *p <= 'Z')))
                        return -EINVAL;   /* url_link_gdap_id()'s alphabet: nothing to escape */
        struct graph_req *q = calloc(1, sizeof(*q));
        _cleanup_free_ char *url = NULL;
        if (!q || !(q->id = strdup(id)) || asprintf(&url, "%s" GRAPH_REL_PATH "%s", c->graph_url, id) < 0) {
                if (q)
                        free(q->id);
                free(q);
                return -ENOMEM;
        }
        q->cb = cb;
        q->ud = ud;
        int r = pc_get(c->pc, url, on_get, q);
        if (r < 0) {
                free(q->id);
                free(q);
        }
        return r;
}
