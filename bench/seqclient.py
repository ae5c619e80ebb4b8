#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Sequential reference client: partnerd's job done the way a simple script
does it, as the yardstick for `make bench`.

One request at a time (python3 urllib, a new connection per request), no
state between runs, every template fetched every time:

  1. list every Querying order, page after page (limit 100);
  2. GET the template of every order and look for the acceptance URL;
  3. one token from Entra ID;
  4. one Partner Center check per customer with a blocked order;
  5. POST process for every blocked order of an accepted customer;
  6. one mail per customer still pending (smtplib, one connection each).

    seqclient.py --base URL --scenario FILE --smtp HOST:PORT
                 --mail-from A --mail-to B

The credentials are read from the fake's scenario file (fake secrets).

Prints one JSON object: request counts by kind, mails, processed, seconds.
"""
import argparse
import json
import re
import smtplib
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from email.message import EmailMessage

URL_RE = re.compile(r"https://admin\.microsoft\.com/[^\s)\"'<>]+")
PAGE = 100


class Client:
    def __init__(self, args):
        self.a = args
        self.counts = {}

    def request(self, kind, method, url, token=None, data=None, form=False):
        self.counts[kind] = self.counts.get(kind, 0) + 1
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = "Bearer " + token
        body = None
        if data is not None:
            if form:
                body = urllib.parse.urlencode(data).encode()
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            else:
                body = json.dumps(data).encode()
                headers["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def mp(self, kind, method, path, data=None):
        return self.request(kind, method, self.a.base + "/public/v1" + path, self.a.mp_token,
                            data)

    def list_orders(self):
        orders, offset = [], 0
        rql = 'eq(status,"Querying")&select=%2Bparameters,%2Baudit&order=audit.created.at'
        while True:
            st, body = self.mp("page", "GET", "/commerce/orders?%s&limit=%d&offset=%d"
                               % (rql, PAGE, offset))
            if st != 200:
                raise RuntimeError("list orders: HTTP %d" % st)
            page = json.loads(body)
            data = page.get("data") or []
            orders.extend(data)
            total = page.get("$meta", {}).get("pagination", {}).get("total", 0)
            offset += PAGE
            if not data or offset >= total:
                return orders

    def token(self):
        st, body = self.request("token", "POST", "%s/%s/oauth2/token" % (self.a.base, self.a.tenant),
                                data={"grant_type": "client_credentials",
                                      "client_id": self.a.client_id,
                                      "client_secret": self.a.client_secret,
                                      "resource": "https://api.partnercenter.microsoft.com"},
                                form=True)
        if st != 200:
            raise RuntimeError("token: HTTP %d" % st)
        return json.loads(body)["access_token"]

    def mail(self, tenant, domain, url, order_ids):
        host, port = self.a.smtp.rsplit(":", 1)
        m = EmailMessage()
        m["From"] = self.a.mail_from
        m["To"] = self.a.mail_to
        m["Subject"] = "Action required: accept SoftwareOne as reseller for %s" % domain
        m.set_content("Open %s to accept the reseller relationship for tenant %s.\n"
                      "Orders: %s\n" % (url, tenant, ", ".join(order_ids)))
        with smtplib.SMTP(host, int(port), timeout=30) as s:
            s.send_message(m)


def param(order, ext):
    for group in ("ordering", "fulfillment"):
        for p in (order.get("parameters") or {}).get(group) or []:
            if p.get("externalId") == ext:
                return p.get("value")
    return None


def run(args):
    c = Client(args)
    t0 = time.monotonic()
    blocked = {}                       # tenant id -> (domain, url, [order ids])
    for o in c.list_orders():
        st, body = c.mp("template", "GET", "/commerce/orders/%s/template" % o["id"])
        if st != 200:
            continue
        m = URL_RE.search(json.loads(body))
        tenant = param(o, "MicrosoftTenantId")
        if not m or not tenant:
            continue
        e = blocked.setdefault(tenant, (param(o, "ExistingDomainName"), m.group(0), []))
        e[2].append(o["id"])
    processed = mails = 0
    if blocked:
        tok = c.token()
        for tenant, (domain, url, ids) in blocked.items():
            st, body = c.request("check", "GET", "%s/v1/customers/%s" % (args.base, tenant), tok)
            accepted = st == 200 and json.loads(body).get("relationshipToPartner") == "reseller"
            if accepted:
                for oid in ids:
                    st, _ = c.mp("process", "POST", "/commerce/orders/%s/process" % oid, {})
                    processed += st == 200
            else:
                c.mail(tenant, domain, url, ids)
                mails += 1
    return {"requests": sum(c.counts.values()), "by_kind": c.counts, "blocked_customers":
            len(blocked), "processed": processed, "mails": mails,
            "seconds": round(time.monotonic() - t0, 3)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for k in ("base", "scenario", "smtp", "mail-from", "mail-to"):
        ap.add_argument("--" + k, required=True)
    args = ap.parse_args()
    args.base = args.base.rstrip("/")
    with open(args.scenario) as f:
        sc = json.load(f)
    args.mp_token = sc["marketplace"]["token"]
    ms = sc["microsoft"]
    args.tenant, args.client_id, args.client_secret = ms["tenant"], ms["client_id"], ms["client_secret"]
    json.dump(run(args), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
