/* SPDX-License-Identifier: MIT */
/*
 * fuzz_pc: Partner Center / Entra / Graph response parsing: pc_parse_token(),
 * pc_classify_customer() and graph_classify_relationship().
 *
 * Input layout: byte 0 picks the HTTP status for the classification (200
 * for most values), the rest is the body.
 *
 * Properties: no crash, leak or UB; a token is non-empty, at most 16 KiB,
 * without whitespace or control characters (it goes into a header), with
 * 0 < expires_in < 2^31; the classification is a known state, PENDING for
 * 403/404, UNKNOWN for other non-200 statuses; a tenant id is a lower-case
 * GUID; a GDAP answer is NOT_FOUND exactly for 404, UNKNOWN for other
 * non-200 statuses, its status a printable token of at most 64 bytes; a
 * next-page URL stays on the API host (curl parses the same host
 * and scheme) and has no whitespace or control character.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "fuzz.h"
#include "graph.h"
#include "partnercenter.h"

#define API_URL "https://api.partnercenter.microsoft.com/v1"
#define API_HOST "api.partnercenter.microsoft.com"

static const long statuses[] = { 404, 403, 500, 0, 401, 429, 201 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 1)
                return 0;
        long status = data[0] < 0xf0 ? 200 : statuses[(data[0] - 0xf0) % 7];
        const char *body = (const char *) data + 1;
        size_t len = size - 1;

        char *token = NULL;
        long expires = -1;
        int r = pc_parse_token(body, len, &token, &expires);
        FUZZ_CHECK(r == 0 || r == -EBADMSG, "pc_parse_token returned %d", r);
        if (r == 0) {
                FUZZ_CHECK(token && *token, "empty token");
                FUZZ_CHECK(strlen(token) <= 16 * 1024, "token of %zu bytes", strlen(token));
                FUZZ_CHECK(fuzz_find_ctl(token, false) < 0 && !strchr(token, ' '),
                           "token with whitespace/control");
                FUZZ_CHECK(expires > 0 && expires < INT32_MAX, "expires_in %ld", expires);
        } else
                FUZZ_CHECK(!token, "failure with a token");
        free(token);

        char *tenant = NULL;
        enum rel_state s = pc_classify_customer(status, body, len, &tenant);
        FUZZ_CHECK(s == REL_UNKNOWN || s == REL_PENDING || s == REL_ACCEPTED, "state %d", (int) s);
        if (status == 403 || status == 404)
                FUZZ_CHECK(s == REL_PENDING, "status %ld gave %d", status, (int) s);
        else if (status != 200)
                FUZZ_CHECK(s == REL_UNKNOWN, "status %ld gave %d", status, (int) s);
        if (tenant)
                FUZZ_CHECK(fuzz_guid_lower(tenant), "tenant id '%s'", tenant);
        free(tenant);

        char *gst = NULL, *gten = NULL;
        s = graph_classify_relationship(status, body, len, "11111111-1111-4111-8111-111111111111", &gst, &gten);
        FUZZ_CHECK(s == REL_UNKNOWN || s == REL_PENDING || s == REL_ACCEPTED || s == REL_ENDED ||
                   s == REL_NOT_FOUND, "gdap state %d", (int) s);
        FUZZ_CHECK((s == REL_NOT_FOUND) == (status == 404), "status %ld gave gdap %d", status, (int) s);
        if (status != 200 && status != 404)
                FUZZ_CHECK(s == REL_UNKNOWN, "status %ld gave gdap %d", status, (int) s);
        if (gst)
                FUZZ_CHECK(*gst && strlen(gst) <= 64 && fuzz_find_ctl(gst, false) < 0 && !strchr(gst, ' '),
                           "gdap status '%s'", gst);
        if (gten)
                FUZZ_CHECK(fuzz_guid_lower(gten), "gdap tenant id '%s'", gten);
        free(gst);
        free(gten);

        char *uri = fuzz_strndup((const uint8_t *) body, len);
        char *next = pc_next_url(API_URL, uri);
        if (next) {
                FUZZ_CHECK(strncmp(next, "https://" API_HOST "/", strlen("https://" API_HOST "/")) == 0,
                           "next url '%s'", next);
                FUZZ_CHECK(fuzz_find_ctl(next, false) < 0 && !strchr(next, ' '), "next url '%s'", next);
                CURLU *u = curl_url();
                char *host = NULL, *scheme = NULL;
                FUZZ_CHECK(u, "curl_url");
                if (curl_url_set(u, CURLUPART_URL, next, 0) == CURLUE_OK) {
                        FUZZ_CHECK(curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
                                   strcmp(host, API_HOST) == 0, "next url '%s' leaves the host", next);
                        FUZZ_CHECK(curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
                                   strcmp(scheme, "https") == 0, "next url '%s' scheme", next);
                }
                curl_free(host);
                curl_free(scheme);
                curl_url_cleanup(u);
        }
        free(next);
        free(uri);
        return 0;
}
