r"""ListNet: cross-entropy between the softmax of the labels and the softmax of the scores.

.. math:: \mathcal{L} = -\frac{1}{B}\sum_b \sum_i p_i \log q_i,\qquad
   p = \mathrm{softmax}(y),\ q = \mathrm{softmax}(s)

Inputs: a padded batch (:mod:`.batch`); the softmaxes run over each list's real
documents. With ``kl=True`` the loss is the KL divergence :math:`\mathrm{KL}(p \,\|\, q)
= \sum_i p_i \log p_i - \sum_i p_i \log q_i` instead (the paper's "KL" loss). The two
differ by the entropy of :math:`p`, a constant of the labels, so they have the same
gradient; the library's ``ListNetLoss`` returns the cross-entropy. Mind the scale: with
teacher labels ``100 - rank + 1`` the target softmax puts 63 % of its mass on the first
document, so ListNet mostly teaches the top.

References: Cao et al., "Learning to Rank: From Pairwise Approach to Listwise Approach",
ICML 2007; ``sentence_transformers.cross_encoder.losses.ListNetLoss``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .batch import prepare_batch
from .listwise import ListwiseLoss

BIBTEX = """
@inproceedings{cao2007learning,
    title={Learning to Rank: From Pairwise Approach to Listwise Approach},
    author={Cao, Zhe and Qin, Tao and Liu, Tie-Yan and Tsai, Ming-Feng and Li, Hang},
    booktitle={Proceedings of the 24th international conference on Machine learning},
    pages={129--136},
    year={2007}
}
"""


def soft_cross_entropy(scores: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Per list: -sum_i t_i log softmax(s)_i over the real documents (t: a distribution)."""
    log_q = torch.log_softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
    return -torch.where(mask, target * log_q, torch.zeros(())).sum(-1)


def listnet_loss(scores: Tensor, labels: Tensor, mask: Tensor | None = None,
                 kl: bool = False) -> Tensor:
    """ListNet: cross-entropy (``kl``: KL divergence) of softmax(s) to softmax(y)."""
    scores, labels, mask = prepare_batch(scores, labels, mask)
    padded = labels.masked_fill(~mask, float("-inf"))
    target = torch.softmax(padded, dim=-1)
    per_list = soft_cross_entropy(scores, target, mask)
    if kl:  # minus the entropy of the target
        log_p = torch.log_softmax(padded, dim=-1)
        neg_entropy = torch.where(mask & (target > 0), target * log_p, torch.zeros(()))
        per_list = per_list + neg_entropy.sum(-1)
    return per_list.mean()


class ListNetLoss(ListwiseLoss):
    """ListNet / KL divergence (:func:`listnet_loss`); arguments as the library's ``ListNetLoss``."""

    loss_fn = staticmethod(listnet_loss)
    config_keys = ("kl",)
    bibtex = BIBTEX

    def __init__(self, model, activation_fn=nn.Identity(), mini_batch_size=None, kl=False) -> None:
        super().__init__(model, activation_fn, mini_batch_size, kl=kl)
