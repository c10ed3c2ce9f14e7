"""What permessage-deflate costs and saves, against a compressing server (the
benchmark server with ``--deflate``: websockets' server defaults).

For ClientSocket with its default ``Deflate()``, ClientSocket offering no
compression, and websockets.trio with and without ``compression="deflate"``:
memory per idle socket (1,000 sockets), receive and send throughput of 1 KiB
GeneXus notifications (JSON), and, for ClientSocket, the bytes on the wire per
message. Medians of ``--runs``, each measurement in a fresh process.

Run: ``python benchmarks/compression.py`` (needs the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import trio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import measure  # noqa: E402

CLIENTS = [
    "ClientSocket",
    "ClientSocket (no compression offered)",
    "websockets.trio (deflate)",
    "websockets.trio",
]
TESTS = [
    ("memory, 1,000 idle (KiB/socket)", "memory", ["1000"], "kib_per_socket"),
    ("receive 1 KiB notifications (msg/s)", "recv", ["1024", "20000"], "msgs_per_s"),
    ("send 1 KiB (msg/s)", "send", ["1024", "20000"], "msgs_per_s"),
]


async def wire_bytes(port: int, count: int, size: int) -> tuple[float, bool]:
    """Bytes ClientSocket reads per pushed notification, and whether it compressed."""
    from trio_clientsocket import ClientSocket, MessageReceived

    async with ClientSocket(f"ws://127.0.0.1:{port}/bench") as sock:
        await sock.wait_connected()
        before = sock.statistics().bytes_received
        await sock.send(f"push {count} {size}")
        got = 0
        async for event in sock.events():
            if isinstance(event, MessageReceived):
                if event.message == "end":
                    break
                got += 1
        stats = sock.statistics()
    return (stats.bytes_received - before) / got, stats.compressed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    server = subprocess.Popen(
        [sys.executable, str(HERE / "server.py"), "0", "--deflate"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline().split()[1])
        per_message, compressed = trio.run(wire_bytes, port, 2000, 1024)
        print(
            f"bytes on the wire per 1 KiB notification: {per_message:.0f} "
            f"(compressed: {compressed})"
        )
        results = {}
        for label, test, targs, key in TESTS:
            values: dict[str, list[float]] = {c: [] for c in CLIENTS}
            for _ in range(args.runs):
                for client in CLIENTS:
                    result = measure(client, test, port, targs)
                    if result is not None:
                        values[client].append(result[key])
            row = {c: statistics.median(v) if v else None for c, v in values.items()}
            results[label] = row
            cells = " | ".join(f"{c}: {v:,.1f}" if v else f"{c}: -" for c, v in row.items())
            print(f"{label:<38} {cells}", flush=True)
    finally:
        server.terminate()
        server.wait()
    (HERE / "compression.json").write_text(
        json.dumps({"wire_bytes_per_message": per_message, "results": results}, indent=2)
    )


if __name__ == "__main__":
    main()
