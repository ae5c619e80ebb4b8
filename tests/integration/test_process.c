/* SPDX-License-Identifier: MIT */
/*
 * The Process path end to end: the real partnerd (--once) against the fake
 * platform and a real SMTP server.
 *
 *  - cold start: a customer that accepted already gets no request mail,
 *    only the confirmation that follows its Process; a pending one on
 *    Microsoft's newer admin host (admin.cloud.microsoft) is mailed with
 *    that exact link and processed once it accepts (issue 11 part 4);
 *  - the re-read before Process: an order that moved on, or was queried
 *    again (another episode), is not POSTed;
 *  - a 409 race (the platform resumes the order between our re-read and
 *    our Process): "moved on", a success, exit 0, no second POST;
 *  - 404 on Process: "gone", exit 0;
 *  - a refused Process (422, forever): one POST, one error, one ops
 *    notice, however many runs follow (issue 12.3);
 *  - a connection reset under POST /process: the transport never re-sends
 *    it (issue 12.1); the next run reads the order and settles it.
 */
#include <errno.h>
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

#define SERIES          4001
#define RUN_TIMEOUT_MS  90000
#define CLOUD_URL "https://admin.cloud.microsoft/AdminPortal/Home?invType=ResellerRelationship&partnerId=" \
                  "3b33e682-00c3-41ee-9dd2-a548adf56438&msppId=0#/BillingAccounts/partner-invitation"

enum { C_ACCEPTED, C_CLOUD, C_PENDING, N_CUST };

static const struct inv_customer CUST[N_CUST] = {
        [C_ACCEPTED] = { .name = "Already Accepted Ltd", .domain = "already-accepted.onmicrosoft.com",
                         .tenant_id = "4a4a4a4a-0000-4000-8000-000000000001", .n_querying = 1,
                         .accepted = true },
        [C_CLOUD] = { .name = "Cloud Admin Host Inc", .domain = "cloud-host.onmicrosoft.com",
                      .tenant_id = "4b4b4b4b-0000-4000-8000-000000000002", .n_querying = 1,
                      .url = CLOUD_URL },
        [C_PENDING] = { .name = "Still Pending AG", .domain = "still-pending.onmicrosoft.com",
                        .tenant_id = "4c4c4c4c-0000-4000-8000-000000000003", .n_querying = 1 },
};

static const char *const DOMAINS[N_CUST] = {
        CUST[C_ACCEPTED].domain, CUST[C_CLOUD].domain, CUST[C_PENDING].domain,
};

static struct inv_world *world_new(void) {
        struct inv_world *w = calloc(1, sizeof(*w));
        assert_non_null(w);
        json_t *sc = inv_scenario_new(CUST, N_CUST, SERIES);
        assert_non_null(sc);
        struct harness_pd_options o = { .ops = "ops@example.test" };
        assert_int_equal(inv_world_start(w, sc, NULL, &(struct harness_smtp_options) { 0 }, &o), 0);
        json_decref(sc);
        return w;
}

static void world_free(struct inv_world *w) {
        int first = 0;
        if (inv_pd_sanitizer_reports(w->pd, &first)) {
                char *err = harness_pd_output(w->pd, first, true);
                fprintf(stderr, "process: run %d reported memory errors:\n%s\n", first, err ? err : "");
                free(err);
                fail();
        }
        inv_world_stop(w);
        free(w);
}

/* The engine asks again only from a later second than its last decision
 * (a real poll interval is >= 10 s). */
static void next_second(void) {
        time_t t = time(NULL);
        while (time(NULL) == t) {
                struct timespec ts = { .tv_nsec = 20 * 1000 * 1000 };
                nanosleep(&ts, NULL);
        }
}

static int run_once(struct inv_world *w) {
        int status = -1;
        const char *args[] = { "--once", NULL };
        next_second();
        assert_int_equal(harness_pd_run(w->pd, args, RUN_TIMEOUT_MS, &status), 0);
        return status;
}

static char *run_err(struct inv_world *w) {
        return harness_pd_output(w->pd, w->pd->runs, true);
}

static void dump(struct inv_world *w, const char *why) {
        char *err = run_err(w);
        fprintf(stderr, "process: %s; stderr of run %d:\n%s\n", why, w->pd->runs, err ? err : "");
        free(err);
}

static const char *oid(char *buf, size_t ci) {
        return inv_order_id(buf, SERIES, ci, 0);
}

static size_t posts(struct inv_world *w, const char *order_id, long status) {
        json_t *log = harness_fake_log(&w->fake);
        assert_non_null(log);
        size_t n = inv_process_posts(log, order_id, status);
        json_decref(log);
        return n;
}

static void assert_status(struct inv_world *w, const char *order_id, const char *want) {
        char *st = harness_fake_order_status(&w->fake, order_id);
        assert_non_null(st);
        if (strcmp(st, want) != 0)
                fprintf(stderr, "process: order %s is %s, want %s\n", order_id, st, want);
        assert_string_equal(st, want);
        free(st);
}

static size_t mail_count(struct inv_world *w, size_t from, const char *domain, const char *kind) {
        struct inv_mail_tally t;
        assert_int_equal(inv_mail_tally(w->smtp, from, DOMAINS, N_CUST, &t), 0);
        size_t n = inv_mail_count(&t, domain, kind);
        assert_int_equal(t.unparsed, 0);
        inv_mail_tally_done(&t);
        return n;
}

/* Mails from index from whose text contains needle. */
static size_t mails_with(struct inv_world *w, size_t from, const char *needle) {
        size_t n = 0;
        for (size_t i = from; i < harness_smtp_count(w->smtp); i++) {
                json_t *m = harness_smtp_parse(w->smtp, i);
                const char *t = m ? json_string_value(json_object_get(m, "text")) : NULL;
                if (t && strstr(t, needle))
                        n++;
                json_decref(m);
        }
        return n;
}

/* Lines of the last run's stderr at priority <= max_prio with every needle. */
static size_t log_lines(struct inv_world *w, int max_prio, const char *const *needles) {
        char *err = run_err(w);
        assert_non_null(err);
        size_t n = 0;
        for (char *line = strtok(err, "\n"); line; line = strtok(NULL, "\n")) {
                int prio = 7;
                if (line[0] == '<' && line[1] >= '0' && line[1] <= '7' && line[2] == '>')
                        prio = line[1] - '0';
                if (prio > max_prio)
                        continue;
                bool all = true;
                for (size_t i = 0; needles[i]; i++)
                        all = all && strstr(line, needles[i]);
                n += all;
        }
        free(err);
        return n;
}

static void add_fault(struct inv_world *w, const char *json) {
        assert_int_equal(harness_fake_fault(&w->fake, json), 0);
}

static void test_cold_start_and_cloud_link(void **unused) {
        struct inv_world *w = world_new();
        char acc[24], cloud[24], pend[24];
        oid(acc, C_ACCEPTED);
        oid(cloud, C_CLOUD);
        oid(pend, C_PENDING);

        int st = run_once(w);
        if (st != 0)
                dump(w, "run 1 failed");
        assert_int_equal(st, 0);
        /* accepted before we ever asked: no request, processed, told */
        assert_int_equal(mail_count(w, 0, DOMAINS[C_ACCEPTED], "new-request"), 0);
        assert_int_equal(mail_count(w, 0, DOMAINS[C_ACCEPTED], "confirmation"), 1);
        assert_int_equal(posts(w, acc, 200), 1);
        assert_status(w, acc, "Processing");
        /* pending: one request each, the admin.cloud.microsoft link exactly */
        assert_int_equal(mail_count(w, 0, DOMAINS[C_CLOUD], "new-request"), 1);
        assert_int_equal(mail_count(w, 0, DOMAINS[C_PENDING], "new-request"), 1);
        assert_int_equal(mails_with(w, 0, CLOUD_URL), 1);
        assert_int_equal(posts(w, cloud, 0) + posts(w, pend, 0), 0);

        /* the cloud customer accepts: processed, confirmed */
        size_t before = harness_smtp_count(w->smtp);
        assert_int_equal(harness_fake_accept(&w->fake, CUST[C_CLOUD].tenant_id), 0);
        assert_int_equal(run_once(w), 0);
        assert_int_equal(posts(w, cloud, 200), 1);
        assert_status(w, cloud, "Processing");
        assert_int_equal(mail_count(w, before, DOMAINS[C_CLOUD], "confirmation"), 1);
        assert_int_equal(mail_count(w, before, DOMAINS[C_CLOUD], "new-request"), 0);
        assert_int_equal(posts(w, acc, 0), 1);
        world_free(w);
}

static void test_409_race_is_moved_on(void **unused) {
        struct inv_world *w = world_new();
        char acc[24];
        oid(acc, C_ACCEPTED);
        /* the platform resumes the order between our re-read and our POST */
        add_fault(w, "{\"route\":\"process\",\"set_status\":\"Processing\",\"times\":1}");
        int st = run_once(w);
        if (st != 0)
                dump(w, "the 409 race failed the run");
        assert_int_equal(st, 0);
        assert_int_equal(posts(w, acc, 0), 1);
        assert_int_equal(posts(w, acc, 409), 1);
        assert_status(w, acc, "Processing");
        const char *moved[] = { acc, "moved on", NULL };
        assert_int_equal(log_lines(w, 5, moved), 1);
        const char *errors[] = { acc, NULL };
        assert_int_equal(log_lines(w, 3, errors), 0);
        /* nothing more to do: no second POST */
        assert_int_equal(run_once(w), 0);
        assert_int_equal(posts(w, acc, 0), 1);
        world_free(w);
}

/* Moved on before the re-read: the re-read shows Processing, no POST. */
static void test_moved_before_reread(void **unused) {
        struct inv_world *w = world_new();
        char acc[24];
        oid(acc, C_ACCEPTED);
        add_fault(w, "{\"route\":\"order\",\"match\":\"ORD-4001-0001\",\"set_status\":\"Processing\",\"times\":1}");
        int st = run_once(w);
        if (st != 0)
                dump(w, "an order moved on before the re-read failed the run");
        assert_int_equal(st, 0);
        assert_int_equal(posts(w, acc, 0), 0);
        assert_status(w, acc, "Processing");
        const char *moved[] = { acc, "moved on", NULL };
        assert_int_equal(log_lines(w, 5, moved), 1);
        world_free(w);
}

/* Re-queried before the re-read (Querying again, another audit.querying.at):
 * another episode, which this acceptance decision was not about: no POST. */
static void test_new_episode_before_reread(void **unused) {
        struct inv_world *w = world_new();
        char acc[24], fault[256];
        oid(acc, C_ACCEPTED);
        snprintf(fault, sizeof(fault), "{\"route\":\"order\",\"match\":\"%s\",\"times\":1,"
                 "\"set_status\":\"Processing,Querying\"}", acc);
        add_fault(w, fault);
        int st = run_once(w);
        if (st != 0)
                dump(w, "an order re-queried before the re-read failed the run");
        assert_int_equal(st, 0);
        assert_int_equal(posts(w, acc, 0), 0);
        const char *moved[] = { acc, "moved on", "new Querying episode", NULL };
        assert_int_equal(log_lines(w, 5, moved), 1);
        world_free(w);
}

static void test_404_is_gone(void **unused) {
        struct inv_world *w = world_new();
        char acc[24];
        oid(acc, C_ACCEPTED);
        add_fault(w, "{\"route\":\"process\",\"status\":404,\"times\":1,\"body\":"
                     "\"{\\\"title\\\":\\\"Not Found\\\",\\\"status\\\":404}\"}");
        int st = run_once(w);
        if (st != 0)
                dump(w, "a 404 on Process failed the run");
        assert_int_equal(st, 0);
        assert_int_equal(posts(w, acc, 404), 1);
        const char *gone[] = { acc, "no longer exists", NULL };
        assert_int_equal(log_lines(w, 5, gone), 1);
        const char *errors[] = { acc, NULL };
        assert_int_equal(log_lines(w, 3, errors), 0);
        world_free(w);
}

static void test_refused_once(void **unused) {
        struct inv_world *w = world_new();
        char acc[24];
        oid(acc, C_ACCEPTED);
        add_fault(w, "{\"route\":\"process\",\"status\":422,\"times\":0,\"body\":"
                     "\"{\\\"title\\\":\\\"Validation failed\\\",\\\"status\\\":422,"
                     "\\\"detail\\\":\\\"Parameter PAR-1 is invalid\\\"}\"}");
        assert_int_equal(run_once(w), 1);
        /* the event itself; the cycle's summary line repeats it */
        const char *refused[] = { acc, "refused by the Marketplace", "422", NULL };
        if (log_lines(w, 3, refused) != 1)
                dump(w, "want one error line for the refusal");
        assert_int_equal(log_lines(w, 3, refused), 1);
        for (int i = 0; i < 3; i++) {
                int st = run_once(w);
                if (st != 0)
                        dump(w, "a run after the refusal failed");
                assert_int_equal(st, 0);
                const char *any[] = { acc, NULL };
                assert_int_equal(log_lines(w, 3, any), 0);
        }
        assert_int_equal(posts(w, acc, 0), 1);
        assert_status(w, acc, "Querying");
        /* partnerd status says why it waits */
        int st = -1;
        const char *table[] = { "status", NULL };
        assert_int_equal(harness_pd_run(w->pd, table, RUN_TIMEOUT_MS, &st), 0);
        assert_int_equal(st, 0);
        char *out = harness_pd_output(w->pd, w->pd->runs, false);
        assert_non_null(out);
        assert_non_null(strstr(out, "blocked (process-refused)"));
        free(out);
        /* one ops notice, giving the refusal; no confirmation */
        size_t notices = 0;
        for (size_t i = 0; i < harness_smtp_count(w->smtp); i++) {
                json_t *m = harness_smtp_parse(w->smtp, i);
                const char *subj = m ? json_string_value(json_object_get(json_object_get(m, "headers"), "Subject")) : NULL;
                const char *t = m ? json_string_value(json_object_get(m, "text")) : NULL;
                if (subj && strcmp(inv_mail_kind(subj), "ops-notice") == 0 && t && strstr(t, acc) &&
                    strstr(t, "Parameter PAR-1 is invalid"))
                        notices++;
                json_decref(m);
        }
        assert_int_equal(notices, 1);
        assert_int_equal(mail_count(w, 0, DOMAINS[C_ACCEPTED], "confirmation"), 0);
        world_free(w);
}

static void test_reset_never_resent(void **unused) {
        struct inv_world *w = world_new();
        char acc[24];
        oid(acc, C_ACCEPTED);
        /* the connection dies under the POST before any answer: libcurl
         * would re-send it on a reused connection */
        add_fault(w, "{\"route\":\"process\",\"action\":\"reset\",\"times\":1}");
        assert_int_equal(run_once(w), 1);
        assert_int_equal(posts(w, acc, 0), 1);
        assert_int_equal(posts(w, acc, 200), 0);
        assert_status(w, acc, "Querying");
        /* next run: the order, read again, is still Querying in the same
         * episode: the one POST did not take effect, so it is asked once */
        int st = run_once(w);
        if (st != 0)
                dump(w, "the settle run failed");
        assert_int_equal(st, 0);
        assert_int_equal(posts(w, acc, 0), 2);
        assert_int_equal(posts(w, acc, 200), 1);
        assert_status(w, acc, "Processing");
        assert_int_equal(inv_fake_revision(&w->fake, acc), 2);
        assert_int_equal(mail_count(w, 0, DOMAINS[C_ACCEPTED], "confirmation"), 1);
        assert_int_equal(run_once(w), 0);
        assert_int_equal(posts(w, acc, 0), 2);
        world_free(w);
}

/* Applied, answer lost (the fake moves the order, then cuts the body):
 * exactly one POST, settled by reading the order again. */
static void test_applied_answer_lost(void **unused) {
        struct inv_world *w = world_new();
        char acc[24];
        oid(acc, C_ACCEPTED);
        add_fault(w, "{\"route\":\"process\",\"action\":\"truncate\",\"times\":1}");
        assert_int_equal(run_once(w), 1);
        assert_int_equal(posts(w, acc, 0), 1);
        assert_status(w, acc, "Processing");
        int st = run_once(w);
        if (st != 0)
                dump(w, "the settle run failed");
        assert_int_equal(st, 0);
        assert_int_equal(posts(w, acc, 0), 1);
        assert_int_equal(inv_fake_revision(&w->fake, acc), 2);
        assert_int_equal(mail_count(w, 0, DOMAINS[C_ACCEPTED], "confirmation"), 1);
        world_free(w);
}

/* The daemon dies while its first check of a customer is in flight, after
 * the cycle saved its intent (a Draft warning) with the check's schedule
 * advanced.  The next run asks again at once rather than mailing a request
 * to an admin who had accepted (engine first_check_lost). */
static const struct inv_customer LOST[] = {
        { .name = "Accepted Early Ltd", .domain = "accepted-early.onmicrosoft.com",
          .tenant_id = "4d4d4d4d-0000-4000-8000-000000000004", .n_querying = 1, .accepted = true },
        { .name = "Draft Only GmbH", .domain = "draft-only.onmicrosoft.com",
          .tenant_id = "4e4e4e4e-0000-4000-8000-000000000005", .n_draft = 1 },
};

/* check_count of the customer with tenant id in the state file, -1 if none. */
static long state_check_count(struct inv_world *w, const char *tenant) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/state.json", w->pd->state_dir);
        json_t *st = json_load_file(path, 0, NULL);
        long n = -1;
        json_t *c;
        size_t i;
        json_array_foreach(json_object_get(st, "customers"), i, c) {
                const char *t = json_string_value(json_object_get(c, "tenant_id"));
                if (t && strcmp(t, tenant) == 0)
                        n = (long) json_integer_value(json_object_get(c, "check_count"));
        }
        json_decref(st);
        return n;
}

static void test_first_check_lost_in_crash(void **unused) {
        struct inv_world *w = calloc(1, sizeof(*w));
        assert_non_null(w);
        json_t *sc = inv_scenario_new(LOST, 2, SERIES + 1);
        assert_non_null(sc);
        struct harness_pd_options o = { .ops = "ops@example.test" };
        assert_int_equal(inv_world_start(w, sc, NULL, &(struct harness_smtp_options) { 0 }, &o), 0);
        json_decref(sc);
        char acc[24], fault[256];
        inv_order_id(acc, SERIES + 1, 0, 0);
        snprintf(fault, sizeof(fault), "{\"route\":\"customer\",\"match\":\"%s\",\"action\":\"stall\","
                 "\"delay_ms\":60000,\"times\":1}", LOST[0].tenant_id);
        add_fault(w, fault);

        const char *args[] = { "--once", NULL };
        pid_t pid = harness_pd_spawn(w->pd, args);
        assert_true(pid > 0);
        long checks = -1;
        for (int i = 0; i < 600 && checks < 1; i++) {
                struct timespec ts = { .tv_nsec = 50 * 1000 * 1000 };
                nanosleep(&ts, NULL);
                checks = state_check_count(w, LOST[0].tenant_id);
        }
        assert_int_equal(harness_kill(pid, SIGKILL, 10000), 128 + SIGKILL);
        assert_int_equal(checks, 1);   /* the intent is on disk, the check's answer is not */
        assert_int_equal(posts(w, acc, 0), 0);

        int st = run_once(w);
        if (st != 0)
                dump(w, "the run after the kill failed");
        assert_int_equal(st, 0);
        const char *const domains[] = { LOST[0].domain, LOST[1].domain };
        struct inv_mail_tally t;
        assert_int_equal(inv_mail_tally(w->smtp, 0, domains, 2, &t), 0);
        size_t asked = inv_mail_count(&t, LOST[0].domain, "new-request");
        size_t drafts = inv_mail_count(&t, LOST[1].domain, "draft-warning");
        inv_mail_tally_done(&t);
        if (asked)
                dump(w, "an admin who had accepted was asked");
        assert_int_equal(asked, 0);
        assert_int_equal(drafts, 1);
        assert_int_equal(posts(w, acc, 0), 1);
        assert_status(w, acc, "Processing");
        world_free(w);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_cold_start_and_cloud_link),
                cmocka_unit_test(test_409_race_is_moved_on),
                cmocka_unit_test(test_moved_before_reread),
                cmocka_unit_test(test_new_episode_before_reread),
                cmocka_unit_test(test_404_is_gone),
                cmocka_unit_test(test_refused_once),
                cmocka_unit_test(test_reset_never_resent),
                cmocka_unit_test(test_applied_answer_lost),
                cmocka_unit_test(test_first_check_lost_in_crash),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
