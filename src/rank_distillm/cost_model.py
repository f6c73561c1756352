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

Everything here is arithmetic on shapes; :func:`shape_from_config` reads the shape from
a ``transformers`` config, and :data:`SHAPES` holds the models the book compares.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace


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
    "ELECTRA-base": shape("ELECTRA-base", 12, 768, 3072, 12, 30522, extra_embeddings=(512 + 2) * 768),
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


def windows(depth: int, window: int = 20, stride: int = 10) -> int:
    """How many windows the sliding-window re-ranker asks: ``ceil((k - w) / s) + 1`` (0 if k < 2)."""
    if depth <= 1:
        return 0
    if depth <= window:
        return 1
    return math.ceil((depth - window) / stride) + 1


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
    return {
        "flops": flops, "tokens": w.depth * seq, "weights_bytes": weights, "activation_bytes": activations,
        "memory_bytes": weights + activations, "sequential_steps": math.ceil(w.depth / batch),
        "bytes_read": weights * math.ceil(w.depth / batch),
    }


def llm_window_tokens(w: Workload, passages: int | None = None) -> tuple[int, int]:
    """``(prompt_tokens, generated_tokens)`` of one window of ``passages`` (default: the window size)."""
    n = w.window if passages is None else passages
    prompt = w.prompt_overhead_tokens + 2 * w.query_tokens + n * (w.passage_tokens + w.id_tokens)
    generated = math.ceil(n * w.generated_tokens_per_id)
    return prompt, generated


def llm_cost(s: ModelShape, w: Workload) -> dict:
    """FLOPs and memory of the sliding-window listwise re-ranking of one query's top-``depth``."""
    n = windows(w.depth, w.window, w.stride)
    size = min(w.depth, w.window)
    prompt, generated = llm_window_tokens(w, size)
    prefill = _forward_flops(s, prompt, prompt / 2)  # causal: on average half the prompt is attended
    decode = _forward_flops(s, generated, prompt + generated / 2) + generated * 2 * s.vocab * s.hidden  # + LM head
    weights = s.params * s.bytes_per_param
    kv = s.kv_bytes_per_token * (prompt + generated)
    activations = prompt * (4 * s.hidden + s.intermediate) * s.bytes_per_param
    return {
        "flops": n * (prefill + decode), "windows": n, "prompt_tokens": n * prompt, "generated_tokens": n * generated,
        "tokens": n * (prompt + generated), "weights_bytes": weights, "kv_cache_bytes": kv,
        "activation_bytes": activations, "memory_bytes": weights + kv + activations,
        "sequential_steps": n * (generated + 1),
        # every decoding step reads all weights and the cache so far; a prefill reads them once
        "bytes_read": n * (generated + 1) * weights + n * generated * kv / 2,
    }


@dataclass(frozen=True)
class Hardware:
    """A roofline: peak arithmetic and memory bandwidth, times a utilisation."""

    name: str
    flops_per_s: float
    bytes_per_s: float
    utilisation: float = 0.5

    def seconds(self, cost: dict) -> float:
        """Time of a job as the larger of its compute and memory time (per sequential step)."""
        compute = cost["flops"] / (self.flops_per_s * self.utilisation)
        memory = cost["bytes_read"] / (self.bytes_per_s * self.utilisation)
        return max(compute, memory)


HARDWARE = {
    "A100 80GB (bf16)": Hardware("A100 80GB (bf16)", 312e12, 2.0e12),
    "H100 SXM (bf16)": Hardware("H100 SXM (bf16)", 989e12, 3.35e12),
}


def compare(student: ModelShape, teacher: ModelShape, workload: Workload = Workload(),
            hardware: Hardware = HARDWARE["A100 80GB (bf16)"]) -> dict:
    """The teacher/student ratios the cost model predicts for one query's re-ranking."""
    s, t = encoder_cost(student, workload), llm_cost(teacher, workload)
    return {
        "student": student.name, "teacher": teacher.name, "depth": workload.depth,
        "student_params_M": student.params / 1e6, "teacher_params_M": teacher.params / 1e6,
        "student_GFLOPs": s["flops"] / 1e9, "teacher_GFLOPs": t["flops"] / 1e9,
        "flops_ratio": t["flops"] / s["flops"],
        "student_memory_MB": s["memory_bytes"] / 2**20, "teacher_memory_MB": t["memory_bytes"] / 2**20,
        "memory_ratio": t["memory_bytes"] / s["memory_bytes"],
        "student_seconds": hardware.seconds(s), "teacher_seconds": hardware.seconds(t),
        "time_ratio": hardware.seconds(t) / hardware.seconds(s), "hardware": hardware.name,
    }


def as_dict(s: ModelShape) -> dict:
    return {**asdict(s), "non_embedding_params": s.non_embedding_params}
