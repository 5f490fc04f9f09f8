"""Shared by the benchmarks: interleaved timing, waiting for a quiet machine, a header naming the machine and the
load, appending to results/bench.md."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import time
from pathlib import Path

# $BENCH_MD redirects the report, e.g. for dry runs that must not land in results/bench.md
BENCH_MD = Path(os.environ.get("BENCH_MD") or Path(__file__).resolve().parent.parent / "results" / "bench.md")

# Written when results/bench.md is started (delete the file to start afresh); every section below it says its load.
HEADER = """# Benchmarks

Appended by the scripts in `bench/` (newest last). Each section names the machine, library versions and the 1-minute
load average before and after its measurement. Before measuring, a script waits up to 10 minutes for the load to drop
to 0.75 × CPUs (1.5 on 2 cores; "waited" says how long); the load "after" includes the benchmark's own threads (up to
the number of CPUs). "Other processes used N cores meanwhile" is measured directly (/proc/stat minus the benchmark's
own CPU time, over the measurement): the compute benchmarks measure again (up to 3 attempts) when it exceeds 0.15 ×
CPUs and keep the least polluted attempt. Times are medians of interleaved repetitions (order rotating), so drift hits
every variant alike.

## How to reproduce each section (from the repository root, after `make setup`)

| section | command |
|---|---|
| AWD overhead (CPU) | `.venv/bin/python -m bench.awd_overhead` |
| Adversarial training step (CPU) | `.venv/bin/python -m bench.adv_step` |
| Adversarial training step, ours with channels_last (CPU) | `.venv/bin/python -m bench.adv_step --channels-last` |
| Adversarial training step, ours with bf16 + channels_last (CPU; fast only where the CPU has AMX / AVX512-BF16) | `.venv/bin/python -m bench.adv_step --bf16 --channels-last` |
| Orchestration: cold and no-op `dvc repro` | `.venv/bin/python -m bench.orchestration --part dvc` |
| Orchestration: bookkeeping, local executor | `.venv/bin/python -m bench.orchestration --part local` |
| Orchestration: bookkeeping, SLURM | `scripts/local-slurm.sh start` (root), then `.venv/bin/python -m bench.orchestration --part slurm` |
| all CPU rows but the channels_last and bf16 ones | `make bench` (the three scripts with their defaults; SLURM only when `sinfo` is on PATH) |
| GPU rows (a CUDA machine, ≤ 8 min): sync check, adversarial step, AWD overhead, torch.compile probe | `bash bench/gpu.sh` |

Environment knobs: `BENCH_WAIT_S` (longest wait for a quiet machine, default 600; 0 measures at once),
`BENCH_MAX_LOAD` (default 0.75 × CPUs), `BENCH_MAX_OTHERS` (cores other processes may use before a compute
benchmark measures again, default 0.15 × CPUs), `BENCH_MD` (write the sections elsewhere, e.g. for dry runs).
"""


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return (f"{platform.node()} · {os.cpu_count()} CPUs ({cpu}) · {gpu} · Python {platform.python_version()} · "
            f"torch {torch.__version__} · threads {torch.get_num_threads()}")


def load1() -> float:
    return os.getloadavg()[0]


def wait_for_quiet(max_load: float | None = None, every_s: float = 30.0, limit_s: float | None = None) -> dict:
    """Waits (up to `limit_s`) until the 1-minute load average is at most `max_load`, so other processes do not
    pollute a measurement. Returns {"load": load when measuring starts, "waited_s": seconds waited}.

    Defaults: max_load $BENCH_MAX_LOAD or 0.75 × CPUs (1.5 on 2 cores); limit_s $BENCH_WAIT_S or 600
    (BENCH_WAIT_S=0 measures at once and only records the load, e.g. on a lent machine that runs nothing else)."""
    if max_load is None:
        max_load = float(os.environ.get("BENCH_MAX_LOAD") or 0.75 * (os.cpu_count() or 1))
    if limit_s is None:
        limit_s = float(os.environ.get("BENCH_WAIT_S") or 600)
    start = time.monotonic()
    while (load := load1()) > max_load and time.monotonic() - start < limit_s:
        print(f"load {load:.2f} > {max_load}: waiting {every_s:.0f} s", flush=True)
        time.sleep(every_s)
    waited = time.monotonic() - start
    if load > max_load:
        print(f"load still {load:.2f} after {waited:.0f} s: measuring anyway (noted in the report)", flush=True)
    return {"load": load, "waited_s": waited}


def _busy_s() -> float | None:
    """CPU-seconds all processes have spent so far (from /proc/stat; None where there is no /proc)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return None
    return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait; guest is in user


def _own_s() -> float:
    t = os.times()  # this process and the children it has waited for
    return t.user + t.system + t.children_user + t.children_system


class Meter:
    """How many cores other processes kept busy, on average, while the `with` block ran: the direct measure of
    how much a measurement was polluted (a load average lags by a minute and counts this process too)."""

    def __enter__(self) -> Meter:
        self.others = None
        self._t0, self._busy0, self._own0 = time.monotonic(), _busy_s(), _own_s()
        return self

    def __exit__(self, *exc) -> None:
        wall, busy = time.monotonic() - self._t0, _busy_s()
        if busy is not None and self._busy0 is not None and wall > 0:
            self.others = max(0.0, (busy - self._busy0 - (_own_s() - self._own0)) / wall)


def measure_quietly(fn, attempts: int = 3, max_others: float | None = None):
    """fn() after wait_for_quiet(), again (up to `attempts` times) while other processes kept more than
    `max_others` cores busy during it (default $BENCH_MAX_OTHERS or 0.15 × CPUs). Returns (result, quiet) of the
    least polluted attempt, quiet holding wait_for_quiet's fields plus "others" (cores) and "attempt"."""
    if max_others is None:
        max_others = float(os.environ.get("BENCH_MAX_OTHERS") or 0.15 * (os.cpu_count() or 1))
    best = None
    for attempt in range(1, attempts + 1):
        quiet = wait_for_quiet()
        with Meter() as meter:
            result = fn()
        quiet.update(others=meter.others, attempt=attempt)
        if best is None or (meter.others or 0.0) < (best[1]["others"] or 0.0):
            best = (result, quiet)
        if meter.others is None or meter.others <= max_others:
            break
        print(f"attempt {attempt}: other processes kept {meter.others:.2f} cores busy meanwhile (> {max_others:.2f})"
              + ("; measuring again" if attempt < attempts else "; keeping the least polluted attempt"), flush=True)
    best[1]["attempts"] = attempt
    return best


def interleaved(fns: dict, steps: int, warmup: int = 3, sync=lambda: None, raw: bool = False) -> dict:
    """Median seconds per call of each fn, calling them round-robin (rotating the order) so drift hits all alike.

    With raw=True, returns the lists of per-call seconds instead (index i of every list is round i)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    sync()
    times = {name: [] for name in fns}
    names = list(fns)
    for i in range(steps):
        # the order rotates every round, so no variant always runs right after the same other one
        for name in names[i % len(names):] + names[:i % len(names)]:
            t0 = time.perf_counter()
            fns[name]()
            sync()
            times[name].append(time.perf_counter() - t0)
    if raw:
        return times
    return {name: statistics.median(ts) for name, ts in times.items()}


def paired_ratio(times: dict, num: str, den: str) -> float:
    """Median over rounds of times[num][i] / times[den][i]: neighbours in time share the machine's state, so this
    is less sensitive to load that comes and goes than the ratio of the two medians."""
    return statistics.median(a / b for a, b in zip(times[num], times[den]))


def table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def report(title: str, body: str, quiet: dict | None = None) -> None:
    """Print and append one dated section to results/bench.md; `quiet` is what wait_for_quiet returned."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = f" · load {quiet['load']:.2f} before (waited {quiet['waited_s']:.0f} s), " if quiet else " · load "
    load += f"{load1():.2f} after"
    if quiet and quiet.get("others") is not None:
        load += f" · other processes used {quiet['others']:.2f} cores meanwhile"
        if quiet.get("attempts", 1) > 1:
            load += f" (attempt {quiet['attempt']}, the least polluted of {quiet['attempts']})"
    text = f"\n## {title}\n_{stamp} · {machine()}{load}_\n\n{body}\n"
    print(text)
    BENCH_MD.parent.mkdir(parents=True, exist_ok=True)
    if not BENCH_MD.exists():
        BENCH_MD.write_text(HEADER)
    with open(BENCH_MD, "a") as f:
        f.write(text)
