#!/bin/sh
# Runs every test program under build/tests and the HTTP tests, then prints
# one closing line "N passed, N failed, N skipped" adding them all together.
# Exit status: non-zero when anything failed or a program crashed.
set -u
cd "$(dirname "$0")/.."

passed=0; failed=0; skipped=0; crashed=0
for t in build/tests/test_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    echo "== $name"
    out=$("$t" 2>&1); rc=$?
    printf '%s\n' "$out" | grep -v '^[0-9]* passed, ' || true
    line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -n 1)
    if [ -z "$line" ]; then
        echo "FAIL $name: exited $rc without a result line"
        crashed=$((crashed + 1)); continue
    fi
    echo "   $line"
    p=$(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/')
    f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
    s=$(echo "$line" | sed -nE 's/.* ([0-9]+) skipped.*/\1/p')
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + ${s:-0}))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "FAIL $name: exited $rc"; crashed=$((crashed + 1))
    fi
done

if [ -d tests/http ] && [ "${SD_SKIP_HTTP:-0}" != 1 ]; then
    echo "== http (pytest)"
    log=build/pytest.log
    # Debian's python3 (with python3-pytest), not whatever else is on PATH
    py=${SD_PYTHON:-/usr/bin/python3}
    [ -x "$py" ] || py=python3
    "$py" -m pytest -q -rs tests/http 2>&1 | tee "$log"
    line=$(grep -E '^=* ?[0-9]+ (passed|failed)' "$log" | tail -n 1)
    p=$(echo "$line" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+' || echo 0)
    f=$(echo "$line" | grep -oE '[0-9]+ (failed|error)' | grep -oE '[0-9]+' | paste -sd+ | bc 2>/dev/null || echo 0)
    s=$(echo "$line" | grep -oE '[0-9]+ skipped' | grep -oE '[0-9]+' || echo 0)
    [ -n "$line" ] || crashed=$((crashed + 1))
    passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0})); skipped=$((skipped + ${s:-0}))
fi

failed=$((failed + crashed))
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
