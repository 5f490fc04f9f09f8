#!/usr/bin/env bash
# `make test`: every tier in three groups at once, each in its own pytest process, since most of the SLURM tier's
# time is waiting (jobs queue, stand-ins sleep, faults last) while the other tiers keep the two cores busy:
#   tiers      unit, integration, e2e, security on two xdist workers (a file's tests stay on one worker)
#   slurm      the tests on the test cluster, one at a time (they share it and count its jobs; the fault tests
#              pause its daemons under tests/slurm/faults_util.py's lock)
#   rehearsal  the reduced rehearsals, one at a time, each on its own rehearsal cluster beside the test cluster
# Each group's log is printed whole when the group ends (with its --durations); the exit status is the first
# failing group's. Usage: scripts/test-tiers.sh [extra pytest arguments for every group]
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
logs=$(mktemp -d /tmp/awd-test-tiers.XXXXXX)
names=(tiers slurm rehearsal)
declare -A pids
start=$(date +%s)

run() {
    local name=$1
    shift
    ("$PY" -m pytest -q -p no:cacheprovider "$@" >"$logs/$name.log" 2>&1; echo $? >"$logs/$name.rc") &
    pids[$name]=$!
}
run tiers -n 2 --dist loadfile --durations=15 -m "not slurm" "$@"
run slurm --durations=10 -m "slurm and not rehearsal" "$@"
run rehearsal --durations=3 -m rehearsal "$@"
trap 'kill -- "${pids[@]}" 2>/dev/null; exit 130' INT TERM

rc=0
left=("${names[@]}")
while ((${#left[@]})); do
    waiting=()
    for name in "${left[@]}"; do waiting+=("${pids[$name]}"); done
    wait -n "${waiting[@]}" 2>/dev/null || sleep 1
    still=()
    for name in "${left[@]}"; do
        if [[ -f $logs/$name.rc ]]; then
            code=$(cat "$logs/$name.rc")
            printf '\n===== %s: exit %s after %d s =====\n' "$name" "$code" $(($(date +%s) - start))
            cat "$logs/$name.log"
            # 5: no test selected (a tier absent from a partial run) is not a failure
            if ((code != 0 && code != 5 && rc == 0)); then rc=$code; fi
        else
            still+=("$name")
        fi
    done
    left=("${still[@]}")
done
printf '\n===== make test: %d s; groups: %s =====\n' $(($(date +%s) - start)) \
    "$(for n in "${names[@]}"; do printf '%s=%s ' "$n" "$(cat "$logs/$n.rc")"; done)"
rm -rf "$logs"
exit "$rc"
