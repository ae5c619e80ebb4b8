#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Parses one stored message with Python's email package and prints JSON:
{headers: {Name: decoded value}, header_names: [every top-level header name in
order, repeats included], to, subject, text, html, links: [hrefs],
raw_header_lines: [...], max_line_len, bare_lf, defects: [...]}
(An optional second argument names the JSON sidecar of smtpd.py; its
content is added as "envelope".)"""
import email
import email.policy
import json
import sys
from html.parser import HTMLParser


class Links(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            for k, v in attrs:
                if k == "href":
                    self.links.append(v)


def main():
    raw = open(sys.argv[1], "rb").read()
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    head = raw.split(b"\r\n\r\n", 1)[0]
    headers = {}
    for k, v in msg.items():
        headers[k] = str(v)
    text = html = None
    defects = [str(d) for d in msg.defects]
    for part in msg.walk():
        defects += [str(d) for d in part.defects]
        ct = part.get_content_type()
        if part.is_multipart():
            continue
        # Line ends normalised to "\n" for the assertions.
        if ct == "text/plain" and text is None:
            text = part.get_content().replace("\r\n", "\n")
        elif ct == "text/html" and html is None:
            html = part.get_content().replace("\r\n", "\n")
    links = []
    if html:
        p = Links()
        p.feed(html)
        links = p.links
    lines = raw.split(b"\r\n")
    out = {
        "headers": headers,
        "header_names": list(msg.keys()),
        "to": [str(a.addr_spec) for a in msg["To"].addresses] if msg["To"] else [],
        "cc": [str(a.addr_spec) for a in msg["Cc"].addresses] if msg["Cc"] else [],
        "from": str(msg["From"].addresses[0].addr_spec) if msg["From"] else None,
        "from_name": str(msg["From"].addresses[0].display_name) if msg["From"] else None,
        "subject": str(msg["Subject"]) if msg["Subject"] else None,
        "content_type": msg.get_content_type(),
        "parts": [p.get_content_type() for p in msg.walk() if not p.is_multipart()],
        "text": text,
        "html": html,
        "links": links,
        "raw_header_lines": [l.decode("ascii", "replace") for l in head.split(b"\r\n")],
        "max_line_len": max(len(l) for l in lines),
        "bare_lf": b"\n" in raw.replace(b"\r\n", b""),
        "defects": defects,
    }
    if len(sys.argv) > 2:
        out["envelope"] = json.load(open(sys.argv[2]))
    json.dump(out, sys.stdout, ensure_ascii=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
