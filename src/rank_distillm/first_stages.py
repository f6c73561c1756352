"""The book's first stages: BM25 and four more, each with the teacher's re-ranking of its top-100.

``data.first_stages`` (``profiles/data.yaml``) names each first stage with two run specs per
year: ``run`` (its top-100) and ``teacher`` (RankVicuna-7B over that top-100, from
castorini/rank_llm at cf43c27 with the settings it used over BM25: window 20, stride 10,
top-100, from the bottom of the list upwards). Chapter 01 measures them (:func:`first_stage_table`);
chapter 05 trains students on lists drawn from them (``crossval.samplers``); chapter 06 re-ranks
a strong one (``crossval.strong_first_stage``).

A name that is not in ``data.first_stages`` may still name a first stage of the paper's
protocol (``evaluation.first_stages``, e.g. the gpu profile's ColBERTv2): it has a run and no
teacher run.
"""

from __future__ import annotations

from collections.abc import Sequence

from . import data
from .errors import ProfileError

MEASURES = ("nDCG@10", "R(rel=2)@100")
RANKLLM_SETTINGS = "RankVicuna-7B (castorini/rank_llm at cf43c27): window 20, stride 10, top-100, from the bottom up"


KEYS = {"BM25": "bm25", "BM25+RM3": "bm25_rm3", "TAS-B": "tas_b", "OpenAI ada-002": "openai_ada2",
        "SPLADE++ ED": "splade_pp_ed", "ColBERTv2": "colbertv2"}


def key(name: str) -> str:
    """A first stage's name as part of a glue key: ``SPLADE++ ED`` -> ``splade_pp_ed`` (others: lower case, ``_`` for the rest)."""
    return KEYS.get(name) or "".join(ch if ch.isalnum() else "_" for ch in name.lower()).strip("_")


def names(profile: dict) -> list[str]:
    """The first stages of ``data.first_stages``, in the profile's order."""
    return list(profile["data"].get("first_stages") or {})


def run_spec(profile: dict, name: str, year: str) -> str:
    """The run spec of first stage ``name``'s top-100 of ``year`` (``data.first_stages``, else ``evaluation.first_stages``)."""
    own = (profile["data"].get("first_stages") or {}).get(name)
    specs = own["run"] if own else (profile.get("evaluation", {}).get("first_stages") or {}).get(name)
    if not specs:
        known = names(profile) + list((profile.get("evaluation", {}).get("first_stages") or {}))
        raise ProfileError(f"data.first_stages: no first stage named {name!r} (known: {', '.join(known)})")
    if year not in specs:
        raise ProfileError(f"data.first_stages.{name}: no run for year {year!r} (has {', '.join(specs)})")
    return specs[year]


def teacher_spec(profile: dict, name: str, year: str) -> str | None:
    """The run spec of the teacher's re-ranking of first stage ``name``'s top-100 of ``year`` (``None``: there is none)."""
    own = (profile["data"].get("first_stages") or {}).get(name)
    return (own.get("teacher") or {}).get(year) if own else None


def candidates(profile: dict, name: str, year: str, qids: Sequence[str] | None = None,
               max_queries: int | None = None) -> list[data.Candidates]:
    """First stage ``name``'s candidates of ``year`` (top ``data.depth``), for ``qids`` (in that order) or the first ``max_queries``.

    A query of ``qids`` that the run lacks is a :class:`data.DataError` naming the run.
    """
    d = profile["data"]
    data.setup_ir_datasets()
    spec = run_spec(profile, name, year)
    run = data.read_run(spec)
    if qids is not None:
        missing = [q for q in qids if q not in run]
        if missing:
            raise data.DataError(f"{spec}: first stage {name} has no ranking for query {missing[0]} of {year}"
                                 + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        kept = data.Run({q: run[q] for q in qids}, source=run.source)
        kept.line_of = run.line_of
        run = kept
    cands = data.load_candidates(d["datasets"][year], run, depth=d["depth"], max_queries=None if qids is not None else max_queries)
    if qids is not None:
        order = {q: i for i, q in enumerate(qids)}
        cands.sort(key=lambda c: order[c.qid])
    return cands


def first_stage_table(profile: dict, measures: Sequence[str] = MEASURES) -> "pandas.DataFrame":  # noqa: F821
    """Every first stage of ``data.first_stages`` and the teacher over it, both years (``data.max_queries`` queries each).

    One row per (first stage, year): ``queries``, each of ``measures`` of the first stage's run, and
    ``teacher nDCG@10`` (the teacher's re-ranking of that top-100, on the same queries).
    """
    import pandas as pd

    from . import evaluation

    d = profile["data"]
    data.setup_ir_datasets()
    rows = []
    for name in names(profile):
        for year, dataset_id in d["datasets"].items():
            run = data.read_run(run_spec(profile, name, year))
            qids = [q for q in data.load_queries(dataset_id) if q in run][: d["max_queries"] or None]
            first = {q: dict(list(run[q].items())[: d["depth"]]) for q in qids}
            row = {"first stage": name, "year": year, "queries": len(qids), **evaluation.evaluate_run(first, dataset_id, measures)}
            spec = teacher_spec(profile, name, year)
            if spec:
                teacher = data.read_run(spec)
                row["teacher nDCG@10"] = evaluation.evaluate_run({q: teacher[q] for q in qids if q in teacher}, dataset_id,
                                                                 ["nDCG@10"])["nDCG@10"]
            rows.append(row)
    return pd.DataFrame(rows).set_index(["first stage", "year"])
