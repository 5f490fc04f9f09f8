"""The paper's claims, this run's evidence for each and a verdict by one pre-stated rule (claims_core.decide).

Every comparison of the paper that the configured suites can test has a row, whichever way it comes out: Table 2,
Fig. 1 / 7, Table 3, Table 4, label noise, learning-rate sensitivity, pruning, under-fitting. The builders live in
claims_natural, claims_adversarial and claims_search; this module orders them, decides the family and writes the
table.
"""

from __future__ import annotations

from pipeline.report import stats
from pipeline.report.claims_adversarial import table3_claims, table4_claims
from pipeline.report.claims_core import CEILING, Claim, decide
from pipeline.report.claims_natural import lr_claims, prune_claims, table2_claims
from pipeline.report.claims_search import grid_claims, noise_claims, underfit_claims
from pipeline.report.inputs import Inputs

__all__ = ["Claim", "all_claims", "decide", "family_note", "markdown", "RULE"]

BUILDERS = (grid_claims, table2_claims, table3_claims, table4_claims, noise_claims, lr_claims, prune_claims,
            underfit_claims)  # the paper's order: Fig. 1, Tables 2-4, Figs. 4-5, Table 5

RULE = (
    "Rule, fixed before the runs: every selection (best λ_wd, DoG, grid cell) is by validation accuracy, never "
    "the test set; each row compares per-seed values paired by seed. A row is *not testable here* when the runs it "
    "needs are absent, when fewer than 2 seeds pair up, or when both methods are at ≥ "
    f"{CEILING:g} % in every compared run and the unadjusted test finds no difference (ceiling). The other rows "
    "form the family: a two-sided t test of the per-seed differences against the claim's margin, Holm's step-down "
    "adjustment across the family (adjusted p-values), and each interval at its Holm level, 1 − 0.05/(m − k + 1) "
    "for the row ranked k of m by p (rows after Holm's first non-rejection take that step's level), so an interval "
    "excludes the margin exactly when Holm rejects. A claim *holds* when its interval lies wholly on the claimed "
    "side of the margin, *does not hold* when wholly on the other side, else *inconclusive*. Per-example tests "
    "(McNemar) carry only test-sample noise: supporting evidence, never a verdict."
)


def all_claims(inp: Inputs) -> list[Claim]:
    out: list[Claim] = []
    for build in BUILDERS:
        out += build(inp)
    decide(out)
    return out


def family(claims: list[Claim]) -> dict:
    members = [c for c in claims if c.p_value == c.p_value]  # NaN p: not in the family
    counts = {v: sum(c.verdict == v for c in claims) for v in (stats.HOLDS, stats.FAILS, stats.INCONCLUSIVE,
                                                               stats.NOT_TESTABLE)}
    return {"size": len(members), "adjustment": "holm", "alpha": stats.ALPHA, "rows": len(claims),
            **{k.replace(" ", "_"): n for k, n in counts.items()}}


def family_note(claims: list[Claim]) -> str:
    f = family(claims)
    return (f"Family: {f['size']} of {f['rows']} rows tested together, Holm-adjusted at α = {f['alpha']:.2f} "
            f"(p_holm and each interval's level in `metrics.json`, `claims.<claim>.<dataset>`); "
            f"{f['holds']} hold, {f['does_not_hold']} do not hold, {f['inconclusive']} inconclusive, "
            f"{f['not_testable_here']} not testable here.")


def _interval_text(c: Claim) -> tuple[str, str]:
    iv = c.interval
    if iv is None or iv.estimate != iv.estimate:
        return "—", "0"
    if iv.low == iv.low:
        level = f"{c.level:.1%}" if c.level == c.level else "95%, unadjusted"
        return f"{iv.estimate:+.3g} [{iv.low:+.3g}, {iv.high:+.3g}] ({level})", str(iv.n)
    return f"{iv.estimate:+.3g} (no interval)", str(iv.n)


def _test_text(c: Claim) -> str:
    if c.p_value == c.p_value:
        return f"seed-paired t vs {c.margin:g}; p = {c.p_value:.2g}, Holm p = {c.p_holm:.2g}"
    return "—"


def markdown(claims: list[Claim]) -> str:
    if not claims:
        return "_No claim has the runs it needs in this configuration._\n"
    lines = ["| claim | dataset (scale) | measure | estimate [interval] (level) | n | test | rule | verdict |",
             "|---|---|---|---|---:|---|---|---|"]
    for c in claims:
        est, n = _interval_text(c)
        v = f"**{c.verdict}**" + (f": {c.reason}" if c.reason else "")
        if c.notes:
            v += " · " + " · ".join(c.notes)
        cells = [c.claim, f"{c.dataset} ({c.scale})" if c.scale else c.dataset, c.measure, est, n, _test_text(c),
                 c.rule, v]
        lines.append("| " + " | ".join(x.replace("|", "\\|").replace("\n", " ") for x in cells) + " |")
    return "\n".join(lines) + "\n"
