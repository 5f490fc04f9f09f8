"""Shared by the benchmarks: interleaved timing, a header naming the machine, appending to results/bench.md."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import time
from pathlib import Path

BENCH_MD = Path(__file__).resolve().parent.parent / "results" / "bench.md"


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return (f"{platform.node()} · {os.cpu_count()} CPUs ({cpu}) · {gpu} · Python {platform.python_version()} · "
            f"torch {torch.__version__} · threads {torch.get_num_threads()}")


def interleaved(fns: dict, steps: int, warmup: int = 3, sync=lambda: None) -> dict:
    """Median seconds per call of each fn, calling them round-robin so drift hits all alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    sync()
    times = {name: [] for name in fns}
    for _ in range(steps):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def report(title: str, body: str) -> None:
    """Print and append one dated section to results/bench.md."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = f"\n## {title}\n_{stamp} · {machine()}_\n\n{body}\n"
    print(text)
    BENCH_MD.parent.mkdir(parents=True, exist_ok=True)
    if not BENCH_MD.exists():
        BENCH_MD.write_text("# Benchmarks\n\nAppended by the scripts in `bench/` (newest last).\n")
    with open(BENCH_MD, "a") as f:
        f.write(text)
