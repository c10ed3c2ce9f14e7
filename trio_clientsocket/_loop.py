"""The reconnect loop: one ``Run`` from ``open()`` until ``close()``, giving up,
or the next ``open()``. It dials, serves each session until it ends, reports
every failure, and waits out the backoff; the state machine follows it.
"""

from __future__ import annotations

import inspect
import logging
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TypeAlias

import attrs
import trio

from ._backoff import Backoff
from ._classify import Classify
from ._dial import DialOptions, dial
from ._errors import AttemptError, ConnectTimeout, ProtocolError, TransportError
from ._events import Closed, Connected, ConnectionFailed, Message
from ._handshake import is_token, valid_field_value
from ._queues import EventStream, Outbox, Slot
from ._session import Session
from ._state import ConnectionState, State, Trigger
from ._stats import Counters
from ._url import Target, parse_url, redact_url
from ._version import __version__

__all__ = [
    "USER_AGENT",
    "Config",
    "Headers",
    "HeadersSource",
    "Run",
    "Shared",
    "UrlSource",
    "header_pairs",
    "with_defaults",
]

log = logging.getLogger("trio_clientsocket")
log.addHandler(logging.NullHandler())

Headers: TypeAlias = Mapping[str, str | None] | Iterable[tuple[str, str | None]]
"""Extra handshake headers: a mapping or (name, value) pairs; the value None
leaves out a header the socket sends by default (``User-Agent``)."""
UrlSource: TypeAlias = str | Callable[[], str | Awaitable[str]]
"""A URL, or a (sync or async) callable evaluated on every attempt."""
HeadersSource: TypeAlias = Headers | Callable[[], Headers | Awaitable[Headers]]
"""Headers, or a (sync or async) callable returning them, evaluated on every attempt."""

_RESERVED = frozenset(
    {
        "host",
        "upgrade",
        "connection",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-accept",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "content-length",
        "transfer-encoding",
    }
)


USER_AGENT = f"trio-clientsocket/{__version__} Python/{sys.version_info[0]}.{sys.version_info[1]}"
"""The ``User-Agent`` header sent unless the ``headers`` option replaces it (or
removes it, with the value None)."""
_REMOVABLE = frozenset({"user-agent"})


def header_pairs(headers: object) -> list[tuple[str, str | None]]:
    """Validate handshake headers; the (name, value) pairs (value None: leave
    out a header the socket sends by default). A name must be a token, a value
    an RFC 9110 field-value in Latin-1 (``_handshake.valid_field_value``). Never
    shows a value in an error: it may be a credential."""
    if headers is None:
        return []
    if isinstance(headers, str | bytes):
        raise TypeError("headers must be a mapping or (name, value) pairs, not a string")
    items = headers.items() if isinstance(headers, Mapping) else headers
    pairs: list[tuple[str, str | None]] = []
    try:
        iterator = iter(items)  # type: ignore[call-overload]
    except TypeError:
        raise TypeError("headers must be a mapping or (name, value) pairs") from None
    for item in iterator:
        if isinstance(item, str | bytes):
            raise TypeError("headers must be a mapping or (name, value) pairs")
        try:
            name, value = item
        except (TypeError, ValueError):
            raise TypeError("headers must be a mapping or (name, value) pairs") from None
        if isinstance(name, str) and value is None and name.lower() in _REMOVABLE:
            pairs.append((name, None))  # leave the default header out
            continue
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError(f"header names and values must be str (header {name!r})")
        if not is_token(name) or not valid_field_value(value):
            raise ValueError(f"invalid header {name!r}")
        if name.lower() in _RESERVED:
            raise ValueError(
                f"header {name!r} is set by the WebSocket handshake itself and cannot be given"
            )
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError(f"header {name!r} has a value that is not Latin-1") from None
        pairs.append((name, value))
    return pairs


def with_defaults(pairs: list[tuple[str, str | None]]) -> list[tuple[str, str]]:
    """The headers to send: the defaults (User-Agent), replaced or removed by
    those given."""
    given = {name.lower() for name, _ in pairs}
    out = [] if "user-agent" in given else [("User-Agent", USER_AGENT)]
    out.extend((name, value) for name, value in pairs if value is not None)
    return out


@attrs.frozen
class Config:
    """The socket's options, as the loop and the session use them."""

    reconnect: Backoff | None
    connect_timeout: float
    ping_interval: float | None
    ping_timeout: float | None
    ping_events: bool
    classify: Classify
    dial: DialOptions
    headers: HeadersSource | None
    visible_keys: frozenset[str]
    connect_limiter: trio.CapacityLimiter | None


class Shared:
    """What the socket's front door and its runs share: the state machine, the
    outbox, the event stream and the counters."""

    __slots__ = ("_changed", "counters", "events", "machine", "outbox")

    def __init__(self, outbox: Outbox, events: EventStream) -> None:
        self.machine = ConnectionState()
        self.outbox = outbox
        self.events = events
        self.counters = Counters()
        self._changed: trio.lowlevel.ParkingLot | None = None

    def fire(self, trigger: Trigger) -> None:
        before = self.machine.status
        self.machine.fire(trigger)
        if self.machine.status is not before:
            log.info("status %s", self.machine.status.value)
        if self._changed:
            self._changed.unpark_all()

    async def wait_changed(self) -> None:
        if self._changed is None:
            self._changed = trio.lowlevel.ParkingLot()
        await self._changed.park()

    def report_undelivered(self, messages: tuple[Message, ...], reason: str) -> None:
        if messages:
            self.counters.dropped += len(messages)
            log.warning("%d message(s) undelivered: %s", len(messages), reason)
            self.events._put_undelivered(messages, reason)  # type: ignore[arg-type]


async def _resolve(value: object) -> object:
    if callable(value):
        value = value()
    if inspect.isawaitable(value):
        value = await value
    return value


class Run:
    """One ``open()`` until ``close()``, giving up, or the next ``open()``."""

    def __init__(
        self,
        url: UrlSource,
        config: Config,
        shared: Shared,
        parsed: tuple[str, Target] | None = None,
    ) -> None:
        self.url_source = url
        # the URL as the socket parsed it to check it: the first attempt's
        # (used only if it is this very URL)
        self._parsed = parsed
        self.config = config
        self.shared = shared
        # Shielded: only the socket ends a run (``stop``, ``abort``), so that a
        # cancelled block can still write the close frame before the stream goes.
        self.scope = trio.CancelScope(shield=True)
        self.session: Session | None = None
        self.url: str | None = None  # the raw URL of the current (or last) attempt
        self.closing = False  # the run is ending: close(), open() of another URL, or gave up
        self.gave_up = False
        self.connections = 0  # handshakes completed
        self.done = trio.Event()
        self.started = Slot()  # where open() waits for the run's first step

    @property
    def shown_url(self) -> str | None:
        """The URL for display: secrets hidden."""
        return redact_url(self.url, self.config.visible_keys) if self.url is not None else None

    async def run(self) -> None:
        """The run's task: the first step wakes ``open()`` (which waits in
        ``started``), then the loop goes on to its first wait before open()
        returns, as ``nursery.start`` would, at less cost."""
        try:
            self.started.wake()
            if not self.closing:  # stopped before its first step: it never dials
                with self.scope:
                    await self._loop()
        finally:
            self._settle()
            self.done.set()

    def _settle(self) -> None:
        """Bring the state machine back to IDLE, however the run ended."""
        shared = self.shared
        state = shared.machine.state
        if state is State.CONNECTED:
            shared.fire(Trigger.CLOSE)
            state = State.CLOSING
        if state is State.CLOSING:
            shared.fire(Trigger.CLOSED)
        elif state is not State.IDLE:
            shared.fire(Trigger.CLOSE)

    async def _loop(self) -> None:
        counters = self.shared.counters
        counters.failures = 0
        while True:
            counters.attempts += 1
            try:
                await self._attempt()
            except Exception as exc:  # classified below; Cancelled is not an Exception
                error: Exception = exc
            else:
                return  # closed on request
            if self.closing or not await self._after_failure(error):
                return

    async def _prepare(self) -> tuple[Target, list[tuple[str, str]]]:
        """Call the ``url`` and ``headers`` callables (inside the attempt's
        ``connect_timeout``) and check what they return: a URL or a header that
        is invalid fails the attempt, fatally, naming it, never a header's value."""
        try:
            url = await _resolve(self.url_source)
            given = await _resolve(self.config.headers)
        except Exception as exc:
            raise AttemptError(f"url or headers callable failed: {exc!r}") from exc
        self.url = url if isinstance(url, str) else repr(url)
        parsed, self._parsed = self._parsed, None  # used once: an idle socket holds none
        # parse_url raises InvalidURLError for anything but a URL
        target = parsed[1] if parsed is not None and parsed[0] is url else parse_url(url)
        headers = with_defaults(header_pairs(given))
        auth = target.basic_auth()
        if auth is not None and not any(k.lower() == "authorization" for k, _ in headers):
            headers.append(auth)
        return target, headers

    async def _attempt(self) -> None:
        """One attempt: the callables, dial, then serve the session until it
        ends. Returns when closed on request; raises the failure otherwise."""
        config, shared = self.config, self.shared
        session: Session | None = None
        try:
            async with trio.open_nursery() as nursery:
                limiter = config.connect_limiter
                if limiter is not None:
                    await limiter.acquire()  # the timeout starts once a slot is ours
                dialed = None
                try:
                    with trio.move_on_after(config.connect_timeout):
                        target, headers = await self._prepare()
                        dialed = await dial(nursery, target, headers, config.dial)
                finally:
                    if limiter is not None:
                        limiter.release()
                if dialed is None:
                    raise ConnectTimeout(config.connect_timeout)
                if config.ping_events:
                    dialed.link.notices = []
                session = self.session = Session(
                    dialed.link,
                    nursery,
                    shared.outbox,
                    shared.events,
                    shared.counters,
                )
                counters = shared.counters
                counters.subprotocol = dialed.subprotocol
                counters.compressed = dialed.compressed
                if dialed.target is not None and dialed.target is not target:
                    self.url = dialed.target.url  # where a redirect led
                connected_at = trio.current_time()
                if self.connections:
                    counters.reconnects += 1
                self.connections += 1
                shared.fire(Trigger.CONNECTED)
                log.info("connected to %s", self.shown_url)
                shared.events._put_report(
                    Connected(
                        url=self.shown_url or "",
                        subprotocol=dialed.subprotocol,
                        response=dialed.response,
                    )
                )
                # the answer's headers live on in the Connected event only: this
                # frame, alive as long as the connection, must not hold them
                del dialed
                await session.serve(config.ping_interval, config.ping_timeout)
        except BaseExceptionGroup as group:
            error = _single_failure(group)
            if error is group:
                raise
            raise error from error.__cause__  # its own cause kept, the group dropped
        finally:
            if session is not None:
                link = session.link
                # the counts move to the totals in the same step as the session
                # goes, so that statistics() never sees them missing
                shared.counters.bytes_received += link.bytes_in
                shared.counters.bytes_sent += link.bytes_out
                shared.counters.last_rtt = link.rtt or shared.counters.last_rtt
                self.session = None
                session.finish()
                with trio.CancelScope(shield=True):
                    await link.aclose()
        assert session is not None
        if session.failure is not None:
            backoff = config.reconnect
            min_uptime = backoff.min_uptime if backoff is not None else 0.0
            if trio.current_time() - connected_at >= min_uptime:
                shared.counters.failures = 0
            raise session.failure

    async def _after_failure(self, error: Exception) -> bool:
        """Report ``error``; wait out the backoff and return True to retry, or
        give up (the run is over before the event says so) and return False."""
        shared, config = self.shared, self.config
        counters = shared.counters
        counters.failures += 1
        counters.last_error = error
        backoff = config.reconnect
        log.warning("connection to %s failed: %s", self.shown_url, error)
        was_connected = shared.machine.state is State.CONNECTED
        if (
            backoff is None
            or not config.classify(error)
            or backoff.gives_up_after(counters.failures)
        ):
            shared.fire(Trigger.GIVE_UP)
            self.closing = self.gave_up = True
            shared.events._put_report(ConnectionFailed(error=error, retry_in=None))
            shared.report_undelivered(shared.outbox.drain("gave up"), "gave up")
            shared.events._end_run()
            return False
        delay = backoff.delay(counters.failures)
        shared.fire(Trigger.LOST if was_connected else Trigger.FAILED)
        shared.events._put_report(ConnectionFailed(error=error, retry_in=delay))
        await trio.sleep(delay)
        shared.fire(Trigger.RETRY)
        return True

    # -- stopping, from the front door -----------------------------------------

    async def stop(self, code: int, reason: str, deadline: float) -> None:
        """End the run: close the session gracefully (flush, close frame, the
        peer's answer) by ``deadline``, or at once if cancelled meanwhile."""
        self.closing = True
        session = self.session
        try:
            if (
                session is not None
                and not session.ended
                and self.shared.machine.state is State.CONNECTED
            ):
                self.shared.fire(Trigger.CLOSE)
                await session.close(code, reason, deadline)
        finally:
            with trio.CancelScope(shield=True):
                await self.abort(code)

    async def abort(self, code: int = 1000) -> None:
        """End the run at once (call it shielded): the session's close frame
        goes only if it can be written immediately."""
        self.closing = True
        session = self.session
        if session is not None and not session.ended:
            await session.abort(code)  # before the run's teardown closes the stream
        self.scope.cancel()
        await self.done.wait()

    def closed_event(self) -> Closed:
        return Closed(url=self.shown_url)


_PROTOCOL_LIBRARIES = frozenset({"h11", "wsproto", "trio_websocket"})


def _single_failure(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one failure a connection nursery raised, as the error to report.

    Cancellation and anything that is not an Exception propagate untouched."""
    errors, rest = group.split(Exception)
    if rest is not None or errors is None:
        return group
    leaves = _leaves(errors)
    if len(leaves) != 1:
        return TransportError(f"connection failed: {leaves!r}")
    error = leaves[0]
    if type(error).__module__.partition(".")[0] in _PROTOCOL_LIBRARIES:
        # trio-websocket's reader lets h11's and wsproto's errors escape on an
        # answer that the socket's own checks let through. The one escape known
        # (its reader refusing a pong after our close frame, trio-websocket
        # #184) happens while closing, when nothing is reported; any other is
        # reported as ProtocolError, as on the other engines.
        failure = ProtocolError(f"the server broke the WebSocket protocol: {error}")
        failure.__cause__ = error
        return failure
    return error


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            out.extend(_leaves(exc))
        else:
            out.append(exc)
    return out
