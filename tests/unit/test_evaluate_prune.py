import math

import pytest
import torch
from torch import nn

from awd.evaluate import accuracy, cross_entropy, per_example_correct, total_loss, weight_norm
from awd.prune import global_l1, sparsity


def cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Flatten(),
        nn.Linear(6 * 5 * 5, 4),
    )


def images(n=37, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, 5, 5), generator=g, dtype=torch.uint8), torch.randint(0, 4, (n,), generator=g)


def reference_logits(model, x):
    model.eval()
    with torch.no_grad():
        return model(x.float() / 255)


def warm_bn(model, x):
    """Give BatchNorm non-trivial running statistics so that train and eval mode differ."""
    model.train()
    with torch.no_grad():
        model(x.float() / 255 * 3 + 1)


def test_accuracy_and_per_example_correct_match_a_manual_eval_forward():
    model = cnn()
    x, y = images()
    warm_bn(model, x)
    expected = reference_logits(model, x).argmax(1) == y
    model.train()
    correct = per_example_correct(model, x, y, batch_size=5)
    assert correct.dtype == torch.bool and torch.equal(correct, expected)
    assert accuracy(model, x, y, batch_size=5) == pytest.approx(expected.double().mean().item())
    assert accuracy(model, x.float() / 255, y, batch_size=512) == pytest.approx(expected.double().mean().item())


def test_evaluation_restores_each_module_mode():
    model = cnn()
    x, y = images()
    model.train()
    model[3].eval()  # a mixed state must survive
    accuracy(model, x, y)
    cross_entropy(model, x, y)
    assert model.training and model[1].training and not model[3].training


def test_cross_entropy_weight_norm_and_total_loss_against_manual():
    model = cnn()
    x, y = images()
    warm_bn(model, x)
    xent = nn.functional.cross_entropy(reference_logits(model, x), y).item()
    assert cross_entropy(model, x, y, batch_size=8) == pytest.approx(xent, rel=1e-6)
    norm = math.sqrt(sum(float((p.detach().double() ** 2).sum()) for p in model.parameters()))
    assert weight_norm(model) == pytest.approx(norm, rel=1e-6)
    assert total_loss(model, x, y, wd=5e-4) == pytest.approx(xent + 5e-4 / 2 * norm**2, rel=1e-6)
    assert total_loss(model, x, y, wd=0.0) == pytest.approx(xent, rel=1e-6)


def test_evaluate_rejects_bad_input():
    model = cnn()
    x, y = images()
    with pytest.raises(ValueError, match="one label per row of x \\(37\\)"):
        accuracy(model, x, y[:-1])
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        accuracy(model, x, y, batch_size=0)
    with pytest.raises(TypeError, match="dtype torch.int64"):
        accuracy(model, x.long(), y)
    with pytest.raises(ValueError, match="wd"):
        total_loss(model, x, y, wd=-1.0)


@pytest.mark.parametrize("amount", [0.3, 0.7, 0.9])
def test_global_l1_prunes_exactly_the_smallest_weights(amount):
    model = cnn()
    original = {k: v.clone() for k, v in model.state_dict().items()}
    pruned = global_l1(model, amount)
    weights = [pruned[0].weight, pruned[5].weight]
    total = sum(w.numel() for w in weights)
    zeros = sum(int((w == 0).sum()) for w in weights)
    assert zeros == round(amount * total)
    assert sparsity(pruned) == pytest.approx(zeros / total)
    # global threshold: every removed weight is no larger in magnitude than every kept one
    before = torch.cat([model[0].weight.detach().flatten(), model[5].weight.detach().flatten()])
    after = torch.cat([w.detach().flatten() for w in weights])
    assert before[after == 0].abs().max() <= before[after != 0].abs().min()
    assert torch.equal(after[after != 0], before[after != 0])
    # permanent: plain parameters, no masks or hooks; biases and BN untouched
    assert not any("_orig" in n or "_mask" in n for n, _ in pruned.named_parameters())
    assert not any("_mask" in n for n, _ in pruned.named_buffers())
    assert isinstance(pruned[0].weight, nn.Parameter) and not pruned[0]._forward_pre_hooks
    assert torch.equal(pruned[0].bias, model[0].bias) and torch.equal(pruned[1].weight, model[1].weight)
    # the original is untouched
    assert all(torch.equal(v, original[k]) for k, v in model.state_dict().items())
    assert sparsity(model) == 0.0


@pytest.mark.parametrize("amount", [0, 1, 1.0, -0.1, 1.5, float("nan"), True])
def test_global_l1_rejects_amounts_outside_the_open_unit_interval(amount):
    with pytest.raises(ValueError, match="amount must be a fraction in \\(0, 1\\)"):
        global_l1(cnn(), amount)


def test_pruning_needs_conv_or_linear_weights():
    with pytest.raises(ValueError, match="no Conv or Linear"):
        global_l1(nn.Sequential(nn.BatchNorm1d(3)), 0.5)
