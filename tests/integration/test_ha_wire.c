/* SPDX-License-Identifier: MIT */
/*
 * The cluster mode of ONE real partnerd (issue 15, docs/cluster.md) against
 * a real etcd on loopback, the fake platform and aiosmtpd.  The multi-daemon
 * cases (takeover, fencing, quorum) are tests/integration/test_cluster*.c.
 *
 *  cycle_in_etcd   with [cluster], --once runs a cycle: the request mail,
 *                  one Process; the state is in etcd (partnerd status reads
 *                  it from there), no state.json is written; a second run
 *                  sends nothing again and processes nothing again
 *  standby_idle    while another instance holds the leader key, the daemon
 *                  polls nothing, mails nothing, says "standby (leader:
 *                  host-z)"; when that instance goes, it takes over, loads
 *                  the state and runs the cycle
 *  outbox_takeover the daemon is SIGKILLed while its request mail is in the
 *                  SMTP server's DATA (queued, mirrored to etcd, not sent);
 *                  its local outbox files are removed, as on another host:
 *                  the next instance restores etcd's outbox and delivers
 *                  the mail, whose entry then leaves etcd
 *  stopped_leader  the active daemon is SIGSTOPped while it re-reads the
 *                  accepted order before its Process (intent saved), past
 *                  its lease; another instance takes over; after SIGCONT
 *                  the deposed daemon calls no Process
 *  migrate         a single-host run, then `cluster migrate` copies its
 *                  state into etcd (a second migrate refuses: not empty);
 *                  the cluster-mode run after it re-mails nobody and
 *                  processes nothing again
 *
 * Skipped (cmocka skip) when etcd is not installed.
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
#include <dirent.h>
#include <unistd.h>
#include <cmocka.h>

#include <jansson.h>

#include "etcdrun.h"
#include "harness.h"
#include "invariants.h"
#include "pdrun.h"
#include "smtp.h"
#include "util.h"

#define SERIES          6101
#define RUN_TIMEOUT_MS  90000

enum { C_PENDING, C_ACCEPTED, N_CUST };

static const struct inv_customer CUST[N_CUST] = {
        [C_PENDING] = { .name = "Pending Wire Ltd", .domain = "pending-wire.onmicrosoft.com",
                        .tenant_id = "7a7a7a7a-0000-4000-8000-000000000001", .n_querying = 1 },
        [C_ACCEPTED] = { .name = "Accepted Wire Inc", .domain = "accepted-wire.onmicrosoft.com",
                         .tenant_id = "7b7b7b7b-0000-4000-8000-000000000002", .n_querying = 1,
                         .accepted = true },
};

static const char *const DOMAINS[N_CUST] = {
        "pending-wire.onmicrosoft.com", "accepted-wire.onmicrosoft.com",
};

static struct harness_etcd *etcd;
static int prefix_no;
/* the running test's world and helpers, stopped by per_test_end() also
 * when an assertion failed */
static struct inv_world *cur;
static pid_t cur_pid;
static struct harness_cluster_node cur_node;

static int group_setup(void **state) {
        int r = harness_etcd_start(1, &etcd);
        if (r == -ENOENT) {
                fprintf(stderr, "test_ha_wire: etcd is not installed (scripts/deps.sh installs etcd-server); skipping\n");
                etcd = NULL;
                return 0;
        }
        return r < 0 ? -1 : 0;
}

static int group_teardown(void **state) {
        harness_etcd_free(etcd);
        return 0;
}

#define NEED_ETCD() do { if (!etcd) skip(); } while (0)

static struct inv_world *world_opts(const char *const *fake_args, const struct harness_pd_options *o) {
        struct inv_world *w = calloc(1, sizeof(*w));
        json_t *sc = inv_scenario_new(CUST, N_CUST, SERIES);
        assert_non_null(w);
        assert_non_null(sc);
        assert_int_equal(inv_world_start(w, sc, fake_args, &(struct harness_smtp_options) { 0 },
                                         o ? o : &(struct harness_pd_options) { .poll_interval = "1h" }), 0);
        json_decref(sc);
        cur = w;
        return w;
}

static struct inv_world *world_args(const char *const *fake_args) {
        return world_opts(fake_args, NULL);
}

static struct inv_world *world(void) {
        return world_args(NULL);
}

static void world_free(struct inv_world *w) {
        inv_world_stop(w);
        free(w);
        cur = NULL;
}

static int per_test_end(void **state) {
        if (cur_pid > 0)
                harness_kill(cur_pid, SIGKILL, 5000);
        cur_pid = 0;
        harness_cluster_node_stop(&cur_node, true);
        if (cur)
                world_free(cur);
        return 0;
}

/* Appends the [cluster] section (a fresh prefix per call) to the config. */
static void add_cluster(struct inv_world *w, char *prefix, size_t n) {
        snprintf(prefix, n, "/hawire%d/", ++prefix_no);
        FILE *f = fopen(w->pd->config, "a");
        assert_non_null(f);
        fprintf(f, "\n[cluster]\netcd = %s\nprefix = %s\nlease_ttl = 6s\nname = host-a\n", etcd->endpoints[0],
                prefix);
        assert_int_equal(fclose(f), 0);
}

static void dump(struct inv_world *w, int run) {
        char *out = harness_pd_output(w->pd, run, false), *err = harness_pd_output(w->pd, run, true);
        fprintf(stderr, "ha_wire: run %d stdout:\n%s\nstderr:\n%s\n", run, out ? out : "", err ? err : "");
        free(out);
        free(err);
}

static size_t lines_with(struct inv_world *w, int run, const char *const *needles) {
        char *err = harness_pd_output(w->pd, run, true);
        size_t n = err ? inv_count_lines(err, needles) : 0;
        free(err);
        return n;
}

static int run_pd(struct inv_world *w, const char *const *args) {
        int status = -1;
        assert_int_equal(harness_pd_run(w->pd, args, RUN_TIMEOUT_MS, &status), 0);
        if (status != 0)
                dump(w, w->pd->runs);
        return status;
}

static void counts(struct inv_world *w, size_t *ret_requests, size_t *ret_total, size_t *ret_posts) {
        struct inv_mail_tally t;
        char id[24];
        assert_int_equal(inv_mail_tally(w->smtp, 0, DOMAINS, N_CUST, &t), 0);
        *ret_requests = inv_mail_count(&t, CUST[C_PENDING].domain, "new-request");
        *ret_total = t.total;
        inv_mail_tally_done(&t);
        json_t *log = harness_fake_log(&w->fake);
        assert_non_null(log);
        *ret_posts = inv_process_posts(log, inv_order_id(id, SERIES, C_ACCEPTED, 0), 0);
        json_decref(log);
}

static bool state_file_exists(struct inv_world *w) {
        char path[1024];
        snprintf(path, sizeof(path), "%s/state.json", w->pd->state_dir);
        return access(path, F_OK) == 0;
}

/* `partnerd status --json` (from etcd in cluster mode). */
static json_t *status_json(struct inv_world *w) {
        const char *args[] = { "status", "--json", NULL };
        assert_int_equal(run_pd(w, args), 0);
        char *out = harness_pd_output(w->pd, w->pd->runs, false);
        json_t *j = json_loads(out ? out : "", 0, NULL);
        if (!j)
                dump(w, w->pd->runs);
        free(out);
        assert_non_null(j);
        return j;
}

static bool status_names(struct inv_world *w, const char *needle) {
        const char *args[] = { "status", NULL };
        assert_int_equal(run_pd(w, args), 0);
        char *out = harness_pd_output(w->pd, w->pd->runs, false);
        bool found = out && strstr(out, needle);
        if (!found)
                dump(w, w->pd->runs);
        free(out);
        return found;
}

/* etcd's own count of the requests it handled, per gRPC method (the JSON
 * gateway calls them), from its /metrics: a measurement, printed. */
static double etcd_handled(const char *method) {
        char url[128], needle[96];
        long status = 0;
        char *body = NULL;
        double sum = 0;
        snprintf(url, sizeof(url), "%s/metrics", etcd->endpoints[0]);
        snprintf(needle, sizeof(needle), "grpc_method=\"%s\"", method);
        if (harness_http_get(url, &status, &body) < 0 || status != 200) {
                free(body);
                return -1;
        }
        for (char *l = body; l && *l; ) {
                char *nl = strchr(l, '\n');
                if (nl)
                        *nl = '\0';
                if (strncmp(l, "grpc_server_handled_total{", 26) == 0 && strstr(l, needle)) {
                        const char *v = strrchr(l, ' ');
                        sum += v ? strtod(v + 1, NULL) : 0;
                }
                l = nl ? nl + 1 : NULL;
        }
        free(body);
        return sum;
}

static const char *const METHODS[] = { "Txn", "Range", "LeaseGrant", "LeaseKeepAlive", "LeaseRevoke" };
#define N_METHODS (sizeof(METHODS) / sizeof(METHODS[0]))

static void test_cycle_in_etcd(void **state) {
        NEED_ETCD();
        struct inv_world *w = world();
        char prefix[32];
        size_t requests, total, posts;

        add_cluster(w, prefix, sizeof(prefix));
        const char *once[] = { "--once", NULL };
        double before[N_METHODS];
        for (size_t i = 0; i < N_METHODS; i++)
                before[i] = etcd_handled(METHODS[i]);
        assert_int_equal(run_pd(w, once), 0);
        fprintf(stderr, "ha_wire: etcd requests of one --once run (take the lead, load, cycle, leave):");
        for (size_t i = 0; i < N_METHODS; i++)
                fprintf(stderr, " %s %.0f", METHODS[i], etcd_handled(METHODS[i]) - before[i]);
        fprintf(stderr, "\n");
        assert_int_equal(lines_with(w, 1, (const char *const[]) { "Cluster: active", "host-a", NULL }), 1);
        counts(w, &requests, &total, &posts);
        assert_int_equal(requests, 1);
        assert_int_equal(posts, 1);
        /* the state is etcd's, not a file's */
        assert_false(state_file_exists(w));
        json_t *st = status_json(w);
        json_t *cl = json_object_get(st, "cluster");
        assert_non_null(cl);
        assert_string_equal(json_string_value(json_object_get(cl, "role")), "standby");   /* --once left */
        char *text = json_dumps(st, 0);
        assert_non_null(strstr(text, CUST[C_PENDING].tenant_id));
        free(text);
        json_decref(st);

        /* the second run remembers, from etcd */
        assert_int_equal(run_pd(w, once), 0);
        counts(w, &requests, &total, &posts);
        assert_int_equal(requests, 1);
        assert_int_equal(posts, 1);
        assert_false(state_file_exists(w));
        world_free(w);
}

static bool wait_line(struct inv_world *w, int run, const char *const *needles, int timeout_ms,
                      struct harness_cluster_node *node) {
        for (int waited = 0; waited <= timeout_ms; waited += 100) {
                if (lines_with(w, run, needles) > 0)
                        return true;
                if (node && node->http)
                        harness_cluster_run(node, 1, 1, 100);
                else
                        usleep(100 * 1000);
        }
        return false;
}

static void test_standby_idle(void **state) {
        NEED_ETCD();
        struct inv_world *w = world();
        struct harness_cluster_node *node = &cur_node;
        char prefix[32];
        size_t requests, total, posts, n_active = 0;

        add_cluster(w, prefix, sizeof(prefix));
        /* another instance (host-z) leads first */
        assert_int_equal(harness_cluster_node_start(etcd, prefix, 6, node, 25), 0);
        for (int i = 0; i < 100 && harness_cluster_active(node, 1, &n_active) < 0; i++)
                harness_cluster_run(node, 1, 1, 100);
        assert_int_equal(n_active, 1);

        const char *none[] = { NULL };
        pid_t pid = cur_pid = harness_pd_spawn(w->pd, none);
        assert_true(pid > 0);
        int run = w->pd->runs;
        assert_true(wait_line(w, run, (const char *const[]) { "started", NULL }, 20000, node));
        /* several of its campaign intervals (lease_ttl/3 = 2 s) as a standby */
        harness_cluster_run(node, 1, 1, 5000);
        assert_true(status_names(w, "cluster: standby (leader: host-z)"));
        assert_int_equal(harness_fake_count(&w->fake, NULL, "/commerce/orders"), 0);
        assert_int_equal(harness_smtp_count(w->smtp), 0);
        assert_int_equal(lines_with(w, run, (const char *const[]) { "Cycle", NULL }), 0);

        /* host-z leaves: the daemon takes over and runs the cycle */
        harness_cluster_node_stop(node, false);
        if (!wait_line(w, run, (const char *const[]) { "Cycle done", NULL }, 30000, NULL)) {
                dump(w, run);
                fail_msg("the standby did not take over");
        }
        assert_int_equal(lines_with(w, run, (const char *const[]) { "Cluster: active", NULL }), 1);
        assert_true(status_names(w, "cluster: active"));
        counts(w, &requests, &total, &posts);
        assert_int_equal(requests, 1);
        assert_int_equal(posts, 1);

        /* [cluster] cannot change on reload: the running member stays */
        char *text = NULL;
        size_t len = 0;
        assert_int_equal(util_read_file(w->pd->config, 1 << 20, &text, &len), 0);
        char *p = strstr(text, "name = host-a");
        assert_non_null(p);
        p[strlen("name = host-")] = 'b';
        assert_int_equal(util_write_file_atomic(w->pd->config, text, len, 0600), 0);
        free(text);
        assert_int_equal(kill(pid, SIGHUP), 0);
        const char *const refused[] = { "Reload failed", "[cluster] cannot change", NULL };
        assert_true(wait_line(w, run, refused, 20000, NULL));
        assert_true(status_names(w, "cluster: standby (leader: host-a)"));   /* status reads the new name */
        assert_int_equal(harness_kill(pid, SIGTERM, 20000), 0);
        cur_pid = 0;
        assert_false(state_file_exists(w));
        world_free(w);
}

/* Keys under <prefix>outbox/ in etcd, read with lib/etcd on a loop of our own. */
struct count_done {
        bool called;
        int r;
        int64_t count;
};

static void on_count(void *ud, int r, const struct etcd_result *res) {
        struct count_done *d = ud;
        d->called = true;
        d->r = r;
        d->count = res ? res->count : -1;
}

static int64_t etcd_outbox_entries(const char *prefix) {
        uv_loop_t loop;
        struct http *h = NULL;
        struct etcd *e = NULL;
        struct count_done d = { 0 };
        char key[64];
        snprintf(key, sizeof(key), "%soutbox/", prefix);
        assert_int_equal(uv_loop_init(&loop), 0);
        assert_int_equal(http_new(&loop, NULL, &h), 0);
        const struct etcd_options o = { .endpoints = etcd->endpoints };
        assert_int_equal(etcd_new(h, &o, &e), 0);
        assert_int_equal(etcd_count(e, key, true, on_count, &d), 0);
        while (!d.called)
                uv_run(&loop, UV_RUN_ONCE);
        etcd_free(e);
        http_free(h);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        assert_int_equal(d.r, 0);
        return d.count;
}

/* Removes the *.msg files of the local outbox; how many there were. */
static size_t remove_local_outbox(struct inv_world *w) {
        char dir[1024];
        size_t n = 0;
        snprintf(dir, sizeof(dir), "%s/outbox", w->pd->state_dir);
        DIR *d = opendir(dir);
        assert_non_null(d);
        for (struct dirent *de; (de = readdir(d)); ) {
                size_t l = strlen(de->d_name);
                if (l > 4 && strcmp(de->d_name + l - 4, ".msg") == 0) {
                        char path[1400];
                        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
                        assert_int_equal(unlink(path), 0);
                        n++;
                }
        }
        closedir(d);
        return n;
}

static void test_outbox_takeover(void **state) {
        NEED_ETCD();
        struct inv_world *w = world();
        char prefix[32], marker[1024];
        size_t requests, total, posts;
        const char *stall = harness_smtp_stall_file(w->smtp);

        add_cluster(w, prefix, sizeof(prefix));
        snprintf(marker, sizeof(marker), "%s.inflight", stall);
        FILE *f = fopen(stall, "w");
        assert_non_null(f);
        fputs("15000\n", f);      /* every DATA is held 15 s */
        assert_int_equal(fclose(f), 0);

        const char *none[] = { NULL };
        pid_t pid = cur_pid = harness_pd_spawn(w->pd, none);
        assert_true(pid > 0);
        int run = w->pd->runs;
        for (int i = 0; i < 600 && access(marker, F_OK) != 0; i++)
                usleep(50 * 1000);
        if (access(marker, F_OK) != 0) {
                dump(w, run);
                fail_msg("the request mail never reached DATA");
        }
        /* queued and mirrored before it went out; killed in the middle */
        assert_int_equal(harness_kill(pid, SIGKILL, 5000), 128 + SIGKILL);
        cur_pid = 0;
        assert_int_equal(unlink(stall), 0);
        assert_int_equal(etcd_outbox_entries(prefix), 1);
        assert_true(remove_local_outbox(w) >= 1);   /* as if the next instance ran elsewhere */
        for (int i = 0; i < 400 && access(marker, F_OK) == 0; i++)
                usleep(50 * 1000);                       /* the held DATA ends */
        size_t before = harness_smtp_count(w->smtp);

        /* the next leader (after the dead one's lease expired) sends it */
        const char *once[] = { "--once", NULL };
        assert_int_equal(run_pd(w, once), 0);
        /* the request mail the dead leader had queued: from etcd's outbox */
        const char *const request_sent[] = { "Mail", "Action needed", CUST[C_PENDING].domain, "sent to", NULL };
        if (lines_with(w, w->pd->runs, request_sent) != 1)
                dump(w, w->pd->runs);
        assert_int_equal(lines_with(w, w->pd->runs, request_sent), 1);
        assert_true(harness_smtp_count(w->smtp) >= before + 1);   /* the held DATA may land late */
        assert_int_equal(etcd_outbox_entries(prefix), 0);
        counts(w, &requests, &total, &posts);
        assert_true(requests >= 1 && requests <= 2);   /* the held DATA may have been stored too */
        assert_int_equal(posts, 1);
        world_free(w);
}

static void test_stopped_leader(void **state) {
        NEED_ETCD();
        const char *fake_args[] = { "--latency-ms", "1200", NULL };
        struct inv_world *w = world_args(fake_args);
        struct harness_cluster_node *node = &cur_node;
        char prefix[32];
        size_t n_active = 0;

        add_cluster(w, prefix, sizeof(prefix));
        const char *none[] = { NULL };
        pid_t pid = cur_pid = harness_pd_spawn(w->pd, none);
        assert_true(pid > 0);
        int run = w->pd->runs;
        /* decided: the intent is saved next, then the order is read again
         * (1.2 s), then Process */
        const char *const decided[] = { "Accepted Wire Inc accepted the reseller relationship", NULL };
        if (!wait_line(w, run, decided, 60000, NULL)) {
                dump(w, run);
                fail_msg("the accepted customer was never decided");
        }
        assert_int_equal(kill(pid, SIGSTOP), 0);
        /* another instance wins once the stopped one's lease is gone */
        assert_int_equal(harness_cluster_node_start(etcd, prefix, 6, node, 25), 0);
        for (int i = 0; i < 200 && harness_cluster_active(node, 1, &n_active) < 0; i++)
                harness_cluster_run(node, 1, 1, 100);
        assert_int_equal(n_active, 1);
        assert_int_equal(kill(pid, SIGCONT), 0);
        harness_cluster_run(node, 1, 1, 6000);   /* the re-read answers, keepalives fail... */
        json_t *log = harness_fake_log(&w->fake);
        assert_non_null(log);
        size_t posts = inv_process_posts(log, NULL, 0);
        json_decref(log);
        if (posts != 0)
                dump(w, run);
        assert_int_equal(posts, 0);
        assert_true(status_names(w, "cluster: standby (leader: host-z)"));
        assert_int_equal(harness_kill(pid, SIGTERM, 20000), 0);
        cur_pid = 0;
        world_free(w);
}

/* dir/name: the shipped template name, then filler up to about 250 KB of
 * "é" (quoted-printable triples it): the mail is larger than etcd takes. */
static void write_big_template(const char *dir, const char *name) {
        char *src = NULL, *path = harness_src_path("config/templates"), file[1024];
        size_t len = 0;
        snprintf(file, sizeof(file), "%s/%s", path, name);
        assert_int_equal(util_read_file(file, 1 << 20, &src, &len), 0);
        size_t fill = 240 * 1024, n = len + fill;
        char *text = malloc(n + 1);
        assert_non_null(text);
        memcpy(text, src, len);
        for (size_t i = 0; i + 1 < fill; i += 2)
                memcpy(text + len + i, "\xc3\xa9", 2);
        snprintf(file, sizeof(file), "%s/%s", dir, name);
        assert_int_equal(util_write_file_atomic(file, text, n, 0644), 0);
        free(text);
        free(src);
        free(path);
}

/* One mail too large for etcd (an override template): in cluster mode
 * every queued mail is mirrored in one etcd transaction, so it is refused
 * at the outbox with an error naming the customer, and the cycle goes on:
 * the accepted customer is processed and told, the state is saved.  (If
 * it were queued, every save would fail and nothing would be processed.) */
static void test_oversize_mail(void **state) {
        NEED_ETCD();
        char *tdir = harness_tmpdir(), *mail_extra = NULL, prefix[32], path[1024];
        assert_non_null(tdir);
        write_big_template(tdir, "new-request.txt");
        write_big_template(tdir, "new-request.html");
        assert_true(asprintf(&mail_extra, "templates = %s\n", tdir) > 0);
        struct inv_world *w = world_opts(NULL, &(struct harness_pd_options) {
                .poll_interval = "1h", .builtin_templates = true, .mail_extra = mail_extra });
        free(mail_extra);
        size_t requests, total, posts;
        add_cluster(w, prefix, sizeof(prefix));
        assert_int_equal(run_pd(w, (const char *const[]) { "--check-config", NULL }), 0);
        int st = run_pd(w, (const char *const[]) { "--once", NULL });
        assert_int_equal(st, 1);   /* the cycle reports the mail it could not queue */
        int run = w->pd->runs;
        assert_int_equal(lines_with(w, run, (const char *const[]) { "Cannot queue new-request mail",
                                                                    "larger than one etcd transaction", NULL }), 1);
        assert_int_equal(lines_with(w, run, (const char *const[]) { "Cannot save state", NULL }), 0);
        counts(w, &requests, &total, &posts);
        assert_int_equal(requests, 0);
        assert_int_equal(posts, 1);
        assert_int_equal(total, 1);   /* the accepted customer's confirmation */
        json_t *j = status_json(w);
        char *text = json_dumps(j, 0);
        assert_non_null(strstr(text, CUST[C_ACCEPTED].tenant_id));
        free(text);
        json_decref(j);
        world_free(w);
        const char *names[] = { "new-request.txt", "new-request.html" };
        for (int i = 0; i < 2; i++) {
                snprintf(path, sizeof(path), "%s/%s", tdir, names[i]);
                (void) unlink(path);
        }
        (void) rmdir(tdir);
        free(tdir);
}

static void test_migrate(void **state) {
        NEED_ETCD();
        struct inv_world *w = world();
        char prefix[32];
        size_t requests, total, posts, total_before;

        /* single host first */
        const char *once[] = { "--once", NULL };
        assert_int_equal(run_pd(w, once), 0);
        counts(w, &requests, &total_before, &posts);
        assert_int_equal(requests, 1);
        assert_int_equal(posts, 1);
        assert_true(state_file_exists(w));

        /* without [cluster] there is nothing to migrate to */
        const char *migrate[] = { "cluster", "migrate", NULL };
        assert_int_equal(run_pd(w, migrate), 78);

        add_cluster(w, prefix, sizeof(prefix));
        assert_int_equal(run_pd(w, migrate), 0);
        char *out = harness_pd_output(w->pd, w->pd->runs, false);
        assert_non_null(out);
        assert_non_null(strstr(out, "migrated 2 customers to"));
        free(out);
        /* once only */
        assert_int_equal(run_pd(w, migrate), 1);
        assert_int_equal(lines_with(w, w->pd->runs, (const char *const[]) { "not empty", NULL }), 1);
        assert_true(status_names(w, CUST[C_PENDING].tenant_id));

        /* the cluster run: the state came along, nobody is mailed again */
        assert_int_equal(run_pd(w, once), 0);
        counts(w, &requests, &total, &posts);
        assert_int_equal(requests, 1);
        assert_int_equal(total, total_before);
        assert_int_equal(posts, 1);
        world_free(w);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_teardown(test_cycle_in_etcd, per_test_end),
                cmocka_unit_test_teardown(test_standby_idle, per_test_end),
                cmocka_unit_test_teardown(test_outbox_takeover, per_test_end),
                cmocka_unit_test_teardown(test_stopped_leader, per_test_end),
                cmocka_unit_test_teardown(test_migrate, per_test_end),
                cmocka_unit_test_teardown(test_oversize_mail, per_test_end),
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
