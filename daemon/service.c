/* SPDX-License-Identifier: MIT */
/*
 * The service: builds the clients on one libuv loop, runs a cycle every
 * poll_interval (or once), and talks to systemd (READY, STATUS, WATCHDOG,
 * RELOADING, STOPPING).  Signals: SIGTERM/SIGINT stop, SIGHUP reloads.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <systemd/sd-daemon.h>
#include <uv.h>

#include "clusteroutbox.h"
#include "config.h"
#include "cycle.h"
#include "daemon.h"
#include "http.h"
#include "log.h"
#include "mail.h"
#include "marketplace.h"
#include "metrics.h"
#include "partnercenter.h"
#include "secret.h"
#include "store.h"
#include "counters.h"
#include "util.h"

#define STOP_GRACE_MS 5000

/* Everything built from one configuration; rebuilt on reload. */
struct services {
        struct cfg *cfg;
        struct mail_templates *templates;
        struct http *http;
        struct mp_client *mp;
        struct cycle_account *accounts;   /* one Partner Center client per account */
        size_t n_accounts;
        struct mail_transport *transport;
        struct mail_outbox *outbox;
};

struct service {
        uv_loop_t loop;
        const struct options *opts;
        struct services sv;
        bool reload_requested;         /* SIGHUP during a cycle: reload when it ends */
        int lock_fd;                   /* the state directory's lock, -1 when not held */
        /* [cluster]: NULL single-host.  The state is etcd's, loaded on each
         * takeover (loaded false: s->state is not the cluster's yet). */
        struct member *member;
        bool loaded, loading, was_active;
        uv_timer_t role_timer;
        pid_t lock_holder;             /* the PID we wait for (logged once per holder) */
        struct state *state;
        struct cycle *cycle;
        uv_timer_t poll_timer, watchdog_timer, stop_timer, finish_timer, lock_timer, retry_timer;
        bool retrying;                 /* a queued-mail retry flush runs */
        bool cycle_wanted;             /* the poll timer fired during it */
        uv_signal_t sig_term, sig_int, sig_hup;
        bool stopping;
        int exit_code;
        uint64_t watchdog_usec;
        uint64_t cycle_started_ms;
        /* for STATUS= */
        time_t last_poll;
        time_t last_success;         /* end of the last successful cycle, 0 = none */
        double last_duration;        /* seconds, the last cycle */
        bool last_ok;
        char last_error[200];
        size_t pending_customers;
        size_t processed_today;
        int today;                     /* day of year of processed_today */
};

/* http goes first: cancelling its transfers calls back into the clients,
 * the transport and the outbox, which must still exist. */
static void services_free(struct services *sv) {
        sv->http = http_free(sv->http);
        sv->transport = mail_transport_free(sv->transport);
        sv->outbox = mail_outbox_free(sv->outbox);
        for (size_t i = 0; i < sv->n_accounts; i++) {
                pc_client_free(sv->accounts[i].pc);
                graph_client_free(sv->accounts[i].graph);
        }
        free(sv->accounts);
        sv->accounts = NULL;
        sv->n_accounts = 0;
        sv->mp = mp_client_free(sv->mp);
        sv->templates = mail_templates_free(sv->templates);
        sv->cfg = cfg_free(sv->cfg);
}

/* Per account one Partner Center client and one Graph client, each with
 * its own token cache (one per audience). */
static int open_accounts(struct services *sv) {
        const struct cfg *cfg = sv->cfg;
        sv->accounts = calloc(cfg_n_accounts(cfg), sizeof(*sv->accounts));
        if (!sv->accounts)
                return -ENOMEM;
        for (size_t i = 0; i < cfg_n_accounts(cfg); i++) {
                const struct cfg_microsoft *m = cfg_account(cfg, i);
                /* the application both clients sign in as */
#define ACCOUNT_APP(m) .login_url = (m)->login_url, .tenant = (m)->tenant, .client_id = (m)->client_id, \
                       .client_secret = (m)->client_secret, .ca_file = (m)->ca_file
                struct pc_options po = { ACCOUNT_APP(m), .api_url = m->api_url, .token_endpoint = m->token_endpoint };
                struct graph_options go = { ACCOUNT_APP(m), .graph_url = m->graph_url };
#undef ACCOUNT_APP
                int r = pc_client_new(sv->http, &po, &sv->accounts[i].pc);
                if (r < 0)
                        return r;
                sv->accounts[i].name = m->name;
                sv->n_accounts++;   /* freed with the services from here on */
                r = graph_client_new(sv->http, &go, &sv->accounts[i].graph);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* The http count hook: partnerd_http_requests_total, into the state (saved
 * with it).  --dry-run counts nothing: it saves nothing either. */
static void count_request(void *ud, const char *label, int r, long status) {
        struct service *s = ud;
        if (s->state && !s->opts->dry_run)
                (void) counters_add(&s->state->counters, COUNTER_HTTP_REQUESTS, label,
                                    counters_status_class(r, status), 1);
}

/* Builds the clients of one configuration.  The outbox is opened once the
 * state directory is locked (never in --dry-run, which writes nothing); a
 * reload keeps the one the service has, so that nothing queued is orphaned.
 * share: the running services' http on a reload, whose curl multi handle
 * (and connections) the new one shares; NULL at start. */
static int services_open(struct service *s, struct services *sv, struct http *share) {
        const struct cfg *cfg;
        int r = load_config(s->opts->config_path, LOAD_CONFIG_EVENTS, &sv->cfg, &sv->templates, true);
        if (r != 0)
                return -EINVAL;    /* the configuration is invalid: EX_CONFIG */
        cfg = sv->cfg;
        struct http_options ho = {
                .max_per_host = cfg->daemon.max_parallel,
                .connect_timeout_ms = (long) cfg->daemon.connect_timeout * 1000,
                .timeout_ms = (long) cfg->daemon.http_timeout * 1000,
                .max_response = cfg->daemon.max_response,
                .proxy = cfg->daemon.proxy,
        };
        r = share ? http_new_shared(share, &ho, &sv->http) : http_new(&s->loop, &ho, &sv->http);
        if (r < 0) {
                log_error("Cannot set up HTTP: %s", strerror(-r));
                goto fail;
        }
        http_set_count_hook(sv->http, count_request, s);
        struct mp_options mo = {
                .base_url = cfg->marketplace.url,
                .token = cfg->marketplace.token,
                .products = (const char *const *) cfg->marketplace.products,
                .n_products = cfg->marketplace.n_products,
                .ca_file = cfg->marketplace.ca_file,
                .max_orders_bytes = cfg->marketplace.max_orders_bytes,
        };
        const char *what = "the Marketplace client";
        if ((r = mp_client_new(sv->http, &mo, &sv->mp)) < 0 ||
            (what = "the Partner Center clients", r = open_accounts(sv)) < 0 ||
            (what = "the mail transport", r = mail_transport_new(sv->http, &s->loop, &cfg->mail, &sv->transport)) < 0) {
                log_error("Cannot set up %s: %s", what, strerror(-r));
                goto fail;
        }
        return 0;
fail:
        services_free(sv);
        return r == -EINVAL ? -EIO : r;   /* -EINVAL means a configuration error */
}

static void notify_status(struct service *s) {
        char when[16] = "never", line[600], role[300] = "";
        struct tm tm;
        if (s->member && !s->opts->dry_run) {
                char *d = member_describe(s->member);
                bool active = d && strcmp(d, "active") == 0;
                snprintf(role, sizeof(role), "%s%s", d ? d : "standby", active ? "; " : "");
                free(d);
                if (!active) {
                        snprintf(line, sizeof(line), "STATUS=%s", role);
                        (void) sd_notify(0, line);
                        return;
                }
        }
        if (s->last_poll && localtime_r(&s->last_poll, &tm))
                strftime(when, sizeof(when), "%H:%M:%S", &tm);
        snprintf(line, sizeof(line), "STATUS=%s%zu customer%s awaiting acceptance, %zu order%s processed today, last poll %s %s%s",
                 role, s->pending_customers, s->pending_customers == 1 ? "" : "s", s->processed_today,
                 s->processed_today == 1 ? "" : "s", when, s->last_poll ? (s->last_ok ? "ok" : "failed: ") : "",
                 s->last_poll && !s->last_ok ? s->last_error : "");
        /* any local user reads STATUS= with systemctl status */
        secret_scrub_buf(line, sizeof(line));
        (void) sd_notify(0, line);
}

static void close_handles(struct service *s);
static void write_metrics(struct service *s, bool up);
static void schedule_retry(struct service *s);

static void on_finish_timer(uv_timer_t *t) {
        close_handles(t->data);
}

/* Teardown frees the http layer, so it never runs inside one of its
 * callbacks: it is deferred to a timer callback of its own. */
static void maybe_finish(struct service *s) {
        if (!s->stopping || s->cycle || s->retrying)
                return;
        write_metrics(s, false);
        (void) sd_notify(0, "STOPPING=1\nSTATUS=Stopping");
        uv_timer_start(&s->finish_timer, on_finish_timer, 0, 0);
}

static bool str_same(const char *a, const char *b) {
        return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* The cluster member is built once: [cluster] does not change on reload. */
static bool cluster_same(const struct cfg_cluster *a, const struct cfg_cluster *b) {
        return a->enabled == b->enabled && a->lease_ttl == b->lease_ttl && str_same(a->etcd, b->etcd) &&
               str_same(a->prefix, b->prefix) && str_same(a->name, b->name) && str_same(a->ca_file, b->ca_file) &&
               str_same(a->cert_file, b->cert_file) && str_same(a->key_file, b->key_file);
}

/* Applies a reload: never while a cycle runs (its clients, transport and
 * outbox stay what they were until it ends).  The outbox moves to the new
 * services as it is, with everything queued in it. */
static void apply_reload(struct service *s) {
        struct services next = { 0 };

        s->reload_requested = false;
        if (services_open(s, &next, s->sv.http) < 0)
                log_event(LOG_ERR, LOG_EV_CONFIG_INVALID, LOG_FIELDS({ "CONFIG_FILE", s->opts->config_path }),
                          "Reload failed, keeping the running configuration");
        else if (strcmp(next.cfg->daemon.state_dir, s->sv.cfg->daemon.state_dir) != 0 ||
                 !cluster_same(&next.cfg->cluster, &s->sv.cfg->cluster)) {
                log_event(LOG_ERR, LOG_EV_CONFIG_INVALID, LOG_FIELDS({ "CONFIG_FILE", s->opts->config_path }),
                          "Reload failed, keeping the running configuration: %s cannot change "
                          "while partnerd runs (restart it)",
                          cluster_same(&next.cfg->cluster, &s->sv.cfg->cluster) ? "state_dir" : "[cluster]");
                services_free(&next);
        } else {
                next.outbox = s->sv.outbox;
                s->sv.outbox = NULL;
                services_free(&s->sv);
                s->sv = next;
                log_event(LOG_INFO, LOG_EV_RELOADED, NULL, "Configuration reloaded from %s", s->opts->config_path);
        }
        (void) sd_notify(0, "READY=1");
        notify_status(s);
}

static void start_cycle(struct service *s);
static void on_poll_timer(uv_timer_t *t);
static void start_load(struct service *s);
static bool may_act(const struct service *s);
static bool outbox_gate(void *ud);

/* The outbox in cluster mode: no mail goes out unless this instance may
 * act, and no mail is queued that etcd could not mirror (its file is put
 * in one transaction, lib/clusteroutbox.h). */
static void cluster_outbox_rules(struct service *s) {
        mail_outbox_set_gate(s->sv.outbox, outbox_gate, s);
        mail_outbox_set_max_file(s->sv.outbox, COUTBOX_MAX_QUEUED);
}

/* [daemon] metrics_file, after each cycle (up) and on the way out (down). */
static void write_metrics(struct service *s, bool up) {
        const char *path = s->sv.cfg ? s->sv.cfg->daemon.metrics_file : NULL;
        if (!path || s->opts->dry_run)
                return;
        struct metrics_snapshot m = {
                .up = up,
                .last_success = s->last_success,
                .cycle_duration = s->last_duration,
        };
        metrics_from_state(s->state, s->sv.cfg->mail.deadline, &m);
        int r = metrics_write(path, &m);
        if (r < 0)
                log_warning("Cannot write the metrics file %s: %s", path, strerror(-r));
}

/* A reload requested during the cycle that just ended, outside any http
 * callback (it frees the http layer). */
static void on_reload_timer(uv_timer_t *t) {
        struct service *s = t->data;
        apply_reload(s);
        uv_timer_start(&s->poll_timer, on_poll_timer, (uint64_t) s->sv.cfg->marketplace.poll_interval * 1000, 0);
        schedule_retry(s);
}

static void on_cycle_done(void *ud, const struct cycle_result *res) {
        struct service *s = ud;
        char el[32];
        time_t now = time(NULL);
        struct tm tm;

        s->cycle = NULL;
        s->last_poll = now;
        s->last_ok = res->r >= 0;
        /* scrubbed before it is cut: no prefix of a secret may stay */
        char *error = secret_scrub_str(res->error);
        snprintf(s->last_error, sizeof(s->last_error), "%s", error ? error : res->error ? "(error)" : "");
        free(error);
        s->pending_customers = res->customers_pending;
        if (localtime_r(&now, &tm) && tm.tm_yday != s->today) {
                s->today = tm.tm_yday;
                s->processed_today = 0;
        }
        s->processed_today += res->processed;
        if (res->r >= 0)
                s->last_success = now;
        s->last_duration = (double) (util_now_mono_ms() - s->cycle_started_ms) / 1000.0;
        write_metrics(s, true);
        snprintf(el, sizeof(el), "%llu", (unsigned long long) (util_now_mono_ms() - s->cycle_started_ms));
        log_event(res->r >= 0 ? LOG_INFO : LOG_ERR, res->r >= 0 ? LOG_EV_POLL_DONE : LOG_EV_POLL_FAILED,
                  LOG_FIELDS({ "ELAPSED_MS", el }),
                  "Cycle %s in %s ms: %zu orders, %zu blocked, %zu mails queued, %zu sent, %zu checks, %zu processed%s%s",
                  res->r >= 0 ? "done" : "failed", el, res->orders_seen, res->blocked, res->mails_queued,
                  res->mails_sent, res->checks, res->processed, res->error ? "; " : "",
                  res->error ? res->error : "");
        if (s->opts->once) {
                s->exit_code = res->r >= 0 ? 0 : 1;
                s->stopping = true;
        }
        notify_status(s);
        if (s->stopping) {
                maybe_finish(s);
                return;
        }
        if (s->reload_requested) {
                uv_timer_start(&s->poll_timer, on_reload_timer, 0, 0);
                return;
        }
        uv_timer_start(&s->poll_timer, on_poll_timer, (uint64_t) s->sv.cfg->marketplace.poll_interval * 1000, 0);
        schedule_retry(s);
}

static void on_poll_timer(uv_timer_t *t) {
        struct service *s = t->data;
        if (s->retrying) {         /* the retry flush ends first, then the cycle */
                s->cycle_wanted = true;
                return;
        }
        start_cycle(s);
}

/* ---- [cluster]: only the active instance acts ----
 * A standby does nothing but campaign (lib/cluster): no poll, no mail, no
 * Process.  On becoming active the state is loaded from etcd and a cycle
 * starts at once; on losing the role the running cycle is aborted. */

/* --dry-run reads etcd's state without campaigning, and acts on nothing. */
static bool may_act(const struct service *s) {
        return !s->member || s->opts->dry_run || member_active(s->member);
}

/* Asked by the outbox right before each mail goes out. */
static bool outbox_gate(void *ud) {
        const struct service *s = ud;
        return may_act(s);
}

/* The cycle's save in cluster mode: the outbox files and the state, fenced. */
struct cycle_save_req {
        void (*done)(void *ud, int r, const char *err);
        void *ud;
};

static void on_cycle_saved(void *ud, int r, struct state *loaded, const char *err) {
        struct cycle_save_req *q = ud;
        q->done(q->ud, r, err);
        free(q);
}

static int cycle_save(void *save_ud, const struct state *st, void (*done)(void *ud, int r, const char *err),
                      void *ud) {
        struct service *s = save_ud;
        struct cycle_save_req *q = malloc(sizeof(*q));
        if (!q)
                return -ENOMEM;
        *q = (struct cycle_save_req) { done, ud };
        int r = member_save(s->member, st, on_cycle_saved, q);
        if (r < 0)
                free(q);
        return r;
}

static void on_loaded(void *ud, int r, struct state *loaded, const char *err) {
        struct service *s = ud;
        s->loading = false;
        if (r == -ECANCELED || s->stopping) {
                state_free(loaded);
                return;
        }
        if (r < 0) {
                log_event(LOG_ERR, LOG_EV_STATE_CORRUPT, NULL, "Cluster: cannot load the state from etcd: %s",
                          err ? err : strerror(-r));
                uv_timer_start(&s->poll_timer, on_poll_timer, (uint64_t) s->sv.cfg->cluster.lease_ttl * 1000 / 3, 0);
                return;
        }
        state_free(s->state);
        s->state = loaded;
        s->loaded = true;
        if (!s->opts->dry_run) {
                /* the files are etcd's outbox now (no flush runs: no cycle, no retry) */
                const char *dir = s->sv.cfg->daemon.state_dir;
                s->sv.outbox = mail_outbox_free(s->sv.outbox);
                r = mail_outbox_open(dir, &s->sv.outbox);
                if (r >= 0)
                        cluster_outbox_rules(s);
                if (r < 0) {
                        log_error("Cannot open the mail outbox in %s/outbox: %s", dir, strerror(-r));
                        s->loaded = false;
                        uv_timer_start(&s->poll_timer, on_poll_timer, (uint64_t) s->sv.cfg->cluster.lease_ttl * 1000 / 3, 0);
                        return;
                }
        }
        uv_timer_start(&s->poll_timer, on_poll_timer, 0, 0);   /* outside the http callback */
}

static void start_load(struct service *s) {
        if (s->loading)
                return;
        s->loading = true;
        int r = member_load(s->member, !s->opts->dry_run, on_loaded, s);
        if (r < 0) {
                s->loading = false;
                log_error("Cluster: cannot load the state from etcd: %s", strerror(-r));
                uv_timer_start(&s->poll_timer, on_poll_timer, (uint64_t) s->sv.cfg->cluster.lease_ttl * 1000 / 3, 0);
        }
}

/* A change of role or of the known leader, outside lib/cluster's callback. */
static void on_role_timer(uv_timer_t *t) {
        struct service *s = t->data;
        bool active = member_active(s->member);
        if (active != s->was_active && !s->stopping) {
                char *d = member_describe(s->member);
                s->was_active = active;
                s->loaded = false;     /* a takeover reads etcd's state afresh */
                if (active) {
                        log_info("Cluster: active (this instance: %s)", s->sv.cfg->cluster.name);
                        uv_timer_start(&s->poll_timer, on_poll_timer, 0, 0);   /* waits for a retry flush */
                } else {
                        log_warning("Cluster: %s%s", s->cycle ? "lost the leadership, stopping the running cycle; " : "",
                                    d ? d : "standby");
                        uv_timer_stop(&s->retry_timer);
                        if (s->cycle)
                                cycle_abort(s->cycle);
                }
                free(d);
        }
        notify_status(s);
}

static void on_member_change(void *ud) {
        struct service *s = ud;
        uv_timer_start(&s->role_timer, on_role_timer, 0, 0);
}

/* ---- queued mail between cycles ----
 * Retried when due, on a timer of its own, not only at the next cycle
 * (whose flush sends what is due as well).  A cycle, a reload and the stop
 * wait for a running retry flush. */

/* A reload requested during the retry flush that just ended. */
static void on_retry_reload(uv_timer_t *t) {
        struct service *s = t->data;
        apply_reload(s);
        schedule_retry(s);
}

static void retry_finished(struct service *s);

static void on_retry_mirrored(void *ud, int r, struct state *loaded, const char *err) {
        struct service *s = ud;
        if (r < 0 && r != -ECANCELED)
                log_warning("Cluster: cannot record the sent mail in etcd: %s", err ? err : strerror(-r));
        retry_finished(s);
}

/* In cluster mode what the flush sent leaves etcd's outbox too; the retry
 * counts as running until then (cycles, reloads and the stop wait). */
static void on_retry_done(void *ud) {
        struct service *s = ud;
        if (s->member && s->loaded && !s->opts->dry_run && member_active(s->member)) {
                int r = member_save(s->member, s->state, on_retry_mirrored, s);
                if (r >= 0)
                        return;
                log_warning("Cluster: cannot record the sent mail in etcd: %s", strerror(-r));
        }
        retry_finished(s);
}

static void retry_finished(struct service *s) {
        s->retrying = false;
        write_metrics(s, true);    /* the mail counters moved */
        if (s->stopping) {
                maybe_finish(s);
                return;
        }
        /* outside the http callback this runs in */
        if (s->cycle_wanted) {
                s->cycle_wanted = false;
                uv_timer_start(&s->poll_timer, on_poll_timer, 0, 0);
        }
        if (s->reload_requested)
                uv_timer_start(&s->retry_timer, on_retry_reload, 0, 0);
        else
                schedule_retry(s);
}

static void on_retry_timer(uv_timer_t *t) {
        struct service *s = t->data;
        if (s->cycle || s->stopping || !may_act(s) || (s->member && !s->loaded))
                return;            /* the cycle flushes, and reschedules at its end; a standby sends
                                    * nothing; a new leader sends etcd's outbox, once restored */
        struct cycle_env env = { .loop = &s->loop, .cfg = s->sv.cfg,
                                 .transport = s->sv.transport, .outbox = s->sv.outbox, .state = s->state };
        if (s->member) {       /* the counters and the sent mails go to etcd in on_retry_done() */
                env.save = cycle_save;
                env.save_ud = s;
        }
        s->retrying = true;
        int r = cycle_retry_mail(&env, util_now_wall(), on_retry_done, s);
        if (r < 0) {
                s->retrying = false;
                log_event(LOG_ERR, LOG_EV_MAIL_FAILED, NULL, "Cannot send queued mail: %s", strerror(-r));
                schedule_retry(s);
        }
}

static void schedule_retry(struct service *s) {
        int64_t next = s->opts->once || s->opts->dry_run || s->stopping ? 0 : mail_outbox_next_attempt(s->sv.outbox);
        if (!next || s->retrying) {
                uv_timer_stop(&s->retry_timer);
                return;
        }
        int64_t wait = next - util_now_wall();
        uv_timer_start(&s->retry_timer, on_retry_timer, (uint64_t) (wait < 1 ? 1 : wait) * 1000, 0);
}

static void start_cycle(struct service *s) {
        if (s->cycle || s->stopping || !may_act(s))
                return;            /* a standby runs no cycle: it campaigns, nothing else */
        if (s->member && !s->loaded) {
                start_load(s);     /* the cycle starts when the state is here */
                return;
        }
        struct cycle_env env = {
                .loop = &s->loop,
                .cfg = s->sv.cfg,
                .mp = s->sv.mp,
                .pc = s->sv.accounts[0].pc,
                .graph = s->sv.accounts[0].graph,
                .accounts = s->sv.accounts,
                .n_accounts = s->sv.n_accounts,
                .transport = s->sv.transport,
                .outbox = s->sv.outbox,
                .templates = s->sv.templates,
                .state = s->state,
                .dry_run = s->opts->dry_run,
                .check_all = s->opts->once,
        };
        if (s->member) {
                env.save = cycle_save;
                env.save_ud = s;
                env.may_act = outbox_gate;
                env.may_act_ud = s;
        }
        s->cycle_started_ms = util_now_mono_ms();
        int r = cycle_start(&env, on_cycle_done, s, &s->cycle);
        if (r < 0) {
                s->cycle = NULL;
                log_event(LOG_ERR, LOG_EV_POLL_FAILED, NULL, "Cannot start a cycle: %s", strerror(-r));
                if (s->opts->once) {
                        s->exit_code = 1;
                        s->stopping = true;
                        maybe_finish(s);
                        return;
                }
                uv_timer_start(&s->poll_timer, on_poll_timer, (uint64_t) s->sv.cfg->marketplace.poll_interval * 1000, 0);
        }
}

/* WATCHDOG=1 only while cycles make progress: a cycle running far longer
 * than any request could take means the daemon is wedged, and systemd
 * should restart it. */
static void on_watchdog(uv_timer_t *t) {
        struct service *s = t->data;
        uint64_t limit_ms = (uint64_t) s->sv.cfg->daemon.http_timeout * 1000 * 10;
        if (limit_ms < 600000)
                limit_ms = 600000;
        if (s->cycle && util_now_mono_ms() - s->cycle_started_ms > limit_ms) {
                log_warning("Cycle running for over %llu s, withholding the watchdog ping",
                            (unsigned long long) (limit_ms / 1000));
                return;
        }
        (void) sd_notify(0, "WATCHDOG=1");
}

static void on_stop_timer(uv_timer_t *t) {
        struct service *s = t->data;
        if (s->sv.http && http_pending(s->sv.http) > 0) {
                log_warning("Requests still in flight after %d s, cancelling them", STOP_GRACE_MS / 1000);
                http_cancel_all(s->sv.http);
        }
}

static void on_signal(uv_signal_t *h, int signum) {
        struct service *s = h->data;
        if (signum == SIGHUP) {
                char buf[64];
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                snprintf(buf, sizeof(buf), "RELOADING=1\nMONOTONIC_USEC=%llu",
                         (unsigned long long) ts.tv_sec * 1000000ULL + (unsigned long long) ts.tv_nsec / 1000);
                (void) sd_notify(0, buf);
                if (s->cycle || s->retrying) {
                        /* the running cycle (or mail retry) finishes with what it has */
                        if (!s->reload_requested)
                                log_info("Reload requested: it takes effect when the running cycle ends");
                        s->reload_requested = true;
                } else
                        apply_reload(s);
                return;
        }
        if (s->stopping)
                return;
        log_info("Received %s, stopping", signum == SIGTERM ? "SIGTERM" : "SIGINT");
        s->stopping = true;
        uv_timer_stop(&s->poll_timer);
        uv_timer_stop(&s->retry_timer);
        if (s->cycle || s->retrying) {
                if (s->cycle)
                        cycle_abort(s->cycle);
                uv_timer_start(&s->stop_timer, on_stop_timer, STOP_GRACE_MS, 0);
        }
        maybe_finish(s);
}

static void close_handles(struct service *s) {
        uv_timer_stop(&s->stop_timer);
        uv_timer_stop(&s->poll_timer);
        uv_timer_stop(&s->watchdog_timer);
        uv_timer_stop(&s->lock_timer);
        uv_timer_stop(&s->retry_timer);
        uv_close((uv_handle_t *) &s->retry_timer, NULL);
        uv_close((uv_handle_t *) &s->finish_timer, NULL);
        uv_close((uv_handle_t *) &s->lock_timer, NULL);
        uv_close((uv_handle_t *) &s->poll_timer, NULL);
        uv_close((uv_handle_t *) &s->watchdog_timer, NULL);
        uv_close((uv_handle_t *) &s->stop_timer, NULL);
        uv_close((uv_handle_t *) &s->sig_term, NULL);
        uv_close((uv_handle_t *) &s->sig_int, NULL);
        uv_close((uv_handle_t *) &s->sig_hup, NULL);
        uv_close((uv_handle_t *) &s->role_timer, NULL);
        member_stop(s->member, &s->loop);
        s->member = NULL;
        services_free(&s->sv);
}

/* With the lock held: loads the state and opens the outbox.  --dry-run
 * reads the state only (a damaged file is reported, not moved) and has no
 * outbox.  0, or the exit code. */
static int load_state(struct service *s) {
        const char *dir = s->sv.cfg->daemon.state_dir;
        char *warning = NULL;
        int r;

        if (s->sv.cfg->cluster.enabled) {
                /* the state is etcd's: loaded on each takeover, never the file */
                s->state = state_new();
                if (!s->state)
                        return 1;
                goto outbox;
        }
        if (s->opts->dry_run) {
                r = store_read(dir, &s->state, &warning);
                if (r == -EBADMSG) {
                        log_warning("%s; a real run would move it aside and start empty, as this dry run does",
                                    warning ? warning : "state file unusable");
                        s->state = state_new();
                        r = s->state ? 0 : -ENOMEM;
                } else if (r < 0 && warning)
                        log_event(LOG_ERR, LOG_EV_STATE_CORRUPT, LOG_FIELDS({ "STATE_DIR", dir }), "%s", warning);
        } else {
                r = store_load(dir, &s->state, &warning);
                if (warning)
                        log_event(LOG_ERR, LOG_EV_STATE_CORRUPT, LOG_FIELDS({ "STATE_DIR", dir }), "%s", warning);
        }
        free(warning);
        if (r == -EPROTONOSUPPORT)
                return EXIT_CONFIG;   /* a newer partnerd's file: not ours to touch */
        if (r < 0) {
                log_error("Cannot load the state from %s: %s", dir, strerror(-r));
                return 1;
        }
outbox:
        if (s->opts->dry_run)
                return 0;
        r = mail_outbox_open(dir, &s->sv.outbox);
        if (r < 0) {
                log_error("Cannot open the mail outbox in %s/outbox: %s", dir, strerror(-r));
                return 1;
        }
        if (s->sv.cfg->cluster.enabled)
                cluster_outbox_rules(s);
        return 0;
}

#define LOCK_BUSY (-1)

/* Takes the state directory's lock (nothing to take in --dry-run).
 * 0: held; LOCK_BUSY: another process holds it (s->lock_holder, logged
 * once per holder); or an exit code. */
static int try_lock(struct service *s) {
        const char *dir = s->sv.cfg->daemon.state_dir;
        pid_t holder = 0;
        char pid[16];

        if (s->opts->dry_run)
                return 0;
        int r = store_lock(dir, &holder);
        if (r >= 0) {
                s->lock_fd = r;
                if (s->lock_holder)
                        log_info("The state directory %s is free now, starting", dir);
                return 0;
        }
        if (r != -EWOULDBLOCK) {
                log_error("Cannot lock the state directory %s: %s", dir, strerror(-r));
                return 1;
        }
        snprintf(pid, sizeof(pid), "%ld", (long) holder);
        if (s->opts->once) {
                log_event(LOG_ERR, LOG_EV_NONE, LOG_FIELDS({ "STATE_DIR", dir }, { "LOCK_PID", pid }),
                          "The state directory %s is in use by PID %s (another partnerd); try again when it ends",
                          dir, holder ? pid : "unknown");
                return EXIT_TEMPFAIL;
        }
        if (!s->lock_holder || s->lock_holder != holder) {
                char line[300];
                log_event(LOG_WARNING, LOG_EV_NONE, LOG_FIELDS({ "STATE_DIR", dir }, { "LOCK_PID", pid }),
                          "Waiting for PID %s, which holds the lock of the state directory %s",
                          holder ? pid : "unknown", dir);
                snprintf(line, sizeof(line), "STATUS=Waiting for PID %s, which holds the lock of %s",
                         holder ? pid : "unknown", dir);
                (void) sd_notify(0, line);
        }
        s->lock_holder = holder ? holder : -1;
        return LOCK_BUSY;
}

static void start_polling(struct service *s) {
        log_event(LOG_INFO, LOG_EV_STARTED, NULL, "partnerd %s started%s%s, polling every %llds",
                  PARTNERD_VERSION, s->opts->once ? " for one cycle" : "", s->opts->dry_run ? " (dry run)" : "",
                  (long long) s->sv.cfg->marketplace.poll_interval);
        (void) sd_notify(0, "READY=1\nSTATUS=Starting the first poll");
        uv_timer_start(&s->poll_timer, on_poll_timer, 0, 0);
}

/* The daemon waits for the lock (checked every second; signals, the
 * watchdog and reloads work meanwhile). */
static void on_lock_timer(uv_timer_t *t) {
        struct service *s = t->data;
        int r = try_lock(s);
        if (r == LOCK_BUSY)
                return;
        uv_timer_stop(&s->lock_timer);
        if (r == 0)
                r = load_state(s);
        if (r != 0) {
                s->exit_code = r;
                s->stopping = true;
                maybe_finish(s);
                return;
        }
        start_polling(s);
}

int service_run(const struct options *opts) {
        struct service s = { .opts = opts, .lock_fd = -1 };
        int r;

        if (uv_loop_init(&s.loop) < 0) {
                log_error("Cannot create the event loop");
                return 1;
        }
        r = services_open(&s, &s.sv, NULL);
        if (r < 0) {
                uv_run(&s.loop, UV_RUN_DEFAULT);
                (void) uv_loop_close(&s.loop);
                return r == -EINVAL ? EXIT_CONFIG : 1;
        }
        r = try_lock(&s);
        if (r == 0)
                r = load_state(&s);
        if (r != 0 && r != LOCK_BUSY) {
                services_free(&s.sv);
                uv_run(&s.loop, UV_RUN_DEFAULT);
                (void) uv_loop_close(&s.loop);
                store_unlock(s.lock_fd);
                return r;
        }

        uv_timer_init(&s.loop, &s.poll_timer);
        uv_timer_init(&s.loop, &s.watchdog_timer);
        uv_timer_init(&s.loop, &s.stop_timer);
        uv_timer_init(&s.loop, &s.finish_timer);
        uv_timer_init(&s.loop, &s.lock_timer);
        uv_timer_init(&s.loop, &s.retry_timer);
        uv_timer_init(&s.loop, &s.role_timer);
        s.retry_timer.data = s.role_timer.data = &s;
        uv_signal_init(&s.loop, &s.sig_term);
        uv_signal_init(&s.loop, &s.sig_int);
        uv_signal_init(&s.loop, &s.sig_hup);
        s.poll_timer.data = s.watchdog_timer.data = s.stop_timer.data = s.finish_timer.data = &s;
        s.lock_timer.data = &s;
        s.sig_term.data = s.sig_int.data = s.sig_hup.data = &s;
        uv_signal_start(&s.sig_term, on_signal, SIGTERM);
        uv_signal_start(&s.sig_int, on_signal, SIGINT);
        uv_signal_start(&s.sig_hup, on_signal, SIGHUP);
        if (sd_watchdog_enabled(0, &s.watchdog_usec) > 0 && s.watchdog_usec >= 2000)
                uv_timer_start(&s.watchdog_timer, on_watchdog, s.watchdog_usec / 2000, s.watchdog_usec / 2000);

        int cr = s.sv.cfg->cluster.enabled ? member_new(&s.loop, s.sv.http, s.sv.cfg, !opts->dry_run,
                                                        on_member_change, &s, &s.member) : 0;
        if (cr < 0) {
                log_error("Cannot set up the cluster member: %s", strerror(-cr));
                s.exit_code = 1;
                s.stopping = true;
                maybe_finish(&s);
        } else if (r == LOCK_BUSY) {
                /* ready to be stopped or reloaded while it waits; STATUS says for what */
                (void) sd_notify(0, "READY=1");
                uv_timer_start(&s.lock_timer, on_lock_timer, 1000, 1000);
        } else
                start_polling(&s);

        uv_run(&s.loop, UV_RUN_DEFAULT);
        /* the cycle is over and the handles are closed: let close callbacks run */
        uv_run(&s.loop, UV_RUN_DEFAULT);
        r = uv_loop_close(&s.loop);
        if (r < 0)
                log_warning("Event loop not idle at exit: %s", uv_strerror(r));
        state_free(s.state);
        store_unlock(s.lock_fd);
        log_event(LOG_INFO, LOG_EV_STOPPED, NULL, "partnerd stopped");
        return s.exit_code;
}
