/* SPDX-License-Identifier: MIT */
/*
 * metrics: what partnerd tells Prometheus, through node_exporter's textfile
 * collector ([daemon] metrics_file).  Pure formatting of a snapshot in the
 * text exposition format (HELP/TYPE, no timestamps), and the atomic write
 * (temp file in the same directory, fsync, rename: node_exporter only reads
 * *.prom, so it never sees a half-written file).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"

/* partnerd_blocked_orders{kind}: one entry per label value. */
enum metrics_block_kind {
        METRICS_BLOCK_RESELLER = 0,  /* waiting for the reseller relationship */
        METRICS_BLOCK_GDAP,          /* waiting for a GDAP relationship (0 until the model has it) */
        METRICS_BLOCK_DRAFT,         /* Draft showing the URL */
        METRICS_BLOCK_OTHER,         /* Querying for another reason */
        _METRICS_BLOCK_MAX,
};

/* partnerd_pending_customers{account}: one entry per account seen. */
#define METRICS_MAX_ACCOUNTS 32
struct metrics_account {
        const char *name;                    /* borrowed from the state; "default" */
        size_t pending;
};

struct metrics_snapshot {
        bool up;                             /* partnerd_up */
        int64_t last_success;                /* 0: no successful cycle yet (sample omitted) */
        double cycle_duration;               /* seconds, the last cycle */
        size_t blocked[_METRICS_BLOCK_MAX];
        struct metrics_account accounts[METRICS_MAX_ACCOUNTS];   /* beyond: counted in the last */
        size_t n_accounts;
        int64_t deadline_soonest;            /* 0: no blocked order (sample omitted) */
        /* The partnerd_*_total counters (kept in the state, so that they
         * survive restarts); borrowed, NULL: none written. */
        const struct counters *counters;
};

/* Fills the state-derived fields (blocked, pending, deadline_soonest,
 * counters);
 * deadline is the platform's deadline after Querying began, in seconds.
 * The account names are borrowed from st: format before st changes. */
void metrics_from_state(const struct state *st, int64_t deadline, struct metrics_snapshot *m);

/* The exposition text (malloc'd). */
int metrics_format(const struct metrics_snapshot *m, char **ret);

/* Formats and writes path atomically (mode 0644). */
int metrics_write(const char *path, const struct metrics_snapshot *m);
