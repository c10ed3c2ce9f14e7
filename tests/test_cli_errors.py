"""The command line's user errors: one ``error:`` line on stderr and exit code 2,
never a traceback; and its basics: --version, the program name, --help."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from trio_clientsocket import __version__
from trio_clientsocket.__main__ import build_parser, main

MODULE = [sys.executable, "-m", "trio_clientsocket"]
SCRIPT = Path(sys.executable).parent / "trio-clientsocket"


def run(*args: str, command: list[str] = MODULE) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def assert_usage_error(
    done: subprocess.CompletedProcess[str], *expected: str, output: bool = False
) -> None:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr  # one line: no traceback, no usage block
    assert lines[0].startswith("error: "), done.stderr
    for text in expected:
        assert text in lines[0], (text, lines[0])
    if not output:  # else the session had started: its events were printed
        assert done.stdout == ""


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def test_serve_on_a_port_in_use(busy_port: int, tmp_path: Path) -> None:
    done = run("serve", "--port", str(busy_port), "--db", str(tmp_path / "chat.sqlite3"))
    assert_usage_error(done, f"cannot listen on 127.0.0.1:{busy_port}", "Address already in use")
    assert not (tmp_path / "chat.sqlite3").exists()  # no empty database left behind


@pytest.mark.parametrize(
    ("db", "expected"),
    [
        ("missing/chat.sqlite3", "no directory"),
        (".", "unable to open database file"),  # a directory
        ("notes.txt", "file is not a database"),
    ],
)
def test_serve_with_a_bad_db(db: str, expected: str, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a database, but long enough to be read as one\n" * 20)
    done = run("serve", "--port", "0", "--db", str(tmp_path / db))
    assert_usage_error(done, "chat database", expected)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--port", "-5"], "argument --port: -5 is not a port number"),
        (["--port", "70000"], "is not a port number (0-65535)"),
        (["--port", "http"], "is not a port number"),
        (["--host", "999.1.1.1"], "'999.1.1.1' is not a valid IP address"),
        (["--host", "::99999"], "is not a valid IP address"),
        (["--host", ""], "argument --host"),
    ],
)
def test_serve_bad_arguments(args: list[str], expected: str) -> None:
    assert_usage_error(run("serve", *args), expected)


URL = "ws://127.0.0.1:9/x"  # never reached: every case fails before connecting


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--reconnect-initial", "5", "--reconnect-max", "1"],
            "--reconnect-max (1 s) must not be shorter than --reconnect-initial (5 s)",
        ),
        (["--ping-interval", "-1"], "argument --ping-interval: must be a number of seconds >= 0"),
        (["--ping-timeout", "0"], "argument --ping-timeout: must be a number of seconds > 0"),
        (["--connect-timeout", "nan"], "is not a finite number"),
        (["--reconnect-initial", "inf"], "is not a finite number"),
        (["--reconnect-max", "soon"], "'soon' is not a number"),
        (["--linger", "-1"], "argument --linger"),
        (["--max-attempts", "0"], "argument --max-attempts: must be at least 1"),
        (["--max-attempts", "2.5"], "is not a whole number"),
        (["--header", "Host:evil"], "header 'Host' is set by the WebSocket handshake itself"),
        (["--header", "no colon"], "must look like 'Name: value'"),
        (["--client-id", "a=b"], "client id 'a=b' must be a bare token"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_connect_bad_arguments(args: list[str], expected: str) -> None:
    assert_usage_error(run("connect", URL, *args), expected)


@pytest.mark.parametrize("url", ["ftp://example.com/", "ws://", "ws://h/#fragment", "ws://h:99999/"])
def test_connect_bad_url(url: str) -> None:
    assert_usage_error(run("connect", url))


def test_a_missing_or_unknown_command() -> None:
    assert_usage_error(run(), "required: COMMAND")
    assert_usage_error(run("bogus"), "invalid choice: 'bogus'")


@pytest.mark.parametrize("end", ["write end of a pipe", "write-only file"])
def test_unreadable_standard_input_is_an_error(end: str, tmp_path: Path) -> None:
    if end == "write-only file":
        stdin = os.open(tmp_path / "out.txt", os.O_WRONLY | os.O_CREAT)
        others: list[int] = []
    else:
        *others, stdin = os.pipe()
    try:
        done = subprocess.run(
            [*MODULE, "connect", URL, "--connect-timeout", "30"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            stdin=stdin,
        )
    finally:
        for fd in (stdin, *others):
            os.close(fd)
    assert_usage_error(done, "cannot read standard input", output=True)


# -- the basics ---------------------------------------------------------------------


def test_version() -> None:
    done = run("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"python -m trio_clientsocket {__version__}\n"


@pytest.mark.skipif(not SCRIPT.exists(), reason="the trio-clientsocket script is not installed")
def test_the_installed_script_shows_its_own_name() -> None:
    done = run("--version", command=[str(SCRIPT)])
    assert done.stdout == f"trio-clientsocket {__version__}\n"
    done = run("connect", "--help", command=[str(SCRIPT)])
    assert done.stdout.startswith("usage: trio-clientsocket connect "), done.stdout
    assert_usage_error(run("serve", "--port", "-1", command=[str(SCRIPT)]), "trio-clientsocket")


def test_the_module_shows_python_m(capsys: pytest.CaptureFixture[str]) -> None:
    done = run("serve", "--help")
    assert done.stdout.startswith("usage: python -m trio_clientsocket serve "), done.stdout
    with pytest.raises(SystemExit) as exited:
        main(["--help"])  # the entry point's default: the script's name
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("usage: trio-clientsocket ")


@pytest.mark.parametrize("command", ["connect", "serve"])
def test_every_numeric_option_shows_its_default(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    text = re.sub(r"\s+", " ", capsys.readouterr().out)
    # an option taking a number: S (seconds), N (a count) or PORT
    numeric = re.findall(r" (--[a-z-]+) (?:S|N|PORT) (.*?)(?= -[-a-z]|$| exit codes:)", text)
    names = {name for name, _ in numeric}
    assert names == {
        "connect": {
            "--linger",
            "--reconnect-initial",
            "--reconnect-max",
            "--max-attempts",
            "--connect-timeout",
            "--ping-interval",
            "--ping-timeout",
        },
        "serve": {"--port"},
    }[command]
    for name, help_text in numeric:
        assert re.search(r"\(default: (\d+(\.\d+)?|never give up)\)", help_text), (name, help_text)
