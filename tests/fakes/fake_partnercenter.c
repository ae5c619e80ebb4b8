/* SPDX-License-Identifier: MIT */
/*
 * fakeplatform: the Entra ID token endpoint (v1 and v2 client credentials)
 * and the Partner Center customer routes under /v1.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fake.h"
#include "util.h"

#define PC_RESOURCE "https://api.partnercenter.microsoft.com"
#define PC_SCOPE    PC_RESOURCE "/.default"

/* Form value of key in an x-www-form-urlencoded body (malloc'd) or NULL. */
static char *form_get(const char *body, size_t len, const char *key) {
        size_t kl = strlen(key);
        const char *p = body, *end = body + len;

        while (p < end) {
                const char *amp = memchr(p, '&', (size_t) (end - p));
                const char *stop = amp ? amp : end;
                if ((size_t) (stop - p) > kl && strncmp(p, key, kl) == 0 && p[kl] == '=') {
                        char *raw = strndup(p + kl + 1, (size_t) (stop - p - (ptrdiff_t) kl - 1));
                        char *out;
                        if (!raw)
                                return NULL;
                        for (char *c = raw; *c; c++)
                                if (*c == '+')
                                        *c = ' ';
                        out = fake_url_decode(raw, strlen(raw));
                        free(raw);
                        return out;
                }
                p = stop + 1;
        }
        return NULL;
}

static void entra_error(struct fake_resp *resp, int status, const char *error, int code,
                        const char *message) {
        char trace[37], corr[37], now[UTIL_TIME_MAX], desc[512], uri[96];

        util_uuid4(trace);
        util_uuid4(corr);
        util_format_time(util_now_wall(), now);
        snprintf(desc, sizeof(desc), "AADSTS%d: %s\r\nTrace ID: %s\r\nCorrelation ID: %s\r\nTimestamp: %s",
                 code, message, trace, corr, now);
        snprintf(uri, sizeof(uri), "https://login.microsoftonline.com/error?code=%d", code);
        fake_resp_json(resp, status, json_pack("{s:s s:s s:[i] s:s s:s s:s s:s}",
                "error", error, "error_description", desc, "error_codes", code, "timestamp", now,
                "trace_id", trace, "correlation_id", corr, "error_uri", uri));
}

/* The partner account whose Entra tenant is the first path segment, -1
 * if none: each SoftwareOne regional entity is its own tenant with its
 * own app (partner-center-api.md 2, 3.2). */
static int path_account(struct fake_state *s, const struct fake_req *rq) {
        const char *tenant = rq->path + 1;
        size_t tl = strcspn(tenant, "/");
        for (size_t i = 0; i < s->n_accounts; i++)
                if (tl == strlen(s->accounts[i].tenant) && strncasecmp(tenant, s->accounts[i].tenant, tl) == 0)
                        return (int) i;
        return -1;
}

/* Returns false (and fills resp) when the form is not acceptable. */
static bool check_token_form(struct fake_state *s, struct fake_req *rq, struct fake_resp *resp, bool v2) {
        char *grant = form_get(rq->body, rq->body_len, "grant_type");
        char *id = form_get(rq->body, rq->body_len, "client_id");
        char *secret = form_get(rq->body, rq->body_len, "client_secret");
        char *aud = form_get(rq->body, rq->body_len, v2 ? "scope" : "resource");
        int ai = path_account(s, rq);
        const struct fake_account *a = ai >= 0 ? &s->accounts[ai] : NULL;
        bool ok = false;

        if (!a)
                entra_error(resp, 400, "invalid_request", 90002, "Tenant not found.");
        else if (!grant || strcmp(grant, "client_credentials") != 0)
                entra_error(resp, 400, "unsupported_grant_type", 70003,
                            "The app requested an unsupported grant type.");
        else if (!id || strcmp(id, a->client_id) != 0)
                /* an app is registered in its own partner tenant only */
                entra_error(resp, 400, "unauthorized_client", 700016,
                            "Application was not found in the directory.");
        else if (!secret || strcmp(secret, a->client_secret) != 0)
                entra_error(resp, 401, "invalid_client", 7000215, "Invalid client secret provided. "
                            "Ensure the secret being sent in the request is the client secret value, "
                            "not the client secret ID.");
        else if (!aud || strcmp(aud, v2 ? PC_SCOPE : PC_RESOURCE) != 0)
                entra_error(resp, 400, v2 ? "invalid_scope" : "invalid_resource", v2 ? 70011 : 500011,
                            "The resource principal was not found in the tenant.");
        else
                ok = true;
        free(grant);
        free(id);
        free(secret);
        free(aud);
        return ok;
}

void fake_pc_token(struct fake_state *s, struct fake_req *rq, struct fake_resp *resp, bool v2) {
        char *token, exp[24], on[24], nbf[24];
        int64_t now = util_now_wall();

        if (strcmp(rq->method, "POST") != 0) {
                entra_error(resp, 405, "invalid_request", 900561, "The endpoint only accepts POST requests.");
                return;
        }
        if (!check_token_form(s, rq, resp, v2))
                return;
        if (fake_token_issue(s, &token) < 0) {
                entra_error(resp, 500, "temporarily_unavailable", 90033, "Out of memory.");
                return;
        }
        s->tokens[s->n_tokens - 1].account = path_account(s, rq);
        if (v2) {
                fake_resp_json(resp, 200, json_pack("{s:s s:i s:i s:s}", "token_type", "Bearer",
                        "expires_in", s->expires_in, "ext_expires_in", s->expires_in, "access_token", token));
                return;
        }
        /* v1 sends its numbers as strings */
        snprintf(exp, sizeof(exp), "%d", s->expires_in);
        snprintf(on, sizeof(on), "%lld", (long long) (now + s->expires_in));
        snprintf(nbf, sizeof(nbf), "%lld", (long long) now);
        fake_resp_json(resp, 200, json_pack("{s:s s:s s:s s:s s:s s:s s:s}", "token_type", "Bearer",
                "expires_in", exp, "ext_expires_in", exp, "expires_on", on, "not_before", nbf,
                "resource", PC_RESOURCE, "access_token", token));
}

static json_t *link(const char *uri) {
        return json_pack("{s:s s:s s:[]}", "uri", uri, "method", "GET", "headers");
}

/* Customer resource (section 4.4 shape); list items are thinner. */
static json_t *customer_json(const struct fake_tenant *t, bool full) {
        char self[160], prof[200];
        json_t *c;

        snprintf(self, sizeof(self), "/customers/%s", t->id);
        snprintf(prof, sizeof(prof), "/customers/%s/profiles/company", t->id);
        c = json_pack("{s:s s:s s:{s:s s:s s:s s:{s:o} s:{s:s}} s:s s:{s:o} s:{s:s}}",
                "id", t->id, "commerceId", t->commerce_id,
                "companyProfile", "tenantId", t->id, "domain", t->domain, "companyName", t->name,
                        "links", "self", link(prof), "attributes", "objectType", "CustomerCompanyProfile",
                "relationshipToPartner", t->relationship,
                "links", "self", link(self),
                "attributes", "objectType", "Customer");
        if (c && full) {
                json_object_set_new(c, "allowDelegatedAccess", json_false());
                json_object_set_new(c, "billingProfile", json_pack("{s:s s:s s:{s:s s:s}}",
                        "id", t->commerce_id, "companyName", t->name,
                        "attributes", "etag", "1", "objectType", "CustomerBillingProfile"));
        }
        return c;
}

/* A refused look-up of a pending tenant: counts towards accept_after_checks. */
static void tenant_checked(struct fake_tenant *t) {
        t->checks++;
        if (t->accept_after_checks > 0 && t->checks >= t->accept_after_checks)
                t->accepted = true;     /* visible from the next look-up on */
}

/* Relationships are per partner tenant: a customer that accepted account
 * A is not a customer of account B, whose look-ups refuse it as for any
 * stranger (partner-center-api.md 3.2, 4.1; issue 11 part 3). */
static void get_customer(struct fake_state *s, int account, const char *id, struct fake_resp *resp) {
        struct fake_tenant *t = NULL;

        for (size_t i = 0; i < s->n_tenants; i++)      /* by id only, not domain */
                if (s->tenants[i].account == account && util_streq_ci(s->tenants[i].id, id))
                        t = &s->tenants[i];
        if (t && t->accepted) {
                fake_resp_json(resp, 200, customer_json(t, true));
                resp->echo_ms_ids = true;
                return;
        }
        if (t)
                tenant_checked(t);
        if (t && t->pending_status == 403)
                fake_resp_pc_error(resp, 403, 20002, "No relationship between caller and account.");
        else
                fake_resp_pc_error(resp, 404, 1000, "Not found");
}

static bool tenant_matches(const struct fake_tenant *t, const char *field, const char *value) {
        const char *v;

        if (!field)
                return true;
        v = strcmp(field, "Domain") == 0 ? t->domain : t->name;
        return strncasecmp(v, value, strlen(value)) == 0;
}

static const char *new_continuation(struct fake_state *s, size_t offset, size_t size,
                                    const char *field, const char *value) {
        struct fake_continuation *c;
        char tok[37];

        if (s->n_conts == FAKE_MAX_CONTINUATIONS) {     /* oldest goes stale */
                free(s->conts[0].token);
                free(s->conts[0].field);
                free(s->conts[0].value);
                memmove(&s->conts[0], &s->conts[1], (FAKE_MAX_CONTINUATIONS - 1) * sizeof(s->conts[0]));
                s->n_conts--;
        }
        util_uuid4(tok);
        c = &s->conts[s->n_conts++];
        *c = (struct fake_continuation) { strdup(tok), offset, size, util_strdup0(field),
                                          util_strdup0(value) };
        return c->token;
}

static void customers_page(struct fake_state *s, struct fake_req *rq, size_t offset, size_t size,
                           const char *field, const char *value, struct fake_resp *resp) {
        json_t *items = json_array(), *links;
        size_t seen = 0, more = 0;
        int account = fake_token_account(s, fake_bearer(rq->authorization));

        for (size_t i = 0; i < s->n_tenants; i++) {
                struct fake_tenant *t = &s->tenants[i];
                if (t->account != account || !t->accepted || !tenant_matches(t, field, value))
                        continue;       /* a pending tenant is not a customer yet */
                if (seen >= offset && seen < offset + size)
                        json_array_append_new(items, customer_json(t, false));
                else if (seen >= offset + size)
                        more++;
                seen++;
        }
        char self[512];
        snprintf(self, sizeof(self), "%s%s%s", rq->path, *rq->query ? "?" : "", rq->query);
        links = json_pack("{s:o}", "self", link(self));
        if (more) {
                char uri[64];
                snprintf(uri, sizeof(uri), "/customers?size=%zu&seekOperation=Next", size);
                json_object_set_new(links, "next", json_pack("{s:s s:s s:[{s:s s:s}]}", "uri", uri,
                        "method", "GET", "headers", "key", "MS-ContinuationToken",
                        "value", new_continuation(s, offset + size, size, field, value)));
        }
        fake_resp_json(resp, 200, json_pack("{s:I s:o s:o s:{s:s}}",
                "totalCount", (json_int_t) json_array_size(items), "items", items, "links", links,
                "attributes", "objectType", "Collection"));
        resp->echo_ms_ids = true;
}

static void list_customers(struct fake_state *s, struct fake_req *rq, struct fake_resp *resp) {
        const char *seek = fake_query_get(rq, "seekOperation");
        const char *size_s = fake_query_get(rq, "size"), *filter = fake_query_get(rq, "filter");
        const char *field = NULL, *value = NULL, *op;
        json_t *f = NULL;
        long size = size_s ? strtol(size_s, NULL, 10) : 0;

        if (seek) {
                for (size_t i = 0; rq->continuation && i < s->n_conts; i++)
                        if (strcmp(s->conts[i].token, rq->continuation) == 0) {
                                struct fake_continuation *c = &s->conts[i];
                                customers_page(s, rq, c->offset, c->size, c->field, c->value, resp);
                                return;
                        }
                fake_resp_pc_error(resp, 400, FAKE_PC_BAD_REQUEST_CODE,
                                   "The continuation token is missing, invalid or expired.");
                return;
        }
        if (filter) {
                f = json_loads(filter, 0, NULL);
                field = json_string_value(json_object_get(f, "Field"));
                value = json_string_value(json_object_get(f, "Value"));
                op = json_string_value(json_object_get(f, "Operator"));
                if (!field || !value || !op || strcmp(op, "starts_with") != 0 ||
                    (strcmp(field, "Domain") != 0 && strcmp(field, "CompanyName") != 0)) {
                        fake_resp_pc_error(resp, 400, FAKE_PC_BAD_REQUEST_CODE,
                                           "The filter is invalid: only Domain or CompanyName with "
                                           "the starts_with operator is supported.");
                        json_decref(f);
                        return;
                }
        }
        customers_page(s, rq, 0, size > 0 ? (size_t) size : FAKE_PC_DEFAULT_PAGE, field, value, resp);
        /* an exact domain search for a pending tenant is a check too */
        int account = fake_token_account(s, fake_bearer(rq->authorization));
        for (size_t i = 0; field && strcmp(field, "Domain") == 0 && i < s->n_tenants; i++)
                if (s->tenants[i].account == account && !s->tenants[i].accepted &&
                    util_streq_ci(s->tenants[i].domain, value))
                        tenant_checked(&s->tenants[i]);
        json_decref(f);
}

const char *fake_pc_route(const struct fake_req *rq) {
        if (strcmp(rq->path, "/v1/customers") == 0)
                return "customers";
        if (strncmp(rq->path, "/v1/customers/", 14) == 0 && !strchr(rq->path + 14, '/'))
                return "customer";
        return NULL;
}

void fake_pc_handle(struct fake_state *s, struct fake_req *rq, struct fake_resp *resp) {
        const char *route = fake_pc_route(rq);

        if (!fake_token_valid(s, fake_bearer(rq->authorization))) {
                fake_resp_pc_error(resp, 401, FAKE_PC_UNAUTHORIZED_CODE,
                                   "Unauthorized: the access token is missing, invalid or expired.");
                return;
        }
        if (!route || strcmp(rq->method, "GET") != 0) {
                fake_resp_pc_error(resp, 404, 1000, "Not found");
                return;
        }
        if (strcmp(route, "customers") == 0)
                list_customers(s, rq, resp);
        else if (strcmp(rq->path + 14, "relationshiprequests") == 0)
                /* needs App+User; every token here is app-only */
                fake_resp_pc_error(resp, 403, 1002, "Authorization Failed");
        else
                get_customer(s, fake_token_account(s, fake_bearer(rq->authorization)), rq->path + 14, resp);
}
