"""Soak and load scripts, on 127.0.0.1 only, bounded in time and count.

- ``soak``: one client, N messages each way, while the server is killed (every
  connection dropped, port closed) and restarted at random moments K times.
  Checks that every message arrived at most once and in order, and that every
  message queued while the server was down arrived exactly once.
- ``flood``: the server sends as fast as it can to a consumer that reads slowly;
  prints the client's RSS over time (it must stay flat: buffers are bounded).
- ``many``: S ClientSockets in one process against a server in another process,
  which is killed and restarted; prints how the reconnects spread over time (the
  randomised backoff at work) and the memory per socket.
- ``frozen``: a server in another process is stopped with SIGSTOP (its kernel
  still takes bytes) while the client sends 0, 20, 100 and 1,000 messages of
  200 B a second, with ``ping_interval=1, ping_timeout=1``; prints how long
  the client took to take the peer for dead (the bound: 2 s).
- ``worst``: the server floods 1 MiB messages (ASCII, then 4-byte emoji) at a
  consumer that never reads; prints the client's peak RSS against the
  documented worst case of the event buffer.

Run: ``python benchmarks/stress.py soak|flood|many|frozen|worst [--quick]``. Exit code 0 when
the checks hold.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time

import trio
import trio.testing

from trio_clientsocket import (
    Backoff,
    ClientSocket,
    Connected,
    ConnectionFailed,
    MessageReceived,
    Status,
)
from trio_clientsocket.testing import ServerConnection, open_mock_server


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# -- soak ----------------------------------------------------------------------------


async def soak(messages: int, restarts: int, seed: int) -> bool:
    rng = random.Random(seed)
    queued_while_down: set[int] = set()
    received_by_client: list[int] = []
    async with open_mock_server() as server:
        port = await server.listen_tcp()
        policy = Backoff(initial=0.05, maximum=0.2, jitter=0.5, rng=random.Random(seed))
        async with (
            ClientSocket(
                f"ws://127.0.0.1:{port}/soak/gxwebsocket?soak",
                reconnect=policy,
                ping_interval=1,
                ping_timeout=1,
                outbox_size=messages,
            ) as sock,
            trio.open_nursery() as nursery,
        ):

            async def client_sender() -> None:
                for i in range(messages):
                    if sock.status is not Status.CONNECTED:
                        queued_while_down.add(i)
                    await sock.send(f"c{i}")
                    if i % 100 == 0:
                        await trio.sleep(0.001)

            async def server_sender() -> None:
                for i in range(messages):
                    for connection in server.open_connections:
                        await connection.send(f"s{i}")
                    if i % 10 == 0:
                        await trio.sleep(0.001)

            async def client_reader() -> None:
                async for event in sock.events():
                    if isinstance(event, MessageReceived) and isinstance(event.message, str):
                        received_by_client.append(int(event.message[1:]))

            async def killer() -> None:
                for _ in range(restarts):
                    await trio.sleep(rng.uniform(0.05, 0.4))
                    await server.stop()
                    await trio.sleep(rng.uniform(0.01, 0.3))
                    await server.start()

            nursery.start_soon(client_reader)
            nursery.start_soon(server_sender)
            async with trio.open_nursery() as work:
                work.start_soon(killer)
                work.start_soon(client_sender)
            with trio.move_on_after(60):
                await sock.wait_sent()
            await trio.sleep(0.5)  # let the server read what is on the wire
            stats = sock.statistics()
            nursery.cancel_scope.cancel()
    got = [int(str(m)[1:]) for m in server.received]
    in_order = got == sorted(got) and len(got) == len(set(got))
    # Losses may only happen at a kill: within one connection, what arrived is a
    # run of consecutive messages. What is missing sits between two connections:
    # written into a connection that died before the server read it (no
    # WebSocket client can know), or reported Undelivered (in flight).
    runs = [[int(str(m)[1:]) for m in c.received] for c in server.connections]
    gapless = all(r == list(range(r[0], r[0] + len(r))) for r in runs if r)
    lost = messages - len(got)
    missing_queued = queued_while_down - set(got)
    client_in_order = received_by_client == sorted(received_by_client) and len(
        received_by_client
    ) == len(set(received_by_client))
    print(
        f"client -> server: {messages} sent, {len(got)} arrived, {stats.messages_dropped} "
        f"reported undelivered (in flight at a kill), {len(queued_while_down)} queued while down"
    )
    print(
        f"  at most once, in order: {in_order}; losses only at kills: {gapless}; "
        f"lost at a kill: {lost} ({stats.messages_dropped} of them reported in flight), "
        f"{len(missing_queued)} of them queued while down and written just before a kill"
    )
    print(
        f"server -> client: {len(received_by_client)} of {messages} arrived (the server drops "
        f"what it sends while the client is away); at most once, in order: {client_in_order}"
    )
    print(f"restarts: {restarts}, reconnects: {stats.reconnects}, attempts: {stats.attempts}")
    return in_order and gapless and client_in_order


# -- flood ---------------------------------------------------------------------------


async def flood(seconds: float) -> bool:
    samples = []
    async with open_mock_server() as server:
        port = await server.listen_tcp()
        async with ClientSocket(f"ws://127.0.0.1:{port}/flood") as sock, trio.open_nursery() as n:
            connection = await server.wait_connections(1)
            payload = "f" * 1024

            async def firehose() -> None:
                while True:
                    await connection.send(payload)

            async def slow_reader() -> None:
                async for _ in sock.events():
                    await trio.sleep(0.002)

            n.start_soon(firehose)
            n.start_soon(slow_reader)
            start = trio.current_time()
            while trio.current_time() - start < seconds:
                await trio.sleep(1)
                samples.append(rss_mib())
                print(
                    f"t={trio.current_time() - start:4.1f}s  client RSS {samples[-1]:7.1f} MiB  "
                    f"received {sock.statistics().messages_received}",
                    flush=True,
                )
            n.cancel_scope.cancel()
    growth = samples[-1] - samples[len(samples) // 3]
    print(f"RSS growth over the last two thirds: {growth:+.1f} MiB")
    return growth < 5


# -- many ----------------------------------------------------------------------------


def start_server(port: int) -> subprocess.Popen[str]:
    code = (
        "import trio, sys\n"
        "from trio_clientsocket.testing import open_mock_server\n"
        "async def main():\n"
        "    async with open_mock_server() as s:\n"
        f"        await s.listen_tcp('127.0.0.1', {port})\n"
        "        print('ready', flush=True)\n"
        "        await trio.sleep_forever()\n"
        "trio.run(main)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


async def many(sockets: int, limit: int) -> bool:
    import socket as stdlib_socket

    with stdlib_socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = start_server(port)
    before = rss_mib()
    reconnected: list[float] = []
    try:
        limiter = trio.CapacityLimiter(limit) if limit else None
        async with trio.open_nursery() as nursery:

            async def hold(i: int, *, task_status: trio.TaskStatus[ClientSocket]) -> None:
                # one task per socket: 10,000 nested `async with` would nest
                # 10,000 cancel scopes, deeper than Python's recursion limit
                url = f"ws://127.0.0.1:{port}/many/gxwebsocket?c{i}"
                policy = Backoff(initial=1.0, jitter=0.5)
                async with ClientSocket(url, reconnect=policy, connect_limiter=limiter) as sock:
                    task_status.started(sock)
                    await trio.sleep_forever()

            socks = [await nursery.start(hold, i) for i in range(sockets)]
            with trio.fail_after(120):
                for sock in socks:
                    await sock.wait_connected()
            per_socket = (rss_mib() - before) * 1024 / sockets
            print(f"{sockets} sockets connected; memory {per_socket:.1f} KiB per socket")
            killed_at: float | None = None

            async def watch(sock: ClientSocket) -> None:
                async for event in sock.events():
                    if isinstance(event, Connected) and killed_at is not None:
                        reconnected.append(trio.current_time() - killed_at)
                        return
                    if isinstance(event, ConnectionFailed) and event.retry_in is None:
                        return

            with trio.move_on_after(300):
                async with trio.open_nursery() as watchers:
                    for sock in socks:
                        watchers.start_soon(watch, sock)
                    await trio.testing.wait_all_tasks_blocked()  # initial events read
                    server.kill()
                    killed_at = trio.current_time()
                    await trio.to_thread.run_sync(server.wait)
                    server = await trio.to_thread.run_sync(start_server, port)
                    print(f"server back after {trio.current_time() - killed_at:.2f} s")
                    while len(reconnected) < sockets:
                        await trio.sleep(10)
                        print(
                            f"  t+{trio.current_time() - killed_at:.0f} s: "
                            f"{len(reconnected)} reconnected",
                            flush=True,
                        )
            nursery.cancel_scope.cancel()
    finally:
        server.kill()
        server.wait()
    reconnected.sort()
    if not reconnected:
        print("none reconnected")
        return False
    deciles = [reconnected[int(len(reconnected) * q / 10)] for q in range(10)] + [reconnected[-1]]
    print(f"{len(reconnected)} of {sockets} reconnected after the restart")
    print("reconnect time after the kill, deciles (s): " + " ".join(f"{d:.2f}" for d in deciles))
    buckets = [0] * 10
    for t in reconnected:
        buckets[min(9, int(t / max(reconnected[-1], 1e-9) * 10))] += 1
    print("spread: " + " ".join(str(b) for b in buckets))
    print(f"median {statistics.median(reconnected):.2f} s")
    return len(reconnected) == sockets


# -- frozen -----------------------------------------------------------------------


async def frozen(rates: list[int], rounds: int) -> bool:
    import signal
    import socket as stdlib_socket

    from trio_clientsocket import KeepaliveTimeout

    ok = True
    for rate in rates:
        taken = []
        for index in range(rounds):
            with stdlib_socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            server = start_server(port)
            try:
                async with ClientSocket(
                    f"ws://127.0.0.1:{port}/x", ping_interval=1, ping_timeout=1
                ) as sock, trio.open_nursery() as nursery:
                    await sock.wait_connected()

                    async def sender(rate: int) -> None:
                        while rate:
                            await sock.send("s" * 200)
                            await trio.sleep(1 / rate)

                    nursery.start_soon(sender, rate)
                    await trio.sleep((0.3, 1.1, 1.7)[index % 3])  # at each phase of keepalive
                    server.send_signal(signal.SIGSTOP)
                    stopped = trio.current_time()
                    with trio.move_on_after(60):
                        async for event in sock.events():
                            if isinstance(event, ConnectionFailed):
                                assert isinstance(event.error, KeepaliveTimeout), event.error
                                break
                    taken.append(trio.current_time() - stopped)
                    nursery.cancel_scope.cancel()
            finally:
                server.send_signal(signal.SIGCONT)
                server.kill()
                server.wait()
        worst = max(taken)
        ok &= worst <= 2.2
        print(
            f"{rate:5} msg/s of 200 B: detected after "
            + ", ".join(f"{t:.2f}" for t in taken)
            + f" s (worst {worst:.2f} s)",
            flush=True,
        )
    return ok


# -- worst ------------------------------------------------------------------------


async def worst(seconds: float) -> bool:
    ok = True
    size = 2**20
    for name, text in (("ASCII", "a" * size), ("emoji", "\U0001f600" * (size // 4))):
        base = rss_mib()
        peak = base
        async with open_mock_server() as server:
            port = await server.listen_tcp()
            async with ClientSocket(
                f"ws://127.0.0.1:{port}/worst", max_message_size=size
            ) as sock, trio.open_nursery() as n:
                connection = await server.wait_connections(1)

                async def firehose(connection: ServerConnection, text: str) -> None:
                    while True:
                        await connection.send(text)

                n.start_soon(firehose, connection, text)
                start = trio.current_time()
                while trio.current_time() - start < seconds:
                    await trio.sleep(0.25)
                    peak = max(peak, rss_mib())
                stats = sock.statistics()
                n.cancel_scope.cancel()
        bound = (8 * 2**20 + size) / 2**20  # buffer_bytes + one message
        grew = peak - base
        print(
            f"{name:5}: {stats.events_buffered} events buffered, client RSS grew by "
            f"{grew:.1f} MiB (event buffer bound {bound:.0f} MiB, plus the server's "
            "unsent queue in this same process and the kernel buffers)",
            flush=True,
        )
        ok &= grew < 4 * bound
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["soak", "flood", "many", "frozen", "worst"])
    parser.add_argument("--quick", action="store_true", help="smaller counts")
    parser.add_argument("--sockets", type=int, default=0, help="for many: how many sockets")
    parser.add_argument(
        "--limit", type=int, default=100, help="for many: attempts at once (0: no limiter)"
    )
    args = parser.parse_args()
    start = time.perf_counter()
    if args.what == "soak":
        ok = trio.run(soak, 10_000 if args.quick else 100_000, 10 if args.quick else 50, 1)
    elif args.what == "flood":
        ok = trio.run(flood, 6.0 if args.quick else 20.0)
    elif args.what == "frozen":
        ok = trio.run(frozen, [0, 20, 100, 1000], 1 if args.quick else 3)
    elif args.what == "worst":
        ok = trio.run(worst, 3.0 if args.quick else 10.0)
    else:
        ok = trio.run(many, args.sockets or (1000 if args.quick else 10_000), args.limit)
    print(f"{'OK' if ok else 'FAILED'} in {time.perf_counter() - start:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
