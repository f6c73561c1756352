"""Sentence lengths of the book's prose: the counter behind ``tests/test_prose.py``.

A page teaches when its sentences are short enough to read at once. :func:`prose_text`
keeps the running prose of a MyST markdown source: it drops code (fenced blocks, directive
options, and the bodies of directives that hold code, figures or tables), display
mathematics, tables, headings and admonition titles, and replaces each inline role
(``{glue:text}`name:.3f` ``, ``{cite}`key` ``), inline code and inline mathematics by one
word, as a reader would read it. :func:`sentences` splits that text into sentences (on
``.``, ``!`` and ``?`` before a capital or a digit, at the end of a paragraph and of each
list item; not after ``e.g.``, ``et al.``, decimals or initials), and :func:`lengths` counts
their words. :func:`page_stats` gives a page's median and the share of sentences over 40
words; :func:`notebook_markdown` collects a chapter's markdown cells.
"""

from __future__ import annotations

import json
import re
import statistics
from dataclasses import dataclass
from pathlib import Path

LONG = 40  # words: a sentence longer than this is counted as long

# directives whose body is prose (kept); any other fenced block is code, a figure or a table
_PROSE_DIRECTIVES = {"admonition", "note", "tip", "warning", "important", "caution", "hint", "seealso",
                     "attention", "danger", "error", "margin", "sidebar", "epigraph", "topic", "dropdown"}
_FENCE = re.compile(r"^\s*(`{3,}|:{3,})\s*(\{([\w:-]+)\})?(.*)$")
_ABBREVIATIONS = ("e.g.", "i.e.", "et al.", "vs.", "cf.", "etc.", "Fig.", "approx.", "resp.", "No.", "Eq.")


def prose_text(markdown: str) -> str:
    """The running prose of a MyST markdown source, paragraphs separated by blank lines."""
    out: list[str] = []
    stack: list[tuple[str, bool]] = []  # open fences: (marker, holds prose)
    in_math = False
    for line in markdown.splitlines():
        stripped = line.strip()
        fence = _FENCE.match(line)
        if in_math:
            if stripped.endswith("$$"):
                in_math = False
            continue
        if fence and stack and fence.group(1) == stack[-1][0] and not fence.group(2) and not fence.group(4).strip():
            stack.pop()
            out.append("")
            continue
        if fence:
            directive = fence.group(3)
            prose = directive is not None and directive in _PROSE_DIRECTIVES
            if stack and not stack[-1][1]:
                prose = False  # inside code, everything is code
            stack.append((fence.group(1), prose))
            out.append("")  # the title (an admonition's, a directive's argument) is not a sentence
            continue
        if stack and not stack[-1][1]:
            continue
        if stack and re.match(r"^\s*:[\w-]+:", line):
            continue  # a directive option (:class: tip)
        if stripped.startswith("$$"):
            in_math = not (len(stripped) > 2 and stripped.endswith("$$"))
            out.append("")
            continue
        if stripped.startswith(("#", "|", "<")) or re.match(r"^\([\w-]+\)=$", stripped):
            out.append("")  # headings, tables, raw HTML, labels
            continue
        if re.match(r"^\s*([-*+]|\d+[.)])\s+", line):
            out.append("")  # each list item ends a sentence
            line = re.sub(r"^\s*([-*+]|\d+[.)])\s+", "", line)
        out.append(line)
    text = "\n".join(out)
    text = re.sub(r"\{[\w:-]+\}`[^`]*`", " X ", text)  # roles: {glue:text}`a:.3f`, {cite}`key`, {math}`x`
    text = re.sub(r"`[^`]*`", " X ", text)  # inline code
    text = re.sub(r"\$[^$\n]+\$", " X ", text)  # inline mathematics
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links keep their text
    text = re.sub(r"\*\*|__|(?<!\w)[*_]|[*_](?!\w)", "", text)  # emphasis markers
    return text


def sentences(markdown: str) -> list[str]:
    """The sentences of a markdown source's prose."""
    found = []
    for paragraph in re.split(r"\n\s*\n", prose_text(markdown)):
        text = " ".join(paragraph.split())
        if not text:
            continue
        for i, abbreviation in enumerate(_ABBREVIATIONS):
            text = text.replace(abbreviation, abbreviation.replace(".", f"\x00{i}"))
        text = re.sub(r"(?<=\b[A-Z])\.(?=\s?[A-Z]\b)", "\x00i", text)  # initials: J. Smith
        parts = re.split(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])", text)
        for part in parts:
            part = re.sub(r"\x00\w", ".", part).strip()
            if re.search(r"[A-Za-z0-9]", part):
                found.append(part)
    return found


def words(sentence: str) -> int:
    """Words of a sentence: tokens with a letter or digit."""
    return sum(1 for token in sentence.split() if re.search(r"[A-Za-z0-9]", token))


def lengths(markdown: str) -> list[int]:
    """Words per sentence of a markdown source's prose."""
    return [words(s) for s in sentences(markdown)]


@dataclass(frozen=True)
class PageStats:
    sentences: int
    median: float
    long_share: float  # the share of sentences over LONG words
    longest: int

    def ok(self, median_below: float = 25, long_share_at_most: float = 0.10) -> bool:
        return self.median < median_below and self.long_share <= long_share_at_most


def page_stats(markdown: str) -> PageStats:
    counts = lengths(markdown)
    if not counts:
        return PageStats(0, 0.0, 0.0, 0)
    return PageStats(len(counts), float(statistics.median(counts)),
                     sum(c > LONG for c in counts) / len(counts), max(counts))


def notebook_markdown(path: str | Path) -> str:
    """A notebook's markdown cells, joined as one markdown source."""
    cells = json.loads(Path(path).read_text(encoding="utf-8"))["cells"]
    return "\n\n".join("".join(c["source"]) if isinstance(c["source"], list) else c["source"]
                       for c in cells if c["cell_type"] == "markdown")


def longest_sentences(markdown: str, n: int = 5) -> list[tuple[int, str]]:
    """The ``n`` longest sentences, with their word counts (for a failing test's message)."""
    return sorted(((words(s), s) for s in sentences(markdown)), reverse=True)[:n]
