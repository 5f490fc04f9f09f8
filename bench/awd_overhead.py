"""AWD overhead: step time of AWD vs fixed vs no weight decay (and the naive per-parameter `.item()` form).

Same model, batch and process; methods interleaved step by step; medians of --steps steps. Target AWD/fixed ≤ 1.02.
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch
import torch.nn.functional as F

from awd import build_weight_decay
from awd.models import build_model
from bench.common import interleaved, measure_quietly, paired_ratio, report, table

DECAY_REPS = 10


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
    ap.add_argument("--model-kw", default="{}", help="JSON kwargs, e.g. '{\"depth\": 28, \"width\": 10}'")
    ap.add_argument("--target", type=float, default=1.02, help="AWD/fixed target printed beside the figure")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--attempts", type=int, default=3, help="measure again while other processes load the machine")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    torch.manual_seed(0)
    dev = torch.device(args.device)
    model_kw = json.loads(args.model_kw)
    model = build_model(args.model, 10, in_channels=3, **model_kw).to(dev)
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

    def decay_only(wd):
        # the gradients of the last step stay in place: apply_ adds to them again, which costs the same
        return lambda: [wd.apply_() for _ in range(DECAY_REPS)]

    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    def measure():
        return (interleaved({k: step(v) for k, v in methods.items()}, args.steps, sync=sync, raw=True),
                interleaved({k: decay_only(v) for k, v in methods.items()}, args.steps, sync=sync))

    (times, decay), quiet = measure_quietly(measure, attempts=args.attempts)
    decay = {k: v / DECAY_REPS for k, v in decay.items()}
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["fixed"]
    # The decay's own cost is far below the step's run-to-run noise on a shared CPU; the step ratio it implies is
    # (fixed step + Δ decay) / fixed step.
    implied = {k: (base + decay[k] - decay["fixed"]) / base for k in methods}
    rows = [[k, f"{v * 1e3:.2f}", f"{v / base:.4f}", f"{paired_ratio(times, k, 'fixed'):.4f}",
             f"{decay[k] * 1e3:.3f}", f"{implied[k]:.4f}"] for k, v in med.items()]
    n_params = sum(p.numel() for p in params)
    body = (f"{args.model} {json.dumps(model_kw) + ' ' if model_kw else ''}({n_params / 1e6:.2f} M parameters in {len(params)} tensors), batch "
            f"{args.batch}, {args.size}×{args.size}, {args.device}; step = forward + backward + decay + SGD step, "
            f"median of {args.steps} interleaved rounds (order rotating); decay alone = `apply_()` on the same "
            f"gradients, median of {args.steps} rounds of {DECAY_REPS} calls.\n\n"
            + table(["method", "ms/step (median)", "step ratio of medians to fixed", "median of per-round ratios",
                     "ms decay alone", "step ratio implied by the decay alone"], rows)
            + f"\n\nAWD/fixed = **{med['awd'] / base:.4f}** measured (ratio of medians; per-round "
            f"{paired_ratio(times, 'awd', 'fixed'):.4f}), **{implied['awd']:.4f}** implied by the decay's own cost "
            f"({(decay['awd'] - decay['fixed']) * 1e3:+.3f} ms on a {base * 1e3:.1f} ms step); target ≤ {args.target}.")
    report("AWD overhead", body, quiet)


if __name__ == "__main__":
    main()
