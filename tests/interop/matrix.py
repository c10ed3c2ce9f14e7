"""The interop matrix (server x engine x check), printed at the end of the run.

``Matrix`` is a pytest plugin that ``tests/test_interop.py`` registers when its
first test starts: it maps each interop test to its cell from the test's
parameters, keeps the outcome of each phase, and prints the table (and the
reasons of skipped and expected-failure cells) in the terminal summary.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import pytest

__all__ = ["Matrix"]

OUTCOMES = ("pass", "FAIL", "skip", "xfail", "XPASS")


def _reason(report: pytest.TestReport) -> str:
    for name, value in report.user_properties:
        if name == "reason":  # see test_interop.skip_cell: pytest-trio drops skip messages
            return str(value)
    if hasattr(report, "wasxfail"):
        return str(report.wasxfail)
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None:
        return str(crash.message).splitlines()[0]
    return str(longrepr).strip().splitlines()[-1] if longrepr else ""


class Matrix:
    """Cells keyed by (server, engine, check)."""

    def __init__(
        self,
        servers: Sequence[str],
        engines: Sequence[str],
        checks: Sequence[str],
        items: Iterable[pytest.Item],
        cell_of: Callable[[pytest.Item], tuple[str, str, str] | None],
    ) -> None:
        self.servers = list(servers)
        self.engines = list(engines)
        self.checks = list(checks)
        self.cells: dict[tuple[str, str, str], str] = {}
        self.reasons: dict[tuple[str, str, str], str] = {}
        self.nodes: dict[str, tuple[str, str, str]] = {}
        for item in items:
            cell = cell_of(item)
            if cell is not None:
                self.nodes[item.nodeid] = cell

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        cell = self.nodes.get(report.nodeid)
        if cell is None:
            return
        if report.when == "call" or (report.when == "setup" and not report.passed):
            if hasattr(report, "wasxfail"):
                outcome = "xfail" if report.skipped else "XPASS"
            elif report.passed:
                outcome = "pass"
            elif report.skipped:
                outcome = "skip"
            else:
                outcome = "FAIL"
            self.cells[cell] = outcome
            if outcome != "pass":
                self.reasons[cell] = _reason(report)
        elif report.failed:  # an error in teardown
            self.cells[cell] = "FAIL"
            self.reasons[cell] = _reason(report)

    def lines(self) -> list[str]:
        """The table, then the reasons of cells that did not pass, grouped."""
        if not self.cells:
            return []
        widths = [max(len(c), 5) for c in self.checks]
        server_width = max(len(s) for s in self.servers)
        engine_width = max(len(e) for e in self.engines)
        head = f"{'server':<{server_width}}  {'engine':<{engine_width}}  "
        out = [head + "  ".join(f"{c:<{w}}" for c, w in zip(self.checks, widths, strict=True))]
        counts = dict.fromkeys(OUTCOMES, 0)
        for server in self.servers:
            for engine in self.engines:
                row = [self.cells.get((server, engine, check), "-") for check in self.checks]
                if all(cell == "-" for cell in row):
                    continue
                for cell in row:
                    if cell in counts:
                        counts[cell] += 1
                line = f"{server:<{server_width}}  {engine:<{engine_width}}  "
                cells = (f"{cell:<{w}}" for cell, w in zip(row, widths, strict=True))
                out.append(line + "  ".join(cells).rstrip())
        out.append("cells: " + ", ".join(f"{n} {name}" for name, n in counts.items() if n))
        out.extend(self._reasons())
        return out

    def _reasons(self) -> list[str]:
        """One line per (outcome, reason): a server whose every cell has it is
        named once, other cells as check server/engine."""
        grouped: dict[tuple[str, str], set[tuple[str, str, str]]] = {}
        for cell, reason in self.reasons.items():
            grouped.setdefault((self.cells[cell], reason), set()).add(cell)
        out = ["not passed:"] if grouped else []
        for (outcome, reason), cells in sorted(grouped.items()):
            whole = sorted(
                server
                for server in {cell[0] for cell in cells}
                if all(c in cells for c in self.cells if c[0] == server)
            )
            parts = [f"{server} (every cell)" for server in whole]
            by_check: dict[str, list[str]] = {}
            for server, engine, check in sorted(cells):
                if server not in whole:
                    by_check.setdefault(check, []).append(f"{server}/{engine}")
            parts += [f"{check}: {', '.join(where)}" for check, where in by_check.items()]
            out.append(f"  {outcome}: {reason[:300]}")
            out.extend(f"      {part}" for part in parts)
        return out

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        lines = self.lines()
        if not lines:
            return
        terminalreporter.write_sep("=", "interop matrix: server x engine x check")
        for line in lines:
            terminalreporter.write_line(line)
