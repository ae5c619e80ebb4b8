/* SPDX-License-Identifier: MIT */
/* Pure tests of lib/mail: header words, quoted-printable, addresses, the
 * URL allow-list, templates and message composition. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "mail.h"
#include "url.h"
#include "util.h"

/* ---- helpers: decoders written independently of lib/mail ---- */

static int b64val(char c) {
        if (c >= 'A' && c <= 'Z') return c - 'A';
        if (c >= 'a' && c <= 'z') return c - 'a' + 26;
        if (c >= '0' && c <= '9') return c - '0' + 52;
        if (c == '+') return 62;
        if (c == '/') return 63;
        return -1;
}

static size_t b64_decode(const char *s, size_t n, char *out) {
        size_t o = 0;
        unsigned v = 0;
        int bits = 0;
        for (size_t i = 0; i < n && s[i] != '='; i++) {
                int x = b64val(s[i]);
                assert_true(x >= 0);
                v = (v << 6) | (unsigned) x;
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        out[o++] = (char) ((v >> bits) & 0xff);
                }
        }
        return o;
}

static bool valid_utf8(const char *s, size_t n) {
        const unsigned char *p = (const unsigned char *) s;
        for (size_t i = 0; i < n; ) {
                size_t k = p[i] < 0x80 ? 1 : p[i] >= 0xf0 ? 4 : p[i] >= 0xe0 ? 3 : p[i] >= 0xc2 ? 2 : 0;
                if (k == 0 || i + k > n)
                        return false;
                for (size_t j = 1; j < k; j++)
                        if ((p[i + j] & 0xc0) != 0x80)
                                return false;
                i += k;
        }
        return true;
}

/* Decodes an unstructured header value: encoded words (each checked:
 * <= 75 chars, whole UTF-8 characters), folding removed. */
static char *decode_header(const char *v) {
        char *out = calloc(1, strlen(v) + 1);
        size_t o = 0;
        const char *p = v;
        bool prev_word = false;
        size_t word_end = 0;
        assert_non_null(out);
        while (*p) {
                if (p[0] == '\r') {
                        assert_int_equal(p[1], '\n');
                        assert_true(p[2] == ' ' || p[2] == '\t');
                        p += 2;
                        continue;
                }
                if (strncmp(p, "=?UTF-8?B?", 10) == 0) {
                        const char *end = strstr(p + 10, "?=");
                        assert_non_null(end);
                        size_t wlen = (size_t) (end + 2 - p);
                        assert_true(wlen <= 75);
                        /* drop the whitespace between two adjacent words
                         * (not the spaces a word itself decodes to) */
                        if (prev_word)
                                o = word_end;
                        size_t n = b64_decode(p + 10, (size_t) (end - p - 10), out + o);
                        assert_true(valid_utf8(out + o, n));
                        o += n;
                        word_end = o;
                        p = end + 2;
                        prev_word = true;
                        continue;
                }
                if (*p != ' ')
                        prev_word = false;
                out[o++] = *p++;
        }
        out[o] = '\0';
        return out;
}

static int hexval(char c) {
        return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Decodes quoted-printable with CRLF lines, checking each line <= 76. */
static char *decode_qp(const char *s) {
        char *out = calloc(1, strlen(s) + 1);
        size_t o = 0;
        assert_non_null(out);
        while (*s) {
                const char *eol = strstr(s, "\r\n");
                assert_non_null(eol);
                size_t n = (size_t) (eol - s);
                assert_true(n <= 76);
                assert_null(memchr(s, '\n', n));
                assert_null(memchr(s, '\r', n));
                bool soft = n > 0 && s[n - 1] == '=';
                if (n > 0 && !soft) {
                        /* no trailing whitespace before a hard break */
                        assert_true(s[n - 1] != ' ' && s[n - 1] != '\t');
                }
                for (size_t i = 0; i < (soft ? n - 1 : n); i++) {
                        if (s[i] == '=') {
                                int h = hexval(s[i + 1]), l = hexval(s[i + 2]);
                                assert_true(h >= 0 && l >= 0);
                                out[o++] = (char) (h * 16 + l);
                                i += 2;
                        } else {
                                unsigned char c = (unsigned char) s[i];
                                assert_true((c >= 32 && c <= 126) || c == '\t');
                                out[o++] = s[i];
                        }
                }
                if (!soft)
                        out[o++] = '\n';
                s = eol + 2;
        }
        out[o] = '\0';
        return out;
}

static void assert_crlf_only(const char *s, size_t len) {
        for (size_t i = 0; i < len; i++) {
                if (s[i] == '\r')
                        assert_int_equal(s[i + 1], '\n');
                if (s[i] == '\n')
                        assert_true(i > 0 && s[i - 1] == '\r');
        }
}

/* Every physical line of an encoded header value (the first starting at
 * column name_len) is at most max long and made of printable ASCII;
 * folds are CRLF SP. */
static void assert_header_lines(const char *h, size_t name_len, size_t max) {
        size_t col = name_len;
        for (const char *p = h; *p; p++) {
                if (*p == '\r') {
                        assert_int_equal(p[1], '\n');
                        assert_int_equal(p[2], ' ');
                        col = 0;
                        p++;
                        continue;
                }
                assert_true((unsigned char) *p >= 0x20 && (unsigned char) *p < 0x7f);
                assert_true(++col <= max);
        }
}

/* ---- header encoding ---- */

static void test_header_ascii(void **state) {
        char *h = mail_encode_header("Action needed for contoso.com", 9);
        assert_string_equal(h, "Action needed for contoso.com");
        free(h);

        /* A long ASCII subject folds at spaces; lines stay short. */
        char longs[600] = "";
        for (int i = 0; i < 40; i++)
                strcat(longs, "word12345 ");
        h = mail_encode_header(longs, 9);
        assert_non_null(strstr(h, "\r\n "));
        assert_header_lines(h, 9, 78);
        char *d = decode_header(h);
        char *exp = strdup(longs);
        exp[strlen(exp) - 1] = '\0';  /* trailing space trimmed */
        assert_string_equal(d, exp);
        free(exp);
        free(d);
        free(h);

        /* A value that looks like an encoded word is itself encoded. */
        h = mail_encode_header("=?UTF-8?B?SGk=?=", 9);
        assert_true(strncmp(h, "=?UTF-8?B?", 10) == 0);
        d = decode_header(h);
        assert_string_equal(d, "=?UTF-8?B?SGk=?=");
        free(d);
        free(h);
}

static void test_header_utf8(void **state) {
        char *h = mail_encode_header("Müller GmbH", 9);
        assert_true(strncmp(h, "=?UTF-8?B?", 10) == 0);
        assert_null(strchr(h, '\xc3'));
        char *d = decode_header(h);
        assert_string_equal(d, "Müller GmbH");
        free(d);
        free(h);

        /* Long Japanese subject: several words, each <= 75, split on
         * character boundaries, folded with CRLF SP. */
        char jp[1024] = "";
        for (int i = 0; i < 30; i++)
                strcat(jp, "日本語");
        h = mail_encode_header(jp, 9);
        size_t words = 0;
        for (const char *p = h; (p = strstr(p, "=?UTF-8?B?")); p++)
                words++;
        assert_true(words >= 4);
        assert_header_lines(h, 9, 76);
        d = decode_header(h);
        assert_string_equal(d, jp);
        free(d);
        free(h);

        /* Mixed, with a long prefix. */
        const char *mixed = "Erinnerung 3: bitte die Partnerbeziehung für Müller & Söhne Straße "
                            "GmbH (müller.example) bestätigen — 日本語テキスト";
        h = mail_encode_header(mixed, 9);
        d = decode_header(h);
        assert_string_equal(d, mixed);
        free(d);
        free(h);

        /* Invalid UTF-8 is replaced, never passed through. */
        h = mail_encode_header("bad \xff\xfe byte", 9);
        d = decode_header(h);
        assert_true(valid_utf8(d, strlen(d)));
        assert_non_null(strstr(d, "\xef\xbf\xbd"));
        free(d);
        free(h);
}

static void test_header_injection(void **state) {
        const char *evil[] = {
                "X\r\nBcc: evil@x",
                "X\nBcc: evil@x",
                "X\rBcc: evil@x",
                "Müller\r\nBcc: evil@x",
                ("a\x01\x1b[31m\x7f" "b\tc"),
                "\r\n\r\nbody",
        };
        for (size_t i = 0; i < sizeof(evil) / sizeof(evil[0]); i++) {
                char *h = mail_encode_header(evil[i], 9);
                /* No CR/LF except as the CRLF SP fold. */
                for (const char *p = h; *p; p++) {
                        if (*p == '\r') {
                                assert_int_equal(p[1], '\n');
                                assert_int_equal(p[2], ' ');
                        } else if (*p == '\n')
                                assert_true(p > h && p[-1] == '\r');
                        else
                                assert_true((unsigned char) *p >= 0x20 && *p != 0x7f);
                }
                char *d = decode_header(h);
                assert_null(strchr(d, '\r'));
                assert_null(strchr(d, '\n'));
                for (const char *p = d; *p; p++)
                        assert_true((unsigned char) *p >= 0x20 && *p != 0x7f);
                assert_null(strstr(h, "\r\nBcc"));
                free(d);
                free(h);
        }
        char *h = mail_encode_header("X\r\nBcc: evil@x", 9);
        assert_string_equal(h, "X Bcc: evil@x");
        free(h);
}

/* ---- quoted-printable ---- */

static void test_qp(void **state) {
        char *q = mail_encode_qp("a=b\n");
        assert_string_equal(q, "a=3Db\r\n");
        free(q);
        q = mail_encode_qp("trailing   \nx\t\n");
        assert_string_equal(q, "trailing  =20\r\nx=09\r\n");
        free(q);
        q = mail_encode_qp("café\r\n");
        assert_string_equal(q, "caf=C3=A9\r\n");
        free(q);

        /* Long lines with every awkward byte; decode must round-trip. */
        char text[4096] = "";
        for (int i = 0; i < 30; i++)
                strcat(text, "Grüße = 100% ");
        strcat(text, "\n.leading dot\n\nend with space \n");
        for (int i = 0; i < 200; i++)
                strcat(text, "x");
        strcat(text, "\n");
        for (int i = 0; i < 80; i++)
                strcat(text, "é");
        strcat(text, "\n");
        q = mail_encode_qp(text);
        assert_crlf_only(q, strlen(q));
        char *d = decode_qp(q);
        assert_string_equal(d, text);
        free(d);
        free(q);

        /* Bare CR is dropped from line ends; CRLF and LF both end lines. */
        q = mail_encode_qp("a\r\nb\nc");
        d = decode_qp(q);
        assert_string_equal(d, "a\nb\nc\n");
        free(d);
        free(q);

        /* Exactly 76 characters stays one line; 77 is split. */
        char l76[80];
        memset(l76, 'y', 76);
        l76[76] = '\0';
        q = mail_encode_qp(l76);
        assert_int_equal(strlen(q), 78);
        free(q);
        l76[76] = 'y';
        l76[77] = '\0';
        q = mail_encode_qp(l76);
        assert_non_null(strstr(q, "=\r\n"));
        d = decode_qp(q);
        assert_int_equal(strlen(d), 78);
        free(d);
        free(q);
}

/* Deterministic pseudo-random inputs: the properties hold for all. */
static uint32_t rnd_state = 2463534242u;
static uint32_t rnd(void) {
        rnd_state ^= rnd_state << 13;
        rnd_state ^= rnd_state >> 17;
        rnd_state ^= rnd_state << 5;
        return rnd_state;
}

static size_t random_text(char *buf, size_t max) {
        static const char *const pieces[] = {
                "a", "Z", " ", "  ", "=", "?", "=?", "?=", ".", "\t", "\n", "\r", "\r\n", "\x01", "\x7f",
                "ü", "é", "日", "本", "😀", "\xff", "\xc3", "\xe6\x97", "<", "&", "\"", "Bcc: x",
        };
        size_t n = 0, k = rnd() % 60;
        for (size_t i = 0; i < k; i++) {
                const char *p = pieces[rnd() % (sizeof(pieces) / sizeof(pieces[0]))];
                size_t l = strlen(p);
                if (n + l + 1 > max)
                        break;
                memcpy(buf + n, p, l);
                n += l;
        }
        buf[n] = '\0';
        return n;
}

static void test_encoding_properties(void **state) {
        char in[512];
        for (int iter = 0; iter < 3000; iter++) {
                random_text(in, sizeof(in));
                size_t name_len = rnd() % 40;
                char *h = mail_encode_header(in, name_len);
                assert_non_null(h);
                assert_header_lines(h, name_len, 998);
                char *d = decode_header(h);   /* checks word length and UTF-8 */
                assert_true(valid_utf8(d, strlen(d)));
                for (const char *p = d; *p; p++)
                        assert_true((unsigned char) *p >= 0x20 && *p != 0x7f);
                free(d);
                free(h);

                /* QP round-trips any bytes without CR (CRLF and LF are
                 * both line ends). */
                size_t n = random_text(in, sizeof(in) - 2);
                size_t j = 0;
                for (size_t i = 0; i < n; i++)
                        if (in[i] != '\r')
                                in[j++] = in[i];
                in[j] = '\0';
                char *q = mail_encode_qp(in);
                assert_crlf_only(q, strlen(q));
                char *back = decode_qp(q);
                if (j > 0 && in[j - 1] != '\n') {
                        in[j] = '\n';
                        in[j + 1] = '\0';
                }
                assert_string_equal(back, in);
                free(back);
                free(q);
        }
}

/* ---- addresses ---- */

static void test_address(void **state) {
        char *disp = NULL, *addr = NULL;

        assert_int_equal(mail_parse_address("admin@contoso.com", &disp, &addr), 0);
        assert_null(disp);
        assert_string_equal(addr, "admin@contoso.com");
        free(addr);

        assert_int_equal(mail_parse_address("Partner Desk <desk@softwareone.example>", &disp, &addr), 0);
        assert_string_equal(disp, "Partner Desk");
        assert_string_equal(addr, "desk@softwareone.example");
        free(disp);
        free(addr);

        assert_int_equal(mail_parse_address("\"Müller, Hans \\\"HM\\\"\" <h.mueller+csp@example.de>",
                                            &disp, &addr), 0);
        assert_string_equal(disp, "Müller, Hans \"HM\"");
        assert_string_equal(addr, "h.mueller+csp@example.de");
        free(disp);
        free(addr);

        assert_int_equal(mail_parse_address("  <ops@example.com>  ", &disp, &addr), 0);
        assert_null(disp);
        assert_string_equal(addr, "ops@example.com");
        free(addr);

        const char *bad[] = {
                "", "plain", "@example.com", "a@", "a@@b.com", "a b@example.com",
                "a@example.com\r\nRCPT TO:<evil@x>", "a@example.com\n", "a\r@example.com",
                "Name <a@example.com", "Name a@example.com>", ".a@example.com", "a.@example.com",
                "a..b@example.com", "a@-example.com", "a@example-.com", "a@exa_mple.com",
                "a@example..com", "müller@example.de", "<a@example.com> trailing",
                "Na<me <a@example.com>", "a@example.com>", "\"unterminated <a@example.com>",
                "a@[127.0.0.1]", "a@example.com\t",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                addr = NULL;
                int r = mail_parse_address(bad[i], NULL, &addr);
                if (r != -EINVAL)
                        fail_msg("accepted bad address #%zu: '%s'", i, bad[i]);
                assert_null(addr);
        }
        char longlocal[80];
        memset(longlocal, 'a', 65);
        strcpy(longlocal + 65, "@example.com");
        assert_int_equal(mail_parse_address(longlocal, NULL, NULL), -EINVAL);
}

/* ---- URL allow-list ---- */

static void test_url_allowed(void **state) {
        char *hosts[] = { (char *) "admin.microsoft.com" };
        const char *good[] = {
                "https://admin.microsoft.com/Adminportal/Home?invType=ResellerRelationship&partnerId=abc&msppId=0&DAP=true#/BillingAccounts/partner-invitation",
                "https://ADMIN.Microsoft.com/x",
                "https://admin.microsoft.com:443/x",
                "https://admin.microsoft.com",
        };
        const char *bad[] = {
                "http://admin.microsoft.com/x",
                "https://evil.example/x",
                "https://admin.microsoft.com@evil.com/x",
                "https://user:pw@admin.microsoft.com/x",
                "https://admin.microsoft.com.evil.com/x",
                "https://evil.com/admin.microsoft.com",
                "https://admin.microsoft.com:8443/x",
                "https://admin.microsoft.com/x\r\nBcc: a@b",
                "https://admin.microsoft.com/\"onmouseover=alert(1)",
                "https://admin.microsoft.com/<script>",
                "javascript:alert(1)//https://admin.microsoft.com",
                "ftp://admin.microsoft.com/",
                "https://evil.com\\@admin.microsoft.com/",
                "https://admin.microsoft.com /x",
                "//admin.microsoft.com/x",
                "",
        };
        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
                if (!url_link_allowed(good[i], hosts, 1))
                        fail_msg("refused good URL %s", good[i]);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                if (url_link_allowed(bad[i], hosts, 1))
                        fail_msg("accepted bad URL %s", bad[i]);
        /* Default allow-list when none is configured. */
        assert_true(url_link_allowed("https://admin.microsoft.com/x", NULL, 0));
        assert_false(url_link_allowed("https://portal.example/x", NULL, 0));
        char *other[] = { (char *) "portal.example", (char *) "admin.microsoft.com" };
        assert_true(url_link_allowed("https://portal.example/x", other, 2));
        assert_false(url_link_allowed(NULL, other, 2));
}

/* ---- templates and composition ---- */

static const char *template_dir(void) {
        static char path[4096];
        const char *src = getenv("TEST_SRCDIR");
        snprintf(path, sizeof(path), "%s/config/templates", src ? src : ".");
        return path;
}

static const char *good_url =
        "https://admin.microsoft.com/Adminportal/Home?invType=ResellerRelationship&partnerId=4b8f&msppId=0&DAP=true#/BillingAccounts/partner-invitation";

static char *to_list[] = { (char *) "Admins <admins@contoso.example>", (char *) "second@contoso.example" };
static char *cc_list[] = { (char *) "cc@softwareone.example", (char *) "ADMINS@contoso.example" };
static char *bcc_list[] = { (char *) "audit@softwareone.example" };
static char *ops_list[] = { (char *) "Ops <ops@softwareone.example>" };

static struct cfg_mail test_cfg(void) {
        return (struct cfg_mail) {
                .transport = CFG_TRANSPORT_SMTP,
                .from = (char *) "Marketplace Partner Desk <partner-desk@softwareone.example>",
                .to = to_list, .n_to = 2,
                .cc = cc_list, .n_cc = 2,
                .bcc = bcc_list, .n_bcc = 1,
                .ops = ops_list, .n_ops = 1,
        };
}

/* Splits a rendered message: headers (unfolded lines), text and html. */
struct parsed {
        char *headers;   /* raw header block */
        char *text;
        char *html;
};

static char *header_get(const char *headers, const char *name) {
        size_t nl = strlen(name);
        for (const char *p = headers; p && *p; ) {
                if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
                        const char *v = p + nl + 1;
                        while (*v == ' ')
                                v++;
                        const char *end = v;
                        while (*end && !(end[0] == '\r' && end[1] == '\n' && end[2] != ' ' && end[2] != '\t'))
                                end++;
                        return strndup(v, (size_t) (end - v));
                }
                p = strstr(p, "\r\n");
                if (p)
                        p += 2;
        }
        return NULL;
}

/* The header names a rendered message may carry, each at most once. */
static const char *const HEADER_NAMES[] = {
        "Date", "Message-ID", "From", "To", "Cc", "Subject", "MIME-Version", "Auto-Submitted",
        "X-Auto-Response-Suppress", "Content-Type",
};

/* Header injection, whatever the injected name: every logical line of the
 * header block (a line plus its CRLF SP/HT continuations) is "Name: value"
 * with a Name of HEADER_NAMES, no Name twice, and no continuation carries a
 * "Name:" of an injected header at its start. */
static void assert_only_known_headers(const char *headers, const char *what) {
        bool seen[sizeof(HEADER_NAMES) / sizeof(HEADER_NAMES[0])] = { false };
        for (const char *p = headers; *p; ) {
                const char *eol = strstr(p, "\r\n");
                assert_non_null(eol);
                if (*p == ' ' || *p == '\t') {          /* a continuation */
                        const char *w = p + strspn(p, " \t");
                        if (!strncasecmp(w, "Bcc:", 4) || !strncasecmp(w, "X-Injected:", 11) ||
                            !strncasecmp(w, "Reply-To:", 9))
                                fail_msg("%s: continuation line starts with an injected name: %.*s", what,
                                         (int) (eol - p), p);
                } else {
                        size_t n = strcspn(p, ":\r\n"), i;
                        for (i = 0; i < sizeof(HEADER_NAMES) / sizeof(HEADER_NAMES[0]); i++)
                                if (strlen(HEADER_NAMES[i]) == n && !strncasecmp(p, HEADER_NAMES[i], n))
                                        break;
                        if (i == sizeof(HEADER_NAMES) / sizeof(HEADER_NAMES[0]) || p[n] != ':')
                                fail_msg("%s: unexpected header line (injected?): %.*s", what, (int) (eol - p), p);
                        if (seen[i])
                                fail_msg("%s: header %s twice (injected?)", what, HEADER_NAMES[i]);
                        seen[i] = true;
                }
                p = eol + 2;
        }
}

static void parse_message(const struct mail_message *m, struct parsed *out) {
        assert_int_equal(strlen(m->data), m->len);
        assert_crlf_only(m->data, m->len);
        const char *sep = strstr(m->data, "\r\n\r\n");
        assert_non_null(sep);
        out->headers = strndup(m->data, (size_t) (sep - m->data) + 2);
        /* every header line <= 78, folded lines start with SP */
        for (const char *p = out->headers; *p; ) {
                const char *e = strstr(p, "\r\n");
                assert_true(e - p <= 78);
                p = e + 2;
        }
        char *ct = header_get(out->headers, "Content-Type");
        assert_non_null(ct);
        const char *b = strstr(ct, "boundary=\"");
        assert_non_null(b);
        char boundary[128];
        snprintf(boundary, sizeof(boundary), "--%.*s", (int) (strchr(b + 10, '"') - b - 10), b + 10);
        free(ct);
        const char *p1 = strstr(sep, boundary);
        assert_non_null(p1);
        const char *b1 = strstr(p1, "\r\n\r\n") + 4;
        const char *p2 = strstr(b1, boundary);
        assert_non_null(p2);
        assert_non_null(strstr(p1, "Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable"));
        char *qp1 = strndup(b1, (size_t) (p2 - b1 - 2));   /* minus the CRLF before the delimiter */
        const char *b2 = strstr(p2, "\r\n\r\n") + 4;
        assert_non_null(strstr(p2, "Content-Type: text/html; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable"));
        char endb[140];
        snprintf(endb, sizeof(endb), "\r\n%s--\r\n", boundary);
        const char *p3 = strstr(b2, endb);
        assert_non_null(p3);
        assert_int_equal(strlen(p3), strlen(endb));
        char *qp2 = strndup(b2, (size_t) (p3 - b2 + 2));
        out->text = decode_qp(qp1);
        out->html = decode_qp(qp2);
        free(qp1);
        free(qp2);
}

static void parsed_free(struct parsed *p) {
        free(p->headers);
        free(p->text);
        free(p->html);
}

static const struct mail_order hostile_orders[] = {
        { .id = "ORD-1111-2222-3333", .product = "Microsoft 365 <b>E3</b> & \"Teams\"",
          .portal_link = "https://portal.platform.example/commerce/orders/ORD-1111-2222-3333",
          .querying_since = 1795000000, .deadline = 1796296000 },
        { .id = "ORD-4444-5555-6666\r\nBcc: evil@x", .product = "Visio 'Plan 2'",
          .portal_link = "javascript:alert(1)", .querying_since = 1795000000, .deadline = 1796296000,
          .error = "Tenant <unknown> & domain not verified" },
};

static struct mail_context hostile_ctx(enum mail_kind kind) {
        return (struct mail_context) {
                .kind = kind,
                .customer_name = "<script>alert('x')</script> Müller & Co\r\nBcc: evil@x",
                .domain = "contoso.example",
                .tenant_id = "7c3d1c83-1111-2222-3333-444455556666",
                .url = good_url,
                .orders = hostile_orders,
                .n_orders = 2,
                .reminder_number = 2,
                .deadline = 1796296000,
                .now = 1795900000,
        };
}

/* CR/LF in every text that reaches a header (the customer name, the order
 * id of an ops notice), each followed by a header of another name than Bcc
 * and by an empty line: the header block keeps its own lines and only
 * them, the envelope its own recipients. */
static void test_render_header_injection(void **state) {
        static const char *const evil[] = {
                "Contoso\r\nX-Injected: 1\r\nReply-To: evil@x",
                "Contoso\nX-Injected: 1\nContent-Type: text/html",
                "Contoso\rX-Injected: 1\r\n\r\n<html>body</html>",
                "Müller\r\n X-Injected: folded\r\nReply-To: evil@x",
        };
        struct mail_templates *t = NULL;
        struct cfg_errors errs = {};
        struct cfg_mail cfg = test_cfg();

        assert_int_equal(mail_templates_load(NULL, template_dir(), &t, &errs), 0);
        for (size_t e = 0; e < sizeof(evil) / sizeof(evil[0]); e++)
                for (int k = 0; k < _MAIL_KIND_MAX; k++) {
                        struct mail_order orders[] = { hostile_orders[0] };
                        struct mail_context ctx = hostile_ctx((enum mail_kind) k);
                        struct mail_message *m = NULL;
                        struct parsed p = {};
                        char *err = NULL, what[64];

                        orders[0].id = evil[e];
                        ctx.customer_name = evil[e];
                        ctx.orders = orders;
                        ctx.n_orders = 1;
                        assert_int_equal(mail_render(t, &cfg, &ctx, &m, &err), 0);
                        snprintf(what, sizeof(what), "%s, input %zu", mail_kind_to_string(k), e);
                        parse_message(m, &p);
                        assert_only_known_headers(p.headers, what);
                        /* nor once decoded: a reader's client shows one Subject line */
                        char *v = header_get(p.headers, "Subject"), *d = v ? decode_header(v) : NULL;
                        assert_non_null(d);
                        if (strpbrk(d, "\r\n"))
                                fail_msg("%s: CR/LF in the decoded Subject: %s", what, d);
                        free(d);
                        free(v);
                        assert_null(strcasestr(p.headers, "\nX-Injected"));
                        assert_null(strcasestr(p.headers, "\nReply-To"));
                        assert_int_equal(m->n_rcpt, 4);
                        for (size_t i = 0; i < m->n_rcpt; i++)
                                assert_null(strstr(m->rcpt[i], "evil"));
                        parsed_free(&p);
                        mail_message_free(m);
                }
        mail_templates_free(t);
}

static void test_render_every_kind(void **state) {
        struct mail_templates *t = NULL;
        struct cfg_errors errs = {};
        struct cfg_mail cfg = test_cfg();

        assert_int_equal(mail_templates_load(NULL, template_dir(), &t, &errs), 0);
        assert_int_equal(errs.n, 0);

        for (int k = 0; k < _MAIL_KIND_MAX; k++) {
                struct mail_context ctx = hostile_ctx((enum mail_kind) k);
                struct mail_message *m = NULL;
                char *err = NULL;
                struct parsed p = {};

                assert_int_equal(mail_render(t, &cfg, &ctx, &m, &err), 0);
                assert_null(err);
                parse_message(m, &p);

                /* headers */
                const char *must[] = { "Date", "Message-ID", "From", "To", "Subject", "MIME-Version",
                                       "Auto-Submitted", "X-Auto-Response-Suppress", "Content-Type" };
                for (size_t i = 0; i < sizeof(must) / sizeof(must[0]); i++) {
                        char *v = header_get(p.headers, must[i]);
                        if (!v)
                                fail_msg("%s: missing header %s", mail_kind_to_string(k), must[i]);
                        free(v);
                }
                char *v = header_get(p.headers, "Auto-Submitted");
                assert_string_equal(v, "auto-generated");
                free(v);
                v = header_get(p.headers, "Date");
                assert_non_null(strstr(v, "+0000"));
                free(v);
                v = header_get(p.headers, "Message-ID");
                assert_string_equal(v, m->message_id);
                assert_non_null(strstr(v, "@softwareone.example>"));
                free(v);
                assert_null(header_get(p.headers, "Bcc"));
                assert_null(strstr(p.headers, "\nBcc:"));
                assert_null(strstr(m->data, "\r\nBcc:"));
                assert_only_known_headers(p.headers, mail_kind_to_string(k));
                assert_null(strstr(p.headers, "audit@"));
                assert_string_equal(m->envelope_from, "partner-desk@softwareone.example");

                /* envelope: to (ops for the notices) + cc + bcc, deduplicated */
                if (k == MAIL_KIND_OPS_NOTICE || k == MAIL_KIND_PARTNER_UNLISTED) {
                        assert_int_equal(m->n_rcpt, 4);
                        assert_string_equal(m->rcpt[0], "ops@softwareone.example");
                        v = header_get(p.headers, "To");
                        assert_string_equal(v, "Ops <ops@softwareone.example>");
                        free(v);
                } else {
                        assert_int_equal(m->n_rcpt, 4);   /* ADMINS@ duplicate dropped */
                        assert_string_equal(m->rcpt[0], "admins@contoso.example");
                        assert_string_equal(m->rcpt[1], "second@contoso.example");
                        assert_string_equal(m->rcpt[2], "cc@softwareone.example");
                        v = header_get(p.headers, "To");
                        assert_string_equal(v, "Admins <admins@contoso.example>,\r\n second@contoso.example");
                        free(v);
                }
                assert_string_equal(m->rcpt[m->n_rcpt - 1], "audit@softwareone.example");

                /* subject decodes; no control characters */
                v = header_get(p.headers, "Subject");
                char *subj = decode_header(v);
                assert_string_equal(subj, m->subject);
                free(subj);
                free(v);

                /* hostile values: escaped in HTML, not markup */
                assert_null(strstr(p.html, "<script>"));
                assert_null(strstr(p.html, "<b>E3"));
                assert_null(strstr(p.html, "javascript:"));
                assert_non_null(strstr(p.html, "&lt;b&gt;E3&lt;/b&gt; &amp; &quot;Teams&quot;"));
                assert_non_null(strstr(p.html, "Visio &#39;Plan 2&#39;"));
                assert_non_null(strstr(p.text, "ORD-1111-2222-3333"));
                assert_null(strstr(p.text, "\nBcc:"));
                assert_null(strstr(p.text, "javascript:"));
                if (k != MAIL_KIND_OPS_NOTICE) {
                        assert_non_null(strstr(p.html, "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; Müller &amp; Co"));
                        assert_non_null(strstr(p.text, "<script>alert('x')</script> Müller & Co Bcc: evil@x"));
                }

                /* the URL: exact in the text, HTML-escaped in the button href */
                if (k == MAIL_KIND_PARTNER_UNLISTED) {
                        /* ops: the link as it is, and the partnerId it names */
                        assert_non_null(strstr(p.text, good_url));
                        assert_non_null(strstr(p.text, "[microsoft.NAME]"));
                        assert_null(strstr(p.text, "Global Administrator"));
                }
                if (k != MAIL_KIND_OPS_NOTICE && k != MAIL_KIND_CONFIRMATION && k != MAIL_KIND_PARTNER_UNLISTED) {
                        assert_non_null(strstr(p.text, good_url));
                        char href[512];
                        snprintf(href, sizeof(href), "href=\"%s\"", good_url);
                        char *esc = NULL;
                        /* & -> &amp; */
                        struct util_buf b;
                        util_buf_init(&b, 4096);
                        for (const char *c = href; *c; c++)
                                util_buf_puts(&b, *c == '&' ? "&amp;" : (char[]) { *c, 0 });
                        esc = util_buf_steal(&b);
                        assert_non_null(strstr(p.html, esc));
                        free(esc);
                        assert_non_null(strstr(p.html, "Accept the relationship</a>"));
                        assert_non_null(strstr(p.html, "Global Administrator"));
                        assert_non_null(strstr(p.text, "Global Administrator of contoso.example"));
                        assert_non_null(strstr(p.text, "Microsoft Customer Agreement"));
                }
                assert_non_null(strstr(p.text, "partner-desk@softwareone.example"));
                assert_non_null(strstr(p.html, "max-width:600px"));
                /* the class names the templates' phone layout relies on */
                assert_non_null(strstr(p.html, "<tr class=\"order\"><td class=\"order-id\""));
                assert_non_null(strstr(p.html, "<span class=\"order-label\" style=\"display:none;\">Deadline "));
                switch (k) {
                case MAIL_KIND_FINAL_WARNING:
                        assert_non_null(strstr(p.text, "the platform will fail the order"));
                        assert_non_null(strstr(p.text, "3 December 2026"));
                        assert_non_null(strstr(m->subject, "will be failed on 3 December 2026"));
                        break;
                case MAIL_KIND_DRAFT_WARNING:
                        assert_non_null(strstr(p.html, "Accept this before the order is placed"));
                        break;
                case MAIL_KIND_OPS_NOTICE:
                        assert_non_null(strstr(p.text, "Reason: Tenant <unknown> & domain not verified"));
                        assert_non_null(strstr(p.html, "Reason: Tenant &lt;unknown&gt; &amp; domain not verified"));
                        assert_non_null(strstr(p.text, "https://portal.platform.example/commerce/orders/ORD-1111-2222-3333"));
                        break;
                case MAIL_KIND_CONFIRMATION:
                        assert_non_null(strstr(p.text, "has been accepted"));
                        break;
                case MAIL_KIND_REMINDER:
                        assert_non_null(strstr(m->subject, "Reminder 2"));
                        break;
                default:
                        break;
                }
                /* days_left: deadline - now = 396000 s -> 5 days (rounded up) */
                if (k == MAIL_KIND_NEW_REQUEST)
                        assert_non_null(strstr(p.text, "(days left: 5)"));
                parsed_free(&p);
                mail_message_free(m);
        }
        mail_templates_free(t);
}

/* A Draft order has no Querying clock: its times read "not yet", while an
 * unknown time of a Querying order reads "unknown". */
static void test_draft_without_clock(void **state) {
        struct mail_templates *t = NULL;
        struct cfg_errors errs = {};
        struct cfg_mail cfg = test_cfg();
        const struct mail_order draft = { .id = "ORD-7777-8888-9999", .product = "Visio Plan 2" };

        assert_int_equal(mail_templates_load(NULL, template_dir(), &t, &errs), 0);
        for (int k = MAIL_KIND_NEW_REQUEST; k <= MAIL_KIND_DRAFT_WARNING; k += MAIL_KIND_DRAFT_WARNING) {
                struct mail_context ctx = hostile_ctx((enum mail_kind) k);
                struct mail_message *m = NULL;
                char *err = NULL;
                struct parsed p = {};
                const char *none = k == MAIL_KIND_DRAFT_WARNING ? "not yet" : "unknown";
                char want[128];

                ctx.orders = &draft;
                ctx.n_orders = 1;
                assert_int_equal(mail_render(t, &cfg, &ctx, &m, &err), 0);
                parse_message(m, &p);
                snprintf(want, sizeof(want), "Querying since: %s\n    Deadline: %s", none, none);
                assert_non_null(strstr(p.text, want));
                snprintf(want, sizeof(want), "Deadline </span>%s</td>", none);
                assert_non_null(strstr(p.html, want));
                parsed_free(&p);
                mail_message_free(m);
        }
        mail_templates_free(t);
}

static void test_render_refusals(void **state) {
        struct mail_templates *t = NULL;
        struct cfg_errors errs = {};
        struct cfg_mail cfg = test_cfg();
        struct mail_message *m = NULL;
        char *err = NULL;

        assert_int_equal(mail_templates_load(NULL, template_dir(), &t, &errs), 0);
        const char *bad_urls[] = {
                "https://evil.example/x", "http://admin.microsoft.com/x",
                "https://admin.microsoft.com@evil.com/x",
        };
        for (size_t i = 0; i < 3; i++) {
                struct mail_context ctx = hostile_ctx(MAIL_KIND_NEW_REQUEST);
                ctx.url = bad_urls[i];
                assert_int_equal(mail_render(t, &cfg, &ctx, &m, &err), -EINVAL);
                assert_null(m);
                assert_non_null(err);
                assert_non_null(strstr(err, "relationship URL refused"));
                assert_non_null(strstr(err, "admin.microsoft.com"));
                free(err);
                err = NULL;
        }
        /* Another allowed host when configured. */
        char *hosts[] = { (char *) "portal.example" };
        cfg.url_hosts = hosts;
        cfg.n_url_hosts = 1;
        struct mail_context ctx = hostile_ctx(MAIL_KIND_REMINDER);
        assert_int_equal(mail_render(t, &cfg, &ctx, &m, &err), -EINVAL);
        free(err);
        err = NULL;
        ctx.url = "https://Portal.Example/accept";
        assert_int_equal(mail_render(t, &cfg, &ctx, &m, &err), 0);
        m = mail_message_free(m);
        cfg = test_cfg();

        /* A request mail without a URL cannot be sent. */
        ctx = hostile_ctx(MAIL_KIND_NEW_REQUEST);
        ctx.url = NULL;
        assert_int_equal(mail_render(t, &cfg, &ctx, &m, &err), -EINVAL);
        assert_non_null(strstr(err, "no relationship URL"));
        free(err);
        err = NULL;

        /* Bad configured addresses are refused; bad order contacts skipped. */
        char *badto[] = { (char *) "ok@example.com\r\nRCPT TO:<evil@x>" };
        cfg.to = badto;
        cfg.n_to = 1;
        ctx = hostile_ctx(MAIL_KIND_NEW_REQUEST);
        assert_int_equal(mail_render(t, &cfg, &ctx, &m, &err), -EINVAL);
        assert_non_null(err);
        free(err);
        err = NULL;
        cfg = test_cfg();
        char *extra[] = { (char *) "contact@customer.example", (char *) "evil@x\r\nDATA",
                          (char *) "Second@Contoso.Example" };
        ctx.extra_rcpt = extra;
        ctx.n_extra_rcpt = 3;
        assert_int_equal(mail_render(t, &cfg, &ctx, &m, &err), 0);
        assert_int_equal(m->n_rcpt, 5);
        bool found = false;
        for (size_t i = 0; i < m->n_rcpt; i++) {
                assert_null(strpbrk(m->rcpt[i], "\r\n"));
                if (strcmp(m->rcpt[i], "contact@customer.example") == 0)
                        found = true;
        }
        assert_true(found);
        assert_null(strstr(m->data, "DATA\r\n"));
        m = mail_message_free(m);

        /* Bad From */
        cfg.from = (char *) "not an address";
        assert_int_equal(mail_render(t, &cfg, &ctx, &m, &err), -EINVAL);
        assert_non_null(strstr(err, "From"));
        free(err);
        mail_templates_free(t);
}

static char *mkdtemp_test(void) {
        char *d = strdup("/tmp/test-mail-XXXXXX");
        assert_non_null(mkdtemp(d));
        return d;
}

static void write_file(const char *dir, const char *name, const char *content) {
        char p[4096];
        snprintf(p, sizeof(p), "%s/%s", dir, name);
        FILE *f = fopen(p, "w");
        assert_non_null(f);
        fputs(content, f);
        fclose(f);
}

static void rm_rf(const char *dir) {
        char cmd[4200];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        assert_int_equal(system(cmd), 0);
}

static void errors_free(struct cfg_errors *e) {
        for (size_t i = 0; i < e->n; i++)
                free(e->items[i]);
        free(e->items);
        *e = (struct cfg_errors) {};
}

static void test_template_override_and_errors(void **state) {
        char *dir = mkdtemp_test();
        struct mail_templates *t = NULL;
        struct cfg_errors errs = {};
        struct cfg_mail cfg = test_cfg();
        char path[4200];

        /* Override one file: it wins, the others come from the defaults. */
        write_file(dir, "reminder.subject", "Custom {{reminder_number}} for {{customer_name}} / Grüße\n");
        assert_int_equal(mail_templates_load(dir, template_dir(), &t, &errs), 0);
        struct mail_context ctx = hostile_ctx(MAIL_KIND_REMINDER);
        ctx.customer_name = "Contoso Ltd";
        struct mail_message *m = NULL;
        char *err = NULL;
        assert_int_equal(mail_render(t, &cfg, &ctx, &m, &err), 0);
        assert_string_equal(m->subject, "Custom 2 for Contoso Ltd / Grüße");
        struct parsed p = {};
        parse_message(m, &p);
        assert_non_null(strstr(p.text, "reminder 2"));
        parsed_free(&p);
        m = mail_message_free(m);
        t = mail_templates_free(t);

        /* Unknown placeholders: FILE:LINE errors, all of them. */
        write_file(dir, "new-request.txt", "Hello {{customer_name}},\n\nline three {{bogus}} and {{url}}\n{{Domain}}\n");
        write_file(dir, "confirmation.html", "<p>{{orders}} {{unterminated</p>\n");
        assert_int_equal(mail_templates_load(dir, template_dir(), &t, &errs), -EINVAL);
        assert_null(t);
        assert_int_equal(errs.n, 3);
        snprintf(path, sizeof(path), "%s/new-request.txt:3: unknown placeholder {{bogus}}", dir);
        assert_string_equal(errs.items[0], path);
        snprintf(path, sizeof(path), "%s/new-request.txt:4: unknown placeholder {{Domain}}", dir);
        assert_string_equal(errs.items[1], path);
        snprintf(path, sizeof(path), "%s/confirmation.html:1: unterminated placeholder", dir);
        assert_string_equal(errs.items[2], path);
        errors_free(&errs);

        /* Missing templates are reported with the path. */
        assert_true(mail_templates_load(NULL, dir, &t, &errs) < 0);
        assert_true(errs.n >= 15);
        errors_free(&errs);

        /* A subject of two lines is refused. */
        unlink(strcat(strcpy(path, dir), "/new-request.txt"));
        unlink(strcat(strcpy(path, dir), "/confirmation.html"));
        write_file(dir, "ops-notice.subject", "one\ntwo\n");
        assert_int_equal(mail_templates_load(dir, template_dir(), &t, &errs), -EINVAL);
        assert_int_equal(errs.n, 1);
        assert_non_null(strstr(errs.items[0], "ops-notice.subject:1:"));
        errors_free(&errs);
        rm_rf(dir);
        free(dir);
}

static void test_ops_without_ops_list(void **state) {
        struct mail_templates *t = NULL;
        struct cfg_errors errs = {};
        struct cfg_mail cfg = test_cfg();
        struct mail_message *m = NULL;
        char *err = NULL;

        assert_int_equal(mail_templates_load(NULL, template_dir(), &t, &errs), 0);
        cfg.n_ops = 0;
        cfg.n_cc = 0;
        cfg.n_bcc = 0;
        struct mail_context ctx = hostile_ctx(MAIL_KIND_OPS_NOTICE);
        ctx.url = NULL;
        assert_int_equal(mail_render(t, &cfg, &ctx, &m, &err), 0);
        assert_int_equal(m->n_rcpt, 2);
        assert_string_equal(m->rcpt[0], "admins@contoso.example");
        m = mail_message_free(m);
        cfg.n_to = 0;
        assert_int_equal(mail_render(t, &cfg, &ctx, &m, &err), -EINVAL);
        assert_non_null(strstr(err, "no recipients"));
        free(err);
        mail_templates_free(t);
}

static void test_from_display_encoded(void **state) {
        struct mail_templates *t = NULL;
        struct cfg_errors errs = {};
        struct cfg_mail cfg = test_cfg();
        struct mail_message *m = NULL;
        char *err = NULL;
        struct parsed p = {};

        assert_int_equal(mail_templates_load(NULL, template_dir(), &t, &errs), 0);
        cfg.from = (char *) "\"Zoë Müller, Partner Desk\" <desk@softwareone.example>";
        char *to[] = { (char *) "\"Admin, \\\"Main\\\"\" <a@contoso.example>" };
        cfg.to = to;
        cfg.n_to = 1;
        struct mail_context ctx = hostile_ctx(MAIL_KIND_NEW_REQUEST);
        assert_int_equal(mail_render(t, &cfg, &ctx, &m, &err), 0);
        parse_message(m, &p);
        char *from = header_get(p.headers, "From");
        /* encoded display name, bare addr-spec after it, never encoded */
        assert_true(strncmp(from, "=?UTF-8?B?", 10) == 0);
        assert_non_null(strstr(from, " <desk@softwareone.example>"));
        char *d = decode_header(from);
        assert_string_equal(d, "Zoë Müller, Partner Desk <desk@softwareone.example>");
        free(d);
        free(from);
        char *tov = header_get(p.headers, "To");
        assert_string_equal(tov, "\"Admin, \\\"Main\\\"\" <a@contoso.example>");
        free(tov);
        parsed_free(&p);
        mail_message_free(m);
        mail_templates_free(t);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_header_ascii),
                cmocka_unit_test(test_header_utf8),
                cmocka_unit_test(test_header_injection),
                cmocka_unit_test(test_qp),
                cmocka_unit_test(test_encoding_properties),
                cmocka_unit_test(test_address),
                cmocka_unit_test(test_url_allowed),
                cmocka_unit_test(test_render_every_kind),
                cmocka_unit_test(test_render_header_injection),
                cmocka_unit_test(test_render_refusals),
                cmocka_unit_test(test_draft_without_clock),
                cmocka_unit_test(test_template_override_and_errors),
                cmocka_unit_test(test_ops_without_ops_list),
                cmocka_unit_test(test_from_display_encoded),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
