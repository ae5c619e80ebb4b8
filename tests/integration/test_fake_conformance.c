/* SPDX-License-Identifier: MIT */
/*
 * Conformance of the fake platform to the published Marketplace OpenAPI
 * schemas: responses are fetched from the running fake and validated by
 * tests/tools/validate_openapi.py against the reference file in
 * ../shared/reference.  Skips when that directory is absent.
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

#include "harness.h"
#include "util.h"

#define AUTH_HDR "Authorization: Bearer idt:TKN-0000-0001:fake-marketplace-secret"
#define ORDERS "/public/v1/commerce/orders"
#define OPENAPI_FILE "reference/marketplace-openapi-orders.json"

struct ctx {
        struct harness_fake fake;
        char *openapi;
        char *validator;
        char *tmp;
        int n_docs;
};

static int setup(void **state) {
        char *shared = harness_shared_dir(), *scenario;
        struct ctx *c;

        if (!shared || asprintf(&scenario, "%s/%s", shared, OPENAPI_FILE) < 0 ||
            access(scenario, R_OK) < 0) {
                free(shared);
                *state = NULL;
                return 0;
        }
        c = calloc(1, sizeof(*c));
        assert_non_null(c);
        c->openapi = scenario;
        free(shared);
        c->validator = harness_src_path("tests/tools/validate_openapi.py");
        c->tmp = harness_tmpdir();
        scenario = harness_src_path("tests/scenarios/basic.json");
        assert_int_equal(harness_fake_start(scenario, &c->fake), 0);
        free(scenario);
        *state = c;
        return 0;
}

static int teardown(void **state) {
        struct ctx *c = *state;
        int r;

        if (!c)
                return 0;
        r = harness_fake_stop(&c->fake);
        harness_rmrf(c->tmp);
        free(c->tmp);
        free(c->openapi);
        free(c->validator);
        free(c);
        assert_int_equal(r, 0);
        return 0;
}

static struct ctx *ctx_or_skip(void **state) {
        if (!*state) {
                printf("skipped: ../shared/reference not present\n");
                skip();
        }
        return *state;
}

/* Runs the validator on text; returns its exit status. */
static int validate_text(struct ctx *c, const char *schema, const char *text) {
        char doc[4096], out[4096], *report = NULL;
        int st = -1;

        snprintf(doc, sizeof(doc), "%s/doc%d.json", c->tmp, ++c->n_docs);
        snprintf(out, sizeof(out), "%s/doc%d.out", c->tmp, c->n_docs);
        assert_int_equal(util_write_file_atomic(doc, text, strlen(text), 0644), 0);
        char *argv[] = { "/usr/bin/python3", c->validator, c->openapi, (char *) schema, doc, NULL };
        pid_t pid = harness_spawn(argv, NULL, out, out);
        assert_true(pid > 0);
        assert_int_equal(harness_wait(pid, 60000, &st), 0);
        if (st != 0 && util_read_file(out, 65536, &report, NULL) == 0) {
                printf("validator (%s, exit %d):\n%s", schema, st, report);
                free(report);
        }
        return st;
}

/* Fetches path from the fake, checks the status and validates the body. */
static void check(struct ctx *c, const char *method, const char *path, long want_status,
                  const char *schema) {
        static const char *const h[] = { AUTH_HDR, NULL };
        char url[1024], *body = NULL;
        long st = 0;

        harness_fake_url(&c->fake, path, url, sizeof(url));
        assert_int_equal(harness_http(method, url, h, strcmp(method, "POST") == 0 ? "{}" : NULL,
                                      &st, &body, NULL), 0);
        assert_int_equal(st, want_status);
        assert_int_equal(validate_text(c, schema, body), 0);
        free(body);
}

static void test_order_list(void **state) {
        struct ctx *c = ctx_or_skip(state);

        check(c, "GET", ORDERS, 200, "OrderListResponse");
        check(c, "GET", ORDERS "?eq(status,Querying)&select=+parameters,+audit&order=audit.created.at&limit=2",
              200, "OrderListResponse");
}

static void test_single_order(void **state) {
        struct ctx *c = ctx_or_skip(state);

        check(c, "GET", ORDERS "/ORD-1001-0001-0001", 200, "Order");
        check(c, "GET", ORDERS "/ORD-1001-0001-0004?select=+lines", 200, "Order");
        check(c, "POST", ORDERS "/ORD-1001-0001-0001/process", 200, "Order");
        check(c, "GET", "/public/v1/accounts/buyers/BUY-1001-0001", 200, "Buyer");
}

static void test_problems(void **state) {
        struct ctx *c = ctx_or_skip(state);

        check(c, "GET", ORDERS "/ORD-0000-0000-0000", 404, "ProblemDetails");
        check(c, "POST", ORDERS "/ORD-1001-0001-0003/complete", 200, "Order");
        check(c, "POST", ORDERS "/ORD-1001-0001-0003/process", 409, "ProblemDetails");
        check(c, "GET", ORDERS "?bogus(x)", 400, "ProblemDetails");
}

/* The check must be able to fail: a field the schema lacks is reported. */
static void test_validator_rejects(void **state) {
        struct ctx *c = ctx_or_skip(state);

        assert_int_equal(validate_text(c, "Order", "{\"id\":\"ORD-1\",\"status\":\"Querying\"}"), 0);
        assert_int_equal(validate_text(c, "Order", "{\"id\":\"ORD-1\",\"revision\":2}"), 1);
        assert_int_equal(validate_text(c, "Order", "{\"id\":\"ORD-1\",\"status\":\"Waiting\"}"), 1);
        assert_int_equal(validate_text(c, "OrderListResponse", "{\"data\":[{\"id\":7}]}"), 1);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_order_list, setup, teardown),
                cmocka_unit_test_setup_teardown(test_single_order, setup, teardown),
                cmocka_unit_test_setup_teardown(test_problems, setup, teardown),
                cmocka_unit_test_setup_teardown(test_validator_rejects, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
