/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "status.h"
#include "util.h"

#define DAY UTIL_SEC_PER_DAY

static int64_t T0;   /* 2026-08-01T09:20:02Z */

static struct state *sample(void) {
        struct state *s = state_new();
        struct tracked_customer *c = state_add_customer(s, "domain:contoso.onmicrosoft.com");
        c->domain = strdup("contoso.onmicrosoft.com");
        c->name = strdup("Contoso\x1b[31m Ltd");   /* a terminal escape from remote data */
        c->first_seen = T0;
        c->notified_at = T0;
        c->reminders = 1;
        c->next_check = T0 + 3 * 3600;
        struct tracked_order *o = customer_add_order(c, "ORD-1111-1111-1111");
        o->status = TRACK_BLOCKED;
        o->querying_since = T0;
        o->first_seen = T0;
        o->notified = true;
        o = customer_add_order(c, "ORD-2222-2222-2222");
        o->status = TRACK_CLOSED;
        o->outcome = strdup("processed");
        o->first_seen = T0 - DAY;
        o->closed_at = T0;
        c = state_add_customer(s, "aaaaaaaa-2222-3333-4444-555555555555");
        c->tenant_id = strdup("aaaaaaaa-2222-3333-4444-555555555555");
        c->name = strdup("A company with a really very extremely long name indeed, Inc.");
        o = customer_add_order(c, "ORD-3333-3333-3333");
        o->status = TRACK_DRAFT;
        o->first_seen = T0;
        return s;
}

/* Display column of byte offset off in line (UTF-8 aware). */
static size_t col_of(const char *line, size_t off) {
        size_t w = 0;
        for (size_t i = 0; i < off; i++)
                if (((unsigned char) line[i] & 0xc0) != 0x80)
                        w++;
        return w;
}

static void test_empty(void **unused) {
        struct state *s = state_new();
        char *out = NULL;
        assert_int_equal(status_render(s, T0, 15 * DAY, false, &out), 0);
        assert_string_equal(out, "No orders tracked.\n");
        free(out);
        assert_int_equal(status_render(s, T0, 15 * DAY, true, &out), 0);
        json_error_t e;
        json_t *j = json_loads(out, 0, &e);
        assert_non_null(j);
        assert_int_equal(json_array_size(json_object_get(j, "customers")), 0);
        assert_string_equal(json_string_value(json_object_get(j, "generated_at")), "2026-08-01T09:20:02Z");
        json_decref(j);
        free(out);
        assert_int_equal(status_render(NULL, T0, 0, false, &out), -EINVAL);
        state_free(s);
}

static void test_table(void **unused) {
        struct state *s = sample();
        char *out = NULL;
        int64_t now = T0 + DAY;
        assert_int_equal(status_render(s, now, 15 * DAY, false, &out), 0);

        /* Header + 3 rows. */
        size_t lines = 0;
        for (const char *p = out; *p; p++)
                lines += *p == '\n';
        assert_int_equal(lines, 4);
        assert_non_null(strstr(out, "ORDER"));
        assert_non_null(strstr(out, "DEADLINE"));
        /* Times and relative times. */
        assert_non_null(strstr(out, "2026-08-01 09:20Z"));
        assert_non_null(strstr(out, "2026-08-16 09:20Z (in 14d)"));
        assert_non_null(strstr(out, "now"));   /* next check is overdue: due now */
        assert_non_null(strstr(out, "closed: processed"));
        assert_non_null(strstr(out, "draft"));
        /* No raw escape; long names cut. */
        assert_null(strchr(out, '\x1b'));
        assert_non_null(strstr(out, "Contoso?[31m Ltd"));
        assert_non_null(strstr(out, "..."));
        assert_null(strstr(out, "indeed, Inc."));

        /* Columns aligned: "STATE" header column == state cell column. */
        char *save = NULL, *copy = strdup(out);
        char *hdr = strtok_r(copy, "\n", &save);
        size_t state_col = col_of(hdr, (size_t) (strstr(hdr, "STATE") - hdr));
        size_t dl_col = col_of(hdr, (size_t) (strstr(hdr, "DEADLINE") - hdr));
        const char *states[] = { "blocked", "closed: processed", "draft" };
        for (int i = 0; i < 3; i++) {
                char *row = strtok_r(NULL, "\n", &save);
                assert_non_null(row);
                char *st = strstr(row, states[i]);
                assert_non_null(st);
                assert_int_equal(col_of(row, (size_t) (st - row)), state_col);
                if (i == 0) {
                        char *d = strstr(row, "2026-08-16");
                        assert_non_null(d);
                        assert_int_equal(col_of(row, (size_t) (d - row)), dl_col);
                } else
                        assert_int_equal(col_of(row, strlen(row) - 1), dl_col);   /* "-" */
        }
        free(copy);
        free(out);

        /* Future check is shown relative; past deadline says so. */
        assert_int_equal(status_render(s, T0 + 3600, 15 * DAY, false, &out), 0);
        assert_non_null(strstr(out, "in 2h"));
        free(out);
        assert_int_equal(status_render(s, T0 + 16 * DAY, 15 * DAY, false, &out), 0);
        assert_non_null(strstr(out, "(passed)"));
        free(out);
        state_free(s);
}

static void test_json(void **unused) {
        struct state *s = sample();
        char *out = NULL, *again = NULL;
        assert_int_equal(status_render(s, T0, 15 * DAY, true, &out), 0);
        assert_int_equal(status_render(s, T0, 15 * DAY, true, &again), 0);
        assert_string_equal(out, again);   /* stable */
        json_error_t e;
        json_t *j = json_loads(out, JSON_REJECT_DUPLICATES, &e);
        assert_non_null(j);
        json_t *cs = json_object_get(j, "customers");
        assert_int_equal(json_array_size(cs), 2);
        json_t *c = json_array_get(cs, 0);
        assert_string_equal(json_string_value(json_object_get(c, "key")), "domain:contoso.onmicrosoft.com");
        assert_string_equal(json_string_value(json_object_get(c, "name")), "Contoso\x1b[31m Ltd");
        assert_int_equal(json_integer_value(json_object_get(c, "reminders")), 1);
        assert_string_equal(json_string_value(json_object_get(c, "deadline")), "2026-08-16T09:20:02Z");
        assert_true(json_is_null(json_object_get(c, "accepted_at")));
        json_t *o = json_array_get(json_object_get(c, "orders"), 1);
        assert_string_equal(json_string_value(json_object_get(o, "status")), "closed");
        assert_string_equal(json_string_value(json_object_get(o, "outcome")), "processed");
        assert_true(json_is_null(json_object_get(o, "deadline")));
        c = json_array_get(cs, 1);
        assert_true(json_is_null(json_object_get(c, "deadline")));
        assert_true(json_is_null(json_object_get(c, "domain")));
        /* Keys sorted. */
        assert_true(strstr(out, "\"accepted_at\"") < strstr(out, "\"deadline\""));
        json_decref(j);
        free(out);
        free(again);
        state_free(s);
}

/* Which Partner Center account checks each customer. */
static void test_account(void **unused) {
        struct state *s = state_new();
        char *out = NULL;
        const char *acc[] = { "brazil", ACCOUNT_NONE, NULL };
        const char *keys[] = { "brazil/t1", "-/t2", "t3" };
        for (int i = 0; i < 3; i++) {
                struct tracked_customer *c = state_add_customer(s, keys[i]);
                c->account = acc[i] ? strdup(acc[i]) : NULL;
                char id[32];
                snprintf(id, sizeof(id), "ORD-0000-0000-000%d", i);
                customer_add_order(c, id)->status = TRACK_BLOCKED;
        }
        assert_int_equal(status_render(s, T0, 15 * DAY, false, &out), 0);
        assert_non_null(strstr(out, "ACCOUNT"));
        assert_non_null(strstr(out, "brazil"));
        assert_non_null(strstr(out, "none (partnerId not listed)"));
        free(out);
        assert_int_equal(status_render(s, T0, 15 * DAY, true, &out), 0);
        json_t *root = json_loads(out, 0, NULL);
        json_t *cs = json_object_get(root, "customers");
        assert_string_equal(json_string_value(json_object_get(json_array_get(cs, 0), "account")), "brazil");
        assert_string_equal(json_string_value(json_object_get(json_array_get(cs, 1), "account")), "-");
        assert_true(json_is_null(json_object_get(json_array_get(cs, 2), "account")));
        json_decref(root);
        free(out);
        state_free(s);
}

int main(void) {
        assert_int_equal(util_parse_time("2026-08-01T09:20:02Z", &T0), 0);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_empty),
                cmocka_unit_test(test_table),
                cmocka_unit_test(test_json),
                cmocka_unit_test(test_account),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
