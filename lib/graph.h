/* SPDX-License-Identifier: MIT */
/*
 * graph: the state of one GDAP (granular delegated admin privileges)
 * relationship, from Microsoft Graph:
 *   GET {graph_url}/tenantRelationships/delegatedAdminRelationships/{id}
 * with an app-only token for scope https://graph.microsoft.com/.default
 * (v2 token endpoint, the account's own Entra app; application permission
 * DelegatedAdminRelationship.Read.All).  One client per partner account,
 * with its own token cache (a Partner Center client of the Graph
 * audience): a Graph token never goes to Partner Center, nor the reverse.
 * All I/O through lib/http.
 */
#pragma once

#include <stdbool.h>

#include "http.h"
#include "model.h"

struct graph_client;

struct graph_options {
        const char *login_url;       /* https://login.microsoftonline.com */
        const char *graph_url;       /* https://graph.microsoft.com/v1.0 */
        const char *tenant;          /* partner tenant (id or domain) */
        const char *client_id;
        const char *client_secret;   /* secret, copied */
        const char *ca_file;
};

int graph_client_new(struct http *h, const struct graph_options *opts, struct graph_client **ret);
struct graph_client *graph_client_free(struct graph_client *c);

struct graph_result {
        enum rel_state state;        /* REL_ACCEPTED (active), REL_PENDING, REL_ENDED,
                                      * REL_NOT_FOUND, REL_UNKNOWN (the check failed) */
        const char *status;          /* the relationship's status as sent (clean), if any */
        const char *tenant_id;       /* customer.tenantId, when valid */
        long http_status;
        const char *error;           /* one human line when state == REL_UNKNOWN */
        bool config_error;           /* the token endpoint refused the configuration */
};

typedef void (*graph_fn)(void *ud, int r, const struct graph_result *res);
/* id: the relationship id of the GDAP link (url_link_gdap_id), opaque. */
int graph_get_relationship(struct graph_client *c, const char *id, graph_fn cb, void *ud);

/* ---- pure helpers ---- */
/* What a delegatedAdminRelationship status means for its orders:
 * "active" REL_ACCEPTED; approvalPending, created, activating, approved
 * REL_PENDING; expired, terminated, terminationRequested, terminating and
 * anything else (unknownFutureValue, a status Graph adds later, NULL)
 * REL_ENDED: never processed. */
enum rel_state graph_classify_status(const char *status);
/* Classifies a Graph answer (any HTTP status): 200 with an object whose
 * "id" is id -> by its status; 404 -> REL_NOT_FOUND; else REL_UNKNOWN.
 * *ret_status / *ret_tenant (malloc'd, optional) get the status and the
 * customer's tenant id when present. */
enum rel_state graph_classify_relationship(long http_status, const char *body, size_t len,
                                           const char *id, char **ret_status, char **ret_tenant);
