"""Data: where the data lives, TREC DL through ``ir_datasets``, TREC run files, candidates.

Everything reads the official ``ir_datasets`` ids (``msmarco-passage/trec-dl-2019/judged``,
``msmarco-passage/trec-dl-2020/judged``), so the same code runs online (``ir_datasets``
downloads) and offline (a pre-filled ``IR_DATASETS_HOME``, copied to a writable cache).

Where the offline data is found, in this order:

1. the ``RANK_DISTILLM_DATA`` environment variable;
2. a ``shared/data`` folder beside the repository (``../shared/data`` seen from the
   repository root), looked for above the working directory and above this package.

Run files are named by *run specs*: a path (``{data}`` expands to the data folder, e.g.
``{data}/runs/trec-dl-2019/bm25.run``; a ``.parquet`` file is read in the released
Rank-DistiLLM schema), ``irds:DATASET_ID`` for a dataset's official ``scoreddocs`` (the
first-stage run that ``ir_datasets`` downloads online; the released files are registered as
``msmarco-passage/train/rank-distillm-*``, :mod:`rank_distillm.released`), ``parquet:RUN``
(a TREC run read through the released files' parquet reader) or ``github:OWNER/REPO/COMMIT/PATH#BLOB``
(a run file at a pinned commit, checked against its git blob id).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

DATA_ENV = "RANK_DISTILLM_DATA"
CACHE_ENV = "RANK_DISTILLM_CACHE"

DL19 = "msmarco-passage/trec-dl-2019/judged"
DL20 = "msmarco-passage/trec-dl-2020/judged"

ONLINE_HELP = (
    "No offline data was found. Either point {env} at a copy of the project's data folder "
    "(it holds ir_datasets/, runs/ and teacher-logs/), or run online: ir_datasets then "
    "downloads queries, qrels and passages itself (https://ir-datasets.com/msmarco-passage.html), "
    "and run specs of the form 'irds:DATASET_ID' use the dataset's official first-stage run."
)


class DataError(ValueError):
    """Bad or missing input data; the message names the file, line or field."""


# --------------------------------------------------------------------------- locations


def _candidate_data_dirs() -> Iterable[Path]:
    here = Path(__file__).resolve()
    for start in (Path.cwd().resolve(), here):
        for parent in (start, *start.parents):
            yield parent.parent / "shared" / "data"


def data_dir(required: bool = True) -> Path | None:
    """The offline data folder, or ``None`` (``required=False``) when there is none."""
    env = os.environ.get(DATA_ENV)
    if env:
        path = Path(env).expanduser().resolve()
        if not path.is_dir():
            raise DataError(f"{DATA_ENV}={env!r} is not a folder")
        return path
    for path in _candidate_data_dirs():
        if (path / "ir_datasets").is_dir():
            return path.resolve()
    if required:
        raise DataError(ONLINE_HELP.format(env=DATA_ENV))
    return None


def cache_dir() -> Path:
    """A writable folder for the project's caches (``RANK_DISTILLM_CACHE`` or ``~/.cache``)."""
    path = Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "rank_distillm")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def setup_ir_datasets() -> Path | None:
    """Point ``IR_DATASETS_HOME`` at a writable copy of the offline ``ir_datasets`` folder.

    Idempotent. The copy is refreshed when the source files change (size or time stamp).
    Returns the home folder in use, or ``None`` when no offline data exists (online mode),
    in which case ``ir_datasets`` keeps its own default and downloads what it needs.
    A user's own ``IR_DATASETS_HOME`` is left alone.
    """
    if os.environ.get("IR_DATASETS_HOME") and not os.environ.get("_RANK_DISTILLM_IRDS"):
        return Path(os.environ["IR_DATASETS_HOME"])
    source = data_dir(required=False)
    if source is None:
        return None
    source = source / "ir_datasets"
    target = cache_dir() / "ir_datasets"
    stamp = target / ".source"
    signature = "\n".join(
        f"{p.relative_to(source)} {p.stat().st_size} {int(p.stat().st_mtime)}"
        for p in sorted(source.rglob("*"))
        if p.is_file()
    )
    if not (stamp.exists() and stamp.read_text() == signature):
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".ir_datasets-"))
        shutil.copytree(source, tmp, dirs_exist_ok=True)
        for p in (tmp, *tmp.rglob("*")):  # the source may be read-only; the copy must not be
            p.chmod(p.stat().st_mode | 0o200)
        (tmp / ".source").write_text(signature)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    os.environ["IR_DATASETS_HOME"] = str(target)
    os.environ["_RANK_DISTILLM_IRDS"] = "1"
    return target


def resolve_path(spec: str | os.PathLike) -> Path:
    """Expand ``{data}`` (the offline data folder) and ``~`` in a path."""
    text = str(spec)
    if "{data}" in text:
        text = text.replace("{data}", str(data_dir()))
    return Path(text).expanduser()


# --------------------------------------------------------------------------- ir_datasets


def load_dataset(dataset_id: str):
    """``ir_datasets.load`` after pointing it at the offline data (when there is any)."""
    setup_ir_datasets()
    import ir_datasets

    if dataset_id.startswith("msmarco-passage/train/rank-distillm"):
        from .released import register

        register()
    try:
        return ir_datasets.load(dataset_id)
    except KeyError as error:
        raise DataError(f"unknown ir_datasets id {dataset_id!r}") from error


def load_queries(dataset_id: str) -> dict[str, str]:
    """``{qid: query text}`` of a dataset, in the dataset's order."""
    return {q.query_id: q.text for q in load_dataset(dataset_id).queries_iter()}


def load_qrels(dataset_id: str) -> dict[str, dict[str, int]]:
    """``{qid: {docid: relevance}}`` of a dataset (the format ``ir_measures`` accepts)."""
    qrels: dict[str, dict[str, int]] = {}
    for q in load_dataset(dataset_id).qrels_iter():
        qrels.setdefault(q.query_id, {})[q.doc_id] = q.relevance
    return qrels


def docs_store(dataset_id: str = "msmarco-passage"):
    """The passage store (``docs_store().get(pid).text``) of a dataset."""
    return load_dataset(dataset_id).docs_store()


def passage_texts(docids: Iterable[str], dataset_id: str = "msmarco-passage") -> dict[str, str]:
    """``{docid: text}`` for the given passages; a missing passage is a :class:`DataError`."""
    store = docs_store(dataset_id)
    texts = {}
    for docid in dict.fromkeys(docids):
        try:
            texts[docid] = store.get(docid).text
        except KeyError:
            raise DataError(f"passage {docid} is not in the docs store of {dataset_id}") from None
    return texts


# --------------------------------------------------------------------------- run files


class Run(dict):
    """A ranking: ``{qid: {docid: score}}``, each inner dict in rank order.

    It is a plain dict (``ir_measures`` takes it as it is) that also remembers where
    it came from: ``source`` (the file) and ``line_of[(qid, docid)]`` (its line), so
    that later errors can name the line that caused them.
    """

    def __init__(self, *args, source: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.source = source
        self.line_of: dict[tuple[str, str], int] = {}

    def where(self, qid: str, docid: str | None = None) -> str:
        """``'FILE line N'`` for a query (its first line) or a passage of it."""
        if self.source is None:
            return "<in-memory run>"
        line = self.line_of.get((qid, docid)) if docid is not None else None
        if line is None:
            lines = [n for (q, _), n in self.line_of.items() if q == qid]
            line = min(lines) if lines else None
        return f"{self.source}" + (f" line {line}" if line is not None else "")

    def ranking(self, qid: str) -> list[str]:
        """The passage ids of one query, best first."""
        return list(self[qid])

    def cut(self, depth: int) -> "Run":
        """The top ``depth`` of every query."""
        out = Run(source=self.source)
        out.line_of = self.line_of
        for qid, docs in self.items():
            out[qid] = dict(list(docs.items())[:depth])
        return out


def read_run(spec: str | os.PathLike) -> Run:
    """Read a TREC run file (``qid Q0 docid rank score tag``) or ``irds:DATASET_ID``.

    Each query's passages are ordered by score, highest first; ties keep the order of the
    file's rank column. A malformed line, a non-numeric rank or score, or a passage listed
    twice for one query is a :class:`DataError` naming the file and line. Released
    Rank-DistiLLM files (``.parquet``, ``parquet:RUN``) are read by :func:`rank_distillm.released.read_released`.
    """
    if str(spec).startswith("parquet:") or str(spec).endswith(".parquet"):
        from .released import read_released

        return read_released(spec)
    if str(spec).startswith("github:"):  # a file at a pinned commit, checked against its git blob id
        from .released import fetch_github

        spec = fetch_github(str(spec))
    if str(spec).startswith("irds:"):
        return _read_scoreddocs(str(spec)[len("irds:"):])
    path = resolve_path(spec)
    if not path.is_file():
        raise DataError(f"run file not found: {path}")
    rows: dict[str, list[tuple[float, int, str]]] = {}
    run = Run(source=str(path))
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 6:
                raise DataError(
                    f"{path} line {n}: expected 6 fields 'qid Q0 docid rank score tag', "
                    f"got {len(parts)}: {line.strip()!r}"
                )
            qid, _, docid, rank, score, _ = parts
            try:
                rank_value, score_value = int(rank), float(score)
            except ValueError:
                raise DataError(
                    f"{path} line {n}: rank {rank!r} and score {score!r} must be numbers"
                ) from None
            if (qid, docid) in run.line_of:
                raise DataError(
                    f"{path} line {n}: passage {docid} listed twice for query {qid} "
                    f"(first on line {run.line_of[(qid, docid)]})"
                )
            run.line_of[(qid, docid)] = n
            rows.setdefault(qid, []).append((score_value, rank_value, docid))
    if not rows:
        raise DataError(f"{path}: the run file is empty")
    for qid, items in rows.items():
        items.sort(key=lambda t: (-t[0], t[1]))
        run[qid] = {docid: score for score, _, docid in items}
    return run


def _read_scoreddocs(dataset_id: str) -> Run:
    run = Run(source=f"irds:{dataset_id}")
    rows: dict[str, list[tuple[float, str]]] = {}
    for sd in load_dataset(dataset_id).scoreddocs_iter():
        rows.setdefault(sd.query_id, []).append((sd.score, sd.doc_id))
    for qid, items in rows.items():
        items.sort(key=lambda t: -t[0])
        run[qid] = {docid: score for score, docid in items}
    return run


def write_run(run: dict[str, dict[str, float]], path: str | os.PathLike, tag: str = "rank_distillm") -> Path:
    """Write a run in TREC format, atomically (a temporary file renamed into place).

    Passages are written in the order of each inner dict (rank 1 first) with their scores.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for qid, docs in run.items():
                for rank, (docid, score) in enumerate(docs.items(), start=1):
                    f.write(f"{qid} Q0 {docid} {rank} {score:.6f} {tag}\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def run_from_rankings(rankings: dict[str, list[str]]) -> Run:
    """A run whose scores are ``len - rank + 1`` (1-based ranks), from ordered passage ids."""
    return Run({qid: {d: float(len(docs) - i) for i, d in enumerate(docs)} for qid, docs in rankings.items()})


# --------------------------------------------------------------------------- candidates


@dataclass
class Candidates:
    """One query's first-stage candidates with their texts, best first."""

    qid: str
    query: str
    docids: list[str]
    texts: list[str]
    scores: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.docids)


def load_candidates(
    dataset_id: str,
    run: Run | str | os.PathLike,
    depth: int | None = 100,
    max_queries: int | None = None,
    docs_dataset_id: str | None = None,
) -> list[Candidates]:
    """Turn a first-stage run into candidate lists with query and passage texts.

    ``depth`` cuts each list to its top-k; ``max_queries`` keeps the first queries of
    the dataset (in the dataset's order) that the run holds. A run's query that the
    dataset lacks, or a passage missing from the docs store, is a :class:`DataError`
    naming the run file and line.
    """
    if not isinstance(run, Run):
        run = read_run(run)
    queries = load_queries(dataset_id)
    for qid in run:
        if qid not in queries:
            raise DataError(f"{run.where(qid)}: query {qid} is not in dataset {dataset_id}")
    qids = [q for q in queries if q in run]
    if max_queries is not None:
        qids = qids[:max_queries]
    store = docs_store(docs_dataset_id or dataset_id)
    out = []
    for qid in qids:
        items = list(run[qid].items())[: depth or None]
        texts = []
        for docid, _ in items:
            try:
                texts.append(store.get(docid).text)
            except KeyError:
                raise DataError(
                    f"{run.where(qid, docid)}: passage {docid} (query {qid}) is not in the "
                    f"docs store of {docs_dataset_id or dataset_id}"
                ) from None
        out.append(
            Candidates(
                qid=qid,
                query=queries[qid],
                docids=[d for d, _ in items],
                texts=texts,
                scores=[s for _, s in items],
            )
        )
    return out
