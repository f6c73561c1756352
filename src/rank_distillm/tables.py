"""Tables for the page: readable headers with units, a dash where a value does not apply.

The package computes with its own field names (``RR(rel=2)@10``, ``p_holm``,
``passages_per_list_mean``); a reader should see ``MRR@10``, ``p (Holm)`` and "passages
per list". The chapters turn their tables into what a page shows with these helpers, so
every chapter names a measure the same way:

- :func:`measure_label`: a measure's usual name (``RR(rel=2)@10`` -> ``MRR@10``);
- :func:`styled`: a ``pandas`` Styler with a dash for missing values, given number formats
  and an optional caption;
- :func:`comparison_table`: :class:`~rank_distillm.evaluation.Comparison` results, one row
  per year and system, with the mean, its confidence interval, the difference to the
  baseline (``*`` where it is significant after Holm's correction) and the corrected p-value;
  :func:`verdicts`: the same as sentences;
- :func:`readable`: any numeric table as a page shows it: fixed decimals per column, whole
  numbers without decimals, p-values as ``< 0.001``, a dash for missing values;
- :func:`constant_columns`: the measures that cannot tell the rows apart (R@100 of
  re-rankings of the same top-100), which a table leaves out.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

DASH = "\u2013"  # what a cell shows where a value does not apply

# the names a reader knows, for the ir_measures names the package computes with (TREC DL:
# grade 2 or more is relevant for the binary measures)
MEASURE_LABELS = {
    "RR(rel=2)@10": "MRR@10",
    "AP(rel=2)": "MAP",
    "R(rel=2)@100": "R@100",
    "R(rel=2)@1000": "R@1000",
}


def measure_label(name: str) -> str:
    """The usual name of an ``ir_measures`` measure: ``RR(rel=2)@10`` -> ``MRR@10``; others as they are."""
    return MEASURE_LABELS.get(str(name), str(name))


def year_label(year: str) -> str:
    """``dl19`` -> ``DL19`` (a profile's year key, as the paper writes it)."""
    return str(year).upper()


def styled(table, formats: Mapping[str, str] | str | None = None, caption: str | None = None,
           nowrap: Sequence[str] = ()):
    """``table.style`` with ``formats`` (one format for all, or per column), a dash for missing values and ``caption``.

    Cells get some padding, so that neighbouring numbers do not run together; the columns
    in ``nowrap`` are kept on one line (an interval ``0.45–0.57`` is not broken after its
    dash in a narrow page).
    """
    styler = table.style.format(formats, na_rep=DASH).set_table_styles(
        [{"selector": "td, th", "props": "padding: 0.15em 0.6em"}], overwrite=False)
    if caption:
        styler = styler.set_caption(caption)
    if nowrap:
        styler = styler.set_properties(subset=list(nowrap), **{"white-space": "nowrap"})
    return styler


def _interval(low: float, high: float, digits: int) -> str:
    if any(isinstance(v, float) and math.isnan(v) for v in (low, high)):
        return DASH
    return f"{low:.{digits}f}\u2013{high:.{digits}f}"


def p_value(p: float) -> str:
    """A p-value as text: three decimals, ``<0.001`` below that, a dash where there is none."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return DASH
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def p_cell(p: float) -> str:
    """A p-value for a table a page shows: ``< 0.001`` or ``0.042`` (:func:`p_value` with a space)."""
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _is_p_column(name) -> bool:
    text = str(name[-1] if isinstance(name, tuple) else name).strip().lower()
    return text == "p" or text.startswith(("p ", "p(", "p_", "p-value", "p value")) or text.endswith(" p")


def _is_difference_column(name) -> bool:
    text = str(name[-1] if isinstance(name, tuple) else name).strip().lower()
    return text.startswith(("vs ", "\u0394", "diff", "difference"))


def number_format(values, digits: int = 3, p: bool = False, signed: bool = False):
    """A formatter for one column: p-values as :func:`p_value`; whole numbers as integers (with
    thousands separators); other numbers with ``digits`` decimals (with a sign when ``signed``:
    a difference); text as it is; a dash for missing."""
    import numbers

    numeric = [v for v in values if isinstance(v, numbers.Number) and not isinstance(v, bool)
               and not (isinstance(v, float) and math.isnan(v))]
    whole = bool(numeric) and all(float(v).is_integer() for v in numeric)

    def fmt(v) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return DASH
        if isinstance(v, bool) or not isinstance(v, numbers.Number):
            return str(v)
        if p:
            return p_cell(float(v))
        if whole and not signed:
            return f"{int(v):,}"
        return f"{float(v):+,.{digits}f}" if signed else f"{float(v):,.{digits}f}"

    return fmt


def readable(table, digits: int | Mapping[str, int] = 3, caption: str | None = None, nowrap: Sequence[str] = ()):
    """``table`` (a DataFrame) as a page shows it, through :func:`styled`: each numeric column
    with fixed decimals (``digits``, or ``{column: digits}``; whole-number columns as integers),
    p-value columns (``p``, ``p (Holm)``, ``p_value``) as ``0.012`` or ``< 0.001``, a dash for
    missing values (never ``NaN``), differences (``vs ...``, ``diff``) with their sign, text as it is."""
    formats = {}
    for column in table.columns:
        places = digits.get(column, 3) if isinstance(digits, Mapping) else digits
        formats[column] = number_format(list(table[column]), places, p=_is_p_column(column),
                                        signed=_is_difference_column(column))
    return styled(table, formats, caption=caption, nowrap=nowrap)


def comparison_table(comparisons: Mapping[str, "Comparison"], measures: Sequence[str] = (),  # noqa: F821
                     digits: int = 3):
    """One row per (year, system) of several :class:`~rank_distillm.evaluation.Comparison` (``{year: comparison}``).

    Columns: the tested measure (``nDCG@10``), its ``95% CI`` (one digit fewer), the other
    ``measures`` (readable names), ``Δ to baseline`` (the mean per-query difference, ``*``
    when it is significant after Holm's correction) and ``p (Holm)``; the baseline's row is
    named ``NAME (baseline)`` and its own test cells are blank. Numbers are formatted text
    (``digits`` places), so the table shows as it reads.
    """
    import pandas as pd

    frames = {}
    for year, c in comparisons.items():
        t = c.table
        rows = {}
        for system, row in t.iterrows():
            baseline = system == c.baseline
            cells = {measure_label(c.measure): f"{row[c.measure]:.{digits}f}",
                     "95% CI": _interval(row["ci_low"], row["ci_high"], max(digits - 1, 1))}
            cells.update({measure_label(m): f"{row[m]:.{digits}f}" for m in measures if m != c.measure})
            diff = "" if baseline else f"{row['diff']:+.{digits}f}" + ("*" if row["significant"] else "")
            cells["\u0394 to baseline"] = diff
            cells["p (Holm)"] = "" if baseline else p_value(row["p_holm"])
            rows[f"{system} (baseline)" if baseline else system] = cells
        frames[year_label(year)] = pd.DataFrame.from_dict(rows, orient="index")
    table = pd.concat(frames, names=["year", "system"])
    return table.fillna("")


def constant_columns(table, columns: Sequence[str], by: str | None = None) -> list[str]:
    """Those of ``columns`` whose value is the same in every row (in every group of the index level ``by``).

    E.g. R@100 of systems that all re-order the same first-stage top-100: it is the first
    stage's recall for each of them, so a table of those systems leaves it out.
    """
    groups = [table] if by is None else [part for _, part in table.groupby(level=by, sort=False)]
    return [c for c in columns if all((part[c].max() - part[c].min()) <= 1e-12 for part in groups)]


def slug(name: str) -> str:
    """A name as part of a glue key: ``MiniLM RankNet (DL20 -> DL19)`` -> ``minilm_ranknet__dl20____dl19``."""
    return "".join(ch if ch.isalnum() else "_" for ch in str(name).lower()).strip("_")


def verdicts(comparison, digits: int = 4) -> list[str]:
    """One sentence per system of a :class:`~rank_distillm.evaluation.Comparison`: its mean, the
    difference to the baseline and whether the paired test (Holm) finds it significant."""
    t, base = comparison.table, comparison.baseline
    lines = [f"{len(comparison.scores)} queries; {base} (the baseline): {comparison.measure} {t.loc[base, comparison.measure]:.{digits}f}"]
    for system, row in t.drop(index=base).iterrows():
        verdict = ("significantly " + ("better" if row["diff"] > 0 else "worse")) if row["significant"] \
            else "not significantly different"
        p = p_value(row["p_holm"])
        p = f"< {p[1:]}" if p.startswith("<") else f"= {p}"
        lines.append(f"{system}: {row[comparison.measure]:.{digits}f} ({row['diff']:+.{digits}f}, Holm p {p}: "
                     f"{verdict}; Kendall tau with {base} {row['kendall_tau']:.3f})")
    return lines
