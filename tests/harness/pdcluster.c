/* SPDX-License-Identifier: MIT */
#include "pdcluster.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "smtp.h"
#include "util.h"

static int notify_open(struct harness_pdc_daemon *d) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        d->notify_dir = harness_tmpdir();
        if (!d->notify_dir)
                return -ENOMEM;
        if ((size_t) snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/notify", d->notify_dir) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        snprintf(d->notify_env, sizeof(d->notify_env), "NOTIFY_SOCKET=%s", sa.sun_path);
        d->notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (d->notify_fd < 0)
                return -errno;
        return bind(d->notify_fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 ? -errno : 0;
}

/* Every datagram queued: the last STATUS= line wins. */
static void notify_drain(struct harness_pdc_daemon *d) {
        char buf[4096];
        for (;;) {
                ssize_t n = recv(d->notify_fd, buf, sizeof(buf) - 1, 0);
                if (n <= 0)
                        return;
                buf[n] = '\0';
                for (char *save = NULL, *l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
                        if (strncmp(l, "STATUS=", 7) == 0)
                                snprintf(d->status, sizeof(d->status), "%s", l + 7);
        }
}

int harness_pdc_setup(struct harness_pdc *c, size_t n, size_t n_etcd, json_t *sc, const char *const *fake_args,
                      const struct harness_pd_options *pdo, int lease_ttl) {
        struct harness_pd_options o = pdo ? *pdo : (struct harness_pd_options) { 0 };
        char *cluster = NULL;
        int r;

        *c = (struct harness_pdc) { .n = n, .lease_ttl = lease_ttl };
        for (size_t i = 0; i < HARNESS_PDC_MAX; i++)
                c->d[i] = (struct harness_pdc_daemon) { .notify_fd = -1, .exit_status = -1 };
        if (n == 0 || n > HARNESS_PDC_MAX)
                return -EINVAL;
        r = harness_etcd_start(n_etcd, &c->etcd);
        if (r < 0)
                return r;
        snprintf(c->prefix, sizeof(c->prefix), "/pdc%d/", (int) getpid());
        char urls[HARNESS_ETCD_MAX * 72] = "";
        for (size_t k = 0; k < n_etcd; k++) {
                size_t len = strlen(urls);
                snprintf(urls + len, sizeof(urls) - len, "%s%s", k ? ", " : "", c->etcd->m[k].url);
        }
        for (size_t i = 0; i < n; i++) {
                struct harness_pdc_daemon *d = &c->d[i];
                snprintf(d->name, sizeof(d->name), "host-%c", (char) ('a' + i));
                free(cluster);
                if (asprintf(&cluster, "etcd = %s\nprefix = %s\nlease_ttl = %ds\nname = %s\n", urls, c->prefix,
                             lease_ttl, d->name) < 0)
                        return -ENOMEM;
                o.cluster = cluster;
                if (i == 0)
                        r = inv_world_start(&c->w, sc, fake_args, &(struct harness_smtp_options) { 0 }, &o);
                else {
                        o.fake_base = c->w.fake.base_url;
                        o.smtp_url = harness_smtp_url(c->w.smtp);
                        o.scenario = c->w.scenario;
                        r = harness_pd_setup(&o, &d->pd);
                }
                if (r < 0)
                        break;
                if (i == 0)
                        d->pd = c->w.pd;
                if ((r = notify_open(d)) < 0)
                        break;
        }
        free(cluster);
        return r;
}

void harness_pdc_teardown(struct harness_pdc *c) {
        for (size_t i = 0; i < HARNESS_PDC_MAX; i++) {
                struct harness_pdc_daemon *d = &c->d[i];
                if (d->pid > 0) {
                        if (d->stopped)
                                (void) kill(d->pid, SIGCONT);
                        (void) harness_kill(d->pid, SIGKILL, 5000);
                        d->pid = 0;
                }
                if (d->notify_fd >= 0)
                        close(d->notify_fd);
                d->notify_fd = -1;
                harness_rmrf(d->notify_dir);
                free(d->notify_dir);
                d->notify_dir = NULL;
                if (i > 0)
                        harness_pd_free(d->pd);
                d->pd = NULL;
        }
        inv_world_stop(&c->w);
        harness_etcd_free(c->etcd);
        c->etcd = NULL;
}

int harness_pdc_spawn(struct harness_pdc *c, size_t i) {
        struct harness_pdc_daemon *d = &c->d[i];
        if (i >= c->n || d->pid > 0)
                return -EINVAL;
        notify_drain(d);
        d->status[0] = '\0';
        const char *args[] = { NULL };
        const char *env[] = { d->notify_env, NULL };
        pid_t pid = harness_pd_spawn_env(d->pd, args, env);
        if (pid < 0)
                return (int) pid;
        d->pid = pid;
        d->stopped = false;
        d->run = d->pd->runs;
        return 0;
}

int harness_pdc_signal(struct harness_pdc *c, size_t i, int sig) {
        struct harness_pdc_daemon *d = &c->d[i];
        if (i >= c->n || d->pid <= 0)
                return -ESRCH;
        if (sig == SIGKILL) {
                int r = harness_kill(d->pid, SIGKILL, 10000);
                d->pid = 0;
                d->stopped = false;
                d->exit_status = r;
                return r < 0 ? r : 0;
        }
        if (kill(d->pid, sig) < 0)
                return -errno;
        if (sig == SIGSTOP)
                d->stopped = true;
        else if (sig == SIGCONT)
                d->stopped = false;
        return 0;
}

size_t harness_pdc_poll(struct harness_pdc *c, int ms) {
        uint64_t end = util_now_mono_ms() + (uint64_t) (ms > 0 ? ms : 0);
        do {
                struct pollfd p[HARNESS_PDC_MAX];
                for (size_t i = 0; i < c->n; i++)
                        p[i] = (struct pollfd) { .fd = c->d[i].notify_fd, .events = POLLIN };
                uint64_t now = util_now_mono_ms();
                int slice = now < end ? (int) (end - now) : 0;
                (void) poll(p, c->n, slice > 50 ? 50 : slice);
                for (size_t i = 0; i < c->n; i++) {
                        struct harness_pdc_daemon *d = &c->d[i];
                        int st;
                        notify_drain(d);
                        if (d->pid > 0 && waitpid(d->pid, &st, WNOHANG) == d->pid) {
                                d->exit_status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
                                d->pid = 0;
                                d->status[0] = '\0';
                                c->ended++;
                        }
                }
        } while (util_now_mono_ms() < end);
        return c->ended;
}

int harness_pdc_role(const struct harness_pdc *c, size_t i) {
        const char *s = c->d[i].status;
        if (strncmp(s, "active", 6) == 0)
                return 1;
        if (strncmp(s, "standby", 7) == 0)
                return 0;
        return -1;
}

/* The daemons of mask that can answer: running and not stopped. */
static bool counted(const struct harness_pdc *c, unsigned mask, size_t i) {
        return (mask >> i & 1) && c->d[i].pid > 0 && !c->d[i].stopped;
}

int harness_pdc_wait_one_active(struct harness_pdc *c, unsigned mask, int timeout_ms) {
        uint64_t end = util_now_mono_ms() + (uint64_t) timeout_ms;
        do {
                harness_pdc_poll(c, 20);
                int active = -1;
                size_t n_active = 0, n_standby = 0, n = 0;
                for (size_t i = 0; i < c->n; i++) {
                        if (!counted(c, mask, i))
                                continue;
                        n++;
                        int role = harness_pdc_role(c, i);
                        if (role == 1) {
                                active = (int) i;
                                n_active++;
                        } else if (role == 0)
                                n_standby++;
                }
                if (n_active > 1)
                        return -EEXIST;
                if (n_active == 1 && n_standby + 1 == n)
                        return active;
        } while (util_now_mono_ms() < end);
        return -ETIMEDOUT;
}

int harness_pdc_wait_none_active(struct harness_pdc *c, unsigned mask, int timeout_ms) {
        uint64_t end = util_now_mono_ms() + (uint64_t) timeout_ms;
        do {
                harness_pdc_poll(c, 20);
                bool any = false;
                for (size_t i = 0; i < c->n; i++)
                        any = any || (counted(c, mask, i) && harness_pdc_role(c, i) != 0);
                if (!any)
                        return 0;
        } while (util_now_mono_ms() < end);
        return -ETIMEDOUT;
}

int harness_pdc_status_line(struct harness_pdc *c, size_t i, char **ret_line) {
        struct harness_pdc_daemon *d = &c->d[i];
        const char *args[] = { "status", NULL };
        int status = -1;
        *ret_line = NULL;
        int r = harness_pd_run(d->pd, args, 30000, &status);
        if (r < 0)
                return r;
        char *out = harness_pd_output(d->pd, d->pd->runs, false);
        if (out)
                out[strcspn(out, "\n")] = '\0';
        *ret_line = out;
        return status;
}

char *harness_pdc_stderr(const struct harness_pdc *c, size_t i) {
        const struct harness_pdc_daemon *d = &c->d[i];
        return d->run > 0 ? harness_pd_output(d->pd, d->run, true) : NULL;
}

size_t harness_pdc_count_lines(const struct harness_pdc *c, size_t i, const char *const *needles) {
        char *err = harness_pdc_stderr(c, i);
        size_t n = err ? inv_count_lines(err, needles) : 0;
        free(err);
        return n;
}

size_t harness_pdc_cycles(const struct harness_pdc *c, size_t i) {
        const char *const needles[] = { "Cycle ", " ms: ", " orders, ", NULL };
        return harness_pdc_count_lines(c, i, needles);
}

/* POST /v3/kv/range for the keys under prefix+sub on the first member
 * that answers; the parsed answer. */
static json_t *pdc_range(struct harness_pdc *c, const char *sub, bool count_only) {
        char key[128], end[128];
        snprintf(key, sizeof(key), "%s%s", c->prefix, sub);
        snprintf(end, sizeof(end), "%s", key);
        end[strlen(end) - 1]++;       /* "a/" -> "a0": every key with the prefix */
        struct util_buf b;
        util_buf_init(&b, 4096);
        (void) util_buf_puts(&b, "{\"key\":\"");
        (void) util_buf_append_base64(&b, key, strlen(key));
        (void) util_buf_puts(&b, "\",\"range_end\":\"");
        (void) util_buf_append_base64(&b, end, strlen(end));
        int r = util_buf_printf(&b, "\"%s}", count_only ? ",\"count_only\":true" : "");
        json_t *res = NULL;
        for (size_t m = 0; r >= 0 && m < c->etcd->n && !res; m++) {
                char url[128], *body = NULL;
                long status = 0;
                if (c->etcd->m[m].pid <= 0)
                        continue;
                snprintf(url, sizeof(url), "%s/v3/kv/range", c->etcd->m[m].url);
                if (harness_http_post(url, b.data, &status, &body) == 0 && status == 200)
                        res = json_loads(body, 0, NULL);
                free(body);
        }
        util_buf_free(&b);
        return res;
}

json_t *harness_pdc_etcd_outbox_ids(struct harness_pdc *c) {
        json_t *res = pdc_range(c, "outbox/", false), *ids, *kv;
        size_t i;
        if (!res)
                return NULL;
        ids = json_array();
        json_array_foreach(json_object_get(res, "kvs"), i, kv) {
                const char *v = json_string_value(json_object_get(kv, "value"));
                char *msg = NULL;
                size_t len = 0;
                if (!v || util_base64_decode(v, strlen(v), &msg, &len) < 0)
                        continue;
                json_t *env = json_loadb(msg, strcspn(msg, "\n"), 0, NULL);
                const char *id = json_string_value(json_object_get(env, "message_id"));
                if (id)
                        json_array_append_new(ids, json_string(id));
                json_decref(env);
                free(msg);
        }
        json_decref(res);
        return ids;
}

int harness_pdc_etcd_count(struct harness_pdc *c, const char *sub) {
        json_t *res = pdc_range(c, sub, true);
        if (!res)
                return -EIO;
        const char *s = json_string_value(json_object_get(res, "count"));
        int n = s ? atoi(s) : 0;
        json_decref(res);
        return n;
}
