"""Run cases against a client and report, as Autobahn's report does.

``await run_cases("websockets-engine", select("1-7,10"))`` plays the cases one
after the other, each on a fresh connection to the same server, and returns a
``Report``: the graded ``CaseResult`` of every case (``report.verdicts``:
id -> (behavior, close behavior)) and the run's wall-clock seconds.

As a command::

    python -m tests.conformance.run --client websockets-engine --cases 1-7,10
    python -m tests.conformance.run --client websockets-engine --client websockets-client \\
        --cases 1-7,10 --markdown

prints, per client, the per-section table (cases, OK, NON-STRICT,
INFORMATIONAL, UNIMPLEMENTED, FAILED, and two columns of the close: closes
graded other than OK, and cases where the client sent no close frame at all),
then every case that is not OK with its result; with several clients and
``--markdown``, one table with the clients side by side.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial

import trio

from .case import FAILED, INFORMATIONAL, NON_STRICT, OK, UNIMPLEMENTED
from .clients import CLIENTS
from .sections import CASES, MISSING, SECTIONS, section_of, select
from .server import CaseResult, open_fuzzing_server

__all__ = ["Report", "main", "non_ok", "run_cases", "section_table", "side_by_side"]

COLUMNS = (OK, NON_STRICT, INFORMATIONAL, UNIMPLEMENTED, FAILED)


@dataclass
class Report:
    client: str
    results: list[CaseResult]
    seconds: float
    """Wall-clock seconds of the whole run."""

    @property
    def verdicts(self) -> dict[str, tuple[str, str]]:
        """Case id -> (behavior, close behavior)."""
        return {r.id: (r.behavior, r.behavior_close) for r in self.results}

    def by_id(self) -> dict[str, CaseResult]:
        return {r.id: r for r in self.results}


async def run_cases(client: str, ids: Iterable[str], *, case_limit: float = 150.0) -> Report:
    """Play the cases ``ids`` (registry ids, in order) against ``CLIENTS[client]``."""
    spec = CLIENTS[client]
    ids = list(ids)
    unknown = [i for i in ids if i not in CASES]
    if unknown:
        raise ValueError(f"unknown case ids: {', '.join(unknown)}")
    results: list[CaseResult] = []
    start = time.monotonic()
    async with open_fuzzing_server(case_limit=case_limit) as server, spec.open() as run:
        for case_id in ids:
            results.append(await server.run_case(CASES[case_id](), run, agent=spec.name))
    return Report(spec.name, results, time.monotonic() - start)


def _counts(results: Sequence[CaseResult]) -> dict[str, int]:
    counts = dict.fromkeys(COLUMNS, 0)
    for r in results:
        counts[r.behavior if r.behavior in counts else FAILED] += 1
    counts["close"] = sum(r.behavior_close not in (OK, INFORMATIONAL) for r in results)
    counts["noclose"] = sum(r.connection_was_open and not r.client_sent_close for r in results)
    return counts


def _sections(results: Sequence[CaseResult]) -> dict[str, list[CaseResult]]:
    grouped: dict[str, list[CaseResult]] = {}
    for r in results:
        grouped.setdefault(section_of(r.id), []).append(r)
    return grouped


def section_table(report: Report) -> str:
    """The per-section table of one client, as plain text."""
    head = ["section", "cases", *COLUMNS, "close not OK", "no close frame", "seconds"]
    groups = [
        (f"{section} {SECTIONS.get(section, '')}".strip(), results)
        for section, results in _sections(report.results).items()
    ]
    rows = []
    for title, results in [*groups, ("total", report.results)]:
        counts = _counts(results)
        seconds = sum(r.duration for r in results)
        rows.append(
            [
                title,
                str(len(results)),
                *(str(counts[c]) for c in COLUMNS),
                str(counts["close"]),
                str(counts["noclose"]),
                f"{seconds:.1f}",
            ]
        )
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in [head, *rows]
    ]
    return "\n".join(lines)


def non_ok(report: Report) -> list[str]:
    """One line for every case not graded OK (behavior or close), with why."""
    lines = []
    for r in report.results:
        quiet = r.behavior in (OK, INFORMATIONAL) and r.behavior_close in (OK, INFORMATIONAL)
        if quiet and not r.notes:
            continue
        line = (
            f"{r.id}: {r.behavior} / close {r.behavior_close} (client code {r.remote_close_code})"
        )
        if r.behavior not in (OK, INFORMATIONAL):
            line += f" - {r.result}"
        if r.behavior_close not in (OK, INFORMATIONAL):
            line += f" - close: {r.result_close}"
        if r.report_time:
            line += f" [{r.duration * 1000:.0f} ms]"
        for note in r.notes:
            line += f" [note: {note}]"
        lines.append(line)
    silent = [r.id for r in report.results if r.connection_was_open and not r.client_sent_close]
    if silent:
        lines.append(f"no close frame from the client in {len(silent)}: {', '.join(silent)}")
    return lines


def _cell(counts: dict[str, int]) -> str:
    short = {
        OK: "OK",
        NON_STRICT: "NS",
        INFORMATIONAL: "INFO",
        UNIMPLEMENTED: "UNIMPL",
        FAILED: "FAILED",
    }
    parts = [f"{counts[c]} {short[c]}" for c in COLUMNS if counts[c]]
    if counts["close"]:
        parts.append(f"{counts['close']} close≠OK")
    return ", ".join(parts) or "-"


def side_by_side(reports: Sequence[Report]) -> str:
    """One Markdown table: sections down, clients across."""
    sections: dict[str, int] = {}
    for report in reports:
        for section, results in _sections(report.results).items():
            sections[section] = max(sections.get(section, 0), len(results))
    lines = [
        "| section | cases | " + " | ".join(r.client for r in reports) + " |",
        "|---|---:|" + "---|" * len(reports),
    ]
    for section, n in sections.items():
        cells = [_cell(_counts(_sections(r.results).get(section, []))) for r in reports]
        title = f"{section} {SECTIONS.get(section, '')}".strip()
        lines.append(f"| {title} | {n} | " + " | ".join(cells) + " |")
    total = [_cell(_counts(r.results)) for r in reports]
    lines.append(
        f"| **total** | {max(len(r.results) for r in reports)} | " + " | ".join(total) + " |"
    )
    silent = [str(_counts(r.results)["noclose"]) for r in reports]
    lines.append("| no close frame from the client | | " + " | ".join(silent) + " |")
    lines.append("| seconds | | " + " | ".join(f"{r.seconds:.0f}" for r in reports) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.conformance.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--client",
        action="append",
        choices=sorted(CLIENTS),
        required=True,
        help="the client under test (repeat for several)",
    )
    parser.add_argument(
        "--cases",
        default="1-7,10",
        help="sections, ranges of sections, ids or id prefixes (default 1-7,10)",
    )
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="also print one Markdown table with the clients side by side",
    )
    parser.add_argument(
        "--case-limit",
        type=float,
        default=150.0,
        help="seconds after which a case that has not ended is dropped and FAILED",
    )
    args = parser.parse_args(argv)
    try:
        ids = select(args.cases)
    except ValueError as exc:
        parser.error(str(exc))
    for module, why in MISSING.items():
        print(f"note: sections module {module} not loaded ({why})", file=sys.stderr)
    reports = []
    for client in args.client:
        report = trio.run(partial(run_cases, client, ids, case_limit=args.case_limit))
        reports.append(report)
        print(f"== {report.client}: {len(ids)} cases in {report.seconds:.1f} s")
        print(section_table(report))
        for line in non_ok(report):
            print("  " + line)
        print()
    if args.markdown:
        print(side_by_side(reports))
    return 0


if __name__ == "__main__":
    sys.exit(main())
