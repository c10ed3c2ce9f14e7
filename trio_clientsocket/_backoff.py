"""The reconnect policy: a pure, deterministic-under-a-seed backoff schedule."""

from __future__ import annotations

import random
from collections.abc import Iterator

import attrs

__all__ = ["Backoff"]


def _positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


def _fraction(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0 <= value <= 1:
        raise ValueError(f"{attribute.name} must be between 0 and 1, got {value!r}")


def _attempts(_: object, attribute: attrs.Attribute[int | None], value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{attribute.name} must be None or >= 1, got {value!r}")


@attrs.frozen
class Backoff:
    """How long to wait before each reconnect attempt, and when to give up.

    The wait before retry *n* (n = 1 after the first failure) is
    ``min(maximum, initial * factor ** (n - 1))``, shortened by a random fraction
    of up to ``jitter`` of itself, so that many clients of a restarted server do
    not all come back at the same instant (RFC 6455, section 7.2.3). With
    ``jitter=0`` the schedule is exact.

    Every failed attempt counts, the first connect included. After
    ``max_attempts`` consecutive failures the socket gives up
    (``ConnectionFailed.retry_in is None``). The count starts again only once a
    connection has stayed up for ``min_uptime`` seconds, so a server that accepts
    and closes at once never causes a tight loop.

    Defaults (1 s doubling to 30 s, each wait drawn from its upper half, forever,
    reset after 5 s up) sit between the peers: websockets waits a random 0-5 s
    then 3.1 s x 1.618 up to 90 s, reconnecting-websocket 1-5 s x 1.3 up to 10 s
    with a 5 s ``minUptime``, SignalR 0, 2, 10, 30 s then stops, and the GeneXus
    web runtime 2.5 s x attempt for 6 tries.

    Examples:
        >>> b = Backoff(initial=0.5, factor=2, maximum=4, jitter=0)
        >>> [b.delay(n) for n in range(1, 6)]
        [0.5, 1.0, 2.0, 4.0, 4.0]
        >>> Backoff(max_attempts=3).gives_up_after(3)
        True
    """

    initial: float = attrs.field(default=1.0, converter=float, validator=_positive)
    """Wait before the first retry, in seconds (before jitter)."""
    factor: float = attrs.field(default=2.0, converter=float, validator=_positive)
    """Each wait is the previous one times this factor."""
    maximum: float = attrs.field(default=30.0, converter=float, validator=_positive)
    """Upper bound of any wait, in seconds."""
    jitter: float = attrs.field(default=0.5, converter=float, validator=_fraction)
    """Fraction (0..1) by which each wait is randomly shortened."""
    max_attempts: int | None = attrs.field(default=None, validator=_attempts)
    """Consecutive failures after which to give up; None retries forever."""
    min_uptime: float = attrs.field(default=5.0, kw_only=True, converter=float)
    """Seconds a connection must stay up before the failure count resets."""
    rng: random.Random = attrs.field(
        factory=random.Random, kw_only=True, eq=False, repr=False
    )
    """The source of jitter; pass ``random.Random(seed)`` for a repeatable schedule."""

    def __attrs_post_init__(self) -> None:
        if not self.min_uptime >= 0:
            raise ValueError(f"min_uptime must be >= 0, got {self.min_uptime!r}")

    def delay(self, n: int) -> float:
        """The wait before retry ``n`` (1-based), jitter applied.

        Examples:
            >>> Backoff(initial=1, factor=3, maximum=100, jitter=0).delay(3)
            9.0
        """
        if n < 1:
            raise ValueError(f"retry number must be >= 1, got {n}")
        try:
            base = min(self.maximum, self.initial * self.factor ** (n - 1))
        except OverflowError:
            base = self.maximum
        if self.jitter:
            base *= 1.0 - self.jitter * self.rng.random()
        return base

    def gives_up_after(self, failures: int) -> bool:
        """True when ``failures`` consecutive failures exhaust ``max_attempts``.

        Examples:
            >>> Backoff(max_attempts=2).gives_up_after(1)
            False
        """
        return self.max_attempts is not None and failures >= self.max_attempts

    def schedule(self) -> Iterator[float | None]:
        """The waits after failure 1, 2, ...; None once the policy gives up.

        Examples:
            >>> list(Backoff(initial=2, jitter=0, max_attempts=3).schedule())
            [2.0, 4.0, None]
        """
        n = 1
        while not self.gives_up_after(n):
            yield self.delay(n)
            n += 1
        yield None
