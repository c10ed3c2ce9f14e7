"""The exception tree of trio_clientsocket.

.. code-block:: text

    ClientSocketError
    ├── SocketClosedError       send()/send_nowait() on a socket that is not open
    ├── OutboxFullError         send_nowait(), or send() with overflow="raise", on a full outbox
    ├── UndeliveredError        wait_sent(): a message was cut off while being written
    ├── InvalidURLError         (also a ValueError) a URL that is not ws:// or wss://, or malformed
    └── TransportError         reported in ConnectionFailed.error, never raised by the API
        ├── HandshakeRejected   the server answered the handshake with an HTTP status
        ├── ProxyRejected       the proxy refused the tunnel (407: credentials)
        ├── ConnectTimeout      TCP + TLS + handshake took longer than connect_timeout
        ├── KeepaliveTimeout    no pong (and no other frame) within ping_timeout
        ├── ConnectionLost      the server closed the connection, or it dropped
        ├── ProtocolError       the server's bytes are not valid HTTP/WebSocket
        └── AttemptError        resolving the url or headers callable failed

Transport errors that Python already names (``OSError`` for a refused
connection or a DNS failure, ``ssl.SSLCertVerificationError`` for a bad
certificate) are reported as they are.
"""

from __future__ import annotations

__all__ = [
    "AttemptError",
    "ClientSocketError",
    "ConnectTimeout",
    "ConnectionLost",
    "HandshakeRejected",
    "InvalidURLError",
    "KeepaliveTimeout",
    "OutboxFullError",
    "ProtocolError",
    "ProxyRejected",
    "SocketClosedError",
    "TransportError",
    "UndeliveredError",
]


class ClientSocketError(Exception):
    """Base class of every error this library raises or reports.

    Examples:
        >>> issubclass(SocketClosedError, ClientSocketError)
        True
    """


class SocketClosedError(ClientSocketError):
    """The socket is closed: it was never opened, ``close()`` was called, or
    reconnecting gave up. Call ``open()`` to use it again.

    Examples:
        >>> str(SocketClosedError("socket is closed"))
        'socket is closed'
    """


class OutboxFullError(ClientSocketError):
    """The outbox holds ``outbox_size`` messages and the call may not wait.

    Examples:
        >>> raise OutboxFullError("outbox is full (100 messages)")
        Traceback (most recent call last):
        ...
        trio_clientsocket._errors.OutboxFullError: outbox is full (100 messages)
    """


class UndeliveredError(ClientSocketError):
    """``wait_sent()``: a message it waited for was being written when the
    connection ended (it may or may not have arrived), and was reported
    ``Undelivered(reason="in flight")``.

    Examples:
        >>> str(UndeliveredError("a message was cut off"))
        'a message was cut off'
    """


class InvalidURLError(ClientSocketError, ValueError):
    """The URL is not a valid ``ws://`` or ``wss://`` URL.

    Examples:
        >>> isinstance(InvalidURLError("bad"), ValueError)
        True
    """


class TransportError(ClientSocketError):
    """Base of the failures reported in ``ConnectionFailed.error``.

    Examples:
        >>> issubclass(KeepaliveTimeout, TransportError)
        True
    """


class HandshakeRejected(TransportError):
    """The server answered the opening handshake with an HTTP status, not 101.

    The status line decides: the socket does not wait for the body.

    Attributes:
        status_code: the HTTP status, e.g. 403 or 503.
        body: the bytes of the body that came with the status line, if any.
        headers: the answer's headers, names in lower case.

    Examples:
        >>> HandshakeRejected(403).status_code
        403
    """

    def __init__(
        self,
        status_code: int,
        body: bytes = b"",
        headers: tuple[tuple[str, str], ...] = (),
        *,
        detail: str = "",
    ) -> None:
        message = f"server rejected the handshake with HTTP {status_code}"
        super().__init__(f"{message}: {detail}" if detail else message)
        self.status_code = status_code
        self.body = body
        self.headers = headers


class ProxyRejected(TransportError):
    """The proxy refused to open the tunnel to the server: an HTTP status other
    than 2xx to ``CONNECT`` (407: the proxy wants credentials, or refused
    them), or a SOCKS5 failure.

    Attributes:
        proxy: the proxy's URL, password hidden.
        status_code: the HTTP status (407 also for SOCKS5 credentials refused),
            or None for another SOCKS5 failure.
        socks_reply: the SOCKS5 reply code, if it was one.

    Examples:
        >>> str(ProxyRejected("http://p:3128", 407))
        'the proxy http://p:3128 refused the tunnel: HTTP 407 (proxy authentication required)'
    """

    def __init__(
        self,
        proxy: str,
        status_code: int | None,
        *,
        socks_reply: int | None = None,
        detail: str = "",
    ) -> None:
        if status_code == 407 and not detail:
            detail = "proxy authentication required"
        if status_code is not None:
            what = f"HTTP {status_code}" + (f" ({detail})" if detail else "")
        else:
            what = f"SOCKS5 reply {socks_reply}" + (f" ({detail})" if detail else "")
        super().__init__(f"the proxy {proxy} refused the tunnel: {what}")
        self.proxy = proxy
        self.status_code = status_code
        self.socks_reply = socks_reply


class ConnectTimeout(TransportError):
    """Opening the connection (TCP, TLS and the WebSocket handshake) took longer
    than ``connect_timeout`` seconds.

    Examples:
        >>> str(ConnectTimeout(10.0))
        'no connection within connect_timeout=10.0 s'
    """

    def __init__(self, timeout: float) -> None:
        super().__init__(f"no connection within connect_timeout={timeout} s")
        self.timeout = timeout


class KeepaliveTimeout(TransportError):
    """The peer did not answer a keepalive ping (nor send anything) within
    ``ping_timeout`` seconds: it is taken for dead.

    Examples:
        >>> str(KeepaliveTimeout(20.0))
        'peer is dead: no pong within ping_timeout=20.0 s'
    """

    def __init__(self, timeout: float) -> None:
        super().__init__(f"peer is dead: no pong within ping_timeout={timeout} s")
        self.timeout = timeout


class ConnectionLost(TransportError):
    """An established connection ended without ``close()`` being called.

    Attributes:
        code: the WebSocket close code (1006 when the connection dropped without
            a close frame).
        reason: the close reason text, if any.
        by_server: True when the server sent the close frame.

    Examples:
        >>> ConnectionLost(1001, "going away", by_server=True).code
        1001
    """

    def __init__(self, code: int, reason: str | None = None, *, by_server: bool = False) -> None:
        who = "server closed the connection" if by_server else "connection lost"
        text = f"{who} (code {code}" + (f", reason {reason!r})" if reason else ")")
        super().__init__(text)
        self.code = code
        self.reason = reason
        self.by_server = by_server


class ProtocolError(TransportError):
    """The server broke the protocol: an answer that is not HTTP, an invalid
    handshake, or an invalid frame.

    Attributes:
        code: the close code the client failed the connection with (1002 for
            an invalid frame, 1007 for invalid UTF-8), as its close frame
            carried it to the server; None when it failed during the
            handshake, or when the connection could no longer carry the close
            frame (the message then says so). A close frame *from* the
            server, whatever its code, is a ``ConnectionLost``.

    Examples:
        >>> str(ProtocolError("the server's answer is not an HTTP response"))
        "the server's answer is not an HTTP response"
    """

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class AttemptError(TransportError):
    """A ``url`` or ``headers`` callable raised while preparing an attempt; the
    original exception is the ``__cause__``.

    Examples:
        >>> str(AttemptError("url callable failed: boom"))
        'url callable failed: boom'
    """
