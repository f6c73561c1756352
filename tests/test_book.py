"""The rendered book in a real browser: every chapter renders, with figures, without errors.

Run after a book build (``make book``, or the smoke build that ``make test`` makes):
serves the HTML folder on localhost, opens each page in headless Chromium (Debian's
``chromium`` package), saves a screenshot per page and checks the rendered DOM.
The folder is ``$BOOK_HTML`` or ``_build/html``.

A second set of checks drives the same Chromium through Playwright: every page requests
nothing outside the built folder (MathJax ships with the book), every formula is typeset
(no raw ``\(``/``\[`` TeX in the text), and the ranking explorer changes what it shows
when another query is selected.
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


# --- In a scripted browser: offline mathematics, no outside requests, the ranking explorer ---------------


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (Debian's) driven through Playwright; no browser download."""
    from playwright.sync_api import sync_playwright

    if CHROMIUM is None:
        pytest.fail("Chromium is not installed: apt-get install chromium")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield chromium
        chromium.close()


def _open(browser, url: str):
    """``(page, requests, errors)``: the page once its mathematics is typeset, every URL it
    requested, and the JavaScript errors it raised."""
    page = browser.new_page()
    requests: list[str] = []
    errors: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url, wait_until="load", timeout=60_000)
    page.evaluate("() => (window.MathJax && MathJax.startup && MathJax.startup.promise) ? "
                  "MathJax.startup.promise.then(() => true) : true")
    return page, requests, errors


# Text outside code, with typeset formulas taken out: any TeX delimiter left there is a formula shown raw.
_PROSE_TEXT = """() => {
    const body = document.body.cloneNode(true);
    body.querySelectorAll('pre, code, script, style, textarea, mjx-container, .highlight').forEach(e => e.remove());
    return body.textContent;
}"""


@pytest.mark.parametrize("page", PAGES, ids=[Path(p).name for p in PAGES])
def test_page_is_self_contained_and_typesets_its_math(server, browser, page):
    tab, requests, _ = _open(browser, f"{server}/{page}.html")
    try:
        outside = [u for u in requests if not u.startswith(f"{server}/") and not u.startswith(("data:", "blob:"))]
        assert not outside, f"{page}: requests outside the built book: {outside}"
        math = tab.evaluate("() => [...document.querySelectorAll('.math')].map(e => [e.textContent.slice(0, 60), "
                            "!!e.querySelector('mjx-container')])")
        raw = [text for text, typeset in math if not typeset]
        assert not raw, f"{page}: {len(raw)} of {len(math)} formulas not typeset, e.g. {raw[:3]}"
        prose = tab.evaluate(_PROSE_TEXT)
        for delimiter in ("\\(", "\\[", "$$"):
            at = prose.find(delimiter)
            assert at < 0, f"{page}: raw TeX shown: ...{prose[max(0, at - 60): at + 60]!r}..."
    finally:
        tab.close()


EXPLORER_PAGES = ["book/results", "notebooks/06_effectiveness"]


@pytest.mark.parametrize("page", EXPLORER_PAGES, ids=[Path(p).name for p in EXPLORER_PAGES])
def test_ranking_explorer_shows_the_selected_query(server, browser, page):
    tab, _, _ = _open(browser, f"{server}/{page}.html")  # (every page has sphinx-thebe's THEBE_JS_URL error)
    try:
        explorer = tab.locator(".rdx")
        assert explorer.count() == 1, f"{page}: expected one ranking explorer, found {explorer.count()}"
        options = explorer.locator("select option")
        assert options.count() >= 2, f"{page}: the explorer lists {options.count()} queries"
        columns = explorer.locator(".rdx-col")
        assert columns.count() >= 2 and explorer.locator(".rdx-col li").count() > 0, f"{page}: nothing shown"
        shown = explorer.locator(".rdx-cols").inner_text()
        last = options.nth(options.count() - 1)
        qid, query = last.text_content().split(": ", 1)
        explorer.locator("select").select_option(last.get_attribute("value"))
        assert explorer.locator(".rdx-cols").inner_text() != shown, f"{page}: selecting a query changed nothing"
        heading = explorer.locator(".rdx-query").inner_text()
        assert qid in heading and query in heading, f"{page}: heading {heading!r} is not query {qid}"
    finally:
        tab.close()


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
    # glue("name", ...) and glue(f"name_{year}_...", ...): an f-string's fields match any text
    glued = [re.compile(re.sub(r"\\\{.*?\\\}", ".+", re.escape(name)) if f else re.escape(name))
             for f, name in re.findall(r'glue\((f?)\\"([^"\\]+)\\"', sources)]
    for key in values:
        chapter, name = key.split("/", 1)
        assert any(p.fullmatch(f"{chapter}_{name}") or p.fullmatch(name) for p in glued), f"{key}: not a glue name of any chapter"
    assert len(values) >= 30, f"{path}: only {len(values)} values"
    for key in ("efficiency/fast_student_ndcg10_loss", "efficiency/fast_student_speedup_depth100",
                "efficiency/precomputed_speedup_depth100", "efficiency/cpu_peak_gflops"):
        assert key in values, f"{path}: {key} missing (chapter 7 glues it)"
    assert values["efficiency/fast_student_ndcg10_loss"] <= 0.005 and values["efficiency/cpu_peak_gflops"] > 0
    # chapter 5's cross-validation: every judged query of both years, each re-ranked by a student that never saw it
    for name in ("student", "untrained", "bm25", "biencoder", "teacher"):
        assert 0 < values[f"training/crossval_{name}_ndcg10"] < 1, f"training/crossval_{name}_ndcg10"
    assert 0 <= values["training/crossval_student_vs_biencoder_p"] <= 1 and 0 <= values["training/crossval_student_vs_bm25_p"] <= 1
    assert values["training/crossval_queries"] in (12, 97)  # smoke: 6 queries of each year; cpu: all 43 + 54
    assert len(values["training/curve"]) >= 2 and all(0 < v < 1 for v in values["training/curve"].values())
    # the paper's two columns (chapter 6) and the sampler study (chapter 5)
    for year in ("dl19", "dl20"):
        for system in ("first_stage", "teacher", "student"):
            assert 0 < values[f"effectiveness/{year}_splade_pp_ed_{system}_ndcg10"] < 1, f"effectiveness/{year}_splade_pp_ed_{system}_ndcg10"
    for sampler in ("bm25", "splade_pp_ed", "all"):
        assert 0 < values[f"training/sampler_{sampler}_ndcg10"] < 1 and 0 < values[f"training/sampler_{sampler}_splade_ndcg10"] < 1
    assert values["training/sampler_verdict"].startswith("Students trained on lists from each sampler")
    if values["training/crossval_queries"] == 97:  # cpu: the known first-stage and teacher figures over SPLADE++ ED
        assert (values["effectiveness/dl19_splade_pp_ed_first_stage_ndcg10"], values["effectiveness/dl20_splade_pp_ed_first_stage_ndcg10"]) == (0.7308, 0.7197)
        assert (values["effectiveness/dl19_splade_pp_ed_teacher_ndcg10"], values["effectiveness/dl20_splade_pp_ed_teacher_ndcg10"]) == (0.7459, 0.7551)
    # the teacher chapter's replay claim, as data: all 54 DL20 queries as stored, nDCG@10 of the stored run
    assert values["teacher/replay_identical"] == 54 and values["teacher/replay_ndcg10"] == 0.6611


# --- Page hygiene: what a reader must never see, in the built HTML ------------------------------------------

# Visible text of a page, code listings (show_source, code cells) left out: their source may say NaN or /tmp.
_TEXT_OUTSIDE_SOURCE = re.compile(
    r'<div class="cell_input.*?</div>\s*</div>|<div class="rank-distillm-source".*?</pre></div>|<script.*?</script>|'
    r"<style.*?</style>|<head>.*?</head>", re.S)
DIRT = {
    "a raw glue role": re.compile(r"\{glue(:\w+)?\}"),
    "NaN": re.compile(r"(?<![\w.])NaN(?![\w])"),
    "an absolute path of the build machine": re.compile(r"(?<![\w.:/])/(work|root|home|tmp|content)/[\w.-]"),
    "a trainer log dict": re.compile(r"\{'(loss|train_runtime|eval_\w+)':|'epoch': '?\d"),
    "an unformatted float": re.compile(r"(?<![\d.])\d+\.\d00000(?!\d)"),
}


@pytest.mark.parametrize("page", PAGES, ids=[Path(p).name for p in PAGES])
def test_page_shows_no_raw_roles_nan_machine_paths_or_log_dicts(page):
    path = HTML / f"{page}.html"
    if not path.exists():
        pytest.fail(f"{path}: not built")
    html = _TEXT_OUTSIDE_SOURCE.sub(" ", path.read_text(encoding="utf-8"))
    text = re.sub(r"<[^>]+>", " ", html)
    found = []
    for what, pattern in DIRT.items():
        for match in list(pattern.finditer(text))[:2]:
            found.append(f"{what}: ...{' '.join(text[max(0, match.start() - 70): match.end() + 50].split())}...")
    assert not found, f"{page}:\n  " + "\n  ".join(found)


# Every table (and every figure) fits the page's column: nothing runs off to the right or hides behind a scrollbar.
_WIDE = """() => {
    const column = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
    const style = getComputedStyle(column);
    const limit = column.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight) + 2;
    const wide = [];
    document.querySelectorAll('table').forEach(t => {
        if (t.closest('pre, .highlight, .rank-distillm-source, details:not([open])')) return;
        const width = Math.max(t.scrollWidth, t.getBoundingClientRect().width);
        let box = t.parentElement, clipped = false;
        while (box && box !== column) {
            if (box.scrollWidth > box.clientWidth + 2 && getComputedStyle(box).overflowX !== 'visible') clipped = true;
            box = box.parentElement;
        }
        if (width > limit || clipped) {
            const head = [...t.querySelectorAll('th')].slice(0, 4).map(h => h.textContent.trim()).join(' | ');
            wide.push(`${Math.round(width)}px > ${limit}px: ${head}`);
        }
    });
    // a code block in the prose (not a code cell, whose long lines scroll as in Jupyter) fits without a scrollbar
    document.querySelectorAll('div[class^="highlight-"] pre').forEach(pre => {
        if (pre.closest('.cell, .rank-distillm-source')) return;
        if (pre.scrollWidth > pre.clientWidth + 2)
            wide.push(`a code block, ${pre.scrollWidth}px in ${pre.clientWidth}px: ${pre.textContent.trim().slice(0, 60)}`);
    });
    // a p-value column (its header "p", "p (Holm)", "p-value", ...) never shows 0.0000: below 0.001 it reads "< 0.001"
    const zero_p = [];
    document.querySelectorAll('table').forEach(t => {
        const heads = [...t.querySelectorAll('thead tr:first-child th')].map(h => h.textContent.trim());
        heads.forEach((h, col) => {
            if (!/^p( |\(|$)|^p-value|^p value/i.test(h)) return;
            t.querySelectorAll('tbody tr').forEach(row => {
                const cell = row.children[col];
                if (cell && /^0(\.0+)?(e[+-]?0+)?$/.test(cell.textContent.trim())) zero_p.push(`${h}: ${cell.textContent.trim()}`);
            });
        });
    });
    const small = [];
    document.querySelectorAll('.cell_output img, figure img').forEach(img => {
        const r = img.getBoundingClientRect();
        if (r.width > 0 && (r.width < 0.45 * Math.min(limit, 720) || r.height < 150))
            small.push(`${Math.round(r.width)}x${Math.round(r.height)}px: ${img.getAttribute('src')}`);
    });
    return {limit, wide, small, zero_p};
}"""


@pytest.mark.parametrize("page", PAGES, ids=[Path(p).name for p in PAGES])
def test_tables_and_figures_fit_the_page_column(server, browser, page):
    """At a laptop's width (1280 px: the sidebar open, the article column about 720 px wide)."""
    tab = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        tab.goto(f"{server}/{page}.html", wait_until="load", timeout=60_000)
        found = tab.evaluate(_WIDE)
        assert not found["wide"], f"{page}: {len(found['wide'])} table(s) or code block(s) wider than the column:\n  " + "\n  ".join(found["wide"])
        assert not found["small"], f"{page}: figure(s) too small to read:\n  " + "\n  ".join(found["small"])
        assert not found["zero_p"], f"{page}: p-values shown as zero (write < 0.001): {found['zero_p'][:4]}"
    finally:
        tab.close()
