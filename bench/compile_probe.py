"""Would torch.compile pay? The awd.train adversarial step (PGD-7 + AWD update) with the model eager vs wrapped in
torch.compile, same config and process, interleaved after the compiled one has been warmed up.

Reports the one-off compile time (the first compiled steps: the PGD graph with frozen parameters and the training
graph compile separately), the steady-state speed-up, and the break-even point in steps and in CIFAR epochs
(45k images). awd.train does not compile; this says whether adding it would be worth it for a given model.
"""

from __future__ import annotations

import json
import time

import torch

from bench.adv_step import ours, step_arguments
from bench.common import Meter, interleaved, report, table, wait_for_quiet


def main() -> None:
    ap = step_arguments(__doc__, steps=10)
    ap.add_argument("--mode", default="default", help="torch.compile mode")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    args.model_kw = json.loads(args.model_kw)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as awd.train sets it when deterministic=False
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    eager = ours(args, device)
    compiled = ours(args, device, compile_mode=args.mode)
    quiet = wait_for_quiet()
    first = []
    with Meter() as meter:
        for _ in range(3):  # the first calls compile: the PGD graph (frozen parameters) and the training graph
            t0 = time.perf_counter()
            compiled()
            sync()
            first.append(time.perf_counter() - t0)
            print(f"compiled call {len(first)}: {first[-1]:.1f} s", flush=True)  # still says something on a time-out
        med = interleaved({"eager": eager, "compiled": compiled}, args.steps, sync=sync)
    quiet["others"] = meter.others
    gain = med["eager"] - med["compiled"]
    compile_s = sum(first) - 3 * med["compiled"]
    steps_per_epoch = 45000 / args.batch
    if gain > 0:
        even = f"{compile_s / gain:.0f} steps = {compile_s / gain / steps_per_epoch:.2f} epochs of 45k images"
    else:
        even = "never (compiled is not faster)"
    opts = " + ".join([o for o, on in (("bf16", args.bf16), ("channels_last", args.channels_last)) if on]) or "fp32"
    rows = [["eager", f"{med['eager'] * 1e3:.1f}", "—"],
            [f"torch.compile (mode {args.mode})", f"{med['compiled'] * 1e3:.1f}",
             f"first 3 calls {', '.join(f'{s:.1f}' for s in first)} s"]]
    body = (f"awd.train adversarial step (PGD-7, AWD), {args.model}{' ' + json.dumps(args.model_kw) if args.model_kw else ''}, batch {args.batch}, "
            f"{args.size}×{args.size}, {args.device}, {opts}; median of {args.steps} interleaved steps.\n\n"
            + table(["model", "ms/step", "compile"], rows)
            + f"\n\nspeed-up eager/compiled = **{med['eager'] / med['compiled']:.3f}**; one-off compile ≈ "
            f"{compile_s:.0f} s; break-even after {even}.")
    report("torch.compile probe", body, quiet)


if __name__ == "__main__":
    main()
