/* SPDX-License-Identifier: MIT */
/*
 * bench-cluster: the takeover time of lib/cluster on a real three-member
 * etcd on loopback, and the requests the leadership costs.
 *
 * Two instances; the active one is killed without revoking its lease (as
 * SIGKILL leaves it) and the time until the other is active is measured;
 * then a fresh instance replaces the dead one.  Repeated KILLS times.
 * Then the state writes a cycle adds: a state of 2,000 customers (10,000
 * orders) saved cold, again unchanged, and with 10% of the customers
 * changed; requests counted from http's stats.
 * Usage: bench-cluster [KILLS [LEASE_TTL_SECONDS]]  (default 20, 3)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clusterstore.h"
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

struct saved {
        bool done;
        int r;
};

static void on_saved(void *userdata, int r, struct state *loaded, const char *err) {
        struct saved *d = userdata;
        d->done = true;
        d->r = r;
}

/* One save: its requests and milliseconds. */
static int timed_save(struct harness_cluster_node *x, struct cstore *cs, const struct state *st, const char *what) {
        struct etcd_compare fence;
        if (cluster_fence(x->c, &fence) < 0)
                return -EPERM;
        struct http_stats before, after;
        http_get_stats(x->http, &before);
        uint64_t t0 = util_now_mono_ms();
        struct saved d = { 0 };
        int r = cstore_save(cs, &fence, st, on_saved, &d);
        while (r == 0 && !d.done)
                uv_run(&x->loop, UV_RUN_ONCE);
        http_get_stats(x->http, &after);
        printf("cluster:   %-30s %4llu requests, %5llu ms%s\n", what, (unsigned long long) (after.requests - before.requests),
               (unsigned long long) (util_now_mono_ms() - t0), r == 0 && d.r == 0 ? "" : " (FAILED)");
        return r < 0 ? r : d.r;
}

static struct state *big_state(size_t customers, size_t orders_each) {
        struct state *s = state_new();
        for (size_t i = 0; s && i < customers; i++) {
                char key[32], id[64];
                snprintf(key, sizeof(key), "tenant-%06zu", i);
                struct tracked_customer *c = state_add_customer(s, key);
                if (!c)
                        break;
                c->first_seen = c->notified_at = c->next_check = 1790000000;
                c->name = strdup("Contoso Datentechnik GmbH");
                c->relationship_url = strdup("https://admin.microsoft.com/Adminportal/Home?invType=ResellerRelationship&partnerId=00000000-0000-0000-0000-000000000000#/BillingAccounts/partner-invitation");
                for (size_t k = 0; k < orders_each; k++) {
                        snprintf(id, sizeof(id), "ORD-%04zu-%04zu-%04zu", i / 10000, i % 10000, k);
                        struct tracked_order *t = customer_add_order(c, id);
                        if (t)
                                t->first_seen = t->querying_since = 1790000000;
                }
        }
        return s;
}

/* The writes a cycle adds, with the active node x. */
static int bench_state(struct harness_cluster_node *x) {
        struct cstore *cs;
        if (cstore_new(x->etcd, "/bench/", &cs) < 0)
                return -ENOMEM;
        struct state *st = big_state(2000, 5);
        int r = st ? 0 : -ENOMEM;
        printf("cluster: state saves, 2,000 customers / 10,000 orders:\n");
        if (r == 0)
                r = timed_save(x, cs, st, "cold (everything)");
        if (r == 0)
                r = timed_save(x, cs, st, "warm, nothing changed");
        for (size_t i = 0; st && i < st->n_customers; i += 10)
                st->customers[i].next_check += 3600;
        if (r == 0)
                r = timed_save(x, cs, st, "warm, 10% of customers changed");
        state_free(st);
        cstore_free(cs);
        return r;
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
        /* The saves block the loop while encoding (as store_save does):
         * the default lease_ttl of 10 s, not the short one of the kills. */
        r = harness_cluster_node_start(e, "/bench-state/", 10, &nodes[0], 0);
        if (r < 0 || wait_active(nodes, 1, 50000) < 0 || bench_state(&nodes[0]) < 0)
                fprintf(stderr, "bench-cluster: the state saves failed\n");
        harness_cluster_node_stop(&nodes[0], false);
        harness_etcd_free(e);
        free(t);
        return 0;
}
