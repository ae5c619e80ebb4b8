/* SPDX-License-Identifier: MIT */
#include "metrics.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "marketplace.h"
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
        m->counters = st ? &st->counters : NULL;
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

/* ---- counters ---- */

/* One sample of a counter series (labels: validated words, no escaping). */
static int counter_sample(struct util_buf *b, const char *metric, const char *const *keys,
                          const char *const *values, unsigned n, uint64_t v) {
        int r = util_buf_puts(b, metric);
        for (unsigned i = 0; i < n; i++)
                r |= util_buf_printf(b, "%s%s=\"%s\"", i ? "," : "{", keys[i], values[i]);
        return r | util_buf_printf(b, "%s %llu\n", n ? "}" : "", (unsigned long long) v);
}

/* A one-label counter: every value of known (each of them, 0 included:
 * increase() needs the series before its first step), then any other
 * value the state holds (a kind of a later version, "other"). */
static int counter_one_label(struct util_buf *b, const struct counters *cs, enum counter_name name,
                             const char *metric, const char *key, const char *const *known, size_t n_known) {
        int r = 0;
        for (size_t i = 0; i < n_known; i++)
                r |= counter_sample(b, metric, &key, &known[i], 1, counters_get(cs, name, known[i], NULL));
        for (size_t i = 0; i < cs->n; i++) {
                const struct counter *e = &cs->items[i];
                bool seen = false;
                for (size_t k = 0; e->name == name && k < n_known && !seen; k++)
                        seen = strcmp(known[k], e->label[0]) == 0;
                if (e->name == name && !seen) {
                        const char *v = e->label[0];
                        r |= counter_sample(b, metric, &key, &v, 1, e->value);
                }
        }
        return r;
}

/* partnerd_http_requests_total: every status class of each API seen. */
static int counter_http(struct util_buf *b, const struct counters *cs) {
        static const char *const keys[] = { "api", "status_class" };
        static const char *const classes[] = { "2xx", "3xx", "4xx", "5xx", "error" };
        int r = 0;
        for (size_t i = 0; i < cs->n; i++) {
                const struct counter *e = &cs->items[i];
                bool first = e->name == COUNTER_HTTP_REQUESTS;
                for (size_t k = 0; first && k < i; k++)   /* the API's first series */
                        first = !(cs->items[k].name == COUNTER_HTTP_REQUESTS &&
                                  strcmp(cs->items[k].label[0], e->label[0]) == 0);
                for (size_t c = 0; first && c < sizeof(classes) / sizeof(classes[0]); c++) {
                        const char *values[] = { e->label[0], classes[c] };
                        r |= counter_sample(b, "partnerd_http_requests_total", keys, values, 2,
                                            counters_get(cs, COUNTER_HTTP_REQUESTS, e->label[0], classes[c]));
                }
        }
        return r;
}

static int head(struct util_buf *b, const char *name, const char *type, const char *help);

static int format_counters(struct util_buf *b, const struct counters *cs) {
        const char *kinds[_MAIL_KIND_MAX], *outcomes[MP_UNKNOWN + 1];
        int r = 0;
        for (size_t k = 0; k < _MAIL_KIND_MAX; k++)
                kinds[k] = mail_kind_to_string((enum mail_kind) k);
        for (size_t o = 0; o <= MP_UNKNOWN; o++)
                outcomes[o] = mp_outcome_to_string((enum mp_outcome) o);
        r |= head(b, "partnerd_mails_sent_total", "counter",
                  "Mails the SMTP server accepted, by kind (kept across restarts).");
        r |= counter_one_label(b, cs, COUNTER_MAILS_SENT, "partnerd_mails_sent_total", "kind", kinds,
                               _MAIL_KIND_MAX);
        r |= head(b, "partnerd_mail_failures_total", "counter",
                  "Failed mail delivery attempts, SMTP login refusals (535) included (kept across restarts).");
        r |= counter_sample(b, "partnerd_mail_failures_total", NULL, NULL, 0,
                            counters_get(cs, COUNTER_MAIL_FAILURES, NULL, NULL));
        r |= head(b, "partnerd_process_total", "counter",
                  "Process calls by outcome, as the journal's PROCESS_OUTCOME (kept across restarts).");
        r |= counter_one_label(b, cs, COUNTER_PROCESS, "partnerd_process_total", "outcome", outcomes,
                               MP_UNKNOWN + 1);
        r |= head(b, "partnerd_http_requests_total", "counter",
                  "HTTP requests sent (each attempt), by API and status class; error: no answer (kept across restarts).");
        return r | counter_http(b, cs);
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
        if (m->counters)
                r |= format_counters(&b, m->counters);
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
