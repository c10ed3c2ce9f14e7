"""CPU instructions per message, counted by valgrind's callgrind: nearly the same
number on every run (within 1 %), where wall-clock throughput moves by 30 %. Load
still decides which path a client takes (whether a read finds data or has to
wait): the round trip moved by 4 % between a busy and a quiet machine.

For each row and client, runs ``clients.py`` twice under callgrind, with a small
and a larger count, and divides the difference by the difference in count, so that
start-up and connection set-up cancel out. Prints one table, rows x clients, of
instructions per message (per round trip for the round trip, per connection for
connect + close: open, handshake, close handshake), and the ratios of ClientSocket
(websockets engine) to websockets.trio and to the minimal SocketStream client of
``minimal.py``. Lower is better. It counts the client's own work (Python, trio,
the protocol), not time in the kernel.

Servers, each in its own process: ``server.py --picows`` (picows, no compression)
for the plain rows; ``server.py --deflate`` (websockets' asyncio server with
permessage-deflate) for the ``deflate`` rows, where it compresses what it sends.
Every client runs with its defaults (ClientSocket offers ``Deflate()``,
websockets offers deflate, the others offer nothing), except trio-websocket,
which gets ClientSocket's queue and buffer sizes.

``--profile`` prints, for each cell, where its instructions go: the C functions
with the most instructions of their own per message (callgrind, the same two
runs), and the Python functions with the most bytecodes per message, inclusive
(cProfile whose clock counts executed bytecodes, two more runs, not under
valgrind).

Run: ``python benchmarks/instructions.py`` (needs valgrind; about 45 minutes on two
cores). One cell: ``python benchmarks/instructions.py --tests send16 --clients cs
--quick`` (under a minute). The library measured is the one next to this folder.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# short name: (name in clients.py, column heading)
CLIENTS: dict[str, tuple[str, str]] = {
    "cs": ("ClientSocket", "ClientSocket"),
    "cs-wsproto": ("ClientSocket (wsproto engine)", "ClientSocket, wsproto"),
    "cs-tw": ("ClientSocket (trio-websocket transport)", "ClientSocket, trio-websocket"),
    "ws-trio": ("websockets.trio (defaults)", "websockets.trio"),
    "ws-asyncio": ("websockets asyncio", "websockets asyncio"),
    "picows": ("picows (asyncio, Cython)", "picows"),
    "tw": ("trio-websocket (ClientSocket's settings)", "trio-websocket"),
    "min-stream": ("minimal (SocketStream)", "minimal, SocketStream"),
    "min-fd": ("minimal (fd + wait_readable)", "minimal, fd"),
}
OURS, PEER, FLOOR = "cs", "ws-trio", "min-stream"


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    test: str  # a test of clients.py
    args: tuple[str, ...]  # its arguments before the count
    small: int  # the two counts
    big: int
    server: str = "picows"  # or "deflate"
    clients: tuple[str, ...] = field(default=tuple(CLIENTS))


PLAIN = [
    Row("recv16", "receive 16 B", "recv", ("16",), 2_000, 6_000),
    Row("recv1k", "receive 1 KiB", "recv", ("1024",), 2_000, 6_000),
    Row("recv64k", "receive 64 KiB", "recv", ("65536",), 200, 600),
    Row("send16", "send 16 B", "send", ("16",), 1_000, 3_000),
    Row("send1k", "send 1 KiB", "send", ("1024",), 1_000, 3_000),
    Row("send64k", "send 64 KiB", "send", ("65536",), 200, 600),
    Row("rtt", "round trip 16 B", "rtt", (), 300, 900),
    Row("connect", "connect + close", "connect", (), 20, 60),
]
DEFLATE = [  # the clients that negotiate permessage-deflate
    replace(
        r,
        key=r.key + "z",
        label=r.label + ", deflate",
        server="deflate",
        clients=("cs", "cs-wsproto", "ws-trio", "ws-asyncio"),
    )
    for r in PLAIN
    if r.key in ("recv16", "recv1k", "send16", "send1k")
]
ROWS = PLAIN + DEFLATE
SERVER_FLAGS = {"picows": "--picows", "deflate": "--deflate"}
# The measured library is the checkout next to this folder; hashes are fixed so
# that dict and set layouts, and with them the counts, repeat exactly.
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "0"}


def clients_command(client: str, row: Row, port: int, n: int) -> list[str]:
    return [CLIENTS[client][0], row.test, str(port), *row.args, str(n)]


def count(client: str, row: Row, port: int, n: int, out: str = "/dev/null") -> int:
    """Instructions of one run of ``clients.py`` under callgrind (its profile to ``out``)."""
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--dump-instr=no",
            f"--callgrind-out-file={out}",
            sys.executable,
            str(HERE / "clients.py"),
            *clients_command(client, row, port, n),
        ],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
        env=ENV,
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"{client} {row.key} {n}: {done.stderr.strip()[-800:]}")
    return int(found.group(1))


@contextmanager
def servers(needed: set[str]) -> Iterator[dict[str, int]]:
    """The servers the rows need, each in its own process: name -> port."""
    started: dict[str, subprocess.Popen[str]] = {}
    try:
        ports = {}
        for name in sorted(needed):
            proc = started[name] = subprocess.Popen(
                [sys.executable, str(HERE / "server.py"), "0", SERVER_FLAGS[name]],
                stdout=subprocess.PIPE,
                text=True,
                env=ENV,
            )
            assert proc.stdout is not None
            ports[name] = int(proc.stdout.readline().split()[1])
        yield ports
    finally:
        for proc in started.values():
            proc.terminate()
            proc.wait()


# -- --profile -------------------------------------------------------------------


def c_functions(path: str) -> dict[str, int]:
    """Instructions per C function, its own only, from a callgrind profile."""
    text = subprocess.run(
        ["callgrind_annotate", "--threshold=100", path],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    costs: dict[str, int] = {}
    for line in text.split("file:function", 1)[-1].splitlines():
        found = re.match(r"\s*([\d,]+) \([^)]*\)\s+(\S+)", line)
        if found:  # "path/file.c:function": the file's name is enough
            name = found.group(2).rsplit("/", 1)[-1]
            costs[name] = costs.get(name, 0) + int(found.group(1).replace(",", ""))
    return costs


def bytecode_run(out: str, argv: list[str]) -> None:
    """Run ``clients.py argv`` under cProfile whose clock is the number of bytecodes
    executed so far (a trace function counts them); the stats go to ``out``."""
    import cProfile

    import clients

    executed = 0

    def opcodes(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal executed
        if event == "opcode":
            executed += 1
        return opcodes

    def calls(frame: FrameType, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        return opcodes

    profile = cProfile.Profile(lambda: executed, 1.0)
    sys.argv = ["clients.py", *argv]
    sys.settrace(calls)
    profile.enable()
    try:
        clients.main()
    finally:
        profile.disable()
        sys.settrace(None)
    profile.dump_stats(out)


def python_functions(path: str) -> tuple[dict[str, tuple[float, float, float]], float]:
    """name -> (calls, own bytecodes, inclusive bytecodes), and all bytecodes."""
    import pstats

    stats: dict[tuple[str, int, str], tuple[Any, ...]] = pstats.Stats(path).stats  # type: ignore[attr-defined]
    table: dict[str, tuple[float, float, float]] = {}
    for (file, line, name), (_, calls, own, inclusive, _) in stats.items():
        where = f"{Path(file).parent.name}/{Path(file).name}:{line}" if line else "~"
        table[f"{where}({name})"] = (calls, own, inclusive)
    return table, sum(own for _, own, _ in table.values())


def profile(client: str, row: Row, port: int) -> None:
    n = row.big - row.small
    with tempfile.TemporaryDirectory() as tmp:
        small, big = (f"{tmp}/{k}.callgrind" for k in ("small", "big"))
        with ThreadPoolExecutor(2) as pool:
            jobs = [pool.submit(count, client, row, port, row.small, small)]
            jobs.append(pool.submit(count, client, row, port, row.big, big))
            total = (jobs[1].result() - jobs[0].result()) / n
        before, after = c_functions(small), c_functions(big)
        own = {f: (after[f] - before.get(f, 0)) / n for f in after}
        print(f"\n## {row.label}, {CLIENTS[client][1]}: {total:,.0f} instructions per message")
        print("\nC functions, own instructions per message (callgrind):\n")
        for name, value in sorted(own.items(), key=lambda kv: -kv[1])[:20]:
            print(f"  {value:>9,.0f}  {value / total:>4.0%}  {name}")

        runs = []
        for k, count_ in (("small", row.small), ("big", row.big)):
            path = f"{tmp}/{k}.pstats"
            command = [str(HERE / "instructions.py"), "--bytecode-run", path]
            subprocess.run(
                [sys.executable, *command, *clients_command(client, row, port, count_)],
                check=True,
                capture_output=True,
                env=ENV,
            )
            runs.append(python_functions(path))
    (first, first_total), (second, second_total) = runs
    per = {
        f: tuple((b - a) / n for a, b in zip(first.get(f, (0, 0, 0)), second[f], strict=True))
        for f in second
    }
    all_bytecodes = (second_total - first_total) / n
    print(
        f"\nPython functions, bytecodes per message ({all_bytecodes:,.0f} in all, "
        f"{total / all_bytecodes:.0f} instructions per bytecode):\n"
        "\n      calls  own bytecodes  inclusive  function"
    )
    for name, (calls, own_, inclusive) in sorted(per.items(), key=lambda kv: -kv[1][2])[:40]:
        if calls > 0:
            print(f"  {calls:>9.3f}  {own_:>13,.0f}  {inclusive:>9,.0f}  {name}")


# -- the table ---------------------------------------------------------------------


def cell(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def ratio(values: dict[str, float], base: str) -> str:
    if OURS not in values or base not in values:
        return "-"
    return f"{values[OURS] / values[base]:.2f}x"


def main() -> None:
    if sys.argv[1:2] == ["--bytecode-run"]:  # a child of --profile
        bytecode_run(sys.argv[2], sys.argv[3:])
        return
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="rows: " + ", ".join(r.key for r in ROWS) + "\nclients: " + ", ".join(CLIENTS),
    )
    parser.add_argument("--clients", nargs="*", default=list(CLIENTS), choices=list(CLIENTS))
    parser.add_argument(
        "--tests",
        nargs="*",
        default=[r.key for r in ROWS],
        choices=[r.key for r in ROWS],
        help="rows to run (default all)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="counts / 4: less exact, for checking one cell quickly"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="valgrind runs at once (default: cores)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="where each cell's instructions go (no table)"
    )
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (Debian: apt install valgrind)")
    rows = [r for r in ROWS if r.key in args.tests]
    if args.quick:
        rows = [replace(r, small=r.small // 4, big=r.big // 4) for r in rows]
    columns = [c for c in CLIENTS if c in args.clients]

    table: dict[str, dict[str, float]] = {}
    with servers({r.server for r in rows}) as ports:
        if args.profile:
            for r in rows:
                for c in columns:
                    if c in r.clients:
                        profile(c, r, ports[r.server])
            return
        with ThreadPoolExecutor(args.jobs) as pool:
            jobs: dict[tuple[str, str], tuple[Future[int], Future[int]]] = {}
            for r in rows:  # all at once, so that the pool never idles between rows
                for c in columns:
                    if c in r.clients:
                        jobs[r.key, c] = (
                            pool.submit(count, c, r, ports[r.server], r.small),
                            pool.submit(count, c, r, ports[r.server], r.big),
                        )
            for r in rows:
                values = table[r.key] = {}
                for c in columns:
                    if (r.key, c) in jobs:
                        small, big = (job.result() for job in jobs[r.key, c])
                        values[c] = (big - small) / (r.big - r.small)
                cells = " | ".join(f"{c}: {cell(v)}" for c, v in values.items())
                print(f"{r.label:<24} {cells}", flush=True)

    heads = [CLIENTS[c][1] for c in columns]
    print(
        "\n| instructions per message | "
        + " | ".join(heads)
        + " | ClientSocket / websockets.trio | ClientSocket / minimal SocketStream |"
    )
    print("|---|" + "---:|" * (len(columns) + 2))
    for r in rows:
        values = table[r.key]
        row_cells = [cell(values.get(c)) for c in columns]
        print(
            f"| {r.label} | "
            + " | ".join(row_cells)
            + f" | {ratio(values, PEER)} | {ratio(values, FLOOR)} |"
        )


if __name__ == "__main__":
    main()
