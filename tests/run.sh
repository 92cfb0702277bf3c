#!/usr/bin/env bash
# Runs every suite and prints one total line: "N passed, M failed".
# Unit suites are Check binaries (fork mode: each test in its own process);
# integration suites are Python (stdlib) against the real binary on 127.0.0.1.
# ONLY=unit|integration narrows the run; FILTER=substr narrows integration tests.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export LUAPROXY=${LUAPROXY:-$BUILD/luaproxy}
export BUILD
passed=0
failed=0

if [ "${ONLY:-unit}" = unit ] || [ -z "${ONLY:-}" ]; then
    for t in "$BUILD"/tests/test_*; do
        [ -x "$t" ] || continue
        out=$(CK_FORK=yes "$t" 2>&1)
        rc=$?
        echo "$out" | grep -vE '^Running suite' | sed "s|^|[$(basename "$t")] |"
        # Check's summary: "100%: Checks: 12, Failures: 0, Errors: 0"
        line=$(echo "$out" | grep -E 'Checks: [0-9]+, Failures: [0-9]+, Errors: [0-9]+' | tail -1)
        if [ -z "$line" ]; then
            echo "[$(basename "$t")] no Check summary (exit $rc)"
            failed=$((failed + 1))
            continue
        fi
        n=$(echo "$line" | sed -E 's/.*Checks: ([0-9]+).*/\1/')
        f=$(echo "$line" | sed -E 's/.*Failures: ([0-9]+).*/\1/')
        e=$(echo "$line" | sed -E 's/.*Errors: ([0-9]+).*/\1/')
        passed=$((passed + n - f - e))
        failed=$((failed + f + e))
    done
fi

if [ "${ONLY:-integration}" = integration ] || [ -z "${ONLY:-}" ]; then
    out=$(python3 tests/integration/run.py 2>&1 | tee /dev/stderr | tail -1)
    # run.py ends with "integration: N passed, M failed"
    if echo "$out" | grep -qE '^integration: [0-9]+ passed, [0-9]+ failed$'; then
        p=$(echo "$out" | sed -E 's/^integration: ([0-9]+) passed.*/\1/')
        f=$(echo "$out" | sed -E 's/.* ([0-9]+) failed$/\1/')
        passed=$((passed + p))
        failed=$((failed + f))
    else
        echo "integration runner did not finish"
        failed=$((failed + 1))
    fi
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
