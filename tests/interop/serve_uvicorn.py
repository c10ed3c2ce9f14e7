# mypy: disable-error-code="import-not-found"
"""Interop server: a Starlette app on uvicorn (its default WebSocket
implementation, websockets' sans-I/O one, with permessage-deflate on by default).

ASGI gives the application no way to send a ping, nor to see the extensions
negotiated: ``ping`` answers an error text, and ``stats`` reports
``compressed: null`` (with the client's offer, as the request carried it).

Run: ``python -m tests.interop.serve_uvicorn [--port PORT]``; see ``protocol``.
"""

from __future__ import annotations

import asyncio

import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from . import protocol

tally = protocol.Tally("uvicorn")


async def endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    number = tally.connected()
    while True:
        event = await websocket.receive()
        if event["type"] == "websocket.disconnect":
            tally.closed(number, event.get("code"))
            return
        text: str | None = event.get("text")
        message: str | bytes = text if text is not None else event.get("bytes") or b""
        command = protocol.parse(message)
        if command is None:
            if isinstance(message, str):
                await websocket.send_text(message)
            else:
                await websocket.send_bytes(message)
            continue
        name, args = command
        if name == "close":
            await websocket.close(args[0])
            return
        if name == "flood":
            for i in range(args[0]):
                await websocket.send_text(protocol.flood_message(i, args[1]))
        elif name == "notify":
            await websocket.send_text(protocol.notification(tally.server, number))
        elif name == "ping":
            await websocket.send_text("error: ASGI cannot send a ping")
        else:  # stats
            await websocket.send_text(
                tally.report(
                    number,
                    compressed=None,
                    offered=websocket.headers.get("sec-websocket-extensions"),
                    pings=None,
                    pongs=None,
                )
            )


app = Starlette(routes=[WebSocketRoute("/{path:path}", endpoint)])


async def main() -> None:
    options = protocol.arguments(__doc__ or "")
    config = uvicorn.Config(
        app, log_level="warning", lifespan="off", ws_max_size=protocol.MAX_SIZE
    )
    sock = protocol.listening_socket(options.port)
    protocol.ready(sock)  # connections wait in the backlog until uvicorn accepts
    await uvicorn.Server(config).serve(sockets=[sock])


if __name__ == "__main__":
    asyncio.run(main())
