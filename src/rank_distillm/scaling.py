"""Scaling up: what the paper's pipeline costs on GPUs, and the helpers that run it there.

Plain functions of a profile's ``scaling`` section (the paper's setting in every profile):

* **The budget calculator**: device hours to label ``N`` queries at depth ``k`` with the
  listwise teacher (sliding windows) and to train the student through the paper's two
  stages, from *throughputs* (teacher windows per second, student training query-passage
  pairs per second). Throughputs come from a measurement
  (:func:`rank_distillm.throughput.measure_student_training`; the efficiency chapter's
  harness for the teacher) or from the cost model's roofline (:func:`roofline_throughput`),
  which is labelled as an estimate wherever it is shown.
* **The split of an optimizer step** of the paper's stage 2 (32 queries x 100 passages) into
  per-device batch, gradient accumulation and devices (:func:`check_step_split`), checked
  before a multi-GPU job starts.
* **One GPU**: whether RankZephyr fits a Colab GPU (:func:`teacher_memory_gib`,
  :func:`colab_profile`) and what each Colab runtime runs (:func:`colab_table`).

Devices and dtypes (``dtype: auto``) are :mod:`rank_distillm.devices`'; FLOPs, bytes and the
roofline are :mod:`rank_distillm.cost_model`'s.

``python -m rank_distillm.scaling check --profile gpu`` prints the devices, the dtype, the
step split and the budget; the cluster scripts call it before they submit work.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass

from . import cost_model
from .devices import choose_dtype, detect_devices
from .teacher.windows import windows_per_query

# --------------------------------------------------------------------------- the optimizer step


def check_step_split(queries_per_step: int, per_device_queries: int, grad_accum: int, devices: int) -> dict:
    """Check that per-device batch x gradient accumulation x devices = queries per optimizer step.

    Returns the parts and the product; a mismatch is a ``ValueError`` that says what to change.
    """
    product = per_device_queries * grad_accum * devices
    if product != queries_per_step:
        fix = queries_per_step / (per_device_queries * devices)
        hint = f"gradient accumulation {fix:g}" if fix == int(fix) and fix >= 1 else "another split"
        raise ValueError(
            f"batch arithmetic: {per_device_queries} queries per device x {grad_accum} accumulation steps x "
            f"{devices} devices = {product}, but an optimizer step needs {queries_per_step} queries; use {hint}"
        )
    return {"per_device_queries": per_device_queries, "grad_accum": grad_accum, "devices": devices,
            "queries_per_step": product}


# --------------------------------------------------------------------------- the budget


@dataclass
class Throughput:
    """Per-device speeds the budget is computed from, and where they come from."""

    teacher_windows_per_s: float
    student_pairs_per_s: float  # query-passage pairs per second, forward + backward
    source: str


def teacher_budget(queries: int, depth: int, window: int, stride: int, windows_per_s: float, devices: int = 1) -> dict:
    """Windows, device hours and wall-clock hours to label ``queries`` at ``depth``."""
    windows = queries * windows_per_query(depth, window, stride)
    device_hours = windows / windows_per_s / 3600
    return {"windows": windows, "device_hours": device_hours, "wall_hours": device_hours / devices}


def student_budget(stage1: dict, stage2: dict, queries: int, depth: int, pairs_per_s: float, devices: int = 1) -> dict:
    """Query-passage pairs and device hours for the two training stages.

    ``stage1``: ``steps``, ``queries_per_step``, ``passages_per_query`` (1 positive + 7
    negatives in the paper); ``stage2``: ``epochs``, ``queries_per_step``; stage 2 sees
    every one of the ``queries`` with its ``depth`` passages once per epoch.
    """
    pairs1 = stage1["steps"] * stage1["queries_per_step"] * stage1["passages_per_query"]
    steps2 = stage2["epochs"] * math.ceil(queries / stage2["queries_per_step"])
    pairs2 = stage2["epochs"] * queries * depth
    out = {}
    for name, steps, pairs in (("stage 1", stage1["steps"], pairs1), ("stage 2", steps2, pairs2)):
        hours = pairs / pairs_per_s / 3600
        out[name] = {"steps": steps, "pairs": pairs, "device_hours": hours, "wall_hours": hours / devices}
    return out


def budget_table(settings: dict, throughput: Throughput, queries: int | None = None, depth: int | None = None):
    """The pipeline's cost as a table: one row per job (teacher, stage 1, stage 2, total).

    ``settings`` is a profile's ``scaling`` section (``queries``, ``depth``, ``window``,
    ``stride``, ``stage1``, ``stage2``, ``teacher_devices``, ``train_devices``);
    ``queries`` and ``depth`` override it (the paper's grid: 1k-10k queries, top-10 to 100).
    """
    import pandas as pd

    queries = settings["queries"] if queries is None else queries
    depth = settings["depth"] if depth is None else depth
    teach = teacher_budget(queries, depth, settings["window"], settings["stride"],
                           throughput.teacher_windows_per_s, settings["teacher_devices"])
    train = student_budget(settings["stage1"], settings["stage2"], queries, depth,
                           throughput.student_pairs_per_s, settings["train_devices"])
    rows = [{"job": "teacher labels", "work": f"{teach['windows']:,} windows", "devices": settings["teacher_devices"],
             "device hours": teach["device_hours"], "wall hours": teach["wall_hours"]}]
    for name, part in train.items():
        rows.append({"job": f"student {name}", "work": f"{part['steps']:,} steps, {part['pairs']:,} pairs",
                     "devices": settings["train_devices"], "device hours": part["device_hours"],
                     "wall hours": part["wall_hours"]})
    table = pd.DataFrame(rows)
    total = {"job": "total", "work": "", "devices": None,
             "device hours": table["device hours"].sum(), "wall hours": table["wall hours"].sum()}
    table = pd.concat([table, pd.DataFrame([total])], ignore_index=True)
    table.attrs.update({"queries": queries, "depth": depth, "source": throughput.source})
    return table.set_index("job")


# --------------------------------------------------------------------------- one GPU (Colab)

VLLM_MEMORY_UTILISATION = 0.9  # vLLM's default gpu_memory_utilization
ENGINE_OVERHEAD_GIB = 1.0      # activations, CUDA graphs and context beside weights and cache (an assumption)


def teacher_memory_gib(settings: dict, max_model_len: int = 4096) -> dict:
    """GiB the 16-bit teacher (``teacher_shape``) needs in vLLM: weights, one ``max_model_len`` sequence's KV cache, overhead."""
    teacher = cost_model.SHAPES[settings["teacher_shape"]].with_bytes(2)
    weights = teacher.params * teacher.bytes_per_param / 2**30
    kv = teacher.kv_bytes_per_token * max_model_len / 2**30
    return {"weights_gib": weights, "kv_per_sequence_gib": kv, "needed_gib": weights + kv + ENGINE_OVERHEAD_GIB}


def teacher_fits(settings: dict, memory_gib: float, max_model_len: int = 4096) -> bool:
    """Whether the 16-bit teacher and one full-length sequence fit vLLM's share of a GPU's memory."""
    return teacher_memory_gib(settings, max_model_len)["needed_gib"] <= VLLM_MEMORY_UTILISATION * memory_gib


def colab_profile(devices: list[dict] | None = None) -> str:
    """The Colab variant for these GPUs: ``colab`` where RankZephyr-7B fits in 16 bit (L4, A100), else ``colab-t4``."""
    from .profiles import load_profile

    devices = detect_devices() if devices is None else devices
    if not devices:
        raise ValueError("no CUDA device: the colab profiles are for a Colab GPU runtime")
    p = load_profile("colab")
    max_len = (p["teacher"]["engine"] or {}).get("max_model_len", 4096)
    return "colab" if all(teacher_fits(p["scaling"], d["memory_gib"], max_len) for d in devices) else "colab-t4"


def colab_table(teacher_queries: int, gpus: list[dict] | None = None):
    """What one Colab GPU runs, with roofline *estimates* of the two GPU-heavy chapters.

    One row per GPU (default: the ``colab`` profile's ``scaling.gpus``): the variant
    :func:`colab_profile` picks for its memory, the teacher of chapter 2 and the minutes its
    ``teacher_queries`` x windows take with RankZephyr (none for another model), and the
    query-passage pairs and hours of chapter 5's distillation stage (every student, every
    epoch, ``released_max_queries`` or the paper's queries x the stage's depth). Model
    downloads and loading, evaluation and stage 1 (small) are not counted.
    """
    import pandas as pd

    from .profiles import load_profile

    rows = []
    for gpu in gpus or load_profile("colab")["scaling"]["gpus"]:
        name = colab_profile([{"memory_gib": gpu["memory_gib"]}])
        p = load_profile(name)
        s, t, tr = p["scaling"], p["teacher"], p["training"]
        s2 = tr["stage2"]
        speed = roofline_throughput(s, gpu)
        windows = teacher_queries * windows_per_query(t["depth"], t["window"], t["stride"])
        rankzephyr = t["backend"] == "vllm" and t["model"] == s["teacher_model"]
        pairs = len(tr["students"]) * s2["epochs"] * (s2["released_max_queries"] or s["queries"]) * s2["depth"]
        rows.append({
            "runtime": gpu["name"], "GPU memory (GB)": gpu["memory_gib"], "profile": name,
            "teacher (chapter 2)": f"{t['model'].split('/')[-1]} ({t['backend']})",
            "teacher windows": windows,
            "teacher minutes (estimate)": windows / speed.teacher_windows_per_s / 60 if rankzephyr else float("nan"),
            "student batch (chapter 5)": f"{tr['queries_per_batch']} query x {s2['depth']} passages, "
                                         f"x {tr['gradient_accumulation_steps']} accumulation",
            "distillation pairs": pairs,
            "training hours (estimate)": pairs / speed.student_pairs_per_s / 3600,
        })
    return pd.DataFrame(rows).set_index("runtime")


# --------------------------------------------------------------------------- throughputs (the cost model)


def roofline(settings: dict, gpu: dict, decode_batch: int | None = None) -> cost_model.Roofline:
    """The cost model's roofline of ``gpu`` (a data-sheet entry) with the profile's ``utilisation``.

    ``decode_batch``: windows decoded together; default the profile's (vLLM's continuous
    batching of a labelling job; 1 is the latency of a single query).
    """
    batch = settings["decode_batch"] if decode_batch is None else decode_batch
    return cost_model.Roofline(cost_model.Hardware.from_datasheet(gpu), settings["utilisation"], batch)


def teacher_workload(settings: dict, depth: int | None = None) -> cost_model.Workload:
    """One query's teacher job in the profile's setting: ``depth``, ``window``, ``stride`` and the
    tokens of a window (``prompt_tokens_per_window``, ``generated_tokens_per_window``)."""
    depth = settings["depth"] if depth is None else depth
    return cost_model.Workload.from_window_tokens(
        settings["prompt_tokens_per_window"], settings["generated_tokens_per_window"], settings["window"],
        depth=depth, window=settings["window"], stride=settings["stride"])


def teacher_query_seconds(settings: dict, gpu: dict | None = None, decode_batches: tuple[int, ...] | None = None):
    """Seconds per teacher query of the profile's setting on ``gpu`` (default: the profile's ``gpu``), per decode batch.

    The cost model's roofline (:func:`roofline`) for decode batch 1 (one query's latency:
    its windows one after the other, nothing to batch them with) and the profile's
    ``decode_batch`` (the throughput of a labelling job). Chapters 7 and 8 both show this table.
    """
    import pandas as pd

    gpu = settings["gpu"] if gpu is None else gpu
    work = teacher_workload(settings)
    cost = cost_model.llm_cost(cost_model.SHAPES[settings["teacher_shape"]], work)
    rows = []
    for batch in decode_batches or sorted({1, settings["decode_batch"]}):
        r = roofline(settings, gpu, batch)
        seconds = r.seconds(cost)
        rows.append({"teacher": settings["teacher_shape"], "GPU": gpu["name"], "utilisation": settings["utilisation"],
                     "decode batch": batch, "windows": work.windows, "seconds per query": seconds,
                     "windows per second": work.windows / seconds})
    return pd.DataFrame(rows)


def roofline_throughput(settings: dict, gpu: dict) -> Throughput:
    """An *estimate* of per-GPU throughputs from the cost model (:mod:`rank_distillm.cost_model`).

    Teacher: the windows of one query of the profile's setting (:func:`teacher_workload`)
    over their roofline time at the profile's ``decode_batch``. Student training: one
    query-passage pair of ``query_tokens + passage_tokens`` tokens, forward and backward
    (:func:`rank_distillm.cost_model.training_cost`). A stand-in until a measurement
    exists; every place that shows it says so.
    """
    r = roofline(settings, gpu)
    work = teacher_workload(settings)
    query = r.seconds(cost_model.llm_cost(cost_model.SHAPES[settings["teacher_shape"]], work))
    pair = r.seconds(cost_model.training_cost(cost_model.SHAPES[settings["student_shape"]],
                                              settings["query_tokens"] + settings["passage_tokens"]))
    return Throughput(work.windows / query, 1 / pair, f"roofline estimate for {r.describe()}")


def log_token_counts(log_path, tokenizer: str) -> dict:
    """Mean prompt and response tokens per window of a stored window log, with ``tokenizer``.

    Feeds ``prompt_tokens_per_window`` / ``generated_tokens_per_window`` of the roofline;
    the count depends on the tokenizer (WordPiece here, Llama's SentencePiece for RankZephyr).
    """
    from transformers import AutoTokenizer

    from .models import resolve_model
    from .teacher.log import read_log

    tok = AutoTokenizer.from_pretrained(resolve_model(tokenizer))
    records = read_log(log_path)
    prompts = [len(tok(r["prompt"], add_special_tokens=False, verbose=False)["input_ids"]) for r in records]
    answers = [len(tok(r["response"], add_special_tokens=False, verbose=False)["input_ids"]) for r in records]
    return {"windows": len(records), "prompt_tokens": sum(prompts) / len(prompts),
            "generated_tokens": sum(answers) / len(answers),
            "prompt_words": sum(len(r["prompt"].split()) for r in records) / len(records)}


# --------------------------------------------------------------------------- CLI


def check(profile_name: str) -> dict:
    """What a cluster job verifies before it starts: devices, dtype, batch arithmetic, budget."""
    from .profiles import load_profile

    settings = load_profile(profile_name)["scaling"]
    devices = detect_devices()
    batch = check_step_split(settings["stage2"]["queries_per_step"], settings["per_device_queries"],
                             settings["grad_accum"], settings["train_devices"])
    throughput = roofline_throughput(settings, settings["gpu"])
    table = budget_table(settings, throughput)
    return {"profile": profile_name, "devices": devices, "dtype": choose_dtype(settings["dtype"], devices),
            "batch": batch, "throughput": asdict(throughput),
            "budget": table.reset_index().to_dict(orient="records")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rank_distillm.scaling", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("check", help="devices, dtype, batch arithmetic and budget of a profile")
    p.add_argument("--profile", default="gpu")
    p.add_argument("--json", action="store_true")
    sub.add_parser("dtype", help="print the dtype 'auto' resolves to on this machine")
    args = parser.parse_args(argv)
    if args.action == "dtype":
        print(choose_dtype("auto"))
        return 0
    try:
        report = check(args.profile)
    except (ValueError, KeyError) as error:
        print(f"scaling check: error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, indent=1, default=str))
    else:
        print(f"profile {report['profile']}: {len(report['devices'])} GPU(s) {[d['name'] for d in report['devices']]}, "
              f"dtype {report['dtype']}")
        b = report["batch"]
        print(f"optimizer step: {b['per_device_queries']} queries/device x {b['grad_accum']} accumulation x "
              f"{b['devices']} devices = {b['queries_per_step']} queries")
        print(f"budget ({report['throughput']['source']}):")
        for row in report["budget"]:
            print(f"  {row['job']:<18} {row['device hours']:8.1f} device h  {row['wall hours']:8.1f} wall h  {row['work']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
