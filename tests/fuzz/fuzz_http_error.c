/* SPDX-License-Identifier: MIT */
/*
 * fuzz_http_error: api_describe_error() on a fabricated response.
 *
 * Input layout: byte 0 picks the transport result r (0 or one of the errno
 * values http reports), bytes 1-2 the HTTP status (0..999), byte 3 the
 * attempt count; the rest is the body.  When bit 7 of byte 3 is set, the
 * first up to CURL_ERROR_SIZE-1 body bytes (to the first NUL) also become
 * curl's error text.
 *
 * Properties: no crash, leak or UB; the description is never NULL, is one
 * line (no CR, LF or other control character), valid UTF-8, and at most
 * DESCRIBE_MAX bytes.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "apiutil.h"
#include "http.h"

/* Bound stated by the contract ("one human line"); lib/http.c clips at 300. */
#define DESCRIBE_MAX 320

static const int results[] = {
        0, -ECONNREFUSED, -ETIMEDOUT, -ECONNRESET, -EFBIG, -EPROTO, -EHOSTUNREACH,
        -ECANCELED, -ESHUTDOWN, -ENOMEM, -EINVAL, -EIO, -9999,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 4)
                return 0;
        struct http_response resp;
        memset(&resp, 0, sizeof(resp));
        int r = results[data[0] % (sizeof(results) / sizeof(results[0]))];
        if (data[0] >= 0x80)
                r = 0;   /* most inputs: a response arrived */
        resp.status = ((long) data[1] << 8 | data[2]) % 1000;
        resp.attempts = data[3] & 0x7f;
        resp.retry_after_ms = -1;
        resp.curl_code = r < 0 ? CURLE_COULDNT_CONNECT : CURLE_OK;
        resp.body = fuzz_strndup(data + 4, size - 4);
        resp.body_len = size - 4;
        if (data[3] & 0x80) {
                size_t n = strnlen(resp.body, sizeof(resp.error) - 1);
                memcpy(resp.error, resp.body, n);
                resp.error[n] = '\0';
        }

        char *d = api_describe_error(r, &resp);
        FUZZ_CHECK(d, "NULL description");
        size_t len = strlen(d);
        long ctl = fuzz_find_ctl(d, false);
        FUZZ_CHECK(ctl < 0, "control character 0x%02x at %ld in '%s'",
                   (unsigned) (unsigned char) d[ctl], ctl, d);
        FUZZ_CHECK(len <= DESCRIBE_MAX, "%zu bytes: '%s'", len, d);
        FUZZ_CHECK(fuzz_utf8_valid(d, len), "not UTF-8: '%s'", d);
        free(d);

        /* Without a response at all. */
        d = api_describe_error(r < 0 ? r : -ECONNRESET, NULL);
        FUZZ_CHECK(d && fuzz_find_ctl(d, false) < 0, "bad description without response");
        free(d);

        free(resp.body);
        return 0;
}
