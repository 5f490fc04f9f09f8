"""The paper's reported numbers, transcribed as data (Ghiasi, Shafahi, Ardekani: *Adaptive Weight Decay*).

Accuracies are in percent, as printed. `method` uses the run-record vocabulary: `fixed` (non-adaptive λ_wd),
`awd` (adaptive, DoG), `adadecay` (Nakamura & Hong), `other` (external baselines). Nothing here is computed:
every value is copied from the paper so a reader can check it against /work/shared/paper.
"""

from __future__ import annotations

import math
import typing as tp

CIFAR10 = "cifar10"
CIFAR100 = "cifar100"
Row = dict[str, tp.Any]  # one row of a paper table: its columns by name

# Table 2: WRN28-10, mean of 3 runs; the weight-decay column is 0.0005·‖W‖²/2 for both rows.
TABLE2_WD = 5e-4
T2: list[Row] = [
    {"dataset": CIFAR100, "method": "fixed", "lr": 0.1, "value": 5e-4, "val_acc": 80.97, "test_acc": 80.53,
     "weight_norm": 24.3, "wd_term": 0.15, "xent": 0.00, "total_loss": 0.15},
    {"dataset": CIFAR100, "method": "awd", "lr": 0.1, "value": 0.016, "val_acc": 80.91, "test_acc": 80.75,
     "weight_norm": 18.3, "wd_term": 0.08, "xent": 0.01, "total_loss": 0.09},
    {"dataset": CIFAR10, "method": "fixed", "lr": 0.1, "value": 5e-4, "val_acc": 96.83, "test_acc": 96.31,
     "weight_norm": 17.2, "wd_term": 0.07, "xent": 0.00, "total_loss": 0.08},
    {"dataset": CIFAR10, "method": "awd", "lr": 0.1, "value": 0.018, "val_acc": 96.76, "test_acc": 96.00,
     "weight_norm": 8.4, "wd_term": 0.02, "xent": 0.02, "total_loss": 0.03},
]

# Table 3: WRN28-10, PGD-7 adversarial training, SGD; best hyper-parameter of each method per dataset.
T3: list[Row] = [
    {"dataset": CIFAR10, "method": "fixed", "value": 0.00089, "optimizer": "sgd",
     "weight_norm": 35.58, "nat_acc": 84.31, "autoattack": 45.19},
    {"dataset": CIFAR10, "method": "awd", "value": 0.022, "optimizer": "sgd",
     "weight_norm": 7.11, "nat_acc": 87.08, "autoattack": 50.03},
    {"dataset": CIFAR100, "method": "fixed", "value": 0.0005, "optimizer": "sgd",
     "weight_norm": 51.32, "nat_acc": 60.15, "autoattack": 22.53},
    {"dataset": CIFAR100, "method": "awd", "value": 0.022, "optimizer": "sgd",
     "weight_norm": 13.41, "nat_acc": 61.39, "autoattack": 27.15},
]

# Table 4: CIFAR-100 only, WRN28-10. `retuned` marks the paper's asterisk (another round of hyper-parameter search).
T4: list[Row] = [
    {"dataset": CIFAR100, "name": "λ_wd=0.0005", "method": "fixed", "value": 0.0005, "optimizer": "sgd",
     "aug": "P&C", "epochs": 200, "trades": False, "swa": False, "retuned": False, "nat_acc": 60.15, "autoattack": 22.53},
    {"dataset": CIFAR100, "name": "λ_wd=0.0005 ASAM", "method": "fixed", "value": 0.0005, "optimizer": "asam",
     "aug": "P&C", "epochs": 100, "trades": False, "swa": False, "retuned": False, "nat_acc": 58.09, "autoattack": 22.55},
    {"dataset": CIFAR100, "name": "λ_wd=0.00281* ASAM", "method": "fixed", "value": 0.00281, "optimizer": "asam",
     "aug": "P&C", "epochs": 100, "trades": False, "swa": False, "retuned": True, "nat_acc": 62.24, "autoattack": 26.38},
    {"dataset": CIFAR100, "name": "λ_AdaDecay=0.002*", "method": "adadecay", "value": 0.002, "optimizer": "sgd",
     "aug": "P&C", "epochs": 200, "trades": False, "swa": False, "retuned": True, "nat_acc": 57.17, "autoattack": 24.18},
    {"dataset": CIFAR100, "name": "DoG=0.022", "method": "awd", "value": 0.022, "optimizer": "sgd",
     "aug": "P&C", "epochs": 200, "trades": False, "swa": False, "retuned": False, "nat_acc": 61.39, "autoattack": 27.15},
    {"dataset": CIFAR100, "name": "DoG=0.022 ASAM", "method": "awd", "value": 0.022, "optimizer": "asam",
     "aug": "P&C", "epochs": 100, "trades": False, "swa": False, "retuned": False, "nat_acc": 63.93, "autoattack": 29.54},
    {"dataset": CIFAR100, "name": "Rebuffi et al. 2021 (CutMix)", "method": "other", "value": None,
     "optimizer": "sgd", "aug": "CutMix", "epochs": 400, "trades": True, "swa": True, "retuned": False,
     "nat_acc": 62.97, "autoattack": 29.80},
    {"dataset": CIFAR100, "name": "Rebuffi et al. 2021 (P&C)", "method": "other", "value": None,
     "optimizer": "sgd", "aug": "P&C", "epochs": 400, "trades": True, "swa": True, "retuned": False,
     "nat_acc": 59.06, "autoattack": 28.75},
]

# Table 5: CIFAR-100 only, ResNet50 + ASAM.
T5: list[Row] = [
    {"dataset": CIFAR100, "method": "awd", "value": 0.022, "lr": 0.01,
     "weight_norm": 14.39, "test_acc": 83.21, "train_acc": 95.29},
    {"dataset": CIFAR100, "method": "fixed", "value": 0.005, "lr": 0.01,
     "weight_norm": 17.86, "test_acc": 83.23, "train_acc": 98.57},
]

T6_AMOUNTS = (0.0, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # 0.0 is the unpruned ("Nat") column

# Table 6 cells: (mean, std) in the order of T6_AMOUNTS, keyed by (dataset, lr, method).
_T6_CELLS = {
    (CIFAR10, 1.0, "awd"): [(93.1, 1.3), (93.1, 1.3), (93.1, 1.3), (93.1, 1.3), (93.1, 1.3), (93.1, 1.3), (93.2, 1.3)],
    (CIFAR10, 1.0, "fixed"): [(88.1, 3.0), (88.0, 3.1), (88.0, 3.1), (88.0, 3.1), (88.0, 3.1), (88.0, 3.1), (88.0, 3.1)],
    (CIFAR10, 0.1, "awd"): [(96.0, 0.1), (91.6, 8.7), (91.7, 8.6), (91.7, 8.6), (91.5, 9.0), (90.5, 10.5), (83.7, 17.9)],
    (CIFAR10, 0.1, "fixed"): [(96.3, 0.1), (93.6, 5.3), (93.6, 5.3), (93.6, 5.3), (93.4, 5.5), (92.6, 6.2), (84.3, 13.6)],
    (CIFAR10, 0.01, "awd"): [(95.9, 0.1), (95.9, 0.1), (95.9, 0.1), (95.9, 0.1), (95.9, 0.1), (95.8, 0.1), (91.4, 1.4)],
    (CIFAR10, 0.01, "fixed"): [(95.0, 0.1), (95.0, 0.1), (95.0, 0.1), (94.5, 0.3), (75.2, 12.9), (19.3, 12.6), (12.2, 5.0)],
    (CIFAR10, 0.001, "awd"): [(87.9, 0.2), (82.1, 1.9), (75.2, 4.2), (64.6, 7.2), (38.3, 8.4), (18.8, 4.3), (13.4, 1.9)],
    (CIFAR10, 0.001, "fixed"): [(87.9, 0.4), (80.5, 2.9), (73.8, 4.8), (56.4, 8.1), (46.8, 16.9), (21.0, 9.9), (12.2, 2.5)],
    (CIFAR100, 1.0, "awd"): [(77.6, 1.3), (77.6, 1.3), (77.6, 1.3), (77.6, 1.3), (77.6, 1.3), (77.5, 1.2), (75.3, 1.3)],
    (CIFAR100, 1.0, "fixed"): [(7.9, 1.4), (2.6, 1.8), (2.6, 1.8), (2.6, 1.8), (2.6, 1.8), (2.6, 1.8), (2.6, 1.8)],
    (CIFAR100, 0.1, "awd"): [(80.7, 0.3), (80.7, 0.3), (80.7, 0.3), (80.5, 0.2), (79.6, 0.4), (74.5, 0.9), (29.2, 3.6)],
    (CIFAR100, 0.1, "fixed"): [(80.5, 0.2), (80.4, 0.1), (80.2, 0.2), (79.9, 0.2), (78.4, 0.2), (71.3, 1.2), (23.9, 6.7)],
    (CIFAR100, 0.01, "awd"): [(79.5, 0.4), (79.5, 0.3), (79.4, 0.3), (79.3, 0.4), (78.7, 0.5), (75.0, 0.8), (28.9, 4.4)],
    (CIFAR100, 0.01, "fixed"): [(76.9, 0.1), (74.4, 3.6), (74.1, 3.8), (73.5, 4.2), (67.2, 4.1), (17.5, 6.9), (1.5, 0.4)],
    (CIFAR100, 0.001, "awd"): [(63.8, 0.3), (55.3, 1.8), (47.4, 2.2), (32.0, 2.1), (12.9, 2.9), (2.8, 1.4), (1.1, 0.2)],
    (CIFAR100, 0.001, "fixed"): [(62.1, 0.2), (52.7, 2.0), (41.7, 2.7), (25.6, 2.4), (11.0, 4.4), (3.1, 0.9), (1.2, 0.1)],
}
T6_HYPER = {(CIFAR10, "awd"): 0.018, (CIFAR100, "awd"): 0.016, (CIFAR10, "fixed"): 5e-4, (CIFAR100, "fixed"): 5e-4}
T6: list[Row] = [
    {"dataset": ds, "lr": lr, "method": m, "value": T6_HYPER[(ds, m)], "amount": amount, "acc": mean, "acc_std": std}
    for (ds, lr, m), cells in _T6_CELLS.items()
    for amount, (mean, std) in zip(T6_AMOUNTS, cells)
]

# Figure 12 (a table in the paper). It does not name its dataset; its lr=0.1 entries (18.3, 24.06) match the
# CIFAR-100 ‖W‖₂ of Table 2 (18.3, 24.3), so it is filed under CIFAR-100.
F12: list[Row] = [
    {"dataset": CIFAR100, "lr": lr, "method": m, "value": v, "weight_norm": n}
    for m, v, norms in (("awd", 0.016, (92.53, 16.22, 18.3, 26.65)), ("fixed", 5e-4, (116.98, 27.01, 24.06, 12.16)))
    for lr, n in zip((0.001, 0.01, 0.1, 1.0), norms)
]

# Scalar facts stated in the text and captions.
FACTS: dict[str, tp.Any] = {
    # Fig. 2 / Sec. 2.1: CIFAR-100, WRN28-10, lr=0.1, λ_wd=0.0005; running-mean DoG at the loss plateau.
    "fig2_dataset": CIFAR100,
    "fig2_dog": 0.016,
    "fig2_plateau_epoch": 350,
    # Fig. 3 / Sec. 4.1: AutoAttack improvement of AWD over fixed λ_wd (absolute points, relative %).
    # The text's CIFAR-100 margin (5.08) differs from Table 3's own difference (27.15 - 22.53 = 4.62).
    "fig3_margin_cifar10": 4.84,
    "fig3_margin_cifar100": 5.08,
    "fig3_relative_cifar10": 10.71,
    "fig3_relative_cifar100": 20.51,
    # Appendix A.1: the adversarial search grids.
    "adv_wd_grid": {"start": 5e-5, "stop": 5e-3, "num": 17},
    "adv_dog_grid": {"start": 0.02, "stop": 0.04, "num": 9},
    # Sec. 4.1: RobustBench state of the art for CIFAR-100 WRN28-10 without extra data, and AWD+ASAM.
    "sota_cifar100_aa": 29.80,
    "awd_asam_cifar100_aa": 29.54,
    # Fig. 4 / Sec. 4.2: at 20% noise, DoG=0.028 vs λ_wd=0.0089 (both ~70% clean) -> AWD ~4 points higher.
    "fig4_clean_acc_approx": 70.0,
    "fig4_noise20_gain": 4.0,
    "noise20_gain_cifar10": 2.0,
    # Sec. 4.4 / Table 5 and Fig. 10: AWD leaves 3.28% more of the training set unfit; 4.71% unfit in total.
    "t5_unfit_gap": 3.28,
    "fig10_unfit_fraction": 4.71,
    # Appendix E.4 / Fig. 11: accuracy drop of fixed λ_wd vs AWD at lr=1.0.
    "fig11_lr1_drop_cifar100": 69.67,
    "fig11_lr1_drop_cifar10": 5.0,
    # Fig. 1 / Fig. 7 (CIFAR-10 WRN28-10): the grid's best cell vs where alternating 1D searches get stuck.
    "fig1_best_lr": 0.1,
    "fig1_best_wd": 5e-4,
    "fig7_1d_search_lr": 0.01,
    "fig7_1d_search_wd": 5e-3,
    # Sec. 4.3 / Fig. 5 caption: trials per setting (the text says 5, the caption 4, Fig. 11 says 5).
    "fig5_trials": 4,
}

# Tables the paper reports for one dataset only; any other dataset is shown against this reference.
DEFAULT_REFERENCE = CIFAR100


def reference_dataset(dataset: str, available: set[str] | frozenset[str]) -> tuple[str, bool]:
    """The paper dataset to show next to `dataset`, and whether the two numbers are comparable."""
    if dataset in available:
        return dataset, True
    return DEFAULT_REFERENCE, False


def datasets_of(rows: list[dict]) -> frozenset[str]:
    return frozenset(r["dataset"] for r in rows)


def _close(a, b) -> bool:
    return a is not None and b is not None and math.isclose(float(a), float(b), rel_tol=1e-6)


def lookup(rows: list[dict], **match) -> dict | None:
    """The one row whose fields equal `match` (floats compared with a relative tolerance), else None."""
    for r in rows:
        if all(_close(r.get(k), v) if isinstance(v, float) else r.get(k) == v for k, v in match.items()):
            return r
    return None


def closest_by_value(rows: list[dict], value: float | None, **match) -> dict | None:
    """Among rows matching `match`, the one whose hyper-parameter is nearest `value` in log scale."""
    cands = [r for r in rows if all(r.get(k) == v for k, v in match.items()) and r.get("value")]
    if not cands:
        return None
    if value is None or value <= 0:
        return cands[0]
    return min(cands, key=lambda r: (abs(math.log(r["value"]) - math.log(value)), r["value"]))
