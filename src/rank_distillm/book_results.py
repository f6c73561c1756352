"""The book's numbers as data: every glued value of every executed chapter in one JSON file.

Chapters glue their key numbers (``myst_nb.glue("training_crossval_student_ndcg10", x)``) for
the results page. After a build, this module reads those values back out of the executed
notebooks (myst-nb's own glue extraction) and writes them as one flat JSON object::

    {"training/crossval_student_ndcg10": 0.6312, "teacher/replay_identical": true, ...}

The key is the chapter (the notebook's name without its number: ``05_training`` ->
``training``), a slash, and the glue name without that chapter prefix. The results page's own
values are glued by the chapter that has all their inputs under names that start with
``results_`` (chapter 7's ``results_scorecard``: the reproduction scorecard the results page and
the introduction show) and keyed ``results/<name>``. Only values that
read back as plain data are kept (numbers, strings, booleans, and lists or dicts of them);
tables and figures are not. Non-finite numbers become ``null``, so any strict JSON parser
reads the file.

``python -m rank_distillm.book_results BUILD_DIR`` writes ``BUILD_DIR/results.json`` from
``BUILD_DIR/jupyter_execute`` (``make book`` runs it after ``jupyter-book build``).
"""

from __future__ import annotations

import ast
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from .outputs import strict_json_value, write_json

_TEXT = "text/plain"
RESULTS_PAGE = "results"  # glue names results_<x>: the results page's values, keyed results/<x>
# numpy scalars print as ``np.float64(0.5)`` (numpy >= 2); keep the value inside
_NUMPY_SCALAR = re.compile(r"\b(?:np|numpy)\.\w+\(([^()]*)\)")


def plain_value(text: str) -> Any:
    """The Python value that a glued ``text/plain`` representation stands for, or ``None``.

    ``'0.5058'`` -> 0.5058, ``"np.float64(0.5)"`` -> 0.5, ``"'DL19'"`` -> "DL19", ``'nan'`` -> None;
    a table's or figure's representation is not plain data -> ``None``.
    """
    text = _NUMPY_SCALAR.sub(r"\1", text.strip())
    try:
        tree = _NonFinite().visit(ast.parse(text, mode="eval"))
        value = ast.literal_eval(tree)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    if isinstance(value, tuple):
        value = list(value)
    ok = (bool, int, float, str, list, dict, type(None))
    if not isinstance(value, ok) or (isinstance(value, (list, dict)) and not _all_plain(value)):
        return None
    return strict_json_value(value)


class _NonFinite(ast.NodeTransformer):
    """``nan``, ``inf`` (as Python prints non-finite floats) -> ``None``."""

    def visit_Name(self, node: ast.Name) -> ast.AST:
        return ast.Constant(None) if node.id in ("nan", "inf") else node

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        node = self.generic_visit(node)
        if isinstance(node.operand, ast.Constant) and node.operand.value is None:
            return node.operand
        return node


def _all_plain(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_all_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _all_plain(v) for k, v in value.items())
    return isinstance(value, (bool, int, float, str, type(None)))


def chapter_name(notebook: Path) -> str:
    """``05_training.ipynb`` -> ``training``."""
    return re.sub(r"^\d+_", "", notebook.stem)


def glued_values(notebook: Path) -> dict[str, Any]:
    """``{"chapter/name": value}`` for every glued value of one executed notebook that is plain data."""
    import nbformat
    from myst_nb.ext.glue import extract_glue_data_cell

    chapter = chapter_name(notebook)
    nb = nbformat.read(str(notebook), as_version=4)
    glued = [pair for cell in nb.cells if cell.cell_type == "code" for pair in extract_glue_data_cell(cell)]
    # a book build moves the glue outputs out of the notebook it writes, into NAME.glue.json beside it
    saved = notebook.with_name(notebook.stem + ".glue.json")
    if saved.is_file():
        glued += list(json.loads(saved.read_text(encoding="utf-8")).items())
    out: dict[str, Any] = {}
    for name, output in glued:
        text = output.get("data", {}).get(_TEXT)
        if text is None:
            continue
        text = text if isinstance(text, str) else "".join(text)
        value = plain_value(text)
        if value is None and text.strip() not in ("None", "nan"):
            continue
        page = RESULTS_PAGE if name.startswith(RESULTS_PAGE + "_") else chapter
        key = name[len(page) + 1:] if name.startswith(page + "_") else name
        out[f"{page}/{key}"] = value
    return out


def collect(executed: Path) -> dict[str, Any]:
    """Every chapter's glued values, from the executed notebooks below ``executed``, sorted by key."""
    values: dict[str, Any] = {}
    for notebook in sorted(executed.rglob("*.ipynb")):
        if ".ipynb_checkpoints" in notebook.parts:
            continue
        values.update(glued_values(notebook))
    return dict(sorted(values.items()))


def write_results(build_dir: str | os.PathLike) -> Path:
    """Write ``BUILD_DIR/results.json`` (atomically) from ``BUILD_DIR/jupyter_execute``."""
    build = Path(build_dir)
    executed = build / "jupyter_execute"
    if not executed.is_dir():
        raise FileNotFoundError(f"{executed}: no executed notebooks (run jupyter-book build first)")
    values = collect(executed)
    if not values:
        raise ValueError(f"{executed}: no glued values found in the executed notebooks")
    return write_json(build / "results.json", values)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m rank_distillm.book_results BUILD_DIR", file=sys.stderr)
        return 2
    try:
        path = write_results(args[0])
    except (FileNotFoundError, ValueError) as error:
        print(f"book_results: error: {error}", file=sys.stderr)
        return 2
    print(f"{path}: {len(json.loads(path.read_text()))} values")
    return 0


if __name__ == "__main__":
    sys.exit(main())
