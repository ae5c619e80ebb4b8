/* SPDX-License-Identifier: MIT */
/*
 * bench-cluster: the takeover time of lib/cluster on a real three-member
 * etcd on loopback, and the requests the leadership costs.
 *
 * Two instances; the active one is killed without revoking its lease (as
 * SIGKILL leaves it) and the time until the other is active is measured;
 * then a fresh instance replaces the dead one.  Repeated KILLS times.
 * Usage: bench-cluster [KILLS [LEASE_TTL_SECONDS]]  (default 20, 3)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcdrun.h"
#include "util.h"

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

/* Runs until one node is active (-1 after limit_ms). */
static int wait_active(struct harness_cluster_node *nodes, unsigned mask, int limit_ms) {
        uint64_t end = util_now_mono_ms() + (uint64_t) limit_ms;
        while (util_now_mono_ms() < end) {
                harness_cluster_run(nodes, 2, mask, 1);
                size_t count;
                int a = harness_cluster_active(nodes, 2, &count);
                if (count > 1) {
                        fprintf(stderr, "bench-cluster: two instances active at once\n");
                        exit(1);
                }
                if (a >= 0)
                        return a;
        }
        return -1;
}

/* Requests per instance per minute in a steady state, from http's stats. */
static double steady_requests_per_min(struct harness_cluster_node *nodes, int ms) {
        struct http_stats before[2], after[2];
        for (int i = 0; i < 2; i++)
                http_get_stats(nodes[i].http, &before[i]);
        harness_cluster_run(nodes, 2, 3, ms);
        uint64_t n = 0;
        for (int i = 0; i < 2; i++) {
                http_get_stats(nodes[i].http, &after[i]);
                n += after[i].requests - before[i].requests;
        }
        return (double) n / 2.0 * 60000.0 / ms;
}

int main(int argc, char **argv) {
        int kills = argc > 1 ? atoi(argv[1]) : 20;
        int64_t ttl = argc > 2 ? atoll(argv[2]) : 3;
        struct harness_etcd *e;
        int r = harness_etcd_start(3, &e);
        if (r == -ENOENT) {
                fprintf(stderr, "bench-cluster: etcd is not installed (scripts/deps.sh); skipped\n");
                return 77;
        }
        if (r < 0 || kills < 1 || ttl < 2) {
                fprintf(stderr, "bench-cluster: cannot start etcd (%s)\n", strerror(-r));
                return 1;
        }
        struct harness_cluster_node nodes[2];
        const int limit = (int) (ttl * 1000 * 5);
        if (harness_cluster_nodes_start(e, "/bench/", ttl, nodes, 2) < 0 || wait_active(nodes, 3, limit) < 0)
                return 1;
        double per_min = steady_requests_per_min(nodes, (int) ttl * 3000);
        uint64_t *t = calloc((size_t) kills, sizeof(*t));
        for (int k = 0; t && k < kills; k++) {
                size_t count;
                int a = harness_cluster_active(nodes, 2, &count);
                uint64_t t0 = util_now_mono_ms();
                harness_cluster_node_stop(&nodes[a], true);
                int b = wait_active(nodes, 3u & ~(1u << a), limit);
                if (b < 0) {
                        fprintf(stderr, "bench-cluster: no takeover within %d ms\n", limit);
                        return 1;
                }
                t[k] = util_now_mono_ms() - t0;
                if (harness_cluster_node_start(e, "/bench/", ttl, &nodes[a], (size_t) a) < 0)
                        return 1;
                harness_cluster_run(nodes, 2, 3, 200);     /* the newcomer settles as standby */
        }
        qsort(t, (size_t) kills, sizeof(*t), cmp_u64);
        printf("cluster: lease_ttl %llds, %d kills of the active instance (no revoke)\n", (long long) ttl, kills);
        printf("cluster: takeover median %llu ms, worst %llu ms, best %llu ms\n",
               (unsigned long long) t[kills / 2], (unsigned long long) t[kills - 1], (unsigned long long) t[0]);
        printf("cluster: leadership requests per instance: %.1f per minute (%.0f per 5-minute poll cycle)\n",
               per_min, per_min * 5);
        for (int i = 0; i < 2; i++)
                harness_cluster_node_stop(&nodes[i], false);
        harness_etcd_free(e);
        free(t);
        return 0;
}
