"""Evaluation: re-rank with a cross-encoder, measure with ``ir_measures``, compare systems.

- :func:`rerank` re-orders candidate lists with any ``CrossEncoder`` (or, as a zero-shot
  baseline, a ``SentenceTransformer`` bi-encoder: cosine similarity);
  :func:`rerank_cached` does the same once per model and candidate set.
- :func:`evaluate_run` and :func:`per_query` measure one run, in exactly the order it states:
  by score, and passages of equal score in the order of the file's rank column (the order
  ``teach`` and ``rerank`` give them), where ``ir_measures`` and ``trec_eval`` would break
  ties by docid (:func:`rank_distillm.data.stated_order`).
- :func:`compare` measures several runs over the same queries, tests each against a
  baseline (paired two-sided t-tests on per-query nDCG@10, Holm-corrected; see
  :mod:`rank_distillm.significance`) and measures agreement with it (Kendall's tau, nDCG@10
  with the baseline's ranking as labels). The ``compare`` and ``rerank`` commands call them.
- :func:`protocol` is the paper's evaluation of a profile's students: every student
  re-ranks the top-100 of every first stage (``evaluation.first_stages``: BM25 and ColBERTv2
  in ``gpu``) of both TREC DL years, and each of these test sets is one :func:`compare`
  against ``evaluation.baseline`` (the distilled model in ``gpu``).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import ir_measures

from . import significance
from .data import DataError, Run, cache_dir, load_qrels, read_run, run_tag, stated_order, write_run
from .errors import ProfileError

DEFAULT_MEASURES = ("nDCG@10", "RR(rel=2)@10", "R(rel=2)@100", "AP(rel=2)")


def parse_measures(names: Iterable[str]) -> list:
    """``ir_measures`` measure objects from their names (``nDCG@10``, ``RR(rel=2)@10``)."""
    out = []
    for name in names:
        try:
            out.append(ir_measures.parse_measure(name))
        except Exception as error:  # ir_measures raises plain ValueErrors/NameErrors
            raise DataError(f"unknown measure {name!r}: {error}") from None
    return out


def _judged(run: dict, dataset_id: str) -> tuple[dict, dict]:
    """``(qrels, run)`` cut to the queries that both hold.

    ``ir_measures`` scores a judged query that the run lacks as 0, so the qrels are cut
    too: a run's means are over its own judged queries (as ``trec_eval`` without ``-c``).

    Ties: the run is measured in exactly the order it states (:func:`~rank_distillm.data.stated_order`:
    by score, passages of equal score in the order of the file's rank column, or of the
    dict), the order ``teach`` and ``rerank`` give them. ``ir_measures`` and ``trec_eval``
    would break them by docid instead.
    """
    qrels = load_qrels(dataset_id)
    judged = stated_order({qid: docs for qid, docs in run.items() if qid in qrels})
    return {qid: qrels[qid] for qid in judged}, judged


def evaluate_run(
    run: Run | dict | str | os.PathLike,
    dataset_id: str,
    measures: Sequence[str] = DEFAULT_MEASURES,
) -> dict[str, float]:
    """Mean of each measure over the run's queries that have judgements: ``{name: value}``."""
    if not isinstance(run, dict):
        run = read_run(run)
    qrels, judged = _judged(run, dataset_id)
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
    qrels, judged = _judged(run, dataset_id)
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
    from .cli_types import print_json

    result = evaluate_run(args.run, args.dataset, args.measures)
    if args.json:
        print_json(result)
    else:
        width = max(map(len, result))
        for name, value in result.items():
            print(f"{name:<{width}}  {value:.4f}")
    return 0


# --------------------------------------------------------------------------- re-ranking


def _is_bi_encoder(model) -> bool:
    return hasattr(model, "encode") and not hasattr(model, "predict")


def _score(model, candidates, batch_size: int, show_progress_bar: bool) -> list[float]:
    """One score per (query, passage), flattened in candidate order."""
    import numpy as np

    pairs = [(c.query, text) for c in candidates for text in c.texts]
    if not pairs:
        return []
    if _is_bi_encoder(model):  # zero-shot bi-encoder: cosine of query and passage embeddings
        queries = list(dict.fromkeys(c.query for c in candidates))
        q = model.encode(queries, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                         show_progress_bar=show_progress_bar)
        p = model.encode([t for _, t in pairs], batch_size=batch_size, normalize_embeddings=True,
                         convert_to_numpy=True, show_progress_bar=show_progress_bar)
        row = {text: i for i, text in enumerate(queries)}
        return [float(x) for x in np.einsum("ij,ij->i", q[[row[qt] for qt, _ in pairs]], p)]
    # CrossEncoder.predict batches the pairs sorted by length itself (less padding) and returns them in order
    predicted = model.predict(pairs, batch_size=batch_size, show_progress_bar=show_progress_bar, convert_to_numpy=True)
    return [float(score) for score in np.asarray(predicted).reshape(len(pairs), -1)[:, 0]]


def rerank(
    model,
    candidates: Sequence["Candidates"],  # noqa: F821
    batch_size: int = 64,
    show_progress_bar: bool = True,
) -> Run:
    """Re-rank candidate lists with a ``CrossEncoder``; every candidate is kept.

    All query-passage pairs are scored in batches sorted by length (``CrossEncoder.predict`` sorts them), then
    each query's passages are ordered by score, highest first (ties keep the candidate
    order). A ``SentenceTransformer`` (bi-encoder) is accepted too: its score is the
    cosine similarity of the query and passage embeddings.
    """
    scores = _score(model, candidates, batch_size, show_progress_bar)
    run = Run()
    offset = 0
    for c in candidates:
        own = scores[offset : offset + len(c)]
        offset += len(c)
        ranked = sorted(zip(c.docids, own), key=lambda t: -t[1])
        run[c.qid] = dict(ranked)
    return run


def untrained_sweep(backbone: str, candidates: list, dataset_id: str, max_length: int, batch_size: int = 64) -> "pandas.DataFrame":  # noqa: F821
    """nDCG@10 of untrained students (:func:`rank_distillm.student.build_student`) on ``candidates`` (judged in ``dataset_id``), after the first stage's own order.

    The library's ``classifier`` head on a full cross-encoder, then the ``segment-cosine`` head with
    0, 1, ... all layers separate (all: the bi-encoder). One row each: ``scorer``, ``head``,
    ``separate layers``, ``nDCG@10``.
    """
    import pandas as pd
    from transformers import AutoConfig

    from .student import build_student

    def ndcg(run) -> float:
        return evaluate_run(run, dataset_id, ["nDCG@10"])["nDCG@10"]

    n_layers = AutoConfig.from_pretrained(backbone).num_hidden_layers
    rows = [{"scorer": "BM25 (first stage)", "head": None, "separate layers": None,
             "nDCG@10": ndcg(Run({c.qid: dict(zip(c.docids, c.scores)) for c in candidates}))}]
    for head, n in [("classifier", 0)] + [("segment-cosine", n) for n in range(n_layers + 1)]:
        model = build_student(backbone, head=head, max_length=max_length, separate_layers=n)
        kind = " (the bi-encoder)" if n == n_layers else " (a full cross-encoder)" if n == 0 else ""
        run = rerank(model, candidates, batch_size=batch_size, show_progress_bar=False)
        rows.append({"scorer": f"untrained, head: {head}{kind}", "head": head, "separate layers": n, "nDCG@10": ndcg(run)})
    return pd.DataFrame(rows)


def load_reranker(path: str, bi_encoder: bool = False, device: str | None = None):
    """A ``CrossEncoder`` (one output: a fresh backbone gets a random head) or, with
    ``bi_encoder``, a ``SentenceTransformer`` from a folder, hub id or ``pkg:`` name."""
    from .models import resolve_model

    path = resolve_model(str(path))
    if bi_encoder:
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(path, device=device)
    from .student import load_student

    return load_student(path, device=device)


def _model_signature(path: str) -> str:
    folder = Path(path)
    if folder.exists():
        files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else [folder]
        return str(folder.resolve()) + "".join(f"|{p.name}:{p.stat().st_size}:{int(p.stat().st_mtime)}" for p in files)
    return path


def rerank_cached(
    model_path: str,
    candidates: Sequence["Candidates"],  # noqa: F821
    bi_encoder: bool = False,
    batch_size: int = 64,
    show_progress_bar: bool = True,
) -> Run:
    """:func:`rerank` with the model at ``model_path``, stored as a TREC run in the cache.

    The file is keyed by the model's files (path, sizes, times) and the candidate lists,
    so a retrained model or other candidates are re-ranked again; the same ones are read.
    """
    from .models import resolve_model

    resolved = resolve_model(str(model_path))
    key = hashlib.sha1(
        "\n".join([_model_signature(resolved), str(bi_encoder)] + [f"{c.qid}:{','.join(c.docids)}" for c in candidates]).encode()
    ).hexdigest()[:16]
    path = cache_dir() / "reranked" / f"{Path(resolved).name}-{key}.run"
    if path.is_file():
        return read_run(path)
    run = rerank(load_reranker(resolved, bi_encoder), candidates, batch_size, show_progress_bar)
    write_run(run, path, tag=run_tag(Path(resolved).name[:40], "rerank"))
    return run


def student_runs(
    students: Sequence,
    candidates: Mapping[str, Sequence["Candidates"]],  # noqa: F821
    datasets: Mapping[str, str],
    batch_size: int = 64,
    show_progress_bar: bool = True,
) -> dict[str, dict[str, Run]]:
    """``{year: {student name: run}}``: each student re-ranks its test year's candidates.

    ``students`` have ``name``, ``test_year`` (a key of ``datasets``, e.g. ``dl20``, or its
    dataset id) and ``path`` (a CrossEncoder folder); re-rankings are cached
    (:func:`rerank_cached`).
    """
    by_id = {dataset_id: year for year, dataset_id in datasets.items()}
    out: dict[str, dict[str, Run]] = {}
    for student in students:
        year = student.test_year if student.test_year in datasets else by_id.get(student.test_year)
        if year is None or year not in candidates:
            raise DataError(
                f"student {student.name!r}: test_year {student.test_year!r} is none of {sorted(candidates)}"
            )
        out.setdefault(year, {})[student.name] = rerank_cached(
            str(student.path), candidates[year], batch_size=batch_size, show_progress_bar=show_progress_bar
        )
    return out


def add_rerank_arguments(parser) -> None:
    from .cli_types import add_force_argument, positive_int, trec_tag

    parser.add_argument("--model", required=True, help="CrossEncoder folder or hub id (pkg: names too)")
    parser.add_argument("--dataset", required=True, help="ir_datasets id of the queries and passages")
    parser.add_argument("--candidates", required=True, help="first-stage TREC run file (or irds:DATASET_ID)")
    parser.add_argument("--depth", type=positive_int, default=100, help="re-rank each query's top-k (default 100)")
    parser.add_argument("--max-queries", type=positive_int, default=None, help="only the first N queries of the dataset")
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--bi-encoder", action="store_true", help="the model is a SentenceTransformer: score by cosine")
    parser.add_argument("--tag", default=None, type=trec_tag, help="run tag (default: the model folder's name)")
    parser.add_argument("--out", required=True, help="where to write the re-ranked TREC run")
    add_force_argument(parser)


def rerank_command(args) -> int:
    from .data import load_candidates, resolve_path
    from .outputs import RUN_FILE, check_target

    inputs = [] if str(args.candidates).startswith("irds:") else [resolve_path(args.candidates)]
    check_target(args.out, RUN_FILE, force=args.force, inputs=[*inputs, args.model])
    candidates = load_candidates(args.dataset, args.candidates, depth=args.depth, max_queries=args.max_queries)
    model = load_reranker(args.model, bi_encoder=args.bi_encoder)
    run = rerank(model, candidates, batch_size=args.batch_size, show_progress_bar=True)
    tag = args.tag or run_tag(Path(str(args.model).rstrip("/")).name, "rerank")
    out = write_run(run, args.out, tag=tag)
    print(f"re-ranked {len(run)} queries ({sum(map(len, run.values()))} passages) -> {out}")
    return 0


# --------------------------------------------------------------------------- comparing systems


@dataclass
class Comparison:
    """Several systems measured on the same queries and tested against a baseline.

    ``table``: one row per system (index ``system``): the mean of each measure over the
    system's own queries, then, on the queries all systems share, the tested measure's
    ``mean``, ``ci_low``/``ci_high``, ``diff`` to the baseline with its interval, ``t``,
    ``p``, ``p_holm``, ``significant``, and agreement with the baseline (``kendall_tau``,
    ``baseline_ndcg@10``). ``scores``: the tested measure per query (rows) and system
    (columns), on the shared queries. ``per_query``: every measure, long format.
    ``notes``: what was left out and why (runs lacking queries).
    """

    dataset_id: str
    baseline: str
    measure: str
    alpha: float
    table: "pandas.DataFrame"  # noqa: F821
    scores: "pandas.DataFrame"  # noqa: F821
    per_query: "pandas.DataFrame"  # noqa: F821
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Plain JSON-able data: ``{dataset, baseline, measure, alpha, queries, notes, systems: {name: {...}}}``."""
        import math

        def clean(v):
            if isinstance(v, float) and math.isnan(v):
                return None
            return v.item() if hasattr(v, "item") else v

        return {
            "dataset": self.dataset_id,
            "baseline": self.baseline,
            "measure": self.measure,
            "alpha": self.alpha,
            "correction": "holm",
            "queries": len(self.scores),
            "notes": self.notes,
            "systems": {name: {k: clean(v) for k, v in row.items()} for name, row in self.table.to_dict("index").items()},
        }

    def format(self, digits: int = 4) -> str:
        """The table as text; ``+``/``-``: significantly better/worse than the baseline."""
        rows = []
        measures = [c for c in self.table.columns if c in self.per_query["measure"].unique()]
        header = ["system", *measures, f"diff {self.measure}", "95% CI", "p (Holm)", "tau"]
        for name, row in self.table.iterrows():
            mark = ""
            if row["significant"]:
                mark = " +" if row["diff"] > 0 else " -"
            rows.append([
                name + (" (baseline)" if name == self.baseline else ""),
                *[f"{row[m]:.{digits}f}" + (mark if m == self.measure else "") for m in measures],
                "" if name == self.baseline else f"{row['diff']:+.{digits}f}",
                f"[{row['ci_low']:.{digits}f}, {row['ci_high']:.{digits}f}]",
                "" if name == self.baseline else f"{row['p_holm']:.{digits}g}",
                f"{row['kendall_tau']:.3f}",
            ])
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
        lines = ["  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip() for r in [header, *rows]]
        lines.append(
            f"{len(self.scores)} queries of {self.dataset_id}; two-sided paired t-tests on {self.measure} against "
            f"{self.baseline}, Holm-corrected; +/-: significantly better/worse (alpha {self.alpha}); "
            f"95% CI of the mean; tau: mean Kendall tau with {self.baseline}'s ranking."
        )
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


def compare(
    runs: Mapping[str, Run | dict | str | os.PathLike],
    dataset_id: str,
    baseline: str | None = None,
    measures: Sequence[str] = DEFAULT_MEASURES,
    measure: str = "nDCG@10",
    alpha: float = 0.05,
    qids: Iterable[str] | None = None,
    agreement_depth: int = 10,
) -> Comparison:
    """Measure ``runs`` (``{name: run or file}``) on ``dataset_id`` and test them against ``baseline``.

    The queries are ``qids`` (default: every judged query of the dataset); a run's queries
    outside them are ignored, and a run that lacks some of them is measured on the rest,
    with a note (and a warning) saying which. Paired tests and agreement use the queries
    that all runs hold. ``baseline`` defaults to the first run.
    """
    import pandas as pd

    if not runs:
        raise DataError("compare: no runs given")
    if not 0 < alpha < 1:
        raise DataError(f"alpha must lie between 0 and 1, not {alpha}")
    names = list(runs)
    baseline = names[0] if baseline is None else baseline
    if baseline not in runs:
        raise DataError(f"baseline {baseline!r} is not one of the runs {names}")
    measures = list(dict.fromkeys([measure, *measures]))
    qrels = load_qrels(dataset_id)
    wanted = list(qrels) if qids is None else list(dict.fromkeys(qids))
    unjudged = [q for q in wanted if q not in qrels]
    if unjudged:
        raise DataError(f"queries {unjudged[:5]} have no judgements in {dataset_id}")
    loaded, notes = {}, []
    for name, run in runs.items():
        run = run if isinstance(run, dict) else read_run(run)
        loaded[name] = {q: run[q] for q in wanted if q in run}
        missing = [q for q in wanted if q not in run]
        if not loaded[name]:
            raise DataError(f"run {name!r} ({getattr(run, 'source', 'in memory')}): none of its queries is among the {len(wanted)} evaluated in {dataset_id}")
        if missing:
            notes.append(
                f"run {name!r} lacks {len(missing)} of the {len(wanted)} queries ({', '.join(missing[:10])}"
                f"{', ...' if len(missing) > 10 else ''}): its means are over the {len(loaded[name])} it has"
            )
    per = pd.concat([per_query(run, dataset_id, measures).assign(system=name) for name, run in loaded.items()], ignore_index=True)
    means = per.groupby(["system", "measure"])["value"].mean().unstack("measure").reindex(index=names, columns=measures)
    scores = per[per["measure"] == measure].pivot(index="qid", columns="system", values="value").reindex(columns=names)
    shared = scores.dropna()
    if len(shared) < len(scores):
        notes.append(f"the paired tests use the {len(shared)} queries that all runs hold (of {len(scores)})")
    tests = significance.paired_tests(shared, baseline, alpha=alpha)
    reference = loaded[baseline]
    agree = {}
    for name in names:
        own = {q: loaded[name][q] for q in shared.index}
        agree[name] = {
            "kendall_tau": _mean(significance.kendall_tau(own, reference).values()),
            f"baseline_ndcg@{agreement_depth}": _mean(significance.teacher_ndcg(own, reference, agreement_depth).values()),
        }
    table = means.join(tests).join(pd.DataFrame.from_dict(agree, orient="index"))
    table.index.name = "system"
    if notes:
        warnings.warn("; ".join(notes), stacklevel=2)
    return Comparison(dataset_id, baseline, measure, alpha, table, shared, per, notes)


def _mean(values) -> float:
    values = list(values)
    return float(sum(values) / len(values)) if values else float("nan")


def add_compare_arguments(parser) -> None:
    from .cli_types import between_0_and_1

    parser.add_argument("--dataset", required=True, help="ir_datasets id, e.g. msmarco-passage/trec-dl-2019/judged")
    parser.add_argument("--run", action="append", required=True, metavar="NAME=FILE",
                        help="a system and its TREC run file; repeat for each system")
    parser.add_argument("--baseline", default=None, help="the system the others are tested against (default: the first)")
    parser.add_argument("--measures", nargs="+", default=list(DEFAULT_MEASURES), help="measures to report")
    parser.add_argument("--measure", default="nDCG@10", help="the measure the t-tests use (default nDCG@10)")
    parser.add_argument("--alpha", type=between_0_and_1, default=0.05, help="significance level after Holm (default 0.05)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def parse_run_specs(specs: Sequence[str]) -> dict[str, str]:
    """``["bm25=FILE", ...]`` -> ``{"bm25": "FILE"}``; a malformed or repeated name is an error."""
    out = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise DataError(f"--run {spec!r}: expected NAME=FILE")
        if name in out:
            raise DataError(f"--run {spec!r}: the name {name!r} is used twice")
        out[name] = path
    return out


def compare_command(args) -> int:
    from .cli_types import print_json

    parse_measures([args.measure, *args.measures])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the notes are printed with the result
        result = compare(parse_run_specs(args.run), args.dataset, baseline=args.baseline,
                         measures=args.measures, measure=args.measure, alpha=args.alpha)
    if args.json:
        print_json(result.to_dict(), indent=1)
    else:
        print(result.format())
    return 0


# --------------------------------------------------------------------------- the paper's protocol


def protocol(
    profile: dict,
    students: Sequence,
    batch_size: int | None = None,
    show_progress_bar: bool = True,
) -> dict[tuple[str, str], Comparison]:
    """The paper's evaluation: ``{(first stage, year): Comparison}``.

    Each student (``name`` and ``path``, e.g. from ``training.trained_students``) re-ranks
    the top ``data.depth`` of every run of ``evaluation.first_stages`` (``{name: {year: run
    spec}}``) for the judged queries of ``data.datasets[year]`` (the first ``data.max_queries``);
    the first stage itself is measured beside them, and where the first stage is the one the
    stored LLM runs re-ranked (``data.first_stage``) those runs too. Every test set is tested
    against ``evaluation.baseline`` (two-sided paired t-tests on ``test_measure``, Holm over
    the systems of the set). This is ``configs/re-rank.yaml`` of webis-de/rank-distillm at
    07105cf: the BM25 and ColBERTv2 top-100 of TREC DL 2019 and 2020.
    """
    from .data import load_candidates

    D, E = profile["data"], profile["evaluation"]
    batch_size = batch_size or E["batch_size"]
    out = {}
    for first_name, specs in E["first_stages"].items():
        for year, spec in specs.items():
            dataset_id = D["datasets"][year]
            candidates = load_candidates(dataset_id, spec, depth=D["depth"], max_queries=D["max_queries"])
            runs: dict[str, dict] = {first_name: {c.qid: dict(zip(c.docids, c.scores)) for c in candidates}}
            if str(spec) == str(D["first_stage"].get(year)):
                runs.update({name: read_run(s) for name, s in D["llm_runs"].get(year, {}).items()})
            for student in students:
                runs[student.name] = rerank_cached(str(student.path), candidates, batch_size=batch_size,
                                                   show_progress_bar=show_progress_bar)
            if E["baseline"] not in runs:
                raise ProfileError(f"evaluation.baseline {E['baseline']!r} is none of the systems of {first_name} {year}: {list(runs)}")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # notes stay in the Comparison
                out[(first_name, year)] = compare(
                    runs, dataset_id, baseline=E["baseline"], measures=E["measures"], measure=E["test_measure"],
                    alpha=E["alpha"], qids=[c.qid for c in candidates], agreement_depth=E["agreement_depth"])
    return out


def protocol_table(comparisons: Mapping[tuple[str, str], Comparison]) -> "pandas.DataFrame":  # noqa: F821
    """One row per system, one column per (first stage, year): the tested measure, ``*`` where it
    differs significantly from the baseline (Holm), as in the paper's Table 3."""
    import pandas as pd

    cells = {}
    for key, c in comparisons.items():
        t = c.table
        cells[key] = {name: f"{row[c.measure]:.3f}" + ("*" if row["significant"] and name != c.baseline else "")
                      for name, row in t.iterrows()}
    table = pd.DataFrame(cells)
    table.columns = pd.MultiIndex.from_tuples(table.columns, names=["first stage", "year"])
    return table


# The paper's nDCG@10 (Schlatt et al., ECIR 2025, Table 3), re-ranking the top-100 of
# each first stage. Quoted, not measured here: label them as the paper's wherever shown.
PAPER_NDCG10 = [
    # system, BM25 DL19, BM25 DL20, ColBERTv2 DL19, ColBERTv2 DL20
    ("first stage", 0.480, 0.494, 0.732, 0.724),
    ("RankGPT-4", 0.713, 0.713, 0.766, 0.793),
    ("RankZephyr", 0.719, 0.720, 0.749, 0.798),
    ("monoT5-3B", 0.705, 0.715, 0.745, 0.757),
    ("monoELECTRA-base (labels only)", 0.687, 0.698, 0.739, 0.760),
    ("ELECTRA-base, 2 stages, RankNet", 0.720, 0.711, 0.768, 0.770),
    ("ELECTRA-base, 2 stages, ADR-MSE", 0.716, 0.709, 0.770, 0.765),
    ("ELECTRA-large, 2 stages", 0.733, 0.727, 0.765, 0.799),
]


def paper_table() -> "pandas.DataFrame":  # noqa: F821
    """:data:`PAPER_NDCG10` as a table (columns: first stage x year)."""
    import pandas as pd

    columns = pd.MultiIndex.from_product([["BM25", "ColBERTv2"], ["DL19", "DL20"]], names=["first stage", "year"])
    return pd.DataFrame([r[1:] for r in PAPER_NDCG10], index=pd.Index([r[0] for r in PAPER_NDCG10], name="system (paper)"), columns=columns)
