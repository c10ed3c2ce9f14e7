"""Record and replay (issue 21): a transcript of real traffic, played back on
the mock clock with the same events at the same times, divergences reported,
secrets redacted, the size bounded, on every transport."""

from __future__ import annotations

import base64
import contextlib
import datetime
import io
import json
import os
import re
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from tests.conftest import EXACT, client_socket
from tests.test_cli import CLI, Lines, start
from trio_clientsocket import (
    ClientSocket,
    Closed,
    Connected,
    ConnectionFailed,
    Event,
    MessageReceived,
    ProxyRejected,
    SocketClosedError,
    __version__,
)
from trio_clientsocket._errors import underlying_causes
from trio_clientsocket.testing import (
    MockServer,
    Recorder,
    ReplayDivergence,
    ReplayServer,
    ServerConnection,
    open_mock_server,
    open_replay_server,
)

DOCS = Path(__file__).resolve().parent.parent / "docs"

Seen = list[tuple[float, tuple[Any, ...]]]


def summary(event: Event) -> tuple[Any, ...]:
    """An event as compared between a run and its replay."""
    match event:
        case ConnectionFailed(error=error, retry_in=retry_in):
            return (
                "ConnectionFailed",
                type(error).__name__,
                str(error),
                getattr(error, "code", None),
                retry_in,
            )
        case MessageReceived(message=message):
            return ("MessageReceived", message)
        case _:
            return (type(event).__name__,)


def lines(path: Path | str) -> list[dict[str, Any]]:
    text = Path(path).read_text() if isinstance(path, Path) else path
    return [json.loads(line) for line in text.splitlines()]


def events_of(transcript: list[dict[str, Any]], kind: str, **match: Any) -> list[dict[str, Any]]:
    return [
        e
        for e in transcript[1:]
        if e["ev"] == kind and all(e.get(k) == v for k, v in match.items())
    ]


async def collect(sock: ClientSocket, seen: Seen, t0: float, kind: type[Event]) -> Event:
    """Events into ``seen`` (times since ``t0``) until one of ``kind``."""
    async for event in sock.events():
        seen.append((trio.current_time() - t0, summary(event)))
        if isinstance(event, kind):
            return event
    raise AssertionError(f"the event stream ended before a {kind.__name__}")


async def play_out(replay: ReplayServer, sock: ClientSocket, seen: Seen, count: int) -> None:
    """Events until one short of ``count``; at the recording's end, close
    (the recorded application's last act) and take the ``Closed``."""
    while len(seen) < count - 1:
        await collect(sock, seen, 0.0, Event)
    await replay.wait_finished()
    await sock.close()
    await collect(sock, seen, 0.0, Closed)


# -- the test: a real TCP session, two restarts and a close code -------------


async def test_a_real_tcp_session_replays_with_the_same_events_at_the_same_times(
    mock_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """Recorded against a real server on 127.0.0.1 on a clock that moves only
    when the test says (so every time in the transcript is exact), then
    replayed on the autojump clock: the same events, at the same times."""
    path = tmp_path / "session.jsonl"
    recorded: Seen = []
    greeted = 0

    async def greet(server: MockServer, connection: ServerConnection) -> None:
        nonlocal greeted
        greeted += 1
        await connection.send(f"hello {greeted}")

    async with open_mock_server(echo=True, opened=greet) as server:
        server.compression = True
        port = await server.listen_tcp()
        url = f"ws://127.0.0.1:{port}/app/gxwebsocket?recorded"
        async with ClientSocket(url, reconnect=EXACT, record=path) as sock:
            assert await collect(sock, recorded, 0.0, Connected)
            await collect(sock, recorded, 0.0, MessageReceived)  # hello 1
            await sock.send("one")
            await collect(sock, recorded, 0.0, MessageReceived)  # the echo
            for _ in range(2):  # two restarts, each with a refusal while down
                mock_clock.jump(2)
                await server.stop()
                lost = await collect(sock, recorded, 0.0, ConnectionFailed)
                assert isinstance(lost, ConnectionFailed)
                assert lost.retry_in is not None
                mock_clock.jump(lost.retry_in)  # the client is asleep until then
                refused = await collect(sock, recorded, 0.0, ConnectionFailed)
                assert isinstance(refused, ConnectionFailed)
                assert refused.retry_in is not None
                await server.start()
                mock_clock.jump(refused.retry_in)
                await collect(sock, recorded, 0.0, Connected)
                await collect(sock, recorded, 0.0, MessageReceived)
            mock_clock.jump(1)
            await server.connections[-1].close(4001, "maintenance")
            closed = await collect(sock, recorded, 0.0, ConnectionFailed)
            assert isinstance(closed, ConnectionFailed)
            assert closed.retry_in is not None
            mock_clock.jump(closed.retry_in)
            await collect(sock, recorded, 0.0, Connected)
            await collect(sock, recorded, 0.0, MessageReceived)
            mock_clock.jump(1)
            await sock.close()
            await collect(sock, recorded, 0.0, Closed)

    kinds = [s[0] for _, s in recorded]
    assert kinds.count("Connected") == 4
    failures = [s for _, s in recorded if s[0] == "ConnectionFailed"]
    assert [(f[1], f[3]) for f in failures] == [
        ("ConnectionLost", 1006),
        ("ConnectionRefusedError", None),
        ("ConnectionLost", 1006),
        ("ConnectionRefusedError", None),
        ("ConnectionLost", 4001),
    ]
    transcript = lines(path)
    header = transcript[0]
    assert (header["format"], header["version"], header["library"]) == (
        "trio-clientsocket-transcript",
        1,
        __version__,
    )
    assert header["url"] == url
    assert header["max_bytes"] == 64 * 2**20
    assert datetime.datetime.fromisoformat(header["started"]).utcoffset() == datetime.timedelta(0)
    assert transcript[-1]["ev"] == "stop"  # the socket closed the file it opened
    assert events_of(transcript, "close", **{"from": "server", "code": 4001})

    mock_clock.autojump_threshold = 0
    replayed: Seen = []
    async with open_replay_server(path) as replay:
        async with replay.client(url, reconnect=EXACT) as sock:
            await collect(sock, replayed, 0.0, MessageReceived)
            await sock.send("one")
            await play_out(replay, sock, replayed, len(recorded))
    assert replay.started_at is not None
    assert [(t - replay.started_at, s) for t, s in replayed] == recorded


# -- the CLI, and the how-to page's example -------------------------------------------


def page_example() -> str:
    """The record-replay page's test, as the page shows it."""
    page = (DOCS / "record-replay.md").read_text()
    blocks: list[str] = re.findall(r"```python\n(.*?)```", page, re.S)
    tests = [b for b in blocks if "async def test_" in b and "open_replay_server" in b]
    assert len(tests) == 1
    return tests[0]


async def test_a_cli_recording_replays_in_the_pages_example(tmp_path: Path) -> None:
    """``connect --record`` against a local server that sends two prices,
    restarts (1012), and sends a third on the new connection; then the docs
    page's pytest example replays the file and passes."""

    async def received(server: MockServer, connection: ServerConnection, info: Any) -> None:
        if info.message == "subscribe prices":
            await connection.send("price 1")
            await connection.send("price 2")
            await connection.close(1012, "restarting")

    async def opened(server: MockServer, connection: ServerConnection) -> None:
        if len(server.connections) > 1:
            await connection.send("price 3")

    incident = tmp_path / "incident.jsonl"
    with trio.fail_after(60):
        async with open_mock_server(received=received, opened=opened) as server:
            port = await server.listen_tcp()
            async with trio.open_nursery() as nursery:
                client = await start(
                    nursery,
                    "connect",
                    f"ws://127.0.0.1:{port}/app/gxwebsocket?cli",
                    "--json",
                    "--reconnect-initial",
                    "0.1",
                    "--record",
                    str(incident),
                )
                assert client.stdin is not None
                assert client.stdout is not None
                await client.stdin.send_all(b"subscribe prices\n")
                await Lines(client.stdout).until(event="message", message="price 3")
                await client.stdin.aclose()  # end of input: the CLI closes with 1000
                assert await client.wait() == 0
    transcript = lines(incident)
    reports = [e["event"] for e in events_of(transcript, "report")]
    assert reports == [
        "Connected",
        "MessageReceived",
        "MessageReceived",
        "ConnectionFailed",
        "Connected",
        "MessageReceived",
        "Closed",
    ]
    (failed,) = events_of(transcript, "report", event="ConnectionFailed")
    assert (failed["error_type"], failed["code"]) == ("trio_clientsocket.ConnectionLost", 1012)

    (tmp_path / "test_incident.py").write_text(page_example())
    (tmp_path / "pytest.ini").write_text("[pytest]\ntrio_mode = true\n")
    done = await trio.run_process(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(DOCS.parent)},  # this checkout's package
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert done.returncode == 0, (done.stdout + done.stderr).decode()
    assert b"1 passed" in done.stdout

    # the divergence the page shows, word for word
    with pytest.raises(ReplayDivergence) as caught:
        await replay_sending(incident.read_text(), ["subscribe price"])
    shown = re.search(r"```text\n(connection .*)\n```", (DOCS / "record-replay.md").read_text())
    assert shown is not None
    at = r"at \d+\.\d{3} s"  # when the handshake was answered: a few ms into this recording
    assert re.sub(at, "at T", str(caught.value)) == re.sub(at, "at T", shown.group(1))


def test_cli_record_to_an_unwritable_file_exits_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [*CLI, "connect", "ws://127.0.0.1:9/", "--record", str(tmp_path / "no" / "x.jsonl")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: --record: cannot write")
    assert "Traceback" not in done.stderr


# -- every transport ------------------------------------------------------------------


async def test_the_recorder_on_every_transport(
    each_transport: str, autojump_clock: trio.testing.MockClock
) -> None:
    """Both directions parsed (the client's frames unmasked, compressed ones
    inflated), pings and pongs, the server's close code, and a replay with
    the same events, on each transport."""
    file = io.StringIO()
    recorded: Seen = []
    big = "x" * 70_000  # several frames' worth, compressed where the transport can
    async with open_mock_server(echo=True) as server:
        server.compression = True
        recorder = Recorder(file)
        options: dict[str, Any] = {"reconnect": EXACT, "ping_interval": 5.0, "ping_timeout": 2.0}
        async with client_socket(
            "ws://mock.test/x", open_stream=server.open_stream, record=recorder, **options
        ) as sock:
            await sock.send("héllo")
            await sock.send(b"\x00\xff" * 10)
            await sock.send(big)
            for _ in range(4):
                event = await collect(sock, recorded, 0.0, Event)
                recorder.record_event(event)
            await trio.sleep(12)  # idle: keepalive pings, answered
            await server.close_all(4002, "bye now")
            event = await collect(sock, recorded, 0.0, ConnectionFailed)
            recorder.record_event(event)
            await collect(sock, recorded, 0.0, Connected)
            await sock.close()
            await collect(sock, recorded, 0.0, Closed)
        recorder.close()
    transcript = lines(file.getvalue())
    sent = events_of(transcript, "message", **{"from": "client"})
    binary = base64.b64encode(b"\x00\xff" * 10).decode()
    assert [m.get("text", m.get("b64")) for m in sent] == ["héllo", binary, big]
    came = events_of(transcript, "message", **{"from": "server"})
    assert [m.get("text", m.get("b64")) for m in came] == ["héllo", binary, big]
    if each_transport != "trio-websocket":
        assert all(m.get("compressed") for m in sent + came)
    pings = events_of(transcript, "ping", **{"from": "client"})
    pongs = events_of(transcript, "pong", **{"from": "server"})
    assert pings
    assert [p["b64"] for p in pongs] == [p["b64"] for p in pings]
    assert events_of(transcript, "close", **{"from": "server", "code": 4002, "reason": "bye now"})
    assert [e["event"] for e in events_of(transcript, "report")] == [
        "Connected",
        "MessageReceived",
        "MessageReceived",
        "MessageReceived",
        "ConnectionFailed",
    ]

    replayed: Seen = []
    async with open_replay_server(io.StringIO(file.getvalue())) as replay:
        async with client_socket(
            "ws://mock.test/x", open_stream=replay.open_stream, **options
        ) as sock:
            await sock.send("héllo")
            await sock.send(b"\x00\xff" * 10)
            await sock.send(big)
            await play_out(replay, sock, replayed, len(recorded))
    assert replay.started_at is not None
    assert [(t - replay.started_at, s) for t, s in replayed] == recorded  # recorded from 0


# -- failures of every kind, replayed as they came -----------------------------------


class Scripted:
    """An ``open_stream`` that raises the failures it is given, in order (None:
    open the mock server's stream instead; "hang": never return)."""

    def __init__(self, server: MockServer, failures: list[BaseException | str | None]) -> None:
        self.server = server
        self.failures = failures

    async def __call__(self, url: str) -> trio.abc.Stream:
        await trio.lowlevel.checkpoint()
        if self.failures:
            failure = self.failures.pop(0)
            if failure == "hang":
                await trio.sleep_forever()
            if isinstance(failure, BaseException):
                raise failure
        return await self.server.open_stream(url)


def refused() -> OSError:
    """A refusal as ``trio.open_tcp_stream`` reports it: the causes in a group."""
    error = OSError("all attempts to connect to db.test:5432 failed")
    error.__cause__ = ExceptionGroup(
        "all attempts to connect to db.test:5432 failed",
        [ConnectionRefusedError(111, "Error connecting to ('db.test', 5432): Connection refused")],
    )
    return error


async def test_failures_of_every_kind_replay_with_the_same_errors(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A refusal (with its causes), a DNS failure, a proxy's 503, a TCP
    connect that hangs and a handshake answer that never comes (both
    ConnectTimeout), a handshake 503, a dead peer (KeepaliveTimeout: no pong),
    garbage (ProtocolError 1002), invalid UTF-8 (1007), and a TLS certificate
    failure that ends it: the replay gives the same errors (class, text, code,
    causes) at the same times."""
    options: dict[str, Any] = {"reconnect": EXACT, "ping_interval": 5.0, "ping_timeout": 2.0}
    file = io.StringIO()
    recorded: Seen = []
    errors: list[BaseException] = []
    async with open_mock_server() as server:
        server.reject(503)
        server.delay_handshake(20)
        opener = Scripted(
            server,
            [
                refused(),
                socket.gaierror(-2, "Name or service not known"),
                ProxyRejected("http://proxy.test:3128", 503),
                "hang",  # cut short by connect_timeout
                None,  # rejected: 503
                None,  # the answer never comes: ConnectTimeout
                None,  # connected, then the server freezes: KeepaliveTimeout
                None,  # connected, then garbage
                None,  # connected, then a text message that is not UTF-8
                ssl.SSLCertVerificationError(
                    1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"
                ),
            ],
        )
        recorder = Recorder(file)
        async with ClientSocket(
            "ws://mock.test/x", open_stream=opener, record=recorder, **options
        ) as sock:
            async for event in sock.events():
                recorded.append((trio.current_time(), summary(event)))
                recorder.record_event(event)
                if isinstance(event, ConnectionFailed):
                    errors.append(event.error)
                    server.resume()
                    if event.retry_in is None:
                        break
                elif isinstance(event, Connected) and len(server.connections) == 1:
                    server.stall()
                elif isinstance(event, Connected) and len(server.connections) == 2:
                    await server.connections[-1].send_raw(b"\x8f\x00")  # reserved opcode
                elif isinstance(event, Connected):
                    await server.connections[-1].send_raw(b"\x81\x02\xff\xfe")
        recorder.close()
    assert [s[1] for _, s in recorded if s[0] == "ConnectionFailed"] == [
        "OSError",
        "gaierror",
        "ProxyRejected",
        "ConnectTimeout",
        "HandshakeRejected",
        "ConnectTimeout",
        "KeepaliveTimeout",
        "ProtocolError",
        "ProtocolError",
        "SSLCertVerificationError",
    ]
    assert [getattr(e, "code", None) for e in errors][-3:] == [1002, 1007, None]
    transcript = lines(file.getvalue())
    assert len(events_of(transcript, "connect_cancelled")) == 1
    (invalid,) = events_of(transcript, "message", **{"from": "server"})
    assert (invalid["kind"], invalid["b64"]) == ("text", "//4=")

    replayed: Seen = []
    again: list[BaseException] = []
    async with open_replay_server(io.StringIO(file.getvalue())) as replay:
        async with replay.client(**options) as sock:
            async for event in sock.events():
                replayed.append((trio.current_time() - (replay.started_at or 0.0), summary(event)))
                if isinstance(event, ConnectionFailed):
                    again.append(event.error)
                    if event.retry_in is None:
                        break
    assert replayed == recorded
    assert [type(e) for e in again] == [type(e) for e in errors]
    assert underlying_causes(again[0]) == underlying_causes(errors[0]) == [
        "Connection refused (ECONNREFUSED)"
    ]
    assert isinstance(again[1], socket.gaierror)
    assert again[1].errno == -2
    assert isinstance(again[2], ProxyRejected)
    assert again[2].status_code == 503


async def test_past_the_recorded_connections_the_replay_refuses(
    autojump_clock: trio.testing.MockClock,
) -> None:
    file = io.StringIO()
    async with open_mock_server() as server:
        server.accept_then_close(4001)
        async with server.client(reconnect=None, record=file) as sock:
            await next_failure(sock)
    async with open_replay_server(io.StringIO(file.getvalue())) as replay:
        async with replay.client(reconnect=EXACT) as sock:
            first = await next_failure(sock)
            second = await next_failure(sock)
    assert "code 4001" in str(first)
    assert isinstance(second, ConnectionRefusedError)
    assert str(second) == "[Errno 111] the transcript has no connection 2 (it has 1)"


async def next_failure(sock: ClientSocket) -> BaseException:
    async for event in sock.events():
        if isinstance(event, ConnectionFailed):
            return event.error
    raise AssertionError("no ConnectionFailed")


async def test_a_close_the_recording_does_not_have_is_answered_as_a_server_does(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Recorded: the server closed after 60 s. Replayed: the application
    closes at once, and the replay answers its close frame: the close is clean
    and quick, not a close_timeout."""
    file = io.StringIO()
    async with open_mock_server() as server:
        async with server.client(record=file) as sock:
            await sock.wait_connected()
            await trio.sleep(60)
            await server.close_all(1001)
            await next_failure(sock)
    async with open_replay_server(io.StringIO(file.getvalue())) as replay:
        async with replay.client() as sock:
            await sock.wait_connected()
            began = trio.current_time()
            await sock.close()
            assert trio.current_time() - began < 1.0  # virtual time: answered, not timed out
            assert isinstance(await next_event(sock), Closed)
    assert [e["code"] for e in events_of(lines(file.getvalue()), "close")] == [1001, 1001]


async def next_event(sock: ClientSocket) -> Event:
    async for event in sock.events():
        if not isinstance(event, Connected):
            return event
    raise AssertionError("no event")


async def test_a_compressed_recording_replays_to_a_client_that_does_not_compress(
    autojump_clock: trio.testing.MockClock,
) -> None:
    file = io.StringIO()
    async with open_mock_server(echo=True) as server:
        server.compression = True
        async with server.client(record=file) as sock:
            await sock.send("squeeze me " * 20)
            assert isinstance(await next_event(sock), MessageReceived)
    sent = events_of(lines(file.getvalue()), "message", **{"from": "server"})
    assert sent[0]["compressed"] is True
    async with open_replay_server(io.StringIO(file.getvalue())) as replay:
        async with replay.client(compression=None) as sock:
            await sock.send("squeeze me " * 20)
            event = await next_event(sock)
            assert isinstance(event, MessageReceived)
            assert event.message == "squeeze me " * 20
            assert sock.statistics().compressed is False


# -- divergences ----------------------------------------------------------------------


async def recorded_session(sends: list[str | bytes]) -> str:
    """A transcript: the application sends ``sends`` to an echo server, reads
    the echoes, and leaves."""
    file = io.StringIO()
    async with open_mock_server(echo=True) as server:
        async with server.client(record=file) as sock:
            for message in sends:
                await sock.send(message)
            for _ in sends:
                await next_event(sock)
    return file.getvalue()


async def replay_sending(
    transcript: str, sends: list[str | bytes], *, strict: bool = True
) -> list[ReplayDivergence]:
    async with open_replay_server(io.StringIO(transcript), strict=strict) as replay:
        async with replay.client() as sock:
            for message in sends:
                await sock.send(message)
            await replay.wait_finished()
    return replay.divergences


async def test_the_same_messages_replay_without_divergence(
    autojump_clock: trio.testing.MockClock,
) -> None:
    transcript = await recorded_session(["a", b"b"])
    assert await replay_sending(transcript, ["a", b"b"]) == []


async def test_another_message_is_a_divergence_raised_when_the_block_exits(
    autojump_clock: trio.testing.MockClock,
) -> None:
    transcript = await recorded_session(["a", "b"])
    with pytest.raises(ReplayDivergence) as caught:
        await replay_sending(transcript, ["a", "c"])
    divergence = caught.value
    assert (divergence.connection, divergence.expected, divergence.came) == (1, "b", "c")
    assert divergence.time == 0.0
    assert str(divergence) == (
        "connection 1, at 0.000 s: the application sent 'c' where the recording has 'b'"
    )


async def test_a_message_more_or_one_missing_or_of_another_kind_is_a_divergence(
    autojump_clock: trio.testing.MockClock,
) -> None:
    transcript = await recorded_session(["a", "b"])
    (extra,) = await replay_sending(transcript, ["a", "b", "x"], strict=False)
    assert (extra.expected, extra.came) == (None, "x")
    assert "more messages than the recording has" in str(extra)
    (missing,) = await replay_sending(transcript, ["a"], strict=False)
    assert (missing.expected, missing.came) == ("b", None)
    assert str(missing) == (
        "connection 1: the recording has the application send 'b' by 0.000 s; it did not"
    )
    (kind,) = await replay_sending(transcript, ["a", b"b"], strict=False)
    assert (kind.expected, kind.came) == ("b", b"b")


async def test_every_divergence_is_kept_and_the_first_raised(
    autojump_clock: trio.testing.MockClock,
) -> None:
    transcript = await recorded_session(["a", "b"])
    with pytest.raises(ReplayDivergence, match=r"\(and 1 more: see ReplayServer.divergences\)"):
        await replay_sending(transcript, ["x", "y"])


# -- redaction -------------------------------------------------------------------------

SECRETS = [
    "pa55w0rd-x",
    "t0ps3cret-x",
    "b3arer-t0ken",
    "c00kie-v4lue",
    "k3y-v4lue",
    "s3t-c00kie",
    "s3ss10n-id",
    "r3direct-t0k",
    base64.b64encode(b"alice:pa55w0rd-x").decode(),  # the Basic credentials the URL makes
]


@pytest.mark.parametrize("authorization", ["from the URL", "Bearer b3arer-t0ken"])
async def test_no_secret_is_written(
    authorization: str, autojump_clock: trio.testing.MockClock
) -> None:
    """A URL password and query token, an Authorization header (Basic, from the
    URL's credentials, or given), a cookie, an API key, the server's
    Set-Cookie and session header, a redirect's token: none reaches the
    file, not even inside an error text or a close reason."""
    url = "ws://alice:pa55w0rd-x@mock.test/app?token=t0ps3cret-x&v=1"
    headers = {"Cookie": "sid=c00kie-v4lue", "X-Api-Key": "k3y-v4lue"}
    if authorization != "from the URL":
        headers["Authorization"] = authorization
    file = io.StringIO()
    recorder = Recorder(file, visible_query_keys={"v"})
    async with open_mock_server() as server:
        server.accept_headers = [("Set-Cookie", "session=s3t-c00kie"), ("X-Session", "s3ss10n-id")]
        server.redirect("ws://mock.test/moved?token=r3direct-t0k")
        opener = Scripted(server, [OSError(f"cannot reach {url} (token t0ps3cret-x)")])
        async with ClientSocket(
            url, open_stream=opener, headers=headers, record=recorder, reconnect=EXACT
        ) as sock:
            async for event in sock.events():
                recorder.record_event(event)
                if isinstance(event, Connected):
                    await server.close_all(4000, "bad token t0ps3cret-x for pa55w0rd-x")
                elif isinstance(event, ConnectionFailed) and server.connections:
                    break
        recorder.close()
    text = file.getvalue()
    for secret in SECRETS:
        assert secret not in text
    transcript = lines(text)
    assert transcript[0]["url"] == "ws://alice:***@mock.test/app?token=***&v=1"
    (failed,) = events_of(transcript, "connect_failed")
    assert failed["error"] == "cannot reach ws://alice:***@mock.test/app?token=***&v=1 (token ***)"
    request = events_of(transcript, "request")[0]
    assert ["Authorization", "***"] in request["headers"]
    assert ["Cookie", "***"] in request["headers"]
    assert request["target"] == "/app?token=***&v=1"
    assert len(events_of(transcript, "connect")) == 3  # failed, redirected, moved
    redirect = events_of(transcript, "response", status=302)[0]
    assert ["location", "ws://mock.test/moved?token=***"] in redirect["headers"]
    assert events_of(transcript, "close", **{"from": "server", "reason": "bad token *** for ***"})


# -- the size bound --------------------------------------------------------------------


async def test_the_file_is_bounded_and_says_where_it_stopped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Bodies stop at three quarters of max_bytes, message lines at max_bytes;
    the connection's end is still recorded, and the truncated transcript still
    replays what it has (the close code) without false divergences."""
    file = io.StringIO()
    recorder = Recorder(file, max_bytes=4400)
    # 100 bytes each, 670 in JSON: the line, not only the message, must fit
    messages = [f"{n:03d}" + "\x01" * 97 for n in range(60)]
    async with open_mock_server(echo=True) as server:
        async with server.client(record=recorder, reconnect=None) as sock:
            for message in messages:
                await sock.send(message)
            for _ in messages:
                await next_event(sock)
            await server.close_all(4001, "enough")
            recorder.record_event(await next_event(sock))
        recorder.close()
    text = file.getvalue()
    ends = []  # each line's end, in bytes from the start of the file
    position = 0
    for line in text.splitlines(keepends=True):
        position += len(line.encode())
        ends.append((position, json.loads(line)))
    with_body = [end for end, e in ends if "text" in e or "b64" in e]
    data = [end for end, e in ends if e.get("ev") in ("message", "ping", "pong", "raw")]
    assert with_body
    assert max(with_body) <= 3300
    assert data
    assert max(data) <= 4400
    notices = [e["what"] for _, e in ends if e.get("ev") == "truncated"]
    assert notices == ["bodies", "messages"]
    kinds = [e.get("ev") for _, e in ends]
    assert kinds.index("truncated") < kinds.index("close")  # the end is still there
    assert kinds[-3:] == ["end", "report", "stop"]
    assert len(text.encode()) < 4400 + 1000  # past the bound: connection lines only

    async with open_replay_server(io.StringIO(text)) as replay:
        async with replay.client(reconnect=None) as sock:
            with contextlib.suppress(SocketClosedError):  # closed where the recording was cut
                for message in messages:
                    await sock.send(message)
            error = await next_failure(sock)
    assert "code 4001" in str(error)
    assert replay.divergences == []


async def test_max_bytes_0_writes_no_message_data(autojump_clock: trio.testing.MockClock) -> None:
    file = io.StringIO()
    async with open_mock_server(echo=True) as server:
        async with server.client(record=Recorder(file, max_bytes=0)) as sock:
            await sock.send("s3cret payload")
            await next_event(sock)
    text = file.getvalue()
    assert "s3cret payload" not in text
    assert events_of(lines(text), "close", **{"from": "client", "code": 1000})


async def test_a_recorder_that_cannot_write_stops_and_the_socket_carries_on(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    class DiskFull(io.StringIO):
        def write(self, text: str) -> int:
            if len(self.getvalue()) > 300:
                raise OSError(28, "No space left on device")
            return super().write(text)

    file = DiskFull()
    async with open_mock_server(echo=True) as server:
        async with server.client(record=file) as sock:
            for n in range(5):
                await sock.send(f"message {n}")
            received = [await next_event(sock) for _ in range(5)]
    assert [e.message for e in received if isinstance(e, MessageReceived)] == [
        f"message {n}" for n in range(5)
    ]
    assert "recording stopped: cannot write the transcript" in caplog.text
    assert caplog.text.count("recording stopped") == 1
    assert len(file.getvalue()) < 1000


# -- the option, the recorder and the reader: what they take ----------------------------


async def test_a_path_is_created_at_once_and_closed_with_the_block(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text("old content\n")
    async with open_mock_server() as server:
        sock = server.client(record=path)
        assert path.read_text() == ""  # created (truncated) by the constructor
        async with sock:
            await sock.wait_connected()
            written = [e.get("ev") for e in lines(path)]  # as it happens, not at the end
            assert written[1:5] == ["connect", "open", "request", "response"]
    assert lines(path)[-1]["ev"] == "stop"


async def test_a_recorder_given_is_left_open(autojump_clock: trio.testing.MockClock) -> None:
    file = io.StringIO()
    recorder = Recorder(file)
    async with open_mock_server() as server:
        async with server.client(record=recorder) as sock:
            await sock.wait_connected()
        recorder.record_event(Closed(url=None))  # still writing: the socket did not close it
    recorder.close()
    assert [e.get("ev") for e in lines(file.getvalue())][-2:] == ["report", "stop"]


def test_bad_record_options_are_refused_naming_the_option(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"^record must be a path, a writable text file"):
        ClientSocket(record=42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^record: cannot write .*No such file or directory"):
        ClientSocket(record=tmp_path / "missing" / "x.jsonl")
    with pytest.raises(ValueError, match=r"^max_bytes must be an int >= 0"):
        Recorder(io.StringIO(), max_bytes=-1)
    with pytest.raises(TypeError, match=r"^file must be a path or a writable text file"):
        Recorder(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="record_event takes a socket event"):
        Recorder(io.StringIO()).record_event("Connected")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the transcript"),
        ("not json\n", "line 1: not JSON"),
        ('{"format": "something else"}\n', "is not a trio-clientsocket transcript"),
        (
            '{"format": "trio-clientsocket-transcript", "version": 99}\n',
            "version 99; this library reads version 1 and older",
        ),
    ],
)
async def test_what_is_no_transcript_is_refused_clearly(
    content: str | None, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "t.jsonl"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=re.escape(message)):
        async with open_replay_server(path):
            pass  # pragma: no cover - never entered


async def test_events_and_fields_a_reader_does_not_know_are_ignored(
    autojump_clock: trio.testing.MockClock,
) -> None:
    transcript = await recorded_session(["a"])
    extended = [
        json.dumps({**json.loads(line), "future": [1, 2]}) for line in transcript.splitlines()
    ]
    extended.insert(2, json.dumps({"t": 0.0, "ev": "something-new", "conn": 1}))
    assert await replay_sending("\n".join(extended), ["a"]) == []


async def test_a_fragmented_message_is_recorded_whole_and_replayed_in_as_many_frames(
    autojump_clock: trio.testing.MockClock,
) -> None:
    file = io.StringIO()
    async with open_mock_server() as server:
        async with server.client(record=file) as sock:
            await sock.wait_connected()
            await server.connections[0].send_raw(b"\x01\x02he" + b"\x00\x01l" + b"\x80\x02lo")
            assert await next_event(sock) == MessageReceived("hello")
    (recorded,) = events_of(lines(file.getvalue()), "message")
    assert (recorded["text"], recorded["fragments"]) == ("hello", 3)
    again = io.StringIO()  # the replay, recorded in its turn
    async with open_replay_server(io.StringIO(file.getvalue())) as replay:
        async with replay.client(record=again) as sock:
            assert await next_event(sock) == MessageReceived("hello")
    (replayed,) = events_of(lines(again.getvalue()), "message")
    assert (replayed["text"], replayed["fragments"]) == ("hello", 3)
