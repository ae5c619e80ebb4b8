/* SPDX-License-Identifier: MIT */
/*
 * One poll cycle.  The phases run strictly one after another; inside a
 * phase every request runs in parallel on the shared curl multi handle:
 *
 *   LIST       list Querying and Draft orders (pages in parallel)
 *   SETTLE     read orders whose Process outcome is unknown and that left
 *              the list (parallel)
 *   TEMPLATES  fetch the templates of orders not seen before (parallel)
 *   PLAN       engine phase 1
 *   CONTACTS   buyers' contacts of the orders to mail (notify_order_contacts)
 *              -> queue mails (outbox) -> persist, start checks
 *   CHECKS     Partner Center checks (parallel)
 *   DECIDE     engine phase 2 with the facts -> persist intent
 *   INTENT     waits for that save (env.save, the cluster's, is asynchronous)
 *   PROCESS    re-read each order, POST process if still Querying (parallel)
 *   FLUSH      send the outbox
 *   SAVE       persist the outcome
 *
 * The mails queued by PLAN start going out at once, while CHECKS and
 * PROCESS run (the early flush, on the SMTP server's own slots); FLUSH
 * waits for it and then sends what came later (confirmations).
 *
 * A phase keeps at most CYCLE_WINDOW_PER_SLOT x max_parallel requests in
 * flight and starts the next as one completes: 10,000 templates neither
 * overflow the http queue (HTTP_MAX_REQUESTS) nor sit there as 10,000
 * curl handles.
 *
 * Every side effect is preceded by a durable record of the intent (the
 * state save before Process; the outbox file for a mail) and followed by a
 * save that records the outcome.  With env.save (the cluster mode) each
 * save is an op of its phase: the early flush starts and the Process calls
 * begin only once it succeeded; a failed (fenced) save aborts the cycle,
 * and every Process POST asks cycle_may_act() first.  In --dry-run the engine works
 * on a copy of the state that is never saved, and nothing is sent.
 */
#include "cycle_priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "log.h"
#include "store.h"
#include "util.h"

/* Requests in flight per phase, per parallel slot of lib/http: enough that
 * the per-host queue never runs dry between a completion and its refill. */
#define CYCLE_WINDOW_PER_SLOT 2

static void advance(struct cycle *c);
static void fill(struct cycle *c);
static void start_early_flush(struct cycle *c);
static void begin_phase(struct cycle *c, enum phase ph, struct action_list *todo);

struct op *cycle_op_new(struct cycle *c) {
        struct op *o = calloc(1, sizeof(*o));
        if (o) {
                o->c = c;
                c->pending++;
        }
        return o;
}

/* Releases the op and moves the cycle on when it was the last of its phase. */
void cycle_op_done(struct op *o) {
        struct cycle *c = o->c;
        free(o->order_id);
        free(o->customer_key);
        free(o->account);
        free(o->post_error);
        free(o);
        c->pending--;
        /* A request may complete synchronously (e.g. a flush with nothing
         * due): the fill() or advance() loop already running picks that up. */
        fill(c);
        if (c->pending == 0 && !c->filling && !c->advancing)
                advance(c);
}

/* Records the first fatal error of the cycle as "what: detail". */
void cycle_set_error(struct cycle *c, int r, const char *what, const char *detail) {
        if (c->res.r < 0)
                return;
        c->res.r = r < 0 ? r : -EIO;
        if (asprintf(&c->res.error, "%s: %s", what, detail ? detail : "unknown error") < 0)
                c->res.error = NULL;
}

/* Saves st, logging a failure (what: when).  Also the save of the mail
 * counters after a retry flush between cycles. */
static int save_state(const struct cfg *cfg, const struct state *st, const char *what) {
        int r = store_save(cfg->daemon.state_dir, st);
        if (r < 0) {
                char buf[16];
                snprintf(buf, sizeof(buf), "%d", -r);
                log_event(LOG_ERR, LOG_EV_STATE_SAVE_FAILED,
                          LOG_FIELDS({ "STATE_DIR", cfg->daemon.state_dir }, { "ERRNO", buf }),
                          "Cannot save state in %s (%s): %s; will retry", cfg->daemon.state_dir,
                          what, strerror(-r));
        }
        return r;
}

bool cycle_may_act(struct cycle *c) {
        if (!c->aborted && c->env.may_act && !c->env.may_act(c->env.may_act_ud))
                c->aborted = true;
        return !c->aborted;
}

/* env.save failed: a fenced write failing means stop acting. */
static void save_failed(struct cycle *c, int r, const char *what, const char *err) {
        char buf[16];
        snprintf(buf, sizeof(buf), "%d", -r);
        log_event(LOG_ERR, LOG_EV_STATE_SAVE_FAILED, LOG_FIELDS({ "ERRNO", buf }),
                  "Cannot save state in etcd (%s): %s; %s", what, err ? err : strerror(-r),
                  r == -EPERM ? "not the leader any more, stopping" : "stopping the cycle");
        c->save_failed = true;
        cycle_set_error(c, r, "cannot save state", err ? err : strerror(-r));
        c->aborted = true;
}

static void on_saved(void *ud, int r, const char *err) {
        struct op *o = ud;
        struct cycle *c = o->c;
        c->saving = false;
        if (r < 0)
                save_failed(c, r, o->what, err);
        if (c->flush_after_save) {
                c->flush_after_save = false;
                start_early_flush(c);
        }
        cycle_op_done(o);
}

/* env.save: an op of the phase, which moves on when the save is done. */
static void persist_async(struct cycle *c, const char *what) {
        struct op *o = cycle_op_new(c);
        if (!o) {
                save_failed(c, -ENOMEM, what, NULL);
                return;
        }
        o->what = what;
        c->saving = true;
        int r = c->env.save(c->env.save_ud, c->work, on_saved, o);
        if (r < 0)
                on_saved(o, r, NULL);
}

static void persist(struct cycle *c, const char *what) {
        if (c->env.dry_run)
                return;
        if (c->env.save) {
                persist_async(c, what);
                return;
        }
        int r = save_state(c->env.cfg, c->work, what);
        if (r < 0) {
                c->save_failed = true;
                cycle_set_error(c, r, "cannot save state", strerror(-r));
        }
}

void cycle_perform_actions(struct cycle *c, const struct action_list *l) {
        for (size_t i = 0; i < l->n; i++) {
                const struct action *a = &l->items[i];
                if (a->type == ACTION_LOG)
                        events_log_action(a);
                else if (a->type == ACTION_NOTIFY)
                        mailplan_queue(c, a);
        }
}

static void settle_clear(struct cycle *c) {
        for (size_t i = 0; i < c->n_settle; i++)
                free(c->settle[i]);
        util_freep(&c->settle);
        c->n_settle = 0;
}

/* Collects the tracked orders to settle and enters the phase. */
static void begin_settle(struct cycle *c) {
        for (size_t ci = 0; ci < c->work->n_customers; ci++) {
                const struct tracked_customer *cu = &c->work->customers[ci];
                for (size_t k = 0; k < cu->n_orders; k++) {
                        const struct tracked_order *t = &cu->orders[k];
                        if (t->status != TRACK_PROCESS_SENT || order_list_find(&c->orders, t->id))
                                continue;
                        char **p = realloc(c->settle, (c->n_settle + 1) * sizeof(*p));
                        if (!p || !(p[c->n_settle] = strdup(t->id))) {
                                if (p)
                                        c->settle = p;
                                cycle_set_error(c, -ENOMEM, "out of memory", NULL);
                                break;
                        }
                        c->settle = p;
                        c->n_settle++;
                }
        }
        begin_phase(c, PH_SETTLE, NULL);
}

/* Starts the phase's next request; false when it has none left. */
static bool start_next(struct cycle *c) {
        if (c->aborted)
                return false;
        if (c->phase == PH_CONTACTS) {
                if (c->next >= c->n_buyers)
                        return false;
                mailplan_start_buyer(c, c->next++);
                return true;
        }
        if (c->phase == PH_SETTLE) {
                if (c->next >= c->n_settle)
                        return false;
                process_start_settle(c, c->settle[c->next++]);
                return true;
        }
        if (c->phase == PH_TEMPLATES) {
                while (c->next < c->orders.n) {
                        size_t i = c->next++;
                        struct order *o = &c->orders.items[i];
                        if (o->status == ORDER_STATUS_QUERYING && !listing_template_known(c, o)) {
                                listing_start_template(c, i);
                                return true;
                        }
                }
                return false;
        }
        enum action_type want = c->phase == PH_CHECKS ? ACTION_CHECK :
                                c->phase == PH_PROCESS ? ACTION_PROCESS : ACTION_LOG;
        while (want != ACTION_LOG && c->next < c->todo.n) {
                const struct action *a = &c->todo.items[c->next++];
                if (a->type != want)
                        continue;
                if (want == ACTION_CHECK)
                        checks_start(c, a);
                else
                        process_start(c, a);
                return true;
        }
        return false;
}

/* Keeps the window full.  Completions inside (a request that fails at
 * submission) only count down; this loop goes on. */
static void fill(struct cycle *c) {
        if (c->filling)
                return;
        c->filling = true;
        while (c->pending < c->window && start_next(c))
                ;
        c->filling = false;
}

/* Enters a phase whose requests fill() starts; todo (may be NULL) is moved. */
static void begin_phase(struct cycle *c, enum phase ph, struct action_list *todo) {
        action_list_clear(&c->todo);
        if (todo) {
                c->todo = *todo;
                *todo = (struct action_list) { 0 };
        }
        c->phase = ph;
        c->next = 0;
        fill(c);
}

static void on_list(void *ud, int r, long status, const char *err, struct order_list *orders) {
        struct op *o = ud;
        struct cycle *c = o->c;
        char st[16];

        if (r < 0 || status != 200 || !orders) {
                snprintf(st, sizeof(st), "%ld", status);
                log_event(LOG_ERR, LOG_EV_POLL_FAILED,
                          LOG_FIELDS({ "HTTP_STATUS", st }, { "URL", c->env.cfg->marketplace.url }),
                          "Cannot list orders: %s", err ? err : strerror(r < 0 ? -r : EIO));
                cycle_set_error(c, r < 0 ? r : -EIO, "cannot list orders", err);
                c->aborted = true;
        } else {
                c->orders = *orders;
                *orders = (struct order_list) { 0 };
                c->res.orders_seen = c->orders.n;
        }
        cycle_op_done(o);
}

/* ---- phases ---- */

/* Intent first, but only where there is one: mails and Process calls
 * need their intent on disk before they happen; checks are reads, and the
 * save at the end of the cycle records them (a warm cycle of 10,000
 * orders saved a 6.6 MB state twice for nothing). */
static void persist_intent(struct cycle *c, const struct action_list *l, const char *what) {
        for (size_t i = 0; i < l->n; i++)
                if (l->items[i].type == ACTION_NOTIFY || l->items[i].type == ACTION_PROCESS) {
                        persist(c, what);
                        return;
                }
}

static void plan(struct cycle *c) {
        struct action_list acts = { 0 };
        int r;

        listing_unindex(c);      /* the engine changes the state from here on */
        listing_filter_urls(c);
        r = listing_assign_accounts(c);
        if (r >= 0)
                r = eng_decide(&c->params, &c->orders, NULL, c->work, c->now, &acts);
        if (r < 0) {
                cycle_set_error(c, r, "engine", strerror(-r));
                action_list_clear(&acts);
                return;
        }
        for (size_t i = 0; i < c->orders.n; i++)
                if (c->orders.items[i].status == ORDER_STATUS_QUERYING && c->orders.items[i].relationship_url)
                        c->res.blocked++;
        c->planned = acts;
        if (c->env.cfg->mail.notify_order_contacts && mailplan_collect_buyers(c) < 0)
                cycle_set_error(c, -ENOMEM, "out of memory", NULL);
        /* the buyers' contacts first, when there is someone to mail */
        begin_phase(c, PH_CONTACTS, NULL);
}

/* Mails first: the outbox is their durable intent.  Saving the state
 * first would lose every mail decided in the window between the two
 * writes (a crash there leaves notified_at set and no mail queued).  This
 * way a crash before the save makes the same decisions again next cycle
 * and the outbox drops keys it already holds (at worst one duplicate, when
 * a key embeds this cycle's clock). */
static void queue_then_persist(struct cycle *c, const struct action_list *acts, const char *what) {
        cycle_perform_actions(c, acts);
        /* one sync for the batch just queued, then the state that says so */
        mailplan_sync(c);
        persist_intent(c, acts, what);
}

static void plan_mail(struct cycle *c) {
        struct action_list acts = c->planned;
        c->planned = (struct action_list) { 0 };
        queue_then_persist(c, &acts, "after queueing mail");
        begin_phase(c, PH_CHECKS, &acts);
        /* no mail goes out before the state that records it is saved */
        if (c->saving)
                c->flush_after_save = true;
        else
                start_early_flush(c);
}

static void decide(struct cycle *c) {
        struct action_list acts = { 0 };
        int r = eng_decide(&c->params, &c->orders, &c->facts, c->work, c->now, &acts);
        if (r < 0) {
                cycle_set_error(c, r, "engine", strerror(-r));
                action_list_clear(&acts);
                return;
        }
        /* the first requests that waited for their check, then the intent
         * of every Process */
        queue_then_persist(c, &acts, "before Process");
        c->held = acts;
        begin_phase(c, PH_INTENT, NULL);   /* until the save is done */
}

static void process_saved(struct cycle *c) {
        struct action_list acts = c->held;
        c->held = (struct action_list) { 0 };
        /* no Process whose intent is not saved */
        if (c->save_failed)
                action_list_clear(&acts);
        begin_phase(c, PH_PROCESS, &acts);
}

static void on_flush(void *ud, const struct mail_flush_stats *st) {
        struct op *o = ud;
        mailplan_log_flush(o->c->env.cfg, st, &o->c->auth_logged);
        counters_add_flush(&o->c->work->counters, st);   /* saved with the state at the end */
        o->c->res.mails_sent += st->sent;
        cycle_op_done(o);
}

/* ---- queued mail between cycles ---- */

struct mail_retry {
        const struct cfg *cfg;
        struct state *state;     /* the mail counters; saved when they moved */
        bool file_save;          /* store_save: no env.save (single host) */
        cycle_retry_done_fn done;
        void *ud;
};

static void on_retry_flush(void *ud, const struct mail_flush_stats *st) {
        struct mail_retry *m = ud;
        bool auth_logged = false;
        mailplan_log_flush(m->cfg, st, &auth_logged);
        /* with env.save (cluster mode) the caller saves, through its own seam */
        if (m->state && counters_add_flush(&m->state->counters, st) > 0 && m->file_save)
                (void) save_state(m->cfg, m->state, "after sending queued mail");
        m->done(m->ud);
        free(m);
}

int cycle_retry_mail(const struct cycle_env *env, int64_t now, cycle_retry_done_fn done, void *ud) {
        struct mail_retry *m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        *m = (struct mail_retry) { .cfg = env->cfg, .state = env->state, .file_save = !env->save,
                                   .done = done, .ud = ud };
        int r = mail_outbox_flush(env->outbox, env->transport, now, on_retry_flush, m);
        if (r < 0)
                free(m);
        return r;
}

static bool can_mail(const struct cycle *c) {
        return !c->env.dry_run && c->env.outbox && c->env.transport;
}

/* false when it could not even start; otherwise its cycle_op_done() moves the
 * cycle on (maybe before this returns: the cycle may be gone then) */
static bool final_flush(struct cycle *c) {
        struct op *o = cycle_op_new(c);
        if (!o)
                return false;
        int r = mail_outbox_flush(c->env.outbox, c->env.transport, c->now, on_flush, o);
        if (r < 0) {
                log_event(LOG_ERR, LOG_EV_MAIL_FAILED, NULL, "Cannot send queued mail: %s", strerror(-r));
                cycle_op_done(o);
        }
        return true;
}

static void on_early_flush(void *ud, const struct mail_flush_stats *st) {
        struct cycle *c = ud;
        mailplan_log_flush(c->env.cfg, st, &c->auth_logged);
        counters_add_flush(&c->work->counters, st);
        c->res.mails_sent += st->sent;
        c->early_flush = false;
        if (c->phase != PH_FLUSH)
                return;
        /* FLUSH was waiting for us: now the mails queued since */
        if (!c->aborted && final_flush(c))
                return;
        if (c->pending == 0 && !c->filling && !c->advancing)
                advance(c);
}

/* Sends the mails plan() just queued while the checks run. */
static void start_early_flush(struct cycle *c) {
        if (!can_mail(c) || c->aborted)
                return;
        c->early_flush = true;      /* before: the callback may run inside */
        int r = mail_outbox_flush(c->env.outbox, c->env.transport, c->now, on_early_flush, c);
        if (r < 0) {
                c->early_flush = false;
                log_event(LOG_ERR, LOG_EV_MAIL_FAILED, NULL, "Cannot send queued mail: %s", strerror(-r));
        }
}

static void flush(struct cycle *c) {
        begin_phase(c, PH_FLUSH, NULL);
        /* with an early flush still running, on_early_flush() goes on */
        if (can_mail(c) && !c->early_flush)
                final_flush(c);
}

/* The outcome: pending customers counted, the old pruned, saved. */
static void save_outcome(struct cycle *c) {
        begin_phase(c, PH_SAVE, NULL);
        size_t pending = 0;
        for (size_t i = 0; i < c->work->n_customers; i++) {
                const struct tracked_customer *cu = &c->work->customers[i];
                for (size_t k = 0; k < cu->n_orders; k++)
                        if (cu->orders[k].status == TRACK_BLOCKED && !cu->accepted_at) {
                                pending++;
                                break;
                        }
        }
        c->res.customers_pending = pending;
        if (!c->env.dry_run && c->env.cfg->daemon.retention > 0)
                store_prune(c->work, c->now - c->env.cfg->daemon.retention);
        mailplan_sync(c);     /* confirmations queued since plan_mail() */
        persist(c, "after the cycle");
}

static void finish(struct cycle *c) {
        c->phase = PH_DONE;
        c->cb(c->ud, &c->res);
        free(c->res.error);
        action_list_clear(&c->todo);
        listing_unindex(c);
        order_list_clear(&c->orders);
        rel_fact_list_clear(&c->facts);
        action_list_clear(&c->planned);
        action_list_clear(&c->held);
        action_list_clear(&c->unsynced);
        settle_clear(c);
        for (size_t i = 0; i < c->n_buyers; i++) {
                free(c->buyers[i].id);
                free(c->buyers[i].email);
        }
        free(c->buyers);
        state_free(c->dry_copy);
        free(c);
}

/* Called whenever a phase has nothing left in flight.  A phase that starts
 * no request moves straight on to the next. */
static void advance(struct cycle *c) {
        c->advancing = true;
        while (c->pending == 0 && c->phase != PH_DONE) {
                if (c->aborted && c->phase == PH_CONTACTS) {
                        /* decided mails are queued before the state says
                         * they were: never save one without the other */
                        plan_mail(c);
                        continue;
                }
                if (c->aborted && c->phase < PH_FLUSH) {
                        /* no final flush; an early one still has to end */
                        begin_phase(c, PH_FLUSH, NULL);
                        continue;
                }
                switch (c->phase) {
                case PH_LIST:
                        begin_settle(c);
                        break;
                case PH_SETTLE:
                        listing_index(c);
                        listing_episode_starts(c);
                        begin_phase(c, PH_TEMPLATES, NULL);
                        break;
                case PH_TEMPLATES:
                        plan(c);          /* -> PH_CONTACTS */
                        if (c->res.r < 0 && c->phase != PH_CONTACTS)
                                c->aborted = true;
                        break;
                case PH_CONTACTS:
                        plan_mail(c);     /* -> PH_CHECKS */
                        break;
                case PH_CHECKS:
                        decide(c);        /* -> PH_INTENT */
                        break;
                case PH_INTENT:
                        process_saved(c); /* -> PH_PROCESS */
                        break;
                case PH_PROCESS:
                        flush(c);         /* -> PH_FLUSH */
                        break;
                case PH_FLUSH:
                        if (c->early_flush) {
                                c->advancing = false;   /* on_early_flush() goes on */
                                return;
                        }
                        save_outcome(c);  /* -> PH_SAVE */
                        break;
                case PH_SAVE:
                        finish(c);
                        return;
                case PH_DONE:
                        return;
                }
        }
        c->advancing = false;
}

int cycle_start(const struct cycle_env *env, cycle_done_fn cb, void *ud, struct cycle **ret) {
        const struct cfg *cfg = env->cfg;
        struct cycle *c = calloc(1, sizeof(*c));
        int r;

        if (!c)
                return -ENOMEM;
        c->env = *env;
        c->cb = cb;
        c->ud = ud;
        c->now = util_now_wall();
        c->window = (size_t) (cfg->daemon.max_parallel > 0 ? cfg->daemon.max_parallel : 1) *
                    CYCLE_WINDOW_PER_SLOT;
        c->work = env->state;
        if (env->dry_run) {
                c->dry_copy = state_new();
                if (!c->dry_copy || state_copy(c->dry_copy, env->state) < 0) {
                        state_free(c->dry_copy);
                        free(c);
                        return -ENOMEM;
                }
                c->work = c->dry_copy;
        }
        c->params = (struct eng_params) {
                .reminder_interval = cfg->mail.reminder_interval,
                .max_reminders = cfg->mail.max_reminders,
                .deadline = cfg->mail.deadline,
                .deadline_warning = cfg->mail.deadline_warning,
                .check_schedule = cfg->microsoft.check_schedule,
                .n_check_schedule = cfg->microsoft.n_check_schedule,
                .check_all = env->check_all,
                .have_ops = cfg->mail.n_ops > 0,
                .check_first = true,
        };

        static const enum order_status statuses[] = { ORDER_STATUS_QUERYING, ORDER_STATUS_DRAFT };
        struct op *o = cycle_op_new(c);
        if (!o) {
                state_free(c->dry_copy);
                free(c);
                return -ENOMEM;
        }
        c->phase = PH_LIST;
        r = mp_list_orders(env->mp, statuses, 2, on_list, o);
        if (r < 0) {
                free(o);
                state_free(c->dry_copy);
                free(c);
                return r;
        }
        if (ret)
                *ret = c;
        return 0;
}

void cycle_abort(struct cycle *c) {
        if (c)
                c->aborted = true;
}
