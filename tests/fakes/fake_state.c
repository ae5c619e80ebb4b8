/* SPDX-License-Identifier: MIT */
/* fakeplatform: scenario loading, tenants, issued tokens, request log. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fake.h"
#include "util.h"

#define SCENARIO_MAX (16 * 1024 * 1024)

static char *dup_str(json_t *obj, const char *key, const char *def) {
        const char *v = json_string_value(json_object_get(obj, key));
        return util_strdup0(v ? v : def);
}

static int err(char **ret_err, const char *msg, const char *what) {
        if (asprintf(ret_err, "%s%s", msg, what) < 0)
                *ret_err = NULL;
        return -EINVAL;
}

static int load_tenant(struct fake_state *s, struct fake_tenant *t, json_t *j, char **ret_err) {
        char uuid[37];

        if (!json_is_object(j) || !json_is_string(json_object_get(j, "id")))
                return err(ret_err, "tenant without string \"id\"", "");
        const char *acct = json_string_value(json_object_get(j, "account"));
        t->account = acct ? fake_account_find(s, acct) : 0;
        if (t->account < 0)
                return err(ret_err, "tenant names an unknown partner account: ", acct);
        t->id = dup_str(j, "id", NULL);
        t->domain = dup_str(j, "domain", "");
        t->name = dup_str(j, "name", t->domain);
        t->relationship = dup_str(j, "relationship", "reseller");
        util_uuid4(uuid);
        t->commerce_id = dup_str(j, "commerce_id", uuid);
        t->accepted = util_streq_ci(json_string_value(json_object_get(j, "state")), "accepted");
        t->accept_after_checks = (int) json_integer_value(json_object_get(j, "accept_after_checks"));
        t->pending_status = (int) json_integer_value(json_object_get(j, "pending_status"));
        if (t->pending_status != 403)
                t->pending_status = 404;
        return 0;
}

static int regionalize_order(struct fake_state *s, json_t **obj, const char *acct, char **ret_err);

static int load_gdap(struct fake_state *s, struct fake_gdap *g, json_t *j, char **ret_err) {
        if (!json_is_object(j) || !json_is_string(json_object_get(j, "id")))
                return err(ret_err, "gdap relationship without string \"id\"", "");
        const char *acct = json_string_value(json_object_get(j, "account"));
        g->account = acct ? fake_account_find(s, acct) : 0;
        if (g->account < 0)
                return err(ret_err, "gdap relationship names an unknown partner account: ", acct);
        g->id = dup_str(j, "id", NULL);
        g->tenant_id = dup_str(j, "tenant_id", "00000000-0000-0000-0000-000000000000");
        g->customer_name = dup_str(j, "customer_name", "Customer");
        g->display_name = dup_str(j, "display_name", g->customer_name);
        g->status = dup_str(j, "status", "approvalPending");
        g->active_after_reads = (int) json_integer_value(json_object_get(j, "active_after_reads"));
        g->created = util_now_wall() - 86400;
        if (strcmp(g->status, "active") == 0)
                g->activated = g->created + 3600;
        return g->id && g->tenant_id && g->customer_name && g->display_name && g->status ? 0 : -ENOMEM;
}

struct fake_gdap *fake_gdap_find(struct fake_state *s, const char *id) {
        for (size_t i = 0; id && i < s->n_gdap; i++)
                if (strcmp(s->gdap[i].id, id) == 0)
                        return &s->gdap[i];
        return NULL;
}

static int load_order(struct fake_state *s, struct fake_order *o, json_t *j, char **ret_err) {
        if (!json_is_object(j) || !json_is_string(json_object_get(j, "id")))
                return err(ret_err, "order without string \"id\"", "");
        o->obj = json_deep_copy(j);
        const char *acct = json_string_value(json_object_get(j, "x-fake-partner-account"));
        if (s->regional_partner_ids && regionalize_order(s, &o->obj, acct, ret_err) < 0)
                return -EINVAL;
        o->template_raw = json_is_true(json_object_get(j, "x-fake-template-raw"));
        o->revision = (int) json_integer_value(json_object_get(j, "x-fake-revision"));
        if (json_is_integer(json_object_get(j, "revision")))
                o->revision = (int) json_integer_value(json_object_get(j, "revision"));
        if (o->revision <= 0)
                o->revision = 1;
        json_object_del(o->obj, "revision");    /* not in the schema */
        fake_strip_private(o->obj);
        return 0;
}

static int load_account(struct fake_account *a, json_t *j, const char *name, char **ret_err) {
        a->name = dup_str(j, "name", name);
        a->tenant = dup_str(j, "tenant", "partner.onmicrosoft.com");
        a->client_id = dup_str(j, "client_id", "00000000-0000-0000-0000-000000000001");
        a->client_secret = dup_str(j, "client_secret", "secret");
        a->partner_id = dup_str(j, "partner_id", name ? FAKE_DEFAULT_PARTNER_ID : NULL);
        if (!a->name || !a->partner_id)
                return err(ret_err, "partner account needs \"name\" and \"partner_id\"", "");
        return 0;
}

static int load_microsoft(struct fake_state *s, json_t *root, char **ret_err) {
        json_t *ms = json_object_get(root, "microsoft"), *pa = json_object_get(root, "partner_accounts");
        s->ms_tenant = dup_str(ms, "tenant", "partner.onmicrosoft.com");
        s->client_id = dup_str(ms, "client_id", "00000000-0000-0000-0000-000000000001");
        s->client_secret = dup_str(ms, "client_secret", "secret");
        s->expires_in = (int) json_integer_value(json_object_get(ms, "expires_in"));
        if (s->expires_in <= 0)
                s->expires_in = 3600;
        /* realism (load_mp) turns it on too: SoftwareOne's regional entities
         * each send their own partnerId */
        s->regional_partner_ids = s->realism || json_is_true(json_object_get(root, "regional_partner_ids"));
        int r = load_account(&s->accounts[s->n_accounts++], ms, "default", ret_err);
        for (size_t i = 0; r >= 0 && i < json_array_size(pa); i++) {
                if (s->n_accounts == FAKE_MAX_ACCOUNTS)
                        return err(ret_err, "too many partner_accounts", "");
                r = load_account(&s->accounts[s->n_accounts++], json_array_get(pa, i), NULL, ret_err);
        }
        return r;
}

/* regional_partner_ids: every relationship link of the order (parameters,
 * error text, wherever it is written) names the partnerId of the account
 * in x-fake-partner-account (default: the "microsoft" one), as SoftwareOne's
 * regional entities each send their own (partner-center-api.md 3.2). */
static int regionalize_order(struct fake_state *s, json_t **obj, const char *acct, char **ret_err) {
        int ai = acct ? fake_account_find(s, acct) : 0;
        if (ai < 0)
                return err(ret_err, "order names an unknown partner account: ", acct);
        char *text = json_dumps(*obj, JSON_COMPACT);
        if (!text)
                return -ENOMEM;
        for (char *p = text; (p = strstr(p, "partnerId=")); p += 10)
                if (strlen(p + 10) >= 36)
                        memcpy(p + 10, s->accounts[ai].partner_id, 36);
        json_t *n = json_loads(text, 0, NULL);
        free(text);
        if (!n)
                return -ENOMEM;
        json_decref(*obj);
        *obj = n;
        return 0;
}

/* realism, part 1: Microsoft's newer admin host admin.cloud.microsoft
 * carries the same invitation links as admin.microsoft.com (issue 11
 * part 4), and a real Marketplace shows both (realism_apply picks which). */
static int realism_cloud_host(struct fake_order *o) {
        static const char old[] = "https://admin.microsoft.com/", new[] = "https://admin.cloud.microsoft/";
        char *text = json_dumps(o->obj, JSON_COMPACT);
        if (!text)
                return -ENOMEM;
        size_t n = 0;
        for (char *p = text; (p = strstr(p, old)); p += sizeof(old) - 1)
                n++;
        char *out = malloc(strlen(text) + n * (sizeof(new) - sizeof(old)) + 1);
        if (!out) {
                free(text);
                return -ENOMEM;
        }
        char *w = out;
        for (const char *p = text, *q; ; p = q + sizeof(old) - 1) {
                q = strstr(p, old);
                size_t len = q ? (size_t) (q - p) : strlen(p);
                memcpy(w, p, len);
                w += len;
                if (!q)
                        break;
                memcpy(w, new, sizeof(new) - 1);
                w += sizeof(new) - 1;
        }
        *w = '\0';
        json_t *j = json_loads(out, 0, NULL);
        free(text);
        free(out);
        if (!j)
                return -ENOMEM;
        json_decref(o->obj);
        o->obj = j;
        return 0;
}

/* realism: the mix of admin hosts (above), one host per customer as a
 * customer's admins use one admin center: the orders of the 1st, 3rd, ...
 * buyer with a link (in scenario order) get the newer host. And the Process
 * race: the Marketplace refuses Process on an order that is no longer
 * Querying, "for example when the platform resumed it by itself between the
 * re-read and the Process call" (issue 11 part 4; the buyer, the vendor and
 * Ops can each resume a Querying order, shared/reference/marketplace-api.md
 * section 4). The last Querying order with a link is resumed by the platform
 * just before partnerd's first Process call on it; the POST then gets the
 * 409 problem details of an illegal transition naming the order's new state
 * (marketplace-api.md section 4 [A], the stricter choice). */
static int realism_apply(struct fake_state *s) {
        struct fake_order *last = NULL;
        json_t *buyers = json_object();
        int r = buyers ? 0 : -ENOMEM;
        for (size_t i = 0; r == 0 && i < s->n_orders; i++) {
                struct fake_order *o = &s->orders[i];
                char *text = json_dumps(o->obj, JSON_COMPACT);
                if (!text) {
                        r = -ENOMEM;
                        break;
                }
                bool link = strstr(text, "https://admin.microsoft.com/") != NULL;
                free(text);
                if (!link)
                        continue;
                const char *b = json_string_value(json_object_get(json_object_get(o->obj, "buyer"), "id"));
                b = b ? b : "";
                if (!json_object_get(buyers, b))
                        json_object_set_new(buyers, b, json_integer((json_int_t) json_object_size(buyers)));
                if (json_integer_value(json_object_get(buyers, b)) % 2 == 0)
                        r = realism_cloud_host(o);
                const char *st = json_string_value(json_object_get(o->obj, "status"));
                if (st && strcmp(st, "Querying") == 0)
                        last = o;
        }
        json_decref(buyers);
        if (r == 0 && last)
                last->resume_race = true;
        return r;
}

static int load_mp(struct fake_state *s, json_t *root, char **ret_err) {
        const char *tok = json_string_value(json_object_get(json_object_get(root, "marketplace"), "token"));
        const char *fa = json_string_value(json_object_get(root, "querying_fail_after"));

        s->mp_token = util_strdup0(tok ? tok : "idt:TKN-0000-0001:secret");
        /* "idt:TKN-XXXX-XXXX:secret" -> "TKN-XXXX-XXXX" for audit.by */
        const char *p = strstr(s->mp_token, "TKN-");
        s->mp_token_id = strndup(p ? p : "TKN-0000-0000", p ? strcspn(p, ":") : 13);
        if (fa && util_parse_duration(fa, &s->querying_fail_after) < 0)
                return err(ret_err, "bad querying_fail_after: ", fa);
        s->realism = json_is_true(json_object_get(root, "realism"));
        s->templates = json_incref(json_object_get(root, "templates"));
        if (!json_is_object(s->templates)) {
                json_decref(s->templates);
                s->templates = json_object();
        }
        s->buyers = json_incref(json_object_get(root, "buyers"));
        if (!json_is_array(s->buyers)) {
                json_decref(s->buyers);
                s->buyers = json_array();
        }
        return 0;
}

int fake_state_load(struct fake_state *s, const char *path, char **ret_err) {
        json_error_t jerr;
        json_t *root, *arr;
        size_t i;
        int r;

        *ret_err = NULL;
        root = json_load_file(path, 0, &jerr);
        if (!root) {
                if (asprintf(ret_err, "%s:%d: %s", path, jerr.line, jerr.text) < 0)
                        *ret_err = NULL;
                return -EINVAL;
        }
        s->log = json_array();
        s->start_ms = util_now_mono_ms();
        r = load_mp(s, root, ret_err);
        if (r < 0)
                goto out;
        r = load_microsoft(s, root, ret_err);
        if (r < 0)
                goto out;

        arr = json_object_get(root, "tenants");
        s->tenants = calloc(json_array_size(arr) + 1, sizeof(*s->tenants));
        for (i = 0; s->tenants && i < json_array_size(arr); i++, s->n_tenants++) {
                r = load_tenant(s, &s->tenants[i], json_array_get(arr, i), ret_err);
                if (r < 0)
                        goto out;
        }
        arr = json_object_get(root, "gdap_relationships");
        s->gdap = calloc(json_array_size(arr) + 1, sizeof(*s->gdap));
        for (i = 0; s->gdap && i < json_array_size(arr); i++, s->n_gdap++) {
                r = load_gdap(s, &s->gdap[i], json_array_get(arr, i), ret_err);
                if (r < 0)
                        goto out;
        }
        arr = json_object_get(root, "orders");
        s->orders = calloc(json_array_size(arr) + 1, sizeof(*s->orders));
        for (i = 0; s->orders && i < json_array_size(arr); i++, s->n_orders++) {
                r = load_order(s, &s->orders[i], json_array_get(arr, i), ret_err);
                if (r < 0)
                        goto out;
        }
        /* ids never change after loading; the first order of an id wins */
        s->order_index = json_object();
        for (i = 0; s->order_index && i < s->n_orders; i++) {
                const char *id = json_string_value(json_object_get(s->orders[i].obj, "id"));
                if (id && !json_object_get(s->order_index, id) &&
                    json_object_set_new(s->order_index, id, json_integer((json_int_t) i)) < 0) {
                        r = -ENOMEM;
                        goto out;
                }
        }
        r = (s->tenants && s->gdap && s->orders && s->order_index) ? 0 : -ENOMEM;
        if (r == 0 && s->realism)
                r = realism_apply(s);
out:
        json_decref(root);
        return r;
}

static void tenant_free(struct fake_tenant *t) {
        free(t->id);
        free(t->domain);
        free(t->name);
        free(t->relationship);
        free(t->commerce_id);
}

void fake_state_free(struct fake_state *s) {
        size_t i;

        for (i = 0; i < s->n_tenants; i++)
                tenant_free(&s->tenants[i]);
        free(s->tenants);
        for (i = 0; i < s->n_gdap; i++) {
                free(s->gdap[i].id);
                free(s->gdap[i].display_name);
                free(s->gdap[i].tenant_id);
                free(s->gdap[i].customer_name);
                free(s->gdap[i].status);
        }
        free(s->gdap);
        for (i = 0; i < s->n_orders; i++)
                json_decref(s->orders[i].obj);
        free(s->orders);
        json_decref(s->order_index);
        free(s->list_cache.key);
        free(s->list_cache.hits);
        for (i = 0; i < s->n_tokens; i++)
                free(s->tokens[i].token);
        for (i = 0; i < s->n_conts; i++) {
                free(s->conts[i].token);
                free(s->conts[i].field);
                free(s->conts[i].value);
        }
        for (i = 0; i < s->n_faults; i++)
                fake_fault_clear(&s->faults[i]);
        free(s->faults);
        json_decref(s->templates);
        json_decref(s->buyers);
        json_decref(s->log);
        free(s->mp_token);
        free(s->mp_token_id);
        free(s->ms_tenant);
        free(s->client_id);
        free(s->client_secret);
        for (i = 0; i < s->n_accounts; i++) {
                free(s->accounts[i].name);
                free(s->accounts[i].tenant);
                free(s->accounts[i].client_id);
                free(s->accounts[i].client_secret);
                free(s->accounts[i].partner_id);
        }
}

int fake_account_find(struct fake_state *s, const char *name) {
        for (size_t i = 0; name && i < s->n_accounts; i++)
                if (strcmp(s->accounts[i].name, name) == 0)
                        return (int) i;
        return -1;
}

struct fake_tenant *fake_tenant_find_for(struct fake_state *s, const char *id_or_domain, int account) {
        for (size_t i = 0; id_or_domain && i < s->n_tenants; i++)
                if ((account < 0 || s->tenants[i].account == account) &&
                    (util_streq_ci(s->tenants[i].id, id_or_domain) ||
                     util_streq_ci(s->tenants[i].domain, id_or_domain)))
                        return &s->tenants[i];
        return NULL;
}

struct fake_tenant *fake_tenant_find(struct fake_state *s, const char *id_or_domain) {
        return fake_tenant_find_for(s, id_or_domain, -1);
}

struct fake_order *fake_order_find(struct fake_state *s, const char *id) {
        json_t *i = id && s->order_index ? json_object_get(s->order_index, id) : NULL;

        return json_is_integer(i) ? &s->orders[json_integer_value(i)] : NULL;
}

int fake_token_issue(struct fake_state *s, char **ret_token) {
        unsigned char raw[24];
        char hex[2 * sizeof(raw) + 9] = "eyJfake.";
        int r;

        r = util_random_bytes(raw, sizeof(raw));
        if (r < 0)
                return r;
        for (size_t i = 0; i < sizeof(raw); i++)
                snprintf(hex + 8 + 2 * i, 3, "%02x", raw[i]);
        if (s->n_tokens == FAKE_MAX_TOKENS) {   /* forget the oldest */
                free(s->tokens[0].token);
                memmove(&s->tokens[0], &s->tokens[1], (FAKE_MAX_TOKENS - 1) * sizeof(s->tokens[0]));
                s->n_tokens--;
        }
        s->tokens[s->n_tokens] = (struct fake_token) {
                .token = strdup(hex),
                .expires_mono_ms = util_now_mono_ms() + (uint64_t) s->expires_in * 1000,
        };
        if (!s->tokens[s->n_tokens].token)
                return -ENOMEM;
        *ret_token = s->tokens[s->n_tokens++].token;
        return 0;
}

bool fake_token_valid(struct fake_state *s, const char *token) {
        return fake_token_account(s, token) >= 0;
}

int fake_token_account(struct fake_state *s, const char *token) {
        uint64_t now = util_now_mono_ms();

        for (size_t i = 0; token && i < s->n_tokens; i++)
                if (strcmp(s->tokens[i].token, token) == 0)
                        return s->tokens[i].expires_mono_ms > now ? s->tokens[i].account : -1;
        return -1;
}

int fake_token_graph(struct fake_state *s, const char *token) {
        uint64_t now = util_now_mono_ms();

        for (size_t i = 0; token && i < s->n_tokens; i++)
                if (strcmp(s->tokens[i].token, token) == 0)
                        return s->tokens[i].expires_mono_ms > now && s->tokens[i].account >= 0
                                       ? s->tokens[i].graph : -1;
        return -1;
}

const char *fake_bearer(const char *authorization) {
        if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0)
                return NULL;
        return authorization + 7;
}

void fake_sleep_ms(struct fake_state *s, int ms) {
        uint64_t end = util_now_mono_ms() + (uint64_t) (ms > 0 ? ms : 0);

        /* small steps so SIGTERM is not held up by a long stall */
        while (!atomic_load(&s->stopping)) {
                uint64_t now = util_now_mono_ms();
                if (now >= end)
                        break;
                uint64_t step = end - now > 20 ? 20 : end - now;
                struct timespec ts = { .tv_nsec = (long) step * 1000000L };
                nanosleep(&ts, NULL);
        }
}

static const char *auth_kind(struct fake_state *s, const struct fake_req *rq) {
        const char *b;

        if (!rq->authorization)
                return "none";
        b = fake_bearer(rq->authorization);
        if (b && ((s->mp_token && strcmp(b, s->mp_token) == 0) || fake_token_valid(s, b)))
                return "bearer-ok";
        return "bearer-bad";
}

/* Request data may be invalid UTF-8: never lose the log record for it. */
static json_t *jstr(const char *v) {
        json_t *j;

        if (!v)
                return json_null();
        j = json_string(v);
        return j ? j : json_string("(invalid UTF-8)");
}

/* Called with the lock held. */
void fake_log_request(struct fake_state *s, const struct fake_req *rq, int status, uint64_t bytes) {
        json_t *rec;

        const char *b = fake_bearer(rq->authorization);
        int acct = b ? fake_token_account(s, b) : -1;
        int graph = b ? fake_token_graph(s, b) : -1;
        rec = json_pack("{sI s:o s:o s:o s:i s:o s:o s:s s:b sI sI s:o s:o}",
                        "seq", (json_int_t) ++s->seq,
                        "method", jstr(rq->method),
                        "path", jstr(rq->path),
                        "query", jstr(rq->query),
                        "status", status,
                        "ms_request_id", jstr(rq->ms_request_id),
                        "ms_correlation_id", jstr(rq->ms_correlation_id),
                        "authorization_kind", auth_kind(s, rq),
                        "continuation", rq->continuation != NULL,
                        "t_ms", (json_int_t) (util_now_mono_ms() - s->start_ms),
                        "bytes", (json_int_t) bytes,
                        /* the partner account whose token was presented */
                        "account", acct >= 0 ? json_string(s->accounts[acct].name) : json_null(),
                        /* the audience of the token presented: which service it was for */
                        "audience", graph < 0 ? json_null()
                                              : json_string(graph ? "graph" : "partner-center"));
        if (!rec)
                return;
        if (s->log_file) {
                char *line = json_dumps(rec, JSON_COMPACT);
                if (line) {
                        fprintf(s->log_file, "%s\n", line);
                        fflush(s->log_file);
                        free(line);
                }
        }
        json_array_append_new(s->log, rec);
}
