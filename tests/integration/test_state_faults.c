/* SPDX-License-Identifier: MIT */
/*
 * State faults: the real partnerd (--once) when its state directory or file
 * misbehaves.
 *
 *   read-only     the state directory on a read-only bind mount (unshare -m)
 *   not a dir     a regular file where the state directory should be
 *   disk full     the state directory on a full tmpfs (unshare -m)
 *   garbage       state.json replaced by garbage
 *   truncated     state.json cut in half
 *   old schema    a version 0 (legacy) state file
 *   newer schema  a state file of a later version: refused (exit 78), untouched
 *   dry run       --dry-run moves, rewrites and deletes nothing (a corrupt
 *                 state, a killed save's temp file, the outbox)
 *   first mail    the daemon on a full disk: the request mail that could not
 *                 be queued goes out as soon as there is room (not recorded
 *                 as sent meanwhile)
 *
 * Each: a clear error line (or, for the old schema, no error), exit 0/1 and
 * never a signal, no Process whose intent could not be saved, no Process
 * answered 200 twice and none on a Draft, at most one repeated mail per
 * customer, and once the fault is gone every blocked customer is asked and
 * every accepted one processed and told.  Cases needing mounts are skipped
 * with a message when unshare/mount are not permitted.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <jansson.h>

#include "harness.h"
#include "invariants.h"
#include "pdrun.h"
#include "smtp.h"
#include "util.h"

#define SERIES          4001
#define RUN_TIMEOUT_MS  90000

enum { C_PENDING, C_ACCEPTED, N_CUST };

static const struct inv_customer CUST[N_CUST] = {
        [C_PENDING] = { .name = "Pending State Ltd", .domain = "pending-state.onmicrosoft.com",
                        .tenant_id = "4a4a4a4a-0000-4000-8000-000000000001", .n_querying = 1, .n_draft = 1 },
        [C_ACCEPTED] = { .name = "Accepted State Inc", .domain = "accepted-state.onmicrosoft.com",
                         .tenant_id = "4b4b4b4b-0000-4000-8000-000000000002", .n_querying = 1,
                         .accepted = true },
};

static const char *const DOMAINS[N_CUST] = {
        "pending-state.onmicrosoft.com", "accepted-state.onmicrosoft.com",
};

struct env {
        struct inv_world w;
        char *wrap;           /* PARTNERD_WRAPPER for the faulted run, or NULL */
};

static int setup(void **state) {
        struct env *e = calloc(1, sizeof(*e));
        json_t *sc = inv_scenario_new(CUST, N_CUST, SERIES);
        int r = -1;
        if (e && sc)
                r = inv_world_start(&e->w, sc, NULL, &(struct harness_smtp_options) { 0 },
                                    &(struct harness_pd_options) { 0 });
        json_decref(sc);
        *state = e;
        return r < 0 ? -1 : 0;
}

static int teardown(void **state) {
        struct env *e = *state;
        if (e) {
                inv_world_stop(&e->w);
                free(e->wrap);
        }
        free(e);
        return 0;
}

static char *read_text(const char *path) {
        char *s = NULL;
        return util_read_file(path, 64u << 20, &s, NULL) < 0 ? NULL : s;
}

static void dump_err(struct env *e, int run) {
        char *err = harness_pd_output(e->w.pd, run, true);
        fprintf(stderr, "state: stderr of run %d:\n%s\n", run, err ? err : "");
        free(err);
}

/* One --once run, optionally under the fault wrapper; exit 0 or 1. */
static int run(struct env *e, bool faulted) {
        const char *old = getenv("PARTNERD_WRAPPER");
        char *saved = old ? strdup(old) : NULL, *wrap = NULL;
        const char *args[] = { "--once", NULL };
        int status = -1;

        if (faulted && e->wrap) {
                assert_true(asprintf(&wrap, "%s%s%s", e->wrap, saved ? " " : "", saved ? saved : "") >= 0);
                setenv("PARTNERD_WRAPPER", wrap, 1);
        }
        assert_int_equal(harness_pd_run(e->w.pd, args, RUN_TIMEOUT_MS, &status), 0);
        if (saved)
                setenv("PARTNERD_WRAPPER", saved, 1);
        else
                unsetenv("PARTNERD_WRAPPER");
        free(saved);
        free(wrap);
        if (status != 0 && status != 1)
                dump_err(e, e->w.pd->runs);
        assert_true(status == 0 || status == 1);
        return status;
}

/* A line of run `run_no` at priority <= 4 (<= 6 when info_ok) with every needle. */
static bool has_line(struct env *e, int run_no, const char *const *needles, bool info_ok) {
        char *err = harness_pd_output(e->w.pd, run_no, true), line[512];
        bool found = err && inv_find_log_line(err, info_ok ? 6 : 4, needles, line, sizeof(line));
        if (found)
                fprintf(stderr, "state: run %d says: %s\n", run_no, line);
        else
                dump_err(e, run_no);
        free(err);
        return found;
}

static int process_posts(struct env *e) {
        json_t *log = harness_fake_log(&e->w.fake);
        assert_non_null(log);
        int n = (int) inv_process_posts(log, NULL, 0);
        json_decref(log);
        return n;
}

/* The invariants once the fault is gone (after one more normal run). */
static void assert_end_state(struct env *e, size_t max_repeats) {
        json_t *log = harness_fake_log(&e->w.fake);
        struct inv_mail_tally t;
        char id[24];
        int first = 0;

        assert_non_null(log);
        assert_int_equal(inv_mail_tally(e->w.smtp, 0, DOMAINS, N_CUST, &t), 0);
        for (size_t ci = 0; ci < N_CUST; ci++) {
                const struct inv_customer *c = &CUST[ci];
                for (int k = 0; k < c->n_querying + c->n_draft; k++) {
                        bool draft = k >= c->n_querying;
                        inv_order_id(id, SERIES, ci, k);
                        char *st = harness_fake_order_status(&e->w.fake, id);
                        const char *want = draft ? "Draft" : c->accepted ? "Processing" : "Querying";
                        assert_non_null(st);
                        if (strcmp(st, want) != 0)
                                fail_msg("order %s is %s, want %s", id, st, want);
                        free(st);
                        assert_true(inv_process_posts(log, id, 200) <= 1);
                        assert_int_equal(inv_fake_revision(&e->w.fake, id), draft || !c->accepted ? 1 : 2);
                        if (draft)
                                assert_int_equal(inv_process_posts(log, id, 0), 0);
                }
                if (!c->accepted)
                        assert_true(inv_mail_count(&t, c->domain, "new-request") >= 1);
                else
                        assert_true(inv_mail_count(&t, c->domain, "confirmation") >= 1);
        }
        size_t dup = inv_mail_duplicates(&t);
        char *counts = json_dumps(t.counts, JSON_COMPACT | JSON_SORT_KEYS);
        fprintf(stderr, "state: mails %s, repeated %zu (at most %zu allowed)\n", counts ? counts : "?", dup,
                max_repeats);
        free(counts);
        assert_true(dup <= max_repeats);
        assert_int_equal(t.unparsed, 0);
        inv_mail_tally_done(&t);
        json_decref(log);
        if (inv_pd_sanitizer_reports(e->w.pd, &first)) {
                dump_err(e, first);
                fail_msg("run %d reported memory errors", first);
        }
        char *err = NULL;
        int r = inv_state_loadable(e->w.pd->state_dir, &err);
        if (r < 0)
                fail_msg("state not loadable: %s", err ? err : "?");
        free(err);
}

/* ---- mounts ---- */

static bool mounts_work(void) {
        static int cached = -1;
        if (cached < 0) {
                char *dir = harness_tmpdir(), *cmd = NULL;
                assert_non_null(dir);
                assert_true(asprintf(&cmd, "unshare -m --propagation private /bin/sh -c "
                                     "'mount -t tmpfs -o size=16k tmpfs %s && mount -o remount,ro %s' "
                                     ">/dev/null 2>&1", dir, dir) >= 0);
                cached = system(cmd) == 0;
                free(cmd);
                harness_rmrf(dir);
                free(dir);
                if (!cached)
                        fprintf(stderr, "state: unshare -m / mount not permitted here\n");
        }
        return cached;
}

/* Writes a wrapper that runs partnerd in a private mount namespace after
 * `setup` (shell commands; $S is the state directory) and copies the state
 * directory as partnerd left it to $S.after; with exec_it partnerd
 * replaces the wrapper instead (a daemon that gets signals). */
static void write_wrapper_mode(struct env *e, const char *setup_cmds, bool exec_it) {
        char *path = NULL, *text = NULL;
        assert_true(asprintf(&path, "%s/wrap.sh", e->w.dir) >= 0);
        assert_true(asprintf(&text,
                             "#!/bin/sh\n"
                             "# test_state_faults: run \"$@\" with the state directory made faulty\n"
                             "S='%s'\n"
                             "if [ -z \"$PD_IN_NS\" ]; then\n"
                             "  PD_IN_NS=1 exec unshare -m --propagation private /bin/sh \"$0\" \"$@\"\n"
                             "fi\n"
                             "%s\n"
                             "%s\"$@\"\n"
                             "rc=$?\n"
                             "rm -rf \"$S.after\" && mkdir -p \"$S.after\" && cp -a \"$S\"/. \"$S.after\"/ 2>/dev/null\n"
                             "rm -f \"$S.after/filler\"\n"
                             "exit $rc\n",
                             e->w.pd->state_dir, setup_cmds, exec_it ? "exec " : "") >= 0);
        assert_int_equal(util_write_file_atomic(path, text, strlen(text), 0755), 0);
        free(e->wrap);
        assert_true(asprintf(&e->wrap, "/bin/sh %s", path) >= 0);
        free(path);
        free(text);
}

static void write_wrapper(struct env *e, const char *setup_cmds) {
        write_wrapper_mode(e, setup_cmds, false);
}

static char *after_path(struct env *e, const char *name) {
        char *p = NULL;
        assert_true(asprintf(&p, "%s.after/%s", e->w.pd->state_dir, name) >= 0);
        return p;
}

/* ---- cases ---- */

static void test_read_only(void **state) {
        struct env *e = *state;
        if (!mounts_work()) {
                fprintf(stderr, "state: SKIP read-only state directory (needs unshare -m and mount)\n");
                skip();
        }
        assert_int_equal(mkdir(e->w.pd->state_dir, 0700), 0);
        write_wrapper(e, "mount --bind \"$S\" \"$S\" && mount -o remount,bind,ro \"$S\" || exit 99");
        int st = run(e, true);
        assert_int_equal(st, 1);
        assert_true(has_line(e, e->w.pd->runs, (const char *const[]) { "Read-only file system", NULL }, false));
        /* nothing done whose record could not be written */
        assert_int_equal(process_posts(e), 0);
        assert_int_equal(harness_smtp_count(e->w.smtp), 0);

        /* writable again: everything happens, once */
        assert_int_equal(run(e, false), 0);
        assert_end_state(e, 0);
}

static void test_not_a_directory(void **state) {
        struct env *e = *state;
        assert_int_equal(util_write_file_atomic(e->w.pd->state_dir, "x\n", 2, 0600), 0);
        int st = run(e, false);
        assert_int_equal(st, 1);
        assert_true(has_line(e, e->w.pd->runs, (const char *const[]) { "Not a directory", NULL }, false));
        assert_int_equal(process_posts(e), 0);
        assert_int_equal(harness_smtp_count(e->w.smtp), 0);

        assert_int_equal(unlink(e->w.pd->state_dir), 0);
        assert_int_equal(run(e, false), 0);
        assert_end_state(e, 0);
}

static void test_disk_full(void **state) {
        struct env *e = *state;
        if (!mounts_work()) {
                fprintf(stderr, "state: SKIP disk full (needs unshare -m and a tmpfs mount)\n");
                skip();
        }
        /* run 1 normal: the pending customer is asked, the accepted one processed */
        assert_int_equal(run(e, false), 0);
        size_t mails1 = harness_smtp_count(e->w.smtp);
        int posts1 = process_posts(e);
        char *path = NULL, *before = NULL;
        assert_true(asprintf(&path, "%s/state.json", e->w.pd->state_dir) >= 0);
        before = read_text(path);
        assert_non_null(before);

        /* the pending customer accepts; run 2 finds the disk full */
        assert_int_equal(harness_fake_accept(&e->w.fake, CUST[C_PENDING].tenant_id), 0);
        write_wrapper(e, "stage=$(mktemp -d) && cp -a \"$S\"/. \"$stage\"/ &&\n"
                         "mount -t tmpfs -o size=64k tmpfs \"$S\" && cp -a \"$stage\"/. \"$S\"/ && rm -rf \"$stage\" || exit 99\n"
                         "dd if=/dev/zero of=\"$S/filler\" bs=1k count=1024 2>/dev/null\n"
                         "sync");
        int st = run(e, true);
        assert_true(has_line(e, e->w.pd->runs, (const char *const[]) { "No space left on device", NULL }, false));
        (void) st;
        /* the intent of the Process could not be saved: no Process */
        assert_int_equal(process_posts(e), posts1);
        assert_int_equal(harness_smtp_count(e->w.smtp), mails1);
        /* the old file is intact and nothing half-written is left behind */
        char *apath = after_path(e, "state.json"), *after = read_text(apath);
        assert_non_null(after);
        assert_string_equal(after, before);
        char *adir = NULL;
        assert_true(asprintf(&adir, "%s.after", e->w.pd->state_dir) >= 0);
        size_t tmp = inv_temp_files(adir);
        if (tmp)
                fprintf(stderr, "state: %zu temp file(s) left on the full disk\n", tmp);
        assert_int_equal(tmp, 0);

        /* space again (the real directory still holds run 1's state) */
        assert_int_equal(run(e, false), 0);
        assert_int_equal(process_posts(e), posts1 + 1);
        free(path);
        free(before);
        free(apath);
        free(after);
        free(adir);
}

/* Mail dedup keys and Process guards have one-second resolution: a real
 * restart is never in the same second as the run before. */
static void next_second(void) {
        time_t t = time(NULL);
        while (time(NULL) == t) {
                struct timespec ts = { .tv_nsec = 20 * 1000 * 1000 };
                nanosleep(&ts, NULL);
        }
}

/* Runs once, damages state.json with damage(), runs again: the file is moved
 * aside with an error line, the run goes on; then the end state.  No mail
 * is repeated: the dedup keys come from platform data only, so the fresh
 * state makes the keys the outbox has already sent (issue 12.6). */
static void damaged_state(struct env *e, void (*damage)(const char *path)) {
        char *path = NULL;
        assert_int_equal(run(e, false), 0);
        int posts1 = process_posts(e);
        assert_int_equal(posts1, 1);
        assert_true(asprintf(&path, "%s/state.json", e->w.pd->state_dir) >= 0);
        damage(path);

        next_second();
        assert_int_equal(run(e, false), 0);
        assert_true(has_line(e, e->w.pd->runs, (const char *const[]) { "unusable", "moved to", NULL }, false));
        /* the evidence is kept */
        char *cmd = NULL;
        assert_true(asprintf(&cmd, "ls %s/state.json.corrupt-* >/dev/null 2>&1", e->w.pd->state_dir) >= 0);
        assert_int_equal(system(cmd), 0);
        free(cmd);
        /* never a repeated Process: the order is Processing already */
        assert_int_equal(process_posts(e), posts1);
        assert_int_equal(run(e, false), 0);
        assert_int_equal(process_posts(e), posts1);
        assert_end_state(e, 0);
        free(path);
}

static void damage_garbage(const char *path) {
        static const char junk[] = "\x7f" "ELF garbage {\"version\": 1, \"customers\": [ \xff\xfe";
        assert_int_equal(util_write_file_atomic(path, junk, sizeof(junk) - 1, 0600), 0);
}

static void damage_truncate(const char *path) {
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_true(st.st_size > 10);
        assert_int_equal(truncate(path, st.st_size / 2), 0);
}

static void test_garbage(void **state) {
        damaged_state(*state, damage_garbage);
}

static void test_truncated(void **state) {
        damaged_state(*state, damage_truncate);
}

/* A version 0 state (one flat object of orders) that already asked the
 * pending customer: migrated, not asked again, the accepted one processed. */
static void test_old_schema(void **state) {
        struct env *e = *state;
        char id[24], *text = NULL, *path = NULL;
        assert_int_equal(mkdir(e->w.pd->state_dir, 0700), 0);
        assert_true(asprintf(&text,
                             "{\"orders\": {\"%s\": {\"customer\": \"%s\", \"status\": \"blocked\", "
                             "\"querying_since\": \"2026-11-20T09:20:02Z\", \"first_seen\": \"2026-11-20T10:00:00Z\", "
                             "\"notified_at\": \"2026-11-20T10:00:00Z\", \"reminders\": 0}}}\n",
                             inv_order_id(id, SERIES, C_PENDING, 0), CUST[C_PENDING].tenant_id) >= 0);
        assert_true(asprintf(&path, "%s/state.json", e->w.pd->state_dir) >= 0);
        assert_int_equal(util_write_file_atomic(path, text, strlen(text), 0600), 0);

        next_second();
        assert_int_equal(run(e, false), 0);
        char *err = harness_pd_output(e->w.pd, e->w.pd->runs, true);
        assert_non_null(err);
        /* a migration is not damage */
        assert_null(strstr(err, "unusable"));
        free(err);
        /* rewritten in the current schema */
        free(text);
        text = read_text(path);
        assert_non_null(text);
        assert_non_null(strstr(text, "\"version\": 1"));
        assert_int_equal(run(e, false), 0);
        struct inv_mail_tally t;
        assert_int_equal(inv_mail_tally(e->w.smtp, 0, DOMAINS, N_CUST, &t), 0);
        size_t asked = inv_mail_count(&t, CUST[C_PENDING].domain, "new-request");
        inv_mail_tally_done(&t);
        fprintf(stderr, "state: the migrated, already asked customer was asked %zu more time(s)\n", asked);
        /* ideally 0; a v0 file has no episode id (querying_at_raw), so the
         * order looks like a new episode: one repeated request at most */
        assert_true(asked <= 1);
        if (asked == 1)
                assert_end_state(e, 0);
        else {
                char oid[24];
                char *st = harness_fake_order_status(&e->w.fake, inv_order_id(oid, SERIES, C_ACCEPTED, 0));
                assert_string_equal(st, "Processing");
                free(st);
        }
        free(text);
        free(path);
}

/* Issue 12.6: a state file written by a newer partnerd is refused with a
 * clear error and exit 78 (EX_CONFIG), never moved aside or rewritten. */
static void test_newer_schema(void **state) {
        struct env *e = *state;
        static const char newer[] = "{\"version\": 2, \"customers\": [], \"from_the_future\": true}\n";
        char *path = NULL, *cmd = NULL;
        int status = -1;

        assert_int_equal(mkdir(e->w.pd->state_dir, 0700), 0);
        assert_true(asprintf(&path, "%s/state.json", e->w.pd->state_dir) >= 0);
        assert_int_equal(util_write_file_atomic(path, newer, strlen(newer), 0600), 0);
        const char *args[] = { "--once", NULL };
        assert_int_equal(harness_pd_run(e->w.pd, args, RUN_TIMEOUT_MS, &status), 0);
        assert_int_equal(status, 78);
        assert_true(has_line(e, e->w.pd->runs, (const char *const[]) { "newer partnerd", "version 2", NULL }, false));
        char *text = read_text(path);
        assert_non_null(text);
        assert_string_equal(text, newer);
        free(text);
        assert_true(asprintf(&cmd, "ls %s/state.json.corrupt-* >/dev/null 2>&1", e->w.pd->state_dir) >= 0);
        assert_int_not_equal(system(cmd), 0);
        assert_int_equal(process_posts(e), 0);
        assert_int_equal(harness_smtp_count(e->w.smtp), 0);
        /* the daemon too, before it reports ready */
        const char *none[] = { NULL };
        assert_int_equal(harness_pd_run(e->w.pd, none, RUN_TIMEOUT_MS, &status), 0);
        assert_int_equal(status, 78);
        free(cmd);
        free(path);
}

/* Every file under dir with its size, mtime and checksum (malloc'd). */
static char *tree_snapshot(const char *dir) {
        char *cmd = NULL, *out = NULL;
        size_t len = 0;
        assert_true(asprintf(&cmd, "cd '%s' && find . -printf '%%p %%y %%s %%T@\\n' | sort && "
                             "find . -type f -exec sha256sum {} + | sort", dir) >= 0);
        FILE *p = popen(cmd, "r"), *m = open_memstream(&out, &len);
        assert_non_null(p);
        assert_non_null(m);
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof(buf), p)) > 0)
                fwrite(buf, 1, n, m);
        assert_int_equal(pclose(p), 0);
        fclose(m);
        free(cmd);
        return out;
}

/* Issue 12.6: --dry-run never moves, rewrites or deletes anything, even
 * what a real run would clean up: a corrupt state file, the temp file of a
 * killed save, the outbox with a queued and an unreadable message. */
static void test_dry_run_touches_nothing(void **state) {
        struct env *e = *state;
        char *p = NULL;
        int status = -1;

        /* a real run first: state, outbox, lock file */
        assert_int_equal(run(e, false), 0);
        assert_true(asprintf(&p, "%s/state.json", e->w.pd->state_dir) >= 0);
        static const char bad[] = "{\"version\": 1, \"customers\": 7}";
        assert_int_equal(util_write_file_atomic(p, bad, strlen(bad), 0600), 0);
        free(p);
        assert_true(asprintf(&p, "%s/state.json.tmp.999999999", e->w.pd->state_dir) >= 0);
        assert_int_equal(util_write_file_atomic(p, "half", 4, 0600), 0);
        free(p);
        assert_true(asprintf(&p, "%s/outbox/000000000001-0000000000000000.msg", e->w.pd->state_dir) >= 0);
        assert_int_equal(util_write_file_atomic(p, "not an envelope\n", 16, 0600), 0);
        free(p);
        assert_true(asprintf(&p, "%s/outbox/sent.json.tmp.999999999", e->w.pd->state_dir) >= 0);
        assert_int_equal(util_write_file_atomic(p, "half", 4, 0600), 0);
        free(p);
        char *before = tree_snapshot(e->w.pd->state_dir);
        size_t mails = harness_smtp_count(e->w.smtp);

        next_second();
        const char *args[] = { "--once", "--dry-run", NULL };
        assert_int_equal(harness_pd_run(e->w.pd, args, RUN_TIMEOUT_MS, &status), 0);
        if (status != 0)
                dump_err(e, e->w.pd->runs);
        assert_int_equal(status, 0);
        char *after = tree_snapshot(e->w.pd->state_dir);
        if (strcmp(before, after) != 0)
                fail_msg("the dry run changed the state directory:\n--- before\n%s--- after\n%s", before, after);
        assert_true(has_line(e, e->w.pd->runs, (const char *const[]) { "unusable", "dry run", NULL }, false));
        assert_int_equal(harness_smtp_count(e->w.smtp), mails);
        /* a state directory that does not exist is not created */
        harness_rmrf(e->w.pd->state_dir);
        assert_int_equal(harness_pd_run(e->w.pd, args, RUN_TIMEOUT_MS, &status), 0);
        assert_int_equal(status, 0);
        assert_int_not_equal(access(e->w.pd->state_dir, F_OK), 0);
        free(before);
        free(after);
}

/* Issue 12.4: the daemon starts on a full disk.  The new-request mail
 * cannot be queued ("No space left on device"); it must not be recorded as
 * sent, so that once there is room again the next cycle (10 s later) sends
 * the request, not a reminder a day later. */
static void test_first_mail_disk_full(void **state) {
        struct env *e = *state;
        char *flag = NULL;
        int status = -1;

        if (!mounts_work()) {
                fprintf(stderr, "state: SKIP first mail on a full disk (needs unshare -m and a tmpfs mount)\n");
                skip();
        }
        assert_int_equal(mkdir(e->w.pd->state_dir, 0700), 0);
        assert_true(asprintf(&flag, "%s.free", e->w.pd->state_dir) >= 0);
        write_wrapper_mode(e, "mount -t tmpfs -o size=64k tmpfs \"$S\" || exit 99\n"
                              "dd if=/dev/zero of=\"$S/filler\" bs=1k count=1024 2>/dev/null\n"
                              "( while [ ! -e \"$S.free\" ]; do sleep 0.1; done; rm -f \"$S/filler\" ) &",
                           true);
        setenv("PARTNERD_WRAPPER", e->wrap, 1);
        const char *none[] = { NULL };
        pid_t pid = harness_pd_spawn(e->w.pd, none);
        unsetenv("PARTNERD_WRAPPER");
        assert_true(pid > 0);
        int run_no = e->w.pd->runs;

        /* the first cycle meets the full disk */
        bool full = false;
        for (int i = 0; i < 300 && !full; i++) {
                char *err = harness_pd_output(e->w.pd, run_no, true);
                full = err && strstr(err, "No space left on device") && strstr(err, "Cycle ");
                free(err);
                if (!full)
                        usleep(100 * 1000);
        }
        assert_true(has_line(e, run_no, (const char *const[]) { "Cannot queue", "No space left on device", NULL }, false));
        assert_int_equal(harness_smtp_count(e->w.smtp), 0);

        /* room again: the next cycle sends the request */
        assert_int_equal(util_write_file_atomic(flag, "", 0, 0600), 0);
        size_t asked = 0;
        for (int i = 0; i < 400 && !asked; i++) {
                struct inv_mail_tally t;
                assert_int_equal(inv_mail_tally(e->w.smtp, 0, DOMAINS, N_CUST, &t), 0);
                asked = inv_mail_count(&t, CUST[C_PENDING].domain, "new-request");
                inv_mail_tally_done(&t);
                if (!asked)
                        usleep(100 * 1000);
        }
        status = harness_kill(pid, SIGTERM, 20000);
        if (!asked)
                dump_err(e, run_no);
        assert_int_equal(asked, 1);
        assert_int_equal(status, 0);
        free(flag);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_read_only, setup, teardown),
                cmocka_unit_test_setup_teardown(test_not_a_directory, setup, teardown),
                cmocka_unit_test_setup_teardown(test_disk_full, setup, teardown),
                cmocka_unit_test_setup_teardown(test_garbage, setup, teardown),
                cmocka_unit_test_setup_teardown(test_truncated, setup, teardown),
                cmocka_unit_test_setup_teardown(test_old_schema, setup, teardown),
                cmocka_unit_test_setup_teardown(test_newer_schema, setup, teardown),
                cmocka_unit_test_setup_teardown(test_dry_run_touches_nothing, setup, teardown),
                cmocka_unit_test_setup_teardown(test_first_mail_disk_full, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
