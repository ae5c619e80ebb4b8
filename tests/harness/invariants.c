/* SPDX-License-Identifier: MIT */
#include "invariants.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "pdrun.h"
#include "smtp.h"
#include "store.h"
#include "util.h"

/* ---- scenarios ---- */

const char *inv_order_id(char *buf, int series, size_t i, int k) {
        snprintf(buf, 24, "ORD-%04d-%04zu-%04d", series % 10000, (i + 1) % 10000, (k + 1) % 10000);
        return buf;
}

/* Sets the value of the parameter with this externalId in both lists. */
static void set_param(json_t *order, const char *external_id, json_t *value) {
        static const char *const lists[] = { "ordering", "fulfillment" };
        json_t *params = json_object_get(order, "parameters");
        for (size_t l = 0; l < 2; l++) {
                size_t i;
                json_t *p;
                json_array_foreach(json_object_get(params, lists[l]), i, p) {
                        const char *x = json_string_value(json_object_get(p, "externalId"));
                        if (x && strcmp(x, external_id) == 0) {
                                json_object_set(p, "value", value);
                                json_decref(value);
                                return;
                        }
                }
        }
        json_decref(value);
}

static json_t *make_order(json_t *proto, const struct inv_customer *c, const char *id, bool draft) {
        const char *status = draft ? "Draft" : c->status ? c->status : "Querying";
        json_t *o = json_deep_copy(proto);
        char buf[160];
        if (!o)
                return NULL;
        json_object_set_new(o, "id", json_string(id));
        json_object_set_new(o, "status", json_string(status));
        snprintf(buf, sizeof(buf), "Microsoft Azure for %s", c->name);
        json_t *agr = json_object_get(o, "agreement");
        json_object_set_new(agr, "name", json_string(buf));
        json_object_set_new(json_object_get(o, "client"), "name", json_string(c->name));
        json_object_set_new(json_object_get(o, "buyer"), "name", json_string(c->name));
        set_param(o, "ExistingDomainName", json_string(c->domain));
        set_param(o, "CustomerCompanyName", json_string(c->name));
        set_param(o, "MicrosoftTenantId",
                  json_string(c->order_without_tenant || !c->tenant_id ? "" : c->tenant_id));
        set_param(o, "ResellerRelationshipUrl", json_string(c->url ? c->url : INV_URL));
        if (draft)
                json_object_set_new(o, "template",
                                    json_pack("{s:s, s:s}", "id", "TPL-1528-2110-0002", "name", "Purchase draft"));
        json_t *audit = json_object_get(o, "audit");
        if (strcmp(status, "Querying") != 0)
                json_object_del(audit, "querying");
        if (draft)
                json_object_del(audit, "processing");
        return o;
}

json_t *inv_scenario_new(const struct inv_customer *cust, size_t n, int series) {
        char *path = harness_src_path("tests/scenarios/basic.json");
        json_t *sc = path ? json_load_file(path, 0, NULL) : NULL, *proto = NULL;
        json_t *tenants = json_array(), *orders = json_array();
        char id[24];

        free(path);
        if (!sc || !tenants || !orders)
                goto fail;
        proto = json_incref(json_array_get(json_object_get(sc, "orders"), 0));
        if (!json_is_object(proto))
                goto fail;
        for (size_t i = 0; i < n; i++) {
                const struct inv_customer *c = &cust[i];
                json_t *t = json_pack("{s:s, s:s, s:s, s:s}", "id", c->tenant_id ? c->tenant_id : "",
                                      "domain", c->domain, "name", c->name, "state",
                                      c->accepted ? "accepted" : "pending");
                if (!t)
                        goto fail;
                if (c->accept_after_checks > 0)
                        json_object_set_new(t, "accept_after_checks", json_integer(c->accept_after_checks));
                if (c->tenant_id)
                        json_array_append_new(tenants, t);
                else
                        json_decref(t);
                for (int k = 0; k < c->n_querying + c->n_draft; k++) {
                        json_t *o = make_order(proto, c, inv_order_id(id, series, i, k), k >= c->n_querying);
                        if (!o)
                                goto fail;
                        json_array_append_new(orders, o);
                }
        }
        json_object_set_new(sc, "tenants", tenants);
        json_object_set_new(sc, "orders", orders);
        json_decref(proto);
        return sc;
fail:
        json_decref(proto);
        json_decref(tenants);
        json_decref(orders);
        json_decref(sc);
        return NULL;
}

char *inv_scenario_write(json_t *sc, const char *dir, const char *name) {
        char *path = NULL;
        if (asprintf(&path, "%s/%s", dir, name) < 0)
                return NULL;
        if (json_dump_file(sc, path, JSON_INDENT(1)) < 0) {
                free(path);
                return NULL;
        }
        return path;
}

/* The fake, the SMTP server and partnerd's config on w->scenario. */
static int world_open(struct inv_world *w, const char *const *fake_args,
                      const struct harness_smtp_options *smtp_opts, const struct harness_pd_options *pdo) {
        struct harness_pd_options o = *pdo;
        int r;

        if ((r = harness_fake_start_args(w->scenario, fake_args, &w->fake)) < 0)
                return r;
        if (smtp_opts) {
                if ((r = harness_smtp_start(smtp_opts, &w->smtp)) < 0)
                        return r;
                o.smtp_url = harness_smtp_url(w->smtp);
        }
        o.fake_base = w->fake.base_url;
        o.scenario = w->scenario;
        return harness_pd_setup(&o, &w->pd);
}

int inv_world_start(struct inv_world *w, json_t *sc, const char *const *fake_args,
                    const struct harness_smtp_options *smtp_opts, const struct harness_pd_options *pdo) {
        *w = (struct inv_world) { 0 };
        if (!(w->dir = harness_tmpdir()) ||
            !(w->scenario = inv_scenario_write(sc, w->dir, "scenario.json")))
                return -ENOMEM;
        return world_open(w, fake_args, smtp_opts, pdo);
}

int inv_world_start_file(struct inv_world *w, const char *rel, const char *const *fake_args,
                         const struct harness_smtp_options *smtp_opts, const struct harness_pd_options *pdo) {
        *w = (struct inv_world) { 0 };
        if (!(w->scenario = harness_src_path(rel)))
                return -ENOMEM;
        return world_open(w, fake_args, smtp_opts, pdo);
}

struct inv_world *inv_world_new(json_t *sc, const char *rel, const struct harness_smtp_options *smtp_opts,
                                const struct harness_pd_options *pdo) {
        static const struct harness_smtp_options defaults = { 0 };
        struct inv_world *w = calloc(1, sizeof(*w));
        if (!w)
                return NULL;
        int r = sc ? inv_world_start(w, sc, NULL, smtp_opts ? smtp_opts : &defaults, pdo)
                   : inv_world_start_file(w, rel, NULL, smtp_opts ? smtp_opts : &defaults, pdo);
        if (r < 0) {
                inv_world_free(w);
                return NULL;
        }
        return w;
}

void inv_world_free(struct inv_world *w) {
        if (!w)
                return;
        inv_world_stop(w);
        free(w);
}

void inv_world_stop(struct inv_world *w) {
        harness_pd_free(w->pd);
        harness_smtp_stop(w->smtp);
        if (w->fake.pid > 0)
                (void) harness_fake_stop(&w->fake);
        if (w->dir && !getenv("HARNESS_KEEP"))
                harness_rmrf(w->dir);
        free(w->dir);
        free(w->scenario);
        *w = (struct inv_world) { 0 };
}

int inv_fake_set_status(struct harness_fake *fake, const char *order_id, const char *status) {
        char path[160], url[256];
        long code = 0;
        snprintf(path, sizeof(path), "/_fake/orders/%s/status/%s", order_id, status);
        int r = harness_http_post(harness_fake_url(fake, path, url, sizeof(url)), NULL, &code, NULL);
        if (r < 0)
                return r;
        return code == 200 ? 0 : -EIO;
}

int inv_fake_revision(struct harness_fake *fake, const char *order_id) {
        char url[256], *body = NULL;
        long code = 0;
        int r = harness_http_get(harness_fake_url(fake, "/_fake/orders", url, sizeof(url)), &code, &body);
        json_t *arr = r >= 0 && code == 200 && body ? json_loads(body, 0, NULL) : NULL, *o;
        size_t i;
        free(body);
        r = -ENOENT;
        json_array_foreach(arr, i, o) {
                const char *id = json_string_value(json_object_get(o, "id"));
                if (id && strcmp(id, order_id) == 0 && json_is_integer(json_object_get(o, "revision")))
                        r = (int) json_integer_value(json_object_get(o, "revision"));
        }
        json_decref(arr);
        return r;
}

/* ---- the fake's log ---- */

size_t inv_log_count(json_t *log, const char *method, const char *path_sub, long status) {
        size_t i, n = 0;
        json_t *e;
        json_array_foreach(log, i, e) {
                const char *m = json_string_value(json_object_get(e, "method"));
                const char *p = json_string_value(json_object_get(e, "path"));
                long st = (long) json_integer_value(json_object_get(e, "status"));
                if ((!method || (m && strcmp(m, method) == 0)) && (!path_sub || (p && strstr(p, path_sub))) &&
                    (status == 0 || st == status))
                        n++;
        }
        return n;
}

size_t inv_process_posts(json_t *log, const char *order_id, long status) {
        char sub[96];
        if (order_id)
                snprintf(sub, sizeof(sub), "/orders/%s/process", order_id);
        else
                snprintf(sub, sizeof(sub), "/process");
        return inv_log_count(log, "POST", sub, status);
}

/* ---- mails ---- */

const char *inv_mail_kind(const char *subject) {
        static const struct {
                const char *prefix, *kind;
        } kinds[] = {
                { "Action needed", "new-request" },
                { "Reminder", "reminder" },
                { "Final notice", "final-warning" },
                { "Relationship accepted", "confirmation" },
                { "Please accept", "draft-warning" },
                { "[partnerd]", "ops-notice" },
        };
        if (!subject)
                return "unknown";
        for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
                if (strncmp(subject, kinds[i].prefix, strlen(kinds[i].prefix)) == 0)
                        return kinds[i].kind;
        return "unknown";
}

/* needle in hay as a whole name: not preceded or followed by a character
 * that could continue a domain name. */
static bool has_name(const char *hay, const char *needle) {
        size_t n = strlen(needle);
        for (const char *p = hay; p && (p = strcasestr(p, needle)); p++) {
                bool left = p == hay || !(isalnum((unsigned char) p[-1]) || p[-1] == '-' || p[-1] == '.');
                bool right = !(isalnum((unsigned char) p[n]) || p[n] == '-');
                if (left && right)
                        return true;
        }
        return false;
}

static const char *mail_customer(json_t *m, const char *const *domains, size_t n) {
        const char *subject = json_string_value(json_object_get(m, "subject"));
        const char *text = json_string_value(json_object_get(m, "text"));
        for (size_t i = 0; i < n; i++)
                if (subject && has_name(subject, domains[i]))
                        return domains[i];
        for (size_t i = 0; i < n; i++)
                if (text && has_name(text, domains[i]))
                        return domains[i];
        return "?";
}

int inv_mail_tally(struct harness_smtp *smtp, size_t from, const char *const *domains, size_t n_domains,
                   struct inv_mail_tally *ret) {
        size_t count = harness_smtp_count(smtp);
        *ret = (struct inv_mail_tally) { .counts = json_object() };
        if (!ret->counts)
                return -ENOMEM;
        for (size_t i = from; i < count; i++) {
                json_t *m = harness_smtp_parse(smtp, i);
                char key[256];
                ret->total++;
                if (!m) {
                        ret->unparsed++;
                        continue;
                }
                snprintf(key, sizeof(key), "%s|%s", mail_customer(m, domains, n_domains),
                         inv_mail_kind(json_string_value(json_object_get(m, "subject"))));
                json_int_t v = json_integer_value(json_object_get(ret->counts, key));
                json_object_set_new(ret->counts, key, json_integer(v + 1));
                json_decref(m);
        }
        return 0;
}

void inv_mail_tally_done(struct inv_mail_tally *t) {
        json_decref(t->counts);
        t->counts = NULL;
}

size_t inv_mail_count(const struct inv_mail_tally *t, const char *domain, const char *kind) {
        char key[256];
        snprintf(key, sizeof(key), "%s|%s", domain, kind);
        return (size_t) json_integer_value(json_object_get(t->counts, key));
}

size_t inv_mail_duplicates(const struct inv_mail_tally *t) {
        const char *k;
        json_t *v;
        size_t dup = 0;
        json_object_foreach(t->counts, k, v)
                if (json_integer_value(v) > 1)
                        dup += (size_t) json_integer_value(v) - 1;
        return dup;
}

/* ---- state ---- */

int inv_state_loadable(const char *state_dir, char **ret_err) {
        char *path = NULL, *text = NULL, *err = NULL;
        size_t len = 0;
        struct state *s = NULL;
        int r;

        *ret_err = NULL;
        if (asprintf(&path, "%s/state.json", state_dir) < 0)
                return -ENOMEM;
        r = util_read_file(path, 64u << 20, &text, &len);
        if (r == -ENOENT) {
                r = 0;
                goto out;
        }
        if (r < 0) {
                if (asprintf(ret_err, "cannot read %s: %s", path, strerror(-r)) < 0)
                        *ret_err = NULL;
                goto out;
        }
        r = store_from_json(text, len, &s, &err);
        if (r < 0 && asprintf(ret_err, "%s: %s", path, err ? err : strerror(-r)) < 0)
                *ret_err = NULL;
out:
        state_free(s);
        free(err);
        free(text);
        free(path);
        return r;
}

static bool has_suffix(const char *s, const char *suffix) {
        size_t n = strlen(s), k = strlen(suffix);
        return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Entries of dir for which match() holds; negative errno if dir cannot be
 * read (ENOENT counts as empty). */
static int count_entries(const char *dir, bool (*match)(const char *name)) {
        DIR *d = opendir(dir);
        struct dirent *de;
        int n = 0;
        if (!d)
                return errno == ENOENT ? 0 : -errno;
        while ((de = readdir(d)))
                if (match(de->d_name))
                        n++;
        closedir(d);
        return n;
}

static bool is_msg(const char *name) {
        return has_suffix(name, ".msg");
}

static bool is_temp(const char *name) {
        return strstr(name, ".tmp.") != NULL;
}

int inv_outbox_pending(const char *state_dir) {
        char path[1024];
        snprintf(path, sizeof(path), "%s/outbox", state_dir);
        return count_entries(path, is_msg);
}

size_t inv_temp_files(const char *state_dir) {
        char path[1024];
        int a = count_entries(state_dir, is_temp);
        snprintf(path, sizeof(path), "%s/outbox", state_dir);
        int b = count_entries(path, is_temp);
        return (size_t) (a > 0 ? a : 0) + (size_t) (b > 0 ? b : 0);
}

/* ---- processes ---- */

int inv_wait_rusage(pid_t pid, int timeout_ms, int *ret_status, long *ret_maxrss_kb) {
        uint64_t end = util_now_mono_ms() + (uint64_t) (timeout_ms > 0 ? timeout_ms : 0);
        struct rusage ru;
        int st;

        for (;;) {
                pid_t r = wait4(pid, &st, WNOHANG, &ru);
                if (r == pid) {
                        if (ret_status)
                                *ret_status = WIFEXITED(st) ? WEXITSTATUS(st)
                                                            : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : -1;
                        if (ret_maxrss_kb)
                                *ret_maxrss_kb = ru.ru_maxrss;
                        return 0;
                }
                if (r < 0)
                        return -errno;
                if (util_now_mono_ms() >= end)
                        return -ETIMEDOUT;
                struct timespec ts = { .tv_nsec = 2 * 1000 * 1000 };
                nanosleep(&ts, NULL);
        }
}

size_t inv_pd_sanitizer_reports(const struct harness_pd *pd, int *ret_first) {
        static const char *const marks[] = {
                "ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                "Invalid read", "Invalid write", "definitely lost", "uninitialised value",
        };
        size_t n = 0;
        if (ret_first)
                *ret_first = 0;
        for (int run = 1; run <= pd->runs; run++) {
                char *err = harness_pd_output(pd, run, true);
                bool hit = false;
                for (size_t i = 0; err && i < sizeof(marks) / sizeof(marks[0]) && !hit; i++)
                        hit = strstr(err, marks[i]) != NULL;
                free(err);
                if (hit && n++ == 0 && ret_first)
                        *ret_first = run;
        }
        return n;
}

uint64_t inv_rand(uint64_t *state) {
        uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

unsigned long inv_env_ulong(const char *name, unsigned long def) {
        const char *v = getenv(name);
        char *end = NULL;
        if (!v || !*v)
                return def;
        errno = 0;
        unsigned long x = strtoul(v, &end, 0);
        if (errno || !end || *end)
                return def;
        return x;
}

bool inv_slow_mode(void) {
        const char *w = getenv("PARTNERD_WRAPPER"), *v = getenv("VALGRIND");
        return (w && *w) || (v && *v && strcmp(v, "0") != 0);
}

size_t inv_count_lines(const char *text, const char *const *needles) {
        size_t n = 0;
        if (!text)
                return 0;
        for (const char *p = text; *p;) {
                const char *nl = strchr(p, '\n');
                size_t len = nl ? (size_t) (nl - p) : strlen(p);
                bool all = true;
                for (size_t i = 0; needles[i] && all; i++) {
                        size_t nn = strlen(needles[i]);
                        bool found = false;
                        for (size_t k = 0; k + nn <= len && !found; k++)
                                found = memcmp(p + k, needles[i], nn) == 0;
                        all = found;
                }
                if (all)
                        n++;
                p += len;
                if (*p == '\n')
                        p++;
        }
        return n;
}

bool inv_find_log_line(const char *text, int max_prio, const char *const *needles, char *out, size_t n) {
        for (const char *p = text; p && *p;) {
                const char *nl = strchr(p, '\n');
                size_t len = nl ? (size_t) (nl - p) : strlen(p);
                char line[2048];
                snprintf(line, sizeof(line), "%.*s", (int) len, p);
                bool ok = line[0] == '<' && line[1] >= '0' && line[1] <= '0' + max_prio && line[2] == '>';
                for (size_t i = 0; ok && needles[i]; i++)
                        ok = strcasestr(line, needles[i]) != NULL;
                if (ok) {
                        if (out && n)
                                snprintf(out, n, "%s", line);
                        return true;
                }
                p = nl ? nl + 1 : NULL;
        }
        return false;
}
