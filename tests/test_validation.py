"""What the front door refuses, and how it words it: ClientSocket's options,
send()'s messages, close()'s code and reason, handshake headers, and the
policy leaves' own checks (Backoff, NotificationInfo). None of these needs a
connection: every check runs before the socket does anything."""

from __future__ import annotations

import re
import ssl
from typing import Any

import pytest
import trio

from trio_clientsocket import (
    Backoff,
    ClientSocket,
    InvalidURLError,
    NotificationInfo,
    SocketClosedError,
)

URL = "ws://app.test/app/gxwebsocket?client-1"
SECRET = "s3cr3t-value"


def make(**options: Any) -> ClientSocket:
    return ClientSocket(URL, **options)


def exactly(message: str) -> str:
    """A ``match`` pattern for exactly this message."""
    return f"^{re.escape(message)}$"


# -- ClientSocket options ------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -1, 0.0, True, "5", float("nan"), None])
@pytest.mark.parametrize("name", ["connect_timeout", "close_timeout"])
def test_required_timeouts_must_be_positive_numbers(name: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"^{name} must be a number > 0$"):
        make(**{name: value})


@pytest.mark.parametrize("value", [0, -0.5, False, "20", float("nan")])
@pytest.mark.parametrize("name", ["ping_interval", "ping_timeout"])
def test_keepalive_timeouts_must_be_positive_numbers_or_none(name: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"^{name} must be a number > 0 or None$"):
        make(**{name: value})


def test_keepalive_may_be_disabled_and_timeouts_may_be_floats_or_ints() -> None:
    sock = make(ping_interval=None, ping_timeout=None, connect_timeout=1, close_timeout=0.001)
    assert sock.statistics().attempts == 0


@pytest.mark.parametrize("value", [0, -1, True, 1.5, "10", None])
@pytest.mark.parametrize(
    "name", ["max_message_size", "outbox_size", "event_buffer", "buffer_bytes"]
)
def test_sizes_must_be_ints_of_at_least_one(name: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"^{name} must be an int >= 1$"):
        make(**{name: value})


def test_sizes_of_one_are_accepted() -> None:
    make(max_message_size=1, outbox_size=1, event_buffer=1, buffer_bytes=1)


@pytest.mark.parametrize("url", [42, b"ws://h/", ["ws://h/"]])
def test_a_url_that_is_neither_str_nor_callable_is_refused(url: object) -> None:
    with pytest.raises(
        InvalidURLError, match=exactly(f"url must be a str or a callable, not {type(url).__name__}")
    ):
        ClientSocket(url)  # type: ignore[arg-type]


def test_a_callable_url_is_not_called_before_the_socket_opens() -> None:
    calls: list[int] = []

    def url() -> str:
        calls.append(1)
        return URL

    ClientSocket(url)
    assert calls == []


@pytest.mark.parametrize("reconnect", [5, "forever", {"initial": 1}])
def test_reconnect_must_be_a_backoff_or_none(reconnect: object) -> None:
    with pytest.raises(TypeError, match=r"^reconnect must be a Backoff or None$"):
        make(reconnect=reconnect)


def test_an_unknown_transport_is_refused_naming_the_choices() -> None:
    message = "transport must be one of ('websockets', 'wsproto', 'trio-websocket'), got 'tcp'"
    with pytest.raises(ValueError, match=exactly(message)):
        make(transport="tcp")


def test_an_unknown_overflow_is_refused_naming_the_choices() -> None:
    message = "overflow must be one of ('wait', 'raise', 'drop-oldest'), got 'block'"
    with pytest.raises(ValueError, match=exactly(message)):
        make(overflow="block")


def test_ssl_context_must_be_an_ssl_context() -> None:
    with pytest.raises(TypeError, match=r"^ssl_context must be an ssl.SSLContext$"):
        make(ssl_context=object())
    make(ssl_context=ssl.create_default_context())


@pytest.mark.parametrize(
    "subprotocols",
    ["chat", ["a,b"], [""], ["a b"], ["chät"], [1], ("ok", None)],
    ids=["a-string", "comma", "empty", "space", "non-ascii", "int", "none"],
)
def test_subprotocols_must_be_tokens(subprotocols: object) -> None:
    message = "subprotocols must be a sequence of tokens (str without , or spaces)"
    with pytest.raises(ValueError, match=exactly(message)):
        make(subprotocols=subprotocols)


def test_subprotocols_may_be_any_sequence_of_tokens() -> None:
    make(subprotocols=("v2.chat", "v1.chat"))
    make(subprotocols=["x-y_z"])


def test_connect_limiter_must_be_a_capacity_limiter() -> None:
    with pytest.raises(TypeError, match=r"^connect_limiter must be a trio.CapacityLimiter$"):
        make(connect_limiter=trio.Semaphore(2))
    make(connect_limiter=trio.CapacityLimiter(2))


# -- handshake headers ---------------------------------------------------------------


@pytest.mark.parametrize("headers", ["X-A: 1", b"X-A: 1"], ids=["str", "bytes"])
def test_headers_as_a_string_are_refused(headers: object) -> None:
    message = "headers must be a mapping or (name, value) pairs, not a string"
    with pytest.raises(TypeError, match=exactly(message)):
        make(headers=headers)


@pytest.mark.parametrize(
    "headers",
    [42, [("X-A",)], [("X-A", "1", "2")], [42], ["X-A: 1"]],
    ids=["not-iterable", "one-item", "three-items", "not-a-pair", "a-string-item"],
)
def test_headers_that_are_not_pairs_are_refused(headers: object) -> None:
    message = "headers must be a mapping or (name, value) pairs"
    with pytest.raises(TypeError, match=exactly(message)):
        make(headers=headers)


def test_a_two_character_string_item_is_refused_like_any_string_item() -> None:
    """ "ab" unpacks to ("a", "b"): an accident, not a header. A string item of
    any other length is refused; this one becomes the header ``a: b``."""
    with pytest.raises(TypeError):
        make(headers=["ab", ("X-A", "1")])


@pytest.mark.parametrize(
    "headers", [{"X-A": 1}, [(b"X-A", "1")], {"X-A": None}], ids=["int-value", "bytes-name", "none"]
)
def test_header_names_and_values_must_be_str(headers: object) -> None:
    with pytest.raises(TypeError, match=r"^header names and values must be str \(header "):
        make(headers=headers)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("", SECRET),
        ("X A", SECRET),
        ("X:A", SECRET),
        ("X\tA", SECRET),
        ("Xé", SECRET),
        ("X-A", f"{SECRET}\r\nInjected: 1"),
        ("X-A", f"{SECRET}\n"),
        ("X-A", f"{SECRET}\0"),
    ],
    ids=["empty", "space", "colon", "tab", "non-ascii", "crlf", "lf", "nul"],
)
def test_an_invalid_header_is_refused_without_showing_its_value(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=exactly(f"invalid header {name!r}")) as info:
        make(headers={name: value})
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    "name", ["Host", "upgrade", "Sec-WebSocket-Key", "SEC-WEBSOCKET-PROTOCOL", "Content-Length"]
)
def test_headers_the_handshake_sets_cannot_be_given(name: str) -> None:
    message = f"header {name!r} is set by the WebSocket handshake itself and cannot be given"
    with pytest.raises(ValueError, match=exactly(message)):
        make(headers=[(name, "x")])


def test_a_header_value_that_is_not_latin_1_is_refused_without_showing_it() -> None:
    message = "header 'Authorization' has a value that is not Latin-1"
    with pytest.raises(ValueError, match=exactly(message)) as info:
        make(headers={"Authorization": f"Bearer {SECRET}\u20ac"})
    assert SECRET not in str(info.value)


def test_valid_headers_in_every_accepted_form() -> None:
    make(headers={"X-A": "é ok", "Authorization": "Bearer x"})
    make(headers=[("X-A", "1"), ("X-A", "2")])
    make(headers=iter([("X-A", "1")]))
    make(headers=lambda: 42)  # a callable is evaluated on each attempt, not here


# -- send() ----------------------------------------------------------------------------


@pytest.mark.parametrize("message", [42, None, ["a"], 1.5])
async def test_send_refuses_what_is_neither_str_nor_bytes(message: object) -> None:
    sock = ClientSocket()
    expected = f"message must be str or bytes, not {type(message).__name__}"
    with pytest.raises(TypeError, match=exactly(expected)):
        await sock.send(message)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        sock.send_nowait(message)  # type: ignore[arg-type]


@pytest.mark.parametrize(("message", "position"), [("\ud800", 0), ("ok \udfff", 3), ("é\ud83d", 1)])
async def test_send_refuses_text_utf8_cannot_encode_and_says_where(
    message: str, position: int
) -> None:
    sock = ClientSocket()
    expected = (
        f"message is not valid text: surrogates not allowed at position {position} "
        "(a lone surrogate cannot be sent as UTF-8)"
    )
    with pytest.raises(ValueError, match=exactly(expected)) as info:
        await sock.send(message)
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__  # the UnicodeEncodeError is not shown


class Text(str):
    """A str subclass (an enum value or a markup string, say)."""


async def test_a_str_subclass_with_a_lone_surrogate_is_refused_too() -> None:
    with pytest.raises(ValueError, match=r"^message is not valid text: "):
        await ClientSocket().send(Text("x\ud800"))


@pytest.mark.parametrize(
    "message", [b"x", bytearray(b"x"), memoryview(b"x"), "x", Text("x")], ids=type
)
async def test_a_valid_message_on_a_socket_never_opened_is_refused_as_closed(
    message: Any,
) -> None:
    """Validation comes first; then a socket that is not open refuses every message."""
    sock = ClientSocket()
    with pytest.raises(SocketClosedError, match=r"^enter the socket first: "):
        await sock.send(message)
    with pytest.raises(SocketClosedError):
        sock.send_nowait(message)


# -- close() ----------------------------------------------------------------------------


@pytest.mark.parametrize("code", [True, 1000.0, "1000", None])
async def test_close_code_must_be_an_int(code: object) -> None:
    with pytest.raises(TypeError, match=r"^close code must be an int$"):
        await ClientSocket().close(code)  # type: ignore[arg-type]


@pytest.mark.parametrize("code", [999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, -1, 0])
async def test_close_codes_an_endpoint_may_not_send_are_refused(code: int) -> None:
    message = f"close code {code} may not be sent: use 1000-1003, 1007-1014, or 3000-4999"
    with pytest.raises(ValueError, match=exactly(message)):
        await ClientSocket().close(code)


@pytest.mark.parametrize("code", [1000, 1003, 1007, 1014, 3000, 4999])
async def test_close_codes_an_endpoint_may_send_are_accepted(code: int) -> None:
    assert await ClientSocket().close(code, "x" * 123) == ()


@pytest.mark.parametrize("reason", [b"bye", None, 1])
async def test_close_reason_must_be_a_str(reason: object) -> None:
    with pytest.raises(TypeError, match=r"^close reason must be a str$"):
        await ClientSocket().close(1000, reason)  # type: ignore[arg-type]


async def test_close_reason_must_be_valid_text() -> None:
    with pytest.raises(ValueError, match=r"^close reason is not valid text$") as info:
        await ClientSocket().close(1000, "bye \ud800")
    assert info.value.__suppress_context__  # the UnicodeEncodeError is not shown


async def test_close_reason_must_fit_in_a_close_frame_counted_in_utf8_bytes() -> None:
    assert await ClientSocket().close(1000, "é" * 61 + "a") == ()  # 123 bytes
    message = "close reason is 124 bytes in UTF-8; at most 123 fit in a close frame"
    with pytest.raises(ValueError, match=exactly(message)):
        await ClientSocket().close(1000, "é" * 62)  # 62 characters, 124 bytes


# -- open() before the block ---------------------------------------------------------


async def test_open_before_entering_the_block_says_how_to_enter() -> None:
    sock = ClientSocket()
    message = (
        "enter the socket first: 'async with ClientSocket(url) as sock:' "
        "(it opens url on entry; open() switches to another one)"
    )
    with pytest.raises(RuntimeError, match=exactly(message)):
        await sock.open(URL)
    assert sock.url is None


# -- the policy leaves -----------------------------------------------------------------


@pytest.mark.parametrize("min_uptime", [-1, -0.001, float("nan")])
def test_backoff_min_uptime_must_not_be_negative(min_uptime: float) -> None:
    message = f"min_uptime must be >= 0, got {float(min_uptime)!r}"
    with pytest.raises(ValueError, match=exactly(message)):
        Backoff(min_uptime=min_uptime)


def test_backoff_min_uptime_may_be_zero() -> None:
    assert Backoff(min_uptime=0).min_uptime == 0.0


def test_notification_fields_that_are_not_strings_are_kept_as_their_json() -> None:
    info = NotificationInfo.from_json(
        '{"Id": 7, "Object": null, "Message": {"text": ["hi", 1.5]}, "GroupName": 3}'
    )
    assert info is not None
    assert info.id == "7"
    assert info.object == ""
    assert info.message == '{"text": ["hi", 1.5]}'
    assert info.group_name is None
