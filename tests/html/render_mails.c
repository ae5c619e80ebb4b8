/* SPDX-License-Identifier: MIT */
/*
 * render_mails: renders every mail kind through the real composition path
 * (mail_templates_load + mail_render) with realistic values and writes each
 * message to OUTDIR/<kind>.eml, plus OUTDIR/hostile.eml (a new-request mail
 * whose customer name is markup).  Used by `make check-html`
 * (tests/html/check_html.py renders the HTML parts in headless Chromium).
 *
 * usage: render_mails TEMPLATE_DIR OUTDIR
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mail.h"
#include "util.h"

/* Kept in step with tests/html/check_html.py, which checks for these. */
#define CUSTOMER   "Müller Datentechnik GmbH"
#define HOSTILE    "<script>alert(1)</script> & \"Quotes\""
#define DOMAIN     "mueller-datentechnik.de"
#define TENANT     "5f0b8c2e-7a41-4d3b-9e6f-2c1a8d9b0e47"
#define ACCEPT_URL "https://admin.microsoft.com/Adminportal/Home?invType=ResellerRelationship" \
                   "&partnerId=3b33e682-00c3-41ee-9dd2-a548adf56438&msppId=0&DAP=false" \
                   "#/BillingAccounts/partner-invitation"

/* 2026-11-25 09:00 UTC; orders Querying since the 20th and 22nd. */
#define NOW        INT64_C(1795597200)
#define DAY        INT64_C(86400)

static const struct mail_order orders[] = {
        { .id = "ORD-4821-7730-5512",
          .product = "Microsoft 365 Business Premium",
          .portal_link = "https://portal.softwareone.example/commerce/orders/ORD-4821-7730-5512",
          .querying_since = NOW - 5 * DAY,
          .deadline = NOW + 10 * DAY },
        { .id = "ORD-4821-7731-0907",
          .product = "Microsoft Teams Rooms Pro",
          .portal_link = "https://portal.softwareone.example/commerce/orders/ORD-4821-7731-0907",
          .querying_since = NOW - 3 * DAY,
          .deadline = NOW + 12 * DAY },
};

/* Orders still in Draft: not Querying yet, so no clock is running. */
static const struct mail_order draft_orders[] = {
        { .id = "ORD-4821-7730-5512",
          .product = "Microsoft 365 Business Premium",
          .portal_link = "https://portal.softwareone.example/commerce/orders/ORD-4821-7730-5512" },
        { .id = "ORD-4821-7731-0907",
          .product = "Microsoft Teams Rooms Pro",
          .portal_link = "https://portal.softwareone.example/commerce/orders/ORD-4821-7731-0907" },
};

static const struct mail_order ops_orders[] = {
        { .id = "ORD-4821-7730-5512",
          .product = "Microsoft 365 Business Premium",
          .portal_link = "https://portal.softwareone.example/commerce/orders/ORD-4821-7730-5512",
          .querying_since = NOW - 5 * DAY,
          .deadline = NOW + 10 * DAY,
          .error = "Customer tenant not found in Partner Center (domain not verified)" },
        { .id = "ORD-4821-7731-0907",
          .product = "Microsoft Teams Rooms Pro",
          .portal_link = "https://portal.softwareone.example/commerce/orders/ORD-4821-7731-0907",
          .querying_since = NOW - 3 * DAY,
          .deadline = NOW + 12 * DAY,
          .error = "Subscription quantity exceeds the tenant's limit" },
};

static int write_eml(const char *dir, const char *name, const struct mail_templates *t,
                     const struct cfg_mail *cfg, const struct mail_context *ctx) {
        struct mail_message *m = NULL;
        char *err = NULL, path[4096];
        int r;

        r = mail_render(t, cfg, ctx, &m, &err);
        if (r < 0) {
                fprintf(stderr, "render_mails: %s: mail_render: %s\n", name, err ? err : strerror(-r));
                free(err);
                return r;
        }
        snprintf(path, sizeof(path), "%s/%s.eml", dir, name);
        r = util_write_file_atomic(path, m->data, m->len, 0644);
        if (r < 0)
                fprintf(stderr, "render_mails: %s: %s\n", path, strerror(-r));
        else
                printf("%s\n", path);
        mail_message_free(m);
        return r;
}

int main(int argc, char **argv) {
        struct mail_templates *t = NULL;
        struct cfg_errors errs = {};
        char *to[] = { "Müller IT <it-admin@mueller-datentechnik.de>" };
        char *ops[] = { "Marketplace Ops <marketplace-ops@softwareone.example>" };
        char *hosts[] = { "admin.microsoft.com" };
        struct cfg_mail cfg = {
                .transport = CFG_TRANSPORT_SMTP,
                .from = "SoftwareOne Marketplace <partner-desk@softwareone.example>",
                .to = to, .n_to = 1,
                .ops = ops, .n_ops = 1,
                .url_hosts = hosts, .n_url_hosts = 1,
        };
        int r, ret = EXIT_FAILURE;

        if (argc != 3) {
                fprintf(stderr, "usage: %s TEMPLATE_DIR OUTDIR\n", argv[0]);
                return 2;
        }
        r = mail_templates_load(NULL, argv[1], &t, &errs);
        if (r < 0) {
                for (size_t i = 0; i < errs.n; i++)
                        fprintf(stderr, "render_mails: %s\n", errs.items[i]);
                fprintf(stderr, "render_mails: cannot load templates from %s: %s\n", argv[1], strerror(-r));
                goto finish;
        }
        for (int k = 0; k < _MAIL_KIND_MAX; k++) {
                bool ops_kind = k == MAIL_KIND_OPS_NOTICE;
                struct mail_context ctx = {
                        .kind = (enum mail_kind) k,
                        .customer_name = CUSTOMER,
                        .domain = DOMAIN,
                        .tenant_id = TENANT,
                        .url = ACCEPT_URL,
                        .orders = ops_kind ? ops_orders : orders,
                        .n_orders = 2,
                        .reminder_number = 2,
                        .deadline = NOW + 10 * DAY,
                        .now = NOW,
                };
                switch (k) {
                case MAIL_KIND_FINAL_WARNING:
                        ctx.now = NOW + 8 * DAY;        /* two days before the first deadline */
                        break;
                case MAIL_KIND_DRAFT_WARNING:
                        ctx.orders = draft_orders;
                        ctx.deadline = 0;
                        break;
                default:
                        break;
                }
                if (write_eml(argv[2], mail_kind_to_string(ctx.kind), t, &cfg, &ctx) < 0)
                        goto finish;
        }
        struct mail_context hostile = {
                .kind = MAIL_KIND_NEW_REQUEST,
                .customer_name = HOSTILE,
                .domain = DOMAIN,
                .tenant_id = TENANT,
                .url = ACCEPT_URL,
                .orders = orders,
                .n_orders = 2,
                .deadline = NOW + 10 * DAY,
                .now = NOW,
        };
        if (write_eml(argv[2], "hostile", t, &cfg, &hostile) < 0)
                goto finish;
        ret = EXIT_SUCCESS;
finish:
        cfg_errors_clear(&errs);
        mail_templates_free(t);
        return ret;
}
