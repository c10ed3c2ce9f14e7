"""What a newcomer meets in the first hour, as the README and the docs show it:
the first program against an echo server and a late one, Ctrl-C on a real
process (exit status, no traceback, close code 1000 at the server), the
socket never wrapping what its block raises, the tutorial's retry lines, the
index's options table, and what is logged."""

from __future__ import annotations

import inspect
import logging
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from tests.test_cli import Lines
from tests.test_docs import ENV, INTERRUPTED, ROOT, UNTIL_INTERRUPTED, python_blocks
from trio_clientsocket import ClientSocket, Deflate, Undelivered
from trio_clientsocket.testing import MockServer, open_mock_server

from .conftest import URL, client_socket, next_event_skip

README = ROOT / "README.md"
DOCS = ROOT / "docs"


def first_program(page: Path) -> str:
    return next(code for code in python_blocks(page) if "trio.run(" in code)


def at(code: str, port: int) -> str:
    """The program, talking to 127.0.0.1:``port`` instead of 127.0.0.1:8080."""
    assert "127.0.0.1:8080" in code
    return code.replace("127.0.0.1:8080", f"127.0.0.1:{port}")


def sigint_as_usual() -> None:
    """A test run from a background job inherits SIGINT ignored; a program
    started from a terminal has it at its default, which Python turns into
    KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def read_all(stream: trio.abc.ReceiveStream) -> str:
    data = b""
    for _ in range(10_000):
        chunk = await stream.receive_some()
        if not chunk:
            return data.decode()
        data += chunk
    raise AssertionError("endless output")


async def run_program(code: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    program = tmp_path / "program.py"
    program.write_text(code)
    with trio.fail_after(60):
        return await trio.run_process(
            [sys.executable, str(program), *args],
            cwd=tmp_path,
            env=ENV,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )


# -- the first program ------------------------------------------------------------------


def test_the_readme_and_the_index_show_the_same_first_program() -> None:
    assert first_program(README) == first_program(DOCS / "index.md")


async def test_the_first_program_waits_for_a_late_server_and_works_with_an_echo_server(
    tmp_path: Path,
) -> None:
    """README: "with an echo server at that URL, it prints `received hello`.
    Started before its server, the program prints `connection failed: ...` and
    tries again". The server refuses the first attempt."""
    async with open_mock_server(echo=True) as server:
        port = await server.listen_tcp()
        server.refuse(1)
        done = await run_program(at(first_program(README), port), tmp_path)
    assert done.returncode == 0, done.stderr.decode()
    lines = done.stdout.decode().splitlines()
    assert lines[0].startswith("connection failed: "), lines
    assert lines[1:] == ["received hello"]
    assert server.attempts == 2


# -- Ctrl-C -----------------------------------------------------------------------------


async def interrupt(code: str, tmp_path: Path) -> tuple[int, str, MockServer]:
    """Run the program against an echo server, wait for its first line of
    output (it is connected by then), press Ctrl-C (SIGINT), and return its
    exit status, its standard error, and the server."""
    program = tmp_path / "program.py"
    with trio.fail_after(60):
        async with open_mock_server(echo=True) as server:
            port = await server.listen_tcp()
            program.write_text(at(code, port))
            process = await trio.lowlevel.open_process(
                [sys.executable, str(program)],
                cwd=tmp_path,
                env=ENV,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                preexec_fn=sigint_as_usual,
            )
            try:
                assert process.stdout is not None
                assert process.stderr is not None
                await Lines(process.stdout).next()
                await server.wait_connections(1)
                process.send_signal(signal.SIGINT)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(read_all, process.stdout)
                    errors = await read_all(process.stderr)
                status = await process.wait()
            finally:
                process.kill()
                await process.wait()
            await server.wait_for(lambda: not server.open_connections)
    return status, errors, server


@pytest.mark.parametrize(("page", "code"), INTERRUPTED)
async def test_ctrl_c_exits_130_without_a_traceback_and_the_server_sees_1000(
    page: str, code: str, tmp_path: Path
) -> None:
    """The idiom of the README and the tutorial: ``except* KeyboardInterrupt``
    around ``trio.run()``, ``sys.exit(130)``."""
    status, errors, server = await interrupt(code, tmp_path)
    assert status == 130, errors
    assert errors == ""
    assert [c.close_code for c in server.connections] == [1000]


async def test_plain_except_would_print_a_traceback_and_exit_1(tmp_path: Path) -> None:
    """What the README and the tutorial say of ``except KeyboardInterrupt``: the
    program's own nursery hands Ctrl-C on in a group, which it does not catch.
    The socket still closes with 1000 on the way out (genexus.md)."""
    code = UNTIL_INTERRUPTED[0][1]
    plain = code.replace("except* KeyboardInterrupt", "except KeyboardInterrupt")
    assert plain != code
    status, errors, server = await interrupt(plain, tmp_path)
    assert status == 1
    assert "Traceback" in errors
    assert "ExceptionGroup" in errors
    assert "KeyboardInterrupt" in errors
    assert [c.close_code for c in server.connections] == [1000]


class Raised(Exception):
    pass


def raise_in_own_nursery() -> BaseException:
    """The exception a program's own nursery raises: its child's, grouped."""
    return BaseExceptionGroup("from the program's nursery", [Raised("in a child task")])


RAISED: dict[str, Callable[[], BaseException]] = {
    "ValueError": lambda: ValueError("from the body"),
    "KeyboardInterrupt": KeyboardInterrupt,
    "the program's nursery's group": raise_in_own_nursery,
}


@pytest.mark.usefixtures("each_transport")
@pytest.mark.parametrize("kind", RAISED)
@pytest.mark.parametrize("connected", [True, False], ids=["connected", "connecting"])
async def test_what_the_block_raises_comes_out_as_it_is(
    kind: str, connected: bool, autojump_clock: object
) -> None:
    """The socket's own nursery never wraps an exception of the ``async with``
    body: the caller catches the very exception raised (not a group, nor a
    group around a group), connected or still connecting, and a connected
    socket still flushes its outbox and closes with 1000 on the way out."""
    raised = RAISED[kind]()
    async with open_mock_server(echo=True) as server:
        if not connected:
            server.delay_handshake(60)

        async def program() -> None:
            async with client_socket(URL, open_stream=server.open_stream) as sock:
                if connected:
                    await sock.wait_connected()
                    sock.send_nowait("last words")
                raise raised

        with pytest.raises(type(raised)) as caught:
            await program()
        assert caught.value is raised
        if connected:
            await server.wait_for(lambda: not server.open_connections)
            assert server.received == ["last words"]
            assert server.connections[0].close_code == 1000


async def test_a_nursery_of_the_program_gets_the_body_exception_alone(
    autojump_clock: object,
) -> None:
    """Why ``except*``: a nursery around the socket groups what the block
    raises; the socket adds no level of its own inside that group."""
    async with open_mock_server(echo=True) as server:

        async def program() -> None:
            async with (
                ClientSocket(URL, open_stream=server.open_stream) as sock,
                trio.open_nursery() as nursery,
            ):
                nursery.start_soon(trio.sleep_forever)
                await sock.wait_connected()
                raise KeyboardInterrupt

        with pytest.raises(BaseExceptionGroup) as caught:
            await program()
        assert [type(e) for e in caught.value.exceptions] == [KeyboardInterrupt]


# -- the tutorial's retry lines ----------------------------------------------------------


async def test_the_tutorial_prints_delays_with_one_decimal_and_says_when_it_gives_up(
    tmp_path: Path,
) -> None:
    """A 503 is retried, a 404 is not: the two lines of ``chat.py``."""
    chat = next(code for code in python_blocks(DOCS / "tutorial.md") if "retry_in=None" in code)
    async with open_mock_server(echo=True) as server:
        port = await server.listen_tcp()
        server.reject(503)
        server.reject(404)
        done = await run_program(at(chat, port), tmp_path, "alice")
    assert done.returncode == 0, done.stderr.decode()
    retrying, giving_up = done.stdout.decode().splitlines()
    assert re.fullmatch(r".*503.*; retrying in \d+\.\d s", retrying), retrying
    assert re.fullmatch(r"gave up: .*404.*", giving_up), giving_up


# -- the index and the reference ----------------------------------------------------------


def index_options() -> dict[str, str]:
    """Each option of the index's list, and the default it shows."""
    text = (DOCS / "index.md").read_text()
    section = text[text.index("## Options") : text.index("## Command line")]
    shown: dict[str, str] = {}
    for listed, defaults in re.findall(r"^- ((?:`\w+`(?:, )?)+) \((.*?)\):", section, re.M):
        names = re.findall(r"`(\w+)`", listed)
        values = defaults.split(", ") if len(names) > 1 else [defaults]
        shown |= dict(zip(names, values, strict=True))
    return shown


def test_the_index_lists_every_option_of_client_socket() -> None:
    assert set(index_options()) == set(inspect.signature(ClientSocket).parameters)


# The defaults first documented on the index by issue 21 (test_promises.py attacks the others).
DEFAULTS = {
    "url": ("none", None),
    "subprotocols": ("none", ()),
    "compression": ("`Deflate()`", Deflate()),
    "proxy": ("`True`", True),
    "buffer_bytes": ("8 MiB", 8 * 2**20),
    "transport": ('`"websockets"`', "websockets"),
    "visible_query_keys": ("none", ()),
    "connect_limiter": ("none", None),
}


@pytest.mark.parametrize("name", DEFAULTS)
def test_the_index_shows_the_default_of(name: str) -> None:
    text, value = DEFAULTS[name]
    assert index_options()[name].startswith(text)
    assert inspect.signature(ClientSocket).parameters[name].default == value


def test_max_attempts_is_always_shown_as_backoffs() -> None:
    """It is an argument of ``Backoff``: ``ClientSocket(max_attempts=...)`` is a TypeError."""
    for page in [README, *DOCS.glob("*.md")]:
        for line in page.read_text().splitlines():
            if "max_attempts" in line:
                assert "Backoff" in line, (page.name, line)
    with pytest.raises(TypeError):
        ClientSocket(URL, max_attempts=3)  # type: ignore[call-arg]


# -- logging ------------------------------------------------------------------------------


async def test_messages_that_will_never_be_sent_are_logged_at_warning(
    caplog: pytest.LogCaptureFixture, autojump_clock: object
) -> None:
    """embedding.md: "messages that will never be sent (dropped from a full
    outbox, or still queued when the socket closes or gives up), at WARNING"."""
    caplog.set_level(logging.INFO, logger="trio_clientsocket")
    async with open_mock_server(echo=True) as server:
        server.delay_handshake(60)
        async with client_socket(
            URL, open_stream=server.open_stream, outbox_size=1, overflow="drop-oldest"
        ) as sock:
            sock.send_nowait("first")
            sock.send_nowait("second")  # drops "first"
            assert (await next_event_skip(sock, Undelivered)).reason == "dropped"
            await sock.close()  # "second" is still queued
        server.reject(404)
        async with client_socket(URL, open_stream=server.open_stream, reconnect=None) as sock:
            sock.send_nowait("third")
            assert (await next_event_skip(sock, Undelivered)).reason == "gave up"
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.name == "trio_clientsocket" and r.levelno == logging.WARNING
    ]
    undelivered = [text for text in warnings if "undelivered" in text]
    assert undelivered == [
        "1 message(s) undelivered: dropped",
        "1 message(s) undelivered: closed",
        "1 message(s) undelivered: gave up",
    ]
