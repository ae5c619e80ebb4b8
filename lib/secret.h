/* SPDX-License-Identifier: MIT */
/*
 * secret: the process's registry of secret values (the Marketplace token,
 * the client secret, the SMTP password, every access token as it is
 * obtained) and the one scrubber every text that leaves the process goes
 * through: log lines and journal fields (lib/log), STATUS= (daemon), error
 * descriptions built from server bodies (lib/http), mail values (lib/mail)
 * and the strings read from the API (lib/marketplace), which is what the
 * state file and the outbox hold.
 *
 * A secret is registered once, where it enters the process; its JSON and
 * percent-encoded forms are registered with it, since an echoing server
 * may send either.  Values shorter than SECRET_MIN_LEN are not registered
 * (scrubbing them would garble ordinary words).  Access tokens are
 * transient: only the newest SECRET_MAX_TRANSIENT are kept.
 *
 * Single-threaded: the daemon's loop thread only.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define SECRET_MIN_LEN        6
#define SECRET_MAX_TRANSIENT  64   /* one live token per account, and the ones before */
#define SECRET_REDACTED       "[redacted]"

enum secret_kind {
        SECRET_CONFIG,        /* kept until secret_forget_all() */
        SECRET_TRANSIENT,     /* access tokens: the oldest are dropped */
};

/* Registers s (copied).  0, or -ENOMEM.  Registering a value twice is a
 * no-op. */
int secret_register(const char *s, enum secret_kind kind);
/* Wipes and frees the registry (at exit). */
void secret_forget_all(void);
/* How many values (with their encoded forms) are registered. */
size_t secret_count(void);

/* true when data holds a registered secret. */
bool secret_found(const char *data, size_t len);
/* A copy of data (NUL-terminated) with every registered secret replaced
 * by SECRET_REDACTED; *ret_len (optional) gets its length.  NULL only on
 * OOM. */
char *secret_scrub(const char *data, size_t len, size_t *ret_len);
/* secret_scrub() of a string; s may be NULL (returns NULL). */
char *secret_scrub_str(const char *s);
/* In place, for a string in a buffer of size bytes: the result is cut
 * (on a UTF-8 boundary) when the redaction is longer than the secret.
 * The text is scrubbed before it is cut, so no prefix of a secret stays. */
void secret_scrub_buf(char *s, size_t size);

/* explicit_bzero() then free(); accepts NULL. */
void secret_free(char *s);
void secret_wipe(void *p, size_t n);
