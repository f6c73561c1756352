"""The ranking explorer in a real browser (headless Chromium), fed hostile strings.

No passage, query or passage id can break the widget: ``<!--``, ``</script>``, quotes in
ids, ``&``, U+2028 all come back character for character, every query is listed, and
hovering a passage whose id holds quotes highlights it in every column.
"""

from __future__ import annotations

import shutil

import pytest

from rank_distillm.data import Candidates
from rank_distillm.explorer import RankingExplorer, _query_entry, embedded_json

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
HOSTILE = ['<!-- x', '</script><script>window.pwned=1</script>', 'a "quoted" id', "it's", "&amp; & <b>bold</b>",
           "line\u2028sep\u2029para", "]]> <![CDATA[", "\\u003c and \\", "<\\!--"]


def _explorer() -> RankingExplorer:
    queries = []
    for n, text in enumerate(HOSTILE):
        docids = [f'd"{n}\'', f"<!--{n}", f"</script>{n}", f"plain{n}"]
        c = Candidates(qid=f"q{n}<!--", query=text, docids=docids, texts=[text + " passage " + d for d in docids])
        qrels = {docids[0]: 3, docids[2]: 1}
        rankings = {"first <!--": docids, 'second "x"': list(reversed(docids))}
        queries.append(_query_entry(c, rankings, {"first <!--": 0.5, 'second "x"': None}, qrels, 20, 160, 2))
    return RankingExplorer({"years": [{"key": "y", "label": "Year </script>", "systems": ["first <!--", 'second "x"'],
                                       "queries": queries}], "top": 20, "relevant_grade": 2})


def test_the_embedded_json_has_no_markup_characters_and_parses_back():
    import json

    explorer = _explorer()
    text = embedded_json(explorer.data)
    assert not set("<>&\u2028\u2029") & set(text)
    assert json.loads(text) == explorer.data


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    if CHROMIUM is None:
        pytest.fail("Chromium is not installed: apt-get install chromium")
    path = tmp_path_factory.mktemp("explorer") / "explorer.html"
    path.write_text(f"<!doctype html><html><head><meta charset='utf-8'></head><body>{_explorer().html}</body></html>",
                    encoding="utf-8")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"], timeout=60_000)
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(path.as_uri(), wait_until="load", timeout=60_000)
        page.errors = errors
        yield page
        browser.close()


def test_every_query_is_listed_and_no_script_ran(page):
    assert page.errors == []
    assert page.evaluate("() => document.querySelectorAll('.rdx select option').length") == len(HOSTILE)
    assert page.evaluate("() => window.pwned === undefined")
    options = page.evaluate("() => Array.from(document.querySelectorAll('.rdx option')).map(o => o.textContent)")
    assert options == [f"q{n}<!--: {text}" for n, text in enumerate(HOSTILE)]


def test_each_hostile_query_shows_its_text_and_passages(page):
    for n, text in enumerate(HOSTILE):
        page.select_option(".rdx select", value=f"0:{n}")
        heading = page.evaluate("() => document.querySelector('.rdx-query b').textContent")
        assert heading == f"q{n}<!-- \u00b7 {text}"
        ids = page.evaluate("() => Array.from(document.querySelectorAll('.rdx-col:first-child li')).map(li => li.getAttribute('data-doc'))")
        assert ids == [f'd"{n}\'', f"<!--{n}", f"</script>{n}", f"plain{n}"]
        assert page.errors == []


def test_hovering_a_passage_with_quotes_in_its_id_highlights_it_in_every_column(page):
    page.select_option(".rdx select", value="0:2")
    first = page.locator(".rdx-col").nth(0).locator("li").nth(0)  # id d"2'
    first.hover()
    lit = page.evaluate("() => Array.from(document.querySelectorAll('li.rdx-hl')).map(li => li.getAttribute('data-doc'))")
    assert lit == ['d"2\'', 'd"2\''] and page.errors == []
    page.mouse.move(0, 0)
    assert page.evaluate("() => document.querySelectorAll('li.rdx-hl').length") == 0
