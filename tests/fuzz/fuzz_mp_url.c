/* SPDX-License-Identifier: MIT */
/*
 * fuzz_mp_url: url_link_extract() on arbitrary template text
 * (HTML, markdown, plain; cut at the first NUL), and
 * url_link_kind() on the result.
 *
 * Properties: no crash, leak or UB; a found URL starts with https://, has
 * no whitespace, control character, quote or angle bracket, is at most
 * 2048 bytes, is of a known kind and is found again in itself.
 *
 * CHECK_MAIL_ACCEPTS (fixed; regression input corpus/mp_url/regress-mp_url-1): a URL
 * the extractor returns should also pass url_link_allowed() with the
 * default host, else the acceptance mail for it can never be rendered.
 * Set it to 1 once the two agree.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fuzz.h"
#include "mail.h"
#include "marketplace.h"
#include "url.h"

#ifndef CHECK_MAIL_ACCEPTS
#define CHECK_MAIL_ACCEPTS 1
#endif

#define URL_MAX 2048

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *text = fuzz_strndup(data, size);
        char *url = url_link_extract(text);

        if (url) {
                size_t n = strlen(url);
                FUZZ_CHECK(strncasecmp(url, "https://", 8) == 0, "url '%s'", url);
                FUZZ_CHECK(n <= URL_MAX, "url of %zu bytes", n);
                FUZZ_CHECK(fuzz_find_ctl(url, false) < 0, "control character in '%s'", url);
                FUZZ_CHECK(!strpbrk(url, " \t\"'<>`"), "whitespace/quote/bracket in '%s'", url);
                FUZZ_CHECK(url_link_kind(url) != URL_LINK_NONE, "kind NONE for '%s'", url);

                /* Found again (not necessarily equal: a URL may still hold
                 * text that looks escaped, e.g. "&amp;amp;"). */
                char *again = url_link_extract(url);
                FUZZ_CHECK(again, "'%s' not found in itself", url);
                free(again);
                if (CHECK_MAIL_ACCEPTS)
                        FUZZ_CHECK(url_link_allowed(url, NULL, 0),
                                   "extracted URL refused by url_link_allowed: '%s'", url);
        }
        free(url);
        free(text);
        return 0;
}
