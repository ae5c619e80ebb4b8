/* SPDX-License-Identifier: MIT */
#include "clusterstore.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "store.h"
#include "util.h"

/* One etcd key and its value. */
struct rec {
        char *key;
        char *text;
};

struct cstore {
        struct etcd *etcd;
        char *prefix;                   /* <prefix> */
        char *state_prefix;             /* <prefix>state/ */
        char *meta_key;                 /* <prefix>state/meta */
        char *cust_prefix;              /* <prefix>state/customers/ */
        struct rec *saved;              /* what etcd holds, as far as we know; sorted */
        size_t n_saved;
        bool busy;
        bool dead;
};

enum job_kind { JOB_LOAD, JOB_SAVE, JOB_MIGRATE };

struct job {
        struct cstore *s;
        enum job_kind kind;
        struct rec *want;               /* the new snapshot, sorted */
        size_t n_want;
        struct etcd_op *ops;
        size_t n_ops, next;
        struct etcd_compare fence[1];
        size_t n_fence;
        int64_t meta_rev;               /* migrate: revision of the first batch */
        cstore_done_fn cb;
        void *userdata;
};

static void recs_free(struct rec *r, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(r[i].key);
                free(r[i].text);
        }
        free(r);
}

static char *cat(const char *a, const char *b) {
        char *s;
        return asprintf(&s, "%s%s", a, b) < 0 ? NULL : s;
}

static void cstore_destroy(struct cstore *s);

int cstore_new(struct etcd *etcd, const char *prefix, struct cstore **ret) {
        if (!etcd || !prefix || !*prefix || util_has_ctl(prefix, false))
                return -EINVAL;
        struct cstore *s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->etcd = etcd;
        s->prefix = strdup(prefix);
        s->state_prefix = cat(prefix, "state/");
        s->meta_key = cat(prefix, "state/meta");
        s->cust_prefix = cat(prefix, "state/customers/");
        if (!s->prefix || !s->state_prefix || !s->meta_key || !s->cust_prefix) {
                cstore_destroy(s);
                return -ENOMEM;
        }
        *ret = s;
        return 0;
}

static void cstore_destroy(struct cstore *s) {
        recs_free(s->saved, s->n_saved);
        free(s->prefix);
        free(s->state_prefix);
        free(s->meta_key);
        free(s->cust_prefix);
        free(s);
}

struct cstore *cstore_free(struct cstore *s) {
        if (!s)
                return NULL;
        s->dead = true;
        if (!s->busy)
                cstore_destroy(s);
        return NULL;
}

static int cmp_rec(const void *a, const void *b) {
        return strcmp(((const struct rec *) a)->key, ((const struct rec *) b)->key);
}

static char *dump(const json_t *j) {
        return json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
}

/* The state as sorted records: meta, then one per customer. */
static int encode(const struct cstore *s, const struct state *st, struct rec **ret, size_t *ret_n) {
        char *text = NULL;
        int r = store_to_json(st, &text);
        if (r < 0)
                return r;
        json_t *root = json_loads(text, 0, NULL);
        free(text);
        json_t *customers = json_object_get(root, "customers");
        if (!json_is_array(customers)) {
                json_decref(root);
                return -ENOMEM;
        }
        size_t n = json_array_size(customers), k = 0;
        struct rec *recs = calloc(n + 1, sizeof(*recs));
        r = recs ? 0 : -ENOMEM;
        size_t i;
        json_t *c;
        json_array_foreach(customers, i, c) {
                if (r < 0)
                        break;
                if (asprintf(&recs[k].key, "%s%s", s->cust_prefix, json_string_value(json_object_get(c, "key"))) < 0) {
                        recs[k].key = NULL;
                        r = -ENOMEM;
                        break;
                }
                recs[k].text = dump(c);
                r = recs[k++].text ? 0 : -ENOMEM;
        }
        if (r == 0) {
                json_object_del(root, "customers");
                recs[k].key = strdup(s->meta_key);
                recs[k].text = dump(root);
                r = recs[k].key && recs[k].text ? 0 : -ENOMEM;
                k++;
        }
        json_decref(root);
        if (r < 0) {
                recs_free(recs, k);
                return r;
        }
        qsort(recs, k, sizeof(*recs), cmp_rec);
        *ret = recs;
        *ret_n = k;
        return 0;
}

static int add_op(struct job *j, enum etcd_op_type type, const struct rec *r) {
        struct etcd_op *ops = realloc(j->ops, (j->n_ops + 1) * sizeof(*ops));
        if (!ops)
                return -ENOMEM;
        j->ops = ops;
        ops[j->n_ops++] = (struct etcd_op) { .type = type, .key = r->key, .value = r->text,
                                             .value_len = r->text ? strlen(r->text) : 0 };
        return 0;
}

/* Puts for what is new or changed, deletes for what is gone (both sorted). */
static int diff(struct job *j, const struct rec *old, size_t n_old) {
        size_t a = 0, b = 0;
        int r = 0;
        while (r == 0 && (a < n_old || b < j->n_want)) {
                int c = a == n_old ? 1 : b == j->n_want ? -1 : strcmp(old[a].key, j->want[b].key);
                if (c < 0)
                        r = add_op(j, ETCD_OP_DELETE, &old[a++]);
                else if (c > 0)
                        r = add_op(j, ETCD_OP_PUT, &j->want[b++]);
                else {
                        if (strcmp(old[a].text, j->want[b].text) != 0)
                                r = add_op(j, ETCD_OP_PUT, &j->want[b]);
                        a++;
                        b++;
                }
        }
        return r;
}

static void job_end(struct job *j, int r, struct state *loaded, const char *err) {
        struct cstore *s = j->s;
        if (r == 0 && j->kind != JOB_LOAD && !s->dead) {
                recs_free(s->saved, s->n_saved);
                s->saved = j->want;
                s->n_saved = j->n_want;
                j->want = NULL;
                j->n_want = 0;
        }
        s->busy = false;
        if (s->dead && r == 0)
                r = -ECANCELED;
        if (r < 0) {
                state_free(loaded);
                loaded = NULL;
        }
        j->cb(j->userdata, r, loaded, err);
        recs_free(j->want, j->n_want);
        free(j->ops);
        free(j);
        if (s->dead && !s->busy)
                cstore_destroy(s);
}

static void next_batch(struct job *j);

static void on_batch(void *userdata, int r, const struct etcd_result *res) {
        struct job *j = userdata;
        if (r == 0 && !res->succeeded)
                r = j->kind == JOB_MIGRATE && j->meta_rev == 0 ? -EEXIST : -EPERM;
        if (r < 0 || j->s->dead) {
                job_end(j, r, NULL, NULL);
                return;
        }
        if (j->kind == JOB_MIGRATE && j->meta_rev == 0) {
                /* later batches: nobody touched the meta key since ours */
                j->meta_rev = res->revision;
                j->fence[0] = (struct etcd_compare) { .key = j->s->meta_key, .target = ETCD_TARGET_MOD,
                                                      .value = res->revision };
        }
        next_batch(j);
}

static void next_batch(struct job *j) {
        if (j->next >= j->n_ops) {
                job_end(j, 0, NULL, NULL);
                return;
        }
        size_t n = j->n_ops - j->next < CSTORE_TXN_OPS ? j->n_ops - j->next : CSTORE_TXN_OPS;
        const struct etcd_txn t = { j->fence, j->n_fence, &j->ops[j->next], n, NULL, 0 };
        j->next += n;
        int r = etcd_txn(j->s->etcd, &t, on_batch, j);
        if (r < 0)
                job_end(j, r, NULL, NULL);
}

static struct job *job_new(struct cstore *s, enum job_kind kind, cstore_done_fn cb, void *userdata) {
        if (s->busy || s->dead)
                return NULL;
        struct job *j = calloc(1, sizeof(*j));
        if (!j)
                return NULL;
        *j = (struct job) { .s = s, .kind = kind, .cb = cb, .userdata = userdata };
        return j;
}

static int job_free_early(struct job *j, int r) {
        recs_free(j->want, j->n_want);
        free(j->ops);
        free(j);
        return r;
}

int cstore_save(struct cstore *s, const struct etcd_compare *fence, const struct state *st,
                cstore_done_fn cb, void *userdata) {
        if (!s || !fence || !st || !cb)
                return -EINVAL;
        struct job *j = job_new(s, JOB_SAVE, cb, userdata);
        if (!j)
                return s->busy ? -EBUSY : -ENOMEM;
        j->fence[0] = *fence;
        j->n_fence = 1;
        int r = encode(s, st, &j->want, &j->n_want);
        if (r == 0)
                r = diff(j, s->saved, s->n_saved);
        if (r < 0)
                return job_free_early(j, r);
        s->busy = true;
        next_batch(j);
        return 0;
}

/* ---- load ---------------------------------------------------------------- */

/* The document store_from_json() reads, from the records. */
static int assemble(struct job *j, const struct etcd_result *res, char **ret_text) {
        json_t *root = NULL, *customers = json_array();
        int r = customers ? 0 : -ENOMEM;
        for (size_t i = 0; r == 0 && i < res->n_kvs; i++) {
                const struct etcd_kv *kv = &res->kvs[i];
                json_t *v = json_loadb(kv->value, kv->value_len, 0, NULL);
                if (strcmp(kv->key, j->s->meta_key) == 0 && json_is_object(v))
                        root = json_incref(v);
                else if (strncmp(kv->key, j->s->cust_prefix, strlen(j->s->cust_prefix)) == 0 && v)
                        r = json_array_append(customers, v) < 0 ? -ENOMEM : 0;
                else
                        r = -EBADMSG;
                json_decref(v);
                j->want[j->n_want].key = strdup(kv->key);
                j->want[j->n_want].text = strndup(kv->value, kv->value_len);
                if (!j->want[j->n_want].key || !j->want[j->n_want].text)
                        r = -ENOMEM;
                j->n_want++;
        }
        if (r == 0 && !root)
                r = (root = json_pack("{s:i}", "version", STATE_VERSION)) ? 0 : -ENOMEM;
        if (r == 0 && json_object_set(root, "customers", customers) < 0)
                r = -ENOMEM;
        if (r == 0 && !(*ret_text = json_dumps(root, JSON_COMPACT)))
                r = -ENOMEM;
        json_decref(root);
        json_decref(customers);
        return r;
}

static void on_load(void *userdata, int r, const struct etcd_result *res) {
        struct job *j = userdata;
        struct state *st = NULL;
        char *text = NULL, *err = NULL;
        if (r == 0 && !(j->want = calloc(res->n_kvs + 1, sizeof(*j->want))))
                r = -ENOMEM;
        if (r == 0)
                r = assemble(j, res, &text);
        if (r == 0 && store_from_json(text, strlen(text), &st, &err) < 0)
                r = -EBADMSG;
        free(text);
        if (r == 0 && !j->s->dead) {
                qsort(j->want, j->n_want, sizeof(*j->want), cmp_rec);
                recs_free(j->s->saved, j->s->n_saved);
                j->s->saved = j->want;
                j->s->n_saved = j->n_want;
                j->want = NULL;
                j->n_want = 0;
        }
        job_end(j, r, st, err);     /* st: NULL unless r == 0 */
        free(err);
}

int cstore_load(struct cstore *s, cstore_done_fn cb, void *userdata) {
        if (!s || !cb)
                return -EINVAL;
        struct job *j = job_new(s, JOB_LOAD, cb, userdata);
        if (!j)
                return s->busy ? -EBUSY : -ENOMEM;
        int r = etcd_range(s->etcd, s->state_prefix, true, on_load, j);
        if (r < 0)
                return job_free_early(j, r);
        s->busy = true;
        return 0;
}

/* ---- migrate ------------------------------------------------------------- */

static void on_migrate_check(void *userdata, int r, const struct etcd_result *res) {
        struct job *j = userdata;
        if (r == 0 && res->count > 0)
                r = -EEXIST;
        if (r < 0 || j->s->dead) {
                job_end(j, r, NULL, NULL);
                return;
        }
        next_batch(j);
}

int cstore_migrate(struct cstore *s, const struct state *st, cstore_done_fn cb, void *userdata) {
        if (!s || !st || !cb)
                return -EINVAL;
        struct job *j = job_new(s, JOB_MIGRATE, cb, userdata);
        if (!j)
                return s->busy ? -EBUSY : -ENOMEM;
        int r = encode(s, st, &j->want, &j->n_want);
        /* meta first: the first batch creates it only if absent */
        for (size_t i = 0; r == 0 && i < j->n_want; i++)
                if (strcmp(j->want[i].key, s->meta_key) == 0)
                        r = add_op(j, ETCD_OP_PUT, &j->want[i]);
        for (size_t i = 0; r == 0 && i < j->n_want; i++)
                if (strcmp(j->want[i].key, s->meta_key) != 0)
                        r = add_op(j, ETCD_OP_PUT, &j->want[i]);
        j->fence[0] = (struct etcd_compare) { .key = s->meta_key, .target = ETCD_TARGET_CREATE, .value = 0 };
        j->n_fence = 1;
        if (r == 0)
                r = etcd_count(s->etcd, s->prefix, true, on_migrate_check, j);
        if (r < 0)
                return job_free_early(j, r);
        s->busy = true;
        return 0;
}
