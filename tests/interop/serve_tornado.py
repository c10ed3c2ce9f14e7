# mypy: disable-error-code="import-not-found", allow-subclassing-any
"""Interop server: tornado's WebSocketHandler, permessage-deflate offered
(``get_compression_options`` returns ``{}``, tornado's documented switch).

Run: ``python -m tests.interop.serve_tornado [--port PORT]``; see ``protocol``.
"""

from __future__ import annotations

import asyncio
import contextlib

from tornado.httpserver import HTTPServer
from tornado.web import Application
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from . import protocol

tally = protocol.Tally("tornado")


class Handler(WebSocketHandler):
    number = 0
    closing = False

    def get_compression_options(self) -> dict[str, object]:
        return {}

    def open(self, *args: str, **kwargs: str) -> None:
        self.number = tally.connected()

    async def on_message(self, message: str | bytes) -> None:
        with contextlib.suppress(WebSocketClosedError):
            await self.answer(message)

    async def answer(self, message: str | bytes) -> None:
        command = protocol.parse(message)
        if command is None:
            await self.write_message(message, binary=isinstance(message, bytes))
            return
        name, args = command
        if name == "close":
            self.closing = True
            self.close(args[0])
        elif name == "flood":
            for i in range(args[0]):
                await self.write_message(protocol.flood_message(i, args[1]))
        elif name == "notify":
            await self.write_message(protocol.notification(tally.server, self.number))
        elif name == "ping":
            # tornado reads no frame until on_message returns: the client's close waits
            await asyncio.sleep(protocol.HOLD)
            self.ping()
            tally.pings += 1
        else:  # stats; tornado keeps its compressor private
            connection = self.ws_connection
            compressor = getattr(connection, "_compressor", None)
            await self.write_message(tally.report(self.number, compressed=compressor is not None))

    def on_pong(self, data: bytes) -> None:
        tally.pongs += 1

    def on_close(self) -> None:
        if not self.closing:
            tally.closed(self.number, self.close_code)


async def main() -> None:
    options = protocol.arguments(__doc__ or "")
    app = Application([(r"/.*", Handler)], websocket_max_message_size=protocol.MAX_SIZE)
    sock = protocol.listening_socket(options.port)
    HTTPServer(app).add_sockets([sock])
    protocol.ready(sock)
    await asyncio.Future()  # until killed


if __name__ == "__main__":
    asyncio.run(main())
