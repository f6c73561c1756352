"""A cost model: FLOPs, memory and a roofline time for a cross-encoder and a listwise LLM.

Why is a distilled cross-encoder so much cheaper than the LLM it learnt from? Three
reasons, each a term below:

1. **Parameters**: a forward pass costs about ``2 * N`` FLOPs per token, ``N`` the
   non-embedding parameters (Kaplan et al., 2020), plus ``2 * layers * context * d_attn``
   for attention. ELECTRA-base has 85M such parameters, Mistral-7B 6.9B.
2. **Tokens**: the cross-encoder reads each passage once (query + passage, ~32 + 256
   tokens at most); the LLM reads each passage in every window that holds it, plus the
   instructions. With window ``w``, stride ``s`` and depth ``k`` there are
   ``ceil((k - w) / s) + 1`` windows of ``w`` passages: 9 windows, 180 passage readings, for
   the top-100 (each passage read ~2 times).
3. **Sequential decoding**: the LLM writes the ranking token by token (``[3] > [12] > ...``,
   ~4-5 tokens per id), and each generated token reads every weight from memory once. That
   step is bound by memory bandwidth, not arithmetic, and cannot be batched within a query
   because window ``i + 1`` needs the order that window ``i`` produced.

Memory: weights (``params * bytes``) plus, for the LLM, the KV cache
(``2 * layers * kv_dim * tokens * bytes``) and for the encoder a batch's activations.

Time: a :class:`Roofline` (a GPU's data sheet, :class:`Hardware`, with an assumed
``utilisation`` of its peak FLOP rate and memory bandwidth) times each phase of a job as
the larger of its compute time and its memory time, and adds the phases: the LLM's prefill
(compute bound) and its decoding (memory bound: every step reads all weights, and the
sequence's KV cache). ``decode_batch`` sequences decoded together share each step's read
of the weights: 1 for the latency of one query (chapter 7), more for the throughput of a
labelling job that batches many queries' windows (vLLM; chapter 8). Both chapters time the
teacher through this one model.

Everything here is arithmetic on shapes; :func:`shape_from_config` reads the shape from
a ``transformers`` config, and :data:`SHAPES` holds the models the book compares.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

from .models import ELECTRA_BASE
from .teacher.windows import windows_per_query


@dataclass(frozen=True)
class ModelShape:
    """What the cost of a transformer depends on."""

    name: str
    params: int  # all parameters
    embedding_params: int  # token (and position/type) embeddings: looked up, no FLOPs
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_dim: int  # key/value width per layer (kv heads * head dim; = hidden without GQA)
    vocab: int
    bytes_per_param: float = 2.0  # bf16; 4 for fp32, ~0.6 for a 4-bit GGUF

    @property
    def non_embedding_params(self) -> int:
        return self.params - self.embedding_params

    @property
    def kv_bytes_per_token(self) -> float:
        """KV-cache bytes one token holds: keys and values of every layer, ``2 * layers * kv_dim * bytes``."""
        return 2 * self.layers * self.kv_dim * self.bytes_per_param

    def with_bytes(self, bytes_per_param: float) -> "ModelShape":
        return replace(self, bytes_per_param=bytes_per_param)


def _transformer_params(layers, hidden, intermediate, kv_dim, vocab, gated: bool, extra_embeddings: int = 0,
                        tied: bool = True) -> tuple[int, int]:
    attn = hidden * hidden * 2 + hidden * kv_dim * 2  # q, o + k, v
    mlp = hidden * intermediate * (3 if gated else 2)
    per_layer = attn + mlp
    embeddings = vocab * hidden + extra_embeddings
    head = 0 if tied else vocab * hidden
    return layers * per_layer + embeddings + head, embeddings


def shape(name, layers, hidden, intermediate, heads, vocab, kv_heads=None, gated=False, tied=True,
          extra_embeddings=0, bytes_per_param=2.0, head_dim=None) -> ModelShape:
    """A shape from the architecture's sizes (biases and norms ignored: < 0.5% of the parameters)."""
    kv_dim = (head_dim or hidden // heads) * (kv_heads or heads)
    params, emb = _transformer_params(layers, hidden, intermediate, kv_dim, vocab, gated, extra_embeddings, tied)
    return ModelShape(name, params, emb, layers, hidden, intermediate, heads, kv_dim, vocab, bytes_per_param)


def shape_from_config(config, name: str | None = None, bytes_per_param: float = 2.0) -> ModelShape:
    """The shape of a ``transformers`` config (BERT/ELECTRA-like encoders, Llama/Mistral-like decoders)."""
    c = config
    heads = c.num_attention_heads
    gated = getattr(c, "hidden_act", "") == "silu" or c.model_type in ("llama", "mistral", "qwen2", "gemma")
    extra = 0
    if hasattr(c, "type_vocab_size"):  # BERT-style encoders: position and segment embeddings
        width = getattr(c, "embedding_size", c.hidden_size)
        extra = (c.max_position_embeddings + c.type_vocab_size) * width
    s = shape(
        name or getattr(c, "_name_or_path", None) or c.model_type, c.num_hidden_layers, c.hidden_size,
        c.intermediate_size, heads, c.vocab_size, getattr(c, "num_key_value_heads", None), gated,
        getattr(c, "tie_word_embeddings", True), extra, bytes_per_param, getattr(c, "head_dim", None),
    )
    return s


# The models the book compares. Sizes from their published configs.
SHAPES: dict[str, ModelShape] = {
    "MiniLM-L6 (all-MiniLM-L6-v2)": shape("MiniLM-L6", 6, 384, 1536, 12, 30522, extra_embeddings=(512 + 2) * 384),
    "ELECTRA-base": shape("ELECTRA-base", ELECTRA_BASE["num_hidden_layers"], ELECTRA_BASE["hidden_size"],
                          ELECTRA_BASE["intermediate_size"], ELECTRA_BASE["num_attention_heads"], ELECTRA_BASE["vocab_size"],
                          extra_embeddings=(ELECTRA_BASE["max_position_embeddings"] + ELECTRA_BASE["type_vocab_size"])
                          * ELECTRA_BASE["embedding_size"]),
    "ELECTRA-large": shape("ELECTRA-large", 24, 1024, 4096, 16, 30522, extra_embeddings=(512 + 2) * 1024),
    "SmolLM2-135M": shape("SmolLM2-135M", 30, 576, 1536, 9, 49152, kv_heads=3, gated=True),
    "RankZephyr-7B (Mistral-7B)": shape("RankZephyr-7B", 32, 4096, 14336, 32, 32000, kv_heads=8, gated=True, tied=False),
    # RankGPT runs on OpenAI models of undisclosed size; a Llama-2-70B shape stands in (an assumption).
    "70B-class LLM (RankGPT-size stand-in)": shape("70B-class", 80, 8192, 28672, 64, 32000, kv_heads=8, gated=True, tied=False),
}


@dataclass(frozen=True)
class Workload:
    """One query's re-ranking job."""

    depth: int = 100  # passages re-ranked
    query_tokens: int = 10
    passage_tokens: int = 80  # MS MARCO passages: ~60 words, ~80 word pieces
    window: int = 20
    stride: int = 10
    prompt_overhead_tokens: int = 150  # instructions, query twice, chat template
    id_tokens: int = 4  # "[12] " in the prompt
    generated_tokens_per_id: float = 4.5  # "[12] > " in the answer
    batch: int = 100  # encoder: pairs per forward pass (the whole top-k)

    @property
    def windows(self) -> int:
        """Windows of one query: the teacher's own schedule (:func:`~rank_distillm.teacher.windows.windows_per_query`)."""
        return windows_per_query(self.depth, self.window, self.stride)

    @classmethod
    def from_window_tokens(cls, prompt_tokens: float, generated_tokens: float, passages: int, **fields) -> "Workload":
        """The workload whose window of ``passages`` passages has these prompt and answer tokens.

        The other ``fields`` are kept (``depth``, ``window``, ``query_tokens``, ...); the tokens per
        passage are what the prompt holds beyond its overhead and the query (twice), less each
        passage's id, so that :func:`llm_window_tokens` gives back ``prompt_tokens``.
        """
        base = cls(**fields)
        passage = (prompt_tokens - base.prompt_overhead_tokens - 2 * base.query_tokens) / passages - base.id_tokens
        if passage <= 0:
            raise ValueError(f"a window of {prompt_tokens:g} prompt tokens leaves no tokens for its {passages} passages "
                             f"after {base.prompt_overhead_tokens} overhead and 2 x {base.query_tokens} query tokens")
        return replace(base, passage_tokens=passage, generated_tokens_per_id=generated_tokens / passages)

    @classmethod
    def from_measurement(cls, measured: Mapping, **fields) -> "Workload":
        """The workload of a timed teacher run: ``measured`` holds one query's ``depth``,
        ``windows``, ``prompt_tokens`` and ``generated_tokens`` (a row of the efficiency summary).

        Every window of that run but a shallow one holds ``min(window, depth)`` passages; the
        other ``fields`` (the depth to project to, ``window``, ``stride``, ...) are kept.
        """
        passages = min(cls(**fields).window, int(measured["depth"]))
        windows = float(measured["windows"])
        return cls.from_window_tokens(measured["prompt_tokens"] / windows, measured["generated_tokens"] / windows,
                                      passages, **fields)


def _forward_flops(s: ModelShape, tokens: float, context: float) -> float:
    """Kaplan et al.'s forward cost: ``2 N + 2 layers * context * d_attn`` per token."""
    return tokens * (2 * s.non_embedding_params + 2 * s.layers * context * s.hidden)


def encoder_cost(s: ModelShape, w: Workload) -> dict:
    """FLOPs and memory of scoring ``depth`` query-passage pairs with a cross-encoder."""
    seq = w.query_tokens + w.passage_tokens + 3  # [CLS] q [SEP] p [SEP]
    flops = w.depth * _forward_flops(s, seq, seq)
    weights = s.params * s.bytes_per_param
    batch = min(w.batch, w.depth)
    # the widest activations of one layer for a batch: hidden states, MLP, attention scores
    activations = batch * seq * (4 * s.hidden + s.intermediate) * s.bytes_per_param + batch * s.heads * seq * seq * s.bytes_per_param
    steps = math.ceil(w.depth / batch)
    return {
        "flops": flops, "tokens": w.depth * seq, "weights_bytes": weights, "activation_bytes": activations,
        "memory_bytes": weights + activations, "sequential_steps": steps,
        "phases": [{"name": "forward", "flops": flops, "bytes": weights * steps}],
    }


def encoder_pair_flops(s: ModelShape, tokens: Sequence[int], layers: int | None = None) -> float:
    """Mean FLOPs of one query-passage pair through ``layers`` of the encoder (default: all), at measured lengths.

    ``tokens``: the pairs' own token counts (``[CLS] q [SEP] p [SEP]``, unpadded, as the
    student tokenises them). Each pair costs ``L (2 N_l + 2 L d) `` per layer (Kaplan et al.'s
    forward cost with context ``L``; ``N_l`` the non-embedding parameters of a layer, ``d`` the
    hidden size): the useful work, without the padding a batch adds. ``layers`` below the model's
    counts only the layers that run (the joint layers of a student whose lower layers were
    precomputed).
    """
    n = s.layers if layers is None else layers
    if not 0 <= n <= s.layers:
        raise ValueError(f"layers: {n} is not between 0 and the model's {s.layers}")
    if not len(tokens):
        raise ValueError("encoder_pair_flops: no token counts")
    per_layer = s.non_embedding_params / s.layers
    return sum(length * (2 * per_layer + 2 * length * s.hidden) for length in tokens) * n / len(tokens)


def llm_prefill_flops(s: ModelShape, prompt_tokens: float) -> float:
    """FLOPs of reading a prompt (causal attention: on average half the prompt is attended)."""
    return _forward_flops(s, prompt_tokens, prompt_tokens / 2)


def llm_decode_step(s: ModelShape, context: float) -> dict:
    """One generated token at ``context`` tokens: its FLOPs (with the LM head) and the bytes it reads.

    Every step reads all weights (``params * bytes_per_param``) and the KV cache so far
    (``context * kv_bytes_per_token``): with a batch of one, that traffic, not the arithmetic,
    sets its speed.
    """
    return {"flops": _forward_flops(s, 1, context) + 2 * s.vocab * s.hidden,
            "bytes": s.params * s.bytes_per_param + context * s.kv_bytes_per_token}


def training_cost(s: ModelShape, tokens: int) -> dict:
    """FLOPs of one training step's share for one sequence of ``tokens``: forward and backward, 3 x the forward."""
    flops = 3 * _forward_flops(s, tokens, tokens)
    return {"flops": flops, "phases": [{"name": "forward + backward", "flops": flops, "bytes": 0.0}]}


def llm_window_tokens(w: Workload, passages: int | None = None) -> tuple[float, int]:
    """``(prompt_tokens, generated_tokens)`` of one window of ``passages`` (default: the window size)."""
    n = w.window if passages is None else passages
    prompt = w.prompt_overhead_tokens + 2 * w.query_tokens + n * (w.passage_tokens + w.id_tokens)
    generated = math.ceil(round(n * w.generated_tokens_per_id, 6))
    return prompt, generated


def llm_cost(s: ModelShape, w: Workload) -> dict:
    """FLOPs and memory of the sliding-window listwise re-ranking of one query's top-``depth``.

    ``phases``: the prefill of every window (its FLOPs; it reads the weights once), and the
    decoding (its FLOPs; ``weight_reads`` steps that each read all weights, and ``bytes``:
    the KV cache each step reads, on average half the answer beyond the prompt).
    """
    n = w.windows
    size = min(w.depth, w.window)
    prompt, generated = llm_window_tokens(w, size)
    prefill = llm_prefill_flops(s, prompt)
    decode = generated * llm_decode_step(s, prompt + generated / 2)["flops"]  # + LM head
    weights = s.params * s.bytes_per_param
    kv = s.kv_bytes_per_token * (prompt + generated)
    activations = prompt * (4 * s.hidden + s.intermediate) * s.bytes_per_param
    return {
        "flops": n * (prefill + decode), "windows": n, "prompt_tokens": n * prompt, "generated_tokens": n * generated,
        "tokens": n * (prompt + generated), "weights_bytes": weights, "kv_cache_bytes": kv,
        "activation_bytes": activations, "memory_bytes": weights + kv + activations,
        "sequential_steps": n * (generated + 1),
        # a prefill reads the weights once; every decoding step reads all weights and the cache so far
        "phases": [
            {"name": "prefill", "flops": n * prefill, "bytes": n * weights},
            {"name": "decode", "flops": n * decode, "bytes": n * generated * kv / 2, "weight_reads": n * generated},
        ],
    }


@dataclass(frozen=True)
class Hardware:
    """A GPU's data sheet: peak dense 16-bit arithmetic (FLOP/s) and memory bandwidth (bytes/s)."""

    name: str
    flops_per_s: float
    bytes_per_s: float
    memory_gib: float | None = None

    @classmethod
    def from_datasheet(cls, gpu: Mapping) -> "Hardware":
        """From a profile's entry: ``name``, ``bf16_tflops``, ``memory_bandwidth_gbs`` (and ``memory_gib``)."""
        return cls(gpu["name"], gpu["bf16_tflops"] * 1e12, gpu["memory_bandwidth_gbs"] * 1e9, gpu.get("memory_gib"))


@dataclass(frozen=True)
class Roofline:
    """How fast a job runs on ``hardware``: the roofline of each phase, the phases one after the other.

    A phase takes ``max(flops / (F u), bytes / (B u))`` seconds, ``F`` and ``B`` the data
    sheet's peak FLOP rate and bandwidth and ``u`` the ``utilisation`` reached (an
    assumption). A decoding phase's ``weight_reads`` (each a read of all weights) are shared
    by ``decode_batch`` sequences decoded together, so each sequence's share is
    ``weight_reads * weights / decode_batch`` bytes, plus its own KV cache; its FLOPs are
    its own whatever the batch. The times are per query (or pair), in seconds.
    """

    hardware: Hardware
    utilisation: float
    decode_batch: int = 1

    def __post_init__(self):
        if not 0 < self.utilisation <= 1 or self.decode_batch < 1:
            raise ValueError(f"roofline: utilisation ({self.utilisation}) must be in (0, 1] and decode_batch "
                             f"({self.decode_batch}) at least 1")

    def seconds(self, cost: Mapping) -> float:
        """Time of a job (a cost of :func:`encoder_cost`, :func:`llm_cost` or :func:`training_cost`)."""
        weights = cost.get("weights_bytes", 0.0)
        total = 0.0
        for phase in cost["phases"]:
            moved = phase["bytes"] + phase.get("weight_reads", 0) * weights / self.decode_batch
            total += max(phase["flops"] / (self.hardware.flops_per_s * self.utilisation),
                         moved / (self.hardware.bytes_per_s * self.utilisation))
        return total

    def describe(self) -> str:
        return f"{self.hardware.name}, {self.utilisation:.0%} of peak, decode batch {self.decode_batch}"


def compare(student: ModelShape, teacher: ModelShape, workload: Workload, roofline: Roofline) -> dict:
    """The teacher/student ratios the cost model predicts for one query's re-ranking on ``roofline``."""
    s, t = encoder_cost(student, workload), llm_cost(teacher, workload)
    return {
        "student": student.name, "teacher": teacher.name, "depth": workload.depth,
        "student_params_M": student.params / 1e6, "teacher_params_M": teacher.params / 1e6,
        "student_GFLOPs": s["flops"] / 1e9, "teacher_GFLOPs": t["flops"] / 1e9,
        "flops_ratio": t["flops"] / s["flops"],
        "student_memory_MB": s["memory_bytes"] / 2**20, "teacher_memory_MB": t["memory_bytes"] / 2**20,
        "memory_ratio": t["memory_bytes"] / s["memory_bytes"],
        "student_seconds": roofline.seconds(s), "teacher_seconds": roofline.seconds(t),
        "time_ratio": roofline.seconds(t) / roofline.seconds(s), "hardware": roofline.describe(),
    }
