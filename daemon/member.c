/* SPDX-License-Identifier: MIT */
/*
 * The cluster member of the daemon ([cluster], docs/cluster.md): an etcd
 * client, the leadership (lib/cluster) and the state in etcd
 * (lib/clusterstore), plus the one-shot uses of `partnerd status` and
 * `partnerd cluster migrate`.
 *
 * The member's http shares the daemon's one curl multi handle
 * (http_new_shared) but is its own: a reload replaces the services' http
 * (cancelling their transfers), and the leadership's keepalives must not be
 * cancelled by a SIGHUP.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "clusteroutbox.h"
#include "clusterstore.h"
#include "config.h"
#include "daemon.h"
#include "etcd.h"
#include "http.h"
#include "util.h"

struct member {
        struct http *http;
        struct etcd *etcd;
        struct cluster *cluster;
        struct cstore *cstore;
        struct coutbox *outbox;      /* {state_dir}/outbox mirrored to etcd */
        char *leader_key;
        uv_timer_t stop_timer;       /* member_stop: waits for the revoke */
        int stop_ticks;
};

/* The etcd client of [cluster]: every request inside the deposition rule's
 * margin (config.c keeps http_timeout below lease_ttl/2). */
static int member_open(uv_loop_t *loop, struct http *share, const struct cfg *cfg, struct member *m) {
        const struct cfg_cluster *k = &cfg->cluster;
        long timeout_ms = (long) cfg->daemon.http_timeout * 1000;
        struct http_options ho = {
                .max_per_host = 4,
                .connect_timeout_ms = (long) cfg->daemon.connect_timeout * 1000,
                .timeout_ms = timeout_ms,
                .max_attempts = 1,
        };
        struct etcd_options eo = {
                .endpoints = (const char *const *) k->endpoints,
                .ca_file = k->ca_file,
                .cert_file = k->cert_file,
                .key_file = k->key_file,
                .timeout_ms = timeout_ms < 3000 ? timeout_ms : 3000,
        };
        int r;
        r = share ? http_new_shared(share, &ho, &m->http) : http_new(loop, &ho, &m->http);
        if (r < 0 || (r = etcd_new(m->http, &eo, &m->etcd)) < 0 ||
            (r = cstore_new(m->etcd, k->prefix, &m->cstore)) < 0)
                return r;
        char *dir = NULL;
        if (asprintf(&dir, "%s/outbox", cfg->daemon.state_dir) < 0)
                return -ENOMEM;
        r = coutbox_new(m->etcd, k->prefix, dir, &m->outbox);
        free(dir);
        if (r < 0)
                return r;
        if (asprintf(&m->leader_key, "%sleader", k->prefix) < 0) {
                m->leader_key = NULL;
                return -ENOMEM;
        }
        return 0;
}

int member_new(uv_loop_t *loop, struct http *share, const struct cfg *cfg, bool campaign,
               void (*on_change)(void *ud), void *ud, struct member **ret) {
        struct member *m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        const struct cluster_options co = {
                .prefix = cfg->cluster.prefix,
                .name = cfg->cluster.name,
                .lease_ttl = cfg->cluster.lease_ttl,
        };
        int r = member_open(loop, share, cfg, m);
        if (r >= 0 && campaign) {
                r = cluster_new(loop, m->etcd, &co, on_change, ud, &m->cluster);
                if (r >= 0)
                        r = cluster_start(m->cluster);
        }
        if (r < 0) {
                member_free(m);
                return r;
        }
        *ret = m;
        return 0;
}

#define STOP_TICK_MS 20
#define STOP_TICKS_MAX 100   /* 2 s for the revoke at most */

static void on_stop_closed(uv_handle_t *h) {
        member_free(h->data);
}

static void on_stop_tick(uv_timer_t *t) {
        struct member *m = t->data;
        if (http_pending(m->http) > 0 && ++m->stop_ticks < STOP_TICKS_MAX)
                return;
        uv_timer_stop(t);
        uv_close((uv_handle_t *) t, on_stop_closed);
}

void member_stop(struct member *m, uv_loop_t *loop) {
        if (!m)
                return;
        m->cluster = cluster_free(m->cluster);   /* revokes the lease: a standby takes over at once */
        uv_timer_init(loop, &m->stop_timer);
        m->stop_timer.data = m;
        uv_timer_start(&m->stop_timer, on_stop_tick, 0, STOP_TICK_MS);
}

struct member *member_free(struct member *m) {
        if (!m)
                return NULL;
        m->cluster = cluster_abandon(m->cluster);
        m->cstore = cstore_free(m->cstore);
        m->outbox = coutbox_free(m->outbox);
        m->etcd = etcd_free(m->etcd);
        m->http = http_free(m->http);
        free(m->leader_key);
        free(m);
        return NULL;
}

bool member_active(const struct member *m) {
        return m && m->cluster && cluster_is_active(m->cluster);
}

char *member_describe(const struct member *m) {
        return m && m->cluster ? cluster_describe(m->cluster) : strdup("standby (leader: none)");
}

static int m_fence(const struct member *m, struct etcd_compare *ret) {
        return m->cluster ? cluster_fence(m->cluster, ret) : -EPERM;
}

/* A load or a save: the outbox first (the mails are the intent the state
 * records as done), then the state. */
struct chain {
        struct member *m;
        const struct state *st;      /* save */
        cstore_done_fn cb;
        void *ud;
};

static void chain_end(struct chain *ch, int r, struct state *loaded, const char *err) {
        ch->cb(ch->ud, r, loaded, err);
        free(ch);
}

static void on_chain_state(void *ud, int r, struct state *loaded, const char *err) {
        chain_end(ud, r, loaded, err);
}

static void on_restored(void *ud, int r) {
        struct chain *ch = ud;
        if (r >= 0)
                r = cstore_load(ch->m->cstore, on_chain_state, ch);
        if (r < 0)
                chain_end(ch, r, NULL, r == -EBADMSG ? "an outbox entry in etcd is not a message file name" : NULL);
}

static struct chain *chain_new(struct member *m, const struct state *st, cstore_done_fn cb, void *ud) {
        struct chain *ch = calloc(1, sizeof(*ch));
        if (ch)
                *ch = (struct chain) { .m = m, .st = st, .cb = cb, .ud = ud };
        return ch;
}

int member_load(struct member *m, bool restore_outbox, cstore_done_fn cb, void *ud) {
        if (!restore_outbox)
                return cstore_load(m->cstore, cb, ud);
        struct chain *ch = chain_new(m, NULL, cb, ud);
        if (!ch)
                return -ENOMEM;
        int r = coutbox_restore(m->outbox, on_restored, ch);
        if (r < 0)
                free(ch);
        return r;
}

static void on_synced(void *ud, int r) {
        struct chain *ch = ud;
        struct etcd_compare fence;
        if (r >= 0)
                r = m_fence(ch->m, &fence);
        if (r >= 0)
                r = cstore_save(ch->m->cstore, &fence, ch->st, on_chain_state, ch);
        if (r < 0)
                chain_end(ch, r, NULL, r == -EFBIG ? "a queued mail is too large for etcd" : NULL);
}

int member_save(struct member *m, const struct state *st, cstore_done_fn cb, void *ud) {
        struct etcd_compare fence;
        int r = m_fence(m, &fence);
        if (r < 0)
                return r;
        struct chain *ch = chain_new(m, st, cb, ud);
        if (!ch)
                return -ENOMEM;
        r = coutbox_sync(m->outbox, &fence, on_synced, ch);
        if (r < 0)
                free(ch);
        return r;
}

/* ---- one-shot commands: a loop of their own, run until the answer ---- */

struct oneshot {
        int pending;             /* requests not answered yet */
        int r;
        struct state *loaded;
        char *err;
        char *leader;
        int leader_r;
};

static void on_oneshot(void *ud, int r, struct state *loaded, const char *err) {
        struct oneshot *o = ud;
        o->pending--;
        o->r = r;
        o->loaded = loaded;
        o->err = err ? strdup(err) : NULL;
}

static void on_leader(void *ud, int r, const struct etcd_result *res) {
        struct oneshot *o = ud;
        o->pending--;
        o->leader_r = r;
        if (r == 0 && res->n_kvs > 0)
                o->leader = strdup(res->kvs[0].value);
}

/* Runs start's requests on a loop and a member of their own until every
 * one answered (o->pending); the answer's error, else 0. */
static int oneshot_run(const struct cfg *cfg, int (*start)(struct member *m, struct oneshot *o, const void *arg),
                       const void *arg, struct oneshot *o) {
        uv_loop_t loop;
        struct member *m = NULL;
        if (uv_loop_init(&loop) < 0)
                return -ENOMEM;
        int r = member_new(&loop, NULL, cfg, false, NULL, NULL, &m);
        if (r >= 0)
                r = start(m, o, arg);
        while (r >= 0 && o->pending > 0 && uv_run(&loop, UV_RUN_ONCE))
                ;
        if (r >= 0)
                r = o->pending > 0 ? -EIO : o->r < 0 ? o->r : o->leader_r;
        member_free(m);
        uv_run(&loop, UV_RUN_DEFAULT);   /* the cancelled callbacks and the closes */
        (void) uv_loop_close(&loop);
        return r;
}

static int start_read(struct member *m, struct oneshot *o, const void *arg) {
        int r = etcd_range(m->etcd, m->leader_key, false, on_leader, o);
        if (r >= 0 && ++o->pending)
                r = cstore_load(m->cstore, on_oneshot, o);
        if (r >= 0)
                o->pending++;
        return r;
}

int member_read(const struct cfg *cfg, struct state **ret_state, char **ret_leader, char **ret_err) {
        struct oneshot o = { 0 };
        *ret_state = NULL;
        *ret_leader = NULL;
        *ret_err = NULL;
        int r = oneshot_run(cfg, start_read, NULL, &o);
        if (r < 0) {
                state_free(o.loaded);
                free(o.leader);
                *ret_err = o.err;
                return r;
        }
        free(o.err);
        *ret_state = o.loaded;
        *ret_leader = o.leader;
        return 0;
}

static int start_migrate(struct member *m, struct oneshot *o, const void *arg) {
        int r = cstore_migrate(m->cstore, arg, on_oneshot, o);
        if (r >= 0)
                o->pending++;
        return r;
}

int member_migrate(const struct cfg *cfg, const struct state *st, char **ret_err) {
        struct oneshot o = { 0 };
        int r = oneshot_run(cfg, start_migrate, st, &o);
        state_free(o.loaded);
        *ret_err = o.err;
        return r;
}
