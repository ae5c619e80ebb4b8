/* SPDX-License-Identifier: MIT */
/*
 * cycle: one poll cycle, the only place that sequences I/O.
 * list orders -> templates -> engine -> mail + checks -> engine -> process
 * -> store.  Runs on the loop; cb is called once when the cycle is over.
 */
#pragma once

#include <stdbool.h>

#include <uv.h>

#include "config.h"
#include "mail.h"
#include "marketplace.h"
#include "graph.h"
#include "partnercenter.h"
#include "model.h"

/* One partner account and its clients, one token cache per audience:
 * Partner Center (reseller relationships) and Microsoft Graph (GDAP). */
struct cycle_account {
        const char *name;            /* cfg_microsoft.name */
        struct pc_client *pc;
        struct graph_client *graph;
};

struct cycle_env {
        uv_loop_t *loop;
        const struct cfg *cfg;
        struct mp_client *mp;
        struct pc_client *pc;        /* the default account's, when accounts is NULL */
        struct graph_client *graph;  /* the default account's Graph client, ditto */
        const struct cycle_account *accounts;   /* every configured account */
        size_t n_accounts;
        struct mail_transport *transport;
        struct mail_outbox *outbox;
        const struct mail_templates *templates;
        struct state *state;         /* in/out, owned by the caller */
        /* The state save ([cluster]: fenced transactions in etcd, on the
         * loop).  NULL: store_save() into cfg->daemon.state_dir.  done runs
         * exactly once (maybe from within the call, then with 0 returned);
         * a negative return means it will not run.  The phase that needs
         * the intent saved waits for done. */
        int (*save)(void *save_ud, const struct state *st, void (*done)(void *ud, int r, const char *err), void *ud);
        void *save_ud;
        /* Asked right before each Process POST (NULL: always yes); false:
         * this instance may not act any more (cluster mode: deposed).  The
         * outbox asks its own gate before each mail (mail_outbox_set_gate). */
        bool (*may_act)(void *ud);
        void *may_act_ud;
        bool dry_run;
        bool check_all;              /* --once */
};

struct cycle_result {
        int r;                       /* 0 ok, else the first fatal error */
        size_t orders_seen;
        size_t blocked;
        size_t customers_pending;
        size_t mails_queued;
        size_t mails_sent;
        size_t checks;
        size_t processed;
        char *error;                 /* one line when r < 0 */
};

typedef void (*cycle_done_fn)(void *ud, const struct cycle_result *res);

struct cycle;
int cycle_start(const struct cycle_env *env, cycle_done_fn cb, void *ud, struct cycle **ret);
/* Sends the queued mails that are due (retries on their back-off schedule),
 * logged as a cycle logs them, outside a cycle.  done runs once when the
 * flush is over (maybe from within this call); negative errno (-EBUSY: a
 * flush runs) when it did not start. */
typedef void (*cycle_retry_done_fn)(void *ud);
int cycle_retry_mail(const struct cycle_env *env, int64_t now, cycle_retry_done_fn done, void *ud);

/* Stops taking new work; in-flight requests finish or are cancelled. */
void cycle_abort(struct cycle *c);
