/* SPDX-License-Identifier: MIT */
/*
 * util: small helpers shared by every module: bounded buffers, durations,
 * timestamps, file I/O (atomic writes), host checks.  No network, no logging.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define UTIL_SEC_PER_MIN  INT64_C(60)
#define UTIL_SEC_PER_HOUR INT64_C(3600)
#define UTIL_SEC_PER_DAY  INT64_C(86400)

/* A growable byte buffer with a hard cap ("too big" limit set at init, as
 * curl's dynbuf).  data is always NUL-terminated when non-NULL. */
struct util_buf {
        char *data;
        size_t len;
        size_t cap;
        size_t max;     /* appends beyond this fail with -E2BIG */
};

void util_buf_init(struct util_buf *b, size_t max);
int util_buf_append(struct util_buf *b, const void *data, size_t len);
int util_buf_puts(struct util_buf *b, const char *s);
int util_buf_printf(struct util_buf *b, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
/* Appends the standard base64 (RFC 4648, padded, no line breaks) of p. */
int util_buf_append_base64(struct util_buf *b, const void *p, size_t n);
/* Decodes standard padded base64 into a malloc'd, NUL-terminated buffer.
 * -EINVAL on any other character or bad padding. */
int util_base64_decode(const char *s, size_t len, char **ret, size_t *ret_len);
/* Hands the data to the caller (never NULL on success: "" for empty). */
char *util_buf_steal(struct util_buf *b);
void util_buf_free(struct util_buf *b);

/* "30s", "5min", "24h", "2d", "1w", "250ms" (rounded up to 1s), bare
 * seconds.  Combinations such as "1h30min" are accepted.  -EINVAL on junk,
 * -ERANGE on overflow. */
int util_parse_duration(const char *s, int64_t *ret_sec);
/* Formats a duration compactly: "2d", "1h30min", "45s". */
void util_format_duration(int64_t sec, char *buf, size_t n);

/* Lenient ISO 8601 / RFC 3339 in UTC: "2026-08-01T09:20:02.517Z", 7
 * fractional digits, no fraction, no "Z" (taken as UTC), "+00:00" style
 * offsets.  Returns seconds since the epoch (fraction dropped). */
int util_parse_time(const char *s, int64_t *ret_sec);
/* "2026-08-01T09:20:02Z"; buf must hold UTIL_TIME_MAX bytes. */
#define UTIL_TIME_MAX 32
char *util_format_time(int64_t sec, char buf[static UTIL_TIME_MAX]);

/* Reads a whole file of at most max bytes; -EFBIG if larger.  The result
 * is NUL-terminated. */
int util_read_file(const char *path, size_t max, char **ret, size_t *ret_len);
/* Writes path atomically: temp file in the same directory, fsync, rename,
 * fsync of the directory.  On failure nothing at path changes and no temp
 * file is left behind. */
int util_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode);
/* Removes the temp files ("NAME.tmp.PID") that util_write_file_atomic left
 * in dir when its process was killed mid-write: only those whose PID no
 * longer exists.  Returns how many were removed (best effort, never fails). */
size_t util_remove_stale_temps(const char *dir);

/* Reads a secret file (at most 64 KiB).  A UTF-8 byte order mark at the
 * start and CR, LF, blanks at the end are stripped; -EBADMSG when it is
 * then empty or holds a control character or a byte order mark.
 * *ret_world_readable is set when group/other may read it. */
int util_read_secret(const char *path, char **ret, bool *ret_world_readable);

/* true for "localhost", 127.0.0.0/8, "::1", "[::1]". */
bool util_host_is_loopback(const char *host);

/* Lower-case ASCII in place; returns s. */
char *util_ascii_lower(char *s);
bool util_streq_ci(const char *a, const char *b);
/* true if s contains a byte < 0x20 (other than TAB when allow_tab) or 0x7f. */
bool util_has_ctl(const char *s, bool allow_tab);
/* free() then NULL; accepts NULL. */
#define util_freep(p) do { free(*(p)); *(p) = NULL; } while (0)
char *util_strdup0(const char *s);   /* NULL-safe strdup */

/* UTF-8, format characters, cleaning and address rules: lib/text.h. */

/* Random 128-bit identifiers (getrandom). */
int util_random_bytes(void *buf, size_t n);
/* "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx"; buf of at least 37 bytes. */
int util_uuid4(char buf[static 37]);

/* Monotonic clock in milliseconds. */
uint64_t util_now_mono_ms(void);
/* Wall clock in seconds. */
int64_t util_now_wall(void);
