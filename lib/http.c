/* SPDX-License-Identifier: MIT */
/*
 * http: one curl multi handle driven by libuv (multi_socket API).
 *
 * Shape (after curl's docs/examples/multi-uv.c, with its pitfalls fixed):
 *  - the socket callback keeps one uv_poll_t per curl socket (stored with
 *    curl_multi_assign), the timer callback only (re)arms one uv_timer_t;
 *    neither calls back into curl.
 *  - every curl_multi_socket_action() is followed by draining
 *    curl_multi_info_read(); finished requests go to a "done" list whose
 *    callbacks run from the loop (dispatch()), so callbacks may submit new
 *    requests or cancel everything.
 *  - the per-host bound is ours (a FIFO queue): a request's CURLOPT_TIMEOUT
 *    only starts when it is really handed to curl.
 *  - retries of idempotent requests wait on a per-request uv timer; a
 *    non-idempotent one is never re-sent, by us or by libcurl (fresh
 *    connection, see setup_easy()).
 *  - one core (the multi handle, its sockets and timers) serves every
 *    struct http made from it with http_new_shared(): each has its own
 *    options, requests and count hook, and http_free() of one cancels only
 *    its own.  Freeing is deferred while the core delivers results
 *    (core_enter/core_leave); the last http out frees the core.
 */
#include "http.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "secret.h"
#include "url.h"
#include "util.h"

#ifndef PARTNERD_VERSION
#define PARTNERD_VERSION "0"
#endif

#define HTTP_DEFAULT_MAX_PER_HOST     16
#define HTTP_DEFAULT_CONNECT_TIMEOUT  10000L
#define HTTP_DEFAULT_TIMEOUT          60000L
#define HTTP_DEFAULT_MAX_RESPONSE     ((size_t) 16 * 1024 * 1024)
#define HTTP_DEFAULT_MAX_ATTEMPTS     4
#define HTTP_DEFAULT_BACKOFF_BASE     500L
#define HTTP_DEFAULT_BACKOFF_MAX      30000L
#define HTTP_DEFAULT_RETRY_AFTER_MAX  120000L

#define HTTP_MAX_REQUESTS        4096                 /* queued + running + waiting */
#define HTTP_MAX_HEADER_BYTES    (64 * 1024)          /* response header block */
#define HTTP_MAX_HEADER_VALUE    256                  /* captured header values */
#define HTTP_MAX_REQ_HEADERS     64
#define HTTP_MAX_URL             8192

/* ---- intrusive list ---------------------------------------------------- */

struct link {
        struct link *prev, *next;
};

static void list_init(struct link *head) {
        head->prev = head->next = head;
}

static bool list_empty(const struct link *head) {
        return head->next == head;
}

static void list_del(struct link *l) {
        l->prev->next = l->next;
        l->next->prev = l->prev;
        l->prev = l->next = l;
}

static void list_add_tail(struct link *head, struct link *l) {
        l->prev = head->prev;
        l->next = head;
        head->prev->next = l;
        head->prev = l;
}

#define link_entry(ptr, type, member) \
        ((type *) (void *) ((char *) (ptr) - offsetof(type, member)))

/* ---- types ------------------------------------------------------------- */

enum req_state {
        REQ_QUEUED,     /* waiting for a per-host slot */
        REQ_RUNNING,    /* added to the multi handle */
        REQ_BACKOFF,    /* waiting for its retry timer */
        REQ_DONE,       /* result ready, callback pending */
};

struct http_timer {
        uv_timer_t timer;       /* first member: freed from the close callback */
};

struct http_sock {
        uv_poll_t poll;
        curl_socket_t fd;
        struct http_core *c;
        struct link link;       /* c->socks */
        bool closing;
};

/* The one multi handle on the loop, shared by every struct http made from
 * the first (http_new_shared). */
struct http_core {
        uv_loop_t *loop;
        CURLM *multi;
        struct http_timer *timer;       /* curl's timeout */
        struct http_timer *defer;       /* results to deliver from the loop */
        struct link socks;
        struct link views;              /* struct http.core_link */
        unsigned busy;                  /* core_enter() depth */
        bool in_timeout;                /* inside on_timeout's socket_action */
};

struct req {
        struct http *h;
        struct link link;               /* in one of h's state lists */
        enum req_state state;
        bool is_easy;                   /* http_add_easy() transfer */

        CURL *easy;
        char *method;
        char *url;
        char *host;                     /* "host:port" key of the per-host bound */
        char **headers;
        size_t n_headers;
        char *body;
        size_t body_len;
        bool idempotent;
        char *ca_file;
        char *cert_file;
        char *key_file;
        long timeout_ms;
        char *request_id_header;
        bool plaintext;
        bool loopback;                  /* never through a proxy */
        bool sensitive;                 /* wipe the response body */
        char label[24];                 /* http_request.label, for the count hook */

        struct curl_slist *slist;
        struct util_buf resp_body;
        size_t header_bytes;
        bool too_big;
        char *content_type;
        char *request_id;
        char *correlation_id;
        long retry_after_ms;
        char errbuf[CURL_ERROR_SIZE];
        char uuid[37];
        bool last_timed_out;

        int attempts;
        uint64_t started_ms;
        struct http_timer *retry_timer;

        /* result */
        int r;
        CURLcode code;
        long status;

        http_done_fn cb;
        http_easy_done_fn easy_cb;
        void *userdata;
};

struct http {
        struct http_core *core;
        struct link core_link;          /* core->views */
        struct http_options opts;
        char *user_agent;
        char *proxy;

        struct link queued, running, backoff, done;
        size_t n_reqs;

        struct http_stats stats;
        http_count_fn count;            /* http_set_count_hook() */
        void *count_ud;
        unsigned dispatching;
        bool freeing;           /* http_free() called: torn down by core_leave() */
};

static void kick(struct http *h);
static void dispatch(struct http *h);
static void finish(struct req *q, int r);

#define for_each_view(c, h) \
        for (struct link *l_ = (c)->views.next; l_ != &(c)->views && \
             ((h) = link_entry(l_, struct http, core_link), 1); l_ = l_->next)

/* ---- helpers ----------------------------------------------------------- */

bool http_async_dns(void) {
        const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
        return v && (v->features & CURL_VERSION_ASYNCHDNS);
}

static void timer_close_cb(uv_handle_t *handle) {
        free(handle);   /* struct http_timer starts with the uv_timer_t */
}

static void sock_close_cb(uv_handle_t *handle) {
        free(link_entry(handle, struct http_sock, poll));
}

static void sock_close(struct http_sock *s) {
        if (s->closing)
                return;
        s->closing = true;
        list_del(&s->link);
        uv_poll_stop(&s->poll);
        uv_close((uv_handle_t *) &s->poll, sock_close_cb);
}

static int host_running(struct http *h, const char *host) {
        int n = 0;
        for (struct link *l = h->running.next; l != &h->running; l = l->next) {
                struct req *q = link_entry(l, struct req, link);
                if (!q->is_easy && q->host && strcmp(q->host, host) == 0)
                        n++;
        }
        return n;
}

static void set_state(struct req *q, enum req_state st) {
        struct http *h = q->h;
        struct link *head = st == REQ_QUEUED ? &h->queued :
                            st == REQ_RUNNING ? &h->running :
                            st == REQ_BACKOFF ? &h->backoff : &h->done;
        list_del(&q->link);
        list_add_tail(head, &q->link);
        q->state = st;
}

/* Frees a curl header list whose lines may carry a secret. */
static void slist_wipe_free(struct curl_slist *l) {
        for (struct curl_slist *i = l; i; i = i->next)
                if (i->data)
                        secret_wipe(i->data, strlen(i->data));
        curl_slist_free_all(l);
}

static void resp_body_free(struct req *q) {
        if (q->sensitive && q->resp_body.data)
                secret_wipe(q->resp_body.data, q->resp_body.cap);
        util_buf_free(&q->resp_body);
}

static void req_reset_response(struct req *q) {
        resp_body_free(q);
        util_buf_init(&q->resp_body, q->h->opts.max_response);
        q->header_bytes = 0;
        q->too_big = false;
        util_freep(&q->content_type);
        util_freep(&q->request_id);
        util_freep(&q->correlation_id);
        q->retry_after_ms = -1;
        q->errbuf[0] = '\0';
        q->status = 0;
}

static void req_free(struct req *q) {
        if (!q)
                return;
        list_del(&q->link);
        if (q->h)
                q->h->n_reqs--;
        if (q->retry_timer) {
                uv_timer_stop(&q->retry_timer->timer);
                uv_close((uv_handle_t *) &q->retry_timer->timer, timer_close_cb);
        }
        if (!q->is_easy && q->easy)
                curl_easy_cleanup(q->easy);
        slist_wipe_free(q->slist);
        free(q->method);
        free(q->url);
        free(q->host);
        for (size_t i = 0; i < q->n_headers; i++)
                secret_free(q->headers[i]);
        free(q->headers);
        secret_wipe(q->body, q->body_len);
        free(q->body);
        free(q->ca_file);
        free(q->cert_file);
        free(q->key_file);
        free(q->request_id_header);
        resp_body_free(q);
        free(q->content_type);
        free(q->request_id);
        free(q->correlation_id);
        free(q);
}

/* ---- curl -> libuv glue ------------------------------------------------ */

/* After a failed curl_multi_socket_action() the multi's state is
 * undefined: take every transfer out and fail it. */
static void multi_failed(struct http_core *c, CURLMcode mc) {
        struct http *h;
        for_each_view(c, h)
                while (!list_empty(&h->running)) {
                        struct req *q = link_entry(h->running.next, struct req, link);
                        curl_multi_remove_handle(c->multi, q->easy);
                        snprintf(q->errbuf, sizeof(q->errbuf), "curl: %s", curl_multi_strerror(mc));
                        if (q->is_easy)
                                q->code = CURLE_ABORTED_BY_CALLBACK;
                        finish(q, -EIO);
                }
}

/* Every entry into the core from the loop or from a caller that may run
 * callbacks is bracketed by core_enter()/core_leave(): an http freed in
 * between (from a callback) is only marked, and the outermost leave
 * delivers its cancellations and frees it, and the core after the last. */
static void core_enter(struct http_core *c) {
        c->busy++;
}

static void core_teardown(struct http_core *c) {
        curl_multi_cleanup(c->multi);   /* may call our socket/timer callbacks */
        c->multi = NULL;
        while (!list_empty(&c->socks))
                sock_close(link_entry(c->socks.next, struct http_sock, link));
        uv_timer_stop(&c->timer->timer);
        uv_close((uv_handle_t *) &c->timer->timer, timer_close_cb);
        uv_timer_stop(&c->defer->timer);
        uv_close((uv_handle_t *) &c->defer->timer, timer_close_cb);
        free(c);
        curl_global_cleanup();
}

/* The bound on connections per host is the largest of its https'. */
static void core_limits(struct http_core *c) {
        long max = 0;
        struct http *h;
        for_each_view(c, h)
                if (h->opts.max_per_host > max)
                        max = h->opts.max_per_host;
        if (max > 0)
                curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, max);
}

static void view_free(struct http *h) {
        list_del(&h->core_link);
        free(h->user_agent);
        free(h->proxy);
        free(h);
}

static void core_leave(struct http_core *c) {
        if (c->busy > 1) {
                c->busy--;
                return;
        }
        for (;;) {
                struct http *h, *dead = NULL;
                for_each_view(c, h)
                        if (h->freeing) {
                                dead = h;
                                break;
                        }
                if (!dead)
                        break;
                /* its cancelled requests' callbacks run (http_submit
                 * refuses new work), then its lists are empty */
                dispatch(dead);
                view_free(dead);
                core_limits(c);
        }
        c->busy--;
        if (list_empty(&c->views))
                core_teardown(c);
}

/* Starts what may start and delivers what is done, for every http. */
static void core_walk(struct http_core *c) {
        struct http *h;
        for_each_view(c, h)
                kick(h);
        for_each_view(c, h)
                dispatch(h);
}

/* core_walk() from a loop callback, bracketed. */
static void core_run(struct http_core *c) {
        core_enter(c);
        core_walk(c);
        core_leave(c);
}

static void drain(struct http_core *c);

static void socket_action(struct http_core *c, curl_socket_t fd, int flags) {
        int running;
        core_enter(c);
        c->in_timeout = fd == CURL_SOCKET_TIMEOUT;
        CURLMcode mc = curl_multi_socket_action(c->multi, fd, flags, &running);
        c->in_timeout = false;
        if (mc != CURLM_OK && mc != CURLM_BAD_SOCKET)
                multi_failed(c, mc);
        drain(c);
        core_walk(c);
        core_leave(c);
}

static void on_timeout(uv_timer_t *t) {
        socket_action(t->data, CURL_SOCKET_TIMEOUT, 0);
}

static void on_defer(uv_timer_t *t) {
        core_run(t->data);
}

static int timer_function(CURLM *multi, long timeout_ms, void *userp) {
        struct http_core *c = userp;
        /* Only (re)arm our timer: calling curl from here would recurse. */
        if (timeout_ms < 0) {
                uv_timer_stop(&c->timer->timer);
                return 0;
        }
        /* libuv 1.44 runs a 0 ms timer armed from inside the timer callback
         * in the same pass, without polling sockets: wait 1 ms then. */
        if (timeout_ms == 0 && c->in_timeout)
                timeout_ms = 1;
        return uv_timer_start(&c->timer->timer, on_timeout, (uint64_t) timeout_ms, 0) < 0 ? -1 : 0;
}

static void on_poll(uv_poll_t *p, int status, int events) {
        struct http_sock *s = link_entry(p, struct http_sock, poll);
        if (s->closing)
                return;
        struct http_core *c = s->c;
        curl_socket_t fd = s->fd;
        int flags = 0;

        if (status < 0)
                flags = CURL_CSELECT_ERR;
        else {
                if (events & UV_READABLE)
                        flags |= CURL_CSELECT_IN;
                if (events & UV_WRITABLE)
                        flags |= CURL_CSELECT_OUT;
        }
        /* s may be closed by the socket callback from here on. */
        socket_action(c, fd, flags);
}

static int socket_function(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
        struct http_core *c = userp;
        struct http_sock *s = socketp;

        if (what == CURL_POLL_REMOVE) {
                /* socketp may be NULL for a socket never announced. */
                if (s) {
                        sock_close(s);
                        curl_multi_assign(c->multi, fd, NULL);
                }
                return 0;
        }

        if (!s) {
                s = calloc(1, sizeof(*s));
                if (!s)
                        return -1;
                if (uv_poll_init_socket(c->loop, &s->poll, fd) < 0) {
                        free(s);
                        return -1;
                }
                s->fd = fd;
                s->c = c;
                list_add_tail(&c->socks, &s->link);
                curl_multi_assign(c->multi, fd, s);
        }

        int events = 0;
        if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
                events |= UV_READABLE;
        if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
                events |= UV_WRITABLE;
        if (uv_poll_start(&s->poll, events, on_poll) < 0)
                return -1;
        return 0;
}

/* ---- per-transfer curl callbacks --------------------------------------- */

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userdata) {
        struct req *q = userdata;
        size_t n = size * nmemb;
        if (util_buf_append(&q->resp_body, ptr, n) < 0) {
                q->too_big = true;
                return 0;       /* short write aborts the transfer */
        }
        return n;
}

static char *header_value_dup(const char *v, size_t len) {
        while (len > 0 && (*v == ' ' || *v == '\t')) {
                v++;
                len--;
        }
        while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t' ||
                           v[len - 1] == '\r' || v[len - 1] == '\n'))
                len--;
        if (len == 0 || len > HTTP_MAX_HEADER_VALUE)
                return NULL;
        for (size_t i = 0; i < len; i++)
                if ((unsigned char) v[i] < 0x20 || v[i] == 0x7f)
                        return NULL;
        return strndup(v, len);
}

/* Retry-After: delay-seconds or an HTTP-date; -1 when absent or junk. */
static long parse_retry_after(const char *v, long cap) {
        if (!v || !*v)
                return -1;
        long ms;
        if (isdigit((unsigned char) v[0])) {
                char *end;
                errno = 0;
                unsigned long long sec = strtoull(v, &end, 10);
                if (*end != '\0')
                        return -1;
                if (errno == ERANGE || sec > (unsigned long long) cap / 1000 + 1)
                        return cap;
                ms = (long) sec * 1000;
        } else {
                time_t t = curl_getdate(v, NULL);
                if (t == (time_t) -1)
                        return -1;
                time_t now = time(NULL);
                if (t <= now)
                        return 0;
                if ((unsigned long long) (t - now) > (unsigned long long) cap / 1000 + 1)
                        return cap;
                ms = (long) (t - now) * 1000;
        }
        return ms > cap ? cap : ms;
}

static size_t header_cb(char *buf, size_t size, size_t nitems, void *userdata) {
        struct req *q = userdata;
        size_t n = size * nitems;

        q->header_bytes += n;
        if (q->header_bytes > HTTP_MAX_HEADER_BYTES) {
                q->too_big = true;
                return 0;
        }
        if (n >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
                /* A new response (after 100 Continue, say): forget the old headers. */
                util_freep(&q->content_type);
                util_freep(&q->request_id);
                util_freep(&q->correlation_id);
                q->retry_after_ms = -1;
                return n;
        }
        const char *colon = memchr(buf, ':', n);
        if (!colon)
                return n;
        size_t nlen = (size_t) (colon - buf);
        const char *v = colon + 1;
        size_t vlen = n - nlen - 1;
        char **slot = NULL;

#define HDR_IS(name) (nlen == strlen(name) && strncasecmp(buf, name, nlen) == 0)
        if (HDR_IS("content-type"))
                slot = &q->content_type;
        else if (HDR_IS("ms-correlationid"))
                slot = &q->correlation_id;
        else if (HDR_IS("ms-requestid") || HDR_IS("x-ms-request-id") || HDR_IS("x-request-id") ||
                 HDR_IS("request-id") || HDR_IS("x-correlation-id") || HDR_IS("traceparent")) {
                if (q->request_id)
                        return n;       /* first one wins */
                slot = &q->request_id;
        } else if (HDR_IS("retry-after")) {
                char *s = header_value_dup(v, vlen);
                q->retry_after_ms = parse_retry_after(s, q->h->opts.retry_after_max_ms);
                free(s);
                return n;
        }
#undef HDR_IS
        if (slot) {
                free(*slot);
                *slot = header_value_dup(v, vlen);
        }
        return n;
}

/* ---- results ----------------------------------------------------------- */

static int curlcode_to_errno(CURLcode c, bool too_big) {
        switch (c) {
        case CURLE_OK:
                return 0;
        case CURLE_OPERATION_TIMEDOUT:
                return -ETIMEDOUT;
        case CURLE_COULDNT_CONNECT:
                return -ECONNREFUSED;
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
                return -ECONNRESET;
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
                return -EHOSTUNREACH;
        case CURLE_FILESIZE_EXCEEDED:
                return -EFBIG;
        case CURLE_WRITE_ERROR:
                return too_big ? -EFBIG : -EIO;
        case CURLE_OUT_OF_MEMORY:
                return -ENOMEM;
        case CURLE_ABORTED_BY_CALLBACK:
                return -ECANCELED;
        case CURLE_URL_MALFORMAT:
                return -EINVAL;
        case CURLE_UNSUPPORTED_PROTOCOL:
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CIPHER:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_ENGINE_NOTFOUND:
        case CURLE_SSL_ENGINE_SETFAILED:
        case CURLE_SSL_ENGINE_INITFAILED:
        case CURLE_SSL_SHUTDOWN_FAILED:
        case CURLE_SSL_CRL_BADFILE:
        case CURLE_SSL_ISSUER_ERROR:
        case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        case CURLE_SSL_INVALIDCERTSTATUS:
        case CURLE_SSL_CLIENTCERT:
        case CURLE_USE_SSL_FAILED:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
        case CURLE_WEIRD_SERVER_REPLY:
        case CURLE_TOO_MANY_REDIRECTS:
        case CURLE_BAD_CONTENT_ENCODING:
                return -EPROTO;
        case CURLE_LOGIN_DENIED:
                return -EACCES;
        default:
                return -EIO;
        }
}

static bool retryable(const struct req *q) {
        if (!q->idempotent || q->is_easy)
                return false;
        switch (q->code) {
        case CURLE_OK:
                return q->status == 429 || q->status == 502 || q->status == 503 ||
                       q->status == 504;
        case CURLE_COULDNT_CONNECT:
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
        case CURLE_OPERATION_TIMEDOUT:
                return true;
        default:
                return false;
        }
}

static long backoff_ms(const struct http *h, int attempt) {
        /* Equal jitter: half the exponential delay fixed, half random. */
        long d = h->opts.backoff_base_ms;
        for (int i = 1; i < attempt && d < h->opts.backoff_max_ms; i++)
                d *= 2;
        if (d > h->opts.backoff_max_ms)
                d = h->opts.backoff_max_ms;
        uint32_t rnd = 0;
        (void) util_random_bytes(&rnd, sizeof(rnd));
        long half = d / 2;
        return half + (half > 0 ? (long) (rnd % (uint32_t) (half + 1)) : 0);
}

static void finish(struct req *q, int r) {
        q->r = r;
        set_state(q, REQ_DONE);
}


static void on_retry_timer(uv_timer_t *t) {
        struct req *q = t->data;
        set_state(q, REQ_QUEUED);
        core_run(q->h->core);
}

/* A transfer of q ended (removed from the multi already). */
static void attempt_done(struct req *q, CURLcode code) {
        struct http *h = q->h;
        q->code = code;

        long nconn = 0;
        if (curl_easy_getinfo(q->easy, CURLINFO_NUM_CONNECTS, &nconn) == CURLE_OK && nconn > 0)
                h->stats.connections += (uint64_t) nconn;
        if (q->is_easy) {
                finish(q, 0);
                return;
        }

        long status = 0;
        curl_easy_getinfo(q->easy, CURLINFO_RESPONSE_CODE, &status);
        q->status = status;
        if (status > 0)
                h->stats.responses++;
        h->stats.bytes_received += q->resp_body.len;
        q->last_timed_out = code == CURLE_OPERATION_TIMEDOUT;

        int r = curlcode_to_errno(code, q->too_big);
        if (h->count && !h->freeing)
                h->count(h->count_ud, q->label, r, status);
        if (r == -EFBIG)
                snprintf(q->errbuf, sizeof(q->errbuf), "response larger than %zu bytes",
                         h->opts.max_response);
        else if (r == -ETIMEDOUT) {
                /* Which limit hit: the connect timeout when never connected
                 * (and it is the shorter one), else the transfer timeout. */
                curl_off_t connect_us = 0;
                curl_easy_getinfo(q->easy, CURLINFO_CONNECT_TIME_T, &connect_us);
                if (connect_us == 0 && h->opts.connect_timeout_ms < q->timeout_ms)
                        snprintf(q->errbuf, sizeof(q->errbuf), "connect timed out after %ld ms",
                                 h->opts.connect_timeout_ms);
                else
                        snprintf(q->errbuf, sizeof(q->errbuf), "timed out after %ld ms",
                                 q->timeout_ms);
        }

        if (!h->freeing && q->attempts < h->opts.max_attempts && retryable(q)) {
                long delay = backoff_ms(h, q->attempts);
                if (q->retry_after_ms >= 0 && code == CURLE_OK)
                        delay = q->retry_after_ms;
                if (!q->retry_timer) {
                        q->retry_timer = calloc(1, sizeof(*q->retry_timer));
                        if (!q->retry_timer ||
                            uv_timer_init(h->core->loop, &q->retry_timer->timer) < 0) {
                                util_freep(&q->retry_timer);
                                finish(q, r);
                                return;
                        }
                        q->retry_timer->timer.data = q;
                }
                h->stats.retries++;
                set_state(q, REQ_BACKOFF);
                uv_timer_start(&q->retry_timer->timer, on_retry_timer, (uint64_t) delay, 0);
                return;
        }
        finish(q, r);
}

/* Takes the finished transfers out of the multi; core_walk() delivers. */
static void drain(struct http_core *c) {
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(c->multi, &left))) {
                if (msg->msg != CURLMSG_DONE)
                        continue;
                CURL *easy = msg->easy_handle;
                CURLcode code = msg->data.result;
                char *priv = NULL;
                curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
                struct req *q = (struct req *) (void *) priv;
                curl_multi_remove_handle(c->multi, easy);       /* msg is gone now */
                if (q && q->state == REQ_RUNNING)
                        attempt_done(q, code);
        }
}

/* ---- starting transfers ------------------------------------------------ */

static int build_slist(struct req *q) {
        struct curl_slist *l = NULL, *t;
        for (size_t i = 0; i < q->n_headers; i++) {
                t = curl_slist_append(l, q->headers[i]);
                if (!t)
                        goto oom;
                l = t;
        }
        /* no "Expect: 100-continue" round trip */
        t = curl_slist_append(l, "Expect:");
        if (!t)
                goto oom;
        l = t;
        if (q->request_id_header) {
                if (!q->last_timed_out || !q->uuid[0])
                        if (util_uuid4(q->uuid) < 0)
                                goto oom;
                char line[256];
                snprintf(line, sizeof(line), "%s: %s", q->request_id_header, q->uuid);
                t = curl_slist_append(l, line);
                if (!t)
                        goto oom;
                l = t;
        }
        slist_wipe_free(q->slist);
        q->slist = l;
        return 0;
oom:
        slist_wipe_free(l);
        return -ENOMEM;
}

static int setup_easy(struct req *q) {
        struct http *h = q->h;
        CURL *e = q->easy;
        const char *protos = q->plaintext ? "http,https" : "https";
        CURLcode c = CURLE_OK;
        int r = build_slist(q);
        if (r < 0)
                return r;

#define SET(opt, val) do { if (c == CURLE_OK) c = curl_easy_setopt(e, opt, val); } while (0)
        SET(CURLOPT_URL, q->url);
        SET(CURLOPT_PRIVATE, q);
        SET(CURLOPT_NOSIGNAL, 1L);
        SET(CURLOPT_PROTOCOLS_STR, protos);
        SET(CURLOPT_REDIR_PROTOCOLS_STR, protos);
        SET(CURLOPT_FOLLOWLOCATION, 0L);
        SET(CURLOPT_SSL_VERIFYPEER, 1L);
        SET(CURLOPT_SSL_VERIFYHOST, 2L);
        if (q->ca_file)
                SET(CURLOPT_CAINFO, q->ca_file);
        if (q->cert_file)
                SET(CURLOPT_SSLCERT, q->cert_file);
        if (q->key_file)
                SET(CURLOPT_SSLKEY, q->key_file);
        SET(CURLOPT_CONNECTTIMEOUT_MS, h->opts.connect_timeout_ms);
        SET(CURLOPT_TIMEOUT_MS, q->timeout_ms);
        /* Wait for a connection that may multiplex (h2 via ALPN) instead of
         * opening another.  Not for plain http: without ALPN curl learns the
         * protocol only from the first response, so everything would queue
         * behind it. */
        SET(CURLOPT_PIPEWAIT, q->plaintext ? 0L : 1L);
        SET(CURLOPT_TCP_KEEPALIVE, 1L);
        /* A request that must not run twice (Process) gets a connection of
         * its own, closed after it: libcurl re-sends a request by itself
         * when a REUSED connection dies before any answer, and for a POST
         * that the server may already have applied that is a second call.
         * On a fresh connection libcurl never re-sends; the caller settles
         * an unknown outcome by reading the resource again. */
        SET(CURLOPT_FRESH_CONNECT, q->idempotent ? 0L : 1L);
        SET(CURLOPT_FORBID_REUSE, q->idempotent ? 0L : 1L);
        SET(CURLOPT_USERAGENT, h->user_agent);
        SET(CURLOPT_ERRORBUFFER, q->errbuf);
        SET(CURLOPT_WRITEFUNCTION, write_cb);
        SET(CURLOPT_WRITEDATA, q);
        SET(CURLOPT_HEADERFUNCTION, header_cb);
        SET(CURLOPT_HEADERDATA, q);
        SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) h->opts.max_response);
        SET(CURLOPT_ACCEPT_ENCODING, "");
        SET(CURLOPT_HTTPHEADER, q->slist);
        /* "" turns libcurl's use of http_proxy & co. off; NOPROXY "" keeps
         * no_proxy from the environment out of the configured proxy too.
         * Through a proxy, always a CONNECT tunnel: it sees no header. */
        SET(CURLOPT_PROXY, h->proxy && !q->loopback ? h->proxy : "");
        SET(CURLOPT_NOPROXY, "");
        if (h->proxy && !q->loopback)
                SET(CURLOPT_HTTPPROXYTUNNEL, 1L);
        if (strcmp(q->method, "GET") == 0)
                SET(CURLOPT_HTTPGET, 1L);
        else if (strcmp(q->method, "HEAD") == 0)
                SET(CURLOPT_NOBODY, 1L);
        else {
                if (q->body || strcmp(q->method, "POST") == 0) {
                        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) q->body_len);
                        SET(CURLOPT_POSTFIELDS, q->body ? q->body : "");
                }
                if (strcmp(q->method, "POST") != 0)
                        SET(CURLOPT_CUSTOMREQUEST, q->method);
        }
#undef SET
        return c == CURLE_OK ? 0 : -EINVAL;
}

static int start_attempt(struct req *q) {
        struct http *h = q->h;
        req_reset_response(q);
        int r = setup_easy(q);
        if (r < 0)
                return r;
        set_state(q, REQ_RUNNING);
        if (curl_multi_add_handle(h->core->multi, q->easy) != CURLM_OK) {
                set_state(q, REQ_QUEUED);
                return -ENOMEM;
        }
        q->attempts++;
        h->stats.requests++;
        return 0;
}

/* Starts queued requests whose host has a free slot, oldest first. */
static void kick(struct http *h) {
        struct link *l = h->queued.next;
        while (l != &h->queued) {
                struct req *q = link_entry(l, struct req, link);
                l = l->next;
                if (host_running(h, q->host) >= h->opts.max_per_host)
                        continue;
                int r = start_attempt(q);
                if (r < 0)
                        finish(q, r);
        }
}

/* The body as the parsers get it.  Partner Center starts its bodies with a
 * UTF-8 byte-order mark [Azure/msrest-for-python#144; Microsoft's Partner
 * Center PowerShell module skips the first character of each response];
 * JSON (RFC 8259 8.1) has none, so it is dropped here, once, for every API. */
static const char *response_body(const struct req *q, size_t *ret_len) {
        static const char bom[] = "\xEF\xBB\xBF";
        const char *b = q->resp_body.data ? q->resp_body.data : "";
        size_t n = q->resp_body.len;
        if (n >= 3 && memcmp(b, bom, 3) == 0) {
                b += 3;
                n -= 3;
        }
        *ret_len = n;
        return b;
}

static void dispatch(struct http *h) {
        if (h->dispatching)
                return;         /* the outer dispatch picks new results up */
        h->dispatching++;
        while (!list_empty(&h->done)) {
                struct req *q = link_entry(h->done.next, struct req, link);
                list_del(&q->link);
                if (q->is_easy) {
                        if (q->easy_cb)
                                q->easy_cb(q->userdata, q->easy, q->code);
                } else if (q->cb) {
                        size_t body_len;
                        const char *body = response_body(q, &body_len);
                        struct http_response resp = {
                                .status = q->status,
                                .body = (char *) body,
                                .body_len = body_len,
                                .content_type = q->content_type,
                                .request_id = q->request_id,
                                .correlation_id = q->correlation_id,
                                .retry_after_ms = q->retry_after_ms,
                                .curl_code = q->code,
                                .attempts = q->attempts,
                                .elapsed_ms = util_now_mono_ms() - q->started_ms,
                        };
                        memcpy(resp.error, q->errbuf, sizeof(resp.error));
                        resp.error[sizeof(resp.error) - 1] = '\0';
                        q->cb(q->userdata, q->r, &resp);
                }
                req_free(q);
        }
        h->dispatching--;
}

/* ---- public API -------------------------------------------------------- */

/* The options of one http, defaults filled in. */
static int view_new(struct http_core *c, const struct http_options *opts, struct http **ret) {
        if (opts && opts->proxy && url_check_endpoint(opts->proxy, URL_ALLOW_HTTP, NULL, NULL) < 0)
                return -EINVAL;        /* https://, or http:// to a loopback proxy */
        struct http *h = calloc(1, sizeof(*h));
        if (!h)
                return -ENOMEM;
        h->core = c;
        list_init(&h->core_link);
        list_init(&h->queued);
        list_init(&h->running);
        list_init(&h->backoff);
        list_init(&h->done);
        if (opts)
                h->opts = *opts;
#define DEF(f, v) do { if (h->opts.f <= 0) h->opts.f = (v); } while (0)
        DEF(max_per_host, HTTP_DEFAULT_MAX_PER_HOST);
        DEF(connect_timeout_ms, HTTP_DEFAULT_CONNECT_TIMEOUT);
        DEF(timeout_ms, HTTP_DEFAULT_TIMEOUT);
        DEF(max_response, HTTP_DEFAULT_MAX_RESPONSE);
        DEF(max_attempts, HTTP_DEFAULT_MAX_ATTEMPTS);
        DEF(backoff_base_ms, HTTP_DEFAULT_BACKOFF_BASE);
        DEF(backoff_max_ms, HTTP_DEFAULT_BACKOFF_MAX);
        DEF(retry_after_max_ms, HTTP_DEFAULT_RETRY_AFTER_MAX);
#undef DEF
        h->opts.user_agent = NULL;
        h->opts.proxy = NULL;
        h->user_agent = strdup(opts && opts->user_agent ? opts->user_agent
                                                        : "partnerd/" PARTNERD_VERSION);
        h->proxy = opts && opts->proxy ? strdup(opts->proxy) : NULL;
        if (!h->user_agent || (opts && opts->proxy && !h->proxy)) {
                view_free(h);
                return -ENOMEM;
        }
        list_add_tail(&c->views, &h->core_link);
        core_limits(c);
        *ret = h;
        return 0;
}

int http_new(uv_loop_t *loop, const struct http_options *opts, struct http **ret) {
        if (!loop || !ret)
                return -EINVAL;
        if (!http_async_dns())
                return -ENOTSUP;       /* a blocking resolver would stall the loop */
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return -ENOMEM;
        struct http_core *c = calloc(1, sizeof(*c));
        if (!c) {
                curl_global_cleanup();
                return -ENOMEM;
        }
        c->loop = loop;
        list_init(&c->socks);
        list_init(&c->views);
        c->timer = calloc(1, sizeof(*c->timer));
        c->defer = calloc(1, sizeof(*c->defer));
        c->multi = curl_multi_init();
        if (!c->timer || !c->defer || !c->multi) {
                if (c->multi)
                        curl_multi_cleanup(c->multi);
                free(c->timer);
                free(c->defer);
                free(c);
                curl_global_cleanup();
                return -ENOMEM;
        }
        /* uv_timer_init() cannot fail on Linux; both are closed together. */
        uv_timer_init(loop, &c->timer->timer);
        uv_timer_init(loop, &c->defer->timer);
        c->timer->timer.data = c;
        c->defer->timer.data = c;
        curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, socket_function);
        curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
        curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_function);
        curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
        curl_multi_setopt(c->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
        int r = view_new(c, opts, ret);
        if (r < 0)
                core_teardown(c);   /* no view: it only closes the timers */
        return r;
}

int http_new_shared(struct http *base, const struct http_options *opts, struct http **ret) {
        if (!base || !ret)
                return -EINVAL;
        if (base->freeing)
                return -ESHUTDOWN;
        return view_new(base->core, opts, ret);
}

static void cancel_req(struct req *q) {
        struct http *h = q->h;
        if (q->state == REQ_RUNNING)
                curl_multi_remove_handle(h->core->multi, q->easy);
        if (q->retry_timer)
                uv_timer_stop(&q->retry_timer->timer);
        if (q->is_easy)
                q->code = CURLE_ABORTED_BY_CALLBACK;
        else
                snprintf(q->errbuf, sizeof(q->errbuf), "cancelled");
        finish(q, -ECANCELED);
}

static void cancel_list(struct link *head) {
        while (!list_empty(head))
                cancel_req(link_entry(head->next, struct req, link));
}

static void cancel_all(struct http *h) {
        cancel_list(&h->queued);
        cancel_list(&h->backoff);
        cancel_list(&h->running);
}

void http_cancel_all(struct http *h) {
        if (!h)
                return;
        struct http_core *c = h->core;
        core_enter(c);
        cancel_all(h);
        dispatch(h);
        core_leave(c);
}

struct http *http_free(struct http *h) {
        if (!h || h->freeing)
                return NULL;    /* NULL, or a nested call from a callback */
        struct http_core *c = h->core;
        core_enter(c);
        h->freeing = true;
        cancel_all(h);
        core_leave(c);          /* the outermost one frees h (and c after the last) */
        return NULL;
}

static int url_host_key(const char *url, char **ret, bool *ret_loopback) {
        CURLU *u = curl_url();
        char *host = NULL, *port = NULL;
        int r = -EINVAL;
        if (!u)
                return -ENOMEM;
        if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK)
                goto out;
        if (asprintf(ret, "%s:%s", host, port) < 0) {
                r = -ENOMEM;
                goto out;
        }
        util_ascii_lower(*ret);
        if (ret_loopback)
                *ret_loopback = util_host_is_loopback(host);
        r = 0;
out:
        curl_free(host);
        curl_free(port);
        curl_url_cleanup(u);
        return r;
}

static bool method_ok(const char *m) {
        size_t n = strlen(m);
        if (n == 0 || n > 16)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!isupper((unsigned char) m[i]))
                        return false;
        return true;
}

static struct req *req_alloc(struct http *h) {
        struct req *q = calloc(1, sizeof(*q));
        if (!q)
                return NULL;
        q->h = h;
        list_init(&q->link);
        util_buf_init(&q->resp_body, h->opts.max_response);
        q->retry_after_ms = -1;
        q->started_ms = util_now_mono_ms();
        h->n_reqs++;
        return q;
}

int http_submit(struct http *h, const struct http_request *req, http_done_fn cb, void *userdata) {
        if (!h || !req || !req->url || !cb)
                return -EINVAL;
        if (h->freeing)
                return -ESHUTDOWN;
        if (h->n_reqs >= HTTP_MAX_REQUESTS)
                return -ENOBUFS;
        const char *method = req->method ? req->method : "GET";
        if (!method_ok(method) || strlen(req->url) > HTTP_MAX_URL)
                return -EINVAL;
        bool plaintext;
        int r = url_check_endpoint(req->url, URL_ALLOW_HTTP, &plaintext, NULL);
        if (r < 0)
                return r;
        if (req->request_id_header && (util_has_ctl(req->request_id_header, false) ||
                                       strlen(req->request_id_header) > 64 ||
                                       strchr(req->request_id_header, ':')))
                return -EINVAL;

        struct req *q = req_alloc(h);
        if (!q)
                return -ENOMEM;
        q->plaintext = plaintext;
        q->sensitive = req->sensitive;
        snprintf(q->label, sizeof(q->label), "%s", req->label ? req->label : "other");
        q->idempotent = req->idempotent;
        q->timeout_ms = req->timeout_ms > 0 ? req->timeout_ms : h->opts.timeout_ms;
        q->cb = cb;
        q->userdata = userdata;
        q->method = strdup(method);
        q->url = strdup(req->url);
        q->ca_file = util_strdup0(req->ca_file);
        q->cert_file = util_strdup0(req->cert_file);
        q->key_file = util_strdup0(req->key_file);
        q->request_id_header = util_strdup0(req->request_id_header);
        if (!q->method || !q->url || (req->ca_file && !q->ca_file) ||
            (req->cert_file && !q->cert_file) || (req->key_file && !q->key_file) ||
            (req->request_id_header && !q->request_id_header))
                goto nomem;
        r = url_host_key(req->url, &q->host, &q->loopback);
        if (r < 0)
                goto fail;
        if (req->headers) {
                size_t n = 0;
                while (req->headers[n])
                        n++;
                if (n > HTTP_MAX_REQ_HEADERS) {
                        r = -E2BIG;
                        goto fail;
                }
                q->headers = calloc(n + 1, sizeof(char *));
                if (!q->headers)
                        goto nomem;
                for (size_t i = 0; i < n; i++) {
                        if (util_has_ctl(req->headers[i], true) || !strchr(req->headers[i], ':')) {
                                r = -EINVAL;
                                goto fail;
                        }
                        q->headers[i] = strdup(req->headers[i]);
                        if (!q->headers[i])
                                goto nomem;
                        q->n_headers++;
                }
        }
        if (req->body) {
                q->body = malloc(req->body_len + 1);
                if (!q->body)
                        goto nomem;
                memcpy(q->body, req->body, req->body_len);
                q->body[req->body_len] = '\0';
                q->body_len = req->body_len;
        }
        q->easy = curl_easy_init();
        if (!q->easy)
                goto nomem;

        set_state(q, REQ_QUEUED);
        kick(h);
        /* kick() may have failed to start it: report that through the callback. */
        if (!h->dispatching && !list_empty(&h->done))
                uv_timer_start(&h->core->defer->timer, on_defer, 0, 0);
        return 0;
nomem:
        r = -ENOMEM;
fail:
        req_free(q);
        return r;
}

int http_add_easy(struct http *h, CURL *easy, http_easy_done_fn cb, void *userdata) {
        if (!h || !easy || !cb)
                return -EINVAL;
        if (h->freeing)
                return -ESHUTDOWN;
        if (h->n_reqs >= HTTP_MAX_REQUESTS)
                return -ENOBUFS;
        struct req *q = req_alloc(h);
        if (!q)
                return -ENOMEM;
        q->is_easy = true;
        q->easy = easy;
        q->easy_cb = cb;
        q->userdata = userdata;
        /* The common safety options; the caller has checked its URL with
         * url_check_endpoint(). */
        curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(easy, CURLOPT_PRIVATE, q);
        curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "https,http,smtps,smtp");
        curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, "https");
        curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, h->opts.connect_timeout_ms);
        curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, h->opts.timeout_ms);
        /* never a proxy for mail, least of all one from the environment */
        curl_easy_setopt(easy, CURLOPT_PROXY, "");
        curl_easy_setopt(easy, CURLOPT_NOPROXY, "");
        set_state(q, REQ_RUNNING);
        if (curl_multi_add_handle(h->core->multi, easy) != CURLM_OK) {
                q->easy = NULL;
                req_free(q);
                return -ENOMEM;
        }
        h->stats.requests++;
        return 0;
}

uv_loop_t *http_get_loop(const struct http *h) {
        return h ? h->core->loop : NULL;
}

size_t http_pending(const struct http *h) {
        return h ? h->n_reqs : 0;
}

void http_set_count_hook(struct http *h, http_count_fn fn, void *userdata) {
        if (!h)
                return;
        h->count = fn;
        h->count_ud = userdata;
}

void http_get_stats(const struct http *h, struct http_stats *ret) {
        if (!ret)
                return;
        *ret = h ? h->stats : (struct http_stats) { 0 };
}

/* ---- URLs --------------------------------------------------------------- */

char *http_escape(const char *s) {
        static const char hex[] = "0123456789ABCDEF";
        if (!s)
                return NULL;
        size_t n = strlen(s);
        if (n > (SIZE_MAX - 1) / 3)
                return NULL;
        char *out = malloc(n * 3 + 1), *o = out;
        if (!out)
                return NULL;
        for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
                if (isalnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~')
                        *o++ = (char) *p;
                else {
                        *o++ = '%';
                        *o++ = hex[*p >> 4];
                        *o++ = hex[*p & 15];
                }
        }
        *o = '\0';
        return out;
}
