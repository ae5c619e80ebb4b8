/* SPDX-License-Identifier: MIT */
/*
 * fuzz_pc: Partner Center / Entra response parsing: pc_parse_token() and
 * pc_classify_customer().
 *
 * Input layout: byte 0 picks the HTTP status for the classification (200
 * for most values), the rest is the body.
 *
 * Properties: no crash, leak or UB; a token is non-empty, at most 16 KiB,
 * without whitespace or control characters (it goes into a header), with
 * 0 < expires_in < 2^31; the classification is a known state, PENDING for
 * 403/404, UNKNOWN for other non-200 statuses; a tenant id is a lower-case
 * GUID.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "partnercenter.h"

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
        return 0;
}
