"""CPU instructions per message, counted by valgrind's callgrind: the same number on
every run, however busy the machine, where wall-clock throughput moves by 30 %.

For each client and test, runs ``clients.py`` twice under callgrind with a small
and a larger count, and divides the difference by the difference in count, so that
start-up and connection set-up cancel out. Prints instructions per message (per
round trip for ``rtt``) and the ratio to raw trio-websocket with ClientSocket's
settings. Lower is better. It counts the client's own work (Python, trio, the
protocol), not time in the kernel, which is the same for every client (one send
or receive call per message or batch).

Run: ``python benchmarks/instructions.py`` (needs valgrind; a server is started
as in ``run.py``). About 10 minutes on two cores.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import CLIENTS, LEAN, OURS, PEER, SAME  # noqa: E402

TESTS = [
    ("receive 16 B", "recv", ["16"], 2_000, 6_000),
    ("receive 1 KiB", "recv", ["1024"], 2_000, 6_000),
    ("send 16 B", "send", ["16"], 1_000, 3_000),
    ("send 1 KiB", "send", ["1024"], 1_000, 3_000),
    ("receive 64 KiB", "recv", ["65536"], 200, 600),
    ("send 64 KiB", "send", ["65536"], 200, 600),
    ("round trip", "rtt", [], 300, 900),
]


def count(client: str, test: str, port: int, args: list[str], n: int) -> int:
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            str(HERE / "clients.py"),
            client,
            test,
            str(port),
            *args,
            str(n),
        ],
        capture_output=True,
        text=True,
        timeout=1800,
        check=True,
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    assert found is not None, done.stderr[-500:]
    return int(found.group(1))


def per_message(client: str, test: str, port: int, args: list[str], small: int, big: int) -> float:
    return (count(client, test, port, args, big) - count(client, test, port, args, small)) / (
        big - small
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", nargs="*", default=[SAME, OURS, LEAN, PEER])
    parser.add_argument("--tests", nargs="*", default=None, help="labels to run (default all)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (Debian: apt install valgrind)")
    server = subprocess.Popen(
        [sys.executable, str(HERE / "server.py"), "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline().split()[1])
        with ThreadPoolExecutor(max_workers=2) as pool:
            for label, test, targs, small, big in TESTS:
                if args.tests is not None and label not in args.tests:
                    continue
                jobs = {
                    c: pool.submit(per_message, c, test, port, targs, small, big)
                    for c in args.clients
                }
                values = {c: job.result() for c, job in jobs.items()}
                base = values.get(SAME)
                cells = [
                    f"{c}: {v:,.0f}" + (f" ({v / base:.2f}x)" if base else "")
                    for c, v in values.items()
                ]
                print(f"{label:<14} " + " | ".join(cells), flush=True)
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    assert set(CLIENTS) >= {SAME, OURS, LEAN, PEER}
    main()
