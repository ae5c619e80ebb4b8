/* SPDX-License-Identifier: MIT */
/*
 * jsonx: tiny jansson helpers shared by the writers of our own JSON
 * documents (store, status).  Header-only.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "util.h"

/* An ISO 8601 UTC string, or null for 0 ("never / unknown"). */
static inline json_t *jsonx_time(int64_t t) {
        char buf[UTIL_TIME_MAX];
        return t ? json_string(util_format_time(t, buf)) : json_null();
}

static inline json_t *jsonx_str(const char *s) {
        return s ? json_string(s) : json_null();
}

/* json_object_set_new that records a failure (NULL value or OOM) in *ok. */
static inline void jsonx_put(json_t *o, const char *k, json_t *v, bool *ok) {
        if (!v || json_object_set_new(o, k, v) < 0)
                *ok = false;
}
