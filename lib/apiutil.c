/* SPDX-License-Identifier: MIT */
#include "apiutil.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "secret.h"
#include "text.h"
#include "util.h"

const char *api_json_str(const json_t *obj, const char *key) {
        const json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
        return json_is_string(v) ? json_string_value(v) : NULL;
}

const json_t *api_json_obj(const json_t *obj, const char *key) {
        const json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
        return json_is_object(v) ? v : NULL;
}

const json_t *api_json_arr(const json_t *obj, const char *key) {
        const json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
        return json_is_array(v) ? v : NULL;
}

bool api_guid_valid(const char *s) {
        if (!s || strlen(s) != 36)
                return false;
        for (int i = 0; i < 36; i++) {
                if (i == 8 || i == 13 || i == 18 || i == 23) {
                        if (s[i] != '-')
                                return false;
                } else if (!isxdigit((unsigned char) s[i]))
                        return false;
        }
        return true;
}

char *api_url_path(const char *url) {
        const char *s = url ? strstr(url, "://") : NULL;
        s = s ? strchr(s + 3, '/') : NULL;
        if (!s)
                return strdup("/");
        return strndup(s, strcspn(s, "?#"));
}

/* ---- error descriptions ------------------------------------------------- */

#define API_DESCRIBE_MAX        300                  /* bytes of a described error */
#define API_DESCRIBE_PARSE_MAX  (1024 * 1024)        /* larger bodies are not parsed */

static const char *reason_phrase(long status) {
        switch (status) {
        case 400: return "Bad Request";
        case 401: return "Unauthorized";
        case 403: return "Forbidden";
        case 404: return "Not Found";
        case 405: return "Method Not Allowed";
        case 406: return "Not Acceptable";
        case 408: return "Request Timeout";
        case 409: return "Conflict";
        case 410: return "Gone";
        case 412: return "Precondition Failed";
        case 413: return "Payload Too Large";
        case 415: return "Unsupported Media Type";
        case 422: return "Unprocessable Entity";
        case 429: return "Too Many Requests";
        case 500: return "Internal Server Error";
        case 501: return "Not Implemented";
        case 502: return "Bad Gateway";
        case 503: return "Service Unavailable";
        case 504: return "Gateway Timeout";
        default: return NULL;
        }
}

/* A non-empty string field, else NULL. */
static const char *jstr(const json_t *o, const char *key) {
        const char *s = api_json_str(o, key);
        return s && *s ? s : NULL;
}

/* Appends "; msg" unless msg is already part of the text. */
static void add_unique(struct util_buf *b, const char *sep, const char *msg) {
        if (!msg || !*msg || (b->data && strstr(b->data, msg)))
                return;
        if (b->len > 0)
                util_buf_puts(b, sep);
        util_buf_puts(b, msg);
}

static void describe_errors(struct util_buf *b, json_t *errors, const char *first_sep) {
        int n = 0;
        if (json_is_object(errors)) {
                const char *key;
                json_t *v;
                json_object_foreach(errors, key, v) {
                        if (n++ >= 3)
                                break;
                        const char *msg = json_is_string(v) ? json_string_value(v) :
                                          json_is_array(v) && json_is_string(json_array_get(v, 0)) ?
                                          json_string_value(json_array_get(v, 0)) : NULL;
                        if (!msg || (b->data && strstr(b->data, msg)))
                                continue;
                        if (b->len > 0)
                                util_buf_puts(b, n == 1 ? first_sep : "; ");
                        util_buf_printf(b, "%s: %s", key, msg);
                }
        } else if (json_is_array(errors)) {
                size_t i;
                json_t *v;
                json_array_foreach(errors, i, v) {
                        if (n++ >= 3)
                                break;
                        const char *msg = json_is_string(v) ? json_string_value(v) :
                                          jstr(v, "message");
                        size_t before = b->len;
                        add_unique(b, first_sep, msg);
                        if (b->len != before)
                                first_sep = "; ";
                }
        }
}

static void describe_first_line(struct util_buf *b, const char *s) {
        size_t n = strcspn(s, "\r\n");
        util_buf_append(b, s, n);
}

/* The message part of a JSON error body; false if the shape is unknown. */
static bool describe_json(struct util_buf *b, json_t *o) {
        if (!json_is_object(o))
                return false;
        json_t *err = json_object_get(o, "error");
        const char *title = jstr(o, "title"), *detail = jstr(o, "detail");
        const char *message = jstr(o, "message"), *description = jstr(o, "description");
        json_t *code = json_object_get(o, "code");
        json_t *errors = json_object_get(o, "errors");

        if (!detail)
                detail = jstr(o, "details");
        if (json_is_string(err)) {
                /* Entra ID: {"error":"invalid_client","error_description":"AADSTS...\r\nTrace ID..."} */
                util_buf_puts(b, json_string_value(err));
                const char *d = jstr(o, "error_description");
                if (d) {
                        util_buf_puts(b, ": ");
                        describe_first_line(b, d);
                }
        } else if (json_is_object(err) && (jstr(err, "message") || jstr(err, "code"))) {
                /* OData / Graph style {"error":{"code":..,"message":..}} */
                add_unique(b, ": ", jstr(err, "code"));
                add_unique(b, ": ", jstr(err, "message"));
        } else if (title || detail) {
                /* RFC 7807 problem details (Marketplace) */
                add_unique(b, ": ", title);
                add_unique(b, ": ", detail);
                describe_errors(b, errors, detail ? "; " : ": ");
        } else if (description) {
                /* Partner Center {code, description} */
                util_buf_puts(b, description);
                if (json_is_integer(code))
                        util_buf_printf(b, " (code %lld)", (long long) json_integer_value(code));
                else if (json_is_string(code) && json_string_length(code) > 0)
                        util_buf_printf(b, " (code %s)", json_string_value(code));
        } else if (message) {
                /* gateway {statusCode, message} */
                util_buf_puts(b, message);
        } else if (errors)
                describe_errors(b, errors, "; ");
        if (b->len == 0)
                return false;
        const char *trace = jstr(o, "traceId");
        if (trace)
                util_buf_printf(b, " (trace %s)", trace);
        return true;
}

static const char *errno_phrase(int r) {
        switch (r) {
        case -ECONNREFUSED: return "connection refused";
        case -ETIMEDOUT: return "timed out";
        case -ECONNRESET: return "connection reset";
        case -EFBIG: return "response too large";
        case -EHOSTUNREACH: return "could not resolve host";
        case -EPROTO: return "TLS or protocol error";
        case -ECANCELED: return "cancelled";
        case -ESHUTDOWN: return "shutting down";
        case -ENOMEM: return "out of memory";
        case -EINVAL: return "invalid request";
        default: return NULL;
        }
}

char *api_describe_error(int r, const struct http_response *resp) {
        struct util_buf b;
        util_buf_init(&b, 64 * 1024);

        if (r < 0 || !resp || resp->status <= 0) {
                const char *phrase = r < 0 ? errno_phrase(r) : "no response";
                const char *detail = resp && resp->error[0] ? resp->error : NULL;
                if (!phrase)
                        phrase = strerror(-r);
                if (detail && (r == -ETIMEDOUT || r == -EFBIG || r == -ECANCELED))
                        util_buf_puts(&b, detail);      /* our own, already human */
                else if (detail)
                        util_buf_printf(&b, "%s: %s", phrase, detail);
                else
                        util_buf_puts(&b, phrase);
                if (resp && resp->attempts > 1)
                        util_buf_printf(&b, " (%d attempts)", resp->attempts);
        } else {
                const char *reason = reason_phrase(resp->status);
                util_buf_printf(&b, "HTTP %ld%s%s", resp->status, reason ? " " : "",
                                reason ? reason : "");
                const char *body = resp->body ? resp->body : "";
                size_t len = resp->body ? resp->body_len : 0;
                /* A server may echo a secret we sent: it goes before anything
                 * is quoted or cut (a cut could leave a prefix of it). */
                char *scrubbed = secret_found(body, len) ? secret_scrub(body, len, &len) : NULL;
                if (scrubbed)
                        body = scrubbed;
                else if (len && secret_found(body, len))
                        len = 0;        /* no memory to scrub it: quote nothing */
                struct util_buf m;
                util_buf_init(&m, 16 * 1024);
                json_t *o = NULL;
                if (len > 0 && len <= API_DESCRIBE_PARSE_MAX)
                        o = json_loadb(body, len, 0, NULL);
                if (!describe_json(&m, o) && len > 0) {
                        util_buf_free(&m);
                        util_buf_init(&m, 16 * 1024);
                        util_buf_append(&m, body, len < 1024 ? len : 1024);
                }
                json_decref(o);
                if (m.len > 0) {
                        util_buf_puts(&b, ": ");
                        util_buf_append(&b, m.data, m.len);
                }
                util_buf_free(&m);
                free(scrubbed);
        }
        char *out = text_clean(b.data ? b.data : "", b.len, TEXT_FOLD, API_DESCRIBE_MAX);
        util_buf_free(&b);
        return out;
}
