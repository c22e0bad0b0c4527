#!/bin/sh
# Runs every test program under build/tests and the HTTP tests, then prints
# one closing line "N passed, N failed, N skipped" adding them all together.
#
# Exit status: non-zero whenever anything failed: a program that reports a
# failure, exits non-zero or prints no result line, and pytest by its own
# exit status (a failure, an error, a crash, nothing collected), whatever
# its summary line says. Needs nothing that "make deps" does not install
# (POSIX sh, grep, sed; no bc).
#
# SD_TEST_BIN: the folder of the test programs (build/tests; build/asan/
# tests for "make test-asan"). SD_HTTP_TESTS: the pytest folder
# (tests/http). SD_SKIP_HTTP=1: the programs only. SD_TEST_OUT: where
# pytest's log and exit status go (build; tests/http/test_runner.py runs
# this script inside the HTTP tests and must not overwrite the outer
# run's log, whose counts would then be lost).
set -u
cd "$(dirname "$0")/.."

bin=${SD_TEST_BIN:-build/tests}
outdir=${SD_TEST_OUT:-build}
http=${SD_HTTP_TESTS:-tests/http}

passed=0; failed=0; skipped=0; broken=0

# count WORD TEXT: the sum of the "N WORD" in TEXT
count() {
    n=0
    for v in $(printf '%s\n' "$2" | grep -oE "[0-9]+ $1" | sed 's/ .*//'); do
        n=$((n + v))
    done
    echo "$n"
}

programs=0
for t in "$bin"/test_*; do
    [ -x "$t" ] || continue
    programs=$((programs + 1))
    name=$(basename "$t")
    echo "== $name"
    out=$("$t" 2>&1); rc=$?
    printf '%s\n' "$out" | grep -v '^[0-9]* passed, ' || true
    line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' |
           tail -n 1)
    if [ -z "$line" ]; then
        echo "FAIL $name: exited $rc without a result line"
        broken=$((broken + 1))
        continue
    fi
    echo "   $line"
    p=$(count passed "$line"); f=$(count failed "$line")
    s=$(count skipped "$line")
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "FAIL $name: exited $rc"
        broken=$((broken + 1))
    fi
done

if [ "$programs" -eq 0 ]; then
    echo "FAIL: no test programs in $bin (run make first)"
    broken=$((broken + 1))
fi

if [ -d "$http" ] && [ "${SD_SKIP_HTTP:-0}" != 1 ]; then
    echo "== http (pytest)"
    mkdir -p "$outdir"
    log=$outdir/pytest.log
    # Debian's python3 (with python3-pytest), not whatever else is on PATH
    py=${SD_PYTHON:-/usr/bin/python3}
    [ -x "$py" ] || py=python3
    # pytest's exit status survives the pipe through tee in this file
    { "$py" -m pytest -q -rs "$http" 2>&1
      echo "$?" > "$outdir/pytest.rc"; } | tee "$log"
    rc=$(cat "$outdir/pytest.rc" 2>/dev/null || echo 1)
    line=$(grep -E '[0-9]+ (passed|failed|skipped|errors?)' "$log" |
           tail -n 1)
    p=$(count passed "$line"); f=$(count failed "$line")
    e=$(count error "$line"); s=$(count skipped "$line")
    passed=$((passed + p)); failed=$((failed + f + e))
    skipped=$((skipped + s))
    if [ "$rc" -ne 0 ] && [ $((f + e)) -eq 0 ]; then
        echo "FAIL http: pytest exited $rc"
        broken=$((broken + 1))
    fi
    if [ "$rc" -eq 0 ] && [ $((f + e)) -ne 0 ]; then
        echo "FAIL http: pytest exited 0 but reported $((f + e)) failed"
        broken=$((broken + 1))
    fi
fi

failed=$((failed + broken))
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
