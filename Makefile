# Two commands for a newcomer: `make repro` and `make test`.
PY := .venv/bin/python
STAMP := .venv/.installed

.PHONY: setup repro test test-fast dry-run slurm-start slurm-stop bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

# Runs the whole DAG on the embedded default (params.yaml); a second run is a no-op.
repro: $(STAMP)
	test -d .dvc || .venv/bin/dvc init -q $$(git rev-parse --is-inside-work-tree >/dev/null 2>&1 || echo --no-scm)
	.venv/bin/dvc repro

dry-run: $(STAMP)
	$(PY) -m pipeline.dry_run

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not e2e and not slurm"

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
