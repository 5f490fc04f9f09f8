"""The CIFAR files the studies use, checked on disk before anything is submitted."""

from __future__ import annotations

from pathlib import Path

from pipeline.params.fields import ParamsError, problem_lines
from pipeline.params.schema import Params


def check_data(params: Params, base: str | Path | None = None) -> None:
    """Fail before anything is submitted when a CIFAR dataset a study uses is not on disk (and download is off).

    A relative data.root is taken relative to `base` (default: the working directory, the repo root under DVC).
    """
    cifar = [d for d in params.datasets() if d != "digits"]
    if params.data.download or not cifar:
        return
    from awd.data import cifar_files  # torchvision's file list; imported only when CIFAR is used

    root = Path(params.data.root)
    if base is not None and not root.is_absolute():
        root = Path(base) / root
    problems, fix = [], "put the extracted dataset there or set data.download: true"
    for dataset in cifar:
        folder_name, files = cifar_files(dataset)
        folder = root / folder_name
        users = ", ".join(f"suites.{s}[{i}]" for s, i, st in params.studies() if st.dataset == dataset)
        if not folder.is_dir():
            problems.append(("data.root", f"{dataset} folder {folder} does not exist (used by {users}); {fix}"))
            continue
        missing = [f for f in files if not (folder / f).is_file()]
        if missing:
            problems.append(("data.root", f"{dataset} folder {folder} is incomplete: missing {', '.join(missing)} "
                                          f"(used by {users}); {fix}"))
    if problems:
        raise ParamsError(problem_lines(params.source, problems))
