"""Sections 12 and 13, WebSocket compression (permessage-deflate): 90 + 126
cases, as autobahn's case12_x_x.py defines them.

Each case sends 1,000 messages, one at a time, each when the echo of the
previous came back: slices of ``LEN`` characters (text) or bytes (binary) of a
test data file, taken round the file from where the last one ended, in
frames of ``AUTOFRAGSIZE`` octets of the compressed message (0: one frame).
It is OK when every echo has the type, the length (in characters for text)
and the SHA-1 of what was sent, FAILED at the first echo that differs or
when the case has not finished after ``WAITSECS`` (the server then starts the
closing handshake), and UNIMPLEMENTED when no permessage-deflate was agreed
(the server then closes with 1000 at once). The close must be clean, 1000,
started by the server. The run time is reported.

- 12.j.i: test data set j (``TESTDATA_KEYS``, in Autobahn's historical order),
  message size and fragmenting i (``MSG_SIZES``); the server accepts the
  client's first permessage-deflate offer as it is.
- 13.j.i: the JSON data set, message size i, and the server's acceptance j of
  ``DEFLATE_PARAMS``: what it asks of the client (client_no_context_takeover,
  client_max_window_bits), only from an offer that allows it, else no
  compression. The client offers listed there are what Autobahn offers in its
  own client mode; in this (server) mode they serve the description only.

The test data come from the autobahntestsuite sdist (``testdata.py``) and are
loaded when this module is imported (the first import on a machine downloads
them). When they cannot be had, the import fails with an ImportError that
carries ``TestdataUnavailable``'s one line (why, and the command that fetches
them): the registry then leaves sections 12 and 13 out and the runner prints
that line.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from ..case import CLOSE_NORMAL, FAILED, OK, UNIMPLEMENTED, Case, CaseFactory, ExpectedClose, Peer
from ..deflate import Deflate, DeflateOffer
from ..testdata import TestdataUnavailable, autobahn_testdata

__all__ = ["CASES", "DEFLATE_PARAMS", "MSG_SIZES", "TESTDATA", "TESTDATA_KEYS"]

# (payload length, message count, case timeout in seconds, auto-fragment size)
MSG_SIZES: list[tuple[int, int, int, int]] = [
    (16, 1000, 60, 0),
    (64, 1000, 60, 0),
    (256, 1000, 120, 0),
    (1024, 1000, 240, 0),
    (4096, 1000, 480, 0),
    (8192, 1000, 480, 0),
    (16384, 1000, 480, 0),
    (32768, 1000, 480, 0),
    (65536, 1000, 480, 0),
    (131072, 1000, 480, 0),
    (8192, 1000, 480, 256),
    (16384, 1000, 480, 256),
    (32768, 1000, 480, 256),
    (65536, 1000, 480, 256),
    (131072, 1000, 480, 256),
    (131072, 1000, 480, 1024),
    (131072, 1000, 480, 4096),
    (131072, 1000, 480, 32768),
]


@dataclass(frozen=True)
class DataSet:
    """One test data set: a file of the autobahntestsuite sdist's testdata/."""

    desc: str
    file: str
    binary: bool


TESTDATA: dict[str, DataSet] = {
    "gutenberg_faust": DataSet(
        "Human readable text, Goethe's Faust I (German)", "pg2229.txt", True
    ),
    "lena512": DataSet("Lena Picture, Bitmap 512x512 bw", "lena512.bmp", True),
    "ooms": DataSet("A larger PDF", "10.1.1.105.5439.pdf", True),
    "json_data1": DataSet("Large JSON data file", "data1.json", False),
    "html_data1": DataSet("Large HTML file", "data1.html", False),
}
# The order of sections 12.1-12.5 (autobahn's Python 2 dict order, kept explicitly).
TESTDATA_KEYS = ["json_data1", "lena512", "gutenberg_faust", "html_data1", "ooms"]

Accept = Callable[[list[DeflateOffer]], Deflate | None]


def accept1(offers: list[DeflateOffer]) -> Deflate | None:
    """server accept (requestNoContextTakeover, requestMaxWindowBits): [(False, 0)]"""
    return Deflate(offers[0]) if offers else None


def _accept_requesting(no_context_takeover: bool, max_window_bits: int) -> Accept:
    """The first offer that allows asking for both, accepted asking for them."""

    def accept(offers: list[DeflateOffer]) -> Deflate | None:
        for offer in offers:
            if (offer.accept_no_context_takeover or not no_context_takeover) and (
                offer.accept_max_window_bits or not max_window_bits
            ):
                return Deflate(
                    offer,
                    request_no_context_takeover=no_context_takeover,
                    request_max_window_bits=max_window_bits,
                )
        return None

    accept.__doc__ = (
        "server accept (requestNoContextTakeover, requestMaxWindowBits):"
        f" [({no_context_takeover}, {max_window_bits})]"
    )
    return accept


accept2 = _accept_requesting(True, 0)
accept3 = _accept_requesting(False, 9)
accept4 = _accept_requesting(False, 15)
accept5 = _accept_requesting(True, 9)
accept6 = _accept_requesting(True, 15)


def accept7(offers: list[DeflateOffer]) -> Deflate | None:
    """server accept (requestNoContextTakeover, requestMaxWindowBits): [(True, 9), (True, 0), (False, 0)]"""  # noqa: E501
    return accept5(offers) or accept2(offers) or accept1(offers)


# (the server's acceptance, Autobahn's client offers as (requestNoContextTakeover,
# requestMaxWindowBits), which only the description uses here)
DEFLATE_PARAMS: list[tuple[Accept, list[tuple[bool, int]]]] = [
    (accept1, [(False, 0)]),
    (accept2, [(True, 0)]),
    (accept3, [(False, 9)]),
    (accept4, [(False, 15)]),
    (accept5, [(True, 9)]),
    (accept6, [(True, 15)]),
    (accept7, [(True, 9), (True, 0), (False, 0)]),
]


def _encoding(binary: bool) -> str:
    """How the messages' bytes map to the characters a slice counts: one byte
    each for binary data, UTF-8 code points for text (Autobahn slices text as
    unicode)."""
    return "latin-1" if binary else "utf-8"


try:
    _SOURCES = {
        key: autobahn_testdata(data.file).decode(_encoding(data.binary))
        for key, data in TESTDATA.items()
    }
    """Each data set, decoded to slice it."""
except TestdataUnavailable as exc:
    raise ImportError(str(exc)) from exc


MESSAGES = int(os.environ.get("CONFORMANCE_COUNT", "1000"))
"""Echoes per case: Autobahn's 1,000, unless ``CONFORMANCE_COUNT`` asks for
fewer (the project's CI runs every case with 100, so that the whole set fits
its time budget)."""


class Compression(Case):
    """One case of 12.x.x/13.x.x: COUNT echoed messages of LEN, compressed."""

    report_time = True

    def __init__(
        self,
        case_id: str,
        description: str,
        *,
        data_set: str,
        size: tuple[int, int, int, int],
        accept: Accept,
    ) -> None:
        super().__init__()
        self.id = case_id
        self.description = description
        self.length, self.count, self.wait, fragment_size = size
        # CI runs every case with fewer echoes (CONFORMANCE_COUNT); Autobahn: 1,000
        self.count = min(self.count, MESSAGES)
        self.expectation = (
            f"Receive echo'ed messages (with payload as sent). Timeout case after {self.wait} secs."
        )
        self.fragment_size = fragment_size or None
        self.binary = TESTDATA[data_set].binary
        self.source = _SOURCES[data_set]
        self.accept = accept
        self.expected_close = ExpectedClose(
            closed_by_me=True, close_code=[CLOSE_NORMAL], require_clean=True
        )
        self.position = 0
        self.sent = 0
        self.expected_hash = b""
        self.ended = False

    def accept_deflate(self, offers: list[DeflateOffer]) -> Deflate | None:
        return self.accept(offers)

    def on_open(self, p: Peer) -> None:
        if p.deflate is None:
            self.behavior = UNIMPLEMENTED
            self.result = "No permessage-deflate was agreed."
            self.ended = True
            p.send_close(CLOSE_NORMAL)
            return
        self.behavior = FAILED
        self.result = f"Case did not finish within {self.wait} seconds."
        p.close_after(self.wait)
        self._send_one(p)

    def _send_one(self, p: Peer) -> None:
        """The next LEN characters (bytes) of the data, round the end."""
        start, size = self.position, len(self.source)
        end = (start + self.length) % size
        piece = self.source[start:end] if end > start else self.source[start:] + self.source[:end]
        self.position = end
        message = piece.encode(_encoding(self.binary))
        self.expected_hash = hashlib.sha1(message).digest()
        p.send_message(message, self.binary, fragment_size=self.fragment_size)
        self.sent += 1

    def on_message(self, p: Peer, payload: bytes, binary: bool) -> None:
        if self.ended:
            return  # the closing handshake is under way
        received_hash = hashlib.sha1(payload).digest()
        length = len(payload) if binary else len(payload.decode("utf-8", "replace"))
        if binary != self.binary:
            self.result = (
                "Echo'ed message type differs from what I sent"
                f" (got binary {binary}, expected binary {self.binary})."
            )
        elif length != self.length:
            self.result = (
                "Echo'ed message length differs from what I sent"
                f" (got length {length}, expected length {self.length})."
            )
        elif received_hash != self.expected_hash:
            self.result = (
                "Echo'ed message contents differs from what I sent"
                f" (got SHA1 {received_hash.hex()}, expected SHA1 {self.expected_hash.hex()})."
            )
        elif self.sent < self.count:
            self._send_one(p)
            return
        else:
            self.behavior = OK
            self.result = "Ok, received all echo'ed messages in time."
        self.ended = True
        p.send_close(CLOSE_NORMAL)


def _description(size: tuple[int, int, int, int], offer: str) -> str:
    length, count, _, fragment_size = size
    return (
        f"Send {count} compressed messages each of payload size {length},"
        f" auto-fragment to {fragment_size} octets. Use {offer}"
    )


def _sections() -> list[CaseFactory]:
    cases: list[CaseFactory] = []
    for j, key in enumerate(TESTDATA_KEYS, 1):
        for i, size in enumerate(MSG_SIZES, 1):
            description = _description(size, "default permessage-deflate offer.")
            cases.append(
                partial(Compression, f"12.{j}.{i}", description, data_set=key,
                        size=size, accept=accept1)
            )  # fmt: skip
    for j, (accept, client_offers) in enumerate(DEFLATE_PARAMS, 1):
        offer = (
            "permessage-deflate client offers (requestNoContextTakeover,"
            f" requestMaxWindowBits): {client_offers}"
        )
        for i, size in enumerate(MSG_SIZES, 1):
            cases.append(
                partial(Compression, f"13.{j}.{i}", _description(size, offer),
                        data_set="json_data1", size=size, accept=accept)
            )  # fmt: skip
    return cases


CASES: list[CaseFactory] = _sections()
