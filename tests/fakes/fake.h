/* SPDX-License-Identifier: MIT */
/*
 * fakeplatform: a loopback stand-in for the SoftwareOne Marketplace orders
 * API, the Microsoft Entra token endpoint and Partner Center, plus control
 * routes for tests.  See tests/fakes/README.md for the scenario format.
 *
 * Threading: libmicrohttpd runs one thread per connection; every handler
 * takes fake_state.lock while it reads or changes the state and never
 * sleeps while holding it (latency and fault delays sleep outside).
 */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

/* ---- assumptions that are not public facts, in one place ([A]) ---- */
/* Hidden fulfillment parameter that carries the relationship URL. */
#define FAKE_URL_PARAM_EXTERNAL_ID "ResellerRelationshipUrl"
/* Status code/title of an action called from the wrong state. */
#define FAKE_TRANSITION_STATUS 409
#define FAKE_TRANSITION_TITLE "Order status transition not allowed"
/* Content type of problem-details bodies (ASP.NET default). */
#define FAKE_PROBLEM_CTYPE "application/problem+json"
/* Partner Center error code for a rejected continuation token / filter. */
#define FAKE_PC_BAD_REQUEST_CODE 400
/* Partner Center error code for a missing/expired bearer token. */
#define FAKE_PC_UNAUTHORIZED_CODE 800001
/* Default Partner Center customer page size when size is absent or 0. */
#define FAKE_PC_DEFAULT_PAGE 100

#define FAKE_MAX_BODY (1024 * 1024)
#define FAKE_MAX_TOKENS 1024
#define FAKE_MAX_CONTINUATIONS 256
#define FAKE_MAX_ACCOUNTS 16
/* partnerId of the "microsoft" account when the scenario gives none: the
 * example of Microsoft's docs (partner-center-api.md 3.1). */
#define FAKE_DEFAULT_PARTNER_ID "3b33e682-00c3-41ee-9dd2-a548adf56438"

/* A SoftwareOne partner account: its own Entra tenant, app and secret, and
 * its own customers.  Index 0 is the scenario's "microsoft" block. */
struct fake_account {
        char *name;             /* "default" for index 0 */
        char *tenant;
        char *client_id;
        char *client_secret;
        char *partner_id;       /* the partnerId its links carry */
};

/* One customer tenant's relationship with one partner account (a tenant
 * may appear once per account). */
struct fake_tenant {
        int account;            /* index into fake_state.accounts */
        char *id;
        char *domain;
        char *name;
        char *relationship;     /* relationshipToPartner once accepted */
        char *commerce_id;
        bool accepted;
        int accept_after_checks;        /* 0 = never automatically */
        int checks;
        int pending_status;     /* 404 (default) or 403 */
};

/* A GDAP (granular delegated admin) relationship of one partner account,
 * served by the Graph routes (fake_graph.c). */
struct fake_gdap {
        int account;            /* the partner account it belongs to */
        char *id;               /* "<guid>-<guid>", opaque */
        char *display_name;
        char *tenant_id;        /* customer.tenantId */
        char *customer_name;
        char *status;           /* delegatedAdminRelationshipStatus */
        int active_after_reads; /* 0 = never automatically */
        int reads;
        int64_t created;
        int64_t activated;      /* 0 = never */
};

struct fake_order {
        json_t *obj;            /* the order as the API returns it */
        int revision;           /* not in the schema: kept aside */
        bool template_raw;      /* x-fake-template-raw */
        bool resume_race;       /* realism: resumed by the platform before our first Process */
};

enum fake_fault_action {
        FAKE_FAULT_STATUS,
        FAKE_FAULT_RESET,
        FAKE_FAULT_STALL,
        FAKE_FAULT_TRUNCATE,
        FAKE_FAULT_OVERSIZE,
        FAKE_FAULT_DELAY,       /* only delay_ms, then normal handling */
        FAKE_FAULT_INJECT,      /* normal handling, then body (raw) is put first in "data" */
};

struct fake_fault {
        char *route;
        char *match;
        char *body;
        char *retry_after;
        char *set_status;       /* "A[,B...]": someone else moves the order first */
        int status;
        int times;
        int delay_ms;
        enum fake_fault_action action;
};

struct fake_token {
        char *token;
        uint64_t expires_mono_ms;
        int account;            /* the partner account it was issued to */
        bool graph;             /* audience Microsoft Graph (v2 scope), else Partner Center */
};

struct fake_continuation {
        char *token;
        size_t offset;
        size_t size;
        char *field;            /* NULL: no filter */
        char *value;
};

struct fake_state {
        pthread_mutex_t lock;
        atomic_bool stopping;
        uint64_t start_ms;
        int latency_ms;
        FILE *log_file;

        /* scenario */
        char *mp_token;
        char *mp_token_id;      /* "TKN-..." part, for audit.by */
        char *ms_tenant;
        char *client_id;
        char *client_secret;
        int expires_in;
        int64_t querying_fail_after;    /* seconds, 0 = off */
        struct fake_account accounts[FAKE_MAX_ACCOUNTS];
        size_t n_accounts;
        bool regional_partner_ids;      /* links carry their account's partnerId */
        bool realism;           /* "realism": the real services' known quirks (README) */
        json_t *templates;      /* object id -> text */
        json_t *buyers;         /* array */
        struct fake_tenant *tenants;
        size_t n_tenants;
        struct fake_order *orders;
        size_t n_orders;
        struct fake_gdap *gdap;
        size_t n_gdap;
        json_t *order_index;    /* object id -> integer index into orders */
        uint64_t orders_gen;    /* bumped by every order change */
        struct {                /* the last list's sorted matches (not owned) */
                char *key;      /* query without limit/offset */
                uint64_t gen;
                json_t **hits;
                size_t n;
        } list_cache;

        /* runtime */
        struct fake_token tokens[FAKE_MAX_TOKENS];
        size_t n_tokens;
        struct fake_continuation conts[FAKE_MAX_CONTINUATIONS];
        size_t n_conts;
        struct fake_fault *faults;
        size_t n_faults;
        json_t *log;            /* array of request records */
        long long seq;
};

/* One parsed request. */
struct fake_req {
        const char *method;
        char *path;             /* percent-decoded path */
        char *query;            /* raw query string, "" if none */
        char **segs;            /* decoded query segments, "k=v" or RQL */
        size_t n_segs;
        const char *body;
        size_t body_len;
        const char *authorization;
        const char *continuation;
        const char *ms_request_id;
        const char *ms_correlation_id;
        char *route;            /* route name for faults, set by dispatch */
};

struct fake_resp {
        int status;
        char *body;
        const char *ctype;
        char *retry_after;
        bool echo_ms_ids;
};

/* fake_state.c */
int fake_state_load(struct fake_state *s, const char *path, char **ret_err);
void fake_state_free(struct fake_state *s);
struct fake_tenant *fake_tenant_find(struct fake_state *s, const char *id_or_domain);
struct fake_order *fake_order_find(struct fake_state *s, const char *id);
int fake_token_issue(struct fake_state *s, char **ret_token);
bool fake_token_valid(struct fake_state *s, const char *token);
/* The account a valid token was issued to, -1 if none. */
int fake_token_account(struct fake_state *s, const char *token);
/* The audience of a valid token: 1 Graph, 0 Partner Center, -1 invalid. */
int fake_token_graph(struct fake_state *s, const char *token);
struct fake_gdap *fake_gdap_find(struct fake_state *s, const char *id);
int fake_account_find(struct fake_state *s, const char *name);
/* The tenant entry of id_or_domain for one account (-1: the first of any). */
struct fake_tenant *fake_tenant_find_for(struct fake_state *s, const char *id_or_domain, int account);
const char *fake_bearer(const char *authorization);
void fake_sleep_ms(struct fake_state *s, int ms);
/* bytes: response body bytes sent (the benchmark sums them). */
void fake_log_request(struct fake_state *s, const struct fake_req *rq, int status, uint64_t bytes);

/* fake_resp.c: response builders (all take ownership of json) */
void fake_resp_json(struct fake_resp *r, int status, json_t *json);
void fake_resp_text(struct fake_resp *r, int status, const char *ctype, const char *text);
void fake_resp_problem(struct fake_resp *r, int status, const char *title,
                       const char *detail, const char *instance);
void fake_resp_gateway(struct fake_resp *r, int status, const char *message);
void fake_resp_pc_error(struct fake_resp *r, int status, int code, const char *description);
void fake_resp_done(struct fake_resp *r);
const char *fake_query_get(const struct fake_req *rq, const char *key);
char *fake_url_decode(const char *s, size_t len);
void fake_strip_private(json_t *json);

/* fake_rql.c */
struct rql_node;
int rql_parse(const char *text, struct rql_node **ret, char **ret_err);
struct rql_node *rql_free(struct rql_node *n);
bool rql_match(const struct rql_node *n, json_t *obj);
/* Combines every RQL segment of the query (AND); NULL filter = all.
 * Returns -EINVAL with *ret_err set on a syntax error. */
int rql_from_query(const struct fake_req *rq, struct rql_node **ret, char **ret_err);
json_t *rql_lookup(json_t *obj, const char *dotted);
int rql_sort(json_t **items, size_t n, const char *order, char **ret_err);

/* fake_marketplace.c */
void fake_mp_handle(struct fake_state *s, struct fake_req *rq, struct fake_resp *resp);
const char *fake_mp_route(const struct fake_req *rq);
int fake_order_set_status(struct fake_state *s, struct fake_order *o, const char *status);

/* fake_partnercenter.c */
void fake_pc_token(struct fake_state *s, struct fake_req *rq, struct fake_resp *resp, bool v2);
void fake_pc_handle(struct fake_state *s, struct fake_req *rq, struct fake_resp *resp);
const char *fake_pc_route(const struct fake_req *rq);

/* fake_graph.c: Microsoft Graph, GET /v1.0/tenantRelationships/... */
void fake_graph_handle(struct fake_state *s, struct fake_req *rq, struct fake_resp *resp);
const char *fake_graph_route(const struct fake_req *rq);
void fake_graph_error(struct fake_resp *resp, int status, const char *code, const char *message);
json_t *fake_gdap_json(const struct fake_gdap *g);

/* fake_control.c */
void fake_control_handle(struct fake_state *s, struct fake_req *rq, struct fake_resp *resp);
/* Finds and consumes a fault for this request (copy in *ret). */
bool fake_fault_take(struct fake_state *s, const struct fake_req *rq, struct fake_fault *ret);
void fake_fault_clear(struct fake_fault *f);
/* set_status of a fault taken for rq: moves the order named in rq's path
 * (under the lock, before the request is handled). */
void fake_fault_move_order(struct fake_state *s, const struct fake_fault *f, const struct fake_req *rq);
