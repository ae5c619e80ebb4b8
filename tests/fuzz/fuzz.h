/* SPDX-License-Identifier: MIT */
/*
 * Shared helpers of the libFuzzer targets (tests/fuzz/README.md).  A
 * violated property prints "FUZZ PROPERTY: ..." and aborts, which libFuzzer
 * reports as a crash with the input saved.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_CHECK(cond, ...)                                                   \
        do {                                                                    \
                if (!(cond)) {                                                  \
                        fprintf(stderr, "FUZZ PROPERTY: %s:%d: %s: ",           \
                                __FILE__, __LINE__, #cond);                     \
                        fprintf(stderr, __VA_ARGS__);                           \
                        fputc('\n', stderr);                                    \
                        abort();                                                \
                }                                                               \
        } while (0)

/* A NUL-terminated copy of the input (embedded NULs kept in the copy). */
static inline char *fuzz_strndup(const uint8_t *data, size_t size) {
        char *s = malloc(size + 1);
        if (!s)
                abort();
        if (size)
                memcpy(s, data, size);
        s[size] = '\0';
        return s;
}

/* Length of the valid UTF-8 sequence at s (max n bytes), 0 if invalid
 * (overlong forms, surrogates and values above U+10FFFF are invalid). */
static inline size_t fuzz_utf8_len(const unsigned char *s, size_t n) {
        if (n == 0)
                return 0;
        if (s[0] < 0x80)
                return 1;
        size_t l;
        uint32_t cp;
        if (s[0] >= 0xc2 && s[0] <= 0xdf) {
                l = 2; cp = s[0] & 0x1f;
        } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
                l = 3; cp = s[0] & 0x0f;
        } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
                l = 4; cp = s[0] & 0x07;
        } else
                return 0;
        if (n < l)
                return 0;
        for (size_t i = 1; i < l; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                cp = (cp << 6) | (s[i] & 0x3f);
        }
        if ((l == 3 && cp < 0x800) || (l == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
                return 0;
        return l;
}

static inline bool fuzz_utf8_valid(const char *s, size_t n) {
        const unsigned char *p = (const unsigned char *) s;
        for (size_t i = 0; i < n;) {
                size_t l = fuzz_utf8_len(p + i, n - i);
                if (l == 0)
                        return false;
                i += l;
        }
        return true;
}

/* The first byte < 0x20 or 0x7f in s (TAB allowed when allow_tab), or -1. */
static inline long fuzz_find_ctl(const char *s, bool allow_tab) {
        for (const unsigned char *p = (const unsigned char *) s; *p; p++)
                if ((*p < 0x20 && !(allow_tab && *p == '\t')) || *p == 0x7f)
                        return (long) (p - (const unsigned char *) s);
        return -1;
}

/* Checks that s has only CRLF line ends (no bare CR or LF). */
static inline bool fuzz_crlf_only(const char *s, size_t n) {
        for (size_t i = 0; i < n; i++) {
                if (s[i] == '\r' && (i + 1 >= n || s[i + 1] != '\n'))
                        return false;
                if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r'))
                        return false;
        }
        return true;
}

/* The longest CRLF-terminated line of s, without the CRLF; first_col is
 * added to the first line (a header's "Name: "). */
static inline size_t fuzz_longest_line(const char *s, size_t n, size_t first_col) {
        size_t longest = 0, col = first_col;
        for (size_t i = 0; i < n; i++) {
                if (s[i] == '\r' && i + 1 < n && s[i + 1] == '\n') {
                        if (col > longest)
                                longest = col;
                        col = 0;
                        i++;
                } else
                        col++;
        }
        return col > longest ? col : longest;
}

static inline int fuzz_hexval(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* Decodes quoted-printable with CRLF line ends (soft breaks removed, hard
 * breaks kept as CRLF).  NULL when it is not well-formed: upper-case hex
 * only, "=" only before two hex digits or a line end. */
static inline char *fuzz_qp_decode(const char *s, size_t n, size_t *ret_len) {
        char *out = malloc(n + 1);
        size_t o = 0;
        if (!out)
                abort();
        for (size_t i = 0; i < n; i++) {
                if (s[i] != '=') {
                        out[o++] = s[i];
                        continue;
                }
                if (i + 2 < n && s[i + 1] == '\r' && s[i + 2] == '\n') {
                        i += 2;
                        continue;
                }
                int h = i + 2 < n ? fuzz_hexval(s[i + 1]) : -1;
                int l = i + 2 < n ? fuzz_hexval(s[i + 2]) : -1;
                if (h < 0 || l < 0) {
                        free(out);
                        return NULL;
                }
                out[o++] = (char) (h << 4 | l);
                i += 2;
        }
        out[o] = '\0';
        *ret_len = o;
        return out;
}

/* true for a lower-case xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx (hex). */
static inline bool fuzz_guid_lower(const char *s) {
        static const char shape[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
        if (strlen(s) != sizeof(shape) - 1)
                return false;
        for (size_t i = 0; shape[i]; i++)
                if (shape[i] == '-' ? s[i] != '-' : !strchr("0123456789abcdef", s[i]))
                        return false;
        return true;
}
