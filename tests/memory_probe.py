"""A ClientSocket in a process of its own, for measuring the memory it holds:
peak RSS growth (``ru_maxrss``) from before it connects until it has taken
all it will take. Run by tests/test_memory_bound.py against a server in the
test's process; prints one JSON line.

    python tests/memory_probe.py PORT --mode never|reads --count N [--transport T]

``never``: the application reads the Connected event and nothing more, and the
probe measures once every task is blocked (the reader paused on the full
buffer). ``reads``: the application reads ``count`` messages, checking each.
"""

from __future__ import annotations

import argparse
import json

import trio
import trio.testing

from trio_clientsocket import ClientSocket, Connected, MessageReceived


def status_kib(field: str) -> int:
    """A field of /proc/self/status, in KiB (``ru_maxrss`` would not do: Linux
    carries it over exec, from the process that started this one)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/self/status")


async def main(args: argparse.Namespace) -> dict[str, object]:
    url = f"ws://127.0.0.1:{args.port}/"
    sock = ClientSocket(
        url, transport=args.transport, reconnect=None, ping_interval=None, ping_timeout=None
    )
    before = status_kib("VmRSS")
    received = 0
    async with sock:
        async for event in sock.events():
            if isinstance(event, Connected):
                break
            raise AssertionError(f"not connected: {event!r}")
        if args.mode == "reads":
            events = sock.events()
            while received < args.count:
                event = await events.receive()
                assert isinstance(event, MessageReceived), repr(event)
                assert len(event.message) == args.size
                received += 1
                del event  # what the application holds is not the socket's
        else:
            # the reader fills the buffer and pauses: wait until nothing moves
            seen = -1
            for _ in range(100):
                await trio.testing.wait_all_tasks_blocked(cushion=0.05)
                now = sock.statistics().bytes_received
                if now == seen:
                    break
                seen = now
        stats = sock.statistics()
        after = status_kib("VmHWM")
        await sock.close()
    return {
        "growth_kib": after - before,
        "received": received,
        "buffered": stats.events_buffered,
        "bytes_received": stats.bytes_received,
        "compressed": stats.compressed,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--mode", choices=("never", "reads"), required=True)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--size", type=int, default=2**20)
    parser.add_argument("--transport", default="websockets")
    print(json.dumps(trio.run(main, parser.parse_args())))
