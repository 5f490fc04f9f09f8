"""Adversarial-training step: ours (awd.train, PGD-7 + AWD update, augmentation included) vs a minimal plain-PyTorch
fp32 PGD-AT step written here as the reference. Same model, batch and process, interleaved; ratio = ref / ours
(≥ 1.0 means ours is no slower). On a GPU, `--bf16 --channels-last` measures the fast path; both steps then run with
cudnn.benchmark on (as awd.train sets it for deterministic=False) and PyTorch's default precision flags, under which
cuDNN convolutions of the "fp32" reference may use TF32 (the report states the flags).
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch
import torch.nn.functional as F

from awd.models import build_model
from awd.train import TrainConfig, TrainData, _Run
from bench.common import interleaved, measure_quietly, paired_ratio, report, table

EPS, STEP, STEPS = 8 / 255, 2 / 255, 7


def reference_step(model, opt, x, y):
    """Madry et al. PGD-AT as commonly written: fp32, sign steps, clamp, SGD with built-in weight decay."""
    delta = torch.empty_like(x).uniform_(-EPS, EPS)
    delta = (x + delta).clamp(0, 1) - x
    for _ in range(STEPS):
        delta.requires_grad_(True)
        loss = F.cross_entropy(model(x + delta), y)
        (grad,) = torch.autograd.grad(loss, delta)
        delta = (delta.detach() + STEP * grad.sign()).clamp(-EPS, EPS)
        delta = (x + delta).clamp(0, 1) - x
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(x + delta), y).backward()
    opt.step()


def synthetic(n: int, size: int, classes: int = 10):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    return x, y


def ours(args, device, compile_mode: str | None = None):
    """One awd.train step (augmentation, PGD-7, AWD, SGD) as a closure; the model under torch.compile if asked."""
    x, y = synthetic(args.batch * 4, args.size)
    data = TrainData(x_train=x, y_train=y, x_val=x[:8], y_val=y[:8], x_test=x[:8], y_test=y[:8], num_classes=10)
    # epochs: the cosine schedule spans epochs × 4 steps; enough that the lr stays ≈ 0.1 while measuring
    cfg = TrainConfig.from_dict(dict(
        TrainConfig().to_dict(), dataset="cifar10", model=args.model, model_kw=args.model_kw, batch_size=args.batch,
        epochs=1000, lr=0.1, wd_method="awd", dog=0.022, adversarial=True, eps=EPS, step_size=STEP,
        train_steps=STEPS, bf16=args.bf16, channels_last=args.channels_last, deterministic=False))
    run = _Run(cfg, data, device)
    if compile_mode is not None:  # the optimizer and the weight decay hold the same parameter tensors
        run.model = torch.compile(run.model, mode=compile_mode)
    run.model.train()
    idx = torch.arange(args.batch, device=device)
    return lambda: run.step(idx)


def step_arguments(description: str, steps: int) -> argparse.ArgumentParser:
    """The model / batch / precision options every training-step benchmark takes."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--model", default="resnet32")
    ap.add_argument("--model-kw", default="{}", help="JSON kwargs, e.g. '{\"depth\": 28, \"width\": 10}'")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=steps)
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--channels-last", action="store_true")
    return ap


def main() -> None:
    ap = step_arguments(__doc__, steps=30)
    ap.add_argument("--attempts", type=int, default=3, help="measure again while other processes load the machine")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    args.model_kw = json.loads(args.model_kw)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as awd.train sets it when deterministic=False; both steps get it
    torch.manual_seed(0)
    ref_model = build_model(args.model, 10, in_channels=3, **args.model_kw).to(device).train()
    ref_opt = torch.optim.SGD(ref_model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    xr, yr = synthetic(args.batch, args.size)
    xr, yr = (xr.float() / 255).to(device), yr.to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    REF, OURS = "reference fp32 PGD-7 step", "ours (awd.train step, AWD)"
    fns = {REF: lambda: reference_step(ref_model, ref_opt, xr, yr), OURS: ours(args, device)}
    times, quiet = measure_quietly(lambda: interleaved(fns, args.steps, sync=sync, raw=True), attempts=args.attempts)
    med = {k: statistics.median(v) for k, v in times.items()}
    ref, our = med[REF], med[OURS]
    rows = [[k, f"{v * 1e3:.1f}", f"{args.batch / v:.1f}"] for k, v in med.items()]
    opts = " + ".join([o for o, on in (("bf16", args.bf16), ("channels_last", args.channels_last)) if on]) or "fp32"
    flags = (f"; cudnn.benchmark on, TF32 allowed in cuDNN convolutions: {torch.backends.cudnn.allow_tf32}, in "
             f"matmuls: {torch.backends.cuda.matmul.allow_tf32}" if device.type == "cuda" else "")
    body = (f"{args.model}{' ' + json.dumps(args.model_kw) if args.model_kw else ''}, batch {args.batch}, {args.size}×{args.size}, PGD-{STEPS}, "
            f"{args.device}, ours with {opts}{flags}; median of {args.steps} interleaved steps (order rotating).\n\n"
            + table(["step", "ms/step", "images/s"], rows)
            + "\n\nBoth run the same 8 forward + backward passes per step (7 attack steps, 1 training step); ours adds "
            "augmentation, the AWD update and its trace. In fp32 with the same layout, parity (1.00 within the noise) "
            "is what to expect; the speed-ups come from channels_last and bf16."
            + f"\n\nref/ours = **{ref / our:.3f}** (ratio of medians; per-round {paired_ratio(times, REF, OURS):.3f}; "
            f"target ≥ 1.0 on CPU, ≥ 2.5 on GPU with bf16 + channels_last); "
            f"projected epoch of 45k images: ours {45000 / args.batch * our:.0f} s.")
    report("Adversarial training step", body, quiet)


if __name__ == "__main__":
    main()
