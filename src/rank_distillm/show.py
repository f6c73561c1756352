"""Show the package's own code in a chapter: a function's or class's source, highlighted.

A chapter teaches an implementation by showing it, as d2l.ai does, but the code lives in
one place, the package, so the page can never drift from what runs::

    from rank_distillm.show import show_source
    show_source(losses.ranknet_loss)

reads the source of the *installed* package at run time (:func:`inspect.getsource`),
highlights it with Pygments and returns an object that notebooks display as HTML with
inline styles. The HTML lands in the code cell's output, so it shows the same in Jupyter,
in Colab and in the static pages of the rendered book (a MyST directive in a markdown
cell would not render in Colab). A caption names the object, its file and line numbers.

Docstrings are usually long (formulas, references) and the chapter's prose already says
what they say, so by default only their first line is shown (``docstring="summary"``);
``"full"`` keeps them, ``"none"`` drops them. Nothing else is changed.
"""

from __future__ import annotations

import ast
import html
import inspect
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Docstring = Literal["full", "summary", "none"]

STYLE = "default"  # a Pygments style; its colours are written inline, so no stylesheet is needed


def _docstring_spans(tree: ast.AST) -> list[tuple[int, int, ast.AST]]:
    """(first line, last line, node) of every docstring in ``tree``, 1-based and inclusive."""
    spans = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                spans.append((body[0].lineno, body[0].end_lineno, node))
    return spans


def trim_docstrings(code: str, docstring: Docstring = "summary") -> str:
    """``code`` with each docstring kept (``"full"``), cut to its first line (``"summary"``) or dropped."""
    if docstring == "full":
        return code
    if docstring not in ("summary", "none"):
        raise ValueError(f"docstring must be 'full', 'summary' or 'none', got {docstring!r}")
    lines = code.splitlines()
    for first, last, node in sorted(_docstring_spans(ast.parse(code)), key=lambda s: s[0], reverse=True):
        indent = lines[first - 1][: len(lines[first - 1]) - len(lines[first - 1].lstrip())]
        summary = (ast.get_docstring(node) or "").strip().splitlines()
        keep = []
        if docstring == "summary" and summary:
            prefix = "r" if "\\" in summary[0] else ""
            keep = [f'{indent}{prefix}"""{summary[0].replace(chr(34) * 3, chr(39) * 3)}"""']
        if docstring == "none" and len(node.body) == 1:  # a body of only a docstring must keep a statement
            keep = [f"{indent}..."]
        lines[first - 1 : last] = keep
    return "\n".join(lines) + "\n"


def _display_path(path: Path, module: str) -> str:
    """``rank_distillm/losses/ranknet.py``: the file below the folder that holds its top-level package."""
    top = module.split(".")[0]
    parts = path.parts
    if top in parts:
        index = len(parts) - 1 - parts[::-1].index(top)
        return "/".join(parts[index:])
    return path.name


@dataclass
class SourceCode:
    """The source of one or more objects; displays as highlighted HTML, prints as plain text."""

    blocks: list[tuple[str, str]]  # (caption, code)

    def __str__(self) -> str:
        return "\n".join(f"# {caption}\n{code}" for caption, code in self.blocks)

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(str(self))

    def _repr_html_(self) -> str:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer
        from pygments.styles import get_style_by_name

        background = get_style_by_name(STYLE).background_color
        formatter = HtmlFormatter(style=STYLE, noclasses=True, nowrap=True)
        parts = []
        for caption, code in self.blocks:
            parts.append(
                '<div class="rank-distillm-source" style="margin: 0.3em 0 0.8em 0">'
                '<div style="font-size: 0.8em; color: #555; margin-bottom: 0.2em; font-family: sans-serif">'
                f"{html.escape(caption)}</div>"
                f'<pre style="background: {background}; color: #000; padding: 0.6em 0.8em; margin: 0; '
                "border-left: 3px solid #5a9; line-height: 1.35; overflow-x: auto; font-size: 0.8em; "
                f'white-space: pre">{highlight(code, PythonLexer(), formatter)}</pre></div>'
            )
        return "\n".join(parts)


def source_block(obj, docstring: Docstring = "summary") -> tuple[str, str]:
    """``(caption, code)`` for a function, class, method or module of any installed package."""
    target = inspect.unwrap(obj)
    if isinstance(target, (staticmethod, classmethod)):
        target = target.__func__
    try:
        lines, first = inspect.getsourcelines(target)
    except (OSError, TypeError) as error:
        raise TypeError(f"no Python source for {obj!r}: {error}") from error
    code = trim_docstrings(textwrap.dedent("".join(lines)), docstring)
    module = getattr(target, "__module__", None) or getattr(target, "__name__", "")
    name = getattr(target, "__qualname__", None)
    where = _display_path(Path(inspect.getsourcefile(target) or "?"), module)
    first = max(first, 1)
    caption = f"{module}.{name}" if name and not inspect.ismodule(target) else module
    return f"{caption}  ({where}, lines {first}-{first + len(lines) - 1})", code


def show_source(*objects, docstring: Docstring = "summary") -> SourceCode:
    """The highlighted source of ``objects`` (functions, classes, methods, modules), for a cell's output.

    Make it the last expression of a code cell (or pass it to ``IPython.display.display``).
    """
    if not objects:
        raise TypeError("show_source needs at least one function, class or module")
    return SourceCode([source_block(obj, docstring) for obj in objects])


# --- Paths and settings as a page shows them -----------------------------------------------------------------


def _path_prefixes() -> list[tuple[Path, str]]:
    """(folder, how a page names it), the most specific first: the data folder as ``{data}`` (as
    the profiles write it), the cache as ``$RANK_DISTILLM_CACHE``, the Python environment, home."""
    import os
    import sys

    from . import data

    prefixes = []
    found = data.data_dir(required=False)
    if found is not None:
        prefixes.append((Path(found).resolve(), "{data}"))
    prefixes.append((data.cache_dir().resolve(), f"${data.CACHE_ENV}"))
    prefixes.append((Path(sys.prefix).resolve(), "<python>"))
    prefixes.append((Path.home().resolve(), "~"))
    if os.environ.get("TMPDIR"):
        prefixes.append((Path(os.environ["TMPDIR"]).resolve(), "<tmp>"))
    prefixes.append((Path("/tmp"), "<tmp>"))
    return sorted(prefixes, key=lambda p: len(p[0].parts), reverse=True)


def _repository() -> Path | None:
    """The source checkout this package runs from (an editable install), else ``None``."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() and (root / "notebooks").is_dir() else None


def short_path(path: str | Path) -> str:
    """``path`` as a page shows it: below the data folder as ``{data}/...``, below the cache as
    ``$RANK_DISTILLM_CACHE/...``, beside the repository as ``../shared/data``, below home as
    ``~/...``; never this machine's absolute path."""
    import os

    resolved = Path(path).expanduser().resolve()
    for folder, name in _path_prefixes():
        if folder in resolved.parents or (resolved == folder and not name.startswith("{")):
            rest = resolved.relative_to(folder).as_posix()
            return name if rest == "." else f"{name}/{rest}"
    repo = _repository()
    if repo is not None and os.path.commonpath([resolved, repo]) != resolved.anchor:
        return Path(os.path.relpath(resolved, repo)).as_posix()  # the data folder itself: ../shared/data
    return resolved.name


def short_paths(text: str) -> str:
    """``text`` (a message, a log line) with every absolute path of :func:`short_path`'s folders shortened."""
    for folder, name in _path_prefixes():
        text = text.replace(str(folder), name)
    return text


def settings_table(cfg: dict, title: str = "The profile's settings") -> SettingsTable:
    """A profile section (``teacher_cfg``) as a compact two-column table, folded under ``title``.

    The top of a chapter shows which settings it runs with without a page of raw dictionary:
    nested sections become ``stage1.lr``, lists and long values are shortened, paths stay as
    the profile writes them (``{data}/...``).
    """
    rows = []

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict) and value:
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        else:
            text = "-" if value is None else str(value)
            rows.append((prefix, text if len(text) <= 70 else text[:67] + "..."))

    walk("", cfg)
    return SettingsTable(title, rows)


@dataclass
class SettingsTable:
    title: str
    rows: list[tuple[str, str]]

    def __str__(self) -> str:
        width = max((len(k) for k, _ in self.rows), default=0)
        return "\n".join([self.title] + [f"  {k.ljust(width)}  {v}" for k, v in self.rows])

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(str(self))

    def _repr_html_(self) -> str:
        body = "".join(f"<tr><td><code>{html.escape(k)}</code></td><td>{html.escape(v)}</td></tr>"
                       for k, v in self.rows)
        return (f'<details class="rank-distillm-settings"><summary>{html.escape(self.title)} '
                f"({len(self.rows)})</summary><table><thead><tr><th>setting</th><th>value</th></tr></thead>"
                f"<tbody>{body}</tbody></table></details>")
