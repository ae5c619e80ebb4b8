#!/bin/sh
# run.sh MODE [TARGET...] — builds the libFuzzer targets with clang in
# build/fuzz and runs each for FUZZ_SECONDS (MODE fuzz) or a short smoke
# run (MODE smoke, what `make check` calls).  Targets are the names after
# "fuzz_" (config, http_error, ...); default: every tests/fuzz/fuzz_*.c.
#
# The checked-in seed corpus is never written to: new inputs go to
# build/fuzz/corpus/NAME, crashes to build/fuzz/artifacts/NAME-*.
# Skips (exit 0, with a message) when clang or its fuzzer runtime is absent.
set -u
mode=${1:-smoke}
[ $# -gt 0 ] && shift
seconds=${FUZZ_SECONDS:-60}
make=${MAKE:-make}
build=${FUZZ_BUILD:-build/fuzz}
clang=${FUZZ_CC:-clang}
fuzzdir=tests/fuzz

case $mode in
fuzz) label=fuzz ;;
smoke) label=fuzz-smoke ;;
*) echo "usage: $0 fuzz|smoke [target...]" >&2; exit 2 ;;
esac

if ! command -v "$clang" >/dev/null 2>&1; then
        echo "$label: SKIPPED: $clang not found (install clang and libclang-rt-dev)"
        exit 0
fi
probe=$(mktemp -d) || exit 1
trap 'rm -rf "$probe"' EXIT
cat >"$probe/p.c" <<'EOF'
#include <stddef.h>
#include <stdint.h>
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void) d; (void) n; return 0; }
EOF
if ! "$clang" -fsanitize=fuzzer,address,undefined -o "$probe/p" "$probe/p.c" >/dev/null 2>&1; then
        echo "$label: SKIPPED: $clang cannot link -fsanitize=fuzzer,address,undefined" \
             "(the compiler-rt fuzzer runtime, e.g. libclang-rt-dev, is missing)"
        exit 0
fi

if [ $# -eq 0 ]; then
        for f in "$fuzzdir"/fuzz_*.c; do
                [ -e "$f" ] || continue
                n=${f##*/fuzz_}; set -- "$@" "${n%.c}"
        done
fi
[ $# -gt 0 ] || { echo "$label: no targets"; exit 0; }
targets=$*
ntargets=$#

bins=""
for t in $targets; do bins="$bins $build/tests/fuzz/fuzz_$t"; done
# shellcheck disable=SC2086
$make --no-print-directory BUILD="$build" CC="$clang" SAN=address,undefined \
        CFLAGS="-O1 -g -fsanitize=fuzzer-no-link" $bins || {
        echo "$label: build failed" >&2; exit 1; }

mkdir -p "$build/artifacts"
failed=""
for t in $targets; do
        bin=$build/tests/fuzz/fuzz_$t
        seeds=$fuzzdir/corpus/$t
        work=$build/corpus/$t
        log=$build/fuzz_$t-$mode.log
        mkdir -p "$work"
        set -- -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
                -detect_leaks=1 -artifact_prefix="$build/artifacts/$t-"
        # Per-target options (max_len ...) from tests/fuzz/NAME.options, one per line.
        if [ -f "$fuzzdir/$t.options" ]; then
                while read -r opt; do
                        case $opt in ''|'#'*) ;; *) set -- "$@" "-$opt" ;; esac
                done <"$fuzzdir/$t.options"
        fi
        [ -f "$fuzzdir/$t.dict" ] && set -- "$@" -dict="$fuzzdir/$t.dict"
        [ -d "$seeds" ] || seeds=
        echo "== $label: $t (${seconds}s)"
        # shellcheck disable=SC2086
        if ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
           UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
           "$bin" "$@" "$work" $seeds >"$log" 2>&1; then
                runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
                rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
                cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
                echo "   ok: ${runs:-?} runs, ${rate:-?} exec/s, ${cov:-cov: ?}"
        else
                failed="$failed $t"
                echo "   FAILED: see $log; reproducer in $build/artifacts/$t-*"
                grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error|.*FUZZ PROPERTY)' "$log" | head -n 5
        fi
done
if [ -n "$failed" ]; then
        echo "$label: failed:$failed"
        exit 1
fi
echo "$label: $ntargets targets passed"
