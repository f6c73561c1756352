"""The teacher, loaded for timing: the real teacher backends of :mod:`rank_distillm.teacher.backends`.

The profile's ``teacher.backend`` picks the engine (:func:`teacher_backend`):
``transformers`` (:class:`~rank_distillm.teacher.backends.TransformersBackend`) or vLLM
(:class:`~rank_distillm.teacher.backends.VLLMBackend`; ``auto``: vLLM when it is installed
and the device is a GPU). With ``force_full_ranking`` every answer is exactly as long as a
complete ranking of the window's ids (``min_new_tokens = max_new_tokens =``
:data:`~rank_distillm.teacher.backends.RANKING`), which is what RankZephyr writes: the
timing then does not depend on whether the weights are any good (a random 7B model, or
SmolLM2, which tends to answer in prose). Both engines get the same prompts, token for token:
vLLM's are rendered and tokenised by the backend with the teacher's tokenizer.

A ``from_config`` teacher (offline) is Mistral-7B's architecture with random weights
(:func:`rank_distillm.models.build_from_config`; on vLLM ``load_format="dummy"``), with a
stand-in tokenizer (SmolLM2's, or the spec's ``tokenizer``) whose ids the backends fold
into the model's vocabulary.

:class:`LoadedTeacher` holds the backend and what the memory figures need: the parameters
and, for vLLM, whose engine reserves its memory up front, the bytes of the weights and of one
token's KV cache.
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass

from ..cost_model import shape_from_config
from ..data import cache_dir
from ..devices import default_dtype
from ..models import SMOLLM2_GGUF, build_from_config, config_for, gguf_parts
from ..teacher.backends import RANKING, Backend, TransformersBackend, VLLMBackend
from .specs import spec_device, use_config

TEACHER_BACKENDS = ("auto", "transformers", "vllm")


def teacher_backend(spec: dict, device: str | None = None) -> str:
    """The engine that times the teacher: the spec's ``backend`` (``auto``, ``transformers`` or ``vllm``).

    ``auto``: vLLM when it is importable and the device is a GPU, else ``transformers``.
    """
    choice = spec.get("backend") or "auto"
    if choice not in TEACHER_BACKENDS:
        raise ValueError(f"teacher.backend: {choice!r} is none of {TEACHER_BACKENDS}")
    if choice != "auto":
        return choice
    device = device or spec_device(spec)
    try:
        installed = importlib.util.find_spec("vllm") is not None
    except ValueError:  # a module without a spec already imported under that name
        installed = True
    return "vllm" if device.startswith("cuda") and installed else "transformers"


@dataclass
class LoadedTeacher:
    """A teacher backend ready to time, with what its memory figures need."""

    backend: Backend
    device: str
    dtype: str  # e.g. "torch.bfloat16"
    params: int
    weights_bytes: float | None = None  # vLLM: computed from the config
    kv_bytes_per_token: float | None = None
    last_prompt: str | None = None  # the longest prompt of the last timed run (for time_phases)


def teacher_dtype(spec: dict) -> str:
    """The teacher's dtype name: the spec's, else :func:`rank_distillm.devices.default_dtype` of its device."""
    return spec.get("dtype") or default_dtype(spec_device(spec))


def teacher_tokenizer(spec: dict):
    """The teacher's tokenizer, or for a ``from_config`` model a stand-in with a chat template."""
    from transformers import AutoTokenizer

    name = (spec.get("tokenizer") or SMOLLM2_GGUF) if use_config(spec) else spec["model"]
    folder, gguf = gguf_parts(name)
    return AutoTokenizer.from_pretrained(folder, **({"gguf_file": gguf} if gguf else {}))


def _lengths(spec: dict) -> dict:
    """``min_new_tokens`` / ``max_new_tokens``: a complete ranking, exactly, when the spec forces full rankings."""
    if spec.get("force_full_ranking", True):
        return {"min_new_tokens": RANKING, "max_new_tokens": RANKING}
    return {"min_new_tokens": None, "max_new_tokens": spec.get("max_new_tokens", 120)}


def _memory_facts(config, dtype: str) -> tuple[int, float, float]:
    """``(parameters, weight bytes, KV-cache bytes per token)`` of a causal LM's config in ``dtype``."""
    import torch
    from transformers import AutoModelForCausalLM

    itemsize = getattr(torch, dtype).itemsize
    with torch.device("meta"):
        params = int(sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters()))
    return params, params * itemsize, shape_from_config(config, bytes_per_param=itemsize).kv_bytes_per_token


def load_teacher(spec: dict, backend: str = "transformers", engine=None) -> LoadedTeacher:
    """The teacher's LLM as a backend: a ``pkg:``/GGUF/hub model, or ``from_config`` with random weights.

    ``backend``: ``transformers`` or ``vllm`` (``engine``: an engine built elsewhere, or a
    test double with vLLM's ``LLM.generate(prompts, sampling_params)``); ``auto`` picks by
    :func:`teacher_backend`.
    """
    if backend == "auto":
        backend = teacher_backend(spec)
    if backend == "vllm":
        return load_vllm_teacher(spec, engine)
    if backend != "transformers":
        raise ValueError(f"teacher backend {backend!r} is none of {TEACHER_BACKENDS}")
    import torch

    device, dtype = spec_device(spec), teacher_dtype(spec)
    if use_config(spec):
        with torch.device(device):
            torch.set_default_dtype(getattr(torch, dtype))
            try:
                model = build_from_config(spec["from_config"], "teacher")
            finally:
                torch.set_default_dtype(torch.float32)
        loaded = TransformersBackend.from_model(model, teacher_tokenizer(spec), device, name=spec["model"], **_lengths(spec))
    else:
        loaded = TransformersBackend(spec["model"], device=device, dtype=dtype, **_lengths(spec))
    return LoadedTeacher(loaded, device, str(loaded.model.dtype), int(sum(p.numel() for p in loaded.model.parameters())))


# --------------------------------------------------------------------------- vLLM


def _vllm_config_folder(spec: dict) -> str:
    """A folder holding only the ``config.json`` of a ``from_config`` teacher, for vLLM's dummy weights."""
    folder = cache_dir() / "efficiency" / f"from-config-{spec['from_config']}-vllm"
    if not (folder / "config.json").exists():
        config = config_for(spec["from_config"], "teacher")
        config.architectures = [{"mistral-7b": "MistralForCausalLM"}[spec["from_config"]]]
        config.save_pretrained(folder)
    return str(folder)


def vllm_engine_args(spec: dict) -> tuple[str, dict]:
    """``(model, engine_kwargs)`` of ``vllm.LLM`` for a teacher spec.

    A ``from_config`` teacher gets random weights (``load_format="dummy"``) from a folder that
    holds only its ``config.json``; prompts arrive as token ids, so its engine needs no tokenizer.
    """
    # no prefix caching: a repeated run (or the warm-up) of the same query would reuse its prompts' KV cache
    kw = dict(dtype=teacher_dtype(spec), gpu_memory_utilization=float(spec.get("gpu_memory_utilization") or 0.9),
              seed=int(spec.get("seed", 0)), enable_prefix_caching=False)
    if spec.get("max_model_len"):
        kw["max_model_len"] = int(spec["max_model_len"])
    if use_config(spec):
        return _vllm_config_folder(spec), {**kw, "load_format": "dummy", "skip_tokenizer_init": True}
    folder, gguf = gguf_parts(spec["model"])
    return spec["model"], ({**kw, "tokenizer": folder} if gguf else kw)


def load_vllm_teacher(spec: dict, engine=None) -> LoadedTeacher:
    """The teacher on vLLM: ``engine`` (a ``vllm.LLM`` or a test double), or one built from the spec.

    vLLM reserves ``gpu_memory_utilization`` of the GPU up front for its KV-cache pool, so the
    process's allocator peak says nothing about what the model needs: the weights and the
    bytes of one token's KV cache (``2 x layers x kv heads x head dim x bytes``) are computed
    from the config instead.
    """
    from transformers import AutoConfig

    tokenizer = teacher_tokenizer(spec)
    if use_config(spec):
        config = config_for(spec["from_config"], "teacher")
    else:
        folder, gguf = gguf_parts(spec["model"])
        config = AutoConfig.from_pretrained(folder, **({"gguf_file": gguf} if gguf else {}))
    model, kwargs = vllm_engine_args(spec) if engine is None else (spec["model"], {})
    backend = VLLMBackend(model, llm=engine, tokenizer=tokenizer, vocab_size=int(config.vocab_size), **_lengths(spec),
                          **kwargs)
    dtype = teacher_dtype(spec)
    params, weights, kv = _memory_facts(config, dtype)
    return LoadedTeacher(backend, spec_device(spec), f"torch.{dtype}", params, weights, kv)


# --------------------------------------------------------------------------- prefill and decoding apart


def time_phases(teacher: LoadedTeacher, prompt: str, new_tokens: int = 64, repeats: int = 1) -> dict | None:
    """Seconds of the LLM's two phases on one window's ``prompt`` (transformers only; ``None`` on vLLM).

    ``prefill_s``: reading the prompt and writing the first token (``generate`` with one new
    token); ``decode_s_per_token``: each further token, from ``generate`` with ``new_tokens``
    tokens, less the prefill, over ``new_tokens - 1``. Best of ``repeats`` each (greedy, every
    answer exactly that long; the model has just run, so no warm-up). The prefill is compute-bound (all prompt tokens at once), the
    decoding memory-bound (every token reads all weights): :mod:`.limits` gives the two limits.
    """
    import torch

    backend = teacher.backend
    if not isinstance(backend, TransformersBackend) or new_tokens < 2:
        return None
    ids = backend.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"].to(teacher.device)
    ids = ids % backend.vocab

    def best(n: int) -> float:
        times = []
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            with torch.inference_mode():
                backend.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                                       do_sample=False, pad_token_id=backend.tokenizer.pad_token_id,
                                       temperature=None, top_p=None, top_k=None)
            times.append(time.perf_counter() - t0)
        return min(times)

    prefill = best(1)
    total = best(new_tokens)
    return {"prompt_tokens": int(ids.shape[1]), "new_tokens": new_tokens, "prefill_s": prefill,
            "decode_s_per_token": max(total - prefill, 0.0) / (new_tokens - 1)}
