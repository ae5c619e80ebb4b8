/* SPDX-License-Identifier: MIT */
/*
 * End to end: the real partnerd binary against the fake platform
 * (tests/scenarios/basic.json) and a real SMTP server (aiosmtpd).
 *
 *  run 1  emails exactly the configured recipients, once per blocked
 *         customer, with the exact acceptance URL; warns about the Draft;
 *         tells ops about the order Querying for another reason; no Process.
 *  then   Contoso accepts the relationship (the fake's control route).
 *  run 2  calls Process exactly once, on Contoso's Querying order only
 *         (never on its Draft), and confirms it by mail.
 *  run 3  sends nothing and calls nothing.
 *
 * querying_without_timestamp: Querying orders without audit.querying.at
 * (one with audit.updated.at, one without either) are mailed, and
 * processed exactly once after acceptance; which episode start was used is
 * logged once per order (issue 12.12).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <jansson.h>

#include "harness.h"
#include "invariants.h"
#include "pdrun.h"
#include "smtp.h"

#define URL "https://admin.microsoft.com/Adminportal/Home?invType=ResellerRelationship&partnerId=" \
            "3b33e682-00c3-41ee-9dd2-a548adf56438&msppId=0&DAP=false#/BillingAccounts/partner-invitation"
/* realism (basic.json): the fake serves every other customer's links on
 * Microsoft's newer admin host (tests/fakes/fake_state.c realism_apply):
 * Contoso's (its Querying and its Draft order) on admin.cloud.microsoft,
 * Fabrikam's on admin.microsoft.com (issue 11 part 4) */
#define CLOUD_URL "https://admin.cloud.microsoft/Adminportal/Home?invType=ResellerRelationship&partnerId=" \
            "3b33e682-00c3-41ee-9dd2-a548adf56438&msppId=0&DAP=false#/BillingAccounts/partner-invitation"
#define CONTOSO_TENANT "6f1c2a7e-0b8d-4c55-9e41-2d7f0a3b9c10"
#define ORD_CONTOSO    "ORD-1001-0001-0001"
#define ORD_OTHER      "ORD-1001-0001-0002"
#define ORD_PROCESSING "ORD-1001-0001-0003"
#define ORD_DRAFT      "ORD-1001-0001-0004"
#define ORD_FABRIKAM   "ORD-1001-0001-0005"
#define RUN_TIMEOUT_MS 120000


static int setup(void **state) {
        *state = inv_world_new(NULL, "tests/scenarios/basic.json", NULL,
                               &(struct harness_pd_options) { .ops = "ops@example.test" });
        return *state ? 0 : -1;
}

static int teardown(void **state) {
        inv_world_free(*state);
        return 0;
}

static int run_once(struct inv_world *e) {
        int status = -1;
        const char *args[] = { "--once", NULL };
        assert_int_equal(harness_pd_run(e->pd, args, RUN_TIMEOUT_MS, &status), 0);
        if (status != 0) {
                char *err = harness_pd_output(e->pd, e->pd->runs, true);
                fprintf(stderr, "partnerd run %d exited %d:\n%s\n", e->pd->runs, status, err ? err : "");
                free(err);
        }
        return status;
}

static const char *header(json_t *mail, const char *name) {
        return json_string_value(json_object_get(json_object_get(mail, "headers"), name));
}

static const char *text_part(json_t *mail) {
        return json_string_value(json_object_get(mail, "text"));
}

/* true when the JSON array of strings is exactly the set {a, b} (any order) */
static bool rcpts_are(json_t *arr, const char *a, const char *b) {
        if (json_array_size(arr) != (b ? 2 : 1))
                return false;
        bool fa = false, fb = !b;
        size_t i;
        json_t *v;
        json_array_foreach(arr, i, v) {
                const char *s = json_string_value(v);
                if (s && strcasecmp(s, a) == 0)
                        fa = true;
                else if (s && b && strcasecmp(s, b) == 0)
                        fb = true;
        }
        return fa && fb;
}

static bool html_has_href(json_t *mail, const char *url) {
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(mail, "links"), i, v)
                if (json_string_value(v) && strcmp(json_string_value(v), url) == 0)
                        return true;
        return false;
}

/* Mails received from index from on whose text mentions needle. */
static size_t smtp_mails_mentioning(struct harness_smtp *smtp, size_t from, const char *needle) {
        size_t n = 0;
        for (size_t i = from; i < harness_smtp_count(smtp); i++) {
                json_t *m = harness_smtp_parse(smtp, i);
                const char *t = m ? text_part(m) : NULL;
                if (t && strstr(t, needle))
                        n++;
                json_decref(m);
        }
        return n;
}

static size_t mails_mentioning(struct inv_world *e, size_t from, const char *needle) {
        return smtp_mails_mentioning(e->smtp, from, needle);
}

/* Lines of run's stderr at priority <= max_prio ("<N>" prefix) that
 * contain every needle. */
static size_t prio_lines(struct harness_pd *pd, int run, int max_prio, const char *const *needles) {
        char *err = harness_pd_output(pd, run, true);
        size_t n = 0;
        assert_non_null(err);
        for (char *line = strtok(err, "\n"); line; line = strtok(NULL, "\n")) {
                int prio = 7;
                if (line[0] == '<' && line[1] >= '0' && line[1] <= '7' && line[2] == '>')
                        prio = line[1] - '0';
                bool all = prio <= max_prio;
                for (size_t i = 0; all && needles[i]; i++)
                        all = strstr(line, needles[i]) != NULL;
                n += all;
        }
        free(err);
        return n;
}

static void test_three_runs(void **state) {
        struct inv_world *e = *state;
        char *st;

        /* ---- run 1: detect and notify, no Process ---- */
        assert_int_equal(run_once(e), 0);
        assert_int_equal(harness_fake_count(&e->fake, "POST", "/process"), 0);
        size_t n1 = harness_smtp_count(e->smtp);
        /* Contoso and Fabrikam acceptance requests, the Draft warning, the ops notice */
        assert_int_equal(n1, 4);

        size_t requests = 0, drafts = 0, ops = 0;
        for (size_t i = 0; i < n1; i++) {
                json_t *m = harness_smtp_parse(e->smtp, i);
                assert_non_null(m);
                const char *text = text_part(m);
                json_t *rcpt = json_object_get(json_object_get(m, "envelope"), "rcpt_tos");
                assert_non_null(text);
                assert_non_null(header(m, "Message-ID"));
                assert_non_null(header(m, "Date"));
                assert_string_equal(header(m, "Auto-Submitted"), "auto-generated");
                if (strstr(text, ORD_OTHER)) {
                        ops++;
                        assert_true(rcpts_are(rcpt, "ops@example.test", NULL));
                        assert_null(strstr(text, "https://admin.microsoft.com"));
                        assert_null(strstr(text, "https://admin.cloud.microsoft"));
                        json_decref(m);
                        continue;
                }
                assert_true(rcpts_are(rcpt, "admin1@example.test", "admin2@example.test"));
                if (strstr(text, ORD_DRAFT)) {
                        drafts++;
                        assert_null(strstr(text, ORD_CONTOSO));
                        assert_non_null(strstr(text, CLOUD_URL));
                } else {
                        requests++;
                        /* the exact URL, in the text and as the HTML button */
                        const char *url = strstr(text, ORD_CONTOSO) ? CLOUD_URL : URL;
                        assert_non_null(strstr(text, url));
                        assert_true(html_has_href(m, url));
                        assert_true((strstr(text, ORD_CONTOSO) != NULL) != (strstr(text, ORD_FABRIKAM) != NULL));
                }
                /* no mail ever names the order that is already Processing */
                assert_null(strstr(text, ORD_PROCESSING));
                json_decref(m);
        }
        assert_int_equal(requests, 2);
        assert_int_equal(drafts, 1);
        assert_int_equal(ops, 1);
        assert_int_equal(mails_mentioning(e, 0, ORD_CONTOSO), 1);
        assert_int_equal(mails_mentioning(e, 0, ORD_FABRIKAM), 1);
        int templates = harness_fake_count(&e->fake, "GET", "/template");
        assert_true(templates >= 3);   /* one per Querying order */
        /* every pending customer was checked (--once checks all) */
        assert_true(harness_fake_count(&e->fake, "GET", "/v1/customers/" CONTOSO_TENANT) >= 1);

        /* ---- the customer accepts ---- */
        assert_int_equal(harness_fake_accept(&e->fake, CONTOSO_TENANT), 0);

        /* ---- run 2: Process exactly once, only the Querying order ---- */
        assert_int_equal(run_once(e), 0);
        assert_int_equal(harness_fake_count(&e->fake, "POST", "/process"), 1);
        assert_int_equal(harness_fake_count(&e->fake, "POST", ORD_CONTOSO "/process"), 1);
        assert_int_equal(harness_fake_count(&e->fake, "POST", ORD_DRAFT "/process"), 0);
        st = harness_fake_order_status(&e->fake, ORD_CONTOSO);
        assert_string_equal(st, "Processing");
        free(st);
        st = harness_fake_order_status(&e->fake, ORD_DRAFT);
        assert_string_equal(st, "Draft");
        free(st);
        st = harness_fake_order_status(&e->fake, ORD_FABRIKAM);
        assert_string_equal(st, "Querying");
        free(st);
        size_t n2 = harness_smtp_count(e->smtp);
        /* one confirmation for Contoso, nothing else */
        assert_int_equal(n2, n1 + 1);
        assert_int_equal(mails_mentioning(e, n1, ORD_CONTOSO), 1);

        /* ---- run 3: nothing new to say or do ---- */
        assert_int_equal(run_once(e), 0);
        assert_int_equal(harness_fake_count(&e->fake, "POST", "/process"), 1);
        assert_int_equal(harness_smtp_count(e->smtp), n2);
        /* known orders, same episode and template: no template fetched again */
        assert_int_equal(harness_fake_count(&e->fake, "GET", "/template"), templates);

        /* ---- Fabrikam accepts; the platform resumes its order by itself
         * between our re-read and our Process (realism): 409, "moved on" ---- */
        assert_int_equal(harness_fake_accept(&e->fake, "fabrikam.onmicrosoft.com"), 0);
        assert_int_equal(run_once(e), 0);
        json_t *log = harness_fake_log(&e->fake);
        assert_non_null(log);
        assert_int_equal(inv_process_posts(log, ORD_FABRIKAM, 409), 1);
        assert_int_equal(inv_process_posts(log, ORD_FABRIKAM, 0), 1);
        json_decref(log);
        st = harness_fake_order_status(&e->fake, ORD_FABRIKAM);
        assert_string_equal(st, "Processing");
        free(st);
        const char *moved[] = { ORD_FABRIKAM, "moved on", NULL };
        assert_int_equal(prio_lines(e->pd, 4, 5, moved), 1);
        const char *fab[] = { ORD_FABRIKAM, NULL };
        assert_int_equal(prio_lines(e->pd, 4, 3, fab), 0);
        for (size_t i = n2; i < harness_smtp_count(e->smtp); i++) {
                json_t *m = harness_smtp_parse(e->smtp, i);
                json_t *rcpt = json_object_get(json_object_get(m, "envelope"), "rcpt_tos");
                assert_false(rcpts_are(rcpt, "ops@example.test", NULL));  /* no ops error */
                json_decref(m);
        }

        /* ---- run 5: no second Process ---- */
        assert_int_equal(run_once(e), 0);
        assert_int_equal(harness_fake_count(&e->fake, "POST", ORD_FABRIKAM "/process"), 1);
}

static void test_dry_run_changes_nothing(void **state) {
        struct harness_fake fake;
        struct harness_smtp *smtp = NULL;
        struct harness_pd *pd = NULL;
        char *scenario = harness_src_path("tests/scenarios/basic.json"), *out;
        int status = -1;

        assert_int_equal(harness_fake_start(scenario, &fake), 0);
        assert_int_equal(harness_smtp_start(&(struct harness_smtp_options) { 0 }, &smtp), 0);
        assert_int_equal(harness_pd_setup(&(struct harness_pd_options) {
                .fake_base = fake.base_url, .smtp_url = harness_smtp_url(smtp), .scenario = scenario },
                &pd), 0);
        assert_int_equal(harness_fake_accept(&fake, CONTOSO_TENANT), 0);
        const char *args[] = { "--once", "--dry-run", NULL };
        assert_int_equal(harness_pd_run(pd, args, RUN_TIMEOUT_MS, &status), 0);
        assert_int_equal(status, 0);
        assert_int_equal(harness_smtp_count(smtp), 0);
        assert_int_equal(harness_fake_count(&fake, "POST", "/process"), 0);
        out = harness_pd_output(pd, 1, false);
        assert_non_null(out);
        assert_non_null(strstr(out, URL));        /* the mails are printed instead */
        free(out);
        out = harness_pd_output(pd, 1, true);
        assert_non_null(strstr(out, "would call Process on order " ORD_CONTOSO));
        free(out);
        /* no state written */
        char path[512];
        snprintf(path, sizeof(path), "%s/state.json", pd->state_dir);
        assert_int_not_equal(access(path, F_OK), 0);
        harness_pd_free(pd);
        harness_smtp_stop(smtp);
        assert_int_equal(harness_fake_stop(&fake), 0);
        free(scenario);
}

/* notify_order_contacts = yes: the order's Contact parameters and the
 * buyer's contact (GET /accounts/buyers/{id}) receive the request too. */
static void test_order_contacts(void **state) {
        struct harness_fake fake;
        struct harness_smtp *smtp = NULL;
        struct harness_pd *pd = NULL;
        char *src = harness_src_path("tests/scenarios/basic.json"), *dir = harness_tmpdir(), path[512];
        int status = -1;

        json_t *sc = json_load_file(src, 0, NULL);
        assert_non_null(sc);
        size_t i;
        json_t *b;
        json_array_foreach(json_object_get(sc, "buyers"), i, b)
                if (strcmp(json_string_value(json_object_get(b, "id")), "BUY-1001-0001") == 0)
                        json_object_set_new(json_object_get(b, "contact"), "email",
                                            json_string("buyer.contoso@contoso.example"));
        snprintf(path, sizeof(path), "%s/scenario.json", dir);
        assert_int_equal(json_dump_file(sc, path, 0), 0);
        json_decref(sc);

        assert_int_equal(harness_fake_start(path, &fake), 0);
        assert_int_equal(harness_smtp_start(&(struct harness_smtp_options) { 0 }, &smtp), 0);
        assert_int_equal(harness_pd_setup(&(struct harness_pd_options) {
                .fake_base = fake.base_url, .smtp_url = harness_smtp_url(smtp), .scenario = path,
                .mail_extra = "notify_order_contacts = yes\n" }, &pd), 0);
        const char *args[] = { "--once", NULL };
        assert_int_equal(harness_pd_run(pd, args, RUN_TIMEOUT_MS, &status), 0);
        assert_int_equal(status, 0);

        size_t found = 0;
        for (size_t k = 0; k < harness_smtp_count(smtp); k++) {
                json_t *m = harness_smtp_parse(smtp, k);
                const char *text = m ? text_part(m) : NULL;
                assert_non_null(text);
                if (strstr(text, ORD_CONTOSO) && strstr(text, CLOUD_URL)) {
                        json_t *rcpt = json_object_get(json_object_get(m, "envelope"), "rcpt_tos");
                        assert_int_equal(json_array_size(rcpt), 4);
                        const char *want[] = { "admin1@example.test", "admin2@example.test",
                                               "dana.admin@contoso.example", "buyer.contoso@contoso.example" };
                        for (size_t w = 0; w < 4; w++) {
                                bool hit = false;
                                size_t j;
                                json_t *v;
                                json_array_foreach(rcpt, j, v)
                                        hit |= strcasecmp(json_string_value(v), want[w]) == 0;
                                assert_true(hit);
                        }
                        found++;
                }
                json_decref(m);
        }
        assert_int_equal(found, 1);
        /* one read per buyer named in a mail, not one per order or per mail */
        assert_int_equal(harness_fake_count(&fake, "GET", "/accounts/buyers/BUY-1001-0001"), 1);
        harness_pd_free(pd);
        harness_smtp_stop(smtp);
        assert_int_equal(harness_fake_stop(&fake), 0);
        harness_rmrf(dir);
        free(dir);
        free(src);
}

/* A template that cannot be read, for an order that shows no URL itself:
 * the run fails (exit 1) and says why, the order is neither mailed nor
 * mistaken for "Querying for another reason", and once the template can
 * be read the admins get the request. */
static void test_template_fault(void **state) {
        struct harness_fake fake;
        struct harness_smtp *smtp = NULL;
        struct harness_pd *pd = NULL;
        char *src = harness_src_path("tests/scenarios/basic.json"), *dir = harness_tmpdir(), path[512];
        int status = -1;

        /* Fabrikam's URL only in its template text, not in a parameter */
        json_t *sc = json_load_file(src, 0, NULL), *o;
        assert_non_null(sc);
        size_t i;
        json_array_foreach(json_object_get(sc, "orders"), i, o) {
                if (strcmp(json_string_value(json_object_get(o, "id")), ORD_FABRIKAM) != 0)
                        continue;
                json_object_set_new(json_object_get(o, "template"), "id", json_string("TPL-1528-2110-0099"));
                size_t k;
                json_t *par;
                json_array_foreach(json_object_get(json_object_get(o, "parameters"), "fulfillment"), k, par)
                        if (strcmp(json_string_value(json_object_get(par, "externalId")), "ResellerRelationshipUrl") == 0)
                                json_object_set_new(par, "value", json_string(""));
        }
        json_object_set_new(json_object_get(sc, "templates"), "TPL-1528-2110-0099",
                            json_string("Accept the reseller relationship: " URL "\n"));
        snprintf(path, sizeof(path), "%s/scenario.json", dir);
        assert_int_equal(json_dump_file(sc, path, 0), 0);
        json_decref(sc);

        assert_int_equal(harness_fake_start(path, &fake), 0);
        assert_int_equal(harness_smtp_start(&(struct harness_smtp_options) { 0 }, &smtp), 0);
        assert_int_equal(harness_pd_setup(&(struct harness_pd_options) {
                .fake_base = fake.base_url, .smtp_url = harness_smtp_url(smtp), .scenario = path,
                .ops = "ops@example.test" }, &pd), 0);
        assert_int_equal(harness_fake_fault(&fake, "{\"route\":\"template\",\"match\":\"" ORD_FABRIKAM
                                            "\",\"status\":500,\"times\":0}"), 0);
        const char *args[] = { "--once", NULL };
        assert_int_equal(harness_pd_run(pd, args, RUN_TIMEOUT_MS, &status), 0);
        assert_int_equal(status, 1);
        char *err = harness_pd_output(pd, 1, true);
        assert_non_null(strstr(err, "Cannot fetch the template of order " ORD_FABRIKAM));
        free(err);
        assert_int_equal(smtp_mails_mentioning(smtp, 0, ORD_FABRIKAM), 0);

        /* the template is readable again: the request goes out, never an
         * ops notice for this order */
        long st;
        char url[256];
        assert_int_equal(harness_http_post(harness_fake_url(&fake, "/_fake/faults/reset", url, sizeof(url)),
                                           "{}", &st, NULL), 0);
        assert_int_equal(harness_pd_run(pd, args, RUN_TIMEOUT_MS, &status), 0);
        assert_int_equal(status, 0);
        size_t hits = 0;
        for (size_t k = 0; k < harness_smtp_count(smtp); k++) {
                json_t *m = harness_smtp_parse(smtp, k);
                const char *text = m ? text_part(m) : NULL;
                assert_non_null(text);
                if (strstr(text, ORD_FABRIKAM)) {
                        hits++;
                        assert_non_null(strstr(text, URL));
                        assert_true(rcpts_are(json_object_get(json_object_get(m, "envelope"), "rcpt_tos"),
                                              "admin1@example.test", "admin2@example.test"));
                }
                json_decref(m);
        }
        assert_int_equal(hits, 1);
        harness_pd_free(pd);
        harness_smtp_stop(smtp);
        assert_int_equal(harness_fake_stop(&fake), 0);
        harness_rmrf(dir);
        free(dir);
        free(src);
}

static void test_check_config(void **state) {
        struct inv_world *e = *state;
        int status = -1;
        const char *ok[] = { "--check-config", NULL };
        assert_int_equal(harness_pd_run(e->pd, ok, RUN_TIMEOUT_MS, &status), 0);
        assert_int_equal(status, 0);
        char *out = harness_pd_output(e->pd, e->pd->runs, false);
        assert_non_null(strstr(out, "configuration OK"));
        free(out);

        /* a broken file: exit 78 and FILE:LINE: message naming the key */
        char *dir = harness_tmpdir(), path[512];
        snprintf(path, sizeof(path), "%s/bad.conf", dir);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fprintf(f, "[marketplace]\nurl = https://example.com/public/v1\npoll_interval = soon\n");
        fclose(f);
        const char *bad[] = { "--config", path, "--check-config", NULL };
        /* the later --config wins over the harness's */
        assert_int_equal(harness_pd_run(e->pd, bad, RUN_TIMEOUT_MS, &status), 0);
        assert_int_equal(status, 78);
        char *err = harness_pd_output(e->pd, e->pd->runs, true);
        char want[600];
        snprintf(want, sizeof(want), "%s:3:", path);
        assert_non_null(strstr(err, want));
        assert_non_null(strstr(err, "poll_interval"));
        free(err);
        harness_rmrf(dir);
        free(dir);
}

static void test_send_test_mail(void **state) {
        struct inv_world *e = *state;
        int status = -1;
        size_t before = harness_smtp_count(e->smtp);
        int requests = harness_fake_count(&e->fake, NULL, NULL);
        const char *args[] = { "--send-test-mail", NULL };
        assert_int_equal(harness_pd_run(e->pd, args, RUN_TIMEOUT_MS, &status), 0);
        assert_int_equal(status, 0);
        char *out = harness_pd_output(e->pd, e->pd->runs, false);
        assert_non_null(strstr(out, "sent to 2 recipient(s)"));
        assert_non_null(strstr(out, "SMTP 250"));
        free(out);
        assert_int_equal(harness_smtp_count(e->smtp), before + 1);
        json_t *m = harness_smtp_parse(e->smtp, before);
        assert_non_null(m);
        assert_string_equal(header(m, "Subject"), "partnerd test message");
        assert_true(rcpts_are(json_object_get(json_object_get(m, "envelope"), "rcpt_tos"),
                              "admin1@example.test", "admin2@example.test"));
        json_decref(m);
        /* nothing else happened: not one request to the platform */
        assert_int_equal(harness_fake_count(&e->fake, NULL, NULL), requests);
}

static void test_usage(void **state) {
        struct inv_world *e = *state;
        int status = -1;
        const char *bad[] = { "--no-such-option", NULL };
        assert_int_equal(harness_pd_run(e->pd, bad, RUN_TIMEOUT_MS, &status), 0);
        assert_int_equal(status, 2);
        const char *ver[] = { "--version", NULL };
        assert_int_equal(harness_pd_run(e->pd, ver, RUN_TIMEOUT_MS, &status), 0);
        assert_int_equal(status, 0);
        char *out = harness_pd_output(e->pd, e->pd->runs, false);
        assert_non_null(strstr(out, "partnerd "));
        free(out);
}

static void test_status(void **state) {
        struct inv_world *e = *state;
        int status = -1;
        const char *args[] = { "status", "--json", NULL };
        assert_int_equal(harness_pd_run(e->pd, args, RUN_TIMEOUT_MS, &status), 0);
        assert_int_equal(status, 0);
        char *out = harness_pd_output(e->pd, e->pd->runs, false);
        json_t *j = out ? json_loads(out, 0, NULL) : NULL;
        assert_non_null(j);
        /* the tracked orders of the runs above are there */
        assert_non_null(strstr(out, ORD_FABRIKAM));
        json_decref(j);
        free(out);
        const char *table[] = { "status", NULL };
        assert_int_equal(harness_pd_run(e->pd, table, RUN_TIMEOUT_MS, &status), 0);
        assert_int_equal(status, 0);
        out = harness_pd_output(e->pd, e->pd->runs, false);
        assert_non_null(strstr(out, ORD_FABRIKAM));
        free(out);
}

static size_t err_lines(struct harness_pd *pd, int run, const char *const *needles) {
        char *err = harness_pd_output(pd, run, true);
        size_t n = 0;
        for (char *line = err, *nl; line && *line; line = nl ? nl + 1 : NULL) {
                nl = strchr(line, '\n');
                if (nl)
                        *nl = '\0';
                bool all = true;
                for (size_t i = 0; needles[i]; i++)
                        all = all && strstr(line, needles[i]);
                n += all;
        }
        free(err);
        return n;
}

static void test_querying_without_timestamp(void **state) {
        struct harness_fake fake;
        struct harness_smtp *smtp = NULL;
        struct harness_pd *pd = NULL;
        char *src = harness_src_path("tests/scenarios/basic.json"), *dir = harness_tmpdir(), *scenario = NULL;
        int status = -1;

        /* the platform does not always send audit.querying.at (issue 12.12) */
        json_t *sc = json_load_file(src, 0, NULL);
        assert_non_null(sc);
        size_t i;
        json_t *o;
        json_array_foreach(json_object_get(sc, "orders"), i, o) {
                const char *id = json_string_value(json_object_get(o, "id"));
                json_t *audit = json_object_get(o, "audit");
                if (strcmp(id, ORD_CONTOSO) == 0)
                        json_object_del(audit, "querying");
                if (strcmp(id, ORD_FABRIKAM) == 0) {
                        json_object_del(audit, "querying");
                        json_object_del(audit, "updated");
                }
        }
        assert_true(asprintf(&scenario, "%s/scenario.json", dir) >= 0);
        assert_int_equal(json_dump_file(sc, scenario, JSON_INDENT(1)), 0);
        json_decref(sc);
        assert_int_equal(harness_fake_start(scenario, &fake), 0);
        assert_int_equal(harness_smtp_start(&(struct harness_smtp_options) { 0 }, &smtp), 0);
        assert_int_equal(harness_pd_setup(&(struct harness_pd_options) {
                .fake_base = fake.base_url, .smtp_url = harness_smtp_url(smtp), .scenario = scenario },
                &pd), 0);
        const char *args[] = { "--once", NULL };
        const char *const said_contoso[] = { "without audit.querying.at", ORD_CONTOSO, "audit.updated.at", NULL };
        const char *const said_fabrikam[] = { "without audit.querying.at", ORD_FABRIKAM, "first saw", NULL };
        const char *const said_any[] = { "without audit.querying.at", NULL };

        /* run 1: both customers are asked, the start is logged once each */
        assert_int_equal(harness_pd_run(pd, args, RUN_TIMEOUT_MS, &status), 0);
        assert_int_equal(status, 0);
        assert_int_equal(smtp_mails_mentioning(smtp, 0, ORD_CONTOSO), 1);
        assert_int_equal(smtp_mails_mentioning(smtp, 0, ORD_FABRIKAM), 1);
        assert_int_equal(err_lines(pd, 1, said_contoso), 1);
        assert_int_equal(err_lines(pd, 1, said_fabrikam), 1);
        assert_int_equal(err_lines(pd, 1, said_any), 2);

        /* run 2: both accepted, each processed once, nothing logged again */
        assert_int_equal(harness_fake_accept(&fake, CONTOSO_TENANT), 0);
        assert_int_equal(harness_fake_accept(&fake, "fabrikam.onmicrosoft.com"), 0);
        assert_int_equal(harness_pd_run(pd, args, RUN_TIMEOUT_MS, &status), 0);
        assert_int_equal(status, 0);
        assert_int_equal(err_lines(pd, 2, said_any), 0);
        assert_int_equal(harness_fake_count(&fake, "POST", ORD_CONTOSO "/process"), 1);
        assert_int_equal(harness_fake_count(&fake, "POST", ORD_FABRIKAM "/process"), 1);
        char *st = harness_fake_order_status(&fake, ORD_CONTOSO);
        assert_string_equal(st, "Processing");
        free(st);
        st = harness_fake_order_status(&fake, ORD_FABRIKAM);
        assert_string_equal(st, "Processing");
        free(st);

        /* run 3: nothing more */
        assert_int_equal(harness_pd_run(pd, args, RUN_TIMEOUT_MS, &status), 0);
        assert_int_equal(status, 0);
        assert_int_equal(harness_fake_count(&fake, "POST", "/process"), 2);
        assert_int_equal(err_lines(pd, 3, said_any), 0);

        harness_pd_free(pd);
        harness_smtp_stop(smtp);
        assert_int_equal(harness_fake_stop(&fake), 0);
        harness_rmrf(dir);
        free(dir);
        free(scenario);
        free(src);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_three_runs),
                cmocka_unit_test(test_status),
                cmocka_unit_test(test_check_config),
                cmocka_unit_test(test_send_test_mail),
                cmocka_unit_test(test_usage),
                cmocka_unit_test(test_dry_run_changes_nothing),
                cmocka_unit_test(test_order_contacts),
                cmocka_unit_test(test_template_fault),
                cmocka_unit_test(test_querying_without_timestamp),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
