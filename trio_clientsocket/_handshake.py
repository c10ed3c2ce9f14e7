"""The opening handshake's HTTP answer, read and checked the same way for every
engine (pure, no I/O).

The status line decides: a non-101 answer is a ``HandshakeRejected`` at once,
without waiting for (or buffering) its body; informational answers (``100
Continue``) are skipped; a 101 is checked here (Upgrade, Connection,
Sec-WebSocket-Accept, the subprotocol) before the engine sees it, so that each
failure is worded the same whichever engine runs.
"""

from __future__ import annotations

import base64
import hashlib
import re

import attrs

from ._errors import ProtocolError

__all__ = [
    "MAX_HEAD",
    "HandshakeResponse",
    "HeadReader",
    "accept_token",
    "check_upgrade",
    "is_token",
    "request_key",
    "secret_header",
    "valid_field_value",
]

MAX_HEAD = 16384
"""Bytes an answer's status line and headers may take (a server that sends
endless headers is refused past this)."""
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


_SECRET_HEADERS = frozenset(
    {"set-cookie", "cookie", "authorization", "proxy-authorization", "proxy-authenticate"}
)
_SECRET_WORDS = ("token", "secret", "session", "auth", "key", "password", "cookie")


def secret_header(name: str) -> bool:
    """Whether header ``name`` (any case) may hold a secret: cookies,
    authorization, anything named like a token, key or session. Its value is
    hidden in reprs, and it is not sent to another origin after a redirect.

    Examples:
        >>> secret_header("X-Api-Key"), secret_header("Proxy-Authorization")
        (True, True)
        >>> secret_header("User-Agent"), secret_header("Sec-WebSocket-Key")
        (False, False)
    """
    name = name.lower()
    return name in _SECRET_HEADERS or (
        not name.startswith("sec-websocket-") and any(w in name for w in _SECRET_WORDS)
    )


def _redacted_headers(headers: tuple[tuple[str, str], ...]) -> str:
    return repr(tuple((k, "***" if secret_header(k) else v) for k, v in headers))


@attrs.frozen
class HandshakeResponse:
    """The server's answer to the opening handshake: status and headers
    (``Connected.response``), for a cookie or a session header the server set.
    Its repr hides the values of headers that may hold secrets (cookies,
    authorization, anything named like a token, key or session).

    Examples:
        >>> r = HandshakeResponse(101, "OK", (("set-cookie", "sid=42"),))
        >>> r.header("Set-Cookie")
        'sid=42'
        >>> r
        HandshakeResponse(status=101, reason='OK', headers=(('set-cookie', '***'),))
    """

    status: int
    """The HTTP status code (101 for a WebSocket connection)."""
    reason: str
    """The reason phrase, as sent."""
    headers: tuple[tuple[str, str], ...] = attrs.field(repr=_redacted_headers)
    """The headers in the order sent, names in lower case."""

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (any case), the values of a repeated one
        joined with ``", "``; None when absent."""
        name = name.lower()
        values = [v for k, v in self.headers if k == name]
        return ", ".join(values) if values else None


_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def is_token(text: str) -> bool:
    """An RFC 9110 token (a header name, a subprotocol): one or more of
    letters, digits and ``!#$%&'*+-.^_`|~``.

    Examples:
        >>> is_token("X-Api-Key"), is_token("v2.chat"), is_token("a/b"), is_token("")
        (True, True, False, False)
    """
    return bool(text) and _TOKEN.issuperset(text)


_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f]")
"""A control character other than tab, or DEL."""


def _no_controls(value: str) -> bool:
    return _CONTROL.search(value) is None


def valid_field_value(value: str) -> bool:
    """An RFC 9110 field-value as a client sends it: visible characters,
    obs-text and inner spaces and tabs; no other control character, no DEL,
    no leading or trailing space or tab. Possibly empty. (Characters past
    Latin-1 pass here: ``_loop.header_pairs`` refuses them on its own.)

    Examples:
        >>> valid_field_value("Bearer x"), valid_field_value("a \\t b"), valid_field_value("")
        (True, True, True)
        >>> valid_field_value("x "), valid_field_value("x\\x7f"), valid_field_value("x\\x01")
        (False, False, False)
    """
    return _no_controls(value) and value == value.strip(" \t")


def _tokens(value: str | None) -> list[str]:
    return [t.strip().lower() for t in (value or "").split(",") if t.strip()]


class HeadReader:
    """Collects the answer's head from the bytes received: ``feed()`` until it
    returns the final (non-1xx) ``HandshakeResponse`` and the bytes that followed it."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> tuple[HandshakeResponse, bytes, bytes] | None:
        """Add ``data``; the final response, its head (the status line and
        headers, without the blank line) and what came after it, or None while
        incomplete. Raises ProtocolError on an answer that is not HTTP or whose
        head exceeds ``MAX_HEAD``."""
        buffer = self._buffer + data
        while True:
            if len(buffer) >= 5 and not buffer.startswith(b"HTTP/"):
                raise ProtocolError("the server's answer is not an HTTP response")
            if len(buffer) < 5 and not b"HTTP/".startswith(buffer):
                raise ProtocolError("the server's answer is not an HTTP response")
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD:
                    raise ProtocolError(
                        f"the server's handshake answer has more than {MAX_HEAD} bytes of headers"
                    )
                self._buffer = buffer
                return None
            if end > MAX_HEAD:
                raise ProtocolError(
                    f"the server's handshake answer has more than {MAX_HEAD} bytes of headers"
                )
            head = buffer[:end]
            response = _parse_head(head)
            buffer = buffer[end + 4 :]
            if 100 <= response.status < 200 and response.status != 101:
                continue  # informational (100 Continue, 103 Early Hints): the answer follows
            self._buffer = b""
            return response, head, buffer


def _parse_head(head: bytes) -> HandshakeResponse:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not (
        len(parts[1]) == 3 and parts[1].isdigit()
    ):
        raise ProtocolError(f"the server's answer has an invalid status line: {lines[0][:80]!r}")
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not is_token(name) or not _no_controls(value):
            raise ProtocolError(f"the server's answer has an invalid header line: {line[:80]!r}")
        headers.append((name.lower(), value.strip()))
    return HandshakeResponse(int(parts[1]), parts[2] if len(parts) > 2 else "", tuple(headers))


def accept_token(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` value a server must answer to ``key``.

    Examples:
        >>> accept_token("dGhlIHNhbXBsZSBub25jZQ==")
        's3pPLMBiTxaQ9kYGzzhZRbK+xOo='
    """
    digest = hashlib.sha1(key.encode("ascii") + _GUID).digest()
    return base64.b64encode(digest).decode("ascii")


def request_key(request: bytes) -> str:
    """The ``Sec-WebSocket-Key`` of a serialized handshake request."""
    for line in request.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-key":
            return value.strip().decode("ascii")
    raise ValueError("the request has no Sec-WebSocket-Key")


def check_upgrade(
    response: HandshakeResponse,
    key: str,
    subprotocols: tuple[str, ...],
    extensions: tuple[str, ...],
) -> str | None:
    """Check a 101 answer against what the request offered; return the chosen
    subprotocol. Raises ProtocolError naming what is wrong."""
    if _tokens(response.header("upgrade")) != ["websocket"]:
        raise ProtocolError(
            "invalid handshake response: the Upgrade header is not 'websocket' "
            f"({response.header('upgrade')!r})"
        )
    if "upgrade" not in _tokens(response.header("connection")):
        raise ProtocolError(
            "invalid handshake response: the Connection header does not say 'upgrade' "
            f"({response.header('connection')!r})"
        )
    if response.header("sec-websocket-accept") != accept_token(key):
        raise ProtocolError(
            "invalid handshake response: Sec-WebSocket-Accept does not match the request's key"
        )
    chosen = response.header("sec-websocket-protocol")
    if chosen is not None and chosen not in subprotocols:
        offered = ", ".join(subprotocols) if subprotocols else "none"
        raise ProtocolError(
            f"invalid handshake response: the server chose subprotocol {chosen!r}, "
            f"which the client did not offer (offered: {offered})"
        )
    for token in _tokens(response.header("sec-websocket-extensions")):
        name = token.split(";", 1)[0].strip()
        if name not in extensions:
            raise ProtocolError(
                f"invalid handshake response: the server chose extension {name!r}, "
                "which the client did not offer"
            )
    return chosen
