/* SPDX-License-Identifier: MIT */
#include "secret.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* Every form of one secret: raw, JSON-escaped, percent-encoded. */
#define FORMS 3

struct entry {
        char *form[FORMS];        /* NULL when equal to an earlier form */
        enum secret_kind kind;
        uint64_t seq;
};

static struct entry *entries;
static size_t n_entries;
static uint64_t next_seq;

void secret_wipe(void *p, size_t n) {
        if (p && n)
                explicit_bzero(p, n);
}

void secret_free(char *s) {
        if (!s)
                return;
        explicit_bzero(s, strlen(s));
        free(s);
}

static void entry_clear(struct entry *e) {
        for (size_t i = 0; i < FORMS; i++)
                secret_free(e->form[i]);
        *e = (struct entry) { 0 };
}

/* JSON string escaping as jansson writes it (no '/' escape). */
static char *json_form(const char *s) {
        struct util_buf b;
        util_buf_init(&b, SIZE_MAX / 2);
        for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
                int r;
                if (*p == '"' || *p == '\\')
                        r = util_buf_printf(&b, "\\%c", *p);
                else if (*p < 0x20 || *p == 0x7f)
                        r = util_buf_printf(&b, "\\u%04x", *p);
                else
                        r = util_buf_append(&b, p, 1);
                if (r < 0) {
                        secret_wipe(b.data, b.len);
                        util_buf_free(&b);
                        return NULL;
                }
        }
        return util_buf_steal(&b);
}

/* RFC 3986 percent-encoding (unreserved kept), as a form body carries it. */
static char *pct_form(const char *s) {
        static const char hex[] = "0123456789ABCDEF";
        size_t n = strlen(s);
        char *out = malloc(n * 3 + 1), *o = out;
        if (!out)
                return NULL;
        for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
                if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
                    *p == '-' || *p == '.' || *p == '_' || *p == '~')
                        *o++ = (char) *p;
                else {
                        *o++ = '%';
                        *o++ = hex[*p >> 4];
                        *o++ = hex[*p & 15];
                }
        }
        *o = '\0';
        return out;
}

static bool registered(const char *s) {
        for (size_t i = 0; i < n_entries; i++)
                if (strcmp(entries[i].form[0], s) == 0)
                        return true;
        return false;
}

/* Drops the oldest transient entry when there are too many. */
static void evict_transient(void) {
        size_t n = 0, oldest = SIZE_MAX;
        for (size_t i = 0; i < n_entries; i++)
                if (entries[i].kind == SECRET_TRANSIENT) {
                        n++;
                        if (oldest == SIZE_MAX || entries[i].seq < entries[oldest].seq)
                                oldest = i;
                }
        if (n <= SECRET_MAX_TRANSIENT)
                return;
        entry_clear(&entries[oldest]);
        entries[oldest] = entries[--n_entries];
}

int secret_register(const char *s, enum secret_kind kind) {
        if (!s || strlen(s) < SECRET_MIN_LEN || registered(s))
                return 0;
        struct entry e = { .kind = kind, .seq = next_seq++ };
        e.form[0] = strdup(s);
        e.form[1] = json_form(s);
        e.form[2] = pct_form(s);
        struct entry *v = e.form[0] && e.form[1] && e.form[2]
                          ? reallocarray(entries, n_entries + 1, sizeof(*entries)) : NULL;
        if (!v) {
                entry_clear(&e);
                return -ENOMEM;
        }
        for (size_t i = 1; i < FORMS; i++)
                for (size_t k = 0; k < i; k++)
                        if (e.form[k] && e.form[i] && strcmp(e.form[k], e.form[i]) == 0) {
                                secret_free(e.form[i]);
                                e.form[i] = NULL;
                                break;
                        }
        entries = v;
        entries[n_entries++] = e;
        evict_transient();
        return 0;
}

void secret_forget_all(void) {
        for (size_t i = 0; i < n_entries; i++)
                entry_clear(&entries[i]);
        free(entries);
        entries = NULL;
        n_entries = 0;
}

size_t secret_count(void) {
        return n_entries;
}

/* The registered form that starts earliest in data[0..len), longest first
 * at a tie; NULL when none. */
static const char *first_match(const char *data, size_t len, size_t *ret_off) {
        const char *best = NULL, *best_at = NULL;
        for (size_t i = 0; i < n_entries; i++)
                for (size_t k = 0; k < FORMS; k++) {
                        const char *f = entries[i].form[k];
                        if (!f)
                                continue;
                        const char *at = memmem(data, len, f, strlen(f));
                        if (at && (!best_at || at < best_at || (at == best_at && strlen(f) > strlen(best)))) {
                                best = f;
                                best_at = at;
                        }
                }
        if (best)
                *ret_off = (size_t) (best_at - data);
        return best;
}

bool secret_found(const char *data, size_t len) {
        size_t off;
        return data && first_match(data, len, &off) != NULL;
}

char *secret_scrub(const char *data, size_t len, size_t *ret_len) {
        struct util_buf b;
        size_t pos = 0, off;
        const char *f;
        util_buf_init(&b, SIZE_MAX / 2);
        if (!data)
                data = "";
        while ((f = first_match(data + pos, len - pos, &off))) {
                if (util_buf_append(&b, data + pos, off) < 0 || util_buf_puts(&b, SECRET_REDACTED) < 0)
                        goto oom;
                pos += off + strlen(f);
        }
        if (util_buf_append(&b, data + pos, len - pos) < 0)
                goto oom;
        if (ret_len)
                *ret_len = b.len;
        return util_buf_steal(&b);
oom:
        secret_wipe(b.data, b.len);
        util_buf_free(&b);
        return NULL;
}

char *secret_scrub_str(const char *s) {
        return s ? secret_scrub(s, strlen(s), NULL) : NULL;
}

void secret_scrub_buf(char *s, size_t size) {
        size_t len = 0;
        if (!s || size == 0 || !secret_found(s, strlen(s)))
                return;
        char *c = secret_scrub(s, strlen(s), &len);
        if (!c) {       /* no memory: say nothing rather than the secret */
                snprintf(s, size, "%s", SECRET_REDACTED);
                return;
        }
        if (len >= size) {
                len = size - 1;
                while (len > 0 && ((unsigned char) c[len] & 0xc0) == 0x80)
                        len--;
        }
        memcpy(s, c, len);
        s[len] = '\0';
        free(c);
}
