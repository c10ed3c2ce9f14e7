"""The built docs site: examples render as code, the diagrams are images drawn
from their sources, headings are short and code fits the column, the changelog
is a page, and nothing is fetched from the network (it renders fully offline).
Needs the ``docs`` extra (CI installs it); skipped without mkdocs."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_docs import COLUMN

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "images"


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


def test_the_architecture_is_an_image_not_ascii_art(site: Path) -> None:
    page = (site / "architecture" / "index.html").read_text()
    assert '<img alt="The layers of a ClientSocket' in page
    assert "┌" not in page
    assert (site / "images" / "architecture.svg").exists()


def dot_lines(source: str) -> set[str]:
    """The text lines of every label of a graphviz source (quoted or HTML-like)."""
    parts = []
    for quoted in re.findall(r'label="((?:[^"\\]|\\.)*)"', source):
        parts += re.split(r"\\[nlr]", quoted)
    for start in (m.end() for m in re.finditer(r"label=<", source)):
        depth, end = 1, start
        while depth:  # an HTML-like label ends at its matching ">"
            depth += {"<": 1, ">": -1}.get(source[end], 0)
            end += 1
        parts += re.split(r"<br[^>]*>", source[start : end - 1])
    return {html.unescape(re.sub(r"<[^>]+>", "", part)).strip() for part in parts} - {""}


@pytest.mark.parametrize("name", ["states", "architecture"])
def test_each_committed_svg_is_drawn_from_its_dot_source(name: str) -> None:
    """Every label line of the .dot is a text of the .svg: a diagram whose source
    changed was rendered again (``dot -Tsvg docs/images/X.dot -o docs/images/X.svg``)."""
    labels = dot_lines((IMAGES / f"{name}.dot").read_text())
    svg = (IMAGES / f"{name}.svg").read_text()
    texts = {html.unescape(t).strip() for t in re.findall(r"<text[^>]*>(.*?)</text>", svg)}
    assert len(labels) > 10
    assert labels <= texts, labels - texts


def test_the_reference_headings_are_names_and_signatures_are_code(site: Path) -> None:
    page = (site / "reference" / "index.html").read_text()
    heading = re.search(r'<h2 id="trio_clientsocket\.ClientSocket".*?</h2>', page, re.S)
    assert heading
    assert "connect_timeout" not in heading.group()
    signature = page[heading.end() :].lstrip()
    assert signature.startswith('<div class="doc-signature highlight"><pre>')
    code = html.unescape(re.sub(r"<[^>]+>", "", signature[: signature.index("</pre>")]))
    assert "connect_limiter=None" in code
    long = [
        line
        for block in re.findall(r"<pre[^>]*>(.*?)</pre>", page, re.S)
        for line in html.unescape(re.sub(r"<[^>]+>", "", block)).splitlines()
        if len(line) > COLUMN
    ]
    assert not long


def test_the_changelog_is_a_page(site: Path) -> None:
    page = (site / "changelog" / "index.html").read_text()
    first_version = re.search(r"^## (.+)$", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert first_version
    assert f">{html.escape(first_version.group(1), quote=False)}<" in page
