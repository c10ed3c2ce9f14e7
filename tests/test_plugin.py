"""The pytest plugin (issue 21, item 4), as a user's project sees it: a pytest
run in a fresh directory, in a subprocess, with the plugin loaded from its
entry point. And this project's own test command (item 5): what plain
``pytest`` leaves out, and the reasons of skips inside trio tests."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import trio_clientsocket_pytest as pytest_plugin

ROOT = Path(__file__).resolve().parent.parent

PROJECT_TESTS = """
import pytest
import trio

from trio_clientsocket import Closed


async def test_waits_for_an_event_that_never_comes(clientsocket_mock_server, autojump_clock):
    async with clientsocket_mock_server.client(ping_interval=20) as sock:
        await sock.wait_connected()
        async for event in sock.events():
            if isinstance(event, Closed):
                break


async def wait_for_three(server):
    await server.wait_connections(3)


async def test_a_task_of_the_test_waits(mock_server, autojump_clock):
    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait_for_three, mock_server)


@pytest.mark.clientsocket_time_limit(10)
async def test_marker_shortens_the_limit(mock_server, autojump_clock):
    await trio.sleep(11)


@pytest.mark.clientsocket_time_limit(None)
async def test_marker_lifts_the_limit(mock_server, autojump_clock):
    await trio.sleep(10**6)


async def test_an_hour_less_a_second_passes(clientsocket_mock_server, autojump_clock):
    await trio.sleep(3599)


async def test_both_names_are_one_server(mock_server, clientsocket_mock_server):
    assert mock_server is clientsocket_mock_server
    clientsocket_mock_server.echo = True
    async with mock_server.client() as sock:
        await sock.send("hi")
        async for event in sock.events():
            if getattr(event, "message", None) == "hi":
                break


async def test_without_the_fixture_there_is_no_limit(autojump_clock):
    await trio.sleep(10**6)


async def test_the_test_s_own_failure_is_reported_as_it_is(mock_server, autojump_clock):
    await trio.sleep(1)
    assert 1 + 1 == 3
"""


def run_pytest(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(ROOT)},  # this checkout's package
        capture_output=True,
        text=True,
        timeout=120,  # a test spinning on the autojump clock would hang here
        check=False,
    )


def outcomes(project: Path, *args: str) -> tuple[dict[str, tuple[str, str]], str]:
    """Each test's (outcome, failure message), from the run's JUnit XML; and its output."""
    report = project / "report.xml"
    done = run_pytest(project, f"--junitxml={report}", *args)
    results = {}
    for case in ET.parse(report).iter("testcase"):
        failure = case.find("failure")
        if failure is not None:
            results[case.get("name", "")] = ("failed", failure.text or "")
        else:
            results[case.get("name", "")] = ("passed", "")
    return results, done.stdout + done.stderr


def make_project(tmp_path: Path, ini: str = "") -> Path:
    (tmp_path / "pytest.ini").write_text(f"[pytest]\ntrio_mode = true\n{ini}")
    (tmp_path / "test_app.py").write_text(PROJECT_TESTS)
    return tmp_path


def test_a_test_waiting_for_ever_fails_at_the_limit_naming_what_it_waits_for(
    tmp_path: Path,
) -> None:
    results, output = outcomes(make_project(tmp_path))
    outcome, message = results["test_waits_for_an_event_that_never_comes"]
    assert outcome == "failed"
    assert "still waiting after 3600 s of trio time" in message
    assert "test_app.py:11 `async for event in sock.events():` -> EventStream.receive" in message
    assert "clientsocket_time_limit" in message  # and how to change it
    outcome, message = results["test_a_task_of_the_test_waits"]
    assert outcome == "failed"
    assert "test_app.py:21 `async with trio.open_nursery() as nursery:`" in message
    assert (
        "test_app.py:17 `await server.wait_connections(3)` -> MockServer.wait_connections"
        in message
    )
    assert results["test_an_hour_less_a_second_passes"] == ("passed", ""), output
    assert results["test_the_test_s_own_failure_is_reported_as_it_is"][0] == "failed"
    assert "assert (1 + 1) == 3" in output
    assert "still waiting" not in results["test_the_test_s_own_failure_is_reported_as_it_is"][1]


def test_the_marker_and_the_ini_option_set_the_limit(tmp_path: Path) -> None:
    results, output = outcomes(make_project(tmp_path, "clientsocket_time_limit = 3598.5\n"))
    outcome, message = results["test_marker_shortens_the_limit"]
    assert outcome == "failed"
    assert "after 10 s of trio time" in message
    assert "test_app.py:27 `await trio.sleep(11)` -> sleep" in message
    assert results["test_marker_lifts_the_limit"] == ("passed", ""), output
    assert results["test_without_the_fixture_there_is_no_limit"] == ("passed", ""), output
    assert results["test_both_names_are_one_server"] == ("passed", ""), output
    outcome, message = results["test_an_hour_less_a_second_passes"]
    assert outcome == "failed"  # 3599 s no longer fit in the project's limit
    assert "after 3598.5 s of trio time" in message


def test_a_bad_limit_is_a_usage_error_naming_the_option(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\ntrio_mode = true\n")
    (tmp_path / "test_app.py").write_text(
        "import pytest\n\n@pytest.mark.clientsocket_time_limit(-1)\n"
        "async def test_it(mock_server):\n    pass\n"
    )
    done = run_pytest(tmp_path)
    assert done.returncode == pytest.ExitCode.USAGE_ERROR
    assert (
        "test_app.py::test_it: clientsocket_time_limit must be a number of seconds > 0 or "
        "None, not -1" in done.stderr
    )


@pytest.mark.parametrize(
    ("value", "seconds"), [(10, 10.0), ("3600", 3600.0), (0.5, 0.5), (None, None), ("None", None)]
)
def test_a_limit_is_seconds_or_none(value: object, seconds: float | None) -> None:
    assert pytest_plugin._limit(value, "the option") == seconds


@pytest.mark.parametrize("value", [0, -1, "soon", True, float("inf"), float("nan"), [], ""])
def test_anything_else_is_refused_naming_the_option(value: object) -> None:
    with pytest.raises(pytest.UsageError, match=r"^the option must be a number of seconds > 0"):
        pytest_plugin._limit(value, "the option")


def test_pytest_start_does_not_import_the_mock_server(tmp_path: Path) -> None:
    """A project that does not use the fixture does not pay for the mock server;
    ``-p no:trio_clientsocket`` turns the plugin off."""
    (tmp_path / "conftest.py").write_text(
        textwrap.dedent(
            """
            import json, sys

            def pytest_collection_finish(session):
                names = sorted(n for n in sys.modules if n.startswith("trio_clientsocket"))
                print("MODULES", json.dumps(names))
            """
        )
    )
    loaded = []
    for disable in ([], ["-p", "no:trio_clientsocket"]):
        done = run_pytest(tmp_path, "--co", "-s", *disable)
        line = next(x for x in done.stdout.splitlines() if x.startswith("MODULES"))
        loaded.append(json.loads(line.removeprefix("MODULES ")))
    assert loaded[0] == ["trio_clientsocket_pytest"]  # the plugin, and nothing of the library
    assert loaded[1] == []  # turned off: nothing at all


def test_the_plugin_module_imports_only_the_standard_library_and_pytest() -> None:
    source = Path(pytest_plugin.__file__).read_text()
    imported = set()
    for node in ast.parse(source).body:  # module level only; TYPE_CHECKING is not run
        if isinstance(node, ast.Import):
            imported |= {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.partition(".")[0])
    heavy = imported - set(sys.stdlib_module_names) - {"pytest", "__future__"}
    assert not heavy


# -- this project's own test command (tests/conftest.py; issue 21, item 5) --------------


def test_plain_pytest_leaves_out_the_slow_and_interop_tests_and_says_so() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--co", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = done.stdout.splitlines()[-2:]
    left = re.fullmatch(
        r"left out: (\d+) slow tests and (\d+) interop tests \(servers from the interop "
        r"extra and npm\); `pytest --all` runs them",
        summary[0],
    )
    assert left, summary
    counted = re.fullmatch(r"(\d+)/(\d+) tests collected \((\d+) deselected\) in .*", summary[1])
    assert counted, summary
    assert int(left[1]) + int(left[2]) == int(counted[3]) > 0
    assert int(left[2]) > 0  # the interop tests


def test_a_skip_inside_a_trio_test_keeps_its_reason_and_place(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\ntrio_mode = true\n")
    (tmp_path / "conftest.py").write_text("from tests.conftest import pytest_runtest_makereport\n")
    (tmp_path / "test_app.py").write_text(
        "import pytest\n\n\nasync def test_it():\n    pytest.skip('no server here')\n"
    )
    done = run_pytest(tmp_path, "-rs")
    assert "SKIPPED [1] test_app.py:5: no server here" in done.stdout, done.stdout
