/* SPDX-License-Identifier: MIT */
/*
 * store: {state_dir}/state.json, versioned, written atomically (temp, fsync,
 * rename, fsync dir), mode 0600 in a 0700 directory.
 */
#pragma once

#include <sys/types.h>

#include <jansson.h>

#include "model.h"

/* Loads the state, for the process that holds the lock.  A missing file
 * gives an empty state.  A corrupt one (invalid JSON, wrong types, over
 * 64 MiB) is moved aside as state.json.corrupt-<YYYYmmddTHHMMSSZ>,
 * *ret_warning (malloc'd) says why and where, and an empty state is
 * returned (r == 0).  If it cannot be moved aside, or cannot be read at all
 * (EACCES, EIO, a directory), the negative errno is returned (*ret_warning
 * may explain) so that a later save does not destroy it.  A file written
 * by a newer partnerd (a later schema version) is never touched:
 * -EPROTONOSUPPORT and *ret_warning says so.  Older schema versions are
 * migrated.  Temporary files a killed save left behind are removed. */
int store_load(const char *state_dir, struct state **ret, char **ret_warning);
/* Reads the state without changing anything on disk (no move aside, no
 * clean-up): for `partnerd status` and --dry-run, which take no lock.
 * Missing: an empty state.  Errors as store_load() (-EBADMSG when it is
 * unusable, -EPROTONOSUPPORT when newer), with *ret_error (malloc'd, may
 * be NULL) saying why in one line naming the file. */
int store_read(const char *state_dir, struct state **ret, char **ret_error);

/* The exclusive lock of the state directory ({state_dir}/lock, flock(2)):
 * every process that may act on the state or the outbox holds it for as
 * long as it runs.  Creates the directory (0700) if needed.  Returns the
 * lock's file descriptor, with this process's PID written in the file
 * (when the disk has room for it); or
 * -EWOULDBLOCK when another process holds it (*ret_holder: its PID, 0 if
 * unknown); or another negative errno. */
int store_lock(const char *state_dir, pid_t *ret_holder);
/* Releases the lock (clearing the PID); accepts -1. */
void store_unlock(int fd);
/* Saves atomically; on failure (disk full, read-only) the old file stays.
 * -EFBIG for a state larger than store_load() accepts (64 MiB). */
int store_save(const char *state_dir, const struct state *s);

/* JSON encoding, for tests, fuzzing and `partnerd status --json`. */
/* A tracked order as the state file holds it ("status": its track
 * status); also the order of `partnerd status --json`.  *ok turns false
 * when a member could not be added (out of memory). */
json_t *store_order_json(const struct tracked_order *t, bool *ok);
int store_to_json(const struct state *s, char **ret);
int store_from_json(const char *text, size_t len, struct state **ret, char **ret_err);

/* Drops closed orders (and customers left empty) closed before cutoff. */
void store_prune(struct state *s, int64_t cutoff);
