"""`executor.yaml`: where units run, one validated model. Never a DVC param, never part of a unit's key.

Every key's type carries its rule, and a file is checked whole: every problem is reported at once, one line each,
`<file>: <key>: <what is allowed>, got <what>`, with a suggestion for a misspelt key or kind. Whether the cluster
has what the file asks for (partition, account, GPUs, ...) is jobs/cluster_check.py's question.
"""

from __future__ import annotations

import os
import re
import typing as tp
from pathlib import Path

from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError, WrapValidator, create_model, model_validator
from pydantic._internal._model_construction import ModelMetaclass
from ruamel.yaml.error import YAMLError

from jobs import backends, bounded_yaml
from jobs.backends import KINDS
from jobs.checks import brief, is_int, is_real
from jobs.keys import KIND_RE
from jobs.rules import checked, did_you_mean, fail, got, list_rule, number, rule

ENV_KIND = "AWD_EXECUTOR"
ENV_FILE = "AWD_EXECUTOR_CONFIG"
DEFAULT_FILE = "executor.yaml"
DEFAULT_SLURM_TIMEOUT_MIN = 24 * 60  # submitit's own default is 5 minutes, too short for any training run
NO_LOCAL_TIMEOUT_MIN = 365 * 24 * 60
DEFAULT_SLURM_BUDGET_GPU_HOURS = 100.0  # the embedded default needs ~0; one paper suite needs more than this
# the embedded default needs under 1 CPU-hour; one paper training run on CPUs needs thousands
DEFAULT_LOCAL_BUDGET_CPU_HOURS = 24.0
NOT_IN_PROFILES = {"kind", "profiles", "poll_s", "max_queued", "local_gpus", "max_parallel", "budget_gpu_hours",
                   "budget_cpu_hours", "chain_priority"}  # driver-wide


class ExecutorConfigError(ValueError):
    """Bad executor settings; `problems` holds (key, what is wrong) when they came from validation."""

    def __init__(self, message: str, problems: tp.Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)


_NAME = re.compile(r"[\w.+@-]+")
_GRES = re.compile(r"[A-Za-z][\w.-]*(:[\w.-]+){0,2}")
_FEATURES = re.compile(r"[\w.\-&|\[\]*()!:,]+")
_OPTION = re.compile(r"[A-Za-z][\w-]*")
# sbatch options the named keys already set: in `extra` they would contradict them (or be silently overridden)
_EXTRA_OWNED = {"partition": "partition", "p": "partition", "account": "account", "A": "account", "qos": "qos",
                "q": "qos", "gres": "gres", "constraint": "constraint", "C": "constraint", "time": "timeout_min",
                "t": "timeout_min", "mem": "mem_gb", "cpus-per-task": "cpus_per_task", "c": "cpus_per_task",
                "gpus-per-node": "gpus_per_node", "array": "max_array_size"}


def _is_str(v: tp.Any) -> bool:
    return isinstance(v, str)


def _names(v: str, many: bool) -> bool:
    return all(_NAME.fullmatch(p) for p in (v.split(",") if many else [v]))


def _extra_problems(v: tp.Any) -> list[tuple[str, str]]:
    if not isinstance(v, dict):
        return [("", f"must be a mapping of sbatch option -> value, got {got(v, True)}")]
    out = []
    for opt, value in v.items():
        opt_name = str(opt).replace("_", "-")
        if not isinstance(opt, str) or not _OPTION.fullmatch(opt):
            out.append(("", f"maps sbatch options (letters, digits, - and _) to values, got option {brief(opt)}"))
        elif opt_name in _EXTRA_OWNED or opt in _EXTRA_OWNED:
            key = _EXTRA_OWNED.get(opt_name, _EXTRA_OWNED.get(opt))
            out.append((f".{opt}", f"--{opt_name} is what `{key}` sets: set `{key}` instead"))
        elif not isinstance(value, (str, int, float, bool)) or (isinstance(value, str) and "\n" in value):
            out.append((f".{opt}", f"must be a string, number or true/false on one line, got {brief(value)}"))
    return out


def _kind_problems(v: tp.Any) -> list[tuple[str, str]]:
    if isinstance(v, str) and v in KINDS:
        return []
    hint = did_you_mean(v, KINDS) if isinstance(v, str) else ""
    return [("", f"unknown executor kind {brief(v)}{hint}; allowed: {', '.join(KINDS)}")]


# booleans in YAML 1.1 (PyYAML, which read executor.yaml until it became YAML 1.2 like params.yaml), text in 1.2
_YAML11_BOOLS = {"yes": True, "y": True, "on": True, "no": False, "n": False, "off": False}


def _flag_problems(v: tp.Any) -> list[tuple[str, str]]:
    if isinstance(v, bool):
        return []
    if isinstance(v, str) and v.lower() in _YAML11_BOOLS:
        return [("", f"must be true or false, got {brief(v)} (str): this file is YAML 1.2, where {v} is text, not "
                     f"a boolean; write {str(_YAML11_BOOLS[v.lower()]).lower()}")]
    return [("", f"must be true or false, got {got(v, True)}")]


def _req(allowed: str, **rule: tp.Any) -> WrapValidator:
    return number(allowed, optional=False, **rule)


Kind = tp.Annotated[str, checked("one of " + ", ".join(KINDS), _kind_problems)]
PosInt = tp.Annotated[int | None, number("a positive integer", integer=True, minimum=1)]
Jobs = tp.Annotated[int | None, number("a positive integer (jobs)", integer=True, minimum=1)]
Count = tp.Annotated[int | None, number("an integer >= 0", integer=True, minimum=0)]
Times = tp.Annotated[int, _req("an integer >= 0", integer=True, minimum=0)]
ArraySize = tp.Annotated[int, _req("a positive integer", integer=True, minimum=1)]
Minutes = tp.Annotated[int | None, number("a positive integer (minutes)", integer=True, minimum=1)]
GB = tp.Annotated[float | None, number("a positive number", minimum=0, above=True)]
Seconds = tp.Annotated[float | None, number("a positive number (seconds)", minimum=0, above=True)]
GpuHours = tp.Annotated[float | None, number("a positive number (GPU-hours)", minimum=0, above=True)]
CpuHours = tp.Annotated[float | None, number("a positive number (CPU-hours)", minimum=0, above=True)]
Factor = tp.Annotated[float, _req("a number >= 1", minimum=1)]
OptFactor = tp.Annotated[float | None, number("a number >= 1", minimum=1)]
Tflops = tp.Annotated[float, _req("a positive number (TFLOP/s)", minimum=0, above=True)]
Flag = tp.Annotated[bool, checked("true or false", _flag_problems)]
Name = tp.Annotated[str | None, rule("a SLURM name (letters, digits, . _ - + @)", lambda v: _names(v, False),
                                      type_ok=_is_str)]
Partitions = tp.Annotated[str | None, rule("a partition name, or several separated by commas",
                                            lambda v: _names(v, True), type_ok=_is_str)]
GresSpec = tp.Annotated[str | None, rule("name[:type][:count], several separated by commas",
                                          lambda v: all(_GRES.fullmatch(p) for p in v.split(",")), type_ok=_is_str)]
Features = tp.Annotated[str | None, rule("a feature expression (features joined by & or |)",
                                          lambda v: bool(_FEATURES.fullmatch(v)), type_ok=_is_str)]
GpuList = tp.Annotated[list[int] | None, rule("a list of GPU indices >= 0", lambda v: all(
    is_int(g) and g >= 0 for g in v), type_ok=lambda v: isinstance(v, list))]
Lines = tp.Annotated[list[str], list_rule("a list of shell lines", _is_str)]
SbatchOptions = tp.Annotated[dict[str, tp.Any], checked("a mapping of sbatch option -> value", _extra_problems)]
Profiles = tp.Annotated[dict[str, dict[str, tp.Any]], checked("a mapping of unit kind -> settings for that kind",
                                                              lambda v: _profile_problems(v))]


class _Construct(ModelMetaclass):
    def __call__(cls, *args: tp.Any, **values: tp.Any) -> tp.Any:
        """`ExecutorConfig(...)` in code raises ExecutorConfigError, as a file does (model_validate is not a call)."""
        try:
            return super().__call__(*args, **values)
        except ValidationError as e:
            raise _error("ExecutorConfig", explain(e, values)) from None


class ExecutorConfig(BaseModel, metaclass=_Construct):
    """Where and how units run. Kinds: `debug` (in the driver process), `local` (detached processes on this
    machine), `slurm` (job arrays through sbatch)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    _source: str = PrivateAttr(default="ExecutorConfig")
    _kinds: dict[str, ExecutorConfig] = PrivateAttr(default_factory=dict)  # for_kind's, validated once each

    kind: Kind = "local"
    # local
    max_parallel: PosInt = None  # default: os.cpu_count()
    local_gpus: GpuList = None  # job i sees GPU local_gpus[i % len]; unset: the driver's CUDA_VISIBLE_DEVICES
    # slurm
    partition: Partitions = None  # unset: the cluster's default partition
    gpus_per_node: Count = None  # GPUs per job (sbatch --gpus-per-node)
    # sbatch --gres, e.g. gpu:a100:1 (one GPU of that type) or gpu:1,shard:2; a GPU count here replaces gpus_per_node
    gres: GresSpec = None
    check_gpus: Flag = True  # a job that asked for GPUs and sees none fails at once instead of running on its CPUs
    cpus_per_task: PosInt = None  # sbatch --cpus-per-task; the job's OMP_NUM_THREADS
    mem_gb: GB = None  # sbatch --mem, in GB (32.5 -> 33280MB)
    timeout_min: Minutes = None  # slurm default 24 h; local: no limit unless set
    account: Name = None  # sbatch --account; unset: your default account
    qos: Name = None  # sbatch --qos; unset: your association's default QOS
    constraint: Features = None  # sbatch --constraint: node features, e.g. a100 or a100|h100
    array_parallelism: PosInt = None
    max_array_size: ArraySize = 1000  # SLURM's MaxArraySize is 1001 by default: larger submissions are split
    extra: SbatchOptions = {}  # -> sbatch additional parameters
    setup: Lines = []  # shell lines run before each job
    max_num_timeout: Times = 3  # requeues after a time-out (preemptions do not count)
    max_queued: Jobs = None  # jobs (array tasks) this driver keeps queued or running; more as they end
    # slurm: `--nice` by how much shorter a unit's chain is than the longest one (jobs.driver.chain_nice), so that
    # among our own pending jobs the scheduler starts the heads of the longest chains first
    chain_priority: Flag = True
    # all
    units_per_job: PosInt = None  # pack units into one job; local default: <= max_parallel jobs
    poll_s: Seconds = None  # driver poll interval; default local 1 s, slurm 15 s
    budget_gpu_hours: GpuHours = None  # slurm: refuse larger new work unless confirmed (see gpu_budget)
    # local/debug on CPUs: refuse larger new work unless confirmed (default 24): a campaign meant for a cluster never
    # starts on a login node by accident (see cpu_budget)
    budget_cpu_hours: CpuHours = None
    max_retries: Times = 2  # resubmissions of a unit whose job failed (crash, OOM, node failure, lost), per run
    oom_mem_factor: Factor = 1.5  # an out-of-memory retry asks for mem_gb x this (when mem_gb is set) ...
    max_mem_gb: GB = None  # ... up to this many GB
    # per-unit --time: the unit's estimated seconds x this, rounded up to a step of TIME_STEPS_MIN, at most
    # timeout_min and the partition's MaxTime (unset: every job asks for timeout_min)
    time_safety_factor: OptFactor = None
    tflops: Tflops = 100.0  # sustained TFLOP/s per GPU, for the estimate (as `python -m pipeline.dry_run --tflops`)
    # per kind of unit (train, autoattack, prune, ...): settings that replace the ones above for that kind
    profiles: Profiles = {}

    @model_validator(mode="after")
    def _between_keys(self) -> ExecutorConfig:
        problems = _cross_all({name: getattr(self, name) for name in type(self).model_fields})
        if problems:
            raise fail(problems)
        return self

    @classmethod
    def from_mapping(cls, values: tp.Mapping[str, tp.Any], source: str) -> ExecutorConfig:
        """`values` validated; every problem in one ExecutorConfigError, each line naming `source` and the key."""
        try:
            cfg = cls.model_validate(dict(values))
        except ValidationError as e:
            raise _error(source, explain(e, values)) from None
        cfg._source = source
        return cfg

    def __eq__(self, other: object) -> bool:  # where settings were read from is not part of what they say
        return type(other) is type(self) and self.model_dump() == tp.cast(BaseModel, other).model_dump()

    __hash__ = None  # type: ignore[assignment]  # mutable mappings inside

    @property
    def source(self) -> str:
        """The file these settings came from (error messages name it)."""
        return self._source

    def replace(self, **changes: tp.Any) -> ExecutorConfig:
        """These settings with `changes`, validated again."""
        values = {name: getattr(self, name) for name in type(self).model_fields}
        return type(self).from_mapping({**values, **changes}, self._source)

    def for_kind(self, kind: str) -> ExecutorConfig:
        """These settings with the profile of `kind` (if any) applied."""
        profile = self.profiles.get(kind)
        if not profile:
            return self
        if kind not in self._kinds:
            self._kinds[kind] = self.replace(**profile)
        return self._kinds[kind]

    @property
    def parallel(self) -> int:
        return self.max_parallel or os.cpu_count() or 1

    def gpus_per_job(self) -> int:
        """GPUs one job asks for: gpus_per_node, else the count of a `gpu` entry in gres."""
        if self.gpus_per_node is not None:
            return self.gpus_per_node
        return sum(int(p[-1]) if len(p) > 1 and p[-1].isdigit() else 1
                   for p in (g.split(":") for g in (self.gres or "").split(",")) if p[0] == "gpu")

    def gpu_budget(self) -> float | None:
        """GPU-hours of new work a stage may submit without confirmation; None (no guard) on local and debug."""
        if not backends.of(self).is_cluster:
            return None
        return DEFAULT_SLURM_BUDGET_GPU_HOURS if self.budget_gpu_hours is None else float(self.budget_gpu_hours)

    def cpu_budget(self) -> float:
        """CPU-hours of new work a stage running its units on this machine's CPUs may start without confirmation."""
        return DEFAULT_LOCAL_BUDGET_CPU_HOURS if self.budget_cpu_hours is None else float(self.budget_cpu_hours)

    def poll_interval(self) -> float:
        if self.poll_s is not None:
            return self.poll_s
        return backends.of(self).poll_s


def _cross_problems(v: tp.Mapping[str, tp.Any]) -> list[tuple[str, str]]:
    """Rules between keys, on the settings of the top level or of one kind (its profile applied); a key whose own
    value is bad is left to its own message."""
    out = []
    gres: str = v["gres"] if isinstance(v.get("gres"), str) else ""
    gres_gpu = [g for g in gres.split(",") if g.split(":")[0] == "gpu"]
    if gres_gpu and is_int(v.get("gpus_per_node")):
        out.append(("gres", f"asks for GPUs ({gres_gpu[0]}) and so does gpus_per_node ({v['gpus_per_node']}): set the "
                            "count in one place (gres: gpu:<type>:<count> to name a GPU type)"))
    mem: tp.Any = v.get("mem_gb")
    most: tp.Any = v.get("max_mem_gb")
    if is_real(mem) and is_real(most) and most < mem:
        out.append(("max_mem_gb", f"must be >= mem_gb ({brief(mem)}), got {brief(most)}"))
    return out


def _cross_all(values: tp.Mapping[str, tp.Any]) -> list[tuple[str, str]]:
    base = {k: v for k, v in values.items() if k != "profiles"}
    problems = _cross_problems(base)
    profiles = values.get("profiles")
    for kind, profile in profiles.items() if isinstance(profiles, dict) else ():
        if isinstance(profile, dict):
            problems += [(f"profiles.{kind}.{key}" if key in profile else key, msg)
                         for key, msg in _cross_problems({**base, **profile}) if (key, msg) not in problems]
    return problems


def _field_keys(profile: bool) -> list[str]:
    return [k for k in ExecutorConfig.model_fields if not (profile and k in NOT_IN_PROFILES)]


def _profile_problems(value: tp.Any) -> list[tuple[str, str]]:
    if not isinstance(value, dict):
        return [("", f"must be a mapping of unit kind -> settings for that kind, got {got(value, True)}")]
    out: list[tuple[str, str]] = []
    for kind, profile in value.items():
        if not isinstance(kind, str) or not KIND_RE.fullmatch(kind):
            out.append(("", f"maps unit kinds (train, autoattack, prune, ...) to settings, got kind {brief(kind)}"))
            continue
        if not isinstance(profile, dict):
            out.append((f".{kind}", f"must be a mapping of settings, got {brief(profile)}"))
            continue
        for key in profile:
            if key in NOT_IN_PROFILES:
                out.append((f".{kind}.{key}", "can only be set at the top level (it applies to the whole driver)"))
            elif key not in ExecutorConfig.model_fields:
                out.append((f".{kind}.{key}", _unknown(str(key), _field_keys(profile=True))))
        known = {k: v for k, v in profile.items() if k in ExecutorConfig.model_fields and k not in NOT_IN_PROFILES}
        try:
            _Profile.model_validate(known)
        except ValidationError as e:
            out += [(f".{kind}.{key}", msg) for key, msg in explain(e)]
    return out


def _unknown(key: str, allowed: list[str]) -> str:
    return f"unknown key {key!r}{did_you_mean(key, allowed)}; allowed: {', '.join(sorted(allowed))}"


# a profile: any per-kind key, each with the rule it has at the top level; the keys it leaves out are inherited
_Profile = create_model("Profile", __config__=ConfigDict(extra="forbid"), **{  # type: ignore[call-overload]
    name: (info.annotation, None) if not info.metadata else (tp.Annotated[(info.annotation, *info.metadata)], None)
    for name, info in ExecutorConfig.model_fields.items() if name not in NOT_IN_PROFILES})


def explain(exc: ValidationError, values: tp.Mapping[str, tp.Any] | None = None) -> list[tuple[str, str]]:
    """Every error of `exc` as (dotted key, what is allowed, got what); with the `values` validated, also the rules
    between keys that the keys without an error of their own break (all at once, not in rounds)."""
    out = []
    for err in exc.errors(include_url=False):
        path = ".".join(str(p) for p in err["loc"])
        ctx = err.get("ctx") or {}
        if "problems" in ctx:
            out += [((path + sub) if path else sub.lstrip("."), msg) for sub, msg in ctx["problems"]]
        elif err["type"] == "extra_forbidden":
            out.append((path, _unknown(str(err["loc"][-1]), _field_keys(profile=False))))
        else:
            out.append((path, f"{err['msg']}, got {brief(err.get('input'))}"))
    if values is not None and all(key for key, _ in out):
        bad = {key.split(".")[0] for key, _ in out}
        out += [p for p in _cross_all({k: v for k, v in values.items() if k not in bad}) if p not in out]
    return out


def _error(source: str, problems: list[tuple[str, str]]) -> ExecutorConfigError:
    return ExecutorConfigError("\n".join(f"{source}: {key or '<top level>'}: {m}" for key, m in problems), problems)


def allowed(name: str) -> str:
    """The rule of field `name` in words (what its validator says a value must be)."""
    for meta in ExecutorConfig.model_fields[name].metadata:
        text = getattr(getattr(meta, "func", None), "allowed", None)
        if text:
            return str(text)
    return ""


def validate_fields(values: tp.Mapping[str, tp.Any], source: str) -> None:
    """Raises ExecutorConfigError naming `source`, each bad key, the bad value and what is allowed."""
    ExecutorConfig.from_mapping(values, source)


def load_executor_config(path: str | Path | None = None) -> ExecutorConfig:
    """Settings from a YAML file (`path`, else $AWD_EXECUTOR_CONFIG, else ./executor.yaml if present); the kind
    can be overridden with $AWD_EXECUTOR. Without either: local."""
    if path is None and os.environ.get(ENV_FILE):
        path = os.environ[ENV_FILE]
        if not Path(path).is_file():
            raise ExecutorConfigError(f"${ENV_FILE}={path!r}: no such file")
    elif path is None and Path(DEFAULT_FILE).is_file():
        path = DEFAULT_FILE
    cfg = ExecutorConfig()
    if path is not None:
        source = str(path)
        try:
            loaded = bounded_yaml.load(path)  # YAML 1.2, under caps: an alias bomb or 100k `[` is refused
        except FileNotFoundError:
            raise ExecutorConfigError(f"executor config {source!r}: no such file") from None
        except bounded_yaml.SettingsFileError as e:
            raise ExecutorConfigError(f"executor config {e}") from None
        except YAMLError as e:
            raise ExecutorConfigError(f"executor config {source}: not valid YAML: {e}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ExecutorConfigError(f"executor config {source}: must be a mapping of settings, got "
                                      f"{type(loaded).__name__}")
        cfg = ExecutorConfig.from_mapping(loaded, source)
    env_kind = os.environ.get(ENV_KIND)
    if env_kind:
        env_kind = env_kind.strip().lower()
        if env_kind not in KINDS:
            raise ExecutorConfigError(f"${ENV_KIND}: unknown executor kind {env_kind!r}"
                                      f"{did_you_mean(env_kind, KINDS)}; allowed: {', '.join(KINDS)}")
        cfg = cfg.replace(kind=env_kind)
    return cfg
