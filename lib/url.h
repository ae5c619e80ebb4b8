/* SPDX-License-Identifier: MIT */
/*
 * url: partnerd's one URL policy.
 *
 *  - Endpoints: the URLs partnerd itself connects to (API bases, token,
 *    Graph, SMTP, proxy...).  https:// everywhere, http:// only to a
 *    loopback host, smtps:// or smtp:// (STARTTLS) for mail; no
 *    credentials in a URL.  Config, http and the clients all ask here.
 *  - Links: the relationship invitation links found in order data.  What a
 *    link is (the Microsoft 365 admin centre invitation), which kind it is
 *    (reseller or GDAP), its partnerId or GDAP relationship id, and whether
 *    it may be put in a mail (https, exact host on the allow-list).
 *
 * Schemes and hosts compare case-insensitively everywhere.  Pure: no I/O.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define URL_MAX 2048

/* ---- endpoints ---------------------------------------------------------- */

enum {
        URL_ALLOW_HTTP = 1 << 0,     /* https://, http:// to loopback */
        URL_ALLOW_SMTP = 1 << 1,     /* smtps://, smtp:// */
        URL_STRICT     = 1 << 2,     /* configuration: scheme written out, no query/fragment */
};

/* 0 when url may be used as an endpoint under flags; else -EINVAL (or
 * -EPERM when it holds credentials: the value must then not be echoed,
 * -ENOMEM).  *ret_msg (optional) gets a static description of the fault;
 * *ret_plaintext (optional) whether the scheme is http:// or smtp://. */
int url_check_endpoint(const char *url, unsigned flags, bool *ret_plaintext, const char **ret_msg);

/* ---- relationship links ------------------------------------------------ */

enum url_link_kind {
        URL_LINK_NONE = 0,
        URL_LINK_RESELLER,           /* invType=ResellerRelationship / IndirectResellerRelationship */
        URL_LINK_GDAP,               /* #/partners/invitation/granularAdminRelationships/{id} */
};

/* The admin centre hosts that carry invitation links, and the default
 * url_hosts allow-list for mails. */
extern const char *const url_link_hosts[];
extern const size_t url_n_link_hosts;

/* The kind of a clean link (as url_link_extract returns). */
enum url_link_kind url_link_kind(const char *url);
const char *url_link_kind_to_string(enum url_link_kind k);   /* "reseller", "gdap", "none" */

/* The partnerId query value of a reseller link, as a lower-case GUID
 * (malloc'd); NULL when absent or not a GUID (errno ENOMEM on OOM). */
char *url_link_partner_id(const char *url);
/* The relationship id at the end of a GDAP link (opaque: [A-Za-z0-9-],
 * at most 128 bytes; malloc'd); NULL for other links. */
char *url_link_gdap_id(const char *url);

/* Scans text (HTML, markdown or plain; &amp; and \& unescaped) and keeps
 * the first link of each kind in *reseller / *gdap when they are still
 * NULL.  -ENOMEM only. */
int url_link_scan(const char *text, char **reseller, char **gdap);
/* Takes both, returns the reseller link if any (freeing the GDAP one),
 * else the GDAP link. */
char *url_link_pick(char *reseller, char *gdap);
/* The first reseller link in text, else the first GDAP link; NULL when
 * none.  malloc'd. */
char *url_link_extract(const char *text);

/* The link may be put in a mail: https:// (no userinfo, port 443 only),
 * printable ASCII without quotes, angle brackets or spaces, and its host
 * exactly one of hosts (case-insensitive); url_link_hosts when n_hosts is
 * 0. */
bool url_link_allowed(const char *url, char *const *hosts, size_t n_hosts);
