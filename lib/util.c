/* SPDX-License-Identifier: MIT */
#include "util.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void util_buf_init(struct util_buf *b, size_t max) {
        *b = (struct util_buf) { .max = max };
}

static int buf_reserve(struct util_buf *b, size_t extra) {
        if (extra > b->max || b->len > b->max - extra)
                return -E2BIG;
        size_t need = b->len + extra + 1;
        if (need <= b->cap)
                return 0;
        size_t cap = b->cap ? b->cap : 256;
        while (cap < need)
                cap = cap > SIZE_MAX / 2 ? need : cap * 2;
        char *p = realloc(b->data, cap);
        if (!p)
                return -ENOMEM;
        b->data = p;
        b->cap = cap;
        return 0;
}

int util_buf_append(struct util_buf *b, const void *data, size_t len) {
        int r = buf_reserve(b, len);
        if (r < 0)
                return r;
        if (len)
                memcpy(b->data + b->len, data, len);
        b->len += len;
        b->data[b->len] = '\0';
        return 0;
}

int util_buf_puts(struct util_buf *b, const char *s) {
        return util_buf_append(b, s, strlen(s));
}

int util_buf_printf(struct util_buf *b, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        if (n < 0)
                return -EINVAL;
        int r = buf_reserve(b, (size_t) n);
        if (r < 0)
                return r;
        va_start(ap, fmt);
        vsnprintf(b->data + b->len, (size_t) n + 1, fmt, ap);
        va_end(ap);
        b->len += (size_t) n;
        return 0;
}

char *util_buf_steal(struct util_buf *b) {
        char *p = b->data;
        if (!p)
                p = strdup("");
        b->data = NULL;
        b->len = b->cap = 0;
        return p;
}

void util_buf_free(struct util_buf *b) {
        if (!b)
                return;
        free(b->data);
        b->data = NULL;
        b->len = b->cap = 0;
}

static const char b64chars[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int util_buf_append_base64(struct util_buf *b, const void *data, size_t n) {
        const unsigned char *p = data;
        char out[4];
        int r;
        for (size_t i = 0; i < n; i += 3) {
                unsigned v = (unsigned) p[i] << 16;
                if (i + 1 < n)
                        v |= (unsigned) p[i + 1] << 8;
                if (i + 2 < n)
                        v |= p[i + 2];
                out[0] = b64chars[(v >> 18) & 63];
                out[1] = b64chars[(v >> 12) & 63];
                out[2] = i + 1 < n ? b64chars[(v >> 6) & 63] : '=';
                out[3] = i + 2 < n ? b64chars[v & 63] : '=';
                r = util_buf_append(b, out, 4);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int b64_value(char c) {
        const char *p = c ? strchr(b64chars, c) : NULL;
        return p ? (int) (p - b64chars) : -1;
}

int util_base64_decode(const char *s, size_t len, char **ret, size_t *ret_len) {
        if (len % 4 != 0)
                return -EINVAL;
        unsigned char *out = malloc(len / 4 * 3 + 1);
        if (!out)
                return -ENOMEM;
        size_t o = 0;
        for (size_t i = 0; i < len; i += 4) {
                int v[4];
                size_t pad = 0;
                for (size_t k = 0; k < 4; k++) {
                        bool is_pad = s[i + k] == '=' && i + 4 == len && k >= 2;
                        if (pad && !is_pad)
                                goto bad;
                        v[k] = is_pad ? 0 : b64_value(s[i + k]);
                        pad += is_pad;
                        if (v[k] < 0)
                                goto bad;
                }
                unsigned x = (unsigned) v[0] << 18 | (unsigned) v[1] << 12 | (unsigned) v[2] << 6 | (unsigned) v[3];
                out[o++] = (unsigned char) (x >> 16);
                if (pad < 2)
                        out[o++] = (unsigned char) (x >> 8);
                if (pad < 1)
                        out[o++] = (unsigned char) x;
        }
        out[o] = '\0';
        *ret = (char *) out;
        if (ret_len)
                *ret_len = o;
        return 0;
bad:
        free(out);
        return -EINVAL;
}

int util_parse_duration(const char *s, int64_t *ret_sec) {
        static const struct { const char *unit; int64_t ms; } units[] = {
                { "ms", 1 }, { "msec", 1 },
                { "s", 1000 }, { "sec", 1000 }, { "second", 1000 }, { "seconds", 1000 },
                { "m", 60000 }, { "min", 60000 }, { "minute", 60000 }, { "minutes", 60000 },
                { "h", 3600000 }, { "hour", 3600000 }, { "hours", 3600000 },
                { "d", 86400000 }, { "day", 86400000 }, { "days", 86400000 },
                { "w", 604800000 }, { "week", 604800000 }, { "weeks", 604800000 },
        };
        int64_t total_ms = 0;
        const char *p = s;
        bool any = false;

        if (!s)
                return -EINVAL;
        while (isspace((unsigned char) *p))
                p++;
        while (*p) {
                if (!isdigit((unsigned char) *p))
                        return -EINVAL;
                errno = 0;
                char *end;
                unsigned long long v = strtoull(p, &end, 10);
                if (errno == ERANGE || v > INT64_MAX / 604800000)
                        return -ERANGE;
                p = end;
                while (*p == ' ')
                        p++;
                const char *u = p;
                while (isalpha((unsigned char) *p))
                        p++;
                size_t ul = (size_t) (p - u);
                int64_t mult = 0;
                if (ul == 0)
                        mult = 1000;
                else
                        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
                                if (strlen(units[i].unit) == ul && strncmp(units[i].unit, u, ul) == 0) {
                                        mult = units[i].ms;
                                        break;
                                }
                if (mult == 0)
                        return -EINVAL;
                int64_t add = (int64_t) v * mult;
                if (total_ms > INT64_MAX - add)
                        return -ERANGE;
                total_ms += add;
                any = true;
                while (isspace((unsigned char) *p))
                        p++;
                if (ul == 0 && *p)  /* a bare number must stand alone */
                        return -EINVAL;
        }
        if (!any)
                return -EINVAL;
        *ret_sec = (total_ms + 999) / 1000;
        return 0;
}

void util_format_duration(int64_t sec, char *buf, size_t n) {
        static const struct { const char *unit; int64_t s; } units[] = {
                { "d", 86400 }, { "h", 3600 }, { "min", 60 }, { "s", 1 },
        };
        size_t off = 0;
        if (n == 0)
                return;
        buf[0] = '\0';
        if (sec <= 0) {
                snprintf(buf, n, "0s");
                return;
        }
        for (size_t i = 0; i < 4 && off < n; i++) {
                int64_t q = sec / units[i].s;
                if (q == 0)
                        continue;
                int w = snprintf(buf + off, n - off, "%lld%s", (long long) q, units[i].unit);
                if (w < 0)
                        return;
                off += (size_t) w;
                sec -= q * units[i].s;
        }
}

static int parse_digits(const char **p, int n, int *ret) {
        int v = 0;
        for (int i = 0; i < n; i++) {
                if (!isdigit((unsigned char) (*p)[i]))
                        return -EINVAL;
                v = v * 10 + ((*p)[i] - '0');
        }
        *p += n;
        *ret = v;
        return 0;
}

int util_parse_time(const char *s, int64_t *ret_sec) {
        int Y, M, D, h = 0, m = 0, sec = 0;
        const char *p = s;

        if (!s)
                return -EINVAL;
        if (parse_digits(&p, 4, &Y) < 0 || *p++ != '-' || parse_digits(&p, 2, &M) < 0 ||
            *p++ != '-' || parse_digits(&p, 2, &D) < 0)
                return -EINVAL;
        if (*p == 'T' || *p == 't' || *p == ' ') {
                p++;
                if (parse_digits(&p, 2, &h) < 0 || *p++ != ':' || parse_digits(&p, 2, &m) < 0)
                        return -EINVAL;
                if (*p == ':') {
                        p++;
                        if (parse_digits(&p, 2, &sec) < 0)
                                return -EINVAL;
                        if (*p == '.' || *p == ',') {
                                p++;
                                if (!isdigit((unsigned char) *p))
                                        return -EINVAL;
                                for (int i = 0; isdigit((unsigned char) *p); i++, p++)
                                        if (i >= 12)
                                                return -EINVAL;
                        }
                }
        }
        int off = 0;
        if (*p == 'Z' || *p == 'z')
                p++;
        else if (*p == '+' || *p == '-') {
                int sign = *p++ == '-' ? -1 : 1, oh, om = 0;
                if (parse_digits(&p, 2, &oh) < 0)
                        return -EINVAL;
                if (*p == ':')
                        p++;
                if (*p && parse_digits(&p, 2, &om) < 0)
                        return -EINVAL;
                if (oh > 23 || om > 59)
                        return -EINVAL;
                off = sign * (oh * 3600 + om * 60);
        }
        if (*p)
                return -EINVAL;
        if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60 || Y < 1970)
                return -EINVAL;
        struct tm tm = { .tm_year = Y - 1900, .tm_mon = M - 1, .tm_mday = D,
                         .tm_hour = h, .tm_min = m, .tm_sec = sec };
        time_t t = timegm(&tm);
        if (t == (time_t) -1)
                return -EINVAL;
        *ret_sec = (int64_t) t - off;
        return 0;
}

char *util_format_time(int64_t sec, char buf[static UTIL_TIME_MAX]) {
        time_t t = (time_t) sec;
        struct tm tm;
        if (!gmtime_r(&t, &tm) || strftime(buf, UTIL_TIME_MAX, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
                snprintf(buf, UTIL_TIME_MAX, "invalid");
        return buf;
}

int util_read_file(const char *path, size_t max, char **ret, size_t *ret_len) {
        struct util_buf b;
        char chunk[16384];
        int r = 0;
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        util_buf_init(&b, max);
        for (;;) {
                ssize_t n = read(fd, chunk, sizeof(chunk));
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        break;
                }
                if (n == 0)
                        break;
                r = util_buf_append(&b, chunk, (size_t) n);
                if (r < 0) {
                        if (r == -E2BIG)
                                r = -EFBIG;
                        break;
                }
        }
        close(fd);
        explicit_bzero(chunk, sizeof(chunk));   /* it may have held a secret */
        if (r < 0) {
                util_buf_free(&b);
                return r;
        }
        if (ret_len)
                *ret_len = b.len;
        *ret = util_buf_steal(&b);
        return *ret ? 0 : -ENOMEM;
}

size_t util_remove_stale_temps(const char *dir) {
        DIR *d = opendir(dir);
        struct dirent *de;
        size_t n = 0;

        if (!d)
                return 0;
        while ((de = readdir(d))) {
                const char *t = strstr(de->d_name, ".tmp.");
                char *end = NULL;
                if (!t || t == de->d_name)
                        continue;
                errno = 0;
                long pid = strtol(t + 5, &end, 10);
                if (errno || !end || *end || end == t + 5 || pid <= 0 || pid == (long) getpid())
                        continue;
                /* still running (or not ours to ask): a write may be under way */
                if (kill((pid_t) pid, 0) == 0 || errno != ESRCH)
                        continue;
                if (unlinkat(dirfd(d), de->d_name, 0) == 0)
                        n++;
        }
        closedir(d);
        return n;
}

int util_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode) {
        char *tmp = NULL, *dcopy = NULL;
        int fd = -1, dfd = -1, r;
        const char *p = data;

        if (asprintf(&tmp, "%s.tmp.%ld", path, (long) getpid()) < 0)
                return -ENOMEM;
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd < 0) {
                r = -errno;
                goto out;
        }
        while (len > 0) {
                ssize_t n = write(fd, p, len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        goto fail;
                }
                p += n;
                len -= (size_t) n;
        }
        if (fchmod(fd, mode) < 0 || fsync(fd) < 0) {
                r = -errno;
                goto fail;
        }
        if (close(fd) < 0) {
                fd = -1;
                r = -errno;
                goto fail;
        }
        fd = -1;
        if (rename(tmp, path) < 0) {
                r = -errno;
                goto fail;
        }
        dcopy = strdup(path);
        if (!dcopy) {
                r = -ENOMEM;
                goto out;
        }
        dfd = open(dirname(dcopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0 || fsync(dfd) < 0) {
                r = -errno;
                goto out;
        }
        r = 0;
        goto out;
fail:
        (void) unlink(tmp);
out:
        if (fd >= 0)
                close(fd);
        if (dfd >= 0)
                close(dfd);
        free(dcopy);
        free(tmp);
        return r;
}

int util_read_secret(const char *path, char **ret, bool *ret_world_readable) {
        struct stat st;
        char *s = NULL;
        size_t len = 0;
        int r;

        if (stat(path, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EINVAL;
        r = util_read_file(path, 65536, &s, &len);
        if (r < 0)
                return r;
        /* What editors add around a pasted secret is not part of it: a
         * UTF-8 byte order mark at the start, line ends and blanks at the
         * end.  Anything else unprintable is refused, not guessed at. */
        size_t start = len >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0 ? 3 : 0;
        while (len > start && strchr(" \t\r\n", s[len - 1]))
                s[--len] = '\0';
        if (start) {
                memmove(s, s + start, len - start + 1);
                len -= start;
                explicit_bzero(s + len + 1, start);
        }
        if (len == 0 || strlen(s) != len || util_has_ctl(s, false) || strstr(s, "\xef\xbb\xbf")) {
                explicit_bzero(s, len);
                free(s);
                return -EBADMSG;
        }
        if (ret_world_readable)
                *ret_world_readable = (st.st_mode & 0044) != 0;
        *ret = s;
        return 0;
}

bool util_host_is_loopback(const char *host) {
        if (!host)
                return false;
        if (util_streq_ci(host, "localhost") || strcmp(host, "::1") == 0 ||
            strcmp(host, "[::1]") == 0)
                return true;
        if (strncmp(host, "127.", 4) == 0) {
                int dots = 0;
                for (const char *p = host + 4; *p; p++) {
                        if (*p == '.')
                                dots++;
                        else if (!isdigit((unsigned char) *p))
                                return false;
                }
                return dots == 2;
        }
        return false;
}

char *util_ascii_lower(char *s) {
        for (char *p = s; p && *p; p++)
                *p = (char) tolower((unsigned char) *p);
        return s;
}

bool util_streq_ci(const char *a, const char *b) {
        if (!a || !b)
                return a == b;
        return strcasecmp(a, b) == 0;
}

bool util_has_ctl(const char *s, bool allow_tab) {
        for (const unsigned char *p = (const unsigned char *) s; p && *p; p++)
                if ((*p < 0x20 && !(allow_tab && *p == '\t')) || *p == 0x7f)
                        return true;
        return false;
}

char *util_strdup0(const char *s) {
        return s ? strdup(s) : NULL;
}

int util_random_bytes(void *buf, size_t n) {
        unsigned char *p = buf;
        while (n > 0) {
                ssize_t k = getrandom(p, n, 0);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

int util_uuid4(char buf[static 37]) {
        unsigned char b[16];
        int r = util_random_bytes(b, sizeof(b));
        if (r < 0)
                return r;
        b[6] = (unsigned char) ((b[6] & 0x0f) | 0x40);
        b[8] = (unsigned char) ((b[8] & 0x3f) | 0x80);
        snprintf(buf, 37,
                 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11],
                 b[12], b[13], b[14], b[15]);
        return 0;
}

uint64_t util_now_mono_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
}

int64_t util_now_wall(void) {
        return (int64_t) time(NULL);
}
