"""The bibliography: every citation resolves, and every label is distinct and reads as the text cites it."""

from __future__ import annotations

import importlib.util
import json
import re

from pybtex.database import parse_file

from .conftest import REPO

BIB = REPO / "book" / "references.bib"


def _label_style():
    spec = importlib.util.spec_from_file_location("author_year_labels", REPO / "book" / "_ext" / "author_year_labels.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.AuthorYearLabelStyle()


def test_labels_are_author_year_and_distinct():
    entries = parse_file(str(BIB)).entries
    labels = {key: _label_style().format_label(entry) for key, entry in entries.items()}
    assert labels["pradeep2023rankvicuna"] == "Pradeep et al., 2023a"
    assert labels["pradeep2023rankzephyr"] == "Pradeep et al., 2023b"
    assert labels["holm1979"] == "Holm, 1979"
    assert labels["reimers2019sbert"] == "Reimers and Gurevych, 2019"
    assert labels["kaplan2020scaling"] == "Kaplan et al., 2020"
    repeated = {label for label in labels.values() if list(labels.values()).count(label) > 1}
    assert not repeated, f"{BIB.name}: two works would be cited alike: {sorted(repeated)} (add a/b to their year)"


def test_every_citation_is_in_the_bibliography():
    keys = set(parse_file(str(BIB)).entries)
    sources = [p for p in (REPO / "notebooks").glob("*.ipynb")] + list((REPO / "book").glob("*.md"))
    cited = set()
    for path in sources:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".ipynb":
            text = "\n".join("".join(c["source"]) for c in json.loads(text)["cells"])
        for group in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", text):
            cited.update(k.strip() for k in group.split(","))
    assert cited and not (cited - keys), f"cited but not in {BIB.name}: {sorted(cited - keys)}"
