"""The two queues of a ClientSocket: the event stream the application reads, and
the outbox of messages waiting to be written."""

from __future__ import annotations

from collections import deque
from typing import Any

import trio

from ._events import Event, Message, Undelivered

__all__ = ["EventStream", "Outbox", "Slot"]


class _Empty(deque[Any]):
    """The shared stand-in of an idle queue: an empty deque costs 760 bytes, and
    most sockets spend their life with both queues empty. Appending to it is a bug."""

    def append(self, item: Any) -> None:
        raise AssertionError("append to the shared empty queue")

    def appendleft(self, item: Any) -> None:
        raise AssertionError("append to the shared empty queue")


_NONE: deque[Any] = _Empty()


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

    def wake(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            trio.lowlevel.reschedule(task)

    def _abort(self, _: object) -> trio.lowlevel.Abort:
        self._task = None
        return trio.lowlevel.Abort.SUCCEEDED


class EventStream:
    """The events of a ``ClientSocket``, in order: ``sock.events()``.

    Read it with ``async for``, ``await stream.receive()`` or
    ``stream.receive_nowait()``; it ends (``trio.EndOfChannel``, or the end of
    the ``async for``) once the socket's ``async with`` block is left and every
    buffered event has been read. Breaking out of ``async for`` and iterating
    again resumes where it stopped.

    It holds ``event_buffer`` events; when it is full the socket stops reading
    the network (backpressure) and waits. Reports that end a run (``Closed``,
    ``Undelivered``, the last ``ConnectionFailed``) never wait and are never
    dropped: they may go past the bound.

    Example:
        >>> async def consume(sock):  # doctest: +SKIP
        ...     async for event in sock.events():
        ...         print(event)
    """

    __slots__ = ("_bound", "_closed", "_items", "_low", "_readers", "_writers")

    def __init__(self, bound: int) -> None:
        self._bound = bound
        self._low = bound // 2
        self._items: deque[Event] = _NONE  # a real deque on the first event
        self._closed = False
        self._readers = trio.lowlevel.ParkingLot()
        self._writers: trio.lowlevel.ParkingLot | None = None  # created when first needed

    def __len__(self) -> int:
        return len(self._items)

    def receive_nowait(self) -> Event:
        """The next event, or ``trio.WouldBlock``; ``trio.EndOfChannel`` at the end."""
        if self._items:
            event = self._items.popleft()
            if not self._items:
                self._items = _NONE  # an empty deque costs 760 bytes: idle sockets hold none
            # Wake a waiting producer only once half the buffer is free, so
            # that it refills in bulk instead of in lockstep, one per pass.
            if self._writers and len(self._items) <= self._low:
                self._writers.unpark_all()
            return event
        if self._closed:
            raise trio.EndOfChannel
        raise trio.WouldBlock

    async def receive(self) -> Event:
        """Wait for the next event; ``trio.EndOfChannel`` at the end."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            try:
                event = self.receive_nowait()
            except trio.WouldBlock:
                await self._readers.park()
                continue
            await trio.lowlevel.cancel_shielded_checkpoint()
            return event

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    # -- the socket's side -------------------------------------------------

    def put_nowait(self, event: Event) -> bool:
        """Append ``event`` unless the buffer is full; True if appended."""
        if len(self._items) >= self._bound:
            return False
        if self._items is _NONE:
            self._items = deque()
        self._items.append(event)
        if self._readers:
            self._readers.unpark()
        return True

    async def put(self, event: Event) -> None:
        """Append ``event``, waiting while the buffer is full."""
        while len(self._items) >= self._bound and not self._closed:
            if self._writers is None:
                self._writers = trio.lowlevel.ParkingLot()
            await self._writers.park()
        self.put_final(event)

    def put_final(self, event: Event) -> None:
        """Append ``event`` now, over the bound if need be (a report that must not wait)."""
        if self._items is _NONE:
            self._items = deque()
        self._items.append(event)
        if self._readers:
            self._readers.unpark()

    def put_report(self, report: Undelivered) -> None:
        """``put_final`` an Undelivered report, merged into the last buffered
        event when that is an unread report of the same reason: a burst of
        drop-oldest overflow makes one event, not one per message."""
        last = self._items[-1] if self._items else None
        if isinstance(last, Undelivered) and last.reason == report.reason:
            self._items[-1] = Undelivered(
                messages=last.messages + report.messages, reason=report.reason
            )
            return
        self.put_final(report)

    def close(self) -> None:
        """End the stream once the buffered events are read."""
        self._closed = True
        self._readers.unpark_all()
        if self._writers:
            self._writers.unpark_all()


class Outbox:
    """Bounded FIFO of messages waiting to be written, plus the one being written.

    The writer ``take()``s the head into ``inflight`` and ``done()``s it once
    written; a message is therefore always in exactly one place: queued, in
    flight, written, or reported undelivered. ``direct`` is True while the
    message in flight is being written by the task that called ``send()``
    (which then settles it) rather than by the writer."""

    __slots__ = ("_changed", "capacity", "direct", "inflight", "items")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.items: deque[Message] = _NONE  # a real deque on the first message
        self.inflight: Message | None = None
        self.direct = False
        # send(), wait_sent() and close() wait here; created when first needed
        self._changed: trio.lowlevel.ParkingLot | None = None

    def __len__(self) -> int:
        return len(self.items) + (self.inflight is not None)

    @property
    def full(self) -> bool:
        return len(self.items) >= self.capacity

    def _notify(self) -> None:
        if self._changed:
            self._changed.unpark_all()

    def append(self, message: Message) -> None:
        if self.items is _NONE:
            self.items = deque()
        self.items.append(message)
        self._notify()

    def drop_oldest(self) -> Message:
        """Remove and return the oldest queued message (never the one in flight)."""
        message = self.items.popleft()
        self._notify()
        return message

    def take(self) -> Message:
        """Move the head into ``inflight`` (the writer is about to write it)."""
        self.inflight = self.items.popleft()
        return self.inflight

    def done(self) -> None:
        """The message in flight was written."""
        self.inflight = None
        self._notify()

    def lose_inflight(self) -> Message | None:
        """The connection died while writing: the message in flight, to report."""
        message, self.inflight = self.inflight, None
        self._notify()
        return message

    def requeue_inflight(self) -> None:
        """The message in flight was not written after all: first in line again."""
        message, self.inflight = self.inflight, None
        if message is not None:
            if self.items is _NONE:
                self.items = deque()
            self.items.appendleft(message)
        self._notify()

    def drain(self) -> tuple[Message, ...]:
        items = tuple(self.items)
        self.items.clear()
        self._notify()
        return items

    async def wait_changed(self) -> None:
        if self._changed is None:
            self._changed = trio.lowlevel.ParkingLot()
        await self._changed.park()

    async def wait_empty(self) -> None:
        while self.items or self.inflight is not None:
            await self.wait_changed()
