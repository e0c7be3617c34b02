#!/usr/bin/env bash
# `make test`'s runner: the tiers that use no shared service (SQLite, files, subprocesses of
# their own) in one pytest process, reniced, beside the real-service tiers in another. The
# service tiers spend most of their time waiting on sockets, leases and sleeps, so the two share
# the machine's cores well; the unit tiers' report is printed when both are done. pytest's exit
# code 5 (no test collected) is a failure of either.
#
#   tools/test_split.sh PYTHON [PYTEST ARGS...]
#
# With pytest arguments (a path, -k, -m: a developer choosing tests) or TEST_SPLIT=0 it runs one
# plain pytest instead.
set -uo pipefail

python=$1
shift

checked() {  # pytest's status, with 5 (nothing collected) made a failure
    if [ "$1" -eq 5 ]; then
        echo "pytest collected no tests${2:+ ($2)}" >&2
        return 1
    fi
    return "$1"
}

if [ $# -gt 0 ] || [ "${TEST_SPLIT:-1}" = 0 ]; then
    "$python" -m pytest "$@"
    checked $?
    exit $?
fi

log=$(mktemp "${TMPDIR:-/tmp}/backpain-unit-tiers.XXXXXX")
trap 'rm -f "$log"' EXIT
# Job control on for the launch: a non-interactive shell starts a background job with SIGINT
# ignored, and the tests of Ctrl-C (tests/test_sweep.py) need it as a process gets it from a
# terminal. The job is then a process group of its own, killed whole if this script is stopped.
set -m
nice -n 5 "$python" -m pytest -m "not services" >"$log" 2>&1 &
unit_pid=$!
set +m
trap 'kill -- "-$unit_pid" 2>/dev/null; rm -f "$log"; exit 130' INT TERM

echo "make test: the unit tiers run alongside (their report follows these tiers')"
"$python" -m pytest -m services
checked $? "the real-service tiers"
services=$?

wait "$unit_pid"
unit=$?
echo
echo "================ the unit tiers (run alongside) ================"
cat "$log"
checked "$unit" "the unit tiers"
unit=$?

[ "$services" -eq 0 ] && [ "$unit" -eq 0 ]
