/* SPDX-License-Identifier: MIT */
/*
 * clusterstore: the state of lib/store.c kept in etcd instead of a file,
 * for the cluster mode (issue 15).  Layout under the prefix:
 *
 *   <prefix>state/meta              the document without "customers"
 *                                   ({"version": 1, ...}), compact JSON
 *   <prefix>state/customers/<key>   one customer record, compact JSON with
 *                                   sorted keys (store.c's encoding)
 *
 * One key per customer: etcd refuses requests over 1.5 MiB by default and
 * a whole state of 10,000 orders is 6.6 MB.  A save writes only the
 * records that changed since the last load or save (and deletes the ones
 * pruned), in transactions of at most CSTORE_TXN_OPS operations (etcd's
 * --max-txn-ops is 128 by default), each of which also compares the fence
 * (lib/cluster: the leader key's create_revision): a deposed leader's
 * write fails as a whole with -EPERM.  The encoding is store_to_json()'s
 * and the decoding store_from_json()'s, so the two backends hold the same
 * document.
 */
#pragma once

#include "etcd.h"
#include "model.h"

#define CSTORE_TXN_OPS 100

struct cstore;

int cstore_new(struct etcd *etcd, const char *prefix, struct cstore **ret);
/* Pending callbacks still run (with -ECANCELED).  Accepts NULL. */
struct cstore *cstore_free(struct cstore *s);

/* r: 0; -EPERM (the fence failed: not the leader any more); -EEXIST
 * (migrate: the prefix is not empty); -EBADMSG (a record does not decode:
 * err says which); -EBUSY (another load/save is running); errors of etcd.
 * loaded: cstore_load only, owned by the callee's caller (free it). */
typedef void (*cstore_done_fn)(void *userdata, int r, struct state *loaded, const char *err);

/* Reads the whole state (an empty prefix gives an empty state). */
int cstore_load(struct cstore *s, cstore_done_fn cb, void *userdata);
/* Writes what changed since the last load/save, each transaction fenced.
 * On failure the records not written are written by the next save. */
int cstore_save(struct cstore *s, const struct etcd_compare *fence, const struct state *st,
                cstore_done_fn cb, void *userdata);
/* `partnerd cluster migrate`: writes st (a state file's content) once;
 * refuses with -EEXIST when anything exists under the prefix. */
int cstore_migrate(struct cstore *s, const struct state *st, cstore_done_fn cb, void *userdata);
