/* SPDX-License-Identifier: MIT */
/* fakeplatform: response builders and request helpers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake.h"
#include "util.h"

void fake_resp_json(struct fake_resp *r, int status, json_t *json) {
        r->status = status;
        free(r->body);
        r->body = json ? json_dumps(json, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        if (!r->body) {
                r->status = 500;
                r->body = strdup("");
        }
        r->ctype = "application/json; charset=utf-8";
        json_decref(json);
}

void fake_resp_text(struct fake_resp *r, int status, const char *ctype, const char *text) {
        r->status = status;
        free(r->body);
        r->body = strdup(text ? text : "");
        r->ctype = ctype;
}

static void trace_id(char buf[static 64]) {
        unsigned char raw[24];
        char hex[49];

        if (util_random_bytes(raw, sizeof(raw)) < 0)
                memset(raw, 0, sizeof(raw));
        for (size_t i = 0; i < sizeof(raw); i++)
                snprintf(hex + 2 * i, 3, "%02x", raw[i]);
        snprintf(buf, 64, "00-%.32s-%.16s-00", hex, hex + 32);
}

/* Sets key to a string unless it is NULL or invalid UTF-8 (echoed ids). */
static void set_str(json_t *obj, const char *key, const char *v) {
        json_t *j = v ? json_string(v) : NULL;

        if (j)
                json_object_set_new(obj, key, j);
}

void fake_resp_problem(struct fake_resp *r, int status, const char *title,
                       const char *detail, const char *instance) {
        json_t *j = json_object();
        char tid[64];

        trace_id(tid);
        set_str(j, "type", "https://tools.ietf.org/html/rfc9110#section-15");
        set_str(j, "title", title);
        json_object_set_new(j, "status", json_integer(status));
        set_str(j, "detail", detail ? detail : title);
        if (!json_object_get(j, "detail"))
                set_str(j, "detail", title);
        set_str(j, "instance", instance);
        set_str(j, "traceId", tid);
        fake_resp_json(r, status, j);
        r->ctype = FAKE_PROBLEM_CTYPE;
}

void fake_resp_gateway(struct fake_resp *r, int status, const char *message) {
        fake_resp_json(r, status, json_pack("{s:i s:s}", "statusCode", status, "message", message));
}

void fake_resp_pc_error(struct fake_resp *r, int status, int code, const char *description) {
        fake_resp_json(r, status, json_pack("{s:i s:s s:[] s:s}", "code", code,
                                            "description", description, "data", "source", "PartnerFD"));
        r->echo_ms_ids = true;
}

void fake_resp_done(struct fake_resp *r) {
        util_freep(&r->body);
        util_freep(&r->retry_after);
}

const char *fake_query_get(const struct fake_req *rq, const char *key) {
        size_t kl = strlen(key);

        for (size_t i = 0; i < rq->n_segs; i++)
                if (strncmp(rq->segs[i], key, kl) == 0 && rq->segs[i][kl] == '=')
                        return rq->segs[i] + kl + 1;
        return NULL;
}

static int hexval(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* %XX only: '+' stays '+' (RQL's select=+a relies on that). */
char *fake_url_decode(const char *s, size_t len) {
        char *out = malloc(len + 1), *o = out;

        if (!out)
                return NULL;
        for (size_t i = 0; i < len; i++) {
                if (s[i] == '%' && i + 2 < len &&
                    hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
                        *o++ = (char) (hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
                        i += 2;
                } else
                        *o++ = s[i];
        }
        *o = '\0';
        return out;
}

/* Removes every "x-fake-*" key, recursively. */
void fake_strip_private(json_t *json) {
        const char *key;
        json_t *v;
        void *tmp;
        size_t i;

        if (json_is_object(json)) {
                json_object_foreach_safe(json, tmp, key, v) {
                        if (strncmp(key, "x-fake-", 7) == 0)
                                json_object_del(json, key);
                        else
                                fake_strip_private(v);
                }
        } else if (json_is_array(json)) {
                json_array_foreach(json, i, v)
                        fake_strip_private(v);
        }
}
