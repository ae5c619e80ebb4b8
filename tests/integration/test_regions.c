/* SPDX-License-Identifier: MIT */
/*
 * Regional SoftwareOne partner accounts (issue 11 part 3), end to end: the
 * real partnerd binary with two Partner Center accounts ([microsoft] and
 * [microsoft.brazil]) against the fake platform (tests/scenarios/regions.json:
 * each account its own Entra tenant, app, secret and customers) and a real
 * SMTP server.
 *
 *  - an order whose link names brazil's partnerId is checked with brazil
 *    (the fake logs whose token asked), and processed exactly once after
 *    the customer accepted brazil; the same customer accepted only with the
 *    default account is NOT processed for it;
 *  - an order whose partnerId no account lists is mailed to the customer's
 *    admins, never processed, and ops hears of it once;
 *  - `partnerd status` (text and --json) shows each customer's account;
 *  - a state file written by partnerd before accounts existed
 *    (tests/data/state/before-accounts.json) is taken over without mailing
 *    anyone again and without a Process.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include <jansson.h>

#include "harness.h"
#include "invariants.h"
#include "pdrun.h"
#include "smtp.h"
#include "util.h"

#define PID_DEFAULT "3b33e682-00c3-41ee-9dd2-a548adf56438"
#define PID_BRAZIL  "5c1e9a2b-7d4f-4e6a-9b3c-2f8d1a6e4b70"
#define PID_UNKNOWN "e0d1c2b3-a4f5-4e6d-8c7b-9a0f1e2d3c4b"
#define CONTOSO     "6f1c2a7e-0b8d-4c55-9e41-2d7f0a3b9c10"
#define FABRIKAM    "2b5e8f3a-7c41-4d9e-a0f6-58c3e1d2b7a4"
#define NORTHWIND   "9d3c1b7e-5a2f-4e8d-b6c0-7f1a2e3d4c5b"
#define ORD_BRAZIL  "ORD-2001-0001-0001"   /* Contoso, link for brazil */
#define ORD_UNKNOWN "ORD-2001-0001-0002"   /* Fabrikam, partnerId nobody lists */
#define ORD_DEFAULT "ORD-2001-0001-0003"   /* Northwind, link for the default account */
#define BRAZIL_TENANT "softwareone-br.onmicrosoft.com"
#define RUN_TIMEOUT_MS 120000


static int setup(void **state) {
        /* brazil's section: its own tenant, app and secret (from the scenario) */
        char *path = harness_src_path("tests/scenarios/regions.json"), *brazil = NULL, secret_path[512];
        json_t *sc = path ? json_load_file(path, 0, NULL) : NULL;
        json_t *br = json_array_get(json_object_get(sc, "partner_accounts"), 0);
        struct inv_world *w = NULL;
        free(path);
        if (br && asprintf(&brazil, "\n[microsoft.brazil]\ntenant = %s\nclient_id = %s\n"
                           "client_secret_file = brazil-secret\npartner_ids = " PID_BRAZIL "\n",
                           json_string_value(json_object_get(br, "tenant")),
                           json_string_value(json_object_get(br, "client_id"))) >= 0)
                w = inv_world_new(NULL, "tests/scenarios/regions.json", NULL, &(struct harness_pd_options) {
                        .ops = "ops@example.test",
                        .microsoft_extra = "partner_ids = " PID_DEFAULT "\n",
                        .mail_extra = "deadline = 90d\n",
                        .daemon_extra = brazil });
        free(brazil);
        const char *secret = json_string_value(json_object_get(br, "client_secret"));
        int r = w && secret ? 0 : -1;
        if (r == 0) {
                snprintf(secret_path, sizeof(secret_path), "%s/brazil-secret", w->pd->creds);
                r = util_write_file_atomic(secret_path, secret, strlen(secret), 0600);
        }
        json_decref(sc);
        if (r < 0) {
                inv_world_free(w);
                return -1;
        }
        *state = w;
        return 0;
}

static int teardown(void **state) {
        inv_world_free(*state);
        return 0;
}

static int run_args(struct inv_world *e, const char *const *args) {
        int status = -1;
        assert_int_equal(harness_pd_run(e->pd, args, RUN_TIMEOUT_MS, &status), 0);
        if (status != 0) {
                char *err = harness_pd_output(e->pd, e->pd->runs, true);
                fprintf(stderr, "partnerd run %d exited %d:\n%s\n", e->pd->runs, status, err ? err : "");
                free(err);
        }
        return status;
}

static int run_once(struct inv_world *e) {
        return run_args(e, (const char *const[]) { "--once", NULL });
}

/* Accepts tenant's relationship with one partner account of the fake. */
static void accept_with(struct inv_world *e, const char *tenant, const char *account) {
        char path[256], url[512];
        long status = 0;
        snprintf(path, sizeof(path), "/_fake/accept/%s?account=%s", tenant, account);
        assert_int_equal(harness_http_post(harness_fake_url(&e->fake, path, url, sizeof(url)), "", &status, NULL), 0);
        assert_int_equal(status, 200);
}

/* Requests whose path contains path_sub, asked with account's token
 * (account NULL: with any or none). */
static int count_as(struct inv_world *e, const char *method, const char *path_sub, const char *account) {
        json_t *log = harness_fake_log(&e->fake), *rec;
        size_t i;
        int n = 0;
        assert_non_null(log);
        json_array_foreach(log, i, rec) {
                const char *p = json_string_value(json_object_get(rec, "path"));
                const char *a = json_string_value(json_object_get(rec, "account"));
                if (p && strstr(p, path_sub) &&
                    (!method || strcmp(method, json_string_value(json_object_get(rec, "method"))) == 0) &&
                    (!account || (a && strcmp(a, account) == 0)))
                        n++;
        }
        json_decref(log);
        return n;
}

static int process_calls(struct inv_world *e, const char *order) {
        char p[96];
        snprintf(p, sizeof(p), "/orders/%s/process", order);
        return count_as(e, "POST", p, NULL);
}

/* Mails from index `from` on that name order, sent to rcpt. */
static size_t mails_to(struct inv_world *e, size_t from, const char *order, const char *rcpt) {
        size_t n = 0;
        for (size_t i = from; i < harness_smtp_count(e->smtp); i++) {
                json_t *m = harness_smtp_parse(e->smtp, i);
                const char *t = json_string_value(json_object_get(m, "text"));
                json_t *to = json_object_get(json_object_get(m, "envelope"), "rcpt_tos"), *v;
                size_t k;
                bool hit = false;
                json_array_foreach(to, k, v)
                        if (json_string_value(v) && strcmp(json_string_value(v), rcpt) == 0)
                                hit = true;
                if (hit && t && strstr(t, order))
                        n++;
                json_decref(m);
        }
        return n;
}

/* The "account" of the customer of tenant in `partnerd status --json`. */
static char *status_account(struct inv_world *e, const char *tenant) {
        assert_int_equal(run_args(e, (const char *const[]) { "status", "--json", NULL }), 0);
        char *out = harness_pd_output(e->pd, e->pd->runs, false);
        json_t *root = out ? json_loads(out, 0, NULL) : NULL, *c;
        char *acct = NULL;
        size_t i;
        assert_non_null(root);
        json_array_foreach(json_object_get(root, "customers"), i, c)
                if (json_string_value(json_object_get(c, "tenant_id")) &&
                    strcmp(json_string_value(json_object_get(c, "tenant_id")), tenant) == 0) {
                        const char *a = json_string_value(json_object_get(c, "account"));
                        acct = strdup(a ? a : "(null)");
                }
        json_decref(root);
        free(out);
        return acct;
}

static void assert_status_account(struct inv_world *e, const char *tenant, const char *want) {
        char *a = status_account(e, tenant);
        assert_non_null(a);
        assert_string_equal(a, want);
        free(a);
}

static void test_two_accounts(void **state) {
        struct inv_world *e = *state;

        /* Contoso accepted the DEFAULT account only; Northwind too. */
        accept_with(e, CONTOSO, "default");
        accept_with(e, NORTHWIND, "default");

        /* ---- run 1 ---- */
        assert_int_equal(run_once(e), 0);
        /* brazil signed in at its own tenant, and asked about Contoso */
        assert_true(count_as(e, "POST", "/" BRAZIL_TENANT "/oauth2/", NULL) >= 1);
        assert_true(count_as(e, "GET", "/v1/customers/" CONTOSO, "brazil") >= 1);
        assert_int_equal(count_as(e, "GET", "/v1/customers/" CONTOSO, "default"), 0);
        /* accepted with the default account: not a brazil customer, no Process */
        assert_int_equal(process_calls(e, ORD_BRAZIL), 0);
        /* Northwind's link is the default account's: processed with it */
        assert_true(count_as(e, "GET", "/v1/customers/" NORTHWIND, "default") >= 1);
        assert_int_equal(process_calls(e, ORD_DEFAULT), 1);
        /* the unknown partnerId: never asked about, never processed */
        assert_int_equal(count_as(e, "GET", "/v1/customers/" FABRIKAM, NULL), 0);
        assert_int_equal(process_calls(e, ORD_UNKNOWN), 0);
        /* its admins get the request (the link is genuine), ops one notice naming the partnerId */
        assert_int_equal(mails_to(e, 0, ORD_UNKNOWN, "admin1@example.test"), 1);
        assert_int_equal(mails_to(e, 0, ORD_UNKNOWN, "ops@example.test"), 1);
        assert_int_equal(mails_to(e, 0, ORD_BRAZIL, "admin1@example.test"), 1);
        size_t n1 = harness_smtp_count(e->smtp);
        bool named = false;
        for (size_t i = 0; i < n1; i++) {
                json_t *m = harness_smtp_parse(e->smtp, i);
                const char *t = json_string_value(json_object_get(m, "text"));
                if (t && strstr(t, ORD_UNKNOWN) && strstr(t, PID_UNKNOWN) && strstr(t, "[microsoft.NAME]"))
                        named = true;
                json_decref(m);
        }
        assert_true(named);

        /* the journal fields: PARTNER_ACCOUNT on the lines about the check */
        assert_int_equal(run_args(e, (const char *const[]) { "status", NULL }), 0);
        char *text = harness_pd_output(e->pd, e->pd->runs, false);
        assert_non_null(text);
        assert_non_null(strstr(text, "ACCOUNT"));
        assert_non_null(strstr(text, "brazil"));
        assert_non_null(strstr(text, "none (partnerId not listed)"));
        free(text);
        assert_status_account(e, CONTOSO, "brazil");
        assert_status_account(e, NORTHWIND, "default");
        assert_status_account(e, FABRIKAM, "-");

        /* ---- run 2: nothing new; ops is not told again ---- */
        assert_int_equal(run_once(e), 0);
        assert_int_equal(mails_to(e, n1, ORD_UNKNOWN, "ops@example.test"), 0);
        assert_int_equal(process_calls(e, ORD_BRAZIL), 0);
        assert_int_equal(process_calls(e, ORD_UNKNOWN), 0);

        /* ---- Contoso accepts brazil: run 3 processes it once ---- */
        accept_with(e, CONTOSO, "brazil");
        /* Fabrikam accepting the default account changes nothing for it */
        accept_with(e, FABRIKAM, "default");
        assert_int_equal(run_once(e), 0);
        assert_int_equal(process_calls(e, ORD_BRAZIL), 1);
        assert_int_equal(process_calls(e, ORD_UNKNOWN), 0);
        assert_int_equal(run_once(e), 0);
        assert_int_equal(process_calls(e, ORD_BRAZIL), 1);
        assert_int_equal(process_calls(e, ORD_DEFAULT), 1);
        assert_int_equal(process_calls(e, ORD_UNKNOWN), 0);
}

/* Shifts every "time of ours" in a state file by delta seconds (the
 * platform's querying times stay), so a fixture written long ago reads as
 * written a minute ago. */
static void shift_times(json_t *obj, int64_t delta) {
        static const char *const keys[] = { "first_seen", "notified_at", "last_mail_at", "next_check",
                                            "accepted_at", "process_sent_at", "closed_at" };
        for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
                const char *v = json_string_value(json_object_get(obj, keys[k]));
                int64_t t;
                char buf[UTIL_TIME_MAX];
                if (v && util_parse_time(v, &t) == 0)
                        json_object_set_new(obj, keys[k], json_string(util_format_time(t + delta, buf)));
        }
}

static void test_migration(void **state) {
        struct inv_world *e = *state;
        char *src = harness_src_path("tests/data/state/before-accounts.json"), path[512];
        json_t *st = json_load_file(src, 0, NULL), *c, *o;
        size_t i, k;
        free(src);
        assert_non_null(st);
        /* written by partnerd before accounts: no "account" anywhere */
        int64_t written = 0;
        json_array_foreach(json_object_get(st, "customers"), i, c) {
                assert_null(json_object_get(c, "account"));
                int64_t t;
                if (util_parse_time(json_string_value(json_object_get(c, "notified_at")), &t) == 0 && t > written)
                        written = t;
        }
        assert_true(written > 0);
        int64_t delta = util_now_wall() - 60 - written;
        json_array_foreach(json_object_get(st, "customers"), i, c) {
                shift_times(c, delta);
                json_array_foreach(json_object_get(c, "orders"), k, o)
                        shift_times(o, delta);
        }
        assert_int_equal(mkdir(e->pd->state_dir, 0700), 0);
        snprintf(path, sizeof(path), "%s/state.json", e->pd->state_dir);
        assert_int_equal(json_dump_file(st, path, JSON_INDENT(1)), 0);
        json_decref(st);

        /* the fixture's partnerd mailed all three customers; nobody is mailed again */
        assert_int_equal(run_once(e), 0);
        assert_int_equal(mails_to(e, 0, ORD_BRAZIL, "admin1@example.test"), 0);
        assert_int_equal(mails_to(e, 0, ORD_UNKNOWN, "admin1@example.test"), 0);
        assert_int_equal(mails_to(e, 0, ORD_DEFAULT, "admin1@example.test"), 0);
        /* ops hears about the partnerId no account lists (news, not a re-mail) */
        assert_int_equal(mails_to(e, 0, ORD_UNKNOWN, "ops@example.test"), 1);
        assert_int_equal(count_as(e, "POST", "/process", NULL), 0);
        assert_true(count_as(e, "GET", "/v1/customers/" CONTOSO, "brazil") >= 1);
        assert_status_account(e, CONTOSO, "brazil");
        assert_status_account(e, NORTHWIND, "default");
        assert_status_account(e, FABRIKAM, "-");

        /* and the adopted customer goes on as before: accept, one Process */
        accept_with(e, CONTOSO, "brazil");
        assert_int_equal(run_once(e), 0);
        assert_int_equal(process_calls(e, ORD_BRAZIL), 1);
        assert_int_equal(mails_to(e, 0, ORD_BRAZIL, "admin1@example.test"), 1);   /* the confirmation */
        assert_int_equal(run_once(e), 0);
        assert_int_equal(process_calls(e, ORD_BRAZIL), 1);
        assert_int_equal(process_calls(e, ORD_UNKNOWN), 0);
}

/* test_fake_accounts: its own fake, stopped whatever the test asserted. */
struct fake_env {
        struct harness_fake fake;
        char *dir;
        json_t *sc;
        bool started;
};

static int setup_fake(void **state) {
        struct fake_env *f = calloc(1, sizeof(*f));
        *state = f;
        return f ? 0 : -1;
}

static int teardown_fake(void **state) {
        struct fake_env *f = *state;
        int r = f->started ? harness_fake_stop(&f->fake) : 0;
        json_decref(f->sc);
        harness_rmrf(f->dir);
        free(f->dir);
        free(f);
        return r == 0 ? 0 : -1;
}

/* The fake itself: tokens per account, relationships per account, and the
 * regional_partner_ids switch. */
static void test_fake_accounts(void **state) {
        struct fake_env *f = *state;
        char *src = harness_src_path("tests/scenarios/regions.json"), path[512];
        json_t *sc = f->sc = json_load_file(src, 0, NULL), *o;
        char *dir = f->dir = harness_tmpdir();
        size_t i;
        free(src);
        assert_non_null(sc);
        assert_non_null(dir);
        json_object_set_new(sc, "realism", json_false());   /* the switch alone */
        json_object_set_new(sc, "regional_partner_ids", json_true());
        json_array_foreach(json_object_get(sc, "orders"), i, o)
                if (strcmp(json_string_value(json_object_get(o, "id")), ORD_DEFAULT) == 0)
                        json_object_set_new(o, "x-fake-partner-account", json_string("brazil"));
        snprintf(path, sizeof(path), "%s/scenario.json", dir);
        assert_int_equal(json_dump_file(sc, path, 0), 0);
        assert_int_equal(harness_fake_start(path, &f->fake), 0);
        f->started = true;

        /* the order's link now names brazil's partnerId; the others keep theirs */
        char url[512], auth[256], *body = NULL;
        long status = 0;
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s",
                 json_string_value(json_object_get(json_object_get(sc, "marketplace"), "token")));
        const char *hdr[] = { auth, NULL };
        assert_int_equal(harness_http("GET", harness_fake_url(&f->fake, "/public/v1/commerce/orders/" ORD_DEFAULT, url,
                                                              sizeof(url)), hdr, NULL, &status, &body, NULL), 0);
        assert_int_equal(status, 200);
        assert_non_null(strstr(body, "partnerId=" PID_BRAZIL));
        assert_null(strstr(body, "partnerId=" PID_DEFAULT));
        assert_null(strstr(body, "x-fake-"));
        free(body);
        assert_int_equal(harness_http("GET", harness_fake_url(&f->fake, "/public/v1/commerce/orders/" ORD_UNKNOWN, url,
                                                              sizeof(url)), hdr, NULL, &status, &body, NULL), 0);
        assert_non_null(strstr(body, "partnerId=" PID_UNKNOWN));   /* chile's */
        free(body);

        /* brazil's app is not registered in the default tenant */
        json_t *br = json_array_get(json_object_get(sc, "partner_accounts"), 0);
        char form[512];
        snprintf(form, sizeof(form), "grant_type=client_credentials&client_id=%s&client_secret=%s"
                 "&resource=https%%3A%%2F%%2Fapi.partnercenter.microsoft.com",
                 json_string_value(json_object_get(br, "client_id")),
                 json_string_value(json_object_get(br, "client_secret")));
        assert_int_equal(harness_http_post(harness_fake_url(&f->fake, "/partner.onmicrosoft.com/oauth2/token", url,
                                                            sizeof(url)), form, &status, NULL), 0);
        assert_int_equal(status, 400);
        assert_int_equal(harness_http_post(harness_fake_url(&f->fake, "/" BRAZIL_TENANT "/oauth2/token", url,
                                                            sizeof(url)), form, &status, &body), 0);
        assert_int_equal(status, 200);
        json_t *tok = json_loads(body, 0, NULL);
        free(body);
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s",
                 json_string_value(json_object_get(tok, "access_token")));
        json_decref(tok);

        /* accepted with the default account only: brazil's token gets a 404 */
        assert_int_equal(harness_http_post(harness_fake_url(&f->fake, "/_fake/accept/" CONTOSO "?account=default", url,
                                                            sizeof(url)), "", &status, NULL), 0);
        assert_int_equal(status, 200);
        assert_int_equal(harness_http("GET", harness_fake_url(&f->fake, "/v1/customers/" CONTOSO, url, sizeof(url)),
                                      hdr, NULL, &status, NULL, NULL), 0);
        assert_int_equal(status, 404);
        assert_int_equal(harness_http_post(harness_fake_url(&f->fake, "/_fake/accept/" CONTOSO "?account=brazil", url,
                                                            sizeof(url)), "", &status, NULL), 0);
        assert_int_equal(harness_http("GET", harness_fake_url(&f->fake, "/v1/customers/" CONTOSO, url, sizeof(url)),
                                      hdr, NULL, &status, NULL, NULL), 0);
        assert_int_equal(status, 200);
        json_t *log = harness_fake_log(&f->fake), *last = json_array_get(log, json_array_size(log) - 1);
        assert_string_equal(json_string_value(json_object_get(last, "account")), "brazil");
        json_decref(log);
        /* an unknown account */
        assert_int_equal(harness_http_post(harness_fake_url(&f->fake, "/_fake/accept/" CONTOSO "?account=chile", url,
                                                            sizeof(url)), "", &status, NULL), 0);
        assert_int_equal(status, 404);

}

/* One account's sign-in failing names its section and stops no other. */
static void test_bad_account_secret(void **state) {
        struct inv_world *e = *state;
        char path[512];
        snprintf(path, sizeof(path), "%s/brazil-secret", e->pd->creds);
        assert_int_equal(util_write_file_atomic(path, "wrong", 5, 0600), 0);
        accept_with(e, NORTHWIND, "default");
        int status = -1;
        const char *args[] = { "--once", NULL };
        assert_int_equal(harness_pd_run(e->pd, args, RUN_TIMEOUT_MS, &status), 0);
        assert_int_equal(status, 1);   /* the cycle reports the failed sign-in */
        char *err = harness_pd_output(e->pd, e->pd->runs, true);
        assert_non_null(err);
        assert_non_null(strstr(err, "Partner Center sign-in failed, check [microsoft.brazil] tenant"));
        free(err);
        assert_int_equal(process_calls(e, ORD_DEFAULT), 1);
        assert_int_equal(process_calls(e, ORD_BRAZIL), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_two_accounts, setup, teardown),
                cmocka_unit_test_setup_teardown(test_migration, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_account_secret, setup, teardown),
                cmocka_unit_test_setup_teardown(test_fake_accounts, setup_fake, teardown_fake),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
