"""The student: a ``CrossEncoder`` built from the profile's backbone and a scoring head.

Every head reads the same jointly encoded sequence ``[CLS] query [SEP] passage [SEP]``, in
which every layer (or every layer above ``separate_layers``) lets query and passage tokens
attend to each other (what makes it a cross-encoder); they differ in how the last layer's
token states ``h_i`` become a score.

``head="linear"`` (the paper's: lightning-ir's cross-encoder, one linear layer on ``[CLS]``)
    ``s(q, p) = w^T h_[CLS] + c``, the library's ``Pooling("cls")`` and ``Dense`` modules.
    lightning-ir's ``CrossEncoderModel`` at the paper's time (``lightning_ir/cross_encoder/model.py``
    at f3c5c49, May 2024) is ``Linear(hidden_size, 1)`` on ``last_hidden_state[:, 0]``; later
    versions drop the bias (``linear_bias: false``), which no listwise loss can see (a
    constant shift of every score). ``w`` starts random, as in the paper.

``head="classifier"`` (the library's default for a sequence-classification backbone)
    ELECTRA's classification head: ``s(q, p) = w^T gelu(W h_[CLS] + b) + c`` with dropout
    (a 768 x 768 dense layer, then the linear one); BERT-like backbones read their pooler's
    ``tanh`` output instead. Not the paper's: a second, random dense layer on top of ``[CLS]``.

``head="segment-cosine"`` (:class:`SegmentCosineScore`)
    ``s(q, p) = scale * cos(mean_{i in q} h_i, mean_{j in p} h_j)``: the two segments
    (``token_type_ids`` 0 and 1) are mean-pooled separately and compared with the cosine,
    the very score a sentence-embedding backbone (all-MiniLM-L6-v2) was trained to give.
    It adds no parameter, so the student starts as a ranker (chapter 05 measures it before
    training) and training refines the joint encoding instead of first having to learn a
    head. ``scale`` (a fixed temperature, as in contrastive losses) puts the cosine's small
    differences on the scale the losses expect.

``separate_layers=n`` (:class:`SplitLayersTransformer`; PreTTR, MacAvaney et al., SIGIR 2020)
    lets query and passage attend to each other only from layer ``n + 1`` on: the first ``n``
    layers encode ``[CLS] query [SEP]`` and ``[CLS] passage [SEP]`` apart, each with its own
    positions from 0 and token type 0, exactly as a bi-encoder does; the remaining layers encode
    them jointly. ``n = 0`` is the ordinary cross-encoder; ``n`` = the number of layers is the
    bi-encoder itself. With a backbone trained as a bi-encoder (all-MiniLM-L6-v2) the lower
    layers keep what it learned, and only the top layers have to learn the interaction
    (chapter 05 measures each ``n`` before training).

``query_length``/``passage_length`` (the paper's 32 and 256 tokens; :class:`SeparateLengthsTransformer`)
    truncate query and passage each to its own budget before they are joined, as lightning-ir's
    ``CrossEncoderTokenizer`` does (``lightning_ir/tokenizer/tokenizer.py`` at f3c5c49); a single
    ``max_length`` (the book's) cuts the joined pair longest-first instead, so a long query eats
    into the passage's budget.

The head and the backbone are sentence-transformers modules, so ``CrossEncoder.save_pretrained``
and ``CrossEncoder(path)`` round-trip them like any other model (``modules.json``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from sentence_transformers.base.modules import Module, Transformer

HEADS = ("linear", "classifier", "segment-cosine")


def _encoder_layers(model) -> torch.nn.ModuleList:
    """The transformer layers of a BERT-like encoder (``model.encoder.layer``)."""
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise ValueError(
            f"separate_layers: {type(model).__name__} has no encoder.layer list (only BERT-like encoders are supported)"
        )
    return layers


class SeparateLengthsTransformer(Transformer):
    """A ``Transformer`` module that cuts query and passage each to its own token budget.

    For a (query, passage) pair the query keeps its first ``query_length`` tokens and the
    passage its first ``passage_length`` (special tokens not counted), cut in the original
    text at the last kept token's end (the tokenizer's offsets), so the joint encoding that
    follows sees exactly those tokens. ``None`` leaves that side to the joint ``max_length``.
    Then :attr:`passage_prefix` (empty here) goes before the passage.
    """

    config_keys = [*Transformer.config_keys, "query_length", "passage_length"]

    def __init__(self, model_name_or_path: str, *, query_length: int | None = None, passage_length: int | None = None, **kwargs):
        super().__init__(model_name_or_path, **kwargs)
        self.query_length = None if query_length is None else int(query_length)
        self.passage_length = None if passage_length is None else int(passage_length)

    @property
    def passage_prefix(self) -> str:
        """The text put before each passage (after it is cut)."""
        return ""

    def _cut(self, texts: list[str], length: int | None) -> list[str]:
        if length is None or not texts:
            return texts
        enc = self.tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True, truncation=False, verbose=False)
        return [t if len(offsets) <= length else t[: offsets[length - 1][1]] for t, offsets in zip(texts, enc["offset_mapping"])]

    def preprocess(self, inputs, *args, **kwargs):
        pairs = [i for i, x in enumerate(inputs) if isinstance(x, (tuple, list)) and len(x) == 2]
        if pairs and (self.query_length or self.passage_length or self.passage_prefix):
            queries = self._cut([inputs[i][0] for i in pairs], self.query_length)
            passages = self._cut([inputs[i][1] for i in pairs], self.passage_length)
            inputs = list(inputs)
            for i, q, p in zip(pairs, queries, passages):
                inputs[i] = (q, self.passage_prefix + p)
        return super().preprocess(inputs, *args, **kwargs)


class SplitLayersTransformer(SeparateLengthsTransformer):
    """A ``Transformer`` module whose first ``separate_layers`` layers encode query and passage apart.

    For a pair it feeds ``[CLS] query [SEP] [CLS] passage [SEP]`` (the passage gets its own
    ``[CLS]``), restarts the position ids at the passage's ``[CLS]`` and gives every token type
    0, so that each segment looks to the model as it would alone; ``token_type_ids`` in the
    features still mark the passage (1) for the head. A forward pre-hook on each of the first
    ``separate_layers`` layers replaces the attention mask with a block-diagonal one (a token
    attends only to its own segment). ``separate_layers=0`` changes nothing: a plain
    cross-encoder. Works with the ``sdpa`` and ``eager`` attention implementations, and with one
    process per GPU (``accelerate launch`` / ``torchrun``), not with ``torch.nn.DataParallel``,
    whose replicas would share the hooks.
    """

    config_keys = [*Transformer.config_keys, "separate_layers"]

    def __init__(self, model_name_or_path: str, *, separate_layers: int = 0, **kwargs):
        super().__init__(model_name_or_path, **kwargs)
        layers = _encoder_layers(self.model)
        if not 0 <= int(separate_layers) <= len(layers):
            raise ValueError(f"separate_layers: {separate_layers} is not between 0 and the model's {len(layers)} layers")
        self.separate_layers = int(separate_layers)
        self._attention = self.model.config._attn_implementation
        if self.separate_layers and self._attention not in ("sdpa", "eager"):
            raise ValueError(f"separate_layers needs sdpa or eager attention, not {self._attention!r}")
        self._segment_mask: torch.Tensor | None = None
        for layer in layers[: self.separate_layers]:
            layer.register_forward_pre_hook(self._use_segment_mask, with_kwargs=True)

    def _use_segment_mask(self, layer, args, kwargs):
        if self._segment_mask is None:
            return None
        if "attention_mask" in kwargs:
            return args, {**kwargs, "attention_mask": self._segment_mask}
        return (args[0], self._segment_mask, *args[2:]), kwargs

    @property
    def passage_prefix(self) -> str:
        """The text put before each passage: its own ``[CLS]`` when layers are separate, else nothing."""
        return f"{self.tokenizer.cls_token} " if self.separate_layers else ""

    def forward(self, features: dict, **kwargs) -> dict:
        if not self.separate_layers:
            return super().forward(features, **kwargs)
        if getattr(self, "_is_replica", False):
            raise RuntimeError(
                "separate_layers does not work under torch.nn.DataParallel; run one process per GPU "
                "(accelerate launch or torchrun)"
            )
        types, mask = features["token_type_ids"], features["attention_mask"].bool()
        passage = types.bool() & mask
        query_length = (mask & ~passage).sum(1, keepdim=True)
        positions = torch.cumsum(torch.ones_like(types), 1) - 1  # (arange, but traced with a dynamic length for ONNX)
        positions = torch.where(passage, positions - query_length, positions)
        # a token sees the unpadded tokens of its own segment (padding rows see the query: no empty softmax)
        same = ((passage.unsqueeze(2) == passage.unsqueeze(1)) & mask.unsqueeze(1)).unsqueeze(1)
        if self._attention == "eager":  # an additive mask; sdpa takes the boolean one
            dtype = torch.get_autocast_dtype(types.device.type) if torch.is_autocast_enabled(types.device.type) else self.model.dtype
            same = torch.zeros(same.shape, dtype=dtype, device=same.device).masked_fill(~same, torch.finfo(dtype).min)
        self._segment_mask = same
        try:
            return super().forward(features, token_type_ids=torch.zeros_like(types), position_ids=positions, **kwargs)
        finally:
            self._segment_mask = None


class SegmentCosineScore(Module):
    """``scores = scale * cos(mean-pooled query tokens, mean-pooled passage tokens)``.

    Reads ``token_embeddings``, ``attention_mask`` and ``token_type_ids`` (0: the query with
    ``[CLS]`` and the first ``[SEP]``, 1: the passage and the last ``[SEP]``) from the
    features of a ``Transformer(transformer_task="feature-extraction")`` module and writes
    ``scores`` of shape ``(batch, 1)``.
    """

    config_keys = ["scale"]

    def __init__(self, scale: float = 20.0):
        super().__init__()
        self.scale = float(scale)

    def forward(self, features: dict[str, torch.Tensor], **kwargs) -> dict[str, torch.Tensor]:
        if "token_type_ids" not in features:
            raise ValueError(
                "SegmentCosineScore needs token_type_ids to tell the query from the passage; this backbone's "
                "tokenizer gives none (use head: classifier)"
            )
        h = features["token_embeddings"].float()
        mask = features["attention_mask"].to(h.dtype)
        passage = mask * features["token_type_ids"].to(h.dtype)
        query = mask - passage
        q = (h * query.unsqueeze(-1)).sum(1) / query.sum(1, keepdim=True).clamp(min=1.0)
        p = (h * passage.unsqueeze(-1)).sum(1) / passage.sum(1, keepdim=True).clamp(min=1.0)
        features["scores"] = (self.scale * torch.nn.functional.cosine_similarity(q, p, dim=-1)).unsqueeze(1)
        return features

    def save(self, output_path: str, *args, safe_serialization: bool = True, **kwargs) -> None:
        self.save_config(output_path)


def passage_prefix(cross_encoder) -> str:
    """The text the student's own preprocessing puts before each passage (:attr:`SplitLayersTransformer.passage_prefix`).

    Code that tokenizes pairs itself (the ONNX and OpenVINO students) must add it too.
    """
    return getattr(cross_encoder[0], "passage_prefix", "")


def build_student(
    model_name: str, *, head: str = "classifier", max_length: int | None = None, scale: float = 20.0, separate_layers: int = 0,
    query_length: int | None = None, passage_length: int | None = None,
):
    """A new student ``CrossEncoder``: ``model_name``'s backbone with ``head``, ``separate_layers``
    and the token budgets ``query_length``/``passage_length`` (see the module docstring)."""
    from sentence_transformers.cross_encoder import CrossEncoder

    if head not in HEADS:
        raise ValueError(f"training.head: unknown head {head!r} (use one of {', '.join(HEADS)})")
    if separate_layers and head != "segment-cosine":
        raise ValueError(f"training.separate_layers needs head: segment-cosine (the {head} head reads the joint [CLS])")
    lengths = {"query_length": query_length, "passage_length": passage_length} if query_length or passage_length else {}
    if head == "classifier" and not lengths:
        return CrossEncoder(model_name, num_labels=1, max_length=max_length)
    processor_kwargs = {"model_max_length": max_length} if max_length else None
    task = "sequence-classification" if head == "classifier" else "feature-extraction"
    backbone_class = SplitLayersTransformer if separate_layers else SeparateLengthsTransformer if lengths else Transformer
    extra = {"separate_layers": separate_layers} if separate_layers else {}
    backbone = backbone_class(
        model_name, transformer_task=task, processor_kwargs=processor_kwargs, config_kwargs={"num_labels": 1}, **extra, **lengths
    )
    if head == "classifier":
        return CrossEncoder(modules=[backbone], max_length=max_length)
    if head == "linear":
        from sentence_transformers.base.modules import Dense
        from sentence_transformers.sentence_transformer.modules import Pooling

        dim = backbone.get_embedding_dimension()
        score = [Pooling(dim, "cls"), Dense(dim, 1, activation_function=None, module_input_name="sentence_embedding",
                                            module_output_name="scores")]
        return CrossEncoder(modules=[backbone, *score], max_length=max_length, activation_fn=torch.nn.Identity())
    # scores are scaled cosines: a sigmoid on top (the default for one output) would saturate them
    return CrossEncoder(modules=[backbone, SegmentCosineScore(scale)], max_length=max_length, activation_fn=torch.nn.Identity())


def _own_modules(folder: Path) -> bool:
    """Whether a saved model's ``modules.json`` names module classes of this package (trusted code)."""
    spec = folder / "modules.json"
    if not spec.is_file():
        return False
    try:
        entries = json.loads(spec.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{spec}: not valid JSON ({e})") from e
    return any(str(m.get("type", "")).startswith("rank_distillm.") for m in entries)


def load_student(path: str | os.PathLike, *, device: str | None = None, max_length: int | None = None):
    """A saved student (or any ``CrossEncoder`` folder or hub id) ready to ``predict``.

    A student with this package's modules names ``rank_distillm.student.SegmentCosineScore``
    (and ``SplitLayersTransformer``) in its ``modules.json``; that code is ours, so it is loaded
    with ``trust_remote_code``
    (sentence-transformers asks for it for every module class outside the library).
    """
    from sentence_transformers.cross_encoder import CrossEncoder

    folder = Path(path)
    if folder.is_dir() and _own_modules(folder):
        return CrossEncoder(str(folder), device=device, max_length=max_length, trust_remote_code=True)
    return CrossEncoder(str(path), num_labels=1, device=device, max_length=max_length)
