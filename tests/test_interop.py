"""Interop: the socket against servers nobody here wrote (issue 14).

Each server of ``tests/interop/harness.py`` runs as a subprocess on 127.0.0.1
(started once per server for the whole module, restarted when a test kills
it), speaking the command protocol of ``tests/interop/protocol.py``. Every
check runs on every engine; the matrix (server x engine x check) is printed at
the end of the run. A server that cannot run here (node or a package missing)
is skipped with the reason.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, NoReturn, ParamSpec, TypeVar

import pytest
import trio

from trio_clientsocket import (
    Backoff,
    Classifier,
    ClientSocket,
    Closed,
    Connected,
    ConnectionFailed,
    ConnectionLost,
    Event,
    KeepaliveTimeout,
    Message,
    MessageReceived,
)

from .conftest import TRANSPORTS, client_socket
from .interop import protocol
from .interop.harness import SERVERS, ServerProcess, ServerSpec
from .interop.matrix import Matrix

pytestmark = pytest.mark.usefixtures("each_transport")

P = ParamSpec("P")
E = TypeVar("E", bound=Event)

FAST = Backoff(initial=0.02, factor=2, maximum=0.1, jitter=0)
BY_NAME = {spec.name: spec for spec in SERVERS}
MIB = 2**20
TEXT_MIB = "GeneXus " * (MIB // 8)
BINARY_MIB = bytes(range(256)) * (MIB // 256)
RANDOM_MIB = os.urandom(MIB)  # incompressible
KEEPALIVE_SECONDS = 2.0
CLOSE_TIMEOUT = 1.5
CROSSING_ROUNDS = 10

CHECKS = {
    "test_echo": "echo",
    "test_incompressible_message_at_the_limit": "limit",
    "test_notify": "notify",
    "test_order": "order",
    "test_server_close": "close",
    "test_fatal_close_code": "fatal",
    "test_too_big": "1009",
    "test_keepalive": "keepalive",
    "test_kill_and_restart": "kill-9",
    "test_client_close": "client-close",
    "test_compression": "deflate",
    "test_close_crossing_server_ping": "ping-x-close",
}
COLUMNS = [
    "echo", "limit", "notify", "order", "close1000", "close4001", "fatal", "1009",
    "keepalive", "kill-9", "client-close", "deflate", "ping-x-close",
]  # fmt: skip


def bounded(
    seconds: float,
) -> Callable[[Callable[P, Awaitable[None]]], Callable[P, Awaitable[None]]]:
    """Fail a test that runs longer than ``seconds`` instead of hanging CI."""

    def decorate(test: Callable[P, Awaitable[None]]) -> Callable[P, Awaitable[None]]:
        @functools.wraps(test)
        async def run(*args: P.args, **kwargs: P.kwargs) -> None:
            with trio.fail_after(seconds):
                await test(*args, **kwargs)

        return run

    return decorate


# -- the servers and the matrix ----------------------------------------------------


def cell_of(item: pytest.Item) -> tuple[str, str, str] | None:
    """The matrix cell of an interop test: (server, engine, check)."""
    if not isinstance(item, pytest.Function) or item.originalname not in CHECKS:
        return None
    params = item.callspec.params
    check = CHECKS[item.originalname] + str(params.get("code", ""))
    return str(params["server_process"]), str(params["each_transport"]), check


@pytest.fixture(scope="module", autouse=True)
def matrix(request: pytest.FixtureRequest) -> None:
    """Register the matrix printer (once per run)."""
    manager = request.config.pluginmanager
    if manager.get_plugin("interop-matrix") is None:
        items = request.session.items
        manager.register(
            Matrix([s.name for s in SERVERS], TRANSPORTS, COLUMNS, items, cell_of),
            "interop-matrix",
        )


@pytest.fixture(scope="module", params=[spec.name for spec in SERVERS])
def server_process(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """One server process for every test of that server (pytest groups them)."""
    spec = BY_NAME[request.param]
    reason = spec.missing()
    if reason is not None:
        pytest.skip(reason)
    server = ServerProcess(spec)
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def server(server_process: ServerProcess) -> Iterator[ServerProcess]:
    """The server, running (started again on its port if a test left it dead);
    its standard error is shown when the test fails."""
    if not server_process.running:
        server_process.start(same_port=True)
    yield server_process
    print(server_process.log())  # captured: shown only when the test fails


def expectation(server: ServerSpec, engine: str, check: str) -> tuple[str, str] | None:
    """("skip" or "xfail", reason) for a cell known not to pass, else None."""
    if check == "ping-x-close" and not server.can_ping:
        return "skip", "ASGI gives the application no way to send a ping: no crossing on demand"
    if check == "client-close" and not server.reports_close_codes:
        return "skip", (
            f"{server.name} does not pass the client's close code on: its ASGI "
            "websocket.disconnect says 1006 for every close the client starts"
        )
    return None


@pytest.fixture(autouse=True)
def known_cells(request: pytest.FixtureRequest) -> None:
    """Skip, or mark as an expected failure (strict), the cells ``expectation``
    names; at setup, so that the reason shows."""
    cell = cell_of(request.node)
    if cell is None:
        return
    server, engine, check = cell
    expected = expectation(BY_NAME[server], engine, check)
    if expected is None:
        return
    kind, reason = expected
    if kind == "skip":
        pytest.skip(reason)
    request.node.add_marker(pytest.mark.xfail(strict=True, reason=reason))


def skip_cell(request: pytest.FixtureRequest, reason: str) -> NoReturn:
    """pytest.skip from inside the test: pytest-trio re-raises a skip without
    its message, so the matrix takes the reason from the report's properties."""
    request.node.user_properties.append(("reason", reason))
    pytest.skip(reason)


# -- helpers -------------------------------------------------------------------------


def connect(server: ServerProcess, **options: Any) -> ClientSocket:
    options.setdefault("reconnect", FAST)
    return client_socket(server.url(), **options)


async def next_event(sock: ClientSocket, kind: type[E]) -> E:
    """The next event that is not ``Connected``, which must be of ``kind``
    (or ``Connected`` itself when asked for)."""
    async for event in sock.events():
        if isinstance(event, kind):
            return event
        if not isinstance(event, Connected):
            raise AssertionError(f"expected {kind.__name__}, got {event!r}")
    raise AssertionError("the event stream ended")


async def receive(sock: ClientSocket, *, retried_failures: bool = False) -> Message:
    """The next message; any other event than ``Connected`` (and, with
    ``retried_failures``, a retried ``ConnectionFailed``) fails the test."""
    async for event in sock.events():
        if isinstance(event, MessageReceived):
            return event.message
        if isinstance(event, Connected):
            continue
        if retried_failures and isinstance(event, ConnectionFailed) and event.retry_in:
            continue
        raise AssertionError(f"expected a message, got {event!r}")
    raise AssertionError("the event stream ended")


async def report(sock: ClientSocket) -> dict[str, Any]:
    """The server's ``stats`` answer."""
    await sock.send("stats")
    message = await receive(sock)
    assert isinstance(message, str), message
    value: dict[str, Any] = json.loads(message)
    return value


async def close_code_seen(sock: ClientSocket, connection: int) -> int | None:
    """The close code the server saw from the client on ``connection``, asked
    over ``sock`` until the server has recorded it (bounded)."""
    for _ in range(100):
        closes = (await report(sock))["closes"]
        if str(connection) in closes:
            code: int | None = closes[str(connection)]
            return code
    raise AssertionError(f"the server recorded no close of connection {connection}")


def summary(messages: list[Message]) -> list[tuple[str, int, int]]:
    """Messages as (type, length, hash): comparable without printing a MiB."""
    return [(type(m).__name__, len(m), hash(m)) for m in messages]


# -- the checks ----------------------------------------------------------------------


@bounded(20)
async def test_echo(server: ServerProcess) -> None:
    messages: list[Message] = [
        "hello", "", b"", b"\x00\xff", "héllo ✓ 🙂", TEXT_MIB, BINARY_MIB,
    ]  # fmt: skip
    async with connect(server) as sock:
        for message in messages:
            await sock.send(message)
        got = [await receive(sock) for _ in messages]
    assert summary(got) == summary(messages)


@bounded(20)
async def test_incompressible_message_at_the_limit(server: ServerProcess) -> None:
    """1 MiB of random bytes, exactly max_message_size (the default): accepted,
    whether or not the server compresses it (its deflate output is larger)."""
    async with connect(server) as sock:
        await sock.send(RANDOM_MIB)
        got = await receive(sock)
    assert summary([got]) == summary([RANDOM_MIB])


@bounded(10)
async def test_notify(server: ServerProcess) -> None:
    async with connect(server) as sock:
        await sock.send("notify")
        event = await next_event(sock, MessageReceived)
    notification = event.notification
    assert notification is not None, event
    assert notification.id.startswith(server.spec.name)
    assert notification.object == ""
    assert json.loads(notification.message)["text"].startswith("notification ")


@bounded(30)
async def test_order(server: ServerProcess) -> None:
    """1,000 messages each way, at once: the server's flood and the client's
    messages echoed, each in order."""
    count = 1000
    flood: list[Message] = []
    echoed: list[Message] = []
    async with connect(server) as sock:
        await sock.send(f"flood {count} 32")
        async with trio.open_nursery() as nursery:

            async def push() -> None:
                for i in range(count):
                    await sock.send(f"c{i}")

            nursery.start_soon(push)
            for _ in range(2 * count):
                message = await receive(sock)
                (echoed if isinstance(message, str) and message[0] == "c" else flood).append(
                    message
                )
    assert flood == [protocol.flood_message(i, 32) for i in range(count)]
    assert echoed == [f"c{i}" for i in range(count)]


@pytest.mark.parametrize("code", [1000, 4001])
@bounded(10)
async def test_server_close(server: ServerProcess, code: int) -> None:
    """The server's close code is reported, by the server, and retried."""
    async with connect(server) as sock:
        await next_event(sock, Connected)
        await sock.send(f"close {code}")
        failed = await next_event(sock, ConnectionFailed)
        assert isinstance(failed.error, ConnectionLost), repr(failed.error)
        assert (failed.error.code, failed.error.by_server) == (code, True)
        assert failed.retry_in is not None
        await next_event(sock, Connected)
        await sock.send("again")
        assert await receive(sock) == "again"
        assert sock.statistics().reconnects == 1


@bounded(10)
async def test_fatal_close_code(server: ServerProcess) -> None:
    """A close code the classifier makes fatal stops retrying."""
    async with connect(server, classify=Classifier(fatal_close_codes={4001})) as sock:
        await next_event(sock, Connected)
        await sock.send("close 4001")
        failed = await next_event(sock, ConnectionFailed)
        assert isinstance(failed.error, ConnectionLost), repr(failed.error)
        assert (failed.error.code, failed.error.by_server) == (4001, True)
        assert failed.retry_in is None
        assert not sock.is_open
        assert sock.statistics().attempts == 1


@bounded(15)
async def test_too_big(server: ServerProcess) -> None:
    """A message of the limit arrives; one byte over closes with 1009 (after
    decompression where the server compresses), and the server sees 1009."""
    limit = 64 * 1024
    async with connect(server, max_message_size=limit) as sock:
        await sock.send(f"flood 1 {limit}")
        assert await receive(sock) == protocol.flood_message(0, limit)
        connection = (await report(sock))["connection"]
        await sock.send(f"flood 1 {limit + 1}")
        failed = await next_event(sock, ConnectionFailed)
        assert isinstance(failed.error, ConnectionLost), repr(failed.error)
        assert (failed.error.code, failed.error.by_server) == (1009, False)
        assert failed.retry_in is not None
        if server.spec.reports_close_codes:  # asked over the next connection
            assert await close_code_seen(sock, connection) == 1009


@bounded(15)
async def test_keepalive(server: ServerProcess) -> None:
    """A few seconds idle: a socket with a short ping_interval measures its
    round trip and never times out; a socket that never pings survives too
    (answering the server's own pings, where it sends them: aiohttp's heartbeat)."""
    async with connect(server, ping_interval=0.1, ping_timeout=1.0) as active:
        async with connect(server, ping_interval=None) as silent:
            await active.wait_connected()
            await silent.wait_connected()
            silent_bytes = silent.statistics().bytes_received

            async def watch(sock: ClientSocket) -> None:
                async for event in sock.events():
                    assert not isinstance(event, ConnectionFailed | Closed), event

            with trio.move_on_after(KEEPALIVE_SECONDS):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(watch, active)
                    nursery.start_soon(watch, silent)
            for sock in (active, silent):
                await sock.send("still here")
                assert await receive(sock) == "still here"
                stats = sock.statistics()
                assert (stats.attempts, stats.reconnects) == (1, 0)
                assert not isinstance(stats.last_error, KeepaliveTimeout)
            assert active.statistics().last_rtt is not None
            assert silent.statistics().last_rtt is None
            if server.spec.name == "aiohttp-heartbeat":  # its pings came and were answered
                assert silent.statistics().bytes_received > silent_bytes + len("still here")


@bounded(40)
async def test_kill_and_restart(server: ServerProcess) -> None:
    """kill -9, then the same server on the same port: the messages sent
    meanwhile arrive once each, in order."""
    meanwhile = [f"meanwhile {i}" for i in range(20)]
    async with connect(server) as sock:
        await sock.send("before")
        assert await receive(sock) == "before"
        await trio.to_thread.run_sync(server.kill)
        failed = await next_event(sock, ConnectionFailed)
        assert failed.retry_in is not None, failed
        for message in meanwhile:
            await sock.send(message)
        await trio.to_thread.run_sync(functools.partial(server.start, same_port=True))
        await sock.send("after")
        got = [await receive(sock, retried_failures=True) for _ in range(len(meanwhile) + 1)]
        assert got == [*meanwhile, "after"]
        await sock.send("last")
        assert await receive(sock) == "last"  # nothing came twice in between
        assert sock.statistics().reconnects == 1


@bounded(10)
async def test_client_close(server: ServerProcess) -> None:
    """The client's close arrives as 1000: from close(), and from leaving the block."""
    async with connect(server) as sock:
        closed = (await report(sock))["connection"]
        await sock.close()
        await next_event(sock, Closed)
    async with connect(server) as sock:
        left = (await report(sock))["connection"]
    async with connect(server) as probe:
        assert await close_code_seen(probe, closed) == 1000
        assert await close_code_seen(probe, left) == 1000


@bounded(20)
async def test_compression(
    server: ServerProcess, each_transport: str, request: pytest.FixtureRequest
) -> None:
    """permessage-deflate is negotiated wherever the server offers it (and the
    server says so, where its library tells), and the bytes on the wire are
    compressed both ways; with compression=None, or against a server that
    does not offer it, nothing is compressed."""
    async with connect(server) as sock:
        before = await report(sock)
        start = sock.statistics()
        await sock.send(TEXT_MIB)
        assert await receive(sock) == TEXT_MIB
        await sock.send(f"flood 1 {MIB}")
        assert await receive(sock) == protocol.flood_message(0, MIB)
        end = sock.statistics()
        after = await report(sock)
    sent = end.bytes_sent - start.bytes_sent
    received = end.bytes_received - start.bytes_received
    offered = before.get("offered")
    async with connect(server, compression=None) as plain:
        declined = await report(plain)
        assert not plain.statistics().compressed
    assert declined.get("compressed") in (False, None)
    assert declined.get("offered") is None

    if each_transport == "trio-websocket" or not server.spec.compresses:
        assert not end.compressed
        assert before.get("compressed") in (False, None)
        assert sent > MIB
        assert received > 2 * MIB
        if each_transport == "trio-websocket":
            skip_cell(request, "the trio-websocket engine offers no permessage-deflate")
        return
    assert end.compressed
    if server.spec.reports_compression:
        assert before["compressed"] is True, before
    else:  # ASGI: the server shows only what the client offered
        assert offered is not None
        assert "permessage-deflate" in offered
    assert sent < MIB // 10, f"{sent} bytes on the wire for 1 MiB sent"
    assert received < MIB // 5, f"{received} bytes on the wire for 2 MiB received"
    if "wire_bytes_received" in after:  # the server's own count of bytes on the wire
        wire = after["wire_bytes_received"] - before["wire_bytes_received"]
        assert wire < MIB // 10, f"the server read {wire} bytes for 1 MiB"


@bounded(CROSSING_ROUNDS * CLOSE_TIMEOUT + 20)
async def test_close_crossing_server_ping(
    server: ServerProcess, request: pytest.FixtureRequest
) -> None:
    """close() returns promptly (well within close_timeout) when a server ping
    crosses the client's close frame: the client sends ``ping`` and closes at
    once, round after round. A ping that no pong answered crossed the close
    (where the server shows pongs; aiohttp does not, so there every ping counts)."""
    async with connect(server) as probe:
        before = await report(probe)
    durations: list[float] = []
    for _ in range(CROSSING_ROUNDS):
        async with connect(server, ping_interval=None, close_timeout=CLOSE_TIMEOUT) as sock:
            await sock.wait_connected()
            await sock.send("ping")
            start = trio.current_time()
            await sock.close()
            durations.append(trio.current_time() - start)
        if durations[-1] > CLOSE_TIMEOUT / 2:
            break
    async with connect(server) as probe:
        after = await report(probe)
    pings = after["pings"] - before["pings"]
    crossed = pings - (after["pongs"] - before["pongs"] if after["pongs"] is not None else 0)
    slowest = max(durations)
    assert slowest < CLOSE_TIMEOUT / 2, (
        f"close() took {slowest:.2f} s of close_timeout={CLOSE_TIMEOUT} "
        f"(round {durations.index(slowest) + 1}; {pings} pings, {crossed} unanswered)"
    )
    if crossed == 0:
        skip_cell(request, f"no crossing provoked: the client answered all {pings} pings")
