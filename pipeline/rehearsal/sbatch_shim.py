"""The rehearsal's sbatch on PATH in the copy: counts every call (the report's sbatch figures) and fails one chosen
call once with the "Socket timed out" a busy slurmctld gives (the injected `sbatch_fail`)."""

from __future__ import annotations

SBATCH_SHIM = """#!/usr/bin/env bash
# Rehearsal: counts sbatch calls, fails call number {fail_at} once as a busy slurmctld would, else runs sbatch.
set -u
log={log}
n=$( (flock 9; n=$(( $(cat {counter} 2>/dev/null || echo 0) + 1 )); echo $n > {counter}; echo $n) 9>{counter}.lock)
if [ "$n" = "{fail_at}" ]; then
    echo "$(date +%s.%N) $n 1 injected" >> "$log"
    echo "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation" >&2
    exit 1
fi
out=$({sbatch} "$@" 2>/tmp/.awd-rehearsal-sbatch.$$); rc=$?
err=$(cat /tmp/.awd-rehearsal-sbatch.$$); rm -f /tmp/.awd-rehearsal-sbatch.$$
echo "$(date +%s.%N) $n $rc $(echo "$err" | tr '\\n' ' ')" >> "$log"
[ -n "$out" ] && echo "$out"
[ -n "$err" ] && echo "$err" >&2
exit $rc
"""
