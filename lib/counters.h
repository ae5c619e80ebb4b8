/* SPDX-License-Identifier: MIT */
/*
 * counters: the counts partnerd keeps across restarts (issue 14), the
 * partnerd_*_total metrics.  Plain data inside the state (struct
 * state.counters): loaded, added to and saved with it (lib/store.c), and
 * written to the metrics file by lib/metrics.c.
 *
 * Each series is a counter name and up to two label values, short words
 * of [A-Za-z0-9_.-] (mail kinds, Process outcomes, API labels, status
 * classes: never input from the outside).  Fixed size, no allocation:
 * counting cannot fail for lack of memory; a series beyond COUNTERS_MAX
 * is not counted (-ENOSPC; today's names and labels make about 45).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum counter_name {
        COUNTER_MAILS_SENT = 0,      /* {kind}: mail_kind_to_string() */
        COUNTER_MAIL_FAILURES,       /* no label: every failed delivery attempt */
        COUNTER_PROCESS,             /* {outcome}: mp_outcome_to_string() */
        COUNTER_HTTP_REQUESTS,       /* {api, status_class}: every HTTP attempt */
        _COUNTER_NAME_MAX,
};

#define COUNTERS_MAX 80
#define COUNTER_LABEL_MAX 24         /* bytes, the NUL included */

struct counter {
        enum counter_name name;
        char label[2][COUNTER_LABEL_MAX];   /* "" when the name has fewer */
        uint64_t value;
};

struct counters {
        struct counter items[COUNTERS_MAX];   /* in the order first counted */
        size_t n;
};

/* The state file's key of a name ("mails_sent", "mail_failures",
 * "process", "http_requests"), and back (-EINVAL when unknown). */
const char *counter_name_to_string(enum counter_name n);
int counter_name_from_string(const char *s);
/* How many labels the series of a name carry (0, 1 or 2). */
unsigned counter_name_labels(enum counter_name n);
/* A label value counters accept: 1..COUNTER_LABEL_MAX-1 bytes of [A-Za-z0-9_.-]. */
bool counter_label_valid(const char *s);

/* Adds n to a series (l1, l2: its label values, NULL beyond the name's
 * count).  -EINVAL for a label that is not valid, -ENOSPC when full,
 * -EOVERFLOW past UINT64_MAX. */
int counters_add(struct counters *c, enum counter_name name, const char *l1, const char *l2, uint64_t n);
/* The value of a series, 0 when never counted. */
uint64_t counters_get(const struct counters *c, enum counter_name name, const char *l1, const char *l2);

/* The status_class label of an HTTP attempt: "2xx", "3xx", "4xx", "5xx",
 * or "error" when no complete answer arrived (r < 0, no status). */
const char *counters_status_class(int r, long status);

/* Counts what one mail flush did: each message sent under
 * mails_sent{kind} (the mail kind its dedup key starts with, see
 * engine.h; "other" for a key of no kind), each failed delivery attempt
 * (to be retried, or failed for good; an SMTP 535 included) in
 * mail_failures.  Returns the number of attempts counted. */
struct mail_flush_stats;
size_t counters_add_flush(struct counters *c, const struct mail_flush_stats *st);
