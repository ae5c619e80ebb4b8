/* SPDX-License-Identifier: MIT */
#include "status.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jsonx.h"
#include "store.h"
#include "util.h"

#define STATUS_MAX_OUTPUT ((size_t) 256 << 20)
#define CELL_MAX 40   /* display columns of one cell at most */

enum {
        COL_ORDER,
        COL_CUSTOMER,
        COL_IDENT,
        COL_ACCOUNT,
        COL_STATE,
        COL_FIRST_SEEN,
        COL_NOTIFIED,
        COL_REMINDERS,
        COL_NEXT_CHECK,
        COL_DEADLINE,
        _COL_MAX,
};

static const char *const headers[_COL_MAX] = {
        "ORDER", "CUSTOMER", "DOMAIN/TENANT", "ACCOUNT", "STATE", "FIRST SEEN",
        "NOTIFIED", "REMINDERS", "NEXT CHECK", "DEADLINE",
};

static bool order_is_open(const struct tracked_order *t) {
        return t->status == TRACK_BLOCKED || t->status == TRACK_PROCESS_SENT;
}

static int64_t order_deadline(const struct tracked_order *t, int64_t deadline) {
        return order_is_open(t) ? tracked_order_deadline(t, deadline) : 0;
}

/* "2026-08-01 09:20Z", or "-" */
static void fmt_abs(int64_t t, char *buf, size_t n) {
        time_t tt = (time_t) t;
        struct tm tm;
        if (!t || !gmtime_r(&tt, &tm) || strftime(buf, n, "%Y-%m-%d %H:%MZ", &tm) == 0)
                snprintf(buf, n, "-");
}

/* "in 4h", "3d2h ago", "now": two significant units at most. */
static void fmt_rel(int64_t t, int64_t now, char *buf, size_t n) {
        int64_t d = t - now, a = d < 0 ? -d : d;
        char dur[32];
        if (a < 60) {
                snprintf(buf, n, "now");
                return;
        }
        if (a >= UTIL_SEC_PER_DAY)
                a -= a % UTIL_SEC_PER_HOUR;
        else if (a >= UTIL_SEC_PER_HOUR)
                a -= a % UTIL_SEC_PER_MIN;
        else
                a -= a % 60;
        util_format_duration(a, dur, sizeof(dur));
        snprintf(buf, n, d > 0 ? "in %s" : "%s ago", dur);
}

/* Display width of UTF-8 text (code points). */
static size_t width(const char *s) {
        size_t w = 0;
        for (; *s; s++)
                if (((unsigned char) *s & 0xc0) != 0x80)
                        w++;
        return w;
}

/* A copy fit for a terminal cell: control bytes become '?', cut to
 * CELL_MAX columns with "..." (on a code point boundary). */
static char *cell(const char *s) {
        if (!s || !*s)
                return strdup("-");
        size_t len = strlen(s), cut = len, w = 0;
        for (size_t i = 0; i < len; i++) {
                if (((unsigned char) s[i] & 0xc0) == 0x80)
                        continue;
                if (w == CELL_MAX - 3 && width(s + i) > 3) {
                        cut = i;
                        break;
                }
                w++;
        }
        char *r = malloc(cut + 4);
        if (!r)
                return NULL;
        for (size_t i = 0; i < cut; i++) {
                unsigned char ch = (unsigned char) s[i];
                r[i] = ch < 0x20 || ch == 0x7f ? '?' : (char) ch;
        }
        strcpy(r + cut, cut < len ? "..." : "");
        return r;
}

static char *cellf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *cellf(const char *fmt, ...) {
        char buf[128];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        return cell(buf);
}

/* Which Partner Center account checks the customer: its name, "none"
 * when no account lists the link's partnerId (never processed), "-" when
 * tracked before accounts and not seen since. */
static const char *account_text(const struct tracked_customer *c) {
        if (!c->account)
                return NULL;
        return strcmp(c->account, ACCOUNT_NONE) == 0 ? "none (partnerId not listed)" : c->account;
}

static void state_cell(const struct tracked_customer *c, const struct tracked_order *t,
                       char *buf, size_t n) {
        if (t->status == TRACK_CLOSED)
                snprintf(buf, n, "closed: %s", t->outcome ? t->outcome : "-");
        else if (t->status == TRACK_BLOCKED && c->gdap_ended)
                snprintf(buf, n, "blocked (GDAP %s: never processed)", c->gdap_ended);
        else if (t->status == TRACK_BLOCKED && t->outcome)
                /* "process-refused": not processed until the order changes */
                snprintf(buf, n, "blocked (%s)", t->outcome);
        else if (t->status == TRACK_BLOCKED && c->accepted_at)
                snprintf(buf, n, "blocked (accepted)");
        else
                snprintf(buf, n, "%s", track_status_to_string(t->status));
}

static int render_text(const struct state *s, int64_t now, int64_t deadline, char **ret) {
        size_t nrows = 0, w[_COL_MAX];
        char *(*rows)[_COL_MAX] = NULL;
        struct util_buf b;
        int r = -ENOMEM;

        for (size_t i = 0; i < s->n_customers; i++)
                nrows += s->customers[i].n_orders;
        if (nrows == 0) {
                *ret = strdup("No orders tracked.\n");
                return *ret ? 0 : -ENOMEM;
        }
        rows = calloc(nrows, sizeof(*rows));
        if (!rows)
                return -ENOMEM;
        size_t k = 0;
        for (size_t i = 0; i < s->n_customers; i++) {
                const struct tracked_customer *c = &s->customers[i];
                for (size_t j = 0; j < c->n_orders; j++, k++) {
                        const struct tracked_order *t = &c->orders[j];
                        char a[64], b2[64], st[96];
                        char **row = rows[k];
                        bool open = order_is_open(t);
                        row[COL_ORDER] = cell(t->id);
                        row[COL_CUSTOMER] = cell(c->name);
                        row[COL_IDENT] = cell(c->tenant_id ? c->tenant_id : c->domain);
                        row[COL_ACCOUNT] = cell(account_text(c));
                        state_cell(c, t, st, sizeof(st));
                        row[COL_STATE] = cell(st);
                        fmt_abs(t->first_seen, a, sizeof(a));
                        row[COL_FIRST_SEEN] = cell(a);
                        fmt_abs(t->notified ? c->notified_at : 0, a, sizeof(a));
                        row[COL_NOTIFIED] = cell(a);
                        row[COL_REMINDERS] = t->status == TRACK_BLOCKED ? cellf("%d", c->reminders)
                                                                        : cell(NULL);
                        if (t->status == TRACK_BLOCKED) {
                                fmt_rel(c->next_check > now ? c->next_check : now, now, a, sizeof(a));
                                row[COL_NEXT_CHECK] = cell(a);
                        } else
                                row[COL_NEXT_CHECK] = cell(NULL);
                        int64_t d = open ? order_deadline(t, deadline) : 0;
                        if (d) {
                                fmt_abs(d, a, sizeof(a));
                                if (d <= now)
                                        row[COL_DEADLINE] = cellf("%s (passed)", a);
                                else {
                                        fmt_rel(d, now, b2, sizeof(b2));
                                        row[COL_DEADLINE] = cellf("%s (%s)", a, b2);
                                }
                        } else
                                row[COL_DEADLINE] = cell(NULL);
                        for (int col = 0; col < _COL_MAX; col++)
                                if (!row[col])
                                        goto out;
                }
        }
        for (int col = 0; col < _COL_MAX; col++) {
                w[col] = width(headers[col]);
                for (size_t i = 0; i < nrows; i++)
                        if (width(rows[i][col]) > w[col])
                                w[col] = width(rows[i][col]);
        }
        util_buf_init(&b, STATUS_MAX_OUTPUT);
        for (size_t i = 0; i <= nrows; i++) {
                for (int col = 0; col < _COL_MAX; col++) {
                        const char *v = i == 0 ? headers[col] : rows[i - 1][col];
                        bool last = col == _COL_MAX - 1;
                        if (util_buf_puts(&b, v) < 0)
                                goto out_buf;
                        for (size_t pad = width(v); !last && pad < w[col] + 2; pad++)
                                if (util_buf_puts(&b, " ") < 0)
                                        goto out_buf;
                }
                if (util_buf_puts(&b, "\n") < 0)
                        goto out_buf;
        }
        *ret = util_buf_steal(&b);
        r = *ret ? 0 : -ENOMEM;
        goto out;
out_buf:
        util_buf_free(&b);
out:
        for (size_t i = 0; i < nrows; i++)
                for (int col = 0; col < _COL_MAX; col++)
                        free(rows[i][col]);
        free(rows);
        return r;
}

/* The order as the state file holds it, and its deadline. */
static json_t *order_json(const struct tracked_order *t, int64_t deadline, bool *ok) {
        json_t *o = store_order_json(t, ok);
        if (o)
                jsonx_put(o, "deadline", jsonx_time(order_deadline(t, deadline)), ok);
        return o;
}

static int render_json(const struct state *s, int64_t now, int64_t deadline, char **ret) {
        bool ok = true;
        json_t *root = json_object(), *customers = json_array();
        if (!root || !customers) {
                json_decref(root);
                json_decref(customers);
                return -ENOMEM;
        }
        jsonx_put(root, "generated_at", jsonx_time(now), &ok);
        for (size_t i = 0; i < s->n_customers; i++) {
                const struct tracked_customer *c = &s->customers[i];
                json_t *jc = json_object(), *orders = json_array();
                if (!jc || !orders || json_array_append_new(customers, jc) < 0) {
                        json_decref(jc);
                        json_decref(orders);
                        ok = false;
                        break;
                }
                jsonx_put(jc, "key", jsonx_str(c->key), &ok);
                /* the account name, "-" when none answers, null when not yet known */
                jsonx_put(jc, "account", jsonx_str(c->account), &ok);
                /* what it waits for: the reseller relationship or a GDAP one */
                jsonx_put(jc, "kind", json_string(customer_key_is_gdap(c->key) ? "gdap" : "reseller"), &ok);
                jsonx_put(jc, "gdap_ended", jsonx_str(c->gdap_ended), &ok);
                jsonx_put(jc, "name", jsonx_str(c->name), &ok);
                jsonx_put(jc, "tenant_id", jsonx_str(c->tenant_id), &ok);
                jsonx_put(jc, "domain", jsonx_str(c->domain), &ok);
                jsonx_put(jc, "first_seen", jsonx_time(c->first_seen), &ok);
                jsonx_put(jc, "notified_at", jsonx_time(c->notified_at), &ok);
                jsonx_put(jc, "reminders", json_integer(c->reminders), &ok);
                jsonx_put(jc, "final_warning_sent", json_boolean(c->final_warning_sent), &ok);
                jsonx_put(jc, "next_check", jsonx_time(c->next_check), &ok);
                jsonx_put(jc, "accepted_at", jsonx_time(c->accepted_at), &ok);
                jsonx_put(jc, "deadline", jsonx_time(tracked_customer_deadline(c, deadline)), &ok);
                for (size_t j = 0; j < c->n_orders; j++) {
                        json_t *jo = order_json(&c->orders[j], deadline, &ok);
                        if (!jo || json_array_append_new(orders, jo) < 0)
                                ok = false;
                }
                jsonx_put(jc, "orders", orders, &ok);
        }
        jsonx_put(root, "customers", customers, &ok);
        char *text = ok ? json_dumps(root, JSON_SORT_KEYS | JSON_INDENT(2)) : NULL;
        json_decref(root);
        if (!text)
                return -ENOMEM;
        int r = asprintf(ret, "%s\n", text);
        free(text);
        return r < 0 ? -ENOMEM : 0;
}

int status_render(const struct state *s, int64_t now, int64_t deadline, bool json, char **ret) {
        if (!s || !ret)
                return -EINVAL;
        return json ? render_json(s, now, deadline, ret) : render_text(s, now, deadline, ret);
}
