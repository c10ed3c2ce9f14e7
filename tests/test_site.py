"""The built docs site: examples render as code, the state diagram is there,
and nothing is fetched from the network (it renders fully offline). Needs the
``docs`` extra (CI installs it); skipped without mkdocs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("mkdocs", reason="the docs extra is not installed")
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def test_every_examples_section_of_the_reference_is_a_code_block(site: Path) -> None:
    html = (site / "reference" / "index.html").read_text()
    titles = [m.end() for m in re.finditer(r"Examples:</span></p>", html)]
    assert len(titles) > 40  # one per public name, about
    for end in titles:
        following = html[end : end + 200].lstrip()
        assert following.startswith('<div class="highlight"><pre>'), following[:120]
    assert not re.search(r"<blockquote>(?:(?!</blockquote>).)*&gt;&gt;&gt;", html, re.S)


def test_the_state_diagram_is_an_image_not_source(site: Path) -> None:
    html = (site / "resilience" / "index.html").read_text()
    assert '<img alt="The life of a socket' in html
    assert "stateDiagram" not in html
    assert (site / "images" / "states.svg").exists()


def test_nothing_is_fetched_from_the_network(site: Path) -> None:
    remote = re.compile(r"""(?:src|href)=["']https?://[^"']+\.(?:js|css|woff2?|ttf)["']""")
    for page in site.rglob("*.html"):
        assert not remote.search(page.read_text()), page
    assert not any("fonts.googleapis" in p.read_text() for p in site.rglob("*.html"))
