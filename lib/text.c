/* SPDX-License-Identifier: MIT */
/*
 * text: UTF-8, cleaning and address rules, in one place (see text.h).
 */
#include "text.h"

#include <ctype.h>
#include <string.h>

#include "util.h"

/* ---- UTF-8 -------------------------------------------------------------- */

size_t text_utf8_decode(const char *s, size_t n, uint32_t *ret_cp) {
        const unsigned char *p = (const unsigned char *) s;
        size_t len;
        uint32_t cp, min;

        if (n == 0)
                return 0;
        if (p[0] < 0x80)
                len = 1, cp = p[0], min = 0;
        else if ((p[0] & 0xe0) == 0xc0)
                len = 2, cp = p[0] & 0x1f, min = 0x80;
        else if ((p[0] & 0xf0) == 0xe0)
                len = 3, cp = p[0] & 0x0f, min = 0x800;
        else if ((p[0] & 0xf8) == 0xf0)
                len = 4, cp = p[0] & 0x07, min = 0x10000;
        else
                return 0;
        if (len > n)
                return 0;
        for (size_t i = 1; i < len; i++) {
                if ((p[i] & 0xc0) != 0x80)
                        return 0;     /* also stops at a NUL */
                cp = (cp << 6) | (p[i] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                return 0;
        if (ret_cp)
                *ret_cp = cp;
        return len;
}

bool text_utf8_valid(const char *s, size_t n) {
        for (size_t i = 0, k; i < n; i += k)
                if (!(k = text_utf8_decode(s + i, n - i, NULL)))
                        return false;
        return true;
}

size_t text_utf8_clip(const char *s, size_t len, size_t max) {
        if (len <= max)
                return len;
        size_t n = max;
        while (n > 0 && ((unsigned char) s[n] & 0xc0) == 0x80)
                n--;
        return n;
}

bool text_is_format_char(uint32_t cp) {
        static const struct { uint32_t lo, hi; } cf[] = {
                { 0x00ad, 0x00ad }, { 0x0600, 0x0605 }, { 0x061c, 0x061c }, { 0x06dd, 0x06dd },
                { 0x070f, 0x070f }, { 0x0890, 0x0891 }, { 0x08e2, 0x08e2 }, { 0x180e, 0x180e },
                { 0x200b, 0x200f }, { 0x202a, 0x202e }, { 0x2060, 0x2064 }, { 0x2066, 0x206f },
                { 0xfeff, 0xfeff }, { 0xfff9, 0xfffb }, { 0x110bd, 0x110bd }, { 0x110cd, 0x110cd },
                { 0x13430, 0x1343f }, { 0x1bca0, 0x1bca3 }, { 0x1d173, 0x1d17a },
                { 0xe0001, 0xe0001 }, { 0xe0020, 0xe007f },
        };
        for (size_t i = 0; i < sizeof(cf) / sizeof(cf[0]); i++)
                if (cp >= cf[i].lo && cp <= cf[i].hi)
                        return true;
        return false;
}

char *text_strip_format_chars(char *s) {
        char *w = s;
        if (!s)
                return NULL;
        for (const char *p = s; *p;) {
                uint32_t cp;
                size_t n = text_utf8_decode(p, 4, &cp);
                if (n == 0)
                        n = 1;            /* not ours to judge: kept */
                else if (text_is_format_char(cp)) {
                        p += n;
                        continue;
                }
                memmove(w, p, n);
                w += n;
                p += n;
        }
        *w = '\0';
        return s;
}

/* ---- cleaning ------------------------------------------------------------ */

#define REPLACEMENT "\xef\xbf\xbd"   /* U+FFFD */

/* A C0 control or DEL (one byte). */
static bool is_ctl(unsigned char ch) {
        return ch < 0x20 || ch == 0x7f;
}

/* What the control or blank ch becomes: "" (dropped) or " ". */
static size_t clean_ctl(unsigned char ch, unsigned flags, bool space, char *out) {
        bool blank = (flags & TEXT_FOLD) || ch == '\r' || ch == '\n' || ch == '\t';
        if (!blank || space)
                return 0;
        out[0] = ' ';
        return 1;
}

/* The next character of s (n > 0 bytes left) as cleaning makes it: its
 * bytes in out (0 when dropped); returns how many bytes of s it used. */
static size_t clean_step(const char *s, size_t n, unsigned flags, bool space, char out[static 4],
                         size_t *ret_len) {
        unsigned char ch = (unsigned char) s[0];
        uint32_t cp = 0;
        size_t k = text_utf8_decode(s, n, &cp);
        bool c1 = k == 2 && cp < 0xa0;

        *ret_len = 0;
        if (k == 0 || (c1 && (flags & TEXT_FOLD))) {
                memcpy(out, REPLACEMENT, 3);
                *ret_len = 3;
                return 1;
        }
        if (k == 1 && (is_ctl(ch) || (ch == ' ' && (flags & TEXT_FOLD)))) {
                *ret_len = clean_ctl(ch, flags, space, out);
                return 1;
        }
        if (c1 || (!(flags & TEXT_FOLD) && text_is_format_char(cp)))
                return k;
        memcpy(out, s, k);
        *ret_len = k;
        return k;
}

char *text_clean(const char *s, size_t n, unsigned flags, size_t max) {
        struct util_buf b;
        bool space = flags & TEXT_FOLD, clipped = false;

        util_buf_init(&b, max + 16);
        for (size_t i = 0; i < n;) {
                char piece[4];
                size_t len;
                i += clean_step(s + i, n - i, flags, space, piece, &len);
                if (len == 0)
                        continue;
                if (b.len + len > max) {
                        clipped = true;
                        break;
                }
                if (util_buf_append(&b, piece, len) < 0)
                        goto oom;
                space = piece[0] == ' ';
        }
        if (flags & TEXT_FOLD) {
                while (b.len > 0 && b.data[b.len - 1] == ' ')
                        b.data[--b.len] = '\0';
                if (clipped && util_buf_puts(&b, "...") < 0)
                        goto oom;
        }
        return util_buf_steal(&b);
oom:
        util_buf_free(&b);
        return NULL;
}

char *text_mask_controls(char *s) {
        for (unsigned char *p = (unsigned char *) s; *p; p++)
                if (is_ctl(*p))
                        *p = '?';
        return text_strip_format_chars(s);
}

void text_ascii_line(char *dst, size_t size, const char *src, size_t len) {
        size_t j = 0;
        for (size_t i = 0; i < len && j + 1 < size; i++) {
                unsigned char c = (unsigned char) src[i];
                if (c == '\r' || c == '\n')
                        break;
                dst[j++] = is_ctl(c) || c >= 0x80 ? '?' : (char) c;
        }
        dst[j] = '\0';
}

/* ---- addresses ----------------------------------------------------------- */

bool text_is_atext(char ch) {
        return isalnum((unsigned char) ch) || (ch && strchr("!#$%&'*+-/=?^_`{|}~", ch));
}

bool text_hostname_valid(const char *s, size_t n) {
        size_t label = 0;
        if (n == 0 || n > 253)
                return false;
        for (size_t i = 0; i < n; i++) {
                char ch = s[i];
                if (ch == '.') {
                        if (label == 0 || s[i - 1] == '-')
                                return false;
                        label = 0;
                } else if (isalnum((unsigned char) ch) || ch == '-') {
                        if (ch == '-' && label == 0)
                                return false;
                        if (++label > 63)
                                return false;
                } else
                        return false;
        }
        return label > 0 && s[n - 1] != '-';
}

bool text_addr_spec_valid(const char *s, size_t n) {
        const char *at = memchr(s, '@', n);
        if (!at || n > TEXT_ADDR_SPEC_MAX || memchr(at + 1, '@', n - (size_t) (at - s) - 1))
                return false;
        size_t ll = (size_t) (at - s);
        if (ll == 0 || ll > 64 || s[0] == '.' || s[ll - 1] == '.')
                return false;
        for (size_t i = 0; i < ll; i++) {
                if (s[i] == '.') {
                        if (s[i + 1] == '.')
                                return false;
                } else if (!text_is_atext(s[i]))
                        return false;
        }
        return text_hostname_valid(at + 1, n - ll - 1);
}
