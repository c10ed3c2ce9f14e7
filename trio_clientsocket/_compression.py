"""The ``compression`` option: permessage-deflate (RFC 7692), as offered to the
server (pure, no I/O; the engines turn it into their libraries' extension)."""

from __future__ import annotations

import attrs
from websockets.exceptions import InvalidHandshake
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
)
from websockets.headers import parse_extension

from ._errors import ProtocolError

__all__ = ["Deflate", "negotiate"]


def _window(_: object, attribute: attrs.Attribute[int | None], value: int | None) -> None:
    if value is not None and not (9 <= value <= 15):
        raise ValueError(f"{attribute.name} must be None or between 9 and 15, got {value!r}")


def _level(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not (1 <= value <= 9):
        raise ValueError(f"{attribute.name} must be between 1 and 9, got {value!r}")


@attrs.frozen
class Deflate:
    """permessage-deflate, as the socket offers it (``compression=Deflate()``,
    the default; ``compression=None`` offers no compression).

    The defaults keep an idle connection cheap: the client compresses each
    message on its own (``client_no_context_takeover``), so no compressor is
    held between messages, and asks the server for a 4 KiB window
    (``server_max_window_bits=12``), so that the decompressor it keeps for the
    server's messages is small. The server's messages still share a context,
    which is where JSON notifications gain the most. See the performance page
    for the memory and CPU each setting costs.

    Examples:
        >>> Deflate().server_max_window_bits
        12
        >>> Deflate(server_max_window_bits=15).client_no_context_takeover
        True
    """

    server_max_window_bits: int | None = attrs.field(
        default=12, validator=_window  # type: ignore[arg-type]  # attrs: int | None is fine
    )
    """The window the server may use for its messages, as a power of two (9-15);
    None lets it choose (up to 32 KiB, which the client then holds to decompress)."""
    client_max_window_bits: int | None = attrs.field(default=None, validator=_window)
    """The window the client uses for its own messages (9-15; None: 15)."""
    server_no_context_takeover: bool = False
    """Ask the server to compress each message on its own: no decompressor is
    held between messages, at the cost of worse compression."""
    client_no_context_takeover: bool = True
    """Compress each message on its own: no compressor held between messages."""
    mem_level: int = attrs.field(default=5, validator=_level)
    """zlib's memLevel for the client's compressor (1-9; more is faster and bigger)."""


def offer(deflate: Deflate) -> ClientPerMessageDeflateFactory:
    """websockets' factory for the offer ``deflate`` makes."""
    return ClientPerMessageDeflateFactory(
        server_no_context_takeover=deflate.server_no_context_takeover,
        client_no_context_takeover=deflate.client_no_context_takeover,
        server_max_window_bits=deflate.server_max_window_bits,
        client_max_window_bits=deflate.client_max_window_bits or True,
        compress_settings={"memLevel": deflate.mem_level},
    )


def negotiate(deflate: Deflate, answer: str) -> PerMessageDeflate:
    """Check the server's ``Sec-WebSocket-Extensions`` answer against the offer
    (RFC 7692, by websockets' rules, for every engine alike); the extension
    it sets up. Raises ProtocolError naming what is wrong.

    Examples:
        >>> negotiate(Deflate(), "permessage-deflate; server_max_window_bits=12").name
        'permessage-deflate'
    """
    try:
        chosen = parse_extension(answer)
        if len(chosen) != 1:
            raise ProtocolError(
                "invalid handshake response: the server chose more than one extension"
            )
        return offer(deflate).process_response_params(chosen[0][1], [])
    except InvalidHandshake as exc:
        raise ProtocolError(
            "invalid handshake response: the server's permessage-deflate extension "
            f"does not answer the client's offer ({exc})"
        ) from exc
