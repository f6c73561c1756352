"""The data's public sources: fetched, verified and converted into the data folder.

Every file of the data folder is converted from 39 raw files in three public GitHub
repositories at pinned commits: ``castorini/anserini-tools`` (TREC DL topics and qrels),
``castorini/rank_llm`` (the top-100 of five first stages with passage texts, RankVicuna over
each of them, RankGPT over BM25, one prompt log) and ``naver/splade`` (100 MS MARCO training triples). ``sources.json``, beside
this module, lists them with their sizes and sha256 checksums, the rule that converts each,
and the checksums of the converted files. :func:`download` does the whole job::

    download("data/")   # or: rank-distillm data download --out data/

1. **Fetch.** Each raw file comes from ``{base_url}/{repo}/{commit}/{path}``, the layout of
   ``https://raw.githubusercontent.com`` (``RANK_DISTILLM_SOURCES_URL`` or ``base_url=``
   names another: a mirror served over HTTP, or a ``file://`` folder with that layout),
   into a download area (``$RANK_DISTILLM_CACHE/sources``, the same layout). A file is kept
   only if its size and sha256 match; a verified file is never fetched again, so a rerun
   after an interruption resumes from the files it already has.
2. **Convert** (rules in :data:`CONVERTERS`): topics and qrels are copied where
   ``ir_datasets`` looks for ``msmarco-passage/trec-dl-20XX/judged`` (the DL20 topics
   gzipped); the passage texts of all ten hit lists (five first stages, two years) become
   ``collection.tsv`` (the first occurrence of a docid wins), repaired as
   ``ir_datasets`` repairs MS MARCO (:func:`rank_distillm.sampling.fix_msmarco_encoding`);
   run files are re-tagged with their names; the DL20 window log is rebuilt by replaying the
   raw prompts and responses through the teacher's own sliding-window loop, which must
   reproduce RankVicuna's DL20 run exactly.
3. **Check and publish.** Every converted file is checked against its checksum, then the
   folder, built under a temporary name beside ``out``, is renamed into place: a failed or
   interrupted download never leaves a half-built folder at ``out``.

Where it sits: above ``data`` (it converts with ``data``'s run reader and writer), ``sampling``
(MS MARCO's text repair) and ``teacher`` (the window-log replay through the teacher's own
loop). The data folder's lookup (:func:`rank_distillm.paths.data_dir`, below everything)
reaches :func:`build_on_first_use` only through the builder that the package's ``__init__``
registers, so no lower module imports this one.

Downloads are off when ``RANK_DISTILLM_OFFLINE`` is true, or, when that variable is unset,
when ``HF_HUB_OFFLINE`` is (the Makefile sets ``RANK_DISTILLM_OFFLINE=0``: the model hub
stays offline there, the data may be fetched).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from tqdm.auto import tqdm

from .data import Candidates, read_run, write_run
from .downloads import (  # noqa: F401 - re-exported
    HUB_OFFLINE_ENV,
    OFFLINE_ENV,
    ChecksumMismatch,
    SourceUnreachable,
    download_forbidden,
    fetch_to,
)
from .errors import DataError
from .paths import DATA_ENV, before_importing_ir_datasets, cache_dir

SOURCES_FILE = Path(__file__).with_name("sources.json")
URL_ENV = "RANK_DISTILLM_SOURCES_URL"
LOG_FIELDS = ("qid", "window", "start", "end", "docids", "prompt", "response")


@dataclass(frozen=True)
class Source:
    """One raw file at a pinned commit, and what it becomes in the data folder."""

    repo: str
    commit: str
    path: str
    bytes: int
    sha256: str
    convert: str
    to: str
    what: str = ""
    options: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def key(self) -> str:
        """``owner/repo/commit/path``: its place under a base URL and in the download area."""
        return f"{self.repo}/{self.commit}/{self.path}"

    def url(self, base_url: str) -> str:
        return base_url.rstrip("/") + "/" + quote(self.key)


@functools.lru_cache(maxsize=1)
def catalogue() -> dict:
    """``sources.json``: ``base_url``, ``repos`` (licence terms), ``sources``, ``constants``, ``outputs``."""
    return json.loads(SOURCES_FILE.read_text(encoding="utf-8"))


def sources() -> list[Source]:
    fields = set(Source.__dataclass_fields__) - {"options"}
    return [Source(**{k: v for k, v in row.items() if k in fields}, options={k: v for k, v in row.items() if k not in fields})
            for row in catalogue()["sources"]]


def base_url(url: str | None = None) -> str:
    """The base URL in use: ``url``, else ``RANK_DISTILLM_SOURCES_URL``, else GitHub's raw-file service."""
    return (url or os.environ.get(URL_ENV) or catalogue()["base_url"]).rstrip("/")


def total_bytes() -> int:
    return sum(s.bytes for s in sources())


def raw_dir() -> Path:
    """The download area: verified raw files, laid out as under the base URL."""
    return cache_dir() / "sources"


# --------------------------------------------------------------------------- fetch


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_verified(path: Path, source: Source) -> bool:
    return path.is_file() and path.stat().st_size == source.bytes and sha256_of(path) == source.sha256


def fetch(source: Source, url: str, folder: Path, bar=None) -> bool:
    """Put ``source`` at ``folder / source.key``, verified; ``True`` when it had to be fetched.

    Through the one bounded downloader (:func:`rank_distillm.downloads.fetch_to`: a timeout,
    a deadline, the expected size as a byte cap): the bytes go to ``NAME.part`` first and are
    renamed into place only when their size and sha256 match; otherwise the part is deleted
    and :class:`ChecksumMismatch` names the file, what arrived and what was expected.
    """
    target = folder / source.key
    if is_verified(target, source):
        if bar is not None:
            bar.update(source.bytes)
        return False
    location = source.url(url)
    what = f"{location} ({source.path}, {source.repo} @ {source.commit[:12]})"

    def check(part: Path) -> None:
        digest = sha256_of(part)
        if digest != source.sha256:
            raise ChecksumMismatch(f"{source.path} ({source.repo} @ {source.commit[:12]}, from {location}): expected {source.bytes} bytes with sha256 {source.sha256}, got "
                                   f"{part.stat().st_size} bytes with sha256 {digest}; the file was discarded")

    fetch_to(location, target, size=source.bytes, check=check, what=what,
             progress=None if bar is None else bar.update)
    return True


# --------------------------------------------------------------------------- convert


def _write_bytes(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)


def _copy(group: list[Source], raw: Path, out: Path) -> None:
    for s in group:
        (out / s.to).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(raw / s.key, out / s.to)


def _gzip(group: list[Source], raw: Path, out: Path) -> None:
    """Gzipped as ``gzip`` would (the inner name without ``.gz``), with header time 0."""
    for s in group:
        target = out / s.to
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as f, gzip.GzipFile(filename=str(target), mode="wb", fileobj=f, mtime=0) as z:
            z.write((raw / s.key).read_bytes())


def _passages(group: list[Source], raw: Path, out: Path) -> None:
    """Every hit's ``content``, whitespace collapsed, first occurrence of a docid wins, sorted by docid."""
    before_importing_ir_datasets()
    from .sampling import fix_msmarco_encoding

    by_target: dict[str, dict[str, str]] = {}
    for s in group:
        texts = by_target.setdefault(s.to, {})
        for query in _read_json(raw / s.key, s):
            for hit in query["hits"]:
                texts.setdefault(str(hit["docid"]), " ".join(hit["content"].split()))
    for target, texts in by_target.items():
        lines = (f"{docid}\t{texts[docid]}\n".encode("utf-8") for docid in sorted(texts, key=int))
        _write_bytes(out / target, "".join(fix_msmarco_encoding(lines)).encode("utf-8"))


def _run(group: list[Source], raw: Path, out: Path) -> None:
    """``qid Q0 docid rank score tag`` by integer qid, then rank; score to 6 decimals; tag = the file's name."""
    for s in group:
        run = read_run(raw / s.key)
        write_run({qid: run[qid] for qid in sorted(run, key=int)}, out / s.to, tag=Path(s.to).stem)


def _read_json(path: Path, source: Source):
    text = path.read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        try:  # rank_llm's prompt logs: objects separated by commas, no brackets, a trailing comma
            return json.loads("[" + text.rstrip().rstrip(",") + "]")
        except json.JSONDecodeError as error:
            raise DataError(f"{path} ({source.path}): not JSON: {error}") from None


def _window_log(group: list[Source], raw: Path, out: Path) -> None:
    """Replay the raw prompt/response records through the teacher's sliding-window loop.

    The records are the windows in the order they ran: query by query in the order of the
    hit lists (``hits``), bottom window first. Each response is applied to the current list
    exactly as a live teacher's would be (:func:`rank_distillm.teacher.windows.replay_records`);
    the final lists must equal the run ``reproduces``.
    """
    from .teacher.windows import replay_records

    by_path = {s.path: s for s in sources()}
    for s in group:
        o = s.options
        hits_source = by_path[o["hits"]]
        candidates = [
            Candidates(qid=str(q["hits"][0]["qid"]), query=q["query"], docids=[str(h["docid"]) for h in q["hits"]],
                       texts=[h["content"] for h in q["hits"]])
            for q in _read_json(raw / hits_source.key, hits_source)
        ]
        result = replay_records(candidates, _read_json(raw / s.key, s), prompt=o["prompt"], window=o["window"],
                                stride=o["stride"], depth=o["depth"],
                                what=f"{s.path}", lists=f"the hit lists of {hits_source.path}")
        reference = read_run(out / o["reproduces"])
        for qid in result.run:
            if result.run.ranking(qid) != reference.ranking(qid):
                raise DataError(f"replaying {s.path} does not reproduce {o['reproduces']} for query {qid}")
        lines = [json.dumps({k: w[k] for k in LOG_FIELDS}, ensure_ascii=False) + "\n" for w in result.windows]
        _write_bytes(out / s.to, "".join(lines).encode("utf-8"))


# name -> converter(sources of that kind, download area, output folder); applied in this order
CONVERTERS = {"copy": _copy, "gzip": _gzip, "passages": _passages, "run": _run, "window-log": _window_log}


def convert(raw: Path, out: Path) -> None:
    """Build the data folder's files in ``out`` from the verified raw files in ``raw``."""
    listed = sources()
    unknown = {s.convert for s in listed} - set(CONVERTERS)
    if unknown:
        raise DataError(f"{SOURCES_FILE}: unknown conversion(s) {sorted(unknown)}; known: {list(CONVERTERS)}")
    for name, converter in CONVERTERS.items():
        group = [s for s in listed if s.convert == name]
        if group:
            converter(group, raw, out)
    for path, text in catalogue()["constants"].items():
        _write_bytes(out / path, text.encode("utf-8"))


def check_outputs(out: Path, extra: tuple[str, ...] = ()) -> None:
    """Every converted file has the size and sha256 of ``outputs`` (decompressed for ``.gz``), and no other file
    exists (but ``extra``)."""
    expected = catalogue()["outputs"]
    present = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()} - set(extra)
    if present != set(expected):
        raise DataError(f"the conversion made {sorted(present - set(expected))} and lacks {sorted(set(expected) - present)}")
    for path, spec in expected.items():
        payload = (out / path).read_bytes()
        if path.endswith(".gz"):
            payload = gzip.decompress(payload)
        digest = hashlib.sha256(payload).hexdigest()
        if len(payload) != spec["bytes"] or digest != spec["sha256"]:
            raise ChecksumMismatch(
                f"converted file {path}: expected {spec['bytes']} bytes with sha256 {spec['sha256']}, got "
                f"{len(payload)} bytes with sha256 {digest}; the conversion differs from the reference "
                f"(a different ir_datasets version?)"
            )


def manifest() -> str:
    """``MANIFEST.txt`` of a built folder: the sources, their licence terms and the converted files' checksums."""
    cat = catalogue()
    lines = ["Built by `rank-distillm data download` (rank_distillm.sources) from these public raw files;",
             "each was checked against its size and sha256 before use.", ""]
    for s in sources():
        lines += [f"{s.repo} @ {s.commit} : {s.path}", f"  {s.bytes} bytes, sha256 {s.sha256}",
                  f"  {s.what}", f"  -> {s.to} ({s.convert})"]
    lines += ["", "Licence terms, by repository:"] + [f"  {repo}: {terms}" for repo, terms in cat["repos"].items()]
    lines += ["", "Converted files (sha256; of the decompressed content for .gz):"]
    lines += [f"  {path}  {spec['bytes']} bytes  {spec['sha256']}" for path, spec in cat["outputs"].items()]
    return "\n".join(lines) + "\n"


README = """# Data for the Rank-DistiLLM book

TREC Deep Learning 2019/2020 (queries, NIST's graded judgements, the MS MARCO passages of
the top-100s of five first stages), TREC runs (Pyserini's BM25, BM25+RM3, TAS-B, OpenAI
ada-002 and SPLADE++ ED; RankVicuna-7B over each; RankGPT with gpt-3.5-turbo over BM25) and
RankVicuna's DL20 window-by-window prompt log, converted from public files of
castorini/anserini-tools, castorini/rank_llm and naver/splade at pinned commits
(`MANIFEST.txt`: every source, its checksum and licence terms).

MS MARCO passages and triples are Microsoft's, for non-commercial research only
(https://microsoft.github.io/msmarco/); the LLM rankings are outputs of RankVicuna
(Vicuna-based) and OpenAI's gpt-3.5-turbo, released by castorini/rank_llm.

Read-only: the package copies `ir_datasets/` to a writable cache before use.
"""


# --------------------------------------------------------------------------- the whole job


@dataclass
class Built:
    """What :func:`download` did."""

    path: Path
    base_url: str
    fetched: int = 0
    reused: int = 0
    bytes: int = 0
    seconds: float = 0.0
    existed: bool = False


@contextmanager
def _locked(folder: Path):
    """One download per download area at a time (a second waits, then finds the work done)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as handle:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def is_built(folder: Path, verify: bool = False) -> bool:
    """Whether ``folder`` is a data folder built from these sources.

    Its manifest must say so and every converted file must be there with its size (cheap:
    what finding the data folder checks each time); with ``verify``, every file's checksum
    too and no other file (:func:`check_outputs`; what ``data download`` checks before it
    calls a folder done), so that an edited folder is not taken for a built one.
    """
    folder = Path(folder)
    path = folder / "MANIFEST.txt"
    try:
        if not (path.is_file() and path.read_text(encoding="utf-8") == manifest()):
            return False
        for name, spec in catalogue()["outputs"].items():
            target = folder / name
            if not target.is_file() or (not name.endswith(".gz") and target.stat().st_size != spec["bytes"]):
                return False
        if verify:
            check_outputs(folder, extra=("MANIFEST.txt", "README.md"))
    except (OSError, UnicodeDecodeError, DataError):
        return False
    return True


def _stale_partials(out: Path) -> list[Path]:
    """The temporary folders of builds of ``out`` whose process no longer runs (``.NAME.partial-PID-...``)."""
    from .outputs import _pid_alive

    stale = []
    for p in out.parent.glob(f".{out.name}.partial-*"):
        pid = p.name[len(f".{out.name}.partial-"):].split("-", 1)[0]
        if not pid.isdigit() or not _pid_alive(int(pid)):  # no PID: a build from before they were named
            stale.append(p)
    return stale


def download(out: str | os.PathLike, url: str | None = None, *, raw: str | os.PathLike | None = None,
             progress: bool = True, replace: bool = False) -> Built:
    """Fetch, verify and convert the sources into the data folder ``out``, atomically.

    ``url``: the base URL (default :func:`base_url`); ``raw``: the download area (default
    :func:`raw_dir`). An ``out`` built from the same sources is left as it is; any other
    existing ``out`` is an error (nothing is overwritten), unless ``replace`` (the package's
    own cache, built from older sources), when the new folder takes its place once complete.
    """
    given = Path(out).expanduser()
    try:
        out = given.resolve()
    except (OSError, RuntimeError):  # a loop of symbolic links (RuntimeError before Python 3.13)
        raise DataError(f"--out {given}: a loop of symbolic links; give a real path") from None
    if os.path.lexists(out) and not out.is_dir():
        raise DataError(f"--out {given} exists and is not a folder (a file, FIFO or broken link); give a new folder")
    url = base_url(url)
    raw = Path(raw).expanduser().resolve() if raw else raw_dir()
    built = Built(out, url, bytes=total_bytes())
    t0 = time.perf_counter()
    with _locked(raw):
        if out.exists():
            if is_built(out, verify=True):
                built.existed = True
                return built
            if not replace:
                raise DataError(f"{out} exists and is not a data folder built from these sources (or its files were "
                                f"changed since); remove it or choose another --out")
        with tqdm(total=built.bytes, unit="B", unit_scale=True, desc="data sources", disable=not progress,
                  dynamic_ncols=True) as bar:
            for s in sources():
                bar.set_postfix_str(Path(s.path).name[:40], refresh=False)
                if fetch(s, url, raw, bar):
                    built.fetched += 1
                else:
                    built.reused += 1
        out.parent.mkdir(parents=True, exist_ok=True)
        for stale in _stale_partials(out):  # left by killed runs; another live build's (another cache) is kept
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-{os.getpid()}-"))
        try:
            convert(raw, tmp)
            check_outputs(tmp)
            (tmp / "MANIFEST.txt").write_text(manifest(), encoding="utf-8")
            (tmp / "README.md").write_text(README, encoding="utf-8")
            umask = os.umask(0)
            os.umask(umask)
            tmp.chmod(0o777 & ~umask)
            if out.exists() and not replace:  # another build (another download area) finished first
                shutil.rmtree(tmp, ignore_errors=True)
                if is_built(out, verify=True):
                    built.existed = True
                    return built
                raise DataError(f"{out} appeared while this download ran and is not a data folder built from "
                                f"these sources; remove it or choose another --out")
            if out.exists():  # replace=True: set the old folder aside, then swap
                old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-{os.getpid()}-old-"))
                os.replace(out, old / out.name)
                os.replace(tmp, out)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    built.seconds = time.perf_counter() - t0
    return built


# --------------------------------------------------------------------------- on first use

ONLINE_HELP = (
    "No data folder was found, and {reason}. Either point {env} at a data folder (ir_datasets/, "
    "runs/, teacher-logs/: one that `rank-distillm data download --out DIR` builds), or allow the "
    "download: with internet access and downloads on (RANK_DISTILLM_OFFLINE=0, or neither it nor "
    "HF_HUB_OFFLINE set), the package fetches the data's public sources ({size:.1f} MB from {url}) "
    "into {cache} on first use."
)


def build_on_first_use(folder: Path, required: bool = True) -> Path | None:
    """The data folder ``folder`` (``$RANK_DISTILLM_CACHE/data``), built from the public sources when it is not yet.

    What :func:`rank_distillm.paths.data_dir` calls when it finds no other data folder (the
    package registers it). Says on stderr, once, that it built the folder. Without the
    download (off, or it failed), ``None`` when ``required=False``, else a :class:`DataError`
    that names both ways out.
    """
    import sys

    if is_built(folder):
        return folder
    reason = download_forbidden()
    if reason is None:
        try:
            built = download(folder, replace=True)
        except SourceUnreachable as error:
            reason = f"the download failed ({error})"
        else:
            if not built.existed:
                print(f"rank-distillm: no data folder was found, so it was built from the data's public sources: "
                      f"{built.fetched} of {len(sources())} raw files fetched from {built.base_url} "
                      f"({built.bytes / 1e6:.1f} MB in all, each checked against its sha256) and converted into "
                      f"{built.path}, which is used from now on ({DATA_ENV} overrides it).", file=sys.stderr)
            return built.path
    if required:
        raise DataError(ONLINE_HELP.format(reason=reason, env=DATA_ENV, size=total_bytes() / 1e6,
                                           url=base_url(), cache=folder))
    return None
