/* SPDX-License-Identifier: MIT */
/* test_text: lib/text.c, the one home of UTF-8, cleaning and address rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "text.h"

/* One decoder: strict, stops at a NUL, refuses overlongs and surrogates. */
static void test_utf8_decode(void **unused) {
        uint32_t cp = 0;
        assert_int_equal(text_utf8_decode("A", 4, &cp), 1);
        assert_int_equal(cp, 'A');
        assert_int_equal(text_utf8_decode("\xc3\xa9", 4, &cp), 2);
        assert_int_equal(cp, 0xe9);
        assert_int_equal(text_utf8_decode("\xe2\x80\xae", 4, &cp), 3);
        assert_int_equal(cp, 0x202e);
        assert_int_equal(text_utf8_decode("\xf0\x9f\x98\x80", 4, &cp), 4);
        assert_int_equal(cp, 0x1f600);
        assert_int_equal(text_utf8_decode("\xc0\xaf", 4, NULL), 0);        /* overlong */
        assert_int_equal(text_utf8_decode("\xed\xa0\x80", 4, NULL), 0);    /* surrogate */
        assert_int_equal(text_utf8_decode("\xf4\x90\x80\x80", 4, NULL), 0); /* > U+10FFFF */
        assert_int_equal(text_utf8_decode("\xe2\x80", 4, NULL), 0);        /* NUL inside */
        assert_int_equal(text_utf8_decode("\xe2\x80\xae", 2, NULL), 0);    /* cut short */
        assert_int_equal(text_utf8_decode("\x80", 4, NULL), 0);
        assert_int_equal(text_utf8_decode("\xff", 4, NULL), 0);
}

static void test_strip_format_chars(void **unused) {
        static const struct { const char *in, *out; } cases[] = {
                { "Contoso\xe2\x80\xae" "dtL\xe2\x80\xac", "ContosodtL" },        /* RLO .. PDF */
                { "\xe2\x81\xa6" "Fabrikam\xe2\x81\xa9", "Fabrikam" },           /* LRI .. PDI */
                { "Ad\xe2\x80\x8b" "atum\xef\xbb\xbf", "Adatum" },               /* ZWSP, BOM */
                { "a\xe2\x80\x8e" "b\xe2\x80\x8f" "c\xd8\x9c" "d\xe1\xa0\x8e" "e", "abcde" },
                { "x\xe2\x81\xa0y\xe2\x81\xa4z\xc2\xad!", "xyz!" },
                { "Caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80", "Caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80" },
                { "bad \xff byte \xe2\x80\xae kept", "bad \xff byte  kept" },
                { "", "" },
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char *s = strdup(cases[i].in);
                assert_non_null(s);
                assert_string_equal(text_strip_format_chars(s), cases[i].out);
                free(s);
        }
        assert_null(text_strip_format_chars(NULL));
        assert_true(text_is_format_char(0x202a));
        assert_true(text_is_format_char(0x2069));
        assert_true(text_is_format_char(0xe0041));
        assert_false(text_is_format_char(0x200a));   /* hair space: a space, not Cf */
        assert_false(text_is_format_char('A'));
}

static void test_utf8_valid_and_clip(void **unused) {
        assert_true(text_utf8_valid("", 0));
        assert_true(text_utf8_valid("caf\xc3\xa9", 5));
        assert_false(text_utf8_valid("caf\xc3\xa9", 4));          /* cut inside "é" */
        assert_false(text_utf8_valid("a\xc0\xafz", 4));           /* overlong */
        assert_false(text_utf8_valid("\xed\xa0\x80", 3));         /* surrogate */
        assert_true(text_utf8_valid("a\0b", 3));                  /* NUL is a byte like any */

        /* never cut inside a sequence */
        assert_int_equal(text_utf8_clip("caf\xc3\xa9!", 6, 10), 6);
        assert_int_equal(text_utf8_clip("caf\xc3\xa9!", 6, 5), 5);
        assert_int_equal(text_utf8_clip("caf\xc3\xa9!", 6, 4), 3);
        assert_int_equal(text_utf8_clip("\xf0\x9f\x98\x80", 4, 3), 0);
}

static char *clean(const char *s, unsigned flags, size_t max) {
        char *c = text_clean(s, strlen(s), flags, max);
        assert_non_null(c);
        return c;
}

#define assert_clean(in, flags, max, want) do {                  \
                char *c_ = clean((in), (flags), (max));          \
                assert_string_equal(c_, (want));                 \
                free(c_);                                        \
        } while (0)

/* One line for a mail: CR, LF, TAB become one space, other controls, C1
 * and format characters go, invalid bytes show as U+FFFD. */
static void test_clean_line(void **unused) {
        assert_clean("", 0, 100, "");
        assert_clean("Contoso Ltd", 0, 100, "Contoso Ltd");
        assert_clean("a\r\nb", 0, 100, "a b");
        assert_clean("a \nb", 0, 100, "a b");              /* no space after a space */
        assert_clean("a\n b", 0, 100, "a  b");             /* written spaces stay */
        assert_clean("\ta", 0, 100, " a");
        assert_clean("a\x07" "b\x7f" "c\x1b[31m", 0, 100, "abc[31m");
        assert_clean("a\xc2\x85" "b", 0, 100, "ab");          /* C1 NEL */
        assert_clean("Pay\xe2\x80\xae" "lapyap", 0, 100, "Paylapyap");  /* RLO */
        assert_clean("x\xffy\xc3", 0, 100, "x\xef\xbf\xbdy\xef\xbf\xbd");
        /* at most max bytes, cut before a character that does not fit */
        assert_clean("caf\xc3\xa9", 0, 4, "caf");
        assert_clean("caf\xc3\xa9", 0, 5, "caf\xc3\xa9");
        assert_clean("abcdef", 0, 3, "abc");
        /* n bytes, not the string: an embedded NUL ends nothing */
        char *c = text_clean("ab\0cd", 5, 0, 100);
        assert_non_null(c);
        assert_string_equal(c, "abcd");
        free(c);
}

/* An error line from a server: blanks and controls fold to one space, none
 * at the ends, C1 counts as invalid, "..." marks a cut. */
static void test_clean_fold(void **unused) {
        assert_clean("  <html>\r\n<body>Bad\tgateway</body>\r\n</html>\r\n", TEXT_FOLD, 300,
                     "<html> <body>Bad gateway</body> </html>");
        assert_clean("a\x07" "b\nc\x1b[31m", TEXT_FOLD, 300, "a b c [31m");
        assert_clean("a\xc2\x85" "b", TEXT_FOLD, 300, "a\xef\xbf\xbd\xef\xbf\xbd" "b");
        assert_clean("x\xe2\x80\x8by", TEXT_FOLD, 300, "x\xe2\x80\x8by");   /* the log drops it */
        assert_clean("abcdef", TEXT_FOLD, 3, "abc...");
        assert_clean("ab cdef", TEXT_FOLD, 3, "ab...");                   /* no space before ... */
        assert_clean("\xc3\xa9\xc3\xa9", TEXT_FOLD, 3, "\xc3\xa9...");
        assert_clean("abc", TEXT_FOLD, 3, "abc");
        char *c = text_clean("a\0b", 3, TEXT_FOLD, 300);
        assert_non_null(c);
        assert_string_equal(c, "a b");
        free(c);
}

static void test_mask_and_ascii_line(void **unused) {
        char s[] = "line\nforged\r\x1b[0m\xe2\x80\xae" "end\xc3\xa9";
        assert_string_equal(text_mask_controls(s), "line?forged??[0mend\xc3\xa9");

        char out[16];
        text_ascii_line(out, sizeof(out), "250 OK\r\nmore", 12);
        assert_string_equal(out, "250 OK");
        text_ascii_line(out, sizeof(out), "5\x01" "5\xc3\xa9" "4", 6);
        assert_string_equal(out, "5?5??4");
        text_ascii_line(out, 6, "0123456789", 10);       /* bounded by the buffer */
        assert_string_equal(out, "01234");
        text_ascii_line(out, sizeof(out), "", 0);
        assert_string_equal(out, "");
}

static bool spec(const char *s) {
        return text_addr_spec_valid(s, strlen(s));
}

static void test_addresses(void **unused) {
        assert_true(spec("ops@example.com"));
        assert_true(spec("first.last+tag@sub.example-co.com"));
        assert_true(spec("a!#$%&'*+-/=?^_`{|}~@x.y"));
        assert_true(spec("a@localhost"));
        assert_false(spec(""));
        assert_false(spec("example.com"));
        assert_false(spec("@example.com"));
        assert_false(spec("a@"));
        assert_false(spec("a@b@example.com"));
        assert_false(spec(".a@example.com"));
        assert_false(spec("a.@example.com"));
        assert_false(spec("a..b@example.com"));
        assert_false(spec("a b@example.com"));
        assert_false(spec("\"a\"@example.com"));
        assert_false(spec("a@-example.com"));
        assert_false(spec("a@example-.com"));
        assert_false(spec("a@example..com"));
        assert_false(spec("a@.example.com"));
        assert_false(spec("a@example.com."));
        assert_false(spec("a@ex_ample.com"));
        assert_false(spec("a@exampl\xc3\xa9.com"));
        /* only the n bytes given count */
        assert_true(text_addr_spec_valid("a@b.c>", 5));

        char local[80], label[80], big[300];
        memset(local, 'l', 64);
        snprintf(local + 64, sizeof(local) - 64, "@x.y");
        assert_true(spec(local));
        memset(local, 'l', 65);
        snprintf(local + 65, sizeof(local) - 65, "@x.y");
        assert_false(spec(local));
        memset(label, 'd', 63);
        snprintf(label + 63, sizeof(label) - 63, ".com");
        assert_true(text_hostname_valid(label, strlen(label)));
        label[63] = 'd';
        assert_false(text_hostname_valid(label, strlen(label)));   /* a 64-byte label */
        /* 254 bytes in all at most */
        memset(big, 0, sizeof(big));
        strcpy(big, "a@");
        for (size_t i = 2; i < 254; i++)
                big[i] = (i % 50 == 0) ? '.' : 'b';
        assert_true(spec(big));
        big[254] = 'b';
        assert_false(spec(big));

        assert_true(text_is_atext('a'));
        assert_true(text_is_atext('~'));
        assert_false(text_is_atext('.'));
        assert_false(text_is_atext('@'));
        assert_false(text_is_atext('\0'));
        assert_false(text_hostname_valid("", 0));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_utf8_decode),
                cmocka_unit_test(test_strip_format_chars),
                cmocka_unit_test(test_utf8_valid_and_clip),
                cmocka_unit_test(test_clean_line),
                cmocka_unit_test(test_clean_fold),
                cmocka_unit_test(test_mask_and_ascii_line),
                cmocka_unit_test(test_addresses),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
