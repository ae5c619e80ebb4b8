/* SPDX-License-Identifier: MIT */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#define SD_JOURNAL_SUPPRESS_LOCATION 1
#include <systemd/sd-journal.h>

#include "secret.h"
#include "text.h"
#include "util.h"

/* Stable identifiers: never change one once released; the journal catalog
 * (systemd/partnerd.catalog) explains each. */
static const struct {
        const char *name;
        const char *id;
} events[_LOG_EV_MAX] = {
        [LOG_EV_NONE] = { "none", NULL },
        [LOG_EV_STARTED] = { "started", "9c83cae382044b9e8e75cc69cfdfb0ad" },
        [LOG_EV_STOPPED] = { "stopped", "5ae0ef0c9e9a49b79150e5d63b9fb4de" },
        [LOG_EV_CONFIG_INVALID] = { "config-invalid", "c376bfb1c645432c9dbbfa29ee7a5889" },
        [LOG_EV_POLL_DONE] = { "poll-done", "814f0d14c9da438a962ee971c777422c" },
        [LOG_EV_POLL_FAILED] = { "poll-failed", "6f24d764164a46e78df1580fa82b38de" },
        [LOG_EV_ORDER_BLOCKED] = { "order-blocked", "381502419496482fa2db99f1a8b62f7e" },
        [LOG_EV_ORDER_OTHER_QUERY] = { "order-other-query", "f6fd6ad88a424726a178aa3ea4cbe599" },
        [LOG_EV_DRAFT_WARNING] = { "draft-warning", "23737a0371d04b8ebf040e458496abf7" },
        [LOG_EV_MAIL_QUEUED] = { "mail-queued", "0f42e4c3526046fcaa9cc48dbe53694b" },
        [LOG_EV_MAIL_SENT] = { "mail-sent", "84c57eb41bce4397a5ba187ffaea285d" },
        [LOG_EV_MAIL_FAILED] = { "mail-failed", "83605d41ba724f0bb3e20b4d8126832d" },
        [LOG_EV_REMINDER] = { "reminder", "2e180fad55b84a139bcd0a06930222dc" },
        [LOG_EV_DEADLINE_WARNING] = { "deadline-warning", "1f07ec85bdb849cf96d3e63cbed41f2f" },
        [LOG_EV_DEADLINE_PASSED] = { "deadline-passed", "6d06dc5fef6c4fa1b40a3957cd2e10fb" },
        [LOG_EV_RELATIONSHIP_PENDING] = { "relationship-pending", "5f0995893c5449a58588d63427100c9e" },
        [LOG_EV_RELATIONSHIP_ACCEPTED] = { "relationship-accepted", "251e0ab7d8874bf6bd1168aa153e21e0" },
        [LOG_EV_CHECK_FAILED] = { "check-failed", "ff8ff2c36cae4f23a2e5e19538e88fe7" },
        [LOG_EV_ORDER_PROCESSED] = { "order-processed", "a922831f0fce4ee3bae0ba9d836e6545" },
        [LOG_EV_PROCESS_FAILED] = { "process-failed", "44a6f563b4d84b6b8366a7d5c4eb41b2" },
        [LOG_EV_ORDER_CLOSED] = { "order-closed", "25d2e62cc6f24a54978a05b491f7deea" },
        [LOG_EV_TOKEN_FAILED] = { "token-failed", "953ed07fdddc451a944e49d0094b59ec" },
        [LOG_EV_STATE_CORRUPT] = { "state-corrupt", "3c3ca77033344a1eb6c6fd78a43bd987" },
        [LOG_EV_STATE_SAVE_FAILED] = { "state-save-failed", "207e4e4191194816b7fef46b7e59b044" },
        [LOG_EV_URL_REJECTED] = { "url-rejected", "982a3a65ff4140abbbc7951407ee4199" },
        [LOG_EV_RELOADED] = { "reloaded", "8bfe374430ef46a0af149a3ac4322e7f" },
        [LOG_EV_PARTNER_UNLISTED] = { "partner-unlisted", "19de6345f6d34aa395a1ddf932de6db0" },
        [LOG_EV_GDAP_ENDED] = { "gdap-ended", "c71a4eeb041645f0ab5d0f9c63c9fb58" },
};

#define LOG_MAX_FIELDS 24
#define LOG_MSG_MAX 2048

static bool use_journal;
static int max_level = LOG_INFO;

/* JOURNAL_STREAM is "DEV:INODE" of the stream systemd connected to our
 * stdout/stderr; it only counts when stderr still is that stream. */
static bool stderr_is_journal(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
                return false;
        if (fstat(STDERR_FILENO, &st) < 0)
                return false;
        return (unsigned long long) st.st_dev == dev && (unsigned long long) st.st_ino == ino;
}

void log_init(enum log_target target) {
        switch (target) {
        case LOG_TARGET_JOURNAL:
                use_journal = true;
                break;
        case LOG_TARGET_STDERR:
                use_journal = false;
                break;
        default:
                use_journal = stderr_is_journal();
        }
}

void log_set_max_level(int priority) {
        max_level = priority;
}

int log_get_max_level(void) {
        return max_level;
}

bool log_to_journal(void) {
        return use_journal;
}

const char *log_event_id(enum log_event ev) {
        return ev > 0 && ev < _LOG_EV_MAX ? events[ev].id : NULL;
}

const char *log_event_name(enum log_event ev) {
        return ev >= 0 && ev < _LOG_EV_MAX ? events[ev].name : "unknown";
}

/* The message, scrubbed of every registered secret before it is cut to
 * the line limit (so no prefix of a secret survives the cut). */
static void format_message(char *msg, size_t size, const char *fmt, va_list ap)
        __attribute__((format(printf, 3, 0)));

static void format_message(char *msg, size_t size, const char *fmt, va_list ap) {
        char *full = NULL;
        if (vasprintf(&full, fmt, ap) < 0) {
                snprintf(msg, size, "(out of memory formatting a log message)");
                return;
        }
        char *clean = secret_scrub_str(full);
        secret_free(full);
        snprintf(msg, size, "%s", clean ? clean : "(out of memory formatting a log message)");
        /* snprintf may have cut a UTF-8 sequence: cut it back */
        if (clean)
                msg[text_utf8_clip(clean, strlen(clean), strlen(msg))] = '\0';
        free(clean);
}

void log_event(int priority, enum log_event ev, const struct log_field *fields,
               const char *fmt, ...) {
        char msg[LOG_MSG_MAX];
        va_list ap;
        int saved_errno = errno;

        if (priority > max_level)
                return;
        va_start(ap, fmt);
        format_message(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        /* One event is one line: control characters from remote data are
         * shown as '?' so a hostile value cannot forge a second log line;
         * Unicode format characters (bidi overrides, zero-width) are dropped
         * so a value cannot disguise the line either. */
        text_mask_controls(msg);

        if (!use_journal) {
                fprintf(stderr, "<%d>%s\n", priority & 7, msg);
                fflush(stderr);
                errno = saved_errno;
                return;
        }

        struct iovec iov[LOG_MAX_FIELDS + 4];
        char *bufs[LOG_MAX_FIELDS + 4];
        size_t n = 0;

#define ADD(...)                                                           \
        do {                                                               \
                if (asprintf(&bufs[n], __VA_ARGS__) >= 0) {                \
                        iov[n].iov_base = bufs[n];                         \
                        iov[n].iov_len = strlen(bufs[n]);                  \
                        n++;                                               \
                }                                                          \
        } while (0)

        ADD("MESSAGE=%s", msg);
        ADD("PRIORITY=%d", priority & 7);
        ADD("SYSLOG_IDENTIFIER=%s", "partnerd");
        if (log_event_id(ev))
                ADD("MESSAGE_ID=%s", log_event_id(ev));
        for (size_t i = 0; fields && fields[i].key && n < LOG_MAX_FIELDS + 4; i++) {
                if (!fields[i].value)
                        continue;
                /* journal field values may hold any bytes, but keep one
                 * event on one line for people reading it as text */
                char *value = secret_scrub_str(fields[i].value);
                if (!value)
                        continue;
                ADD("%s=%s", fields[i].key, value);
                free(value);
                if (n > 0) {
                        text_mask_controls((char *) iov[n - 1].iov_base + strlen(fields[i].key) + 1);
                        iov[n - 1].iov_len = strlen(bufs[n - 1]);
                }
        }
#undef ADD
        (void) sd_journal_sendv(iov, (int) n);
        for (size_t i = 0; i < n; i++)
                free(bufs[i]);
        errno = saved_errno;
}
