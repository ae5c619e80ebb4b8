/* SPDX-License-Identifier: MIT */
/*
 * mail.c: the pure half of lib/mail — building blocks (RFC 2047 header
 * words, quoted-printable, address parsing, URL allow-list), templates and
 * the composition of one RFC 5322/MIME message.  No I/O except reading the
 * template files.  The transports are in mailsmtp.c, the outbox in
 * mailoutbox.c.
 */
#include "mail.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include "secret.h"
#include "text.h"
#include "url.h"
#include "util.h"

/* Caps on everything we build from outside data. */
#define MAIL_MAX_TEMPLATE   (256u * 1024u)
#define MAIL_MAX_VALUE      2048u            /* one placeholder value or header value */
#define MAIL_MAX_ADDRESS    320u
#define MAIL_MAX_PART       (1024u * 1024u)  /* one rendered body part */
#define MAIL_MAX_MESSAGE    (4u * 1024u * 1024u)
#define MAIL_MAX_URL        2048u

/* The relationship URL allow-list when the configuration names none. */

/* RFC 2047: "=?UTF-8?B?" + "?=" around the base64 text. */
#define EW_OVERHEAD 12u
#define EW_MAX      75u
/* RFC 5322 2.1.1: lines SHOULD be <= 78 characters. */
#define HEADER_LINE_MAX 78u
#define QP_LINE_MAX 76u

/* ---- sanitising ------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at p (1..4), 0 if invalid. */
static size_t utf8_seq_len(const unsigned char *p) {
        return text_utf8_decode((const char *) p, 4, NULL);
}

/* Every value that goes into a mail passes here: one clean line (lib/text:
 * valid UTF-8, no controls, no format characters), at most max bytes, with
 * every registered secret replaced (lib/secret). */
static char *clean_text(const char *s, size_t max) {
        char *c = text_clean(s ? s : "", s ? strlen(s) : 0, 0, max);
        if (c && secret_found(c, strlen(c))) {
                char *scrubbed = secret_scrub(c, strlen(c), NULL);
                free(c);
                return scrubbed;
        }
        return c;
}

static bool is_plain_ascii(const char *s) {
        for (const unsigned char *p = (const unsigned char *) s; *p; p++)
                if (*p < 0x20 || *p > 0x7e)
                        return false;
        return true;
}

/* ---- RFC 2047 --------------------------------------------------------- */

/* Raw bytes that fit in one encoded word starting at column col. */
static size_t ew_capacity(size_t col) {
        size_t avail = col >= QP_LINE_MAX ? 0 : QP_LINE_MAX - col;
        if (avail > EW_MAX)
                avail = EW_MAX;
        if (avail < EW_OVERHEAD + 8)
                return 0;
        return (avail - EW_OVERHEAD) / 4 * 3;
}

/* Appends s (clean UTF-8) as encoded words, folding with CRLF SP; *col is
 * the current column and is updated. */
static int append_encoded_words(struct util_buf *b, const char *s, size_t *col) {
        const unsigned char *p = (const unsigned char *) s;
        int r;

        while (*p) {
                size_t cap = ew_capacity(*col), n = 0;
                if (cap < 4) {
                        r = util_buf_puts(b, "\r\n ");
                        if (r < 0)
                                return r;
                        *col = 1;
                        continue;
                }
                while (p[n]) {
                        size_t k = utf8_seq_len(p + n);
                        if (k == 0)
                                k = 1;     /* cannot happen on clean input */
                        if (n + k > cap)
                                break;
                        n += k;
                }
                size_t before = b->len;
                r = util_buf_puts(b, "=?UTF-8?B?");
                if (r >= 0)
                        r = util_buf_append_base64(b, p, n);
                if (r >= 0)
                        r = util_buf_puts(b, "?=");
                if (r < 0)
                        return r;
                *col += b->len - before;
                p += n;
                if (*p) {
                        r = util_buf_puts(b, "\r\n ");
                        if (r < 0)
                                return r;
                        *col = 1;
                }
        }
        return 0;
}

/* Appends printable ASCII text, folding at spaces to keep lines short. */
static int append_folded_ascii(struct util_buf *b, const char *s, size_t *col) {
        int r;
        while (*s) {
                const char *sp = strchr(s + 1, ' ');
                size_t n = sp ? (size_t) (sp - s) : strlen(s);
                if (*col + n > HEADER_LINE_MAX && *col > 1 && s[0] == ' ') {
                        r = util_buf_puts(b, "\r\n");
                        if (r < 0)
                                return r;
                        *col = 0;
                }
                r = util_buf_append(b, s, n);
                if (r < 0)
                        return r;
                *col += n;
                s += n;
        }
        return 0;
}

/* A value is sent as-is when it is plain ASCII, has no "=?" that a reader
 * could take for an encoded word, and no word too long to fold. */
static bool header_needs_encoding(const char *s) {
        if (!is_plain_ascii(s) || strstr(s, "=?"))
                return true;
        size_t run = 0;
        for (; *s; s++) {
                run = *s == ' ' ? 0 : run + 1;
                if (run > 900)
                        return true;
        }
        return false;
}

static int append_header_text(struct util_buf *b, const char *clean, size_t *col) {
        if (header_needs_encoding(clean))
                return append_encoded_words(b, clean, col);
        return append_folded_ascii(b, clean, col);
}

static char *strip_spaces(char *s) {
        size_t n = strlen(s);
        while (n > 0 && s[n - 1] == ' ')
                s[--n] = '\0';
        size_t i = 0;
        while (s[i] == ' ')
                i++;
        memmove(s, s + i, n - i + 1);
        return s;
}

char *mail_encode_header(const char *value, size_t name_len) {
        struct util_buf b;
        char *clean = clean_text(value, MAIL_MAX_VALUE);
        size_t col = name_len;
        if (!clean)
                return NULL;
        strip_spaces(clean);
        util_buf_init(&b, MAIL_MAX_VALUE * 4);
        if (append_header_text(&b, clean, &col) < 0) {
                free(clean);
                util_buf_free(&b);
                return NULL;
        }
        free(clean);
        return util_buf_steal(&b);
}

/* ---- quoted-printable (RFC 2045 6.7) ---------------------------------- */

static int qp_line(struct util_buf *b, const unsigned char *p, size_t n) {
        static const char hex[] = "0123456789ABCDEF";
        size_t col = 0;
        int r;

        for (size_t i = 0; i < n; i++) {
                char enc[4];
                size_t k;
                unsigned c = p[i];
                bool last = i + 1 == n;

                if ((c >= 33 && c <= 126 && c != '=') || ((c == ' ' || c == '\t') && !last)) {
                        enc[0] = (char) c;
                        k = 1;
                } else {
                        enc[0] = '=';
                        enc[1] = hex[c >> 4];
                        enc[2] = hex[c & 15];
                        k = 3;
                }
                /* Keep room for the soft break "=" unless this is the end. */
                if (col + k > QP_LINE_MAX - 1 && !(last && col + k <= QP_LINE_MAX)) {
                        r = util_buf_puts(b, "=\r\n");
                        if (r < 0)
                                return r;
                        col = 0;
                }
                r = util_buf_append(b, enc, k);
                if (r < 0)
                        return r;
                col += k;
        }
        return util_buf_puts(b, "\r\n");
}

char *mail_encode_qp(const char *text) {
        struct util_buf b;
        const char *p = text ? text : "";

        util_buf_init(&b, MAIL_MAX_MESSAGE);
        while (*p) {
                const char *nl = strchr(p, '\n');
                size_t n = nl ? (size_t) (nl - p) : strlen(p);
                size_t m = n;
                if (m > 0 && p[m - 1] == '\r')
                        m--;
                if (qp_line(&b, (const unsigned char *) p, m) < 0) {
                        util_buf_free(&b);
                        return NULL;
                }
                p += n;
                if (*p == '\n')
                        p++;
        }
        return util_buf_steal(&b);
}

/* ---- addresses -------------------------------------------------------- */

/* The display name before '<' (spaces stripped): a quoted-string
 * unquoted, or plain text without '<', '>' or '"'.  *ret NULL when empty. */
static int unquote_display(const char *s, char **ret) {
        size_t n = strlen(s);
        struct util_buf b;
        int r = 0;

        util_buf_init(&b, MAIL_MAX_ADDRESS);
        if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
                for (size_t i = 1; r >= 0 && i + 1 < n; i++) {
                        if (s[i] == '\\' && i + 2 < n)
                                i++;
                        else if (s[i] == '"')
                                r = -EINVAL;
                        if (r >= 0)
                                r = util_buf_append(&b, s + i, 1);
                }
        } else if (strpbrk(s, "<>\"") || util_buf_puts(&b, s) < 0)
                r = -EINVAL;
        if (r < 0) {
                util_buf_free(&b);
                return -EINVAL;
        }
        *ret = util_buf_steal(&b);
        if (!*ret)
                return -ENOMEM;
        if (!**ret)
                util_freep(ret);
        return 0;
}

/* "Display <addr>" (s ends in '>'; modified): its two halves. */
static int split_angle(char *s, char **ret_display, char **ret_addr) {
        char *lt = strrchr(s, '<');
        if (!lt)
                return -EINVAL;
        s[strlen(s) - 1] = '\0';
        *lt = '\0';
        int r = unquote_display(strip_spaces(s), ret_display);
        if (r < 0)
                return r;
        *ret_addr = strdup(lt + 1);
        return *ret_addr ? 0 : -ENOMEM;
}

int mail_parse_address(const char *s, char **ret_display, char **ret_addr) {
        char *copy, *display = NULL, *addr = NULL;
        int r;

        if (!s || strlen(s) > MAIL_MAX_ADDRESS || util_has_ctl(s, false) || !text_utf8_valid(s, strlen(s)))
                return -EINVAL;
        copy = strdup(s);
        if (!copy)
                return -ENOMEM;
        size_t n = strlen(strip_spaces(copy));
        if (n > 0 && copy[n - 1] == '>')
                r = split_angle(copy, &display, &addr);
        else
                r = (addr = strdup(copy)) ? 0 : -ENOMEM;
        free(copy);
        if (r == 0 && !text_addr_spec_valid(addr, strlen(addr)))
                r = -EINVAL;
        if (r == 0 && ret_display)
                *ret_display = display, display = NULL;
        if (r == 0 && ret_addr)
                *ret_addr = addr, addr = NULL;
        free(display);
        free(addr);
        return r;
}

bool mail_is_addr_spec(const char *s) {
        return s && strlen(s) <= MAIL_MAX_ADDRESS && !util_has_ctl(s, false) && text_addr_spec_valid(s, strlen(s));
}

/* "Display" <addr> for a header, display encoded when needed. */
static int append_address(struct util_buf *b, const char *display, const char *addr, size_t *col) {
        int r;
        if (display && *display) {
                char *clean = clean_text(display, 200);
                if (!clean)
                        return -ENOMEM;
                strip_spaces(clean);
                if (!*clean) {
                        r = 0;
                } else if (header_needs_encoding(clean)) {
                        r = append_encoded_words(b, clean, col);
                } else {
                        bool atoms = true;
                        for (const char *p = clean; *p; p++)
                                if (!text_is_atext(*p) && *p != ' ')
                                        atoms = false;
                        size_t before = b->len;
                        r = util_buf_puts(b, atoms ? "" : "\"");
                        for (const char *p = clean; r >= 0 && *p; p++) {
                                if (!atoms && (*p == '"' || *p == '\\'))
                                        r = util_buf_puts(b, "\\");
                                if (r >= 0)
                                        r = util_buf_append(b, p, 1);
                        }
                        if (r >= 0)
                                r = util_buf_puts(b, atoms ? "" : "\"");
                        *col += b->len - before;
                }
                if (r >= 0 && *clean) {
                        if (*col + strlen(addr) + 3 > HEADER_LINE_MAX) {
                                r = util_buf_puts(b, "\r\n");
                                *col = 0;
                        }
                        if (r >= 0)
                                r = util_buf_puts(b, " ");
                        (*col)++;
                }
                free(clean);
                if (r < 0)
                        return r;
                r = util_buf_printf(b, "<%s>", addr);
                *col += strlen(addr) + 2;
                return r;
        }
        r = util_buf_puts(b, addr);
        *col += strlen(addr);
        return r;
}

/* ---- URL allow-list --------------------------------------------------- */

/* ---- templates -------------------------------------------------------- */

enum tpl_part {
        TPL_SUBJECT = 0,
        TPL_TEXT,
        TPL_HTML,
        _TPL_MAX,
};

static const char *const tpl_suffix[_TPL_MAX] = { ".subject", ".txt", ".html" };

/* Every placeholder a template may use. */
static const char *const placeholders[] = {
        "customer_name", "domain", "tenant_id", "url", "deadline", "days_left",
        "reminder_number", "order_count", "orders", "portal_links", "now", "contact",
        "partner_id",
};

struct mail_templates {
        char *body[_MAIL_KIND_MAX][_TPL_MAX];
        char *name[_MAIL_KIND_MAX][_TPL_MAX];   /* "reminder.txt" */
        char *path[_MAIL_KIND_MAX][_TPL_MAX];   /* the file read; NULL: built in */
};

struct mail_templates *mail_templates_free(struct mail_templates *t) {
        if (!t)
                return NULL;
        for (size_t k = 0; k < _MAIL_KIND_MAX; k++)
                for (size_t p = 0; p < _TPL_MAX; p++) {
                        free(t->body[k][p]);
                        free(t->name[k][p]);
                        free(t->path[k][p]);
                }
        free(t);
        return NULL;
}

bool mail_templates_source(const struct mail_templates *t, size_t i, const char **ret_name,
                           const char **ret_path) {
        if (!t || i >= (size_t) _MAIL_KIND_MAX * _TPL_MAX)
                return false;
        *ret_name = t->name[i / _TPL_MAX][i % _TPL_MAX];
        *ret_path = t->path[i / _TPL_MAX][i % _TPL_MAX];
        return true;
}

static void errors_add(struct cfg_errors *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void errors_add(struct cfg_errors *e, const char *fmt, ...) {
        va_list ap;
        char *s = NULL;
        if (!e)
                return;
        va_start(ap, fmt);
        int n = vasprintf(&s, fmt, ap);
        va_end(ap);
        if (n < 0)
                return;
        char **items = realloc(e->items, (e->n + 1) * sizeof(*items));
        if (!items) {
                free(s);
                return;
        }
        e->items = items;
        e->items[e->n++] = s;
}

static bool placeholder_known(const char *name, size_t n) {
        for (size_t i = 0; i < sizeof(placeholders) / sizeof(placeholders[0]); i++)
                if (strlen(placeholders[i]) == n && memcmp(placeholders[i], name, n) == 0)
                        return true;
        return false;
}

/* Checks every {{...}} of a template; returns the number of problems. */
static size_t template_check(const char *path, const char *text, struct cfg_errors *errors) {
        size_t bad = 0, line = 1;
        for (const char *p = text; *p; p++) {
                if (*p == '\n') {
                        line++;
                        continue;
                }
                if (p[0] != '{' || p[1] != '{')
                        continue;
                const char *name = p + 2;
                const char *end = strstr(name, "}}");
                const char *nl = strchr(name, '\n');
                if (!end || (nl && nl < end)) {
                        errors_add(errors, "%s:%zu: unterminated placeholder", path, line);
                        bad++;
                        continue;
                }
                size_t n = (size_t) (end - name);
                if (!placeholder_known(name, n)) {
                        errors_add(errors, "%s:%zu: unknown placeholder {{%.*s}}", path, line,
                                   (int) (n > 64 ? 64 : n), name);
                        bad++;
                }
                p = end + 1;
        }
        return bad;
}

/* Reads template `name`: override_dir/name if it exists, else
 * default_dir/name, else (default_dir NULL) the built-in copy.  *ret_path
 * is the file read (NULL for the built-in one); on failure the path the
 * error is about, or NULL. */
static int template_read(const char *override_dir, const char *default_dir, const char *name,
                         char **ret_data, char **ret_path) {
        const char *dirs[2] = { override_dir, default_dir };
        int r = -ENOENT;

        for (size_t d = 0; d < 2 && r == -ENOENT; d++) {
                if (!dirs[d] || !*dirs[d])
                        continue;
                free(*ret_path);
                if (asprintf(ret_path, "%s/%s", dirs[d], name) < 0) {
                        *ret_path = NULL;
                        return -ENOMEM;
                }
                r = util_read_file(*ret_path, MAIL_MAX_TEMPLATE, ret_data, NULL);
        }
        if (r != -ENOENT || default_dir)
                return r;
        for (const struct mail_builtin *b = mail_builtin_templates; b->name; b++)
                if (strcmp(b->name, name) == 0) {
                        util_freep(ret_path);
                        *ret_data = strdup(b->data);
                        return *ret_data ? 0 : -ENOMEM;
                }
        util_freep(ret_path);
        return -ENOENT;
}

/* Checks one template as read; returns the number of problems. */
static size_t template_validate(const char *where, bool subject, char *data, struct cfg_errors *errors) {
        size_t bad = 0;

        for (const unsigned char *p = (const unsigned char *) data; *p; ) {
                size_t n = utf8_seq_len(p);
                if (n == 0) {
                        errors_add(errors, "%s:0: template is not valid UTF-8", where);
                        bad++;
                        break;
                }
                p += n;
        }
        if (subject) {
                /* One line; trailing newline(s) dropped. */
                size_t n = strlen(data);
                while (n > 0 && (data[n - 1] == '\n' || data[n - 1] == '\r'))
                        data[--n] = '\0';
                if (strchr(data, '\n') || n == 0) {
                        errors_add(errors, "%s:1: the subject must be one non-empty line", where);
                        bad++;
                }
        }
        return bad + template_check(where, data, errors);
}

int mail_templates_load(const char *override_dir, const char *default_dir,
                        struct mail_templates **ret, struct cfg_errors *errors) {
        struct mail_templates *t = calloc(1, sizeof(*t));
        size_t bad = 0;
        int first_error = 0;

        if (!t)
                return -ENOMEM;
        for (size_t k = 0; k < _MAIL_KIND_MAX; k++)
                for (size_t part = 0; part < _TPL_MAX; part++) {
                        char **name = &t->name[k][part], **path = &t->path[k][part];
                        int r = asprintf(name, "%s%s", mail_kind_to_string(k), tpl_suffix[part]);

                        if (r < 0) {
                                *name = NULL;
                                r = -ENOMEM;
                        } else
                                r = template_read(override_dir, default_dir, *name, &t->body[k][part], path);
                        if (r < 0) {
                                errors_add(errors, "%s:0: cannot read template: %s",
                                           *path ? *path : *name ? *name : mail_kind_to_string(k),
                                           r == -ENOENT && !*path ? "no built-in template of that name"
                                                                  : strerror(-r));
                                bad++;
                                if (!first_error)
                                        first_error = r;
                                continue;
                        }
                        /* Built-in ones are named "(built in) NAME" in messages. */
                        char *where = NULL;
                        if (!*path && asprintf(&where, "(built in) %s", *name) < 0)
                                where = NULL;
                        bad += template_validate(*path ? *path : where ? where : *name, part == TPL_SUBJECT,
                                                 t->body[k][part], errors);
                        free(where);
                }
        if (bad > 0) {
                mail_templates_free(t);
                return first_error ? first_error : -EINVAL;
        }
        *ret = t;
        return 0;
}

/* ---- rendering -------------------------------------------------------- */

static const char *const month_names[12] = {
        "January", "February", "March", "April", "May", "June", "July",
        "August", "September", "October", "November", "December",
};

/* "9 December 2026, 14:00 UTC" */
/* t as "25 November 2026, 09:00 UTC"; none when t is not set. */
static void format_human_time(int64_t t, const char *none, char *buf, size_t n) {
        struct tm tm;
        time_t tt = (time_t) t;
        if (t <= 0 || !gmtime_r(&tt, &tm)) {
                snprintf(buf, n, "%s", none);
                return;
        }
        snprintf(buf, n, "%d %s %d, %02d:%02d UTC", tm.tm_mday, month_names[tm.tm_mon],
                 tm.tm_year + 1900, tm.tm_hour, tm.tm_min);
}

static int html_escape_append(struct util_buf *b, const char *s) {
        int r = 0;
        for (; *s && r >= 0; s++) {
                switch (*s) {
                case '&': r = util_buf_puts(b, "&amp;"); break;
                case '<': r = util_buf_puts(b, "&lt;"); break;
                case '>': r = util_buf_puts(b, "&gt;"); break;
                case '"': r = util_buf_puts(b, "&quot;"); break;
                case '\'': r = util_buf_puts(b, "&#39;"); break;
                default: r = util_buf_append(b, s, 1); break;
                }
        }
        return r;
}

/* A link we may put in an href (the URL policy's rule). */
static bool link_usable(const char *s) {
        return url_href_ok(s, MAIL_MAX_URL);
}

/* The values of one render, each in its text form and (for the lists) its
 * ready HTML form. */
struct render_values {
        char *v[sizeof(placeholders) / sizeof(placeholders[0])];
        char *orders_html;
        char *links_html;
};

static void render_values_clear(struct render_values *rv) {
        for (size_t i = 0; i < sizeof(rv->v) / sizeof(rv->v[0]); i++)
                free(rv->v[i]);
        free(rv->orders_html);
        free(rv->links_html);
}

static size_t placeholder_index(const char *name, size_t n) {
        for (size_t i = 0; i < sizeof(placeholders) / sizeof(placeholders[0]); i++)
                if (strlen(placeholders[i]) == n && memcmp(placeholders[i], name, n) == 0)
                        return i;
        return SIZE_MAX;
}

static int set_value(struct render_values *rv, const char *name, const char *value) {
        size_t i = placeholder_index(name, strlen(name));
        char *c = clean_text(value ? value : "", MAIL_MAX_VALUE);
        if (!c)
                return -ENOMEM;
        strip_spaces(c);
        free(rv->v[i]);
        rv->v[i] = c;
        return 0;
}

/* The HTML order rows.  Every cell has a class, and the labels only a phone
 * layout shows (a template's @media rule displaying span.order-label, when
 * it stacks the cells and hides the column headings) are hidden by default;
 * the order id never wraps. */
#define ORDER_LABEL(s)  "<span class=\"order-label\" style=\"display:none;\">" s "</span>"

static int order_td(struct util_buf *h, const char *cls, const char *style) {
        return util_buf_printf(h, "<td class=\"order-%s\" style=\"padding:6px 8px;border-bottom:1px solid #e0e0e0;"
                               "font-size:14px;vertical-align:top;%s\">", cls, style);
}

/* One order of a mail, cleaned: what its text lines, HTML row and portal
 * link show. */
struct order_row {
        char *id, *product, *err;     /* clean; err NULL when the order has none */
        const char *portal;           /* a usable portal link, else NULL */
        char since[64], deadline[64];
};

static void order_row_free(struct order_row *row) {
        free(row->id);
        free(row->product);
        free(row->err);
}

/* none: what an unknown time reads as. */
static int order_row_init(struct order_row *row, const struct mail_order *o, const char *none) {
        *row = (struct order_row) {
                .id = clean_text(o->id ? o->id : "?", 128),
                .product = clean_text(o->product ? o->product : "", 256),
                .err = o->error ? clean_text(o->error, 1024) : NULL,
                .portal = link_usable(o->portal_link) ? o->portal_link : NULL,
        };
        if (!row->id || !row->product || (o->error && !row->err)) {
                order_row_free(row);
                return -ENOMEM;
        }
        format_human_time(o->querying_since, none, row->since, sizeof(row->since));
        format_human_time(o->deadline, none, row->deadline, sizeof(row->deadline));
        return 0;
}

/* The plain-text lines of one order (a blank line before all but the
 * first). */
static int order_text(struct util_buf *t, const struct order_row *row) {
        int r = t->len > 0 ? util_buf_puts(t, "\n") : 0;
        if (r >= 0)
                r = util_buf_printf(t, "  %s%s%s\n", row->id, *row->product ? " - " : "", row->product);
        if (r >= 0 && row->portal)
                r = util_buf_printf(t, "    Portal: %s\n", row->portal);
        if (r >= 0)
                r = util_buf_printf(t, "    Querying since: %s\n    Deadline: %s\n", row->since, row->deadline);
        if (r >= 0 && row->err && *row->err)
                r = util_buf_printf(t, "    Reason: %s\n", row->err);
        return r;
}

/* <a href="HREF" ...>, then text (escaped) or else inner (HTML), </a>. */
static int html_link(struct util_buf *h, const char *href, const char *text, const char *inner) {
        int r = util_buf_puts(h, "<a href=\"");
        if (r >= 0)
                r = html_escape_append(h, href);
        if (r >= 0)
                r = util_buf_puts(h, "\" style=\"color:#0b57d0;\">");
        if (r >= 0)
                r = text ? html_escape_append(h, text) : util_buf_puts(h, inner);
        if (r >= 0)
                r = util_buf_puts(h, "</a>");
        return r;
}

/* One cell: its label for the phone layout (HTML), then text escaped. */
static int order_cell(struct util_buf *h, const char *cls, const char *style, const char *label,
                      const char *text) {
        int r = order_td(h, cls, style);
        if (r >= 0)
                r = util_buf_puts(h, label);
        if (r >= 0)
                r = html_escape_append(h, text);
        if (r >= 0)
                r = util_buf_puts(h, "</td>");
        return r;
}

/* The HTML row of one order, and its reason row when it has one. */
static int order_html(struct util_buf *h, const struct order_row *row) {
        int r = util_buf_puts(h, "<tr class=\"order\">");
        if (r >= 0)
                r = order_cell(h, "id", "white-space:nowrap;", "", row->id);
        if (r >= 0)
                r = order_cell(h, "product", "", "", row->product);
        if (r >= 0)
                r = order_td(h, "portal", "");
        if (r >= 0 && row->portal)
                r = html_link(h, row->portal, NULL, "Open" ORDER_LABEL(" in the portal"));
        if (r >= 0)
                r = util_buf_puts(h, "</td>");
        if (r >= 0)
                r = order_cell(h, "since", "", ORDER_LABEL("Waiting since "), row->since);
        if (r >= 0)
                r = order_cell(h, "deadline", "", ORDER_LABEL("Deadline "), row->deadline);
        if (r >= 0)
                r = util_buf_puts(h, "</tr>\n");
        if (r < 0 || !row->err || !*row->err)
                return r;
        r = util_buf_puts(h, "<tr class=\"order-reason\"><td colspan=\"5\" "
                             "class=\"order-reason\" style=\"padding:2px 8px 8px;"
                             "font-size:14px;color:#8a1c1c;\">Reason: ");
        if (r >= 0)
                r = html_escape_append(h, row->err);
        if (r >= 0)
                r = util_buf_puts(h, "</td></tr>\n");
        return r;
}

/* The order's entry in the portal link lists (text and HTML). */
static int order_link(struct util_buf *lt, struct util_buf *lh, const struct order_row *row) {
        if (!row->portal)
                return 0;
        int r = util_buf_printf(lt, "%s%s: %s", lt->len ? "\n" : "", row->id, row->portal);
        if (r >= 0 && lh->len)
                r = util_buf_puts(lh, "<br>\n");
        if (r >= 0)
                r = html_link(lh, row->portal, row->id, NULL);
        return r;
}

/* Hands the four lists to the render values (freed there). */
static int order_lists_store(struct render_values *rv, struct util_buf *t, struct util_buf *h,
                             struct util_buf *lt, struct util_buf *lh) {
        size_t io = placeholder_index("orders", 6), il = placeholder_index("portal_links", 12);
        if (t->len > 0 && t->data[t->len - 1] == '\n')
                t->data[--t->len] = '\0';
        free(rv->v[io]);
        free(rv->v[il]);
        rv->v[io] = util_buf_steal(t);
        rv->v[il] = util_buf_steal(lt);
        rv->orders_html = util_buf_steal(h);
        rv->links_html = util_buf_steal(lh);
        return !rv->v[io] || !rv->v[il] || !rv->orders_html || !rv->links_html ? -ENOMEM : 0;
}

static int build_order_lists(struct render_values *rv, const struct mail_context *ctx) {
        struct util_buf t, h, lt, lh;
        /* A Draft order is not Querying yet: no clock runs, nothing is unknown. */
        const char *none = ctx->kind == MAIL_KIND_DRAFT_WARNING || ctx->kind == MAIL_KIND_GDAP_DRAFT_WARNING
                                   ? "not yet" : "unknown";
        int r = 0;

        util_buf_init(&t, MAIL_MAX_PART);
        util_buf_init(&h, MAIL_MAX_PART);
        util_buf_init(&lt, MAIL_MAX_PART);
        util_buf_init(&lh, MAIL_MAX_PART);
        for (size_t i = 0; i < ctx->n_orders && r >= 0; i++) {
                struct order_row row;
                r = order_row_init(&row, &ctx->orders[i], none);
                if (r < 0)
                        break;
                r = order_text(&t, &row);
                if (r >= 0)
                        r = order_html(&h, &row);
                if (r >= 0)
                        r = order_link(&lt, &lh, &row);
                order_row_free(&row);
        }
        if (r >= 0)
                r = order_lists_store(rv, &t, &h, &lt, &lh);
        util_buf_free(&t);
        util_buf_free(&h);
        util_buf_free(&lt);
        util_buf_free(&lh);
        return r;
}

static int expand(const char *tpl, enum tpl_part part, const struct render_values *rv, char **ret) {
        struct util_buf b;
        int r = 0;

        util_buf_init(&b, MAIL_MAX_PART);
        for (const char *p = tpl; *p && r >= 0; ) {
                const char *open = strstr(p, "{{");
                const char *end = open ? strstr(open + 2, "}}") : NULL;
                if (!open || !end) {
                        r = util_buf_puts(&b, p);
                        break;
                }
                r = util_buf_append(&b, p, (size_t) (open - p));
                if (r < 0)
                        break;
                size_t i = placeholder_index(open + 2, (size_t) (end - open - 2));
                if (i == SIZE_MAX) {
                        r = -EINVAL;        /* checked at load time */
                        break;
                }
                const char *v = rv->v[i] ? rv->v[i] : "";
                if (part == TPL_HTML && strcmp(placeholders[i], "orders") == 0)
                        r = util_buf_puts(&b, rv->orders_html ? rv->orders_html : "");
                else if (part == TPL_HTML && strcmp(placeholders[i], "portal_links") == 0)
                        r = util_buf_puts(&b, rv->links_html ? rv->links_html : "");
                else if (part == TPL_HTML)
                        r = html_escape_append(&b, v);
                else
                        r = util_buf_puts(&b, v);
                p = end + 2;
        }
        if (r < 0) {
                util_buf_free(&b);
                return r;
        }
        *ret = util_buf_steal(&b);
        return *ret ? 0 : -ENOMEM;
}

struct mail_message *mail_message_free(struct mail_message *m) {
        if (!m)
                return NULL;
        free(m->message_id);
        free(m->envelope_from);
        for (size_t i = 0; i < m->n_rcpt; i++)
                free(m->rcpt[i]);
        free(m->rcpt);
        free(m->subject);
        free(m->text);
        free(m->data);
        free(m);
        return NULL;
}

/* One header recipient list being built, with the envelope. */
struct rcpt_set {
        char **addr;
        size_t n;
};

static void rcpt_set_clear(struct rcpt_set *s) {
        for (size_t i = 0; i < s->n; i++)
                free(s->addr[i]);
        free(s->addr);
        *s = (struct rcpt_set) {};
}

/* Adds addr to the envelope unless present; returns 1 when added. */
static int rcpt_add(struct rcpt_set *s, const char *addr) {
        for (size_t i = 0; i < s->n; i++)
                if (util_streq_ci(s->addr[i], addr))
                        return 0;
        char **a = realloc(s->addr, (s->n + 1) * sizeof(*a));
        if (!a)
                return -ENOMEM;
        s->addr = a;
        s->addr[s->n] = strdup(addr);
        if (!s->addr[s->n])
                return -ENOMEM;
        s->n++;
        return 1;
}

/* Appends "Name: a, b, ..." for list (entries "Name <addr>" or "addr").
 * Invalid entries fail with -EINVAL unless skip_invalid. */
static int append_recipients(struct util_buf *hdr, const char *name, char *const *list, size_t n,
                             bool skip_invalid, bool *first, struct rcpt_set *env, char **ret_err) {
        size_t col = 0;
        int r;

        for (size_t i = 0; i < n; i++) {
                char *display = NULL, *addr = NULL;
                r = mail_parse_address(list[i], &display, &addr);
                if (r == -ENOMEM)
                        return r;
                if (r < 0) {
                        if (skip_invalid)
                                continue;
                        if (ret_err && asprintf(ret_err, "invalid %s address in the configuration", name) < 0)
                                *ret_err = NULL;
                        return -EINVAL;
                }
                r = rcpt_add(env, addr);
                if (r > 0 && hdr) {
                        if (*first) {
                                r = util_buf_printf(hdr, "%s: ", name);
                                col = strlen(name) + 2;
                                *first = false;
                        } else {
                                r = util_buf_puts(hdr, ",\r\n ");
                                col = 1;
                        }
                        if (r >= 0)
                                r = append_address(hdr, display, addr, &col);
                }
                free(display);
                free(addr);
                if (r < 0)
                        return r;
        }
        return 0;
}

static bool kind_needs_url(enum mail_kind k) {
        return k == MAIL_KIND_NEW_REQUEST || k == MAIL_KIND_REMINDER ||
               k == MAIL_KIND_FINAL_WARNING || k == MAIL_KIND_DRAFT_WARNING ||
               k == MAIL_KIND_GDAP_REQUEST || k == MAIL_KIND_GDAP_REMINDER ||
               k == MAIL_KIND_GDAP_FINAL_WARNING || k == MAIL_KIND_GDAP_DRAFT_WARNING;
}

static int fail(char **ret_err, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char **ret_err, int r, const char *fmt, ...) {
        va_list ap;
        if (!ret_err)
                return r;
        va_start(ap, fmt);
        if (vasprintf(ret_err, fmt, ap) < 0)
                *ret_err = NULL;
        va_end(ap);
        return r;
}

static int random_hex(char *buf, size_t nbytes) {
        unsigned char raw[32];
        if (nbytes > sizeof(raw))
                return -EINVAL;
        int r = util_random_bytes(raw, nbytes);
        if (r < 0)
                return r;
        for (size_t i = 0; i < nbytes; i++)
                snprintf(buf + 2 * i, 3, "%02x", raw[i]);
        return 0;
}

static int fill_values(struct render_values *rv, const struct mail_context *ctx, const char *url,
                       const char *from_addr) {
        char buf[64];
        int64_t now = ctx->now > 0 ? ctx->now : util_now_wall();
        const char *name = ctx->customer_name && *ctx->customer_name ? ctx->customer_name :
                           ctx->domain && *ctx->domain ? ctx->domain : "your organisation";
        int r;

        r = set_value(rv, "customer_name", name);
        if (r >= 0)
                r = set_value(rv, "domain", ctx->domain && *ctx->domain ? ctx->domain : "(not known)");
        if (r >= 0)
                r = set_value(rv, "tenant_id", ctx->tenant_id && *ctx->tenant_id ? ctx->tenant_id : "(not known)");
        if (r >= 0)
                r = set_value(rv, "url", url ? url : "");
        format_human_time(ctx->deadline, "unknown", buf, sizeof(buf));
        if (r >= 0)
                r = set_value(rv, "deadline", buf);
        if (ctx->deadline > 0) {
                int64_t left = ctx->deadline - now;
                snprintf(buf, sizeof(buf), "%lld",
                         (long long) (left <= 0 ? 0 : (left + UTIL_SEC_PER_DAY - 1) / UTIL_SEC_PER_DAY));
        } else
                snprintf(buf, sizeof(buf), "unknown");
        if (r >= 0)
                r = set_value(rv, "days_left", buf);
        snprintf(buf, sizeof(buf), "%d", ctx->reminder_number);
        if (r >= 0)
                r = set_value(rv, "reminder_number", buf);
        snprintf(buf, sizeof(buf), "%zu", ctx->n_orders);
        if (r >= 0)
                r = set_value(rv, "order_count", buf);
        format_human_time(now, "unknown", buf, sizeof(buf));
        if (r >= 0)
                r = set_value(rv, "now", buf);
        if (r >= 0)
                r = set_value(rv, "contact", from_addr);
        if (r >= 0)
                r = set_value(rv, "partner_id", ctx->partner_id && *ctx->partner_id ? ctx->partner_id
                                                                                  : "(none)");
        if (r >= 0)
                r = build_order_lists(rv, ctx);
        return r;
}

static int append_part(struct util_buf *b, const char *boundary, const char *type, const char *body) {
        char *qp = mail_encode_qp(body);
        if (!qp)
                return -ENOMEM;
        int r = util_buf_printf(b, "--%s\r\nContent-Type: %s; charset=UTF-8\r\n"
                                "Content-Transfer-Encoding: quoted-printable\r\n\r\n", boundary, type);
        if (r >= 0)
                r = util_buf_puts(b, qp);
        free(qp);
        return r;
}

/* The relationship URL of ctx (NULL when it names none): refused unless
 * the allow-list has its host, required by the kinds that ask the
 * customer to accept it. */
static int request_url(const struct cfg_mail *cfg, const struct mail_context *ctx, const char **ret_url,
                       char **ret_err) {
        const char *url = ctx->url && *ctx->url ? ctx->url : NULL;
        if (url && !url_link_allowed(url, cfg->url_hosts, cfg->n_url_hosts))
                return fail(ret_err, -EINVAL,
                            "relationship URL refused: it must be https:// on an allowed host (%s%s)",
                            cfg->n_url_hosts > 0 ? cfg->url_hosts[0] : url_link_hosts[0],
                            cfg->n_url_hosts > 1 ? ", ..." : "");
        if (!url && kind_needs_url(ctx->kind))
                return fail(ret_err, -EINVAL, "no relationship URL for a %s mail", mail_kind_to_string(ctx->kind));
        *ret_url = url;
        return 0;
}

/* The three templates of kind expanded; the subject made one clean line. */
static int expand_all(const struct mail_templates *t, enum mail_kind kind, const struct render_values *rv,
                      char **subject, char **text, char **html, char **ret_err) {
        int r = expand(t->body[kind][TPL_SUBJECT], TPL_SUBJECT, rv, subject);
        if (r >= 0)
                r = expand(t->body[kind][TPL_TEXT], TPL_TEXT, rv, text);
        if (r >= 0)
                r = expand(t->body[kind][TPL_HTML], TPL_HTML, rv, html);
        if (r < 0)
                return fail(ret_err, r, "cannot expand the %s templates", mail_kind_to_string(kind));
        char *c = clean_text(*subject, MAIL_MAX_VALUE);
        if (!c)
                return -ENOMEM;
        free(*subject);
        *subject = strip_spaces(c);
        return 0;
}

/* Date:, Message-ID: (random, on the From domain) and From: lines. */
static int append_origin(struct util_buf *hdr, int64_t now, const char *from_display, const char *from_addr,
                         char **ret_id) {
        static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
        static const char *const mons[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
        time_t tt = (time_t) now;
        struct tm tm;
        char rnd[33];
        size_t col = 6;

        if (!gmtime_r(&tt, &tm))
                return -EINVAL;
        int r = random_hex(rnd, 16);
        if (r < 0)
                return r;
        if (asprintf(ret_id, "<%s.%lld@%s>", rnd, (long long) now, strrchr(from_addr, '@') + 1) < 0) {
                *ret_id = NULL;
                return -ENOMEM;
        }
        r = util_buf_printf(hdr, "Date: %s, %d %s %d %02d:%02d:%02d +0000\r\nMessage-ID: %s\r\nFrom: ",
                            days[tm.tm_wday], tm.tm_mday, mons[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour,
                            tm.tm_min, tm.tm_sec, *ret_id);
        if (r >= 0)
                r = append_address(hdr, from_display, from_addr, &col);
        if (r >= 0)
                r = util_buf_puts(hdr, "\r\n");
        return r;
}

/* To: the configured list (ops for an ops notice) and the order contacts;
 * Cc; Bcc only in the envelope.  Every recipient goes into env. */
static int append_rcpt_headers(struct util_buf *hdr, const struct cfg_mail *cfg, const struct mail_context *ctx,
                               struct rcpt_set *env, char **ret_err) {
        bool ops = mail_kind_is_ops(ctx->kind) && cfg->n_ops > 0;
        bool first = true;
        int r = append_recipients(hdr, "To", ops ? cfg->ops : cfg->to, ops ? cfg->n_ops : cfg->n_to, false,
                                  &first, env, ret_err);
        if (r >= 0)
                r = append_recipients(hdr, "To", ctx->extra_rcpt, ctx->n_extra_rcpt, true, &first, env, ret_err);
        if (r >= 0)
                /* No To at all: RFC 5322 allows it, but say who it is for. */
                r = util_buf_puts(hdr, first ? "To: undisclosed-recipients:;\r\n" : "\r\n");
        first = true;
        if (r >= 0)
                r = append_recipients(hdr, "Cc", cfg->cc, cfg->n_cc, false, &first, env, ret_err);
        if (r >= 0 && !first)
                r = util_buf_puts(hdr, "\r\n");
        if (r >= 0)
                r = append_recipients(NULL, "Bcc", cfg->bcc, cfg->n_bcc, false, &first, env, ret_err);
        if (r >= 0 && env->n == 0)
                r = fail(ret_err, -EINVAL, "no recipients for a %s mail", mail_kind_to_string(ctx->kind));
        return r;
}

/* Subject: and the MIME headers, then the text and HTML parts. */
static int append_body(struct util_buf *hdr, const char *subject, const char *text, const char *html,
                       char **ret_err) {
        char rnd[33], boundary[64];
        int r = random_hex(rnd, 12);
        if (r < 0)
                return r;
        snprintf(boundary, sizeof(boundary), "=_partnerd_%s", rnd);
        char *subject_enc = mail_encode_header(subject, strlen("Subject: "));
        if (!subject_enc)
                return -ENOMEM;
        r = util_buf_printf(hdr, "Subject: %s\r\nMIME-Version: 1.0\r\n"
                            "Auto-Submitted: auto-generated\r\nX-Auto-Response-Suppress: All\r\n"
                            "Content-Type: multipart/alternative;\r\n boundary=\"%s\"\r\n\r\n"
                            "This is a multi-part message in MIME format.\r\n\r\n",
                            subject_enc, boundary);
        free(subject_enc);
        if (r >= 0)
                r = append_part(hdr, boundary, "text/plain", text);
        if (r >= 0)
                r = util_buf_puts(hdr, "\r\n");
        if (r >= 0)
                r = append_part(hdr, boundary, "text/html", html);
        if (r >= 0)
                r = util_buf_printf(hdr, "\r\n--%s--\r\n", boundary);
        if (r == -E2BIG)
                r = fail(ret_err, r, "the rendered message is too large");
        return r;
}

int mail_render(const struct mail_templates *t, const struct cfg_mail *cfg,
                const struct mail_context *ctx, struct mail_message **ret, char **ret_err) {
        struct render_values rv = {};
        struct rcpt_set env = {};
        struct util_buf hdr;
        struct mail_message *m = NULL;
        char *from_display = NULL, *from_addr = NULL, *subject = NULL, *text = NULL, *html = NULL;
        const char *url = NULL;
        int r;

        util_buf_init(&hdr, MAIL_MAX_MESSAGE);
        if (ret_err)
                *ret_err = NULL;
        if (!t || !cfg || !ctx || ctx->kind < 0 || ctx->kind >= _MAIL_KIND_MAX)
                return fail(ret_err, -EINVAL, "invalid mail request");

        if (!cfg->from || mail_parse_address(cfg->from, &from_display, &from_addr) < 0)
                r = fail(ret_err, -EINVAL, "the configured From address is not valid");
        else
                r = request_url(cfg, ctx, &url, ret_err);
        if (r >= 0)
                r = fill_values(&rv, ctx, url, from_addr);
        if (r >= 0)
                r = expand_all(t, ctx->kind, &rv, &subject, &text, &html, ret_err);
        if (r >= 0 && !(m = calloc(1, sizeof(*m))))
                r = -ENOMEM;
        if (r >= 0)
                r = append_origin(&hdr, ctx->now > 0 ? ctx->now : util_now_wall(), from_display, from_addr,
                                  &m->message_id);
        if (r >= 0)
                r = append_rcpt_headers(&hdr, cfg, ctx, &env, ret_err);
        if (r >= 0)
                r = append_body(&hdr, subject, text, html, ret_err);
        if (r < 0)
                goto out;

        m->len = hdr.len;
        m->data = util_buf_steal(&hdr);
        m->envelope_from = from_addr;
        from_addr = NULL;
        m->rcpt = env.addr;
        m->n_rcpt = env.n;
        env = (struct rcpt_set) {};
        m->subject = subject;
        subject = NULL;
        m->text = text;
        text = NULL;
        *ret = m;
        m = NULL;
        r = 0;
out:
        if (r == -ENOMEM && ret_err && !*ret_err)
                fail(ret_err, r, "out of memory");
        util_buf_free(&hdr);
        rcpt_set_clear(&env);
        render_values_clear(&rv);
        mail_message_free(m);
        free(from_display);
        free(from_addr);
        free(subject);
        free(text);
        free(html);
        return r;
}

/* The --send-test-mail message: the same composition path as every real
 * mail (headers, encoding, recipients), with a fixed, clearly worded text,
 * addressed like a confirmation (to, cc, bcc). */
int mail_render_test(const struct cfg_mail *cfg, int64_t now, struct mail_message **ret, char **ret_err) {
        static const char *const parts[_TPL_MAX] = {
                [TPL_SUBJECT] = "partnerd test message",
                [TPL_TEXT] = "This is a test message from partnerd, sent with --send-test-mail at {{now}}.\n"
                             "\n"
                             "If you can read it, partnerd can reach you: acceptance requests for Microsoft\n"
                             "reseller relationships will arrive the same way. Nothing needs to be done.\n"
                             "\n"
                             "Sent by {{contact}}.\n",
                [TPL_HTML] = "<!DOCTYPE html><html><body style=\"font-family:sans-serif\">"
                             "<p>This is a test message from partnerd, sent with --send-test-mail at {{now}}.</p>"
                             "<p>If you can read it, partnerd can reach you: acceptance requests for Microsoft "
                             "reseller relationships will arrive the same way. Nothing needs to be done.</p>"
                             "<p>Sent by {{contact}}.</p></body></html>\n",
        };
        struct mail_templates *t = calloc(1, sizeof(*t));
        int r;

        if (!t)
                return -ENOMEM;
        for (size_t p = 0; p < _TPL_MAX; p++)
                if (!(t->body[MAIL_KIND_CONFIRMATION][p] = strdup(parts[p]))) {
                        mail_templates_free(t);
                        return -ENOMEM;
                }
        struct mail_context ctx = { .kind = MAIL_KIND_CONFIRMATION, .now = now };
        r = mail_render(t, cfg, &ctx, ret, ret_err);
        mail_templates_free(t);
        return r;
}
