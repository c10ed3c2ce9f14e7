# mypy: disable-error-code="import-not-found"
"""Interop server: a plain ASGI application (no framework) on hypercorn's trio
worker (what ``hypercorn --worker-class trio`` runs), with wsproto underneath and
permessage-deflate offered (hypercorn's default).

ASGI gives the application no way to send a ping, nor to see the extensions
negotiated: ``ping`` answers an error text, and ``stats`` reports
``compressed: null`` (with the client's offer, as the request carried it).

Run: ``python -m tests.interop.serve_hypercorn [--port PORT]``; see ``protocol``.
"""

from __future__ import annotations

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope, WebsocketScope

from . import protocol

tally = protocol.Tally("hypercorn")


async def app(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    if scope["type"] == "lifespan":
        while True:
            event = await receive()
            if event["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif event["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    elif scope["type"] == "websocket":
        await websocket(scope, receive, send)
    else:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def websocket(
    scope: WebsocketScope, receive: ASGIReceiveCallable, send: ASGISendCallable
) -> None:
    offered = dict(scope["headers"]).get(b"sec-websocket-extensions")
    if (await receive())["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept", "subprotocol": None, "headers": []})
    number = tally.connected()

    async def send_text(text: str) -> None:
        await send({"type": "websocket.send", "text": text, "bytes": None})

    while True:
        event = await receive()
        if event["type"] == "websocket.disconnect":
            tally.closed(number, event["code"])
            return
        if event["type"] != "websocket.receive":
            continue
        text = event.get("text")
        message: str | bytes = text if text is not None else event.get("bytes") or b""
        command = protocol.parse(message)
        if command is None:
            if isinstance(message, str):
                await send_text(message)
            else:
                await send({"type": "websocket.send", "text": None, "bytes": message})
            continue
        name, args = command
        if name == "close":
            await send({"type": "websocket.close", "code": args[0], "reason": None})
            return
        if name == "flood":
            for i in range(args[0]):
                await send_text(protocol.flood_message(i, args[1]))
        elif name == "notify":
            await send_text(protocol.notification(tally.server, number))
        elif name == "ping":
            await send_text("error: ASGI cannot send a ping")
        else:  # stats
            await send_text(
                tally.report(
                    number,
                    compressed=None,
                    offered=offered.decode() if offered is not None else None,
                    pings=None,
                    pongs=None,
                )
            )


async def main() -> None:
    options = protocol.arguments(__doc__ or "")
    sock = protocol.listening_socket(options.port)
    config = Config()
    config.bind = [f"fd://{sock.fileno()}"]
    config.worker_class = "trio"
    config.websocket_max_message_size = protocol.MAX_SIZE
    config.loglevel = "WARNING"
    async with trio.open_nursery() as nursery:
        await nursery.start(serve, app, config)
        protocol.ready(sock)


if __name__ == "__main__":
    trio.run(main)
