/* SPDX-License-Identifier: MIT */
/*
 * invariants: what the crash, fault, state-fault and secrets tests build and
 * check.  Generated scenarios for the fake platform (N customers with
 * Querying and Draft orders cloned from tests/scenarios/basic.json), and
 * the invariants that must hold whatever happened to partnerd: no order
 * processed twice, never a Process on a Draft, every blocked customer
 * notified, duplicates bounded, the state file loadable.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

struct harness_smtp;

/* The acceptance URL the generated orders carry unless one is given. */
#define INV_URL "https://admin.microsoft.com/Adminportal/Home?invType=ResellerRelationship&partnerId=" \
                "3b33e682-00c3-41ee-9dd2-a548adf56438&msppId=0&DAP=false#/BillingAccounts/partner-invitation"

struct inv_customer {
        const char *name;            /* company name */
        const char *domain;          /* "x.onmicrosoft.com", required */
        const char *tenant_id;       /* GUID of the tenant */
        bool order_without_tenant;   /* orders carry only the domain */
        bool accepted;               /* accepted from the start */
        int accept_after_checks;     /* the fake accepts after N refused checks */
        int n_querying;              /* Querying orders showing the URL */
        int n_draft;                 /* Draft orders showing the URL */
        const char *url;             /* NULL: INV_URL */
};

/* A scenario: tests/scenarios/basic.json's secrets, buyers and templates,
 * plus the tenants and orders of cust (basic.json's own tenants and orders
 * are dropped).  Order ids are "ORD-<series>-<customer 4 digits>-<n 4
 * digits>", Querying ones first.  NULL on failure. */
json_t *inv_scenario_new(const struct inv_customer *cust, size_t n, int series);
/* Writes sc to dir/name; malloc'd path or NULL. */
char *inv_scenario_write(json_t *sc, const char *dir, const char *name);
/* The id of order k (0-based: Querying first, then Drafts) of customer i;
 * buf must hold 24 bytes. */
const char *inv_order_id(char *buf, int series, size_t i, int k);

/* ---- the fake's request log ---- */

/* POST .../orders/<id>/process requests in log (any id when id == NULL);
 * status 0 means any status. */
size_t inv_process_posts(json_t *log, const char *order_id, long status);
/* Requests whose path contains path_sub and whose status is status (0: any). */
size_t inv_log_count(json_t *log, const char *method, const char *path_sub, long status);

/* ---- mails ---- */

/* Mail kinds recognised from the shipped subjects. */
const char *inv_mail_kind(const char *subject);

struct inv_mail_tally {
        size_t total;
        size_t unparsed;             /* mails mailparse.py could not read */
        json_t *counts;              /* {"<domain or ?>|<kind>": n} */
};
/* Reads the mails [from, count) of smtp and counts them per (customer,
 * kind); the customer is the first of domains named in the subject or
 * text.  Returns 0 or a negative errno. */
int inv_mail_tally(struct harness_smtp *smtp, size_t from, const char *const *domains, size_t n_domains,
                   struct inv_mail_tally *ret);
void inv_mail_tally_done(struct inv_mail_tally *t);
size_t inv_mail_count(const struct inv_mail_tally *t, const char *domain, const char *kind);
/* Sum over (customer, kind) of (count - 1) for counts above 1. */
size_t inv_mail_duplicates(const struct inv_mail_tally *t);

/* ---- state ---- */

/* 0 when state_dir/state.json is absent or parses with store_from_json;
 * else a negative errno and *ret_err (malloc'd) says why. */
int inv_state_loadable(const char *state_dir, char **ret_err);

/* ---- processes ---- */

/* waitpid() with a timeout that also reports the child's peak RSS (KiB,
 * from wait4's rusage).  Status as harness_wait: exit code, or 128 +
 * signal.  -ETIMEDOUT when still running. */
int inv_wait_rusage(pid_t pid, int timeout_ms, int *ret_status, long *ret_maxrss_kb);

/* Deterministic PRNG (splitmix64) for reproducible schedules. */
uint64_t inv_rand(uint64_t *state);
/* $name as an unsigned number, or def when unset/invalid. */
unsigned long inv_env_ulong(const char *name, unsigned long def);
/* True under valgrind or another PARTNERD_WRAPPER (slow runs). */
bool inv_slow_mode(void);

/* Number of lines of text containing every one of the needles (NULL
 * terminated). */
size_t inv_count_lines(const char *text, const char *const *needles);
