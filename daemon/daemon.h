/* SPDX-License-Identifier: MIT */
/* The shell: wiring only, no business logic. */
#pragma once

#include <stdbool.h>

#define EXIT_USAGE  2
#define EXIT_TEMPFAIL 75 /* EX_TEMPFAIL: the state directory is in use */
#define EXIT_CONFIG 78   /* EX_CONFIG */

struct options {
        const char *config_path;
        bool once;
        bool dry_run;
        bool check_config;
        bool send_test_mail;
        bool verbose;
        bool status;
        bool json;
        bool templates;              /* the templates command */
        const char *dump_dir;        /* templates --dump DIR */
};

/* service.c: run one cycle (--once) or forever; returns the exit code. */
int service_run(const struct options *opts);

/* commands.c */
int command_check_config(const struct options *opts);
int command_status(const struct options *opts);
int command_templates(const struct options *opts);
int command_send_test_mail(const struct options *opts);

/* Loads the configuration and the templates, printing every error as
 * FILE:LINE: message on stderr.  Returns 0, or EXIT_CONFIG.
 * flags: CFG_* for cfg_load(), and LOAD_CONFIG_EVENTS: report each error
 * as a log event (a "<3>" line on stderr, as the daemon logs everything);
 * under journald the errors are always journal entries with PRIORITY=3 and
 * CONFIG_FILE. */
#define LOAD_CONFIG_EVENTS 0x100u
struct cfg;
struct mail_templates;
int load_config(const char *path, unsigned flags, struct cfg **ret_cfg,
                struct mail_templates **ret_templates, bool quiet_ok);
