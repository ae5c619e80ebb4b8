#!/usr/bin/python3
"""Writes the seed corpora of the fuzz targets into tests/fuzz/corpus/.

Seeds are small: hand-made samples of each input shape, plus inputs
derived from the project's own test data (tests/scenarios/basic.json,
tests/data/config, config/templates).  Re-run after changing the test data:

    /usr/bin/python3 tests/fuzz/gen_corpus.py
"""
import json
import os
import shutil
import sys

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(SRC, "tests", "fuzz", "corpus")


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def compact(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def load_scenario():
    path = os.path.join(SRC, "tests", "scenarios", "basic.json")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError:
        print("gen_corpus: %s missing, derived seeds skipped" % path, file=sys.stderr)
        return {"orders": [], "templates": {}, "tenants": []}


URL = ("https://admin.microsoft.com/Adminportal/Home?invType=ResellerRelationship"
       "&partnerId=3b33e682-00c3-41ee-9dd2-a548adf56438&msppId=0&DAP=false"
       "#/BillingAccounts/partner-invitation")
GDAP = ("https://admin.microsoft.com/AdminPortal/Home#/partners/invitation/"
        "granularAdminRelationships/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0-1122334455")


def config():
    for sub in ("good", "bad"):
        d = os.path.join(SRC, "tests", "data", "config", sub)
        if not os.path.isdir(d):
            continue
        for n in sorted(os.listdir(d))[:12]:
            with open(os.path.join(d, n), "rb") as f:
                put("config", sub + "-" + n, f.read())
    put("config", "minimal-sendmail.conf",
        "[marketplace]\nurl = https://a.example/public/v1\ntoken_file = t\n"
        "[microsoft]\ntenant = contoso.onmicrosoft.com\n"
        "client_id = 11111111-2222-3333-4444-555555555555\nclient_secret_file = s\n"
        "[mail]\ntransport = sendmail\nfrom = Ops <ops@example.com>\nto = a@example.com\n")


def mp(scn):
    orders = scn.get("orders", [])
    for i, o in enumerate(orders):
        page = {"$meta": {"pagination": {"offset": 0, "limit": 100, "total": len(orders)}},
                "data": [o]}
        put("mp_order", "page-%s" % o["id"], compact(page))
        # the same order with its parameters in the wrong shapes
        if i == 0:
            bad = json.loads(compact(o))
            bad["parameters"]["ordering"][1]["value"] = {"x": 1}
            bad["parameters"]["fulfillment"] = None
            bad["audit"]["querying"] = {"at": "2026-13-45T99:99:99Z"}
            bad["buyer"] = "BUY-1"
            put("mp_order", "wrong-types", compact({"data": [bad, 7, None, "ORD"]}))
    put("mp_order", "empty", '{"$meta":{"pagination":{"total":0}},"data":[]}')
    put("mp_order", "minimal", '{"data":[{"id":"ORD-1111-2222-3333","status":"Querying"}]}')
    put("mp_order", "hostile",
        compact({"$meta": {"pagination": {"total": -5}}, "data": [{
            "id": "ORD-1111-2222-3333-4444", "status": "querying",
            "product": {"id": "PRD-1\r\nX", "name": "\u0007Bell\u2028"},
            "buyer": {"name": "  \t "},
            "parameters": {"ordering": [
                {"externalId": "ExistingDomainName", "value": "Contoso.COM"},
                {"externalId": "CustomerCompanyName", "value": "A\nB"},
                {"type": "Contact", "value": {"email": "x@y\r\nBcc: z@evil", "firstName": "\u0000"}},
                {"type": "contact", "value": {"email": "ok@example.com", "lastName": "L"}}],
                "fulfillment": [{"externalId": "MicrosoftTenantId",
                                 "value": "6F1C2A7E-0B8D-4C55-9E41-2D7F0A3B9C10"}]},
            "error": {"message": "see " + URL},
            "audit": {"querying": {"at": "2026-11-20T09:12:44.1234567+00:00"}}}]}))
    # relationship URL extraction: the templates with the URL filled in
    n = 0
    for tid, text in sorted(scn.get("templates", {}).items()):
        for k in ("PAR-1528-2110-0040", "PAR-1528-2110-0038", "PAR-1528-2110-0003"):
            text = text.replace("{{ %s }}" % k, URL if k.endswith("40") else "contoso.onmicrosoft.com")
        put("mp_url", "template-%s" % tid, text)
        n += 1
    put("mp_url", "markdown-escaped", "[Accept](%s)" % URL.replace("&", "\\&").replace("_", "\\_"))
    put("mp_url", "html-escaped", '<a href="%s">accept</a>' % URL.replace("&", "&amp;"))
    put("mp_url", "gdap-and-reseller", "First %s then %s." % (GDAP, URL))
    put("mp_url", "gdap-only", "Open %s, please" % GDAP)
    put("mp_url", "lookalike", "xhttps://admin.microsoft.com/adminportal?invtype=ResellerRelationship "
        "https://admin.microsoft.com.evil.example/adminportal?invType=ResellerRelationship")
    put("mp_url", "indirect", "https://ADMIN.microsoft.com/AdminPortal/Home?InvType=IndirectResellerRelationship"
        "&partnerId=1&indirectCSPId=2#/BillingAccounts/partner-invitation")


def pc(scn):
    put("pc", "token-v1", b"\x00" + compact({"token_type": "Bearer", "expires_in": "3599",
                                              "ext_expires_in": "3599", "expires_on": "1795000000",
                                              "resource": "https://api.partnercenter.microsoft.com",
                                              "access_token": "eyJ0eXAiOiJKV1QifQ.eyJhdWQiOiJ4In0.c2ln"}).encode())
    put("pc", "token-v2", b"\x00" + compact({"token_type": "Bearer", "expires_in": 3599,
                                              "access_token": "eyJhbGciOiJSUzI1NiJ9.e30.c2ln"}).encode())
    put("pc", "token-bad", b"\x00" + b'{"token_type":"MAC","expires_in":-1,"access_token":"a b\\r\\n"}')
    put("pc", "entra-error", b"\x00" + compact({"error": "invalid_client",
                                                 "error_description": "AADSTS7000215: Invalid client secret."}).encode())
    for t in scn.get("tenants", []):
        body = {"id": t["id"], "companyProfile": {"tenantId": t["id"], "domain": t["domain"],
                                                    "companyName": t["name"]},
                "relationshipToPartner": t.get("relationship", "none"),
                "attributes": {"objectType": "Customer"}}
        put("pc", "customer-%s" % t["domain"].split(".")[0], b"\x01" + compact(body).encode())
    put("pc", "next-uri", b"\x05/customers?size=100&seek=dGVzdA==&seekOperation=Next&filter=x")
    put("pc", "next-uri-v1", b"\x05/v1/customers?size=100&seekOperation=Next")
    put("pc", "customer-404", b"\xf0" + b'{"code":600,"description":"The customer does not exist."}')
    gid = "11111111-1111-4111-8111-111111111111"
    for st in ("active", "approvalPending", "expired", "unknownFutureValue"):
        put("pc", "gdap-" + st, b"\x01" + compact({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#tenantRelationships/delegatedAdminRelationships/$entity",
            "id": gid, "displayName": "x", "duration": "P730D",
            "customer": {"tenantId": "6F1C2A7E-0B8D-4C55-9E41-2D7F0A3B9C10", "displayName": "Contoso"},
            "status": st, "createdDateTime": "2026-11-20T09:12:44Z"}).encode())
    put("pc", "gdap-404", b"\xf0" + b'{"error":{"code":"ResourceNotFound","message":"x"}}')
    put("pc", "customer-profile-only", b"\x02" + b'{"companyProfile":{"tenantId":"6F1C2A7E-0B8D-4C55-9E41-2D7F0A3B9C10"},"relationshipToPartner":"Reseller"}')


def store():
    t = "2026-11-20T09:12:44Z"
    order = {"id": "ORD-1001-0001-0001", "status": "blocked", "querying_at_raw": "2026-11-20T09:12:44.120Z",
             "querying_since": t, "first_seen": t, "process_sent_at": None, "process_attempts": 0,
             "outcome": None, "closed_at": None, "template_id": "TPL-1528-2110-0007",
             "relationship_url": URL, "notified": True}
    cust = {"key": "6f1c2a7e-0b8d-4c55-9e41-2d7f0a3b9c10", "tenant_id": "6f1c2a7e-0b8d-4c55-9e41-2d7f0a3b9c10",
            "domain": "contoso.onmicrosoft.com", "name": "Contoso Ltd", "relationship_url": URL,
            "first_seen": t, "notified_at": t, "last_mail_at": t, "reminders": 2,
            "final_warning_sent": False, "deadline_passed_logged": False, "warned_deadline": None,
            "confirmation_sent": False, "next_check": "2026-11-20T09:13:44Z", "check_count": 1,
            "accepted_at": None, "orders": [order]}
    closed = dict(order, id="ORD-1001-0001-0003", status="closed", outcome="processed",
                  process_sent_at="2026-11-21T10:00:00Z", closed_at="2026-11-21T10:00:01Z",
                  process_attempts=1)
    cust2 = dict(cust, key="domain:fabrikam.onmicrosoft.com", tenant_id=None,
                 domain="fabrikam.onmicrosoft.com", name="Fabrikam", accepted_at="2026-11-21T09:59:00Z",
                 orders=[closed, dict(order, id="ORD-1001-0001-0004", status="draft")])
    put("store", "v1", json.dumps({"version": 1, "customers": [cust, cust2]}, indent=1, sort_keys=True))
    put("store", "v1-empty", '{"version": 1, "customers": []}\n')
    put("store", "v1-counters", json.dumps({"version": 1, "customers": [cust], "counters": {
        "http_requests": {"marketplace": {"2xx": 40, "error": 1}, "token": {"2xx": 2}},
        "mail_failures": 3, "mails_sent": {"new-request": 2, "gdap-ended": 1},
        "process": {"done": 1, "unknown": 1}}}, indent=1, sort_keys=True))
    put("store", "v0-legacy", compact({"orders": {
        "ORD-1001-0001-0001": {"customer": "domain:contoso.onmicrosoft.com", "status": "blocked",
                               "querying_since": t, "first_seen": t, "notified_at": t, "reminders": 1},
        "ORD-1001-0001-0002": {"customer": "domain:contoso.onmicrosoft.com", "status": "closed",
                               "first_seen": t, "process_sent_at": t, "outcome": "processed",
                               "accepted_at": t}}}))
    put("store", "future-version", '{"version": 2, "customers": []}')
    put("store", "duplicate", compact({"version": 1, "customers": [cust, cust]}))


def mail(scn):
    put("mail_header", "ascii", b"\x09Action required: accept the reseller relationship for Contoso Ltd")
    put("mail_header", "utf8", "\x09Zustimmung erforderlich: Müller & Söhne GmbH – Microsoft 365 ✓".encode())
    put("mail_header", "long-utf8", b"\x09" + ("Ж" * 120 + " 😀" * 20).encode())
    put("mail_header", "injection", b"\x09Hi\r\nBcc: evil@example.com\r\n\r\nbody")
    put("mail_header", "encoded-lookalike", b"\x09=?UTF-8?B?SGk=?= plain")
    put("mail_header", "long-word", b"\x20" + b"x" * 950 + b" y")
    put("mail_header", "invalid-utf8", b"\x09caf\xe9 \xc3\x28 \xed\xa0\x80 \xc2\x85end")
    d = os.path.join(SRC, "config", "templates")
    if os.path.isdir(d):
        for n in sorted(os.listdir(d)):
            if n.endswith(".txt"):
                with open(os.path.join(d, n), "rb") as f:
                    put("mail_qp", "template-" + n, f.read())
    put("mail_qp", "edges", "trailing space \ntab\t\nequals = sign\r\n" + "x" * 200 + "\n=" * 3
        + "\n" + "é" * 60 + "\r\rcr\n\n")
    put("mail_qp", "no-final-newline", "a b c")

    def render(kind, flags, rem, fields):
        return bytes([kind, flags, rem >> 8 & 0xff, rem & 0xff]) + b"\x00".join(
            f.encode("utf-8", "surrogateescape") for f in fields)

    tail = "Adminportal/Home?invType=ResellerRelationship&partnerId=3b33e682-00c3-41ee-9dd2-a548adf56438" \
           "#/BillingAccounts/partner-invitation"
    order = ["ORD-1001-0001-0001", "Microsoft 365 E3 (CSP)",
             "https://portal.platform.softwareone.com/commerce/orders/ORD-1001-0001-0001", ""]
    put("mail_render", "new-request", render(0, 1 | 2, 1001, ["Contoso Ltd", "contoso.onmicrosoft.com",
                                                                 "6f1c2a7e-0b8d-4c55-9e41-2d7f0a3b9c10", tail,
                                                                 "dana.admin@contoso.example", "Dana <dana@contoso.example>"]
                                             + order))
    put("mail_render", "reminder-2-orders", render(1, 1 | 4, 1003, ["Fabrikam Inc", "fabrikam.onmicrosoft.com", "",
                                                                     tail, "", ""] + order + order))
    put("mail_render", "ops-notice", render(4, 2, 1000, ["Litware", "litwar.onmicrosoft.com", "", "", "", "",
                                                          "ORD-1001-0001-0002", "Azure",
                                                          "https://portal.example/o/2",
                                                          "The domain litwar.onmicrosoft.com does not exist."]))
    put("mail_render", "hostile", render(0, 1 | 6, 999, [
        "Evil <script>alert(1)</script>\r\nBcc: x@evil.example", "a.example\"><img src=x>",
        "\u202e\u0085tenant", tail + "\"onmouseover=\"x", "victim@example.com>, <other@example.com",
        "=?UTF-8?B?QmNjOiB4?= <a@b.example>",
        "ORD<b>", "Prod & Co 'x' \"y\"", "javascript:alert(1)", "line1\nline2\r\nBcc: y@evil",
        "ORD-1", "P", "https://p.example/a\"b", "é" * 400]))
    put("mail_render", "confirmation", render(5, 2, 1000, ["Northwind Traders", "northwind.onmicrosoft.com",
                                                            "9d3c1b7e-5a2f-4e8d-b6c0-7f1a2e3d4c5b", "", "", ""]
                                              + order))


def http_error():
    def resp(r_sel, status, attempts, body):
        return bytes([r_sel, status >> 8, status & 0xff, attempts]) + body.encode("utf-8", "surrogateescape")
    put("http_error", "mp-409-problem", resp(0x80, 409, 1, compact({
        "type": "https://example.com/problem", "title": "Order status transition not allowed",
        "status": 409, "traceId": "00-ab-cd-01",
        "errors": {"id": ["Order ORD-1234-5678-9012 is in status Completed"]}})))
    put("http_error", "mp-400-errors-array", resp(0x80, 400, 1, compact({
        "title": "One or more validation errors occurred.", "status": 400,
        "errors": [{"message": "bad rql"}, "second"], "detail": "see errors"})))
    put("http_error", "entra-401", resp(0x80, 401, 1, compact({
        "error": "invalid_client",
        "error_description": "AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 1\r\nCorrelation ID: 2"})))
    put("http_error", "pc-404-code-int", resp(0x80, 404, 1, compact({
        "code": 600, "description": "The customer does not exist.", "data": [], "source": "PartnerFD"})))
    put("http_error", "pc-403-code-string", resp(0x80, 403, 1, '{"code":"2000","description":"Forbidden"}'))
    put("http_error", "gateway-504", resp(0x80, 504, 1, '{"statusCode":504,"message":"Gateway timeout"}'))
    put("http_error", "html-502", resp(0x80, 502, 0x82,
        "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>nginx</body></html>"))
    put("http_error", "odata-405", resp(0x80, 405, 1,
        '{"error":{"code":"Forbidden","message":"Insufficient privileges"}}'))
    put("http_error", "refused", resp(0x01, 0, 0x84, "Connection refused\x00"))
    put("http_error", "timeout", resp(0x02, 0, 0x83, "Operation timed out after 60000 milliseconds"))
    put("http_error", "binary-500", bytes([0x80, 0x01, 0xf4, 0x01]) +
        b"\xff\xfe\xc3\x28\xe2\x80\xa8 caf\xc3\xa9 \x1b[31m")


def main():
    scn = load_scenario()
    for t in ("config", "mp_order", "mp_url", "pc", "store", "mail_header", "mail_qp", "mail_render",
              "http_error"):
        os.makedirs(os.path.join(OUT, t), exist_ok=True)
    config()
    mp(scn)
    pc(scn)
    store()
    mail(scn)
    http_error()
    return 0


if __name__ == "__main__":
    sys.exit(main())
