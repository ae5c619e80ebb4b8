/* SPDX-License-Identifier: MIT */
/*
 * clusteroutbox: lib/mail's outbox files mirrored to etcd (see the header).
 * The files are opaque here: a name, a size, an mtime, the bytes.
 */
#include "clusteroutbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

struct ent {
        char *name;                  /* "<queued>-<random>.msg" */
        off_t size;
        int64_t mtime_ns;
};

struct coutbox {
        struct etcd *etcd;
        char *key_prefix;            /* <prefix>outbox/ */
        char *dir;
        struct ent *mirror;          /* what etcd holds, as of the last sync/restore; sorted */
        size_t n_mirror;
        bool busy, dead;
};

struct item {
        enum etcd_op_type type;
        char *key;
        char *data;                  /* PUT */
        size_t len;
};

struct job {
        struct coutbox *o;
        coutbox_done_fn cb;
        void *userdata;
        struct etcd_compare fence;
        struct ent *want;            /* sync: the directory as scanned */
        size_t n_want;
        struct item *items;
        size_t n_items, next;
};

static void ents_free(struct ent *e, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(e[i].name);
        free(e);
}

static void coutbox_destroy(struct coutbox *o) {
        ents_free(o->mirror, o->n_mirror);
        free(o->key_prefix);
        free(o->dir);
        free(o);
}

int coutbox_new(struct etcd *etcd, const char *prefix, const char *outbox_dir, struct coutbox **ret) {
        if (!etcd || !prefix || !*prefix || !outbox_dir || util_has_ctl(prefix, false))
                return -EINVAL;
        struct coutbox *o = calloc(1, sizeof(*o));
        if (!o)
                return -ENOMEM;
        o->etcd = etcd;
        if (asprintf(&o->key_prefix, "%soutbox/", prefix) < 0)
                o->key_prefix = NULL;
        o->dir = strdup(outbox_dir);
        if (!o->key_prefix || !o->dir) {
                coutbox_destroy(o);
                return -ENOMEM;
        }
        *ret = o;
        return 0;
}

struct coutbox *coutbox_free(struct coutbox *o) {
        if (!o)
                return NULL;
        o->dead = true;
        if (!o->busy)
                coutbox_destroy(o);
        return NULL;
}

size_t coutbox_mirrored(const struct coutbox *o) {
        return o->n_mirror;
}

/* A file name lib/mail's outbox writes: [0-9a-z-]+.msg, nothing else. */
static bool msg_name(const char *n) {
        size_t l = strlen(n);
        if (l < 5 || l > 128 || strcmp(n + l - 4, ".msg") != 0)
                return false;
        for (size_t i = 0; i < l - 4; i++)
                if (!(n[i] >= '0' && n[i] <= '9') && !(n[i] >= 'a' && n[i] <= 'z') && n[i] != '-')
                        return false;
        return true;
}

static int cmp_ent(const void *a, const void *b) {
        return strcmp(((const struct ent *) a)->name, ((const struct ent *) b)->name);
}

/* The *.msg files of dir, sorted by name. */
static int scan(const char *dir, struct ent **ret, size_t *ret_n) {
        DIR *d = opendir(dir);
        struct ent *v = NULL;
        size_t n = 0;
        int r = 0;
        if (!d)
                return errno == ENOENT ? (*ret = NULL, *ret_n = 0, 0) : -errno;
        for (struct dirent *de; r == 0 && (de = readdir(d)); ) {
                struct stat st;
                if (!msg_name(de->d_name) || fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
                    !S_ISREG(st.st_mode))
                        continue;
                struct ent *nv = reallocarray(v, n + 1, sizeof(*v));
                if (!nv || !(nv[n].name = strdup(de->d_name))) {
                        v = nv ? nv : v;
                        r = -ENOMEM;
                        break;
                }
                v = nv;
                v[n].size = st.st_size;
                v[n++].mtime_ns = (int64_t) st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
        }
        closedir(d);
        if (r < 0) {
                ents_free(v, n);
                return r;
        }
        if (n > 0)
                qsort(v, n, sizeof(*v), cmp_ent);
        *ret = v;
        *ret_n = n;
        return 0;
}

static void job_free(struct job *j) {
        for (size_t i = 0; i < j->n_items; i++) {
                free(j->items[i].key);
                free(j->items[i].data);
        }
        free(j->items);
        ents_free(j->want, j->n_want);
        free(j);
}

static int add_item(struct job *j, enum etcd_op_type type, const char *name, char *data, size_t len) {
        struct item *v = reallocarray(j->items, j->n_items + 1, sizeof(*v));
        if (!v) {
                free(data);
                return -ENOMEM;
        }
        j->items = v;
        v[j->n_items] = (struct item) { .type = type, .data = data, .len = len };
        if (asprintf(&v[j->n_items].key, "%s%s", j->o->key_prefix, name) < 0) {
                free(data);
                return -ENOMEM;
        }
        j->n_items++;
        return 0;
}

/* A put of file name, unless it vanished meanwhile (sent by a flush): then
 * it leaves want, and etcd's copy goes if there is one. */
static int put_file(struct job *j, size_t b, bool mirrored) {
        char *path = NULL, *data = NULL;
        size_t len = 0;
        if (asprintf(&path, "%s/%s", j->o->dir, j->want[b].name) < 0)
                return -ENOMEM;
        int r = util_read_file(path, COUTBOX_MAX_MSG + 1, &data, &len);
        free(path);
        if (r == -EFBIG || (r == 0 && len > COUTBOX_MAX_MSG)) {
                free(data);
                return -EFBIG;
        }
        if (r == -ENOENT) {
                r = mirrored ? add_item(j, ETCD_OP_DELETE, j->want[b].name, NULL, 0) : 0;
                j->want[b].size = -1;   /* dropped below */
                return r;
        }
        return r < 0 ? r : add_item(j, ETCD_OP_PUT, j->want[b].name, data, len);
}

/* Puts for what is new or changed, deletes for what is gone (both sorted). */
static int diff(struct job *j, const struct ent *old, size_t n_old) {
        size_t a = 0, b = 0;
        int r = 0;
        while (r == 0 && (a < n_old || b < j->n_want)) {
                int c = a == n_old ? 1 : b == j->n_want ? -1 : strcmp(old[a].name, j->want[b].name);
                if (c < 0)
                        r = add_item(j, ETCD_OP_DELETE, old[a++].name, NULL, 0);
                else if (c > 0)
                        r = put_file(j, b++, false);
                else {
                        if (old[a].size != j->want[b].size || old[a].mtime_ns != j->want[b].mtime_ns)
                                r = put_file(j, b, true);
                        a++;
                        b++;
                }
        }
        /* drop the files that vanished */
        size_t k = 0;
        for (size_t i = 0; i < j->n_want; i++)
                if (j->want[i].size < 0)
                        free(j->want[i].name);
                else
                        j->want[k++] = j->want[i];
        j->n_want = k;
        return r;
}

static void job_end(struct job *j, int r) {
        struct coutbox *o = j->o;
        if (r == 0 && !o->dead) {
                ents_free(o->mirror, o->n_mirror);
                o->mirror = j->want;
                o->n_mirror = j->n_want;
                j->want = NULL;
                j->n_want = 0;
        }
        o->busy = false;
        if (o->dead && r == 0)
                r = -ECANCELED;
        j->cb(j->userdata, r);
        job_free(j);
        if (o->dead && !o->busy)
                coutbox_destroy(o);
}

static void next_batch(struct job *j);

static void on_batch(void *userdata, int r, const struct etcd_result *res) {
        struct job *j = userdata;
        if (r == 0 && !res->succeeded)
                r = -EPERM;
        if (r < 0 || j->o->dead) {
                job_end(j, r);
                return;
        }
        next_batch(j);
}

static void next_batch(struct job *j) {
        struct etcd_op ops[COUTBOX_TXN_OPS];
        size_t n = 0, bytes = 0;
        if (j->next >= j->n_items) {
                job_end(j, 0);
                return;
        }
        while (j->next < j->n_items && n < COUTBOX_TXN_OPS &&
               (n == 0 || bytes + j->items[j->next].len <= COUTBOX_TXN_BYTES)) {
                const struct item *it = &j->items[j->next++];
                ops[n++] = (struct etcd_op) { .type = it->type, .key = it->key, .value = it->data,
                                              .value_len = it->len };
                bytes += it->len;
        }
        const struct etcd_txn t = { &j->fence, 1, ops, n, NULL, 0 };
        int r = etcd_txn(j->o->etcd, &t, on_batch, j);
        if (r < 0)
                job_end(j, r);
}

static struct job *job_new(struct coutbox *o, coutbox_done_fn cb, void *userdata) {
        struct job *j = o->busy || o->dead ? NULL : calloc(1, sizeof(*j));
        if (j)
                *j = (struct job) { .o = o, .cb = cb, .userdata = userdata };
        return j;
}

int coutbox_sync(struct coutbox *o, const struct etcd_compare *fence, coutbox_done_fn cb, void *userdata) {
        if (!o || !fence || !cb)
                return -EINVAL;
        struct job *j = job_new(o, cb, userdata);
        if (!j)
                return o->busy ? -EBUSY : -ENOMEM;
        j->fence = *fence;
        int r = scan(o->dir, &j->want, &j->n_want);
        if (r == 0)
                r = diff(j, o->mirror, o->n_mirror);
        if (r < 0) {
                job_free(j);
                return r;
        }
        o->busy = true;
        next_batch(j);
        return 0;
}

/* ---- restore ------------------------------------------------------------- */

/* Writes etcd's entries as files, removes the other *.msg files. */
static int restore_files(struct job *j, const struct etcd_result *res) {
        size_t pl = strlen(j->o->key_prefix);
        struct ent *local = NULL;
        size_t n_local = 0;
        int r = 0;
        for (size_t i = 0; r == 0 && i < res->n_kvs; i++) {
                const struct etcd_kv *kv = &res->kvs[i];
                const char *name = kv->key + pl;
                char *path = NULL;
                if (kv->key_len <= pl || !msg_name(name))
                        return -EBADMSG;
                if (asprintf(&path, "%s/%s", j->o->dir, name) < 0)
                        return -ENOMEM;
                r = util_write_file_atomic(path, kv->value, kv->value_len, 0600);
                free(path);
        }
        if (r == 0)
                r = scan(j->o->dir, &local, &n_local);
        for (size_t i = 0; r == 0 && i < n_local; i++) {
                bool held = false;
                for (size_t k = 0; k < res->n_kvs && !held; k++)
                        held = strcmp(res->kvs[k].key + pl, local[i].name) == 0;
                char *path = NULL;
                if (held)
                        continue;
                if (asprintf(&path, "%s/%s", j->o->dir, local[i].name) < 0)
                        r = -ENOMEM;
                else if (unlink(path) < 0 && errno != ENOENT)
                        r = -errno;
                free(path);
        }
        ents_free(local, n_local);
        return r < 0 ? r : scan(j->o->dir, &j->want, &j->n_want);
}

static void on_range(void *userdata, int r, const struct etcd_result *res) {
        struct job *j = userdata;
        if (r == 0 && !j->o->dead)
                r = restore_files(j, res);
        job_end(j, r);
}

int coutbox_restore(struct coutbox *o, coutbox_done_fn cb, void *userdata) {
        if (!o || !cb)
                return -EINVAL;
        struct job *j = job_new(o, cb, userdata);
        if (!j)
                return o->busy ? -EBUSY : -ENOMEM;
        int r = etcd_range(o->etcd, o->key_prefix, true, on_range, j);
        if (r < 0) {
                job_free(j);
                return r;
        }
        o->busy = true;
        return 0;
}
