"""The GeneXus NotificationInfo format, parse_json, and the MessageReceived views."""

from __future__ import annotations

import json
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_clientsocket import (
    Closed,
    Connected,
    Event,
    MessageReceived,
    NotificationInfo,
    genexus_endpoint,
    new_client_id,
)
from trio_clientsocket._genexus import MAX_JSON_DEPTH, parse_json


def nested_lists(depth: int) -> str:
    return "[" * depth + "]" * depth


def nested_objects(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


def test_from_json_exact_genexus_text() -> None:
    n = NotificationInfo.from_json('{"Id":"1","Object":"Chat","Message":"hi"}')
    assert n == NotificationInfo(id="1", object="Chat", message="hi", group_name=None)


def test_from_json_with_group_name() -> None:
    n = NotificationInfo.from_json('{"Id":"1","Object":"Chat","Message":"hi","GroupName":"room-7"}')
    assert n == NotificationInfo(id="1", object="Chat", message="hi", group_name="room-7")


def test_from_json_message_only() -> None:
    assert NotificationInfo.from_json('{"Message": "hi"}') == NotificationInfo(message="hi")


def test_from_json_message_holding_json_text_is_kept_as_text() -> None:
    n = NotificationInfo.from_json('{"Id": "", "Object": "", "Message": "{\\"a\\": 1}"}')
    assert n is not None
    assert n.message == '{"a": 1}'


def test_to_json_exact() -> None:
    text = NotificationInfo(message="hi").to_json()
    assert text == '{"Id": "", "Object": "", "Message": "hi"}'
    assert list(json.loads(text)) == ["Id", "Object", "Message"]


def test_to_json_with_group_name() -> None:
    text = NotificationInfo(id="1", object="o", message="m", group_name="g").to_json()
    assert text == '{"Id": "1", "Object": "o", "Message": "m", "GroupName": "g"}'


short_text = st.text(max_size=30)


@settings(max_examples=100)
@given(
    id=short_text,
    object=short_text,
    message=short_text,
    group_name=st.none() | short_text,
)
def test_to_json_round_trip(id: str, object: str, message: str, group_name: str | None) -> None:
    n = NotificationInfo(id=id, object=object, message=message, group_name=group_name)
    text = n.to_json()
    keys = ["Id", "Object", "Message"] + ([] if group_name is None else ["GroupName"])
    assert list(json.loads(text)) == keys
    assert NotificationInfo.from_json(text) == n
    assert MessageReceived(text).notification == n


@pytest.mark.parametrize(
    "text",
    [
        '{"Id": "1", "Object": "", "Message": "hi", "Extra": 1}',
        '{"Message": "hi", "id": "1"}',
        '{"Id": "1", "Object": "Chat"}',
        "{}",
        '[{"Id": "1", "Object": "", "Message": "hi"}]',
        '"Message"',
        "42",
        "null",
        "true",
        "hi",
        "plain text with Message in it",
        "",
        '{"Id": "1", "Object": "", "Message": "hi"',
        "{'Message': 'hi'}",
        '{"Message": "hi"} trailing',
    ],
)
def test_not_a_notification(text: str) -> None:
    assert NotificationInfo.from_json(text) is None
    assert MessageReceived(text).notification is None


@pytest.mark.parametrize("value", [None, [], "x", 1, {"Id": "1"}, {"Message": "m", "X": ""}])
def test_from_value_not_a_notification(value: object) -> None:
    assert NotificationInfo.from_value(value) is None


def test_parse_json_values() -> None:
    assert parse_json('{"a": [1, 2]}') == {"a": [1, 2]}
    assert parse_json("[1, 2.5, true, false]") == [1, 2.5, True, False]
    assert parse_json('"text"') == "text"
    assert parse_json("-3") == -3
    assert parse_json('  \n{"a": 1}  ') == {"a": 1}


@pytest.mark.parametrize(
    "text",
    ["", "   ", "hello", "{", "[1, 2", "tru", "1 2", "{'a': 1}", "<xml/>", "undefined"],
)
def test_parse_json_not_json(text: str) -> None:
    assert parse_json(text) is None


def test_max_depth_is_64() -> None:
    assert MAX_JSON_DEPTH == 64


def test_parse_json_accepts_nesting_up_to_the_limit() -> None:
    assert parse_json(nested_lists(64)) is not None
    assert parse_json(nested_objects(64)) is not None
    value = parse_json(nested_lists(64))
    for _ in range(63):
        assert isinstance(value, list)
        assert len(value) == 1
        value = value[0]
    assert value == []


@pytest.mark.parametrize("depth", [65, 66, 100, 1000, 100_000])
def test_parse_json_rejects_deeper_nesting(depth: int) -> None:
    assert parse_json(nested_lists(depth)) is None
    assert parse_json(nested_objects(depth)) is None
    assert MessageReceived(nested_lists(depth)).json is None


def test_parse_json_depth_counts_mixed_containers() -> None:
    mixed = '{"a": [' * 32 + "]}" * 32  # 64 levels
    assert parse_json(mixed) is not None
    assert parse_json("[" + mixed + "]") is None


def test_message_received_views() -> None:
    text = '{"Id":"7","Object":"Chat","Message":"hi"}'
    event = MessageReceived(text)
    assert event.message is text
    assert event.json == {"Id": "7", "Object": "Chat", "Message": "hi"}
    assert event.notification == NotificationInfo(id="7", object="Chat", message="hi")
    assert event.message == '{"Id":"7","Object":"Chat","Message":"hi"}'
    assert event.json is event.json


def test_message_received_plain_text() -> None:
    event = MessageReceived("  plain text  ")
    assert event.json is None
    assert event.notification is None
    assert event.message == "  plain text  "


def test_message_received_json_not_notification() -> None:
    event = MessageReceived("[1, 2, 3]")
    assert event.json == [1, 2, 3]
    assert event.notification is None


@pytest.mark.parametrize("data", [b'{"Id":"1","Object":"","Message":"hi"}', b"[1]", b"", b"\xff"])
def test_message_received_bytes(data: bytes) -> None:
    event = MessageReceived(data)
    assert event.json is None
    assert event.notification is None
    assert event.message == data
    assert isinstance(event.message, bytes)


def test_message_received_is_an_event_and_compares_by_message() -> None:
    assert isinstance(MessageReceived("x"), Event)
    assert MessageReceived("x") == MessageReceived("x")
    assert MessageReceived("x") != MessageReceived("y")
    assert MessageReceived("x") != MessageReceived(b"x")
    assert hash(MessageReceived("x")) == hash(MessageReceived("x"))


def describe(event: Event) -> str:
    match event:
        case Connected(url=url):
            return f"connected {url}"
        case MessageReceived(message=str() as text):
            return f"text {text}"
        case MessageReceived(message=bytes() as data):
            return f"bytes {len(data)}"
        case _:
            return "other"


def test_match_statement() -> None:
    assert describe(MessageReceived("hello")) == "text hello"
    assert describe(MessageReceived(b"\x00\x01")) == "bytes 2"
    assert describe(Connected(url="ws://h/")) == "connected ws://h/"
    assert describe(Closed(url=None)) == "other"


def test_match_keyword_pattern_binds_raw_message() -> None:
    text = '{"Id": "1", "Object": "", "Message": "hi"}'
    event: Event = MessageReceived(text)
    match event:
        case MessageReceived(message=message):
            assert message is text
        case _:
            pytest.fail("MessageReceived(message=...) did not match")


def test_match_positional_pattern() -> None:
    event: Event = MessageReceived("hi")
    match event:
        case MessageReceived("hi"):
            pass
        case _:
            pytest.fail("MessageReceived('hi') did not match")


# -- the endpoint helper --------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "svc", "url"),
    [
        ("http://host/app/", False, "ws://host/app/gxwebsocket?c1"),
        ("https://host/app", False, "wss://host/app/gxwebsocket?c1"),
        ("http://host:8080/", False, "ws://host:8080/gxwebsocket?c1"),
        ("http://host", False, "ws://host/gxwebsocket?c1"),
        ("https://host/a/b/", True, "wss://host/a/b/gxwebsocket.svc?c1"),
        ("ws://host/app/", False, "ws://host/app/gxwebsocket?c1"),
    ],
)
def test_endpoint_url(base: str, svc: bool, url: str) -> None:
    endpoint = genexus_endpoint(base, "c1", svc=svc)
    assert endpoint.url == url
    assert endpoint.client_id == "c1"
    assert endpoint.headers == {"Cookie": "GX_CLIENT_ID=c1"}


def test_endpoint_generates_a_guid() -> None:
    endpoint = genexus_endpoint("http://host/app/")
    assert str(uuid.UUID(endpoint.client_id)) == endpoint.client_id
    assert endpoint.url.endswith("/gxwebsocket?" + endpoint.client_id)
    assert new_client_id() != new_client_id()


@pytest.mark.parametrize("client_id", ["id=abc", "a&b", "has space", "", "a#b", "a?b", "a/b"])
def test_endpoint_rejects_bad_client_ids(client_id: str) -> None:
    with pytest.raises(ValueError, match="client id"):
        genexus_endpoint("http://host/app/", client_id)


@pytest.mark.parametrize("base", ["ftp://host/", "host/app", "http://host/app?x=1", "http:///app"])
def test_endpoint_rejects_bad_base_urls(base: str) -> None:
    with pytest.raises(ValueError, match="base URL"):
        genexus_endpoint(base, "c1")
