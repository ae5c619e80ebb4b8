/* SPDX-License-Identifier: MIT */
/*
 * The Marketplace and Partner Center clients against the real fake
 * platform (build/fakeplatform) on loopback, through the real lib/http on
 * a libuv loop.  Each test writes its own scenario into a temp dir.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <uv.h>

#include "harness.h"
#include "http.h"
#include "marketplace.h"
#include "partnercenter.h"
#include "url.h"
#include "util.h"

#define MP_TOKEN      "idt:TKN-7777-0001:s3cr3t-api-token"
#define MS_TENANT     "partner.onmicrosoft.com"
#define CLIENT_ID     "5f0c5b2e-9a55-4f7e-8d3e-1c2b3a4d5e6f"
#define CLIENT_SECRET "fake-client-secret"
#define PRD_AZURE     "PRD-1528-2110"
#define PRD_OTHER     "PRD-4444-0000"
#define N_QUERYING    230      /* > 2 pages of 100 with the Azure product */
#define N_OTHER       10       /* Querying, other product */
#define N_DRAFT       7        /* Draft, Azure product */
#define REL_URL       "https://admin.microsoft.com/Adminportal/Home?invType=ResellerRelationship" \
                      "&partnerId=3b33e682-00c3-41ee-9dd2-a548adf56438&msppId=0#/partners/invitation"

#define T_PENDING     "11111111-1111-4111-8111-111111111111"
#define T_ACCEPTED    "22222222-2222-4222-8222-222222222222"
#define T_ADVISOR     "33333333-3333-4333-8333-333333333333"
#define T_FORBIDDEN   "44444444-4444-4444-8444-444444444444"
#define T_PAGED       "55555555-5555-4555-8555-555555555555"
#define PAGED_DOMAIN  "shop.example"
#define N_DECOYS      150      /* accepted customers whose domain starts with PAGED_DOMAIN */

struct env {
        char *dir;
        char *scenario;
        struct harness_fake fake;
        bool fake_up;
        uv_loop_t loop;
        struct http *h;
        uv_timer_t guard;
        bool expired;
        int ticks;
};

/* ---- scenario ---- */

static json_t *order_json(int i, const char *status, const char *product) {
        char id[32], created[64], tenant[40], domain[64], querying[64];
        snprintf(id, sizeof(id), "ORD-%04d-%04d-%04d", 1000 + i / 10000, i % 10000, 7);
        /* creation times increase with i: the list order is i's order */
        snprintf(created, sizeof(created), "2026-07-01T%02d:%02d:%02d.%03dZ", i / 3600 % 24,
                 i / 60 % 60, i % 60, i % 1000);
        snprintf(querying, sizeof(querying), "2026-08-01T09:20:02.%07dZ", i);
        snprintf(tenant, sizeof(tenant), "%08x-0000-4000-8000-%012x", i, i);
        snprintf(domain, sizeof(domain), "Customer%d.onmicrosoft.com", i);
        return json_pack(
                "{s:s s:s s:s s:{s:s s:s} s:{s:s s:s} s:{s:s s:s} s:{s:s} s:{s:s}"
                " s:{s:[{s:s s:s s:s s:s} {s:s s:s s:s s:s}"
                "       {s:s s:s s:s s:{s:s s:s s:s}}]"
                "    s:[{s:s s:s s:s} {s:s s:s s:s s:{s:b}}]}"
                " s:{s:{s:s} s:{s:s}}}",
                "id", id, "type", "Purchase", "status", status,
                "agreement", "id", "AGR-0001-0001", "name", "Agreement",
                "product", "id", product, "name", "Product",
                "buyer", "id", "BUY-1001-0001", "name", "Buyer Ltd",
                "client", "name", "Client Group",
                "template", "id", i % 2 ? "TPL-0000-0000-0001" : "TPL-0000-0000-0002",
                "parameters",
                "ordering",
                "id", "PAR-1528-2110-0038", "externalId", "ExistingDomainName", "type", "SingleLineText",
                "value", domain,
                "id", "PAR-1528-2110-0003", "externalId", "CustomerCompanyName", "type", "SingleLineText",
                "value", "Customer Co",
                "id", "PAR-1528-2110-0005", "externalId", "ContactPerson", "type", "Contact",
                "value", "firstName", "Dana", "lastName", "Admin", "email", "dana@customer.example",
                "fulfillment",
                "id", "PAR-1528-2110-0009", "externalId", "MicrosoftTenantId", "value", tenant,
                "id", "PAR-1528-2110-0099", "externalId", "ResellerRelationshipUrl", "value", REL_URL,
                "constraints", "hidden", 1,
                "audit", "created", "at", created, "querying", "at", querying);
}

static json_t *tenant_json(const char *id, const char *domain, const char *state,
                           const char *relationship, int pending_status) {
        json_t *t = json_pack("{s:s s:s s:s s:s}", "id", id, "domain", domain, "name", domain,
                              "state", state);
        if (relationship)
                json_object_set_new(t, "relationship", json_string(relationship));
        if (pending_status)
                json_object_set_new(t, "pending_status", json_integer(pending_status));
        return t;
}

static int write_scenario(const char *path, int expires_in) {
        json_t *orders = json_array(), *tenants = json_array();
        int i = 0;
        for (int k = 0; k < N_QUERYING; k++, i++) {
                json_t *o = order_json(i, "Querying", PRD_AZURE);
                if (i == 3)     /* this one's template comes as raw text/markdown */
                        json_object_set_new(o, "x-fake-template-raw", json_true());
                json_array_append_new(orders, o);
        }
        for (int k = 0; k < N_OTHER; k++, i++)
                json_array_append_new(orders, order_json(i, "Querying", PRD_OTHER));
        for (int k = 0; k < N_DRAFT; k++, i++)
                json_array_append_new(orders, order_json(i, "Draft", PRD_AZURE));

        json_array_append_new(tenants, tenant_json(T_PENDING, "pending.example", "pending", NULL, 0));
        json_array_append_new(tenants, tenant_json(T_ACCEPTED, "accepted.example", "accepted",
                                                   "reseller", 0));
        json_array_append_new(tenants, tenant_json(T_ADVISOR, "advisor.example", "accepted",
                                                   "advisor", 0));
        json_array_append_new(tenants, tenant_json(T_FORBIDDEN, "forbidden.example", "pending",
                                                   NULL, 403));
        for (int k = 0; k < N_DECOYS; k++) {
                char id[40], dom[64];
                snprintf(id, sizeof(id), "%08x-aaaa-4aaa-8aaa-%012x", k, k);
                snprintf(dom, sizeof(dom), PAGED_DOMAIN "%03d.example", k);
                json_array_append_new(tenants, tenant_json(id, dom, "accepted", "reseller", 0));
        }
        json_array_append_new(tenants, tenant_json(T_PAGED, "Shop.Example", "accepted",
                                                   "reseller", 0));

        json_t *root = json_pack(
                "{s:{s:s} s:{s:s s:s s:s s:i} s:o s:{s:s s:s}"
                " s:[{s:s s:s s:{s:s s:s}}] s:o}",
                "marketplace", "token", MP_TOKEN,
                "microsoft", "tenant", MS_TENANT, "client_id", CLIENT_ID,
                "client_secret", CLIENT_SECRET, "expires_in", expires_in,
                "tenants", tenants,
                "templates",
                "TPL-0000-0000-0001", "## Required action\n\nOpen [the link]({{ PAR-1528-2110-0099 }}) "
                                      "and accept the relationship.\n",
                "TPL-0000-0000-0002", "<p>Please <a href=\"{{ PAR-1528-2110-0099 }}\">accept</a>.</p>",
                "buyers", "id", "BUY-1001-0001", "name", "Buyer Ltd", "contact",
                "firstName", "Bea", "email", "bea@buyer.example",
                "orders", orders);
        if (!root)
                return -ENOMEM;
        int r = json_dump_file(root, path, JSON_COMPACT) < 0 ? -EIO : 0;
        json_decref(root);
        return r;
}

/* ---- loop plumbing ---- */

static void on_guard(uv_timer_t *t) {
        struct env *e = t->data;
        if (++e->ticks >= 3000)
                e->expired = true;
}

static int setup(void **state) {
        struct env *e = calloc(1, sizeof(*e));
        if (!e)
                return -1;
        e->dir = harness_tmpdir();
        if (!e->dir || asprintf(&e->scenario, "%s/scenario.json", e->dir) < 0 ||
            write_scenario(e->scenario, 3600) < 0 || harness_fake_start(e->scenario, &e->fake) < 0)
                return -1;
        e->fake_up = true;
        if (uv_loop_init(&e->loop) < 0)
                return -1;
        struct http_options o = { .max_per_host = 8, .backoff_base_ms = 50, .backoff_max_ms = 200 };
        if (http_new(&e->loop, &o, &e->h) < 0)
                return -1;
        uv_timer_init(&e->loop, &e->guard);
        e->guard.data = e;
        *state = e;
        return 0;
}

static int teardown(void **state) {
        struct env *e = *state;
        if (!e)
                return 0;
        e->h = http_free(e->h);
        uv_close((uv_handle_t *) &e->guard, NULL);
        uv_run(&e->loop, UV_RUN_DEFAULT);
        int r = uv_loop_close(&e->loop);
        int st = e->fake_up ? harness_fake_stop(&e->fake) : 0;
        harness_rmrf(e->dir);
        free(e->dir);
        free(e->scenario);
        free(e);
        return r == 0 && st == 0 ? 0 : -1;
}

/* Runs the loop until *done reaches target (at most 30 s).  The guard
 * ticks every 10 ms: a result delivered from a timer would otherwise leave
 * uv_run(UV_RUN_ONCE) blocked in its poll phase after the callback. */
static void run_until(struct env *e, const int *done, int target) {
        e->expired = false;
        e->ticks = 0;
        uv_timer_start(&e->guard, on_guard, 10, 10);
        while (*done < target && !e->expired)
                uv_run(&e->loop, UV_RUN_ONCE);
        uv_timer_stop(&e->guard);
        assert_false(e->expired);
}

static const char *fake_url(struct env *e) {
        return e->fake.base_url;
}

/* ---- Marketplace ---- */

static struct mp_client *mp_new(struct env *e, const char *token, const char *const *products,
                                size_t n_products, bool with_suffix) {
        char base[128];
        snprintf(base, sizeof(base), "%s%s", fake_url(e), with_suffix ? "/public/v1/" : "");
        struct mp_options o = {
                .base_url = base, .token = token, .products = products, .n_products = n_products,
        };
        struct mp_client *c = NULL;
        assert_int_equal(mp_client_new(e->h, &o, &c), 0);
        return c;
}

struct list_res {
        int done;
        int r;
        long status;
        char *err;
        struct order_list orders;
};

static void on_list(void *ud, int r, long status, const char *err, struct order_list *orders) {
        struct list_res *res = ud;
        res->done++;
        res->r = r;
        res->status = status;
        res->err = util_strdup0(err);
        res->orders = *orders;          /* move the items out */
        *orders = (struct order_list) { 0 };
}

static void list_res_clear(struct list_res *res) {
        order_list_clear(&res->orders);
        free(res->err);
        *res = (struct list_res) { 0 };
}

/* Index i of an order id built by order_json(). */
static int order_index(const char *id) {
        int a, b, c;
        if (sscanf(id, "ORD-%4d-%4d-%4d", &a, &b, &c) != 3)
                return -1;
        return (a - 1000) * 10000 + b;
}

static void test_list_paged_parallel(void **state) {
        struct env *e = *state;
        struct mp_client *c = mp_new(e, MP_TOKEN, NULL, 0, false);
        enum order_status q[] = { ORDER_STATUS_QUERYING };
        struct list_res res = { 0 };

        /* the second page answers slowly: were the pages fetched one after
         * the other, the third could not come first */
        assert_int_equal(harness_fake_fault(&e->fake, "{\"route\":\"orders\",\"match\":\"offset=100\","
                                            "\"action\":\"delay\",\"delay_ms\":1500}"), 0);
        assert_int_equal(mp_list_orders(c, q, 1, on_list, &res), 0);
        run_until(e, &res.done, 1);
        assert_int_equal(res.r, 0);
        assert_null(res.err);
        assert_int_equal(res.status, 200);
        assert_int_equal(res.orders.n, N_QUERYING + N_OTHER);
        for (size_t i = 0; i < res.orders.n; i++) {
                const struct order *o = &res.orders.items[i];
                /* stable order: by page offset, i.e. by creation time */
                assert_int_equal(order_index(o->id), (int) i);
                assert_int_equal(o->status, ORDER_STATUS_QUERYING);
                /* parameters and audit were selected */
                assert_non_null(o->tenant_id);
                assert_non_null(o->domain);
                assert_non_null(o->querying_at_raw);
                assert_true(o->created_at > 0);
                assert_int_equal(o->n_contacts, 1);
                /* what the order itself shows: the hidden URL parameter */
                assert_non_null(o->relationship_url);
                assert_string_equal(o->relationship_url, REL_URL);
        }

        json_t *log = harness_fake_log(&e->fake), *rec;
        size_t i;
        int pages = 0;
        long long seq100 = -1, seq200 = -1;
        json_array_foreach(log, i, rec) {
                const char *path = json_string_value(json_object_get(rec, "path"));
                const char *query = json_string_value(json_object_get(rec, "query"));
                if (strcmp(path, "/public/v1/commerce/orders") != 0)
                        continue;
                pages++;
                assert_non_null(strstr(query, "eq(status,"));
                assert_non_null(strstr(query, "select=+parameters,+audit"));
                assert_non_null(strstr(query, "order=audit.created.at"));
                assert_non_null(strstr(query, "limit=100"));
                assert_null(strstr(query, "rql="));
                long long seq = json_integer_value(json_object_get(rec, "seq"));
                if (strstr(query, "offset=100"))
                        seq100 = seq;
                if (strstr(query, "offset=200"))
                        seq200 = seq;
        }
        json_decref(log);
        assert_int_equal(pages, 3);
        assert_true(seq100 > 0 && seq200 > 0);
        assert_true(seq200 < seq100);   /* page 3 was answered before the slow page 2 */
        list_res_clear(&res);
        mp_client_free(c);
}

static void test_list_product_filter(void **state) {
        struct env *e = *state;
        const char *prods[] = { PRD_AZURE };
        struct mp_client *c = mp_new(e, MP_TOKEN, prods, 1, true);
        enum order_status q[] = { ORDER_STATUS_QUERYING };
        enum order_status qd[] = { ORDER_STATUS_QUERYING, ORDER_STATUS_DRAFT };
        struct list_res res = { 0 };

        assert_int_equal(mp_list_orders(c, q, 1, on_list, &res), 0);
        run_until(e, &res.done, 1);
        assert_int_equal(res.r, 0);
        assert_int_equal(res.orders.n, N_QUERYING);
        for (size_t i = 0; i < res.orders.n; i++)
                assert_string_equal(res.orders.items[i].product_id, PRD_AZURE);
        list_res_clear(&res);

        assert_int_equal(mp_list_orders(c, qd, 2, on_list, &res), 0);
        run_until(e, &res.done, 1);
        assert_int_equal(res.r, 0);
        assert_int_equal(res.orders.n, N_QUERYING + N_DRAFT);
        size_t drafts = 0;
        for (size_t i = 0; i < res.orders.n; i++)
                drafts += res.orders.items[i].status == ORDER_STATUS_DRAFT;
        assert_int_equal(drafts, N_DRAFT);
        list_res_clear(&res);
        mp_client_free(c);
}

static void test_list_unauthorized(void **state) {
        struct env *e = *state;
        struct mp_client *c = mp_new(e, "idt:TKN-0000-0000:wrong-token", NULL, 0, false);
        enum order_status q[] = { ORDER_STATUS_QUERYING };
        struct list_res res = { 0 };

        assert_int_equal(mp_list_orders(c, q, 1, on_list, &res), 0);
        run_until(e, &res.done, 1);
        assert_true(res.r < 0);
        assert_int_equal(res.status, 401);
        assert_int_equal(res.orders.n, 0);
        assert_non_null(res.err);
        assert_non_null(strstr(res.err, "GET /public/v1/commerce/orders: HTTP 401"));
        assert_null(strstr(res.err, "wrong-token"));
        assert_null(strstr(res.err, "eq("));     /* no query in the message */
        list_res_clear(&res);
        mp_client_free(c);
}

/* A body of n minimal orders with ids 0..n-1 and the given $meta. */
static char *page_body(int n, json_t *meta) {
        json_t *data = json_array();
        for (int i = 0; i < n; i++) {
                char id[32];
                snprintf(id, sizeof(id), "ORD-%04d-%04d-%04d", 1000 + i / 10000, i % 10000, 7);
                json_array_append_new(data, json_pack("{s:s s:s}", "id", id, "status", "Querying"));
        }
        json_t *root = json_pack("{s:o}", "data", data);
        if (meta)
                json_object_set_new(root, "$meta", meta);
        char *s = json_dumps(root, JSON_COMPACT);
        json_decref(root);
        return s;
}

/* Adds a one-shot 200 fault on the list route for the page at offset. */
static void fault_page(struct env *e, const char *offset_match, const char *body) {
        json_t *f = json_pack("{s:s s:s s:i s:s}", "route", "orders", "match", offset_match,
                              "status", 200, "body", body);
        char *js = json_dumps(f, JSON_COMPACT);
        assert_int_equal(harness_fake_fault(&e->fake, js), 0);
        free(js);
        json_decref(f);
}

static void test_list_without_total(void **state) {
        struct env *e = *state;
        struct mp_client *c = mp_new(e, MP_TOKEN, NULL, 0, false);
        enum order_status q[] = { ORDER_STATUS_QUERYING };
        struct list_res res = { 0 };

        /* the first page has no total: the rest comes one page at a time
         * until a short page (the real pages 2 and 3 follow) */
        char *body = page_body(100, NULL);
        fault_page(e, "offset=0", body);
        free(body);
        assert_int_equal(mp_list_orders(c, q, 1, on_list, &res), 0);
        run_until(e, &res.done, 1);
        assert_int_equal(res.r, 0);
        assert_int_equal(res.orders.n, N_QUERYING + N_OTHER);
        for (size_t i = 0; i < res.orders.n; i++)
                assert_int_equal(order_index(res.orders.items[i].id), (int) i);
        list_res_clear(&res);
        assert_int_equal(harness_fake_count(&e->fake, "GET", "/commerce/orders"), 3);

        /* a hostile total is refused after one request */
        body = page_body(1, json_pack("{s:{s:i s:i s:I}}", "pagination", "offset", 0, "limit", 100,
                                      "total", (json_int_t) 4000000000LL));
        fault_page(e, "offset=0", body);
        free(body);
        assert_int_equal(mp_list_orders(c, q, 1, on_list, &res), 0);
        run_until(e, &res.done, 1);
        assert_int_equal(res.r, -E2BIG);
        assert_int_equal(res.orders.n, 0);
        assert_non_null(strstr(res.err, "exceeds"));
        list_res_clear(&res);
        assert_int_equal(harness_fake_count(&e->fake, "GET", "/commerce/orders"), 4);

        /* junk instead of a page */
        fault_page(e, "offset=0", "<html>gateway</html>");
        assert_int_equal(mp_list_orders(c, q, 1, on_list, &res), 0);
        run_until(e, &res.done, 1);
        assert_int_equal(res.r, -EBADMSG);
        assert_non_null(strstr(res.err, "GET /public/v1/commerce/orders: order list: invalid JSON"));
        list_res_clear(&res);

        /* a failing later page fails the whole list (after http's retries) */
        assert_int_equal(harness_fake_fault(&e->fake, "{\"route\":\"orders\",\"match\":\"offset=200\","
                                            "\"status\":500,\"times\":0}"), 0);
        assert_int_equal(mp_list_orders(c, q, 1, on_list, &res), 0);
        run_until(e, &res.done, 1);
        assert_true(res.r < 0);
        assert_int_equal(res.status, 500);
        assert_int_equal(res.orders.n, 0);
        assert_non_null(strstr(res.err, "HTTP 500"));
        list_res_clear(&res);
        mp_client_free(c);
}

struct text_res {
        int done;
        int r;
        long status;
        char *text;
        char *err;
};

static void on_text(void *ud, int r, long status, const char *err, const char *text) {
        struct text_res *res = ud;
        res->done++;
        res->r = r;
        res->status = status;
        res->text = util_strdup0(text);
        res->err = util_strdup0(err);
}

static void test_template(void **state) {
        struct env *e = *state;
        struct mp_client *c = mp_new(e, MP_TOKEN, NULL, 0, false);
        /* order 1: markdown template, order 2: HTML template (JSON-string
         * bodies), order 3: markdown as a raw text body */
        const char *ids[] = { "ORD-1000-0001-0007", "ORD-1000-0002-0007", "ORD-1000-0003-0007" };
        for (size_t i = 0; i < 3; i++) {
                struct text_res res = { 0 };
                assert_int_equal(mp_get_template(c, ids[i], on_text, &res), 0);
                run_until(e, &res.done, 1);
                assert_int_equal(res.r, 0);
                assert_int_equal(res.status, 200);
                assert_non_null(res.text);
                assert_null(strstr(res.text, "{{"));
                assert_true(res.text[0] == '#' || res.text[0] == '<');  /* decoded, not "\"..." */
                char *u = url_link_extract(res.text);
                assert_non_null(u);
                assert_string_equal(u, REL_URL);
                free(u);
                free(res.text);
                free(res.err);
        }
        struct text_res res = { 0 };
        assert_int_equal(mp_get_template(c, "ORD-9999-9999-9999", on_text, &res), 0);
        run_until(e, &res.done, 1);
        assert_true(res.r < 0);
        assert_int_equal(res.status, 404);
        assert_non_null(strstr(res.err, "GET /public/v1/commerce/orders/ORD-9999-9999-9999/template: HTTP 404"));
        free(res.text);
        free(res.err);
        assert_int_equal(mp_get_template(c, "ORD-1/../../x", on_text, &res), -EINVAL);
        mp_client_free(c);
}

struct order_res {
        int done;
        int r;
        long status;
        char *err;
        struct order o;
};

static void on_order(void *ud, int r, long status, const char *err, const struct order *o) {
        struct order_res *res = ud;
        res->done++;
        res->r = r;
        res->status = status;
        res->err = util_strdup0(err);
        if (o)
                assert_int_equal(order_copy(&res->o, o), 0);
}

static void order_res_clear(struct order_res *res) {
        order_clear(&res->o);
        free(res->err);
        *res = (struct order_res) { 0 };
}

static void test_get_and_process(void **state) {
        struct env *e = *state;
        struct mp_client *c = mp_new(e, MP_TOKEN, NULL, 0, false);
        const char *id = "ORD-1000-0005-0007";
        struct order_res res = { 0 };

        assert_int_equal(mp_get_order(c, id, on_order, &res), 0);
        run_until(e, &res.done, 1);
        assert_int_equal(res.r, 0);
        assert_string_equal(res.o.id, id);
        assert_int_equal(res.o.status, ORDER_STATUS_QUERYING);
        assert_string_equal(res.o.tenant_id, "00000005-0000-4000-8000-000000000005");
        assert_string_equal(res.o.domain, "customer5.onmicrosoft.com");
        assert_string_equal(res.o.company_name, "Customer Co");
        assert_string_equal(res.o.querying_at_raw, "2026-08-01T09:20:02.0000005Z");
        assert_true(res.o.querying_at > 0);
        assert_string_equal(res.o.template_id, "TPL-0000-0000-0001");
        order_res_clear(&res);

        /* process: 200 + the updated order */
        assert_int_equal(mp_process_order(c, id, on_order, &res), 0);
        run_until(e, &res.done, 1);
        assert_int_equal(res.r, 0);
        assert_int_equal(res.status, 200);
        assert_int_equal(res.o.status, ORDER_STATUS_PROCESSING);
        order_res_clear(&res);
        char *st = harness_fake_order_status(&e->fake, id);
        assert_string_equal(st, "Processing");
        free(st);

        /* again: 409 with the problem-details text, never retried */
        assert_int_equal(mp_process_order(c, id, on_order, &res), 0);
        run_until(e, &res.done, 1);
        assert_true(res.r < 0);
        assert_int_equal(res.status, 409);
        assert_null(res.o.id);
        assert_non_null(res.err);
        assert_non_null(strstr(res.err, "POST /public/v1/commerce/orders/ORD-1000-0005-0007/process: HTTP 409"));
        assert_non_null(strstr(res.err, "is in status Processing"));
        order_res_clear(&res);
        assert_int_equal(harness_fake_count(&e->fake, "POST", "/process"), 2);

        /* a 503 on POST is not retried either */
        assert_int_equal(harness_fake_fault(&e->fake, "{\"route\":\"process\",\"status\":503}"), 0);
        assert_int_equal(mp_process_order(c, "ORD-1000-0006-0007", on_order, &res), 0);
        run_until(e, &res.done, 1);
        assert_int_equal(res.status, 503);
        assert_true(res.r < 0);
        order_res_clear(&res);
        assert_int_equal(harness_fake_count(&e->fake, "POST", "/process"), 3);
        mp_client_free(c);
}

struct contact_res {
        int done;
        int r;
        bool have;
        char *name, *email;
};

static void on_contact(void *ud, int r, long status, const char *err, const struct order_contact *ct) {
        struct contact_res *res = ud;
        res->done++;
        res->r = r;
        res->have = ct != NULL;
        if (ct) {
                res->name = util_strdup0(ct->name);
                res->email = util_strdup0(ct->email);
        }
}

static void test_buyer_contact(void **state) {
        struct env *e = *state;
        struct mp_client *c = mp_new(e, MP_TOKEN, NULL, 0, false);
        struct contact_res res = { 0 };
        assert_int_equal(mp_get_buyer_contact(c, "BUY-1001-0001", on_contact, &res), 0);
        run_until(e, &res.done, 1);
        assert_int_equal(res.r, 0);
        assert_true(res.have);
        assert_string_equal(res.name, "Bea");
        assert_string_equal(res.email, "bea@buyer.example");
        free(res.name);
        free(res.email);
        res = (struct contact_res) { 0 };
        assert_int_equal(mp_get_buyer_contact(c, "BUY-0000-0404", on_contact, &res), 0);
        run_until(e, &res.done, 1);
        assert_true(res.r < 0);
        assert_false(res.have);
        mp_client_free(c);
}

/* A client freed with requests in flight: no callback, no leak. */
static void test_mp_free_in_flight(void **state) {
        struct env *e = *state;
        struct mp_client *c = mp_new(e, MP_TOKEN, NULL, 0, false);
        enum order_status q[] = { ORDER_STATUS_QUERYING };
        struct list_res res = { 0 };
        struct text_res tres = { 0 };
        assert_int_equal(mp_list_orders(c, q, 1, on_list, &res), 0);
        assert_int_equal(mp_get_template(c, "ORD-1000-0001-0007", on_text, &tres), 0);
        mp_client_free(c);
        while (http_pending(e->h) > 0)
                uv_run(&e->loop, UV_RUN_ONCE);
        assert_int_equal(res.done, 0);
        assert_int_equal(tres.done, 0);
}

/* ---- Partner Center ---- */

struct check_res {
        int done;
        int r;
        enum rel_state state;
        long status;
        bool config_error;
        char *tenant_id, *relationship, *error;
};

static int checks_done;   /* every on_check call */

static void on_check(void *ud, int r, const struct pc_check_result *res) {
        struct check_res *c = ud;
        checks_done++;
        c->done++;
        c->r = r;
        c->state = res->state;
        c->status = res->status;
        c->config_error = res->config_error;
        c->tenant_id = util_strdup0(res->tenant_id);
        c->relationship = util_strdup0(res->relationship);
        c->error = util_strdup0(res->error);
}

static void check_res_clear(struct check_res *c) {
        free(c->tenant_id);
        free(c->relationship);
        free(c->error);
        *c = (struct check_res) { 0 };
}

static struct pc_client *pc_new_tenant(struct env *e, const char *tenant, const char *secret,
                                       int endpoint) {
        char api[128];
        snprintf(api, sizeof(api), "%s/v1", fake_url(e));
        struct pc_options o = {
                .login_url = fake_url(e), .api_url = api, .tenant = tenant,
                .client_id = CLIENT_ID, .client_secret = secret, .token_endpoint = endpoint,
        };
        struct pc_client *c = NULL;
        assert_int_equal(pc_client_new(e->h, &o, &c), 0);
        return c;
}

static struct pc_client *pc_new(struct env *e, const char *secret, int endpoint) {
        return pc_new_tenant(e, MS_TENANT, secret, endpoint);
}

static void check_one(struct env *e, struct pc_client *c, const char *tenant, const char *domain,
                      struct check_res *res) {
        *res = (struct check_res) { 0 };
        assert_int_equal(pc_check_customer(c, tenant, domain, on_check, res), 0);
        run_until(e, &res->done, 1);
}

static void test_pc_token_cached(void **state) {
        struct env *e = *state;
        struct pc_client *c = pc_new(e, CLIENT_SECRET, 1);
        struct check_res res[6] = { 0 };

        /* six checks at once share one token request */
        checks_done = 0;
        for (int i = 0; i < 6; i++)
                assert_int_equal(pc_check_customer(c, i % 2 ? T_ACCEPTED : T_PENDING, NULL,
                                                   on_check, &res[i]), 0);
        checks_done = 0;
        run_until(e, &checks_done, 6);
        for (int i = 0; i < 6; i++) {
                assert_int_equal(res[i].done, 1);
                if (i % 2) {
                        assert_int_equal(res[i].r, 0);
                        assert_int_equal(res[i].state, REL_ACCEPTED);
                        assert_string_equal(res[i].tenant_id, T_ACCEPTED);
                        assert_string_equal(res[i].relationship, "reseller");
                        assert_int_equal(res[i].status, 200);
                } else {
                        assert_int_equal(res[i].r, 0);
                        assert_int_equal(res[i].state, REL_PENDING);
                        assert_int_equal(res[i].status, 404);
                        assert_null(res[i].error);
                }
                check_res_clear(&res[i]);
        }
        /* and later checks reuse it */
        check_one(e, c, T_ACCEPTED, NULL, &res[0]);
        assert_int_equal(res[0].state, REL_ACCEPTED);
        check_res_clear(&res[0]);
        assert_int_equal(harness_fake_count(&e->fake, "POST", "/oauth2/token"), 1);

        /* every API call carried MS-RequestId and MS-CorrelationId (one per check) */
        json_t *log = harness_fake_log(&e->fake), *rec;
        size_t i;
        int calls = 0;
        json_array_foreach(log, i, rec) {
                const char *path = json_string_value(json_object_get(rec, "path"));
                if (strncmp(path, "/v1/customers", 13) != 0)
                        continue;
                calls++;
                const char *rid = json_string_value(json_object_get(rec, "ms_request_id"));
                const char *cid = json_string_value(json_object_get(rec, "ms_correlation_id"));
                assert_non_null(rid);
                assert_non_null(cid);
                assert_int_equal(strlen(rid), 36);
                assert_int_equal(strlen(cid), 36);
                assert_string_equal(json_string_value(json_object_get(rec, "authorization_kind")),
                                    "bearer-ok");
        }
        json_decref(log);
        assert_int_equal(calls, 7);
        pc_client_free(c);
}

static void test_pc_401_refresh(void **state) {
        struct env *e = *state;
        struct pc_client *c = pc_new(e, CLIENT_SECRET, 2);   /* v2 endpoint, integer expires_in */
        struct check_res res;

        check_one(e, c, T_ACCEPTED, NULL, &res);
        assert_int_equal(res.state, REL_ACCEPTED);
        check_res_clear(&res);
        assert_int_equal(harness_fake_count(&e->fake, "POST", "/oauth2/v2.0/token"), 1);

        /* the API rejects the token once: refresh once, retry once */
        assert_int_equal(harness_fake_fault(&e->fake, "{\"route\":\"customer\",\"status\":401,"
                                            "\"body\":\"{\\\"code\\\":800001}\"}"), 0);
        check_one(e, c, T_ACCEPTED, NULL, &res);
        assert_int_equal(res.r, 0);
        assert_int_equal(res.state, REL_ACCEPTED);
        check_res_clear(&res);
        assert_int_equal(harness_fake_count(&e->fake, "POST", "/oauth2/v2.0/token"), 2);

        /* rejected twice: one refresh, then REL_UNKNOWN with the error */
        assert_int_equal(harness_fake_fault(&e->fake, "{\"route\":\"customer\",\"status\":401,"
                                            "\"times\":2}"), 0);
        check_one(e, c, T_ACCEPTED, NULL, &res);
        assert_true(res.r < 0);
        assert_int_equal(res.state, REL_UNKNOWN);
        assert_int_equal(res.status, 401);
        assert_false(res.config_error);
        assert_non_null(strstr(res.error, "GET /v1/customers/" T_ACCEPTED ": HTTP 401"));
        check_res_clear(&res);
        assert_int_equal(harness_fake_count(&e->fake, "POST", "/oauth2/v2.0/token"), 3);
        pc_client_free(c);
}

static void test_pc_pending_then_accepted(void **state) {
        struct env *e = *state;
        struct pc_client *c = pc_new(e, CLIENT_SECRET, 1);
        struct check_res res;

        check_one(e, c, T_PENDING, NULL, &res);
        assert_int_equal(res.state, REL_PENDING);
        check_res_clear(&res);
        assert_int_equal(harness_fake_accept(&e->fake, T_PENDING), 0);
        check_one(e, c, T_PENDING, NULL, &res);
        assert_int_equal(res.state, REL_ACCEPTED);
        assert_string_equal(res.tenant_id, T_PENDING);
        check_res_clear(&res);

        /* 403 is pending too; a 200 as advisor is not acceptance */
        check_one(e, c, T_FORBIDDEN, NULL, &res);
        assert_int_equal(res.state, REL_PENDING);
        assert_int_equal(res.status, 403);
        check_res_clear(&res);
        check_one(e, c, T_ADVISOR, NULL, &res);
        assert_int_equal(res.state, REL_PENDING);
        assert_int_equal(res.status, 200);
        assert_string_equal(res.relationship, "advisor");
        check_res_clear(&res);

        /* a 500 after http's retries: unknown, with the error */
        assert_int_equal(harness_fake_fault(&e->fake, "{\"route\":\"customer\",\"status\":500,"
                                            "\"times\":0}"), 0);
        check_one(e, c, T_ACCEPTED, NULL, &res);
        assert_int_equal(res.state, REL_UNKNOWN);
        assert_int_equal(res.status, 500);
        assert_non_null(res.error);
        check_res_clear(&res);
        assert_int_equal(pc_check_customer(c, "not-a-guid", NULL, on_check, &res), -EINVAL);
        assert_int_equal(pc_check_customer(c, NULL, "bad domain", on_check, &res), -EINVAL);
        pc_client_free(c);
}

static void test_pc_domain_paged(void **state) {
        struct env *e = *state;
        struct pc_client *c = pc_new(e, CLIENT_SECRET, 1);
        struct check_res res;

        /* the exact match sits on the second page, behind 150 prefix matches */
        check_one(e, c, NULL, "shop.EXAMPLE", &res);
        assert_int_equal(res.r, 0);
        assert_int_equal(res.state, REL_ACCEPTED);
        assert_string_equal(res.tenant_id, T_PAGED);
        check_res_clear(&res);

        json_t *log = harness_fake_log(&e->fake), *rec;
        size_t i;
        int first = 0, next = 0;
        json_array_foreach(log, i, rec) {
                const char *path = json_string_value(json_object_get(rec, "path"));
                const char *query = json_string_value(json_object_get(rec, "query"));
                if (strcmp(path, "/v1/customers") != 0)
                        continue;
                assert_int_equal(json_integer_value(json_object_get(rec, "status")), 200);
                if (strstr(query, "seekOperation=Next")) {
                        next++;
                        assert_true(json_is_true(json_object_get(rec, "continuation")));
                } else {
                        first++;
                        assert_non_null(strstr(query, "filter=%7B%22Field%22%3A%22Domain%22%2C"
                                                      "%22Value%22%3A%22shop.example%22%2C"));
                        assert_false(json_is_true(json_object_get(rec, "continuation")));
                }
        }
        json_decref(log);
        assert_int_equal(first, 1);
        assert_int_equal(next, 1);

        /* only prefix matches: not a customer (yet) */
        check_one(e, c, NULL, "shop.exam", &res);
        assert_int_equal(res.state, REL_PENDING);
        assert_null(res.tenant_id);
        check_res_clear(&res);
        /* a pending tenant is not listed */
        check_one(e, c, NULL, "pending.example", &res);
        assert_int_equal(res.state, REL_PENDING);
        check_res_clear(&res);
        pc_client_free(c);
}

static void test_pc_invalid_client(void **state) {
        struct env *e = *state;
        struct pc_client *c = pc_new(e, "wrong-secret-value", 1);
        struct check_res res;

        check_one(e, c, T_ACCEPTED, NULL, &res);
        assert_true(res.r < 0);
        assert_int_equal(res.state, REL_UNKNOWN);
        assert_true(res.config_error);
        assert_int_equal(res.status, 401);
        assert_non_null(res.error);
        assert_non_null(strstr(res.error, "invalid_client"));
        assert_non_null(strstr(res.error, "AADSTS7000215"));
        assert_null(strstr(res.error, "wrong-secret-value"));
        assert_null(strchr(res.error, '\n'));
        check_res_clear(&res);
        assert_int_equal(harness_fake_count(&e->fake, "POST", "/oauth2/token"), 1);

        /* no hammering: the next checks fail at once, without a request */
        for (int i = 0; i < 3; i++) {
                check_one(e, c, i ? T_PENDING : T_ACCEPTED, NULL, &res);
                assert_int_equal(res.state, REL_UNKNOWN);
                assert_true(res.config_error);
                assert_non_null(strstr(res.error, "invalid_client"));
                check_res_clear(&res);
        }
        check_one(e, c, NULL, "accepted.example", &res);
        assert_true(res.config_error);
        check_res_clear(&res);
        assert_int_equal(harness_fake_count(&e->fake, "POST", "/oauth2/token"), 1);
        assert_int_equal(harness_fake_count(&e->fake, NULL, "/v1/customers"), 0);

        /* a wrong partner tenant is a configuration error as well */
        struct pc_client *c2 = pc_new_tenant(e, "wrong.onmicrosoft.com", CLIENT_SECRET, 1);
        check_one(e, c2, T_ACCEPTED, NULL, &res);
        assert_true(res.config_error);
        assert_int_equal(res.status, 400);
        assert_non_null(strstr(res.error, "POST /wrong.onmicrosoft.com/oauth2/token: HTTP 400: "
                                          "invalid_request: AADSTS90002"));
        check_res_clear(&res);
        pc_client_free(c2);

        /* freed with a deferred completion pending: no callback */
        res = (struct check_res) { 0 };
        assert_int_equal(pc_check_customer(c, T_ACCEPTED, NULL, on_check, &res), 0);
        pc_client_free(c);
        uv_run(&e->loop, UV_RUN_NOWAIT);
        assert_int_equal(res.done, 0);
}

static void on_sleep(uv_timer_t *t) {
        (*(int *) t->data)++;
}

/* Waits at least ms on the loop. */
static void run_for(struct env *e, uint64_t ms) {
        uv_timer_t t;
        int fired = 0;
        uv_timer_init(&e->loop, &t);
        t.data = &fired;
        uv_timer_start(&t, on_sleep, ms, 0);
        run_until(e, &fired, 1);
        uv_close((uv_handle_t *) &t, NULL);
        uv_run(&e->loop, UV_RUN_NOWAIT);
}

static void test_pc_short_token(void **state) {
        struct env *e = *state;
        /* restart the fake with 2 s tokens: refreshed at half-life */
        assert_int_equal(harness_fake_stop(&e->fake), 0);
        e->fake_up = false;
        assert_int_equal(write_scenario(e->scenario, 2), 0);
        assert_int_equal(harness_fake_start(e->scenario, &e->fake), 0);
        e->fake_up = true;

        struct pc_client *c = pc_new(e, CLIENT_SECRET, 1);
        struct check_res res;
        check_one(e, c, T_ACCEPTED, NULL, &res);
        assert_int_equal(res.state, REL_ACCEPTED);
        check_res_clear(&res);
        check_one(e, c, T_ACCEPTED, NULL, &res);
        check_res_clear(&res);
        assert_int_equal(harness_fake_count(&e->fake, "POST", "/oauth2/token"), 1);
        run_for(e, 1100);
        check_one(e, c, T_ACCEPTED, NULL, &res);
        assert_int_equal(res.state, REL_ACCEPTED);
        check_res_clear(&res);
        assert_int_equal(harness_fake_count(&e->fake, "POST", "/oauth2/token"), 2);
        pc_client_free(c);
}

/* A client freed while a token request and checks are in flight. */
static void test_pc_free_in_flight(void **state) {
        struct env *e = *state;
        struct pc_client *c = pc_new(e, CLIENT_SECRET, 1);
        struct check_res res[2] = { 0 };
        assert_int_equal(pc_check_customer(c, T_ACCEPTED, NULL, on_check, &res[0]), 0);
        assert_int_equal(pc_check_customer(c, NULL, "accepted.example", on_check, &res[1]), 0);
        pc_client_free(c);
        while (http_pending(e->h) > 0)
                uv_run(&e->loop, UV_RUN_ONCE);
        assert_int_equal(res[0].done + res[1].done, 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_list_paged_parallel, setup, teardown),
                cmocka_unit_test_setup_teardown(test_list_product_filter, setup, teardown),
                cmocka_unit_test_setup_teardown(test_list_unauthorized, setup, teardown),
                cmocka_unit_test_setup_teardown(test_list_without_total, setup, teardown),
                cmocka_unit_test_setup_teardown(test_template, setup, teardown),
                cmocka_unit_test_setup_teardown(test_get_and_process, setup, teardown),
                cmocka_unit_test_setup_teardown(test_buyer_contact, setup, teardown),
                cmocka_unit_test_setup_teardown(test_mp_free_in_flight, setup, teardown),
                cmocka_unit_test_setup_teardown(test_pc_token_cached, setup, teardown),
                cmocka_unit_test_setup_teardown(test_pc_401_refresh, setup, teardown),
                cmocka_unit_test_setup_teardown(test_pc_pending_then_accepted, setup, teardown),
                cmocka_unit_test_setup_teardown(test_pc_domain_paged, setup, teardown),
                cmocka_unit_test_setup_teardown(test_pc_invalid_client, setup, teardown),
                cmocka_unit_test_setup_teardown(test_pc_short_token, setup, teardown),
                cmocka_unit_test_setup_teardown(test_pc_free_in_flight, setup, teardown),
        };
        const char *filter = getenv("TEST_FILTER");
        if (filter)
                cmocka_set_test_filter(filter);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
