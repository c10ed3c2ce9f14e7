"""GeneXus wire formats: the NotificationInfo JSON (pure, no I/O)."""

from __future__ import annotations

import json
from typing import Any

import attrs

__all__ = ["NotificationInfo", "parse_json"]

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

    Example:
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

    Example:
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
