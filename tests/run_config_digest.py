"""Per-suite digests of `independent_runs` (suite, study, dataset, label, config of every run of a built-in
method; a plugin's runs may be added beside them without touching the fixture) of a params file.

`python -m tests.run_config_digest` rewrites tests/fixtures/run_configs.json: do it only when a params file or a
suite's runs change on purpose (the fixture pins them across refactors of pipeline/params.py and suites.py).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "run_configs.json"
FILES = ("params.yaml", "configs/paper.yaml")


def digests(path) -> dict:
    from pipeline.params import METHODS, load_params
    from pipeline.suites import independent_runs

    per: dict[str, list] = {}
    for s in independent_runs(load_params(path)):
        if s.config["wd_method"] not in METHODS:
            continue
        per.setdefault(s.suite, []).append(dict(suite=s.suite, study=s.study, dataset=s.dataset, label=s.label,
                                                config=s.config))
    return {suite: {"runs": len(v), "sha256": hashlib.sha256(
        json.dumps(v, sort_keys=True, separators=(",", ":")).encode()).hexdigest()} for suite, v in per.items()}


if __name__ == "__main__":
    fixture = {f: digests(ROOT / f) for f in FILES}
    FIXTURE.write_text(json.dumps(fixture, indent=1) + "\n")
    print(f"wrote {FIXTURE}")
