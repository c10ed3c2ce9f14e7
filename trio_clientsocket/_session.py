"""The session: one established connection, served until it ends.

It owns the reader (messages into the event stream, with backpressure), the
writer (the outbox onto the link, started only while messages wait), the
keepalive (in the session's own task), and the closing handshake. How the
session ended is decided once, in ``_end()``: closed on request (None), or
the error the link's record, a keepalive timeout or a torn write gives.
"""

from __future__ import annotations

import trio

from ._errors import ConnectionLost, KeepaliveTimeout, NotConnectedError, TransportError
from ._events import Message
from ._link import Link, LinkEnded
from ._queues import EventStream, Outbox
from ._stats import Counters

__all__ = ["ABORT_GRACE", "DIRECT_MAX", "Session"]

DIRECT_MAX = 65536
"""Largest message (characters or bytes) that ``send()`` writes in its own task."""
ABORT_GRACE = 0.05
"""Seconds a cancelled close may spend writing the close frame."""


class Session:
    """One established connection: reader, writer, keepalive and close."""

    __slots__ = (
        "_ended",
        "_pause_scope",
        "_resumed",
        "closing",
        "counters",
        "events",
        "failure",
        "link",
        "nursery",
        "outbox",
        "paused",
        "pauses",
        "writing",
    )

    def __init__(
        self,
        link: Link,
        nursery: trio.Nursery,
        outbox: Outbox,
        events: EventStream,
        counters: Counters,
    ) -> None:
        self.link = link
        self.nursery = nursery  # the connection's: its cancel scope ends the session
        self.outbox = outbox
        self.events = events
        self.counters = counters
        self.failure: TransportError | None = None
        self.closing = False  # close() was called: the end is no failure
        self.writing = False  # the writer task runs
        self.paused = False  # the reader waits for room in the event stream
        self.pauses = 0
        self._pause_scope: trio.CancelScope | None = None
        self._resumed: trio.Event | None = None
        self._ended = False

    @property
    def ended(self) -> bool:
        return self._ended

    def _end(self, failure: TransportError | None) -> None:
        """End the session, once: with ``failure``, or closed on request."""
        if self._ended:
            return
        self._ended = True
        if not self.closing:
            self.failure = failure if failure is not None else self.link.outcome()
        self.nursery.cancel_scope.cancel()
        self.outbox.notify()
        self.link.pings.end()

    # -- serving -------------------------------------------------------------------

    async def serve(self, ping_interval: float | None, ping_timeout: float | None) -> None:
        """Start the reader and the writer, and run the keepalive in this task
        until the session ends."""
        self.nursery.start_soon(self._reader, name="trio_clientsocket reader")
        self.kick()
        if ping_interval is not None and ping_timeout is not None:
            await self._keepalive(ping_interval, ping_timeout)

    async def _reader(self) -> None:
        link, events, counters = self.link, self.events, self.counters
        try:
            while True:
                if events._room() <= 0 and not self.closing:
                    await self._pause([], 0)  # full: read nothing until there is room
                batch = await link.read(max(1, events._room()))
                if link.notices:  # pings and pongs, for ping_events=True
                    events._put_notices(link.notices)
                if self.closing:
                    # after close(): delivered while the buffer has room, never
                    # waited for (the peer's close answer comes behind them)
                    counters.received += events._put_messages(batch)
                    continue
                counters.received += len(batch)
                taken = events._put_messages(batch)
                if taken < len(batch):
                    await self._pause(batch, taken)
                # the application may have read them already: the next read
                # must not keep them alive
                del batch
        except LinkEnded:
            self._end(None)

    async def _pause(self, batch: list[Message], taken: int) -> None:
        """Backpressure: stop reading until the application has made room for
        ``batch[taken:]``. If the session ends (or closes) meanwhile, what was
        read is delivered all the same: at most one read's worth over the bound."""
        self.paused = True
        self.pauses += 1
        events = self.events
        try:
            with trio.CancelScope() as self._pause_scope:
                while True:
                    await events._wait_room()
                    if events._is_closed:
                        return
                    taken = events._put_messages(batch, taken)
                    if taken >= len(batch):
                        break
        finally:
            if taken < len(batch):
                events._put_messages(batch, taken, force=True)
            self._pause_scope = None
            self.paused = False
            if self._resumed is not None:
                self._resumed.set()
                self._resumed = None

    async def _wait_resumed(self) -> None:
        if self.paused:
            if self._resumed is None:
                self._resumed = trio.Event()
            await self._resumed.wait()

    # -- writing -------------------------------------------------------------------

    def kick(self) -> None:
        """Start the writer if messages wait, none is in flight, and the link can
        take them. It runs only while there is work: an idle socket holds no
        writer task."""
        outbox = self.outbox
        if self.writing or not outbox.items or outbox.inflight is not None or self._ended:
            return
        if not self.link.writable:
            if self.link.over and self.paused:
                # the connection is gone and the reader, paused while the
                # application reads no events, does not come to its end
                self._end(None)
            return
        self.writing = True
        self.nursery.start_soon(self._writer, name="trio_clientsocket writer")

    def can_send_now(self, message: Message) -> bool:
        """Whether ``send()`` may write ``message`` in its own task: the session
        is up, nothing waits before it, and it is small."""
        return (
            not self._ended
            and not self.closing
            and self.outbox.idle
            and len(message) <= DIRECT_MAX
            and self.link.writable
            and not self.link.gate_busy
        )

    async def send_now(self, message: Message) -> None:
        """Write ``message`` in the calling task (see ``can_send_now``)."""
        outbox = self.outbox
        outbox.take_direct(message)
        written = self.link.messages_written
        try:
            await self.link.write(message)
        except LinkEnded as ended:
            self._lost_in_flight(ended)
        except trio.Cancelled:
            if not self._settle_cancelled(message, written):
                outbox.cancel_inflight()  # nothing written: not sent (send() raises)
            if self.link.torn:  # this frame or the one after it was cut
                self._end(ConnectionLost(1006, "a send() was cancelled part-way through a frame"))
            raise
        else:
            outbox.done()
            self.counters.sent += 1
        finally:
            if outbox.items:
                self.kick()  # what other tasks queued meanwhile

    async def _writer(self) -> None:
        link, outbox = self.link, self.outbox
        try:
            while outbox.items and outbox.inflight is None and link.writable:
                message = outbox.take()
                written = link.messages_written
                try:
                    await link.write(message)
                except LinkEnded as ended:
                    self._lost_in_flight(ended)
                    return
                except trio.Cancelled:  # the session is ending
                    if not self._settle_cancelled(message, written):
                        outbox.requeue()  # not written: first on the next connection
                    raise
                outbox.done()
                self.counters.sent += 1
        finally:
            self.writing = False

    def _settle_cancelled(self, message: Message, written: int) -> bool:
        """A write of ``message`` was cancelled. Its frame went whole (the
        write was flushing what waited behind it): it is sent. It was cut
        part-way: it is reported. False: nothing of it was written."""
        if self.link.messages_written != written:
            self.outbox.done()
            self.counters.sent += 1
            return True
        if self.link.torn_message is message:
            self._report_in_flight()
            return True
        return False

    def _lost_in_flight(self, ended: LinkEnded) -> None:
        """A write found the link ended. If the stream broke during it, the
        message may be partly written: report it, and end the session now (the
        reader may not notice until its next read). Otherwise nothing was
        written: it goes first on the next connection, and the reader reports
        the end with the peer's close code."""
        if ended.partial:
            self._report_in_flight()
            self._end(None)
        else:
            self.outbox.requeue()
            if self.link.over and self.paused:
                # the reader, paused while the application reads no events,
                # does not come to the end: the session ends here
                self._end(None)

    def _report_in_flight(self) -> None:
        lost = self.outbox.lose_inflight()
        if lost is not None:
            self.counters.dropped += 1
            self.events._put_undelivered((lost,), "in flight")

    def finish(self) -> None:
        """After the session's tasks have ended, however they ended (a nursery
        that dies by an exception ends none of them by ``_end``): a close()
        waiting for the end returns, and a message still in flight was cut off
        with them (its write was cancelled part-way)."""
        if not self._ended:
            self._ended = True
            self.outbox.notify()
        self.link.pings.end()
        if self.outbox.inflight is not None:
            self._report_in_flight()

    # -- pinging -------------------------------------------------------------------

    async def ping(self) -> float:
        """Ping now, in the calling task, and wait for the answer: the round
        trip in seconds. NotConnectedError if the connection ends first."""
        link = self.link
        if self.closing:
            raise NotConnectedError("the socket is closing: there is nothing to ping")
        if self._ended or not link.writable:
            raise NotConnectedError("the connection has ended: there is nothing to ping")
        payload, record = link.pings.expect()
        try:
            await link.ping(payload)
            assert record.done is not None
            await record.done.wait()
        except LinkEnded:
            raise NotConnectedError(
                "the connection ended before the ping could be written"
            ) from None
        except trio.Cancelled:
            if link.torn:  # the ping's frame was cut: nothing more may be written
                self._end(ConnectionLost(1006, "a ping() was cancelled part-way through a frame"))
            raise
        finally:
            link.forget_ping(payload)
        if record.rtt is None:
            raise NotConnectedError("the connection ended before the server answered the ping")
        self.counters.last_rtt = record.rtt
        return record.rtt

    # -- keepalive -----------------------------------------------------------------

    async def _keepalive(self, interval: float, patience: float) -> None:
        """Ping after ``interval`` seconds without a byte from the peer; take the
        peer for dead when nothing comes in within ``patience`` seconds of the
        ping going out. Only bytes received count as a sign of life; time the
        reader spends paused (the application not reading) never counts."""
        link = self.link
        # The writes' progress, sampled every ``interval`` seconds: a write that
        # makes none for ``interval + patience`` seconds is a dead peer too,
        # even while the peer's bytes keep coming in and keep the ping away (a
        # server that sends and never reads).
        written, since = link.bytes_out, trio.current_time()
        stall = interval + patience
        while True:
            now = trio.current_time()
            busy = link.gate_busy
            if not busy or link.bytes_out != written:
                written, since = link.bytes_out, now
            elif now >= since + stall and not self.closing:
                self._end(KeepaliveTimeout(patience))
                return
            due = min(link.rx_at + interval, since + (stall if busy else interval))
            if now < due:
                await trio.sleep_until(due)
                continue
            if self.paused:
                await self._wait_resumed()
                continue
            if not link.writable:
                if self.closing:
                    return  # close() has its own deadline
                # the connection is ending (the server's close, or a violation)
                # and its last frames wait on an uplink that takes nothing
                await trio.sleep(patience)
                self._end(None)
                return
            alive = await self._probe(patience)
            if not alive:
                self._end(KeepaliveTimeout(patience))
                return

    async def _probe(self, patience: float) -> bool:
        link = self.link
        payload = link.pings.payload()
        pauses = self.pauses
        # The ping may wait behind a write: the wait counts from the last
        # progress of the writes ahead of it (a long upload that moves is no
        # sign of death, nor of life: only bytes received are).
        start, written = trio.current_time(), link.bytes_out
        received = None
        while received is None:
            with trio.move_on_at(start + patience):
                try:
                    received = await link.ping(payload)
                except LinkEnded:
                    return True  # the reader reports the end
            if received is None:
                if link.torn or link.bytes_out == written:
                    return False
                start, written = trio.current_time(), link.bytes_out
        sent_at = trio.current_time()
        await trio.sleep_until(sent_at + patience)
        # The deadline and a readable socket can wake in the same scheduler
        # batch (after the event loop was blocked): let the reader read what
        # is already waiting before judging.
        await trio.lowlevel.checkpoint()
        await trio.lowlevel.checkpoint()
        if link.bytes_in != received:
            self.counters.last_rtt = link.rtt
            return True
        if self.paused or self.pauses != pauses:
            await self._wait_resumed()
            return True  # local backpressure held the answer back: try again
        return False

    # -- closing -------------------------------------------------------------------

    async def close(self, code: int, reason: str, deadline: float) -> None:
        """Flush the outbox, close with ``code`` and end the session, by
        ``deadline``. Runs in the task that called close()."""
        self.closing = True
        if self._pause_scope is not None:
            self._pause_scope.cancel()  # let the reader see the peer's close frame
        outbox = self.outbox
        self.kick()
        with trio.move_on_at(deadline):
            while not outbox.idle and not self._ended and self.link.writable:
                await outbox.wait_changed()
            if not self._ended and not self.link.torn:
                await self.link.close(code, reason)
                while not self._ended:
                    await outbox.wait_changed()  # _end() notifies
        self._ended = True
        self.nursery.cancel_scope.cancel()

    async def abort(self, code: int) -> None:
        """End the session at once (a cancelled close): the close frame goes
        only if it can be written within ``ABORT_GRACE``."""
        self.closing = True
        self._ended = True
        self.outbox.notify()  # a close() waiting in another task returns
        link = self.link
        try:
            if link.writable and not link.gate_busy:
                with trio.CancelScope(shield=True) as scope:
                    scope.deadline = trio.current_time() + ABORT_GRACE
                    await link.close(code, "", reply=False)
        finally:
            self.nursery.cancel_scope.cancel()
