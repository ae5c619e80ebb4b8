/* SPDX-License-Identifier: MIT */
/*
 * fuzz_mail_qp: mail_encode_qp() on arbitrary text (cut at the first NUL).
 *
 * Properties: no crash, leak or UB; the output has only CRLF line ends,
 * lines of at most 76 characters, only printable ASCII, SP and TAB
 * (never at a line end), and decodes back to the input with every line
 * end made CRLF.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "mail.h"

/* The input with LF or CRLF line ends made CRLF, the last line ended. */
static char *expected(const char *text, size_t *ret_len) {
        size_t n = strlen(text);
        char *out = malloc(2 * n + 3);
        size_t o = 0;
        if (!out)
                abort();
        for (const char *p = text; *p;) {
                const char *nl = strchr(p, '\n');
                size_t l = nl ? (size_t) (nl - p) : strlen(p);
                size_t m = l > 0 && p[l - 1] == '\r' ? l - 1 : l;
                memcpy(out + o, p, m);
                o += m;
                out[o++] = '\r';
                out[o++] = '\n';
                p += l + (nl ? 1 : 0);
        }
        out[o] = '\0';
        *ret_len = o;
        return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *text = fuzz_strndup(data, size);
        char *qp = mail_encode_qp(text);
        FUZZ_CHECK(qp, "mail_encode_qp returned NULL");

        size_t n = strlen(qp);
        FUZZ_CHECK(fuzz_crlf_only(qp, n), "bare CR or LF");
        FUZZ_CHECK(fuzz_longest_line(qp, n, 0) <= 76, "line of %zu characters",
                   fuzz_longest_line(qp, n, 0));
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char) qp[i];
                FUZZ_CHECK((c >= 0x20 && c < 0x7f) || c == '\t' || c == '\r' || c == '\n',
                           "byte 0x%02x at %zu", c, i);
                if ((c == ' ' || c == '\t') && i + 1 < n)
                        FUZZ_CHECK(qp[i + 1] != '\r', "whitespace at a line end (%zu)", i);
        }
        FUZZ_CHECK(n == 0 || (n >= 2 && qp[n - 1] == '\n'), "last line not ended");

        size_t dl = 0, el = 0;
        char *dec = fuzz_qp_decode(qp, n, &dl);
        FUZZ_CHECK(dec, "not well-formed quoted-printable");
        char *exp = expected(text, &el);
        FUZZ_CHECK(dl == el && memcmp(dec, exp, dl) == 0, "decodes to something else");
        free(exp);
        free(dec);
        free(qp);
        free(text);
        return 0;
}
