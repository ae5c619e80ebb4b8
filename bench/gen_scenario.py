#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Benchmark scenario generator for the fake platform.

N Querying Microsoft CSP orders, spread over N/5 customers (five
consecutive orders per customer).  Every second order is blocked on the
reseller relationship (its template shows the acceptance URL); the other
half wait in Querying for another reason (a template without a URL).  A
quarter of the customers (every fourth) has already accepted, so a cold
cycle calls Process for their blocked orders.

    gen_scenario.py N [OUT]        (OUT defaults to stdout)

The result is deterministic for a given N.  Orders are shaped like
tests/scenarios/basic.json (about 3 KiB each with parameters and audit).
"""
import json
import sys
import uuid
from datetime import datetime, timedelta, timezone

TPL_BLOCKED = "TPL-1528-2110-0007"
TPL_OTHER = "TPL-1528-2110-0008"
PRODUCT = {"id": "PRD-1528-2110", "name": "Microsoft Azure (CSP)"}
ACCEPT_URL = ("https://admin.microsoft.com/Adminportal/Home?invType=ResellerRelationship"
              "&partnerId=3b33e682-00c3-41ee-9dd2-a548adf56438&msppId=0&DAP=false"
              "#/BillingAccounts/partner-invitation")

TEMPLATES = {
    TPL_BLOCKED: (
        "## Required action: Accept relationship request\n\n"
        "A Global Administrator of **{{ PAR-1528-2110-0038 }}** must open the link below, "
        "accept SoftwareOne as Cloud Solution Provider, then come back to this order and "
        "press **Process**.\n\n"
        "[Accept the reseller relationship]({{ PAR-1528-2110-0040 }})\n\n"
        "The order fails if the relationship is not accepted within 15 days.\n"),
    TPL_OTHER: (
        "## Required action: Check the domain name\n\n"
        "The domain **{{ PAR-1528-2110-0038 }}** was not found in Microsoft Entra ID. "
        "Correct the existing domain name and press **Process**.\n"),
}


def customers_for(n):
    return max(1, n // 5)


def customer_index(i):
    return i // 5


def is_blocked(i):
    return i % 2 == 0


def is_accepted(c):
    return c % 4 == 0


def tenant_id(c):
    return str(uuid.UUID(int=(0x6f1c2a7e0b8d4c559e41 << 48) | c, version=4))


def domain(c):
    return "customer%05d.onmicrosoft.com" % c


def company(c):
    return "Customer %05d Ltd" % c


def order_id(i):
    return "ORD-9000-%04d-%04d" % (i // 10000 % 10000, i % 10000)


def iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (t.microsecond // 1000)


def param(pid, ext, name, ptype, phase, value, hidden=False, readonly=False, required=False,
          display=None):
    p = {"id": pid, "externalId": ext, "name": name, "type": ptype, "phase": phase,
         "constraints": {"hidden": hidden, "readonly": readonly, "required": required},
         "value": value}
    if display is not None:
        p["displayValue"] = display
    return p


def make_order(i, now):
    c = customer_index(i)
    blocked = is_blocked(i)
    created = now - timedelta(hours=2, seconds=i)
    querying = now - timedelta(hours=1, seconds=i)
    who = {"id": "USR-4410-1120", "name": "Jane Buyer"}
    ext = {"id": "TKN-1447-2274", "name": "CSP extension"}
    return {
        "id": order_id(i),
        "type": "Purchase",
        "status": "Querying",
        "agreement": {"id": "AGR-%04d-%04d" % (c // 10000, c % 10000),
                      "name": "Microsoft Azure for %s" % company(c), "status": "Provisioning"},
        "product": PRODUCT,
        "client": {"id": "ACC-%04d-%04d" % (c // 10000, c % 10000), "name": company(c),
                   "type": "Client", "status": "Active"},
        "buyer": {"id": "BUY-%04d-%04d" % (c // 10000, c % 10000), "name": company(c)},
        "seller": {"id": "SEL-7282-9889", "name": "SoftwareOne, Inc."},
        "vendor": {"id": "ACC-3805-2089", "name": "Microsoft", "type": "Vendor",
                   "status": "Active"},
        "listing": {"id": "LST-9401-9279"},
        "authorization": {"id": "AUT-4785-7184", "name": "Microsoft Azure CSP"},
        "template": {"id": TPL_BLOCKED if blocked else TPL_OTHER,
                     "name": "Accept relationship request" if blocked else "Check the domain name"},
        "externalIds": {"client": "PO-%06d" % i},
        "parameters": {
            "ordering": [
                param("PAR-1528-2110-0001", "CustomerCreateOption", "Create agreement", "Choice",
                      "Order", "Existing", display="Connect existing cloud account"),
                param("PAR-1528-2110-0038", "ExistingDomainName", "Existing domain name",
                      "SingleLineText", "Order", domain(c), required=True),
                param("PAR-1528-2110-0002", "PrimaryDomainName", "Primary domain name",
                      "Subdomain", "Order", None),
                param("PAR-1528-2110-0003", "CustomerCompanyName", "Company name",
                      "SingleLineText", "Order", company(c), required=True),
                param("PAR-1528-2110-0005", "ContactPerson", "Contact person", "Contact", "Order",
                      {"firstName": "Dana", "lastName": "Admin%05d" % c,
                       "email": "admin@customer%05d.example" % c,
                       "phone": {"prefix": "+1", "number": "4255550100"}}),
            ],
            "fulfillment": [
                param("PAR-1528-2110-0033", "FullfilmentPhase", "Fulfillment phase", "DropDown",
                      "Fulfillment", "3 - Customer acceptance", readonly=True,
                      display="3 - Customer acceptance"),
                param("PAR-1528-2110-0009", "MicrosoftTenantId", "Microsoft tenant ID",
                      "SingleLineText", "Fulfillment", tenant_id(c), readonly=True),
                param("PAR-1528-2110-0010", "IsCustomerAccepted", "Is customer accepted",
                      "SingleLineText", "Fulfillment", "false", readonly=True),
                param("PAR-1528-2110-0012", "ProcessingStatus", "Processing status",
                      "SingleLineText", "Fulfillment", "ProcessingStarted", readonly=True),
                param("PAR-1528-2110-0013", "TriggerCount", "Trigger count", "SingleLineText",
                      "Fulfillment", "1", readonly=True),
                param("PAR-1528-2110-0040", "ResellerRelationshipUrl", "Reseller relationship URL",
                      "SingleLineText", "Fulfillment", ACCEPT_URL if blocked else None,
                      hidden=True, readonly=True),
            ],
        },
        "audit": {
            "created": {"at": iso(created), "by": who},
            "processing": {"at": iso(created + timedelta(minutes=5)), "by": who},
            "querying": {"at": iso(querying), "by": ext},
            "updated": {"at": iso(querying), "by": ext},
        },
    }


def generate(n, now=None):
    """The scenario dict for n orders; now defaults to the current time
    (audit.querying.at is an hour ago, far from the 15-day deadline)."""
    now = now or datetime.now(timezone.utc)
    k = customers_for(n)
    tenants = []
    buyers = []
    for c in range(k):
        t = {"id": tenant_id(c), "domain": domain(c), "name": company(c),
             "state": "accepted" if is_accepted(c) else "pending"}
        tenants.append(t)
        buyers.append({"id": "BUY-%04d-%04d" % (c // 10000, c % 10000), "name": company(c),
                       "status": "Active",
                       "contact": {"firstName": "Dana", "lastName": "Admin%05d" % c,
                                   "email": "buyer@customer%05d.example" % c}})
    return {
        "marketplace": {"token": "idt:TKN-0000-0001:bench-marketplace-secret"},
        "microsoft": {"tenant": "partner.onmicrosoft.com",
                      "client_id": "5f0c5b2e-9a55-4f7e-8d3e-1c2b3a4d5e6f",
                      "client_secret": "bench-client-secret", "expires_in": 3600},
        "tenants": tenants,
        "templates": TEMPLATES,
        "buyers": buyers,
        "orders": [make_order(i, now) for i in range(n)],
    }


def expected(n):
    """What one cold cycle must do: blocked orders, customers with a blocked
    order, accepted ones among them, and blocked orders to process."""
    blocked = [i for i in range(n) if is_blocked(i)]
    custs = sorted({customer_index(i) for i in blocked})
    acc = [c for c in custs if is_accepted(c)]
    proc = [i for i in blocked if is_accepted(customer_index(i))]
    return {"orders": n, "blocked": len(blocked), "customers": len(custs),
            "accepted": len(acc), "pending": len(custs) - len(acc), "process": len(proc)}


def main(argv):
    if len(argv) not in (2, 3) or not argv[1].isdigit() or int(argv[1]) < 1:
        sys.stderr.write("usage: gen_scenario.py N [OUT]\n")
        return 2
    sc = generate(int(argv[1]))
    if len(argv) == 3:
        with open(argv[2], "w") as f:
            json.dump(sc, f, separators=(",", ":"))
    else:
        json.dump(sc, sys.stdout, separators=(",", ":"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
