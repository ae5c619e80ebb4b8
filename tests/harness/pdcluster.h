/* SPDX-License-Identifier: MIT */
/*
 * harness_pdc: two or three real partnerd daemons in cluster mode
 * ([cluster], docs/cluster.md) on a real etcd cluster of 1..3 members on
 * loopback (etcdrun.h), sharing one fake platform and one SMTP server
 * (invariants.h's world).  Each daemon has its own config (name host-a,
 * host-b, ...), state directory and NOTIFY_SOCKET, so that its role is read
 * from what it says itself (STATUS=), not guessed.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "etcdrun.h"
#include "invariants.h"
#include "pdrun.h"

#define HARNESS_PDC_MAX 3

struct harness_pdc_daemon {
        struct harness_pd *pd;          /* d[0].pd is the world's */
        char name[16];                  /* host-a, host-b, ... */
        pid_t pid;                      /* 0 when not running */
        bool stopped;                   /* SIGSTOPped */
        int run;                        /* pd->runs of the running spawn (its stderr) */
        int exit_status;                /* of the last run that ended (-1: none) */
        int notify_fd;
        char *notify_dir;
        char notify_env[160];           /* "NOTIFY_SOCKET=..." */
        char status[512];               /* the last STATUS= it sent ("" none) */
};

struct harness_pdc {
        struct harness_etcd *etcd;
        struct inv_world w;             /* the fake, the SMTP server, d[0]'s config */
        size_t n;
        struct harness_pdc_daemon d[HARNESS_PDC_MAX];
        char prefix[32];
        int lease_ttl;                  /* seconds */
        size_t ended;                   /* daemons that ended on their own */
};

/* Starts n_etcd etcd members, the fake (fake_args as harness_fake_start_args)
 * with scenario sc, the SMTP server, and writes the configs of n daemons
 * (pdo: the common options, may be NULL; its cluster field is ours) with
 * lease_ttl seconds.  Starts no daemon.  -ENOENT without etcd (skip). */
int harness_pdc_setup(struct harness_pdc *c, size_t n, size_t n_etcd, json_t *sc, const char *const *fake_args,
                      const struct harness_pd_options *pdo, int lease_ttl);
/* Kills every daemon and etcd member, stops the world.  Accepts a zeroed c. */
void harness_pdc_teardown(struct harness_pdc *c);

/* Starts daemon i (not running); its last STATUS= is cleared. */
int harness_pdc_spawn(struct harness_pdc *c, size_t i);
/* Sends sig to daemon i: SIGKILL waits for it; SIGSTOP/SIGCONT are
 * remembered (a stopped daemon is left out of the role checks). */
int harness_pdc_signal(struct harness_pdc *c, size_t i, int sig);

/* Reads the notifications for about ms and notices daemons that ended
 * (pid 0, exit_status set).  Returns the number of daemons that ended
 * on their own since the setup. */
size_t harness_pdc_poll(struct harness_pdc *c, int ms);
/* Role from the last STATUS=: 1 active, 0 standby, -1 unknown. */
int harness_pdc_role(const struct harness_pdc *c, size_t i);
/* Polls until exactly one of the running, not stopped daemons whose bit is
 * set in mask says active and every other one says standby; returns its
 * index, -ETIMEDOUT after timeout_ms.  Two actives at once: -EEXIST. */
int harness_pdc_wait_one_active(struct harness_pdc *c, unsigned mask, int timeout_ms);
/* Polls until no daemon of mask says active (-ETIMEDOUT). */
int harness_pdc_wait_none_active(struct harness_pdc *c, unsigned mask, int timeout_ms);

/* `partnerd status` of daemon i's config: its first line (malloc'd) in
 * *ret_line, its exit status returned (negative errno on failure). */
int harness_pdc_status_line(struct harness_pdc *c, size_t i, char **ret_line);
/* The stderr of daemon i's current (or last) run; malloc'd. */
char *harness_pdc_stderr(const struct harness_pdc *c, size_t i);
/* Lines of daemon i's current run's stderr that contain every needle. */
size_t harness_pdc_count_lines(const struct harness_pdc *c, size_t i, const char *const *needles);
/* Completed cycles ("Cycle ... orders, ...") in daemon i's current run. */
size_t harness_pdc_cycles(const struct harness_pdc *c, size_t i);

/* The message ids of the queued mails the cluster's outbox in etcd holds
 * (the keys <prefix>outbox/..., message files, first line the JSON envelope), as
 * a JSON array; NULL when etcd cannot be read. */
json_t *harness_pdc_etcd_outbox_ids(struct harness_pdc *c);
/* Keys under the prefix (any member that answers); negative errno. */
int harness_pdc_etcd_count(struct harness_pdc *c, const char *sub);
