"""A small proxy for the tests, run as its own process on 127.0.0.1: HTTP
``CONNECT`` and SOCKS5 (RFC 1928, user/password RFC 1929) on one port, told
apart by the first byte. It prints ``ready PORT``, then one line per tunnel
(``tunnel http HOST:PORT`` or ``tunnel socks5 HOST:PORT``) or refusal
(``refused ...``), and copies bytes both ways.

Run: ``python tests/proxy_server.py [--auth USER:PASSWORD]``.
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import sys

import trio


async def pipe(source: trio.abc.Stream, sink: trio.abc.Stream) -> None:
    try:
        while data := await source.receive_some(65536):
            await sink.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await trio.aclose_forcefully(sink)


async def splice(client: trio.abc.Stream, host: str, port: int) -> None:
    try:
        upstream = await trio.open_tcp_stream(host, port)
    except OSError:
        return
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pipe, client, upstream)
        nursery.start_soon(pipe, upstream, client)


async def read_exactly(stream: trio.abc.Stream, count: int, first: bytes = b"") -> bytes:
    data = first
    while len(data) < count:
        chunk = await stream.receive_some(count - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


class Proxy:
    def __init__(self, auth: str | None) -> None:
        self.auth = auth

    async def handle(self, client: trio.SocketStream) -> None:
        try:
            first = await client.receive_some(65536)
            if not first:
                return
            if first[0] == 5:
                await self.socks5(client, first)
            else:
                await self.http(client, first)
        except (EOFError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(client)

    async def http(self, client: trio.SocketStream, data: bytes) -> None:
        while b"\r\n\r\n" not in data:
            chunk = await client.receive_some(65536)
            if not chunk:
                return
            data += chunk
        head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        method, authority, _ = head[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:])}
        if method != "CONNECT":
            await client.send_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            return
        if self.auth is not None:
            expected = "Basic " + base64.b64encode(self.auth.encode()).decode()
            if headers.get("proxy-authorization") != expected:
                print(f"refused http {authority}", flush=True)
                await client.send_all(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                    b'Proxy-Authenticate: Basic realm="tests"\r\nContent-Length: 0\r\n\r\n'
                )
                return
        host, _, port = authority.rpartition(":")
        print(f"tunnel http {authority}", flush=True)
        await client.send_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await splice(client, host.strip("[]"), int(port))

    async def socks5(self, client: trio.SocketStream, data: bytes) -> None:
        data = await read_exactly(client, 2, data)
        data = await read_exactly(client, 2 + data[1], data)
        methods = set(data[2:])
        wanted = 2 if self.auth is not None else 0
        if wanted not in methods:
            await client.send_all(bytes([5, 0xFF]))
            print("refused socks5 no acceptable method", flush=True)
            return
        await client.send_all(bytes([5, wanted]))
        if wanted == 2:
            head = await read_exactly(client, 2)
            user = await read_exactly(client, head[1])
            size = await read_exactly(client, 1)
            password = await read_exactly(client, size[0])
            if f"{user.decode()}:{password.decode()}" != self.auth:
                await client.send_all(bytes([1, 1]))
                print("refused socks5 credentials", flush=True)
                return
            await client.send_all(bytes([1, 0]))
        request = await read_exactly(client, 4)
        kind = request[3]
        if kind == 1:
            host = str(ipaddress.ip_address(await read_exactly(client, 4)))
        elif kind == 4:
            host = str(ipaddress.ip_address(await read_exactly(client, 16)))
        else:
            size = await read_exactly(client, 1)
            host = (await read_exactly(client, size[0])).decode("idna")
        port = int.from_bytes(await read_exactly(client, 2), "big")
        print(f"tunnel socks5 {host}:{port}", flush=True)
        await client.send_all(bytes([5, 0, 0, 1, 127, 0, 0, 1, 0, 0]))
        await splice(client, host, port)


async def main(auth: str | None) -> None:
    proxy = Proxy(auth)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    print(f"ready {listeners[0].socket.getsockname()[1]}", flush=True)
    await trio.serve_listeners(proxy.handle, listeners)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--auth", default=None)
    trio.run(main, parser.parse_args().auth)
    sys.exit(0)
