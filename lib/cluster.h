/* SPDX-License-Identifier: MIT */
/*
 * cluster: leadership among partnerd instances on etcd, the pattern of
 * etcd's own election (clientv3/concurrency):
 *
 *  - each instance holds a lease of lease_ttl seconds, kept alive from the
 *    loop every lease_ttl/6 (so that one late or lost keepalive answer does
 *    not depose the leader: the rule below leaves it lease_ttl/2);
 *  - the leader key <prefix>leader (value: this instance's name) is created
 *    in a transaction only if absent (compare create_revision == 0, put with
 *    the lease); its create_revision is the leader's revision, which every
 *    state write compares (fencing, see cluster_fence);
 *  - standbys try that transaction every poll interval (lease_ttl/3); its
 *    failure branch reads the key, so they know who leads.
 *
 * The deposition rule.  The lease can expire on the server at the earliest
 * lease_ttl after the last keepalive that etcd acknowledged was SENT.  The
 * leader counts itself active only until half of that: from the send time
 * of its last acknowledged keepalive (or of the grant) plus lease_ttl/2.
 * cluster_is_active() reads the monotonic clock each time, so a process
 * that was stopped (SIGSTOP, a long stall) is deposed the moment it
 * resumes, before any callback of the loop could act.  A keepalive answer
 * without TTL (lease gone) deposes at once and a new lease is granted.
 * Another instance can win only after the lease expired, i.e. at least
 * lease_ttl/2 after this one stopped acting: that margin absorbs clock
 * rate differences and the time an in-flight request needs to land (keep
 * request timeouts below it).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "etcd.h"

struct cluster;

struct cluster_options {
        const char *prefix;             /* key prefix, e.g. "/partnerd/" */
        const char *name;               /* this instance (host name) */
        int64_t lease_ttl;              /* seconds, >= 2 */
};

/* Runs on every change of role or of the known leader. */
typedef void (*cluster_change_fn)(void *userdata);

int cluster_new(uv_loop_t *loop, struct etcd *etcd, const struct cluster_options *opts,
                cluster_change_fn on_change, void *userdata, struct cluster **ret);
/* Grants the lease and starts campaigning. */
int cluster_start(struct cluster *c);
/* Stops; the lease is revoked (best effort, fire and forget) so that a
 * standby takes over at once.  Accepts NULL.  Run the loop afterwards. */
struct cluster *cluster_free(struct cluster *c);
/* The same without revoking: as if the process died. */
struct cluster *cluster_abandon(struct cluster *c);

/* True only while leader and inside the deposition rule above. */
bool cluster_is_active(const struct cluster *c);
/* The known leader's name (NULL: none known). */
const char *cluster_leader(const struct cluster *c);
/* "active", "standby (leader: NAME)" or "standby (leader: none)";
 * NAME stripped of control characters.  malloc'd. */
char *cluster_describe(const struct cluster *c);
/* The compare every fenced write adds: leader key's create_revision equal
 * to the one this instance won with.  -EPERM when not active. */
int cluster_fence(const struct cluster *c, struct etcd_compare *ret);
/* Counters for the benchmark. */
struct cluster_stats {
        uint64_t keepalives, campaigns, takeovers, depositions;
};
void cluster_get_stats(const struct cluster *c, struct cluster_stats *ret);
