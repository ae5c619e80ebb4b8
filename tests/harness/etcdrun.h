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

#include <uv.h>

#include "cluster.h"
#include "etcd.h"
#include "http.h"

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
        char *tls_dir;                  /* https with client certificates, or NULL */
};

/* The etcd binary, or NULL (malloc'd path). */
char *harness_etcd_bin(void);
/* Starts n members and waits until the cluster answers.  -ENOENT without
 * an etcd binary (skip the test). */
int harness_etcd_start(size_t n, struct harness_etcd **ret);
/* One member serving https on loopback and requiring a client
 * certificate: makes (with /usr/bin/openssl) a CA and server and client
 * certificates in tls_dir: ca.pem, server.{pem,key}, client.{pem,key},
 * other.{pem,key} (a client certificate of another CA).  -ENOENT without
 * etcd or openssl. */
int harness_etcd_start_tls(struct harness_etcd **ret);

/* One member, a loop, an http instance and an etcd client on it: the
 * fixture of the unit tests that speak to etcd.  *ret_cluster stays NULL
 * (return 0) when etcd is not installed; `who` names the test in that
 * message.  _stop accepts what _start left (a NULL cluster too). */
int harness_etcd_client_start(const char *who, struct harness_etcd **ret_cluster, uv_loop_t *loop,
                              struct http **ret_http, struct etcd **ret_etcd);
void harness_etcd_client_stop(struct harness_etcd *cluster, uv_loop_t *loop, struct http *http,
                              struct etcd *etcd);
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

/* One lib/cluster instance on a loop of its own (so that a test can stall
 * it, as SIGSTOP would, while others run). */
struct harness_cluster_node {
        uv_loop_t loop;
        struct http *http;
        struct etcd *etcd;
        struct cluster *c;
        char name[16];
        int changes;                    /* on_change calls */
};

/* Starts n nodes named host-a, host-b... on the members of e, under prefix. */
int harness_cluster_nodes_start(struct harness_etcd *e, const char *prefix, int64_t ttl,
                                struct harness_cluster_node *nodes, size_t n);
/* Starts node i alone (same naming), e.g. to replace a stopped one. */
int harness_cluster_node_start(struct harness_etcd *e, const char *prefix, int64_t ttl,
                               struct harness_cluster_node *x, size_t i);
/* Stops one (abandon: without revoking its lease, as a crash); idempotent. */
void harness_cluster_node_stop(struct harness_cluster_node *x, bool abandon);
/* Runs the loops of the running nodes whose bit is set in mask for ~ms. */
void harness_cluster_run(struct harness_cluster_node *nodes, size_t n, unsigned mask, int ms);
/* The index of an active node (-1: none); *count how many are active. */
int harness_cluster_active(struct harness_cluster_node *nodes, size_t n, size_t *count);
