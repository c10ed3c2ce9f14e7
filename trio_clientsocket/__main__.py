"""Command line: ``trio-clientsocket demo | connect URL | serve`` (also
``python -m trio_clientsocket ...``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import trio

from ._cli import EXIT_INTERRUPTED, CliParser, add_commands, run_command
from ._demo import run_demo
from ._version import __version__

__all__ = ["PROG", "build_parser", "main"]

PROG = "trio-clientsocket"
"""The program name of the installed script; ``python -m trio_clientsocket``
shows that instead."""


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The argument parser of the command line, showing ``prog`` as its name."""
    parser = CliParser(
        prog=prog,
        description="A reconnecting WebSocket client for Trio (GeneXus Client.Socket).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="two clients chat through a local server that restarts mid-way",
        description="Start a local GeneXus-style chat server on 127.0.0.1, connect two "
        "ClientSockets, restart the server while one keeps sending, and check that "
        "every message arrived exactly once, in order. Exit code 0 only if so.",
    )
    demo.add_argument("--quiet", action="store_true", help="print only the verdict")
    add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Entry point of ``trio-clientsocket`` and ``python -m trio_clientsocket``.

    Examples:
        >>> main(["demo", "--quiet"])  # doctest: +SKIP
        0
    """
    args = build_parser(prog).parse_args(argv)
    if args.command == "demo":
        try:
            ok = trio.run(run_demo, sys.stdout, args.quiet)
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
        return 0 if ok else 1
    return run_command(args)


if __name__ == "__main__":
    sys.exit(main(prog="python -m trio_clientsocket"))
