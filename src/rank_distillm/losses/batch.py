"""The padded batch every loss takes, and what the losses share to handle it.

A batch of lists is three ``[B, L]`` matrices: ``scores`` (the student's logits),
``labels`` (targets; larger = more relevant, e.g. ``depth - rank + 1`` for a teacher's
ranking) and a boolean ``mask`` (``True`` = a real document, ``False`` = padding). Lists
shorter than ``L`` are padded on the right; padded entries may hold anything (``-inf``,
``nan``) and never reach a loss or its gradient.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def prepare_batch(scores: Tensor, labels: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """Check shapes; return float scores and labels with padded entries set to 0, and a bool mask."""
    if scores.dim() != 2:
        raise ValueError(f"scores must be a [batch, list] matrix, got shape {tuple(scores.shape)}")
    if labels.shape != scores.shape:
        raise ValueError(f"labels have shape {tuple(labels.shape)}, scores {tuple(scores.shape)}")
    if mask is None:
        mask = torch.ones_like(scores, dtype=torch.bool)
    if mask.shape != scores.shape:
        raise ValueError(f"mask has shape {tuple(mask.shape)}, scores {tuple(scores.shape)}")
    mask = mask.to(device=scores.device, dtype=torch.bool)
    # torch.where, not multiplication: padding may hold -inf or nan, and 0 * inf is nan.
    scores = torch.where(mask, scores.float(), torch.zeros((), device=scores.device))
    labels = torch.where(mask, labels.to(scores.device).float(), torch.zeros((), device=scores.device))
    return scores, labels, mask


def zero_loss(scores: Tensor) -> Tensor:
    """A zero that keeps the graph (so ``backward`` works on a batch without valid pairs)."""
    return scores.sum() * 0.0


def pad_lists(lists: Sequence[Sequence[float]], fill: float = 0.0) -> tuple[Tensor, Tensor]:
    """Stack lists of different lengths into a [B, L] matrix and its boolean mask."""
    if not lists:
        raise ValueError("pad_lists needs at least one list")
    width = max(len(x) for x in lists)
    matrix = torch.full((len(lists), width), float(fill))
    mask = torch.zeros((len(lists), width), dtype=torch.bool)
    for i, values in enumerate(lists):
        matrix[i, : len(values)] = torch.as_tensor(values, dtype=torch.float)
        mask[i, : len(values)] = True
    return matrix, mask
