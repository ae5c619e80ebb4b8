/* SPDX-License-Identifier: MIT */
/*
 * apiutil: small helpers shared by the API clients (marketplace,
 * partnercenter, graph): type-checked JSON field access where a missing,
 * null or wrong-typed field reads as absent, identifier checks, URL paths,
 * and the one reading of the APIs' error bodies (lib/http hands over
 * status, headers and body only and knows no API).
 */
#pragma once

#include <stdbool.h>
#include <stdlib.h>

#include <jansson.h>

#include "http.h"

/* The string / object / array at obj[key]; NULL when obj is not an object
 * or the field is missing, null or of another type. */
const char *api_json_str(const json_t *obj, const char *key);
const json_t *api_json_obj(const json_t *obj, const char *key);
const json_t *api_json_arr(const json_t *obj, const char *key);

/* true for xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx (hex digits, any case). */
bool api_guid_valid(const char *s);

/* The path of an absolute URL, without query or fragment ("/" if none);
 * malloc'd.  Used to name a request in error messages without its query. */
char *api_url_path(const char *url);

/* One human line for a failed API response (transport error or status
 * and body, as lib/http hands them over): "HTTP 409: Order status transition
 * not allowed: Order ORD-... is in status Completed (trace 00-...)".
 * Understands Marketplace problem details (errors as object or array,
 * detail/details), gateway {statusCode,message}, Partner Center {code
 * (number or string), description}, Entra {error,error_description}; other
 * bodies as a clipped, sanitised excerpt.  Never includes headers. */
char *api_describe_error(int r, const struct http_response *resp);

/* Unlinks item from the doubly linked list (fields prev, next) that head
 * (an lvalue) starts; the clients keep their pending requests so. */
#define API_LIST_UNLINK(head, item)                                     \
        do {                                                            \
                if ((item)->prev)                                       \
                        (item)->prev->next = (item)->next;              \
                else                                                    \
                        (head) = (item)->next;                          \
                if ((item)->next)                                       \
                        (item)->next->prev = (item)->prev;              \
        } while (0)

static inline void api_freep(void *p) {
        free(*(void **) p);
}
#define _cleanup_free_ __attribute__((cleanup(api_freep)))
