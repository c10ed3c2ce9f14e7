"""The interop servers as subprocesses on 127.0.0.1: what each is, whether it
can run here, and starting, killing (-9) and restarting it on the same port."""

from __future__ import annotations

import importlib.util
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

import attrs

__all__ = ["SERVERS", "ServerProcess", "ServerSpec"]

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = Path(__file__).resolve().parent / "node"
READY_TIMEOUT = 30.0
"""Seconds a server may take to print ``ready PORT`` (imports on a loaded CI machine)."""


@attrs.frozen
class ServerSpec:
    """One server of the matrix."""

    name: str
    """The row of the matrix: ``aiohttp-heartbeat``, ``node-ws-plain``..."""
    argv: tuple[str, ...]
    """The command (run from the repository root), ``--port`` added."""
    modules: tuple[str, ...] = ()
    """Python modules it needs (else the server is skipped)."""
    compresses: bool = True
    """It offers permessage-deflate to a client that asks for it."""
    can_ping: bool = True
    """The application can send a ping on command (ASGI cannot)."""
    reports_compression: bool = True
    """Its library tells the application whether permessage-deflate was negotiated."""
    reports_close_codes: bool = True
    """Its library gives the application the code of the client's close frame."""

    def missing(self) -> str | None:
        """Why this server cannot run here, or None."""
        if self.argv[0] == "node":
            if shutil.which("node") is None:
                return "node is not installed: the ws servers need Node.js (>= 18)"
            if not (NODE_DIR / "node_modules" / "ws" / "package.json").is_file():
                return (
                    "the ws package is not installed: "
                    "run `npm ci --prefix tests/interop/node`"
                )
            return None
        absent = [m for m in self.modules if importlib.util.find_spec(m) is None]
        if absent:
            return f"{', '.join(absent)} not installed: pip install {' '.join(absent)}"
        return None


def _python(module: str, *flags: str) -> tuple[str, ...]:
    return (sys.executable, "-m", f"tests.interop.{module}", *flags)


def _node(*flags: str) -> tuple[str, ...]:
    return ("node", str(NODE_DIR / "server.js"), *flags)


_ASGI = {"can_ping": False, "reports_compression": False}

SERVERS = (
    ServerSpec("websockets", _python("serve_websockets"), ("websockets",)),
    ServerSpec(
        "aiohttp-heartbeat",
        _python("serve_aiohttp", "--heartbeat"),
        ("aiohttp",),
        compresses=False,
    ),
    ServerSpec("aiohttp-compress", _python("serve_aiohttp", "--compress"), ("aiohttp",)),
    ServerSpec("uvicorn", _python("serve_uvicorn"), ("uvicorn", "starlette"), **_ASGI),
    ServerSpec(
        "hypercorn",
        _python("serve_hypercorn"),
        ("hypercorn",),
        reports_close_codes=False,  # websocket.disconnect says 1006 for any client close
        **_ASGI,
    ),
    ServerSpec("tornado", _python("serve_tornado"), ("tornado",)),
    ServerSpec("node-ws-deflate", _node("--deflate")),
    ServerSpec("node-ws-plain", _node(), compresses=False),
)


def _read_ready(proc: subprocess.Popen[bytes], stdout: IO[bytes], timeout: float) -> int:
    """The port of the ``ready PORT`` line; raises if the server exits or is late."""
    deadline = time.monotonic() + timeout
    line = b""
    with selectors.DefaultSelector() as selector:
        selector.register(stdout, selectors.EVENT_READ)
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                raise TimeoutError(f"no `ready PORT` line within {timeout} s")
            chunk = os.read(stdout.fileno(), 256)
            if not chunk:
                raise RuntimeError(f"the server exited ({proc.wait()}) before it was ready")
            line += chunk
    words = line.split()
    if len(words) != 2 or words[0] != b"ready" or not words[1].isdigit():
        raise RuntimeError(f"unexpected first line from the server: {line!r}")
    return int(words[1])


class ServerProcess:
    """A server subprocess: ``start()`` on an ephemeral port, ``kill()`` with
    SIGKILL, ``start(same_port=True)`` again, ``stop()``."""

    def __init__(self, spec: ServerSpec) -> None:
        self.spec = spec
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()

    def url(self, path: str = "/app/gxwebsocket?interop") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, *, same_port: bool = False) -> None:
        """Start the server and wait for its ``ready`` line (on the port it had
        with ``same_port``, else on an ephemeral one)."""
        assert not self.running
        port = self.port if same_port else 0
        self.proc = subprocess.Popen(
            [*self.spec.argv, "--port", str(port)],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
        )
        self.starts += 1
        assert self.proc.stdout is not None
        try:
            ready = _read_ready(self.proc, self.proc.stdout, READY_TIMEOUT)
        except Exception as exc:
            self.stop()
            raise RuntimeError(f"{self.spec.name}: {exc}\n{self.log()}") from None
        assert not same_port or ready == port, (ready, port)
        self.port = ready

    def kill(self) -> None:
        """kill -9, and wait until the process is gone."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._close_pipe()

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close_pipe()

    def close(self) -> None:
        self.stop()
        self._log.close()

    def log(self, limit: int = 4000) -> str:
        """The server's standard error so far (its end), for failure messages."""
        self._log.flush()
        self._log.seek(0)
        text = self._log.read().decode(errors="replace")
        self._log.seek(0, os.SEEK_END)
        return f"--- {self.spec.name} stderr ---\n{text[-limit:]}"

    def _close_pipe(self) -> None:
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
