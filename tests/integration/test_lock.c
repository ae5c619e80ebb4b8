/* SPDX-License-Identifier: MIT */
/*
 * One state directory, one acting partnerd (issue 12.2): the real binary
 * against the fake platform and aiosmtpd.
 *
 *  concurrent_once  two `partnerd --once` started together against a slow
 *                   platform (--latency-ms 300): exactly one Process POST
 *                   and one request mail; the loser exits 75 (EX_TEMPFAIL)
 *                   naming the winner's PID, and did nothing
 *  daemon_waits     the lock held by another process: `--once` exits 75
 *                   naming it; the daemon logs once that it waits for that
 *                   PID, touches nothing meanwhile, and starts polling as
 *                   soon as the lock is free; `status` and `--dry-run` take
 *                   no lock and run meanwhile
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include <jansson.h>

#include "harness.h"
#include "invariants.h"
#include "pdrun.h"
#include "smtp.h"
#include "util.h"

#define SERIES          6001
#define RUN_TIMEOUT_MS  90000
#define EX_TEMPFAIL     75

enum { C_PENDING, C_ACCEPTED, N_CUST };

static const struct inv_customer CUST[N_CUST] = {
        [C_PENDING] = { .name = "Pending Lock Ltd", .domain = "pending-lock.onmicrosoft.com",
                        .tenant_id = "6a6a6a6a-0000-4000-8000-000000000001", .n_querying = 1 },
        [C_ACCEPTED] = { .name = "Accepted Lock Inc", .domain = "accepted-lock.onmicrosoft.com",
                         .tenant_id = "6b6b6b6b-0000-4000-8000-000000000002", .n_querying = 1,
                         .accepted = true },
};

static const char *const DOMAINS[N_CUST] = {
        "pending-lock.onmicrosoft.com", "accepted-lock.onmicrosoft.com",
};

static struct inv_world *world(const char *const *fake_args) {
        struct inv_world *w = calloc(1, sizeof(*w));
        json_t *sc = inv_scenario_new(CUST, N_CUST, SERIES);
        assert_non_null(w);
        assert_non_null(sc);
        assert_int_equal(inv_world_start(w, sc, fake_args, &(struct harness_smtp_options) { 0 },
                                         &(struct harness_pd_options) { 0 }), 0);
        json_decref(sc);
        return w;
}

static void world_free(struct inv_world *w) {
        inv_world_stop(w);
        free(w);
}

static void dump(struct inv_world *w, int run) {
        char *err = harness_pd_output(w->pd, run, true);
        fprintf(stderr, "lock: stderr of run %d:\n%s\n", run, err ? err : "");
        free(err);
}

/* Lines of run `run`'s stderr containing every needle. */
static size_t lines_with(struct inv_world *w, int run, const char *const *needles) {
        char *err = harness_pd_output(w->pd, run, true);
        size_t n = err ? inv_count_lines(err, needles) : 0;
        free(err);
        return n;
}

static bool wait_line(struct inv_world *w, int run, const char *const *needles, int timeout_ms) {
        for (int waited = 0; waited <= timeout_ms; waited += 100) {
                if (lines_with(w, run, needles) > 0)
                        return true;
                usleep(100 * 1000);
        }
        return false;
}

static void mail_counts(struct inv_world *w, size_t *ret_request, size_t *ret_total) {
        struct inv_mail_tally t;
        assert_int_equal(inv_mail_tally(w->smtp, 0, DOMAINS, N_CUST, &t), 0);
        *ret_request = inv_mail_count(&t, CUST[C_PENDING].domain, "new-request");
        *ret_total = t.total;
        inv_mail_tally_done(&t);
}

static void test_concurrent_once(void **state) {
        const char *fake_args[] = { "--latency-ms", "300", NULL };
        struct inv_world *w = world(fake_args);
        const char *args[] = { "--once", NULL };
        char id[24], pidtext[32];
        int st[2] = { -1, -1 };

        pid_t pid[2];
        pid[0] = harness_pd_spawn(w->pd, args);
        pid[1] = harness_pd_spawn(w->pd, args);
        assert_true(pid[0] > 0 && pid[1] > 0);
        for (int i = 0; i < 2; i++)
                assert_int_equal(harness_wait(pid[i], RUN_TIMEOUT_MS, &st[i]), 0);
        fprintf(stderr, "lock: the two runs exited %d and %d\n", st[0], st[1]);
        /* one ran, the other said who holds the directory and did nothing */
        assert_true((st[0] == 0 && st[1] == EX_TEMPFAIL) || (st[0] == EX_TEMPFAIL && st[1] == 0));
        int loser = st[0] == EX_TEMPFAIL ? 0 : 1, winner = 1 - loser;
        snprintf(pidtext, sizeof(pidtext), "PID %ld", (long) pid[winner]);
        if (lines_with(w, loser + 1, (const char *const[]) { "in use by", pidtext, NULL }) != 1) {
                dump(w, loser + 1);
                fail_msg("the run that lost does not name the holder (%s)", pidtext);
        }
        assert_int_equal(lines_with(w, loser + 1, (const char *const[]) { "Cycle", NULL }), 0);

        json_t *log = harness_fake_log(&w->fake);
        assert_non_null(log);
        inv_order_id(id, SERIES, C_ACCEPTED, 0);
        size_t posts = inv_process_posts(log, id, 0), all = inv_process_posts(log, NULL, 0);
        json_decref(log);
        size_t requests, total;
        mail_counts(w, &requests, &total);
        fprintf(stderr, "lock: Process POSTs %zu (all orders %zu), request mails %zu, mails %zu\n", posts, all,
                requests, total);
        assert_int_equal(posts, 1);
        assert_int_equal(all, 1);
        assert_int_equal(requests, 1);
        world_free(w);
}

/* Holds the state directory's lock as another process would: the lock
 * file partnerd(8) documents, flock(2), our PID in it. */
static int hold_lock(const char *state_dir) {
        char *path = NULL, buf[32];
        assert_int_equal(mkdir(state_dir, 0700), 0);
        assert_true(asprintf(&path, "%s/lock", state_dir) >= 0);
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        free(path);
        assert_true(fd >= 0);
        assert_int_equal(flock(fd, LOCK_EX | LOCK_NB), 0);
        int len = snprintf(buf, sizeof(buf), "%ld\n", (long) getpid());
        assert_int_equal(pwrite(fd, buf, (size_t) len, 0), len);
        return fd;
}

static void test_daemon_waits(void **state) {
        struct inv_world *w = world(NULL);
        char pidtext[32], *path = NULL;
        int status = -1;

        snprintf(pidtext, sizeof(pidtext), "PID %ld", (long) getpid());
        int fd = hold_lock(w->pd->state_dir);

        /* --once: exit 75 at once, naming us */
        const char *once[] = { "--once", NULL };
        assert_int_equal(harness_pd_run(w->pd, once, RUN_TIMEOUT_MS, &status), 0);
        assert_int_equal(status, EX_TEMPFAIL);
        assert_int_equal(lines_with(w, w->pd->runs, (const char *const[]) { "in use by", pidtext, NULL }), 1);

        /* status and --dry-run take no lock */
        const char *st[] = { "status", NULL };
        assert_int_equal(harness_pd_run(w->pd, st, RUN_TIMEOUT_MS, &status), 0);
        assert_int_equal(status, 0);
        const char *dry[] = { "--once", "--dry-run", NULL };
        assert_int_equal(harness_pd_run(w->pd, dry, RUN_TIMEOUT_MS, &status), 0);
        assert_int_equal(status, 0);
        int orders_polls = harness_fake_count(&w->fake, "GET", "/commerce/orders");
        assert_true(orders_polls >= 1);   /* the dry run polled */

        /* the daemon waits, says so once, and does nothing meanwhile */
        const char *none[] = { NULL };
        pid_t pid = harness_pd_spawn(w->pd, none);
        assert_true(pid > 0);
        int run = w->pd->runs;
        const char *const waiting[] = { "Waiting for", pidtext, "lock", NULL };
        assert_true(wait_line(w, run, waiting, 20000));
        sleep(3);   /* it retries every second */
        assert_int_equal(lines_with(w, run, waiting), 1);
        assert_int_equal(harness_fake_count(&w->fake, "GET", "/commerce/orders"), orders_polls);
        assert_int_equal(harness_smtp_count(w->smtp), 0);
        assert_true(asprintf(&path, "%s/state.json", w->pd->state_dir) >= 0);
        assert_int_not_equal(access(path, F_OK), 0);

        /* released: it starts */
        close(fd);
        if (!wait_line(w, run, (const char *const[]) { "Cycle done", NULL }, 30000)) {
                dump(w, run);
                fail_msg("the daemon did not start once the lock was free");
        }
        assert_int_equal(access(path, F_OK), 0);
        /* and now holds it: a --once beside it exits 75 naming the daemon */
        snprintf(pidtext, sizeof(pidtext), "PID %ld", (long) pid);
        assert_int_equal(harness_pd_run(w->pd, once, RUN_TIMEOUT_MS, &status), 0);
        assert_int_equal(status, EX_TEMPFAIL);
        assert_int_equal(lines_with(w, w->pd->runs, (const char *const[]) { "in use by", pidtext, NULL }), 1);
        assert_int_equal(harness_kill(pid, SIGTERM, 20000), 0);
        free(path);
        world_free(w);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_concurrent_once),
                cmocka_unit_test(test_daemon_waits),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
