/* SPDX-License-Identifier: MIT */
/*
 * harness_smtp: runs tests/tools/smtpd.py (aiosmtpd) for a C test: a
 * private temp directory, port 0 (or a given port), the port read back
 * from the port file; lists the stored messages and parses them with
 * tests/tools/mailparse.py into a json_t.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

struct harness_smtp;

struct harness_smtp_options {
        int port;                    /* 0 = any free port */
        const char *host;            /* bind address, default 127.0.0.1 */
        bool implicit_tls;           /* smtps: TLS from the start (needs tls_cert) */
        const char *tls_cert;        /* STARTTLS required when set */
        const char *tls_key;
        const char *auth;            /* "user:password" */
        const char *refuse[4];       /* RCPTs answered 550 */
        int fail_data;               /* first N DATA get 451 */
        int reply_code;              /* every DATA gets this code */
        int drop_after_data;         /* first N DATA: connection closed, no reply, not stored */
};

/* Starts the server and waits (up to 10 s) until it listens. */
int harness_smtp_start(const struct harness_smtp_options *o, struct harness_smtp **ret);
/* SIGTERM, waits for the exit, removes the temp directory; accepts NULL. */
void harness_smtp_stop(struct harness_smtp *s);
int harness_smtp_port(const struct harness_smtp *s);
/* "smtp://HOST:PORT" ("smtps://" with implicit_tls) */
const char *harness_smtp_url(const struct harness_smtp *s);
/* Messages stored so far. */
size_t harness_smtp_count(const struct harness_smtp *s);
/* Parses message i (0-based, in arrival order) with mailparse.py; the
 * smtpd sidecar is under "envelope".  NULL on failure. */
json_t *harness_smtp_parse(const struct harness_smtp *s, size_t i);
/* The smtpd sidecar of message i (envelope, "message_id", "data_at" and
 * "accepted_at" in seconds since the epoch); NULL on failure. */
json_t *harness_smtp_sidecar(const struct harness_smtp *s, size_t i);
/* The stall control file: while it exists and holds N, every DATA stalls
 * N ms (FILE.inflight exists meanwhile) before it is stored and answered. */
const char *harness_smtp_stall_file(const struct harness_smtp *s);
/* The raw bytes of message i (malloc'd, NUL-terminated). */
char *harness_smtp_raw(const struct harness_smtp *s, size_t i, size_t *ret_len);

/* Creates a test CA and a server certificate for 127.0.0.1/localhost in
 * dir with openssl: dir/ca.pem, dir/server.pem, dir/server.key. */
int harness_smtp_make_certs(const char *dir);

/* A temporary directory (malloc'd path) and its recursive removal. */
char *harness_smtp_mkdtemp(void);
void harness_smtp_rm_rf(const char *dir);
