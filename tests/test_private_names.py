"""The package uses its dependencies only through their public API: no private
module, no private attribute of another library's object, no code-object
inspection. Scanned from the source, so that a reach in comes to light in CI."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "trio_clientsocket"
DEPENDENCIES = ("trio", "trio_websocket", "wsproto", "websockets", "attrs", "h11", "outcome")
CODE_OBJECTS = {
    "__code__",
    "co_names",
    "co_varnames",
    "co_consts",
    "f_locals",
    "f_back",
    "gi_frame",
}


def _trees() -> dict[Path, ast.Module]:
    return {path: ast.parse(path.read_text(), str(path)) for path in sorted(PACKAGE.rglob("*.py"))}


def _own_names(trees: dict[Path, ast.Module]) -> set[str]:
    """Every name the package itself defines: functions, classes, attributes it
    assigns (``self.x = ...``), slots, class fields, parameters and variables."""
    own: set[str] = set()
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                own.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                own.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                own.add(node.id)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                own.add(node.target.id)
            elif isinstance(node, ast.arg):
                own.add(node.arg)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                own.add(node.value)  # __slots__ entries
    return own


def private_imports(trees: dict[Path, ast.Module]) -> list[str]:
    found = []
    for path, tree in trees.items():
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                root, *rest = name.split(".")
                if root in DEPENDENCIES and any(part.startswith("_") for part in rest):
                    found.append(f"{path.name}:{node.lineno} {name}")
    return found


def private_attributes(trees: dict[Path, ast.Module], own: set[str]) -> list[str]:
    found = []
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            name = node.attr
            if name in CODE_OBJECTS:
                found.append(f"{path.name}:{node.lineno} .{name} (code-object inspection)")
            elif name.startswith("_") and not name.startswith("__") and name not in own:
                found.append(f"{path.name}:{node.lineno} .{name}")
    return found


def test_no_private_module_of_a_dependency_is_imported() -> None:
    assert private_imports(_trees()) == []


def test_no_private_attribute_of_another_library() -> None:
    trees = _trees()
    assert private_attributes(trees, _own_names(trees)) == []


@pytest.mark.parametrize(
    "source",
    [
        "import trio_websocket._impl",
        "from trio._core import run",
        "from trio import _core",
        "ws._reader_task()",
        "ws.__init__.__code__.co_names",
    ],
)
def test_the_scan_finds_a_reach_in(source: str) -> None:
    """The scan itself works: each of these is caught."""
    trees = {Path("example.py"): ast.parse(source)}
    own = _own_names({Path("own.py"): ast.parse("x = 1")})
    assert private_imports(trees) + private_attributes(trees, own)
