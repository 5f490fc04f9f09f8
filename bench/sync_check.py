"""Fails if an AWD training step makes a host-device synchronisation (needs CUDA).

1. the AWD update alone (apply_ + DoG trace + SGD step) on a small PreAct WRN;
2. one whole awd.train step: augmentation, PGD-7 under bf16 autocast, channels_last, AWD, SGD, LR schedule.

`--device cpu` runs the same code without the check (a dry run that catches errors on a machine without CUDA).
"""

from __future__ import annotations

import argparse
import contextlib
import types

import torch
import torch.nn.functional as F

from awd import build_weight_decay
from awd.dog import DoGTrace
from awd.models import build_model
from bench.adv_step import ours


@contextlib.contextmanager
def no_sync(dev: torch.device):
    """Inside, a synchronising CUDA call raises; a no-op off CUDA."""
    if dev.type != "cuda":
        yield
        return
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


def check_update(dev: torch.device, batch: int) -> float:
    model = build_model("preact_wrn", 10, depth=16, width=4).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, foreach=True)
    wd = build_weight_decay("awd", model, dog=0.022)
    trace = DoGTrace(every=1)
    x, y = torch.rand(batch, 3, 32, 32, device=dev), torch.randint(0, 10, (batch,), device=dev)
    for _ in range(3):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        with no_sync(dev):
            lam = wd.apply_()
            trace.record(lam, wd.dog())
            opt.step()
    return float(lam)


def check_train_step(dev: torch.device, batch: int) -> float:
    args = types.SimpleNamespace(model="preact_wrn", model_kw={"depth": 10, "width": 2}, batch=batch, size=32,
                                 bf16=True, channels_last=True)
    step = ours(args, dev)
    for _ in range(2):  # warm-up: cuDNN picks its algorithms (which may synchronise) on first use
        step()
    with no_sync(dev):
        for _ in range(2):
            loss, correct, lam, dog = step()
    return float(lam)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    dev = torch.device(args.device)
    if dev.type == "cuda":
        assert torch.cuda.is_available(), "sync_check needs a CUDA device (or --device cpu for a dry run)"
        torch.backends.cudnn.benchmark = True
    lam = check_update(dev, args.batch)
    what = "made no host-device synchronisation" if dev.type == "cuda" else "ran (dry run on CPU: nothing checked)"
    print(f"sync check 1: 3 AWD updates (apply_ + trace + SGD step) {what}; λ̄ = {lam:.3g}")
    lam = check_train_step(dev, args.batch)
    print(f"sync check 2: 2 awd.train steps (augment + PGD-7 bf16 + channels_last + AWD + SGD + schedule) {what}; "
          f"λ̄ = {lam:.3g}")


if __name__ == "__main__":
    main()
