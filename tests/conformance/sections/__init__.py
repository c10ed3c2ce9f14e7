"""The registry: every case of the suite, in Autobahn's order, by id.

Sections 1-7 and 10 are helper A's modules, 9 and 12-13 helper B's; a module
that does not exist yet (or fails to import) is left out and named in
``MISSING``. ``select("1-7,10")`` picks sections (or ranges of them),
``select("6.4,7.1.5")`` ids and id prefixes.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable

from ..case import Case, CaseFactory

__all__ = ["CASES", "MISSING", "SECTIONS", "TITLES", "section_of", "select"]

MODULES = ("s01", "s02", "s03", "s04", "s05", "s06", "s07", "s09", "s10", "s12_13")

SECTIONS = {
    "1": "Framing",
    "2": "Pings/Pongs",
    "3": "Reserved Bits",
    "4": "Opcodes",
    "5": "Fragmentation",
    "6": "UTF-8 Handling",
    "7": "Close Handling",
    "9": "Limits/Performance",
    "10": "Misc",
    "12": "WebSocket Compression (different payloads)",
    "13": "WebSocket Compression (different parameters)",
}
"""Autobahn's section titles."""

TITLES: dict[str, str] = {}
"""Subsection titles a module declares (``SUBSECTIONS``)."""

MISSING: dict[str, str] = {}
"""Modules that could not be imported, and why."""


def _factory(entry: Case | Callable[[], Case]) -> CaseFactory:
    if isinstance(entry, Case):  # an instance: a fresh copy for every run
        return lambda: copy.deepcopy(entry)
    return entry


def _load() -> dict[str, CaseFactory]:
    cases: dict[str, CaseFactory] = {}
    for name in MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ImportError as exc:
            MISSING[name] = f"{type(exc).__name__}: {exc}"
            continue
        TITLES.update(getattr(module, "SUBSECTIONS", {}))
        for entry in module.CASES:
            factory = _factory(entry)
            case_id = factory().id
            if case_id in cases:
                raise ValueError(f"case {case_id} is defined twice (in {name})")
            cases[case_id] = factory
    return cases


CASES = _load()
"""Case id -> factory, in Autobahn's order."""


def section_of(case_id: str) -> str:
    return case_id.split(".", 1)[0]


def select(spec: str) -> list[str]:
    """The ids ``spec`` names, in Autobahn's order: comma-separated sections
    (``6``), ranges of sections (``1-7``), ids or id prefixes (``6.4``,
    ``7.1.5``). ValueError for a part that names no case."""
    chosen: set[str] = set()
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        low, dash, high = part.partition("-")
        if dash and low.isdigit() and high.isdigit():
            sections = {str(s) for s in range(int(low), int(high) + 1)}
            hits = {i for i in CASES if section_of(i) in sections}
        else:
            prefix = part.split(".")
            hits = {i for i in CASES if i.split(".")[: len(prefix)] == prefix}
        if not hits:
            raise ValueError(f"--cases: {part!r} names no case")
        chosen |= hits
    return [i for i in CASES if i in chosen]
