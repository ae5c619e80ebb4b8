/* SPDX-License-Identifier: MIT */
/*
 * store: {state_dir}/state.json, versioned, written atomically (temp, fsync,
 * rename, fsync dir), mode 0600 in a 0700 directory.
 */
#pragma once

#include "model.h"

/* Loads the state.  A missing file gives an empty state.  A corrupt one
 * (invalid JSON, wrong types, future version, over 64 MiB) is moved aside
 * as state.json.corrupt-<YYYYmmddTHHMMSSZ>, *ret_warning (malloc'd) says
 * why and where, and an empty state is returned (r == 0).  If it cannot be
 * moved aside, or cannot be read at all (EACCES, EIO, a directory), the
 * negative errno is returned (*ret_warning may explain) so that a later
 * save does not destroy it.  Older schema versions are migrated. */
int store_load(const char *state_dir, struct state **ret, char **ret_warning);
/* Saves atomically; on failure (disk full, read-only) the old file stays.
 * -EFBIG for a state larger than store_load() accepts (64 MiB). */
int store_save(const char *state_dir, const struct state *s);

/* JSON encoding, for tests, fuzzing and `partnerd status --json`. */
int store_to_json(const struct state *s, char **ret);
int store_from_json(const char *text, size_t len, struct state **ret, char **ret_err);

/* Drops closed orders (and customers left empty) closed before cutoff. */
void store_prune(struct state *s, int64_t cutoff);
