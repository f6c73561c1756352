"""Data: where the data lives, TREC DL through ``ir_datasets``, TREC run files, candidates.

Everything reads the official ``ir_datasets`` ids (``msmarco-passage/trec-dl-2019/judged``,
``msmarco-passage/trec-dl-2020/judged``), so the same code runs online (``ir_datasets``
downloads) and offline (a pre-filled ``IR_DATASETS_HOME``, copied to a writable cache).

The data folder is found by :func:`rank_distillm.paths.data_dir` (``RANK_DISTILLM_DATA``, a
``shared/data`` beside the repository, or ``$RANK_DISTILLM_CACHE/data``, built from the data's
public sources on first use by :func:`rank_distillm.sources.build_on_first_use`, which the
package registers); ``data_dir``, ``cache_dir``, ``resolve_path``, ``input_file`` and
:class:`~rank_distillm.errors.DataError` are re-exported here from the low modules
:mod:`rank_distillm.paths` and :mod:`rank_distillm.errors`.

Run files are named by *run specs*: a path (``{data}`` expands to the data folder, e.g.
``{data}/runs/trec-dl-2019/bm25.run``; a ``.parquet`` file is read in the released
Rank-DistiLLM schema), ``irds:DATASET_ID`` for a dataset's official ``scoreddocs`` (the
first-stage run that ``ir_datasets`` downloads online; the released files are registered as
``msmarco-passage/train/rank-distillm-*``, :mod:`rank_distillm.released`), ``parquet:RUN``
(a TREC run read through the released files' parquet reader) or ``github:OWNER/REPO/COMMIT/PATH#BLOB``
(a run file at a pinned commit, checked against its git blob id).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from .errors import DataError  # noqa: F401 - re-exported: data.DataError
from .paths import (  # noqa: F401 - re-exported: the lookup lives below this module
    CACHE_ENV,
    DATA_ENV,
    before_importing_ir_datasets,
    cache_dir,
    data_dir,
    input_file,
    ir_datasets_copy,
    resolve_path,
)
from .paths import file_kind as _file_kind  # noqa: F401 - the earlier private name

DL19 = "msmarco-passage/trec-dl-2019/judged"
DL20 = "msmarco-passage/trec-dl-2020/judged"

# nDCG@10 of the data folder's runs over all judged queries, as its release states them
# (data/README.md, "Reference figures"; ir_measures over the queries of each run). Chapter 01
# checks that its evaluation gives them; the tests check them on their own.
REFERENCE_NDCG10 = {
    "runs/trec-dl-2019/bm25.run": 0.5058,
    "runs/trec-dl-2019/rankvicuna-7b.run": 0.6682,
    "runs/trec-dl-2019/rankgpt-gpt-3.5-turbo.run": 0.6938,
    "runs/trec-dl-2020/bm25.run": 0.4796,
    "runs/trec-dl-2020/rankvicuna-7b.run": 0.6611,
    "runs/trec-dl-2020/rankvicuna-7b-second-run.run": 0.6549,
    "runs/trec-dl-2020/rankgpt-gpt-3.5-turbo.run": 0.6385,
}

# --------------------------------------------------------------------------- locations


def setup_ir_datasets() -> Path | None:
    """Point ``IR_DATASETS_HOME`` at a writable copy of the offline ``ir_datasets`` folder.

    Idempotent. The copy is refreshed when the source files change (size or time stamp).
    The data folder is found, or built on first use, by :func:`data_dir`. Returns the home
    folder in use, or ``None`` when there is no data folder and the download is off or failed
    (online mode), in which case ``ir_datasets`` keeps its own default and downloads what it needs.
    A user's own ``IR_DATASETS_HOME`` is left alone.
    """
    if os.environ.get("IR_DATASETS_HOME") and not os.environ.get("_RANK_DISTILLM_IRDS"):
        return Path(os.environ["IR_DATASETS_HOME"])
    source = data_dir(required=False)
    if source is None:
        return None
    source = source / "ir_datasets"
    target = ir_datasets_copy()
    stamp = target / ".source"
    signature = "\n".join(
        f"{p.relative_to(source)} {p.stat().st_size} {int(p.stat().st_mtime)}"
        for p in sorted(source.rglob("*"))
        if p.is_file()
    )
    if not (stamp.exists() and stamp.read_text() == signature):
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".ir_datasets-"))
        shutil.copytree(source, tmp, dirs_exist_ok=True)
        umask = os.umask(0)
        os.umask(umask)
        for p in (tmp, *tmp.rglob("*")):  # the user's umask, and writable (the source may be read-only)
            p.chmod(((0o777 if p.is_dir() else 0o666) & ~umask) | 0o200 | (0o100 if p.is_dir() else 0))
        (tmp / ".source").write_text(signature)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    os.environ["IR_DATASETS_HOME"] = str(target)
    os.environ["_RANK_DISTILLM_IRDS"] = "1"
    return target


def reference_ndcg10(spec: str | os.PathLike) -> float | None:
    """The data release's nDCG@10 of a run spec of the data folder (``{data}/runs/...``), else ``None``."""
    text = str(spec).replace("\\", "/")
    return REFERENCE_NDCG10.get(text.split("{data}/", 1)[1]) if "{data}/" in text else None


def available_runs(specs: dict[str, str]) -> dict[str, str]:
    """``specs`` (``{name: run spec}``) less those in the data folder (``{data}/...``) when there is none.

    With no data folder and no download (offline), the stored runs cannot be read; runs
    from ``irds:`` ids or other paths are kept.
    """
    if data_dir(required=False) is not None:
        return dict(specs)
    return {name: spec for name, spec in specs.items() if "{data}" not in str(spec)}


# --------------------------------------------------------------------------- the released files, from above

# The released Rank-DistiLLM files (rank_distillm.released) are read into this module's Run and
# through its ir_datasets access, so `released` sits above `data`. What `data` reaches of it, the
# readers of ``parquet:``/``.parquet`` and ``github:`` run specs and the registration of the
# released ir_datasets ids, is handed down once by the package's ``__init__``
# (:func:`use_released`): nothing here imports upward.
_RELEASED: dict[str, Callable] = {}


def use_released(*, read_released: Callable, fetch_github: Callable, register: Callable) -> None:
    """Hand down the released files' readers (``parquet:`` and ``github:`` specs, ``irds:...rank-distillm-*`` ids)."""
    _RELEASED.update(read_released=read_released, fetch_github=fetch_github, register=register)


def _released(name: str) -> Callable:
    if name not in _RELEASED:
        raise RuntimeError("the released files' readers are not registered: import rank_distillm (its __init__ does)")
    return _RELEASED[name]


# --------------------------------------------------------------------------- ir_datasets


def irds_dataset(dataset_id: str):
    """``ir_datasets.load`` after pointing it at the offline data (when there is any)."""
    setup_ir_datasets()
    import ir_datasets

    if dataset_id.startswith("msmarco-passage/train/rank-distillm"):
        _released("register")()
    try:
        return ir_datasets.load(dataset_id)
    except KeyError as error:
        raise DataError(f"unknown ir_datasets id {dataset_id!r}") from error


def load_queries(dataset_id: str) -> dict[str, str]:
    """``{qid: query text}`` of a dataset, in the dataset's order."""
    dataset = irds_dataset(dataset_id)
    if not dataset.has_queries():
        raise DataError(f"dataset {dataset_id!r} has no queries: give one that has (e.g. {DL19})")
    return {q.query_id: q.text for q in dataset.queries_iter()}


def _first_bad_qrels_line(path: Path) -> str:
    """``'line N: what'`` of the first line of a TREC qrels file that is not ``qid 0 docid grade``."""
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, start=1):
            cols = line.split()
            if not cols:
                continue
            if len(cols) != 4:
                return f"line {n}: expected 4 fields 'qid 0 docid grade', got {len(cols)}: {line.strip()[:120]!r}"
            try:
                int(cols[3])
            except ValueError:
                return f"line {n}: the grade {cols[3]!r} is not a whole number"
    return "a line that ir_datasets cannot read"


def load_qrels(dataset_id: str) -> dict[str, dict[str, int]]:
    """``{qid: {docid: relevance}}`` of a dataset (``ir_datasets``' ``qrels_dict()``, the format ``ir_measures`` accepts).

    A dataset without judgements, or a qrels file with a malformed line, is a
    :class:`DataError` naming the dataset, or the file and line.
    """
    dataset = irds_dataset(dataset_id)
    if not dataset.has_qrels():
        raise DataError(f"dataset {dataset_id!r} has no relevance judgements (qrels): give a judged dataset "
                        f"(e.g. {DL19} or {DL20})")
    try:
        return dataset.qrels_dict()
    except (RuntimeError, ValueError, IndexError) as error:
        try:
            path = Path(dataset.qrels_handler().qrels_path())
        except Exception:  # noqa: BLE001 - a handler without a file: name the dataset
            raise DataError(f"the qrels of {dataset_id!r} cannot be read: {error}") from None
        raise DataError(f"{path} {_first_bad_qrels_line(path)} (the qrels of {dataset_id})") from None


def qrels_summary(dataset_id: str) -> dict:
    """How a dataset is judged: ``queries`` (judged), ``judgements``, ``per query`` and the count of each ``grade g``."""
    qrels = load_qrels(dataset_id)
    grades = [g for docs in qrels.values() for g in docs.values()]
    return {"queries": len(qrels), "judgements": len(grades), "per query": round(len(grades) / len(qrels), 1),
            **{f"grade {g}": grades.count(g) for g in sorted(set(grades))}}


def docs_store(dataset_id: str = "msmarco-passage"):
    """The passage store (``docs_store().get(pid).text``) of a dataset."""
    return irds_dataset(dataset_id).docs_store()


def passage_texts(docids: Iterable[str], dataset_id: str = "msmarco-passage", describe=None) -> dict[str, str]:
    """``{docid: text}`` for the given passages, in one ``docs_store().get_many`` call.

    A passage the store lacks is a :class:`DataError`; ``describe(docid)`` names it in the
    message, e.g. with the run file and line it came from (default ``passage DOCID``).
    """
    docids = list(dict.fromkeys(docids))
    texts = docs_store(dataset_id).get_many(docids, field="text")
    missing = [d for d in docids if d not in texts]
    if missing:
        name = describe(missing[0]) if describe else f"passage {missing[0]}"
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(f"{name}{more} is not in the docs store of {dataset_id}")
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


def as_run(run: Run | str | os.PathLike) -> Run:
    """``run`` itself when it is a :class:`Run` already, else :func:`read_run` of it (a file or spec)."""
    return run if isinstance(run, Run) else read_run(run)


def read_run(spec: str | os.PathLike) -> Run:
    """Read a TREC run file (``qid Q0 docid rank score tag``) or ``irds:DATASET_ID``.

    Each query's passages are ordered by score, highest first; ties keep the order of the
    file's rank column. The file is UTF-8 (a byte-order mark at its start is skipped, not
    read as part of the first query id). A malformed line, text that is not UTF-8, a
    non-numeric rank, a score that is not a finite number, or a passage listed twice for
    one query is a :class:`DataError` naming the file and line. Released Rank-DistiLLM files
    (``.parquet``, ``parquet:RUN``) are read by :func:`rank_distillm.released.read_released`.
    """
    if str(spec).startswith("parquet:") or str(spec).endswith(".parquet"):
        return _released("read_released")(spec)
    if str(spec).startswith("github:"):  # a file at a pinned commit, checked against its git blob id
        spec = _released("fetch_github")(str(spec))
    if str(spec).startswith("irds:"):
        return _read_scoreddocs(str(spec)[len("irds:"):])
    path = input_file(resolve_path(spec), "run file")
    rows: dict[str, list[tuple[float, int, str]]] = {}
    run = Run(source=str(path))
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8-sig" if n == 1 else "utf-8")
            except UnicodeDecodeError as error:
                raise DataError(f"{path} line {n}: not UTF-8 text (byte {raw[error.start]:#04x} at column "
                                f"{error.start + 1}); is this a run file?") from None
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 6:
                raise DataError(
                    f"{path} line {n}: expected 6 fields 'qid Q0 docid rank score tag', "
                    f"got {len(parts)}: {line.strip()[:200]!r}"
                )
            qid, _, docid, rank, score, _ = parts
            try:
                rank_value, score_value = int(rank), float(score)
            except ValueError:
                raise DataError(
                    f"{path} line {n}: rank {rank!r} and score {score!r} must be numbers"
                ) from None
            if not math.isfinite(score_value):
                raise DataError(f"{path} line {n}: score {score!r} is not a finite number")
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
    for sd in irds_dataset(dataset_id).scoreddocs_iter():
        rows.setdefault(sd.query_id, []).append((sd.score, sd.doc_id))
    for qid, items in rows.items():
        items.sort(key=lambda t: -t[0])
        run[qid] = {docid: score for score, docid in items}
    return run


def trec_field_problem(value) -> str | None:
    """Why ``value`` cannot be one field of a TREC line (None: it can): empty, or holding a space, tab,
    newline or other whitespace or control character (each would split or end the line)."""
    text = str(value)
    if not text:
        return "is empty"
    bad = next((c for c in text if c.isspace() or ord(c) < 32 or c == "\x7f" or c == "\ufeff"), None)
    return None if bad is None else f"holds {bad!r}, which would split the TREC line"


def run_tag(text: str, default: str = "rank_distillm") -> str:
    """A run tag made from ``text`` (a model's name...): each run of whitespace or control characters as ``_``."""
    tag = "_".join(part for part in re.split(r"[\s\x00-\x1f\x7f\ufeff]+", str(text)) if part)
    return tag or default


def write_run(run: dict[str, dict[str, float]], path: str | os.PathLike, tag: str = "rank_distillm") -> Path:
    """Write a run in TREC format, atomically (:func:`rank_distillm.outputs.atomic_file`).

    Passages are written in the order of each inner dict (rank 1 first) with their scores.
    Every field must be one TREC field (:func:`trec_field_problem`), and every score a finite
    number, so that :func:`read_run` reads the file back: else a :class:`DataError` names the
    query and field, before anything is written.
    """
    from .outputs import atomic_file

    problem = trec_field_problem(tag)
    if problem:
        raise DataError(f"run tag {tag!r} {problem}: give a tag without spaces or control characters")
    for qid, docs in run.items():
        problem = trec_field_problem(qid)
        if problem:
            raise DataError(f"query id {qid!r} {problem}; it cannot be written to {path}")
        for docid, score in docs.items():
            problem = trec_field_problem(docid)
            if problem:
                raise DataError(f"passage id {docid!r} of query {qid} {problem}; it cannot be written to {path}")
            if not math.isfinite(score):
                raise DataError(f"passage {docid} of query {qid}: score {score} is not a finite number; "
                                f"it cannot be written to {path}")
    path = Path(path)
    with atomic_file(path) as f:
        for qid, docs in run.items():
            for rank, (docid, score) in enumerate(docs.items(), start=1):
                f.write(f"{qid} Q0 {docid} {rank} {score:.6f} {tag}\n")
    return path


def stated_order(run: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """``run`` with each query's scores replaced by ``n, n-1, ..., 1`` in the order the run states.

    The order the run states, our tie rule: by score, highest first, and passages of equal
    score in the order given (a file's rank column, as :func:`read_run` orders them; a
    dict's insertion order). ``ir_measures`` (like ``trec_eval``, which breaks ties by docid)
    sorts by score alone, so an evaluation that must see exactly the stated order passes it
    this: distinct scores, the same order.
    """
    out = {}
    for qid, docs in run.items():
        ordered = sorted(docs, key=lambda d: -docs[d])  # stable: ties keep their order
        out[qid] = {d: float(len(ordered) - i) for i, d in enumerate(ordered)}
    return out


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
    cut = {qid: list(run[qid].items())[: depth or None] for qid in qids}
    owner = {docid: qid for qid, items in reversed(cut.items()) for docid, _ in items}
    texts = passage_texts((d for items in cut.values() for d, _ in items), docs_dataset_id or dataset_id,
                          describe=lambda d: f"{run.where(owner[d], d)}: passage {d} (query {owner[d]})")
    return [
        Candidates(qid=qid, query=queries[qid], docids=[d for d, _ in items], texts=[texts[d] for d, _ in items],
                   scores=[s for _, s in items])
        for qid, items in cut.items()
    ]
