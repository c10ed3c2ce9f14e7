"""The CLI as a newcomer meets it (issue 21, item 6), through the real
``connect`` process on 127.0.0.1: it says that it retries and how to stop,
announces the GeneXus URL it builds from an ``http://`` one, shows the replies
to piped lines, marks the lines queued while disconnected; ``/close``,
``/binary``, ``/ping``, ``//``; ``--subprotocol``, ``--proxy``, ``--cert`` and
``--key``. Usage errors run in this process."""

from __future__ import annotations

import functools
import json
import os
import pty
import re
import signal
import ssl
import subprocess
from pathlib import Path

import pytest
import trio
import trustme

from tests.test_cli import CLI, NOW, Lines
from tests.test_cli_terminal import interactive
from tests.test_proxy import start_proxy
from trio_clientsocket.__main__ import main
from trio_clientsocket._cli import default_linger
from trio_clientsocket.testing import open_mock_server

FAST = ["--reconnect-initial", "0.05", "--reconnect-max", "0.05"]
RETRY_HINT = "! retrying until it connects: Ctrl-C stops (--max-attempts N gives up sooner)"


async def connect(
    *args: str, stdin: bytes = b"", linger: bool = False, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run ``connect`` to its end with ``stdin`` piped in; without ``linger``, it
    exits at the end of input (``--linger 0``)."""
    with trio.fail_after(30):
        done: subprocess.CompletedProcess[bytes] = await trio.run_process(
            [*CLI, "connect", *args, *([] if linger else NOW)],
            stdin=stdin,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env={**os.environ, **(env or {})},
        )
    return done


def lines(output: bytes) -> list[str]:
    return output.decode().splitlines()


async def start(nursery: trio.Nursery, *args: str) -> trio.Process:
    """``connect`` with its standard input, output and error as pipes (``--linger 0``)."""
    run = functools.partial(
        trio.run_process,
        [*CLI, "connect", *args, *NOW],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        check=False,
    )
    process: trio.Process = await nursery.start(run)
    return process


async def rest(stream: trio.abc.ReceiveStream | None) -> str:
    """What is left to read on ``stream``, to its end."""
    assert stream is not None
    data = b""
    with trio.fail_after(15):
        while chunk := await stream.receive_some():
            data += chunk
    return data.decode()


# -- a server that is not there -------------------------------------------------------


async def test_a_refused_connection_says_once_that_it_retries_and_how_to_stop() -> None:
    async with open_mock_server() as mock, trio.open_nursery() as nursery:
        port = await mock.listen_tcp()
        await mock.stop()  # nothing listens there: refused, again and again
        client = await start(nursery, f"ws://127.0.0.1:{port}/x", *FAST)
        assert client.stdout is not None
        assert client.stderr is not None
        out, err = Lines(client.stdout), Lines(client.stderr)
        for _ in range(3):
            assert re.search(r" \(retrying in 0\.0\d s\) \[Disconnected\]$", await out.next())
        assert await err.next() == RETRY_HINT
        client.send_signal(signal.SIGINT)
        assert await client.wait() == 130
        assert await rest(client.stderr) == ""  # said once


async def test_with_max_attempts_the_hint_says_when_it_gives_up() -> None:
    async with open_mock_server() as mock, trio.open_nursery() as nursery:
        port = await mock.listen_tcp()
        await mock.stop()
        client = await start(nursery, f"ws://127.0.0.1:{port}/x", *FAST, "--max-attempts", "3")
        assert await client.wait() == 1  # gave up, input still open
        out, err = await rest(client.stdout), await rest(client.stderr)
    assert err.splitlines() == ["! retrying, up to 3 failures in a row: Ctrl-C stops sooner"]
    assert [line.rpartition(" (")[2][:8] for line in out.splitlines()] == [
        "retrying",
        "retrying",
        "giving u",
    ]


async def test_lines_sent_while_disconnected_are_marked_queued() -> None:
    async with open_mock_server(echo=True) as mock, trio.open_nursery() as nursery:
        port = await mock.listen_tcp()
        await mock.stop()
        client = await start(nursery, f"ws://127.0.0.1:{port}/x", *FAST)
        assert client.stdin is not None
        assert client.stdout is not None
        assert client.stderr is not None
        out, err = Lines(client.stdout), Lines(client.stderr)
        assert (await out.next()).startswith("! connection failed: ")
        await client.stdin.send_all(b"hello\nworld\n")
        assert await err.next() == RETRY_HINT
        assert await err.next() == "* queued until connected (1 waiting)"
        assert await err.next() == "* queued until connected (2 waiting)"
        await mock.start()
        for _ in range(100):
            if (line := await out.next()).startswith("* connected to "):
                break
            assert line.startswith("! connection failed: ")
        assert [await out.next(), await out.next()] == ["< hello", "< world"]
        await client.stdin.send_all(b"now connected\n")  # not marked
        assert await out.next() == "< now connected"
        await client.stdin.aclose()
        assert await client.wait() == 0
        assert await rest(client.stderr) == ""


# -- what it connects to, and piped input ----------------------------------------------


async def test_an_http_url_is_announced_as_the_genexus_endpoint_it_becomes() -> None:
    async with open_mock_server(endpoint="gxwebsocket") as mock:
        port = await mock.listen_tcp()
        done = await connect(f"http://127.0.0.1:{port}/app/", "--client-id", "me", stdin=b"x\n")
        plain = await connect(f"ws://127.0.0.1:{port}/app/gxwebsocket?me", stdin=b"x\n")
    assert done.returncode == 0, done.stderr
    assert lines(done.stderr) == [
        f"* http://127.0.0.1:{port}/app/ is taken for a GeneXus application: connecting "
        f"to its notification endpoint ws://127.0.0.1:{port}/app/gxwebsocket?me (give a "
        "ws:// or wss:// URL to connect to another one)"
    ]
    assert lines(done.stdout)[0].startswith(
        f"* connected to ws://127.0.0.1:{port}/app/gxwebsocket?me ["
    )
    assert plain.returncode == 0
    assert plain.stderr == b""  # a ws:// URL is used as it is, without a word


async def test_piped_lines_get_their_replies_shown() -> None:
    """``printf 'a\\nb\\n' | ... connect URL``: the replies come before the close."""
    async with open_mock_server(echo=True) as mock:
        port = await mock.listen_tcp()
        done = await connect(f"ws://127.0.0.1:{port}/x", stdin=b"a\nb\n", linger=True)
    assert done.returncode == 0, done.stderr
    assert lines(done.stdout)[1:] == ["< a", "< b", "* closed [Disconnected]"]


def test_it_lingers_after_piped_input_not_after_a_terminal_s() -> None:
    master, slave = pty.openpty()
    read_end, write_end = os.pipe()
    try:
        with open(slave, closefd=False) as terminal, open(read_end, closefd=False) as pipe:
            assert default_linger(terminal) == 0
            assert default_linger(pipe) == 1
    finally:
        for fd in (master, slave, read_end, write_end):
            os.close(fd)


async def test_at_a_terminal_hints_show_above_the_prompt() -> None:
    with trio.fail_after(60):
        async with open_mock_server() as mock:
            port = await mock.listen_tcp()
            async with interactive(f"ws://127.0.0.1:{port}/x") as term:
                await term.expect(b"* connected to ")
                await term.expect(b"> ")
                await term.type(b"/ping\r")
                await term.expect(b"* /ping: round trip ")
                await term.type(b"\x04")
                assert await term.process.wait() == 0
                assert term.process.stderr is not None
                assert await rest(term.process.stderr) == ""
            assert mock.received == []


# -- commands -------------------------------------------------------------------------


async def test_close_command_closes_with_its_code_after_what_came_before() -> None:
    async with open_mock_server() as mock:
        port = await mock.listen_tcp()
        done = await connect(
            f"ws://127.0.0.1:{port}/x",
            "--json",
            stdin=b"first\n/ping\n/close 99\n/close 4001 done for today\nnever sent\n",
        )
        connection = await mock.wait_connections(1)
        await mock.wait_for(lambda: connection.close_code is not None)
    assert done.returncode == 0, done.stderr
    assert mock.received == ["first"]
    assert connection.close_code == 4001
    ping, refused = lines(done.stderr)
    assert re.fullmatch(r"\* /ping: round trip \d+\.\d ms", ping)
    assert connection.pings == 1
    assert refused == (
        "! /close: close code 99 may not be sent: use 1000-1003, 1007-1014, or 3000-4999"
    )
    assert [json.loads(line)["event"] for line in lines(done.stdout)] == ["connected", "closed"]


async def test_binary_and_slash_commands() -> None:
    async with open_mock_server(echo=True) as mock:
        port = await mock.listen_tcp()
        done = await connect(
            f"ws://127.0.0.1:{port}/x",
            "--ping-interval",
            "0",
            stdin=b"/binary 48 69\n/binary zz\n//x\n/pingpong\n/ping\n",
        )
    assert done.returncode == 0, done.stderr
    assert mock.received == [b"Hi", "/x", "/pingpong"]
    refused, ping = lines(done.stderr)
    assert refused == (
        "! /binary HEX: not sent, HEX must be bytes as pairs of hex digits (/binary 48 69)"
    )
    # keepalive is off: the one ping is the command's
    assert re.fullmatch(r"\* /ping: round trip \d+\.\d ms", ping)
    assert mock.connections[0].pings == 1


async def test_ping_command_pings_now_and_says_when_no_pong_can_come() -> None:
    async with open_mock_server() as mock, trio.open_nursery() as nursery:
        port = await mock.listen_tcp()
        client = await start(
            nursery, f"ws://127.0.0.1:{port}/x", *FAST, "--ping-timeout", "0.5"
        )
        assert client.stdin is not None
        assert client.stderr is not None
        errors = Lines(client.stderr)
        connection = await mock.wait_connections(1)
        await client.stdin.send_all(b"/ping\n")
        assert re.fullmatch(r"\* /ping: round trip \d+\.\d ms", await errors.next())
        assert connection.pings == 1  # the default keepalive (20 s) has not pinged
        mock.stall()  # no pong now
        await client.stdin.send_all(b"/ping\n")
        assert await errors.next() == "! /ping: no pong within 0.5 s (--ping-timeout)"
        mock.resume()
        await mock.stop()  # refused from here on: the client is down
        assert client.stdout is not None
        out = Lines(client.stdout)
        for _ in range(10):
            if (await out.next()).startswith("! connection failed"):
                break
        await client.stdin.send_all(b"/ping\n")
        for _ in range(10):
            line = await errors.next()
            if line.startswith("! /ping"):
                break
        assert line == "! /ping: not connected within 0.5 s (--ping-timeout): no ping went"
        await client.stdin.aclose()
        await client.wait()


async def test_show_ping_pong_prints_the_servers_pings_and_pongs() -> None:
    async with open_mock_server() as mock, trio.open_nursery() as nursery:
        port = await mock.listen_tcp()
        client = await start(nursery, f"ws://127.0.0.1:{port}/x", "-P")
        assert client.stdin is not None
        assert client.stdout is not None
        out = Lines(client.stdout)
        assert (await out.next()).startswith("* connected to ")
        connection = await mock.wait_connections(1)
        await connection.ping(b"tick")
        assert await out.next() == "< ping 'tick'"
        await connection.pong(b"\x00\xff")
        assert await out.next() == "< pong [00 ff] (unasked)"
        await connection.ping(b"")
        assert await out.next() == "< ping"
        await client.stdin.send_all(b"/ping\n")
        # our ping's payload is 4 random bytes: hex, or text when they happen to
        # be printable UTF-8
        pong = await out.next()
        shown = r"(\[[0-9a-f ]{11}\]|'.+'|\".+\")"  # hex, or the text's repr
        assert re.fullmatch(rf"< pong {shown} \(round trip \d+\.\d ms\)", pong)
        await client.stdin.aclose()
        assert await client.wait() == 0


async def test_show_ping_pong_in_json() -> None:
    async with open_mock_server() as mock:
        port = await mock.listen_tcp()
        done = await connect(
            f"ws://127.0.0.1:{port}/x", "--json", "--show-ping-pong", stdin=b"/ping\n"
        )
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in lines(done.stdout)]
    assert [e["event"] for e in events] == ["connected", "pong", "closed"]
    pong = events[1]
    assert len(bytes.fromhex(pong["payload_hex"])) == 4
    assert pong["rtt"] > 0
    (ping,) = lines(done.stderr)
    assert ping == f"* /ping: round trip {pong['rtt'] * 1000:.1f} ms"


# -- options --------------------------------------------------------------------------


async def test_subprotocol_is_offered_and_the_chosen_one_shown() -> None:
    async with open_mock_server() as mock:
        mock.subprotocols = ("v2",)
        port = await mock.listen_tcp()
        done = await connect(
            f"ws://127.0.0.1:{port}/x",
            "--subprotocol",
            "chat",
            "--subprotocol",
            "v2",
            "--json",
            stdin=b"x\n",
        )
        text = await connect(f"ws://127.0.0.1:{port}/x", "--subprotocol", "v2", stdin=b"x\n")
    assert done.returncode == 0, done.stderr
    connected = json.loads(lines(done.stdout)[0])
    assert connected["event"] == "connected"
    assert connected["subprotocol"] == "v2"
    assert lines(text.stdout)[0].startswith(
        f"* connected to ws://127.0.0.1:{port}/x (subprotocol v2) ["
    )


async def test_proxy_option_goes_through_the_proxy() -> None:
    proxy = start_proxy()
    try:
        async with open_mock_server(echo=True) as mock:
            port = await mock.listen_tcp()
            done = await connect(
                f"ws://127.0.0.1:{port}/x",
                "--proxy",
                f"http://127.0.0.1:{proxy.port}",
                stdin=b"hi\n",
            )
    finally:
        log = proxy.log()
    assert done.returncode == 0, done.stderr
    assert f"tunnel http 127.0.0.1:{port}" in log
    assert mock.received == ["hi"]


def certificates(tmp_path: Path) -> tuple[ssl.SSLContext, Path, Path]:
    """A server context that requires a client certificate from its CA; the
    CA's file, and a client certificate (its key beside it, ``.key``)."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server)
    server.verify_mode = ssl.CERT_REQUIRED
    ca.configure_trust(server)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    client = ca.issue_cert("client@example.com")
    client.cert_chain_pems[0].write_to_path(str(tmp_path / "client.pem"))
    client.private_key_pem.write_to_path(str(tmp_path / "client.key"))
    return server, tmp_path / "ca.pem", tmp_path / "client.pem"


async def test_client_certificate(tmp_path: Path) -> None:
    server_context, ca, client_pem = certificates(tmp_path)
    async with open_mock_server(echo=True) as mock:
        port = await mock.listen_tcp(ssl_context=server_context)
        url = f"wss://localhost:{port}/x"
        trusted = {"SSL_CERT_FILE": str(ca)}
        refused = await connect(url, "--no-reconnect", stdin=b"hi\n", env=trusted)
        key = str(client_pem.with_suffix(".key"))
        accepted = await connect(
            url, "--cert", str(client_pem), "--key", key, stdin=b"hi\n", env=trusted
        )
    assert refused.returncode == 1
    assert lines(refused.stdout)[-2].startswith("! connection failed: ")
    assert accepted.returncode == 0, accepted.stderr
    assert mock.received == ["hi"]  # from the accepted one only
    assert lines(accepted.stdout)[0].startswith(f"* connected to {url} [")


# -- usage errors, in this process -----------------------------------------------------


def error_of(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """The one ``error:`` line of ``connect ws://h/ ARGS``, which must exit 2."""
    try:
        code = main(["connect", "ws://h/", *args])
    except SystemExit as exit:  # argparse
        code = exit.code  # type: ignore[assignment]
    assert code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1, err
    return err[0]


def test_bad_subprotocol_proxy_or_certificate_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    not_pem = tmp_path / "notes.txt"
    not_pem.write_text("not a certificate")
    assert error_of(capsys, "--subprotocol", "a b").startswith(
        "error: argument --subprotocol: 'a b' is not a subprotocol name (letters, digits and "
    )
    assert error_of(capsys, "--proxy", "ftp://alice:s3cret@proxy:21") == (
        "error: --proxy: proxy URL 'ftp://alice:***@proxy:21' must start with http://, "
        "https://, socks5:// or socks5h://"
    )
    assert error_of(capsys, "--cert", str(tmp_path / "missing.pem")) == (
        f"error: cannot read --cert {tmp_path / 'missing.pem'}: No such file or directory (ENOENT)"
    )
    assert error_of(capsys, "--cert", str(not_pem)).startswith(
        f"error: --cert {not_pem}: not a certificate and its private key in PEM ("
    )
    assert error_of(capsys, "--key", str(not_pem)) == (
        "error: --key needs --cert: the certificate that goes with the key"
    )


def test_a_url_of_another_scheme_gets_the_command_lines_own_hint() -> None:
    """The library's message says "build the endpoint first": the command line
    builds it itself from an http(s):// URL, so it says that instead."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "trio_clientsocket", "connect", "ftp://u:S3CRET@h.test/x"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "http:// or https:// for a GeneXus application" in done.stderr
    assert "build the endpoint first" not in done.stderr
    assert "S3CRET" not in done.stderr + done.stdout
