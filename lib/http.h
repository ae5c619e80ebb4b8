/* SPDX-License-Identifier: MIT */
/*
 * http: one long-lived curl multi handle driven by libuv (multi_socket API),
 * for every HTTP request and SMTP transfer of the daemon.  No API knowledge.
 *
 *  - Requests are queued and run concurrently, bounded per host.
 *  - Connections (and the DNS cache) are reused across cycles; HTTP/2 is
 *    multiplexed where offered (PIPEWAIT).
 *  - https only; http:// only to loopback hosts.  TLS verification is
 *    always on; ca_file is the only knob (plus an optional client
 *    certificate, cert_file + key_file, e.g. for etcd).  No proxy from the
 *    environment; the configured one only (http_options.proxy), never for
 *    loopback.
 *  - Request headers and bodies (they carry tokens and the client secret)
 *    are wiped from memory when freed.
 *  - Idempotent requests are retried on connection errors, timeouts, 429,
 *    502, 503, 504 with exponential backoff and jitter, honouring
 *    Retry-After (seconds or HTTP-date, capped).  Non-idempotent ones
 *    (POST) are never retried after the request may have reached the server,
 *    and run on a fresh connection that is closed afterwards, so that
 *    libcurl never re-sends them on its own either.
 *  - Response bodies are capped (max_response); a larger body aborts.
 *  - Callbacks run from the loop, never from inside a curl callback, so they
 *    may submit new requests.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>
#include <uv.h>

struct http;

struct http_options {
        int max_per_host;            /* parallel transfers per host, default 16 */
        long connect_timeout_ms;     /* default 10000 */
        long timeout_ms;             /* whole transfer, default 60000 */
        size_t max_response;         /* default 16 MiB */
        int max_attempts;            /* idempotent requests, default 4 */
        long backoff_base_ms;        /* first retry delay, default 500 */
        long backoff_max_ms;         /* default 30000 */
        long retry_after_max_ms;     /* cap on Retry-After, default 120000 */
        const char *user_agent;      /* default "partnerd/<version>" */
        /* The only proxy ever used ([daemon] proxy): https://, or http:// to
         * a loopback proxy; NULL = none.  http_proxy, https_proxy, all_proxy
         * and no_proxy from the environment are ignored.  Requests to
         * loopback hosts and SMTP transfers never use a proxy. */
        const char *proxy;
};

/* Header fields of a response that callers and logs care about. */
struct http_response {
        long status;                 /* 0 when no HTTP response arrived */
        char *body;                  /* NUL-terminated, may be "" */
        size_t body_len;
        char *content_type;
        char *request_id;            /* MS-RequestId / x-request-id / traceparent echo */
        char *correlation_id;        /* MS-CorrelationId */
        long retry_after_ms;         /* parsed Retry-After of the last response, -1 if none */
        CURLcode curl_code;          /* CURLE_OK when a response arrived */
        char error[CURL_ERROR_SIZE]; /* curl's message when curl_code != CURLE_OK */
        int attempts;                /* how many times it was sent */
        uint64_t elapsed_ms;
};

struct http_request {
        const char *method;          /* "GET", "POST" ... */
        const char *url;
        const char *const *headers;  /* NULL-terminated "Name: value" list, copied */
        const char *body;            /* copied; may be NULL */
        size_t body_len;
        bool idempotent;             /* retry per the rules above (GET: true) */
        const char *ca_file;         /* optional */
        const char *cert_file;       /* optional client certificate (PEM) */
        const char *key_file;        /* its private key (PEM), if not in cert_file */
        long timeout_ms;             /* 0 = default */
        /* When set, http adds "<name>: <uuid>" to each attempt, a new uuid
         * per attempt except when retrying after a timeout (Partner Center's
         * MS-RequestId rule). */
        const char *request_id_header;
        /* The response carries a secret (an access token): its buffer is
         * wiped when freed.  Headers and bodies we send are always wiped. */
        bool sensitive;
        /* Opaque to http: the caller's name for the API ("marketplace"...),
         * handed to the count hook (http_set_count_hook).  Copied; at most
         * 23 bytes are kept; NULL = "other". */
        const char *label;
};

/* r: 0 when an HTTP response arrived (any status; check resp->status),
 * -ETIMEDOUT, -ECONNREFUSED, -ECONNRESET, -EFBIG (size cap), -EPROTO (TLS,
 * protocol), -EHOSTUNREACH (DNS), -ECANCELED (shutdown), other negative
 * errno.  resp is valid only during the callback. */
typedef void (*http_done_fn)(void *userdata, int r, const struct http_response *resp);

int http_new(uv_loop_t *loop, const struct http_options *opts, struct http **ret);
/* Another http on base's multi handle and loop (one multi handle for the
 * whole daemon): its own options, requests, count hook and statistics; the
 * connections and the DNS cache are shared.  The multi handle lives until
 * the last http on it is freed, in any order: a SIGHUP reload replaces the
 * services' http without touching the cluster member's transfers. */
int http_new_shared(struct http *base, const struct http_options *opts, struct http **ret);
/* Cancels everything pending on h (callbacks get -ECANCELED); with the last
 * http on the multi handle, cleans up curl and closes the uv handles: run
 * the loop afterwards until it is idle.  From a callback, h goes once the
 * callback has returned. */
struct http *http_free(struct http *h);

/* 0 when queued (cb runs later, from the loop, exactly once); -EINVAL for a
 * bad URL (see url_check_endpoint), method or header (CR/LF); -ENOBUFS when too
 * many requests are pending; -ESHUTDOWN during http_free(). */
int http_submit(struct http *h, const struct http_request *req, http_done_fn cb, void *userdata);

/* For SMTP and other non-HTTP transfers on the same multi handle: the
 * caller configures the easy handle fully (and checks its URL with
 * url_check_endpoint(.., URL_ALLOW_SMTP, ..)); http only drives it (adds the common
 * safety options: NOSIGNAL, PROTOCOLS_STR http(s)/smtp(s), no redirects,
 * the connect and transfer timeouts of http_options; it uses
 * CURLOPT_PRIVATE) and reports the outcome from the loop, after removing
 * the handle from the multi.  On cancel/http_free: CURLE_ABORTED_BY_CALLBACK.
 * The easy handle stays owned by the caller. */
typedef void (*http_easy_done_fn)(void *userdata, CURL *easy, CURLcode result);
int http_add_easy(struct http *h, CURL *easy, http_easy_done_fn cb, void *userdata);

/* The loop h runs on (for callers that must complete work on the loop
 * without I/O, e.g. an immediate failure). */
uv_loop_t *http_get_loop(const struct http *h);

/* Requests queued or running. */
size_t http_pending(const struct http *h);
/* Cancels everything pending (callbacks get -ECANCELED). */
void http_cancel_all(struct http *h);

/* Called once per attempt of an http_submit() request that ended (not
 * for a cancelled one, nor for http_add_easy() transfers): its label,
 * r (0 when an HTTP response arrived, else as http_done_fn) and status. */
typedef void (*http_count_fn)(void *userdata, const char *label, int r, long status);
void http_set_count_hook(struct http *h, http_count_fn fn, void *userdata);

/* Counters for the benchmark and STATUS=. */
struct http_stats {
        uint64_t requests;           /* attempts sent */
        uint64_t responses;
        uint64_t bytes_received;
        uint64_t retries;
        uint64_t connections;        /* new connections opened */
};
void http_get_stats(const struct http *h, struct http_stats *ret);

/* Percent-encodes s for a query value (RFC 3986 unreserved kept). */
char *http_escape(const char *s);

/* true when curl resolves names without blocking (threaded or c-ares). */
bool http_async_dns(void);
