/* SPDX-License-Identifier: MIT */
/*
 * store: the state file.
 *
 * Schema version 1 (keys sorted on output, customers and orders in
 * insertion order, times as "YYYY-mm-ddTHH:MM:SSZ" or null for "never"):
 *
 *   {"version": 1,
 *    "customers": [
 *      {"key": "[<account>/]<tenant id | domain:<domain>> | gdap:<relationship id>",
 *       "account": s|null,
 *       "tenant_id": s|null,
 *       "domain": s|null, "name": s|null, "relationship_url": s|null,
 *       "first_seen": t, "notified_at": t, "last_mail_at": t,
 *       "reminders": n, "final_warning_sent": b, "deadline_passed_logged": b,
 *       "warned_deadline": t, "confirmation_sent": b,
 *       "next_check": t, "check_count": n, "accepted_at": t, "gdap_ended": s|null,
 *       "orders": [
 *         {"id": "ORD-…", "status": "blocked|processing_sent|closed|other_query|draft",
 *          "querying_at_raw": s|null, "querying_since": t, "first_seen": t,
 *          "process_sent_at": t, "process_attempts": n, "outcome": s|null,
 *          "closed_at": t, "template_id": s|null, "relationship_url": s|null,
 *          "notified": b, "unlisted_partner": s|null}]}]}
 *
 * and, once anything was counted, before "customers" (sorted keys):
 *
 *    "counters": {"http_requests": {"<api>": {"2xx|3xx|4xx|5xx|error": n}},
 *                 "mail_failures": n, "mails_sent": {"<mail kind>": n},
 *                 "process": {"done|moved|gone|refused|unknown": n}}
 *
 * the partnerd_*_total metrics (lib/counters.h), saved with the state so
 * that they survive restarts.  They came without a version change: a file
 * without "counters" loads as zeros, and a partnerd that predates them
 * reads the file and ignores the key (its next save drops the counts:
 * Prometheus sees a counter reset).  Unknown counter names are ignored;
 * label values of known ones are kept as they are (a later mail kind).
 *
 * "account" (the Partner Center account the customer is checked with,
 * "-" for none) came with [microsoft.NAME] accounts, without a version
 * change: a file written before has no "account", and such a customer
 * keeps its key and mail state until its next order tells the engine which
 * account it belongs to (engine.c, adopt_legacy_customers), so nobody is
 * mailed again and nothing is processed again.
 *
 * Legacy layout (version 0, or no "version"): one flat object of orders,
 *
 *   {"orders": {"ORD-…": {"customer": "<key>", "status": "…",
 *               "querying_since": t, "first_seen": t, "notified_at": t,
 *               "reminders": n, "accepted_at": t, "process_sent_at": t,
 *               "outcome": s}}}
 *
 * which is migrated by grouping the orders per customer.
 *
 * Unknown fields are ignored; missing optional fields take their zero
 * value; a field of the wrong type makes the file corrupt.
 */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "jsonx.h"
#include "util.h"

#define STORE_FILE "state.json"
#define STORE_LOCK_FILE "lock"
#define STORE_MAX_SIZE ((size_t) 64 << 20)   /* 64 MiB: far beyond any real state */

/* ---- encoding ----------------------------------------------------------- */

json_t *store_order_json(const struct tracked_order *t, bool *ok) {
        json_t *o = json_object();
        if (!o) {
                *ok = false;
                return NULL;
        }
        jsonx_put(o, "id", jsonx_str(t->id), ok);
        jsonx_put(o, "status", json_string(track_status_to_string(t->status)), ok);
        jsonx_put(o, "querying_at_raw", jsonx_str(t->querying_at_raw), ok);
        jsonx_put(o, "querying_since", jsonx_time(t->querying_since), ok);
        jsonx_put(o, "first_seen", jsonx_time(t->first_seen), ok);
        jsonx_put(o, "process_sent_at", jsonx_time(t->process_sent_at), ok);
        jsonx_put(o, "process_attempts", json_integer(t->process_attempts), ok);
        jsonx_put(o, "outcome", jsonx_str(t->outcome), ok);
        jsonx_put(o, "closed_at", jsonx_time(t->closed_at), ok);
        jsonx_put(o, "template_id", jsonx_str(t->template_id), ok);
        jsonx_put(o, "relationship_url", jsonx_str(t->relationship_url), ok);
        jsonx_put(o, "notified", json_boolean(t->notified), ok);
        jsonx_put(o, "unlisted_partner", jsonx_str(t->unlisted_partner), ok);
        return o;
}

static json_t *customer_to_json(const struct tracked_customer *c, bool *ok) {
        json_t *o = json_object(), *orders = json_array();
        if (!o || !orders) {
                json_decref(o);
                json_decref(orders);
                *ok = false;
                return NULL;
        }
        jsonx_put(o, "key", jsonx_str(c->key), ok);
        jsonx_put(o, "account", jsonx_str(c->account), ok);
        jsonx_put(o, "tenant_id", jsonx_str(c->tenant_id), ok);
        jsonx_put(o, "domain", jsonx_str(c->domain), ok);
        jsonx_put(o, "name", jsonx_str(c->name), ok);
        jsonx_put(o, "relationship_url", jsonx_str(c->relationship_url), ok);
        jsonx_put(o, "first_seen", jsonx_time(c->first_seen), ok);
        jsonx_put(o, "notified_at", jsonx_time(c->notified_at), ok);
        jsonx_put(o, "last_mail_at", jsonx_time(c->last_mail_at), ok);
        jsonx_put(o, "reminders", json_integer(c->reminders), ok);
        jsonx_put(o, "final_warning_sent", json_boolean(c->final_warning_sent), ok);
        jsonx_put(o, "deadline_passed_logged", json_boolean(c->deadline_passed_logged), ok);
        jsonx_put(o, "warned_deadline", jsonx_time(c->warned_deadline), ok);
        jsonx_put(o, "confirmation_sent", json_boolean(c->confirmation_sent), ok);
        jsonx_put(o, "next_check", jsonx_time(c->next_check), ok);
        jsonx_put(o, "check_count", json_integer(c->check_count), ok);
        jsonx_put(o, "accepted_at", jsonx_time(c->accepted_at), ok);
        jsonx_put(o, "gdap_ended", jsonx_str(c->gdap_ended), ok);
        for (size_t i = 0; i < c->n_orders; i++) {
                json_t *t = store_order_json(&c->orders[i], ok);
                if (!t || json_array_append_new(orders, t) < 0)
                        *ok = false;
        }
        jsonx_put(o, "orders", orders, ok);
        return o;
}

/* The "counters" object; NULL on OOM. */
static json_t *counters_to_json(const struct counters *cs) {
        json_t *o = json_object();
        bool ok = o != NULL;
        for (size_t i = 0; ok && i < cs->n; i++) {
                const struct counter *e = &cs->items[i];
                const char *key = counter_name_to_string(e->name);
                json_t *v = json_integer(e->value > INT64_MAX ? INT64_MAX : (json_int_t) e->value), *at = o;
                /* {"name": n}, {"name": {"l1": n}}, {"name": {"l1": {"l2": n}}} */
                for (unsigned k = 0; ok && k < counter_name_labels(e->name); k++) {
                        json_t *next = json_object_get(at, key);
                        if (!next && (!(next = json_object()) || json_object_set_new(at, key, next) < 0))
                                ok = false;
                        at = next;
                        key = e->label[k];
                }
                if (!ok || !v || !json_is_object(at) || json_object_set_new(at, key, v) < 0)
                        ok = false;
        }
        if (!ok) {
                json_decref(o);
                return NULL;
        }
        return o;
}

/* json_dump_callback() sink that indents every line after the first by
 * *indent more spaces: a customer dumped on its own then sits at depth 2
 * of the document (2 more), the counters object at depth 1 (1 more).
 * (Dumped strings never contain a raw newline.) */
struct indented {
        FILE *f;
        const char *indent;
};

static int write_indented(const char *buf, size_t size, void *data) {
        const struct indented *w = data;
        for (size_t i = 0; i < size; i++)
                if (putc(buf[i], w->f) == EOF || (buf[i] == '\n' && fputs(w->indent, w->f) == EOF))
                        return -1;
        return 0;
}

/* Dumps v at the given extra indent; -ENOMEM / -EIO. */
static int dump_indented(FILE *f, json_t *v, const char *indent) {
        struct indented w = { f, indent };
        int r = json_dump_callback(v, write_indented, &w, JSON_SORT_KEYS | JSON_INDENT(1));
        return r < 0 ? (ferror(f) ? -EIO : -ENOMEM) : 0;
}

/* Writes the document customer by customer, byte for byte what
 * json_dumps(root, JSON_SORT_KEYS | JSON_INDENT(1)) gives plus a final
 * newline, without ever holding the whole tree or text: 10,000 orders
 * were a 12 MiB tree, an 8 MiB dump buffer and a 6 MiB string at once. */
static int store_write(FILE *f, const struct state *s) {
        fputs("{\n", f);
        if (s->counters.n) {
                json_t *cs = counters_to_json(&s->counters);
                if (!cs)
                        return -ENOMEM;
                fputs(" \"counters\": ", f);
                int r = dump_indented(f, cs, " ");
                json_decref(cs);
                if (r < 0)
                        return r;
                fputs(",\n", f);
        }
        fputs(" \"customers\": [", f);
        for (size_t i = 0; i < s->n_customers; i++) {
                bool ok = true;
                json_t *c = customer_to_json(&s->customers[i], &ok);
                if (!c || !ok) {
                        json_decref(c);
                        return -ENOMEM;
                }
                fputs(i ? ",\n  " : "\n  ", f);
                int r = dump_indented(f, c, "  ");
                json_decref(c);
                if (r < 0)
                        return r;
        }
        fputs(s->n_customers ? "\n ]" : "]", f);
        fprintf(f, ",\n \"version\": %d\n}\n", STATE_VERSION);
        return ferror(f) ? -EIO : 0;
}

int store_to_json(const struct state *s, char **ret) {
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        if (!f)
                return -ENOMEM;
        int r = store_write(f, s);
        if (fclose(f) != 0 && r == 0)
                r = -ENOMEM;
        if (r < 0) {
                free(text);
                return r;
        }
        *ret = text;
        return 0;
}

/* ---- decoding ----------------------------------------------------------- */

struct dec {
        char *err;   /* first error, malloc'd */
        bool oom;
};

static void dec_fail(struct dec *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void dec_fail(struct dec *d, const char *fmt, ...) {
        if (d->err || d->oom)
                return;
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(&d->err, fmt, ap) < 0) {
                d->err = NULL;
                d->oom = true;
        }
        va_end(ap);
}

static bool dec_ok(const struct dec *d) {
        return !d->err && !d->oom;
}

static void get_str(struct dec *d, const json_t *o, const char *k, const char *where, char **dst) {
        const json_t *v = json_object_get(o, k);
        if (!v || json_is_null(v))
                return;
        if (!json_is_string(v)) {
                dec_fail(d, "%s: \"%s\" is not a string", where, k);
                return;
        }
        if (!(*dst = strdup(json_string_value(v))))
                d->oom = true;
}

static void get_time(struct dec *d, const json_t *o, const char *k, const char *where, int64_t *dst) {
        const json_t *v = json_object_get(o, k);
        if (!v || json_is_null(v))
                return;
        if (!json_is_string(v) || util_parse_time(json_string_value(v), dst) < 0)
                dec_fail(d, "%s: \"%s\" is not a timestamp", where, k);
}

static void get_int(struct dec *d, const json_t *o, const char *k, const char *where, int *dst) {
        const json_t *v = json_object_get(o, k);
        if (!v || json_is_null(v))
                return;
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 1000000) {
                dec_fail(d, "%s: \"%s\" is not a small non-negative integer", where, k);
                return;
        }
        *dst = (int) json_integer_value(v);
}

static void get_bool(struct dec *d, const json_t *o, const char *k, const char *where, bool *dst) {
        const json_t *v = json_object_get(o, k);
        if (!v || json_is_null(v))
                return;
        if (!json_is_boolean(v)) {
                dec_fail(d, "%s: \"%s\" is not a boolean", where, k);
                return;
        }
        *dst = json_is_true(v);
}

/* A required, non-empty identifier without control characters. */
static const char *get_id(struct dec *d, const json_t *o, const char *k, const char *where) {
        const json_t *v = json_object_get(o, k);
        const char *s = json_is_string(v) ? json_string_value(v) : NULL;
        if (!s || !*s || util_has_ctl(s, false)) {
                dec_fail(d, "%s: \"%s\" missing or invalid", where, k);
                return NULL;
        }
        return s;
}

static void get_status(struct dec *d, const json_t *o, const char *where, enum track_status *dst) {
        const json_t *v = json_object_get(o, "status");
        int st = json_is_string(v) ? track_status_from_string(json_string_value(v)) : -EINVAL;
        if (st < 0) {
                dec_fail(d, "%s: \"status\" missing or unknown", where);
                return;
        }
        *dst = (enum track_status) st;
}

static void decode_order(struct dec *d, const json_t *jo, struct tracked_customer *c, const char *where) {
        if (!json_is_object(jo)) {
                dec_fail(d, "%s: order is not an object", where);
                return;
        }
        const char *id = get_id(d, jo, "id", where);
        if (!id)
                return;
        struct tracked_order *t = customer_add_order(c, id);
        if (!t) {
                d->oom = true;
                return;
        }
        char w[256];
        snprintf(w, sizeof(w), "order %.100s", id);
        get_status(d, jo, w, &t->status);
        get_str(d, jo, "querying_at_raw", w, &t->querying_at_raw);
        get_time(d, jo, "querying_since", w, &t->querying_since);
        get_time(d, jo, "first_seen", w, &t->first_seen);
        get_time(d, jo, "process_sent_at", w, &t->process_sent_at);
        get_int(d, jo, "process_attempts", w, &t->process_attempts);
        get_str(d, jo, "outcome", w, &t->outcome);
        get_time(d, jo, "closed_at", w, &t->closed_at);
        get_str(d, jo, "template_id", w, &t->template_id);
        get_str(d, jo, "relationship_url", w, &t->relationship_url);
        get_bool(d, jo, "notified", w, &t->notified);
        get_str(d, jo, "unlisted_partner", w, &t->unlisted_partner);
}

static void decode_customer(struct dec *d, const json_t *jc, struct state *s, size_t i) {
        char w[300];
        snprintf(w, sizeof(w), "customers[%zu]", i);
        if (!json_is_object(jc)) {
                dec_fail(d, "%s is not an object", w);
                return;
        }
        const char *key = get_id(d, jc, "key", w);
        if (!key)
                return;
        struct tracked_customer *c = state_add_customer(s, key);
        if (!c) {
                d->oom = true;
                return;
        }
        snprintf(w, sizeof(w), "customer %.100s", key);
        get_str(d, jc, "account", w, &c->account);
        get_str(d, jc, "tenant_id", w, &c->tenant_id);
        get_str(d, jc, "domain", w, &c->domain);
        get_str(d, jc, "name", w, &c->name);
        get_str(d, jc, "relationship_url", w, &c->relationship_url);
        get_time(d, jc, "first_seen", w, &c->first_seen);
        get_time(d, jc, "notified_at", w, &c->notified_at);
        get_time(d, jc, "last_mail_at", w, &c->last_mail_at);
        get_int(d, jc, "reminders", w, &c->reminders);
        get_bool(d, jc, "final_warning_sent", w, &c->final_warning_sent);
        get_bool(d, jc, "deadline_passed_logged", w, &c->deadline_passed_logged);
        get_time(d, jc, "warned_deadline", w, &c->warned_deadline);
        get_bool(d, jc, "confirmation_sent", w, &c->confirmation_sent);
        get_time(d, jc, "next_check", w, &c->next_check);
        get_int(d, jc, "check_count", w, &c->check_count);
        get_time(d, jc, "accepted_at", w, &c->accepted_at);
        get_str(d, jc, "gdap_ended", w, &c->gdap_ended);
        const json_t *orders = json_object_get(jc, "orders");
        if (orders && !json_is_null(orders) && !json_is_array(orders)) {
                dec_fail(d, "%s: \"orders\" is not an array", w);
                return;
        }
        size_t oi;
        const json_t *jo;
        json_array_foreach(orders, oi, jo) {
                if (!dec_ok(d))
                        return;
                decode_order(d, jo, c, w);
        }
}

/* One level of a counter: v is the count (labels all named) or an object
 * of the next label's values. */
static void decode_counter(struct dec *d, const json_t *v, struct counters *cs, enum counter_name name,
                           const char **labels, unsigned depth) {
        const char *key = counter_name_to_string(name);
        if (depth == counter_name_labels(name)) {
                if (!json_is_integer(v) || json_integer_value(v) < 0) {
                        dec_fail(d, "counters: \"%s\" has a count that is not a non-negative integer", key);
                        return;
                }
                int r = counters_add(cs, name, labels[0], labels[1], (uint64_t) json_integer_value(v));
                if (r < 0)
                        dec_fail(d, "counters: \"%s\": %s", key,
                                 r == -ENOSPC ? "too many series" : "a count out of range");
                return;
        }
        if (!json_is_object(v)) {
                dec_fail(d, "counters: \"%s\" is not an object of labels", key);
                return;
        }
        const char *label;
        const json_t *sub;
        json_object_foreach((json_t *) v, label, sub) {
                if (!counter_label_valid(label)) {
                        dec_fail(d, "counters: \"%s\" has an invalid label value", key);
                        return;
                }
                labels[depth] = label;
                decode_counter(d, sub, cs, name, labels, depth + 1);
                if (!dec_ok(d))
                        return;
        }
}

/* "counters" (absent: all zero); unknown counter names are ignored. */
static void decode_counters(struct dec *d, const json_t *jc, struct state *s) {
        if (!jc || json_is_null(jc))
                return;
        if (!json_is_object(jc)) {
                dec_fail(d, "\"counters\" is not an object");
                return;
        }
        const char *key;
        const json_t *v;
        json_object_foreach((json_t *) jc, key, v) {
                int name = counter_name_from_string(key);
                const char *labels[2] = { NULL, NULL };
                if (name >= 0)
                        decode_counter(d, v, &s->counters, (enum counter_name) name, labels, 0);
                if (!dec_ok(d))
                        return;
        }
}

/* Version 0: {"orders": {"ORD-…": {"customer": key, ...}}}. */
static void decode_legacy(struct dec *d, const json_t *root, struct state *s) {
        const json_t *orders = json_object_get(root, "orders");
        if (!json_is_object(orders)) {
                dec_fail(d, "legacy layout: \"orders\" is not an object");
                return;
        }
        const char *id;
        const json_t *jo;
        json_object_foreach((json_t *) orders, id, jo) {
                char w[256];
                snprintf(w, sizeof(w), "order %.100s", id);
                if (!json_is_object(jo)) {
                        dec_fail(d, "%s is not an object", w);
                        return;
                }
                if (!*id || util_has_ctl(id, false)) {
                        dec_fail(d, "legacy layout: invalid order id");
                        return;
                }
                const char *key = get_id(d, jo, "customer", w);
                if (!key)
                        return;
                struct tracked_customer *c = state_find_customer(s, key);
                if (!c && !(c = state_add_customer(s, key))) {
                        d->oom = true;
                        return;
                }
                struct tracked_order *t = customer_add_order(c, id);
                if (!t) {
                        d->oom = true;
                        return;
                }
                int64_t notified_at = 0, accepted_at = 0;
                int reminders = 0;
                get_status(d, jo, w, &t->status);
                get_time(d, jo, "querying_since", w, &t->querying_since);
                get_time(d, jo, "first_seen", w, &t->first_seen);
                get_time(d, jo, "process_sent_at", w, &t->process_sent_at);
                get_str(d, jo, "outcome", w, &t->outcome);
                get_time(d, jo, "notified_at", w, &notified_at);
                get_time(d, jo, "accepted_at", w, &accepted_at);
                get_int(d, jo, "reminders", w, &reminders);
                if (!dec_ok(d))
                        return;
                t->notified = notified_at != 0;
                if (t->status == TRACK_CLOSED)
                        t->closed_at = t->process_sent_at ? t->process_sent_at : t->first_seen;
                if (!c->first_seen || (t->first_seen && t->first_seen < c->first_seen))
                        c->first_seen = t->first_seen;
                if (!c->notified_at || (notified_at && notified_at < c->notified_at))
                        c->notified_at = notified_at;
                if (notified_at > c->last_mail_at)
                        c->last_mail_at = notified_at;
                if (reminders > c->reminders)
                        c->reminders = reminders;
                if (accepted_at > c->accepted_at)
                        c->accepted_at = accepted_at;
        }
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/* Customer keys and order ids must be unique in the whole file. */
static void check_unique(struct dec *d, const struct state *s) {
        size_t n = 0, no = 0;
        for (size_t i = 0; i < s->n_customers; i++)
                n += s->customers[i].n_orders;
        const char **keys = calloc(s->n_customers + 1, sizeof(*keys));
        const char **ids = calloc(n + 1, sizeof(*ids));
        if (!keys || !ids) {
                d->oom = true;
                goto out;
        }
        for (size_t i = 0; i < s->n_customers; i++) {
                keys[i] = s->customers[i].key;
                for (size_t j = 0; j < s->customers[i].n_orders; j++)
                        ids[no++] = s->customers[i].orders[j].id;
        }
        qsort(keys, s->n_customers, sizeof(*keys), cmp_str);
        qsort(ids, no, sizeof(*ids), cmp_str);
        for (size_t i = 1; i < s->n_customers; i++)
                if (strcmp(keys[i - 1], keys[i]) == 0) {
                        dec_fail(d, "customer %.100s appears twice", keys[i]);
                        goto out;
                }
        for (size_t i = 1; i < no; i++)
                if (strcmp(ids[i - 1], ids[i]) == 0) {
                        dec_fail(d, "order %.100s appears twice", ids[i]);
                        goto out;
                }
out:
        free(keys);
        free(ids);
}

/* store_from_json(); *ret_newer (optional) is set when the file is of a
 * schema version newer than this build reads. */
static int from_json(const char *text, size_t len, struct state **ret, char **ret_err, bool *ret_newer) {
        struct dec d = { 0 };
        json_error_t jerr;
        struct state *s = NULL;
        json_t *root = NULL;
        int r;

        if (ret_err)
                *ret_err = NULL;
        if (len > STORE_MAX_SIZE) {
                dec_fail(&d, "larger than %zu bytes", STORE_MAX_SIZE);
                goto out;
        }
        root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!root) {
                dec_fail(&d, "invalid JSON at line %d, column %d: %s", jerr.line, jerr.column, jerr.text);
                goto out;
        }
        if (!json_is_object(root)) {
                dec_fail(&d, "the top level is not an object");
                goto out;
        }
        s = state_new();
        if (!s) {
                d.oom = true;
                goto out;
        }
        const json_t *v = json_object_get(root, "version");
        json_int_t version = 0;
        if (v && !json_is_integer(v)) {
                dec_fail(&d, "\"version\" is not an integer");
                goto out;
        }
        if (v)
                version = json_integer_value(v);
        if (version > STATE_VERSION || version < 0) {
                dec_fail(&d, "unsupported version %lld (this partnerd reads up to %d)",
                         (long long) version, STATE_VERSION);
                if (ret_newer && version > STATE_VERSION)
                        *ret_newer = true;
                goto out;
        }
        if (version == 0) {
                decode_legacy(&d, root, s);
        } else {
                const json_t *customers = json_object_get(root, "customers");
                if (customers && !json_is_array(customers)) {
                        dec_fail(&d, "\"customers\" is not an array");
                        goto out;
                }
                size_t i;
                const json_t *jc;
                json_array_foreach(customers, i, jc) {
                        if (!dec_ok(&d))
                                break;
                        decode_customer(&d, jc, s, i);
                }
                if (dec_ok(&d))
                        decode_counters(&d, json_object_get(root, "counters"), s);
        }
        if (dec_ok(&d))
                check_unique(&d, s);
        s->version = STATE_VERSION;
out:
        json_decref(root);
        if (d.oom) {
                free(d.err);
                state_free(s);
                return -ENOMEM;
        }
        if (d.err) {
                state_free(s);
                /* the reason may quote the corrupt file: one printable
                 * ASCII line, whatever it held */
                for (unsigned char *p = (unsigned char *) d.err; *p; p++)
                        if (*p < 0x20 || *p >= 0x7f)
                                *p = '?';
                if (ret_err)
                        *ret_err = d.err;
                else
                        free(d.err);
                return -EBADMSG;
        }
        *ret = s;
        r = 0;
        return r;
}

int store_from_json(const char *text, size_t len, struct state **ret, char **ret_err) {
        return from_json(text, len, ret, ret_err, NULL);
}

/* ---- files -------------------------------------------------------------- */

static int skip_space(FILE *f) {
        int ch;
        do
                ch = getc(f);
        while (ch == ' ' || ch == '\n' || ch == '\t' || ch == '\r');
        return ch;
}

/* The fast path for the layout store_write() produces: customers are
 * parsed and decoded one at a time, so loading never holds the whole
 * tree (at 10,000 orders: a 6.6 MiB text plus a 20 MiB tree).  Anything
 * else, a damaged file included, returns -EAGAIN and goes through
 * store_from_json(), which reports errors and migrates old versions
 * exactly as before.  -ENOENT when there is no file. */
/* Reads exactly the bytes of s; false at the first difference. */
static bool expect(FILE *f, const char *s) {
        for (; *s; s++)
                if (getc(f) != (unsigned char) *s)
                        return false;
        return true;
}

static int load_streaming(const char *path, struct state **ret) {
        struct dec d = { 0 };
        struct state *s = NULL;
        struct stat st;
        char tail[64];
        size_t n;
        int ch, r = -EAGAIN;

        FILE *f = fopen(path, "re");
        if (!f)
                return errno == ENOENT ? -ENOENT : -EAGAIN;
        if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode) || (size_t) st.st_size > STORE_MAX_SIZE)
                goto out;
        if (!expect(f, "{\n \"c"))
                goto out;
        s = state_new();
        if (!s) {
                r = -ENOMEM;
                goto out;
        }
        /* "counters" (optional, small: parsed whole), then "customers" */
        ch = getc(f);
        if (ch == 'o') {
                if (!expect(f, "unters\": "))
                        goto out;
                json_t *jc = json_loadf(f, JSON_DISABLE_EOF_CHECK | JSON_REJECT_DUPLICATES, NULL);
                if (!jc)
                        goto out;
                decode_counters(&d, jc, s);
                json_decref(jc);
                if (!dec_ok(&d) || !expect(f, ",\n \"c"))
                        goto out;
                ch = getc(f);
        }
        if (ch != 'u' || !expect(f, "stomers\": ["))
                goto out;
        ch = skip_space(f);
        for (size_t i = 0; ch != ']'; i++) {
                if (ch == EOF || ungetc(ch, f) == EOF)
                        goto out;
                json_t *jc = json_loadf(f, JSON_DISABLE_EOF_CHECK | JSON_REJECT_DUPLICATES, NULL);
                if (!jc)
                        goto out;
                decode_customer(&d, jc, s, i);
                json_decref(jc);
                if (!dec_ok(&d))
                        goto out;
                ch = skip_space(f);
                if (ch == ',')
                        ch = skip_space(f);
                else if (ch != ']')
                        goto out;
        }
        /* what follows must be exactly the version this build writes */
        n = fread(tail, 1, sizeof(tail) - 1, f);
        tail[n] = '\0';
        int version = -1, end = 0;
        if (n == sizeof(tail) - 1 || sscanf(tail, " , \"version\" : %d } %n", &version, &end) != 1 ||
            version != STATE_VERSION || (size_t) end != n)
                goto out;
        check_unique(&d, s);
        if (!dec_ok(&d))
                goto out;
        s->version = STATE_VERSION;
        *ret = s;
        s = NULL;
        r = 0;
out:
        if (d.oom)
                r = -ENOMEM;
        free(d.err);
        state_free(s);
        fclose(f);
        return r;
}

static char *state_path(const char *dir) {
        char *p = NULL;
        return asprintf(&p, "%s/" STORE_FILE, dir) < 0 ? NULL : p;
}

/* Renames path to path.corrupt-<UTC time>[-N]; *ret_to gets the new name. */
static int move_aside(const char *path, char **ret_to) {
        char stamp[32];
        time_t now = (time_t) util_now_wall();
        struct tm tm;
        if (!gmtime_r(&now, &tm) || strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm) == 0)
                return -EINVAL;
        for (int n = 0; n < 100; n++) {
                char *to = NULL;
                int r = n ? asprintf(&to, "%s.corrupt-%s-%d", path, stamp, n)
                          : asprintf(&to, "%s.corrupt-%s", path, stamp);
                if (r < 0)
                        return -ENOMEM;
                struct stat st;
                if (lstat(to, &st) == 0) {
                        free(to);
                        continue;
                }
                if (rename(path, to) < 0) {
                        r = -errno;
                        free(to);
                        return r;
                }
                *ret_to = to;
                return 0;
        }
        return -EEXIST;
}

/* Reads state.json without changing anything on disk.  -EBADMSG with
 * *ret_reason when it is unusable, -EPROTONOSUPPORT (and a reason) when a
 * newer partnerd wrote it; missing: an empty state. */
static int read_state(const char *path, struct state **ret, char **ret_reason) {
        char *text = NULL;
        size_t len = 0;
        bool newer = false;
        int r = load_streaming(path, ret);
        if (r != -EAGAIN && r != -ENOENT)
                return r;
        r = util_read_file(path, STORE_MAX_SIZE, &text, &len);
        if (r == -ENOENT) {
                *ret = state_new();
                return *ret ? 0 : -ENOMEM;
        }
        if (r == -EFBIG) {
                if (asprintf(ret_reason, "larger than %zu MiB", STORE_MAX_SIZE >> 20) < 0) {
                        *ret_reason = NULL;
                        return -ENOMEM;
                }
                return -EBADMSG;
        }
        if (r < 0)
                return r;
        if (strlen(text) != len) {
                free(text);
                *ret_reason = strdup("contains NUL bytes");
                return *ret_reason ? -EBADMSG : -ENOMEM;
        }
        r = from_json(text, len, ret, ret_reason, &newer);
        free(text);
        return r == -EBADMSG && newer ? -EPROTONOSUPPORT : r;
}

int store_read(const char *state_dir, struct state **ret, char **ret_error) {
        char *path = state_path(state_dir), *reason = NULL;
        int r;

        if (ret_error)
                *ret_error = NULL;
        if (!path)
                return -ENOMEM;
        r = read_state(path, ret, &reason);
        if (r < 0 && ret_error && (reason || r != -ENOMEM) &&
            asprintf(ret_error, r == -EPROTONOSUPPORT ? "state file %s was written by a newer partnerd (%s)"
                                : r == -EBADMSG ? "state file %s is unusable (%s)" : "cannot read state file %s: %s",
                     path, reason ? reason : strerror(-r)) < 0)
                *ret_error = NULL;
        free(reason);
        free(path);
        return r;
}

int store_load(const char *state_dir, struct state **ret, char **ret_warning) {
        char *path = NULL, *reason = NULL, *to = NULL;
        int r;

        if (ret_warning)
                *ret_warning = NULL;
        path = state_path(state_dir);
        if (!path)
                return -ENOMEM;
        r = read_state(path, ret, &reason);
        if (r == -EPROTONOSUPPORT) {
                if (ret_warning &&
                    asprintf(ret_warning, "state file %s was written by a newer partnerd (%s); refusing to "
                             "touch it: run that version, or move the file away", path, reason) < 0)
                        *ret_warning = NULL;
                goto out;
        }
        if (r != -EBADMSG)
                goto out;   /* 0, or an error reading it (EACCES, EIO, a directory) */

        /* Unusable: keep it for inspection, start empty. */
        r = move_aside(path, &to);
        if (ret_warning &&
            asprintf(ret_warning, r < 0 ? "state file %s is unusable (%s) and could not be moved aside: %s"
                                        : "state file %s is unusable (%s); moved to %s, starting with an empty state",
                     path, reason, r < 0 ? strerror(-r) : to) < 0)
                *ret_warning = NULL;
        if (r < 0)
                goto out;   /* do not overwrite the evidence later */
        *ret = state_new();
        r = *ret ? 0 : -ENOMEM;
out:
        /* what a save killed mid-write left behind (never before a refusal) */
        if (r >= 0)
                (void) util_remove_stale_temps(state_dir);
        free(path);
        free(reason);
        free(to);
        return r;
}

/* The state directory exists, is a directory and is private (0700). */
static int ensure_dir(const char *dir) {
        struct stat st;
        if (mkdir(dir, 0700) == 0)
                return 0;
        if (errno != EEXIST)
                return -errno;
        if (stat(dir, &st) < 0)
                return -errno;
        if (!S_ISDIR(st.st_mode))
                return -ENOTDIR;
        if ((st.st_mode & 077) && st.st_uid == geteuid() && chmod(dir, 0700) < 0)
                return -errno;
        return 0;
}

/* Streams the state into a temporary file, fsyncs it, renames it over
 * state.json and fsyncs the directory (util_write_file_atomic's steps,
 * without the whole text in memory). */
int store_save(const char *state_dir, const struct state *s) {
        char *path = NULL, *tmp = NULL;
        FILE *f = NULL;
        int fd = -1, r = ensure_dir(state_dir);
        if (r < 0)
                return r;
        path = state_path(state_dir);
        if (!path || asprintf(&tmp, "%s.tmp.%ld", path, (long) getpid()) < 0) {
                tmp = NULL;
                r = -ENOMEM;
                goto out;
        }
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0) {
                r = -errno;
                goto out;
        }
        f = fdopen(fd, "w");
        if (!f) {
                r = -errno;
                close(fd);
                goto fail;
        }
        r = store_write(f, s);
        if (r == 0 && fflush(f) != 0)
                r = -errno;
        /* never write what store_load() would refuse to read back */
        if (r == 0 && ftello(f) > (off_t) STORE_MAX_SIZE)
                r = -EFBIG;
        if (r == 0 && (fchmod(fileno(f), 0600) < 0 || fsync(fileno(f)) < 0))
                r = -errno;
        if (fclose(f) != 0 && r == 0)
                r = -errno;
        if (r == 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0)
                goto fail;
        fd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || fsync(fd) < 0)
                r = -errno;
        if (fd >= 0)
                close(fd);
        goto out;
fail:
        (void) unlink(tmp);
out:
        free(path);
        free(tmp);
        return r;
}

/* The PID written in the lock file, 0 when unreadable.  The holder
 * writes it just after taking the lock: a loser that reads too early
 * retries briefly. */
static pid_t lock_holder(int fd) {
        for (int tries = 0; tries < 20; tries++) {
                char buf[32];
                ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
                long pid = 0;
                if (n > 0) {
                        buf[n] = '\0';
                        pid = strtol(buf, NULL, 10);
                }
                if (pid > 0 && pid <= INT32_MAX)
                        return (pid_t) pid;
                struct timespec ts = { .tv_nsec = 5 * 1000 * 1000 };
                nanosleep(&ts, NULL);
        }
        return 0;
}

int store_lock(const char *state_dir, pid_t *ret_holder) {
        char *path = NULL, buf[32];
        int fd, r = ensure_dir(state_dir);

        if (ret_holder)
                *ret_holder = 0;
        if (r < 0)
                return r;
        if (asprintf(&path, "%s/" STORE_LOCK_FILE, state_dir) < 0)
                return -ENOMEM;
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        free(path);
        if (fd < 0)
                return -errno;
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
                r = -errno;
                if (r == -EWOULDBLOCK && ret_holder)
                        *ret_holder = lock_holder(fd);
                close(fd);
                return r;
        }
        /* Best effort: the PID only names the holder to the next one (a
         * full disk must not stop partnerd here, but where it saves). */
        int len = snprintf(buf, sizeof(buf), "%ld\n", (long) getpid());
        if (ftruncate(fd, 0) == 0)
                (void) !pwrite(fd, buf, (size_t) len, 0);
        return fd;
}

void store_unlock(int fd) {
        if (fd < 0)
                return;
        /* no stale PID for the next one to name */
        (void) ftruncate(fd, 0);
        close(fd);
}

void store_prune(struct state *s, int64_t cutoff) {
        for (size_t ci = s->n_customers; ci-- > 0;) {
                struct tracked_customer *c = &s->customers[ci];
                for (size_t oi = c->n_orders; oi-- > 0;)
                        if (c->orders[oi].status == TRACK_CLOSED && c->orders[oi].closed_at < cutoff)
                                customer_remove_order(c, oi);
                if (c->n_orders == 0)
                        state_remove_customer(s, ci);
        }
}
