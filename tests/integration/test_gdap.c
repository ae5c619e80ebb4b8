/* SPDX-License-Identifier: MIT */
/*
 * GDAP is its own kind (issue 11 part 2), end to end: the real partnerd
 * binary against the fake platform (tests/scenarios/gdap.json: Microsoft
 * Graph on the same port, audience-checked tokens) and a real SMTP server.
 *
 *  - a GDAP-only order of a tenant that already is a reseller customer is
 *    NOT processed; its admins get the gdap-request mail, which never says
 *    "reseller";
 *  - once Graph says the relationship is active it is processed exactly
 *    once, and the confirmation does not say "reseller" either;
 *  - an order of the same tenant showing both links is a reseller block,
 *    processed at once;
 *  - an expired relationship: one ops notice, no Process, no more mails;
 *    an id Graph does not know (404): the same, not pending forever;
 *  - the fake's log proves Partner Center never got a Graph token and Graph
 *    never got a Partner Center token.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <cmocka.h>

#include <jansson.h>

#include "harness.h"
#include "invariants.h"
#include "pdrun.h"
#include "smtp.h"
#include "util.h"

#define CONTOSO     "6f1c2a7e-0b8d-4c55-9e41-2d7f0a3b9c10"
#define G_CONTOSO   "5e0f3b1a-7c2d-4e8f-9a6b-1c3d5e7f9a0b-2d4f6a8c-0e1b-4c3d-8f5a-7b9c1d3e5f70"
#define G_FABRIKAM  "8a1b2c3d-4e5f-4a6b-9c8d-7e6f5a4b3c2d-1f2e3d4c-5b6a-4978-8a6b-5c4d3e2f1a09"
#define G_NORTHWIND "0f9e8d7c-6b5a-4c3d-8e2f-1a0b9c8d7e6f-3c2b1a09-8f7e-4d6c-9b5a-4e3d2c1b0a98"
#define ORD_CONTOSO   "ORD-3001-0001-0001"   /* GDAP pending, tenant already a reseller */
#define ORD_FABRIKAM  "ORD-3001-0001-0002"   /* GDAP expired */
#define ORD_NORTHWIND "ORD-3001-0001-0003"   /* GDAP id Graph does not know */
#define ORD_BOTH      "ORD-3001-0001-0004"   /* Contoso, GDAP and reseller links: a reseller block */
#define PID_DEFAULT   "3b33e682-00c3-41ee-9dd2-a548adf56438"
/* regions.json's brazil account */
#define PID_BRAZIL    "5c1e9a2b-7d4f-4e6a-9b3c-2f8d1a6e4b70"
#define BRAZIL_TENANT "softwareone-br.onmicrosoft.com"
#define BRAZIL_APP    "8e2f4a6c-1b3d-4f5e-9a7c-0d2e4f6a8b1c"
#define BRAZIL_SECRET "fake-brazil-secret"
#define OPS "ops@example.test"
#define ADMIN "admin1@example.test"
#define RUN_TIMEOUT_MS 120000

/* gdap.json, with regions.json's brazil account added and Contoso's GDAP
 * relationship held by brazil's partner tenant instead of the default one
 * (the fake's Graph shows a tenant its own relationships only). */
static json_t *regional_scenario(void) {
        char *gdap = harness_src_path("tests/scenarios/gdap.json");
        char *regions = harness_src_path("tests/scenarios/regions.json");
        json_t *sc = json_load_file(gdap, 0, NULL), *rg = json_load_file(regions, 0, NULL);
        json_t *br = json_array_get(json_object_get(rg, "partner_accounts"), 0);
        json_t *rel = json_array_get(json_object_get(sc, "gdap_relationships"), 0);
        if (!br || !rel || strcmp(json_string_value(json_object_get(rel, "id")), G_CONTOSO) != 0 ||
            json_object_set_new(sc, "partner_accounts", json_pack("[O]", br)) < 0 ||
            json_object_set_new(rel, "account", json_string("brazil")) < 0) {
                json_decref(sc);
                sc = NULL;
        }
        json_decref(rg);
        free(gdap);
        free(regions);
        return sc;
}

static int setup_with(void **state, bool regional) {
        struct harness_pd_options o = { .ops = OPS, .mail_extra = "deadline = 90d\n" };
        json_t *sc = NULL;
        if (regional) {
                if (!(sc = regional_scenario()))
                        return -1;
                o.microsoft_extra = "partner_ids = " PID_DEFAULT "\n";
                o.daemon_extra = "\n[microsoft.brazil]\ntenant = " BRAZIL_TENANT "\nclient_id = " BRAZIL_APP
                                 "\nclient_secret_file = brazil-secret\npartner_ids = " PID_BRAZIL "\n";
        }
        struct inv_world *w = inv_world_new(sc, "tests/scenarios/gdap.json", NULL, &o);
        json_decref(sc);
        if (w && regional) {
                char path[512];
                snprintf(path, sizeof(path), "%s/brazil-secret", w->pd->creds);
                if (util_write_file_atomic(path, BRAZIL_SECRET, strlen(BRAZIL_SECRET), 0600) < 0) {
                        inv_world_free(w);
                        w = NULL;
                }
        }
        *state = w;
        return w ? 0 : -1;
}

static int setup(void **state) {
        return setup_with(state, false);
}

static int setup_regional(void **state) {
        return setup_with(state, true);
}

static int teardown(void **state) {
        inv_world_free(*state);
        return 0;
}

static void run_once(struct inv_world *e) {
        int status = -1;
        assert_int_equal(harness_pd_run(e->pd, (const char *const[]) { "--once", NULL }, RUN_TIMEOUT_MS,
                                        &status), 0);
        if (status != 0) {
                char *err = harness_pd_output(e->pd, e->pd->runs, true);
                fprintf(stderr, "partnerd run %d exited %d:\n%s\n", e->pd->runs, status, err ? err : "");
                free(err);
        }
        /* an ended or unknown GDAP relationship is news for ops, not a failed cycle */
        assert_int_equal(status, 0);
}

static void set_gdap(struct inv_world *e, const char *id, const char *status) {
        char path[256], url[512];
        long st = 0;
        snprintf(path, sizeof(path), "/_fake/gdap/%s?status=%s", id, status);
        assert_int_equal(harness_http_post(harness_fake_url(&e->fake, path, url, sizeof(url)), "", &st, NULL), 0);
        assert_int_equal(st, 200);
}

/* Requests whose path contains sub, asked with account's token (NULL: any)
 * and answered with status (0: any). */
static int count_as(struct inv_world *e, const char *method, const char *sub, const char *account, long status) {
        json_t *log = harness_fake_log(&e->fake), *rec;
        size_t i;
        int n = 0;
        assert_non_null(log);
        json_array_foreach(log, i, rec) {
                const char *p = json_string_value(json_object_get(rec, "path"));
                const char *a = json_string_value(json_object_get(rec, "account"));
                if (p && strstr(p, sub) &&
                    (!method || strcmp(method, json_string_value(json_object_get(rec, "method"))) == 0) &&
                    (!account || (a && strcmp(a, account) == 0)) &&
                    (!status || json_integer_value(json_object_get(rec, "status")) == status))
                        n++;
        }
        json_decref(log);
        return n;
}

/* Requests whose path contains sub (method NULL: any). */
static int count(struct inv_world *e, const char *method, const char *sub) {
        return count_as(e, method, sub, NULL, 0);
}

static int process_calls(struct inv_world *e, const char *order) {
        char p[96];
        snprintf(p, sizeof(p), "/orders/%s/process", order);
        return count(e, "POST", p);
}

/* Every request to Partner Center (/v1/) carried a Partner Center token
 * and every request to Graph (/v1.0/) a Graph token: no token of one
 * audience ever went to the other service.  Returns the Graph requests. */
static int assert_audiences(struct inv_world *e) {
        json_t *log = harness_fake_log(&e->fake), *rec;
        size_t i;
        int graph = 0;
        assert_non_null(log);
        json_array_foreach(log, i, rec) {
                const char *p = json_string_value(json_object_get(rec, "path"));
                const char *aud = json_string_value(json_object_get(rec, "audience"));
                if (p && strncmp(p, "/v1/", 4) == 0) {
                        if (!aud || strcmp(aud, "partner-center") != 0)
                                fail_msg("Partner Center got a token of audience %s: %s", aud ? aud : "(none)", p);
                } else if (p && strncmp(p, "/v1.0/", 6) == 0) {
                        if (!aud || strcmp(aud, "graph") != 0)
                                fail_msg("Graph got a token of audience %s: %s", aud ? aud : "(none)", p);
                        graph++;
                }
        }
        json_decref(log);
        return graph;
}

struct mails {
        size_t n;             /* mails naming the order to rcpt */
        bool reseller;        /* one of them says "reseller" (subject, text or html) */
        bool gdap_wording;    /* one of them says "delegated admin" */
};

static struct mails mails_to(struct inv_world *e, size_t from, const char *order, const char *rcpt) {
        struct mails r = { 0 };
        for (size_t i = from; i < harness_smtp_count(e->smtp); i++) {
                json_t *m = harness_smtp_parse(e->smtp, i);
                const char *t = json_string_value(json_object_get(m, "text"));
                const char *h = json_string_value(json_object_get(m, "html"));
                const char *s = json_string_value(json_object_get(m, "subject"));
                json_t *to = json_object_get(json_object_get(m, "envelope"), "rcpt_tos"), *v;
                size_t k;
                bool hit = false;
                json_array_foreach(to, k, v)
                        if (json_string_value(v) && strcmp(json_string_value(v), rcpt) == 0)
                                hit = true;
                if (hit && t && strstr(t, order)) {
                        r.n++;
                        if (strcasestr(t, "reseller") || (h && strcasestr(h, "reseller")) ||
                            (s && strcasestr(s, "reseller")))
                                r.reseller = true;
                        if (strstr(t, "delegated admin"))
                                r.gdap_wording = true;
                }
                json_decref(m);
        }
        return r;
}

/* The customer of `partnerd status --json` whose key is key: its kind and
 * gdap_ended ("-" when null). */
static void status_of(struct inv_world *e, const char *key, char *kind, char *ended, size_t n) {
        int status = -1;
        assert_int_equal(harness_pd_run(e->pd, (const char *const[]) { "status", "--json", NULL },
                                        RUN_TIMEOUT_MS, &status), 0);
        assert_int_equal(status, 0);
        char *out = harness_pd_output(e->pd, e->pd->runs, false);
        json_t *root = out ? json_loads(out, 0, NULL) : NULL, *c;
        size_t i;
        assert_non_null(root);
        snprintf(kind, n, "(none)");
        json_array_foreach(json_object_get(root, "customers"), i, c)
                if (strcmp(json_string_value(json_object_get(c, "key")), key) == 0) {
                        const char *k = json_string_value(json_object_get(c, "kind"));
                        const char *g = json_string_value(json_object_get(c, "gdap_ended"));
                        snprintf(kind, n, "%s", k ? k : "(null)");
                        snprintf(ended, n, "%s", g ? g : "-");
                }
        json_decref(root);
        free(out);
}

static void test_gdap_only_order(void **state) {
        struct inv_world *e = *state;

        /* ---- run 1: Contoso is a reseller customer, its GDAP request pending ---- */
        run_once(e);
        /* asked Graph about the relationship of its link, never processed */
        assert_true(count(e, "GET", "/delegatedAdminRelationships/" G_CONTOSO) >= 1);
        assert_int_equal(process_calls(e, ORD_CONTOSO), 0);
        /* the order with both links waits for the reseller relationship, which
         * Contoso accepted: Partner Center was asked, and it is processed */
        assert_true(count(e, "GET", "/v1/customers/" CONTOSO) >= 1);
        assert_int_equal(process_calls(e, ORD_BOTH), 1);
        struct mails m = mails_to(e, 0, ORD_CONTOSO, ADMIN);
        assert_int_equal(m.n, 1);
        assert_false(m.reseller);
        assert_true(m.gdap_wording);

        /* ---- expired and unknown relationships: one ops notice each, no Process ---- */
        assert_int_equal(process_calls(e, ORD_FABRIKAM), 0);
        assert_int_equal(process_calls(e, ORD_NORTHWIND), 0);
        struct mails f = mails_to(e, 0, ORD_FABRIKAM, OPS);
        struct mails n = mails_to(e, 0, ORD_NORTHWIND, OPS);
        assert_int_equal(f.n, 1);
        assert_int_equal(n.n, 1);
        assert_false(f.reseller);
        assert_false(n.reseller);
        char kind[32], ended[32];
        status_of(e, "gdap:" G_CONTOSO, kind, ended, sizeof(kind));
        assert_string_equal(kind, "gdap");
        assert_string_equal(ended, "-");
        status_of(e, "gdap:" G_FABRIKAM, kind, ended, sizeof(kind));
        assert_string_equal(ended, "expired");
        status_of(e, "gdap:" G_NORTHWIND, kind, ended, sizeof(kind));
        assert_string_equal(ended, "not-found");
        status_of(e, CONTOSO, kind, ended, sizeof(kind));
        assert_string_equal(kind, "reseller");
        int graph_reads = count(e, "GET", "/delegatedAdminRelationships/");
        size_t n1 = harness_smtp_count(e->smtp);

        /* ---- run 2: still pending; ended ones neither re-asked nor re-told ---- */
        run_once(e);
        assert_int_equal(process_calls(e, ORD_CONTOSO), 0);
        assert_int_equal(mails_to(e, n1, ORD_FABRIKAM, OPS).n, 0);
        assert_int_equal(mails_to(e, n1, ORD_NORTHWIND, OPS).n, 0);
        assert_int_equal(count(e, "GET", "/delegatedAdminRelationships/" G_FABRIKAM), 1);
        assert_int_equal(count(e, "GET", "/delegatedAdminRelationships/" G_NORTHWIND), 1);
        assert_true(count(e, "GET", "/delegatedAdminRelationships/") > graph_reads);

        /* ---- the customer approves: Graph says active, one Process ---- */
        set_gdap(e, G_CONTOSO, "active");
        size_t n2 = harness_smtp_count(e->smtp);
        run_once(e);
        assert_int_equal(process_calls(e, ORD_CONTOSO), 1);
        struct mails conf = mails_to(e, n2, ORD_CONTOSO, ADMIN);
        assert_int_equal(conf.n, 1);   /* the confirmation */
        assert_false(conf.reseller);
        run_once(e);
        assert_int_equal(process_calls(e, ORD_CONTOSO), 1);
        assert_int_equal(process_calls(e, ORD_BOTH), 1);
        assert_int_equal(process_calls(e, ORD_FABRIKAM), 0);
        assert_int_equal(process_calls(e, ORD_NORTHWIND), 0);

        /* every token went to the service it was issued for */
        assert_true(assert_audiences(e) >= 3);
}

/* Graph reads of relationship id answered with status, asked with
 * account's token (the fake's account name: "default" or "brazil"). */
static int graph_reads_as(struct inv_world *e, const char *id, const char *account, long status) {
        char sub[160];
        snprintf(sub, sizeof(sub), "/delegatedAdminRelationships/%s", id);
        return count_as(e, "GET", sub, account, status);
}

/* A GDAP link names no partnerId: a relationship that another configured
 * account (brazil) holds is found there, mailed as pending and processed
 * once active, not reported to ops as unknown.  An id no account knows is
 * still "not found", after each account was asked. */
static void test_gdap_regional_account(void **state) {
        struct inv_world *e = *state;
        run_once(e);
        assert_int_equal(graph_reads_as(e, G_CONTOSO, "default", 404), 1);
        assert_int_equal(graph_reads_as(e, G_CONTOSO, "brazil", 200), 1);
        assert_int_equal(mails_to(e, 0, ORD_CONTOSO, OPS).n, 0);
        struct mails m = mails_to(e, 0, ORD_CONTOSO, ADMIN);
        assert_int_equal(m.n, 1);
        assert_true(m.gdap_wording);
        char kind[32], ended[32];
        status_of(e, "gdap:" G_CONTOSO, kind, ended, sizeof(kind));
        assert_string_equal(ended, "-");
        assert_int_equal(graph_reads_as(e, G_NORTHWIND, "default", 404), 1);
        assert_int_equal(graph_reads_as(e, G_NORTHWIND, "brazil", 404), 1);
        status_of(e, "gdap:" G_NORTHWIND, kind, ended, sizeof(kind));
        assert_string_equal(ended, "not-found");
        assert_int_equal(mails_to(e, 0, ORD_NORTHWIND, OPS).n, 1);

        set_gdap(e, G_CONTOSO, "active");
        run_once(e);
        assert_int_equal(process_calls(e, ORD_CONTOSO), 1);
        assert_int_equal(graph_reads_as(e, G_CONTOSO, "brazil", 200), 2);
        run_once(e);
        assert_int_equal(process_calls(e, ORD_CONTOSO), 1);
        assert_true(assert_audiences(e) >= 4);
}

/* Lines of run's stderr holding every needle. */
static size_t err_lines(struct inv_world *e, int run, const char *const *needles) {
        char *err = harness_pd_output(e->pd, run, true);
        assert_non_null(err);
        size_t n = inv_count_lines(err, needles);
        free(err);
        return n;
}

/* Graph answers 403 (Authorization_RequestDenied, Graph's error shape) to
 * every read: the app lacks DelegatedAdminRelationship.Read.All.  That is
 * the configuration's fault, not each customer's: one error line per cycle
 * naming the permission, no warning per relationship, and the cycle fails
 * (exit 1 with --once); the reseller order is processed all the same. */
static void test_graph_forbidden(void **state) {
        struct inv_world *e = *state;
        assert_int_equal(harness_fake_fault(&e->fake, "{\"route\":\"gdap\",\"status\":403,\"times\":0,"
                "\"body\":\"{\\\"error\\\":{\\\"code\\\":\\\"Authorization_RequestDenied\\\",\\\"message\\\":"
                "\\\"Insufficient privileges to complete the operation.\\\"}}\"}"), 0);
        int status = -1;
        assert_int_equal(harness_pd_run(e->pd, (const char *const[]) { "--once", NULL }, RUN_TIMEOUT_MS, &status), 0);
        assert_int_equal(status, 1);
        int run = e->pd->runs;
        assert_true(count_as(e, "GET", "/delegatedAdminRelationships/", NULL, 403) >= 3);
        assert_int_equal(err_lines(e, run, (const char *const[]) { "<3>", "DelegatedAdminRelationship.Read.All",
                                                                   "[microsoft]", NULL }), 1);
        assert_int_equal(err_lines(e, run, (const char *const[]) { "Cannot read the GDAP relationship", NULL }), 0);
        assert_int_equal(process_calls(e, ORD_BOTH), 1);
        assert_int_equal(process_calls(e, ORD_CONTOSO), 0);
}

static int get_auth(const char *url, const char *auth, long *st, char **body) {
        const char *const h[] = { auth, NULL };
        return harness_http("GET", url, h, NULL, st, body, NULL);
}

/* The fake itself: a Partner Center token is refused by Graph with Graph's
 * 401, and a Graph token by Partner Center with its own 401. */
static void test_fake_audiences(void **state) {
        struct inv_world *e = *state;
        char url[512], *body = NULL;
        long st = 0;
        json_t *sc = json_load_file(e->scenario, 0, NULL);
        const json_t *ms = json_object_get(sc, "microsoft");
        char form[512], *tok[2] = { NULL, NULL };
        static const char *const scopes[2] = { "https%3A%2F%2Fapi.partnercenter.microsoft.com%2F.default",
                                               "https%3A%2F%2Fgraph.microsoft.com%2F.default" };
        char path[256];
        snprintf(path, sizeof(path), "/%s/oauth2/v2.0/token", json_string_value(json_object_get(ms, "tenant")));
        for (int i = 0; i < 2; i++) {
                snprintf(form, sizeof(form), "grant_type=client_credentials&client_id=%s&client_secret=%s&scope=%s",
                         json_string_value(json_object_get(ms, "client_id")),
                         json_string_value(json_object_get(ms, "client_secret")), scopes[i]);
                static const char *const fh[] = { "Content-Type: application/x-www-form-urlencoded", NULL };
                assert_int_equal(harness_http("POST", harness_fake_url(&e->fake, path, url, sizeof(url)), fh, form,
                                              &st, &body, NULL), 0);
                assert_int_equal(st, 200);
                json_t *j = json_loads(body, 0, NULL);
                tok[i] = strdup(json_string_value(json_object_get(j, "access_token")));
                json_decref(j);
                free(body);
                body = NULL;
        }
        json_decref(sc);
        /* Graph with the Partner Center token, Partner Center with the Graph one */
        char hdr[256];
        snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s", tok[0]);
        assert_int_equal(get_auth(harness_fake_url(&e->fake, "/v1.0/tenantRelationships/"
                                          "delegatedAdminRelationships/" G_CONTOSO, url, sizeof(url)), hdr, &st, &body), 0);
        assert_int_equal(st, 401);
        assert_non_null(strstr(body, "\"InvalidAuthenticationToken\""));
        free(body);
        snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s", tok[1]);
        assert_int_equal(get_auth(harness_fake_url(&e->fake, "/v1/customers/" CONTOSO, url, sizeof(url)),
                                          hdr, &st, &body), 0);
        assert_int_equal(st, 401);
        assert_non_null(strstr(body, "\"code\""));
        free(body);
        /* and each with its own audience passes, in Graph's JSON shape */
        assert_int_equal(get_auth(harness_fake_url(&e->fake, "/v1.0/tenantRelationships/"
                                          "delegatedAdminRelationships/" G_CONTOSO, url, sizeof(url)), hdr, &st, &body), 0);
        assert_int_equal(st, 200);
        json_t *g = json_loads(body, 0, NULL);
        assert_non_null(json_object_get(g, "@odata.context"));
        assert_string_equal(json_string_value(json_object_get(g, "id")), G_CONTOSO);
        assert_string_equal(json_string_value(json_object_get(json_object_get(g, "customer"), "tenantId")), CONTOSO);
        assert_string_equal(json_string_value(json_object_get(g, "status")), "approvalPending");
        json_decref(g);
        free(body);
        free(tok[0]);
        free(tok[1]);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_gdap_only_order, setup, teardown),
                cmocka_unit_test_setup_teardown(test_fake_audiences, setup, teardown),
                cmocka_unit_test_setup_teardown(test_gdap_regional_account, setup_regional, teardown),
                cmocka_unit_test_setup_teardown(test_graph_forbidden, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
