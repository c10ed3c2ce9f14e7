"""The reconnect policy: ``Backoff`` delays, jitter, giving up and validation."""

from __future__ import annotations

import itertools
import math
import random
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_clientsocket import Backoff

positive = st.floats(min_value=1e-3, max_value=1e3, allow_nan=False, allow_infinity=False)
factors = st.floats(min_value=0.1, max_value=10.0, allow_nan=False, allow_infinity=False)
retries = st.integers(min_value=1, max_value=2000)
fractions = st.floats(min_value=0.0, max_value=1.0, exclude_min=True)


def expected_base(initial: float, factor: float, maximum: float, n: int) -> float:
    """min(maximum, initial * factor ** (n - 1)), with an overflow meaning maximum."""
    try:
        return min(maximum, initial * factor ** (n - 1))
    except OverflowError:
        return maximum


def test_documented_exact_schedule() -> None:
    b = Backoff(initial=0.5, factor=2, maximum=4, jitter=0)
    assert [b.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_defaults() -> None:
    b = Backoff()
    assert (b.initial, b.factor, b.maximum, b.jitter) == (1.0, 2.0, 30.0, 0.5)
    assert b.max_attempts is None
    assert b.min_uptime == 5.0
    exact = Backoff(jitter=0)
    assert [exact.delay(n) for n in range(1, 8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


@settings(max_examples=200, deadline=None)
@given(initial=positive, factor=factors, maximum=positive, n=retries)
def test_exact_schedule_without_jitter(
    initial: float, factor: float, maximum: float, n: int
) -> None:
    b = Backoff(initial=initial, factor=factor, maximum=maximum, jitter=0)
    delay = b.delay(n)
    assert isinstance(delay, float)
    assert delay == expected_base(initial, factor, maximum, n)
    assert delay <= maximum


@settings(max_examples=100, deadline=None)
@given(initial=positive, factor=st.floats(min_value=1.0, max_value=10.0), maximum=positive)
def test_schedule_never_decreases_when_factor_at_least_one(
    initial: float, factor: float, maximum: float
) -> None:
    b = Backoff(initial=initial, factor=factor, maximum=maximum, jitter=0)
    delays = [b.delay(n) for n in range(1, 50)]
    assert delays == sorted(delays)


@settings(max_examples=200, deadline=None)
@given(
    initial=positive,
    factor=factors,
    maximum=positive,
    jitter=fractions,
    seed=st.integers(min_value=0, max_value=2**32),
    n=retries,
)
def test_jittered_delay_lies_between_shortened_and_base(
    initial: float, factor: float, maximum: float, jitter: float, seed: int, n: int
) -> None:
    b = Backoff(
        initial=initial, factor=factor, maximum=maximum, jitter=jitter, rng=random.Random(seed)
    )
    base = expected_base(initial, factor, maximum, n)
    for _ in range(5):
        delay = b.delay(n)
        assert base * (1 - jitter) <= delay <= base


def test_jitter_spreads_the_delays() -> None:
    b = Backoff(initial=10, factor=1, maximum=10, jitter=0.5, rng=random.Random(1234))
    delays = [b.delay(1) for _ in range(500)]
    assert len(set(delays)) > 400
    assert min(delays) < 5.5
    assert max(delays) > 9.5
    assert all(5.0 <= d <= 10.0 for d in delays)


def test_full_jitter_can_come_close_to_zero() -> None:
    b = Backoff(initial=8, factor=1, maximum=8, jitter=1, rng=random.Random(7))
    delays = [b.delay(1) for _ in range(500)]
    assert all(0.0 <= d <= 8.0 for d in delays)
    assert min(delays) < 0.5


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**64), jitter=fractions)
def test_same_seed_same_schedule(seed: int, jitter: float) -> None:
    def schedule(b: Backoff) -> list[float | None]:
        return list(itertools.islice(b.schedule(), 30))

    first = Backoff(jitter=jitter, rng=random.Random(seed))
    second = Backoff(jitter=jitter, rng=random.Random(seed))
    assert schedule(first) == schedule(second)


def test_different_seeds_give_different_schedules() -> None:
    def schedule(seed: int) -> list[float]:
        b = Backoff(jitter=0.5, rng=random.Random(seed))
        return [b.delay(n) for n in range(1, 11)]

    assert schedule(1) == schedule(1)
    assert schedule(1) != schedule(2)


def test_gives_up_after() -> None:
    b = Backoff(max_attempts=3)
    assert not b.gives_up_after(0)
    assert not b.gives_up_after(1)
    assert not b.gives_up_after(2)
    assert b.gives_up_after(3)
    assert b.gives_up_after(4)


def test_never_gives_up_without_max_attempts() -> None:
    b = Backoff()
    assert not any(b.gives_up_after(n) for n in (0, 1, 10, 10**6, sys.maxsize))


def test_schedule_documented_example() -> None:
    assert list(Backoff(initial=2, jitter=0, max_attempts=3).schedule()) == [2.0, 4.0, None]


@settings(max_examples=50, deadline=None)
@given(max_attempts=st.integers(min_value=1, max_value=60), initial=positive, factor=factors)
def test_schedule_with_max_attempts(max_attempts: int, initial: float, factor: float) -> None:
    b = Backoff(initial=initial, factor=factor, maximum=100, jitter=0, max_attempts=max_attempts)
    items = list(itertools.islice(b.schedule(), max_attempts + 10))
    assert len(items) == max_attempts
    assert items[-1] is None
    assert items[:-1] == [b.delay(n) for n in range(1, max_attempts)]
    assert all(item is not None for item in items[:-1])


def test_schedule_with_one_attempt_gives_up_at_once() -> None:
    assert list(Backoff(max_attempts=1).schedule()) == [None]


def test_schedule_without_max_attempts_is_endless() -> None:
    items = list(itertools.islice(Backoff(jitter=0, maximum=8).schedule(), 1000))
    assert len(items) == 1000
    assert None not in items
    assert items[:5] == [1.0, 2.0, 4.0, 8.0, 8.0]


@pytest.mark.parametrize("field", ["initial", "factor", "maximum"])
@pytest.mark.parametrize("value", [0, 0.0, -1, -0.5, math.nan])
def test_non_positive_times_rejected(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"{field} must be > 0"):
        Backoff(**{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [-0.1, -1, 1.0001, 2, math.nan])
def test_jitter_outside_unit_interval_rejected(value: float) -> None:
    with pytest.raises(ValueError, match="jitter must be between 0 and 1"):
        Backoff(jitter=value)


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_jitter_bounds_accepted(value: float) -> None:
    assert Backoff(jitter=value).jitter == value


@pytest.mark.parametrize("value", [0, -1, -100])
def test_max_attempts_below_one_rejected(value: int) -> None:
    with pytest.raises(ValueError, match="max_attempts must be None or >= 1"):
        Backoff(max_attempts=value)


@pytest.mark.parametrize("n", [0, -1, -(10**9)])
def test_delay_of_retry_below_one_rejected(n: int) -> None:
    with pytest.raises(ValueError, match="retry number must be >= 1"):
        Backoff().delay(n)


@pytest.mark.parametrize("n", [1100, 10**6, 10**9, sys.maxsize])
def test_huge_retry_number_returns_maximum(n: int) -> None:
    b = Backoff(initial=1.0, factor=2.0, maximum=30.0, jitter=0)
    assert b.delay(n) == 30.0


def test_huge_retry_number_with_int_parameters_returns_maximum() -> None:
    b = Backoff(initial=1, factor=2, maximum=30, jitter=0)
    delay = b.delay(10_000)
    assert delay == 30.0
    assert isinstance(delay, float)


def test_huge_retry_number_with_jitter_stays_in_range() -> None:
    b = Backoff(maximum=30.0, jitter=0.5, rng=random.Random(0))
    for _ in range(100):
        assert 15.0 <= b.delay(sys.maxsize) <= 30.0


def test_rng_not_part_of_equality() -> None:
    assert Backoff(rng=random.Random(1)) == Backoff(rng=random.Random(2))
    assert Backoff(initial=2) != Backoff(initial=3)
