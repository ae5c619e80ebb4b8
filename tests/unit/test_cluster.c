/* SPDX-License-Identifier: MIT */
/*
 * lib/cluster against a real three-member etcd cluster on loopback
 * (tests/harness/etcdrun.c).  Each instance runs on its own libuv loop, so
 * a test can stall one (as SIGSTOP would) while the others run.  Skipped
 * (cmocka skip) when etcd is not installed.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "cluster.h"
#include "etcd.h"
#include "etcdrun.h"
#include "http.h"
#include "util.h"

#define TTL 2                           /* seconds */
#define LIVENESS_MS (5 * TTL * 1000)    /* a bound for "eventually", not a timing check */

static struct harness_etcd *etcd_cluster;
static int prefix_no;

static int setup(void **state) {
        int r = harness_etcd_start(3, &etcd_cluster);
        if (r == -ENOENT) {
                fprintf(stderr, "test_cluster: etcd is not installed (scripts/deps.sh installs etcd-server); skipping\n");
                return 0;
        }
        return r < 0 ? -1 : 0;
}

static int teardown(void **state) {
        harness_etcd_free(etcd_cluster);
        return 0;
}

#define NEED_ETCD() do { if (!etcd_cluster) skip(); } while (0)

static void nodes_start_ttl(struct harness_cluster_node *nodes, size_t n, int ttl) {
        char prefix[32];
        snprintf(prefix, sizeof(prefix), "/test%d/", ++prefix_no);
        assert_int_equal(harness_cluster_nodes_start(etcd_cluster, prefix, ttl, nodes, n), 0);
}

static void nodes_start(struct harness_cluster_node *nodes, size_t n) {
        nodes_start_ttl(nodes, n, TTL);
}

static void node_stop(struct harness_cluster_node *x, bool abandon) {
        harness_cluster_node_stop(x, abandon);
}

static void nodes_stop(struct harness_cluster_node *nodes, size_t n) {
        for (size_t i = 0; i < n; i++)
                node_stop(&nodes[i], false);
}

/* Runs (mask) until exactly one node is active; asserts at most one ever is. */
static int wait_one_active(struct harness_cluster_node *nodes, size_t n, unsigned mask) {
        uint64_t end = util_now_mono_ms() + LIVENESS_MS;
        while (util_now_mono_ms() < end) {
                harness_cluster_run(nodes, n, mask, 20);
                size_t count;
                int idx = harness_cluster_active(nodes, n, &count);
                assert_true(count <= 1);
                if (count == 1)
                        return idx;
        }
        fail_msg("no instance became active");
        return -1;
}

static void test_exactly_one_active(void **state) {
        NEED_ETCD();
        struct harness_cluster_node nodes[3];
        nodes_start(nodes, 3);
        int a = wait_one_active(nodes, 3, 7);
        /* Stays so for a while, and the standbys know who leads. */
        for (int i = 0; i < 3 * TTL * 10; i++) {
                harness_cluster_run(nodes, 3, 7, 100);
                size_t count;
                assert_int_equal(harness_cluster_active(nodes, 3, &count), a);
                assert_int_equal(count, 1);
        }
        char *d = cluster_describe(nodes[a].c);
        assert_string_equal(d, "active");
        free(d);
        for (int i = 0; i < 3; i++) {
                if (i == a)
                        continue;
                char want[64];
                snprintf(want, sizeof(want), "standby (leader: %s)", nodes[a].name);
                d = cluster_describe(nodes[i].c);
                assert_string_equal(d, want);
                free(d);
                struct etcd_compare f;
                assert_int_equal(cluster_fence(nodes[i].c, &f), -EPERM);
        }
        nodes_stop(nodes, 3);
}

/* The active one dies (no revoke): a standby takes over after the lease. */
static void test_takeover_after_death(void **state) {
        NEED_ETCD();
        struct harness_cluster_node nodes[3];
        nodes_start(nodes, 3);
        int a = wait_one_active(nodes, 3, 7);
        struct etcd_compare old;
        assert_int_equal(cluster_fence(nodes[a].c, &old), 0);
        node_stop(&nodes[a], true);
        int b = wait_one_active(nodes, 3, 7 & ~(1u << a));
        assert_int_not_equal(a, b);
        struct etcd_compare now;
        assert_int_equal(cluster_fence(nodes[b].c, &now), 0);
        assert_true(now.value > old.value);
        nodes_stop(nodes, 3);
}

/* A clean stop revokes the lease: the next one need not wait for the TTL. */
static void test_resign(void **state) {
        NEED_ETCD();
        struct harness_cluster_node nodes[2];
        nodes_start(nodes, 2);
        int a = wait_one_active(nodes, 2, 3);
        node_stop(&nodes[a], false);
        int b = wait_one_active(nodes, 2, 3 & ~(1u << a));
        assert_int_not_equal(a, b);
        nodes_stop(nodes, 2);
}

struct done {
        bool called;
        int r;
        bool succeeded;
        int64_t lease;
};

static void on_done(void *userdata, int r, const struct etcd_result *res) {
        struct done *d = userdata;
        d->called = true;
        d->r = r;
        d->succeeded = res && res->succeeded;
        d->lease = res && res->n_kvs ? res->kvs[0].lease : 0;
}

static void wait_done(struct harness_cluster_node *x, struct done *d) {
        while (!d->called)
                uv_run(&x->loop, UV_RUN_ONCE);
}

/* A fenced put through node x's client with the given fence. */
static struct done fenced_put(struct harness_cluster_node *x, const struct etcd_compare *fence) {
        struct done d = { 0 };
        const struct etcd_op put = { .type = ETCD_OP_PUT, .key = "/fenced", .value = "x", .value_len = 1 };
        const struct etcd_txn t = { fence, 1, &put, 1, NULL, 0 };
        assert_int_equal(etcd_txn(x->etcd, &t, on_done, &d), 0);
        wait_done(x, &d);
        return d;
}

/* A leader that stalls past its TTL (SIGSTOP) is deposed the moment it
 * resumes, before its loop runs, and its fence no longer holds. */
static void test_stalled_leader(void **state) {
        NEED_ETCD();
        struct harness_cluster_node nodes[2];
        nodes_start(nodes, 2);
        int a = wait_one_active(nodes, 2, 3), b = 1 - a;
        struct etcd_compare old;
        assert_int_equal(cluster_fence(nodes[a].c, &old), 0);
        struct done d = fenced_put(&nodes[a], &old);
        assert_int_equal(d.r, 0);
        assert_true(d.succeeded);

        /* Only b runs: a is frozen.  Never both active. */
        uint64_t end = util_now_mono_ms() + LIVENESS_MS;
        while (!cluster_is_active(nodes[b].c) && util_now_mono_ms() < end) {
                harness_cluster_run(nodes, 2, 1u << b, 20);
                size_t count;
                harness_cluster_active(nodes, 2, &count);
                assert_true(count <= 1);
        }
        assert_true(cluster_is_active(nodes[b].c));
        assert_false(cluster_is_active(nodes[a].c));
        struct etcd_compare f;
        assert_int_equal(cluster_fence(nodes[a].c, &f), -EPERM);
        d = fenced_put(&nodes[a], &old);
        assert_int_equal(d.r, 0);
        assert_false(d.succeeded);

        /* a resumes: it learns the new leader and never acts. */
        for (int i = 0; i < 2 * TTL * 10; i++) {
                harness_cluster_run(nodes, 2, 3, 100);
                assert_false(cluster_is_active(nodes[a].c));
                assert_true(cluster_is_active(nodes[b].c));
        }
        assert_string_equal(cluster_leader(nodes[a].c), nodes[b].name);
        nodes_stop(nodes, 2);
}

/* Someone revokes the leader's lease: the keepalive answer has no TTL, the
 * leader stops at once and campaigns with a new lease. */
static void test_lease_revoked(void **state) {
        NEED_ETCD();
        struct harness_cluster_node nodes[1];
        nodes_start(nodes, 1);
        assert_int_equal(wait_one_active(nodes, 1, 1), 0);
        int changes = nodes[0].changes;
        char key[48];
        snprintf(key, sizeof(key), "/test%d/leader", prefix_no);
        struct done d = { 0 };
        assert_int_equal(etcd_range(nodes[0].etcd, key, false, on_done, &d), 0);
        wait_done(&nodes[0], &d);
        assert_true(d.lease != 0);
        int64_t lease = d.lease;
        d = (struct done) { 0 };
        assert_int_equal(etcd_lease_revoke(nodes[0].etcd, lease, on_done, &d), 0);
        wait_done(&nodes[0], &d);
        assert_int_equal(d.r, 0);
        /* Deposed (a change), then active again with a new lease. */
        uint64_t end = util_now_mono_ms() + LIVENESS_MS;
        while (nodes[0].changes < changes + 2 && util_now_mono_ms() < end)
                harness_cluster_run(nodes, 1, 1, 20);
        assert_true(nodes[0].changes >= changes + 2);
        assert_int_equal(wait_one_active(nodes, 1, 1), 0);
        struct cluster_stats st;
        cluster_get_stats(nodes[0].c, &st);
        assert_true(st.depositions >= 1);
        nodes_stop(nodes, 1);
}

static bool wait_inactive(struct harness_cluster_node *nodes, size_t n, int a) {
        uint64_t end = util_now_mono_ms() + LIVENESS_MS;
        while (util_now_mono_ms() < end) {
                harness_cluster_run(nodes, n, 3, 20);
                if (!cluster_is_active(nodes[a].c))
                        return true;
        }
        return false;
}

/* One etcd member down: still one active.  Two down: nobody acts.  Quorum
 * back: one acts again.  The lease is longer here than in the other tests:
 * the member killed first may be etcd's raft leader, and the election that
 * follows (etcd's election timeout is 1 s) must fit in the leader's active
 * window (lease_ttl/2, docs/cluster.md); with 2 s it did not on a loaded
 * host, and the leader stood down, safely but wrongly for this check. */
#define QUORUM_TTL 6
static void test_quorum(void **state) {
        NEED_ETCD();
        struct harness_cluster_node nodes[2];
        nodes_start_ttl(nodes, 2, QUORUM_TTL);
        int a = wait_one_active(nodes, 2, 3);
        assert_int_equal(harness_etcd_signal(etcd_cluster, 0, SIGKILL), 0);
        for (int i = 0; i < 2 * QUORUM_TTL * 10; i++) {
                harness_cluster_run(nodes, 2, 3, 100);
                size_t count;
                assert_int_equal(harness_cluster_active(nodes, 2, &count), a);
        }
        assert_int_equal(harness_etcd_signal(etcd_cluster, 1, SIGKILL), 0);
        assert_true(wait_inactive(nodes, 2, a));
        for (int i = 0; i < 2 * TTL * 10; i++) {
                harness_cluster_run(nodes, 2, 3, 100);
                size_t count;
                harness_cluster_active(nodes, 2, &count);
                assert_int_equal(count, 0);
        }
        assert_int_equal(harness_etcd_restart(etcd_cluster, 0), 0);
        assert_int_equal(harness_etcd_restart(etcd_cluster, 1), 0);
        wait_one_active(nodes, 2, 3);
        nodes_stop(nodes, 2);
}

static void test_bad_options(void **state) {
        NEED_ETCD();
        struct harness_cluster_node x = { 0 };
        uv_loop_init(&x.loop);
        assert_int_equal(http_new(&x.loop, NULL, &x.http), 0);
        const struct etcd_options eo = { .endpoints = etcd_cluster->endpoints };
        assert_int_equal(etcd_new(x.http, &eo, &x.etcd), 0);
        struct cluster *c = NULL;
        const struct cluster_options bad[] = {
                { .prefix = "/p/", .name = "a", .lease_ttl = 1 },
                { .prefix = "/p/", .name = "", .lease_ttl = 5 },
                { .prefix = "/p/", .name = "a\nb", .lease_ttl = 5 },
                { .prefix = "", .name = "a", .lease_ttl = 5 },
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_int_equal(cluster_new(&x.loop, x.etcd, &bad[i], NULL, NULL, &c), -EINVAL);
        assert_null(c);
        etcd_free(x.etcd);
        http_free(x.http);
        uv_run(&x.loop, UV_RUN_DEFAULT);
        uv_loop_close(&x.loop);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_bad_options),
                cmocka_unit_test(test_exactly_one_active),
                cmocka_unit_test(test_takeover_after_death),
                cmocka_unit_test(test_resign),
                cmocka_unit_test(test_stalled_leader),
                cmocka_unit_test(test_lease_revoked),
                cmocka_unit_test(test_quorum),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
