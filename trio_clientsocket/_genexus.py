"""GeneXus wire formats: the NotificationInfo JSON (pure, no I/O)."""

from __future__ import annotations

import json
import urllib.parse
import uuid
from typing import Any

import attrs

from ._url import redact_url, redacted_repr

__all__ = [
    "GeneXusEndpoint",
    "NotificationInfo",
    "check_client_id",
    "genexus_endpoint",
    "new_client_id",
    "parse_json",
]

# Bounds on what a parsed view may hold: a hostile server must not make a
# MessageReceived cost more than the text it came in.
MAX_JSON_DEPTH = 64


def _depth(value: Any, limit: int) -> bool:
    """True when ``value`` nests no deeper than ``limit`` (iterative, no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            if level > limit:
                return False
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
    return True


def parse_json(text: str) -> Any:
    """Parse ``text`` with ``json.loads`` only; None when it is not JSON, or nests
    deeper than ``MAX_JSON_DEPTH``.

    Examples:
        >>> parse_json('{"a": [1, 2]}')
        {'a': [1, 2]}
        >>> parse_json("hello") is None
        True
    """
    stripped = text.lstrip()
    if not stripped or stripped[0] not in '{["-0123456789tfnNI':
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if _depth(value, MAX_JSON_DEPTH) else None


@attrs.frozen
class NotificationInfo:
    """The GeneXus ``NotificationInfo`` SDT, as its servers send it.

    The JSON keys are capitalised exactly as GeneXus writes them (``Id``,
    ``Object``, ``Message``, ``GroupName``); ``Message`` is often itself JSON text.

    Examples:
        >>> n = NotificationInfo.from_json('{"Id": "1", "Object": "", "Message": "hi"}')
        >>> n.message
        'hi'
        >>> NotificationInfo(message="hi").to_json()
        '{"Id": "", "Object": "", "Message": "hi"}'
    """

    id: str = ""
    """``Id``: an identifier the sender chose."""
    object: str = ""
    """``Object``: the server object the message is meant for (empty for any)."""
    message: str = ""
    """``Message``: the payload text."""
    group_name: str | None = None
    """``GroupName``: sent by the Java helper only."""

    @classmethod
    def from_value(cls, value: Any) -> NotificationInfo | None:
        """The NotificationInfo a parsed JSON value holds, or None if it is not one.

        A NotificationInfo is an object with a ``Message`` key and no keys other
        than ``Id``, ``Object``, ``Message`` and ``GroupName``.
        """
        if not isinstance(value, dict) or "Message" not in value:
            return None
        if not value.keys() <= {"Id", "Object", "Message", "GroupName"}:
            return None
        fields = {}
        for key in ("Id", "Object", "Message"):
            item = value.get(key, "")
            if not isinstance(item, str):
                item = json.dumps(item) if item is not None else ""
            fields[key] = item
        group = value.get("GroupName")
        return cls(
            id=fields["Id"],
            object=fields["Object"],
            message=fields["Message"],
            group_name=group if isinstance(group, str) else None,
        )

    @classmethod
    def from_json(cls, text: str) -> NotificationInfo | None:
        """Parse GeneXus JSON; None when ``text`` is not a NotificationInfo."""
        return cls.from_value(parse_json(text))

    def to_json(self) -> str:
        """Serialise to the exact GeneXus JSON (``GroupName`` only when set)."""
        value = {"Id": self.id, "Object": self.object, "Message": self.message}
        if self.group_name is not None:
            value["GroupName"] = self.group_name
        return json.dumps(value)


_FORBIDDEN_IN_ID = set("=&#?/ \t\r\n%+")


def new_client_id() -> str:
    """A fresh client id: a GUID, as GeneXus clients use.

    Store it and pass it again to keep the same id across runs: GeneXus servers
    address clients by it (``Notify``), and one id may hold several sockets.

    Examples:
        >>> len(new_client_id())
        36
    """
    return str(uuid.uuid4())


def check_client_id(client_id: str) -> str:
    """Return ``client_id`` if GeneXus servers can use it, else raise ValueError.

    GeneXus takes the whole raw query string (Java) or the first query key (.NET)
    as the id, so it must be a bare token: no ``=``, ``&``, spaces, ``#``, ``?``,
    ``/``, ``%`` or ``+``, and not empty.

    Examples:
        >>> check_client_id("2c5a6a48-5b1e-4f0e-9b7e-0c0d1e2f3a4b")
        '2c5a6a48-5b1e-4f0e-9b7e-0c0d1e2f3a4b'
        >>> check_client_id("id=abc")
        Traceback (most recent call last):
        ...
        ValueError: client id 'id=abc' must be a bare token (a GUID): no '=' in it
    """
    if not isinstance(client_id, str) or not client_id:
        raise ValueError("client id must be a non-empty str")
    bad = sorted(_FORBIDDEN_IN_ID.intersection(client_id))
    if bad or not client_id.isprintable():
        what = ", ".join(repr(c) for c in bad) if bad else "control characters"
        raise ValueError(f"client id {client_id!r} must be a bare token (a GUID): no {what} in it")
    return client_id


@attrs.frozen
class GeneXusEndpoint:
    """The WebSocket endpoint of a GeneXus application, for one client id.

    Build it with ``genexus_endpoint(base_url, client_id)``.

    Examples:
        >>> e = genexus_endpoint("https://example.com/MyApp/", "abc")
        >>> e.url
        'wss://example.com/MyApp/gxwebsocket?abc'
        >>> e.headers
        {'Cookie': 'GX_CLIENT_ID=abc'}
    """

    url: str = attrs.field(repr=redacted_repr)
    """``ws[s]://host/base/gxwebsocket?<client_id>``, credentials of the base URL
    included (the repr shows them as ``***``, as every URL is shown)."""
    client_id: str
    """The client id (generated when none was given: keep it to reuse it)."""

    @property
    def headers(self) -> dict[str, str]:
        """Handshake headers that tie the socket to the client's HTTP session:
        GeneXus ``Notify()`` targets the ``GX_CLIENT_ID`` cookie's id."""
        return {"Cookie": f"GX_CLIENT_ID={self.client_id}"}


def genexus_endpoint(
    base_url: str, client_id: str | None = None, *, svc: bool = False
) -> GeneXusEndpoint:
    """The GeneXus notification endpoint under ``base_url``.

    ``http(s)://host/app/`` becomes ``ws(s)://host/app/gxwebsocket?<client_id>``
    (``ws://`` and ``wss://`` base URLs are taken as they are). ``svc=True`` gives
    ``gxwebsocket.svc``, which older .NET servers map. Without a ``client_id`` a
    GUID is generated (``endpoint.client_id`` tells it).

    Raises:
        ValueError: the base URL is not http(s)/ws(s), is malformed, has a query
            or fragment, or the client id is not a bare token. The message shows
            the base URL with its password and query values as ``***``.

    Examples:
        >>> genexus_endpoint("http://localhost:8080/chat", "c1", svc=True).url
        'ws://localhost:8080/chat/gxwebsocket.svc?c1'
    """
    client_id = check_client_id(client_id) if client_id is not None else new_client_id()
    shown = redact_url(base_url)
    try:
        parts = urllib.parse.urlsplit(base_url)
    except ValueError:  # not shown: urllib's text may quote the netloc, password included
        raise ValueError(f"base URL {shown!r} is malformed (urllib cannot split it)") from None
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme.lower())
    if scheme is None or not parts.netloc:
        raise ValueError(f"base URL {shown!r} must be http://, https://, ws:// or wss://host/...")
    if parts.query or parts.fragment:
        raise ValueError(f"base URL {shown!r} must not have a query or a fragment")
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    resource = "gxwebsocket.svc" if svc else "gxwebsocket"
    url = urllib.parse.urlunsplit((scheme, parts.netloc, path + resource, client_id, ""))
    return GeneXusEndpoint(url=url, client_id=client_id)
