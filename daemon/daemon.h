/* SPDX-License-Identifier: MIT */
/* The shell: wiring only, no business logic. */
#pragma once

#include <stdbool.h>

#include <uv.h>

#include "clusterstore.h"

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
        bool migrate;                /* the cluster migrate command */
};

/* service.c: run one cycle (--once) or forever; returns the exit code. */
int service_run(const struct options *opts);

/* commands.c */
int command_check_config(const struct options *opts);
int command_status(const struct options *opts);
int command_templates(const struct options *opts);
int command_send_test_mail(const struct options *opts);
int command_cluster_migrate(const struct options *opts);

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

/* member.c: this instance in the cluster ([cluster], docs/cluster.md). */
struct cfg;
struct member;
/* campaign: take part in the leadership (false: read-only, e.g. --dry-run
 * or a command).  on_change runs on every change of role or leader.
 * share: the daemon's http, whose one curl multi handle the member's etcd
 * client uses too (NULL: an http of its own on loop, for a command). */
struct http;
int member_new(uv_loop_t *loop, struct http *share, const struct cfg *cfg, bool campaign,
               void (*on_change)(void *ud), void *ud, struct member **ret);
/* Leaves the leadership: revokes the lease (so that a standby takes over
 * at once), waits for that request (2 s at most) on the loop, then frees
 * the member.  Run the loop afterwards; m is gone.  Accepts NULL. */
void member_stop(struct member *m, uv_loop_t *loop);
/* At once, without revoking (as if the process died).  Accepts NULL. */
struct member *member_free(struct member *m);
bool member_active(const struct member *m);
/* "active" or "standby (leader: HOST)"; malloc'd. */
char *member_describe(const struct member *m);
/* The whole state from etcd (cstore_load); with restore_outbox first etcd's
 * outbox entries become {state_dir}/outbox's files (coutbox_restore):
 * reopen the mail outbox afterwards. */
int member_load(struct member *m, bool restore_outbox, cstore_done_fn cb, void *ud);
/* A fenced save: the outbox files (coutbox_sync), then the state
 * (cstore_save).  -EPERM at once when not active. */
int member_save(struct member *m, const struct state *st, cstore_done_fn cb, void *ud);
/* Commands, on a loop of their own: the state and the leader's name
 * (NULL: none) as stored in etcd; migrate a state file's content once. */
int member_read(const struct cfg *cfg, struct state **ret_state, char **ret_leader, char **ret_err);
int member_migrate(const struct cfg *cfg, const struct state *st, char **ret_err);
