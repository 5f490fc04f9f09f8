import copy

import pytest
import torch
from torch import nn

from awd.optim import ASAM, build_optimizer
from awd.weight_decay import AdaptiveWeightDecay


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2))


def data(seed=1, n=16):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    return x, (x[:, 0] + 0.5 * x[:, 1] > 0).long()


def loss_of(model, x, y):
    return nn.functional.cross_entropy(model(x), y)


def grads_at(model, named_values, x, y):
    """Gradient of the loss of a copy of `model` whose parameters are set to `named_values`."""
    probe = copy.deepcopy(model)
    with torch.no_grad():
        for n, p in probe.named_parameters():
            p.copy_(named_values[n])
    probe.zero_grad()
    loss_of(probe, x, y).backward()
    return {n: p.grad.clone() for n, p in probe.named_parameters()}


def test_build_optimizer_is_sgd_without_weight_decay():
    model = mlp()
    opt = build_optimizer("sgd", model.parameters(), lr=0.05, momentum=0.8, nesterov=True)
    assert isinstance(opt, torch.optim.SGD)
    group = opt.param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]) == (0.05, 0.8, True, 0.0)


def test_build_optimizer_rejects_bad_arguments():
    with pytest.raises(ValueError, match="name must be one of.*'adam'"):
        build_optimizer("adam", mlp().parameters(), lr=0.1)
    with pytest.raises(ValueError, match="ASAM wraps"):
        build_optimizer("asam", mlp().parameters(), lr=0.1)
    with pytest.raises(ValueError, match="lr must be a finite number > 0, got 0"):
        build_optimizer("sgd", mlp().parameters(), lr=0)
    with pytest.raises(ValueError, match="nesterov"):
        build_optimizer("sgd", mlp().parameters(), lr=0.1, momentum=0.0, nesterov=True)
    with pytest.raises(ValueError, match="rho"):
        ASAM(build_optimizer("sgd", mlp().parameters(), lr=0.1), mlp(), rho=0.0)


@pytest.mark.parametrize("eta", [0.0, 0.01])
def test_ascent_perturbation_matches_the_asam_formula(eta):
    model = mlp()
    x, y = data()
    asam = ASAM(build_optimizer("sgd", model.parameters(), lr=0.1), model, rho=0.5, eta=eta)
    loss_of(model, x, y).backward()
    w = {n: p.detach().clone() for n, p in model.named_parameters()}
    g = {n: p.grad.clone() for n, p in model.named_parameters()}
    # T = |w| + η on parameters named "weight" (BatchNorm scale included), identity on the biases
    t = {n: (w[n].abs() + eta) if "weight" in n else torch.ones_like(w[n]) for n in w}
    norm = torch.sqrt(sum(((t[n] * g[n]) ** 2).sum() for n in w))
    asam.ascent_step()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), w[n] + 0.5 * t[n] ** 2 * g[n] / norm)
        assert p.grad is None or not p.grad.any()
    assert any(not torch.equal(p.detach(), w[n]) for n, p in model.named_parameters() if n.endswith("bias"))
    full = torch.sqrt(sum((gi**2).sum() for gi in g.values()))
    torch.testing.assert_close(asam.ascent_grad_norm(), full)
    first = [model[0].weight, model[3].weight]
    torch.testing.assert_close(asam.ascent_grad_norm(first), torch.sqrt((g["0.weight"] ** 2).sum() + (g["3.weight"] ** 2).sum()))


def test_restore_puts_back_the_exact_weights():
    model = mlp()
    x, y = data()
    asam = ASAM(build_optimizer("sgd", model.parameters(), lr=0.1), model, rho=1.0)
    w = [p.detach().clone() for p in model.parameters()]
    loss_of(model, x, y).backward()
    asam.ascent_step()
    assert not all(torch.equal(p, q) for p, q in zip(model.parameters(), w))
    loss_of(model, x, y).backward()
    asam.restore()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), w))
    asam.restore()  # idempotent
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), w))


def test_asam_step_uses_the_gradient_at_the_perturbed_point():
    model = mlp()
    x, y = data()
    asam = ASAM(build_optimizer("sgd", model.parameters(), lr=0.1, momentum=0.9), model, rho=0.5)
    w = {n: p.detach().clone() for n, p in model.named_parameters()}
    g = grads_at(model, w, x, y)
    loss_of(model, x, y).backward()
    asam.ascent_step()
    perturbed = {n: p.detach().clone() for n, p in model.named_parameters()}
    g_sharp = grads_at(model, perturbed, x, y)
    loss_of(model, x, y).backward()
    asam.descent_step()
    for n, p in model.named_parameters():
        # first momentum step: the buffer is the gradient itself
        torch.testing.assert_close(p.detach(), w[n] - 0.1 * g_sharp[n])
        assert p.grad is None
    assert any(
        not torch.allclose(p.detach(), w[n] - 0.1 * g[n], atol=1e-6, rtol=0) for n, p in model.named_parameters()
    )


def test_asam_rejects_out_of_order_calls():
    model = mlp()
    x, y = data()
    asam = ASAM(build_optimizer("sgd", model.parameters(), lr=0.1), model)
    with pytest.raises(RuntimeError, match="loss.backward"):
        asam.ascent_step()
    with pytest.raises(RuntimeError, match="without a preceding ascent_step"):
        asam.descent_step()
    with pytest.raises(RuntimeError, match="ascent_step\\(\\) first"):
        asam.ascent_grad_norm()
    loss_of(model, x, y).backward()
    asam.ascent_step()
    loss_of(model, x, y).backward()
    with pytest.raises(RuntimeError, match="twice"):
        asam.ascent_step()


@pytest.mark.parametrize("which", ["descent", "ascent"])
def test_awd_under_asam_uses_the_chosen_gradient_and_the_restored_weights(which):
    model = mlp()
    x, y = data()
    asam = ASAM(build_optimizer("sgd", model.parameters(), lr=0.1, momentum=0.9), model, rho=0.5)
    wd = AdaptiveWeightDecay(model.parameters(), dog=0.05, ema=1.0)
    params = list(model.parameters())
    loss_of(model, x, y).backward()
    g_ascent = torch.sqrt(sum((p.grad**2).sum() for p in params))
    asam.ascent_step()
    loss_of(model, x, y).backward()
    g_descent = torch.sqrt(sum((p.grad**2).sum() for p in params))
    asam.restore()
    w = torch.sqrt(sum((p.detach() ** 2).sum() for p in params))
    lam = wd.apply_(grad_norm=asam.ascent_grad_norm(wd.params)) if which == "ascent" else wd.apply_()
    expected = g_ascent if which == "ascent" else g_descent
    torch.testing.assert_close(lam, 0.05 * expected / w)
    asam.descent_step()


def test_asam_with_awd_trains():
    model = mlp()
    x, y = data(n=64)
    asam = ASAM(build_optimizer("sgd", model.parameters(), lr=0.1, momentum=0.9), model, rho=0.5)
    wd = AdaptiveWeightDecay(model.parameters(), dog=0.02)
    start = loss_of(model, x, y).item()
    for _ in range(30):
        loss_of(model, x, y).backward()
        asam.ascent_step()
        loss_of(model, x, y).backward()
        asam.restore()
        lam = wd.apply_()
        asam.descent_step()
    assert torch.isfinite(lam) and lam.item() > 0
    assert loss_of(model, x, y).item() < 0.5 * start


def _manual_step(model, opt, asam, wd, x, y, which):
    """The step spelled out with ASAM's primitives: the reference DecayedOptimizer.step must equal bit for bit."""
    opt.zero_grad(set_to_none=True)
    loss = loss_of(model, x, y)
    loss.backward()
    if asam is None:
        lam = wd.apply_()
        opt.step()
        return loss, lam
    asam.ascent_step()
    loss_of(model, x, y).backward()
    asam.restore()
    lam = wd.apply_(grad_norm=asam.ascent_grad_norm(wd.params)) if which == "ascent" else wd.apply_()
    asam.descent_step()
    return loss, lam


@pytest.mark.parametrize("kind", ["sgd", "asam-descent", "asam-ascent"])
def test_decayed_optimizer_step_is_the_spelled_out_step(kind):
    from awd.optim import DecayedOptimizer

    use_asam, which = kind.startswith("asam"), kind.rsplit("-", 1)[-1]
    x, y = data(n=32)
    runs = []
    for _ in range(2):
        model = mlp()
        opt = build_optimizer("sgd", model.parameters(), lr=0.1, momentum=0.9)
        asam = ASAM(opt, model, rho=0.5) if use_asam else None
        runs.append((model, opt, asam, AdaptiveWeightDecay(model.parameters(), dog=0.05, ema=0.5)))
    (m1, o1, a1, w1), (m2, o2, a2, w2) = runs
    stepper = DecayedOptimizer(o1, w1, a1, awd_grad="ascent" if which == "ascent" else "descent")
    calls = []

    def closure():
        calls.append(1)
        loss = loss_of(m1, x, y)
        loss.backward()
        return loss

    for _ in range(5):
        loss, lam = stepper.step(closure)
        ref_loss, ref_lam = _manual_step(m2, o2, a2, w2, x, y, which)
        assert torch.equal(loss, ref_loss) and torch.equal(lam, ref_lam)
    assert len(calls) == (10 if use_asam else 5)
    assert all(torch.equal(p, q) for p, q in zip(m1.parameters(), m2.parameters()))
    assert all(torch.equal(o1.state[p]["momentum_buffer"], o2.state[q]["momentum_buffer"])
               for p, q in zip(m1.parameters(), m2.parameters()))


def test_decayed_optimizer_rejects_bad_arguments():
    from awd.optim import DecayedOptimizer

    model = mlp()
    opt = build_optimizer("sgd", model.parameters(), lr=0.1)
    wd = AdaptiveWeightDecay(model.parameters(), dog=0.05)
    with pytest.raises(ValueError, match=r"awd_grad must be one of \('descent', 'ascent'\), got 'w'"):
        DecayedOptimizer(opt, wd, awd_grad="w")
    other = build_optimizer("sgd", model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="same base optimizer"):
        DecayedOptimizer(opt, wd, ASAM(other, model))
