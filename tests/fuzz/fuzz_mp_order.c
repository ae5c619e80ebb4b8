/* SPDX-License-Identifier: MIT */
/*
 * fuzz_mp_order: a Marketplace order list page (JSON) through
 * mp_parse_order_page(), each data item through mp_parse_order() and
 * mp_extract_relationship_url_from_order(), and the parsed orders through
 * order_copy() and order_customer_key().
 *
 * Properties: no crash, leak or UB; 0 or -EBADMSG (with a one-line
 * message); every parsed order has a valid id, single-line UTF-8 strings,
 * a lower-case GUID tenant id, a plain lower-case domain, plausible
 * contact addresses; a copy equals the original.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "fuzz.h"
#include "marketplace.h"
#include "model.h"

static void check_line(const char *what, const char *s, size_t max) {
        if (!s)
                return;
        size_t n = strlen(s);
        FUZZ_CHECK(n > 0, "%s is empty (absent must be NULL)", what);
        FUZZ_CHECK(n <= max, "%s has %zu bytes (max %zu)", what, n, max);
        FUZZ_CHECK(fuzz_find_ctl(s, false) < 0, "%s has a control character: '%s'", what, s);
        FUZZ_CHECK(fuzz_utf8_valid(s, n), "%s is not UTF-8", what);
}

static void streq_or_null(const char *what, const char *a, const char *b) {
        FUZZ_CHECK((!a && !b) || (a && b && strcmp(a, b) == 0), "copy differs in %s", what);
}

static void check_order(const struct order *o) {
        FUZZ_CHECK(mp_order_id_valid(o->id), "invalid id accepted: '%s'", o->id ? o->id : "(null)");
        FUZZ_CHECK(o->status >= ORDER_STATUS_UNKNOWN && o->status < _ORDER_STATUS_MAX,
                   "status %d", (int) o->status);
        check_line("type", o->type, 4096);
        check_line("product_id", o->product_id, 4096);
        check_line("product_name", o->product_name, 4096);
        check_line("agreement_id", o->agreement_id, 4096);
        check_line("agreement_name", o->agreement_name, 4096);
        check_line("client_name", o->client_name, 4096);
        check_line("buyer_id", o->buyer_id, 4096);
        check_line("buyer_name", o->buyer_name, 4096);
        check_line("company_name", o->company_name, 4096);
        check_line("error_message", o->error_message, 4096);
        check_line("querying_at_raw", o->querying_at_raw, 4096);
        check_line("template_id", o->template_id, 4096);
        check_line("relationship_url", o->relationship_url, 2048);
        if (o->relationship_url)
                FUZZ_CHECK(strncasecmp(o->relationship_url, "https://", 8) == 0 &&
                           !strpbrk(o->relationship_url, " \"'<>`"),
                           "relationship_url '%s'", o->relationship_url);
        if (o->tenant_id)
                FUZZ_CHECK(fuzz_guid_lower(o->tenant_id), "tenant_id '%s'", o->tenant_id);
        if (o->domain) {
                check_line("domain", o->domain, 253);
                for (const char *p = o->domain; *p; p++)
                        FUZZ_CHECK((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
                                   *p == '-' || *p == '.', "domain '%s'", o->domain);
        }
        FUZZ_CHECK(o->n_contacts == 0 || o->contacts, "contacts");
        for (size_t i = 0; i < o->n_contacts; i++) {
                const char *e = o->contacts[i].email;
                FUZZ_CHECK(e && strchr(e, '@'), "contact without address");
                check_line("contact email", e, 254);
                FUZZ_CHECK(!strpbrk(e, " <>,;\"\\"), "contact email '%s'", e);
                check_line("contact name", o->contacts[i].name, 1024);
        }

        char *key = order_customer_key(o);
        if (key)
                check_line("customer key", key, 4096);
        else
                FUZZ_CHECK(!o->tenant_id && !o->domain, "no key for an order with an identity");
        free(key);

        struct order c;
        memset(&c, 0, sizeof(c));
        if (order_copy(&c, o) == 0) {
                streq_or_null("id", c.id, o->id);
                streq_or_null("tenant_id", c.tenant_id, o->tenant_id);
                streq_or_null("domain", c.domain, o->domain);
                streq_or_null("error_message", c.error_message, o->error_message);
                streq_or_null("querying_at_raw", c.querying_at_raw, o->querying_at_raw);
                FUZZ_CHECK(c.n_contacts == o->n_contacts, "copy: contacts");
                for (size_t i = 0; i < c.n_contacts; i++)
                        streq_or_null("contact", c.contacts[i].email, o->contacts[i].email);
                FUZZ_CHECK(c.querying_at == o->querying_at && c.status == o->status, "copy");
        }
        order_clear(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct order_list list = { 0 };
        long total = -2;
        char *err = NULL;
        int r = mp_parse_order_page((const char *) data, size, &list, &total, &err);

        FUZZ_CHECK(r == 0 || r == -EBADMSG, "mp_parse_order_page returned %d", r);
        if (r < 0) {
                FUZZ_CHECK(list.n == 0, "failure with %zu orders", list.n);
                FUZZ_CHECK(err, "-EBADMSG without a message");
                check_line("error", err, 4096);
        } else
                FUZZ_CHECK(total >= -1, "total %ld", total);
        for (size_t i = 0; i < list.n; i++)
                check_order(&list.items[i]);
        free(err);
        order_list_clear(&list);

        /* Each data item (or the whole document) on its own. */
        json_t *root = json_loadb((const char *) data, size, 0, NULL);
        json_t *items = json_object_get(root, "data");
        if (!json_is_array(items)) {
                items = json_array();
                json_array_append(items, root);
        } else
                json_incref(items);
        size_t i;
        json_t *item;
        json_array_foreach(items, i, item) {
                struct order o;
                err = NULL;
                r = mp_parse_order(item, &o, &err);
                FUZZ_CHECK(r == 0 || r == -EBADMSG, "mp_parse_order returned %d", r);
                if (r == 0) {
                        FUZZ_CHECK(!err, "success with a message");
                        check_order(&o);
                        order_clear(&o);
                } else {
                        FUZZ_CHECK(err, "-EBADMSG without a message");
                        check_line("error", err, 4096);
                }
                free(err);

                char *url = mp_extract_relationship_url_from_order(item);
                if (url) {
                        check_line("url", url, 2048);
                        FUZZ_CHECK(strncasecmp(url, "https://", 8) == 0, "url '%s'", url);
                        FUZZ_CHECK(!strpbrk(url, " \"'<>"), "url '%s'", url);
                }
                free(url);
        }
        json_decref(items);
        json_decref(root);
        return 0;
}
