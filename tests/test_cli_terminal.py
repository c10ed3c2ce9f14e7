"""``connect`` on a terminal: readline editing and history at a prompt, events
printed above the line being typed without breaking it, and the terminal put
back as it was. Checked two ways: the redrawing function against a small
terminal emulator, and real sessions through a pseudo-terminal (every wait
bounded)."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import termios
import unicodedata
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from tests.test_cli import CLI
from trio_clientsocket._cli import clear_input, print_above, shown
from trio_clientsocket.testing import open_mock_server

# -- a terminal emulator, for what the CLI and readline write -------------------------


class Screen:
    """An xterm-like screen of ``columns`` and endless rows: printable text (wide
    characters in 2 cells, a pending wrap at the margin), CR, LF (as CR LF, the
    tty's ONLCR), BS, and the CSI sequences A B C D K J P @ and insert mode
    (4h, 4l); others are ignored."""

    def __init__(self, columns: int) -> None:
        self.columns = columns
        self.cells: dict[tuple[int, int], str] = {}
        self.row = self.col = 0
        self.pending = False
        self.inserting = False

    def feed(self, text: str) -> None:
        i = 0
        while i < len(text):
            c = text[i]
            if c == "\x1b":
                found = re.match(r"\x1b(\[([?>]?)([\d;]*)([A-Za-z@])|[=>()][0-9A-B]?)", text[i:])
                assert found, repr(text[i : i + 12])
                i += found.end()
                if found.group(1).startswith("[") and not found.group(2):
                    self.csi(found.group(4), int(found.group(3) or 0))
                continue
            if c == "\r":
                self.col, self.pending = 0, False
            elif c == "\n":
                self.row, self.col, self.pending = self.row + 1, 0, False
            elif c == "\b":
                self.col, self.pending = max(self.col - 1, 0), False
            elif c >= " ":
                self.put(c)
            i += 1

    def put(self, c: str) -> None:
        if unicodedata.combining(c):
            return
        width = 2 if unicodedata.east_asian_width(c) in ("W", "F") else 1
        if self.pending or self.col + width > self.columns:
            self.row, self.col, self.pending = self.row + 1, 0, False
        if self.inserting:
            self.csi("@", width)
        self.cells[self.row, self.col] = c
        if width == 2:
            self.cells[self.row, self.col + 1] = ""
        self.col += width
        if self.col >= self.columns:
            self.col, self.pending = self.columns - 1, True

    def csi(self, final: str, n: int) -> None:
        count = max(n, 1)
        self.pending = False
        if final == "A":
            self.row = max(self.row - count, 0)
        elif final == "B":
            self.row += count
        elif final == "C":
            self.col = min(self.col + count, self.columns - 1)
        elif final == "D":
            self.col = max(self.col - count, 0)
        elif final == "K" and n == 0:
            for col in range(self.col, self.columns):
                self.cells.pop((self.row, col), None)
        elif final == "J" and n == 0:
            for row, col in list(self.cells):
                if row > self.row or (row == self.row and col >= self.col):
                    del self.cells[row, col]
        elif final in "hl" and n == 4:
            self.inserting = final == "h"
        elif final in "P@":
            line = [self.cells.get((self.row, col), " ") for col in range(self.columns)]
            if final == "P":
                line = line[: self.col] + line[self.col + count :] + [" "] * count
            else:
                line = line[: self.col] + [" "] * count + line[self.col :]
            for col in range(self.columns):
                self.cells[self.row, col] = line[col]

    def lines(self) -> list[str]:
        last = max((row for row, _ in self.cells), default=-1)
        rows = [
            "".join(self.cells.get((row, col), " ") for col in range(self.columns)).rstrip()
            for row in range(last + 1)
        ]
        while rows and not rows[-1]:
            rows.pop()
        return rows


def wrapped(text: str, columns: int) -> list[str]:
    rows, row, width = [], "", 0
    for c in text:
        w = 2 if unicodedata.east_asian_width(c) in ("W", "F") else 1
        if width + w > columns:
            rows.append(row)
            row, width = "", 0
        row, width = row + c, width + w
    return [r.rstrip() for r in (*rows, row)]


# -- the redrawing function ---------------------------------------------------------


CASES = [
    ("hello", 5),
    ("hello", 0),
    ("hello", 2),
    ("x" * 18, 18),  # prompt and line fill the row exactly
    ("x" * 18, 3),
    ("x" * 30, 30),
    ("x" * 30, 10),
    ("x" * 30, 25),
    ("x" * 30, 0),
    ("y" * 38, 38),  # two full rows
    ("y" * 38, 17),
    ("a\tb\tc", 5),
    ("a\tb\tc", 2),
    ("日本語", 1),
    ("日本語", 3),
    ("ctl\x01x", 5),
    ("", 0),
]


@pytest.mark.parametrize(("buffer", "point"), CASES)
def test_print_above_keeps_the_line_being_typed(buffer: str, point: int) -> None:
    columns, prompt = 20, "> "
    screen = Screen(columns)
    screen.feed("an earlier line\n")
    # what readline has drawn: the prompt and the buffer, the cursor at point
    shown_line, _ = shown(prompt + buffer)
    screen.feed(shown_line)
    at = shown(prompt + buffer[:point])[1]
    screen.row, screen.col, screen.pending = 1 + at // columns, at % columns, False

    screen.feed(print_above("< a message", prompt, buffer, point, columns))

    assert screen.lines() == ["an earlier line", "< a message", *wrapped(shown_line, columns)]
    assert (screen.row, screen.col) == (2 + at // columns, at % columns)
    assert not screen.pending


@pytest.mark.parametrize(("buffer", "point"), CASES)
def test_clear_input_erases_every_row_of_the_line(buffer: str, point: int) -> None:
    columns, prompt = 20, "> "
    screen = Screen(columns)
    screen.feed("an earlier line\n" + shown(prompt + buffer)[0])
    at = shown(prompt + buffer[:point])[1]
    screen.row, screen.col, screen.pending = 1 + at // columns, at % columns, False
    screen.feed(clear_input(prompt, buffer, point, columns) + "* closed\n")
    assert screen.lines() == ["an earlier line", "* closed"]


# -- real sessions in a pseudo-terminal ------------------------------------------------


class Terminal:
    """The master side of a pseudo-terminal with ``connect`` on the other side."""

    def __init__(self, master: trio.lowlevel.FdStream, slave: int, process: trio.Process) -> None:
        self.master = master
        self.slave = slave
        self.process = process
        self.output = b""
        self.seen = 0  # expect() looks after what it matched last

    async def expect(self, wanted: bytes, count: int = 1) -> None:
        """Read until ``wanted`` has come ``count`` times after the last match."""
        with trio.fail_after(15):
            while self.output.count(wanted, self.seen) < count:
                try:
                    data = await self.master.receive_some(65536)
                except trio.BrokenResourceError:  # EIO: the other side is closed
                    data = b""
                if not data:
                    raise EOFError(self.output[self.seen :])
                self.output += data
        for _ in range(count):
            self.seen = self.output.index(wanted, self.seen) + len(wanted)

    async def type(self, keys: bytes) -> None:
        await self.master.send_all(keys)

    def screen(self, columns: int) -> list[str]:
        screen = Screen(columns)
        screen.feed(self.output.decode())
        return screen.lines()

    def cooked(self) -> bool:
        """The terminal echoes and reads whole lines (as a shell leaves it)."""
        flags = termios.tcgetattr(self.slave)[3]
        return bool(flags & termios.ECHO) and bool(flags & termios.ICANON)


@asynccontextmanager
async def interactive(*args: str, columns: int = 80) -> AsyncIterator[Terminal]:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env.update(TERM="xterm", INPUTRC=os.devnull)  # no user key bindings
    try:
        process = await trio.lowlevel.open_process(
            [*CLI, "connect", *args],
            stdin=slave,
            stdout=slave,
            stderr=subprocess.PIPE,
            env=env,
        )
    except BaseException:
        os.close(master)
        os.close(slave)
        raise
    terminal = Terminal(trio.lowlevel.FdStream(master), slave, process)
    try:
        assert terminal.cooked()
        yield terminal
    finally:
        if process.returncode is None:
            process.kill()
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            await process.wait()
            assert process.stderr is not None
            errors = b""
            while data := await process.stderr.receive_some():
                errors += data
            assert b"Traceback" not in errors, errors.decode()
        await terminal.master.aclose()
        os.close(slave)


async def test_events_print_above_the_line_being_typed() -> None:
    with trio.fail_after(60):
        async with open_mock_server() as mock:
            port = await mock.listen_tcp()
            async with interactive(f"ws://127.0.0.1:{port}/x", columns=60) as term:
                await term.expect(b"* connected to ")
                connection = await mock.wait_connections(1)
                await term.expect(b"> ")
                await term.type(b"hel")
                await term.expect(b"hel")
                await connection.send("incoming \x1b[31m héllo")
                # the line being typed is cleared, the event printed, the line redrawn
                await term.expect(b"\r\x1b[J< incoming \\x1b[31m h\xc3\xa9llo\r\n> hel")
                await term.type(b"lo\r")
                await mock.wait_for(lambda: mock.received == ["hello"])
                await term.type(b"\x1b[A\r")  # Up: the line from history, not "\x1b[A"
                await mock.wait_for(lambda: mock.received == ["hello", "hello"])
                await term.expect(b"> ", 2)
                await term.type(b"\x04")  # Ctrl-D on an empty line: end of input
                assert await term.process.wait() == 0
                await term.expect(b"* closed [Disconnected]")
                assert term.screen(60) == [
                    f"* connected to ws://127.0.0.1:{port}/x [Connected]",
                    "< incoming \\x1b[31m héllo",
                    "> hello",
                    "> hello",
                    "* closed [Disconnected]",
                ]
                assert term.cooked()
            await mock.wait_for(lambda: not mock.open_connections)
            assert connection.close_code == 1000


async def test_a_long_line_edited_in_the_middle_survives_an_event() -> None:
    """The line wraps, the cursor is moved back into it; an event comes; the
    next key lands where the cursor was (readline's idea of the screen and
    the screen agree)."""
    with trio.fail_after(60):
        async with open_mock_server() as mock:
            port = await mock.listen_tcp()
            async with interactive(f"ws://127.0.0.1:{port}/x", columns=30) as term:
                await term.expect(b"* connected to ")
                connection = await mock.wait_connections(1)
                await term.expect(b"> ")
                await term.type(b"x" * 50)
                await term.expect(b"x", 50)
                await term.type(b"\x1b[D" * 5)  # Left x 5: readline answers with BS
                await term.expect(b"\b", 5)
                await connection.send("event")
                await term.expect(b"< event\r\n")
                await term.expect(b"x" * 50)  # the redrawn line
                await term.type(b"Y")
                await term.expect(b"Y")
                await term.expect(b"xxxxx")  # readline redraws the rest after Y
                line = "x" * 45 + "Y" + "x" * 5
                assert term.screen(30)[-3:] == ["< event", *wrapped("> " + line, 30)]
                await term.type(b"\r")
                await mock.wait_for(lambda: mock.received == [line])
                term.process.terminate()
                assert await term.process.wait() == 143


async def test_sigterm_at_the_prompt_reports_unsent_lines_and_restores_the_terminal() -> None:
    with trio.fail_after(60):
        async with open_mock_server() as mock:
            port = await mock.listen_tcp()
            mock.stall()  # TCP connects, the handshake is never answered: lines wait
            url = f"ws://127.0.0.1:{port}/x"
            async with interactive(url, "--connect-timeout", "30") as term:
                await term.expect(b"> ")
                await term.type(b"one\r")
                await term.expect(b"one\r\n> ")  # the prompt comes back once it is queued
                await term.type(b"two\r")
                await term.expect(b"two\r\n> ")
                await term.type(b"half-typed")
                await term.expect(b"half-typed")
                assert not term.cooked()  # readline has the terminal
                term.process.terminate()
                await term.expect(b"* closed [Disconnected]")
                assert await term.process.wait() == 143
                assert term.screen(80) == [
                    "> one",
                    "> two",
                    "! 2 message(s) not delivered (closed)",
                    "* closed [Disconnected]",
                ]
                assert term.cooked()  # put back, though readline was mid-line
            mock.resume()
