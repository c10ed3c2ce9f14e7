"""What the pytest plugin costs at the start of every pytest run of a project
that has trio-clientsocket installed (and uses nothing of it).

In an empty project directory, ``python -X importtime -m pytest --co -q``
runs ``--runs`` times with the plugin and as many times without it (``-p
no:trio_clientsocket``), alternating, after one warm-up run each way; with
bytecode caching on (``PYTHONDONTWRITEBYTECODE`` unset), as on a user's
machine. Two projects: one with pytest-trio active (which imports trio
itself), and one without it (``-p no:trio``), where whatever the plugin
imports is its own cost. Reported: the medians of the process's wall and CPU
time each way, and, from ``-X importtime``, the modules imported only with
the plugin, with the time spent in them, by package (``-s``: pytest's capture
would swallow the import times). ``-X importtime`` does not see modules
imported through ``importlib.import_module``, as pytest imports a plugin: the
plugin module itself and its package's ``__init__`` are missing from that
sum; everything they import is in it.

Run: ``python benchmarks/plugin_import.py [--python PYTHON] [--runs N]`` with
a Python that has trio-clientsocket and the ``test`` extra installed
(``pip install -e '.[test]'``).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")
OURS = "trio_clientsocket"


def run_once(
    python: str, project: Path, with_plugin: bool, options: list[str]
) -> tuple[float, float, str]:
    """One ``pytest --co`` run: (wall seconds, CPU seconds, its -X importtime text)."""
    command = [python, "-X", "importtime", "-m", "pytest", "--co", "-q", "-s"]
    command += ["-p", "no:cacheprovider", *options]
    if not with_plugin:
        command += ["-p", "no:trio_clientsocket"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    before = os.times()
    start = time.perf_counter()
    done = subprocess.run(
        command, cwd=project, env=env, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - start
    after = os.times()
    if done.returncode not in (0, 5):  # 5: no tests collected, as expected here
        sys.exit(f"pytest failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return wall, cpu, done.stderr


def self_times(importtime: str) -> dict[str, int]:
    """Module name -> microseconds spent in the module itself, from ``-X importtime``."""
    return {name: int(us) for us, _, _, name in LINE.findall(importtime)}


def measure(python: str, runs: int, options: list[str]) -> None:
    """Run and print one comparison."""
    walls: dict[bool, list[float]] = {True: [], False: []}
    cpus: dict[bool, list[float]] = {True: [], False: []}
    times: dict[bool, dict[str, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        (project / "pytest.ini").write_text("[pytest]\n")
        for with_plugin in (True, False):  # warm-up: bytecode written, files cached
            run_once(python, project, with_plugin, options)
        for _ in range(runs):
            for with_plugin in (True, False):
                wall, cpu, importtime = run_once(python, project, with_plugin, options)
                walls[with_plugin].append(wall)
                cpus[with_plugin].append(cpu)
                times[with_plugin] = self_times(importtime)
    print(f"{'':24}{'wall (s)':>10}{'CPU (s)':>10}")
    for label, key in (("with the plugin", True), ("without (-p no:...)", False)):
        wall, cpu = statistics.median(walls[key]), statistics.median(cpus[key])
        print(f"{label:24}{wall:10.3f}{cpu:10.3f}")
    wall_cost = statistics.median(walls[True]) - statistics.median(walls[False])
    cpu_cost = statistics.median(cpus[True]) - statistics.median(cpus[False])
    print(f"{'the plugin costs':24}{wall_cost:10.3f}{cpu_cost:10.3f}")
    pulled = {name: us for name, us in times[True].items() if name not in times[False]}
    packages: dict[str, int] = {}
    for name, us in pulled.items():
        packages[name.split(".")[0]] = packages.get(name.split(".")[0], 0) + us
    print(
        f"modules imported only with the plugin (-X importtime, last run): {len(pulled)}, "
        f"{sum(pulled.values()) / 1000:.1f} ms"
    )
    for package, us in sorted(packages.items(), key=lambda item: -item[1])[:8]:
        print(f"  {us / 1000:8.1f} ms  {package}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, help="the Python to measure")
    parser.add_argument("--runs", type=int, default=15, help="runs each way (default 15)")
    args = parser.parse_args()
    print(f"pytest --co -q in an empty project, median of {args.runs} runs each way")
    print("\n-- a project with pytest-trio (it imports trio itself)")
    measure(args.python, args.runs, [])
    print("\n-- a project without pytest-trio (-p no:trio)")
    measure(args.python, args.runs, ["-p", "no:trio"])


if __name__ == "__main__":
    main()
