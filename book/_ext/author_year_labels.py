"""The bibliography's labels in the form the text cites: ``[Pradeep et al., 2023a]``.

``_config.yml`` cites author-year (``bibtex_reference_style: author_year``); pybtex's default
``alpha`` labels (``[PSL23]``) would not match what the text shows. This Sphinx extension
registers a pybtex label style ``author_year`` (one author: ``Holm, 1979``; two: ``Reimers and
Gurevych, 2019``; more: ``Schlatt et al., 2025``) and a formatting style of the same name
(pybtex's ``plain``, sorted by author and year, with those labels). Works by the same author in
the same year carry the letter in their ``year`` field (``2023a``, ``2023b``), so that the
citation in the text tells them apart too.
"""

from __future__ import annotations

from pybtex.plugin import register_plugin
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle


def _last_name(person) -> str:
    names = person.rich_last_names or person.rich_first_names
    text = " ".join(str(n) for n in names)
    return text.replace("{", "").replace("}", "")


class AuthorYearLabelStyle(BaseLabelStyle):
    def format_labels(self, sorted_entries):
        for entry in sorted_entries:
            yield self.format_label(entry)

    def format_label(self, entry) -> str:
        persons = entry.persons.get("author") or entry.persons.get("editor") or []
        names = [_last_name(p) for p in persons]
        if any(str(p) == "others" for p in persons):
            names = names[:1] + ["", ""]
        if not names:
            who = entry.fields.get("organization", entry.fields.get("title", "?")).strip("{}")
        elif len(names) == 1:
            who = names[0]
        elif len(names) == 2:
            who = f"{names[0]} and {names[1]}"
        else:
            who = f"{names[0]} et al."
        return f"{who}, {entry.fields.get('year', 'n.d.')}"


class AuthorYearStyle(PlainStyle):
    default_label_style = "author_year"


def setup(app):
    register_plugin("pybtex.style.labels", "author_year", AuthorYearLabelStyle)
    register_plugin("pybtex.style.formatting", "author_year", AuthorYearStyle)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
