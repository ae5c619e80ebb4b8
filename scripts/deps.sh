#!/bin/sh
# Verifies the build and test dependencies; on Debian as root installs the
# missing packages, otherwise prints the exact command to run.
# `deps.sh chromium`: only the browser `make check-html` needs.
set -eu

# Build: the -dev packages.  Tests: cmocka, libmicrohttpd (fake platform),
# aiosmtpd (real SMTP server), jsonschema (API conformance), openssl (test
# certificates), valgrind, clang + its runtime (sanitizers, libFuzzer),
# systemd + groff + procps (unit, catalog and man page checks: systemd-analyze
# verify wants /bin/kill of the unit's ExecReload), prometheus (promtool:
# the alerting rules and the metrics file), etcd-server + etcd-client (the
# cluster tests: a real etcd on loopback).
missing=""
if [ "${1:-}" = chromium ]; then
        PKGS="chromium fonts-liberation"   # the fonts are only a Recommends
        command -v chromium >/dev/null 2>&1 || missing=" chromium"
        [ -d /usr/share/fonts/truetype/liberation ] || missing="$missing fonts-liberation"
else
        PKGS="build-essential pkg-config libcurl4-openssl-dev libjansson-dev libuv1-dev libsystemd-dev \
libcmocka-dev libmicrohttpd-dev python3 python3-aiosmtpd python3-jsonschema openssl valgrind \
ca-certificates clang libclang-rt-14-dev systemd groff-base etcd-server etcd-client \
procps prometheus"

        have_pc() { command -v pkg-config >/dev/null 2>&1 && pkg-config --exists "$1"; }
        for pc in libcurl jansson libuv libsystemd cmocka libmicrohttpd; do
                have_pc "$pc" || missing="$missing $pc"
        done
        [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import aiosmtpd, jsonschema' 2>/dev/null \
                || missing="$missing python3-aiosmtpd/python3-jsonschema"
        for cmd in openssl valgrind cc make clang systemd-analyze groff etcd etcdctl promtool; do
                command -v "$cmd" >/dev/null 2>&1 || missing="$missing $cmd"
        done
        [ -x /bin/kill ] || missing="$missing procps"
fi

[ -z "$missing" ] && exit 0

echo "deps: missing:$missing" >&2
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "deps: run as root:  apt-get update && apt-get install -y $PKGS" >&2
        exit 1
fi
echo "deps: installing Debian packages" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $PKGS >/dev/null
echo "deps: done" >&2
