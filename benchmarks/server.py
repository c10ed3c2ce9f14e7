"""The benchmark server: asyncio + websockets, in its own process, never the bottleneck.

Bulk sends are written as pre-built frames straight to the transport, so that the
server spends almost nothing per message. Commands (one text message each):

- ``push N SIZE``: send N text messages of SIZE bytes, then the text ``end``;
- ``pull N``: read N messages, then send ``done``;
- ``echo``: echo every later message;
- anything else: nothing (an idle connection).

Run: ``python benchmarks/server.py PORT [--deflate]`` (prints ``ready PORT`` when
listening). With ``--deflate`` it negotiates permessage-deflate (websockets'
server defaults) and ``push`` sends compressed GeneXus notifications.
"""

from __future__ import annotations

import asyncio
import sys

from websockets.asyncio.server import ServerConnection, serve


def text_frame(payload: bytes) -> bytes:
    """An unmasked (server) text frame."""
    n = len(payload)
    if n < 126:
        header = bytes([0x81, n])
    elif n < 65536:
        header = bytes([0x81, 126]) + n.to_bytes(2, "big")
    else:
        header = bytes([0x81, 127]) + n.to_bytes(8, "big")
    return header + payload


DEFLATE = "--deflate" in sys.argv


def notification(index: int, size: int) -> str:
    """A GeneXus NotificationInfo of about ``size`` bytes: JSON, repetitive, as
    real notifications are (what compression is for)."""
    body = f'{{"Id": "{index}", "Object": "Chat", "Message": "'
    return body + ("hello, world " * (size // 13 + 1))[: max(0, size - len(body) - 2)] + '"}'


async def push(ws: ServerConnection, count: int, size: int) -> None:
    if DEFLATE:  # compressed frames: through the protocol, one by one
        for index in range(count):
            await ws.send(notification(index, size))
        await ws.send("end")
        return
    frame = text_frame(b"x" * size)
    per_write = max(1, (1 << 20) // len(frame))  # about 1 MiB per write
    transport = ws.transport
    sent = 0
    while sent < count:
        batch = min(per_write, count - sent)
        transport.write(frame * batch)
        sent += batch
        await ws.drain()  # asyncio's flow control: wait while the buffer is high
    await ws.send("end")


async def handler(ws: ServerConnection) -> None:
    try:
        command = str(await ws.recv()).split()
        if command[0] == "push":
            await push(ws, int(command[1]), int(command[2]))
            await ws.wait_closed()
        elif command[0] == "pull":
            for _ in range(int(command[1])):
                await ws.recv()
            await ws.send("done")
            await ws.wait_closed()
        elif command[0] == "echo":
            async for message in ws:
                await ws.send(message)
        else:
            await ws.wait_closed()
    except Exception:  # a client that went away mid-test: nothing to do
        return


async def main(port: int) -> None:
    async with serve(
        handler,
        "127.0.0.1",
        port,
        compression="deflate" if DEFLATE else None,
        max_size=None,
        max_queue=None,
        ping_interval=None,
        backlog=4096,
    ) as server:
        bound = server.sockets[0].getsockname()[1]
        print(f"ready {bound}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 0))
