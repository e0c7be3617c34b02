#!/usr/bin/env bash
# `make test`'s runner: the tiers that use no shared service (SQLite, files, subprocesses of
# their own) in one pytest process, reniced, beside the real-service tiers in another. The
# service tiers spend most of their time waiting on sockets, leases and sleeps, so the two share
# the machine's cores well; the unit tiers' report is printed when both are done. pytest's exit
# code 5 (no test collected) is a failure of either, and so is a pytest ended by a signal.
#
#   tools/test_split.sh PYTHON [PYTEST ARGS...]
#
# With pytest arguments (a path, -k, -m: a developer choosing tests) or TEST_SPLIT=0 it runs one
# plain pytest instead.
#
# Ctrl-C, or a SIGTERM of this script (make passes its SIGTERM on), stops both at once: each
# pytest runs in a process group of its own (job control; a script's background job would start
# with SIGINT ignored, and the tests of Ctrl-C, tests/test_sweep.py, need it as from a terminal),
# which gets a SIGINT (pytest's KeyboardInterrupt: fixtures torn down, databases dropped, the
# servers it started stopped) and, once both have ended or after TEST_SPLIT_GRACE seconds (30),
# what is left a SIGTERM; the unit tiers' report so far is printed and the script exits 128 +
# the signal's number. A SIGTERM used to wait for the service tiers to finish, and the unit tiers
# got a SIGTERM, with no teardown.
set -uo pipefail

python=$1
shift

checked() {  # pytest's status, with 5 (nothing collected) made a failure, a signal named
    if [ "$1" -eq 5 ]; then
        echo "pytest collected no tests${2:+ ($2)}" >&2
        return 1
    fi
    if [ "$1" -gt 128 ]; then
        local name
        name=$(kill -l "$1" 2>/dev/null)
        echo "pytest was ended by signal $(($1 - 128)) (SIG$name)${2:+ ($2)}" >&2
    fi
    return "$1"
}

if [ $# -gt 0 ] || [ "${TEST_SPLIT:-1}" = 0 ]; then
    "$python" -m pytest "$@"
    checked $?
    exit $?
fi

log=$(mktemp "${TMPDIR:-/tmp}/backpain-unit-tiers.XXXXXX")
pids=()  # the two pytest processes; each leads its process group

show_unit_report() {
    echo
    echo "================ the unit tiers (run alongside) ================"
    cat "$log"
}

signal_groups() {  # SIGNAL PID...: the process groups those PIDs lead
    local signal=$1 pid
    shift
    for pid in "$@"; do
        kill -"$signal" -- "-$pid" 2>/dev/null
    done
}

any_alive() {  # PID...: whether one of them is still running
    local pid
    for pid in "$@"; do
        kill -0 "$pid" 2>/dev/null && return 0
    done
    return 1
}

stop() {  # SIGNAL: stop both runs and everything they started; exit 128 + the signal's number
    trap 'signal_groups TERM "${pids[@]}"' INT TERM  # a second Ctrl-C: at once
    echo "test_split: SIG$1: stopping both pytest runs" >&2
    signal_groups INT "${pids[@]}"
    local deadline=$((SECONDS + ${TEST_SPLIT_GRACE:-30}))
    while any_alive "${pids[@]}" && ((SECONDS < deadline)); do
        sleep 0.2
    done
    signal_groups TERM "${pids[@]}"  # what is left, and what the runs left behind
    while any_alive "${pids[@]}"; do
        wait "${pids[@]}"  # again when a second Ctrl-C cuts it short
    done
    show_unit_report
    rm -f "$log"
    exit $((128 + $(kill -l "$1")))
}

trap 'stop INT' INT
trap 'stop TERM' TERM

echo "make test: the unit tiers run alongside (their report follows these tiers')"
set -m  # job control: each pytest (and what it starts) in a process group of its own
nice -n 5 "$python" -m pytest -m "not services" </dev/null >"$log" 2>&1 &
pids+=($!)
"$python" -m pytest -m services </dev/null &
pids+=($!)
set +m
unit_pid=${pids[0]}
services_pid=${pids[1]}

wait "$services_pid"
checked $? "the real-service tiers"
services=$?

wait "$unit_pid"
unit=$?
pids=()  # reaped: their numbers may be other processes' by now
show_unit_report
checked "$unit" "the unit tiers"
unit=$?

[ "$services" -eq 0 ] && [ "$unit" -eq 0 ]
