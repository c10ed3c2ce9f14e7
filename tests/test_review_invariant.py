"""Review of the new core: message accounting under a random schedule.

Every message passed to ``send()`` must end up exactly once in one place:
written (a complete frame handed to the connection's stream), reported in an
``Undelivered`` event, or ``send()`` raised. Nothing duplicated, nothing lost
silently, order kept. A seeded random schedule (bounded: a fixed number of
actions per seed, on the mock clock) drops, closes and stalls the server,
refuses attempts, closes and reopens the socket, cancels sends part-way and
slows the uplink so that writes are torn, while two tasks send numbered
messages of several sizes and a reader that now and then stops reading
collects the reports.

"Written" is observed on the client's side of the stream (a recording stream
under the socket parses the masked frames the client wrote), so that a frame
lost in a dropped connection's buffers, which no WebSocket client can know
about, is not counted against the socket.

Documented exceptions, allowed here: a message reported ``"in flight"`` may
also have been written completely (WebSocket cannot tell), and a ``send()``
cancelled part-way through its frame raises and reports the message ``"in
flight"``.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest
import trio
import trio.testing

from trio_clientsocket import (
    Backoff,
    ClientSocket,
    OutboxFullError,
    Skipped,
    SocketClosedError,
    SocketStatistics,
    Undelivered,
    UndeliveredError,
)
from trio_clientsocket.testing import MockServer, open_mock_server

from .conftest import WrappedStream, client_socket

pytestmark = pytest.mark.usefixtures("each_transport")

URL = "ws://app.test/app/gxwebsocket?client-1"
SEEDS = range(40)
ACTIONS = 25
"""Chaos actions per seed."""
MESSAGES = 60
"""Messages each of the two senders sends per seed."""
SIZES = (8, 100, 70_000, 140_000)
"""Small (written by send() itself), over DIRECT_MAX (64 KiB: by the writer),
over two 64 KiB chunks (written in pieces)."""
RETRY = Backoff(initial=0.05, factor=2, maximum=0.2, jitter=0)


class RecordingStream(WrappedStream):
    """The client's stream: records every byte it passes on, in pieces, and can
    be slowed down so that a write is cut part-way by a cancellation."""

    def __init__(self, inner: trio.abc.Stream, rng: random.Random, slow: bool) -> None:
        super().__init__(inner)
        self.rng = rng
        self.slow = slow
        self.written = bytearray()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(bytes(data))
        for start in range(0, len(view), 8192):
            piece = view[start : start + 8192]
            if self.slow and self.rng.random() < 0.3:
                await trio.sleep(self.rng.choice((0.001, 0.01, 0.05)))
            await self.inner.send_all(piece)
            self.written += piece


def written_messages(data: bytes) -> list[str]:
    """The complete text messages in the bytes a client wrote (after its
    handshake request); a frame cut part-way ends the list."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return []
    pos, out, parts = end + 4, [], []
    while pos + 2 <= len(data):
        first, second = data[pos], data[pos + 1]
        opcode, fin, length, head = first & 0x0F, bool(first & 0x80), second & 0x7F, 2
        if length == 126:
            if pos + 4 > len(data):
                break
            length, head = int.from_bytes(data[pos + 2 : pos + 4], "big"), 4
        elif length == 127:
            if pos + 10 > len(data):
                break
            length, head = int.from_bytes(data[pos + 2 : pos + 10], "big"), 10
        assert second & 0x80, "a client frame must be masked"
        start = pos + head + 4
        if start + length > len(data):
            break  # cut part-way
        mask = data[pos + head : start]
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(data[start : start + length]))
        pos = start + length
        if opcode in (0x1, 0x0):
            parts.append(payload)
            if fin:
                out.append(b"".join(parts).decode())
                parts = []
        elif opcode == 0x8:
            break
    return out


@dataclass
class Ledger:
    outcome: dict[str, str] = field(default_factory=dict)  # id -> ok / cancelled / closed / full
    undelivered: Counter[str] = field(default_factory=Counter)
    reasons: dict[str, str] = field(default_factory=dict)
    truncated: list[Undelivered] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    order: dict[str, int] = field(default_factory=dict)  # id -> n, its rank in its task
    epoch: int = 0  # open() calls so far
    opening: int = 0  # open() calls under way
    sent_in: dict[str, int] = field(default_factory=dict)  # id -> epoch its send() began in
    confirmed: list[list[str]] = field(default_factory=list)  # what each wait_sent() vouched for
    reported: int = 0  # messages the Undelivered events covered (their count)
    stats: SocketStatistics | None = None


async def bounded(seconds: float, call: Callable[[], Awaitable[object]]) -> None:
    with trio.move_on_after(seconds):
        await call()


def message_id(message: str | bytes) -> str:
    assert isinstance(message, str)
    return message.split("|", 1)[0]


async def story(seed: int, server: MockServer) -> tuple[Ledger, list[RecordingStream]]:
    rng = random.Random(seed)
    streams: list[RecordingStream] = []
    ledger = Ledger()

    async def open_stream(url: str) -> trio.abc.Stream:
        inner = await server.open_stream(url)
        streams.append(RecordingStream(inner, rng, slow=rng.random() < 0.5))
        return streams[-1]

    overflow = rng.choice(("wait", "wait", "drop-oldest", "raise"))
    sock = client_socket(
        URL,
        open_stream=open_stream,
        reconnect=RETRY,
        ping_interval=0.5,
        ping_timeout=0.5,
        outbox_size=rng.choice((2, 8, 50)),
        overflow=overflow,
        event_buffer=512,
        close_timeout=0.5,
    )

    async def sender(task: int, sock: ClientSocket) -> None:
        for n in range(MESSAGES):
            ident = f"{task}.{n:03}"
            size = rng.choice(SIZES)
            message = ident + "|" + "x" * size
            ledger.order[ident] = n
            # a send() that overlaps an open() may belong to either run: not counted
            ledger.sent_in[ident] = ledger.epoch if not ledger.opening else -1
            outcome = "ok"
            with trio.CancelScope() as scope:
                if rng.random() < 0.2:
                    scope.deadline = trio.current_time() + rng.choice((0.0, 0.001, 0.01, 0.05))
                try:
                    await sock.send(message)
                except SocketClosedError:
                    outcome = "closed"
                except OutboxFullError:
                    outcome = "full"
            if scope.cancelled_caught:
                outcome = "cancelled"
            ledger.outcome[ident] = outcome
            if ledger.opening or ledger.sent_in[ident] != ledger.epoch:
                ledger.sent_in[ident] = -1
            if outcome == "closed":
                await trio.sleep(0.05)  # give the chaos time to open it again
            elif rng.random() < 0.3:
                await trio.sleep(rng.choice((0.001, 0.01, 0.1)))

    wake = trio.Event()  # set when the socket is opened again, or the block is left
    left = False

    async def reader(sock: ClientSocket) -> None:
        nonlocal wake
        while True:
            await read_until_closed(sock)
            if left:
                return
            await wake.wait()  # iteration ended with the socket closed: until it opens
            wake = trio.Event()

    async def read_until_closed(sock: ClientSocket) -> None:
        async for event in sock.events():
            if isinstance(event, Undelivered):
                ledger.reported += event.count
                if event.count != len(event.messages):
                    ledger.truncated.append(event)
                for message in event.messages:
                    ident = message_id(message)
                    ledger.undelivered[ident] += 1
                    ledger.reasons[ident] = event.reason
            elif isinstance(event, Skipped):
                ledger.skipped.append(event)
            if rng.random() < 0.05:
                await trio.sleep(rng.choice((0.01, 0.3)))  # a reader that stops for a while

    async def reopen(seconds: float) -> None:
        ledger.opening += 1
        try:
            await bounded(seconds, sock.open)
        finally:
            ledger.opening -= 1
            ledger.epoch += 1
            wake.set()

    async def chaos(sock: ClientSocket) -> None:
        for _ in range(ACTIONS):
            await trio.sleep(rng.choice((0.001, 0.01, 0.05, 0.2)))
            action = rng.choice(
                ("drop", "close_all", "stall", "resume", "refuse", "close", "reopen", "idle")
            )
            if action == "drop":
                await server.drop_all()
            elif action == "close_all":
                await server.close_all(rng.choice((1000, 1001, 1011, 4000)))
            elif action == "stall":
                server.stall()
            elif action == "resume":
                server.resume()
            elif action == "refuse":
                server.refuse(rng.randint(1, 3))
            elif action == "close":
                with trio.move_on_after(rng.choice((0.0, 0.01, 1.0))):
                    await sock.close()
                if rng.random() < 0.8:
                    await trio.sleep(rng.choice((0.0, 0.01, 0.1)))
                    await reopen(rng.choice((0.01, 1.0)))
            elif action == "reopen":
                # open() and close() at once from two tasks, either one maybe cancelled
                async with trio.open_nursery() as both:
                    both.start_soon(reopen, rng.choice((0.0, 0.01, 1.0)))
                    if rng.random() < 0.3:
                        both.start_soon(bounded, rng.choice((0.0, 0.01, 1.0)), sock.close)
        # Its last action may have stalled the server: resume it, or senders
        # waiting for room in the outbox would wait for ever.
        server.resume()
        if not sock.is_open:
            await reopen(10)

    async def waiter(sock: ClientSocket) -> None:
        """wait_sent() now and then: when it returns, it vouches that every message
        whose send() returned before the call, since the last open(), was written."""
        for _ in range(ACTIONS):
            await trio.sleep(rng.choice((0.01, 0.05, 0.2)))
            if ledger.opening:
                continue
            epoch = ledger.epoch
            covered = [
                ident
                for ident, outcome in ledger.outcome.items()
                if outcome == "ok" and ledger.sent_in[ident] == epoch
            ]
            with trio.move_on_after(rng.choice((0.1, 1.0))):
                try:
                    await sock.wait_sent()
                except (SocketClosedError, OutboxFullError, UndeliveredError):
                    continue
                if ledger.epoch == epoch and not ledger.opening:
                    ledger.confirmed.append(covered)
        server.resume()

    async def run_socket() -> None:
        async with sock:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sender, 0, sock)
                nursery.start_soon(sender, 1, sock)
                nursery.start_soon(chaos, sock)
                nursery.start_soon(waiter, sock)
            server.resume()
            with trio.move_on_after(5):
                await sock.close()

    async with trio.open_nursery() as outer:
        outer.start_soon(reader, sock)  # until the stream ends, when the block is left
        try:
            await run_socket()
        finally:
            left = True
            wake.set()
    ledger.stats = sock.statistics()  # the reader has read every event
    return ledger, streams


def check(ledger: Ledger, streams: list[RecordingStream]) -> list[str]:
    problems: list[str] = []
    written: Counter[str] = Counter()
    sequence: list[str] = []
    for stream in streams:
        for message in written_messages(bytes(stream.written)):
            ident = message_id(message)
            written[ident] += 1
            sequence.append(ident)
    for ident, outcome in sorted(ledger.outcome.items()):
        w, u = written[ident], ledger.undelivered[ident]
        reason = ledger.reasons.get(ident)
        in_flight = reason == "in flight"
        if w > 1:
            problems.append(f"{ident}: written {w} times")
        if u > 1:
            problems.append(f"{ident}: reported undelivered {u} times")
        if outcome == "ok":
            if w + u == 0:
                problems.append(f"{ident}: send() returned, never written nor reported")
            elif w == 1 and u == 1 and not in_flight:
                problems.append(f"{ident}: written and reported undelivered ({reason})")
        elif outcome == "cancelled":
            if u and not in_flight:
                problems.append(f"{ident}: send() cancelled, and reported ({reason})")
            if w and not in_flight:
                problems.append(f"{ident}: send() cancelled, and written")
        else:  # send() raised: nothing was taken
            if w or u:
                problems.append(f"{ident}: send() raised ({outcome}), and written={w} reported={u}")
    for task in ("0", "1"):
        ranks = [ledger.order[i] for i in sequence if i.startswith(task + ".")]
        if ranks != sorted(ranks):
            problems.append(f"task {task}: written out of order: {ranks}")
    for covered in ledger.confirmed:
        for ident in covered:
            # "in flight" reports are left out here: test_review_core's
            # test_wait_sent_raises_when_the_message_being_written_is_lost has them
            if written[ident] != 1 and ledger.reasons.get(ident) != "in flight":
                reason = ledger.reasons.get(ident)
                problems.append(f"{ident}: wait_sent() returned, yet not written ({reason})")
    stats = ledger.stats
    assert stats is not None
    in_flight_reports = sum(1 for why in ledger.reasons.values() if why == "in flight")
    if stats.messages_dropped != ledger.reported:
        problems.append(f"messages_dropped={stats.messages_dropped}, reported {ledger.reported}")
    total = sum(written.values())
    if not stats.messages_sent <= total <= stats.messages_sent + in_flight_reports:
        problems.append(f"messages_sent={stats.messages_sent}, written {total}")
    if stats.outbox_depth or stats.events_buffered:
        problems.append(f"left behind: {stats}")
    if ledger.truncated or ledger.skipped:
        problems.append(f"reports lost payloads: {ledger.truncated[:1]} {ledger.skipped[:1]}")
    return problems


@pytest.mark.parametrize("seed", SEEDS)
async def test_every_message_ends_up_in_exactly_one_place(
    seed: int, autojump_clock: object
) -> None:
    with trio.fail_after(600):
        async with open_mock_server() as server:
            ledger, streams = await story(seed, server)
    problems = check(ledger, streams)
    assert not problems, f"seed {seed}:\n" + "\n".join(problems[:20])
