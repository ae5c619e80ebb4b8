/* SPDX-License-Identifier: MIT */
/*
 * lib/etcd against a real etcd (Debian's etcd-server) on loopback, started
 * by the test on free ports with its data in a temp dir.  Skipped (cmocka
 * skip) when etcd is not installed.
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
#include <cmocka.h>
#include <microhttpd.h>

#include "etcd.h"
#include "etcdrun.h"
#include "http.h"
#include "util.h"

static struct harness_etcd *cluster;
static struct harness_etcd *tls;        /* test_client_certificate's; freed here even if it fails */
static uv_loop_t loop;
static struct http *http;

static int setup(void **state) {
        int r = harness_etcd_start(1, &cluster);
        if (r == -ENOENT)
                fprintf(stderr, "test_etcd: etcd is not installed (scripts/deps.sh installs etcd-server); skipping\n");
        else if (r < 0)
                return -1;
        if (uv_loop_init(&loop) < 0 || http_new(&loop, NULL, &http) < 0)
                return -1;
        return 0;
}

static int teardown(void **state) {
        http_free(http);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        harness_etcd_free(cluster);
        harness_etcd_free(tls);
        return 0;
}

#define NEED_ETCD() do { if (!cluster) skip(); } while (0)

/* One finished call, copied out of the callback. */
struct done {
        bool called;
        int r;
        struct etcd_result res;
        char *keys[8], *values[8];
};

static void on_done(void *userdata, int r, const struct etcd_result *res) {
        struct done *d = userdata;
        assert_false(d->called);
        d->called = true;
        d->r = r;
        assert_true((r == 0) == (res != NULL));
        if (!res)
                return;
        d->res = *res;
        d->res.kvs = NULL;
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
        *d = (struct done) { 0 };
}

static void wait_done(struct done *d) {
        while (!d->called)
                uv_run(&loop, UV_RUN_ONCE);
}

static struct etcd *client(const char *const *endpoints) {
        struct etcd *e = NULL;
        const struct etcd_options o = { .endpoints = endpoints ? endpoints : cluster->endpoints };
        assert_int_equal(etcd_new(http, &o, &e), 0);
        return e;
}

static void test_base64(void **state) {
        struct util_buf b;
        util_buf_init(&b, 1024);
        static const char *const plain[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
        static const char *const enc[] = { "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy" };
        for (size_t i = 0; i < 7; i++) {
                b.len = 0;
                assert_int_equal(util_buf_append_base64(&b, plain[i], strlen(plain[i])), 0);
                assert_int_equal(util_buf_puts(&b, ""), 0);
                assert_string_equal(b.data, enc[i]);
                char *out;
                size_t n;
                assert_int_equal(util_base64_decode(enc[i], strlen(enc[i]), &out, &n), 0);
                assert_int_equal(n, strlen(plain[i]));
                assert_memory_equal(out, plain[i], n);
                free(out);
        }
        util_buf_free(&b);
        static const char *const bad[] = { "Zg=", "Z===", "Zg=a", "Zm9v!A==", "=Zg=", "Zg==Zg==" };
        for (size_t i = 0; i < 6; i++) {
                char *out = NULL;
                size_t n;
                assert_int_equal(util_base64_decode(bad[i], strlen(bad[i]), &out, &n), -EINVAL);
                assert_null(out);
        }
}

/* Keepalive of a revoked lease: HTTP 200 without TTL, reported -ENOENT. */
static void test_lease(void **state) {
        NEED_ETCD();
        struct etcd *e = client(NULL);
        struct done d = { 0 };
        assert_int_equal(etcd_lease_grant(e, 5, on_done, &d), 0);
        wait_done(&d);
        assert_int_equal(d.r, 0);
        int64_t id = d.res.lease_id;
        assert_true(id != 0);
        assert_int_equal(d.res.ttl, 5);
        done_clear(&d);

        assert_int_equal(etcd_lease_keepalive(e, id, on_done, &d), 0);
        wait_done(&d);
        assert_int_equal(d.r, 0);
        assert_true(d.res.ttl > 0 && d.res.ttl <= 5);
        done_clear(&d);

        assert_int_equal(etcd_lease_revoke(e, id, on_done, &d), 0);
        wait_done(&d);
        assert_int_equal(d.r, 0);
        done_clear(&d);

        assert_int_equal(etcd_lease_keepalive(e, id, on_done, &d), 0);
        wait_done(&d);
        assert_int_equal(d.r, -ENOENT);
        done_clear(&d);
        etcd_free(e);
}

/* The election pattern: create only if absent, else read who holds it. */
static void txn_create(struct etcd *e, const char *key, const char *value, struct done *d) {
        const struct etcd_compare cmp = { .key = key, .target = ETCD_TARGET_CREATE, .value = 0 };
        const struct etcd_op put = { .type = ETCD_OP_PUT, .key = key, .value = value, .value_len = strlen(value) };
        const struct etcd_op get = { .type = ETCD_OP_RANGE, .key = key };
        const struct etcd_txn t = { &cmp, 1, &put, 1, &get, 1 };
        assert_int_equal(etcd_txn(e, &t, on_done, d), 0);
        wait_done(d);
}

static void test_txn_create_if_absent(void **state) {
        NEED_ETCD();
        struct etcd *e = client(NULL);
        struct done d = { 0 };
        txn_create(e, "/t/leader", "host-a", &d);
        assert_int_equal(d.r, 0);
        assert_true(d.res.succeeded);
        assert_int_equal(d.res.n_kvs, 0);
        int64_t rev = d.res.revision;
        done_clear(&d);

        /* etcd omits "succeeded" when the compare fails. */
        txn_create(e, "/t/leader", "host-b", &d);
        assert_int_equal(d.r, 0);
        assert_false(d.res.succeeded);
        assert_int_equal(d.res.n_kvs, 1);
        assert_string_equal(d.keys[0], "/t/leader");
        assert_string_equal(d.values[0], "host-a");
        assert_int_equal(d.res.revision, rev);
        done_clear(&d);
        etcd_free(e);
}

static void put(struct etcd *e, const char *key, const char *value) {
        struct done d = { 0 };
        const struct etcd_op op = { .type = ETCD_OP_PUT, .key = key, .value = value, .value_len = strlen(value) };
        const struct etcd_txn t = { .success = &op, .n_success = 1 };
        assert_int_equal(etcd_txn(e, &t, on_done, &d), 0);
        wait_done(&d);
        assert_int_equal(d.r, 0);
        assert_true(d.res.succeeded);   /* no compare: always */
        done_clear(&d);
}

static void test_range_prefix(void **state) {
        NEED_ETCD();
        struct etcd *e = client(NULL);
        put(e, "/p/a", "1");
        put(e, "/p/b", "2\n\"binary\x01");
        put(e, "/p/c", "");
        put(e, "/q", "other");
        struct done d = { 0 };
        assert_int_equal(etcd_range(e, "/p/", true, on_done, &d), 0);
        wait_done(&d);
        assert_int_equal(d.r, 0);
        assert_int_equal(d.res.n_kvs, 3);
        assert_int_equal(d.res.count, 3);
        assert_string_equal(d.keys[0], "/p/a");
        assert_string_equal(d.values[1], "2\n\"binary\x01");
        assert_string_equal(d.values[2], "");
        done_clear(&d);

        assert_int_equal(etcd_count(e, "/p/", true, on_done, &d), 0);
        wait_done(&d);
        assert_int_equal(d.r, 0);
        assert_int_equal(d.res.count, 3);
        assert_int_equal(d.res.n_kvs, 0);
        done_clear(&d);

        assert_int_equal(etcd_range(e, "/nothing/", true, on_done, &d), 0);
        wait_done(&d);
        assert_int_equal(d.r, 0);
        assert_int_equal(d.res.n_kvs, 0);
        done_clear(&d);

        /* Delete by prefix in a txn. */
        const struct etcd_op del = { .type = ETCD_OP_DELETE, .key = "/p/", .prefix = true };
        const struct etcd_txn t = { .success = &del, .n_success = 1 };
        assert_int_equal(etcd_txn(e, &t, on_done, &d), 0);
        wait_done(&d);
        assert_int_equal(d.r, 0);
        done_clear(&d);
        assert_int_equal(etcd_range(e, "/p/", true, on_done, &d), 0);
        wait_done(&d);
        assert_int_equal(d.res.n_kvs, 0);
        done_clear(&d);
        etcd_free(e);
}

/* An error answer of etcd (two puts of one key in a txn). */
static void test_error_answer(void **state) {
        NEED_ETCD();
        struct etcd *e = client(NULL);
        const struct etcd_op ops[2] = { { .type = ETCD_OP_PUT, .key = "/dup" }, { .type = ETCD_OP_PUT, .key = "/dup" } };
        const struct etcd_txn t = { .success = ops, .n_success = 2 };
        struct done d = { 0 };
        assert_int_equal(etcd_txn(e, &t, on_done, &d), 0);
        wait_done(&d);
        assert_int_equal(d.r, -EIO);
        done_clear(&d);
        etcd_free(e);
}

/* A dead endpoint first: the request moves on to the live one. */
static void test_failover(void **state) {
        NEED_ETCD();
        const char *const eps[] = { "http://127.0.0.1:1", cluster->m[0].url, NULL };
        struct etcd *e = client(eps);
        assert_string_equal(etcd_current_endpoint(e), "http://127.0.0.1:1");
        struct done d = { 0 };
        txn_create(e, "/f/leader", "x", &d);     /* a txn too: refused never reached */
        assert_int_equal(d.r, 0);
        assert_true(d.res.succeeded);
        assert_string_equal(etcd_current_endpoint(e), cluster->m[0].url);
        done_clear(&d);
        etcd_free(e);
}

/* A member that lost quorum answers 503: the request moves on. */
static enum MHD_Result answer_503(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *data, size_t *size, void **ctx) {
        if (!*ctx) {            /* first call: headers only */
                *ctx = conn;
                return MHD_YES;
        }
        if (*size) {            /* swallow the body */
                *size = 0;
                return MHD_YES;
        }
        static const char body[] = "{\"error\":\"etcdserver: no leader\",\"code\":14}";
        struct MHD_Response *resp = MHD_create_response_from_buffer(sizeof(body) - 1, (void *) body,
                                                                    MHD_RESPMEM_PERSISTENT);
        enum MHD_Result r = MHD_queue_response(conn, 503, resp);
        MHD_destroy_response(resp);
        return r;
}

static void test_failover_on_503(void **state) {
        NEED_ETCD();
        struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, answer_503,
                                                NULL, MHD_OPTION_END);
        assert_non_null(d);
        char url[64];
        snprintf(url, sizeof(url), "http://127.0.0.1:%u",
                 (unsigned) MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port);
        const char *const eps[] = { url, cluster->m[0].url, NULL };
        struct etcd *e = client(eps);
        struct done x = { 0 };
        assert_int_equal(etcd_range(e, "/x", false, on_done, &x), 0);
        wait_done(&x);
        assert_int_equal(x.r, 0);
        assert_string_equal(etcd_current_endpoint(e), cluster->m[0].url);
        done_clear(&x);
        etcd_free(e);
        MHD_stop_daemon(d);
}

static void test_free_pending(void **state) {
        NEED_ETCD();
        struct etcd *e = client(NULL);
        struct done d = { 0 };
        assert_int_equal(etcd_range(e, "/x", false, on_done, &d), 0);
        etcd_free(e);
        wait_done(&d);
        assert_int_equal(d.r, -ECANCELED);
}

static int grant_with(const char *url, const char *dir, const char *cert) {
        char ca[600], crt[600], key[600];
        snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
        snprintf(crt, sizeof(crt), "%s/%s.pem", dir, cert ? cert : "");
        snprintf(key, sizeof(key), "%s/%s.key", dir, cert ? cert : "");
        const char *const eps[] = { url, NULL };
        /* generous: TLS under valgrind is slow, and this is not about time */
        const struct etcd_options o = { .endpoints = eps, .ca_file = ca, .cert_file = cert ? crt : NULL,
                                        .key_file = cert ? key : NULL, .timeout_ms = 20000 };
        struct etcd *e = NULL;
        assert_int_equal(etcd_new(http, &o, &e), 0);
        struct done d = { 0 };
        assert_int_equal(etcd_lease_grant(e, 5, on_done, &d), 0);
        wait_done(&d);
        etcd_free(e);
        return d.r;
}

/* https with a client certificate, as etcd clusters are run: only the
 * certificate of the cluster's CA gets in. */
static void test_client_certificate(void **state) {
        NEED_ETCD();
        int r = harness_etcd_start_tls(&tls);
        if (r == -ENOENT)
                skip();
        assert_int_equal(r, 0);
        assert_int_equal(grant_with(tls->m[0].url, tls->tls_dir, "client"), 0);
        assert_true(grant_with(tls->m[0].url, tls->tls_dir, NULL) < 0);
        assert_true(grant_with(tls->m[0].url, tls->tls_dir, "other") < 0);
        harness_etcd_free(tls);
        tls = NULL;
}

static void test_bad_args(void **state) {
        struct etcd *e = NULL;
        const char *const plain[] = { "http://etcd.example:2379", NULL };
        const struct etcd_options o = { .endpoints = plain };
        assert_int_equal(etcd_new(http, &o, &e), -EINVAL);      /* plaintext off loopback */
        const char *const none[] = { NULL };
        const struct etcd_options o2 = { .endpoints = none };
        assert_int_equal(etcd_new(http, &o2, &e), -EINVAL);
        assert_null(e);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_base64),
                cmocka_unit_test(test_bad_args),
                cmocka_unit_test(test_lease),
                cmocka_unit_test(test_txn_create_if_absent),
                cmocka_unit_test(test_range_prefix),
                cmocka_unit_test(test_error_answer),
                cmocka_unit_test(test_failover),
                cmocka_unit_test(test_failover_on_503),
                cmocka_unit_test(test_free_pending),
                cmocka_unit_test(test_client_certificate),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
