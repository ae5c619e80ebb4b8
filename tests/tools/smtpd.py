#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A scriptable SMTP server for the mail tests (aiosmtpd).

Every accepted message is stored in --dir as NNNN.eml (the DATA exactly as
received, after dot-unstuffing) with NNNN.json beside it: envelope sender,
recipients, whether the session used TLS, the authenticated user and the
server-side transcript of commands (AUTH arguments are never recorded).

  --port 0            bind a free port; prints "smtpd listening on
                      127.0.0.1:PORT" and writes PORT to --port-file
  --tls-cert/--tls-key  offer STARTTLS and require it before MAIL
  --implicit-tls      with --tls-cert/--tls-key: TLS from the first byte
                      (smtps) instead of STARTTLS
  --host ADDR         address to bind (default 127.0.0.1)
  --auth user:password  AUTH PLAIN/LOGIN; required before MAIL
  --refuse ADDR       550 for RCPT TO:<ADDR> (repeatable)
  --fail-data N       451 for the first N DATA transactions
  --reply-code CODE   answer every DATA with CODE (e.g. 554)
  --drop-after-data N  for the first N DATA transactions, read the message,
                      then close the connection without a reply (and without
                      storing it): the client cannot know whether it went
  --stall-file FILE   while FILE exists, each DATA transaction that arrives
                      stalls for the milliseconds FILE holds before the
                      message is stored and answered 250, and FILE.inflight
                      exists during the stall: a test can kill the client
                      with a transfer in flight.  The message was received
                      whole, so it is stored even when the client is gone,
                      as a real MTA that got the final dot would.
The JSON sidecar also holds "message_id" (the Message-ID header),
"data_at" (time.time() when the whole message was received) and
"accepted_at" (when it was stored, just before the 250).
Exits cleanly on SIGTERM/SIGINT.
"""
import argparse
import asyncio
import email.parser
import json
import logging
import os
import signal
import ssl
import sys
import time
import warnings

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword, TLSSetupException


class Handler:
    def __init__(self, args):
        self.dir = args.dir
        self.refuse = {a.lower() for a in args.refuse}
        self.fail_data = args.fail_data
        self.reply_code = args.reply_code
        self.drop_after_data = args.drop_after_data
        self.stall_file = args.stall_file
        self.count = 0
        self.data_seen = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        session.transcript.append("RCPT TO:<%s>" % address)
        if address.lower() in self.refuse:
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        session.transcript.append("MAIL FROM:<%s>" % address)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_DATA(self, server, session, envelope):
        self.data_seen += 1
        session.transcript.append("DATA")
        if self.data_seen <= self.drop_after_data:
            server.transport.abort()
            return "421 4.3.0 connection dropped by test policy"  # never reaches the client
        if self.reply_code:
            return "%d 5.7.1 Message refused by test policy" % self.reply_code
        if self.data_seen <= self.fail_data:
            return "451 4.3.0 Temporary failure, try again later"
        # Shielded: a client that disconnects during the stall cancels
        # handle_DATA, but the message it sent whole is still stored.
        return await asyncio.shield(self.accept(session, envelope, time.time()))

    async def accept(self, session, envelope, data_at):
        await self.stall()
        self.count += 1
        base = os.path.join(self.dir, "%04d" % self.count)
        raw = envelope.original_content or envelope.content
        msg = email.parser.BytesHeaderParser().parsebytes(raw)
        side = {
            "message_id": msg.get("Message-ID"),
            "data_at": data_at,
            "accepted_at": time.time(),
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "tls": session.ssl is not None,
            "auth_user": getattr(session, "auth_user", None),
            "transcript": session.transcript,
        }
        write_atomic(base + ".json", json.dumps(side, indent=1).encode())
        write_atomic(base + ".eml", envelope.original_content or envelope.content)
        return "250 2.0.0 Ok: queued as %04d" % self.count


    async def stall(self):
        if not self.stall_file:
            return
        try:
            with open(self.stall_file) as f:
                ms = int(f.read().strip() or "0")
        except (OSError, ValueError):
            return
        marker = self.stall_file + ".inflight"
        write_atomic(marker, b"%f\n" % time.time())
        try:
            await asyncio.sleep(ms / 1000.0)
        finally:
            try:
                os.unlink(marker)
            except FileNotFoundError:
                pass


def write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


class TestSMTP(SMTP):
    """Keeps a per-session transcript of the commands."""

    def connection_made(self, transport):
        # Called again after STARTTLS with a new session: keep the transcript.
        old = getattr(getattr(self, "session", None), "transcript", [])
        super().connection_made(transport)
        self.session.transcript = old

    async def smtp_STARTTLS(self, arg):
        self.session.transcript.append("STARTTLS")
        try:
            return await super().smtp_STARTTLS(arg)
        except TLSSetupException:
            # A client refusing our certificate is an expected test case.
            self.transport.close()

    async def smtp_AUTH(self, arg):
        # Only the mechanism; the credentials never reach the transcript.
        self.session.transcript.append("AUTH " + (arg.split()[0] if arg else ""))
        return await super().smtp_AUTH(arg)


def main():
    # aiosmtpd itself touches its deprecated Session.login_data and logs it.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    # With --implicit-tls the whole session is TLS already.
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--implicit-tls", action="store_true")
    ap.add_argument("--auth")
    ap.add_argument("--refuse", action="append", default=[])
    ap.add_argument("--fail-data", type=int, default=0)
    ap.add_argument("--reply-code", type=int, default=0)
    ap.add_argument("--drop-after-data", type=int, default=0)
    ap.add_argument("--stall-file")
    args = ap.parse_args()

    os.makedirs(args.dir, exist_ok=True)
    handler = Handler(args)
    tls = None
    if args.tls_cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
    user = password = None
    if args.auth:
        user, _, password = args.auth.partition(":")

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword)
              and auth_data.login.decode() == user and auth_data.password.decode() == password)
        if ok:
            session.auth_user = user
        return AuthResult(success=ok, handled=False)

    def factory():
        kw = dict(hostname="smtpd.test", data_size_limit=64 * 1024 * 1024)
        if tls and not args.implicit_tls:
            kw.update(tls_context=tls, require_starttls=True)
        if args.auth:
            kw.update(authenticator=authenticator, auth_required=True,
                      auth_require_tls=bool(tls) and not args.implicit_tls)
        return TestSMTP(handler, **kw)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(loop.create_server(
        factory, args.host, args.port, ssl=tls if args.implicit_tls else None))
    port = server.sockets[0].getsockname()[1]
    if args.port_file:
        write_atomic(args.port_file, b"%d\n" % port)
    print("smtpd listening on %s:%d" % (args.host, port), flush=True)

    stop = loop.create_future()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, lambda: stop.done() or stop.set_result(None))
    loop.run_until_complete(stop)
    server.close()
    loop.run_until_complete(server.wait_closed())
    # Clients may keep connections open (curl caches them): end them quietly.
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in tasks:
        t.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
