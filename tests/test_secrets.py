"""Secrets never leak: reprs, log records, events, errors and CLI output are scanned."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
import trio

from trio_clientsocket import (
    ClientSocket,
    ConnectionFailed,
    MessageReceived,
    genexus_endpoint,
)
from trio_clientsocket._url import redact_url
from trio_clientsocket.testing import open_mock_server

SECRETS = ("pw-S3CRET", "tok-S3CRET", "Bearer-S3CRET", "cookie-S3CRET")
URL = "ws://alice:pw-S3CRET@app.test/app/gxwebsocket?client-7&token=tok-S3CRET"
HEADERS = {"Authorization": "Bearer Bearer-S3CRET", "Cookie": "session=cookie-S3CRET"}


def assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret} leaked in: {text[:300]}"


async def test_nothing_leaks_into_reprs_logs_events_or_errors(
    caplog: pytest.LogCaptureFixture, autojump_clock: object
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, trio-websocket's included
    seen: list[str] = []
    async with open_mock_server(echo=True) as server:
        server.reject(503)
        server.refuse(1)
        async with ClientSocket(URL, headers=HEADERS, open_stream=server.open_stream) as sock:
            seen.append(repr(sock))
            await sock.wait_connected()
            seen.append(repr(sock))
            await sock.send("hello")
            async for event in sock.events():
                seen.append(repr(event))
                if isinstance(event, MessageReceived):
                    break
            await server.close_all(1011, "bye")
            await sock.wait_connected()
            seen.append(repr(sock.statistics()))
        async for event in sock.events():
            seen.append(repr(event))
            seen.append(str(event))
            if isinstance(event, ConnectionFailed):
                seen.append(str(event.error))
                seen.append(repr(event.error))
    # the server did get the real credentials
    assert server.connections[0].headers["authorization"] == "Bearer Bearer-S3CRET"
    assert server.connections[0].client_id == "client-7&token=tok-S3CRET"
    assert any("MessageReceived" in text for text in seen)
    assert "client-7" in " ".join(seen)  # the GeneXus id stays readable
    for text in seen:
        assert_clean(text)
    for record in caplog.records:
        assert_clean(record.getMessage())
        assert record.levelno <= logging.DEBUG or "hello" not in record.getMessage()


def test_redaction_rules() -> None:
    assert redact_url(URL) == "ws://alice:***@app.test/app/gxwebsocket?client-7&token=***"
    assert redact_url("ws://h/x?a=1&b=2", visible_keys={"a"}) == "ws://h/x?a=1&b=***"
    assert redact_url("ws://h/x") == "ws://h/x"


def test_header_errors_do_not_show_values() -> None:
    with pytest.raises(TypeError) as caught:
        ClientSocket("ws://h/", headers={"Authorization": b"Bearer-S3CRET"})  # type: ignore[arg-type]
    assert_clean(str(caught.value))


async def test_cli_output_is_clean() -> None:
    with trio.fail_after(30):
        async with open_mock_server() as server:
            port = await server.listen_tcp()
            endpoint = genexus_endpoint(f"http://127.0.0.1:{port}/app/", "client-7")
            url = endpoint.url.replace("ws://", "ws://alice:pw-S3CRET@") + "&token=tok-S3CRET"
            for flags in ([], ["--json"]):
                done = await trio.run_process(
                    [
                        sys.executable,
                        "-m",
                        "trio_clientsocket",
                        "connect",
                        url,
                        *flags,
                        "--linger",
                        "0",
                        "--header",
                        "Authorization: Bearer Bearer-S3CRET",
                        "--header",
                        "Cookie: session=cookie-S3CRET",
                    ],
                    stdin=b"hi\n",
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                )
                assert done.returncode == 0, done.stderr
                assert b"connected" in done.stdout
                assert_clean(done.stdout.decode() + done.stderr.decode())


def test_cli_bad_url_error_is_clean() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "trio_clientsocket", "connect", "http://u:pw-S3CRET@h:99999/"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2
    assert_clean(done.stderr)


async def test_visible_query_keys_are_configurable(
    caplog: pytest.LogCaptureFixture, autojump_clock: object
) -> None:
    caplog.set_level(logging.INFO, logger="trio_clientsocket")
    url = "ws://h/x?abc&page=2&token=tok-S3CRET"
    async with open_mock_server() as server:
        async with ClientSocket(
            url, open_stream=server.open_stream, visible_query_keys={"page"}
        ) as sock:
            await sock.wait_connected()
            assert repr(sock) == "<ClientSocket Connected ws://h/x?abc&page=2&token=***>"
    assert "connected to ws://h/x?abc&page=2&token=***" in caplog.text
