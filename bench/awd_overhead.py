"""AWD overhead: step time of AWD vs fixed vs no weight decay (and the naive per-parameter `.item()` form).

Same model, batch and process; methods interleaved step by step; medians of --steps steps. Target AWD/fixed ≤ 1.02.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleaved, report, table  # noqa: E402

from awd import build_weight_decay  # noqa: E402
from awd.models import build_model  # noqa: E402


class NaiveAWD:
    """The form seen in public code: per-parameter norms pulled to the host with .item() every step."""

    def __init__(self, params, dog):
        self.params, self.dog, self.lam = list(params), dog, 0.0

    def apply_(self):
        g = sum(p.grad.norm().item() ** 2 for p in self.params) ** 0.5
        w = sum(p.norm().item() ** 2 for p in self.params) ** 0.5
        self.lam = 0.1 * self.lam + 0.9 * self.dog * g / w
        for p in self.params:
            p.grad.add_(p.detach(), alpha=self.lam)
        return self.lam


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="resnet32")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    torch.manual_seed(0)
    dev = torch.device(args.device)
    model = build_model(args.model, 10, in_channels=3).to(dev)
    params = [p for p in model.parameters()]
    x = torch.rand(args.batch, 3, args.size, args.size, device=dev)
    y = torch.randint(0, 10, (args.batch,), device=dev)
    opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    methods = {
        "none": build_weight_decay("none", params),
        "fixed": build_weight_decay("fixed", params, wd=5e-4),
        "awd": build_weight_decay("awd", params, dog=0.016),
        "naive awd (.item())": NaiveAWD(params, 0.016),
    }

    def step(wd):
        def run():
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            wd.apply_()
            opt.step()
        return run

    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    med = interleaved({k: step(v) for k, v in methods.items()}, args.steps, sync=sync)
    base = med["fixed"]
    rows = [[k, f"{v * 1e3:.2f}", f"{v / base:.4f}"] for k, v in med.items()]
    body = (f"{args.model}, batch {args.batch}, {args.size}×{args.size}, {args.device}, median of {args.steps} "
            f"interleaved steps (forward + backward + decay + SGD step).\n\n"
            + table(["method", "ms/step", "ratio to fixed"], rows)
            + f"\n\nAWD/fixed = **{med['awd'] / base:.4f}** (target ≤ 1.02).")
    report("AWD overhead", body)


if __name__ == "__main__":
    main()
