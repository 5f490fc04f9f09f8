"""The method registry (awd/methods.py) and the example plugin SGDW (examples/sgdw.py)."""

import importlib.metadata
import io
import sys
import textwrap

import pytest
import torch
from torch import nn

from awd.methods import MethodError, check_method_class, load_method, resolve_method
from awd.weight_decay import AdaDecay, AdaptiveWeightDecay, FixedWeightDecay, NoWeightDecay, build_weight_decay
from examples.sgdw import SGDW


@pytest.mark.parametrize("name, cls, param, label", [
    ("none", NoWeightDecay, "wd", "none"), ("fixed", FixedWeightDecay, "wd", "λ_wd"),
    ("awd", AdaptiveWeightDecay, "dog", "DoG"), ("adadecay", AdaDecay, "wd", "λ_AdaDecay")])
def test_builtins_are_registered_like_plugins(name, cls, param, label):
    assert resolve_method(name) is cls and load_method(name) is cls
    assert (cls.name, cls.param, cls.param_label, cls.sweep) == (name, param, label, "log")
    assert check_method_class(cls) == []


def test_a_dotted_path_and_an_entry_point_resolve_to_the_class(monkeypatch):
    assert resolve_method("examples.sgdw:SGDW") is SGDW
    ep = importlib.metadata.EntryPoint("mine", "examples.sgdw:SGDW", "awd_bench.methods")
    real = importlib.metadata.entry_points
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda **kw: [ep] if kw.get("group") == "awd_bench.methods" else real(**kw))
    assert resolve_method("mine") is SGDW
    with pytest.raises(MethodError, match="unknown method 'other'.*awd_bench.methods"):
        resolve_method("other")


def test_bad_plugins_are_refused_naming_the_method_and_what_is_missing(tmp_path, monkeypatch):
    (tmp_path / "halfdone.py").write_text(textwrap.dedent("""
        class Half:
            name = "half"
            param = "lr"
            def dog(self):
                return 0
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MethodError) as err:
        load_method("halfdone:Half")
    assert str(err.value) == ("method 'halfdone:Half' (halfdone:Half): missing apply_(), state_dict(), "
                              "load_state_dict(), class attribute param in (wd, dog), got 'lr', "
                              "class attribute param_label, class attribute sweep (one of log, linear)")
    with pytest.raises(MethodError, match="method 'nosuchpkg.mod:X' .*module 'nosuchpkg' not found"):
        load_method("nosuchpkg.mod:X")
    with pytest.raises(MethodError, match="module 'halfdone' has no class 'Missing'"):
        load_method("halfdone:Missing")
    with pytest.raises(ValueError, match="missing apply_"):
        build_weight_decay("halfdone:Half", [nn.Parameter(torch.ones(2))], wd=1e-3)
    sys.modules.pop("halfdone", None)


def linear_problem(seed=0):
    torch.manual_seed(seed)
    w = nn.Parameter(torch.randn(5))
    c = torch.randn(5)  # loss = c·w: the gradient is c at every w, so any difference comes from the decay
    return w, c


def run(method, momentum, lr=0.1, lam=0.05, steps=4, wd_obj=None):
    w, c = linear_problem()
    opt = torch.optim.SGD([w], lr=lr, momentum=momentum)
    wd = wd_obj or build_weight_decay(method, [w], wd=lam, optimizer=opt)
    for _ in range(steps):
        opt.zero_grad()
        (c * w).sum().backward()
        wd.apply_()
        opt.step()
    return w.detach(), opt.state[w].get("momentum_buffer"), c


def test_sgdw_matches_the_decoupled_update_by_hand_and_momentum_does_not_carry_the_decay():
    lr, lam, mu, steps = 0.1, 0.05, 0.9, 4
    w_sgdw, buf_sgdw, c = run("examples.sgdw:SGDW", mu, lr, lam, steps)
    w0, _ = linear_problem()
    w, buf = w0.detach().clone(), torch.zeros(5)
    for _ in range(steps):  # Loshchilov & Hutter: w ← w − lr·λ·w − lr·buf, buf ← μ·buf + g
        buf = mu * buf + c
        w = w - lr * lam * w - lr * buf
    torch.testing.assert_close(w_sgdw, w, rtol=1e-6, atol=1e-7)
    # the momentum buffer holds the loss gradients only: the same as with no decay at all
    _, buf_none, _ = run("none", mu, lr, lam, steps)
    torch.testing.assert_close(buf_sgdw, buf_none, rtol=0, atol=0)
    # coupled L2 puts λ·w into the buffer, so the two methods differ once momentum is on
    w_fixed, buf_fixed, _ = run("fixed", mu, lr, lam, steps)
    assert not torch.allclose(buf_fixed, buf_none)
    assert not torch.allclose(w_fixed, w_sgdw, rtol=1e-4)


def test_sgdw_equals_coupled_l2_without_momentum():
    w_sgdw, _, _ = run("examples.sgdw:SGDW", 0.0)
    w_fixed, _, _ = run("fixed", 0.0)
    torch.testing.assert_close(w_sgdw, w_fixed, rtol=1e-6, atol=1e-7)


def test_sgdw_follows_the_scheduled_learning_rate_per_group():
    a, b = nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(2))
    opt = torch.optim.SGD([{"params": [a], "lr": 0.1}, {"params": [b], "lr": 0.01}], lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 ** t)
    wd = build_weight_decay("examples.sgdw:SGDW", [a, b], wd=0.2, optimizer=opt)
    expected_a, expected_b = 1.0, 1.0
    for t in range(3):
        opt.zero_grad()
        a.grad, b.grad = torch.zeros(3), torch.zeros(2)
        lam = wd.apply_()
        assert lam.item() == pytest.approx(0.2) and torch.equal(a.grad, torch.zeros(3))  # .grad left alone
        opt.step()
        sched.step()
        expected_a *= 1 - 0.1 * 0.5 ** t * 0.2
        expected_b *= 1 - 0.01 * 0.5 ** t * 0.2
    torch.testing.assert_close(a.detach(), torch.full((3,), expected_a))
    torch.testing.assert_close(b.detach(), torch.full((2,), expected_b))


def test_sgdw_without_an_optimizer_says_how_to_attach_one():
    w, c = linear_problem()
    wd = SGDW([w], 1e-3)
    w.grad = c.clone()
    with pytest.raises(RuntimeError, match="attach"):
        wd.apply_()
    with pytest.raises(ValueError, match="sgdw: wd"):
        SGDW([w], -1.0)


def test_sgdw_dog_and_state_round_trip():
    w, c = linear_problem()
    opt = torch.optim.SGD([w], lr=0.1, momentum=0.9)
    wd = build_weight_decay("examples.sgdw:SGDW", [w], wd=0.05, optimizer=opt)
    w.grad = c.clone()
    w_before = w.detach().clone()
    wd.apply_()
    assert wd.dog().item() == pytest.approx(0.05 * w_before.norm().item() / c.norm().item(), rel=1e-6)
    buf = io.BytesIO()
    torch.save(wd.state_dict(), buf)
    buf.seek(0)
    other = SGDW([w], 0.05)
    other.load_state_dict(torch.load(buf, weights_only=True))
    assert torch.equal(other.dog(), wd.dog()) and other.wd == 0.05


@pytest.mark.skipif(not torch.cuda.is_available(), reason="host-device sync can only be observed on CUDA")
def test_sgdw_apply_does_not_synchronise_with_the_host():
    w = nn.Parameter(torch.randn(5, device="cuda"))
    opt = torch.optim.SGD([w], lr=0.1, momentum=0.9)
    wd = build_weight_decay("examples.sgdw:SGDW", [w], wd=1e-3, optimizer=opt)
    w.grad = torch.randn(5, device="cuda")
    torch.cuda.set_sync_debug_mode("error")
    try:
        wd.apply_()
        wd.dog()
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_the_registry_lists_exactly_the_run_configs_built_in_methods():
    from awd.methods import BUILTINS
    from awd.train_config import METHODS

    assert tuple(BUILTINS) == METHODS
