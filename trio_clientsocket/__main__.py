"""Command line: ``python -m trio_clientsocket demo | connect URL | serve``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import trio

from ._cli import add_commands, run_command
from ._demo import run_demo

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m trio_clientsocket`` and ``trio-clientsocket``.

    Examples:
        >>> main(["demo", "--quiet"])  # doctest: +SKIP
        0
    """
    parser = argparse.ArgumentParser(
        prog="python -m trio_clientsocket",
        description="A reconnecting WebSocket client for Trio (GeneXus Client.Socket).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="two clients chat through a local server that restarts mid-way",
        description="Start a local GeneXus-style chat server on 127.0.0.1, connect two "
        "ClientSockets, restart the server while one keeps sending, and check that "
        "every message arrived exactly once, in order. Exit code 0 only if so.",
    )
    demo.add_argument("--quiet", action="store_true", help="print only the verdict")
    add_commands(commands)
    args = parser.parse_args(argv)
    if args.command == "demo":
        ok = trio.run(run_demo, sys.stdout, args.quiet)
        return 0 if ok else 1
    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
