/* SPDX-License-Identifier: MIT */
/*
 * harness_etcd: a real etcd cluster (Debian's etcd-server, /usr/bin/etcd or
 * $ETCD_BIN) of 1 to 3 members on free loopback ports, data in a temp dir,
 * plaintext http (loopback only).  Members can be killed and restarted.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define HARNESS_ETCD_MAX 3

struct harness_etcd_member {
        pid_t pid;                      /* 0 when not running */
        int client_port, peer_port;
        char url[64];                   /* "http://127.0.0.1:PORT" */
};

struct harness_etcd {
        size_t n;
        struct harness_etcd_member m[HARNESS_ETCD_MAX];
        const char *endpoints[HARNESS_ETCD_MAX + 1];    /* NULL-terminated m[i].url */
        char *dir;
};

/* The etcd binary, or NULL (malloc'd path). */
char *harness_etcd_bin(void);
/* Starts n members and waits until the cluster answers.  -ENOENT without
 * an etcd binary (skip the test). */
int harness_etcd_start(size_t n, struct harness_etcd **ret);
/* Sends sig to member i (SIGKILL: waits for it and marks it stopped). */
int harness_etcd_signal(struct harness_etcd *e, size_t i, int sig);
/* Restarts a stopped member with its data dir (waits only for the process
 * to listen, not for quorum). */
int harness_etcd_restart(struct harness_etcd *e, size_t i);
/* Kills every member, removes the temp dir.  Accepts NULL. */
void harness_etcd_free(struct harness_etcd *e);
/* etcdctl-free check: true when a put through member i succeeds within
 * timeout_ms. */
bool harness_etcd_writable(struct harness_etcd *e, size_t i, int timeout_ms);
