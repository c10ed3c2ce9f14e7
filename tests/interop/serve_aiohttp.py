# mypy: disable-error-code="import-not-found"
"""Interop server: aiohttp, either with ``--heartbeat`` (its heartbeat at 1 s,
no compression) or with ``--compress`` (``compress=True``, no heartbeat).

Run: ``python -m tests.interop.serve_aiohttp [--port PORT] [--heartbeat] [--compress]``;
see ``protocol``.
"""

from __future__ import annotations

import asyncio

from aiohttp import WSMsgType, web

from . import protocol

OPTIONS = protocol.arguments(__doc__ or "", "heartbeat", "compress")
tally = protocol.Tally("aiohttp-heartbeat" if OPTIONS.heartbeat else "aiohttp-compress")


async def handler(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(
        heartbeat=1.0 if OPTIONS.heartbeat else None,
        compress=bool(OPTIONS.compress),
        max_msg_size=protocol.MAX_SIZE,
    )
    await ws.prepare(request)
    number = tally.connected()
    closing = False
    async for msg in ws:  # ends on CLOSE, CLOSED and ERROR
        if msg.type is WSMsgType.TEXT:
            message: str | bytes = msg.data
        elif msg.type is WSMsgType.BINARY:
            message = msg.data
        else:
            continue
        command = protocol.parse(message)
        if command is None:
            if isinstance(message, str):
                await ws.send_str(message)
            else:
                await ws.send_bytes(message)
            continue
        name, args = command
        if name == "close":
            closing = True
            await ws.close(code=args[0])
        elif name == "flood":
            for i in range(args[0]):
                await ws.send_str(protocol.flood_message(i, args[1]))
        elif name == "notify":
            await ws.send_str(protocol.notification(tally.server, number))
        elif name == "ping":
            transport = request.transport
            assert transport is not None
            transport.pause_reading()  # the client's close waits in the kernel
            await asyncio.sleep(protocol.HOLD)
            await ws.ping()
            tally.pings += 1
            transport.resume_reading()
        else:  # stats; aiohttp answers pongs itself and does not show them
            await ws.send_str(
                tally.report(
                    number,
                    compressed=bool(ws.compress),
                    extensions=ws.headers.get("Sec-WebSocket-Extensions"),
                    pongs=None,
                )
            )
    if not closing:
        tally.closed(number, ws.close_code)
    return ws


async def main() -> None:
    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = protocol.listening_socket(OPTIONS.port)
    await web.SockSite(runner, sock).start()
    protocol.ready(sock)
    await asyncio.Future()  # until killed


if __name__ == "__main__":
    asyncio.run(main())
