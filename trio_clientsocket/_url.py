"""Validation and parsing of ws:// and wss:// URLs (pure, no I/O)."""

from __future__ import annotations

import base64
import string
import urllib.parse
from collections.abc import Collection

import attrs

from ._errors import InvalidURLError

__all__ = ["Target", "parse_url", "redact_url"]

_DEFAULT_PORTS = {"ws": 80, "wss": 443}


def _hide_values(part: str, visible_keys: Collection[str]) -> str:
    params = []
    for param in part.split("&"):
        key, equals, _ = param.partition("=")
        hidden = equals and key not in visible_keys
        params.append(f"{key}=***" if hidden else param)
    return "&".join(params)


def redact_url(url: object, visible_keys: Collection[str] = ()) -> str:
    """``url`` with its secrets replaced by ``***``, for reprs, logs and output:
    the password (or a userinfo that is a bare token), the value of every
    ``key=value`` query parameter except those named in ``visible_keys``, and
    any fragment. A bare query token, the GeneXus client id
    (``.../gxwebsocket?<id>``), stays visible.

    Examples:
        >>> redact_url("ws://alice:s3cret@host/x?abc&token=t0k&v=2", visible_keys={"v"})
        'ws://alice:***@host/x?abc&token=***&v=2'
        >>> redact_url("ws://TOKEN@host:1?key=S3CRET")
        'ws://***@host:1?key=***'
    """
    text = str(url)
    scheme, sep, rest = text.partition("://")
    if not sep:
        # not a URL as it should be ("http:/u:pw@h", "//u:pw@h"): whatever
        # stands before an "@" may be a credential, and so may the query
        head, hash_, _ = text.partition("#")
        head, question, query = head.partition("?")
        head = "/".join(
            f"***@{segment.rpartition('@')[2]}" if "@" in segment else segment
            for segment in head.split("/")
        )
        if question:
            head = f"{head}?{_hide_values(query, visible_keys)}"
        return f"{head}#***" if hash_ else head
    cut = len(rest)
    for mark in "/?#":
        index = rest.find(mark)
        if 0 <= index < cut:
            cut = index
    authority, tail = rest[:cut], rest[cut:]
    userinfo, at, hostport = authority.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        authority = f"{user}:***@{hostport}" if colon else f"***@{hostport}"
    tail, hash_, fragment = tail.partition("#")
    path, question, query = tail.partition("?")
    if question:
        path = f"{path}?{_hide_values(query, visible_keys)}"
    if hash_:
        path = f"{path}#{'***' if fragment else ''}"
    return f"{scheme}://{authority}{path}"


def redacted_repr(url: object) -> str:
    """``repr()`` of a URL field, password hidden (for attrs ``repr=``)."""
    return repr(redact_url(url)) if url is not None else "None"


@attrs.frozen
class Target:
    """A validated WebSocket URL, split into what a connection needs."""

    url: str = attrs.field(repr=redacted_repr)
    secure: bool
    host: str
    port: int
    resource: str
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)

    @property
    def host_header(self) -> str:
        """The value of the ``Host`` header: the port only when not the default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port == _DEFAULT_PORTS["wss" if self.secure else "ws"]:
            return host
        return f"{host}:{self.port}"

    @property
    def origin(self) -> tuple[bool, str, int]:
        """Scheme, host and port: a redirect that changes any of them goes to
        another origin, where credentials are not sent."""
        return self.secure, self.host, self.port

    def basic_auth(self) -> tuple[str, str] | None:
        """The ``Authorization: Basic`` header for credentials given in the URL."""
        if self.username is None:
            return None
        token = f"{self.username}:{self.password or ''}".encode()
        return "Authorization", "Basic " + base64.b64encode(token).decode("ascii")


def parse_url(url: object) -> Target:
    """Validate ``url`` and split it; raise InvalidURLError with the reason.

    A URL with non-ASCII characters (an IRI) becomes the URI it stands for, as
    RFC 3987 says: the host its IDNA name, the path and query percent-encoded
    as UTF-8 (percent escapes already there stay as they are).

    Examples:
        >>> t = parse_url("ws://example.com:8080/app/gxwebsocket?abc")
        >>> (t.host, t.port, t.resource, t.secure)
        ('example.com', 8080, '/app/gxwebsocket?abc', False)
        >>> t = parse_url("ws://café.test/a%20b/ü?name=zoë")
        >>> (t.host, t.resource)
        ('xn--caf-dma.test', '/a%20b/%C3%BC?name=zo%C3%AB')
    """
    if not isinstance(url, str):
        raise InvalidURLError(f"URL must be a str, not {type(url).__name__}")
    if not url.isascii():
        try:
            url.encode()
        except UnicodeEncodeError:
            raise InvalidURLError(
                f"URL {redact_url(url)!r} is not valid text (a lone surrogate)"
            ) from None
    if not url or " " in url or not url.isprintable():
        raise InvalidURLError(
            f"URL {redact_url(url)!r} is empty or contains spaces or control characters"
        )
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        # urllib's reason may quote the host part, password and all
        reason = str(exc) if "@" not in str(exc) else "urllib cannot split it"
        raise InvalidURLError(f"malformed URL {redact_url(url)!r}: {reason}") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise InvalidURLError(
            f"URL {redact_url(url)!r} must start with ws:// or wss:// (for a GeneXus base "
            "URL such as http://host/app/, build the endpoint first)"
        )
    host = parts.hostname
    if not host:
        raise InvalidURLError(f"URL {redact_url(url)!r} has no host")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise InvalidURLError(
                f"URL {redact_url(url)!r} has a host name that IDNA cannot encode"
            ) from None
    if parts.fragment or url.endswith("#"):
        raise InvalidURLError(
            f"URL {redact_url(url)!r} has a #fragment, which WebSocket URLs may not have"
        )
    if port == 0:
        raise InvalidURLError(f"URL {redact_url(url)!r} has port 0")
    resource = parts.path or "/"
    if parts.query or url.endswith("?"):
        resource += "?" + parts.query
    if not resource.isascii():
        resource = urllib.parse.quote(resource, safe=string.punctuation)
    return Target(
        url=url,
        secure=scheme == "wss",
        host=host,
        port=port if port is not None else _DEFAULT_PORTS[scheme],
        resource=resource,
        username=urllib.parse.unquote(parts.username) if parts.username is not None else None,
        password=urllib.parse.unquote(parts.password) if parts.password is not None else None,
    )


_TO_HTTP = {"ws": "http", "wss": "https"}
_TO_WS = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}


def redirect_url(current: Target, location: str) -> str:
    """The URL a redirect's ``Location`` points to, resolved against the
    current one (``http(s)://`` becomes ``ws(s)://``). Raises InvalidURLError
    for a target that is no WebSocket URL, and for one that would go from
    ``wss://`` to ``ws://``.

    Examples:
        >>> redirect_url(parse_url("ws://h/a/b?x"), "/c")
        'ws://h/c'
        >>> redirect_url(parse_url("wss://h/"), "https://other:8443/ws")
        'wss://other:8443/ws'
    """
    base = current.url
    scheme, sep, rest = base.partition("://")
    joined = urllib.parse.urljoin(f"{_TO_HTTP[scheme.lower()]}{sep}{rest}", location.strip())
    new_scheme, sep, rest = joined.partition("://")
    if new_scheme.lower() not in _TO_WS:
        raise InvalidURLError(f"the server redirected to {redact_url(location)!r}, not a web URL")
    url = f"{_TO_WS[new_scheme.lower()]}{sep}{rest}"
    if current.secure and not url.startswith("wss://"):
        raise InvalidURLError(
            f"the server redirected from wss:// to {redact_url(url)!r}: refused (not encrypted)"
        )
    parse_url(url)
    return url
