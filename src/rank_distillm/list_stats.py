"""What training lists contain: sizes, targets, and what the TREC judgements say of them.

:mod:`rank_distillm.sampling` builds the lists; this module describes them, for the
chapters and the ``build-dataset`` command:

- :func:`summary`: lists, queries, passages per list and the target range of a dataset;
  :func:`summary_table`: the same for several datasets, with headers a page can show;
- :func:`list_table`: one row per passage of every list, beside its teacher rank,
  first-stage rank and relevance grade;
- :func:`depth_table`: per depth of the paper's ablation (the teacher's order of the first
  stage's top-k), what the lists hold by TREC judgement.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

from .data import Candidates, Run, as_run

# TREC DL's passage grades as a reader knows them (2 or more counts as relevant)
JUDGEMENTS = {3: "relevant (2-3)", 2: "relevant (2-3)", 1: "marginal (1)", 0: "non-relevant (0)"}
UNJUDGED = "unjudged"
JUDGEMENT_ORDER = ["relevant (2-3)", "marginal (1)", "non-relevant (0)", UNJUDGED]


def summary(dataset) -> dict:
    """Queries, lists, passages per list (min/mean/max) and the label range of a dataset.

    Lists drawn on access (the paper's stage 1, :mod:`rank_distillm.single_relevant`) are
    counted in full; their sizes and labels come from one draw of the first 1,000.
    """
    drawn = "docs" not in dataset.column_names  # rows hold ids, a transform draws the lists
    rows = dataset.select(range(min(len(dataset), 1000)))[:] if drawn else dataset  # [:]: one draw of each
    lengths = [len(d) for d in rows["docids"]]
    labels = [x for row in rows["labels"] for x in row]
    if not lengths:
        raise ValueError("the dataset holds no lists")
    mean = sum(lengths) / len(lengths)
    return {
        "lists": len(dataset),
        "queries": len(set(dataset.with_format(None)["qid"] if drawn else dataset["qid"])),
        "passages_per_list_min": min(lengths),
        "passages_per_list_mean": round(mean, 2),
        "passages_per_list_max": max(lengths),
        "passages": round(mean * len(dataset)) if drawn else sum(lengths),
        "label_min": min(labels),
        "label_max": max(labels),
    }


def list_table(dataset, teacher_run: Run | str | os.PathLike | None = None, candidates: Sequence[Candidates] = (), qrels: dict | None = None):
    """One row per passage of every list: position, label, teacher rank, first-stage rank, grade.

    A ``pandas.DataFrame`` for looking at lists: ``teacher_rank`` from ``teacher_run``,
    ``first_stage_rank`` from ``candidates`` and ``qrel`` (None when unjudged) from ``qrels``,
    each column present only when its source is given.
    """
    import pandas as pd

    run = as_run(teacher_run) if teacher_run is not None else None
    first = {c.qid: {d: i for i, d in enumerate(c.docids, start=1)} for c in candidates}
    records = []
    for row in dataset:
        qid = row["qid"]
        teacher = {d: i for i, d in enumerate(run[qid], start=1)} if run is not None and qid in run else {}
        for pos, (docid, label, text) in enumerate(zip(row["docids"], row["labels"], row["docs"]), start=1):
            record = {"qid": qid, "query": row["query"], "position": pos, "docid": docid, "label": label}
            if run is not None:
                record["teacher_rank"] = teacher.get(docid)
            if candidates:
                record["first_stage_rank"] = first.get(qid, {}).get(docid)
            if qrels is not None:
                record["qrel"] = qrels.get(qid, {}).get(docid)
            record["passage"] = text
            records.append(record)
    return pd.DataFrame.from_records(records)


def _range(low: float, high: float, digits: int = 0) -> str:
    return f"{low:.{digits}f}" if low == high else f"{low:.{digits}f}\u2013{high:.{digits}f}"


def summary_table(datasets: Mapping[str, object]):
    """:func:`summary` of each named dataset, one row each, with readable headers.

    Columns: ``lists``, ``queries``, ``passages per list`` (one number, or the range and
    mean), ``passages`` and ``targets`` (the range of the labels; whole numbers without decimals).
    """
    import pandas as pd

    rows = {}
    for name, dataset in datasets.items():
        info = summary(dataset)
        per_list = _range(info["passages_per_list_min"], info["passages_per_list_max"])
        if info["passages_per_list_min"] != info["passages_per_list_max"]:
            per_list += f" (mean {info['passages_per_list_mean']:.1f})"
        whole = all(float(v).is_integer() for v in (info["label_min"], info["label_max"]))
        digits = 0 if whole else 3
        rows[name] = {"lists": info["lists"], "queries": info["queries"], "passages per list": per_list,
                      "passages": info["passages"], "targets": _range(info["label_min"], info["label_max"], digits)}
    return pd.DataFrame.from_dict(rows, orient="index")


def judgement(grade) -> str:
    """A passage's TREC judgement as a reader knows it: ``relevant (2-3)``, ..., or ``unjudged`` (no grade)."""
    if grade is None or grade != grade:  # None or NaN: not judged
        return UNJUDGED
    return JUDGEMENTS.get(int(grade), JUDGEMENTS[3] if grade > 3 else JUDGEMENTS[0])


def depth_table(lists_by_depth: Mapping[int, object], candidates: Sequence[Candidates], qrels: dict):
    """What distillation lists hold at each depth of the paper's ablation: one row per depth.

    ``lists_by_depth``: ``{k: lists}``, where at depth k a list is the teacher's order of the
    first stage's top-k (:func:`~rank_distillm.sampling.distillation_lists`, its default
    ``cut="first-stage"``). Columns: ``passages per list`` and ``relevant per list`` (judged 2
    or more; means over the queries), the share of the lists' passages in each judgement
    class of :data:`JUDGEMENT_ORDER`, and ``deepest first-stage rank`` (the mean over queries
    of the lowest first-stage rank that a list holds).
    """
    import pandas as pd

    rows = []
    for depth, lists in lists_by_depth.items():
        table = list_table(lists, None, candidates, qrels)
        classes = table["qrel"].map(judgement, na_action=None).value_counts(normalize=True)
        per_query = table.assign(relevant=table["qrel"] >= 2).groupby("qid")
        rows.append({
            "depth": depth,
            "passages per list": per_query.size().mean(),
            "relevant per list": per_query["relevant"].sum().mean(),
            **{name: float(classes.get(name, 0.0)) for name in JUDGEMENT_ORDER},
            "deepest first-stage rank": per_query["first_stage_rank"].max().mean(),
        })
    return pd.DataFrame(rows).set_index("depth")
