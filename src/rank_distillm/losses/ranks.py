r"""Ranks three ways, and the ideal DCG: what the rank-aware losses compare.

* :func:`predicted_ranks`: the student's hard ranks (1 = highest score);
* :func:`target_ranks`: the ranks the labels ask for (1 = largest label);
* :func:`approximate_ranks`: ApproxRank, a differentiable rank,
  :math:`\hat\pi_i = 1 + \sum_{j \ne i} \sigma\big(\alpha (s_j - s_i)\big)`;
* :func:`max_dcg`: DCG of the ideal order, the normaliser of nDCG.

References: Qin et al., "A general approximation framework for direct optimization of
information retrieval measures", Information Retrieval 2010 (ApproxRank); Järvelin and
Kekäläinen, "Cumulated gain-based evaluation of IR techniques", TOIS 2002 (DCG).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor


def predicted_ranks(scores: Tensor, mask: Tensor) -> Tensor:
    """The student's ranks, 1 = highest score; padding ranks after every real document.

    Ties between scores are broken by list position (a stable sort), so the result is
    deterministic. Returns a float matrix like ``scores``.
    """
    scores = scores.float().masked_fill(~mask, float("-inf"))
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    positions = torch.arange(1, scores.shape[-1] + 1, device=scores.device).expand_as(order)
    ranks.scatter_(-1, order, positions)
    return ranks.float()


def target_ranks(labels: Tensor, mask: Tensor, ties: Literal["average", "first"] = "average") -> Tensor:
    """The ranks the labels ask for, 1 = largest label.

    ``ties="average"``: documents sharing a label share their average rank (labels 3, 1, 1
    give ranks 1, 2.5, 2.5), as the library's ``ADRMSELoss`` does. ``ties="first"``:
    ordinal ranks, ties broken by list position (1, 2, 3), as ranking a sorted teacher
    list by position does.
    """
    labels = labels.float()
    valid_j = mask[:, None, :]
    if ties == "average":
        greater = ((labels[:, None, :] > labels[:, :, None]) & valid_j).sum(-1).float()
        equal = ((labels[:, None, :] == labels[:, :, None]) & valid_j).sum(-1).float()
        return greater + (equal + 1.0) / 2.0
    if ties == "first":
        return predicted_ranks(labels, mask)
    raise ValueError(f"ties must be 'average' or 'first', got {ties!r}")


def approximate_ranks(scores: Tensor, mask: Tensor, alpha: float = 1.0) -> Tensor:
    r"""ApproxRank: each other document that scores higher adds (almost) one.

    .. math:: \hat\pi_i = 1 + \sum_{j \ne i,\ j \text{ valid}} \sigma\big(\alpha (s_j - s_i)\big)

    ``alpha`` sharpens the sigmoid towards the hard rank.
    """
    diffs = scores[:, None, :] - scores[:, :, None]  # [b, i, j] = s_j - s_i
    eye = torch.eye(scores.shape[-1], dtype=torch.bool, device=scores.device)
    others = mask[:, None, :] & ~eye
    return 1.0 + (torch.sigmoid(alpha * diffs) * others).sum(-1)


def max_dcg(gains: Tensor, k: int | None = None, eps: float = 1e-10) -> Tensor:
    """DCG@k of the ideal order (gains sorted, discount log2(1 + position)), at least ``eps``."""
    ideal = torch.sort(gains, dim=-1, descending=True).values[:, :k]
    discount = torch.log2(torch.arange(2, ideal.shape[-1] + 2, device=gains.device).float())
    return (ideal / discount).sum(-1).clamp(min=eps)
