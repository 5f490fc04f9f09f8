"""results/metrics.json and results/headline.json: keys a DVC user can sort and filter.

DVC joins nested keys with '.' (`dvc metrics diff`, `dvc exp show` columns, `--sort-by`, `--keep`), so every level
of the nested dict is ASCII `snake_case` and a joined key matches `^[a-z0-9_.]+$`. A level is a pure function of
the report's label (`level_key`): `lr=0.01,wd=5e-05` becomes two levels `lr_0p01` / `wd_0p00005` (a number in plain
decimal, `p` for its point, `m` for a minus), `val PGD-20 (ours)` becomes `by_val`, `awd − fixed` `awd_minus_fixed`,
`λ_wd=0.015 SGD` `wd_0p015_sgd`. The function also accepts the keys of the earlier format (`lr_1e-2`,
`λ_wd_15e-3 SGD`) and gives the same level, and it is idempotent, so results written before the change convert
without the artifacts that produced them: `python -m pipeline.report.metric_keys results/metrics.json`.

headline.json is the part `dvc metrics show|diff` and `dvc exp show` print (the stage's `metrics:`): the paper's
claims (verdict and effect estimate per dataset) and the failed/diverged counters, at most HEADLINE_MAX_KEYS keys,
each also a key of metrics.json with the same value.
"""

from __future__ import annotations

import argparse
import json
import re
import unicodedata
from decimal import Decimal, InvalidOperation
from pathlib import Path

from jobs.atomic import atomic_write_json
from pipeline.report.tables import SELECTIONS

KEY = re.compile(r"^[a-z0-9_.]+$")  # a joined DVC key
LEVEL = re.compile(r"^[a-z0-9_]+$")
HEADLINE_MAX_KEYS = 30
COUNTERS = ("runs_diverged", "units_failed")
CLAIM_ORDER = ("smaller_norm", "similar_accuracy", "smaller_total_loss", "higher_autoattack", "higher_clean_accuracy",
               "smaller_norm_adversarial", "label_noise_20", "lr_sensitivity", "pruning", "fits_fewer",
               "diagonal_optimum", "one_d_search_misses", "label_noise")  # the claims table's, headline first
CLAIM_LEAVES = ("verdict", "estimate")
NOT_SHOWN = "claims_not_in_headline"
NUMERIC_KEY_NAME = {"f12": "lr"}  # what a bare-number key means, by top-level section

# Labels whose words matter less than what they select (T3's selection rule)
LABELS = {label: f"by_{sel}" for sel, (label, _) in SELECTIONS.items()}
# Before any other rule: the symbols of the report's labels that have a word
SYMBOLS = (("−", " minus "), ("λ_wd", "wd"), ("λ", "lambda"), ("‖W‖₂", "weight_norm"))
# A number standing alone (not part of a word such as `seed0`, `wrn28`): `0.01`, `5e-05`, `-0.2`, the earlier
# format's `1e-2` after a `_`
_NUMBER = re.compile(r"(?<![A-Za-z0-9.+-])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?![A-Za-z0-9.])")
_NAMED_VALUE = re.compile(r"^([^=,]+)=([^=,]+)$")


class MetricsKeyError(ValueError):
    pass


def number_key(text: str) -> str:
    """0.01 -> 0p01, 5e-05 -> 0p00005, 1e-2 -> 0p01, -0.2 -> m0p2, 100 -> 100: the same value, ASCII letters and
    digits only (float(key.replace('p', '.').replace('m', '-')) reads it back)."""
    try:
        d = Decimal(text)
    except InvalidOperation:
        return text
    if not d.is_finite():
        return text
    if d == 0:
        return "0"
    plain = format(d.normalize(), "f")
    return plain.replace("-", "m").replace(".", "p")


def level_key(label: str, section: str = "") -> str:
    """One level of a metrics key from a report label: ASCII `snake_case`, numbers as `number_key` writes them."""
    text = str(label)
    if text in LABELS:
        return LABELS[text]
    if _NUMBER.fullmatch(text.strip()):
        return f"{NUMERIC_KEY_NAME.get(section, 'v')}_{number_key(text.strip())}"
    for symbol, word in SYMBOLS:
        text = text.replace(symbol, word)
    text = _NUMBER.sub(lambda m: number_key(m.group(0)), text)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    key = re.sub(r"[^a-z0-9]+", "_", text).strip("_")
    if not key:
        raise MetricsKeyError(f"metrics: label {label!r} has no ASCII letter or digit to make a key of; use one "
                              "that has (study, method and run names become metrics keys)")
    return key


def _levels(label: str, section: str) -> list[str]:
    """`lr=0.01,wd=5e-05` is one level per `name=value` part, so `dvc exp show` can keep or sort by one axis."""
    parts = label.split(",")
    if len(parts) > 1 and all(_NAMED_VALUE.match(p) for p in parts):
        return [level_key(p.strip(), section) for p in parts]
    return [level_key(label, section)]


def _leaf_items(key: str, value):
    """DVC shows and compares numbers and strings only (it drops lists): an interval is two keys."""
    if key == "ci" and isinstance(value, list | tuple) and len(value) == 2:
        return [("ci_low", value[0]), ("ci_high", value[1])]
    return [(key, value)]


def dvc_metrics(m: dict, section: str = "", _path: tuple[str, ...] = ()) -> dict:
    """The report's nested metrics with every key made a DVC key. Two labels that would become the same key are an
    error naming both, never a silent merge or overwrite."""
    out: dict = {}
    made_by: dict[tuple[str, ...], str] = {}  # key path -> the label (part) it came from
    for raw, value in m.items():
        raw = str(raw)
        sect = section or level_key(raw)
        levels = _levels(raw, sect)
        parts = [p.strip() for p in raw.split(",")] if len(levels) > 1 else [raw]
        node = out
        for i, level in enumerate(levels[:-1]):
            _made_by(made_by, tuple(levels[:i + 1]), parts[i], _path)
            node = node.setdefault(level, {})
            if not isinstance(node, dict):
                raise MetricsKeyError(f"metrics: {'.'.join(_path + tuple(levels[:i + 1]))} is both a value and a "
                                      f"group (from {raw!r}); rename the label")
        items = [(levels[-1], value)] if isinstance(value, dict) else _leaf_items(levels[-1], value)
        for last, v in items:
            path = tuple(levels[:-1]) + (last,)
            _made_by(made_by, path, parts[-1], _path)
            if last in node and not (isinstance(v, dict) and isinstance(node[last], dict)):
                raise MetricsKeyError(f"metrics: two values for {'.'.join(_path + path)} (from {raw!r}); rename "
                                      "the label")
            if isinstance(v, dict):
                node.setdefault(last, {}).update(dvc_metrics(v, sect, _path + path))
            else:
                node[last] = v
    return out


def _made_by(made_by: dict, path: tuple[str, ...], label: str, prefix: tuple[str, ...]) -> None:
    seen = made_by.setdefault(path, label)
    if seen != label:
        raise MetricsKeyError(f"metrics: labels {seen!r} and {label!r} both become the key "
                              f"{'.'.join(prefix + path)}; rename one of them (only ASCII letters and digits keep "
                              "labels apart in a key)")


def bad_keys(d: dict, prefix: str = "") -> list[str]:
    """Every joined key of `d` that is not a DVC key a user can type: empty when all are."""
    bad = []
    for k, v in d.items():
        joined = f"{prefix}.{k}" if prefix else str(k)
        if not LEVEL.fullmatch(str(k)):
            bad.append(joined)
        if isinstance(v, dict):
            bad += bad_keys(v, joined)
    return bad


def _claim_rank(cid: str) -> tuple:
    return (CLAIM_ORDER.index(cid), "") if cid in CLAIM_ORDER else (len(CLAIM_ORDER), cid)


def headline(full: dict) -> dict:
    """The paper's claims (against fixed λ_wd; the other baselines' are in metrics.json) in the paper's order, each
    dataset's verdict and estimate, and the counters. Over HEADLINE_MAX_KEYS keys, the last claims are left out and
    NOT_SHOWN says how many (claim × dataset)."""
    out = {k: full[k] for k in COUNTERS if k in full}
    claims = full.get("claims", {})
    entries = [(cid, ds) for cid in sorted((c for c in claims if "_vs_" not in c), key=_claim_rank)
               for ds in sorted(claims[cid])]
    room = HEADLINE_MAX_KEYS - len(out)
    if len(entries) * len(CLAIM_LEAVES) > room:
        room -= 1  # NOT_SHOWN
    shown = entries[:room // len(CLAIM_LEAVES)]
    for cid, ds in shown:
        leaves = {k: claims[cid][ds][k] for k in CLAIM_LEAVES if k in claims[cid][ds]}
        out.setdefault("claims", {}).setdefault(cid, {})[ds] = leaves
    if len(shown) < len(entries):
        out[NOT_SHOWN] = len(entries) - len(shown)
    return out


def count_keys(d: dict) -> int:
    return sum(count_keys(v) if isinstance(v, dict) else 1 for v in d.values())


def write(out: Path, written: dict) -> None:
    """metrics.json (every number) and headline.json beside it; refuses a key DVC users could not type."""
    bad = bad_keys(written)
    if bad:
        raise MetricsKeyError(f"metrics: keys not matching {KEY.pattern}: {bad[:5]}")
    atomic_write_json(Path(out) / "metrics.json", written, finite=True)
    atomic_write_json(Path(out) / "headline.json", headline(written), finite=True)


def main(argv: list[str] | None = None) -> None:
    """Rewrite an existing metrics.json (any earlier key format) with today's keys, and its headline.json."""
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("metrics", type=Path, help="results/metrics.json")
    a = ap.parse_args(argv)
    written = dvc_metrics(json.loads(a.metrics.read_text(encoding="utf-8")))
    write(a.metrics.parent, written)
    print(f"metric_keys: wrote {a.metrics} and {a.metrics.parent / 'headline.json'} "
          f"({count_keys(headline(written))} headline keys)")


if __name__ == "__main__":
    main()
