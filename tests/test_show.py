"""Showing the package's source in a cell's output: exact, highlighted, with the right file and lines."""

from __future__ import annotations

import ast
import html
import inspect
import re
import textwrap
from pathlib import Path

import pytest

from rank_distillm import losses
from rank_distillm.losses import ranknet
from rank_distillm.show import SourceCode, show_source, source_block, trim_docstrings


def _statements_without_docstrings(code: str) -> str:
    """The AST of ``code`` with every docstring removed: what must not change when docstrings are trimmed."""
    tree = ast.parse(code)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Expr(ast.Constant(Ellipsis))]
    return ast.dump(tree)


def _visible_text(markup: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", markup))


SHOWN = [losses.ranknet_loss, losses.lambda_loss, losses.lambda_weights, losses.approximate_ranks,
         losses.ListwiseLoss, losses.RankNetLoss, losses.score_lists, ranknet]


@pytest.mark.parametrize("obj", SHOWN, ids=lambda o: o.__name__)
@pytest.mark.parametrize("docstring", ["summary", "none"])
def test_trimming_docstrings_keeps_every_statement(obj, docstring):
    original = textwrap.dedent(inspect.getsource(obj))
    trimmed = trim_docstrings(original, docstring)
    assert _statements_without_docstrings(trimmed) == _statements_without_docstrings(original)
    def docstrings(code):
        return [ast.get_docstring(n, clean=False) for n in ast.walk(ast.parse(code))
                if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef)) and ast.get_docstring(n)]

    assert len(docstrings(trimmed)) == (0 if docstring == "none" else len(docstrings(original)))
    assert all("\n" not in d for d in docstrings(trimmed))
    if obj is ranknet:  # a module with a long docstring
        assert len(trimmed.splitlines()) < len(original.splitlines()) - 10


def test_summary_keeps_only_the_first_line_of_each_docstring():
    _, code = source_block(losses.ListwiseLoss)
    tree = ast.parse(code)
    docstrings = [ast.get_docstring(n) for n in ast.walk(tree)
                  if isinstance(n, (ast.ClassDef, ast.FunctionDef)) and ast.get_docstring(n)]
    assert docstrings[0] == "Base class: score the lists with the model, then apply the pure ``loss_fn``."
    assert all("\n" not in d for d in docstrings) and len(docstrings) == 2  # the class and compute()
    _, bare = source_block(losses.ListwiseLoss, docstring="none")
    assert '"""' not in bare and "def forward" in bare
    # a function whose body is only a docstring stays valid Python
    assert ast.parse(trim_docstrings('def f():\n    """Only a docstring."""\n', "none"))
    assert trim_docstrings("def f():\n    'x'\n", "full") == "def f():\n    'x'\n"
    with pytest.raises(ValueError, match="docstring must be"):
        trim_docstrings("x = 1\n", "short")


def test_full_docstring_is_the_file_verbatim_and_the_caption_names_file_and_lines():
    caption, code = source_block(losses.ranknet_loss, docstring="full")
    match = re.fullmatch(r"rank_distillm\.losses\.ranknet\.ranknet_loss  \((\S+), lines (\d+)-(\d+)\)", caption)
    assert match, caption
    path, first, last = match.group(1), int(match.group(2)), int(match.group(3))
    assert path == "rank_distillm/losses/ranknet.py"
    lines = Path(inspect.getsourcefile(ranknet)).read_text().splitlines()
    assert "\n".join(lines[first - 1 : last]) + "\n" == code
    assert code.startswith("def ranknet_loss(")
    caption, _ = source_block(losses.RankNetLoss.forward)
    assert caption.startswith("rank_distillm.losses.listwise.ListwiseLoss.forward  (rank_distillm/losses/listwise.py")


def test_html_is_highlighted_and_shows_exactly_the_code():
    shown = show_source(losses.ordered_pairs, losses.RankNetLoss)
    markup = shown._repr_html_()
    assert markup.count('class="rank-distillm-source"') == 2
    assert 'style="color:' in markup  # Pygments colours, inline: no stylesheet needed in Jupyter, Colab or the book
    assert "<script" not in markup and "&lt;" in markup  # code is escaped (ordered_pairs has "top = ... <= k")
    blocks = re.findall(r"<pre[^>]*>(.*?)</pre>", markup, flags=re.S)
    assert [_visible_text(b) for b in blocks] == [code for _, code in shown.blocks]
    assert str(shown).count("# rank_distillm.losses.") == 2


def test_notebooks_get_html_and_plain_text():
    from IPython.core.formatters import format_display_data

    data, _ = format_display_data(show_source(losses.adr_mse_loss))
    assert set(data) >= {"text/html", "text/plain"}
    assert "def adr_mse_loss(" in data["text/plain"] and "adr_mse_loss" in data["text/html"]


def test_errors_say_what_is_wrong():
    with pytest.raises(TypeError, match="no Python source for <built-in function len>"):
        show_source(len)
    with pytest.raises(TypeError, match="at least one"):
        show_source()
    assert isinstance(show_source(losses.make_loss), SourceCode)


def test_paths_are_shown_relative_to_the_data_folder_cache_and_home(data_dir, tmp_path, monkeypatch):
    from rank_distillm import data, show

    run = data_dir / "runs" / "trec-dl-2020" / "bm25.run"
    assert show.short_path(run) == "{data}/runs/trec-dl-2020/bm25.run"
    folder = show.short_path(data_dir)  # the folder itself: where it is, not "{data}"
    assert folder != "{data}" and not folder.startswith("/"), folder
    assert show.short_path(data.cache_dir() / "teacher" / "live.run") == "$RANK_DISTILLM_CACHE/teacher/live.run"
    monkeypatch.setenv("HOME", str(tmp_path))
    assert show.short_path(tmp_path / "notes" / "a.txt") == "~/notes/a.txt"
    message = f"{run} line 3: depth 101 is larger than the list"
    assert show.short_paths(message) == "{data}/runs/trec-dl-2020/bm25.run line 3: depth 101 is larger than the list"
    assert str(data_dir) not in show.short_paths(message)


def test_settings_table_folds_a_profile_section():
    from rank_distillm import show

    table = show.settings_table({"lr": 3e-4, "stage1": {"epochs": 2, "loss": "infonce"}, "seed": None,
                                 "long": "x" * 100})
    assert table.rows == [("lr", "0.0003"), ("stage1.epochs", "2"), ("stage1.loss", "infonce"), ("seed", "-"),
                          ("long", "x" * 67 + "...")]
    page = table._repr_html_()
    assert page.startswith("<details") and "<code>stage1.epochs</code>" in page and "(5)" in page
    assert "stage1.loss" in str(table) and "{" not in str(table)
