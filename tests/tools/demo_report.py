#!/usr/bin/python3
"""Pretty-prints what `make demo` produced: the received mails, the orders."""
import email
import email.policy
import html as htmllib
import json
import os
import re
import sys
import urllib.request


def mails(folder):
    files = sorted(f for f in os.listdir(folder) if f.endswith(".eml"))
    if not files:
        print("(no mail received)")
        return
    for i, name in enumerate(files, 1):
        with open(os.path.join(folder, name), "rb") as f:
            msg = email.message_from_binary_file(f, policy=email.policy.default)
        env = {}
        side = os.path.join(folder, name[:-4] + ".json")
        if os.path.exists(side):
            env = json.load(open(side))
        print(f"--- mail {i}: {msg['Subject']}")
        print(f"    From:    {msg['From']}")
        print(f"    To:      {msg['To']}")
        if env.get("rcpt_tos"):
            print(f"    RCPT TO: {', '.join(env['rcpt_tos'])}")
        parts = [p.get_content_type() for p in msg.walk() if not p.is_multipart()]
        print(f"    Parts:   {', '.join(parts)}")
        body = msg.get_body(preferencelist=("plain",))
        if body is not None:
            # the text up to and including the first link, where the admin acts
            lines = body.get_content().strip().splitlines()
            cut = next((i for i, l in enumerate(lines) if "https://" in l), 14)
            for line in lines[:max(cut + 1, 6)]:
                print("    | " + line)
            if len(lines) > cut + 1:
                print("    | ...")
        html = msg.get_body(preferencelist=("html",))
        if html is not None:
            hrefs = re.findall(r'href="([^"]+)"', html.get_content())
            if hrefs:
                print(f"    HTML button links to: {htmllib.unescape(hrefs[0])}")
        print()


def orders(base, scenario):
    before = {o["id"]: o.get("status") for o in json.load(open(scenario)).get("orders", [])}
    with urllib.request.urlopen(base + "/_fake/orders", timeout=5) as r:
        now = json.load(r)
    print(f"    {'order':<22} {'before':<12} {'after':<12}")
    for o in now:
        mark = "  <- processed by partnerd" if before.get(o["id"]) == "Querying" and o["status"] == "Processing" else ""
        print(f"    {o['id']:<22} {before.get(o['id'], '?'):<12} {o['status']:<12}{mark}")


if __name__ == "__main__":
    if sys.argv[1] == "mails":
        mails(sys.argv[2])
    else:
        orders(sys.argv[2], sys.argv[3])
