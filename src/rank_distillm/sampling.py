"""Training lists: teacher rankings, relevance labels and the released data as listwise data.

Every builder returns a :class:`datasets.Dataset` in the listwise format of
sentence-transformers' cross-encoder losses, one row per list::

    query: str, docs: list[str], labels: list[float], qid: str, docids: list[str]

* :func:`distillation_lists` - stage 2 of Rank-DistiLLM: a teacher's ranking of the
  first-stage candidates, cut to a ``depth``, sampled and turned into targets
  (``depth - rank + 1`` as in the paper, ``1/rank`` as in RankGPT, or the teacher's
  scores).
* :func:`relevance_lists` - stage 1: one judged-relevant passage plus ``negatives``
  non-relevant ones, drawn once from first-stage candidates (the paper's stage 1 draws
  anew at every access: :func:`rank_distillm.single_relevant.single_relevant_lists`);
  :func:`triples_lists` - the same shape from MS MARCO training triples;
  :func:`graded_lists` - the first-stage list with its graded qrels as labels.
* :func:`released_lists` - the published Rank-DistiLLM files (parquet ``qid, docno,
  score``, :mod:`rank_distillm.released`) with passages from ``ir_datasets``.

Lists are deterministic for a given ``seed``. Bad input (a teacher passage that the
candidates lack, a depth deeper than a list) is a :class:`~rank_distillm.errors.DataError` naming the file
and line.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Iterable, Sequence

from . import data
from .data import Candidates, DataError, Run
from .list_stats import list_table, summary  # noqa: F401  (what lists contain is described there)
from .released import RELEASED_URL, read_released  # noqa: F401  (the released files' reader lives there)

SAMPLINGS = ("top", "random", "hard")
LABELS = ("rank", "reciprocal", "score")
CUTS = ("first-stage", "teacher")
COLUMNS = ("query", "docs", "labels", "qid", "docids")


# --------------------------------------------------------------------------- helpers


def _to_dataset(rows: list[dict]):
    import datasets

    columns = {name: [row[name] for row in rows] for name in COLUMNS}
    features = datasets.Features(
        {
            "query": datasets.Value("string"),
            "docs": datasets.Sequence(datasets.Value("string")),
            "labels": datasets.Sequence(datasets.Value("float64")),
            "qid": datasets.Value("string"),
            "docids": datasets.Sequence(datasets.Value("string")),
        }
    )
    return datasets.Dataset.from_dict(columns, features=features)


def _rng(seed: int, qid: str) -> random.Random:
    """A generator per query, so a list does not depend on which other queries are built."""
    return random.Random(f"{seed}:{qid}")


def target(rank: int, depth: int, labels: str, score: float | None = None) -> float:
    """The training target of the passage at 1-based teacher ``rank``.

    ``rank``: ``depth - rank + 1`` (rank 1 -> depth, the paper's: lightning-ir's
    ``targets: rank``); ``reciprocal``: ``1 / rank`` (RankGPT's ``1/(i+1)`` for the 0-based
    position ``i``, ``specialization.py`` in sunnweiwei/RankGPT at 0d62bc3); ``score``: the teacher's own score.
    """
    if labels == "rank":
        return float(depth - rank + 1)
    if labels == "reciprocal":
        return 1.0 / rank
    if labels == "score":
        if score is None:
            raise DataError("labels='score' needs the teacher's scores")
        return float(score)
    raise DataError(f"labels: unknown label transform {labels!r} (use one of {', '.join(LABELS)})")


# --------------------------------------------------------------------------- distillation


def distillation_lists(
    teacher_run: Run | str | os.PathLike,
    candidates: Sequence[Candidates],
    *,
    depth: int = 100,
    per_list: int | None = None,
    sampling: str = "top",
    labels: str = "rank",
    seed: int = 42,
    cut: str = "first-stage",
):
    """Training lists from a teacher's ranking of the first-stage candidates.

    One list per query that both the candidates and the teacher run hold, in the
    candidates' order (:func:`distillation_list`). ``depth`` cuts the list (``cut``,
    :func:`cut_ranking`):

    * ``"first-stage"`` (the paper's): the teacher's order of the passages that the *first
      stage* ranked in its top ``depth``, re-numbered 1, 2, ... (``utils/subsample.py`` in
      webis-de/rank-distillm at 07105cf: the top-k of the paper's depth ablation);
    * ``"teacher"`` (the book's): the teacher's own top ``depth``, whatever the first stage
      thought of them.

    Then (:func:`sample_ranks`)

    * ``sampling="top"``: the first ``per_list`` of them (all when ``per_list`` is None);
    * ``"random"``: ``per_list`` of them drawn at random, listed in teacher order;
    * ``"hard"``: all ``depth`` of them plus ``per_list - depth`` first-stage hard negatives:
      the best-ranked candidates (first-stage order) that the teacher put below ``depth``,
      with target 0 (below the cut).

    Targets follow :func:`target` on the (re-numbered) teacher rank (``labels``). A teacher
    passage that the candidates lack, or a ``depth`` deeper than a teacher list (``cut="teacher"``)
    or a first-stage list (``"first-stage"``), is a :class:`DataError` naming the run file and line.
    """
    _check_list_options(depth, per_list, sampling, labels, cut)
    run = data.as_run(teacher_run)
    common = [c for c in candidates if c.qid in run]
    if not common:
        raise DataError(
            f"{run.where(next(iter(run)))}: the teacher run shares no query with the candidates "
            f"(run: {len(run)} queries, candidates: {len(candidates)})"
        )
    options = dict(depth=depth, per_list=per_list, sampling=sampling, labels=labels, seed=seed, cut=cut)
    return _to_dataset([distillation_list(run, cand, **options) for cand in common])


def _check_list_options(depth: int, per_list: int | None, sampling: str, labels: str, cut: str) -> None:
    """The options of :func:`distillation_lists`, checked before any list is built."""
    if cut not in CUTS:
        raise DataError(f"cut: unknown cut {cut!r} (use one of {', '.join(CUTS)})")
    if sampling not in SAMPLINGS:
        raise DataError(f"sampling: unknown sampling {sampling!r} (use one of {', '.join(SAMPLINGS)})")
    if labels not in LABELS:
        raise DataError(f"labels: unknown label transform {labels!r} (use one of {', '.join(LABELS)})")
    if depth < 1:
        raise DataError(f"depth must be at least 1, got {depth}")
    if per_list is not None and per_list < 1:
        raise DataError(f"per_list must be at least 1, got {per_list}")
    if sampling in ("top", "random") and per_list is not None and per_list > depth:
        raise DataError(f"sampling={sampling!r}: per_list ({per_list}) is larger than depth ({depth})")
    if sampling == "random" and per_list is None:
        raise DataError("sampling='random' needs per_list (how many of the top-depth passages to draw)")
    if sampling == "hard" and (per_list is None or per_list <= depth):
        raise DataError(
            f"sampling='hard' needs per_list larger than depth ({depth}): the list holds the "
            f"teacher's top-{depth} plus per_list - depth first-stage hard negatives"
        )


def distillation_list(run: Run, cand: Candidates, *, depth: int = 100, per_list: int | None = None,
                      sampling: str = "top", labels: str = "rank", seed: int = 42, cut: str = "first-stage") -> dict:
    """One query's training list: the teacher's ranking cut to ``depth``, sampled, with a target per passage."""
    _check_teacher_passages(run, cand)
    ranked = cut_ranking(run, cand, depth, cut)  # [(docid, teacher score)], best first
    chosen = sample_ranks(run, cand, ranked, per_list, sampling, seed)  # [(rank or None, docid, score)]
    text_of = dict(zip(cand.docids, cand.texts))
    return {
        "query": cand.query,
        "docs": [text_of[docid] for _, docid, _ in chosen],
        "labels": [0.0 if rank is None else target(rank, depth, labels, score) for rank, _, score in chosen],
        "qid": cand.qid,
        "docids": [docid for _, docid, _ in chosen],
    }


def _check_teacher_passages(run: Run, cand: Candidates) -> None:
    """Every passage the teacher ranked for the query is one of its candidates (else a DataError)."""
    known = set(cand.docids)
    for docid in run[cand.qid]:
        if docid not in known:
            raise DataError(
                f"{run.where(cand.qid, docid)}: the teacher ranked passage {docid} for query "
                f"{cand.qid}, but it is not among that query's {len(cand)} candidates"
            )


def cut_ranking(run: Run, cand: Candidates, depth: int, cut: str = "first-stage") -> list[tuple[str, float]]:
    """The teacher's ranking of one query, ``[(docid, score)]`` best first, cut to ``depth``.

    ``cut="teacher"``: the teacher's own top ``depth``; ``"first-stage"`` (the paper's): the
    teacher's order of the first stage's top ``depth``.
    """
    ranking = list(run[cand.qid].items())
    too_deep = f"{run.where(cand.qid)}: depth {depth} is larger than"
    if cut == "teacher":
        if len(ranking) < depth:
            raise DataError(f"{too_deep} the teacher's list for query {cand.qid} ({len(ranking)} passages)")
        return ranking[:depth]
    if len(cand) < depth:
        raise DataError(f"{too_deep} the first-stage list of query {cand.qid} ({len(cand)} candidates)")
    first_stage_top = set(cand.docids[:depth])
    return [(docid, score) for docid, score in ranking if docid in first_stage_top]


def sample_ranks(run: Run, cand: Candidates, ranked: list[tuple[str, float]], per_list: int | None,
                 sampling: str = "top", seed: int = 42) -> list[tuple[int | None, str, float | None]]:
    """``[(teacher rank, docid, score)]``: the passages of ``ranked`` that a list keeps (``sampling``).

    ``top``: the first ``per_list``; ``random``: ``per_list`` drawn (a generator per query),
    in teacher order; ``hard``: all of them, then first-stage candidates below the cut as
    hard negatives (rank ``None``, target 0) up to ``per_list``.
    """
    top = [(rank, docid, score) for rank, (docid, score) in enumerate(ranked, start=1)]
    if sampling == "top":
        return top[: per_list or None]
    if sampling == "random":
        if len(top) < per_list:
            raise DataError(f"{run.where(cand.qid)}: query {cand.qid} keeps {len(top)} passages, fewer than per_list {per_list}")
        return [top[i] for i in sorted(_rng(seed, cand.qid).sample(range(len(top)), per_list))]
    kept = {docid for _, docid, _ in top}
    below = [d for d in cand.docids if d not in kept][: per_list - len(top)]
    if len(below) < per_list - len(top):
        raise DataError(
            f"{run.where(cand.qid)}: query {cand.qid} has {len(below)} candidates below the "
            f"kept top-{len(top)}, fewer than the {per_list - len(top)} hard negatives asked for"
        )
    return top + [(None, d, None) for d in below]


# --------------------------------------------------------------------------- relevance labels


def graded_lists(dataset_id: str, candidates: Sequence[Candidates], *, per_list: int | None = None, seed: int = 42):
    """The first-stage lists with their graded qrels as labels (unjudged passages: 0).

    ``per_list`` draws that many passages of each list at random (kept in first-stage
    order); None keeps the whole list. Queries without judgements are left out.
    """
    qrels = data.load_qrels(dataset_id)
    rows = []
    for cand in candidates:
        if cand.qid not in qrels:
            continue
        idx = list(range(len(cand)))
        if per_list is not None and per_list < len(cand):
            idx = sorted(_rng(seed, cand.qid).sample(idx, per_list))
        grades = qrels[cand.qid]
        rows.append(
            {
                "query": cand.query,
                "docs": [cand.texts[i] for i in idx],
                "labels": [float(grades.get(cand.docids[i], 0)) for i in idx],
                "qid": cand.qid,
                "docids": [cand.docids[i] for i in idx],
            }
        )
    if not rows:
        raise DataError(f"none of the {len(candidates)} candidate queries has judgements in {dataset_id}")
    return _to_dataset(rows)


def relevance_lists(
    dataset_id: str,
    candidates: Sequence[Candidates],
    *,
    negatives: int = 7,
    min_grade: int = 2,
    per_positive: bool = False,
    seed: int = 42,
):
    """Stage-1 lists: 1 judged-relevant passage + ``negatives`` non-relevant ones.

    The paper's ``single_relevant`` sampling (1 + 7 from the first-stage top-200). The
    positive is a candidate judged ``>= min_grade`` (2 is TREC DL's "relevant"; use 1 for
    MS MARCO's binary qrels), drawn at random, or one list per such positive with
    ``per_positive=True``. Negatives are drawn at random from the candidates judged 0 or
    unjudged (grades between 0 and ``min_grade`` are neither). Labels: ``[1, 0, ...]``.
    Queries without a relevant candidate are left out; a query with too few negatives is
    a :class:`DataError`.
    """
    if negatives < 1:
        raise DataError(f"negatives must be at least 1, got {negatives}")
    qrels = data.load_qrels(dataset_id)
    rows = []
    for cand in candidates:
        grades = qrels.get(cand.qid, {})
        positives = [i for i, d in enumerate(cand.docids) if grades.get(d, 0) >= min_grade]
        pool = [i for i, d in enumerate(cand.docids) if grades.get(d, 0) <= 0]
        if not positives:
            continue
        if len(pool) < negatives:
            raise DataError(
                f"query {cand.qid} of {dataset_id}: only {len(pool)} non-relevant candidates, "
                f"fewer than the {negatives} negatives asked for"
            )
        rng = _rng(seed, cand.qid)
        chosen = positives if per_positive else [rng.choice(positives)]
        for pos in chosen:
            idx = [pos] + rng.sample(pool, negatives)
            rows.append(
                {
                    "query": cand.query,
                    "docs": [cand.texts[i] for i in idx],
                    "labels": [1.0] + [0.0] * negatives,
                    "qid": cand.qid,
                    "docids": [cand.docids[i] for i in idx],
                }
            )
    if not rows:
        raise DataError(f"no candidate list of {dataset_id} holds a passage judged >= {min_grade}")
    return _to_dataset(rows)


class _FileStreamer:
    """The ``streamer`` interface (``.stream()``) that ir_datasets' encoding fix reads."""

    def __init__(self, path: Path):
        self.path = path

    def stream(self):
        return open(self.path, "rb")


def fix_msmarco_encoding(lines: Iterable[bytes] | Path) -> Iterable[str]:
    """MS MARCO's raw text with its mojibake repaired exactly as ``ir_datasets`` does.

    The raw MS MARCO files mix proper UTF-8 with UTF-8 that was decoded as latin-1 and
    encoded again (``donâ€™t``); ``ir_datasets`` repairs its msmarco-passage collection
    with ``FixEncoding`` (short runs of 0x80-0xFF characters re-read as UTF-8). This
    reuses that class, so texts match the ``ir_datasets`` passages byte for byte.
    """
    from ir_datasets.datasets.msmarco_passage import FixEncoding

    if isinstance(lines, (str, Path)):
        streamer = _FileStreamer(Path(lines))
    else:
        import io

        blob = b"".join(lines)
        streamer = type("_Bytes", (), {"stream": lambda self: io.BytesIO(blob)})()
    for line in FixEncoding(streamer):
        yield line.decode("utf-8")


def triples_lists(path: str | os.PathLike, *, limit: int | None = None):
    """MS MARCO training triples (``query \\t positive \\t negative``) as lists, labels [1, 0].

    The text is repaired with :func:`fix_msmarco_encoding`. Triples have no ids: ``qid``
    is ``line-N`` and ``docids`` are ``line-N-pos`` / ``line-N-neg``. A line without three
    tab-separated fields is a :class:`DataError` naming the file and line.
    """
    path = data.resolve_path(path)
    if not path.is_file():
        raise DataError(f"triples file not found: {path}")
    rows = []
    for n, line in enumerate(fix_msmarco_encoding(path), start=1):
        if limit is not None and len(rows) >= limit:
            break
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 3:
            raise DataError(f"{path} line {n}: expected 3 tab-separated fields 'query, positive, negative', got {len(parts)}")
        query, positive, negative = parts
        rows.append(
            {
                "query": query,
                "docs": [positive, negative],
                "labels": [1.0, 0.0],
                "qid": f"line-{n}",
                "docids": [f"line-{n}-pos", f"line-{n}-neg"],
            }
        )
    if not rows:
        raise DataError(f"{path}: no triples")
    return _to_dataset(rows)


# --------------------------------------------------------------------------- released data


def released_lists(
    parquet_path: str | os.PathLike,
    queries: str | dict[str, str] = "msmarco-passage/train/judged",
    *,
    docs_dataset_id: str = "msmarco-passage",
    max_queries: int | None = None,
    depth: int = 100,
    per_list: int | None = None,
    sampling: str = "top",
    labels: str = "rank",
    seed: int = 42,
    cut: str = "first-stage",
    first_stage: str | os.PathLike | None = None,
):
    """The released Rank-DistiLLM data (``webis/rank-distillm`` parquet) as training lists.

    ``parquet_path`` is any run spec of :func:`rank_distillm.data.read_run`: the released file
    (``irds:msmarco-passage/train/rank-distillm-rankzephyr``), a parquet file in its schema, or a
    TREC run of your own labelling job. ``queries`` is an
    ``ir_datasets`` id or a ``{qid: text}`` dict; passages come from ``docs_dataset_id``'s
    docs store. The files hold no first-stage ranks: ``first_stage`` (the released ColBERTv2
    run, ``irds:msmarco-passage/train/rank-distillm-colbert``) supplies them, needed for a
    first-stage ``cut`` shallower than the lists and for ``sampling="hard"``. Otherwise the
    lists are those of :func:`distillation_lists`.
    """
    run = read_released(parquet_path) if str(parquet_path).startswith("hf://") else data.read_run(parquet_path)
    qids = list(run)[:max_queries] if max_queries else list(run)
    order = None
    if first_stage is not None:
        from .released import top_lists

        wanted = set(qids)
        table = top_lists(first_stage)
        order = {q: d for q, d in zip(table.column("qid").to_pylist(), table.column("docids").to_pylist()) if q in wanted}
    elif sampling == "hard" or (cut == "first-stage" and any(len(run[q]) > depth for q in qids)):
        raise DataError(f"released lists: sampling={sampling!r}, cut={cut!r} at depth {depth} needs the first-stage "
                         "ranks, which the released files do not hold (give first_stage, the released ColBERTv2 run)")
    texts = data.load_queries(queries) if isinstance(queries, str) else dict(queries)
    store = data.docs_store(docs_dataset_id)
    candidates = []
    for qid in qids:
        if qid not in texts:
            raise DataError(f"{run.where(qid)}: query {qid} has no text in {queries if isinstance(queries, str) else 'the queries given'}")
        docids = list(run[qid]) if order is None else [d for d in order.get(qid, []) if d in run[qid]]
        if order is not None and len(docids) < len(run[qid]):
            raise DataError(f"{run.where(qid)}: query {qid} has passages that the first stage {first_stage} did not rank")
        passages = []
        for docid in docids:
            try:
                passages.append(store.get(docid).text)
            except KeyError:
                raise DataError(f"{run.where(qid, docid)}: passage {docid} is not in the docs store of {docs_dataset_id}") from None
        candidates.append(Candidates(qid=qid, query=texts[qid], docids=docids, texts=passages))
    return distillation_lists(run, candidates, depth=depth, per_list=per_list, sampling=sampling, labels=labels, seed=seed, cut=cut)


# --------------------------------------------------------------------------- saving and the CLI


def save_dataset(dataset, out: str | os.PathLike) -> Path:
    """``dataset.save_to_disk`` into a folder beside ``out``, then swapped in (:func:`outputs.replace_folder`).

    A kill at any moment leaves ``out`` as the complete old dataset or the complete new one.
    """
    from .outputs import replace_folder

    return replace_folder(out, lambda folder: dataset.save_to_disk(str(folder)))


def add_build_dataset_arguments(parser) -> None:
    from .cli_types import add_force_argument, positive_int

    parser.add_argument("--dataset", required=True, help="ir_datasets id of the queries (and qrels), e.g. msmarco-passage/trec-dl-2020/judged")
    parser.add_argument("--teacher", help="the teacher's run (a TREC run file or irds:ID); with --released, omit")
    parser.add_argument("--candidates", help="the first-stage run whose passages the teacher re-ranked")
    parser.add_argument("--released", help="a released Rank-DistiLLM parquet file (qid, docno, score) instead of --teacher/--candidates")
    parser.add_argument("--candidates-depth", type=positive_int, default=None, help="cut the first-stage lists to this depth (default: all)")
    parser.add_argument("--max-queries", type=positive_int, default=None, help="build lists for the first N queries only")
    parser.add_argument("--depth", type=positive_int, default=100, help="the teacher's top-k that is kept (default 100)")
    parser.add_argument("--per-list", type=positive_int, default=None, help="passages per list (default: the whole top-depth)")
    parser.add_argument("--sampling", choices=SAMPLINGS, default="top")
    parser.add_argument("--labels", choices=LABELS, default="rank")
    parser.add_argument("--cut", choices=CUTS, default="first-stage",
                        help="depth cuts the first stage's top-k (the paper's) or the teacher's own top-k")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", required=True, help="folder for the saved datasets.Dataset (replaced if it holds one)")
    add_force_argument(parser)


def build_dataset_command(args) -> int:
    from .outputs import DATASET_FOLDER, check_target

    inputs = [data.resolve_path(x) for x in (args.teacher, args.candidates, args.released)
              if x and not str(x).startswith(("irds:", "hf://", "parquet:", "github:"))]
    check_target(args.out, DATASET_FOLDER, force=args.force, inputs=inputs)
    options = dict(depth=args.depth, per_list=args.per_list, sampling=args.sampling, labels=args.labels, seed=args.seed,
                   cut=args.cut)
    if args.released:
        dataset = released_lists(args.released, args.dataset, max_queries=args.max_queries, **options)
    else:
        if not (args.teacher and args.candidates):
            raise DataError("build-dataset needs --teacher and --candidates (or --released)")
        candidates = data.load_candidates(args.dataset, args.candidates, depth=args.candidates_depth, max_queries=args.max_queries)
        dataset = distillation_lists(args.teacher, candidates, **options)
    out = save_dataset(dataset, args.out)
    info = summary(dataset)
    print(f"wrote {out}")
    print(
        f"{info['queries']} queries, {info['lists']} lists, passages per list "
        f"{info['passages_per_list_min']}-{info['passages_per_list_max']} (mean {info['passages_per_list_mean']}), "
        f"labels {info['label_min']:g}..{info['label_max']:g}"
    )
    return 0
