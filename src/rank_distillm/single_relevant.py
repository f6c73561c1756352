"""The paper's stage-1 lists: one judged-relevant passage and 7 negatives, drawn anew at every access.

Stage 1 of Rank-DistiLLM (``configs/pre-finetune.yaml`` of webis-de/rank-distillm at 07105cf)
trains on lightning-ir's ``RunDataset`` over the ColBERTv2 run of the judged MS MARCO
training queries: ``depth: 200, sample_size: 8, sampling_strategy: single_relevant,
add_docs_not_in_ranking: true, targets: relevance``, InfoNCE, 20,000 steps of 32 queries.
Every time a query is drawn, a new positive and new negatives are sampled, so over 20,000
steps a query is seen with different negatives. :func:`single_relevant_lists` builds the same
data as a :class:`datasets.Dataset` whose rows hold ids and whose transform
(:class:`SingleRelevantSampler`) draws the list on access; ``CrossEncoderTrainer`` reads it
like any listwise dataset (``query``, ``docs``, ``labels``).

:func:`rank_distillm.sampling.relevance_lists` is the book's variant: one fixed draw from
first-stage candidates with texts at hand.
"""

from __future__ import annotations

import os
import random
from typing import Sequence

from . import data
from .data import DataError


class SingleRelevantSampler:
    """A ``datasets`` transform that draws a fresh stage-1 list at every access.

    Row columns ``qid``, ``query``, ``docids`` (the first-stage top-``depth``), ``judged`` and
    ``grades`` (the query's qrels) become ``query``, ``docs``, ``labels``, ``qid``, ``docids``
    (the columns of :mod:`rank_distillm.sampling`'s lists): one passage judged
    ``>= relevant_grade`` (also one the run missed, with ``add_docs_not_in_ranking``) and
    ``negatives`` passages of the run judged 0 or unjudged (fewer when the run has fewer),
    labels ``[1, 0, ...]``. That is lightning-ir's ``Sampler.single_relevant`` (``relevance >
    0`` positive, ``relevance == 0`` and ranked negative; ``lightning_ir/data/dataset.py`` at
    98cb3fd), whose ``DataFrame.sample`` also draws anew on every ``__getitem__``. Passage
    texts come from ``docs_dataset_id``'s docs store, opened once per process.
    """

    def __init__(self, negatives: int = 7, relevant_grade: int = 1, add_docs_not_in_ranking: bool = True,
                 docs_dataset_id: str = "msmarco-passage", seed: int = 42):
        self.negatives, self.relevant_grade = int(negatives), int(relevant_grade)
        self.add_docs_not_in_ranking, self.docs_dataset_id = bool(add_docs_not_in_ranking), docs_dataset_id
        self.rng = random.Random(seed)
        self._store = None

    def __getstate__(self) -> dict:  # the docs store stays in its process
        return {**self.__dict__, "_store": None}

    def positives(self, docids: Sequence[str], judged: Sequence[str], grades: Sequence[int]) -> list[str]:
        ranked = set(docids)
        return [d for d, g in zip(judged, grades) if g >= self.relevant_grade and (self.add_docs_not_in_ranking or d in ranked)]

    def draw(self, docids: Sequence[str], judged: Sequence[str], grades: Sequence[int]) -> list[str]:
        """One list of passage ids: the positive first."""
        grade = dict(zip(judged, grades))
        pool = [d for d in docids if grade.get(d, 0) <= 0]
        return [self.rng.choice(self.positives(docids, judged, grades))] + self.rng.sample(pool, min(self.negatives, len(pool)))

    def __call__(self, batch: dict) -> dict:
        if self._store is None:
            self._store = data.docs_store(self.docs_dataset_id)
        out = {"query": [], "docs": [], "labels": [], "qid": [], "docids": []}
        for qid, query, docids, judged, grades in zip(batch["qid"], batch["query"], batch["docids"], batch["judged"], batch["grades"]):
            ids = self.draw(docids, judged, grades)
            found = self._store.get_many(ids)
            missing = [d for d in ids if d not in found]
            if missing:
                raise DataError(f"passage {missing[0]} is not in the docs store of {self.docs_dataset_id}")
            out["query"].append(query)
            out["docs"].append([found[d].text for d in ids])
            out["labels"].append([1.0] + [0.0] * (len(ids) - 1))
            out["qid"].append(qid)
            out["docids"].append(ids)
        return out


def single_relevant_lists(
    run: str | os.PathLike,
    dataset_id: str,
    *,
    depth: int = 200,
    negatives: int = 7,
    relevant_grade: int = 1,
    add_docs_not_in_ranking: bool = True,
    docs_dataset_id: str = "msmarco-passage",
    seed: int = 42,
):
    """The paper's stage-1 lists: a :class:`datasets.Dataset` that draws 1 + ``negatives`` anew at every access.

    ``run`` is a released-format run spec (``irds:msmarco-passage/train/rank-distillm-colbert``,
    the ColBERTv2 run of the judged MS MARCO training queries; offline ``parquet:RUN``), cut
    to its top ``depth``; ``dataset_id`` gives query texts and qrels. One row per query that
    the qrels judge, with at least one positive (:class:`SingleRelevantSampler`) and at least
    ``1 + negatives`` passages in run and qrels together (lightning-ir's ``RunDataset``
    keeps the same queries). The rows hold ids; ``docs`` and ``labels`` are drawn on access.
    This is ``configs/pre-finetune.yaml`` of webis-de/rank-distillm at 07105cf:
    ``depth: 200, sample_size: 8, sampling_strategy: single_relevant, add_docs_not_in_ranking: true``.
    """
    import datasets
    import pyarrow as pa
    import pyarrow.compute as pc

    from .released import top_lists

    if negatives < 1:
        raise ValueError(f"negatives must be at least 1, got {negatives}")
    sampler = SingleRelevantSampler(negatives, relevant_grade, add_docs_not_in_ranking, docs_dataset_id, seed)
    qrels, texts = data.load_qrels(dataset_id), data.load_queries(dataset_id)
    table = top_lists(run, depth)
    qids = table.column("qid").to_pylist()
    lists = table.column("docids").combine_chunks()
    lengths = pc.list_value_length(lists).to_numpy(zero_copy_only=False)
    keep, query, judged, grades = [], [], [], []
    for i, qid in enumerate(qids):
        grade = qrels.get(qid, {})
        if add_docs_not_in_ranking and lengths[i] >= 1 + negatives:  # the ranked ids are not needed (500,000 x 200 of them)
            enough = bool(sampler.positives((), list(grade), list(grade.values())))
        else:
            docids = lists[i].as_py()
            positives = sampler.positives(docids, list(grade), list(grade.values()))
            enough = bool(positives) and len(set(docids) | set(positives)) >= 1 + negatives
        if not grade or not enough:
            keep.append(False)
            continue
        if qid not in texts:
            raise DataError(f"{run} : query {qid} has no text in {dataset_id}")
        keep.append(True)
        query.append(texts[qid])
        judged.append(list(grade))
        grades.append(list(grade.values()))
    table = table.filter(pa.array(keep))
    if not len(table):
        raise DataError(f"{run}: no query has a passage judged >= {relevant_grade} in {dataset_id}")
    table = table.append_column("query", pa.array(query, pa.string()))
    table = table.append_column("judged", pa.array(judged, pa.list_(pa.string())))
    table = table.append_column("grades", pa.array(grades, pa.list_(pa.int64())))
    dataset = datasets.Dataset(table)
    dataset.set_transform(sampler)
    return dataset
