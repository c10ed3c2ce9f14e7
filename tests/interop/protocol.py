"""The command protocol every interop server speaks (pure; no server library).

Every text and binary message is echoed, except these text commands:

``close CODE``
    the server closes the connection with that code;
``flood N SIZE``
    the server sends N text messages of SIZE bytes, numbered (``"7:xxxx..."``)
    so that the client can check their order;
``notify``
    the server sends a GeneXus NotificationInfo JSON;
``ping``
    the server stops reading for ``HOLD`` seconds, then sends a ping (where its
    library lets the application do so): a client that closes right after
    sending ``ping`` has its close frame on the way when the ping goes, so that
    the two cross (fault injection, not synchronisation: the test checks
    from the pongs the server saw whether they crossed);
``stats``
    the server answers with the JSON of ``Tally.report``: what it saw, as far as
    its library exposes it (``null`` where it does not).

A server program prints ``ready PORT`` on its standard output once it listens,
and nothing else there. ``tests/interop/node/server.js`` speaks the same protocol.
"""

from __future__ import annotations

import argparse
import json
import socket
from typing import Any

__all__ = [
    "Command",
    "Tally",
    "arguments",
    "flood_message",
    "listening_socket",
    "notification",
    "parse",
    "ready",
]

MAX_SIZE = 4 * 2**20
"""The largest message the servers accept (the client sends up to 1 MiB)."""
HOLD = 0.02
"""Seconds a server stops reading before the ping of a ``ping`` command."""

Command = tuple[str, tuple[int, ...]]


def parse(message: str | bytes) -> Command | None:
    """The command a message is, or None when it is to be echoed.

    Examples:
        >>> parse("flood 3 16"), parse("close 4001"), parse("hello"), parse(b"stats")
        (('flood', (3, 16)), ('close', (4001,)), None, None)
    """
    if not isinstance(message, str) or len(message) > 64:
        return None
    name, *args = message.split(" ")
    arity = {"close": 1, "flood": 2, "notify": 0, "ping": 0, "stats": 0}.get(name)
    if arity is None or len(args) != arity or not all(a.isdigit() for a in args):
        return None
    return name, tuple(int(a) for a in args)


def flood_message(number: int, size: int) -> str:
    """Message ``number`` of a flood: ``size`` bytes, repetitive (it compresses).

    Examples:
        >>> flood_message(7, 10)
        '7:xxxxxxxx'
    """
    prefix = f"{number}:"
    return prefix + "x" * max(0, size - len(prefix))


def notification(server: str, number: int) -> str:
    """A GeneXus NotificationInfo, whose Message is itself JSON (as GeneXus sends it)."""
    message = json.dumps({"text": f"notification {number} from {server}"})
    return json.dumps({"Id": f"{server}-{number}", "Object": "", "Message": message})


class Tally:
    """What a server process saw, across its connections."""

    def __init__(self, server: str) -> None:
        self.server = server
        self.connections = 0
        self.closes: dict[int, int | None] = {}
        """Connection number: the close code the client sent (None: none seen),
        for connections that the client closed (not by a ``close`` command)."""
        self.pings = 0
        """Pings the server sent on ``ping`` commands."""
        self.pongs = 0
        """Pongs the server saw (where its library shows them)."""

    def connected(self) -> int:
        self.connections += 1
        return self.connections

    def closed(self, connection: int, code: int | None) -> None:
        self.closes[connection] = code
        while len(self.closes) > 100:
            del self.closes[next(iter(self.closes))]

    def report(self, connection: int, **seen: Any) -> str:
        """The ``stats`` answer: the process's tally and what the server saw of
        this connection (``compressed``, ``extensions``, ``wire_bytes_received``...)."""
        value: dict[str, Any] = {
            "server": self.server,
            "connection": connection,
            "connections": self.connections,
            "closes": {str(k): v for k, v in self.closes.items()},
            "pings": self.pings,
            "pongs": self.pongs,
        }
        value.update(seen)
        return json.dumps(value)


def arguments(description: str, *flags: str) -> argparse.Namespace:
    """The command line of a server program: ``--port`` (0: ephemeral) and
    the boolean ``flags`` given."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=0)
    for flag in flags:
        parser.add_argument(f"--{flag}", action="store_true")
    return parser.parse_args()


def listening_socket(port: int) -> socket.socket:
    """A TCP socket listening on 127.0.0.1:``port`` (reusable at once after a
    kill -9, so that a restart gets the same port)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def ready(sock: socket.socket) -> None:
    """Tell the test the server listens: ``ready PORT``, flushed."""
    print("ready", sock.getsockname()[1], flush=True)
