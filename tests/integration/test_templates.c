/* SPDX-License-Identifier: MIT */
/*
 * The built-in templates (issue 14): the real partnerd binary with a
 * configuration that names no template directory and has none next to it.
 *
 *  - --check-config passes and `partnerd templates` says every template is
 *    built in;
 *  - one override file in the configuration's templates/ directory wins
 *    for that file only, end to end (the mail received over SMTP), and
 *    --check-config validates it (an unknown placeholder is an error naming
 *    the override file);
 *  - `templates --dump DIR` writes files equal, byte for byte, to
 *    config/templates (the one source), and never overwrites a file.
 */
#include <dirent.h>
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

#include <jansson.h>

#include "harness.h"
#include "invariants.h"
#include "pdrun.h"
#include "smtp.h"
#include "util.h"

#define RUN_TIMEOUT_MS 120000


static int setup(void **state) {
        *state = inv_world_new(NULL, "tests/scenarios/basic.json", NULL,
                               &(struct harness_pd_options) { .builtin_templates = true });
        return *state ? 0 : -1;
}

static int teardown(void **state) {
        inv_world_free(*state);
        return 0;
}

/* Runs partnerd with args; returns its exit status, *ret_out its stdout
 * (malloc'd) when ret_out, and prints its stderr when it is not 0. */
static int run(struct inv_world *e, const char *const *args, char **ret_out, char **ret_err) {
        int status = -1;
        assert_int_equal(harness_pd_run(e->pd, args, RUN_TIMEOUT_MS, &status), 0);
        if (ret_out)
                *ret_out = harness_pd_output(e->pd, e->pd->runs, false);
        if (ret_err)
                *ret_err = harness_pd_output(e->pd, e->pd->runs, true);
        return status;
}

static void write_text(const char *path, const char *text) {
        assert_int_equal(util_write_file_atomic(path, text, strlen(text), 0644), 0);
}

/* The line of `partnerd templates` output for file name. */
static char *listing_line(const char *out, const char *name) {
        size_t n = strlen(name);
        for (const char *p = out; p && *p; ) {
                const char *nl = strchr(p, '\n');
                size_t len = nl ? (size_t) (nl - p) : strlen(p);
                if (len > n && strncmp(p, name, n) == 0 && p[n] == ' ')
                        return strndup(p, len);
                p = nl ? nl + 1 : NULL;
        }
        return NULL;
}

static void test_builtin_only(void **state) {
        struct inv_world *e = *state;
        char *out = NULL, *dir = NULL;

        /* no templates key, and no templates/ next to the configuration */
        assert_int_equal(asprintf(&dir, "%s/templates", e->pd->dir) > 0, true);
        assert_int_equal(access(dir, F_OK), -1);

        const char *check[] = { "--check-config", NULL };
        assert_int_equal(run(e, check, &out, NULL), 0);
        assert_non_null(strstr(out, "configuration OK"));
        free(out);

        const char *list[] = { "templates", NULL };
        assert_int_equal(run(e, list, &out, NULL), 0);
        const char *names[] = { "new-request.subject", "new-request.txt", "new-request.html",
                                "reminder.txt", "final-warning.html", "confirmation.subject" };
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                char *line = listing_line(out, names[i]);
                assert_non_null(line);
                assert_non_null(strstr(line, "built in"));
                free(line);
        }
        free(out);

        /* and it mails from them: the built-in subject reaches the admins */
        const char *once[] = { "--once", NULL };
        assert_int_equal(run(e, once, NULL, NULL), 0);
        assert_true(harness_smtp_count(e->smtp) >= 1);
        json_t *m = harness_smtp_parse(e->smtp, 0);
        assert_non_null(m);
        const char *subject = json_string_value(json_object_get(json_object_get(m, "headers"), "Subject"));
        assert_non_null(subject);
        assert_null(strstr(subject, "{{"));
        json_decref(m);
        free(dir);
}

static void test_override_wins(void **state) {
        struct inv_world *e = *state;
        char *out = NULL, *err = NULL, *dir = NULL, *file = NULL;

        assert_true(asprintf(&dir, "%s/templates", e->pd->dir) > 0);
        assert_true(asprintf(&file, "%s/new-request.subject", dir) > 0);
        assert_int_equal(mkdir(dir, 0755), 0);
        write_text(file, "[local] accept the relationship for {{domain}}\n");

        const char *list[] = { "templates", NULL };
        assert_int_equal(run(e, list, &out, NULL), 0);
        char *line = listing_line(out, "new-request.subject");
        assert_non_null(line);
        assert_non_null(strstr(line, file));
        free(line);
        line = listing_line(out, "new-request.txt");   /* one file at a time */
        assert_non_null(line);
        assert_non_null(strstr(line, "built in"));
        free(line);
        free(out);

        const char *once[] = { "--once", NULL };
        assert_int_equal(run(e, once, NULL, NULL), 0);
        size_t n = harness_smtp_count(e->smtp), local = 0, builtin = 0;
        for (size_t i = 0; i < n; i++) {
                json_t *m = harness_smtp_parse(e->smtp, i);
                assert_non_null(m);
                const char *s = json_string_value(json_object_get(json_object_get(m, "headers"), "Subject"));
                assert_non_null(s);
                if (strncmp(s, "[local] accept the relationship for ", 36) == 0)
                        local++;
                else if (strstr(s, "before the order is placed"))   /* the built-in draft warning */
                        builtin++;
                json_decref(m);
        }
        assert_int_equal(local, 2);      /* Contoso and Fabrikam (tests/scenarios/basic.json) */
        assert_int_equal(builtin, 1);

        /* a broken override: --check-config names the file and the line */
        write_text(file, "[local] {{customer_nmae}}\n");
        const char *check[] = { "--check-config", NULL };
        assert_int_equal(run(e, check, NULL, &err), 78);
        char want[1024];
        snprintf(want, sizeof(want), "%s:1: unknown placeholder {{customer_nmae}}", file);
        assert_non_null(strstr(err, want));
        free(err);
        free(file);
        free(dir);
}

/* The bytes of dir/name (malloc'd), or NULL. */
static char *slurp(const char *dir, const char *name, size_t *ret_len) {
        char path[1024], *data = NULL;
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        return util_read_file(path, 1u << 20, &data, ret_len) < 0 ? NULL : data;
}

static void test_dump_round_trip(void **state) {
        struct inv_world *e = *state;
        char *src = harness_src_path("config/templates"), *tmp = harness_tmpdir(), *dump = NULL;
        char *out = NULL, *err = NULL;
        size_t n_src = 0, n_dump = 0;

        assert_non_null(tmp);
        assert_true(asprintf(&dump, "%s/dump", tmp) > 0);   /* created by --dump */
        const char *args[] = { "templates", "--dump", dump, NULL };
        assert_int_equal(run(e, args, &out, NULL), 0);
        free(out);

        /* every file of config/templates, byte for byte, and nothing else */
        DIR *d = opendir(src);
        assert_non_null(d);
        for (struct dirent *de; (de = readdir(d)); ) {
                if (de->d_name[0] == '.')
                        continue;
                size_t la = 0, lb = 0;
                char *a = slurp(src, de->d_name, &la), *b = slurp(dump, de->d_name, &lb);
                assert_non_null(a);
                if (!b)
                        fail_msg("--dump did not write %s", de->d_name);
                assert_int_equal(la, lb);
                assert_memory_equal(a, b, la);
                free(a);
                free(b);
                n_src++;
        }
        closedir(d);
        d = opendir(dump);
        assert_non_null(d);
        for (struct dirent *de; (de = readdir(d)); )
                n_dump += de->d_name[0] != '.';
        closedir(d);
        assert_true(n_src >= 18);
        assert_int_equal(n_dump, n_src);

        /* a second dump keeps what is there (an edited copy) and says so */
        char path[1024];
        snprintf(path, sizeof(path), "%s/reminder.txt", dump);
        write_text(path, "my own reminder\n");
        assert_int_equal(run(e, args, NULL, &err), 1);
        snprintf(path, sizeof(path), "%s/reminder.txt exists, kept", dump);
        assert_non_null(strstr(err, path));
        size_t len = 0;
        char *kept = slurp(dump, "reminder.txt", &len);
        assert_non_null(kept);
        assert_string_equal(kept, "my own reminder\n");
        free(kept);
        free(err);

        harness_rmrf(tmp);
        free(tmp);
        free(dump);
        free(src);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_builtin_only, setup, teardown),
                cmocka_unit_test_setup_teardown(test_override_wins, setup, teardown),
                cmocka_unit_test_setup_teardown(test_dump_round_trip, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
