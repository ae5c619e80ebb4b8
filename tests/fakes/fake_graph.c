/* SPDX-License-Identifier: MIT */
/*
 * fakeplatform: Microsoft Graph, the one route partnerd reads:
 *   GET /v1.0/tenantRelationships/delegatedAdminRelationships/{id}
 * [DOC Graph "Get delegatedAdminRelationship"; partner-center-api.md 5.1].
 * Only a valid token of the Graph audience passes: a Partner Center token
 * is refused with Graph's 401 InvalidAuthenticationToken, as Graph checks
 * the token's audience [DOC Graph errors; Entra: one token per resource].
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake.h"
#include "util.h"

#define GRAPH_PREFIX "/v1.0/tenantRelationships/delegatedAdminRelationships/"
#define GRAPH_CONTEXT "https://graph.microsoft.com/v1.0/$metadata#tenantRelationships/" \
                      "delegatedAdminRelationships/$entity"
/* [A] the 404 code for an unknown relationship id is not documented for
 * this resource; Graph's generic one is used. */
#define GRAPH_NOT_FOUND_CODE "ResourceNotFound"

/* Graph's error shape: {"error": {"code", "message", "innerError": {...}}}
 * [DOC Graph errors]. */
void fake_graph_error(struct fake_resp *resp, int status, const char *code, const char *message) {
        char rid[37], now[UTIL_TIME_MAX];
        util_uuid4(rid);
        util_format_time(util_now_wall(), now);
        fake_resp_json(resp, status, json_pack("{s:{s:s s:s s:{s:s s:s s:s}}}", "error", "code", code,
                                               "message", message, "innerError", "date", now,
                                               "request-id", rid, "client-request-id", rid));
}

static json_t *time_or_null(int64_t t) {
        char buf[UTIL_TIME_MAX];
        return t ? json_string(util_format_time(t, buf)) : json_null();
}

json_t *fake_gdap_json(const struct fake_gdap *g) {
        /* delegatedAdminRelationship [DOC Graph resource type] */
        return json_pack("{s:s s:s s:s s:s s:{s:s s:s} s:{s:[{s:s}]} s:s s:s s:o s:o s:o s:o}",
                         "@odata.context", GRAPH_CONTEXT, "id", g->id, "displayName", g->display_name,
                         "duration", "P730D", "customer", "tenantId", g->tenant_id, "displayName",
                         g->customer_name, "accessDetails", "unifiedRoles", "roleDefinitionId",
                         "62e90394-69f5-4237-9190-012177145e10", "status", g->status,
                         "autoExtendDuration", "PT0S", "createdDateTime", time_or_null(g->created),
                         "lastModifiedDateTime", time_or_null(g->activated ? g->activated : g->created),
                         "activatedDateTime", time_or_null(g->activated),
                         "endDateTime", time_or_null(g->activated ? g->activated + 730 * 86400 : 0));
}

const char *fake_graph_route(const struct fake_req *rq) {
        const char *id = rq->path + strlen(GRAPH_PREFIX);
        if (strncmp(rq->path, GRAPH_PREFIX, strlen(GRAPH_PREFIX)) == 0 && *id && !strchr(id, '/'))
                return "gdap";
        return NULL;
}

/* A pending relationship becomes active after active_after_reads reads (the
 * N-th still shows it pending), as a customer approving it meanwhile. */
static void gdap_read(struct fake_gdap *g) {
        g->reads++;
        if (!g->active_after_reads || g->reads <= g->active_after_reads || strcmp(g->status, "active") == 0)
                return;
        if (strcmp(g->status, "approvalPending") != 0 && strcmp(g->status, "created") != 0 &&
            strcmp(g->status, "approved") != 0 && strcmp(g->status, "activating") != 0)
                return;   /* ended ones stay ended */
        char *a = strdup("active");
        if (a) {
                free(g->status);
                g->status = a;
                g->activated = util_now_wall();
        }
}

void fake_graph_handle(struct fake_state *s, struct fake_req *rq, struct fake_resp *resp) {
        const char *bearer = fake_bearer(rq->authorization);
        if (!bearer || fake_token_graph(s, bearer) != 1) {
                fake_graph_error(resp, 401, "InvalidAuthenticationToken",
                                 bearer ? "Access token validation failure. Invalid audience."
                                        : "Access token is empty.");
                return;
        }
        if (!fake_graph_route(rq)) {
                fake_graph_error(resp, 400, "BadRequest", "Resource not found for the segment.");
                return;
        }
        if (strcmp(rq->method, "GET") != 0) {
                fake_graph_error(resp, 405, "Request_BadRequest", "The HTTP method is not allowed.");
                return;
        }
        /* a partner tenant sees its own relationships only */
        struct fake_gdap *g = fake_gdap_find(s, rq->path + strlen(GRAPH_PREFIX));
        if (!g || g->account != fake_token_account(s, bearer)) {
                fake_graph_error(resp, 404, GRAPH_NOT_FOUND_CODE,
                                 "The requested delegatedAdminRelationship was not found.");
                return;
        }
        gdap_read(g);
        fake_resp_json(resp, 200, fake_gdap_json(g));
}
