"""The report's "Departures from the paper" section and its scale line, generated from the params file the results
were computed with (so they are right for params.yaml and configs/paper.yaml alike).

Each departure is a params key whose value differs from the paper's recipe (Appendix A of the paper), with why this
project sets it so and what it may move. Keys a study overrides in its own `train:` block count too.
"""

from __future__ import annotations

import math
from pathlib import Path

from ruamel.yaml import YAML

PAPER_EPS = 8 / 255
PAPER_MODELS = ("preact_wrn", "resnet32", "resnet34", "resnet50")  # WRN-28-10; ResNets in Figs. 1c, 4, 9
# awd.train_config.TrainConfig's defaults for the keys read here (a params file that leaves one out gets these);
# written out rather than imported so the report stage does not load the training library
DEFAULTS = {"augment": True, "bf16": False, "deterministic": True}
PAPER_DATASETS = ("cifar10", "cifar100")
PAPER_EPOCHS = 200
PAPER_TRAIN_STEPS = 7


def load_params(path: Path) -> dict:
    with open(path) as f:
        return YAML(typ="safe").load(f) or {}


def _values(params: dict, key: str) -> list:
    """Every value `train.<key>` takes: the global one and each study's override, distinct, in order."""
    out = [(params.get("train") or {}).get(key, DEFAULTS.get(key))]
    for studies in (params.get("suites") or {}).values():
        for s in studies or []:
            if isinstance(s, dict) and key in (s.get("train") or {}):
                out.append(s["train"][key])
    seen: list = []
    for v in out:
        if v is not None and v not in seen:
            seen.append(v)
    return seen


def _datasets(params: dict) -> list[str]:
    return sorted({str(s["dataset"]) for studies in (params.get("suites") or {}).values() for s in studies or []
                   if isinstance(s, dict) and "dataset" in s})


def _adversarial_epochs(params: dict) -> list:
    """The epochs of the adversarial and variants studies (their own train: block, else the global one)."""
    default = (params.get("train") or {}).get("epochs")
    suites = params.get("suites") or {}
    return [e for name in ("adversarial", "variants") for s in suites.get(name) or [] if isinstance(s, dict)
            if (e := (s.get("train") or {}).get("epochs", default)) is not None]


def departures(params: dict) -> list[tuple[str, str, str, str]]:
    """(setting, ours vs the paper's, why, expected effect) for every departure of `params` from the paper."""
    out = []
    datasets = _datasets(params)
    if any(d not in PAPER_DATASETS for d in datasets):
        out.append(("datasets", f"{', '.join(datasets)} (paper: CIFAR-10, CIFAR-100)",
                    "a run that fits on a laptop's CPU cores",
                    "absolute numbers are not comparable with the paper's; verdicts are about this scale"))
    models = _values(params, "model")
    if any(m not in PAPER_MODELS for m in models):
        out.append(("train.model", f"{', '.join(map(str, models))} (paper: pre-activation WRN-28-10; ResNet-32/50/34 "
                    "in some figures)", "cost", "capacity differs: fitting, ‖W‖₂ and the DoG scale differ"))
    epochs = _values(params, "epochs")
    if any(e != PAPER_EPOCHS for e in epochs):
        out.append(("train.epochs", f"{', '.join(map(str, epochs))} (paper: 200; 100 for ASAM)", "cost",
                    "shorter schedules reach the loss floor earlier; the DoG plateau moves with them"))
    if any(v is True for v in _values(params, "bf16")):
        out.append(("train.bf16", "true: bf16 autocast (paper: fp32)", "GPU throughput on 200-epoch WRN-28-10 runs",
                    "accuracies may move by a fraction of a point and PGD-7 training examples are computed in "
                    "bf16; set train.bf16: false for the paper's precision"))
    if any(v is False for v in _values(params, "deterministic")):
        out.append(("train.deterministic", "false: non-deterministic cuDNN kernels, PGD example generation included",
                    "speed", "a rerun of the same key is not bitwise identical; seed-to-seed spread grows slightly"))
    aug = _values(params, "augment")
    if any(v is True for v in aug) and any(d in PAPER_DATASETS for d in datasets):
        out.append(("train.augment", "true: pad-and-crop plus random horizontal flips on CIFAR (paper: pad-and-crop, "
                    "P&C)", "the common CIFAR recipe", "flips regularise: accuracy up, the λ_wd/DoG optimum may "
                    "shift slightly"))
    if any(v is False for v in aug):
        out.append(("train.augment", "false: no augmentation (paper: pad-and-crop)",
                    "1-px crops of 8×8 digits blur what λ does at this scale" if "digits" in datasets else
                    "as set in the params", "more over-fitting: the test accuracies and the best λ_wd differ"))
    suites = params.get("suites") or {}
    if suites.get("natural"):
        plateaus = sorted({f"window {s['plateau'].get('window')}, rel_tol {s['plateau'].get('rel_tol')}"
                           for s in suites["natural"] if isinstance(s, dict) and s.get("plateau")})
        out.append(("suites.natural", "one DoG per study, the mean of the fixed-λ seeds' estimates (paper: one run's)",
                    "one value per dataset as the paper uses, less dependent on one seed",
                    "the AWD runs share one DoG; a seed's own estimate may differ by a few %"))
        out.append(("suites.natural.plateau", f"a rule ({'; '.join(plateaus) or 'defaults'}): the first epoch whose "
                    "loss stays within rel_tol of every later loss (paper: read off the curve, epoch 350 of a "
                    "longer run)", "reproducible without a person reading a plot",
                    "the estimate is taken at the loss floor of this schedule; the DoG value moves with it"))
    adv = params.get("adversarial") or {}
    if (suites.get("adversarial") or suites.get("variants")) and adv:
        eps, steps = adv.get("eps"), adv.get("train_steps")
        if eps is not None and not math.isclose(float(eps), PAPER_EPS, rel_tol=1e-3):
            out.append(("adversarial.eps", f"{float(eps):g} (paper: 8/255 = {PAPER_EPS:.4g})",
                        "at 8/255 every method saturates on digits" if "digits" in datasets else "as set",
                        "robust accuracies are at another threat model; compare within this report only"))
        if steps is not None and int(steps) != PAPER_TRAIN_STEPS:
            out.append(("adversarial.train_steps", f"PGD-{steps} training (paper: PGD-7)", "cost",
                        "a weaker or stronger training attack moves robust accuracy and the best λ_wd"))
        share = float(adv.get("val_from_fraction") or 0.0)
        if share > 0:
            firsts = sorted({math.floor(share * int(e)) + 1 for e in _adversarial_epochs(params)})
            at = f" (epoch {', '.join(map(str, firsts))} on)" if firsts else ""
            out.append(("adversarial.val_from_fraction", f"PGD-{adv.get('val_steps', 20)} validation after the first "
                        f"{share:g} of the epochs{at} (paper: every epoch)", "cost: the validation attack was about "
                        "a third of an adversarial epoch (the params file's comment gives the measured best epochs)",
                        "early stopping cannot pick an earlier epoch; where the best epoch came earlier, the reported "
                        "model is a later, possibly more over-fitted one"))
    aa = params.get("autoattack") or {}
    if aa.get("version", "standard") == "custom":
        names = " + ".join(str(a).upper() for a in aa.get("attacks") or ())
        out.append(("autoattack.version, attacks", f"custom: {names} only, each with the standard version's "
                    "settings (paper: standard AutoAttack, APGD-CE, APGD-T, FAB-T and Square)", "cost: the later attacks run on every example the first ones leave "
                    "robust, for a few more successes (the params file's comment gives the measured share)",
                    "robust accuracy is an upper bound of standard AutoAttack's (a subset of its attacks); both "
                    "methods are attacked alike, so the AWD − fixed difference is what is compared"))
    elif aa.get("version", "standard") != "standard":
        out.append(("autoattack.version", f"{aa['version']} (paper: standard AutoAttack)",
                    "cost: the standard suite dominates the run time",
                    "a cheaper attack over-estimates robust accuracy; the AWD − fixed difference is what is compared"))
    if aa.get("n_test") is not None:
        out.append(("autoattack.n_test", f"the first {aa['n_test']} test images (paper: the whole test set)", "cost",
                    "wider intervals; the same examples for every model, so comparisons stay paired"))
    for key in sorted(set(aa) - {"version", "attacks", "n_test", "shards", "batch_size", "block_size", "seed"}):
        out.append((f"autoattack.{key}", f"{aa[key]} (not in the paper)", "see the params file's comment",
                    "see the params file's comment"))
    return out


def section(params_path: Path) -> str:
    rows = departures(load_params(params_path))
    head = ["## Departures from the paper", "",
            f"Where `{Path(params_path).as_posix()}` departs from the paper's recipe (Appendix A), read from its keys:",
            ""]
    if not rows:
        return "\n".join(head + ["None: every recipe key is the paper's.", ""])
    lines = ["| setting | ours (paper) | why | expected effect |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(x.replace("|", "\\|") for x in r) + " |" for r in rows]
    return "\n".join(head + lines + [""])


def scale_line(params_path: Path, test_sizes: dict[str, int]) -> str:
    """One line: the datasets (test images), models, epochs and threat model the verdicts below are about."""
    p = load_params(params_path)
    ds = ", ".join(f"{d} ({test_sizes[d]} test images)" if d in test_sizes else d for d in _datasets(p))
    adv = p.get("adversarial") or {}
    eps = f"; adversarial ε = {float(adv['eps']):.4g}, PGD-{adv.get('train_steps')} training" if adv.get("eps") else ""
    n_attacked = (p.get("autoattack") or {}).get("n_test")
    if eps and n_attacked is not None:
        eps += f", AutoAttack on the first {n_attacked} test images"
    paper = all(d in PAPER_DATASETS for d in _datasets(p))
    models, epochs = _values(p, "model"), _values(p, "epochs")
    parts = [ds or "no dataset"] + ([f"model {', '.join(map(str, models))}"] if models else []) \
        + ([f"{', '.join(map(str, epochs))} epochs"] if epochs else [])
    return (f"**Scale:** {'; '.join(parts)}{eps}. "
            + ("The paper's datasets: the numbers are comparable with the paper's." if paper else
               "Not the paper's scale (CIFAR-10/100, WRN-28-10, 200 epochs, ε = 8/255): the verdicts below test the "
               "paper's claims at this scale; its numbers are not expected to match the paper's."))
