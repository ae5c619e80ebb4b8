/* SPDX-License-Identifier: MIT */
#include "counters.h"

#include <errno.h>
#include <string.h>

#include "mail.h"
#include "model.h"

static const struct {
        const char *key;
        unsigned labels;
} names[_COUNTER_NAME_MAX] = {
        [COUNTER_MAILS_SENT] = { "mails_sent", 1 },
        [COUNTER_MAIL_FAILURES] = { "mail_failures", 0 },
        [COUNTER_PROCESS] = { "process", 1 },
        [COUNTER_HTTP_REQUESTS] = { "http_requests", 2 },
};

const char *counter_name_to_string(enum counter_name n) {
        return (unsigned) n < _COUNTER_NAME_MAX ? names[n].key : NULL;
}

int counter_name_from_string(const char *s) {
        for (unsigned i = 0; s && i < _COUNTER_NAME_MAX; i++)
                if (strcmp(names[i].key, s) == 0)
                        return (int) i;
        return -EINVAL;
}

unsigned counter_name_labels(enum counter_name n) {
        return (unsigned) n < _COUNTER_NAME_MAX ? names[n].labels : 0;
}

bool counter_label_valid(const char *s) {
        size_t n = s ? strlen(s) : 0;
        if (n == 0 || n >= COUNTER_LABEL_MAX)
                return false;
        for (; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
                      *s == '_' || *s == '.' || *s == '-'))
                        return false;
        return true;
}

/* The series (name, l1, l2), NULL when not counted yet; l1/l2 beyond the
 * name's labels are ignored. */
static struct counter *find(const struct counters *c, enum counter_name name, const char *l1, const char *l2) {
        unsigned k = counter_name_labels(name);
        for (size_t i = 0; i < c->n; i++) {
                const struct counter *e = &c->items[i];
                if (e->name == name && (k < 1 || strcmp(e->label[0], l1) == 0) &&
                    (k < 2 || strcmp(e->label[1], l2) == 0))
                        return (struct counter *) e;
        }
        return NULL;
}

int counters_add(struct counters *c, enum counter_name name, const char *l1, const char *l2, uint64_t n) {
        unsigned k = counter_name_labels(name);
        if ((unsigned) name >= _COUNTER_NAME_MAX || (k >= 1 && !counter_label_valid(l1)) ||
            (k >= 2 && !counter_label_valid(l2)))
                return -EINVAL;
        struct counter *e = find(c, name, l1, l2);
        if (!e) {
                if (c->n == COUNTERS_MAX)
                        return -ENOSPC;
                e = &c->items[c->n++];
                *e = (struct counter) { .name = name };
                if (k >= 1)
                        strcpy(e->label[0], l1);    /* length checked above */
                if (k >= 2)
                        strcpy(e->label[1], l2);
        }
        if (e->value > UINT64_MAX - n)
                return -EOVERFLOW;
        e->value += n;
        return 0;
}

uint64_t counters_get(const struct counters *c, enum counter_name name, const char *l1, const char *l2) {
        unsigned k = counter_name_labels(name);
        if ((k >= 1 && !l1) || (k >= 2 && !l2))
                return 0;
        const struct counter *e = find(c, name, l1, l2);
        return e ? e->value : 0;
}

const char *counters_status_class(int r, long status) {
        static const char *const classes[] = { "2xx", "3xx", "4xx", "5xx" };
        if (r < 0 || status < 200 || status > 599)
                return "error";
        return classes[status / 100 - 2];
}

/* The mail kind a dedup key "<kind>:..." names, "other" when none. */
static const char *dedup_kind(const char *key) {
        size_t n = key ? strcspn(key, ":") : 0;
        for (unsigned k = 0; key && key[n] == ':' && k < _MAIL_KIND_MAX; k++) {
                const char *name = mail_kind_to_string((enum mail_kind) k);
                if (strlen(name) == n && strncmp(key, name, n) == 0)
                        return name;
        }
        return "other";
}

size_t counters_add_flush(struct counters *c, const struct mail_flush_stats *st) {
        for (size_t i = 0; i < st->n_items; i++) {
                const struct mail_flush_item *it = &st->items[i];
                if (it->outcome == MAIL_FLUSH_SENT)
                        (void) counters_add(c, COUNTER_MAILS_SENT, dedup_kind(it->dedup_key), NULL, 1);
                else
                        (void) counters_add(c, COUNTER_MAIL_FAILURES, NULL, NULL, 1);
        }
        return st->n_items;
}
