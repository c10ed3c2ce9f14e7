"""Every Python block in docs/ runs: the docs cannot rot.

- A block from ``testing.md`` is a test file: pytest runs it.
- A block with ``if __name__ == "__main__":`` is a program: it runs against a
  ``serve`` process started for it (its ``127.0.0.1:8080`` becomes that port).
- Any other block is a snippet: it is executed as it is.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
BLOCKS = [
    pytest.param(page.name, code, id=f"{page.stem}-{index}")
    for page in sorted(DOCS.glob("*.md"))
    for index, code in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), re.S))
]


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_every_page_has_been_collected() -> None:
    assert {page for page, *_ in (b.values for b in BLOCKS)} >= {
        "testing.md",
        "tutorial.md",
        "embedding.md",
        "genexus.md",
        "security.md",
    }


@pytest.mark.parametrize(("page", "code"), BLOCKS)
def test_block_runs(page: str, code: str, tmp_path: Path) -> None:
    if page == "testing.md":
        (tmp_path / "test_block.py").write_text(code)
        (tmp_path / "pytest.ini").write_text("[pytest]\ntrio_mode = true\n")
        done = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        return
    if 'if __name__ == "__main__":' not in code:
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
    )
    try:
        assert server.stdout is not None
        port = re.search(r"127\.0\.0\.1:(\d+)", server.stdout.readline())
        assert port, "serve did not start"
        program = tmp_path / "program.py"
        program.write_text(code.replace("127.0.0.1:8080", f"127.0.0.1:{port.group(1)}"))
        done = run([sys.executable, str(program), "alice"], tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.strip(), "the program printed nothing"
    finally:
        server.kill()
        server.wait()
        assert server.stdout is not None
        server.stdout.close()


def test_readme_python_compiles() -> None:
    """The README's example connects to a server of the reader's: compile it, at least."""
    readme = (DOCS.parent / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert blocks
    for code in blocks:
        compile(code, "README.md block", "exec")
