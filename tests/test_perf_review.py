"""An attack on this stop's performance changes (75dde75..de653be), as a hostile
server and a careless caller: ``EventStream.__anext__``'s inline path
(backpressure, schedule points, cancellation, order), ``open()`` waiting on
the run's first step, ``wait_connected()`` refusing an ended session, the
direct connect to an IP address, and the URL parsed once.

Public API only. The mock server and clock where time matters; real sockets on
127.0.0.1 (and ::1 when the machine has it) where the kernel does."""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import socket
import ssl

import pytest
import trio
import trio.testing
import trustme

from trio_clientsocket import (
    Backoff,
    ClientSocket,
    Connected,
    ConnectionFailed,
    ConnectTimeout,
    Event,
    MessageReceived,
    NotConnectedError,
    PingReceived,
    SocketClosedError,
    Status,
)
from trio_clientsocket.testing import MockServer, open_mock_server

from ._hostile_helpers import read_request, request_key, switching
from .conftest import EXACT, URL, client_socket, next_event_skip
from .proxy_server import Proxy

LIMIT = 600.0
"""Mock seconds within which every mock-clock test ends (a hang fails)."""
REAL = 20.0
"""Real seconds within which every real-socket test ends."""


def texts(events: list[Event]) -> list[object]:
    return [e.message for e in events if isinstance(e, MessageReceived)]


async def buffered(sock: ClientSocket, count: int) -> None:
    """Wait (bounded) until ``count`` events are buffered."""
    for _ in range(1000):
        if sock.statistics().events_buffered >= count:
            return
        await trio.testing.wait_all_tasks_blocked()
        await trio.sleep(0.01)
    raise AssertionError(f"never {count} events buffered: {sock.statistics()}")


# == 1. EventStream.__anext__ ======================================================


@pytest.mark.usefixtures("each_transport")
async def test_async_for_over_a_ready_buffer_lets_other_tasks_run(
    server: MockServer, autojump_clock: object
) -> None:
    """100 ready messages read by ``async for`` without a pause: another task
    runs at least every 16 of them."""
    count = 100
    with trio.fail_after(LIMIT):
        async with client_socket(URL, open_stream=server.open_stream) as sock:
            await next_event_skip(sock, Connected)
            connection = await server.wait_connections(1)
            for i in range(count):
                await connection.send(f"m{i}")
            await buffered(sock, count)
            got: list[object] = []
            runs = 0
            done = False

            async def other() -> None:
                nonlocal runs
                for _ in range(10 * count):  # bounded
                    if done:
                        return
                    runs += 1
                    await trio.lowlevel.cancel_shielded_checkpoint()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(other)  # it runs at the reader's schedule points
                async for event in sock.events():
                    assert isinstance(event, MessageReceived)
                    got.append(event.message)
                    if len(got) == count:
                        break
                done = True
            assert got == [f"m{i}" for i in range(count)]
            assert runs >= count // 16 - 1, runs


@pytest.mark.usefixtures("each_transport")
@pytest.mark.parametrize("at", [0, 1, 14, 15, 16, 17, 31, 32])
async def test_cancelled_async_for_takes_no_message(
    server: MockServer, autojump_clock: object, at: int
) -> None:
    """Cancelled before its next step, ``async for`` raises Cancelled and
    leaves the next message where it was, whatever the schedule counter."""
    count = 40
    with trio.fail_after(LIMIT):
        async with client_socket(URL, open_stream=server.open_stream) as sock:
            await next_event_skip(sock, Connected)
            connection = await server.wait_connections(1)
            for i in range(count):
                await connection.send(f"m{i}")
            await buffered(sock, count)
            got: list[object] = []
            with trio.CancelScope() as scope:
                if at == 0:
                    scope.cancel()
                async for event in sock.events():
                    assert isinstance(event, MessageReceived)
                    got.append(event.message)
                    if len(got) == at:
                        scope.cancel()
                    if len(got) > at:
                        break
            assert got == [f"m{i}" for i in range(at)], got
            rest = []
            async for event in sock.events():
                assert isinstance(event, MessageReceived)
                rest.append(event.message)
                if len(got) + len(rest) == count:
                    break
            assert got + rest == [f"m{i}" for i in range(count)]


@pytest.mark.usefixtures("each_transport")
async def test_async_for_cancelled_from_outside_loses_no_message(
    server: MockServer, autojump_clock: object
) -> None:
    """Another task cancels the reader at each of its schedule points in turn:
    every message the stream gave up was returned to the reader."""
    count = 200
    with trio.fail_after(LIMIT):
        async with client_socket(URL, open_stream=server.open_stream, event_buffer=512) as sock:
            await next_event_skip(sock, Connected)
            connection = await server.wait_connections(1)
            for i in range(count):
                await connection.send(f"m{i}")
            await buffered(sock, count)
            got: list[object] = []
            for delay in range(1, 40):  # bounded: each pass reads some
                if len(got) >= count:
                    break
                with trio.CancelScope() as scope:

                    async def canceller(steps: int, scope: trio.CancelScope = scope) -> None:
                        for _ in range(steps):
                            await trio.lowlevel.cancel_shielded_checkpoint()
                        scope.cancel()

                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(canceller, delay)
                        async for event in sock.events():
                            assert isinstance(event, MessageReceived)
                            got.append(event.message)
                            if len(got) >= count:
                                break
            assert got == [f"m{i}" for i in range(count)]


@pytest.mark.usefixtures("each_transport")
@pytest.mark.parametrize(("buffer", "byte_bound"), [(4, 8 * 2**20), (256, 4096), (1, 64)])
async def test_paused_reader_resumes_under_async_for(
    server: MockServer, autojump_clock: object, buffer: int, byte_bound: int
) -> None:
    """A server that sends far more than the buffer holds: ``async for`` reads
    every message in order (the paused reader is always woken)."""
    count = 300
    payload = "x" * 40
    with trio.fail_after(LIMIT):
        async with client_socket(
            URL,
            open_stream=server.open_stream,
            event_buffer=buffer,
            buffer_bytes=byte_bound,
            max_message_size=1024,
        ) as sock:
            await next_event_skip(sock, Connected)
            connection = await server.wait_connections(1)

            async def flood() -> None:
                for i in range(count):
                    await connection.send(f"{i}:{payload}")

            got: list[object] = []
            async with trio.open_nursery() as nursery:
                nursery.start_soon(flood)
                async for event in sock.events():
                    if isinstance(event, MessageReceived):
                        got.append(event.message)
                        if len(got) == count:
                            break
            assert got == [f"{i}:{payload}" for i in range(count)]
            assert sock.status is Status.CONNECTED


@pytest.mark.parametrize("transport", ["websockets", "wsproto"])
async def test_reports_among_ready_messages_keep_their_order(
    server: MockServer, autojump_clock: object, transport: str
) -> None:
    """Pings between messages come out of ``async for`` where they came, the
    inline path notwithstanding, also past a full buffer."""
    with trio.fail_after(LIMIT):
        async with client_socket(
            URL,
            open_stream=server.open_stream,
            ping_events=True,
            event_buffer=8,
            transport=transport,
        ) as sock:
            await next_event_skip(sock, Connected)
            connection = await server.wait_connections(1)
            expected: list[object] = []
            for i in range(30):
                await connection.send(f"m{i}")
                expected.append(f"m{i}")
                if i % 5 == 4:
                    await connection.ping(str(i).encode())
                    expected.append(("ping", str(i).encode()))
            await trio.testing.wait_all_tasks_blocked()
            got: list[object] = []
            async for event in sock.events():
                if isinstance(event, MessageReceived):
                    got.append(event.message)
                elif isinstance(event, PingReceived):
                    got.append(("ping", event.payload))
                if len(got) == len(expected):
                    break
            assert got == expected


@pytest.mark.usefixtures("each_transport")
async def test_aclose_while_the_reader_is_paused_frees_it(
    server: MockServer, autojump_clock: object
) -> None:
    """The application stops reading with ``aclose()`` while the buffer is full
    and the reader paused: the connection carries on (a message sent after is
    echoed, close() completes with the server's answer)."""
    with trio.fail_after(LIMIT):
        async with client_socket(URL, open_stream=server.open_stream, event_buffer=2) as sock:
            await next_event_skip(sock, Connected)
            connection = await server.wait_connections(1)
            for i in range(20):
                await connection.send(f"m{i}")
            await trio.testing.wait_all_tasks_blocked()
            first = await sock.events().receive()
            assert isinstance(first, MessageReceived)
            await sock.events().aclose()
            for i in range(20):
                await connection.send(f"n{i}")
            await sock.send("after")
            await server.wait_for(lambda: "after" in connection.received)
            await sock.close()
            assert connection.close_code == 1000
            with pytest.raises(trio.ClosedResourceError):
                await sock.events().__anext__()


# == 2. open(): the run's first step ==================================================


@pytest.mark.usefixtures("each_transport")
async def test_entering_cancelled_at_every_point_leaves_nothing(
    server: MockServer, autojump_clock: object
) -> None:
    """The block's entry cancelled after 0, 1, 2... schedule points: no task,
    run or connection outlives the block, and nothing dials later."""
    own = list(trio.lowlevel.current_task().child_nurseries)
    with trio.fail_after(LIMIT):
        for steps in range(12):
            with trio.CancelScope() as scope:

                async def canceller(steps: int = steps, scope: trio.CancelScope = scope) -> None:
                    for _ in range(steps):
                        await trio.lowlevel.cancel_shielded_checkpoint()
                    scope.cancel()

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(canceller)
                    async with client_socket(URL, open_stream=server.open_stream) as sock:
                        await sock.wait_connected()
                        await trio.sleep_forever()
            assert trio.lowlevel.current_task().child_nurseries == own
            assert sock.status is Status.DISCONNECTED
            assert not sock.is_open
            await server.wait_for(lambda: not server.open_connections)
        attempts = server.attempts
        await trio.sleep(100)
        assert server.attempts == attempts


@pytest.mark.usefixtures("each_transport")
async def test_open_cancelled_at_every_point_leaves_one_run_at_most(
    server: MockServer, autojump_clock: object
) -> None:
    """``open(other)`` cancelled after 0, 1, 2... schedule points: afterwards
    the socket is open on the new URL with one connection, or not open with
    none; the block's exit leaves nothing."""
    other = "ws://app.test/other?x"
    own = list(trio.lowlevel.current_task().child_nurseries)
    with trio.fail_after(LIMIT):
        async with client_socket(URL, open_stream=server.open_stream) as sock:
            await sock.wait_connected()
            for steps in range(12):
                await sock.open(URL)
                await sock.wait_connected()
                with trio.CancelScope() as scope:

                    async def canceller(s: int = steps, scope: trio.CancelScope = scope) -> None:
                        for _ in range(s):
                            await trio.lowlevel.cancel_shielded_checkpoint()
                        scope.cancel()

                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(canceller)
                        await sock.open(other)
                        await trio.sleep_forever()
                if sock.is_open:
                    await sock.wait_connected()
                    await trio.testing.wait_all_tasks_blocked()
                    assert [c.path for c in server.open_connections] == ["/other?x"]
                else:
                    await server.wait_for(lambda: not server.open_connections)
        assert trio.lowlevel.current_task().child_nurseries == own
        await server.wait_for(lambda: not server.open_connections)


@pytest.mark.usefixtures("each_transport")
async def test_close_racing_open_at_every_offset(
    server: MockServer, autojump_clock: object
) -> None:
    """``close()`` and ``open()`` from two tasks, close() starting 0, 1, 2...
    schedule points after open(): never a hang, and the state afterwards is
    consistent (open: one connection, reachable; closed: none, and iteration
    ends)."""
    with trio.fail_after(LIMIT):
        async with client_socket(URL, open_stream=server.open_stream) as sock:
            await sock.wait_connected()
            for steps in range(10):

                async def closer(s: int = steps) -> None:
                    for _ in range(s):
                        await trio.lowlevel.cancel_shielded_checkpoint()
                    await sock.close()

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(sock.open, f"ws://app.test/n{steps}?x")
                    nursery.start_soon(closer)
                if sock.is_open:
                    await sock.wait_connected()
                    await trio.testing.wait_all_tasks_blocked()
                    assert [c.path for c in server.open_connections] == [f"/n{steps}?x"]
                else:
                    assert sock.status is Status.DISCONNECTED
                    await server.wait_for(lambda: not server.open_connections)
                await sock.close()
                async for _ in sock.events():  # drained: ends after the close
                    pass


@pytest.mark.usefixtures("each_transport")
async def test_cancelled_close_racing_open_at_every_offset(
    server: MockServer, autojump_clock: object
) -> None:
    """A close() that is cancelled from the start (it aborts at once) racing
    open(): whichever wins, no run is stranded before its first step."""
    with trio.fail_after(LIMIT):
        async with client_socket(URL, open_stream=server.open_stream) as sock:
            await sock.wait_connected()
            for steps in range(8):

                async def closer(s: int = steps) -> None:
                    for _ in range(s):
                        await trio.lowlevel.cancel_shielded_checkpoint()
                    with trio.CancelScope() as scope:
                        scope.cancel()
                        await sock.close()

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(sock.open, f"ws://app.test/c{steps}?x")
                    nursery.start_soon(closer)
                if sock.is_open:
                    await sock.wait_connected()
                    await trio.testing.wait_all_tasks_blocked()
                    assert [c.path for c in server.open_connections] == [f"/c{steps}?x"]
                else:
                    await server.wait_for(lambda: not server.open_connections)
                await sock.open(URL)
                await sock.wait_connected()


@pytest.mark.usefixtures("each_transport")
async def test_two_opens_at_once_leave_one_connection(
    server: MockServer, autojump_clock: object
) -> None:
    with trio.fail_after(LIMIT):
        async with client_socket(URL, open_stream=server.open_stream) as sock:
            await sock.wait_connected()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sock.open, "ws://app.test/a?x")
                nursery.start_soon(sock.open, "ws://app.test/b?x")
            await sock.wait_connected()
            await trio.testing.wait_all_tasks_blocked()
            # the open() that took the lock last wins: one connection, to its URL
            assert sock.raw_url in ("ws://app.test/a?x", "ws://app.test/b?x")
            assert [c.path for c in server.open_connections] == [
                sock.raw_url[len("ws://app.test") :]
            ]


@pytest.mark.usefixtures("each_transport")
async def test_a_first_step_that_gives_up_returns_from_open(
    server: MockServer, autojump_clock: object
) -> None:
    """A URL callable that fails at once, without reconnecting: the run ends in
    its first step; open() returns, the failure is reported, wait_connected()
    raises, and open() works again."""

    def broken() -> str:
        raise RuntimeError("no url today")

    with trio.fail_after(LIMIT):
        async with client_socket(URL, open_stream=server.open_stream, reconnect=None) as sock:
            await sock.wait_connected()
            await sock.open(broken)
            failed = await next_event_skip(sock, ConnectionFailed)
            assert failed.retry_in is None
            assert "no url today" in str(failed.error)
            assert not sock.is_open
            with pytest.raises(SocketClosedError):
                await sock.wait_connected()
            await sock.open(URL)
            await sock.wait_connected()


@pytest.mark.usefixtures("each_transport")
async def test_a_classifier_that_raises_in_the_first_step_surfaces(
    server: MockServer, autojump_clock: object
) -> None:
    """A ``classify`` callable that raises on the first attempt's failure (in
    the run's first step): the error comes out of the block, nothing hangs."""

    def classify(error: Exception) -> bool:
        raise LookupError("classifier broke")

    server.refuse(1)
    with trio.fail_after(LIMIT):
        with pytest.raises(BaseException, match=r"classifier broke|nursery") as raised:
            async with client_socket(URL, open_stream=server.open_stream, classify=classify):
                await trio.sleep_forever()
    found = raised.value
    while isinstance(found, BaseExceptionGroup):
        found = found.exceptions[0]
    assert isinstance(found, LookupError), raised.value


# == 3. wait_connected() ============================================================


@pytest.mark.usefixtures("each_transport")
async def test_wait_connected_raises_when_the_socket_gives_up(
    server: MockServer, autojump_clock: object
) -> None:
    server.refuse(10)
    with trio.fail_after(LIMIT):
        async with client_socket(
            URL,
            open_stream=server.open_stream,
            reconnect=Backoff(initial=1.0, jitter=0.0, max_attempts=3),
        ) as sock:
            with pytest.raises(SocketClosedError):
                await sock.wait_connected()


@pytest.mark.usefixtures("each_transport")
async def test_many_waiters_all_return_connected_or_all_raise_on_close(
    server: MockServer, autojump_clock: object
) -> None:
    """Twenty waiters across a connection that the server ends at once
    (accept then close), a reconnect, then close(): each returns while
    CONNECTED, and all raise once closed."""
    server.accept_then_close(1000, count=2)
    with trio.fail_after(LIMIT):
        async with client_socket(URL, open_stream=server.open_stream, reconnect=EXACT) as sock:
            seen: list[bool] = []

            async def waiter() -> None:
                await sock.wait_connected()
                seen.append(sock.status is Status.CONNECTED)

            async with trio.open_nursery() as nursery:
                for _ in range(20):
                    nursery.start_soon(waiter)
            assert seen == [True] * 20
            await sock.close()
            raised = 0

            async def late_waiter() -> None:
                nonlocal raised
                with pytest.raises(SocketClosedError):
                    await sock.wait_connected()
                raised += 1

            async with trio.open_nursery() as nursery:
                for _ in range(20):
                    nursery.start_soon(late_waiter)
            assert raised == 20


@pytest.mark.usefixtures("each_transport")
async def test_waiters_raise_when_the_block_exits_or_close_runs(
    server: MockServer, autojump_clock: object
) -> None:
    server.stall()  # handshakes wait: the waiters wait
    raised = 0

    async def waiter(sock: ClientSocket) -> None:
        nonlocal raised
        with pytest.raises(SocketClosedError):
            await sock.wait_connected()
        raised += 1

    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            async with client_socket(URL, open_stream=server.open_stream) as sock:
                for _ in range(10):
                    nursery.start_soon(waiter, sock)
                await trio.testing.wait_all_tasks_blocked()
        assert raised == 10
        async with trio.open_nursery() as nursery:
            async with client_socket(URL, open_stream=server.open_stream) as sock:
                for _ in range(10):
                    nursery.start_soon(waiter, sock)
                await trio.testing.wait_all_tasks_blocked()
                await sock.close()
        assert raised == 20


@pytest.mark.usefixtures("each_transport")
async def test_wait_connected_after_a_server_close_without_reconnect_ends(
    server: MockServer, autojump_clock: object
) -> None:
    """The server closes right after the handshake and the socket does not
    reconnect: wait_connected() returns or raises, never hangs; once the
    socket has given up it raises."""
    server.accept_then_close(1000)
    with trio.fail_after(LIMIT):
        async with client_socket(URL, open_stream=server.open_stream, reconnect=None) as sock:
            with contextlib.suppress(SocketClosedError):
                await sock.wait_connected()
            await next_event_skip(sock, ConnectionFailed)
            with pytest.raises(SocketClosedError):
                await sock.wait_connected()


# == 4. the direct connect to an IP address (real sockets) ========================


def _free_port(family: int = socket.AF_INET, host: str = "127.0.0.1") -> int:
    """A port nothing listens on (bound then released)."""
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
    return port


def _have_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _first_failure(url: str, **options: object) -> ConnectionFailed:
    async with client_socket(url, reconnect=None, proxy=None, **options) as sock:
        return await next_event_skip(sock, ConnectionFailed)


@pytest.mark.parametrize(
    ("host", "family"),
    [
        ("127.0.0.1", socket.AF_INET),
        pytest.param(
            "::1",
            socket.AF_INET6,
            marks=pytest.mark.skipif(not _have_ipv6(), reason="no ::1 on this machine"),
        ),
    ],
)
@pytest.mark.usefixtures("each_transport")
async def test_a_refused_address_keeps_type_errno_and_wording(host: str, family: int) -> None:
    port = _free_port(family, host)
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    with trio.fail_after(REAL):
        failed = await _first_failure(f"ws://{shown}:{port}/")
    error = failed.error
    assert type(error) is ConnectionRefusedError
    assert error.errno == errno.ECONNREFUSED
    assert str(error) == f"cannot connect to {host}:{port}: Connection refused (ECONNREFUSED)"


@pytest.mark.skipif(not _have_ipv6(), reason="no ::1 on this machine")
@pytest.mark.usefixtures("each_transport")
async def test_ipv6_literal_connects_and_echoes() -> None:
    with trio.fail_after(REAL):
        async with open_mock_server(echo=True) as server:
            port = await server.listen_tcp("::1")
            async with client_socket(f"ws://[::1]:{port}/", proxy=None) as sock:
                await sock.wait_connected()
                await sock.send("over v6")
                event = await next_event_skip(sock, MessageReceived)
                assert event.message == "over v6"


class _Blackhole:
    """A listener on 127.0.0.1 that accepts nothing, its queue filled: a
    connect to it waits (the kernel drops the SYN)."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)
        self.port: int = self.listener.getsockname()[1]
        self.fillers: list[socket.socket] = []
        for _ in range(8):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", self.port))
            self.fillers.append(filler)

    def close(self) -> None:
        for filler in self.fillers:
            filler.close()
        self.listener.close()


@pytest.mark.usefixtures("each_transport")
async def test_connect_cancelled_or_timed_out_leaks_no_descriptor() -> None:
    """Connects to an address that does not answer, ended by connect_timeout,
    by close() and by cancelling the block, 10 times each: the process holds
    as many descriptors after as before."""
    hole = _Blackhole()
    try:
        url = f"ws://127.0.0.1:{hole.port}/"
        with trio.fail_after(REAL * 3):
            # warm up: whatever trio opens once (its wakeup socket...)
            await _first_failure(url, connect_timeout=0.05)
            before = _fds()
            for _ in range(10):
                failed = await _first_failure(url, connect_timeout=0.05)
                assert isinstance(failed.error, ConnectTimeout)
            for _ in range(10):
                async with client_socket(url, proxy=None) as sock:
                    await trio.sleep(0.01)  # the connect is under way (any point will do)
                    await sock.close()
            for _ in range(10):
                with trio.move_on_after(0.02):
                    async with client_socket(url, proxy=None):
                        await trio.sleep_forever()
            assert _fds() == before
    finally:
        hole.close()


@pytest.mark.usefixtures("each_transport")
async def test_proxy_given_as_an_ip_address() -> None:
    """An HTTP proxy at 127.0.0.1 carries the connection; a refused one is
    worded with its address, type and errno kept."""
    with trio.fail_after(REAL):
        async with open_mock_server(echo=True) as server, trio.open_nursery() as nursery:
            port = await server.listen_tcp()
            listeners = await nursery.start(
                functools.partial(trio.serve_tcp, Proxy(None).handle, 0, host="127.0.0.1")
            )
            proxy_port = listeners[0].socket.getsockname()[1]
            async with client_socket(
                f"ws://127.0.0.1:{port}/", proxy=f"http://127.0.0.1:{proxy_port}"
            ) as sock:
                await sock.send("via proxy")
                event = await next_event_skip(sock, MessageReceived)
                assert event.message == "via proxy"
            nursery.cancel_scope.cancel()
        dead = _free_port()
        async with client_socket(
            f"ws://127.0.0.1:{port}/", proxy=f"http://127.0.0.1:{dead}", reconnect=None
        ) as sock:
            failed = await next_event_skip(sock, ConnectionFailed)
    error = failed.error
    assert type(error) is ConnectionRefusedError
    assert error.errno == errno.ECONNREFUSED
    assert str(error) == (
        f"cannot connect to the proxy http://127.0.0.1:{dead}: Connection refused (ECONNREFUSED)"
    )


def _tls(name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


@pytest.mark.usefixtures("each_transport")
async def test_wss_to_an_ip_address() -> None:
    """wss://127.0.0.1 with a certificate for that address connects; one for
    another name is refused (the address is still what is checked)."""
    server_ctx, client_ctx = _tls("127.0.0.1")
    with trio.fail_after(REAL):
        async with open_mock_server(echo=True) as server:
            port = await server.listen_tcp(ssl_context=server_ctx)
            async with client_socket(
                f"wss://127.0.0.1:{port}/", ssl_context=client_ctx, proxy=None
            ) as sock:
                await sock.send("tls")
                event = await next_event_skip(sock, MessageReceived)
                assert event.message == "tls"
    server_ctx, client_ctx = _tls("example.test")
    with trio.fail_after(REAL):
        async with open_mock_server(echo=True) as server:
            port = await server.listen_tcp(ssl_context=server_ctx)
            failed = await _first_failure(f"wss://127.0.0.1:{port}/", ssl_context=client_ctx)
    assert "certificate" in str(failed.error).lower()


# == 5. the URL parsed once =========================================================


@pytest.mark.usefixtures("each_transport")
async def test_url_callable_is_resolved_at_every_attempt(
    server: MockServer, autojump_clock: object
) -> None:
    calls = 0

    def url() -> str:
        nonlocal calls
        calls += 1
        return f"ws://app.test/a{calls}?x"

    server.accept_then_close(1011, count=2)
    with trio.fail_after(LIMIT):
        async with client_socket(url, open_stream=server.open_stream, reconnect=EXACT) as sock:
            await server.wait_connections(3)
            await sock.wait_connected()
            assert [c.path for c in server.connections] == ["/a1?x", "/a2?x", "/a3?x"]


@pytest.mark.usefixtures("each_transport")
async def test_reconnects_and_reopens_go_to_the_url_of_the_last_open(
    server: MockServer, autojump_clock: object
) -> None:
    """The constructor's URL, then open(other) with a reconnect, then close()
    and open() again, then open() of a callable returning the first URL's
    very object: each attempt goes where its open() said."""
    first = "ws://app.test/first?x"
    with trio.fail_after(LIMIT):
        async with client_socket(first, open_stream=server.open_stream, reconnect=EXACT) as sock:
            await sock.wait_connected()
            await sock.open("ws://app.test/second?x")
            await sock.wait_connected()
            await server.drop_all()
            await server.wait_connections(3)
            await sock.wait_connected()
            await sock.close()
            await sock.open()
            await sock.wait_connected()
            await sock.open(lambda: first)
            await sock.wait_connected()
            await sock.open(first)
            await sock.wait_connected()
            paths = [c.path for c in server.connections]
            assert paths == [
                "/first?x",
                "/second?x",
                "/second?x",
                "/second?x",
                "/first?x",
                "/first?x",
            ]


class _CutServer:
    """An in-memory server that accepts every handshake and can cut the
    newest connection synchronously (EOF: its send side closed at once)."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self._current: trio.testing.MemorySendStream | None = None
        self.accepted = 0

    async def open_stream(self, url: str) -> trio.abc.Stream:
        client, server = trio.testing.memory_stream_pair()
        self._nursery.start_soon(self._serve, server)
        await trio.lowlevel.checkpoint()
        return client

    async def _serve(
        self,
        stream: trio.StapledStream[trio.testing.MemorySendStream, trio.testing.MemoryReceiveStream],
    ) -> None:
        request = await read_request(stream)
        await stream.send_all(switching(request_key(request)))
        self._current = stream.send_stream
        self.accepted += 1
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while await stream.receive_some():  # pings go unanswered: never mind
                pass

    def cut(self) -> None:
        assert self._current is not None
        self._current.close()


@pytest.mark.usefixtures("each_transport")
async def test_wait_connected_never_returns_for_a_session_that_ended_during_it(
    autojump_clock: object,
) -> None:
    """The connection is cut (EOF) just as twenty tasks call wait_connected():
    none of them returns for the dead session (ping() right after says the
    connection "has ended" if one did), five rounds."""
    verdicts: list[str] = []
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as outer:
            cutter = _CutServer(outer)
            async with client_socket(
                URL, open_stream=cutter.open_stream, reconnect=EXACT, ping_interval=None
            ) as sock:
                for _ in range(5):
                    await trio.testing.wait_all_tasks_blocked()
                    await sock.wait_connected()

                    async def waiter() -> None:
                        await sock.wait_connected()
                        try:
                            with trio.fail_after(30):
                                await sock.ping()
                        except NotConnectedError as exc:
                            verdicts.append(str(exc))
                        except trio.TooSlowError:
                            verdicts.append("no pong")

                    async with trio.open_nursery() as nursery:
                        cutter.cut()
                        for _ in range(20):
                            nursery.start_soon(waiter)
            outer.cancel_scope.cancel()
    assert not [v for v in verdicts if "has ended" in v], verdicts
