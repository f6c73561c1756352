"""The student: a ``CrossEncoder`` built from the profile's backbone and a scoring head.

Both heads read the same jointly encoded sequence ``[CLS] query [SEP] passage [SEP]``, in
which every layer lets query and passage tokens attend to each other (what makes it a
cross-encoder); they differ in how the last layer's token states ``h_i`` become a score.

``head="classifier"`` (the library's default, and the paper's monoELECTRA head)
    ``s(q, p) = w^T tanh(W h_[CLS] + b) + c``. ``w`` starts random: on a backbone that was
    never trained as a cross-encoder the student starts as a random ranker, and it takes
    many training queries to make ``h_[CLS]`` carry relevance.

``head="segment-cosine"`` (:class:`SegmentCosineScore`)
    ``s(q, p) = scale * cos(mean_{i in q} h_i, mean_{j in p} h_j)``: the two segments
    (``token_type_ids`` 0 and 1) are mean-pooled separately and compared with the cosine,
    the very score a sentence-embedding backbone (all-MiniLM-L6-v2) was trained to give.
    It adds no parameter, so the student starts as a ranker (chapter 05 measures it before
    training) and training refines the joint encoding instead of first having to learn a
    head. ``scale`` (a fixed temperature, as in contrastive losses) puts the cosine's small
    differences on the scale the losses expect.

The head is a sentence-transformers module, so ``CrossEncoder.save_pretrained`` and
``CrossEncoder(path)`` round-trip it like any other model (``modules.json``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from sentence_transformers.base.modules import Module

HEADS = ("classifier", "segment-cosine")


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


def build_student(model_name: str, *, head: str = "classifier", max_length: int | None = None, scale: float = 20.0):
    """A new student ``CrossEncoder``: ``model_name``'s backbone with ``head`` (see the module docstring)."""
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.cross_encoder import CrossEncoder

    if head not in HEADS:
        raise ValueError(f"training.head: unknown head {head!r} (use one of {', '.join(HEADS)})")
    if head == "classifier":
        return CrossEncoder(model_name, num_labels=1, max_length=max_length)
    processor_kwargs = {"model_max_length": max_length} if max_length else None
    backbone = Transformer(
        model_name, transformer_task="feature-extraction", processor_kwargs=processor_kwargs, config_kwargs={"num_labels": 1}
    )
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

    A student with this package's head names ``rank_distillm.student.SegmentCosineScore``
    in its ``modules.json``; that code is ours, so it is loaded with ``trust_remote_code``
    (sentence-transformers asks for it for every module class outside the library).
    """
    from sentence_transformers.cross_encoder import CrossEncoder

    folder = Path(path)
    if folder.is_dir() and _own_modules(folder):
        return CrossEncoder(str(folder), device=device, max_length=max_length, trust_remote_code=True)
    return CrossEncoder(str(path), num_labels=1, device=device, max_length=max_length)
