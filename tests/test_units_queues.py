"""The socket's two queues (``_queues``): the event stream the application reads
(its buffer, backpressure, reserve of reports, ``aclose()``) and the outbox
(numbering, settling, what ``wait_sent()`` learns). Synchronous where the API
allows; the waits run on pytest-trio with ``wait_all_tasks_blocked``."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_clientsocket import (
    Closed,
    Connected,
    ConnectionFailed,
    ConnectionLost,
    EventStream,
    MessageReceived,
    PingReceived,
    PongReceived,
    Skipped,
    SocketEvent,
    Undelivered,
)
from trio_clientsocket._queues import Outbox

LOST = ConnectionLost(1006, "gone")


def stream(bound: int = 4, byte_bound: int = 2**20, hold: int = 100) -> EventStream:
    return EventStream(bound, byte_bound, hold)


def read_all(events: EventStream) -> list[SocketEvent]:
    out = []
    while True:
        try:
            out.append(events.receive_nowait())
        except trio.WouldBlock:
            return out


def gave_up() -> ConnectionFailed:
    return ConnectionFailed(error=LOST, retry_in=None)


# -- the event stream: order, end, backpressure -------------------------------------


def test_events_come_out_in_order_then_would_block_then_end() -> None:
    events = stream()
    events._put_report(Connected(url="ws://h/"))
    assert events._put_messages(["a"]) == 1
    events._put_report(Closed(url="ws://h/"))
    assert len(events) == 3
    assert read_all(events) == [
        Connected(url="ws://h/"),
        MessageReceived("a"),
        Closed(url="ws://h/"),
    ]
    assert not events._is_closed
    events._close()
    assert events._is_closed
    with pytest.raises(trio.EndOfChannel):
        events.receive_nowait()


def test_a_full_buffer_takes_messages_up_to_its_count() -> None:
    events = stream(bound=2)
    batch: list[str | bytes] = ["a", "b", "c"]
    assert events._put_messages(batch) == 2  # the index of the first one not taken
    assert events._put_messages(batch, 2) == 2
    assert read_all(events) == [MessageReceived("a"), MessageReceived("b")]
    assert events._put_messages(batch, 2) == 3
    assert read_all(events) == [MessageReceived("c")]


def test_a_full_buffer_takes_messages_up_to_its_bytes() -> None:
    """Non-ASCII text counts four bytes a character; a message goes in only if
    it fits whole, so the buffer never holds more than its bytes."""
    events = stream(bound=100, byte_bound=5)
    assert events._put_messages(["é", b"xyz", "d"]) == 1  # 4, then 7: over
    assert len(events) == 1
    assert events._put_messages([b"x", b"y"]) == 1  # 5: full
    assert read_all(events) == [MessageReceived("é"), MessageReceived(b"x")]
    assert events._put_messages([b"xyz", "d"]) == 2


def test_a_message_larger_than_the_buffer_goes_in_alone() -> None:
    events = stream(bound=100, byte_bound=5)
    assert events._put_messages([b"x" * 10, b"y"]) == 1
    assert read_all(events) == [MessageReceived(b"x" * 10)]
    assert events._put_messages([b"y"]) == 1


def test_putting_from_an_index_skips_what_was_taken_before() -> None:
    events = stream()
    assert events._put_messages(["x", "y", "z"], 1) == 3
    assert read_all(events) == [MessageReceived("y"), MessageReceived("z")]
    assert events._put_messages(["x"], 1) == 1  # nothing left to take
    assert len(events) == 0


def test_messages_wait_behind_reports_kept_while_the_buffer_was_full() -> None:
    """A report that came while the buffer was full is in the reserve: a message
    may not overtake it, even once a slot frees up."""
    events = stream(bound=1)
    assert events._put_messages(["a"]) == 1
    events._put_report(gave_up())
    assert events.receive_nowait() == MessageReceived("a")
    assert events._put_messages(["b"]) == 0
    assert len(events) == 1
    assert events.receive_nowait() == gave_up()
    assert events._put_messages(["b"]) == 1


async def test_a_waiting_producer_is_woken_below_half_the_buffer() -> None:
    events = stream(bound=4)
    assert events._put_messages(list("abcd")) == 4
    woken = trio.Event()

    async def producer() -> None:
        await events._wait_room()
        woken.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(producer)
        for expected in "ab":  # 3 left, then 2: not below the low-water mark of 2
            await trio.testing.wait_all_tasks_blocked()
            assert not woken.is_set()
            assert events.receive_nowait() == MessageReceived(expected)
        await trio.testing.wait_all_tasks_blocked()
        assert not woken.is_set()
        assert events.receive_nowait() == MessageReceived("c")  # 1 left
        await woken.wait()


async def test_async_for_wakes_a_waiting_producer_below_half_the_buffer_too() -> None:
    """The same mark on ``async for``'s own path (``__anext__``)."""
    events = stream(bound=4)
    assert events._put_messages(list("abcd")) == 4
    woken = trio.Event()

    async def producer() -> None:
        await events._wait_room()
        woken.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(producer)
        taken = []
        async for event in events:
            taken.append(event)
            await trio.testing.wait_all_tasks_blocked()
            # 3 left, then 2: not below the low-water mark of 2; then 1
            assert woken.is_set() == (len(taken) >= 3)
            if len(taken) == 3:
                break
    assert taken == [MessageReceived(m) for m in "abc"]


async def test_close_wakes_a_producer_waiting_for_room() -> None:
    events = stream(bound=1)
    assert events._put_messages(["a"]) == 1
    async with trio.open_nursery() as nursery:
        nursery.start_soon(events._wait_room)
        await trio.testing.wait_all_tasks_blocked()
        events._close()
    # the buffered event is still read before the end
    assert events.receive_nowait() == MessageReceived("a")
    with pytest.raises(trio.EndOfChannel):
        events.receive_nowait()


async def test_receive_waits_for_the_next_event_and_ends_with_the_stream() -> None:
    events = stream()
    got: list[SocketEvent] = []

    async def reader() -> None:
        async for event in events:
            got.append(event)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        events._put_report(Connected(url="u"))
        await trio.testing.wait_all_tasks_blocked()
        assert got == [Connected(url="u")]
        events._put_messages(["m"])
        events._close()
    assert got == [Connected(url="u"), MessageReceived("m")]


async def test_a_reader_woken_for_an_event_another_took_waits_for_the_next() -> None:
    events = stream()
    got: list[SocketEvent] = []

    async def reader() -> None:
        got.append(await events.receive())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        events._put_report(Connected(url="first"))  # wakes the reader...
        assert events.receive_nowait() == Connected(url="first")  # ...but this takes it
        await trio.testing.wait_all_tasks_blocked()
        assert got == []
        events._put_report(Connected(url="second"))
    assert got == [Connected(url="second")]


async def test_close_ends_a_waiting_reader() -> None:
    events = stream()
    ended: list[bool] = []

    async def reader() -> None:
        try:
            await events.receive()
        except trio.EndOfChannel:
            ended.append(True)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        assert ended == []
        events._close()
    assert ended == [True]


def test_forced_messages_come_after_the_reports_that_waited_for_room() -> None:
    """When the session ends while the reader is held, what it had read is
    put all the same (``force``): past the bounds, and after the reports that
    were waiting in the reserve, so that the order of events is kept."""
    events = stream(bound=1, byte_bound=1)
    assert events._put_messages(["a"]) == 1
    events._put_report(gave_up())  # the buffer is full: into the reserve
    assert events._put_messages(["b", "c", "d"], 1, force=True) == 3
    assert read_all(events) == [
        MessageReceived("a"),
        gave_up(),
        MessageReceived("c"),
        MessageReceived("d"),
    ]


# -- the event stream: aclose() ------------------------------------------------------


async def test_aclose_discards_what_is_buffered_and_everything_after() -> None:
    events = stream(bound=1)
    events._put_messages(["a"])
    events._put_report(gave_up())
    events._put_undelivered(("x",), "closed")
    await events.aclose()
    assert events._is_closed
    assert len(events) == 0
    with pytest.raises(
        trio.ClosedResourceError, match=r"^the event stream was closed with aclose\(\)$"
    ):
        events.receive_nowait()
    # the socket carries on: nothing is kept, and nothing waits for room
    assert events._put_messages(["b", "c"], 1) == 2  # taken: discarded
    events._put_report(Closed(url=None))
    events._put_undelivered(("y",), "closed")
    assert len(events) == 0
    assert events._dropped == 0
    with trio.fail_after(1):
        await events._wait_room()  # does not wait
    with pytest.raises(trio.ClosedResourceError):
        await events.receive()


async def test_aclose_wakes_a_waiting_reader_with_closed_resource_error() -> None:
    events = stream()
    errors: list[BaseException] = []

    async def reader() -> None:
        try:
            await events.receive()
        except trio.ClosedResourceError as exc:
            errors.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        await events.aclose()
    assert len(errors) == 1


async def test_aclose_wakes_a_producer_waiting_for_room() -> None:
    events = stream(bound=1)
    assert events._put_messages(["a", "b"]) == 1
    woken = trio.Event()

    async def producer() -> None:
        await events._wait_room()
        woken.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(producer)
        await trio.testing.wait_all_tasks_blocked()
        assert not woken.is_set()
        await events.aclose()
    assert woken.is_set()


# -- the event stream: the reserve of reports -----------------------------------------


def test_the_reserve_drops_a_connected_before_older_reports() -> None:
    """bound=1: a reserve of 8. The 9th report drops the oldest droppable one (a
    Connected, though a Closed is older), and Skipped comes before the rest."""
    events = stream(bound=1)
    events._put_messages(["m"])
    events._put_report(Closed(url="old"))
    events._put_report(Connected(url="c"))
    for _ in range(7):
        events._put_report(gave_up())
    assert events._dropped == 1
    assert read_all(events) == [
        MessageReceived("m"),
        Skipped(count=1, undelivered=0),
        Closed(url="old"),
        *[gave_up()] * 7,
    ]


def test_the_reserve_drops_pings_and_pongs_before_older_reports() -> None:
    """A flood of the server's pings and pongs (ping_events) past the reserve
    drops them, never the report that came before them."""
    events = stream(bound=1)
    events._put_messages(["m"])
    events._put_report(gave_up())
    notices: list[PingReceived | PongReceived] = []
    for n in range(20):
        notices.append(PingReceived(bytes([n])) if n % 2 else PongReceived(bytes([n]), None))
    events._put_notices(notices)
    assert notices == []  # emptied for the next read
    kept = read_all(events)
    assert kept[:3] == [MessageReceived("m"), Skipped(count=13, undelivered=0), gave_up()]
    assert len(kept) == 3 + 7  # the reserve of 8: the report and the 7 newest notices
    assert kept[3:] == [
        PingReceived(bytes([n])) if n % 2 else PongReceived(bytes([n]), None)
        for n in range(13, 20)
    ]


def test_the_reserve_drops_a_retried_failure_before_one_that_gave_up() -> None:
    events = stream(bound=1)
    events._put_messages(["m"])
    events._put_report(gave_up())
    retried = ConnectionFailed(error=LOST, retry_in=2.0)
    events._put_report(retried)
    for _ in range(7):
        events._put_report(Closed(url=None))
    assert read_all(events)[1:3] == [Skipped(count=1), gave_up()]


def test_without_droppable_reports_the_oldest_goes_and_its_messages_are_counted() -> None:
    events = stream(bound=1, hold=2)
    events._put_messages(["m"])
    events._put_undelivered(("a", "b", "c"), "closed")  # keeps 2 payloads, counts 3
    for _ in range(8):
        events._put_report(gave_up())
    assert events._dropped == 1
    assert len(events) == 1 + 1 + 8  # message, Skipped, the reserve
    assert read_all(events) == [
        MessageReceived("m"),
        Skipped(count=1, undelivered=3),
        *[gave_up()] * 8,
    ]
    # the dropped report's payloads no longer count against the hold bound
    events._put_undelivered(("x", "y"), "closed")
    assert read_all(events) == [Undelivered(messages=("x", "y"), reason="closed")]


def test_skipped_counts_every_drop_until_it_is_read() -> None:
    events = stream(bound=1)
    events._put_messages(["m"])
    for _ in range(8 + 3):
        events._put_report(Closed(url=None))
    assert events._dropped == 3
    assert read_all(events)[:2] == [MessageReceived("m"), Skipped(count=3)]
    events._put_report(Closed(url=None))
    events._put_report(Closed(url=None))
    assert Skipped(count=3) not in read_all(events)


def test_undelivered_reports_merge_by_reason_and_keep_at_most_hold_payloads() -> None:
    events = stream(bound=8, hold=3)
    events._put_undelivered(("a", "b"), "closed")
    events._put_undelivered(("c", "d"), "closed")  # merged: 3 kept, 4 counted
    events._put_undelivered(("e",), "dropped")  # another reason: a new report
    events._put_undelivered((), "dropped")  # nothing to report
    assert read_all(events) == [
        Undelivered(messages=("a", "b", "c"), reason="closed", count=4),
        Undelivered(messages=(), reason="dropped", count=1),
    ]


# -- the outbox -------------------------------------------------------------------------


def test_requeue_puts_the_message_in_flight_back_first_in_line() -> None:
    outbox = Outbox(capacity=3)
    outbox.append("a")
    assert outbox.take() == "a"
    outbox.append("b")
    assert (len(outbox), outbox.idle, outbox.full) == (2, False, False)
    outbox.requeue()
    assert outbox.inflight is None
    assert list(outbox.items) == ["a", "b"]
    assert outbox.head == 0
    assert [outbox.take(), outbox.take()] == ["a", "b"]


def test_requeue_with_nothing_in_flight_changes_nothing() -> None:
    outbox = Outbox(capacity=1)
    outbox.requeue()
    assert outbox.idle
    assert outbox.head == 0
    assert len(outbox) == 0


def test_drain_and_drop_oldest_record_why_messages_were_lost() -> None:
    outbox = Outbox(capacity=2)
    for message in ("a", "b"):
        outbox.append(message)
    assert outbox.full
    assert outbox.drop_oldest() == "a"
    assert outbox.lost == "dropped"
    outbox.append("c")
    assert outbox.drain("closed") == ("b", "c")
    assert outbox.lost == "dropped"  # the first loss since open() is the one reported
    assert outbox.drain("closed") == ()
    assert outbox.head == 3
    assert outbox.idle


async def settled(outbox: Outbox, results: list[str | None]) -> None:
    results.append(await outbox.wait_settled())


async def test_wait_settled_returns_none_once_everything_taken_is_written() -> None:
    outbox = Outbox(capacity=4)
    outbox.append("a")
    outbox.take()
    outbox.append("b")
    results: list[str | None] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(settled, outbox, results)
        await trio.testing.wait_all_tasks_blocked()
        outbox.done()
        outbox.append("after")  # not waited for
        await trio.testing.wait_all_tasks_blocked()
        assert results == []
        outbox.take()
        outbox.done()
    assert results == [None]
    assert list(outbox.items) == ["after"]


async def test_a_loss_after_the_waited_messages_does_not_fail_the_wait() -> None:
    """wait_sent() waits for "a" (in flight); "b" and "c" come after it, and "b"
    is dropped: the wait still ends well."""
    outbox = Outbox(capacity=2)
    outbox.append("a")
    outbox.take()
    results: list[str | None] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(settled, outbox, results)
        await trio.testing.wait_all_tasks_blocked()
        outbox.append("b")
        outbox.append("c")
        assert outbox.drop_oldest() == "b"
        outbox.done()
    assert results == [None]
    assert outbox.lost == "dropped"  # a later wait_sent() learns of it


async def test_the_first_loss_of_a_waited_message_is_the_one_reported() -> None:
    outbox = Outbox(capacity=3)
    for message in "abc":
        outbox.append(message)
    outbox.lost = None
    results: list[str | None] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(settled, outbox, results)
        await trio.testing.wait_all_tasks_blocked()
        outbox.drop_oldest()
        await trio.testing.wait_all_tasks_blocked()
        assert results == []  # "b" and "c" are still to be settled
        outbox.drain("closed")
    assert results == ["dropped"]


async def test_a_message_cut_off_in_flight_ends_the_wait_with_what_the_outbox_recorded() -> None:
    """A message cut off part-way is settled (reported, not written): the wait
    ends, and learns exactly the loss the outbox records (``wait_sent()`` turns
    it into its error)."""
    outbox = Outbox(capacity=1)
    outbox.take_direct("a")
    results: list[str | None] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(settled, outbox, results)
        await trio.testing.wait_all_tasks_blocked()
        assert results == []
        assert outbox.lose_inflight() == "a"
    assert results == [outbox.lost]
    assert outbox.idle


def test_a_cancelled_direct_send_leaves_nothing_in_flight() -> None:
    outbox = Outbox(capacity=1)
    outbox.take_direct("b")
    assert len(outbox) == 1
    outbox.cancel_inflight()
    assert outbox.idle
    assert outbox.lost is None  # not lost: its send() raised
    assert outbox.head == 1
