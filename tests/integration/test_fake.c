/* SPDX-License-Identifier: MIT */
/*
 * The fake platform as a product: starts build/fakeplatform through the
 * harness and checks each route against the behaviour of the real APIs
 * it models.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "harness.h"
#include "invariants.h"
#include "util.h"

#define MP_TOKEN "idt:TKN-0000-0001:fake-marketplace-secret"
#define AUTH_HDR "Authorization: Bearer " MP_TOKEN
#define ORDERS "/public/v1/commerce/orders"
#define TENANT_A "6f1c2a7e-0b8d-4c55-9e41-2d7f0a3b9c10"
#define TENANT_ADVISOR "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
#define TENANT_AUTO "7e6d5c4b-3a29-4817-9f6e-5d4c3b2a1f0e"
#define CLIENT_ID "5f0c5b2e-9a55-4f7e-8d3e-1c2b3a4d5e6f"
#define TOKEN_FORM "grant_type=client_credentials&client_id=" CLIENT_ID "&client_secret=fake-client-secret"
#define PC_RESOURCE "resource=https%3A%2F%2Fapi.partnercenter.microsoft.com"
#define PC_SCOPE "scope=https%3A%2F%2Fapi.partnercenter.microsoft.com%2F.default"

struct ctx {
        struct harness_fake fake;
        char *scenario;
        char *tmp;
};

static int setup_with(void **state, const char *const *extra) {
        struct ctx *c = calloc(1, sizeof(*c));

        assert_non_null(c);
        c->scenario = harness_src_path("tests/scenarios/basic.json");
        assert_int_equal(harness_fake_start_args(c->scenario, extra, &c->fake), 0);
        *state = c;
        return 0;
}

static int setup(void **state) {
        return setup_with(state, NULL);
}

static int teardown(void **state) {
        struct ctx *c = *state;
        /* 0 = clean exit (and, under a sanitizer or valgrind wrapper, no leaks) */
        int r = harness_fake_stop(&c->fake);

        harness_rmrf(c->tmp);
        free(c->tmp);
        free(c->scenario);
        free(c);
        assert_int_equal(r, 0);
        return 0;
}

/* Request with optional headers; returns parsed JSON (any) or NULL. */
static json_t *req(struct ctx *c, const char *method, const char *path, const char *const *hdrs,
                   const char *body, long *ret_status, char **ret_headers) {
        char url[2048], *resp = NULL;
        json_t *j;

        harness_fake_url(&c->fake, path, url, sizeof(url));
        assert_int_equal(harness_http(method, url, hdrs, body, ret_status, &resp, ret_headers), 0);
        /* realism (basic.json): Partner Center's JSON starts with a UTF-8
         * BOM, as the real service's does; every other API's never does */
        bool bom = strncmp(resp, "\xEF\xBB\xBF", 3) == 0;
        bool pc_json = strncmp(path, "/v1/", 4) == 0 && resp[bom ? 3 : 0] == '{';
        assert_true(bom == pc_json);
        j = json_loads(resp + (bom ? 3 : 0), JSON_DECODE_ANY, NULL);
        free(resp);
        return j;
}

static json_t *mp(struct ctx *c, const char *method, const char *path, long *ret_status) {
        static const char *const h[] = { AUTH_HDR, NULL };
        return req(c, method, path, h, strcmp(method, "POST") == 0 ? "{}" : NULL, ret_status, NULL);
}

static const char *str(json_t *j, const char *key) {
        return json_string_value(json_object_get(j, key));
}

static int total_of(json_t *page) {
        return (int) json_integer_value(json_object_get(json_object_get(json_object_get(page, "$meta"),
                                        "pagination"), "total"));
}

static void test_auth_enforced(void **state) {
        struct ctx *c = *state;
        static const char *const bad[] = { "Authorization: Bearer idt:TKN-0000-0001:wrong", NULL };
        long st = 0;
        json_t *j;

        j = req(c, "GET", ORDERS, NULL, NULL, &st, NULL);
        assert_int_equal(st, 401);
        assert_int_equal(json_integer_value(json_object_get(j, "statusCode")), 401);
        json_decref(j);
        j = req(c, "GET", ORDERS "/ORD-1001-0001-0001", bad, NULL, &st, NULL);
        assert_int_equal(st, 401);
        assert_int_equal(json_integer_value(json_object_get(j, "status")), 401);
        json_decref(j);
        j = harness_fake_log(&c->fake);
        assert_string_equal(str(json_array_get(j, 0), "authorization_kind"), "none");
        assert_string_equal(str(json_array_get(j, 1), "authorization_kind"), "bearer-bad");
        json_decref(j);
        j = req(c, "POST", ORDERS "/ORD-1001-0001-0001/process", NULL, "{}", &st, NULL);
        assert_int_equal(st, 401);
        json_decref(j);
        /* nothing moved */
        char *s = harness_fake_order_status(&c->fake, "ORD-1001-0001-0001");
        assert_string_equal(s, "Querying");
        free(s);
        j = mp(c, "GET", ORDERS, &st);
        assert_int_equal(st, 200);
        json_decref(j);
}

static int count_with(struct ctx *c, const char *query) {
        char path[1024];
        long st = 0;
        json_t *j;
        int n;

        snprintf(path, sizeof(path), ORDERS "?%s", query);
        j = mp(c, "GET", path, &st);
        assert_int_equal(st, 200);
        n = total_of(j);
        assert_int_equal((int) json_array_size(json_object_get(j, "data")), n < 10 ? n : 10);
        json_decref(j);
        return n;
}

static void test_rql_filters(void **state) {
        struct ctx *c = *state;
        long st = 0;
        json_t *j;

        assert_int_equal(count_with(c, ""), 5);
        assert_int_equal(count_with(c, "eq(status,Querying)"), 3);
        assert_int_equal(count_with(c, "eq(status,\"Querying\")"), 3);
        assert_int_equal(count_with(c, "eq(status,'querying')"), 3);
        assert_int_equal(count_with(c, "status=Querying"), 3);
        assert_int_equal(count_with(c, "ne(status,Querying)"), 2);
        assert_int_equal(count_with(c, "in(status,(Draft,Processing))"), 2);
        assert_int_equal(count_with(c, "out(status,(Draft,Processing))"), 3);
        assert_int_equal(count_with(c, "and(eq(status,Querying),eq(agreement.status,Provisioning))"), 3);
        assert_int_equal(count_with(c, "or(eq(status,Draft),eq(id,ORD-1001-0001-0003))"), 2);
        assert_int_equal(count_with(c, "not(eq(status,Querying))"), 2);
        assert_int_equal(count_with(c, "ilike(client.name,*contoso*)"), 2);
        assert_int_equal(count_with(c, "eq(product.id,%22PRD-1528-2110%22)&eq(status,Draft)"), 1);
        assert_int_equal(count_with(c, "gt(audit.created.at,2026-11-21T12:00:00.000Z)"), 3);
        assert_int_equal(count_with(c, "eq(product.id,PRD-0000-0000)"), 0);

        j = mp(c, "GET", ORDERS "?bogus(status,Querying)", &st);
        assert_int_equal(st, 400);
        assert_true(json_is_array(json_object_get(json_object_get(j, "errors"), "mistake")));
        json_decref(j);
        j = mp(c, "GET", ORDERS "?eq(status,Querying", &st);
        assert_int_equal(st, 400);
        json_decref(j);
        j = mp(c, "GET", ORDERS "?rql=eq(status,Querying)", &st);
        assert_int_equal(st, 400);
        json_decref(j);
}

static void check_order(struct ctx *c, const char *query, const char *first_id) {
        char path[512];
        long st = 0;
        json_t *j;

        snprintf(path, sizeof(path), ORDERS "?%s", query);
        j = mp(c, "GET", path, &st);
        assert_int_equal(st, 200);
        assert_string_equal(str(json_array_get(json_object_get(j, "data"), 0), "id"), first_id);
        json_decref(j);
}

/* Restarts the fake on a copy of basic.json changed by mod(). */
static void restart_modified(struct ctx *c, void (*mod)(json_t *sc)) {
        json_t *sc = json_load_file(c->scenario, 0, NULL);
        char path[512];

        assert_non_null(sc);
        mod(sc);
        if (!c->tmp)
                c->tmp = harness_tmpdir();
        assert_non_null(c->tmp);
        snprintf(path, sizeof(path), "%s/modified.json", c->tmp);
        assert_int_equal(json_dump_file(sc, path, 0), 0);
        json_decref(sc);
        assert_int_equal(harness_fake_stop(&c->fake), 0);
        assert_int_equal(harness_fake_start(path, &c->fake), 0);
}

static void add_130_orders(json_t *sc) {
        json_t *orders = json_object_get(sc, "orders");
        json_t *tmpl = json_deep_copy(json_array_get(orders, 2));
        char id[32];

        for (int i = 0; i < 130; i++) {
                json_t *o = json_deep_copy(tmpl);
                snprintf(id, sizeof(id), "ORD-9000-0000-%04d", i);
                json_object_set_new(o, "id", json_string(id));
                json_array_append_new(orders, o);
        }
        json_decref(tmpl);
}

/* A scenario with many orders: limit is capped at 100, offsets walk it. */
static void test_paging(void **state) {
        struct ctx *c = *state;
        long st = 0;
        json_t *j;

        restart_modified(c, add_130_orders);
        j = mp(c, "GET", ORDERS "?eq(status,Processing)&limit=500", &st);
        assert_int_equal(st, 200);
        assert_int_equal(json_integer_value(json_object_get(json_object_get(json_object_get(j, "$meta"),
                                            "pagination"), "limit")), 100);
        assert_int_equal(total_of(j), 131);
        assert_int_equal(json_array_size(json_object_get(j, "data")), 100);
        json_decref(j);
        j = mp(c, "GET", ORDERS "?limit=100&offset=100&eq(status,Processing)", &st);
        assert_int_equal(json_array_size(json_object_get(j, "data")), 31);
        assert_int_equal(json_integer_value(json_object_get(json_object_get(json_object_get(j, "$meta"),
                                            "pagination"), "offset")), 100);
        json_decref(j);
        j = mp(c, "GET", ORDERS, &st);
        assert_int_equal(json_array_size(json_object_get(j, "data")), 10);      /* default limit */
        assert_int_equal(total_of(j), 135);
        json_decref(j);
        j = mp(c, "GET", ORDERS "?limit=0", &st);
        assert_int_equal(json_array_size(json_object_get(j, "data")), 0);
        assert_int_equal(total_of(j), 135);
        json_decref(j);
        j = mp(c, "GET", ORDERS "?limit=-1", &st);
        assert_int_equal(st, 400);
        json_decref(j);
        check_order(c, "order=-id&limit=1", "ORD-9000-0000-0129");
        check_order(c, "order=+id&limit=1", "ORD-1001-0001-0001");
        check_order(c, "order=-audit.created.at,id&limit=1&ne(status,Processing)", "ORD-1001-0001-0004");
}

static bool in_omitted(json_t *meta, const char *name) {
        json_t *v;
        size_t i;

        json_array_foreach(json_object_get(meta, "omitted"), i, v)
                if (strcmp(json_string_value(v), name) == 0)
                        return true;
        return false;
}

static void test_select(void **state) {
        struct ctx *c = *state;
        long st = 0;
        json_t *j, *o;

        j = mp(c, "GET", ORDERS "?eq(id,ORD-1001-0001-0001)", &st);
        o = json_array_get(json_object_get(j, "data"), 0);
        assert_null(json_object_get(o, "parameters"));
        assert_null(json_object_get(o, "audit"));
        assert_non_null(json_object_get(o, "template"));
        assert_true(in_omitted(json_object_get(j, "$meta"), "parameters"));
        assert_true(in_omitted(json_object_get(j, "$meta"), "audit"));
        json_decref(j);

        j = mp(c, "GET", ORDERS "?eq(id,ORD-1001-0001-0001)&select=+parameters,+audit,-agreement.name", &st);
        o = json_array_get(json_object_get(j, "data"), 0);
        assert_true(json_is_array(json_object_get(json_object_get(o, "parameters"), "fulfillment")));
        assert_non_null(json_object_get(json_object_get(o, "audit"), "querying"));
        assert_null(json_object_get(json_object_get(o, "agreement"), "name"));
        assert_false(in_omitted(json_object_get(j, "$meta"), "parameters"));
        assert_false(in_omitted(json_object_get(j, "$meta"), "audit"));
        json_decref(j);

        j = mp(c, "GET", ORDERS "/ORD-1001-0001-0001", &st);
        assert_int_equal(st, 200);
        assert_non_null(json_object_get(j, "parameters"));
        assert_true(in_omitted(json_object_get(j, "$meta"), "lines"));
        assert_null(json_object_get(j, "revision"));    /* not in the schema */
        json_decref(j);
        j = mp(c, "GET", ORDERS "/ORD-1001-0001-0001?select=-parameters", &st);
        assert_null(json_object_get(j, "parameters"));
        json_decref(j);
        j = mp(c, "GET", ORDERS "/ORD-0000-0000-0000", &st);
        assert_int_equal(st, 404);
        assert_int_equal(json_integer_value(json_object_get(j, "status")), 404);
        json_decref(j);
}

static void test_template(void **state) {
        struct ctx *c = *state;
        static const char *const h[] = { AUTH_HDR, NULL };
        char url[512], *body = NULL, *hdrs = NULL;
        long st = 0;
        json_t *j;

        j = mp(c, "GET", ORDERS "/ORD-1001-0001-0001/template", &st);
        assert_int_equal(st, 200);
        assert_true(json_is_string(j));
        assert_non_null(strstr(json_string_value(j), "https://admin.cloud.microsoft/Adminportal/Home?"
                                "invType=ResellerRelationship&partnerId="));
        assert_non_null(strstr(json_string_value(j), "contoso.onmicrosoft.com"));
        assert_null(strstr(json_string_value(j), "{{"));
        json_decref(j);
        j = mp(c, "GET", ORDERS "/ORD-1001-0001-0002/template", &st);
        assert_null(strstr(json_string_value(j), "admin.microsoft.com"));
        json_decref(j);

        /* demo.json's second order is served raw, markdown-escaped */
        char *demo = harness_src_path("tests/scenarios/demo.json");
        harness_fake_stop(&c->fake);
        assert_int_equal(harness_fake_start(demo, &c->fake), 0);
        free(demo);
        harness_fake_url(&c->fake, ORDERS "/ORD-2001-0001-0002/template", url, sizeof(url));
        assert_int_equal(harness_http("GET", url, h, NULL, &st, &body, &hdrs), 0);
        assert_int_equal(st, 200);
        assert_non_null(strcasestr(hdrs, "Content-Type: text/markdown"));
        assert_int_not_equal(body[0], '"');
        assert_non_null(strstr(body, "invType=ResellerRelationship\\&partnerId="));
        free(body);
        free(hdrs);
        j = mp(c, "GET", ORDERS "/ORD-2001-0001-0001/template", &st);
        assert_non_null(strstr(json_string_value(j), "invType=ResellerRelationship&amp;partnerId="));
        json_decref(j);
}

/* realism (basic.json): the last Querying order with a link (Fabrikam's)
 * is resumed by the platform just before the first Process on it: that
 * POST gets the 409 of an illegal transition naming the new state, and the
 * order is Processing once, not twice. */
static void test_realism_process_race(void **state) {
        struct ctx *c = *state;
        long st = 0;
        json_t *j = mp(c, "GET", ORDERS "/ORD-1001-0001-0005", &st);
        assert_int_equal(st, 200);
        assert_string_equal(str(j, "status"), "Querying");
        json_decref(j);
        j = mp(c, "POST", ORDERS "/ORD-1001-0001-0005/process", &st);
        assert_int_equal(st, 409);
        assert_string_equal(str(j, "title"), "Order status transition not allowed");
        assert_non_null(strstr(str(j, "detail"), "is in status Processing"));
        json_decref(j);
        j = mp(c, "GET", ORDERS "/ORD-1001-0001-0005", &st);
        assert_string_equal(str(j, "status"), "Processing");
        json_decref(j);
}

static void test_process_state_machine(void **state) {
        struct ctx *c = *state;
        long st = 0;
        json_t *j;
        char *s;

        j = mp(c, "POST", ORDERS "/ORD-1001-0001-0001/process", &st);
        assert_int_equal(st, 200);
        assert_string_equal(str(j, "status"), "Processing");
        assert_non_null(json_object_get(json_object_get(j, "audit"), "processing"));
        json_decref(j);
        j = mp(c, "POST", ORDERS "/ORD-1001-0001-0001/process", &st);
        assert_int_equal(st, 409);
        assert_string_equal(str(j, "title"), "Order status transition not allowed");
        assert_non_null(strstr(str(j, "detail"), "is in status Processing"));
        assert_non_null(str(j, "traceId"));
        json_decref(j);
        /* the real danger: process on a Draft places the order */
        j = mp(c, "POST", ORDERS "/ORD-1001-0001-0004/process", &st);
        assert_int_equal(st, 200);
        assert_string_equal(str(j, "status"), "Processing");
        json_decref(j);
        j = mp(c, "POST", ORDERS "/ORD-1001-0001-0003/complete", &st);
        assert_int_equal(st, 200);
        json_decref(j);
        j = mp(c, "POST", ORDERS "/ORD-1001-0001-0003/process", &st);
        assert_int_equal(st, 409);
        assert_non_null(strstr(str(j, "detail"), "Completed"));
        json_decref(j);
        j = mp(c, "POST", ORDERS "/ORD-1001-0001-0004/query", &st);
        assert_int_equal(st, 200);
        json_decref(j);
        j = mp(c, "POST", ORDERS "/ORD-1001-0001-0004/fail", &st);
        assert_int_equal(st, 200);
        json_decref(j);
        j = mp(c, "POST", ORDERS "/ORD-0000-0000-0000/process", &st);
        assert_int_equal(st, 404);
        json_decref(j);

        /* someone else moves an order; revisions bump */
        j = req(c, "POST", "/_fake/orders/ORD-1001-0001-0005/status/Completed", NULL, "", &st, NULL);
        assert_int_equal(st, 200);
        assert_int_equal(json_integer_value(json_object_get(j, "revision")), 2);
        json_decref(j);
        s = harness_fake_order_status(&c->fake, "ORD-1001-0001-0005");
        assert_string_equal(s, "Completed");
        free(s);
        assert_int_equal(harness_fake_count(&c->fake, "POST", "/process"), 5);
}

static json_t *token(struct ctx *c, bool v2, const char *form, long *st) {
        static const char *const h[] = { "Content-Type: application/x-www-form-urlencoded", NULL };
        return req(c, "POST", v2 ? "/partner.onmicrosoft.com/oauth2/v2.0/token" :
                   "/partner.onmicrosoft.com/oauth2/token", h, form, st, NULL);
}

static void test_tokens(void **state) {
        struct ctx *c = *state;
        long st = 0;
        json_t *j;

        j = token(c, false, TOKEN_FORM "&" PC_RESOURCE, &st);
        assert_int_equal(st, 200);
        assert_string_equal(str(j, "expires_in"), "3600");
        assert_string_equal(str(j, "token_type"), "Bearer");
        assert_non_null(str(j, "access_token"));
        json_decref(j);
        j = token(c, true, TOKEN_FORM "&" PC_SCOPE, &st);
        assert_int_equal(st, 200);
        assert_true(json_is_integer(json_object_get(j, "expires_in")));
        assert_int_equal(json_integer_value(json_object_get(j, "expires_in")), 3600);
        json_decref(j);
        j = token(c, true, "grant_type=client_credentials&client_id=" CLIENT_ID
                  "&client_secret=nope&" PC_SCOPE, &st);
        assert_int_equal(st, 401);
        assert_string_equal(str(j, "error"), "invalid_client");
        assert_non_null(strstr(str(j, "error_description"), "AADSTS7000215"));
        assert_int_equal(json_integer_value(json_array_get(json_object_get(j, "error_codes"), 0)), 7000215);
        json_decref(j);
        j = token(c, false, TOKEN_FORM "&" PC_SCOPE, &st);     /* v1 needs resource */
        assert_int_equal(st, 400);
        json_decref(j);
}

/* "Authorization: Bearer <issued token>" in buf. */
static const char *pc_auth(struct ctx *c, char *buf, size_t n) {
        long st = 0;
        json_t *j = token(c, true, TOKEN_FORM "&" PC_SCOPE, &st);

        assert_int_equal(st, 200);
        snprintf(buf, n, "Authorization: Bearer %s", str(j, "access_token"));
        json_decref(j);
        return buf;
}

static void test_customer_accept(void **state) {
        struct ctx *c = *state;
        char auth[256];
        const char *h[] = { pc_auth(c, auth, sizeof(auth)), NULL };
        long st = 0;
        json_t *j;

        j = req(c, "GET", "/v1/customers/" TENANT_A, NULL, NULL, &st, NULL);
        assert_int_equal(st, 401);
        json_decref(j);
        j = req(c, "GET", "/v1/customers/" TENANT_A, h, NULL, &st, NULL);
        assert_int_equal(st, 404);
        assert_int_equal(json_integer_value(json_object_get(j, "code")), 1000);
        assert_string_equal(str(j, "source"), "PartnerFD");
        json_decref(j);
        assert_int_equal(harness_fake_accept(&c->fake, "contoso.onmicrosoft.com"), 0);
        assert_int_equal(harness_fake_accept(&c->fake, "nobody.example"), -ENOENT);
        j = req(c, "GET", "/v1/customers/" TENANT_A, h, NULL, &st, NULL);
        assert_int_equal(st, 200);
        assert_string_equal(str(j, "relationshipToPartner"), "reseller");
        assert_string_equal(str(json_object_get(j, "companyProfile"), "tenantId"), TENANT_A);
        json_decref(j);
        j = req(c, "GET", "/v1/customers/" TENANT_ADVISOR, h, NULL, &st, NULL);
        assert_int_equal(st, 200);
        assert_string_equal(str(j, "relationshipToPartner"), "advisor");
        json_decref(j);
        /* accept_after_checks: 2 (and a 403 knob): two refusals, then a customer */
        for (int i = 0; i < 2; i++) {
                j = req(c, "GET", "/v1/customers/" TENANT_AUTO, h, NULL, &st, NULL);
                assert_int_equal(st, 403);
                assert_int_equal(json_integer_value(json_object_get(j, "code")), 20002);
                json_decref(j);
        }
        j = req(c, "GET", "/v1/customers/" TENANT_AUTO, h, NULL, &st, NULL);
        assert_int_equal(st, 200);
        json_decref(j);
        j = req(c, "GET", "/_fake/tenants", NULL, NULL, &st, NULL);
        assert_int_equal(st, 200);
        assert_true(json_is_true(json_object_get(json_array_get(j, 0), "accepted")));
        assert_false(json_is_true(json_object_get(json_array_get(j, 1), "accepted")));
        assert_int_equal(json_integer_value(json_object_get(json_array_get(j, 4), "checks")), 2);
        json_decref(j);
}

static void auto_accept_fabrikam(json_t *sc) {
        json_object_set_new(json_array_get(json_object_get(sc, "tenants"), 1), "accept_after_checks",
                            json_integer(1));
}

/* An exact Domain search for a pending tenant counts as a check. */
static void test_accept_after_domain_search(void **state) {
        struct ctx *c = *state;
        static const char *const q = "/v1/customers?filter=%7B%22Field%22%3A%22Domain%22%2C%22Value%22%3A%22"
                                     "fabrikam.onmicrosoft.com%22%2C%22Operator%22%3A%22starts_with%22%7D";
        char auth[256];
        const char *h[2] = { NULL, NULL };
        long st = 0;
        json_t *j;

        restart_modified(c, auto_accept_fabrikam);
        h[0] = pc_auth(c, auth, sizeof(auth));
        j = req(c, "GET", q, h, NULL, &st, NULL);
        assert_int_equal(json_array_size(json_object_get(j, "items")), 0);
        json_decref(j);
        j = req(c, "GET", q, h, NULL, &st, NULL);
        assert_int_equal(json_array_size(json_object_get(j, "items")), 1);
        json_decref(j);
}

static void test_customer_list(void **state) {
        struct ctx *c = *state;
        char auth[256], cont[160], next[512];
        const char *h[] = { pc_auth(c, auth, sizeof(auth)), NULL, NULL };
        long st = 0;
        json_t *j, *n;

        j = req(c, "GET", "/v1/customers?size=1", h, NULL, &st, NULL);
        assert_int_equal(st, 200);
        assert_int_equal(json_integer_value(json_object_get(j, "totalCount")), 1);
        assert_string_equal(str(json_object_get(json_array_get(json_object_get(j, "items"), 0),
                                "companyProfile"), "domain"), "northwind.onmicrosoft.com");
        n = json_object_get(json_object_get(j, "links"), "next");
        assert_non_null(n);
        assert_string_equal(str(json_array_get(json_object_get(n, "headers"), 0), "key"), "MS-ContinuationToken");
        snprintf(cont, sizeof(cont), "MS-ContinuationToken: %s",
                 str(json_array_get(json_object_get(n, "headers"), 0), "value"));
        snprintf(next, sizeof(next), "/v1%s", str(n, "uri"));
        assert_non_null(strstr(next, "seekOperation=Next"));
        json_decref(j);

        j = req(c, "GET", next, h, NULL, &st, NULL);    /* header missing */
        assert_int_equal(st, 400);
        json_decref(j);
        h[1] = cont;
        j = req(c, "GET", next, h, NULL, &st, NULL);
        assert_int_equal(st, 200);
        assert_string_equal(str(json_object_get(json_array_get(json_object_get(j, "items"), 0),
                                "companyProfile"), "domain"), "adatum.onmicrosoft.com");
        assert_null(json_object_get(json_object_get(j, "links"), "next"));
        json_decref(j);
        h[1] = NULL;

        j = req(c, "GET", "/v1/customers?size=0&filter=%7B%22Field%22%3A%22Domain%22%2C%22Value%22%3A%22"
                "NORTHWIND%22%2C%22Operator%22%3A%22starts_with%22%7D", h, NULL, &st, NULL);
        assert_int_equal(st, 200);
        assert_int_equal(json_array_size(json_object_get(j, "items")), 1);
        json_decref(j);
        /* pending tenants are not customers yet */
        j = req(c, "GET", "/v1/customers?filter=%7B%22Field%22%3A%22Domain%22%2C%22Value%22%3A%22"
                "contoso.onmicrosoft.com%22%2C%22Operator%22%3A%22starts_with%22%7D", h, NULL, &st, NULL);
        assert_int_equal(json_array_size(json_object_get(j, "items")), 0);
        json_decref(j);
        j = req(c, "GET", "/v1/customers?filter=%7B%22Field%22%3A%22Domain%22%2C%22Value%22%3A%22"
                "x%22%2C%22Operator%22%3A%22equals%22%7D", h, NULL, &st, NULL);
        assert_int_equal(st, 400);
        assert_non_null(str(j, "description"));
        json_decref(j);
}

static json_t *log_entry(struct ctx *c, const char *path_sub) {
        json_t *log = harness_fake_log(&c->fake), *e, *found = NULL;
        size_t i;

        json_array_foreach(log, i, e)
                if (strstr(str(e, "path"), path_sub))
                        found = json_incref(e);
        json_decref(log);
        return found;
}

static void test_request_log(void **state) {
        struct ctx *c = *state;
        char auth[256];
        const char *h[] = { pc_auth(c, auth, sizeof(auth)), "MS-RequestId: 11111111-2222-4333-8444-555555555555",
                            "MS-CorrelationId: corr-1", "MS-ContinuationToken: stale", NULL };
        long st = 0;
        json_t *j, *e;

        j = req(c, "GET", "/v1/customers?size=5&seekOperation=Next", h, NULL, &st, NULL);
        assert_int_equal(st, 400);
        json_decref(j);
        e = log_entry(c, "/v1/customers");
        assert_non_null(e);
        assert_string_equal(str(e, "method"), "GET");
        assert_string_equal(str(e, "query"), "size=5&seekOperation=Next");
        assert_int_equal(json_integer_value(json_object_get(e, "status")), 400);
        assert_string_equal(str(e, "ms_request_id"), "11111111-2222-4333-8444-555555555555");
        assert_string_equal(str(e, "ms_correlation_id"), "corr-1");
        assert_string_equal(str(e, "authorization_kind"), "bearer-ok");
        assert_true(json_is_true(json_object_get(e, "continuation")));
        assert_true(json_integer_value(json_object_get(e, "seq")) >= 2);
        json_decref(e);
        j = req(c, "GET", ORDERS, NULL, NULL, &st, NULL);
        json_decref(j);
        e = log_entry(c, ORDERS);
        assert_string_equal(str(e, "authorization_kind"), "none");
        assert_true(json_is_null(json_object_get(e, "ms_request_id")));
        assert_false(json_is_true(json_object_get(e, "continuation")));
        json_decref(e);
        j = req(c, "POST", "/_fake/log/reset", NULL, "", &st, NULL);
        json_decref(j);
        assert_int_equal(harness_fake_count(&c->fake, NULL, NULL), 0);
}

/* The fake reuses a list's sorted matches from page to page; every order
 * change must still show on the next page, and the log counts the bytes. */
static void test_list_after_change(void **state) {
        struct ctx *c = *state;
        const char *q = ORDERS "?eq(status,Querying)&order=-audit.created.at&limit=1&offset=0";
        long st = 0;
        json_t *j, *log, *e;
        int before;
        size_t i, n_list = 0;

        j = mp(c, "GET", q, &st);
        assert_int_equal(st, 200);
        before = total_of(j);
        assert_true(before >= 2);
        json_decref(j);
        j = mp(c, "GET", ORDERS "?eq(status,Querying)&order=-audit.created.at&limit=1&offset=1", &st);
        assert_int_equal(total_of(j), before);
        json_decref(j);
        j = mp(c, "POST", ORDERS "/ORD-1001-0001-0001/process", &st);
        assert_int_equal(st, 200);
        json_decref(j);
        j = mp(c, "GET", q, &st);
        assert_int_equal(total_of(j), before - 1);
        json_decref(j);
        j = req(c, "POST", "/_fake/orders/ORD-1001-0001-0001/status/Querying", NULL, "", &st, NULL);
        assert_int_equal(st, 200);
        json_decref(j);
        j = mp(c, "GET", q, &st);
        assert_int_equal(total_of(j), before);
        json_decref(j);
        /* another sort order is another list */
        j = mp(c, "GET", ORDERS "?eq(status,Querying)&order=audit.created.at&limit=1", &st);
        assert_int_equal(total_of(j), before);
        json_decref(j);

        log = harness_fake_log(&c->fake);
        json_array_foreach(log, i, e)
                if (strcmp(str(e, "path"), ORDERS) == 0) {
                        assert_true(json_integer_value(json_object_get(e, "bytes")) > 100);
                        n_list++;
                }
        assert_int_equal(n_list, 5);
        json_decref(log);
}

static void test_fault_once(void **state) {
        struct ctx *c = *state;
        static const char *const h[] = { AUTH_HDR, NULL };
        char url[512], *body = NULL, *hdrs = NULL;
        long st = 0;

        assert_int_equal(harness_fake_fault(&c->fake, "{\"route\":\"order\",\"match\":\"0001-0003\","
                                            "\"status\":503,\"retry_after\":\"2\",\"times\":1}"), 0);
        assert_int_equal(harness_fake_fault(&c->fake, "{\"route\":\"order\",\"action\":\"bogus\"}"), -EINVAL);
        harness_fake_url(&c->fake, ORDERS "/ORD-1001-0001-0001", url, sizeof(url));
        assert_int_equal(harness_http("GET", url, h, NULL, &st, &body, NULL), 0);
        assert_int_equal(st, 200);      /* match does not apply */
        free(body);
        harness_fake_url(&c->fake, ORDERS "/ORD-1001-0001-0003", url, sizeof(url));
        assert_int_equal(harness_http("GET", url, h, NULL, &st, &body, &hdrs), 0);
        assert_int_equal(st, 503);
        assert_non_null(strcasestr(hdrs, "Retry-After: 2"));
        free(body);
        free(hdrs);
        assert_int_equal(harness_http("GET", url, h, NULL, &st, &body, NULL), 0);
        assert_int_equal(st, 200);
        free(body);
        /* reset drops the connection: curl reports an error */
        assert_int_equal(harness_fake_fault(&c->fake, "{\"route\":\"orders\",\"action\":\"reset\"}"), 0);
        harness_fake_url(&c->fake, ORDERS, url, sizeof(url));
        assert_int_not_equal(harness_http("GET", url, h, NULL, &st, &body, NULL), 0);
        assert_int_equal(harness_http("GET", url, h, NULL, &st, &body, NULL), 0);
        free(body);
}

/* set_status: the order of the faulted request is moved first, as the
 * control route would, and the request then sees it moved. */
static void test_fault_set_status(void **state) {
        struct ctx *c = *state;
        long st = 0;

        assert_int_equal(harness_fake_fault(&c->fake, "{\"route\":\"order\",\"set_status\":\"Bogus\"}"), -EINVAL);
        json_t *before = mp(c, "GET", ORDERS "/ORD-1001-0001-0001", &st);
        assert_int_equal(st, 200);
        const char *q0 = json_string_value(json_object_get(json_object_get(json_object_get(before, "audit"),
                                                                           "querying"), "at"));
        assert_non_null(q0);
        assert_int_equal(harness_fake_fault(&c->fake, "{\"route\":\"order\",\"match\":\"0001-0001\","
                                            "\"set_status\":\"processing,Querying\"}"), 0);
        json_t *after = mp(c, "GET", ORDERS "/ORD-1001-0001-0001", &st);
        assert_int_equal(st, 200);
        assert_string_equal(str(after, "status"), "Querying");
        /* a new episode: processed, then queried again */
        const char *q1 = json_string_value(json_object_get(json_object_get(json_object_get(after, "audit"),
                                                                           "querying"), "at"));
        assert_non_null(q1);
        assert_string_not_equal(q0, q1);
        assert_non_null(json_object_get(json_object_get(after, "audit"), "processing"));
        json_decref(before);
        json_decref(after);
        assert_int_equal(inv_fake_revision(&c->fake, "ORD-1001-0001-0001"), 3);
        /* once only */
        json_decref(mp(c, "GET", ORDERS "/ORD-1001-0001-0001", &st));
        assert_int_equal(inv_fake_revision(&c->fake, "ORD-1001-0001-0001"), 3);
}

static void *timed_get(void *arg) {
        struct ctx *c = arg;
        long st = 0;
        json_t *j = mp(c, "GET", ORDERS "/ORD-1001-0001-0001", &st);

        json_decref(j);
        return (void *) (intptr_t) st;
}

static int setup_latency(void **state) {
        static const char *const extra[] = { "--latency-ms", "300", NULL };
        return setup_with(state, extra);
}

static void test_latency_parallel(void **state) {
        struct ctx *c = *state;
        pthread_t t1, t2;
        void *r1, *r2;
        uint64_t start = util_now_mono_ms(), ms;

        assert_int_equal(pthread_create(&t1, NULL, timed_get, c), 0);
        assert_int_equal(pthread_create(&t2, NULL, timed_get, c), 0);
        pthread_join(t1, &r1);
        pthread_join(t2, &r2);
        ms = util_now_mono_ms() - start;
        assert_int_equal((intptr_t) r1, 200);
        assert_int_equal((intptr_t) r2, 200);
        assert_true(ms >= 300);
        assert_true(ms < 600);  /* serialised would be >= 600 */
}

static void fail_after_1d(json_t *sc) {
        json_object_set_new(sc, "querying_fail_after", json_string("1d"));
}

/* The platform fails orders left in Querying too long (scenario knob). */
static void test_querying_autofail(void **state) {
        struct ctx *c = *state;
        long st = 0;
        json_t *j;
        char *s;

        s = harness_fake_order_status(&c->fake, "ORD-1001-0001-0001");
        assert_string_equal(s, "Querying");
        free(s);
        restart_modified(c, fail_after_1d);     /* the scenario's querying.at is days old */
        j = mp(c, "GET", ORDERS "/ORD-1001-0001-0001", &st);
        assert_int_equal(st, 200);
        assert_string_equal(str(j, "status"), "Failed");
        assert_non_null(str(json_object_get(j, "statusNotes"), "message"));
        json_decref(j);
        s = harness_fake_order_status(&c->fake, "ORD-1001-0001-0003");
        assert_string_equal(s, "Processing");   /* only Querying orders */
        free(s);
}

static void expire_fast(json_t *sc) {
        json_object_set_new(json_object_get(sc, "microsoft"), "expires_in", json_integer(1));
}

static void test_token_expiry(void **state) {
        struct ctx *c = *state;
        char auth[256];
        const char *h[2] = { NULL, NULL };
        struct timespec ts = { .tv_sec = 1, .tv_nsec = 200 * 1000 * 1000 };
        long st = 0;
        json_t *j;

        restart_modified(c, expire_fast);
        h[0] = pc_auth(c, auth, sizeof(auth));
        j = req(c, "GET", "/v1/customers/" TENANT_A, h, NULL, &st, NULL);
        assert_int_equal(st, 404);
        json_decref(j);
        nanosleep(&ts, NULL);
        j = req(c, "GET", "/v1/customers/" TENANT_A, h, NULL, &st, NULL);
        assert_int_equal(st, 401);
        json_decref(j);
}

static void test_sigterm_clean(void **state) {
        struct ctx *c = *state;
        long st = 0;
        json_t *j = mp(c, "GET", ORDERS, &st);

        json_decref(j);
        assert_int_equal(harness_kill(c->fake.pid, SIGTERM, 10000), 0);
        c->fake.pid = 0;
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_auth_enforced, setup, teardown),
                cmocka_unit_test_setup_teardown(test_rql_filters, setup, teardown),
                cmocka_unit_test_setup_teardown(test_paging, setup, teardown),
                cmocka_unit_test_setup_teardown(test_select, setup, teardown),
                cmocka_unit_test_setup_teardown(test_template, setup, teardown),
                cmocka_unit_test_setup_teardown(test_process_state_machine, setup, teardown),
                cmocka_unit_test_setup_teardown(test_realism_process_race, setup, teardown),
                cmocka_unit_test_setup_teardown(test_tokens, setup, teardown),
                cmocka_unit_test_setup_teardown(test_customer_accept, setup, teardown),
                cmocka_unit_test_setup_teardown(test_customer_list, setup, teardown),
                cmocka_unit_test_setup_teardown(test_accept_after_domain_search, setup, teardown),
                cmocka_unit_test_setup_teardown(test_request_log, setup, teardown),
                cmocka_unit_test_setup_teardown(test_list_after_change, setup, teardown),
                cmocka_unit_test_setup_teardown(test_fault_once, setup, teardown),
                cmocka_unit_test_setup_teardown(test_fault_set_status, setup, teardown),
                cmocka_unit_test_setup_teardown(test_latency_parallel, setup_latency, teardown),
                cmocka_unit_test_setup_teardown(test_querying_autofail, setup, teardown),
                cmocka_unit_test_setup_teardown(test_token_expiry, setup, teardown),
                cmocka_unit_test_setup_teardown(test_sigterm_clean, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
