/* SPDX-License-Identifier: MIT */
/*
 * fuzz_mail_render: mail_render() of every mail kind with a template set
 * that uses every placeholder in the subject, the text and the HTML part,
 * and hostile context values (customer name, domain, tenant id, URL, order
 * ids, products, portal links, error texts, order-contact recipients).
 *
 * Input layout: byte 0 picks the kind, byte 1 flags (bit 0: the URL is
 * prefixed with the allowed "https://admin.microsoft.com/", bits 1-2: the
 * number of orders), bytes 2-3 the reminder number; the rest is split at
 * NUL bytes into the string values, in the order of struct fields below.
 *
 * Properties: no crash, leak or UB; success, or -EINVAL with a one-line
 * message; a rendered message has CRLF line ends only and lines of at most
 * 76 characters in the body; its header block is printable ASCII with
 * only the header fields partnerd writes (no injected field, no Bcc); the
 * envelope recipients are valid addresses; the decoded HTML part has no
 * tag the templates did not write; the decoded text part has no control
 * character but TAB and line ends; both parts are valid UTF-8.
 *
 * CHECK_LINK_UTF8 (fixed; regression input corpus/mail_render/regress-mail_render-1): a
 * portal link with bytes that are not UTF-8 is copied as-is into both
 * parts (link_usable() checks only the scheme and a few characters).
 * While 0, such links are left out of the input.  Set it to 1 once fixed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "fuzz.h"
#include "mail.h"
#include "model.h"

#ifndef CHECK_LINK_UTF8
#define CHECK_LINK_UTF8 1
#endif

static char tmpdir[] = "/tmp/partnerd-fuzz-mail-XXXXXX";
static struct mail_templates *templates;

#define ALL_TEXT "{{customer_name}} | {{domain}} | {{tenant_id}} | {{url}} | {{deadline}} | " \
                 "{{days_left}} | {{reminder_number}} | {{order_count}} | {{now}} | {{contact}}"

static const char subject_tpl[] = "Re: " ALL_TEXT " | {{orders}} | {{portal_links}}\n";
static const char text_tpl[] = "Hello,\n\n" ALL_TEXT "\n\t{{orders}}\n{{portal_links}}\n";
static const char html_tpl[] =
        "<p>" ALL_TEXT "</p>\n<p><a href=\"{{url}}\">{{url}}</a></p>\n"
        "<table>{{orders}}</table>\n<p>{{portal_links}}</p>\n<b>{{customer_name}}</b><br>\n";

/* Tags the templates above and lib/mail.c's order table write. */
static const char *const allowed_tags[] = {
        "<p>", "</p>", "<a href=\"", "</a>", "<table>", "</table>", "<tr>", "<tr class=\"order\">", "</tr>",
        "<td ", "<td>", "</td>", "<br>", "<b>", "</b>", "<tr class=\"order-reason\">",
        "<span class=\"order-label\"", "</span>",
};

/* Header fields mail_render writes. */
static const char *const allowed_fields[] = {
        "Date: ", "Message-ID: ", "From: ", "To: ", "Cc: ", "Subject: ", "MIME-Version: ",
        "Auto-Submitted: ", "X-Auto-Response-Suppress: ", "Content-Type: ",
};

static char *cfg_to[] = { "admins@example.com", "\"Ops, Team\" <ops@example.org>" };
static char *cfg_cc[] = { "cc@example.com" };
static char *cfg_bcc[] = { "audit@example.com" };
static char *cfg_ops[] = { "Ops <ops@example.org>" };
static char *cfg_hosts[] = { "admin.microsoft.com" };

static void cleanup(void) {
        char path[256];
        for (size_t k = 0; k < _MAIL_KIND_MAX; k++) {
                static const char *const sfx[] = { "subject", "txt", "html" };
                for (size_t p = 0; p < 3; p++) {
                        snprintf(path, sizeof(path), "%s/%s.%s", tmpdir, mail_kind_to_string(k),
                                 sfx[p]);
                        unlink(path);
                }
        }
        rmdir(tmpdir);
        mail_templates_free(templates);
}

static void write_file(const char *name, const char *sfx, const char *text) {
        char path[256];
        snprintf(path, sizeof(path), "%s/%s.%s", tmpdir, name, sfx);
        FILE *f = fopen(path, "we");
        if (!f || fputs(text, f) < 0 || fclose(f) != 0)
                abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        (void) argc;
        (void) argv;
        if (!mkdtemp(tmpdir))
                abort();
        for (size_t k = 0; k < _MAIL_KIND_MAX; k++) {
                write_file(mail_kind_to_string(k), "subject", subject_tpl);
                write_file(mail_kind_to_string(k), "txt", text_tpl);
                write_file(mail_kind_to_string(k), "html", html_tpl);
        }
        struct cfg_errors errors = { 0 };
        int r = mail_templates_load(NULL, tmpdir, &templates, &errors);
        for (size_t i = 0; i < errors.n; i++)
                fprintf(stderr, "template: %s\n", errors.items[i]);
        cfg_errors_clear(&errors);
        atexit(cleanup);
        if (r < 0)
                abort();
        return 0;
}

/* The next NUL-terminated field of [*p, end), NULL when none is left. */
static const char *next_field(const char **p, const char *end) {
        if (*p >= end)
                return NULL;
        const char *s = *p;
        *p += strlen(s) + 1;
        return s;
}

static void check_headers(const char *h, size_t n) {
        size_t subjects = 0, froms = 0;
        for (size_t i = 0; i < n;) {
                const char *line = h + i;
                const char *eol = strstr(line, "\r\n");
                size_t l = eol ? (size_t) (eol - line) : n - i;
                if (line[0] == ' ' || line[0] == '\t') {
                        FUZZ_CHECK(i > 0, "headers start with a continuation");
                } else {
                        bool known = false;
                        for (size_t k = 0; k < sizeof(allowed_fields) / sizeof(allowed_fields[0]); k++)
                                if (strncmp(line, allowed_fields[k], strlen(allowed_fields[k])) == 0)
                                        known = true;
                        FUZZ_CHECK(known, "unexpected header line '%.*s'", (int) l, line);
                        subjects += strncmp(line, "Subject: ", 9) == 0;
                        froms += strncmp(line, "From: ", 6) == 0;
                }
                for (size_t k = 0; k < l; k++) {
                        unsigned char c = (unsigned char) line[k];
                        FUZZ_CHECK((c >= 0x20 && c < 0x7f) || c == '\t',
                                   "byte 0x%02x in header line '%.*s'", c, (int) l, line);
                }
                i += l + 2;
        }
        FUZZ_CHECK(subjects == 1 && froms == 1, "%zu Subject, %zu From fields", subjects, froms);
}

/* The decoded body of the part after "Content-Type: TYPE;" (NULL if none). */
static char *part(const char *body, const char *boundary, const char *type, size_t *ret_len) {
        /* Behind the (random) boundary: hostile values cannot fake it. */
        char key[160];
        snprintf(key, sizeof(key), "\r\n--%s\r\nContent-Type: %s;", boundary, type);
        const char *p = strstr(body, key);
        if (!p)
                return NULL;
        p = strstr(p, "\r\n\r\n");
        FUZZ_CHECK(p, "part %s without a body", type);
        p += 4;
        char delim[128];
        snprintf(delim, sizeof(delim), "\r\n--%s", boundary);
        const char *e = strstr(p, delim);
        FUZZ_CHECK(e, "part %s not closed by the boundary", type);
        char *d = fuzz_qp_decode(p, (size_t) (e - p), ret_len);
        FUZZ_CHECK(d, "part %s is not quoted-printable", type);
        return d;
}

static void check_message(const struct mail_message *m) {
        FUZZ_CHECK(m->data && strlen(m->data) == m->len, "length");
        FUZZ_CHECK(fuzz_crlf_only(m->data, m->len), "bare CR or LF in the message");
        const char *sep = strstr(m->data, "\r\n\r\n");
        FUZZ_CHECK(sep, "no end of header");
        check_headers(m->data, (size_t) (sep - m->data));
        const char *body = sep + 4;
        size_t longest = fuzz_longest_line(body, strlen(body), 0);
        FUZZ_CHECK(longest <= 76, "body line of %zu characters", longest);

        /* Header lines are checked above: only the real field starts a line. */
        const char *b = strstr(m->data, "\r\nContent-Type: multipart/alternative;");
        FUZZ_CHECK(b && b < sep, "no Content-Type");
        b = strstr(b, "boundary=\"");
        FUZZ_CHECK(b && b < sep, "no boundary");
        char boundary[100];
        b += strlen("boundary=\"");
        size_t bl = strcspn(b, "\"");
        FUZZ_CHECK(bl > 0 && bl < sizeof(boundary), "boundary");
        memcpy(boundary, b, bl);
        boundary[bl] = '\0';

        size_t tl = 0, hl = 0;
        char *text = part(body, boundary, "text/plain", &tl);
        char *html = part(body, boundary, "text/html", &hl);
        FUZZ_CHECK(text && html, "missing part");
        FUZZ_CHECK(strlen(text) == tl && strlen(html) == hl, "NUL in a part");
        for (size_t i = 0; i < tl; i++) {
                unsigned char c = (unsigned char) text[i];
                FUZZ_CHECK(c >= 0x20 || c == '\t' || c == '\r' || c == '\n',
                           "control 0x%02x in the text part", c);
                FUZZ_CHECK(c != 0x7f, "DEL in the text part");
        }
        FUZZ_CHECK(fuzz_utf8_valid(text, tl) && fuzz_utf8_valid(html, hl), "part not UTF-8");
        for (const char *p = html; (p = strchr(p, '<')); p++) {
                bool ok = false;
                for (size_t k = 0; k < sizeof(allowed_tags) / sizeof(allowed_tags[0]); k++)
                        if (strncmp(p, allowed_tags[k], strlen(allowed_tags[k])) == 0)
                                ok = true;
                FUZZ_CHECK(ok, "injected markup in HTML: '%.40s'", p);
        }
        free(text);
        free(html);

        FUZZ_CHECK(m->n_rcpt > 0, "no recipients");
        for (size_t i = 0; i < m->n_rcpt; i++) {
                char *addr = NULL;
                FUZZ_CHECK(mail_parse_address(m->rcpt[i], NULL, &addr) == 0 &&
                           strcmp(addr, m->rcpt[i]) == 0, "bad envelope recipient '%s'", m->rcpt[i]);
                free(addr);
        }
        /* The decoded text kept for the dry run and logs. */
        if (m->text) {
                for (const unsigned char *q = (const unsigned char *) m->text; *q; q++)
                        FUZZ_CHECK((*q >= 0x20 && *q != 0x7f) || *q == '\t' || *q == '\n',
                                   "control 0x%02x in m->text", *q);
                FUZZ_CHECK(fuzz_utf8_valid(m->text, strlen(m->text)), "m->text not UTF-8");
        }
        FUZZ_CHECK(m->envelope_from && fuzz_find_ctl(m->envelope_from, false) < 0, "envelope from");
        FUZZ_CHECK(m->subject && fuzz_find_ctl(m->subject, false) < 0, "subject '%s'",
                   m->subject ? m->subject : "(null)");
        FUZZ_CHECK(m->message_id && fuzz_find_ctl(m->message_id, false) < 0 &&
                   !strchr(m->message_id, ' '), "message id");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 4)
                return 0;
        char *buf = fuzz_strndup(data + 4, size - 4);
        const char *p = buf, *end = buf + (size - 4);

        struct mail_context ctx;
        memset(&ctx, 0, sizeof(ctx));
        ctx.kind = (enum mail_kind) (data[0] % _MAIL_KIND_MAX);
        ctx.reminder_number = (int) (data[2] << 8 | data[3]) - 1000;
        ctx.now = INT64_C(1795000000);
        ctx.deadline = data[1] & 0x80 ? 0 : ctx.now + (int64_t) data[2] * 3600;
        ctx.customer_name = next_field(&p, end);
        ctx.domain = next_field(&p, end);
        ctx.tenant_id = next_field(&p, end);
        const char *url = next_field(&p, end);
        char *url_buf = NULL;
        if (url && (data[1] & 1)) {
                if (asprintf(&url_buf, "https://admin.microsoft.com/%s", url) < 0)
                        abort();
                url = url_buf;
        }
        ctx.url = url;
        char *extra[2];
        for (size_t i = 0; i < 2; i++) {
                const char *s = next_field(&p, end);
                if (s)
                        extra[ctx.n_extra_rcpt++] = (char *) s;
        }
        ctx.extra_rcpt = extra;
        struct mail_order orders[3];
        size_t n_orders = (data[1] >> 1) & 3;
        if (n_orders > 3)
                n_orders = 3;
        for (size_t i = 0; i < n_orders; i++) {
                orders[i] = (struct mail_order) {
                        .id = next_field(&p, end),
                        .product = next_field(&p, end),
                        .portal_link = next_field(&p, end),
                        .querying_since = ctx.now - (int64_t) i * 86400,
                        .deadline = ctx.deadline,
                        .error = next_field(&p, end),
                };
        }
        if (!CHECK_LINK_UTF8)
                for (size_t i = 0; i < n_orders; i++)
                        if (orders[i].portal_link &&
                            !fuzz_utf8_valid(orders[i].portal_link, strlen(orders[i].portal_link)))
                                orders[i].portal_link = NULL;
        ctx.orders = orders;
        ctx.n_orders = n_orders;

        struct cfg_mail cfg;
        memset(&cfg, 0, sizeof(cfg));
        cfg.from = (char *) "Partner Desk <partnerd@example.com>";
        cfg.to = cfg_to;
        cfg.n_to = 2;
        cfg.cc = cfg_cc;
        cfg.n_cc = 1;
        cfg.bcc = cfg_bcc;
        cfg.n_bcc = 1;
        cfg.ops = cfg_ops;
        cfg.n_ops = 1;
        cfg.url_hosts = cfg_hosts;
        cfg.n_url_hosts = 1;
        cfg.notify_order_contacts = true;

        struct mail_message *m = NULL;
        char *err = NULL;
        int r = mail_render(templates, &cfg, &ctx, &m, &err);
        if (r == 0) {
                FUZZ_CHECK(m, "success without a message");
                check_message(m);
                if (!memmem(data, size, "audit@", 6))
                        FUZZ_CHECK(!strstr(m->data, "audit@example.com"), "Bcc address in the message");
        } else {
                FUZZ_CHECK(r == -EINVAL || r == -E2BIG, "mail_render returned %d", r);
                FUZZ_CHECK(!m, "failure with a message");
                FUZZ_CHECK(err && fuzz_find_ctl(err, false) < 0, "error '%s'", err ? err : "(null)");
        }
        free(err);
        mail_message_free(m);
        free(url_buf);
        free(buf);
        return 0;
}
