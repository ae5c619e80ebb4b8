/* SPDX-License-Identifier: MIT */
/*
 * log: one line per event.  Under journald (JOURNAL_STREAM names our stderr,
 * or log_init(LOG_TARGET_JOURNAL)) events go through sd_journal_send with
 * PRIORITY, MESSAGE_ID and structured fields; otherwise one line on stderr
 * with an sd-daemon "<N>" priority prefix.
 *
 * Secrets never go through here: callers pass URLs without credentials and
 * never pass tokens, passwords or Authorization headers.
 */
#pragma once

#include <stdbool.h>
#include <syslog.h>

/* One MESSAGE_ID per event type; the ids are listed in log.c and the
 * journal catalog (systemd/partnerd.catalog). */
enum log_event {
        LOG_EV_NONE = 0,
        LOG_EV_STARTED,
        LOG_EV_STOPPED,
        LOG_EV_CONFIG_INVALID,
        LOG_EV_POLL_DONE,
        LOG_EV_POLL_FAILED,
        LOG_EV_ORDER_BLOCKED,        /* a Querying order waits for a relationship */
        LOG_EV_ORDER_OTHER_QUERY,    /* Querying for another reason */
        LOG_EV_DRAFT_WARNING,        /* Draft order already shows the URL */
        LOG_EV_MAIL_QUEUED,
        LOG_EV_MAIL_SENT,
        LOG_EV_MAIL_FAILED,
        LOG_EV_REMINDER,
        LOG_EV_DEADLINE_WARNING,
        LOG_EV_DEADLINE_PASSED,
        LOG_EV_RELATIONSHIP_PENDING,
        LOG_EV_RELATIONSHIP_ACCEPTED,
        LOG_EV_CHECK_FAILED,
        LOG_EV_ORDER_PROCESSED,
        LOG_EV_PROCESS_FAILED,
        LOG_EV_ORDER_CLOSED,
        LOG_EV_TOKEN_FAILED,
        LOG_EV_STATE_CORRUPT,
        LOG_EV_STATE_SAVE_FAILED,
        LOG_EV_URL_REJECTED,
        LOG_EV_RELOADED,
        LOG_EV_PARTNER_UNLISTED,     /* the link's partnerId is in no account: never processed */
        _LOG_EV_MAX,
};

/* A structured journal field; arrays end with { NULL, NULL }.  A NULL
 * value is skipped. */
struct log_field {
        const char *key;
        const char *value;
};

#define LOG_FIELDS(...) ((const struct log_field[]) { __VA_ARGS__, { NULL, NULL } })

enum log_target {
        LOG_TARGET_AUTO,     /* journal if JOURNAL_STREAM matches stderr, else stderr */
        LOG_TARGET_JOURNAL,
        LOG_TARGET_STDERR,
};

void log_init(enum log_target target);
void log_set_max_level(int priority);   /* LOG_DEBUG shows everything */
int log_get_max_level(void);
bool log_to_journal(void);

/* The 32-hex-digit MESSAGE_ID of an event, or NULL for LOG_EV_NONE. */
const char *log_event_id(enum log_event ev);
const char *log_event_name(enum log_event ev);

void log_event(int priority, enum log_event ev, const struct log_field *fields,
               const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#define log_debug(...)   log_event(LOG_DEBUG, LOG_EV_NONE, NULL, __VA_ARGS__)
#define log_info(...)    log_event(LOG_INFO, LOG_EV_NONE, NULL, __VA_ARGS__)
#define log_notice(...)  log_event(LOG_NOTICE, LOG_EV_NONE, NULL, __VA_ARGS__)
#define log_warning(...) log_event(LOG_WARNING, LOG_EV_NONE, NULL, __VA_ARGS__)
#define log_error(...)   log_event(LOG_ERR, LOG_EV_NONE, NULL, __VA_ARGS__)
