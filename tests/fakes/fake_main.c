/* SPDX-License-Identifier: MIT */
/*
 * fakeplatform: command line, libmicrohttpd server, request dispatch,
 * latency and fault injection.  Usage:
 *   fakeplatform --scenario FILE [--port N] [--port-file PATH]
 *                [--log FILE] [--latency-ms N]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <microhttpd.h>

#include "fake.h"
#include "util.h"

#define STALL_DEFAULT_MS 60000
#define OVERSIZE_BYTES (64u * 1024 * 1024)

/* Per-connection request state (created by the URI log callback). */
struct conn {
        char *uri;
        struct util_buf body;
        bool started;
};

struct stream {
        char *body;
        size_t len;
};

static void *uri_logger(void *cls, const char *uri, struct MHD_Connection *c) {
        struct conn *cn = calloc(1, sizeof(*cn));

        if (cn) {
                cn->uri = util_strdup0(uri);
                util_buf_init(&cn->body, FAKE_MAX_BODY);
        }
        return cn;
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe) {
        struct conn *cn = *con_cls;

        if (!cn)
                return;
        free(cn->uri);
        util_buf_free(&cn->body);
        free(cn);
        *con_cls = NULL;
}

static void req_parse_query(struct fake_req *rq, const char *uri) {
        const char *q = strchr(uri, '?'), *p;

        rq->query = strdup(q ? q + 1 : "");
        for (p = q ? q + 1 : ""; *p; ) {
                size_t len = strcspn(p, "&");
                const char *eq = memchr(p, '=', len);
                char **segs = realloc(rq->segs, (rq->n_segs + 1) * sizeof(char *));
                if (!segs)
                        break;
                rq->segs = segs;
                if (eq) {       /* decode key and value separately: "k=v" */
                        char *k = fake_url_decode(p, (size_t) (eq - p));
                        char *v = fake_url_decode(eq + 1, len - (size_t) (eq - p) - 1);
                        if (!k || !v || asprintf(&segs[rq->n_segs], "%s=%s", k, v) < 0)
                                segs[rq->n_segs] = NULL;
                        free(k);
                        free(v);
                } else
                        segs[rq->n_segs] = fake_url_decode(p, len);
                if (segs[rq->n_segs])
                        rq->n_segs++;
                p += len;
                if (*p == '&')
                        p++;
        }
}

static void req_free(struct fake_req *rq) {
        for (size_t i = 0; i < rq->n_segs; i++)
                free(rq->segs[i]);
        free(rq->segs);
        free(rq->query);
        free(rq->path);
        free(rq->route);
}

enum kind { K_NONE, K_MP, K_PC, K_TOKEN_V1, K_TOKEN_V2, K_CONTROL };

static enum kind classify(const char *path) {
        const char *slash;

        if (strncmp(path, "/public/v1/", 11) == 0)
                return K_MP;
        if (strncmp(path, "/_fake/", 7) == 0)
                return K_CONTROL;
        if (strncmp(path, "/v1/", 4) == 0)
                return K_PC;
        slash = strchr(path + 1, '/');
        if (slash && strcmp(slash, "/oauth2/token") == 0)
                return K_TOKEN_V1;
        if (slash && strcmp(slash, "/oauth2/v2.0/token") == 0)
                return K_TOKEN_V2;
        return K_NONE;
}

static const char *route_name(enum kind k, const struct fake_req *rq) {
        switch (k) {
        case K_MP:
                return fake_mp_route(rq);
        case K_PC:
                return fake_pc_route(rq);
        case K_TOKEN_V1:
        case K_TOKEN_V2:
                return "token";
        default:
                return NULL;
        }
}

static void handle(struct fake_state *s, enum kind k, struct fake_req *rq, struct fake_resp *resp) {
        switch (k) {
        case K_MP:
                fake_mp_handle(s, rq, resp);
                break;
        case K_PC:
                fake_pc_handle(s, rq, resp);
                /* Partner Center starts its bodies with a UTF-8 BOM
                 * [Azure/msrest-for-python#144; Microsoft's Partner Center
                 * PowerShell module skips the first character of each
                 * response]. */
                if (s->realism && resp->body && resp->body[0] == '{') {
                        char *b = NULL;
                        if (asprintf(&b, "\xEF\xBB\xBF%s", resp->body) >= 0) {
                                free(resp->body);
                                resp->body = b;
                        }
                }
                break;
        case K_TOKEN_V1:
        case K_TOKEN_V2:
                fake_pc_token(s, rq, resp, k == K_TOKEN_V2);
                break;
        case K_CONTROL:
                fake_control_handle(s, rq, resp);
                break;
        default:
                fake_resp_json(resp, 404, json_pack("{s:i s:s}", "statusCode", 404,
                                                    "message", "Resource not found"));
        }
}

static ssize_t truncate_cb(void *cls, uint64_t pos, char *buf, size_t max) {
        struct stream *st = cls;
        size_t half = st->len / 2, n;

        if (pos >= half)
                return MHD_CONTENT_READER_END_WITH_ERROR;
        n = half - (size_t) pos < max ? half - (size_t) pos : max;
        memcpy(buf, st->body + pos, n);
        return (ssize_t) n;
}

static ssize_t oversize_cb(void *cls, uint64_t pos, char *buf, size_t max) {
        static const char head[] = "{\"pad\":\"", tail[] = "\"}";
        size_t n = 0;

        for (; n < max && pos + n < OVERSIZE_BYTES; n++) {
                uint64_t p = pos + n;
                buf[n] = p < sizeof(head) - 1 ? head[p] :
                         p >= OVERSIZE_BYTES - (sizeof(tail) - 1) ?
                         tail[p - (OVERSIZE_BYTES - (sizeof(tail) - 1))] : 'x';
        }
        return n ? (ssize_t) n : MHD_CONTENT_READER_END_OF_STREAM;
}

static void stream_free(void *cls) {
        struct stream *st = cls;

        if (st) {
                free(st->body);
                free(st);
        }
}

static struct MHD_Response *build_response(struct fake_resp *resp, enum fake_fault_action act) {
        struct MHD_Response *r;
        size_t len = resp->body ? strlen(resp->body) : 0;

        if (act == FAKE_FAULT_OVERSIZE)
                return MHD_create_response_from_callback(OVERSIZE_BYTES, 64 * 1024, oversize_cb,
                                                         NULL, NULL);
        if (act == FAKE_FAULT_TRUNCATE) {
                struct stream *st = calloc(1, sizeof(*st));
                if (!st)
                        return NULL;
                st->body = resp->body;
                st->len = len;
                resp->body = NULL;
                r = MHD_create_response_from_callback(len + 64, 4096, truncate_cb, st, stream_free);
                if (!r)
                        stream_free(st);
                return r;
        }
        return MHD_create_response_from_buffer(len, resp->body ? resp->body : (char *) "",
                                               MHD_RESPMEM_MUST_COPY);
}

static enum MHD_Result send_response(struct MHD_Connection *c, struct fake_req *rq,
                                     struct fake_resp *resp, enum fake_fault_action act) {
        struct MHD_Response *r = build_response(resp, act);
        enum MHD_Result ret;

        if (!r)
                return MHD_NO;
        MHD_add_response_header(r, "Content-Type", resp->ctype ? resp->ctype : "application/json");
        if (resp->retry_after)
                MHD_add_response_header(r, "Retry-After", resp->retry_after);
        if (rq->ms_request_id && !util_has_ctl(rq->ms_request_id, false))
                MHD_add_response_header(r, "MS-RequestId", rq->ms_request_id);
        if (rq->ms_correlation_id && !util_has_ctl(rq->ms_correlation_id, false))
                MHD_add_response_header(r, "MS-CorrelationId", rq->ms_correlation_id);
        ret = MHD_queue_response(c, (unsigned) resp->status, r);
        MHD_destroy_response(r);
        return ret;
}

/* A scripted status fault: the configured body or a gateway-style body. */
static void fault_response(struct fake_fault *f, struct fake_resp *resp) {
        if (f->body)
                fake_resp_text(resp, f->status, "application/json", f->body);
        else
                fake_resp_gateway(resp, f->status, f->status == 429 ?
                                  "Rate limit is exceeded. Try again later." : "Service Unavailable");
        resp->retry_after = util_strdup0(f->retry_after);
}

static enum MHD_Result serve(struct fake_state *s, struct MHD_Connection *c, struct fake_req *rq,
                             enum kind k) {
        struct fake_fault f = { 0 };
        struct fake_resp resp = { .status = 500 };
        enum fake_fault_action act = FAKE_FAULT_DELAY;
        enum MHD_Result ret = MHD_NO;
        bool faulted;

        pthread_mutex_lock(&s->lock);
        faulted = fake_fault_take(s, rq, &f);
        pthread_mutex_unlock(&s->lock);
        if (faulted)
                act = f.action;
        /* sleeps happen outside the lock: other requests go on */
        if (k != K_CONTROL)
                fake_sleep_ms(s, s->latency_ms);
        fake_sleep_ms(s, act == FAKE_FAULT_STALL && f.delay_ms <= 0 ? STALL_DEFAULT_MS : f.delay_ms);

        pthread_mutex_lock(&s->lock);
        if (faulted)
                fake_fault_move_order(s, &f, rq);
        if (act == FAKE_FAULT_STATUS)
                fault_response(&f, &resp);
        else if (act != FAKE_FAULT_RESET && act != FAKE_FAULT_STALL)
                handle(s, k, rq, &resp);
        if (k != K_CONTROL) {
                size_t len = resp.body ? strlen(resp.body) : 0;
                uint64_t sent = act == FAKE_FAULT_RESET || act == FAKE_FAULT_STALL ? 0 :
                                act == FAKE_FAULT_OVERSIZE ? OVERSIZE_BYTES :
                                act == FAKE_FAULT_TRUNCATE ? len / 2 : len;
                fake_log_request(s, rq, act == FAKE_FAULT_RESET || act == FAKE_FAULT_STALL ? 0 :
                                 act == FAKE_FAULT_OVERSIZE ? 200 : resp.status, sent);
        }
        pthread_mutex_unlock(&s->lock);

        if (act != FAKE_FAULT_RESET && act != FAKE_FAULT_STALL)
                ret = send_response(c, rq, &resp, act);
        fake_resp_done(&resp);
        fake_fault_clear(&f);
        return ret;     /* MHD_NO closes the connection without an answer */
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *c, const char *url,
                                 const char *method, const char *version, const char *upload,
                                 size_t *upload_size, void **con_cls) {
        struct fake_state *s = cls;
        struct conn *cn = *con_cls;
        struct fake_req rq = { .method = method };
        enum MHD_Result ret;
        enum kind k;

        if (!cn)
                return MHD_NO;
        if (!cn->started) {
                cn->started = true;
                return MHD_YES;
        }
        if (*upload_size) {
                if (util_buf_append(&cn->body, upload, *upload_size) < 0)
                        return MHD_NO;  /* too large: drop the connection */
                *upload_size = 0;
                return MHD_YES;
        }
        rq.path = strdup(url);
        req_parse_query(&rq, cn->uri ? cn->uri : "");
        rq.body = cn->body.data ? cn->body.data : "";
        rq.body_len = cn->body.len;
        rq.authorization = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
        rq.continuation = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "MS-ContinuationToken");
        rq.ms_request_id = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "MS-RequestId");
        rq.ms_correlation_id = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "MS-CorrelationId");
        if (!rq.path || !rq.query) {
                req_free(&rq);
                return MHD_NO;
        }
        k = classify(rq.path);
        rq.route = util_strdup0(route_name(k, &rq));
        ret = serve(s, c, &rq, k);
        req_free(&rq);
        return ret;
}

static void usage(FILE *f) {
        fprintf(f, "usage: fakeplatform --scenario FILE [--port N] [--port-file PATH]\n"
                   "                    [--log FILE] [--latency-ms N]\n");
}

struct options {
        const char *scenario;
        const char *port_file;
        const char *log;
        int port;
        int latency_ms;
};

static int parse_args(int argc, char **argv, struct options *o) {
        static const struct option longopts[] = {
                { "scenario", required_argument, NULL, 's' },
                { "port", required_argument, NULL, 'p' },
                { "port-file", required_argument, NULL, 'f' },
                { "log", required_argument, NULL, 'l' },
                { "latency-ms", required_argument, NULL, 'L' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        int c;

        while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
                switch (c) {
                case 's': o->scenario = optarg; break;
                case 'p': o->port = atoi(optarg); break;
                case 'f': o->port_file = optarg; break;
                case 'l': o->log = optarg; break;
                case 'L': o->latency_ms = atoi(optarg); break;
                case 'h': usage(stdout); exit(0);
                default: return -EINVAL;
                }
        }
        if (!o->scenario || optind != argc || o->port < 0 || o->port > 65535 || o->latency_ms < 0)
                return -EINVAL;
        return 0;
}

static struct MHD_Daemon *start_server(struct fake_state *s, int port, int *ret_port) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t) port) };
        const union MHD_DaemonInfo *info;
        struct MHD_Daemon *d;

        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                             MHD_USE_ERROR_LOG, 0, NULL, NULL, access_cb, s,
                             MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &sa,
                             MHD_OPTION_URI_LOG_CALLBACK, uri_logger, NULL,
                             MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
                             MHD_OPTION_CONNECTION_TIMEOUT, 120u,
                             MHD_OPTION_END);
        if (!d)
                return NULL;
        info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
        *ret_port = info ? info->port : 0;
        return d;
}

int main(int argc, char **argv) {
        struct options o = { 0 };
        struct fake_state s = { .lock = PTHREAD_MUTEX_INITIALIZER };
        struct MHD_Daemon *d = NULL;
        char *err = NULL, buf[16];
        sigset_t mask;
        int port = 0, sig, r = 1;

        if (parse_args(argc, argv, &o) < 0) {
                usage(stderr);
                return 2;
        }
        s.latency_ms = o.latency_ms;
        if (fake_state_load(&s, o.scenario, &err) < 0) {
                fprintf(stderr, "fakeplatform: scenario: %s\n", err ? err : "out of memory");
                goto out;
        }
        if (o.log && !(s.log_file = fopen(o.log, "ae"))) {
                fprintf(stderr, "fakeplatform: %s: %m\n", o.log);
                goto out;
        }
        /* threads inherit the mask; the main thread waits for the signal */
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        pthread_sigmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);
        d = start_server(&s, o.port, &port);
        if (!d || port == 0) {
                fprintf(stderr, "fakeplatform: cannot listen on 127.0.0.1:%d\n", o.port);
                goto out;
        }
        if (o.port_file) {
                snprintf(buf, sizeof(buf), "%d\n", port);
                if (util_write_file_atomic(o.port_file, buf, strlen(buf), 0644) < 0) {
                        fprintf(stderr, "fakeplatform: cannot write %s\n", o.port_file);
                        goto out;
                }
        }
        printf("fakeplatform listening on 127.0.0.1:%d\n", port);
        fflush(stdout);
        sigwait(&mask, &sig);
        r = 0;
out:
        atomic_store(&s.stopping, true);
        if (d)
                MHD_stop_daemon(d);
        if (s.log_file)
                fclose(s.log_file);
        fake_state_free(&s);
        free(err);
        return r;
}
