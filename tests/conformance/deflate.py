"""permessage-deflate (RFC 7692), the fuzzing server's side: the client's offers
in, the server's answer and codec out. Pure and synchronous; zlib does the work.

The server (``server.py``) calls ``parse_offers`` on the client's
``Sec-WebSocket-Extensions`` values, hands the offers to the case's
``accept_deflate``, which returns a ``Deflate`` (or None: no compression), and
then uses ``response_header()`` for the 101 answer, ``compress()`` for each
message it sends and ``decompress()`` for each compressed message it receives.

Semantics (the facts of autobahn's ``PerMessageDeflateOffer`` and
``PerMessageDeflateOfferAccept``, which sections 12 and 13 were written
against; RFC 7692 section 7.1 where autobahn is silent):

- An offer's parameters split by the side they bind. The client *requests*
  what the server must do: ``server_no_context_takeover`` (the server starts a
  new compressor for each message) and ``server_max_window_bits=N`` (the
  server compresses with a window of at most 2**N bytes). The answer repeats
  both, as autobahn does and as clients such as websockets require. The
  client *accepts* that the server asks for ``client_no_context_takeover``
  (RFC 7692 7.1.1.2 lets any server ask for it, so ``accept_no_context_takeover``
  is True for every offer, as in autobahn's parser) and, only if the offer
  names ``client_max_window_bits``, for ``client_max_window_bits=N``.
- The case decides what the server asks of the client: ``Deflate(offer,
  request_no_context_takeover=..., request_max_window_bits=...)``, as
  ``PerMessageDeflateOfferAccept(offer, ...)``; asking for what the offer does
  not accept is a ValueError. The server then decompresses with a new
  decompressor for each message (client_no_context_takeover) and a window of
  2**N bytes, as autobahn does. A client that refers to an earlier message
  although it agreed not to, or further back than the agreed window reaches
  across messages, gets a ``DeflateError`` (zlib checks the window only
  against what it held before a call, so a reference too far back inside one
  message goes unnoticed, as in autobahn).
- Where autobahn is silent or loose, this module follows RFC 7692: a
  ``client_max_window_bits`` offered with a value is a promise and a ceiling,
  so the server never asks for a larger window than the client named (the
  request is lowered to it; autobahn would answer with the larger value, which
  websockets' client rejects).
- Invalid offers are declined, not fatal (RFC 7692 section 5: the server
  "MUST decline" such an offer; autobahn instead fails the handshake): an
  unknown or repeated parameter, a value where none belongs, a missing or
  malformed window size (a decimal 8..15 without leading zeros), and
  ``server_max_window_bits=8``, which zlib cannot compress with (it silently
  uses 9, a window the client did not allow). The other offers in the header
  still count; offers of other extensions are ignored.
- Compression uses zlib's default level and memLevel 8 (autobahn's defaults);
  the compressed message is the deflate stream flushed with Z_SYNC_FLUSH, its
  final ``00 00 ff ff`` removed (an empty message compresses to ``b"\\x00"``).
  A received message that ends with a final (BFINAL) block is accepted and
  the next message starts a new decompressor.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from functools import partial

__all__ = ["EXTENSION_NAME", "Deflate", "DeflateError", "DeflateOffer", "parse_offers"]

EXTENSION_NAME = "permessage-deflate"
_WINDOW_BITS = range(9, 16)  # what zlib can compress with; 8 is valid on the wire only
_DEFAULT_BITS = 15
_MEM_LEVEL = 8
_TAIL = b"\x00\x00\xff\xff"  # the empty stored block a sync flush ends with
_BITS_VALUE = re.compile(r"[1-9][0-9]?")


class DeflateError(ValueError):
    """A compressed message from the client that the agreed parameters cannot
    decompress (corrupt data, or a reference to data it no longer holds)."""


@dataclass(frozen=True)
class DeflateOffer:
    """One permessage-deflate offer of the client (see the module docstring
    for which side each field binds)."""

    accept_no_context_takeover: bool = True
    """The server may ask for client_no_context_takeover (always, RFC 7692 7.1.1.2)."""
    accept_max_window_bits: bool = False
    """The offer names client_max_window_bits: the server may ask for a window."""
    request_no_context_takeover: bool = False
    """The client asks server_no_context_takeover."""
    request_max_window_bits: int = 0
    """The client asks server_max_window_bits=N (9..15; 0: not asked)."""
    client_max_window_bits: int = 0
    """The value the offer gave client_max_window_bits (8..15; 0: none)."""


def _window_bits(value: str | None) -> int:
    """The window size an offer's parameter names; ValueError if malformed."""
    if value is None or not _BITS_VALUE.fullmatch(value) or not 8 <= int(value) <= 15:
        raise ValueError(f"not a window size: {value!r}")
    return int(value)


def _parse_offer(params: list[tuple[str, str | None]]) -> DeflateOffer:
    """One offer from its parameters; ValueError if the offer must be declined."""
    names = [name for name, _ in params]
    if len(set(names)) != len(names):
        raise ValueError(f"a parameter is repeated: {names}")
    accept_bits = False
    client_bits = 0
    request_nct = False
    request_bits = 0
    for name, value in params:
        if name in ("server_no_context_takeover", "client_no_context_takeover"):
            if value is not None:
                raise ValueError(f"{name} takes no value")
            request_nct = request_nct or name == "server_no_context_takeover"
        elif name == "server_max_window_bits":
            request_bits = _window_bits(value)
            if request_bits not in _WINDOW_BITS:
                raise ValueError("server_max_window_bits=8: zlib cannot compress with it")
        elif name == "client_max_window_bits":
            accept_bits = True
            client_bits = 0 if value is None else _window_bits(value)
        else:
            raise ValueError(f"unknown parameter {name!r}")
    return DeflateOffer(
        accept_max_window_bits=accept_bits,
        request_no_context_takeover=request_nct,
        request_max_window_bits=request_bits,
        client_max_window_bits=client_bits,
    )


def parse_offers(header_values: list[str]) -> list[DeflateOffer]:
    """The valid permessage-deflate offers of the client's
    ``Sec-WebSocket-Extensions`` header values, in the client's order of
    preference. Invalid offers and other extensions are left out.

    Examples:
        >>> offers = parse_offers(["permessage-deflate; client_max_window_bits, x-foo"])
        >>> [(offer.accept_max_window_bits, offer.request_max_window_bits) for offer in offers]
        [(True, 0)]
        >>> parse_offers(["permessage-deflate; server_max_window_bits=8"])
        []
    """
    offers = []
    for header in header_values:
        for extension in header.split(","):
            name, *raw_params = (part.strip() for part in extension.split(";"))
            if name.lower() != EXTENSION_NAME:
                continue
            params: list[tuple[str, str | None]] = []
            for raw in raw_params:
                key, sep, value = (part.strip() for part in raw.partition("="))
                if sep and len(value) >= 2 and value[0] == value[-1] == '"':
                    value = value[1:-1]
                params.append((key.lower(), value if sep else None))
            try:
                offers.append(_parse_offer(params))
            except ValueError:
                continue  # declined (RFC 7692 section 5)
    return offers


class Deflate:
    """An accepted offer: the agreed parameters and the server's codec state.

    ``Deflate(offer)`` accepts ``offer`` as it is; ``request_no_context_takeover``
    and ``request_max_window_bits`` (9..15, 0: none) ask the client for its
    side, which the offer must accept (else ValueError).

    Examples:
        >>> offer = parse_offers(["permessage-deflate; client_max_window_bits"])[0]
        >>> deflate = Deflate(offer, request_max_window_bits=9)
        >>> deflate.response_header()
        'permessage-deflate; client_max_window_bits=9'
        >>> deflate.client_max_window_bits, deflate.server_max_window_bits
        (9, 15)
    """

    def __init__(
        self,
        offer: DeflateOffer,
        *,
        request_no_context_takeover: bool = False,
        request_max_window_bits: int = 0,
    ) -> None:
        if request_no_context_takeover and not offer.accept_no_context_takeover:
            raise ValueError("request_no_context_takeover: the offer does not accept it")
        if request_max_window_bits != 0:
            if request_max_window_bits not in _WINDOW_BITS:
                raise ValueError(
                    f"request_max_window_bits must be 0 or 9..15, got {request_max_window_bits}"
                )
            if not offer.accept_max_window_bits:
                raise ValueError("request_max_window_bits: the offer does not accept it")
            if offer.client_max_window_bits:
                request_max_window_bits = min(request_max_window_bits, offer.client_max_window_bits)
        self.offer = offer
        self.server_no_context_takeover = offer.request_no_context_takeover
        """The server compresses each message with a new compressor."""
        self.client_no_context_takeover = request_no_context_takeover
        """The client compresses each message on its own (asked by the server)."""
        self.server_max_window_bits = offer.request_max_window_bits or _DEFAULT_BITS
        """The server's compression window, as a power of two."""
        self.client_max_window_bits = request_max_window_bits or _DEFAULT_BITS
        """The client's compression window, as a power of two (the server's
        decompressor uses it)."""
        self._requested_bits = request_max_window_bits
        self._new_compressor = partial(
            zlib.compressobj,
            zlib.Z_DEFAULT_COMPRESSION,
            zlib.DEFLATED,
            -self.server_max_window_bits,
            _MEM_LEVEL,
        )
        self._new_decompressor = partial(zlib.decompressobj, -self.client_max_window_bits)
        self._compressor = self._new_compressor()  # kept across messages (context takeover)
        self._decompressor = self._new_decompressor()

    def __repr__(self) -> str:
        return f"Deflate({self.response_header()!r})"

    def response_header(self) -> str:
        """The ``Sec-WebSocket-Extensions`` value of the 101 answer."""
        params = [EXTENSION_NAME]
        if self.offer.request_no_context_takeover:
            params.append("server_no_context_takeover")
        if self.offer.request_max_window_bits:
            params.append(f"server_max_window_bits={self.offer.request_max_window_bits}")
        if self.client_no_context_takeover:
            params.append("client_no_context_takeover")
        if self._requested_bits:
            params.append(f"client_max_window_bits={self._requested_bits}")
        return "; ".join(params)

    def compress(self, payload: bytes) -> bytes:
        """One whole message from the server, compressed (the caller sets RSV1
        on its first frame)."""
        compressor = self._new_compressor() if self.server_no_context_takeover else self._compressor
        data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
        assert data.endswith(_TAIL), "a sync flush ends with an empty stored block"
        return data[: -len(_TAIL)]

    def decompress(self, payload: bytes) -> bytes:
        """One whole compressed message from the client (all its frames'
        payloads joined), inflated; DeflateError if it cannot be."""
        decompressor = (
            self._new_decompressor() if self.client_no_context_takeover else self._decompressor
        )
        try:
            data = decompressor.decompress(payload + _TAIL)
        except zlib.error as exc:
            self._decompressor = self._new_decompressor()
            raise DeflateError(f"cannot decompress the client's message: {exc}") from exc
        if decompressor.eof:  # the message ended with a final block
            self._decompressor = self._new_decompressor()
            if decompressor.unused_data not in (b"", _TAIL):
                raise DeflateError("data after the final deflate block")
        return data
