"""The benchmark server: asyncio + websockets (or picows), in its own process, never
the bottleneck.

Bulk sends are written as pre-built frames straight to the transport, so that the
server spends almost nothing per message. Commands (one text message each):

- ``push N SIZE``: send N text messages of SIZE bytes, then the text ``end``;
- ``pull N``: read N messages, then send ``done``;
- ``echo``: echo every later message;
- anything else: nothing (an idle connection).

Run: ``python benchmarks/server.py PORT [--deflate | --picows]`` (prints ``ready
PORT`` when listening). With ``--deflate`` it negotiates permessage-deflate
(websockets' server defaults) and ``push`` sends compressed GeneXus notifications.
With ``--picows`` it is the same server on picows (asyncio, Cython), which offers
no compression: the fastest Python server there is, so that less of the machine
goes to the server.
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
PER_WRITE = 1 << 20  # bytes of pre-built frames per write


def notification(index: int, size: int) -> str:
    """A GeneXus NotificationInfo of ``size`` characters (>= 2): JSON, repetitive,
    as real notifications are (what compression is for); cut short below 40."""
    body = f'{{"Id": "{index}", "Object": "Chat", "Message": "' + "hello, world " * (size // 13)
    return body[: size - 2] + '"}'


async def push(ws: ServerConnection, count: int, size: int) -> None:
    if DEFLATE:  # compressed frames: through the protocol, one by one
        for index in range(count):
            await ws.send(notification(index, size))
        await ws.send("end")
        return
    frame = text_frame(b"x" * size)
    per_write = max(1, PER_WRITE // len(frame))
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


async def picows_main(port: int) -> None:
    """The same commands on picows: its callbacks run in the event loop, no task
    per connection."""
    from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

    class Handler(WSListener):
        def __init__(self) -> None:
            self.transport: WSTransport
            self.mode = ""  # "", "push", "pull", "echo" or "idle"
            self.left = 0  # frames to push, or messages to pull
            self.frame = b""
            self.paused = False

        def on_ws_connected(self, transport: WSTransport) -> None:
            self.transport = transport

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            kind = frame.msg_type
            if kind == WSMsgType.CLOSE:  # the close handshake: answer, then close TCP
                code = frame.get_close_code()
                transport.send_close(WSCloseCode.OK if code == WSCloseCode.NO_INFO else code)
                transport.disconnect()
                self.left = 0
                return
            if kind not in (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION):
                return  # picows answers pings itself
            if not frame.fin:  # count messages, not frames
                return
            if self.mode == "pull":
                self.left -= 1
                if self.left == 0:
                    transport.send(WSMsgType.TEXT, b"done")
            elif self.mode == "echo":
                transport.send(kind, frame.get_payload_as_bytes())
            elif not self.mode:
                command = frame.get_payload_as_ascii_text().split()
                self.mode = command[0] if command[0] in ("push", "pull", "echo") else "idle"
                if self.mode == "push":
                    self.left = int(command[1])
                    self.frame = text_frame(b"x" * int(command[2]))
                    self.pump()
                elif self.mode == "pull":
                    self.left = int(command[1])

        def pump(self) -> None:
            """Write pre-built frames while the transport takes them."""
            write = self.transport.underlying_transport.write
            per_write = max(1, PER_WRITE // len(self.frame))
            while self.left > 0 and not self.paused:
                batch = min(per_write, self.left)
                self.left -= batch
                write(self.frame * batch)  # may call pause_writing()
                if self.left == 0:
                    self.transport.send(WSMsgType.TEXT, b"end")

        def pause_writing(self) -> None:
            self.paused = True

        def resume_writing(self) -> None:
            self.paused = False
            if self.mode == "push":
                self.pump()

        def on_ws_disconnected(self, transport: WSTransport) -> None:
            self.left = 0

    server = await ws_create_server(
        lambda request: Handler(), "127.0.0.1", port, max_frame_size=1 << 30, backlog=4096
    )
    async with server:
        print(f"ready {server.sockets[0].getsockname()[1]}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    PORT = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 0
    asyncio.run(picows_main(PORT) if "--picows" in sys.argv else main(PORT))
