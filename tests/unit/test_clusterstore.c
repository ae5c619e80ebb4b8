/* SPDX-License-Identifier: MIT */
/*
 * lib/clusterstore against a real etcd on loopback: one key per customer,
 * changed-only saves in fenced transactions, migrate-once.  Skipped (cmocka
 * skip) when etcd is not installed.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "clusterstore.h"
#include "etcd.h"
#include "etcdrun.h"
#include "http.h"
#include "store.h"

static struct harness_etcd *cluster;
static uv_loop_t loop;
static struct http *http;
static struct etcd *etcd;
static int prefix_no;
static char prefix[32], leader_key[48];

static int setup(void **state) {
        return harness_etcd_client_start("test_clusterstore", &cluster, &loop, &http, &etcd);
}

static int teardown(void **state) {
        harness_etcd_client_stop(cluster, &loop, http, etcd);
        return 0;
}

/* A fresh prefix per test. */
static int per_test(void **state) {
        snprintf(prefix, sizeof(prefix), "/cs%d/", ++prefix_no);
        snprintf(leader_key, sizeof(leader_key), "%sleader", prefix);
        return 0;
}

#define NEED_ETCD() do { if (!cluster) skip(); } while (0)

struct done {
        bool called;
        int r;
        struct state *loaded;
        struct etcd_result res;
        int64_t mod_rev[4];
        size_t n_kvs;
};

static void on_store(void *userdata, int r, struct state *loaded, const char *err) {
        struct done *d = userdata;
        d->called = true;
        d->r = r;
        d->loaded = loaded;
}

static void on_etcd(void *userdata, int r, const struct etcd_result *res) {
        struct done *d = userdata;
        d->called = true;
        d->r = r;
        if (!res)
                return;
        d->res = *res;
        d->n_kvs = res->n_kvs;
        for (size_t i = 0; i < res->n_kvs && i < 4; i++)
                d->mod_rev[i] = res->kvs[i].mod_revision;
}

static void wait_done(struct done *d) {
        while (!d->called)
                uv_run(&loop, UV_RUN_ONCE);
}

/* Puts the leader key (as lib/cluster would) and returns its fence. */
static struct etcd_compare make_leader(void) {
        struct done d = { 0 };
        const struct etcd_op put = { .type = ETCD_OP_PUT, .key = leader_key, .value = "me", .value_len = 2 };
        const struct etcd_txn t = { .success = &put, .n_success = 1 };
        assert_int_equal(etcd_txn(etcd, &t, on_etcd, &d), 0);
        wait_done(&d);
        assert_int_equal(d.r, 0);
        return (struct etcd_compare) { .key = leader_key, .target = ETCD_TARGET_CREATE, .value = d.res.revision };
}

static void delete_leader(void) {
        struct done d = { 0 };
        const struct etcd_op del = { .type = ETCD_OP_DELETE, .key = leader_key };
        const struct etcd_txn t = { .success = &del, .n_success = 1 };
        assert_int_equal(etcd_txn(etcd, &t, on_etcd, &d), 0);
        wait_done(&d);
}

/* n customers c000, c001... with one order each (sorted insertion). */
static struct state *make_state(size_t n) {
        struct state *s = state_new();
        assert_non_null(s);
        for (size_t i = 0; i < n; i++) {
                char key[32], id[48];
                snprintf(key, sizeof(key), "c%03zu", i);
                snprintf(id, sizeof(id), "ORD-%04zu-0000-0000", i);
                struct tracked_customer *c = state_add_customer(s, key);
                assert_non_null(c);
                c->first_seen = 1700000000 + (int64_t) i;
                assert_non_null(customer_add_order(c, id));
        }
        return s;
}

static void assert_same_state(const struct state *a, const struct state *b) {
        char *ta, *tb;
        assert_int_equal(store_to_json(a, &ta), 0);
        assert_int_equal(store_to_json(b, &tb), 0);
        assert_string_equal(ta, tb);
        free(ta);
        free(tb);
}

static struct cstore *new_store(void) {
        struct cstore *s = NULL;
        assert_int_equal(cstore_new(etcd, prefix, &s), 0);
        return s;
}

static int save(struct cstore *cs, const struct etcd_compare *fence, const struct state *st) {
        struct done d = { 0 };
        assert_int_equal(cstore_save(cs, fence, st, on_store, &d), 0);
        wait_done(&d);
        return d.r;
}

static struct state *load(struct cstore *cs, int *ret_r) {
        struct done d = { 0 };
        assert_int_equal(cstore_load(cs, on_store, &d), 0);
        wait_done(&d);
        *ret_r = d.r;
        return d.loaded;
}

static int64_t mod_revision(const char *customer) {
        char key[96];
        snprintf(key, sizeof(key), "%sstate/customers/%s", prefix, customer);
        struct done d = { 0 };
        assert_int_equal(etcd_range(etcd, key, false, on_etcd, &d), 0);
        wait_done(&d);
        assert_int_equal(d.r, 0);
        return d.n_kvs ? d.mod_rev[0] : 0;
}

/* 250 customers: one key each, several transactions; read back equal. */
static void test_roundtrip(void **state) {
        NEED_ETCD();
        struct etcd_compare fence = make_leader();
        struct cstore *cs = new_store();
        struct state *st = make_state(250);
        assert_int_equal(save(cs, &fence, st), 0);
        assert_true(mod_revision("c000") > 0);
        assert_true(mod_revision("c249") > mod_revision("c000"));   /* a later batch */
        struct cstore *other = new_store();
        int r;
        struct state *back = load(other, &r);
        assert_int_equal(r, 0);
        assert_non_null(back);
        assert_same_state(st, back);
        state_free(back);
        state_free(st);
        cstore_free(other);
        cstore_free(cs);
}

/* Only what changed is written; a pruned customer is deleted. */
static void test_changed_only(void **state) {
        NEED_ETCD();
        struct etcd_compare fence = make_leader();
        struct cstore *cs = new_store();
        struct state *st = make_state(3);
        assert_int_equal(save(cs, &fence, st), 0);
        int64_t r0 = mod_revision("c000"), r1 = mod_revision("c001");
        st->customers[1].reminders = 2;
        state_remove_customer(st, 2);
        assert_int_equal(save(cs, &fence, st), 0);
        assert_int_equal(mod_revision("c000"), r0);
        assert_true(mod_revision("c001") > r1);
        assert_int_equal(mod_revision("c002"), 0);
        int r;
        struct cstore *other = new_store();
        struct state *back = load(other, &r);
        assert_int_equal(r, 0);
        assert_same_state(st, back);
        state_free(back);
        state_free(st);
        cstore_free(other);
        cstore_free(cs);
}

/* A deposed leader's save fails and changes nothing. */
static void test_fenced(void **state) {
        NEED_ETCD();
        struct etcd_compare fence = make_leader();
        struct cstore *cs = new_store();
        struct state *st = make_state(2);
        assert_int_equal(save(cs, &fence, st), 0);
        int64_t r0 = mod_revision("c000");
        delete_leader();
        make_leader();          /* someone else's term */
        st->customers[0].reminders = 3;
        assert_int_equal(save(cs, &fence, st), -EPERM);
        assert_int_equal(mod_revision("c000"), r0);
        state_free(st);
        cstore_free(cs);
}

static void test_migrate_once(void **state) {
        NEED_ETCD();
        struct cstore *cs = new_store();
        struct state *st = make_state(120);
        struct done d = { 0 };
        assert_int_equal(cstore_migrate(cs, st, on_store, &d), 0);
        wait_done(&d);
        assert_int_equal(d.r, 0);
        d = (struct done) { 0 };
        assert_int_equal(cstore_migrate(cs, st, on_store, &d), 0);
        wait_done(&d);
        assert_int_equal(d.r, -EEXIST);
        int r;
        struct state *back = load(cs, &r);
        assert_int_equal(r, 0);
        assert_same_state(st, back);
        state_free(back);
        state_free(st);
        cstore_free(cs);
}

/* Anything under the prefix (a running daemon's leader key): refused. */
static void test_migrate_refuses_nonempty(void **state) {
        NEED_ETCD();
        make_leader();
        struct cstore *cs = new_store();
        struct state *st = make_state(1);
        struct done d = { 0 };
        assert_int_equal(cstore_migrate(cs, st, on_store, &d), 0);
        wait_done(&d);
        assert_int_equal(d.r, -EEXIST);
        assert_int_equal(mod_revision("c000"), 0);
        state_free(st);
        cstore_free(cs);
}

static void test_corrupt_record(void **state) {
        NEED_ETCD();
        char key[96];
        snprintf(key, sizeof(key), "%sstate/customers/x", prefix);
        struct done d = { 0 };
        const struct etcd_op put = { .type = ETCD_OP_PUT, .key = key, .value = "{\"key\": 5}", .value_len = 10 };
        const struct etcd_txn t = { .success = &put, .n_success = 1 };
        assert_int_equal(etcd_txn(etcd, &t, on_etcd, &d), 0);
        wait_done(&d);
        struct cstore *cs = new_store();
        int r;
        struct state *back = load(cs, &r);
        assert_int_equal(r, -EBADMSG);
        assert_null(back);
        cstore_free(cs);
}

static void test_empty_load(void **state) {
        NEED_ETCD();
        struct cstore *cs = new_store();
        int r;
        struct state *back = load(cs, &r);
        assert_int_equal(r, 0);
        assert_non_null(back);
        assert_int_equal(back->n_customers, 0);
        state_free(back);
        cstore_free(cs);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup(test_roundtrip, per_test),
                cmocka_unit_test_setup(test_changed_only, per_test),
                cmocka_unit_test_setup(test_fenced, per_test),
                cmocka_unit_test_setup(test_migrate_once, per_test),
                cmocka_unit_test_setup(test_migrate_refuses_nonempty, per_test),
                cmocka_unit_test_setup(test_corrupt_record, per_test),
                cmocka_unit_test_setup(test_empty_load, per_test),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
