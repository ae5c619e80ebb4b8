#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""make check-html: renders the HTML part of every mail kind in headless
Chromium (phone 414 px and desktop 1024 px wide) to OUT/<kind>-<viewport>.png,
and checks what the admin will see:

  * the PNG exists, has the viewport's size and is not blank;
  * the DOM Chromium built (--dump-dom) holds the "Accept the relationship"
    button whose href is exactly the acceptance URL (kinds that carry it),
    the customer name with its non-ASCII letters intact, every order id, and
    no element made from a hostile value (hostile.eml: the customer name is
    markup and must show literally);
  * the layout at each width (a copy of the page with a small measuring
    script, never the mail itself): nothing wider than the viewport, the
    button at least 44 px tall (a finger-sized target) and fully visible,
    body text at least 13 px, no order id broken over two lines.

The mails come from render_mails (tests/html/render_mails.c), which uses
the real composition path (mail_templates_load + mail_render).
"""
import argparse
import concurrent.futures
import email
import email.policy
import html
import html.parser
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

# Kept in step with tests/html/render_mails.c.
CUSTOMER = "Müller Datentechnik GmbH"
HOSTILE = "<script>alert(1)</script> & \"Quotes\""
ACCEPT_URL = ("https://admin.microsoft.com/Adminportal/Home?invType=ResellerRelationship"
              "&partnerId=3b33e682-00c3-41ee-9dd2-a548adf56438&msppId=0&DAP=false"
              "#/BillingAccounts/partner-invitation")
ORDER_IDS = ("ORD-4821-7730-5512", "ORD-4821-7731-0907")
BUTTON_TEXT = "Accept the relationship"
KINDS = ("new-request", "reminder", "final-warning", "draft-warning", "ops-notice", "confirmation")
WITH_BUTTON = {"new-request", "reminder", "final-warning", "draft-warning", "hostile"}
VIEWPORTS = (("phone", 414), ("desktop", 1024))
HEIGHT = 1200
MIN_BUTTON_HEIGHT = 44
MIN_FONT_PX = 13
CHROMIUM_TIMEOUT = 90

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--force-device-scale-factor=1"]

# The layout probe: a copy of the page with this script appended, shown in
# an iframe exactly the viewport's width (headless Chromium will not make a
# window narrower than 500 px for --dump-dom; --screenshot honours the size).
# The script measures the layout and writes the result into the outer
# document, where --dump-dom reads it back.  The mail itself never gets it.
PROBE = """
<script>
(function () {
  var W = document.documentElement.clientWidth;
  var r = {viewport: W, scrollWidth: document.documentElement.scrollWidth,
           overflow: [], button: null, smallText: [], wrappedIds: []};
  var all = document.body.getElementsByTagName('*');
  for (var i = 0; i < all.length; i++) {
    var e = all[i], b = e.getBoundingClientRect();
    if (e.tagName === 'SCRIPT' || (b.width === 0 && b.height === 0)) continue;
    if (b.right > W + 0.5 || b.left < -0.5)
      r.overflow.push(e.tagName + ' ' + Math.round(b.left) + '..' + Math.round(b.right));
    var fs = parseFloat(getComputedStyle(e).fontSize);
    for (var c = e.firstChild; c; c = c.nextSibling) {
      if (c.nodeType !== 3 || !c.nodeValue.trim()) continue;
      if (fs < %(minfont)d)
        r.smallText.push(e.tagName + ' ' + fs + 'px: ' + c.nodeValue.trim().slice(0, 40));
      var m = /ORD-[0-9-]+/.exec(c.nodeValue);
      if (m) {
        var rg = document.createRange();
        rg.setStart(c, m.index);
        rg.setEnd(c, m.index + m[0].length);
        var tops = {};
        var rects = rg.getClientRects();
        for (var j = 0; j < rects.length; j++) tops[Math.round(rects[j].top)] = 1;
        if (Object.keys(tops).length > 1) r.wrappedIds.push(m[0]);
      }
    }
    if (e.tagName === 'A' && e.textContent.trim() === %(button)s)
      r.button = {w: b.width, h: b.height, left: b.left, right: b.right, fontSize: fs};
  }
  var pre = parent.document.createElement('pre');
  pre.id = 'partnerd-probe';
  pre.textContent = JSON.stringify(r);
  parent.document.body.appendChild(pre);
})();
</script>
""" % {"minfont": MIN_FONT_PX, "button": json.dumps(BUTTON_TEXT)}


def probe_page(page, width):
    """The outer page: the mail (with PROBE) in an iframe WIDTH px wide."""
    inner = page.replace("</body>", PROBE + "</body>", 1)
    return ('<!DOCTYPE html><html><head><meta charset="UTF-8"></head>'
            '<body style="margin:0"><iframe style="border:0;width:%dpx;height:20000px" srcdoc="%s">'
            '</iframe></body></html>' % (width, html.escape(inner, quote=True)))


class Dom(html.parser.HTMLParser):
    """What the dumped DOM holds: tags, anchors (href, text), text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags = []
        self.anchors = []
        self.text = []
        self.probe = None
        self._a = None
        self._pre = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "a":
            self._a = [a.get("href"), ""]
            self.anchors.append(self._a)
        if tag == "pre" and a.get("id") == "partnerd-probe":
            self._pre = True
            self.probe = ""

    def handle_endtag(self, tag):
        if tag == "a":
            self._a = None
        if tag == "pre":
            self._pre = False

    def handle_data(self, data):
        if self._pre:
            self.probe += data
            return
        self.text.append(data)
        if self._a is not None:
            self._a[1] += data

    def all_text(self):
        return " ".join(" ".join(self.text).split())


def chromium(args, tmp):
    """Runs headless Chromium with a fresh profile; returns stdout."""
    prof = tempfile.mkdtemp(prefix="profile-", dir=tmp)
    try:
        p = subprocess.run(["chromium"] + CHROMIUM_FLAGS + ["--user-data-dir=" + prof] + args,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=CHROMIUM_TIMEOUT, check=False)
    finally:
        shutil.rmtree(prof, ignore_errors=True)
    if p.returncode != 0:
        raise RuntimeError("chromium exited %d: %s" % (p.returncode, p.stderr.decode(errors="replace")[-400:]))
    return p.stdout.decode("utf-8", errors="replace")


def png_pixels(path):
    """(width, height, rows of bytes, bytes per pixel) of an 8-bit RGB(A) PNG."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, hdr = 8, b"", None
    while pos < len(data):
        n, typ = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if typ == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif typ == b"IDAT":
            idat += body
        pos += 12 + n
    w, h, depth, ctype, _, _, interlace = hdr
    if depth != 8 or ctype not in (2, 6) or interlace:
        raise ValueError("unexpected PNG format (depth %d, colour type %d)" % (depth, ctype))
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(idat)
    stride = w * bpp
    rows, prev = [], bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        cur = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            a = cur[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if f == 1:
                cur[x] = (cur[x] + a) & 0xFF
            elif f == 2:
                cur[x] = (cur[x] + b) & 0xFF
            elif f == 3:
                cur[x] = (cur[x] + (a + b) // 2) & 0xFF
            elif f == 4:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                cur[x] = (cur[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(cur))
        prev = cur
    return w, h, rows, bpp


def check_png(path, width):
    """Problems with the screenshot (empty list: fine)."""
    if not os.path.exists(path) or os.path.getsize(path) < 2000:
        return ["screenshot missing or tiny"]
    w, h, rows, bpp = png_pixels(path)
    bad = []
    if (w, h) != (width, HEIGHT):
        bad.append("screenshot is %dx%d, expected %dx%d" % (w, h, width, HEIGHT))
    colours, dark = set(), 0
    for row in rows[::4]:
        for x in range(0, len(row), bpp * 2):
            px = row[x:x + 3]
            colours.add(px)
            if sum(px) < 3 * 100:
                dark += 1
    if len(colours) < 16 or dark < 500:
        bad.append("screenshot looks blank (%d colours, %d dark samples)" % (len(colours), dark))
    return bad


def check_dom(name, dom):
    bad = []
    text = dom.all_text()
    if "script" in dom.tags:
        bad.append("DOM has a <script> element")
    for t in ("iframe", "object", "embed", "form", "img"):
        if t in dom.tags:
            bad.append("DOM has an unexpected <%s>" % t)
    for href, _ in dom.anchors:
        if href and href.strip().lower().startswith(("javascript:", "data:")):
            bad.append("anchor with %s href" % href.split(":")[0])
    if name == "hostile":
        if HOSTILE not in text:
            bad.append("hostile customer name not shown literally")
    elif CUSTOMER not in text:
        bad.append("customer name %r not in the text" % CUSTOMER)
    for oid in ORDER_IDS:
        if oid not in text:
            bad.append("order id %s not in the text" % oid)
    buttons = [a for a in dom.anchors if " ".join(a[1].split()) == BUTTON_TEXT]
    if name in WITH_BUTTON:
        if len(buttons) != 1:
            bad.append("%d '%s' anchors, expected 1" % (len(buttons), BUTTON_TEXT))
        elif buttons[0][0] != ACCEPT_URL:
            bad.append("button href is %r, not the acceptance URL" % buttons[0][0])
        if ACCEPT_URL not in text.replace(" ", ""):
            bad.append("acceptance URL not shown as text (fallback for a broken button)")
    elif buttons:
        bad.append("unexpected '%s' button" % BUTTON_TEXT)
    return bad


def check_layout(name, probe, width):
    if probe is None:
        return ["layout probe produced nothing"]
    r = json.loads(probe)
    bad = []
    if r["viewport"] != width:
        bad.append("viewport is %s px, expected %d" % (r["viewport"], width))
    if r["scrollWidth"] > r["viewport"]:
        bad.append("page is %d px wide in a %d px viewport" % (r["scrollWidth"], r["viewport"]))
    if r["overflow"]:
        bad.append("overflowing: " + "; ".join(r["overflow"][:3]))
    if r["smallText"]:
        bad.append("text below %d px: %s" % (MIN_FONT_PX, "; ".join(r["smallText"][:3])))
    if r["wrappedIds"]:
        bad.append("order id broken over lines: " + ", ".join(r["wrappedIds"]))
    b = r["button"]
    if name in WITH_BUTTON:
        if not b:
            bad.append("button not laid out")
        else:
            if b["h"] < MIN_BUTTON_HEIGHT:
                bad.append("button only %.0f px tall" % b["h"])
            if b["left"] < 0 or b["right"] > r["viewport"]:
                bad.append("button not fully visible")
    return bad


def html_part(eml):
    with open(eml, "rb") as f:
        msg = email.message_from_binary_file(f, policy=email.policy.default)
    part = msg.get_body(preferencelist=("html",))
    if part is None or part.get_content_type() != "text/html":
        raise ValueError("%s: no text/html part" % eml)
    return part.get_content()


def write(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def dom_of(html_path, tmp):
    dom = Dom()
    dom.feed(chromium(["--dump-dom", "file://" + html_path], tmp))
    return dom


def probe_of(page, width, tag, tmp):
    """The layout measurements of page at width (JSON text, or None)."""
    path = write(os.path.join(tmp, "%s-%d.probe.html" % (tag, width)), probe_page(page, width))
    probe = Dom()
    probe.feed(chromium(["--window-size=1200,%d" % HEIGHT, "--dump-dom", "file://" + path], tmp))
    return probe.probe


def run_one(name, eml, out, tmp):
    """Rows (name, viewport, png, problems) for one mail."""
    page = html_part(eml)
    html_path = write(os.path.join(out, name + ".html"), page)
    dom_bad = check_dom(name, dom_of(html_path, tmp))
    rows = []
    for vp, width in VIEWPORTS:
        png = os.path.join(out, "%s-%s.png" % (name, vp))
        if os.path.exists(png):
            os.unlink(png)
        bad = list(dom_bad)
        try:
            chromium(["--window-size=%d,%d" % (width, HEIGHT), "--screenshot=" + png, "file://" + html_path], tmp)
            bad += check_png(png, width)
            bad += check_layout(name, probe_of(page, width, name, tmp), width)
        except (RuntimeError, ValueError, subprocess.TimeoutExpired) as e:
            bad.append(str(e))
        rows.append((name, vp, png, bad))
    return rows


# Deliberate faults, each applied to the rendered new-request page: the
# checks above must catch every one, or they prove nothing.
def _fault_dom(mutate, name="new-request"):
    def run(page, tmp, tag):
        return check_dom(name, dom_of(write(os.path.join(tmp, tag + ".html"), mutate(page)), tmp))
    return run


def _fault_layout(mutate, width):
    def run(page, tmp, tag):
        return check_layout("new-request", probe_of(mutate(page), width, tag, tmp), width)
    return run


def _fault_png(page, tmp, tag):
    path = write(os.path.join(tmp, tag + ".html"), "<!DOCTYPE html><html><body></body></html>")
    png = os.path.join(tmp, tag + ".png")
    chromium(["--window-size=414,%d" % HEIGHT, "--screenshot=" + png, "file://" + path], tmp)
    return check_png(png, 414)


def _href_amp(page):
    return page.replace("&amp;msppId=0", "&amp;amp;msppId=0", 1)


FAULTS = (
    ("button href altered", _fault_dom(_href_amp)),
    ("customer name injected as markup",
     _fault_dom(lambda p: p.replace("Hello ", "Hello <script>void 0</script><b>x</b>", 1), "hostile")),
    ("customer name lost its umlaut", _fault_dom(lambda p: p.replace("Müller", "Mller"))),
    ("order id missing", _fault_dom(lambda p: p.replace("ORD-4821-7731-0907", "ORD-?"))),
    ("element wider than a phone", _fault_layout(lambda p: p.replace(
        "</h1>", '</h1><div style="width:700px">wide</div>', 1), 414)),
    ("button too small", _fault_layout(lambda p: p.replace("padding:14px 28px;", "padding:2px;", 1), 414)),
    ("order id wraps", _fault_layout(lambda p: p.replace("white-space:nowrap;", ""), 1024)),
    ("blank screenshot", _fault_png),
)


def self_test(eml, tmp, ex):
    """Names of the deliberate faults the checks did not catch."""
    page = html_part(eml)
    futs = [(what, ex.submit(fn, page, tmp, "fault%d" % i)) for i, (what, fn) in enumerate(FAULTS)]
    missed = []
    for what, fu in futs:
        try:
            caught = bool(fu.result())
        except (RuntimeError, ValueError, subprocess.TimeoutExpired):
            caught = False
        if not caught:
            missed.append(what)
    return missed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--render", required=True, help="render_mails binary")
    ap.add_argument("--templates", required=True, help="template directory")
    ap.add_argument("--out", required=True, help="output directory for .eml/.html/.png")
    args = ap.parse_args()

    if not shutil.which("chromium"):
        print("check-html: chromium not found (apt-get install -y chromium)", file=sys.stderr)
        return 1
    os.makedirs(args.out, exist_ok=True)
    if subprocess.run([args.render, args.templates, args.out], stdout=subprocess.DEVNULL,
                      check=False).returncode != 0:
        print("check-html: %s failed" % args.render, file=sys.stderr)
        return 1
    names = list(KINDS) + ["hostile"]
    tmp = tempfile.mkdtemp(prefix="partnerd-check-html-")
    rows = []
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as ex:
            futs = [(n, ex.submit(run_one, n, os.path.join(args.out, n + ".eml"), args.out, tmp)) for n in names]
            for n, fu in futs:
                try:
                    rows += fu.result()
                except Exception as e:  # one mail's failure must not hide the others
                    rows.append((n, "-", "-", ["%s: %s" % (type(e).__name__, e)]))
            missed = self_test(os.path.join(args.out, "new-request.eml"), tmp, ex)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    failed = 0
    print("%-14s %-8s %-44s %s" % ("kind", "viewport", "png", "checks"))
    for name, vp, png, bad in rows:
        print("%-14s %-8s %-44s %s" % (name, vp, os.path.relpath(png) if png != "-" else png,
                                       "ok" if not bad else "FAILED"))
        for b in bad:
            print("    - " + b)
        failed += bool(bad)
    print("check-html: %d of %d renderings ok; look at the PNGs in %s" % (len(rows) - failed, len(rows),
                                                                         os.path.relpath(args.out)))
    print("check-html: self-test: %d of %d deliberate faults caught%s" % (
        len(FAULTS) - len(missed), len(FAULTS), "" if not missed else "; MISSED: " + ", ".join(missed)))
    return 1 if failed or missed else 0


if __name__ == "__main__":
    sys.exit(main())
