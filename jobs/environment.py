"""The software and hardware a result was computed with, stored in its manifest (`meta.env`).

Versions are recorded, not keyed: a library upgrade reuses every cached result (see docs/design.md, "Keys").
"""

from __future__ import annotations

import importlib.metadata
import platform
import sys
import typing as tp

PACKAGES = ("torch", "torchvision", "pyautoattack", "numpy")


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment() -> dict[str, tp.Any]:
    """Python and package versions; CUDA version and GPU name when the unit ran with torch loaded (no import
    here: a job that never used torch reports none)."""
    env: dict[str, tp.Any] = {"python": platform.python_version(), **{p: _version(p) for p in PACKAGES},
                                 "cuda": None, "gpu": None}
    torch = sys.modules.get("torch")
    if torch is not None:
        env["cuda"] = torch.version.cuda
        if torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name(torch.cuda.current_device())
    return env
