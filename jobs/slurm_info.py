"""What the SLURM cluster says about itself: partitions, nodes, the user's associations, QOS and limits.

Each reader runs one client command (`scontrol`, `sinfo`, `sacctmgr`) under a timeout and parses its rows; a command
that is missing, times out or fails raises `Unanswered` with the reason, and the caller says what that leaves
unchecked. Nothing here submits anything. `SLURM_CONF` in the environment selects the cluster, as for every client.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import re
import subprocess
import typing as tp

SCHEDULER_TIMEOUT_S = 60  # sbatch / sacct / squeue / scancel: a controller that does not answer is retried later
QUERY_TIMEOUT_S = 15  # one question asked before submitting: a few of them must fit in the minute a refusal may take


class Unanswered(RuntimeError):
    """A scheduler command gave no usable answer (not installed, timed out, failed)."""


def user() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


def ask(cmd: tp.Sequence[str], timeout: float = QUERY_TIMEOUT_S) -> str:
    """stdout of `cmd`, or Unanswered saying why not (its last stderr line)."""
    shown = " ".join(cmd[:3])
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise Unanswered(f"`{cmd[0]}` is not on PATH") from None
    except subprocess.TimeoutExpired:
        raise Unanswered(f"`{shown}` did not answer within {timeout:g} s") from None
    except OSError as e:
        raise Unanswered(f"`{shown}`: {e.strerror}") from None
    if proc.returncode != 0:
        lines = [line.strip() for line in (proc.stderr or proc.stdout).splitlines() if line.strip()]
        raise Unanswered(f"`{shown}` failed: {lines[-1] if lines else f'exit status {proc.returncode}'}")
    return proc.stdout


def slurm_minutes(text: str) -> int | None:
    """'1-00:00:00', '12:00:00', '30:00', '45' -> minutes; 'infinite' / 'UNLIMITED' -> None."""
    text = text.strip()
    if not text or not text[0].isdigit():
        return None
    days, _, rest = text.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    if days:  # days-hours[:minutes[:seconds]]
        h, m, sec = (parts + [0, 0])[:3]
    else:  # minutes, minutes:seconds or hours:minutes:seconds
        h, m, sec = [0] * (3 - len(parts)) + parts if len(parts) == 3 else (0, parts[0], parts[1] if len(parts) > 1 else 0)
    return int(days or 0) * 1440 + h * 60 + m + (1 if sec else 0)


# -- generic resources ------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Gres:
    name: str
    type: str | None
    count: int

    def __str__(self) -> str:
        return ":".join([self.name, *([self.type] if self.type else []), str(self.count)])


def _split_outside_parens(text: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return [p for p in [*out, cur] if p.strip()]


def parse_gres(text: str, request: bool = False) -> list[Gres]:
    """'gpu:a100:4(S:0-1),mps:100' -> [gpu:a100:4, mps:100]. In a request (`--gres`) a count may be left out (1);
    on a node a bare name has no count to offer ("(null)" and names without one are skipped)."""
    out = []
    for item in _split_outside_parens(text.strip()):
        parts = item.split("(", 1)[0].strip().split(":")
        if not parts[0] or parts[0] == "(null)":
            continue
        count = int(parts[-1]) if len(parts) > 1 and parts[-1].isdigit() else None
        kind = parts[1] if len(parts) > 2 or (len(parts) == 2 and count is None) else None
        if count is None and not request:
            continue
        out.append(Gres(parts[0], kind, 1 if count is None else count))
    return out


# -- partitions and nodes -----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Partition:
    name: str
    state: str  # UP, DOWN, DRAIN, INACTIVE
    default: bool
    max_time_min: int | None  # None: unlimited
    allow_accounts: frozenset[str] | None  # None: ALL
    deny_accounts: frozenset[str]
    allow_qos: frozenset[str] | None
    deny_qos: frozenset[str]


def _names(value: str | None) -> frozenset[str]:
    return frozenset(v for v in (value or "").split(",") if v and v != "(null)")


def partitions() -> dict[str, Partition]:
    """Every partition (hidden ones too), from `scontrol show partition -o`."""
    out = {}
    for line in ask(["scontrol", "show", "partition", "-o"]).splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if "PartitionName" not in fields:
            continue
        allow_acc, allow_qos = fields.get("AllowAccounts", "ALL"), fields.get("AllowQos", "ALL")
        out[fields["PartitionName"]] = Partition(
            name=fields["PartitionName"], state=fields.get("State", "UP").upper(),
            default=fields.get("Default", "NO") == "YES", max_time_min=slurm_minutes(fields.get("MaxTime", "")),
            allow_accounts=None if allow_acc == "ALL" else _names(allow_acc), deny_accounts=_names(
                fields.get("DenyAccounts")), allow_qos=None if allow_qos == "ALL" else _names(allow_qos),
            deny_qos=_names(fields.get("DenyQos")))
    return out


@dataclasses.dataclass(frozen=True)
class Node:
    name: str
    partitions: frozenset[str]
    cpus: int
    mem_mb: int
    gres: tuple[Gres, ...]
    features: frozenset[str]
    state: str  # sinfo's words: idle, mixed, allocated, down*, drained, ...

    def gpus(self, kind: str | None = None) -> int:
        return sum(g.count for g in self.gres if g.name == "gpu" and (kind is None or g.type == kind))

    def usable(self) -> bool:
        return not re.match(r"(down|drain|fail|inval|maint|future|unk)", self.state)


def nodes() -> list[Node]:
    """Every node with the partitions it is in, from `sinfo -N --all` (one line per node and partition)."""
    rows: dict[str, dict[str, tp.Any]] = {}
    for line in ask(["sinfo", "-h", "-N", "--all", "-o", "%N|%R|%c|%m|%G|%f|%T"]).splitlines():
        parts = line.strip().split("|")
        if len(parts) != 7:
            continue
        name, part, cpus, mem, gres, features, state = parts
        row = rows.setdefault(name, {"partitions": set(), "cpus": cpus, "mem": mem, "gres": gres,
                                     "features": features, "state": state})
        row["partitions"].add(part)
    return [Node(name, frozenset(r["partitions"]), _int(r["cpus"]), _int(r["mem"]), tuple(parse_gres(r["gres"])),
                 _names(r["features"]), r["state"].lower()) for name, r in rows.items()]


def _int(text: str) -> int:
    digits = re.match(r"\d+", text.strip())
    return int(digits.group()) if digits else 0


def config() -> dict[str, str]:
    """`scontrol show config` as {key: value}."""
    out = {}
    for line in ask(["scontrol", "show", "config"]).splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


# -- accounting -------------------------------------------------------------------------------------------------------
def sacctmgr_rows(*args: str, timeout: float = QUERY_TIMEOUT_S) -> list[list[str]]:
    out = ask(["sacctmgr", "-n", "-P", "show", *args], timeout=timeout)
    return [line.split("|") for line in out.splitlines() if line.strip()]


@dataclasses.dataclass(frozen=True)
class Association:
    account: str
    partition: str  # "": every partition
    qos: frozenset[str]
    default_qos: str
    max_submit: int | None


def associations(cluster: str | None = None) -> list[Association]:
    """The user's associations (on `cluster` when given: one accounting database may serve several)."""
    where = ["where", f"user={user()}", *([f"cluster={cluster}"] if cluster else [])]
    rows = sacctmgr_rows("assoc", *where, "format=Account,Partition,QOS,DefaultQOS,MaxSubmit")
    return [Association(r[0], r[1], _names(r[2]), r[3], int(r[4]) if r[4].isdigit() else None)
            for r in rows if len(r) == 5]


@dataclasses.dataclass(frozen=True)
class Qos:
    name: str
    max_wall_min: int | None
    max_submit_per_user: int | None


def qos_table() -> dict[str, Qos]:
    return {r[0]: Qos(r[0], slurm_minutes(r[1]), int(r[2]) if r[2].isdigit() else None)
            for r in sacctmgr_rows("qos", "format=Name,MaxWall,MaxSubmitPU") if len(r) == 3}


def accounts() -> set[str]:
    return {r[0] for r in sacctmgr_rows("account", "format=Account") if r and r[0]}


def default_account() -> str | None:
    rows = sacctmgr_rows("user", user(), "format=DefaultAccount")
    return rows[0][0] if rows and rows[0] and rows[0][0] else None


# -- what the driver asks before submitting ---------------------------------------------------------------------------
_partition_limits: dict[str | None, int | None] = {}


def partition_time_limit_min(partition: str | None) -> int | None:
    """The partition's MaxTime in minutes (sinfo; the default partition when None); None when unlimited/unknown."""
    if partition not in _partition_limits:
        cmd = ["sinfo", "-h", "-o", "%P|%l"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=SCHEDULER_TIMEOUT_S)
        except (OSError, subprocess.SubprocessError):
            return None  # not cached: asked again at the next submission
        if proc.returncode != 0:  # the controller did not answer: no answer is not "unlimited"
            return None
        out = proc.stdout
        rows = [line.split("|", 1) for line in out.splitlines() if "|" in line]
        row = next((r for r in rows if (r[0].rstrip("*") == partition if partition else r[0].endswith("*"))), None)
        _partition_limits[partition] = slurm_minutes(row[1]) if row else None
    return _partition_limits[partition]


_submit_limits: dict[str | None, int | None] = {}


def submit_limit(qos: str | None) -> int | None:
    """How many jobs (array tasks) of this user the scheduler accepts at once: the smaller of the association's
    MaxSubmitJobs and the QOS's MaxSubmitJobsPerUser (`qos`, else the association's default QOS), from sacctmgr.
    None when neither is set or sacctmgr cannot tell (no accounting, several associations that disagree): the
    driver then learns the limit from sbatch's refusals instead of being refused first."""
    if qos not in _submit_limits:
        try:
            assoc = [r for r in sacctmgr_rows("assoc", "where", f"user={user()}", "format=MaxSubmit,DefaultQOS,QOS",
                                              timeout=SCHEDULER_TIMEOUT_S) if len(r) == 3]
            # with no DefaultQOS an association's jobs run under its only QOS
            defaults = {r[1] or (r[2] if "," not in r[2] else "") for r in assoc}
            name = qos if qos is not None else (defaults.pop() if len(defaults) == 1 else "")
            assoc_limits = {r[0] for r in assoc}
            found = [int(v) for v in assoc_limits if v.isdigit()] if len(assoc_limits) == 1 else []
            if name:
                found += [int(r[0]) for r in sacctmgr_rows("qos", name, "format=MaxSubmitPU",
                                                           timeout=SCHEDULER_TIMEOUT_S) if r[0].isdigit()]
        except (Unanswered, ValueError):
            return None  # not cached: asked again by the next driver
        _submit_limits[qos] = min(found) if found else None
    return _submit_limits[qos]


def controller_up(timeout: float = QUERY_TIMEOUT_S) -> bool:
    """Whether slurmctld answers (`scontrol ping` says UP). True when scontrol is missing: nothing can tell it is
    down, so a failing sbatch is backed off and given up on as any other failure."""
    try:
        proc = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        return True
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0 and " is UP" in proc.stdout  # with a backup controller, either one UP will do
