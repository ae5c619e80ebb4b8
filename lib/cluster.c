/* SPDX-License-Identifier: MIT */
#include "cluster.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define CLUSTER_MAX_NAME 253

struct cluster {
        uv_loop_t *loop;
        struct etcd *etcd;
        char *leader_key;
        char *name;
        int64_t ttl_ms;
        cluster_change_fn on_change;
        void *userdata;

        uv_timer_t tick;                /* keepalive every ttl/6, campaign every other tick */
        uv_timer_t deadline;            /* end of the deposition rule */
        int open_handles;
        size_t pending;                 /* etcd calls in flight */
        bool dead;

        int64_t lease_id;               /* 0: none (grant in flight or needed) */
        uint64_t confirmed_ms;          /* send time of the last acknowledged keepalive/grant */
        bool granting, keeping_alive, campaigning;
        bool leader;                    /* won the key with this lease */
        int64_t leader_rev;
        char *leader_name;              /* last known, NULL if none */
        bool was_active;                /* for change notifications */
        uint64_t ticks;
        struct cluster_stats stats;
};

/* A call in flight: the send time matters for the deposition rule. */
struct cl_call {
        struct cluster *c;
        uint64_t sent_ms;
        int64_t lease_id;
};

static void cluster_destroy(struct cluster *c) {
        free(c->leader_key);
        free(c->name);
        free(c->leader_name);
        free(c);
}

static void maybe_destroy(struct cluster *c) {
        if (c->dead && c->pending == 0 && c->open_handles == 0)
                cluster_destroy(c);
}

static void on_close(uv_handle_t *h) {
        struct cluster *c = h->data;
        c->open_handles--;
        maybe_destroy(c);
}

bool cluster_is_active(const struct cluster *c) {
        return c && !c->dead && c->leader && c->lease_id != 0 &&
               util_now_mono_ms() < c->confirmed_ms + (uint64_t) c->ttl_ms / 2;
}

/* Tells the owner when the role or the known leader changed. */
static void notify(struct cluster *c, bool leader_changed) {
        bool active = cluster_is_active(c);
        if (active == c->was_active && !leader_changed)
                return;
        if (c->was_active && !active)
                c->stats.depositions++;
        if (!c->was_active && active)
                c->stats.takeovers++;
        c->was_active = active;
        if (c->on_change && !c->dead)
                c->on_change(c->userdata);
}

static void set_leader_name(struct cluster *c, const char *name) {
        if ((!name && !c->leader_name) || (name && c->leader_name && strcmp(name, c->leader_name) == 0))
                return;
        free(c->leader_name);
        c->leader_name = name ? strndup(name, CLUSTER_MAX_NAME) : NULL;
        notify(c, true);
}

static void on_deadline(uv_timer_t *t) {
        notify(t->data, false);
}

static void arm_deadline(struct cluster *c) {
        uint64_t now = util_now_mono_ms(), end = c->confirmed_ms + (uint64_t) c->ttl_ms / 2;
        uv_timer_start(&c->deadline, on_deadline, end > now ? end - now : 0, 0);
}

/* The lease is gone or unusable: stop acting now, get a new one. */
static void lose_lease(struct cluster *c) {
        c->lease_id = 0;
        c->leader = false;
        notify(c, false);
}

static struct cl_call *call_new(struct cluster *c) {
        struct cl_call *k = calloc(1, sizeof(*k));
        if (!k)
                return NULL;
        *k = (struct cl_call) { .c = c, .sent_ms = util_now_mono_ms(), .lease_id = c->lease_id };
        return k;
}

/* Ends a call: false when the cluster is being freed (nothing to do). */
static bool call_end(struct cl_call *k) {
        struct cluster *c = k->c;
        free(k);
        c->pending--;
        if (c->dead) {
                maybe_destroy(c);
                return false;
        }
        return true;
}

static void campaign(struct cluster *c);

static void on_grant(void *userdata, int r, const struct etcd_result *res) {
        struct cl_call *k = userdata;
        struct cluster *c = k->c;
        uint64_t sent = k->sent_ms;
        if (!call_end(k))
                return;
        c->granting = false;
        if (r < 0)
                return;         /* the next tick tries again */
        c->lease_id = res->lease_id;
        c->confirmed_ms = sent;
        campaign(c);
}

static void on_keepalive(void *userdata, int r, const struct etcd_result *res) {
        struct cl_call *k = userdata;
        struct cluster *c = k->c;
        uint64_t sent = k->sent_ms;
        int64_t lease = k->lease_id;
        if (!call_end(k))
                return;
        c->keeping_alive = false;
        if (lease != c->lease_id)
                return;
        if (r == -ENOENT) {
                lose_lease(c);
                return;
        }
        if (r < 0)
                return;         /* the deadline decides */
        if (sent > c->confirmed_ms)
                c->confirmed_ms = sent;
        arm_deadline(c);
        notify(c, false);
}

static void on_campaign(void *userdata, int r, const struct etcd_result *res) {
        struct cl_call *k = userdata;
        struct cluster *c = k->c;
        int64_t lease = k->lease_id;
        if (!call_end(k))
                return;
        c->campaigning = false;
        if (r < 0 || lease != c->lease_id)
                return;
        const struct etcd_kv *kv = res->n_kvs > 0 ? &res->kvs[0] : NULL;
        if (res->succeeded) {
                c->leader = true;
                c->leader_rev = res->revision;
        } else if (kv && kv->lease == lease) {
                /* Our own earlier win whose answer was lost. */
                c->leader = true;
                c->leader_rev = kv->create_revision;
        } else
                c->leader = false;
        arm_deadline(c);
        set_leader_name(c, c->leader ? c->name : kv ? kv->value : NULL);
        notify(c, false);
}

static int submit(struct cluster *c, bool *flag, int (*fn)(struct cluster *, struct cl_call *)) {
        struct cl_call *k = call_new(c);
        if (!k)
                return -ENOMEM;
        int r = fn(c, k);
        if (r < 0) {
                free(k);
                return r;
        }
        c->pending++;
        *flag = true;
        return 0;
}

static int do_grant(struct cluster *c, struct cl_call *k) {
        return etcd_lease_grant(c->etcd, c->ttl_ms / 1000, on_grant, k);
}

static int do_keepalive(struct cluster *c, struct cl_call *k) {
        return etcd_lease_keepalive(c->etcd, c->lease_id, on_keepalive, k);
}

static int do_campaign(struct cluster *c, struct cl_call *k) {
        const struct etcd_compare cmp = { .key = c->leader_key, .target = ETCD_TARGET_CREATE, .value = 0 };
        const struct etcd_op put = { .type = ETCD_OP_PUT, .key = c->leader_key, .value = c->name,
                                     .value_len = strlen(c->name), .lease = c->lease_id };
        const struct etcd_op get = { .type = ETCD_OP_RANGE, .key = c->leader_key };
        const struct etcd_txn t = { &cmp, 1, &put, 1, &get, 1 };
        c->stats.campaigns++;
        return etcd_txn(c->etcd, &t, on_campaign, k);
}

static void campaign(struct cluster *c) {
        if (!c->campaigning && c->lease_id != 0)
                (void) submit(c, &c->campaigning, do_campaign);
}

static void on_tick(uv_timer_t *t) {
        struct cluster *c = t->data;
        if (c->lease_id == 0) {
                if (!c->granting)
                        (void) submit(c, &c->granting, do_grant);
                return;
        }
        if (!c->keeping_alive) {
                c->stats.keepalives++;
                (void) submit(c, &c->keeping_alive, do_keepalive);
        }
        /* Every ttl/3.  The leader re-reads its key too: cheap, and it
         * notices a key deleted by hand (its writes would fail the fence
         * anyway). */
        if (c->ticks++ % 2 == 0)
                campaign(c);
}

int cluster_new(uv_loop_t *loop, struct etcd *etcd, const struct cluster_options *o,
                cluster_change_fn on_change, void *userdata, struct cluster **ret) {
        if (!loop || !etcd || !o || !o->prefix || !*o->prefix || !o->name || !*o->name ||
            strlen(o->name) > CLUSTER_MAX_NAME || util_has_ctl(o->name, false) || o->lease_ttl < 2 ||
            o->lease_ttl > 3600)
                return -EINVAL;
        struct cluster *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        *c = (struct cluster) { .loop = loop, .etcd = etcd, .ttl_ms = o->lease_ttl * 1000,
                                .on_change = on_change, .userdata = userdata };
        if (asprintf(&c->leader_key, "%sleader", o->prefix) < 0) {
                c->leader_key = NULL;
                goto nomem;
        }
        if (!(c->name = strdup(o->name)))
                goto nomem;
        uv_timer_init(loop, &c->tick);
        uv_timer_init(loop, &c->deadline);
        c->tick.data = c->deadline.data = c;
        c->open_handles = 2;
        *ret = c;
        return 0;
nomem:
        cluster_destroy(c);
        return -ENOMEM;
}

int cluster_start(struct cluster *c) {
        uint64_t every = (uint64_t) c->ttl_ms / 6;
        return uv_timer_start(&c->tick, on_tick, 0, every);
}

static void on_revoked(void *userdata, int r, const struct etcd_result *res) {
}

static struct cluster *stop(struct cluster *c, bool revoke) {
        if (!c)
                return NULL;
        if (revoke && c->lease_id != 0)
                (void) etcd_lease_revoke(c->etcd, c->lease_id, on_revoked, NULL);
        c->dead = true;
        uv_close((uv_handle_t *) &c->tick, on_close);
        uv_close((uv_handle_t *) &c->deadline, on_close);
        return NULL;
}

struct cluster *cluster_free(struct cluster *c) {
        return stop(c, true);
}

struct cluster *cluster_abandon(struct cluster *c) {
        return stop(c, false);
}

const char *cluster_leader(const struct cluster *c) {
        return c->leader_name;
}

char *cluster_describe(const struct cluster *c) {
        char *s;
        if (cluster_is_active(c))
                return strdup("active");
        if (asprintf(&s, "standby (leader: %s)", c->leader_name && !c->leader ? c->leader_name : "none") < 0)
                return NULL;
        for (char *p = s; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        *p = '?';
        return s;
}

int cluster_fence(const struct cluster *c, struct etcd_compare *ret) {
        if (!cluster_is_active(c))
                return -EPERM;
        *ret = (struct etcd_compare) { .key = c->leader_key, .target = ETCD_TARGET_CREATE, .value = c->leader_rev };
        return 0;
}

void cluster_get_stats(const struct cluster *c, struct cluster_stats *ret) {
        *ret = c->stats;
}
