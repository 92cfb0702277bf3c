#!/usr/bin/env bash
# Runs every suite and prints one total line: "N passed, M failed".
# Unit suites are Check binaries (fork mode: each test in its own process);
# integration suites are Python (stdlib) against the real binary on 127.0.0.1.
# ONLY=unit|integration narrows the run; FILTER=substr narrows integration tests.
#
# A run that proves nothing must not look green, so each of these counts as
# a failure: an unknown ONLY (nothing would run), a unit source without its
# binary, a unit binary that exits non-zero (even after a Check summary: a
# crash or a sanitizer report at exit comes after it), a FILTER that matches
# no test, and a suite that runs fewer tests than its floor below.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export LUAPROXY=${LUAPROXY:-$BUILD/luaproxy}
export BUILD
passed=0
failed=0

# Floors: a little below what each suite runs today (unit 179 with 90
# fuzz-corpus inputs, integration 270+), so that a lost test file, a suite
# whose discovery breaks or a corpus that went missing fails the run instead
# of shrinking it. The integration floor applies only without FILTER, which
# narrows on purpose. Raise them as the suites grow; MIN_UNIT and
# MIN_INTEGRATION override them (the runner's own tests use that).
MIN_UNIT=${MIN_UNIT:-160}
MIN_INTEGRATION=${MIN_INTEGRATION:-240}

ONLY=${ONLY:-}
case "$ONLY" in
    ""|unit|integration) ;;
    *)
        echo "tests/run.sh: unknown ONLY=$ONLY (expected unit or integration)" >&2
        echo "0 passed, 1 failed"
        exit 2
        ;;
esac

# fail MESSAGE: one failure that is not a test's own.
fail() {
    echo "FAIL $1"
    failed=$((failed + 1))
}

# floor SUITE RAN MIN
floor() {
    if [ "$2" -lt "$3" ]; then
        fail "$1: only $2 tests ran, at least $3 expected (tests/run.sh floors)"
    fi
}

if [ "$ONLY" != integration ]; then
    ran=0
    for src in tests/unit/test_*.c; do
        t="$BUILD/tests/$(basename "$src" .c)"
        name=$(basename "$t")
        if [ ! -x "$t" ]; then
            fail "[$name] $t is not built (make unit builds it)"
            continue
        fi
        out=$(CK_FORK=yes "$t" 2>&1)
        rc=$?
        echo "$out" | grep -vE '^Running suite' | sed "s|^|[$name] |"
        # Check's summary: "100%: Checks: 12, Failures: 0, Errors: 0"
        line=$(echo "$out" | grep -E 'Checks: [0-9]+, Failures: [0-9]+, Errors: [0-9]+' | tail -1)
        if [ -z "$line" ]; then
            fail "[$name] no Check summary (exit $rc)"
            continue
        fi
        n=$(echo "$line" | sed -E 's/.*Checks: ([0-9]+).*/\1/')
        f=$(echo "$line" | sed -E 's/.*Failures: ([0-9]+).*/\1/')
        e=$(echo "$line" | sed -E 's/.*Errors: ([0-9]+).*/\1/')
        passed=$((passed + n - f - e))
        failed=$((failed + f + e))
        ran=$((ran + n))
        if [ "$rc" -ne 0 ] && [ $((f + e)) -eq 0 ]; then
            fail "[$name] exited with status $rc after a clean Check summary"
        fi
    done
    floor unit "$ran" "$MIN_UNIT"
fi

if [ "$ONLY" != unit ]; then
    # The runner's output goes to our stdout as it comes; a copy in a file
    # gives its last line. (tee /dev/stderr would reopen the file stderr is
    # redirected to, truncating it: `make test >log 2>&1` lost lines.)
    log=$(mktemp)
    python3 tests/integration/run.py 2>&1 | tee "$log"
    out=$(tail -1 "$log")
    rm -f "$log"
    # run.py ends with "integration: N passed, M failed"
    if echo "$out" | grep -qE '^integration: [0-9]+ passed, [0-9]+ failed$'; then
        p=$(echo "$out" | sed -E 's/^integration: ([0-9]+) passed.*/\1/')
        f=$(echo "$out" | sed -E 's/.* ([0-9]+) failed$/\1/')
        passed=$((passed + p))
        failed=$((failed + f))
        if [ -n "${FILTER:-}" ]; then
            floor "integration (FILTER=$FILTER)" $((p + f)) 1
        else
            floor integration $((p + f)) "$MIN_INTEGRATION"
        fi
    else
        fail "integration runner did not finish"
    fi
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
