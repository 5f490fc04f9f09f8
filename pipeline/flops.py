"""Forward FLOPs per image of a model (the cost model's unit: pipeline/cost.py), and a cache of them on disk.

Counting builds the model and runs one forward, which needs torch (~2.7 CPU-s with the forward): every stage
driver that plans units would pay it at every start, though the count only changes with the model's code. The
cache keeps each count in a small file under the user's cache directory ($AWD_CACHE_DIR, else
$XDG_CACHE_HOME/awd-bench, else ~/.cache/awd-bench), named by a digest of what the count depends on: the model,
dataset and keywords, the source bytes of the model and dataset code and of this file, and torch's version. Any
edit to those files is a miss (counted afresh); an unreadable, odd or unwritable cache is a miss too, never an
error: the count is an estimate's input, never a unit's key or result.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import cache
from importlib import metadata
from pathlib import Path

from jobs.atomic import atomic_write_json

_AWD = Path(__file__).resolve().parent.parent / "awd"
CACHE_ENV = "AWD_CACHE_DIR"


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "awd-bench"


@cache
def _code_digest() -> str:
    digest = hashlib.sha256(metadata.version("torch").encode())
    for path in [Path(__file__).resolve(), _AWD / "data.py", _AWD / "checks.py", *sorted(_AWD.glob("models/*.py"))]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _cache_file(model: str, dataset: str, model_kw: str) -> Path:
    key = hashlib.sha256(json.dumps([_code_digest(), model, dataset, model_kw]).encode()).hexdigest()
    return cache_dir() / f"flops-{key[:32]}.json"


@cache
def forward_flops(model: str, dataset: str, model_kw: str) -> float:
    """Forward FLOPs of one image (`model_kw`: the keywords as canonical JSON), from the cache when it has them."""
    try:
        path: Path | None = _cache_file(model, dataset, model_kw)
    except (OSError, RuntimeError, metadata.PackageNotFoundError):  # no home directory, no torch distribution
        path = None
    try:
        cached = json.loads(path.read_text())["flops"] if path is not None else None
        if isinstance(cached, float) and cached > 0:
            return cached
    except (OSError, ValueError, KeyError, TypeError):
        pass
    flops = count_forward_flops(model, dataset, model_kw)
    if path is not None:
        try:
            atomic_write_json(path, {"model": model, "dataset": dataset, "model_kw": model_kw, "flops": flops})
        except OSError:
            pass
    return flops


def count_forward_flops(model: str, dataset: str, model_kw: str) -> float:
    """2 per multiply-add of every convolution and linear layer of one image's forward. Forward hooks on the layers,
    not FlopCounterMode: its dispatch mode imports torch._dynamo (~1.4 CPU-s more)."""
    import torch
    from torch import nn

    from awd.data import dataset_info
    from awd.models import build_model

    num_classes, channels, size = dataset_info(dataset)
    total = [0]

    def count(layer, inputs, output):
        if isinstance(layer, nn.Conv2d):
            per_output = layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
        else:
            per_output = layer.in_features
        total[0] += 2 * output.numel() * per_output

    with torch.device("meta"):  # no weight initialised
        net = build_model(model, num_classes, in_channels=channels, **json.loads(model_kw))
    # the forward itself on the CPU, on zeros (a meta forward's elementwise ops import torch._dynamo too)
    net = net.to_empty(device="cpu")
    hooks = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        for tensor in [*net.parameters(), *net.buffers()]:
            tensor.zero_()
        net.eval()(torch.zeros(1, channels, size, size))
    for hook in hooks:
        hook.remove()
    return float(total[0])
