import pytest
import torch
import torch.nn.functional as F

from awd.data import augment, load_dataset, to_float
from awd.models import MODEL_NAMES, build_model, count_parameters
from awd.models.normalize import CIFAR_MEAN, CIFAR_STD


def _count_on_meta(name, num_classes, **kw):
    # Meta tensors: the 36 M-parameter WRN is counted without allocating or initialising its weights.
    with torch.device("meta"):
        return count_parameters(build_model(name, num_classes, **kw))


@pytest.mark.parametrize(
    "name,num_classes,expected",
    [
        ("preact_wrn", 10, 36_479_194),
        ("preact_wrn", 100, 36_536_884),
        ("resnet32", 10, 464_154),
        ("resnet32", 100, 470_004),
        ("resnet34", 10, 21_282_122),
        ("resnet50", 10, 23_520_842),
        ("resnet50", 100, 23_705_252),
    ],
)
def test_parameter_counts(name, num_classes, expected):
    n = _count_on_meta(name, num_classes)
    assert n == expected
    # Published sizes: WRN-28-10 36.5 M, ResNet-32 0.46 M, CIFAR ResNet-34 21.3 M, ResNet-50 23.5 M (10 classes).
    published = {"preact_wrn": 36.5e6, "resnet32": 0.46e6, "resnet34": 21.3e6, "resnet50": 23.5e6}[name]
    if num_classes == 10:
        assert abs(n - published) / published < 0.01


def test_tiny_is_small():
    assert _count_on_meta("tiny", 10, in_channels=1) <= 100_000


def test_wrn_depth_and_width_change_size():
    assert _count_on_meta("preact_wrn", 10, depth=16, width=4) < _count_on_meta("preact_wrn", 10, depth=28, width=4)
    assert _count_on_meta("preact_wrn", 10, depth=16, width=2) < _count_on_meta("preact_wrn", 10, depth=16, width=4)


# WRN-28-10 is only counted; its forward is covered by the same code at depth 10, width 2.
SMALL_KW = {"preact_wrn": {"depth": 10, "width": 2}}


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("in_channels,size", [(1, 8), (3, 12), (3, 32)])
def test_output_shape(name, in_channels, size):
    torch.manual_seed(0)
    model = build_model(name, 7, in_channels=in_channels, **SMALL_KW.get(name, {})).eval()
    with torch.no_grad():
        out = model(torch.rand(2, in_channels, size, size))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_normalisation_is_inside(name):
    torch.manual_seed(0)
    mean, std = [0.2, 0.4, 0.6], [0.5, 0.25, 0.125]
    model = build_model(name, 5, mean=mean, std=std, **SMALL_KW.get(name, {})).eval()
    x = torch.rand(2, 3, 8, 8)
    manual = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.body(manual))
        # Shifting the mean must change the logits, i.e. the normalisation is really applied.
        assert not torch.allclose(model.body(x), model(x))


def test_default_normalisation():
    rgb = build_model("tiny", 10, in_channels=3)
    assert rgb.normalize.mean.flatten().tolist() == pytest.approx(CIFAR_MEAN)
    assert rgb.normalize.std.flatten().tolist() == pytest.approx(CIFAR_STD)
    gray = build_model("tiny", 10, in_channels=1)
    assert gray.normalize.mean.flatten().tolist() == [0.5]
    assert gray.normalize.std.flatten().tolist() == [0.5]
    # One number broadcasts over channels.
    assert build_model("tiny", 10, mean=0.1, std=0.2).normalize.std.flatten().tolist() == pytest.approx([0.2] * 3)


def test_gradient_reaches_pixels():
    model = build_model("resnet32", 10).eval()
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    F.cross_entropy(model(x), torch.tensor([1, 2])).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["tiny", "resnet32", "preact_wrn", "resnet34"])
def test_channels_last(name):
    torch.manual_seed(0)
    model = build_model(name, 10, **SMALL_KW.get(name, {})).eval()
    x = torch.rand(2, 3, 12, 12)
    with torch.no_grad():
        ref = model(x)
        model = model.to(memory_format=torch.channels_last)
        out = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_state_dict_round_trip_with_weights_only(tmp_path):
    torch.manual_seed(0)
    model = build_model("tiny", 10, in_channels=1, mean=0.3, std=0.4).eval()
    torch.save(model.state_dict(), tmp_path / "m.pt")
    other = build_model("tiny", 10, in_channels=1).eval()
    other.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(other(x), model(x))
    assert other.normalize.mean.item() == pytest.approx(0.3)


def test_wrn_dropout_only_in_training():
    torch.manual_seed(0)
    model = build_model("preact_wrn", 10, depth=10, width=1, dropout=0.5)
    x = torch.rand(4, 3, 8, 8)
    model.train()
    assert not torch.allclose(model(x), model(x))
    model.eval()
    torch.testing.assert_close(model(x), model(x))


def test_unknown_model_lists_names():
    with pytest.raises(ValueError, match=r"'vgg16'.*preact_wrn.*resnet32.*resnet34.*resnet50.*tiny"):
        build_model("vgg16", 10)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(name="tiny", num_classes=10, depth=28), r"unknown keyword.*depth.*allowed"),
        (dict(name="preact_wrn", num_classes=10, depth=27), r"depth=27"),
        (dict(name="preact_wrn", num_classes=10, dropout=1.5), r"dropout=1.5"),
        (dict(name="tiny", num_classes=1), r"num_classes=1"),
        (dict(name="tiny", num_classes=10, in_channels=0), r"in_channels=0"),
        (dict(name="tiny", num_classes=10, in_channels=2), r"in_channels=2.*mean"),
        (dict(name="tiny", num_classes=10, mean=[0.5, 0.5]), r"mean=.*2 values"),
        (dict(name="tiny", num_classes=10, std=[0.5, 0.0, 0.5]), r"std=.*> 0"),
        (dict(name="tiny", num_classes=10, std="big"), r"std='big'"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_model(**kwargs)


def test_tiny_learns_digits():
    # The embedded default relies on `tiny` (width 8) fitting digits quickly; a few SGD epochs must exceed 90 %.
    torch.manual_seed(0)
    train, test = load_dataset("digits", train=True), load_dataset("digits", train=False)
    model = build_model("tiny", train.num_classes, in_channels=1, width=8)  # the embedded default's width
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    x_train = to_float(train.x)
    for _ in range(8):
        model.train()
        for idx in torch.randperm(len(train), generator=g).split(64):
            loss = F.cross_entropy(model(augment(x_train[idx], g, pad=1, flip=False)), train.y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(to_float(test.x)).argmax(1) == test.y).float().mean().item()
    assert acc > 0.9


def test_wrn_blocks_are_pre_activation():
    # Rice et al.'s WRN: where the shape changes, the 1x1 shortcut reads the BN-ReLU'd input, not the raw one.
    torch.manual_seed(0)
    wrn = build_model("preact_wrn", 10, depth=10, width=2).body.eval()
    block = wrn.block2[0]
    x = torch.randn(2, 32, 8, 8)
    with torch.no_grad():
        act = F.relu(block.bn1(x))
        expected = block.conv2(F.relu(block.bn2(block.conv1(act)))) + block.shortcut(act)
        torch.testing.assert_close(block(x), expected)
        assert block.conv1.stride == (2, 2) and block.shortcut.stride == (2, 2)
    assert wrn.block1[0].shortcut is not None  # 16 -> 32 channels
    assert all(b.shortcut is None for b in list(wrn.block1)[1:] + list(wrn.block3)[1:])
