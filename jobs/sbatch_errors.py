"""What an sbatch error means for the driver: wait, back off, or stop and change executor.yaml.

- `wait`: the user's submit limit is reached (QOSMaxSubmitJobPerUserLimit, ...): submit more as jobs end.
- `retry`: the controller is slow or unreachable (socket timeout, connection refused, sbatch killed by its timeout):
  back off and try again; an error nobody recognises is treated so too, so an unknown hiccup never ends a campaign.
- `fix`: the request itself is refused (invalid partition, account, QOS, GRES, feature, time limit, a node
  configuration no node has, an option sbatch does not know): sending it again can only fail again, so the stage
  stops at once with sbatch's own words and the executor.yaml keys that decide it.

The patterns are SLURM's messages (slurm_errno.c and sbatch's option parser, 20.x to 24.x); the local cluster's
words are checked by tests/slurm/test_cluster_check_slurm.py.
"""

from __future__ import annotations

import dataclasses
import re

WAIT, RETRY, FIX = "wait", "retry", "fix"

# "too many of your jobs are queued": wait for some to end, never a crash
SUBMIT_LIMIT_RE = re.compile(r"QOSMaxSubmitJob\w*|AssocMaxSubmitJob\w*|MaxSubmitJobs\w*|job submit limit", re.I)

_SIZE = ("gpus_per_node", "gres", "cpus_per_task", "mem_gb", "constraint")
# (what sbatch says, the executor.yaml keys that decide it); the first match wins
_FIX: tuple[tuple[re.Pattern[str], tuple[str, ...]], ...] = tuple((re.compile(p, re.I), keys) for p, keys in (
    (r"invalid partition|Required partition not available|partition .*(not available|does not exist)",
     ("partition",)),
    (r"User's group not permitted to use this partition", ("partition",)),
    (r"Invalid account|account/partition combination", ("account", "partition")),
    (r"Invalid qos|QOS not permitted|qos .*not (allowed|permitted)", ("qos", "partition")),
    (r"Invalid generic resource|Invalid GRES|Invalid Trackable RESource|Invalid TRES", ("gres", "gpus_per_node")),
    (r"Invalid feature specification", ("constraint",)),
    (r"time limit is invalid|Requested time limit|exceeds .*time limit", ("timeout_min",)),
    (r"Memory required by task is not available|Invalid memory|memory specification", ("mem_gb",)),
    (r"More processors requested than permitted", ("cpus_per_task",)),
    (r"Requested node configuration is not available|Requested partition configuration not available",
     ("partition", *_SIZE, "extra")),
    (r"Invalid job array specification|array size", ("max_array_size", "array_parallelism")),
    (r"Invalid nice value", ("extra", "chain_priority")),
    (r"unrecognized option|invalid option|unknown option|Invalid wckey", ("extra",)),
    (r"Access/permission denied|not permitted to use", ("account", "partition")),
))
_RETRY = re.compile(r"timed out|Unable to contact|connect(ion)? (failure|refused)|temporarily unavailable|"
                    r"Transport endpoint|Zero Bytes were transmitted|not responding|exit status 124|"
                    r"Communication connection failure|Slurm backup controller in standby|try again", re.I)


@dataclasses.dataclass(frozen=True)
class Verdict:
    action: str  # WAIT, RETRY or FIX
    words: str  # sbatch's own lines (its error lines, else the last line)
    keys: tuple[str, ...] = ()  # FIX: the executor.yaml keys that decide it, most likely first


def words(text: str) -> str:
    """sbatch's error lines (`sbatch: error: ...`, `allocation failure: ...`), joined; else the last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if re.search(r"error:|failure:|failed:|unrecognized option", line, re.I)]
    return " / ".join(dict.fromkeys(errors[-3:])) if errors else (lines[-1] if lines else "(no message)")


def classify(text: str) -> Verdict:
    """What the driver does about sbatch's output `text` (stderr, or an exception's text around it)."""
    said = words(text)
    if SUBMIT_LIMIT_RE.search(text):
        return Verdict(WAIT, said)
    if _RETRY.search(text):  # a refusal counts only from a controller that answered
        return Verdict(RETRY, said)
    for pattern, keys in _FIX:
        if pattern.search(text):
            return Verdict(FIX, said, keys)
    return Verdict(RETRY, said)


def fix_message(verdict: Verdict, source: str, keys: tuple[str, ...] | None = None) -> str:
    """`sbatch refused ...: <its words>; change <keys> in <source>`."""
    named = ", ".join(f"`{k}`" for k in (keys or verdict.keys))
    return (f"sbatch refused the request: {verdict.words}; change {named} in {source} (`awd-bench check` compares "
            "it with what the cluster has)")
