/* SPDX-License-Identifier: MIT */
/*
 * partnercenter: Microsoft Entra token (client credentials, app-only) and
 * the Partner Center customer check that tells whether a customer accepted
 * the reseller relationship.  All I/O through lib/http.
 *
 * Assumptions the public documentation does not settle (404 vs 403 for a
 * pending tenant, the shape of links.next for customers) are collected in
 * partnercenter.c under "ASSUMPTIONS".
 */
#pragma once

#include <stdbool.h>

#include "http.h"
#include "model.h"

struct pc_client;

struct pc_options {
        const char *login_url;       /* https://login.microsoftonline.com */
        const char *api_url;         /* https://api.partnercenter.microsoft.com/v1 */
        const char *tenant;          /* partner tenant (id or domain) */
        const char *client_id;
        const char *client_secret;   /* secret, copied */
        const char *ca_file;
        int token_endpoint;          /* 1 (default) or 2 */
        /* Audience Microsoft Graph instead of Partner Center: the token is
         * asked for scope https://graph.microsoft.com/.default (v2
         * endpoint), and requests carry no Partner Center headers.  A
         * client has one audience and one token cache: a Graph token never
         * goes to Partner Center, nor the reverse. */
        bool graph;
};

int pc_client_new(struct http *h, const struct pc_options *opts, struct pc_client **ret);
struct pc_client *pc_client_free(struct pc_client *c);

struct pc_check_result {
        enum rel_state state;        /* REL_UNKNOWN when the check failed */
        const char *tenant_id;       /* the customer's tenant id when found */
        const char *relationship;    /* relationshipToPartner as sent, if any */
        long status;                 /* last HTTP status */
        const char *error;           /* one human line when state == REL_UNKNOWN */
        bool config_error;           /* invalid_client / invalid_grant: fix the config */
};

/* By tenant id when given, else by the Domain filter (exact,
 * case-insensitive match on the client side, following links.next). */
typedef void (*pc_check_fn)(void *ud, int r, const struct pc_check_result *res);
int pc_check_customer(struct pc_client *c, const char *tenant_id, const char *domain,
                      pc_check_fn cb, void *ud);

/* A GET of url with this client's token (refreshed once on a 401), for
 * lib/graph.  When r == 0 and resp != NULL, resp is the answer whatever
 * its status; otherwise err says why there is none (config: the token
 * endpoint refused the configuration). */
typedef void (*pc_get_fn)(void *ud, int r, const struct http_response *resp, const char *err,
                          bool config);
int pc_get(struct pc_client *c, const char *url, pc_get_fn cb, void *ud);

/* ---- pure helpers ---- */
/* Parses a token response (expires_in as string or integer). */
int pc_parse_token(const char *body, size_t len, char **ret_token, long *ret_expires_in);
/* Classifies a customer-by-id response. */
enum rel_state pc_classify_customer(long status, const char *body, size_t len,
                                    char **ret_tenant_id);
/* The percent-encoded Domain filter value:
 * {"Field":"Domain","Value":"<domain>","Operator":"starts_with"}.  NULL
 * for an invalid domain. */
char *pc_build_domain_filter(const char *domain);
/* Absolute URL of a relative links.next uri ("/customers?..." or
 * "/v1/customers?...") against api_url (".../v1").  NULL for anything but
 * a clean relative path. */
char *pc_next_url(const char *api_url, const char *uri);
