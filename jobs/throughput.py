"""Estimates that learn: how fast units of one shape really ran, recorded in the run store and used for the units
still to run.

A unit's *shape* is what its speed depends on (for a training run: model, dataset, attack steps, optimizer, ...) and
its *work* how much of it the unit does (epochs, attacked examples). jobs/ knows nothing of models: the pipeline
registers, per unit kind, a `CostModel` saying a unit's shape, its assumed seconds (the cost model) and how to read
the seconds and work a finished or checkpointed unit measured (`register`). A kind nobody registered keeps the
estimate its stage gave.

Every finished unit (and a running one whose checkpoint says how far it got) adds a sample: seconds per unit of
work on the hardware it ran on (the GPU model in its manifest, or CPU). A pending unit of the same shape, going to
the same place (executor kind and partition), is estimated from the samples: the median per hardware model, the
slowest model's, since a --time must hold on whichever node the scheduler picks. Without samples it is the cost
model's figure, marked `assumed`.

Samples live in `$AWD_STORE/_throughput/<user>/<shape digest>.json`, written atomically by the driver, read only
from this user's own folder that nobody else can write: a member of a shared store could otherwise shorten every
other member's --time. A sample is taken only from an entry whose manifest this uid wrote, for the same reason.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import stat
import statistics
import time
import typing as tp
from pathlib import Path

from jobs import backends, safefs
from jobs.executors import ExecutorConfig, owner_only_files
from jobs.job import Unit
from jobs.store import MANIFEST, RunStore
from jobs.store_files import _user

log = logging.getLogger(__name__)

MEASURED, ASSUMED = "measured", "assumed"
FOLDER = "_throughput"
MAX_FILE_BYTES = 512 * 1024  # a shape's file: at most KEEP samples per place and hardware, ~200 bytes each
KEEP = 32  # newest samples kept per (place, hardware) of a shape
RUNNING_HARDWARE = "running"  # a checkpoint sample: the job has not said which GPU yet (its done sample replaces it)


@dataclasses.dataclass(frozen=True)
class Shape:
    """What a unit's speed depends on (`fields`), the unit of its work (`per`: "epoch", "example") and how much
    of it the unit does (`work`)."""

    fields: tp.Mapping[str, tp.Any]
    per: str
    work: float

    @property
    def digest(self) -> str:
        text = json.dumps({"fields": self.fields, "per": self.per}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def describe(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.fields.items())


class CostModel(tp.Protocol):
    def shape(self, unit: Unit) -> Shape | None:
        """None: this unit's speed is not learnt (e.g. a rehearsal stand-in)."""

    def assumed_s(self, unit: Unit, cfg: ExecutorConfig) -> float:
        """Seconds the cost model expects on `cfg` (the unit kind's settings)."""

    def assumption(self, cfg: ExecutorConfig) -> str:
        """What `assumed_s` assumes, in words ("100 TFLOP/s per GPU")."""

    def measured(self, unit: Unit, result: dict, meta: dict) -> tuple[float, float] | None:
        """(seconds, work) a committed unit took, from its result and manifest meta; None if they do not say."""

    def progress(self, unit: Unit, read: tp.Callable[[str], tp.Any]) -> tuple[float, float] | None:
        """(seconds, work) so far of a running unit, from its checkpoint files (`read(name)`: a small JSON file of
        its workdir, None when absent or not this user's)."""


_MODELS: dict[str, CostModel] = {}


def register(kind: str, model: CostModel) -> None:
    _MODELS[kind] = model


def place(cfg: ExecutorConfig) -> str:
    """Where a unit kind's jobs run, as far as their speed goes: a partition (and constraint), or this host."""
    return backends.of(cfg).place(cfg)


def job_cpus(cfg: ExecutorConfig) -> int:
    """CPU threads one job gets (its backend's executor), all of them in the debug kind (in-process)."""
    return backends.of(cfg).job_cpus(cfg)


@dataclasses.dataclass(frozen=True)
class Rate:
    per_work_s: float  # seconds per unit of work: the slowest hardware's median
    hardware: str  # that hardware
    n: int  # samples behind it (every hardware)


@dataclasses.dataclass(frozen=True)
class Estimate:
    seconds: float
    source: str  # MEASURED or ASSUMED
    note: str  # "41.2 s/epoch on NVIDIA A100 (5 units)" or the cost model's assumption


def _slug(user: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", user).strip(".-") or f"uid{os.geteuid()}"


class Book:
    """The samples of one user in one store (see the module docstring)."""

    def __init__(self, root: str | Path, user: str | None = None):
        self.root = Path(root)
        self.rel = f"{FOLDER}/{_slug(user or _user())}"
        self._files: dict[str, dict] = {}

    def _own_folder(self) -> bool:
        st = safefs.lstat(self.root, self.rel) if self.root.is_dir() else None
        return (st is not None and stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid()
                and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))

    def _load(self, digest: str) -> dict:
        if digest not in self._files:
            content: dict = {"samples": []}
            try:
                if self._own_folder():
                    content = safefs.read_json(self.root, f"{self.rel}/{digest}.json", limit=MAX_FILE_BYTES,
                                               expect=dict)
            except FileNotFoundError:
                pass
            except (OSError, safefs.CorruptRecord) as e:  # measured figures are advice: never fail a stage on them
                log.warning("ignoring the throughput record %s/%s/%s.json: %s", self.root, self.rel, digest, e)
            samples = content.get("samples")
            content["samples"] = [s for s in samples if _valid(s)] if isinstance(samples, list) else []
            self._files[digest] = content
        return self._files[digest]

    def samples(self, shape: Shape, where: str) -> list[dict]:
        return [s for s in self._load(shape.digest)["samples"] if s["place"] == where]

    def add(self, shape: Shape, sample: dict) -> None:
        """Replaces the unit's earlier sample (a checkpoint's, by its done one) and keeps the newest KEEP per place
        and hardware; written atomically, in a folder only this user may write."""
        content = self._load(shape.digest)
        kept = [s for s in content["samples"] if s["key"] != sample["key"]] + [sample]
        groups: dict[tuple[str, str], list[dict]] = {}
        for s in sorted(kept, key=lambda s: s["at"]):
            groups.setdefault((s["place"], s["hardware"]), []).append(s)
        content = {"shape": dict(shape.fields), "per": shape.per,
                   "samples": sorted((s for g in groups.values() for s in g[-KEEP:]), key=lambda s: s["at"])}
        self._files[shape.digest] = content
        try:
            with safefs.dir_fd(self.root, FOLDER, create=True) as top:  # under the store's umask: every member's
                st = os.fstat(top)
                if st.st_uid == os.geteuid() and st.st_mode & stat.S_IWGRP:  # ... folder, which only they rename
                    os.fchmod(top, stat.S_IMODE(st.st_mode) | stat.S_ISVTX)
            with owner_only_files():
                with safefs.dir_fd(self.root, self.rel, create=True):
                    pass
            if not self._own_folder():
                raise PermissionError(f"{self.root}/{self.rel} is not a folder only you can write")
            with owner_only_files():
                safefs.write_atomic(self.root, f"{self.rel}/{shape.digest}.json",
                                    json.dumps(content, sort_keys=True).encode(), mode=0o644)
        except OSError as e:
            log.warning("throughput of %s not recorded in %s/%s: %s", shape.describe(), self.root, self.rel, e)


def _valid(s: tp.Any) -> bool:
    return (isinstance(s, dict) and all(isinstance(s.get(k), str) for k in ("key", "place", "hardware", "source"))
            and all(isinstance(s.get(k), (int, float)) and not isinstance(s.get(k), bool)
                    for k in ("per_work_s", "work", "at")) and 0 < s["per_work_s"] < 1e9 and s["work"] > 0)


def rate_of(samples: tp.Sequence[dict]) -> Rate | None:
    """The slowest hardware's median seconds per unit of work; a unit still running counts as its own hardware
    until its done sample replaces it."""
    by_hw: dict[str, list[float]] = {}
    for s in samples:
        by_hw.setdefault(s["hardware"], []).append(float(s["per_work_s"]))
    if not by_hw:
        return None
    medians = {hw: statistics.median(v) for hw, v in by_hw.items()}
    slowest = max(medians, key=lambda hw: medians[hw])
    return Rate(medians[slowest], slowest, len(samples))


class Estimator:
    """Estimates for units about to run on `cfg`, learning from the samples in the store at `root`."""

    def __init__(self, root: str | Path, cfg: ExecutorConfig, book: Book | None = None):
        self.cfg, self.book = cfg, book or Book(root)
        self._shapes: dict[str, tuple[Shape, float] | None] = {}  # unit key -> (shape, assumed seconds)
        self._rates: dict[tuple[str, str], Rate | None] = {}  # (shape digest, place) -> rate
        self.sources: dict[str, Estimate] = {}  # unit key -> the estimate `apply` gave it

    def _shape(self, unit: Unit) -> tuple[Shape, float] | None:
        if unit.key not in self._shapes:
            model = _MODELS.get(unit.kind)
            found = None
            try:
                shape = model.shape(unit) if model is not None else None
                if model is not None and shape is not None:
                    found = (shape, float(model.assumed_s(unit, self.cfg.for_kind(unit.kind))))
            except Exception as e:  # noqa: BLE001 -- an estimate is advice: the unit keeps the one its stage gave
                log.debug("no cost model for unit %s (%s): %r", unit.name, unit.kind, e)
            self._shapes[unit.key] = found
        return self._shapes[unit.key]

    def rate(self, shape: Shape, where: str) -> Rate | None:
        ident = (shape.digest, where)
        if ident not in self._rates:
            self._rates[ident] = rate_of(self.book.samples(shape, where))
        return self._rates[ident]

    def estimate(self, unit: Unit) -> Estimate | None:
        """None for a unit whose kind no cost model covers (it keeps its own estimate_s)."""
        known = self._shape(unit)
        if known is None:
            return None
        shape, assumed = known
        kcfg = self.cfg.for_kind(unit.kind)
        rate = self.rate(shape, place(kcfg))
        if rate is not None:
            return Estimate(rate.per_work_s * shape.work, MEASURED,
                            f"{rate.per_work_s:.3g} s/{shape.per} on {rate.hardware} ({rate.n} units)")
        model = _MODELS[unit.kind]
        return Estimate(assumed, ASSUMED, f"cost model at {model.assumption(kcfg)}")

    def apply(self, units: tp.Iterable[Unit]) -> None:
        """Sets each covered unit's estimate_s (what sizes its --time, orders submission and feeds the ETA)."""
        for unit in units:
            est = self.estimate(unit)
            if est is not None:
                unit.estimate_s = est.seconds
                self.sources[unit.key] = est

    def _record(self, unit: Unit, shape: Shape, seconds: float, work: float, hardware: str, source: str) -> bool:
        if not (seconds > 0 and work > 0):
            return False
        where = place(self.cfg.for_kind(unit.kind))
        before = self.rate(shape, where)
        self.book.add(shape, {"key": unit.key, "place": where, "hardware": hardware, "source": source,
                              "per_work_s": seconds / work, "work": work, "at": time.time()})
        self._rates.pop((shape.digest, where), None)
        return self.rate(shape, where) != before

    def observe(self, unit: Unit, store: RunStore) -> bool:
        """A committed unit's measurement joins the samples; True when that changed its shape's estimate."""
        known = self._shape(unit)
        entry = f"{unit.kind}/{unit.key[:2]}/{unit.key}"
        if known is None:
            return False
        st = safefs.lstat(store.root, f"{entry}/{MANIFEST}")
        if st is None or st.st_uid != os.geteuid():
            return False  # another member's job: its figures are not ours to trust
        try:
            manifest = store.manifest(unit.kind, unit.key) or {}
            result = store.result(unit.kind, unit.key)
        except (OSError, ValueError) as e:
            log.warning("no throughput from %s: %s", entry, e)
            return False
        meta = _mapping(manifest.get("meta"))
        found = _MODELS[unit.kind].measured(unit, result, meta)
        if found is None:
            return False
        gpu = _mapping(meta.get("env")).get("gpu")
        hardware = gpu if isinstance(gpu, str) and gpu else "CPU"
        return self._record(unit, known[0], found[0], found[1], hardware, "done")

    def observe_running(self, unit: Unit, store: RunStore) -> bool:
        """A running unit's checkpoint (its progress so far) joins the samples, until its done sample replaces it."""
        known = self._shape(unit)
        if known is None:
            return False
        entry = f"{unit.kind}/{unit.key[:2]}/{unit.key}"

        def read(name: str) -> tp.Any:
            st = safefs.lstat(store.root, f"{entry}/{name}")
            if st is None or st.st_uid != os.geteuid():
                return None
            try:
                return safefs.read_json(store.root, f"{entry}/{name}", limit=MAX_FILE_BYTES * 8)
            except (OSError, safefs.CorruptRecord):
                return None

        found = _MODELS[unit.kind].progress(unit, read)
        if found is None:
            return False
        return self._record(unit, known[0], found[0], found[1], RUNNING_HARDWARE, "checkpoint")


def _mapping(value: tp.Any) -> dict:
    return value if isinstance(value, dict) else {}


def eta_s(remaining: tp.Sequence[float], slots: int) -> float:
    """Seconds until units with these remaining estimates are done, `slots` at a time: the work spread over the
    slots, and never less than the longest one."""
    if not remaining:
        return 0.0
    return max(sum(remaining) / max(1, slots), max(remaining))


def kind_etas(pending: tp.Sequence[tuple[Unit, float | None]], sources: tp.Mapping[str, Estimate], slots: int,
              finished: tp.Mapping[str, tp.Sequence[float]]) -> dict[str, tuple[float, str]]:
    """Per unit kind, (seconds until its units are done, measured/assumed), from the first minute of a stage: each
    pending unit's estimate, less the time since it started running (`pending`: (unit, running since or None)),
    spread over `slots` jobs. A kind with a unit that has no estimate is left out (the progress line extrapolates
    its finished units' durations), and so is one whose estimates all came from its stage while units of it have
    finished (`finished`): their durations say more."""
    left: dict[str, list[float]] = {}
    found: dict[str, list[Estimate | None]] = {}
    now = time.time()
    for unit, since in pending:
        rest = left.setdefault(unit.kind, [])
        if unit.estimate_s is None:
            rest.append(math.nan)
            continue
        rest.append(max(0.0, unit.estimate_s - (now - since if since else 0.0)))
        found.setdefault(unit.kind, []).append(sources.get(unit.key))
    out = {}
    for kind, rest in left.items():
        known = found.get(kind, [])
        if any(math.isnan(x) for x in rest) or (all(e is None for e in known) and finished.get(kind)):
            continue
        out[kind] = (eta_s(rest, slots), source_word(known) if any(known) else ASSUMED)
    return out


def source_word(estimates: tp.Sequence[Estimate | None]) -> str:
    """measured / assumed / partly measured, for a set of units' estimates."""
    measured = sum(1 for e in estimates if e is not None and e.source == MEASURED)
    return MEASURED if measured == len(estimates) else ASSUMED if not measured else "partly measured"
