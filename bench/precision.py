"""configs/paper.yaml's precision (bf16 autocast, non-deterministic kernels) against the paper's fp32 (bf16: false,
deterministic: true), on a short PGD-7 run of awd.train's own step: time per step, and how far the weights drift
apart from the same start on the same batches (the same config run twice shows the kernels' own nondeterminism).

    .venv/bin/python -m bench.precision --model preact_wrn --model-kw '{"depth": 28, "width": 10}' --batch 128

Determinism is a process-wide setting, so the two configs run in alternating blocks of steps, each block under
awd.train's own determinism switch, rather than step by step.
"""

from __future__ import annotations

import json
import statistics
import time

import torch

from awd.train import TrainConfig, TrainData, _determinism, _Run
from bench.adv_step import EPS, STEP, STEPS, step_arguments, synthetic
from bench.common import report, table, wait_for_quiet

CONFIGS = {"paper.yaml (bf16, non-deterministic)": {"bf16": True, "deterministic": False},
           "fp32 (bf16: false, deterministic: true)": {"bf16": False, "deterministic": True}}


def make_run(args, device, bf16: bool, deterministic: bool) -> _Run:
    x, y = synthetic(args.batch * 4, args.size)
    data = TrainData(x_train=x, y_train=y, x_val=x[:8], y_val=y[:8], x_test=x[:8], y_test=y[:8], num_classes=10)
    cfg = TrainConfig.from_dict(dict(
        TrainConfig().to_dict(), dataset="cifar10", model=args.model, model_kw=args.model_kw, batch_size=args.batch,
        epochs=1000, lr=0.1, wd_method="awd", dog=0.022, adversarial=True, eps=EPS, step_size=STEP,
        train_steps=STEPS, bf16=bf16, channels_last=True, deterministic=deterministic, seed=0))
    with _determinism(deterministic, device):
        torch.manual_seed(0)
        run = _Run(cfg, data, device)
    run.model.train()
    return run


def weights(run: _Run) -> torch.Tensor:
    return torch.cat([p.detach().float().flatten() for p in run.model.parameters()])


def main() -> None:
    ap = step_arguments(__doc__, steps=10)
    ap.add_argument("--rounds", type=int, default=3, help="alternating blocks of --steps steps per config")
    ap.add_argument("--drift-steps", type=int, default=20, help="steps from the same start for the drift")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    args.model_kw = json.loads(args.model_kw)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    quiet = wait_for_quiet()
    idx = torch.arange(args.batch, device=device)
    runs = {name: make_run(args, device, **c) for name, c in CONFIGS.items()}
    times: dict[str, list[float]] = {name: [] for name in CONFIGS}
    for r in range(args.rounds + 1):  # round 0 warms up (cudnn autotuning, allocator) and is not counted
        for name, c in CONFIGS.items():
            with _determinism(c["deterministic"], device):
                for _ in range(args.steps):
                    sync()
                    t0 = time.perf_counter()
                    runs[name].step(idx)
                    sync()
                    if r:
                        times[name].append(time.perf_counter() - t0)
    final = {}
    bf16, fp32_cfg = CONFIGS.values()
    for label, c in (("a", bf16), ("b", fp32_cfg), ("a2", bf16)):
        run = make_run(args, device, **c)
        with _determinism(c["deterministic"], device):
            for s in range(args.drift_steps):
                run.step(torch.arange(s * args.batch, (s + 1) * args.batch, device=device) % (args.batch * 4))
        final[label] = weights(run)
    rel = lambda u, v: float((u - v).norm() / v.norm())  # noqa: E731
    med = {k: statistics.median(v) for k, v in times.items()}
    fp32 = list(CONFIGS)[1]
    rows = [[k, f"{v * 1e3:.1f}", f"{args.batch / v:.1f}", f"{med[fp32] / v:.2f}"] for k, v in med.items()]
    body = (f"{args.model}{' ' + json.dumps(args.model_kw) if args.model_kw else ''}, batch {args.batch}, "
            f"{args.size}×{args.size}, PGD-{STEPS} training steps of awd.train (AWD, channels_last both), {args.device}; "
            f"median of {args.rounds} × {args.steps} steps per config in alternating blocks.\n\n"
            + table(["precision", "ms/step", "images/s", "speed-up vs fp32"], rows)
            + f"\n\nWeight drift after {args.drift_steps} steps from the same start and batches (‖Δw‖/‖w‖): "
            f"bf16 vs fp32 **{rel(final['a'], final['b']):.2e}**; bf16 run twice {rel(final['a'], final['a2']):.2e} "
            "(the non-deterministic kernels alone).")
    report("Precision: paper.yaml's bf16 vs the paper's fp32, short PGD-7 run", body, quiet)


if __name__ == "__main__":
    main()
