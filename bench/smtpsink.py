#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Counting SMTP sink for `make bench`: a real aiosmtpd server on
127.0.0.1 (port 0: the kernel picks one) that accepts every message and
appends one line per message to COUNT_FILE: "RCPTS BYTES SUBJECT" (the
decoded Subject, so the bench can tell the kinds of mail and whom they were
for).

    smtpsink.py PORT_FILE COUNT_FILE

Writes the port to PORT_FILE (atomically) once it listens; SIGTERM stops it.
"""
import asyncio
import email.parser
import email.policy
import os
import signal
import sys

from aiosmtpd.smtp import SMTP


class Counter:
    def __init__(self, path):
        self.f = open(path, "a", buffering=1)

    async def handle_DATA(self, server, session, envelope):
        data = envelope.content or b""
        try:
            msg = email.parser.BytesParser(policy=email.policy.default).parsebytes(data, headersonly=True)
            subject = " ".join(str(msg.get("Subject", "")).split())
        except Exception:  # a mail the parser refuses is still counted
            subject = "?"
        self.f.write("%d %d %s\n" % (len(envelope.rcpt_tos), len(data), subject))
        return "250 OK"


async def serve(port_file, count_file):
    loop = asyncio.get_running_loop()
    handler = Counter(count_file)
    srv = await loop.create_server(lambda: SMTP(handler, hostname="bench.test"),
                                   "127.0.0.1", 0)
    tmp = port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % srv.sockets[0].getsockname()[1])
    os.rename(tmp, port_file)
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    loop.add_signal_handler(signal.SIGINT, stop.set_result, None)
    await stop
    srv.close()
    await srv.wait_closed()


def main():
    if len(sys.argv) != 3:
        sys.stderr.write("usage: smtpsink.py PORT_FILE COUNT_FILE\n")
        return 2
    asyncio.run(serve(sys.argv[1], sys.argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
