/* SPDX-License-Identifier: MIT */
/*
 * harness_pd: runs the real partnerd binary ($PARTNERD_BIN, prefixed by
 * $PARTNERD_WRAPPER such as valgrind when set) against the fake platform
 * and the test SMTP server: writes a config, a credentials directory (as
 * systemd would) and a state directory into a temp dir.
 */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

struct harness_pd_options {
        const char *fake_base;        /* "http://127.0.0.1:PORT" */
        const char *smtp_url;         /* "smtp://127.0.0.1:PORT" */
        const char *scenario;         /* scenario JSON: tokens and client id come from it */
        const char *to;               /* default "admin1@example.test, admin2@example.test" */
        const char *ops;              /* optional */
        const char *poll_interval;    /* default "10s" */
        /* extra raw "key = value" lines appended to each section */
        const char *marketplace_extra, *microsoft_extra, *mail_extra, *daemon_extra;
        bool builtin_templates;       /* no [mail] templates line (default: config/templates) */
        const char *cluster;          /* raw "key = value" lines of a [cluster] section (NULL: none) */
};

struct harness_pd {
        char *dir;
        char *config;
        char *creds;
        char *state_dir;
        int runs;                     /* runs so far; outputs are dir/run-N.{out,err} */
};

int harness_pd_setup(const struct harness_pd_options *o, struct harness_pd **ret);
void harness_pd_free(struct harness_pd *pd);   /* removes the temp dir; accepts NULL */

/* Runs partnerd with args (NULL-terminated, --config is added) and waits up
 * to timeout_ms.  *ret_status as harness_wait. */
int harness_pd_run(struct harness_pd *pd, const char *const *args, int timeout_ms, int *ret_status);
/* Starts it in the background (daemon mode or --once), returns the pid. */
pid_t harness_pd_spawn(struct harness_pd *pd, const char *const *args);
/* The same with extra environment entries ("NAME=value", NULL-terminated,
 * may be NULL) added after ours, e.g. NOTIFY_SOCKET or WATCHDOG_USEC; an
 * entry replaces a variable of ours of the same name, including the ones
 * harness_pd_spawn drops (NOTIFY_SOCKET, JOURNAL_STREAM,
 * CREDENTIALS_DIRECTORY). */
pid_t harness_pd_spawn_env(struct harness_pd *pd, const char *const *args, const char *const *extra_env);
/* malloc'd stdout (err=false) or stderr of run n (1-based). */
char *harness_pd_output(const struct harness_pd *pd, int run, bool err);
