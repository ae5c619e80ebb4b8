/* SPDX-License-Identifier: MIT */
/*
 * mail: what partnerd tells people.  Templates with named placeholders,
 * RFC 5322/MIME composition (CRLF, quoted-printable, RFC 2047 words), a
 * durable outbox in the state directory, and the transports: SMTP through
 * the shared curl multi handle (lib/http), or sendmail (-oi -f FROM -- RCPT...:
 * the envelope is passed explicitly, never -t, so Bcc stays out of headers).
 *
 * Every value that comes from the API is hostile: control characters never
 * reach a header or an SMTP command, HTML values are escaped, and the
 * relationship URL must be https:// on an allowed host.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "http.h"
#include "model.h"

/* ---- templates ---- */

struct mail_templates;

/* The default templates, compiled in: every file of config/templates,
 * under its name ("reminder.txt"), generated at build time by
 * scripts/embed-templates.c (build/gen/templates.c).  Ends with a NULL name. */
struct mail_builtin {
        const char *name;
        const char *data;            /* NUL-terminated */
        size_t len;
};
extern const struct mail_builtin mail_builtin_templates[];

/* Loads every template (subject, text, html for each enum mail_kind:
 * <kind>.subject, <kind>.txt, <kind>.html) from override_dir when a file
 * exists there, else from default_dir, else (default_dir NULL) from the
 * built-in ones.  Placeholders: {{customer_name}}
 * {{domain}} {{tenant_id}} {{url}} {{deadline}} {{days_left}}
 * {{reminder_number}} {{order_count}} {{orders}} {{portal_links}} {{now}}
 * {{contact}} (the From addr-spec).  Unknown
 * placeholders are errors "FILE:LINE: unknown placeholder {{x}}" appended
 * to *errors (cfg_errors from config.h). */
int mail_templates_load(const char *override_dir, const char *default_dir,
                        struct mail_templates **ret, struct cfg_errors *errors);
struct mail_templates *mail_templates_free(struct mail_templates *t);
/* The template files a set holds (every kind's subject, text and html):
 * the i-th one's file name, and the path it was read from (NULL: built in).
 * false when i is past the last. */
bool mail_templates_source(const struct mail_templates *t, size_t i, const char **ret_name,
                           const char **ret_path);

/* One order named in a mail. */
struct mail_order {
        const char *id;
        const char *product;         /* product name */
        const char *portal_link;
        int64_t querying_since;      /* 0 unknown */
        int64_t deadline;            /* 0 unknown */
        const char *error;           /* ops notice: why it is Querying */
};

/* Values for the placeholders of one mail. */
struct mail_context {
        enum mail_kind kind;
        const char *customer_name;
        const char *domain;
        const char *tenant_id;
        const char *url;             /* relationship acceptance URL */
        const char *partner_id;      /* partner-unlisted: the link's partnerId */
        const struct mail_order *orders;
        size_t n_orders;
        int reminder_number;         /* 1-based for reminders */
        int64_t deadline;            /* earliest deadline of the orders, 0 unknown */
        int64_t now;
        char **extra_rcpt;           /* order contacts (notify_order_contacts) */
        size_t n_extra_rcpt;
};

/* A rendered message, ready for any transport. */
struct mail_message {
        char *message_id;            /* "<...@...>" */
        char *envelope_from;         /* bare addr-spec */
        char **rcpt;                 /* every envelope recipient (to, cc, bcc), addr-specs */
        size_t n_rcpt;
        char *subject;               /* decoded, for logs */
        char *text;                  /* the plain-text part, decoded (dry run, logs) */
        char *data;                  /* full RFC 5322 message, CRLF line ends */
        size_t len;
};

struct mail_message *mail_message_free(struct mail_message *m);

/* Renders ctx with the templates for ctx->kind.  -EINVAL with *ret_err
 * when a value cannot be used safely (e.g. URL not allowed). */
int mail_render(const struct mail_templates *t, const struct cfg_mail *cfg,
                const struct mail_context *ctx, struct mail_message **ret, char **ret_err);

/* The --send-test-mail message, composed like every real mail. */
int mail_render_test(const struct cfg_mail *cfg, int64_t now, struct mail_message **ret, char **ret_err);

/* ---- building blocks (unit-tested, fuzzed) ---- */
/* Header value: RFC 2047 encoded words (<= 75 chars each, split on UTF-8
 * boundaries) when not plain printable ASCII; control characters dropped.
 * name_len is the length of "Name: " for the first line's folding. */
char *mail_encode_header(const char *value, size_t name_len);
/* Quoted-printable body with CRLF line ends, lines <= 76. */
char *mail_encode_qp(const char *text);
/* Validates an address "addr" or "Name <addr>"; -EINVAL otherwise.
 * *ret_addr (optional) gets the bare addr-spec. */
int mail_parse_address(const char *s, char **ret_display, char **ret_addr);
/* s is a bare, valid addr-spec (what an envelope may carry). */
bool mail_is_addr_spec(const char *s);

/* ---- transport ---- */

struct mail_transport;

int mail_transport_new(struct http *h, uv_loop_t *loop, const struct cfg_mail *cfg,
                       struct mail_transport **ret);
struct mail_transport *mail_transport_free(struct mail_transport *t);

struct mail_result {
        bool ok;                     /* at least one recipient accepted */
        bool permanent;              /* 5xx: do not retry */
        long smtp_code;              /* last SMTP reply code, 0 if none */
        const char *error;           /* one human line (server reply) */
        size_t n_refused;            /* recipients refused */
};
typedef void (*mail_sent_fn)(void *ud, const struct mail_result *res);
int mail_send(struct mail_transport *t, const struct mail_message *m, mail_sent_fn cb, void *ud);

/* ---- outbox: {state_dir}/outbox, one file per message ---- */

struct mail_outbox;

/* Tunables (one place).  A delivered or failed key is remembered for
 * MAIL_OUTBOX_RETENTION so a re-emitted dedup key is not sent again. */
#define MAIL_OUTBOX_RETENTION   (30 * 86400)
#define MAIL_OUTBOX_MAX_AGE     (5 * 86400)
#define MAIL_OUTBOX_PARALLEL    4

/* Opens (creates, 0700) {state_dir}/outbox and lists what a previous run
 * left there. */
int mail_outbox_open(const char *state_dir, struct mail_outbox **ret);
struct mail_outbox *mail_outbox_free(struct mail_outbox *o);

/* Stores m (atomic write) under dedup_key before anything is sent.
 * Returns 0 when queued, 1 when dedup_key was already queued or sent
 * (nothing done), negative errno on failure.  The file is durable once
 * mail_outbox_sync() returns; mail_outbox_flush() syncs before it sends. */
int mail_outbox_put(struct mail_outbox *o, const char *dedup_key, const struct mail_message *m,
                    int64_t now);
/* Bounds the file of one queued mail (0, the default: no bound): a put
 * whose file would be larger fails with -EFBIG and writes nothing.  In
 * cluster mode every file is mirrored to etcd, which cannot hold a larger
 * one (lib/clusteroutbox.h): one such mail must not stop every save. */
void mail_outbox_set_max_file(struct mail_outbox *o, size_t bytes);
/* Makes every put so far durable at once (syncfs() of the outbox's file
 * system): a batch of n puts costs one sync instead of 2n fsync()s. */
int mail_outbox_sync(struct mail_outbox *o);

enum mail_flush_outcome {
        MAIL_FLUSH_SENT = 0,         /* accepted (some recipients may be refused) */
        MAIL_FLUSH_RETRY,            /* 4xx / connection problem: kept, next_attempt set */
        MAIL_FLUSH_FAILED,           /* permanent (5xx, or gave up): moved to outbox/failed/ */
};

/* One attempt of a flush, for the caller's log line (additive). */
struct mail_flush_item {
        const char *dedup_key;
        const char *message_id;
        const char *subject;         /* decoded */
        const char *rcpt;            /* envelope recipients, ", "-separated */
        enum mail_flush_outcome outcome;
        long smtp_code;              /* 0 if none */
        const char *error;           /* NULL when sent cleanly */
        size_t n_refused;
        int attempts;                /* attempts so far, this one included */
        int64_t next_attempt;        /* MAIL_FLUSH_RETRY */
};

struct mail_flush_stats {
        size_t sent, retry_later, failed;
        const struct mail_flush_item *items;   /* every attempt; valid during the callback */
        size_t n_items;
};
typedef void (*mail_flush_fn)(void *ud, const struct mail_flush_stats *st);
/* Sends every message that is due (retry with backoff on 4xx and
 * connection failures; permanent 5xx marked failed and logged).  cb runs
 * once when every attempt of this flush has finished — from within this
 * call when nothing is due.  -EBUSY while the previous flush still runs.
 * Backoff after attempt n: 1min, 5min, 15min, then 1h; a message still
 * undelivered MAIL_OUTBOX_MAX_AGE after it was queued is marked failed.
 * The outbox and transport must outlive a running flush (free the http
 * module first: its cancellation completes the transfers). */
int mail_outbox_flush(struct mail_outbox *o, struct mail_transport *t, int64_t now,
                      mail_flush_fn cb, void *ud);
size_t mail_outbox_pending(const struct mail_outbox *o);
/* The earliest next attempt of a queued message not being sent, 0 if none. */
int64_t mail_outbox_next_attempt(const struct mail_outbox *o);
/* gate (NULL: none) is asked right before each message of a flush is
 * handed to the transport; false ends the flush there, the rest stays
 * queued as it was (the cluster mode: a deposed leader sends nothing). */
void mail_outbox_set_gate(struct mail_outbox *o, bool (*gate)(void *ud), void *ud);
