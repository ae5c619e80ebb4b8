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

#include "harness.h"

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
        const char *status;          /* of the "Querying" orders at the start;
                                      * "Processing" models orders a test moves
                                      * to Querying later (NULL: Querying) */
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

/* Moves an order on the fake as someone else would (control route). */
int inv_fake_set_status(struct harness_fake *fake, const char *order_id, const char *status);

/* The fake's revision of an order (1 at the start; every transition,
 * ours or the control route's, adds one); negative errno if unknown. */
int inv_fake_revision(struct harness_fake *fake, const char *order_id);

/* ---- a world: the fake, the SMTP server and partnerd's config ---- */

struct harness_smtp_options;
struct harness_pd_options;

struct inv_world {
        struct harness_fake fake;
        struct harness_smtp *smtp;
        struct harness_pd *pd;
        char *dir;                   /* temp dir holding the scenario */
        char *scenario;              /* path of the scenario file */
};

/* Writes sc to a temp dir, starts the fake (fake_args as
 * harness_fake_start_args), the SMTP server (smtp_opts; NULL: none, then
 * pdo->smtp_url must be set) and sets partnerd up with pdo (fake_base,
 * scenario and, with a server, smtp_url are filled in).  w is zeroed first;
 * on failure what was started is left for inv_world_stop(). */
int inv_world_start(struct inv_world *w, json_t *sc, const char *const *fake_args,
                    const struct harness_smtp_options *smtp_opts, const struct harness_pd_options *pdo);
/* The same on a scenario file of the source tree as it is (rel, e.g.
 * "tests/scenarios/basic.json"): no temp copy, w->dir stays NULL. */
int inv_world_start_file(struct inv_world *w, const char *rel, const char *const *fake_args,
                         const struct harness_smtp_options *smtp_opts, const struct harness_pd_options *pdo);
/* Stops and frees everything (the temp dirs too, unless $HARNESS_KEEP). */
void inv_world_stop(struct inv_world *w);
/* For a cmocka setup: a world on sc (inv_world_start; sc NULL: on the file
 * rel, inv_world_start_file) with an SMTP server of smtp_opts (NULL: the
 * defaults).  NULL on failure, with what was started stopped. */
struct inv_world *inv_world_new(json_t *sc, const char *rel, const struct harness_smtp_options *smtp_opts,
                                const struct harness_pd_options *pdo);
/* inv_world_stop() and free; accepts NULL. */
void inv_world_free(struct inv_world *w);

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

/* Messages waiting in state_dir/outbox (files *.msg), negative errno when
 * the directory cannot be read (absent: 0). */
int inv_outbox_pending(const char *state_dir);
/* Files named *.tmp.* in state_dir and its outbox: what interrupted atomic
 * writes left behind. */
size_t inv_temp_files(const char *state_dir);

/* ---- processes ---- */

/* waitpid() with a timeout that also reports the child's peak RSS (KiB,
 * from wait4's rusage).  Status as harness_wait: exit code, or 128 +
 * signal.  -ETIMEDOUT when still running. */
int inv_wait_rusage(pid_t pid, int timeout_ms, int *ret_status, long *ret_maxrss_kb);

/* Runs 1..pd->runs of a harness_pd whose stderr holds a sanitizer or
 * valgrind report (ASan/UBSan exit 1, which a test may accept as a plain
 * failure); the first one's number in *ret_first.  Needs pdrun.h. */
struct harness_pd;
size_t inv_pd_sanitizer_reports(const struct harness_pd *pd, int *ret_first);

/* Deterministic PRNG (splitmix64) for reproducible schedules. */
uint64_t inv_rand(uint64_t *state);
/* $name as an unsigned number, or def when unset/invalid. */
unsigned long inv_env_ulong(const char *name, unsigned long def);
/* True under valgrind or another PARTNERD_WRAPPER (slow runs). */
bool inv_slow_mode(void);

/* Number of lines of text containing every one of the needles (NULL
 * terminated). */
size_t inv_count_lines(const char *text, const char *const *needles);
/* The first "<P>message" log line of text with P <= max_prio that contains
 * every needle (case-insensitive), copied to out (n bytes); false if none. */
bool inv_find_log_line(const char *text, int max_prio, const char *const *needles, char *out, size_t n);
