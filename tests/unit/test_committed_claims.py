"""Every verdict of the committed report, recomputed from results/metrics.json's per-seed values alone: a small
independent implementation of the stated rule (scipy's t test, Holm written out here), not a call into the engine."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import yaml
from scipy import stats as sps

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "results"
ALPHA, CEILING = 0.05, 99.0


def rows() -> list[tuple[str, str, dict]]:
    m = json.loads((RESULTS / "metrics.json").read_text(encoding="utf-8"))
    return [(cid, ds, c) for cid, by_ds in sorted(m.get("claims", {}).items()) for ds, c in sorted(by_ds.items())]


def differences(c: dict) -> list[float]:
    a, b = c["per_seed"]["a"], c["per_seed"]["b"]
    if not b:
        return [a[k] for k in sorted(a) if a[k] is not None]
    return [a[k] - b[k] for k in sorted(set(a) & set(b)) if a[k] is not None and b[k] is not None]


def p_value(d: list[float], null: float) -> float:
    mean = sum(d) / len(d)
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (len(d) - 1))
    if sd < 1e-9 * max(1.0, abs(mean)):  # identical differences (up to the 6 digits metrics.json keeps)
        return 1.0 if math.isclose(mean, null, abs_tol=1e-9) else 0.0
    return float(sps.ttest_1samp(d, null).pvalue)


def expected_verdicts(entries) -> dict:
    out, family = {}, []
    for cid, ds, c in entries:
        d = differences(c)
        if c.get("reason") and "p_value" not in c and len(d) >= 2 and not (c.get("ceiling_min") or 0) >= CEILING:
            out[(cid, ds)] = "not testable here"  # the builder's reason: the runs it needs are absent
            continue
        if len(d) < 2:
            out[(cid, ds)] = "not testable here"
            continue
        if c.get("zero_fails") and all(x == 0 for x in d):
            out[(cid, ds)] = "does not hold"
            continue
        p = p_value(d, c["margin"])
        if (c.get("ceiling_min") or 0) >= CEILING and p >= ALPHA:
            out[(cid, ds)] = "not testable here"
            continue
        family.append(((cid, ds), p, sum(d) / len(d) - c["margin"], c["claimed"]))
    running, m = 0.0, len(family)
    for k, (key, p, effect, claimed) in enumerate(sorted(family, key=lambda f: f[1]), start=1):
        running = max(running, min(1.0, (m - k + 1) * p))
        if running < ALPHA:
            out[key] = "holds" if (effect > 0) == (claimed == "above") else "does not hold"
        else:
            out[key] = "inconclusive"
    return out, m


@pytest.mark.skipif(not (RESULTS / "metrics.json").exists(), reason="no committed results")
def test_every_committed_verdict_follows_from_the_per_seed_values():
    entries = rows()
    assert entries, "results/metrics.json has no claims"
    expected, family_size = expected_verdicts(entries)
    got = {(cid, ds): c["verdict"] for cid, ds, c in entries}
    assert got == expected
    m = json.loads((RESULTS / "metrics.json").read_text(encoding="utf-8"))
    assert m["claims_family"]["size"] == family_size and m["claims_family"]["adjustment"] == "holm"
    for cid, ds, c in entries:  # a verdict of 'not testable here' always says why
        assert (c["verdict"] == "not testable here") <= bool(c.get("reason")), (cid, ds)


@pytest.mark.skipif(not (RESULTS / "README.md").exists(), reason="no committed results")
def test_the_committed_report_opens_with_the_scale_line_and_shows_the_same_verdicts():
    text = (RESULTS / "README.md").read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines[2].startswith("**Scale:**")
    attacked = yaml.safe_load((ROOT / "params.yaml").read_text())["autoattack"].get("n_test")
    assert attacked is None or f"AutoAttack on the first {attacked} test images" in lines[2], lines[2]
    assert text.index("**Scale:**") < text.index("## The paper's claims in this run") < text.index("### F1")
    table = [ln for ln in lines[lines.index("## The paper's claims in this run"):] if ln.startswith("| ")]
    header = table[0]
    for column in ("estimate [interval]", "| n |", "| test |", "| rule |", "| verdict |"):
        assert column in header
    body = table[1:len(rows()) + 1]
    shown = sorted(re.search(r"\| \*\*([a-z ]+)\*\*", ln).group(1) for ln in body)
    assert shown == sorted(c["verdict"] for _, _, c in rows())
    assert f"Family: {json.loads((RESULTS / 'metrics.json').read_text())['claims_family']['size']} of" in text
    head = json.loads((RESULTS / "headline.json").read_text(encoding="utf-8"))
    for cid, by_ds in head.get("claims", {}).items():
        for ds, c in by_ds.items():
            assert c["verdict"] == next(x["verdict"] for i, d, x in rows() if (i, d) == (cid, ds))
