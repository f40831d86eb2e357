import pytest

from neunn.training.schedule import ema_decay_at, lr_at


def test_warmup_is_linear_then_cosine_reaches_the_floor():
    kw = dict(total_steps=100, warmup_steps=10, base_lr=1.0, min_lr_ratio=0.1)
    assert lr_at(0, **kw) == pytest.approx(0.1)
    assert lr_at(4, **kw) == pytest.approx(0.5)
    assert lr_at(10, **kw) == pytest.approx(1.0)
    assert lr_at(55, **kw) == pytest.approx(0.1 + 0.9 * 0.5)  # half-way through the decay
    assert lr_at(100, **kw) == pytest.approx(0.1)
    values = [lr_at(s, **kw) for s in range(10, 100)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_no_warmup_starts_at_the_base_rate():
    assert lr_at(0, total_steps=10, warmup_steps=0, base_lr=3e-3, min_lr_ratio=0.0) == pytest.approx(3e-3)


def test_ema_decay_warms_up_then_holds_the_configured_decay():
    assert ema_decay_at(0, 0.999) == pytest.approx(0.1)
    assert ema_decay_at(90, 0.999) == pytest.approx(0.91)
    values = [ema_decay_at(s, 0.999) for s in range(20_000)]
    assert all(a <= b for a, b in zip(values, values[1:]))
    assert values[-1] == 0.999
