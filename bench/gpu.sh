#!/usr/bin/env bash
# One command for a lent GPU machine (≤ 8 minutes): WRN-28-10, batch 128, PGD-7 on synthetic CIFAR-shaped data.
#   bash bench/gpu.sh            (from the repo root, with .venv set up; appends to results/bench.md)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
WRN='{"depth": 28, "width": 10}'
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
# 1. fp32 reference PGD-AT loop vs ours (bf16 autocast + channels_last): images/s, ratio (target >= 2.5x)
timeout 300 "$PY" bench/adv_step.py --model preact_wrn --model-kw "$WRN" --batch 128 --steps 10 --bf16 --channels-last
# 2. AWD overhead on GPU (target <= 1.01x) on WRN-28-10, batch 128
timeout 120 "$PY" bench/awd_overhead.py --model preact_wrn --batch 128 --steps 20
# 3. the AWD step makes no host-device synchronisation
timeout 60 "$PY" bench/sync_check.py
