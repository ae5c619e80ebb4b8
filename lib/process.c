/* SPDX-License-Identifier: MIT */
/*
 * The Process call of one order and what its outcome means.  Only an order
 * read again and found still Querying in the episode the engine decided on
 * is ever POSTed; a 4xx answer is read once more to tell "someone else
 * moved it on" (a success) from a refusal.  The SETTLE phase reads the
 * orders whose Process outcome is unknown and that left the list.  Every
 * outcome goes to the engine (eng_process_outcome), which records it.
 */
#include "cycle_priv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* Journal fields of a Process outcome: PROCESS_OUTCOME is one of
 * done/moved/gone/refused/unknown (mp_outcome_to_string). */
#define PROCESS_FIELDS(o, st, outcome)                                                      \
        LOG_FIELDS({ "ORDER_ID", (o)->order_id }, { "HTTP_STATUS", (st) }, { "PROCESS_OUTCOME", (outcome) }, \
                   { "PARTNER_ACCOUNT", (o)->account })

/* The journal's PROCESS_OUTCOME word of a result, for
 * partnerd_process_total{outcome}. */
static const char *outcome_word(enum eng_process_result pr) {
        static const enum mp_outcome oc[] = {
                [ENG_PROCESS_DONE] = MP_DONE, [ENG_PROCESS_MOVED] = MP_MOVED, [ENG_PROCESS_GONE] = MP_GONE,
                [ENG_PROCESS_REFUSED] = MP_REFUSED, [ENG_PROCESS_UNKNOWN] = MP_UNKNOWN,
        };
        return mp_outcome_to_string((unsigned) pr < sizeof(oc) / sizeof(oc[0]) ? oc[pr] : MP_UNKNOWN);
}

static void process_outcome(struct cycle *c, const char *order_id, enum eng_process_result pr,
                            enum order_status st, const char *detail) {
        struct action_list out = { 0 };
        /* with the state, saved at the end of the cycle (a dry run's copy is not) */
        (void) counters_add(&c->work->counters, COUNTER_PROCESS, outcome_word(pr), NULL, 1);
        int r = eng_process_outcome(&c->params, c->work, order_id, pr, st, detail, c->now, &out);
        if (r < 0)
                log_error("Internal error recording the Process outcome of %s: %s", order_id, strerror(-r));
        if (pr == ENG_PROCESS_DONE)
                c->res.processed++;
        cycle_perform_actions(c, &out);
        action_list_clear(&out);
}

/* The order left Querying, or its episode ended, before our call: someone
 * else moved it on.  A success, not an error. */
static void process_moved(struct cycle *c, struct op *o, const struct mp_order_result *res) {
        char st[16];
        snprintf(st, sizeof(st), "%ld", res->status);
        enum order_status now = res->order ? res->order->status : ORDER_STATUS_UNKNOWN;
        log_event(LOG_NOTICE, LOG_EV_ORDER_CLOSED, PROCESS_FIELDS(o, st, mp_outcome_to_string(MP_MOVED)),
                  "Order %s moved on before our Process (now %s): nothing to do", o->order_id,
                  now == ORDER_STATUS_QUERYING ? "in a new Querying episode" : order_status_to_string(now));
        process_outcome(c, o->order_id, ENG_PROCESS_MOVED, now, NULL);
}

static void process_gone(struct cycle *c, struct op *o, const struct mp_order_result *res) {
        char st[16];
        snprintf(st, sizeof(st), "%ld", res->status);
        log_event(LOG_NOTICE, LOG_EV_ORDER_CLOSED, PROCESS_FIELDS(o, st, mp_outcome_to_string(MP_GONE)),
                  "Order %s no longer exists (HTTP %ld): nothing to process", o->order_id, res->status);
        process_outcome(c, o->order_id, ENG_PROCESS_GONE, ORDER_STATUS_DELETED, "order no longer exists");
}

/* 5xx, timeout, reset...: the call may or may not have reached the
 * platform (or the re-read before it failed).  Never re-sent blindly: a
 * later cycle reads the order again (it is then either Processing, or
 * still Querying in this episode and asked again). */
static void process_unknown(struct cycle *c, struct op *o, const struct mp_order_result *res, bool reread) {
        char st[16];
        snprintf(st, sizeof(st), "%ld", res->status);
        const char *why = res->err ? res->err : strerror(res->r < 0 ? -res->r : EIO);
        const struct log_field *fields = PROCESS_FIELDS(o, st, mp_outcome_to_string(MP_UNKNOWN));
        if (reread)
                log_event(LOG_WARNING, LOG_EV_PROCESS_FAILED, fields,
                          "Cannot read order %s before Process: %s; will retry next cycle", o->order_id, why);
        else
                log_event(LOG_ERR, LOG_EV_PROCESS_FAILED, fields,
                          "Process of order %s failed: %s; the order will be read again next cycle",
                          o->order_id, why);
        cycle_set_error(c, res->r < 0 ? res->r : -EIO,
                  reread ? "cannot read an order before Process" : "Process failed", why);
        process_outcome(c, o->order_id, ENG_PROCESS_UNKNOWN, ORDER_STATUS_UNKNOWN, res->err);
}

static void on_reread(void *ud, const struct mp_order_result *res);

static void reread(struct op *o) {
        int r = mp_get_order(o->c->env.mp, o->order_id, on_reread, o);
        if (r < 0) {
                struct mp_order_result fail = { .outcome = MP_UNKNOWN, .r = r, .err = "cannot submit the request" };
                on_reread(o, &fail);
        }
}

static void on_post(void *ud, const struct mp_order_result *res) {
        struct op *o = ud;
        struct cycle *c = o->c;
        char st[16];
        snprintf(st, sizeof(st), "%ld", res->status);

        switch (res->outcome) {
        case MP_DONE:
                log_event(LOG_NOTICE, LOG_EV_ORDER_PROCESSED, PROCESS_FIELDS(o, st, mp_outcome_to_string(MP_DONE)),
                          "Order %s processed: %s", o->order_id, order_status_to_string(res->order->status));
                process_outcome(c, o->order_id, ENG_PROCESS_DONE, res->order->status, NULL);
                break;
        case MP_GONE:
                process_gone(c, o, res);
                break;
        case MP_MOVED:
                if (res->order) {
                        process_moved(c, o, res);
                        break;
                }
                /* read it to learn where it went */
                __attribute__((fallthrough));
        case MP_REFUSED:
                log_event(LOG_INFO, LOG_EV_NONE,
                          LOG_FIELDS({ "ORDER_ID", o->order_id }, { "HTTP_STATUS", st }, { "PARTNER_ACCOUNT", o->account }),
                          "Process of order %s answered HTTP %ld, reading the order again", o->order_id,
                          res->status);
                o->reread_after_post = true;
                o->post_status = res->status;
                o->post_error = res->err ? strdup(res->err) : NULL;
                reread(o);
                return;
        case MP_UNKNOWN:
        default:
                process_unknown(c, o, res, false);
                break;
        }
        cycle_op_done(o);
}

/* Deposed (or stopping) since the intent was saved: Process is not ours to
 * call any more, nor the re-read before it. */
static bool may_still_act(struct cycle *c, const char *order_id) {
        if (cycle_may_act(c))
                return true;
        log_event(LOG_WARNING, LOG_EV_NONE, LOG_FIELDS({ "ORDER_ID", order_id }),
                  "Process of order %s not called: this instance stopped acting", order_id);
        return false;
}

/* The re-read before Process (and after a refusal): only an order still
 * Querying in the episode we decided on is ever POSTed. */
static void on_reread(void *ud, const struct mp_order_result *res) {
        struct op *o = ud;
        struct cycle *c = o->c;
        struct tracked_order *t = state_find_order(c->work, o->order_id, NULL);

        if (res->outcome == MP_GONE) {
                process_gone(c, o, res);
                cycle_op_done(o);
                return;
        }
        if (res->outcome != MP_DONE) {
                process_unknown(c, o, res, true);
                cycle_op_done(o);
                return;
        }
        const struct order *order = res->order;
        /* the episode as the poll named it (see listing_episode_start()) */
        struct order copy = { 0 };
        if (order->status == ORDER_STATUS_QUERYING && !order->querying_at_raw &&
            (order_copy(&copy, order) < 0 || listing_episode_start(c, &copy) < 0))
                cycle_set_error(c, -ENOMEM, "out of memory", NULL);
        bool same_episode = order_same_episode(t, copy.querying_at_raw ? &copy : order);
        order_clear(&copy);
        if (order->status != ORDER_STATUS_QUERYING || !same_episode) {
                struct mp_order_result moved = *res;
                moved.status = o->reread_after_post ? o->post_status : res->status;
                process_moved(c, o, &moved);
                cycle_op_done(o);
                return;
        }
        if (o->reread_after_post) {
                /* still Querying in this episode: the platform said no */
                cycle_set_error(c, -EIO, "Process refused", o->post_error);
                process_outcome(c, o->order_id, ENG_PROCESS_REFUSED, order->status, o->post_error);
                cycle_op_done(o);
                return;
        }
        if (c->env.dry_run) {
                log_event(LOG_NOTICE, LOG_EV_NONE,
                          LOG_FIELDS({ "ORDER_ID", o->order_id }, { "PARTNER_ACCOUNT", o->account }),
                          "Dry run: would call Process on order %s", o->order_id);
                cycle_op_done(o);
                return;
        }
        if (!may_still_act(c, o->order_id)) {
                cycle_op_done(o);
                return;
        }
        int r = mp_process_order(c->env.mp, o->order_id, on_post, o);
        if (r < 0) {
                struct mp_order_result fail = { .outcome = MP_UNKNOWN, .r = r, .err = "cannot submit the request" };
                process_unknown(c, o, &fail, false);
                cycle_op_done(o);
        }
}

void process_start(struct cycle *c, const struct action *a) {
        if (!a->account || strcmp(a->account, ACCOUNT_NONE) == 0) {
                /* the engine never asks this: an order no account answers for is never processed */
                log_error("Internal error: Process of order %s without a Partner Center account refused",
                          a->order_id);
                return;
        }
        if (!c->env.dry_run && !may_still_act(c, a->order_id))
                return;
        struct op *o = cycle_op_new(c);
        if (!o || !(o->order_id = strdup(a->order_id)) || !(o->account = strdup(a->account))) {
                cycle_set_error(c, -ENOMEM, "out of memory", NULL);
                if (o)
                        cycle_op_done(o);
                return;
        }
        /* Only ever POST after reading the order again: it must still
         * be Querying, in the same episode. */
        reread(o);
}

/* An order we asked to process whose outcome is unknown (the daemon was
 * killed with the POST in flight, or the answer was lost) and that is no
 * longer in the list: read it, so the engine sees where it went
 * (Processing: our call took effect, the customer gets the confirmation)
 * rather than an order that disappeared. */
static void on_settle(void *ud, const struct mp_order_result *res) {
        struct op *o = ud;
        struct cycle *c = o->c;
        const struct order *order = res->order;

        if (res->outcome == MP_DONE && order->id && strcmp(order->id, o->order_id) == 0 &&
            !order_list_find(&c->orders, order->id)) {
                struct order *dst = order_list_add(&c->orders);
                if (!dst || order_copy(dst, order) < 0)
                        cycle_set_error(c, -ENOMEM, "out of memory", NULL);
        } else if (res->outcome == MP_GONE)
                process_gone(c, o, res);
        else if (res->outcome != MP_DONE)
                log_event(LOG_WARNING, LOG_EV_POLL_FAILED, LOG_FIELDS({ "ORDER_ID", o->order_id }),
                          "Cannot read order %s after its Process call: %s", o->order_id,
                          res->err ? res->err : strerror(res->r < 0 ? -res->r : EIO));
        cycle_op_done(o);
}

void process_start_settle(struct cycle *c, const char *id) {
        struct op *o = cycle_op_new(c);
        if (!o || !(o->order_id = strdup(id))) {
                cycle_set_error(c, -ENOMEM, "out of memory", NULL);
                if (o)
                        cycle_op_done(o);
                return;
        }
        int r = mp_get_order(c->env.mp, o->order_id, on_settle, o);
        if (r < 0) {
                struct mp_order_result fail = { .outcome = MP_UNKNOWN, .r = r, .err = strerror(-r) };
                on_settle(o, &fail);
        }
}
