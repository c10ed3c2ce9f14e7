"""The default failure classifier: which failures are retried (True) and which are fatal."""

from __future__ import annotations

import socket
import ssl

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto.utilities import LocalProtocolError

from trio_clientsocket import (
    AttemptError,
    Classifier,
    ConnectionLost,
    ConnectTimeout,
    HandshakeRejected,
    InvalidURLError,
    KeepaliveTimeout,
    ProtocolError,
    TransportError,
)
from trio_clientsocket._loop import _single_failure

classify = Classifier()
close_codes = st.integers(min_value=1000, max_value=4999)


@settings(max_examples=300)
@given(status=st.integers(min_value=300, max_value=599))
def test_http_status(status: int) -> None:
    transient = status >= 500 or status in (408, 429)
    assert classify(HandshakeRejected(status)) is transient


@pytest.mark.parametrize("status", [500, 502, 503, 504, 599, 408, 429])
def test_transient_http_statuses(status: int) -> None:
    assert classify(HandshakeRejected(status, b"try later")) is True


@pytest.mark.parametrize("status", [300, 301, 302, 307, 400, 401, 403, 404, 407, 409, 426, 499])
def test_fatal_http_statuses(status: int) -> None:
    assert classify(HandshakeRejected(status)) is False


def test_policy_violation_close_by_server_is_fatal() -> None:
    assert classify(ConnectionLost(1008, "unauthorised", by_server=True)) is False


def test_policy_violation_code_not_from_server_is_transient() -> None:
    assert classify(ConnectionLost(1008)) is True
    assert classify(ConnectionLost(1008, by_server=False)) is True


@given(code=close_codes, by_server=st.booleans())
def test_connection_lost_default_codes(code: int, by_server: bool) -> None:
    fatal = by_server and code == 1008
    assert classify(ConnectionLost(code, by_server=by_server)) is not fatal


@pytest.mark.parametrize("code", [1000, 1001, 1006, 1011, 1012, 4000, 4001])
def test_other_server_closes_are_transient(code: int) -> None:
    assert classify(ConnectionLost(code, "bye", by_server=True)) is True


def test_default_fatal_close_codes() -> None:
    assert Classifier().fatal_close_codes == frozenset({1008})


def test_custom_fatal_close_codes_replace_the_default() -> None:
    custom = Classifier(fatal_close_codes={4001})
    assert custom.fatal_close_codes == frozenset({4001})
    assert isinstance(custom.fatal_close_codes, frozenset)
    assert custom(ConnectionLost(4001, by_server=True)) is False
    assert custom(ConnectionLost(4001, by_server=False)) is True
    assert custom(ConnectionLost(1008, by_server=True)) is True


@given(
    fatal=st.frozensets(close_codes, max_size=5),
    code=close_codes,
    by_server=st.booleans(),
)
def test_custom_fatal_close_codes(fatal: frozenset[int], code: int, by_server: bool) -> None:
    custom = Classifier(fatal_close_codes=list(fatal))
    assert custom(ConnectionLost(code, by_server=by_server)) is not (by_server and code in fatal)


def test_empty_fatal_close_codes_retries_every_close() -> None:
    lenient = Classifier(fatal_close_codes=())
    assert lenient(ConnectionLost(1008, by_server=True)) is True


def test_custom_codes_do_not_change_http_classification() -> None:
    custom = Classifier(fatal_close_codes={4001})
    assert custom(HandshakeRejected(503)) is True
    assert custom(HandshakeRejected(403)) is False


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(111, "Connection refused"),
        ConnectionResetError(104, "Connection reset by peer"),
        socket.gaierror(-2, "Name or service not known"),
        TimeoutError("timed out"),
        OSError("network is unreachable"),
        trio.BrokenResourceError("broken"),
        trio.TooSlowError(),
        ConnectTimeout(10.0),
        KeepaliveTimeout(20.0),
        ProtocolError("the server's answer is not an HTTP response"),
        AttemptError("url callable failed: boom"),
        ssl.SSLEOFError(8, "EOF occurred in violation of protocol"),
        ssl.SSLZeroReturnError(6, "TLS/SSL connection has been closed"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_transient_errors(error: BaseException) -> None:
    assert classify(error) is True


@pytest.mark.parametrize(
    "error",
    [
        ssl.SSLCertVerificationError(1, "certificate verify failed"),
        ssl.SSLError(1, "unsupported protocol"),
        InvalidURLError("URL 'http://x/' must start with ws:// or wss://"),
        ZeroDivisionError("division by zero"),
        ValueError("oops"),
        RuntimeError("bug"),
        KeyboardInterrupt(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_fatal_errors(error: BaseException) -> None:
    assert classify(error) is False


def test_result_is_a_bool() -> None:
    for error in (HandshakeRejected(503), ConnectionLost(1006), ZeroDivisionError()):
        assert type(classify(error)) is bool


# -- the one failure of a connection's nursery ------------------------------------------


def test_a_protocol_library_error_escaping_trio_websocket_is_a_protocol_error() -> None:
    """trio-websocket's reader task can let wsproto's (or h11's) own errors
    escape; the socket reports them as ProtocolError, as the other engines do."""
    escaped = LocalProtocolError("Event Pong(payload=b'') cannot be sent in state LOCAL_CLOSING")
    error = _single_failure(ExceptionGroup("connection", [escaped]))
    assert isinstance(error, ProtocolError)
    assert error.__cause__ is escaped
    assert str(error).startswith("the server broke the WebSocket protocol: Event Pong")


def test_a_single_failure_is_reported_as_itself_and_several_as_a_transport_error() -> None:
    lost = ConnectionResetError("reset")
    assert _single_failure(ExceptionGroup("c", [ExceptionGroup("inner", [lost])])) is lost
    both = _single_failure(ExceptionGroup("c", [lost, OSError("and this")]))
    assert isinstance(both, TransportError)
    assert "reset" in str(both)
    assert "and this" in str(both)
