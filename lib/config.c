/* SPDX-License-Identifier: MIT */
/*
 * config: partnerd.conf(5) loader.
 *
 * The file is read whole (capped), split into lines, and every line is
 * checked (UTF-8, control characters, length) before it is parsed.  Keys
 * are described by one table (section, key, kind, field offset, range);
 * each value is parsed straight into struct cfg, over the defaults.  After
 * the last line come the cross-key checks (required keys, transport needs
 * smtp_url, deadline_warning < deadline, ...) and the secrets.  Every
 * problem is collected; nothing stops at the first error.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>

#include "apiutil.h"
#include "config.h"
#include "secret.h"
#include "text.h"
#include "url.h"
#include "util.h"

#define CFG_FILE_MAX     (1024 * 1024)   /* whole file */
#define CFG_LINE_MAX     4096            /* one line, without its line end */
#define CFG_LIST_MAX     256             /* items in one list value */
#define CFG_QUOTE_MAX    64              /* value bytes echoed in an error */

/* Defaults (documented in config.h and partnerd.conf(5)). */
#define DEF_LOGIN_URL       "https://login.microsoftonline.com"
#define DEF_API_URL         "https://api.partnercenter.microsoft.com/v1"
#define DEF_GRAPH_URL       "https://graph.microsoft.com/v1.0"
#define DEF_PORTAL_URL      "https://portal.platform.softwareone.com"
#define DEF_SENDMAIL        "/usr/sbin/sendmail"
#define DEF_STATE_DIR       "/var/lib/partnerd"
#define DEF_POLL_INTERVAL   (5 * UTIL_SEC_PER_MIN)
#define DEF_REMINDER        (24 * UTIL_SEC_PER_HOUR)
#define DEF_MAX_REMINDERS   5
/* [ASSUMED] the Marketplace cancels a Querying order after 15 days; the
 * deadline is counted from audit.querying.at.  One place to change it. */
#define DEF_DEADLINE        (15 * UTIL_SEC_PER_DAY)
#define DEF_DEADLINE_WARN   (3 * UTIL_SEC_PER_DAY)
#define DEF_RETENTION       (30 * UTIL_SEC_PER_DAY)
#define DEF_MAX_PARALLEL    16
#define DEF_HTTP_TIMEOUT    60
#define DEF_CONNECT_TIMEOUT 10
#define DEF_MAX_RESPONSE    ((size_t) 16 * 1024 * 1024)
/* About 1,400 orders of the largest size the parser keeps, or tens of
 * thousands of ordinary ones. */
#define DEF_MAX_ORDERS_BYTES ((size_t) 64 * 1024 * 1024)
#define DEF_CLUSTER_PREFIX  "/partnerd/"
#define DEF_LEASE_TTL       10
static const int64_t def_check_schedule[] = { 60, 120, 300, 600, 900 };

enum kind {
        K_URL_HTTP,      /* https://, or http:// to loopback; one trailing '/' stripped */
        K_URL_SMTP,      /* smtps:// or smtp:// */
        K_STRING,        /* printable, no control characters, <= 256 bytes */
        K_WORD,          /* printable ASCII without spaces, <= 256 bytes (ids) */
        K_HOST,          /* a host name or GUID (goes into URL paths) */
        K_PATH,          /* file system path; relative resolves next to the config */
        K_ABS_PATH,      /* must be absolute */
        K_SECRET_PATH,   /* relative resolves in $CREDENTIALS_DIRECTORY or next to the config */
        K_DURATION,      /* int64_t seconds, range min..max */
        K_DURATION_LIST, /* int64_t * + size_t count */
        K_INT,           /* int, range min..max */
        K_SIZE,          /* size_t bytes, range min..max */
        K_BOOL,
        K_ADDRESS,       /* one mail address */
        K_ADDRESS_LIST,  /* char ** + size_t count */
        K_PRODUCT_LIST,  /* char ** + size_t count */
        K_HOST_LIST,     /* char ** + size_t count, lower-cased */
        K_TRANSPORT,
        K_TOKEN_ENDPOINT,
        K_GUID_LIST,     /* char ** + size_t count, lower-cased GUIDs */
};

enum {
        F_REQUIRED = 1 << 0,
        F_SHARED   = 1 << 1,   /* [microsoft] only: one value for every account */
        F_ACCOUNT  = 1 << 2,   /* required in every [microsoft.NAME] section */
};

struct key_def {
        const char *section;
        const char *key;
        enum kind kind;
        size_t off;       /* of the value in struct cfg */
        size_t off_n;     /* of the count for lists */
        int64_t min, max; /* durations, ints, sizes */
        unsigned flags;
};

#define O(f) offsetof(struct cfg, f)
#define MIN_ (UTIL_SEC_PER_MIN)
#define HOUR_ (UTIL_SEC_PER_HOUR)
#define DAY_ (UTIL_SEC_PER_DAY)

static const struct key_def keys[] = {
        { "marketplace", "url",            K_URL_HTTP,     O(marketplace.url), 0, 0, 0, F_REQUIRED },
        { "marketplace", "token_file",     K_SECRET_PATH,  O(marketplace.token_file), 0, 0, 0, F_REQUIRED },
        { "marketplace", "poll_interval",  K_DURATION,     O(marketplace.poll_interval), 0, 10, DAY_, 0 },
        { "marketplace", "products",       K_PRODUCT_LIST, O(marketplace.products), O(marketplace.n_products), 0, 0, 0 },
        { "marketplace", "ca_file",        K_PATH,         O(marketplace.ca_file), 0, 0, 0, 0 },
        { "marketplace", "portal_url",     K_URL_HTTP,     O(marketplace.portal_url), 0, 0, 0, 0 },
        { "marketplace", "max_orders_bytes", K_SIZE,       O(marketplace.max_orders_bytes), 0, INT64_C(1) << 20, INT64_C(1) << 32, 0 },

        { "microsoft", "login_url",          K_URL_HTTP,       O(microsoft.login_url), 0, 0, 0, 0 },
        { "microsoft", "api_url",            K_URL_HTTP,       O(microsoft.api_url), 0, 0, 0, 0 },
        { "microsoft", "graph_url",          K_URL_HTTP,       O(microsoft.graph_url), 0, 0, 0, 0 },
        { "microsoft", "tenant",             K_HOST,           O(microsoft.tenant), 0, 0, 0, F_REQUIRED },
        { "microsoft", "client_id",          K_WORD,           O(microsoft.client_id), 0, 0, 0, F_REQUIRED },
        { "microsoft", "client_secret_file", K_SECRET_PATH,    O(microsoft.client_secret_file), 0, 0, 0, F_REQUIRED },
        { "microsoft", "ca_file",            K_PATH,           O(microsoft.ca_file), 0, 0, 0, 0 },
        { "microsoft", "token_endpoint",     K_TOKEN_ENDPOINT, O(microsoft.token_endpoint), 0, 0, 0, 0 },
        { "microsoft", "check_schedule",     K_DURATION_LIST,  O(microsoft.check_schedule), O(microsoft.n_check_schedule), 10, DAY_, F_SHARED },
        { "microsoft", "partner_ids",        K_GUID_LIST,      O(microsoft.partner_ids), O(microsoft.n_partner_ids), 0, 0, F_ACCOUNT },

        { "mail", "transport",             K_TRANSPORT,    O(mail.transport), 0, 0, 0, 0 },
        { "mail", "smtp_url",              K_URL_SMTP,     O(mail.smtp_url), 0, 0, 0, 0 },
        { "mail", "username",              K_STRING,       O(mail.username), 0, 0, 0, 0 },
        { "mail", "password_file",         K_SECRET_PATH,  O(mail.password_file), 0, 0, 0, 0 },
        { "mail", "ca_file",               K_PATH,         O(mail.ca_file), 0, 0, 0, 0 },
        { "mail", "sendmail",              K_ABS_PATH,     O(mail.sendmail_path), 0, 0, 0, 0 },
        { "mail", "from",                  K_ADDRESS,      O(mail.from), 0, 0, 0, F_REQUIRED },
        { "mail", "to",                    K_ADDRESS_LIST, O(mail.to), O(mail.n_to), 0, 0, F_REQUIRED },
        { "mail", "cc",                    K_ADDRESS_LIST, O(mail.cc), O(mail.n_cc), 0, 0, 0 },
        { "mail", "bcc",                   K_ADDRESS_LIST, O(mail.bcc), O(mail.n_bcc), 0, 0, 0 },
        { "mail", "ops",                   K_ADDRESS_LIST, O(mail.ops), O(mail.n_ops), 0, 0, 0 },
        { "mail", "notify_order_contacts", K_BOOL,         O(mail.notify_order_contacts), 0, 0, 0, 0 },
        { "mail", "reminder_interval",     K_DURATION,     O(mail.reminder_interval), 0, 10, 30 * DAY_, 0 },
        { "mail", "max_reminders",         K_INT,          O(mail.max_reminders), 0, 0, 100, 0 },
        { "mail", "deadline",              K_DURATION,     O(mail.deadline), 0, MIN_, 90 * DAY_, 0 },
        { "mail", "deadline_warning",      K_DURATION,     O(mail.deadline_warning), 0, 0, 90 * DAY_, 0 },
        { "mail", "templates",             K_PATH,         O(mail.template_dir), 0, 0, 0, 0 },
        { "mail", "url_hosts",             K_HOST_LIST,    O(mail.url_hosts), O(mail.n_url_hosts), 0, 0, 0 },

        { "daemon", "state_dir",       K_ABS_PATH, O(daemon.state_dir), 0, 0, 0, 0 },
        { "daemon", "metrics_file",    K_ABS_PATH, O(daemon.metrics_file), 0, 0, 0, 0 },
        { "daemon", "retention",       K_DURATION, O(daemon.retention), 0, HOUR_, 3650 * DAY_, 0 },
        { "daemon", "max_parallel",    K_INT,      O(daemon.max_parallel), 0, 1, 256, 0 },
        { "daemon", "http_timeout",    K_DURATION, O(daemon.http_timeout), 0, 1, HOUR_, 0 },
        { "daemon", "connect_timeout", K_DURATION, O(daemon.connect_timeout), 0, 1, 5 * MIN_, 0 },
        { "daemon", "max_response",    K_SIZE,     O(daemon.max_response), 0, 4096, INT64_C(1) << 30, 0 },
        { "daemon", "proxy",           K_URL_HTTP, O(daemon.proxy), 0, 0, 0, 0 },

        /* etcd: a list of URLs, split and checked by cluster_finish() */
        { "cluster", "etcd",           K_STRING,      O(cluster.etcd), 0, 0, 0, 0 },
        { "cluster", "prefix",         K_WORD,        O(cluster.prefix), 0, 0, 0, 0 },
        { "cluster", "lease_ttl",      K_DURATION,    O(cluster.lease_ttl), 0, 3, 5 * MIN_, 0 },
        { "cluster", "name",           K_WORD,        O(cluster.name), 0, 0, 0, 0 },
        { "cluster", "ca_file",        K_PATH,        O(cluster.ca_file), 0, 0, 0, 0 },
        { "cluster", "cert_file",      K_SECRET_PATH, O(cluster.cert_file), 0, 0, 0, 0 },
        { "cluster", "key_file",       K_SECRET_PATH, O(cluster.key_file), 0, 0, 0, 0 },
};

#define N_KEYS (sizeof(keys) / sizeof(keys[0]))

static const char *const sections[] = { "marketplace", "microsoft", "mail", "daemon", "cluster" };

struct ctx {
        const char *path;
        unsigned flags;
        struct cfg *cfg;
        struct cfg_errors *errors;
        size_t n_errors;
        bool oom;
        unsigned key_line[N_KEYS];  /* 0: not set in the file */
        /* [microsoft.NAME] sections: the one being read (index + 1, 0 =
         * none), and per account the header line and its keys' lines. */
        size_t cur_acct;
        struct acct_lines {
                unsigned header;
                unsigned key[N_KEYS];
        } *acct;
        char label[16 + CFG_ACCOUNT_NAME_MAX];   /* "microsoft.NAME" for messages */
};

/* The section a message names: [microsoft.NAME] inside an account section. */
#define SEC(c, k) ((c)->cur_acct && strcmp((k)->section, "microsoft") == 0 ? (c)->label : (k)->section)

/* ---- messages ---- */

/* Appends "FILE:LINE: message" to a string vector. */
__attribute__((format(printf, 5, 0)))
static void vappend(struct ctx *c, char ***items, size_t *n, unsigned line, const char *fmt,
                    va_list ap) {
        char *msg = NULL, *full = NULL;

        if (vasprintf(&msg, fmt, ap) < 0) {
                c->oom = true;
                return;
        }
        char **p = reallocarray(*items, *n + 1, sizeof(char *));
        if (p)
                *items = p;
        if (!p || asprintf(&full, "%s:%u: %s", c->path, line, msg) < 0)
                c->oom = true;
        else
                (*items)[(*n)++] = full;
        free(msg);
}

__attribute__((format(printf, 3, 4)))
static void add_error(struct ctx *c, unsigned line, const char *fmt, ...) {
        va_list ap;

        c->n_errors++;
        if (!c->errors)  /* the caller wants no text; the count is enough */
                return;
        va_start(ap, fmt);
        vappend(c, &c->errors->items, &c->errors->n, line, fmt, ap);
        va_end(ap);
}

__attribute__((format(printf, 3, 4)))
static void add_warning(struct ctx *c, unsigned line, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vappend(c, &c->cfg->warnings, &c->cfg->n_warnings, line, fmt, ap);
        va_end(ap);
}

/* A value echoed in an error: printable ASCII kept, other bytes as \xNN,
 * cut after CFG_QUOTE_MAX bytes.  out must hold CFG_QUOTE_MAX * 4 + 4. */
#define QUOTE_BUF (CFG_QUOTE_MAX * 4 + 4)
static const char *quote(const char *s, char out[static QUOTE_BUF]) {
        size_t o = 0, i;
        for (i = 0; s[i] && i < CFG_QUOTE_MAX; i++) {
                unsigned char ch = (unsigned char) s[i];
                if (ch >= 0x20 && ch < 0x7f && ch != '\\' && ch != '\'')
                        out[o++] = (char) ch;
                else
                        o += (size_t) snprintf(out + o, 5, "\\x%02x", ch);
        }
        if (s[i])
                out[o++] = '.', out[o++] = '.', out[o++] = '.';
        out[o] = '\0';
        return out;
}

void cfg_errors_clear(struct cfg_errors *e) {
        if (!e)
                return;
        for (size_t i = 0; i < e->n; i++)
                free(e->items[i]);
        free(e->items);
        e->items = NULL;
        e->n = 0;
}

/* ---- freeing ---- */

static void strv_free(char **v, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(v[i]);
        free(v);
}

static void account_clear(struct cfg_microsoft *m) {
        free(m->name);
        strv_free(m->partner_ids, m->n_partner_ids);
        free(m->login_url);
        free(m->api_url);
        free(m->graph_url);
        free(m->tenant);
        free(m->client_id);
        secret_free(m->client_secret);
        free(m->client_secret_file);
        free(m->ca_file);
        free(m->check_schedule);
}

static void cluster_clear(struct cfg_cluster *k) {
        free(k->etcd);
        strv_free(k->endpoints, k->n_endpoints);
        free(k->prefix);
        free(k->name);
        free(k->ca_file);
        free(k->cert_file);
        free(k->key_file);
}

struct cfg *cfg_free(struct cfg *c) {
        if (!c)
                return NULL;
        free(c->path);
        free(c->dir);

        free(c->marketplace.url);
        secret_free(c->marketplace.token);
        free(c->marketplace.token_file);
        strv_free(c->marketplace.products, c->marketplace.n_products);
        free(c->marketplace.ca_file);
        free(c->marketplace.portal_url);

        account_clear(&c->microsoft);
        for (size_t i = 0; i < c->n_accounts; i++)
                account_clear(&c->accounts[i]);
        free(c->accounts);

        free(c->mail.smtp_url);
        free(c->mail.username);
        secret_free(c->mail.password);
        free(c->mail.password_file);
        free(c->mail.ca_file);
        free(c->mail.sendmail_path);
        free(c->mail.from);
        strv_free(c->mail.to, c->mail.n_to);
        strv_free(c->mail.cc, c->mail.n_cc);
        strv_free(c->mail.bcc, c->mail.n_bcc);
        strv_free(c->mail.ops, c->mail.n_ops);
        free(c->mail.template_dir);
        strv_free(c->mail.url_hosts, c->mail.n_url_hosts);

        free(c->daemon.state_dir);
        free(c->daemon.proxy);
        free(c->daemon.metrics_file);
        cluster_clear(&c->cluster);

        strv_free(c->warnings, c->n_warnings);
        free(c);
        return NULL;
}

/* ---- small validators ---- */

/* "local@domain" or "Display Name <local@domain>".  The display name is
 * printable (UTF-8 allowed), without '<', '>', '"', '\\' or ','. */
static bool address_valid(const char *s) {
        size_t n = strlen(s);
        if (n == 0 || n > 512 || util_has_ctl(s, false))
                return false;
        const char *lt = strchr(s, '<');
        if (!lt)
                return text_addr_spec_valid(s, n);
        if (s[n - 1] != '>')
                return false;
        for (const char *p = s; p < lt; p++)
                if (strchr("<>\"\\,", *p))
                        return false;
        const char *a = lt + 1;
        size_t al = (size_t) (s + n - 1 - a);
        if (memchr(a, '<', al) || memchr(a, '>', al))
                return false;
        return text_addr_spec_valid(a, al);
}

static bool product_valid(const char *s) {
        if (!*s || strlen(s) > 64)
                return false;
        for (const char *p = s; *p; p++)
                if (!isalnum((unsigned char) *p) && *p != '-')
                        return false;
        return true;
}

/* ---- value parsers ---- */

static char *trim(char *s) {
        while (*s == ' ' || *s == '\t')
                s++;
        size_t n = strlen(s);
        while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
                s[--n] = '\0';
        return s;
}

/* Splits a comma-separated value into trimmed items; an empty item is an
 * error (-EINVAL), more than CFG_LIST_MAX is -E2BIG. */
static int split_list(const char *value, char ***ret, size_t *ret_n) {
        char *copy = strdup(value);
        char **v = NULL;
        size_t n = 0;
        int r = 0;

        if (!copy)
                return -ENOMEM;
        /* strtok would merge ",,": walk by hand. */
        char *p = copy;
        for (;;) {
                char *comma = strchr(p, ',');
                if (comma)
                        *comma = '\0';
                char *item = trim(p);
                if (!*item) {
                        r = -EINVAL;
                        break;
                }
                if (n >= CFG_LIST_MAX) {
                        r = -E2BIG;
                        break;
                }
                char **nv = reallocarray(v, n + 1, sizeof(char *));
                if (!nv) {
                        r = -ENOMEM;
                        break;
                }
                v = nv;
                if (!(v[n] = strdup(item))) {
                        r = -ENOMEM;
                        break;
                }
                n++;
                if (!comma)
                        break;
                p = comma + 1;
        }
        free(copy);
        if (r < 0) {
                strv_free(v, n);
                return r;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

/* Size: bytes, or a number with K, M or G (powers of 1024), optionally
 * followed by "B" or "iB". */
static int parse_size(const char *s, uint64_t *ret) {
        if (!isdigit((unsigned char) *s))
                return -EINVAL;
        errno = 0;
        char *end;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno == ERANGE)
                return -ERANGE;
        while (*end == ' ')
                end++;
        uint64_t mult = 1;
        switch (*end) {
        case 'k': case 'K': mult = 1024; end++; break;
        case 'm': case 'M': mult = 1024 * 1024; end++; break;
        case 'g': case 'G': mult = 1024 * 1024 * 1024; end++; break;
        default: break;
        }
        if (mult > 1 && *end == 'i')
                end++;
        if (*end == 'B')
                end++;
        if (*end)
                return -EINVAL;
        if (v > UINT64_MAX / mult)
                return -ERANGE;
        *ret = v * mult;
        return 0;
}

static int parse_bool(const char *s, bool *ret) {
        static const char *const yes[] = { "yes", "true", "on", "1" };
        static const char *const no[] = { "no", "false", "off", "0" };
        for (size_t i = 0; i < 4; i++) {
                if (util_streq_ci(s, yes[i])) {
                        *ret = true;
                        return 0;
                }
                if (util_streq_ci(s, no[i])) {
                        *ret = false;
                        return 0;
                }
        }
        return -EINVAL;
}


/* dir + "/" + rel */
static char *path_join(const char *dir, const char *rel) {
        char *s = NULL;
        if (asprintf(&s, "%s/%s", dir, rel) < 0)
                return NULL;
        return s;
}

/* The field at offset off (k->off or k->off_n) of the struct cfg, or of
 * the account being read for a [microsoft] key inside [microsoft.NAME]. */
static void *field_at(const struct ctx *c, const struct key_def *k, size_t off) {
        if (c->cur_acct && strcmp(k->section, "microsoft") == 0)
                return (char *) &c->cfg->accounts[c->cur_acct - 1] + (off - O(microsoft));
        return (char *) c->cfg + off;
}

static void set_str(struct ctx *c, const struct key_def *k, char *s) {
        char **field = field_at(c, k, k->off);
        free(*field);
        *field = s;
}

static void set_dup(struct ctx *c, const struct key_def *k, const char *v) {
        char *s = strdup(v);
        if (!s)
                c->oom = true;
        else
                set_str(c, k, s);
}

/* split_list() for key k, reporting its errors. */
static bool split_value(struct ctx *c, unsigned line, const struct key_def *k, const char *v,
                        char ***ret, size_t *ret_n) {
        int r = split_list(v, ret, ret_n);
        if (r == -ENOMEM)
                c->oom = true;
        else if (r < 0)
                add_error(c, line, "[%s] %s: %s", SEC(c, k), k->key,
                          r == -E2BIG ? "too many entries" : "empty entry in list");
        return r >= 0;
}

static void set_strv(struct ctx *c, const struct key_def *k, char **v, size_t n) {
        char ***field = field_at(c, k, k->off);
        size_t *count = field_at(c, k, k->off_n);
        strv_free(*field, *count);
        *field = v;
        *count = n;
}

static void range_error(struct ctx *c, unsigned line, const struct key_def *k, const char *v) {
        char lo[32], hi[32], q[QUOTE_BUF];
        util_format_duration(k->min, lo, sizeof(lo));
        util_format_duration(k->max, hi, sizeof(hi));
        add_error(c, line, "[%s] %s: duration '%s' out of range (%s..%s)",
                  SEC(c, k), k->key, quote(v, q), lo, hi);
}

static bool parse_one_duration(struct ctx *c, unsigned line, const struct key_def *k,
                               const char *v, int64_t *ret) {
        char q[QUOTE_BUF];
        int64_t d;
        int r = util_parse_duration(v, &d);
        if (r == -ERANGE || (r == 0 && (d < k->min || d > k->max))) {
                range_error(c, line, k, v);
                return false;
        }
        if (r < 0) {
                add_error(c, line, "[%s] %s: invalid duration '%s' (use e.g. 30s, 5min, 24h, 2d)",
                          SEC(c, k), k->key, quote(v, q));
                return false;
        }
        *ret = d;
        return true;
}

/* "[SECTION] KEY: message" for the key being read. */
__attribute__((format(printf, 4, 5)))
static void key_error(struct ctx *c, unsigned line, const struct key_def *k, const char *fmt, ...) {
        char *msg = NULL;
        va_list ap;

        va_start(ap, fmt);
        int r = vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (r < 0) {
                c->n_errors++;
                c->oom = true;
                return;
        }
        add_error(c, line, "[%s] %s: %s", SEC(c, k), k->key, msg);
        free(msg);
}

/* ---- one parser per key kind ----
 * Each gets a non-empty value without control characters, stores it in
 * the key's field or adds an error naming the key. */

typedef void kind_parser(struct ctx *c, unsigned line, const struct key_def *k, const char *v);

/* K_URL_HTTP, K_URL_SMTP: the endpoint policy of lib/url; an http(s) base
 * loses one trailing '/'. */
static void kind_url(struct ctx *c, unsigned line, const struct key_def *k, const char *v) {
        const char *msg = NULL;
        char q[QUOTE_BUF];
        int r = url_check_endpoint(v, URL_STRICT | (k->kind == K_URL_SMTP ? URL_ALLOW_SMTP : URL_ALLOW_HTTP),
                                   NULL, &msg);
        if (r == -ENOMEM) {
                c->oom = true;
                return;
        }
        if (r == -EPERM)  /* the value holds credentials: not echoed */
                key_error(c, line, k, "%s", msg);
        else if (r < 0)
                key_error(c, line, k, "%s: '%s'", msg, quote(v, q));
        if (r < 0)
                return;
        char *s = strdup(v);
        if (!s) {
                c->oom = true;
                return;
        }
        size_t len = strlen(s);
        if (k->kind == K_URL_HTTP && len > 0 && s[len - 1] == '/')
                s[len - 1] = '\0';
        set_str(c, k, s);
}

/* K_STRING, K_WORD (printable ASCII, no spaces), K_HOST (a host name). */
static void kind_string(struct ctx *c, unsigned line, const struct key_def *k, const char *v) {
        const char *bad = NULL;
        char q[QUOTE_BUF];
        if (strlen(v) > 256)
                bad = "too long (more than 256 bytes)";
        else if (k->kind == K_HOST && !text_hostname_valid(v, strlen(v)))
                bad = "not a tenant id or domain name";
        else if (k->kind == K_WORD)
                for (const char *p = v; *p && !bad; p++)
                        if (*p <= ' ' || *p >= 0x7f)
                                bad = "only printable ASCII without spaces allowed";
        if (bad)
                key_error(c, line, k, "%s: '%s'", bad, quote(v, q));
        else
                set_dup(c, k, v);
}

/* K_PATH, K_ABS_PATH, K_SECRET_PATH: stored as written, resolved after
 * the whole file is read. */
static void kind_path(struct ctx *c, unsigned line, const struct key_def *k, const char *v) {
        char q[QUOTE_BUF];
        if (k->kind == K_ABS_PATH && v[0] != '/')
                key_error(c, line, k, "'%s' is not an absolute path", quote(v, q));
        else if (strlen(v) >= PATH_MAX)
                key_error(c, line, k, "path too long");
        else
                set_dup(c, k, v);
}

static void kind_duration(struct ctx *c, unsigned line, const struct key_def *k, const char *v) {
        parse_one_duration(c, line, k, v, field_at(c, k, k->off));
}

static void kind_duration_list(struct ctx *c, unsigned line, const struct key_def *k, const char *v) {
        char **list = NULL;
        size_t n = 0;
        if (!split_value(c, line, k, v, &list, &n))
                return;
        int64_t *d = calloc(n, sizeof(int64_t));
        bool ok = d != NULL;
        if (!d)
                c->oom = true;
        for (size_t i = 0; ok && i < n; i++)
                ok = parse_one_duration(c, line, k, list[i], &d[i]);
        strv_free(list, n);
        if (!ok) {
                free(d);
                return;
        }
        int64_t **f = field_at(c, k, k->off);
        size_t *count = field_at(c, k, k->off_n);
        free(*f);
        *f = d;
        *count = n;
}

static void kind_int(struct ctx *c, unsigned line, const struct key_def *k, const char *v) {
        char q[QUOTE_BUF], *end;
        errno = 0;
        long long x = isdigit((unsigned char) v[0]) ? strtoll(v, &end, 10) : 0;
        if (!isdigit((unsigned char) v[0]) || *end)
                key_error(c, line, k, "invalid number '%s'", quote(v, q));
        else if (errno == ERANGE || x < k->min || x > k->max)
                key_error(c, line, k, "%s out of range (%lld..%lld)", quote(v, q),
                          (long long) k->min, (long long) k->max);
        else
                *(int *) field_at(c, k, k->off) = (int) x;
}

static void kind_size(struct ctx *c, unsigned line, const struct key_def *k, const char *v) {
        char q[QUOTE_BUF];
        uint64_t sz;
        int r = parse_size(v, &sz);
        if (r == -EINVAL)
                key_error(c, line, k, "invalid size '%s' (use e.g. 512K, 16M)", quote(v, q));
        else if (r < 0 || sz < (uint64_t) k->min || sz > (uint64_t) k->max)
                key_error(c, line, k, "size '%s' out of range (%lldK..%lldM)", quote(v, q),
                          (long long) k->min / 1024, (long long) k->max / (1024 * 1024));
        else
                *(size_t *) field_at(c, k, k->off) = (size_t) sz;
}

static void kind_bool(struct ctx *c, unsigned line, const struct key_def *k, const char *v) {
        char q[QUOTE_BUF];
        if (parse_bool(v, field_at(c, k, k->off)) < 0)
                key_error(c, line, k, "invalid boolean '%s' (use yes or no)", quote(v, q));
}

static void kind_address(struct ctx *c, unsigned line, const struct key_def *k, const char *v) {
        char q[QUOTE_BUF];
        if (address_valid(v))
                set_dup(c, k, v);
        else
                key_error(c, line, k, "invalid address '%s'", quote(v, q));
}

/* What item i of a list of kind kind is not ("address", ...), NULL when
 * it is fine. */
static const char *list_item_fault(enum kind kind, char *const *list, size_t i) {
        switch (kind) {
        case K_ADDRESS_LIST:
                return address_valid(list[i]) ? NULL : "address";
        case K_PRODUCT_LIST:
                return product_valid(list[i]) ? NULL : "product id";
        case K_HOST_LIST:
                return text_hostname_valid(list[i], strlen(list[i])) ? NULL : "host name";
        default:
                break;
        }
        if (!api_guid_valid(list[i]))
                return "partnerId (not a GUID)";
        for (size_t j = 0; j < i; j++)
                if (util_streq_ci(list[i], list[j]))
                        return "partnerId (listed twice)";
        return NULL;
}

/* K_ADDRESS_LIST, K_PRODUCT_LIST, K_HOST_LIST and K_GUID_LIST (the last
 * two lower-cased): every item checked, every bad one reported. */
static void kind_list(struct ctx *c, unsigned line, const struct key_def *k, const char *v) {
        char q[QUOTE_BUF], **list = NULL;
        size_t n = 0;
        bool ok = true;
        if (!split_value(c, line, k, v, &list, &n))
                return;
        for (size_t i = 0; i < n; i++) {
                const char *what = list_item_fault(k->kind, list, i);
                if (what) {
                        key_error(c, line, k, "invalid %s '%s'", what, quote(list[i], q));
                        ok = false;
                } else if (k->kind == K_HOST_LIST || k->kind == K_GUID_LIST)
                        util_ascii_lower(list[i]);
        }
        if (ok)
                set_strv(c, k, list, n);
        else
                strv_free(list, n);
}

/* K_TRANSPORT, K_TOKEN_ENDPOINT: one of a few words. */
static void kind_choice(struct ctx *c, unsigned line, const struct key_def *k, const char *v) {
        static const struct { enum kind kind; const char *word; int value; } words[] = {
                { K_TRANSPORT, "smtp", CFG_TRANSPORT_SMTP },
                { K_TRANSPORT, "sendmail", CFG_TRANSPORT_SENDMAIL },
                { K_TOKEN_ENDPOINT, "v1", 1 }, { K_TOKEN_ENDPOINT, "1", 1 },
                { K_TOKEN_ENDPOINT, "v2", 2 }, { K_TOKEN_ENDPOINT, "2", 2 },
        };
        char q[QUOTE_BUF];
        for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
                if (words[i].kind == k->kind && strcmp(v, words[i].word) == 0) {
                        if (k->kind == K_TRANSPORT)
                                *(enum cfg_transport *) field_at(c, k, k->off) = (enum cfg_transport) words[i].value;
                        else
                                *(int *) field_at(c, k, k->off) = words[i].value;
                        return;
                }
        key_error(c, line, k, "invalid value '%s' (use %s)", quote(v, q),
                  k->kind == K_TRANSPORT ? "smtp or sendmail" : "v1 or v2");
}

static kind_parser *const kind_parsers[] = {
        [K_URL_HTTP]      = kind_url,
        [K_URL_SMTP]      = kind_url,
        [K_STRING]        = kind_string,
        [K_WORD]          = kind_string,
        [K_HOST]          = kind_string,
        [K_PATH]          = kind_path,
        [K_ABS_PATH]      = kind_path,
        [K_SECRET_PATH]   = kind_path,
        [K_DURATION]      = kind_duration,
        [K_DURATION_LIST] = kind_duration_list,
        [K_INT]           = kind_int,
        [K_SIZE]          = kind_size,
        [K_BOOL]          = kind_bool,
        [K_ADDRESS]       = kind_address,
        [K_ADDRESS_LIST]  = kind_list,
        [K_PRODUCT_LIST]  = kind_list,
        [K_HOST_LIST]     = kind_list,
        [K_TRANSPORT]     = kind_choice,
        [K_TOKEN_ENDPOINT] = kind_choice,
        [K_GUID_LIST]     = kind_list,
};

/* Parses one value into the cfg.  Errors are added to c. */
static void parse_value(struct ctx *c, unsigned line, const struct key_def *k, const char *v) {
        if (!*v)
                key_error(c, line, k, "empty value");
        else if (util_has_ctl(v, false))
                key_error(c, line, k, "control character in value");
        else
                kind_parsers[k->kind](c, line, k, v);
}

/* ---- the file ---- */

static const struct key_def *key_lookup(const char *section, const char *key, size_t *ret_idx) {
        for (size_t i = 0; i < N_KEYS; i++)
                if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].key, key) == 0) {
                        *ret_idx = i;
                        return &keys[i];
                }
        return NULL;
}

static const char *section_lookup(const char *name) {
        for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++)
                if (strcmp(sections[i], name) == 0)
                        return sections[i];
        return NULL;
}

/* A word that may be a mistyped key (and so is safe to echo). */
static bool key_name_plausible(const char *key) {
        size_t n = strlen(key);
        if (n == 0 || n > 40)
                return false;
        for (const char *p = key; *p; p++)
                if (!isalnum((unsigned char) *p) && *p != '_' && *p != '-' && *p != '.')
                        return false;
        return true;
}

/* Cuts an inline comment: '#' preceded by whitespace. */
static void strip_inline_comment(char *s) {
        for (char *p = s; *p; p++)
                if (*p == '#' && p > s && (p[-1] == ' ' || p[-1] == '\t')) {
                        *p = '\0';
                        return;
                }
}

static bool account_name_valid(const char *n) {
        size_t len = strlen(n);
        if (len == 0 || len > CFG_ACCOUNT_NAME_MAX || !(islower((unsigned char) n[0]) || isdigit((unsigned char) n[0])))
                return false;
        for (size_t i = 0; i < len; i++)
                if (!islower((unsigned char) n[i]) && !isdigit((unsigned char) n[i]) && n[i] != '_' && n[i] != '-')
                        return false;
        return true;
}

/* [microsoft.NAME]: starts another Partner Center account.  Returns the
 * section its keys belong to, "" when it cannot be used (reported). */
static const char *open_account(struct ctx *c, unsigned line, const char *name) {
        char q[QUOTE_BUF];
        const char *n = name + strlen("microsoft.");
        struct cfg *cfg = c->cfg;

        if (!account_name_valid(n)) {
                add_error(c, line, "invalid account name in section [%s] (use a-z, 0-9, '_' and '-', "
                          "at most %d characters, starting with a letter or digit)",
                          quote(name, q), CFG_ACCOUNT_NAME_MAX);
                return "";
        }
        if (strcmp(n, CFG_ACCOUNT_DEFAULT) == 0) {
                add_error(c, line, "duplicate section [%s]: '%s' is the name of the [microsoft] account",
                          name, n);
                return "";
        }
        for (size_t i = 0; i < cfg->n_accounts; i++)
                if (strcmp(cfg->accounts[i].name, n) == 0) {
                        add_error(c, line, "duplicate section [%s] (first on line %u)", name, c->acct[i].header);
                        return "";
                }
        if (cfg->n_accounts >= CFG_ACCOUNTS_MAX) {
                add_error(c, line, "too many [microsoft.NAME] sections (at most %d)", CFG_ACCOUNTS_MAX);
                return "";
        }
        struct cfg_microsoft *a = reallocarray(cfg->accounts, cfg->n_accounts + 1, sizeof(*a));
        if (a)
                cfg->accounts = a;
        struct acct_lines *l = reallocarray(c->acct, cfg->n_accounts + 1, sizeof(*l));
        if (l)
                c->acct = l;
        if (!a || !l) {
                c->oom = true;
                return "";
        }
        a[cfg->n_accounts] = (struct cfg_microsoft) { .name = strdup(n) };
        l[cfg->n_accounts] = (struct acct_lines) { .header = line };
        if (!a[cfg->n_accounts].name) {
                c->oom = true;
                return "";
        }
        c->cur_acct = ++cfg->n_accounts;
        snprintf(c->label, sizeof(c->label), "microsoft.%s", n);
        return "microsoft";
}

/* section: the current one; NULL before any header, "" inside an unknown
 * section (its keys are not reported again). */
static void parse_line(struct ctx *c, unsigned line, char *raw, const char **section) {
        char q[QUOTE_BUF];
        char *s = trim(raw);

        if (!*s || *s == '#' || *s == ';')
                return;

        if (*s == '[') {
                char *close = strchr(s, ']');
                if (!close) {
                        add_error(c, line, "invalid section header '%s' (missing ']')", quote(s, q));
                        *section = "";
                        return;
                }
                *close = '\0';
                char *rest = close + 1;
                strip_inline_comment(rest);
                char *name = trim(s + 1);
                if (*trim(rest)) {
                        add_error(c, line, "unexpected text after section header [%s]",
                                  quote(name, q));
                        *section = "";
                        return;
                }
                c->cur_acct = 0;
                if (strncmp(name, "microsoft.", 10) == 0) {
                        *section = open_account(c, line, name);
                        return;
                }
                const char *known = section_lookup(name);
                if (!known) {
                        add_error(c, line, "unknown section [%s]", quote(name, q));
                        *section = "";
                        return;
                }
                *section = known;
                return;
        }

        char *eq = strchr(s, '=');
        if (!eq) {
                /* The line is not echoed: it may be a pasted secret. */
                add_error(c, line, "expected 'key = value'");
                return;
        }
        *eq = '\0';
        char *key = trim(s);
        char *value = eq + 1;
        strip_inline_comment(value);
        value = trim(value);

        if (!*key) {
                add_error(c, line, "missing key before '='");
                return;
        }
        if (!*section) {
                add_error(c, line, "key '%s' outside any section", quote(key, q));
                return;
        }
        if (!**section)
                return;  /* inside an unknown section, already reported */

        size_t idx;
        const struct key_def *k = key_lookup(*section, key, &idx);
        if (!k) {
                if (key_name_plausible(key))
                        add_error(c, line, "unknown key '%s' in [%s]", key, *section);
                else  /* not echoed: it may be part of a pasted secret */
                        add_error(c, line, "invalid key name in [%s]", *section);
                return;
        }
        unsigned *lines = c->cur_acct && strcmp(k->section, "microsoft") == 0
                          ? c->acct[c->cur_acct - 1].key : c->key_line;
        if (lines[idx]) {
                add_error(c, line, "[%s] %s: duplicate key (first set on line %u)",
                          SEC(c, k), k->key, lines[idx]);
                return;
        }
        if (c->cur_acct && (k->flags & F_SHARED)) {
                add_error(c, line, "[%s] %s: applies to every account; set it in [microsoft]",
                          SEC(c, k), k->key);
                return;
        }
        lines[idx] = line;
        parse_value(c, line, k, value);
}

static void parse_text(struct ctx *c, char *text, size_t len) {
        const char *section = NULL;
        unsigned line = 0;
        size_t pos = 0;

        /* A UTF-8 byte order mark is tolerated. */
        if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
                pos = 3;

        while (pos < len) {
                char *start = text + pos;
                char *nl = memchr(start, '\n', len - pos);
                size_t n = nl ? (size_t) (nl - start) : len - pos;
                pos += n + (nl ? 1 : 0);
                line++;

                if (n > 0 && start[n - 1] == '\r')
                        n--;
                if (n > CFG_LINE_MAX) {
                        add_error(c, line, "line too long (more than %d bytes)", CFG_LINE_MAX);
                        continue;
                }
                if (memchr(start, '\0', n)) {
                        add_error(c, line, "NUL byte in line");
                        continue;
                }
                if (!text_utf8_valid(start, n)) {
                        add_error(c, line, "invalid UTF-8");
                        continue;
                }
                start[n] = '\0';
                if (util_has_ctl(start, true)) {
                        add_error(c, line, "control character in line");
                        continue;
                }
                parse_line(c, line, start, &section);
        }
}

/* ---- after the file ---- */

/* The defaults of the keys a file may leave out (partnerd.conf(5)), named
 * as in the key table: a number (durations, ints, sizes, booleans,
 * choices) or a string.  The list defaults follow in set_defaults(). */
static const struct key_default {
        const char *section;
        const char *key;
        int64_t number;
        const char *text;
} key_defaults[] = {
        { "marketplace", "poll_interval",     DEF_POLL_INTERVAL, NULL },
        { "marketplace", "portal_url",        0, DEF_PORTAL_URL },
        { "marketplace", "max_orders_bytes",  (int64_t) DEF_MAX_ORDERS_BYTES, NULL },

        { "microsoft", "login_url",           0, DEF_LOGIN_URL },
        { "microsoft", "api_url",             0, DEF_API_URL },
        { "microsoft", "graph_url",           0, DEF_GRAPH_URL },
        { "microsoft", "token_endpoint",      1, NULL },

        { "mail", "transport",                CFG_TRANSPORT_SMTP, NULL },
        { "mail", "sendmail",                 0, DEF_SENDMAIL },
        { "mail", "notify_order_contacts",    false, NULL },
        { "mail", "reminder_interval",        DEF_REMINDER, NULL },
        { "mail", "max_reminders",            DEF_MAX_REMINDERS, NULL },
        { "mail", "deadline",                 DEF_DEADLINE, NULL },
        { "mail", "deadline_warning",         DEF_DEADLINE_WARN, NULL },

        { "daemon", "retention",              DEF_RETENTION, NULL },
        { "daemon", "max_parallel",           DEF_MAX_PARALLEL, NULL },
        { "daemon", "http_timeout",           DEF_HTTP_TIMEOUT, NULL },
        { "daemon", "connect_timeout",        DEF_CONNECT_TIMEOUT, NULL },
        { "daemon", "max_response",           (int64_t) DEF_MAX_RESPONSE, NULL },
};

/* Stores one default in its key's field, typed by the key's kind. */
static int set_default(struct cfg *cfg, const struct key_default *d) {
        size_t idx;
        const struct key_def *k = key_lookup(d->section, d->key, &idx);
        void *field = (char *) cfg + k->off;

        if (d->text) {
                *(char **) field = strdup(d->text);
                return *(char **) field ? 0 : -ENOMEM;
        }
        switch (k->kind) {
        case K_DURATION:
                *(int64_t *) field = d->number;
                break;
        case K_SIZE:
                *(size_t *) field = (size_t) d->number;
                break;
        case K_BOOL:
                *(bool *) field = d->number != 0;
                break;
        case K_TRANSPORT:
                *(enum cfg_transport *) field = (enum cfg_transport) d->number;
                break;
        default:   /* K_INT, K_TOKEN_ENDPOINT */
                *(int *) field = (int) d->number;
                break;
        }
        return 0;
}

static int set_defaults(struct cfg *cfg) {
        for (size_t i = 0; i < sizeof(key_defaults) / sizeof(key_defaults[0]); i++)
                if (set_default(cfg, &key_defaults[i]) < 0)
                        return -ENOMEM;
        cfg->microsoft.name = strdup(CFG_ACCOUNT_DEFAULT);
        cfg->microsoft.check_schedule = malloc(sizeof(def_check_schedule));
        cfg->mail.url_hosts = calloc(url_n_link_hosts, sizeof(char *));
        if (!cfg->microsoft.name || !cfg->microsoft.check_schedule || !cfg->mail.url_hosts)
                return -ENOMEM;
        memcpy(cfg->microsoft.check_schedule, def_check_schedule, sizeof(def_check_schedule));
        cfg->microsoft.n_check_schedule = sizeof(def_check_schedule) / sizeof(def_check_schedule[0]);
        for (; cfg->mail.n_url_hosts < url_n_link_hosts; cfg->mail.n_url_hosts++)
                if (!(cfg->mail.url_hosts[cfg->mail.n_url_hosts] = strdup(url_link_hosts[cfg->mail.n_url_hosts])))
                        return -ENOMEM;
        return 0;
}

static const struct key_def *key_by_name(const char *section, const char *key, unsigned *ret_line,
                                         const struct ctx *c) {
        size_t idx = 0;
        const struct key_def *k = key_lookup(section, key, &idx);
        *ret_line = k ? c->key_line[idx] : 0;
        return k;
}

static void resolve_state_dir(struct ctx *c) {
        unsigned line;
        key_by_name("daemon", "state_dir", &line, c);
        if (line)
                return;  /* set in the file: it wins */
        const char *env = getenv("STATE_DIRECTORY");
        char *s;
        if (env && *env) {
                /* Several directories are ':'-separated; the first is ours. */
                size_t n = strcspn(env, ":");
                s = strndup(env, n);
                if (s && s[0] != '/') {
                        char q[QUOTE_BUF];
                        add_error(c, 0, "[daemon] state_dir: $STATE_DIRECTORY '%s' is not an absolute path",
                                  quote(s, q));
                        free(s);
                        return;
                }
        } else
                s = strdup(DEF_STATE_DIR);
        if (!s) {
                c->oom = true;
                return;
        }
        c->cfg->daemon.state_dir = s;
}

/* Makes a relative path field absolute, against base. */
static void resolve_path(struct ctx *c, char **field, const char *base) {
        if (!*field || (*field)[0] == '/')
                return;
        char *s = path_join(base, *field);
        if (!s) {
                c->oom = true;
                return;
        }
        free(*field);
        *field = s;
}

/* section: as the message names it ("microsoft.NAME" too); line: of the key. */
static void load_secret_at(struct ctx *c, const char *section, unsigned line, const char *key,
                           const char *path, char **ret) {
        bool world = false;
        char *s = NULL;
        int r;

        r = util_read_secret(path, &s, &world);
        if (r == -ENOMEM) {
                c->oom = true;
                return;
        }
        if (r == -EBADMSG) {
                add_error(c, line, "[%s] %s: %s is empty or contains control characters",
                          section, key, path);
                return;
        }
        if (r == -EINVAL) {
                add_error(c, line, "[%s] %s: %s is not a regular file", section, key, path);
                return;
        }
        if (r == -EFBIG) {
                add_error(c, line, "[%s] %s: %s is too large for a secret", section, key, path);
                return;
        }
        if (r < 0) {
                add_error(c, line, "[%s] %s: cannot read %s: %s", section, key, path, strerror(-r));
                return;
        }
        if (world) {
                struct stat st;
                unsigned mode = stat(path, &st) == 0 ? (unsigned) (st.st_mode & 07777) : 0;
                add_warning(c, line, "secret file %s readable by others (mode %04o); chmod 0600",
                            path, mode);
        }
        /* from now on no text that leaves the process may hold it */
        if (secret_register(s, SECRET_CONFIG) < 0)
                c->oom = true;
        secret_free(*ret);
        *ret = s;
}

static void load_secret(struct ctx *c, const char *section, const char *key, const char *path,
                        char **ret) {
        unsigned line;
        key_by_name(section, key, &line, c);
        load_secret_at(c, section, line, key, path, ret);
}

static void check_file_readable_at(struct ctx *c, const char *section, unsigned line, const char *key,
                                   const char *path) {
        if (!path || (c->flags & CFG_NO_SECRETS))
                return;
        if (access(path, R_OK) < 0)
                add_error(c, line, "[%s] %s: cannot read %s: %s", section, key, path,
                          strerror(errno));
}

static void check_file_readable(struct ctx *c, const char *section, const char *key,
                                const char *path) {
        unsigned line;
        key_by_name(section, key, &line, c);
        check_file_readable_at(c, section, line, key, path);
}

/* A [microsoft] value an account did not set: a copy of [microsoft]'s.
 * Strings and numbers only (lists are per account or F_SHARED). */
static void inherit(struct ctx *c, const struct key_def *k, struct cfg_microsoft *a) {
        size_t off = k->off - O(microsoft);
        const char *src = (const char *) &c->cfg->microsoft + off;
        char *dst = (char *) a + off;
        switch (k->kind) {
        case K_URL_HTTP: case K_URL_SMTP: case K_STRING: case K_WORD: case K_HOST:
        case K_PATH: case K_ABS_PATH: case K_SECRET_PATH: case K_ADDRESS: {
                const char *v = *(char *const *) src;
                if (v && !(*(char **) dst = strdup(v)))
                        c->oom = true;
                return;
        }
        case K_INT: case K_TOKEN_ENDPOINT:
                *(int *) dst = *(const int *) src;
                return;
        case K_DURATION:
                *(int64_t *) dst = *(const int64_t *) src;
                return;
        default:
                return;
        }
}

/* Where partnerId id is listed before account ai (index into every
 * account, 0 = [microsoft]); its line in *ret_line. */
static const struct cfg_microsoft *listed_before(const struct ctx *c, size_t ai, const char *id,
                                                 unsigned *ret_line) {
        size_t idx = 0;
        key_lookup("microsoft", "partner_ids", &idx);
        for (size_t i = 0; i < ai; i++) {
                const struct cfg_microsoft *a = cfg_account(c->cfg, i);
                for (size_t j = 0; j < a->n_partner_ids; j++)
                        if (strcmp(a->partner_ids[j], id) == 0) {
                                *ret_line = i ? c->acct[i - 1].key[idx] : c->key_line[idx];
                                return a;
                        }
        }
        return NULL;
}

static void check_partner_ids(struct ctx *c) {
        size_t idx = 0;
        const struct cfg *cfg = c->cfg;
        key_lookup("microsoft", "partner_ids", &idx);
        for (size_t ai = 1; ai < cfg_n_accounts(cfg); ai++) {
                const struct cfg_microsoft *a = cfg_account(cfg, ai);
                for (size_t j = 0; j < a->n_partner_ids; j++) {
                        unsigned first = 0;
                        const struct cfg_microsoft *b = listed_before(c, ai, a->partner_ids[j], &first);
                        if (!b)
                                continue;
                        char where[16 + CFG_ACCOUNT_NAME_MAX];
                        if (b == &cfg->microsoft)
                                snprintf(where, sizeof(where), "microsoft");
                        else
                                snprintf(where, sizeof(where), "microsoft.%s", b->name);
                        add_error(c, c->acct[ai - 1].key[idx],
                                  "[microsoft.%s] partner_ids: partnerId %s is also listed in [%s] (line %u)",
                                  a->name, a->partner_ids[j], where, first);
                }
        }
        if (cfg->n_accounts > 0 && cfg->microsoft.n_partner_ids == 0)
                add_error(c, 0, "[microsoft] partner_ids: missing required key (with [microsoft.NAME] "
                          "accounts every account lists the partnerIds it answers for)");
        else if (cfg->n_accounts == 0 && cfg->microsoft.n_partner_ids == 0)
                add_warning(c, 0, "[microsoft] partner_ids is not set: the one Partner Center account "
                            "checks every order, whatever partnerId its link names");
}

/* Required keys, inherited values, paths and secrets of [microsoft.NAME]. */
static void finish_accounts(struct ctx *c, const char *secret_base) {
        struct cfg *cfg = c->cfg;
        for (size_t i = 0; i < cfg->n_accounts; i++) {
                struct cfg_microsoft *a = &cfg->accounts[i];
                const struct acct_lines *l = &c->acct[i];
                char label[16 + CFG_ACCOUNT_NAME_MAX];
                snprintf(label, sizeof(label), "microsoft.%s", a->name);
                for (size_t k = 0; k < N_KEYS; k++) {
                        if (strcmp(keys[k].section, "microsoft") != 0 || l->key[k])
                                continue;
                        if (keys[k].flags & (F_REQUIRED | F_ACCOUNT))
                                add_error(c, l->header, "[%s] %s: missing required key", label, keys[k].key);
                        else if (!(keys[k].flags & F_SHARED))
                                inherit(c, &keys[k], a);
                }
                size_t ki = 0;
                resolve_path(c, &a->ca_file, cfg->dir);
                resolve_path(c, &a->client_secret_file, secret_base);
                key_lookup("microsoft", "ca_file", &ki);
                if (l->key[ki])   /* an inherited one is checked in [microsoft] */
                        check_file_readable_at(c, label, l->key[ki], "ca_file", a->ca_file);
                key_lookup("microsoft", "client_secret_file", &ki);
                if (a->client_secret_file && !(c->flags & CFG_NO_SECRETS))
                        load_secret_at(c, label, l->key[ki], "client_secret_file", a->client_secret_file,
                                       &a->client_secret);
        }
        check_partner_ids(c);
}

size_t cfg_n_accounts(const struct cfg *c) {
        return c ? 1 + c->n_accounts : 0;
}

const struct cfg_microsoft *cfg_account(const struct cfg *c, size_t i) {
        if (!c || i > c->n_accounts)
                return NULL;
        return i == 0 ? &c->microsoft : &c->accounts[i - 1];
}

char *cfg_template_dir(const struct cfg *c) {
        if (c->mail.template_dir)
                return strdup(c->mail.template_dir);
        return path_join(c->dir, "templates");
}

const struct cfg_microsoft *cfg_account_for_partner(const struct cfg *c, const char *partner_id) {
        for (size_t i = 0; partner_id && i < cfg_n_accounts(c); i++) {
                const struct cfg_microsoft *a = cfg_account(c, i);
                for (size_t j = 0; j < a->n_partner_ids; j++)
                        if (strcmp(a->partner_ids[j], partner_id) == 0)
                                return a;
        }
        /* one account without partner_ids answers for everything */
        if (c && c->n_accounts == 0 && c->microsoft.n_partner_ids == 0)
                return &c->microsoft;
        return NULL;
}

/* ---- [cluster] (docs/cluster.md) ---- */

/* etcd = URL, URL, ...: each https:// (http:// only to loopback), no path. */
static void cluster_endpoints(struct ctx *c, unsigned line) {
        struct cfg_cluster *k = &c->cfg->cluster;
        char q[QUOTE_BUF];
        char **v = NULL;
        size_t n = 0;
        int r = split_list(k->etcd, &v, &n);
        if (r == -ENOMEM) {
                c->oom = true;
                return;
        }
        if (r < 0 || n > CFG_CLUSTER_MAX_ENDPOINTS) {
                add_error(c, line, "[cluster] etcd: %s", r < 0 ? "empty item in the list" : "more than 16 endpoints");
                strv_free(v, n);
                return;
        }
        bool ok = true;
        for (size_t i = 0; i < n; i++) {
                const char *msg = NULL;
                size_t len = strlen(v[i]);
                if (len > 0 && v[i][len - 1] == '/')
                        v[i][--len] = '\0';
                r = url_check_endpoint(v[i], URL_STRICT | URL_ALLOW_HTTP, NULL, &msg);
                if (r == -ENOMEM)
                        c->oom = true;
                const char *sl = strstr(v[i], "//");
                if (r == 0 && sl && strchr(sl + 2, '/'))
                        r = -EINVAL, msg = "an etcd endpoint is scheme://host:port, without a path";
                for (size_t j = 0; r == 0 && j < i; j++)
                        if (strcmp(v[i], v[j]) == 0)
                                r = -EINVAL, msg = "listed twice";
                if (r < 0 && r != -ENOMEM) {
                        ok = false;
                        if (r == -EPERM)
                                add_error(c, line, "[cluster] etcd: %s", msg);
                        else
                                add_error(c, line, "[cluster] etcd: %s: '%s'", msg, quote(v[i], q));
                }
        }
        char **nv = ok ? reallocarray(v, n + 1, sizeof(char *)) : NULL;
        if (!nv) {
                c->oom = c->oom || ok;
                strv_free(v, n);
                return;
        }
        nv[n] = NULL;
        k->endpoints = nv;
        k->n_endpoints = n;
}

/* The deposition rule: a request started while active must land before
 * another instance can win, i.e. within lease_ttl/2.  Timeouts not set in
 * the file default below it; ones set above it are errors. */
static void cluster_timeouts(struct ctx *c) {
        struct cfg *cfg = c->cfg;
        int64_t limit = (cfg->cluster.lease_ttl - 1) / 2;   /* 2 * t < lease_ttl */
        unsigned lh, lc, ll;
        char t[32], l[32];

        key_by_name("daemon", "http_timeout", &lh, c);
        key_by_name("daemon", "connect_timeout", &lc, c);
        key_by_name("cluster", "lease_ttl", &ll, c);
        util_format_duration(cfg->cluster.lease_ttl, l, sizeof(l));
        if (!lh)
                cfg->daemon.http_timeout = limit < 1 ? 1 : limit;
        if (!lc && cfg->daemon.connect_timeout > cfg->daemon.http_timeout)
                cfg->daemon.connect_timeout = cfg->daemon.http_timeout;
        if (2 * cfg->daemon.http_timeout >= cfg->cluster.lease_ttl) {
                util_format_duration(cfg->daemon.http_timeout, t, sizeof(t));
                add_error(c, lh ? lh : ll,
                          "[daemon] http_timeout: %s must be shorter than half of [cluster] lease_ttl %s "
                          "(a deposed leader's request must land before another instance can take over); "
                          "lower http_timeout or raise lease_ttl", t, l);
        }
}

/* Cross-key checks, defaults and paths of [cluster]; nothing when the
 * section is absent (single host, exactly as without it). */
static void cluster_finish(struct ctx *c, const char *secret_base) {
        struct cfg_cluster *k = &c->cfg->cluster;
        unsigned line, lc, lk;
        char q[QUOTE_BUF];

        for (size_t i = 0; i < N_KEYS; i++)
                if (strcmp(keys[i].section, "cluster") == 0 && c->key_line[i])
                        k->enabled = true;
        if (!k->enabled)
                return;
        key_by_name("cluster", "etcd", &line, c);
        if (!line)
                add_error(c, 0, "[cluster] etcd: missing required key (the [cluster] section is present)");
        else
                cluster_endpoints(c, line);
        if (!k->lease_ttl)
                k->lease_ttl = DEF_LEASE_TTL;
        if (!k->prefix && !(k->prefix = strdup(DEF_CLUSTER_PREFIX)))
                c->oom = true;
        key_by_name("cluster", "prefix", &line, c);
        if (k->prefix && (k->prefix[0] != '/' || k->prefix[strlen(k->prefix) - 1] != '/' || strlen(k->prefix) > 128))
                add_error(c, line, "[cluster] prefix: '%s' must start and end with '/' (at most 128 bytes)",
                          quote(k->prefix, q));
        if (!k->name) {
                char host[256] = "";
                if (gethostname(host, sizeof(host) - 1) < 0 || !host[0] || util_has_ctl(host, false) || strchr(host, ' '))
                        add_error(c, 0, "[cluster] name: cannot use the host name; set name");
                else if (!(k->name = strdup(host)))
                        c->oom = true;
        }
        cluster_timeouts(c);

        key_by_name("cluster", "cert_file", &lc, c);
        key_by_name("cluster", "key_file", &lk, c);
        if (lc && !lk)
                add_error(c, lc, "[cluster] cert_file: set without key_file");
        if (lk && !lc)
                add_error(c, lk, "[cluster] key_file: set without cert_file");
        resolve_path(c, &k->ca_file, c->cfg->dir);
        resolve_path(c, &k->cert_file, secret_base);
        resolve_path(c, &k->key_file, secret_base);
        check_file_readable(c, "cluster", "ca_file", k->ca_file);
        check_file_readable(c, "cluster", "cert_file", k->cert_file);
        check_file_readable(c, "cluster", "key_file", k->key_file);
}

static void finish(struct ctx *c) {
        struct cfg *cfg = c->cfg;
        unsigned line;

        /* Required keys. */
        for (size_t i = 0; i < N_KEYS; i++)
                if ((keys[i].flags & F_REQUIRED) && !c->key_line[i])
                        add_error(c, 0, "[%s] %s: missing required key", keys[i].section,
                                  keys[i].key);
        const char *creds = getenv("CREDENTIALS_DIRECTORY");
        const char *base = creds && *creds ? creds : cfg->dir;
        cluster_finish(c, base);
        key_by_name("mail", "smtp_url", &line, c);
        if (cfg->mail.transport == CFG_TRANSPORT_SMTP && !line)
                add_error(c, 0, "[mail] smtp_url: missing required key (transport = smtp)");

        unsigned lu, lp;
        key_by_name("mail", "username", &lu, c);
        key_by_name("mail", "password_file", &lp, c);
        if (lu && !lp)
                add_error(c, lu, "[mail] username: set without password_file");
        if (lp && !lu)
                add_error(c, lp, "[mail] password_file: set without username");

        key_by_name("mail", "deadline_warning", &line, c);
        if (cfg->mail.deadline_warning >= cfg->mail.deadline) {
                char w[32], d[32];
                util_format_duration(cfg->mail.deadline_warning, w, sizeof(w));
                util_format_duration(cfg->mail.deadline, d, sizeof(d));
                add_error(c, line, "[mail] deadline_warning: %s must be shorter than deadline %s",
                          w, d);
        }
        key_by_name("daemon", "connect_timeout", &line, c);
        if (cfg->daemon.connect_timeout > cfg->daemon.http_timeout)
                add_error(c, line, "[daemon] connect_timeout: longer than http_timeout");

        resolve_state_dir(c);

        /* Plain paths resolve next to the config file. */
        resolve_path(c, &cfg->marketplace.ca_file, cfg->dir);
        resolve_path(c, &cfg->microsoft.ca_file, cfg->dir);
        resolve_path(c, &cfg->mail.ca_file, cfg->dir);
        resolve_path(c, &cfg->mail.template_dir, cfg->dir);
        check_file_readable(c, "marketplace", "ca_file", cfg->marketplace.ca_file);
        check_file_readable(c, "microsoft", "ca_file", cfg->microsoft.ca_file);
        check_file_readable(c, "mail", "ca_file", cfg->mail.ca_file);

        /* Secrets resolve in $CREDENTIALS_DIRECTORY, else next to the config. */
        resolve_path(c, &cfg->marketplace.token_file, base);
        resolve_path(c, &cfg->microsoft.client_secret_file, base);
        resolve_path(c, &cfg->mail.password_file, base);
        finish_accounts(c, base);
        if (c->flags & CFG_NO_SECRETS)
                return;
        if (cfg->marketplace.token_file)
                load_secret(c, "marketplace", "token_file", cfg->marketplace.token_file,
                            &cfg->marketplace.token);
        if (cfg->microsoft.client_secret_file)
                load_secret(c, "microsoft", "client_secret_file", cfg->microsoft.client_secret_file,
                            &cfg->microsoft.client_secret);
        if (cfg->mail.password_file)
                load_secret(c, "mail", "password_file", cfg->mail.password_file,
                            &cfg->mail.password);
}

/* The absolute directory of path (as written when it cannot be resolved). */
static char *dir_of(const char *path) {
        const char *slash = strrchr(path, '/');
        char *d;
        if (!slash)
                d = strdup(".");
        else if (slash == path)
                d = strdup("/");
        else
                d = strndup(path, (size_t) (slash - path));
        if (!d)
                return NULL;
        char *abs = realpath(d, NULL);
        if (abs) {
                free(d);
                return abs;
        }
        return d;
}

int cfg_load(const char *path, unsigned flags, struct cfg **ret, struct cfg_errors *errors) {
        struct ctx c = { .path = path, .flags = flags, .errors = errors };
        char *text = NULL;
        size_t len = 0;
        int r;

        *ret = NULL;
        c.cfg = calloc(1, sizeof(struct cfg));
        if (!c.cfg)
                return -ENOMEM;
        c.cfg->path = strdup(path);
        c.cfg->dir = dir_of(path);
        if (!c.cfg->path || !c.cfg->dir || set_defaults(c.cfg) < 0) {
                r = -ENOMEM;
                goto out;
        }

        r = util_read_file(path, CFG_FILE_MAX, &text, &len);
        if (r == -EFBIG) {
                add_error(&c, 0, "file too large (more than %d bytes)", CFG_FILE_MAX);
                goto out;
        }
        if (r < 0) {
                add_error(&c, 0, "cannot read: %s", strerror(-r));
                goto out;
        }

        parse_text(&c, text, len);
        finish(&c);

        if (c.oom)
                r = -ENOMEM;
        else if (c.n_errors > 0)
                r = -EINVAL;
        else {
                *ret = c.cfg;
                c.cfg = NULL;
                r = 0;
        }
out:
        if (text) {
                explicit_bzero(text, len);
                free(text);
        }
        cfg_free(c.cfg);
        free(c.acct);
        return r;
}
