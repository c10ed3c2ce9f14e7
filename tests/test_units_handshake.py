"""The opening handshake's answer, read and checked without I/O (``_handshake``):
the head reader, the status line and header parser, the 101 checks, and the
key/accept tokens. Bytes are written by hand."""

from __future__ import annotations

import pytest

from trio_clientsocket import ProtocolError
from trio_clientsocket._handshake import (
    MAX_HEAD,
    HeadReader,
    accept_token,
    check_upgrade,
    request_key,
)
from trio_clientsocket._handshake import (
    HandshakeResponse as Response,
)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
"""The key of RFC 6455, section 1.3; its accept token is ACCEPT."""
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
NOT_HTTP = "the server's answer is not an HTTP response"


def answer(*headers: str, status: str = "HTTP/1.1 101 Switching Protocols") -> bytes:
    return ("\r\n".join([status, *headers]) + "\r\n\r\n").encode("latin-1")


def response(*headers: tuple[str, str], status: int = 101) -> Response:
    return Response(status, "Switching Protocols", tuple((k.lower(), v) for k, v in headers))


VALID = (("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", ACCEPT))


# -- the key and its accept token ------------------------------------------------


def test_accept_token_is_the_rfc_6455_example() -> None:
    assert accept_token(KEY) == ACCEPT


def test_request_key_is_found_in_any_case_among_other_headers() -> None:
    request = (
        b"GET /chat HTTP/1.1\r\nHost: h.test\r\nsec-WEBSOCKET-key:  "
        + KEY.encode()
        + b" \r\nUpgrade: websocket\r\n\r\n"
    )
    assert request_key(request) == KEY


def test_request_key_refuses_a_request_without_one() -> None:
    """The request line is not a header: a key-like target does not count."""
    request = b"GET /Sec-WebSocket-Key:x HTTP/1.1\r\nHost: h.test\r\n\r\n"
    with pytest.raises(ValueError, match=r"^the request has no Sec-WebSocket-Key$"):
        request_key(request)


# -- reading the head ----------------------------------------------------------


def test_head_in_one_piece_returns_response_head_and_what_followed() -> None:
    frame = b"\x81\x02hi"
    data = answer("Upgrade: websocket", "X-Twice: a", "x-twice: b") + frame
    got = HeadReader().feed(data)
    assert got is not None
    resp, head, rest = got
    assert (resp.status, resp.reason) == (101, "Switching Protocols")
    assert resp.headers == (("upgrade", "websocket"), ("x-twice", "a"), ("x-twice", "b"))
    assert head == data[: data.index(b"\r\n\r\n")]
    assert rest == frame


def test_head_fed_a_byte_at_a_time_completes_on_the_last_byte() -> None:
    data = answer("Upgrade: websocket")
    reader = HeadReader()
    for i in range(len(data) - 1):
        assert reader.feed(data[i : i + 1]) is None
    got = reader.feed(data[-1:])
    assert got is not None
    assert got[0].header("upgrade") == "websocket"
    assert got[2] == b""


def test_reader_starts_afresh_after_an_answer() -> None:
    reader = HeadReader()
    assert reader.feed(answer(status="HTTP/1.1 101 A")) is not None
    got = reader.feed(answer(status="HTTP/1.1 101 B"))
    assert got is not None
    assert got[0].reason == "B"


@pytest.mark.parametrize("status", ["HTTP/1.1 100 Continue", "HTTP/1.1 103 Early Hints"])
def test_informational_answers_are_skipped(status: str) -> None:
    data = answer("Link: </a>", status=status) + answer("Upgrade: websocket") + b"\x81\x00"
    got = HeadReader().feed(data)
    assert got is not None
    assert got[0].status == 101
    assert got[1].startswith(b"HTTP/1.1 101 ")
    assert got[2] == b"\x81\x00"


def test_informational_answer_then_the_rest_in_a_later_piece() -> None:
    reader = HeadReader()
    assert reader.feed(answer(status="HTTP/1.1 100 Continue") + b"HTTP/1.1 4") is None
    got = reader.feed(b"04 Not Found\r\nContent-Length: 3\r\n\r\nabc")
    assert got is not None
    assert (got[0].status, got[0].reason, got[2]) == (404, "Not Found", b"abc")


@pytest.mark.parametrize("start", [b"X", b"HX", b"HTTQ", b"\r\n"])
def test_an_answer_that_cannot_become_http_is_refused_before_five_bytes(start: bytes) -> None:
    with pytest.raises(ProtocolError, match=f"^{NOT_HTTP}$"):
        HeadReader().feed(start)


def test_a_prefix_of_http_waits_for_more() -> None:
    reader = HeadReader()
    assert reader.feed(b"HT") is None
    assert reader.feed(b"TP") is None
    with pytest.raises(ProtocolError, match=f"^{NOT_HTTP}$"):
        reader.feed(b"x 101")


def test_five_bytes_or_more_that_are_not_http_are_refused() -> None:
    with pytest.raises(ProtocolError, match=f"^{NOT_HTTP}$"):
        HeadReader().feed(b"SSH-2.0-OpenSSH\r\n")


def test_headers_over_the_limit_are_refused_even_when_complete() -> None:
    """One piece that holds a complete head of more than MAX_HEAD bytes."""
    data = answer("X-Big: " + "a" * MAX_HEAD)
    with pytest.raises(ProtocolError, match=rf"more than {MAX_HEAD} bytes of headers"):
        HeadReader().feed(data)


def test_headers_over_the_limit_are_refused_before_they_end() -> None:
    reader = HeadReader()
    assert reader.feed(b"HTTP/1.1 101 OK\r\nX-Big: ") is None
    with pytest.raises(ProtocolError, match=rf"more than {MAX_HEAD} bytes of headers"):
        reader.feed(b"a" * MAX_HEAD)


def test_a_head_of_exactly_the_limit_is_read() -> None:
    status = "HTTP/1.1 101 OK"
    filler = MAX_HEAD - len(status) - len("\r\nX-Pad: ")
    data = answer("X-Pad: " + "p" * filler, status=status)
    assert data.index(b"\r\n\r\n") == MAX_HEAD
    got = HeadReader().feed(data)
    assert got is not None
    assert len(got[1]) == MAX_HEAD


@pytest.mark.parametrize(
    "status",
    ["HTTP/1.1", "HTTP/1.1 1O1 Oops", "HTTP/2 101 Upgrade", "HTTP/1.1 1010 Long", "HTTP/ 101 x"],
)
def test_an_invalid_status_line_is_refused_and_quoted(status: str) -> None:
    with pytest.raises(ProtocolError) as info:
        HeadReader().feed(answer(status=status))
    assert str(info.value) == f"the server's answer has an invalid status line: {status!r}"


def test_a_long_invalid_status_line_is_quoted_up_to_80_characters() -> None:
    status = "HTTP/1.1 x" + "y" * 200
    with pytest.raises(ProtocolError) as info:
        HeadReader().feed(answer(status=status))
    assert str(info.value).endswith(repr(status[:80]))


def test_a_status_line_without_a_reason_has_an_empty_one() -> None:
    got = HeadReader().feed(answer(status="HTTP/1.1 101"))
    assert got is not None
    assert (got[0].status, got[0].reason) == (101, "")


@pytest.mark.parametrize(
    "line", ["no colon here", ": empty name", " Leading: space", "Trailing : space"]
)
def test_an_invalid_header_line_is_refused_and_quoted(line: str) -> None:
    with pytest.raises(ProtocolError) as info:
        HeadReader().feed(answer("Upgrade: websocket", line))
    assert str(info.value) == f"the server's answer has an invalid header line: {line!r}"


@pytest.mark.parametrize("line", ["Bad Header: x", "X(1): y", "X\x01: z"])
def test_a_header_name_that_is_not_a_token_is_refused(line: str) -> None:
    with pytest.raises(ProtocolError, match=r"^the server's answer has an invalid header line: "):
        HeadReader().feed(answer("Upgrade: websocket", line))


def test_header_values_are_stripped_and_may_be_empty() -> None:
    got = HeadReader().feed(answer("X-A:   padded  ", "X-Empty:"))
    assert got is not None
    assert got[0].headers == (("x-a", "padded"), ("x-empty", ""))


# -- Response.header -------------------------------------------------------------


def test_header_lookup_ignores_case_and_joins_repeats() -> None:
    resp = response(("Via", "a"), ("X-One", "1"), ("VIA", "b"))
    assert resp.header("vIa") == "a, b"
    assert resp.header("X-ONE") == "1"
    assert resp.header("absent") is None


# -- check_upgrade -----------------------------------------------------------------


def test_a_valid_answer_without_subprotocol_returns_none() -> None:
    assert check_upgrade(response(*VALID), KEY, ("chat",), ()) is None


def test_tokens_are_compared_in_any_case_and_connection_may_list_several() -> None:
    resp = response(
        ("Upgrade", "WebSocket"),
        ("Connection", "keep-alive, UPGRADE"),
        ("Sec-WebSocket-Accept", ACCEPT),
    )
    assert check_upgrade(resp, KEY, (), ()) is None


@pytest.mark.parametrize(
    "upgrade", [("h2c, websocket",), ("websocket", "h2c")], ids=["one-header", "two-headers"]
)
def test_an_upgrade_to_websocket_and_another_protocol_is_refused(
    upgrade: tuple[str, ...],
) -> None:
    headers = [h for h in VALID if h[0] != "Upgrade"] + [("Upgrade", u) for u in upgrade]
    with pytest.raises(ProtocolError, match=r"the Upgrade header is not 'websocket'"):
        check_upgrade(response(*headers), KEY, (), ())


def test_the_chosen_subprotocol_is_returned() -> None:
    resp = response(*VALID, ("Sec-WebSocket-Protocol", "v2.chat"))
    assert check_upgrade(resp, KEY, ("v1.chat", "v2.chat"), ()) == "v2.chat"


@pytest.mark.parametrize("upgrade", [None, "", "h2c", "websockets"])
def test_an_upgrade_that_is_not_websocket_is_refused(upgrade: str | None) -> None:
    headers = [h for h in VALID if h[0] != "Upgrade"]
    if upgrade is not None:
        headers.append(("Upgrade", upgrade))
    with pytest.raises(ProtocolError) as info:
        check_upgrade(response(*headers), KEY, (), ())
    assert str(info.value) == (
        f"invalid handshake response: the Upgrade header is not 'websocket' ({upgrade!r})"
    )


@pytest.mark.parametrize("connection", [None, "keep-alive", "upgraded"])
def test_a_connection_header_without_upgrade_is_refused(connection: str | None) -> None:
    headers = [h for h in VALID if h[0] != "Connection"]
    if connection is not None:
        headers.append(("Connection", connection))
    with pytest.raises(ProtocolError) as info:
        check_upgrade(response(*headers), KEY, (), ())
    assert str(info.value) == (
        f"invalid handshake response: the Connection header does not say 'upgrade' ({connection!r})"
    )


@pytest.mark.parametrize(
    "accept", [None, accept_token("another key"), ACCEPT.lower(), f"{ACCEPT}, {ACCEPT}"]
)
def test_an_accept_token_that_does_not_match_the_key_is_refused(accept: str | None) -> None:
    headers = [h for h in VALID if h[0] != "Sec-WebSocket-Accept"]
    if accept is not None:
        headers.append(("Sec-WebSocket-Accept", accept))
    with pytest.raises(ProtocolError) as info:
        check_upgrade(response(*headers), KEY, (), ())
    assert str(info.value) == (
        "invalid handshake response: Sec-WebSocket-Accept does not match the request's key"
    )


@pytest.mark.parametrize(
    ("offered", "shown"), [((), "none"), (("a", "b"), "a, b")], ids=["none", "two"]
)
def test_a_subprotocol_the_client_did_not_offer_is_refused(
    offered: tuple[str, ...], shown: str
) -> None:
    resp = response(*VALID, ("Sec-WebSocket-Protocol", "c"))
    with pytest.raises(ProtocolError) as info:
        check_upgrade(resp, KEY, offered, ())
    assert str(info.value) == (
        "invalid handshake response: the server chose subprotocol 'c', "
        f"which the client did not offer (offered: {shown})"
    )


def test_two_subprotocols_in_the_answer_are_refused() -> None:
    resp = response(*VALID, ("Sec-WebSocket-Protocol", "a"), ("Sec-WebSocket-Protocol", "b"))
    with pytest.raises(ProtocolError, match=r"chose subprotocol 'a, b'"):
        check_upgrade(resp, KEY, ("a", "b"), ())


def test_an_extension_the_client_did_not_offer_is_refused_by_name() -> None:
    resp = response(
        *VALID, ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits=15")
    )
    with pytest.raises(ProtocolError) as info:
        check_upgrade(resp, KEY, (), ())
    assert str(info.value) == (
        "invalid handshake response: the server chose extension 'permessage-deflate', "
        "which the client did not offer"
    )


def test_an_empty_extensions_header_is_no_extension() -> None:
    resp = response(*VALID, ("Sec-WebSocket-Extensions", " , "))
    assert check_upgrade(resp, KEY, (), ()) is None
