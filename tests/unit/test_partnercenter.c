/* SPDX-License-Identifier: MIT */
/* Pure parts of lib/partnercenter.c: token parsing, customer
 * classification, the Domain filter and links.next resolution. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "partnercenter.h"

static void parse_ok(const char *body, const char *want_token, long want_exp) {
        char *tok = NULL;
        long exp = 0;
        assert_int_equal(pc_parse_token(body, strlen(body), &tok, &exp), 0);
        assert_string_equal(tok, want_token);
        assert_int_equal(exp, want_exp);
        free(tok);
}

static void parse_bad(const char *body) {
        char *tok = NULL;
        long exp = 0;
        assert_int_equal(pc_parse_token(body, strlen(body), &tok, &exp), -EBADMSG);
        assert_null(tok);
}

static void test_parse_token(void **state) {
        /* v1: numbers as strings */
        parse_ok("{\"token_type\":\"Bearer\",\"expires_in\":\"3599\",\"ext_expires_in\":\"3599\","
                 "\"expires_on\":\"1546469802\",\"resource\":\"https://api.partnercenter.microsoft.com\","
                 "\"access_token\":\"eyJ0.abc.def\"}", "eyJ0.abc.def", 3599);
        /* v2: integer */
        parse_ok("{\"token_type\":\"Bearer\",\"expires_in\":3600,\"access_token\":\"tok2\"}", "tok2", 3600);
        /* odd expires_in: default, still usable */
        parse_ok("{\"access_token\":\"t\",\"expires_in\":\"soon\"}", "t", 600);
        parse_ok("{\"access_token\":\"t\",\"expires_in\":-5}", "t", 600);
        parse_ok("{\"access_token\":\"t\"}", "t", 600);
        parse_ok("{\"access_token\":\"t\",\"token_type\":\"bearer\",\"expires_in\":\"60\"}", "t", 60);
        /* unusable */
        parse_bad("{\"expires_in\":3600}");
        parse_bad("{\"access_token\":\"\"}");
        parse_bad("{\"access_token\":42}");
        parse_bad("{\"access_token\":null}");
        parse_bad("{\"access_token\":\"a\\r\\nX-Evil: 1\"}");
        parse_bad("{\"access_token\":\"a b\"}");
        parse_bad("{\"access_token\":\"t\",\"token_type\":\"MAC\"}");
        parse_bad("[]");
        parse_bad("not json");
        parse_bad("");
}

static void classify(long status, const char *body, enum rel_state want, const char *want_tenant) {
        char *tenant = (char *) 1;
        assert_int_equal(pc_classify_customer(status, body, body ? strlen(body) : 0, &tenant), want);
        if (want_tenant)
                assert_string_equal(tenant, want_tenant);
        else
                assert_null(tenant);
        free(tenant);
}

#define TID "6f1c2a7e-0b8d-4c55-9e41-2d7f0a3b9c10"

static void test_classify(void **state) {
        classify(200, "{\"id\":\"" TID "\",\"relationshipToPartner\":\"reseller\"}", REL_ACCEPTED, TID);
        classify(200, "{\"id\":\"6F1C2A7E-0B8D-4C55-9E41-2D7F0A3B9C10\",\"relationshipToPartner\":\"Reseller\"}",
                 REL_ACCEPTED, TID);
        classify(200, "{\"companyProfile\":{\"tenantId\":\"" TID "\"},\"relationshipToPartner\":\"RESELLER\"}",
                 REL_ACCEPTED, TID);
        classify(200, "{\"id\":\"" TID "\",\"relationshipToPartner\":\"advisor\"}", REL_PENDING, TID);
        classify(200, "{\"id\":\"" TID "\",\"relationshipToPartner\":\"none\"}", REL_PENDING, TID);
        classify(200, "{\"id\":\"" TID "\"}", REL_PENDING, TID);
        classify(200, "{\"id\":\"junk\",\"relationshipToPartner\":7}", REL_PENDING, NULL);
        classify(200, "not json", REL_UNKNOWN, NULL);
        classify(200, NULL, REL_UNKNOWN, NULL);
        classify(404, "{\"code\":1000,\"description\":\"Not found\"}", REL_PENDING, NULL);
        classify(403, "{\"code\":20002,\"description\":\"No relationship\"}", REL_PENDING, NULL);
        classify(401, "{\"code\":800001}", REL_UNKNOWN, NULL);
        classify(429, NULL, REL_UNKNOWN, NULL);
        classify(500, "", REL_UNKNOWN, NULL);
        classify(0, NULL, REL_UNKNOWN, NULL);
        const char *b = "{\"relationshipToPartner\":\"reseller\"}";
        assert_int_equal(pc_classify_customer(200, b, strlen(b), NULL), REL_ACCEPTED);
}

static void test_domain_filter(void **state) {
        char *f = pc_build_domain_filter("contoso.onmicrosoft.com");
        assert_string_equal(f, "%7B%22Field%22%3A%22Domain%22%2C%22Value%22%3A%22contoso.onmicrosoft.com"
                               "%22%2C%22Operator%22%3A%22starts_with%22%7D");
        free(f);
        assert_null(pc_build_domain_filter(NULL));
        assert_null(pc_build_domain_filter(""));
        assert_null(pc_build_domain_filter("a\"b.com"));
        assert_null(pc_build_domain_filter("a b.com"));
        assert_null(pc_build_domain_filter("x.com\r\nHost: evil"));
}

static void next_url(const char *api, const char *uri, const char *want) {
        char *u = pc_next_url(api, uri);
        if (!want) {
                assert_null(u);
                return;
        }
        assert_non_null(u);
        assert_string_equal(u, want);
        free(u);
}

static void test_next_url(void **state) {
        const char *api = "https://api.partnercenter.microsoft.com/v1";
        next_url(api, "/customers?size=100&seekOperation=Next",
                 "https://api.partnercenter.microsoft.com/v1/customers?size=100&seekOperation=Next");
        next_url(api, "/v1/customers?seekOperation=Next",
                 "https://api.partnercenter.microsoft.com/v1/customers?seekOperation=Next");
        next_url("https://api.partnercenter.microsoft.com/v1/", "/customers?x=1",
                 "https://api.partnercenter.microsoft.com/v1/customers?x=1");
        next_url("http://127.0.0.1:4000/v1", "/v1customers", "http://127.0.0.1:4000/v1/v1customers");
        next_url(api, "https://evil.example/v1/customers", NULL);
        next_url(api, "//evil.example/v1/customers", NULL);
        next_url(api, "customers", NULL);
        next_url(api, "/customers/../../x", NULL);
        next_url(api, "/customers?a=b c", NULL);
        next_url(api, "/customers\r\nX: y", NULL);
        next_url(api, "", NULL);
        next_url(api, NULL, NULL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse_token),
                cmocka_unit_test(test_classify),
                cmocka_unit_test(test_domain_filter),
                cmocka_unit_test(test_next_url),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
