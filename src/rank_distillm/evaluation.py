"""Evaluation: measure runs with ``ir_measures`` against a dataset's qrels."""

from __future__ import annotations

import os
from typing import Iterable, Sequence

import ir_measures

from .data import DataError, Run, load_qrels, read_run

DEFAULT_MEASURES = ("nDCG@10", "RR(rel=2)@10", "R(rel=2)@100", "AP(rel=2)")


def parse_measures(names: Iterable[str]) -> list:
    """``ir_measures`` measure objects from their names (``nDCG@10``, ``RR(rel=2)@10``)."""
    out = []
    for name in names:
        try:
            out.append(ir_measures.parse_measure(name))
        except Exception as error:  # ir_measures raises plain ValueErrors/NameErrors
            raise ValueError(f"unknown measure {name!r}: {error}") from None
    return out


def evaluate_run(
    run: Run | dict | str | os.PathLike,
    dataset_id: str,
    measures: Sequence[str] = DEFAULT_MEASURES,
) -> dict[str, float]:
    """Mean of each measure over the run's queries that have judgements: ``{name: value}``."""
    if not isinstance(run, dict):
        run = read_run(run)
    qrels = load_qrels(dataset_id)
    judged = {qid: docs for qid, docs in run.items() if qid in qrels}
    if not judged:
        raise DataError(f"{getattr(run, 'source', 'run')}: none of its queries is judged in {dataset_id}")
    parsed = parse_measures(measures)
    result = ir_measures.calc_aggregate(parsed, qrels, judged)
    return {name: float(result[m]) for name, m in zip(measures, parsed)}


def per_query(
    run: Run | dict | str | os.PathLike,
    dataset_id: str,
    measures: Sequence[str] = DEFAULT_MEASURES,
) -> "pandas.DataFrame":  # noqa: F821
    """One row per (query, measure): columns ``qid``, ``measure``, ``value``."""
    import pandas as pd

    if not isinstance(run, dict):
        run = read_run(run)
    qrels = load_qrels(dataset_id)
    judged = {qid: docs for qid, docs in run.items() if qid in qrels}
    parsed = parse_measures(measures)
    names = {str(m): name for name, m in zip(measures, parsed)}
    rows = [
        {"qid": m.query_id, "measure": names.get(str(m.measure), str(m.measure)), "value": float(m.value)}
        for m in ir_measures.iter_calc(parsed, qrels, judged)
    ]
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- CLI


def add_evaluate_arguments(parser) -> None:
    parser.add_argument("--dataset", required=True, help="ir_datasets id, e.g. msmarco-passage/trec-dl-2019/judged")
    parser.add_argument("--run", required=True, help="TREC run file (or irds:DATASET_ID)")
    parser.add_argument("--measures", nargs="+", default=["nDCG@10", "RR(rel=2)@10", "R(rel=2)@100"])
    parser.add_argument("--json", action="store_true", help="print one JSON object {measure: value}")


def evaluate_command(args) -> int:
    import json

    result = evaluate_run(args.run, args.dataset, args.measures)
    if args.json:
        print(json.dumps(result))
    else:
        width = max(map(len, result))
        for name, value in result.items():
            print(f"{name:<{width}}  {value:.4f}")
    return 0


# --------------------------------------------------------------------------- re-ranking


def rerank(
    model,
    candidates: Sequence["Candidates"],  # noqa: F821
    batch_size: int = 64,
    show_progress_bar: bool = True,
) -> Run:
    """Re-rank candidate lists with a ``CrossEncoder``; every candidate is kept.

    All query-passage pairs are scored in batches sorted by length (less padding), then
    each query's passages are ordered by score, highest first.
    """
    pairs = [(c.query, text) for c in candidates for text in c.texts]
    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
    scores = [0.0] * len(pairs)
    if pairs:
        predicted = model.predict(
            [pairs[i] for i in order], batch_size=batch_size, show_progress_bar=show_progress_bar, convert_to_numpy=True
        )
        for i, score in zip(order, predicted.reshape(len(pairs), -1)[:, 0]):
            scores[i] = float(score)
    run = Run()
    offset = 0
    for c in candidates:
        own = scores[offset : offset + len(c)]
        offset += len(c)
        ranked = sorted(zip(c.docids, own), key=lambda t: -t[1])
        run[c.qid] = dict(ranked)
    return run
