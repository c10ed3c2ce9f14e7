"""RFC 6455 conformance: Autobahn|Testsuite's client cases against the clients.

The suite is in ``tests/conformance/`` (see docs/conformance.md). Two levels:
by default a quick selection (one or two cases of every section, chosen to
include those that today's library fails); with ``CONFORMANCE=full`` in the
environment, the whole set (sections 1-7, 9, 10, 12, 13: minutes per client).

- The ClientSocket transports must fail no case (behavior FAILED, or a close
  graded FAILED, UNCLEAN or WRONG CODE), and must send a close frame in every
  case (RFC 6455 section 7.1.7: a client that fails the connection SHOULD).
- websockets' own client, the reference, must get the verdicts websockets
  documents for it (compliance/README.rst): NON-STRICT where it notices a
  protocol error before its application echoes, and in 6.4.x; FAILED in 7.1.5
  (it closes with 1002 where the case wants 1000); and in section 9 the cases
  past its 4,096-fragment limit (``MAX_FRAGMENTS``).
- The suite's raw client gets OK everywhere (NON-STRICT in 6.4.3/6.4.4: it
  validates whole frames); each of its broken variants is flagged in exactly
  the cases that target it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import pytest
import trio

from .conformance import frames
from .conformance.case import (
    FAILED,
    INFORMATIONAL,
    NON_STRICT,
    OK,
    UNCLEAN,
    UNIMPLEMENTED,
    WRONG_CODE,
)
from .conformance.run import Report, run_cases
from .conformance.sections import CASES, MISSING, section_of, select
from .conformance.server import CaseResult, open_fuzzing_server

FULL = os.environ.get("CONFORMANCE") == "full"
FULL_ONLY = pytest.mark.skipif(
    not FULL, reason="the whole Autobahn set takes minutes: set CONFORMANCE=full"
)
EVERY_CASE = FULL or os.environ.get("CONFORMANCE") == "ci"
EVERY_CASE_ONLY = pytest.mark.skipif(
    not EVERY_CASE,
    reason="every case takes minutes: set CONFORMANCE=ci (the library's transports) "
    "or CONFORMANCE=full (every client)",
)
FULL_TIMEOUT = pytest.mark.timeout(3600)

QUICK = (
    "1.1.1,1.1.8,1.2.8,2.1,2.5,2.7,2.10,3.2,3.7,4.1.3,4.2.1,5.6,5.15,6.1.2,6.2.3,6.3.1,"
    "6.5.1,6.8.1,6.20.1,7.1.1,7.1.5,7.3.2,7.5.1,7.7.1,7.9.1,7.13.1,10.1.1,9.1.1,9.7.1,"
    "12.1.1,13.1.1"
)
"""One or two cases of every section, incl. those today's library fails (2.7,
5.6, 7.1.5: frames in the same read as the 101; 3.x: no close frame)."""


def _ids(spec: str) -> list[str]:
    """The ids ``spec`` names among the cases loaded (B's sections may be missing)."""
    wanted = set(spec.split(","))
    return [i for i in CASES if i in wanted] if "." in spec else select(spec)


def ids_for(level: str) -> list[str]:
    """The quick selection, or every case."""
    return _ids(QUICK) if level == "quick" else list(CASES)


LEVELS = ["quick", pytest.param("full", marks=[FULL_ONLY, FULL_TIMEOUT])]
CLIENTSOCKET_LEVELS = ["quick", pytest.param("full", marks=[EVERY_CASE_ONLY, FULL_TIMEOUT])]
"""The library's own transports run every case in CI too (CONFORMANCE=ci)."""

FAILING_CLOSE = (FAILED, UNCLEAN, WRONG_CODE)


def failures(report: Report) -> list[str]:
    """The cases graded as failures: behavior FAILED, or a close FAILED,
    UNCLEAN or WRONG CODE (the close cells Autobahn's report colours)."""
    return [
        f"{r.id}: {r.behavior}/{r.behavior_close} {r.result} / {r.result_close}"
        for r in report.results
        if r.behavior == FAILED or r.behavior_close in FAILING_CLOSE
    ]


def without_close_frame(results: Iterable[CaseResult]) -> list[str]:
    return [r.id for r in results if r.connection_was_open and not r.client_sent_close]


_REPORTS: dict[tuple[str, tuple[str, ...]], Report] = {}


async def report_of(client: str, ids: list[str]) -> Report:
    """The run of ``ids`` against ``client``, once per test session (the two
    ClientSocket tests read the same run)."""
    key = (client, tuple(ids))
    if key not in _REPORTS:
        _REPORTS[key] = await run_cases(client, ids)
    return _REPORTS[key]


def _show(report: Report) -> str:
    from .conformance.run import non_ok, section_table

    return "\n" + section_table(report) + "\n" + "\n".join(non_ok(report))


def test_registry_has_autobahns_cases_in_order() -> None:
    counts: dict[str, int] = {}
    for case_id in CASES:
        counts[section_of(case_id)] = counts.get(section_of(case_id), 0) + 1
    mine = {"1": 16, "2": 11, "3": 7, "4": 10, "5": 20, "6": 145, "7": 37, "10": 1}
    assert {s: counts.get(s) for s in mine} == mine
    assert sum(mine.values()) == 247
    if "s09" not in MISSING:
        assert counts["9"] == 54
    if "s12_13" not in MISSING:
        assert (counts["12"], counts["13"]) == (90, 126)
    ids = select("1-7,10")
    assert ids[:3] == ["1.1.1", "1.1.2", "1.1.3"]
    assert ids[-1] == "10.1.1"
    assert select("6.4") == ["6.4.1", "6.4.2", "6.4.3", "6.4.4"]
    with pytest.raises(ValueError, match="names no case"):
        select("8")


def test_every_section_is_loaded() -> None:
    """B's sections 12/13 need Autobahn's test data: without it, say why and how to get it."""
    if MISSING:
        pytest.skip("; ".join(f"{module}: {why}" for module, why in MISSING.items()))


# -- the library ----------------------------------------------------------------------


@pytest.mark.parametrize("level", CLIENTSOCKET_LEVELS)
@pytest.mark.parametrize("client", ["websockets-engine", "wsproto-engine", "trio-websocket"])
async def test_clientsocket_fails_no_case(client: str, level: str) -> None:
    report = await report_of(client, ids_for(level))
    assert not failures(report), _show(report)


@pytest.mark.parametrize("level", CLIENTSOCKET_LEVELS)
@pytest.mark.parametrize("client", ["websockets-engine", "wsproto-engine", "trio-websocket"])
async def test_clientsocket_always_sends_a_close_frame(client: str, level: str) -> None:
    report = await report_of(client, ids_for(level))
    assert not without_close_frame(report.results), _show(report)


# -- the reference: websockets' client --------------------------------------------------

REFERENCE_NON_STRICT = {
    "3.2",
    "3.3",
    "4.1.3",
    "4.1.4",
    "4.2.3",
    "4.2.4",
    "5.15",
    "6.4.1",
    "6.4.2",
    "6.4.3",
    "6.4.4",
}
"""websockets' compliance/README.rst: it notices the protocol error before the
application echoes; its UTF-8 check is not fast enough for 6.4.x."""
REFERENCE_RACES = {"3.4", "4.1.5", "4.2.5"}
"""Octet-wise chops: whether the echo goes out before the bad frame's first
two octets arrive is a race (Autobahn's too); websockets documents OK, the
harness sees NON-STRICT in most runs."""
REFERENCE_FAILED = {"7.1.5": WRONG_CODE}
"""It closes with 1002 where the case wants 1000 (documented)."""
REFERENCE_TOO_MANY_FRAGMENTS = {"9.3.1", "9.3.2", "9.3.3", "9.4.1", "9.4.2", "9.4.3"}
"""4 MiB in fragments of 64 octets to 1 KiB: more than websockets'
MAX_FRAGMENTS (4,096), so it fails the connection with 1009. 1 KiB makes 4,097
frames: Autobahn's fragmenting ends a message that is a multiple of the
fragment size with an empty frame."""


def reference_verdict(case_id: str) -> tuple[set[str], set[str]]:
    """The (behavior, close) verdicts websockets' client may get in ``case_id``."""
    if case_id in {"7.1.6", "7.13.1", "7.13.2"}:
        return {INFORMATIONAL}, {INFORMATIONAL}
    if case_id in REFERENCE_NON_STRICT:
        return {NON_STRICT}, {OK}
    if case_id in REFERENCE_RACES:
        return {OK, NON_STRICT}, {OK}
    if case_id in REFERENCE_FAILED:
        return {FAILED}, {REFERENCE_FAILED[case_id]}
    if case_id in REFERENCE_TOO_MANY_FRAGMENTS:
        return {FAILED}, {FAILED}
    return {OK}, {OK}


@pytest.mark.parametrize("level", LEVELS)
async def test_reference_gets_its_documented_verdicts(level: str) -> None:
    report = await run_cases("websockets-client", ids_for(level))
    wrong = [
        f"{r.id}: got {r.behavior}/{r.behavior_close}, documented {reference_verdict(r.id)}"
        for r in report.results
        if (r.behavior not in reference_verdict(r.id)[0])
        or (r.behavior_close not in reference_verdict(r.id)[1])
    ]
    assert not wrong, _show(report)
    assert not without_close_frame(report.results)


# -- the suite's raw client, correct and broken -------------------------------------------


@pytest.mark.parametrize("level", LEVELS)
async def test_raw_client_passes(level: str) -> None:
    ids = [i for i in ids_for(level) if section_of(i) not in ("12", "13")]
    report = await run_cases("raw", ids)
    for r in report.results:
        allowed = {NON_STRICT} if r.id in ("6.4.3", "6.4.4") else {OK, INFORMATIONAL}
        assert r.behavior in allowed, _show(report)
        assert r.behavior_close in (OK, INFORMATIONAL), _show(report)
    assert not without_close_frame(report.results)


BROKEN_QUICK = {
    "raw-no-utf8": "6.3.1,6.8.1,7.5.1,6.2.3,6.5.1",
    "raw-no-pong": "2.1,2.5,1.1.1",
    "raw-no-close-reply": "1.1.1,2.5,6.3.1",
    "raw-drop": "3.1,6.3.1,7.9.1,1.1.1",
    "raw-rsv": "3.5,1.1.1,4.1.1",
}
"""Targeted cases and controls (the controls must pass)."""
BROKEN_FULL = {
    "raw-no-utf8": "6,7",
    "raw-no-pong": "2,5",
    "raw-no-close-reply": "1,2,7",
    "raw-drop": "2-7",
    "raw-rsv": "3,4",
}


def _expects_pong(r: CaseResult) -> bool:
    return any(e[0] == "pong" for events in r.expected.values() for e in events)


def flagged(client: str, r: CaseResult) -> bool | None:
    """Whether the broken ``client`` must be flagged in ``r`` (None: the case
    is informational, either way)."""
    want = r.expected_close
    assert want is not None
    if r.behavior == INFORMATIONAL:
        return None
    # the client has to fail the connection: a bad frame from us, or a bad close
    client_fails = not want.closed_by_me or not want.require_clean
    if client == "raw-no-utf8":
        return want.closed_by_wrong_endpoint_is_fatal or r.id == "7.5.1"
    if client == "raw-no-pong":
        return _expects_pong(r)
    if client == "raw-no-close-reply":
        return not client_fails
    if client == "raw-drop":
        return client_fails
    # raw-rsv: RSV bits on data frames; 3.7 is a close frame with RSV bits, which a
    # client that ignores them answers like any close (nothing to see)
    return r.id in ("3.1", "3.2", "3.3", "3.4", "3.5", "3.6")


def is_flagged(client: str, r: CaseResult) -> bool:
    """Whether the suite flags the case, as it flags what ``client`` does wrong."""
    if client == "raw-no-close-reply":  # no close frame, so not the clean close required
        return not r.client_sent_close and r.behavior_close == UNCLEAN
    if client == "raw-drop":  # Autobahn accepts a drop (the RFC's SHOULD): no close frame
        return not r.client_sent_close
    return r.behavior == FAILED


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("client", sorted(BROKEN_QUICK))
async def test_broken_client_is_flagged(client: str, level: str) -> None:
    report = await run_cases(
        client, _ids((BROKEN_QUICK if level == "quick" else BROKEN_FULL)[client])
    )
    targeted = [r.id for r in report.results if flagged(client, r)]
    assert targeted, "the selection targets nothing"
    wrong = [
        f"{r.id}: flagged {is_flagged(client, r)}, should be {flagged(client, r)}"
        for r in report.results
        if flagged(client, r) is not None and is_flagged(client, r) != flagged(client, r)
    ]
    assert not wrong, _show(report)
    controls = [r for r in report.results if flagged(client, r) is False]
    assert controls, "the selection has no control case"
    for r in controls:
        assert r.behavior in (OK, NON_STRICT, INFORMATIONAL, UNIMPLEMENTED), _show(report)


# -- the harness's own parts ----------------------------------------------------------

MASK = b"\x01\x02\x03\x04"


def _client_frame(opcode: int, payload: bytes = b"", **kw: Any) -> bytes:
    return frames.encode_frame(opcode, payload, mask=MASK, **kw)


def test_frame_writer_encodes_lengths_and_repeats_a_pattern() -> None:
    assert frames.encode_frame(1, b"x" * 125)[:2] == b"\x81\x7d"
    assert frames.encode_frame(2, b"x" * 126)[:4] == b"\x82\x7e\x00\x7e"
    assert frames.encode_frame(1, b"x" * 65536)[:10] == b"\x81\x7f" + (65536).to_bytes(8, "big")
    assert frames.encode_frame(9, fin=False, rsv=7) == b"\x79\x00"
    assert frames.encode_frame(1, b"abc", payload_len=7)[2:] == b"abcabca"  # autobahn's payload_len
    assert frames.frame_header(1, 21, fin=False) == b"\x01\x15"  # a header that promises more
    assert frames.chops(b"abcde", 2) == [b"ab", b"cd", b"e"]


def test_frame_reader_assembles_fragments_fed_octet_by_octet() -> None:
    reader = frames.FrameReader()
    stream = (
        _client_frame(1, "κό".encode()[:3], fin=False)
        + _client_frame(9, b"ping")
        + _client_frame(0, "κό".encode()[3:])
        + _client_frame(8, frames.close_payload(1000, b"bye"))
    )
    events = [event for octet in stream for event in reader.feed(bytes([octet]))]
    assert events == [
        frames.Ping(b"ping"),
        frames.Message("κό".encode(), binary=False),
        frames.Close(1000, b"bye"),
    ]


@pytest.mark.parametrize(
    ("data", "code", "reason"),
    [
        (frames.encode_frame(1, b"hi"), 1002, "unmasked"),
        (_client_frame(1, b"hi", rsv=1), 1002, "RSV bits 001"),
        (_client_frame(3), 1002, "reserved data opcode 3"),
        (_client_frame(11), 1002, "reserved control opcode 11"),
        (_client_frame(9, b"x" * 126), 1002, "control frame with 126"),
        (_client_frame(9, fin=False), 1002, "fragmented control frame"),
        (_client_frame(0, b"x"), 1002, "continuation frame outside"),
        (_client_frame(1, b"a", fin=False) + _client_frame(1, b"b"), 1002, "inside a fragmented"),
        (_client_frame(8, b"a"), 1002, "1-octet payload"),
        (b"\x81\xfe\x00\x05" + MASK + frames.apply_mask(b"hello", MASK), 1002, "minimal encoding"),
        (_client_frame(1, b"\xce\xba\xed\xa0\x80", fin=False), 1007, "invalid UTF-8"),
    ],
)
def test_frame_reader_reports_each_violation(data: bytes, code: int, reason: str) -> None:
    violations = [e for e in frames.FrameReader().feed(data) if isinstance(e, frames.Violation)]
    assert [v.code for v in violations] == [code]
    assert reason in violations[0].reason


def test_frame_reader_checks_close_codes_and_reasons() -> None:
    reader = frames.FrameReader()
    (bad_code,) = reader.feed(_client_frame(8, frames.close_payload(1005)))
    (bad_reason,) = reader.feed(_client_frame(8, frames.close_payload(1000, b"\xff")))
    assert isinstance(bad_code, frames.Close)
    assert bad_code.error is not None
    assert bad_code.error.code == 1002
    assert isinstance(bad_reason, frames.Close)
    assert bad_reason.error is not None
    assert bad_reason.error.code == 1007


async def test_invalid_handshake_fails_the_case() -> None:
    async def version_8(url: str) -> None:
        parts = urlsplit(url)
        stream = await trio.open_tcp_stream(parts.hostname or "", parts.port or 80)
        async with stream:
            await stream.send_all(
                f"GET {parts.path}?{parts.query} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 8\r\n\r\n".encode()
            )
            answer = await stream.receive_some(1000)
            assert answer.startswith(b"HTTP/1.1 400 ")

    async with open_fuzzing_server() as server:
        result = await server.run_case(CASES["1.1.1"](), version_8)
    assert (result.behavior, result.behavior_close) == (FAILED, FAILED)
    assert "Sec-WebSocket-Version is '8'" in result.result
    assert not result.connection_was_open
