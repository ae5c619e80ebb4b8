/* SPDX-License-Identifier: MIT */
/* Pure parts of lib/marketplace.c: order parsing, list pages, relationship
 * URL extraction, RQL and URL building. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <cmocka.h>

#include "marketplace.h"
#include "url.h"
#include "util.h"

/* A CSP purchase order blocked in Querying, composed for this test. */
static const char order_json[] =
        "{\"id\":\"ORD-7001-2002-3003\",\"href\":\"/commerce/orders/ORD-7001-2002-3003\","
        " \"type\":\"Purchase\",\"status\":\"Querying\",\"revision\":3,"
        " \"agreement\":{\"id\":\"AGR-1111-2222-3333\",\"name\":\"Azure for Fabrikam\","
        "   \"product\":{\"id\":\"PRD-9999-0000\",\"name\":\"Agreement product\"}},"
        " \"product\":{\"id\":\"PRD-1528-2110\",\"name\":\"Microsoft Azure\"},"
        " \"client\":{\"id\":\"ACC-1-2\",\"name\":\"Fabrikam Group\"},"
        " \"buyer\":{\"id\":\"BUY-3333-4444\",\"name\":\"Fabrikam Ltd\"},"
        " \"template\":{\"id\":\"TPL-1528-2110-0009\",\"name\":\"Accept\"},"
        " \"somethingNew\":{\"nested\":[1,2,3]},"
        " \"error\":{\"id\":\"E1\",\"message\":\"Please accept the relationship.\"},"
        " \"parameters\":{"
        "  \"ordering\":["
        "   {\"externalId\":\"CustomerCreateOption\",\"type\":\"Choice\",\"value\":\"Existing\"},"
        "   {\"externalId\":\"PrimaryDomainName\",\"type\":\"Subdomain\",\"value\":\"ignored.onmicrosoft.com\"},"
        "   {\"externalId\":\"ExistingDomainName\",\"type\":\"SingleLineText\",\"value\":\"  Fabrikam.OnMicrosoft.com \"},"
        "   {\"externalId\":\"CustomerCompanyName\",\"type\":\"SingleLineText\",\"value\":\"Fabrikam Ltd (Legal)\"},"
        "   {\"externalId\":\"AccountManager\",\"type\":\"Contact\",\"value\":"
        "     {\"firstName\":\"Ada\",\"lastName\":\"Lovelace\",\"email\":\"ada@fabrikam.example\","
        "      \"phone\":{\"prefix\":\"+1\",\"number\":\"5550100\"}}},"
        "   {\"externalId\":\"Support\",\"type\":\"contact\",\"value\":"
        "     {\"firstName\":\"Bob\",\"email\":\"bob@fabrikam.example\"}},"
        "   {\"externalId\":\"BadContact\",\"type\":\"Contact\",\"value\":{\"email\":\"not-an-email\"}},"
        "   {\"externalId\":\"X\",\"type\":\"SingleLineText\",\"value\":\"x\","
        "     \"error\":{\"id\":\"P1\",\"message\":\"Domain not found\"}}"
        "  ],"
        "  \"fulfillment\":["
        "   {\"externalId\":\"MicrosoftTenantId\",\"value\":\"6F1C2A7E-0B8D-4C55-9E41-2D7F0A3B9C10\"},"
        "   {\"externalId\":\"IsCustomerAccepted\",\"value\":\"false\"}"
        "  ]},"
        " \"audit\":{\"created\":{\"at\":\"2026-08-01T09:12:44.120Z\"},"
        "   \"querying\":{\"at\":\"2026-08-01T09:20:02.9921325Z\"}}}";

static void parse_str(const char *s, struct order *o, int expect, const char *err_sub) {
        json_error_t je;
        json_t *j = json_loads(s, 0, &je);
        assert_non_null(j);
        char *err = NULL;
        assert_int_equal(mp_parse_order(j, o, &err), expect);
        if (err_sub) {
                assert_non_null(err);
                assert_non_null(strstr(err, err_sub));
        } else
                assert_null(err);
        free(err);
        json_decref(j);
}

static void test_parse_full(void **state) {
        struct order o;
        parse_str(order_json, &o, 0, NULL);
        assert_string_equal(o.id, "ORD-7001-2002-3003");
        assert_int_equal(o.status, ORDER_STATUS_QUERYING);
        assert_string_equal(o.type, "Purchase");
        assert_string_equal(o.product_id, "PRD-1528-2110");  /* product wins over agreement.product */
        assert_string_equal(o.product_name, "Microsoft Azure");
        assert_string_equal(o.agreement_id, "AGR-1111-2222-3333");
        assert_string_equal(o.client_name, "Fabrikam Group");
        assert_string_equal(o.buyer_id, "BUY-3333-4444");
        assert_string_equal(o.buyer_name, "Fabrikam Ltd");
        assert_string_equal(o.tenant_id, "6f1c2a7e-0b8d-4c55-9e41-2d7f0a3b9c10");
        assert_string_equal(o.domain, "fabrikam.onmicrosoft.com");  /* Existing wins, trimmed, lower */
        assert_string_equal(o.company_name, "Fabrikam Ltd (Legal)");
        assert_string_equal(o.template_id, "TPL-1528-2110-0009");
        assert_string_equal(o.error_message, "Please accept the relationship.; Domain not found");
        assert_string_equal(o.querying_at_raw, "2026-08-01T09:20:02.9921325Z");
        char buf[UTIL_TIME_MAX];
        assert_string_equal(util_format_time(o.querying_at, buf), "2026-08-01T09:20:02Z");
        assert_string_equal(util_format_time(o.created_at, buf), "2026-08-01T09:12:44Z");
        assert_int_equal(o.n_contacts, 2);
        assert_string_equal(o.contacts[0].name, "Ada Lovelace");
        assert_string_equal(o.contacts[0].email, "ada@fabrikam.example");
        assert_string_equal(o.contacts[1].name, "Bob");
        assert_string_equal(o.contacts[1].email, "bob@fabrikam.example");
        assert_null(o.relationship_url);
        order_clear(&o);
}

static void test_parse_minimal_and_fallbacks(void **state) {
        struct order o;
        /* 4-group id, lower-case status, no Z, agreement.product fallback,
         * PrimaryDomainName when Existing is empty, buyer name as company */
        parse_str("{\"id\":\"ORD-0792-5000-2253-4210\",\"status\":\"querying\","
                  " \"agreement\":{\"product\":{\"id\":\"PRD-5832-8010\"}},"
                  " \"buyer\":{\"name\":\"Buyer Inc\"},\"client\":{\"name\":\"Client Inc\"},"
                  " \"parameters\":{\"ordering\":["
                  "   {\"externalId\":\"ExistingDomainName\",\"value\":\"\"},"
                  "   {\"externalId\":\"PrimaryDomainName\",\"value\":\"NEWCO.onmicrosoft.com\"}],"
                  "  \"fulfillment\":[{\"externalId\":\"MicrosoftTenantId\",\"value\":\"\"}]},"
                  " \"audit\":{\"querying\":{\"at\":\"2023-12-14T18:02:16.9359\"}}}",
                  &o, 0, NULL);
        assert_string_equal(o.id, "ORD-0792-5000-2253-4210");
        assert_int_equal(o.status, ORDER_STATUS_QUERYING);
        assert_string_equal(o.product_id, "PRD-5832-8010");
        assert_null(o.tenant_id);
        assert_string_equal(o.domain, "newco.onmicrosoft.com");
        assert_string_equal(o.company_name, "Buyer Inc");
        char buf[UTIL_TIME_MAX];
        assert_string_equal(util_format_time(o.querying_at, buf), "2023-12-14T18:02:16Z");
        assert_int_equal(o.created_at, 0);
        assert_null(o.error_message);
        assert_null(o.template_id);
        assert_int_equal(o.n_contacts, 0);
        order_clear(&o);

        /* only the client name left for the company */
        parse_str("{\"id\":\"ORD-1234-5678-9012\",\"status\":\"DRAFT\",\"client\":{\"name\":\"C\"}}",
                  &o, 0, NULL);
        assert_int_equal(o.status, ORDER_STATUS_DRAFT);
        assert_string_equal(o.company_name, "C");
        assert_null(o.domain);
        order_clear(&o);

        /* unknown status string: parsed, status UNKNOWN */
        parse_str("{\"id\":\"ORD-1234-5678-9012\",\"status\":\"Teleporting\"}", &o, 0, NULL);
        assert_int_equal(o.status, ORDER_STATUS_UNKNOWN);
        order_clear(&o);
}

static void test_parse_nulls_and_wrong_types(void **state) {
        struct order o;
        parse_str("{\"id\":\"ORD-1234-5678-9012\",\"status\":\"Querying\",\"type\":null,"
                  " \"product\":\"PRD-1\",\"agreement\":[1],\"buyer\":{\"id\":7,\"name\":null},"
                  " \"client\":null,\"template\":{\"id\":{}},\"error\":null,"
                  " \"parameters\":{\"ordering\":{\"not\":\"an array\"},"
                  "   \"fulfillment\":[null,7,\"s\",{\"externalId\":\"MicrosoftTenantId\",\"value\":42},"
                  "     {\"externalId\":5},{\"externalId\":\"MicrosoftTenantId\",\"value\":\"x\"}]},"
                  " \"audit\":{\"querying\":{\"at\":12345},\"created\":null}}",
                  &o, 0, NULL);
        assert_null(o.type);
        assert_null(o.product_id);
        assert_null(o.agreement_id);
        assert_null(o.buyer_id);
        assert_null(o.buyer_name);
        assert_null(o.client_name);
        assert_null(o.company_name);
        assert_null(o.template_id);
        assert_null(o.tenant_id);
        assert_null(o.domain);
        assert_null(o.error_message);
        assert_null(o.querying_at_raw);
        assert_int_equal(o.querying_at, 0);
        order_clear(&o);

        /* junk timestamp: raw kept, parsed 0; non-GUID tenant dropped;
         * domain with spaces dropped */
        parse_str("{\"id\":\"ORD-1234-5678-9012\",\"status\":\"Querying\","
                  " \"parameters\":{\"ordering\":[{\"externalId\":\"ExistingDomainName\","
                  "   \"value\":\"<b>x y</b>\"}],"
                  "  \"fulfillment\":[{\"externalId\":\"MicrosoftTenantId\",\"value\":\"not-a-guid\"}]},"
                  " \"audit\":{\"querying\":{\"at\":\"yesterday\"}}}",
                  &o, 0, NULL);
        assert_string_equal(o.querying_at_raw, "yesterday");
        assert_int_equal(o.querying_at, 0);
        assert_null(o.tenant_id);
        assert_null(o.domain);
        order_clear(&o);

        /* required fields */
        parse_str("{\"status\":\"Querying\"}", &o, -EBADMSG, "\"id\"");
        parse_str("{\"id\":null,\"status\":\"Querying\"}", &o, -EBADMSG, "\"id\"");
        parse_str("{\"id\":42,\"status\":\"Querying\"}", &o, -EBADMSG, "\"id\"");
        parse_str("{\"id\":\"ORD-1-2-3\",\"status\":\"Querying\"}", &o, -EBADMSG, "\"id\"");
        parse_str("{\"id\":\"ORD-1234-5678-9012\"}", &o, -EBADMSG, "\"status\"");
        parse_str("{\"id\":\"ORD-1234-5678-9012\",\"status\":3}", &o, -EBADMSG, "\"status\"");
        parse_str("[1,2]", &o, -EBADMSG, "order");
        assert_null(o.id);
}

static void test_parse_hostile_lengths(void **state) {
        size_t big = 100000;
        char *name = malloc(big + 1);
        memset(name, 'A', big);
        name[big] = '\0';
        name[10] = '\n';   /* control character in a single-line field */
        json_t *params = json_array();
        for (int i = 0; i < 200; i++)
                json_array_append_new(params,
                        json_pack("{s:s,s:s,s:{s:s,s:s},s:{s:s}}", "externalId", "C", "type", "Contact",
                                  "value", "firstName", "F", "email", "f@x.example",
                                  "error", "message", name));
        json_t *j = json_pack("{s:s,s:s,s:{s:s},s:{s:s},s:{s:o}}", "id", "ORD-1234-5678-9012",
                              "status", "Querying", "buyer", "name", name, "error", "message", name,
                              "parameters", "ordering", params);
        assert_non_null(j);
        struct order o;
        char *err = NULL;
        assert_int_equal(mp_parse_order(j, &o, &err), 0);
        assert_true(strlen(o.buyer_name) <= 4096);
        assert_null(strchr(o.buyer_name, '\n'));
        assert_true(strlen(o.error_message) <= 4000);
        assert_true(o.n_contacts <= 32);
        assert_true(o.n_contacts > 0);
        order_clear(&o);
        json_decref(j);
        free(name);
}

static void test_order_id_valid(void **state) {
        assert_true(mp_order_id_valid("ORD-1234-5678-9012"));
        assert_true(mp_order_id_valid("ORD-0792-5000-2253-4210"));
        assert_false(mp_order_id_valid(NULL));
        assert_false(mp_order_id_valid(""));
        assert_false(mp_order_id_valid("ORD-1234-5678"));
        assert_false(mp_order_id_valid("ORD-1234-5678-9012-3456-7890"));
        assert_false(mp_order_id_valid("ord-1234-5678-9012"));
        assert_false(mp_order_id_valid("ORD-1234-5678-901a"));
        assert_false(mp_order_id_valid("ORD-1234-5678-9012 "));
        assert_false(mp_order_id_valid("ORD-1234-5678-9012/../x"));
        assert_false(mp_order_id_valid("ORD-12345-678-9012"));
}

static void test_parse_page(void **state) {
        struct order_list l = { 0 };
        long total;
        char *err = NULL;
        const char *page =
                "{\"$meta\":{\"pagination\":{\"offset\":0,\"limit\":100,\"total\":250},"
                "  \"omitted\":[\"lines\"]},"
                " \"data\":[{\"id\":\"ORD-1111-1111-1111\",\"status\":\"Querying\"},"
                "          {\"id\":\"bogus\",\"status\":\"Querying\"},"
                "          {\"id\":\"ORD-2222-2222-2222\",\"status\":\"Draft\"}]}";
        assert_int_equal(mp_parse_order_page(page, strlen(page), &l, &total, &err), 0);
        assert_null(err);
        assert_int_equal(total, 250);
        assert_int_equal(l.n, 2);   /* the invalid item is skipped */
        assert_string_equal(l.items[0].id, "ORD-1111-1111-1111");
        assert_string_equal(l.items[1].id, "ORD-2222-2222-2222");

        const char *nototal = "{\"data\":[{\"id\":\"ORD-3333-3333-3333\",\"status\":\"Querying\"}]}";
        assert_int_equal(mp_parse_order_page(nototal, strlen(nototal), &l, &total, &err), 0);
        assert_int_equal(total, -1);
        assert_int_equal(l.n, 3);
        const char *badtotal = "{\"$meta\":{\"pagination\":{\"total\":\"9\"}},\"data\":[]}";
        assert_int_equal(mp_parse_order_page(badtotal, strlen(badtotal), &l, &total, &err), 0);
        assert_int_equal(total, -1);

        assert_int_equal(mp_parse_order_page("{\"items\":[]}", 12, &l, &total, &err), -EBADMSG);
        assert_non_null(err);
        util_freep(&err);
        assert_int_equal(mp_parse_order_page("not json", 8, &l, &total, &err), -EBADMSG);
        assert_non_null(strstr(err, "JSON"));
        util_freep(&err);
        assert_int_equal(l.n, 3);
        order_list_clear(&l);
}

#define RESELLER "https://admin.microsoft.com/Adminportal/Home?invType=ResellerRelationship" \
                 "&partnerId=3b33e682-00c3-41ee-9dd2-a548adf56438&msppId=0#/partners/invitation"
#define GDAP "https://admin.microsoft.com/AdminPortal/Home#/partners/invitation/" \
             "granularAdminRelationships/11111111-2222-3333-4444-555555555555-66666666-7777"

static void expect_url(const char *text, const char *want) {
        char *u = url_link_extract(text);
        if (!want) {
                assert_null(u);
                return;
        }
        assert_non_null(u);
        assert_string_equal(u, want);
        free(u);
}

static void test_extract_url(void **state) {
        /* HTML href with &amp; plus the same URL as text */
        expect_url("<p>Please <a href=\"https://admin.microsoft.com/Adminportal/Home?invType="
                   "ResellerRelationship&amp;partnerId=3b33e682-00c3-41ee-9dd2-a548adf56438&amp;"
                   "msppId=0#/partners/invitation\">accept</a>.</p>", RESELLER);
        /* numeric entities */
        expect_url("<a href='https://admin.microsoft.com/Adminportal/Home?invType=ResellerRelationship"
                   "&#38;partnerId=3b33e682-00c3-41ee-9dd2-a548adf56438&#x26;msppId=0#/partners/"
                   "invitation'>x</a>", RESELLER);
        /* markdown link with escaped & and _ */
        expect_url("Open [this link](https://admin.microsoft.com/Adminportal/Home?invType="
                   "ResellerRelationship\\&partnerId=3b33e682-00c3-41ee-9dd2-a548adf56438\\&"
                   "msppId=0\\#/partners/invitation) now", RESELLER);
        /* plain text, trailing sentence punctuation */
        expect_url("Accept here: " RESELLER ". Thanks", RESELLER);
        expect_url(RESELLER ",", RESELLER);
        /* upper-case host and path variant */
        expect_url("go to HTTPS://ADMIN.MICROSOFT.COM/ADMINPORTAL/Home?invtype=resellerrelationship&x=1 ok",
                   "HTTPS://ADMIN.MICROSOFT.COM/ADMINPORTAL/Home?invtype=resellerrelationship&x=1");
        /* indirect variant */
        expect_url("<https://admin.microsoft.com/Adminportal/Home?invType=IndirectResellerRelationship"
                   "&partnerId=a&msppId=1&indirectCSPId=b&DAP=false#/BillingAccounts/partner-invitation>",
                   "https://admin.microsoft.com/Adminportal/Home?invType=IndirectResellerRelationship"
                   "&partnerId=a&msppId=1&indirectCSPId=b&DAP=false#/BillingAccounts/partner-invitation");
        /* GDAP alone is the second kind; with both the reseller one wins */
        expect_url("Accept GDAP: " GDAP "\n", GDAP);
        expect_url("first " GDAP " then " RESELLER, RESELLER);
        assert_int_equal(url_link_kind(RESELLER), URL_LINK_RESELLER);
        assert_int_equal(url_link_kind(GDAP), URL_LINK_GDAP);
        assert_int_equal(url_link_kind("https://admin.microsoft.com/Adminportal/Home"),
                         URL_LINK_NONE);
        /* nothing to find */
        expect_url(NULL, NULL);
        expect_url("", NULL);
        expect_url("Your order is waiting for the domain name.", NULL);
        expect_url("http://admin.microsoft.com/Adminportal/Home?invType=ResellerRelationship&p=1", NULL);
        expect_url("javascript:alert(1)//admin.microsoft.com/Adminportal/Home?invType=ResellerRelationship",
                   NULL);
        expect_url("https://admin.microsoft.com.evil.example/Adminportal/Home?invType=ResellerRelationship",
                   NULL);
        expect_url("https://evil.example/admin.microsoft.com/Adminportal/Home?invType=ResellerRelationship",
                   NULL);
        expect_url("https://admin.microsoft.com@evil.example/Adminportal/Home?invType=ResellerRelationship",
                   NULL);
        expect_url("xhttps://admin.microsoft.com/Adminportal/Home?invType=ResellerRelationship", NULL);
        /* invType must be a query key, not a fragment or another key */
        expect_url("https://admin.microsoft.com/Adminportal/Home#invType=ResellerRelationship", NULL);
        expect_url("https://admin.microsoft.com/Adminportal/Home?xinvType=ResellerRelationship", NULL);
        expect_url("https://admin.microsoft.com/Adminportal/Home?invType=ResellerRelationshipX", NULL);
        /* control character inside: rejected */
        expect_url("https://admin.microsoft.com/Adminportal/Home?invType=ResellerRelationship\x01&p=1",
                   NULL);
        /* over-long URL rejected, a later good one still found */
        size_t n = 3000;
        char *longu = malloc(n + 400);
        strcpy(longu, "https://admin.microsoft.com/Adminportal/Home?invType=ResellerRelationship&p=");
        size_t l = strlen(longu);
        memset(longu + l, 'a', n);
        longu[l + n] = '\0';
        expect_url(longu, NULL);
        strcat(longu, " and " RESELLER);
        expect_url(longu, RESELLER);
        free(longu);
}

static void test_extract_url_from_order(void **state) {
        json_t *j = json_pack(
                "{s:s,s:s,s:{s:[{s:s,s:i},{s:s,s:s}],s:[{s:s,s:s}]}}",
                "id", "ORD-1234-5678-9012", "status", "Querying", "parameters",
                "ordering", "externalId", "N", "value", 5, "externalId", "Gd", "value",
                "see " GDAP, "fulfillment", "externalId", "ResellerRelationshipUrl", "value",
                RESELLER);
        assert_non_null(j);
        char *u = mp_extract_relationship_url_from_order(j);
        assert_string_equal(u, RESELLER);
        free(u);
        json_decref(j);

        j = json_pack("{s:{s:s}}", "error", "message",
                      "Ask a Global Administrator to open " RESELLER " and accept.");
        u = mp_extract_relationship_url_from_order(j);
        assert_string_equal(u, RESELLER);
        free(u);
        json_decref(j);

        j = json_pack("{s:{s:[{s:s}]}}", "parameters", "ordering", "value", "no url here");
        assert_null(mp_extract_relationship_url_from_order(j));
        json_decref(j);
        assert_null(mp_extract_relationship_url_from_order(NULL));
}

/* Property test: random mixes of URL fragments, escapes and delimiters
 * never crash the extractor, and whatever it returns is a clean,
 * bounded acceptance URL of a known kind. */
static void test_extract_url_random(void **state) {
        static const char *const parts[] = {
                "https://admin.microsoft.com/", "HTTPS://ADMIN.MICROSOFT.COM/", "Adminportal/Home",
                "adminportal/Home", "?", "&", "&amp;", "&#38;", "&#x26;", "\\&", "\\_", "\\#",
                "invType=", "ResellerRelationship", "IndirectResellerRelationship", "partnerId=x",
                "#/partners/invitation/granularAdminRelationships/", "abc-123", "\"", "'", "<", ">",
                "(", ")", "[", "]", " ", "\n", "\x01", ".", ",", ";", ":", "http://", "javascript:",
                "évian", "%41", "a",
        };
        uint32_t seed = 12345;
        char buf[4096];
        int found = 0;
        for (int iter = 0; iter < 20000; iter++) {
                size_t len = 0;
                if (iter % 2) {   /* half start as a real URL, then go astray */
                        strcpy(buf, "see https://admin.microsoft.com/Adminportal/Home?invType=");
                        len = strlen(buf);
                }
                int n = 1 + (int) ((seed = seed * 1103515245u + 12345u) >> 16) % 24;
                for (int k = 0; k < n; k++) {
                        seed = seed * 1103515245u + 12345u;
                        const char *p = parts[(seed >> 16) % (sizeof(parts) / sizeof(parts[0]))];
                        size_t pl = strlen(p);
                        if (len + pl >= sizeof(buf))
                                break;
                        memcpy(buf + len, p, pl);
                        len += pl;
                }
                buf[len] = '\0';
                char *u = url_link_extract(buf);
                if (!u)
                        continue;
                assert_true(strncasecmp(u, "https://admin.microsoft.com/adminportal", 39) == 0);
                assert_true(strlen(u) <= 2048);
                assert_false(util_has_ctl(u, false));
                assert_null(strpbrk(u, " \"'<>)]"));
                assert_int_not_equal(url_link_kind(u), URL_LINK_NONE);
                assert_null(strstr(u, "&amp;"));
                found++;
                free(u);
        }
        assert_true(found > 0);   /* the property was exercised */
        print_message("%d URLs extracted\n", found);
}

static void test_rql_and_urls(void **state) {
        enum order_status q[] = { ORDER_STATUS_QUERYING };
        enum order_status qd[] = { ORDER_STATUS_QUERYING, ORDER_STATUS_DRAFT };
        const char *prods[] = { "PRD-1528-2110", "PRD-5832-8010" };
        char *s = mp_build_rql(q, 1, NULL, 0);
        assert_string_equal(s, "eq(status,\"Querying\")");
        free(s);
        s = mp_build_rql(qd, 2, prods, 2);
        assert_string_equal(s, "and(in(status,(\"Querying\",\"Draft\")),"
                               "in(product.id,(\"PRD-1528-2110\",\"PRD-5832-8010\")))");
        free(s);
        s = mp_build_rql(q, 1, prods, 1);
        assert_string_equal(s, "and(eq(status,\"Querying\"),eq(product.id,\"PRD-1528-2110\"))");
        free(s);
        const char *odd[] = { "a b\"(),&" };
        s = mp_build_rql(q, 1, odd, 1);
        assert_string_equal(s, "and(eq(status,\"Querying\"),eq(product.id,"
                               "\"a%20b%22%28%29%2C%26\"))");
        free(s);
        enum order_status bad[] = { ORDER_STATUS_UNKNOWN };
        assert_null(mp_build_rql(bad, 1, NULL, 0));
        assert_null(mp_build_rql(q, 0, NULL, 0));

        static const char *const bases[] = {
                "https://api.example.com", "https://api.example.com/",
                "https://api.example.com/public/v1", "https://api.example.com/public/v1/",
        };
        for (size_t i = 0; i < 4; i++) {
                s = mp_normalize_base_url(bases[i]);
                assert_string_equal(s, "https://api.example.com/public/v1");
                free(s);
        }
        s = mp_normalize_base_url("http://127.0.0.1:8080/prefix/");
        assert_string_equal(s, "http://127.0.0.1:8080/prefix/public/v1");
        free(s);
        assert_null(mp_normalize_base_url(""));
        assert_null(mp_normalize_base_url(NULL));
        assert_null(mp_normalize_base_url("https://x/?a=b"));

        s = mp_portal_link(NULL, "ORD-1234-5678-9012");
        assert_string_equal(s, "https://portal.platform.softwareone.com/commerce/orders/ORD-1234-5678-9012");
        free(s);
        s = mp_portal_link("https://portal.example/", "ORD-1234-5678-9012-3456");
        assert_string_equal(s, "https://portal.example/commerce/orders/ORD-1234-5678-9012-3456");
        free(s);
        assert_null(mp_portal_link(NULL, "ORD-../../x"));
}

/* The composed example order in the shared reference parses as expected
 * (skipped when the reference is not around). */
static void test_reference_example(void **state) {
        const char *dir = getenv("SHARED_DIR");
        if (!dir)
                dir = "../shared";
        char path[4096];
        snprintf(path, sizeof(path), "%s/reference/marketplace-api.md", dir);
        char *md = NULL;
        size_t len;
        if (util_read_file(path, 1 << 20, &md, &len) < 0)
                skip();
        const char *h = strstr(md, "### Example: CSP purchase order");
        const char *b = h ? strstr(h, "```json\n") : NULL;
        const char *e = b ? strstr(b + 8, "\n```") : NULL;
        if (!e) {
                free(md);
                skip();
        }
        json_t *j = json_loadb(b + 8, (size_t) (e - b - 8), 0, NULL);
        assert_non_null(j);
        struct order o;
        char *err = NULL;
        assert_int_equal(mp_parse_order(j, &o, &err), 0);
        assert_true(mp_order_id_valid(o.id));
        assert_int_equal(o.status, ORDER_STATUS_QUERYING);
        assert_non_null(o.tenant_id);
        assert_non_null(o.domain);
        assert_non_null(o.company_name);
        assert_non_null(o.querying_at_raw);
        assert_true(o.querying_at > 0);
        assert_true(o.created_at > 0 && o.created_at <= o.querying_at);
        assert_non_null(o.template_id);
        order_clear(&o);
        json_decref(j);
        free(md);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse_full),
                cmocka_unit_test(test_parse_minimal_and_fallbacks),
                cmocka_unit_test(test_parse_nulls_and_wrong_types),
                cmocka_unit_test(test_parse_hostile_lengths),
                cmocka_unit_test(test_order_id_valid),
                cmocka_unit_test(test_parse_page),
                cmocka_unit_test(test_extract_url),
                cmocka_unit_test(test_extract_url_from_order),
                cmocka_unit_test(test_extract_url_random),
                cmocka_unit_test(test_rql_and_urls),
                cmocka_unit_test(test_reference_example),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
