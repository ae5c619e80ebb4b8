/* SPDX-License-Identifier: MIT */
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

#include "util.h"

static void test_duration(void **state) {
        int64_t s;
        assert_int_equal(util_parse_duration("30s", &s), 0);
        assert_int_equal(s, 30);
        assert_int_equal(util_parse_duration("5min", &s), 0);
        assert_int_equal(s, 300);
        assert_int_equal(util_parse_duration("24h", &s), 0);
        assert_int_equal(s, 86400);
        assert_int_equal(util_parse_duration("2d", &s), 0);
        assert_int_equal(s, 172800);
        assert_int_equal(util_parse_duration("1h30min", &s), 0);
        assert_int_equal(s, 5400);
        assert_int_equal(util_parse_duration("90", &s), 0);
        assert_int_equal(s, 90);
        assert_int_equal(util_parse_duration("250ms", &s), 0);
        assert_int_equal(s, 1);
        assert_int_equal(util_parse_duration("", &s), -EINVAL);
        assert_int_equal(util_parse_duration("5 parsecs", &s), -EINVAL);
        assert_int_equal(util_parse_duration("-5s", &s), -EINVAL);
        assert_int_equal(util_parse_duration("5s junk", &s), -EINVAL);
        assert_int_equal(util_parse_duration("99999999999999999999d", &s), -ERANGE);
        char buf[32];
        util_format_duration(5400, buf, sizeof(buf));
        assert_string_equal(buf, "1h30min");
        util_format_duration(2 * 86400, buf, sizeof(buf));
        assert_string_equal(buf, "2d");
}

static void test_time(void **state) {
        int64_t t;
        char buf[UTIL_TIME_MAX];
        assert_int_equal(util_parse_time("2026-08-01T09:20:02.517Z", &t), 0);
        assert_string_equal(util_format_time(t, buf), "2026-08-01T09:20:02Z");
        assert_int_equal(util_parse_time("2024-09-26T08:59:08.9921325Z", &t), 0);
        assert_string_equal(util_format_time(t, buf), "2024-09-26T08:59:08Z");
        assert_int_equal(util_parse_time("2023-12-14T18:02:16.9359", &t), 0);
        assert_string_equal(util_format_time(t, buf), "2023-12-14T18:02:16Z");
        assert_int_equal(util_parse_time("2023-12-14T20:02:16+02:00", &t), 0);
        assert_string_equal(util_format_time(t, buf), "2023-12-14T18:02:16Z");
        assert_int_equal(util_parse_time("2023-12-14", &t), 0);
        assert_int_equal(util_parse_time("2023-13-14T00:00:00Z", &t), -EINVAL);
        assert_int_equal(util_parse_time("yesterday", &t), -EINVAL);
        assert_int_equal(util_parse_time("2023-12-14T18:02:16Zjunk", &t), -EINVAL);
}

static void test_buf_cap(void **state) {
        struct util_buf b;
        util_buf_init(&b, 10);
        assert_int_equal(util_buf_puts(&b, "12345"), 0);
        assert_int_equal(util_buf_printf(&b, "%d", 6789), 0);
        assert_int_equal(util_buf_puts(&b, "ab"), -E2BIG);
        assert_string_equal(b.data, "123456789");
        char *s = util_buf_steal(&b);
        assert_string_equal(s, "123456789");
        free(s);
        util_buf_free(&b);
}

static void test_atomic_write(void **state) {
        char dir[] = "/tmp/partnerd-test-XXXXXX", path[128], *data = NULL;
        size_t len;
        struct stat st;
        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/f.json", dir);
        assert_int_equal(util_write_file_atomic(path, "hello", 5, 0600), 0);
        assert_int_equal(util_read_file(path, 100, &data, &len), 0);
        assert_int_equal(len, 5);
        assert_string_equal(data, "hello");
        free(data);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        assert_int_equal(util_read_file(path, 3, &data, &len), -EFBIG);
        /* a directory that does not exist: error, nothing created */
        char bad[160];
        snprintf(bad, sizeof(bad), "%s/nope/f.json", dir);
        assert_true(util_write_file_atomic(bad, "x", 1, 0600) < 0);
        unlink(path);
        rmdir(dir);
}

static void test_loopback(void **state) {
        assert_true(util_host_is_loopback("localhost"));
        assert_true(util_host_is_loopback("127.0.0.1"));
        assert_true(util_host_is_loopback("127.1.2.3"));
        assert_true(util_host_is_loopback("::1"));
        assert_false(util_host_is_loopback("127.0.0.1.evil.com"));
        assert_false(util_host_is_loopback("10.0.0.1"));
        assert_false(util_host_is_loopback("example.com"));
        char u[37];
        assert_int_equal(util_uuid4(u), 0);
        assert_int_equal(strlen(u), 36);
        assert_int_equal(u[14], '4');
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_duration),
                cmocka_unit_test(test_time),
                cmocka_unit_test(test_buf_cap),
                cmocka_unit_test(test_atomic_write),
                cmocka_unit_test(test_loopback),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
