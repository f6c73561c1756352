"""The measurement harness: time one re-ranker on the same queries at several depths, in a process of its own.

For each depth ``k``, the time to re-rank one query's top-``k``: the student scores the
``k`` query-passage pairs in batches (:mod:`.student_runtimes`); the teacher runs the
sliding-window listwise re-ranker of :mod:`rank_distillm.teacher` (window 20, stride 10,
RankZephyr's prompt) on the engine :mod:`.teacher_engines` loads. :func:`measure` runs in this
process; :func:`measure_in_subprocess` runs it in a fresh one (``python -m
rank_distillm.efficiency JOB RESULT``), so that the peak memory is this model's alone
(:mod:`.memory`).

Each finished depth of each model is one **record** (a row of the benchmark's JSONL file),
handed to ``on_record`` as soon as it is complete: :func:`append_bench_row` writes it
durably, :func:`read_bench_rows` reads the file back (a half-written last line is dropped),
so an interrupted benchmark resumes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from ..data import Candidates, DataError
from ..devices import synchronize
from .memory import PEAK_FIELDS, ModelMemory
from .specs import model_name, spec_device, use_config
from .student_runtimes import GRAPHS, count_parameters, split_backend, student_scorer
from .teacher_engines import TEACHER_BACKENDS, load_teacher, teacher_backend, time_phases


def _time_student(predict, cand: Candidates, depth: int, keep_scores: bool = False) -> dict:
    pairs = [(cand.query, t) for t in cand.texts[:depth]]
    t0 = time.perf_counter()
    scores = predict(pairs)
    seconds = time.perf_counter() - t0
    out = {"seconds": seconds, "pairs": len(pairs)}
    if keep_scores:
        out["scores"] = [float(x) for x in scores]
    return out


def _quality_pass(predict, candidates: Sequence[Candidates], depth: int) -> dict:
    """Every quality query's top-``depth`` scored, each query timed: ``{"depth", "qids", "seconds", "scores"}``."""
    from tqdm.auto import tqdm

    rows = [_time_student(predict, c, depth, keep_scores=True)
            for c in tqdm(candidates, desc="quality queries", unit="query", mininterval=10, file=sys.stderr)]
    return {"depth": depth, "qids": [c.qid for c in candidates], "seconds": [r["seconds"] for r in rows],
            "pairs": [r["pairs"] for r in rows], "scores": [r["scores"] for r in rows]}


def _time_teacher(teacher, cand: Candidates, depth: int, spec: dict) -> dict:
    from ..teacher import sliding_window_rerank

    t0 = time.perf_counter()
    result = sliding_window_rerank(
        [cand], teacher.backend, prompt=spec.get("prompt", "rankzephyr"), window=spec.get("window", 20),
        stride=spec.get("stride", 10), depth=depth, max_words=spec.get("max_words"), batch_size=1, progress=False,
    )
    synchronize(teacher.device)
    seconds = time.perf_counter() - t0
    w = result.windows
    if w:
        teacher.last_prompt = max((r["prompt"] for r in w), key=len)  # for time_phases
    return {
        "seconds": seconds, "pairs": min(depth, len(cand)), "windows": len(w),
        "prompt_tokens": sum(r["prompt_tokens"] or 0 for r in w),
        "generated_tokens": sum(r["generated_tokens"] or 0 for r in w),
        "generate_seconds": sum(r["seconds"] or 0 for r in w),
        # the longest window (prompt + answer): what one sequence's KV cache holds at its end
        "max_window_tokens": max(((r["prompt_tokens"] or 0) + (r["generated_tokens"] or 0) for r in w), default=0),
    }


def _import_runtime(kind: str, backend: str) -> None:
    """Import the runtime's libraries before the baseline is read, so that it counts them and not the model."""
    import importlib

    names = ["torch", "transformers", "sentence_transformers"] if kind == "student" else ["torch", "transformers", "rank_distillm.teacher"]
    runtime = GRAPHS[backend][1] if kind == "student" and backend in GRAPHS else backend
    names += {"onnxruntime": ["onnx", "onnxruntime"], "openvino": ["onnx", "openvino"],
              "precomputed": ["rank_distillm.passage_states"]}.get(runtime, [])
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            pass  # reported where it is needed


def measure(kind: str, spec: dict, candidates: Sequence[Candidates], depths: Sequence[int], repeats: int = 1,
            warmup: int = 1, backend: str | None = None, on_record=None, engine=None,
            quality: Sequence[Candidates] | None = None, quality_depth: int | None = None) -> dict:
    """Time one re-ranker in this process: ``{"model": {...}, "rows": [...], "records": [...]}``.

    ``kind``: ``student`` or ``teacher``. ``backend``: for the student one of
    :data:`.student_runtimes.STUDENT_BACKENDS` (default ``torch``); for the teacher
    ``transformers``, ``vllm`` or ``auto`` (default: the spec's ``backend``, see
    :func:`.teacher_engines.teacher_backend`); ``engine`` is handed to the vLLM teacher. Each
    row is one timed re-ranking of one query's top-``depth``: ``seconds``, ``pairs`` and for
    the teacher ``windows``, ``prompt_tokens`` and ``generated_tokens``. ``warmup`` untimed
    runs (at the smallest depth) come first.

    Memory is measured per depth (:class:`.memory.ModelMemory`): ``baseline_mb`` (the process
    before loading), ``loaded_mb`` (after loading), ``peak_mb`` and ``model_mb``.

    A student's rows at the deepest depth keep their ``scores`` (of the first repeat). With
    ``quality`` (student only), every one of those queries' top-``quality_depth`` is scored
    once more, each query timed, after the deepest depth (its memory counts there): the
    deepest record's ``quality`` (:func:`_quality_pass`). A student that re-ranks on an index
    (``precomputed``) indexes every passage of ``candidates`` and ``quality`` first, untimed:
    the model's ``index_seconds`` and ``index_passages``.

    Each finished depth is one **record** (``name``, ``kind``, ``backend``, ``device``,
    ``depth``, ``model``: the figures above for that depth, ``rows``), passed to
    ``on_record`` as soon as it is complete; ``model`` and ``rows`` combine the records
    (:func:`combine_records`).
    """
    if kind not in ("student", "teacher"):
        raise ValueError(f"kind must be 'student' or 'teacher', not {kind!r}")
    if not candidates:
        raise DataError("no candidates to time")
    import torch

    device = spec_device(spec)
    if kind == "teacher":
        backend = teacher_backend(spec, device) if backend in (None, "auto") else backend
        if backend not in TEACHER_BACKENDS:
            raise ValueError(f"teacher backend {backend!r} is none of {TEACHER_BACKENDS}")
    else:
        backend = backend or "torch"
        split_backend(backend)  # an unknown backend fails here, before anything loads
    _import_runtime(kind, split_backend(backend)[0] if kind == "student" else backend)  # the runtime's baseline
    memory = ModelMemory(device, vllm=backend == "vllm")
    baseline = memory.baseline()
    name = model_name(spec)
    t0 = time.perf_counter()
    teacher = None
    if kind == "student":
        predict, loaded = student_scorer(spec, backend)
        run = lambda cand, depth: _time_student(predict, cand, depth)  # noqa: E731
        params = count_parameters(loaded)
        dtype = str(getattr(getattr(loaded, "model", loaded), "dtype", "int8" if backend.startswith("onnx-int8") else "float32"))
    else:
        teacher = load_teacher(spec, backend, engine)
        run = lambda cand, depth: _time_teacher(teacher, cand, depth, spec)  # noqa: E731
        params, dtype, loaded = teacher.params, teacher.dtype, teacher.backend
    load_seconds = time.perf_counter() - t0
    indexed = {}
    if hasattr(loaded, "index"):  # states of every passage it will see, computed ahead of the queries
        texts = [t for c in [*candidates, *(quality or ())] for t in c.texts[: max(depths + [quality_depth or 0])]]
        figures = loaded.index(texts)
        indexed = {"index_seconds": figures["seconds"], "index_passages": figures["passages"],
                   "index_mb": figures["bytes"] / 2**20, "states_dtype": loaded.store.dtype}
    info = {
        "name": name, "kind": kind, "backend": backend, "device": device, "params": params, "dtype": dtype,
        "from_config": spec.get("from_config") if use_config(spec) else None,
        "load_seconds": load_seconds, "baseline_mb": baseline, "loaded_mb": memory.loaded(),
        "threads": torch.get_num_threads(),
    }
    if kind == "student" and split_backend(backend)[0].startswith("onnx"):
        info["onnx_cpu_mem_arena"] = split_backend(backend)[1]
    if getattr(loaded, "graph_bytes", None):
        info["graph_mb"] = loaded.graph_bytes / 2**20
    info.update(indexed)

    memory.start()
    for _ in range(warmup):
        run(candidates[0], min(depths))
    records = []
    deepest = max(depths)
    for depth in depths:
        rows = []
        for cand in candidates:
            for r in range(repeats):
                timed = (_time_student(predict, cand, depth, keep_scores=depth == deepest and r == 0)
                         if kind == "student" else run(cand, depth))
                rows.append({"depth": depth, "qid": cand.qid, "repeat": r, **timed,
                             "name": name, "kind": kind, "backend": backend})
        extra = {}
        if quality and kind == "student" and depth == deepest:
            extra["quality"] = _quality_pass(predict, quality, quality_depth or deepest)
        figures = memory.figures(rows, teacher, spec.get("gpu_memory_utilization"))
        if kind == "teacher" and depth == deepest and spec.get("phase_tokens") and getattr(teacher, "last_prompt", None):
            extra["phases"] = time_phases(teacher, teacher.last_prompt, int(spec["phase_tokens"]), repeats)
        record = {"name": name, "kind": kind, "backend": backend, "device": device, "depth": depth,
                  "model": {**info, **figures}, "rows": rows, **extra}
        if on_record is not None:
            on_record(record)
        records.append(record)
        memory.start()  # the next depth's peak is its own
    (model,), rows = combine_records(records)
    return {"model": model, "rows": rows, "records": records}


def combine_records(records: Sequence[dict]) -> tuple[list[dict], list[dict]]:
    """``(models, rows)`` of per-depth records: one model per (name, backend, device), its memory the largest."""
    models: dict[tuple, dict] = {}
    rows: list[dict] = []
    for rec in records:
        key = (rec["name"], rec["backend"], rec["device"])
        m = rec["model"]
        if key not in models:
            models[key] = {**m, "depths": [rec["depth"]]}
        else:
            cur = models[key]
            cur["depths"].append(rec["depth"])
            for field in PEAK_FIELDS:
                if m.get(field) is not None and (cur.get(field) is None or m[field] > cur[field]):
                    cur[field] = m[field]
        rows.extend(rec["rows"])
    return list(models.values()), rows


# --------------------------------------------------------------------------- resumable rows

BENCH_ROW_FIELDS = ("name", "kind", "backend", "device", "depth", "model", "rows")


def bench_key(record: dict) -> tuple[str, str, int, str]:
    """What a benchmark row is keyed by: ``(model name, backend, depth, device)``."""
    return (str(record["name"]), str(record["backend"]), int(record["depth"]), str(record["device"]))


def read_bench_rows(path: str | os.PathLike, repair_tail: bool = True) -> list[dict]:
    """The rows of a benchmark's JSONL file (one per model, backend, depth and device), in file order.

    A half-written last line (an interrupted write) is dropped, and with ``repair_tail`` cut
    off the file so that the next row starts on a line of its own; any other malformed line,
    or a key that occurs twice, is a :class:`DataError` naming the file and the line.
    """
    from ..teacher.log import read_log

    records = read_log(path, repair_tail=repair_tail, required=BENCH_ROW_FIELDS, what="benchmark")
    seen: dict[tuple, int] = {}
    for rec in records:
        key = bench_key(rec)
        if key in seen:
            raise DataError(f"{path} line {rec['_line']}: {key} is there twice (first on line {seen[key]})")
        seen[key] = rec.pop("_line")
    return records


def append_bench_row(path: str | os.PathLike, record: dict) -> None:
    """Append one row to a benchmark's JSONL file and make it durable (flush + fsync) before returning."""
    clean = {k: v for k, v in record.items() if not k.startswith("_")}
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(clean, default=float) + "\n")
        f.flush()
        os.fsync(f.fileno())


# --------------------------------------------------------------------------- subprocesses


def measure_in_subprocess(kind: str, spec: dict, candidates: Sequence[Candidates], depths: Sequence[int],
                          repeats: int = 1, warmup: int = 1, backend: str | None = None, timeout: float | None = None,
                          out: str | os.PathLike | None = None, quality: Sequence[Candidates] | None = None,
                          quality_depth: int | None = None) -> dict:
    """:func:`measure` in a fresh Python process, so that its peak memory is this model's alone.

    ``out``: a JSONL file the process appends each finished row (depth) to, as it finishes
    (:func:`append_bench_row`), so that a process killed halfway leaves its finished rows.
    """
    with tempfile.TemporaryDirectory(prefix="rank-distillm-bench-") as tmp:
        job, result = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job.write_text(json.dumps({
            "kind": kind, "spec": spec, "candidates": [asdict(c) for c in candidates], "depths": list(depths),
            "repeats": repeats, "warmup": warmup, "backend": backend,
            "out": str(Path(out).resolve()) if out is not None else None,
            "quality": [asdict(c) for c in quality] if quality else None, "quality_depth": quality_depth,
        }))
        proc = subprocess.run([sys.executable, "-m", "rank_distillm.efficiency", str(job), str(result)],
                              capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0 or not result.exists():
            tail = "\n".join((proc.stderr or "").strip().splitlines()[-15:])
            raise RuntimeError(f"benchmark of the {kind} ({spec.get('model')}, {backend}) failed:\n{tail}")
        return json.loads(result.read_text())


def worker(job_path: str, out_path: str) -> int:
    """What the subprocess runs: the job file's :func:`measure`, its result written (atomically) to ``out_path``."""
    job = json.loads(Path(job_path).read_text())
    cands = [Candidates(**c) for c in job["candidates"]]
    rows_file = job.get("out")
    on_record = (lambda rec: append_bench_row(rows_file, rec)) if rows_file else None
    quality = [Candidates(**c) for c in job["quality"]] if job.get("quality") else None
    result = measure(job["kind"], job["spec"], cands, job["depths"], job["repeats"], job["warmup"], job["backend"],
                     on_record=on_record, quality=quality, quality_depth=job.get("quality_depth"))
    tmp = Path(out_path).with_suffix(".tmp")
    tmp.write_text(json.dumps(result, default=float))
    os.replace(tmp, out_path)
    return 0
