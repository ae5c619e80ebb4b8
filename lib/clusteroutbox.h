/* SPDX-License-Identifier: MIT */
/*
 * clusteroutbox: the mail outbox of the cluster mode (issue 15), kept in
 * etcd next to the state so that an instance taking over sends what the
 * previous leader queued and did not send, and nothing it sent.
 *
 * The outbox itself stays lib/mail's ({state_dir}/outbox, one *.msg file
 * per queued message, sent from there); this module mirrors its pending
 * messages, as opaque files, to <prefix>outbox/<file name>:
 *
 *  - coutbox_sync(): every *.msg file new or changed since the last sync
 *    (size or mtime) is put, every one gone (sent, or failed for good) is
 *    deleted, in transactions of at most COUTBOX_TXN_OPS operations and
 *    COUTBOX_TXN_BYTES bytes (etcd refuses requests over 1.5 MiB), each
 *    comparing the fence: a deposed leader's sync fails with -EPERM.
 *  - coutbox_restore(): on a takeover, the other way round: etcd's entries
 *    become the *.msg files of the directory (written atomically), local
 *    *.msg files etcd does not hold are removed (they were queued in an
 *    earlier term of this instance and are the cluster's no more).  Reopen
 *    lib/mail's outbox afterwards.
 */
#pragma once

#include "etcd.h"

#define COUTBOX_TXN_OPS   100
#define COUTBOX_TXN_BYTES (1024u * 1024u)
#define COUTBOX_MAX_MSG   (COUTBOX_TXN_BYTES - 4096u)
/* The bound for a mail when it is queued (mail_outbox_set_max_file): room
 * left for the status a flush writes into its file later. */
#define COUTBOX_MAX_QUEUED (COUTBOX_MAX_MSG - 2048u)

struct coutbox;

int coutbox_new(struct etcd *etcd, const char *prefix, const char *outbox_dir, struct coutbox **ret);
/* Pending callbacks still run (with -ECANCELED).  Accepts NULL. */
struct coutbox *coutbox_free(struct coutbox *o);

/* r: 0; -EPERM (the fence failed); -EFBIG (a message too large for etcd);
 * -EBUSY (a sync or restore runs); errors of etcd or of the file system. */
typedef void (*coutbox_done_fn)(void *userdata, int r);
int coutbox_sync(struct coutbox *o, const struct etcd_compare *fence, coutbox_done_fn cb, void *userdata);
int coutbox_restore(struct coutbox *o, coutbox_done_fn cb, void *userdata);
/* Entries mirrored (after the last successful sync or restore). */
size_t coutbox_mirrored(const struct coutbox *o);
