#!/usr/bin/env bash
# One command for a lent GPU machine (at most 10 minutes in all: the limits below sum to 545 s, plus 10 s grace each before a kill):
# WRN-28-10, batch 128, PGD-7 on synthetic CIFAR-shaped data (no download).
#   bash bench/gpu.sh            (from anywhere; appends to results/bench.md)
# Uses .venv/bin/python when it exists, else $PY or python3 (the repository goes on PYTHONPATH, so an interpreter
# with torch, torchvision, numpy and pyyaml suffices). A step that fails or times out does not stop the others; the
# exit status is 1 if any failed.
# Untested on CUDA so far: every script was dry-run on CPU with tiny sizes (see the commands at the end).
set -uo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PY:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export BENCH_WAIT_S=${BENCH_WAIT_S:-0}  # a lent machine runs nothing else: measure at once, only record the load
WRN='{"depth": 28, "width": 10}'
status=0
step() {  # step SECONDS command...: run with a time limit, note a failure, go on
  local limit=$1; shift
  echo "== $* (limit ${limit}s)"
  if ! timeout --kill-after=10 "$limit" "$@"; then
    echo "!! failed or timed out: $*" >&2
    status=1
  fi
}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
"$PY" -c 'import torch; assert torch.cuda.is_available(), "no CUDA device visible to torch"; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())' || exit 1
# 1. the AWD step makes no host-device synchronisation (update alone; whole awd.train step, bf16 + channels_last)
step 45 "$PY" -m bench.sync_check
# 2. fp32 reference PGD-AT step vs ours (bf16 autocast + channels_last): images/s, ratio (target >= 2.5x)
step 140 "$PY" -m bench.adv_step --model preact_wrn --model-kw "$WRN" --batch 128 --steps 10 --bf16 --channels-last
# 3. AWD overhead on WRN-28-10, batch 128 (target <= 1.01x)
step 90 "$PY" -m bench.awd_overhead --model preact_wrn --model-kw "$WRN" --batch 128 --steps 20 --target 1.01
# 4. would torch.compile pay for the fast path? (compile time, speed-up, break-even in epochs)
step 150 "$PY" -m bench.compile_probe --model preact_wrn --model-kw "$WRN" --batch 128 --steps 10 --bf16 --channels-last
# 5. configs/paper.yaml's bf16 + non-deterministic kernels vs the paper's fp32 + deterministic (its one switch):
#    a short PGD-7 run, time per step and the weight drift after 20 steps from the same start
step 120 "$PY" -m bench.precision --model preact_wrn --model-kw "$WRN" --batch 128 --steps 10 --rounds 3 --drift-steps 20
exit $status
# CPU dry runs of the same code paths (no GPU needed), with `export BENCH_WAIT_S=0 BENCH_MD=/tmp/dry.md` so they
# neither wait for a quiet machine nor write into results/bench.md:
#   .venv/bin/python -m bench.sync_check --device cpu --batch 4
#   .venv/bin/python -m bench.adv_step --model preact_wrn --model-kw '{"depth": 10, "width": 2}' --batch 4 --steps 2 --bf16 --channels-last
#   .venv/bin/python -m bench.awd_overhead --model preact_wrn --model-kw '{"depth": 10, "width": 2}' --batch 4 --steps 2
#   .venv/bin/python -m bench.compile_probe --model tiny --batch 4 --size 8 --steps 2 --bf16 --channels-last
#   .venv/bin/python -m bench.precision --model tiny --batch 4 --size 8 --steps 2 --rounds 1 --drift-steps 3 --device cpu
