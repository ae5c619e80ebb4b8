/* SPDX-License-Identifier: MIT */
/*
 * fuzz_mail_header: mail_encode_header() on an arbitrary value.
 *
 * Input layout: byte 0 modulo 78 is the length of "Name: " before the
 * value; the rest (to the first NUL) is the value.
 *
 * Properties: no crash, leak or UB; the output is printable ASCII where
 * every CR LF is followed by SP (folding) and there is no other CR or LF;
 * no line exceeds 998 characters (76 when encoded); every encoded word
 * "=?UTF-8?B?...?=" is at most 75 characters and holds whole UTF-8
 * characters; unfolded and decoded it gives the value back when the value
 * was clean (valid UTF-8, no control characters) apart from the outer
 * spaces it drops.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "mail.h"
#include "text.h"
#include "util.h"

#define EW_MAX 75
#define VALUE_MAX 2048   /* longer values are clipped (lib/mail.c MAIL_MAX_VALUE) */

static int b64val(char c) {
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '+')
                return 62;
        if (c == '/')
                return 63;
        return -1;
}

/* Appends the base64 text [s, s+n) decoded to out; false if malformed. */
static bool b64_decode(const char *s, size_t n, char *out, size_t *o) {
        if (n % 4 != 0)
                return false;
        for (size_t i = 0; i < n; i += 4) {
                int v[4];
                size_t pad = 0;
                for (size_t k = 0; k < 4; k++) {
                        if (s[i + k] == '=' && i + 4 == n && k >= 2) {
                                v[k] = 0;
                                pad++;
                        } else if (pad || (v[k] = b64val(s[i + k])) < 0)
                                return false;
                }
                unsigned w = (unsigned) v[0] << 18 | (unsigned) v[1] << 12 |
                             (unsigned) v[2] << 6 | (unsigned) v[3];
                out[(*o)++] = (char) (w >> 16);
                if (pad < 2)
                        out[(*o)++] = (char) (w >> 8 & 0xff);
                if (pad < 1)
                        out[(*o)++] = (char) (w & 0xff);
        }
        return true;
}

/* Unfolds and decodes the header value; NULL if an encoded word is bad. */
static char *decode(const char *h, size_t n) {
        char *u = malloc(n + 1), *out = malloc(n + 1);
        size_t un = 0, o = 0;
        if (!u || !out)
                abort();
        for (size_t i = 0; i < n; i++) {
                if (h[i] == '\r' && h[i + 1] == '\n') {
                        i++;
                        continue;
                }
                u[un++] = h[i];
        }
        u[un] = '\0';
        if (!strstr(u, "=?UTF-8?B?")) {
                free(out);
                return u;
        }
        /* Encoded: words separated by single spaces (the folds). */
        const char *p = u;
        while (*p == ' ')
                p++;
        while (*p) {
                const char *sp = strchr(p, ' ');
                size_t wl = sp ? (size_t) (sp - p) : strlen(p);
                FUZZ_CHECK(wl <= EW_MAX, "encoded word of %zu characters", wl);
                FUZZ_CHECK(wl >= 12 && strncmp(p, "=?UTF-8?B?", 10) == 0 &&
                           strncmp(p + wl - 2, "?=", 2) == 0, "not an encoded word: '%.*s'",
                           (int) wl, p);
                size_t before = o;
                FUZZ_CHECK(b64_decode(p + 10, wl - 12, out, &o), "bad base64 in '%.*s'", (int) wl, p);
                FUZZ_CHECK(fuzz_utf8_valid(out + before, o - before),
                           "encoded word '%.*s' splits a character", (int) wl, p);
                p += wl;
                if (*p == ' ')
                        p++;
        }
        out[o] = '\0';
        free(u);
        return out;
}

static bool clean(const char *s) {
        size_t n = strlen(s);
        if (n > VALUE_MAX || !fuzz_utf8_valid(s, n) || fuzz_find_ctl(s, false) >= 0)
                return false;
        for (size_t i = 0; i + 1 < n; i++)   /* C1 controls are dropped */
                if ((unsigned char) s[i] == 0xc2 && (unsigned char) s[i + 1] < 0xa0)
                        return false;
        /* so are Unicode format characters (bidi controls, soft hyphen...) */
        for (size_t i = 0, k; i < n; i += k) {
                uint32_t cp;
                k = text_utf8_decode(s + i, n - i, &cp);
                if (k == 0 || text_is_format_char(cp))
                        return false;
        }
        return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 1)
                return 0;
        size_t name_len = data[0] % 78;
        char *value = fuzz_strndup(data + 1, size - 1);
        char *h = mail_encode_header(value, name_len);
        FUZZ_CHECK(h, "mail_encode_header returned NULL");

        size_t n = strlen(h);
        bool encoded = strstr(h, "=?UTF-8?B?") != NULL;
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char) h[i];
                if (c == '\r') {
                        FUZZ_CHECK(h[i + 1] == '\n' && (h[i + 2] == ' ' || h[i + 2] == '\t'),
                                   "CR not part of a fold at %zu", i);
                        continue;
                }
                if (c == '\n') {
                        FUZZ_CHECK(i > 0 && h[i - 1] == '\r', "bare LF at %zu", i);
                        continue;
                }
                FUZZ_CHECK(c >= 0x20 && c < 0x7f, "byte 0x%02x at %zu", c, i);
        }
        size_t longest = fuzz_longest_line(h, n, name_len);
        FUZZ_CHECK(longest <= 998, "line of %zu characters", longest);
        if (encoded)
                FUZZ_CHECK(longest <= (name_len > 76 ? name_len : 76),
                           "encoded line of %zu characters (name %zu)", longest, name_len);

        char *d = decode(h, n);
        FUZZ_CHECK(d, "cannot decode");
        FUZZ_CHECK(fuzz_utf8_valid(d, strlen(d)) && fuzz_find_ctl(d, false) < 0,
                   "decoded value is not clean UTF-8");
        if (clean(value)) {
                const char *v = value;
                size_t vl = strlen(v);
                while (*v == ' ')
                        v++, vl--;
                while (vl > 0 && v[vl - 1] == ' ')
                        vl--;
                FUZZ_CHECK(strlen(d) == vl && memcmp(d, v, vl) == 0,
                           "'%s' decodes to '%s'", value, d);
        }
        free(d);
        free(h);
        free(value);
        return 0;
}
