"""Fails if one AWD training step (decay + SGD step) makes a host-device synchronisation (needs CUDA)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from awd import build_weight_decay
from awd.dog import DoGTrace
from awd.models import build_model


def main() -> None:
    assert torch.cuda.is_available(), "sync_check needs a CUDA device"
    dev = torch.device("cuda")
    model = build_model("preact_wrn", 10, depth=16, width=4).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, foreach=True)
    wd = build_weight_decay("awd", model, dog=0.022)
    trace = DoGTrace(every=1)
    x, y = torch.rand(64, 3, 32, 32, device=dev), torch.randint(0, 10, (64,), device=dev)
    for step in range(3):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            lam = wd.apply_()
            trace.record(lam, wd.dog())
            opt.step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    print(f"sync check passed: 3 AWD steps (apply_ + trace + SGD step) made no host-device synchronisation; "
          f"λ̄ = {float(lam):.3g}")


if __name__ == "__main__":
    main()
