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

import errno
import os
import socket
import ssl

__all__ = [
    "AttemptError",
    "ClientSocketError",
    "ConnectTimeout",
    "ConnectionLost",
    "HandshakeRejected",
    "InvalidURLError",
    "KeepaliveTimeout",
    "NotConnectedError",
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


class NotConnectedError(ClientSocketError):
    """``ping()``: the socket has no connection to ping (it is connecting,
    reconnecting, closing or closed), or the connection ended before the
    server answered.

    Examples:
        >>> str(NotConnectedError("not connected"))
        'not connected'
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


def os_reason(exc: OSError) -> str:
    """What went wrong, in words: ``Connection refused (ECONNREFUSED)``, a resolver's
    ``Name or service not known``, or the text of a TLS error.

    Examples:
        >>> os_reason(ConnectionRefusedError(111, "Error connecting to ('h', 1): ..."))
        'Connection refused (ECONNREFUSED)'
    """
    if isinstance(exc, ssl.SSLError):
        return str(exc)
    if isinstance(exc, socket.gaierror | socket.herror):
        return exc.strerror or str(exc)
    code = exc.errno
    if isinstance(code, int) and code in errno.errorcode:
        return f"{os.strerror(code)} ({errno.errorcode[code]})"
    return exc.strerror or str(exc) or type(exc).__name__


def _leaves(error: BaseException) -> list[BaseException]:
    """The root causes behind ``error``: its ``__cause__`` chain, groups opened."""
    found: list[BaseException] = []
    seen: set[int] = set()
    pending: list[BaseException | None] = [error.__cause__]
    while pending:
        exc = pending.pop(0)
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        if isinstance(exc, BaseExceptionGroup):
            pending.extend(exc.exceptions)
        elif exc.__cause__ is not None:
            pending.append(exc.__cause__)
        else:
            found.append(exc)
    return found


def underlying_causes(error: BaseException) -> list[str]:
    """The root causes behind ``error`` (its ``__cause__`` chain, exception
    groups opened), in words, without repeats or what ``str(error)`` already says.

    Examples:
        >>> refused = ConnectionRefusedError(111, "Connection refused")
        >>> top = OSError("all attempts to connect to h:1 failed")
        >>> top.__cause__ = ExceptionGroup("all attempts", [refused, refused])
        >>> underlying_causes(top)
        ['Connection refused (ECONNREFUSED)']
    """
    said = str(error)
    found: list[str] = []
    for exc in _leaves(error):
        text = os_reason(exc) if isinstance(exc, OSError) else str(exc)
        text = text or type(exc).__name__
        if text not in found and text not in said:
            found.append(text)
    return found


def connect_error(error: OSError, where: str) -> OSError:
    """``error``, raised while opening a TCP connection to ``where`` (``host:port``,
    or ``the proxy ...``), in words that name it and say why: an OSError of the
    same kind (and errno) as its cause, so that ``except ConnectionRefusedError``
    and the classifier see what they saw before.

    Examples:
        >>> top = OSError("all attempts to connect to 127.0.0.1:1 failed")
        >>> top.__cause__ = ConnectionRefusedError(111, "Connection refused")
        >>> error = connect_error(top, "127.0.0.1:1")
        >>> type(error).__name__, error.errno
        ('ConnectionRefusedError', 111)
        >>> str(error)
        'cannot connect to 127.0.0.1:1: Connection refused (ECONNREFUSED)'
        >>> str(connect_error(socket.gaierror(-2, "Name or service not known"), "nohost:80"))
        'cannot resolve the host of nohost:80: Name or service not known'
    """
    if isinstance(error, socket.gaierror):
        reworded: OSError = socket.gaierror(
            f"cannot resolve the host of {where}: {os_reason(error)}"
        )
        reworded.errno = error.errno
        return reworded
    leaves = [exc for exc in _leaves(error) if isinstance(exc, OSError)] or [error]
    reasons = underlying_causes(error) or [os_reason(error)]
    first = leaves[0]
    kind = type(first) if all(type(exc) is type(first) for exc in leaves) else OSError
    reworded = kind(f"cannot connect to {where}: {'; '.join(reasons)}")
    if all(exc.errno == first.errno for exc in leaves):
        reworded.errno = first.errno  # set after: str() stays the sentence alone
    return reworded
