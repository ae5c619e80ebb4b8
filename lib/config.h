/* SPDX-License-Identifier: MIT */
/*
 * config: the INI file (partnerd.conf(5)), validated, with secrets loaded.
 *
 * Syntax: [section], key = value, '#' or ';' starts a comment (a '#' inside
 * a value only after whitespace), durations such as 30s 5min 24h 2d, lists
 * separated by commas.  Unknown sections and keys, missing required keys,
 * bad durations, bad addresses, plaintext transports to non-loopback hosts:
 * each is an error reported as "FILE:LINE: message" naming the key.
 *
 * A relative *_file path resolves in $CREDENTIALS_DIRECTORY when set, else
 * next to the config file.  Secret values are never part of an error.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cfg_marketplace {
        char *url;                /* base, e.g. https://api.../public/v1 (no trailing '/') */
        char *token;              /* secret, from token_file */
        char *token_file;         /* resolved path */
        int64_t poll_interval;    /* seconds, default 5min */
        char **products;          /* optional product id filter */
        size_t n_products;
        char *ca_file;            /* optional */
        char *portal_url;         /* default https://portal.platform.softwareone.com */
        size_t max_orders_bytes;  /* orders held for one cycle, default 64 MiB */
};

/* One Partner Center account: the [microsoft] section (named
 * CFG_ACCOUNT_DEFAULT) or a [microsoft.NAME] section.  A [microsoft.NAME]
 * section takes login_url, api_url, graph_url, ca_file and token_endpoint from
 * [microsoft] unless it sets them; check_schedule is set in [microsoft]
 * only and applies to every account. */
struct cfg_microsoft {
        char *name;               /* "default" for [microsoft], else NAME */
        char **partner_ids;       /* lower-case GUIDs this account answers for */
        size_t n_partner_ids;     /* 0: every partnerId (one account only) */
        char *login_url;          /* default https://login.microsoftonline.com */
        char *api_url;            /* default https://api.partnercenter.microsoft.com/v1 */
        char *graph_url;          /* default https://graph.microsoft.com/v1.0 (GDAP) */
        char *tenant;             /* partner's own tenant id or domain */
        char *client_id;
        char *client_secret;      /* secret, from client_secret_file */
        char *client_secret_file;
        char *ca_file;
        int token_endpoint;       /* 1 = /oauth2/token (resource=), 2 = /oauth2/v2.0/token (scope=) */
        int64_t *check_schedule;  /* seconds between checks: default 1min,2min,5min,10min,15min */
        size_t n_check_schedule;  /* last entry repeats */
};

enum cfg_transport {
        CFG_TRANSPORT_SMTP = 0,
        CFG_TRANSPORT_SENDMAIL,
};

struct cfg_mail {
        enum cfg_transport transport;
        char *smtp_url;           /* smtps://host:465 or smtp://host:587 (STARTTLS required) */
        char *username;           /* optional */
        char *password;           /* secret, optional, from password_file */
        char *password_file;
        char *ca_file;
        char *sendmail_path;      /* default /usr/sbin/sendmail */
        char *from;               /* "Name <addr>" or "addr", validated */
        char **to;  size_t n_to;
        char **cc;  size_t n_cc;
        char **bcc; size_t n_bcc;
        char **ops; size_t n_ops;
        bool notify_order_contacts;
        int64_t reminder_interval;   /* default 24h */
        int max_reminders;           /* default 5 */
        int64_t deadline;            /* default 15d after audit.querying.at */
        int64_t deadline_warning;    /* default 3d */
        char *template_dir;          /* optional override dir (default: config dir/templates) */
        char **url_hosts;            /* relationship URL allow-list, default admin.microsoft.com */
        size_t n_url_hosts;
};

struct cfg_daemon {
        char *state_dir;             /* $STATE_DIRECTORY, else /var/lib/partnerd */
        int64_t retention;           /* closed entries kept, default 30d */
        int max_parallel;            /* per-host parallel requests, default 16 */
        int64_t http_timeout;        /* total per request, seconds, default 60 */
        int64_t connect_timeout;     /* default 10 */
        size_t max_response;         /* bytes, default 16 MiB */
        char *proxy;                 /* https://, or http:// to loopback; NULL = none */
        char *metrics_file;          /* Prometheus textfile, NULL = none */
};

/* [cluster] (docs/cluster.md): present when etcd is set; absent, partnerd
 * runs single-host with its state file exactly as without the section. */
struct cfg_cluster {
        bool enabled;                /* the section is present */
        char *etcd;                  /* as written: "URL, URL, URL" */
        char **endpoints;            /* parsed from etcd, NULL-terminated */
        size_t n_endpoints;          /* 1..CFG_CLUSTER_MAX_ENDPOINTS */
        char *prefix;                /* default "/partnerd/"; starts and ends with '/' */
        int64_t lease_ttl;           /* seconds, default 10s */
        char *name;                  /* this instance, default: the host name */
        char *ca_file;               /* optional */
        char *cert_file;             /* optional client certificate (with key_file) */
        char *key_file;              /* resolved like every secret ($CREDENTIALS_DIRECTORY) */
};

#define CFG_CLUSTER_MAX_ENDPOINTS 16

struct cfg {
        char *path;                  /* the file that was loaded */
        char *dir;                   /* its directory */
        struct cfg_marketplace marketplace;
        struct cfg_microsoft microsoft;   /* the [microsoft] account */
        struct cfg_microsoft *accounts;   /* [microsoft.NAME] accounts, in file order */
        size_t n_accounts;
        struct cfg_mail mail;
        struct cfg_daemon daemon;
        struct cfg_cluster cluster;
        char **warnings;             /* non-fatal ("secret file readable by others") */
        size_t n_warnings;
};

/* The name of the [microsoft] account (a [microsoft.default] section is
 * refused as a duplicate). */
#define CFG_ACCOUNT_DEFAULT "default"
/* [microsoft.NAME]: NAME is [a-z0-9][a-z0-9_-]{0,31}. */
#define CFG_ACCOUNT_NAME_MAX 32
#define CFG_ACCOUNTS_MAX 64

/* Every Partner Center account: index 0 is [microsoft], then the
 * [microsoft.NAME] sections. */
size_t cfg_n_accounts(const struct cfg *c);
const struct cfg_microsoft *cfg_account(const struct cfg *c, size_t i);
/* The account that answers for a link's partnerId (lower-case GUID, NULL
 * when the link names none): the one whose partner_ids lists it, else the
 * only account when it lists no partner_ids, else NULL (no account may
 * check such an order: it is never processed). */
const struct cfg_microsoft *cfg_account_for_partner(const struct cfg *c, const char *partner_id);

/* Every problem found, each "FILE:LINE: message" (LINE 0 when the problem
 * is not on one line, e.g. a missing key). */
struct cfg_errors {
        char **items;
        size_t n;
};

void cfg_errors_clear(struct cfg_errors *e);

/* The configuration file when none is named (partnerd.conf(5)). */
#ifndef PARTNERD_SYSCONFDIR
#define PARTNERD_SYSCONFDIR "/etc"
#endif
#define CFG_DEFAULT_PATH PARTNERD_SYSCONFDIR "/partnerd/partnerd.conf"

/* The directory whose templates override the built-in ones: [mail]
 * templates, else "templates" next to the configuration file.  malloc'd;
 * NULL on ENOMEM. */
char *cfg_template_dir(const struct cfg *c);

/* Parses and validates path.  Returns 0 and *ret on success; -EINVAL with
 * every error in *errors when the file is invalid; other negative errno if
 * it cannot be read (also described in *errors).  Loads secrets unless
 * flags has CFG_NO_SECRETS. */
#define CFG_NO_SECRETS 0x1
int cfg_load(const char *path, unsigned flags, struct cfg **ret, struct cfg_errors *errors);
struct cfg *cfg_free(struct cfg *c);   /* accepts NULL, returns NULL */
