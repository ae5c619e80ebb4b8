/* SPDX-License-Identifier: MIT */
/*
 * etcd: a small asynchronous client of etcd's v3 JSON gateway (the
 * grpc-gateway every etcd >= 3.4 serves at /v3/...) on lib/http.c: leases,
 * range, transactions.  No knowledge of what the keys mean.
 *
 * Gateway facts (Debian's etcd 3.4.23, checked on loopback):
 *  - every call is a POST of a JSON body to /v3/<service>/<method>;
 *  - keys and values are base64 in both directions; int64 fields arrive as
 *    JSON strings ("revision": "12"), and fields equal to their zero value
 *    are omitted (a failed transaction has no "succeeded");
 *  - /v3/lease/keepalive answers {"result": {...}} with HTTP 200 even when
 *    the lease is gone; then "TTL" is absent: TTL > 0 is the only proof;
 *  - errors are non-200 answers {"error", "message", "code"}.
 *
 * Endpoints: requests go to the current endpoint; a transport failure or
 * a 5xx answer (a member without quorum) makes the next one current.  Requests that are safe to repeat (range,
 * keepalive, revoke), and any request that never reached a server
 * (connection refused, DNS), are resent once to each other endpoint.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http.h"

struct etcd;

struct etcd_options {
        const char *const *endpoints;   /* NULL-terminated "https://host:2379" list, at most 16 */
        const char *ca_file;            /* optional; the rest: optional client certificate */
        const char *cert_file;
        const char *key_file;
        long timeout_ms;                /* per attempt; default 3000 */
};

struct etcd_kv {
        char *key;                      /* decoded, NUL-terminated */
        size_t key_len;
        char *value;                    /* decoded, NUL-terminated */
        size_t value_len;
        int64_t create_revision;
        int64_t mod_revision;
        int64_t version;
        int64_t lease;
};

struct etcd_result {
        int64_t revision;               /* header.revision */
        int64_t lease_id;               /* lease grant */
        int64_t ttl;                    /* lease grant / keepalive */
        bool succeeded;                 /* txn: the compares held */
        struct etcd_kv *kvs;            /* range, or the ranges of a txn's branch */
        size_t n_kvs;
        int64_t count;                  /* range: keys in the range */
};

/* r: 0 with res; -ENOENT (keepalive: the lease is gone); -EIO (an error
 * answer of etcd: no quorum, too large, bad request...); -EBADMSG (not the
 * JSON expected); -ECANCELED (etcd_free / http_free); or a transport error
 * of http_submit's callback.  res is valid only during the callback (NULL
 * when r < 0). */
typedef void (*etcd_done_fn)(void *userdata, int r, const struct etcd_result *res);

int etcd_new(struct http *h, const struct etcd_options *opts, struct etcd **ret);
/* Pending callbacks still run, with -ECANCELED.  Accepts NULL. */
struct etcd *etcd_free(struct etcd *e);
/* The endpoint requests currently go to. */
const char *etcd_current_endpoint(const struct etcd *e);

int etcd_lease_grant(struct etcd *e, int64_t ttl_sec, etcd_done_fn cb, void *userdata);
int etcd_lease_keepalive(struct etcd *e, int64_t lease_id, etcd_done_fn cb, void *userdata);
int etcd_lease_revoke(struct etcd *e, int64_t lease_id, etcd_done_fn cb, void *userdata);
/* One key, or every key starting with key when prefix. */
int etcd_range(struct etcd *e, const char *key, bool prefix, etcd_done_fn cb, void *userdata);
/* Only how many (res->count), no keys or values. */
int etcd_count(struct etcd *e, const char *key, bool prefix, etcd_done_fn cb, void *userdata);

enum etcd_target { ETCD_TARGET_CREATE, ETCD_TARGET_MOD, ETCD_TARGET_VERSION };
/* key's <target> revision (or version) EQUAL value; 0 means "absent". */
struct etcd_compare {
        const char *key;
        enum etcd_target target;
        int64_t value;
};

enum etcd_op_type { ETCD_OP_PUT, ETCD_OP_DELETE, ETCD_OP_RANGE };
struct etcd_op {
        enum etcd_op_type type;
        const char *key;
        const void *value;              /* PUT */
        size_t value_len;
        int64_t lease;                  /* PUT; 0 = none */
        bool prefix;                    /* DELETE, RANGE */
};

struct etcd_txn {
        const struct etcd_compare *compare;
        size_t n_compare;
        const struct etcd_op *success;
        size_t n_success;
        const struct etcd_op *failure;
        size_t n_failure;
};
/* r == 0 with res->succeeded telling which branch ran. */
int etcd_txn(struct etcd *e, const struct etcd_txn *t, etcd_done_fn cb, void *userdata);
