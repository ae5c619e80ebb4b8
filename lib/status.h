/* SPDX-License-Identifier: MIT */
/*
 * status: what the daemon tracks, for people (`partnerd status`) and for
 * scripts (`partnerd status --json`).  Pure formatting: no I/O.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "model.h"

/*
 * Renders the state as of `now`.  deadline is the platform deadline after
 * audit.querying.at (eng_params.deadline).  json=false gives an aligned
 * table, one row per order ("No orders tracked." when empty); json=true a
 * JSON document with stable, sorted keys:
 *
 *   {"generated_at": t, "customers": [{"key", "account", "name", "tenant_id", "domain",
 *     "first_seen", "notified_at", "reminders", "final_warning_sent",
 *     "next_check", "accepted_at", "deadline",
 *     "orders": [{"id", "state", "outcome", "first_seen", "querying_since",
 *                 "deadline", "process_sent_at", "closed_at"}]}]}
 *
 * "account" is the Partner Center account the customer is checked with
 * ("-": no account lists its link's partnerId, never processed; null:
 * tracked before accounts existed, settled by the next poll).
 * Times are ISO 8601 UTC strings, null when unknown.  Names from remote
 * data are stripped of control characters in the table.  *ret is malloc'd.
 * Returns 0 or -ENOMEM.
 */
int status_render(const struct state *s, int64_t now, int64_t deadline, bool json, char **ret);
