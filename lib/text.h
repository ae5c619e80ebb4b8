/* SPDX-License-Identifier: MIT */
/*
 * text: partnerd's one home for text from outside.
 *
 *  - UTF-8: the one decoder, validation, cutting on a character boundary,
 *    the Unicode format characters (bidi overrides, zero-width) that never
 *    reach a mail, a log or the state.
 *  - Cleaning: one function with the policies a value needs before it goes
 *    into a mail header or body, an error line, a log line or a one-line
 *    echo of a server reply.
 *  - Addresses: the addr-spec ("local@domain", dot-atom local part, host
 *    name domain) and host name rules that config and mail share.
 *
 * Pure: no I/O, no globals, no logging.  Secrets are the caller's business
 * (lib/secret), so this module has no dependencies beyond lib/util.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- UTF-8 -------------------------------------------------------------- */

/* The code point of the valid, shortest-form sequence at s (at most n
 * bytes; on a NUL-terminated string n may be 4 whatever is left, the bytes
 * are checked in order) and its length 1..4.  0 when s does not start a
 * valid sequence (stray continuation, overlong, surrogate, beyond
 * U+10FFFF, cut short). */
size_t text_utf8_decode(const char *s, size_t n, uint32_t *ret_cp);
/* Every byte of s[0..n) belongs to a valid sequence (NUL is one: a byte). */
bool text_utf8_valid(const char *s, size_t n);
/* The length of at most max bytes of s (len bytes), cut back to the start
 * of a UTF-8 sequence. */
size_t text_utf8_clip(const char *s, size_t len, size_t max);

/* Unicode format characters (category Cf) that text from the network
 * must not carry into a mail or a log: the bidi controls (U+202A..U+202E,
 * U+2066..U+2069, U+200E, U+200F, U+061C), zero-width and invisible ones
 * (U+200B..U+200D, U+2060..U+2064, U+FEFF, U+180E, U+00AD), the other
 * Cf ranges (Arabic number signs, interlinear annotation, tags). */
bool text_is_format_char(uint32_t cp);
/* Removes them from s in place (bytes that are not valid UTF-8 stay as they
 * are); returns s.  NULL-safe. */
char *text_strip_format_chars(char *s);

/* ---- cleaning ------------------------------------------------------------ */

/* text_clean() policies.  Without a flag: one line for a mail (a header
 * value, a placeholder): CR, LF and TAB become one space (not after a
 * space); other controls, C1 controls and format characters are dropped.
 * TEXT_FOLD: an error line from a server: every control and blank becomes
 * a space, runs fold to one, none at either end; C1 controls count as
 * invalid bytes, format characters stay (the log drops them); a cut text
 * ends in "...". */
enum {
        TEXT_FOLD = 1 << 0,
};

/* A copy of s[0..n) (pass strlen(s) for a string) that is valid UTF-8
 * (every invalid byte becomes U+FFFD) without control characters, cleaned
 * as flags say, at most max bytes (cut on a character boundary; TEXT_FOLD
 * adds "..." beyond max).  NULL only on ENOMEM. */
char *text_clean(const char *s, size_t n, unsigned flags, size_t max);

/* A log line in place: every C0 control and DEL becomes '?' (a value from
 * outside cannot forge a second line), format characters are dropped. */
char *text_mask_controls(char *s);

/* A printable ASCII one-line copy of src[0..len) into dst (size bytes, NUL
 * terminated): stops at the first CR or LF, every other byte outside
 * 0x20..0x7e becomes '?'.  For the replies of servers and tools. */
void text_ascii_line(char *dst, size_t size, const char *src, size_t len);

/* ---- addresses ----------------------------------------------------------- */

#define TEXT_ADDR_SPEC_MAX 254   /* RFC 5321 forward-path limit */

/* The RFC 5322 atext characters: a dot-atom is made of these and dots. */
bool text_is_atext(char ch);
/* One host name: labels of [A-Za-z0-9-] separated by dots, no label empty,
 * starting or ending with '-', or longer than 63, at most 253 in all. */
bool text_hostname_valid(const char *s, size_t n);
/* addr-spec "local@domain": one '@', a dot-atom local part of 1..64 bytes,
 * a host name domain, at most TEXT_ADDR_SPEC_MAX bytes in all. */
bool text_addr_spec_valid(const char *s, size_t n);
