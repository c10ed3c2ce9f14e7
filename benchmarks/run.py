"""Benchmark ClientSocket against raw trio-websocket and websockets.trio, in one run.

Starts ``server.py`` in its own process, runs every measurement of ``clients.py``
in a fresh process per client, repeats each ``--runs`` times, prints a table of
medians with ratios to raw trio-websocket, and writes ``benchmarks/results.json``
and a plot, ``docs/performance.png``.

Run: ``python benchmarks/run.py`` (``--quick`` for a short run; needs the
``bench`` extra: ``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RAW = "trio-websocket (defaults)"
SAME = "trio-websocket (ClientSocket's settings)"
OURS = "ClientSocket"
LEAN = "ClientSocket (wsproto engine)"
TW = "ClientSocket (trio-websocket transport)"
PEER = "websockets.trio"
LIMIT = "picows (asyncio, Cython)"
CLIENTS = [RAW, SAME, OURS, LEAN, TW, PEER, LIMIT]


def tests(quick: bool) -> list[tuple[str, str, list[str], str]]:
    """(label, test, args, key): what to measure, and which number to report."""
    scale = 4 if quick else 1
    return [
        ("receive 16 B (msg/s)", "recv", ["16", str(100_000 // scale)], "msgs_per_s"),
        ("receive 1 KiB (msg/s)", "recv", ["1024", str(50_000 // scale)], "msgs_per_s"),
        ("receive 64 KiB (MB/s)", "recv", ["65536", str(2_000 // scale)], "mb_per_s"),
        ("send 16 B (msg/s)", "send", ["16", str(50_000 // scale)], "msgs_per_s"),
        ("send 1 KiB (msg/s)", "send", ["1024", str(30_000 // scale)], "msgs_per_s"),
        ("send 64 KiB (MB/s)", "send", ["65536", str(1_000 // scale)], "mb_per_s"),
        ("round trip median (us)", "rtt", [str(3_000 // scale)], "median_us"),
        ("round trip p99 (us)", "rtt", [str(3_000 // scale)], "p99_us"),
        ("connect (us)", "connect", [str(200 // scale)], "median_us"),
        ("memory, 1,000 idle (KiB/socket)", "memory", ["1000"], "kib_per_socket"),
        ("memory, 10,000 idle (KiB/socket)", "memory", ["10000"], "kib_per_socket"),
        ("CPU, 1,000 idle for 10 s (ms)", "idle_cpu", ["1000", "10.0"], "cpu_ms"),
    ]


LOWER_IS_BETTER = ("us)", "KiB/socket)", "(ms)")


def _pin(cpu: int) -> Callable[[], None] | None:
    """Pin a child process to one core (server on one, clients on the other), so
    that the two never compete and runs are steadier; no-op on one core."""
    if not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def measure(client: str, test: str, port: int, args: list[str]) -> dict[str, float] | None:
    done = subprocess.run(
        [sys.executable, str(HERE / "clients.py"), client, test, str(port), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        preexec_fn=_pin(1),
    )
    if done.returncode != 0:
        print(f"  ! {client} {test} failed: {done.stderr.strip().splitlines()[-1:]}")
        return None
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="repetitions (median reported)")
    parser.add_argument("--quick", action="store_true", help="smaller counts, 1 run, no 10k")
    parser.add_argument("--clients", nargs="*", default=CLIENTS, help="which clients")
    args = parser.parse_args()
    runs = 1 if args.quick else args.runs
    plan = tests(args.quick)
    if args.quick:
        plan = [t for t in plan if "10,000" not in t[0]]

    server = subprocess.Popen(
        [sys.executable, str(HERE / "server.py"), "0"],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=_pin(0),
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline().split()[1])
        results: dict[str, dict[str, float | None]] = {}
        rtt_cache: dict[tuple[str, int], dict[str, float] | None] = {}
        for label, test, targs, key in plan:
            values: dict[str, list[float]] = {client: [] for client in args.clients}
            # Runs interleave the clients, so that a slow spell of the machine
            # affects all of them alike rather than one client's every run.
            for run in range(runs):
                for client in args.clients:
                    if test == "rtt":  # one measurement gives median and p99
                        cached = rtt_cache.get((client, run))
                        if cached is None:
                            cached = rtt_cache[client, run] = measure(client, test, port, targs)
                        result = cached
                    else:
                        result = measure(client, test, port, targs)
                    if result is not None:
                        values[client].append(result[key])
            results[label] = {
                client: statistics.median(got) if got else None for client, got in values.items()
            }
            print(row(label, results[label], args.clients), flush=True)
    finally:
        server.terminate()
        server.wait()

    out = HERE / "results.json"
    out.write_text(json.dumps({"runs": runs, "results": results}, indent=2))
    print(f"\nwrote {out.relative_to(ROOT)}")
    plot(results, args.clients, ROOT / "docs" / "performance.png")


def row(label: str, values: dict[str, float | None], clients: list[str]) -> str:
    base = values.get(SAME) if "ClientSocket" in " ".join(clients) else None
    cells = []
    for client in clients:
        value = values.get(client)
        if value is None:
            cells.append(f"{client}: -")
            continue
        ratio = f" ({value / base:.2f}x)" if base else ""
        cells.append(f"{client}: {value:,.1f}{ratio}")
    return f"{label:<34} " + " | ".join(cells)


def plot(results: dict[str, dict[str, float | None]], clients: list[str], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    labels = list(results)
    fig, axes = plt.subplots(len(labels) // 3 + (len(labels) % 3 > 0), 3, figsize=(15, 13))
    for ax, label in zip(axes.flat, labels, strict=False):
        values = [results[label].get(c) or 0 for c in clients]
        colors = ["#999", "#bbb", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#d62728"]
        ax.barh(range(len(clients)), values, color=colors[: len(clients)])
        ax.set_yticks(range(len(clients)), [c.replace(" (", "\n(") for c in clients], fontsize=7)
        better = "lower is better" if label.endswith(LOWER_IS_BETTER) else "higher is better"
        ax.set_title(f"{label}\n{better}", fontsize=9)
        ax.invert_yaxis()
    for ax in list(axes.flat)[len(labels) :]:
        ax.axis("off")
    fig.suptitle("trio-clientsocket vs raw trio-websocket and websockets.trio (loopback, medians)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
