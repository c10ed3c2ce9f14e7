"""The README's first command runs, over real sockets on 127.0.0.1, and succeeds."""

from __future__ import annotations

import io
import subprocess
import sys

from trio_clientsocket._demo import run_demo


async def test_demo_delivers_everything_once_in_order() -> None:
    out = io.StringIO()
    assert await run_demo(out)
    text = out.getvalue()
    assert "ConnectionFailed" in text
    assert "(queued)" in text
    assert text.rstrip().endswith("every message exactly once, in order")


def test_demo_command_exits_zero() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "trio_clientsocket", "demo", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("OK: 16 messages sent, 16 stored")
