"""How the event stream and the socket's lock take part in Trio's scheduling."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_clientsocket import EventStream, MessageReceived, SocketEvent
from trio_clientsocket._queues import SCHEDULE_EVERY, Mutex


def stream_with(count: int) -> EventStream:
    stream = EventStream(1000, 2**20, 10)
    assert stream._put_messages([str(i) for i in range(count)]) == count
    return stream


def test_the_event_stream_is_a_trio_receive_channel() -> None:
    assert isinstance(stream_with(0), trio.abc.ReceiveChannel)


async def test_receive_is_a_cancel_point_even_with_events_ready() -> None:
    stream = stream_with(3)
    with trio.CancelScope() as scope:
        scope.cancel()
        await stream.receive()
    assert scope.cancelled_caught
    first = await stream.receive()  # nothing was consumed by the cancelled call
    assert isinstance(first, MessageReceived)
    assert first.message == "0"


async def test_receive_lets_other_tasks_run_at_least_every_so_many_ready_events() -> None:
    count = 4 * SCHEDULE_EVERY
    stream = stream_with(count)
    ticks = 0

    async def ticker(*, task_status: trio.TaskStatus[None]) -> None:
        nonlocal ticks
        task_status.started()
        while True:
            ticks += 1
            await trio.lowlevel.checkpoint()

    got: list[SocketEvent] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(ticker)
        start = ticks
        for _ in range(count):
            got.append(await stream.receive())
        ran = ticks - start
        nursery.cancel_scope.cancel()
    assert len(got) == count
    # a schedule point once in SCHEDULE_EVERY ready events, not on every one
    # (give or take one: which of the two runs first in a batch is random)
    assert count // SCHEDULE_EVERY - 1 <= ran <= count // SCHEDULE_EVERY + 1


async def test_a_waiting_receive_is_woken_without_a_second_pass() -> None:
    stream = EventStream(1000, 2**20, 10)
    got: list[SocketEvent] = []

    async def reader() -> None:
        got.append(await stream.receive())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        stream._put_messages(["hello"])
        await trio.testing.wait_all_tasks_blocked()
        assert [e.message for e in got if isinstance(e, MessageReceived)] == ["hello"]


async def test_mutex_hands_over_in_order_and_survives_a_cancelled_waiter() -> None:
    mutex = Mutex()
    order: list[str] = []
    release = trio.Event()

    async def holder() -> None:
        async with mutex:
            order.append("holder")
            await release.wait()

    async def waiter(name: str) -> None:
        async with mutex:
            order.append(name)

    cancelled = trio.CancelScope()

    async def gives_up() -> None:
        with cancelled:
            await waiter("cancelled")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(holder)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(waiter, "first")
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(gives_up)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(waiter, "second")
        await trio.testing.wait_all_tasks_blocked()
        cancelled.cancel()
        await trio.testing.wait_all_tasks_blocked()
        release.set()
    assert order == ["holder", "first", "second"]
    async with mutex:  # free again
        pass


async def test_mutex_acquire_is_a_checkpoint() -> None:
    mutex = Mutex()
    with trio.CancelScope() as scope:
        scope.cancel()
        async with mutex:
            pytest.fail("entered a cancelled scope's lock")
    async with mutex:
        pass
