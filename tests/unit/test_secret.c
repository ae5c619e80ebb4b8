/* SPDX-License-Identifier: MIT */
/* lib/secret: the registry and the scrubber (issue 12.7); the format
 * character filter of lib/util (issue 12.14). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "log.h"
#include "secret.h"
#include "util.h"

static int teardown(void **unused) {
        secret_forget_all();
        return 0;
}

static void expect_scrub(const char *in, const char *want) {
        size_t len = 0;
        char *out = secret_scrub(in, strlen(in), &len);
        assert_non_null(out);
        assert_string_equal(out, want);
        assert_int_equal(len, strlen(want));
        free(out);
}

static void test_scrub_forms(void **unused) {
        assert_int_equal(secret_register("idt:TKN-1:s3cr\"et/+", SECRET_CONFIG), 0);
        assert_int_equal(secret_register("short", SECRET_CONFIG), 0);    /* too short: ignored */
        assert_int_equal(secret_count(), 1);
        assert_int_equal(secret_register("idt:TKN-1:s3cr\"et/+", SECRET_CONFIG), 0);
        assert_int_equal(secret_count(), 1);
        /* raw, JSON-escaped, percent-encoded; several; at the ends */
        expect_scrub("token idt:TKN-1:s3cr\"et/+ refused", "token [redacted] refused");
        expect_scrub("{\"t\":\"idt:TKN-1:s3cr\\\"et/+\"}", "{\"t\":\"[redacted]\"}");
        expect_scrub("client_secret=idt%3ATKN-1%3As3cr%22et%2F%2B&x", "client_secret=[redacted]&x");
        expect_scrub("idt:TKN-1:s3cr\"et/+idt:TKN-1:s3cr\"et/+", "[redacted][redacted]");
        expect_scrub("nothing here, short", "nothing here, short");
        assert_true(secret_found("..idt:TKN-1:s3cr\"et/+..", 24));
        assert_false(secret_found("idt:TKN-1:s3cr", 14));
}

static void test_scrub_buf_cuts_after_scrubbing(void **unused) {
        assert_int_equal(secret_register("ABCDEFGHIJKLMNOP", SECRET_CONFIG), 0);
        /* the secret straddles the cut (at 19 bytes): scrubbed first, so
         * no prefix of it stays */
        char whole[64] = "error: xx ABCDEFGHIJKLMNOP tail";
        secret_scrub_buf(whole, 20);
        assert_string_equal(whole, "error: xx [redacted");
        assert_null(strstr(whole, "ABC"));
}

static void test_transient_tokens_evicted(void **unused) {
        char tok[32];
        for (int i = 0; i < SECRET_MAX_TRANSIENT + 5; i++) {
                snprintf(tok, sizeof(tok), "access-token-%03d", i);
                assert_int_equal(secret_register(tok, SECRET_TRANSIENT), 0);
        }
        assert_int_equal(secret_register("config-secret-1", SECRET_CONFIG), 0);
        assert_int_equal(secret_count(), SECRET_MAX_TRANSIENT + 1);
        assert_false(secret_found("access-token-000", 16));       /* the oldest went */
        snprintf(tok, sizeof(tok), "access-token-%03d", SECRET_MAX_TRANSIENT + 4);
        assert_true(secret_found(tok, strlen(tok)));
        assert_true(secret_found("config-secret-1", 15));
        secret_forget_all();
        assert_int_equal(secret_count(), 0);
        assert_false(secret_found("config-secret-1", 15));
}

/* log: a message or field holding a secret is scrubbed before the line is
 * cut at its limit (2048 bytes), and format characters are dropped. */
static void test_log_scrubs(void **unused) {
        char path[] = "/tmp/test_secret_log.XXXXXX";
        int fd = mkstemp(path), saved = dup(STDERR_FILENO);
        assert_true(fd >= 0 && saved >= 0);
        assert_int_equal(secret_register("LOG-SECRET-0123456789", SECRET_CONFIG), 0);
        fflush(stderr);
        assert_true(dup2(fd, STDERR_FILENO) >= 0);
        log_init(LOG_TARGET_STDERR);
        char pad[2040];
        memset(pad, 'p', sizeof(pad) - 1);
        pad[sizeof(pad) - 1] = '\0';
        log_error("echo: LOG-SECRET-0123456789 end");
        log_error("%s LOG-SECRET-0123456789", pad);       /* across the cut */
        log_event(LOG_ERR, LOG_EV_NONE, LOG_FIELDS({ "X", "LOG-SECRET-0123456789" }), "A\xe2\x80\xae" "B");
        fflush(stderr);
        assert_true(dup2(saved, STDERR_FILENO) >= 0);
        close(saved);
        char *out = NULL;
        assert_int_equal(util_read_file(path, 1 << 20, &out, NULL), 0);
        unlink(path);
        close(fd);
        assert_non_null(strstr(out, "<3>echo: [redacted] end\n"));
        assert_null(strstr(out, "LOG-SEC"));
        assert_non_null(strstr(out, "<3>AB\n"));
        free(out);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_teardown(test_scrub_forms, teardown),
                cmocka_unit_test_teardown(test_scrub_buf_cuts_after_scrubbing, teardown),
                cmocka_unit_test_teardown(test_transient_tokens_evicted, teardown),
                cmocka_unit_test_teardown(test_log_scrubs, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
