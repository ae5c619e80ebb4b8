/* SPDX-License-Identifier: MIT */
/* The one-shot commands: --check-config, status, templates, --send-test-mail. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <uv.h>

#include "config.h"
#include "daemon.h"
#include "http.h"
#include "log.h"
#include "mail.h"
#include "status.h"
#include "store.h"
#include "util.h"

/* One configuration error: a log event for the daemon and for the journal,
 * a plain line for a person running a command. */
static void config_error(bool event, const char *path, const char *msg) {
        if (event)
                log_event(LOG_ERR, LOG_EV_NONE, LOG_FIELDS({ "CONFIG_FILE", path }), "%s", msg);
        else
                fprintf(stderr, "%s\n", msg);
}

int load_config(const char *path, unsigned flags, struct cfg **ret_cfg,
                struct mail_templates **ret_templates, bool quiet_ok) {
        bool events = (flags & LOAD_CONFIG_EVENTS) || log_to_journal();
        struct cfg_errors errors = { 0 };
        struct cfg *cfg = NULL;
        struct mail_templates *t = NULL;
        char *override = NULL;
        int r;

        r = cfg_load(path, flags & ~LOAD_CONFIG_EVENTS, &cfg, &errors);
        if (r >= 0) {
                for (size_t i = 0; i < cfg->n_warnings; i++)
                        log_warning("%s", cfg->warnings[i]);
                override = cfg_template_dir(cfg);
                if (!override)
                        r = -ENOMEM;
                else
                        r = mail_templates_load(override, NULL, &t, &errors);
        }
        if (r < 0 || errors.n > 0) {
                char *msg = NULL;
                for (size_t i = 0; i < errors.n; i++)
                        config_error(events, path, errors.items[i]);
                if (errors.n == 0 && asprintf(&msg, "%s: %s", path, strerror(-r)) >= 0)
                        config_error(events, path, msg);
                free(msg);
                log_event(LOG_ERR, LOG_EV_CONFIG_INVALID, LOG_FIELDS({ "CONFIG_FILE", path }),
                          "Configuration %s is invalid (%zu error%s)", path, errors.n,
                          errors.n == 1 ? "" : "s");
                cfg_errors_clear(&errors);
                mail_templates_free(t);
                cfg_free(cfg);
                free(override);
                return EXIT_CONFIG;
        }
        if (!quiet_ok)
                printf("configuration OK\n");
        cfg_errors_clear(&errors);
        free(override);
        *ret_cfg = cfg;
        if (ret_templates)
                *ret_templates = t;
        else
                mail_templates_free(t);
        return 0;
}

int command_check_config(const struct options *opts) {
        struct cfg *cfg = NULL;
        int r = load_config(opts->config_path, 0, &cfg, NULL, false);
        cfg_free(cfg);
        return r;
}

/* Writes data to path only if nothing is there yet (O_EXCL); a failed
 * write leaves no partial file. */
static int write_new_file(const char *path, const char *data, size_t len) {
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        int r = 0;

        if (fd < 0)
                return -errno;
        for (size_t off = 0; off < len && r == 0; ) {
                ssize_t n = write(fd, data + off, len - off);
                if (n < 0 && errno != EINTR)
                        r = -errno;
                else if (n > 0)
                        off += (size_t) n;
        }
        if (r == 0 && fsync(fd) < 0)
                r = -errno;
        if (close(fd) < 0 && r == 0)
                r = -errno;
        if (r < 0)
                unlink(path);
        return r;
}

/* templates --dump DIR: the built-in templates as files, never over an
 * existing one (those are kept and named; exit 1). */
static int dump_templates(const char *dir) {
        int ret = 0;

        if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
                fprintf(stderr, "partnerd: cannot create %s: %s\n", dir, strerror(errno));
                return 1;
        }
        for (const struct mail_builtin *b = mail_builtin_templates; b->name; b++) {
                char *path = NULL;
                int r = asprintf(&path, "%s/%s", dir, b->name) < 0 ? -ENOMEM
                                                                     : write_new_file(path, b->data, b->len);
                if (r == -EEXIST)
                        fprintf(stderr, "partnerd: %s exists, kept as it is\n", path);
                else if (r < 0)
                        fprintf(stderr, "partnerd: cannot write %s/%s: %s\n", dir, b->name, strerror(-r));
                else
                        printf("%s\n", path);
                if (r < 0)
                        ret = 1;
                free(path);
        }
        return ret;
}

/* templates: each template and where it comes from, as the daemon would
 * load them (the overrides are validated as --check-config does). */
int command_templates(const struct options *opts) {
        struct cfg *cfg = NULL;
        struct mail_templates *t = NULL;
        const char *name, *path;
        int r;

        if (opts->dump_dir)
                return dump_templates(opts->dump_dir);
        r = load_config(opts->config_path, CFG_NO_SECRETS, &cfg, &t, true);
        if (r != 0)
                return r;
        for (size_t i = 0; mail_templates_source(t, i, &name, &path); i++)
                printf("%-24s %s\n", name, path ? path : "built in");
        mail_templates_free(t);
        cfg_free(cfg);
        return 0;
}

/* The role line of `partnerd status` in cluster mode: this instance is
 * active when the leader key names it. */
static char *cluster_role(const struct cfg *cfg, const char *leader) {
        char *s;
        if (leader && strcmp(leader, cfg->cluster.name) == 0)
                return strdup("active");
        if (asprintf(&s, "standby (leader: %s)", leader ? leader : "none") < 0)
                return NULL;
        for (char *p = s; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        *p = '?';
        return s;
}

/* --json: the rendition with "cluster": {"role", "leader"} added. */
static char *add_cluster_json(const char *out, const struct cfg *cfg, const char *leader) {
        json_t *root = json_loads(out, 0, NULL);
        bool active = leader && strcmp(leader, cfg->cluster.name) == 0;
        char *text = NULL;
        if (root && json_object_set_new(root, "cluster",
                                        json_pack("{s:s, s:o}", "role", active ? "active" : "standby", "leader",
                                                  leader ? json_string(leader) : json_null())) == 0)
                text = json_dumps(root, JSON_SORT_KEYS | JSON_INDENT(2));
        json_decref(root);
        size_t n = strlen(out);
        char *nl = NULL;
        if (text && n > 0 && out[n - 1] == '\n' && asprintf(&nl, "%s\n", text) < 0)
                nl = NULL;
        if (nl) {
                free(text);
                text = nl;
        }
        return text;
}

/* The state: the file, read without touching it (no lock, no move-aside:
 * this is a read-only view), or in cluster mode etcd's, with the role. */
int command_status(const struct options *opts) {
        struct cfg *cfg = NULL;
        struct state *st = NULL;
        char *out = NULL, *err = NULL, *leader = NULL, *role = NULL;
        int r, ret = 1;

        r = load_config(opts->config_path, CFG_NO_SECRETS, &cfg, NULL, true);
        if (r != 0)
                return r;
        if (cfg->cluster.enabled)
                r = member_read(cfg, &st, &leader, &err);
        else
                r = store_read(cfg->daemon.state_dir, &st, &err);
        if (r < 0) {
                fprintf(stderr, "partnerd: %s%s\n", cfg->cluster.enabled ? "cannot read the state from etcd: " : "",
                        err ? err : strerror(-r));
                goto out;
        }
        if (status_render(st, util_now_wall(), cfg->mail.deadline, opts->json, &out) < 0) {
                fprintf(stderr, "partnerd: cannot render the status\n");
                goto out;
        }
        if (cfg->cluster.enabled && opts->json) {
                char *with = add_cluster_json(out, cfg, leader);
                if (!with)
                        goto out;
                free(out);
                out = with;
        } else if (cfg->cluster.enabled) {
                if (!(role = cluster_role(cfg, leader)))
                        goto out;
                printf("cluster: %s\n", role);
        }
        fputs(out, stdout);
        ret = 0;
out:
        free(out);
        free(err);
        free(leader);
        free(role);
        state_free(st);
        cfg_free(cfg);
        return ret;
}

/* 1: nothing queued in the outbox of state_dir; 0: mail waits in it. */
static int outbox_empty(const char *state_dir) {
        struct mail_outbox *o = NULL;
        int r = mail_outbox_open(state_dir, &o);
        if (r < 0)
                return r;
        r = mail_outbox_pending(o) == 0;
        mail_outbox_free(o);
        return r;
}

/* cluster migrate: the state file of [daemon] state_dir into etcd, once.
 * The state directory's lock is held meanwhile, so that no single-host
 * partnerd changes the file while it is copied. */
int command_cluster_migrate(const struct options *opts) {
        struct cfg *cfg = NULL;
        struct state *st = NULL;
        char *err = NULL;
        pid_t holder = 0;
        int lock = -1, r, ret = 1;

        r = load_config(opts->config_path, CFG_NO_SECRETS, &cfg, NULL, true);
        if (r != 0)
                return r;
        if (!cfg->cluster.enabled) {
                fprintf(stderr, "partnerd: %s has no [cluster] section: nothing to migrate to\n", cfg->path);
                ret = EXIT_CONFIG;
                goto out;
        }
        lock = store_lock(cfg->daemon.state_dir, &holder);
        if (lock < 0) {
                fprintf(stderr, "partnerd: cannot lock the state directory %s: %s\n", cfg->daemon.state_dir,
                        lock == -EWOULDBLOCK ? "a partnerd runs on it (stop it first)" : strerror(-lock));
                ret = lock == -EWOULDBLOCK ? EXIT_TEMPFAIL : 1;
                goto out;
        }
        r = store_read(cfg->daemon.state_dir, &st, &err);
        if (r < 0) {
                fprintf(stderr, "partnerd: %s\n", err ? err : strerror(-r));
                goto out;
        }
        free(err);
        err = NULL;
        if ((r = outbox_empty(cfg->daemon.state_dir)) <= 0) {
                if (r == 0)
                        fprintf(stderr, "partnerd: the mail outbox in %s/outbox holds unsent mail: run the "
                                "single-host partnerd until it is sent, then migrate\n", cfg->daemon.state_dir);
                else
                        fprintf(stderr, "partnerd: cannot open the mail outbox in %s/outbox: %s\n",
                                cfg->daemon.state_dir, strerror(-r));
                goto out;
        }
        r = member_migrate(cfg, st, &err);
        if (r == -EEXIST)
                fprintf(stderr, "partnerd: the etcd prefix %s is not empty: refusing to migrate (already done?)\n",
                        cfg->cluster.prefix);
        else if (r < 0)
                fprintf(stderr, "partnerd: cannot migrate the state to etcd: %s\n", err ? err : strerror(-r));
        else {
                printf("migrated %zu customers to %s\n", st->n_customers, cfg->cluster.prefix);
                ret = 0;
        }
out:
        store_unlock(lock);
        free(err);
        state_free(st);
        cfg_free(cfg);
        return ret;
}

struct test_mail {
        bool done;
        struct mail_result res;
        char *error;
};

static void on_test_sent(void *ud, const struct mail_result *res) {
        struct test_mail *t = ud;
        t->done = true;
        t->res = *res;
        t->error = res->error ? strdup(res->error) : NULL;
        t->res.error = t->error;
}

int command_send_test_mail(const struct options *opts) {
        struct cfg *cfg = NULL;
        struct mail_message *msg = NULL;
        struct http *http = NULL;
        struct mail_transport *tr = NULL;
        struct test_mail t = { 0 };
        uv_loop_t loop;
        char *err = NULL;
        int r, ret = 1;

        r = load_config(opts->config_path, 0, &cfg, NULL, true);
        if (r != 0)
                return r;
        if (uv_loop_init(&loop) < 0) {
                cfg_free(cfg);
                return 1;
        }
        r = mail_render_test(&cfg->mail, util_now_wall(), &msg, &err);
        if (r < 0) {
                fprintf(stderr, "partnerd: cannot compose the test mail: %s\n", err ? err : strerror(-r));
                goto out;
        }
        r = http_new(&loop, &(struct http_options) { .max_per_host = 1 }, &http);
        if (r >= 0)
                r = mail_transport_new(http, &loop, &cfg->mail, &tr);
        if (r >= 0)
                r = mail_send(tr, msg, on_test_sent, &t);
        if (r < 0) {
                fprintf(stderr, "partnerd: cannot send the test mail: %s\n", strerror(-r));
                goto out;
        }
        uv_run(&loop, UV_RUN_DEFAULT);
        if (t.done && t.res.ok) {
                printf("test mail %s sent to %zu recipient(s)%s (SMTP %ld)\n", msg->message_id,
                       msg->n_rcpt - t.res.n_refused, t.res.n_refused ? ", some refused" : "",
                       t.res.smtp_code);
                ret = 0;
        } else
                printf("test mail NOT sent: %s (SMTP %ld)\n", t.error ? t.error : "unknown error",
                       t.res.smtp_code);
out:
        http_free(http);   /* first: its cancellations call into the transport */
        mail_transport_free(tr);
        uv_run(&loop, UV_RUN_DEFAULT);
        (void) uv_loop_close(&loop);
        mail_message_free(msg);
        free(t.error);
        free(err);
        cfg_free(cfg);
        return ret;
}
