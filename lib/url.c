/* SPDX-License-Identifier: MIT */
/*
 * url: partnerd's one URL policy (see url.h).
 */
#include "url.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "apiutil.h"
#include "util.h"

/* ---- ASSUMPTIONS ------------------------------------------------------
 * The invitation link grammar [shared/reference partner-center-api.md 3.2
 * and 5.1; marketplace-api.md "Recommended contract"]: the Microsoft 365
 * admin centre, path AdminPortal/..., the reseller kind by its invType
 * query value (direct or indirect), the GDAP kind by its fragment.
 * admin.cloud.microsoft is Microsoft's newer host for the same admin
 * centre links [3P: CIPP]. */
const char *const url_link_hosts[] = { "admin.microsoft.com", "admin.cloud.microsoft" };
const size_t url_n_link_hosts = sizeof(url_link_hosts) / sizeof(url_link_hosts[0]);
#define LINK_PATH             "adminportal"
#define LINK_INVTYPE_KEY      "invtype="
#define LINK_PARTNER_KEY      "partnerid="
#define LINK_INVTYPE_RESELLER "ResellerRelationship"
#define LINK_INVTYPE_INDIRECT "IndirectResellerRelationship"
#define LINK_GDAP_FRAGMENT    "#/partners/invitation/granularAdminRelationships/"
#define LINK_GDAP_ID_MAX      128

static bool prefix_ci(const char *s, const char *prefix) {
        return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

/* ---- endpoints ---------------------------------------------------------- */

struct url_parts {
        char *scheme, *host, *user, *pass, *query, *frag;
};

static void parts_free(struct url_parts *p) {
        curl_free(p->scheme);
        curl_free(p->host);
        curl_free(p->user);
        curl_free(p->pass);
        curl_free(p->query);
        curl_free(p->frag);
}

static int endpoint_scheme(const struct url_parts *p, unsigned flags, bool *ret_plaintext,
                           const char **ret_msg) {
        const char *s = p->scheme;
        if ((flags & URL_ALLOW_HTTP) && util_streq_ci(s, "https")) {
                *ret_plaintext = false;
                return 0;
        }
        if ((flags & URL_ALLOW_HTTP) && util_streq_ci(s, "http")) {
                if (!util_host_is_loopback(p->host)) {
                        *ret_msg = "http:// is only allowed to a loopback host; use https://";
                        return -EINVAL;
                }
                *ret_plaintext = true;
                return 0;
        }
        if ((flags & URL_ALLOW_SMTP) && (util_streq_ci(s, "smtps") || util_streq_ci(s, "smtp"))) {
                *ret_plaintext = util_streq_ci(s, "smtp");   /* STARTTLS: the mail module's business */
                return 0;
        }
        *ret_msg = (flags & URL_ALLOW_SMTP) && !(flags & URL_ALLOW_HTTP)
                           ? "must be smtps:// or smtp:// (STARTTLS)"
                           : "must be an https:// URL";
        return -EINVAL;
}

int url_check_endpoint(const char *url, unsigned flags, bool *ret_plaintext, const char **ret_msg) {
        struct url_parts p = { 0 };
        const char *msg_dummy;
        bool plain = false;
        CURLU *u = NULL;
        int r = -EINVAL;

        if (!ret_msg)
                ret_msg = &msg_dummy;
        *ret_msg = "not a valid URL";
        if (!url || !*url || strlen(url) > URL_MAX)
                return -EINVAL;
        /* Userinfo is looked for in the text too: a URL curl cannot parse
         * may still hold a password, and it must not be echoed. */
        const char *auth = strstr(url, "://");
        auth = auth ? auth + 3 : url;
        if (memchr(auth, '@', strcspn(auth, "/?#"))) {
                *ret_msg = "credentials in the URL are not allowed (use a *_file key)";
                return -EPERM;
        }
        for (const char *c = url; *c; c++)
                if ((unsigned char) *c <= 0x20 || *c == 0x7f)
                        return -EINVAL;         /* controls, CR/LF, spaces */
        u = curl_url();
        if (!u) {
                *ret_msg = "out of memory";
                return -ENOMEM;
        }
        if (curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_SCHEME, &p.scheme, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_HOST, &p.host, 0) != CURLUE_OK || !*p.host)
                goto out;
        /* The scheme must be written out: curl would guess one. */
        if (!prefix_ci(url, p.scheme) || strncmp(url + strlen(p.scheme), "://", 3) != 0)
                goto out;
        if (curl_url_get(u, CURLUPART_USER, &p.user, 0) == CURLUE_OK ||
            curl_url_get(u, CURLUPART_PASSWORD, &p.pass, 0) == CURLUE_OK) {
                *ret_msg = "credentials in the URL are not allowed (use a *_file key)";
                r = -EPERM;
                goto out;
        }
        if ((flags & URL_STRICT) && (curl_url_get(u, CURLUPART_QUERY, &p.query, 0) == CURLUE_OK ||
                                     curl_url_get(u, CURLUPART_FRAGMENT, &p.frag, 0) == CURLUE_OK)) {
                *ret_msg = "a query or fragment is not allowed";
                goto out;
        }
        r = endpoint_scheme(&p, flags, &plain, ret_msg);
        if (r == 0 && ret_plaintext)
                *ret_plaintext = plain;
out:
        parts_free(&p);
        curl_url_cleanup(u);
        return r;
}

/* ---- links: recognising them ------------------------------------------- */

/* The admin centre host url starts with ("https://HOST/"); its length
 * including the scheme and the slash, or 0. */
static size_t link_host_prefix(const char *url) {
        if (!prefix_ci(url, "https://"))
                return 0;
        const char *h = url + 8;
        for (size_t i = 0; i < url_n_link_hosts; i++) {
                size_t n = strlen(url_link_hosts[i]);
                if (strncasecmp(h, url_link_hosts[i], n) == 0 && h[n] == '/')
                        return 8 + n + 1;
        }
        return 0;
}

/* Value of the query key (ci, "key=") in url's query part. */
static bool query_value(const char *url, const char *key_eq, const char **ret, size_t *ret_len) {
        const char *q = strchr(url, '?');
        const char *frag = strchr(url, '#');
        if (!q || (frag && frag < q))
                return false;
        const char *end = frag ? frag : url + strlen(url);
        size_t kl = strlen(key_eq);
        for (const char *p = q + 1; p < end;) {
                const char *amp = memchr(p, '&', (size_t) (end - p));
                const char *e = amp ? amp : end;
                if ((size_t) (e - p) >= kl && strncasecmp(p, key_eq, kl) == 0) {
                        *ret = p + kl;
                        *ret_len = (size_t) (e - p) - kl;
                        return true;
                }
                p = e + 1;
        }
        return false;
}

static bool value_is_ci(const char *v, size_t vl, const char *want) {
        return vl == strlen(want) && strncasecmp(v, want, vl) == 0;
}

enum url_link_kind url_link_kind(const char *url) {
        size_t hp = url ? link_host_prefix(url) : 0;
        if (!hp || !prefix_ci(url + hp, LINK_PATH))
                return URL_LINK_NONE;
        const char *v;
        size_t vl;
        if (query_value(url, LINK_INVTYPE_KEY, &v, &vl) &&
            (value_is_ci(v, vl, LINK_INVTYPE_RESELLER) || value_is_ci(v, vl, LINK_INVTYPE_INDIRECT)))
                return URL_LINK_RESELLER;
        const char *g = strcasestr(url + hp, LINK_GDAP_FRAGMENT);
        if (g && g[strlen(LINK_GDAP_FRAGMENT)] != '\0')
                return URL_LINK_GDAP;
        return URL_LINK_NONE;
}

const char *url_link_kind_to_string(enum url_link_kind k) {
        switch (k) {
        case URL_LINK_RESELLER:
                return "reseller";
        case URL_LINK_GDAP:
                return "gdap";
        default:
                return "none";
        }
}

char *url_link_partner_id(const char *url) {
        const char *v;
        size_t vl;
        errno = 0;
        if (url_link_kind(url) != URL_LINK_RESELLER || !query_value(url, LINK_PARTNER_KEY, &v, &vl) ||
            vl != 36)
                return NULL;
        char *id = strndup(v, vl);
        if (!id)
                return NULL;
        util_ascii_lower(id);
        if (!api_guid_valid(id)) {
                free(id);
                return NULL;
        }
        return id;
}

char *url_link_gdap_id(const char *url) {
        errno = 0;
        if (url_link_kind(url) != URL_LINK_GDAP)
                return NULL;
        const char *g = strcasestr(url, LINK_GDAP_FRAGMENT) + strlen(LINK_GDAP_FRAGMENT);
        size_t n = strspn(g, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-");
        if (n == 0 || n > LINK_GDAP_ID_MAX || (g[n] != '\0' && g[n] != '/' && g[n] != '?'))
                return NULL;
        return strndup(g, n);
}

/* ---- links: finding them in text --------------------------------------- */

static bool stop_char(unsigned char ch) {
        return ch <= 0x20 || ch == 0x7f || strchr("\"'<>)]`", ch) != NULL;
}

/* Unescapes HTML (&amp; &#38; &#x26;) and markdown (\& \_ \#) escapes of
 * [s, s+len).  NULL (errno EINVAL) on control characters, non-ASCII or
 * oversize; NULL (errno ENOMEM) on OOM. */
static char *unescape(const char *s, size_t len) {
        static const char *const amp[] = { "&amp;", "&#38;", "&#x26;" };
        char *out = len <= URL_MAX * 2 ? malloc(len + 1) : NULL;
        size_t o = 0;
        if (!out) {
                errno = len <= URL_MAX * 2 ? ENOMEM : EINVAL;
                return NULL;
        }
        for (size_t i = 0; i < len;) {
                size_t k = 0;
                while (k < 3 && !(len - i >= strlen(amp[k]) && strncasecmp(s + i, amp[k], strlen(amp[k])) == 0))
                        k++;
                if (k < 3) {
                        out[o++] = '&';
                        i += strlen(amp[k]);
                } else if (s[i] == '\\' && i + 1 < len && strchr("&_#", s[i + 1])) {
                        out[o++] = s[i + 1];
                        i += 2;
                } else
                        out[o++] = s[i++];
        }
        out[o] = '\0';
        /* trailing sentence punctuation is not part of the URL */
        while (o > 0 && strchr(".,;:!", out[o - 1]))
                out[--o] = '\0';
        /* Only what a mail may carry: printable ASCII, none of the characters
         * RFC 3986 never allows in a URL (the mail side refuses them too). */
        bool bad = o > URL_MAX || util_has_ctl(out, false);
        for (size_t k = 0; !bad && k < o; k++)
                bad = (unsigned char) out[k] >= 0x80 || strchr("\\{}|^", out[k]) != NULL;
        if (bad) {
                free(out);
                errno = EINVAL;
                return NULL;
        }
        return out;
}

int url_link_scan(const char *text, char **reseller, char **gdap) {
        if (!text)
                return 0;
        for (const char *p = text; (p = strcasestr(p, "https://")); p += 8) {
                if (*reseller)
                        return 0;
                /* a scheme starts at a word boundary ("xhttps://" is not one) */
                if (p > text && (isalnum((unsigned char) p[-1]) || strchr("+-.", p[-1])))
                        continue;
                if (!link_host_prefix(p))
                        continue;
                size_t len = 0;
                while (p[len] && !stop_char((unsigned char) p[len]))
                        len++;
                if (p[len] && (unsigned char) p[len] < 0x20 && p[len] != '\t' && p[len] != '\n' &&
                    p[len] != '\r')
                        continue;  /* a control character inside: reject */
                char *u = unescape(p, len);
                if (!u) {
                        if (errno == ENOMEM)
                                return -ENOMEM;
                        continue;
                }
                enum url_link_kind k = url_link_kind(u);
                if (k == URL_LINK_RESELLER && !*reseller)
                        *reseller = u;
                else if (k == URL_LINK_GDAP && !*gdap)
                        *gdap = u;
                else
                        free(u);
        }
        return 0;
}

char *url_link_pick(char *reseller, char *gdap) {
        if (reseller) {
                free(gdap);
                return reseller;
        }
        return gdap;
}

char *url_link_extract(const char *text) {
        char *reseller = NULL, *gdap = NULL;
        if (url_link_scan(text, &reseller, &gdap) < 0) {
                free(reseller);
                free(gdap);
                return NULL;
        }
        return url_link_pick(reseller, gdap);
}

/* ---- links: may it be mailed? ------------------------------------------ */

bool url_link_allowed(const char *url, char *const *hosts, size_t n_hosts) {
        CURLU *u = NULL;
        char *scheme = NULL, *host = NULL, *port = NULL, *user = NULL, *pass = NULL;
        bool ok = false;

        if (!url || strlen(url) > URL_MAX || util_has_ctl(url, false) || !prefix_ci(url, "https://"))
                return false;
        /* Characters that have no business in the URL and could confuse a
         * reader or an HTML attribute. */
        if (strpbrk(url, " \"'<>\\`{}|^"))
                return false;
        for (const unsigned char *c = (const unsigned char *) url; *c; c++)
                if (*c >= 0x80)
                        return false;
        u = curl_url();
        if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
                goto out;
        if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK || !util_streq_ci(scheme, "https"))
                goto out;
        /* "https://admin.microsoft.com@evil.example" has user info: refuse. */
        if (curl_url_get(u, CURLUPART_USER, &user, 0) != CURLUE_NO_USER ||
            curl_url_get(u, CURLUPART_PASSWORD, &pass, 0) != CURLUE_NO_PASSWORD)
                goto out;
        CURLUcode pc = curl_url_get(u, CURLUPART_PORT, &port, 0);
        if ((pc == CURLUE_OK && strcmp(port, "443") != 0) || (pc != CURLUE_OK && pc != CURLUE_NO_PORT))
                goto out;
        if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
                goto out;
        if (n_hosts == 0 || !hosts) {
                for (size_t i = 0; i < url_n_link_hosts; i++)
                        ok = ok || util_streq_ci(host, url_link_hosts[i]);
        } else {
                for (size_t i = 0; i < n_hosts; i++)
                        ok = ok || (hosts[i] && util_streq_ci(host, hosts[i]));
        }
out:
        curl_free(scheme);
        curl_free(host);
        curl_free(port);
        curl_free(user);
        curl_free(pass);
        curl_url_cleanup(u);
        return ok;
}
