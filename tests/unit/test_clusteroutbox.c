/* SPDX-License-Identifier: MIT */
/*
 * lib/clusteroutbox against a real etcd on loopback: the outbox files
 * mirrored (changed-only, fenced, size-bounded transactions) and restored
 * on a takeover.  Skipped (cmocka skip) when etcd is not installed.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "clusteroutbox.h"
#include "etcd.h"
#include "etcdrun.h"
#include "harness.h"
#include "http.h"
#include "util.h"

static struct harness_etcd *cluster;
static uv_loop_t loop;
static struct http *http;
static struct etcd *etcd;
static int prefix_no;
static char prefix[32], leader_key[48], dir_a[512], dir_b[512];

static int setup(void **state) {
        return harness_etcd_client_start("test_clusteroutbox", &cluster, &loop, &http, &etcd);
}

static int teardown(void **state) {
        harness_etcd_client_stop(cluster, &loop, http, etcd);
        return 0;
}

/* A fresh prefix and two fresh outbox directories per test. */
static int per_test(void **state) {
        snprintf(prefix, sizeof(prefix), "/co%d/", ++prefix_no);
        snprintf(leader_key, sizeof(leader_key), "%sleader", prefix);
        char *a = harness_tmpdir(), *b = harness_tmpdir();
        if (!a || !b)
                return -1;
        snprintf(dir_a, sizeof(dir_a), "%s", a);
        snprintf(dir_b, sizeof(dir_b), "%s", b);
        free(a);
        free(b);
        return 0;
}

static int per_test_end(void **state) {
        harness_rmrf(dir_a);
        harness_rmrf(dir_b);
        return 0;
}

#define NEED_ETCD() do { if (!cluster) skip(); } while (0)

struct done {
        bool called;
        int r;
        struct etcd_result res;
        char *values[8];
        char *keys[8];
        size_t n_kvs;
};

static void on_done(void *userdata, int r) {
        struct done *d = userdata;
        d->called = true;
        d->r = r;
}

static void on_etcd(void *userdata, int r, const struct etcd_result *res) {
        struct done *d = userdata;
        d->called = true;
        d->r = r;
        if (!res)
                return;
        d->res = *res;
        d->n_kvs = res->n_kvs;
        for (size_t i = 0; i < res->n_kvs && i < 8; i++) {
                d->keys[i] = strdup(res->kvs[i].key);
                d->values[i] = strdup(res->kvs[i].value);
        }
}

static void done_clear(struct done *d) {
        for (size_t i = 0; i < 8; i++) {
                free(d->keys[i]);
                free(d->values[i]);
        }
}

static void wait_done(struct done *d) {
        while (!d->called)
                uv_run(&loop, UV_RUN_ONCE);
}

static struct etcd_compare make_leader(void) {
        struct done d = { 0 };
        const struct etcd_op put = { .type = ETCD_OP_PUT, .key = leader_key, .value = "me", .value_len = 2 };
        const struct etcd_txn t = { .success = &put, .n_success = 1 };
        assert_int_equal(etcd_txn(etcd, &t, on_etcd, &d), 0);
        wait_done(&d);
        assert_int_equal(d.r, 0);
        return (struct etcd_compare) { .key = leader_key, .target = ETCD_TARGET_CREATE, .value = d.res.revision };
}

static void write_msg(const char *dir, const char *name, const char *text) {
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        assert_int_equal(util_write_file_atomic(path, text, strlen(text), 0600), 0);
}

static char *read_msg(const char *dir, const char *name) {
        char path[1024], *text = NULL;
        size_t len;
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        return util_read_file(path, 1 << 20, &text, &len) == 0 ? text : NULL;
}

static int sync_(struct coutbox *o, const struct etcd_compare *fence) {
        struct done d = { 0 };
        int r = coutbox_sync(o, fence, on_done, &d);
        if (r < 0)
                return r;
        wait_done(&d);
        return d.r;
}

static int restore(struct coutbox *o) {
        struct done d = { 0 };
        assert_int_equal(coutbox_restore(o, on_done, &d), 0);
        wait_done(&d);
        return d.r;
}

/* Keys and values under <prefix>outbox/, in d. */
static void range(struct done *d) {
        char key[64];
        snprintf(key, sizeof(key), "%soutbox/", prefix);
        assert_int_equal(etcd_range(etcd, key, true, on_etcd, d), 0);
        wait_done(d);
        assert_int_equal(d->r, 0);
}

/* 1 when etcd holds the entry of file name, else 0. */
static size_t held(const char *name) {
        char key[128];
        snprintf(key, sizeof(key), "%soutbox/%s", prefix, name);
        struct done d = { 0 };
        assert_int_equal(etcd_range(etcd, key, false, on_etcd, &d), 0);
        wait_done(&d);
        done_clear(&d);
        return d.n_kvs;
}

/* New files are put, unchanged ones are not written again, sent (removed)
 * ones are deleted; other files of the directory are not the outbox's. */
static void test_sync(void **state) {
        NEED_ETCD();
        struct etcd_compare fence = make_leader();
        struct coutbox *o = NULL;
        assert_int_equal(coutbox_new(etcd, prefix, dir_a, &o), 0);
        write_msg(dir_a, "000000000001-aaaa.msg", "{\"dedup_key\":\"a\"}\nmail a");
        write_msg(dir_a, "000000000002-bbbb.msg", "{\"dedup_key\":\"b\"}\nmail b");
        write_msg(dir_a, "sent.json", "{}");
        assert_int_equal(sync_(o, &fence), 0);
        assert_int_equal(coutbox_mirrored(o), 2);
        struct done d = { 0 };
        range(&d);
        assert_int_equal(d.n_kvs, 2);
        assert_non_null(strstr(d.keys[0], "outbox/000000000001-aaaa.msg"));
        assert_string_equal(d.values[1], "{\"dedup_key\":\"b\"}\nmail b");
        int64_t header_rev = d.res.revision;
        done_clear(&d);

        /* nothing changed: no write (the store's revision stays) */
        assert_int_equal(sync_(o, &fence), 0);
        struct done d2 = { 0 };
        range(&d2);
        assert_int_equal(d2.res.revision, header_rev);
        done_clear(&d2);

        /* a is sent (its file goes), b is rewritten (a failed attempt) */
        char path[1024];
        snprintf(path, sizeof(path), "%s/000000000001-aaaa.msg", dir_a);
        assert_int_equal(unlink(path), 0);
        usleep(10 * 1000);
        write_msg(dir_a, "000000000002-bbbb.msg", "{\"dedup_key\":\"b\",\"attempts\":1}\nmail b");
        assert_int_equal(sync_(o, &fence), 0);
        struct done d3 = { 0 };
        range(&d3);
        assert_int_equal(d3.n_kvs, 1);
        assert_string_equal(d3.values[0], "{\"dedup_key\":\"b\",\"attempts\":1}\nmail b");
        done_clear(&d3);
        assert_int_equal(held("000000000001-aaaa.msg"), 0);
        coutbox_free(o);
}

/* A deposed leader's sync changes nothing. */
static void test_fenced(void **state) {
        NEED_ETCD();
        struct etcd_compare fence = make_leader();
        struct coutbox *o = NULL;
        assert_int_equal(coutbox_new(etcd, prefix, dir_a, &o), 0);
        write_msg(dir_a, "000000000001-aaaa.msg", "mail a");
        assert_int_equal(sync_(o, &fence), 0);
        fence.value--;   /* another leader's revision */
        write_msg(dir_a, "000000000002-bbbb.msg", "mail b");
        assert_int_equal(sync_(o, &fence), -EPERM);
        struct done d = { 0 };
        range(&d);
        assert_int_equal(d.n_kvs, 1);
        done_clear(&d);
        assert_int_equal(coutbox_mirrored(o), 1);
        coutbox_free(o);
}

/* Many messages, more than one transaction's bytes: all arrive; one too
 * large for etcd is an error, not a silent loss. */
static void test_batches_and_size(void **state) {
        NEED_ETCD();
        struct etcd_compare fence = make_leader();
        struct coutbox *o = NULL;
        assert_int_equal(coutbox_new(etcd, prefix, dir_a, &o), 0);
        size_t big = 200 * 1024;
        char *text = malloc(big + 1);
        assert_non_null(text);
        memset(text, 'x', big);
        text[big] = '\0';
        for (int i = 0; i < 12; i++) {   /* 2.4 MB: three transactions at least */
                char name[64];
                snprintf(name, sizeof(name), "0000000000%02d-cccc.msg", i);
                write_msg(dir_a, name, text);
        }
        assert_int_equal(sync_(o, &fence), 0);
        assert_int_equal(coutbox_mirrored(o), 12);
        free(text);
        text = malloc(COUTBOX_MAX_MSG + 2);
        assert_non_null(text);
        memset(text, 'y', COUTBOX_MAX_MSG + 1);
        text[COUTBOX_MAX_MSG + 1] = '\0';
        write_msg(dir_a, "000000000099-dddd.msg", text);
        free(text);
        assert_int_equal(sync_(o, &fence), -EFBIG);
        coutbox_free(o);
}

/* A takeover: etcd's entries become the files, a stale local one goes. */
static void test_restore(void **state) {
        NEED_ETCD();
        struct etcd_compare fence = make_leader();
        struct coutbox *a = NULL, *b = NULL;
        assert_int_equal(coutbox_new(etcd, prefix, dir_a, &a), 0);
        assert_int_equal(coutbox_new(etcd, prefix, dir_b, &b), 0);
        write_msg(dir_a, "000000000001-aaaa.msg", "mail a");
        write_msg(dir_a, "000000000002-bbbb.msg", "mail b");
        assert_int_equal(sync_(a, &fence), 0);
        write_msg(dir_b, "000000000000-0000.msg", "queued in an earlier term, not the cluster's");
        write_msg(dir_b, "sent.json", "{}");
        assert_int_equal(restore(b), 0);
        assert_int_equal(coutbox_mirrored(b), 2);
        char *t = read_msg(dir_b, "000000000001-aaaa.msg");
        assert_string_equal(t, "mail a");
        free(t);
        t = read_msg(dir_b, "000000000002-bbbb.msg");
        assert_string_equal(t, "mail b");
        free(t);
        assert_null(read_msg(dir_b, "000000000000-0000.msg"));
        t = read_msg(dir_b, "sent.json");   /* not an outbox message: kept */
        assert_non_null(t);
        free(t);
        /* b's sync after the restore writes nothing new, and deletes what b sent */
        char path[1024];
        snprintf(path, sizeof(path), "%s/000000000001-aaaa.msg", dir_b);
        assert_int_equal(unlink(path), 0);
        assert_int_equal(sync_(b, &fence), 0);
        struct done d = { 0 };
        range(&d);
        assert_int_equal(d.n_kvs, 1);
        assert_non_null(strstr(d.keys[0], "000000000002-bbbb.msg"));
        done_clear(&d);
        coutbox_free(a);
        coutbox_free(b);
}

/* A key under outbox/ that is no message file name is refused, not
 * written anywhere. */
static void test_restore_bad_name(void **state) {
        NEED_ETCD();
        char key[96];
        snprintf(key, sizeof(key), "%soutbox/../../etc/x.msg", prefix);
        struct done d = { 0 };
        const struct etcd_op put = { .type = ETCD_OP_PUT, .key = key, .value = "x", .value_len = 1 };
        const struct etcd_txn t = { .success = &put, .n_success = 1 };
        assert_int_equal(etcd_txn(etcd, &t, on_etcd, &d), 0);
        wait_done(&d);
        struct coutbox *o = NULL;
        assert_int_equal(coutbox_new(etcd, prefix, dir_a, &o), 0);
        assert_int_equal(restore(o), -EBADMSG);
        coutbox_free(o);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_sync, per_test, per_test_end),
                cmocka_unit_test_setup_teardown(test_fenced, per_test, per_test_end),
                cmocka_unit_test_setup_teardown(test_batches_and_size, per_test, per_test_end),
                cmocka_unit_test_setup_teardown(test_restore, per_test, per_test_end),
                cmocka_unit_test_setup_teardown(test_restore_bad_name, per_test, per_test_end),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
