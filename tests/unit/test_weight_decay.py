import io
import math

import pytest
import torch
from torch import nn

from awd.weight_decay import (
    AdaDecay,
    AdaptiveWeightDecay,
    FixedWeightDecay,
    bn_bias_params,
    build_weight_decay,
)


def small_cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)
    )


def batch(seed=1, n=8):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 6, 6, generator=g), torch.randint(0, 3, (n,), generator=g)


def backward(model, seed=1):
    x, y = batch(seed)
    nn.functional.cross_entropy(model(x), y).backward()


def test_awd_lambda_matches_hand_computation_over_three_steps():
    a = nn.Parameter(torch.tensor([3.0, -4.0]))
    b = nn.Parameter(torch.tensor([[12.0]]))
    dog, lr = 0.02, 0.5
    wd = AdaptiveWeightDecay([a, b], dog=dog)  # ema 0.9 as in Algorithm 1
    grads = [([0.6, 0.8], [0.0]), ([1.0, 2.0], [-2.0]), ([0.0, 3.0], [4.0])]
    w = [3.0, -4.0, 12.0]
    lam_bar, lams = 0.0, []
    for ga, gb in grads:
        a.grad, b.grad = torch.tensor(ga), torch.tensor([gb])
        g = ga + gb
        lam_t = dog * math.sqrt(sum(v * v for v in g)) / math.sqrt(sum(v * v for v in w))
        lam_bar = 0.1 * lam_bar + 0.9 * lam_t
        lam = wd.apply_()
        lams.append(lam.item())
        assert lam.shape == () and lam.item() == pytest.approx(lam_bar, rel=1e-6)
        expected = [gi + lam_bar * wi for gi, wi in zip(g, w)]
        got = a.grad.tolist() + b.grad.flatten().tolist()
        assert got == pytest.approx(expected, rel=1e-6)
        with torch.no_grad():  # plain SGD step so that ‖w‖ changes between steps
            for p in (a, b):
                p -= lr * p.grad
        w = [wi - lr * ei for wi, ei in zip(w, expected)]
    # first step by hand: ‖g‖ = ‖(0.6, 0.8, 0)‖ = 1, ‖w‖ = ‖(3, −4, 12)‖ = 13, λ̄₀ = 0 -> λ̄₁ = 0.9 · 0.02 / 13
    assert lams[0] == pytest.approx(0.9 * 0.02 / 13, rel=1e-6)
    assert lams[1] != pytest.approx(lams[0]) and lams[2] != pytest.approx(lams[1])


def test_awd_lambda_is_a_constant_without_autograd_history():
    model = small_cnn()
    x, y = batch()
    loss = nn.functional.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, list(model.parameters()), create_graph=True)
    for p, g in zip(model.parameters(), grads):
        p.grad = g  # differentiable gradients: λ must still come out detached
    before = [p.grad.detach().clone() for p in model.parameters()]
    weights = [p.detach().clone() for p in model.parameters()]
    wd = AdaptiveWeightDecay(model.parameters(), dog=0.05)
    lam = wd.apply_()
    assert not lam.requires_grad and lam.grad_fn is None
    assert not wd.dog().requires_grad
    for p, g0, w0 in zip(model.parameters(), before, weights):
        assert torch.equal(p.detach(), w0)  # apply_ never touches the weights
        torch.testing.assert_close(p.grad.detach(), g0 + lam * w0, rtol=0, atol=1e-7)


def test_awd_with_ema_one_keeps_dog_exactly_at_target():
    model = small_cnn()
    wd = AdaptiveWeightDecay(model.parameters(), dog=0.016, ema=1.0)
    backward(model)
    g = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in model.parameters()]))
    w = torch.linalg.vector_norm(torch.cat([p.detach().flatten() for p in model.parameters()]))
    lam = wd.apply_()
    torch.testing.assert_close(lam, 0.016 * g / w)
    torch.testing.assert_close(wd.dog(), torch.tensor(0.016))


def test_awd_uses_a_precomputed_grad_norm_when_given():
    model = small_cnn()
    wd = AdaptiveWeightDecay(model.parameters(), dog=0.1, ema=1.0)
    backward(model)
    w = torch.linalg.vector_norm(torch.cat([p.detach().flatten() for p in model.parameters()]))
    lam = wd.apply_(grad_norm=torch.tensor(3.0))
    torch.testing.assert_close(lam, 0.1 * 3.0 / w)


@pytest.mark.parametrize("foreach", [False, True])
def test_fixed_weight_decay_is_bitwise_sgd_weight_decay(foreach):
    ref, ours = small_cnn(), small_cnn()
    opt_ref = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, foreach=foreach)
    opt = torch.optim.SGD(ours.parameters(), lr=0.1, momentum=0.9, weight_decay=0.0, foreach=foreach)
    wd = FixedWeightDecay(ours.parameters(), wd=5e-4)
    for step in range(5):
        for model, o in ((ref, opt_ref), (ours, opt)):
            o.zero_grad()
            backward(model, seed=step)
        wd.apply_()
        opt_ref.step()
        opt.step()
    for p, q in zip(ref.parameters(), ours.parameters()):
        assert torch.equal(p, q)
    assert not all(torch.equal(p, q) for p, q in zip(ref.parameters(), small_cnn().parameters()))


def test_fixed_measures_dog_against_the_gradient_before_decay():
    model = small_cnn()
    wd = FixedWeightDecay(model.parameters(), wd=5e-3)
    backward(model)
    g = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in model.parameters()]))
    w = torch.linalg.vector_norm(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert wd.apply_().item() == pytest.approx(5e-3)
    torch.testing.assert_close(wd.dog(), 5e-3 * w / g)


def test_adadecay_theta_formula_range_and_guards():
    g = torch.tensor([0.5, -2.0, 1.0, -0.1, 3.0])
    mag = g.abs()
    z = (mag - mag.mean()) / mag.std(correction=0)
    expected = 2 / (1 + torch.exp(-4.0 * z))
    theta = AdaDecay.theta(g, 4.0)
    torch.testing.assert_close(theta, expected)
    big = AdaDecay.theta(torch.randn(10_000) * 1e3, 50.0)
    assert big.min() >= 0 and big.max() <= 2
    assert torch.equal(AdaDecay.theta(torch.full((7,), -0.3), 4.0), torch.ones(7))  # std = 0
    assert torch.equal(AdaDecay.theta(torch.tensor([2.5]), 4.0), torch.ones(1))


def test_adadecay_theta_mean_is_one_for_symmetric_normalised_magnitudes():
    # θ − 1 = tanh(α z / 2) is odd in z, so the layer mean of θ is 1 exactly when the standardised |g| are
    # symmetric about their mean (the paper's E θ = 1); evenly spaced magnitudes with random signs are symmetric.
    signs = torch.where(torch.rand(1001, generator=torch.Generator().manual_seed(0)) < 0.5, -1.0, 1.0)
    g = signs * torch.linspace(0.01, 5.0, 1001, dtype=torch.float64)
    assert AdaDecay.theta(g, 4.0).mean().item() == pytest.approx(1.0, abs=1e-9)
    uniform = torch.rand(20_000, generator=torch.Generator().manual_seed(1), dtype=torch.float64) - 0.5
    assert AdaDecay.theta(uniform, 4.0).mean().item() == pytest.approx(1.0, abs=0.02)


def test_adadecay_apply_adds_wd_theta_w_per_tensor():
    model = small_cnn()
    backward(model)
    before = [(p.detach().clone(), p.grad.clone()) for p in model.parameters()]
    wd = AdaDecay(model.parameters(), wd=2e-3, alpha=4.0)
    assert wd.apply_().item() == pytest.approx(2e-3)
    decay_sq = 0.0
    for p, (w0, g0) in zip(model.parameters(), before):
        mag = g0.abs()
        theta = 2 / (1 + torch.exp(-4.0 * (mag - mag.mean()) / mag.std(correction=0)))
        torch.testing.assert_close(p.grad, g0 + 2e-3 * theta * w0)
        decay_sq += float(((2e-3 * theta * w0) ** 2).sum())
    g_norm = math.sqrt(sum(float((g0**2).sum()) for _, g0 in before))
    assert wd.dog().item() == pytest.approx(math.sqrt(decay_sq) / g_norm, rel=1e-5)


def test_no_weight_decay_leaves_gradients_alone():
    model = small_cnn()
    backward(model)
    before = [p.grad.clone() for p in model.parameters()]
    wd = build_weight_decay("none", model.parameters())
    assert wd.apply_().item() == 0 and wd.dog().item() == 0
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), before))


@pytest.mark.parametrize("method", ["fixed", "awd", "adadecay"])
def test_parameters_without_gradient_are_skipped(method):
    model = small_cnn()
    model[0].bias.requires_grad_(False)
    wd = build_weight_decay(method, model, wd=1e-3, dog=0.02)
    backward(model)
    wd.apply_()
    assert model[0].bias.grad is None
    assert math.isfinite(wd.dog().item()) and wd.dog().item() > 0


@pytest.mark.parametrize("method", ["fixed", "awd", "adadecay"])
def test_state_dict_round_trip_resumes_identically(method):
    def run(model, opt, wd, steps):
        lams = []
        for s in steps:
            opt.zero_grad()
            backward(model, seed=s)
            lams.append(wd.apply_().clone())
            opt.step()
        return lams

    def fresh():
        model = small_cnn()
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        return model, opt, build_weight_decay(method, model, wd=1e-3, dog=0.02)

    model, opt, wd = fresh()
    straight = run(model, opt, wd, range(6))

    model, opt, wd = fresh()
    run(model, opt, wd, range(3))
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "wd": wd.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    model2, opt2, wd2 = fresh()
    model2.load_state_dict(saved["model"])
    opt2.load_state_dict(saved["opt"])
    wd2.load_state_dict(saved["wd"])
    torch.testing.assert_close(wd2.dog(), wd.dog(), rtol=0, atol=0)
    resumed = run(model2, opt2, wd2, range(3, 6))
    for a, b in zip(straight[3:], resumed):
        assert torch.equal(a, b)
    for p, q in zip(model.parameters(), model2.parameters()):
        assert p.shape == q.shape
    final = small_cnn()
    final_opt = torch.optim.SGD(final.parameters(), lr=0.1, momentum=0.9)
    run(final, final_opt, build_weight_decay(method, final, wd=1e-3, dog=0.02), range(6))
    for p, q in zip(final.parameters(), model2.parameters()):
        assert torch.equal(p, q)


def test_load_state_dict_rejects_missing_keys():
    wd = AdaptiveWeightDecay(small_cnn().parameters(), dog=0.02)
    with pytest.raises(KeyError, match="dog"):
        wd.load_state_dict({"lam": torch.tensor(0.1)})


def test_exclude_bn_bias_leaves_them_out_of_norms_and_decay():
    model = small_cnn()
    decayed = [model[0].weight, model[4].weight]
    wd = build_weight_decay("awd", model, dog=0.05, ema=1.0, exclude_bn_bias=True)
    assert {id(p) for p in wd.params} == {id(p) for p in decayed}
    via_names = build_weight_decay(
        "awd", model.parameters(), dog=0.05, exclude_bn_bias=True, named_params=model.named_parameters()
    )
    assert {id(p) for p in via_names.params} == {id(p) for p in decayed}

    backward(model)
    before = {id(p): p.grad.clone() for p in model.parameters()}
    g = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in decayed]))
    w = torch.linalg.vector_norm(torch.cat([p.detach().flatten() for p in decayed]))
    lam = wd.apply_()
    torch.testing.assert_close(lam, 0.05 * g / w)
    for p in model.parameters():
        if any(p is q for q in decayed):
            torch.testing.assert_close(p.grad, before[id(p)] + lam * p.detach())
        else:
            assert torch.equal(p.grad, before[id(p)])


def test_bn_bias_params_by_module_type_and_by_name():
    model = nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3), nn.Linear(3, 2, bias=False))
    by_module = {id(p) for p in bn_bias_params(model)}
    assert by_module == {id(model[0].bias), id(model[1].weight), id(model[1].bias)}
    assert {id(p) for p in bn_bias_params(model.named_parameters())} == by_module


def test_build_weight_decay_rejects_bad_arguments():
    params = list(small_cnn().parameters())
    with pytest.raises(ValueError, match="method.*'l1'"):
        build_weight_decay("l1", params)
    with pytest.raises(ValueError, match="wd"):
        build_weight_decay("fixed", params)
    with pytest.raises(ValueError, match="dog"):
        build_weight_decay("awd", params)
    with pytest.raises(ValueError, match="dog must be > 0"):
        build_weight_decay("awd", params, dog=0.0)
    with pytest.raises(ValueError, match="ema"):
        build_weight_decay("awd", params, dog=0.02, ema=1.5)
    with pytest.raises(ValueError, match="wd must be a finite number >= 0, got -1"):
        build_weight_decay("fixed", params, wd=-1)
    with pytest.raises(ValueError, match="named_params"):
        build_weight_decay("fixed", params, wd=1e-3, exclude_bn_bias=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="host-device sync can only be observed on CUDA")
@pytest.mark.parametrize("method", ["none", "fixed", "awd", "adadecay"])
def test_apply_does_not_synchronise_with_the_host(method):
    model = small_cnn().cuda()
    wd = build_weight_decay(method, model, wd=1e-3, dog=0.02)
    x, y = (t.cuda() for t in batch())
    nn.functional.cross_entropy(model(x), y).backward()
    torch.cuda.set_sync_debug_mode("error")
    try:
        wd.apply_()
        wd.dog()
    finally:
        torch.cuda.set_sync_debug_mode("default")
