/* SPDX-License-Identifier: MIT */
#include "metrics.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* Label values, in enum metrics_block_kind order. */
static const char *const block_kind[_METRICS_BLOCK_MAX] = {
        [METRICS_BLOCK_RESELLER] = "reseller",
        [METRICS_BLOCK_GDAP] = "gdap",
        [METRICS_BLOCK_DRAFT] = "draft",
        [METRICS_BLOCK_OTHER] = "other",
};

/* The metrics_block_kind an order counts under, -1 if none. */
static int order_block_kind(const struct tracked_customer *c, const struct tracked_order *t) {
        switch (t->status) {
        case TRACK_BLOCKED: return customer_key_is_gdap(c->key) ? METRICS_BLOCK_GDAP : METRICS_BLOCK_RESELLER;
        case TRACK_DRAFT: return METRICS_BLOCK_DRAFT;
        case TRACK_OTHER_QUERY: return METRICS_BLOCK_OTHER;
        default: return -1;
        }
}

/* The entry of account name (NULL: the default one), added when new. */
static struct metrics_account *account_entry(struct metrics_snapshot *m, const char *name) {
        name = name ? name : ACCOUNT_DEFAULT;
        for (size_t i = 0; i < m->n_accounts; i++)
                if (strcmp(m->accounts[i].name, name) == 0)
                        return &m->accounts[i];
        if (m->n_accounts == METRICS_MAX_ACCOUNTS)
                return &m->accounts[METRICS_MAX_ACCOUNTS - 1];
        m->accounts[m->n_accounts] = (struct metrics_account) { .name = name };
        return &m->accounts[m->n_accounts++];
}

void metrics_from_state(const struct state *st, int64_t deadline, struct metrics_snapshot *m) {
        memset(m->blocked, 0, sizeof(m->blocked));
        m->n_accounts = 0;
        (void) account_entry(m, NULL);   /* the default account is always there */
        m->deadline_soonest = 0;
        for (size_t i = 0; st && i < st->n_customers; i++) {
                const struct tracked_customer *c = &st->customers[i];
                bool pending = false;
                for (size_t j = 0; j < c->n_orders; j++) {
                        const struct tracked_order *t = &c->orders[j];
                        int k = order_block_kind(c, t);
                        if (k < 0)
                                continue;
                        m->blocked[k]++;
                        if (k != METRICS_BLOCK_RESELLER && k != METRICS_BLOCK_GDAP)
                                continue;
                        pending = pending || !c->accepted_at;
                        int64_t base = t->querying_since ? t->querying_since : t->first_seen;
                        if (base && (!m->deadline_soonest || base + deadline < m->deadline_soonest))
                                m->deadline_soonest = base + deadline;
                }
                account_entry(m, c->account)->pending += pending;
        }
}

static int head(struct util_buf *b, const char *name, const char *type, const char *help) {
        return util_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

int metrics_format(const struct metrics_snapshot *m, char **ret) {
        struct util_buf b;
        int r = 0;

        util_buf_init(&b, 1u << 20);
        r |= head(&b, "partnerd_up", "gauge", "1 while partnerd runs, 0 once it has stopped.");
        r |= util_buf_printf(&b, "partnerd_up %d\n", m->up ? 1 : 0);
        if (m->last_success) {
                r |= head(&b, "partnerd_last_cycle_success_timestamp_seconds", "gauge",
                          "When the last successful poll cycle ended (Unix time).");
                r |= util_buf_printf(&b, "partnerd_last_cycle_success_timestamp_seconds %lld\n",
                                     (long long) m->last_success);
        }
        r |= head(&b, "partnerd_cycle_duration_seconds", "gauge", "How long the last poll cycle took.");
        r |= util_buf_printf(&b, "partnerd_cycle_duration_seconds %.3f\n", m->cycle_duration);
        r |= head(&b, "partnerd_blocked_orders", "gauge", "Orders partnerd tracks as blocked, by kind.");
        for (size_t k = 0; k < _METRICS_BLOCK_MAX; k++)
                r |= util_buf_printf(&b, "partnerd_blocked_orders{kind=\"%s\"} %zu\n", block_kind[k], m->blocked[k]);
        r |= head(&b, "partnerd_pending_customers", "gauge",
                  "Customers whose relationship acceptance is awaited, by account.");
        for (size_t i = 0; i < m->n_accounts; i++) {
                r |= util_buf_puts(&b, "partnerd_pending_customers{account=\"");
                for (const char *p = m->accounts[i].name; *p; p++)   /* label value escapes */
                        r |= *p == '\\' ? util_buf_puts(&b, "\\\\") : *p == '"' ? util_buf_puts(&b, "\\\"")
                             : *p == '\n' ? util_buf_puts(&b, "\\n") : util_buf_append(&b, p, 1);
                r |= util_buf_printf(&b, "\"} %zu\n", m->accounts[i].pending);
        }
        if (m->deadline_soonest) {
                r |= head(&b, "partnerd_deadline_soonest_timestamp_seconds", "gauge",
                          "The earliest platform deadline among blocked orders (Unix time).");
                r |= util_buf_printf(&b, "partnerd_deadline_soonest_timestamp_seconds %lld\n",
                                     (long long) m->deadline_soonest);
        }
        if (r < 0) {
                util_buf_free(&b);
                return -ENOMEM;
        }
        *ret = util_buf_steal(&b);
        return *ret ? 0 : -ENOMEM;
}

int metrics_write(const char *path, const struct metrics_snapshot *m) {
        char *text = NULL;
        int r = metrics_format(m, &text);
        if (r >= 0)
                r = util_write_file_atomic(path, text, strlen(text), 0644);
        free(text);
        return r;
}
