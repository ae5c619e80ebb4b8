#!/bin/sh
# run-tests.sh SUITE BIN... — runs each cmocka binary, prints its output and
# a closing line "SUITE: N passed, N failed".  With VALGRIND=1 each binary
# runs under valgrind (leaks and errors fail the test).
suite=$1; shift
passed=0; failed=0; failures=""
for t in "$@"; do
        name=$(basename "$t")
        if [ "${VALGRIND:-0}" = 1 ]; then
                set -- valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect \
                        --error-exitcode=99 "$t"
        else
                set -- "$t"
        fi
        echo "== $suite: $name"
        if "$@"; then
                passed=$((passed + 1))
        else
                failed=$((failed + 1)); failures="$failures $name"
        fi
done
[ -n "$failures" ] && echo "$suite: failed:$failures"
echo "$suite: $passed passed, $failed failed"
[ "$failed" = 0 ]
