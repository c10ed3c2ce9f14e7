"""The package's import graph runs one way: front door, loop, session, link,
engine, with the policy modules as leaves (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "trio_clientsocket"

# Each module may import only modules of later layers (never its own layer's
# or an earlier one's): the arrows run one way.
LAYERS: list[set[str]] = [
    {"__main__"},
    {"_cli", "_demo"},
    {"_chat", "pytest_plugin"},  # pytest_plugin: the former place of the plugin
    {"testing"},
    {"_replay"},
    {"__init__"},
    {"_socket"},
    {"_loop", "_record"},
    {"_session", "_dial"},
    {"_proxy", "_link_trio_websocket"},
    {"_link", "_engine_wsproto"},
    {"_engine"},
    {"_queues", "_stats"},
    {"_events", "_state", "_backoff", "_classify"},
    {"_handshake"},
    {"_genexus"},  # shows base URLs through _url's redaction
    {"_url", "_compression"},
    {"_errors", "_version"},
]


def layer_of(module: str) -> int:
    for index, layer in enumerate(LAYERS):
        if module in layer:
            return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            "trio_clientsocket."
        ):
            found.add((node.module or "").split(".")[1])
    return found


def test_every_module_has_a_layer() -> None:
    for path in PACKAGE.glob("*.py"):
        layer_of(path.stem)


def test_imports_run_one_way() -> None:
    wrong = []
    for path in sorted(PACKAGE.glob("*.py")):
        mine = layer_of(path.stem)
        for imported in sorted(imports(path)):
            if layer_of(imported) <= mine:
                wrong.append(f"{path.stem} imports {imported}")
    assert wrong == []


def test_an_engine_is_imported_when_a_socket_first_uses_it() -> None:
    """Issue 21 (10): importing the package, or making a socket, loads neither
    wsproto nor trio-websocket (nor h11); dialing on their transport does."""
    import subprocess
    import sys

    program = """
import sys
from trio_clientsocket import ClientSocket
from trio_clientsocket import _dial
others = {"wsproto", "trio_websocket", "h11"}
ClientSocket("ws://h.test/", transport="wsproto")
ClientSocket("ws://h.test/", transport="trio-websocket")
print(sorted(others & set(sys.modules)))
_dial.engine_class("wsproto")
print(sorted(others & set(sys.modules)))
"""
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[]", "['h11', 'wsproto']"]
