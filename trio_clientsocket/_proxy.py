"""Proxies: which one a URL goes through (the option, or the standard
environment variables), and the tunnel through it: HTTP ``CONNECT`` or SOCKS5.

Choosing a proxy and building and reading the proxies' messages is pure; the
two ``async`` functions only move those bytes over a stream the caller opened.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import urllib.parse
from collections.abc import Mapping
from typing import Literal

import attrs
import trio

from ._errors import InvalidURLError, ProtocolError, ProxyRejected
from ._handshake import HeadReader
from ._url import Target, redact_url

__all__ = [
    "Proxy",
    "ProxyOption",
    "bypassed",
    "choose_proxy",
    "connect_request",
    "http_tunnel",
    "parse_proxy",
    "socks5_tunnel",
]

ProxyOption = str | bool | None
"""The ``proxy`` option: True (the environment's, the default), None or False
(none), or a proxy URL: ``http://``, ``https://``, ``socks5://`` (names
resolved here) or ``socks5h://`` (names resolved by the proxy)."""

_DEFAULT_PORTS = {"http": 80, "https": 443, "socks5": 1080, "socks5h": 1080}
_SOCKS_REPLIES = {
    1: "general failure",
    2: "connection not allowed by its rules",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
}


@attrs.frozen
class Proxy:
    """A proxy to go through."""

    url: str = attrs.field(repr=redact_url)
    scheme: Literal["http", "https", "socks5", "socks5h"]
    host: str
    port: int
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)

    @property
    def shown(self) -> str:
        """The proxy's URL for display (a password hidden)."""
        return redact_url(self.url)


def parse_proxy(url: str) -> Proxy:
    """Validate a proxy URL; InvalidURLError (with the password hidden) if it
    is not one.

    Examples:
        >>> parse_proxy("http://alice:s3cret@proxy.example:3128").port
        3128
        >>> parse_proxy("socks5h://127.0.0.1").port
        1080
    """
    if "://" not in url:
        url = "http://" + url  # as curl and the environment variables allow
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidURLError(f"malformed proxy URL {redact_url(url)!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise InvalidURLError(
            f"proxy URL {redact_url(url)!r} must start with http://, https://, socks5:// "
            "or socks5h://"
        )
    if not parts.hostname:
        raise InvalidURLError(f"proxy URL {redact_url(url)!r} has no host")
    return Proxy(
        url=url,
        scheme=scheme,  # type: ignore[arg-type]  # checked just above
        host=parts.hostname,
        port=port if port is not None else _DEFAULT_PORTS[scheme],
        username=urllib.parse.unquote(parts.username) if parts.username is not None else None,
        password=urllib.parse.unquote(parts.password) if parts.password is not None else None,
    )


def choose_proxy(
    target: Target, option: ProxyOption, environment: Mapping[str, str] | None = None
) -> Proxy | None:
    """The proxy ``target`` goes through: the option's, or with True the
    environment's (``https_proxy`` for ``wss://``, ``http_proxy`` for
    ``ws://``, else ``all_proxy``; none for a host in ``no_proxy``), as
    websockets and curl do. ``environment``: the proxies of the environment,
    as ``proxy_environment()`` read them (read now when not given).

    Examples:
        >>> from trio_clientsocket._url import parse_url
        >>> choose_proxy(parse_url("ws://h/"), "socks5h://p:1080").scheme
        'socks5h'
        >>> choose_proxy(parse_url("ws://h/"), None) is None
        True
    """
    if option is None or option is False:
        return None
    if isinstance(option, str):
        return parse_proxy(option)
    proxies = environment if environment is not None else proxy_environment()
    if bypassed(target.host, target.port, proxies.get("no", "")):
        return None
    url = proxies.get("https" if target.secure else "http") or proxies.get("all")
    return parse_proxy(url) if url else None


_PROXY_SCHEMES = ("http", "https", "all", "no")


def proxy_environment() -> dict[str, str]:
    """The proxy variables of the environment, by scheme (``https_proxy`` ->
    ``"https"``, ``no_proxy`` -> ``"no"``): what ``choose_proxy`` reads, as
    curl and urllib read them: the lower-case name first, and ``HTTP_PROXY``
    ignored in a CGI request (``REQUEST_METHOD`` set: httpoxy). A socket reads
    them once, when it is made: only these few names are looked up.

    Examples:
        >>> import os
        >>> os.environ["https_proxy"] = "http://p:3128"
        >>> proxy_environment()["https"]
        'http://p:3128'
        >>> del os.environ["https_proxy"]
    """
    environ = os.environ
    found: dict[str, str] = {}
    for scheme in _PROXY_SCHEMES:
        value = environ.get(f"{scheme}_proxy")
        if value is None and not (scheme == "http" and "REQUEST_METHOD" in environ):
            value = environ.get(f"{scheme.upper()}_PROXY")
        if value:
            found[scheme] = value
    return found


def bypassed(host: str, port: int, no_proxy: str) -> bool:
    """Whether ``no_proxy`` (comma-separated: ``*``, host names and domain
    suffixes, optionally with ``:port``, IP addresses and CIDR blocks) exempts
    ``host``.

    Examples:
        >>> bypassed("api.example.com", 443, "localhost,.example.com")
        True
        >>> bypassed("10.1.2.3", 80, "10.0.0.0/8")
        True
        >>> bypassed("example.org", 80, "example.com")
        False
    """
    host = host.lower().strip("[]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        name, _, entry_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        if entry_port and entry_port != str(port):
            continue
        name = name.strip("[]")
        if address is not None and "/" in name:
            try:
                if address in ipaddress.ip_network(name, strict=False):
                    return True
            except ValueError:
                pass
            continue
        name = name.lstrip("*").lstrip(".")
        if host == name or host.endswith("." + name):
            return True
    return False


def connect_request(target: Target, proxy: Proxy, user_agent: str | None) -> bytes:
    """The HTTP ``CONNECT`` request that opens a tunnel to ``target``.

    Examples:
        >>> from trio_clientsocket._url import parse_url
        >>> connect_request(parse_url("wss://h/"), parse_proxy("http://p"), None)
        b'CONNECT h:443 HTTP/1.1\\r\\nHost: h:443\\r\\n\\r\\n'
    """
    host = f"[{target.host}]" if ":" in target.host else target.host
    authority = f"{host}:{target.port}"
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if proxy.username is not None:
        token = f"{proxy.username}:{proxy.password or ''}".encode()
        lines.append("Proxy-Authorization: Basic " + base64.b64encode(token).decode("ascii"))
    if user_agent:
        lines.append(f"User-Agent: {user_agent}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _read_exactly(stream: trio.abc.Stream, count: int, what: str) -> bytes:
    data = b""
    while len(data) < count:
        chunk = await stream.receive_some(count - len(data))
        if not chunk:
            raise ProtocolError(f"the proxy closed the connection during {what}")
        data += chunk
    return data


async def http_tunnel(
    stream: trio.abc.Stream, target: Target, proxy: Proxy, user_agent: str | None
) -> None:
    """Open a tunnel to ``target`` with ``CONNECT`` (the stream is connected to
    the proxy); ProxyRejected if the proxy refuses."""
    await stream.send_all(connect_request(target, proxy, user_agent))
    reader = HeadReader()
    while True:
        data = await stream.receive_some(4096)
        if not data:
            raise ProtocolError(f"the proxy {proxy.shown} closed the connection before answering")
        try:
            got = reader.feed(bytes(data))
        except ProtocolError as exc:
            raise ProtocolError(f"the proxy {proxy.shown} answered CONNECT badly: {exc}") from None
        if got is not None:
            break
    response, _, rest = got
    if not 200 <= response.status < 300:
        raise ProxyRejected(proxy.shown, response.status)
    if rest:
        raise ProtocolError(f"the proxy {proxy.shown} sent data before the tunnel was used")


def socks5_connect(target: Target, resolved: str | None) -> bytes:
    """The SOCKS5 CONNECT request (RFC 1928) for ``target``: to the address
    ``resolved`` when the name was resolved here, else to the name."""
    address = resolved if resolved is not None else target.host
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        name = address.encode("idna")
        body = bytes([3, len(name)]) + name
    else:
        body = (bytes([1]) if ip.version == 4 else bytes([4])) + ip.packed
    return bytes([5, 1, 0]) + body + target.port.to_bytes(2, "big")


async def socks5_tunnel(stream: trio.abc.Stream, target: Target, proxy: Proxy) -> None:
    """Open a tunnel to ``target`` with SOCKS5 (the stream is connected to the
    proxy); ProxyRejected if the proxy refuses."""
    methods = [0, 2] if proxy.username is not None else [0]
    await stream.send_all(bytes([5, len(methods), *methods]))
    version, method = await _read_exactly(stream, 2, "the SOCKS5 greeting")
    if version != 5:
        raise ProtocolError(f"the proxy {proxy.shown} does not speak SOCKS5")
    if method == 2:
        user = (proxy.username or "").encode()
        password = (proxy.password or "").encode()
        await stream.send_all(bytes([1, len(user)]) + user + bytes([len(password)]) + password)
        _, status = await _read_exactly(stream, 2, "SOCKS5 authentication")
        if status != 0:
            raise ProxyRejected(proxy.shown, 407, detail="the user name or password was refused")
    elif method != 0:
        raise ProxyRejected(
            proxy.shown, 407, detail="it accepts none of the offered authentication methods"
        )
    resolved = None
    if proxy.scheme == "socks5":  # names resolved here, not by the proxy
        infos = await trio.socket.getaddrinfo(
            target.host, target.port, type=trio.socket.SOCK_STREAM
        )
        resolved = str(infos[0][4][0])
    await stream.send_all(socks5_connect(target, resolved))
    head = await _read_exactly(stream, 4, "the SOCKS5 reply")
    if head[0] != 5:
        raise ProtocolError(f"the proxy {proxy.shown} sent an invalid SOCKS5 reply")
    if head[1] != 0:
        raise ProxyRejected(
            proxy.shown, None, socks_reply=head[1], detail=_SOCKS_REPLIES.get(head[1], "refused")
        )
    kind = head[3]
    length = {1: 4, 4: 16}.get(kind)
    if length is None:
        if kind != 3:
            raise ProtocolError(f"the proxy {proxy.shown} sent an invalid SOCKS5 reply")
        length = (await _read_exactly(stream, 1, "the SOCKS5 reply"))[0]
    await _read_exactly(stream, length + 2, "the SOCKS5 reply")  # the bound address
