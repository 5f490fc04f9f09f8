"""GPUs busy over simulated time, per stage: where the cluster idles."""

from __future__ import annotations

from pathlib import Path

from pipeline.report.figure_io import save_figure

ORDER = ("train", "train (phase 2: AWD)", "attack", "prune")


def plot_gpus(path: Path, hours: list[float], series: dict, gpus: int, label: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.6))
    names = [n for n in ORDER if n in series] + sorted(n for n in series if n not in ORDER)
    if names:
        ax.stackplot(hours, [series[n] for n in names], labels=names, step="post", alpha=0.85)
    ax.axhline(gpus, color="k", lw=1, ls="--", label=f"{gpus} GPUs")
    ax.set_xlabel("simulated hours since the campaign started")
    ax.set_ylabel("GPUs busy")
    ax.set_title(f"Rehearsal ({label}): GPUs busy per stage")
    ax.set_ylim(0, gpus * 1.1)
    ax.legend(loc="upper center", fontsize=8, ncol=3)
    fig.tight_layout()
    save_figure(fig, path, "png", dpi=110)
    plt.close(fig)
