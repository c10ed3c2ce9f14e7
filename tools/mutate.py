"""A targeted mutation check: replace each branch body of the given modules by
``raise AssertionError``, one at a time, and run the test suite. A mutant that
the suite does not notice (it stays green) is a survivor: code that no test
would miss. Not part of CI (it runs the suite once per mutant).

Run from the repository root, in a checkout nobody else is using (it edits
the files it mutates, and restores them):

    python tools/mutate.py trio_clientsocket/_session.py trio_clientsocket/_loop.py

Prints one line per mutant (killed or SURVIVED, with the line) and a summary.
A body is skipped when it is marked ``# mutation: <why>`` on its first line:
the reason a survivor is acceptable, kept next to the code.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def bodies(tree: ast.Module) -> list[list[ast.stmt]]:
    """Every branch body: of if/else, for, while, try/except/finally, with,
    and of each function (a function whose body is never run is a survivor too)."""
    found: list[list[ast.stmt]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.If | ast.For | ast.AsyncFor | ast.While):
            found.append(node.body)
            if node.orelse:
                found.append(node.orelse)
        elif isinstance(node, ast.Try):
            found.append(node.body)
            found.extend(handler.body for handler in node.handlers)
            if node.finalbody:
                found.append(node.finalbody)
        elif isinstance(node, ast.With | ast.AsyncWith | ast.FunctionDef | ast.AsyncFunctionDef):
            found.append(node.body)
    return found


def mutants(path: Path) -> list[tuple[int, int, str]]:
    """(first line, last line, indentation) of each body to replace."""
    source = path.read_text()
    lines = source.splitlines()
    out = []
    for body in bodies(ast.parse(source)):
        first = body[0]
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            if len(body) == 1:
                continue  # a docstring alone
            first = body[1]
        start, end = first.lineno, body[-1].end_lineno or body[-1].lineno
        line = lines[start - 1]
        if "# mutation:" in line:
            continue
        indent = line[: len(line) - len(line.lstrip())]
        out.append((start, end, indent))
    return sorted(set(out))


FIRST = ["test_lifecycle.py", "test_resilience.py", "test_races.py", "test_review_core.py"]
"""Test files that exercise the socket end to end, run first so that a mutant is
usually killed within seconds (the whole suite still runs for a survivor)."""


def run_suite(workdir: Path, timeout: float) -> bool:
    """True when the suite passes (the mutant survived)."""
    tests = sorted((workdir / "tests").glob("test_*.py"))
    ordered = [workdir / "tests" / name for name in FIRST]
    ordered += [t for t in tests if t.name not in FIRST]
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:randomly", *map(str, ordered)],
            cwd=workdir,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False  # a hang is noticed
    return done.returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--workers", type=int, default=2, help="copies run at once")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per suite run")
    parser.add_argument(
        "--start", type=int, default=0, help="skip the first N mutants (resume a stopped run)"
    )
    args = parser.parse_args()
    jobs = [(f, m) for f in args.files for m in mutants(ROOT / f)]
    print(f"{len(jobs)} mutants", flush=True)
    jobs = jobs[args.start :]
    # one scratch copy of the repository per worker
    copies = []
    for i in range(args.workers):
        copy = Path(f"/tmp/mutate-{i}")
        subprocess.run(["rm", "-rf", str(copy)], check=True)
        subprocess.run(
            ["git", "worktree", "add", "--detach", "-f", str(copy)], cwd=ROOT, check=True,
            capture_output=True,
        )
        for f in args.files:  # the working copy's version, committed or not
            (copy / f).write_text((ROOT / f).read_text())
        copies.append(copy)
    free = list(copies)
    survivors: list[str] = []
    started = time.monotonic()

    def one(job: tuple[Path, tuple[int, int, str]]) -> str:
        file, (start, end, indent) = job
        copy = free.pop()
        try:
            target = copy / file
            original = (ROOT / file).read_text()
            lines = original.splitlines(keepends=True)
            mutant = f'{indent}raise AssertionError("mutant")\n'
            mutated = [*lines[: start - 1], mutant, *lines[end:]]
            target.write_text("".join(mutated))
            survived = run_suite(copy, args.timeout)
            target.write_text(original)
        finally:
            free.append(copy)
        text = f"{file}:{start}-{end} {lines[start - 1].strip()[:70]}"
        if survived:
            survivors.append(text)
        return ("SURVIVED " if survived else "killed   ") + text

    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        for line in pool.map(one, jobs):
            print(line, flush=True)
    for copy in copies:
        subprocess.run(["git", "worktree", "remove", "--force", str(copy)], cwd=ROOT, check=False)
    minutes = (time.monotonic() - started) / 60
    print(f"\n{len(jobs)} mutants, {len(survivors)} survived ({minutes:.0f} min)")
    for text in survivors:
        print("  " + text)


if __name__ == "__main__":
    main()
