import copy
import os

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_digits

from awd.attacks import pgd
from awd.autoattack import autoattack, load_shard, merge_autoattack, save_shard
from awd.blocks import shard_bounds

EPS = 0.1  # on 8x8 digits this leaves some, not all, test examples robust for the tiny model below


def _tiny_model():
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                         nn.Linear(8 * 8 * 8, 10))


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target, dtype=torch.int64)
    return x, y


@pytest.fixture(scope="module")
def trained(digits):
    x, y = digits
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = _tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(60):
        idx = torch.randint(0, 1500, (128,), generator=g)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    opt.zero_grad(set_to_none=True)
    model.eval()
    return model


@pytest.fixture
def model(trained):
    return copy.deepcopy(trained)


@pytest.fixture(scope="module")
def test_set(digits):
    x, y = digits
    return x[1500:1540].clone(), y[1500:1540].clone()


def _xent(model, x, y):
    with torch.no_grad():
        return F.cross_entropy(model(x), y).item()


# ------------------------------------------------------------------------------------------------------ pgd

def test_pgd_stays_in_ball_and_box_and_raises_loss(model, digits):
    x, y = digits[0][1500:1628], digits[1][1500:1628]
    x_adv = pgd(model, x, y, eps=EPS, step_size=EPS / 4, steps=10, bn_mode="eval",
                generator=torch.Generator().manual_seed(1))
    assert x_adv.shape == x.shape and not x_adv.requires_grad
    assert (x_adv - x).abs().max().item() <= EPS + 1e-6
    assert x_adv.min().item() >= 0.0 and x_adv.max().item() <= 1.0
    # digits have many exact-0 pixels: PGD raises some of them into the box, and the box binds on others (a signed
    # step would take them below 0; they stay exactly at 0)
    assert ((x == 0) & (x_adv > 0)).any() and ((x == 0) & (x_adv == 0)).any()
    assert _xent(model, x_adv, y) > 2 * _xent(model, x, y)


def test_pgd_restores_modes_and_requires_grad_and_leaves_no_grads(model, test_set):
    x, y = test_set
    model.train()
    model[1].eval()  # a module deliberately in a different mode than its parent
    model[0].bias.requires_grad_(False)
    pgd(model, x, y, eps=EPS, step_size=0.02, steps=3, bn_mode="eval")
    assert model.training and model[0].training and not model[1].training
    assert not model[0].bias.requires_grad and model[0].weight.requires_grad and model[4].weight.requires_grad
    assert all(p.grad is None for p in model.parameters())
    model.eval()
    pgd(model, x, y, eps=EPS, step_size=0.02, steps=3, bn_mode="train")
    assert not any(m.training for m in model.modules())


@pytest.mark.parametrize("bn_mode, changes", [("train", True), ("eval", False)])
def test_pgd_bn_mode_controls_running_stats(model, test_set, bn_mode, changes):
    x, y = test_set
    bn = model[1]
    before = (bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.item())
    pgd(model, x, y, eps=EPS, step_size=0.02, steps=3, bn_mode=bn_mode)
    after = (bn.running_mean, bn.running_var, bn.num_batches_tracked.item())
    assert (not torch.equal(before[0], after[0])) == changes
    assert (not torch.equal(before[1], after[1])) == changes
    assert after[2] - before[2] == (3 if changes else 0)  # exactly one forward per step


def test_pgd_random_start_follows_generator(model, test_set):
    x, y = test_set
    kw = dict(eps=EPS, step_size=0.02, steps=2, bn_mode="eval")
    a = pgd(model, x, y, generator=torch.Generator().manual_seed(3), **kw)
    b = pgd(model, x, y, generator=torch.Generator().manual_seed(3), **kw)
    c = pgd(model, x, y, generator=torch.Generator().manual_seed(4), **kw)
    assert torch.equal(a, b) and not torch.equal(a, c)
    start = pgd(model, x, y, eps=EPS, step_size=0.02, steps=0, generator=torch.Generator().manual_seed(3))
    assert 0 < (start - x).abs().max().item() <= EPS + 1e-6
    assert torch.equal(pgd(model, x, y, eps=EPS, step_size=0.02, steps=0, random_start=False), x)


def test_pgd_works_inside_no_grad(model, test_set):
    x, y = test_set
    with torch.no_grad():
        x_adv = pgd(model, x, y, eps=EPS, step_size=EPS / 4, steps=5, bn_mode="eval")
    assert _xent(model, x_adv, y) > _xent(model, x, y)


def test_pgd_under_autocast(model, test_set):
    x, y = test_set
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x_adv = pgd(model, x, y, eps=EPS, step_size=EPS / 4, steps=5, bn_mode="eval")
    assert x_adv.dtype == torch.float32
    assert (x_adv - x).abs().max().item() <= EPS + 1e-6 and 0 <= x_adv.min() and x_adv.max() <= 1
    assert _xent(model, x_adv, y) > _xent(model, x, y)


@pytest.mark.parametrize("kw, match", [
    (dict(eps=0.0), "eps must be a number in \\(0, 1\\].*0.0"),
    (dict(eps=1.5), "eps must be .*1.5"),
    (dict(step_size=-0.1), "step_size must be .*-0.1"),
    (dict(steps=-1), "steps must be an int >= 0, got -1"),
    (dict(steps=2.0), "steps must be an int >= 0, got 2.0"),
    (dict(bn_mode="test"), "bn_mode must be one of \\('train', 'eval'\\), got 'test'"),
])
def test_pgd_rejects_bad_arguments(model, test_set, kw, match):
    x, y = test_set
    args = dict(eps=EPS, step_size=0.02, steps=1) | kw
    with pytest.raises(ValueError, match=match):
        pgd(model, x, y, **args)


def test_pgd_rejects_bad_inputs(model, test_set):
    x, y = test_set
    with pytest.raises(ValueError, match="x must be a floating-point tensor"):
        pgd(model, (x * 255).to(torch.uint8), y, eps=EPS, step_size=0.02, steps=1)
    with pytest.raises(ValueError, match="same number of examples"):
        pgd(model, x, y[:-1], eps=EPS, step_size=0.02, steps=1)


# ----------------------------------------------------------------------------------------------- AutoAttack

APGD_CE = dict(eps=EPS, version="custom", attacks=["apgd-ce"])


def test_autoattack_shards_merge_to_exactly_the_unsharded_result(model, test_set):
    x, y = test_set
    model.train()
    rng = torch.get_rng_state()
    full = autoattack(model, x, y, batch_size=20, block_size=10, **APGD_CE)
    assert model.training and torch.equal(torch.get_rng_state(), rng)
    assert all(p.grad is None for p in model.parameters())
    assert (full["start"], full["stop"], full["n"]) == (0, 40, 40)
    assert full["correct"].dtype == torch.bool and full["correct"].shape == (40,)
    assert not (full["correct"] & ~full["clean_correct"]).any()  # robust implies clean
    assert 0 < full["correct"].sum() < full["clean_correct"].sum()

    shards = [autoattack(model, x, y, batch_size=20, block_size=10, start=s, stop=e, **APGD_CE)
              for s, e in [(20, 40), (0, 20)]]
    assert torch.equal(torch.cat([shards[1]["correct"], shards[0]["correct"]]), full["correct"])
    assert torch.equal(torch.cat([shards[1]["clean_correct"], shards[0]["clean_correct"]]), full["clean_correct"])
    merged = merge_autoattack(shards)
    assert merged == merge_autoattack([full])
    assert merged == {"robust_acc": full["correct"].sum().item() / 40,
                      "clean_acc": full["clean_correct"].sum().item() / 40, "n": 40,
                      "correct": "".join("1" if c else "0" for c in full["correct"].tolist())}


def test_autoattack_standard_version(model, test_set, tmp_path):
    x, y = test_set
    log_path = tmp_path / "aa.log"
    res = autoattack(model, x, y, eps=EPS, version="standard", batch_size=40, log_path=log_path)
    assert not (res["correct"] & ~res["clean_correct"]).any()
    assert 0 < res["correct"].sum() < res["clean_correct"].sum()
    text = log_path.read_text()
    for attack in ("apgd-ce", "apgd-t", "fab-t", "square"):  # robust examples remain, so every attack ran
        assert f"running {attack}" in text and f"seed 0: {attack} robust" in text


def test_a_custom_list_runs_each_attack_with_the_standard_versions_settings(model):
    """pyautoattack's custom version keeps its constructor defaults (APGD-CE restarted 5 times, FAB too); ours runs
    each named attack as the standard version does: every numeric setting of the four attack objects equal."""
    from pyautoattack import AutoAttack

    from awd.autoattack import _standard_settings

    def settings(aa):
        return {name: {k: v for k, v in vars(getattr(aa, name)).items() if isinstance(v, (bool, int, float, str))}
                for name in ("apgd", "apgd_targeted", "fab", "square")}

    standard = AutoAttack(model, norm="Linf", eps=EPS, version="standard", seed=0, device="cpu")
    custom = AutoAttack(model, norm="Linf", eps=EPS, version="custom", attacks=["apgd-ce", "apgd-t"], seed=0,
                        device="cpu")
    assert settings(custom) != settings(standard)  # the package's own custom defaults
    _standard_settings(custom)
    assert settings(custom) == settings(standard)
    assert custom.attacks_to_run == ["apgd-ce", "apgd-t"]


class _Crash(RuntimeError):
    pass


def test_autoattack_resumes_from_its_state_after_a_crash(model, test_set, tmp_path, monkeypatch):
    import awd.autoattack

    x, y = test_set
    kw = dict(eps=EPS, version="custom", attacks=["apgd-ce", "apgd-dlr"], batch_size=20)
    calls = {"n": 0, "limit": None, "saves": []}

    def count(module, args, output):
        calls["n"] += 1
        if calls["limit"] is not None and calls["n"] > calls["limit"]:
            raise _Crash("simulated kill")

    def save_and_mark(obj, path):
        calls["saves"].append(calls["n"])
        save_checkpoint(obj, path)

    save_checkpoint = awd.autoattack.save_checkpoint
    monkeypatch.setattr(awd.autoattack, "save_checkpoint", save_and_mark)
    hook = model.register_forward_hook(count)
    reference = autoattack(model, x, y, state_path=tmp_path / "reference.pt", **kw)
    # a save after each attack and one per finished block: [ce, dlr, block 0, ce, dlr, block 1]
    assert len(calls["saves"]) == 6, "both attacks must have robust examples left in both blocks"
    after_ce_in_block_1, after_dlr_in_block_1 = calls["saves"][3], calls["saves"][4]

    state = tmp_path / "state.pt"
    calls.update(n=0, limit=after_ce_in_block_1 + 3)  # killed during apgd-dlr of the second block
    with pytest.raises(_Crash):
        autoattack(model, x, y, state_path=state, **kw)
    saved = torch.load(state, weights_only=True)
    assert list(saved["blocks"]) == [0] and saved["partial"]["block"] == 1 and saved["partial"]["attacks_done"] == 1

    calls.update(n=0, limit=None)
    resumed = autoattack(model, x, y, state_path=state, **kw)
    hook.remove()
    assert calls["n"] == after_dlr_in_block_1 - after_ce_in_block_1  # only apgd-dlr of block 1 was rerun
    assert torch.equal(resumed["correct"], reference["correct"])
    assert torch.equal(resumed["clean_correct"], reference["clean_correct"])
    assert sorted(os.listdir(tmp_path)) == ["reference.pt", "state.pt"]  # no temporary files left behind


def test_autoattack_ignores_a_state_written_for_other_settings(model, test_set, tmp_path):
    x, y = test_set
    state = tmp_path / "aa_state.pt"
    autoattack(model, x[:10], y[:10], eps=0.01, version="custom", attacks=["apgd-ce"], state_path=state)
    with pytest.warns(UserWarning, match="different model, data or settings"):
        res = autoattack(model, x[:10], y[:10], state_path=state, **APGD_CE)
    assert torch.equal(res["correct"], autoattack(model, x[:10], y[:10], **APGD_CE)["correct"])
    state.write_bytes(b"torn")
    with pytest.warns(UserWarning, match="unreadable"):
        autoattack(model, x[:10], y[:10], state_path=state, **APGD_CE)


@pytest.mark.parametrize("kw, match", [
    (dict(start=5, stop=20), "shard \\[5, 20\\) must start on a multiple of block_size=10"),
    (dict(start=0, stop=15), "shard \\[0, 15\\) must start on a multiple of block_size=10"),
    (dict(start=20, stop=50), "0 <= start < stop <= 40"),
    (dict(start=20, stop=20), "0 <= start < stop <= 40"),
    (dict(version="fast"), "version must be one of .*got 'fast'"),
    (dict(version="standard"), "attacks is only allowed with version='custom'"),
    (dict(attacks=["apgd-ce", "pgd"]), "attacks must be a non-empty list .*'pgd'"),
    (dict(attacks=[]), "attacks must be a non-empty list"),
    (dict(eps=8), "eps must be a number in \\(0, 1\\].*8"),
    (dict(block_size=0), "block_size must be an int >= 1, got 0"),
    (dict(seed=-1), "seed must be an int >= 0, got -1"),
])
def test_autoattack_rejects_bad_arguments(model, test_set, kw, match):
    x, y = test_set
    args = dict(APGD_CE, batch_size=10) | kw
    with pytest.raises(ValueError, match=match):
        autoattack(model, x, y, **args)


def test_autoattack_rejects_pixels_outside_unit_range(model, test_set):
    x, y = test_set
    with pytest.raises(ValueError, match="pixels in \\[0, 1\\], got values in \\[0.0, 16.0\\]"):
        autoattack(model, x * 16, y, **APGD_CE)


def test_autoattack_last_block_may_be_partial(model, digits):
    x, y = digits[0][1500:1525], digits[1][1500:1525]
    whole = autoattack(model, x, y, batch_size=10, **APGD_CE)
    tail = autoattack(model, x, y, batch_size=10, start=20, **APGD_CE)
    assert tail["n"] == 5 and torch.equal(tail["correct"], whole["correct"][20:])


# ------------------------------------------------------------------------------------------ merge and files

def _shard(start, stop, correct=None):
    n = stop - start
    correct = torch.arange(start, stop) % 3 == 0 if correct is None else correct
    return {"start": start, "stop": stop, "n": n, "correct": correct, "clean_correct": torch.ones(n, dtype=torch.bool)}


def test_merge_is_order_independent_and_counts_right():
    shards = [_shard(10, 25), _shard(0, 10), _shard(25, 30)]
    merged = merge_autoattack(shards)
    assert merged == merge_autoattack(list(reversed(shards)))
    assert merged == {"robust_acc": 10 / 30, "clean_acc": 1.0, "n": 30, "correct": "100" * 10}
    assert merge_autoattack(shards, n=30) == merged


@pytest.mark.parametrize("shards, match", [
    ([_shard(0, 10), _shard(12, 20)], "gap in AutoAttack shards: \\[10, 12\\) is missing before shard \\[12, 20\\)"),
    ([_shard(5, 10)], "gap .*\\[0, 5\\) is missing"),
    ([_shard(0, 10), _shard(8, 20)], "overlapping AutoAttack shards: \\[8, 20\\) overlaps .*\\[0, 10\\)"),
    ([_shard(0, 10), _shard(0, 10)], "overlapping AutoAttack shards: \\[0, 10\\)"),
    ([_shard(0, 10, correct=torch.ones(9, dtype=torch.bool))], "shard \\[0, 10\\) is inconsistent"),
    ([], "at least one shard"),
    # not only neighbours: a shard inside another one, a duplicate far from the start, a missing tail
    ([_shard(0, 30), _shard(10, 20)], "overlapping AutoAttack shards: \\[10, 20\\) overlaps .*\\[0, 30\\)"),
    ([_shard(0, 10), _shard(10, 20), _shard(20, 30), _shard(10, 20)], "overlapping .*\\[10, 20\\)"),
    ([_shard(20, 30), _shard(0, 10), _shard(25, 30), _shard(10, 20)], "overlapping .*\\[25, 30\\) overlaps"),
])
def test_merge_rejects_gaps_overlaps_and_bad_shards(shards, match):
    with pytest.raises(ValueError, match=match):
        merge_autoattack(shards)


def test_merge_checks_the_end_of_the_attacked_range():
    shards = [_shard(0, 10), _shard(10, 20)]
    with pytest.raises(ValueError, match="cover \\[0, 20\\) but 30 examples were attacked: \\[20, 30\\) is missing"):
        merge_autoattack(shards, n=30)
    with pytest.raises(ValueError, match="cover \\[0, 20\\) but 15 .* they run past 15"):
        merge_autoattack(shards, n=15)


def test_merge_reads_stored_block_results():
    """The attack stage's blocks as stored: robust outcomes as a '0'/'1' string, clean ones as a count."""
    blocks = [{"start": 3, "stop": 7, "n": 4, "correct": "0011", "clean_correct": 3},
              {"start": 0, "stop": 3, "n": 3, "correct": "101", "clean_correct": 3}]
    assert merge_autoattack(blocks, n=7) == {"robust_acc": 4 / 7, "clean_acc": 6 / 7, "n": 7, "correct": "1010011"}
    with pytest.raises(ValueError, match="shard \\[0, 3\\) is inconsistent: .*robust: 2 per-example flags"):
        merge_autoattack([dict(blocks[1], correct="10")] + blocks[:1])
    with pytest.raises(ValueError, match="shard \\[3, 7\\) is inconsistent: .*clean count 5 outside \\[0, 4\\]"):
        merge_autoattack([blocks[1], dict(blocks[0], clean_correct=5)])
    with pytest.raises(ValueError, match="'0'/'1' string"):
        merge_autoattack([dict(blocks[1], correct="1x1")] + blocks[:1])


def test_save_and_load_shard_round_trip(tmp_path):
    shard = _shard(10, 20)
    path = tmp_path / "sub" / "shard.pt"
    save_shard(shard, path)
    loaded = load_shard(path)
    assert set(loaded) == set(shard) and loaded["start"] == 10 and loaded["n"] == 10
    assert torch.equal(loaded["correct"], shard["correct"]) and loaded["correct"].dtype == torch.bool
    assert os.listdir(path.parent) == ["shard.pt"]
    torch.save({"start": 0}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an AutoAttack shard result: missing"):
        load_shard(tmp_path / "other.pt")


@pytest.mark.parametrize("n, shards, block, expected", [
    (100, 2, 10, [(0, 50), (50, 100)]),
    (100, 3, 10, [(0, 30), (30, 60), (60, 100)]),
    (95, 2, 10, [(0, 50), (50, 95)]),
    (100, 2, 500, [(0, 100)]),
    (7, 7, 1, [(i, i + 1) for i in range(7)]),
])
def test_shard_bounds_tile_the_set_on_block_boundaries(n, shards, block, expected):
    assert shard_bounds(n, shards, block) == expected


def test_shard_bounds_rejects_bad_arguments():
    with pytest.raises(ValueError, match="shards must be an int >= 1, got 0"):
        shard_bounds(10, 0, 5)
