"""The released Rank-DistiLLM files: parquet runs (``qid, docno, score``), as ``ir_datasets`` ids.

The paper's data lives in the ``webis/rank-distillm`` dataset on the Hugging Face hub. Its
training code (lightning-ir) registers the files as ``ir_datasets`` datasets whose
``scoreddocs`` are the parquet file, downloaded on first use and checked against its md5
(``lightning_ir/data/external_datasets/rank_distillm.py`` in webis-de/lightning-ir at
98cb3fd; the configs of webis-de/rank-distillm at 07105cf name them in
``run_path_or_id``). :func:`register` does the same here, so a profile names them as run
specs of :func:`rank_distillm.data.read_run`:

* ``irds:msmarco-passage/train/rank-distillm-rankzephyr``: RankZephyr's ranking of the
  ColBERTv2 top-100 of 10,000 judged MS MARCO training queries (stage 2);
* ``irds:msmarco-passage/train/rank-distillm-colbert``: the ColBERTv2 top-500 of every judged
  training query (stage 1 samples its negatives from the top-200).

Docs are ``msmarco-passage``'s, queries and qrels ``msmarco-passage/train``'s, as in
lightning-ir. The paper's evaluation runs (BM25 and ColBERTv2 over TREC DL 2019 and 2020,
``data/`` of webis-de/rank-distillm, read by its ``configs/re-rank.yaml``) are run specs
``github:OWNER/REPO/COMMIT/PATH#BLOB`` (:func:`fetch_github`): downloaded once at a pinned
commit and checked against their git blob id. Offline, ``parquet:RUN`` (a TREC run written once to the released schema in
the cache, :func:`as_released_file`) stands in for a released file and goes through the same
reader; the ``gpu-mini`` profile trains that way.

Where it sits: above ``data`` (it reads into ``data``'s ``Run``, with its TREC reader and its
``ir_datasets`` access). ``data.read_run`` and ``data.irds_dataset`` reach :func:`read_released`,
:func:`fetch_github` and :func:`register` through the readers the package's ``__init__`` hands
down (:func:`rank_distillm.data.use_released`).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .data import Run, irds_dataset, read_run
from .errors import DataError
from .paths import cache_dir, input_file, resolve_path

BASE_URL = "https://huggingface.co/datasets/webis/rank-distillm/resolve/main"
# id suffix: (file name, md5), as registered by lightning-ir
FILES = {
    "rank-distillm-rankzephyr": ("__rankzephyr-colbert-10000-sampled-100__msmarco-passage-train-judged.parquet",
                                 "38f69a3c8a5ed21c639e882a6c2eff7c"),
    "rank-distillm-colbert": ("__colbert__msmarco-passage-train-judged.parquet", "1e927d52af085516bf5a3de2865809d5"),
}
PREFIX = "msmarco-passage/train/"
RANKZEPHYR = PREFIX + "rank-distillm-rankzephyr"
COLBERT = PREFIX + "rank-distillm-colbert"
# The earlier name of the stage-2 file (still accepted by read_released)
RELEASED_URL = f"hf://datasets/webis/rank-distillm/{FILES['rank-distillm-rankzephyr'][0]}"
COLUMNS = ("qid", "docno", "score")


def _scoreddocs_class():
    from ir_datasets.formats import BaseScoredDocs, GenericScoredDoc

    class ReleasedScoredDocs(BaseScoredDocs):
        """``scoreddocs`` read from a released parquet file (a ``Cache``: downloaded, md5-checked)."""

        def __init__(self, cache):
            self._cache = cache

        def scoreddocs_path(self):
            return self._cache.path()

        def scoreddocs_cls(self):
            return GenericScoredDoc

        def scoreddocs_iter(self):
            table = read_table(self._cache.path())
            for qid, docno, score in zip(*(table.column(c).to_pylist() for c in COLUMNS)):
                yield GenericScoredDoc(str(qid), str(docno), float(score))

    return ReleasedScoredDocs


def register() -> None:
    """Register the released files as ``ir_datasets`` ids (idempotent; nothing is downloaded yet).

    The download happens when a file is first read, into ``IR_DATASETS_HOME`` under
    ``msmarco-passage/train/NAME.parquet``, and ``ir_datasets`` checks the md5 of what it
    downloads.
    """
    import ir_datasets
    from ir_datasets.datasets.base import Dataset
    from ir_datasets.util import Cache, DownloadConfig

    scored = _scoreddocs_class()
    for name, (file_name, md5) in FILES.items():
        dataset_id = PREFIX + name
        if dataset_id in ir_datasets.registry._registered:
            continue
        dlc = DownloadConfig.context("msmarco-passage", ir_datasets.util.home_path() / "msmarco-passage")
        dlc.contents()[f"train/{name}"] = {"url": f"{BASE_URL}/{file_name}", "expected_md5": md5,
                                           "cache_path": f"train/{name}.parquet"}
        cache = Cache(dlc[f"train/{name}"], ir_datasets.util.home_path() / "msmarco-passage" / "train" / f"{name}.parquet")
        base = ir_datasets.load("msmarco-passage/train")
        ir_datasets.registry.register(dataset_id, Dataset(base.docs_handler(), base.queries_handler(),
                                                          base.qrels_handler(), scored(cache)))


# --------------------------------------------------------------------------- reading and writing


def read_table(path: str | os.PathLike):
    """A released parquet file as a ``pyarrow.Table`` with (large) string ``qid``/``docno`` and float ``score``.

    Other columns (e.g. ``rank``) are dropped; a missing column is a :class:`DataError` naming the file.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = input_file(Path(path), "released data file")
    try:
        names = pq.read_schema(path).names
    except (pa.ArrowException, OSError) as error:
        raise DataError(f"{path}: not a parquet file ({' '.join(str(error).split())[:200]})") from None
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} (has {', '.join(names)})")
    try:
        table = pq.read_table(path, columns=list(COLUMNS))
    except (pa.ArrowException, OSError) as error:
        raise DataError(f"{path}: the parquet file cannot be read ({' '.join(str(error).split())[:200]})") from None
    # large strings: the ColBERTv2 run's ids are more than the 2 GB a plain string array may hold
    return table.cast(pa.schema([("qid", pa.large_string()), ("docno", pa.large_string()), ("score", pa.float64())]))


def write_released(run: dict[str, dict[str, float]], path: str | os.PathLike) -> Path:
    """Write a run in the released schema (parquet ``qid, docno, score``; strings and float64), atomically."""
    import tempfile

    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [(qid, docno, float(score)) for qid, docs in run.items() for docno, score in docs.items()]
    table = pa.table({"qid": pa.array([r[0] for r in rows], pa.string()),
                      "docno": pa.array([r[1] for r in rows], pa.string()),
                      "score": pa.array([r[2] for r in rows], pa.float64())})
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def as_released_file(run_spec: str | os.PathLike) -> Path:
    """A TREC run written once in the released schema, in the cache (keyed by the file's path, size and time).

    What ``parquet:RUN`` run specs read: offline stand-ins for the released files that take
    the released files' reader.
    """
    source = resolve_path(run_spec)
    if not source.is_file():
        raise DataError(f"parquet:{run_spec}: run file not found: {source}")
    stat = source.stat()
    key = hashlib.sha1(f"{source.resolve()}|{stat.st_size}|{int(stat.st_mtime)}".encode()).hexdigest()[:12]
    target = cache_dir() / "released" / f"__{source.stem}-{key}__.parquet"
    if not target.is_file():
        write_released(read_run(source), target)
    return target


GITHUB_RAW_ENV = "RANK_DISTILLM_GITHUB_RAW"  # another base for raw files laid out OWNER/REPO/COMMIT/PATH (a mirror)


def git_blob_id(content: bytes) -> str:
    """The id git gives a file's content: sha1 of ``b"blob <size>\\0" + content``."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


GITHUB_MAX_BYTES = 256 * 2**20  # no run file of a spec is larger; a body beyond this is refused
_NAME_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def _hex40(text: str) -> bool:
    return len(text) == 40 and all(c in "0123456789abcdef" for c in text.lower())


def github_target(spec: str) -> tuple[Path, str, str]:
    """``(file in the cache, OWNER/REPO/COMMIT/PATH, blob id)`` of a ``github:`` spec, or a DataError.

    The spec is a security boundary (a shared profile may hold one): OWNER and REPO are
    GitHub names, COMMIT and BLOB 40 hex digits, PATH relative segments without ``.``,
    ``..``, empty parts, backslashes or control characters, and the resolved file must lie
    under ``$RANK_DISTILLM_CACHE/github``.
    """
    body, hash_sign, blob = spec[len("github:"):].partition("#")
    parts = body.split("/")
    form = f"run spec {spec!r}: expected github:OWNER/REPO/COMMIT/PATH#BLOB"
    if len(parts) < 4 or not hash_sign:
        raise DataError(form)
    owner, repo, commit, path = parts[0], parts[1], parts[2], parts[3:]
    for label, name in (("OWNER", owner), ("REPO", repo)):
        if not name or not set(name) <= _NAME_OK or name in (".", ".."):
            raise DataError(f"{form}; {label} {name!r} is not a GitHub name")
    if not _hex40(commit):
        raise DataError(f"{form}; COMMIT {commit!r} must be a full commit id (40 hex digits)")
    if not _hex40(blob):
        raise DataError(f"{form}; BLOB {blob!r} must be a git blob id (40 hex digits, git ls-tree)")
    for segment in path:
        if segment in ("", ".", "..") or "\\" in segment or any(ord(c) < 32 or c == "\x7f" for c in segment):
            raise DataError(f"{form}; PATH segment {segment!r} is not allowed (no empty, '.' or '..' parts, "
                            f"no backslashes or control characters)")
    root = (cache_dir() / "github").resolve()
    target = (root / body).resolve()
    if root not in target.parents:
        raise DataError(f"run spec {spec!r}: the file would lie outside the cache ({root}); refused")
    return target, body, blob.lower()


def _blob_of_file(path: Path) -> str:
    digest = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_github(spec: str) -> Path:
    """``github:OWNER/REPO/COMMIT/PATH#BLOB``: the file at that commit, downloaded once into the cache.

    The spec is checked first (:func:`github_target`: the file stays under the cache). A
    cached copy is used only when its git blob id is ``BLOB`` (what ``git ls-tree`` lists);
    else it is fetched again, through the bounded downloader
    (:func:`rank_distillm.downloads.fetch_to`: timeout, deadline, at most
    :data:`GITHUB_MAX_BYTES`), and kept only when its blob id matches, else nothing is kept
    and a :class:`DataError` names the file. ``RANK_DISTILLM_OFFLINE=1`` forbids the fetch.
    The base URL is ``https://raw.githubusercontent.com`` or ``$RANK_DISTILLM_GITHUB_RAW``
    (a mirror, ``file://`` too).
    """
    from .downloads import ChecksumMismatch, download_forbidden, fetch_to

    target, body, blob = github_target(spec)
    if target.is_file() and _blob_of_file(target) == blob:
        return target
    reason = download_forbidden()
    if reason is not None:
        raise DataError(f"run spec {spec!r} is not in the cache ({target}) and {reason}")
    url = f"{os.environ.get(GITHUB_RAW_ENV, 'https://raw.githubusercontent.com').rstrip('/')}/{body}"

    def check(part: Path) -> None:
        got = _blob_of_file(part)
        if got != blob:
            raise ChecksumMismatch(f"{url}: checksum mismatch (git blob {got}, expected {blob}); nothing was kept")

    return fetch_to(url, target, max_bytes=GITHUB_MAX_BYTES, check=check, what=f"{url} (run spec {spec!r})")


def released_path(spec: str | os.PathLike) -> Path:
    """The local parquet file of a spec: a path, ``parquet:RUN``, ``irds:ID`` of a registered file
    (downloaded on first use) or ``hf://datasets/OWNER/NAME/FILE`` (fetched by huggingface_hub)."""
    text = str(spec)
    if text.startswith("parquet:"):
        return as_released_file(text[len("parquet:"):])
    if text.startswith("irds:"):
        handler = irds_dataset(text[len("irds:"):]).scoreddocs_handler()
        try:
            return Path(handler.scoreddocs_path())
        except Exception as error:  # offline, or a download that failed its md5 check
            raise DataError(f"released data {text!r} could not be fetched: {error}") from error
    if text.startswith("hf://"):
        parts = text[len("hf://"):].split("/", 3)
        if len(parts) != 4 or parts[0] != "datasets":
            raise DataError(f"released data {text!r}: expected hf://datasets/OWNER/NAME/FILE")
        from huggingface_hub import hf_hub_download

        try:
            return Path(hf_hub_download(repo_id=f"{parts[1]}/{parts[2]}", filename=parts[3], repo_type="dataset"))
        except Exception as error:  # offline, unknown repo or file: say which
            raise DataError(f"released data {text!r} could not be fetched from the hub: {error}") from error
    return resolve_path(text)


def read_released(spec: str | os.PathLike) -> Run:
    """A released Rank-DistiLLM file as a :class:`Run` (each query's passages by score, highest first).

    ``spec``: see :func:`released_path`. A passage listed twice for a query is a
    :class:`DataError` naming the file and row.
    """
    path = released_path(spec)
    table = read_table(path)
    rows: dict[str, list[tuple[float, int, str]]] = {}
    run = Run(source=str(path))
    qids, docnos, scores = (table.column(c).to_pylist() for c in COLUMNS)
    for n, (qid, docno, score) in enumerate(zip(qids, docnos, scores)):
        if (qid, docno) in run.line_of:
            raise DataError(f"{path} row {n}: passage {docno} listed twice for query {qid}")
        run.line_of[(qid, docno)] = n
        rows.setdefault(qid, []).append((score, n, docno))
    for qid, items in rows.items():
        items.sort(key=lambda t: (-t[0], t[1]))
        run[qid] = {docno: score for score, _, docno in items}
    return run


def top_lists(spec: str | os.PathLike, depth: int | None = None):
    """Every query's top-``depth`` passages of a released file, as a ``pyarrow.Table``.

    Columns ``qid`` (string) and ``docids`` (list of strings, best first: by score, ties in
    file order). Built with pyarrow alone, so that the ColBERTv2 run of all judged MS MARCO
    training queries (about 500,000 queries x 500 passages) fits in memory, which a
    :class:`Run` of Python dicts would not.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    table = read_table(released_path(spec))
    if len(table) == 0:
        raise DataError(f"released data {spec}: the file holds no rows")
    table = table.append_column("row", pa.array(np.arange(len(table), dtype=np.int64)))
    table = table.sort_by([("qid", "ascending"), ("score", "descending"), ("row", "ascending")])
    qids = table.column("qid").combine_chunks()
    starts = np.flatnonzero(np.r_[True, pc.not_equal(qids[1:], qids[:-1]).to_numpy(zero_copy_only=False)])
    ends = np.r_[starts[1:], len(table)]
    keep_ends = ends if depth is None else np.minimum(ends, starts + depth)
    take = np.concatenate([np.arange(s, e) for s, e in zip(starts, keep_ends)]) if len(starts) else np.array([], np.int64)
    offsets = np.r_[0, np.cumsum(keep_ends - starts)].astype(np.int32 if len(take) < 2**31 else np.int64)
    docnos = table.column("docno").combine_chunks().take(pa.array(take))
    lists = (pa.ListArray if offsets.dtype == np.int32 else pa.LargeListArray).from_arrays(pa.array(offsets), docnos)
    return pa.table({"qid": qids.take(pa.array(starts)), "docids": lists})
