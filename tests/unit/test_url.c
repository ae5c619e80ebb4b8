/* SPDX-License-Identifier: MIT */
/* test_url: lib/url.c, the one URL policy (endpoints and relationship links). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "url.h"

#define PID "3b33e682-00c3-41ee-9dd2-a548adf56438"
#define RESELLER "https://admin.microsoft.com/Adminportal/Home?invType=ResellerRelationship" \
                 "&partnerId=" PID "&msppId=0&DAP=false#/BillingAccounts/partner-invitation"
#define CLOUD_RESELLER "https://admin.cloud.microsoft/Adminportal/Home?invType=ResellerRelationship" \
                       "&partnerId=3B33E682-00C3-41EE-9DD2-A548ADF56438&msppId=0#/partners/invitation"
#define GDAP_ID "11111111-2222-3333-4444-555555555555-66666666-7777-8888-9999-000000000000"
#define GDAP "https://admin.microsoft.com/AdminPortal/Home#/partners/invitation/granularAdminRelationships/" GDAP_ID
#define CLOUD_GDAP "https://admin.cloud.microsoft/AdminPortal/Home#/partners/invitation/" \
                   "granularAdminRelationships/" GDAP_ID

static void test_endpoint(void **state) {
        bool plain = true;
        const char *msg = NULL;
        /* schemes compare case-insensitively in every caller (config used
         * to be the only one) */
        assert_int_equal(url_check_endpoint("HTTPS://api.example.com/v1", URL_ALLOW_HTTP, &plain, &msg), 0);
        assert_false(plain);
        assert_int_equal(url_check_endpoint("Http://127.0.0.1:9/x", URL_ALLOW_HTTP, &plain, &msg), 0);
        assert_true(plain);
        assert_int_equal(url_check_endpoint("http://api.example.com/", URL_ALLOW_HTTP, &plain, &msg), -EINVAL);
        assert_non_null(strstr(msg, "loopback"));
        /* strict: configuration values carry no query or fragment */
        assert_int_equal(url_check_endpoint("https://a.example/v1?x=1", URL_ALLOW_HTTP | URL_STRICT, NULL, &msg),
                         -EINVAL);
        assert_int_equal(url_check_endpoint("https://a.example/v1?x=1", URL_ALLOW_HTTP, NULL, NULL), 0);
        /* the scheme must be written out */
        assert_int_equal(url_check_endpoint("a.example/v1", URL_ALLOW_HTTP | URL_STRICT, NULL, NULL), -EINVAL);
        /* credentials: -EPERM, even when curl cannot parse the rest */
        assert_int_equal(url_check_endpoint("https://u:p@a.example/", URL_ALLOW_HTTP, NULL, &msg), -EPERM);
        assert_int_equal(url_check_endpoint("https://u:p@/ bad", URL_ALLOW_HTTP, NULL, NULL), -EPERM);
        /* smtp only where asked for */
        assert_int_equal(url_check_endpoint("smtps://m.example:465", URL_ALLOW_SMTP, &plain, &msg), 0);
        assert_int_equal(url_check_endpoint("https://m.example", URL_ALLOW_SMTP, NULL, &msg), -EINVAL);
        assert_non_null(strstr(msg, "smtps://"));
}

static void test_link_kinds(void **state) {
        assert_int_equal(url_link_kind(RESELLER), URL_LINK_RESELLER);
        assert_int_equal(url_link_kind(CLOUD_RESELLER), URL_LINK_RESELLER);
        assert_int_equal(url_link_kind(GDAP), URL_LINK_GDAP);
        assert_int_equal(url_link_kind(CLOUD_GDAP), URL_LINK_GDAP);
        assert_int_equal(url_link_kind("https://admin.cloud.microsoft.evil.example/Adminportal/Home"
                                       "?invType=ResellerRelationship"), URL_LINK_NONE);
        assert_int_equal(url_link_kind("https://portal.office.com/Adminportal/Home?invType=ResellerRelationship"),
                         URL_LINK_NONE);
        assert_string_equal(url_link_kind_to_string(URL_LINK_GDAP), "gdap");
        assert_string_equal(url_link_kind_to_string(URL_LINK_RESELLER), "reseller");
}

static void test_link_fields(void **state) {
        char *p = url_link_partner_id(RESELLER);
        assert_string_equal(p, PID);
        free(p);
        p = url_link_partner_id(CLOUD_RESELLER);   /* normalised to lower case */
        assert_string_equal(p, PID);
        free(p);
        assert_null(url_link_partner_id(GDAP));
        assert_null(url_link_partner_id("https://admin.microsoft.com/Adminportal/Home"
                                        "?invType=ResellerRelationship&partnerId=not-a-guid"));
        assert_null(url_link_partner_id("https://admin.microsoft.com/Adminportal/Home"
                                        "?invType=ResellerRelationship#partnerId=" PID));
        char *g = url_link_gdap_id(GDAP);
        assert_string_equal(g, GDAP_ID);
        free(g);
        g = url_link_gdap_id(CLOUD_GDAP);
        assert_string_equal(g, GDAP_ID);
        free(g);
        assert_null(url_link_gdap_id(RESELLER));
        assert_null(url_link_gdap_id("https://admin.microsoft.com/AdminPortal/Home#/partners/invitation/"
                                     "granularAdminRelationships/../../evil"));
}

static void test_link_extract(void **state) {
        char *u = url_link_extract("Accept at <a href=\"" CLOUD_RESELLER "\">this link</a>.");
        assert_string_equal(u, CLOUD_RESELLER);
        free(u);
        u = url_link_extract("GDAP only: " CLOUD_GDAP);
        assert_string_equal(u, CLOUD_GDAP);
        free(u);
        /* with both kinds, the reseller link wins */
        u = url_link_extract("first " GDAP " then " CLOUD_RESELLER);
        assert_string_equal(u, CLOUD_RESELLER);
        free(u);
        assert_null(url_link_extract("https://admin.cloud.microsoft@evil.example/Adminportal/Home"
                                     "?invType=ResellerRelationship"));
}

static void test_link_allowed(void **state) {
        /* the default allow-list is both admin centre hosts, exact match */
        assert_true(url_link_allowed(RESELLER, NULL, 0));
        assert_true(url_link_allowed(CLOUD_RESELLER, NULL, 0));
        assert_false(url_link_allowed("https://admin.cloud.microsoft.evil.example/x", NULL, 0));
        assert_false(url_link_allowed("http://admin.cloud.microsoft/x", NULL, 0));
        assert_false(url_link_allowed("https://admin.cloud.microsoft:8443/x", NULL, 0));
        char *only[] = { (char *) "ADMIN.MICROSOFT.COM" };
        assert_true(url_link_allowed(RESELLER, only, 1));
        assert_false(url_link_allowed(CLOUD_RESELLER, only, 1));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_endpoint),
                cmocka_unit_test(test_link_kinds),
                cmocka_unit_test(test_link_fields),
                cmocka_unit_test(test_link_extract),
                cmocka_unit_test(test_link_allowed),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
