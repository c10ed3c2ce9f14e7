"""The two queues of a ClientSocket: the event stream the application reads, and
the outbox of messages waiting to be written."""

from __future__ import annotations

from collections import deque
from typing import Any

import trio

from ._events import (
    Closed,
    Connected,
    ConnectionFailed,
    Message,
    MessageReceived,
    PingReceived,
    PongReceived,
    Skipped,
    SocketEvent,
    Undelivered,
    UndeliveredReason,
    new_event,
    set_message,
)

__all__ = ["EventStream", "Mutex", "Outbox", "Slot"]

SCHEDULE_EVERY = 16
"""``receive()`` of an event that is ready lets other tasks run once in this many calls."""
RESERVE = 64
"""Connection reports kept beyond a full buffer before the oldest are dropped
(at most: a buffer of fewer events keeps as many as it holds, at least 8)."""
_EXPENDABLE = (Connected, PingReceived, PongReceived)
"""Reports dropped first from a full reserve."""


class _Empty(deque[Any]):
    """The shared stand-in of an idle queue: an empty deque costs 760 bytes, and
    most sockets spend their life with both queues empty. Appending to it is a bug."""

    def append(self, item: Any) -> None:
        raise AssertionError("append to the shared empty queue")

    def appendleft(self, item: Any) -> None:
        raise AssertionError("append to the shared empty queue")


_NONE: deque[Any] = _Empty()


def _refuse_abort(_: object) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.FAILED


class Slot:
    """Where one task at a time waits to be woken: a ParkingLot for a single
    waiter, at a fraction of its size and cost."""

    __slots__ = ("_task",)

    def __init__(self) -> None:
        self._task: trio.lowlevel.Task | None = None

    async def wait(self) -> None:
        """Sleep until ``wake()`` (or cancellation)."""
        assert self._task is None, "a Slot holds one waiting task"
        self._task = trio.lowlevel.current_task()
        await trio.lowlevel.wait_task_rescheduled(self._abort)

    async def wait_shielded(self) -> None:
        """Sleep until ``wake()``, which must come soon: a cancellation waits
        for it too, and is raised at the caller's next checkpoint."""
        assert self._task is None, "a Slot holds one waiting task"
        self._task = trio.lowlevel.current_task()
        await trio.lowlevel.wait_task_rescheduled(_refuse_abort)

    def wake(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            trio.lowlevel.reschedule(task)

    def _abort(self, _: object) -> trio.lowlevel.Abort:
        self._task = None
        return trio.lowlevel.Abort.SUCCEEDED


class Mutex:
    """A lock for the socket's open() and close(): ``trio.Lock`` semantics
    (acquiring is a checkpoint), without its parking lot until two tasks
    contend (most sockets never see that)."""

    __slots__ = ("_held", "_lot")

    def __init__(self) -> None:
        self._held = False
        self._lot: trio.lowlevel.ParkingLot | None = None

    async def __aenter__(self) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        if not self._held:
            self._held = True
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        if self._lot is None:
            self._lot = trio.lowlevel.ParkingLot()
        await self._lot.park()  # ownership is handed over on release

    async def __aexit__(self, *exc_info: object) -> None:
        if self._lot:
            self._lot.unpark()  # the next owner holds it from here
        else:
            self._held = False


class _Report:
    """An ``Undelivered`` still being merged into: it becomes the frozen event
    when the application reads it."""

    __slots__ = ("count", "messages", "reason")

    def __init__(self, reason: UndeliveredReason) -> None:
        self.reason = reason
        self.messages: list[Message] = []
        self.count = 0

    def event(self) -> Undelivered:
        return Undelivered(messages=tuple(self.messages), reason=self.reason, count=self.count)


_Item = SocketEvent | _Report


class EventStream(trio.abc.ReceiveChannel[SocketEvent]):
    """The events of a ``ClientSocket``, in order: what ``sock.events()`` returns,
    a ``trio.abc.ReceiveChannel`` of ``SocketEvent``.

    Read it with ``async for``, ``await stream.receive()`` or
    ``stream.receive_nowait()``. Iteration ends (``trio.EndOfChannel``, or the
    end of the ``async for``) once every buffered event has been read after
    the socket closed: by ``close()``, by giving up (after its final
    ``ConnectionFailed``), or by leaving the ``async with`` block. Until the
    block is left this end is not final: after ``open()``, iterating again
    reads the new connection's events. Before the first ``open()`` it waits.
    Breaking out of ``async for`` and iterating again resumes where it
    stopped. ``aclose()`` says the application will read no more: what comes
    after is discarded.

    Received messages are buffered up to ``event_buffer`` events and
    ``buffer_bytes`` bytes; beyond that the socket stops reading the network
    until the application reads (backpressure). Connection reports
    (``Connected``, ``ConnectionFailed``, ``Undelivered``, ``Closed``, and
    with ``ping_events`` ``PingReceived`` and ``PongReceived``) never wait:
    when the buffer is full they are kept in a reserve (as many as the buffer
    holds, between 8 and 64), and past that the oldest are dropped
    (``Connected``, pings and pongs, and retried ``ConnectionFailed`` first)
    and a ``Skipped`` event counts them.

    Examples:
        >>> async def consume(sock):  # doctest: +SKIP
        ...     async for event in sock.events():
        ...         print(event)
    """

    __slots__ = (
        "_bound",
        "_byte_bound",
        "_bytes",
        "_closed",
        "_discard",
        "_dropped",
        "_held",
        "_hold",
        "_items",
        "_largest",
        "_late",
        "_low",
        "_low_bytes",
        "_over",
        "_readers",
        "_ready",
        "_reserve",
        "_skipped",
        "_skipped_messages",
        "_writers",
    )

    def __init__(self, bound: int, byte_bound: int, hold: int, largest: int = 0) -> None:
        self._bound = bound
        self._largest = largest  # the largest message (max_message_size)
        self._reserve = min(RESERVE, max(8, bound))
        self._byte_bound = byte_bound
        # the low-water marks: a paused reader resumes below both
        self._low = max(1, bound // 2)
        self._low_bytes = max(1, byte_bound // 2)
        self._hold = hold  # payloads unread reports may hold, all together
        self._items: deque[_Item] = _NONE  # a real deque on the first event
        self._late: deque[_Item] = _NONE  # reports that came while the buffer was full
        self._bytes = 0  # bytes of the received messages in _items
        self._held = 0  # payloads held by unread reports
        self._skipped = 0  # reports dropped from _late, not yet shown as Skipped
        self._skipped_messages = 0
        self._closed = False
        self._over = False  # the socket closed or gave up: no event comes until open()
        self._ready = 0  # receive() calls since the last schedule point
        self._discard = False  # the application closed its end
        # where the application and the reader wait; created when first needed
        self._readers: trio.lowlevel.ParkingLot | None = None
        self._writers: trio.lowlevel.ParkingLot | None = None
        self._dropped = 0
        """Reports dropped (``Skipped``) over the stream's life."""

    def __len__(self) -> int:
        return len(self._items) + len(self._late) + (self._skipped > 0)

    @property
    def _is_closed(self) -> bool:
        """The socket ended the stream, or the application closed its end."""
        return self._closed or self._discard

    # -- the application's side ----------------------------------------------

    def receive_nowait(self) -> SocketEvent:
        """The next event, or ``trio.WouldBlock``; ``trio.EndOfChannel`` at the end.

        Examples:
            >>> def poll(sock):  # doctest: +SKIP
            ...     try:
            ...         return sock.events().receive_nowait()
            ...     except trio.WouldBlock:
            ...         return None
        """
        if self._discard:
            raise trio.ClosedResourceError("the event stream was closed with aclose()")
        items = self._items
        if items:
            item = items.popleft()
            if not items:
                self._items = _NONE  # an empty deque costs 760 bytes: idle sockets hold none
            event: SocketEvent
            if type(item) is MessageReceived:
                message = item.message
                self._bytes -= (
                    len(message)
                    if type(message) is bytes or message.isascii()
                    else 4 * len(message)
                )
                event = item
            else:
                event = self._settle(item)
            writers = self._writers
            # Wake a waiting producer only below the low-water marks, so that
            # it refills in bulk instead of in lockstep, one per pass.
            if writers and self._below_low_water():
                writers.unpark_all()
            return event
        if self._skipped:
            event = Skipped(count=self._skipped, undelivered=self._skipped_messages)
            self._skipped = self._skipped_messages = 0
            return event
        if self._late:
            item = self._late.popleft()
            if not self._late:
                self._late = _NONE
                if self._writers:
                    self._writers.unpark_all()
            return self._settle(item)
        if self._closed or self._over:
            raise trio.EndOfChannel
        raise trio.WouldBlock

    def _settle(self, item: _Item) -> SocketEvent:
        if isinstance(item, _Report):
            self._held -= len(item.messages)
            return item.event()
        return item

    async def receive(self) -> SocketEvent:
        """Wait for the next event; ``trio.EndOfChannel`` at the end.

        Examples:
            >>> async def first(sock):  # doctest: +SKIP
            ...     return await sock.events().receive()
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._ready_to_receive():
            event = self.receive_nowait()
            self._ready += 1
            if self._ready >= SCHEDULE_EVERY:
                self._ready = 0
                await trio.lowlevel.cancel_shielded_checkpoint()  # the schedule point
            return event
        self._ready = 0
        if self._readers is None:
            self._readers = trio.lowlevel.ParkingLot()
        while True:  # waiting is the schedule point: no second one once woken
            await self._readers.park()
            if self._ready_to_receive():
                return self.receive_nowait()

    async def __anext__(self) -> SocketEvent:
        # ``receive()``'s common case inline (``async for`` over messages that
        # are ready: one coroutine frame fewer per event); the rest is
        # ``receive()`` itself
        items = self._items
        if items and type(items[0]) is MessageReceived and self._ready < SCHEDULE_EVERY - 1:
            await trio.lowlevel.checkpoint_if_cancelled()
            event: MessageReceived = items.popleft()  # type: ignore[assignment]  # checked above
            if not items:
                self._items = _NONE
            message = event.message
            self._bytes -= (
                len(message) if type(message) is bytes or message.isascii() else 4 * len(message)
            )
            if (
                self._writers
                and len(items) < self._low
                and self._bytes < self._low_bytes
                and not self._late
            ):
                self._writers.unpark_all()
            self._ready += 1
            return event
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    def _ready_to_receive(self) -> bool:
        """``receive_nowait()`` would not raise ``WouldBlock`` (an exception
        on every wait costs more than this check)."""
        return bool(
            self._items
            or self._skipped
            or self._late
            or self._closed
            or self._over
            or self._discard
        )

    async def aclose(self) -> None:
        """Stop reading: buffered and later events are discarded, and the socket
        no longer waits for room (``receive()`` raises ``ClosedResourceError``).

        Examples:
            >>> async def done_reading(sock):  # doctest: +SKIP
            ...     await sock.events().aclose()
        """
        self._discard = True
        self._items = self._late = _NONE
        self._bytes = self._held = self._skipped = self._skipped_messages = 0
        if self._readers:
            self._readers.unpark_all()
        if self._writers:
            self._writers.unpark_all()
        await trio.lowlevel.checkpoint()

    # -- the socket's side -------------------------------------------------

    def _below_low_water(self) -> bool:
        """Room for messages again: under half the buffer's count and bytes."""
        return len(self._items) < self._low and self._bytes < self._low_bytes and not self._late

    def _room(self) -> int:
        """Bytes of messages the reader may parse now (0 or less: none): after
        them, a message of the largest size must still fit, so that the one a
        read is assembling never finds the buffer full. An empty buffer takes
        one message of any size."""
        room = self._byte_bound - self._bytes - self._largest
        return room if self._bytes else max(1, room)

    def _put_messages(self, messages: list[Message], start: int = 0, *, force: bool = False) -> int:
        """Append received messages from ``messages[start:]`` while the buffer
        has room (all of them with ``force``); the index of the first one not
        taken (``len(messages)`` when all were taken, or discarded because the
        application closed its end)."""
        if self._discard:
            return len(messages)
        items = self._items
        if items is _NONE:
            items = self._items = deque()
        size, index, end = self._bytes, start, len(messages)
        if force and self._late:  # the reports that wait came before these messages
            if self._skipped:  # and the count of those dropped comes before them
                items.append(Skipped(count=self._skipped, undelivered=self._skipped_messages))
                self._skipped = self._skipped_messages = 0
            items.extend(self._late)
            self._late = _NONE
        if not self._late:
            append, new, set_ = items.append, new_event, set_message
            bound, byte_bound = (end + len(items), -1) if force else (self._bound, self._byte_bound)
            while index < end and len(items) < bound:
                message = messages[index]
                weight = (
                    len(message)
                    if type(message) is bytes or message.isascii()
                    else 4 * len(message)
                )
                # a message goes in whole if it fits (or the buffer holds none)
                if size + weight > byte_bound and size and not force:
                    break
                event = new(MessageReceived)
                set_(event, message)
                append(event)
                size += weight
                index += 1
        self._bytes = size
        if not items:
            self._items = _NONE
        elif self._readers:
            self._readers.unpark()
        return index

    async def _wait_room(self) -> None:
        """Wait until the buffer has room for messages again (below its low-water
        marks), or the stream is closed."""
        while not self._below_low_water() and not self._closed and not self._discard:
            if self._writers is None:
                self._writers = trio.lowlevel.ParkingLot()
            await self._writers.park()

    def _put_report(self, event: Connected | ConnectionFailed | Closed) -> None:
        """Append a connection report: never waits (see the class docstring)."""
        self._put(event)

    def _put_notices(self, notices: list[PingReceived | PongReceived]) -> None:
        """Append the pings and pongs a read noted, as reports (never waits), and
        empty the list."""
        for notice in notices:
            self._put(notice)
        notices.clear()

    def _put_undelivered(
        self, messages: tuple[Message, ...] | list[Message], reason: UndeliveredReason
    ) -> None:
        """Report messages that will not be written, merged into the last event
        when that is an unread report of the same reason; payloads beyond the
        hold bound are counted, not kept."""
        if not messages or self._discard:
            return
        tail = self._late or self._items
        last = tail[-1] if tail else None
        if isinstance(last, _Report) and last.reason == reason:
            report = last
        else:
            report = _Report(reason)
            self._put(report)
        room = self._hold - self._held
        if room > 0:
            kept = messages if len(messages) <= room else messages[:room]
            report.messages.extend(kept)
            self._held += len(kept)
        report.count += len(messages)

    def _put(self, item: _Item) -> None:
        if self._discard:
            return
        if not self._late and len(self._items) < self._bound:
            if self._items is _NONE:
                self._items = deque()
            self._items.append(item)
        else:
            if self._late is _NONE:
                self._late = deque()
            self._late.append(item)
            if len(self._late) > self._reserve:
                self._drop_one()
        if self._readers:
            self._readers.unpark()

    def _drop_one(self) -> None:
        """Drop the oldest report of the reserve that the application can do
        without (a Connected, a ping or pong, or a ConnectionFailed that was
        retried), else the oldest; the ``Skipped`` event counts it."""
        late = self._late
        for index, item in enumerate(late):
            if type(item) in _EXPENDABLE or (
                type(item) is ConnectionFailed and item.retry_in is not None
            ):
                del late[index]
                break
        else:
            item = late.popleft()
            if isinstance(item, _Report):
                self._held -= len(item.messages)
                self._skipped_messages += item.count
        self._skipped += 1
        self._dropped += 1

    def _end_run(self) -> None:
        """The socket closed or gave up: iteration ends once the buffered events
        are read, until ``_reopen()``."""
        self._over = True
        if self._readers:
            self._readers.unpark_all()

    def _reopen(self) -> None:
        self._over = False

    def _close(self) -> None:
        """End the stream once the buffered events are read."""
        self._closed = True
        if self._readers:
            self._readers.unpark_all()
        if self._writers:
            self._writers.unpark_all()


class _Watch:
    """A ``wait_sent()`` call: the messages it waits for, and why one was lost."""

    __slots__ = ("high", "lost", "low")

    def __init__(self, low: int, high: int) -> None:
        self.low = low  # messages numbered low .. high - 1
        self.high = high
        self.lost: str | None = None


class Outbox:
    """Bounded FIFO of messages waiting to be written, plus the one being written.

    Messages are numbered in the order ``send()`` took them. The writer (or a
    direct send) ``take()``s the head into ``inflight`` and settles it with
    ``done()``, ``requeue()``, ``lose_inflight()`` or ``cancel_inflight()``; a
    message is therefore always in exactly one place: queued, in flight,
    written, or reported undelivered. The queue always holds the consecutive
    numbers ``head .. head + len(items) - 1``; the message in flight has the
    number ``inflight_number``."""

    __slots__ = (
        "_changed",
        "_watches",
        "capacity",
        "head",
        "inflight",
        "inflight_number",
        "items",
        "lost",
    )

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.items: deque[Message] = _NONE  # a real deque on the first message
        self.inflight: Message | None = None
        self.inflight_number = -1
        self.head = 0  # number of items[0]
        self.lost: str | None = None  # why a message was lost since the socket was opened
        self._watches: list[_Watch] = []
        # send(), wait_sent() and close() wait here; created when first needed
        self._changed: trio.lowlevel.ParkingLot | None = None

    def __len__(self) -> int:
        return len(self.items) + (self.inflight is not None)

    @property
    def full(self) -> bool:
        return len(self.items) >= self.capacity

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing in flight."""
        return self.inflight is None and not self.items

    def notify(self) -> None:
        """Wake whoever waits for the outbox to change."""
        if self._changed:
            self._changed.unpark_all()

    def _lost(self, first: int, count: int, reason: str) -> None:
        if self.lost is None:
            self.lost = reason
        for watch in self._watches:
            if first < watch.high and first + count > watch.low and watch.lost is None:
                watch.lost = reason

    def append(self, message: Message) -> None:
        if self.items is _NONE:
            self.items = deque()
        self.items.append(message)
        self.notify()

    def drop_oldest(self) -> Message:
        """Remove and return the oldest queued message (never the one in flight)."""
        message = self.items.popleft()
        self._lost(self.head, 1, "dropped")
        self.head += 1
        self.notify()
        return message

    def take(self) -> Message:
        """Move the head into ``inflight`` (about to be written)."""
        message = self.inflight = self.items.popleft()
        self.inflight_number = self.head
        self.head += 1
        return message

    def take_direct(self, message: Message) -> None:
        """``message`` goes straight into ``inflight`` (the outbox is idle)."""
        self.inflight = message
        self.inflight_number = self.head
        self.head += 1

    def done(self) -> None:
        """The message in flight was written."""
        self.inflight = None
        self.notify()

    def requeue(self) -> None:
        """The message in flight was not written after all: first in line again."""
        message, self.inflight = self.inflight, None
        if message is not None:
            if self.items is _NONE:
                self.items = deque()
            self.items.appendleft(message)
            self.head -= 1
        self.notify()

    def lose_inflight(self) -> Message | None:
        """The message in flight was cut off part-way (it may or may not have
        arrived): returned, to report."""
        message, self.inflight = self.inflight, None
        if message is not None:
            self._lost(self.inflight_number, 1, "in flight")
        self.notify()
        return message

    def cancel_inflight(self) -> None:
        """The message in flight was never written nor taken: forget it (its
        ``send()`` was cancelled before writing; it raises, so nothing is lost)."""
        self.inflight = None
        self.notify()

    def drain(self, reason: str) -> tuple[Message, ...]:
        """Take every queued message out, to report it undelivered (``reason``:
        how the socket ended, "closed" or "gave up")."""
        items = tuple(self.items)
        if items:
            self._lost(self.head, len(items), reason)
        self.head += len(items)
        self.items = _NONE
        self.notify()
        return items

    async def wait_changed(self) -> None:
        if self._changed is None:
            self._changed = trio.lowlevel.ParkingLot()
        await self._changed.park()

    async def wait_settled(self) -> str | None:
        """Wait until every message taken so far is written or reported; the
        reason some of them (or one lost before, since the socket was opened)
        will never be written, or None."""
        earlier = self.lost
        high = self.head + len(self.items)
        low = self.inflight_number if self.inflight is not None else self.head
        watch = _Watch(low, high)
        self._watches.append(watch)
        try:
            while (self.inflight is not None and self.inflight_number < high) or (
                self.items and self.head < high
            ):
                await self.wait_changed()
        finally:
            self._watches.remove(watch)
        return earlier or watch.lost
