"""Does the cluster have what executor.yaml asks for? Asked before anything is submitted.

Where the scheduler's commands answer: the partition exists and is up; the account and QOS exist and the user may use
them there (associations, AllowAccounts/AllowQos); a node of the partition has the GPUs, GRES, features, memory and
CPUs of one job at once; `--time` is within MaxTime and the QOS's MaxWall; `max_array_size` within MaxArraySize; the
queue limits are read. Then `sbatch --test-only` is shown the very script a job would get (the controller's verdict;
no job is created), a warning only if the controller or every fitting node was not up a moment ago (a restart). Each
problem names the executor.yaml key to change (`profiles.<kind>.<key>` when a kind's profile set it); where a command
does not answer, a warning says what was not checked. `preflight` is the driver's start-up check (once per settings
per process); `check_command` is `awd-bench check`'s.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import tempfile
import typing as tp
from pathlib import Path

from submitit.slurm import slurm as submitit_slurm

from jobs import backends
from jobs import slurm_info as info
from jobs.backends.slurm import _outside_allocation, slurm_parameters
from jobs.executor_config import DEFAULT_FILE, DEFAULT_SLURM_TIMEOUT_MIN, ExecutorConfig, ExecutorConfigError
from jobs.rules import did_you_mean
from jobs.sbatch_errors import FIX, classify


@dataclasses.dataclass
class ClusterReport:
    problems: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (executor.yaml key, what is wrong)
    warnings: list[str] = dataclasses.field(default_factory=list)
    facts: list[str] = dataclasses.field(default_factory=list)  # what was read: partition, limits
    waiting: bool = False  # no node that fits a job is up now (a controller's restart, a maintenance)

    def add(self, key: str, message: str) -> None:
        if (key, message) not in self.problems:
            self.problems.append((key, message))

    def error(self, source: str, trailer: str = "") -> ExecutorConfigError:
        lines = [f"{source}: {key}: {message}" for key, message in self.problems] + ([trailer] if trailer else [])
        return ExecutorConfigError("\n".join(lines), self.problems)


class _Answers:
    """The cluster's answers, each question asked once; one that got none is remembered with why."""

    def __init__(self) -> None:
        self.got: dict[str, tp.Any] = {}
        self.unanswered: dict[str, str] = {}

    def get(self, name: str, ask: tp.Callable[[], tp.Any]) -> tp.Any:
        if name not in self.got and name not in self.unanswered:
            try:
                self.got[name] = ask()
            except info.Unanswered as e:
                self.unanswered[name] = str(e)
        return self.got.get(name)


UNCHECKED = {"partitions": "partition, timeout_min (MaxTime)", "nodes": "gpus_per_node, gres, constraint, mem_gb, "
             "cpus_per_task", "config": "account, qos, max_array_size", "associations": "account, qos, queue limits",
             "qos": "qos, timeout_min (QOS MaxWall), queue limits", "accounts": "account", "default_account": "account"}


def check_cluster(cfg: ExecutorConfig) -> ClusterReport:
    """Every problem the cluster shows with `cfg` (its kinds' profiles included); no job is created."""
    report = ClusterReport()
    if not backends.of(cfg).is_cluster:
        report.facts.append(f"kind {cfg.kind}: units run on this machine; nothing to check against a cluster")
        return report
    answers = _Answers()
    # the top level, then each kind with its profile applied; a key a profile sets is named as the profile's
    requests = [(cfg, _namer("", set()))] + [(cfg.for_kind(kind), _namer(f"profiles.{kind}.", set(profile)))
                                             for kind, profile in cfg.profiles.items()]
    for c, key in requests:
        _check(c, answers, report, key)
    if not report.problems:
        # a controller that just did not answer, or no fitting node up, may be a restart: test-only judges no setting
        settled = not set(answers.unanswered) & {"partitions", "nodes", "config"} and not report.waiting
        seen: set[str] = set()
        for c, key in requests:
            script = _script(c)
            if script not in seen:
                seen.add(script)
                _test_only(script, report, key, settled)
    for name, why in answers.unanswered.items():
        report.warnings.append(f"not checked against the cluster: {UNCHECKED.get(name, name)} ({why})")
    return report


def _namer(where: str, own: set[str]) -> tp.Callable[[str], str]:
    return lambda name: f"{where}{name}" if name in own else name


def _check(c: ExecutorConfig, answers: _Answers, report: ClusterReport, key: tp.Callable[[str], str]) -> None:
    parts: dict[str, info.Partition] | None = answers.get("partitions", info.partitions)
    config: dict[str, str] | None = answers.get("config", info.config)
    if config is not None:
        most = int(config["MaxArraySize"]) if config.get("MaxArraySize", "").isdigit() else None
        if most is not None and c.max_array_size > most:
            report.add(key("max_array_size"), f"must be at most the cluster's MaxArraySize, {most}; got "
                                              f"{c.max_array_size}")
    if parts is None:
        return
    names = c.partition.split(",") if c.partition else [p.name for p in parts.values() if p.default]
    if not names:
        report.add(key("partition"), f"unset, and the cluster has no default partition; partitions: "
                                     f"{', '.join(sorted(parts))}")
    found = []
    for name in names:
        part = parts.get(name)
        if part is None:
            report.add(key("partition"), f"no partition {name!r} on this cluster{did_you_mean(name, parts)}; "
                                         f"partitions: {', '.join(sorted(parts))}")
        elif part.state != "UP":
            up = sorted(p.name for p in parts.values() if p.state == "UP")
            report.add(key("partition"), f"partition {name!r} is {part.state}: jobs there would not start; up: "
                                         f"{', '.join(up) or 'none'}")
        else:
            found.append(part)
    for part in found:
        _check_time(c, part, report, key)
        _check_nodes(c, part, answers, report, key)
        if config is not None:
            _check_accounting(c, part, config, answers, report, key)
    if not found and config is not None:  # the account and QOS can be named even without a usable partition
        _check_accounting(c, None, config, answers, report, key)


def _check_time(c: ExecutorConfig, part: info.Partition, report: ClusterReport, key: tp.Callable[[str], str]) -> None:
    asked = c.timeout_min or DEFAULT_SLURM_TIMEOUT_MIN
    if part.max_time_min is not None and asked > part.max_time_min:
        how = "" if c.timeout_min else " (the default when unset)"
        report.add(key("timeout_min"), f"{asked} min{how} is over partition {part.name!r}'s MaxTime of "
                                       f"{part.max_time_min} min; set timeout_min to at most {part.max_time_min}")
    report.facts.append(f"partition {part.name}: up, MaxTime {_minutes(part.max_time_min)}")


def _minutes(value: int | None) -> str:
    return "unlimited" if value is None else f"{value} min"


def _check_nodes(c: ExecutorConfig, part: info.Partition, answers: _Answers, report: ClusterReport,
                 key: tp.Callable[[str], str]) -> None:
    nodes = [n for n in answers.get("nodes", info.nodes) or () if part.name in n.partitions]
    if not nodes and "nodes" not in answers.unanswered:
        report.add(key("partition"), f"partition {part.name!r} has no nodes")
    if not nodes:
        return
    where, before, wanted = f"partition {part.name!r}", len(report.problems), info.parse_gres(c.gres or "", request=True)
    gpu_type = next((g.type for g in wanted if g.name == "gpu"), None)
    gpus, cpus, mem_mb = c.gpus_per_job(), c.cpus_per_task or 1, int((c.mem_gb or 0) * 1024)
    gpu_key = key("gres") if any(g.name == "gpu" for g in wanted) else key("gpus_per_node")
    features = frozenset().union(*(n.features for n in nodes))
    offered = sorted({str(g) for n in nodes for g in n.gres}) or ["none"]
    tests: dict[str, tp.Callable[[info.Node], bool]] = {}
    if gpus:
        tests[gpu_key] = lambda n: n.gpus(gpu_type) >= gpus
        if not any(tests[gpu_key](n) for n in nodes):
            most = max(n.gpus(gpu_type) for n in nodes)
            report.add(gpu_key, f"{gpus} GPU(s) per job, but no node of {where} has more than {most}; its nodes' "
                                f"GRES: {', '.join(offered)}" if most or not gpu_type else
                       f"no node of {where} has GPUs of type {gpu_type!r}; its nodes' GRES: {', '.join(offered)}")
    for g in (g for g in wanted if g.name != "gpu"):
        tests[key("gres") + f" ({g})"] = lambda n, g=g: sum(  # type: ignore[misc]
            x.count for x in n.gres if x.name == g.name and g.type in (None, x.type)) >= g.count
        if not any(tests[key("gres") + f" ({g})"](n) for n in nodes):
            report.add(key("gres"), f"no node of {where} has {g}; its nodes' GRES: {', '.join(offered)}")
    if c.constraint:
        unknown = [f for f in _feature_names(c.constraint) if f not in features]
        for f in unknown:
            report.add(key("constraint"), f"no node of {where} has feature {f!r}{did_you_mean(f, features)}; "
                                          f"features there: {', '.join(sorted(features)) or 'none'}")
        if not unknown:
            tests[key("constraint")] = lambda n: _satisfies(c.constraint or "", n.features) is not False
            if not any(tests[key("constraint")](n) for n in nodes):
                report.add(key("constraint"), f"no single node of {where} has {c.constraint!r}")
    tests[key("cpus_per_task")] = lambda n: n.cpus >= cpus
    if not any(n.cpus >= cpus for n in nodes):
        report.add(key("cpus_per_task"), f"{cpus} CPUs per job, but the nodes of {where} have at most "
                                         f"{max(n.cpus for n in nodes)}")
    for name, need in ((key("mem_gb"), mem_mb), (key("max_mem_gb"), int((c.max_mem_gb or 0) * 1024))):
        most = max(n.mem_mb for n in nodes)
        if need > most:
            report.add(name, f"{need / 1024:g} GB per job, but the largest node of {where} has {most / 1024:.1f} GB "
                             f"(RealMemory {most} MB)")
    tests[key("mem_gb")] = lambda n: n.mem_mb >= mem_mb
    fit = [n for n in nodes if all(t(n) for t in tests.values())]
    if not fit and len(report.problems) == before:
        report.add(", ".join(k.split(" (")[0] for k in dict.fromkeys(tests)),
                   f"no single node of {where} has all of it at once ({gpus} GPU(s), {cpus} CPUs, {mem_mb} MB"
                   f"{', ' + c.constraint if c.constraint else ''}); its nodes: " + "; ".join(
                       f"{n.name}: {n.cpus} CPUs, {n.mem_mb} MB, {','.join(map(str, n.gres)) or 'no GRES'}"
                       for n in nodes[:5]))
    elif fit and not any(n.usable() for n in fit):
        report.warnings.append(f"every node of {where} that fits a job is {fit[0].state} now: jobs will wait")
        report.waiting = True
    report.facts.append(f"{where}: {len(nodes)} node(s), GRES {', '.join(offered)}; {len(fit)} fit one job")


def _check_accounting(c: ExecutorConfig, part: info.Partition | None, config: dict[str, str], answers: _Answers,
                      report: ClusterReport, key: tp.Callable[[str], str]) -> None:
    enforce = config.get("AccountingStorageEnforce", "").lower()
    assoc_on = any(w in enforce for w in ("associations", "limits", "qos", "safe"))
    cluster = config.get("ClusterName") or None
    mine: list[info.Association] | None = answers.get("associations", lambda: info.associations(cluster))
    if mine is None or "accounting_storage/none" in config.get("AccountingStorageType", ""):
        return
    account = c.account or answers.get("default_account", info.default_account)
    yours = ", ".join(sorted({a.account for a in mine})) or "none"
    if assoc_on and c.account and not any(a.account == c.account for a in mine):
        known = answers.get("accounts", info.accounts) or set()
        report.add(key("account"), f"no account {c.account!r} in the accounting database"
                                   f"{did_you_mean(c.account, known)}; yours: {yours}" if c.account not in known
                   else f"you (user {info.user()}) have no association with account {c.account!r}; yours: {yours}")
    elif assoc_on and not mine:
        report.add(key("account"), f"you (user {info.user()}) have no association in the accounting database: the "
                                   "scheduler refuses your jobs; ask the cluster's administrators for one")
    rows = [a for a in mine if a.account == account and (part is None or a.partition in ("", part.name))]
    if part is not None and assoc_on and account and not rows and any(a.account == account for a in mine):
        named = sorted({a.partition for a in mine if a.account == account})
        report.add(key("account"), f"account {account!r} may be used on partition(s) {', '.join(named)} only, not "
                                   f"{part.name!r}")
    if part is not None and account and (account in part.deny_accounts or (
            part.allow_accounts is not None and account not in part.allow_accounts)):
        report.add(key("account"), f"partition {part.name!r} does not allow account {account!r} (AllowAccounts "
                                   f"{', '.join(sorted(part.allow_accounts or [])) or 'ALL'})")
    table: dict[str, info.Qos] | None = answers.get("qos", info.qos_table)
    if table is None:
        return
    allowed = frozenset().union(*(a.qos for a in rows))
    defaults = {a.default_qos or (next(iter(a.qos)) if len(a.qos) == 1 else "") for a in rows}
    qos = c.qos or (defaults.pop() if len(defaults) == 1 else None)
    if c.qos and c.qos not in table:
        report.add(key("qos"), f"no QOS {c.qos!r} on this cluster{did_you_mean(c.qos, table)}; yours: "
                               f"{', '.join(sorted(allowed or frozenset().union(*(a.qos for a in mine)))) or 'none'}")
        return
    if c.qos and "qos" in enforce and rows and c.qos not in allowed:
        on = f" on partition {part.name!r}" if part else ""
        report.add(key("qos"), f"QOS {c.qos!r} is not allowed for account {account!r}{on}; allowed: "
                               f"{', '.join(sorted(allowed)) or 'none'}")
    if part is None:
        return
    if qos and ((part.allow_qos is not None and qos not in part.allow_qos) or qos in part.deny_qos):
        report.add(key("qos"), f"partition {part.name!r} does not allow QOS {qos!r} (AllowQos "
                               f"{', '.join(sorted(part.allow_qos or [])) or 'ALL'})")
    q = table.get(qos or "")
    asked = c.timeout_min or DEFAULT_SLURM_TIMEOUT_MIN
    if q is not None and q.max_wall_min is not None and asked > q.max_wall_min:
        report.add(key("timeout_min"), f"{asked} min is over QOS {q.name!r}'s MaxWall of {q.max_wall_min} min; set "
                                       f"timeout_min to at most {q.max_wall_min}")
    limits = [(f"association {a.account}", a.max_submit) for a in rows if a.max_submit is not None]
    limits += [(f"QOS {q.name} per user", q.max_submit_per_user)] if q and q.max_submit_per_user else []
    if limits:
        where, most = min(limits, key=lambda lim: lim[1] or 0)
        report.facts.append(f"queue limit: {most} jobs of yours at once ({where})")
        if c.max_queued is not None and most is not None and c.max_queued > most:
            report.warnings.append(f"{key('max_queued')}: {c.max_queued} is over the scheduler's limit of {most} "
                                   f"({where}): the driver queues at most {most}")
    else:
        report.facts.append("queue limit: none set for you (association or QOS)")
    report.facts.append(f"account {account or '(default)'}, QOS {qos or '(default)'}")


# -- constraint expressions ---------------------------------------------------------------------------------------------
_TOKEN = re.compile(r"[\w.:-]+|[&|,()\[\]*!]")


def _feature_names(expr: str) -> list[str]:
    tokens = _TOKEN.findall(expr)
    return list(dict.fromkeys(t for i, t in enumerate(tokens) if re.match(r"[\w.:-]", t)
                              and not (i and tokens[i - 1] == "*")))


def _satisfies(expr: str, features: frozenset[str]) -> bool | None:
    """Whether a node with `features` meets `expr` (& and , for all, | for any, [ ] and ( ) to group, name*count);
    None when the expression is beyond this parser (sbatch --test-only decides then)."""
    tokens, pos = _TOKEN.findall(expr), 0

    def peek() -> str:
        return tokens[pos] if pos < len(tokens) else ""

    def take() -> str:
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def any_of() -> bool:
        value = all_of()
        while peek() == "|":
            take()
            value = all_of() or value
        return value

    def all_of() -> bool:
        value = atom()
        while peek() in ("&", ","):
            take()
            value = atom() and value
        return value

    def atom() -> bool:
        if peek() in ("(", "["):
            take()
            value = any_of()
            if take() not in (")", "]"):
                raise ValueError(expr)
        elif peek() == "!":
            take()
            value = not atom()
        elif peek() and re.match(r"[\w.:-]", peek()):
            value = take() in features
        else:
            raise ValueError(expr)
        if peek() == "*":  # name*count: how many nodes need it, not which
            take()
            take()
        return value

    try:
        value = any_of()
        return value if pos == len(tokens) else None
    except (ValueError, IndexError):
        return None


# -- the controller's own verdict ---------------------------------------------------------------------------------------
def _script(c: ExecutorConfig) -> str:
    return submitit_slurm._make_sbatch_string(command="true", folder="/tmp/awd-cluster-check",
                                              **slurm_parameters(c, "awd-check"))


def _test_only(script: str, report: ClusterReport, key: tp.Callable[[str], str], settled: bool = True) -> None:
    with tempfile.TemporaryDirectory(prefix="awd-check-") as tmp:
        path = Path(tmp) / "check.sh"
        path.write_text(script)
        try:
            with _outside_allocation():
                done = subprocess.run(["sbatch", "--test-only", str(path)], capture_output=True, text=True,
                                      timeout=info.QUERY_TIMEOUT_S)
        except (OSError, subprocess.SubprocessError) as e:
            report.warnings.append(f"not confirmed by `sbatch --test-only`: {e}")
            return
    if done.returncode == 0:
        report.facts.append("sbatch --test-only: accepted")
        return
    verdict = classify(done.stderr + done.stdout)
    if verdict.action == FIX and settled:
        report.add(", ".join(key(k) for k in verdict.keys), f"`sbatch --test-only` refuses a job with these "
                                                            f"settings: {verdict.words}")
        return
    why = " (the controller or its nodes were not up a moment ago: restarting? jobs wait in the queue then)" * (not settled)
    report.warnings.append(f"not confirmed by `sbatch --test-only`: {verdict.words}{why}")


# -- the two callers ----------------------------------------------------------------------------------------------------
_checked: dict[str, ClusterReport] = {}


def preflight(cfg: ExecutorConfig, say: tp.Callable[[str], object] = print) -> None:
    """A stage's start-up check, before it submits anything: raises ExecutorConfigError naming every key the cluster
    refuses; says what could not be checked. Once per settings per process (a stage's drivers share the answer)."""
    if not backends.of(cfg).is_cluster:
        return
    ident = cfg.model_dump_json()
    if ident not in _checked:
        _checked[ident] = report = check_cluster(cfg)
        for line in report.warnings:
            say(f"warning: {line}")
    report = _checked[ident]
    if report.problems:
        raise report.error(cfg.source, "(checked against the cluster before submitting anything: nothing was "
                                       "submitted; `awd-bench check` shows the same)")


def check_command(load: tp.Callable[[], ExecutorConfig], say: tp.Callable[[str], None] = print,
                  err: tp.Callable[[str], None] = print) -> int:
    """`awd-bench check`'s part: the executor settings `load()` finds, validated and checked against the cluster.
    0 when usable (warnings included), 2 when the file or the cluster says no."""
    try:
        cfg = load()
        report = check_cluster(cfg)
        if report.problems:
            raise report.error(cfg.source)
    except ExecutorConfigError as e:
        err(str(e))
        return 2
    if cfg.source == "ExecutorConfig":  # no file: the defaults (or $AWD_EXECUTOR's kind)
        say(f"executor: no {DEFAULT_FILE} here, kind {cfg.kind}: units run on this machine (docs/cluster.md: SLURM)")
    else:
        say(f"{cfg.source}: ok (kind {cfg.kind})" + (", checked against the cluster:" * backends.of(cfg).is_cluster))
    for line in dict.fromkeys(report.facts) if backends.of(cfg).is_cluster else ():
        say(f"  {line}")
    for line in report.warnings:
        err(f"warning: {line}")
    return 0
