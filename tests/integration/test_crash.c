/* SPDX-License-Identifier: MIT */
/*
 * Crash consistency: the real partnerd (--once runs and the daemon) against
 * the fake platform (with latency, so a cycle lasts long enough to be cut in
 * every phase) and a real SMTP server, killed with SIGKILL at a random
 * instant of its cycle, again and again, then restarted.  Some kills are
 * aimed at an SMTP transfer in flight: the server stalls in DATA (smtpd.py
 * --stall-file) and partnerd is killed during the stall.  Customers accept
 * during the run (the fake's control route, or on their own after some
 * checks).  At the end partnerd runs to completion and the invariants are
 * checked from the fake's request log and the mailbox:
 *
 *   - at most one Process call per order episode, whatever its answer (200
 *     or 409), and never a Process on a Draft;
 *   - every customer that was blocked got its acceptance request, unless it
 *     accepted before partnerd's first completed check of it;
 *   - duplicate mails (per customer and kind) <= the kills that landed in a
 *     window between the SMTP server's acceptance of a message and
 *     partnerd's record of it: after each kill the test lists the outbox
 *     messages without a tombstone, and the server's sidecars say when each
 *     message was received (data_at); a kill is such a window when one of
 *     those was received during the killed run;
 *   - the state is loadable after every kill (`partnerd status --json`
 *     exits 0 and store_from_json accepts the file);
 *   - every accepted customer's Querying orders end Processing, the others
 *     stay Querying, Drafts stay Draft;
 *   - a run that is not killed exits 0 or 1, never on a signal.
 *
 * CRASH_SEED, CRASH_KILLS, CRASH_LATENCY_MS override the defaults; the seed
 * is printed so a failure can be replayed.  Under valgrind (VALGRIND=1 or
 * PARTNERD_WRAPPER) the number of kills drops to 10.  Of the kills, about
 * 30% hit the daemon and 20% are aimed at an SMTP transfer (--once or the
 * daemon).
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <jansson.h>

#include "harness.h"
#include "invariants.h"
#include "pdrun.h"
#include "smtp.h"
#include "util.h"

#define SERIES            2001
#define DEFAULT_SEED      20261125u
#define DEFAULT_KILLS     120
#define SLOW_KILLS        10
#define DEFAULT_LATENCY   10
#define RUN_TIMEOUT_MS    120000
#define FINAL_RUNS_MAX    40   /* a re-sent Process waits for the next wall-clock second */
#define STALL_MS          "800" /* how long the server holds an aimed transfer */

/* How a customer's story goes during the run. */
enum accept_how {
        ACC_NEVER,         /* stays pending: mails, never Process */
        ACC_START,         /* accepted before the first run */
        ACC_CONTROL,       /* accepted through the control route at accept_at */
        ACC_CHECKS,        /* the fake accepts it after accept_after_checks checks */
};

static const struct {
        struct inv_customer c;
        enum accept_how how;
        unsigned accept_at;   /* ACC_CONTROL: percent of the kills */
        unsigned requery_at;  /* status Processing at the start, moved to Querying
                               * at this percent of the kills (0: Querying from the start) */
        bool moved_on_reread; /* someone else processes its order between
                               * partnerd's list and its re-read (the fake's
                               * set_status fault): its episode ends without
                               * partnerd, which must not call Process at all */
} CUSTOMERS[] = {
        { { .name = "Alpha Crash Ltd", .domain = "alpha-crash.onmicrosoft.com",
            .tenant_id = "a1a1a1a1-0000-4000-8000-000000000001", .n_querying = 3 }, ACC_CONTROL, 30, 0, false },
        { { .name = "Beta Crash Inc", .domain = "beta-crash.onmicrosoft.com",
            .tenant_id = "b2b2b2b2-0000-4000-8000-000000000002", .n_querying = 1,
            .accept_after_checks = 4 }, ACC_CHECKS, 0, 0, false },
        { { .name = "Gamma Crash AG", .domain = "gamma-crash.onmicrosoft.com",
            .tenant_id = "c3c3c3c3-0000-4000-8000-000000000003", .n_querying = 1, .n_draft = 1 }, ACC_NEVER, 0, 0, false },
        { { .name = "Delta Crash SA", .domain = "delta-crash.onmicrosoft.com",
            .tenant_id = "d4d4d4d4-0000-4000-8000-000000000004", .n_querying = 2,
            .accepted = true }, ACC_START, 0, 0, false },
        { { .name = "Epsilon Crash BV", .domain = "epsilon-crash.onmicrosoft.com",
            .tenant_id = "e5e5e5e5-0000-4000-8000-000000000005", .n_querying = 1,
            .order_without_tenant = true }, ACC_CONTROL, 60, 0, false },
        { { .name = "Zeta Crash Oy", .domain = "zeta-crash.onmicrosoft.com",
            .tenant_id = "f6f6f6f6-0000-4000-8000-000000000006", .n_querying = 1 }, ACC_NEVER, 0, 0, false },
        { { .name = "Eta Late GmbH", .domain = "eta-late.onmicrosoft.com",
            .tenant_id = "a7a7a7a7-0000-4000-8000-000000000007", .n_querying = 2, .status = "Processing",
            .accept_after_checks = 8 }, ACC_CHECKS, 0, 20, false },
        { { .name = "Theta Late SRL", .domain = "theta-late.onmicrosoft.com",
            .tenant_id = "b8b8b8b8-0000-4000-8000-000000000008", .n_querying = 1, .status = "Processing" },
          ACC_NEVER, 0, 45, false },
        { { .name = "Iota Late AB", .domain = "iota-late.onmicrosoft.com",
            .tenant_id = "c9c9c9c9-0000-4000-8000-000000000009", .n_querying = 2, .status = "Processing" },
          ACC_CONTROL, 85, 70, false },
        { { .name = "Kappa Late AS", .domain = "kappa-late.onmicrosoft.com",
            .tenant_id = "dadadada-0000-4000-8000-00000000000a", .n_querying = 1, .status = "Processing",
            .accepted = true }, ACC_START, 0, 90, false },
        { { .name = "Lambda Moved SE", .domain = "lambda-moved.onmicrosoft.com",
            .tenant_id = "ebebebeb-0000-4000-8000-00000000000b", .n_querying = 1, .accepted = true },
          ACC_START, 0, 0, true },
};
#define N_CUSTOMERS (sizeof(CUSTOMERS) / sizeof(CUSTOMERS[0]))

struct env {
        struct inv_world w;
        const char *domains[N_CUSTOMERS];
};

static int setup(void **state) {
        struct env *e = calloc(1, sizeof(*e));
        struct inv_customer cust[N_CUSTOMERS];
        char latency[16];
        json_t *sc;
        int r;

        if (!e)
                return -1;
        *state = e;
        for (size_t i = 0; i < N_CUSTOMERS; i++) {
                cust[i] = CUSTOMERS[i].c;
                e->domains[i] = CUSTOMERS[i].c.domain;
        }
        sc = inv_scenario_new(cust, N_CUSTOMERS, SERIES);
        if (!sc)
                return -1;
        snprintf(latency, sizeof(latency), "%lu", inv_env_ulong("CRASH_LATENCY_MS", DEFAULT_LATENCY));
        const char *fake_args[] = { "--latency-ms", latency, NULL };
        r = inv_world_start(&e->w, sc, fake_args, &(struct harness_smtp_options) { 0 },
                            &(struct harness_pd_options) { 0 });
        json_decref(sc);
        return r < 0 ? -1 : 0;
}

static int teardown(void **state) {
        struct env *e = *state;
        if (e)
                inv_world_stop(&e->w);
        free(e);
        return 0;
}

/* Prints the stderr of run n when something went wrong. */
static void dump_run(struct env *e, int run, const char *why) {
        char *err = harness_pd_output(e->w.pd, run, true);
        fprintf(stderr, "crash: run %d %s; its stderr:\n%s\n", run, why, err ? err : "(none)");
        free(err);
}

/* The state must load, both in-process and through `partnerd status --json`. */
static void assert_state_loadable(struct env *e, size_t kill_no) {
        char *err = NULL;
        int status = -1;
        int r = inv_state_loadable(e->w.pd->state_dir, &err);
        if (r < 0)
                fprintf(stderr, "crash: after kill %zu the state does not load: %s\n", kill_no, err ? err : "?");
        free(err);
        assert_int_equal(r, 0);
        const char *args[] = { "status", "--json", NULL };
        assert_int_equal(harness_pd_run(e->w.pd, args, RUN_TIMEOUT_MS, &status), 0);
        if (status != 0)
                dump_run(e, e->w.pd->runs, "(status --json) failed");
        assert_int_equal(status, 0);
        char *out = harness_pd_output(e->w.pd, e->w.pd->runs, false);
        json_t *j = out ? json_loads(out, 0, NULL) : NULL;
        assert_non_null(j);
        json_decref(j);
        free(out);
}

/* One uninterrupted --once run; returns its exit status. */
static int run_once(struct env *e, const char *extra, uint64_t *ret_ms) {
        const char *args[] = { "--once", extra, NULL };
        int status = -1;
        uint64_t t0 = util_now_mono_ms();
        assert_int_equal(harness_pd_run(e->w.pd, args, RUN_TIMEOUT_MS, &status), 0);
        if (ret_ms)
                *ret_ms = util_now_mono_ms() - t0;
        if (status != 0 && status != 1)
                dump_run(e, e->w.pd->runs, "ended abnormally");
        assert_true(status == 0 || status == 1);
        return status;
}

static char *order_status(struct env *e, size_t ci, int k) {
        char id[24];
        return harness_fake_order_status(&e->w.fake, inv_order_id(id, SERIES, ci, k));
}

static bool customer_accepts(size_t ci) {
        return CUSTOMERS[ci].how != ACC_NEVER;
}

/* Runs the events due once `kills` of `want` kills are done: control-route
 * acceptances and orders moved back to Querying.  done[] remembers them. */
static void run_events(struct env *e, size_t kills, size_t want, bool *accepted, bool *requeried) {
        for (size_t ci = 0; ci < N_CUSTOMERS; ci++) {
                unsigned pct = want ? (unsigned) (kills * 100 / want) : 100;
                if (CUSTOMERS[ci].c.status && !requeried[ci] && pct >= CUSTOMERS[ci].requery_at) {
                        for (int k = 0; k < CUSTOMERS[ci].c.n_querying; k++) {
                                char id[24];
                                assert_int_equal(inv_fake_set_status(&e->w.fake, inv_order_id(id, SERIES, ci, k),
                                                                     "Querying"), 0);
                        }
                        requeried[ci] = true;
                }
                if (CUSTOMERS[ci].how == ACC_CONTROL && !accepted[ci] && pct >= CUSTOMERS[ci].accept_at) {
                        assert_int_equal(harness_fake_accept(&e->w.fake, CUSTOMERS[ci].c.tenant_id), 0);
                        accepted[ci] = true;
                }
        }
}

/* Done when every accepted customer's orders are Processing and every
 * customer has had its acceptance request. */
static bool complete(struct env *e, bool explain) {
        struct inv_mail_tally t;
        bool done = true;

        for (size_t ci = 0; ci < N_CUSTOMERS && done; ci++) {
                if (!customer_accepts(ci))
                        continue;
                for (int k = 0; k < CUSTOMERS[ci].c.n_querying && done; k++) {
                        char *st = order_status(e, ci, k);
                        done = st && strcmp(st, "Processing") == 0;
                        if (!done && explain)
                                fprintf(stderr, "crash: order %d of %s is %s, not Processing\n", k,
                                        CUSTOMERS[ci].c.domain, st ? st : "?");
                        free(st);
                }
        }
        if (!done || inv_mail_tally(e->w.smtp, 0, e->domains, N_CUSTOMERS, &t) < 0)
                return false;
        for (size_t ci = 0; ci < N_CUSTOMERS && done; ci++) {
                /* The first request follows the first check that did not
                 * find the relationship accepted: a customer accepted
                 * through the control route before partnerd's first
                 * completed check is never asked (issue 11). */
                if (CUSTOMERS[ci].how == ACC_NEVER || CUSTOMERS[ci].how == ACC_CHECKS)
                        done = inv_mail_count(&t, e->domains[ci], "new-request") +
                               inv_mail_count(&t, e->domains[ci], "final-warning") >= 1;
                if (done && customer_accepts(ci) && !CUSTOMERS[ci].moved_on_reread)
                        done = inv_mail_count(&t, e->domains[ci], "confirmation") >= 1;
        }
        if (!done && explain) {
                char *counts = json_dumps(t.counts, JSON_COMPACT | JSON_SORT_KEYS);
                fprintf(stderr, "crash: a customer lacks its acceptance request or confirmation; mails: %s\n",
                        counts ? counts : "?");
                free(counts);
        }
        inv_mail_tally_done(&t);
        if (done) {
                int pending = inv_outbox_pending(e->w.pd->state_dir);
                done = pending == 0;
                if (!done && explain)
                        fprintf(stderr, "crash: %d mail(s) still in the outbox\n", pending);
        }
        return done;
}

/* How far a killed run got, from the last milestone in its stderr. */
static const char *const MILESTONES[] = {
        "started",                 /* config and state loaded, listing */
        "Queued ",                 /* mail queued in the outbox */
        "still pending",           /* checks answered */
        " processed: ",            /* Process answered */
        "\" sent to ",             /* mail delivered */
        "Cycle done",              /* saving the outcome */
};
#define N_MILESTONES (sizeof(MILESTONES) / sizeof(MILESTONES[0]))

static size_t milestone(struct env *e, int run) {
        char *err = harness_pd_output(e->w.pd, run, true);
        size_t best = 0;   /* 0 = nothing logged yet */
        for (size_t i = 0; err && i < N_MILESTONES; i++)
                if (strstr(err, MILESTONES[i]))
                        best = i + 1;
        free(err);
        return best;
}

/* How a run is started and when it is killed. */
enum kill_mode {
        KM_ONCE,          /* --once, killed at a random instant */
        KM_DAEMON,        /* the daemon, killed at a random instant */
        KM_SMTP_ONCE,     /* --once, killed while the server holds a transfer */
        KM_SMTP_DAEMON,   /* the daemon, the same */
        N_KILL_MODES,
};
static const char *const KILL_MODE_NAMES[N_KILL_MODES] = { "--once", "daemon", "--once in SMTP", "daemon in SMTP" };

static enum kill_mode pick_mode(uint64_t *rng) {
        unsigned r = (unsigned) (inv_rand(rng) % 10);
        return r < 1 ? KM_SMTP_ONCE : r < 2 ? KM_SMTP_DAEMON : r < 5 ? KM_DAEMON : KM_ONCE;
}

static uint64_t wall_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms) {
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000L };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* One kill: when its run started, when the next one did, and the messages
 * partnerd had queued and not recorded as delivered when it died. */
struct kill_rec {
        uint64_t t_spawn, t_end;     /* wall ms; t_end = the next spawn */
        enum kill_mode mode;
        bool in_transfer;            /* the server held a transfer of this run */
        json_t *unrecorded;          /* Message-IDs */
};

static void add_keys(json_t *keys, json_t *obj) {
        const char *k = json_string_value(json_object_get(obj, "key"));
        if (k)
                json_object_set_new(keys, k, json_true());
}

/* Message-IDs of the outbox messages whose delivery is not recorded (no
 * tombstone in sent.json or sent.log). */
static json_t *unrecorded_messages(const char *state_dir) {
        json_t *ids = json_array(), *keys = json_object(), *sent;
        char *path = NULL, *data = NULL, *save = NULL;
        size_t i;
        json_t *v;

        if (asprintf(&path, "%s/outbox/sent.json", state_dir) < 0)
                goto out;
        sent = json_load_file(path, 0, NULL);
        json_array_foreach(json_object_get(sent, "keys"), i, v)
                add_keys(keys, v);
        json_decref(sent);
        free(path);
        if (asprintf(&path, "%s/outbox/sent.log", state_dir) < 0)
                goto out;
        if (util_read_file(path, 64u << 20, &data, NULL) == 0)
                for (char *l = strtok_r(data, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
                        json_t *j = json_loads(l, 0, NULL);
                        add_keys(keys, j);
                        json_decref(j);
                }
        free(path);
        if (asprintf(&path, "%s/outbox", state_dir) < 0)
                goto out;
        DIR *d = opendir(path);
        for (struct dirent *de; d && (de = readdir(d));) {
                char *f = NULL, *msg = NULL;
                size_t n = strlen(de->d_name);
                if (n < 4 || strcmp(de->d_name + n - 4, ".msg") != 0 ||
                    asprintf(&f, "%s/%s", path, de->d_name) < 0)
                        continue;
                if (util_read_file(f, 64u << 20, &msg, NULL) == 0) {
                        json_t *env = json_loadb(msg, strcspn(msg, "\n"), 0, NULL);
                        const char *key = json_string_value(json_object_get(env, "dedup_key"));
                        const char *id = json_string_value(json_object_get(env, "message_id"));
                        if (key && id && !json_object_get(keys, key))
                                json_array_append_new(ids, json_string(id));
                        json_decref(env);
                }
                free(msg);
                free(f);
        }
        if (d)
                closedir(d);
out:
        free(path);
        free(data);
        json_decref(keys);
        return ids;
}

/* Waits until the server holds a transfer (its marker file exists), the
 * run ends (0, *status set) or timeout_ms pass (-ETIMEDOUT). */
static int wait_transfer(pid_t pid, const char *marker, unsigned timeout_ms, int *status, bool *held) {
        uint64_t end = util_now_mono_ms() + timeout_ms;
        *held = false;
        while (util_now_mono_ms() < end) {
                if (access(marker, F_OK) == 0) {
                        *held = true;
                        return -ETIMEDOUT;
                }
                int r = harness_wait(pid, 2, status);
                if (r != -ETIMEDOUT)
                        return r;
        }
        return -ETIMEDOUT;
}

/* The kills that landed between an acceptance and its record: a message
 * unrecorded after kill k that the server received during run k. */
static size_t count_windows(struct env *e, struct kill_rec *k, size_t n, size_t *ret_in_transfer) {
        size_t windows = 0, accepted = harness_smtp_count(e->w.smtp);
        json_t *acc = json_array();
        for (size_t i = 0; i < accepted; i++) {
                json_t *side = harness_smtp_sidecar(e->w.smtp, i);
                json_array_append_new(acc, side ? side : json_object());
        }
        *ret_in_transfer = 0;
        for (size_t i = 0; i < n; i++) {
                bool window = false;
                size_t x, y;
                json_t *id, *side;
                json_array_foreach(k[i].unrecorded, x, id)
                        json_array_foreach(acc, y, side) {
                                const char *mid = json_string_value(json_object_get(side, "message_id"));
                                uint64_t at = (uint64_t) (json_number_value(json_object_get(side, "data_at")) * 1000.0);
                                if (mid && strcmp(mid, json_string_value(id)) == 0 && at >= k[i].t_spawn &&
                                    at < k[i].t_end)
                                        window = true;
                        }
                windows += window;
                *ret_in_transfer += window && k[i].in_transfer;
        }
        json_decref(acc);
        return windows;
}

static void print_kills(struct env *e, const struct kill_rec *k, size_t n) {
        for (size_t i = 0; i < n; i++) {
                char *ids = json_dumps(k[i].unrecorded, JSON_COMPACT);
                fprintf(stderr, "crash: kill %zu (%s%s) run %" PRIu64 "..%" PRIu64 " ms: unrecorded %s\n", i + 1,
                        KILL_MODE_NAMES[k[i].mode], k[i].in_transfer ? ", transfer held" : "", k[i].t_spawn,
                        k[i].t_end, ids ? ids : "?");
                free(ids);
        }
        for (size_t i = 0; i < harness_smtp_count(e->w.smtp); i++) {
                json_t *side = harness_smtp_sidecar(e->w.smtp, i);
                fprintf(stderr, "crash: accepted %zu %s data_at %.3f\n", i + 1,
                        json_string_value(json_object_get(side, "message_id")),
                        json_number_value(json_object_get(side, "data_at")));
                json_decref(side);
        }
}

static void test_crash_consistency(void **state) {
        struct env *e = *state;
        uint64_t seed = inv_env_ulong("CRASH_SEED", DEFAULT_SEED), rng = seed;
        bool slow = inv_slow_mode();
        size_t want_kills = inv_env_ulong("CRASH_KILLS", slow ? SLOW_KILLS : DEFAULT_KILLS);
        size_t kills = 0, completed = 0, attempts = 0, final_runs = 0;
        uint64_t t_start = util_now_mono_ms(), cycle_ms = 0;
        bool accepted[N_CUSTOMERS] = { false }, requeried[N_CUSTOMERS] = { false };
        size_t hist[N_MILESTONES + 1] = { 0 }, by_mode[N_KILL_MODES] = { 0 }, held_kills = 0, n_recs = 0;
        struct kill_rec *recs = calloc(want_kills + 1, sizeof(*recs));
        const char *stall = harness_smtp_stall_file(e->w.smtp);
        char *marker = NULL;

        assert_non_null(recs);
        assert_true(asprintf(&marker, "%s.inflight", stall) > 0);

        fprintf(stderr, "crash: seed=%" PRIu64 " kills=%zu (CRASH_SEED, CRASH_KILLS to override)%s\n", seed,
                want_kills, slow ? "; reduced from 100+ because partnerd runs under a wrapper/valgrind" : "");

        /* How long is a full cycle here?  A dry run does every request a real
         * run does except Process and SMTP, and writes nothing.  The estimate
         * then follows the runs that finish before their kill. */
        assert_int_equal(run_once(e, "--dry-run", &cycle_ms), 0);
        fprintf(stderr, "crash: a dry cycle takes %" PRIu64 " ms\n", cycle_ms);
        /* after the dry run, which re-reads too */
        for (size_t ci = 0; ci < N_CUSTOMERS; ci++)
                if (CUSTOMERS[ci].moved_on_reread) {
                        char id[24], json[160];
                        snprintf(json, sizeof(json), "{\"route\":\"order\",\"match\":\"%s\","
                                 "\"set_status\":\"Processing\",\"times\":1}", inv_order_id(id, SERIES, ci, 0));
                        assert_int_equal(harness_fake_fault(&e->w.fake, json), 0);
                }

        while (kills < want_kills) {
                assert_true(++attempts <= want_kills * 4 + 20);
                run_events(e, kills, want_kills, accepted, requeried);
                /* uniform over the expected cycle, and a bit beyond */
                uint64_t window = cycle_ms + cycle_ms / 4 + 2;
                uint64_t delay = (uint64_t) ((double) (inv_rand(&rng) >> 11) / 9007199254740992.0 * (double) window);
                enum kill_mode mode = pick_mode(&rng);
                bool daemon = mode == KM_DAEMON || mode == KM_SMTP_DAEMON;
                bool aim = mode == KM_SMTP_ONCE || mode == KM_SMTP_DAEMON, held = false;
                const char *once_args[] = { "--once", NULL }, *daemon_args[] = { NULL };
                if (aim) {
                        /* a transfer still held from an earlier kill is not this run's */
                        for (int i = 0; i < 400 && access(marker, F_OK) == 0; i++)
                                sleep_ms(10);
                        assert_int_equal(util_write_file_atomic(stall, STALL_MS, strlen(STALL_MS), 0600), 0);
                }
                uint64_t t0 = util_now_mono_ms(), t_spawn = wall_ms();
                if (n_recs)
                        recs[n_recs - 1].t_end = t_spawn;
                pid_t pid = harness_pd_spawn(e->w.pd, daemon ? daemon_args : once_args);
                int status = -1, r;
                assert_true(pid > 0);
                if (aim) {
                        r = wait_transfer(pid, marker, (unsigned) (window + window / 2), &status, &held);
                        if (held)       /* somewhere in the held transfer */
                                sleep_ms((unsigned) (inv_rand(&rng) % 500));
                } else
                        r = harness_wait(pid, (int) delay, &status);
                if (r == 0) {
                        /* the run finished before the kill: it must have ended well */
                        if (status != 0 && status != 1)
                                dump_run(e, e->w.pd->runs, "ended abnormally");
                        assert_true(status == 0 || status == 1);
                        assert_false(daemon);       /* the daemon does not stop on its own */
                        completed++;
                        cycle_ms = (3 * cycle_ms + (util_now_mono_ms() - t0)) / 4;
                        if (aim)
                                (void) unlink(stall);
                        continue;
                }
                assert_int_equal(r, -ETIMEDOUT);
                assert_int_equal(kill(pid, SIGKILL), 0);
                if (aim)
                        (void) unlink(stall);
                assert_int_equal(harness_wait(pid, 10000, &status), 0);
                /* it may have exited on its own between the check and the kill */
                assert_true(status == 128 + SIGKILL || status == 0 || status == 1);
                if (status != 128 + SIGKILL) {
                        completed++;
                        continue;
                }
                kills++;
                by_mode[mode]++;
                held_kills += held;
                hist[milestone(e, e->w.pd->runs)]++;
                assert_true(n_recs < want_kills);
                recs[n_recs++] = (struct kill_rec) { .t_spawn = t_spawn, .t_end = UINT64_MAX, .mode = mode,
                                                     .in_transfer = held,
                                                     .unrecorded = unrecorded_messages(e->w.pd->state_dir) };
                assert_state_loadable(e, kills);
        }
        /* every event has happened, however few the kills */
        run_events(e, want_kills, want_kills, accepted, requeried);

        /* Run to completion, undisturbed. */
        if (n_recs)
                recs[n_recs - 1].t_end = wall_ms();
        while (!complete(e, final_runs >= FINAL_RUNS_MAX)) {
                if (final_runs >= FINAL_RUNS_MAX) {
                        dump_run(e, e->w.pd->runs, "was the last run, still not complete");
                        fail_msg("crash: not complete after %zu undisturbed runs", final_runs);
                }
                run_once(e, NULL, NULL);
                final_runs++;
        }
        /* one more: nothing left to do, nothing sent twice */
        size_t mails_before = harness_smtp_count(e->w.smtp);
        run_once(e, NULL, NULL);
        final_runs++;

        /* ---- invariants ---- */
        json_t *log = harness_fake_log(&e->w.fake);
        struct inv_mail_tally t;
        size_t violations = 0, posts = inv_process_posts(log, NULL, 0), posts_ok = inv_process_posts(log, NULL, 200);
        char id[24];

        assert_non_null(log);
        assert_int_equal(inv_mail_tally(e->w.smtp, 0, e->domains, N_CUSTOMERS, &t), 0);
        for (size_t ci = 0; ci < N_CUSTOMERS; ci++) {
                const struct inv_customer *c = &CUSTOMERS[ci].c;
                bool accepts = customer_accepts(ci);
                /* Querying episodes of its orders: from the start, or from
                 * the control route's move back to Querying */
                size_t episodes = (c->status || CUSTOMERS[ci].moved_on_reread ? 0 : 1) + (requeried[ci] ? 1 : 0);
                for (int k = 0; k < c->n_querying + c->n_draft; k++) {
                        inv_order_id(id, SERIES, ci, k);
                        size_t ok = inv_process_posts(log, id, 200), any = inv_process_posts(log, id, 0);
                        char *st = harness_fake_order_status(&e->w.fake, id);
                        const char *want = k >= c->n_querying ? "Draft" : accepts ? "Processing" : "Querying";
                        if (any > episodes || (k >= c->n_querying && any > 0) || !st || strcmp(st, want) != 0) {
                                fprintf(stderr, "crash: VIOLATION order %s: %zu Process calls for %zu episode(s) "
                                        "(%zu answered 200), status %s (want %s)\n", id, any, episodes, ok,
                                        st ? st : "?", want);
                                violations++;
                        }
                        free(st);
                }
                size_t asked = inv_mail_count(&t, c->domain, "new-request") +
                               inv_mail_count(&t, c->domain, "final-warning");
                /* as in complete(): a customer the control route accepts
                 * before partnerd's first completed check of it is never
                 * asked (the first check comes before the first request) */
                if ((CUSTOMERS[ci].how == ACC_NEVER || CUSTOMERS[ci].how == ACC_CHECKS) && asked < 1) {
                        fprintf(stderr, "crash: VIOLATION %s was never asked to accept\n", c->domain);
                        violations++;
                }
                /* the confirmation is a side effect too: a kill with the
                 * Process call in flight must not lose it */
                if (accepts && !CUSTOMERS[ci].moved_on_reread && inv_mail_count(&t, c->domain, "confirmation") < 1) {
                        fprintf(stderr, "crash: VIOLATION %s accepted, its orders were processed, and it was "
                                "never told\n", c->domain);
                        violations++;
                }
        }
        int first = 0;
        size_t reports = inv_pd_sanitizer_reports(e->w.pd, &first);
        if (reports) {
                fprintf(stderr, "crash: VIOLATION %zu runs reported memory errors\n", reports);
                dump_run(e, first, "has a sanitizer/valgrind report");
                violations++;
        }
        size_t dup = inv_mail_duplicates(&t), windows_in_transfer = 0;
        size_t windows = count_windows(e, recs, n_recs, &windows_in_transfer);
        if (dup > windows) {
                fprintf(stderr, "crash: VIOLATION %zu duplicate mails for %zu kills between an acceptance and "
                        "its record (of %zu kills)\n", dup, windows, kills);
                print_kills(e, recs, n_recs);
                violations++;
        }
        if (t.unparsed > 0) {
                fprintf(stderr, "crash: VIOLATION %zu mails could not be parsed\n", t.unparsed);
                violations++;
        }
        if (harness_smtp_count(e->w.smtp) != mails_before) {
                fprintf(stderr, "crash: VIOLATION the run after completion sent %zu more mails\n",
                        harness_smtp_count(e->w.smtp) - mails_before);
                violations++;
        }
        /* interrupted atomic writes leave NAME.tmp.PID; the next start removes them */
        size_t stale = inv_temp_files(e->w.pd->state_dir);
        if (stale) {
                fprintf(stderr, "crash: VIOLATION %zu temp files of killed runs left in the state directory\n",
                        stale);
                violations++;
        }
        char *counts = json_dumps(t.counts, JSON_COMPACT | JSON_SORT_KEYS);
        fprintf(stderr, "crash: mails per customer|kind: %s\n", counts ? counts : "?");
        free(counts);
        fprintf(stderr,
                "crash: kills by the last milestone the run logged: none %zu, started %zu, mail queued %zu, "
                "checked %zu, processed %zu, mail sent %zu, cycle done %zu\n",
                hist[0], hist[1], hist[2], hist[3], hist[4], hist[5], hist[6]);
        fprintf(stderr,
                "crash: kills by mode: --once %zu, daemon %zu, aimed at SMTP with --once %zu, with the daemon %zu; "
                "%zu landed with a transfer held by the server; %zu kills between an acceptance and its record "
                "(%zu of them with the transfer held)\n",
                by_mode[KM_ONCE], by_mode[KM_DAEMON], by_mode[KM_SMTP_ONCE], by_mode[KM_SMTP_DAEMON], held_kills,
                windows, windows_in_transfer);
        fprintf(stderr,
                "crash: summary seed=%" PRIu64 " kills=%zu cycles=%zu (finished before the kill %zu, final %zu) "
                "mails=%zu duplicates=%zu process_calls=%zu (200: %zu) stale temp files=%zu violations=%zu "
                "runtime=%.1fs\n",
                seed, kills, kills + completed + final_runs, completed, final_runs, t.total, dup, posts, posts_ok,
                stale, violations,
                (double) (util_now_mono_ms() - t_start) / 1000.0);
        inv_mail_tally_done(&t);
        json_decref(log);
        for (size_t i = 0; i < n_recs; i++)
                json_decref(recs[i].unrecorded);
        free(recs);
        free(marker);
        assert_true(kills >= want_kills);
        assert_int_equal(violations, 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_crash_consistency, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
