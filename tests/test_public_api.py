"""The public API: __all__, docstrings with examples, py.typed and the doctests."""

from __future__ import annotations

import doctest
import importlib
import inspect
import types
from pathlib import Path

import pytest

import trio_clientsocket

PACKAGE = "trio_clientsocket"
REQUIRED = {
    "ClientSocket",
    "Status",
    "Connected",
    "ConnectionFailed",
    "MessageReceived",
    "Backoff",
    "ClientSocketError",
}
DOCTEST_MODULES = ["_backoff", "_classify", "_errors", "_events", "_genexus", "_state", "_url"]


def public_names() -> set[str]:
    return {
        name
        for name, value in vars(trio_clientsocket).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }


def defined_in_package(value: object) -> bool:
    if not (inspect.isclass(value) or inspect.isfunction(value)):
        return False
    module = getattr(value, "__module__", "") or ""
    return module == PACKAGE or module.startswith(PACKAGE + ".")


def test_all_matches_public_namespace() -> None:
    assert set(trio_clientsocket.__all__) == public_names()


def test_all_has_no_duplicates() -> None:
    assert len(trio_clientsocket.__all__) == len(set(trio_clientsocket.__all__))


def test_all_names_exist() -> None:
    for name in trio_clientsocket.__all__:
        assert hasattr(trio_clientsocket, name), name


def test_required_names_exported() -> None:
    assert set(trio_clientsocket.__all__) >= REQUIRED


@pytest.mark.parametrize("name", sorted(trio_clientsocket.__all__))
def test_public_docstring_has_example(name: str) -> None:
    value = getattr(trio_clientsocket, name)
    if not defined_in_package(value):
        pytest.skip(f"{name} is not a class or function (e.g. a type alias)")
    doc = value.__doc__ or ""
    assert "Example" in doc or ">>>" in doc, f"{name} has no example in its docstring"


def test_type_alias_is_exempt() -> None:
    assert not defined_in_package(trio_clientsocket.Message)


def test_py_typed_exists() -> None:
    assert (Path(trio_clientsocket.__file__).parent / "py.typed").is_file()


@pytest.mark.parametrize("module_name", DOCTEST_MODULES)
def test_doctests(module_name: str) -> None:
    module = importlib.import_module(f"{PACKAGE}.{module_name}")
    results = doctest.testmod(module, optionflags=doctest.ELLIPSIS, report=False)
    assert results.attempted > 0, f"{module_name} has no doctests"
    assert results.failed == 0, f"{results.failed} doctest(s) failed in {module_name}"
