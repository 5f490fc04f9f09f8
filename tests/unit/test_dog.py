import io

import numpy as np
import pytest
import torch

from awd.dog import DoGTrace
from awd.dog_estimate import estimate_dog, estimate_dog_from_epochs, plateau_epoch, running_mean


def feed(trace, lams, dogs, epoch_len):
    for i, (lam, dog) in enumerate(zip(lams, dogs)):
        trace.record(torch.tensor(lam), torch.tensor(dog))
        if (i + 1) % epoch_len == 0:
            trace.end_epoch()


def test_trace_downsamples_and_keeps_exact_epoch_means():
    lams = np.arange(10, dtype=np.float64) / 10
    dogs = np.arange(10, dtype=np.float64) ** 2
    trace = DoGTrace(every=3)
    feed(trace, lams, dogs, epoch_len=5)
    out = trace.flush()
    assert out["iteration"].tolist() == [0, 3, 6, 9]
    np.testing.assert_allclose(out["lam"], lams[[0, 3, 6, 9]], rtol=1e-6)
    np.testing.assert_allclose(out["dog"], dogs[[0, 3, 6, 9]], rtol=1e-6)
    np.testing.assert_allclose(out["epoch_dog"], [dogs[:5].mean(), dogs[5:].mean()], rtol=1e-6)
    np.testing.assert_allclose(out["epoch_lam"], [lams[:5].mean(), lams[5:].mean()], rtol=1e-6)
    assert out["epoch_iters"].tolist() == [5, 5]


def test_flush_accumulates_across_calls():
    trace = DoGTrace()
    feed(trace, [1.0, 2.0], [0.1, 0.2], epoch_len=2)
    first = trace.flush()
    feed(trace, [3.0], [0.3], epoch_len=1)
    second = trace.flush()
    assert first["iteration"].tolist() == [0, 1]
    assert second["iteration"].tolist() == [0, 1, 2]
    np.testing.assert_allclose(second["dog"], [0.1, 0.2, 0.3], rtol=1e-6)
    np.testing.assert_allclose(second["epoch_dog"], [0.15, 0.3], rtol=1e-6)


def test_trace_state_round_trip_continues_like_an_uninterrupted_trace():
    rng = np.random.default_rng(0)
    lams, dogs = rng.random(14), rng.random(14)
    straight = DoGTrace(every=2)
    feed(straight, lams, dogs, epoch_len=4)

    part = DoGTrace(every=2)
    feed(part, lams[:9], dogs[:9], epoch_len=4)  # stops inside epoch 2
    buf = io.BytesIO()
    torch.save(part.state_dict(), buf)
    buf.seek(0)
    resumed = DoGTrace(every=2)
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    for i in range(9, 14):
        resumed.record(torch.tensor(lams[i]), torch.tensor(dogs[i]))
        if (i + 1) % 4 == 0:
            resumed.end_epoch()
    a, b = straight.flush(), resumed.flush()
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-6)
    with pytest.raises(ValueError, match="every"):
        DoGTrace(every=3).load_state_dict(part.state_dict())


def test_trace_rejects_bad_every():
    with pytest.raises(ValueError, match="every must be an int >= 1, got 0"):
        DoGTrace(every=0)


def test_running_mean_against_manual():
    x = [4.0, 2.0, 0.0, 2.0]
    np.testing.assert_allclose(running_mean(x), [4.0, 3.0, 2.0, 2.0])


def synthetic_losses(drop_epochs=7, flat_epochs=8):
    """Loss halves for `drop_epochs` epochs, then creeps down by 0.1 % per epoch: the plateau starts at index 6."""
    falling = [2.0**-e for e in range(drop_epochs)]
    flat = [falling[-1] * (1 - 0.001 * k) for k in range(1, flat_epochs + 1)]
    return falling + flat


def test_plateau_epoch_finds_the_knee_of_a_known_curve():
    assert plateau_epoch(synthetic_losses(), window=3, rel_tol=0.05) == 6
    # a tolerance looser than one halving: epoch 5 (twice the floor) still does not count, 2^-6 does
    assert plateau_epoch(synthetic_losses(), window=3, rel_tol=0.6) == 6
    # within a factor 1.99 of a floor of 1.0: epoch 1 (loss 2.0) is not, epoch 2 is
    assert plateau_epoch([4.0, 2.0, 1.0, 1.0, 1.0, 1.0], window=1, rel_tol=0.99) == 2
    assert plateau_epoch([4.0, 1.99, 1.0, 1.0, 1.0, 1.0], window=1, rel_tol=0.99) == 1


def stalled_losses():
    """Falls from 2.0 to 0.5 in 3 epochs, stalls there for 6 epochs (within 0.5 %), falls again by 100x and
    flattens at 0.005 from epoch 12 on: a stall at high learning rate, then the floor."""
    falling = [2.0, 1.0, 0.5]
    stall = [0.5 * (1 - 0.001 * k) for k in range(1, 7)]
    second = [0.2, 0.05, 0.01]
    floor = [0.005 * (1 - 0.002 * k) for k in range(8)]
    return falling + stall + second + floor


def test_plateau_epoch_ignores_a_mid_training_stall():
    losses = stalled_losses()
    assert len(losses) == 20 and losses[12] == 0.005
    for window, rel_tol in ((2, 0.05), (5, 0.05), (3, 0.2)):
        assert plateau_epoch(losses, window=window, rel_tol=rel_tol) == 12
    # the stall alone (a run cut before the second fall) is a floor: there the rule does fire
    assert plateau_epoch(losses[:9], window=2, rel_tol=0.05) == 2


def test_plateau_epoch_without_plateau_is_the_last_epoch():
    assert plateau_epoch([2.0**-e for e in range(10)], window=2, rel_tol=0.05) == 9
    # the flat tail is shorter than the window after it: no full window, so no plateau
    assert plateau_epoch(synthetic_losses(flat_epochs=2), window=3, rel_tol=0.05) == 8


def test_plateau_epoch_rejects_bad_input():
    with pytest.raises(ValueError, match="rel_tol"):
        plateau_epoch([1.0, 0.5], window=1, rel_tol=0.0)
    with pytest.raises(ValueError, match="window"):
        plateau_epoch([1.0, 0.5], window=0, rel_tol=0.1)
    with pytest.raises(ValueError, match="epoch_losses"):
        plateau_epoch([1.0, -0.5], window=1, rel_tol=0.1)


def test_estimate_dog_averages_up_to_the_end_of_the_plateau_epoch():
    losses = synthetic_losses()  # plateau at epoch 6
    ipe = 4
    dog = np.repeat(np.arange(len(losses), dtype=np.float64), ipe) / 100  # epoch e has DoG e/100
    value, epoch = estimate_dog(dog, ipe, losses, window=3, rel_tol=0.05)
    assert epoch == 6
    assert value == pytest.approx(np.mean(np.arange(7)) / 100)  # iterations 0 .. 27
    counts = [3] * len(losses)
    dog3 = np.repeat(np.arange(len(losses), dtype=np.float64), 3) / 100
    assert estimate_dog(dog3, counts, losses, window=3, rel_tol=0.05) == (pytest.approx(0.03), 6)


def test_estimate_dog_rejects_a_trace_too_short_for_the_plateau_epoch():
    losses = synthetic_losses()
    with pytest.raises(ValueError, match="dog_per_iter has 10 values.*ends at iteration 28"):
        estimate_dog(np.ones(10), 4, losses, window=3, rel_tol=0.05)
    with pytest.raises(ValueError, match="iters_per_epoch"):
        estimate_dog(np.ones(100), [4, 4], losses, window=3, rel_tol=0.05)


def test_estimate_from_epoch_means_equals_the_per_iteration_estimate_for_any_every():
    losses = synthetic_losses()
    counts = [3 + (e % 3) for e in range(len(losses))]  # uneven epochs, as with a short last batch
    rng = np.random.default_rng(2)
    dogs = rng.random(sum(counts))
    expected = estimate_dog(dogs, counts, losses, window=3, rel_tol=0.05)
    for every in (1, 4):
        trace = DoGTrace(every=every)
        i = 0
        for c in counts:
            for _ in range(c):
                trace.record(torch.tensor(0.0), torch.tensor(dogs[i]))
                i += 1
            trace.end_epoch()
        out = trace.flush()
        value, epoch = estimate_dog_from_epochs(out["epoch_dog"], out["epoch_iters"], losses, 3, 0.05)
        assert epoch == expected[1] == 6
        assert value == pytest.approx(expected[0], rel=1e-6)
    with pytest.raises(ValueError, match="one entry per epoch"):
        estimate_dog_from_epochs([0.1], [4], losses, 3, 0.05)
