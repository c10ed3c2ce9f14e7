"""How long ``connect`` takes to send 40 MB of standard input: as one line, and
as 400 lines of 100 kB (issue 19, item 15: reading one long line was quadratic).

Starts the testing kit's server on 127.0.0.1, runs ``python -m
trio_clientsocket connect`` with the input in a file, and prints the wall time
from start to exit (median of ``--runs``), after checking that every byte
arrived.

Run: ``python benchmarks/cli_long_line.py`` (``--mb 40 --runs 3`` by default).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

from trio_clientsocket.testing import open_mock_server

ROOT = Path(__file__).resolve().parent.parent


async def send_file(path: Path, lines: int, size: int) -> float:
    async with open_mock_server() as server:
        port = await server.listen_tcp()
        start = time.perf_counter()
        with path.open("rb") as stdin:
            done = await trio.run_process(
                [sys.executable, "-m", "trio_clientsocket", "connect", f"ws://127.0.0.1:{port}/x"],
                stdin=stdin,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                cwd=ROOT,
            )
        took = time.perf_counter() - start
        assert done.returncode == 0, done.stderr
        await server.wait_for(lambda: len(server.received) == lines)
        assert sum(len(m) for m in server.received) == size - lines
    return took


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=40)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    size = args.mb * 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        for lines in (1, 400):
            path = Path(tmp) / f"{lines}.txt"
            line = b"x" * (size // lines - 1) + b"\n"
            path.write_bytes(line * lines)
            times = [await send_file(path, lines, len(line) * lines) for _ in range(args.runs)]
            print(f"{args.mb} MB as {lines} line(s): {statistics.median(times):.2f} s")


if __name__ == "__main__":
    trio.run(main)
