/* SPDX-License-Identifier: MIT */
/*
 * marketplace: SoftwareOne Marketplace orders API client.
 *
 * Pure parts (RQL building, order parsing, relationship URL extraction) are
 * free of I/O and unit-tested; the request parts submit through lib/http and
 * report on the loop.  Remote data is hostile: every field may be missing,
 * null or of the wrong type, every string is capped, control characters in
 * single-line fields are replaced.
 */
#include "marketplace.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apiutil.h"
#include "url.h"
#include "log.h"
#include "secret.h"
#include "text.h"
#include "util.h"

/* ---- ASSUMPTIONS ------------------------------------------------------
 * Facts about the API that public documentation does not settle (tagged
 * [A] in shared/reference/marketplace-api.md) or our own policy choices.
 * Each is one named constant so the day the real API says otherwise the
 * change is one line.
 */
/* Every path lives under this prefix; a configured base with or without it
 * is accepted [C, normalised like the official clients]. */
#define MP_API_PREFIX           "/public/v1"
/* Portal host for deep links in mails [C url-structure]. */
#define MP_PORTAL_DEFAULT       "https://portal.platform.softwareone.com"
/* Page size: the API caps limit at 100 [C]. */
#define MP_PAGE_MAX             100
/* Heavy fields omitted from lists by default; we need these two [C].  The
 * '+' travels literally, as the official clients send it [A]. */
#define MP_LIST_SELECT          "+parameters,+audit"
#define MP_ORDER_SELECT         "+parameters,+audit"
/* Stable paging order (audit must be selected to sort on it) [C]. */
#define MP_LIST_ORDER           "audit.created.at"
/* Product filter field.  Order.product is a documented property [C] and
 * mpt-mcp filters on it [O]; the old SDK filtered on agreement.product.id
 * [O], which the order's agreement reference does not carry (nor does the
 * fake), so that form matches nothing there [A]. */
#define MP_RQL_PRODUCT_FIELD    "product.id"
/* RQL structure characters sent literally; values are double-quoted and
 * percent-encoded except RFC 3986 unreserved characters [C rql tips]. */
#define MP_RQL_QUOTE            "\""
/* A hostile "total" must not make us fetch forever. */
#define MP_MAX_ORDERS           100000
/* Parameter externalIds of the Microsoft CSP products [O screenshots]. */
#define MP_PAR_TENANT_ID        "MicrosoftTenantId"        /* fulfillment */
#define MP_PAR_EXISTING_DOMAIN  "ExistingDomainName"       /* ordering */
#define MP_PAR_PRIMARY_DOMAIN   "PrimaryDomainName"        /* ordering */
#define MP_PAR_COMPANY_NAME     "CustomerCompanyName"      /* ordering */
#define MP_PAR_TYPE_CONTACT     "Contact"
/* Status of an action refused because the order is no longer in a state
 * that allows it.  No public source gives it; 409 is the documented "clash
 * with the resource's current state" [A: marketplace-api.md §4]. */
#define MP_ACTION_MOVED_STATUS  409
/* Caps on remote strings (error.message is 1..4000 chars [C]). */
#define MP_STR_MAX              4096
#define MP_ERROR_MAX            4000
#define MP_DOMAIN_MAX           253
#define MP_MAX_CONTACTS         32
#define MP_TEMPLATE_MAX         (1024 * 1024)
#define MP_ID_MAX               64
/* Bad orders remembered so each is warned about once. */
#define MP_MAX_WARNED           4096
/* [marketplace] max_orders_bytes when the caller sets none. */
#define MP_MAX_ORDERS_BYTES     ((size_t) 64 << 20)
/* ---------------------------------------------------------------------- */

/* ======================================================================
 * Small string helpers
 * ====================================================================== */

/* Copy of s, capped at max bytes, control characters replaced by spaces,
 * leading/trailing blanks trimmed.  NULL when s is NULL or ends up empty. */
static char *dup_clean(const char *s, size_t max) {
        if (!s)
                return NULL;
        while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
                s++;
        size_t len = text_utf8_clip(s, strlen(s), max);
        while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t' ||
                           s[len - 1] == '\r' || s[len - 1] == '\n'))
                len--;
        if (len == 0)
                return NULL;
        char *p = strndup(s, len);
        if (!p)
                return NULL;
        for (char *q = p; *q; q++)
                if ((unsigned char) *q < 0x20 || *q == 0x7f)
                        *q = ' ';
        /* Bidi overrides and invisible characters never reach a mail, the
         * state or a log; neither does a secret a server echoes. */
        text_strip_format_chars(p);
        if (secret_found(p, strlen(p))) {
                char *c = secret_scrub_str(p);
                free(p);
                p = c;
        }
        if (p && !*p) {
                free(p);
                return NULL;
        }
        return p;
}

bool mp_order_id_valid(const char *id) {
        if (!id || strncmp(id, "ORD", 3) != 0)
                return false;
        const char *p = id + 3;
        int groups = 0;
        while (*p) {
                if (*p != '-')
                        return false;
                p++;
                for (int i = 0; i < 4; i++, p++)
                        if (*p < '0' || *p > '9')
                                return false;
                groups++;
        }
        return groups == 3 || groups == 4;
}

/* Account-style ids (BUY-1234-5678): letters, digits and '-' only. */
static bool plain_id_valid(const char *id) {
        if (!id || !*id || strlen(id) > MP_ID_MAX)
                return false;
        for (const char *p = id; *p; p++)
                if (!isalnum((unsigned char) *p) && *p != '-')
                        return false;
        return true;
}

/* ======================================================================
 * Order parsing
 * ====================================================================== */

/* The parameter with this externalId in parameters.<phase>, or NULL. */
static const json_t *find_param(const json_t *order, const char *phase, const char *external_id) {
        const json_t *arr = api_json_arr(api_json_obj(order, "parameters"), phase);
        size_t i;
        const json_t *p;
        json_array_foreach(arr, i, p) {
                const char *eid = api_json_str(p, "externalId");
                if (eid && strcmp(eid, external_id) == 0)
                        return p;
        }
        return NULL;
}

/* A string parameter value, trimmed; NULL when absent, empty or not a
 * string. */
static char *param_string(const json_t *order, const char *phase, const char *external_id) {
        return dup_clean(api_json_str(find_param(order, phase, external_id), "value"), MP_STR_MAX);
}

/* A domain parameter, lower-cased; NULL unless it is one token of
 * letters, digits, '-' and '.' (spaces or markup cannot name a tenant). */
static char *domain_param(const json_t *order, const char *external_id) {
        char *d = param_string(order, "ordering", external_id);
        bool ok = d && strlen(d) <= MP_DOMAIN_MAX;
        for (const char *p = d; ok && *p; p++)
                ok = isalnum((unsigned char) *p) || *p == '-' || *p == '.';
        if (!ok) {
                free(d);
                return NULL;
        }
        return util_ascii_lower(d);
}

static char *parse_domain(const json_t *order) {
        char *d = domain_param(order, MP_PAR_EXISTING_DOMAIN);
        return d ? d : domain_param(order, MP_PAR_PRIMARY_DOMAIN);
}

static char *parse_tenant_id(const json_t *order) {
        char *t = param_string(order, "fulfillment", MP_PAR_TENANT_ID);
        /* Only a GUID names a tenant; junk falls back to the domain. */
        if (t && !api_guid_valid(t)) {
                free(t);
                return NULL;
        }
        return t ? util_ascii_lower(t) : NULL;
}

static bool email_plausible(const char *e) {
        const char *at = e ? strchr(e, '@') : NULL;
        if (!at || at == e || !at[1] || strchr(at + 1, '@') || strlen(e) > 254)
                return false;
        for (const char *p = e; *p; p++)
                if ((unsigned char) *p <= 0x20 || *p == 0x7f || strchr("<>,;\"()[]\\", *p))
                        return false;
        return true;
}

static int parse_contacts(const json_t *order, struct order *o) {
        const json_t *arr = api_json_arr(api_json_obj(order, "parameters"), "ordering");
        size_t i;
        const json_t *p;
        json_array_foreach(arr, i, p) {
                const char *type = api_json_str(p, "type");
                const json_t *v = api_json_obj(p, "value");
                if (!type || !v || strcasecmp(type, MP_PAR_TYPE_CONTACT) != 0)
                        continue;
                if (o->n_contacts >= MP_MAX_CONTACTS)
                        break;
                _cleanup_free_ char *email = dup_clean(api_json_str(v, "email"), 254);
                if (!email_plausible(email))
                        continue;
                _cleanup_free_ char *first = dup_clean(api_json_str(v, "firstName"), 256);
                _cleanup_free_ char *last = dup_clean(api_json_str(v, "lastName"), 256);
                char *name = NULL;
                if (first || last) {
                        if (asprintf(&name, "%s%s%s", first ? first : "",
                                     first && last ? " " : "", last ? last : "") < 0)
                                return -ENOMEM;
                }
                struct order_contact *nc = realloc(o->contacts, (o->n_contacts + 1) * sizeof(*nc));
                if (!nc) {
                        free(name);
                        return -ENOMEM;
                }
                o->contacts = nc;
                nc[o->n_contacts++] = (struct order_contact) { .name = name, .email = email };
                email = NULL;
        }
        return 0;
}

/* Appends one message to the joined error text ("; " separated, capped). */
static void error_append(struct util_buf *b, const char *msg) {
        _cleanup_free_ char *m = dup_clean(msg, MP_ERROR_MAX);
        if (!m)
                return;
        if (b->len > 0 && util_buf_puts(b, "; ") < 0)
                return;
        size_t room = b->max > b->len ? b->max - b->len : 0;
        size_t n = text_utf8_clip(m, strlen(m), room);
        (void) util_buf_append(b, m, n);
}

static char *parse_error_text(const json_t *order) {
        struct util_buf b;
        util_buf_init(&b, MP_ERROR_MAX);
        error_append(&b, api_json_str(api_json_obj(order, "error"), "message"));
        static const char *const phases[] = { "ordering", "fulfillment" };
        for (size_t k = 0; k < 2; k++) {
                const json_t *arr = api_json_arr(api_json_obj(order, "parameters"), phases[k]);
                size_t i;
                const json_t *p;
                json_array_foreach(arr, i, p)
                        error_append(&b, api_json_str(api_json_obj(p, "error"), "message"));
        }
        if (b.len == 0) {
                util_buf_free(&b);
                return NULL;
        }
        return util_buf_steal(&b);
}

static int64_t parse_audit_time(const json_t *order, const char *event, char **ret_raw) {
        const char *at = api_json_str(api_json_obj(api_json_obj(order, "audit"), event), "at");
        int64_t t = 0;
        if (ret_raw)
                *ret_raw = dup_clean(at, 64);
        if (at && util_parse_time(at, &t) < 0)
                t = 0;
        return t;
}

static int fail_field(char **ret_err, const char *field, const char *id) {
        if (ret_err) {
                free(*ret_err);
                if (asprintf(ret_err, "order%s%s: field \"%s\" missing or invalid",
                             id ? " " : "", id ? id : "", field) < 0)
                        *ret_err = NULL;
        }
        return -EBADMSG;
}

int mp_parse_order(const json_t *obj, struct order *o, char **ret_err) {
        int r;

        if (ret_err)
                *ret_err = NULL;
        memset(o, 0, sizeof(*o));
        if (!json_is_object(obj))
                return fail_field(ret_err, "(object)", NULL);

        const char *id = api_json_str(obj, "id");
        if (!mp_order_id_valid(id))
                return fail_field(ret_err, "id", NULL);
        const char *status = api_json_str(obj, "status");
        if (!status)
                return fail_field(ret_err, "status", id);

        const json_t *product = api_json_obj(obj, "product");
        if (!api_json_str(product, "id"))
                product = api_json_obj(api_json_obj(obj, "agreement"), "product");
        const json_t *agreement = api_json_obj(obj, "agreement");
        const json_t *buyer = api_json_obj(obj, "buyer");
        const json_t *client = api_json_obj(obj, "client");

        o->status = order_status_from_string(status);
        o->id = strdup(id);
        o->type = dup_clean(api_json_str(obj, "type"), MP_ID_MAX);
        o->product_id = dup_clean(api_json_str(product, "id"), MP_ID_MAX);
        o->product_name = dup_clean(api_json_str(product, "name"), MP_STR_MAX);
        o->agreement_id = dup_clean(api_json_str(agreement, "id"), MP_ID_MAX);
        o->agreement_name = dup_clean(api_json_str(agreement, "name"), MP_STR_MAX);
        o->client_name = dup_clean(api_json_str(client, "name"), MP_STR_MAX);
        o->buyer_id = dup_clean(api_json_str(buyer, "id"), MP_ID_MAX);
        o->buyer_name = dup_clean(api_json_str(buyer, "name"), MP_STR_MAX);
        o->tenant_id = parse_tenant_id(obj);
        o->domain = parse_domain(obj);
        o->company_name = param_string(obj, "ordering", MP_PAR_COMPANY_NAME);
        if (!o->company_name)
                o->company_name = util_strdup0(o->buyer_name ? o->buyer_name : o->client_name);
        o->error_message = parse_error_text(obj);
        o->querying_at = parse_audit_time(obj, "querying", &o->querying_at_raw);
        o->updated_at = parse_audit_time(obj, "updated", &o->updated_at_raw);
        o->created_at = parse_audit_time(obj, "created", NULL);
        o->template_id = dup_clean(api_json_str(api_json_obj(obj, "template"), "id"), MP_ID_MAX);
        /* What the order itself shows (parameters, error): all a Draft has;
         * for a Querying order the rendered template, fetched separately,
         * takes precedence. */
        o->relationship_url = mp_extract_relationship_url_from_order(obj);
        if (!o->id) {
                r = -ENOMEM;
                goto fail;
        }
        r = parse_contacts(obj, o);
        if (r < 0)
                goto fail;
        return 0;
fail:
        order_clear(o);
        memset(o, 0, sizeof(*o));
        return r;
}

/* ---- the list page, one order at a time ----
 *
 * jansson parses a document whole: one order with a key twice, a stray byte
 * order mark or invalid UTF-8 would fail the page and hide every other
 * order.  So the page is split first by a structural scan (strings and
 * nesting only, no recursion, nothing decoded): the envelope is parsed with
 * "data" emptied, then each element of "data" on its own, strictly. */

static size_t skip_ws(const char *s, size_t n, size_t i) {
        while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n'))
                i++;
        return i;
}

/* The index after the string starting at s[i] ('"'), 0 if unterminated. */
static size_t skip_string(const char *s, size_t n, size_t i) {
        for (i++; i < n; i++) {
                if (s[i] == '\\')
                        i++;
                else if (s[i] == '"')
                        return i + 1;
        }
        return 0;
}

/* The index after the value starting at s[i], 0 when it is not one. */
static size_t skip_value(const char *s, size_t n, size_t i) {
        size_t depth = 0;
        if (i >= n)
                return 0;
        /* a scalar, or junk (a stray byte order mark...) before a value:
         * the element parser refuses it, the scan only finds its end */
        size_t j = i;
        while (j < n && s[j] && !strchr("{[\",]} \t\r\n", s[j]))
                j++;
        if (j >= n || !s[j] || !strchr("{[\"", s[j]))
                return j > i && (j >= n || s[j]) ? j : 0;
        i = j;
        if (s[i] == '"')
                return skip_string(s, n, i);
        while (i < n) {
                if (s[i] == '"') {
                        i = skip_string(s, n, i);
                        if (!i)
                                return 0;
                        continue;
                }
                if (s[i] == '{' || s[i] == '[')
                        depth++;
                else if ((s[i] == '}' || s[i] == ']') && --depth == 0)
                        return i + 1;
                i++;
        }
        return 0;
}

/* Calls fn for each member of the object at s[i] ('{'): the raw key (with
 * its quotes) and the value's span.  Returns the index after the object,
 * 0 when the text is not shaped like an object. */
typedef bool (*member_fn)(void *ud, const char *key, size_t klen, size_t vs, size_t ve);
static size_t scan_object(const char *s, size_t n, size_t i, member_fn fn, void *ud) {
        i = skip_ws(s, n, i);
        if (i >= n || s[i] != '{')
                return 0;
        i = skip_ws(s, n, i + 1);
        if (i < n && s[i] == '}')
                return i + 1;
        while (i < n && s[i] == '"') {
                size_t ks = i, ke = skip_string(s, n, i);
                if (!ke)
                        return 0;
                i = skip_ws(s, n, ke);
                if (i >= n || s[i] != ':')
                        return 0;
                size_t vs = skip_ws(s, n, i + 1), ve = skip_value(s, n, vs);
                if (!ve || !fn(ud, s + ks, ke - ks, vs, ve))
                        return 0;
                i = skip_ws(s, n, ve);
                if (i < n && s[i] == '}')
                        return i + 1;
                if (i >= n || s[i] != ',')
                        return 0;
                i = skip_ws(s, n, i + 1);
        }
        return 0;
}

struct span {
        size_t start, end;
        const char *text;        /* the member "id": its string value */
        size_t found;
};

static bool find_data(void *ud, const char *key, size_t klen, size_t vs, size_t ve) {
        struct span *sp = ud;
        if (klen == 6 && memcmp(key, "\"data\"", 6) == 0 && sp->found++ == 0) {
                sp->start = vs;
                sp->end = ve;
        }
        return true;
}

static bool find_id(void *ud, const char *key, size_t klen, size_t vs, size_t ve) {
        struct span *sp = ud;
        if (klen == 4 && memcmp(key, "\"id\"", 4) == 0 && sp->text[vs] == '"' && ve - vs >= 2 && !sp->found++) {
                sp->start = vs + 1;
                sp->end = ve - 1;
        }
        return true;
}

/* The order id of a raw element when it can be read safely, else "". */
static void element_id(const char *s, size_t n, char id[static 32]) {
        struct span sp = { .text = s };
        id[0] = '\0';
        if (n >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0)
                s += 3, n -= 3, sp.text = s;
        if (!scan_object(s, n, 0, find_id, &sp) || sp.found != 1 || sp.end - sp.start >= 32)
                return;
        memcpy(id, s + sp.start, sp.end - sp.start);
        id[sp.end - sp.start] = '\0';
        if (!mp_order_id_valid(id))
                id[0] = '\0';
}

/* Why jansson refused an element, in words that quote none of it. */
static const char *element_error(const json_error_t *jerr) {
        if (strstr(jerr->text, "duplicate"))
                return "a key appears twice";
        if (strstr(jerr->text, "UTF-8") || strstr(jerr->text, "decode byte"))
                return "invalid UTF-8";
        return "invalid JSON";
}

/* Where a bad order is reported: a client that remembers what it warned
 * about (NULL: debug only). */
struct page_ctx {
        struct mp_client *c;
        size_t page, offset;
};

static void warn_bad_order(const struct page_ctx *pc, size_t index, const char *id, const char *why);

/* Adds the order item to orders; a bad one is skipped and reported.  Only
 * -ENOMEM fails. */
static int add_order(const struct page_ctx *pc, size_t index, const json_t *item, struct order_list *orders) {
        struct order tmp;
        _cleanup_free_ char *err = NULL;
        int k = mp_parse_order(item, &tmp, &err);
        if (k == -ENOMEM)
                return k;
        if (k < 0) {
                const char *id = api_json_str(item, "id");
                warn_bad_order(pc, index, mp_order_id_valid(id) ? id : "", err ? err : "not an order");
                return 0;
        }
        struct order *o = order_list_add(orders);
        if (!o) {
                order_clear(&tmp);
                return -ENOMEM;
        }
        *o = tmp;
        return 0;
}

/* The raw element s[0..n), parsed on its own. */
static int parse_element(const struct page_ctx *pc, size_t index, const char *s, size_t n,
                         struct order_list *orders) {
        json_error_t jerr;
        char id[32];
        json_t *item = json_loadb(s, n, JSON_REJECT_DUPLICATES, &jerr);
        if (!item) {
                element_id(s, n, id);
                warn_bad_order(pc, index, id, element_error(&jerr));
                return 0;
        }
        int r = add_order(pc, index, item, orders);
        json_decref(item);
        return r;
}

/* The elements of the array body[a.start..a.end), each on its own. */
static int parse_elements(const struct page_ctx *pc, const char *body, const struct span *a,
                          struct order_list *orders, size_t *ret_items) {
        size_t last = a->end - 1, i = skip_ws(body, last, a->start + 1), n = 0;
        int r = 0;
        while (r == 0 && i < last) {
                size_t e = skip_value(body, last, i);
                if (!e)
                        return -EBADMSG;
                r = parse_element(pc, n++, body + i, e - i, orders);
                i = skip_ws(body, last, e);
                if (i < last && (body[i] != ',' || (i = skip_ws(body, last, i + 1)) >= last))
                        return -EBADMSG;    /* no comma, or a trailing one */
        }
        *ret_items = n;
        return r;
}

/* The envelope: the page with "data" emptied, parsed strictly. */
static json_t *parse_envelope(const char *body, size_t len, const struct span *data) {
        struct util_buf b;
        util_buf_init(&b, len + 2);
        if (util_buf_append(&b, body, data->start) < 0 || util_buf_puts(&b, "[]") < 0 ||
            util_buf_append(&b, body + data->end, len - data->end) < 0) {
                util_buf_free(&b);
                return NULL;
        }
        json_t *root = json_loadb(b.data, b.len, JSON_REJECT_DUPLICATES, NULL);
        util_buf_free(&b);
        return root;
}

/* Parses a list page; also reports the raw item count and the page limit
 * the server applied (-1 if absent).  Items that are not valid orders are
 * skipped and reported (warn_bad_order): one bad record must not hide the
 * others. */
static int parse_page(const struct page_ctx *pc, const char *body, size_t len, struct order_list *orders,
                      long *ret_total, long *ret_limit, size_t *ret_items, char **ret_err) {
        struct span data = { 0 };
        json_t *root = NULL;
        int r = 0;

        if (ret_err)
                *ret_err = NULL;
        *ret_total = -1;
        if (ret_limit)
                *ret_limit = -1;
        if (ret_items)
                *ret_items = 0;

        size_t end = scan_object(body, len, 0, find_data, &data);
        if (end && skip_ws(body, len, end) == len && data.found == 1 && body[data.start] == '[')
                root = parse_envelope(body, len, &data);
        else {  /* not shaped like a page: let jansson say what is wrong */
                data.found = 0;
                root = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
        }
        if (!api_json_arr(root, "data")) {
                if (ret_err && asprintf(ret_err, "order list: %s",
                                        root ? "no \"data\" array" : "invalid JSON") < 0)
                        *ret_err = NULL;
                json_decref(root);
                return -EBADMSG;
        }

        const json_t *pag = api_json_obj(api_json_obj(root, "$meta"), "pagination");
        const json_t *t = json_is_object(pag) ? json_object_get(pag, "total") : NULL;
        if (json_is_integer(t) && json_integer_value(t) >= 0)
                *ret_total = json_integer_value(t) > LONG_MAX ? LONG_MAX : (long) json_integer_value(t);
        const json_t *l = json_is_object(pag) ? json_object_get(pag, "limit") : NULL;
        if (ret_limit && json_is_integer(l) && json_integer_value(l) > 0 &&
            json_integer_value(l) <= MP_PAGE_MAX)
                *ret_limit = (long) json_integer_value(l);
        size_t n = 0, before = orders->n;
        if (data.found == 1)
                r = parse_elements(pc, body, &data, orders, &n);
        else {  /* jansson could read the page whole */
                size_t i;
                const json_t *item;
                n = json_array_size(api_json_arr(root, "data"));
                json_array_foreach(api_json_arr(root, "data"), i, item)
                        if ((r = add_order(pc, i, item, orders)) < 0)
                                break;
        }
        json_decref(root);
        /* a page that failed contributes nothing, not a part of it */
        while (r < 0 && orders->n > before)
                order_clear(&orders->items[--orders->n]);
        if (r == -EBADMSG && ret_err && asprintf(ret_err, "order list: invalid JSON") < 0)
                *ret_err = NULL;
        if (ret_items)
                *ret_items = n;
        return r;
}

int mp_parse_order_page(const char *body, size_t len, struct order_list *orders,
                        long *ret_total, char **ret_err) {
        return parse_page(&(struct page_ctx) { 0 }, body, len, orders, ret_total, NULL, NULL, ret_err);
}

/* ======================================================================
 * Relationship links (what a link is: lib/url)
 * ====================================================================== */

char *mp_extract_relationship_url_from_order(const json_t *obj) {
        char *reseller = NULL, *gdap = NULL;
        static const char *const phases[] = { "ordering", "fulfillment" };
        int r = 0;

        for (size_t k = 0; k < 2 && r >= 0 && !reseller; k++) {
                const json_t *arr = api_json_arr(api_json_obj(obj, "parameters"), phases[k]);
                size_t i;
                const json_t *p;
                json_array_foreach(arr, i, p) {
                        r = url_link_scan(api_json_str(p, "value"), &reseller, &gdap);
                        if (r < 0 || reseller)
                                break;
                }
        }
        if (r >= 0 && !reseller)
                r = url_link_scan(api_json_str(api_json_obj(obj, "error"), "message"), &reseller, &gdap);
        if (r < 0) {
                free(reseller);
                free(gdap);
                return NULL;
        }
        return url_link_pick(reseller, gdap);
}

char *mp_portal_link(const char *portal_base, const char *order_id) {
        if (!mp_order_id_valid(order_id))
                return NULL;
        const char *b = portal_base && *portal_base ? portal_base : MP_PORTAL_DEFAULT;
        size_t bl = strlen(b);
        while (bl > 0 && b[bl - 1] == '/')
                bl--;
        char *s = NULL;
        if (asprintf(&s, "%.*s/commerce/orders/%s", (int) bl, b, order_id) < 0)
                return NULL;
        return s;
}

/* ======================================================================
 * Request building
 * ====================================================================== */

char *mp_normalize_base_url(const char *url) {
        if (!url || !*url)
                return NULL;
        size_t len = strlen(url);
        while (len > 0 && url[len - 1] == '/')
                len--;
        size_t pl = strlen(MP_API_PREFIX);
        if (len >= pl && strncmp(url + len - pl, MP_API_PREFIX, pl) == 0)
                len -= pl;
        while (len > 0 && url[len - 1] == '/')
                len--;
        if (len == 0 || strchr(url, '?') || strchr(url, '#') || util_has_ctl(url, false))
                return NULL;
        char *s = NULL;
        if (asprintf(&s, "%.*s%s", (int) len, url, MP_API_PREFIX) < 0)
                return NULL;
        return s;
}

/* Appends "<value>" percent-encoded (RFC 3986 unreserved kept). */
static int rql_value(struct util_buf *b, const char *v) {
        int r = util_buf_puts(b, MP_RQL_QUOTE);
        for (const unsigned char *p = (const unsigned char *) v; r >= 0 && *p; p++) {
                if (isalnum(*p) || strchr("-._~", *p))
                        r = util_buf_append(b, p, 1);
                else
                        r = util_buf_printf(b, "%%%02X", *p);
        }
        return r < 0 ? r : util_buf_puts(b, MP_RQL_QUOTE);
}

static int rql_in(struct util_buf *b, const char *field, const char *const *values, size_t n) {
        int r;
        if (n == 1) {
                r = util_buf_printf(b, "eq(%s,", field);
                if (r >= 0)
                        r = rql_value(b, values[0]);
                return r < 0 ? r : util_buf_puts(b, ")");
        }
        r = util_buf_printf(b, "in(%s,(", field);
        for (size_t i = 0; r >= 0 && i < n; i++) {
                if (i > 0)
                        r = util_buf_puts(b, ",");
                if (r >= 0)
                        r = rql_value(b, values[i]);
        }
        return r < 0 ? r : util_buf_puts(b, "))");
}

char *mp_build_rql(const enum order_status *statuses, size_t n_statuses,
                   const char *const *products, size_t n_products) {
        if (n_statuses == 0 || n_statuses > _ORDER_STATUS_MAX)
                return NULL;
        const char *names[_ORDER_STATUS_MAX];
        for (size_t i = 0; i < n_statuses; i++) {
                if (statuses[i] <= ORDER_STATUS_UNKNOWN || statuses[i] >= _ORDER_STATUS_MAX)
                        return NULL;
                names[i] = order_status_to_string(statuses[i]);
        }
        struct util_buf b;
        util_buf_init(&b, 64 * 1024);
        int r = 0;
        if (n_products > 0)
                r = util_buf_puts(&b, "and(");
        if (r >= 0)
                r = rql_in(&b, "status", names, n_statuses);
        if (r >= 0 && n_products > 0) {
                r = util_buf_puts(&b, ",");
                if (r >= 0)
                        r = rql_in(&b, MP_RQL_PRODUCT_FIELD, products, n_products);
                if (r >= 0)
                        r = util_buf_puts(&b, ")");
        }
        if (r < 0) {
                util_buf_free(&b);
                return NULL;
        }
        return util_buf_steal(&b);
}

/* ======================================================================
 * Client and requests
 * ====================================================================== */

struct mp_req;

struct mp_client {
        struct http *h;
        char *base;              /* https://host/public/v1 */
        char *auth_header;       /* "Authorization: Bearer ..." (secret) */
        char **products;
        size_t n_products;
        char *ca_file;
        long page_size;
        size_t max_orders_bytes; /* what one listing may hold */
        struct mp_req *reqs;     /* in flight, detached on free */
        char **warned;           /* bad orders already warned about */
        size_t n_warned;
};

struct mp_list;

enum req_kind { REQ_PAGE, REQ_TEXT, REQ_ORDER, REQ_CONTACT };

struct mp_req {
        struct mp_client *c;     /* NULL once the client is gone */
        struct mp_req *prev, *next;
        enum req_kind kind;
        const char *method;
        char *path;              /* URL path for error messages (no query) */
        union mp_cb {
                mp_text_fn text;
                mp_order_fn order;
                mp_contact_fn contact;
        } cb;
        void *ud;
        struct mp_list *list;    /* REQ_PAGE */
        size_t page;
};

struct mp_list {
        struct mp_client *c;
        mp_list_fn cb;
        void *ud;
        char *url;               /* everything but limit and offset */
        long limit;
        struct order_list *pages;
        size_t n_pages;
        size_t pending;
        bool sequential;         /* no total: page until a short one */
        int r;
        long status;
        char *err;
        size_t bytes;            /* held by the parsed orders */
};

static const char *const accept_header = "Accept: application/json";
static const char *const json_ct_header = "Content-Type: application/json";
static const char *const ua_header = "User-Agent: partnerd/" PARTNERD_VERSION;

int mp_client_new(struct http *h, const struct mp_options *opts, struct mp_client **ret) {
        if (!h || !opts || !ret || !opts->token || !*opts->token ||
            util_has_ctl(opts->token, false))
                return -EINVAL;
        struct mp_client *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->h = h;
        c->page_size = opts->page_size > 0 && opts->page_size < MP_PAGE_MAX ? opts->page_size
                                                                           : MP_PAGE_MAX;
        c->max_orders_bytes = opts->max_orders_bytes ? opts->max_orders_bytes : MP_MAX_ORDERS_BYTES;
        int r = -EINVAL;
        c->base = mp_normalize_base_url(opts->base_url);
        if (!c->base)
                goto fail;
        r = -ENOMEM;
        if (asprintf(&c->auth_header, "Authorization: Bearer %s", opts->token) < 0) {
                c->auth_header = NULL;
                goto fail;
        }
        if (opts->ca_file && !(c->ca_file = strdup(opts->ca_file)))
                goto fail;
        if (opts->n_products > 0) {
                c->products = calloc(opts->n_products, sizeof(char *));
                if (!c->products)
                        goto fail;
                for (size_t i = 0; i < opts->n_products; i++) {
                        r = -EINVAL;
                        if (!plain_id_valid(opts->products[i]))
                                goto fail;
                        r = -ENOMEM;
                        if (!(c->products[i] = strdup(opts->products[i])))
                                goto fail;
                        c->n_products++;
                }
        }
        *ret = c;
        return 0;
fail:
        mp_client_free(c);
        return r;
}

struct mp_client *mp_client_free(struct mp_client *c) {
        if (!c)
                return NULL;
        /* Requests still in flight finish silently when http reports them. */
        for (struct mp_req *q = c->reqs; q; q = q->next) {
                q->c = NULL;
                if (q->list)
                        q->list->c = NULL;
        }
        free(c->base);
        if (c->auth_header) {
                explicit_bzero(c->auth_header, strlen(c->auth_header));
                free(c->auth_header);
        }
        for (size_t i = 0; i < c->n_products; i++)
                free(c->products[i]);
        free(c->products);
        free(c->ca_file);
        for (size_t i = 0; i < c->n_warned; i++)
                free(c->warned[i]);
        free(c->warned);
        free(c);
        return NULL;
}

static void req_free(struct mp_req *q) {
        if (!q)
                return;
        if (q->c)
                API_LIST_UNLINK(q->c->reqs, q);
        free(q->path);
        free(q);
}

static void http_done(void *userdata, int r, const struct http_response *resp);

static int req_submit(struct mp_client *c, struct mp_req *q, const char *url, const char *body) {
        const char *headers[6] = { c->auth_header, accept_header, ua_header, NULL };
        if (body)
                headers[3] = json_ct_header;
        q->path = api_url_path(url);
        if (!q->path)
                return -ENOMEM;
        struct http_request req = {
                .method = q->method,
                .url = url,
                .headers = headers,
                .body = body,
                .body_len = body ? strlen(body) : 0,
                /* Only reads are retried; POST actions never are. */
                .idempotent = strcmp(q->method, "GET") == 0,
                .ca_file = c->ca_file,
                .label = "marketplace",     /* partnerd_http_requests_total{api} */
        };
        q->c = c;
        q->next = c->reqs;
        if (c->reqs)
                c->reqs->prev = q;
        c->reqs = q;
        int r = http_submit(c->h, &req, http_done, q);
        if (r < 0) {
                req_free(q);
                return r;
        }
        return 0;
}

/* "GET /public/v1/commerce/orders: HTTP 401: ..." */
static char *describe(const struct mp_req *q, int r, const struct http_response *resp) {
        _cleanup_free_ char *d = api_describe_error(r, resp);
        char *s = NULL;
        if (asprintf(&s, "%s %s: %s", q->method, q->path, d ? d : "request failed") < 0)
                return NULL;
        return s;
}

static char *describe_msg(const struct mp_req *q, const char *msg) {
        char *s = NULL;
        if (asprintf(&s, "%s %s: %s", q->method, q->path, msg) < 0)
                return NULL;
        return s;
}

static struct mp_req *req_new(enum req_kind kind, const char *method, void *ud) {
        struct mp_req *q = calloc(1, sizeof(*q));
        if (!q)
                return NULL;
        q->kind = kind;
        q->method = method;
        q->ud = ud;
        return q;
}

/* ---- list ---- */

/* A bad order is warned about once per process (the daemon: not every
 * cycle), named by its id, else by its place in the listing. */
static void warn_bad_order(const struct page_ctx *pc, size_t index, const char *id, const char *why) {
        char key[96];
        struct mp_client *c = pc->c;
        if (*id)
                snprintf(key, sizeof(key), "%s", id);
        else
                snprintf(key, sizeof(key), "item %zu of the page at offset %zu", index, pc->offset);
        if (!c) {
                log_debug("marketplace: skipping list %s: %s", key, why);
                return;
        }
        for (size_t i = 0; i < c->n_warned; i++)
                if (strcmp(c->warned[i], key) == 0)
                        return;
        log_event(LOG_WARNING, LOG_EV_NONE, LOG_FIELDS({ "ORDER_ID", *id ? id : NULL }),
                  "Order %s skipped, the others go on: %s", key, why);
        if (c->n_warned >= MP_MAX_WARNED)
                return;
        char **v = reallocarray(c->warned, c->n_warned + 1, sizeof(char *));
        if (!v)
                return;
        c->warned = v;
        if ((v[c->n_warned] = strdup(key)))
                c->n_warned++;
}

static void list_free(struct mp_list *l) {
        if (!l)
                return;
        for (size_t i = 0; i < l->n_pages; i++)
                order_list_clear(&l->pages[i]);
        free(l->pages);
        free(l->url);
        free(l->err);
        free(l);
}

static void list_fail(struct mp_list *l, int r, long status, char *err) {
        if (l->r < 0) {     /* keep the first failure */
                free(err);
                return;
        }
        l->r = r < 0 ? r : -EIO;
        l->status = status;
        l->err = err;
}

static int list_submit_page(struct mp_list *l, size_t page) {
        if (page >= l->n_pages) {
                size_t n = page + 1;
                struct order_list *p = realloc(l->pages, n * sizeof(*p));
                if (!p)
                        return -ENOMEM;
                memset(p + l->n_pages, 0, (n - l->n_pages) * sizeof(*p));
                l->pages = p;
                l->n_pages = n;
        }
        _cleanup_free_ char *url = NULL;
        if (asprintf(&url, "%s&limit=%ld&offset=%zu", l->url, l->limit,
                     page * (size_t) l->limit) < 0)
                return -ENOMEM;
        struct mp_req *q = req_new(REQ_PAGE, "GET", NULL);
        if (!q)
                return -ENOMEM;
        q->list = l;
        q->page = page;
        int r = req_submit(l->c, q, url, NULL);
        if (r < 0)
                return r;
        l->pending++;
        return 0;
}

static int cmp_idx(const void *a, const void *b, void *arg) {
        const struct order *items = arg;
        size_t x = *(const size_t *) a, y = *(const size_t *) b;
        int k = strcmp(items[x].id, items[y].id);
        return k ? k : (x < y ? -1 : x > y);
}

/* Concatenates the pages in offset order, dropping ids seen on an earlier
 * page (orders shift between pages while we read them). */
static int list_merge(struct mp_list *l, struct order_list *out) {
        size_t n = 0;
        for (size_t i = 0; i < l->n_pages; i++)
                n += l->pages[i].n;
        memset(out, 0, sizeof(*out));
        if (n == 0)
                return 0;
        struct order *items = calloc(n, sizeof(*items));
        size_t *idx = calloc(n, sizeof(*idx));
        if (!items || !idx) {
                free(items);
                free(idx);
                return -ENOMEM;
        }
        size_t k = 0;
        for (size_t i = 0; i < l->n_pages; i++) {
                if (l->pages[i].n)
                        memcpy(items + k, l->pages[i].items, l->pages[i].n * sizeof(*items));
                k += l->pages[i].n;
                free(l->pages[i].items);
                memset(&l->pages[i], 0, sizeof(l->pages[i]));
        }
        for (size_t i = 0; i < n; i++)
                idx[i] = i;
        qsort_r(idx, n, sizeof(*idx), cmp_idx, items);
        for (size_t i = 1; i < n; i++)
                if (strcmp(items[idx[i]].id, items[idx[i - 1]].id) == 0)
                        order_clear(&items[idx[i]]);   /* id NULL marks it dropped */
        free(idx);
        size_t w = 0;
        for (size_t i = 0; i < n; i++)
                if (items[i].id)
                        items[w++] = items[i];
        out->items = items;
        out->n = w;
        out->cap = n;
        return 0;
}

static void list_finish(struct mp_list *l) {
        struct order_list result = { 0 };
        if (l->c && l->r >= 0) {
                int r = list_merge(l, &result);
                if (r < 0)
                        list_fail(l, r, l->status, strdup("order list: out of memory"));
        }
        if (l->c)
                l->cb(l->ud, l->r, l->status, l->r < 0 ? l->err : NULL, &result);
        order_list_clear(&result);
        list_free(l);
}

static void page_done(struct mp_req *q, int r, const struct http_response *resp) {
        struct mp_list *l = q->list;
        _cleanup_free_ char *perr = NULL;
        l->pending--;
        if (!l->c || l->r < 0)
                goto out;
        if (r < 0 || !resp || resp->status != 200) {
                list_fail(l, r, resp ? resp->status : 0, describe(q, r, resp));
                goto out;
        }
        l->status = resp->status;

        long total, limit;
        size_t items, before = l->pages[q->page].n;
        struct page_ctx pc = { .c = l->c, .page = q->page, .offset = q->page * (size_t) l->limit };
        int k = parse_page(&pc, resp->body, resp->body_len, &l->pages[q->page], &total, &limit,
                           &items, &perr);
        if (k < 0) {
                list_fail(l, k, resp->status, describe_msg(q, perr ? perr : "out of memory"));
                goto out;
        }
        for (size_t i = before; i < l->pages[q->page].n; i++)
                l->bytes += order_size(&l->pages[q->page].items[i]);
        if (l->bytes > l->c->max_orders_bytes) {
                char m[160];
                snprintf(m, sizeof(m), "order list: the orders take more than %zu bytes "
                         "([marketplace] max_orders_bytes)", l->c->max_orders_bytes);
                list_fail(l, -E2BIG, resp->status, describe_msg(q, m));
                goto out;
        }
        if (q->page == 0) {
                /* A server that caps limit lower than asked sets the stride. */
                if (limit > 0 && limit < l->limit)
                        l->limit = limit;
                if (total >= 0) {
                        if (total > MP_MAX_ORDERS) {
                                char m[128];
                                snprintf(m, sizeof(m), "order list: total %ld exceeds the limit of %d",
                                         total, MP_MAX_ORDERS);
                                list_fail(l, -E2BIG, resp->status, describe_msg(q, m));
                                goto out;
                        }
                        size_t n = ((size_t) total + (size_t) l->limit - 1) / (size_t) l->limit;
                        /* all remaining pages at once; http bounds parallelism */
                        for (size_t p = n; p > 1; p--) {
                                k = list_submit_page(l, p - 1);
                                if (k < 0) {
                                        list_fail(l, k, 0, describe_msg(q, strerror(-k)));
                                        goto out;
                                }
                        }
                        goto out;
                }
                l->sequential = true;
        }
        if (l->sequential && items >= (size_t) l->limit) {
                if ((q->page + 1) * (size_t) l->limit >= MP_MAX_ORDERS) {
                        list_fail(l, -E2BIG, resp->status,
                                  describe_msg(q, "order list: too many pages"));
                        goto out;
                }
                k = list_submit_page(l, q->page + 1);
                if (k < 0)
                        list_fail(l, k, 0, describe_msg(q, strerror(-k)));
        }
out:
        if (l->pending == 0)
                list_finish(l);
}

int mp_list_orders(struct mp_client *c, const enum order_status *statuses, size_t n_statuses,
                   mp_list_fn cb, void *ud) {
        if (!c || !cb)
                return -EINVAL;
        _cleanup_free_ char *rql = mp_build_rql(statuses, n_statuses,
                                                (const char *const *) c->products, c->n_products);
        if (!rql)
                return -EINVAL;
        struct mp_list *l = calloc(1, sizeof(*l));
        if (!l)
                return -ENOMEM;
        l->c = c;
        l->cb = cb;
        l->ud = ud;
        l->limit = c->page_size;
        if (asprintf(&l->url, "%s/commerce/orders?%s&select=%s&order=%s", c->base, rql,
                     MP_LIST_SELECT, MP_LIST_ORDER) < 0) {
                l->url = NULL;
                list_free(l);
                return -ENOMEM;
        }
        int r = list_submit_page(l, 0);
        if (r < 0) {
                list_free(l);
                return r;
        }
        return 0;
}

/* ---- single requests ---- */

/* Reports a failure to the request's callback; takes err. */
static void req_fail(struct mp_req *q, int r, long status, char *err) {
        const char *e = err ? err : "out of memory";
        switch (q->kind) {
        case REQ_TEXT:
                q->cb.text(q->ud, r, status, e, NULL);
                break;
        case REQ_ORDER: {
                struct mp_order_result res = { .outcome = MP_UNKNOWN, .r = r, .status = status, .err = e };
                q->cb.order(q->ud, &res);
                break;
        }
        case REQ_CONTACT:
                q->cb.contact(q->ud, r, status, e, NULL);
                break;
        default:
                break;
        }
        free(err);
}

/* true (after reporting) unless resp is a 200. */
static bool req_failed(struct mp_req *q, int r, const struct http_response *resp) {
        if (r >= 0 && resp && resp->status == 200)
                return false;
        req_fail(q, r < 0 ? r : -EIO, resp ? resp->status : 0, describe(q, r, resp));
        return true;
}

static void text_done(struct mp_req *q, int r, const struct http_response *resp) {
        _cleanup_free_ char *text = NULL;
        if (req_failed(q, r, resp))
                return;
        long status = resp->status;
        if (resp->body_len > MP_TEMPLATE_MAX) {
                req_fail(q, -EFBIG, status, describe_msg(q, "template too large"));
                return;
        }
        /* The OpenAPI types the body as a JSON string; the official client
         * takes the raw text.  Accept both. */
        const char *b = resp->body;
        while (*b == ' ' || *b == '\t' || *b == '\r' || *b == '\n')
                b++;
        if (*b == '"') {
                json_t *j = json_loadb(resp->body, resp->body_len, JSON_DECODE_ANY, NULL);
                if (json_is_string(j))
                        text = strndup(json_string_value(j), json_string_length(j));
                json_decref(j);
        }
        if (!text)
                text = strndup(resp->body, resp->body_len);
        if (!text) {
                req_fail(q, -ENOMEM, status, NULL);
                return;
        }
        q->cb.text(q->ud, 0, status, NULL, text);
}

const char *mp_outcome_to_string(enum mp_outcome o) {
        static const char *const names[] = {
                [MP_DONE] = "done", [MP_MOVED] = "moved", [MP_GONE] = "gone",
                [MP_REFUSED] = "refused", [MP_UNKNOWN] = "unknown",
        };
        return (unsigned) o < sizeof(names) / sizeof(names[0]) ? names[o] : "unknown";
}

enum mp_outcome mp_order_outcome(bool action, int r, long status, const struct order *body_order) {
        if (r < 0)
                return MP_UNKNOWN;
        if (status == 200)
                return body_order ? MP_DONE : MP_UNKNOWN;
        if (status == 404)
                return MP_GONE;
        if (!action || status < 400 || status > 499)
                return MP_UNKNOWN;
        /* The platform refuses an action on an order in the wrong state:
         * 409 [A: marketplace-api.md §4], or another 4xx carrying the
         * order's new state (issue 11). */
        if (status == MP_ACTION_MOVED_STATUS ||
            (body_order && body_order->status != ORDER_STATUS_QUERYING))
                return MP_MOVED;
        /* Not applied, but worth another try once the order was read again. */
        if (status == 401 || status == 408 || status == 429)
                return MP_UNKNOWN;
        return MP_REFUSED;
}

/* The single-order GET and the Process POST: the body (a 200, or a 4xx
 * answer to an action that may carry the order) is read as an order, then
 * the outcome decides what the caller hears. */
static void order_done(struct mp_req *q, int r, const struct http_response *resp) {
        bool action = strcmp(q->method, "GET") != 0;
        long status = r >= 0 && resp ? resp->status : 0;
        struct order o;
        bool have = false;
        _cleanup_free_ char *perr = NULL, *err = NULL;

        if (r >= 0 && resp && (status == 200 || (action && status >= 400 && status < 500))) {
                json_t *j = json_loadb(resp->body, resp->body_len, JSON_REJECT_DUPLICATES, NULL);
                have = mp_parse_order(j, &o, &perr) >= 0;
                json_decref(j);
        }
        enum mp_outcome oc = mp_order_outcome(action, r, status, have ? &o : NULL);
        if (oc != MP_DONE) {
                err = status == 200 ? describe_msg(q, perr ? perr : "invalid order") : describe(q, r, resp);
                r = r < 0 ? r : status == 200 ? -EBADMSG : -EIO;
        }
        struct mp_order_result res = {
                .outcome = oc,
                .r = oc == MP_DONE ? 0 : r,
                .status = status,
                .err = oc == MP_DONE ? NULL : err ? err : "out of memory",
                .order = have ? &o : NULL,
        };
        q->cb.order(q->ud, &res);
        if (have)
                order_clear(&o);
}

static void contact_done(struct mp_req *q, int r, const struct http_response *resp) {
        if (req_failed(q, r, resp))
                return;
        long status = resp->status;
        json_t *j = json_loadb(resp->body, resp->body_len, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(j)) {
                json_decref(j);
                req_fail(q, -EBADMSG, status, describe_msg(q, "invalid JSON"));
                return;
        }
        const json_t *ct = api_json_obj(j, "contact");
        struct order_contact contact = { 0 };
        contact.email = dup_clean(api_json_str(ct, "email"), 254);
        if (!email_plausible(contact.email))
                util_freep(&contact.email);
        contact.name = dup_clean(api_json_str(ct, "name"), 256);
        if (!contact.name) {
                _cleanup_free_ char *first = dup_clean(api_json_str(ct, "firstName"), 256);
                _cleanup_free_ char *last = dup_clean(api_json_str(ct, "lastName"), 256);
                if ((first || last) &&
                    asprintf(&contact.name, "%s%s%s", first ? first : "",
                             first && last ? " " : "", last ? last : "") < 0)
                        contact.name = NULL;
        }
        json_decref(j);
        /* contact may be null on the buyer: report "no contact" */
        q->cb.contact(q->ud, 0, status, NULL, contact.email || contact.name ? &contact : NULL);
        free(contact.name);
        free(contact.email);
}

static void http_done(void *userdata, int r, const struct http_response *resp) {
        struct mp_req *q = userdata;
        if (q->kind == REQ_PAGE)
                page_done(q, r, resp);
        else if (q->c) {
                switch (q->kind) {
                case REQ_TEXT:
                        text_done(q, r, resp);
                        break;
                case REQ_ORDER:
                        order_done(q, r, resp);
                        break;
                case REQ_CONTACT:
                        contact_done(q, r, resp);
                        break;
                default:
                        break;
                }
        }
        req_free(q);
}

/* A request of kind for callback cb: builds the URL and submits it. */
static int req_start(struct mp_client *c, enum req_kind kind, const char *method, union mp_cb cb,
                     void *ud, const char *body, const char *fmt, ...) __attribute__((format(printf, 7, 8)));
static int req_start(struct mp_client *c, enum req_kind kind, const char *method, union mp_cb cb,
                     void *ud, const char *body, const char *fmt, ...) {
        struct mp_req *q = req_new(kind, method, ud);
        if (!q)
                return -ENOMEM;
        q->cb = cb;
        _cleanup_free_ char *url = NULL;
        va_list ap;
        va_start(ap, fmt);
        int n = vasprintf(&url, fmt, ap);
        va_end(ap);
        if (n < 0) {
                url = NULL;
                req_free(q);
                return -ENOMEM;
        }
        return req_submit(c, q, url, body);
}

int mp_get_template(struct mp_client *c, const char *order_id, mp_text_fn cb, void *ud) {
        if (!c || !cb || !mp_order_id_valid(order_id))
                return -EINVAL;
        return req_start(c, REQ_TEXT, "GET", (union mp_cb) { .text = cb }, ud, NULL,
                         "%s/commerce/orders/%s/template", c->base, order_id);
}

int mp_get_order(struct mp_client *c, const char *order_id, mp_order_fn cb, void *ud) {
        if (!c || !cb || !mp_order_id_valid(order_id))
                return -EINVAL;
        return req_start(c, REQ_ORDER, "GET", (union mp_cb) { .order = cb }, ud, NULL,
                         "%s/commerce/orders/%s?select=%s", c->base, order_id, MP_ORDER_SELECT);
}

/* Never re-sent (POST, idempotent=false: http neither retries it nor lets
 * libcurl re-send it on a reused connection); the caller re-reads the
 * order when the outcome is unknown. */
int mp_process_order(struct mp_client *c, const char *order_id, mp_order_fn cb, void *ud) {
        if (!c || !cb || !mp_order_id_valid(order_id))
                return -EINVAL;
        return req_start(c, REQ_ORDER, "POST", (union mp_cb) { .order = cb }, ud, "{}",
                         "%s/commerce/orders/%s/process", c->base, order_id);
}

int mp_get_buyer_contact(struct mp_client *c, const char *buyer_id, mp_contact_fn cb, void *ud) {
        if (!c || !cb || !plain_id_valid(buyer_id))
                return -EINVAL;
        return req_start(c, REQ_CONTACT, "GET", (union mp_cb) { .contact = cb }, ud, NULL,
                         "%s/accounts/buyers/%s", c->base, buyer_id);
}
