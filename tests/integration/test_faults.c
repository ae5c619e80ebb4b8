/* SPDX-License-Identifier: MIT */
/*
 * Fault matrix: the real partnerd (--once) against the fake platform with a
 * scripted fault on one route (/_fake/fault), or against a misbehaving SMTP
 * server, then again once the fault has cleared.  Routes: orders list,
 * template, the single-order GET (the re-read before Process: run 1 must
 * not call Process at all), process, buyer contact, token (also a refused
 * secret), customer check (by tenant id and by domain, also throttled for
 * the whole run), and SMTP.  Faults: 500, 502/503 bursts, 429 with Retry-After, connection
 * refused, reset, truncated body, stall (no byte until the timeout), bodies
 * that are malformed JSON, JSON of the wrong types, 64 MiB (the 16 MiB cap),
 * invalid UTF-8, an unexpected 418, a token that expires mid-cycle; SMTP
 * 421, 451, 550 for one recipient, a connection dropped after DATA, the
 * server down.  And the world around one run (issue 12): two --once on one
 * state directory at once, the state directory on a full disk, and a
 * SIGHUP to the daemon in the middle of a cycle while SMTP fails (every
 * mail queued then is delivered by the same daemon once SMTP is back).
 *
 * Invariants after every case: partnerd exits 0 or 1 (never a signal, never
 * a hang), peak RSS bounded, one warning/error line naming the fault, no
 * Process answered 200 twice and none on a Draft, at most one POST per
 * order in the faulted run (never re-sent by the transport), a refused
 * Process POSTed once and never again, and once the fault has
 * cleared every blocked customer has its request and every accepted one is
 * processed and told.  A summary table closes the run.
 *
 * FAULTS_ONLY=substring runs the matching cases only.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <cmocka.h>

#include <jansson.h>

#include "harness.h"
#include "invariants.h"
#include "pdrun.h"
#include "smtp.h"
#include "util.h"

#define SERIES          3001
#define RUN_TIMEOUT_MS  90000
/* partnerd holds the body cap (16 MiB) plus its own footprint; buffering the
 * fake's 64 MiB body would take far more.  Under ASan (shadow memory and the
 * quarantine of freed blocks) the footprint reached 160 MiB in the "smtp
 * down" case once the cluster and counter code landed; the plain build's
 * 56 MiB stays the tight bound. */
#if defined(__SANITIZE_ADDRESS__)
#define RSS_LIMIT_KB    (192L * 1024)
#else
#define RSS_LIMIT_KB    (56L * 1024)
#endif
/* The outbox retries a failed mail after this long (first backoff step). */
#define OUTBOX_RETRY_S  61

enum { C_PENDING, C_ACCEPTED, C_DOMAIN, N_CUST };

static const struct inv_customer CUST[N_CUST] = {
        [C_PENDING] = { .name = "Pending Faults Ltd", .domain = "pending-faults.onmicrosoft.com",
                        .tenant_id = "1f1f1f1f-0000-4000-8000-000000000001", .n_querying = 1, .n_draft = 1 },
        [C_ACCEPTED] = { .name = "Accepted Faults Inc", .domain = "accepted-faults.onmicrosoft.com",
                         .tenant_id = "2f2f2f2f-0000-4000-8000-000000000002", .n_querying = 1,
                         .accepted = true },
        [C_DOMAIN] = { .name = "Domain Faults AG", .domain = "domain-faults.onmicrosoft.com",
                       .tenant_id = "3f3f3f3f-0000-4000-8000-000000000003", .n_querying = 1,
                       .accepted = true, .order_without_tenant = true },
};

enum smtp_fault { S_NONE, S_421, S_451, S_550_ONE, S_DROP, S_DOWN };

/* How run 1 runs: one --once (default), two at once, --once on a full
 * disk, or the daemon reloaded mid-cycle. */
enum run_kind { K_ONCE = 0, K_CONCURRENT, K_DISK_FULL, K_SIGHUP };

struct fcase {
        const char *name;
        const char *faults[3];      /* JSON for /_fake/fault, run 1 only */
        enum smtp_fault smtp;
        bool fake_down;             /* the platform refuses connections in run 1 */
        bool short_token;           /* tokens live 1 s; one check waits 2.5 s */
        /* a warning/error line of run 1 has every one of these words */
        const char *needles[3];
        bool info_ok;               /* an info line will do */
        bool clean_run1;            /* the fault is absorbed: run 1 does everything */
        bool slow;                  /* also run under valgrind (a subset: one per kind) */
        /* Process refused for good (a 4xx other than "moved on"): one POST
         * per order, which stays Querying, never confirmed */
        bool refused;
        /* the secrets (FAULT_TOKEN, FAULT_SECRET) appear in no output of run
         * 1 and in no file of the state directory */
        bool no_secret;
        /* run 1 with http_proxy & co. pointing at a listener of ours: nothing
         * may connect to it */
        bool proxy_env;
        /* run 1 logs exactly one warning line with every one of these */
        const char *warn_once[2];
        const char *mail_extra;     /* extra [mail] lines, e.g. to reach a route */
        bool no_process_run1;       /* run 1 must not call Process (it could not re-read) */
        enum run_kind kind;
};

/* The scenario's secrets, long and unlike any word. */
#define FAULT_TOKEN  "idt:TKN-3001-0001:faults-mkt-7c1e9a"
#define FAULT_SECRET "faults-pc-secret-4d2a8b"
/* An error body that quotes the token (RFC 7807 detail), and one where it
 * straddles the 300-byte cut of a quoted error. */
#define ECHO_DETAIL  "{\\\"title\\\":\\\"Bad Request\\\",\\\"detail\\\":\\\"token " FAULT_TOKEN " is not valid\\\"}"
#define PAD50        "xxxxxxxxx xxxxxxxxx xxxxxxxxx xxxxxxxxx xxxxxxxxx "
/* "HTTP 400 Bad Request: " (22 bytes) + the body, cut at 300 bytes: the
 * token starts at byte 245 of the body, so an unscrubbed cut would keep
 * "idt:TKN-3001-0001:faults-mkt" and drop the rest. */
#define ECHO_CUT     PAD50 PAD50 PAD50 PAD50 "xxxxxxxxx xxxxxxxxx xxxxxxxxx xxxxxxxxx xxxx " FAULT_TOKEN " tail"
/* One hostile order put first on the list page (fake action "inject"). */
#define BAD_ID       "ORD-3001-9999-0001"
#define BAD_DUP      "{\\\"id\\\":\\\"" BAD_ID "\\\",\\\"status\\\":\\\"Querying\\\",\\\"status\\\":\\\"Draft\\\"}"
/* {"id":"ORD-3001-9999-0001","status":"Querying","product":{"name":"<ff fe>"}} */
#define BAD_UTF8_ORDER_HEX "7b226964223a224f52442d333030312d393939392d30303031222c22737461747573223a225175657279696e67222c" \
                           "2270726f64756374223a7b226e616d65223a22fffe227d7d"
/* <BOM>{"id":"ORD-3001-9999-0001","status":"Querying"} */
#define BAD_BOM_ORDER_HEX  "efbbbf7b226964223a224f52442d333030312d393939392d30303031222c22737461747573223a225175657279696e67227d"

/* {"a":"<ff fe>..."} : invalid UTF-8 in a JSON string */
#define BAD_UTF8_HEX "7b2264617461223a5b7b226964223a224f52442dfffe227d5d7d"

static const struct fcase CASES[] = {
        /* ---- orders list ---- */
        { "orders 500", { "{\"route\":\"orders\",\"status\":500,\"times\":0}" }, .needles = { "list orders", "500" }, .slow = true },
        { "orders 502 burst", { "{\"route\":\"orders\",\"status\":502,\"times\":2}" }, .clean_run1 = true },
        { "orders 503 burst", { "{\"route\":\"orders\",\"status\":503,\"times\":3}" }, .clean_run1 = true },
        { "orders 429 Retry-After", { "{\"route\":\"orders\",\"status\":429,\"retry_after\":\"1\",\"times\":1}" },
          .clean_run1 = true },
        { "orders 429 forever", { "{\"route\":\"orders\",\"status\":429,\"retry_after\":\"1\",\"times\":0}" },
          .needles = { "list orders", "429" } },
        { "orders reset", { "{\"route\":\"orders\",\"action\":\"reset\",\"times\":0}" },
          .needles = { "list orders" } },
        { "orders truncated", { "{\"route\":\"orders\",\"action\":\"truncate\",\"times\":0}" },
          .needles = { "list orders" } },
        { "orders stall", { "{\"route\":\"orders\",\"action\":\"stall\",\"delay_ms\":5000,\"times\":0}" },
          .needles = { "list orders", "time" }, .slow = true },
        { "orders malformed JSON", { "{\"route\":\"orders\",\"status\":200,\"body\":\"{\\\"data\\\":[{\\\"id\\\":\",\"times\":0}" },
          .needles = { "list orders" } },
        { "orders wrong types", { "{\"route\":\"orders\",\"status\":200,\"body\":\"" "{\\\"$meta\\\":{\\\"pagination\\\":{\\\"offset\\\":\\\"x\\\",\\\"limit\\\":[],\\\"total\\\":-5}},\\\"data\\\":{\\\"id\\\":7}}" "\",\"times\":0}" },
          .needles = { "list orders" } },
        { "orders 64 MiB body", { "{\"route\":\"orders\",\"action\":\"oversize\",\"times\":0}" },
          .needles = { "list orders" }, .slow = true },
        /* the invalid UTF-8 is inside the one order: that order is skipped,
         * not the page (issue 12.11) */
        { "orders invalid UTF-8", { "{\"route\":\"orders\",\"status\":200,\"body_hex\":\"" BAD_UTF8_HEX "\",\"times\":0}" },
          .needles = { "skipped", "invalid UTF-8" }, .slow = true },
        { "orders 418", { "{\"route\":\"orders\",\"status\":418,\"times\":0}" }, .needles = { "list orders", "418" } },
        /* issue 12.7: a server echoes the token; 12.11: one bad order */
        { "orders 400 echoes the token", { "{\"route\":\"orders\",\"status\":400,\"body\":\"" ECHO_DETAIL "\",\"times\":0}" },
          .needles = { "list orders", "[redacted]" }, .no_secret = true, .slow = true },
        { "orders 400 token past the cut", { "{\"route\":\"orders\",\"status\":400,\"body\":\"" ECHO_CUT "\",\"times\":0}" },
          .needles = { "list orders", "400" }, .no_secret = true },
        { "bad order: a key twice", { "{\"route\":\"orders\",\"action\":\"inject\",\"body\":\"" BAD_DUP "\",\"times\":0}" },
          .clean_run1 = true, .warn_once = { BAD_ID, "a key appears twice" }, .slow = true },
        { "bad order: invalid UTF-8", { "{\"route\":\"orders\",\"action\":\"inject\",\"body_hex\":\"" BAD_UTF8_ORDER_HEX "\",\"times\":0}" },
          .clean_run1 = true, .warn_once = { BAD_ID, "invalid UTF-8" } },
        { "bad order: byte order mark", { "{\"route\":\"orders\",\"action\":\"inject\",\"body_hex\":\"" BAD_BOM_ORDER_HEX "\",\"times\":0}" },
          .clean_run1 = true, .warn_once = { BAD_ID, "invalid JSON" } },
        /* issue 12.8: proxy variables from the environment are ignored */
        { "proxy variables", { NULL }, .proxy_env = true, .clean_run1 = true, .slow = true },
        { "platform down", { NULL }, .fake_down = true, .needles = { "list orders" }, .slow = true },

        /* ---- template ---- */
        { "template 500", { "{\"route\":\"template\",\"status\":500,\"times\":0}" }, .needles = { "template", "500" } },
        { "template 503 burst", { "{\"route\":\"template\",\"status\":503,\"times\":2}" }, .clean_run1 = true },
        { "template stall", { "{\"route\":\"template\",\"action\":\"stall\",\"delay_ms\":5000,\"times\":0}" },
          .needles = { "template", "time" } },
        { "template truncated", { "{\"route\":\"template\",\"action\":\"truncate\",\"times\":0}" },
          .needles = { "template" }, .slow = true },
        /* not a JSON string: read as raw markdown, the URL comes from the order */
        { "template wrong type", { "{\"route\":\"template\",\"status\":200,\"body\":\"{\\\"text\\\":42}\",\"times\":0}" },
          .clean_run1 = true },
        { "template 64 MiB body", { "{\"route\":\"template\",\"action\":\"oversize\",\"times\":0}" },
          .needles = { "template" } },
        { "template invalid UTF-8", { "{\"route\":\"template\",\"status\":200,\"body_hex\":\"22" "41ccff2e" "22\",\"times\":0}" },
          .clean_run1 = true },

        /* ---- process ---- */
        { "process 500", { "{\"route\":\"process\",\"status\":500,\"times\":0}" }, .needles = { "Process", "500" }, .slow = true },
        { "process 502 burst", { "{\"route\":\"process\",\"status\":502,\"times\":1}" }, .needles = { "Process", "502" } },
        { "process 429 Retry-After", { "{\"route\":\"process\",\"status\":429,\"retry_after\":\"1\",\"times\":1}" },
          .needles = { "Process", "429" } },
        { "process reset", { "{\"route\":\"process\",\"action\":\"reset\",\"times\":0}" }, .needles = { "Process" } },
        { "process truncated (applied)", { "{\"route\":\"process\",\"action\":\"truncate\",\"times\":0}" },
          .needles = { "Process" }, .slow = true },
        { "process stall", { "{\"route\":\"process\",\"action\":\"stall\",\"delay_ms\":5000,\"times\":0}" },
          .needles = { "Process", "time" } },
        { "process 200 wrong types", { "{\"route\":\"process\",\"status\":200,\"body\":\"" "{\\\"id\\\":[1],\\\"status\\\":{\\\"a\\\":null},\\\"audit\\\":7}" "\",\"times\":0}" },
          .needles = { "Process" } },
        { "process 418", { "{\"route\":\"process\",\"status\":418,\"times\":0}" }, .needles = { "Process", "418" },
          .refused = true },
        { "process reset once", { "{\"route\":\"process\",\"action\":\"reset\",\"times\":1}" }, .needles = { "Process" } },
        { "process 422 forever", { "{\"route\":\"process\",\"status\":422,\"times\":0}" },
          .needles = { "refused by the Marketplace", "422" }, .refused = true, .slow = true },
        { "process 409 race", { "{\"route\":\"process\",\"set_status\":\"Processing\",\"times\":0}" },
          .needles = { "moved on" }, .info_ok = true, .clean_run1 = true },
        { "process 404 once", { "{\"route\":\"process\",\"status\":404,\"times\":1}" },
          .needles = { "no longer exists" }, .info_ok = true },
        { "process 64 MiB body (applied)", { "{\"route\":\"process\",\"action\":\"oversize\",\"times\":0}" },
          .needles = { "Process" } },

        /* ---- token ---- */
        { "token 500", { "{\"route\":\"token\",\"status\":500,\"times\":0}" }, .needles = { "500" } },
        { "token 503 burst", { "{\"route\":\"token\",\"status\":503,\"times\":2}" }, .clean_run1 = true },
        { "token stall", { "{\"route\":\"token\",\"action\":\"stall\",\"delay_ms\":5000,\"times\":0}" },
          .needles = { "time" } },
        { "token malformed JSON", { "{\"route\":\"token\",\"status\":200,\"body\":\"{\\\"access_token\\\":\",\"times\":0}" },
          .needles = { "token" } },
        { "token wrong types", { "{\"route\":\"token\",\"status\":200,\"body\":\"" "{\\\"token_type\\\":7,\\\"access_token\\\":[\\\"x\\\"],\\\"expires_in\\\":\\\"soon\\\"}" "\",\"times\":0}" },
          .needles = { "token" } },
        { "token 64 MiB body", { "{\"route\":\"token\",\"action\":\"oversize\",\"times\":0}" },
          .needles = { "token", "larger" } },
        { "token 401 echoes the secret", { "{\"route\":\"token\",\"status\":401,\"body\":\"{\\\"error\\\":\\\"invalid_client\\\",\\\"error_description\\\":\\\"AADSTS7000215: Invalid client secret provided: " FAULT_SECRET "\\\"}\",\"times\":0}" },
          .needles = { "invalid_client", "[redacted]" }, .no_secret = true },
        { "token expires mid-cycle", { "{\"route\":\"customer\",\"action\":\"delay\",\"delay_ms\":2500,\"times\":1}" },
          .short_token = true, .clean_run1 = true, .slow = true },

        /* ---- customer check (tenant id) and customer search (domain) ---- */
        { "customer 500", { "{\"route\":\"customer\",\"status\":500,\"times\":0}" }, .needles = { "relationship", "500" } },
        { "customer 503 burst", { "{\"route\":\"customer\",\"status\":503,\"times\":2}" }, .clean_run1 = true },
        { "customer 429 Retry-After", { "{\"route\":\"customer\",\"status\":429,\"retry_after\":\"1\",\"times\":1}" },
          .clean_run1 = true, .slow = true },
        { "customer reset", { "{\"route\":\"customer\",\"action\":\"reset\",\"times\":0}" },
          .needles = { "relationship" } },
        { "customer stall", { "{\"route\":\"customer\",\"action\":\"stall\",\"delay_ms\":5000,\"times\":0}" },
          .needles = { "relationship", "time" } },
        { "customer wrong types", { "{\"route\":\"customer\",\"status\":200,\"body\":\"" "{\\\"id\\\":false,\\\"relationshipToPartner\\\":42,\\\"companyProfile\\\":\\\"x\\\"}" "\",\"times\":0}" },
          .needles = { "still pending", "HTTP 200" }, .info_ok = true },   /* not "reseller": pending */
        { "customer 64 MiB body", { "{\"route\":\"customer\",\"action\":\"oversize\",\"times\":0}" },
          .needles = { "relationship" } },
        { "customer invalid UTF-8", { "{\"route\":\"customer\",\"status\":200,\"body_hex\":\"" BAD_UTF8_HEX "\",\"times\":0}" },
          .needles = { "relationship" } },
        { "customer 418", { "{\"route\":\"customer\",\"status\":418,\"times\":0}" }, .needles = { "relationship", "418" } },
        { "customers search 500", { "{\"route\":\"customers\",\"status\":500,\"times\":0}" },
          .needles = { "relationship", "500" } },
        { "customers search malformed", { "{\"route\":\"customers\",\"status\":200,\"body\":\"{\\\"items\\\":[{\",\"times\":0}" },
          .needles = { "relationship" }, .slow = true },

        /* ---- SMTP ---- */
        { "smtp 421", { NULL }, .smtp = S_421, .needles = { "421" } },
        { "smtp 451", { NULL }, .smtp = S_451, .needles = { "451" }, .slow = true },
        { "smtp 550 one recipient", { NULL }, .smtp = S_550_ONE, .needles = { "550" } },
        { "smtp drop after DATA", { NULL }, .smtp = S_DROP, .needles = { "Mail" }, .slow = true },
        { "smtp down", { NULL }, .smtp = S_DOWN, .needles = { "Mail" } },

        /* ---- the single-order GET: the re-read before Process ---- */
        { "order (re-read) 500", { "{\"route\":\"order\",\"status\":500,\"times\":0}" },
          .needles = { "before Process", "500" }, .no_process_run1 = true },
        { "order (re-read) reset", { "{\"route\":\"order\",\"action\":\"reset\",\"times\":0}" },
          .needles = { "before Process" }, .slow = true, .no_process_run1 = true },
        { "order (re-read) stall", { "{\"route\":\"order\",\"action\":\"stall\",\"delay_ms\":5000,\"times\":0}" },
          .needles = { "before Process", "time" }, .no_process_run1 = true },
        /* a 404 on the re-read: the order is gone, or the gateway is wrong
         * for a moment; the next cycle's list shows it again */
        { "order (re-read) 404 once", { "{\"route\":\"order\",\"status\":404,\"times\":1}" }, .smtp = S_NONE },
        { "order (re-read) truncated", { "{\"route\":\"order\",\"action\":\"truncate\",\"times\":0}" },
          .needles = { "before Process" }, .no_process_run1 = true },

        /* ---- buyer contact (only read with notify_order_contacts) ---- */
        { "buyer 500", { "{\"route\":\"buyer\",\"status\":500,\"times\":0}" },
          .needles = { "contact of buyer", "500" }, .clean_run1 = true, .mail_extra = "notify_order_contacts = true\n" },
        { "buyer reset", { "{\"route\":\"buyer\",\"action\":\"reset\",\"times\":0}" },
          .needles = { "contact of buyer" }, .clean_run1 = true, .slow = true,
          .mail_extra = "notify_order_contacts = true\n" },
        { "buyer malformed JSON", { "{\"route\":\"buyer\",\"status\":200,\"body\":\"{\\\"contact\\\":\",\"times\":0}" },
          .needles = { "contact of buyer" }, .clean_run1 = true, .mail_extra = "notify_order_contacts = true\n" },

        /* ---- Partner Center throttling that lasts the whole run ---- */
        { "customer 429 lasts", { "{\"route\":\"customer\",\"status\":429,\"retry_after\":\"1\",\"times\":0}" },
          .needles = { "relationship", "429" } },
        { "customers search 429 lasts", { "{\"route\":\"customers\",\"status\":429,\"retry_after\":\"1\",\"times\":0}" },
          .needles = { "relationship", "429" } },

        /* ---- the token endpoint refuses the secret (Entra: 401
         * invalid_client, AADSTS7000215; tests/fakes/README.md) ---- */
        { "token 401 invalid_client", { "{\"route\":\"token\",\"status\":401,\"body\":\""
          "{\\\"error\\\":\\\"invalid_client\\\",\\\"error_description\\\":\\\"AADSTS7000215: Invalid client "
          "secret provided.\\\",\\\"error_codes\\\":[7000215]}\",\"times\":0}" },
          .needles = { "invalid_client" }, .slow = true, .no_process_run1 = true },
        /* ---- the world around the run (issue 12) ---- */
        /* the list is slow, so the two runs overlap: one works, one exits 75 */
        { "concurrent --once", { "{\"route\":\"orders\",\"action\":\"delay\",\"delay_ms\":1500,\"times\":2}" },
          .kind = K_CONCURRENT, .needles = { "in use by", "PID" }, .clean_run1 = true },
        { "disk full then freed", { NULL }, .kind = K_DISK_FULL, .needles = { "No space left on device" } },
        /* the list is slow, so the SIGHUP lands before any mail is queued */
        { "SIGHUP mid-cycle, smtp 451", { "{\"route\":\"orders\",\"action\":\"delay\",\"delay_ms\":2000,\"times\":1}" },
          .smtp = S_451, .kind = K_SIGHUP, .needles = { "451" } },
};
#define N_CASES (sizeof(CASES) / sizeof(CASES[0]))

struct result {
        const char *name;
        int status1, status2;
        long rss1_kb;
        size_t violations;
        char line[200];
};

struct cenv {
        const struct fcase *fc;
        struct inv_world w;
        int smtp_port;
        const char *domains[N_CUST];
        struct result *res;
        int needle_run;             /* the run whose log names the fault (0: the last) */
        pid_t daemon;               /* K_SIGHUP: still running after run 1 */
        size_t queued;              /* K_SIGHUP: mails it queued in its first cycle */
};

#define VIOLATION(e, ...)                                                         \
        do {                                                                      \
                fprintf(stderr, "faults: [%s] VIOLATION: ", (e)->fc->name);       \
                fprintf(stderr, __VA_ARGS__);                                     \
                fputc('\n', stderr);                                              \
                (e)->res->violations++;                                           \
        } while (0)

static int smtp_start(struct cenv *e, enum smtp_fault f, struct harness_smtp_options *o) {
        *o = (struct harness_smtp_options) { .port = e->smtp_port };
        switch (f) {
        case S_421: o->reply_code = 421; break;
        case S_451: o->fail_data = 1000; break;
        case S_550_ONE: o->refuse[0] = "admin2@example.test"; break;
        case S_DROP: o->drop_after_data = 1000; break;
        default: break;
        }
        int r = harness_smtp_start(o, &e->w.smtp);
        if (r >= 0)
                e->smtp_port = harness_smtp_port(e->w.smtp);
        return r;
}

/* A port nothing listens on (bound, then closed). */
static int closed_port(void) {
        struct harness_smtp *s = NULL;
        if (harness_smtp_start(NULL, &s) < 0)
                return -1;
        int p = harness_smtp_port(s);
        harness_smtp_stop(s);
        return p;
}

static void cenv_free(struct cenv *e) {
        if (!e)
                return;
        if (e->daemon > 0)
                (void) harness_kill(e->daemon, SIGKILL, 2000);
        inv_world_stop(&e->w);
        free(e);
}

static struct cenv *cenv_new(const struct fcase *fc, struct result *res) {
        struct cenv *e = calloc(1, sizeof(*e));
        struct harness_smtp_options so = { 0 };
        char smtp_url[64];
        json_t *sc;

        assert_non_null(e);
        e->fc = fc;
        e->res = res;
        res->name = fc->name;
        for (size_t i = 0; i < N_CUST; i++)
                e->domains[i] = CUST[i].domain;
        sc = inv_scenario_new(CUST, N_CUST, SERIES);
        assert_non_null(sc);
        if (fc->short_token)
                json_object_set_new(json_object_get(sc, "microsoft"), "expires_in", json_integer(1));
        json_object_set_new(json_object_get(sc, "marketplace"), "token", json_string(FAULT_TOKEN));
        json_object_set_new(json_object_get(sc, "microsoft"), "client_secret", json_string(FAULT_SECRET));
        /* the server is started here (faulty or down), not by the world */
        if (fc->smtp == S_DOWN)
                e->smtp_port = closed_port();
        else
                assert_int_equal(smtp_start(e, fc->smtp, &so), 0);
        assert_true(e->smtp_port > 0);
        snprintf(smtp_url, sizeof(smtp_url), "smtp://127.0.0.1:%d", e->smtp_port);
        struct harness_pd_options o = {
                .smtp_url = smtp_url,
                .mail_extra = fc->mail_extra,
                /* under valgrind a healthy request takes longer than 1 s */
                .daemon_extra = inv_slow_mode() ? "http_timeout = 3s\nconnect_timeout = 3s\n"
                                                : "http_timeout = 2s\nconnect_timeout = 2s\n",
        };
        struct harness_smtp *server = e->w.smtp;
        assert_int_equal(inv_world_start(&e->w, sc, NULL, NULL, &o), 0);
        e->w.smtp = server;
        json_decref(sc);
        return e;
}

/* A loopback listener that only counts who connects (the connections
 * wait in its backlog). */
static int listener_open(int *ret_port) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t sl = sizeof(sa);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(fd, 64) < 0 ||
            getsockname(fd, (struct sockaddr *) &sa, &sl) < 0) {
                if (fd >= 0)
                        close(fd);
                return -1;
        }
        *ret_port = ntohs(sa.sin_port);
        return fd;
}

static size_t listener_count(int fd) {
        size_t n = 0;
        int c;
        while ((c = accept4(fd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
                close(c);
                n++;
        }
        return n;
}

/* Runs --once; status and peak RSS; never lets it hang.  With proxy_env,
 * every proxy variable libcurl reads points at a listener of ours. */
static int run(struct cenv *e, long *ret_rss) {
        const char *args[] = { "--once", NULL };
        int status = -1, lport = 0, lfd = -1;
        long rss = 0;
        char env[8][64];
        const char *envp[9] = { NULL };
        if (e->fc->proxy_env && e->w.pd->runs == 0) {
                static const char *const names[] = { "http_proxy", "https_proxy", "all_proxy", "smtp_proxy",
                                                     "HTTPS_PROXY", "ALL_PROXY", "no_proxy", "NO_PROXY" };
                lfd = listener_open(&lport);
                assert_true(lfd >= 0);
                for (size_t i = 0; i < 8; i++) {
                        if (i < 6)
                                snprintf(env[i], sizeof(env[i]), "%s=http://127.0.0.1:%d", names[i], lport);
                        else    /* nothing is exempt */
                                snprintf(env[i], sizeof(env[i]), "%s=", names[i]);
                        envp[i] = env[i];
                }
        }
        pid_t pid = harness_pd_spawn_env(e->w.pd, args, envp);
        assert_true(pid > 0);
        int r = inv_wait_rusage(pid, RUN_TIMEOUT_MS, &status, &rss);
        if (r == -ETIMEDOUT) {
                VIOLATION(e, "run %d hung (killed after %d ms)", e->w.pd->runs, RUN_TIMEOUT_MS);
                (void) harness_kill(pid, SIGKILL, 2000);
                return -1;
        }
        assert_int_equal(r, 0);
        if (lfd >= 0) {
                size_t n = listener_count(lfd);
                close(lfd);
                if (n)
                        VIOLATION(e, "%zu connections to the proxy named by http_proxy & co.", n);
        }
        if (status != 0 && status != 1)
                VIOLATION(e, "run %d ended with status %d (a signal?)", e->w.pd->runs, status);
        if (ret_rss)
                *ret_rss = rss;
        return status;
}

/* A warning or error line (<4> or more urgent) with every needle; copied to res. */
static bool find_line(struct cenv *e, int run_no, const char *const *needles, bool info_ok) {
        char *err = harness_pd_output(e->w.pd, run_no, true);
        bool found = err && inv_find_log_line(err, info_ok ? 6 : 4, needles, e->res->line, sizeof(e->res->line));
        free(err);
        return found;
}

static void dump_err(struct cenv *e, int run_no) {
        char *err = harness_pd_output(e->w.pd, run_no, true);
        fprintf(stderr, "faults: [%s] stderr of run %d:\n%s\n", e->fc->name, run_no, err ? err : "");
        free(err);
}

/* Where a secret was found: stdout/stderr of run_no or a state file. */
static void check_no_secret(struct cenv *e, int run_no) {
        static const char *const secrets[] = { FAULT_TOKEN, FAULT_SECRET };
        char *texts[2] = { harness_pd_output(e->w.pd, run_no, false), harness_pd_output(e->w.pd, run_no, true) };
        char path[1024];
        snprintf(path, sizeof(path), "%s/state.json", e->w.pd->state_dir);
        char *state = NULL;
        (void) util_read_file(path, 64u << 20, &state, NULL);
        const char *where[3] = { "stdout", "stderr", "state.json" };
        const char *data[3] = { texts[0], texts[1], state };
        for (size_t i = 0; i < 3; i++)
                for (size_t k = 0; k < 2; k++)
                        if (data[i] && strstr(data[i], secrets[k]))
                                VIOLATION(e, "the secret %s is in the %s of run %d", secrets[k], where[i], run_no);
        /* nor any prefix of 8 bytes or more (a cut quote) */
        for (size_t i = 0; i < 2; i++)
                if (data[i] && strstr(data[i], "faults-mkt"))
                        VIOLATION(e, "a piece of the token is in the %s of run %d", where[i], run_no);
        free(texts[0]);
        free(texts[1]);
        free(state);
}

/* Exactly one warning line naming the bad order. */
static void check_warn_once(struct cenv *e, int run_no) {
        char *err = harness_pd_output(e->w.pd, run_no, true);
        const char *needles[] = { e->fc->warn_once[0], e->fc->warn_once[1], NULL };
        size_t n = inv_count_lines(err, needles);
        if (n != 1 || !inv_find_log_line(err, 4, needles, e->res->line, sizeof(e->res->line))) {
                VIOLATION(e, "%zu warning lines naming %s (%s), want 1", n, needles[0], needles[1]);
                dump_err(e, run_no);
        }
        free(err);
}

/* The end state every case must reach once the fault has cleared. */
static void check_end_state(struct cenv *e, bool after_run1) {
        json_t *log = harness_fake_log(&e->w.fake);
        struct inv_mail_tally t;
        char id[24];

        assert_non_null(log);
        assert_int_equal(inv_mail_tally(e->w.smtp, 0, e->domains, N_CUST, &t), 0);
        for (size_t ci = 0; ci < N_CUST; ci++) {
                const struct inv_customer *c = &CUST[ci];
                for (int k = 0; k < c->n_querying + c->n_draft; k++) {
                        bool draft = k >= c->n_querying;
                        inv_order_id(id, SERIES, ci, k);
                        /* a faulted 200 does not move the order: count transitions */
                        int rev = inv_fake_revision(&e->w.fake, id);
                        size_t any = inv_process_posts(log, id, 0);
                        char *st = harness_fake_order_status(&e->w.fake, id);
                        bool refused = e->fc->refused && c->accepted;
                        const char *want = draft ? "Draft" : c->accepted && !refused ? "Processing" : "Querying";
                        if (refused && any != 1)
                                VIOLATION(e, "refused order %s was POSTed %zu times, want 1", id, any);
                        if (rev < 1 || rev > 2)
                                VIOLATION(e, "order %s moved %d times (revision %d)", id, rev - 1, rev);
                        if (draft && any)
                                VIOLATION(e, "Process called on the Draft %s", id);
                        if (!st || strcmp(st, want) != 0)
                                VIOLATION(e, "order %s is %s, want %s%s", id, st ? st : "?", want,
                                          after_run1 ? " (in the faulted run itself)" : "");
                        free(st);
                }
                if (!c->accepted && inv_mail_count(&t, c->domain, "new-request") < 1)
                        VIOLATION(e, "%s never got its acceptance request", c->domain);
                if (c->accepted && !e->fc->refused && inv_mail_count(&t, c->domain, "confirmation") < 1)
                        VIOLATION(e, "%s was processed but never told", c->domain);
                if (c->accepted && e->fc->refused && inv_mail_count(&t, c->domain, "confirmation") > 0)
                        VIOLATION(e, "%s was told of a Process that was refused", c->domain);
        }
        if (t.unparsed)
                VIOLATION(e, "%zu mails could not be parsed", t.unparsed);
        /* at most one duplicate per faulted run */
        if (inv_mail_duplicates(&t) > 1)
                VIOLATION(e, "%zu duplicate mails", inv_mail_duplicates(&t));
        inv_mail_tally_done(&t);
        json_decref(log);
}

/* Process POSTs per order so far, at most one each (200 or not). */
static void check_one_post_each(struct cenv *e) {
        json_t *log = harness_fake_log(&e->w.fake);
        char id[24];
        assert_non_null(log);
        for (size_t ci = 0; ci < N_CUST; ci++)
                for (int k = 0; k < CUST[ci].n_querying + CUST[ci].n_draft; k++) {
                        size_t n = inv_process_posts(log, inv_order_id(id, SERIES, ci, k), 0);
                        if (n > 1)
                                VIOLATION(e, "Process POSTed %zu times on %s", n, id);
                }
        json_decref(log);
}

/* Two --once on one state directory at once: one runs (0 or 1), the
 * other exits 75 (EX_TEMPFAIL) naming the first one's PID. */
static void run_concurrent(struct cenv *e) {
        const char *args[] = { "--once", NULL };
        int first = e->w.pd->runs + 1, st[2] = { -1, -1 };
        pid_t pid[2];
        for (int i = 0; i < 2; i++) {
                pid[i] = harness_pd_spawn(e->w.pd, args);
                assert_true(pid[i] > 0);
        }
        for (int i = 0; i < 2; i++) {
                long rss = 0;
                if (inv_wait_rusage(pid[i], RUN_TIMEOUT_MS, &st[i], &rss) == -ETIMEDOUT) {
                        VIOLATION(e, "run %d hung (killed after %d ms)", first + i, RUN_TIMEOUT_MS);
                        (void) harness_kill(pid[i], SIGKILL, 2000);
                }
                if (rss > e->res->rss1_kb)
                        e->res->rss1_kb = rss;
        }
        int loser = st[0] == 75 ? 0 : st[1] == 75 ? 1 : -1;
        if (loser < 0 || (st[1 - loser] != 0 && st[1 - loser] != 1))
                VIOLATION(e, "the two runs exited %d and %d: want one 0 or 1 and one 75", st[0], st[1]);
        e->res->status1 = loser < 0 ? st[0] : st[1 - loser];
        e->needle_run = first + (loser < 0 ? 0 : loser);
        if (loser >= 0) {
                char pidtext[32];
                snprintf(pidtext, sizeof(pidtext), "PID %ld", (long) pid[1 - loser]);
                char *err = harness_pd_output(e->w.pd, e->needle_run, true);
                if (!err || !strstr(err, pidtext))
                        VIOLATION(e, "the run that exited 75 does not name %s", pidtext);
                free(err);
        }
        check_one_post_each(e);
}

/* true when this test may mount a tmpfs in a private mount namespace */
static bool mounts_work(void) {
        static int cached = -1;
        if (cached < 0)
                cached = system("unshare -m --propagation private /bin/sh -c "
                                "'mount -t tmpfs -o size=16k tmpfs /mnt' >/dev/null 2>&1") == 0;
        return cached;
}

/* --once with its state directory on a full tmpfs (a private mount
 * namespace): no mail, no Process, whatever could not be recorded. */
static void run_disk_full(struct cenv *e) {
        char *wrap = NULL, *path = NULL, *text = NULL;
        if (!mounts_work()) {
                fprintf(stderr, "faults: [%s] SKIP: unshare -m / mount not permitted here\n", e->fc->name);
                snprintf(e->res->line, sizeof(e->res->line), "skipped: mount not permitted");
                e->res->status1 = 1;
                e->needle_run = -1;
                return;
        }
        assert_true(asprintf(&path, "%s/full.sh", e->w.dir) >= 0);
        assert_true(asprintf(&text, "#!/bin/sh\n# test_faults: partnerd with its state directory on a full disk\n"
                             "if [ -z \"$PD_IN_NS\" ]; then\n"
                             "  PD_IN_NS=1 exec unshare -m --propagation private /bin/sh \"$0\" \"$@\"\n"
                             "fi\n"
                             "mkdir -p '%s' && mount -t tmpfs -o size=64k tmpfs '%s' || exit 99\n"
                             "dd if=/dev/zero of='%s/filler' bs=1k count=1024 2>/dev/null\n"
                             "exec \"$@\"\n", e->w.pd->state_dir, e->w.pd->state_dir, e->w.pd->state_dir) >= 0);
        assert_int_equal(util_write_file_atomic(path, text, strlen(text), 0755), 0);
        const char *old = getenv("PARTNERD_WRAPPER");
        char *saved = old ? strdup(old) : NULL;
        assert_true(asprintf(&wrap, "/bin/sh %s%s%s", path, saved ? " " : "", saved ? saved : "") >= 0);
        setenv("PARTNERD_WRAPPER", wrap, 1);
        e->res->status1 = run(e, &e->res->rss1_kb);
        if (saved)
                setenv("PARTNERD_WRAPPER", saved, 1);
        else
                unsetenv("PARTNERD_WRAPPER");
        json_t *log = harness_fake_log(&e->w.fake);
        if (inv_process_posts(log, NULL, 0) != 0)
                VIOLATION(e, "Process called although its intent could not be saved");
        json_decref(log);
        if (harness_smtp_count(e->w.smtp) != 0)
                VIOLATION(e, "mail sent from a full disk");
        free(saved);
        free(wrap);
        free(path);
        free(text);
}

static bool wait_log(struct cenv *e, int run_no, const char *needle, int timeout_ms) {
        for (int waited = 0; waited <= timeout_ms; waited += 100) {
                char *err = harness_pd_output(e->w.pd, run_no, true);
                bool found = err && strstr(err, needle);
                free(err);
                if (found)
                        return true;
                usleep(100 * 1000);
        }
        return false;
}

/* The daemon, sent SIGHUP while its first cycle lists the orders (the list
 * is slow), with SMTP failing: it keeps running after run 1. */
static void run_sighup(struct cenv *e) {
        const char *none[] = { NULL };
        e->daemon = harness_pd_spawn(e->w.pd, none);
        assert_true(e->daemon > 0);
        e->needle_run = e->w.pd->runs;
        if (!wait_log(e, e->needle_run, " started", 30000))
                VIOLATION(e, "the daemon did not start");
        assert_int_equal(kill(e->daemon, SIGHUP), 0);
        if (!wait_log(e, e->needle_run, "Cycle ", RUN_TIMEOUT_MS) ||
            !wait_log(e, e->needle_run, "Configuration reloaded", 30000))
                VIOLATION(e, "no cycle end or no reload after SIGHUP");
        char *err = harness_pd_output(e->w.pd, e->needle_run, true);
        e->queued = err ? inv_count_lines(err, (const char *const[]) { "Queued ", NULL }) : 0;
        free(err);
        if (e->queued == 0)
                VIOLATION(e, "the reloaded cycle queued no mail");
        e->res->status1 = 0;
}

/* After SMTP is back and the outbox's retry is due: the same daemon
 * delivers everything it queued before the reload, then stops cleanly. */
static void finish_sighup(struct cenv *e) {
        size_t got = 0;
        for (int waited = 0; waited <= 40000 && got < e->queued; waited += 200) {
                got = harness_smtp_count(e->w.smtp);
                usleep(200 * 1000);
        }
        if (got < e->queued) {
                VIOLATION(e, "the daemon delivered %zu of the %zu mails queued in the reloaded cycle", got,
                          e->queued);
                dump_err(e, e->needle_run);
        }
        int st = harness_kill(e->daemon, SIGTERM, 20000);
        if (st != 0)
                VIOLATION(e, "the daemon exited %d on SIGTERM", st);
        e->daemon = 0;
        check_one_post_each(e);
}

static void add_faults(struct cenv *e) {
        for (size_t i = 0; i < 3 && e->fc->faults[i]; i++)
                assert_int_equal(harness_fake_fault(&e->w.fake, e->fc->faults[i]), 0);
}

/* Run 1 with the fault; returns after checking what run 1 alone must show. */
static void run_faulted(struct cenv *e) {
        int port = e->w.fake.port;
        char portarg[16];

        if (e->fc->fake_down) {
                assert_int_equal(harness_fake_stop(&e->w.fake), 0);
                e->w.fake.pid = 0;
        }
        add_faults(e);
        if (e->fc->kind == K_CONCURRENT)
                run_concurrent(e);
        else if (e->fc->kind == K_DISK_FULL)
                run_disk_full(e);
        else if (e->fc->kind == K_SIGHUP)
                run_sighup(e);
        else {
                e->res->status1 = run(e, &e->res->rss1_kb);
                /* neither partnerd nor libcurl re-sends a Process */
                if (!e->fc->fake_down)
                        check_one_post_each(e);
        }
        if (!inv_slow_mode() && e->res->rss1_kb > RSS_LIMIT_KB)
                VIOLATION(e, "peak RSS %ld KiB > %ld KiB", e->res->rss1_kb, RSS_LIMIT_KB);
        int needle_run = e->needle_run ? e->needle_run : e->w.pd->runs;
        if (e->fc->needles[0] && needle_run > 0 && !find_line(e, needle_run, e->fc->needles, e->fc->info_ok)) {
                VIOLATION(e, "no warning/error line naming the fault (%s%s%s%s%s)", e->fc->needles[0],
                          e->fc->needles[1] ? ", " : "", e->fc->needles[1] ? e->fc->needles[1] : "",
                          e->fc->needles[2] ? ", " : "", e->fc->needles[2] ? e->fc->needles[2] : "");
                dump_err(e, needle_run);
        }
        if (e->fc->fake_down) {
                /* back on the same port, the same scenario: nothing happened */
                snprintf(portarg, sizeof(portarg), "%d", port);
                const char *args[] = { "--port", portarg, NULL };
                assert_int_equal(harness_fake_start_args(e->w.scenario, args, &e->w.fake), 0);
                assert_int_equal(e->w.fake.port, port);
        }
        if (e->fc->short_token) {
                /* the scenario happened: a check was refused for an expired token */
                json_t *log = harness_fake_log(&e->w.fake);
                if (inv_log_count(log, "GET", "/v1/customers", 401) < 1 ||
                    inv_log_count(log, "POST", "/oauth2/token", 0) < 2)
                {
                        VIOLATION(e, "no check was refused for an expired token, or no new token was fetched");
                        size_t i;
                        json_t *r;
                        json_array_foreach(log, i, r) {
                                char *line = json_dumps(r, JSON_COMPACT);
                                fprintf(stderr, "faults: [%s] request %s\n", e->fc->name, line ? line : "?");
                                free(line);
                        }
                }
                json_decref(log);
        }
        if (e->fc->no_secret)
                check_no_secret(e, e->w.pd->runs);
        if (e->fc->warn_once[0])
                check_warn_once(e, e->w.pd->runs);
        if (e->fc->no_process_run1) {
                json_t *log = harness_fake_log(&e->w.fake);
                size_t posts = log ? inv_process_posts(log, NULL, 0) : 0;
                if (!log || posts)
                        VIOLATION(e, "%zu Process calls in a run that could not re-read the orders", posts);
                json_decref(log);
        }
        if (e->fc->clean_run1) {
                check_end_state(e, true);
                if (e->res->violations)
                        dump_err(e, e->w.pd->runs);
        }
        long code = 0;
        char url[256];
        assert_int_equal(harness_http_post(harness_fake_url(&e->w.fake, "/_fake/faults/reset", url, sizeof(url)),
                                           NULL, &code, NULL), 0);
        assert_int_equal(code, 200);
}

/* Clears the SMTP fault: a well-behaved server on the same port. */
static void smtp_heal(struct cenv *e) {
        /* A recipient refused for good stays refused; the other one has its
         * mail (on this server) already. */
        if (e->fc->smtp == S_NONE || e->fc->smtp == S_550_ONE)
                return;
        /* the other faults store nothing: a new server loses no mail */
        if (e->w.smtp)
                assert_int_equal(harness_smtp_count(e->w.smtp), 0);
        harness_smtp_stop(e->w.smtp);
        e->w.smtp = NULL;
        struct harness_smtp_options o;
        assert_int_equal(smtp_start(e, S_NONE, &o), 0);
}

static void run_healed(struct cenv *e) {
        /* The engine re-sends an unknown Process only from a later second
         * (process_sent_at < now): a real poll interval is >= 10 s. */
        time_t t = time(NULL);
        while (time(NULL) == t) {
                struct timespec ts = { .tv_nsec = 20 * 1000 * 1000 };
                nanosleep(&ts, NULL);
        }
        e->res->status2 = run(e, NULL);
        if (e->res->status2 != 0) {
                VIOLATION(e, "the run after the fault cleared exited %d", e->res->status2);
                dump_err(e, e->w.pd->runs);
        }
        check_end_state(e, false);
        int first = 0;
        if (inv_pd_sanitizer_reports(e->w.pd, &first)) {
                VIOLATION(e, "run %d reported memory errors", first);
                dump_err(e, first);
        }
}

static bool selected(const struct fcase *fc) {
        const char *only = getenv("FAULTS_ONLY");
        if (only && *only)
                return strcasestr(fc->name, only) != NULL;
        return fc->slow || !inv_slow_mode();
}

static void print_table(const struct result *res, size_t n, uint64_t ms) {
        size_t cases = 0, viol = 0;
        fprintf(stderr, "\nfaults: %-32s %4s %4s %8s %4s  %s\n", "case", "run1", "run2", "rss KiB", "viol",
                "log line naming the fault");
        for (size_t i = 0; i < n; i++) {
                if (!res[i].name)
                        continue;
                cases++;
                viol += res[i].violations;
                /* long lines: the start (what) and the end (why) */
                size_t len = strlen(res[i].line);
                fprintf(stderr, "faults: %-32s %4d %4d %8ld %4zu  %.*s%s%s\n", res[i].name, res[i].status1,
                        res[i].status2, res[i].rss1_kb, res[i].violations, len > 110 ? 40 : 110, res[i].line,
                        len > 110 ? " ... " : "", len > 110 ? res[i].line + len - 65 : "");
        }
        fprintf(stderr, "faults: summary cases=%zu faults injected=%zu invariant violations=%zu runtime=%.1fs\n",
                cases, cases, viol, (double) ms / 1000.0);
}

static void test_fault_matrix(void **state) {
        struct result res[N_CASES] = { 0 };
        if (inv_slow_mode())
                fprintf(stderr, "faults: partnerd runs under a wrapper/valgrind: one case per kind of fault "
                        "(FAULTS_ONLY=<name> selects any)\n");
        struct cenv *smtp_envs[N_CASES] = { 0 };
        size_t n_smtp = 0, viol = 0;
        uint64_t t0 = util_now_mono_ms(), smtp_t0 = 0;

        /* HTTP faults one after the other */
        for (size_t i = 0; i < N_CASES; i++) {
                const struct fcase *fc = &CASES[i];
                if (!selected(fc) || fc->smtp != S_NONE)
                        continue;
                struct cenv *e = cenv_new(fc, &res[i]);
                run_faulted(e);
                run_healed(e);
                cenv_free(e);
        }
        /* SMTP faults together: the outbox retries a failed mail after a
         * minute, so they share one wait. */
        for (size_t i = 0; i < N_CASES; i++) {
                const struct fcase *fc = &CASES[i];
                if (!selected(fc) || fc->smtp == S_NONE)
                        continue;
                struct cenv *e = cenv_new(fc, &res[i]);
                /* the last case's failed attempt is the latest to be retried */
                smtp_t0 = util_now_mono_ms();
                run_faulted(e);
                smtp_heal(e);
                smtp_envs[n_smtp++] = e;
        }
        if (n_smtp) {
                uint64_t wait_until = smtp_t0 + OUTBOX_RETRY_S * 1000;
                uint64_t now = util_now_mono_ms();
                if (now < wait_until) {
                        fprintf(stderr, "faults: waiting %.0f s for the outbox's first retry\n",
                                (double) (wait_until - now) / 1000.0);
                        uint64_t ms = wait_until - now;
                        struct timespec ts = { .tv_sec = (time_t) (ms / 1000), .tv_nsec = (long) (ms % 1000) * 1000000L };
                        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                                ;
                }
                for (size_t i = 0; i < n_smtp; i++) {
                        if (smtp_envs[i]->fc->kind == K_SIGHUP)
                                finish_sighup(smtp_envs[i]);
                        run_healed(smtp_envs[i]);
                        cenv_free(smtp_envs[i]);
                }
        }
        print_table(res, N_CASES, util_now_mono_ms() - t0);
        for (size_t i = 0; i < N_CASES; i++)
                viol += res[i].violations;
        assert_int_equal(viol, 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_fault_matrix),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
