"""Validation and parsing of ws:// and wss:// URLs."""

from __future__ import annotations

import base64

import pytest

from trio_clientsocket import ClientSocket, InvalidURLError
from trio_clientsocket._url import parse_url


def test_ws_default_port() -> None:
    t = parse_url("ws://example.com/app/gxwebsocket")
    assert (t.secure, t.host, t.port, t.resource) == (False, "example.com", 80, "/app/gxwebsocket")
    assert t.url == "ws://example.com/app/gxwebsocket"
    assert t.host_header == "example.com"
    assert t.username is None
    assert t.password is None
    assert t.basic_auth() is None


def test_wss_default_port() -> None:
    t = parse_url("wss://example.com/x")
    assert (t.secure, t.host, t.port, t.resource) == (True, "example.com", 443, "/x")
    assert t.host_header == "example.com"


def test_explicit_port() -> None:
    t = parse_url("ws://example.com:8080/app/gxwebsocket?abc")
    assert (t.host, t.port, t.resource, t.secure) == (
        "example.com",
        8080,
        "/app/gxwebsocket?abc",
        False,
    )
    assert t.host_header == "example.com:8080"


def test_explicit_default_port_left_out_of_host_header() -> None:
    assert parse_url("ws://h:80/").host_header == "h"
    assert parse_url("wss://h:443/").host_header == "h"
    assert parse_url("wss://h:80/").host_header == "h:80"
    assert parse_url("ws://h:443/").host_header == "h:443"


def test_highest_port() -> None:
    assert parse_url("ws://h:65535/").port == 65535


def test_scheme_is_case_insensitive() -> None:
    t = parse_url("WSS://Example.COM/")
    assert t.secure
    assert t.port == 443
    assert t.host == "example.com"


def test_ipv6_literal() -> None:
    t = parse_url("ws://[::1]:9000/x")
    assert (t.host, t.port, t.resource) == ("::1", 9000, "/x")
    assert t.host_header == "[::1]:9000"


def test_ipv6_literal_default_port() -> None:
    t = parse_url("wss://[2001:db8::1]/")
    assert t.port == 443
    assert t.host_header == "[2001:db8::1]"


def test_resource_includes_query() -> None:
    assert parse_url("ws://h/app/gxwebsocket?client-1&x=2").resource == (
        "/app/gxwebsocket?client-1&x=2"
    )


@pytest.mark.parametrize(
    ("url", "resource"),
    [("ws://h", "/"), ("ws://h:81", "/"), ("ws://h?q=1", "/?q=1"), ("ws://h/", "/")],
)
def test_empty_path_gives_slash(url: str, resource: str) -> None:
    assert parse_url(url).resource == resource


def test_user_and_password() -> None:
    t = parse_url("wss://alice:s3cret@example.com/ws")
    assert (t.username, t.password) == ("alice", "s3cret")
    assert t.host == "example.com"
    assert t.host_header == "example.com"
    expected = "Basic " + base64.b64encode(b"alice:s3cret").decode()
    assert t.basic_auth() == ("Authorization", expected)
    assert t.basic_auth() == ("Authorization", "Basic YWxpY2U6czNjcmV0")


def test_percent_encoded_credentials_are_decoded() -> None:
    t = parse_url("ws://u%40x:p%3Ass@h/")
    assert (t.username, t.password) == ("u@x", "p:ss")
    assert t.basic_auth() == ("Authorization", "Basic " + base64.b64encode(b"u@x:p:ss").decode())


def test_user_without_password() -> None:
    t = parse_url("ws://bob@h/")
    assert (t.username, t.password) == ("bob", None)
    assert t.basic_auth() == ("Authorization", "Basic " + base64.b64encode(b"bob:").decode())


def test_password_not_in_repr() -> None:
    assert "s3cret" not in repr(parse_url("ws://alice:s3cret@h/"))


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://example.com/", "must start with ws:// or wss://"),
        ("https://example.com/", "must start with ws:// or wss://"),
        ("ftp://example.com/", "must start with ws:// or wss://"),
        ("example.com/app", "must start with ws:// or wss://"),
        ("//example.com/app", "must start with ws:// or wss://"),
        ("", "empty"),
        ("ws://exa mple.com/", "spaces"),
        ("ws://example.com/a b", "spaces"),
        (" ws://example.com/", "spaces"),
        ("ws://example.com/\t", "spaces"),
        ("ws://example.com/\n", "control characters"),
        ("ws://example.com/\x00", "control characters"),
        ("ws://example.com/\x1f", "control characters"),
        ("ws://example.com/\x7f", "control characters"),
        ("ws://", "has no host"),
        ("ws:///path", "has no host"),
        ("ws://:80/", "has no host"),
        ("wss://user@/", "has no host"),
        ("ws://h/#frag", "fragment"),
        ("ws://h/x?q=1#frag", "fragment"),
        ("ws://h/#", "fragment"),
        ("ws://h:0/", "port 0"),
        ("ws://h:99999/", "Port out of range"),
        ("ws://h:65536/", "Port out of range"),
        ("ws://h:abc/", "malformed URL"),
        ("ws://h:-1/", "malformed URL"),
        ("ws://[::1/", "malformed URL"),
    ],
)
def test_malformed_urls(url: str, reason: str) -> None:
    with pytest.raises(InvalidURLError, match=reason) as info:
        parse_url(url)
    assert isinstance(info.value, ValueError)
    assert str(info.value)


@pytest.mark.parametrize("value", [None, b"ws://h/", 42, ["ws://h/"]])
def test_non_str_rejected(value: object) -> None:
    with pytest.raises(InvalidURLError, match="URL must be a str, not"):
        parse_url(value)


def test_invalid_url_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="must start with ws://"):
        parse_url("http://x/")


def test_client_socket_rejects_bad_url_at_construction() -> None:
    with pytest.raises(InvalidURLError, match="must start with ws:// or wss://"):
        ClientSocket("http://x/")


def test_client_socket_accepts_good_url_at_construction() -> None:
    ClientSocket("ws://x/")
