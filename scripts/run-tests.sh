#!/bin/sh
# run-tests.sh SUITE BIN... — runs each cmocka binary, prints its output and
# a closing line "SUITE: N passed, N failed, N skipped" counting test cases:
# cmocka's own summary of each binary ("[  PASSED  ] N test(s).", "[  FAILED
# ] N test(s)", "[  SKIPPED ] N test(s)"); a cmocka skip() leaves the
# binary's exit status 0 and is counted as skipped, never as passed.  A
# binary that exits 77 (the automake convention) is one skipped test; one
# that fails without a cmocka summary (a crash, a valgrind error) is one
# failed test.  With VALGRIND=1 each binary runs under valgrind (leaks and
# errors fail the test).  With CHECK_TALLY=FILE the counts are appended to
# FILE as "SUITE PASSED FAILED SKIPPED".  Exit status 1 when anything failed.
suite=$1; shift
passed=0; failed=0; skipped=0; failures=""; skips=""
out=$(mktemp "${TMPDIR:-/tmp}/run-tests.XXXXXX") || exit 1
trap 'rm -f "$out" "$out.rc"' EXIT
trap 'exit 130' INT TERM

# The N of the cmocka summary line "[  WORD ] N test(s)..." in $out (0 if none).
summary() {
        sed -n "s/^\[  *$1  *\] \([0-9][0-9]*\) test(s).*/\1/p" "$out" | tail -n 1 | grep . || echo 0
}

for t in "$@"; do
        name=$(basename "$t")
        if [ "${VALGRIND:-0}" = 1 ]; then
                set -- valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect \
                        --error-exitcode=99 "$t"
        else
                set -- "$t"
        fi
        echo "== $suite: $name"
        # stdout and stderr both to the terminal and to $out; the exit status
        # survives the pipe through $out.rc
        { "$@" 2>&1; echo $? > "$out.rc"; } | tee "$out"
        rc=$(cat "$out.rc")
        p=$(summary PASSED); f=$(summary FAILED); s=$(summary SKIPPED)
        if [ "$rc" = 77 ]; then
                s=$((s + 1)); p=0
        elif [ "$rc" != 0 ] && [ "$f" = 0 ]; then
                f=1
        fi
        passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
        [ "$f" != 0 ] && failures="$failures $name"
        [ "$s" != 0 ] && skips="$skips $name($s)"
done
[ -n "$skips" ] && echo "$suite: skipped:$skips"
[ -n "$failures" ] && echo "$suite: failed:$failures"
echo "$suite: $passed passed, $failed failed, $skipped skipped"
# `make check` adds every suite's counts to its closing line
[ -n "${CHECK_TALLY:-}" ] && echo "$suite $passed $failed $skipped" >> "$CHECK_TALLY"
[ "$failed" = 0 ]
