#!/bin/sh
# SPDX-License-Identifier: MIT
# `make bench` entry point; see bench/README.md.  Debian's aiosmtpd loads only
# in /usr/bin/python3, so the driver is run by that interpreter explicitly.
exec /usr/bin/python3 "$(dirname "$0")/run.py" "$@"
