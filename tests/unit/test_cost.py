"""The cost model's forward FLOPs (pipeline/flops.py) are what torch's own FlopCounterMode counts, and their cache on
disk answers what counting would."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from awd.data import dataset_info
from awd.models import build_model
from pipeline import flops
from pipeline.cost import forward_flops, train_flops


@pytest.mark.parametrize("model,dataset,model_kw", [("tiny", "digits", {"width": 8}), ("tiny", "digits", {"width": 16}),
                                                    ("resnet32", "cifar10", {}), ("resnet32", "cifar100", {})])
def test_forward_flops_are_flop_counter_modes(model, dataset, model_kw):
    num_classes, channels, size = dataset_info(dataset)
    with torch.device("meta"):
        net = build_model(model, num_classes, in_channels=channels, **model_kw)
        x = torch.zeros(1, channels, size, size)
    counter = FlopCounterMode(display=False)
    with counter:
        net(x)
    assert flops.count_forward_flops(model, dataset, json.dumps(model_kw, sort_keys=True)) == counter.get_total_flops() > 0


def test_a_cached_count_is_read_back_and_a_changed_source_or_a_damaged_file_is_counted_afresh(tmp_path, monkeypatch):
    monkeypatch.setenv(flops.CACHE_ENV, str(tmp_path))
    counted = []
    real = flops.count_forward_flops
    monkeypatch.setattr(flops, "count_forward_flops", lambda *a: counted.append(a) or real(*a))
    args = ("tiny", "digits", json.dumps({"width": 8}))
    flops.forward_flops.cache_clear()
    first = flops.forward_flops(*args)
    [written] = tmp_path.glob("flops-*.json")
    flops.forward_flops.cache_clear()
    assert flops.forward_flops(*args) == first and len(counted) == 1  # a new process would read it, not count
    written.write_text("{not json")
    flops.forward_flops.cache_clear()
    assert flops.forward_flops(*args) == first and len(counted) == 2
    monkeypatch.setattr(flops, "_code_digest", lambda: "an edited model file")
    flops.forward_flops.cache_clear()
    assert flops.forward_flops(*args) == first and len(counted) == 3
    assert len(list(tmp_path.glob("flops-*.json"))) == 2
    flops.forward_flops.cache_clear()


def test_an_unwritable_cache_is_a_miss_never_an_error(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv(flops.CACHE_ENV, str(blocker / "cache"))  # a directory cannot be made under a file
    flops.forward_flops.cache_clear()
    assert flops.forward_flops("tiny", "digits", json.dumps({"width": 8})) > 0
    flops.forward_flops.cache_clear()


def test_adversarial_validation_is_costed_after_val_from_fraction_of_the_epochs():
    cfg = {"model": "tiny", "dataset": "digits", "model_kw": {"width": 8}, "val_fraction": 0.1, "epochs": 30,
           "adversarial": True, "train_steps": 3, "val_steps": 20, "optimizer": "sgd", "val_from_fraction": 0.0}
    every, late = train_flops(cfg), train_flops({**cfg, "val_from_fraction": 0.5})
    fwd, n_val = forward_flops("tiny", "digits", json.dumps({"width": 8})), round(1437 * 0.1)
    assert every - late == pytest.approx(15 * n_val * fwd * 3 * 20)  # 15 epochs fewer of PGD-20 on the val split


def test_the_cpu_benchmarks_flops_are_flop_counter_modes():
    from pipeline.cost import CPU_BENCH_FLOPS

    conv = torch.nn.Conv2d(32, 32, 3, padding=1)
    x = torch.randn(64, 32, 16, 16, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        conv(x).sum().backward()
    assert CPU_BENCH_FLOPS == counter.get_total_flops()
