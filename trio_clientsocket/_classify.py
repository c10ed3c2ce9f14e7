"""Which failures are worth retrying: a pure, replaceable classifier."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterable

import attrs
import trio

from ._errors import (
    ConnectionLost,
    HandshakeRejected,
    InvalidURLError,
    ProxyRejected,
    TransportError,
)

__all__ = ["Classifier", "Classify"]

Classify = Callable[[BaseException], bool]
"""The ``classify`` option: True when the failure is transient (retry), False when fatal."""

_TRANSIENT_HTTP = frozenset({408, 429})
_TRANSIENT_SOCKS = frozenset({1, 3, 4, 5, 6})  # failure, unreachable, refused, TTL


def _codes(value: Iterable[int]) -> frozenset[int]:
    return frozenset(value)


@attrs.frozen
class Classifier:
    """The default failure classifier: call it with an error, it says whether
    to retry (True, transient) or give up (False, fatal).

    ===============================================  =========
    failure                                          retried?
    ===============================================  =========
    connection refused/reset, DNS failure (OSError)  yes
    ConnectTimeout, KeepaliveTimeout                 yes
    ProtocolError (garbage, invalid frames)          yes
    EOF or reset during TLS or the handshake         yes
    HTTP 5xx, 408, 429 in the handshake              yes
    proxy: 5xx, 408, 429, SOCKS5 unreachable/refused  yes
    proxy: 407 (credentials), other refusals         no
    connection lost, server close frame              yes
    server close with a code in ``fatal_close_codes``  no
    other HTTP status (401, 403, 404, 3xx...)        no
    TLS certificate or other TLS protocol failure    no
    malformed URL (InvalidURLError)                  no
    a url/headers callable raised (AttemptError)     yes
    anything else (a bug)                            no
    ===============================================  =========

    Replace it with any ``Callable[[BaseException], bool]``, or tune the close
    codes: ``ClientSocket(url, classify=Classifier(fatal_close_codes={1008, 4001}))``.

    Examples:
        >>> classify = Classifier()
        >>> classify(HandshakeRejected(503)), classify(HandshakeRejected(403))
        (True, False)
        >>> classify(ConnectionLost(1008, by_server=True))
        False
    """

    fatal_close_codes: frozenset[int] = attrs.field(
        default=frozenset({1008}), converter=_codes
    )
    """Close codes by which a server says "do not come back". Default: 1008
    (policy violation, used for failed authorisation)."""

    def __call__(self, error: BaseException) -> bool:
        if isinstance(error, HandshakeRejected):
            return error.status_code >= 500 or error.status_code in _TRANSIENT_HTTP
        if isinstance(error, ProxyRejected):
            if error.status_code is None:
                return error.socks_reply in _TRANSIENT_SOCKS
            return error.status_code >= 500 or error.status_code in _TRANSIENT_HTTP
        if isinstance(error, ConnectionLost):
            return not (error.by_server and error.code in self.fatal_close_codes)
        if isinstance(error, TransportError):
            return True  # timeouts, dead peers, protocol errors, failing callables
        if isinstance(error, InvalidURLError):
            return False
        if isinstance(error, ssl.SSLError):
            # A certificate or protocol failure will fail the same way again;
            # a TLS connection cut short is just a lost connection.
            return isinstance(error, ssl.SSLEOFError | ssl.SSLZeroReturnError)
        return isinstance(error, OSError | trio.BrokenResourceError | trio.TooSlowError)
