/* SPDX-License-Identifier: MIT */
#include "pdrun.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "harness.h"
#include "util.h"

static int write_secret(const char *dir, const char *name, const char *value) {
        char *path = NULL;
        int r;
        if (asprintf(&path, "%s/%s", dir, name) < 0)
                return -ENOMEM;
        r = util_write_file_atomic(path, value, strlen(value), 0600);
        free(path);
        return r;
}

int harness_pd_setup(const struct harness_pd_options *o, struct harness_pd **ret) {
        struct harness_pd *pd = calloc(1, sizeof(*pd));
        json_t *sc = NULL;
        char *conf = NULL;
        int r = -ENOMEM;

        if (!pd)
                return -ENOMEM;
        sc = json_load_file(o->scenario, 0, NULL);
        if (!sc) {
                r = -EINVAL;
                goto fail;
        }
        pd->dir = harness_tmpdir();
        if (!pd->dir || asprintf(&pd->config, "%s/partnerd.conf", pd->dir) < 0 ||
            asprintf(&pd->creds, "%s/credentials", pd->dir) < 0 ||
            asprintf(&pd->state_dir, "%s/state", pd->dir) < 0)
                goto fail;
        if (mkdir(pd->creds, 0700) < 0) {
                r = -errno;
                goto fail;
        }
        const char *token = json_string_value(json_object_get(json_object_get(sc, "marketplace"), "token"));
        json_t *ms = json_object_get(sc, "microsoft");
        const char *tenant = json_string_value(json_object_get(ms, "tenant"));
        const char *client_id = json_string_value(json_object_get(ms, "client_id"));
        const char *secret = json_string_value(json_object_get(ms, "client_secret"));
        if (!token || !tenant || !client_id || !secret) {
                r = -EINVAL;
                goto fail;
        }
        if ((r = write_secret(pd->creds, "marketplace-token", token)) < 0 ||
            (r = write_secret(pd->creds, "partner-center-secret", secret)) < 0)
                goto fail;
        char *templates = harness_src_path("config/templates");
        r = asprintf(&conf,
                     "[marketplace]\nurl = %s/public/v1\ntoken_file = marketplace-token\npoll_interval = %s\n%s\n"
                     "[microsoft]\nlogin_url = %s\napi_url = %s/v1\ngraph_url = %s/v1.0\ntenant = %s\nclient_id = %s\n"
                     "client_secret_file = partner-center-secret\ncheck_schedule = 10s\n%s\n"
                     "[mail]\nsmtp_url = %s\nfrom = CSP orders <partnerd@softwareone.example>\nto = %s\n%s%s%s"
                     "reminder_interval = 24h\nmax_reminders = 5\n%s%s%s%s\n"
                     "[daemon]\nstate_dir = %s\n%s\n%s%s",
                     o->fake_base, o->poll_interval ? o->poll_interval : "10s",
                     o->marketplace_extra ? o->marketplace_extra : "", o->fake_base, o->fake_base,
                     o->fake_base, tenant,
                     client_id, o->microsoft_extra ? o->microsoft_extra : "", o->smtp_url,
                     o->to ? o->to : "admin1@example.test, admin2@example.test", o->ops ? "ops = " : "",
                     o->ops ? o->ops : "", o->ops ? "\n" : "", o->builtin_templates ? "" : "templates = ",
                     o->builtin_templates ? "" : templates ? templates : "config/templates",
                     o->builtin_templates ? "" : "\n",
                     o->mail_extra ? o->mail_extra : "", pd->state_dir, o->daemon_extra ? o->daemon_extra : "",
                     o->cluster ? "[cluster]\n" : "", o->cluster ? o->cluster : "");
        free(templates);
        if (r < 0) {
                conf = NULL;
                r = -ENOMEM;
                goto fail;
        }
        r = util_write_file_atomic(pd->config, conf, strlen(conf), 0644);
        if (r < 0)
                goto fail;
        free(conf);
        json_decref(sc);
        *ret = pd;
        return 0;
fail:
        free(conf);
        json_decref(sc);
        harness_pd_free(pd);
        return r;
}

void harness_pd_free(struct harness_pd *pd) {
        if (!pd)
                return;
        if (pd->dir && !getenv("HARNESS_KEEP"))
                harness_rmrf(pd->dir);
        free(pd->dir);
        free(pd->config);
        free(pd->creds);
        free(pd->state_dir);
        free(pd);
}

/* argv: [wrapper words...] partnerd --config FILE args... */
static char **build_argv(const struct harness_pd *pd, const char *const *args) {
        const char *wrapper = getenv("PARTNERD_WRAPPER");
        char *bin = harness_getenv_path("PARTNERD_BIN", "partnerd");
        char *wcopy = wrapper && *wrapper ? strdup(wrapper) : NULL;
        size_t n = 0, cap = 64;
        char **argv = calloc(cap, sizeof(*argv));
        if (!argv || !bin) {
                free(argv);
                free(bin);
                free(wcopy);
                return NULL;
        }
        for (char *save = NULL, *w = wcopy ? strtok_r(wcopy, " ", &save) : NULL; w && n < 32;
             w = strtok_r(NULL, " ", &save))
                argv[n++] = strdup(w);
        free(wcopy);
        argv[n++] = bin;
        argv[n++] = strdup("--config");
        argv[n++] = strdup(pd->config);
        for (size_t i = 0; args && args[i] && n < cap - 1; i++)
                argv[n++] = strdup(args[i]);
        argv[n] = NULL;
        return argv;
}

static void free_argv(char **argv) {
        for (size_t i = 0; argv && argv[i]; i++)
                free(argv[i]);
        free(argv);
}

/* true when the "NAME=value" entry e sets a variable named in list */
static bool env_named(const char *e, const char *const *list) {
        size_t len = strcspn(e, "=");
        for (size_t i = 0; list && list[i]; i++)
                if (strncmp(list[i], e, len) == 0 && list[i][len] == '=')
                        return true;
        return false;
}

static char **build_env(const struct harness_pd *pd, const char *const *extra) {
        extern char **environ;
        size_t n = 0, n_extra = 0;
        while (environ[n])
                n++;
        while (extra && extra[n_extra])
                n_extra++;
        char **env = calloc(n + n_extra + 2, sizeof(*env));
        size_t k = 0;
        if (!env)
                return NULL;
        for (size_t i = 0; i < n; i++)
                if (strncmp(environ[i], "CREDENTIALS_DIRECTORY=", 22) != 0 &&
                    strncmp(environ[i], "JOURNAL_STREAM=", 15) != 0 &&
                    strncmp(environ[i], "NOTIFY_SOCKET=", 14) != 0 && !env_named(environ[i], extra))
                        env[k++] = strdup(environ[i]);
        if (!env_named("CREDENTIALS_DIRECTORY=", extra) &&
            asprintf(&env[k++], "CREDENTIALS_DIRECTORY=%s", pd->creds) < 0)
                env[--k] = NULL;
        for (size_t i = 0; i < n_extra; i++)
                env[k++] = strdup(extra[i]);
        return env;
}

pid_t harness_pd_spawn_env(struct harness_pd *pd, const char *const *args, const char *const *extra_env) {
        char **argv = build_argv(pd, args), **env = build_env(pd, extra_env);
        char *out = NULL, *err = NULL;
        pid_t pid = -ENOMEM;

        pd->runs++;
        if (argv && env && asprintf(&out, "%s/run-%d.out", pd->dir, pd->runs) >= 0 &&
            asprintf(&err, "%s/run-%d.err", pd->dir, pd->runs) >= 0)
                pid = harness_spawn(argv, env, out, err);
        free(out);
        free(err);
        free_argv(argv);
        free_argv(env);
        return pid;
}

pid_t harness_pd_spawn(struct harness_pd *pd, const char *const *args) {
        return harness_pd_spawn_env(pd, args, NULL);
}

int harness_pd_run(struct harness_pd *pd, const char *const *args, int timeout_ms, int *ret_status) {
        pid_t pid = harness_pd_spawn(pd, args);
        if (pid < 0)
                return (int) pid;
        int r = harness_wait(pid, timeout_ms, ret_status);
        if (r == -ETIMEDOUT)
                (void) harness_kill(pid, SIGKILL, 2000);
        return r;
}

char *harness_pd_output(const struct harness_pd *pd, int run, bool err) {
        char *path = NULL, *data = NULL;
        if (asprintf(&path, "%s/run-%d.%s", pd->dir, run, err ? "err" : "out") < 0)
                return NULL;
        if (util_read_file(path, 16u << 20, &data, NULL) < 0)
                data = NULL;
        free(path);
        return data;
}
