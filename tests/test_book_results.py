"""The book's numbers as data: glued values read back from executed notebooks into results.json."""

from __future__ import annotations

import json

import nbformat
import pytest
from nbclient import NotebookClient

from rank_distillm import book_results

GLUES = '''
import numpy as np, pandas as pd
from myst_nb import glue
glue("training_crossval_student_ndcg10", np.float64(0.6312), display=False)
glue("training_crossval_queries", 97, display=False)
glue("training_curve", {"10": 0.55, "all": 0.61}, display=False)
glue("training_table", pd.DataFrame({"a": [1, 2]}), display=False)
glue("training_missing", float("nan"), display=False)
glue("other_name", "DL19 'financial' nan", display=False)
glue("training_shown", True)
glue("results_scorecard", [{"claim": "c", "paper": "173x", "book": "570x (estimated)", "status": "needs the gpu profile"}], display=False)
'''


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """A notebook named like a chapter, executed for real, so its outputs are myst-nb's own glue outputs."""
    folder = tmp_path_factory.mktemp("build") / "jupyter_execute" / "notebooks"
    folder.mkdir(parents=True)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(GLUES)])
    NotebookClient(nb, kernel_name="python3", timeout=120).execute()
    nbformat.write(nb, str(folder / "05_training.ipynb"))
    return folder.parent.parent


def test_values_round_trip(executed):
    path = book_results.write_results(executed)
    values = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert values == {
        "training/crossval_student_ndcg10": 0.6312,
        "training/crossval_queries": 97,
        "training/curve": {"10": 0.55, "all": 0.61},
        "training/missing": None,
        "training/other_name": "DL19 'financial' nan",
        "training/shown": True,
        "results/scorecard": [{"claim": "c", "paper": "173x", "book": "570x (estimated)", "status": "needs the gpu profile"}],
    }  # the table is not plain data and is left out; results_<x> is the results page's, results/<x>


@pytest.mark.parametrize(
    "text, value",
    [("0.5058", 0.5058), ("np.float64(0.5)", 0.5), ("'DL19'", "DL19"), ("[1, nan, -inf]", [1, None, None]),
     ("{'a': np.int64(3)}", {"a": 3}), ("   qid  ndcg\n0  1  0.3", None), ("<Figure size 640x480>", None)],
)
def test_plain_value(text, value):
    assert book_results.plain_value(text) == value


def test_no_build_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="jupyter_execute"):
        book_results.write_results(tmp_path)
    assert book_results.main([str(tmp_path)]) == 2


def test_values_from_the_glue_file_a_book_build_writes(executed, tmp_path):
    """jupyter-book (myst-nb 1.x) takes the glue outputs out of the notebook it writes to jupyter_execute
    and saves them as NAME.glue.json beside it: the values are read from there."""
    from myst_nb.ext.glue import extract_glue_data

    folder = tmp_path / "jupyter_execute" / "notebooks"
    folder.mkdir(parents=True)
    nb = nbformat.read(str(executed / "jupyter_execute" / "notebooks" / "05_training.ipynb"), as_version=4)
    glue_data = extract_glue_data(nb, None, None)  # as the build does: the outputs leave the notebook
    nbformat.write(nb, str(folder / "05_training.ipynb"))
    assert book_results.glued_values(folder / "05_training.ipynb") == {"training/shown": True}  # shown: it stays
    (folder / "05_training.glue.json").write_text(json.dumps(glue_data))
    values = book_results.glued_values(folder / "05_training.ipynb")
    assert values == json.loads(book_results.write_results(executed).read_text())


def test_every_glue_text_from_another_page_names_its_format():
    """myst-nb reads ``{glue:text}`path::key:fmt``` by splitting at the *last* colon: without a format the
    key becomes ``path:`` and the page shows nothing (a build warning). Every such role names one (``:s`` for
    the value as it is)."""
    import re
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    roles = [(path.name, m) for path in sorted((repo / "book").glob("*.md"))
             for m in re.findall(r"\{glue:text\}`([^`]+)`", path.read_text())]
    cross = [(name, text) for name, text in roles if "::" in text]
    assert cross, "the results page pastes values from the chapters with {glue:text}`path::key:fmt`"
    for name, text in cross:
        key = text.rsplit(":", 1)[0]
        assert not key.endswith(":"), f"{name}: {{glue:text}}`{text}` needs a format, e.g. `{text}:s`"
