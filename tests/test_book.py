"""The rendered book in a real browser: every chapter renders, with figures, without errors.

Run after a book build (``make book``, or the smoke build that ``make test`` makes):
serves the HTML folder on localhost, opens each page in headless Chromium (Debian's
``chromium`` package), saves a screenshot per page and checks the rendered DOM.
The folder is ``$BOOK_HTML`` or ``_build/html``.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
import yaml

from .conftest import REPO

pytestmark = pytest.mark.browser

HTML = Path(os.environ.get("BOOK_HTML", REPO / "_build" / "html"))
SHOTS = Path(os.environ.get("BOOK_SCREENSHOTS", REPO / "_build" / "screenshots"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--virtual-time-budget=8000",
]


def _toc_pages() -> list[str]:
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    pages = [toc["root"]]
    for part in toc.get("parts", []):
        pages += [c["file"] for c in part.get("chapters", [])]
    return pages


CHAPTERS = [p for p in _toc_pages() if p.startswith("notebooks/")]
PAGES = _toc_pages()


@pytest.fixture(scope="module")
def server():
    if not (HTML / "index.html").exists():
        pytest.fail(f"no built book at {HTML}: run `make book` (or `make test`) first")
    if CHROMIUM is None:
        pytest.fail("Chromium is not installed: apt-get install chromium")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(HTML))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120,
    )


@pytest.mark.parametrize("page", PAGES, ids=[Path(p).name for p in PAGES])
def test_page_renders(server, page, tmp_path):
    url = f"{server}/{page}.html"
    dom = _chromium(tmp_path, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert "<h1" in html, f"{page}: no title rendered"
    assert "404" not in re.sub(r"<[^>]+>", " ", html)[:400], f"{page}: not found"
    # no error output cells, no tracebacks, no unresolved references
    assert "output error" not in html and "Traceback (most recent call last)" not in html, f"{page}: error output"
    assert 'class="xref std std-ref">?' not in html
    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = SHOTS / f"{Path(page).name}.png"
    result = _chromium(tmp_path, "--window-size=1280,10000", f"--screenshot={shot}", url)
    assert result.returncode == 0 and shot.exists() and shot.stat().st_size > 10_000, result.stderr[-2000:]


@pytest.mark.parametrize("page", CHAPTERS, ids=[Path(p).name for p in CHAPTERS])
def test_chapter_has_executed_outputs_and_figures(page):
    html = (HTML / f"{page}.html").read_text(encoding="utf-8")
    assert "cell_output" in html, f"{page}: no executed output"
    figures = re.findall(r'<img[^>]+src="([^"]+\.png)"', html)
    assert figures, f"{page}: no figure"
    for src in figures:
        assert (HTML / Path(page).parent / src).resolve().exists(), f"{page}: missing image {src}"
    # an empty result: a table without rows, or a figure without data
    assert "Empty DataFrame" not in html, f"{page}: an empty table"
    assert "&lt;Figure size" not in html, f"{page}: a figure object printed instead of drawn"


def test_results_json_holds_the_glued_numbers():
    """``make book`` / ``make test`` write the chapters' glued values to ``results.json`` beside the HTML."""
    import json

    path = HTML.parent / "results.json"
    assert path.is_file(), f"{path}: missing (the Makefile runs python -m rank_distillm.book_results after the build)"
    values = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"{path}: non-strict JSON value {c}"))
    sources = " ".join((REPO / f"{page}.ipynb").read_text() for page in CHAPTERS)
    glued = set(re.findall(r'glue\(\\"([a-z0-9_]+)\\"', sources))
    for key in values:
        chapter, name = key.split("/", 1)
        assert f"{chapter}_{name}" in glued or name in glued, f"{key}: not a glue name of any chapter"
    assert len(values) >= 30, f"{path}: only {len(values)} values"
    # the teacher chapter's replay claim, as data: all 54 DL20 queries as stored, nDCG@10 of the stored run
    assert values["teacher/replay_identical"] == 54 and values["teacher/replay_ndcg10"] == 0.6611
