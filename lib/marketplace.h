/* SPDX-License-Identifier: MIT */
/*
 * marketplace: the SoftwareOne Marketplace orders API client.  Builds
 * requests (RQL, select, paging), parses responses into model structs.
 * All I/O goes through lib/http; results arrive by callback on the loop.
 *
 * Assumptions about the API that public documentation does not confirm are
 * collected in marketplace.c under "ASSUMPTIONS", one named constant each.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "http.h"
#include "model.h"

struct mp_client;

struct mp_options {
        const char *base_url;        /* ".../public/v1" (with or without the suffix) */
        const char *token;           /* API token (secret, copied) */
        const char *const *products; /* optional product filter */
        size_t n_products;
        const char *ca_file;
        int page_size;               /* default and max 100 */
};

int mp_client_new(struct http *h, const struct mp_options *opts, struct mp_client **ret);
struct mp_client *mp_client_free(struct mp_client *c);

/* r < 0: transport error; status: last HTTP status (0 if none); err: one
 * human line describing the failure (NULL on success).  Ownership of the
 * payload passes to the callback only where noted. */

/* Lists every order in one of the given statuses (all pages: the first
 * page gives total, the rest are fetched in parallel).  Orders come with
 * parameters, audit and template ref; relationship_url is what the order
 * itself shows (parameters, error): the template, a separate call, takes
 * precedence for Querying orders.  orders is never NULL (empty on failure).
 * cb may move items (or the whole list) out, leaving zeroed structs behind;
 * marketplace calls order_list_clear() on it after cb returns. */
typedef void (*mp_list_fn)(void *ud, int r, long status, const char *err,
                           struct order_list *orders);
int mp_list_orders(struct mp_client *c, const enum order_status *statuses, size_t n_statuses,
                   mp_list_fn cb, void *ud);

/* GET /commerce/orders/{id}/template: the rendered text (JSON string body
 * decoded, raw text otherwise). */
typedef void (*mp_text_fn)(void *ud, int r, long status, const char *err, const char *text);
int mp_get_template(struct mp_client *c, const char *order_id, mp_text_fn cb, void *ud);

/* GET /commerce/orders/{id} (parameters, audit selected). */
typedef void (*mp_order_fn)(void *ud, int r, long status, const char *err,
                            const struct order *order);
int mp_get_order(struct mp_client *c, const char *order_id, mp_order_fn cb, void *ud);

/* POST /commerce/orders/{id}/process with body {}.  Never retried by http.
 * order is the updated order on 200, NULL otherwise. */
int mp_process_order(struct mp_client *c, const char *order_id, mp_order_fn cb, void *ud);

/* GET /accounts/buyers/{id}: the buyer's contact, if any. */
typedef void (*mp_contact_fn)(void *ud, int r, long status, const char *err,
                              const struct order_contact *contact);
int mp_get_buyer_contact(struct mp_client *c, const char *buyer_id, mp_contact_fn cb, void *ud);

/* ---- pure helpers (unit-tested, fuzzed) ---- */

/* Fills *o from one order object; unknown fields ignored, missing == null.
 * -EBADMSG with *ret_err naming the field when a required one (id, status)
 * is missing or of the wrong type. */
int mp_parse_order(const json_t *obj, struct order *o, char **ret_err);
/* Parses a list page: appends to *orders, sets *ret_total (-1 if absent). */
int mp_parse_order_page(const char *body, size_t len, struct order_list *orders,
                        long *ret_total, char **ret_err);
/* The relationship link of an order's string parameter values and error
 * message: the first reseller link, else the first GDAP link (url.h). */
char *mp_extract_relationship_url_from_order(const json_t *obj);
/* "https://portal.platform.softwareone.com/commerce/orders/ORD-..." */
char *mp_portal_link(const char *portal_base, const char *order_id);
/* true for ORD-dddd-dddd-dddd(-dddd) */
bool mp_order_id_valid(const char *id);

/* "https://host[/public/v1][/]" -> "https://host/public/v1"; NULL on junk. */
char *mp_normalize_base_url(const char *url);
/* The RQL filter for the list query, values double-quoted and
 * percent-encoded: eq(status,"Querying") or
 * and(in(status,("Querying","Draft")),in(agreement.product.id,(...))).
 * NULL on an empty/invalid status set. */
char *mp_build_rql(const enum order_status *statuses, size_t n_statuses,
                   const char *const *products, size_t n_products);
