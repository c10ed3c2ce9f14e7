"""The command line: ``connect`` (an interactive client) and ``serve`` (a local
GeneXus-compatible chat server). ``demo`` lives in ``_demo``.

Every user error (a bad argument, a port in use, a database that cannot be
opened, standard input that cannot be read, standard output whose reader went
away) is one ``error: ...`` line on standard error and exit code 2, never a
traceback. Standard output closed from the start (``>&-``) is no error: the
command does its job and what it would print is discarded.

On a terminal (standard input and output both), ``connect`` reads lines with
GNU readline in a worker thread: line editing, history and a ``> `` prompt,
and events are printed above the line being typed, which is then redrawn.
Anywhere else (a pipe, a file, ``TERM=dumb``) it reads standard input as it
comes, with no prompt and no escape codes.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import ipaddress
import json
import math
import os
import re
import signal
import sqlite3
import ssl
import sys
import textwrap
import threading
import unicodedata
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn, TextIO

import trio

from ._backoff import Backoff
from ._chat import ChatStore, serve_chat
from ._errors import (
    NotConnectedError,
    SocketClosedError,
    UndeliveredError,
    os_reason,
    underlying_causes,
)
from ._events import (
    Closed,
    Connected,
    ConnectionFailed,
    Event,
    Message,
    MessageReceived,
    PingReceived,
    PongReceived,
    Skipped,
    Undelivered,
)
from ._genexus import check_client_id, genexus_endpoint
from ._handshake import is_token
from ._proxy import parse_proxy
from ._record import Recorder
from ._socket import ClientSocket
from ._state import Status
from ._url import redact_url

__all__ = [
    "EXIT_FATAL",
    "EXIT_INTERRUPTED",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "CliParser",
    "add_commands",
    "run_command",
]

EXIT_FATAL = 1
"""The socket gave up (a fatal failure or max attempts), or messages were left unsent."""
EXIT_USAGE = 2
"""A bad argument (URL, header, option) or environment (port in use, database,
unreadable input, output whose reader went away): one ``error:`` line on standard error."""
EXIT_INTERRUPTED = 130
"""Ctrl-C (SIGINT): the socket was closed cleanly (1000) first, unsent messages reported."""
EXIT_TERMINATED = 143
"""SIGTERM: handled as Ctrl-C is (clean close, unsent messages reported), exit 128 + 15."""

_EXIT_CODES = """\
exit codes:
  0    end of input (or /close): what was typed was sent, and the socket closed
       cleanly
  1    the socket gave up (a fatal failure, --max-attempts), or messages were
       left unsent
  2    bad argument or environment (URL, option, header, unreadable input,
       output whose reader went away; output closed from the start is discarded)
  130  Ctrl-C (SIGINT), 143 SIGTERM: either way the socket is closed cleanly
       (code 1000) first, and messages that could not be sent are reported

commands (a line of input that starts with one; any other line is sent as text):
  /binary HEX             send the bytes written in hex (/binary 48 69) as a
                          binary message
  /close [CODE [REASON]]  close with CODE (default 1000) and REASON, then exit
  /ping                   ping the server and show the round trip (waits up
                          to --ping-timeout seconds for a connection and the
                          pong)
  //TEXT                  send /TEXT (a line that must start with '/')
"""


class UsageError(Exception):
    """A bad argument or environment, reported as ``error: ...`` with exit code 2."""


class CliParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one ``error: ...`` line and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {message} (see '{self.prog} --help')\n")


# -- argument types: each rejects what the option cannot mean ------------------------


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _seconds(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, not {text}")
    return value


def _seconds_or_zero(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, not {text}")
    return value


def _attempts(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port number (0-65535)")
    return value


def _host(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must be an address or a host name, not empty")
    looks_numeric = all(c.isdigit() or c == "." for c in text) or ":" in text
    if looks_numeric:
        try:
            ipaddress.ip_address(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid IP address") from None
    return text


def _subprotocol(text: str) -> str:
    if not is_token(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a subprotocol name (letters, digits and !#$%&'*+-.^_`|~)"
        )
    return text


def add_commands(commands: Any) -> None:
    """Add ``connect`` and ``serve`` to an argparse subparsers object."""
    connect = commands.add_parser(
        "connect",
        help="interactive client: stdin lines are sent, events are printed",
        description=textwrap.fill(
            "Connect to URL and stay connected (reconnecting as needed). Each line of "
            "standard input is sent as a text message; events are printed as they arrive. "
            "End of input (Ctrl-D), Ctrl-C or SIGTERM closes cleanly (code 1000). On a "
            "terminal, lines can be edited and recalled (Up arrow) at a '> ' prompt. URL "
            "may be ws(s)://... or the http(s):// base URL of a GeneXus application (the "
            "gxwebsocket endpoint is built, and shown). GeneXus notifications are shown as "
            "'< [Object] Id: Message'. Hints (how to stop while it retries, a line queued "
            "while disconnected, what a command did) go to standard error, or above the "
            "prompt on a terminal.",
            78,
        ),
        epilog=_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    connect.add_argument("url", help="ws://, wss://, or a GeneXus base http(s):// URL")
    connect.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per line; a message is under 'message' (text), 'json' "
        "(a JSON object or array), 'notification' (a GeneXus NotificationInfo, as an "
        "object) or 'binary' (base64)",
    )
    connect.add_argument(
        "--timestamps",
        action="store_true",
        help="prefix every line with the local time (--json: a 'time' field, ISO 8601)",
    )
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
        "--subprotocol",
        action="append",
        default=[],
        type=_subprotocol,
        metavar="NAME",
        help="offer subprotocol NAME (repeatable, in order of preference); the one the "
        "server chose is shown on connecting",
    )
    connect.add_argument(
        "--linger",
        type=_seconds_or_zero,
        default=None,
        metavar="S",
        help="after end of input, keep printing events for S seconds before closing, so "
        "that the replies to piped lines are shown; 0 unless given when standard input is "
        "a terminal (default: 1)",
    )
    connect.add_argument("--no-reconnect", action="store_true", help="do not reconnect")
    connect.add_argument(
        "--reconnect-initial",
        type=_seconds,
        default=1.0,
        metavar="S",
        help="wait before the first reconnect, doubled after each failure "
        "(default: %(default)s)",
    )
    connect.add_argument(
        "--reconnect-max",
        type=_seconds,
        default=30.0,
        metavar="S",
        help="longest wait between reconnects, at least the first one (default: %(default)s)",
    )
    connect.add_argument(
        "--max-attempts",
        type=_attempts,
        default=None,
        metavar="N",
        help="give up after N failures in a row, the first connect included "
        "(default: never give up)",
    )
    connect.add_argument(
        "--connect-timeout",
        type=_seconds,
        default=10.0,
        metavar="S",
        help="time allowed for one attempt: TCP, TLS and handshake (default: %(default)s)",
    )
    connect.add_argument(
        "--ping-interval",
        type=_seconds_or_zero,
        default=20.0,
        metavar="S",
        help="keepalive: ping after S seconds without a byte from the server; 0 disables "
        "keepalive (default: %(default)s)",
    )
    connect.add_argument(
        "--ping-timeout",
        type=_seconds,
        default=20.0,
        metavar="S",
        help="keepalive: the server is taken for dead when nothing arrives within S "
        "seconds of a ping (default: %(default)s)",
    )
    connect.add_argument(
        "-P",
        "--show-ping-pong",
        action="store_true",
        help="show the pings and pongs the server sends (with the round trip of a pong "
        "that answers ours)",
    )
    connect.add_argument(
        "--record",
        metavar="FILE",
        help="write a transcript of the session to FILE (JSON lines: each attempt, the "
        "handshakes, every message both ways, pings, closes, the events shown; secrets "
        "redacted), to replay it in a test with trio_clientsocket.testing.open_replay_server",
    )
    connect.add_argument(
        "--insecure",
        action="store_true",
        help="DANGER: do not verify the server's TLS certificate (development only)",
    )
    connect.add_argument(
        "--cert",
        metavar="FILE",
        help="client certificate (PEM) for wss://, with its private key unless --key",
    )
    connect.add_argument("--key", metavar="FILE", help="the private key of --cert (PEM)")
    connect.add_argument(
        "--proxy",
        metavar="URL",
        help="go through this proxy: http://[user:pass@]host:port, https://, socks5:// "
        "or socks5h:// (default: from https_proxy, http_proxy, all_proxy, no_proxy)",
    )

    serve = commands.add_parser(
        "serve",
        help="local GeneXus-compatible chat server (development)",
        description="Serve the GeneXus notification endpoint .../gxwebsocket?<clientId> on "
        "HOST:PORT. Every received message is saved in the Chat table of a SQLite file "
        "and broadcast to every client as a NotificationInfo. Ctrl-C or SIGTERM closes "
        "every client with code 1001 (going away) and exits 0.",
    )
    serve.add_argument(
        "--host",
        type=_host,
        default="127.0.0.1",
        help="address to bind (default: %(default)s)",
    )
    serve.add_argument(
        "--port",
        type=_port,
        default=8080,
        help="port to listen on, 0 for any free one (default: %(default)s)",
    )
    serve.add_argument(
        "--db", default="chat.sqlite3", help="SQLite file (default: %(default)s)"
    )


def run_command(args: argparse.Namespace) -> int:
    """Run ``connect`` or ``serve``; return the process exit code."""
    try:
        with _standard_output() as out:
            if args.command == "connect":
                terminal = _Terminal.open(sys.stdin, out)
                try:
                    return trio.run(_connect, args, out, terminal)
                finally:
                    if terminal is not None:
                        terminal.restore()
            return _run_serve(args, out)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # a Ctrl-C before or after the handlers were installed
        return EXIT_INTERRUPTED


def _standard_output() -> contextlib.AbstractContextManager[TextIO]:
    """Standard output; when it was closed before the start (``>&-``: Python's
    ``sys.stdout`` is None), ``/dev/null``. Both commands still do their job
    (``connect`` sends its input), and what they would print is discarded."""
    if sys.stdout is not None:
        return contextlib.nullcontext(sys.stdout)
    return open(os.devnull, "w", encoding="utf-8")  # the caller closes it


# -- connect: the arguments -----------------------------------------------------------


def _target(args: argparse.Namespace) -> tuple[str, dict[str, str], str | None]:
    """The URL to connect to, the handshake headers, and the line announcing
    that an ``http(s)://`` URL was taken for a GeneXus application (else None)."""
    url: str = args.url
    headers: dict[str, str] = {}
    announcement = None
    try:
        if url.lower().startswith(("http://", "https://")):
            endpoint = genexus_endpoint(url, args.client_id, svc=args.svc)
            announcement = (
                f"* {redact_url(url)} is taken for a GeneXus application: connecting to its "
                f"notification endpoint {redact_url(endpoint.url)} (give a ws:// or wss:// "
                "URL to connect to another one)"
            )
            url = endpoint.url
            headers.update(endpoint.headers)
        elif not url.lower().startswith(("ws://", "wss://")):
            # the library's own message tells a program to build the endpoint;
            # here the command line builds it from an http(s):// URL
            raise UsageError(
                f"URL {redact_url(url)!r} must start with ws:// or wss://, or with http://"
                " or https:// for a GeneXus application (its notification endpoint is built)"
            )
        elif args.client_id is not None:
            if "?" in url:
                raise UsageError("--client-id given, but the URL already has a query")
            url = f"{url}?{check_client_id(args.client_id)}"
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    for header in args.header:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():  # not echoed: it may be a token without its name
            what = "has no ':'" if not sep else "has no name before its ':'"
            raise UsageError(f"--header must look like 'Name: value'; one {what}")
        headers[name.strip()] = value.strip()
    return url, headers, announcement


def _recorder(path: str | None) -> Recorder | None:
    """The ``--record`` file's recorder; UsageError when it cannot be written."""
    if path is None:
        return None
    try:
        return Recorder(path)
    except ValueError as exc:
        raise UsageError(f"--record: {exc}") from None


def _ssl_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The TLS context of ``--insecure``, ``--cert`` and ``--key``; None for the default."""
    if args.key is not None and args.cert is None:
        raise UsageError("--key needs --cert: the certificate that goes with the key")
    if not args.insecure and args.cert is None:
        return None
    context = ssl.create_default_context()
    if args.insecure:
        print(
            "WARNING: --insecure: the server's TLS certificate is NOT verified; "
            "anyone on the network path can read and change this connection",
            file=sys.stderr,
        )
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if args.cert is not None:
        files = f"--cert {args.cert}" + (f" --key {args.key}" if args.key else "")
        try:
            context.load_cert_chain(args.cert, args.key)
        except ssl.SSLError as exc:
            raise UsageError(
                f"{files}: not a certificate and its private key in PEM ({exc.reason or exc})"
            ) from None
        except OSError as exc:
            raise UsageError(f"cannot read {files}: {os_reason(exc)}") from None
    return context


def _socket(
    args: argparse.Namespace, recorder: Recorder | None = None
) -> tuple[ClientSocket, str | None]:
    """The socket the arguments describe, and the GeneXus announcement of ``_target``."""
    url, headers, announcement = _target(args)
    if args.reconnect_max < args.reconnect_initial:
        raise UsageError(
            f"--reconnect-max ({args.reconnect_max:g} s) must not be shorter than "
            f"--reconnect-initial ({args.reconnect_initial:g} s)"
        )
    context = _ssl_context(args)
    if args.proxy is not None:
        try:
            parse_proxy(args.proxy)
        except ValueError as exc:
            raise UsageError(f"--proxy: {exc}") from None
    keepalive = args.ping_interval > 0
    try:
        reconnect = None
        if not args.no_reconnect:
            reconnect = Backoff(
                initial=args.reconnect_initial,
                maximum=args.reconnect_max,
                max_attempts=args.max_attempts,
            )
        sock = ClientSocket(
            url,
            reconnect=reconnect,
            connect_timeout=args.connect_timeout,
            ping_interval=args.ping_interval if keepalive else None,
            ping_timeout=args.ping_timeout if keepalive else None,
            headers=headers or None,
            ssl_context=context,
            record=recorder,
            subprotocols=args.subprotocol,
            proxy=True if args.proxy is None else args.proxy,
            ping_events=args.show_ping_pong,
        )
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from None
    return sock, announcement


# -- connect: what is printed ---------------------------------------------------------


def _message_fields(event: MessageReceived) -> tuple[dict[str, Any], str]:
    message = event.message
    if isinstance(message, bytes):
        encoded = base64.b64encode(message).decode()
        return (
            {"event": "message", "binary": encoded, "size": len(message)},
            f"< [{len(message)} bytes] {message[:32].hex()}",
        )
    info = event.notification
    if info is not None:
        tags = [tag for tag in (info.object, info.group_name and f"group {info.group_name}") if tag]
        head = f"[{', '.join(tags)}] " if tags else ""
        who = f"{info.id}: " if info.id else ""
        return {"event": "message", "notification": event.json}, f"< {head}{who}{info.message}"
    if isinstance(event.json, dict | list):
        return {"event": "message", "json": event.json}, f"< {message}"
    return {"event": "message", "message": message}, f"< {message}"


def _payload_text(payload: bytes) -> str:
    """A ping's or pong's payload for the terminal: nothing when empty, else
    its text (quoted) if it is printable UTF-8, else hex."""
    if not payload:
        return ""
    try:
        text = payload.decode()
    except UnicodeDecodeError:
        text = ""
    if text and text.isprintable():
        return f" {text!r}"
    return f" [{payload.hex(' ')}]"


def describe(event: Event, status: str) -> tuple[dict[str, Any], str] | None:
    """An event as (JSON fields, text line); None for an event the CLI does not show.

    Examples:
        >>> fields, text = describe(MessageReceived('{"Id": "bob", "Message": "h\\\\u00e9"}'), "")
        >>> fields
        {'event': 'message', 'notification': {'Id': 'bob', 'Message': 'hé'}}
        >>> text
        '< bob: hé'
    """
    match event:
        case Connected(url=url, subprotocol=subprotocol):
            fields = {"event": "connected", "url": redact_url(url), "status": status}
            text = f"* connected to {redact_url(url)}"
            if subprotocol is not None:
                fields["subprotocol"] = subprotocol
                text += f" (subprotocol {subprotocol})"
            return fields, f"{text} [{status}]"
        case MessageReceived():
            return _message_fields(event)
        case ConnectionFailed(error=error, retry_in=delay):
            causes = underlying_causes(error)
            what = str(error) or type(error).__name__
            if causes:
                what = f"{what}: {'; '.join(causes)}"
            then = f"retrying in {delay:.2f} s" if delay is not None else "giving up"
            return (
                {
                    "event": "connection_failed",
                    "error": what,
                    "error_type": type(error).__name__,
                    "cause": "; ".join(causes) or None,
                    "retry_in": delay,
                    "status": status,
                },
                f"! connection failed: {what} ({then}) [{status}]",
            )
        case Undelivered(messages=messages, reason=reason, count=count):
            return (
                {
                    "event": "undelivered",
                    "reason": reason,
                    "count": count,
                    "messages": [
                        m if isinstance(m, str) else base64.b64encode(m).decode()
                        for m in messages
                    ],
                },
                f"! {count} message(s) not delivered ({reason})",
            )
        case Skipped(count=count, undelivered=undelivered):
            return (
                {"event": "skipped", "count": count, "undelivered": undelivered},
                f"! {count} event(s) skipped: printing fell behind",
            )
        case PingReceived(payload=payload):
            return {"event": "ping", "payload_hex": payload.hex()}, (
                f"< ping{_payload_text(payload)}"
            )
        case PongReceived(payload=payload, rtt=rtt):
            answer = f" (round trip {rtt * 1000:.1f} ms)" if rtt is not None else " (unasked)"
            return (
                {"event": "pong", "payload_hex": payload.hex(), "rtt": rtt},
                f"< pong{_payload_text(payload)}{answer}",
            )
        case Closed(url=url):
            return (
                {"event": "closed", "url": redact_url(url) if url else None, "status": status},
                f"* closed [{status}]",
            )
    return None


_C1_AND_DEL = re.compile("[\x7f-\x9f]")


def visible(text: str) -> str:
    """``text`` safe to write to a terminal: control characters other than
    newline and tab (a server's escape sequences) shown as ``\\xNN``.

    Examples:
        >>> visible("a\\x1b]52;c;evil\\x07b\\tc")
        'a\\\\x1b]52;c;evil\\\\x07b\\tc'
    """
    if text.isprintable():
        return text
    return "".join(
        f"\\x{ord(c):02x}" if unicodedata.category(c) == "Cc" and c not in "\n\t" else c
        for c in text
    )


class _Printer:
    """Prints events on standard output, as text or JSON lines, above the line
    being typed when there is one."""

    def __init__(
        self,
        out: TextIO,
        *,
        as_json: bool,
        timestamps: bool,
        terminal: _Terminal | None,
        retry_hint: str = "",
    ) -> None:
        self.out = out
        self.as_json = as_json
        self.timestamps = timestamps
        self.terminal = terminal
        self.retry_hint = retry_hint
        """Shown after the first failure that is retried: how to stop."""
        self.down = False
        """A failure was shown since the last ``Connected``: what is sent now is queued."""
        try:
            self.to_terminal = out.isatty()
        except (OSError, ValueError):
            self.to_terminal = False
        self.gave_up = False
        self.undelivered = 0
        self.broken: OSError | None = None
        """Set when standard output is gone (a closed pipe): nothing more is printed."""

    def event(self, event: Event, sock: ClientSocket) -> None:
        if isinstance(event, ConnectionFailed) and event.retry_in is None:
            self.gave_up = True
        elif isinstance(event, Undelivered):
            self.undelivered += event.count
        described = describe(event, sock.status.value)
        if described is not None:
            self.emit(*described)
        if isinstance(event, Connected):
            self.down = False
        elif isinstance(event, ConnectionFailed):
            self.down = True
            if event.retry_in is not None and self.retry_hint:
                self.notice(self.retry_hint)
                self.retry_hint = ""  # once

    def notice(self, text: str) -> None:
        """A line for the person at the keyboard, not an event: on standard
        error, or above the line being typed on a terminal."""
        if self.terminal is not None:
            self._write(visible(text))
            return
        if sys.stderr is None:  # closed from the start: hints are not needed there
            return
        with contextlib.suppress(OSError, ValueError):
            print(visible(text) if sys.stderr.isatty() else text, file=sys.stderr, flush=True)

    def emit(self, fields: dict[str, Any], text: str) -> None:
        if self.broken is not None:
            return
        now = datetime.datetime.now().astimezone() if self.timestamps else None
        if self.as_json:
            if now is not None:
                fields = {"time": now.isoformat(timespec="milliseconds"), **fields}
            line = json.dumps(fields, ensure_ascii=False)
            if self.to_terminal:  # JSON leaves DEL and C1 controls raw: escape them
                line = _C1_AND_DEL.sub(lambda m: f"\\u{ord(m.group()):04x}", line)
        else:
            line = text
            if now is not None:
                line = f"{now:%H:%M:%S}.{now.microsecond // 1000:03d} {line}"
            if self.to_terminal:
                line = visible(line)
        self._write(line)

    def _write(self, line: str) -> None:
        if self.broken is not None:
            return
        try:
            if self.terminal is not None:
                self.terminal.show(line)
            else:
                print(line, file=self.out, flush=True)
        except OSError as exc:  # BrokenPipeError: the reader went away
            self.broken = exc
            with contextlib.suppress(OSError, ValueError):
                # Python would complain again when it flushes stdout at exit
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, self.out.fileno())
                os.close(devnull)


# -- connect: the terminal ------------------------------------------------------------


def shown(text: str, column: int = 0) -> tuple[str, int]:
    """``text`` as readline shows it from ``column`` of an endless line, and the
    column after it: tabs as spaces to the next multiple of 8, control
    characters as ``^X``, wide characters 2 cells, combining ones none.

    Examples:
        >>> shown("> a\\tb\\x01")
        ('> a     b^A', 11)
        >>> shown("日本")
        ('日本', 4)
    """
    out: list[str] = []
    for c in text:
        if c == "\t":
            spaces = 8 - column % 8
            out.append(" " * spaces)
            column += spaces
        elif c < " " or c == "\x7f":
            out.append("^?" if c == "\x7f" else "^" + chr(ord(c) + 64))
            column += 2
        else:
            out.append(c)
            if unicodedata.combining(c) or unicodedata.category(c) in ("Mn", "Me", "Cf"):
                pass
            elif unicodedata.east_asian_width(c) in ("W", "F"):
                column += 2
            else:
                column += 1
    return "".join(out), column


def print_above(line: str, prompt: str, buffer: str, point: int, columns: int) -> str:
    """What to write to the terminal to print ``line`` above the line being
    typed and redraw that line as readline had it: from the cursor (at
    ``point`` of ``buffer``), up to the first row of the prompt, clear to the
    end of the screen, ``line``, then the prompt and the buffer (wrapping at
    ``columns``), and the cursor back at ``point``.

    Examples:
        >>> print_above("< hi", "> ", "hello", 5, 80)
        '\\r\\x1b[J< hi\\n> hello'
        >>> print_above("< hi", "> ", "hello", 2, 80)
        '\\r\\x1b[J< hi\\n> hello\\r\\x1b[4C'
    """
    columns = max(columns, 1)
    at = shown(prompt + buffer[:point])[1]
    text, end = shown(prompt + buffer)
    out = [f"\x1b[{at // columns}A" if at // columns else "", "\r\x1b[J", line, "\n", text]
    if end % columns == 0:
        out.append(" \r")  # the cursor waits at the margin: on to the next row, as readline does
    up = end // columns - at // columns
    if up:
        out.append(f"\x1b[{up}A")
    if up or at != end:
        out.append("\r" + (f"\x1b[{at % columns}C" if at % columns else ""))
    return "".join(out)


def clear_input(prompt: str, buffer: str, point: int, columns: int) -> str:
    """What to write to erase the line being typed (all its rows), leaving the
    cursor at the start of its first row.

    Examples:
        >>> clear_input("> ", "x" * 100, 100, 80)
        '\\x1b[1A\\r\\x1b[J'
    """
    rows = shown(prompt + buffer[:point])[1] // max(columns, 1)
    return (f"\x1b[{rows}A" if rows else "") + "\r\x1b[J"


class _Terminal:
    """Standard input and output are a terminal: lines are read by GNU readline
    (editing, history) in a worker thread, and ``show()`` prints above the line
    being typed.

    readline is not thread-safe and draws the line itself, so the line is
    redrawn from its public state: the buffer, and the cursor (``rl_point``,
    read through ctypes when the library exports it; else taken to be at the
    end), laid out as readline lays it out (``shown``). What remains is a race
    of microseconds when a key is processed at the very moment an event is
    printed, and a wide character at the right margin; Ctrl-L redraws.
    """

    PROMPT = "> "

    def __init__(
        self,
        out: TextIO,
        readline: ModuleType,
        echo: Callable[[bool], None],
        restore: Callable[[], None],
    ) -> None:
        self.out = out
        self.readline = readline
        self.echo = echo
        """Turn the terminal's echo on or off (readline reads keys with it off)."""
        self.restore = restore
        """Put the terminal back as it was (readline may be abandoned mid-line)."""
        self.lock = threading.Lock()
        self.editing = False  # the prompt is on screen and readline is reading keys
        self.stopped = False  # input is over: print plainly from now on
        self.read_point = _rl_point_reader(readline)
        readline.parse_and_bind("set enable-bracketed-paste off")  # a pasted line: one message
        readline.set_pre_input_hook(self._prompt_shown)

    @classmethod
    def open(cls, stdin: TextIO | None, stdout: TextIO | None) -> _Terminal | None:
        """A terminal session when stdin and stdout are both a terminal (and
        ``TERM`` is not ``dumb``) and readline can be had; else None."""
        if stdin is None or stdout is None or os.environ.get("TERM") == "dumb":
            return None
        try:
            if not (stdin.isatty() and stdout.isatty()):
                return None
            fd = stdin.fileno()
            import readline
            import termios
        except (ImportError, OSError, ValueError):
            return None
        if "libedit" in (readline.__doc__ or "") or not hasattr(readline, "set_pre_input_hook"):
            return None  # macOS's editline: no pre-input hook, other settings

        def echo(on: bool) -> None:
            with contextlib.suppress(termios.error, OSError):  # the terminal is gone
                mode = termios.tcgetattr(fd)
                mode[3] = mode[3] | termios.ECHO if on else mode[3] & ~termios.ECHO
                termios.tcsetattr(fd, termios.TCSANOW, mode)

        def restore() -> None:
            with contextlib.suppress(termios.error, OSError):
                termios.tcsetattr(fd, termios.TCSADRAIN, saved)

        try:
            saved = termios.tcgetattr(fd)
            # Between two lines, readline gives the terminal back as it found
            # it. Keys typed then must wait for readline as typed: not echoed
            # by the terminal (a stray "^[[A" before the prompt), not cooked
            # (Ctrl-D taken as end of file). Signals (Ctrl-C) still work.
            quiet = termios.tcgetattr(fd)
            quiet[3] &= ~(termios.ECHO | termios.ICANON)
            quiet[6][termios.VMIN] = 1
            quiet[6][termios.VTIME] = 0
            termios.tcsetattr(fd, termios.TCSANOW, quiet)
        except termios.error:
            return None
        return cls(stdout, readline, echo, restore)

    def _prompt_shown(self) -> None:  # readline's pre-input hook, in the worker thread
        with self.lock:
            self.editing = not self.stopped

    def _read(self) -> str | None:  # in the worker thread
        # readline displays what is typed only if the terminal echoes when it
        # starts; it turns the echo off itself while it reads.
        self.echo(True)
        try:
            return input(self.PROMPT)
        except EOFError:
            return None
        finally:
            self.echo(False)
            with self.lock:
                self.editing = False

    async def read_line(self) -> str | None:
        """The next line typed, None at end of input (Ctrl-D on an empty line).
        Cancelled, the worker thread is abandoned (``restore()`` puts the
        terminal back as it was)."""
        while True:
            try:
                line = await trio.to_thread.run_sync(self._read, abandon_on_cancel=True)
            except UnicodeDecodeError:
                self.show("! line not sent: it is not valid text in the terminal's encoding")
                continue
            if line is None:
                with self.lock:
                    self.out.write("\r\x1b[K")  # the prompt Ctrl-D left behind
                    self.out.flush()
            return line

    def _point(self, buffer: str) -> int:
        if self.read_point is None:
            return len(buffer)
        encoded = buffer.encode("utf-8", "surrogateescape")
        offset = min(max(self.read_point(), 0), len(encoded))
        return len(encoded[:offset].decode("utf-8", "ignore"))

    def _columns(self) -> int:
        try:
            return os.get_terminal_size(self.out.fileno()).columns or 80
        except (OSError, ValueError):
            return 80

    def show(self, line: str) -> None:
        """Print ``line``; while a line is being typed, above it, and redraw it."""
        with self.lock:
            if self.editing:
                buffer = self.readline.get_line_buffer()
                text = print_above(
                    line, self.PROMPT, buffer, self._point(buffer), self._columns()
                )
                self.out.write(text)
            else:
                self.out.write(line + "\n")
            self.out.flush()

    def stop_input(self) -> None:
        """Input is over (a signal, giving up): erase the line being typed."""
        with self.lock:
            if self.editing:
                buffer = self.readline.get_line_buffer()
                self.out.write(
                    clear_input(self.PROMPT, buffer, self._point(buffer), self._columns())
                )
                with contextlib.suppress(OSError):
                    self.out.flush()
            self.editing = False
            self.stopped = True


def _rl_point_reader(readline: ModuleType) -> Callable[[], int] | None:
    """A function reading readline's cursor offset (``rl_point``, in bytes), or
    None when the library does not export it."""
    try:
        import ctypes

        point = ctypes.c_int.in_dll(ctypes.CDLL(readline.__file__), "rl_point")
    except (ImportError, AttributeError, OSError, ValueError, TypeError):
        return None
    return lambda: point.value


# -- connect: the session -------------------------------------------------------------


async def _connect(args: argparse.Namespace, out: TextIO, terminal: _Terminal | None) -> int:
    unreadable = _write_only(sys.stdin)
    if unreadable:  # said before connecting: the socket's own reports would come first
        raise UsageError("cannot read standard input: it is not open for reading")
    recorder = _recorder(args.record)
    try:
        return await _run_connect(args, out, terminal, recorder)
    finally:
        if recorder is not None:
            recorder.close()


async def _run_connect(
    args: argparse.Namespace, out: TextIO, terminal: _Terminal | None, recorder: Recorder | None
) -> int:
    sock, announcement = _socket(args, recorder)
    if args.max_attempts is None:
        hint = "! retrying until it connects: Ctrl-C stops (--max-attempts N gives up sooner)"
    else:
        hint = f"! retrying, up to {args.max_attempts} failures in a row: Ctrl-C stops sooner"
    printer = _Printer(
        out, as_json=args.json, timestamps=args.timestamps, terminal=terminal, retry_hint=hint
    )
    if announcement is not None:
        printer.notice(announcement)
    lines = _Lines(sock, printer, args.ping_timeout)
    linger = args.linger if args.linger is not None else default_linger(sys.stdin)

    def show(event: Event) -> None:
        if recorder is not None:
            recorder.record_event(event)  # the socket's view, next to the wire's
        printer.event(event, sock)

    stopped_by: int | None = None  # the signal that ended the session
    input_error: str | None = None  # why standard input could not be read
    # Open for the whole session, so that a signal is never Python's default
    # (a KeyboardInterrupt traceback, or death without a close frame).
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with sock:
            async with trio.open_nursery() as nursery:

                async def watch_events() -> None:
                    async for event in sock.events():
                        show(event)
                        if printer.gave_up or printer.broken is not None:
                            nursery.cancel_scope.cancel()

                async def read_input() -> None:
                    nonlocal input_error
                    # SocketClosedError: the socket gave up; watch_events ends the run.
                    with contextlib.suppress(SocketClosedError):
                        try:
                            if terminal is not None:
                                closed = await _send_typed_lines(lines, terminal)
                            else:
                                closed = await _send_lines(lines)
                        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                            input_error = _read_error(exc)
                        else:
                            if not closed:
                                # end of input: what was typed goes first (what was cut
                                # off is reported Undelivered by the event printer)
                                with contextlib.suppress(UndeliveredError):
                                    await sock.wait_sent()
                                await trio.sleep(linger)
                        await sock.close()
                        nursery.cancel_scope.cancel()

                async def close_then_stop() -> None:
                    await sock.close()  # flushes what it can; the rest is reported Undelivered
                    nursery.cancel_scope.cancel()

                async def watch_signals() -> None:
                    nonlocal stopped_by
                    async for signum in signals:
                        if stopped_by is None:
                            stopped_by = signum
                            if terminal is not None:
                                terminal.stop_input()
                            nursery.start_soon(close_then_stop)
                        else:  # a second signal: stop waiting for the close
                            nursery.cancel_scope.cancel()

                nursery.start_soon(watch_signals)
                nursery.start_soon(watch_events)
                nursery.start_soon(read_input)
            if terminal is not None:
                terminal.stop_input()
        # The socket's last events (Undelivered, Closed) are still in the channel.
        while True:
            try:
                show(sock.events().receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
    if stopped_by is not None:
        return EXIT_INTERRUPTED if stopped_by == signal.SIGINT else EXIT_TERMINATED
    if input_error is not None:
        raise UsageError(f"cannot read standard input: {input_error}")
    if printer.broken is not None:
        raise UsageError(f"standard output was closed: {os_reason(printer.broken)}")
    return EXIT_FATAL if printer.gave_up or printer.undelivered else 0


def _write_only(stdin: TextIO | None) -> bool:
    """``stdin`` is a descriptor open for writing only (the write end of a
    pipe, a file opened ``O_WRONLY``): reading it can only fail. False when it
    cannot be told (no descriptor, no ``fcntl``)."""
    try:
        import fcntl

        flags = fcntl.fcntl(stdin.fileno(), fcntl.F_GETFL) if stdin is not None else 0
    except (ImportError, OSError, ValueError, AttributeError):
        return False
    return flags & os.O_ACCMODE == os.O_WRONLY


def _read_error(exc: BaseException) -> str:
    """Why standard input could not be read, in words."""
    if isinstance(exc, trio.ClosedResourceError):  # EBADF: a descriptor opened write-only
        return "it is not open for reading"
    cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
    return os_reason(cause) if isinstance(cause, OSError) else str(cause)


def _clean(text: str) -> str:
    """``text`` that UTF-8 can encode (a lone surrogate becomes U+FFFD)."""
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def default_linger(stdin: TextIO | None) -> float:
    """Seconds ``connect`` keeps printing after the end of input, unless
    ``--linger`` says: 1 when input is piped, so that the replies to the last
    lines are shown; 0 at a terminal, where Ctrl-D means now.

    Examples:
        >>> import io
        >>> default_linger(io.StringIO("a\\nb\\n")), default_linger(None)
        (1.0, 1.0)
    """
    try:
        return 0.0 if stdin is not None and stdin.isatty() else 1.0
    except (OSError, ValueError):  # closed, or not a file
        return 1.0


class _Lines:
    """What a line of input does: sent as a text message, or a command
    (``/binary``, ``/close``, ``/ping``; ``//`` sends a line starting with ``/``)."""

    def __init__(self, sock: ClientSocket, printer: _Printer, ping_timeout: float) -> None:
        self.sock = sock
        self.printer = printer
        self.ping_timeout = ping_timeout

    async def take(self, line: str) -> bool:
        """Send ``line`` or run its command; True after ``/close`` (the socket is
        closed: input is over)."""
        command, _, rest = line.partition(" ") if line.startswith("/") else ("", "", "")
        message: Message = line[1:] if line.startswith("//") else line
        if command == "/close":
            return await self._close(rest)
        if command == "/ping":
            self.printer.notice(await self._ping())
            return False
        if command == "/binary":
            try:
                message = bytes.fromhex(rest)
            except ValueError:
                self.printer.notice(
                    "! /binary HEX: not sent, HEX must be bytes as pairs of hex digits "
                    "(/binary 48 69)"
                )
                return False
        await self.sock.send(message)
        if self.printer.down and self.sock.status is Status.DISCONNECTED:
            waiting = self.sock.statistics().outbox_depth
            self.printer.notice(f"* queued until connected ({waiting} waiting)")
        return False

    async def _close(self, arguments: str) -> bool:
        code_text, _, reason = arguments.strip().partition(" ")
        try:
            code = int(code_text) if code_text else 1000
        except ValueError:
            self.printer.notice(
                f"! /close [CODE [REASON]]: {code_text[:20]!r} is not a close code (1000-4999)"
            )
            return False
        with contextlib.suppress(UndeliveredError):
            await self.sock.wait_sent()  # what came before goes first, as at end of input
        try:
            await self.sock.close(code, reason.strip())
        except ValueError as exc:
            self.printer.notice(f"! /close: {exc}")
            return False
        return True

    async def _ping(self) -> str:
        """Ping once connected (as a line waits to be sent), all within
        --ping-timeout."""
        limit = f"{self.ping_timeout:g} s (--ping-timeout)"
        sent = False
        with trio.move_on_after(self.ping_timeout):
            try:
                await self.sock.wait_connected()
                sent = True
                rtt = await self.sock.ping()
            except SocketClosedError:
                return "! /ping: the socket is closed"
            except NotConnectedError:
                return "! /ping: the connection ended before the pong came"
            return f"* /ping: round trip {rtt * 1000:.1f} ms"
        if not sent:
            return f"! /ping: not connected within {limit}: no ping went"
        return f"! /ping: no pong within {limit}"


async def _send_typed_lines(lines: _Lines, terminal: _Terminal) -> bool:
    """Take each line typed at the prompt, until end of input (Ctrl-D, False)
    or ``/close`` (True)."""
    while True:
        line = await terminal.read_line()
        if line is None:
            return False
        if await lines.take(_clean(line)):
            return True


async def _send_lines(lines: _Lines) -> bool:
    """Take each line of standard input, until end of input (False) or
    ``/close`` (True)."""
    if sys.stdin is None:  # no standard input at all: nothing to send
        return False
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    async with stdin:
        # The line being read grows in place and each read is searched once:
        # linear in the input, however long a line is.
        line = bytearray()
        while data := await stdin.receive_some(65536):
            start = 0
            while (end := data.find(b"\n", start)) != -1:
                line += data[start:end]
                if await lines.take(_line_text(line)):
                    return True
                line.clear()
                start = end + 1
            line += data[start:]
        if line:
            return await lines.take(_line_text(line))
    return False


def _line_text(line: bytearray) -> str:
    """A line of standard input as text: carriage returns at its end dropped, invalid
    UTF-8 as U+FFFD."""
    return line.rstrip(b"\r").decode("utf-8", errors="replace")


# -- serve ----------------------------------------------------------------------


def _open_store(db: str) -> tuple[ChatStore, int]:
    """The chat store and how many messages it holds; UsageError when it cannot be used."""
    path = Path(db)
    if db != ":memory:" and not path.parent.is_dir():
        raise UsageError(f"cannot open the chat database {db}: no directory {path.parent}")
    try:
        store = ChatStore(path)
    except sqlite3.Error as exc:
        raise UsageError(f"cannot open the chat database {db}: {exc}") from None
    try:
        return store, len(store.rows())
    except sqlite3.Error as exc:
        store.close()
        raise UsageError(f"cannot read the chat database {db}: {exc}") from None


class _CannotListen(UsageError):
    pass


def _run_serve(args: argparse.Namespace, out: TextIO) -> int:
    new_file = args.db != ":memory:" and not Path(args.db).exists()
    store, history = _open_store(args.db)
    try:
        return trio.run(_serve, args, out, store, history)
    except _CannotListen:
        store.close()
        if new_file:  # leave nothing behind for a server that never ran
            Path(args.db).unlink(missing_ok=True)
        raise
    finally:
        store.close()


async def _serve(args: argparse.Namespace, out: TextIO, store: ChatStore, history: int) -> int:
    stop = trio.Event()
    listen_error: OSError | None = None
    store_error: sqlite3.Error | None = None
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def chat(
                *, task_status: trio.TaskStatus[tuple[Any, int]] = trio.TASK_STATUS_IGNORED
            ) -> None:
                nonlocal store_error
                try:
                    await serve_chat(
                        store, args.host, args.port, stop=stop, task_status=task_status
                    )
                except sqlite3.Error as exc:
                    store_error = exc
                nursery.cancel_scope.cancel()  # the server is done: so is watch_signals

            async def watch_signals() -> None:
                async for _ in signals:
                    if not stop.is_set():
                        stop.set()  # close every client with 1001, then return
                    else:  # a second signal: drop them now
                        nursery.cancel_scope.cancel()

            try:
                _, port = await nursery.start(chat)
            except OSError as exc:
                # chat ended before it started: nothing else runs in this
                # nursery, and no exception leaves it (the error is raised below).
                listen_error = exc
            else:
                host = f"[{args.host}]" if ":" in args.host else args.host
                print(
                    f"serving ws://{host}:{port}/<app>/gxwebsocket?<client-id> "
                    f"(chat history: {args.db}, {history} message(s))",
                    file=out,
                    flush=True,
                )
                nursery.start_soon(watch_signals)
    if listen_error is not None:
        raise _CannotListen(f"cannot listen on {args.host}:{args.port}: {os_reason(listen_error)}")
    if store_error is not None:
        raise UsageError(f"the chat database {args.db} failed: {store_error}")
    print("stopped", file=out, flush=True)
    return 0
