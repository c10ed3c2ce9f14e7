"""The command line: ``connect`` (an interactive client) and ``serve`` (a local
GeneXus-compatible chat server). ``demo`` lives in ``_demo``."""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import signal
import ssl
import sys
from pathlib import Path
from typing import Any, TextIO

import trio

from ._backoff import Backoff
from ._chat import ChatStore, serve_chat
from ._errors import SocketClosedError
from ._events import Closed, Connected, ConnectionFailed, Event, MessageReceived, Undelivered
from ._genexus import check_client_id, genexus_endpoint
from ._socket import ClientSocket
from ._url import redact_url

__all__ = ["EXIT_FATAL", "EXIT_INTERRUPTED", "EXIT_USAGE", "add_commands", "run_command"]

EXIT_FATAL = 1
"""The socket gave up (a fatal failure or max attempts), or messages were left unsent."""
EXIT_USAGE = 2
"""Bad arguments: a malformed URL, header or option."""
EXIT_INTERRUPTED = 130
"""Ctrl-C (SIGINT): the socket was closed cleanly first."""


class UsageError(Exception):
    """A bad argument, reported as ``error: ...`` with exit code 2."""


def add_commands(commands: Any) -> None:
    """Add ``connect`` and ``serve`` to an argparse subparsers object."""
    connect = commands.add_parser(
        "connect",
        help="interactive client: stdin lines are sent, events are printed",
        description="Connect to URL and stay connected (reconnecting as needed). Each line "
        "of standard input is sent as a text message; events are printed as they arrive. "
        "End of input or Ctrl-C closes cleanly (code 1000). URL may be ws(s)://... or the "
        "http(s):// base URL of a GeneXus application (the gxwebsocket endpoint is built).",
    )
    connect.add_argument("url", help="ws://, wss://, or a GeneXus base http(s):// URL")
    connect.add_argument("--json", action="store_true", help="one JSON object per line")
    connect.add_argument("--client-id", help="GeneXus client id (default: a new GUID)")
    connect.add_argument("--svc", action="store_true", help="use gxwebsocket.svc (older .NET)")
    connect.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="extra handshake header (repeatable)",
    )
    connect.add_argument(
        "--linger",
        type=float,
        default=0.0,
        metavar="S",
        help="after end of input, keep printing events for S seconds before closing",
    )
    connect.add_argument("--no-reconnect", action="store_true", help="do not reconnect")
    connect.add_argument("--reconnect-initial", type=float, default=1.0, metavar="S")
    connect.add_argument("--reconnect-max", type=float, default=30.0, metavar="S")
    connect.add_argument("--max-attempts", type=int, default=None, metavar="N")
    connect.add_argument("--connect-timeout", type=float, default=10.0, metavar="S")
    connect.add_argument(
        "--ping-interval",
        type=float,
        default=20.0,
        metavar="S",
        help="keepalive interval; 0 disables keepalive",
    )
    connect.add_argument("--ping-timeout", type=float, default=20.0, metavar="S")
    connect.add_argument(
        "--insecure",
        action="store_true",
        help="DANGER: do not verify the server's TLS certificate (development only)",
    )

    serve = commands.add_parser(
        "serve",
        help="local GeneXus-compatible chat server (development)",
        description="Serve the GeneXus notification endpoint .../gxwebsocket?<clientId> on "
        "HOST:PORT. Every received message is saved in the Chat table of a SQLite file "
        "and broadcast to every client as a NotificationInfo.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (default 8080; 0: any)")
    serve.add_argument("--db", default="chat.sqlite3", help="SQLite file (default chat.sqlite3)")


def run_command(args: argparse.Namespace) -> int:
    """Run ``connect`` or ``serve``; return the process exit code."""
    try:
        if args.command == "connect":
            return trio.run(_connect, args, sys.stdout)
        return trio.run(_serve, args, sys.stdout)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


# -- connect --------------------------------------------------------------------


def _target(args: argparse.Namespace) -> tuple[str, dict[str, str]]:
    url: str = args.url
    headers: dict[str, str] = {}
    try:
        if url.lower().startswith(("http://", "https://")):
            endpoint = genexus_endpoint(url, args.client_id, svc=args.svc)
            url = endpoint.url
            headers.update(endpoint.headers)
        elif args.client_id is not None:
            if "?" in url:
                raise UsageError("--client-id given, but the URL already has a query")
            url = f"{url}?{check_client_id(args.client_id)}"
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    for header in args.header:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            raise UsageError(f"--header {header!r} must look like 'Name: value'")
        headers[name.strip()] = value.strip()
    return url, headers


def _socket(args: argparse.Namespace) -> ClientSocket:
    url, headers = _target(args)
    reconnect = None
    try:
        if not args.no_reconnect:
            reconnect = Backoff(
                initial=args.reconnect_initial,
                maximum=args.reconnect_max,
                max_attempts=args.max_attempts,
            )
        keepalive = args.ping_interval > 0
        context = None
        if args.insecure:
            print(
                "WARNING: --insecure: the server's TLS certificate is NOT verified; "
                "anyone on the network path can read and change this connection",
                file=sys.stderr,
            )
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return ClientSocket(
            url,
            reconnect=reconnect,
            connect_timeout=args.connect_timeout,
            ping_interval=args.ping_interval if keepalive else None,
            ping_timeout=args.ping_timeout if keepalive else None,
            headers=headers or None,
            ssl_context=context,
        )
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from None


class _Printer:
    def __init__(self, out: TextIO, as_json: bool) -> None:
        self.out = out
        self.as_json = as_json
        self.gave_up = False
        self.undelivered = 0

    def emit(self, fields: dict[str, Any], text: str) -> None:
        line = json.dumps(fields, ensure_ascii=False) if self.as_json else text
        print(line, file=self.out, flush=True)

    def event(self, event: Event, sock: ClientSocket) -> None:
        status = sock.status.value
        match event:
            case Connected(url=url):
                self.emit(
                    {"event": "connected", "url": redact_url(url), "status": status},
                    f"* connected to {redact_url(url)} [{status}]",
                )
            case MessageReceived(message=str() as text):
                self.emit({"event": "message", "message": text}, f"< {text}")
            case MessageReceived(message=bytes() as data):
                encoded = base64.b64encode(data).decode()
                self.emit(
                    {"event": "message", "binary": encoded},
                    f"< [{len(data)} bytes] {data[:32].hex()}",
                )
            case ConnectionFailed(error=error, retry_in=delay):
                self.gave_up = delay is None
                then = f"retrying in {delay:.2f} s" if delay is not None else "giving up"
                self.emit(
                    {
                        "event": "connection_failed",
                        "error": str(error),
                        "error_type": type(error).__name__,
                        "retry_in": delay,
                        "status": status,
                    },
                    f"! connection failed: {error} ({then}) [{status}]",
                )
            case Undelivered(messages=messages, reason=reason):
                self.undelivered += len(messages)
                self.emit(
                    {
                        "event": "undelivered",
                        "reason": reason,
                        "messages": [
                            m if isinstance(m, str) else base64.b64encode(m).decode()
                            for m in messages
                        ],
                    },
                    f"! {len(messages)} message(s) not delivered ({reason})",
                )
            case Closed(url=url):
                self.emit(
                    {"event": "closed", "url": redact_url(url), "status": status},
                    f"* closed [{status}]",
                )


async def _connect(args: argparse.Namespace, out: TextIO) -> int:
    sock = _socket(args)
    printer = _Printer(out, args.json)
    interrupted = False
    async with sock, trio.open_nursery() as nursery:

        async def watch_events() -> None:
            async for event in sock.events():
                printer.event(event, sock)
                if printer.gave_up:
                    nursery.cancel_scope.cancel()

        async def read_stdin() -> None:
            # SocketClosedError: the socket gave up; watch_events ends the run.
            with contextlib.suppress(SocketClosedError):
                await _send_lines(sock)
                await sock.wait_sent()  # end of input: let what was typed go out first
                await trio.sleep(args.linger)
                await sock.close()
                nursery.cancel_scope.cancel()

        async def on_interrupt() -> None:
            nonlocal interrupted
            with trio.open_signal_receiver(signal.SIGINT) as signals:
                async for _ in signals:
                    interrupted = True
                    await sock.close()
                    nursery.cancel_scope.cancel()

        nursery.start_soon(on_interrupt)
        nursery.start_soon(watch_events)
        nursery.start_soon(read_stdin)
    # The socket's last events (Undelivered, Closed) are still in the channel.
    while True:
        try:
            printer.event(sock.events().receive_nowait(), sock)
        except (trio.WouldBlock, trio.EndOfChannel):
            break
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FATAL if printer.gave_up or printer.undelivered else 0


async def _send_lines(sock: ClientSocket) -> None:
    """Send each line of standard input as a text message, until end of input."""
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    async with stdin:
        pending = b""
        while True:
            data = await stdin.receive_some(65536)
            if not data:
                break
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                await sock.send(line.rstrip(b"\r").decode("utf-8", errors="replace"))
        if pending:
            await sock.send(pending.rstrip(b"\r").decode("utf-8", errors="replace"))


# -- serve ----------------------------------------------------------------------


async def _serve(args: argparse.Namespace, out: TextIO) -> int:
    store = ChatStore(Path(args.db))
    try:
        history = len(store.rows())
        async with trio.open_nursery() as nursery:
            try:
                server, port = await nursery.start(serve_chat, store, args.host, args.port)
            except OSError as exc:
                raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc}") from None
            del server
            print(
                f"serving ws://{args.host}:{port}/<app>/gxwebsocket?<client-id> "
                f"(chat history: {args.db}, {history} message(s))",
                file=out,
                flush=True,
            )
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break
    finally:
        store.close()
    print("stopped", file=out, flush=True)
    return 0
