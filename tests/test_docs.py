"""Every Python block in docs/ and the README runs: the docs cannot rot.

- A block from ``testing.md`` is a test file: pytest runs it.
- A program (a block that calls ``trio.run(``, or has ``if __name__ ==
  "__main__":``) runs against a ``serve`` process started for it (its
  ``127.0.0.1:8080`` becomes that port). On the pages a newcomer reads first
  (``OUTPUT_SHOWN``) the page shows what it prints: the first ``text`` block
  after it, before the next Python block; the program must print exactly that
  (in any order of lines if the words between say "either order").
- A program that runs until Ctrl-C (``except* KeyboardInterrupt``) is run and
  interrupted by tests/test_first_hour.py instead (``INTERRUPTED``).
- Any other block is a snippet: it is executed as it is.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [*sorted(DOCS.glob("*.md")), ROOT / "README.md"]
BY_NAME = {page.name: page for page in PAGES}
OUTPUT_SHOWN = {"README.md", "index.md", "tutorial.md", "embedding.md"}
UNTIL_CTRL_C = "except* KeyboardInterrupt"
FENCE = re.compile(r"```(\w*)\n(.*?)```", re.S)
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
"""Programs import this checkout's package, wherever they run."""


def python_blocks(page: Path) -> list[str]:
    return [code for lang, code in FENCE.findall(page.read_text()) if lang == "python"]


def is_program(code: str) -> bool:
    return 'if __name__ == "__main__":' in code or "trio.run(" in code


def shown_output(page: Path, code: str) -> tuple[list[str], bool] | None:
    """The lines the page shows as the program's output, and whether their
    order is left open; None if it shows none."""
    text = page.read_text()
    block = f"```python\n{code}```"
    start = text.index(block) + len(block)
    for match in FENCE.finditer(text, start):
        if match.group(1) == "python":
            return None
        if match.group(1) == "text":
            return match.group(2).splitlines(), "either order" in text[start : match.start()]
    return None


EVERY_BLOCK = [
    (page.name, f"{page.stem}-{index}", code)
    for page in PAGES
    for index, code in enumerate(python_blocks(page))
]
UNTIL_INTERRUPTED = [(page, code) for page, _, code in EVERY_BLOCK if UNTIL_CTRL_C in code]
BLOCKS = [pytest.param(p, code, id=i) for p, i, code in EVERY_BLOCK if UNTIL_CTRL_C not in code]
INTERRUPTED = [pytest.param(p, code, id=i) for p, i, code in EVERY_BLOCK if UNTIL_CTRL_C in code]


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=120, check=False, env=ENV
    )


def test_every_page_has_been_collected() -> None:
    assert {page for page, *_ in (b.values for b in BLOCKS)} >= {
        "testing.md",
        "tutorial.md",
        "embedding.md",
        "genexus.md",
        "security.md",
        "index.md",
        "README.md",
    }
    assert {page for page, _ in UNTIL_INTERRUPTED} >= {"README.md", "tutorial.md"}


@pytest.mark.parametrize(("page", "code"), BLOCKS)
def test_block_runs(page: str, code: str, tmp_path: Path) -> None:
    if page == "testing.md":
        (tmp_path / "test_block.py").write_text(code)
        (tmp_path / "pytest.ini").write_text("[pytest]\ntrio_mode = true\n")
        done = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        return
    if not is_program(code):
        exec(compile(code, f"{page} block", "exec"), {"__name__": "docs_block"})
        return
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trio_clientsocket",
            "serve",
            "--port",
            "0",
            "--db",
            str(tmp_path / "chat.sqlite3"),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        assert server.stdout is not None
        port = re.search(r"127\.0\.0\.1:(\d+)", server.stdout.readline())
        assert port, "serve did not start"
        program = tmp_path / "program.py"
        program.write_text(code.replace("127.0.0.1:8080", f"127.0.0.1:{port.group(1)}"))
        done = run([sys.executable, str(program), "alice"], tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        printed = (done.stdout + done.stderr).replace(
            f"127.0.0.1:{port.group(1)}", "127.0.0.1:8080"
        )
        assert printed.strip(), "the program printed nothing"
    finally:
        server.kill()
        server.wait()
        assert server.stdout is not None
        server.stdout.close()
    if page in OUTPUT_SHOWN:
        shown = shown_output(BY_NAME[page], code)
        assert shown is not None, f"{page} does not show what this program prints"
        lines, any_order = shown
        if any_order:
            assert sorted(printed.splitlines()) == sorted(lines)
        else:
            assert printed.splitlines() == lines


COLUMN = 80
"""Characters of code that fit in the site's column in a 1400 px window (measured
in Chromium: 688 px at 8.2 px a character); longer lines are cut off."""
NOT_OURS = {"performance.md", "conformance.md", "record-replay.md"}


def test_code_lines_fit_the_column() -> None:
    long = [
        (page.name, line)
        for page in PAGES
        if page.parent == DOCS and page.name not in NOT_OURS
        for _, code in FENCE.findall(page.read_text())
        for line in code.splitlines()
        if len(line) > COLUMN
    ]
    assert not long


def test_every_python_block_of_the_readme_compiles() -> None:
    """Including the one that runs until Ctrl-C (run by test_first_hour.py)."""
    blocks = python_blocks(ROOT / "README.md")
    assert len(blocks) >= 3
    for code in blocks:
        compile(code, "README.md block", "exec")
