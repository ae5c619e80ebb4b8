/* SPDX-License-Identifier: MIT */
/*
 * lib/mail transports and outbox against real peers: tests/tools/smtpd.py
 * (aiosmtpd) on loopback, plain and STARTTLS with a CA made by openssl at
 * test time, and a fake sendmail script.  Every received message is parsed
 * with Python's email package (tests/tools/mailparse.py).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "http.h"
#include "mail.h"
#include "smtp.h"
#include "util.h"

static const char *const URL =
        "https://admin.microsoft.com/Adminportal/Home?invType=ResellerRelationship&partnerId=4b8f0c1e-aaaa-bbbb-cccc-0123456789ab&msppId=0&DAP=true#/BillingAccounts/partner-invitation";

/* ---- fixture ------------------------------------------------------------ */

struct fx {
        uv_loop_t loop;
        struct http *http;
        struct mail_templates *tpl;
        struct cfg_mail cfg;
        char *to[3];
        char *cc[1];
        char *bcc[1];
        char *tmp;
};

static const char *template_dir(void) {
        static char path[4096];
        const char *src = getenv("TEST_SRCDIR");
        snprintf(path, sizeof(path), "%s/config/templates", src && *src ? src : ".");
        return path;
}

static void fx_init(struct fx *f, const char *smtp_url) {
        struct cfg_errors errs = {};
        memset(f, 0, sizeof(*f));
        assert_int_equal(uv_loop_init(&f->loop), 0);
        assert_int_equal(http_new(&f->loop, NULL, &f->http), 0);
        assert_int_equal(mail_templates_load(NULL, template_dir(), &f->tpl, &errs), 0);
        f->to[0] = (char *) "Contoso Admins <admins@contoso.example>";
        f->to[1] = (char *) "it@contoso.example";
        f->cc[0] = (char *) "desk-copy@softwareone.example";
        f->bcc[0] = (char *) "audit@softwareone.example";
        f->cfg = (struct cfg_mail) {
                .transport = CFG_TRANSPORT_SMTP,
                .smtp_url = (char *) smtp_url,
                .from = (char *) "Marketplace Partner Desk <partner-desk@softwareone.example>",
                .to = f->to, .n_to = 2,
                .cc = f->cc, .n_cc = 1,
                .bcc = f->bcc, .n_bcc = 1,
        };
        f->tmp = harness_smtp_mkdtemp();
        assert_non_null(f->tmp);
}

static void fx_done(struct fx *f) {
        f->http = http_free(f->http);
        uv_run(&f->loop, UV_RUN_DEFAULT);
        assert_int_equal(uv_loop_close(&f->loop), 0);
        mail_templates_free(f->tpl);
        harness_smtp_rm_rf(f->tmp);
        free(f->tmp);
}

static struct mail_message *render(struct fx *f, enum mail_kind kind, const char *customer) {
        static const struct mail_order orders[] = {
                { .id = "ORD-1234-5678-9012", .product = "Microsoft 365 Business Premium",
                  .portal_link = "https://portal.platform.softwareone.com/commerce/orders/ORD-1234-5678-9012",
                  .querying_since = 1795000000, .deadline = 1796296000 },
        };
        struct mail_context ctx = {
                .kind = kind,
                .customer_name = customer,
                .domain = "contoso.example",
                .tenant_id = "7c3d1c83-1111-2222-3333-444455556666",
                .url = URL,
                .orders = orders,
                .n_orders = 1,
                .reminder_number = 1,
                .deadline = 1796296000,
                .now = util_now_wall(),
        };
        struct mail_message *m = NULL;
        char *err = NULL;
        int r = mail_render(f->tpl, &f->cfg, &ctx, &m, &err);
        if (r < 0)
                fail_msg("render: %s", err ? err : "?");
        return m;
}

/* Result of one send, copied out of the callback. */
struct sent {
        bool done;
        struct mail_result res;
        char error[1024];
};

static void on_sent(void *ud, const struct mail_result *res) {
        struct sent *s = ud;
        s->done = true;
        s->res = *res;
        snprintf(s->error, sizeof(s->error), "%s", res->error ? res->error : "");
        s->res.error = s->error;
}

static void run_until(struct fx *f, const bool *flag) {
        uint64_t end = util_now_mono_ms() + 30000;
        while (!*flag) {
                if (util_now_mono_ms() > end)
                        fail_msg("timed out waiting for the transfer");
                uv_run(&f->loop, UV_RUN_ONCE);
        }
}

static struct sent send_one(struct fx *f, const struct mail_message *m) {
        struct mail_transport *t = NULL;
        struct sent s = {};
        assert_int_equal(mail_transport_new(f->http, &f->loop, &f->cfg, &t), 0);
        assert_int_equal(mail_send(t, m, on_sent, &s), 0);
        run_until(f, &s.done);
        mail_transport_free(t);
        return s;
}

static const char *jstr(json_t *j, const char *path1, const char *path2) {
        json_t *v = json_object_get(j, path1);
        if (path2)
                v = json_object_get(v, path2);
        return json_string_value(v);
}

/* Checks a received message against what was rendered. */
static void check_received(json_t *j, const struct mail_message *m, bool with_url) {
        assert_non_null(j);
        assert_string_equal(jstr(j, "content_type", NULL), "multipart/alternative");
        json_t *parts = json_object_get(j, "parts");
        assert_int_equal(json_array_size(parts), 2);
        assert_string_equal(json_string_value(json_array_get(parts, 0)), "text/plain");
        assert_string_equal(json_string_value(json_array_get(parts, 1)), "text/html");
        assert_int_equal(json_array_size(json_object_get(j, "defects")), 0);
        assert_false(json_is_true(json_object_get(j, "bare_lf")));
        assert_true(json_integer_value(json_object_get(j, "max_line_len")) <= 78);
        assert_string_equal(jstr(j, "subject", NULL), m->subject);
        assert_string_equal(jstr(j, "headers", "Message-ID"), m->message_id);
        assert_string_equal(jstr(j, "headers", "Auto-Submitted"), "auto-generated");
        assert_string_equal(jstr(j, "headers", "X-Auto-Response-Suppress"), "All");
        assert_string_equal(jstr(j, "headers", "MIME-Version"), "1.0");
        assert_non_null(jstr(j, "headers", "Date"));
        assert_null(json_object_get(json_object_get(j, "headers"), "Bcc"));
        assert_string_equal(jstr(j, "from", NULL), "partner-desk@softwareone.example");
        const char *text = jstr(j, "text", NULL), *html = jstr(j, "html", NULL);
        assert_non_null(text);
        assert_non_null(html);
        if (with_url) {
                assert_non_null(strstr(text, URL));
                json_t *links = json_object_get(j, "links");
                assert_true(json_array_size(links) >= 1);
                assert_string_equal(json_string_value(json_array_get(links, 0)), URL);
                assert_non_null(strstr(html, ">Accept the relationship</a>"));
        }
        /* The envelope is exactly the rendered one (Bcc included). */
        json_t *rcpt = json_object_get(json_object_get(j, "envelope"), "rcpt_tos");
        assert_string_equal(jstr(j, "envelope", "mail_from"), m->envelope_from);
        (void) rcpt;
}

static void assert_envelope(json_t *j, const char *const *want, size_t n) {
        json_t *rcpt = json_object_get(json_object_get(j, "envelope"), "rcpt_tos");
        assert_int_equal(json_array_size(rcpt), n);
        for (size_t i = 0; i < n; i++)
                assert_string_equal(json_string_value(json_array_get(rcpt, i)), want[i]);
}

/* ---- SMTP ---------------------------------------------------------------- */

/* A test CA and a server certificate for 127.0.0.1/localhost. */
struct certs {
        char *dir, *ca, *cert, *key;
};

static struct certs certs_make(void) {
        struct certs c = { .dir = harness_smtp_mkdtemp() };
        assert_non_null(c.dir);
        if (harness_smtp_make_certs(c.dir) < 0)
                fail_msg("openssl could not make the test certificates");
        assert_true(asprintf(&c.ca, "%s/ca.pem", c.dir) > 0);
        assert_true(asprintf(&c.cert, "%s/server.pem", c.dir) > 0);
        assert_true(asprintf(&c.key, "%s/server.key", c.dir) > 0);
        return c;
}

static void certs_free(struct certs *c) {
        harness_smtp_rm_rf(c->dir);
        free(c->dir);
        free(c->ca);
        free(c->cert);
        free(c->key);
}

static void test_plain_loopback(void **state) {
        struct harness_smtp *srv = NULL;
        struct fx f;
        assert_int_equal(harness_smtp_start(NULL, &srv), 0);
        fx_init(&f, harness_smtp_url(srv));

        const char *customer = "Müller & Söhne 日本語 GmbH — \"Zweigstelle\" Straße 12, Überlingen am Bodensee";
        struct mail_message *m = render(&f, MAIL_KIND_NEW_REQUEST, customer);
        struct sent s = send_one(&f, m);
        assert_true(s.done);
        assert_true(s.res.ok);
        assert_int_equal(s.res.smtp_code, 250);
        assert_int_equal(s.res.n_refused, 0);

        assert_int_equal(harness_smtp_count(srv), 1);
        json_t *j = harness_smtp_parse(srv, 0);
        check_received(j, m, true);
        const char *want[] = { "admins@contoso.example", "it@contoso.example",
                               "desk-copy@softwareone.example", "audit@softwareone.example" };
        assert_envelope(j, want, 4);
        assert_false(json_is_true(json_object_get(json_object_get(j, "envelope"), "tls")));
        json_t *to = json_object_get(j, "to");
        assert_int_equal(json_array_size(to), 2);
        assert_string_equal(json_string_value(json_array_get(to, 0)), "admins@contoso.example");
        assert_string_equal(json_string_value(json_array_get(json_object_get(j, "cc"), 0)),
                            "desk-copy@softwareone.example");
        /* The customer name is in the text as written and escaped in HTML. */
        assert_non_null(strstr(jstr(j, "text", NULL), customer));
        assert_non_null(strstr(jstr(j, "html", NULL), "Müller &amp; Söhne 日本語 GmbH — &quot;Zweigstelle&quot;"));
        json_decref(j);
        mail_message_free(m);

        /* A non-ASCII subject (override) decodes to the original. */
        char *ovr = NULL;
        assert_true(asprintf(&ovr, "%s/ovr", f.tmp) > 0);
        assert_int_equal(mkdir(ovr, 0700), 0);
        char *p = NULL;
        assert_true(asprintf(&p, "%s/reminder.subject", ovr) > 0);
        const char *subj = "Erinnerung {{reminder_number}}: Partnerbeziehung für {{customer_name}} bestätigen — 日本語のお知らせ、至急ご確認ください";
        assert_int_equal(util_write_file_atomic(p, subj, strlen(subj), 0644), 0);
        struct cfg_errors errs = {};
        mail_templates_free(f.tpl);
        assert_int_equal(mail_templates_load(ovr, template_dir(), &f.tpl, &errs), 0);
        m = render(&f, MAIL_KIND_REMINDER, "Müller GmbH");
        assert_non_null(strstr(m->subject, "Partnerbeziehung für Müller GmbH bestätigen — 日本語"));
        s = send_one(&f, m);
        assert_true(s.res.ok);
        j = harness_smtp_parse(srv, 1);
        check_received(j, m, true);
        assert_string_equal(jstr(j, "subject", NULL),
                            "Erinnerung 1: Partnerbeziehung für Müller GmbH bestätigen — 日本語のお知らせ、至急ご確認ください");
        /* raw header: encoded words only, no 8-bit */
        json_t *raw = json_object_get(j, "raw_header_lines");
        bool saw_word = false;
        for (size_t i = 0; i < json_array_size(raw); i++) {
                const char *l = json_string_value(json_array_get(raw, i));
                for (const char *c = l; *c; c++)
                        assert_true((unsigned char) *c < 0x80);
                if (strstr(l, "=?UTF-8?B?"))
                        saw_word = true;
        }
        assert_true(saw_word);
        json_decref(j);
        mail_message_free(m);
        free(p);
        free(ovr);

        fx_done(&f);
        harness_smtp_stop(srv);
}

/* CR/LF in a customer name, followed by header lines of other names than
 * Bcc and an empty line, through the real server: what it received has
 * exactly the headers partnerd writes, each once (a check about injection,
 * not about line length), the envelope only the configured recipients, and
 * the injected text stays inside the Subject as text. */
static void test_header_injection_received(void **state) {
        static const char *const allowed[] = {
                "Date", "Message-ID", "From", "To", "Cc", "Subject", "MIME-Version", "Auto-Submitted",
                "X-Auto-Response-Suppress", "Content-Type",
        };
        static const char *const evil[] = {
                "Contoso\r\nX-Injected: 1\r\nReply-To: evil@evil.example",
                "Contoso\nBcc: evil@evil.example\n\nforged body",
                "Müller\r\nX-Injected: 2\r\nTo: evil@evil.example",
        };
        const char *want[] = { "admins@contoso.example", "it@contoso.example",
                               "desk-copy@softwareone.example", "audit@softwareone.example" };
        struct harness_smtp *srv = NULL;
        struct fx f;
        assert_int_equal(harness_smtp_start(NULL, &srv), 0);
        fx_init(&f, harness_smtp_url(srv));
        /* the shipped new-request subject names the domain only: an
         * operator's subject naming the customer (as the ops notice does) */
        char *ovr = NULL, *p = NULL;
        const char *subj_tpl = "Action needed for {{customer_name}} ({{domain}})";
        struct cfg_errors errs = {};
        assert_true(asprintf(&ovr, "%s/ovr", f.tmp) > 0);
        assert_int_equal(mkdir(ovr, 0700), 0);
        assert_true(asprintf(&p, "%s/new-request.subject", ovr) > 0);
        assert_int_equal(util_write_file_atomic(p, subj_tpl, strlen(subj_tpl), 0644), 0);
        mail_templates_free(f.tpl);
        assert_int_equal(mail_templates_load(ovr, template_dir(), &f.tpl, &errs), 0);
        free(p);
        free(ovr);

        for (size_t e = 0; e < sizeof(evil) / sizeof(evil[0]); e++) {
                struct mail_message *m = render(&f, MAIL_KIND_NEW_REQUEST, evil[e]);
                struct sent sn = send_one(&f, m);
                assert_true(sn.res.ok);
                json_t *j = harness_smtp_parse(srv, e);
                assert_non_null(j);
                json_t *names = json_object_get(j, "header_names");
                assert_true(json_array_size(names) >= 9);
                for (size_t i = 0; i < json_array_size(names); i++) {
                        const char *n = json_string_value(json_array_get(names, i));
                        size_t k, dup = 0;
                        for (k = 0; k < sizeof(allowed) / sizeof(allowed[0]); k++)
                                if (strcasecmp(n, allowed[k]) == 0)
                                        break;
                        if (k == sizeof(allowed) / sizeof(allowed[0]))
                                fail_msg("input %zu: the server received an injected header %s", e, n);
                        for (size_t i2 = 0; i2 < json_array_size(names); i2++)
                                dup += strcasecmp(n, json_string_value(json_array_get(names, i2))) == 0;
                        if (dup != 1)
                                fail_msg("input %zu: header %s received %zu times", e, n, dup);
                }
                assert_envelope(j, want, 4);
                check_received(j, m, true);
                /* the injected words are in the one Subject, as text */
                const char *subj = jstr(j, "subject", NULL);
                assert_non_null(subj);
                assert_null(strpbrk(subj, "\r\n"));
                assert_non_null(strstr(subj, e == 1 ? "Bcc: evil@evil.example" : "X-Injected:"));
                json_t *to = json_object_get(j, "to");
                assert_int_equal(json_array_size(to), 2);
                assert_null(json_object_get(json_object_get(j, "headers"), "Reply-To"));
                json_decref(j);
                mail_message_free(m);
        }
        fx_done(&f);
        harness_smtp_stop(srv);
}

static void test_starttls_auth(void **state) {
        struct harness_smtp *srv = NULL;
        struct certs c = certs_make();
        char *ca = c.ca, *cert = c.cert, *key = c.key;
        struct harness_smtp_options o = { .tls_cert = cert, .tls_key = key, .auth = "mailer:s3cret pass" };
        assert_int_equal(harness_smtp_start(&o, &srv), 0);

        char url[128];
        snprintf(url, sizeof(url), "smtp://localhost:%d", harness_smtp_port(srv));
        struct fx f;
        fx_init(&f, url);
        f.cfg.username = (char *) "mailer";
        f.cfg.password = (char *) "s3cret pass";
        f.cfg.ca_file = ca;

        struct mail_message *m = render(&f, MAIL_KIND_FINAL_WARNING, "Contoso Ltd");
        struct sent s = send_one(&f, m);
        if (!s.res.ok)
                fail_msg("send failed: %s", s.error);
        assert_int_equal(harness_smtp_count(srv), 1);
        json_t *j = harness_smtp_parse(srv, 0);
        check_received(j, m, true);
        json_t *env = json_object_get(j, "envelope");
        assert_true(json_is_true(json_object_get(env, "tls")));
        assert_string_equal(json_string_value(json_object_get(env, "auth_user")), "mailer");
        /* the server saw STARTTLS before AUTH and MAIL */
        json_t *tr = json_object_get(env, "transcript");
        assert_string_equal(json_string_value(json_array_get(tr, 0)), "STARTTLS");
        assert_non_null(strstr(json_string_value(json_array_get(tr, 1)), "AUTH"));
        json_decref(j);

        /* Wrong password: not delivered, retried later (a setup problem). */
        f.cfg.password = (char *) "wrong";
        s = send_one(&f, m);
        assert_false(s.res.ok);
        assert_false(s.res.permanent);
        assert_null(strstr(s.error, "wrong"));
        assert_int_equal(harness_smtp_count(srv), 1);

        /* Without the test CA the certificate is not trusted: never sent. */
        f.cfg.password = (char *) "s3cret pass";
        f.cfg.ca_file = NULL;
        s = send_one(&f, m);
        assert_false(s.res.ok);
        assert_false(s.res.permanent);
        assert_true(s.error[0] != '\0');
        assert_int_equal(harness_smtp_count(srv), 1);

        mail_message_free(m);
        fx_done(&f);
        harness_smtp_stop(srv);
        certs_free(&c);
}

static void test_smtps_implicit_tls(void **state) {
        struct harness_smtp *srv = NULL;
        struct certs c = certs_make();
        char *ca = c.ca, *cert = c.cert, *key = c.key;
        struct harness_smtp_options o = { .tls_cert = cert, .tls_key = key, .implicit_tls = true,
                                          .auth = "mailer:pw" };
        assert_int_equal(harness_smtp_start(&o, &srv), 0);
        assert_true(strncmp(harness_smtp_url(srv), "smtps://", 8) == 0);

        struct fx f;
        fx_init(&f, harness_smtp_url(srv));
        f.cfg.username = (char *) "mailer";
        f.cfg.password = (char *) "pw";
        f.cfg.ca_file = ca;
        struct mail_message *m = render(&f, MAIL_KIND_DRAFT_WARNING, "Contoso");
        struct sent s = send_one(&f, m);
        if (!s.res.ok)
                fail_msg("send failed: %s", s.error);
        json_t *j = harness_smtp_parse(srv, 0);
        check_received(j, m, true);
        assert_string_equal(jstr(j, "envelope", "auth_user"), "mailer");
        json_t *tr = json_object_get(json_object_get(j, "envelope"), "transcript");
        assert_string_not_equal(json_string_value(json_array_get(tr, 0)), "STARTTLS");
        json_decref(j);

        /* The certificate must match the host name in the URL. */
        char url[128];
        snprintf(url, sizeof(url), "smtps://127.0.0.2:%d", harness_smtp_port(srv));
        f.cfg.smtp_url = url;
        s = send_one(&f, m);
        assert_false(s.res.ok);
        assert_false(s.res.permanent);
        assert_int_equal(harness_smtp_count(srv), 1);

        mail_message_free(m);
        fx_done(&f);
        harness_smtp_stop(srv);
        certs_free(&c);
}

/* A non-loopback smtp:// relay without STARTTLS is never used in plaintext. */
static void test_starttls_required(void **state) {
        struct ifaddrs *ifa = NULL;
        char host[INET_ADDRSTRLEN] = "";
        assert_int_equal(getifaddrs(&ifa), 0);
        for (struct ifaddrs *i = ifa; i; i = i->ifa_next)
                if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET && !(i->ifa_flags & IFF_LOOPBACK) &&
                    (i->ifa_flags & IFF_UP)) {
                        inet_ntop(AF_INET, &((struct sockaddr_in *) i->ifa_addr)->sin_addr, host, sizeof(host));
                        break;
                }
        freeifaddrs(ifa);
        if (!host[0]) {
                print_message("no non-loopback IPv4 address: skipped\n");
                skip();
        }
        struct harness_smtp *srv = NULL;
        struct harness_smtp_options o = { .host = host };
        assert_int_equal(harness_smtp_start(&o, &srv), 0);
        struct fx f;
        fx_init(&f, harness_smtp_url(srv));
        struct mail_message *m = render(&f, MAIL_KIND_NEW_REQUEST, "Contoso");
        struct sent s = send_one(&f, m);
        assert_false(s.res.ok);
        assert_false(s.res.permanent);
        assert_non_null(strcasestr(s.error, "TLS"));
        assert_int_equal(harness_smtp_count(srv), 0);
        mail_message_free(m);
        fx_done(&f);
        harness_smtp_stop(srv);
}

static void test_refused_recipient(void **state) {
        struct harness_smtp *srv = NULL;
        struct harness_smtp_options o = { .refuse = { "it@contoso.example" } };
        assert_int_equal(harness_smtp_start(&o, &srv), 0);
        struct fx f;
        fx_init(&f, harness_smtp_url(srv));

        f.cfg.from = (char *) "\"Zoë Müller, Partner Desk\" <partner-desk@softwareone.example>";
        struct mail_message *m = render(&f, MAIL_KIND_NEW_REQUEST, "Contoso");
        struct sent s = send_one(&f, m);
        assert_true(s.res.ok);
        assert_int_equal(s.res.n_refused, 1);
        assert_non_null(strstr(s.error, "550"));
        assert_non_null(strstr(s.error, "it@contoso.example"));
        assert_int_equal(harness_smtp_count(srv), 1);
        json_t *j = harness_smtp_parse(srv, 0);
        check_received(j, m, true);
        const char *want[] = { "admins@contoso.example", "desk-copy@softwareone.example",
                               "audit@softwareone.example" };
        assert_envelope(j, want, 3);
        assert_string_equal(jstr(j, "from_name", NULL), "Zoë Müller, Partner Desk");
        json_decref(j);
        mail_message_free(m);

        /* Every recipient refused: permanent, nothing stored. */
        f.cfg.n_to = 1;
        f.to[0] = (char *) "it@contoso.example";
        f.cfg.n_cc = 0;
        f.cfg.n_bcc = 0;
        m = render(&f, MAIL_KIND_NEW_REQUEST, "Contoso");
        s = send_one(&f, m);
        assert_false(s.res.ok);
        assert_true(s.res.permanent);
        assert_int_equal(s.res.smtp_code, 550);
        assert_int_equal(harness_smtp_count(srv), 1);
        mail_message_free(m);

        fx_done(&f);
        harness_smtp_stop(srv);
}

/* A hand-made message: lines starting with '.', a lone '.', and a long raw
 * line (no QP) must arrive intact. */
static void test_dot_stuffing_long_lines(void **state) {
        struct harness_smtp *srv = NULL;
        assert_int_equal(harness_smtp_start(NULL, &srv), 0);
        struct fx f;
        fx_init(&f, harness_smtp_url(srv));

        /* Through the templates: text with dots and a 300-char line. */
        char *ovr = NULL, *p = NULL;
        assert_true(asprintf(&ovr, "%s/ovr", f.tmp) > 0);
        assert_int_equal(mkdir(ovr, 0700), 0);
        assert_true(asprintf(&p, "%s/confirmation.txt", ovr) > 0);
        struct util_buf b;
        util_buf_init(&b, 1 << 20);
        const char *head = "Hello {{customer_name}}\n.\n.leading dot\n..two dots\n";
        util_buf_puts(&b, head);
        for (int i = 0; i < 30; i++)
                util_buf_puts(&b, "0123456789");
        util_buf_puts(&b, "\nend\n");
        assert_int_equal(util_write_file_atomic(p, b.data, b.len, 0644), 0);
        struct cfg_errors errs = {};
        mail_templates_free(f.tpl);
        assert_int_equal(mail_templates_load(ovr, template_dir(), &f.tpl, &errs), 0);
        struct mail_message *m = render(&f, MAIL_KIND_CONFIRMATION, "Contoso");
        struct sent s = send_one(&f, m);
        assert_true(s.res.ok);
        json_t *j = harness_smtp_parse(srv, 0);
        check_received(j, m, false);
        char *want = NULL;
        assert_true(asprintf(&want, "Hello Contoso\n%s", b.data + strlen("Hello {{customer_name}}\n")) > 0);
        assert_string_equal(jstr(j, "text", NULL), want);
        free(want);
        json_decref(j);
        mail_message_free(m);
        util_buf_free(&b);

        /* A raw message with a lone "." line and a 990-octet line. */
        util_buf_init(&b, 1 << 20);
        util_buf_puts(&b, "From: partner-desk@softwareone.example\r\nTo: admins@contoso.example\r\n"
                          "Subject: raw\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=US-ASCII\r\n\r\n"
                          "line one\r\n.\r\n.\r\n..\r\n. after dot\r\n");
        for (int i = 0; i < 99; i++)
                util_buf_puts(&b, "abcdefghi ");
        util_buf_puts(&b, "\r\nlast line\r\n");
        char *rcpt[] = { (char *) "admins@contoso.example" };
        struct mail_message raw = {
                .message_id = (char *) "<raw@softwareone.example>",
                .envelope_from = (char *) "partner-desk@softwareone.example",
                .rcpt = rcpt, .n_rcpt = 1, .subject = (char *) "raw",
                .data = b.data, .len = b.len,
        };
        s = send_one(&f, &raw);
        assert_true(s.res.ok);
        size_t len = 0;
        char *got = harness_smtp_raw(srv, 1, &len);
        assert_non_null(got);
        assert_int_equal(len, b.len);
        assert_memory_equal(got, b.data, len);
        free(got);
        util_buf_free(&b);
        free(p);
        free(ovr);
        fx_done(&f);
        harness_smtp_stop(srv);
}

/* Addresses with CR/LF never reach an SMTP command. */
static void test_envelope_injection(void **state) {
        struct harness_smtp *srv = NULL;
        assert_int_equal(harness_smtp_start(NULL, &srv), 0);
        struct fx f;
        fx_init(&f, harness_smtp_url(srv));
        struct mail_transport *t = NULL;
        assert_int_equal(mail_transport_new(f.http, &f.loop, &f.cfg, &t), 0);
        char *rcpt[] = { (char *) "a@contoso.example>\r\nRCPT TO:<evil@evil.example" };
        struct mail_message m = {
                .envelope_from = (char *) "partner-desk@softwareone.example",
                .rcpt = rcpt, .n_rcpt = 1, .data = (char *) "Subject: x\r\n\r\nx\r\n", .len = 17,
        };
        struct sent s = {};
        assert_int_equal(mail_send(t, &m, on_sent, &s), -EINVAL);
        rcpt[0] = (char *) "ok@contoso.example";
        m.envelope_from = (char *) "x@y.example\r\nRSET";
        assert_int_equal(mail_send(t, &m, on_sent, &s), -EINVAL);
        mail_transport_free(t);
        assert_int_equal(harness_smtp_count(srv), 0);
        fx_done(&f);
        harness_smtp_stop(srv);
}

/* ---- outbox -------------------------------------------------------------- */

struct flushed {
        bool done;
        struct mail_flush_stats st;
        enum mail_flush_outcome outcome[8];
        long code[8];
        char error[8][512];
        char key[8][128];
        int64_t next_attempt[8];
};

static void on_flushed(void *ud, const struct mail_flush_stats *st) {
        struct flushed *fl = ud;
        fl->done = true;
        fl->st = *st;
        for (size_t i = 0; i < st->n_items && i < 8; i++) {
                fl->outcome[i] = st->items[i].outcome;
                fl->code[i] = st->items[i].smtp_code;
                snprintf(fl->error[i], sizeof(fl->error[i]), "%s", st->items[i].error ? st->items[i].error : "");
                snprintf(fl->key[i], sizeof(fl->key[i]), "%s", st->items[i].dedup_key);
                fl->next_attempt[i] = st->items[i].next_attempt;
        }
        fl->st.items = NULL;
}

static struct flushed flush(struct fx *f, struct mail_outbox *o, struct mail_transport *t, int64_t now) {
        struct flushed fl = {};
        assert_int_equal(mail_outbox_flush(o, t, now, on_flushed, &fl), 0);
        run_until(f, &fl.done);
        return fl;
}

static size_t count_files(const char *dir, const char *suffix) {
        char cmd[4300];
        snprintf(cmd, sizeof(cmd), "ls '%s' 2>/dev/null | grep -c '%s$'", dir, suffix);
        FILE *p = popen(cmd, "r");
        size_t n = 0;
        if (p) {
                if (fscanf(p, "%zu", &n) != 1)
                        n = 0;
                pclose(p);
        }
        return n;
}

static void test_outbox_server_down_then_up(void **state) {
        struct harness_smtp *srv = NULL;
        assert_int_equal(harness_smtp_start(NULL, &srv), 0);
        int port = harness_smtp_port(srv);
        char url[64];
        snprintf(url, sizeof(url), "smtp://127.0.0.1:%d", port);
        harness_smtp_stop(srv);   /* now nothing listens there */
        srv = NULL;

        struct fx f;
        fx_init(&f, url);
        struct mail_transport *t = NULL;
        assert_int_equal(mail_transport_new(f.http, &f.loop, &f.cfg, &t), 0);
        struct mail_outbox *o = NULL;
        assert_int_equal(mail_outbox_open(f.tmp, &o), 0);
        char outdir[4200];
        snprintf(outdir, sizeof(outdir), "%s/outbox", f.tmp);
        struct stat st;
        assert_int_equal(stat(outdir, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0700);

        int64_t now = 1800000000;
        struct mail_message *m = render(&f, MAIL_KIND_NEW_REQUEST, "Contoso");
        assert_int_equal(mail_outbox_put(o, "new-request:contoso:ep1", m, now), 0);
        assert_int_equal(mail_outbox_put(o, "new-request:contoso:ep1", m, now), 1);
        assert_int_equal(mail_outbox_pending(o), 1);
        assert_int_equal(count_files(outdir, ".msg"), 1);
        char cmd[4400];
        snprintf(cmd, sizeof(cmd), "test \"$(stat -c %%a %s/*.msg)\" = 600", outdir);
        assert_int_equal(system(cmd), 0);

        struct flushed fl = flush(&f, o, t, now);
        assert_int_equal(fl.st.retry_later, 1);
        assert_int_equal(fl.st.sent, 0);
        assert_int_equal(fl.st.n_items, 1);
        assert_int_equal(fl.outcome[0], MAIL_FLUSH_RETRY);
        assert_string_equal(fl.key[0], "new-request:contoso:ep1");
        assert_true(fl.error[0][0] != '\0');
        assert_true(fl.next_attempt[0] >= now + 60);
        assert_int_equal(mail_outbox_pending(o), 1);

        /* Restart: the message is still there. */
        o = mail_outbox_free(o);
        assert_int_equal(mail_outbox_open(f.tmp, &o), 0);
        assert_int_equal(mail_outbox_pending(o), 1);
        assert_int_equal(mail_outbox_put(o, "new-request:contoso:ep1", m, now), 1);

        struct harness_smtp_options so = { .port = port };
        assert_int_equal(harness_smtp_start(&so, &srv), 0);
        /* Not due yet: nothing is attempted (callback from the call). */
        fl = flush(&f, o, t, now + 30);
        assert_int_equal(fl.st.n_items, 0);
        assert_int_equal(harness_smtp_count(srv), 0);
        fl = flush(&f, o, t, now + 61);
        assert_int_equal(fl.st.sent, 1);
        assert_int_equal(fl.outcome[0], MAIL_FLUSH_SENT);
        assert_int_equal(fl.code[0], 250);
        assert_int_equal(mail_outbox_pending(o), 0);
        assert_int_equal(count_files(outdir, ".msg"), 0);
        assert_int_equal(harness_smtp_count(srv), 1);
        json_t *j = harness_smtp_parse(srv, 0);
        check_received(j, m, true);
        json_decref(j);

        /* Delivered keys are remembered, across restarts too. */
        assert_int_equal(mail_outbox_put(o, "new-request:contoso:ep1", m, now + 100), 1);
        o = mail_outbox_free(o);
        assert_int_equal(mail_outbox_open(f.tmp, &o), 0);
        assert_int_equal(mail_outbox_put(o, "new-request:contoso:ep1", m, now + 200), 1);
        assert_int_equal(mail_outbox_pending(o), 0);
        fl = flush(&f, o, t, now + 10000);
        assert_int_equal(harness_smtp_count(srv), 1);

        mail_message_free(m);
        mail_outbox_free(o);
        mail_transport_free(t);
        fx_done(&f);
        harness_smtp_stop(srv);
}

static void test_outbox_451_then_success_and_5xx(void **state) {
        struct harness_smtp *srv = NULL;
        struct harness_smtp_options so = { .fail_data = 1 };
        assert_int_equal(harness_smtp_start(&so, &srv), 0);
        struct fx f;
        fx_init(&f, harness_smtp_url(srv));
        struct mail_transport *t = NULL;
        assert_int_equal(mail_transport_new(f.http, &f.loop, &f.cfg, &t), 0);
        struct mail_outbox *o = NULL;
        assert_int_equal(mail_outbox_open(f.tmp, &o), 0);

        int64_t now = 1800000000;
        struct mail_message *m = render(&f, MAIL_KIND_REMINDER, "Contoso");
        assert_int_equal(mail_outbox_put(o, "reminder:contoso:1", m, now), 0);
        struct flushed fl = flush(&f, o, t, now);
        assert_int_equal(fl.st.retry_later, 1);
        assert_int_equal(fl.code[0], 451);
        assert_non_null(strstr(fl.error[0], "451"));
        assert_int_equal(harness_smtp_count(srv), 0);
        /* second failure gets a longer delay */
        fl = flush(&f, o, t, now + 60);
        assert_int_equal(fl.st.sent, 1);
        assert_int_equal(harness_smtp_count(srv), 1);
        json_t *j = harness_smtp_parse(srv, 0);
        check_received(j, m, true);
        json_decref(j);
        mail_message_free(m);
        harness_smtp_stop(srv);

        /* A permanent 5xx: failed, kept in outbox/failed, key remembered. */
        struct harness_smtp_options so2 = { .reply_code = 554 };
        assert_int_equal(harness_smtp_start(&so2, &srv), 0);
        mail_transport_free(t);
        f.cfg.smtp_url = (char *) harness_smtp_url(srv);
        assert_int_equal(mail_transport_new(f.http, &f.loop, &f.cfg, &t), 0);
        m = render(&f, MAIL_KIND_FINAL_WARNING, "Contoso");
        assert_int_equal(mail_outbox_put(o, "final-warning:contoso", m, now), 0);
        fl = flush(&f, o, t, now + 1000);
        assert_int_equal(fl.st.failed, 1);
        assert_int_equal(fl.outcome[0], MAIL_FLUSH_FAILED);
        assert_int_equal(fl.code[0], 554);
        assert_non_null(strstr(fl.error[0], "554"));
        assert_int_equal(mail_outbox_pending(o), 0);
        char faildir[4200];
        snprintf(faildir, sizeof(faildir), "%s/outbox/failed", f.tmp);
        assert_int_equal(count_files(faildir, ".msg"), 1);
        assert_int_equal(mail_outbox_put(o, "final-warning:contoso", m, now + 2000), 1);
        o = mail_outbox_free(o);
        assert_int_equal(mail_outbox_open(f.tmp, &o), 0);
        assert_int_equal(mail_outbox_put(o, "final-warning:contoso", m, now + 3000), 1);
        assert_int_equal(mail_outbox_pending(o), 0);

        /* Several messages at once, bounded parallelism, all delivered. */
        harness_smtp_stop(srv);
        assert_int_equal(harness_smtp_start(NULL, &srv), 0);
        mail_transport_free(t);
        f.cfg.smtp_url = (char *) harness_smtp_url(srv);
        assert_int_equal(mail_transport_new(f.http, &f.loop, &f.cfg, &t), 0);
        for (int i = 0; i < 7; i++) {
                char key[32];
                snprintf(key, sizeof(key), "bulk:%d", i);
                assert_int_equal(mail_outbox_put(o, key, m, now + 4000), 0);
        }
        fl = flush(&f, o, t, now + 4000);
        assert_int_equal(fl.st.sent, 7);
        assert_int_equal(harness_smtp_count(srv), 7);
        mail_message_free(m);
        mail_outbox_free(o);
        mail_transport_free(t);
        fx_done(&f);
        harness_smtp_stop(srv);
}

/* ---- sendmail -------------------------------------------------------------- */

static void test_sendmail(void **state) {
        struct fx f;
        fx_init(&f, NULL);
        char *script = NULL, *codefile = NULL, *argsfile = NULL, *infile = NULL;
        assert_true(asprintf(&script, "%s/sendmail", f.tmp) > 0);
        assert_true(asprintf(&codefile, "%s/code", f.tmp) > 0);
        assert_true(asprintf(&argsfile, "%s/args", f.tmp) > 0);
        assert_true(asprintf(&infile, "%s/stdin", f.tmp) > 0);
        char *body = NULL;
        assert_true(asprintf(&body, "#!/bin/sh\nprintf '%%s\\n' \"$@\" > '%s'\ncat > '%s'\n"
                                    "code=$(cat '%s')\n[ \"$code\" = 0 ] || echo \"sendmail: simulated failure $code\" >&2\n"
                                    "exit $code\n", argsfile, infile, codefile) > 0);
        assert_int_equal(util_write_file_atomic(script, body, strlen(body), 0700), 0);
        free(body);

        f.cfg.transport = CFG_TRANSPORT_SENDMAIL;
        f.cfg.sendmail_path = script;
        struct mail_transport *t = NULL;
        assert_int_equal(mail_transport_new(NULL, &f.loop, &f.cfg, &t), 0);
        struct mail_message *m = render(&f, MAIL_KIND_DRAFT_WARNING, "Contoso");

        assert_int_equal(util_write_file_atomic(codefile, "0\n", 2, 0600), 0);
        struct sent s = {};
        assert_int_equal(mail_send(t, m, on_sent, &s), 0);
        run_until(&f, &s.done);
        assert_true(s.res.ok);
        char *data = NULL;
        size_t len = 0;
        assert_int_equal(util_read_file(infile, 1 << 24, &data, &len), 0);
        /* the message with LF line ends, otherwise identical */
        struct util_buf lf;
        util_buf_init(&lf, 1 << 24);
        for (size_t i = 0; i < m->len; i++)
                if (!(m->data[i] == '\r' && m->data[i + 1] == '\n'))
                        util_buf_append(&lf, m->data + i, 1);
        assert_int_equal(len, lf.len);
        assert_memory_equal(data, lf.data, len);
        assert_null(strchr(data, '\r'));
        assert_null(strstr(data, "\nBcc:"));
        util_buf_free(&lf);
        free(data);
        assert_int_equal(util_read_file(argsfile, 1 << 20, &data, NULL), 0);
        assert_string_equal(data, "-oi\n-f\npartner-desk@softwareone.example\n--\nadmins@contoso.example\n"
                                  "it@contoso.example\ndesk-copy@softwareone.example\naudit@softwareone.example\n");
        free(data);

        /* EX_TEMPFAIL: retry later; other status: permanent. */
        assert_int_equal(util_write_file_atomic(codefile, "75\n", 3, 0600), 0);
        s = (struct sent) {};
        assert_int_equal(mail_send(t, m, on_sent, &s), 0);
        run_until(&f, &s.done);
        assert_false(s.res.ok);
        assert_false(s.res.permanent);
        assert_non_null(strstr(s.error, "75"));
        assert_non_null(strstr(s.error, "simulated failure"));
        assert_int_equal(util_write_file_atomic(codefile, "67\n", 3, 0600), 0);
        s = (struct sent) {};
        assert_int_equal(mail_send(t, m, on_sent, &s), 0);
        run_until(&f, &s.done);
        assert_false(s.res.ok);
        assert_true(s.res.permanent);
        mail_transport_free(t);

        /* A sendmail that exits without reading a large message. */
        char *quick = NULL;
        assert_true(asprintf(&quick, "%s/quick", f.tmp) > 0);
        const char *qbody = "#!/bin/sh\nexit 75\n";
        assert_int_equal(util_write_file_atomic(quick, qbody, strlen(qbody), 0700), 0);
        f.cfg.sendmail_path = quick;
        assert_int_equal(mail_transport_new(NULL, &f.loop, &f.cfg, &t), 0);
        struct util_buf big;
        util_buf_init(&big, 8 << 20);
        util_buf_puts(&big, "Subject: big\r\n\r\n");
        for (int i = 0; i < 40000; i++)
                util_buf_puts(&big, "0123456789012345678901234567890123456789012345678901234567890123456789\r\n");
        struct mail_message bm = *m;
        bm.data = big.data;
        bm.len = big.len;
        s = (struct sent) {};
        assert_int_equal(mail_send(t, &bm, on_sent, &s), 0);
        run_until(&f, &s.done);
        assert_false(s.res.ok);
        assert_false(s.res.permanent);
        util_buf_free(&big);
        free(quick);
        mail_transport_free(t);

        /* A missing sendmail is a retry, not a lost message. */
        f.cfg.sendmail_path = (char *) "/nonexistent/sendmail";
        assert_int_equal(mail_transport_new(NULL, &f.loop, &f.cfg, &t), 0);
        s = (struct sent) {};
        assert_int_equal(mail_send(t, m, on_sent, &s), 0);
        run_until(&f, &s.done);
        assert_false(s.res.ok);
        assert_false(s.res.permanent);
        mail_transport_free(t);

        mail_message_free(m);
        free(script);
        free(codefile);
        free(argsfile);
        free(infile);
        fx_done(&f);
}

/* The sendmail transport running {f->tmp}/sendmail with this body; the
 * script path is returned for freeing. */
static struct mail_transport *script_transport(struct fx *f, const char *body, char **ret_script) {
        struct mail_transport *t = NULL;
        assert_true(asprintf(ret_script, "%s/sendmail", f->tmp) > 0);
        assert_int_equal(util_write_file_atomic(*ret_script, body, strlen(body), 0700), 0);
        f->cfg.transport = CFG_TRANSPORT_SENDMAIL;
        f->cfg.sendmail_path = *ret_script;
        assert_int_equal(mail_transport_new(NULL, &f->loop, &f->cfg, &t), 0);
        return t;
}

/* Tombstones are appended to sent.log per message and folded into
 * sent.json when the flush ends; a log left by a crash is replayed. */
static void test_outbox_sent_log(void **state) {
        struct fx f;
        fx_init(&f, NULL);
        char *script = NULL, *outdir = NULL, *sentjson = NULL, *sentlog = NULL, *data = NULL;
        assert_true(asprintf(&outdir, "%s/outbox", f.tmp) > 0);
        assert_true(asprintf(&sentjson, "%s/outbox/sent.json", f.tmp) > 0);
        assert_true(asprintf(&sentlog, "%s/outbox/sent.log", f.tmp) > 0);
        struct mail_transport *t = script_transport(&f, "#!/bin/sh\ncat >/dev/null\nexit 0\n", &script);
        struct mail_message *m = render(&f, MAIL_KIND_NEW_REQUEST, "Contoso");
        int64_t now = 1800000000;

        /* Crash after the tombstone line, before the message file went,
         * with a torn line after it. */
        struct mail_outbox *o = NULL;
        assert_int_equal(mail_outbox_open(f.tmp, &o), 0);
        assert_int_equal(mail_outbox_put(o, "k:logged", m, now), 0);
        assert_int_equal(mail_outbox_put(o, "k:pending", m, now), 0);
        o = mail_outbox_free(o);
        const char *log = "{\"key\":\"k:logged\",\"at\":1800000000,\"status\":\"sent\"}\n{\"key\":\"k:pen";
        assert_int_equal(util_write_file_atomic(sentlog, log, strlen(log), 0600), 0);
        assert_int_equal(mail_outbox_open(f.tmp, &o), 0);
        assert_int_equal(mail_outbox_pending(o), 1);
        assert_int_equal(count_files(outdir, ".msg"), 1);
        assert_int_equal(mail_outbox_put(o, "k:logged", m, now), 1);
        /* folded into sent.json at open */
        assert_int_equal(access(sentlog, F_OK), -1);
        assert_int_equal(util_read_file(sentjson, 1 << 20, &data, NULL), 0);
        assert_non_null(strstr(data, "k:logged"));
        assert_null(strstr(data, "k:pending"));
        free(data);

        /* A flush of several: every key in sent.json, no log left. */
        assert_int_equal(mail_outbox_put(o, "k:second", m, now), 0);
        assert_int_equal(mail_outbox_put(o, "k:third", m, now), 0);
        assert_int_equal(mail_outbox_sync(o), 0);          /* the batch, durably */
        assert_int_equal(count_files(outdir, ".msg"), 3);
        assert_int_equal(count_files(outdir, "[.]tmp[.][0-9]*"), 0);
        struct flushed fl = flush(&f, o, t, now);
        assert_int_equal(fl.st.sent, 3);
        assert_int_equal(mail_outbox_pending(o), 0);
        assert_int_equal(count_files(outdir, ".msg"), 0);
        assert_int_equal(access(sentlog, F_OK), -1);
        assert_int_equal(util_read_file(sentjson, 1 << 20, &data, NULL), 0);
        assert_non_null(strstr(data, "k:pending"));
        assert_non_null(strstr(data, "k:third"));
        free(data);
        o = mail_outbox_free(o);
        assert_int_equal(mail_outbox_open(f.tmp, &o), 0);
        assert_int_equal(mail_outbox_put(o, "k:second", m, now), 1);

        mail_outbox_free(o);
        mail_transport_free(t);
        mail_message_free(m);
        free(script);
        free(outdir);
        free(sentjson);
        free(sentlog);
        fx_done(&f);
}

/* Restart after crashes at awkward moments, damaged files, giving up. */
static void test_outbox_recovery(void **state) {
        struct fx f;
        fx_init(&f, NULL);
        char *script = NULL, *outdir = NULL, *sentlog = NULL;
        assert_true(asprintf(&outdir, "%s/outbox", f.tmp) > 0);
        assert_true(asprintf(&sentlog, "%s/outbox/sent.json", f.tmp) > 0);
        struct mail_transport *t = script_transport(
                &f, "#!/bin/sh\ncat >/dev/null\necho 'queue busy' >&2\nexit 75\n", &script);
        struct mail_message *m = render(&f, MAIL_KIND_NEW_REQUEST, "Contoso");
        int64_t now = 1800000000;

        /* Crash after the tombstone, before the file was removed: the
         * message is not sent again and the file is cleaned up. */
        struct mail_outbox *o = NULL;
        assert_int_equal(mail_outbox_open(f.tmp, &o), 0);
        assert_int_equal(mail_outbox_put(o, "k:delivered", m, now), 0);
        assert_int_equal(mail_outbox_put(o, "k:pending", m, now), 0);
        o = mail_outbox_free(o);
        const char *tomb = "{\"version\":1,\"keys\":[{\"key\":\"k:delivered\",\"at\":1800000000,\"status\":\"sent\"}]}";
        assert_int_equal(util_write_file_atomic(sentlog, tomb, strlen(tomb), 0600), 0);
        /* and a damaged file and a foreign file */
        char *junk = NULL;
        assert_true(asprintf(&junk, "%s/000000000001-garbage.msg", outdir) > 0);
        assert_int_equal(util_write_file_atomic(junk, "not json\nx", 10, 0600), 0);
        assert_int_equal(mail_outbox_open(f.tmp, &o), 0);
        assert_int_equal(mail_outbox_pending(o), 1);
        assert_int_equal(count_files(outdir, ".msg"), 1);
        assert_int_equal(mail_outbox_put(o, "k:delivered", m, now), 1);
        assert_int_equal(access(junk, F_OK), -1);

        /* EX_TEMPFAIL until the message is too old: then failed. */
        struct flushed fl = flush(&f, o, t, now);
        assert_int_equal(fl.st.retry_later, 1);
        assert_non_null(strstr(fl.error[0], "queue busy"));
        assert_int_equal(fl.next_attempt[0], now + 60);
        fl = flush(&f, o, t, now + 60);
        assert_int_equal(fl.next_attempt[0], now + 60 + 300);
        fl = flush(&f, o, t, now + 5 * 86400);
        assert_int_equal(fl.st.failed, 1);
        assert_non_null(strstr(fl.error[0], "gave up after 3 attempts"));
        assert_int_equal(mail_outbox_pending(o), 0);
        char *faildir = NULL;
        assert_true(asprintf(&faildir, "%s/outbox/failed", f.tmp) > 0);
        assert_int_equal(count_files(faildir, ".msg"), 1);
        assert_int_equal(mail_outbox_put(o, "k:pending", m, now + 6 * 86400), 1);

        /* Tombstones expire after the retention period. */
        assert_int_equal(mail_outbox_put(o, "k:fresh", m, now + 40 * 86400), 0);
        fl = flush(&f, o, t, now + 40 * 86400);   /* rewrites sent.json, pruning */
        o = mail_outbox_free(o);
        assert_int_equal(mail_outbox_open(f.tmp, &o), 0);
        char *log = NULL;
        assert_int_equal(util_read_file(sentlog, 1 << 20, &log, NULL), 0);
        assert_null(strstr(log, "k:delivered"));
        free(log);
        assert_int_equal(mail_outbox_put(o, "k:delivered", m, now + 40 * 86400), 0);
        /* a failed key too (its file stays in failed/ for the admin) */
        assert_int_equal(mail_outbox_put(o, "k:pending", m, now + 40 * 86400), 0);
        assert_int_equal(count_files(faildir, ".msg"), 1);

        /* Flushes do not overlap. */
        struct flushed a = {};
        assert_int_equal(mail_outbox_flush(o, t, now + 40 * 86400, on_flushed, &a), 0);
        assert_int_equal(mail_outbox_flush(o, t, now + 40 * 86400, on_flushed, &a), -EBUSY);
        run_until(&f, &a.done);

        mail_outbox_free(o);
        mail_transport_free(t);
        mail_message_free(m);
        free(script);
        free(outdir);
        free(sentlog);
        free(junk);
        free(faildir);
        fx_done(&f);
}

static void test_transport_config(void **state) {
        struct fx f;
        struct mail_transport *t = NULL;
        fx_init(&f, "http://127.0.0.1:25");
        assert_int_equal(mail_transport_new(f.http, &f.loop, &f.cfg, &t), -EINVAL);
        f.cfg.smtp_url = (char *) "smtps://mail.example:465";
        assert_int_equal(mail_transport_new(NULL, &f.loop, &f.cfg, &t), -EINVAL);
        assert_int_equal(mail_transport_new(f.http, &f.loop, &f.cfg, &t), 0);
        t = mail_transport_free(t);
        f.cfg.transport = CFG_TRANSPORT_SENDMAIL;
        assert_int_equal(mail_transport_new(NULL, NULL, &f.cfg, &t), -EINVAL);
        assert_null(mail_transport_free(NULL));
        fx_done(&f);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_plain_loopback),
                cmocka_unit_test(test_header_injection_received),
                cmocka_unit_test(test_starttls_auth),
                cmocka_unit_test(test_smtps_implicit_tls),
                cmocka_unit_test(test_starttls_required),
                cmocka_unit_test(test_refused_recipient),
                cmocka_unit_test(test_dot_stuffing_long_lines),
                cmocka_unit_test(test_envelope_injection),
                cmocka_unit_test(test_outbox_server_down_then_up),
                cmocka_unit_test(test_outbox_451_then_success_and_5xx),
                cmocka_unit_test(test_sendmail),
                cmocka_unit_test(test_outbox_recovery),
                cmocka_unit_test(test_outbox_sent_log),
                cmocka_unit_test(test_transport_config),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
