# Two commands for a newcomer: `make repro` and `make test`.
PY := .venv/bin/python
STAMP := .venv/.installed

.PHONY: setup repro test test-fast dry-run slurm-start slurm-stop bench rehearse clean

# Re-installs when the package list changes (a new package needs the editable finder refreshed).
$(STAMP): pyproject.toml $(wildcard */__init__.py)
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

# Runs the whole DAG on the embedded default (params.yaml); a second run is a no-op.
repro: $(STAMP)
	PATH="$(CURDIR)/.venv/bin:$$PATH" dvc repro

dry-run: $(STAMP)
	$(PY) -m pipeline.dry_run --list

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not e2e and not slurm"

# Dress rehearsal of configs/paper.yaml through a 64-GPU local SLURM cluster with stand-in units (root; ~15 min).
# Options: make rehearse REHEARSE="--params configs/paper.yaml --minutes-per-gpu-hour 0.5 --gpus 64 --faults-seed 0"
rehearse: $(STAMP)
	$(PY) -m pipeline.rehearsal $(REHEARSE)

slurm-start:
	scripts/local-slurm.sh start

slurm-stop:
	scripts/local-slurm.sh stop

bench: $(STAMP)
	$(PY) bench/awd_overhead.py
	$(PY) bench/adv_step.py
	$(PY) bench/orchestration.py

clean:
	rm -rf runs artifacts
