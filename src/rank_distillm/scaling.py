"""Scaling up: what the paper's pipeline costs on GPUs, and the helpers that run it there.

Three things live here, all plain functions of a profile's ``scaling`` section:

* **The budget calculator**: device hours to label ``N`` queries at depth ``k`` with the
  listwise teacher (sliding windows) and to train the student through the paper's two
  stages, from *throughputs* (teacher windows per second, student training query-passage
  pairs per second). Throughputs come from a measurement (:func:`measure_student_training`
  here; the efficiency chapter's harness for the teacher) or from the roofline estimate
  :func:`roofline_throughput`, which is labelled as an estimate wherever it is shown.
* **The batch arithmetic** of the paper's stage 2 (32 queries x 100 passages per optimizer
  step) as the product of per-device batch, gradient accumulation and devices
  (:func:`batch_arithmetic`), checked before a multi-GPU job starts.
* **Device detection and dtype choice** (:func:`detect_devices`, :func:`choose_dtype`):
  ``dtype: auto`` gives bf16 where the GPU supports it (A100, L4, H100), fp16 on older GPUs
  (T4, V100) and fp32 on the CPU.

``python -m rank_distillm.scaling check --profile gpu`` prints the devices, the dtype, the
batch arithmetic and the budget; the cluster scripts call it before they submit work.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass

from . import cost_model

# --------------------------------------------------------------------------- devices


def detect_devices() -> list[dict]:
    """The CUDA devices torch sees: name, memory (GiB), compute capability, bf16 support.

    An empty list on a machine without a GPU (or without a CUDA build of torch).
    """
    import torch

    if not torch.cuda.is_available():
        return []
    devices = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        devices.append({
            "index": i,
            "name": props.name,
            "memory_gib": round(props.total_memory / 2**30, 1),
            "capability": f"{props.major}.{props.minor}",
            "bf16": props.major >= 8,  # Ampere and newer
        })
    return devices


def choose_dtype(setting: str = "auto", devices: list[dict] | None = None) -> str:
    """The floating-point type to compute in: ``bfloat16``, ``float16`` or ``float32``.

    ``auto`` picks bf16 on GPUs that support it (compute capability 8.0 and newer: A100,
    L4, H100), fp16 on older GPUs (T4, V100: their bf16 is emulated and slow) and fp32
    on the CPU. Any other setting is returned as it is, after a check of its spelling.
    """
    names = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
    setting = names.get(setting, setting)
    if setting in ("bfloat16", "float16", "float32"):
        return setting
    if setting != "auto":
        raise ValueError(f"dtype {setting!r}: use auto, bfloat16 (bf16), float16 (fp16) or float32 (fp32)")
    devices = detect_devices() if devices is None else devices
    if not devices:
        return "float32"
    return "bfloat16" if all(d["bf16"] for d in devices) else "float16"


def trainer_precision(setting: str = "auto", devices: list[dict] | None = None) -> dict:
    """The ``transformers.TrainingArguments`` flags (``bf16``, ``fp16``) for a dtype setting."""
    dtype = choose_dtype(setting, devices)
    return {"bf16": dtype == "bfloat16", "fp16": dtype == "float16"}


# --------------------------------------------------------------------------- batch arithmetic


def batch_arithmetic(queries_per_step: int, per_device_queries: int, grad_accum: int, devices: int) -> dict:
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


# --------------------------------------------------------------------------- teacher cost


def windows_per_query(depth: int, window: int, stride: int) -> int:
    """Windows the teacher sends for one query of ``depth`` candidates (100 / 20 / 10: nine).

    Counted from the teacher's own schedule (:func:`rank_distillm.teacher.windows.window_schedule`).
    """
    from .teacher.windows import window_schedule

    return len(window_schedule(depth, window, stride, depth))


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

# RankZephyr's KV cache per token (Mistral-7B: 32 layers x 8 KV heads x 128 dims), keys and values in 16 bit
TEACHER_KV_BYTES_PER_TOKEN = cost_model.SHAPES["RankZephyr-7B (Mistral-7B)"].with_bytes(2).kv_bytes_per_token
VLLM_MEMORY_UTILISATION = 0.9  # vLLM's default gpu_memory_utilization
ENGINE_OVERHEAD_GIB = 1.0      # activations, CUDA graphs and context beside weights and cache (an assumption)


def teacher_memory_gib(settings: dict, max_model_len: int = 4096) -> dict:
    """GiB the 16-bit teacher needs in vLLM: weights, one ``max_model_len`` sequence's KV cache, overhead."""
    weights = 2 * settings["teacher_params"] / 2**30
    kv = TEACHER_KV_BYTES_PER_TOKEN * max_model_len / 2**30
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


# --------------------------------------------------------------------------- throughputs


def roofline_throughput(settings: dict, gpu: dict) -> Throughput:
    """An *estimate* of per-GPU throughputs from parameter counts and a GPU's data sheet.

    Teacher, one window: prefill ``2 P T_prompt`` FLOPs at ``mfu`` of the peak, plus
    ``T_gen`` decode steps that each read the weights (``2 P`` bytes in 16 bit) once for a
    batch of ``decode_batch`` windows (memory bound). Student training: ``6 P T`` FLOPs
    per query-passage pair of ``T`` tokens at ``mfu`` of the peak. ``gpu``: ``name``,
    ``bf16_tflops`` (dense), ``memory_bandwidth_gbs``. A stand-in until a measurement
    exists; every place that shows it says so.
    """
    peak = gpu["bf16_tflops"] * 1e12 * settings["mfu"]
    bandwidth = gpu["memory_bandwidth_gbs"] * 1e9
    p_t, p_s = settings["teacher_params"], settings["student_params"]
    prefill = 2 * p_t * settings["prompt_tokens_per_window"] / peak
    decode = settings["generated_tokens_per_window"] * (2 * p_t) / bandwidth / settings["decode_batch"]
    pair_tokens = settings["query_tokens"] + settings["passage_tokens"]
    train = 6 * p_s * pair_tokens / peak
    return Throughput(1 / (prefill + decode), 1 / train,
                      f"roofline estimate for {gpu['name']} (MFU {settings['mfu']:.0%}, decode batch {settings['decode_batch']})")


def measure_student_training(model: str, steps: int = 2, queries: int = 2, passages: int = 8,
                             max_length: int = 128, device: str | None = None, dtype: str = "auto") -> dict:
    """Time real optimizer steps of a cross-encoder: query-passage pairs per second.

    Builds ``queries x passages`` pairs of ``max_length`` tokens (the paper's 32 + 256 on
    a GPU), runs one warm-up step and ``steps`` timed steps of forward, a listwise
    cross-entropy over each query's passages, backward and AdamW. ``model`` is a name for
    :func:`rank_distillm.models.resolve_model` or a local folder; on a machine without
    hub access an ELECTRA-base-shaped model can be built from its config
    (``electra-base-config``: random weights, same cost).
    """
    import torch
    from transformers import AutoModelForSequenceClassification, ElectraConfig

    from .models import resolve_model

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype_name = choose_dtype(dtype) if device == "cuda" else "float32"
    torch.manual_seed(0)
    if model == "electra-base-config":
        config = ElectraConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                               intermediate_size=3072, embedding_size=768, num_labels=1)
        net = AutoModelForSequenceClassification.from_config(config)
    else:
        net = AutoModelForSequenceClassification.from_pretrained(resolve_model(model), num_labels=1)
    net.to(device).train()
    optim = torch.optim.AdamW(net.parameters(), lr=1e-5)
    vocab = net.config.vocab_size
    ids = torch.randint(1000, vocab, (queries * passages, max_length), device=device)
    mask = torch.ones_like(ids)
    autocast = torch.autocast(device_type=device, dtype=getattr(torch, dtype_name), enabled=dtype_name != "float32")

    def step():
        with autocast:
            scores = net(input_ids=ids, attention_mask=mask).logits.view(queries, passages).float()
        loss = torch.nn.functional.cross_entropy(scores, torch.zeros(queries, dtype=torch.long, device=device))
        loss.backward()
        optim.step()
        optim.zero_grad()
        return loss

    step()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    pairs = steps * queries * passages
    return {"model": model, "device": device, "dtype": dtype_name, "steps": steps, "pairs": pairs,
            "max_length": max_length, "seconds": seconds, "pairs_per_s": pairs / seconds,
            "parameters": sum(p.numel() for p in net.parameters())}


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
    batch = batch_arithmetic(settings["stage2"]["queries_per_step"], settings["per_device_queries"],
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
