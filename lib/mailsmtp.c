/* SPDX-License-Identifier: MIT */
/*
 * mailsmtp.c: the transports of lib/mail.
 *
 *  - SMTP through libcurl on the shared multi handle (http_add_easy):
 *    smtps:// (implicit TLS), or smtp:// with STARTTLS required; plaintext
 *    only to loopback hosts.  The message is uploaded from memory; curl
 *    dot-stuffs it.  Server replies are captured through the debug
 *    callback (never the AUTH exchange) for the result line and to count
 *    refused recipients.
 *  - sendmail: `<sendmail> -oi -f <from> -- <rcpt>...` spawned with uv_spawn,
 *    the message written to its stdin through a uv pipe.  Recipients are
 *    passed explicitly (not -t): the message has no Bcc header, and the
 *    envelope is the one we computed.  The message is handed over with LF
 *    line ends (local convention).  Exit 0 = sent, 75 (EX_TEMPFAIL) =
 *    retry later, anything else = permanent.  A child that exits without
 *    reading its input must not kill us: SIGPIPE is ignored when it still
 *    has its default disposition.
 */
#include "mail.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "text.h"
#include "url.h"
#include "util.h"

#define SMTP_CONNECT_TIMEOUT_MS 10000L
#define SMTP_TIMEOUT_MS         120000L   /* whole transfer */
#define SENDMAIL_TIMEOUT_MS     120000u
#define SENDMAIL_EX_TEMPFAIL    75        /* sysexits.h */
#define REPLY_MAX               300
#define MAIL_ADDR_BUF           300       /* "<" addr-spec (<= 254) ">" */

struct send_op;

struct mail_transport {
        struct http *http;
        uv_loop_t *loop;
        enum cfg_transport kind;
        char *smtp_url;
        bool smtp_loopback;
        bool smtp_implicit_tls;
        char *username;
        char *password;
        char *ca_file;
        char *sendmail_path;
        struct send_op *ops;         /* running sends, to detach on free */
};

struct send_op {
        struct mail_transport *t;    /* NULL once the transport is freed */
        struct send_op *prev, *next;
        mail_sent_fn cb;
        void *ud;
        char *data;
        size_t len, off;

        /* SMTP */
        CURL *easy;
        struct curl_slist *rcpt_list;
        char errbuf[CURL_ERROR_SIZE];
        char verb[5];                /* last command verb we sent */
        bool in_auth;                /* inside the AUTH exchange */
        char line[REPLY_MAX];        /* partial server line */
        size_t line_len;
        char reply[REPLY_MAX];       /* last final server reply line */
        char refusal[REPLY_MAX];     /* first RCPT refusal */
        long code;                   /* last reply code seen */
        size_t n_refused;

        /* sendmail */
        uv_process_t proc;
        uv_pipe_t in, err;
        uv_write_t wr;
        uv_timer_t timer;
        int open_handles;
        bool exited, timed_out;
        int64_t exit_status;
        int term_signal;
        char errtext[REPLY_MAX];
        size_t errlen;
};

static void op_link(struct mail_transport *t, struct send_op *op) {
        op->t = t;
        op->next = t->ops;
        if (t->ops)
                t->ops->prev = op;
        t->ops = op;
}

static void op_unlink(struct send_op *op) {
        if (!op->t)
                return;
        if (op->prev)
                op->prev->next = op->next;
        else
                op->t->ops = op->next;
        if (op->next)
                op->next->prev = op->prev;
        op->t = NULL;
        op->prev = op->next = NULL;
}

static void op_free(struct send_op *op) {
        if (!op)
                return;
        op_unlink(op);
        if (op->easy)
                curl_easy_cleanup(op->easy);
        curl_slist_free_all(op->rcpt_list);
        free(op->data);
        free(op);
}

static int64_t parse_code(const char *s, size_t n) {
        if (n < 3 || s[0] < '2' || s[0] > '5' || s[1] < '0' || s[1] > '9' || s[2] < '0' || s[2] > '9')
                return -1;
        return (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
}

/* ---- transport -------------------------------------------------------- */

int mail_transport_new(struct http *h, uv_loop_t *loop, const struct cfg_mail *cfg,
                       struct mail_transport **ret) {
        struct mail_transport *t;
        int r = -EINVAL;

        if (!cfg || !ret)
                return -EINVAL;
        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->http = h;
        t->loop = loop;
        t->kind = cfg->transport;
        if (t->kind == CFG_TRANSPORT_SMTP) {
                bool plain = false;
                if (!h || !cfg->smtp_url)
                        goto fail;
                /* the URL policy judges it: smtps:// or smtp:// (STARTTLS) */
                r = url_check_endpoint(cfg->smtp_url, URL_ALLOW_SMTP, &plain, NULL);
                if (r < 0)
                        goto fail;
                t->smtp_implicit_tls = !plain;
                t->smtp_loopback = url_endpoint_is_loopback(cfg->smtp_url);
                t->smtp_url = strdup(cfg->smtp_url);
                t->username = util_strdup0(cfg->username);
                t->password = util_strdup0(cfg->password);
                t->ca_file = util_strdup0(cfg->ca_file);
                if (!t->smtp_url || (cfg->username && !t->username) ||
                    (cfg->password && !t->password) || (cfg->ca_file && !t->ca_file)) {
                        r = -ENOMEM;
                        goto fail;
                }
        } else if (t->kind == CFG_TRANSPORT_SENDMAIL) {
                if (!loop)
                        goto fail;
                struct sigaction sa;
                if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
                        signal(SIGPIPE, SIG_IGN);
                t->sendmail_path = strdup(cfg->sendmail_path ? cfg->sendmail_path : "/usr/sbin/sendmail");
                if (!t->sendmail_path) {
                        r = -ENOMEM;
                        goto fail;
                }
        } else
                goto fail;
        *ret = t;
        return 0;
fail:
        mail_transport_free(t);
        return r;
}

static void sendmail_kill(struct send_op *op);

struct mail_transport *mail_transport_free(struct mail_transport *t) {
        if (!t)
                return NULL;
        /* Running sends are detached: SMTP transfers finish (or are
         * cancelled) with the http module, sendmail children are killed;
         * their callbacks still run from the loop. */
        while (t->ops) {
                struct send_op *op = t->ops;
                op_unlink(op);
                if (!op->easy)
                        sendmail_kill(op);
        }
        free(t->smtp_url);
        free(t->username);
        if (t->password) {
                explicit_bzero(t->password, strlen(t->password));
                free(t->password);
        }
        free(t->ca_file);
        free(t->sendmail_path);
        free(t);
        return NULL;
}

/* ---- SMTP -------------------------------------------------------------- */

static size_t smtp_read(char *buf, size_t size, size_t nitems, void *ud) {
        struct send_op *op = ud;
        size_t n = size * nitems, left = op->len - op->off;
        if (n > left)
                n = left;
        memcpy(buf, op->data + op->off, n);
        op->off += n;
        return n;
}

static void smtp_server_line(struct send_op *op, const char *s, size_t n) {
        int64_t code = parse_code(s, n);
        if (code < 0)
                return;
        bool final = n == 3 || s[3] != '-';
        if (!final || strcmp(op->verb, "QUIT") == 0)
                return;   /* the goodbye after a failure says nothing */
        op->code = (long) code;
        if (op->in_auth) {
                if (code == 334)
                        return;           /* challenge: not recorded */
                op->in_auth = false;
        }
        text_ascii_line(op->reply, sizeof(op->reply), s, n);
        if (strcmp(op->verb, "RCPT") == 0 && code >= 400) {
                op->n_refused++;
                if (!op->refusal[0])
                        memcpy(op->refusal, op->reply, sizeof(op->refusal));
        }
}

static int smtp_debug(CURL *easy, curl_infotype type, char *data, size_t size, void *ud) {
        struct send_op *op = ud;

        if (type == CURLINFO_HEADER_OUT) {
                /* Only the verb of a command is kept; the AUTH exchange
                 * (credentials) is never looked at beyond its verb. */
                if (op->in_auth)
                        return 0;
                size_t k = 0;
                while (k < 4 && k < size && data[k] >= 'A' && data[k] <= 'z') {
                        op->verb[k] = (char) (data[k] & ~0x20);
                        k++;
                }
                op->verb[k] = '\0';
                if (strcmp(op->verb, "AUTH") == 0)
                        op->in_auth = true;
                return 0;
        }
        if (type != CURLINFO_HEADER_IN)
                return 0;
        for (size_t i = 0; i < size; i++) {
                char c = data[i];
                if (c == '\n') {
                        size_t n = op->line_len;
                        if (n > 0 && op->line[n - 1] == '\r')
                                n--;
                        smtp_server_line(op, op->line, n);
                        op->line_len = 0;
                } else if (op->line_len + 1 < sizeof(op->line))
                        op->line[op->line_len++] = c;
        }
        return 0;
}

static bool curl_code_is_setup(CURLcode c) {
        switch (c) {
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
        case CURLE_COULDNT_CONNECT:
        case CURLE_OPERATION_TIMEDOUT:
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_USE_SSL_FAILED:
        case CURLE_LOGIN_DENIED:
        case CURLE_GOT_NOTHING:
        case CURLE_ABORTED_BY_CALLBACK:
        case CURLE_OUT_OF_MEMORY:
                return true;
        default:
                return false;
        }
}

static void smtp_done(void *userdata, CURL *easy, CURLcode result) {
        struct send_op *op = userdata;
        struct mail_result res = {};
        char error[CURL_ERROR_SIZE + REPLY_MAX + 64];
        long code = 0;

        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
        if (code <= 0)
                code = op->code;
        res.smtp_code = code;
        res.n_refused = op->n_refused;
        if (result == CURLE_OK) {
                res.ok = true;
                if (op->n_refused > 0) {
                        snprintf(error, sizeof(error), "%zu recipient(s) refused: %s", op->n_refused,
                                 op->refusal);
                        res.error = error;
                }
        } else {
                /* Connection, TLS, login and time-out problems are not the
                 * message's fault: retry later.  Otherwise the reply code
                 * decides: 5xx permanent, everything else retry. */
                res.permanent = !curl_code_is_setup(result) && code >= 500 && code <= 599;
                char cerr[CURL_ERROR_SIZE];
                const char *why = op->errbuf[0] ? op->errbuf : curl_easy_strerror(result);
                text_ascii_line(cerr, sizeof(cerr), why, strlen(why));
                if (op->refusal[0] && op->n_refused > 0 && strcmp(op->verb, "RCPT") == 0)
                        snprintf(error, sizeof(error), "SMTP %s (%s)", op->refusal, cerr);
                else if (op->reply[0] && code >= 400)
                        snprintf(error, sizeof(error), "SMTP %s (%s)", op->reply, cerr);
                else
                        snprintf(error, sizeof(error), "%s", cerr);
                res.error = error;
        }
        mail_sent_fn cb = op->cb;
        void *ud = op->ud;
        op_free(op);
        cb(ud, &res);
}

/* The options every SMTP transfer has.  One connection per message,
 * closed after it: curl does not compare TLS settings when it reuses a
 * STARTTLS connection, so a cached connection could outlive a changed
 * ca_file or credentials.  TLS verification is never off. */
static const struct {
        CURLoption opt;
        long value;
} smtp_fixed[] = {
        { CURLOPT_NOSIGNAL, 1L },
        { CURLOPT_CONNECTTIMEOUT_MS, SMTP_CONNECT_TIMEOUT_MS },
        { CURLOPT_TIMEOUT_MS, SMTP_TIMEOUT_MS },
        { CURLOPT_FRESH_CONNECT, 1L },
        { CURLOPT_FORBID_REUSE, 1L },
        { CURLOPT_SSL_VERIFYPEER, 1L },
        { CURLOPT_SSL_VERIFYHOST, 2L },
        { CURLOPT_MAIL_RCPT_ALLLOWFAILS, 1L },
        { CURLOPT_UPLOAD, 1L },
        { CURLOPT_VERBOSE, 1L },
};

static int smtp_start(struct mail_transport *t, struct send_op *op, const struct mail_message *m) {
        char *from = NULL;
        CURL *e;
        int r;

        e = op->easy = curl_easy_init();
        if (!e)
                return -ENOMEM;
        for (size_t i = 0; i < m->n_rcpt; i++) {
                char buf[MAIL_ADDR_BUF];
                snprintf(buf, sizeof(buf), "<%s>", m->rcpt[i]);
                struct curl_slist *l = curl_slist_append(op->rcpt_list, buf);
                if (!l)
                        return -ENOMEM;
                op->rcpt_list = l;
        }
        if (asprintf(&from, "<%s>", m->envelope_from) < 0)
                return -ENOMEM;

        CURLcode c = CURLE_OK;
        for (size_t i = 0; c == CURLE_OK && i < sizeof(smtp_fixed) / sizeof(smtp_fixed[0]); i++)
                c = curl_easy_setopt(e, smtp_fixed[i].opt, smtp_fixed[i].value);
#define SET(opt, val) do { if (c == CURLE_OK) c = curl_easy_setopt(e, opt, val); } while (0)
        SET(CURLOPT_URL, t->smtp_url);
        SET(CURLOPT_PROTOCOLS_STR, "smtp,smtps");
        if (!t->smtp_implicit_tls)
                /* STARTTLS is required, except to a loopback relay where
                 * plaintext is acceptable (it is still used when offered). */
                SET(CURLOPT_USE_SSL, t->smtp_loopback ? (long) CURLUSESSL_TRY : (long) CURLUSESSL_ALL);
        if (t->ca_file)
                SET(CURLOPT_CAINFO, t->ca_file);
        if (t->username) {
                SET(CURLOPT_USERNAME, t->username);
                SET(CURLOPT_PASSWORD, t->password ? t->password : "");
        }
        SET(CURLOPT_MAIL_FROM, from);
        SET(CURLOPT_MAIL_RCPT, op->rcpt_list);
        SET(CURLOPT_READFUNCTION, smtp_read);
        SET(CURLOPT_READDATA, op);
        SET(CURLOPT_INFILESIZE_LARGE, (curl_off_t) op->len);
        SET(CURLOPT_ERRORBUFFER, op->errbuf);
        SET(CURLOPT_DEBUGFUNCTION, smtp_debug);
        SET(CURLOPT_DEBUGDATA, op);
#undef SET
        free(from);
        if (c != CURLE_OK)
                return c == CURLE_OUT_OF_MEMORY ? -ENOMEM : -EINVAL;
        r = http_add_easy(t->http, e, smtp_done, op);
        return r;
}

/* ---- sendmail --------------------------------------------------------- */

static void sendmail_finish(struct send_op *op) {
        struct mail_result res = {};
        char error[REPLY_MAX + 96];

        if (op->exited && !op->timed_out && op->term_signal == 0 && op->exit_status == 0) {
                res.ok = true;
        } else {
                if (op->timed_out)
                        snprintf(error, sizeof(error), "sendmail did not finish in time");
                else if (op->term_signal)
                        snprintf(error, sizeof(error), "sendmail killed by signal %d", op->term_signal);
                else
                        snprintf(error, sizeof(error), "sendmail exited with status %lld%s%s",
                                 (long long) op->exit_status, op->errtext[0] ? ": " : "", op->errtext);
                res.permanent = op->exited && !op->timed_out && op->term_signal == 0 &&
                                op->exit_status != SENDMAIL_EX_TEMPFAIL;
                res.error = error;
        }
        mail_sent_fn cb = op->cb;
        void *ud = op->ud;
        op_free(op);
        cb(ud, &res);
}

static void sendmail_closed(uv_handle_t *h) {
        struct send_op *op = h->data;
        if (--op->open_handles == 0)
                sendmail_finish(op);
}

static void sendmail_close(uv_handle_t *h) {
        if (!uv_is_closing(h))
                uv_close(h, sendmail_closed);
}

static void sendmail_kill(struct send_op *op) {
        if (!op->exited && !uv_is_closing((uv_handle_t *) &op->proc))
                uv_process_kill(&op->proc, SIGKILL);
}

/* Grace period for the rest of stderr after the child exited. */
#define SENDMAIL_DRAIN_MS 2000u

static void sendmail_timeout(uv_timer_t *tm);

static void sendmail_exit(uv_process_t *p, int64_t status, int sig) {
        struct send_op *op = p->data;
        op->exited = true;
        op->exit_status = status;
        op->term_signal = sig;
        sendmail_close((uv_handle_t *) &op->proc);
        sendmail_close((uv_handle_t *) &op->in);
        if (uv_is_closing((uv_handle_t *) &op->err))
                sendmail_close((uv_handle_t *) &op->timer);
        else
                uv_timer_start(&op->timer, sendmail_timeout, SENDMAIL_DRAIN_MS, 0);
}

static void sendmail_timeout(uv_timer_t *tm) {
        struct send_op *op = tm->data;
        if (op->exited) {
                /* stderr kept open by someone else: stop waiting. */
                sendmail_close((uv_handle_t *) &op->err);
                sendmail_close((uv_handle_t *) &op->timer);
                return;
        }
        op->timed_out = true;
        sendmail_kill(op);
}

static void sendmail_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
        static char scratch[1024];
        (void) h;
        (void) suggested;
        *buf = uv_buf_init(scratch, sizeof(scratch));
}

static void sendmail_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
        struct send_op *op = s->data;
        if (n < 0) {
                sendmail_close((uv_handle_t *) s);
                if (op->exited)
                        sendmail_close((uv_handle_t *) &op->timer);
                return;
        }
        /* Keep the first line of what it says on stderr. */
        for (ssize_t i = 0; i < n && op->errlen + 1 < sizeof(op->errtext); i++) {
                if (buf->base[i] == '\n' && op->errlen > 0) {
                        op->errlen = sizeof(op->errtext);   /* first line complete */
                        break;
                }
                unsigned char c = (unsigned char) buf->base[i];
                if (c == '\n' || c == '\r')
                        continue;
                op->errtext[op->errlen++] = c < 0x20 || c >= 0x7f ? '?' : (char) c;
                op->errtext[op->errlen] = '\0';
        }
}

static void sendmail_written(uv_write_t *w, int status) {
        struct send_op *op = w->data;
        (void) status;  /* a child that exits early shows in its exit status */
        sendmail_close((uv_handle_t *) &op->in);
}

static int sendmail_start(struct mail_transport *t, struct send_op *op, const struct mail_message *m) {
        uv_process_options_t o = {};
        uv_stdio_container_t stdio[3];
        char **argv;
        size_t n = 0;
        int r;

        argv = calloc(m->n_rcpt + 7, sizeof(char *));
        if (!argv)
                return -ENOMEM;
        argv[n++] = t->sendmail_path;
        argv[n++] = (char *) "-oi";
        argv[n++] = (char *) "-f";
        argv[n++] = m->envelope_from;
        argv[n++] = (char *) "--";
        for (size_t i = 0; i < m->n_rcpt; i++)
                argv[n++] = m->rcpt[i];
        argv[n] = NULL;

        uv_pipe_init(t->loop, &op->in, 0);
        uv_pipe_init(t->loop, &op->err, 0);
        uv_timer_init(t->loop, &op->timer);
        op->in.data = op->err.data = op->timer.data = op->proc.data = op->wr.data = op;
        stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
        stdio[0].data.stream = (uv_stream_t *) &op->in;
        stdio[1].flags = UV_IGNORE;
        stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
        stdio[2].data.stream = (uv_stream_t *) &op->err;
        o.file = t->sendmail_path;
        o.args = argv;
        o.exit_cb = sendmail_exit;
        o.stdio = stdio;
        o.stdio_count = 3;
        r = uv_spawn(t->loop, &op->proc, &o);
        free(argv);
        op->open_handles = 4;
        if (r < 0) {
                /* The process handle must be closed too; the callback then
                 * reports the failure from the loop. */
                op->exited = true;
                op->exit_status = SENDMAIL_EX_TEMPFAIL;
                snprintf(op->errtext, sizeof(op->errtext), "cannot run %s: %s", t->sendmail_path,
                         uv_strerror(r));
                op->errlen = strlen(op->errtext);
                sendmail_close((uv_handle_t *) &op->proc);
                sendmail_close((uv_handle_t *) &op->in);
                sendmail_close((uv_handle_t *) &op->err);
                sendmail_close((uv_handle_t *) &op->timer);
                return 0;
        }
        uv_timer_start(&op->timer, sendmail_timeout, SENDMAIL_TIMEOUT_MS, 0);
        uv_read_start((uv_stream_t *) &op->err, sendmail_alloc, sendmail_read);
        uv_buf_t buf = uv_buf_init(op->data, (unsigned) op->len);
        if (uv_write(&op->wr, (uv_stream_t *) &op->in, &buf, 1, sendmail_written) < 0)
                sendmail_close((uv_handle_t *) &op->in);
        return 0;
}

/* ---- entry point ------------------------------------------------------ */

int mail_send(struct mail_transport *t, const struct mail_message *m, mail_sent_fn cb, void *ud) {
        struct send_op *op;
        int r;

        if (!t || !m || !cb || !m->data || m->n_rcpt == 0 || m->len > UINT32_MAX)
                return -EINVAL;
        /* The envelope is validated again at use: no CR/LF ever reaches an
         * SMTP command or an argument. */
        if (!mail_is_addr_spec(m->envelope_from))
                return -EINVAL;
        for (size_t i = 0; i < m->n_rcpt; i++)
                if (!mail_is_addr_spec(m->rcpt[i]))
                        return -EINVAL;
        op = calloc(1, sizeof(*op));
        if (!op)
                return -ENOMEM;
        op->cb = cb;
        op->ud = ud;
        op->len = m->len;
        op->data = malloc(m->len + 1);
        if (!op->data) {
                free(op);
                return -ENOMEM;
        }
        memcpy(op->data, m->data, m->len);
        op->data[m->len] = '\0';
        if (t->kind == CFG_TRANSPORT_SMTP)
                r = smtp_start(t, op, m);
        else {
                /* A local submission program reads text in the local
                 * convention: LF line ends (it adds CRLF for SMTP). */
                size_t j = 0;
                for (size_t i = 0; i < op->len; i++)
                        if (!(op->data[i] == '\r' && i + 1 < op->len && op->data[i + 1] == '\n'))
                                op->data[j++] = op->data[i];
                op->len = j;
                op->data[j] = '\0';
                r = sendmail_start(t, op, m);
        }
        if (r < 0) {
                op_free(op);
                return r;
        }
        op_link(t, op);
        return 0;
}
