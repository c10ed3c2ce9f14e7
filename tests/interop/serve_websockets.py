"""Interop server: websockets' asyncio server, permessage-deflate on (its default).

Run: ``python -m tests.interop.serve_websockets [--port PORT]``; see ``protocol``.
"""

from __future__ import annotations

import asyncio

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from . import protocol

tally = protocol.Tally("websockets")


def pong_seen(waiter: asyncio.Future[float]) -> None:
    if not waiter.cancelled() and waiter.exception() is None:
        tally.pongs += 1


async def handler(ws: ServerConnection) -> None:
    number = tally.connected()
    closing = False
    try:
        async for message in ws:
            command = protocol.parse(message)
            if command is None:
                await ws.send(message)
                continue
            name, args = command
            if name == "close":
                closing = True
                await ws.close(args[0])
            elif name == "flood":
                for i in range(args[0]):
                    await ws.send(protocol.flood_message(i, args[1]))
            elif name == "notify":
                await ws.send(protocol.notification(tally.server, number))
            elif name == "ping":
                ws.transport.pause_reading()  # the client's close waits in the kernel
                await asyncio.sleep(protocol.HOLD)
                waiter = await ws.ping()
                tally.pings += 1
                asyncio.ensure_future(waiter).add_done_callback(pong_seen)
                ws.transport.resume_reading()
            else:  # stats
                extensions = [e.name for e in ws.protocol.extensions]
                await ws.send(
                    tally.report(
                        number,
                        compressed="permessage-deflate" in extensions,
                        extensions=ws.response.headers.get("Sec-WebSocket-Extensions")
                        if ws.response is not None
                        else None,
                    )
                )
    except ConnectionClosed:
        pass
    finally:
        if not closing:
            received = ws.protocol.close_rcvd
            tally.closed(number, received.code if received is not None else None)


async def main() -> None:
    options = protocol.arguments(__doc__ or "")
    sock = protocol.listening_socket(options.port)
    async with serve(handler, sock=sock, max_size=protocol.MAX_SIZE):
        protocol.ready(sock)
        await asyncio.Future()  # until killed


if __name__ == "__main__":
    asyncio.run(main())
