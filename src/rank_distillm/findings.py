"""What the book found, in words and as a scorecard, generated from the measured figures.

The chapters measure; this module says what the measurements mean, so that the sentences a
reader sees first stay true when the figures change. Every function is pure: it takes plain
numbers (or the per-query scores they come from) and returns sentences or rows.

- :func:`kfold_figures`: the k-fold student against its control (the untrained student), the
  zero-shot bi-encoder, the teacher and BM25 on the same queries: mean differences with their
  95% intervals, Holm-corrected paired t-tests against the student (the paper's direction), and
  paired TOSTs (:func:`rank_distillm.significance.tost_paired`) for equivalence with the teacher
  and with the untrained student;
- :func:`kfold_outcome`: those figures as a paragraph, the control first;
- :func:`scorecard`: one row per claim of the paper (``claim``, ``paper``, ``book``,
  ``setting``, ``status``), the status computed from the figures;
- :func:`found`: the "What this book found" paragraph: the outcome and the scorecard's tally.

The paper's figures are quoted from Schlatt et al. (ECIR 2025) and labelled as the paper's.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from .efficiency.report import PAPER_MEMORY_RATIO, PAPER_SPEEDUP
from .tables import p_cell

REPRODUCED, NOT_AT_THIS_SCALE, NEEDS_GPU = "reproduced", "not at this scale", "needs the gpu profile"
STATUSES = (REPRODUCED, NOT_AT_THIS_SCALE, NEEDS_GPU)

# The paper's figures (quoted, not measured here): nDCG@10, mean of DL19 and DL20 over BM25's
# top-100, two stages, against the number of distillation queries and the teacher's depth.
PAPER_CURVE = {1000: 0.606, 2000: 0.683, 5000: 0.705, 10000: 0.715}
PAPER_DEPTH = {10: 0.681, 20: 0.704, 50: 0.714, 100: 0.715}
# DL19, BM25 top-100 (the paper's Table 3): the student, its teacher, the labels-only model
PAPER_STUDENT, PAPER_TEACHER, PAPER_LABELS_ONLY = 0.720, 0.719, 0.687
# a measured ratio "reproduces" the paper's when it is within this factor of it: the hardware differs
RATIO_TOLERANCE = 2.0

OTHERS = ("untrained", "biencoder", "teacher", "bm25")


def p_text(p: float) -> str:
    """A p-value for reading: ``p < 0.001`` or ``p = 0.042``."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def ci_text(low: float, high: float) -> str:
    """An interval of a difference, signed, three decimals: ``[-0.006, +0.006]``."""
    return f"[{low:+.3f}, {high:+.3f}]"


# --------------------------------------------------------------------------- the k-fold figures


def kfold_figures(scores: "pandas.DataFrame", names: Mapping[str, str], margin: float,  # noqa: F821
                  alpha: float = 0.05) -> dict:
    """The k-fold student against the other systems on the same queries, as plain numbers.

    ``scores``: per-query nDCG@10, one column per system (``crossval.CrossvalResult.scores``);
    ``names``: the columns of ``student`` and of each of :data:`OTHERS`. The tests are the
    paired t-tests of ``significance.paired_tests`` against the student (Holm over every other
    column of ``scores``, as chapter 5's table); ``gain_<x>`` is the student's mean minus
    ``x``'s, with its 95% interval. ``<x>_tost_p`` / ``<x>_equivalent``: the paired TOST of the
    student against ``x`` (teacher and untrained) within ``margin``.
    """
    from .significance import paired_tests, tost_paired

    missing = [k for k in ("student", *OTHERS) if names.get(k) not in scores.columns]
    if missing:
        raise ValueError(f"kfold_figures: no column for {missing} among {list(scores.columns)}")
    student = names["student"]
    tests = paired_tests(scores, baseline=student, alpha=alpha)
    fig: dict = {"queries": int(len(scores)), "margin": float(margin), "alpha": float(alpha),
                 "student": float(scores[student].mean())}
    for key in OTHERS:
        row = tests.loc[names[key]]
        fig[key] = float(row["mean"])
        fig[f"gain_{key}"] = -float(row["diff"])  # the student minus the system
        fig[f"gain_{key}_low"], fig[f"gain_{key}_high"] = -float(row["diff_ci_high"]), -float(row["diff_ci_low"])
        fig[f"gain_{key}_p"] = float(row["p_holm"])
        fig[f"gain_{key}_significant"] = bool(row["significant"])
    for key in ("teacher", "untrained"):
        t = tost_paired(scores[student], scores[names[key]], margin, alpha)
        fig[f"{key}_tost_p"], fig[f"{key}_equivalent"] = t["p"], t["equivalent"]
    fig["untrained_gain_bm25"] = fig["untrained"] - fig["bm25"]
    return fig


def _against(fig: Mapping, key: str, label: str) -> str:
    """``"BM25 scores 0.491, and the student is 0.083 above it (95% CI [+0.060, +0.106], p < 0.001)"``."""
    gain = fig[f"gain_{key}"]
    how = "" if fig[f"gain_{key}_significant"] else ", not significantly"
    where = f"{abs(gain):.3f} {'above' if gain > 0 else 'below'} it{how}" if round(abs(gain), 3) else "level with it"
    return (f"{label} scores {fig[key]:.3f}, and the student is {where} "
            f"(95% CI {ci_text(fig[f'gain_{key}_low'], fig[f'gain_{key}_high'])}, Holm {p_text(fig[f'gain_{key}_p'])})")


def control_sentence(fig: Mapping) -> str:
    """What distillation did: the student against the untrained student, its control."""
    gain = fig["gain_untrained"]
    if fig["gain_untrained_significant"]:
        lead = "Distillation helped." if gain > 0 else "Distillation hurt."
    else:
        lead = "Distillation did not move the student."
    text = (f"{lead} Over {fig['queries']} queries, each re-ranked by a student that never saw it, the k-fold "
            f"student scores {fig['student']:.3f} nDCG@10. {_against(fig, 'untrained', 'The untrained student')}.")
    if fig["untrained_equivalent"]:
        text += f" The two are equivalent within ±{fig['margin']:.2f} (TOST {p_text(fig['untrained_tost_p'])})."
    return text


def teacher_sentence(fig: Mapping, teacher: str = "the teacher") -> str:
    """Does the student reach the teacher? Equivalence (TOST), not a non-significant t-test, decides."""
    margin, tost = fig["margin"], p_text(fig["teacher_tost_p"])
    against = _against(fig, "teacher", f"The teacher, {teacher},")
    if fig["teacher_equivalent"]:
        return f"The student reaches its teacher. {against}. They are equivalent within ±{margin:.2f} (TOST {tost})."
    if fig["gain_teacher_significant"] and fig["gain_teacher"] > 0:
        return f"The student beats its teacher. {against}."
    if fig["gain_teacher_significant"]:
        return (f"The student does not reach its teacher. {against}. "
                f"Equivalence within ±{margin:.2f} is not shown either (TOST {tost}).")
    return (f"{against}. That is not equivalence: the TOST within ±{margin:.2f} does not show it ({tost}). "
            f"Not significantly different is not the same as equivalent.")


def kfold_outcome(fig: Mapping, teacher: str = "the teacher", curve_spread: float | None = None) -> str:
    """The k-fold figures as a paragraph: the control first, then BM25, the bi-encoder and the teacher."""
    sentences = [control_sentence(fig), f"{_against(fig, 'bm25', 'BM25')}."]
    if fig["untrained_gain_bm25"] > 0:
        sentences.append(f"The untrained student already starts {fig['untrained_gain_bm25']:.3f} above BM25.")
    sentences.append(f"{_against(fig, 'biencoder', 'The zero-shot bi-encoder of the same backbone')}.")
    sentences.append(teacher_sentence(fig, teacher))
    if curve_spread is not None:
        sentences.append(f"Every point of the data-size curve lies within {curve_spread:.3f} nDCG@10 of the untrained student.")
    return " ".join(sentences)


# --------------------------------------------------------------------------- the scorecard


def ratio_status(book: float | None, paper: float, measured: bool) -> str:
    """A "times faster / smaller" claim: reproduced when a measured ratio is within
    :data:`RATIO_TOLERANCE` of the paper's (or beyond it); an estimate needs the gpu profile."""
    if book is None or not measured:
        return NEEDS_GPU
    return REPRODUCED if book >= paper / RATIO_TOLERANCE else NOT_AT_THIS_SCALE


def scorecard(fig: Mapping, *, teacher: str, setting: str, curve: Mapping[str, float], curve_queries: str,
              speed: Mapping, memory: Mapping, first_stage: Mapping | None = None) -> list[dict]:
    """One row per claim of the paper: ``claim``, ``paper`` (quoted), ``book``, ``setting``, ``status``.

    ``fig``: :func:`kfold_figures`; ``setting``: the book's k-fold setting in words; ``curve``:
    the data-size curve (training queries as text -> pooled nDCG@10), ``curve_queries`` its
    range in words; ``speed`` / ``memory``: ``{"ratio", "measured" (bool), "setting"}`` for the
    student against the teacher that labelled its data (``measured`` False: an estimate).
    ``first_stage``: the sampler study of chapter 5, ``{"book", "setting", "holds"}`` (``holds``:
    the strong sampler's students significantly better than BM25's, significantly worse nowhere);
    ``None`` where it did not run. The depth and two-stage findings need 10,000 teacher-ranked
    queries: the book measures neither in this setting, and their status says so.
    """
    reached = fig["teacher_equivalent"] or (fig["gain_teacher_significant"] and fig["gain_teacher"] > 0)
    learned = fig["gain_untrained_significant"] and fig["gain_untrained"] > 0
    points = list(curve.values())
    rises = len(points) >= 2 and points[-1] > points[0]
    rows = [
        {"claim": "students reach the teacher",
         "paper": f"student {PAPER_STUDENT:.3f} vs RankZephyr {PAPER_TEACHER:.3f} (DL19, BM25 top-100)",
         "book": (f"student {fig['student']:.3f} vs {teacher} {fig['teacher']:.3f}; "
                  f"TOST ±{fig['margin']:.2f} {p_text(fig['teacher_tost_p'])}"),
         "setting": setting, "status": REPRODUCED if reached else NOT_AT_THIS_SCALE},
        {"claim": f"{PAPER_SPEEDUP:.0f}x faster",
         "paper": f"{PAPER_SPEEDUP:.0f}x (ELECTRA-base vs RankZephyr-7B, GPU)",
         "book": f"{speed['ratio']:.0f}x" + ("" if speed["measured"] else " (estimated)"),
         "setting": speed["setting"], "status": ratio_status(speed["ratio"], PAPER_SPEEDUP, speed["measured"])},
        {"claim": f"{PAPER_MEMORY_RATIO:.0f}x less memory",
         "paper": f"{PAPER_MEMORY_RATIO:.0f}x (ELECTRA-base vs RankZephyr-7B, GPU)",
         "book": f"{memory['ratio']:.0f}x" + ("" if memory["measured"] else " (estimated)"),
         "setting": memory["setting"], "status": ratio_status(memory["ratio"], PAPER_MEMORY_RATIO, memory["measured"])},
        {"claim": "the data-size curve",
         "paper": " → ".join(f"{v:.3f}" for v in PAPER_CURVE.values()) + " (1k → 10k queries)",
         "book": " → ".join(f"{v:.3f}" for v in points) + f" ({curve_queries}); untrained {fig['untrained']:.3f}",
         "setting": setting, "status": REPRODUCED if learned and rises else NOT_AT_THIS_SCALE},
        {"claim": "the depth finding",
         "paper": ", ".join(f"top-{k} {v:.3f}" for k, v in PAPER_DEPTH.items()) + ": the top-50 suffice",
         "book": "not measured", "setting": "needs 10,000 teacher-ranked queries", "status": NEEDS_GPU},
        {"claim": "the first-stage finding",
         "paper": "lists over ColBERTv2's top-k train better students than over BM25's",
         "book": first_stage["book"] if first_stage else "not measured",
         "setting": first_stage["setting"] if first_stage else "the book's lists are over BM25 only",
         "status": (REPRODUCED if first_stage["holds"] else NOT_AT_THIS_SCALE) if first_stage else NEEDS_GPU},
        {"claim": "two stages better than one",
         "paper": f"labels only {PAPER_LABELS_ONLY:.3f}, both stages {PAPER_STUDENT:.3f} (DL19, BM25 top-100)",
         "book": "not measured", "setting": "the cpu profile skips stage 1", "status": NEEDS_GPU},
    ]
    assert all(r["status"] in STATUSES for r in rows)
    return rows


def tally(rows: Sequence[Mapping]) -> str:
    """The scorecard in one or two sentences: which claims each status holds."""
    parts = [] if any(r["status"] == REPRODUCED for r in rows) else ["None of the paper's claims is reproduced here."]
    for status, lead in ((REPRODUCED, "Reproduced here"), (NOT_AT_THIS_SCALE, "Not reproduced at this scale"),
                         (NEEDS_GPU, "Left to the gpu profile")):
        claims = [r["claim"] for r in rows if r["status"] == status]
        if claims:
            parts.append(f"{lead}: {'; '.join(claims)}.")
    return " ".join(parts)


def _brief(fig: Mapping, key: str, label: str) -> str:
    """``"below the zero-shot bi-encoder (0.622, p < 0.001)"``: where the student stands against ``key``."""
    if not fig[f"gain_{key}_significant"]:
        where = "not significantly different from"
    else:
        where = "above" if fig[f"gain_{key}"] > 0 else "below"
    return f"{where} {label} ({fig[key]:.3f}, Holm {p_text(fig[f'gain_{key}_p'])})"


def found(fig: Mapping, rows: Sequence[Mapping], *, teacher: str, training_queries: float, speed: Mapping) -> str:
    """The "What this book found" paragraph, in short sentences: the control, the teacher, BM25, the speed,
    why, the scorecard's tally and what the gpu profile tests."""
    learned = fig["gain_untrained_significant"] and fig["gain_untrained"] > 0
    lead = ("Distillation helped." if learned else "Distillation hurt." if fig["gain_untrained_significant"]
            else "Distillation did not move the student.")
    margin, tost = fig["margin"], p_text(fig["teacher_tost_p"])
    if fig["teacher_equivalent"]:
        reach = f"It reaches its teacher, {teacher} ({fig['teacher']:.3f}): equivalent within ±{margin:.2f} (TOST {tost})."
    elif fig["gain_teacher_significant"] and fig["gain_teacher"] > 0:
        reach = f"It beats its teacher, {teacher} ({fig['teacher']:.3f}, Holm {p_text(fig['gain_teacher_p'])})."
    elif fig["gain_teacher_significant"]:
        reach = (f"It does not reach its teacher, {teacher} ({fig['teacher']:.3f}, Holm {p_text(fig['gain_teacher_p'])}), "
                 f"nor is it equivalent within ±{margin:.2f} (TOST {tost}).")
    else:
        reach = (f"It is {_brief(fig, 'teacher', 'its teacher, ' + teacher)}, but not shown equivalent either "
                 f"(TOST ±{margin:.2f}, {tost}).")
    estimated = "an estimated " if not speed["measured"] else ""
    sentences = [
        lead,
        f"Over {fig['queries']} TREC DL queries, the k-fold student scores {fig['student']:.3f} nDCG@10 "
        f"and its untrained start {fig['untrained']:.3f} (Holm {p_text(fig['gain_untrained_p'])}).",
        f"It is {_brief(fig, 'biencoder', 'the zero-shot bi-encoder of its backbone')}.",
        reach,
        f"Against BM25 ({fig['bm25']:.3f}) it gains {fig['gain_bm25']:+.3f}, the untrained student "
        f"{fig['untrained_gain_bm25']:+.3f}.",
        f"It re-ranks {estimated}{speed['ratio']:.0f} times as fast as {teacher}.",
    ]
    if not learned:
        sentences.append(f"Why: each student here learns from about {training_queries:.0f} queries; "
                         f"the paper's learn from 10,000.")
    sentences.append(tally(rows))
    sentences.append("The gpu profile trains the paper's ELECTRA-base on its 10,000 released queries and times "
                     "RankZephyr-7B for real: it tests what this machine cannot.")
    return " ".join(sentences)


def two_figures(year_to_year: Mapping, kfold: Mapping) -> str:
    """Why the year-to-year students' pooled figure and the k-fold figure differ.

    Each: ``{"ndcg10", "queries", "students", "training_queries"}`` (training queries per student).
    """
    same = year_to_year["queries"] == kfold["queries"]
    where = f"the same {kfold['queries']} queries" if same else (
        f"{year_to_year['queries']} and {kfold['queries']} queries")
    diff = year_to_year["ndcg10"] - kfold["ndcg10"]
    one = year_to_year["students"] == 1
    return (f"The year-to-year student{'' if one else 's'} pool{'s' if one else ''} to {year_to_year['ndcg10']:.4f} nDCG@10: "
            f"{year_to_year['students']} student{'' if one else 's'}, trained on {year_to_year['training_queries']:.0f} "
            f"queries of one year{'' if one else ' each'}. "
            f"The k-fold students pool to {kfold['ndcg10']:.4f}: {kfold['students']} students, each trained on "
            f"about {kfold['training_queries']:.0f} queries of both years. "
            f"The two figures cover {where}, re-ranked by different students, and differ by {diff:+.4f}. "
            f"The k-fold figure is the chapter's result: more training queries per student, and a control on the same queries.")


def kfold_table(scores: "pandas.DataFrame", names: Mapping[str, str], margin: float,  # noqa: F821
                alpha: float = 0.05) -> "pandas.DataFrame":  # noqa: F821
    """The k-fold comparison as a table, one row per system of ``scores`` (the student first).

    Columns: mean nDCG@10 over all queries; the student minus the system with its 95% interval;
    the two-sided paired t-test against the student (Holm over the other systems, as
    :func:`kfold_figures`); the paired TOST within ``margin`` and its verdict.
    """
    import pandas as pd

    from .significance import paired_tests, tost_paired

    student = names["student"]
    tests = paired_tests(scores, baseline=student, alpha=alpha)
    rows = []
    for system in [student, *[c for c in scores.columns if c != student]]:
        row = {"system": system, "nDCG@10": float(scores[system].mean())}
        if system != student:
            t = tests.loc[system]
            tost = tost_paired(scores[student], scores[system], margin, alpha)
            row.update({"student minus system": -float(t["diff"]),
                        "95% CI": ci_text(-float(t["diff_ci_high"]), -float(t["diff_ci_low"])),
                        "Holm p": p_cell(float(t["p_holm"])), f"TOST p (±{margin:.2f})": p_cell(tost["p"]),
                        "equivalent": "yes" if tost["equivalent"] else "no"})
        rows.append(row)
    return pd.DataFrame(rows).set_index("system")


def year_means(scores: "pandas.DataFrame", year: Mapping[str, str]) -> "pandas.DataFrame":  # noqa: F821
    """Mean nDCG@10 of every system (rows) in each year and over both (columns); ``year``: qid -> year."""
    import pandas as pd

    years = pd.Series(year).reindex(scores.index)
    table = scores.groupby(years.str.upper()).mean().T
    table["both years"] = scores.mean()
    table.index.name, table.columns.name = "system", None
    return table


def year_sentence(label: str, queries: int, student: str, teacher: str, diff: float, p_holm: float, significant: bool,
                  tost: Mapping) -> str:
    """One year's student against the teacher, with what the t-test does and does not say."""
    where = "above" if diff > 0 else "below"
    head = f"On {label} ({queries} queries) {student} is {abs(diff):.3f} {where} {teacher} ({p_text(p_holm)}, Holm)."
    if significant:
        return head
    if tost["equivalent"]:
        return head + f" Within ±{tost['margin']:.2f} the two are equivalent (TOST {p_text(tost['p'])})."
    return (head + f" Not significantly different, but not equivalent either: the TOST within ±{tost['margin']:.2f} "
            f"gives {p_text(tost['p'])}. Over so few queries the test cannot tell.")


def tradeoff_sentence(a: str, a_ndcg: float, a_s: float, b: str, b_ndcg: float, b_s: float) -> str:
    """What a cost plot shows about system ``a`` against ``b``: does one dominate (faster and better)?"""
    faster, better = a_s < b_s, a_ndcg > b_ndcg
    figures = f"nDCG@10 {a_ndcg:.4f} against {b_ndcg:.4f}, at {a_s:.3f} s a query against {b_s:.3f} s."
    if faster and better:
        return f"{a} is both faster and more effective than {b}: {figures} On this plot it dominates {b}."
    if not faster and not better:
        return f"{a} is both slower and less effective than {b}: {figures} On this plot {b} dominates it."
    if faster:
        return f"{a} is faster but less effective than {b}: {figures} That is a trade-off, not a win."
    return f"{a} is more effective but slower than {b}: {figures} That is a trade-off, not a win."


def headline_ratios(comparison: "pandas.DataFrame", measured: Mapping | None) -> tuple[dict, dict]:  # noqa: F821
    """The speed and memory ratios that answer "how much cheaper than the teacher?": ``({ratio, measured, setting}, ...)``.

    ``measured``: the benchmark's deepest row when it timed an LLM of the teacher's size for real
    (``{"speedup", "memory_ratio", "setting"}``), else ``None``: then the estimate on this CPU
    (``efficiency.teacher_comparison``'s ``this CPU`` row, the student measured) stands in.
    """
    if measured is not None:
        return ({"ratio": float(measured["speedup"]), "measured": True, "setting": measured["setting"]},
                {"ratio": float(measured["memory_ratio"]), "measured": True, "setting": measured["setting"]})
    cpu, gpu = comparison.loc["this CPU"], comparison.loc["GPU"]
    setting = "this CPU: student measured, teacher estimated; GPU, cost model: "
    speed = f"{gpu['FLOP ratio']:.0f}x (FLOPs) to {gpu['speed-up']:.0f}x (roofline)"
    return ({"ratio": float(cpu["speed-up"]), "measured": False, "setting": setting + speed},
            {"ratio": float(cpu["memory ratio"]), "measured": False, "setting": setting + f"{gpu['memory ratio']:.0f}x"})


def as_html(text: str) -> str:
    """A generated paragraph as one HTML paragraph, escaped, for pasting on another page (``{glue}`` with ``:doc:``:
    myst-nb pastes HTML across pages, and it reads as prose, not as bold pasted text). `code` becomes <code>."""
    import html
    import re

    escaped = html.escape(text, quote=False)
    return "<p>" + re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped) + "</p>"
