"""The benchmark of a profile and its tables: each model in its own process, then summaries and ratios.

:func:`run_bench` times the student (each backend and variant of the profile) and the teacher
on the same queries; :func:`summarise` turns the rows into one line per model and depth,
:func:`ratios` into teacher/student ratios. :mod:`.variants` compares the student's variants
(speed, memory, nDCG@10 with a paired test, share of the hardware's peak).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ..data import Candidates, load_candidates
from ..errors import ProfileError
from .harness import bench_key, combine_records, measure_in_subprocess, read_bench_rows
from .specs import model_name, spec_device
from .student_runtimes import split_backend
from .teacher_engines import teacher_backend

# The paper's claim (abstract of Schlatt et al., ECIR 2025): the distilled cross-encoder
# is up to 173x faster and 24x more memory efficient than the LLM re-ranker.
PAPER_SPEEDUP = 173.0
PAPER_MEMORY_RATIO = 24.0


def summarise(rows: Sequence[dict], models: Sequence[dict] = ()) -> "pd.DataFrame":  # noqa: F821
    """One row per (model, backend, depth): median latency, spread, throughput, tokens, memory."""
    import pandas as pd

    df = pd.DataFrame(list(rows))
    keys = ["name", "kind", "backend", "depth"]
    g = df.groupby(keys, sort=False)
    out = g["seconds"].agg(median_s="median", min_s="min", max_s="max", runs="count")
    out["p25_s"] = g["seconds"].quantile(0.25)
    out["p75_s"] = g["seconds"].quantile(0.75)
    out["pairs_per_s"] = g["pairs"].sum() / g["seconds"].sum()
    for col in ("windows", "prompt_tokens", "generated_tokens"):
        if col in df:
            out[col] = g[col].mean()
    out = out.reset_index()
    if models:
        mem = pd.DataFrame(list(models))[["name", "backend", "params", "peak_mb", "model_mb"]]
        out = out.merge(mem, on=["name", "backend"], how="left")
    return out


def ratios(summary: "pd.DataFrame", student: str | None = None, teacher: str | None = None,  # noqa: F821
           student_backend: str = "torch") -> "pd.DataFrame":  # noqa: F821
    """Teacher/student ratios per depth both were timed at: latency, throughput, memory."""
    import pandas as pd

    s = summary[(summary["kind"] == "student") & (summary["backend"] == student_backend)]
    t = summary[summary["kind"] == "teacher"]
    if student:
        s = s[s["name"] == student]
    if teacher:
        t = t[t["name"] == teacher]
    m = s.merge(t, on="depth", suffixes=("_student", "_teacher"))
    out = pd.DataFrame({
        "depth": m["depth"], "student": m["name_student"], "teacher": m["name_teacher"],
        "student_s": m["median_s_student"], "teacher_s": m["median_s_teacher"],
        "speedup": m["median_s_teacher"] / m["median_s_student"],
        "throughput_ratio": m["pairs_per_s_student"] / m["pairs_per_s_teacher"],
    })
    if "model_mb_student" in m:
        out["student_mb"] = m["model_mb_student"]
        out["teacher_mb"] = m["model_mb_teacher"]
        out["memory_ratio"] = m["model_mb_teacher"] / m["model_mb_student"]
        out["peak_ratio"] = m["peak_mb_teacher"] / m["peak_mb_student"]
    return out


def bench_candidates(P: dict) -> list[Candidates]:
    """The queries and passages every model is timed on (the same for all)."""
    return load_candidates(P["dataset"], P["first_stage"], depth=max(P["student_depths"] + P["teacher_depths"]),
                           max_queries=P["queries"])


def quality_candidates(P: dict) -> list[Candidates]:
    """The queries whose top-``quality_depth`` the lossy student variants re-rank (nDCG@10 against the fp32 student)."""
    return load_candidates(P["dataset"], P["first_stage"], depth=P["quality_depth"], max_queries=P["quality_queries"])


def _jobs(P: dict, student_depths: list[int], teacher_depths: list[int], cands: list) -> list[tuple]:
    """``(kind, spec, depths, backend, queries, repeats, quality)`` of every process the benchmark runs."""
    deepest = [max(student_depths)] if student_depths else []
    jobs = [("student", P["student"], student_depths, b, cands, P["repeats"], False) for b in P["student_backends"]]
    jobs += [("student", P["student"], deepest, b, cands, P.get("variant_repeats", P["repeats"]),
              b in P.get("quality_variants", ()))
             for b in P.get("variants", ()) if b not in P["student_backends"]]
    jobs.append(("teacher", P["teacher"], teacher_depths, teacher_backend(P["teacher"]), cands[: P["teacher_queries"]],
                 P["teacher_repeats"], False))
    return jobs


def _shown(text) -> str:
    """A model name or message for the log: paths as a page shows them (``$RANK_DISTILLM_CACHE/...``)."""
    from ..show import short_paths

    return short_paths(str(text))


def run_bench(P: dict, depths: Sequence[int] | None = None, log=print, out: str | os.PathLike | None = None) -> dict:
    """The profile's benchmark: the student (each backend and variant) and the teacher, each in its own process.

    ``P`` is ``load_profile(name)["efficiency"]``; ``depths`` replaces both depth lists. The
    ``student_backends`` are timed at every student depth; the ``variants`` (other runtimes,
    quantised graphs, precomputed passage states) at the deepest one (``variant_repeats`` runs
    of each query), and those among
    ``quality_variants`` also re-rank the ``quality_queries``' top-``quality_depth`` (their
    scores are in the result's ``quality``). The teacher runs on the engine its ``backend``
    field picks (:func:`.teacher_engines.teacher_backend`) and, with ``phase_tokens``, times
    its prefill and decoding apart (the result's ``phases``).

    ``out``: a JSONL file of measured rows, one line per (model, backend, depth, device),
    each written and flushed as soon as it is measured. Rows already in the file are not
    measured again, so a benchmark that was interrupted resumes where it stopped (a
    half-written last line is dropped; a malformed line elsewhere is an error naming file and
    line). The result holds this benchmark's rows, from the file; rows of other settings
    in the same file stay there but are left out.

    Returns ``{"models": [...], "rows": [...], "summary": [...], "ratios": [...], "quality": {...},
    "phases": {...}, "paper": {...}}`` (plain lists and dicts).
    """
    for field in ("student_backends", "variants", "quality_variants"):
        for backend in P.get(field) or ():
            try:
                split_backend(backend)
            except ValueError as error:
                raise ProfileError(f"efficiency.{field}: {error}") from None
    student_depths = list(depths or P["student_depths"])
    teacher_depths = list(depths or P["teacher_depths"])
    cands = bench_candidates({**P, "student_depths": student_depths, "teacher_depths": teacher_depths})
    quality = quality_candidates(P) if P.get("quality_variants") else None
    done: set[tuple] = set()
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        done = {bench_key(r) for r in read_bench_rows(out)}
        if done:
            log(f"[bench] {_shown(out)}: {len(done)} row(s) already measured, not measured again")
    planned: list[tuple] = []
    records = []
    for kind, spec, ds, backend, qs, repeats, with_quality in _jobs(P, student_depths, teacher_depths, cands):
        if not ds:
            continue
        name, device = model_name(spec), spec_device(spec)
        keys = [(name, backend, int(d), device) for d in ds]
        planned.extend(keys)
        todo = [d for d, key in zip(ds, keys) if key not in done]
        if not todo:
            log(f"[bench] {kind} {_shown(spec['model'])} ({backend}): depths {ds} already in {_shown(out)}")
            continue
        log(f"[bench] {kind} {_shown(spec['model'])} ({backend}) at depths {todo}, {len(qs)} queries x {repeats}"
            + (f"; then {len(quality)} queries' top-{P['quality_depth']}" if with_quality else "") + " ...")
        try:
            result = measure_in_subprocess(kind, spec, qs, todo, repeats, P["warmup"], backend, out=out,
                                           quality=quality if with_quality else None, quality_depth=P.get("quality_depth"))
        except (RuntimeError, ImportError) as error:
            if kind == "student" and backend != "torch":
                log(f"[bench] skipped {backend}: {_shown(str(error))}")
                continue
            raise
        records.extend(result["records"])
    if out is not None:
        order = {key: i for i, key in enumerate(planned)}
        records = sorted((r for r in read_bench_rows(out) if bench_key(r) in order), key=lambda r: order[bench_key(r)])
    models, rows = combine_records(records)
    summary = summarise(rows, models)
    rat = ratios(summary)
    return {
        "models": models, "rows": rows, "summary": summary.to_dict("records"), "ratios": rat.to_dict("records"),
        "quality": {r["backend"]: r["quality"] for r in records if r.get("quality")},
        "phases": {r["name"]: r["phases"] for r in records if r.get("phases")},
        "paper": {"speedup": PAPER_SPEEDUP, "memory_ratio": PAPER_MEMORY_RATIO,
                  "source": "Schlatt et al., ECIR 2025, abstract (the paper's numbers, not measured here)"},
    }


# --------------------------------------------------------------------------- tables a reader can read

LABELS = {
    "name": "model", "backend": "runtime", "kind": "role", "depth": "depth k", "runs": "runs",
    "median_s": "seconds per query (median)", "p25_s": "25th pct (s)", "p75_s": "75th pct (s)",
    "pairs_per_s": "pairs per second", "windows": "LLM windows", "prompt_tokens": "prompt tokens",
    "generated_tokens": "generated tokens", "params": "parameters", "dtype": "dtype", "device": "device",
    "load_seconds": "load (s)", "baseline_mb": "runtime alone (MiB)", "peak_mb": "peak RSS (MiB)",
    "model_mb": "memory (MiB)", "graph_mb": "graph on disk (MiB)", "weights_mb": "weights (MiB)",
    "kv_cache_mb": "KV cache (MiB)", "engine_mb": "engine (MiB)", "threads": "threads",
    "student": "student", "teacher": "teacher", "student_s": "student (s per query)",
    "teacher_s": "teacher (s per query)", "speedup": "speed-up (x)", "throughput_ratio": "throughput ratio (x)",
    "student_mb": "student memory (MiB)", "teacher_mb": "teacher memory (MiB)", "memory_ratio": "memory ratio (x)",
    "peak_ratio": "peak RSS ratio (x)",
}


def readable(df: "pd.DataFrame", columns: Sequence[str] | None = None, digits: int = 3):  # noqa: F821
    """A table for the page: the chosen ``columns``, headers with units (:data:`LABELS`), a dash where nothing applies."""
    cols = [c for c in (columns or df.columns) if c in df.columns]
    out = df[cols].rename(columns=LABELS)
    out = out.rename_axis(index=[LABELS.get(n, n) for n in out.index.names])
    return out.style.format(precision=digits, na_rep="–", thousands=",")
